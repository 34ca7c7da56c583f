/* kd_events.h — report life-cycle events for the webhook: kairand polls
 * the store's per-report counts and turns changes into "report.started",
 * "report.finished", "report.failing" and "report.paused" JSON events,
 * and a list's confirmation mails paused by the governor into
 * "confirmations.paused". */
#ifndef KD_EVENTS_H
#define KD_EVENTS_H

#include <stdint.h>

struct kr_buf;
struct kr_config;
struct kr_delivery_counts;
struct kr_store;
struct kr_webhook;
struct kd_events;

/* A report is "failing" once this many copies failed (or are uncertain)
 * and they are more than KD_FAIL_PERCENT of those attempted. */
#define KD_FAIL_MIN 10
#define KD_FAIL_PERCENT 10

struct kd_events *kd_events_new(void);
void kd_events_free(struct kd_events **ev);
/* Looks at the newest reports and posts an event for each change since
 * the last call. The first call only learns the current state (a restart
 * does not announce old news). hook may be NULL (nothing posted, state
 * still tracked). */
void kd_events_tick(struct kd_events *ev, const struct kr_config *cfg,
    struct kr_store *store, struct kr_webhook *hook);

/* Appends one event's JSON to out. Returns 0, or -1 past out's cap. */
int kd_events_json(struct kr_buf *out, const char *event, int64_t report_id,
    const char *list_id, const char *subject,
    const struct kr_delivery_counts *c, int64_t now);

#endif
