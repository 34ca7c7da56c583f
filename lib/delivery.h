/* delivery.h — the delivery engine: a pool of cfg->delivery.workers threads
 * that claim due rows from the store, compose each personal copy, hand the
 * batch to the transport and record every outcome as soon as it is known.
 * Rate limits (global and per domain token buckets, halved for a while
 * after a 421 or 4.7.x reply), per-domain connection caps and the retry
 * schedule live here (their arithmetic is in delivery_int.h, for the
 * tests). */
#ifndef KR_DELIVERY_H
#define KR_DELIVERY_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

struct kr_buf;
struct kr_config;
struct kr_dkim_set;
struct kr_err;
struct kr_keyring;
struct kr_delivery;

/* Starts the pool. cfg and ring are borrowed: they stay in use until
 * replaced and no longer used (see kr_delivery_set_config()). Each
 * worker opens its own transport; the workers share one store connection
 * on cfg->database (guarded by a mutex: claim and mark are short). */
KR_NODISCARD int kr_delivery_start(const struct kr_config *cfg,
    const struct kr_keyring *ring, struct kr_delivery **d_out,
    struct kr_err *err);
/* Swaps the config after a reload (rates, lists, footers, relays), and the
 * keyring unless ring is NULL. Workers pick them up at their next batch; a
 * batch in flight finishes on the old ones, so the caller keeps the old
 * config and keyring alive until kr_delivery_gen_in_use() passes their
 * generation (or kr_delivery_stop()). Returns the new generation; the
 * config the pool started with is generation 1. */
unsigned kr_delivery_set_config(struct kr_delivery *d,
    const struct kr_config *cfg, const struct kr_keyring *ring);
/* The same two with the DKIM signers made from that config
 * (kr_dkim_set_new): every composed message of a list with a signer is
 * signed before it is sent (a signing error that is the message's fails
 * it, one of the crypto library defers it). dkim is borrowed like cfg and
 * belongs to its generation: keep it alive exactly as long as cfg. NULL:
 * no signing. kr_delivery_start() and kr_delivery_set_config() are these
 * with dkim NULL. */
KR_NODISCARD int kr_delivery_start_dkim(const struct kr_config *cfg,
    const struct kr_keyring *ring, const struct kr_dkim_set *dkim,
    struct kr_delivery **d_out, struct kr_err *err);
unsigned kr_delivery_set_config_dkim(struct kr_delivery *d,
    const struct kr_config *cfg, const struct kr_keyring *ring,
    const struct kr_dkim_set *dkim);
/* The oldest config generation a worker may still be reading: configs and
 * keyrings of older generations may be freed. */
unsigned kr_delivery_gen_in_use(struct kr_delivery *d);
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
 * relay,outcome}, the gauge kairan_delivery_rate_limit and the histogram
 * kairan_smtp_transaction_seconds.
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
/* The global rate in force now, in messages per second (0: none): the
 * configured rate, lower after a 421 or 4.7.x reply; with no configured
 * rate such a reply imposes half the rate observed for 60 s. */
double kr_delivery_rate_now(struct kr_delivery *d);
/* The report most recently sent from (0: none yet), for STATUS= lines. */
int64_t kr_delivery_current_report(struct kr_delivery *d);

#endif
