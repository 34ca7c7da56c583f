/* store_sqlite.c — the SQLite backend of store.h (store_backend.h); the
 * only file that includes sqlite3.h.
 *
 * One file in WAL mode, synchronous=NORMAL (a power cut may lose the last
 * transactions but never corrupts), foreign keys on, a 5 s busy timeout.
 * The schema carries its version in PRAGMA user_version; sq_open runs
 * the missing forward steps of `migrations` in one IMMEDIATE transaction.
 * Every data statement is prepared once, cached on the handle and
 * finalised in sq_close.
 *
 * Delivery rows: a partial index on QUEUED rows keyed by (report_id, id)
 * lets kr_store_claim walk the queue in order without looking at sent or
 * deferred rows (confirmations have report_id NULL and come first), and a
 * partial index on DEFERRED rows keyed by next_attempt finds the retries
 * that are due without scanning those that wait.
 *
 * Addresses are matched without regard to ASCII letter case (schema v4: a
 * unique index on (list_id, email COLLATE NOCASE)); the address is stored
 * as first typed, and mail goes to that spelling. */
#include "store_sqlite.h"

#include "store_backend.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "buf.h"
#include "err.h"
#include "log.h"
#include "xmem.h"

#define BUSY_TIMEOUT_MS 5000

/* ---- schema ---- */

/* v1: the initial schema. Never edit a step once released: add one. */
static const char schema_v1[] =
    "CREATE TABLE subscribers ("
    " id INTEGER PRIMARY KEY,"
    " list_id TEXT NOT NULL,"
    " email TEXT NOT NULL,"
    " name TEXT NOT NULL DEFAULT '',"
    " status INTEGER NOT NULL,"
    " created_at INTEGER NOT NULL,"
    " consent_at INTEGER NOT NULL DEFAULT 0,"
    " confirmed_at INTEGER NOT NULL DEFAULT 0,"
    " unsubscribed_at INTEGER NOT NULL DEFAULT 0,"
    " consent_source TEXT NOT NULL DEFAULT '',"
    " consent_ip TEXT NOT NULL DEFAULT '',"
    " consent_ua TEXT NOT NULL DEFAULT '',"
    " bounces INTEGER NOT NULL DEFAULT 0,"
    " UNIQUE (list_id, email));"
    "CREATE TABLE reports ("
    " id INTEGER PRIMARY KEY,"
    " list_id TEXT NOT NULL,"
    " subject TEXT NOT NULL,"
    " preheader TEXT NOT NULL DEFAULT '',"
    " text TEXT NOT NULL,"
    " html TEXT NOT NULL,"
    " source TEXT NOT NULL DEFAULT '',"
    " hash TEXT NOT NULL,"
    " created_at INTEGER NOT NULL,"
    " send_at INTEGER NOT NULL DEFAULT 0,"
    " state INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX reports_hash ON reports (hash);"
    "CREATE TABLE deliveries ("
    " id INTEGER PRIMARY KEY,"
    " kind INTEGER NOT NULL,"
    " report_id INTEGER REFERENCES reports (id) ON DELETE CASCADE,"
    " subscriber_id INTEGER NOT NULL"
    "  REFERENCES subscribers (id) ON DELETE CASCADE,"
    " domain TEXT NOT NULL DEFAULT '',"
    " state INTEGER NOT NULL DEFAULT 0,"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " queued_at INTEGER NOT NULL,"
    " next_attempt INTEGER NOT NULL DEFAULT 0,"
    " lease_until INTEGER NOT NULL DEFAULT 0,"
    " code INTEGER NOT NULL DEFAULT 0,"
    " reply TEXT,"
    " sent_at INTEGER NOT NULL DEFAULT 0,"
    " UNIQUE (report_id, subscriber_id));"
    "CREATE INDEX deliveries_subscriber ON deliveries (subscriber_id);"
    "CREATE INDEX deliveries_report ON deliveries"
    " (report_id, state, lease_until);"
    "CREATE INDEX deliveries_queued ON deliveries"
    " (report_id, id, lease_until) WHERE state = 0;"
    "CREATE INDEX deliveries_deferred ON deliveries"
    " (next_attempt, id) WHERE state = 2;";

/* v2: the event log (consent, operator actions) and the index that finds
 * every subscription of one address (unsubscribe from all lists, the
 * confirmation limit of the form). */
static const char schema_v2[] =
    "CREATE TABLE events ("
    " id INTEGER PRIMARY KEY,"
    " at INTEGER NOT NULL,"
    " kind TEXT NOT NULL,"
    " subscriber_id INTEGER,"
    " report_id INTEGER,"
    " detail TEXT NOT NULL DEFAULT '');"
    "CREATE INDEX events_subscriber ON events (subscriber_id);"
    "CREATE INDEX subscribers_email ON subscribers (email);";

/* migrations[i] takes the schema from version i to i + 1. */
/* v3: returned mail and complaints (kr_store_bounce_record). counted: 1
 * the row has gone into subscribers.bounces (a hard one at once, soft ones
 * when soft_threshold of them fall within soft_window), 0 not yet, -1
 * never (a second bounce of the same copy). */
static const char schema_v3[] =
    "CREATE TABLE bounces ("
    " id INTEGER PRIMARY KEY,"
    " at INTEGER NOT NULL,"
    " subscriber_id INTEGER NOT NULL"
    "  REFERENCES subscribers (id) ON DELETE CASCADE,"
    " report_id INTEGER,"
    " kind INTEGER NOT NULL,"
    " status TEXT NOT NULL DEFAULT '',"
    " diagnostic TEXT NOT NULL DEFAULT '',"
    " source TEXT NOT NULL DEFAULT '',"
    " counted INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX bounces_subscriber ON bounces (subscriber_id, kind, at);"
    "CREATE INDEX bounces_report ON bounces (report_id);";

/* v4: one subscription per (list, address) whatever the letter case
 * (NOCASE folds ASCII only: enough, since domains are stored lower-case
 * and A-labels are ASCII), and the index that finds every list of one
 * address that way. Duplicates already there are dealt with first by
 * merge_case_duplicates(). */
static const char schema_v4[] =
    "CREATE UNIQUE INDEX subscribers_list_email_nocase ON subscribers"
    " (list_id, email COLLATE NOCASE);"
    "CREATE INDEX subscribers_email_nocase ON subscribers"
    " (email COLLATE NOCASE);";

/* v5: subscribers by list and status without a table scan (the gauges
 * of /metrics group a million rows in 0.1 s instead of 0.45 s; `subscribers
 * list --list L --status S` and queueing a report use it too). */
static const char schema_v5[] =
    "CREATE INDEX subscribers_list_status ON subscribers (list_id, status);";

/* v6: subscriber ids are never used twice. Without AUTOINCREMENT SQLite
 * gives a new row the largest id + 1, so after the newest subscriber was
 * removed the next sign-up got their id, and the removed person's old
 * links (confirm, unsubscribe, VERP) acted on the newcomer. The table is
 * rebuilt with AUTOINCREMENT (foreign keys are off around the migration,
 * see migrate()), and its sequence starts above every id the event log
 * and the bounces have seen, so ids removed before this version are not
 * given out again either. token_keys: the fingerprint of every token key
 * the database has seen (never the key), so a lost or different key file
 * is noticed at start, not by subscribers whose links fail. */
static const char schema_v6[] =
    "CREATE TABLE subscribers_v6 ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " list_id TEXT NOT NULL,"
    " email TEXT NOT NULL,"
    " name TEXT NOT NULL DEFAULT '',"
    " status INTEGER NOT NULL,"
    " created_at INTEGER NOT NULL,"
    " consent_at INTEGER NOT NULL DEFAULT 0,"
    " confirmed_at INTEGER NOT NULL DEFAULT 0,"
    " unsubscribed_at INTEGER NOT NULL DEFAULT 0,"
    " consent_source TEXT NOT NULL DEFAULT '',"
    " consent_ip TEXT NOT NULL DEFAULT '',"
    " consent_ua TEXT NOT NULL DEFAULT '',"
    " bounces INTEGER NOT NULL DEFAULT 0,"
    " UNIQUE (list_id, email));"
    "INSERT INTO subscribers_v6 SELECT id, list_id, email, name, status,"
    " created_at, consent_at, confirmed_at, unsubscribed_at,"
    " consent_source, consent_ip, consent_ua, bounces FROM subscribers;"
    "DROP TABLE subscribers;"
    "ALTER TABLE subscribers_v6 RENAME TO subscribers;"
    "CREATE INDEX subscribers_email ON subscribers (email);"
    "CREATE UNIQUE INDEX subscribers_list_email_nocase ON subscribers"
    " (list_id, email COLLATE NOCASE);"
    "CREATE INDEX subscribers_email_nocase ON subscribers"
    " (email COLLATE NOCASE);"
    "CREATE INDEX subscribers_list_status ON subscribers (list_id, status);"
    "DELETE FROM sqlite_sequence WHERE name = 'subscribers';"
    "INSERT INTO sqlite_sequence (name, seq) VALUES ('subscribers', max("
    " coalesce((SELECT max(id) FROM subscribers), 0),"
    " coalesce((SELECT max(subscriber_id) FROM events), 0),"
    " coalesce((SELECT max(subscriber_id) FROM bounces), 0),"
    " coalesce((SELECT max(subscriber_id) FROM deliveries), 0)));"
    "CREATE TABLE token_keys ("
    " id INTEGER PRIMARY KEY,"
    " fingerprint TEXT NOT NULL,"
    " seen_at INTEGER NOT NULL);"
    /* one row sq_ping() writes after a failed write, to see
     * whether writing works again */
    "CREATE TABLE health (id INTEGER PRIMARY KEY CHECK (id = 1),"
    " at INTEGER NOT NULL);";

/* v7 (issue 15, Japanese senders): the report's own front-matter date
 * (the archive shows it, not the day it was queued). */
static const char schema_v7[] =
    "ALTER TABLE reports ADD COLUMN date TEXT NOT NULL DEFAULT '';";

/* v8: the report governor (lib/governor.c): the complaints and hard
 * bounces the operator has seen when resuming a paused report (`kairanctl
 * resume`), so the governor pauses again only on new ones; and why the
 * governor paused it ('' when it did not, or since the resume). */
static const char schema_v8[] =
    "ALTER TABLE reports ADD COLUMN governor_complaints INTEGER NOT NULL"
    " DEFAULT 0;"
    "ALTER TABLE reports ADD COLUMN governor_bounces INTEGER NOT NULL"
    " DEFAULT 0;"
    "ALTER TABLE reports ADD COLUMN governor_reason TEXT NOT NULL"
    " DEFAULT '';"
    /* a list whose confirmation mails the governor paused */
    "CREATE TABLE governor_lists ("
    " list_id TEXT PRIMARY KEY,"
    " paused INTEGER NOT NULL DEFAULT 0,"
    " reason TEXT NOT NULL DEFAULT '',"
    " ack_complaints INTEGER NOT NULL DEFAULT 0,"
    " ack_bounces INTEGER NOT NULL DEFAULT 0);";

/* v9: a lease records its owner (host, incarnation) and the claim's fence
 * (kr_store_claim(), the marks). */
static const char schema_v9[] =
    "ALTER TABLE deliveries ADD COLUMN lease_host TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE deliveries ADD COLUMN lease_inc INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE deliveries ADD COLUMN lease_token INTEGER NOT NULL"
    " DEFAULT 0;"
    /* the unsubscribes a report's links brought (kr_store_bounce_counts) */
    "CREATE INDEX events_report ON events (report_id, kind)"
    " WHERE report_id IS NOT NULL;";

/* v10 (issue 17, the dashboard): the indexes its reads stay fast on at a
 * million subscribers and ten million deliveries: sign-ups and
 * unsubscribes of a list by day (kr_store_subscriber_days), the sent
 * copies of a report by time (kr_store_report_sent_series) and its copies
 * by recipient domain (kr_store_report_domains), each read from the index
 * alone. */
static const char schema_v10[] =
    "CREATE INDEX subscribers_list_consent ON subscribers"
    " (list_id, consent_at);"
    "CREATE INDEX subscribers_list_unsub ON subscribers"
    " (list_id, unsubscribed_at) WHERE unsubscribed_at > 0;"
    "CREATE INDEX deliveries_report_sent ON deliveries"
    " (report_id, state, sent_at);"
    "CREATE INDEX deliveries_report_domain ON deliveries"
    " (report_id, domain, state);";

/* v11 (issue 17): counters kept by triggers in the writing transaction,
 * so the dashboard, /metrics and `kairanctl status` read a few rows
 * instead of counting millions of rows (bench/RESULTS.md):
 * - delivery_tally: copies per report (0: confirmations) and state
 *   (kr_store_delivery_counts());
 * - report_minutes: a report's sent copies per minute of sent_at
 *   (kr_store_report_sent_series());
 * - report_domains: a report's copies per recipient domain and state
 *   (kr_store_report_domains()); these two replace v10's
 *   deliveries_report_sent and deliveries_report_domain;
 * - subscriber_tally: subscriptions per list and status
 *   (kr_store_subscriber_tally(), kr_store_subscriber_count());
 * - subscriber_quarters: per list and quarter hour (t / 900) the
 *   subscriptions whose consent_at and whose unsubscribed_at (when > 0)
 *   fall in it (kr_store_subscriber_days(): every UTC offset in use is a
 *   whole number of quarter hours).
 * Each is filled from the rows already there when the migration runs. */
#define DT_ADD(r)                                                             \
	" INSERT INTO delivery_tally VALUES"                                  \
	"  (coalesce(" r ".report_id, 0), " r ".state, 1)"                     \
	"  ON CONFLICT (report_id, state) DO UPDATE SET n = n + 1;"           \
	" INSERT INTO report_minutes SELECT " r ".report_id,"                 \
	"  " r ".sent_at / 60, 1 WHERE " r ".state = 1"                        \
	"  AND " r ".report_id IS NOT NULL"                                   \
	"  ON CONFLICT (report_id, minute) DO UPDATE SET n = n + 1;"          \
	" INSERT INTO report_domains SELECT " r ".report_id, " r ".domain,"   \
	"  " r ".state, 1 WHERE " r ".report_id IS NOT NULL"                   \
	"  ON CONFLICT (report_id, domain, state) DO UPDATE SET n = n + 1;"
#define DT_SUB(r)                                                             \
	" UPDATE delivery_tally SET n = n - 1 WHERE"                          \
	"  report_id = coalesce(" r ".report_id, 0) AND state = " r ".state;"  \
	" UPDATE report_minutes SET n = n - 1 WHERE " r ".state = 1"           \
	"  AND report_id = " r ".report_id AND minute = " r ".sent_at / 60;"   \
	" UPDATE report_domains SET n = n - 1 WHERE"                          \
	"  report_id = " r ".report_id AND domain = " r ".domain"              \
	"  AND state = " r ".state;"
