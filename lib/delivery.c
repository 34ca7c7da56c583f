/* delivery.c — the worker pool that moves queued rows to the relay.
 *
 * Each worker: claim a batch (lease), wait for connection slots of capped
 * domains (all at once, so two workers never hold one slot each and wait
 * for the other's), compose each copy while taking tokens from the global
 * and per-domain buckets (so a stop request interrupts a rate wait), send
 * the batch over one transport session, and record each outcome in the
 * transport's done callback right after the server's reply: a 250 is in
 * the store before the next message leaves. Rows claimed but never handed
 * to the transport are released at the end of the batch.
 *
 * The workers share one store connection guarded by store_lock: claim and
 * mark are single short statements, and one connection means no SQLite
 * BUSY between our own threads. With PostgreSQL (kr_store_rates_shared())
 * each worker records its outcomes on a connection of its own, so their
 * round trips to the server overlap. */
#include "delivery.h"
#include "delivery_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "bounce.h"
#include "buf.h"
#include "compose.h"
#include "config.h"
#include "dkim.h"
#include "err.h"
#include "governor.h"
#include "log.h"
#include "store.h"
#include "transport_smtp.h"
#include "xmem.h"

void
kr_delivery_log_reply(const char *reply, char *out, size_t outsz)
{
	static const char mask[] = "***";
	size_t i = 0, n = 0, start, end;

	if (outsz == 0)
		return;
	if (reply == NULL)
		reply = "";
	if (kr_log_get_level() >= KR_LOG_DEBUG) {
		snprintf(out, outsz, "%s", reply);
		return;
	}
	while (reply[i] != '\0' && n + 1 < outsz) {
		/* One word: a run without blanks, angle brackets or quotes. */
		start = i;
		end = i + strcspn(reply + i, " \t<>\"'(),;");
		if (end > start && memchr(reply + start, '@', end - start)) {
			size_t m = sizeof(mask) - 1;

			if (m > outsz - 1 - n)
				m = outsz - 1 - n;
			memcpy(out + n, mask, m);
			n += m;
			i = end;
			continue;
		}
		if (end == start)
			end = start + 1; /* a separator: copy it */
		while (i < end && n + 1 < outsz)
			out[n++] = reply[i++];
	}
	out[n] = '\0';
}

/* How long a "slow down" reply halves the rate. */
#define BACKOFF_HOLD 60.0
/* Idle wait when nothing is due. */
#define IDLE_WAIT 1.0
/* ... and looks at kr_store_changes() this often meanwhile (s) */
#define IDLE_SLICE 0.1
/* Seconds /healthz tells of a kairan-smtp that ended unasked. */
#define KR_DELIVERY_SMTP_END_SHOWN 60
/* Longest pause of a worker after sessions that could not run. */
#define MAX_PAUSE 30
/* Tries of a store call that says BUSY, 50 ms apart. */
#define BUSY_TRIES 100

struct domain_state {
	char *domain;                     /* lower-case */
	unsigned cap;                     /* connections, 0: none */
	unsigned used;                    /* workers holding a slot */
	struct kr_delivery_bucket bucket; /* rate 0: none */
	double grant; /* tokens of the shared bucket (shared_rates) */
};

struct list_stats {
	char list_id[65];
	char relay[64]; /* "" when no relay answered (compose errors) */
	struct kr_delivery_stats st;
};

/* SMTP transaction latency: from the previous outcome of the session (or
 * the start of the session for its first message) to this one's. */
static const double lat_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
#define N_LAT (sizeof(lat_bounds) / sizeof(lat_bounds[0]))

struct worker;

/* A failing dependency (the relay, the store) as /healthz reports it: the
 * last error, since when (wall clock) and how often, cleared by the next
 * success. "" when fine. */
struct trouble {
	char msg[256];
	int64_t since;
	unsigned fails;
};

struct kr_delivery {
	/* Whose leases the claims write: config host_id (else the host
	 * name) and a number new at every start. Set before the workers. */
	struct kr_store_owner owner;
	char host[256];
	atomic_ulong n_fenced; /* outcomes a later claim overtook */
	pthread_mutex_t lock; /* everything below but the store */
	pthread_cond_t wake;  /* kicks, stop, slots freed */
	const struct kr_config *cfg;
	unsigned cfg_gen;
	const struct kr_keyring *ring;
	const struct kr_dkim_set *dkim; /* of cfg's generation, NULL: none */
	struct kr_delivery_bucket global;
	/* Several hosts on one database (kr_store_rates_shared()): a token
	 * of the local buckets also needs one granted by the database's
	 * shared bucket, taken a tenth of a second's worth at a time, so
	 * the rates hold for the sum of the hosts. */
	bool shared_rates;
	double global_grant;
	/* With no global rate, a "slow down" reply imposes one for a while:
	 * half the rate observed, halved again by each further reply. */
	struct kr_delivery_bucket auto_bucket;
	double auto_until;
	double obs_rate, obs_start; /* messages/s accepted, smoothed */
	uint64_t obs_count;
	struct domain_state *domains;
	size_t n_domains;
	struct list_stats *stats;
	size_t n_stats;
	uint64_t lat_count[N_LAT + 1]; /* last: +Inf */
	uint64_t lat_n;
	double lat_sum;
	unsigned kicks;
	bool stop;
	int64_t current_report;
	struct trouble relay; /* for /healthz: what fails now */
	struct trouble db;
	struct trouble governor; /* a report the governor paused */
	int64_t gov_report;
	struct trouble gov_confirm; /* a list's confirmations it paused */
	char gov_list[65];
	double gov_next;      /* mono time of the next governor look */

	pthread_mutex_t store_lock;
	struct kr_store *store;

	struct worker *workers;
	size_t n_workers;
};

enum msg_state { MS_CLAIMED = 0, MS_COMPOSED, MS_DONE };

struct worker {
	struct kr_delivery *d;
	unsigned idx;
	pthread_t thread;
	bool started;
	unsigned seed;

	const struct kr_config *cfg; /* this batch's */
	const struct kr_keyring *ring;
	const struct kr_dkim_set *dkim;
	unsigned cfg_gen;
	const struct kr_transport_ops *ops;
	struct kr_transport *t;

	struct kr_report_row report; /* cache: the last report used */
	bool have_report;
	/* Several hosts (PostgreSQL): this worker's own connection for its
	 * outcomes, so the workers' marks go to the server side by side
	 * instead of one round trip after the other under store_lock.
	 * NULL: the shared one (SQLite: one writer at a time anyway). */
	struct kr_store *mstore;

	size_t cap; /* size of the arrays below */
	struct kr_claim *claims;
	struct kr_msg *msgs;
	struct kr_buf *bufs;
	char (*env_from)[256];
	enum msg_state *state;
	ssize_t *dom;       /* domain index per claim, -1: none */
	size_t *held;       /* domain indexes holding a slot */
	int *dbslot;        /* per held: its slot in the database, -1: none */
	size_t n_held;
	double t_last;      /* previous outcome, for latency */
	bool slowed;        /* this batch already backed off once */
	unsigned pause;     /* seconds to wait after a failed session */
	unsigned using_gen; /* config generation of w->cfg and w->ring */
};

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct kr_delivery *pool; /* for kr_delivery_kick() */

/* ---- pure helpers ---- */

static double
bucket_factor(const struct kr_delivery_bucket *b, double now)
{
	return now < b->factor_until ? b->factor : 1.0;
}

static void
bucket_refill(struct kr_delivery_bucket *b, double now)
{
	double r = b->rate * bucket_factor(b, now);

	if (now > b->last) {
		b->tokens += (now - b->last) * r;
		if (b->tokens > b->burst)
			b->tokens = b->burst;
		b->last = now;
	}
}

void
kr_delivery_bucket_init(struct kr_delivery_bucket *b, double rate,
    double now)
{
	memset(b, 0, sizeof(*b));
	b->factor = 1.0;
	b->last = now;
	kr_delivery_bucket_set_rate(b, rate, now);
	b->tokens = b->burst;
}

void
kr_delivery_bucket_set_rate(struct kr_delivery_bucket *b, double rate,
    double now)
{
	bucket_refill(b, now);
	b->rate = rate > 0 ? rate : 0;
	/* A burst of one second's worth (at least one message) keeps the
	 * rate smooth over any window longer than a second. */
	b->burst = b->rate >= 1.0 ? b->rate : 1.0;
	if (b->tokens > b->burst)
		b->tokens = b->burst;
}

