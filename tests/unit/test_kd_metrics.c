/* test_kd_metrics.c — the store's counts for /metrics on a real SQLite
 * file, and kairand's metrics section (daemon/kd_metrics.c, compiled in
 * here: unit tests link libkairan.a only) on that file and on a database
 * that cannot be opened. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../daemon/kd_metrics.c"

struct fx {
	char dir[64];
	char db[128];
	struct kr_store *s;
};

static int
setup(void **state)
{
	struct fx *f = kr_xcalloc(1, sizeof(*f));
	struct kr_err err = {0};

	strcpy(f->dir, "/tmp/kairan-metrics-XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->db, sizeof(f->db), "%s/kairan.db", f->dir);
	if (kr_store_open(f->db, NULL, &f->s, &err) < 0) {
		fprintf(stderr, "open: %s\n", err.msg);
		return -1;
	}
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;
	char cmd[128];

	kr_store_close(&f->s);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

static int64_t
add(struct fx *f, const char *list, const char *addr, enum kr_sub_status st)
{
	struct kr_subscriber sub;
	struct kr_err err = {0};
	int64_t id = 0;

	memset(&sub, 0, sizeof(sub));
	snprintf(sub.list_id, sizeof(sub.list_id), "%s", list);
	snprintf(sub.email, sizeof(sub.email), "%s", addr);
	snprintf(sub.consent_source, sizeof(sub.consent_source), "cli");
	sub.status = st;
	sub.created_at = sub.consent_at = 1000;
	if (kr_store_subscriber_import_id(f->s, &sub, &id, &err) < 0)
		fail_msg("import: %s", err.msg);
	assert_true(id > 0);
	return id;
}

static void
bounce(struct fx *f, int64_t sub, int kind)
{
	struct kr_bounce_row b;
	struct kr_bounce_policy p = {5, 5, 86400, 0};
	struct kr_bounce_result res;
	struct kr_err err = {0};

	memset(&b, 0, sizeof(b));
	b.subscriber_id = sub;
	b.kind = kind;
	snprintf(b.source, sizeof(b.source), "dsn");
	if (kr_store_bounce_record(f->s, &b, &p, &res, &err) < 0)
		fail_msg("bounce: %s", err.msg);
}

/* A small store: lists "a" and "b", three bounces of each kind mix. */
static void
fill(struct fx *f)
{
	int64_t x;

	x = add(f, "a", "x@example.org", KR_SUB_ACTIVE);
	add(f, "a", "y@example.org", KR_SUB_ACTIVE);
	add(f, "a", "z@example.org", KR_SUB_PENDING);
	add(f, "b", "x@example.org", KR_SUB_UNSUBSCRIBED);
	bounce(f, x, KR_STORE_BOUNCE_HARD);
	bounce(f, x, KR_STORE_BOUNCE_SOFT);
	bounce(f, x, KR_STORE_BOUNCE_SOFT);
	bounce(f, x, KR_STORE_BOUNCE_COMPLAINT);
}

struct seen {
	char text[512];
	int calls, stop_at;
};

static int
note(void *ctx, const char *list_id, enum kr_sub_status status, int64_t n)
{
	struct seen *s = ctx;
	size_t len = strlen(s->text);

	snprintf(s->text + len, sizeof(s->text) - len, "%s/%d=%lld ", list_id,
	         (int)status, (long long)n);
	return ++s->calls == s->stop_at ? 7 : 0;
}

static void
test_store_counts(void **state)
{
	struct fx *f = *state;
	struct kr_bounce_counts b;
	struct kr_err err = {0};
	struct seen s;

	assert_int_equal(kr_store_bounce_counts(f->s, 0, &b, &err), 0);
	assert_true(b.hard == 0 && b.soft == 0 && b.complaint == 0);
	memset(&s, 0, sizeof(s));
	assert_int_equal(kr_store_subscriber_tally(f->s, note, &s, &err), 0);
	assert_int_equal(s.calls, 0);

	fill(f);
	assert_int_equal(kr_store_bounce_counts(f->s, 0, &b, &err), 0);
	assert_int_equal(b.hard, 1);
	assert_int_equal(b.soft, 2);
	assert_int_equal(b.complaint, 1);
	/* none of them belongs to a report: report 99 drew nothing */
	assert_int_equal(kr_store_bounce_counts(f->s, 99, &b, &err), 0);
	assert_true(b.hard == 0 && b.soft == 0 && b.complaint == 0);
	memset(&s, 0, sizeof(s));
	assert_int_equal(kr_store_subscriber_tally(f->s, note, &s, &err), 0);
	/* The complaint unsubscribed x from "a". */
	assert_string_equal(s.text, "a/0=1 a/1=1 a/2=1 b/2=1 ");
	/* A non-zero return stops the walk and comes back. */
	memset(&s, 0, sizeof(s));
	s.stop_at = 2;
	assert_int_equal(kr_store_subscriber_tally(f->s, note, &s, &err), 7);
	assert_int_equal(s.calls, 2);
}

