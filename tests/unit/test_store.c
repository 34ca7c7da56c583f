/* test_store.c — the store on real files in a temporary folder (SQLite)
 * and, when tests/run_tests.sh started one (KAIRAN_TEST_PG), on a real
 * PostgreSQL server: the backend-neutral tests run as one conformance
 * suite against both, each in a fresh database. Older and foreign
 * databases are made by hand with the sqlite3 shell or psql, so the tests
 * do not trust the store to build what they check. */
#include <pthread.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "err.h"
#include "store.h"
#include "store_backend.h"
#include "store_sqlite.h"
#include "xmem.h"

#define NOW 1000000
/* The claims of these tests: one host, one run. */
static const struct kr_store_owner OWNER = {"test-host", 1};

struct fx {
	char dir[64];
	char db[160];
	char pgname[64]; /* the PostgreSQL database, "" for SQLite */
	struct kr_store *s;
};

/* KAIRAN_TEST_PG: "postgresql://USER@HOST:PORT" of a server whose USER
 * may create databases; its password in KAIRAN_TEST_PG_PASSWORD_FILE. */
static const char *pg_base, *pg_pwfile;

static bool
is_pg(const char *where)
{
	return strncmp(where, "postgresql://", 13) == 0;
}

/* The password file for where: none for an SQLite path. */
static const char *
pw(const char *where)
{
	return is_pg(where) ? pg_pwfile : NULL;
}

/* psql on database where (a URI) with the test password; "-c SQL" or a
 * script on stdin. */
static void
psql_cmd(char *cmd, size_t n, const char *where, const char *opts)
{
	snprintf(cmd, n,
	         "PGPASSWORD=\"$(cat '%s')\" psql -X -q -A -t -v "
	         "ON_ERROR_STOP=1 %s '%s'",
	         pg_pwfile, opts, where);
}

static int
setup_pg(void **state)
{
	static int n;
	struct fx *f = kr_xcalloc(1, sizeof(*f));
	char cmd[800], base[200];

	strcpy(f->dir, "/tmp/kairan-store-XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->pgname, sizeof(f->pgname), "kt_%d_%d", (int)getpid(),
	         ++n);
	snprintf(f->db, sizeof(f->db), "%s/%s", pg_base, f->pgname);
	snprintf(base, sizeof(base), "%s/postgres", pg_base);
	psql_cmd(cmd, sizeof(cmd), base, "");
	snprintf(cmd + strlen(cmd), sizeof(cmd) - strlen(cmd),
	         " -c 'CREATE DATABASE %s' >/dev/null", f->pgname);
	if (system(cmd) != 0)
		return -1;
	*state = f;
	return 0;
}

