/* ctl_status.c — `kairanctl status [REPORT] [--watch]`: delivery progress
 * from the store. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "ctl.h"
#include "governor.h"
#include "err.h"
#include "store.h"

static const char usage_text[] =
    "usage: kairanctl status [REPORT] [--watch]\n"
    "\n"
    "Without REPORT: the copies of all reports and confirmations by\n"
    "state, and the ten newest reports. With REPORT: that report's copies\n"
    "queued, in flight, deferred (waiting for a retry), sent, failed,\n"
    "uncertain (the connection broke after the message was handed over)\n"
    "and cancelled, and the bounces and complaints they drew. --watch refreshes every second (a progress bar on a\n"
    "terminal, else a line per change) until nothing is left to send.\n"
    "exit status: 0 ok, 1 failure (no such report), 2 usage\n";

static const char *const state_names[] = {"active", "paused", "cancelled"};

static void
print_counts(const char *indent, const struct kr_delivery_counts *k)
{
	printf("%squeued     %lld\n%sin flight  %lld\n%sdeferred   %lld\n"
	       "%ssent       %lld\n%sfailed     %lld\n%suncertain  %lld\n"
	       "%scancelled  %lld\n",
	       indent, (long long)k->queued, indent, (long long)k->in_flight,
	       indent, (long long)k->deferred, indent, (long long)k->sent,
	       indent, (long long)k->failed, indent, (long long)k->uncertain,
	       indent, (long long)k->cancelled);
}

static int
print_line(void *ctx, const struct kr_report_row *r,
           const struct kr_delivery_counts *k)
{
	(void)ctx;
	printf("report %-6lld %-9s queued %lld, deferred %lld, sent %lld, "
	       "failed %lld, uncertain %lld, cancelled %lld\n",
	       (long long)r->id,
	       (unsigned)r->state < 3 ? state_names[r->state] : "?",
	       (long long)k->queued, (long long)k->deferred, (long long)k->sent,
	       (long long)k->failed, (long long)k->uncertain,
	       (long long)k->cancelled);
	return 0;
}

static int
watch(struct ctl *c, long long id)
{
	struct kr_delivery_counts k, last;
	struct kr_err err = {0};
	struct timespec second = {1, 0};
	long long all, done;
	bool first = true;

	memset(&last, 0, sizeof(last));
	for (;;) {
		if (kr_store_delivery_counts(c->store, id, &k, &err) < 0) {
			ctl_error("%s", err.msg);
			return CTL_FAIL;
		}
		all = k.queued + k.deferred + k.sent + k.failed + k.uncertain +
		      k.cancelled;
		done = all - k.queued - k.deferred;
		if (c->tty) {
			ctl_progress(c, "sending", done, all > 0 ? all : 1);
		} else if (first || memcmp(&k, &last, sizeof(k)) != 0) {
			printf("queued %lld, in flight %lld, deferred %lld, "
			       "sent %lld, failed %lld, uncertain %lld, "
			       "cancelled %lld\n",
			       (long long)k.queued, (long long)k.in_flight,
			       (long long)k.deferred, (long long)k.sent,
			       (long long)k.failed, (long long)k.uncertain,
			       (long long)k.cancelled);
			fflush(stdout);
		}
		if (k.queued + k.deferred == 0) {
			if (c->tty && all == 0)
				ctl_progress(c, "sending", 1, 1);
			return CTL_OK;
		}
		last = k;
		first = false;
		nanosleep(&second, NULL);
	}
}

static int
ctl_status(struct ctl *c, int argc, char **argv)
{
	struct kr_report_row rep;
	struct kr_delivery_counts k;
	struct kr_bounce_counts b;
	struct kr_governor_figures f;
	struct kr_governor_policy p;
	char line[256];
	struct kr_err err = {0};
	const char *arg = NULL;
	bool watching = false;
	long long id = 0;
	char *end;
	int i, r, found;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 ||
		    strcmp(argv[i], "-h") == 0) {
			fputs(usage_text, stdout);
			return CTL_OK;
		} else if (strcmp(argv[i], "--watch") == 0 ||
		           strcmp(argv[i], "-w") == 0) {
			watching = true;
		} else if (argv[i][0] != '-' && arg == NULL) {
			arg = argv[i];
		} else {
			ctl_error("status: unexpected argument '%s'", argv[i]);
			fputs(usage_text, stderr);
			return CTL_USAGE;
		}
	}
	if (arg != NULL) {
		errno = 0;
		id = strtoll(arg, &end, 10);
		if (*end != '\0' || errno != 0 || id <= 0) {
			ctl_error("status: '%s' is not a report id", arg);
			return CTL_USAGE;
		}
	}
	if ((r = ctl_store(c)) != CTL_OK)
		return r;
	if (id != 0) {
		if ((found = kr_store_report_get(c->store, id, &rep, &err)) < 0)
			goto fail;
		if (!found) {
			ctl_error("no report %lld", id);
			return CTL_FAIL;
		}
		if (!watching) {
			if (kr_store_delivery_counts(c->store, id, &k, &err) <
			        0 ||
			    kr_store_bounce_counts(c->store, id, &b, &err) <
			        0) {
				kr_store_report_row_fini(&rep);
				goto fail;
			}
			printf("report %lld (%s, list %s)\n", id,
			       (unsigned)rep.state < 3 ? state_names[rep.state]
			                               : "?",
			       rep.list_id);
			print_counts("  ", &k);
			/* What came back later: bounces (DSNs, SMTP-time
			 * 5xx) and complaints about this report's copies. */
			printf("  bounced    %lld hard, %lld soft\n"
			       "  complaints %lld\n"
			       "  unsubscribed %lld (from this report's links)\n",
			       (long long)b.hard, (long long)b.soft,
			       (long long)b.complaint,
			       (long long)b.unsubscribed);
			if (kr_governor_figures(c->store, id, &f, &err) < 0) {
				kr_store_report_row_fini(&rep);
				goto fail;
			}
			kr_governor_policy_of(c->cfg, &p);
			kr_governor_describe(KR_GOVERNOR_SEND, &p, &f, line,
			                     sizeof(line));
			printf("  rates      of %lld sent: hard bounces %.2f%%, "
			       "soft %.2f%%, complaints %.2f%%, unsubscribes "
			       "%.2f%%\n",
			       (long long)k.sent,
			       k.sent > 0 ? 100.0 * (double)b.hard /
			                        (double)k.sent : 0.0,
			       k.sent > 0 ? 100.0 * (double)b.soft /
			                        (double)k.sent : 0.0,
			       k.sent > 0 ? 100.0 * (double)b.complaint /
			                        (double)k.sent : 0.0,
			       k.sent > 0 ? 100.0 * (double)b.unsubscribed /
			                        (double)k.sent : 0.0);
			printf("  governor   %s\n", line);
			if (f.reason[0] != '\0' && rep.state == KR_RS_PAUSED)
				printf("  %s\n", f.reason);
		}
		kr_store_report_row_fini(&rep);
	} else if (!watching) {
		if (kr_store_delivery_counts(c->store, 0, &k, &err) < 0)
			goto fail;
		printf("all copies (reports and confirmations)\n");
		print_counts("  ", &k);
		for (i = 0; i < (int)c->cfg->n_lists; i++) {
			struct kr_store_list_governor g;

			if (kr_store_confirm_governor_get(
			        c->store, c->cfg->lists[i].id, &g, &err) < 0)
				goto fail;
			if (g.paused)
				printf("  paused: %s (kairanctl resume "
				       "--confirmations %s)\n",
				       g.reason, c->cfg->lists[i].id);
		}
		if (kr_store_report_foreach(c->store, 10, print_line, NULL,
		                            &err) != 0)
			goto fail;
	}
	if (watching)
		return watch(c, id);
	return CTL_OK;
fail:
	ctl_error("%s", err.msg);
	return CTL_FAIL;
}

CTL_VERB(status, "status", ctl_status,
         "delivery progress of all reports or one (--watch: live)");
