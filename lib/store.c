/* store.c — the front of store.h: opens a handle on the backend that
 * claims the location (store_backend.h) and passes every call to it.
 * Nothing here speaks SQL. */
#include "store.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "store_backend.h"
#include "xmem.h"

struct backend {
	const char *prefix;
	const struct kr_store_ops *ops;
};

/* Added ones, newest first; a location none claims is an SQLite path. */
#define MAX_BACKENDS 8
static struct backend backends[MAX_BACKENDS];
static size_t n_backends;

static atomic_bool upkeep_by_loop;

void
kr_store_add_backend(const char *prefix, const struct kr_store_ops *ops)
{
	if (n_backends == MAX_BACKENDS)
		abort(); /* a test's mistake */
	memmove(&backends[1], &backends[0], n_backends * sizeof(backends[0]));
	backends[0].prefix = prefix;
	backends[0].ops = ops;
	n_backends++;
}

static const struct kr_store_ops *
backend_for(const char *where)
{
	size_t i;

	for (i = 0; i < n_backends; i++)
		if (strncmp(where, backends[i].prefix,
		            strlen(backends[i].prefix)) == 0)
			return backends[i].ops;
	if (strncmp(where, "postgresql://", 13) == 0 ||
	    strncmp(where, "postgres://", 11) == 0)
		return &kr_store_pg_ops;
	return &kr_store_sqlite_ops;
}

int
kr_store_open(const char *where, const char *password_file,
              struct kr_store **store_out, struct kr_err *err)
{
	const struct kr_store_ops *ops = backend_for(where);
	struct kr_store_be *be = NULL;
	struct kr_store *s;

	*store_out = NULL;
	if (ops->open(where, password_file, &be, err) < 0)
		return -1;
	s = kr_xcalloc(1, sizeof(*s));
	s->ops = ops;
	s->be = be;
	*store_out = s;
	return 0;
}

int
kr_store_probe(const char *where, const char *password_file,
               struct kr_err *err)
{
	const struct kr_store_ops *ops = backend_for(where);

	return ops->probe != NULL ? ops->probe(where, password_file, err) : 0;
}

int
kr_store_subscriber_import_many(struct kr_store *s,
                                const struct kr_subscriber *subs, size_t n,
                                int64_t *ids_out, struct kr_err *err)
{
	size_t i;

	if (s->ops->subscriber_import_many != NULL)
		return s->ops->subscriber_import_many(s->be, subs, n, ids_out,
		                                      err);
	for (i = 0; i < n; i++)
		if (s->ops->subscriber_import_id(s->be, &subs[i], &ids_out[i],
		                                 err) < 0)
			return -1;
	return 0;
}

int
kr_store_rate_take(struct kr_store *s, const char *key, double rate,
                   double burst, double want, double *got_out,
                   struct kr_err *err)
{
	if (s->ops->rate_take == NULL) {
		*got_out = want;
		return 0;
	}
	return s->ops->rate_take(s->be, key, rate, burst, want, got_out, err);
}

int
kr_store_slot_take(struct kr_store *s, const char *key, unsigned cap,
                   int *slot_out, struct kr_err *err)
{
	if (s->ops->slot_take == NULL) {
		*slot_out = 0;
		return 1;
	}
	return s->ops->slot_take(s->be, key, cap, slot_out, err);
}

int
kr_store_slot_give(struct kr_store *s, const char *key, int slot,
                   struct kr_err *err)
{
	if (s->ops->slot_give == NULL)
		return 0;
	return s->ops->slot_give(s->be, key, slot, err);
}

bool
kr_store_rates_shared(const struct kr_store *s)
{
	return s->ops->rate_take != NULL;
}

/* ---- kairanctl store copy ---- */

static const char *const cols_subscribers[] = {
    "id", "list_id", "email", "name", "status", "created_at", "consent_at",
    "confirmed_at", "unsubscribed_at", "consent_source", "consent_ip",
    "consent_ua", "bounces"};
