/* web.c — the public and admin HTTP listeners on libmicrohttpd (see
 * web.h). libmicrohttpd parses HTTP and form bodies; this file routes,
 * checks and answers.
 *
 * Threads: the public daemon runs a pool of KR_WEB_THREADS epoll threads,
 * the admin daemon one. The config lives in a refcounted "view" swapped
 * under web->lock; a handler holds the view only while it runs (not across
 * a slow upload), so kr_web_set_config waits milliseconds at most. The
 * store handle is one SQLite connection guarded by web->store_lock.
 *
 * Pages: GET / is rendered once per config into an MHD response that is
 * queued as is for every request (MHD responses are refcounted and may be
 * shared between threads), so it costs no rendering or allocation. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>
#include <sodium.h>

#include "address.h"
#include "buf.h"
#include "config.h"
#include "delivery.h"
#include "err.h"
#include "log.h"
#include "pages.h"
#include "store.h"
#include "token.h"
#include "tz.h"
#include "web.h"
#include "web_int.h"
#include "xmem.h"

#define KR_WEB_THREADS 2
#define KR_WEB_CONN_LIMIT 1000
#define KR_WEB_PER_IP_LIMIT 64         /* trusted proxies exempt */
#define KR_WEB_TIMEOUT 10              /* seconds idle: slowloris */
#define KR_WEB_HEAD_TIMEOUT 15         /* a whole request head: the same */
#define KR_WEB_CONN_MEMORY (32 * 1024) /* headers + buffers per conn */
#define KR_WEB_BODY_MAX (16 * 1024)    /* form bodies: 413 past this */
#define KR_WEB_FIELD_MAX 1024          /* one form field */
#define KR_WEB_RATE_PER_MIN 10.0       /* POST /subscribe per client */
#define KR_WEB_RATE_BURST 20.0
#define KR_WEB_RATE_KEYS 65536
/* POST /subscribe is answered this long after it reached the store
 * worker, whatever the work was (a new address writes three rows, a known
 * one none): the time tells nobody who is subscribed. Timed from the
 * hand-over, not from when the worker takes it up, so a request queued
 * behind another sign-up does not show that one's cost either. Well above
 * the work (~0.5 ms), well below what a person notices. */
#define KR_WEB_SIGNUP_FLOOR 0.005
#define KR_WEB_CONFIRM_PER_DAY 3 /* confirmation mails per address */
#define KR_WEB_CONFIRM_MAX_AGE (7 * 86400)
#define KR_WEB_ARCHIVE_MAX 500
/* GET /archive is served from the list as last built; it is built again
 * when the store changed (another connection committed: a copy sent, a
 * report added or cancelled; or an unsubscribe here), at most once in
 * KR_WEB_ARCHIVE_FRESH seconds however busy the store is, and at least
 * every KR_WEB_ARCHIVE_MAX_AGE (a report with nobody to send to shows
 * once its send_at has passed). Building counts every report's copies. */
#define KR_WEB_ARCHIVE_FRESH 2.0
#define KR_WEB_ARCHIVE_MAX_AGE 60.0

enum route {
	R_NONE,
	R_INDEX,
	R_SUBSCRIBE,
	R_CONFIRM,
	R_UNSUBSCRIBE,
	R_ARCHIVE,
	R_ARCHIVE_ITEM,
	R_ARCHIVE_FEED,
};

/* One request with a body. */
struct req {
	enum route route;
	bool is_post;
	size_t body_len;
	bool too_large;
	bool field_too_long;
	struct MHD_PostProcessor *pp;
	struct kr_buf email, list, name, honeypot, one_click, scope;
	/* Handed to the store worker: */
	struct req *next;
	struct MHD_Connection *conn;
	char *url;
	double due; /* monotonic: resume no earlier (0: at once) */
	bool done;  /* answer in resp/status */
	struct MHD_Response *resp;
	unsigned status;
};

/* While the store worker runs a handler, answers are captured here
 * instead of queued (the connection is suspended). */
static _Thread_local struct req *tl_capture;

/* The status of the answer queued by the current call of the MHD access
 * handler (0: none yet), so on_http can count it by route. */
static _Thread_local unsigned tl_queued;

/* con_cls of a request without a body between the two calls. */
static char no_body;

/* What the web module keeps per connection (MHD's socket context, made
 * when MHD reports the connection STARTED, freed when CLOSED). */
struct conn {
	struct conn *prev, *next; /* web->conn_head, under web->conn_lock */
	int fd;
	/* Under web->conn_lock: waiting for a request head since
	 * head_start (monotonic: the accept, or the previous answer). */
	bool in_head, cut;
	double head_start;
	char counted[KR_WEB_IP_MAX]; /* "" when not under the per-IP cap */
	/* The request target of the request being read, as the URI log
	 * callback saw it before MHD split and decoded it: its strlen
	 * stops at a raw NUL, which must not cut the path short. */
	const char *target;
	size_t target_len;
	bool bad_target; /* a raw or %00 NUL in it */
};

static int64_t
now_unix(void)
{
	return (int64_t)time(NULL);
}

static double
now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- views ---- */

static struct view *
view_acquire(struct kr_web *web)
{
	struct view *v;

	pthread_mutex_lock(&web->lock);
	v = web->view;
	v->refs++;
	pthread_mutex_unlock(&web->lock);
	return v;
}

static void
view_release(struct kr_web *web, struct view *v)
{
	pthread_mutex_lock(&web->lock);
	v->refs--;
	if (v->refs == 0 && v != web->view)
		pthread_cond_broadcast(&web->released);
	pthread_mutex_unlock(&web->lock);
}

struct view *
kr_web_view_acquire(struct kr_web *web)
{
	return view_acquire(web);
}

void
kr_web_view_release(struct kr_web *web, struct view *v)
{
	view_release(web, v);
}

static void
view_free(struct view **vp)
{
	struct view *v = *vp;
	size_t i;

	if (v == NULL)
		return;
	for (i = 0; i < v->n_lists; i++) {
		free(v->lists[i].id);
		free(v->lists[i].name);
		free(v->lists[i].lang);
		free(v->lists[i].sender[0]);
		free(v->lists[i].sender[1]);
		free(v->lists[i].sender[2]);
	}
	free(v->lists);
	kr_web_nets_free(&v->trusted);
	if (v->index != NULL)
		MHD_destroy_response(v->index);
	free(v->http_listen);
	free(v->admin_listen);
	free(v->database);
	free(v->public_url);
	free(v->feed_link);
	free(v->db_password_file);
	for (i = 0; i < v->n_relays; i++)
		free(v->relays[i]);
	free(v->relays);
	free(v->admin_user);
	if (v->admin_hash != NULL) {
		sodium_memzero(v->admin_hash, strlen(v->admin_hash));
		free(v->admin_hash);
	}
	free(v);
	*vp = NULL;
}

static const struct view_list *
view_list(const struct view *v, const char *id)
{
	size_t i;

	for (i = 0; i < v->n_lists; i++)
		if (strcmp(v->lists[i].id, id) == 0)
			return &v->lists[i];
	return NULL;
}

/* A text string of the pages table with {{list}} filled in: plain text,
 * escaped later by whoever puts it in HTML. The caller frees. */
static char *
say(const char *text, const char *list_name)
{
	struct kr_buf b;
	struct kr_web_var v = {"list", list_name, true};

	kr_buf_init(&b, 0);
	if (kr_web_render(&b, text, &v, 1) == -1)
		kr_buf_reset(&b);
	return kr_buf_steal(&b);
}

/* Wraps body (HTML) in the layout; head (may be NULL): more of <head>. */
static int
render_page(struct kr_buf *out, const char *lang, const char *title,
            const char *head, const char *body)
{
	const struct kr_web_var vars[] = {
	    {"lang", lang, false},
	    {"title", title, false},
	    {"style", kr_pages_style, true},
	    {"head", head, true},
	    {"body", body, true},
	};

	return kr_web_render(out, kr_pages_layout, vars, KR_NELEM(vars));
}

void
kr_web_add_headers(struct MHD_Response *r, const char *csp)
{
	MHD_add_response_header(r, "Server", "kairan");
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
	if (csp != NULL) {
		MHD_add_response_header(r, "Content-Security-Policy", csp);
		MHD_add_response_header(r, "X-Frame-Options", "DENY");
	}
}

static void
add_common_headers(struct kr_web *web, struct MHD_Response *r, bool html,
                   bool archive)
{
	/* The product alone: the version (kairan_build_info on /metrics)
	 * would tell strangers which published fixes a host lacks. */
	MHD_add_response_header(r, "Server", "kairan");
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
	if (html) {
		MHD_add_response_header(r, "Content-Security-Policy",
		                        archive ? web->csp_archive : web->csp);
		MHD_add_response_header(r, "X-Frame-Options", "DENY");
	}
}

static int
render_index(struct kr_web *web, struct view *v, struct kr_err *err)
{
	const struct kr_pages_text *t = kr_pages_text(v->lang);
	struct kr_buf lists, choices, body, page, archive;
	char *intro = NULL;
	size_t i;
	int rc = -1;

	kr_buf_init(&lists, 0);
	kr_buf_init(&choices, 0);
	kr_buf_init(&body, 0);
	kr_buf_init(&page, 0);
	kr_buf_init(&archive, 0);
	for (i = 0; i < v->n_lists; i++)
		if (v->lists[i].archive)
			break;
	if (i < v->n_lists &&
	    (kr_buf_puts(&archive, "<p class=\"mut\"><a href=\"archive\">") ==
	         -1 ||
	     kr_web_html_escape(&archive, t->archive_title) == -1 ||
	     kr_buf_puts(&archive, "</a></p>\n") == -1))
		goto fail;
	if (v->n_lists == 1) {
		const struct kr_web_var hv[] = {{"id", v->lists[0].id, false}};

		intro = say(t->signup_intro, v->lists[0].name);
		if (kr_web_render(&lists, kr_pages_list_hidden, hv, 1) == -1)
			goto fail;
	} else {
		intro = say(t->signup_intro_many, NULL);
		for (i = 0; i < v->n_lists; i++) {
			const struct kr_web_var cv[] = {
			    {"id", v->lists[i].id, false},
			    {"name", v->lists[i].name, false},
			    {"checked", i == 0 ? " checked" : "", true},
			};

			if (kr_web_render(&choices, kr_pages_list_choice, cv,
			                  KR_NELEM(cv)) == -1)
				goto fail;
		}
		{
			const struct kr_web_var fv[] = {
			    {"legend", t->lists_legend, false},
			    {"choices", choices.data, true},
			};

			if (kr_web_render(&lists, kr_pages_list_fieldset, fv,
			                  KR_NELEM(fv)) == -1)
				goto fail;
		}
	}
	{
		const struct kr_web_var sv[] = {
		    {"title",
		     v->n_lists == 1 ? v->lists[0].name : t->signup_title,
		     false},
		    {"intro", intro, false},
		    {"email_label", t->email_label, false},
		    {"lists", lists.data, true},
		    {"honeypot_label", t->honeypot_label, false},
		    {"submit", t->submit, false},
		    {"privacy", t->privacy, false},
		    {"archive", archive.data, true},
		};

		if (kr_web_render(&body, kr_pages_signup, sv, KR_NELEM(sv)) ==
		    -1)
			goto fail;
	}
	if (render_page(&page, v->lang,
	                v->n_lists == 1 ? v->lists[0].name : t->signup_title,
	                NULL, body.data) == -1)
		goto fail;
	v->index = MHD_create_response_from_buffer(page.len, page.data,
	                                           MHD_RESPMEM_MUST_COPY);
	if (v->index == NULL)
		goto fail;
	MHD_add_response_header(v->index, "Content-Type",
	                        "text/html; charset=utf-8");
	MHD_add_response_header(v->index, "Content-Language", v->lang);
	MHD_add_response_header(v->index, "Cache-Control", "max-age=60");
	add_common_headers(web, v->index, true, false);
	rc = 0;
	goto out;
fail:
	kr_err_set(err, KR_ERR_INVALID, "web: cannot render the sign-up page");
out:
	free(intro);
	kr_buf_fini(&archive);
	kr_buf_fini(&lists);
	kr_buf_fini(&choices);
	kr_buf_fini(&body);
	kr_buf_fini(&page);
	return rc;
}