static const char schema_v11[] =
    "CREATE TABLE delivery_tally ("
    " report_id INTEGER NOT NULL, state INTEGER NOT NULL,"
    " n INTEGER NOT NULL, PRIMARY KEY (report_id, state)) WITHOUT ROWID;"
    "INSERT INTO delivery_tally SELECT coalesce(report_id, 0), state,"
    " count(*) FROM deliveries GROUP BY 1, 2;"
    "CREATE TABLE report_minutes ("
    " report_id INTEGER NOT NULL, minute INTEGER NOT NULL,"
    " n INTEGER NOT NULL, PRIMARY KEY (report_id, minute)) WITHOUT ROWID;"
    "INSERT INTO report_minutes SELECT report_id, sent_at / 60, count(*)"
    " FROM deliveries WHERE state = 1 AND report_id IS NOT NULL"
    " GROUP BY 1, 2;"
    "CREATE TABLE report_domains ("
    " report_id INTEGER NOT NULL, domain TEXT NOT NULL,"
    " state INTEGER NOT NULL, n INTEGER NOT NULL,"
    " PRIMARY KEY (report_id, domain, state)) WITHOUT ROWID;"
    "INSERT INTO report_domains SELECT report_id, domain, state, count(*)"
    " FROM deliveries WHERE report_id IS NOT NULL GROUP BY 1, 2, 3;"
    /* the counters replace these two: each mark no longer updates them */
    "DROP INDEX deliveries_report_sent;"
    "DROP INDEX deliveries_report_domain;"
    "CREATE TRIGGER delivery_tally_insert AFTER INSERT ON deliveries BEGIN"
    DT_ADD("new")
    " END;"
    "CREATE TRIGGER delivery_tally_update"
    " AFTER UPDATE OF state, sent_at, domain ON deliveries"
    " WHEN old.state IS NOT new.state"
    "  OR (old.state = 1 AND old.sent_at IS NOT new.sent_at)"
    "  OR old.domain IS NOT new.domain BEGIN"
    DT_SUB("old")
    DT_ADD("new")
    " END;"
    "CREATE TRIGGER delivery_tally_delete AFTER DELETE ON deliveries BEGIN"
    DT_SUB("old")
    " END;"
    "CREATE TABLE subscriber_tally ("
    " list_id TEXT NOT NULL, status INTEGER NOT NULL,"
    " n INTEGER NOT NULL, PRIMARY KEY (list_id, status)) WITHOUT ROWID;"
    "INSERT INTO subscriber_tally SELECT list_id, status, count(*)"
    " FROM subscribers GROUP BY 1, 2;"
    "CREATE TABLE subscriber_quarters ("
    " list_id TEXT NOT NULL, q INTEGER NOT NULL,"
    " signups INTEGER NOT NULL, unsubs INTEGER NOT NULL,"
    " PRIMARY KEY (list_id, q)) WITHOUT ROWID;"
    "INSERT INTO subscriber_quarters"
    " SELECT list_id, q, sum(su), sum(un) FROM ("
    "  SELECT list_id, consent_at / 900 AS q, 1 AS su, 0 AS un"
    "   FROM subscribers"
    "  UNION ALL SELECT list_id, unsubscribed_at / 900, 0, 1"
    "   FROM subscribers WHERE unsubscribed_at > 0)"
    " GROUP BY 1, 2;"
    "CREATE TRIGGER subscriber_tally_insert AFTER INSERT ON subscribers"
    " BEGIN"
    " INSERT INTO subscriber_tally VALUES (new.list_id, new.status, 1)"
    "  ON CONFLICT (list_id, status) DO UPDATE SET n = n + 1;"
    " INSERT INTO subscriber_quarters VALUES"
    "  (new.list_id, new.consent_at / 900, 1, 0)"
    "  ON CONFLICT (list_id, q) DO UPDATE SET signups = signups + 1;"
    " INSERT INTO subscriber_quarters SELECT new.list_id,"
    "  new.unsubscribed_at / 900, 0, 1 WHERE new.unsubscribed_at > 0"
    "  ON CONFLICT (list_id, q) DO UPDATE SET unsubs = unsubs + 1;"
    " END;"
    "CREATE TRIGGER subscriber_tally_update AFTER UPDATE OF list_id, status"
    " ON subscribers"
    " WHEN old.list_id IS NOT new.list_id OR old.status IS NOT new.status"
    " BEGIN"
    " UPDATE subscriber_tally SET n = n - 1"
    "  WHERE list_id = old.list_id AND status = old.status;"
    " INSERT INTO subscriber_tally VALUES (new.list_id, new.status, 1)"
    "  ON CONFLICT (list_id, status) DO UPDATE SET n = n + 1;"
    " END;"
    "CREATE TRIGGER subscriber_quarters_update"
    " AFTER UPDATE OF list_id, consent_at, unsubscribed_at ON subscribers"
    " WHEN old.list_id IS NOT new.list_id"
    "  OR old.consent_at IS NOT new.consent_at"
    "  OR old.unsubscribed_at IS NOT new.unsubscribed_at"
    " BEGIN"
    " UPDATE subscriber_quarters SET signups = signups - 1"
    "  WHERE list_id = old.list_id AND q = old.consent_at / 900;"
    " UPDATE subscriber_quarters SET unsubs = unsubs - 1"
    "  WHERE old.unsubscribed_at > 0 AND list_id = old.list_id"
    "  AND q = old.unsubscribed_at / 900;"
    " INSERT INTO subscriber_quarters VALUES"
    "  (new.list_id, new.consent_at / 900, 1, 0)"
    "  ON CONFLICT (list_id, q) DO UPDATE SET signups = signups + 1;"
    " INSERT INTO subscriber_quarters SELECT new.list_id,"
    "  new.unsubscribed_at / 900, 0, 1 WHERE new.unsubscribed_at > 0"
    "  ON CONFLICT (list_id, q) DO UPDATE SET unsubs = unsubs + 1;"
    " END;"
    "CREATE TRIGGER subscriber_tally_delete AFTER DELETE ON subscribers"
    " BEGIN"
    " UPDATE subscriber_tally SET n = n - 1"
    "  WHERE list_id = old.list_id AND status = old.status;"
    " UPDATE subscriber_quarters SET signups = signups - 1"
    "  WHERE list_id = old.list_id AND q = old.consent_at / 900;"
    " UPDATE subscriber_quarters SET unsubs = unsubs - 1"
    "  WHERE old.unsubscribed_at > 0 AND list_id = old.list_id"
    "  AND q = old.unsubscribed_at / 900;"
    " END;";

/* v12 (issue 13, several hosts): the DKIM keys hosts sign with, one row
 * per domain (d=) and selector (s=): a fingerprint of the public key
 * (kr_dkim_fingerprint(), never the private key) and the host that
 * recorded it first, so that a host with another key under the same
 * selector is refused at its start (kr_store_dkim_check()). */
static const char schema_v12[] =
    "CREATE TABLE dkim_keys ("
    " domain TEXT NOT NULL,"
    " selector TEXT NOT NULL,"
    " fingerprint TEXT NOT NULL,"
    " host TEXT NOT NULL DEFAULT '',"
    " seen_at INTEGER NOT NULL,"
    " PRIMARY KEY (domain, selector)) WITHOUT ROWID;";

static const char *const migrations[] = {
    schema_v1, schema_v2, schema_v3, schema_v4,  schema_v5,  schema_v6,
    schema_v7, schema_v8, schema_v9, schema_v10, schema_v11, schema_v12};

/* ---- prepared statements ---- */

#define SUB_COLS                                                               \
	"id, list_id, email, name, status, created_at, consent_at,"            \
	" confirmed_at, unsubscribed_at, consent_source, consent_ip,"          \
	" consent_ua, bounces"
#define REPORT_COLS                                                            \
	"id, list_id, subject, preheader, text, html, source, hash,"           \
	" created_at, send_at, state, date"
#define CLAIM_COLS                                                             \
	"d.id, d.kind, coalesce(d.report_id, 0), d.subscriber_id,"             \
	" s.list_id, s.email, d.attempts, d.queued_at, s.status, s.name"

enum stmt_id {
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_SAVEPOINT,
	ST_RELEASE_SP,
	ST_ROLLBACK_SP,
	ST_SUB_INSERT,
	ST_SUB_IMPORT,
	ST_SUB_GET,
	ST_SUB_FIND,
	ST_SUB_RESUB,
	ST_SUB_CONFIRM,
	ST_SUB_UNSUB,
	ST_SUB_SAME_EMAIL,
	ST_DEL_CANCEL_SUB,
	ST_SUB_DELETE,
	ST_HEALTH,
	ST_SUB_BOUNCE,
	ST_SUB_BOUNCED,
	ST_SUB_FOREACH,
	ST_SUB_COUNT,
	ST_SUB_COUNT_ROWS,
	ST_CONFIRM_COUNT,
	ST_CONFIRM_ENQUEUE,
	ST_REPORT_BY_HASH,
	ST_REPORT_INSERT,
	ST_REPORT_QUEUE,
	ST_REPORT_GET,
	ST_REPORT_LIST,
	ST_REPORT_SET_STATE,
	ST_REPORT_CANCEL_ROWS,
	ST_COUNTS_REPORT,
	ST_COUNTS_ALL,
	ST_COUNTS_REPORT_ROWS,
	ST_COUNTS_ALL_ROWS,
	ST_RETRY,
	ST_CLAIM_CONFIRM,
	ST_CLAIM_DEFERRED,
	ST_CLAIM_REPORTS,
	ST_CLAIM_ROWS,
	ST_LEASE,
	ST_CANCEL_ONE,
	ST_MARK_SENT,
	ST_MARK_DEFERRED,
	ST_MARK_FAILED,
	ST_MARK_UNCERTAIN,
	ST_RELEASE,
	ST_RECLAIM,
	ST_EVENT,
	ST_PING,
	ST__N
};

static const char *const stmt_sql[ST__N] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_SAVEPOINT] = "SAVEPOINT kr",
    [ST_RELEASE_SP] = "RELEASE kr",
    [ST_ROLLBACK_SP] = "ROLLBACK TO kr",
    [ST_SUB_INSERT] =
        "INSERT INTO subscribers (list_id, email, name, status,"
        " created_at, consent_at, confirmed_at, consent_source,"
        " consent_ip, consent_ua) VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6,"
        " ?7, ?8, ?9)",
    [ST_SUB_IMPORT] =
        "INSERT INTO subscribers (list_id, email, name, status,"
        " created_at, consent_at, confirmed_at, unsubscribed_at,"
        " consent_source, consent_ip, consent_ua, bounces)"
        " SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12"
        " WHERE NOT EXISTS (SELECT 1 FROM subscribers"
        "  WHERE list_id = ?1 AND email = ?2 COLLATE NOCASE)"
        " ON CONFLICT DO NOTHING",
    [ST_SUB_GET] = "SELECT " SUB_COLS " FROM subscribers WHERE id = ?1",
    [ST_SUB_FIND] = "SELECT " SUB_COLS " FROM subscribers"
                    " WHERE list_id = ?1 AND email = ?2 COLLATE NOCASE"
                    " ORDER BY email = ?2 DESC, id LIMIT 1",
    [ST_SUB_RESUB] = "UPDATE subscribers SET status = ?2, consent_at = ?3,"
                     " confirmed_at = ?4, unsubscribed_at = 0, bounces = 0,"
                     " consent_source = ?5, consent_ip = ?6, consent_ua = ?7,"
                     " name = CASE WHEN ?8 IS NULL THEN name ELSE ?8 END"
                     " WHERE id = ?1",
    [ST_SUB_CONFIRM] = "UPDATE subscribers SET status = 1,"
                       " confirmed_at = ?2 WHERE id = ?1 AND status = 0",
    [ST_SUB_UNSUB] = "UPDATE subscribers SET status = 2,"
                     " unsubscribed_at = ?2"
                     " WHERE id = ?1 AND status IN (0, 1)",
    [ST_SUB_SAME_EMAIL] =
        "SELECT id FROM subscribers WHERE email COLLATE NOCASE ="
        " (SELECT email FROM subscribers WHERE id = ?1) ORDER BY id",
    [ST_DEL_CANCEL_SUB] = "UPDATE deliveries SET state = 5, lease_until = 0"
                          " WHERE subscriber_id = ?1 AND state IN (0, 2)",
    [ST_SUB_DELETE] = "DELETE FROM subscribers WHERE id = ?1",
    [ST_HEALTH] = "INSERT OR REPLACE INTO health (id, at)"
                  " VALUES (1, CAST(strftime('%s', 'now') AS INTEGER))",
    [ST_SUB_BOUNCE] = "UPDATE subscribers SET bounces = bounces + ?2"
                      " WHERE id = ?1 RETURNING bounces, status",
    [ST_SUB_BOUNCED] = "UPDATE subscribers SET status = 3 WHERE id = ?1",
    [ST_SUB_FOREACH] = "SELECT " SUB_COLS " FROM subscribers"
                       " WHERE (?1 IS NULL OR list_id = ?1)"
                       " AND (?2 < 0 OR status = ?2) AND id > ?3"
                       " ORDER BY id LIMIT 1000",
    [ST_SUB_COUNT] = "SELECT coalesce(sum(n), 0) FROM subscriber_tally"
                     " WHERE (?1 IS NULL OR list_id = ?1)"
                     " AND (?2 < 0 OR status = ?2)",
    /* the same from the rows, on a schema before v11 (one left at v3
     * until its operator merges addresses: sq_open()) */
    [ST_SUB_COUNT_ROWS] = "SELECT count(*) FROM subscribers"
                          " WHERE (?1 IS NULL OR list_id = ?1)"
                          " AND (?2 < 0 OR status = ?2)",
    [ST_CONFIRM_COUNT] =
        "SELECT count(*) FROM deliveries d"
        " JOIN subscribers s ON s.id = d.subscriber_id"
        " WHERE s.email = ?1 COLLATE NOCASE AND d.kind = 1"
        " AND d.queued_at >= ?2",
    [ST_CONFIRM_ENQUEUE] =
        "INSERT INTO deliveries (kind, report_id, subscriber_id, domain,"
        " state, queued_at, next_attempt)"
        " SELECT 1, NULL, id, kr_domain(email), 0, ?2, ?2"
        " FROM subscribers WHERE id = ?1",
    [ST_REPORT_BY_HASH] = "SELECT id FROM reports WHERE hash = ?1 LIMIT 1",
    [ST_REPORT_INSERT] =
        "INSERT INTO reports (list_id, subject, preheader, text, html,"
        " source, hash, created_at, send_at, state, date)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0, ?10)",
    [ST_REPORT_QUEUE] =
        "INSERT INTO deliveries (kind, report_id, subscriber_id, domain,"
        " state, queued_at, next_attempt)"
        " SELECT 0, ?1, id, kr_domain(email), 0, ?3, ?4"
        " FROM subscribers WHERE list_id = ?2 AND status = 1"
        " ORDER BY id",
    [ST_REPORT_GET] = "SELECT " REPORT_COLS " FROM reports WHERE id = ?1",
    [ST_REPORT_LIST] = "SELECT " REPORT_COLS " FROM reports"
                       " ORDER BY id DESC LIMIT ?1",
    [ST_REPORT_SET_STATE] = "UPDATE reports SET state = ?2 WHERE id = ?1",
    [ST_REPORT_CANCEL_ROWS] = "UPDATE deliveries SET state = 5, lease_until = 0"
                              " WHERE report_id = ?1 AND state IN (0, 2)",
    /* schema v11's counters; the live leases from deliveries_report
     * (report_id, state, lease_until): the in-flight copies only */
    [ST_COUNTS_REPORT] =
        "SELECT state, n, CASE WHEN state IN (0, 2) AND n > 0 THEN"
        " (SELECT count(*) FROM deliveries WHERE report_id = ?1"
        "  AND state = t.state AND lease_until >= ?2) ELSE 0 END"
        " FROM delivery_tally t WHERE report_id = ?1",
    [ST_COUNTS_ALL] =
        "SELECT state, sum(n), sum(CASE WHEN state IN (0, 2) AND n > 0"
        "  THEN (SELECT count(*) FROM deliveries d"
        "   WHERE d.report_id IS nullif(t.report_id, 0)"
        "   AND d.state = t.state AND d.lease_until >= ?1) ELSE 0 END)"
        " FROM delivery_tally t GROUP BY state",
    [ST_COUNTS_REPORT_ROWS] =
        "SELECT state, count(*), sum(lease_until >= ?2) FROM deliveries"
        " WHERE report_id = ?1 GROUP BY state",
    [ST_COUNTS_ALL_ROWS] =
        "SELECT state, count(*), sum(lease_until >= ?1) FROM deliveries"
        " GROUP BY state",
    [ST_RETRY] = "UPDATE deliveries SET state = 0, attempts = 0,"
                 " queued_at = ?3, next_attempt = ?3, lease_until = 0"
                 " WHERE report_id = ?1 AND (state = 3 OR"
                 " (?2 AND state = 4))",
    /* INDEXED BY: the planner would take deliveries_report (an equality
     * on state) and sort every due row; these walk the queue in order. */
    [ST_CLAIM_CONFIRM] = "SELECT " CLAIM_COLS " FROM deliveries d"
                         " INDEXED BY deliveries_queued"
                         " JOIN subscribers s ON s.id = d.subscriber_id"
                         " WHERE d.report_id IS NULL AND d.state = 0"
                         " AND d.next_attempt <= ?1 AND d.lease_until < ?1"
                         " AND s.list_id NOT IN (SELECT list_id FROM"
                         " governor_lists WHERE paused = 1)"
                         " ORDER BY d.id LIMIT ?2",
    [ST_CLAIM_REPORTS] =
        "SELECT id FROM reports r WHERE state = 0 AND send_at <= ?1"
        " AND EXISTS (SELECT 1 FROM deliveries d WHERE d.report_id = r.id"
        " AND d.state = 0) ORDER BY id",
    [ST_CLAIM_ROWS] = "SELECT " CLAIM_COLS " FROM deliveries d"
                      " INDEXED BY deliveries_queued"
                      " JOIN subscribers s ON s.id = d.subscriber_id"
                      " WHERE d.report_id = ?3 AND d.state = 0"
                      " AND d.next_attempt <= ?1 AND d.lease_until < ?1"
                      " ORDER BY d.id LIMIT ?2",
    [ST_CLAIM_DEFERRED] =
        "SELECT " CLAIM_COLS " FROM deliveries d"
        " INDEXED BY deliveries_deferred"
        " JOIN subscribers s ON s.id = d.subscriber_id"
        " WHERE d.state = 2 AND d.next_attempt <= ?1 AND d.lease_until < ?1"
        " AND ((d.report_id IS NULL AND s.list_id NOT IN (SELECT list_id"
        " FROM governor_lists WHERE paused = 1)) OR d.report_id IN"
        " (SELECT id FROM reports WHERE state = 0 AND send_at <= ?1))"
        " ORDER BY d.next_attempt, d.id LIMIT ?2",
    [ST_LEASE] = "UPDATE deliveries SET lease_until = ?2, lease_host = ?3,"
                 " lease_inc = ?4, lease_token = ?5 WHERE id = ?1",
    [ST_CANCEL_ONE] = "UPDATE deliveries SET state = 5, lease_until = 0"
                      " WHERE id = ?1",
    /* ?6: the claim's fence (kr_store_mark_sent()) */
    [ST_MARK_SENT] = "UPDATE deliveries SET state = 1,"
                     " attempts = attempts + 1, lease_until = 0,"
                     " sent_at = ?2, code = 0, reply = ?3"
                     " WHERE id = ?1 AND lease_token = ?6",
    [ST_MARK_DEFERRED] = "UPDATE deliveries SET state = 2,"
                         " attempts = attempts + 1, lease_until = 0,"
                         " next_attempt = ?3, code = ?4, reply = ?5"
                         " WHERE id = ?1 AND lease_token = ?6",
    [ST_MARK_FAILED] = "UPDATE deliveries SET state = 3,"
                       " attempts = attempts + 1, lease_until = 0,"
                       " code = ?3, reply = ?4"
                       " WHERE id = ?1 AND lease_token = ?6",
    [ST_MARK_UNCERTAIN] = "UPDATE deliveries SET state = 4,"
                          " attempts = attempts + 1, lease_until = 0,"
                          " reply = ?3 WHERE id = ?1 AND lease_token = ?6",
    [ST_RELEASE] = "UPDATE deliveries SET lease_until = 0"
                   " WHERE id = ?1 AND lease_token = ?6",
    [ST_RECLAIM] = "UPDATE deliveries SET lease_until = 0"
                   " WHERE lease_host = ?1 AND lease_inc <> ?2"
                   " AND lease_until >= ?3 AND state IN (0, 2)",
    [ST_EVENT] = "INSERT INTO events (at, kind, subscriber_id, report_id,"
                 " detail) VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_PING] = "SELECT 1",
};

