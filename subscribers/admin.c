/* admin.c — the admin listener's requests (GET /healthz and /metrics),
 * answered from the web module's counters and the store (see web_int.h
 * for what this file shares with web.c, which starts and stops the
 * listener). */
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>

#include <microhttpd.h>

#include "buf.h"
#include "err.h"
#include "store.h"
#include "web.h"
#include "web_int.h"

/* The route labels of kairan_http_requests_total, by enum route_label. */
static const char *const route_labels[RL_N] = {
    "/", "/subscribe", "/confirm", "/unsubscribe", "/archive", "other",
};

static void
metric(struct kr_buf *b, const char *name, const char *help,
       unsigned long value)
{
	if (kr_buf_printf(b, "# HELP %s %s\n# TYPE %s counter\n%s %lu\n", name,
	                  help, name, name, value) == -1)
		return;
}

/* kairan_http_requests_total{route,code}: the pairs seen so far. */
static void
metric_answers(struct kr_web *web, struct kr_buf *b)
{
	unsigned long n;
	size_t r, i;

	if (kr_buf_puts(b, "# HELP kairan_http_requests_total Answers on the "
	                   "public listener by route and status code.\n"
	                   "# TYPE kairan_http_requests_total counter\n") == -1)
		return;
	for (r = 0; r < RL_N; r++)
		for (i = 0; i < KR_WEB_CODE_N; i++) {
			n = atomic_load(&web->n_answers[r][i]);
			if (n == 0)
				continue;
			if (kr_buf_printf(
			        b,
			        "kairan_http_requests_total{route=\"%s\","
			        "code=\"%zu\"} %lu\n",
			        route_labels[r], i + KR_WEB_CODE_MIN, n) == -1)
				return;
		}
}

enum MHD_Result
kr_web_admin_handler(void *cls, struct MHD_Connection *c, const char *url,
                     const char *method, const char *version,
                     const char *upload_data,
                     size_t *upload_data_size, /* NOLINT(readability-non-const-parameter): MHD's handler type */
                     void **con_cls)
{
	struct kr_web *web = cls;
	struct kr_buf out;
	struct kr_err e;
	kr_web_metrics_fn fn;
	void *fn_ctx;
	enum MHD_Result ret = MHD_NO;
	int rc;

	(void)version;
	(void)upload_data;
	(void)upload_data_size;
	(void)con_cls;
	kr_err_clear(&e);
	kr_buf_init(&out, 0);
	if (strcmp(url, "/healthz") != 0 && strcmp(url, "/metrics") != 0) {
		ret = kr_web_send_text(web, c, 404, "text/plain; charset=utf-8",
		                       "not found\n", 10, NULL);
		goto out;
	}
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
	    strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
		ret = kr_web_send_text(web, c, 405, "text/plain; charset=utf-8",
		                       "method not allowed\n", 19, "GET, HEAD");
		goto out;
	}
	/* kairand wires both before it says it is ready: a look before
	 * that would show a daemon without its delivery side. */
	pthread_mutex_lock(&web->lock);
	fn = web->metrics_fn;
	fn_ctx = web->metrics_ctx;
	rc = web->health_fn == NULL;
	pthread_mutex_unlock(&web->lock);
	if (fn == NULL || rc) {
		ret = kr_web_send_text(web, c, 503, "text/plain; charset=utf-8",
		                       "starting\n", 9, NULL);
		goto out;
	}
	if (strcmp(url, "/healthz") == 0) {
		kr_web_health_fn hfn;
		void *hctx;

		pthread_mutex_lock(&web->store_lock);
		rc = kr_store_ping(web->store, &e);
		pthread_mutex_unlock(&web->store_lock);
		pthread_mutex_lock(&web->lock);
		hfn = web->health_fn;
		hctx = web->health_ctx;
		pthread_mutex_unlock(&web->lock);
		if (rc != 0 && kr_buf_printf(&out, "store: %s\n", e.msg) < 0)
			goto out;
		/* The delivery side: relay refusing or silent, store full or
		 * locked for the workers. */
		if (hfn != NULL && hfn(hctx, &out) != 0)
			rc = -1;
		if (rc == 0)
			ret = kr_web_send_text(web, c, 200,
			                       "text/plain; charset=utf-8",
			                       "ok\n", 3, NULL);
		else
			ret = kr_web_send_text(web, c, 503,
			                       "text/plain; charset=utf-8",
			                       out.data, out.len, NULL);
		goto out;
	}
	metric_answers(web, &out);
	metric(&out, "kairan_http_requests_received_total",
	       "Requests on the public listener, answered or not.",
	       web->n_requests);
	metric(&out, "kairan_http_subscribe_total", "POST /subscribe requests.",
	       web->n_subscribe);
	metric(&out, "kairan_http_subscribe_new_total",
	       "Sign-ups that created a subscription.", web->n_subscribe_new);
	metric(&out, "kairan_http_honeypot_total",
	       "Sign-ups dropped for a filled honeypot.", web->n_honeypot);
	metric(&out, "kairan_http_rate_limited_total",
	       "Sign-ups refused by the per-client rate limit.",
	       web->n_rate_limited);
	metric(&out, "kairan_http_rate_overflow_total",
	       "Sign-ups of clients the full rate-limit table had no room "
	       "for (they share one bucket).",
	       kr_web_rl_overflowed(web->rl));
	metric(&out, "kairan_http_confirm_mail_total",
	       "Confirmation mails queued by the form.", web->n_confirm_mail);
	metric(&out, "kairan_http_confirm_limited_total",
	       "Confirmation mails not queued (per-address daily limit).",
	       web->n_confirm_limited);
	metric(&out, "kairan_http_confirmed_total", "Subscriptions confirmed.",
	       web->n_confirmed);
	metric(&out, "kairan_http_unsubscribed_total",
	       "Subscriptions ended from a link.", web->n_unsubscribed);
	metric(&out, "kairan_http_bad_token_total",
	       "Invalid, tampered or expired tokens.", web->n_bad_token);
	metric(&out, "kairan_http_bad_address_total",
	       "Sign-ups refused for a bad address.", web->n_bad_address);
	metric(&out, "kairan_http_errors_total", "Answers with a 5xx status.",
	       web->n_errors);
	metric(&out, "kairan_http_connections_refused_total",
	       "Connections refused by the per-address cap.",
	       web->n_conn_refused);
	metric(&out, "kairan_http_archive_builds_total",
	       "Times the /archive list was read from the store (else it is "
	       "served as built).",
	       web->n_archive_builds);
	metric(&out, "kairan_http_header_timeouts_total",
	       "Connections closed for a request head not in within "
	       "http.header_timeout.",
	       web->n_head_timeout);
	fn(fn_ctx, &out);
	ret = kr_web_send_text(web, c, 200,
	                       "text/plain; version=0.0.4; charset=utf-8",
	                       out.data, out.len, NULL);
out:
	kr_buf_fini(&out);
	return ret;
}
