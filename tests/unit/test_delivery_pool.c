/* test_delivery_pool.c — the worker pool's bookkeeping, against an
 * in-memory store backend (store_backend.h: the front sends "fake:" to
 * it), and a composer and transport defined here (the linker takes these
 * instead of libkairan.a's, since they resolve every symbol delivery.o
 * needs of them). What it checks is what the real store cannot show
 * cheaply: every row ends marked exactly once, temporary failures come back
 * on the retry schedule, a stop leaves no claimed row behind, and a
 * per-domain connection cap holds under four workers. The real thing (SQLite,
 * SMTP) is covered by tests/integration/test_daemon.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "compose.h"
#include "config.h"
#include "delivery.h"
#include "err.h"
#include "store.h"
#include "store_backend.h"
#include "transport.h"
#include "xmem.h"

/* ---- the fake store ---- */

enum { ROW_QUEUED, ROW_SENT, ROW_DEFERRED, ROW_FAILED, ROW_UNCERTAIN };

struct row {
	int state;
	int64_t lease_until, next_attempt;
	int attempts;
	int marks; /* outcome records: must end at exactly 1 for sent */
	char email[64];
};

struct kr_store_be {
	int unused;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct row *rows;
static size_t n_rows;
static struct kr_store_be the_store;
static int fake_temp_once; /* "temp*" rows answer 451 on the first try */
static int fake_delay_us;  /* per message */
static int domain_now, domain_max; /* sessions holding capped.example */
static _Atomic int fake_down; /* every session fails: relay unreachable */
static int fake_sessions;

static int
fake_open(const char *path, const char *password_file,
    struct kr_store_be **s, struct kr_err *err)
{
	(void)path;
	(void)password_file;
	(void)err;
	*s = &the_store;
	return 0;
}

static void
fake_close(struct kr_store_be **s)
{
	*s = NULL;
}

static int
fake_claim(struct kr_store_be *s, const struct kr_store_owner *owner,
    int64_t now, int64_t lease_until,
    size_t max, struct kr_claim *out, size_t *n_out, struct kr_err *err)
{
	size_t i, n = 0;

	(void)s, (void)owner;
	(void)err;
	pthread_mutex_lock(&mu);
	for (i = 0; i < n_rows && n < max; i++) {
		struct row *r = &rows[i];

		if (r->state != ROW_QUEUED && r->state != ROW_DEFERRED)
			continue;
		if (r->next_attempt > now || r->lease_until > now)
			continue;
		r->lease_until = lease_until;
		memset(&out[n], 0, sizeof(out[n]));
		out[n].delivery_id = (int64_t)i + 1;
		out[n].kind = KR_DELIVERY_REPORT;
		out[n].report_id = 1;
		out[n].subscriber_id = (int64_t)i + 1;
		snprintf(out[n].list_id, sizeof(out[n].list_id), "l");
		snprintf(out[n].email, sizeof(out[n].email), "%s", r->email);
		out[n].attempts = r->attempts;
		out[n].queued_at = now;
		n++;
	}
	pthread_mutex_unlock(&mu);
	*n_out = n;
	return 0;
}

/* cmocka's asserts may only run on the main thread; the fakes run on
 * the workers, so they abort instead. */
#define CHECK(c)                                                          \
	do {                                                              \
		if (!(c)) {                                               \
			fprintf(stderr, "%s:%d: check failed: %s\n",       \
			    __FILE__, __LINE__, #c);                      \
			abort();                                          \
		}                                                         \
	} while (0)

static struct row *
row_of(int64_t id)
{
	CHECK(id >= 1 && (size_t)id <= n_rows);
	return &rows[id - 1];
}

static int
mark(int64_t id, int state, int64_t next)
{
	struct row *r;

	pthread_mutex_lock(&mu);
	r = row_of(id);
	/* Only a claimed row may be marked. */
	CHECK(r->lease_until > 0);
	r->state = state;
	r->lease_until = 0;
	r->next_attempt = next;
	r->attempts++;
	if (state == ROW_SENT)
		r->marks++;
	pthread_mutex_unlock(&mu);
	return 0;
}

static int
fake_mark_sent(struct kr_store_be *s, int64_t id, int64_t lease, int64_t now,
    const char *reply, struct kr_err *err)
{
	(void)s, (void)lease, (void)now, (void)reply, (void)err;
	return mark(id, ROW_SENT, 0);
}

static int
fake_mark_deferred(struct kr_store_be *s, int64_t id, int64_t lease,
    int64_t now, int64_t next, int code, const char *reply, struct kr_err *err)
{
	(void)s, (void)lease, (void)now, (void)code, (void)reply, (void)err;
	return mark(id, ROW_DEFERRED, next);
}

static int
fake_mark_failed(struct kr_store_be *s, int64_t id, int64_t lease, int64_t now,
    int code, const char *reply, struct kr_err *err)
{
	(void)s, (void)lease, (void)now, (void)code, (void)reply, (void)err;
	return mark(id, ROW_FAILED, 0);
}

static int
fake_mark_uncertain(struct kr_store_be *s, int64_t id, int64_t lease,
    int64_t now, const char *reply, struct kr_err *err)
{
	(void)s, (void)lease, (void)now, (void)reply, (void)err;
	return mark(id, ROW_UNCERTAIN, 0);
}

static int
fake_release(struct kr_store_be *s, int64_t id, int64_t lease,
    struct kr_err *err)
{
	(void)s, (void)lease, (void)err;
	pthread_mutex_lock(&mu);
	row_of(id)->lease_until = 0;
	pthread_mutex_unlock(&mu);
	return 0;
}

static int
fake_report_get(struct kr_store_be *s, int64_t id, struct kr_report_row *out,
    struct kr_err *err)
{
	(void)s, (void)err;
	memset(out, 0, sizeof(*out));
	out->id = id;
	out->subject = kr_xstrdup("s");
	out->text = kr_xstrdup("t");
	out->html = kr_xstrdup("h");
	return 1;
}

static int
fake_event(struct kr_store_be *s, const char *kind, int64_t sub,
    int64_t report, const char *detail, struct kr_err *err)
{
	(void)s, (void)kind, (void)sub, (void)report, (void)detail, (void)err;
	return 0;
}

static int
fake_bounce_record(struct kr_store_be *s, const struct kr_bounce_row *b,
    const struct kr_bounce_policy *p, struct kr_bounce_result *res,
    struct kr_err *err)
{
	(void)s, (void)b, (void)p, (void)err;
	memset(res, 0, sizeof(*res));
	return 0;
}

/* What lib/governor.c reads and writes (off in these configs: never
 * called, but linked). */
static int
fake_delivery_counts(struct kr_store_be *s, int64_t report_id,
    struct kr_delivery_counts *out, struct kr_err *err)
{
	(void)s, (void)report_id, (void)err;
	memset(out, 0, sizeof(*out));
	return 0;
}

static int
fake_bounce_counts(struct kr_store_be *s, int64_t report_id,
    struct kr_bounce_counts *out, struct kr_err *err)
{
	(void)s, (void)report_id, (void)err;
	memset(out, 0, sizeof(*out));
	return 0;
}

static int
fake_report_governor_acked(struct kr_store_be *s, int64_t report_id,
    int64_t *complaints_out, int64_t *bounces_out, char *reason,
    size_t reason_size, struct kr_err *err)
{
	(void)s, (void)report_id, (void)err;
	*complaints_out = *bounces_out = 0;
	if (reason_size > 0)
		reason[0] = '\0';
	return 0;
}

static int
fake_report_governor_ack(struct kr_store_be *s, int64_t report_id,
    int64_t complaints, int64_t bounces, const char *reason,
    struct kr_err *err)
{
	(void)s, (void)report_id, (void)complaints, (void)bounces,
	    (void)reason, (void)err;
	return 0;
}

static int
fake_report_set_state(struct kr_store_be *s, int64_t id,
    enum kr_report_state state, struct kr_err *err)
{
	(void)s, (void)id, (void)state, (void)err;
	return 0;
}

static int
fake_confirm_governor_get(struct kr_store_be *s, const char *list_id,
    struct kr_store_list_governor *out, struct kr_err *err)
{
	(void)s, (void)list_id, (void)err;
	memset(out, 0, sizeof(*out));
	return 0;
}

static int
fake_confirm_governor_set(struct kr_store_be *s, const char *list_id,
    bool paused, const char *reason, int64_t ack_complaints,
    int64_t ack_bounces, struct kr_err *err)
{
	(void)s, (void)list_id, (void)paused, (void)reason,
	    (void)ack_complaints, (void)ack_bounces, (void)err;
	return 0;
}

/* Another connection's commits: the rows a test puts in place. */
static atomic_long data_version;

static int
fake_changes(struct kr_store_be *s, int64_t *v, struct kr_err *err)
{
	(void)s, (void)err;
	*v = atomic_load(&data_version);
	return 0;
}


static int
fake_reclaim(struct kr_store_be *s, const struct kr_store_owner *owner,
    int64_t now, int64_t *n_out, struct kr_err *err)
{
	(void)s, (void)owner, (void)now, (void)err;
	*n_out = 0;
	return 0;
}

static const struct kr_store_ops fake_store_ops = {
	.name = "fake",
	.open = fake_open,
	.close = fake_close,
	.claim = fake_claim,
	.mark_sent = fake_mark_sent,
	.mark_deferred = fake_mark_deferred,
	.mark_failed = fake_mark_failed,
	.mark_uncertain = fake_mark_uncertain,
	.release = fake_release,
	.reclaim = fake_reclaim,
	.report_get = fake_report_get,
	.event = fake_event,
	.bounce_record = fake_bounce_record,
	.delivery_counts = fake_delivery_counts,
	.bounce_counts = fake_bounce_counts,
	.report_governor_acked = fake_report_governor_acked,
	.report_governor_ack = fake_report_governor_ack,
	.report_set_state = fake_report_set_state,
	.confirm_governor_get = fake_confirm_governor_get,
	.confirm_governor_set = fake_confirm_governor_set,
	.changes = fake_changes,
};

/* ---- the fake composer and config ---- */

static char list_id_l[] = "l";
static struct kr_cfg_list the_list = {.id = list_id_l};

const struct kr_cfg_list *
kr_config_list(const struct kr_config *cfg, const char *id)
{
	(void)cfg;
	return strcmp(id, "l") == 0 ? &the_list : NULL;
}

int
kr_compose_report(const struct kr_config *cfg, const struct kr_cfg_list *list,
    const struct kr_report_row *r, const struct kr_claim *c,
    const struct kr_keyring *ring, int64_t now, struct kr_buf *out,
    char env_from[256], struct kr_err *err)
{
	(void)cfg, (void)list, (void)r, (void)ring, (void)now, (void)err;
	snprintf(env_from, 256, "bounces@example.jp");
	return kr_buf_printf(out, "To: %s\r\n\r\nhi\r\n", c->email);
}

int
kr_compose_confirm(const struct kr_config *cfg,
    const struct kr_cfg_list *list, const struct kr_claim *c,
    const struct kr_keyring *ring, int64_t now, struct kr_buf *out,
    char env_from[256], struct kr_err *err)
{
	(void)cfg, (void)list, (void)c, (void)ring, (void)now, (void)out;
	(void)env_from;
	return kr_err_set(err, KR_ERR_INVALID, "no confirmations here");
}

/* ---- the fake transport ---- */

struct kr_transport {
	int unused;
};

static int
t_create(const struct kr_config *cfg, struct kr_transport **out,
    struct kr_err *err)
{
	(void)cfg, (void)err;
	*out = kr_xcalloc(1, sizeof(**out));
	return 0;
}

static int
t_send(struct kr_transport *t, struct kr_msg *msgs, size_t n,
    kr_transport_done_fn done, void *ctx, struct kr_err *err)
{
	size_t i;
	bool capped = false;

	(void)t;
	pthread_mutex_lock(&mu);
	fake_sessions++;
	pthread_mutex_unlock(&mu);
	if (fake_down) {
		for (i = 0; i < n; i++) {
			msgs[i].result = KR_SEND_TEMP;
			msgs[i].code = 0;
			done(ctx, &msgs[i]);
		}
		return kr_err_set(err, KR_ERR_TEMP, "connection refused");
	}
	for (i = 0; i < n; i++)
		if (strstr(msgs[i].rcpt, "@capped.example"))
			capped = true;
	if (capped) {
		pthread_mutex_lock(&mu);
		if (++domain_now > domain_max)
			domain_max = domain_now;
		pthread_mutex_unlock(&mu);
	}
	for (i = 0; i < n; i++) {
		struct row *r;
		bool temp, slow;

		if (fake_delay_us)
			usleep((useconds_t)fake_delay_us);
		pthread_mutex_lock(&mu);
		r = row_of(msgs[i].id);
		temp = fake_temp_once && strncmp(r->email, "temp", 4) == 0 &&
		    r->attempts == 0;
		slow = strncmp(r->email, "slow", 4) == 0 && r->attempts == 0;
		pthread_mutex_unlock(&mu);
		CHECK(strstr(msgs[i].data, msgs[i].rcpt) != NULL);
		msgs[i].result = temp || slow ? KR_SEND_TEMP : KR_SEND_OK;
		msgs[i].code = temp || slow ? 451 : 250;
		snprintf(msgs[i].reply, sizeof(msgs[i].reply), "%s",
		    slow ? "4.7.1 slow down" :
		    temp ? "4.3.0 later" : "2.0.0 ok");
		snprintf(msgs[i].relay, sizeof(msgs[i].relay), "fake:25");
		done(ctx, &msgs[i]);
	}
	if (capped) {
		pthread_mutex_lock(&mu);
		domain_now--;
		pthread_mutex_unlock(&mu);
	}
	return 0;
}

static int
t_probe(struct kr_transport *t, struct kr_err *err)
{
	(void)t, (void)err;
	return 0;
}

static void
t_destroy(struct kr_transport **t)
{
	free(*t);
	*t = NULL;
}

static const struct kr_transport_ops fake_ops = {
    "fake", t_create, t_send, t_probe, t_destroy};

const struct kr_transport_ops *
kr_transport_for(const struct kr_config *cfg)
{
	(void)cfg;
	return &fake_ops;
}

/* ---- the tests ---- */

static unsigned retry[] = {1, 1};
static char capped_name[] = "capped.example";
static struct kr_cfg_domain capped = {capped_name, 1, 0};

static char memory_db[] = "fake:";

static void
make_cfg(struct kr_config *cfg, unsigned workers, unsigned batch)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->database = memory_db;
	cfg->delivery.workers = workers;
	cfg->delivery.batch = batch;
	cfg->delivery.lease = 600;
	cfg->delivery.retry = retry;
	cfg->delivery.n_retry = 2;
	cfg->delivery.max_age = 3600;
	cfg->delivery.per_domain = &capped;
	cfg->delivery.n_per_domain = 1;
}

static void
make_rows(size_t n, const char *(*name)(size_t i))
{
	size_t i;

	free(rows);
	rows = kr_xcalloc(n, sizeof(*rows));
	n_rows = n;
	atomic_fetch_add(&data_version, 1);
	for (i = 0; i < n; i++)
		snprintf(rows[i].email, sizeof(rows[i].email), "%s",
		    name(i));
}

static size_t
count_state(int state)
{
	size_t i, n = 0;

	pthread_mutex_lock(&mu);
	for (i = 0; i < n_rows; i++)
		if (rows[i].state == state)
			n++;
	pthread_mutex_unlock(&mu);
	return n;
}

static bool
wait_sent(size_t want, int secs)
{
	int i;

	for (i = 0; i < secs * 100; i++) {
		if (count_state(ROW_SENT) >= want)
			return true;
		usleep(10000);
	}
	return count_state(ROW_SENT) >= want;
}

struct sums {
	uint64_t sent, deferred;
};

static void
sum_stats(void *ctx, const char *list_id, const char *relay,
    const struct kr_delivery_stats *st)
{
	struct sums *s = ctx;

	assert_string_equal(list_id, "l");
	assert_string_equal(relay, "fake:25");
	s->sent += st->sent;
	s->deferred += st->deferred;
}

static const char *
name_mixed(size_t i)
{
	static char b[8][64];
	static int k;
	char *p = b[k++ % 8];

	snprintf(p, 64, "%s%zu@%s", i % 10 == 3 ? "temp" : "r", i,
	    i % 7 == 0 ? "capped.example" : "example.org");
	return p;
}

static void
test_delivery_pool_all_once(void **state)
{
	struct kr_config cfg;
	struct kr_delivery *d = NULL;
	struct kr_err err = {0};
	struct sums s = {0};
	size_t i;

	(void)state;
	make_cfg(&cfg, 4, 16);
	make_rows(1000, name_mixed);
	fake_temp_once = 1;
	domain_now = domain_max = 0;
	assert_int_equal(kr_delivery_start(&cfg, NULL, &d, &err), 0);
	kr_delivery_kick();
	/* The 100 "temp" rows are deferred once and come back a second
	 * later on the retry schedule. */
	assert_true(wait_sent(1000, 60));
	kr_delivery_stop(&d);
	assert_null(d);
	for (i = 0; i < n_rows; i++) {
		assert_int_equal(rows[i].state, ROW_SENT);
		assert_int_equal(rows[i].marks, 1);
		assert_int_equal(rows[i].lease_until, 0);
		assert_int_equal(rows[i].attempts,
		    strncmp(rows[i].email, "temp", 4) == 0 ? 2 : 1);
	}
	/* The cap of one connection for capped.example held. */
	assert_int_equal(domain_max, 1);
	(void)s;
}

static void
test_delivery_pool_stats(void **state)
{
	struct kr_config cfg;
	struct kr_delivery *d = NULL;
	struct kr_err err = {0};
	struct sums s = {0};

	(void)state;
	make_cfg(&cfg, 2, 10);
	make_rows(50, name_mixed);
	fake_temp_once = 1;
	assert_int_equal(kr_delivery_start(&cfg, NULL, &d, &err), 0);
	assert_true(wait_sent(50, 30));
	kr_delivery_stats_foreach(d, sum_stats, &s);
	assert_int_equal(s.sent, 50);
	assert_int_equal(s.deferred, 5);
	assert_int_equal(kr_delivery_current_report(d), 1);
	/* 4.3.0 is not "slow down": no limit is imposed. */
	assert_true(kr_delivery_rate_now(d) == 0);
	{
		struct kr_buf b;

		kr_buf_init(&b, 0);
		assert_int_equal(kr_delivery_metrics(d, &b), 0);
		assert_non_null(strstr(b.data,
		    "kairan_delivery_messages_total{list=\"l\","
		    "relay=\"fake:25\",outcome=\"sent\"} 50\n"));
		assert_non_null(strstr(b.data,
		    "kairan_delivery_messages_total{list=\"l\","
		    "relay=\"fake:25\",outcome=\"deferred\"} 5\n"));
		/* Every attempt timed: 55 in the +Inf bucket and count. */
		assert_non_null(strstr(b.data,
		    "kairan_smtp_transaction_seconds_bucket{le=\"+Inf\"} 55\n"));
		assert_non_null(strstr(b.data,
		    "kairan_smtp_transaction_seconds_count 55\n"));
		kr_buf_fini(&b);
	}
	kr_delivery_stop(&d);
}

static void
test_delivery_pool_stop_releases(void **state)
{
	struct kr_config cfg;
	struct kr_delivery *d = NULL;
	struct kr_err err = {0};
	size_t i, sent;

	(void)state;
	make_cfg(&cfg, 4, 50);
	make_rows(5000, name_mixed);
	fake_temp_once = 0;
	fake_delay_us = 200;
	assert_int_equal(kr_delivery_start(&cfg, NULL, &d, &err), 0);
	assert_true(wait_sent(100, 30));
	kr_delivery_stop(&d);
	fake_delay_us = 0;
	sent = count_state(ROW_SENT);
	assert_true(sent >= 100 && sent < 5000);
	/* Nothing is left leased: what was not sent can be claimed at once
	 * by the next start. */
	for (i = 0; i < n_rows; i++) {
		assert_int_equal(rows[i].lease_until, 0);
		assert_true(rows[i].marks <= 1);
	}
	/* And the next pool finishes the job, once each. */
	assert_int_equal(kr_delivery_start(&cfg, NULL, &d, &err), 0);
	assert_true(wait_sent(5000, 60));
	kr_delivery_stop(&d);
	for (i = 0; i < n_rows; i++)
		assert_int_equal(rows[i].marks, 1);
}

static void
test_delivery_pool_reload(void **state)
{
	struct kr_config cfg, cfg2;
	struct kr_delivery *d = NULL;
	struct kr_err err = {0};
	int i;

	(void)state;
	make_cfg(&cfg, 2, 10);
	make_cfg(&cfg2, 3, 5);
	make_rows(300, name_mixed);
	fake_temp_once = 0;
	assert_int_equal(kr_delivery_start(&cfg, NULL, &d, &err), 0);
	assert_int_equal(kr_delivery_gen_in_use(d) <= 1, 1);
	assert_int_equal(kr_delivery_set_config(d, &cfg2, NULL), 2);
	assert_true(wait_sent(300, 30));
	/* Every worker moves on to the new config within its idle wait:
	 * then the old one may be freed. */
	for (i = 0; i < 500 && kr_delivery_gen_in_use(d) < 2; i++)
		usleep(10000);
	assert_int_equal(kr_delivery_gen_in_use(d), 2);
	kr_delivery_stop(&d);
	/* Stopping NULL and kicking with no pool are harmless. */
	kr_delivery_stop(&d);
	kr_delivery_kick();
}

static void
test_delivery_pool_relay_down(void **state)
{
	struct kr_config cfg;
	struct kr_delivery *d = NULL;
	struct kr_err err = {0};
	size_t i, tried = 0;

	(void)state;
	make_cfg(&cfg, 2, 10);
	make_rows(200, name_mixed);
	fake_temp_once = 0;
	fake_down = 1;
	fake_sessions = 0;
	assert_int_equal(kr_delivery_start(&cfg, NULL, &d, &err), 0);
	usleep(1500000);
	/* Each worker failed once, paused 1 s, perhaps failed again and
	 * paused 2 s: the queue was not run through at full speed. */
	pthread_mutex_lock(&mu);
	assert_in_range(fake_sessions, 1, 4);
	for (i = 0; i < n_rows; i++)
		if (rows[i].attempts > 0)
			tried++;
	pthread_mutex_unlock(&mu);
	assert_true(tried <= 40);
	/* The relay comes back: everything goes, once. */
	fake_down = 0;
	assert_true(wait_sent(200, 60));
	kr_delivery_stop(&d);
	for (i = 0; i < n_rows; i++)
		assert_int_equal(rows[i].marks, 1);
}

static const char *
name_slow_last(size_t i)
{
	static char b[64];

	snprintf(b, sizeof(b), "%s%zu@example.org", i == 29 ? "slow" : "r",
	    i);
	return b;
}

static void
test_delivery_pool_slowdown(void **state)
{
	struct kr_config cfg;
	struct kr_delivery *d = NULL;
	struct kr_err err = {0};
	size_t i;

	(void)state;
	/* No configured rate: a 4.7.1 reply imposes one. */
	make_cfg(&cfg, 1, 30);
	make_rows(30, name_slow_last);
	fake_temp_once = 0;
	assert_int_equal(kr_delivery_start(&cfg, NULL, &d, &err), 0);
	assert_true(wait_sent(30, 30));
	assert_true(kr_delivery_rate_now(d) > 0);
	{
		struct kr_buf b;

		kr_buf_init(&b, 0);
		assert_int_equal(kr_delivery_metrics(d, &b), 0);
		assert_non_null(strstr(b.data, "kairan_delivery_rate_limit "));
		assert_null(strstr(b.data, "kairan_delivery_rate_limit 0\n"));
		kr_buf_fini(&b);
	}
	kr_delivery_stop(&d);
	for (i = 0; i < n_rows; i++)
		assert_int_equal(rows[i].marks, 1);
	assert_int_equal(rows[29].attempts, 2);
}

static int
cleanup(void **state)
{
	(void)state;
	free(rows);
	rows = NULL;
	n_rows = 0;
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_delivery_pool_all_once, cleanup),
	    cmocka_unit_test_teardown(test_delivery_pool_stats, cleanup),
	    cmocka_unit_test_teardown(test_delivery_pool_stop_releases,
		cleanup),
	    cmocka_unit_test_teardown(test_delivery_pool_reload, cleanup),
	    cmocka_unit_test_teardown(test_delivery_pool_relay_down, cleanup),
	    cmocka_unit_test_teardown(test_delivery_pool_slowdown, cleanup),
	};

	kr_store_add_backend("fake:", &fake_store_ops);
	return cmocka_run_group_tests_name("delivery_pool", tests, NULL, NULL);
}
