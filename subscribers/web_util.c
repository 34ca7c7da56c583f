/* web_util.c — pure helpers of the web module: escaping, templates,
 * content negotiation, client address behind proxies, rate limiting. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "err.h"
#include "web_int.h"
#include "xmem.h"

int
kr_web_html_escape(struct kr_buf *b, const char *s)
{
	const char *p, *run;
	const char *ent;
	int rc = 0;

	if (s == NULL)
		return 0;
	for (p = run = s; *p != '\0'; p++) {
		switch (*p) {
		case '&':
			ent = "&amp;";
			break;
		case '<':
			ent = "&lt;";
			break;
		case '>':
			ent = "&gt;";
			break;
		case '"':
			ent = "&quot;";
			break;
		case '\'':
			ent = "&#39;";
			break;
		default:
			continue;
		}
		if (kr_buf_append(b, run, (size_t)(p - run)) == -1 ||
		    kr_buf_puts(b, ent) == -1) {
			rc = -1;
			goto out;
		}
		run = p + 1;
	}
	rc = kr_buf_append(b, run, (size_t)(p - run));
out:
	return rc;
}

int
kr_web_json_escape(struct kr_buf *b, const char *s)
{
	const unsigned char *p;
	int rc = 0;

	if (s == NULL)
		return 0;
	for (p = (const unsigned char *)s; *p != '\0' && rc == 0; p++) {
		if (*p == '"' || *p == '\\') {
			rc = kr_buf_putc(b, '\\');
			if (rc == 0)
				rc = kr_buf_putc(b, (char)*p);
		} else if (*p < 0x20 || *p == 0x7f) {
			rc = kr_buf_printf(b, "\\u%04x", *p);
		} else {
			rc = kr_buf_putc(b, (char)*p);
		}
	}
	return rc;
}

int
kr_web_render(struct kr_buf *b, const char *tmpl, const struct kr_web_var *vars,
              size_t n_vars)
{
	const char *p = tmpl, *open, *close;
	size_t i, nlen;
	int rc = -1;

	while ((open = strstr(p, "{{")) != NULL) {
		close = strstr(open + 2, "}}");
		if (close == NULL)
			break;
		if (kr_buf_append(b, p, (size_t)(open - p)) == -1)
			goto out;
		nlen = (size_t)(close - open - 2);
		for (i = 0; i < n_vars; i++) {
			if (strlen(vars[i].name) != nlen ||
			    memcmp(vars[i].name, open + 2, nlen) != 0)
				continue;
			if (vars[i].value == NULL)
				break;
			if ((vars[i].raw
			         ? kr_buf_puts(b, vars[i].value)
			         : kr_web_html_escape(b, vars[i].value)) == -1)
				goto out;
			break;
		}
		p = close + 2;
	}
	if (kr_buf_puts(b, p) == -1)
		goto out;
	rc = 0;
out:
	return rc;
}

/* The position of media type mt in accept with a q above 0, or -1. */
static int
accept_pos(const char *accept, const char *mt)
{
	const char *p = accept, *end, *semi, *q;
	size_t mlen = strlen(mt), len;
	int pos = 0;

	while (*p != '\0') {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (*p == '\0')
			break;
		end = strchr(p, ',');
		if (end == NULL)
			end = p + strlen(p);
		semi = memchr(p, ';', (size_t)(end - p));
		len = (size_t)((semi != NULL ? semi : end) - p);
		while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
			len--;
		if (len == mlen && strncasecmp(p, mt, mlen) == 0) {
			q = semi;
			while (q != NULL && q < end) {
				q++;
				while (*q == ' ')
					q++;
				if ((q[0] == 'q' || q[0] == 'Q') &&
				    q[1] == '=') {
					if (strtod(q + 2, NULL) <= 0.0)
						return -1;
				}
				q = memchr(q, ';', (size_t)(end - q));
			}
			return pos;
		}
		pos++;
		p = end;
	}
	return -1;
}

