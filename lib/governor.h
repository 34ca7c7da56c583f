/* governor.h — the complaint and bounce governor: a report whose copies
 * draw too many ARF complaints or hard bounces is paused by itself, with
 * the reason in the event log, until the operator resumes it. The
 * decision is a pure function of the counts (kr_governor_decide); the
 * rest reads them from the store and pauses. */
#ifndef KR_GOVERNOR_H
#define KR_GOVERNOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

struct kr_config;
struct kr_err;
struct kr_store;

/* Config governor: rates as fractions (0.001 = 0.1 %), 0 turns a rule
 * off; min_sent copies before either rule applies. */
struct kr_governor_policy {
	double complaint_rate, bounce_rate;
	int64_t min_sent;
};

/* One report's figures. ack_*: the counts the operator had seen when last
 * resuming it (only new ones can pause it again). */
struct kr_governor_figures {
	int64_t sent, complaints, hard_bounces;
	int64_t ack_complaints, ack_bounces;
	char reason[256]; /* why the governor paused it, "" if it did not */
};

enum kr_governor_verdict {
	KR_GOVERNOR_SEND = 0,
	KR_GOVERNOR_COMPLAINTS, /* complaints reached complaint_rate */
	KR_GOVERNOR_BOUNCES,    /* hard bounces reached bounce_rate */
};

/* The policy of cfg's governor: block. */
void kr_governor_policy_of(const struct kr_config *cfg,
                           struct kr_governor_policy *p_out);
/* Pause when sent >= min_sent and, for a rule that is on, there are more
 * than ack of its kind and count >= rate × sent (rates compared in parts
 * per million, exactly). Complaints are looked at first. */
enum kr_governor_verdict kr_governor_decide(const struct kr_governor_policy *p,
                                            const struct kr_governor_figures *f);
/* Whether some number of copies sent could make kr_governor_decide pause
 * with these counts (true whenever it would; false lets the caller skip
 * counting the copies sent). */
bool kr_governor_possible(const struct kr_governor_policy *p,
                          int64_t complaints, int64_t hard_bounces,
                          int64_t ack_complaints, int64_t ack_bounces);
/* One line with the figures: "complaints 3 of 2000 sent (0.15%, limit
 * 0.1%), hard bounces 1 (0.05%, limit 5%)", and the verdict's reason in
 * front when it pauses. */
void kr_governor_describe(enum kr_governor_verdict v,
                          const struct kr_governor_policy *p,
                          const struct kr_governor_figures *f, char *out,
                          size_t size);
/* Reads report_id's figures from the store. Returns 0 or -1. */
KR_NODISCARD int kr_governor_figures(struct kr_store *s, int64_t report_id,
                                     struct kr_governor_figures *f_out,
                                     struct kr_err *err);
/* Reads the figures of an ACTIVE report, decides, and when it must stop
 * pauses it (kr_store_report_set_state) and records the reason (event
 * "governor-pause" and the report's governor_reason, as
 * kr_governor_describe). Returns 1 paused now
 * (why holds the line), 0 sends on, 2 not ACTIVE (nothing done), -1
 * error. */
KR_NODISCARD int kr_governor_check(struct kr_store *s,
                                   const struct kr_config *cfg,
                                   int64_t report_id, char *why, size_t size,
                                   struct kr_err *err);
/* The same for the confirmation mails of list_id (a list-bombing attack
 * shows up as their bounces): over the copies of confirmations sent,
 * paused in the store (claims skip them) with event "governor-pause".
 * Returns 1 paused now, 0 sends on, 2 already paused, -1 error. */
KR_NODISCARD int kr_governor_check_confirm(struct kr_store *s,
                                           const struct kr_config *cfg,
                                           const char *list_id, char *why,
                                           size_t size, struct kr_err *err);

#endif