static int
view_new(struct kr_web *web, const struct kr_config *cfg,
         const struct kr_keyring *ring, struct view **view_out,
         struct kr_err *err)
{
	struct view *v;
	size_t i;
	int rc = -1;

	v = kr_xcalloc(1, sizeof(*v));
	v->ring = ring;
	v->gen = ++web->view_gen;
	if (cfg->n_lists == 0) {
		kr_err_set(err, KR_ERR_INVALID, "web: the config has no list");
		goto out;
	}
	if (kr_web_nets_parse(cfg->trusted_proxies, cfg->n_trusted_proxies,
	                      &v->trusted, err) == -1)
		goto out;
	v->lists = kr_xcalloc(cfg->n_lists, sizeof(*v->lists));
	for (i = 0; i < cfg->n_lists; i++) {
		const struct kr_cfg_list *l = &cfg->lists[i];

		v->lists[i].id = kr_xstrdup(l->id);
		v->lists[i].name = kr_xstrdup(
		    l->name != NULL && *l->name != '\0' ? l->name : l->id);
		v->lists[i].lang = kr_xstrdup(kr_pages_text(l->language)->lang);
		v->lists[i].double_opt_in = l->double_opt_in;
		v->lists[i].archive = l->archive;
		v->lists[i].sender[0] = kr_xstrdup(l->sender_name);
		v->lists[i].sender[1] = kr_xstrdup(l->sender_address);
		v->lists[i].sender[2] = kr_xstrdup(l->sender_contact);
		v->lists[i].tz_offset =
		    l->tz != NULL ? kr_tz_offset(l->tz, now_unix()) : 0;
		v->n_lists++;
	}
	v->lang = v->lists[0].lang;
	v->ipv6_prefix = cfg->http_ipv6_prefix;
	v->header_timeout = cfg->http_header_timeout > 0
	                        ? cfg->http_header_timeout
	                        : KR_WEB_HEAD_TIMEOUT;
	v->http_listen = kr_xstrdup(cfg->http_listen);
	v->admin_listen = kr_xstrdup(cfg->admin_listen);
	v->database = kr_xstrdup(cfg->database);
	v->db_password_file = kr_xstrdup(cfg->database_password_file);
	v->maildir = cfg->delivery.transport == KR_CFG_TRANSPORT_MAILDIR;
	v->relays = kr_xcalloc(cfg->n_relays + 1, sizeof(*v->relays));
	for (i = 0; i < cfg->n_relays; i++)
		v->relays[v->n_relays++] = kr_xasprintf(
		    "%s:%u %s", cfg->relays[i].host, cfg->relays[i].port,
		    cfg->relays[i].tls == KR_CFG_TLS_NONE       ? "none"
		    : cfg->relays[i].tls == KR_CFG_TLS_STARTTLS ? "starttls"
		                                                : "tls");
	v->admin_user = kr_xstrdup(cfg->admin_user != NULL ? cfg->admin_user
	                                                   : "admin");
	v->metrics_login = cfg->admin_metrics_login;
	if (cfg->admin_password_file != NULL &&
	    kr_web_read_hash(cfg->admin_password_file, &v->admin_hash, err) ==
	        -1)
		goto out;
	v->public_url =
	    kr_xstrdup(cfg->public_url != NULL ? cfg->public_url : "");
	for (i = 0; i < v->n_lists; i++)
		v->any_archive |= v->lists[i].archive;
	{
		struct kr_buf href, link;

		kr_buf_init(&href, 0);
		kr_buf_init(&link, 0);
		if (v->any_archive && kr_buf_printf(&href, "%s/archive.atom",
		                                    v->public_url) == 0) {
			const struct kr_web_var vars[] = {
			    {"title", kr_pages_text(v->lang)->archive_title,
			     false},
			    {"href", href.data, false},
			};

			if (kr_web_render(&link, kr_pages_feed_link, vars,
			                  KR_NELEM(vars)) == -1)
				kr_buf_reset(&link);
		}
		v->feed_link = kr_buf_steal(&link);
		kr_buf_fini(&href);
	}
	if (render_index(web, v, err) == -1)
		goto out;
	*view_out = v;
	v = NULL;
	rc = 0;
out:
	view_free(&v);
	return rc;
}

/* ---- answers ---- */

/* MHD_queue_response, noting the status for kairan_http_requests_total. */
static enum MHD_Result
queue_response(struct MHD_Connection *c, unsigned status,
               struct MHD_Response *r)
{
	enum MHD_Result ret = MHD_queue_response(c, status, r);

	if (ret == MHD_YES)
		tl_queued = status;
	return ret;
}

static enum MHD_Result
send_buf(struct kr_web *web, struct MHD_Connection *c, unsigned status,
         const char *ctype, const char *lang, const char *data, size_t len,
         const char *allow, unsigned retry_after, bool archive)
{
	struct MHD_Response *r;
	enum MHD_Result ret;
	char num[24];
	bool html = strncmp(ctype, "text/html", 9) == 0;

	r = MHD_create_response_from_buffer(len, (void *)(uintptr_t)data,
	                                    MHD_RESPMEM_MUST_COPY);
	if (r == NULL)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", ctype);
	if (lang != NULL && html)
		MHD_add_response_header(r, "Content-Language", lang);
	MHD_add_response_header(r, "Cache-Control",
	                        archive ? "max-age=300" : "no-store");
	if (allow != NULL)
		MHD_add_response_header(r, "Allow", allow);
	if (retry_after > 0) {
		snprintf(num, sizeof(num), "%u", retry_after);
		MHD_add_response_header(r, "Retry-After", num);
	}
	add_common_headers(web, r, html, archive);
	if (tl_capture != NULL) {
		if (tl_capture->resp != NULL)
			MHD_destroy_response(tl_capture->resp);
		tl_capture->resp = r;
		tl_capture->status = status;
		ret = MHD_YES;
	} else {
		ret = queue_response(c, status, r);
		MHD_destroy_response(r);
	}
	if (status >= 500)
		atomic_fetch_add(&web->n_errors, 1);
	return ret;
}

enum MHD_Result
kr_web_send_text(struct kr_web *web, struct MHD_Connection *c, unsigned status,
                 const char *ctype, const char *data, size_t len,
                 const char *allow)
{
	return send_buf(web, c, status, ctype, NULL, data, len, allow, 0,
	                false);
}

/* A message in the format the client asked for: an HTML page with title,
 * message and detail (may be NULL), a JSON object, or plain text. */
static enum MHD_Result
send_message(struct kr_web *web, struct MHD_Connection *c, unsigned status,
             enum kr_web_fmt fmt, const char *lang, const char *title,
             const char *message, const char *detail, const char *allow,
             unsigned retry_after)
{
	const struct kr_pages_text *t = kr_pages_text(lang);
	struct kr_buf body, out;
	enum MHD_Result ret = MHD_NO;
	const char *ctype;

	kr_buf_init(&body, 0);
	kr_buf_init(&out, 0);
	if (fmt == KR_WEB_FMT_HTML) {
		const struct kr_web_var vars[] = {
		    {"title", title, false},
		    {"message", message, false},
		    {"detail", detail, false},
		    {"back", t->back, false},
		};

		if (kr_web_render(&body, kr_pages_message, vars,
		                  KR_NELEM(vars)) == -1 ||
		    render_page(&out, t->lang, title, NULL, body.data) == -1)
			goto out;
		ctype = "text/html; charset=utf-8";
	} else if (fmt == KR_WEB_FMT_JSON) {
		if (kr_buf_printf(&out, "{\"status\":\"%s\",\"message\":\"",
		                  status < 300 ? "ok" : "error") == -1 ||
		    kr_web_json_escape(&out, message) == -1)
			goto out;
		if (detail != NULL && *detail != '\0' &&
		    (kr_buf_puts(&out, "\",\"detail\":\"") == -1 ||
		     kr_web_json_escape(&out, detail) == -1))
			goto out;
		if (kr_buf_puts(&out, "\"}\n") == -1)
			goto out;
		ctype = "application/json";
	} else {
		if (kr_buf_puts(&out, message) == -1 ||
		    (detail != NULL && *detail != '\0' &&
		     kr_buf_printf(&out, " (%s)", detail) == -1) ||
		    kr_buf_putc(&out, '\n') == -1)
			goto out;
		ctype = "text/plain; charset=utf-8";
	}
	ret = send_buf(web, c, status, ctype, t->lang, out.data, out.len, allow,
	               retry_after, false);
out:
	kr_buf_fini(&body);
	kr_buf_fini(&out);
	return ret;
}

static enum MHD_Result
send_html(struct kr_web *web, struct MHD_Connection *c, unsigned status,
          const char *lang, const char *title, const char *head,
          const char *body, bool archive)
{
	struct kr_buf out;
	enum MHD_Result ret = MHD_NO;

	kr_buf_init(&out, 0);
	if (render_page(&out, lang, title, head, body) == 0)
		ret = send_buf(web, c, status, "text/html; charset=utf-8", lang,
		               out.data, out.len, NULL, 0, archive);
	kr_buf_fini(&out);
	return ret;
}

static enum MHD_Result
send_store_error(struct kr_web *web, struct MHD_Connection *c,
                 enum kr_web_fmt fmt, const char *lang, const struct kr_err *e)
{
	const struct kr_pages_text *t = kr_pages_text(lang);

	kr_log_err("web: store: %s", e->msg);
	return send_message(web, c, e->code == KR_ERR_BUSY ? 503 : 500, fmt,
	                    lang, t->busy_title, t->busy_body, NULL, NULL,
	                    e->code == KR_ERR_BUSY ? 5 : 0);
}

static enum MHD_Result
send_bad_token(struct kr_web *web, struct MHD_Connection *c, const char *lang,
               bool one_click)
{
	const struct kr_pages_text *t = kr_pages_text(lang);

	atomic_fetch_add(&web->n_bad_token, 1);
	return send_message(web, c, 400,
	                    one_click ? KR_WEB_FMT_TEXT : KR_WEB_FMT_HTML, lang,
	                    t->token_title, t->token_body, NULL, NULL, 0);
}

/* ---- request details ---- */

/* The text of a socket address; false when it is not IP. */
static bool
sockaddr_text(const struct sockaddr *sa, char out[KR_WEB_IP_MAX])
{
	if (sa != NULL && sa->sa_family == AF_INET)
		return inet_ntop(AF_INET,
		                 &((const struct sockaddr_in *)(const void *)sa)
		                      ->sin_addr,
		                 out, KR_WEB_IP_MAX) != NULL;
	if (sa != NULL && sa->sa_family == AF_INET6)
		return inet_ntop(
		           AF_INET6,
		           &((const struct sockaddr_in6 *)(const void *)sa)
		                ->sin6_addr,
		           out, KR_WEB_IP_MAX) != NULL;
	return false;
}

static void
peer_ip(struct MHD_Connection *c, char out[KR_WEB_IP_MAX])
{
	const union MHD_ConnectionInfo *ci;

	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (ci == NULL || !sockaddr_text(ci->client_addr, out))
		snprintf(out, KR_WEB_IP_MAX, "unknown");
}

/* Whether ip is a trusted proxy; else key_out gets the key the client
 * is capped by (its IPv6 network). */
