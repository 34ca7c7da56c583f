/* delivery_int.h — the delivery engine's arithmetic, exported for
 * tests/unit/test_delivery.c: token buckets with back-off, the retry
 * schedule, and what counts as a "slow down" reply. Not for other
 * modules. */
#ifndef KR_DELIVERY_INT_H
#define KR_DELIVERY_INT_H

#include <stddef.h>
#include <stdint.h>

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

/* Copies a relay's reply into out (outsz bytes, NUL-terminated) for a log
 * line above debug level: every word holding an '@' — the recipient
 * address relays quote, "<taro@example.jp>: Recipient address rejected" —
 * becomes "***", so addresses stay out of logs (house rule); codes
 * and queue ids stay. At debug level the reply is copied unchanged. */
void kr_delivery_log_reply(const char *reply, char *out, size_t outsz);

#endif
