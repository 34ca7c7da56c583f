/* kd_metrics.c — see kd_metrics.h. Text format 0.0.4: each family once,
 * its # HELP and # TYPE first, its samples together. */
#include "kd_metrics.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "delivery.h"
#include "err.h"
#include "log.h"
#include "store.h"
#include "version.h"
#include "xmem.h"

struct kd_metrics {
	pthread_mutex_t lock;
	char *database;
	char *password_file; /* NULL: none */
	struct kr_delivery *delivery;
	struct kr_store *store; /* opened at the first look */
	struct kr_buf gauges;   /* the text of the last good look */
	bool have;              /* gauges holds a good look */
	bool failing;           /* the last look failed (logged once) */
	double next;            /* monotonic time of the next look */
};

/* The subscriptions of one list, while the tally goes through it. */
struct tally {
	struct kr_buf *out;
	char list_id[65];
	bool open;
	int64_t n[KR_SUB_BOUNCED + 1];
};

static const char *const sub_status[] = {"pending", "active", "unsubscribed",
                                         "bounced"};

static double
mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct kd_metrics *
kd_metrics_new(const char *database, const char *password_file,
               struct kr_delivery *delivery)
{
	struct kd_metrics *m = kr_xcalloc(1, sizeof(*m));

	pthread_mutex_init(&m->lock, NULL);
	m->database = kr_xstrdup(database);
	m->password_file =
	    password_file != NULL ? kr_xstrdup(password_file) : NULL;
	m->delivery = delivery;
	kr_buf_init(&m->gauges, 0);
	return m;
}

void
kd_metrics_free(struct kd_metrics **mp)
{
	struct kd_metrics *m = *mp;

	if (m == NULL)
		return;
	kr_store_close(&m->store);
	kr_buf_fini(&m->gauges);
	free(m->database);
	free(m->password_file);
	pthread_mutex_destroy(&m->lock);
	free(m);
	*mp = NULL;
}

int
kd_metrics_label(struct kr_buf *out, const char *s)
{
	int r = 0;

	for (; r == 0 && *s != '\0'; s++) {
		if (*s == '\\')
			r = kr_buf_puts(out, "\\\\");
		else if (*s == '"')
			r = kr_buf_puts(out, "\\\"");
		else if (*s == '\n')
			r = kr_buf_puts(out, "\\n");
		else
			r = kr_buf_putc(out, *s);
	}
	return r;
}

/* Writes the four status samples of the list the tally is in. */
static int
tally_flush(struct tally *t)
{
	size_t i;

	if (!t->open)
		return 0;
	t->open = false;
	for (i = 0; i < KR_NELEM(sub_status); i++)
		if (kr_buf_puts(t->out, "kairan_subscribers{list=\"") < 0 ||
		    kd_metrics_label(t->out, t->list_id) < 0 ||
		    kr_buf_printf(t->out, "\",status=\"%s\"} %lld\n",
		                  sub_status[i], (long long)t->n[i]) < 0)
			return -1;
	return 0;
}

static int
tally_one(void *ctx, const char *list_id, enum kr_sub_status status, int64_t n)
{
	struct tally *t = ctx;

	if (list_id == NULL)
		list_id = "";
	if (t->open && strcmp(t->list_id, list_id) != 0 && tally_flush(t) < 0)
		return -1;
	if (!t->open) {
		snprintf(t->list_id, sizeof(t->list_id), "%s", list_id);
		memset(t->n, 0, sizeof(t->n));
		t->open = true;
	}
	if ((unsigned)status < KR_NELEM(sub_status))
		t->n[status] += n;
	return 0;
}

/* Per-report outcomes of the newest reports (labels stay few). */
#define KD_METRICS_REPORTS 10

struct per_report {
	struct kd_metrics *m;
	struct kr_buf *copies, *bounces, *unsubs;
	struct kr_err *err;
};

