/* web.h — the subscriber-facing HTTP surface on libmicrohttpd: the public
 * listener (GET / sign-up page, POST /subscribe, GET|POST /confirm,
 * GET|POST /unsubscribe incl. RFC 8058 one-click, GET /archive[/ID]) and
 * the admin listener (GET /healthz, GET /metrics).
 *
 * How kairand wires it:
 *
 *	struct kr_web_listen l = { .http_fd = -1, .admin_fd = -1 };
 *	// socket activation: fds from sd_listen_fds_with_names(); pass the
 *	// one named "http" (or the first) as http_fd, "admin" as admin_fd.
 *	if (kr_web_start(cfg, ring, &l, &web, &err) == -1) fatal(err.msg);
 *	...
 *	// SIGHUP, after the new config loaded and validated:
 *	if (kr_web_set_config(web, new_cfg, new_ring_or_NULL, &err) == -1)
 *		log it; the old config stays in force
 *	// on return no request uses the old config or old ring any more:
 *	// the caller may free both.
 *	...
 *	kr_web_stop(&web);   // before freeing the keyring
 *
 * The module copies what it needs from cfg (cfg may be freed after each
 * call returns), opens its own store connection on cfg->database and
 * borrows ring until it is replaced or kr_web_stop returns. Threads: two
 * MHD epoll threads for the public listener, one for the admin listener,
 * one store worker that runs every request touching the store (the
 * connection is suspended meanwhile), so pages never wait for SQLite, and
 * one sweeper that closes connections whose request head is overdue
 * (http.header_timeout).
 * Listen addresses and the database path are taken at start only; a reload
 * that changes them logs a warning. */
#ifndef KR_WEB_H
#define KR_WEB_H

#include "common.h"

struct kr_buf;
struct kr_config;
struct kr_err;
struct kr_keyring;
struct kr_web;

/* Already-bound listening sockets (socket activation); -1: bind the
 * address from the config. The web module owns (and closes) them. */
struct kr_web_listen {
	int http_fd;
	int admin_fd;
};

/* Appends Prometheus text to out for GET /metrics on the admin listener.
 * Called from an MHD thread. */
typedef void (*kr_web_metrics_fn)(void *ctx, struct kr_buf *out);

/* Appends what is wrong to out for GET /healthz (one line per failing
 * part) and returns 1, or returns 0 when all is well. Called from an MHD
 * thread. */
typedef int (*kr_web_health_fn)(void *ctx, struct kr_buf *out);

/* Starts both listeners. listen may be NULL (bind both). Returns 0 with
 * *web_out set, or -1 (err: KR_ERR_IO when a socket cannot be bound,
 * KR_ERR_DB when the store cannot be opened). */
KR_NODISCARD int kr_web_start(const struct kr_config *cfg,
                              const struct kr_keyring *ring,
                              const struct kr_web_listen *listen,
                              struct kr_web **web_out, struct kr_err *err);
/* Swaps in a new config (and keyring, unless ring is NULL), re-rendering
 * the cached pages, and waits until no request holds the old ones. */
KR_NODISCARD int kr_web_set_config(struct kr_web *web,
                                   const struct kr_config *cfg,
                                   const struct kr_keyring *ring,
                                   struct kr_err *err);
/* Adds fn's output to GET /metrics. Until both this and the health
 * callback are set, /metrics and /healthz answer 503 "starting". */
void kr_web_set_metrics(struct kr_web *web, kr_web_metrics_fn fn, void *ctx);
/* Adds fn's verdict to GET /healthz: 503 with its lines when it returns
 * non-zero, else 200 "ok". */
void kr_web_set_health(struct kr_web *web, kr_web_health_fn fn, void *ctx);
/* The port the public listener is bound to (useful with port 0). */
unsigned kr_web_http_port(const struct kr_web *web);
/* Stops both listeners (in-flight requests finish), closes the store and
 * frees web; sets *web to NULL. Accepts NULL. */
void kr_web_stop(struct kr_web **web);

#endif
