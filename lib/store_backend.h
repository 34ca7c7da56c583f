/* store_backend.h — what a store backend provides; only the store's own
 * files (store.c, store_sqlite.c, store_pg.c) and tests that bring a
 * backend of their own include it.
 *
 * store.c is the front (the OpenSMTPD queue_backend.c pattern): every
 * kr_store_* call of store.h goes to the backend that opened the handle,
 * through its const struct kr_store_ops. Each backend defines struct
 * kr_store_be, its connection, in its own file; nothing else sees inside
 * it. An operation has the same contract as the kr_store_* function of
 * the same name in store.h, with the backend's connection for the front's
 * handle. */
#ifndef KR_STORE_BACKEND_H
#define KR_STORE_BACKEND_H

#include "store.h"

struct kr_store_be;

/* The schema version of this build, the same on every backend. */
#define KR_STORE_SCHEMA_VERSION 12

/* A table as `kairanctl store copy` moves it: the logical schema of
 * KR_STORE_SCHEMA_VERSION, the same on every backend (kr_store_tables in
 * store.c, in an order that keeps references valid). Values travel as
 * text, NULL as NULL. */
struct kr_store_table {
	const char *name;
	const char *const *cols;
	size_t n_cols;
	bool has_id; /* cols[0] is "id", the key new rows are numbered by */
};
extern const struct kr_store_table kr_store_tables[];
extern const size_t kr_store_n_tables;

typedef int (*kr_store_row_fn)(void *ctx, const char *const *vals, size_t n);

struct kr_store_ops {
	const char *name; /* "sqlite", "postgresql": for messages */
	/* Connects to where (a path, or a URI this backend claims) and
	 * migrates the schema; password_file may be NULL. */
	int (*open)(const char *where, const char *password_file,
	            struct kr_store_be **out, struct kr_err *err);
	/* Closes *s (an open transaction is rolled back) and sets it to
	 * NULL. Accepts NULL. */
	void (*close)(struct kr_store_be **s);