static const char *const cols_reports[] = {
    "id", "list_id", "subject", "preheader", "text", "html", "source",
    "hash", "created_at", "send_at", "state", "date",
    "governor_complaints", "governor_bounces", "governor_reason"};
static const char *const cols_deliveries[] = {
    "id", "kind", "report_id", "subscriber_id", "domain", "state",
    "attempts", "queued_at", "next_attempt", "lease_until", "code",
    "reply", "sent_at", "lease_host", "lease_inc", "lease_token"};
static const char *const cols_events[] = {
    "id", "at", "kind", "subscriber_id", "report_id", "detail"};
static const char *const cols_bounces[] = {
    "id", "at", "subscriber_id", "report_id", "kind", "status",
    "diagnostic", "source", "counted"};
static const char *const cols_token_keys[] = {"id", "fingerprint",
                                              "seen_at"};
static const char *const cols_dkim_keys[] = {"domain", "selector",
                                             "fingerprint", "host",
                                             "seen_at"};
static const char *const cols_governor_lists[] = {
    "list_id", "paused", "reason", "ack_complaints", "ack_bounces"};

#define TABLE(t, id) {#t, cols_##t, KR_NELEM(cols_##t), id}
const struct kr_store_table kr_store_tables[] = {
    TABLE(subscribers, true), TABLE(reports, true),
    TABLE(deliveries, true),  TABLE(events, true),
    TABLE(bounces, true),     TABLE(token_keys, false),
    TABLE(governor_lists, false), TABLE(dkim_keys, false),
};
const size_t kr_store_n_tables = KR_NELEM(kr_store_tables);

struct copy_ctx {
	struct kr_store *dst;
	const char *table;
	int64_t done, total;
	kr_store_progress_fn progress;
	void *pctx;
	struct kr_err *err;
};

static int
copy_row(void *arg, const char *const *vals, size_t n)
{
	struct copy_ctx *c = arg;

	if (c->dst->ops->load_row(c->dst->be, vals, n, c->err) < 0)
		return -1;
	if (++c->done % 5000 == 0 && c->progress != NULL)
		c->progress(c->pctx, c->table, c->done, c->total);
	return 0;
}

int
kr_store_copy(struct kr_store *src, struct kr_store *dst,
              kr_store_progress_fn progress, void *ctx, struct kr_err *err)
{
	struct copy_ctx c = {dst, NULL, 0, 0, progress, ctx, err};
	const struct kr_store_table *t;
	int64_t n = 0, last = 0;
	size_t i;
	int r = -1;

	for (i = 0; i < kr_store_n_tables; i++) {
		if (dst->ops->rows(dst->be, &kr_store_tables[i], &n, err) < 0)
			return -1;
		if (n > 0)
			return kr_err_set(err, KR_ERR_EXISTS,
			                  "the destination is not empty (%s has "
			                  "%lld rows): copy into an empty "
			                  "database only",
			                  kr_store_tables[i].name, (long long)n);
	}
	if (src->ops->snapshot(src->be, err) < 0)
		return -1;
	for (i = 0; i < kr_store_n_tables; i++) {
		t = &kr_store_tables[i];
		c.table = t->name;
		c.done = 0;
		if (src->ops->rows(src->be, t, &c.total, err) < 0 ||
		    (t->has_id && src->ops->last_id(src->be, t, &last, err) < 0))
			goto out;
		if (dst->ops->load_begin(dst->be, t, err) < 0)
			goto out;
		if (src->ops->dump(src->be, t, copy_row, &c, err) != 0 ||
		    dst->ops->load_end(dst->be, t, t->has_id ? last : 0, err) <
		        0) {
			dst->ops->rollback(dst->be);
			kr_err_prefix(err, "copy %s", t->name);
			goto out;
		}
		if (dst->ops->rows(dst->be, t, &n, err) < 0)
			goto out;
		if (n != c.total || c.done != c.total) {
			kr_err_set(err, KR_ERR_DB,
			           "copy %s: %lld rows in the source, %lld "
			           "read, %lld in the destination",
			           t->name, (long long)c.total,
			           (long long)c.done, (long long)n);
			goto out;
		}
		if (progress != NULL)
			progress(ctx, t->name, c.done, c.total);
	}
	r = 0;
out:
	src->ops->rollback(src->be); /* a read snapshot: nothing to keep */
	return r;
}

