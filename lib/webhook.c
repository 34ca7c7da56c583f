/* webhook.c — a queue of JSON events and one thread that POSTs them in
 * order with libcurl, retrying with back-off. The URL comes from the
 * operator's config; it is logged without its query string (which may hold
 * a secret). */
#include "webhook.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "err.h"
#include "log.h"
#include "version.h"
#include "xmem.h"

struct event {
	char *json;
	int tries; /* done so far */
};

struct kr_webhook {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t thread;
	bool started, stop;
	char *url;
	struct event q[KR_WEBHOOK_QUEUE];
	size_t head, n;
	uint64_t dropped;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void
curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

int
kr_webhook_backoff(int tries)
{
	if (tries < 1 || tries > KR_WEBHOOK_TRIES)
		return -1;
	return tries == 1 ? 0 : 1 << (tries - 2);
}

int
kr_webhook_json_str(struct kr_buf *b, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n, i;

	if (kr_buf_putc(b, '"') < 0)
		return -1;
	while (*p != '\0') {
		if (*p == '"' || *p == '\\') {
			if (kr_buf_putc(b, '\\') < 0 ||
			    kr_buf_putc(b, (char)*p) < 0)
				return -1;
			p++;
			continue;
		}
		if (*p < 0x20 || *p == 0x7f) {
			if (kr_buf_printf(b, "\\u%04x", *p) < 0)
				return -1;
			p++;
			continue;
		}
		if (*p < 0x80) {
			if (kr_buf_putc(b, (char)*p) < 0)
				return -1;
			p++;
			continue;
		}
		/* A UTF-8 sequence is copied whole when well formed. */
		n = *p >= 0xf0 && *p <= 0xf4 ? 4 :
		    *p >= 0xe0	      ? 3 :
		    *p >= 0xc2 && *p <= 0xdf ? 2 : 0;
		for (i = 1; i < n; i++)
			if ((p[i] & 0xc0) != 0x80)
				n = 0;
		if (n == 0) {
			if (kr_buf_puts(b, "\\ufffd") < 0)
				return -1;
			p++;
			continue;
		}
		if (kr_buf_append(b, p, n) < 0)
			return -1;
		p += n;
	}
	return kr_buf_putc(b, '"');
}

/* The URL up to its query, for logs. */
static void
url_for_log(const char *url, char *out, size_t size)
{
	size_t n = strcspn(url, "?#");

	if (n >= size)
		n = size - 1;
	memcpy(out, url, n);
	out[n] = '\0';
}

static size_t
discard(char *p, size_t size, size_t n, void *ctx) /* NOLINT(readability-non-const-parameter): curl's write callback type */
{
	(void)p;
	(void)ctx;
	return size * n;
}

/* One POST; 0 on a 2xx answer. */
static int
post(const char *url, const char *json, char *why, size_t why_size)
{
	CURL *c;
	struct curl_slist *h = NULL;
	CURLcode rc;
	long status = 0;
	int r = -1;
	char ua[64];

	if ((c = curl_easy_init()) == NULL) {
		snprintf(why, why_size, "libcurl: cannot initialise");
		return -1;
	}
	h = curl_slist_append(h, "Content-Type: application/json");
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(json));
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 5L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	/* The operator's own endpoint: the version may go there. */
	snprintf(ua, sizeof(ua), "kairan-webhook/%s", kr_version());
	curl_easy_setopt(c, CURLOPT_USERAGENT, ua);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
	rc = curl_easy_perform(c);
	if (rc != CURLE_OK) {
		snprintf(why, why_size, "%s", curl_easy_strerror(rc));
		goto out;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	if (status < 200 || status > 299) {
		snprintf(why, why_size, "HTTP %ld", status);
		goto out;
	}
	r = 0;
out:
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	return r;
}

/* Waits on cond until the deadline (monotonic seconds) or a stop. */
static void
wait_until(struct kr_webhook *w, double deadline)
{
	struct timespec ts;

	ts.tv_sec = (time_t)deadline;
	ts.tv_nsec = (long)((deadline - (double)ts.tv_sec) * 1e9);
	(void)pthread_cond_timedwait(&w->cond, &w->lock, &ts);
}

static double
mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *
sender(void *arg)
{
	struct kr_webhook *w = arg;
	char *url, *json, why[160], shown[200];
	double due = 0;
	int tries, delay;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		if (w->stop)
			break;
		if (w->n == 0) {
			pthread_cond_wait(&w->cond, &w->lock);
			continue;
		}
		if (mono() < due) {
			wait_until(w, due);
			continue;
		}
		url = kr_xstrdup(w->url);
		json = kr_xstrdup(w->q[w->head].json);
		tries = ++w->q[w->head].tries;
		pthread_mutex_unlock(&w->lock);

		why[0] = '\0';
		url_for_log(url, shown, sizeof(shown));
		if (post(url, json, why, sizeof(why)) == 0) {
			kr_log_debug("webhook posted url=%s tries=%d", shown,
			    tries);
			tries = 0;
		}
		free(url);
		free(json);

		pthread_mutex_lock(&w->lock);
		delay = tries ? kr_webhook_backoff(tries + 1) : 0;
		if (tries == 0 || delay < 0) {
			if (tries != 0)
				kr_log_warn("webhook dropped url=%s tries=%d: %s",
				    shown, tries, why);
			free(w->q[w->head].json);
			w->head = (w->head + 1) % KR_WEBHOOK_QUEUE;
			w->n--;
			due = 0;
		} else {
			kr_log_info("webhook retry url=%s tries=%d in=%ds: %s",
			    shown, tries, delay, why);
			due = mono() + delay;
		}
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

int
kr_webhook_start(const char *url, struct kr_webhook **w_out,
    struct kr_err *err)
{
	struct kr_webhook *w;
	pthread_condattr_t ca;
	int e;

	pthread_once(&curl_once, curl_init_once);
	w = kr_xcalloc(1, sizeof(*w));
	pthread_mutex_init(&w->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cond, &ca);
	pthread_condattr_destroy(&ca);
	w->url = kr_xstrdup(url);
	if ((e = pthread_create(&w->thread, NULL, sender, w)) != 0) {
		kr_err_set(err, KR_ERR_IO, "webhook: thread: %s",
		    strerror(e));
		kr_webhook_stop(&w);
		return -1;
	}
	w->started = true;
	*w_out = w;
	return 0;
}

void
kr_webhook_set_url(struct kr_webhook *w, const char *url)
{
	pthread_mutex_lock(&w->lock);
	free(w->url);
	w->url = kr_xstrdup(url);
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

void
kr_webhook_post(struct kr_webhook *w, const char *json)
{
	pthread_mutex_lock(&w->lock);
	if (w->n == KR_WEBHOOK_QUEUE) {
		if (w->dropped++ % 100 == 0)
			kr_log_warn("webhook queue full: dropping events "
				    "dropped=%llu",
			    (unsigned long long)w->dropped);
	} else {
		w->q[(w->head + w->n) % KR_WEBHOOK_QUEUE].json =
		    kr_xstrdup(json);
		w->q[(w->head + w->n) % KR_WEBHOOK_QUEUE].tries = 0;
		w->n++;
		pthread_cond_broadcast(&w->cond);
	}
	pthread_mutex_unlock(&w->lock);
}

void
kr_webhook_stop(struct kr_webhook **wp)
{
	struct kr_webhook *w;

	if (wp == NULL || (w = *wp) == NULL)
		return;
	*wp = NULL;
	pthread_mutex_lock(&w->lock);
	w->stop = true;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
	if (w->started)
		pthread_join(w->thread, NULL);
	if (w->n > 0)
		kr_log_warn("webhook stopped with %zu events unsent", w->n);
	while (w->n > 0) {
		free(w->q[w->head].json);
		w->head = (w->head + 1) % KR_WEBHOOK_QUEUE;
		w->n--;
	}
	free(w->url);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
	free(w);
}