static int
report_one(void *ctx, const struct kr_report_row *r,
    const struct kr_delivery_counts *c)
{
	struct per_report *p = ctx;
	struct kr_bounce_counts b;
	const char *const outcome[] = {"sent", "deferred", "failed",
		"uncertain", "queued", "cancelled"};
	const int64_t copies[] = {c->sent, c->deferred, c->failed,
		c->uncertain, c->queued, c->cancelled};
	const char *const kind[] = {"hard", "soft", "complaint"};
	int64_t bn[3];
	size_t i;

	if (kr_store_bounce_counts(p->m->store, r->id, &b, p->err) < 0)
		return -1;
	bn[0] = b.hard;
	bn[1] = b.soft;
	bn[2] = b.complaint;
	for (i = 0; i < KR_NELEM(outcome); i++)
		if (kr_buf_printf(p->copies, "kairan_report_copies{report=\"%lld\","
			"list=\"", (long long)r->id) < 0 ||
		    kd_metrics_label(p->copies, r->list_id) < 0 ||
		    kr_buf_printf(p->copies, "\",outcome=\"%s\"} %lld\n",
			outcome[i], (long long)copies[i]) < 0)
			return -1;
	for (i = 0; i < KR_NELEM(kind); i++)
		if (kr_buf_printf(p->bounces, "kairan_report_bounces{report=\"%lld\","
			"list=\"", (long long)r->id) < 0 ||
		    kd_metrics_label(p->bounces, r->list_id) < 0 ||
		    kr_buf_printf(p->bounces, "\",kind=\"%s\"} %lld\n", kind[i],
			(long long)bn[i]) < 0)
			return -1;
	if (kr_buf_printf(p->unsubs, "kairan_report_unsubscribes{report=\"%lld\","
		"list=\"", (long long)r->id) < 0 ||
	    kd_metrics_label(p->unsubs, r->list_id) < 0 ||
	    kr_buf_printf(p->unsubs, "\"} %lld\n",
		(long long)b.unsubscribed) < 0)
		return -1;
	return 0;
}

/* kairan_report_copies and kairan_report_bounces for the newest reports. */
static int
look_reports(struct kd_metrics *m, struct kr_buf *out, struct kr_err *err)
{
	struct kr_buf copies, bounces, unsubs;
	struct per_report p = {m, &copies, &bounces, &unsubs, err};
	int r = -1;

	kr_buf_init(&copies, 0);
	kr_buf_init(&bounces, 0);
	kr_buf_init(&unsubs, 0);
	if (kr_store_report_foreach(m->store, KD_METRICS_REPORTS, report_one,
		&p, err) != 0)
		goto out;
	if (kr_buf_puts(out,
		"# HELP kairan_report_copies Copies of each of the newest "
		"reports by outcome.\n"
		"# TYPE kairan_report_copies gauge\n") < 0 ||
	    kr_buf_append(out, copies.data ? copies.data : "", copies.len) < 0 ||
	    kr_buf_puts(out,
		"# HELP kairan_report_bounces Bounces and complaints the copies "
		"of each of the newest reports drew.\n"
		"# TYPE kairan_report_bounces gauge\n") < 0 ||
	    kr_buf_append(out, bounces.data ? bounces.data : "",
		bounces.len) < 0 ||
	    kr_buf_puts(out,
		"# HELP kairan_report_unsubscribes Subscriptions ended from "
		"the links of each of the newest reports.\n"
		"# TYPE kairan_report_unsubscribes gauge\n") < 0 ||
	    kr_buf_append(out, unsubs.data ? unsubs.data : "",
		unsubs.len) < 0)
		goto out;
	r = 0;
out:
	kr_buf_fini(&copies);
	kr_buf_fini(&bounces);
	kr_buf_fini(&unsubs);
	return r;
}