void
kr_store_close(struct kr_store **sp)
{
	struct kr_store *s;

	if (sp == NULL || (s = *sp) == NULL)
		return;
	s->ops->close(&s->be);
	free(s);
	*sp = NULL;
}

int
kr_store_schema_version(void)
{
	return KR_STORE_SCHEMA_VERSION;
}

const char *
kr_store_backend(const struct kr_store *s)
{
	return s->ops->name;
}

void
kr_store_upkeep_from_loop(void)
{
	atomic_store(&upkeep_by_loop, true);
}

bool
kr_store_upkeep_by_loop(void)
{
	return atomic_load(&upkeep_by_loop);
}

void
kr_store_report_row_fini(struct kr_report_row *r)
{
	if (r == NULL)
		return;
	free(r->subject);
	free(r->preheader);
	free(r->text);
	free(r->html);
	free(r->source);
	free(r->date);
	r->subject = r->preheader = r->text = r->html = r->source = NULL;
	r->date = NULL;
}

/* ---- every other call: to the backend ---- */

int
kr_store_changes(struct kr_store *s, int64_t *mark, struct kr_err *err)
{
	return s->ops->changes(s->be, mark, err);
}

int
kr_store_upkeep(struct kr_store *s, struct kr_err *err)
{
	return s->ops->upkeep(s->be, err);
}

int
kr_store_begin(struct kr_store *s, struct kr_err *err)
{
	return s->ops->begin(s->be, err);
}

int
kr_store_commit(struct kr_store *s, struct kr_err *err)
{
	return s->ops->commit(s->be, err);
}

void
kr_store_rollback(struct kr_store *s)
{
	s->ops->rollback(s->be);
}

int
kr_store_subscribe(struct kr_store *s, const char *list_id, const char *email,
                   const char *name, const struct kr_consent *consent,
                   bool double_opt_in, int64_t now,
                   struct kr_sub_result *res_out, struct kr_err *err)
{
	return s->ops->subscribe(s->be, list_id, email, name, consent,
	                         double_opt_in, now, res_out, err);
}

int
kr_store_subscriber_import(struct kr_store *s, const struct kr_subscriber *sub,
                           bool *added_out, struct kr_err *err)
{
	return s->ops->subscriber_import(s->be, sub, added_out, err);
}

int
kr_store_subscriber_import_id(struct kr_store *s,
                              const struct kr_subscriber *sub, int64_t *id_out,
                              struct kr_err *err)
{
	return s->ops->subscriber_import_id(s->be, sub, id_out, err);
}

int
kr_store_subscriber_get(struct kr_store *s, int64_t id,
                        struct kr_subscriber *out, struct kr_err *err)
{
	return s->ops->subscriber_get(s->be, id, out, err);
}

int
kr_store_subscriber_find(struct kr_store *s, const char *list_id,
                         const char *email, struct kr_subscriber *out,
                         struct kr_err *err)
{
	return s->ops->subscriber_find(s->be, list_id, email, out, err);
}

int
kr_store_subscriber_confirm(struct kr_store *s, int64_t id, int64_t now,
                            struct kr_err *err)
{
	return s->ops->subscriber_confirm(s->be, id, now, err);
}

int
kr_store_subscriber_unsubscribe(struct kr_store *s, int64_t id,
                                bool all_lists, int64_t report_id,
                                int64_t now, struct kr_err *err)
{
	return s->ops->subscriber_unsubscribe(s->be, id, all_lists, report_id,
	                                      now, err);
}

int
kr_store_subscriber_bounce(struct kr_store *s, int64_t id, bool hard,
                           int hard_limit, int64_t now, const char *detail,
                           struct kr_err *err)
{
	return s->ops->subscriber_bounce(s->be, id, hard, hard_limit, now,
	                                 detail, err);
}

