/* delivery.h — the delivery engine: a pool of cfg->delivery.workers threads
 * that claim due rows from the store, compose each personal copy, hand the
 * batch to the transport and record every outcome as soon as it is known.
 * Rate limits (global and per domain token buckets, halved for a while
 * after a 421 or 4.7.x reply), per-domain connection caps and the retry
 * schedule live here. The pure helpers below are exported for the tests. */
#ifndef KR_DELIVERY_H
#define KR_DELIVERY_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

struct kr_buf;
struct kr_config;
struct kr_err;
struct kr_keyring;
struct kr_delivery;

/* Starts the pool. cfg and ring are borrowed: they must outlive the pool,
 * or until kr_delivery_set_config() replaces cfg and the call returns. Each
 * worker opens its own transport; the workers share one store connection
 * on cfg->database (guarded by a mutex: claim and mark are short). */
KR_NODISCARD int kr_delivery_start(const struct kr_config *cfg,
    const struct kr_keyring *ring, struct kr_delivery **d_out,
    struct kr_err *err);
/* Swaps the config after a reload (rates, lists, footers, relays), and the
 * keyring unless ring is NULL. Workers pick them up at their next batch; a
 * batch in flight finishes on the old ones, so the caller keeps the old
 * config and keyring alive until kr_delivery_stop(). */
void kr_delivery_set_config(struct kr_delivery *d,
    const struct kr_config *cfg, const struct kr_keyring *ring);
/* Wakes idle workers: something was queued. Safe from any thread, and a
 * no-op when no pool runs. */
void kr_delivery_kick(void);
/* Stops claiming, lets batches in flight finish (bounded by the SMTP
 * timeout), releases claimed rows not attempted, joins the workers and
 * frees the pool. Accepts NULL. */
void kr_delivery_stop(struct kr_delivery **d);

/* Counters since start, per list and relay ("host:port", or "" for
 * outcomes no relay gave, such as a message that could not be composed). */
struct kr_delivery_stats {
	uint64_t sent, deferred, failed, uncertain, bounced;
};
typedef void (*kr_delivery_stats_fn)(void *ctx, const char *list_id,
    const char *relay, const struct kr_delivery_stats *st);
/* Calls fn for each (list, relay) with outcomes so far, under the pool's
 * lock (fn must not call back into the pool). */
void kr_delivery_stats_foreach(struct kr_delivery *d, kr_delivery_stats_fn fn,
    void *ctx);
/* Appends Prometheus text to out: kairan_delivery_messages_total{list,
 * relay,outcome} and the histogram kairan_smtp_transaction_seconds.
 * Returns 0, or -1 when out's cap was reached. */
KR_NODISCARD int kr_delivery_metrics(struct kr_delivery *d,
    struct kr_buf *out);
/* What keeps delivery from working now, for GET /healthz: appends one
 * line per failing dependency ("relay: 127.0.0.1:25: connection refused
 * (for 12s, 3 failures)", "store: database or disk is full ..."). Each is
 * cleared by the next success (a 250 from the relay, a claim that
 * worked). Returns 0 when all is well (nothing appended), 1 when lines
 * were appended, -1 when out's cap was reached. */
KR_NODISCARD int kr_delivery_health(struct kr_delivery *d,
    struct kr_buf *out);
/* The report most recently sent from (0: none yet), for STATUS= lines. */
int64_t kr_delivery_current_report(struct kr_delivery *d);

/* ---- pure helpers (unit-tested) ---- */

/* A token bucket: rate tokens per second, up to burst, with a back-off
 * factor (1 normally, halved on "slow down" replies until factor_until).
 * rate 0 means unlimited. Times are seconds on a monotonic clock. */
struct kr_delivery_bucket {
	double rate, burst, tokens, last;
	double factor, factor_until;
};
void kr_delivery_bucket_init(struct kr_delivery_bucket *b, double rate,
    double now);
/* Changes the rate (reload), keeping the tokens it has (capped). */
void kr_delivery_bucket_set_rate(struct kr_delivery_bucket *b, double rate,
    double now);
/* Takes one token when there is one and returns 0; else takes nothing and
 * returns the seconds until one will be there (> 0). */
double kr_delivery_bucket_take(struct kr_delivery_bucket *b, double now);
/* Halves the effective rate (down to 1/16) for hold seconds from now. */
void kr_delivery_bucket_backoff(struct kr_delivery_bucket *b, double now,
    double hold);
/* The rate in force now (rate × factor; 0 when unlimited). */
double kr_delivery_bucket_rate(const struct kr_delivery_bucket *b,
    double now);

/* What to do after a temporary failure of attempt number attempts (0 for
 * the first try) of a message queued at queued_at: returns 0 and the
 * next attempt time in *next_out (now + retry[attempts] ± 10 %, rnd in
 * [0, 1) picks the jitter; never before now + 1 and never after
 * queued_at + max_age, so the last try falls on the deadline), or 1 when
 * it must fail now (retries exhausted, or max_age passed since queued_at;
 * max_age 0 means no limit). */
int kr_delivery_retry_next(const unsigned *retry, size_t n_retry,
    unsigned max_age, int attempts, int64_t queued_at, int64_t now,
    double rnd, int64_t *next_out);
/* True for SMTP replies that ask the client to slow down: 421, or any
 * enhanced status 4.7.x (e.g. "450 4.7.1 rate limited"). */
int kr_delivery_is_slowdown(int code, const char *reply);

#endif
