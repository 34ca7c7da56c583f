/* store.h — all persistent state; the only module that speaks SQL.
 * store.c is a front: each handle is served by a backend (store_backend.h),
 * one SQLite file in WAL mode (store_sqlite.c) or PostgreSQL (store_pg.c).
 * The interface is narrow and row-copying, the same for every backend.
 *
 * Conventions: functions returning int give 0 ok / -1 error (err set; code
 * KR_ERR_BUSY when the database is locked or full, KR_ERR_DB otherwise);
 * lookups give 1 found / 0 not found / -1 error. Times are Unix seconds.
 * One struct kr_store is one connection: use it from one thread at a time
 * (open one per thread, or guard it). */
#ifndef KR_STORE_H
#define KR_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

struct kr_err;
struct kr_store;

enum kr_sub_status {
	KR_SUB_PENDING = 0,
	KR_SUB_ACTIVE = 1,
	KR_SUB_UNSUBSCRIBED = 2,
	KR_SUB_BOUNCED = 3,
};

/* One subscription: an address on one list. */
struct kr_subscriber {
	int64_t id;
	char list_id[65];
	char email[256];
	char name[256];
	enum kr_sub_status status;
	int64_t created_at;
	int64_t consent_at;      /* when consent was given (form/import) */
	int64_t confirmed_at;    /* 0: not confirmed */
	int64_t unsubscribed_at; /* 0: never */
	char consent_source[64]; /* "form", "cli", "import", "import-confirmed" */
	char consent_ip[64];
	char consent_ua[256];
	int bounces;
};

/* The consent record that comes with a sign-up. */
struct kr_consent {
	const char *source; /* as consent_source */
	const char *ip;     /* may be NULL */
	const char *ua;     /* may be NULL */
};

enum kr_delivery_kind { KR_DELIVERY_REPORT = 0, KR_DELIVERY_CONFIRM = 1 };
enum kr_delivery_state {
	KR_DS_QUEUED = 0,
	KR_DS_SENT = 1,
	KR_DS_DEFERRED = 2,
	KR_DS_FAILED = 3,
	KR_DS_UNCERTAIN = 4,
	KR_DS_CANCELLED = 5,
};
enum kr_report_state {
	KR_RS_ACTIVE = 0,
	KR_RS_PAUSED = 1,
	KR_RS_CANCELLED = 2,
};

/* A report as stored: the rendered parts before per-subscriber footers. */
struct kr_report_row {
	int64_t id;
	char list_id[65];
	char *subject;    /* UTF-8 */
	char *preheader;  /* may be "" */
	char *text;       /* text/plain body */
	char *html;       /* text/html body fragment */
	char *source;     /* file path or URL it came from */
	char hash[65];    /* hex SHA-256 of the source bytes */
	int64_t created_at;
	int64_t send_at;  /* 0: at once */
	enum kr_report_state state;
	char *date;       /* the front matter's date ("YYYY-MM-DD"), may be "" */
};
/* Frees the strings of a report row (not r itself). */
void kr_store_report_row_fini(struct kr_report_row *r);

struct kr_delivery_counts {
	int64_t queued, sent, deferred, failed, uncertain, cancelled;
	int64_t in_flight; /* queued or deferred with a live lease */
};

/* A claimed delivery: what a worker needs to compose and send one copy. */
struct kr_claim {
	int64_t delivery_id;
	enum kr_delivery_kind kind;
	int64_t report_id;    /* 0 for a confirmation */
	int64_t subscriber_id;
	char list_id[65];
	char email[256];
	char name[256];       /* the subscriber's name ("" when none;
	                       * stranger input: bodies only) */
	int attempts;         /* before this one */
	int64_t queued_at;
	int64_t lease;        /* this claim's fence: the copy's outcome is
	                       * recorded with it, and only while no later
	                       * claim has taken the row */
};

/* Who claims: the host (config host_id) and this run of kairand on it (a
 * new number at every start). A row's lease records both. */
struct kr_store_owner {
	const char *host;
	int64_t incarnation;
};

