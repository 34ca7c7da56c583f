/* web_int.h — the web module's insides: its pure helpers, apart so unit
 * tests reach them (tests/unit/test_web.c), and what its two files share
 * (web.c: the public listener, start and stop; admin.c: the admin
 * listener's answers). Not for other modules. */
#ifndef KR_WEB_INT_H
#define KR_WEB_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <microhttpd.h>

#include "common.h"
#include "web.h"

struct kr_buf;
struct kr_err;

/* Longest text form of an IP address, with its NUL. */
#define KR_WEB_IP_MAX 64

/* Appends s with & < > " ' as entities. 0, or -1 past b's cap. */
KR_NODISCARD int kr_web_html_escape(struct kr_buf *b, const char *s);
/* Appends s as the inside of a JSON string. 0 or -1 past b's cap. */
KR_NODISCARD int kr_web_json_escape(struct kr_buf *b, const char *s);

/* One {{name}} of a template: value escaped for HTML unless raw. */
struct kr_web_var {
	const char *name;
	const char *value; /* NULL renders as "" */
	bool raw;
};
/* Appends tmpl to b with each {{name}} replaced; an unknown name renders
 * as "". 0, or -1 past b's cap. */
KR_NODISCARD int kr_web_render(struct kr_buf *b, const char *tmpl,
                               const struct kr_web_var *vars, size_t n_vars);

enum kr_web_fmt { KR_WEB_FMT_TEXT, KR_WEB_FMT_HTML, KR_WEB_FMT_JSON };
/* What an Accept header (may be NULL) asks for: HTML when text/html
 * comes before application/json, JSON when application/json does, else
 * plain text. Entries with q=0 are ignored. */
enum kr_web_fmt kr_web_accept(const char *accept);

/* Copies at most max-1 bytes of in to out (max > 0), cutting on a UTF-8
 * character boundary, with control characters (and invalid UTF-8 bytes)
 * replaced by a space and surrounding white space trimmed. */
void kr_web_clean_text(const char *in, char *out, size_t max);

/* A set of addresses and networks ("127.0.0.1", "10.0.0.0/8", "::1",
 * "fd00::/8"). */
struct kr_web_nets;
/* Parses list; -1 with err naming the first bad entry. */
KR_NODISCARD int kr_web_nets_parse(char *const *list, size_t n,
                                   struct kr_web_nets **nets_out,
                                   struct kr_err *err);
void kr_web_nets_free(struct kr_web_nets **nets);
/* Whether ip (text; IPv4-mapped IPv6 counts as IPv4) is in nets. */
bool kr_web_nets_match(const struct kr_web_nets *nets, const char *ip);
/* The client address of a request from peer (text) with the given
 * X-Forwarded-For (may be NULL): peer unless peer is trusted; then the
 * right-most hop of X-Forwarded-For that is not trusted (a malformed hop
 * stops the walk at the last trusted one). Writes the text to out. */
void kr_web_client_ip(const struct kr_web_nets *trusted, const char *peer,
                      const char *xff, char out[KR_WEB_IP_MAX]);

/* The key a client is limited and counted by: ip itself for IPv4 (and
 * IPv4-mapped IPv6), the /v6_prefix network for IPv6 ("2001:db8:1:2::/64"
 * for prefix 64), since one subscriber line gets a whole /64 or more;
 * v6_prefix 128 (or 0): the address. */
void kr_web_client_key(const char *ip, unsigned v6_prefix,
                       char out[KR_WEB_IP_MAX]);

/* A per-key token bucket (keys are client keys), thread-safe. At most
 * max_keys are tracked; a new key past that reuses the least recently
 * used bucket if it has refilled, else takes from one overflow bucket
 * shared by every key the table has no room for (a flood of fresh
 * addresses is limited as one client, never let through). */
struct kr_web_rl;
struct kr_web_rl *kr_web_rl_new(double per_sec, double burst, size_t max_keys);
void kr_web_rl_free(struct kr_web_rl **rl);
/* Takes one token for key at time now (seconds, monotonic). true when
 * allowed; else false and *retry_out (may be NULL) says in how many whole
 * seconds one token is back. */