int
kr_store_subscriber_delete(struct kr_store *s, int64_t id, struct kr_err *err)
{
	return s->ops->subscriber_delete(s->be, id, err);
}

int
kr_store_subscriber_foreach(struct kr_store *s, const char *list_id, int status,
                            kr_store_sub_fn fn, void *ctx, struct kr_err *err)
{
	return s->ops->subscriber_foreach(s->be, list_id, status, fn, ctx, err);
}

int
kr_store_subscriber_count(struct kr_store *s, const char *list_id, int status,
                          int64_t *n_out, struct kr_err *err)
{
	return s->ops->subscriber_count(s->be, list_id, status, n_out, err);
}

int
kr_store_confirm_count(struct kr_store *s, const char *email, int64_t since,
                       int64_t *n_out, struct kr_err *err)
{
	return s->ops->confirm_count(s->be, email, since, n_out, err);
}

int
kr_store_confirm_enqueue(struct kr_store *s, int64_t id, int64_t now,
                         struct kr_err *err)
{
	return s->ops->confirm_enqueue(s->be, id, now, err);
}

int
kr_store_report_add(struct kr_store *s, const struct kr_report_row *r,
                    bool again, int64_t now, int64_t *id_out,
                    int64_t *queued_out, struct kr_err *err)
{
	return s->ops->report_add(s->be, r, again, now, id_out, queued_out,
	                          err);
}

int
kr_store_report_get(struct kr_store *s, int64_t id, struct kr_report_row *out,
                    struct kr_err *err)
{
	return s->ops->report_get(s->be, id, out, err);
}

int
kr_store_report_foreach(struct kr_store *s, size_t limit, kr_store_report_fn fn,
                        void *ctx, struct kr_err *err)
{
	return s->ops->report_foreach(s->be, limit, fn, ctx, err);
}

int
kr_store_report_set_state(struct kr_store *s, int64_t id,
                          enum kr_report_state state, struct kr_err *err)
{
	return s->ops->report_set_state(s->be, id, state, err);
}

int
kr_store_report_governor_acked(struct kr_store *s, int64_t report_id,
                               int64_t *complaints_out, int64_t *bounces_out,
                               char *reason, size_t reason_size,
                               struct kr_err *err)
{
	return s->ops->report_governor_acked(s->be, report_id, complaints_out,
	                                     bounces_out, reason, reason_size,
	                                     err);
}

int
kr_store_report_governor_ack(struct kr_store *s, int64_t report_id,
                             int64_t complaints, int64_t bounces,
                             const char *reason, struct kr_err *err)
{
	return s->ops->report_governor_ack(s->be, report_id, complaints,
	                                   bounces, reason, err);
}

int
kr_store_confirm_governor_get(struct kr_store *s, const char *list_id,
                              struct kr_store_list_governor *out,
                              struct kr_err *err)
{
	return s->ops->confirm_governor_get(s->be, list_id, out, err);
}

int
kr_store_confirm_governor_set(struct kr_store *s, const char *list_id,
                              bool paused, const char *reason,
                              int64_t ack_complaints, int64_t ack_bounces,
                              struct kr_err *err)
{
	return s->ops->confirm_governor_set(s->be, list_id, paused, reason,
	                                    ack_complaints, ack_bounces, err);
}

int
kr_store_delivery_counts(struct kr_store *s, int64_t report_id,
                         struct kr_delivery_counts *out, struct kr_err *err)
{
	return s->ops->delivery_counts(s->be, report_id, out, err);
}

int
kr_store_report_retry(struct kr_store *s, int64_t report_id,
                      bool with_uncertain, int64_t *n_out, struct kr_err *err)
{
	return s->ops->report_retry(s->be, report_id, with_uncertain, n_out,
	                            err);
}