static bool
is_trusted(struct kr_web *web, const char *ip, char key_out[KR_WEB_IP_MAX])
{
	struct view *v = view_acquire(web);
	bool trusted = kr_web_nets_match(v->trusted, ip);

	kr_web_client_key(ip, v->ipv6_prefix, key_out);
	view_release(web, v);
	return trusted;
}

/* The cap on connections per client address. MHD's own
 * (MHD_OPTION_PER_IP_CONNECTION_LIMIT) would also cap a reverse proxy
 * that carries everyone's requests, so trusted proxies are exempt here.
 * The count goes up in the accept policy (check and add in one step) and
 * down when MHD closes the connection. MHD calls the policy and then the
 * STARTED notification on the same thread for the same socket, so the
 * address counted travels between them in a thread-local. */
static _Thread_local char tl_counted[KR_WEB_IP_MAX];

static enum MHD_Result
accept_policy(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
	struct kr_web *web = cls;
	char ip[KR_WEB_IP_MAX], key[KR_WEB_IP_MAX];

	(void)addrlen;
	tl_counted[0] = '\0';
	if (!sockaddr_text(addr, ip) || is_trusted(web, ip, key))
		return MHD_YES;
	if (kr_web_conns_try_add(web->conns, key, KR_WEB_PER_IP_LIMIT)) {
		snprintf(tl_counted, sizeof(tl_counted), "%s", key);
		return MHD_YES;
	}
	atomic_fetch_add(&web->n_conn_refused, 1);
	return MHD_NO;
}

static void
on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
              enum MHD_ConnectionNotificationCode toe)
{
	struct kr_web *web = cls;
	const union MHD_ConnectionInfo *ci;
	struct conn *cn;

	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		cn = kr_xcalloc(1, sizeof(*cn));
		snprintf(cn->counted, sizeof(cn->counted), "%s", tl_counted);
		tl_counted[0] = '\0';
		ci = MHD_get_connection_info(c,
		                             MHD_CONNECTION_INFO_CONNECTION_FD);
		cn->fd = ci != NULL ? ci->connect_fd : -1;
		cn->in_head = true;
		cn->head_start = now_mono();
		pthread_mutex_lock(&web->conn_lock);
		cn->next = web->conn_head;
		if (web->conn_head != NULL)
			web->conn_head->prev = cn;
		web->conn_head = cn;
		pthread_mutex_unlock(&web->conn_lock);
		*socket_context = cn;
	} else if (toe == MHD_CONNECTION_NOTIFY_CLOSED &&
	           *socket_context != NULL) {
		cn = *socket_context;
		/* MHD closes the socket after this returns: once off the
		 * list, the sweeper no longer touches cn->fd. */
		pthread_mutex_lock(&web->conn_lock);
		if (cn->prev != NULL)
			cn->prev->next = cn->next;
		else
			web->conn_head = cn->next;
		if (cn->next != NULL)
			cn->next->prev = cn->prev;
		pthread_mutex_unlock(&web->conn_lock);
		if (cn->counted[0] != '\0')
			kr_web_conns_add(web->conns, cn->counted, -1);
		free(cn);
		*socket_context = NULL;
	}
}

/* The head of a request is in (true) or the next one is awaited. */
static void
conn_in_head(struct kr_web *web, struct conn *cn, bool waiting)
{
	if (cn == NULL)
		return;
	pthread_mutex_lock(&web->conn_lock);
	if (cn->in_head != waiting) {
		cn->in_head = waiting;
		cn->head_start = now_mono();
	}
	pthread_mutex_unlock(&web->conn_lock);
}

/* Once a second: shuts down every connection whose request head is
 * overdue. shutdown(), not close(): MHD still owns the descriptor, sees
 * the end of the stream and closes the connection itself. */
static void *
head_sweeper(void *arg)
{
	struct kr_web *web = arg;
	struct timespec ts;
	struct conn *cn;
	struct view *v;
	double limit, now;
	unsigned long cut;

	pthread_mutex_lock(&web->conn_lock);
	while (!web->sweep_quit) {
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		(void)pthread_cond_timedwait(&web->sweep_cond, &web->conn_lock,
		                             &ts);
		if (web->sweep_quit)
			break;
		pthread_mutex_unlock(&web->conn_lock);
		v = view_acquire(web);
		limit = (double)v->header_timeout;
		view_release(web, v);
		pthread_mutex_lock(&web->conn_lock);
		now = now_mono();
		cut = 0;
		for (cn = web->conn_head; cn != NULL; cn = cn->next)
			if (cn->in_head && !cn->cut && cn->fd != -1 &&
			    now - cn->head_start > limit) {
				(void)shutdown(cn->fd, SHUT_RDWR);
				cn->cut = true;
				cut++;
			}
		if (cut > 0) {
			atomic_fetch_add(&web->n_head_timeout, cut);
			kr_log_info("web: request head overdue, closed "
			            "connections=%lu timeout=%.0fs",
			            cut, limit);
		}
	}
	pthread_mutex_unlock(&web->conn_lock);
	return NULL;
}

static struct conn *
conn_of(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

	return ci != NULL ? ci->socket_context : NULL;
}

/* MHD's URI log callback: called for each request line, with the whole
 * request target before it is split at '?' and decoded in place. */
static void *
on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
	struct conn *cn = conn_of(c);

	(void)cls;
	if (cn != NULL) {
		cn->target = uri;
		cn->target_len = uri != NULL ? strlen(uri) : 0;
		cn->bad_target = uri == NULL;
	}
	return NULL;
}

/* MHD's unescape callback (the path, each query key and value): MHD's
 * own decoding, noting a %00, which C strings would silently cut at. */
static size_t
on_unescape(void *cls, struct MHD_Connection *c, char *s)
{
	size_t n = MHD_http_unescape(s);
	struct conn *cn;

	(void)cls;
	if (memchr(s, '\0', n) != NULL && (cn = conn_of(c)) != NULL)
		cn->bad_target = true;
	return n;
}

struct framing {
	unsigned n_cl, n_te;
	bool cl_differ, te_bad;
	const char *cl;
};

static enum MHD_Result
collect_framing(void *cls, enum MHD_ValueKind kind, const char *key,
                const char *value)
{
	struct framing *f = cls;

	(void)kind;
	if (value == NULL)
		value = "";
	if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
		if (f->n_cl++ > 0 && strcmp(f->cl, value) != 0)
			f->cl_differ = true;
		f->cl = value;
	} else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
		f->n_te++;
		if (strcasecmp(value, "chunked") != 0)
			f->te_bad = true;
	}
	return MHD_YES;
}

/* Why the request must be refused before anything reads its body, or
 * NULL. RFC 9112 6.1 and 6.3: Content-Length together with
 * Transfer-Encoding, Content-Lengths that disagree, or a transfer coding
 * other than chunked make the end of the body ambiguous (a proxy in front
 * may see another request in it: request smuggling); and a NUL in the
 * request target would cut the path MHD hands over short
 * (/archive/1%00x must not be served as /archive/1). */
static const char *
bad_framing(struct MHD_Connection *c, const char *url, const char *version)
{
	struct conn *cn = conn_of(c);
	struct framing f = {0};

	/* A raw NUL: strlen stopped short of the space before the version
	 * (url and version point into MHD's copy of the request line). */
	if (cn == NULL || cn->bad_target || cn->target != url ||
	    url + cn->target_len + 1 != version)
		return "NUL in the request target";
	MHD_get_connection_values(c, MHD_HEADER_KIND, collect_framing, &f);
	if (f.n_te > 0 && f.n_cl > 0)
		return "both Content-Length and Transfer-Encoding";
	if (f.cl_differ)
		return "Content-Length values that differ";
	if (f.n_te > 1 || f.te_bad)
		return "a transfer coding other than chunked";
	return NULL;
}

/* 400 and close: nothing after this request on the connection is read
 * as another request. */
