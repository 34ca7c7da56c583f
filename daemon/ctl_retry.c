/* ctl_retry.c — `kairanctl retry --failed [--uncertain] REPORT`. */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "err.h"
#include "store.h"

static const char usage_text[] =
    "usage: kairanctl retry --failed [--uncertain] REPORT\n"
    "\n"
    "Queues the report's failed copies again (and, with --uncertain, those\n"
    "whose outcome is unknown because the connection broke after the\n"
    "message was handed over: the reader may get them twice). Each starts\n"
    "afresh: the retry schedule and max_age count from now.\n"
    "exit status: 0 ok, 1 failure, 2 usage\n";

static int
ctl_retry(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {{"failed", 0, NULL, 'f'},
	                                     {"uncertain", 0, NULL, 'u'},
	                                     {"help", 0, NULL, 'h'},
	                                     {NULL, 0, NULL, 0}};
	struct kr_report_row rep;
	struct kr_err err = {0};
	bool failed = false, uncertain = false;
	long long id;
	int64_t n = 0;
	char *end;
	int ch, r, found;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "fuh", opts, NULL)) != -1) {
		switch (ch) {
		case 'f':
			failed = true;
			break;
		case 'u':
			uncertain = true;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return CTL_OK;
		default:
			fputs(usage_text, stderr);
			return CTL_USAGE;
		}
	}
	if (!failed || optind != argc - 1) {
		ctl_error("retry: --failed and one REPORT id expected");
		fputs(usage_text, stderr);
		return CTL_USAGE;
	}
	errno = 0;
	id = strtoll(argv[optind], &end, 10);
	if (*argv[optind] == '\0' || *end != '\0' || errno != 0 || id <= 0) {
		ctl_error("retry: '%s' is not a report id", argv[optind]);
		return CTL_USAGE;
	}
	if ((r = ctl_store(c)) != CTL_OK)
		return r;
	if ((found = kr_store_report_get(c->store, id, &rep, &err)) < 0)
		goto fail;
	if (found == 0) {
		ctl_error("no report %lld", id);
		return CTL_FAIL;
	}
	if (kr_store_report_retry(c->store, id, uncertain, &n, &err) < 0) {
		kr_store_report_row_fini(&rep);
		goto fail;
	}
	printf("report %lld: %lld copies queued again\n", id, (long long)n);
	if (rep.state != KR_RS_ACTIVE && n > 0)
		printf("note: the report is %s; `kairanctl resume %lld` to "
		       "send them\n",
		       rep.state == KR_RS_PAUSED ? "paused" : "cancelled", id);
	kr_store_report_row_fini(&rep);
	return CTL_OK;
fail:
	ctl_error("%s", err.msg);
	return CTL_FAIL;
}

CTL_VERB(retry, "retry", ctl_retry,
         "queue a report's failed (and uncertain) copies again");