struct kr_store_be {
	sqlite3 *db;
	char *path;
	sqlite3_stmt *st[ST__N];
	/* The file opened (device, inode): a database removed or replaced
	 * under a running kairand would take sign-ups into an unlinked
	 * file, lost at the next start. Checked at most every
	 * IDENT_EVERY_MS (ident_ok()); once it differs the store refuses
	 * all work (gone says why). */
	dev_t dev;
	ino_t ino;
	int64_t ident_at;
	char gone[320];
	/* The last write failed (read-only, full, I/O error) and none has
	 * succeeded since: /healthz says so (sq_ping()). */
	bool wfail;
	char wfail_msg[320];
	int lock_fd; /* sq_lock_daemon(), -1: none */
	bool tallies; /* schema v11's counters are there */
	sqlite3_stmt *load; /* kr_store_copy(): the INSERT of load_begin */
};

#define IDENT_EVERY_MS 250

/* ---- helpers ---- */

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Whether the file at path is still the one opened (see struct
 * kr_store); 0, or -1 with err set (KR_ERR_BUSY: the web side answers
 * 503, delivery waits). */
static int
ident_ok(struct kr_store_be *s, struct kr_err *err)
{
	struct stat st;
	int64_t now;

	if (s->gone[0] == '\0' && s->ino != 0 &&
	    (now = mono_ms()) - s->ident_at >= IDENT_EVERY_MS) {
		s->ident_at = now;
		if (stat(s->path, &st) < 0)
			snprintf(s->gone, sizeof(s->gone),
			         "database %s: the file is gone (%s) while "
			         "kairan had it open: nothing more is taken, "
			         "since it would be lost; restore the file and "
			         "restart",
			         s->path, strerror(errno));
		else if (st.st_dev != s->dev || st.st_ino != s->ino)
			snprintf(s->gone, sizeof(s->gone),
			         "database %s: the file was replaced while "
			         "kairan had it open (another inode): nothing "
			         "more is taken; restart kairan to use the new "
			         "file",
			         s->path);
	}
	if (s->gone[0] == '\0')
		return 0;
	return kr_err_set(err, KR_ERR_BUSY, "%s", s->gone);
}

static int
db_err(const struct kr_store_be *s, int rc, const char *what, struct kr_err *err)
{
	int prim = rc & 0xff;
	enum kr_err_code code = KR_ERR_DB;

	if (prim == SQLITE_BUSY || prim == SQLITE_LOCKED || prim == SQLITE_FULL)
		code = KR_ERR_BUSY;
	return kr_err_set(err, code, "database %s: %s: %s", s->path, what,
	                  s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
}

/* The cached statement id, reset and unbound; NULL with err set. */
static sqlite3_stmt *
stmt(struct kr_store_be *s, enum stmt_id id, struct kr_err *err)
{
	int rc;

	if (ident_ok(s, err) < 0)
		return NULL;
	if (s->st[id] == NULL) {
		rc = sqlite3_prepare_v3(s->db, stmt_sql[id], -1,
		                        SQLITE_PREPARE_PERSISTENT, &s->st[id],
		                        NULL);
		if (rc != SQLITE_OK) {
			db_err(s, rc, "prepare", err);
			s->st[id] = NULL;
			return NULL;
		}
	}
	return s->st[id];
}

static void
stmt_done(sqlite3_stmt *st)
{
	if (st != NULL) {
		sqlite3_reset(st);
		sqlite3_clear_bindings(st);
	}
}

static void
bind_text(sqlite3_stmt *st, int i, const char *v)
{
	sqlite3_bind_text(st, i, v ? v : "", -1, SQLITE_TRANSIENT);
}

static void
col_copy(char *dst, size_t n, sqlite3_stmt *st, int col)
{
	const unsigned char *v = sqlite3_column_text(st, col);
	size_t len;

	if (n == 0)
		return;
	if (v == NULL) { /* NULL, or out of memory */
		dst[0] = '\0';
		return;
	}
	len = (size_t)sqlite3_column_bytes(st, col);
	if (len >= n)
		len = n - 1;
	memcpy(dst, v, len);
	dst[len] = '\0';
}

static char *
col_dup(sqlite3_stmt *st, int col)
{
	const unsigned char *v = sqlite3_column_text(st, col);

	return kr_xstrndup(v ? (const char *)v : "",
	                   v ? (size_t)sqlite3_column_bytes(st, col) : 0);
}

/* Runs a statement that returns no rows; 0 or -1. */
static int
run(struct kr_store_be *s, sqlite3_stmt *st, const char *what, struct kr_err *err)
{
	int rc = sqlite3_step(st), r = 0, prim = rc & 0xff;

	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		r = db_err(s, rc, what, err);
	if (prim == SQLITE_READONLY || prim == SQLITE_FULL ||
	    prim == SQLITE_IOERR || prim == SQLITE_CANTOPEN ||
	    prim == SQLITE_CORRUPT || prim == SQLITE_NOTADB) {
		s->wfail = true;
		snprintf(s->wfail_msg, sizeof(s->wfail_msg), "%s: %s: %s",
		         s->path, what, sqlite3_errmsg(s->db));
	} else if (rc == SQLITE_DONE && !sqlite3_stmt_readonly(st)) {
		s->wfail = false;
	}
	stmt_done(st);
	return r;
}

static int
run_id(struct kr_store_be *s, enum stmt_id id, const char *what,
       struct kr_err *err)
{
	sqlite3_stmt *st = stmt(s, id, err);

	return st ? run(s, st, what, err) : -1;
}

/* A write transaction of its own, or a savepoint inside the caller's
 * (kr_store_begin). *own_out tells tx_end which. */
static int
tx_begin(struct kr_store_be *s, bool *own_out, struct kr_err *err)
{
	*own_out = sqlite3_get_autocommit(s->db) != 0;
	return run_id(s, *own_out ? ST_BEGIN : ST_SAVEPOINT, "begin", err);
}

/* Commits when r is 0, else rolls back; returns r, or -1 when the commit
 * fails. */
static int
tx_end(struct kr_store_be *s, bool own, int r, struct kr_err *err)
{
	if (r == 0) {
		if (run_id(s, own ? ST_COMMIT : ST_RELEASE_SP, "commit", err) ==
		    0)
			return 0;
		r = -1;
	}
	if (own) {
		if (!sqlite3_get_autocommit(s->db))
			(void)run_id(s, ST_ROLLBACK, "rollback", NULL);
	} else {
		(void)run_id(s, ST_ROLLBACK_SP, "rollback", NULL);
		(void)run_id(s, ST_RELEASE_SP, "rollback", NULL);
	}
	return r;
}

/* kr_domain(email): the part after the last '@' (a quoted local part may
 * hold one), for per-domain limits. */
static void
sql_domain(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	const unsigned char *e = sqlite3_value_text(argv[0]);
	const char *at;

	(void)argc;
	if (e == NULL) {
		sqlite3_result_text(ctx, "", 0, SQLITE_STATIC);
		return;
	}
	at = strrchr((const char *)e, '@');
	sqlite3_result_text(ctx, at ? at + 1 : "", -1, SQLITE_TRANSIENT);
}

static int
exec(struct kr_store_be *s, const char *sql, const char *what, struct kr_err *err)
{
	int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);

	return rc == SQLITE_OK ? 0 : db_err(s, rc, what, err);
}

/* One integer from a PRAGMA or query without parameters. */
static int
query_int(struct kr_store_be *s, const char *sql, int64_t *out, struct kr_err *err)
{
	sqlite3_stmt *st = NULL;
	int rc, r = -1;

	rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		goto fail;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*out = sqlite3_column_int64(st, 0);
		r = 0;
		goto out;
	}
	if (rc == SQLITE_DONE) {
		*out = 0;
		r = 0;
		goto out;
	}
fail:
	if ((rc & 0xff) == SQLITE_NOTADB)
		r = kr_err_set(
		    err, KR_ERR_DB,
		    "database %s: not an SQLite database; refusing to touch it",
		    s->path);
	else
		r = db_err(s, rc, "read", err);
out:
	sqlite3_finalize(st);
	return r;
}

/* Before v4's unique index: the subscriptions of one list whose addresses
 * differ only in letter case. The oldest of each group stays. A newer one
 * that was never mailed (no delivery row) and says nothing the oldest
 * does not (same status, or pending beside an active one) is removed, with
 * an event on the one kept. The others are the operator's to merge (each
 * copy has mail history or its own consent state: not ours to
 * drop). Returns 0 and in *left_out the number of addresses still
 * subscribed twice to one list (0: v4 can go on), or -1. */
static int
merge_case_duplicates(struct kr_store_be *s, int64_t *left_out,
                      struct kr_err *err)
{
	int64_t left = 0;

	if (exec(s,
	         "CREATE INDEX kr_case_tmp ON subscribers"
	         " (list_id, email COLLATE NOCASE, id);"
	         "CREATE TEMP TABLE kr_case_drop AS"
	         " SELECT s.id AS id, k.id AS keep FROM subscribers s"
	         " JOIN subscribers k ON k.id = (SELECT min(m.id)"
	         "  FROM subscribers m WHERE m.list_id = s.list_id"
	         "  AND m.email = s.email COLLATE NOCASE)"
	         " WHERE k.id < s.id"
	         " AND NOT EXISTS (SELECT 1 FROM deliveries d"
	         "  WHERE d.subscriber_id = s.id)"
	         " AND (s.status = k.status OR (k.status = 1 AND s.status = 0));"
	         "INSERT INTO events (at, kind, subscriber_id, detail)"
	         " SELECT CAST(strftime('%s', 'now') AS INTEGER),"
	         " 'merged duplicate', keep, 'subscription ' || id ||"
	         " ' (the same address in other letter case, never mailed)"
	         " removed by the schema v4 migration' FROM kr_case_drop;"
	         "DELETE FROM subscribers WHERE id IN"
	         " (SELECT id FROM kr_case_drop);"
	         "DROP TABLE kr_case_drop;",
	         "merge case duplicates", err) < 0)
		return -1;
	if (query_int(s,
	              "SELECT count(*) FROM"
	              " (SELECT 1 FROM subscribers"
	              "  GROUP BY list_id, email COLLATE NOCASE"
	              "  HAVING count(*) > 1)",
	              &left, err) < 0)
		return -1;
	if (exec(s, "DROP INDEX kr_case_tmp", "merge case duplicates", err) <
	    0)
		return -1;
	*left_out = left;
	return 0;
}

/* Runs the missing steps in one transaction. The v4 step may stop short
 * (case duplicates the operator has to merge): then the steps before it
 * are kept, the schema stays at v3, a warning says what to do, and the
 * store works on (every lookup ignores letter case already). */
static int
migrate(struct kr_store_be *s, struct kr_err *err)
{
	int64_t v = 0, dups = 0;
	int r = -1;
	char *sql = NULL;
	bool own = true;

	/* A table rebuild (v6) must not cascade: foreign keys are off for
	 * the migration (a no-op inside a transaction, so before it) and
	 * checked before the commit. */
	if (exec(s, "PRAGMA foreign_keys = OFF", "migration", err) < 0)
		return -1;
	if (exec(s, "BEGIN IMMEDIATE", "begin migration", err) < 0) {
		(void)exec(s, "PRAGMA foreign_keys = ON", "migration", NULL);
		return -1;
	}
	/* Again under the write lock: another process may have won. */
	if (query_int(s, "PRAGMA user_version", &v, err) < 0)
		goto out;
	for (; v < (int64_t)KR_NELEM(migrations); v++) {
		if (v == 3) {
			if (merge_case_duplicates(s, &dups, err) < 0) {
				kr_err_prefix(err, "schema v3 -> v4");
				goto out;
			}
			if (dups > 0) {
				kr_log_warn(
				    "database %s: %lld address%s subscribed "
				    "twice to one list, in different letter "
				    "case, each copy with its own mail or "
				    "state; schema v4 (one subscription per "
				    "address whatever the case) waits until "
				    "they are merged, and lookups ignore case "
				    "meanwhile. See them with `kairanctl "
				    "subscribers list | cut -f2,4 | sort -f | "
				    "uniq -Di`; then `kairanctl subscribers "
				    "remove ADDRESS --list LIST` removes the "
				    "spelling given exactly",
				    s->path, (long long)dups,
				    dups == 1 ? " is" : "es are");
				break;
			}
		}
		if (exec(s, migrations[v], "migration", err) < 0) {
			kr_err_prefix(err, "schema v%lld -> v%lld",
			              (long long)v, (long long)v + 1);
			goto out;
		}
	}
	if (query_int(s, "SELECT count(*) FROM pragma_foreign_key_check",
	              &dups, err) < 0)
		goto out;
	if (dups > 0) {
		kr_err_set(err, KR_ERR_DB,
		           "database %s: the migration left %lld rows whose "
		           "references are broken; nothing was changed",
		           s->path, (long long)dups);
		goto out;
	}
	sql = kr_xasprintf("PRAGMA user_version = %lld", (long long)v);
	if (exec(s, sql, "set schema version", err) < 0)
		goto out;
	r = 0;
out:
	free(sql);
	r = tx_end(s, own, r, err);
	if (exec(s, "PRAGMA foreign_keys = ON", "migration",
	         r == 0 ? err : NULL) < 0)
		r = -1;
	return r;
}

/* ---- open / close ---- */

/* A new database (or backup) holds addresses and consent records: it is
 * created 0600 before SQLite opens it, and SQLite gives its -wal and -shm
 * files the same mode. An existing file keeps its mode. */
static void
create_private(const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

	if (fd >= 0)
		close(fd);
}

/* The database and the -wal and -shm files beside it must be writable:
 * SQLite maps -shm into memory, and one it cannot write or grow (made
 * read-only, immutable, owned by another user) ends in SIGBUS, and a
 * read-only database takes every write as an error later. Refused at
 * open, naming the file. */
static int
files_writable(const char *path, struct kr_err *err)
{
	static const char *const suffixes[] = {"", "-wal", "-shm"};
	char *p;
	size_t i;

	/* access(), never open(): closing a descriptor of the file would
	 * drop every POSIX lock this process's other connections hold on
	 * it (SQLite's among them). Its write check also refuses an
	 * immutable file, for root too. */
	for (i = 0; i < KR_NELEM(suffixes); i++) {
		p = kr_xasprintf("%s%s", path, suffixes[i]);
		if (faccessat(AT_FDCWD, p, W_OK, AT_EACCESS) < 0 &&
		    errno != ENOENT) {
			kr_err_set(err, KR_ERR_DB,
			           "database %s: %s cannot be opened for "
			           "writing (%s): kairan needs to write it; fix "
			           "its owner, mode or attributes (lsattr), or, "
			           "for the -wal and -shm files, remove them "
			           "while no kairan process runs",
			           path, p, strerror(errno));
			free(p);
			return -1;
		}
		free(p);
	}
	return 0;
}

_Static_assert(KR_NELEM(migrations) == KR_STORE_SCHEMA_VERSION,
               "a migration for every schema version");

/* SQLite's own busy timeout sleeps 1, 2, 5, 10, 15, 20, 25, 25, 25, 50 …
 * ms between tries, so a form POST that meets one delivery commit waits
 * ~18 ms. Our writers hold the lock for well under a millisecond: poll
 * every 250 us for the first 10 ms, then every 2 ms, up to
 * BUSY_TIMEOUT_MS in all. Returns 0 to give up (SQLITE_BUSY). */
static int
busy_wait(void *arg, int count)
{
	long waited_us;

	(void)arg;
	if (count < 40)
		waited_us = 250L * count;
	else
		waited_us = 10000L + 2000L * (count - 40);
	if (waited_us >= BUSY_TIMEOUT_MS * 1000L)
		return 0;
	usleep(count < 40 ? 250 : 2000);
	return 1;
}

/* A process that checkpoints from its main loop (kr_store_upkeep()):
 * while workers commit, such a PASSIVE checkpoint never quite catches
 * up, so the WAL cannot restart from its beginning; at this many pages
 * (16 MB) a commit checkpoints the little that is left itself, and the
 * WAL is reused from its start. */
#define UPKEEP_BACKSTOP 4096

/* 0: SQLite's default (1,000 pages) or, with kr_store_upkeep_by_loop(),
 * UPKEEP_BACKSTOP; see kr_store_sqlite_set_autocheckpoint(). */
static atomic_int autockpt;

void
kr_store_sqlite_set_autocheckpoint(int pages)
{
	atomic_store(&autockpt, pages > 0 ? pages : 0);
}

static int
sq_checkpoint(struct kr_store_be *s, int *wal_pages, int *done_pages,
                    struct kr_err *err)
{
	int log = 0, ckpt = 0, rc;

	if (ident_ok(s, err) < 0)
		return -1;
	rc = sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_PASSIVE,
	                               &log, &ckpt);
	if (wal_pages != NULL)
		*wal_pages = log;
	if (done_pages != NULL)
		*done_pages = ckpt;
	if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
		return 0; /* another checkpoint runs: next time */
	if (rc != SQLITE_OK)
		return db_err(s, rc, "checkpoint", err);
	return 0;
}

static int
sq_upkeep(struct kr_store_be *s, struct kr_err *err)
{
	return sq_checkpoint(s, NULL, NULL, err);
}

