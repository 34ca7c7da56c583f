/* bounce.c — recognising returned mail (bounce.h).
 *
 * A small MIME walker of our own (no MIME library in our dependencies):
 * header blocks are indexed in place (pointers into the message, never
 * NUL-terminated), values are copied out unfolded into fixed buffers, and
 * multipart bodies are split on delimiter lines. Everything is bounded:
 * input size, header count, nesting depth, part count, and the bytes the
 * text heuristics look at. Truncated MIME (no closing delimiter, headers
 * without a body) is read as far as it goes.
 *
 * Order of judgement: a DSN or ARF part decides; else a known bounce text
 * (qmail, Exim, mailer-daemon notices); else an auto-reply is ignored;
 * else a message that reached a VERP address counts as a soft bounce; else
 * it is not a bounce. DSNs and Exim bounces carry "Auto-Submitted:
 * auto-replied" themselves, which is why auto-replies are judged late. */
#include "bounce.h"

#include <ctype.h>
#include <errno.h>
#include <iconv.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "err.h"
#include "xmem.h"

#define MAX_HDRS 128
#define MAX_DEPTH 6
#define MAX_PARTS 64
#define HVAL_MAX 1024
#define TEXT_SCAN (64u * 1024)   /* bytes of a text part the heuristics read */
#define TOKEN_SCAN (256u * 1024) /* bytes of the message scanned for tokens */
#define TOKEN_MIN 16

enum cte { CTE_NONE, CTE_QP, CTE_B64 };

struct hdr {
	const char *name;
	size_t nlen;
	const char *val; /* raw, may span folded lines */
	size_t vlen;
};

struct hdrs {
	struct hdr h[MAX_HDRS];
	size_t n;
};

struct ctype {
	char type[64];
	char boundary[128];
	char report_type[48];
};

struct walk {
	struct kr_bounce *out;
	size_t parts;
	bool dsn, dsn_failed, dsn_delayed, dsn_delivered;
	bool arf;
	char fb_type[32];
	const char *text; /* the first text part's body */
	size_t text_len;
	int text_cte; /* its enum cte */
	char ignore_status[16];
};