	int (*changes)(struct kr_store_be *s, int64_t *mark,
	               struct kr_err *err);
	int (*upkeep)(struct kr_store_be *s, struct kr_err *err);
	int (*begin)(struct kr_store_be *s, struct kr_err *err);
	int (*commit)(struct kr_store_be *s, struct kr_err *err);
	void (*rollback)(struct kr_store_be *s);
	int (*subscribe)(struct kr_store_be *s, const char *list_id,
	                 const char *email, const char *name,
	                 const struct kr_consent *consent, bool double_opt_in,
	                 int64_t now, struct kr_sub_result *res_out,
	                 struct kr_err *err);
	int (*subscriber_import)(struct kr_store_be *s,
	                         const struct kr_subscriber *sub,
	                         bool *added_out, struct kr_err *err);
	int (*subscriber_import_id)(struct kr_store_be *s,
	                            const struct kr_subscriber *sub,
	                            int64_t *id_out, struct kr_err *err);
	int (*subscriber_get)(struct kr_store_be *s, int64_t id,
	                      struct kr_subscriber *out, struct kr_err *err);
	int (*subscriber_find)(struct kr_store_be *s, const char *list_id,
	                       const char *email, struct kr_subscriber *out,
	                       struct kr_err *err);
	int (*subscriber_confirm)(struct kr_store_be *s, int64_t id,
	                          int64_t now, struct kr_err *err);
	int (*subscriber_unsubscribe)(struct kr_store_be *s, int64_t id,
	                              bool all_lists, int64_t report_id,
	                              int64_t now, struct kr_err *err);
	int (*subscriber_bounce)(struct kr_store_be *s, int64_t id, bool hard,
	                         int hard_limit, int64_t now,
	                         const char *detail, struct kr_err *err);
	int (*subscriber_delete)(struct kr_store_be *s, int64_t id,
	                         struct kr_err *err);
	int (*subscriber_foreach)(struct kr_store_be *s, const char *list_id,
	                          int status, kr_store_sub_fn fn, void *ctx,
	                          struct kr_err *err);
	int (*subscriber_count)(struct kr_store_be *s, const char *list_id,
	                        int status, int64_t *n_out, struct kr_err *err);
	int (*confirm_count)(struct kr_store_be *s, const char *email,
	                     int64_t since, int64_t *n_out, struct kr_err *err);
	int (*confirm_enqueue)(struct kr_store_be *s, int64_t id, int64_t now,
	                       struct kr_err *err);
	int (*report_add)(struct kr_store_be *s, const struct kr_report_row *r,
	                  bool again, int64_t now, int64_t *id_out,
	                  int64_t *queued_out, struct kr_err *err);
	int (*report_get)(struct kr_store_be *s, int64_t id,
	                  struct kr_report_row *out, struct kr_err *err);
	int (*report_foreach)(struct kr_store_be *s, size_t limit,
	                      kr_store_report_fn fn, void *ctx,
	                      struct kr_err *err);
	int (*report_set_state)(struct kr_store_be *s, int64_t id,
	                        enum kr_report_state state, struct kr_err *err);
	int (*report_governor_acked)(struct kr_store_be *s, int64_t report_id,
	                             int64_t *complaints_out,
	                             int64_t *bounces_out, char *reason,
	                             size_t reason_size, struct kr_err *err);
	int (*report_governor_ack)(struct kr_store_be *s, int64_t report_id,
	                           int64_t complaints, int64_t bounces,
	                           const char *reason, struct kr_err *err);
	int (*confirm_governor_get)(struct kr_store_be *s, const char *list_id,
	                            struct kr_store_list_governor *out,
	                            struct kr_err *err);
	int (*confirm_governor_set)(struct kr_store_be *s, const char *list_id,
	                            bool paused, const char *reason,
	                            int64_t ack_complaints, int64_t ack_bounces,
	                            struct kr_err *err);
	int (*delivery_counts)(struct kr_store_be *s, int64_t report_id,
	                       struct kr_delivery_counts *out,
	                       struct kr_err *err);
	int (*report_retry)(struct kr_store_be *s, int64_t report_id,
	                    bool with_uncertain, int64_t *n_out,
	                    struct kr_err *err);
	int (*claim)(struct kr_store_be *s, const struct kr_store_owner *owner,
	             int64_t now, int64_t lease_until, size_t max,
	             struct kr_claim *out, size_t *n_out, struct kr_err *err);
	int (*mark_sent)(struct kr_store_be *s, int64_t delivery_id,
	                 int64_t lease, int64_t now, const char *reply,
	                 struct kr_err *err);
	int (*mark_deferred)(struct kr_store_be *s, int64_t delivery_id,
	                     int64_t lease, int64_t now, int64_t next_attempt,
	                     int code, const char *reply, struct kr_err *err);
	int (*mark_failed)(struct kr_store_be *s, int64_t delivery_id,
	                   int64_t lease, int64_t now, int code,
	                   const char *reply, struct kr_err *err);
	int (*mark_uncertain)(struct kr_store_be *s, int64_t delivery_id,
	                      int64_t lease, int64_t now, const char *reply,
	                      struct kr_err *err);
	int (*release)(struct kr_store_be *s, int64_t delivery_id,
	               int64_t lease, struct kr_err *err);
	int (*reclaim)(struct kr_store_be *s,
	               const struct kr_store_owner *owner, int64_t now,
	               int64_t *n_out, struct kr_err *err);
	int (*subscriber_history)(struct kr_store_be *s, int64_t id,
	                          kr_store_history_fn fn, void *ctx,
	                          struct kr_err *err);
	int (*subscriber_last_sent)(struct kr_store_be *s, int64_t id,
	                            int64_t *at_out, struct kr_err *err);
	int (*subscriber_forget)(struct kr_store_be *s, int64_t id, int64_t now,
	                         struct kr_err *err);
	int (*event)(struct kr_store_be *s, const char *kind,
	             int64_t subscriber_id, int64_t report_id,
	             const char *detail, struct kr_err *err);
	int (*backup)(struct kr_store_be *s, const char *path,
	              struct kr_err *err);
	int (*lock_daemon)(struct kr_store_be *s, struct kr_err *err);
	int (*ping)(struct kr_store_be *s, struct kr_err *err);
	int (*bounce_record)(struct kr_store_be *s,
	                     const struct kr_bounce_row *b,
	                     const struct kr_bounce_policy *p,
	                     struct kr_bounce_result *res_out,
	                     struct kr_err *err);
	int (*bounce_foreach)(struct kr_store_be *s, int64_t report_id,
	                      size_t limit, kr_store_bounce_fn fn, void *ctx,
	                      struct kr_err *err);
	int (*key_check)(struct kr_store_be *s, uint32_t id,
	                 const char *fingerprint, int64_t now, char *known,
	                 size_t known_size, struct kr_err *err);
	int (*tokens_issued)(struct kr_store_be *s, int64_t *n_out,
	                     struct kr_err *err);
	int (*keys_forget)(struct kr_store_be *s, struct kr_err *err);
	int (*dkim_check)(struct kr_store_be *s, const char *domain,
	                  const char *selector, const char *fingerprint,
	                  const char *host, int64_t now,
	                  struct kr_store_dkim_key *known_out,
	                  struct kr_err *err);
	int (*dkim_replace)(struct kr_store_be *s, const char *domain,
	                    const char *selector, const char *fingerprint,
	                    const char *host, int64_t now,
	                    struct kr_store_dkim_key *old_out,
	                    struct kr_err *err);
	int (*describe)(struct kr_store_be *s, char *out, size_t n,
	                struct kr_err *err);
	int (*bounce_counts)(struct kr_store_be *s, int64_t report_id,
	                     struct kr_bounce_counts *out, struct kr_err *err);
	int (*subscriber_tally)(struct kr_store_be *s, kr_store_tally_fn fn,
	                        void *ctx, struct kr_err *err);
	/* kr_store_subscriber_import_many(); NULL: subscriber_import_id
	 * for each */
	int (*subscriber_import_many)(struct kr_store_be *s,
	                              const struct kr_subscriber *subs,
	                              size_t n, int64_t *ids_out,
	                              struct kr_err *err);
	/* kr_store_rate_take(); NULL: one host per database, whose own
	 * buckets are exact (kr_store_rates_shared() is false) */
	int (*rate_take)(struct kr_store_be *s, const char *key, double rate,
	                 double burst, double want, double *got_out,
	                 struct kr_err *err);
	/* kr_store_copy(): a read-only transaction whose reads all see one
	 * snapshot, ended with rollback */
	int (*snapshot)(struct kr_store_be *s, struct kr_err *err);
	/* every row of t in id order; fn's non-zero return stops and is
	 * returned */
	int (*dump)(struct kr_store_be *s, const struct kr_store_table *t,
	            kr_store_row_fn fn, void *ctx, struct kr_err *err);
	/* rows are written between load_begin and load_end (which sets the
	 * numbering so no id at or below next_id is given again) */
	int (*load_begin)(struct kr_store_be *s, const struct kr_store_table *t,
	                  struct kr_err *err);
	int (*load_row)(struct kr_store_be *s, const char *const *vals,
	                size_t n, struct kr_err *err);
	int (*load_end)(struct kr_store_be *s, const struct kr_store_table *t,
	                int64_t next_id, struct kr_err *err);
	int (*rows)(struct kr_store_be *s, const struct kr_store_table *t,
	            int64_t *n_out, struct kr_err *err);
	/* the highest id t has ever given (at least its max(id)) */
	int (*last_id)(struct kr_store_be *s, const struct kr_store_table *t,
	               int64_t *id_out, struct kr_err *err);
	/* kr_store_slot_take(), kr_store_slot_give(); NULL: one host */
	int (*slot_take)(struct kr_store_be *s, const char *key, unsigned cap,
	                 int *slot_out, struct kr_err *err);
	int (*slot_give)(struct kr_store_be *s, const char *key, int slot,
	                 struct kr_err *err);
	/* kr_store_probe(); NULL: nothing to check beyond the config */
	int (*probe)(const char *where, const char *password_file,
	             struct kr_err *err);
	/* The dashboard's reads (NULL: the front answers "not supported") */
	int (*subscriber_days)(struct kr_store_be *s, const char *list_id,
	                       int64_t since, int64_t utc_offset,
	                       kr_store_day_fn fn, void *ctx,
	                       struct kr_err *err);
	int (*report_sent_series)(struct kr_store_be *s, int64_t report_id,
	                          int64_t bucket, int64_t since,
	                          kr_store_bucket_fn fn, void *ctx,
	                          struct kr_err *err);
	int (*report_domains)(struct kr_store_be *s, int64_t report_id,
	                      size_t limit, kr_store_domain_fn fn, void *ctx,
	                      struct kr_err *err);
	int (*report_replies)(struct kr_store_be *s, int64_t report_id,
	                      size_t limit, kr_store_reply_fn fn, void *ctx,
	                      struct kr_err *err);
};

/* The front's handle. */
struct kr_store {
	const struct kr_store_ops *ops;
	struct kr_store_be *be;
};

/* Adds a backend for the locations that start with prefix (e.g.
 * "postgresql://"); the most recently added match wins over the built-in
 * ones, and a location no prefix claims is an SQLite path. For tests that
 * bring a backend of their own. Not thread-safe: call before any open. */
void kr_store_add_backend(const char *prefix, const struct kr_store_ops *ops);

/* Whether this process runs kr_store_upkeep() from its main loop
 * (kr_store_upkeep_from_loop()): connections opened since then leave
 * such work to it. */
bool kr_store_upkeep_by_loop(void);

/* The built-in backends: paths, and postgresql:// (postgres://) URIs. */
extern const struct kr_store_ops kr_store_sqlite_ops;
extern const struct kr_store_ops kr_store_pg_ops;

#endif