int
kr_store_sqlite_checkpoint(struct kr_store *s, int *wal_pages,
                           int *done_pages, struct kr_err *err)
{
	if (s->ops != &kr_store_sqlite_ops)
		return kr_err_set(err, KR_ERR_INVALID,
		                  "checkpoint: not an SQLite store");
	return sq_checkpoint(s->be, wal_pages, done_pages, err);
}

static void sq_close(struct kr_store_be **sp);

static int
sq_open(const char *path, const char *password_file,
        struct kr_store_be **store_out, struct kr_err *err)
{
	struct kr_store_be *s = kr_xcalloc(1, sizeof(*s));
	struct stat fst;
	int64_t v = 0, ntables = 0;
	int rc, r = -1, pages;
	char mode[16] = "";
	sqlite3_stmt *st = NULL;

	(void)password_file; /* a file, no password */
	*store_out = NULL;
	s->path = kr_xstrdup(path);
	s->lock_fd = -1;
	create_private(path);
	if (files_writable(path, err) < 0)
		goto out;
	rc = sqlite3_open_v2(path, &s->db,
	                     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
	                         SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE,
	                     NULL);
	if (rc != SQLITE_OK) {
		db_err(s, rc, "open", err);
		goto out;
	}
	sqlite3_busy_handler(s->db, busy_wait, NULL);
	if (stat(path, &fst) == 0) {
		s->dev = fst.st_dev;
		s->ino = fst.st_ino;
		s->ident_at = mono_ms();
	}
	/* Read before anything writes: a foreign or newer file is left as
	 * it was. */
	if (query_int(s, "PRAGMA user_version", &v, err) < 0)
		goto out;
	if (v > kr_store_schema_version()) {
		kr_err_set(
		    err, KR_ERR_DB,
		    "database %s: schema version %lld is newer than this "
		    "kairan understands (%d); upgrade kairan or use a backup",
		    path, (long long)v, kr_store_schema_version());
		goto out;
	}
	if (v == 0) {
		if (query_int(s, "SELECT count(*) FROM sqlite_master", &ntables,
		              err) < 0)
			goto out;
		if (ntables > 0) {
			kr_err_set(
			    err, KR_ERR_DB,
			    "database %s: an SQLite file that is not kairan's "
			    "(tables but no schema version); refusing to "
			    "touch it",
			    path);
			goto out;
		}
	}
	rc = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1, &st,
	                        NULL);
	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		col_copy(mode, sizeof(mode), st, 0);
		rc = SQLITE_OK;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_OK) {
		db_err(s, rc, "journal_mode", err);
		goto out;
	}
	if (strcmp(mode, "wal") != 0) {
		kr_err_set(err, KR_ERR_DB,
		           "database %s: cannot use WAL mode (got %s)", path,
		           mode);
		goto out;
	}
	if (exec(s,
	         "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;"
	         " PRAGMA cache_size = -4096;",
	         "pragma", err) < 0)
		goto out;
	pages = atomic_load(&autockpt);
	if (pages == 0 && kr_store_upkeep_by_loop())
		pages = UPKEEP_BACKSTOP;
	if (pages > 0)
		(void)sqlite3_wal_autocheckpoint(s->db, pages);
	rc = sqlite3_create_function(s->db, "kr_domain", 1,
	                             SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL,
	                             sql_domain, NULL, NULL);
	if (rc != SQLITE_OK) {
		db_err(s, rc, "create function", err);
		goto out;
	}
	if (v < kr_store_schema_version() && migrate(s, err) < 0)
		goto out;
	if (query_int(s, "PRAGMA user_version", &v, err) < 0)
		goto out;
	s->tallies = v >= 11;
	*store_out = s;
	s = NULL;
	r = 0;
out:
	sq_close(&s);
	return r;
}

static void
sq_close(struct kr_store_be **sp)
{
	struct kr_store_be *s;
	size_t i;

	if (sp == NULL || (s = *sp) == NULL)
		return;
	for (i = 0; i < ST__N; i++)
		sqlite3_finalize(s->st[i]);
	sqlite3_finalize(s->load);
	if (s->db && !sqlite3_get_autocommit(s->db))
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_close(s->db);
	if (s->lock_fd >= 0)
		close(s->lock_fd); /* after SQLite let go of the file */
	free(s->path);
	free(s);
	*sp = NULL;
}

static int
sq_lock_daemon(struct kr_store_be *s, struct kr_err *err)
{
	char *lock = kr_xasprintf("%s-lock", s->path);
	int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);

	if (fd < 0) {
		kr_err_set(err, KR_ERR_IO, "database %s: lock file %s: %s",
		           s->path, lock, strerror(errno));
		free(lock);
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		kr_err_set(err, KR_ERR_BUSY,
		           "database %s is in use by another kairand (it holds "
		           "%s): one kairand per SQLite file; several hosts "
		           "share a PostgreSQL database instead",
		           s->path, lock);
		close(fd);
		free(lock);
		return -1;
	}
	free(lock);
	if (s->lock_fd >= 0)
		close(s->lock_fd);
	s->lock_fd = fd;
	return 0;
}

static int
sq_begin(struct kr_store_be *s, struct kr_err *err)
{
	if (!sqlite3_get_autocommit(s->db))
		return kr_err_set(err, KR_ERR_INVALID,
		                  "store: transaction already open");
	return run_id(s, ST_BEGIN, "begin", err);
}

static int
sq_commit(struct kr_store_be *s, struct kr_err *err)
{
	return run_id(s, ST_COMMIT, "commit", err);
}

static void
sq_rollback(struct kr_store_be *s)
{
	if (s != NULL && !sqlite3_get_autocommit(s->db))
		(void)run_id(s, ST_ROLLBACK, "rollback", NULL);
}

/* ---- subscribers ---- */

static void
sub_from_row(sqlite3_stmt *st, struct kr_subscriber *out)
{
	memset(out, 0, sizeof(*out));
	out->id = sqlite3_column_int64(st, 0);
	col_copy(out->list_id, sizeof(out->list_id), st, 1);
	col_copy(out->email, sizeof(out->email), st, 2);
	col_copy(out->name, sizeof(out->name), st, 3);
	out->status = (enum kr_sub_status)sqlite3_column_int(st, 4);
	out->created_at = sqlite3_column_int64(st, 5);
	out->consent_at = sqlite3_column_int64(st, 6);
	out->confirmed_at = sqlite3_column_int64(st, 7);
	out->unsubscribed_at = sqlite3_column_int64(st, 8);
	col_copy(out->consent_source, sizeof(out->consent_source), st, 9);
	col_copy(out->consent_ip, sizeof(out->consent_ip), st, 10);
	col_copy(out->consent_ua, sizeof(out->consent_ua), st, 11);
	out->bounces = sqlite3_column_int(st, 12);
}

/* Steps a lookup statement: 1 row copied, 0 none, -1 error. */
static int
sub_lookup(struct kr_store_be *s, sqlite3_stmt *st, struct kr_subscriber *out,
           struct kr_err *err)
{
	int rc = sqlite3_step(st), r;

	if (rc == SQLITE_ROW) {
		sub_from_row(st, out);
		r = 1;
	} else if (rc == SQLITE_DONE) {
		r = 0;
	} else {
		r = db_err(s, rc, "subscriber lookup", err);
	}
	stmt_done(st);
	return r;
}

static int
sq_subscriber_get(struct kr_store_be *s, int64_t id,
                        struct kr_subscriber *out, struct kr_err *err)
{
	sqlite3_stmt *st = stmt(s, ST_SUB_GET, err);

	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, id);
	return sub_lookup(s, st, out, err);
}

static int
sq_subscriber_find(struct kr_store_be *s, const char *list_id,
                         const char *email, struct kr_subscriber *out,
                         struct kr_err *err)
{
	sqlite3_stmt *st = stmt(s, ST_SUB_FIND, err);

	if (st == NULL)
		return -1;
	bind_text(st, 1, list_id);
	bind_text(st, 2, email);
	return sub_lookup(s, st, out, err);
}

static int
event(struct kr_store_be *s, int64_t at, const char *kind, int64_t sub_id,
      int64_t report_id, const char *detail, struct kr_err *err)
{
	sqlite3_stmt *st = stmt(s, ST_EVENT, err);

	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, at);
	bind_text(st, 2, kind);
	if (sub_id > 0)
		sqlite3_bind_int64(st, 3, sub_id);
	if (report_id > 0)
		sqlite3_bind_int64(st, 4, report_id);
	bind_text(st, 5, detail);
	return run(s, st, "event", err);
}

static int
sq_subscribe(struct kr_store_be *s, const char *list_id, const char *email,
                   const char *name, const struct kr_consent *consent,
                   bool double_opt_in, int64_t now,
                   struct kr_sub_result *res_out, struct kr_err *err)
{
	struct kr_subscriber cur = {0};
	sqlite3_stmt *st;
	enum kr_sub_status to = double_opt_in ? KR_SUB_PENDING : KR_SUB_ACTIVE;
	const char *src = consent && consent->source ? consent->source : "";
	bool own = false;
	int r = -1, found;

	memset(res_out, 0, sizeof(*res_out));
	if (tx_begin(s, &own, err) < 0)
		return -1;
	if ((found = sq_subscriber_find(s, list_id, email, &cur, err)) <
	    0)
		goto out;
	if (!found) {
		if ((st = stmt(s, ST_SUB_INSERT, err)) == NULL)
			goto out;
		bind_text(st, 1, list_id);
		bind_text(st, 2, email);
		bind_text(st, 3, name);
		sqlite3_bind_int(st, 4, (int)to);
		sqlite3_bind_int64(st, 5, now);
		sqlite3_bind_int64(st, 6, to == KR_SUB_ACTIVE ? now : 0);
		bind_text(st, 7, src);
		bind_text(st, 8, consent ? consent->ip : NULL);
		bind_text(st, 9, consent ? consent->ua : NULL);
		if (run(s, st, "subscribe", err) < 0)
			goto out;
		res_out->id = sqlite3_last_insert_rowid(s->db);
		res_out->before = (enum kr_sub_status) - 1;
		res_out->is_new = true;
		res_out->after = to;
	} else {
		res_out->id = cur.id;
		res_out->before = cur.status;
		res_out->after = cur.status;
		if (cur.status == KR_SUB_UNSUBSCRIBED ||
		    cur.status == KR_SUB_BOUNCED) {
			if ((st = stmt(s, ST_SUB_RESUB, err)) == NULL)
				goto out;
			sqlite3_bind_int64(st, 1, cur.id);
			sqlite3_bind_int(st, 2, (int)to);
			sqlite3_bind_int64(st, 3, now);
			sqlite3_bind_int64(st, 4,
			                   to == KR_SUB_ACTIVE ? now : 0);
			bind_text(st, 5, src);
			bind_text(st, 6, consent ? consent->ip : NULL);
			bind_text(st, 7, consent ? consent->ua : NULL);
			if (name != NULL)
				bind_text(st, 8, name);
			if (run(s, st, "subscribe again", err) < 0)
				goto out;
			res_out->after = to;
		}
	}
	if (res_out->is_new || res_out->before != res_out->after) {
		if (event(s, now, "subscribe", res_out->id, 0, src, err) < 0)
			goto out;
	}
	r = 0;
out:
	return tx_end(s, own, r, err);
}

static int
sq_subscriber_import_id(struct kr_store_be *s,
                              const struct kr_subscriber *sub, int64_t *id_out,
                              struct kr_err *err)
{
	sqlite3_stmt *st = stmt(s, ST_SUB_IMPORT, err);
	int64_t created =
	    sub->created_at ? sub->created_at : (int64_t)time(NULL);
	int r;

	*id_out = 0;
	if (st == NULL)
		return -1;
	bind_text(st, 1, sub->list_id);
	bind_text(st, 2, sub->email);
	bind_text(st, 3, sub->name);
	sqlite3_bind_int(st, 4, (int)sub->status);
	sqlite3_bind_int64(st, 5, created);
	sqlite3_bind_int64(st, 6, sub->consent_at ? sub->consent_at : created);
	sqlite3_bind_int64(st, 7, sub->confirmed_at);
	sqlite3_bind_int64(st, 8, sub->unsubscribed_at);
	bind_text(st, 9, sub->consent_source);
	bind_text(st, 10, sub->consent_ip);
	bind_text(st, 11, sub->consent_ua);
	sqlite3_bind_int(st, 12, sub->bounces);
	r = run(s, st, "import subscriber", err);
	if (r == 0 && sqlite3_changes(s->db) > 0)
		*id_out = sqlite3_last_insert_rowid(s->db);
	return r;
}

static int
sq_subscriber_import(struct kr_store_be *s, const struct kr_subscriber *sub,
                           bool *added_out, struct kr_err *err)
{
	int64_t id = 0;
	int r = sq_subscriber_import_id(s, sub, &id, err);

	*added_out = id != 0;
	return r;
}

static int
sq_subscriber_confirm(struct kr_store_be *s, int64_t id, int64_t now,
                            struct kr_err *err)
{
	sqlite3_stmt *st;
	bool own = false;
	int r = -1, changed = 0;

	if (tx_begin(s, &own, err) < 0)
		return -1;
	if ((st = stmt(s, ST_SUB_CONFIRM, err)) == NULL)
		goto out;
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, now);
	if (run(s, st, "confirm", err) < 0)
		goto out;
	changed = sqlite3_changes(s->db) > 0;
	if (changed && event(s, now, "confirm", id, 0, "", err) < 0)
		goto out;
	r = 0;
out:
	r = tx_end(s, own, r, err);
	return r < 0 ? -1 : changed;
}

static int
unsub_one(struct kr_store_be *s, int64_t id, int64_t report_id, int64_t now,
          int *changed, struct kr_err *err)
{
	sqlite3_stmt *st = stmt(s, ST_SUB_UNSUB, err);

	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, now);
	if (run(s, st, "unsubscribe", err) < 0)
		return -1;
	if (sqlite3_changes(s->db) > 0) {
		(*changed)++;
		if (event(s, now, "unsubscribe", id, report_id, "", err) < 0)
			return -1;
	}
	/* Whatever the status was, nothing more goes out to it. */
	if ((st = stmt(s, ST_DEL_CANCEL_SUB, err)) == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, id);
	return run(s, st, "cancel deliveries", err);
}

static int
sq_subscriber_unsubscribe(struct kr_store_be *s, int64_t id, bool all_lists,
                          int64_t report_id, int64_t now, struct kr_err *err)
{
	sqlite3_stmt *st;
	int64_t *ids = NULL;
	size_t n = 0, cap = 0, i;
	bool own = false;
	int r = -1, changed = 0, rc;

	if (tx_begin(s, &own, err) < 0)
		return -1;
	if (!all_lists) {
		if (unsub_one(s, id, report_id, now, &changed, err) < 0)
			goto out;
		r = 0;
		goto out;
	}
	if ((st = stmt(s, ST_SUB_SAME_EMAIL, err)) == NULL)
		goto out;
	sqlite3_bind_int64(st, 1, id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == cap) {
			cap = cap ? cap * 2 : 8;
			ids = kr_xrealloc(ids, cap * sizeof(*ids));
		}
		ids[n++] = sqlite3_column_int64(st, 0);
	}
	stmt_done(st);
	if (rc != SQLITE_DONE) {
		db_err(s, rc, "unsubscribe", err);
		goto out;
	}
	for (i = 0; i < n; i++)
		if (unsub_one(s, ids[i], report_id, now, &changed, err) < 0)
			goto out;
	r = 0;
out:
	free(ids);
	r = tx_end(s, own, r, err);
	return r < 0 ? -1 : changed;
}

static int
sq_subscriber_bounce(struct kr_store_be *s, int64_t id, bool hard,
                           int hard_limit, int64_t now, const char *detail,
                           struct kr_err *err)
{
	sqlite3_stmt *st;
	bool own = false;
	int r = -1, rc, bounces = 0, status = 0, became = 0;

	if (tx_begin(s, &own, err) < 0)
		return -1;
	if ((st = stmt(s, ST_SUB_BOUNCE, err)) == NULL)
		goto out;
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int(st, 2, hard ? 1 : 0);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		bounces = sqlite3_column_int(st, 0);
		status = sqlite3_column_int(st, 1);
		rc = sqlite3_step(st);
	}
	stmt_done(st);
	if (rc != SQLITE_DONE) {
		db_err(s, rc, "bounce", err);
		goto out;
	}
	if (sqlite3_changes(s->db) == 0) {
		kr_err_set(err, KR_ERR_NOTFOUND, "no subscriber %lld",
		           (long long)id);
		goto out;
	}
	if (event(s, now, hard ? "bounce-hard" : "bounce-soft", id, 0, detail,
	          err) < 0)
		goto out;
	if (hard && bounces >= hard_limit &&
	    (status == KR_SUB_ACTIVE || status == KR_SUB_PENDING)) {
		if ((st = stmt(s, ST_SUB_BOUNCED, err)) == NULL)
			goto out;
		sqlite3_bind_int64(st, 1, id);
		if (run(s, st, "bounce", err) < 0)
			goto out;
		if ((st = stmt(s, ST_DEL_CANCEL_SUB, err)) == NULL)
			goto out;
		sqlite3_bind_int64(st, 1, id);
		if (run(s, st, "cancel deliveries", err) < 0)
			goto out;
		if (event(s, now, "bounced", id, 0, detail, err) < 0)
			goto out;
		became = 1;
	}
	r = 0;
out:
	r = tx_end(s, own, r, err);
	return r < 0 ? -1 : became;
}