static enum MHD_Result
send_bad_request(struct kr_web *web, struct MHD_Connection *c, const char *why)
{
	static const char body[] = "bad request\n";
	struct MHD_Response *r;
	enum MHD_Result ret;

	kr_log_info("web: bad request refused why=\"%s\"", why);
	r = MHD_create_response_from_buffer(
	    sizeof(body) - 1, (void *)(uintptr_t)body, MHD_RESPMEM_PERSISTENT);
	if (r == NULL)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", "text/plain; charset=utf-8");
	MHD_add_response_header(r, "Cache-Control", "no-store");
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
	add_common_headers(web, r, false, false);
	ret = queue_response(c, 400, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result
collect_xff(void *cls, enum MHD_ValueKind kind, const char *key,
            const char *value)
{
	struct kr_buf *b = cls;

	(void)kind;
	if (value == NULL || strcasecmp(key, "X-Forwarded-For") != 0)
		return MHD_YES;
	if ((b->len > 0 && kr_buf_putc(b, ',') == -1) ||
	    kr_buf_puts(b, value) == -1)
		return MHD_NO;
	return MHD_YES;
}

static void
client_ip(struct MHD_Connection *c, const struct view *v,
          char out[KR_WEB_IP_MAX])
{
	char peer[KR_WEB_IP_MAX];
	struct kr_buf xff;

	peer_ip(c, peer);
	kr_buf_init(&xff, 4096);
	MHD_get_connection_values(c, MHD_HEADER_KIND, collect_xff, &xff);
	kr_web_client_ip(v->trusted, peer, xff.len > 0 ? xff.data : NULL, out);
	kr_buf_fini(&xff);
}

static enum kr_web_fmt
wanted_fmt(struct MHD_Connection *c)
{
	return kr_web_accept(MHD_lookup_connection_value(
	    c, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT));
}

/* ---- POST /subscribe ---- */

static enum MHD_Result
do_subscribe(struct kr_web *web, struct MHD_Connection *c, struct view *v,
             struct req *rq)
{
	const struct kr_pages_text *t;
	const struct view_list *l;
	enum kr_web_fmt fmt = wanted_fmt(c);
	char ip[KR_WEB_IP_MAX], key[KR_WEB_IP_MAX], addr[KR_ADDRESS_MAX];
	char name[256], ua[256];
	struct kr_sub_result res;
	struct kr_consent consent;
	struct kr_err e;
	int64_t now = now_unix(), sent = 0;
	unsigned retry = 0;
	bool mailed = false, locked = false, in_tx = false;
	enum MHD_Result ret;

	kr_err_clear(&e);
	client_ip(c, v, ip);
	if (rq->list.len > 0) {
		l = view_list(v, rq->list.data);
	} else {
		l = &v->lists[0];
	}
	t = kr_pages_text(l != NULL ? l->lang : v->lang);
	atomic_fetch_add(&web->n_subscribe, 1);
	kr_web_client_key(ip, v->ipv6_prefix, key);
	if (!kr_web_rl_take(web->rl, key, now_mono(), &retry)) {
		atomic_fetch_add(&web->n_rate_limited, 1);
		kr_log_info("web: subscribe rate limited retry_in=%us", retry);
		kr_log_debug("web: rate limited ip=%s", ip);
		ret = send_message(web, c, 429, fmt, t->lang, t->limit_title,
		                   t->limit_body, NULL, NULL, retry);
		goto out;
	}
	if (l == NULL) {
		ret = send_message(web, c, 400, fmt, t->lang, t->invalid_title,
		                   t->bad_list, NULL, NULL, 0);
		goto out;
	}
	if (rq->field_too_long || rq->email.len == 0 ||
	    kr_address_normalize(rq->email.data, rq->email.len, addr, &e) ==
	        -1) {
		const char *reason, *local = NULL;

		atomic_fetch_add(&web->n_bad_address, 1);
		reason = e.msg[0] != '\0' ? e.msg : t->invalid_title;
		/* HTML in another language: its sentence, the English
		 * reason as the detail line; JSON and text keep reason. */
		if (rq->email.len > 0 && fmt == KR_WEB_FMT_HTML)
			local = kr_pages_address_reason(t->lang, reason);
		ret = send_message(web, c, 400, fmt, t->lang, t->invalid_title,
		                   rq->email.len == 0 ? t->no_email
		                   : local != NULL    ? local
		                                      : reason,
		                   local != NULL ? reason : NULL, NULL, 0);
		goto out;
	}
	if (rq->honeypot.len > 0) {
		/* A bot: the same answer as everyone, nothing stored. */
		atomic_fetch_add(&web->n_honeypot, 1);
		kr_log_info("web: subscribe honeypot list=%s", l->id);
		goto answer;
	}
	kr_web_clean_text(rq->name.data, name, sizeof(name));
	kr_web_clean_text(MHD_lookup_connection_value(
	                      c, MHD_HEADER_KIND, MHD_HTTP_HEADER_USER_AGENT),
	                  ua, sizeof(ua));
	consent.source = "form";
	consent.ip = ip;
	consent.ua = ua;
	pthread_mutex_lock(&web->store_lock);
	locked = true;
	/* One transaction for the three steps: one write lock, one commit. */
	if (kr_store_begin(web->store, &e) == -1) {
		ret = send_store_error(web, c, fmt, t->lang, &e);
		goto out;
	}
	in_tx = true;
	if (kr_store_subscribe(web->store, l->id, addr,
	                       name[0] != '\0' ? name : NULL, &consent,
	                       l->double_opt_in, now, &res, &e) == -1) {
		ret = send_store_error(web, c, fmt, t->lang, &e);
		goto out;
	}
	if (res.after == KR_SUB_PENDING) {
		if (kr_store_confirm_count(web->store, addr, now - 86400, &sent,
		                           &e) == -1) {
			ret = send_store_error(web, c, fmt, t->lang, &e);
			goto out;
		}
		if (sent < KR_WEB_CONFIRM_PER_DAY) {
			if (kr_store_confirm_enqueue(web->store, res.id, now,
			                             &e) == -1) {
				ret =
				    send_store_error(web, c, fmt, t->lang, &e);
				goto out;
			}
			mailed = true;
			atomic_fetch_add(&web->n_confirm_mail, 1);
		} else {
			atomic_fetch_add(&web->n_confirm_limited, 1);
		}
	}
	in_tx = false;
	if (kr_store_commit(web->store, &e) == -1) {
		kr_store_rollback(web->store);
		ret = send_store_error(web, c, fmt, t->lang, &e);
		goto out;
	}
	pthread_mutex_unlock(&web->store_lock);
	locked = false;
	/* Wake the delivery workers now: the confirmation leaves at once
	 * instead of at their next idle poll. */
	if (mailed)
		kr_delivery_kick();
	if (res.is_new)
		atomic_fetch_add(&web->n_subscribe_new, 1);
	kr_log_info("web: subscribe list=%s sub=%" PRId64 " new=%d "
	            "status=%d confirm=%s",
	            l->id, res.id, res.is_new ? 1 : 0, (int)res.after,
	            mailed
	                ? "queued"
	                : (res.after == KR_SUB_PENDING ? "limited" : "none"));
	kr_log_debug("web: subscribe addr=%s ip=%s", addr, ip);
answer:
	/* The same status and body whatever the address's state was. */
	{
		char *msg = say(
		    l->double_opt_in ? t->check_body : t->active_body, l->name);

		ret = send_message(web, c, 200, fmt, t->lang,
		                   l->double_opt_in ? t->check_title
		                                    : t->active_title,
		                   msg, NULL, NULL, 0);
		free(msg);
	}
out:
	if (in_tx)
		kr_store_rollback(web->store);
	if (locked)
		pthread_mutex_unlock(&web->store_lock);
	return ret;
}

/* ---- /confirm and /unsubscribe ---- */

/* Looks up and verifies the token of the request for purpose. 1 valid
 * (*sub_out filled, *l_out the list or NULL when no longer configured,
 * *report_out the report whose mail carried it, 0: none), 2 valid but the
 * subscription is gone (*sub_out holds the id and list), 0 invalid, -1
 * store error (in e). Takes and releases the store lock. */
static int
check_token(struct kr_web *web, struct view *v, const char *tok,
            enum kr_token_purpose purpose, int64_t max_age,
            struct kr_subscriber *sub_out, const struct view_list **l_out,
            int64_t *report_out, struct kr_err *e)
{
	struct kr_token_claims claims;
	int rc = 0, found;

	*l_out = NULL;
	*report_out = 0;
	if (tok == NULL || *tok == '\0' || strlen(tok) >= KR_TOKEN_MAX ||
	    kr_token_peek(tok, &claims, NULL) == -1 ||
	    claims.purpose != purpose)
		return 0;
	pthread_mutex_lock(&web->store_lock);
	found = kr_store_subscriber_get(web->store, claims.subscriber_id,
	                                sub_out, e);
	pthread_mutex_unlock(&web->store_lock);
	if (found == -1)
		return -1;
	if (found == 0) {
		/* Removed by the operator since: a genuine token for one
		 * of our lists still deserves a straight answer. */
		size_t i;

		for (i = 0; i < v->n_lists; i++)
			if (kr_token_verify(v->ring, tok, purpose,
			                    v->lists[i].id, now_unix(), max_age,
			                    &claims, NULL) == 0) {
				memset(sub_out, 0, sizeof(*sub_out));
				sub_out->id = claims.subscriber_id;
				snprintf(sub_out->list_id,
				         sizeof(sub_out->list_id), "%s",
				         v->lists[i].id);
				sub_out->status = KR_SUB_UNSUBSCRIBED;
				*l_out = &v->lists[i];
				return 2;
			}
		return 0;
	}
	if (kr_token_verify(v->ring, tok, purpose, sub_out->list_id, now_unix(),
	                    max_age, &claims, NULL) == -1 ||
	    claims.subscriber_id != sub_out->id ||
	    !kr_token_fits(&claims, sub_out->created_at, sub_out->consent_at))
		goto out;
	*l_out = view_list(v, sub_out->list_id);
	*report_out = claims.report_id;
	rc = 1;
out:
	return rc;
}

/* The t= argument, or "" (refused as a bad token) when its decoded value
 * holds a NUL: "t=TOKEN%00junk" must not pass for TOKEN. */
static const char *
token_arg(struct MHD_Connection *c)
{
	const char *tok = NULL;
	size_t len = 0;

	if (MHD_lookup_connection_value_n(c, MHD_GET_ARGUMENT_KIND, "t", 1,
		&tok, &len) != MHD_YES || tok == NULL)
		return NULL;
	return strlen(tok) == len ? tok : "";
}

static enum MHD_Result
do_confirm(struct kr_web *web, struct MHD_Connection *c, struct view *v,
           bool post)
{
	const char *tok = token_arg(c);
	const struct kr_pages_text *t;
	const struct view_list *l = NULL;
	struct kr_subscriber sub;
	struct kr_buf body, action;
	struct kr_err e;
	char *msg = NULL;
	enum MHD_Result ret = MHD_NO;
	int64_t report; /* confirm tokens name none */
	int rc;

	kr_err_clear(&e);
	kr_buf_init(&body, 0);
	kr_buf_init(&action, 0);
	rc = check_token(web, v, tok, KR_TOKEN_CONFIRM, KR_WEB_CONFIRM_MAX_AGE,
	                 &sub, &l, &report, &e);
	if (rc == -1) {
		ret = send_store_error(web, c, KR_WEB_FMT_HTML, v->lang, &e);
		goto out;
	}
	if (rc == 0 || l == NULL) {
		/* A list no longer in the config takes no new subscribers. */
		ret = send_bad_token(web, c, v->lang, false);
		goto out;
	}
	t = kr_pages_text(l->lang);
	if (rc == 2) {
		ret = send_message(web, c, 400, KR_WEB_FMT_HTML, t->lang,
		                   t->token_title, t->confirm_gone, NULL, NULL,
		                   0);
		goto out;
	}
	if (!post) {
		const struct kr_web_var vars[] = {
		    {"title", t->confirm_title, false},
		    {"message", NULL, false},
		    {"action", NULL, false},
		    {"button", t->confirm_button, false},
		};
		struct kr_web_var vv[KR_NELEM(vars)];

		memcpy(vv, vars, sizeof(vars));
		msg = say(t->confirm_body, l->name);
		vv[1].value = msg;
		if (kr_buf_puts(&action, "confirm?t=") == -1 ||
		    kr_buf_puts(&action, tok) == -1)
			goto out;
		vv[2].value = action.data;
		if (kr_web_render(&body, kr_pages_confirm, vv, KR_NELEM(vv)) ==
		    -1)
			goto out;
		ret = send_html(web, c, 200, t->lang, t->confirm_title, NULL,
		                body.data, false);
		goto out;
	}
	pthread_mutex_lock(&web->store_lock);
	rc = kr_store_subscriber_confirm(web->store, sub.id, now_unix(), &e);
	pthread_mutex_unlock(&web->store_lock);
	if (rc == -1) {
		ret = send_store_error(web, c, KR_WEB_FMT_HTML, t->lang, &e);
		goto out;
	}
	if (rc == 0 && sub.status != KR_SUB_ACTIVE) {
		ret = send_message(web, c, 400, KR_WEB_FMT_HTML, t->lang,
		                   t->token_title, t->confirm_gone, NULL, NULL,
		                   0);
		goto out;
	}
	if (rc == 1) {
		atomic_fetch_add(&web->n_confirmed, 1);
		kr_log_info("web: confirmed list=%s sub=%" PRId64, l->id,
		            sub.id);
	}
	msg = say(t->confirmed_body, l->name);
	ret = send_message(web, c, 200, KR_WEB_FMT_HTML, t->lang,
	                   t->confirmed_title, msg, NULL, NULL, 0);
out:
	free(msg);
	kr_buf_fini(&body);
	kr_buf_fini(&action);
	return ret;
}

static enum MHD_Result
do_unsubscribe(struct kr_web *web, struct MHD_Connection *c, struct view *v,
               struct req *rq)
{
	const char *tok = token_arg(c);
	const struct kr_pages_text *t;
	const struct view_list *l = NULL;
	struct kr_subscriber sub;
	struct kr_buf body, action;
	struct kr_err e;
	char *msg = NULL;
	const char *name;
	enum MHD_Result ret = MHD_NO;
	bool one_click = false, all = false;
	int64_t report = 0;
	int rc;

	kr_err_clear(&e);
	kr_buf_init(&body, 0);
	kr_buf_init(&action, 0);
	if (rq != NULL) {
		one_click = rq->one_click.len > 0 &&
		            strcmp(rq->one_click.data, "One-Click") == 0;
		all = !one_click && rq->scope.len > 0 &&
		      strcmp(rq->scope.data, "all") == 0;
	}
	/* Unsubscribe links never expire: people must always be able to
	 * leave, however old the mail. */
	rc = check_token(web, v, tok, KR_TOKEN_UNSUBSCRIBE, 0, &sub, &l,
	                 &report, &e);
	if (rc == -1) {
		ret = send_store_error(
		    web, c, one_click ? KR_WEB_FMT_TEXT : KR_WEB_FMT_HTML,
		    v->lang, &e);
		goto out;
	}
	if (rc == 0) {
		ret = send_bad_token(web, c, v->lang, one_click);
		goto out;
	}
	t = kr_pages_text(l != NULL ? l->lang : v->lang);
	name = l != NULL ? l->name : sub.list_id;
	if (rq == NULL) {
		const struct kr_web_var vars[] = {
		    {"title", t->unsub_title, false},
		    {"message", NULL, false},
		    {"action", NULL, false},
		    {"one", t->unsub_one, false},
		    {"all", t->unsub_all, false},
		};
		struct kr_web_var vv[KR_NELEM(vars)];

		memcpy(vv, vars, sizeof(vars));
		msg = say(t->unsub_body, name);
		vv[1].value = msg;
		if (kr_buf_puts(&action, "unsubscribe?t=") == -1 ||
		    kr_buf_puts(&action, tok) == -1)
			goto out;
		vv[2].value = action.data;
		if (kr_web_render(&body, kr_pages_unsubscribe, vv,
		                  KR_NELEM(vv)) == -1)
			goto out;
		ret = send_html(web, c, 200, t->lang, t->unsub_title, NULL,
		                body.data, false);
		goto out;
	}
	if (rc == 2) {
		rc = 0; /* nothing left to change */
	} else {
		pthread_mutex_lock(&web->store_lock);
		rc = kr_store_subscriber_unsubscribe(web->store, sub.id, all,
		                                     report, now_unix(), &e);
		pthread_mutex_unlock(&web->store_lock);
	}
	if (rc == -1) {
		ret = send_store_error(
		    web, c, one_click ? KR_WEB_FMT_TEXT : KR_WEB_FMT_HTML,
		    t->lang, &e);
		goto out;
	}
	atomic_fetch_add(&web->n_unsubscribed, (unsigned long)rc);
	if (rc > 0)
		web->archive.stale = true; /* queued copies cancelled */
	kr_log_info("web: unsubscribed list=%s sub=%" PRId64 " scope=%s "
	            "changed=%d",
	            sub.list_id, sub.id,
	            one_click ? "one-click" : (all ? "all" : "list"), rc);
	if (one_click) {
		/* RFC 8058: 200, no redirect, nothing to read. */
		ret = send_buf(web, c, 200, "text/plain; charset=utf-8", NULL,
		               "unsubscribed\n", 13, NULL, 0, false);
		goto out;
	}
	msg = all ? say(t->unsubbed_all, name) : say(t->unsubbed_body, name);
	ret = send_message(web, c, 200, KR_WEB_FMT_HTML, t->lang,
	                   t->unsubbed_title, msg, NULL, NULL, 0);
out:
	free(msg);
	kr_buf_fini(&body);
	kr_buf_fini(&action);
	return ret;
}

/* ---- /archive ---- */

static enum MHD_Result
send_not_found(struct kr_web *web, struct MHD_Connection *c, const char *lang)
{
	const struct kr_pages_text *t = kr_pages_text(lang);

	return send_message(web, c, 404, KR_WEB_FMT_HTML, lang,
	                    t->notfound_title, t->notfound_body, NULL, NULL, 0);
}

/* Whether a report may be shown: its list archives, it was not
 * cancelled, and it went out (some copy sent, or nothing left to send). */
static const struct view_list *
archived(const struct view *v, const struct kr_report_row *r,
         const struct kr_delivery_counts *n)
{
	const struct view_list *l = view_list(v, r->list_id);

	if (l == NULL || !l->archive || r->state == KR_RS_CANCELLED)
		return NULL;
	if (n->sent > 0)
		return l;
	if (n->queued + n->deferred == 0 && r->send_at <= now_unix())
		return l;
	return NULL;
}

static void
format_date(int64_t t, char out[32])
{
	struct tm tm;
	time_t tt = (time_t)t;

	if (gmtime_r(&tt, &tm) == NULL ||
	    strftime(out, 32, "%Y-%m-%d", &tm) == 0)
		snprintf(out, 32, "-");
}

/* The sender block (特定電子メール法: name, postal address, contact) of
 * list l, one line per configured field, in the list's language. */
static int
put_sender(struct kr_buf *b, const struct view_list *l)
{
	const struct kr_pages_text *t = kr_pages_text(l->lang);
	const char *labels[3] = {t->sender_name, t->sender_address,
	                         t->sender_contact};
	size_t i;

	for (i = 0; i < 3; i++) {
		const struct kr_web_var vars[] = {
		    {"label", labels[i], false},
		    {"value", l->sender[i], false},
		};

		if (l->sender[i] != NULL &&
		    kr_web_render(b, kr_pages_sender_line, vars,
		                  KR_NELEM(vars)) == -1)
			return -1;
	}
	return 0;
}

static bool
same_str(const char *a, const char *b)
{
	return a == NULL || b == NULL ? a == b : strcmp(a, b) == 0;
}

static bool
same_sender(const struct view_list *a, const struct view_list *b)
{
	return same_str(a->sender[0], b->sender[0]) &&
	       same_str(a->sender[1], b->sender[1]) &&
	       same_str(a->sender[2], b->sender[2]) &&
	       strcmp(a->lang, b->lang) == 0;
}

/* The date the archive shows: the report's own (front matter), else the
 * day it went (or was queued). */
static void
report_date(const struct kr_report_row *r, char out[32])
{
	if (r->date != NULL && r->date[0] != '\0')
		snprintf(out, 32, "%s", r->date);
	else
		format_date(r->send_at > r->created_at ? r->send_at
		                                       : r->created_at,
		            out);
}

/* The tag: URI (RFC 4151) of report r in the feed: the public host, the
 * day the report was added (it never changes) and its path, so that it
 * stays the same however often the feed is built. */
static int
put_tag(struct kr_buf *b, const char *public_url, const struct kr_report_row *r)
{
	const char *host = strstr(public_url, "://"), *end, *at, *path;
	char day[32];

	host = host != NULL ? host + 3 : public_url;
	path = host + strcspn(host, "/?#");
	at = memchr(host, '@', (size_t)(path - host));
	if (at != NULL)
		host = at + 1;
	/* the host without a port ("[v6]" kept whole) */
	end = host;
	if (*end == '[')
		while (end < path && *end++ != ']')
			;
	while (end < path && *end != ':')
		end++;
	format_date(r->created_at, day);
	return kr_buf_printf(b, "tag:%.*s,%s:%.*s/archive/%" PRId64,
	                     (int)(end - host), host, day,
	                     (int)strcspn(path, "?#"), path, r->id);
}

/* The feed's updated of r (RFC 3339): its own date (that day), else the
 * time it went (or was queued). */
static void
report_updated(const struct kr_report_row *r, char out[32])
{
	struct tm tm;
	time_t tt =
	    (time_t)(r->send_at > r->created_at ? r->send_at : r->created_at);

	if (r->date != NULL && strlen(r->date) == 10)
		snprintf(out, 32, "%sT00:00:00Z", r->date);
	else if (gmtime_r(&tt, &tm) == NULL ||
	         strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(out, 32, "1970-01-01T00:00:00Z");
}

struct archive_ctx {
	const struct view *v;
	struct kr_buf *items;
	struct kr_buf *entries; /* of the feed */
	char updated[32];       /* the newest entry's, or "" */
	size_t n;
};

static int
archive_one(void *ctx, const struct kr_report_row *r,
            const struct kr_delivery_counts *counts)
{
	struct archive_ctx *a = ctx;
	const struct view_list *l = archived(a->v, r, counts);
	struct kr_buf tag;
	char id[24], date[32], updated[32];
	int rc = -1;

	if (l == NULL)
		return 0;
	kr_buf_init(&tag, 0);
	snprintf(id, sizeof(id), "%" PRId64, r->id);
	report_date(r, date);
	report_updated(r, updated);
	if (put_tag(&tag, a->v->public_url, r) == -1)
		goto out;
	{
		const struct kr_web_var vars[] = {
		    {"id", id, false},
		    {"subject", r->subject, false},
		    {"list", l->name, false},
		    {"date", date, false},
		    {"tag", tag.data, false},
		    {"updated", updated, false},
		    {"base", a->v->public_url, false},
		};

		if (kr_web_render(a->items, kr_pages_archive_item, vars,
		                  KR_NELEM(vars)) == -1 ||
		    kr_web_render(a->entries, kr_pages_atom_entry, vars,
		                  KR_NELEM(vars)) == -1)
			goto out;
	}
	if (strcmp(updated, a->updated) > 0)
		snprintf(a->updated, sizeof(a->updated), "%s", updated);
	a->n++;
	rc = 0;
out:
	kr_buf_fini(&tag);
	return rc;
}

/* Builds the /archive list into *html_out and the feed's entries into
 * *atom_out (caller frees both), their newest updated into updated (""
 * when none). Store lock held. 0 or -1 (e). */
static int
archive_build(struct kr_web *web, const struct view *v, char **html_out,
              char **atom_out, char updated[32], struct kr_err *e)
{
	const struct kr_pages_text *t = kr_pages_text(v->lang);
	struct kr_buf items, out, entries;
	struct archive_ctx a;
	int rc = -1;

	kr_buf_init(&items, 0);
	kr_buf_init(&out, 0);
	kr_buf_init(&entries, 0);
	memset(&a, 0, sizeof(a));
	a.v = v;
	a.items = &items;
	a.entries = &entries;
	atomic_fetch_add(&web->n_archive_builds, 1);
	if (kr_store_report_foreach(web->store, KR_WEB_ARCHIVE_MAX, archive_one,
	                            &a, e) == -1)
		goto out;
	if (a.n > 0 && (kr_buf_puts(&out, "<ul>\n") == -1 ||
	                kr_buf_append(&out, items.data, items.len) == -1 ||
	                kr_buf_puts(&out, "</ul>\n") == -1))
		goto fail;
	if (a.n == 0 && (kr_buf_puts(&out, "<p>") == -1 ||
	                 kr_web_html_escape(&out, t->archive_empty) == -1 ||
	                 kr_buf_puts(&out, "</p>\n") == -1))
		goto fail;
	*html_out = kr_buf_steal(&out);
	*atom_out = kr_buf_steal(&entries);
	snprintf(updated, 32, "%s", a.updated);
	rc = 0;
	goto out;
fail:
	kr_err_set(e, KR_ERR_INVALID, "the archive page is too large");
out:
	kr_buf_fini(&items);
	kr_buf_fini(&out);
	kr_buf_fini(&entries);
	return rc;
}

/* Brings web->archive up to date for view v unless it is fresh enough
 * (see KR_WEB_ARCHIVE_FRESH). Store worker only. 0 or -1 (e). */
static int
archive_refresh(struct kr_web *web, const struct view *v, struct kr_err *e)
{
	char *html = NULL, *atom = NULL;
	char updated[32];
	int64_t version = 0;
	double now = now_mono(), age = now - web->archive.at;
	bool fresh;
	int rc;

	pthread_mutex_lock(&web->store_lock);
	/* Read before the build: a commit during it shows next time. */
	rc = kr_store_changes(web->store, &version, e);
	fresh = rc == 0 && web->archive.html != NULL &&
	        web->archive.gen == v->gen && age < KR_WEB_ARCHIVE_MAX_AGE &&
	        ((version == web->archive.version && !web->archive.stale) ||
	         age < KR_WEB_ARCHIVE_FRESH);
	if (rc == 0 && !fresh) {
		rc = archive_build(web, v, &html, &atom, updated, e);
		if (rc == 0) {
			free(web->archive.html);
			free(web->archive.atom);
			web->archive.html = html;
			web->archive.atom = atom;
			snprintf(web->archive.updated,
			         sizeof(web->archive.updated), "%s", updated);
			web->archive.gen = v->gen;
			web->archive.version = version;
			web->archive.at = now;
			web->archive.stale = false;
		}
	}
	pthread_mutex_unlock(&web->store_lock);
	return rc;
}

static enum MHD_Result
do_archive(struct kr_web *web, struct MHD_Connection *c, struct view *v)
{
	const struct kr_pages_text *t = kr_pages_text(v->lang);
	struct kr_buf body;
	struct kr_err e;
	enum MHD_Result ret = MHD_NO;

	kr_err_clear(&e);
	kr_buf_init(&body, 0);
	if (archive_refresh(web, v, &e) == -1) {
		ret = send_store_error(web, c, KR_WEB_FMT_HTML, v->lang, &e);
		goto out;
	}
	{
		const struct kr_web_var vars[] = {
		    {"title", t->archive_title, false},
		    {"items", "", true},
		    {"empty", web->archive.html, true},
		    {"back", t->back, false},
		};

		if (kr_web_render(&body, kr_pages_archive, vars,
		                  KR_NELEM(vars)) == -1)
			goto out;
	}
	/* the sender of each archived list (once for the same block) */
	{
		size_t i, j;

		for (i = 0; i < v->n_lists; i++) {
			const struct view_list *l = &v->lists[i];
			bool seen = false;

			for (j = 0; j < i && l->archive; j++)
				seen |= v->lists[j].archive &&
				        same_sender(&v->lists[j], l);
			if (l->archive && !seen && put_sender(&body, l) == -1)
				goto out;
		}
	}
	ret = send_html(web, c, 200, v->lang, t->archive_title, v->feed_link,
	                body.data, false);
out:
	kr_buf_fini(&body);
	return ret;
}

/* GET /archive.atom: the reports of /archive as an Atom feed (RFC 4287),
 * from the same built list. 404 when no list archives. */
static enum MHD_Result
do_archive_feed(struct kr_web *web, struct MHD_Connection *c, struct view *v)
{
	const struct kr_pages_text *t = kr_pages_text(v->lang);
	const char *author = t->archive_title;
	struct kr_report_row none;
	struct kr_buf out;
	struct kr_err e;
	char updated[32];
	enum MHD_Result ret = MHD_NO;
	size_t i;

	if (!v->any_archive)
		return send_not_found(web, c, v->lang);
	kr_err_clear(&e);
	kr_buf_init(&out, 0);
	if (archive_refresh(web, v, &e) == -1) {
		ret = send_store_error(web, c, KR_WEB_FMT_TEXT, v->lang, &e);
		goto out;
	}
	/* The publisher: the first archived list's sender, else its name. */
	for (i = 0; i < v->n_lists; i++)
		if (v->lists[i].archive) {
			author = v->lists[i].sender[0] != NULL
			             ? v->lists[i].sender[0]
			             : v->lists[i].name;
			break;
		}
	/* The newest entry's; with none yet, now. */
	memset(&none, 0, sizeof(none));
	none.created_at = now_unix();
	report_updated(&none, updated);
	if (web->archive.updated[0] != '\0')
		snprintf(updated, sizeof(updated), "%s", web->archive.updated);
	{
		const struct kr_web_var vars[] = {
		    {"lang", v->lang, false},
		    {"base", v->public_url, false},
		    {"title", t->archive_title, false},
		    {"updated", updated, false},
		    {"author", author, false},
		    {"entries", web->archive.atom, true},
		};

		if (kr_web_render(&out, kr_pages_atom_feed, vars,
		                  KR_NELEM(vars)) == -1)
			goto out;
	}
	ret = send_buf(web, c, 200, "application/atom+xml; charset=utf-8", NULL,
	               out.data, out.len, NULL, 0, true);
out:
	kr_buf_fini(&out);
	return ret;
}

static enum MHD_Result
do_archive_item(struct kr_web *web, struct MHD_Connection *c, struct view *v,
                const char *ids)
{
	const struct kr_pages_text *t;
	const struct view_list *l;
	struct kr_report_row r;
	struct kr_delivery_counts counts;
	struct kr_buf body;
	struct kr_err e;
	char date[32];
	char *end = NULL;
	long long id;
	enum MHD_Result ret = MHD_NO;
	int found = 0;

	kr_err_clear(&e);
	memset(&r, 0, sizeof(r));
	memset(&counts, 0, sizeof(counts));
	kr_buf_init(&body, 0);
	errno = 0;
	id = (*ids >= '1' && *ids <= '9' && strlen(ids) <= 18)
	         ? strtoll(ids, &end, 10)
	         : 0;
	if (id <= 0 || errno != 0 || end == NULL || *end != '\0') {
		ret = send_not_found(web, c, v->lang);
		goto out;
	}
	pthread_mutex_lock(&web->store_lock);
	found = kr_store_report_get(web->store, (int64_t)id, &r, &e);
	if (found == 1 && kr_store_delivery_counts(web->store, (int64_t)id,
	                                           &counts, &e) == -1)
		found = -1;
	pthread_mutex_unlock(&web->store_lock);
	if (found == -1) {
		ret = send_store_error(web, c, KR_WEB_FMT_HTML, v->lang, &e);
		goto out;
	}
	if (found == 0 || (l = archived(v, &r, &counts)) == NULL) {
		ret = send_not_found(web, c, v->lang);
		goto out;
	}
	t = kr_pages_text(l->lang);
	report_date(&r, date);
	{
		const struct kr_web_var vars[] = {
		    {"subject", r.subject, false},
		    {"list", l->name, false},
		    {"date", date, false},
		    /* The stored body was rendered by the report module
		     * (cmark, raw HTML dropped unless allow_html). */
		    {"html", r.html, true},
		    {"back", t->archive_title, false},
		};

		if (kr_web_render(&body, kr_pages_report, vars,
		                  KR_NELEM(vars)) == -1 ||
		    put_sender(&body, l) == -1)
			goto out;
	}
	ret = send_html(web, c, 200, l->lang, r.subject, NULL, body.data, true);
out:
	if (found == 1)
		kr_store_report_row_fini(&r);
	kr_buf_fini(&body);
	return ret;
}

/* ---- the public handler ---- */

static enum route
route_of(const char *url)
{
	if (strcmp(url, "/") == 0)
		return R_INDEX;
	if (strcmp(url, "/subscribe") == 0)
		return R_SUBSCRIBE;
	if (strcmp(url, "/confirm") == 0)
		return R_CONFIRM;
	if (strcmp(url, "/unsubscribe") == 0)
		return R_UNSUBSCRIBE;
	if (strcmp(url, "/archive") == 0 || strcmp(url, "/archive/") == 0)
		return R_ARCHIVE;
	if (strcmp(url, "/archive.atom") == 0)
		return R_ARCHIVE_FEED;
	if (strncmp(url, "/archive/", 9) == 0)
		return R_ARCHIVE_ITEM;
	return R_NONE;
}

static const char *
allowed(enum route r)
{
	switch (r) {
	case R_SUBSCRIBE:
		return "POST";
	case R_CONFIRM:
	case R_UNSUBSCRIBE:
		return "GET, HEAD, POST";
	default:
		return "GET, HEAD";
	}
}

static enum MHD_Result
post_field(void *cls, enum MHD_ValueKind kind, const char *key,
           const char *filename, const char *content_type,
           const char *transfer_encoding, const char *data, uint64_t off,
           size_t size)
{
	struct req *rq = cls;
	struct kr_buf *b = NULL;

	(void)kind;
	(void)filename;
	(void)content_type;
	(void)transfer_encoding;
	(void)off;
	if (strcmp(key, "email") == 0)
		b = &rq->email;
	else if (strcmp(key, "list") == 0)
		b = &rq->list;
	else if (strcmp(key, "name") == 0)
		b = &rq->name;
	else if (strcmp(key, "website") == 0)
		b = &rq->honeypot;
	else if (strcmp(key, "List-Unsubscribe") == 0)
		b = &rq->one_click;
	else if (strcmp(key, "scope") == 0)
		b = &rq->scope;
	if (b != NULL && size > 0 && kr_buf_append(b, data, size) == -1)
		rq->field_too_long = true;
	/* A NUL inside a field would cut it short later: refuse it. */
	if (b != NULL && size > 0 && memchr(data, '\0', size) != NULL)
		rq->field_too_long = true;
	return MHD_YES;
}

static void
req_free(struct req *rq)
{
	if (rq == NULL)
		return;
	if (rq->pp != NULL)
		MHD_destroy_post_processor(rq->pp);
	kr_buf_fini(&rq->email);
	kr_buf_fini(&rq->list);
	kr_buf_fini(&rq->name);
	kr_buf_fini(&rq->honeypot);
	kr_buf_fini(&rq->one_click);
	kr_buf_fini(&rq->scope);
	free(rq->url);
	if (rq->resp != NULL)
		MHD_destroy_response(rq->resp);
	free(rq);
}

static void
request_done(void *cls, struct MHD_Connection *c, void **con_cls,
             enum MHD_RequestTerminationCode toe)
{
	struct kr_web *web = cls;

	(void)toe;
	if (*con_cls != &no_body)
		req_free(*con_cls);
	*con_cls = NULL;
	/* The next request's head has its own deadline. */
	conn_in_head(web, conn_of(c), true);
}

static enum MHD_Result
send_too_large(struct kr_web *web, struct MHD_Connection *c, struct view *v)
{
	const struct kr_pages_text *t = kr_pages_text(v->lang);

	return send_message(web, c, 413, wanted_fmt(c), v->lang, t->large_title,
	                    t->large_body, NULL, NULL, 0);
}

static enum MHD_Result
handle_get(struct kr_web *web, struct MHD_Connection *c, struct view *v,
           enum route r, const char *url)
{
	switch (r) {
	case R_INDEX:
		return queue_response(c, MHD_HTTP_OK, v->index);
	case R_CONFIRM:
		return do_confirm(web, c, v, false);
	case R_UNSUBSCRIBE:
		return do_unsubscribe(web, c, v, NULL);
	case R_ARCHIVE:
		return do_archive(web, c, v);
	case R_ARCHIVE_ITEM:
		return do_archive_item(web, c, v, url + 9);
	case R_ARCHIVE_FEED:
		return do_archive_feed(web, c, v);
	default:
		return send_not_found(web, c, v->lang);
	}
}

static enum MHD_Result
handle_post(struct kr_web *web, struct MHD_Connection *c, struct view *v,
            struct req *rq)
{
	switch (rq->route) {
	case R_SUBSCRIBE:
		return do_subscribe(web, c, v, rq);
	case R_CONFIRM:
		return do_confirm(web, c, v, true);
	case R_UNSUBSCRIBE:
		return do_unsubscribe(web, c, v, rq);
	default:
		return send_not_found(web, c, v->lang);
	}
}

static bool
has_body(struct MHD_Connection *c)
{
	const char *cl = MHD_lookup_connection_value(
	    c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);

	return (cl != NULL && strtoull(cl, NULL, 10) > 0) ||
	       MHD_lookup_connection_value(c, MHD_HEADER_KIND,
	                                   MHD_HTTP_HEADER_TRANSFER_ENCODING) !=
	           NULL;
}

/* Answers a request that is not a POST to a POST route. */
static enum MHD_Result
handle_other(struct kr_web *web, struct MHD_Connection *c, const char *url,
             const char *method)
{
	struct view *v = view_acquire(web);
	enum route r = route_of(url);
	bool get = strcmp(method, MHD_HTTP_METHOD_GET) == 0 ||
	           strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
	enum MHD_Result ret;

	if (r == R_NONE) {
		ret = send_not_found(web, c, v->lang);
	} else if (get && r != R_SUBSCRIBE) {
		ret = handle_get(web, c, v, r, url);
	} else {
		const struct kr_pages_text *t = kr_pages_text(v->lang);

		ret = send_message(web, c, 405, KR_WEB_FMT_HTML, v->lang,
		                   t->method_title, t->method_body, NULL,
		                   allowed(r), 0);
	}
	view_release(web, v);
	return ret;
}

static struct req *
req_new(enum route r, bool is_post)
{
	struct req *rq = kr_xcalloc(1, sizeof(*rq));

	rq->route = r;
	rq->is_post = is_post;
	kr_buf_init(&rq->email, KR_WEB_FIELD_MAX);
	kr_buf_init(&rq->list, 128);
	kr_buf_init(&rq->name, KR_WEB_FIELD_MAX);
	kr_buf_init(&rq->honeypot, KR_WEB_FIELD_MAX);
	kr_buf_init(&rq->one_click, 64);
	kr_buf_init(&rq->scope, 64);
	return rq;
}

/* Wakes the connections of held answers that are due (all of them when
 * stopping). Called and returns with q_lock held. */
static void
release_held(struct kr_web *web)
{
	struct req *due = NULL, **tail = &due, *rq;
	double now = now_mono();

	while (web->held_head != NULL &&
	       (web->held_head->due <= now || web->q_stopping)) {
		rq = web->held_head;
		web->held_head = rq->next;
		rq->next = NULL;
		*tail = rq;
		tail = &rq->next;
	}
	if (web->held_head == NULL)
		web->held_tail = NULL;
	if (due == NULL)
		return;
	pthread_mutex_unlock(&web->q_lock);
	while ((rq = due) != NULL) {
		due = rq->next;
		rq->next = NULL;
		MHD_resume_connection(rq->conn);
	}
	pthread_mutex_lock(&web->q_lock);
	pthread_cond_broadcast(&web->q_cond);
}

/* Waits on q_cond, no later than the first held answer's due time. */
static void
worker_wait(struct kr_web *web)
{
	struct timespec ts;
	double at, whole;

	if (web->held_head == NULL) {
		pthread_cond_wait(&web->q_cond, &web->q_lock);
		return;
	}
	at = web->held_head->due;
	whole = (double)(int64_t)at;
	ts.tv_sec = (time_t)whole;
	ts.tv_nsec = (long)((at - whole) * 1e9);
	(void)pthread_cond_timedwait(&web->q_cond, &web->q_lock, &ts);
}

/* Runs queued requests against the store, one at a time (the store
 * connection is one anyway), then wakes their connections: at once, or
 * for a sign-up at its due time (KR_WEB_SIGNUP_FLOOR). */
static void *
store_worker(void *arg)
{
	struct kr_web *web = arg;
	struct req *rq;
	struct view *v;

	pthread_mutex_lock(&web->q_lock);
	for (;;) {
		release_held(web);
		if (web->q_head == NULL) {
			if (web->q_quit && web->held_head == NULL)
				break;
			worker_wait(web);
			continue;
		}
		rq = web->q_head;
		web->q_head = rq->next;
		if (web->q_head == NULL)
			web->q_tail = NULL;
		rq->next = NULL;
		web->q_busy = true;
		pthread_mutex_unlock(&web->q_lock);

		tl_capture = rq;
		v = view_acquire(web);
		if (rq->is_post)
			(void)handle_post(web, rq->conn, v, rq);
		else
			(void)handle_get(web, rq->conn, v, rq->route, rq->url);
		view_release(web, v);
		tl_capture = NULL;
		rq->done = true;

		pthread_mutex_lock(&web->q_lock);
		if (rq->due > now_mono() && !web->q_stopping) {
			if (web->held_tail != NULL)
				web->held_tail->next = rq;
			else
				web->held_head = rq;
			web->held_tail = rq;
		} else {
			pthread_mutex_unlock(&web->q_lock);
			MHD_resume_connection(rq->conn);
			pthread_mutex_lock(&web->q_lock);
		}
		web->q_busy = false;
		pthread_cond_broadcast(&web->q_cond);
	}
	pthread_mutex_unlock(&web->q_lock);
	return NULL;
}

/* Suspends the connection and hands rq to the store worker; answers 503
 * at once when the module is stopping. */
static enum MHD_Result
dispatch(struct kr_web *web, struct MHD_Connection *c, const char *url,
         struct req *rq)
{
	const struct kr_pages_text *t;
	struct view *v;
	enum MHD_Result ret;

	pthread_mutex_lock(&web->q_lock);
	if (!web->q_stopping) {
		rq->conn = c;
		rq->url = kr_xstrdup(url);
		if (rq->is_post && rq->route == R_SUBSCRIBE)
			rq->due = now_mono() + KR_WEB_SIGNUP_FLOOR;
		MHD_suspend_connection(c);
		if (web->q_tail != NULL)
			web->q_tail->next = rq;
		else
			web->q_head = rq;
		web->q_tail = rq;
		pthread_cond_broadcast(&web->q_cond);
		pthread_mutex_unlock(&web->q_lock);
		return MHD_YES;
	}
	pthread_mutex_unlock(&web->q_lock);
	v = view_acquire(web);
	t = kr_pages_text(v->lang);
	ret = send_message(web, c, 503, KR_WEB_FMT_HTML, v->lang, t->busy_title,
	                   t->busy_body, NULL, NULL, 5);
	view_release(web, v);
	return ret;
}

static bool
needs_store(enum route r)
{
	return r == R_CONFIRM || r == R_UNSUBSCRIBE || r == R_ARCHIVE ||
	       r == R_ARCHIVE_ITEM || r == R_ARCHIVE_FEED;
}

static enum MHD_Result
route_request(struct kr_web *web, struct MHD_Connection *c, const char *url,
              const char *method, const char *version, const char *upload_data,
              size_t *upload_data_size, void **con_cls)
{
	struct req *rq;
	struct view *v = NULL;
	const char *cl, *why;
	enum route r;
	enum MHD_Result ret = MHD_NO;

	if (*con_cls == &no_body) {
		/* The second call. Answering only now (not in the first call,
		 * when MHD cannot know the body was read) keeps the
		 * connection alive for the next request. */
		*con_cls = NULL;
		r = route_of(url);
		if (needs_store(r) &&
		    (strcmp(method, MHD_HTTP_METHOD_GET) == 0 ||
		     strcmp(method, MHD_HTTP_METHOD_HEAD) == 0)) {
			rq = req_new(r, false);
			*con_cls = rq;
			return dispatch(web, c, url, rq);
		}
		return handle_other(web, c, url, method);
	}
	rq = *con_cls;
	if (rq != NULL) {
		if (rq->done) {
			/* Back from the store worker. */
			if (rq->resp == NULL)
				return MHD_NO;
			return queue_response(c, rq->status, rq->resp);
		}
		/* The body of a POST, in pieces, then one final call. */
		if (*upload_data_size > 0) {
			rq->body_len += *upload_data_size;
			if (rq->body_len > KR_WEB_BODY_MAX)
				rq->too_large = true;
			if (!rq->too_large && rq->pp != NULL &&
			    MHD_post_process(rq->pp, upload_data,
			                     *upload_data_size) != MHD_YES)
				rq->field_too_long = true;
			*upload_data_size = 0;
			/* MHD cannot answer in the middle of a body: drop the
			 * rest and answer 413 at its end, unless it goes on
			 * and on (chunked), then hang up. */
			if (rq->body_len > 4 * KR_WEB_BODY_MAX)
				return MHD_NO;
			return MHD_YES;
		}
		if (!rq->too_large)
			return dispatch(web, c, url, rq);
		v = view_acquire(web);
		ret = send_too_large(web, c, v);
		goto out;
	}

	/* The first call: headers are in. */
	atomic_fetch_add(&web->n_requests, 1);
	if ((why = bad_framing(c, url, version)) != NULL)
		return send_bad_request(web, c, why);
	r = route_of(url);
	if (strcmp(method, MHD_HTTP_METHOD_POST) != 0 || r == R_NONE ||
	    r == R_INDEX || r == R_ARCHIVE || r == R_ARCHIVE_ITEM ||
	    r == R_ARCHIVE_FEED) {
		if (!has_body(c)) {
			*con_cls = &no_body;
			return MHD_YES;
		}
		/* A body nobody reads: answer now (MHD closes after), store
		 * routes with a plain 405 or 404. */
		if (needs_store(r)) {
			v = view_acquire(web);
			ret =
			    send_message(web, c, 405, KR_WEB_FMT_HTML, v->lang,
			                 kr_pages_text(v->lang)->method_title,
			                 kr_pages_text(v->lang)->method_body,
			                 NULL, allowed(r), 0);
			goto out;
		}
		return handle_other(web, c, url, method);
	}
	cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
	                                 MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (cl != NULL && strtoull(cl, NULL, 10) > KR_WEB_BODY_MAX) {
		v = view_acquire(web);
		ret = send_too_large(web, c, v);
		goto out;
	}
	rq = req_new(r, true);
	/* NULL when the body is neither urlencoded nor multipart: the form
	 * is then empty. */
	rq->pp = MHD_create_post_processor(c, 1024, post_field, rq);
	*con_cls = rq;
	ret = MHD_YES;
out:
	if (v != NULL)
		view_release(web, v);
	return ret;
}

static enum route_label
route_label_of(const char *url)
{
	switch (route_of(url)) {
	case R_INDEX:
		return RL_INDEX;
	case R_SUBSCRIBE:
		return RL_SUBSCRIBE;
	case R_CONFIRM:
		return RL_CONFIRM;
	case R_UNSUBSCRIBE:
		return RL_UNSUBSCRIBE;
	case R_ARCHIVE:
	case R_ARCHIVE_ITEM:
	case R_ARCHIVE_FEED:
		return RL_ARCHIVE;
	default:
		return RL_OTHER;
	}
}

/* The access handler of the public listener: routes the request, then
 * counts the answer queued (if any) by route and status. Answers MHD
 * makes by itself (a malformed request, headers past the memory limit)
 * are not seen here. */
static enum MHD_Result
on_http(void *cls, struct MHD_Connection *c, const char *url,
        const char *method, const char *version, const char *upload_data,
        size_t *upload_data_size, void **con_cls)
{
	struct kr_web *web = cls;
	enum MHD_Result ret;
	unsigned code;

	tl_queued = 0;
	if (*con_cls == NULL)
		conn_in_head(web, conn_of(c), false);
	ret = route_request(web, c, url, method, version, upload_data,
	                    upload_data_size, con_cls);
	code = tl_queued;
	tl_queued = 0;
	if (code >= KR_WEB_CODE_MIN && code < KR_WEB_CODE_MIN + KR_WEB_CODE_N)
		atomic_fetch_add(&web->n_answers[route_label_of(url)]
		                                [code - KR_WEB_CODE_MIN],
		                 1);
	return ret;
}

/* ---- start and stop ---- */

static void mhd_log(void *cls, const char *fmt, va_list ap) KR_PRINTF(2, 0);

static void
mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[256];
	size_t n;

	(void)cls;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = '\0';
	kr_log_debug("web: libmicrohttpd: %s", msg);
}

/* Opens a listening socket on "host:port" ("[v6]:port" too). */
static int
listen_on(const char *what, const char *spec, int *fd_out, struct kr_err *err)
{
	struct addrinfo hints, *res = NULL, *ai;
	char host[256], *port;
	int fd = -1, one = 1, rc = -1, gai, saved = 0;

	if (spec == NULL || strlen(spec) >= sizeof(host)) {
		kr_err_set(err, KR_ERR_INVALID, "%s: no address", what);
		goto out;
	}
	snprintf(host, sizeof(host), "%s", spec);
	port = strrchr(host, ':');
	if (port == NULL || port[1] == '\0') {
		kr_err_set(err, KR_ERR_INVALID,
		           "%s: \"%s\": expected host:port", what, spec);
		goto out;
	}
	*port++ = '\0';
	if (host[0] == '[' && port - host >= 3 && port[-2] == ']') {
		port[-2] = '\0';
		memmove(host, host + 1, strlen(host + 1) + 1);
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	gai = getaddrinfo(host[0] != '\0' ? host : NULL, port, &hints, &res);
	if (gai != 0) {
		kr_err_set(err, KR_ERR_IO, "%s: \"%s\": %s", what, spec,
		           gai_strerror(gai));
		goto out;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family,
		            ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
		            ai->ai_protocol);
		if (fd == -1) {
			saved = errno;
			continue;
		}
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one,
		                 sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
		    listen(fd, 1024) == 0)
			break;
		saved = errno;
		close(fd);
		fd = -1;
	}
	if (fd == -1) {
		kr_err_set(err, KR_ERR_IO, "%s: cannot listen on %s: %s", what,
		           spec, strerror(saved));
		goto out;
	}
	*fd_out = fd;
	rc = 0;
out:
	if (res != NULL)
		freeaddrinfo(res);
	return rc;
}

static unsigned
port_of(int fd)
{
	struct sockaddr_storage ss = {0};
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len) == -1)
		return 0;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return 0;
}