/* Opens the store at where and migrates it to the current schema in one
 * transaction. where is an SQLite file path (created if missing) or a
 * PostgreSQL URI ("postgresql://host:port/dbname?sslmode=..." without a
 * password, which comes from password_file, else KAIRAN_DB_PASSWORD;
 * password_file may be NULL). Refuses a database that is not kairan's or
 * has a newer schema, leaving it untouched. */
KR_NODISCARD int kr_store_open(const char *where, const char *password_file,
    struct kr_store **store_out, struct kr_err *err);
void kr_store_close(struct kr_store **sp);
/* Checks, without changing anything, that the store at where can be
 * opened (kairand --check): PostgreSQL connects with the password and
 * reads the schema version (a newer one is refused); an SQLite path is
 * checked by the config already. 0, or -1 with err set. */
KR_NODISCARD int kr_store_probe(const char *where, const char *password_file,
    struct kr_err *err);
/* The schema version this build writes (every backend). */
int kr_store_schema_version(void);
/* The backend behind s: "sqlite" or "postgresql". */
const char *kr_store_backend(const struct kr_store *s);

/* Periodic upkeep. The process that calls kr_store_upkeep() from its
 * main loop (kairand) says so once, before it opens its connections
 * (kr_store_upkeep_from_loop()); its connections then leave that work out
 * of their commits. kr_store_upkeep() never waits for or blocks a reader
 * or writer. (SQLite: a PASSIVE WAL checkpoint, instead of the one inside
 * whichever commit takes the WAL past 1,000 pages — a delivery worker's
 * mark-sent under the lock the other workers wait on, or a sign-up.) */
void kr_store_upkeep_from_loop(void);
KR_NODISCARD int kr_store_upkeep(struct kr_store *s, struct kr_err *err);
/* A number that changes whenever another connection (kairanctl, the web
 * front end, another process or host) commits, and not for this
 * connection's own commits; cheap. Delivery watches it while idle. */
KR_NODISCARD int kr_store_changes(struct kr_store *s, int64_t *mark,
    struct kr_err *err);

/* Explicit transactions around many calls (imports). Nesting not allowed. */
KR_NODISCARD int kr_store_begin(struct kr_store *s, struct kr_err *err);
KR_NODISCARD int kr_store_commit(struct kr_store *s, struct kr_err *err);
void kr_store_rollback(struct kr_store *s);

/* ---- subscribers ---- */

/* The outcome of a sign-up, so the caller can decide on a confirmation
 * mail without telling the stranger anything. */
struct kr_sub_result {
	int64_t id;
	enum kr_sub_status before; /* -1 cast when the row is new */
	bool is_new;
	enum kr_sub_status after;
};

/* Signs email up to list_id. New: inserted PENDING (ACTIVE when
 * double_opt_in is false) with the consent record. PENDING stays PENDING.
 * UNSUBSCRIBED or BOUNCED become PENDING again (ACTIVE without
 * double opt-in) with a fresh consent record. ACTIVE is left alone.
 * name may be NULL. */
KR_NODISCARD int kr_store_subscribe(struct kr_store *s, const char *list_id,
    const char *email, const char *name, const struct kr_consent *consent,
    bool double_opt_in, int64_t now, struct kr_sub_result *res_out,
    struct kr_err *err);
/* Adds one row as given (import, `subscribers add`): when the (list,
 * email) exists nothing changes and *added_out is false. */
KR_NODISCARD int kr_store_subscriber_import(struct kr_store *s,
    const struct kr_subscriber *sub, bool *added_out, struct kr_err *err);
/* The same, giving the new row's id in *id_out (0 when the (list, email)
 * existed), so a confirmation can be queued without a lookup. */
KR_NODISCARD int kr_store_subscriber_import_id(struct kr_store *s,
    const struct kr_subscriber *sub, int64_t *id_out, struct kr_err *err);
/* Lookups: 1 found (copied to *out), 0 not found, -1 error. */
KR_NODISCARD int kr_store_subscriber_get(struct kr_store *s, int64_t id,
    struct kr_subscriber *out, struct kr_err *err);