int
kr_store_claim(struct kr_store *s, const struct kr_store_owner *owner,
               int64_t now, int64_t lease_until, size_t max,
               struct kr_claim *out, size_t *n_out, struct kr_err *err)
{
	return s->ops->claim(s->be, owner, now, lease_until, max, out, n_out,
	                     err);
}

int
kr_store_mark_sent(struct kr_store *s, int64_t delivery_id, int64_t lease,
                   int64_t now, const char *reply, struct kr_err *err)
{
	return s->ops->mark_sent(s->be, delivery_id, lease, now, reply, err);
}

int
kr_store_mark_deferred(struct kr_store *s, int64_t delivery_id,
                       int64_t lease, int64_t now, int64_t next_attempt,
                       int code, const char *reply, struct kr_err *err)
{
	return s->ops->mark_deferred(s->be, delivery_id, lease, now,
	                             next_attempt, code, reply, err);
}

int
kr_store_mark_failed(struct kr_store *s, int64_t delivery_id, int64_t lease,
                     int64_t now, int code, const char *reply,
                     struct kr_err *err)
{
	return s->ops->mark_failed(s->be, delivery_id, lease, now, code, reply,
	                           err);
}

int
kr_store_mark_uncertain(struct kr_store *s, int64_t delivery_id,
                        int64_t lease, int64_t now, const char *reply,
                        struct kr_err *err)
{
	return s->ops->mark_uncertain(s->be, delivery_id, lease, now, reply,
	                              err);
}

int
kr_store_release(struct kr_store *s, int64_t delivery_id, int64_t lease,
                 struct kr_err *err)
{
	return s->ops->release(s->be, delivery_id, lease, err);
}

int
kr_store_reclaim(struct kr_store *s, const struct kr_store_owner *owner,
                 int64_t now, int64_t *n_out, struct kr_err *err)
{
	return s->ops->reclaim(s->be, owner, now, n_out, err);
}

int
kr_store_subscriber_history(struct kr_store *s, int64_t id,
                            kr_store_history_fn fn, void *ctx,
                            struct kr_err *err)
{
	return s->ops->subscriber_history(s->be, id, fn, ctx, err);
}

int
kr_store_subscriber_last_sent(struct kr_store *s, int64_t id, int64_t *at_out,
                              struct kr_err *err)
{
	return s->ops->subscriber_last_sent(s->be, id, at_out, err);
}

int
kr_store_subscriber_forget(struct kr_store *s, int64_t id, int64_t now,
                           struct kr_err *err)
{
	return s->ops->subscriber_forget(s->be, id, now, err);
}

int
kr_store_event(struct kr_store *s, const char *kind, int64_t subscriber_id,
               int64_t report_id, const char *detail, struct kr_err *err)
{
	return s->ops->event(s->be, kind, subscriber_id, report_id, detail,
	                     err);
}

int
kr_store_backup(struct kr_store *s, const char *path, struct kr_err *err)
{
	return s->ops->backup(s->be, path, err);
}

int
kr_store_lock_daemon(struct kr_store *s, struct kr_err *err)
{
	return s->ops->lock_daemon(s->be, err);
}

int
kr_store_ping(struct kr_store *s, struct kr_err *err)
{
	return s->ops->ping(s->be, err);
}

int
kr_store_bounce_record(struct kr_store *s, const struct kr_bounce_row *b,
                       const struct kr_bounce_policy *p,
                       struct kr_bounce_result *res_out, struct kr_err *err)
{
	return s->ops->bounce_record(s->be, b, p, res_out, err);
}

int
kr_store_bounce_foreach(struct kr_store *s, int64_t report_id, size_t limit,
                        kr_store_bounce_fn fn, void *ctx, struct kr_err *err)
{
	return s->ops->bounce_foreach(s->be, report_id, limit, fn, ctx, err);
}

int
kr_store_key_check(struct kr_store *s, uint32_t id, const char *fingerprint,
                   int64_t now, char *known, size_t known_size,
                   struct kr_err *err)
{
	return s->ops->key_check(s->be, id, fingerprint, now, known, known_size,
	                         err);
}