static void
make_csp(struct kr_web *web)
{
	unsigned char h[crypto_hash_sha256_BYTES];
	char b64[sodium_base64_ENCODED_LEN(crypto_hash_sha256_BYTES,
	                                   sodium_base64_VARIANT_ORIGINAL)];

	crypto_hash_sha256(h, (const unsigned char *)kr_pages_style,
	                   strlen(kr_pages_style));
	sodium_bin2base64(b64, sizeof(b64), h, sizeof(h),
	                  sodium_base64_VARIANT_ORIGINAL);
#define KR_WEB_CSP                                                             \
	"default-src 'none'; style-src 'sha256-%s'; %sform-action 'self'; "    \
	"frame-ancestors 'none'; base-uri 'none'"
	snprintf(web->csp, sizeof(web->csp), KR_WEB_CSP, b64, "");
	/* Reports may show pictures from the publisher's site. */
	snprintf(web->csp_archive, sizeof(web->csp_archive), KR_WEB_CSP, b64,
	         "img-src https: data:; ");
	/* The dashboard: the same policy over its own sheet (the public
	 * one and the charts' rules). */
	web->dash_style = kr_xasprintf("%s%s", kr_pages_style,
	                               kr_pages_dash_style);
	crypto_hash_sha256(h, (const unsigned char *)web->dash_style,
	                   strlen(web->dash_style));
	sodium_bin2base64(b64, sizeof(b64), h, sizeof(h),
	                  sodium_base64_VARIANT_ORIGINAL);
	snprintf(web->csp_admin, sizeof(web->csp_admin), KR_WEB_CSP, b64, "");
}