KR_NODISCARD int kr_store_subscriber_find(struct kr_store *s,
    const char *list_id, const char *email, struct kr_subscriber *out,
    struct kr_err *err);
/* PENDING -> ACTIVE, recording confirmed_at. 1 changed, 0 was not
 * pending, -1 error. */
KR_NODISCARD int kr_store_subscriber_confirm(struct kr_store *s, int64_t id,
    int64_t now, struct kr_err *err);
/* -> UNSUBSCRIBED for this subscription, or for every list of the same
 * address when all_lists; queued deliveries to them are cancelled. The
 * events name report_id (0: none), the report whose link it came from.
 * Returns the number of subscriptions changed, or -1. */
KR_NODISCARD int kr_store_subscriber_unsubscribe(struct kr_store *s,
    int64_t id, bool all_lists, int64_t report_id, int64_t now,
    struct kr_err *err);
/* Records a bounce of subscription id (detail: the DSN status, for the
 * event log). A hard bounce counts; at hard_limit counted bounces an
 * ACTIVE or PENDING subscription becomes BOUNCED and its queued
 * deliveries are cancelled. A soft bounce is only logged. Returns 1 when
 * it became BOUNCED now, 0 otherwise, -1 on error (KR_ERR_NOTFOUND). */
KR_NODISCARD int kr_store_subscriber_bounce(struct kr_store *s, int64_t id,
    bool hard, int hard_limit, int64_t now, const char *detail,
    struct kr_err *err);
/* Removes the subscription and its deliveries (operator `remove`). */
KR_NODISCARD int kr_store_subscriber_delete(struct kr_store *s, int64_t id,
    struct kr_err *err);
typedef int (*kr_store_sub_fn)(void *ctx, const struct kr_subscriber *sub);
/* Calls fn for each subscription (list_id NULL: all lists; status < 0: any
 * status), in id order. A non-zero return from fn stops and is returned.
 * fn may call other store functions, but not this one. */
KR_NODISCARD int kr_store_subscriber_foreach(struct kr_store *s,
    const char *list_id, int status, kr_store_sub_fn fn, void *ctx,
    struct kr_err *err);
/* Number of subscriptions of a list (NULL: all) in a status (<0: any). */
KR_NODISCARD int kr_store_subscriber_count(struct kr_store *s,
    const char *list_id, int status, int64_t *n_out, struct kr_err *err);
/* Confirmation mails queued to this address since the given time (for the
 * per-address limit of the form). */
KR_NODISCARD int kr_store_confirm_count(struct kr_store *s, const char *email,
    int64_t since, int64_t *n_out, struct kr_err *err);
/* Queues a confirmation mail to subscriber id (due now, claimed before any
 * report mail). */
KR_NODISCARD int kr_store_confirm_enqueue(struct kr_store *s, int64_t id,
    int64_t now, struct kr_err *err);

/* ---- reports ---- */

/* Stores r (id, created_at and state are ignored) and queues one delivery
 * to every ACTIVE subscriber of r->list_id, in one transaction. The same
 * hash stored before fails with KR_ERR_EXISTS unless again. */
KR_NODISCARD int kr_store_report_add(struct kr_store *s,
    const struct kr_report_row *r, bool again, int64_t now,
    int64_t *id_out, int64_t *queued_out, struct kr_err *err);
KR_NODISCARD int kr_store_report_get(struct kr_store *s, int64_t id,
    struct kr_report_row *out, struct kr_err *err);
typedef int (*kr_store_report_fn)(void *ctx, const struct kr_report_row *r,
    const struct kr_delivery_counts *counts);
/* Every report, newest first (limit 0: all). fn may use the store. */
KR_NODISCARD int kr_store_report_foreach(struct kr_store *s, size_t limit,
    kr_store_report_fn fn, void *ctx, struct kr_err *err);
