/* ctl_pause.c — `kairanctl pause|resume|cancel REPORT`. Three verbs in
 * one file: they differ only in the state they set. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "ctl.h"
#include "governor.h"
#include "err.h"
#include "store.h"

static const char usage_text[] =
    "usage: kairanctl pause REPORT\n"
    "       kairanctl resume REPORT\n"
    "       kairanctl resume --confirmations LIST\n"
    "       kairanctl cancel REPORT\n"
    "\n"
    "pause   stops handing out the report's queued copies (copies being\n"
    "        sent finish); resume starts again where it stopped.\n"
    "cancel  drops every copy not yet sent, for good (sent copies stay\n"
    "        sent). REPORT is the id `kairanctl reports` shows.\n"
    "exit status: 0 ok, 1 failure (no such report), 2 usage\n";

static int
set_state(struct ctl *c, int argc, char **argv, enum kr_report_state state)
{
	static const char *const done[] = {"resumed", "paused", "cancelled"};
	struct kr_delivery_counts k;
	struct kr_governor_figures f;
	struct kr_err err = {0};
	char *end;
	long long id;
	int r;

	if (argc == 2 &&
	    (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		fputs(usage_text, stdout);
		return CTL_OK;
	}
	if (argc != 2) {
		ctl_error("%s: one REPORT id expected", argv[0]);
		fputs(usage_text, stderr);
		return CTL_USAGE;
	}
	errno = 0;
	id = strtoll(argv[1], &end, 10);
	if (*argv[1] == '\0' || *end != '\0' || errno != 0 || id <= 0) {
		ctl_error("%s: '%s' is not a report id", argv[0], argv[1]);
		return CTL_USAGE;
	}
	if ((r = ctl_store(c)) != CTL_OK)
		return r;
	/* resume: the governor's figures, said again and taken as seen (it
	 * pauses again only on new complaints or bounces) */
	if (state == KR_RS_ACTIVE &&
	    (kr_governor_figures(c->store, id, &f, &err) < 0 ||
	     kr_store_report_governor_ack(c->store, id, f.complaints,
	                                  f.hard_bounces, NULL, &err) < 0)) {
		ctl_error("%s", err.msg);
		return CTL_FAIL;
	}
	if (kr_store_report_set_state(c->store, id, state, &err) < 0 ||
	    kr_store_delivery_counts(c->store, id, &k, &err) < 0) {
		ctl_error("%s", err.msg);
		return CTL_FAIL;
	}
	if (state == KR_RS_ACTIVE) {
		struct kr_governor_policy p;
		char line[256];

		kr_governor_policy_of(c->cfg, &p);
		kr_governor_describe(KR_GOVERNOR_SEND, &p, &f, line,
		                     sizeof(line));
		if (f.reason[0] != '\0')
			printf("report %lld was %s\n", id, f.reason);
		printf("report %lld governor: %s\n", id, line);
	}
	printf("report %lld %s: %lld queued, %lld deferred, %lld sent, "
	       "%lld cancelled\n",
	       id, done[state], (long long)k.queued, (long long)k.deferred,
	       (long long)k.sent, (long long)k.cancelled);
	return CTL_OK;
}

static int
ctl_pause(struct ctl *c, int argc, char **argv)
{
	return set_state(c, argc, argv, KR_RS_PAUSED);
}

/* resume --confirmations LIST: the confirmation mails the governor
 * paused, with the figures, taken as seen. */
static int
resume_confirmations(struct ctl *c, const char *list)
{
	struct kr_store_list_governor g;
	struct kr_governor_figures f;
	struct kr_governor_policy p;
	struct kr_err err = {0};
	char line[256];
	int r;

	if ((r = ctl_store(c)) != CTL_OK)
		return r;
	if (kr_config_list(c->cfg, list) == NULL) {
		ctl_error("resume: no list '%s'", list);
		return CTL_USAGE;
	}
	if (kr_store_confirm_governor_get(c->store, list, &g, &err) < 0 ||
	    kr_store_confirm_governor_set(c->store, list, false, NULL,
	                                  g.complaints, g.hard, &err) < 0 ||
	    kr_store_event(c->store, "resume", 0, 0, "confirmations", &err) <
	        0) {
		ctl_error("%s", err.msg);
		return CTL_FAIL;
	}
	memset(&f, 0, sizeof(f));
	f.sent = g.sent;
	f.complaints = g.complaints;
	f.hard_bounces = g.hard;
	kr_governor_policy_of(c->cfg, &p);
	kr_governor_describe(KR_GOVERNOR_SEND, &p, &f, line, sizeof(line));
	if (g.paused)
		printf("list %s: %s\n", list, g.reason);
	printf("list %s confirmations %s: %s\n", list,
	       g.paused ? "resumed" : "were not paused", line);
	return CTL_OK;
}

static int
ctl_resume(struct ctl *c, int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--confirmations") == 0)
		return resume_confirmations(c, argv[2]);
	return set_state(c, argc, argv, KR_RS_ACTIVE);
}

static int
ctl_cancel(struct ctl *c, int argc, char **argv)
{
	return set_state(c, argc, argv, KR_RS_CANCELLED);
}

CTL_VERB(pause, "pause", ctl_pause, "stop sending a report for now");
CTL_VERB(resume, "resume", ctl_resume, "go on sending a paused report");
CTL_VERB(cancel, "cancel", ctl_cancel,
         "drop the unsent copies of a report for good");