/* One look at the store: the gauges' text into out. */
static int
look(struct kd_metrics *m, struct kr_buf *out, struct kr_err *err)
{
	struct kr_delivery_counts c;
	struct kr_bounce_counts b;
	struct tally t;
	int r;

	if (m->store == NULL &&
	    kr_store_open(m->database, m->password_file, &m->store, err) < 0)
		return -1;
	if (kr_store_delivery_counts(m->store, 0, &c, err) < 0 ||
	    kr_store_bounce_counts(m->store, 0, &b, err) < 0)
		return -1;
	if (kr_buf_printf(
	        out,
	        "# HELP kairan_deliveries Copies (reports and confirmations) "
	        "in the store by state; in_flight: queued or deferred and "
	        "claimed by a worker now.\n"
	        "# TYPE kairan_deliveries gauge\n"
	        "kairan_deliveries{state=\"queued\"} %lld\n"
	        "kairan_deliveries{state=\"deferred\"} %lld\n"
	        "kairan_deliveries{state=\"in_flight\"} %lld\n"
	        "kairan_deliveries{state=\"sent\"} %lld\n"
	        "kairan_deliveries{state=\"failed\"} %lld\n"
	        "kairan_deliveries{state=\"uncertain\"} %lld\n"
	        "kairan_deliveries{state=\"cancelled\"} %lld\n"
	        "# HELP kairan_bounces_total Bounces and complaints stored "
	        "(DSNs and ARF reports piped to kairanctl bounce, 5xx "
	        "replies during delivery).\n"
	        "# TYPE kairan_bounces_total counter\n"
	        "kairan_bounces_total{kind=\"hard\"} %lld\n"
	        "kairan_bounces_total{kind=\"soft\"} %lld\n"
	        "kairan_bounces_total{kind=\"complaint\"} %lld\n"
	        "# HELP kairan_subscribers Subscriptions in the store by list "
	        "and status.\n"
	        "# TYPE kairan_subscribers gauge\n",
	        (long long)c.queued, (long long)c.deferred,
	        (long long)c.in_flight, (long long)c.sent, (long long)c.failed,
	        (long long)c.uncertain, (long long)c.cancelled,
	        (long long)b.hard, (long long)b.soft,
	        (long long)b.complaint) < 0)
		return kr_err_set(err, KR_ERR_INVALID, "metrics: out of room");
	memset(&t, 0, sizeof(t));
	t.out = out;
	r = kr_store_subscriber_tally(m->store, tally_one, &t, err);
	if (r == 0)
		r = tally_flush(&t);
	if (r == 0)
		r = look_reports(m, out, err);
	if (r != 0 && err != NULL && err->msg[0] == '\0')
		kr_err_set(err, KR_ERR_INVALID, "metrics: out of room");
	return r == 0 ? 0 : -1;
}

/* Refreshes m->gauges when due (after a failure too: the store is not
 * asked again before m->next). Called under m->lock. */
static void
refresh(struct kd_metrics *m)
{
	struct kr_err err;
	struct kr_buf fresh;
	double start = mono(), took;

	if (start < m->next)
		return;
	kr_err_clear(&err);
	kr_buf_init(&fresh, 0);
	if (look(m, &fresh, &err) == 0) {
		kr_buf_fini(&m->gauges);
		m->gauges = fresh;
		m->have = true;
		if (m->failing)
			kr_log_info("metrics: the store answers again");
		m->failing = false;
	} else {
		kr_buf_fini(&fresh);
		/* Stale numbers would mislead: none until the store answers;
		 * kairan_metrics_store_up says so. The connection is opened
		 * afresh at the next look. */
		m->have = false;
		kr_buf_reset(&m->gauges);
		kr_store_close(&m->store);
		if (!m->failing)
			kr_log_warn("metrics: %s", err.msg);
		m->failing = true;
	}
	took = mono() - start;
	m->next = start +
	          (took * 50 > KD_METRICS_EVERY ? took * 50 : KD_METRICS_EVERY);
}

void
kd_metrics_write(void *ctx, struct kr_buf *out)
{
	struct kd_metrics *m = ctx;

	/* A full buffer only truncates the page: nothing to report. */
	if (m->delivery != NULL && kr_delivery_metrics(m->delivery, out) < 0)
		kr_log_debug("metrics: delivery section truncated");
	pthread_mutex_lock(&m->lock);
	refresh(m);
	if (m->have && kr_buf_append(out, m->gauges.data, m->gauges.len) < 0)
		kr_log_debug("metrics: store section truncated");
	if (kr_buf_printf(
	        out,
	        "# HELP kairan_metrics_store_up 1 when the last look at the "
	        "store for the gauges above succeeded, 0 when it failed (they "
	        "are then left out).\n"
	        "# TYPE kairan_metrics_store_up gauge\n"
	        "kairan_metrics_store_up %d\n"
	        "# HELP kairan_build_info The running kairand's version "
	        "(always 1).\n"
	        "# TYPE kairan_build_info gauge\n"
	        "kairan_build_info{version=\"%s\"} 1\n",
	        m->have ? 1 : 0, kr_version()) < 0)
		kr_log_debug("metrics: store section truncated");
	pthread_mutex_unlock(&m->lock);
}