/* Pause, resume (ACTIVE) or cancel (its queued rows become CANCELLED). */
KR_NODISCARD int kr_store_report_set_state(struct kr_store *s, int64_t id,
    enum kr_report_state state, struct kr_err *err);
/* The report governor's baseline: the complaints and hard bounces the
 * operator had seen when last resuming the report (0, 0 before), and why
 * the governor paused it (into reason, reason_size bytes; "" when it did
 * not). */
KR_NODISCARD int kr_store_report_governor_acked(struct kr_store *s,
    int64_t report_id, int64_t *complaints_out, int64_t *bounces_out,
    char *reason, size_t reason_size, struct kr_err *err);
/* Records that baseline and the reason (NULL: ""); complaints < 0 sets
 * the reason only (the governor pausing). */
KR_NODISCARD int kr_store_report_governor_ack(struct kr_store *s,
    int64_t report_id, int64_t complaints, int64_t bounces,
    const char *reason, struct kr_err *err);
/* A list's confirmation mails, for the governor: copies sent, the hard
 * bounces and complaints they drew, whether the governor paused them
 * (claims then skip them), why, and the counts seen at the last resume. */
struct kr_store_list_governor {
	int64_t sent, hard, complaints, ack_complaints, ack_bounces;
	bool paused;
	char reason[256];
};
KR_NODISCARD int kr_store_confirm_governor_get(struct kr_store *s,
    const char *list_id, struct kr_store_list_governor *out,
    struct kr_err *err);
/* Pauses or resumes a list's confirmations; ack < 0 keeps the counts. */
KR_NODISCARD int kr_store_confirm_governor_set(struct kr_store *s,
    const char *list_id, bool paused, const char *reason,
    int64_t ack_complaints, int64_t ack_bounces, struct kr_err *err);
/* report_id 0: every delivery. */
KR_NODISCARD int kr_store_delivery_counts(struct kr_store *s,
    int64_t report_id, struct kr_delivery_counts *out, struct kr_err *err);
/* FAILED (and UNCERTAIN when with_uncertain) of a report back to QUEUED. */
KR_NODISCARD int kr_store_report_retry(struct kr_store *s, int64_t report_id,
    bool with_uncertain, int64_t *n_out, struct kr_err *err);

/* ---- delivery ---- */

/* Claims up to max due deliveries (QUEUED or DEFERRED, next attempt <= now,
 * no live lease, report ACTIVE and send_at <= now, subscriber ACTIVE, or
 * PENDING for confirmations), confirmations first, then in queue order, and
 * leases them to owner until lease_until, with a new fence (out[].lease).
 * Fills out[0..*n_out). (Queue order: due retries, oldest first, before
 * rows not tried yet, by id. A row whose subscriber is no longer ACTIVE, or
 * PENDING for a confirmation, is cancelled instead of claimed.) */
KR_NODISCARD int kr_store_claim(struct kr_store *s,
    const struct kr_store_owner *owner, int64_t now, int64_t lease_until,
    size_t max, struct kr_claim *out, size_t *n_out, struct kr_err *err);
/* Outcomes, each its own transaction, fenced: lease is the claim's
 * (kr_claim.lease); once a later claim took the row (the lease ran out
 * and another host, or this host after a restart, claimed it) nothing is
 * recorded and the call fails with KR_ERR_STALE, so a late outcome never
 * overwrites another's. reply: the server's text (may be NULL). code:
 * SMTP reply code (0 when none). */
KR_NODISCARD int kr_store_mark_sent(struct kr_store *s, int64_t delivery_id,
    int64_t lease, int64_t now, const char *reply, struct kr_err *err);
KR_NODISCARD int kr_store_mark_deferred(struct kr_store *s,
    int64_t delivery_id, int64_t lease, int64_t now, int64_t next_attempt,
    int code, const char *reply, struct kr_err *err);
KR_NODISCARD int kr_store_mark_failed(struct kr_store *s, int64_t delivery_id,
    int64_t lease, int64_t now, int code, const char *reply,
    struct kr_err *err);
