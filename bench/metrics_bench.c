/* metrics_bench.c — what one GET /metrics costs kairand's admin thread
 * with a large store: the uncached look at the store (deliveries by
 * state, subscriptions by list and status, bounces by kind) and a cached
 * scrape. The store is filled with plain SQL here (a bench, not product
 * code); kd_metrics.c is compiled in.
 * Usage: metrics_bench DB ROWS */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../daemon/kd_metrics.c"

static double
ms_since(double t0)
{
	return (mono() - t0) * 1000.0;
}

static int
cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
	struct kr_store *s = NULL;
	struct kr_err err = {0};
	struct kd_metrics *m;
	struct kr_buf out;
	sqlite3 *db;
	char sql[1024], *msg = NULL;
	double t0, look[5], cached;
	long rows;
	int i;

	if (argc != 3 || (rows = atol(argv[2])) <= 0) {
		fprintf(stderr, "usage: metrics_bench DB ROWS\n");
		return 2;
	}
	if (kr_store_open(argv[1], NULL, &s, &err) < 0) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	kr_store_close(&s);
	t0 = mono();
	if (sqlite3_open(argv[1], &db) != SQLITE_OK)
		return 1;
	snprintf(
	    sql, sizeof(sql),
	    "BEGIN;"
	    "INSERT INTO subscribers (list_id, email, status, created_at)"
	    " WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c"
	    " WHERE x < %ld) SELECT CASE WHEN x %% 3 THEN 'a' ELSE 'b' END,"
	    " 'r' || x || '@example.org', x %% 4, 0 FROM c;"
	    "INSERT INTO reports (list_id, subject, text, html, hash,"
	    " created_at) VALUES ('a', 's', 't', 'h', 'x', 0);"
	    "INSERT INTO deliveries (kind, report_id, subscriber_id, state,"
	    " queued_at) SELECT 0, 1, id, id %% 6, 0 FROM subscribers;"
	    "INSERT INTO bounces (at, subscriber_id, kind) SELECT 0, id,"
	    " 1 + id %% 3 FROM subscribers WHERE id %% 100 = 0;"
	    "COMMIT;",
	    rows);
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		fprintf(stderr, "fill: %s\n", msg);
		return 1;
	}
	sqlite3_close(db);
	printf("filled %ld subscriptions, %ld deliveries, %ld bounces in "
	       "%.0f ms\n",
	       rows, rows, rows / 100, ms_since(t0));

	m = kd_metrics_new(argv[1], NULL, NULL);
	kr_buf_init(&out, 0);
	for (i = 0; i < 5; i++) {
		m->next = 0; /* due now: an uncached look */
		kr_buf_reset(&out);
		t0 = mono();
		kd_metrics_write(m, &out);
		look[i] = ms_since(t0);
	}
	t0 = mono();
	for (i = 0; i < 1000; i++) {
		kr_buf_reset(&out);
		kd_metrics_write(m, &out);
	}
	cached = ms_since(t0) / 1000.0;
	qsort(look, 5, sizeof(look[0]), cmp);
	printf("uncached scrape (store look): median %.1f ms, min %.1f, "
	       "max %.1f (5 runs; the first opens the connection)\n",
	       look[2], look[0], look[4]);
	printf("cached scrape: %.3f ms; next look waits %.1f s\n", cached,
	       m->next - mono() > 0 ? m->next - mono() : 0.0);
	printf("page: %zu bytes, store_up=%s\n", out.len,
	       strstr(out.data, "store_up 1") ? "1" : "0");
	kr_buf_fini(&out);
	kd_metrics_free(&m);
	return 0;
}