int
kr_store_tokens_issued(struct kr_store *s, int64_t *n_out, struct kr_err *err)
{
	return s->ops->tokens_issued(s->be, n_out, err);
}

int
kr_store_keys_forget(struct kr_store *s, struct kr_err *err)
{
	return s->ops->keys_forget(s->be, err);
}

int
kr_store_dkim_check(struct kr_store *s, const char *domain,
                    const char *selector, const char *fingerprint,
                    const char *host, int64_t now,
                    struct kr_store_dkim_key *known_out, struct kr_err *err)
{
	struct kr_store_dkim_key k;

	return s->ops->dkim_check(s->be, domain, selector, fingerprint, host,
	                          now, known_out != NULL ? known_out : &k, err);
}

int
kr_store_dkim_replace(struct kr_store *s, const char *domain,
                      const char *selector, const char *fingerprint,
                      const char *host, int64_t now,
                      struct kr_store_dkim_key *old_out, struct kr_err *err)
{
	struct kr_store_dkim_key k;

	return s->ops->dkim_replace(s->be, domain, selector, fingerprint, host,
	                            now, old_out != NULL ? old_out : &k, err);
}

int
kr_store_describe(struct kr_store *s, char *out, size_t n, struct kr_err *err)
{
	if (n > 0)
		out[0] = '\0';
	if (s->ops->describe == NULL) { /* a test's backend */
		snprintf(out, n, "%s", s->ops->name);
		return 0;
	}
	return s->ops->describe(s->be, out, n, err);
}

int
kr_store_bounce_counts(struct kr_store *s, int64_t report_id,
                       struct kr_bounce_counts *out, struct kr_err *err)
{
	return s->ops->bounce_counts(s->be, report_id, out, err);
}

int
kr_store_subscriber_tally(struct kr_store *s, kr_store_tally_fn fn, void *ctx,
                          struct kr_err *err)
{
	return s->ops->subscriber_tally(s->be, fn, ctx, err);
}

/* ---- the dashboard ---- */

static int
unsupported(const struct kr_store *s, const char *what, struct kr_err *err)
{
	return kr_err_set(err, KR_ERR_INVALID, "%s store: %s not supported",
	                  s->ops->name, what);
}

int
kr_store_subscriber_days(struct kr_store *s, const char *list_id,
                         int64_t since, int64_t utc_offset,
                         kr_store_day_fn fn, void *ctx, struct kr_err *err)
{
	if (s->ops->subscriber_days == NULL)
		return unsupported(s, "sign-ups per day", err);
	return s->ops->subscriber_days(s->be, list_id, since, utc_offset, fn,
	                               ctx, err);
}

int
kr_store_report_sent_series(struct kr_store *s, int64_t report_id,
                            int64_t bucket, int64_t since,
                            kr_store_bucket_fn fn, void *ctx,
                            struct kr_err *err)
{
	if (bucket <= 0)
		return kr_err_set(err, KR_ERR_INVALID,
		                  "sent series: bucket must be > 0");
	if (s->ops->report_sent_series == NULL)
		return unsupported(s, "copies sent over time", err);
	return s->ops->report_sent_series(s->be, report_id, bucket,
	                                  since < 0 ? 0 : since, fn, ctx, err);
}

int
kr_store_report_domains(struct kr_store *s, int64_t report_id, size_t limit,
                        kr_store_domain_fn fn, void *ctx, struct kr_err *err)
{
	if (s->ops->report_domains == NULL)
		return unsupported(s, "outcomes by domain", err);
	return s->ops->report_domains(s->be, report_id, limit, fn, ctx, err);
}

int
kr_store_report_replies(struct kr_store *s, int64_t report_id, size_t limit,
                        kr_store_reply_fn fn, void *ctx, struct kr_err *err)
{
	if (s->ops->report_replies == NULL)
		return unsupported(s, "relay replies", err);
	return s->ops->report_replies(s->be, report_id, limit, fn, ctx, err);
}