static int
sq_subscriber_delete(struct kr_store_be *s, int64_t id, struct kr_err *err)
{
	sqlite3_stmt *st;
	bool own = false;
	int r = -1;

	if (tx_begin(s, &own, err) < 0)
		return -1;
	/* Deliveries go by ON DELETE CASCADE. */
	if ((st = stmt(s, ST_SUB_DELETE, err)) == NULL)
		goto out;
	sqlite3_bind_int64(st, 1, id);
	if (run(s, st, "delete subscriber", err) < 0)
		goto out;
	if (sqlite3_changes(s->db) == 0) {
		kr_err_set(err, KR_ERR_NOTFOUND, "no subscriber %lld",
		           (long long)id);
		goto out;
	}
	if (event(s, (int64_t)time(NULL), "delete", id, 0, "operator", err) < 0)
		goto out;
	r = 0;
out:
	return tx_end(s, own, r, err);
}

static int
sq_subscriber_foreach(struct kr_store_be *s, const char *list_id, int status,
                            kr_store_sub_fn fn, void *ctx, struct kr_err *err)
{
	struct kr_subscriber sub;
	sqlite3_stmt *st = stmt(s, ST_SUB_FOREACH, err);
	int64_t last = 0;
	int rc = SQLITE_DONE, r = 0;
	size_t got;

	if (st == NULL)
		return -1;
	/* Pages of 1000 by id, so a long export holds no snapshot for
	 * long. fn may use the store, except this function. */
	do {
		got = 0;
		if (list_id)
			bind_text(st, 1, list_id);
		sqlite3_bind_int(st, 2, status);
		sqlite3_bind_int64(st, 3, last);
		while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
			sub_from_row(st, &sub);
			last = sub.id;
			got++;
			r = fn(ctx, &sub);
		}
		if (r == 0 && rc != SQLITE_DONE)
			r = db_err(s, rc, "list subscribers", err);
		stmt_done(st);
	} while (r == 0 && got > 0);
	return r;
}

static int
sq_subscriber_count(struct kr_store_be *s, const char *list_id, int status,
                          int64_t *n_out, struct kr_err *err)
{
	sqlite3_stmt *st =
	    stmt(s, s->tallies ? ST_SUB_COUNT : ST_SUB_COUNT_ROWS, err);
	int rc, r = 0;

	*n_out = 0;
	if (st == NULL)
		return -1;
	if (list_id)
		bind_text(st, 1, list_id);
	sqlite3_bind_int(st, 2, status);
	if ((rc = sqlite3_step(st)) == SQLITE_ROW)
		*n_out = sqlite3_column_int64(st, 0);
	else
		r = db_err(s, rc, "count subscribers", err);
	stmt_done(st);
	return r;
}

static int
sq_confirm_count(struct kr_store_be *s, const char *email, int64_t since,
                       int64_t *n_out, struct kr_err *err)
{
	sqlite3_stmt *st = stmt(s, ST_CONFIRM_COUNT, err);
	int rc, r = 0;

	*n_out = 0;
	if (st == NULL)
		return -1;
	bind_text(st, 1, email);
	sqlite3_bind_int64(st, 2, since);
	if ((rc = sqlite3_step(st)) == SQLITE_ROW)
		*n_out = sqlite3_column_int64(st, 0);
	else
		r = db_err(s, rc, "count confirmations", err);
	stmt_done(st);
	return r;
}

static int
sq_confirm_enqueue(struct kr_store_be *s, int64_t id, int64_t now,
                         struct kr_err *err)
{
	sqlite3_stmt *st = stmt(s, ST_CONFIRM_ENQUEUE, err);

	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, now);
	if (run(s, st, "queue confirmation", err) < 0)
		return -1;
	if (sqlite3_changes(s->db) == 0)
		return kr_err_set(err, KR_ERR_NOTFOUND, "no subscriber %lld",
		                  (long long)id);
	return 0;
}

/* ---- reports ---- */

static int
sq_report_add(struct kr_store_be *s, const struct kr_report_row *rep,
                    bool again, int64_t now, int64_t *id_out,
                    int64_t *queued_out, struct kr_err *err)
{
	sqlite3_stmt *st;
	int64_t id = 0;
	bool own = false;
	int r = -1, rc;

	*id_out = 0;
	*queued_out = 0;
	if (tx_begin(s, &own, err) < 0)
		return -1;
	if (rep->hash[0] != '\0' && !again) {
		if ((st = stmt(s, ST_REPORT_BY_HASH, err)) == NULL)
			goto out;
		bind_text(st, 1, rep->hash);
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW)
			id = sqlite3_column_int64(st, 0);
		stmt_done(st);
		if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
			db_err(s, rc, "report lookup", err);
			goto out;
		}
		if (id != 0) {
			kr_err_set(
			    err, KR_ERR_EXISTS,
			    "this report was stored before as report %lld "
			    "(same content hash)",
			    (long long)id);
			*id_out = id;
			goto out;
		}
	}
	if ((st = stmt(s, ST_REPORT_INSERT, err)) == NULL)
		goto out;
	bind_text(st, 1, rep->list_id);
	bind_text(st, 2, rep->subject);
	bind_text(st, 3, rep->preheader);
	bind_text(st, 4, rep->text);
	bind_text(st, 5, rep->html);
	bind_text(st, 6, rep->source);
	bind_text(st, 7, rep->hash);
	sqlite3_bind_int64(st, 8, now);
	sqlite3_bind_int64(st, 9, rep->send_at);
	bind_text(st, 10, rep->date);
	if (run(s, st, "store report", err) < 0)
		goto out;
	id = sqlite3_last_insert_rowid(s->db);
	/* One INSERT … SELECT queues every active subscriber. */
	if ((st = stmt(s, ST_REPORT_QUEUE, err)) == NULL)
		goto out;
	sqlite3_bind_int64(st, 1, id);
	bind_text(st, 2, rep->list_id);
	sqlite3_bind_int64(st, 3, now);
	sqlite3_bind_int64(st, 4, rep->send_at > now ? rep->send_at : now);
	if (run(s, st, "queue report", err) < 0)
		goto out;
	*queued_out = sqlite3_changes64(s->db);
	*id_out = id;
	r = 0;
out:
	r = tx_end(s, own, r, err);
	if (r < 0 && (err == NULL || err->code != KR_ERR_EXISTS))
		*id_out = 0;
	if (r < 0)
		*queued_out = 0;
	return r;
}

static void
report_from_row(sqlite3_stmt *st, struct kr_report_row *out)
{
	memset(out, 0, sizeof(*out));
	out->id = sqlite3_column_int64(st, 0);
	col_copy(out->list_id, sizeof(out->list_id), st, 1);
	out->subject = col_dup(st, 2);
	out->preheader = col_dup(st, 3);
	out->text = col_dup(st, 4);
	out->html = col_dup(st, 5);
	out->source = col_dup(st, 6);
	col_copy(out->hash, sizeof(out->hash), st, 7);
	out->created_at = sqlite3_column_int64(st, 8);
	out->send_at = sqlite3_column_int64(st, 9);
	out->state = (enum kr_report_state)sqlite3_column_int(st, 10);
	out->date = col_dup(st, 11);
}

static int
sq_report_get(struct kr_store_be *s, int64_t id, struct kr_report_row *out,
                    struct kr_err *err)
{
	sqlite3_stmt *st = stmt(s, ST_REPORT_GET, err);
	int rc, r;

	memset(out, 0, sizeof(*out));
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		report_from_row(st, out);
		r = 1;
	} else if (rc == SQLITE_DONE) {
		r = 0;
	} else {
		r = db_err(s, rc, "report lookup", err);
	}
	stmt_done(st);
	return r;
}

static int
sq_delivery_counts(struct kr_store_be *s, int64_t report_id,
                         struct kr_delivery_counts *out, struct kr_err *err)
{
	sqlite3_stmt *st;
	int64_t now = (int64_t)time(NULL), n, live;
	int rc, r = 0;

	memset(out, 0, sizeof(*out));
	if (s->tallies)
		st = stmt(s, report_id ? ST_COUNTS_REPORT : ST_COUNTS_ALL, err);
	else
		st = stmt(s, report_id ? ST_COUNTS_REPORT_ROWS
		                       : ST_COUNTS_ALL_ROWS,
		          err);
	if (st == NULL)
		return -1;
	if (report_id) {
		sqlite3_bind_int64(st, 1, report_id);
		sqlite3_bind_int64(st, 2, now);
	} else {
		sqlite3_bind_int64(st, 1, now);
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		n = sqlite3_column_int64(st, 1);
		live = sqlite3_column_int64(st, 2);
		switch (sqlite3_column_int(st, 0)) {
		case KR_DS_QUEUED:
			out->queued = n;
			out->in_flight += live;
			break;
		case KR_DS_SENT:
			out->sent = n;
			break;
		case KR_DS_DEFERRED:
			out->deferred = n;
			out->in_flight += live;
			break;
		case KR_DS_FAILED:
			out->failed = n;
			break;
		case KR_DS_UNCERTAIN:
			out->uncertain = n;
			break;
		case KR_DS_CANCELLED:
			out->cancelled = n;
			break;
		default:
			break;
		}
	}
	if (rc != SQLITE_DONE)
		r = db_err(s, rc, "count deliveries", err);
	stmt_done(st);
	return r;
}

static int
sq_report_foreach(struct kr_store_be *s, size_t limit, kr_store_report_fn fn,
                        void *ctx, struct kr_err *err)
{
	struct kr_report_row *rows = NULL;
	struct kr_delivery_counts counts;
	sqlite3_stmt *st = stmt(s, ST_REPORT_LIST, err);
	size_t n = 0, cap = 0, i;
	int rc, r = -1;

	if (st == NULL)
		return -1;
	/* Copied first, so fn may use the store. */
	sqlite3_bind_int64(st, 1, limit ? (int64_t)limit : -1);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			rows = kr_xrealloc(rows, cap * sizeof(*rows));
		}
		report_from_row(st, &rows[n++]);
	}
	stmt_done(st);
	if (rc != SQLITE_DONE) {
		db_err(s, rc, "list reports", err);
		goto out;
	}
	r = 0;
	for (i = 0; i < n && r == 0; i++) {
		if ((r = sq_delivery_counts(s, rows[i].id, &counts,
		                                  err)) < 0)
			break;
		r = fn(ctx, &rows[i], &counts);
	}
out:
	for (i = 0; i < n; i++)
		kr_store_report_row_fini(&rows[i]);
	free(rows);
	return r;
}

static int
sq_report_set_state(struct kr_store_be *s, int64_t id,
                          enum kr_report_state state, struct kr_err *err)
{
	static const char *const names[] = {"resume", "pause", "cancel"};
	sqlite3_stmt *st;
	bool own = false;
	int r = -1;

	if ((unsigned)state >= KR_NELEM(names))
		return kr_err_set(err, KR_ERR_INVALID, "bad report state %d",
		                  (int)state);
	if (tx_begin(s, &own, err) < 0)
		return -1;
	if ((st = stmt(s, ST_REPORT_SET_STATE, err)) == NULL)
		goto out;
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int(st, 2, (int)state);
	if (run(s, st, "set report state", err) < 0)
		goto out;
	if (sqlite3_changes(s->db) == 0) {
		kr_err_set(err, KR_ERR_NOTFOUND, "no report %lld",
		           (long long)id);
		goto out;
	}
	if (state == KR_RS_CANCELLED) {
		if ((st = stmt(s, ST_REPORT_CANCEL_ROWS, err)) == NULL)
			goto out;
		sqlite3_bind_int64(st, 1, id);
		if (run(s, st, "cancel deliveries", err) < 0)
			goto out;
	}
	if (event(s, (int64_t)time(NULL), names[state], 0, id, "operator",
	          err) < 0)
		goto out;
	r = 0;
out:
	return tx_end(s, own, r, err);
}

static int
sq_report_retry(struct kr_store_be *s, int64_t report_id,
                      bool with_uncertain, int64_t *n_out, struct kr_err *err)
{
	sqlite3_stmt *st;
	int64_t now = (int64_t)time(NULL);
	bool own = false;
	int r = -1;

	*n_out = 0;
	if (tx_begin(s, &own, err) < 0)
		return -1;
	/* A retried row starts afresh: attempts and age restart, so the
	 * retry schedule and max_age apply again from now. */
	if ((st = stmt(s, ST_RETRY, err)) == NULL)
		goto out;
	sqlite3_bind_int64(st, 1, report_id);
	sqlite3_bind_int(st, 2, with_uncertain);
	sqlite3_bind_int64(st, 3, now);
	if (run(s, st, "retry", err) < 0)
		goto out;
	*n_out = sqlite3_changes64(s->db);
	if (event(s, now, "retry", 0, report_id, "operator", err) < 0)
		goto out;
	r = 0;
out:
	r = tx_end(s, own, r, err);
	if (r < 0)
		*n_out = 0;
	return r;
}

/* ---- delivery ---- */

/* Claims from one query (confirmations, or one report's rows): selects
 * up to max - *n rows into out, then leases those whose subscriber may
 * still get mail and cancels the others (unsubscribed meanwhile), so
 * they leave the due index for good. */
static int exec_ints(struct kr_store_be *s, const char *sql, int n, int64_t a,
                     int64_t b, int64_t c, int64_t *out, struct kr_err *err);

/* What a claim writes into each row it leases. */
struct lease {
	int64_t until;
	const struct kr_store_owner *owner;
	int64_t token; /* the fence: new for every claim, never 0 */
};

static int
claim_pass(struct kr_store_be *s, enum stmt_id id, int64_t report_id,
           int64_t now, const struct lease *l, size_t max,
           struct kr_claim *out, size_t *n, struct kr_err *err)
{
	sqlite3_stmt *st, *up;
	size_t first, got, want_n, i, keep;
	int rc, status[1024];
	enum kr_sub_status want;
	bool ok;

	for (;;) {
		if (*n >= max)
			return 0;
		if ((st = stmt(s, id, err)) == NULL)
			return -1;
		first = *n;
		want_n = max - first;
		if (want_n > KR_NELEM(status))
			want_n = KR_NELEM(status);
		sqlite3_bind_int64(st, 1, now);
		sqlite3_bind_int64(st, 2, (int64_t)want_n);
		if (report_id)
			sqlite3_bind_int64(st, 3, report_id);
		got = 0;
		while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
			struct kr_claim *c = &out[first + got];

			memset(c, 0, sizeof(*c));
			c->delivery_id = sqlite3_column_int64(st, 0);
			c->kind =
			    (enum kr_delivery_kind)sqlite3_column_int(st, 1);
			c->report_id = sqlite3_column_int64(st, 2);
			c->subscriber_id = sqlite3_column_int64(st, 3);
			col_copy(c->list_id, sizeof(c->list_id), st, 4);
			col_copy(c->email, sizeof(c->email), st, 5);
			c->attempts = sqlite3_column_int(st, 6);
			c->queued_at = sqlite3_column_int64(st, 7);
			c->lease = l->token;
			status[got++] = sqlite3_column_int(st, 8);
			col_copy(c->name, sizeof(c->name), st, 9);
		}
		stmt_done(st);
		if (rc != SQLITE_DONE)
			return db_err(s, rc, "claim", err);
		if (got == 0)
			return 0;
		keep = first;
		for (i = 0; i < got; i++) {
			struct kr_claim *c = &out[first + i];

			want = c->kind == KR_DELIVERY_CONFIRM ? KR_SUB_PENDING
			                                      : KR_SUB_ACTIVE;
			ok = status[i] == (int)want;
			up = stmt(s, ok ? ST_LEASE : ST_CANCEL_ONE, err);
			if (up == NULL)
				return -1;
			sqlite3_bind_int64(up, 1, c->delivery_id);
			if (ok) {
				sqlite3_bind_int64(up, 2, l->until);
				bind_text(up, 3, l->owner->host);
				sqlite3_bind_int64(up, 4, l->owner->incarnation);
				sqlite3_bind_int64(up, 5, l->token);
			}
			if (run(s, up, "claim", err) < 0)
				return -1;
			if (ok)
				out[keep++] = *c;
		}
		*n = keep;
		/* Fewer than asked and none cancelled: there are no more.
		 * Else look again (rows now leased or cancelled are out). */
		if (keep == first + got && got < want_n)
			return 0;
	}
}

static int
sq_claim(struct kr_store_be *s, const struct kr_store_owner *owner,
         int64_t now, int64_t lease_until, size_t max, struct kr_claim *out,
         size_t *n_out, struct kr_err *err)
{
	static const struct kr_store_owner nobody = {"", 0};
	struct lease l;
	uint64_t token = 0;
	sqlite3_stmt *st;
	int64_t *reports = NULL;
	size_t nrep = 0, cap = 0, i;
	bool own = false;
	int r = -1, rc;

	*n_out = 0;
	if (max == 0)
		return 0;
	/* A lease must outlive now, or claimed rows would be due again. */
	if (lease_until < now)
		lease_until = now;
	/* A random fence: unique among the claims a row will ever see,
	 * whichever host makes them, without a shared counter. */
	while (token == 0) {
		sqlite3_randomness(sizeof(token), &token);
		token &= INT64_MAX;
	}
	l.until = lease_until;
	l.owner = owner != NULL ? owner : &nobody;
	l.token = (int64_t)token;
	if (tx_begin(s, &own, err) < 0)
		return -1;
	/* Confirmations, then retries that are due, then the queue. */
	if (claim_pass(s, ST_CLAIM_CONFIRM, 0, now, &l, max, out, n_out,
	               err) < 0 ||
	    claim_pass(s, ST_CLAIM_DEFERRED, 0, now, &l, max, out, n_out,
	               err) < 0)
		goto out;
	if (*n_out < max) {
		if ((st = stmt(s, ST_CLAIM_REPORTS, err)) == NULL)
			goto out;
		sqlite3_bind_int64(st, 1, now);
		while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
			if (nrep == cap) {
				cap = cap ? cap * 2 : 8;
				reports = kr_xrealloc(reports,
				                      cap * sizeof(*reports));
			}
			reports[nrep++] = sqlite3_column_int64(st, 0);
		}
		stmt_done(st);
		if (rc != SQLITE_DONE) {
			db_err(s, rc, "claim", err);
			goto out;
		}
	}
	for (i = 0; i < nrep && *n_out < max; i++)
		if (claim_pass(s, ST_CLAIM_ROWS, reports[i], now, &l, max, out,
		               n_out, err) < 0)
			goto out;
	r = 0;