/* Seconds until a token is there (0: there is one), taking nothing. */
static double
bucket_wait(struct kr_delivery_bucket *b, double now)
{
	double r;

	if (b->rate <= 0)
		return 0;
	bucket_refill(b, now);
	/* The epsilon absorbs rounding of the time differences. */
	if (b->tokens >= 1.0 - 1e-9)
		return 0;
	r = b->rate * bucket_factor(b, now);
	return (1.0 - b->tokens) / r;
}

double
kr_delivery_bucket_take(struct kr_delivery_bucket *b, double now)
{
	double w = bucket_wait(b, now);

	if (w > 0)
		return w;
	if (b->rate > 0) {
		b->tokens -= 1.0;
		if (b->tokens < 0)
			b->tokens = 0;
	}
	return 0;
}

void
kr_delivery_bucket_backoff(struct kr_delivery_bucket *b, double now,
    double hold)
{
	double f = bucket_factor(b, now);

	bucket_refill(b, now);
	f /= 2;
	if (f < 1.0 / 16)
		f = 1.0 / 16;
	b->factor = f;
	b->factor_until = now + hold;
}

double
kr_delivery_bucket_rate(const struct kr_delivery_bucket *b, double now)
{
	return b->rate * bucket_factor(b, now);
}

int
kr_delivery_retry_next(const unsigned *retry, size_t n_retry,
    unsigned max_age, int attempts, int64_t queued_at, int64_t now,
    double rnd, int64_t *next_out)
{
	double delay;
	int64_t next;

	if (attempts < 0 || (size_t)attempts >= n_retry)
		return 1;
	if (max_age > 0 && now - queued_at >= (int64_t)max_age)
		return 1;
	if (rnd < 0 || rnd >= 1)
		rnd = 0.5;
	delay = (double)retry[attempts] * (0.9 + 0.2 * rnd);
	next = now + (int64_t)(delay + 0.5);
	if (next < now + 1)
		next = now + 1;
	if (max_age > 0 && next > queued_at + (int64_t)max_age)
		next = queued_at + (int64_t)max_age;
	*next_out = next;
	return 0;
}

int
kr_delivery_is_slowdown(int code, const char *reply)
{
	const char *p;

	if (code == 421)
		return 1;
	if (code < 400 || code > 499 || reply == NULL)
		return 0;
	/* The enhanced status code leads the text, perhaps after the basic
	 * code: "4.7.1 …" or "450 4.7.1 …". */
	p = reply;
	if (p[0] >= '0' && p[0] <= '9' && p[1] >= '0' && p[1] <= '9' &&
	    p[2] >= '0' && p[2] <= '9' && (p[3] == ' ' || p[3] == '-'))
		p += 4;
	while (*p == ' ')
		p++;
	return strncmp(p, "4.7.", 4) == 0;
}

/* ---- clock and small things ---- */

static double
mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Waits on d->wake for at most secs (d->lock held). */
static void
timed_wait(struct kr_delivery *d, double secs)
{
	struct timespec ts;
	time_t whole;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	if (secs > 5)
		secs = 5;
	secs += (double)ts.tv_nsec / 1e9;
	whole = (time_t)secs;
	ts.tv_sec += whole;
	ts.tv_nsec = (long)((secs - (double)whole) * 1e9);
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	(void)pthread_cond_timedwait(&d->wake, &d->lock, &ts);
}

