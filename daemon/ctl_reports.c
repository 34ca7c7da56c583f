/* ctl_reports.c — `kairanctl reports`: every report, newest first, with
 * its delivery counts. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl.h"
#include "err.h"
#include "store.h"

static const char usage_text[] =
    "usage: kairanctl reports [--limit N]\n"
    "\n"
    "Lists the stored reports, newest first (all, or the last N): id,\n"
    "state, when it was stored (UTC), copies sent of all queued, failed,\n"
    "and the subject. `kairanctl status REPORT` shows one in detail.\n"
    "exit status: 0 ok, 1 failure, 2 usage\n";

static const char *const state_names[] = {"active", "paused", "cancelled"};

static int
print_report(void *ctx, const struct kr_report_row *r,
             const struct kr_delivery_counts *k)
{
	time_t t = (time_t)r->created_at;
	struct tm tm;
	struct ctl *c = ctx;
	struct kr_bounce_counts b;
	struct kr_err err = {0};
	char when[32] = "", *subj, *p;
	long long all = k->queued + k->sent + k->deferred + k->failed +
	                k->uncertain + k->cancelled;

	/* the outcomes that came back later, per report */
	if (kr_store_bounce_counts(c->store, r->id, &b, &err) < 0) {
		ctl_error("%s", err.msg);
		return -1;
	}
	if (gmtime_r(&t, &tm) != NULL)
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M", &tm);
	/* No terminal control sequences from a report's subject. */
	subj = strdup(r->subject ? r->subject : "");
	if (subj == NULL)
		return -1;
	for (p = subj; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	printf("%-6lld %-9s %-16s %9lld/%-9lld %7lld %7lld %7lld %7lld %7lld  "
	       "%s\n",
	       (long long)r->id,
	       (unsigned)r->state < 3 ? state_names[r->state] : "?", when,
	       (long long)k->sent, all, (long long)k->failed,
	       (long long)b.hard, (long long)b.soft, (long long)b.complaint,
	       (long long)b.unsubscribed, subj);
	free(subj);
	return 0;
}

static int
ctl_reports(struct ctl *c, int argc, char **argv)
{
	struct kr_err err = {0};
	long long limit = 0;
	char *end;
	int r;

	if (argc == 2 &&
	    (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		fputs(usage_text, stdout);
		return CTL_OK;
	}
	if (argc == 3 && strcmp(argv[1], "--limit") == 0) {
		errno = 0;
		limit = strtoll(argv[2], &end, 10);
		if (*argv[2] == '\0' || *end != '\0' || errno || limit < 0) {
			ctl_error("reports: --limit wants a number");
			return CTL_USAGE;
		}
	} else if (argc != 1) {
		fputs(usage_text, stderr);
		return CTL_USAGE;
	}
	if ((r = ctl_store(c)) != CTL_OK)
		return r;
	printf("%-6s %-9s %-16s %19s %7s %7s %7s %7s %7s  %s\n", "ID",
	       "STATE", "STORED (UTC)", "SENT/ALL", "FAILED", "HARD", "SOFT",
	       "COMPL", "UNSUB", "SUBJECT");
	if (kr_store_report_foreach(c->store, (size_t)limit, print_report, c,
	                            &err) != 0) {
		ctl_error("%s", err.msg[0] ? err.msg : "listing failed");
		return CTL_FAIL;
	}
	return CTL_OK;
}

CTL_VERB(reports, "reports", ctl_reports,
         "list the reports, newest first, with delivery counts");