/* Copies src into dst[0..size), truncated, always terminated. */
static void
scopy(char *dst, size_t size, const char *src)
{
	size_t n = strlen(src);

	if (n >= size)
		n = size - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

static bool
is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

/* The end of the line starting at i (index of '\n', or len) and the end
 * of its content (without "\r"). */
static size_t
line_end(const char *p, size_t len, size_t i, size_t *content_end)
{
	const char *nl = memchr(p + i, '\n', len - i);
	size_t e = nl ? (size_t)(nl - p) : len;
	size_t ce = e;

	if (ce > i && p[ce - 1] == '\r')
		ce--;
	*content_end = ce;
	return e;
}

static bool
is_field_name(const char *p, size_t n)
{
	size_t i;

	if (n == 0 || n > 76)
		return false;
	for (i = 0; i < n; i++)
		if ((unsigned char)p[i] <= 0x20 ||
		    (unsigned char)p[i] >= 0x7f || p[i] == ':')
			return false;
	return true;
}

/* Indexes the header block at p[0..len); returns where the body starts
 * (len when there is none; 0 when p does not start with a header). A
 * line that is not a field ends the block. Headers past MAX_HDRS are
 * skipped. */
static size_t
hdrs_parse(const char *p, size_t len, struct hdrs *h)
{
	size_t i = 0, e, ce, colon;
	bool last_kept = false;
	const char *c;

	h->n = 0;
	/* An mbox "From " line in front (some pipes add one). */
	if (len >= 5 && memcmp(p, "From ", 5) == 0) {
		e = line_end(p, len, 0, &ce);
		i = e < len ? e + 1 : len;
	}
	while (i < len) {
		e = line_end(p, len, i, &ce);
		if (ce == i)
			return e < len ? e + 1 : len;
		if (is_wsp(p[i])) {
			if (h->n > 0 && last_kept)
				h->h[h->n - 1].vlen =
				    ce - (size_t)(h->h[h->n - 1].val - p);
		} else {
			c = memchr(p + i, ':', ce - i);
			colon = c ? (size_t)(c - p) : ce;
			/* trailing blanks before the colon are obsolete
			 * syntax that real mail still has */
			while (c && colon > i && is_wsp(p[colon - 1]))
				colon--;
			if (c == NULL || !is_field_name(p + i, colon - i))
				return i;
			last_kept = h->n < MAX_HDRS;
			if (last_kept) {
				struct hdr *x = &h->h[h->n++];
				size_t v = (size_t)(c - p) + 1;

				while (v < ce && is_wsp(p[v]))
					v++;
				x->name = p + i;
				x->nlen = colon - i;
				x->val = p + v;
				x->vlen = ce - v;
			}
		}
		i = e < len ? e + 1 : len;
	}
	return len;
}

/* Copies a value unfolded: line breaks dropped, control bytes and
 * non-ASCII as spaces or kept (keep_8bit), trimmed. */
static void
val_copy(const char *v, size_t n, char *out, size_t outsz, bool keep_8bit)
{
	size_t i, o = 0;
	unsigned char ch;

	for (i = 0; i < n && o + 1 < outsz; i++) {
		ch = (unsigned char)v[i];
		if (ch == '\r' || ch == '\n')
			continue;
		if (ch < 0x20 || ch == 0x7f || (ch >= 0x80 && !keep_8bit))
			ch = ' ';
		if (ch == ' ' && (o == 0 || out[o - 1] == ' '))
			continue;
		out[o++] = (char)ch;
	}
	while (o > 0 && out[o - 1] == ' ')
		o--;
	out[o] = '\0';
}

static const struct hdr *
hdr_find(const struct hdrs *h, const char *name, size_t from)
{
	size_t i, n = strlen(name);

	for (i = from; i < h->n; i++)
		if (h->h[i].nlen == n &&
		    strncasecmp(h->h[i].name, name, n) == 0)
			return &h->h[i];
	return NULL;
}

/* 1 and the unfolded value in out, or 0 (out ""). */
static int
hdr_get(const struct hdrs *h, const char *name, char *out, size_t outsz)
{
	const struct hdr *x = hdr_find(h, name, 0);

	out[0] = '\0';
	if (x == NULL)
		return 0;
	val_copy(x->val, x->vlen, out, outsz, false);
	return 1;
}

static void
lower(char *s)
{
	for (; *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

/* Case-insensitive search of needle in hay[0..n); NULL when absent. */
static const char *
ci_find(const char *hay, size_t n, const char *needle)
{
	size_t m = strlen(needle), i;

	if (m == 0 || n < m)
		return NULL;
	for (i = 0; i + m <= n; i++)
		if (tolower((unsigned char)hay[i]) ==
		        tolower((unsigned char)needle[0]) &&
		    strncasecmp(hay + i, needle, m) == 0)
			return hay + i;
	return NULL;
}

static bool
ci_has(const char *s, const char *needle)
{
	return ci_find(s, strlen(s), needle) != NULL;
}

/* Content-Type: the type in lower case and the parameters we use. */
static void
ctype_parse(const char *v, struct ctype *ct)
{
	size_t i = 0, o, n = strlen(v), ns, nl;
	char *dst;
	size_t dsz;

	memset(ct, 0, sizeof(*ct));
	for (o = 0;
	     i < n && v[i] != ';' && v[i] != ' ' && o + 1 < sizeof(ct->type);
	     i++)
		ct->type[o++] = (char)tolower((unsigned char)v[i]);
	ct->type[o] = '\0';
	while (i < n) {
		while (i < n && (v[i] == ';' || v[i] == ' '))
			i++;
		ns = i;
		while (i < n && v[i] != '=' && v[i] != ';' && v[i] != ' ')
			i++;
		nl = i - ns;
		while (i < n && v[i] == ' ')
			i++;
		if (i >= n || v[i] != '=')
			continue;
		i++;
		while (i < n && v[i] == ' ')
			i++;
		dst = NULL;
		dsz = 0;
		if (nl == 8 && strncasecmp(v + ns, "boundary", 8) == 0) {
			dst = ct->boundary;
			dsz = sizeof(ct->boundary);
		} else if (nl == 11 &&
		           strncasecmp(v + ns, "report-type", 11) == 0) {
			dst = ct->report_type;
			dsz = sizeof(ct->report_type);
		}
		o = 0;
		if (i < n && v[i] == '"') {
			for (i++; i < n && v[i] != '"'; i++) {
				if (v[i] == '\\' && i + 1 < n)
					i++;
				if (dst && o + 1 < dsz)
					dst[o++] = v[i];
			}
			if (i < n)
				i++;
		} else {
			for (; i < n && v[i] != ';' && v[i] != ' '; i++)
				if (dst && o + 1 < dsz)
					dst[o++] = v[i];
		}
		if (dst)
			dst[o] = '\0';
	}
	if (ct->report_type[0])
		lower(ct->report_type);
}

static int
cte_of(const struct hdrs *h)
{
	char v[64];

	if (!hdr_get(h, "Content-Transfer-Encoding", v, sizeof(v)))
		return CTE_NONE;
	if (strncasecmp(v, "quoted-printable", 16) == 0)
		return CTE_QP;
	if (strncasecmp(v, "base64", 6) == 0)
		return CTE_B64;
	return CTE_NONE;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static int
b64val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || c == '-')
		return 62;
	if (c == '/' || c == '_')
		return 63;
	return -1;
}

/* Decodes in[0..n) (cte) into out[0..cap); returns the length. Lenient:
 * bytes outside the alphabet are skipped, a bad escape is kept as is. */
static size_t
cte_decode(int cte, const char *in, size_t n, char *out, size_t cap)
{
	size_t i = 0, o = 0;
	unsigned acc = 0;
	int bits = 0, v, h, l;

	if (cte == CTE_B64) {
		for (; i < n && o < cap; i++) {
			if (in[i] == '=')
				break;
			if ((v = b64val(in[i])) < 0)
				continue;
			acc = (acc << 6) | (unsigned)v;
			bits += 6;
			if (bits >= 8) {
				bits -= 8;
				out[o++] = (char)((acc >> bits) & 0xff);
			}
		}
		return o;
	}
	while (i < n && o < cap) {
		if (in[i] != '=') {
			out[o++] = in[i++];
			continue;
		}
		if (i + 1 < n && in[i + 1] == '\n') {
			i += 2; /* soft line break */
		} else if (i + 2 < n && in[i + 1] == '\r' &&
		           in[i + 2] == '\n') {
			i += 3;
		} else if (i + 2 < n && (h = hexval(in[i + 1])) >= 0 &&
		           (l = hexval(in[i + 2])) >= 0) {
			out[o++] = (char)(h * 16 + l);
			i += 3;
		} else {
			out[o++] = in[i++];
		}
	}
	return o;
}

/* ---- RFC 2047 encoded words ---- */

/* Appends in[0..n) in charset cs to out (UTF-8, o of outsz used, always
 * terminated) through iconv; an unknown charset or a bad byte drops what
 * cannot be read, never the rest. */
static void
charset_put(const char *cs, const char *in, size_t n, char *out, size_t outsz,
            size_t *o)
{
	iconv_t cd;
	char *ip = (char *)(uintptr_t)in, *op = out + *o;
	size_t il = n, ol = outsz - 1 - *o;

	if (n == 0)
		return;
	cd = iconv_open("UTF-8", cs);
	if (cd == (iconv_t)-1)
		return;
	while (il > 0 && iconv(cd, &ip, &il, &op, &ol) == (size_t)-1) {
		if (errno != EILSEQ && errno != EINVAL)
			break; /* E2BIG: out is full */
		ip++;
		il--;
	}
	if (ol > 0)
		(void)iconv(cd, NULL, NULL, &op, &ol); /* back to ASCII */
	iconv_close(cd);
	*o = (size_t)(op - out);
	out[*o] = '\0';
}

/* One "=?charset?B|Q?text?=" at v[i..n): 1 and its parts, or 0. */
static int
word_at(const char *v, size_t i, size_t n, char *cs, size_t cssz, char *enc,
        size_t *text, size_t *text_len, size_t *end)
{
	size_t a = i + 2, b, c;

	if (i + 2 > n || v[i] != '=' || v[i + 1] != '?')
		return 0;
	/* a charset name as IANA spells them (no '/': iconv's options) */
	for (b = a; b < n && (isalnum((unsigned char)v[b]) ||
	                      strchr("-_.:*", v[b]) != NULL);
	     b++)
		;
	if (b >= n || v[b] != '?' || b == a || b - a >= cssz || b + 2 >= n ||
	    v[b + 2] != '?')
		return 0;
	*enc = (char)toupper((unsigned char)v[b + 1]);
	if (*enc != 'B' && *enc != 'Q')
		return 0;
	for (c = b + 3; c + 1 < n && !(v[c] == '?' && v[c + 1] == '='); c++)
		if (v[c] == ' ')
			return 0;
	if (c + 1 >= n)
		return 0;
	memcpy(cs, v + a, b - a);
	cs[b - a] = '\0';
	cs[strcspn(cs, "*")] = '\0'; /* RFC 2231 language */
	*text = b + 3;
	*text_len = c - (b + 3);
	*end = c + 2;
	return 1;
}

/* Decodes the encoded words of an unfolded header value v into out
 * (UTF-8, truncated to outsz). Adjacent words of one charset are joined
 * before conversion (a character split over two words is still read),
 * the blanks between words dropped (RFC 2047 6.2); other text is copied. */
static void
words_decode(const char *v, char *out, size_t outsz)
{
	char cs[64], pcs[64] = "", raw[HVAL_MAX], enc;
	size_t n = strlen(v), i = 0, o = 0, rn = 0, t, tl, e, k, gap;
	int h, l;

	out[0] = '\0';
	while (i < n && o + 1 < outsz) {
		if (!word_at(v, i, n, cs, sizeof(cs), &enc, &t, &tl, &e)) {
			charset_put(pcs, raw, rn, out, outsz, &o);
			rn = 0;
			pcs[0] = '\0';
			if (o + 1 < outsz) {
				out[o++] = v[i];
				out[o] = '\0';
			}
			i++;
			continue;
		}
		if (rn > 0 && strcasecmp(cs, pcs) != 0) {
			charset_put(pcs, raw, rn, out, outsz, &o);
			rn = 0;
		}
		memcpy(pcs, cs, sizeof(cs));
		if (enc == 'B') {
			rn += cte_decode(CTE_B64, v + t, tl, raw + rn,
			                 sizeof(raw) - rn);
		} else {
			for (k = t; k < t + tl && rn < sizeof(raw); k++) {
				if (v[k] == '_') {
					raw[rn++] = ' ';
				} else if (v[k] == '=' && k + 2 < t + tl &&
				           (h = hexval(v[k + 1])) >= 0 &&
				           (l = hexval(v[k + 2])) >= 0) {
					raw[rn++] = (char)(h * 16 + l);
					k += 2;
				} else {
					raw[rn++] = v[k];
				}
			}
		}
		/* blanks up to a next word belong to neither */
		for (gap = e; gap < n && v[gap] == ' '; gap++)
			;
		i = gap > e && word_at(v, gap, n, cs, sizeof(cs), &enc, &t, &tl,
		                       &k)
		        ? gap
		        : e;
	}
	charset_put(pcs, raw, rn, out, outsz, &o);
}

/* The Subject, unfolded and decoded (UTF-8 or raw 8-bit), or "". */
static void
subject_get(const struct hdrs *top, char *out, size_t outsz)
{
	char v[HVAL_MAX] = {0}; /* all of it, for the static analyser */
	const struct hdr *x = hdr_find(top, "Subject", 0);

	out[0] = '\0';
	if (x == NULL)
		return;
	val_copy(x->val, x->vlen, v, sizeof(v), true);
	words_decode(v, out, outsz);
}

/* ---- tokens ---- */

static bool
is_token_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '_';
}

static void
token_add(struct kr_bounce *b, const char *t, size_t n,
          enum kr_token_purpose purpose)
{
	size_t i;

	if (n < TOKEN_MIN || n >= KR_TOKEN_MAX ||
	    b->n_tokens == KR_BOUNCE_MAX_TOKENS)
		return;
	for (i = 0; i < b->n_tokens; i++)
		if (strlen(b->tokens[i].token) == n &&
		    memcmp(b->tokens[i].token, t, n) == 0)
			return;
	memcpy(b->tokens[b->n_tokens].token, t, n);
	b->tokens[b->n_tokens].token[n] = '\0';
	b->tokens[b->n_tokens].purpose = purpose;
	b->n_tokens++;
}

/* Every "bounces+TOKEN@" (the case of the token kept) and, when unsub,
 * every "unsubscribe?t=TOKEN" in s[0..n). Returns how many were seen. */
static int
tokens_scan(struct kr_bounce *b, const char *s, size_t n, bool unsub)
{
	const char *p = s, *q, *end = s + n;
	int found = 0;

	while (p < end && (q = ci_find(p, (size_t)(end - p), "bounces+"))) {
		const char *t = q + 8, *e = t;

		while (e < end && is_token_char(*e))
			e++;
		if (e < end && *e == '@') {
			token_add(b, t, (size_t)(e - t), KR_TOKEN_BOUNCE);
			found++;
		}
		p = t;
	}
	p = s;
	while (unsub && p < end &&
	       (q = ci_find(p, (size_t)(end - p), "unsubscribe?t="))) {
		const char *t = q + 14, *e = t;

		while (e < end && is_token_char(*e))
			e++;
		token_add(b, t, (size_t)(e - t), KR_TOKEN_UNSUBSCRIBE);
		found++;
		p = t;
	}
	return found;
}

/* ---- status codes ---- */

static bool
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* The first enhanced status "C.S.D" with class 4 or 5 in s[0..n) (RFC
 * 3463: 1-3 digits each), copied to out (16 bytes). Returns a pointer to
 * it or NULL. */
static const char *
status_find(const char *s, size_t n, char *out)
{
	size_t i, j, k, d1, d2;

	for (i = 0; i + 5 <= n; i++) {
		if ((s[i] != '4' && s[i] != '5') || s[i + 1] != '.')
			continue;
		if (i > 0 && (is_digit(s[i - 1]) || s[i - 1] == '.'))
			continue;
		for (j = i + 2, d1 = 0; j < n && is_digit(s[j]) && d1 < 4; j++)
			d1++;
		if (d1 == 0 || d1 > 3 || j >= n || s[j] != '.')
			continue;
		for (k = j + 1, d2 = 0; k < n && is_digit(s[k]) && d2 < 4; k++)
			d2++;
		if (d2 == 0 || d2 > 3 ||
		    (k < n && (is_digit(s[k]) || (s[k] == '.' && k + 1 < n &&
		                                  is_digit(s[k + 1])))))
			continue;
		if (out) {
			memcpy(out, s + i, k - i);
			out[k - i] = '\0';
		}
		return s + i;
	}
	return NULL;
}

/* The first SMTP reply code 4xx/5xx standing alone (followed by a space
 * or '-') in s[0..n); 0 when none. */
static int
code_find(const char *s, size_t n, const char **at)
{
	size_t i;

	for (i = 0; i + 4 <= n; i++) {
		if ((s[i] != '4' && s[i] != '5') || !is_digit(s[i + 1]) ||
		    !is_digit(s[i + 2]) || (s[i + 3] != ' ' && s[i + 3] != '-'))
			continue;
		if (i > 0 &&
		    (is_digit(s[i - 1]) || s[i - 1] == '.' || s[i - 1] == '#' ||
		     isalpha((unsigned char)s[i - 1])))
			continue;
		if (at)
			*at = s + i;
		return (s[i] - '0') * 100 + (s[i + 1] - '0') * 10 +
		       (s[i + 2] - '0');
	}
	return 0;
}

/* The line of s[0..n) around at, one line of printable ASCII. */
static void
line_copy(const char *s, size_t n, const char *at, char *out, size_t outsz)
{
	const char *b = at, *e = at;

	while (b > s && b[-1] != '\n')
		b--;
	while (e < s + n && *e != '\n' && *e != '\r')
		e++;
	val_copy(b, (size_t)(e - b), out, outsz, false);
}

static const char *const unknown_user[] = {
    "user unknown",      "unknown user",        "no such user",
    "no such mailbox",   "does not exist",      "doesn't exist",
    "invalid recipient", "recipient unknown",   "unknown recipient",
    "address rejected",  "mailbox unavailable", "mailbox not found",
    "no mailbox",        "account disabled",    "account has been disabled",
    "not our customer",  "invalid mailbox",     "undeliverable address",
};

static const char *const about_us[] = {
    "relay access denied",     "relaying denied",       "relay not permitted",
    "authentication required", "authentication failed", "must authenticate",
    "sender address rejected",
};

static bool
text_has_any(const char *text, const char *const *words, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (ci_has(text, words[i]))
			return true;
	return false;
}

/* What a failure means for the recipient, from its enhanced status (the
 * RFC 3463 subject), its reply code and the words of the diagnostic:
 * HARD for the address (5.1.x, 5.2.1, 5.4.4, "user unknown"), SOFT for
 * the mailbox or the way there (5.2.2 full, 5.3.x, 5.4.x, 4.x.x) and for
 * policy or content blocks (5.6.x, 5.7.x: the address may be fine),
 * IGNORE when it is about us (5.5.x protocol, 5.1.7/5.1.8 our sender,
 * authentication, relaying). def when there is neither status nor code. */
static enum kr_bounce_kind
kind_of(const char *status, int code, const char *text, enum kr_bounce_kind def)
{
	unsigned subject = 0, detail = 0;
	const char *p;

	if (text_has_any(text, about_us, KR_NELEM(about_us)) || code == 530 ||
	    code == 534 || code == 535 || code == 538)
		return KR_BOUNCE_IGNORE;
	if (status[0] == '4')
		return KR_BOUNCE_SOFT;
	if (status[0] == '5') {
		for (p = status + 2; is_digit(*p); p++)
			subject = subject * 10 + (unsigned)(*p - '0');
		if (*p == '.')
			for (p++; is_digit(*p); p++)
				detail = detail * 10 + (unsigned)(*p - '0');
		switch (subject) {
		case 1:
			return detail == 7 || detail == 8 ? KR_BOUNCE_IGNORE
			                                  : KR_BOUNCE_HARD;
		case 2:
			return detail == 1 ? KR_BOUNCE_HARD : KR_BOUNCE_SOFT;
		case 4:
			return detail == 4 ? KR_BOUNCE_HARD : KR_BOUNCE_SOFT;
		case 5:
			return KR_BOUNCE_IGNORE;
		case 7:
			if (detail == 0 || detail == 8 || detail == 9 ||
			    detail == 11)
				return KR_BOUNCE_IGNORE;
			return text_has_any(text, unknown_user,
			                    KR_NELEM(unknown_user))
			           ? KR_BOUNCE_HARD
			           : KR_BOUNCE_SOFT;
		default:
			return KR_BOUNCE_SOFT;
		}
	}
	if (text_has_any(text, unknown_user, KR_NELEM(unknown_user)))
		return code >= 400 && code < 500 ? KR_BOUNCE_SOFT
		                                 : KR_BOUNCE_HARD;
	if (code == 550 || code == 551 || code == 553)
		return KR_BOUNCE_HARD;
	if (code >= 400)
		return KR_BOUNCE_SOFT;
	return def;
}

/* ---- the parts ---- */

/* "type; value" (Final-Recipient, Diagnostic-Code): the value. */
static const char *
after_semicolon(const char *v)
{
	const char *s = strchr(v, ';');

	if (s == NULL)
		return v;
	for (s++; *s == ' '; s++)
		;
	return s;
}

static void
dsn_block(struct walk *w, const struct hdrs *h)
{
	struct kr_bounce *b = w->out;
	char action[32], status[32], rcpt[256], diag[256], st[16] = "";
	int code = 0;

	if (!hdr_get(h, "Action", action, sizeof(action)))
		return;
	lower(action);
	(void)hdr_get(h, "Status", status, sizeof(status));
	if (!hdr_get(h, "Final-Recipient", rcpt, sizeof(rcpt)))
		(void)hdr_get(h, "Original-Recipient", rcpt, sizeof(rcpt));
	(void)hdr_get(h, "Diagnostic-Code", diag, sizeof(diag));
	if (strncmp(action, "failed", 6) == 0) {
		if (w->dsn_failed)
			return; /* the first failed recipient decides */
		w->dsn_failed = true;
		if (status_find(status, strlen(status), st) == NULL)
			(void)status_find(diag, strlen(diag), st);
		if (st[0] == '\0')
			code = code_find(after_semicolon(diag),
			                 strlen(after_semicolon(diag)), NULL);
		scopy(b->status, sizeof(b->status), st);
		scopy(b->recipient, sizeof(b->recipient),
		      after_semicolon(rcpt));
		scopy(b->diagnostic, sizeof(b->diagnostic),
		      after_semicolon(diag));
		/* "failed" is final: without a code it is permanent */
		b->kind = kind_of(st, code, b->diagnostic, KR_BOUNCE_HARD);
		if (b->kind == KR_BOUNCE_IGNORE)
			b->reason = "not about the recipient";
	} else if (strncmp(action, "delayed", 7) == 0) {
		w->dsn_delayed = true;
	} else {
		w->dsn_delivered = true; /* delivered, relayed, expanded */
	}
}

static void
dsn_parse(struct walk *w, const char *p, size_t len)
{
	struct hdrs hs;
	size_t off, guard = 0;

	w->dsn = true;
	while (len > 0 && guard++ < 1000) {
		while (len > 0 && (*p == '\r' || *p == '\n')) {
			p++;
			len--;
		}
		if (len == 0)
			break;
		off = hdrs_parse(p, len, &hs);
		if (off == 0)
			break;
		dsn_block(w, &hs);
		p += off;
		len -= off;
	}
}

static void
arf_parse(struct walk *w, const char *p, size_t len)
{
	struct hdrs hs;
	char v[HVAL_MAX];
	const struct hdr *x;

	w->arf = true;
	(void)hdrs_parse(p, len, &hs);
	if (hdr_get(&hs, "Feedback-Type", v, sizeof(v))) {
		lower(v);
		scopy(w->fb_type, sizeof(w->fb_type), v);
	}
	if ((x = hdr_find(&hs, "Original-Mail-From", 0)) != NULL)
		(void)tokens_scan(w->out, x->val, x->vlen, false);
	if (hdr_get(&hs, "Original-Rcpt-To", v, sizeof(v)))
		scopy(w->out->recipient, sizeof(w->out->recipient), v);
}

/* The returned message's headers: our VERP Return-Path, the
 * List-Unsubscribe link, any header naming a VERP address. */
static void
orig_headers(struct walk *w, const char *p, size_t len)
{
	struct hdrs hs;
	const struct hdr *x;
	size_t i;

	(void)hdrs_parse(p, len, &hs);
	if ((x = hdr_find(&hs, "Return-Path", 0)) != NULL)
		(void)tokens_scan(w->out, x->val, x->vlen, false);
	for (i = 0; i < hs.n; i++)
		(void)tokens_scan(w->out, hs.h[i].val, hs.h[i].vlen, false);
	if ((x = hdr_find(&hs, "List-Unsubscribe", 0)) != NULL)
		(void)tokens_scan(w->out, x->val, x->vlen, true);
}

static void walk_entity(struct walk *w, const char *p, size_t len,
                        unsigned depth, struct hdrs *h);

static void
walk_multipart(struct walk *w, const char *p, size_t len, const char *bnd,
               unsigned depth)
{
	size_t dl = strlen(bnd), i = 0, e, ce, start = 0, end;
	bool in_part = false, closing;
	struct hdrs hs;

	while (i < len) {
		e = line_end(p, len, i, &ce);
		if (ce - i >= dl + 2 && p[i] == '-' && p[i + 1] == '-' &&
		    memcmp(p + i + 2, bnd, dl) == 0) {
			closing = ce - i >= dl + 4 && p[i + 2 + dl] == '-' &&
			          p[i + 3 + dl] == '-';
			if (in_part) {
				end = i;
				if (end > start && p[end - 1] == '\n')
					end--;
				if (end > start && p[end - 1] == '\r')
					end--;
				if (w->parts++ < MAX_PARTS)
					walk_entity(w, p + start, end - start,
					            depth + 1, &hs);
			}
			if (closing)
				return;
			in_part = true;
			start = e < len ? e + 1 : len;
		}
		i = e < len ? e + 1 : len;
	}
	/* Truncated: no closing delimiter; the last part runs to the end. */
	if (in_part && start < len && w->parts++ < MAX_PARTS)
		walk_entity(w, p + start, len - start, depth + 1, &hs);
}

/* One MIME entity; h is scratch space for its headers. */
static void
walk_entity(struct walk *w, const char *p, size_t len, unsigned depth,
            struct hdrs *h)
{
	char v[HVAL_MAX];
	struct ctype ct;
	size_t off;
	const char *body;
	size_t blen;

	off = hdrs_parse(p, len, h);
	body = p + off;
	blen = len - off;
	if (hdr_get(h, "Content-Type", v, sizeof(v)))
		ctype_parse(v, &ct);
	else
		ctype_parse("text/plain", &ct);
	if (strncmp(ct.type, "multipart/", 10) == 0) {
		if (ct.boundary[0] && depth < MAX_DEPTH)
			walk_multipart(w, body, blen, ct.boundary, depth);
	} else if (strcmp(ct.type, "message/delivery-status") == 0 ||
	           strcmp(ct.type, "message/global-delivery-status") == 0) {
		dsn_parse(w, body, blen);
	} else if (strcmp(ct.type, "message/feedback-report") == 0) {
		arf_parse(w, body, blen);
	} else if (strcmp(ct.type, "message/rfc822") == 0 ||
	           strcmp(ct.type, "text/rfc822-headers") == 0 ||
	           strcmp(ct.type, "message/global") == 0 ||
	           strcmp(ct.type, "message/global-headers") == 0) {
		orig_headers(w, body, blen);
	} else if (strncmp(ct.type, "text/plain", 10) == 0 && w->text == NULL) {
		w->text = body;
		w->text_len = blen;
		w->text_cte = cte_of(h);
	}
}

/* ---- bounce texts ---- */

static bool
text_qmail(struct walk *w, const char *t, size_t n)
{
	struct kr_bounce *b = w->out;
	const char *at, *lt, *gt;
	char st[16] = "";
	int code = 0;

	if ((at = ci_find(t, n, "This is the qmail-send program")) == NULL)
		return false;
	b->source = "qmail";
	/* "<addr@dom>:" on a line of its own, then the remote's words */
	if ((lt = memchr(at, '<', n - (size_t)(at - t))) != NULL &&
	    (gt = memchr(lt, '>', n - (size_t)(lt - t))) != NULL &&
	    gt - lt < 256) {
		val_copy(lt + 1, (size_t)(gt - lt - 1), b->recipient,
		         sizeof(b->recipient), false);
		at = gt;
	}
	n -= (size_t)(at - t);
	t = at;
	if ((at = status_find(t, n, st)) == NULL)
		code = code_find(t, n, &at);
	if (at)
		line_copy(t, n, at, b->diagnostic, sizeof(b->diagnostic));
	/* qmail-send reports a failure only when it has given up */
	b->kind = kind_of(st, code, b->diagnostic, KR_BOUNCE_HARD);
	if (b->kind == KR_BOUNCE_IGNORE)
		b->reason = "not about the recipient";
	scopy(b->status, sizeof(b->status), st);
	return true;
}

static bool
text_exim(struct walk *w, const char *t, size_t n)
{
	struct kr_bounce *b = w->out;
	const char *at, *p, *e;
	char st[16] = "", line[256];
	int code = 0;

	if ((at = ci_find(
	         t, n,
	         "This message was created automatically by mail delivery "
	         "software")) == NULL)
		return false;
	b->source = "exim";
	if (ci_find(t, n, "has not yet been delivered") ||
	    ci_find(t, n, "message delayed")) {
		b->reason = "delayed";
		return true;
	}
	/* The first indented line holding an '@' is the recipient. */
	for (p = at; p < t + n; p = e + 1) {
		e = memchr(p, '\n', (size_t)(t + n - p));
		if (e == NULL)
			e = t + n;
		if (e - p > 2 && is_wsp(*p) &&
		    memchr(p, '@', (size_t)(e - p))) {
			val_copy(p, (size_t)(e - p), line, sizeof(line), false);
			scopy(b->recipient, sizeof(b->recipient), line);
			break;
		}
		if (e >= t + n)
			break;
	}
	if ((at = status_find(t, n, st)) == NULL)
		code = code_find(t, n, &at);
	if (at)
		line_copy(t, n, at, b->diagnostic, sizeof(b->diagnostic));
	b->kind = kind_of(st, code, b->diagnostic,
	                  ci_find(t, n, "permanent error") ? KR_BOUNCE_HARD
	                                                   : KR_BOUNCE_SOFT);
	if (b->kind == KR_BOUNCE_IGNORE)
		b->reason = "not about the recipient";
	scopy(b->status, sizeof(b->status), st);
	return true;
}

static const char *const bounce_subjects[] = {
    "undeliver",
    "undelivered mail",
    "delivery status notification",
    "delivery failure",
    "failure notice",
    "returned mail",
    "mail delivery failed",
    "delivery has failed",
    "could not be delivered",
    "non-delivery",
    "nondeliverable",
    "mail system error",
    "\xe9\x85\x8d\xe4\xbf\xa1\xe4\xb8\x8d\xe8\x83\xbd", /* 配信不能 */
    "\xe6\x9c\xaa\xe9\x85\x8d\xe9\x81\x94",             /* 未配達 */
};

/* A notice from a mailer daemon that fits no known shape. */
static bool
text_generic(struct walk *w, const struct hdrs *top, const char *t, size_t n)
{
	struct kr_bounce *b = w->out;
	char from[HVAL_MAX], subj[HVAL_MAX], st[16] = "";
	const char *at = NULL;
	bool daemon, subject = false;
	size_t i;
	int code = 0;

	(void)hdr_get(top, "From", from, sizeof(from));
	subject_get(top, subj, sizeof(subj));
	daemon = ci_has(from, "mailer-daemon") || ci_has(from, "postmaster") ||
	         ci_has(from, "mail delivery");
	for (i = 0; i < KR_NELEM(bounce_subjects); i++)
		if (ci_has(subj, bounce_subjects[i]))
			subject = true;
	if (!daemon && !subject)
		return false;
	if (ci_has(subj, "delay") || ci_has(subj, "warning") ||
	    ci_has(subj, "relayed") || ci_has(subj, "delivered:") ||
	    ci_has(subj, "(success)")) {
		b->source = "text";
		b->reason = "delayed or success notice";
		return true;
	}
	if ((at = status_find(t, n, st)) == NULL)
		code = code_find(t, n, &at);
	if (at == NULL && !subject)
		return false; /* a daemon's mail that names no failure */
	b->source = "text";
	if (at)
		line_copy(t, n, at, b->diagnostic, sizeof(b->diagnostic));
	b->kind = kind_of(st, code, b->diagnostic, KR_BOUNCE_SOFT);
	if (b->kind == KR_BOUNCE_IGNORE)
		b->reason = "not about the recipient";
	scopy(b->status, sizeof(b->status), st);
	return true;
}

static const char *const vacation_subjects[] = {
    "out of office",
    "out of the office",
    "automatic reply",
    "auto reply",
    "autoreply",
    "auto-reply",
    "auto:",
    "vacation",
    "away from",
    "abwesend",
    "absence",
    "\xe8\x87\xaa\xe5\x8b\x95\xe5\xbf\x9c\xe7\xad\x94", /* 自動応答 */
    "\xe8\x87\xaa\xe5\x8b\x95\xe8\xbf\x94\xe4\xbf\xa1", /* 自動返信 */
    "\xe4\xb8\x8d\xe5\x9c\xa8",                         /* 不在 */
};

/* RFC 3834 and the customary markers of vacation and auto-responders. */
static bool
is_autoreply(const struct hdrs *top)
{
	char v[HVAL_MAX];
	size_t i;

	if (hdr_get(top, "Auto-Submitted", v, sizeof(v)) &&
	    strncasecmp(v, "no", 2) != 0)
		return true;
	if (hdr_find(top, "X-Autoreply", 0) ||
	    hdr_find(top, "X-Autorespond", 0) ||
	    hdr_find(top, "X-Autoresponse", 0) ||
	    hdr_find(top, "X-Vacation", 0))
		return true;
	if (hdr_get(top, "Precedence", v, sizeof(v)) &&
	    (ci_has(v, "auto_reply") || ci_has(v, "auto-reply")))
		return true;
	subject_get(top, v, sizeof(v));
	for (i = 0; i < KR_NELEM(vacation_subjects); i++)
		if (ci_has(v, vacation_subjects[i]))
			return true;
	return false;
}

/* t[0..n): the text the heuristics read (decoded, at most TEXT_SCAN). */
static void
verdict(struct walk *w, const struct hdrs *top, const char *msg, size_t len,
        const char *t, size_t n)
{
	struct kr_bounce *b = w->out;

	if (w->arf || w->fb_type[0]) {
		b->source = "arf";
		if (strcmp(w->fb_type, "not-spam") == 0) {
			b->reason = "not-spam report";
			return;
		}
		b->kind = KR_BOUNCE_COMPLAINT;
		snprintf(b->diagnostic, sizeof(b->diagnostic),
		         "feedback-type: %s",
		         w->fb_type[0] ? w->fb_type : "abuse");
		return;
	}
	if (w->dsn && (w->dsn_failed || w->dsn_delayed || w->dsn_delivered)) {
		b->source = "dsn";
		if (!w->dsn_failed)
			b->reason =
			    w->dsn_delayed ? "delayed" : "delivery notice";
		return;
	}
	if (text_qmail(w, t, n) || text_exim(w, t, n) ||
	    text_generic(w, top, t, n))
		return;
	if (is_autoreply(top)) {
		b->reason = "auto-reply";
		return;
	}
	/* Tokens quoted in a body (returned message pasted as text). */
	(void)tokens_scan(b, msg, len < TOKEN_SCAN ? len : TOKEN_SCAN, true);
	if (b->n_tokens > 0) {
		b->kind = KR_BOUNCE_SOFT;
		b->source = "verp";
		snprintf(b->diagnostic, sizeof(b->diagnostic),
		         "unrecognised message to a VERP address");
		return;
	}
	b->reason = "not a bounce";
}

static const char *const envelope_headers[] = {
    "X-Original-To", "Delivered-To", "Envelope-To", "X-Envelope-To", "To",
};

int
kr_bounce_parse(const char *msg, size_t len, const char *recipient,
                struct kr_bounce *out, struct kr_err *err)
{
	struct walk w;
	struct hdrs top, scratch;
	char v[HVAL_MAX];
	struct ctype ct;
	const struct hdr *x;
	const char *text;
	char *dec = NULL;
	size_t off, i, tlen;
	int r = -1, cte;

	if (out == NULL || (msg == NULL && len > 0)) {
		kr_err_set(err, KR_ERR_INVALID, "bounce: no message");
		goto out;
	}
	memset(out, 0, sizeof(*out));
	out->kind = KR_BOUNCE_IGNORE;
	out->source = "";
	out->reason = "";
	if (len > KR_BOUNCE_MAX_INPUT)
		len = KR_BOUNCE_MAX_INPUT;
	if (msg == NULL)
		msg = "";
	memset(&w, 0, sizeof(w));
	w.out = out;
	if (recipient != NULL)
		(void)tokens_scan(out, recipient, strlen(recipient), false);
	off = hdrs_parse(msg, len, &top);
	/* The envelope recipient, as the MTA recorded it. */
	for (i = 0; i < KR_NELEM(envelope_headers); i++)
		for (x = hdr_find(&top, envelope_headers[i], 0); x != NULL;
		     x = hdr_find(&top, envelope_headers[i],
		                  (size_t)(x - top.h) + 1))
			(void)tokens_scan(out, x->val, x->vlen, false);
	if (hdr_get(&top, "Content-Type", v, sizeof(v)))
		ctype_parse(v, &ct);
	else
		ctype_parse("text/plain", &ct);
	/* A plain body is left to the text heuristics. */
	if (strncmp(ct.type, "multipart/", 10) == 0 && ct.boundary[0])
		walk_multipart(&w, msg + off, len - off, ct.boundary, 0);
	else if (strncmp(ct.type, "message/", 8) == 0)
		walk_entity(&w, msg, len, 0, &scratch);
	if (strcmp(ct.report_type, "feedback-report") == 0)
		w.arf = true;
	/* The text for the heuristics: the first text/plain part, or a
	 * plain body; decoded when it is quoted-printable or base64. */
	text = w.text ? w.text : msg + off;
	tlen = w.text ? w.text_len : len - off;
	cte = w.text ? w.text_cte : cte_of(&top);
	if (tlen > 2 * TEXT_SCAN)
		tlen = 2 * TEXT_SCAN;
	if (cte != CTE_NONE) {
		dec = kr_xmalloc(TEXT_SCAN);
		tlen = cte_decode(cte, text, tlen, dec, TEXT_SCAN);
		text = dec;
	}
	if (tlen > TEXT_SCAN)
		tlen = TEXT_SCAN;
	verdict(&w, &top, msg, len, text, tlen);
	r = 0;
out:
	free(dec);
	return r;
}

enum kr_bounce_kind
kr_bounce_smtp_kind(int code, const char *reply, char *status_out)
{
	char st[16] = "";
	const char *r = reply ? reply : "";

	(void)status_find(r, strlen(r), st);
	if (status_out)
		scopy(status_out, 16, st);
	if (code < 400 || code > 599)
		return KR_BOUNCE_IGNORE;
	if (code < 500 && st[0] == '5')
		st[0] = '\0'; /* a 4xx reply decides, whatever its text */
	return kind_of(st, code, r, KR_BOUNCE_SOFT);
}

const char *
kr_bounce_kind_name(enum kr_bounce_kind kind)
{
	switch (kind) {
	case KR_BOUNCE_HARD:
		return "hard";
	case KR_BOUNCE_SOFT:
		return "soft";
	case KR_BOUNCE_COMPLAINT:
		return "complaint";
	case KR_BOUNCE_IGNORE:
		break;
	}
	return "ignore";
}