static void
nap(double secs)
{
	struct timespec ts;

	ts.tv_sec = (time_t)secs;
	ts.tv_nsec = (long)((secs - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static const char *
addr_domain(const char *addr)
{
	const char *at = strrchr(addr, '@');

	return at ? at + 1 : "";
}

static ssize_t domain_find(struct kr_delivery *d, const char *domain);

/* The global rate in force (d->lock held): the configured one (backed
 * off), the imposed one after a "slow down", or 0 for none. */
static double
effective_rate(const struct kr_delivery *d, double now)
{
	if (d->global.rate > 0)
		return kr_delivery_bucket_rate(&d->global, now);
	if (now < d->auto_until)
		return kr_delivery_bucket_rate(&d->auto_bucket, now);
	return 0;
}

/* A relay asked us to slow down (d->lock held). */
static double
slow_down(struct kr_delivery *d, const char *domain, double now)
{
	ssize_t j = domain_find(d, domain);

	if (j >= 0 && d->domains[j].bucket.rate > 0)
		kr_delivery_bucket_backoff(&d->domains[j].bucket, now,
		    BACKOFF_HOLD);
	if (d->global.rate > 0) {
		kr_delivery_bucket_backoff(&d->global, now, BACKOFF_HOLD);
	} else if (now < d->auto_until) {
		kr_delivery_bucket_backoff(&d->auto_bucket, now,
		    BACKOFF_HOLD);
		d->auto_until = now + BACKOFF_HOLD;
	} else {
		kr_delivery_bucket_init(&d->auto_bucket,
		    d->obs_rate / 2 > 1 ? d->obs_rate / 2 : 1, now);
		d->auto_until = now + BACKOFF_HOLD;
	}
	return effective_rate(d, now);
}

/* ---- config-derived state (d->lock held) ---- */

static void
apply_config(struct kr_delivery *d, const struct kr_config *cfg)
{
	double now = mono_now();
	size_t i, j;

	d->cfg = cfg;
	d->cfg_gen++;
	kr_delivery_bucket_set_rate(&d->global, cfg->delivery.rate, now);
	/* Domains are only ever added, so the indexes workers hold stay
	 * valid; one dropped from the config loses its caps. */
	for (j = 0; j < d->n_domains; j++) {
		d->domains[j].cap = 0;
		kr_delivery_bucket_set_rate(&d->domains[j].bucket, 0, now);
	}
	for (i = 0; i < cfg->delivery.n_per_domain; i++) {
		const struct kr_cfg_domain *cd = &cfg->delivery.per_domain[i];
		struct domain_state *ds = NULL;

		for (j = 0; j < d->n_domains; j++)
			if (strcasecmp(d->domains[j].domain, cd->domain) == 0)
				ds = &d->domains[j];
		if (ds == NULL) {
			d->domains = kr_xrealloc(d->domains,
			    (d->n_domains + 1) * sizeof(*d->domains));
			ds = &d->domains[d->n_domains++];
			memset(ds, 0, sizeof(*ds));
			ds->domain = kr_xstrdup(cd->domain);
			kr_delivery_bucket_init(&ds->bucket, 0, now);
		}
		ds->cap = cd->connections;
		kr_delivery_bucket_set_rate(&ds->bucket, cd->rate, now);
	}
	pthread_cond_broadcast(&d->wake);
}

static ssize_t
domain_find(struct kr_delivery *d, const char *domain)
{
	size_t j;

	for (j = 0; j < d->n_domains; j++)
		if (strcasecmp(d->domains[j].domain, domain) == 0)
			return (ssize_t)j;
	return -1;
}

static struct kr_delivery_stats *
stats_for(struct kr_delivery *d, const char *list_id, const char *relay)
{
	size_t i;
	struct list_stats *ls;

	for (i = 0; i < d->n_stats; i++)
		if (strcmp(d->stats[i].list_id, list_id) == 0 &&
		    strcmp(d->stats[i].relay, relay) == 0)
			return &d->stats[i].st;
	d->stats = kr_xrealloc(d->stats, (d->n_stats + 1) * sizeof(*d->stats));
	ls = &d->stats[d->n_stats++];
	memset(ls, 0, sizeof(*ls));
	snprintf(ls->list_id, sizeof(ls->list_id), "%s", list_id);
	snprintf(ls->relay, sizeof(ls->relay), "%s", relay);
	return &ls->st;
}

/* ---- store calls under the shared lock, retried while BUSY ---- */

enum mark_op { MARK_SENT, MARK_DEFERRED, MARK_FAILED, MARK_UNCERTAIN,
	MARK_RELEASE };

/* Records claim c's outcome, fenced by its lease (kr_store_mark_sent()):
 * a claim overtaken meanwhile (its lease ran out and another host, or this
 * one after a restart, took the row) records nothing and is counted. */
static int
store_mark(struct worker *w, enum mark_op op, const struct kr_claim *c,
    int64_t now, int64_t next, int code, const char *reply,
    struct kr_err *err)
{
	struct kr_delivery *d = w->d;
	struct kr_store *st = w->mstore != NULL ? w->mstore : d->store;
	int64_t id = c->delivery_id, lease = c->lease;
	int r = -1, tries;

	for (tries = 0; tries < BUSY_TRIES; tries++) {
		kr_err_clear(err);
		if (w->mstore == NULL)
			pthread_mutex_lock(&d->store_lock);
		switch (op) {
		case MARK_SENT:
			r = kr_store_mark_sent(st, id, lease, now, reply,
			    err);
			break;
		case MARK_DEFERRED:
			r = kr_store_mark_deferred(st, id, lease, now,
			    next, code, reply, err);
			break;
		case MARK_FAILED:
			r = kr_store_mark_failed(st, id, lease, now,
			    code, reply, err);
			break;
		case MARK_UNCERTAIN:
			r = kr_store_mark_uncertain(st, id, lease, now,
			    reply, err);
			break;
		case MARK_RELEASE:
			r = kr_store_release(st, id, lease, err);
			break;
		}
		if (w->mstore == NULL)
			pthread_mutex_unlock(&d->store_lock);
		if (r == 0 || err == NULL || err->code != KR_ERR_BUSY)
			break;
		nap(0.05);
	}
	if (r < 0 && err != NULL && err->code == KR_ERR_STALE) {
		atomic_fetch_add(&d->n_fenced, 1);
		kr_log_warn("delivery fenced id=%lld report=%lld sub=%lld: %s",
		    (long long)id, (long long)c->report_id,
		    (long long)c->subscriber_id, err->msg);
	}
	return r;
}

/* ---- one worker ---- */

static void
worker_grow(struct worker *w, size_t n)
{
	size_t i;

	if (n <= w->cap)
		return;
	w->claims = kr_xrealloc(w->claims, n * sizeof(*w->claims));
	w->msgs = kr_xrealloc(w->msgs, n * sizeof(*w->msgs));
	w->bufs = kr_xrealloc(w->bufs, n * sizeof(*w->bufs));
	for (i = w->cap; i < n; i++)
		kr_buf_init(&w->bufs[i], 0);
	w->env_from = kr_xrealloc(w->env_from, n * sizeof(*w->env_from));
	w->state = kr_xrealloc(w->state, n * sizeof(*w->state));
	w->dom = kr_xrealloc(w->dom, n * sizeof(*w->dom));
	w->held = kr_xrealloc(w->held, n * sizeof(*w->held));
	w->dbslot = kr_xrealloc(w->dbslot, n * sizeof(*w->dbslot));
	for (i = w->cap; i < n; i++)
		w->dbslot[i] = -1;
	w->cap = n;
}

static void
worker_fini(struct worker *w)
{
	size_t i;

	if (w->t != NULL && w->ops != NULL)
		w->ops->destroy(&w->t);
	if (w->have_report)
		kr_store_report_row_fini(&w->report);
	for (i = 0; i < w->cap; i++)
		kr_buf_fini(&w->bufs[i]);
	kr_store_close(&w->mstore);
	free(w->claims);
	free(w->msgs);
	free(w->bufs);
	free(w->env_from);
	free(w->state);
	free(w->dom);
	free(w->held);
	free(w->dbslot);
}

/* Makes sure the transport matches the config of this batch. */
static int
worker_transport(struct worker *w, unsigned gen, struct kr_err *err)
{
	const struct kr_transport_ops *ops;

	if (w->t != NULL && w->cfg_gen == gen)
		return 0;
	if (w->t != NULL)
		w->ops->destroy(&w->t);
	ops = kr_transport_for(w->cfg);
	if (ops == NULL)
		return kr_err_set(err, KR_ERR_INVALID, "no transport");
	if (ops->create(w->cfg, &w->t, err) < 0) {
		w->t = NULL;
		return -1;
	}
	w->ops = ops;
	w->cfg_gen = gen;
	return 0;
}

static int
worker_report(struct worker *w, int64_t id, struct kr_err *err)
{
	struct kr_delivery *d = w->d;
	int r;

	if (w->have_report && w->report.id == id)
		return 0;
	if (w->have_report) {
		kr_store_report_row_fini(&w->report);
		w->have_report = false;
	}
	memset(&w->report, 0, sizeof(w->report));
	pthread_mutex_lock(&d->store_lock);
	r = kr_store_report_get(d->store, id, &w->report, err);
	pthread_mutex_unlock(&d->store_lock);
	if (r < 0)
		return -1;
	if (w->report.id != id) {
		kr_store_report_row_fini(&w->report);
		return kr_err_set(err, KR_ERR_NOTFOUND, "report %lld missing",
		    (long long)id);
	}
	w->have_report = true;
	return 0;
}

/* Records trouble (msg != NULL) or its end (msg NULL) under d->lock. The
 * log gets one line when trouble starts or its reason changes and one when
 * it ends, not one per failed attempt. */
static void
trouble_set(struct kr_delivery *d, struct trouble *t, const char *what,
    const char *msg)
{
	int64_t now = (int64_t)time(NULL);

	pthread_mutex_lock(&d->lock);
	if (msg == NULL) {
		if (t->msg[0] != '\0')
			kr_log_info("delivery %s ok again after=%llds "
				    "failures=%u",
			    what, (long long)(now - t->since), t->fails);
		t->msg[0] = '\0';
		t->fails = 0;
	} else {
		if (t->msg[0] == '\0') {
			t->since = now;
			kr_log_warn("delivery %s failing, holding work: %s",
			    what, msg);
		} else if (strcmp(t->msg, msg) != 0)
			kr_log_warn("delivery %s still failing: %s", what,
			    msg);
		snprintf(t->msg, sizeof(t->msg), "%s", msg);
		t->fails++;
	}
	pthread_mutex_unlock(&d->lock);
}

/* Relay trouble from one message's outcome: a 4xx, a dropped or silent
 * connection. A 5xx names one recipient, not the relay. */
static void
trouble_relay_msg(struct kr_delivery *d, const struct kr_msg *m)
{
	char msg[256];

	if (m->result == KR_SEND_OK) {
		trouble_set(d, &d->relay, "relay", NULL);
		return;
	}
	if (m->result == KR_SEND_PERM)
		return;
	/* Without a reply code the transport's text names the relay
	 * already ("127.0.0.1:25: Connection refused"), as the session
	 * error does: the same words, so one line in the log. */
	if (m->code > 0)
		snprintf(msg, sizeof(msg), "%.63s: %d %.170s",
		    m->relay[0] ? m->relay : "relay", m->code, m->reply);
	else if (m->result == KR_SEND_UNCERTAIN)
		snprintf(msg, sizeof(msg), "%.63s: no answer after the message",
		    m->relay[0] ? m->relay : "relay");
	else
		snprintf(msg, sizeof(msg), "%s",
		    m->reply[0] ? m->reply : "no answer");
	trouble_set(d, &d->relay, "relay", msg);
}

/* Counts one outcome; latency < 0: no SMTP transaction to time. */
static void
count_outcome(struct kr_delivery *d, const char *list_id, const char *relay,
    enum kr_send_result res, bool failed_now, int64_t report_id,
    double latency)
{
	struct kr_delivery_stats *st;
	size_t b;

	double now = mono_now(), inst;

	pthread_mutex_lock(&d->lock);
	st = stats_for(d, list_id, relay);
	if (res == KR_SEND_OK) {
		d->obs_count++;
		if (now - d->obs_start >= 1.0) {
			inst = (double)d->obs_count / (now - d->obs_start);
			d->obs_rate = d->obs_rate > 0 ?
			    (d->obs_rate + inst) / 2 : inst;
			d->obs_start = now;
			d->obs_count = 0;
		}
	}
	if (latency >= 0) {
		for (b = 0; b < N_LAT && latency > lat_bounds[b]; b++)
			;
		d->lat_count[b]++;
		d->lat_n++;
		d->lat_sum += latency;
	}
	switch (res) {
	case KR_SEND_OK:
		st->sent++;
		break;
	case KR_SEND_TEMP:
		if (failed_now)
			st->failed++;
		else
			st->deferred++;
		break;
	case KR_SEND_PERM:
		st->failed++;
		st->bounced++;
		break;
	case KR_SEND_UNCERTAIN:
		st->uncertain++;
		break;
	}
	if (report_id > 0)
		d->current_report = report_id;
	pthread_mutex_unlock(&d->lock);
}

/* The transport's done callback: records one outcome at once. */
/* An SMTP-time 5xx counts like a returned bounce (policy of
 * kr_store_bounce_record): hard when it is about the address, soft for a
 * full mailbox or a policy/content block, and only an event when it is
 * about us (authentication, relaying, protocol): kr_bounce_smtp_kind. */
static void
record_rejection(struct kr_delivery *d, const struct kr_config *cfg,
    const struct kr_claim *c, const struct kr_msg *m, int64_t now)
{
	struct kr_bounce_row row;
	struct kr_bounce_policy pol;
	struct kr_bounce_result res;
	struct kr_err err = {0};
	char st[16];
	enum kr_bounce_kind kind;
	int r;

	memset(&row, 0, sizeof(row));
	kind = kr_bounce_smtp_kind(m->code, m->reply, st);
	pthread_mutex_lock(&d->store_lock);
	if (kind == KR_BOUNCE_IGNORE) {
		r = kr_store_event(d->store, "rejected", c->subscriber_id,
		    c->report_id, m->reply, &err);
		pthread_mutex_unlock(&d->store_lock);
		kr_log_warn("delivery rejection not about the recipient, not "
			    "counted as a bounce id=%lld code=%d",
		    (long long)c->delivery_id, m->code);
		if (r < 0)
			kr_log_warn("delivery event id=%lld: %s",
			    (long long)c->delivery_id, err.msg);
		return;
	}
	row.at = now;
	row.subscriber_id = c->subscriber_id;
	row.report_id = c->report_id;
	row.kind = kind == KR_BOUNCE_SOFT ? KR_STORE_BOUNCE_SOFT
					  : KR_STORE_BOUNCE_HARD;
	memcpy(row.status, st, sizeof(row.status));
	snprintf(row.diagnostic, sizeof(row.diagnostic), "%d %.240s", m->code,
	    m->reply);
	memcpy(row.source, "smtp", 5);
	pol.hard_threshold = cfg->bounce.hard_threshold;
	pol.soft_threshold = cfg->bounce.soft_threshold;
	pol.soft_window = cfg->bounce.soft_window;
	pol.reset_after = cfg->bounce.reset_after;
	r = kr_store_bounce_record(d->store, &row, &pol, &res, &err);
	pthread_mutex_unlock(&d->store_lock);
	if (r < 0)
		kr_log_warn("delivery bounce record id=%lld: %s",
		    (long long)c->delivery_id, err.msg);
	else if (res.bounced)
		kr_log_info("delivery subscriber bounced sub=%lld bounces=%d "
			    "cancelled=%lld",
		    (long long)c->subscriber_id, res.bounces,
		    (long long)res.cancelled);
}

static void
worker_done(void *ctx, struct kr_msg *m)
{
	struct worker *w = ctx;
	struct kr_delivery *d = w->d;
	struct kr_claim *c = &w->claims[(size_t)(uintptr_t)m->user];
	const struct kr_config *cfg = w->cfg;
	struct kr_err err = {0};
	int64_t now = (int64_t)time(NULL), next = 0;
	bool failed_now = false;
	int r = 0;
	double rnd, mn;
	char logreply[sizeof(m->reply)];

	switch (m->result) {
	case KR_SEND_OK:
		r = store_mark(w, MARK_SENT, c, now, 0, m->code,
		    m->reply, &err);
		kr_log_debug("delivery sent id=%lld report=%lld sub=%lld "
			     "rcpt=%s code=%d relay=%s reply=\"%s\"",
		    (long long)c->delivery_id, (long long)c->report_id,
		    (long long)c->subscriber_id, c->email, m->code, m->relay,
		    m->reply);
		break;
	case KR_SEND_TEMP:
		/* Once per batch: a 421 greeting answers every message. */
		if (!w->slowed && kr_delivery_is_slowdown(m->code, m->reply)) {
			double rate;

			w->slowed = true;
			pthread_mutex_lock(&d->lock);
			rate = slow_down(d, addr_domain(c->email), mono_now());
			pthread_mutex_unlock(&d->lock);
			kr_log_warn("delivery slow-down code=%d relay=%s "
				    "rate=%.1f/s hold=%.0fs",
			    m->code, m->relay, rate, BACKOFF_HOLD);
		}
		rnd = (double)rand_r(&w->seed) / ((double)RAND_MAX + 1.0);
		if (kr_delivery_retry_next(cfg->delivery.retry,
			cfg->delivery.n_retry, cfg->delivery.max_age,
			c->attempts, c->queued_at, now, rnd, &next) != 0) {
			failed_now = true;
			r = store_mark(w, MARK_FAILED, c, now, 0,
			    m->code, m->reply, &err);
			kr_delivery_log_reply(m->reply, logreply,
			    sizeof(logreply));
			kr_log_info("delivery failed id=%lld report=%lld "
				    "sub=%lld code=%d attempts=%d "
				    "reason=retries-exhausted reply=\"%s\"",
			    (long long)c->delivery_id, (long long)c->report_id,
			    (long long)c->subscriber_id, m->code,
			    c->attempts + 1, logreply);
		} else {
			r = store_mark(w, MARK_DEFERRED, c, now,
			    next, m->code, m->reply, &err);
			kr_delivery_log_reply(m->reply, logreply,
			    sizeof(logreply));
			kr_log_info("delivery deferred id=%lld report=%lld "
				    "sub=%lld code=%d retry_in=%llds "
				    "reply=\"%s\"",
			    (long long)c->delivery_id, (long long)c->report_id,
			    (long long)c->subscriber_id, m->code,
			    (long long)(next - now), logreply);
		}
		break;
	case KR_SEND_PERM:
		r = store_mark(w, MARK_FAILED, c, now, 0,
		    m->code, m->reply, &err);
		if (r == 0)
			record_rejection(d, cfg, c, m, now);
		kr_delivery_log_reply(m->reply, logreply, sizeof(logreply));
		kr_log_info("delivery failed id=%lld report=%lld sub=%lld "
			    "code=%d reason=rejected reply=\"%s\"",
		    (long long)c->delivery_id, (long long)c->report_id,
		    (long long)c->subscriber_id, m->code, logreply);
		break;
	case KR_SEND_UNCERTAIN:
		r = store_mark(w, MARK_UNCERTAIN, c, now, 0,
		    m->code, m->reply, &err);
		kr_log_warn("delivery uncertain id=%lld report=%lld sub=%lld "
			    "relay=%s",
		    (long long)c->delivery_id, (long long)c->report_id,
		    (long long)c->subscriber_id, m->relay);
		break;
	}
	if (r < 0 && err.code != KR_ERR_STALE) {
		/* The row keeps its lease and comes back when it expires: a
		 * duplicate at worst, never a loss. */
		kr_log_err("delivery record id=%lld: %s",
		    (long long)c->delivery_id, err.msg);
		trouble_set(d, &d->db, "store", err.msg);
	}
	trouble_relay_msg(d, m);
	w->state[(size_t)(uintptr_t)m->user] = MS_DONE;
	mn = mono_now();
	count_outcome(d, c->list_id, m->relay, m->result, failed_now,
	    c->report_id, mn - w->t_last);
	w->t_last = mn;
}

/* Composes claim i into bufs[i]; 0, or -1 with err set. */
static int
worker_compose(struct worker *w, size_t i, struct kr_err *err)
{
	const struct kr_claim *c = &w->claims[i];
	const struct kr_cfg_list *list;
	const struct kr_dkim *dk;
	int64_t now = (int64_t)time(NULL);

	list = kr_config_list(w->cfg, c->list_id);
	if (list == NULL)
		return kr_err_set(err, KR_ERR_INVALID,
		    "list %s is not in the config", c->list_id);
	kr_buf_reset(&w->bufs[i]);
	w->env_from[i][0] = '\0';
	if (c->kind == KR_DELIVERY_CONFIRM) {
		if (kr_compose_confirm(w->cfg, list, c, w->ring, now,
			&w->bufs[i], w->env_from[i], err) < 0)
			return -1;
	} else {
		if (worker_report(w, c->report_id, err) < 0)
			return -1;
		if (kr_compose_report(w->cfg, list, &w->report, c, w->ring,
			now, &w->bufs[i], w->env_from[i], err) < 0)
			return -1;
	}
	/* Signed last, over the exact bytes handed to the transport. The
	 * codes map onto compose_failed(): KR_ERR_INVALID (the message
	 * itself cannot be signed) fails it, KR_ERR_IO (the crypto library)
	 * defers it. */
	dk = kr_dkim_set_get(w->dkim, c->list_id);
	if (dk != NULL && kr_dkim_prepend(dk, &w->bufs[i], now, err) < 0) {
		kr_err_prefix(err, "dkim");
		return -1;
	}
	return 0;
}

/* A message that could not be composed: bad input (a list gone from the
 * config, a report row missing) fails it; anything else (the store busy
 * or broken for a moment) defers it on the retry schedule, so a passing
 * problem neither loses it nor spins on it. */
static void
compose_failed(struct worker *w, size_t i, struct kr_err *cerr)
{
	struct kr_delivery *d = w->d;
	struct kr_claim *c = &w->claims[i];
	const struct kr_config *cfg = w->cfg;
	struct kr_err err = {0};
	int64_t now = (int64_t)time(NULL), next = 0;
	bool fail;
	double rnd;

	fail = cerr->code == KR_ERR_INVALID || cerr->code == KR_ERR_NOTFOUND;
	rnd = (double)rand_r(&w->seed) / ((double)RAND_MAX + 1.0);
	if (!fail && kr_delivery_retry_next(cfg->delivery.retry,
			 cfg->delivery.n_retry, cfg->delivery.max_age,
			 c->attempts, c->queued_at, now, rnd, &next) != 0)
		fail = true;
	kr_log_err("delivery compose id=%lld report=%lld sub=%lld "
		   "outcome=%s: %s",
	    (long long)c->delivery_id, (long long)c->report_id,
	    (long long)c->subscriber_id, fail ? "failed" : "deferred",
	    cerr->msg);
	if (store_mark(w, fail ? MARK_FAILED : MARK_DEFERRED, c,
		now, next, 0, cerr->msg, &err) < 0)
		kr_log_err("delivery record id=%lld: %s",
		    (long long)c->delivery_id, err.msg);
	w->state[i] = MS_DONE;
	count_outcome(d, c->list_id, "", KR_SEND_TEMP, fail, 0, -1);
}

/* With shared rates (d->lock held): when the global bucket or claim i's
 * domain bucket has no granted token left, asks the database for a tenth
 * of a second's worth (d->lock released meanwhile) and returns true, after
 * a short wait when none was granted; false when both have one. */
static bool
worker_grant(struct worker *w, size_t i)
{
	struct kr_delivery *d = w->d;
	struct kr_err err = {0};
	char key[300];
	double rate, want, got = 0;
	ssize_t j = -1;
	int r;

	if (d->global.rate > 0 && d->global_grant < 1.0 - 1e-9) {
		rate = d->global.rate;
		snprintf(key, sizeof(key), "global");
	} else if (w->dom[i] >= 0 && d->domains != NULL &&
	    (size_t)w->dom[i] < d->n_domains &&
	    d->domains[w->dom[i]].bucket.rate > 0 &&
	    d->domains[w->dom[i]].grant < 1.0 - 1e-9) {
		j = w->dom[i];
		rate = d->domains[j].bucket.rate;
		snprintf(key, sizeof(key), "domain:%s", d->domains[j].domain);
	} else {
		return false;
	}
	want = rate / 10 >= 1 ? (double)(int64_t)(rate / 10) : 1;
	pthread_mutex_unlock(&d->lock);
	pthread_mutex_lock(&d->store_lock);
	r = kr_store_rate_take(d->store, key, rate, rate, want, &got, &err);
	pthread_mutex_unlock(&d->store_lock);
	pthread_mutex_lock(&d->lock);
	if (r < 0) {
		trouble_set(d, &d->db, "store", err.msg);
		got = 0;
	}
	if (j < 0)
		d->global_grant += got;
	else if ((size_t)j < d->n_domains)
		d->domains[j].grant += got;
	if (got < 1 && !d->stop)
		timed_wait(d, r < 0 ? 0.5 : 1.0 / rate > 0.25 ? 0.25 : 1.0 / rate);
	return true;
}

/* Takes a token from the global bucket and claim i's domain bucket, waiting
 * as long as needed. Returns 0, or -1 when asked to stop meanwhile. */
static int
worker_rate(struct worker *w, size_t i)
{
	struct kr_delivery *d = w->d;
	struct kr_delivery_bucket *db, *ab;
	double now, w1, w2, w3;
	int r = -1;

	pthread_mutex_lock(&d->lock);
	while (!d->stop) {
		now = mono_now();
		db = w->dom[i] >= 0 ? &d->domains[w->dom[i]].bucket : NULL;
		ab = now < d->auto_until ? &d->auto_bucket : NULL;
		w1 = bucket_wait(&d->global, now);
		w2 = db ? bucket_wait(db, now) : 0;
		w3 = ab ? bucket_wait(ab, now) : 0;
		if (w1 <= 0 && w2 <= 0 && w3 <= 0 && d->shared_rates &&
		    worker_grant(w, i)) {
			continue; /* a grant was asked for: look again */
		}
		if (w1 <= 0 && w2 <= 0 && w3 <= 0) {
			if (d->shared_rates && d->global.rate > 0)
				d->global_grant -= 1.0;
			if (d->shared_rates && db && db->rate > 0)
				d->domains[w->dom[i]].grant -= 1.0;
			(void)kr_delivery_bucket_take(&d->global, now);
			if (db)
				(void)kr_delivery_bucket_take(db, now);
			if (ab)
				(void)kr_delivery_bucket_take(ab, now);
			r = 0;
			break;
		}
		if (w2 > w1)
			w1 = w2;
		timed_wait(d, w3 > w1 ? w3 : w1);
	}
	pthread_mutex_unlock(&d->lock);
	return r;
}

static void worker_unslot(struct worker *w);
static int worker_slots_local(struct worker *w, size_t n);

/* Several hosts: the per-domain connection caps hold for their sum. Each
 * local slot also takes one of the domain's cap slots in the database on
 * the worker's own connection (an advisory lock there: a host that dies
 * frees its slots with its connections). Returns 1 when every held domain
 * got one, 0 when one was full on other hosts (all given back), -1 on a
 * store error (given back; the local caps alone then apply). */
static int
worker_db_slots(struct worker *w)
{
	struct kr_delivery *d = w->d;
	struct kr_err err = {0};
	char (*names)[256];
	unsigned *caps;
	size_t k, j, n;
	int r = 1, got;

	pthread_mutex_lock(&d->lock);
	n = w->n_held;
	names = kr_xcalloc(n ? n : 1, sizeof(*names));
	caps = kr_xcalloc(n ? n : 1, sizeof(*caps));
	for (k = 0; k < n; k++) {
		snprintf(names[k], sizeof(names[k]), "%s",
		    d->domains[w->held[k]].domain);
		caps[k] = d->domains[w->held[k]].cap;
	}
	pthread_mutex_unlock(&d->lock);
	for (k = 0; k < n && r == 1; k++) {
		w->dbslot[k] = -1;
		got = kr_store_slot_take(w->mstore, names[k], caps[k],
		    &w->dbslot[k], &err);
		if (got < 0) {
			kr_log_warn("delivery worker=%u: connection slot of %s "
			    "in the database: %s", w->idx, names[k], err.msg);
			r = -1;
		} else if (got == 0) {
			r = 0;
		}
	}
	if (r != 1) {
		for (j = 0; j < k; j++)
			if (w->dbslot[j] >= 0)
				(void)kr_store_slot_give(w->mstore, names[j],
				    w->dbslot[j], NULL);
		for (j = 0; j < n; j++)
			w->dbslot[j] = -1;
	}
	free(names);
	free(caps);
	return r;
}

/* Takes a connection slot in every capped domain of the batch at once.
 * Returns 0, or -1 when asked to stop meanwhile. */
static int
worker_slots(struct worker *w, size_t n)
{
	int r;

	for (;;) {
		if ((r = worker_slots_local(w, n)) < 0)
			return r;
		if (w->mstore == NULL || w->n_held == 0)
			return 0;
		if (worker_db_slots(w) != 0)
			return 0; /* -1: the local caps alone (logged) */
		/* full on other hosts: let go of ours, wait, try again */
		worker_unslot(w);
		pthread_mutex_lock(&w->d->lock);
		if (!w->d->stop)
			timed_wait(w->d, 0.1);
		pthread_mutex_unlock(&w->d->lock);
	}
}

/* This host's own count of each capped domain's sessions. */
static int
worker_slots_local(struct worker *w, size_t n)
{
	struct kr_delivery *d = w->d;
	size_t i, k;
	bool all;
	int r = -1;

	pthread_mutex_lock(&d->lock);
	w->n_held = 0;
	for (i = 0; i < n; i++) {
		w->dom[i] = domain_find(d, addr_domain(w->claims[i].email));
		if (w->dom[i] < 0 || d->domains[w->dom[i]].cap == 0)
			continue;
		for (k = 0; k < w->n_held; k++)
			if (w->held[k] == (size_t)w->dom[i])
				break;
		if (k == w->n_held)
			w->held[w->n_held++] = (size_t)w->dom[i];
	}
	while (!d->stop) {
		all = true;
		for (k = 0; k < w->n_held && all; k++)
			if (d->domains[w->held[k]].cap > 0 &&
			    d->domains[w->held[k]].used >=
				d->domains[w->held[k]].cap)
				all = false;
		if (all) {
			for (k = 0; k < w->n_held; k++)
				d->domains[w->held[k]].used++;
			r = 0;
			break;
		}
		timed_wait(d, IDLE_WAIT);
	}
	if (r < 0)
		w->n_held = 0;
	pthread_mutex_unlock(&d->lock);
	return r;
}

static void
worker_unslot(struct worker *w)
{
	struct kr_delivery *d = w->d;
	char name[256];
	size_t k;

	for (k = 0; w->mstore != NULL && k < w->n_held; k++) {
		if (w->dbslot[k] < 0)
			continue;
		pthread_mutex_lock(&d->lock);
		snprintf(name, sizeof(name), "%s",
		    d->domains[w->held[k]].domain);
		pthread_mutex_unlock(&d->lock);
		(void)kr_store_slot_give(w->mstore, name, w->dbslot[k], NULL);
		w->dbslot[k] = -1;
	}
	pthread_mutex_lock(&d->lock);
	for (k = 0; k < w->n_held; k++)
		if (d->domains[w->held[k]].used > 0)
			d->domains[w->held[k]].used--;
	w->n_held = 0;
	pthread_cond_broadcast(&d->wake);
	pthread_mutex_unlock(&d->lock);
}

static void governor_hook(struct worker *w, size_t n);

static void
worker_batch(struct worker *w, size_t n)
{
	struct kr_delivery *d = w->d;
	struct kr_err err = {0};
	size_t i, k = 0;
	bool slots = false;

	w->slowed = false;
	for (i = 0; i < n; i++) {
		w->state[i] = MS_CLAIMED;
		w->dom[i] = -1;
	}
	if (worker_slots(w, n) < 0)
		goto out;
	slots = true;
	for (i = 0; i < n; i++) {
		struct kr_claim *c = &w->claims[i];

		if (worker_compose(w, i, &err) < 0) {
			compose_failed(w, i, &err);
			continue;
		}
		if (worker_rate(w, i) < 0)
			break; /* stopping: the rest is released below */
		memset(&w->msgs[k], 0, sizeof(w->msgs[k]));
		w->msgs[k].id = c->delivery_id;
		w->msgs[k].mail_from = w->env_from[i];
		w->msgs[k].rcpt = c->email;
		w->msgs[k].data = w->bufs[i].data ? w->bufs[i].data : "";
		w->msgs[k].len = w->bufs[i].len;
		w->msgs[k].user = (void *)(uintptr_t)i;
		w->state[i] = MS_COMPOSED;
		k++;
	}
	w->t_last = mono_now();
	if (k > 0 && w->ops->send(w->t, w->msgs, k, worker_done, w, &err) < 0) {
		/* No relay could be reached: the batch is deferred on its
		 * schedule; this worker pauses (1, 2, 4… 30 s) instead of
		 * burning the attempts of the rest of the queue. */
		w->pause = w->pause > 0 ? w->pause * 2 : 1;
		if (w->pause > MAX_PAUSE)
			w->pause = MAX_PAUSE;
		kr_log_warn("delivery session failed worker=%u messages=%zu "
			    "pause=%us: %s",
		    w->idx, k, w->pause, err.msg);
		trouble_set(d, &d->relay, "relay", err.msg);
	} else if (k > 0) {
		w->pause = 0;
	}
out:
	if (slots)
		worker_unslot(w);
	for (i = 0; i < n; i++) {
		if (w->state[i] == MS_DONE)
			continue;
		if (store_mark(w, MARK_RELEASE, &w->claims[i], 0, 0, 0, NULL,
			&err) < 0 && err.code != KR_ERR_STALE)
			kr_log_err("delivery release id=%lld: %s",
			    (long long)w->claims[i].delivery_id, err.msg);
	}
	governor_hook(w, n);
}

/* The governor hook: after a batch, the reports it sent from are checked
 * (lib/governor.c decides and pauses). Counting a report's rows is a
 * scan (done only while its complaints or bounces could pause it): the
 * next look waits 50 times as long as this one took, at most 0.1 s. */
static void
governor_hook(struct worker *w, size_t n)
{
	struct kr_delivery *d = w->d;
	struct kr_err err = {0};
	int64_t ids[4];
	const char *lists[4];
	size_t n_ids = 0, n_lists = 0, i, j;
	double t0;
	char why[256];
	int r;

	for (i = 0; i < n; i++) {
		int64_t id = w->claims[i].report_id;
		const char *l = w->claims[i].list_id;

		if (w->claims[i].kind == KR_DELIVERY_CONFIRM) {
			for (j = 0; j < n_lists && strcmp(lists[j], l) != 0; j++)
				;
			if (j == n_lists && n_lists < KR_NELEM(lists))
				lists[n_lists++] = l;
			continue;
		}
		for (j = 0; j < n_ids && ids[j] != id; j++)
			;
		if (id > 0 && j == n_ids && n_ids < KR_NELEM(ids))
			ids[n_ids++] = id;
	}
	t0 = mono_now();
	pthread_mutex_lock(&d->lock);
	if ((n_ids == 0 && n_lists == 0) || t0 < d->gov_next) {
		pthread_mutex_unlock(&d->lock);
		return;
	}
	d->gov_next = t0 + 3600; /* this worker looks; the others skip */
	pthread_mutex_unlock(&d->lock);
	for (i = 0; i < n_ids; i++) {
		pthread_mutex_lock(&d->store_lock);
		r = kr_governor_check(d->store, w->cfg, ids[i], why, sizeof(why),
		    &err);
		pthread_mutex_unlock(&d->store_lock);
		if (r < 0)
			kr_log_warn("governor report=%lld: %s", (long long)ids[i],
			    err.msg);
		pthread_mutex_lock(&d->lock);
		if (r == 1) {
			kr_log_warn("governor report=%lld %s", (long long)ids[i],
			    why);
			snprintf(d->governor.msg, sizeof(d->governor.msg), "%s",
			    why);
			d->governor.since = (int64_t)time(NULL);
			d->gov_report = ids[i];
		} else if (r == 0 && d->gov_report == ids[i]) {
			d->governor.msg[0] = '\0'; /* sending again (resumed) */
			d->gov_report = 0;
		}
		pthread_mutex_unlock(&d->lock);
	}
	for (i = 0; i < n_lists; i++) {
		pthread_mutex_lock(&d->store_lock);
		r = kr_governor_check_confirm(d->store, w->cfg, lists[i], why,
		    sizeof(why), &err);
		pthread_mutex_unlock(&d->store_lock);
		if (r < 0)
			kr_log_warn("governor list=%s: %s", lists[i], err.msg);
		pthread_mutex_lock(&d->lock);
		if (r == 1) {
			kr_log_warn("governor list=%s %s", lists[i], why);
			snprintf(d->gov_confirm.msg, sizeof(d->gov_confirm.msg),
			    "%s", why);
			snprintf(d->gov_list, sizeof(d->gov_list), "%s",
			    lists[i]);
		} else if (r == 0 && strcmp(d->gov_list, lists[i]) == 0) {
			d->gov_confirm.msg[0] = '\0';
			d->gov_list[0] = '\0';
		}
		pthread_mutex_unlock(&d->lock);
	}
	pthread_mutex_lock(&d->lock);
	/* at most 50 times the last look, and at most 0.1 s: the counting
	 * is done only while complaints or bounces could pause a report */
	t0 = 50 * (mono_now() - t0);
	d->gov_next = mono_now() + (t0 < 0.1 ? t0 : 0.1);
	pthread_mutex_unlock(&d->lock);
}

/* Nothing to claim: wait up to IDLE_WAIT for a kick (a sign-up, the
 * outbox, a reload in this process) or, every IDLE_SLICE, for a commit by
 * another connection (`kairanctl send` queueing a report: its process
 * cannot kick ours), seen as a new kr_store_changes() mark. */
static void
worker_idle(struct worker *w, unsigned kicks, int64_t version)
{
	struct kr_delivery *d = w->d;
	double until = mono_now() + IDLE_WAIT;
	int64_t now_version;
	int r;

	pthread_mutex_lock(&d->lock);
	while (!d->stop && d->kicks == kicks && mono_now() < until) {
		timed_wait(d, IDLE_SLICE);
		if (version < 0 || d->stop || d->kicks != kicks)
			continue;
		pthread_mutex_unlock(&d->lock);
		pthread_mutex_lock(&d->store_lock);
		r = kr_store_changes(d->store, &now_version, NULL);
		pthread_mutex_unlock(&d->store_lock);
		pthread_mutex_lock(&d->lock);
		if (r == 0 && now_version != version)
			break;
	}
	pthread_mutex_unlock(&d->lock);
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	struct kr_delivery *d = w->d;
	struct kr_err err = {0};
	size_t max, n;
	unsigned kicks, gen;
	double eff;
	int64_t now, version = -1;
	int r;

	if (d->shared_rates) {
		pthread_mutex_lock(&d->lock);
		r = kr_store_open(d->cfg->database, d->cfg->database_password_file,
		    &w->mstore, &err);
		pthread_mutex_unlock(&d->lock);
		if (r < 0)
			kr_log_warn("delivery worker=%u: no connection of its "
			    "own, sharing one: %s", w->idx, err.msg);
	}
	for (;;) {
		pthread_mutex_lock(&d->lock);
		if (d->stop) {
			pthread_mutex_unlock(&d->lock);
			break;
		}
		w->cfg = d->cfg;
		w->ring = d->ring;
		w->dkim = d->dkim;
		w->using_gen = d->cfg_gen;
		kicks = d->kicks;
		max = w->cfg->delivery.batch ? w->cfg->delivery.batch : 100;
		/* With a global rate, a batch holds at most about a second
		 * of sending, so leases and shutdown stay short. */
		eff = effective_rate(d, mono_now());
		if (eff > 0 && max > (size_t)eff + 1)
			max = (size_t)eff + 1;
		gen = d->cfg_gen;
		pthread_mutex_unlock(&d->lock);
		if (worker_transport(w, gen, &err) < 0) {
			kr_log_err("delivery transport worker=%u: %s", w->idx,
			    err.msg);
			trouble_set(d, &d->relay, "relay", err.msg);
			pthread_mutex_lock(&d->lock);
			if (!d->stop)
				timed_wait(d, 5.0);
			pthread_mutex_unlock(&d->lock);
			continue;
		}

		worker_grow(w, max);
		now = (int64_t)time(NULL);
		n = 0;
		pthread_mutex_lock(&d->store_lock);
		r = kr_store_claim(d->store, &d->owner, now,
		    now + (int64_t)(w->cfg->delivery.lease ?
			    w->cfg->delivery.lease : 300),
		    max, w->claims, &n, &err);
		if (r == 0 && n == 0 &&
		    kr_store_changes(d->store, &version, NULL) < 0)
			version = -1;
		pthread_mutex_unlock(&d->store_lock);
		if (r < 0) {
			/* Full disk, a lock held by another process, a broken
			 * file: claim nothing, say why once, try again. */
			trouble_set(d, &d->db, "store", err.msg);
			nap(err.code == KR_ERR_BUSY ? 0.05 : 1.0);
			continue;
		}
		trouble_set(d, &d->db, "store", NULL);
		if (n == 0) {
			worker_idle(w, kicks, version);
			continue;
		}
		worker_batch(w, n);
		if (w->pause > 0) {
			double until = mono_now() + w->pause;

			pthread_mutex_lock(&d->lock);
			while (!d->stop && mono_now() < until)
				timed_wait(d, until - mono_now());
			pthread_mutex_unlock(&d->lock);
		}
	}
	return NULL;
}

/* ---- the pool ---- */

static void
pool_free(struct kr_delivery *d)
{
	size_t i;

	for (i = 0; i < d->n_workers; i++)
		worker_fini(&d->workers[i]);
	free(d->workers);
	for (i = 0; i < d->n_domains; i++)
		free(d->domains[i].domain);
	free(d->domains);
	free(d->stats);
	kr_store_close(&d->store);
	pthread_mutex_destroy(&d->lock);
	pthread_mutex_destroy(&d->store_lock);
	pthread_cond_destroy(&d->wake);
	free(d);
}

int
kr_delivery_start(const struct kr_config *cfg, const struct kr_keyring *ring,
    struct kr_delivery **d_out, struct kr_err *err)
{
	return kr_delivery_start_dkim(cfg, ring, NULL, d_out, err);
}

/* This host's claims are made as d->owner; the leases its previous run
 * (a kairand killed here) still holds are let go at once, so those copies
 * go again now rather than when the leases run out. */
static int
set_owner(struct kr_delivery *d, const struct kr_config *cfg,
    struct kr_err *err)
{
	uint64_t inc = 0;
	int64_t n = 0;

	if (cfg->host_id != NULL && cfg->host_id[0] != '\0')
		snprintf(d->host, sizeof(d->host), "%s", cfg->host_id);
	else if (gethostname(d->host, sizeof(d->host) - 1) < 0 ||
	    d->host[0] == '\0')
		snprintf(d->host, sizeof(d->host), "localhost");
	while (inc == 0) {
		if (getrandom(&inc, sizeof(inc), 0) != (ssize_t)sizeof(inc))
			return kr_err_set(err, KR_ERR_IO, "delivery: getrandom: %s",
			    strerror(errno));
		inc &= INT64_MAX;
	}
	d->owner.host = d->host;
	d->owner.incarnation = (int64_t)inc;
	if (kr_store_reclaim(d->store, &d->owner, (int64_t)time(NULL), &n,
		err) < 0) {
		kr_err_prefix(err, "delivery: taking back this host's leases");
		return -1;
	}
	if (n > 0)
		kr_log_info("delivery host=%s took back %lld copies its previous "
			    "run had claimed", d->host, (long long)n);
	return 0;
}

int
kr_delivery_start_dkim(const struct kr_config *cfg,
    const struct kr_keyring *ring, const struct kr_dkim_set *dkim,
    struct kr_delivery **d_out, struct kr_err *err)
{
	struct kr_delivery *d;
	pthread_condattr_t ca;
	size_t i;
	int rc = -1, e;

	d = kr_xcalloc(1, sizeof(*d));
	pthread_mutex_init(&d->lock, NULL);
	pthread_mutex_init(&d->store_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&d->wake, &ca);
	pthread_condattr_destroy(&ca);
	d->ring = ring;
	d->dkim = dkim;
	kr_delivery_bucket_init(&d->global, 0, mono_now());
	apply_config(d, cfg);
	if (kr_store_open(cfg->database, cfg->database_password_file,
	    &d->store, err) < 0) {
		kr_err_prefix(err, "delivery");
		goto out;
	}
	if (set_owner(d, cfg, err) < 0)
		goto out;
	d->shared_rates = kr_store_rates_shared(d->store);
	d->n_workers = cfg->delivery.workers ? cfg->delivery.workers : 1;
	d->workers = kr_xcalloc(d->n_workers, sizeof(*d->workers));
	for (i = 0; i < d->n_workers; i++) {
		struct worker *w = &d->workers[i];

		w->d = d;
		w->idx = (unsigned)i;
		w->seed = (unsigned)time(NULL) ^ ((unsigned)i * 2654435761u);
		if ((e = pthread_create(&w->thread, NULL, worker_main, w))) {
			kr_err_set(err, KR_ERR_IO, "delivery: thread: %s",
			    strerror(e));
			goto out;
		}
		w->started = true;
	}
	pthread_mutex_lock(&pool_lock);
	pool = d;
	pthread_mutex_unlock(&pool_lock);
	kr_log_info("delivery started host=%s workers=%zu transport=%s "
		    "rate=%g",
	    d->host, d->n_workers, kr_transport_for(cfg) ?
		kr_transport_for(cfg)->name : "?", cfg->delivery.rate);
	*d_out = d;
	d = NULL;
	rc = 0;
out:
	if (d != NULL)
		kr_delivery_stop(&d);
	return rc;
}

unsigned
kr_delivery_set_config(struct kr_delivery *d, const struct kr_config *cfg,
    const struct kr_keyring *ring)
{
	return kr_delivery_set_config_dkim(d, cfg, ring, NULL);
}

unsigned
kr_delivery_set_config_dkim(struct kr_delivery *d,
    const struct kr_config *cfg, const struct kr_keyring *ring,
    const struct kr_dkim_set *dkim)
{
	unsigned gen;

	pthread_mutex_lock(&d->lock);
	apply_config(d, cfg);
	gen = d->cfg_gen;
	if (ring != NULL)
		d->ring = ring;
	d->dkim = dkim;
	pthread_mutex_unlock(&d->lock);
	if (cfg->delivery.workers != d->n_workers)
		kr_log_warn("delivery workers=%u takes effect at restart "
			    "(running %zu)",
		    cfg->delivery.workers, d->n_workers);
	return gen;
}

void
kr_delivery_kick(void)
{
	pthread_mutex_lock(&pool_lock);
	if (pool != NULL) {
		pthread_mutex_lock(&pool->lock);
		pool->kicks++;
		pthread_cond_broadcast(&pool->wake);
		pthread_mutex_unlock(&pool->lock);
	}
	pthread_mutex_unlock(&pool_lock);
}

void
kr_delivery_stop(struct kr_delivery **dp)
{
	struct kr_delivery *d;
	size_t i;

	if (dp == NULL || (d = *dp) == NULL)
		return;
	*dp = NULL;
	pthread_mutex_lock(&pool_lock);
	if (pool == d)
		pool = NULL;
	pthread_mutex_unlock(&pool_lock);
	pthread_mutex_lock(&d->lock);
	d->stop = true;
	pthread_cond_broadcast(&d->wake);
	pthread_mutex_unlock(&d->lock);
	for (i = 0; i < d->n_workers; i++)
		if (d->workers[i].started)
			pthread_join(d->workers[i].thread, NULL);
	pool_free(d);
}

void
kr_delivery_stats_foreach(struct kr_delivery *d, kr_delivery_stats_fn fn,
    void *ctx)
{
	size_t i;

	pthread_mutex_lock(&d->lock);
	for (i = 0; i < d->n_stats; i++)
		fn(ctx, d->stats[i].list_id, d->stats[i].relay,
		    &d->stats[i].st);
	pthread_mutex_unlock(&d->lock);
}

int
kr_delivery_metrics(struct kr_delivery *d, struct kr_buf *out)
{
	static const char *names[] = {"sent", "deferred", "failed",
	    "uncertain", "bounced"};
	const struct kr_delivery_stats *st;
	uint64_t v[5], cum = 0;
	const char *p;
	size_t i, j;
	int r = -1;

	pthread_mutex_lock(&d->lock);
	if (kr_buf_puts(out,
		"# HELP kairan_delivery_messages_total Delivery outcomes by "
		"list and relay since kairand started.\n"
		"# TYPE kairan_delivery_messages_total counter\n") < 0)
		goto out;
	for (i = 0; i < d->n_stats; i++) {
		st = &d->stats[i].st;
		v[0] = st->sent;
		v[1] = st->deferred;
		v[2] = st->failed;
		v[3] = st->uncertain;
		v[4] = st->bounced;
		/* List ids are [a-z0-9._-] and relays host:port from the
		 * config: nothing to escape in a label. */
		for (j = 0; j < KR_NELEM(names); j++)
			if (kr_buf_printf(out,
				"kairan_delivery_messages_total{list=\"%s\","
				"relay=\"%s\",outcome=\"%s\"} %llu\n",
				d->stats[i].list_id, d->stats[i].relay,
				names[j], (unsigned long long)v[j]) < 0)
				goto out;
	}
	if (kr_buf_puts(out,
		"# HELP kairan_smtp_transaction_seconds Time from one SMTP "
		"outcome to the next in a session (the first includes the "
		"connection).\n"
		"# TYPE kairan_smtp_transaction_seconds histogram\n") < 0)
		goto out;
	for (i = 0; i <= N_LAT; i++) {
		cum += d->lat_count[i];
		if (i < N_LAT) {
			if (kr_buf_printf(out,
				"kairan_smtp_transaction_seconds_bucket{le=\"%g\"}"
				" %llu\n",
				lat_bounds[i], (unsigned long long)cum) < 0)
				goto out;
		} else if (kr_buf_printf(out,
			       "kairan_smtp_transaction_seconds_bucket{le=\"+Inf\"}"
			       " %llu\n",
			       (unsigned long long)cum) < 0)
			goto out;
	}
	if (kr_buf_printf(out,
		"kairan_smtp_transaction_seconds_sum %.6f\n"
		"kairan_smtp_transaction_seconds_count %llu\n",
		d->lat_sum, (unsigned long long)d->lat_n) < 0)
		goto out;
	/* After _sum and _count: a family's lines stay together. */
	if (kr_buf_printf(out,
		"# HELP kairan_delivery_rate_limit Messages per second "
		"allowed now (0: no limit); lower than configured after a "
		"\"slow down\" reply.\n"
		"# TYPE kairan_delivery_rate_limit gauge\n"
		"kairan_delivery_rate_limit %g\n",
		effective_rate(d, mono_now())) < 0)
		goto out;
	if (kr_buf_printf(out,
		"# HELP kairan_delivery_fenced_total Outcomes not recorded "
		"because a later claim had taken the copy (a lease that ran "
		"out: the copy may go twice).\n"
		"# TYPE kairan_delivery_fenced_total counter\n"
		"kairan_delivery_fenced_total %lu\n",
		atomic_load(&d->n_fenced)) < 0)
		goto out;
	/* Which host this is, for several hosts on one database: the
	 * store's gauges are the database's (the same on every host: take
	 * max, not sum, across hosts); the delivery counters are this
	 * host's own. */
	if (kr_buf_puts(out,
		"# HELP kairan_host_info This kairand: its host_id, the "
		"number of this run on it and the store's backend (always "
		"1).\n"
		"# TYPE kairan_host_info gauge\n"
		"kairan_host_info{host=\"") < 0)
		goto out;
	for (p = d->host; *p != '\0'; p++)
		if (kr_buf_printf(out, "%s%c",
			*p == '"' || *p == '\\' || *p == '\n' ? "\\" : "",
			*p == '\n' ? 'n' : *p) < 0)
			goto out;
	if (kr_buf_printf(out, "\",run=\"%lld\",store=\"%s\"} 1\n",
		(long long)d->owner.incarnation,
		kr_store_backend(d->store)) < 0)
		goto out;
	if (kr_buf_printf(out,
		"# HELP kairan_smtp_process_ends_total kairan-smtp processes "
		"that ended unasked (killed, crashed, or out of turn).\n"
		"# TYPE kairan_smtp_process_ends_total counter\n"
		"kairan_smtp_process_ends_total %lu\n",
		kr_transport_smtp_ends(NULL, 0, NULL)) < 0)
		goto out;
	r = 0;
out:
	pthread_mutex_unlock(&d->lock);
	return r;
}

int
kr_delivery_health(struct kr_delivery *d, struct kr_buf *out)
{
	int64_t now = (int64_t)time(NULL);
	int r = 0;

	pthread_mutex_lock(&d->lock);
	if (d->db.msg[0] != '\0') {
		r = 1;
		if (kr_buf_printf(out, "store: %s (for %llds, %u failures)\n",
			d->db.msg, (long long)(now - d->db.since),
			d->db.fails) < 0)
			r = -1;
	}
	if (r >= 0 && d->governor.msg[0] != '\0') {
		r = 1;
		if (kr_buf_printf(out, "governor: report %lld %s\n",
			(long long)d->gov_report, d->governor.msg) < 0)
			r = -1;
	}
	if (r >= 0 && d->gov_confirm.msg[0] != '\0') {
		r = 1;
		if (kr_buf_printf(out, "governor: %s\n", d->gov_confirm.msg) < 0)
			r = -1;
	}
	if (r >= 0 && d->relay.msg[0] != '\0') {
		r = 1;
		if (kr_buf_printf(out, "relay: %s (for %llds, %u failures)\n",
			d->relay.msg, (long long)(now - d->relay.since),
			d->relay.fails) < 0)
			r = -1;
	}
	pthread_mutex_unlock(&d->lock);
	if (r >= 0) {
		char last[160];
		int64_t at = 0;
		unsigned long n = kr_transport_smtp_ends(last, sizeof(last), &at);

		/* A crash is a bug or an attack: said for a while, though the
		 * next send starts a new process. */
		if (n > 0 && now - at < KR_DELIVERY_SMTP_END_SHOWN) {
			r = 1;
			if (kr_buf_printf(out, "smtp process: %s %llds ago (%lu "
				"since start; a new one takes the next send)\n",
				last, (long long)(now - at), n) < 0)
				r = -1;
		}
	}
	return r;
}

unsigned
kr_delivery_gen_in_use(struct kr_delivery *d)
{
	unsigned g;
	size_t i;

	pthread_mutex_lock(&d->lock);
	g = d->cfg_gen;
	for (i = 0; i < d->n_workers; i++)
		if (d->workers[i].using_gen < g)
			g = d->workers[i].using_gen;
	pthread_mutex_unlock(&d->lock);
	return g;
}

double
kr_delivery_rate_now(struct kr_delivery *d)
{
	double r;

	pthread_mutex_lock(&d->lock);
	r = effective_rate(d, mono_now());
	pthread_mutex_unlock(&d->lock);
	return r;
}

int64_t
kr_delivery_current_report(struct kr_delivery *d)
{
	int64_t r;

	pthread_mutex_lock(&d->lock);
	r = d->current_report;
	pthread_mutex_unlock(&d->lock);
	return r;
}