bool kr_web_rl_take(struct kr_web_rl *rl, const char *key, double now,
                    unsigned *retry_out);
/* Number of keys tracked, for tests. */
size_t kr_web_rl_size(struct kr_web_rl *rl);
/* Takes that went to the overflow bucket so far. */
unsigned long kr_web_rl_overflowed(struct kr_web_rl *rl);

/* Open connections per client address, thread-safe (the per-address
 * connection cap, applied to everyone but trusted proxies). */
struct kr_web_conns;
struct kr_web_conns *kr_web_conns_new(void);
void kr_web_conns_free(struct kr_web_conns **cs);
/* Adds delta (+1 opened, -1 closed) to key's count; returns the new count. */
unsigned kr_web_conns_add(struct kr_web_conns *cs, const char *key, int delta);
/* key's current count. */
unsigned kr_web_conns_get(struct kr_web_conns *cs, const char *key);
/* Adds one to key's count if it is below limit, in one step: true when
 * added, false (nothing changed) at the limit. */
bool kr_web_conns_try_add(struct kr_web_conns *cs, const char *key,
                          unsigned limit);

/* ---- shared by web.c and admin.c ---- */

/* The route label of kairan_http_requests_total: a fixed set, never the
 * raw path (tokens, unbounded cardinality). Their
 * names are in admin.c. */
enum route_label {
	RL_INDEX,
	RL_SUBSCRIBE,
	RL_CONFIRM,
	RL_UNSUBSCRIBE,
	RL_ARCHIVE,
	RL_OTHER,
	RL_N
};
#define KR_WEB_CODE_MIN 100 /* status codes counted: 100..599 */
#define KR_WEB_CODE_N 500

struct req;
struct conn;
struct kr_store;
struct kr_keyring;

/* What one config gives the web module: built by web.c at start and on
 * every reload, read by both files, freed when its last user lets go. */
struct view_list {
	char *id;
	char *name;
	char *lang;
	bool double_opt_in;
	bool archive;
	char *sender[3]; /* name, address, contact; NULL: not configured */
	int tz_offset;   /* seconds east of UTC of its timezone, at load */
};

struct view {
	unsigned refs; /* under web->lock */
	const struct kr_keyring *ring;
	struct kr_web_nets *trusted;
	struct view_list *lists;
	size_t n_lists;
	const char *lang;        /* of the first list */
	unsigned ipv6_prefix;    /* IPv6 clients limited per /N */
	unsigned header_timeout; /* seconds for a request head */
	unsigned gen;            /* a new number for each view */
	struct MHD_Response *index;
	char *http_listen, *admin_listen, *database;
	char *public_url; /* no trailing slash */
	bool any_archive; /* some list has archive: true */
	char *feed_link;  /* the <head> link of /archive, or "" */
	/* the dashboard (admin.c) */
	char *db_password_file; /* NULL: none */
	char **relays;          /* "host:port tls" of each smtp: relay */
	size_t n_relays;
	bool maildir;           /* delivery.transport: maildir */
	char *admin_user;       /* the login's user name */
	char *admin_hash;       /* crypto_pwhash_str of the password, NULL:
	                           no login */
	bool metrics_login;     /* /metrics asks for the login too */
};

/* The view in force, held until kr_web_view_release (a reload waits). */
struct view *kr_web_view_acquire(struct kr_web *web);
void kr_web_view_release(struct kr_web *web, struct view *v);

/* The admin login's failures per client (admin.c). */
#define KR_WEB_AUTH_SLOTS 64
struct kr_web_auth_slot {
	char key[KR_WEB_IP_MAX];
	unsigned fails;
	double since; /* monotonic: the window's start */
};

struct kr_web {
	pthread_mutex_t lock;
	pthread_cond_t released;
	struct view *view;
	kr_web_metrics_fn metrics_fn;
	void *metrics_ctx;
	kr_web_health_fn health_fn;
	void *health_ctx;

	pthread_mutex_t store_lock;
	struct kr_store *store;

