/* queue_1m.c — times the store on a million subscribers: filling the
 * subscriber table, kr_store_report_add (one INSERT … SELECT), claiming
 * and mark_sent; prints peak RSS and database growth. Built and run by
 * bench/queue_1m.sh. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include "err.h"
#include "store.h"

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long long
db_bytes(const char *path)
{
	struct stat st;
	char wal[512];
	long long n = 0;

	if (stat(path, &st) == 0)
		n += st.st_size;
	snprintf(wal, sizeof(wal), "%s-wal", path);
	if (stat(wal, &st) == 0)
		n += st.st_size;
	return n;
}

static void
die(const char *what, const struct kr_err *err)
{
	fprintf(stderr, "queue_1m: %s: %s\n", what, err->msg);
	exit(1);
}

int
main(int argc, char **argv)
{
	struct kr_store *s = NULL;
	const struct kr_store_owner owner = {"bench", 1};
	struct kr_err err = {0};
	struct kr_subscriber sub;
	struct kr_report_row r;
	struct kr_claim *c;
	struct rusage ru;
	long n = argc > 2 ? atol(argv[2]) : 1000000, i;
	int64_t id, queued;
	struct kr_delivery_counts k;
	size_t got, total = 0, j;
	double tc, tm;
	bool added;
	double t0, t;
	long long before;
	const char *path = argc > 1 ? argv[1] : "/tmp/kairan-bench.db";

	if (kr_store_open(path, NULL, &s, &err) < 0)
		die("open", &err);
	t0 = now_s();
	memset(&sub, 0, sizeof(sub));
	strcpy(sub.list_id, "news");
	strcpy(sub.consent_source, "import-confirmed");
	sub.status = KR_SUB_ACTIVE;
	sub.created_at = sub.consent_at = sub.confirmed_at = 1700000000;
	for (i = 0; i < n; i++) {
		if (i % 10000 == 0 && kr_store_begin(s, &err) < 0)
			die("begin", &err);
		snprintf(sub.email, sizeof(sub.email), "user%07ld@d%ld.example",
		         i, i % 500);
		if (kr_store_subscriber_import(s, &sub, &added, &err) < 0)
			die("import", &err);
		if ((i % 10000 == 9999 || i == n - 1) &&
		    kr_store_commit(s, &err) < 0)
			die("commit", &err);
	}
	t = now_s() - t0;
	printf("subscribers: %ld rows in %.2f s (%.0f rows/s)\n", n, t,
	       (double)n / t);

	before = db_bytes(path);
	memset(&r, 0, sizeof(r));
	strcpy(r.list_id, "news");
	r.subject = (char *)(uintptr_t) "bench";
	r.text = (char *)(uintptr_t) "text";
	r.html = (char *)(uintptr_t) "<p>html</p>";
	snprintf(r.hash, sizeof(r.hash), "bench-%ld", (long)time(NULL));
	t0 = now_s();
	if (kr_store_report_add(s, &r, true, time(NULL), &id, &queued, &err) <
	    0)
		die("report_add", &err);
	t = now_s() - t0;
	printf("report_add: %lld deliveries queued in %.2f s\n",
	       (long long)queued, t);
	printf("db growth: %.1f MB (file + WAL)\n",
	       (double)(db_bytes(path) - before) / 1e6);

	/* Steady state, as the delivery workers run: claim a batch, mark
	 * each copy sent, one transaction per mark. */
	c = calloc(1000, sizeof(*c));
	tc = tm = 0;
	for (i = 0; i < 100; i++) {
		t0 = now_s();
		if (kr_store_claim(s, &owner, time(NULL), time(NULL) + 300, 1000, c,
		                   &got, &err) < 0)
			die("claim", &err);
		tc += now_s() - t0;
		total += got;
		t0 = now_s();
		for (j = 0; j < got; j++)
			if (kr_store_mark_sent(s, c[j].delivery_id, c[j].lease, time(NULL),
			                       "250 2.0.0 Ok", &err) < 0)
				die("mark_sent", &err);
		tm += now_s() - t0;
	}
	printf("claim: %zu rows in 100 claims of 1000: %.1f ms per claim\n",
	       total, tc * 1000 / 100);
	printf("mark_sent: %zu in %.2f s (%.0f per second, each its own "
	       "transaction)\n",
	       total, tm, (double)total / tm);
	/* A domain goes down: 200,000 copies wait for a retry far ahead,
	 * in front of the rest of the queue. Claims must not scan them. */
	for (i = 0; i < 200; i++) {
		if (kr_store_claim(s, &owner, time(NULL), time(NULL) + 300, 1000, c,
		                   &got, &err) < 0 ||
		    kr_store_begin(s, &err) < 0)
			die("claim", &err);
		for (j = 0; j < got; j++)
			if (kr_store_mark_deferred(s, c[j].delivery_id, c[j].lease,
			                           time(NULL),
			                           time(NULL) + 86400, 421,
			                           "421 try later", &err) < 0)
				die("mark_deferred", &err);
		if (kr_store_commit(s, &err) < 0)
			die("commit", &err);
	}
	t0 = now_s();
	for (i = 0; i < 20; i++)
		if (kr_store_claim(s, &owner, time(NULL), time(NULL) + 300, 1000, c,
		                   &got, &err) < 0)
			die("claim", &err);
	printf("claim with 200000 deferred rows waiting: %.1f ms per claim "
	       "of 1000\n",
	       (now_s() - t0) * 1000 / 20);
	t0 = now_s();
	if (kr_store_delivery_counts(s, id, &k, &err) < 0)
		die("counts", &err);
	printf("delivery_counts: queued %lld sent %lld in %.1f ms\n",
	       (long long)k.queued, (long long)k.sent, (now_s() - t0) * 1000);
	free(c);
	kr_store_close(&s);
	getrusage(RUSAGE_SELF, &ru);
	printf("peak RSS: %.1f MB\n", (double)ru.ru_maxrss / 1024);
	return 0;
}