out:
	free(reports);
	r = tx_end(s, own, r, err);
	if (r < 0)
		*n_out = 0;
	return r;
}

/* Runs a fenced mark statement on one row (lease bound to ?6): STALE when
 * a later claim took the row, NOTFOUND when there is no such row. */
static int
mark(struct kr_store_be *s, sqlite3_stmt *st, int64_t delivery_id,
     int64_t lease, struct kr_err *err)
{
	int64_t n = 0;

	sqlite3_bind_int64(st, 6, lease);
	if (run(s, st, "mark delivery", err) < 0)
		return -1;
	if (sqlite3_changes(s->db) > 0)
		return 0;
	if (exec_ints(s, "SELECT count(*) FROM deliveries WHERE id = ?1", 1,
	              delivery_id, 0, 0, &n, err) < 0)
		return -1;
	if (n == 0)
		return kr_err_set(err, KR_ERR_NOTFOUND, "no delivery %lld",
		                  (long long)delivery_id);
	return kr_err_set(err, KR_ERR_STALE,
	                  "delivery %lld: a later claim took it (its lease "
	                  "ran out, and another host or a restart claimed "
	                  "it): this outcome is not recorded",
	                  (long long)delivery_id);
}

static int
sq_mark_sent(struct kr_store_be *s, int64_t delivery_id, int64_t lease,
             int64_t now, const char *reply, struct kr_err *err)
{
	sqlite3_stmt *st = stmt(s, ST_MARK_SENT, err);

	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, delivery_id);
	sqlite3_bind_int64(st, 2, now);
	if (reply)
		bind_text(st, 3, reply);
	return mark(s, st, delivery_id, lease, err);
}

static int
sq_mark_deferred(struct kr_store_be *s, int64_t delivery_id, int64_t lease,
                 int64_t now, int64_t next_attempt, int code,
                 const char *reply, struct kr_err *err)
{
	sqlite3_stmt *st = stmt(s, ST_MARK_DEFERRED, err);

	(void)now;
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, delivery_id);
	sqlite3_bind_int64(st, 3, next_attempt);
	sqlite3_bind_int(st, 4, code);
	if (reply)
		bind_text(st, 5, reply);
	return mark(s, st, delivery_id, lease, err);
}

static int
sq_mark_failed(struct kr_store_be *s, int64_t delivery_id, int64_t lease,
               int64_t now, int code, const char *reply, struct kr_err *err)
{
	sqlite3_stmt *st = stmt(s, ST_MARK_FAILED, err);

	(void)now;
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, delivery_id);
	sqlite3_bind_int(st, 3, code);
	if (reply)
		bind_text(st, 4, reply);
	return mark(s, st, delivery_id, lease, err);
}

static int
sq_mark_uncertain(struct kr_store_be *s, int64_t delivery_id, int64_t lease,
                  int64_t now, const char *reply, struct kr_err *err)
{
	sqlite3_stmt *st = stmt(s, ST_MARK_UNCERTAIN, err);

	(void)now;
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, delivery_id);
	if (reply)
		bind_text(st, 3, reply);
	return mark(s, st, delivery_id, lease, err);
}

static int
sq_release(struct kr_store_be *s, int64_t delivery_id, int64_t lease,
           struct kr_err *err)
{
	sqlite3_stmt *st = stmt(s, ST_RELEASE, err);

	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, delivery_id);
	return mark(s, st, delivery_id, lease, err);
}

static int
sq_reclaim(struct kr_store_be *s, const struct kr_store_owner *owner,
           int64_t now, int64_t *n_out, struct kr_err *err)
{
	sqlite3_stmt *st = stmt(s, ST_RECLAIM, err);

	if (n_out != NULL)
		*n_out = 0;
	if (st == NULL)
		return -1;
	bind_text(st, 1, owner->host);
	sqlite3_bind_int64(st, 2, owner->incarnation);
	sqlite3_bind_int64(st, 3, now);
	if (run(s, st, "reclaim", err) < 0)
		return -1;
	if (n_out != NULL)
		*n_out = sqlite3_changes(s->db);
	return 0;
}

static int
sq_event(struct kr_store_be *s, const char *kind, int64_t subscriber_id,
               int64_t report_id, const char *detail, struct kr_err *err)
{
	return event(s, (int64_t)time(NULL), kind, subscriber_id, report_id,
	             detail, err);
}

static int
sq_backup(struct kr_store_be *s, const char *path, struct kr_err *err)
{
	sqlite3 *dst = NULL;
	sqlite3_backup *b = NULL;
	char *tmp = kr_xasprintf("%s.tmp", path);
	int rc, r = -1;

	(void)unlink(tmp);
	create_private(tmp);
	rc = sqlite3_open_v2(tmp, &dst,
	                     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
	if (rc != SQLITE_OK) {
		kr_err_set(err, KR_ERR_IO, "backup %s: %s", tmp,
		           dst ? sqlite3_errmsg(dst) : sqlite3_errstr(rc));
		goto out;
	}
	/* One step copies all pages under one read snapshot: consistent
	 * while the daemon keeps writing (WAL). */
	if ((b = sqlite3_backup_init(dst, "main", s->db, "main")) == NULL) {
		kr_err_set(err, KR_ERR_DB, "backup %s: %s", path,
		           sqlite3_errmsg(dst));
		goto out;
	}
	rc = sqlite3_backup_step(b, -1);
	sqlite3_backup_finish(b);
	if (rc != SQLITE_DONE) {
		kr_err_set(err,
		           (rc & 0xff) == SQLITE_BUSY ? KR_ERR_BUSY : KR_ERR_DB,
		           "backup %s: %s", path, sqlite3_errstr(rc));
		goto out;
	}
	/* Fold the copy's WAL into the file so one file is the backup. */
	rc =
	    sqlite3_exec(dst, "PRAGMA journal_mode = DELETE", NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		kr_err_set(err, KR_ERR_DB, "backup %s: %s", path,
		           sqlite3_errmsg(dst));
		goto out;
	}
	rc = sqlite3_close(dst);
	dst = NULL;
	if (rc != SQLITE_OK) {
		kr_err_set(err, KR_ERR_IO, "backup %s: %s", path,
		           sqlite3_errstr(rc));
		goto out;
	}
	if (rename(tmp, path) < 0) {
		kr_err_set(err, KR_ERR_IO, "backup %s: %s", path,
		           strerror(errno));
		goto out;
	}
	r = 0;
out:
	if (dst)
		sqlite3_close(dst);
	if (r < 0)
		(void)unlink(tmp);
	free(tmp);
	return r;
}

static int
sq_ping(struct kr_store_be *s, struct kr_err *err)
{
	if (run_id(s, ST_PING, "ping", err) < 0)
		return -1;
	/* After a failed write: does writing work again (space freed,
	 * the file writable)? A real write tells; it clears wfail. */
	if (s->wfail && sqlite3_get_autocommit(s->db))
		(void)run_id(s, ST_HEALTH, "health", NULL);
	if (s->wfail)
		return kr_err_set(err, KR_ERR_BUSY,
		                  "database %s: a write failed and none has "
		                  "succeeded since (%s)",
		                  s->path, s->wfail_msg);
	return 0;
}

/* ---- bounces (schema v3) ----
 * Rare next to deliveries, so these statements are prepared per call
 * rather than cached in st[]. */

static int
prep(struct kr_store_be *s, const char *sql, sqlite3_stmt **st,
    struct kr_err *err)
{
	int rc = sqlite3_prepare_v2(s->db, sql, -1, st, NULL);

	if (rc != SQLITE_OK) {
		*st = NULL;
		return db_err(s, rc, "prepare", err);
	}
	return 0;
}

/* Runs sql with up to three integer parameters (ignored past n); when
 * out is not NULL, the first column of the first row goes there. */
static int
exec_ints(struct kr_store_be *s, const char *sql, int n, int64_t a, int64_t b,
    int64_t c, int64_t *out, struct kr_err *err)
{
	sqlite3_stmt *st = NULL;
	int rc, r = -1;

	if (prep(s, sql, &st, err) < 0)
		goto out;
	if (n > 0)
		sqlite3_bind_int64(st, 1, a);
	if (n > 1)
		sqlite3_bind_int64(st, 2, b);
	if (n > 2)
		sqlite3_bind_int64(st, 3, c);
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		db_err(s, rc, sql, err);
		goto out;
	}
	if (out)
		*out = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
	r = 0;
out:
	sqlite3_finalize(st);
	return r;
}

static int
sq_changes(struct kr_store_be *s, int64_t *v, struct kr_err *err)
{
	return exec_ints(s, "PRAGMA data_version", 0, 0, 0, 0, v, err);
}

static int
sq_bounce_record(struct kr_store_be *s, const struct kr_bounce_row *b,
    const struct kr_bounce_policy *p, struct kr_bounce_result *res_out,
    struct kr_err *err)
{
	struct kr_subscriber sub = {0};
	sqlite3_stmt *st = NULL;
	char detail[320];
	int64_t n = 0;
	unsigned hard = p && p->hard_threshold ? p->hard_threshold : 1;
	unsigned soft = p && p->soft_threshold ? p->soft_threshold : 1;
	int64_t window = p ? p->soft_window : 0;
	int64_t reset = p ? p->reset_after : 0, last_counted = 0;
	bool own = false;
	int r = -1, found, changed = 0;

	memset(res_out, 0, sizeof(*res_out));
	if (b->kind < KR_STORE_BOUNCE_HARD ||
	    b->kind > KR_STORE_BOUNCE_COMPLAINT)
		return kr_err_set(err, KR_ERR_INVALID, "bounce: bad kind %d",
		    b->kind);
	if (tx_begin(s, &own, err) < 0)
		return -1;
	if ((found = sq_subscriber_get(s, b->subscriber_id, &sub,
		 err)) < 0)
		goto out;
	if (!found) {
		kr_err_set(err, KR_ERR_NOTFOUND, "no subscriber %lld",
		    (long long)b->subscriber_id);
		goto out;
	}
	/* When the last counted bounce was; the count restarts at the next
	 * one when that is longer ago than reset_after (an address that
	 * bounced once a year ago and works since is not one bounce away
	 * from removal). */
	if (reset > 0 && sub.bounces > 0 &&
	    exec_ints(s,
		"SELECT coalesce(max(at), 0) FROM bounces"
		" WHERE subscriber_id = ?1 AND counted = 1",
		1, b->subscriber_id, 0, 0, &last_counted, err) < 0)
		goto out;
	/* One report, one count: a second bounce for the same copy (two
	 * MTAs of a chain, a DSN after the 5xx) is kept but never counts. */
	if (b->kind != KR_STORE_BOUNCE_COMPLAINT && b->report_id > 0) {
		if (exec_ints(s,
			"SELECT count(*) FROM bounces WHERE subscriber_id = ?1"
			" AND report_id = ?2 AND kind IN (1, 2)",
			2, b->subscriber_id, b->report_id, 0, &n, err) < 0)
			goto out;
		res_out->duplicate = n > 0;
	}
	if (prep(s,
		"INSERT INTO bounces (at, subscriber_id, report_id, kind,"
		" status, diagnostic, source, counted)"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
		&st, err) < 0)
		goto out;
	sqlite3_bind_int64(st, 1, b->at);
	sqlite3_bind_int64(st, 2, b->subscriber_id);
	if (b->report_id > 0)
		sqlite3_bind_int64(st, 3, b->report_id);
	sqlite3_bind_int(st, 4, b->kind);
	bind_text(st, 5, b->status);
	bind_text(st, 6, b->diagnostic);
	bind_text(st, 7, b->source);
	sqlite3_bind_int(st, 8,
	    res_out->duplicate ? -1 : b->kind == KR_STORE_BOUNCE_HARD);
	if (sqlite3_step(st) != SQLITE_DONE) {
		db_err(s, sqlite3_errcode(s->db), "record bounce", err);
		goto out;
	}
	snprintf(detail, sizeof(detail), "kind=%s status=%s source=%s",
	    b->kind == KR_STORE_BOUNCE_HARD   ? "hard"
	    : b->kind == KR_STORE_BOUNCE_SOFT ? "soft"
					      : "complaint",
	    b->status[0] ? b->status : "-", b->source[0] ? b->source : "-");
	if (event(s, b->at, b->kind == KR_STORE_BOUNCE_COMPLAINT ? "complaint"
								 : "bounce",
		b->subscriber_id, b->report_id, detail, err) < 0)
		goto out;
	if (b->kind == KR_STORE_BOUNCE_COMPLAINT) {
		if (unsub_one(s, b->subscriber_id, 0, b->at, &changed, err) < 0)
			goto out;
		res_out->unsubscribed = changed > 0;
		res_out->bounces = sub.bounces;
		r = 0;
		goto out;
	}
	if (res_out->duplicate) {
		res_out->counted = false;
	} else if (b->kind == KR_STORE_BOUNCE_HARD) {
		res_out->counted = true;
	} else {
		/* Soft: one counted bounce per soft_threshold uncounted soft
		 * bounces within the window. */
		if (exec_ints(s,
			"SELECT count(*) FROM bounces WHERE subscriber_id = ?1"
			" AND kind = 2 AND counted = 0 AND at > ?2",
			2, b->subscriber_id, b->at - window, 0, &n, err) < 0)
			goto out;
		if (n >= (int64_t)soft) {
			if (exec_ints(s,
				"UPDATE bounces SET counted = 1"
				" WHERE subscriber_id = ?1 AND kind = 2"
				" AND counted = 0",
				1, b->subscriber_id, 0, 0, NULL, err) < 0)
				goto out;
			res_out->counted = true;
		}
	}
	if (res_out->counted && reset > 0 && sub.bounces > 0 &&
	    last_counted < b->at - reset) {
		snprintf(detail, sizeof(detail),
		    "bounces=%d last_counted=%lld reset_after=%llds",
		    sub.bounces, (long long)last_counted, (long long)reset);
		if (event(s, b->at, "bounces-reset", b->subscriber_id,
			b->report_id, detail, err) < 0 ||
		    exec_ints(s,
			"UPDATE subscribers SET bounces = 0 WHERE id = ?1", 1,
			b->subscriber_id, 0, 0, NULL, err) < 0)
			goto out;
		sub.bounces = 0;
		res_out->reset = true;
	}
	res_out->bounces = sub.bounces + (res_out->counted ? 1 : 0);
	if (res_out->counted &&
	    exec_ints(s,
		"UPDATE subscribers SET bounces = bounces + 1 WHERE id = ?1",
		1, b->subscriber_id, 0, 0, NULL, err) < 0)
		goto out;
	if (res_out->bounces >= (int)hard &&
	    (sub.status == KR_SUB_ACTIVE || sub.status == KR_SUB_PENDING)) {
		if (exec_ints(s,
			"UPDATE subscribers SET status = 3 WHERE id = ?1"
			" AND status IN (0, 1)",
			1, b->subscriber_id, 0, 0, NULL, err) < 0)
			goto out;
		res_out->bounced = true;
		if (exec_ints(s,
			"UPDATE deliveries SET state = 5, lease_until = 0"
			" WHERE subscriber_id = ?1 AND state IN (0, 2)",
			1, b->subscriber_id, 0, 0, NULL, err) < 0)
			goto out;
		res_out->cancelled = sqlite3_changes(s->db);
		snprintf(detail, sizeof(detail), "bounces=%d threshold=%u",
		    res_out->bounces, hard);
		if (event(s, b->at, "bounced", b->subscriber_id, b->report_id,
			detail, err) < 0)
			goto out;
	}
	r = 0;
out:
	sqlite3_finalize(st);
	return tx_end(s, own, r, err);
}

static int
sq_bounce_foreach(struct kr_store_be *s, int64_t report_id, size_t limit,
    kr_store_bounce_fn fn, void *ctx, struct kr_err *err)
{
	struct kr_bounce_row row;
	sqlite3_stmt *st = NULL;
	int rc = SQLITE_DONE, r = -1;

	if (prep(s,
		"SELECT b.id, b.at, b.subscriber_id, coalesce(b.report_id, 0),"
		" b.kind, b.status, b.diagnostic, b.source,"
		" coalesce(s.email, ''), coalesce(s.list_id, '')"
		" FROM bounces b LEFT JOIN subscribers s"
		" ON s.id = b.subscriber_id"
		" WHERE (?1 = 0 OR b.report_id = ?1)"
		" ORDER BY b.id DESC LIMIT ?2",
		&st, err) < 0)
		goto out;
	sqlite3_bind_int64(st, 1, report_id);
	sqlite3_bind_int64(st, 2, limit ? (int64_t)limit : -1);
	r = 0;
	while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		memset(&row, 0, sizeof(row));
		row.id = sqlite3_column_int64(st, 0);
		row.at = sqlite3_column_int64(st, 1);
		row.subscriber_id = sqlite3_column_int64(st, 2);
		row.report_id = sqlite3_column_int64(st, 3);
		row.kind = sqlite3_column_int(st, 4);
		col_copy(row.status, sizeof(row.status), st, 5);
		col_copy(row.diagnostic, sizeof(row.diagnostic), st, 6);
		col_copy(row.source, sizeof(row.source), st, 7);
		col_copy(row.email, sizeof(row.email), st, 8);
		col_copy(row.list_id, sizeof(row.list_id), st, 9);
		r = fn(ctx, &row);
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = db_err(s, rc, "list bounces", err);
out:
	sqlite3_finalize(st);
	return r;
}