/* Socket-activated descriptors come as systemd made them. */
static int
nonblocking(const char *what, int fd, struct kr_err *err)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl == -1 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1)
		return kr_err_set(err, KR_ERR_IO, "%s: fd %d: %s", what, fd,
		                  strerror(errno));
	return 0;
}

static struct MHD_Daemon *
start_daemon(struct kr_web *web, int fd, bool public, struct kr_err *err)
{
	struct MHD_Daemon *d;
	/* TURBO: read, write and accept before asking epoll (the listen
	 * socket is non-blocking, see nonblocking()). */
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
	                 MHD_USE_TURBO | MHD_USE_ERROR_LOG;

	if (public)
		flags |= MHD_ALLOW_SUSPEND_RESUME;

	if (public)
		d = MHD_start_daemon(
		    flags, 0, accept_policy, web, on_http, web,
		    MHD_OPTION_EXTERNAL_LOGGER, mhd_log, web,
		    MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
		    MHD_OPTION_THREAD_POOL_SIZE, (unsigned)KR_WEB_THREADS,
		    MHD_OPTION_CONNECTION_LIMIT, (unsigned)KR_WEB_CONN_LIMIT,
		    MHD_OPTION_NOTIFY_CONNECTION, on_connection, web,
		    MHD_OPTION_URI_LOG_CALLBACK, on_uri, web,
		    MHD_OPTION_UNESCAPE_CALLBACK, on_unescape, web,
		    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)KR_WEB_TIMEOUT,
		    MHD_OPTION_CONNECTION_MEMORY_LIMIT,
		    (size_t)KR_WEB_CONN_MEMORY, MHD_OPTION_NOTIFY_COMPLETED,
		    request_done, web, MHD_OPTION_END);
	else
		d = MHD_start_daemon(
		    flags, 0, NULL, NULL, kr_web_admin_handler, web,
		    MHD_OPTION_EXTERNAL_LOGGER, mhd_log, web,
		    MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
		    MHD_OPTION_CONNECTION_LIMIT, 64u,
		    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)KR_WEB_TIMEOUT,
		    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(16 * 1024),
		    MHD_OPTION_END);
	if (d == NULL)
		kr_err_set(err, KR_ERR_IO,
		           "%s listener: libmicrohttpd "
		           "failed to start",
		           public ? "http" : "admin");
	return d;
}