KR_NODISCARD int kr_store_mark_uncertain(struct kr_store *s,
    int64_t delivery_id, int64_t lease, int64_t now, const char *reply,
    struct kr_err *err);
/* Drops the lease of a claimed row that was not attempted (shutdown);
 * fenced as the outcomes. */
KR_NODISCARD int kr_store_release(struct kr_store *s, int64_t delivery_id,
    int64_t lease, struct kr_err *err);
/* Drops the leases that owner's host holds under another incarnation (a
 * kairand that was killed there), so its rows go again at once instead of
 * when their leases run out; *n_out (may be NULL) is how many. */
KR_NODISCARD int kr_store_reclaim(struct kr_store *s,
    const struct kr_store_owner *owner, int64_t now, int64_t *n_out,
    struct kr_err *err);

/* ---- consent records (特定電子メール法 Article 3) ---- */

/* One entry of a subscription's history: a mail queued to it (kind
 * KR_DELIVERY_REPORT or _CONFIRM, its state, at = when sent, else when
 * queued; a report mail's subject and report hash) or an event (kind
 * -1: event is its kind — subscribe, confirm, unsubscribe, bounce-hard…
 * — and detail its detail). Strings are borrowed for the call. */
struct kr_store_history_row {
	int64_t at;
	int kind;
	int64_t report_id;
	int state;
	const char *subject, *hash, *event, *detail;
};
typedef int (*kr_store_history_fn)(void *ctx,
    const struct kr_store_history_row *h);
/* Calls fn for every mail and event of subscription id in time order;
 * a non-zero return from fn stops and is returned. */
KR_NODISCARD int kr_store_subscriber_history(struct kr_store *s, int64_t id,
    kr_store_history_fn fn, void *ctx, struct kr_err *err);
/* When the last report mail to subscription id was sent (0: never). */
KR_NODISCARD int kr_store_subscriber_last_sent(struct kr_store *s,
    int64_t id, int64_t *at_out, struct kr_err *err);
/* Deletes subscription id and every record of it (deliveries, bounces,
 * events): a privacy request, once the retention allows (the caller's
 * rule). Logs an event "forget" that names no one. */
KR_NODISCARD int kr_store_subscriber_forget(struct kr_store *s, int64_t id,
    int64_t now, struct kr_err *err);

/* kr_store_subscriber_import_id() for n subscriptions at once (one round
 * trip on PostgreSQL): ids_out[i] is subs[i]'s new id, or 0 when its
 * (list, address) was there already, ignoring ASCII case, or came earlier
 * in subs. All or nothing within the caller's transaction. */
KR_NODISCARD int kr_store_subscriber_import_many(struct kr_store *s,
    const struct kr_subscriber *subs, size_t n, int64_t *ids_out,
    struct kr_err *err);

/* Rates that hold for the sum of every host of one database (delivery.rate
 * and per-domain rates): the token bucket key (e.g. "global"), filled at
 * rate tokens/s up to burst, kept in the database and timed by its clock.
 * Takes up to want whole tokens; *got_out is what was granted (0 when the
 * bucket is empty: wait about 1/rate). Where one host has the database to
 * itself (SQLite) every want is granted and kr_store_rates_shared() is
 * false: the caller's own buckets are exact there. */
KR_NODISCARD int kr_store_rate_take(struct kr_store *s, const char *key,
    double rate, double burst, double want, double *got_out,
    struct kr_err *err);
bool kr_store_rates_shared(const struct kr_store *s);

/* Copies every row of src into dst, which must hold none (any backend to
 * any other: `kairanctl store copy`): ids kept, and dst never gives out an
 * id src had given. src is read in one snapshot (stop kairand first all
 * the same: what it writes meanwhile is not copied). Each table's rows are
 * counted in both at the end. progress (may be NULL) is called every few
 * thousand rows and at each table's end with the table, rows copied and
 * rows it has. 0, or -1 with err set (dst may then hold part of the copy:
 * drop it and copy again). */
typedef void (*kr_store_progress_fn)(void *ctx, const char *table,
    int64_t done, int64_t total);