static int
setup(void **state)
{
	struct fx *f = kr_xcalloc(1, sizeof(*f));

	strcpy(f->dir, "/tmp/kairan-store-XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->db, sizeof(f->db), "%s/kairan.db", f->dir);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;
	char cmd[800], base[200];

	kr_store_close(&f->s);
	if (f->pgname[0] != '\0') {
		snprintf(base, sizeof(base), "%s/postgres", pg_base);
		psql_cmd(cmd, sizeof(cmd), base, "");
		snprintf(cmd + strlen(cmd), sizeof(cmd) - strlen(cmd),
		         " -c 'DROP DATABASE %s WITH (FORCE)' >/dev/null",
		         f->pgname);
		if (system(cmd) != 0)
			return -1;
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

static void
open_ok(struct fx *f)
{
	struct kr_err err = {0};

	if (kr_store_open(f->db, pw(f->db), &f->s, &err) < 0)
		fail_msg("open: %s", err.msg);
}

/* Runs SQL through the sqlite3 shell on path; returns its exit status. */
static int
shell_sql(const char *path, const char *sql)
{
	char cmd[512];
	FILE *p;
	int st;

	if (is_pg(path)) {
		psql_cmd(cmd, sizeof(cmd), path, "");
		strcat(cmd, " >/dev/null 2>&1");
	} else {
		snprintf(cmd, sizeof(cmd), "sqlite3 -bail '%s' >/dev/null 2>&1",
		         path);
	}
	p = popen(cmd, "w");
	assert_non_null(p);
	fputs(sql, p);
	st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* One integer from the sqlite3 shell. */
static long long
shell_int(const char *path, const char *sql)
{
	char cmd[1024], line[64] = "";
	FILE *p;
	long long v;

	if (is_pg(path)) {
		psql_cmd(cmd, sizeof(cmd), path, "");
		snprintf(cmd + strlen(cmd), sizeof(cmd) - strlen(cmd),
		         " -c \"%s\"", sql);
	} else {
		snprintf(cmd, sizeof(cmd), "sqlite3 '%s' \"%s\"", path, sql);
	}
	p = popen(cmd, "r");
	assert_non_null(p);
	if (fgets(line, sizeof(line), p) == NULL)
		line[0] = '\0';
	assert_int_equal(pclose(p), 0);
	v = strtoll(line, NULL, 10);
	return v;
}

static char *
slurp(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	char *buf;
	long n;

	assert_non_null(fp);
	assert_int_equal(fseek(fp, 0, SEEK_END), 0);
	n = ftell(fp);
	rewind(fp);
	buf = kr_xmalloc((size_t)n + 1);
	assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
	fclose(fp);
	*len = (size_t)n;
	return buf;
}

static int64_t
add_sub(struct kr_store *s, const char *list, const char *email,
        enum kr_sub_status status)
{
	struct kr_subscriber sub = {0};
	struct kr_err err = {0};
	bool added = false;
	struct kr_subscriber got;

	snprintf(sub.list_id, sizeof(sub.list_id), "%s", list);
	snprintf(sub.email, sizeof(sub.email), "%s", email);
	sub.status = status;
	sub.created_at = NOW - 100;
	snprintf(sub.consent_source, sizeof(sub.consent_source), "import");
	assert_int_equal(kr_store_subscriber_import(s, &sub, &added, &err), 0);
	assert_true(added);
	assert_int_equal(kr_store_subscriber_find(s, list, email, &got, &err),
	                 1);
	return got.id;
}

static int64_t
add_report(struct kr_store *s, const char *list, const char *hash, bool again,
           int64_t *queued)
{
	struct kr_report_row r = {0};
	struct kr_err err = {0};
	int64_t id = 0;

	snprintf(r.list_id, sizeof(r.list_id), "%s", list);
	r.subject = (char *)(uintptr_t) "月次レポート";
	r.text = (char *)(uintptr_t) "text";
	r.html = (char *)(uintptr_t) "<p>html</p>";
	r.source = (char *)(uintptr_t) "/tmp/r.md";
	snprintf(r.hash, sizeof(r.hash), "%s", hash);
	if (kr_store_report_add(s, &r, again, NOW, &id, queued, &err) < 0)
		fail_msg("report_add: %s", err.msg);
	return id;
}

static void
test_store_open_creates_current_schema(void **state)
{
	struct fx *f = *state;
	struct kr_err err = {0};
	struct stat sb;

	open_ok(f);
	/* A path: the front gave it to the SQLite backend. */
	assert_string_equal(kr_store_backend(f->s), "sqlite");
	assert_int_equal(kr_store_ping(f->s, &err), 0);
	/* Personal data: readable by its owner only. */
	assert_int_equal(stat(f->db, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	kr_store_close(&f->s);
	assert_null(f->s);
	assert_int_equal(shell_int(f->db, "PRAGMA user_version"),
	                 kr_store_schema_version());
	assert_int_equal(shell_int(f->db,
	                           "SELECT count(*) FROM pragma_journal_mode "
	                           "WHERE journal_mode = 'wal'"),
	                 1);
	/* Reopening an up-to-date file is fine. */
	open_ok(f);
	kr_store_close(&f->s);
	kr_store_close(&f->s); /* NULL is accepted */
}

/* The v1 schema as the first release wrote it. */
static const char v1_sql[] =
    "CREATE TABLE subscribers (id INTEGER PRIMARY KEY, list_id TEXT NOT NULL,"
    " email TEXT NOT NULL, name TEXT NOT NULL DEFAULT '',"
    " status INTEGER NOT NULL, created_at INTEGER NOT NULL,"
    " consent_at INTEGER NOT NULL DEFAULT 0,"
    " confirmed_at INTEGER NOT NULL DEFAULT 0,"
    " unsubscribed_at INTEGER NOT NULL DEFAULT 0,"
    " consent_source TEXT NOT NULL DEFAULT '',"
    " consent_ip TEXT NOT NULL DEFAULT '',"
    " consent_ua TEXT NOT NULL DEFAULT '',"
    " bounces INTEGER NOT NULL DEFAULT 0, UNIQUE (list_id, email));\n"
    "CREATE TABLE reports (id INTEGER PRIMARY KEY, list_id TEXT NOT NULL,"
    " subject TEXT NOT NULL, preheader TEXT NOT NULL DEFAULT '',"
    " text TEXT NOT NULL, html TEXT NOT NULL,"
    " source TEXT NOT NULL DEFAULT '', hash TEXT NOT NULL,"
    " created_at INTEGER NOT NULL, send_at INTEGER NOT NULL DEFAULT 0,"
    " state INTEGER NOT NULL DEFAULT 0);\n"
    "CREATE INDEX reports_hash ON reports (hash);\n"
    "CREATE TABLE deliveries (id INTEGER PRIMARY KEY, kind INTEGER NOT NULL,"
    " report_id INTEGER REFERENCES reports (id) ON DELETE CASCADE,"
    " subscriber_id INTEGER NOT NULL"
    "  REFERENCES subscribers (id) ON DELETE CASCADE,"
    " domain TEXT NOT NULL DEFAULT '', state INTEGER NOT NULL DEFAULT 0,"
    " attempts INTEGER NOT NULL DEFAULT 0, queued_at INTEGER NOT NULL,"
    " next_attempt INTEGER NOT NULL DEFAULT 0,"
    " lease_until INTEGER NOT NULL DEFAULT 0,"
    " code INTEGER NOT NULL DEFAULT 0, reply TEXT,"
    " sent_at INTEGER NOT NULL DEFAULT 0,"
    " UNIQUE (report_id, subscriber_id));\n"
    "CREATE INDEX deliveries_subscriber ON deliveries (subscriber_id);\n"
    "CREATE INDEX deliveries_report ON deliveries"
    " (report_id, state, lease_until);\n"
    "CREATE INDEX deliveries_queued ON deliveries"
    " (report_id, id, lease_until) WHERE state = 0;\n"
    "CREATE INDEX deliveries_deferred ON deliveries"
    " (next_attempt, id) WHERE state = 2;\n";

/* Subscriber ids are never given out twice (schema v6): after the newest
 * row is removed, the next sign-up gets a new id, so the removed person's
 * old links name nobody. The sequence survives reopening; the token keys
 * table keeps a fingerprint per key id. */
static void
test_store_ids_never_reused(void **state)
{
	struct fx *f = *state;
	struct kr_consent form = {"form", "192.0.2.1", "test"};
	struct kr_sub_result res;
	struct kr_err err = {0};
	char known[64] = "";
	int64_t a, b, issued = -1;

	open_ok(f);
	assert_int_equal(kr_store_tokens_issued(f->s, &issued, &err), 0);
	assert_int_equal(issued, 0);
	assert_int_equal(kr_store_subscribe(f->s, "news", "a@example.jp", NULL,
	                                    &form, true, NOW, &res, &err),
	                 0);
	a = res.id;
	assert_int_equal(kr_store_subscribe(f->s, "news", "b@example.jp", NULL,
	                                    &form, true, NOW, &res, &err),
	                 0);
	b = res.id;
	assert_true(b > a);
	assert_int_equal(kr_store_subscriber_delete(f->s, b, &err), 0);
	kr_store_close(&f->s);
	open_ok(f);
	assert_int_equal(kr_store_subscribe(f->s, "news", "c@example.jp", NULL,
	                                    &form, true, NOW, &res, &err),
	                 0);
	assert_true(res.id > b);
	/* subscribers alone: no mail has gone out, no key is known */
	assert_int_equal(kr_store_tokens_issued(f->s, &issued, &err), 0);
	assert_int_equal(issued, 0);
	/* key fingerprints: recorded once, the same again, another refused */
	assert_int_equal(
	    kr_store_key_check(f->s, 1, "aa", NOW, known, sizeof(known), &err),
	    0);
	assert_int_equal(kr_store_tokens_issued(f->s, &issued, &err), 0);
	assert_true(issued > 0);
	assert_int_equal(
	    kr_store_key_check(f->s, 1, "aa", NOW, known, sizeof(known), &err),
	    0);
	assert_int_equal(
	    kr_store_key_check(f->s, 1, "bb", NOW, known, sizeof(known), &err),
	    1);
	assert_string_equal(known, "aa");
	assert_int_equal(kr_store_keys_forget(f->s, &err), 0);
	assert_int_equal(
	    kr_store_key_check(f->s, 1, "bb", NOW, known, sizeof(known), &err),
	    0);
}

/* A -shm file kairan cannot write (here: immutable, which stops root
 * too) is refused at open with its name, not met later as SIGBUS. */
static void
test_store_unwritable_shm_refused(void **state)
{
	struct fx *f = *state;
	struct kr_err err = {0};
	char *shm = kr_xasprintf("%s-shm", f->db), *cmd;
	FILE *fp;

	open_ok(f);
	kr_store_close(&f->s);
	fp = fopen(shm, "w");
	assert_non_null(fp);
	fclose(fp);
	cmd = kr_xasprintf("chattr +i '%s' 2>/dev/null", shm);
	if (system(cmd) != 0) {
		free(cmd);
		free(shm);
		skip(); /* not root, or a file system without attributes */
	}
	free(cmd);
	assert_int_equal(kr_store_open(f->db, NULL, &f->s, &err), -1);
	assert_null(f->s);
	assert_non_null(strstr(err.msg, "-shm cannot be opened for writing"));
	cmd = kr_xasprintf("chattr -i '%s'", shm);
	assert_int_equal(system(cmd), 0);
	free(cmd);
	free(shm);
	open_ok(f);
}

static void
test_store_migrates_v1_in_place(void **state)
{
	struct fx *f = *state;
	struct kr_subscriber sub;
	struct kr_err err = {0};
	struct kr_claim c[4];
	size_t n = 0;
	int64_t cnt = 0;
	char *sql = kr_xasprintf(
	    "%s"
	    "INSERT INTO subscribers (list_id, email, status, created_at,"
	    " consent_source) VALUES ('news', 'old@example.jp', 0, 5, "
	    "'form');\n"
	    "INSERT INTO deliveries (kind, report_id, subscriber_id, domain,"
	    " queued_at, next_attempt) VALUES (1, NULL, 1, 'example.jp', 7, "
	    "7);\n"
	    "PRAGMA user_version = 1;\n",
	    v1_sql);

	assert_int_equal(shell_sql(f->db, sql), 0);
	free(sql);
	assert_int_equal(shell_int(f->db, "PRAGMA user_version"), 1);

	open_ok(f);
	/* The rows are still there and usable through the new schema. */
	assert_int_equal(kr_store_subscriber_find(f->s, "news",
	                                          "old@example.jp", &sub, &err),
	                 1);
	assert_string_equal(sub.consent_source, "form");
	assert_int_equal(sub.status, KR_SUB_PENDING);
	assert_int_equal(
	    kr_store_confirm_count(f->s, "old@example.jp", 0, &cnt, &err), 0);
	assert_int_equal(cnt, 1);
	assert_int_equal(
	    kr_store_claim(f->s, &OWNER, NOW, NOW + 60, 4, c, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_int_equal(c[0].kind, KR_DELIVERY_CONFIRM);
	assert_string_equal(c[0].email, "old@example.jp");
	/* v2's table exists. */
	assert_int_equal(kr_store_event(f->s, "test", sub.id, 0, "x", &err), 0);
	kr_store_close(&f->s);
	assert_int_equal(shell_int(f->db, "PRAGMA user_version"),
	                 kr_store_schema_version());
	assert_int_equal(shell_int(f->db, "SELECT count(*) FROM events"), 1);
	assert_int_equal(
	    shell_int(f->db, "SELECT count(*) FROM sqlite_master WHERE name = "
	                     "'subscribers_email'"),
	    1);
	/* v5's index, which /metrics and `subscribers list` group by. */
	assert_int_equal(
	    shell_int(f->db, "SELECT count(*) FROM sqlite_master WHERE name = "
	                     "'subscribers_list_status'"),
	    1);
}

/* Addresses differ only in letter case: one subscription, stored as first
 * typed; every lookup by address ignores case. */
static void
test_store_email_case_insensitive(void **state)
{
	struct fx *f = *state;
	struct kr_consent form = {"form", "192.0.2.1", "Mozilla"};
	struct kr_sub_result res;
	struct kr_subscriber sub = {0}, got;
	struct kr_err err = {0};
	bool added = true;
	int64_t id, n = 0, other;

	open_ok(f);
	assert_int_equal(kr_store_subscribe(f->s, "news", "Taro@example.jp",
	                                    NULL, &form, true, NOW, &res, &err),
	                 0);
	assert_true(res.is_new);
	id = res.id;
	assert_int_equal(kr_store_subscribe(f->s, "news", "taro@example.jp",
	                                    NULL, &form, true, NOW + 1, &res,
	                                    &err),
	                 0);
	assert_false(res.is_new);
	assert_int_equal(res.id, id);
	assert_int_equal(kr_store_subscriber_count(f->s, "news", -1, &n, &err),
	                 0);
	assert_int_equal(n, 1);
	/* Kept as typed first: mail goes to that spelling. */
	assert_int_equal(kr_store_subscriber_find(
	                     f->s, "news", "TARO@EXAMPLE.JP", &got, &err),
	                 1);
	assert_int_equal(got.id, id);
	assert_string_equal(got.email, "Taro@example.jp");
	/* Import and the confirmation limit. */
	snprintf(sub.list_id, sizeof(sub.list_id), "news");
	snprintf(sub.email, sizeof(sub.email), "tArO@example.jp");
	sub.status = KR_SUB_ACTIVE;
	assert_int_equal(kr_store_subscriber_import(f->s, &sub, &added, &err),
	                 0);
	assert_false(added);
	assert_int_equal(kr_store_confirm_enqueue(f->s, id, NOW, &err), 0);
	assert_int_equal(
	    kr_store_confirm_count(f->s, "taro@example.jp", 0, &n, &err), 0);
	assert_int_equal(n, 1);
	/* Another list is another subscription; unsubscribing from every
	 * list finds it whatever the case. */
	other = add_sub(f->s, "other", "TARO@example.jp", KR_SUB_ACTIVE);
	assert_true(other != id);
	assert_int_equal(
	    kr_store_subscriber_unsubscribe(f->s, id, true, 0, NOW + 2, &err), 2);
	assert_int_equal(kr_store_subscriber_get(f->s, other, &got, &err), 1);
	assert_int_equal(got.status, KR_SUB_UNSUBSCRIBED);
	kr_store_close(&f->s);
	/* The database itself refuses a second spelling. */
	assert_true(shell_sql(f->db, "INSERT INTO subscribers (list_id, email,"
	                             " status, created_at) VALUES ('news',"
	                             " 'TARO@example.jp', 1, 1);") != 0);
}

/* v2 and v3 as released, on top of v1_sql. */
static const char v2_v3_sql[] =
    "CREATE TABLE events (id INTEGER PRIMARY KEY, at INTEGER NOT NULL,"
    " kind TEXT NOT NULL, subscriber_id INTEGER, report_id INTEGER,"
    " detail TEXT NOT NULL DEFAULT '');\n"
    "CREATE INDEX events_subscriber ON events (subscriber_id);\n"
    "CREATE INDEX subscribers_email ON subscribers (email);\n"
    "CREATE TABLE bounces (id INTEGER PRIMARY KEY, at INTEGER NOT NULL,"
    " subscriber_id INTEGER NOT NULL"
    "  REFERENCES subscribers (id) ON DELETE CASCADE,"
    " report_id INTEGER, kind INTEGER NOT NULL,"
    " status TEXT NOT NULL DEFAULT '', diagnostic TEXT NOT NULL DEFAULT '',"
    " source TEXT NOT NULL DEFAULT '', counted INTEGER NOT NULL DEFAULT 0);\n"
    "CREATE INDEX bounces_subscriber ON bounces (subscriber_id, kind, at);\n"
    "CREATE INDEX bounces_report ON bounces (report_id);\n";

/* A v3 file with case duplicates: a newer spelling never mailed and no
 * different from the oldest is merged away; one on another list stays. */
static void
test_store_migrates_v3_case_duplicates(void **state)
{
	struct fx *f = *state;
	struct kr_subscriber sub;
	struct kr_sub_result res;
	struct kr_consent form = {"form", "192.0.2.1", "Mozilla"};
	struct kr_err err = {0};
	int64_t n = 0;
	char *sql = kr_xasprintf(
	    "%s%s"
	    "INSERT INTO subscribers (id, list_id, email, status, created_at)"
	    " VALUES (1, 'news', 'Taro@example.jp', 1, 5),"
	    " (2, 'news', 'taro@example.jp', 1, 6),"
	    " (3, 'other', 'TARO@example.jp', 1, 7),"
	    " (4, 'news', 'hanako@example.jp', 1, 8),"
	    " (5, 'news', 'Jiro@example.jp', 2, 9),"
	    " (6, 'news', 'jiro@example.jp', 1, 10);\n"
	    "INSERT INTO deliveries (kind, report_id, subscriber_id, domain,"
	    " queued_at, state) VALUES (1, NULL, 1, 'example.jp', 5, 1);\n"
	    "PRAGMA user_version = 3;\n",
	    v1_sql, v2_v3_sql);

	assert_int_equal(shell_sql(f->db, sql), 0);
	free(sql);
	/* Jiro's two rows differ (unsubscribed, then active again): that
	 * is the operator's to merge. Drop it here; the conflict case has
	 * its own test. */
	assert_int_equal(shell_sql(f->db, "DELETE FROM subscribers"
	                                  " WHERE id = 5;"),
	                 0);
	open_ok(f);
	kr_store_close(&f->s);
	assert_int_equal(shell_int(f->db, "PRAGMA user_version"),
	                 kr_store_schema_version());
	assert_int_equal(shell_int(f->db, "SELECT count(*) FROM subscribers"),
	                 4);
	assert_int_equal(
	    shell_int(f->db, "SELECT count(*) FROM subscribers WHERE id = 2"),
	    0);
	assert_int_equal(shell_int(f->db, "SELECT subscriber_id FROM events"
	                                  " WHERE kind = 'merged duplicate'"),
	                 1);
	assert_int_equal(
	    shell_int(f->db, "SELECT count(*) FROM sqlite_master WHERE name ="
	                     " 'subscribers_list_email_nocase'"),
	    1);
	open_ok(f);
	assert_int_equal(kr_store_subscriber_find(
	                     f->s, "news", "taro@example.jp", &sub, &err),
	                 1);
	assert_int_equal(sub.id, 1);
	assert_string_equal(sub.email, "Taro@example.jp");
	assert_int_equal(kr_store_subscriber_find(
	                     f->s, "other", "taro@example.jp", &sub, &err),
	                 1);
	assert_int_equal(sub.id, 3);
	assert_int_equal(kr_store_subscribe(f->s, "news", "JIRO@example.jp",
	                                    NULL, &form, true, NOW, &res, &err),
	                 0);
	assert_false(res.is_new);
	assert_int_equal(kr_store_subscriber_count(f->s, "news", -1, &n, &err),
	                 0);
	assert_int_equal(n, 3);
}

/* Case duplicates each with mail history (or a different state): the
 * migration stops before v4, changes nothing, and the store works on,
 * matching without case (the exact spelling first), until the operator
 * removes one; the next open completes v4. */
static void
test_store_v4_waits_for_operator(void **state)
{
	struct fx *f = *state;
	struct kr_subscriber sub;
	struct kr_sub_result res;
	struct kr_consent form = {"form", "192.0.2.1", "Mozilla"};
	struct kr_err err = {0};
	int64_t n = 0;
	char *sql = kr_xasprintf(
	    "%s%s"
	    "INSERT INTO subscribers (id, list_id, email, status, created_at)"
	    " VALUES (1, 'news', 'Hanako@example.jp', 1, 5),"
	    " (2, 'news', 'hanako@example.jp', 1, 6),"
	    " (3, 'news', 'Jiro@example.jp', 2, 7),"
	    " (4, 'news', 'jiro@example.jp', 1, 8);\n"
	    "INSERT INTO deliveries (kind, report_id, subscriber_id, domain,"
	    " queued_at, state) VALUES (1, NULL, 1, 'example.jp', 5, 1),"
	    " (1, NULL, 2, 'example.jp', 6, 1);\n"
	    "PRAGMA user_version = 3;\n",
	    v1_sql, v2_v3_sql);

	assert_int_equal(shell_sql(f->db, sql), 0);
	free(sql);
	open_ok(f);
	assert_int_equal(kr_store_subscriber_count(f->s, NULL, -1, &n, &err),
	                 0);
	assert_int_equal(n, 4);
	/* The exact spelling first, so `remove ADDRESS` takes that one. */
	assert_int_equal(kr_store_subscriber_find(
	                     f->s, "news", "hanako@example.jp", &sub, &err),
	                 1);
	assert_int_equal(sub.id, 2);
	assert_int_equal(kr_store_subscriber_find(
	                     f->s, "news", "HANAKO@example.jp", &sub, &err),
	                 1);
	assert_int_equal(sub.id, 1);
	/* No third spelling gets in meanwhile. */
	assert_int_equal(kr_store_subscribe(f->s, "news", "HANAKO@example.jp",
	                                    NULL, &form, true, NOW, &res, &err),
	                 0);
	assert_false(res.is_new);
	kr_store_close(&f->s);
	assert_int_equal(shell_int(f->db, "PRAGMA user_version"), 3);
	assert_int_equal(
	    shell_int(f->db, "SELECT count(*) FROM sqlite_master WHERE name"
	                     " LIKE 'kr_case%'"),
	    0);

	open_ok(f);
	assert_int_equal(kr_store_subscriber_delete(f->s, 2, &err), 0);
	assert_int_equal(kr_store_subscriber_delete(f->s, 3, &err), 0);
	kr_store_close(&f->s);
	open_ok(f);
	kr_store_close(&f->s);
	assert_int_equal(shell_int(f->db, "PRAGMA user_version"),
	                 kr_store_schema_version());
	assert_int_equal(shell_int(f->db, "SELECT count(*) FROM subscribers"),
	                 2);
}

static void
refuse_untouched(struct fx *f, const char *want)
{
	struct kr_err err = {0};
	char *before, *after;
	size_t n1, n2;

	before = slurp(f->db, &n1);
	assert_int_equal(kr_store_open(f->db, NULL, &f->s, &err), -1);
	assert_null(f->s);
	assert_int_equal(err.code, KR_ERR_DB);
	if (strstr(err.msg, want) == NULL)
		fail_msg("message '%s' lacks '%s'", err.msg, want);
	after = slurp(f->db, &n2);
	assert_int_equal(n1, n2);
	assert_memory_equal(before, after, n1);
	free(before);
	free(after);
}

static void
test_store_refuses_not_sqlite(void **state)
{
	struct fx *f = *state;
	FILE *fp = fopen(f->db, "w");

	assert_non_null(fp);
	fputs("email,name\nsomeone@example.jp,Someone\n"
	      "this is a CSV file, not a database, and long enough to have a "
	      "header of its own...............................\n",
	      fp);
	fclose(fp);
	refuse_untouched(f, "not an SQLite database");
}

static void
test_store_refuses_newer_schema(void **state)
{
	struct fx *f = *state;

	assert_int_equal(shell_sql(f->db, "CREATE TABLE future (x);"
	                                  "INSERT INTO future VALUES (1);"
	                                  "PRAGMA user_version = 99;"),
	                 0);
	refuse_untouched(f, "schema version 99 is newer");
}

static void
test_store_refuses_foreign_sqlite(void **state)
{
	struct fx *f = *state;

	assert_int_equal(shell_sql(f->db, "CREATE TABLE other (x);"), 0);
	refuse_untouched(f, "not kairan's");
}

static void
test_store_subscribe_state_machine(void **state)
{
	struct fx *f = *state;
	struct kr_consent form = {"form", "192.0.2.1", "Mozilla"};
	struct kr_consent again = {"form", "192.0.2.9", "curl"};
	struct kr_sub_result res;
	struct kr_subscriber sub;
	struct kr_err err = {0};
	int64_t id;

	open_ok(f);
	/* New, double opt-in: PENDING with the consent record. */
	assert_int_equal(kr_store_subscribe(f->s, "news", "a@example.jp",
	                                    "Ａさん", &form, true, NOW, &res,
	                                    &err),
	                 0);
	assert_true(res.is_new);
	assert_int_equal(res.after, KR_SUB_PENDING);
	assert_int_equal((int)res.before, -1);
	id = res.id;
	assert_int_equal(kr_store_subscriber_get(f->s, id, &sub, &err), 1);
	assert_string_equal(sub.name, "Ａさん");
	assert_string_equal(sub.consent_ip, "192.0.2.1");
	assert_string_equal(sub.consent_ua, "Mozilla");
	assert_int_equal(sub.consent_at, NOW);
	assert_int_equal(sub.confirmed_at, 0);

	/* PENDING stays PENDING. */
	assert_int_equal(kr_store_subscribe(f->s, "news", "a@example.jp", NULL,
	                                    &again, true, NOW + 1, &res, &err),
	                 0);
	assert_false(res.is_new);
	assert_int_equal(res.id, id);
	assert_int_equal(res.before, KR_SUB_PENDING);
	assert_int_equal(res.after, KR_SUB_PENDING);

	/* Confirm: once. */
	assert_int_equal(kr_store_subscriber_confirm(f->s, id, NOW + 2, &err),
	                 1);
	assert_int_equal(kr_store_subscriber_confirm(f->s, id, NOW + 3, &err),
	                 0);
	assert_int_equal(kr_store_subscriber_get(f->s, id, &sub, &err), 1);
	assert_int_equal(sub.status, KR_SUB_ACTIVE);
	assert_int_equal(sub.confirmed_at, NOW + 2);

	/* ACTIVE is left alone. */
	assert_int_equal(kr_store_subscribe(f->s, "news", "a@example.jp", NULL,
	                                    &again, true, NOW + 4, &res, &err),
	                 0);
	assert_int_equal(res.before, KR_SUB_ACTIVE);
	assert_int_equal(res.after, KR_SUB_ACTIVE);
	assert_int_equal(kr_store_subscriber_get(f->s, id, &sub, &err), 1);
	assert_string_equal(sub.consent_ip, "192.0.2.1");

	/* Unsubscribed, then back: PENDING with a fresh consent record. */
	assert_int_equal(
	    kr_store_subscriber_unsubscribe(f->s, id, false, 0, NOW + 5, &err), 1);
	assert_int_equal(
	    kr_store_subscriber_unsubscribe(f->s, id, false, 0, NOW + 6, &err), 0);
	assert_int_equal(kr_store_subscriber_get(f->s, id, &sub, &err), 1);
	assert_int_equal(sub.status, KR_SUB_UNSUBSCRIBED);
	assert_int_equal(sub.unsubscribed_at, NOW + 5);
	assert_int_equal(kr_store_subscribe(f->s, "news", "a@example.jp", NULL,
	                                    &again, true, NOW + 7, &res, &err),
	                 0);
	assert_int_equal(res.before, KR_SUB_UNSUBSCRIBED);
	assert_int_equal(res.after, KR_SUB_PENDING);
	assert_int_equal(kr_store_subscriber_get(f->s, id, &sub, &err), 1);
	assert_int_equal(sub.status, KR_SUB_PENDING);
	assert_string_equal(sub.consent_ip, "192.0.2.9");
	assert_int_equal(sub.consent_at, NOW + 7);
	assert_int_equal(sub.confirmed_at, 0);
	assert_string_equal(sub.name, "Ａさん");

	/* Without double opt-in: ACTIVE at once; another list is another
	 * subscription of the same address. */
	assert_int_equal(kr_store_subscribe(f->s, "other", "a@example.jp", NULL,
	                                    &form, false, NOW, &res, &err),
	                 0);
	assert_true(res.is_new);
	assert_int_equal(res.after, KR_SUB_ACTIVE);
	assert_int_equal(kr_store_subscriber_get(f->s, res.id, &sub, &err), 1);
	assert_int_equal(sub.confirmed_at, NOW);

	/* Unsubscribe from all lists of the address. */
	assert_int_equal(kr_store_subscriber_confirm(f->s, id, NOW + 8, &err),
	                 1);
	assert_int_equal(
	    kr_store_subscriber_unsubscribe(f->s, id, true, 0, NOW + 9, &err), 2);
	assert_int_equal(
	    kr_store_subscriber_find(f->s, "other", "a@example.jp", &sub, &err),
	    1);
	assert_int_equal(sub.status, KR_SUB_UNSUBSCRIBED);
	assert_int_equal(kr_store_subscriber_find(
	                     f->s, "news", "nobody@example.jp", &sub, &err),
	                 0);
	assert_int_equal(kr_store_subscriber_get(f->s, 999, &sub, &err), 0);
}

static void
test_store_import_and_lists(void **state)
{
	struct fx *f = *state;
	struct kr_subscriber sub = {0};
	struct kr_err err = {0};
	bool added = true;
	int64_t n = 0, id = -1;

	open_ok(f);
	add_sub(f->s, "news", "a@example.jp", KR_SUB_ACTIVE);
	add_sub(f->s, "news", "b@example.jp", KR_SUB_PENDING);
	add_sub(f->s, "other", "a@example.jp", KR_SUB_UNSUBSCRIBED);
	/* The same (list, email) again changes nothing. */
	snprintf(sub.list_id, sizeof(sub.list_id), "news");
	snprintf(sub.email, sizeof(sub.email), "a@example.jp");
	sub.status = KR_SUB_UNSUBSCRIBED;
	assert_int_equal(kr_store_subscriber_import(f->s, &sub, &added, &err),
	                 0);
	assert_false(added);
	assert_int_equal(kr_store_subscriber_import_id(f->s, &sub, &id, &err),
	                 0);
	assert_int_equal(id, 0);
	assert_int_equal(
	    kr_store_subscriber_find(f->s, "news", "a@example.jp", &sub, &err),
	    1);
	assert_int_equal(sub.status, KR_SUB_ACTIVE);
	snprintf(sub.email, sizeof(sub.email), "new@example.jp");
	assert_int_equal(kr_store_subscriber_import_id(f->s, &sub, &id, &err),
	                 0);
	assert_true(id > 0);
	assert_int_equal(kr_store_subscriber_get(f->s, id, &sub, &err), 1);
	assert_string_equal(sub.email, "new@example.jp");
	assert_int_equal(sub.status, KR_SUB_ACTIVE);
	assert_int_equal(kr_store_subscriber_delete(f->s, id, &err), 0);

	assert_int_equal(kr_store_subscriber_count(f->s, NULL, -1, &n, &err),
	                 0);
	assert_int_equal(n, 3);
	assert_int_equal(kr_store_subscriber_count(f->s, "news", -1, &n, &err),
	                 0);
	assert_int_equal(n, 2);
	assert_int_equal(
	    kr_store_subscriber_count(f->s, "news", KR_SUB_ACTIVE, &n, &err),
	    0);
	assert_int_equal(n, 1);
	assert_int_equal(kr_store_subscriber_count(
	                     f->s, NULL, KR_SUB_UNSUBSCRIBED, &n, &err),
	                 0);
	assert_int_equal(n, 1);

	/* An explicit transaction rolled back leaves nothing. */
	assert_int_equal(kr_store_begin(f->s, &err), 0);
	assert_int_equal(kr_store_begin(f->s, &err), -1);
	add_sub(f->s, "news", "c@example.jp", KR_SUB_ACTIVE);
	kr_store_rollback(f->s);
	assert_int_equal(
	    kr_store_subscriber_find(f->s, "news", "c@example.jp", &sub, &err),
	    0);
	assert_int_equal(kr_store_begin(f->s, &err), 0);
	add_sub(f->s, "news", "c@example.jp", KR_SUB_ACTIVE);
	assert_int_equal(kr_store_commit(f->s, &err), 0);
	assert_int_equal(
	    kr_store_subscriber_find(f->s, "news", "c@example.jp", &sub, &err),
	    1);
}

struct collect {
	int n;
	char emails[8][256];
	int stop_at;
};

static int
collect_sub(void *ctx, const struct kr_subscriber *sub)
{
	struct collect *c = ctx;

	if (c->n < 8)
		snprintf(c->emails[c->n], sizeof(c->emails[0]), "%s",
		         sub->email);
	c->n++;
	return c->n == c->stop_at ? 42 : 0;
}

static void
test_store_foreach(void **state)
{
	struct fx *f = *state;
	struct collect c = {0};
	struct kr_err err = {0};
	int i;
	char email[64];

	open_ok(f);
	/* More than one page of 1000. */
	assert_int_equal(kr_store_begin(f->s, &err), 0);
	for (i = 0; i < 2500; i++) {
		snprintf(email, sizeof(email), "u%04d@example.jp", i);
		add_sub(f->s, i % 2 ? "news" : "other", email,
		        i % 5 ? KR_SUB_ACTIVE : KR_SUB_PENDING);
	}
	assert_int_equal(kr_store_commit(f->s, &err), 0);
	assert_int_equal(
	    kr_store_subscriber_foreach(f->s, NULL, -1, collect_sub, &c, &err),
	    0);
	assert_int_equal(c.n, 2500);
	assert_string_equal(c.emails[0], "u0000@example.jp");
	assert_string_equal(c.emails[1], "u0001@example.jp");
	memset(&c, 0, sizeof(c));
	assert_int_equal(kr_store_subscriber_foreach(f->s, "news",
	                                             KR_SUB_ACTIVE, collect_sub,
	                                             &c, &err),
	                 0);
	/* Odd i, not a multiple of 5: 1250 - 250. */
	assert_int_equal(c.n, 1000);
	assert_string_equal(c.emails[0], "u0001@example.jp");
	assert_string_equal(c.emails[1], "u0003@example.jp");
	memset(&c, 0, sizeof(c));
	c.stop_at = 3;
	assert_int_equal(
	    kr_store_subscriber_foreach(f->s, NULL, -1, collect_sub, &c, &err),
	    42);
	assert_int_equal(c.n, 3);
	/* The statement was reset: the store still works. */
	assert_int_equal(kr_store_ping(f->s, &err), 0);
}

static void
test_store_report_dedupe_and_unique_key(void **state)
{
	struct fx *f = *state;
	struct kr_report_row r = {0}, got;
	struct kr_err err = {0};
	int64_t id, id2, q = 0, dup = 0;

	open_ok(f);
	add_sub(f->s, "news", "a@example.jp", KR_SUB_ACTIVE);
	add_sub(f->s, "news", "b@example.jp", KR_SUB_ACTIVE);
	add_sub(f->s, "news", "p@example.jp", KR_SUB_PENDING);
	add_sub(f->s, "other", "c@example.jp", KR_SUB_ACTIVE);
	id = add_report(f->s, "news", "abc123", false, &q);
	assert_true(id > 0);
	assert_int_equal(q, 2);

	assert_int_equal(kr_store_report_get(f->s, id, &got, &err), 1);
	assert_string_equal(got.subject, "月次レポート");
	assert_string_equal(got.preheader, "");
	assert_string_equal(got.hash, "abc123");
	assert_int_equal(got.state, KR_RS_ACTIVE);
	assert_int_equal(got.created_at, NOW);
	kr_store_report_row_fini(&got);
	kr_store_report_row_fini(&got);
	assert_int_equal(kr_store_report_get(f->s, id + 100, &got, &err), 0);

	/* The same source again: refused, nothing queued. */
	snprintf(r.list_id, sizeof(r.list_id), "news");
	snprintf(r.hash, sizeof(r.hash), "abc123");
	assert_int_equal(
	    kr_store_report_add(f->s, &r, false, NOW, &dup, &q, &err), -1);
	assert_int_equal(err.code, KR_ERR_EXISTS);
	assert_int_equal(q, 0);
	assert_int_equal(shell_int(f->db, "SELECT count(*) FROM reports"), 1);
	/* Unless on purpose. */
	id2 = add_report(f->s, "news", "abc123", true, &q);
	assert_true(id2 > id);
	assert_int_equal(q, 2);

	/* One row per (report, subscriber), enforced by the schema. */
	kr_store_close(&f->s);
	assert_int_not_equal(
	    shell_sql(f->db, "INSERT INTO deliveries (kind, report_id,"
	                     " subscriber_id, queued_at) SELECT kind,"
	                     " report_id, subscriber_id, 0 FROM "
	                     "deliveries LIMIT 1;"),
	    0);
	assert_int_equal(shell_int(f->db, "SELECT count(*) FROM deliveries"),
	                 4);
	assert_int_equal(
	    shell_int(f->db, "SELECT count(*) FROM deliveries WHERE domain = "
	                     "'example.jp'"),
	    4);
}

static void
test_store_claim_order_and_lease(void **state)
{
	struct fx *f = *state;
	struct kr_claim c[8];
	struct kr_err err = {0};
	int64_t a, b, p, r1, r2, q;
	size_t n = 0;

	open_ok(f);
	a = add_sub(f->s, "news", "a@example.jp", KR_SUB_ACTIVE);
	b = add_sub(f->s, "news", "b@example.jp", KR_SUB_ACTIVE);
	r1 = add_report(f->s, "news", "h1", false, &q);
	r2 = add_report(f->s, "news", "h2", false, &q);
	/* A confirmation queued last still goes first. */
	p = add_sub(f->s, "news", "p@example.jp", KR_SUB_PENDING);
	assert_int_equal(kr_store_confirm_enqueue(f->s, p, NOW, &err), 0);
	assert_int_equal(kr_store_confirm_enqueue(f->s, 9999, NOW, &err), -1);
	assert_int_equal(err.code, KR_ERR_NOTFOUND);

	assert_int_equal(
	    kr_store_claim(f->s, &OWNER, NOW, NOW + 300, 3, c, &n, &err), 0);
	assert_int_equal(n, 3);
	assert_int_equal(c[0].kind, KR_DELIVERY_CONFIRM);
	assert_int_equal(c[0].report_id, 0);
	assert_int_equal(c[0].subscriber_id, p);
	assert_string_equal(c[0].email, "p@example.jp");
	assert_string_equal(c[0].list_id, "news");
	assert_int_equal(c[1].report_id, r1);
	assert_int_equal(c[1].subscriber_id, a);
	assert_int_equal(c[2].report_id, r1);
	assert_int_equal(c[2].subscriber_id, b);
	assert_int_equal(c[1].attempts, 0);
	assert_int_equal(c[1].queued_at, NOW);

	/* Leased rows are not handed out twice. */
	assert_int_equal(
	    kr_store_claim(f->s, &OWNER, NOW + 1, NOW + 301, 8, c, &n, &err),
	    0);
	assert_int_equal(n, 2);
	assert_int_equal(c[0].report_id, r2);
	assert_int_equal(c[1].report_id, r2);
	assert_int_equal(
	    kr_store_claim(f->s, &OWNER, NOW + 2, NOW + 302, 8, c, &n, &err),
	    0);
	assert_int_equal(n, 0);

	/* A crashed worker's rows come back once the lease has passed. */
	assert_int_equal(
	    kr_store_claim(f->s, &OWNER, NOW + 300, NOW + 600, 8, c, &n, &err),
	    0);
	assert_int_equal(n, 0);
	assert_int_equal(
	    kr_store_claim(f->s, &OWNER, NOW + 301, NOW + 600, 8, c, &n, &err),
	    0);
	assert_int_equal(n, 3);
	assert_int_equal(c[0].kind, KR_DELIVERY_CONFIRM);
	assert_int_equal(
	    kr_store_claim(f->s, &OWNER, NOW + 302, NOW + 600, 8, c, &n, &err),
	    0);
	assert_int_equal(n, 2);

	/* Release drops the lease at once. */
	assert_int_equal(
	    kr_store_release(f->s, c[0].delivery_id, c[0].lease, &err), 0);
	assert_int_equal(
	    kr_store_claim(f->s, &OWNER, NOW + 303, NOW + 600, 8, c, &n, &err),
	    0);
	assert_int_equal(n, 1);
	assert_int_equal(kr_store_release(f->s, 424242, 1, &err), -1);
	assert_int_equal(err.code, KR_ERR_NOTFOUND);
}

static void
test_store_mark_outcomes_and_counts(void **state)
{
	struct fx *f = *state;
	struct kr_claim c[8];
	struct kr_delivery_counts k;
	struct kr_err err = {0};
	int64_t r, q;
	size_t n = 0;
	char email[32];
	int i;

	open_ok(f);
	for (i = 0; i < 6; i++) {
		snprintf(email, sizeof(email), "u%d@example.jp", i);
		add_sub(f->s, "news", email, KR_SUB_ACTIVE);
	}
	r = add_report(f->s, "news", "h", false, &q);
	assert_int_equal(q, 6);
	assert_int_equal(kr_store_delivery_counts(f->s, r, &k, &err), 0);
	assert_int_equal(k.queued, 6);
	assert_int_equal(k.sent + k.deferred + k.failed + k.in_flight, 0);

	assert_int_equal(
	    kr_store_claim(f->s, &OWNER, NOW, NOW + 60, 5, c, &n, &err), 0);
	assert_int_equal(n, 5);
	assert_int_equal(kr_store_mark_sent(f->s, c[0].delivery_id, c[0].lease,
	                                    NOW, "250 2.0.0 Ok: queued", &err),
	                 0);
	assert_int_equal(kr_store_mark_deferred(f->s, c[1].delivery_id,
	                                        c[1].lease, NOW, NOW + 100, 451,
	                                        "451 4.7.1 later", &err),
	                 0);
	assert_int_equal(kr_store_mark_failed(f->s, c[2].delivery_id,
	                                      c[2].lease, NOW, 550,
	                                      "550 5.1.1 no such user", &err),
	                 0);
	assert_int_equal(kr_store_mark_uncertain(f->s, c[3].delivery_id,
	                                         c[3].lease, NOW, NULL, &err),
	                 0);
	assert_int_equal(kr_store_mark_sent(f->s, 777777, 1, NOW, NULL, &err),
	                 -1);
	assert_int_equal(err.code, KR_ERR_NOTFOUND);
	/* c[4] stays in flight. in_flight uses the clock: leases far
	 * ahead of it. */
	assert_int_equal(kr_store_delivery_counts(f->s, r, &k, &err), 0);
	assert_int_equal(k.sent, 1);
	assert_int_equal(k.deferred, 1);
	assert_int_equal(k.failed, 1);
	assert_int_equal(k.uncertain, 1);
	assert_int_equal(k.queued, 2);
	assert_int_equal(k.in_flight, 0); /* NOW + 60 is long past */

	/* The deferred row waits for next_attempt; its attempt counted.
	 * c[4]'s lease (NOW + 60) has passed: it is due again. */
	assert_int_equal(
	    kr_store_claim(f->s, &OWNER, NOW + 99, NOW + 160, 8, c, &n, &err),
	    0);
	assert_int_equal(n, 2);
	assert_int_equal(c[0].attempts, 0);
	assert_int_equal(kr_store_claim(f->s, &OWNER, NOW + 100,
	                                NOW + 4000000000LL, 8, c, &n, &err),
	                 0);
	assert_int_equal(n, 1);
	assert_int_equal(c[0].attempts, 1);
	assert_int_equal(kr_store_delivery_counts(f->s, r, &k, &err), 0);
	assert_int_equal(k.in_flight, 1);
	assert_int_equal(kr_store_delivery_counts(f->s, 0, &k, &err), 0);
	assert_int_equal(k.queued + k.deferred, 3);
	assert_int_equal(k.in_flight, 1);

	/* retry --failed: the failed row only; with uncertain both. */
	assert_int_equal(kr_store_report_retry(f->s, r, false, &q, &err), 0);
	assert_int_equal(q, 1);
	assert_int_equal(kr_store_report_retry(f->s, r, true, &q, &err), 0);
	assert_int_equal(q, 1);
	assert_int_equal(kr_store_delivery_counts(f->s, r, &k, &err), 0);
	assert_int_equal(k.failed + k.uncertain, 0);
	assert_int_equal(k.sent, 1);
	assert_int_equal(k.queued, 4);
}

static void
test_store_unsubscribe_cancels_queue(void **state)
{
	struct fx *f = *state;
	struct kr_claim c[8];
	struct kr_delivery_counts k;
	struct kr_subscriber sub;
	struct kr_err err = {0};
	int64_t a, b, r, q, cb, rb;
	size_t n = 0;

	open_ok(f);
	a = add_sub(f->s, "news", "a@example.jp", KR_SUB_ACTIVE);
	b = add_sub(f->s, "news", "b@example.jp", KR_SUB_ACTIVE);
	r = add_report(f->s, "news", "h", false, &q);
	assert_int_equal(
	    kr_store_subscriber_unsubscribe(f->s, a, false, 0, NOW, &err), 1);
	assert_int_equal(kr_store_delivery_counts(f->s, r, &k, &err), 0);
	assert_int_equal(k.cancelled, 1);
	assert_int_equal(k.queued, 1);
	assert_int_equal(
	    kr_store_claim(f->s, &OWNER, NOW, NOW + 60, 8, c, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_int_equal(c[0].subscriber_id, b);

	/* A subscriber no longer active by another way (bounced through
	 * the shell) is skipped, and its row cancelled by claim. */
	assert_int_equal(
	    kr_store_release(f->s, c[0].delivery_id, c[0].lease, &err), 0);
	kr_store_close(&f->s);
	assert_int_equal(shell_sql(f->db, "UPDATE subscribers SET status = 3 "
	                                  "WHERE email = 'b@example.jp';"),
	                 0);
	open_ok(f);
	assert_int_equal(
	    kr_store_claim(f->s, &OWNER, NOW, NOW + 60, 8, c, &n, &err), 0);
	assert_int_equal(n, 0);
	assert_int_equal(kr_store_delivery_counts(f->s, r, &k, &err), 0);
	assert_int_equal(k.cancelled, 2);

	/* A confirmed subscriber's pending confirmation is not sent. */
	a = add_sub(f->s, "news", "p@example.jp", KR_SUB_PENDING);
	assert_int_equal(kr_store_confirm_enqueue(f->s, a, NOW, &err), 0);
	assert_int_equal(kr_store_subscriber_confirm(f->s, a, NOW, &err), 1);
	assert_int_equal(
	    kr_store_claim(f->s, &OWNER, NOW, NOW + 60, 8, c, &n, &err), 0);
	assert_int_equal(n, 0);

	/* Bounces: soft ones are only logged, the third hard one turns
	 * the subscription BOUNCED and cancels its queue. */
	cb = add_sub(f->s, "news", "c@example.jp", KR_SUB_ACTIVE);
	rb = add_report(f->s, "news", "h-bounce", false, &q);
	assert_int_equal(q, 2); /* c and the now confirmed p */
	assert_int_equal(
	    kr_store_subscriber_bounce(f->s, cb, false, 3, NOW, "4.2.2", &err),
	    0);
	assert_int_equal(
	    kr_store_subscriber_bounce(f->s, cb, true, 3, NOW, "5.1.1", &err),
	    0);
	assert_int_equal(
	    kr_store_subscriber_bounce(f->s, cb, true, 3, NOW, "5.1.1", &err),
	    0);
	assert_int_equal(kr_store_subscriber_get(f->s, cb, &sub, &err), 1);
	assert_int_equal(sub.bounces, 2);
	assert_int_equal(sub.status, KR_SUB_ACTIVE);
	assert_int_equal(
	    kr_store_subscriber_bounce(f->s, cb, true, 3, NOW, "5.1.1", &err),
	    1);
	assert_int_equal(kr_store_subscriber_get(f->s, cb, &sub, &err), 1);
	assert_int_equal(sub.status, KR_SUB_BOUNCED);
	assert_int_equal(kr_store_delivery_counts(f->s, rb, &k, &err), 0);
	assert_int_equal(k.cancelled, 1);
	assert_int_equal(k.queued, 1); /* p's */
	assert_int_equal(
	    kr_store_subscriber_bounce(f->s, cb, true, 3, NOW, "5.1.1", &err),
	    0);
	assert_int_equal(kr_store_subscriber_bounce(f->s, 99999, true, 3, NOW,
	                                            "5.1.1", &err),
	                 -1);
	assert_int_equal(err.code, KR_ERR_NOTFOUND);
	/* One soft, four hard, one 'bounced'. */
	kr_store_close(&f->s);
	assert_int_equal(shell_int(f->db, "SELECT count(*) FROM events WHERE"
	                                  " kind LIKE 'bounce%'"),
	                 6);
	open_ok(f);

	/* delete removes the subscription and its rows. */
	assert_int_equal(kr_store_subscriber_delete(f->s, b, &err), 0);
	assert_int_equal(kr_store_subscriber_delete(f->s, b, &err), -1);
	assert_int_equal(err.code, KR_ERR_NOTFOUND);
	assert_int_equal(kr_store_delivery_counts(f->s, r, &k, &err), 0);
	assert_int_equal(k.cancelled, 1);
}

struct rep_seen {
	int n;
	int64_t ids[4];
	int64_t queued[4];
};

static int
collect_report(void *ctx, const struct kr_report_row *r,
               const struct kr_delivery_counts *k)
{
	struct rep_seen *s = ctx;

	if (s->n < 4) {
		s->ids[s->n] = r->id;
		s->queued[s->n] = k->queued;
	}
	s->n++;
	return 0;
}

static void
test_store_pause_resume_cancel(void **state)
{
	struct fx *f = *state;
	struct kr_claim c[8];
	struct kr_delivery_counts k;
	struct rep_seen seen = {0};
	struct kr_err err = {0};
	int64_t r, r2, q;
	size_t n = 0;

	open_ok(f);
	add_sub(f->s, "news", "a@example.jp", KR_SUB_ACTIVE);
	add_sub(f->s, "news", "b@example.jp", KR_SUB_ACTIVE);
	r = add_report(f->s, "news", "h", false, &q);
	r2 = add_report(f->s, "news", "h2", false, &q);
	assert_int_equal(kr_store_report_set_state(f->s, r, KR_RS_PAUSED, &err),
	                 0);
	assert_int_equal(
	    kr_store_claim(f->s, &OWNER, NOW, NOW + 60, 8, c, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_int_equal(c[0].report_id, r2);
	assert_int_equal(kr_store_report_set_state(f->s, r, KR_RS_ACTIVE, &err),
	                 0);
	assert_int_equal(
	    kr_store_claim(f->s, &OWNER, NOW, NOW + 60, 8, c, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_int_equal(c[0].report_id, r);
	assert_int_equal(
	    kr_store_release(f->s, c[0].delivery_id, c[0].lease, &err), 0);
	assert_int_equal(
	    kr_store_report_set_state(f->s, r, KR_RS_CANCELLED, &err), 0);
	assert_int_equal(kr_store_delivery_counts(f->s, r, &k, &err), 0);
	assert_int_equal(k.cancelled, 2);
	assert_int_equal(k.queued, 0);
	/* The copy in flight when it was cancelled went out after all: the
	 * worker's outcome is the truth. */
	assert_int_equal(kr_store_mark_sent(f->s, c[1].delivery_id, c[1].lease,
	                                    NOW, NULL, &err),
	                 0);
	assert_int_equal(kr_store_delivery_counts(f->s, r, &k, &err), 0);
	assert_int_equal(k.cancelled, 1);
	assert_int_equal(k.sent, 1);
	assert_int_equal(
	    kr_store_claim(f->s, &OWNER, NOW, NOW + 60, 8, c, &n, &err), 0);
	assert_int_equal(n, 0);
	assert_int_equal(
	    kr_store_report_set_state(f->s, 999, KR_RS_PAUSED, &err), -1);
	assert_int_equal(err.code, KR_ERR_NOTFOUND);

	assert_int_equal(
	    kr_store_report_foreach(f->s, 0, collect_report, &seen, &err), 0);
	assert_int_equal(seen.n, 2);
	assert_int_equal(seen.ids[0], r2); /* newest first */
	assert_int_equal(seen.ids[1], r);
	memset(&seen, 0, sizeof(seen));
	assert_int_equal(
	    kr_store_report_foreach(f->s, 1, collect_report, &seen, &err), 0);
	assert_int_equal(seen.n, 1);
}

static void
test_store_send_at_and_backup(void **state)
{
	struct fx *f = *state;
	struct kr_report_row r = {0};
	struct kr_claim c[4];
	struct kr_err err = {0};
	struct kr_store *copy = NULL;
	int64_t id, q, cnt = 0;
	size_t n = 0;
	struct stat sb;
	char path[192];

	open_ok(f);
	add_sub(f->s, "news", "a@example.jp", KR_SUB_ACTIVE);
	snprintf(r.list_id, sizeof(r.list_id), "news");
	snprintf(r.hash, sizeof(r.hash), "later");
	r.send_at = NOW + 500;
	assert_int_equal(
	    kr_store_report_add(f->s, &r, false, NOW, &id, &q, &err), 0);
	assert_int_equal(q, 1);
	assert_int_equal(
	    kr_store_claim(f->s, &OWNER, NOW + 499, NOW + 600, 4, c, &n, &err),
	    0);
	assert_int_equal(n, 0);
	assert_int_equal(
	    kr_store_claim(f->s, &OWNER, NOW + 500, NOW + 600, 4, c, &n, &err),
	    0);
	assert_int_equal(n, 1);

	snprintf(path, sizeof(path), "%s/backup.db", f->dir);
	assert_int_equal(kr_store_backup(f->s, path, &err), 0);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_int_equal(kr_store_open(path, NULL, &copy, &err), 0);
	assert_int_equal(
	    kr_store_subscriber_count(copy, "news", -1, &cnt, &err), 0);
	assert_int_equal(cnt, 1);
	kr_store_close(&copy);
	snprintf(path, sizeof(path), "%s/no/such/dir/backup.db", f->dir);
	assert_int_equal(kr_store_backup(f->s, path, &err), -1);
}

static void
test_store_busy_and_nested_failure(void **state)
{
	struct fx *f = *state;
	struct kr_store *other = NULL;
	struct kr_subscriber sub;
	struct kr_report_row r = {0};
	struct kr_err err = {0};
	int64_t id, q;

	open_ok(f);
	assert_int_equal(kr_store_open(f->db, pw(f->db), &other, &err), 0);
	/* One writer at a time: the second waits out the busy timeout
	 * (5 s) and is told to try later, not that the data is bad. */
	assert_int_equal(kr_store_begin(f->s, &err), 0);
	add_sub(f->s, "news", "a@example.jp", KR_SUB_ACTIVE);
	assert_int_equal(kr_store_subscribe(other, "news", "b@example.jp", NULL,
	                                    NULL, true, NOW,
	                                    &(struct kr_sub_result){0}, &err),
	                 -1);
	assert_int_equal(err.code, KR_ERR_BUSY);
	assert_non_null(strstr(err.msg, "locked"));
	/* A call that fails inside the caller's transaction undoes only its
	 * own part (a savepoint); the caller's rows still commit. */
	add_report(f->s, "news", "dup", false, &q);
	snprintf(r.list_id, sizeof(r.list_id), "news");
	snprintf(r.hash, sizeof(r.hash), "dup");
	assert_int_equal(
	    kr_store_report_add(f->s, &r, false, NOW, &id, &q, &err), -1);
	assert_int_equal(err.code, KR_ERR_EXISTS);
	assert_int_equal(kr_store_commit(f->s, &err), 0);
	assert_int_equal(
	    kr_store_subscriber_find(other, "news", "a@example.jp", &sub, &err),
	    1);
	assert_int_equal(shell_int(f->db, "SELECT count(*) FROM reports"), 1);
	kr_store_close(&other);
}

static void
test_store_claim_retries_before_new_rows(void **state)
{
	struct fx *f = *state;
	struct kr_claim c[8];
	struct kr_err err = {0};
	int64_t a, b, r1, r2, q, deferred_id;
	size_t n = 0;

	open_ok(f);
	a = add_sub(f->s, "news", "a@example.jp", KR_SUB_ACTIVE);
	b = add_sub(f->s, "news", "b@example.jp", KR_SUB_ACTIVE);
	r1 = add_report(f->s, "news", "h1", false, &q);
	assert_int_equal(
	    kr_store_claim(f->s, &OWNER, NOW, NOW + 60, 8, c, &n, &err), 0);
	assert_int_equal(n, 2);
	/* b's copy waits for a retry; a's is released untried. */
	assert_int_equal(c[1].subscriber_id, b);
	deferred_id = c[1].delivery_id;
	assert_int_equal(kr_store_mark_deferred(f->s, deferred_id, c[1].lease,
	                                        NOW, NOW + 10, 421, "busy",
	                                        &err),
	                 0);
	assert_int_equal(
	    kr_store_release(f->s, c[0].delivery_id, c[0].lease, &err), 0);
	r2 = add_report(f->s, "news", "h2", false, &q);
	/* Before it is due only the untried rows go. */
	assert_int_equal(
	    kr_store_claim(f->s, &OWNER, NOW + 9, NOW + 9, 8, c, &n, &err), 0);
	assert_int_equal(n, 3);
	assert_int_not_equal(c[0].delivery_id, deferred_id);
	assert_int_not_equal(c[1].delivery_id, deferred_id);
	assert_int_not_equal(c[2].delivery_id, deferred_id);
	/* Once due, the retry comes first, then the queue by id. */
	assert_int_equal(
	    kr_store_claim(f->s, &OWNER, NOW + 10, NOW + 100, 8, c, &n, &err),
	    0);
	assert_int_equal(n, 4);
	assert_int_equal(c[0].delivery_id, deferred_id);
	assert_int_equal(c[0].attempts, 1);
	assert_int_equal(c[1].report_id, r1);
	assert_int_equal(c[1].subscriber_id, a);
	assert_int_equal(c[2].report_id, r2);
	assert_int_equal(c[2].subscriber_id, a);
	assert_int_equal(c[3].report_id, r2);
	assert_int_equal(c[3].subscriber_id, b);
}

/* Size of the WAL file next to f->db, in bytes (0 when none). */
static long
wal_bytes(const struct fx *f)
{
	char p[200];
	struct stat st;

	snprintf(p, sizeof(p), "%s-wal", f->db);
	return stat(p, &st) == 0 ? (long)st.st_size : 0;
}

/* Inserts n subscribers, one transaction each (as delivery commits). */
static void
add_rows(struct fx *f, int from, int n)
{
	struct kr_subscriber sub;
	struct kr_err err = {0};
	bool added;
	int i;

	for (i = from; i < from + n; i++) {
		memset(&sub, 0, sizeof(sub));
		strcpy(sub.list_id, "news");
		snprintf(sub.email, sizeof(sub.email), "reader%06d@example.jp",
		         i);
		sub.status = KR_SUB_ACTIVE;
		sub.created_at = NOW;
		if (kr_store_subscriber_import(f->s, &sub, &added, &err) < 0)
			fail_msg("import: %s", err.msg);
		assert_true(added);
	}
}

/* With the in-commit threshold raised (kairand), commits leave the WAL
 * alone past SQLite's 1,000 pages; kr_store_sqlite_checkpoint() then copies it
 * all into the database, and the next commits reuse the WAL from its
 * start instead of growing it. The default (kairanctl) still
 * checkpoints inside commits. */
static void
test_store_checkpoint(void **state)
{
	struct fx *f = *state;
	struct kr_err err = {0};
	int wal = -1, done = -1;
	long size1;

	kr_store_sqlite_set_autocheckpoint(100000);
	open_ok(f);
	kr_store_sqlite_set_autocheckpoint(0);
	add_rows(f, 0, 3000);
	size1 = wal_bytes(f);
	/* 3,000 commits, never checkpointed: far past 1,000 pages */
	assert_true(size1 > 2000L * 4096L);
	assert_int_equal(kr_store_sqlite_checkpoint(f->s, &wal, &done, &err),
	                 0);
	assert_true(wal > 2000);
	assert_int_equal(done, wal);
	/* the rows are in the database file itself now */
	assert_int_equal(shell_sql(f->db, "PRAGMA query_only = 1;"
	                                  "SELECT 1;"),
	                 0);
	add_rows(f, 3000, 50);
	assert_int_equal(wal_bytes(f), size1); /* reused, not grown */
	assert_int_equal(kr_store_sqlite_checkpoint(f->s, &wal, &done, &err),
	                 0);
	assert_true(wal < 1000);
	assert_int_equal(done, wal);
	kr_store_close(&f->s);

	/* the default: commits checkpoint at 1,000 pages themselves */
	open_ok(f);
	add_rows(f, 10000, 3000);
	assert_int_equal(kr_store_sqlite_checkpoint(f->s, &wal, &done, &err),
	                 0);
	assert_true(wal <= 1100);
}

/* data_version moves when another connection commits (kairanctl queueing
 * a report while kairand's delivery waits), not for this one's commits. */
static void
test_store_data_version(void **state)
{
	struct fx *f = *state;
	struct kr_store *other = NULL;
	struct kr_err err = {0};
	int64_t v0 = 0, v1 = 0, v2 = 0;
	int i;

	open_ok(f);
	assert_int_equal(kr_store_open(f->db, pw(f->db), &other, &err), 0);
	assert_int_equal(kr_store_changes(f->s, &v0, &err), 0);
	add_rows(f, 0, 1); /* this connection's own commit */
	assert_int_equal(kr_store_changes(f->s, &v1, &err), 0);
	assert_true(v1 == v0);
	{
		struct kr_store *mine = f->s;

		f->s = other; /* a commit by the other connection */
		add_rows(f, 1, 1);
		f->s = mine;
	}
	/* PostgreSQL: a notification, a moment after the commit */
	for (i = 0; i < 200; i++) {
		assert_int_equal(kr_store_changes(f->s, &v2, &err), 0);
		if (v2 != v1)
			break;
		usleep(10000);
	}
	assert_true(v2 != v1);
	kr_store_close(&other);
}

/* Every outcome is fenced by the claim that made it: once a lease ran
 * out and another host claimed the row, the first host's late outcome
 * records nothing (STALE), whatever it says, and the second's stands. */
static void
test_store_outcomes_fenced(void **state)
{
	struct fx *f = *state;
	const struct kr_store_owner a = {"host-a", 11}, b = {"host-b", 22};
	struct kr_claim ca[2], cb[2];
	struct kr_delivery_counts k;
	struct kr_err err = {0};
	int64_t r, q;
	size_t n = 0;
	char sql[160];

	open_ok(f);
	add_sub(f->s, "news", "one@example.jp", KR_SUB_ACTIVE);
	r = add_report(f->s, "news", "fence", false, &q);
	assert_int_equal(
	    kr_store_claim(f->s, &a, NOW, NOW + 60, 2, ca, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_true(ca[0].lease > 0);
	/* a stalls past its lease; b takes the row. */
	assert_int_equal(
	    kr_store_claim(f->s, &b, NOW + 61, NOW + 120, 2, cb, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_int_equal(cb[0].delivery_id, ca[0].delivery_id);
	assert_true(cb[0].lease != ca[0].lease);
	snprintf(sql, sizeof(sql),
	         "SELECT lease_inc FROM deliveries WHERE id = %lld"
	         " AND lease_host = 'host-b'",
	         (long long)cb[0].delivery_id);
	assert_int_equal(shell_int(f->db, sql), 22);
	/* a's late outcomes: none is recorded. */
	assert_int_equal(kr_store_mark_failed(f->s, ca[0].delivery_id,
	                                      ca[0].lease, NOW + 62, 550,
	                                      "550 late", &err),
	                 -1);
	assert_int_equal(err.code, KR_ERR_STALE);
	assert_int_equal(
	    kr_store_release(f->s, ca[0].delivery_id, ca[0].lease, &err), -1);
	assert_int_equal(err.code, KR_ERR_STALE);
	assert_int_equal(kr_store_delivery_counts(f->s, r, &k, &err), 0);
	assert_int_equal(k.failed, 0);
	assert_int_equal(k.queued, 1);
	/* b's stands, and a's after it changes nothing. */
	assert_int_equal(kr_store_mark_sent(f->s, cb[0].delivery_id,
	                                    cb[0].lease, NOW + 63, "250 ok",
	                                    &err),
	                 0);
	assert_int_equal(kr_store_mark_deferred(f->s, ca[0].delivery_id,
	                                        ca[0].lease, NOW + 64,
	                                        NOW + 900, 451, "451", &err),
	                 -1);
	assert_int_equal(err.code, KR_ERR_STALE);
	assert_int_equal(kr_store_mark_uncertain(f->s, ca[0].delivery_id,
	                                         ca[0].lease, NOW + 64, NULL,
	                                         &err),
	                 -1);
	assert_int_equal(kr_store_delivery_counts(f->s, r, &k, &err), 0);
	assert_int_equal(k.sent, 1);
	assert_int_equal(k.queued + k.deferred + k.uncertain + k.failed, 0);
}

/* A restart takes back at once the rows its host's previous run had
 * claimed; another host's, and its own run's, stay leased. */
static void
test_store_reclaim_own_host(void **state)
{
	struct fx *f = *state;
	const struct kr_store_owner run1 = {"host-a", 1}, run2 = {"host-a", 2},
	                            other = {"host-b", 7};
	struct kr_claim c[8];
	struct kr_err err = {0};
	int64_t q, got = -1;
	size_t n = 0;

	open_ok(f);
	add_sub(f->s, "news", "one@example.jp", KR_SUB_ACTIVE);
	add_sub(f->s, "news", "two@example.jp", KR_SUB_ACTIVE);
	add_sub(f->s, "news", "three@example.jp", KR_SUB_ACTIVE);
	(void)add_report(f->s, "news", "reclaim", false, &q);
	assert_int_equal(
	    kr_store_claim(f->s, &run1, NOW, NOW + 300, 2, c, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_int_equal(
	    kr_store_claim(f->s, &other, NOW, NOW + 300, 8, c, &n, &err), 0);
	assert_int_equal(n, 1);
	/* Nothing is due for anyone while the leases run. */
	assert_int_equal(
	    kr_store_claim(f->s, &run2, NOW + 1, NOW + 300, 8, c, &n, &err), 0);
	assert_int_equal(n, 0);
	assert_int_equal(kr_store_reclaim(f->s, &other, NOW + 1, &got, &err),
	                 0);
	assert_int_equal(got, 0); /* its own run holds its row */
	assert_int_equal(kr_store_reclaim(f->s, &run2, NOW + 1, &got, &err), 0);
	assert_int_equal(got, 2);
	assert_int_equal(
	    kr_store_claim(f->s, &run2, NOW + 1, NOW + 300, 8, c, &n, &err), 0);
	assert_int_equal(n, 2); /* at once, not at NOW + 300 */
	assert_int_equal(kr_store_reclaim(f->s, &run2, NOW + 2, &got, &err), 0);
	assert_int_equal(got, 0);
}

/* Many at once: new ids in order, 0 for an address there already or
 * earlier in the batch (in any ASCII case), quotes and backslashes kept. */
static void
test_store_import_many(void **state)
{
	struct fx *f = *state;
	struct kr_subscriber subs[5], got;
	struct kr_err err = {0};
	int64_t ids[5], old;
	const char *const emails[5] = {"a@example.jp", "old@example.jp",
	                               "\"q\\x\"@example.jp", "A@example.jp",
	                               "b@example.jp"};
	int i;

	open_ok(f);
	old = add_sub(f->s, "news", "Old@example.jp", KR_SUB_ACTIVE);
	memset(subs, 0, sizeof(subs));
	for (i = 0; i < 5; i++) {
		snprintf(subs[i].list_id, sizeof(subs[i].list_id), "news");
		snprintf(subs[i].email, sizeof(subs[i].email), "%s", emails[i]);
		snprintf(subs[i].name, sizeof(subs[i].name), "名前 %d", i);
		subs[i].status = i == 4 ? KR_SUB_PENDING : KR_SUB_ACTIVE;
		subs[i].created_at = NOW;
	}
	assert_int_equal(kr_store_begin(f->s, &err), 0);
	assert_int_equal(kr_store_subscriber_import_many(f->s, subs, 5, ids,
	                                                 &err),
	                 0);
	assert_int_equal(kr_store_commit(f->s, &err), 0);
	assert_true(ids[0] > old);
	assert_int_equal(ids[1], 0); /* Old@ was there */
	assert_true(ids[2] > ids[0]);
	assert_int_equal(ids[3], 0); /* A@ is a@ */
	assert_true(ids[4] > ids[2]);
	assert_int_equal(kr_store_subscriber_get(f->s, ids[2], &got, &err), 1);
	assert_string_equal(got.email, emails[2]);
	assert_string_equal(got.name, "名前 2");
	assert_int_equal(kr_store_subscriber_get(f->s, ids[4], &got, &err), 1);
	assert_int_equal(got.status, KR_SUB_PENDING);
	assert_int_equal(got.created_at, NOW);
	assert_int_equal(kr_store_subscriber_import_many(f->s, subs, 0, ids,
	                                                 &err),
	                 0);
}

/* ---- PostgreSQL only ---- */

/* The backend, the schema version in kairan_schema, and a second open
 * (another host starting) that finds nothing to migrate. */
static void
test_pg_open_creates_current_schema(void **state)
{
	struct fx *f = *state;
	struct kr_store *other = NULL;
	struct kr_err err = {0};

	open_ok(f);
	assert_string_equal(kr_store_backend(f->s), "postgresql");
	assert_int_equal(kr_store_ping(f->s, &err), 0);
	assert_int_equal(shell_int(f->db, "SELECT version FROM kairan_schema"),
	                 kr_store_schema_version());
	assert_int_equal(kr_store_open(f->db, pw(f->db), &other, &err), 0);
	kr_store_close(&other);
	assert_int_equal(shell_int(f->db, "SELECT count(*) FROM kairan_schema"),
	                 1);
	/* several hosts share the database: no daemon lock to take */
	assert_int_equal(kr_store_lock_daemon(f->s, &err), 0);
	/* backups are pg_dump's: refused with the way to do it */
	assert_int_equal(kr_store_backup(f->s, "/tmp/x.db", &err), -1);
	assert_non_null(strstr(err.msg, "pg_dump"));
}

static void
test_pg_refuses_newer_and_foreign(void **state)
{
	struct fx *f = *state;
	struct kr_err err = {0};
	char uri[200];

	open_ok(f);
	kr_store_close(&f->s);
	assert_int_equal(shell_sql(f->db, "UPDATE kairan_schema SET version "
	                                  "= 99"),
	                 0);
	assert_int_equal(kr_store_open(f->db, pw(f->db), &f->s, &err), -1);
	assert_non_null(strstr(err.msg, "schema version 99 is newer"));
	assert_int_equal(shell_int(f->db, "SELECT version FROM kairan_schema"),
	                 99);
	/* a database with tables of someone else's: left alone */
	assert_int_equal(shell_sql(f->db, "DROP TABLE kairan_schema"), 0);
	assert_int_equal(kr_store_open(f->db, pw(f->db), &f->s, &err), -1);
	assert_non_null(strstr(err.msg, "not kairan's"));
	/* a database that does not exist: an error naming it */
	snprintf(uri, sizeof(uri), "%s/no_such_db", pg_base);
	assert_int_equal(kr_store_open(uri, pg_pwfile, &f->s, &err), -1);
	assert_int_equal(err.code, KR_ERR_DB);
	assert_non_null(strstr(err.msg, "no_such_db"));
}

/* A refused password: a clear error that never shows it. */
static void
test_pg_wrong_password(void **state)
{
	struct fx *f = *state;
	struct kr_err err = {0};
	char path[128];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/pw", f->dir);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fputs("not-the-Secret-4711\n", fp);
	fclose(fp);
	assert_int_equal(chmod(path, 0600), 0);
	assert_int_equal(kr_store_open(f->db, path, &f->s, &err), -1);
	assert_null(f->s);
	assert_non_null(strstr(err.msg, "password authentication failed"));
	assert_non_null(strstr(err.msg, f->pgname));
	assert_null(strstr(err.msg, "Secret-4711"));
	/* a password file others may read is refused before connecting */
	assert_int_equal(chmod(path, 0644), 0);
	assert_int_equal(kr_store_open(f->db, path, &f->s, &err), -1);
	assert_non_null(strstr(err.msg, "chmod"));
}

/* Two hosts claiming at the same moment: the second passes over the rows
 * the first holds locked (SKIP LOCKED), neither waits, no row is given
 * twice. */
static void
test_pg_claims_skip_locked(void **state)
{
	struct fx *f = *state;
	const struct kr_store_owner a = {"host-a", 1}, b = {"host-b", 2};
	struct kr_store *other = NULL;
	struct kr_claim ca[4], cb[8];
	struct kr_err err = {0};
	char email[64];
	size_t na = 0, nb = 0, i, j;
	int64_t q;
	int k;

	open_ok(f);
	for (k = 0; k < 6; k++) {
		snprintf(email, sizeof(email), "u%d@example.jp", k);
		add_sub(f->s, "news", email, KR_SUB_ACTIVE);
	}
	(void)add_report(f->s, "news", "skip", false, &q);
	assert_int_equal(q, 6);
	assert_int_equal(kr_store_open(f->db, pw(f->db), &other, &err), 0);
	assert_int_equal(kr_store_begin(f->s, &err), 0);
	assert_int_equal(kr_store_claim(f->s, &a, NOW, NOW + 60, 4, ca, &na,
	                                &err),
	                 0);
	assert_int_equal(na, 4);
	/* a has not committed: its rows are locked, not yet leased */
	assert_int_equal(kr_store_claim(other, &b, NOW, NOW + 60, 8, cb, &nb,
	                                &err),
	                 0);
	assert_int_equal(nb, 2);
	for (i = 0; i < na; i++)
		for (j = 0; j < nb; j++)
			assert_true(ca[i].delivery_id != cb[j].delivery_id);
	assert_int_equal(kr_store_commit(f->s, &err), 0);
	assert_int_equal(kr_store_claim(other, &b, NOW, NOW + 60, 8, cb, &nb,
	                                &err),
	                 0);
	assert_int_equal(nb, 0);
	kr_store_close(&other);
}

struct mig {
	const char *where;
	int r;
	char msg[256];
};

static void *
mig_open(void *arg)
{
	struct mig *m = arg;
	struct kr_store *s = NULL;
	struct kr_err err = {0};

	m->r = kr_store_open(m->where, pw(m->where), &s, &err);
	snprintf(m->msg, sizeof(m->msg), "%s", err.msg);
	kr_store_close(&s);
	return NULL;
}

/* Hosts starting together on an empty database: it is migrated once
 * (the steps are taken under an advisory lock), and every host opens. */
static void
test_pg_migrate_concurrently(void **state)
{
	struct fx *f = *state;
	struct mig m[4];
	pthread_t t[4];
	int i;

	for (i = 0; i < 4; i++) {
		m[i].where = f->db;
		assert_int_equal(pthread_create(&t[i], NULL, mig_open, &m[i]),
		                 0);
	}
	for (i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		if (m[i].r != 0)
			fail_msg("open %d: %s", i, m[i].msg);
	}
	assert_int_equal(shell_int(f->db, "SELECT version FROM kairan_schema"),
	                 kr_store_schema_version());
	assert_int_equal(shell_int(f->db, "SELECT count(*) FROM pg_indexes"
	                                  " WHERE indexname ="
	                                  " 'deliveries_queued'"),
	                 1);
}

/* Two hosts signing the same address up at once (in another letter
 * case): one subscription. */
static void
test_pg_subscribe_race(void **state)
{
	struct fx *f = *state;
	struct kr_store *other = NULL;
	struct kr_consent form = {"form", "192.0.2.1", "test"};
	struct kr_sub_result r1, r2;
	struct kr_err err = {0};

	open_ok(f);
	assert_int_equal(kr_store_open(f->db, pw(f->db), &other, &err), 0);
	assert_int_equal(kr_store_begin(f->s, &err), 0);
	assert_int_equal(kr_store_subscribe(f->s, "news", "Taro@example.jp",
	                                    NULL, &form, true, NOW, &r1, &err),
	                 0);
	assert_int_equal(kr_store_commit(f->s, &err), 0);
	assert_int_equal(kr_store_subscribe(other, "news", "taro@example.jp",
	                                    NULL, &form, true, NOW, &r2, &err),
	                 0);
	assert_false(r2.is_new);
	assert_int_equal(r2.id, r1.id);
	assert_int_equal(shell_int(f->db, "SELECT count(*) FROM subscribers"),
	                 1);
	kr_store_close(&other);
}

struct add_arg {
	struct kr_store *s;
	int r;
	enum kr_err_code code;
	int64_t id;
};

static void *
add_same(void *arg)
{
	struct add_arg *a = arg;
	struct kr_report_row r = {0};
	struct kr_err err = {0};
	int64_t q = 0;

	snprintf(r.list_id, sizeof(r.list_id), "news");
	r.subject = (char *)(uintptr_t) "同じ号";
	r.text = (char *)(uintptr_t) "text";
	r.html = (char *)(uintptr_t) "<p>html</p>";
	snprintf(r.hash, sizeof(r.hash), "same-hash");
	a->r = kr_store_report_add(a->s, &r, false, NOW, &a->id, &q, &err);
	a->code = err.code;
	return NULL;
}

/* Two hosts taking the same report at the same moment (the outbox of
 * each, or `send` on both): the second waits for the first's intake and
 * is told it is there already; one report, queued once. */
static void
test_pg_report_intake_once(void **state)
{
	struct fx *f = *state;
	struct kr_store *other = NULL;
	struct kr_err err = {0};
	struct add_arg a1 = {0}, a2 = {0};
	pthread_t t;
	int64_t q;

	open_ok(f);
	add_sub(f->s, "news", "one@example.jp", KR_SUB_ACTIVE);
	assert_int_equal(kr_store_open(f->db, pw(f->db), &other, &err), 0);
	assert_int_equal(kr_store_begin(f->s, &err), 0);
	a1.s = f->s;
	(void)add_same(&a1);
	assert_int_equal(a1.r, 0);
	a2.s = other;
	assert_int_equal(pthread_create(&t, NULL, add_same, &a2), 0);
	usleep(300000); /* it waits on the intake lock meanwhile */
	assert_int_equal(kr_store_commit(f->s, &err), 0);
	pthread_join(t, NULL);
	assert_int_equal(a2.r, -1);
	assert_int_equal(a2.code, KR_ERR_EXISTS);
	assert_int_equal(a2.id, a1.id);
	assert_int_equal(shell_int(f->db, "SELECT count(*) FROM reports"), 1);
	assert_int_equal(shell_int(f->db, "SELECT count(*) FROM deliveries"), 1);
	(void)q;
	kr_store_close(&other);
}

/* Connection slots shared by the hosts: cap of them per key, held by a
 * connection until given back or until it closes. */
static void
test_pg_connection_slots(void **state)
{
	struct fx *f = *state;
	struct kr_store *other = NULL;
	struct kr_err err = {0};
	int s1 = -1, s2 = -1, s3 = -1, i, r = 0;

	open_ok(f);
	assert_int_equal(kr_store_open(f->db, pw(f->db), &other, &err), 0);
	assert_int_equal(kr_store_slot_take(f->s, "example.jp", 2, &s1, &err),
	                 1);
	assert_int_equal(kr_store_slot_take(other, "example.jp", 2, &s2, &err),
	                 1);
	assert_true(s1 != s2);
	assert_int_equal(kr_store_slot_take(other, "example.jp", 2, &s3, &err),
	                 0); /* both held */
	assert_int_equal(kr_store_slot_take(other, "example.org", 2, &s3, &err),
	                 1); /* another key */
	assert_int_equal(kr_store_slot_give(f->s, "example.jp", s1, &err), 0);
	assert_int_equal(kr_store_slot_take(other, "example.jp", 2, &s3, &err),
	                 1);
	assert_int_equal(s3, s1);
	/* a host that goes away frees what it held (once its server
	 * process has ended: a moment after the connection closes) */
	kr_store_close(&other);
	for (i = 0; i < 200; i++) {
		r = kr_store_slot_take(f->s, "example.jp", 2, &s1, &err);
		if (r != 0)
			break;
		usleep(10000);
	}
	assert_int_equal(r, 1);
	assert_int_equal(kr_store_slot_take(f->s, "example.jp", 2, &s2, &err),
	                 1);
}

/* One host per SQLite file: its own count is exact, the store grants. */
static void
test_store_slots_one_host(void **state)
{
	struct fx *f = *state;
	struct kr_err err = {0};
	int s1 = -1;

	open_ok(f);
	assert_false(kr_store_rates_shared(f->s));
	assert_int_equal(kr_store_slot_take(f->s, "example.jp", 1, &s1, &err),
	                 1);
	assert_int_equal(kr_store_slot_take(f->s, "example.jp", 1, &s1, &err),
	                 1);
	assert_int_equal(kr_store_slot_give(f->s, "example.jp", s1, &err), 0);
}

/* ---- schema v11's counters ---- */

/* Rows where a counter and a count of the rows disagree (0: none), over
 * the three counters; SQL both backends take. */
static long long
tally_drift(const char *db)
{
	/* A and B: (A EXCEPT B) and (B EXCEPT A) both empty */
#define DRIFT(a, b)                                                           \
	"SELECT (SELECT count(*) FROM (" a " EXCEPT " b ") AS x) +"           \
	" (SELECT count(*) FROM (" b " EXCEPT " a ") AS y)"
#define QUARTERS                                                              \
	"SELECT l, q, sum(su), sum(un) FROM (SELECT list_id AS l,"            \
	" consent_at / 900 AS q, 1 AS su, 0 AS un FROM subscribers"           \
	" UNION ALL SELECT list_id, unsubscribed_at / 900, 0, 1"              \
	" FROM subscribers WHERE unsubscribed_at > 0) AS z GROUP BY 1, 2"
	long long n;

	n = shell_int(db, DRIFT("SELECT coalesce(report_id, 0), state,"
	                        " count(*) FROM deliveries GROUP BY 1, 2",
	                        "SELECT report_id, state, sum(n) FROM"
	                        " delivery_tally GROUP BY 1, 2 HAVING"
	                        " sum(n) <> 0"));
	n += shell_int(db, DRIFT("SELECT list_id, status, count(*) FROM"
	                         " subscribers GROUP BY 1, 2",
	                         "SELECT list_id, status, n FROM"
	                         " subscriber_tally WHERE n <> 0"));
	n += shell_int(db, DRIFT(QUARTERS,
	                         "SELECT list_id, q, signups, unsubs FROM"
	                         " subscriber_quarters WHERE signups <> 0"
	                         " OR unsubs <> 0"));
	if (is_pg(db))
		return n; /* the two below are SQLite's alone */
	n += shell_int(db, DRIFT("SELECT report_id, sent_at / 60, count(*)"
	                         " FROM deliveries WHERE state = 1 AND"
	                         " report_id IS NOT NULL GROUP BY 1, 2",
	                         "SELECT report_id, minute, sum(n) FROM"
	                         " report_minutes GROUP BY 1, 2 HAVING"
	                         " sum(n) <> 0"));
	n += shell_int(db, DRIFT("SELECT report_id, domain, state, count(*)"
	                         " FROM deliveries WHERE report_id IS NOT"
	                         " NULL GROUP BY 1, 2, 3",
	                         "SELECT report_id, domain, state, sum(n)"
	                         " FROM report_domains GROUP BY 1, 2, 3"
	                         " HAVING sum(n) <> 0"));
	return n;
#undef DRIFT
#undef QUARTERS
}

/* Every way a subscription or a copy changes, then the counters against
 * the rows: none drifts. */
static void
tally_workout(struct fx *f, int64_t *report_out)
{
	struct kr_consent form = {"form", "192.0.2.1", "Mozilla"};
	struct kr_sub_result res;
	struct kr_claim c[32];
	struct kr_err err = {0};
	int64_t r, r2, q, ids[12];
	size_t n = 0, i;
	char email[32];

	for (i = 0; i < 12; i++) {
		snprintf(email, sizeof(email), "t%zu@%s.jp", i,
		         i % 3 ? "a" : "b");
		ids[i] = add_sub(f->s, i < 10 ? "news" : "other", email,
		                 i == 9 ? KR_SUB_PENDING : KR_SUB_ACTIVE);
	}
	/* a form sign-up (a confirmation queued), confirmed */
	assert_int_equal(kr_store_subscribe(f->s, "news", "form@c.jp", NULL,
	                                    &form, true, NOW + 5, &res, &err),
	                 0);
	assert_int_equal(kr_store_subscriber_confirm(f->s, res.id, NOW + 9,
	                                             &err),
	                 1);
	r = add_report(f->s, "news", "tally1", false, &q);
	r2 = add_report(f->s, "news", "tally2", false, &q);
	assert_int_equal(kr_store_claim(f->s, &OWNER, NOW, NOW + 600, 32, c,
	                                &n, &err),
	                 0);
	assert_true(n > 8);
	for (i = 0; i < n; i++) {
		int64_t id = c[i].delivery_id, lease = c[i].lease;

		switch (i % 6) {
		case 0:
		case 1:
			assert_int_equal(kr_store_mark_sent(f->s, id, lease, NOW,
			                                    "250 ok", &err),
			                 0);
			break;
		case 2:
			assert_int_equal(kr_store_mark_deferred(
			                     f->s, id, lease, NOW, NOW + 60, 451,
			                     "451 later", &err),
			                 0);
			break;
		case 3:
			assert_int_equal(kr_store_mark_failed(f->s, id, lease,
			                                      NOW, 550, "550 no",
			                                      &err),
			                 0);
			break;
		case 4:
			assert_int_equal(kr_store_mark_uncertain(
			                     f->s, id, lease, NOW, NULL, &err),
			                 0);
			break;
		default:
			assert_int_equal(
			    kr_store_release(f->s, id, lease, &err), 0);
			break;
		}
	}
	assert_int_equal(kr_store_report_retry(f->s, r, true, &q, &err), 0);
	assert_int_equal(kr_store_report_set_state(f->s, r2,
	                                           KR_RS_CANCELLED, &err),
	                 0);
	/* leaving cancels the queued copies; a bounce limit too; removal
	 * takes the copies with it; a new consent moves the sign-up day */
	assert_int_equal(kr_store_subscriber_unsubscribe(f->s, ids[1], true, r,
	                                                 NOW + 3 * 86400, &err),
	                 1);
	assert_int_equal(kr_store_subscriber_bounce(f->s, ids[2], true, 1,
	                                            NOW + 100, "5.1.1", &err),
	                 1);
	assert_int_equal(kr_store_subscriber_delete(f->s, ids[4], &err), 0);
	assert_int_equal(kr_store_subscribe(f->s, "news", "t1@a.jp", NULL,
	                                    &form, false, NOW + 5 * 86400, &res,
	                                    &err),
	                 0);
	*report_out = r;
}

static void
test_store_tallies_agree(void **state)
{
	struct fx *f = *state;
	struct kr_delivery_counts k;
	struct kr_err err = {0};
	int64_t r, total = 0;

	open_ok(f);
	tally_workout(f, &r);
	assert_int_equal(kr_store_delivery_counts(f->s, 0, &k, &err), 0);
	total = k.queued + k.sent + k.deferred + k.failed + k.uncertain +
	        k.cancelled;
	assert_int_equal(total,
	                 shell_int(f->db, "SELECT count(*) FROM deliveries"));
	assert_int_equal(k.sent,
	                 shell_int(f->db, "SELECT count(*) FROM deliveries"
	                                  " WHERE state = 1"));
	assert_true(k.cancelled > 0);
	assert_int_equal(tally_drift(f->db), 0);
	/* a counter that drifted would show here: the check can fail */
	assert_int_equal(shell_sql(f->db, "UPDATE delivery_tally SET n = n + 1"
	                                  " WHERE state = 1;"),
	                 0);
	assert_true(tally_drift(f->db) > 0);
}

/* A database of schema v10 (v11's and v12's tables dropped) gets its
 * counters filled from its rows. */
static void
test_store_tallies_migrate(void **state)
{
	struct fx *f = *state;
	struct kr_delivery_counts k;
	struct kr_err err = {0};
	int64_t r, n = 0;

	open_ok(f);
	tally_workout(f, &r);
	kr_store_close(&f->s);
	assert_int_equal(
	    shell_sql(f->db,
	              "DROP TRIGGER delivery_tally_insert;"
	              " DROP TRIGGER delivery_tally_update;"
	              " DROP TRIGGER delivery_tally_delete;"
	              " DROP TRIGGER subscriber_tally_insert;"
	              " DROP TRIGGER subscriber_tally_update;"
	              " DROP TRIGGER subscriber_quarters_update;"
	              " DROP TRIGGER subscriber_tally_delete;"
	              " DROP TABLE delivery_tally; DROP TABLE subscriber_tally;"
	              " DROP TABLE subscriber_quarters;"
	              " DROP TABLE report_minutes; DROP TABLE report_domains;"
	              " CREATE INDEX deliveries_report_sent ON deliveries"
	              " (report_id, state, sent_at);"
	              " CREATE INDEX deliveries_report_domain ON deliveries"
	              " (report_id, domain, state);"
	              " DROP TABLE dkim_keys; PRAGMA user_version = 10;"),
	    0);
	open_ok(f);
	assert_int_equal(shell_int(f->db, "PRAGMA user_version"),
	                 kr_store_schema_version());
	assert_int_equal(tally_drift(f->db), 0);
	assert_int_equal(kr_store_delivery_counts(f->s, r, &k, &err), 0);
	assert_int_equal(k.sent, shell_int(f->db, "SELECT count(*) FROM"
	                                          " deliveries WHERE state = 1"
	                                          " AND report_id = 1"));
	assert_true(k.sent > 0);
	assert_int_equal(kr_store_subscriber_count(f->s, "news",
	                                           KR_SUB_ACTIVE, &n, &err),
	                 0);
	assert_int_equal(n, shell_int(f->db, "SELECT count(*) FROM subscribers"
	                                     " WHERE list_id = 'news'"
	                                     " AND status = 1"));
}

/* ---- DKIM keys (schema v12) and what /healthz names ---- */

static long long
dkim_rows(const char *db, const char *where)
{
	char sql[256];

	snprintf(sql, sizeof(sql), "SELECT count(*) FROM dkim_keys WHERE %s",
	         where);
	return shell_int(db, sql);
}

/* The first key recorded under a domain and selector is the one every
 * host must have; another selector or domain is another key (a rotation
 * on purpose); kr_store_dkim_replace makes a new key the one known, with
 * an event; all of it survives a reopen. */
static void
test_store_dkim_keys(void **state)
{
	struct fx *f = *state;
	struct kr_err err = {0};
	struct kr_store_dkim_key k;
	const char *fa = "aaaa0001", *fb = "bbbb0002";

	open_ok(f);
	assert_int_equal(dkim_rows(f->db, "1 = 1"), 0);
	/* first host: recorded */
	assert_int_equal(kr_store_dkim_check(f->s, "example.jp", "s1", fa,
	                                     "host-a", NOW, &k, &err),
	                 0);
	assert_int_equal(dkim_rows(f->db, "domain = 'example.jp' AND "
	                                  "selector = 's1' AND fingerprint = "
	                                  "'aaaa0001' AND host = 'host-a' AND "
	                                  "seen_at = 1000000"),
	                 1);
	/* a second host with the same key: fine, the record stays */
	assert_int_equal(kr_store_dkim_check(f->s, "example.jp", "s1", fa,
	                                     "host-b", NOW + 1, &k, &err),
	                 0);
	assert_string_equal(k.fingerprint, fa);
	assert_string_equal(k.host, "host-a");
	assert_int_equal(k.seen_at, NOW);
	/* a new selector, or the same selector of another domain: new keys */
	assert_int_equal(kr_store_dkim_check(f->s, "example.jp", "s2", fb,
	                                     "host-b", NOW, NULL, &err),
	                 0);
	assert_int_equal(kr_store_dkim_check(f->s, "example.org", "s1", fb,
	                                     "host-b", NOW, NULL, &err),
	                 0);
	assert_int_equal(dkim_rows(f->db, "1 = 1"), 3);
	/* another key under a known selector: refused, the record kept */
	memset(&k, 0, sizeof(k));
	assert_int_equal(kr_store_dkim_check(f->s, "example.jp", "s1", fb,
	                                     "host-c", NOW + 2, &k, &err),
	                 1);
	assert_string_equal(k.fingerprint, fa);
	assert_string_equal(k.host, "host-a");
	assert_int_equal(k.seen_at, NOW);
	assert_int_equal(kr_store_dkim_check(f->s, "example.jp", "s1", fb,
	                                     "host-c", NOW + 2, NULL, &err),
	                 1);
	assert_int_equal(dkim_rows(f->db, "selector = 's1' AND domain = "
	                                  "'example.jp' AND fingerprint = "
	                                  "'aaaa0001' AND host = 'host-a'"),
	                 1);

	/* the operator's replacement: the new key is the one known */
	memset(&k, 0, sizeof(k));
	assert_int_equal(kr_store_dkim_replace(f->s, "example.jp", "s1", fb,
	                                       "host-c", NOW + 5, &k, &err),
	                 1);
	assert_string_equal(k.fingerprint, fa);
	assert_string_equal(k.host, "host-a");
	assert_int_equal(kr_store_dkim_check(f->s, "example.jp", "s1", fb,
	                                     "host-b", NOW + 6, &k, &err),
	                 0);
	assert_int_equal(kr_store_dkim_check(f->s, "example.jp", "s1", fa,
	                                     "host-a", NOW + 6, &k, &err),
	                 1);
	assert_string_equal(k.fingerprint, fb);
	assert_string_equal(k.host, "host-c");
	assert_int_equal(k.seen_at, NOW + 5);
	/* the same key again, or one under a new selector: nothing replaced */
	assert_int_equal(kr_store_dkim_replace(f->s, "example.jp", "s1", fb,
	                                       "host-c", NOW + 7, &k, &err),
	                 0);
	assert_string_equal(k.fingerprint, fb);
	memset(&k, 0xff, sizeof(k));
	assert_int_equal(kr_store_dkim_replace(f->s, "example.jp", "s3", fa,
	                                       "host-c", NOW + 7, &k, &err),
	                 0);
	assert_string_equal(k.fingerprint, "");
	assert_int_equal(dkim_rows(f->db, "1 = 1"), 4);
	assert_int_equal(shell_int(f->db, "SELECT count(*) FROM events WHERE "
	                                  "kind = 'dkim-replaced'"),
	                 3);
	assert_int_equal(shell_int(f->db, "SELECT count(*) FROM events WHERE "
	                                  "kind = 'dkim-replaced' AND detail "
	                                  "= 'd=example.jp s=s1: key bbbb0002 "
	                                  "recorded by host-c (was "
	                                  "aaaa0001)'"),
	                 1);
	/* inside the caller's transaction: undone with it */
	assert_int_equal(kr_store_begin(f->s, &err), 0);
	assert_int_equal(kr_store_dkim_replace(f->s, "example.jp", "s1", fa,
	                                       "host-a", NOW + 8, &k, &err),
	                 1);
	kr_store_rollback(f->s);
	kr_store_close(&f->s);
	open_ok(f);
	assert_int_equal(kr_store_dkim_check(f->s, "example.jp", "s1", fb,
	                                     "host-a", NOW + 9, &k, &err),
	                 0);
	assert_int_equal(kr_store_dkim_check(f->s, "example.jp", "s1", fa,
	                                     "host-a", NOW + 9, &k, &err),
	                 1);
	assert_string_equal(k.host, "host-c");
}

/* kr_store_describe: which database and its schema as the database holds
 * it, never the user or password; on PostgreSQL the same name while the
 * connection is down (then without the schema). */
static void
test_store_describe(void **state)
{
	struct fx *f = *state;
	struct kr_err err = {0};
	char want[256], got[256], cmd[800], pwd[128] = "";
	const char *hostport;
	FILE *fp;
	int i, r = -1;

	open_ok(f);
	if (!is_pg(f->db)) {
		snprintf(want, sizeof(want), "sqlite %s, schema v%d", f->db,
		         kr_store_schema_version());
		assert_int_equal(
		    kr_store_describe(f->s, got, sizeof(got), &err), 0);
		assert_string_equal(got, want);
		/* the version as the file holds it now, not as this build
		 * writes it */
		assert_int_equal(shell_sql(f->db, "PRAGMA user_version = 99;"),
		                 0);
		assert_int_equal(
		    kr_store_describe(f->s, got, sizeof(got), &err), 0);
		snprintf(want, sizeof(want), "sqlite %s, schema v99", f->db);
		assert_string_equal(got, want);
		snprintf(cmd, sizeof(cmd), "PRAGMA user_version = %d;",
		         kr_store_schema_version());
		assert_int_equal(shell_sql(f->db, cmd), 0);
		return;
	}
	/* pg_base is postgresql://USER@HOST:PORT */
	hostport = strchr(pg_base, '@');
	assert_non_null(hostport);
	snprintf(want, sizeof(want), "postgresql %s/%s, schema v%d",
	         hostport + 1, f->pgname, kr_store_schema_version());
	assert_int_equal(kr_store_describe(f->s, got, sizeof(got), &err), 0);
	assert_string_equal(got, want);
	fp = fopen(pg_pwfile, "r");
	assert_non_null(fp);
	assert_non_null(fgets(pwd, sizeof(pwd), fp));
	fclose(fp);
	pwd[strcspn(pwd, "\n")] = '\0';
	assert_true(pwd[0] != '\0');
	assert_null(strstr(got, pwd));
	assert_null(strstr(got, "kairan@"));
	assert_int_equal(shell_sql(f->db, "UPDATE kairan_schema SET version "
	                                  "= 99;"),
	                 0);
	assert_int_equal(kr_store_describe(f->s, got, sizeof(got), &err), 0);
	assert_non_null(strstr(got, ", schema v99"));
	snprintf(cmd, sizeof(cmd), "UPDATE kairan_schema SET version = %d;",
	         kr_store_schema_version());
	assert_int_equal(shell_sql(f->db, cmd), 0);
	/* the server ends the connection: named the same, without the
	 * schema, until the store reconnects */
	snprintf(cmd, sizeof(cmd),
	         "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
	         " WHERE datname = '%s' AND pid <> pg_backend_pid();",
	         f->pgname);
	assert_int_equal(shell_sql(f->db, cmd), 0);
	assert_int_equal(kr_store_describe(f->s, got, sizeof(got), &err), -1);
	snprintf(want, sizeof(want), "postgresql %s/%s", hostport + 1,
	         f->pgname);
	assert_string_equal(got, want);
	assert_true(err.msg[0] != '\0');
	for (i = 0; i < 50 && r != 0; i++) {
		r = kr_store_describe(f->s, got, sizeof(got), &err);
		if (r != 0)
			usleep(100000);
	}
	assert_int_equal(r, 0);
	snprintf(want, sizeof(want), "postgresql %s/%s, schema v%d",
	         hostport + 1, f->pgname, kr_store_schema_version());
	assert_string_equal(got, want);
}

/* ---- the dashboard's reads (schema v10) ---- */

struct dash_rows {
	int64_t a[16][4];
	char text[16][64];
	size_t n;
};

static int
day_row(void *ctx, int64_t day, int64_t signups, int64_t unsubs)
{
	struct dash_rows *d = ctx;

	assert_true(d->n < 16);
	d->a[d->n][0] = day;
	d->a[d->n][1] = signups;
	d->a[d->n][2] = unsubs;
	d->n++;
	return 0;
}

static int
bucket_row(void *ctx, int64_t start, int64_t n)
{
	struct dash_rows *d = ctx;

	assert_true(d->n < 16);
	d->a[d->n][0] = start;
	d->a[d->n][1] = n;
	d->n++;
	return 0;
}

static int
domain_row(void *ctx, const char *domain, const struct kr_delivery_counts *c)
{
	struct dash_rows *d = ctx;

	assert_true(d->n < 16);
	snprintf(d->text[d->n], sizeof(d->text[0]), "%s", domain);
	d->a[d->n][0] = c->sent;
	d->a[d->n][1] = c->deferred;
	d->a[d->n][2] = c->failed;
	d->a[d->n][3] = c->queued + c->uncertain + c->cancelled;
	d->n++;
	return 0;
}

static int
reply_row(void *ctx, enum kr_delivery_state state, int code,
          const char *reply, int64_t n)
{
	struct dash_rows *d = ctx;

	assert_true(d->n < 16);
	snprintf(d->text[d->n], sizeof(d->text[0]), "%s", reply);
	d->a[d->n][0] = state;
	d->a[d->n][1] = code;
	d->a[d->n][2] = n;
	d->n++;
	return 0;
}

static int
stop_row(void *ctx, int64_t a, int64_t b)
{
	(void)ctx;
	(void)a;
	(void)b;
	return 7;
}

#define DAY 86400
/* A day boundary of UTC+9, well after NOW. */
#define D0 (20000 * DAY - 9 * 3600)

static void
test_store_dashboard_reads(void **state)
{
	struct fx *f = *state;
	struct kr_subscriber sub = {0};
	struct kr_claim c[16];
	struct dash_rows d;
	struct kr_err err = {0};
	bool added;
	int64_t r, q, first = 0;
	size_t n = 0, i;
	char email[64];

	open_ok(f);
	/* news: 3 sign-ups on day 0, 2 on day 2 (one of them later gone),
	 * 1 before the window; other: 1 on day 0. */
	snprintf(sub.consent_source, sizeof(sub.consent_source), "form");
	sub.status = KR_SUB_ACTIVE;
	for (i = 0; i < 7; i++) {
		static const int64_t at[7] = {
		    D0 - 5 * DAY, D0 + 10, D0 + 3600, D0 + DAY - 1,
		    D0 + 2 * DAY, D0 + 2 * DAY + 5, D0 + 30};
		static const char *const dom[7] = {
		    "old.jp", "a.jp", "a.jp", "b.jp", "a.jp", "c.jp", "a.jp"};

		snprintf(sub.list_id, sizeof(sub.list_id), "%s",
		         i == 6 ? "other" : "news");
		snprintf(sub.email, sizeof(sub.email), "u%zu@%s", i, dom[i]);
		sub.created_at = sub.consent_at = at[i];
		assert_int_equal(
		    kr_store_subscriber_import(f->s, &sub, &added, &err), 0);
		if (i == 5)
			assert_int_equal(kr_store_subscriber_find(
			                     f->s, "news", sub.email, &sub, &err),
			                 1);
	}
	/* u5 unsubscribes on day 3 (not from all lists) */
	assert_int_equal(kr_store_subscriber_unsubscribe(
	                     f->s, sub.id, false, 0, D0 + 3 * DAY + 7, &err),
	                 1);
	memset(&d, 0, sizeof(d));
	assert_int_equal(kr_store_subscriber_days(f->s, "news", D0 + 100,
	                                          9 * 3600, day_row, &d, &err),
	                 0);
	assert_int_equal(d.n, 3);
	assert_int_equal(d.a[0][0], D0);
	assert_int_equal(d.a[0][1], 3);
	assert_int_equal(d.a[0][2], 0);
	assert_int_equal(d.a[1][0], D0 + 2 * DAY);
	assert_int_equal(d.a[1][1], 2);
	assert_int_equal(d.a[2][0], D0 + 3 * DAY);
	assert_int_equal(d.a[2][1], 0);
	assert_int_equal(d.a[2][2], 1);
	/* UTC days: D0 + DAY - 1 is on the next one there */
	memset(&d, 0, sizeof(d));
	assert_int_equal(kr_store_subscriber_days(f->s, "news", D0 - DAY, 0,
	                                          day_row, &d, &err),
	                 0);
	assert_true(d.n >= 2);
	assert_int_equal(d.a[0][0], D0 - 15 * 3600);
	assert_int_equal(d.a[0][1], 2); /* D0 + 10, D0 + 3600 */
	assert_int_equal(d.a[1][0], D0 + 9 * 3600);
	assert_int_equal(d.a[1][1], 1);

	/* A report to the 5 active subscribers of news: sent at three
	 * times, one deferred, one failed. */
	r = add_report(f->s, "news", "dash", false, &q);
	assert_int_equal(q, 5);
	assert_int_equal(kr_store_claim(f->s, &OWNER, NOW, NOW + 600, 16, c,
	                                &n, &err),
	                 0);
	assert_int_equal(n, 5);
	for (i = 0; i < n; i++) {
		int64_t lease = c[i].lease, id = c[i].delivery_id;

		if (strcmp(c[i].email, "u3@b.jp") == 0) {
			assert_int_equal(kr_store_mark_deferred(
			                     f->s, id, lease, NOW, NOW + 300, 421,
			                     "421 4.7.0 try again later", &err),
			                 0);
		} else if (strcmp(c[i].email, "u0@old.jp") == 0) {
			assert_int_equal(kr_store_mark_failed(
			                     f->s, id, lease, NOW, 550,
			                     "550 5.1.1 no such user", &err),
			                 0);
		} else {
			/* two in the first minute, one two minutes on */
			int64_t at = first < 2 ? NOW + 60 * 10 + (int64_t)first
			                       : NOW + 60 * 12 + 59;

			first++;
			assert_int_equal(kr_store_mark_sent(f->s, id, lease, at,
			                                    "250 ok", &err),
			                 0);
		}
	}
	memset(&d, 0, sizeof(d));
	assert_int_equal(kr_store_report_sent_series(f->s, r, 60, 0, bucket_row,
	                                             &d, &err),
	                 0);
	assert_int_equal(d.n, 2);
	assert_int_equal(d.a[0][0], (NOW + 600) / 60 * 60);
	assert_int_equal(d.a[0][1], 2);
	assert_int_equal(d.a[1][0], (NOW + 779) / 60 * 60);
	assert_int_equal(d.a[1][1], 1);
	assert_int_equal(kr_store_report_sent_series(f->s, r, 60, 0, stop_row,
	                                             NULL, &err),
	                 7);
	assert_int_equal(
	    kr_store_report_sent_series(f->s, r, 0, 0, bucket_row, &d, &err),
	    -1);
	/* since: from the counters (whole minutes) and from the rows */
	memset(&d, 0, sizeof(d));
	assert_int_equal(kr_store_report_sent_series(f->s, r, 60,
	                                             (NOW + 779) / 60 * 60,
	                                             bucket_row, &d, &err),
	                 0);
	assert_int_equal(d.n, 1);
	assert_int_equal(d.a[0][0], (NOW + 779) / 60 * 60);
	assert_int_equal(d.a[0][1], 1);
	memset(&d, 0, sizeof(d));
	assert_int_equal(kr_store_report_sent_series(f->s, r, 30, NOW + 601,
	                                             bucket_row, &d, &err),
	                 0);
	assert_int_equal(d.n, 2);
	assert_int_equal(d.a[0][0], (NOW + 601) / 30 * 30);
	assert_int_equal(d.a[0][1], 1);
	assert_int_equal(d.a[1][0], (NOW + 779) / 30 * 30);
	memset(&d, 0, sizeof(d));
	assert_int_equal(kr_store_report_sent_series(f->s, r, 3600, 0,
	                                             bucket_row, &d, &err),
	                 0);
	assert_true(d.n >= 1);
	assert_int_equal(d.a[0][0], (NOW + 600) / 3600 * 3600);
	assert_int_equal(d.a[0][1] + (d.n > 1 ? d.a[1][1] : 0), 3);

	memset(&d, 0, sizeof(d));
	assert_int_equal(
	    kr_store_report_domains(f->s, r, 2, domain_row, &d, &err), 0);
	assert_int_equal(d.n, 2);
	assert_string_equal(d.text[0], "a.jp"); /* u1 u2 u4 */
	assert_int_equal(d.a[0][0], 3);
	assert_string_equal(d.text[1], "b.jp"); /* ties: domain order */
	assert_int_equal(d.a[1][0], 0);
	assert_int_equal(d.a[1][1], 1);
	memset(&d, 0, sizeof(d));
	assert_int_equal(
	    kr_store_report_domains(f->s, r, 0, domain_row, &d, &err), 0);
	assert_int_equal(d.n, 3);
	assert_string_equal(d.text[2], "old.jp");
	assert_int_equal(d.a[2][2], 1);

	memset(&d, 0, sizeof(d));
	assert_int_equal(
	    kr_store_report_replies(f->s, r, 0, reply_row, &d, &err), 0);
	assert_int_equal(d.n, 2);
	assert_int_equal(d.a[0][0], KR_DS_DEFERRED); /* ties: state order */
	assert_int_equal(d.a[0][1], 421);
	assert_string_equal(d.text[0], "421 4.7.0 try again later");
	assert_int_equal(d.a[0][2], 1);
	assert_int_equal(d.a[1][0], KR_DS_FAILED);
	assert_string_equal(d.text[1], "550 5.1.1 no such user");
	memset(&d, 0, sizeof(d));
	assert_int_equal(
	    kr_store_report_replies(f->s, r, 1, reply_row, &d, &err), 0);
	assert_int_equal(d.n, 1);
	(void)email;
}

/* What the v10 indexes are for: each read is served by its index, not a
 * scan of the table (the plans SQLite picks; at 10,000,000 deliveries a
 * table scan takes seconds). */
static void
test_store_dashboard_plans(void **state)
{
	static const char *const q[][2] = {
	    {"SELECT (consent_at + 0) / 86400, count(*) FROM subscribers"
	     " WHERE list_id = 'x' AND consent_at >= 5 GROUP BY 1",
	     "COVERING INDEX subscribers_list_consent"},
	    {"SELECT count(*) FROM subscribers WHERE list_id = 'x'"
	     " AND unsubscribed_at > 0 AND unsubscribed_at >= 5",
	     "COVERING INDEX subscribers_list_unsub"},
	    /* schema v11: the counters, read by their primary keys */
	    {"SELECT minute * 60 / 60 * 60 AS t, sum(n) FROM report_minutes"
	     " WHERE report_id = 1 AND minute >= 5 GROUP BY t",
	     "SEARCH report_minutes USING PRIMARY KEY (report_id=? AND"
	     " minute>?)"},
	    {"SELECT domain, sum(n) AS t FROM report_domains"
	     " WHERE report_id = 1 GROUP BY domain ORDER BY t DESC LIMIT 10",
	     "SEARCH report_domains USING PRIMARY KEY (report_id=?)"},
	    /* schema v11: the in-flight copies beside the counters */
	    {"SELECT count(*) FROM deliveries d WHERE d.report_id IS"
	     " nullif(1, 0) AND d.state = 0 AND d.lease_until >= 5",
	     "COVERING INDEX deliveries_report (report_id=? AND state=? AND"
	     " lease_until>?)"},
	};
	struct fx *f = *state;
	char cmd[1024], line[256], all[2048];
	size_t i;
	FILE *p;

	open_ok(f);
	kr_store_close(&f->s);
	for (i = 0; i < KR_NELEM(q); i++) {
		snprintf(cmd, sizeof(cmd),
		         "sqlite3 '%s' \"EXPLAIN QUERY PLAN %s\"", f->db,
		         q[i][0]);
		p = popen(cmd, "r");
		assert_non_null(p);
		all[0] = '\0';
		while (fgets(line, sizeof(line), p) != NULL)
			strncat(all, line, sizeof(all) - strlen(all) - 1);
		assert_int_equal(pclose(p), 0);
		if (strstr(all, q[i][1]) == NULL)
			fail_msg("%s: plan %s", q[i][0], all);
	}
}

/* A backend without the dashboard's reads: the front says so. */
static int
bare_open(const char *where, const char *password_file,
          struct kr_store_be **out, struct kr_err *err)
{
	(void)where;
	(void)password_file;
	(void)err;
	*out = (struct kr_store_be *)(uintptr_t)1;
	return 0;
}

static void
bare_close(struct kr_store_be **s)
{
	*s = NULL;
}

static const struct kr_store_ops bare_ops = {
    .name = "bare", .open = bare_open, .close = bare_close};

static void
test_store_dashboard_unsupported(void **state)
{
	struct kr_store *s = NULL;
	struct kr_err err = {0};
	struct dash_rows d = {0};

	(void)state;
	kr_store_add_backend("bare:", &bare_ops);
	assert_int_equal(kr_store_open("bare:x", NULL, &s, &err), 0);
	assert_int_equal(kr_store_subscriber_days(s, "l", 0, 0, day_row, &d,
	                                          &err),
	                 -1);
	assert_int_equal(err.code, KR_ERR_INVALID);
	assert_non_null(strstr(err.msg, "not supported"));
	assert_int_equal(
	    kr_store_report_sent_series(s, 1, 60, 0, bucket_row, &d, &err), -1);
	assert_int_equal(
	    kr_store_report_domains(s, 1, 10, domain_row, &d, &err), -1);
	assert_int_equal(
	    kr_store_report_replies(s, 1, 10, reply_row, &d, &err), -1);
	assert_int_equal(d.n, 0);
	kr_store_close(&s);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
#define P(fn) cmocka_unit_test_setup_teardown(fn, setup_pg, teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_store_open_creates_current_schema),
	    T(test_store_outcomes_fenced),
	    T(test_store_reclaim_own_host),
	    T(test_store_migrates_v1_in_place),
	    T(test_store_ids_never_reused),
	    T(test_store_unwritable_shm_refused),
	    T(test_store_email_case_insensitive),
	    T(test_store_migrates_v3_case_duplicates),
	    T(test_store_v4_waits_for_operator),
	    T(test_store_refuses_not_sqlite),
	    T(test_store_refuses_newer_schema),
	    T(test_store_refuses_foreign_sqlite),
	    T(test_store_subscribe_state_machine),
	    T(test_store_import_and_lists),
	    T(test_store_import_many),
	    T(test_store_slots_one_host),
	    T(test_store_foreach),
	    T(test_store_report_dedupe_and_unique_key),
	    T(test_store_claim_order_and_lease),
	    T(test_store_mark_outcomes_and_counts),
	    T(test_store_unsubscribe_cancels_queue),
	    T(test_store_pause_resume_cancel),
	    T(test_store_send_at_and_backup),
	    T(test_store_busy_and_nested_failure),
	    T(test_store_claim_retries_before_new_rows),
	    T(test_store_checkpoint),
	    T(test_store_data_version),
	    T(test_store_dashboard_reads),
	    T(test_store_dashboard_plans),
	    T(test_store_tallies_agree),
	    T(test_store_tallies_migrate),
	    T(test_store_dashboard_unsupported),
	    T(test_store_dkim_keys),
	    T(test_store_describe),
	};
	/* The conformance suite: what every backend must do alike. */
	const struct CMUnitTest pg_tests[] = {
	    P(test_pg_open_creates_current_schema),
	    P(test_pg_refuses_newer_and_foreign),
	    P(test_pg_wrong_password),
	    P(test_pg_claims_skip_locked),
	    P(test_pg_migrate_concurrently),
	    P(test_pg_subscribe_race),
	    P(test_pg_report_intake_once),
	    P(test_pg_connection_slots),
	    P(test_store_outcomes_fenced),
	    P(test_store_reclaim_own_host),
	    P(test_store_ids_never_reused),
	    P(test_store_email_case_insensitive),
	    P(test_store_subscribe_state_machine),
	    P(test_store_import_and_lists),
	    P(test_store_import_many),
	    P(test_store_foreach),
	    P(test_store_report_dedupe_and_unique_key),
	    P(test_store_claim_order_and_lease),
	    P(test_store_mark_outcomes_and_counts),
	    P(test_store_unsubscribe_cancels_queue),
	    P(test_store_pause_resume_cancel),
	    P(test_store_claim_retries_before_new_rows),
	    P(test_store_data_version),
	    P(test_store_dashboard_reads),
	    P(test_store_tallies_agree),
	    P(test_store_dkim_keys),
	    P(test_store_describe),
	};
	int r;

	r = cmocka_run_group_tests_name("store", tests, NULL, NULL);
	pg_base = getenv("KAIRAN_TEST_PG");
	pg_pwfile = getenv("KAIRAN_TEST_PG_PASSWORD_FILE");
	if (pg_base == NULL || pg_base[0] == '\0' || pg_pwfile == NULL) {
		/* tests/run_tests.sh always starts one (make deps installs
		 * PostgreSQL): run by hand without, say so */
		fprintf(stderr, "test_store: KAIRAN_TEST_PG unset: the "
		                "PostgreSQL suite did not run\n");
		return r;
	}
	return r | cmocka_run_group_tests_name("store-postgresql", pg_tests,
	                                       NULL, NULL);
}