int
kr_web_start(const struct kr_config *cfg, const struct kr_keyring *ring,
             const struct kr_web_listen *listen, struct kr_web **web_out,
             struct kr_err *err)
{
	struct kr_web *web;
	int http_fd = listen != NULL ? listen->http_fd : -1;
	int admin_fd = listen != NULL ? listen->admin_fd : -1;
	int rc = -1;

	web = kr_xcalloc(1, sizeof(*web));
	pthread_mutex_init(&web->lock, NULL);
	pthread_cond_init(&web->released, NULL);
	pthread_mutex_init(&web->store_lock, NULL);
	pthread_mutex_init(&web->dash_lock, NULL);
	pthread_mutex_init(&web->q_lock, NULL);
	{
		/* Held sign-ups wait against the monotonic clock. */
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&web->q_cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	pthread_mutex_init(&web->conn_lock, NULL);
	pthread_cond_init(&web->sweep_cond, NULL);
	if (sodium_init() < 0) {
		kr_err_set(err, KR_ERR_IO, "web: libsodium failed to start");
		goto out;
	}
	make_csp(web);
	web->conns = kr_web_conns_new();
	web->rl = kr_web_rl_new(KR_WEB_RATE_PER_MIN / 60.0, KR_WEB_RATE_BURST,
	                        KR_WEB_RATE_KEYS);
	if (view_new(web, cfg, ring, &web->view, err) == -1)
		goto out;
	if (kr_store_open(cfg->database, cfg->database_password_file,
	                  &web->store, err) == -1) {
		kr_err_prefix(err, "web");
		goto out;
	}
	if (pthread_create(&web->worker, NULL, store_worker, web) != 0) {
		kr_err_set(err, KR_ERR_IO, "web: cannot start a thread");
		goto out;
	}
	web->worker_started = true;
	if (pthread_create(&web->sweeper, NULL, head_sweeper, web) != 0) {
		kr_err_set(err, KR_ERR_IO, "web: cannot start a thread");
		goto out;
	}
	web->sweeper_started = true;
	if (http_fd == -1 &&
	    listen_on("http.listen", cfg->http_listen, &http_fd, err) == -1)
		goto out;
	if (nonblocking("http", http_fd, err) == -1)
		goto out;
	web->http_port = port_of(http_fd);
	web->http = start_daemon(web, http_fd, true, err);
	if (web->http == NULL)
		goto out;
	http_fd = -1; /* MHD closes it */
	if (admin_fd == -1 && cfg->admin_listen != NULL &&
	    *cfg->admin_listen != '\0' &&
	    listen_on("admin.listen", cfg->admin_listen, &admin_fd, err) == -1)
		goto out;
	if (admin_fd != -1) {
		if (nonblocking("admin", admin_fd, err) == -1)
			goto out;
		web->admin = start_daemon(web, admin_fd, false, err);
		if (web->admin == NULL)
			goto out;
		admin_fd = -1;
	}
	kr_log_info("web: listening http=%s admin=%s lists=%zu",
	            cfg->http_listen != NULL ? cfg->http_listen : "-",
	            cfg->admin_listen != NULL ? cfg->admin_listen : "-",
	            cfg->n_lists);
	*web_out = web;
	web = NULL;
	rc = 0;
out:
	if (http_fd != -1)
		close(http_fd);
	if (admin_fd != -1)
		close(admin_fd);
	kr_web_stop(&web);
	return rc;
}

static bool
differs(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a != b;
	return strcmp(a, b) != 0;
}

int
kr_web_set_config(struct kr_web *web, const struct kr_config *cfg,
                  const struct kr_keyring *ring, struct kr_err *err)
{
	struct view *nv = NULL, *old;
	int rc = -1;

	pthread_mutex_lock(&web->lock);
	old = web->view;
	pthread_mutex_unlock(&web->lock);
	/* Only this thread swaps views, so old stays valid here. */
	if (view_new(web, cfg, ring != NULL ? ring : old->ring, &nv, err) == -1)
		goto out;
	if (differs(nv->http_listen, old->http_listen) ||
	    differs(nv->admin_listen, old->admin_listen))
		kr_log_warn("web: http.listen or admin.listen changed; "
		            "takes effect at restart");
	if (differs(nv->database, old->database))
		kr_log_warn("web: database changed; takes effect at restart");
	pthread_mutex_lock(&web->lock);
	web->view = nv;
	while (old->refs > 0)
		pthread_cond_wait(&web->released, &web->lock);
	pthread_mutex_unlock(&web->lock);
	view_free(&old);
	kr_log_info("web: config reloaded lists=%zu", cfg->n_lists);
	rc = 0;
out:
	return rc;
}

void
kr_web_set_metrics(struct kr_web *web, kr_web_metrics_fn fn, void *ctx)
{
	pthread_mutex_lock(&web->lock);
	web->metrics_fn = fn;
	web->metrics_ctx = ctx;
	pthread_mutex_unlock(&web->lock);
}

void
kr_web_set_health(struct kr_web *web, kr_web_health_fn fn, void *ctx)
{
	pthread_mutex_lock(&web->lock);
	web->health_fn = fn;
	web->health_ctx = ctx;
	pthread_mutex_unlock(&web->lock);
}

unsigned
kr_web_http_port(const struct kr_web *web)
{
	return web->http_port;
}

void
kr_web_stop(struct kr_web **webp)
{
	struct kr_web *web;

	if (webp == NULL || *webp == NULL)
		return;
	web = *webp;
	/* No connection may be suspended when MHD stops: let the worker
	 * finish what is queued and take no more (dispatch answers 503). */
	pthread_mutex_lock(&web->q_lock);
	web->q_stopping = true;
	pthread_cond_broadcast(&web->q_cond);
	while (web->q_head != NULL || web->q_busy || web->held_head != NULL)
		pthread_cond_wait(&web->q_cond, &web->q_lock);
	pthread_mutex_unlock(&web->q_lock);
	if (web->http != NULL)
		MHD_stop_daemon(web->http);
	if (web->sweeper_started) {
		pthread_mutex_lock(&web->conn_lock);
		web->sweep_quit = true;
		pthread_cond_broadcast(&web->sweep_cond);
		pthread_mutex_unlock(&web->conn_lock);
		pthread_join(web->sweeper, NULL);
	}
	if (web->worker_started) {
		pthread_mutex_lock(&web->q_lock);
		web->q_quit = true;
		pthread_cond_broadcast(&web->q_cond);
		pthread_mutex_unlock(&web->q_lock);
		pthread_join(web->worker, NULL);
	}
	if (web->admin != NULL)
		MHD_stop_daemon(web->admin);
	view_free(&web->view);
	free(web->archive.html);
	free(web->archive.atom);
	kr_store_close(&web->store);
	kr_store_close(&web->dash_store);
	free(web->dash_style);
	kr_web_rl_free(&web->rl);
	kr_web_conns_free(&web->conns);
	pthread_mutex_destroy(&web->store_lock);
	pthread_mutex_destroy(&web->dash_lock);
	pthread_cond_destroy(&web->sweep_cond);
	pthread_mutex_destroy(&web->conn_lock);
	pthread_cond_destroy(&web->q_cond);
	pthread_mutex_destroy(&web->q_lock);
	pthread_cond_destroy(&web->released);
	pthread_mutex_destroy(&web->lock);
	free(web);
	*webp = NULL;
}
