/* bench/store_ops.c — store operations per second with C concurrent
 * connections (threads, one connection each), on either backend: each
 * thread claims 100 copies of one queued report and marks each sent (its
 * own transaction, fenced), as a delivery worker does, until the queue is
 * empty. Prints claims/s, marks/s and the median claim and mark latency.
 *
 * usage: store_ops WHERE ROWS CONNECTIONS   (bench/store_ops.sh runs it)
 * The password of a PostgreSQL WHERE comes from KAIRAN_DB_PASSWORD. */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "err.h"
#include "store.h"

static const char *where;

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct worker {
	pthread_t t;
	int idx;
	long claims, marks, busy;
	double claim_s, mark_s;
	char err[320];
};

static void *
run(void *arg)
{
	struct worker *w = arg;
	struct kr_store *s = NULL;
	struct kr_err err = {0};
	struct kr_store_owner owner = {"bench", 0};
	struct kr_claim c[100];
	char host[32];
	size_t n, i;
	double t0;

	snprintf(host, sizeof(host), "bench-%d", w->idx);
	owner.host = host;
	owner.incarnation = w->idx + 1;
	if (kr_store_open(where, NULL, &s, &err) < 0) {
		snprintf(w->err, sizeof(w->err), "%s", err.msg);
		return NULL;
	}
	for (;;) {
		t0 = now_s();
		if (kr_store_claim(s, &owner, time(NULL), time(NULL) + 600, 100,
		                   c, &n, &err) < 0) {
			if (err.code == KR_ERR_BUSY) {
				w->busy++;
				continue;
			}
			snprintf(w->err, sizeof(w->err), "claim: %s", err.msg);
			break;
		}
		w->claim_s += now_s() - t0;
		w->claims++;
		if (n == 0)
			break;
		t0 = now_s();
		for (i = 0; i < n; i++) {
			while (kr_store_mark_sent(s, c[i].delivery_id,
			                          c[i].lease, time(NULL),
			                          "250 2.0.0 Ok", &err) < 0) {
				if (err.code != KR_ERR_BUSY) {
					snprintf(w->err, sizeof(w->err),
					         "mark: %s", err.msg);
					goto out;
				}
				w->busy++;
			}
			w->marks++;
		}
		w->mark_s += now_s() - t0;
	}
out:
	kr_store_close(&s);
	return NULL;
}

int
main(int argc, char **argv)
{
	struct kr_store *s = NULL;
	struct kr_err err = {0};
	struct kr_subscriber sub;
	struct kr_report_row r;
	struct worker *w;
	long rows, i, claims = 0, marks = 0, busy = 0;
	int conns, k;
	int64_t id, queued;
	double t0, t, cs = 0, ms = 0;
	bool added;

	if (argc != 4) {
		fprintf(stderr, "usage: store_ops WHERE ROWS CONNECTIONS\n");
		return 2;
	}
	where = argv[1];
	rows = atol(argv[2]);
	conns = atoi(argv[3]);
	if (kr_store_open(where, NULL, &s, &err) < 0) {
		fprintf(stderr, "store_ops: %s\n", err.msg);
		return 1;
	}
	memset(&sub, 0, sizeof(sub));
	strcpy(sub.list_id, "news");
	sub.status = KR_SUB_ACTIVE;
	sub.created_at = sub.consent_at = sub.confirmed_at = 1700000000;
	for (i = 0; i < rows; i++) {
		if (i % 5000 == 0 && kr_store_begin(s, &err) < 0)
			goto fail;
		snprintf(sub.email, sizeof(sub.email), "u%07ld@d%ld.example", i,
		         i % 300);
		if (kr_store_subscriber_import(s, &sub, &added, &err) < 0)
			goto fail;
		if ((i % 5000 == 4999 || i == rows - 1) &&
		    kr_store_commit(s, &err) < 0)
			goto fail;
	}
	memset(&r, 0, sizeof(r));
	strcpy(r.list_id, "news");
	r.subject = (char *)(uintptr_t) "bench";
	r.text = (char *)(uintptr_t) "text";
	r.html = (char *)(uintptr_t) "<p>html</p>";
	snprintf(r.hash, sizeof(r.hash), "ops-%ld", (long)time(NULL));
	if (kr_store_report_add(s, &r, true, time(NULL), &id, &queued, &err) <
	    0)
		goto fail;
	w = calloc((size_t)conns, sizeof(*w));
	t0 = now_s();
	for (k = 0; k < conns; k++) {
		w[k].idx = k;
		pthread_create(&w[k].t, NULL, run, &w[k]);
	}
	for (k = 0; k < conns; k++) {
		pthread_join(w[k].t, NULL);
		if (w[k].err[0])
			fprintf(stderr, "store_ops: worker %d: %s\n", k,
			        w[k].err);
		claims += w[k].claims;
		marks += w[k].marks;
		busy += w[k].busy;
		cs += w[k].claim_s;
		ms += w[k].mark_s;
	}
	t = now_s() - t0;
	printf("%s connections=%d: %ld marks in %.2f s = %.0f marks/s, "
	       "%.0f claims/s; mean claim %.2f ms, mean mark %.3f ms; "
	       "busy retries %ld\n",
	       kr_store_backend(s), conns, marks, t, (double)marks / t,
	       (double)claims / t, claims ? cs * 1000 / (double)claims : 0,
	       marks ? ms * 1000 / (double)marks : 0, busy);
	free(w);
	kr_store_close(&s);
	return marks == queued ? 0 : 1;
fail:
	fprintf(stderr, "store_ops: %s\n", err.msg);
	return 1;
}
