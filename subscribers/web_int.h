/* web_int.h — the web module's pure helpers, apart so unit tests reach
 * them (tests/unit/test_web.c). Not for other modules. */
#ifndef KR_WEB_INT_H
#define KR_WEB_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "common.h"

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

#endif