KR_NODISCARD int kr_store_copy(struct kr_store *src, struct kr_store *dst,
    kr_store_progress_fn progress, void *ctx, struct kr_err *err);

/* Connection caps that hold for the sum of every host (per_domain
 * connections): takes one of the cap slots of key on this connection,
 * held until kr_store_slot_give() or until the connection ends (so a host
 * that dies frees its slots with it). 1 taken (*slot_out set), 0 when all
 * cap are held (by this or other hosts), -1 on error. Where one host has
 * the database to itself (SQLite, kr_store_rates_shared() false): 1 at
 * once, the caller's own count being exact. */
KR_NODISCARD int kr_store_slot_take(struct kr_store *s, const char *key,
    unsigned cap, int *slot_out, struct kr_err *err);
int kr_store_slot_give(struct kr_store *s, const char *key, int slot,
    struct kr_err *err);

/* Appends to the event log (consent, bounces, operator actions). */
KR_NODISCARD int kr_store_event(struct kr_store *s, const char *kind,
    int64_t subscriber_id, int64_t report_id, const char *detail,
    struct kr_err *err);
/* Consistent online copy to path (SQLite: the backup API; PostgreSQL
 * refuses, naming pg_dump). */
KR_NODISCARD int kr_store_backup(struct kr_store *s, const char *path,
    struct kr_err *err);
/* Marks the caller as the one daemon of this database: -1 (KR_ERR_BUSY)
 * when another kairand has it (SQLite: a lock on DATABASE-lock, held
 * until kr_store_close; PostgreSQL: several hosts share one database,
 * nothing to take). */
KR_NODISCARD int kr_store_lock_daemon(struct kr_store *s, struct kr_err *err);
/* A cheap query: 0 when the database answers, is still the file that was
 * opened, and its last write (if any failed) has been followed by one
 * that worked; -1 with the reason otherwise. */
KR_NODISCARD int kr_store_ping(struct kr_store *s, struct kr_err *err);

/* ---- bounces and complaints ---- */

/* kind values; the same numbers as enum kr_bounce_kind (bounce.h). */
#define KR_STORE_BOUNCE_HARD 1
#define KR_STORE_BOUNCE_SOFT 2
#define KR_STORE_BOUNCE_COMPLAINT 3

/* The policy (config `bounce:`). */
struct kr_bounce_policy {
	unsigned hard_threshold; /* counted bounces that make a subscriber
	                            BOUNCED; 0 is taken as 1 */
	unsigned soft_threshold; /* soft bounces within soft_window that
	                            count as one; 0 is taken as 1 */
	int64_t soft_window;     /* seconds */
	int64_t reset_after;     /* seconds: a subscriber whose last counted
	                            bounce is older than this starts again
	                            from 0 at the next one; 0: never */
};

/* One stored bounce or complaint. email and list_id are filled by
 * kr_store_bounce_foreach only. */
struct kr_bounce_row {
	int64_t id;
	int64_t at;
	int64_t subscriber_id;
	int64_t report_id; /* 0: none or unknown */
	int kind;          /* KR_STORE_BOUNCE_* */
	char status[16];   /* "5.1.1" or "" */
	char diagnostic[256];
	char source[16];   /* "dsn", "arf", "smtp", … */
	char email[256];
	char list_id[65];
};

struct kr_bounce_result {
	bool counted;      /* it went into the subscriber's bounce count */
	bool bounced;      /* the subscriber became BOUNCED now */
	bool unsubscribed; /* a complaint made it UNSUBSCRIBED now */
	int bounces;       /* the subscriber's count afterwards */
	int64_t cancelled; /* queued deliveries cancelled */
	bool duplicate;    /* the same copy (subscriber, report) bounced
	                      before: stored, not counted */
	bool reset;        /* the count started again (reset_after) */
};