static void
test_label(void **state)
{
	struct kr_buf b;

	(void)state;
	kr_buf_init(&b, 0);
	assert_int_equal(kd_metrics_label(&b, "plain-id.1"), 0);
	assert_string_equal(b.data, "plain-id.1");
	kr_buf_reset(&b);
	assert_int_equal(kd_metrics_label(&b, "a\\b\"c\nd"), 0);
	assert_string_equal(b.data, "a\\\\b\\\"c\\nd");
	kr_buf_fini(&b);
	kr_buf_init(&b, 4);
	assert_int_equal(kd_metrics_label(&b, "\"\"\"\""), -1);
	kr_buf_fini(&b);
}

static void
test_write(void **state)
{
	struct fx *f = *state;
	struct kd_metrics *m;
	struct kr_buf out;
	char info[128];

	fill(f);
	m = kd_metrics_new(f->db, NULL, NULL);
	kr_buf_init(&out, 0);
	kd_metrics_write(m, &out);
	assert_non_null(strstr(out.data,
	                       "# TYPE kairan_deliveries gauge\n"
	                       "kairan_deliveries{state=\"queued\"} 0\n"));
	assert_non_null(strstr(out.data,
	                       "kairan_bounces_total{kind=\"hard\"} 1\n"
	                       "kairan_bounces_total{kind=\"soft\"} 2\n"
	                       "kairan_bounces_total{kind=\"complaint\"} 1\n"));
	assert_non_null(
	    strstr(out.data,
	           "# TYPE kairan_subscribers gauge\n"
	           "kairan_subscribers{list=\"a\",status=\"pending\"} 1\n"
	           "kairan_subscribers{list=\"a\",status=\"active\"} 1\n"
	           "kairan_subscribers{list=\"a\",status=\"unsubscribed\"} 1\n"
	           "kairan_subscribers{list=\"a\",status=\"bounced\"} 0\n"
	           "kairan_subscribers{list=\"b\",status=\"pending\"} 0\n"
	           "kairan_subscribers{list=\"b\",status=\"active\"} 0\n"
	           "kairan_subscribers{list=\"b\",status=\"unsubscribed\"} 1\n"
	           "kairan_subscribers{list=\"b\",status=\"bounced\"} 0\n"
	           "# HELP kairan_report_copies"));
	/* no report in this store: the per-report families are empty */
	assert_non_null(strstr(out.data,
	                       "# TYPE kairan_report_copies gauge\n"
	                       "# HELP kairan_report_bounces"));
	assert_non_null(strstr(out.data,
	                       "# TYPE kairan_report_bounces gauge\n"
	                       "# HELP kairan_report_unsubscribes"));
	assert_non_null(strstr(out.data,
	                       "# TYPE kairan_report_unsubscribes gauge\n"
	                       "# HELP kairan_metrics_store_up"));
	assert_non_null(strstr(out.data, "kairan_metrics_store_up 1\n"));
	assert_null(strstr(out.data, "@"));
	/* The version the Makefile compiled in from VERSION. */
	assert_string_not_equal(kr_version(), "unknown");
	snprintf(info, sizeof(info),
	         "# TYPE kairan_build_info gauge\n"
	         "kairan_build_info{version=\"%s\"} 1\n",
	         kr_version());
	assert_non_null(strstr(out.data, info));
	kr_buf_fini(&out);
	kd_metrics_free(&m);
	assert_null(m);
	kd_metrics_free(&m);
}

static void
test_store_down(void **state)
{
	struct fx *f = *state;
	struct kd_metrics *m;
	struct kr_buf out;
	char path[160];

	(void)f;
	snprintf(path, sizeof(path), "%s/no/such/dir/kairan.db", f->dir);
	m = kd_metrics_new(path, NULL, NULL);
	kr_buf_init(&out, 0);
	kd_metrics_write(m, &out);
	assert_non_null(strstr(out.data, "kairan_metrics_store_up 0\n"));
	assert_null(strstr(out.data, "kairan_deliveries"));
	kr_buf_reset(&out);
	kd_metrics_write(m, &out);
	assert_non_null(strstr(out.data, "kairan_metrics_store_up 0\n"));
	kr_buf_fini(&out);
	kd_metrics_free(&m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_store_counts, setup, teardown),
	    cmocka_unit_test(test_label),
	    cmocka_unit_test_setup_teardown(test_write, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_store_down, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