/* ---- counts for /metrics ---- */

static int
sq_bounce_counts(struct kr_store_be *s, int64_t report_id,
    struct kr_bounce_counts *out, struct kr_err *err)
{
	sqlite3_stmt *st = NULL;
	int rc = SQLITE_DONE, r = -1;

	memset(out, 0, sizeof(*out));
	if (prep(s,
		report_id > 0 ?
		    "SELECT kind, count(*) FROM bounces WHERE report_id = ?1"
		    " GROUP BY kind" :
		    "SELECT kind, count(*) FROM bounces GROUP BY kind",
		&st, err) < 0)
		goto out;
	if (report_id > 0)
		sqlite3_bind_int64(st, 1, report_id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		switch (sqlite3_column_int(st, 0)) {
		case KR_STORE_BOUNCE_HARD:
			out->hard = sqlite3_column_int64(st, 1);
			break;
		case KR_STORE_BOUNCE_SOFT:
			out->soft = sqlite3_column_int64(st, 1);
			break;
		case KR_STORE_BOUNCE_COMPLAINT:
			out->complaint = sqlite3_column_int64(st, 1);
			break;
		default:
			break;
		}
	}
	r = rc == SQLITE_DONE ? 0 : db_err(s, rc, "count bounces", err);
	if (r == 0 && report_id > 0)
		r = exec_ints(s,
		              "SELECT count(*) FROM events WHERE report_id = ?1"
		              " AND kind = 'unsubscribe'",
		              1, report_id, 0, 0, &out->unsubscribed, err);
out:
	sqlite3_finalize(st);
	return r;
}

static int
sq_subscriber_tally(struct kr_store_be *s, kr_store_tally_fn fn,
    void *ctx, struct kr_err *err)
{
	sqlite3_stmt *st = NULL;
	int rc = SQLITE_DONE, r = -1;

	/* schema v11's counters, in their primary key's order (before v11
	 * the rows, in the (list_id, email) index's) */
	if (prep(s, s->tallies ?
		"SELECT list_id, status, n FROM subscriber_tally WHERE n > 0"
		" ORDER BY list_id, status" :
		"SELECT list_id, status, count(*) FROM subscribers"
		" GROUP BY list_id, status ORDER BY list_id, status",
		&st, err) < 0)
		goto out;
	r = 0;
	while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW)
		r = fn(ctx, (const char *)sqlite3_column_text(st, 0),
		    (enum kr_sub_status)sqlite3_column_int(st, 1),
		    sqlite3_column_int64(st, 2));
	if (r == 0 && rc != SQLITE_DONE)
		r = db_err(s, rc, "count subscribers", err);
out:
	sqlite3_finalize(st);
	return r;
}

/* ---- the dashboard (schema v10) ---- */

static int
sq_subscriber_days(struct kr_store_be *s, const char *list_id, int64_t since,
    int64_t utc_offset, kr_store_day_fn fn, void *ctx, struct kr_err *err)
{
	sqlite3_stmt *st = NULL;
	int rc = SQLITE_DONE, r = -1;

	/* A day is a whole number of schema v11's quarter hours when the
	 * offset is (every zone in use); otherwise two range scans of the
	 * v10 indexes, where the literal "unsubscribed_at > 0" lets the
	 * planner take the partial one. */
	static const char by_quarter[] =
	    "SELECT (q * 900 + ?3) / 86400 AS d, sum(signups), sum(unsubs)"
	    " FROM subscriber_quarters WHERE list_id = ?1 AND q >= ?2 / 900"
	    " GROUP BY d HAVING sum(signups) > 0 OR sum(unsubs) > 0"
	    " ORDER BY d";
	static const char by_row[] =
	    "SELECT d, sum(su), sum(un) FROM ("
	    " SELECT (consent_at + ?3) / 86400 AS d, 1 AS su, 0 AS un"
	    "  FROM subscribers WHERE list_id = ?1 AND consent_at >= ?2"
	    " UNION ALL"
	    " SELECT (unsubscribed_at + ?3) / 86400, 0, 1"
	    "  FROM subscribers WHERE list_id = ?1"
	    "  AND unsubscribed_at > 0 AND unsubscribed_at >= ?2)"
	    " GROUP BY d ORDER BY d";

	if (prep(s, s->tallies && utc_offset % 900 == 0 ? by_quarter : by_row,
	         &st, err) < 0)
		goto out;
	sqlite3_bind_text(st, 1, list_id, -1, SQLITE_STATIC);
	/* from the first second of since's day */
	sqlite3_bind_int64(st, 2,
	    (since + utc_offset) / 86400 * 86400 - utc_offset);
	sqlite3_bind_int64(st, 3, utc_offset);
	r = 0;
	while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW)
		r = fn(ctx, sqlite3_column_int64(st, 0) * 86400 - utc_offset,
		    sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 2));
	if (r == 0 && rc != SQLITE_DONE)
		r = db_err(s, rc, "sign-ups per day", err);
out:
	sqlite3_finalize(st);
	return r;
}

static int
sq_report_sent_series(struct kr_store_be *s, int64_t report_id,
    int64_t bucket, int64_t since, kr_store_bucket_fn fn, void *ctx,
    struct kr_err *err)
{
	sqlite3_stmt *st = NULL;
	int rc = SQLITE_DONE, r = -1;

	/* schema v11's minutes when buckets and since are whole ones, else
	 * the report's sent rows */
	if (prep(s,
		s->tallies && bucket % 60 == 0 && since % 60 == 0
		    ? "SELECT minute * 60 / ?2 * ?2 AS t, sum(n)"
		      " FROM report_minutes WHERE report_id = ?1"
		      " AND minute >= ?3 / 60 GROUP BY t HAVING sum(n) > 0"
		      " ORDER BY t"
		    : "SELECT sent_at / ?2 * ?2 AS t, count(*) FROM deliveries"
		      " WHERE report_id = ?1 AND state = 1 AND sent_at >= ?3"
		      " GROUP BY t ORDER BY t",
		&st, err) < 0)
		goto out;
	sqlite3_bind_int64(st, 1, report_id);
	sqlite3_bind_int64(st, 2, bucket);
	sqlite3_bind_int64(st, 3, since);
	r = 0;
	while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW)
		r = fn(ctx, sqlite3_column_int64(st, 0),
		    sqlite3_column_int64(st, 1));
	if (r == 0 && rc != SQLITE_DONE)
		r = db_err(s, rc, "copies sent over time", err);
out:
	sqlite3_finalize(st);
	return r;
}

static int
sq_report_domains(struct kr_store_be *s, int64_t report_id, size_t limit,
    kr_store_domain_fn fn, void *ctx, struct kr_err *err)
{
	struct kr_delivery_counts c;
	sqlite3_stmt *st = NULL;
	int rc = SQLITE_DONE, r = -1;

	if (prep(s,
		s->tallies
		    ? "SELECT domain, sum(n * (state = 0)), sum(n * (state = 1)),"
		      " sum(n * (state = 2)), sum(n * (state = 3)),"
		      " sum(n * (state = 4)), sum(n * (state = 5)), sum(n) AS t"
		      " FROM report_domains WHERE report_id = ?1"
		      " GROUP BY domain HAVING t > 0"
		      " ORDER BY t DESC, domain LIMIT ?2"
		    : "SELECT domain, sum(state = 0), sum(state = 1),"
		      " sum(state = 2), sum(state = 3), sum(state = 4),"
		      " sum(state = 5), count(*) AS t FROM deliveries"
		      " WHERE report_id = ?1 GROUP BY domain"
		      " ORDER BY t DESC, domain LIMIT ?2",
		&st, err) < 0)
		goto out;
	sqlite3_bind_int64(st, 1, report_id);
	sqlite3_bind_int64(st, 2, limit == 0 ? -1 : (int64_t)limit);
	r = 0;
	while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		memset(&c, 0, sizeof(c));
		c.queued = sqlite3_column_int64(st, 1);
		c.sent = sqlite3_column_int64(st, 2);
		c.deferred = sqlite3_column_int64(st, 3);
		c.failed = sqlite3_column_int64(st, 4);
		c.uncertain = sqlite3_column_int64(st, 5);
		c.cancelled = sqlite3_column_int64(st, 6);
		r = fn(ctx, (const char *)sqlite3_column_text(st, 0), &c);
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = db_err(s, rc, "copies by domain", err);
out:
	sqlite3_finalize(st);
	return r;
}

static int
sq_report_replies(struct kr_store_be *s, int64_t report_id, size_t limit,
    kr_store_reply_fn fn, void *ctx, struct kr_err *err)
{
	sqlite3_stmt *st = NULL;
	int rc = SQLITE_DONE, r = -1;

	/* deliveries_report (report_id, state, ...) finds the unsent rows;
	 * they are few beside the sent ones. */
	if (prep(s,
		"SELECT state, code, coalesce(reply, '') AS rp, count(*) AS n"
		" FROM deliveries WHERE report_id = ?1 AND state IN (2, 3, 4)"
		" GROUP BY state, code, rp ORDER BY n DESC, state, code, rp"
		" LIMIT ?2",
		&st, err) < 0)
		goto out;
	sqlite3_bind_int64(st, 1, report_id);
	sqlite3_bind_int64(st, 2, limit == 0 ? -1 : (int64_t)limit);
	r = 0;
	while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW)
		r = fn(ctx, (enum kr_delivery_state)sqlite3_column_int(st, 0),
		    sqlite3_column_int(st, 1),
		    (const char *)sqlite3_column_text(st, 2),
		    sqlite3_column_int64(st, 3));
	if (r == 0 && rc != SQLITE_DONE)
		r = db_err(s, rc, "relay replies", err);
out:
	sqlite3_finalize(st);
	return r;
}

/* ---- token keys (schema v6) ---- */

static int
sq_key_check(struct kr_store_be *s, uint32_t id, const char *fingerprint,
                   int64_t now, char *known, size_t known_size,
                   struct kr_err *err)
{
	sqlite3_stmt *st = NULL;
	int rc, r = -1;

	if (prep(s, "SELECT fingerprint FROM token_keys WHERE id = ?1", &st,
	         err) < 0)
		return -1;
	sqlite3_bind_int64(st, 1, (int64_t)id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		col_copy(known, known_size, st, 0);
		r = strcmp(known, fingerprint) == 0 ? 0 : 1;
		goto out;
	}
	if (rc != SQLITE_DONE) {
		db_err(s, rc, "token keys", err);
		goto out;
	}
	sqlite3_finalize(st);
	st = NULL;
	if (prep(s,
	         "INSERT INTO token_keys (id, fingerprint, seen_at)"
	         " VALUES (?1, ?2, ?3)",
	         &st, err) < 0)
		return -1;
	sqlite3_bind_int64(st, 1, (int64_t)id);
	bind_text(st, 2, fingerprint);
	sqlite3_bind_int64(st, 3, now);
	rc = sqlite3_step(st);
	if (rc != SQLITE_DONE) {
		db_err(s, rc, "token keys", err);
		goto out;
	}
	r = 0;
out:
	sqlite3_finalize(st);
	return r;
}

static int
sq_tokens_issued(struct kr_store_be *s, int64_t *n_out, struct kr_err *err)
{
	int64_t a = 0, b = 0;

	/* a key seen, or a mail gone out (every mail carries links) */
	if (query_int(s, "SELECT count(*) FROM token_keys", &a, err) < 0 ||
	    query_int(s,
	              "SELECT EXISTS (SELECT 1 FROM deliveries WHERE state = 1)",
	              &b, err) < 0)
		return -1;
	*n_out = a + b;
	return 0;
}

static int
sq_keys_forget(struct kr_store_be *s, struct kr_err *err)
{
	if (exec(s, "DELETE FROM token_keys", "token keys", err) < 0)
		return -1;
	return event(s, (int64_t)time(NULL), "keys-replaced", 0, 0,
	             "the key file was lost; links signed before stop working",
	             err);
}

/* ---- DKIM keys (schema v12) ---- */

/* The row of (domain, selector) into *k; 1 found, 0 none, -1 error. */
static int
dkim_get(struct kr_store_be *s, const char *domain, const char *selector,
         struct kr_store_dkim_key *k, struct kr_err *err)
{
	sqlite3_stmt *st = NULL;
	int rc, r = -1;

	memset(k, 0, sizeof(*k));
	if (prep(s,
	         "SELECT fingerprint, host, seen_at FROM dkim_keys"
	         " WHERE domain = ?1 AND selector = ?2",
	         &st, err) < 0)
		return -1;
	bind_text(st, 1, domain);
	bind_text(st, 2, selector);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		col_copy(k->fingerprint, sizeof(k->fingerprint), st, 0);
		col_copy(k->host, sizeof(k->host), st, 1);
		k->seen_at = sqlite3_column_int64(st, 2);
		r = 1;
	} else if (rc == SQLITE_DONE) {
		r = 0;
	} else {
		db_err(s, rc, "dkim keys", err);
	}
	sqlite3_finalize(st);
	return r;
}

/* INSERT (replace: or replace) the row of (domain, selector). */
static int
dkim_put(struct kr_store_be *s, bool replace, const char *domain,
         const char *selector, const char *fingerprint, const char *host,
         int64_t now, struct kr_err *err)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (prep(s,
	         replace ? "INSERT INTO dkim_keys (domain, selector,"
	                   " fingerprint, host, seen_at)"
	                   " VALUES (?1, ?2, ?3, ?4, ?5)"
	                   " ON CONFLICT (domain, selector) DO UPDATE SET"
	                   " fingerprint = excluded.fingerprint,"
	                   " host = excluded.host, seen_at = excluded.seen_at"
	                 : "INSERT INTO dkim_keys (domain, selector,"
	                   " fingerprint, host, seen_at)"
	                   " VALUES (?1, ?2, ?3, ?4, ?5)"
	                   " ON CONFLICT (domain, selector) DO NOTHING",
	         &st, err) < 0)
		return -1;
	bind_text(st, 1, domain);
	bind_text(st, 2, selector);
	bind_text(st, 3, fingerprint);
	bind_text(st, 4, host);
	sqlite3_bind_int64(st, 5, now);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_err(s, rc, "dkim keys", err);
	return 0;
}

static int
sq_dkim_check(struct kr_store_be *s, const char *domain, const char *selector,
              const char *fingerprint, const char *host, int64_t now,
              struct kr_store_dkim_key *known_out, struct kr_err *err)
{
	int r;

	/* Hosts starting together: the first fingerprint written wins and
	 * the others compare against it. */
	if (dkim_put(s, false, domain, selector, fingerprint, host, now, err) <
	    0)
		return -1;
	r = dkim_get(s, domain, selector, known_out, err);
	if (r < 0)
		return -1;
	return r == 1 && strcmp(known_out->fingerprint, fingerprint) != 0 ? 1
	                                                                  : 0;
}

static int
sq_dkim_replace(struct kr_store_be *s, const char *domain, const char *selector,
                const char *fingerprint, const char *host, int64_t now,
                struct kr_store_dkim_key *old_out, struct kr_err *err)
{
	char *detail = NULL;
	bool own = true;
	int r, found;

	if (tx_begin(s, &own, err) < 0)
		return -1;
	found = r = dkim_get(s, domain, selector, old_out, err);
	if (r >= 0)
		r = dkim_put(s, true, domain, selector, fingerprint, host, now,
		             err);
	if (r == 0) {
		detail =
		    kr_xasprintf("d=%s s=%s: key %s recorded by %s (was %s)",
		                 domain, selector, fingerprint, host,
		                 found == 1 ? old_out->fingerprint : "none");
		r = event(s, now, "dkim-replaced", 0, 0, detail, err);
	}
	free(detail);
	if (tx_end(s, own, r, err) < 0)
		return -1;
	return found == 1 && strcmp(old_out->fingerprint, fingerprint) != 0 ? 1
	                                                                    : 0;
}

/* ---- what /healthz names ---- */

static int
sq_describe(struct kr_store_be *s, char *out, size_t n, struct kr_err *err)
{
	int64_t v = 0;

	if (query_int(s, "PRAGMA user_version", &v, err) < 0) {
		snprintf(out, n, "sqlite %s", s->path);
		return -1;
	}
	snprintf(out, n, "sqlite %s, schema v%lld", s->path, (long long)v);
	return 0;
}

/* ---- consent records (特定電子メール法 Article 3) ---- */