enum kr_web_fmt
kr_web_accept(const char *accept)
{
	int html, json;

	if (accept == NULL)
		return KR_WEB_FMT_TEXT;
	html = accept_pos(accept, "text/html");
	json = accept_pos(accept, "application/json");
	if (html >= 0 && (json < 0 || html < json))
		return KR_WEB_FMT_HTML;
	if (json >= 0)
		return KR_WEB_FMT_JSON;
	return KR_WEB_FMT_TEXT;
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 when invalid;
 * *ctl says whether it is a control character (C0, DEL, C1). */
static size_t
utf8_len(const unsigned char *p, bool *ctl)
{
	size_t n, i;
	uint32_t cp;

	*ctl = false;
	if (p[0] < 0x80) {
		*ctl = p[0] < 0x20 || p[0] == 0x7f;
		return 1;
	}
	if ((p[0] & 0xe0) == 0xc0) {
		n = 2;
		cp = p[0] & 0x1f;
	} else if ((p[0] & 0xf0) == 0xe0) {
		n = 3;
		cp = p[0] & 0x0f;
	} else if ((p[0] & 0xf8) == 0xf0) {
		n = 4;
		cp = p[0] & 0x07;
	} else {
		return 0;
	}
	for (i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) ||
	    (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	*ctl = cp >= 0x80 && cp <= 0x9f;
	return n;
}

void
kr_web_clean_text(const char *in, char *out, size_t max)
{
	const unsigned char *p = (const unsigned char *)(in != NULL ? in : "");
	size_t o = 0, n;
	bool ctl;

	while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
		p++;
	while (*p != '\0') {
		n = utf8_len(p, &ctl);
		if (n == 0 || ctl) {
			if (o + 1 >= max)
				break;
			out[o++] = ' ';
			p += n > 0 ? n : 1;
			continue;
		}
		if (o + n >= max)
			break;
		memcpy(out + o, p, n);
		o += n;
		p += n;
	}
	while (o > 0 && out[o - 1] == ' ')
		o--;
	out[o] = '\0';
}

/* ---- networks ---- */

struct net {
	int family; /* AF_INET or AF_INET6 */
	unsigned char addr[16];
	unsigned prefix; /* bits */
};

struct kr_web_nets {
	struct net *v;
	size_t n;
};

/* Parses an address (IPv4-mapped IPv6 becomes IPv4). 0 or -1. */
static int
parse_ip(const char *s, int *family, unsigned char addr[16])
{
	static const unsigned char mapped[12] = {0, 0, 0, 0, 0,    0,
	                                         0, 0, 0, 0, 0xff, 0xff};
	unsigned char a6[16];

	if (inet_pton(AF_INET, s, addr) == 1) {
		*family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, s, a6) != 1)
		return -1;
	if (memcmp(a6, mapped, sizeof(mapped)) == 0) {
		*family = AF_INET;
		memcpy(addr, a6 + 12, 4);
	} else {
		*family = AF_INET6;
		memcpy(addr, a6, 16);
	}
	return 0;
}

int
kr_web_nets_parse(char *const *list, size_t n, struct kr_web_nets **nets_out,
                  struct kr_err *err)
{
	struct kr_web_nets *nets;
	char buf[80], *slash, *end;
	unsigned long bits;
	size_t i;
	int rc = -1;

	nets = kr_xcalloc(1, sizeof(*nets));
	nets->v = kr_xcalloc(n > 0 ? n : 1, sizeof(*nets->v));
	for (i = 0; i < n; i++) {
		struct net *e = &nets->v[i];

		if (strlen(list[i]) >= sizeof(buf)) {
			kr_err_set(err, KR_ERR_INVALID,
			           "trusted_proxies: \"%.40s…\" is too long",
			           list[i]);
			goto out;
		}
		snprintf(buf, sizeof(buf), "%s", list[i]);
		slash = strchr(buf, '/');
		if (slash != NULL)
			*slash++ = '\0';
		if (parse_ip(buf, &e->family, e->addr) == -1) {
			kr_err_set(
			    err, KR_ERR_INVALID,
			    "trusted_proxies: \"%s\" is not an IP address "
			    "or network",
			    list[i]);
			goto out;
		}
		e->prefix = e->family == AF_INET ? 32 : 128;
		if (slash != NULL) {
			bits = strtoul(slash, &end, 10);
			if (*slash == '\0' || *end != '\0' ||
			    bits > e->prefix) {
				kr_err_set(
				    err, KR_ERR_INVALID,
				    "trusted_proxies: \"%s\": bad prefix "
				    "length",
				    list[i]);
				goto out;
			}
			e->prefix = (unsigned)bits;
		}
		nets->n++;
	}
	*nets_out = nets;
	nets = NULL;
	rc = 0;
out:
	kr_web_nets_free(&nets);
	return rc;
}

void
kr_web_nets_free(struct kr_web_nets **nets)
{
	if (nets == NULL || *nets == NULL)
		return;
	free((*nets)->v);
	free(*nets);
	*nets = NULL;
}

static bool
net_match(const struct net *e, int family, const unsigned char *addr)
{
	unsigned full, rest;

	if (e->family != family)
		return false;
	full = e->prefix / 8;
	rest = e->prefix % 8;
	if (memcmp(e->addr, addr, full) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((e->addr[full] ^ addr[full]) & (0xff00 >> rest) & 0xff) == 0;
}

bool
kr_web_nets_match(const struct kr_web_nets *nets, const char *ip)
{
	unsigned char addr[16];
	int family;
	size_t i;

	if (nets == NULL || ip == NULL || parse_ip(ip, &family, addr) == -1)
		return false;
	for (i = 0; i < nets->n; i++)
		if (net_match(&nets->v[i], family, addr))
			return true;
	return false;
}

/* Writes the canonical text of ip to out; -1 when ip is not an address. */
static int
canon_ip(const char *ip, char out[KR_WEB_IP_MAX])
{
	unsigned char addr[16];
	int family;

	if (parse_ip(ip, &family, addr) == -1)
		return -1;
	return inet_ntop(family, addr, out, KR_WEB_IP_MAX) != NULL ? 0 : -1;
}

void
kr_web_client_ip(const struct kr_web_nets *trusted, const char *peer,
                 const char *xff, char out[KR_WEB_IP_MAX])
{
	char hop[KR_WEB_IP_MAX];
	const char *end, *start;
	size_t len;

	if (canon_ip(peer != NULL ? peer : "", out) == -1)
		snprintf(out, KR_WEB_IP_MAX, "%s", peer != NULL ? peer : "");
	if (xff == NULL || !kr_web_nets_match(trusted, out))
		return;
	end = xff + strlen(xff);
	while (end > xff) {
		start = end;
		while (start > xff && start[-1] != ',')
			start--;
		while (start < end && (*start == ' ' || *start == '\t'))
			start++;
		len = (size_t)(end - start);
		while (len > 0 &&
		       (start[len - 1] == ' ' || start[len - 1] == '\t'))
			len--;
		if (len > 0) {
			if (len >= sizeof(hop))
				return;
			memcpy(hop, start, len);
			hop[len] = '\0';
			if (canon_ip(hop, hop) == -1)
				return;
			snprintf(out, KR_WEB_IP_MAX, "%s", hop);
			if (!kr_web_nets_match(trusted, out))
				return;
		}
		end = start;
		while (end > xff && end[-1] != ',')
			end--;
		if (end > xff)
			end--; /* the comma */
	}
}

void
kr_web_client_key(const char *ip, unsigned v6_prefix, char out[KR_WEB_IP_MAX])
{
	unsigned char addr[16];
	char text[INET6_ADDRSTRLEN]; /* 46: room for "/128" in out */
	unsigned full, rest;
	int family;

	if (ip == NULL || parse_ip(ip, &family, addr) == -1 ||
	    family != AF_INET6 || v6_prefix == 0 || v6_prefix >= 128) {
		snprintf(out, KR_WEB_IP_MAX, "%s", ip != NULL ? ip : "");
		return;
	}
	full = v6_prefix / 8;
	rest = v6_prefix % 8;
	if (rest != 0)
		addr[full++] &= (unsigned char)(0xff00 >> rest);
	memset(addr + full, 0, 16 - full);
	if (inet_ntop(AF_INET6, addr, text, sizeof(text)) == NULL)
		text[0] = '\0';
	snprintf(out, KR_WEB_IP_MAX, "%s/%u", text, v6_prefix);
}

/* ---- rate limiter ---- */

struct rl_entry {
	struct rl_entry *next;          /* in its hash slot */
	struct rl_entry *older, *newer; /* by last use */
	double tokens;
	double at;
	char key[KR_WEB_IP_MAX];
};

/* A hash table of buckets, also kept in order of last use, so that a
 * full table costs O(1) per new client: the least recently used bucket
 * is reused if it has refilled (it is as good as absent), else the new
 * client shares the overflow bucket with every other client the table
 * has no room for. Full is stricter, never open. */
struct kr_web_rl {
	pthread_mutex_t lock;
	double per_sec, burst;
	size_t max_keys, n;
	size_t n_slots;
	struct rl_entry **slots;
	struct rl_entry *oldest, *newest;
	struct rl_entry overflow;
	unsigned long n_overflow;
};

static size_t
rl_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */

	while (*s != '\0') {
		h ^= (unsigned char)*s++;
		h *= 1099511628211ULL;
	}
	return (size_t)h;
}

struct kr_web_rl *
kr_web_rl_new(double per_sec, double burst, size_t max_keys)
{
	struct kr_web_rl *rl = kr_xcalloc(1, sizeof(*rl));

	pthread_mutex_init(&rl->lock, NULL);
	rl->per_sec = per_sec;
	rl->burst = burst < 1.0 ? 1.0 : burst;
	rl->max_keys = max_keys > 0 ? max_keys : 1;
	rl->n_slots = 64;
	while (rl->n_slots < rl->max_keys && rl->n_slots < (1u << 20))
		rl->n_slots *= 2;
	/* An array of pointers: sizeof(pointer) is meant. */
	rl->slots = kr_xcalloc(rl->n_slots, sizeof(*rl->slots)); /* NOLINT(bugprone-sizeof-expression) */
	rl->overflow.tokens = rl->burst;
	rl->overflow.at = -1e18;
	return rl;
}

void
kr_web_rl_free(struct kr_web_rl **rl)
{
	struct rl_entry *e, *next;
	size_t i;

	if (rl == NULL || *rl == NULL)
		return;
	for (i = 0; i < (*rl)->n_slots; i++)
		for (e = (*rl)->slots[i]; e != NULL; e = next) {
			next = e->next;
			free(e);
		}
	free((*rl)->slots);
	pthread_mutex_destroy(&(*rl)->lock);
	free(*rl);
	*rl = NULL;
}

static void
rl_lru_unlink(struct kr_web_rl *rl, struct rl_entry *e)
{
	if (e->older != NULL)
		e->older->newer = e->newer;
	else
		rl->oldest = e->newer;
	if (e->newer != NULL)
		e->newer->older = e->older;
	else
		rl->newest = e->older;
	e->older = e->newer = NULL;
}

static void
rl_lru_push(struct kr_web_rl *rl, struct rl_entry *e)
{
	e->older = rl->newest;
	e->newer = NULL;
	if (rl->newest != NULL)
		rl->newest->newer = e;
	else
		rl->oldest = e;
	rl->newest = e;
}

static void
rl_unhash(struct kr_web_rl *rl, struct rl_entry *e)
{
	struct rl_entry **pp = &rl->slots[rl_hash(e->key) & (rl->n_slots - 1)];

	while (*pp != NULL && *pp != e)
		pp = &(*pp)->next;
	if (*pp == e)
		*pp = e->next;
	e->next = NULL;
}

static bool
rl_refilled(const struct kr_web_rl *rl, const struct rl_entry *e, double now)
{
	return e->tokens + (now - e->at) * rl->per_sec >= rl->burst;
}

/* The bucket for a key not in the table: a new one, the least recently
 * used one if it has refilled, else the shared overflow bucket. */
static struct rl_entry *
rl_make(struct kr_web_rl *rl, const char *key, size_t slot, double now)
{
	struct rl_entry *e;

	if (rl->n < rl->max_keys) {
		e = kr_xcalloc(1, sizeof(*e));
		rl->n++;
	} else if (rl->oldest != NULL && rl_refilled(rl, rl->oldest, now)) {
		e = rl->oldest;
		rl_lru_unlink(rl, e);
		rl_unhash(rl, e);
	} else {
		rl->n_overflow++;
		return &rl->overflow;
	}
	snprintf(e->key, sizeof(e->key), "%s", key);
	e->tokens = rl->burst;
	e->at = now;
	e->next = rl->slots[slot];
	rl->slots[slot] = e;
	rl_lru_push(rl, e);
	return e;
}

bool
kr_web_rl_take(struct kr_web_rl *rl, const char *key, double now,
               unsigned *retry_out)
{
	struct rl_entry *e;
	size_t slot;
	bool ok = true;

	pthread_mutex_lock(&rl->lock);
	slot = rl_hash(key) & (rl->n_slots - 1);
	for (e = rl->slots[slot]; e != NULL; e = e->next)
		if (strcmp(e->key, key) == 0)
			break;
	if (e != NULL) {
		rl_lru_unlink(rl, e);
		rl_lru_push(rl, e);
	} else {
		e = rl_make(rl, key, slot, now);
	}
	if (now > e->at) {
		e->tokens += (now - e->at) * rl->per_sec;
		if (e->tokens > rl->burst)
			e->tokens = rl->burst;
		e->at = now;
	}
	if (e->tokens >= 1.0) {
		e->tokens -= 1.0;
	} else {
		ok = false;
		if (retry_out != NULL) {
			double wait = rl->per_sec > 0
			                  ? (1.0 - e->tokens) / rl->per_sec
			                  : 3600.0;
			unsigned whole = (unsigned)wait;

			*retry_out = (double)whole < wait ? whole + 1 : whole;
		}
	}
	pthread_mutex_unlock(&rl->lock);
	return ok;
}

size_t
kr_web_rl_size(struct kr_web_rl *rl)
{
	size_t n;

	pthread_mutex_lock(&rl->lock);
	n = rl->n;
	pthread_mutex_unlock(&rl->lock);
	return n;
}

unsigned long
kr_web_rl_overflowed(struct kr_web_rl *rl)
{
	unsigned long n;

	pthread_mutex_lock(&rl->lock);
	n = rl->n_overflow;
	pthread_mutex_unlock(&rl->lock);
	return n;
}

/* ---- connections per address ---- */

struct conn_entry {
	struct conn_entry *next;
	unsigned n;
	char key[KR_WEB_IP_MAX];
};

struct kr_web_conns {
	pthread_mutex_t lock;
	struct conn_entry *slots[1024];
};

struct kr_web_conns *
kr_web_conns_new(void)
{
	struct kr_web_conns *cs = kr_xcalloc(1, sizeof(*cs));

	pthread_mutex_init(&cs->lock, NULL);
	return cs;
}

void
kr_web_conns_free(struct kr_web_conns **cs)
{
	struct conn_entry *e, *next;
	size_t i;

	if (cs == NULL || *cs == NULL)
		return;
	for (i = 0; i < KR_NELEM((*cs)->slots); i++)
		for (e = (*cs)->slots[i]; e != NULL; e = next) {
			next = e->next;
			free(e);
		}
	pthread_mutex_destroy(&(*cs)->lock);
	free(*cs);
	*cs = NULL;
}

static unsigned
conns_add_locked(struct kr_web_conns *cs, const char *key, int delta)
{
	struct conn_entry **pp, *e;
	unsigned n = 0;

	pp = &cs->slots[rl_hash(key) % KR_NELEM(cs->slots)];
	while ((e = *pp) != NULL && strcmp(e->key, key) != 0)
		pp = &e->next;
	if (e == NULL && delta > 0) {
		e = kr_xcalloc(1, sizeof(*e));
		snprintf(e->key, sizeof(e->key), "%s", key);
		e->next = *pp;
		*pp = e;
	}
	if (e != NULL) {
		if (delta < 0 && e->n < (unsigned)-delta)
			e->n = 0;
		else
			e->n = (unsigned)((int)e->n + delta);
		n = e->n;
		if (n == 0) {
			*pp = e->next;
			free(e);
		}
	}
	return n;
}

unsigned
kr_web_conns_add(struct kr_web_conns *cs, const char *key, int delta)
{
	unsigned n;

	pthread_mutex_lock(&cs->lock);
	n = conns_add_locked(cs, key, delta);
	pthread_mutex_unlock(&cs->lock);
	return n;
}

unsigned
kr_web_conns_get(struct kr_web_conns *cs, const char *key)
{
	return kr_web_conns_add(cs, key, 0);
}

bool
kr_web_conns_try_add(struct kr_web_conns *cs, const char *key, unsigned limit)
{
	bool ok;

	pthread_mutex_lock(&cs->lock);
	ok = conns_add_locked(cs, key, 0) < limit;
	if (ok)
		(void)conns_add_locked(cs, key, 1);
	pthread_mutex_unlock(&cs->lock);
	return ok;
}