	/* The store worker: requests that touch the store run there, so
	 * that an MHD thread never waits for SQLite and a slow write never
	 * holds up the pages of the other connections on that thread. */
	pthread_mutex_t q_lock;
	pthread_cond_t q_cond;
	struct req *q_head, *q_tail;
	/* Sign-ups answered but held until their due time, in due order
	 * (each is due a fixed time after its hand-over). */
	struct req *held_head, *held_tail;
	bool q_busy, q_stopping, q_quit, worker_started;
	pthread_t worker;

	/* The built /archive list (the HTML between the title and the back
	 * link) and, from the same reading of the store, the entries of
	 * /archive.atom. Only the store worker touches it. */
	struct {
		char *html;       /* NULL: none yet */
		char *atom;       /* the <entry> elements, with html */
		char updated[32]; /* the feed's: the newest entry's */
		unsigned gen;     /* of the view it was built for */
		int64_t version;  /* kr_store_changes() before the build */
		double at;        /* monotonic time of the build */
		bool stale;       /* changed by this connection since */
	} archive;
	unsigned view_gen;

	struct MHD_Daemon *http;
	struct MHD_Daemon *admin;
	unsigned http_port;
	struct kr_web_rl *rl;
	struct kr_web_conns *conns;

	/* Every open connection of the public listener, for the head
	 * deadline: the sweeper closes those whose request head is not in
	 * within the view's header_timeout (MHD's own timeout is an idle
	 * one: a header line a second keeps a connection for ever). */
	pthread_mutex_t conn_lock;
	pthread_cond_t sweep_cond;
	struct conn *conn_head;
	bool sweep_quit, sweeper_started;
	pthread_t sweeper;

	char csp[160];
	char csp_archive[200];
	char csp_admin[160];
	char *dash_style; /* the dashboard's sheet, whose hash csp_admin has */

	/* The dashboard's store connection, opened at its first page and
	 * used on the admin listener's one thread. */
	pthread_mutex_t dash_lock;
	struct kr_store *dash_store;
	/* Logins: the failures per client, and the credentials (a hash of
	 * the Authorization header) that passed the slow check lately. */
	struct kr_web_auth_slot auth[KR_WEB_AUTH_SLOTS];
	unsigned char auth_ok[32];
	unsigned auth_ok_gen; /* the view's gen it passed under */
	double auth_ok_at;    /* monotonic, 0: none */

	atomic_ulong n_requests, n_subscribe, n_subscribe_new, n_honeypot,
	    n_rate_limited, n_confirm_mail, n_confirm_limited, n_confirmed,
	    n_unsubscribed, n_bad_token, n_bad_address, n_errors,
	    n_conn_refused, n_head_timeout, n_archive_builds;
	/* Answers queued on the public listener by route and status. */
	atomic_ulong n_answers[RL_N][KR_WEB_CODE_N];
};

/* The headers of every answer (Server, nosniff, no referrer) and, when
 * csp is not NULL, the page's Content-Security-Policy and frame denial. */
void kr_web_add_headers(struct MHD_Response *r, const char *csp);

/* Reads a crypto_pwhash_str hash (one line) from path into *hash_out
 * (caller frees). -1 with KR_ERR_INVALID naming path when it cannot be
 * read or is not such a hash. */
KR_NODISCARD int kr_web_read_hash(const char *path, char **hash_out,
                                  struct kr_err *err);

/* Queues a text answer (no language, not cached) on c: the admin
 * listener's. */
KR_NODISCARD enum MHD_Result
kr_web_send_text(struct kr_web *web, struct MHD_Connection *c, unsigned status,
                 const char *ctype, const char *data, size_t len,
                 const char *allow);

/* The access handler of the admin listener (admin.c): GET or HEAD
 * /healthz, /metrics and the dashboard (/, /reports, /reports/ID), 404
 * and 405 else. cls is the struct kr_web. */
enum MHD_Result kr_web_admin_handler(void *cls, struct MHD_Connection *c,
                                     const char *url, const char *method,
                                     const char *version,
                                     const char *upload_data,
                                     size_t *upload_data_size, void **con_cls);

#endif