static int
sq_subscriber_history(struct kr_store_be *s, int64_t id,
    kr_store_history_fn fn, void *ctx, struct kr_err *err)
{
	sqlite3_stmt *st = NULL;
	struct kr_store_history_row h;
	int rc = SQLITE_DONE, r = -1;

	/* every mail queued to the subscription and every event, in time
	 * order (a mail not sent yet at its queue time); within one second
	 * events first: the sign-up before the confirmation mail it sent */
	if (prep(s,
		"SELECT CASE WHEN d.sent_at > 0 THEN d.sent_at"
		"  ELSE d.queued_at END, d.kind, coalesce(d.report_id, 0),"
		" coalesce(r.subject, ''), coalesce(r.hash, ''), '',"
		" d.state, d.id, 1 FROM deliveries d"
		" LEFT JOIN reports r ON r.id = d.report_id"
		" WHERE d.subscriber_id = ?1"
		" UNION ALL"
		" SELECT e.at, -1, coalesce(e.report_id, 0), e.kind, '', e.detail,"
		" -1, e.id, 0 FROM events e WHERE e.subscriber_id = ?1"
		" ORDER BY 1, 9, 8",
		&st, err) < 0)
		goto out;
	sqlite3_bind_int64(st, 1, id);
	r = 0;
	while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		memset(&h, 0, sizeof(h));
		h.at = sqlite3_column_int64(st, 0);
		h.kind = sqlite3_column_int(st, 1);
		h.report_id = sqlite3_column_int64(st, 2);
		h.subject = (const char *)sqlite3_column_text(st, 3);
		h.hash = (const char *)sqlite3_column_text(st, 4);
		h.detail = (const char *)sqlite3_column_text(st, 5);
		h.state = sqlite3_column_int(st, 6);
		if (h.kind < 0) { /* column 3 holds the event's kind */
			h.event = h.subject;
			h.subject = "";
		}
		r = fn(ctx, &h);
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = db_err(s, rc, "subscriber history", err);
out:
	sqlite3_finalize(st);
	return r;
}

static int
sq_subscriber_last_sent(struct kr_store_be *s, int64_t id,
    int64_t *at_out, struct kr_err *err)
{
	sqlite3_stmt *st = NULL;
	int rc, r = -1;

	*at_out = 0;
	if (prep(s,
		"SELECT coalesce(max(sent_at), 0) FROM deliveries"
		" WHERE subscriber_id = ?1 AND kind = 0 AND state = 1",
		&st, err) < 0)
		goto out;
	sqlite3_bind_int64(st, 1, id);
	if ((rc = sqlite3_step(st)) != SQLITE_ROW) {
		r = db_err(s, rc, "last mail", err);
		goto out;
	}
	*at_out = sqlite3_column_int64(st, 0);
	r = 0;
out:
	sqlite3_finalize(st);
	return r;
}

static int
sq_subscriber_forget(struct kr_store_be *s, int64_t id, int64_t now,
    struct kr_err *err)
{
	static const char *const sql[] = {
	    "DELETE FROM events WHERE subscriber_id = ?1",
	    "DELETE FROM bounces WHERE subscriber_id = ?1",
	    "DELETE FROM deliveries WHERE subscriber_id = ?1",
	    "DELETE FROM subscribers WHERE id = ?1",
	};
	sqlite3_stmt *st = NULL;
	bool own = false;
	size_t i;
	int r = -1, rc;

	if (tx_begin(s, &own, err) < 0)
		return -1;
	for (i = 0; i < KR_NELEM(sql); i++) {
		if (prep(s, sql[i], &st, err) < 0)
			goto out;
		sqlite3_bind_int64(st, 1, id);
		rc = sqlite3_step(st);
		sqlite3_finalize(st);
		st = NULL;
		if (rc != SQLITE_DONE) {
			db_err(s, rc, "forget subscriber", err);
			goto out;
		}
		if (i == KR_NELEM(sql) - 1 && sqlite3_changes(s->db) == 0) {
			kr_err_set(err, KR_ERR_NOTFOUND, "no subscriber %lld",
			    (long long)id);
			goto out;
		}
	}
	/* that someone was forgotten, not who */
	if (event(s, now, "forget", 0, 0, "privacy request", err) < 0)
		goto out;
	r = 0;
out:
	return tx_end(s, own, r, err);
}

static int
sq_report_governor_acked(struct kr_store_be *s, int64_t report_id,
    int64_t *complaints_out, int64_t *bounces_out, char *reason,
    size_t reason_size, struct kr_err *err)
{
	sqlite3_stmt *st = NULL;
	int rc, r = -1;

	*complaints_out = *bounces_out = 0;
	if (reason_size > 0)
		reason[0] = '\0';
	if (prep(s,
		"SELECT governor_complaints, governor_bounces, governor_reason"
		" FROM reports WHERE id = ?1",
		&st, err) < 0)
		goto out;
	sqlite3_bind_int64(st, 1, report_id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*complaints_out = sqlite3_column_int64(st, 0);
		*bounces_out = sqlite3_column_int64(st, 1);
		if (reason_size > 0)
			snprintf(reason, reason_size, "%s",
			    (const char *)sqlite3_column_text(st, 2) ?
				(const char *)sqlite3_column_text(st, 2) : "");
		r = 0;
	} else if (rc == SQLITE_DONE) {
		kr_err_set(err, KR_ERR_NOTFOUND, "no report %lld",
		    (long long)report_id);
	} else {
		db_err(s, rc, "read governor figures", err);
	}
out:
	sqlite3_finalize(st);
	return r;
}

static int
sq_report_governor_ack(struct kr_store_be *s, int64_t report_id,
    int64_t complaints, int64_t bounces, const char *reason,
    struct kr_err *err)
{
	sqlite3_stmt *st = NULL;
	int rc, r = -1;

	if (prep(s,
		complaints >= 0 ?
		    "UPDATE reports SET governor_complaints = ?2,"
		    " governor_bounces = ?3, governor_reason = ?4 WHERE id = ?1" :
		    "UPDATE reports SET governor_reason = ?4 WHERE id = ?1",
		&st, err) < 0)
		goto out;
	sqlite3_bind_int64(st, 1, report_id);
	if (complaints >= 0) {
		sqlite3_bind_int64(st, 2, complaints);
		sqlite3_bind_int64(st, 3, bounces);
	}
	sqlite3_bind_text(st, 4, reason != NULL ? reason : "", -1,
	    SQLITE_TRANSIENT);
	rc = sqlite3_step(st);
	if (rc != SQLITE_DONE)
		db_err(s, rc, "record governor figures", err);
	else if (sqlite3_changes(s->db) == 0)
		kr_err_set(err, KR_ERR_NOTFOUND, "no report %lld",
		    (long long)report_id);
	else
		r = 0;
out:
	sqlite3_finalize(st);
	return r;
}

static int
sq_confirm_governor_get(struct kr_store_be *s, const char *list_id,
    struct kr_store_list_governor *out, struct kr_err *err)
{
	sqlite3_stmt *st = NULL;
	int rc, r = -1;

	memset(out, 0, sizeof(*out));
	if (prep(s,
		"SELECT count(*) FROM deliveries d JOIN subscribers s"
		" ON s.id = d.subscriber_id WHERE d.report_id IS NULL"
		" AND d.state = 1 AND s.list_id = ?1",
		&st, err) < 0)
		goto out;
	sqlite3_bind_text(st, 1, list_id, -1, SQLITE_TRANSIENT);
	if ((rc = sqlite3_step(st)) != SQLITE_ROW) {
		db_err(s, rc, "count confirmations", err);
		goto out;
	}
	out->sent = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	st = NULL;
	if (prep(s,
		"SELECT b.kind, count(*) FROM bounces b JOIN subscribers s"
		" ON s.id = b.subscriber_id WHERE coalesce(b.report_id, 0) = 0"
		" AND s.list_id = ?1 GROUP BY b.kind",
		&st, err) < 0)
		goto out;
	sqlite3_bind_text(st, 1, list_id, -1, SQLITE_TRANSIENT);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (sqlite3_column_int(st, 0) == KR_STORE_BOUNCE_HARD)
			out->hard = sqlite3_column_int64(st, 1);
		else if (sqlite3_column_int(st, 0) == KR_STORE_BOUNCE_COMPLAINT)
			out->complaints = sqlite3_column_int64(st, 1);
	}
	if (rc != SQLITE_DONE) {
		db_err(s, rc, "count confirmation bounces", err);
		goto out;
	}
	sqlite3_finalize(st);
	st = NULL;
	if (prep(s,
		"SELECT paused, reason, ack_complaints, ack_bounces FROM"
		" governor_lists WHERE list_id = ?1",
		&st, err) < 0)
		goto out;
	sqlite3_bind_text(st, 1, list_id, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		const char *why = (const char *)sqlite3_column_text(st, 1);

		out->paused = sqlite3_column_int(st, 0) != 0;
		snprintf(out->reason, sizeof(out->reason), "%s",
		    why != NULL ? why : "");
		out->ack_complaints = sqlite3_column_int64(st, 2);
		out->ack_bounces = sqlite3_column_int64(st, 3);
	} else if (rc != SQLITE_DONE) {
		db_err(s, rc, "read list governor", err);
		goto out;
	}
	r = 0;
out:
	sqlite3_finalize(st);
	return r;
}

static int
sq_confirm_governor_set(struct kr_store_be *s, const char *list_id,
    bool paused, const char *reason, int64_t ack_complaints,
    int64_t ack_bounces, struct kr_err *err)
{
	sqlite3_stmt *st = NULL;
	int rc, r = -1;

	if (prep(s,
		"INSERT INTO governor_lists (list_id, paused, reason,"
		" ack_complaints, ack_bounces) VALUES (?1, ?2, ?3,"
		" max(?4, 0), max(?5, 0)) ON CONFLICT (list_id) DO UPDATE SET"
		" paused = ?2, reason = ?3,"
		" ack_complaints = CASE WHEN ?4 < 0 THEN ack_complaints"
		" ELSE ?4 END,"
		" ack_bounces = CASE WHEN ?5 < 0 THEN ack_bounces ELSE ?5 END",
		&st, err) < 0)
		goto out;
	sqlite3_bind_text(st, 1, list_id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(st, 2, paused ? 1 : 0);
	sqlite3_bind_text(st, 3, reason != NULL ? reason : "", -1,
	    SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 4, ack_complaints);
	sqlite3_bind_int64(st, 5, ack_bounces);
	rc = sqlite3_step(st);
	if (rc != SQLITE_DONE)
		db_err(s, rc, "write list governor", err);
	else
		r = 0;
out:
	sqlite3_finalize(st);
	return r;
}

/* ---- kairanctl store copy ---- */

static char *
col_list(const struct kr_store_table *t, bool marks)
{
	struct kr_buf b;
	size_t i;
	int r = 0;

	kr_buf_init(&b, 0);
	for (i = 0; i < t->n_cols && r == 0; i++)
		r = marks ? kr_buf_printf(&b, "%s?%zu", i ? ", " : "", i + 1)
		          : kr_buf_printf(&b, "%s%s", i ? ", " : "", t->cols[i]);
	return kr_buf_steal(&b);
}

static int
sq_snapshot(struct kr_store_be *s, struct kr_err *err)
{
	int64_t n;

	if (!sqlite3_get_autocommit(s->db))
		return kr_err_set(err, KR_ERR_INVALID,
		                  "store: transaction already open");
	/* WAL: a read transaction's snapshot, writers not held up */
	if (exec(s, "BEGIN", "snapshot", err) < 0)
		return -1;
	return query_int(s, "SELECT count(*) FROM sqlite_master", &n, err);
}

static int
sq_dump(struct kr_store_be *s, const struct kr_store_table *t,
        kr_store_row_fn fn, void *ctx, struct kr_err *err)
{
	const char *vals[32];
	sqlite3_stmt *st = NULL;
	char *cols = col_list(t, false);
	char *sql = kr_xasprintf("SELECT %s FROM %s ORDER BY %s", cols, t->name,
	                         t->cols[0]);
	size_t i;
	int rc = SQLITE_DONE, r = -1;

	if (t->n_cols > KR_NELEM(vals))
		abort();
	if (prep(s, sql, &st, err) < 0)
		goto out;
	r = 0;
	while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		for (i = 0; i < t->n_cols; i++)
			vals[i] = sqlite3_column_type(st, (int)i) == SQLITE_NULL
			              ? NULL
			              : (const char *)sqlite3_column_text(
			                    st, (int)i);
		r = fn(ctx, vals, t->n_cols);
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = db_err(s, rc, "copy", err);
out:
	sqlite3_finalize(st);
	free(sql);
	free(cols);
	return r;
}

static int
sq_load_begin(struct kr_store_be *s, const struct kr_store_table *t,
              struct kr_err *err)
{
	char *cols = col_list(t, false), *marks = col_list(t, true);
	char *sql = kr_xasprintf("INSERT INTO %s (%s) VALUES (%s)", t->name,
	                         cols, marks);
	int r = -1;

	sqlite3_finalize(s->load);
	s->load = NULL;
	if (!sqlite3_get_autocommit(s->db))
		kr_err_set(err, KR_ERR_INVALID, "store: transaction already open");
	else if (exec(s, "BEGIN IMMEDIATE", "copy", err) == 0 &&
	         prep(s, sql, &s->load, err) == 0)
		r = 0;
	free(sql);
	free(cols);
	free(marks);
	return r;
}

static int
sq_load_row(struct kr_store_be *s, const char *const *vals, size_t n,
            struct kr_err *err)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (vals[i] == NULL)
			sqlite3_bind_null(s->load, (int)i + 1);
		else
			/* the column's affinity makes "12" the integer 12 */
			sqlite3_bind_text(s->load, (int)i + 1, vals[i], -1,
			                  SQLITE_TRANSIENT);
	return run(s, s->load, "copy", err);
}

static int
sq_load_end(struct kr_store_be *s, const struct kr_store_table *t,
            int64_t next_id, struct kr_err *err)
{
	int64_t n;

	sqlite3_finalize(s->load);
	s->load = NULL;
	/* subscriber ids are AUTOINCREMENT (schema v6): start above every
	 * id the source ever gave */
	if (strcmp(t->name, "subscribers") == 0 &&
	    (exec_ints(s, "DELETE FROM sqlite_sequence WHERE name ="
	                  " 'subscribers'",
	               0, 0, 0, 0, NULL, err) < 0 ||
	     exec_ints(s, "INSERT INTO sqlite_sequence (name, seq) VALUES"
	                  " ('subscribers', max(?1, coalesce((SELECT max(id)"
	                  " FROM subscribers), 0)))",
	               1, next_id, 0, 0, NULL, err) < 0))
		return -1;
	return exec(s, "COMMIT", "copy", err) < 0 ||
	               query_int(s, "SELECT 1", &n, err) < 0
	           ? -1
	           : 0;
}

static int
sq_rows(struct kr_store_be *s, const struct kr_store_table *t, int64_t *n_out,
        struct kr_err *err)
{
	char *sql = kr_xasprintf("SELECT count(*) FROM %s", t->name);
	int r = query_int(s, sql, n_out, err);

	free(sql);
	return r;
}

static int
sq_last_id(struct kr_store_be *s, const struct kr_store_table *t,
           int64_t *id_out, struct kr_err *err)
{
	char *sql = kr_xasprintf(
	    "SELECT max(coalesce((SELECT max(id) FROM %s), 0),"
	    " coalesce((SELECT seq FROM sqlite_sequence WHERE name = '%s'),"
	    " 0))",
	    t->name, t->name);
	int r = query_int(s, sql, id_out, err);

	free(sql);
	return r;
}

const struct kr_store_ops kr_store_sqlite_ops = {
	.name = "sqlite",
	.open = sq_open,
	.close = sq_close,
	.changes = sq_changes,
	.upkeep = sq_upkeep,
	.begin = sq_begin,
	.commit = sq_commit,
	.rollback = sq_rollback,
	.subscribe = sq_subscribe,
	.subscriber_import = sq_subscriber_import,
	.subscriber_import_id = sq_subscriber_import_id,
	.subscriber_get = sq_subscriber_get,
	.subscriber_find = sq_subscriber_find,
	.subscriber_confirm = sq_subscriber_confirm,
	.subscriber_unsubscribe = sq_subscriber_unsubscribe,
	.subscriber_bounce = sq_subscriber_bounce,
	.subscriber_delete = sq_subscriber_delete,
	.subscriber_foreach = sq_subscriber_foreach,
	.subscriber_count = sq_subscriber_count,
	.confirm_count = sq_confirm_count,
	.confirm_enqueue = sq_confirm_enqueue,
	.report_add = sq_report_add,
	.report_get = sq_report_get,
	.report_foreach = sq_report_foreach,
	.report_set_state = sq_report_set_state,
	.report_governor_acked = sq_report_governor_acked,
	.report_governor_ack = sq_report_governor_ack,
	.confirm_governor_get = sq_confirm_governor_get,
	.confirm_governor_set = sq_confirm_governor_set,
	.delivery_counts = sq_delivery_counts,
	.report_retry = sq_report_retry,
	.claim = sq_claim,
	.mark_sent = sq_mark_sent,
	.mark_deferred = sq_mark_deferred,
	.mark_failed = sq_mark_failed,
	.mark_uncertain = sq_mark_uncertain,
	.release = sq_release,
	.reclaim = sq_reclaim,
	.subscriber_history = sq_subscriber_history,
	.subscriber_last_sent = sq_subscriber_last_sent,
	.subscriber_forget = sq_subscriber_forget,
	.event = sq_event,
	.backup = sq_backup,
	.lock_daemon = sq_lock_daemon,
	.ping = sq_ping,
	.bounce_record = sq_bounce_record,
	.bounce_foreach = sq_bounce_foreach,
	.key_check = sq_key_check,
	.dkim_check = sq_dkim_check,
	.dkim_replace = sq_dkim_replace,
	.describe = sq_describe,
	.tokens_issued = sq_tokens_issued,
	.keys_forget = sq_keys_forget,
	.bounce_counts = sq_bounce_counts,
	.subscriber_tally = sq_subscriber_tally,
	.snapshot = sq_snapshot,
	.dump = sq_dump,
	.load_begin = sq_load_begin,
	.load_row = sq_load_row,
	.load_end = sq_load_end,
	.rows = sq_rows,
	.last_id = sq_last_id,
	.subscriber_days = sq_subscriber_days,
	.report_sent_series = sq_report_sent_series,
	.report_domains = sq_report_domains,
	.report_replies = sq_report_replies,
};