/* Stores b (id, email, list_id ignored; at is "now") and applies p in the
 * same transaction: a bounce of a copy (subscriber, report) that bounced
 * before is kept but not counted; otherwise HARD counts at once; SOFT counts once soft_threshold
 * uncounted soft bounces fall within soft_window; when the count reaches
 * hard_threshold an ACTIVE or PENDING subscriber becomes BOUNCED and its
 * queued deliveries are cancelled (event "bounced"). A COMPLAINT
 * unsubscribes at once (event "complaint", then "unsubscribe"). Every
 * bounce adds an event "bounce". KR_ERR_NOTFOUND when the subscriber does
 * not exist. */
KR_NODISCARD int kr_store_bounce_record(struct kr_store *s,
    const struct kr_bounce_row *b, const struct kr_bounce_policy *p,
    struct kr_bounce_result *res_out, struct kr_err *err);
typedef int (*kr_store_bounce_fn)(void *ctx, const struct kr_bounce_row *b);
/* Calls fn for the newest bounces and complaints first (report_id 0: of
 * every report; limit 0: all). A non-zero return from fn stops and is
 * returned. */
KR_NODISCARD int kr_store_bounce_foreach(struct kr_store *s,
    int64_t report_id, size_t limit, kr_store_bounce_fn fn, void *ctx,
    struct kr_err *err);

/* ---- token keys ----
 * The database keeps the fingerprint of every token key it has seen (a
 * keyed hash, never the key), so that a lost or different key file is
 * found at start, not by subscribers whose links fail. */

/* Records key id with its fingerprint (hex) the first time; 0 when new or
 * the same as recorded, 1 when the database knows another key under that
 * id (its fingerprint copied to known), -1 on error. */
KR_NODISCARD int kr_store_key_check(struct kr_store *s, uint32_t id,
    const char *fingerprint, int64_t now, char *known, size_t known_size,
    struct kr_err *err);
/* Non-zero *n_out when tokens may have been issued from this database
 * (it knows a key, or a mail has gone out): a missing key file then
 * breaks links already sent. */
KR_NODISCARD int kr_store_tokens_issued(struct kr_store *s, int64_t *n_out,
    struct kr_err *err);
/* Forgets every recorded key (the operator replaced a lost key file on
 * purpose: `kairanctl keys rotate --replace-lost`), with an event. */
KR_NODISCARD int kr_store_keys_forget(struct kr_store *s, struct kr_err *err);

/* ---- DKIM keys (schema v12) ----
 * The database keeps, for every DKIM signing key a host has started with,
 * its domain (d=) and selector (s=), a fingerprint of its public key
 * (which DNS publishes anyway: never the private key) and the host that
 * recorded it first, so that a host whose key file differs from the
 * others' is refused at its start instead of signing mail that fails
 * DKIM wherever the published key is the other one. */

struct kr_store_dkim_key {
	char fingerprint[72]; /* hex */
	char host[256];       /* host_id of the host that recorded it */
	int64_t seen_at;
};

/* Records (domain, selector) with fingerprint and host the first time
 * (hosts starting together: the first one written wins). 0 when new or
 * the same as recorded, 1 when the database knows another key under that
 * domain and selector (*known_out filled; it may be NULL), -1 on
 * error. */
KR_NODISCARD int kr_store_dkim_check(struct kr_store *s, const char *domain,
    const char *selector, const char *fingerprint, const char *host,
    int64_t now, struct kr_store_dkim_key *known_out, struct kr_err *err);
/* The operator replaced the key under (domain, selector) on purpose
 * (`kairanctl dkim replace`): fingerprint becomes the one the database
 * knows, whatever was there, with an event naming both. 1 when another
 * key was recorded before (*old_out filled; it may be NULL), 0 when none
 * or the same, -1 on error. */
KR_NODISCARD int kr_store_dkim_replace(struct kr_store *s,
    const char *domain, const char *selector, const char *fingerprint,
    const char *host, int64_t now, struct kr_store_dkim_key *old_out,
    struct kr_err *err);

/* ---- what /healthz names ---- */

/* Writes which database s is and its schema version as the database
 * holds it now: "sqlite PATH, schema v12" or "postgresql HOST:PORT/DBNAME,
 * schema v12"; never a password, a user or the URI's options. When the
 * version cannot be read, out still names the database (without the
 * schema) and -1 returns with err set. */
KR_NODISCARD int kr_store_describe(struct kr_store *s, char *out, size_t n,
    struct kr_err *err);

/* ---- counts for /metrics ---- */

/* Bounces and complaints stored so far, counted or not: of one report's
 * copies, or of every report (report_id 0). */
struct kr_bounce_counts {
	int64_t hard, soft, complaint;
	int64_t unsubscribed; /* subscriptions ended from the report's own
	                         links (one report only; 0 for report_id 0) */
};
KR_NODISCARD int kr_store_bounce_counts(struct kr_store *s,
    int64_t report_id, struct kr_bounce_counts *out, struct kr_err *err);
typedef int (*kr_store_tally_fn)(void *ctx, const char *list_id,
    enum kr_sub_status status, int64_t n);
/* Calls fn once per (list, status) that has subscriptions, in list id
 * then status order (one query). A non-zero return from fn stops and is
 * returned. fn must not use the store. */
KR_NODISCARD int kr_store_subscriber_tally(struct kr_store *s,
    kr_store_tally_fn fn, void *ctx, struct kr_err *err);

/* ---- the operator's dashboard (subscribers/admin.c) ----
 * Read-only summaries; an index serves each (schema v10). A backend that
 * lacks one answers -1 with KR_ERR_INVALID ("not supported"). */

/* One day of a list: sign-ups (subscriptions whose latest consent,
 * consent_at, fell on it) and unsubscribes (subscriptions unsubscribed
 * on it that are still unsubscribed). day is the day's first second. */
typedef int (*kr_store_day_fn)(void *ctx, int64_t day, int64_t signups,
    int64_t unsubscribes);
/* Calls fn in day order for every day from the one holding since on
 * which list_id had a sign-up or an unsubscribe (others are skipped).
 * Days start at midnight of UTC + utc_offset seconds (32400 for Japan).
 * A non-zero return from fn stops and is returned; fn must not use the
 * store. */
KR_NODISCARD int kr_store_subscriber_days(struct kr_store *s,
    const char *list_id, int64_t since, int64_t utc_offset,
    kr_store_day_fn fn, void *ctx, struct kr_err *err);

/* Copies of report_id sent at or after since (0: all), per bucket seconds
 * of their sent_at (bucket > 0; a bucket starts at a multiple of bucket),
 * in time order, buckets with none skipped. Read from schema v11's
 * per-minute counters when bucket and since are whole minutes. fn as for
 * kr_store_subscriber_days. */
typedef int (*kr_store_bucket_fn)(void *ctx, int64_t start, int64_t n);
KR_NODISCARD int kr_store_report_sent_series(struct kr_store *s,
    int64_t report_id, int64_t bucket, int64_t since, kr_store_bucket_fn fn,
    void *ctx, struct kr_err *err);

/* The limit recipient domains (limit 0: all) with most copies of
 * report_id, most first (ties in domain order), with their copies by
 * state (c->in_flight is 0). domain is borrowed for the call. fn as
 * above. */
typedef int (*kr_store_domain_fn)(void *ctx, const char *domain,
    const struct kr_delivery_counts *c);
KR_NODISCARD int kr_store_report_domains(struct kr_store *s,
    int64_t report_id, size_t limit, kr_store_domain_fn fn, void *ctx,
    struct kr_err *err);

/* The relay replies that report_id's unsent copies (DEFERRED, FAILED,
 * UNCERTAIN: each keeps its last reply) hold, grouped by (state, code,
 * text), the largest groups first, at most limit (0: all). reply is the
 * stored text ("" when none), borrowed for the call. fn as above. */
typedef int (*kr_store_reply_fn)(void *ctx, enum kr_delivery_state state,
    int code, const char *reply, int64_t n);
KR_NODISCARD int kr_store_report_replies(struct kr_store *s,
    int64_t report_id, size_t limit, kr_store_reply_fn fn, void *ctx,
    struct kr_err *err);

#endif
