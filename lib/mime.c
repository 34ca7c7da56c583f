/* mime.c — RFC 5322 / 2045 / 2047 composition.
 *
 * Header lines are kept to 76 columns (RFC 5322 2.1.1 asks for < 78);
 * encoded words never exceed 75 characters (RFC 2047 2) and always hold
 * whole UTF-8 characters. Bodies go out in quoted-printable or base64,
 * whichever is shorter for the part; both keep lines at 76 octets. The
 * boundary starts with "=_", which neither encoding can produce (QP only
 * writes '=' before two hex digits or CRLF; base64 only as final padding),
 * so it can never occur inside a part. */
#include "mime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "buf.h"
#include "err.h"
#include "jis.h"
#include "xmem.h"

#define LINE_MAX_COLS 76 /* header and body lines, without CRLF */
#define EW_MAX 75        /* RFC 2047: an encoded word's length */
#define EW_OVERHEAD 12   /* "=?UTF-8?B?" + "?=" */
#define EW_JIS_OVERHEAD 18 /* "=?ISO-2022-JP?B?" + "?=" */
#define JIS_WRAP 76        /* format=flowed lines, soft space included */
#define LINE_HARD_MAX 998  /* RFC 5322 2.1.1, without CRLF */
#define B64_LINE 76
#define B64_LINE_IN 57 /* input octets per full base64 line */

struct kr_mime_part {
	char *canon; /* the prefix with CRLF line ends */
	size_t canon_len;
	char *qp; /* QP of canon[0..qcut): ends with CRLF or empty */
	size_t qp_len;
	size_t qcut; /* just after the last LF */
	char *b64;   /* base64 of canon[0..bcut), no final CRLF */
	size_t b64_len;
	size_t bcut; /* a multiple of 57 */
	bool jis;    /* canon is ISO-2022-JP already (kr_mime_part_new_jis) */
	bool flowed; /* … wrapped as format=flowed; delsp=yes */
	size_t max_line; /* jis: longest line of canon, without CRLF */
};

static const char b64_tab[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char hex_tab[] = "0123456789ABCDEF";

bool
kr_mime_has_ctl(const char *s)
{
	const unsigned char *p;

	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p < 0x20 || *p == 0x7f)
			return true;
		/* C1 controls (NEL among them) and U+2028/U+2029, which
		 * some mail software and most JavaScript take for line
		 * breaks (as the config refuses them). */
		if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f)
			return true;
		if (p[0] == 0xe2 && p[1] == 0x80 &&
		    (p[2] == 0xa8 || p[2] == 0xa9))
			return true;
	}
	return false;
}

/* Length of the UTF-8 sequence at s (at most n bytes), or 0 if invalid. */
static size_t
utf8_seq(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t len, i;
	unsigned long cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

bool
kr_mime_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, k;

	while (i < len) {
		if ((k = utf8_seq(p + i, len - i)) == 0)
			return false;
		i += k;
	}
	return true;
}

/* A header value: no controls (CR, LF, NUL above all) and valid UTF-8. */
static int
check_value(const char *what, const char *v, struct kr_err *err)
{
	if (kr_mime_has_ctl(v))
		return kr_err_set(err, KR_ERR_INVALID,
		                  "%s: control character (CR, LF, NUL, NEL, "
		                  "U+2028…) refused in a header",
		                  what);
	if (!kr_mime_utf8_valid(v, strlen(v)))
		return kr_err_set(err, KR_ERR_INVALID, "%s: not valid UTF-8",
		                  what);
	return 0;
}

/* An address in a header: printable ASCII or UTF-8, no white space, no
 * angle brackets or commas (it is always an addr-spec). */
static int
check_addr(const char *what, const char *a, struct kr_err *err)
{
	if (a == NULL || a[0] == '\0')
		return kr_err_set(err, KR_ERR_INVALID, "%s: address missing",
		                  what);
	if (check_value(what, a, err) < 0)
		return -1;
	if (strpbrk(a, " <>,\"()") != NULL || strchr(a, '@') == NULL)
		return kr_err_set(err, KR_ERR_INVALID,
		                  "%s: not a plain address", what);
	return 0;
}

/* ---- base64 ---- */

static size_t
b64_len(size_t n)
{
	size_t chars = (n + 2) / 3 * 4;

	if (chars == 0)
		return 0;
	return chars + 2 * ((chars - 1) / B64_LINE);
}

int
kr_mime_base64(struct kr_buf *out, const char *p, size_t n)
{
	const unsigned char *s = (const unsigned char *)p;
	size_t i, col = 0;
	char *d;

	if (n == 0)
		return 0;
	if (kr_buf_reserve(out, b64_len(n)) < 0 || out->data == NULL)
		return -1;
	d = out->data + out->len;
	for (i = 0; i + 3 <= n; i += 3) {
		unsigned v =
		    (unsigned)s[i] << 16 | (unsigned)s[i + 1] << 8 | s[i + 2];

		if (col == B64_LINE) {
			*d++ = '\r';
			*d++ = '\n';
			col = 0;
		}
		d[0] = b64_tab[v >> 18];
		d[1] = b64_tab[(v >> 12) & 63];
		d[2] = b64_tab[(v >> 6) & 63];
		d[3] = b64_tab[v & 63];
		d += 4;
		col += 4;
	}
	if (i < n) {
		unsigned v = (unsigned)s[i] << 16;

		if (i + 1 < n)
			v |= (unsigned)s[i + 1] << 8;
		if (col == B64_LINE) {
			*d++ = '\r';
			*d++ = '\n';
		}
		d[0] = b64_tab[v >> 18];
		d[1] = b64_tab[(v >> 12) & 63];
		d[2] = i + 1 < n ? b64_tab[(v >> 6) & 63] : '=';
		d[3] = '=';
		d += 4;
	}
	out->len = (size_t)(d - out->data);
	out->data[out->len] = '\0';
	return 0;
}

/* Plain base64, no line breaks (encoded words). */
static void
b64_raw(char *d, const unsigned char *s, size_t n)
{
	size_t i;

	for (i = 0; i + 3 <= n; i += 3) {
		unsigned v =
		    (unsigned)s[i] << 16 | (unsigned)s[i + 1] << 8 | s[i + 2];

		*d++ = b64_tab[v >> 18];
		*d++ = b64_tab[(v >> 12) & 63];
		*d++ = b64_tab[(v >> 6) & 63];
		*d++ = b64_tab[v & 63];
	}
	if (i < n) {
		unsigned v = (unsigned)s[i] << 16;

		if (i + 1 < n)
			v |= (unsigned)s[i + 1] << 8;
		*d++ = b64_tab[v >> 18];
		*d++ = b64_tab[(v >> 12) & 63];
		*d++ = i + 1 < n ? b64_tab[(v >> 6) & 63] : '=';
		*d++ = '=';
	}
	*d = '\0';
}

/* ---- quoted-printable ---- */

/* One pass that either counts (out NULL) or writes. */
static size_t
qp_run(struct kr_buf *out, const char *p, size_t n)
{
	const unsigned char *s = (const unsigned char *)p;
	size_t i, col = 0, total = 0;
	char tok[3];
	size_t tl;
	char *d = out ? out->data + out->len : NULL;

	for (i = 0; i < n; i++) {
		unsigned c = s[i];

		if (c == '\n' || (c == '\r' && i + 1 < n && s[i + 1] == '\n')) {
			if (c == '\r')
				i++;
			if (d) {
				*d++ = '\r';
				*d++ = '\n';
			}
			total += 2;
			col = 0;
			continue;
		}
		if ((c >= 33 && c <= 126 && c != '=') ||
		    ((c == ' ' || c == '\t') && i + 1 < n && s[i + 1] != '\n' &&
		     s[i + 1] != '\r')) {
			tok[0] = (char)c;
			tl = 1;
		} else {
			tok[0] = '=';
			tok[1] = hex_tab[c >> 4];
			tok[2] = hex_tab[c & 15];
			tl = 3;
		}
		if (col + tl > LINE_MAX_COLS - 1) {
			if (d) {
				*d++ = '=';
				*d++ = '\r';
				*d++ = '\n';
			}
			total += 3;
			col = 0;
		}
		if (d) {
			memcpy(d, tok, tl);
			d += tl;
		}
		total += tl;
		col += tl;
	}
	if (out) {
		out->len = (size_t)(d - out->data);
		out->data[out->len] = '\0';
	}
	return total;
}

size_t
kr_mime_qp_len(const char *p, size_t n)
{
	return qp_run(NULL, p, n);
}

int
kr_mime_qp(struct kr_buf *out, const char *p, size_t n)
{
	if (kr_buf_reserve(out, kr_mime_qp_len(p, n)) < 0 || out->data == NULL)
		return -1;
	qp_run(out, p, n);
	return 0;
}

/* Appends p with every line end made CRLF (bare CR and LF included). */
static int
canon_crlf(struct kr_buf *out, const char *p, size_t n)
{
	size_t i, extra = 0;
	char *d;

	for (i = 0; i < n; i++)
		if (p[i] == '\n' || p[i] == '\r')
			extra++;
	if (kr_buf_reserve(out, n + extra) < 0 || out->data == NULL)
		return -1;
	d = out->data + out->len;
	for (i = 0; i < n; i++) {
		if (p[i] == '\r') {
			if (i + 1 < n && p[i + 1] == '\n')
				i++;
			*d++ = '\r';
			*d++ = '\n';
		} else if (p[i] == '\n') {
			*d++ = '\r';
			*d++ = '\n';
		} else {
			*d++ = p[i];
		}
	}
	out->len = (size_t)(d - out->data);
	out->data[out->len] = '\0';
	return 0;
}

/* ---- prepared parts ---- */

struct kr_mime_part *
kr_mime_part_new(const char *data, size_t len)
{
	struct kr_mime_part *p = kr_xcalloc(1, sizeof(*p));
	struct kr_buf b;
	size_t i;

	kr_buf_init(&b, 0);
	if (canon_crlf(&b, data, len) < 0)
		abort(); /* unbounded buffer: cannot fail */
	p->canon_len = b.len;
	p->canon = kr_buf_steal(&b);
	p->qcut = 0;
	for (i = p->canon_len; i > 0; i--)
		if (p->canon[i - 1] == '\n') {
			p->qcut = i;
			break;
		}
	p->bcut = p->canon_len / B64_LINE_IN * B64_LINE_IN;
	if (kr_mime_qp(&b, p->canon, p->qcut) < 0)
		abort();
	p->qp_len = b.len;
	p->qp = kr_buf_steal(&b);
	if (kr_mime_base64(&b, p->canon, p->bcut) < 0)
		abort();
	p->b64_len = b.len;
	p->b64 = kr_buf_steal(&b);
	return p;
}

void
kr_mime_part_free(struct kr_mime_part **pp)
{
	struct kr_mime_part *p;

	if (pp == NULL || (p = *pp) == NULL)
		return;
	free(p->canon);
	free(p->qp);
	free(p->b64);
	free(p);
	*pp = NULL;
}

/* ---- ISO-2022-JP (RFC 1468) ---- */

static const char ESC_JIS[] = "\x1b$B", ESC_ASCII[] = "\x1b(B";

/* Bytes that putting a character of JIS code code costs in state in_jis. */
static size_t
jis_cost(unsigned code, bool in_jis)
{
	if (code < 0x80)
		return in_jis ? 4 : 1;
	return in_jis ? 2 : 5;
}

static int
jis_put(struct kr_buf *b, unsigned code, bool *in_jis)
{
	char c[2];

	if (code < 0x80) {
		if (*in_jis && kr_buf_append(b, ESC_ASCII, 3) < 0)
			return -1;
		*in_jis = false;
		return kr_buf_putc(b, (char)code);
	}
	if (!*in_jis && kr_buf_append(b, ESC_JIS, 3) < 0)
		return -1;
	*in_jis = true;
	c[0] = (char)(code >> 8);
	c[1] = (char)(code & 0xff);
	return kr_buf_append(b, c, 2);
}

/* Whether a flowed line starting at p (n bytes) needs space-stuffing. */
static bool
needs_stuffing(const char *p, size_t n)
{
	return (n > 0 && p[0] == ' ') || (n >= 5 && memcmp(p, "From ", 5) == 0);
}

/* Japanese line-breaking rules (kinsoku): no line starts with closing
 * punctuation, a prolonged sound mark or a small kana, and none ends with
 * an opening bracket. */
static bool
no_line_start(uint32_t cp)
{
	static const uint32_t v[] = {
	    0x3001, 0x3002, 0xFF0C, 0xFF0E, 0x30FB, 0xFF1A, 0xFF1B, 0xFF1F,
	    0xFF01, 0x30FC, 0x300D, 0x300F, 0xFF09, 0x3015, 0xFF3D, 0xFF5D,
	    0x3009, 0x300B, 0x3005, 0x309D, 0x309E, 0x30FD, 0x30FE, 0x3041,
	    0x3043, 0x3045, 0x3047, 0x3049, 0x3063, 0x3083, 0x3085, 0x3087,
	    0x30A1, 0x30A3, 0x30A5, 0x30A7, 0x30A9, 0x30C3, 0x30E3, 0x30E5,
	    0x30E7, 0x301C, 0x2026, 0x2025};
	size_t i;

	for (i = 0; i < KR_NELEM(v); i++)
		if (v[i] == cp)
			return true;
	return false;
}

static bool
no_line_end(uint32_t cp)
{
	return cp == 0x300C || cp == 0x300E || cp == 0xFF08 || cp == 0x3014 ||
	       cp == 0xFF3B || cp == 0xFF5B || cp == 0x3008 || cp == 0x300A;
}

#define JIS_LONG_WORD 900 /* a longer ASCII word (URL) is broken anyway */

/* One line (no line end) into out, ending in ASCII. flowed: wrapped at
 * JIS_WRAP octets with soft breaks (a space before CRLF, deleted by the
 * reader: delsp=yes) between two Japanese characters, between Japanese
 * and ASCII, or after a space, never inside an ASCII word (a URL stays
 * whole and clickable; the line runs long instead, to JIS_LONG_WORD) and
 * following kinsoku. -1: a character ISO-2022-JP cannot carry. */
static int
jis_line(struct kr_buf *out, const char *s, size_t n, bool flowed,
         size_t *max_line)
{
	const unsigned char *p = (const unsigned char *)s;
	struct kr_buf lb;
	size_t pos = 0, k, start = 0, opp_out = 0, opp_in = 0;
	bool in_jis = false, opp_jis = false, here;
	uint32_t prev = 0;
	unsigned code;
	int r = -1;

	kr_buf_init(&lb, 0);
	if (flowed && needs_stuffing(s, n) && kr_buf_putc(&lb, ' ') < 0)
		goto out;
	while (pos < n) {
		uint32_t cp = kr_jis_utf8(p + pos, n - pos, &k);

		if ((code = kr_jis_code(cp)) == 0 || cp == '\r' || cp == '\n')
			goto out;
		/* may a soft break go just before cp? */
		here = pos > start && cp != ' ' &&
		       !(cp < 0x80 && prev < 0x80 && prev != ' ') &&
		       !no_line_start(cp) && !no_line_end(prev);
		if (here) {
			opp_out = lb.len;
			opp_in = pos;
			opp_jis = in_jis;
		}
		if (flowed && pos > start &&
		    lb.len + jis_cost(code, in_jis) + (code >= 0x80 ? 3 : 0) +
		            1 >
		        JIS_WRAP &&
		    (opp_in > start || lb.len >= JIS_LONG_WORD)) {
			if (opp_in > start) {
				lb.len = opp_out;
				lb.data[lb.len] = '\0';
				pos = opp_in;
				in_jis = opp_jis;
			}
			if ((in_jis && kr_buf_append(&lb, ESC_ASCII, 3) < 0) ||
			    kr_buf_puts(&lb, " \r\n") < 0)
				goto out;
			if (lb.len - 2 > *max_line)
				*max_line = lb.len - 2;
			if (kr_buf_append(out, lb.data, lb.len) < 0)
				goto out;
			kr_buf_reset(&lb);
			in_jis = false;
			start = pos;
			opp_in = 0;
			prev = 0;
			if (needs_stuffing(s + pos, n - pos) &&
			    kr_buf_putc(&lb, ' ') < 0)
				goto out;
			continue;
		}
		if (jis_put(&lb, code, &in_jis) < 0)
			goto out;
		pos += k;
		prev = cp;
	}
	if (in_jis && kr_buf_append(&lb, ESC_ASCII, 3) < 0)
		goto out;
	if (lb.len > *max_line)
		*max_line = lb.len;
	if (kr_buf_append(out, lb.data ? lb.data : "", lb.len) < 0)
		goto out;
	r = 0;
out:
	kr_buf_fini(&lb);
	return r;
}

int
kr_mime_jis_body(struct kr_buf *out, const char *s, size_t n, bool flowed,
                 size_t *max_line_out)
{
	size_t i = 0, e, len, max = 0;

	if (!kr_mime_utf8_valid(s, n))
		return -1;
	while (i < n) {
		/* a line ends at LF, CRLF or a bare CR (as in canon_crlf) */
		for (e = i; e < n && s[e] != '\n' && s[e] != '\r'; e++)
			;
		len = e - i;
		/* trailing spaces would read as soft breaks; "-- " stays */
		if (flowed && !(len == 3 && memcmp(s + i, "-- ", 3) == 0))
			while (len > 0 && s[i + len - 1] == ' ')
				len--;
		if (jis_line(out, s + i, len, flowed, &max) < 0)
			return -1;
		if (e == n)
			break;
		if (kr_buf_puts(out, "\r\n") < 0)
			return -1;
		i = e + (s[e] == '\r' && e + 1 < n && s[e + 1] == '\n' ? 2 : 1);
	}
	if (max_line_out)
		*max_line_out = max;
	return 0;
}

struct kr_mime_part *
kr_mime_part_new_jis(const char *data, size_t len, bool flowed)
{
	struct kr_mime_part *p;
	struct kr_buf b;
	size_t max = 0;

	kr_buf_init(&b, 0);
	if (kr_mime_jis_body(&b, data, len, flowed, &max) < 0) {
		kr_buf_fini(&b);
		return NULL;
	}
	p = kr_mime_part_new(b.data ? b.data : "", b.len);
	p->jis = true;
	p->flowed = flowed;
	p->max_line = max;
	kr_buf_fini(&b);
	return p;
}

/* An ISO-2022-JP text part: the prepared prefix (already encoded) and the
 * tail (UTF-8, encoded here) in 7bit when every line is within 998
 * octets (text/plain always is: flowed), else quoted-printable (HTML with
 * very long lines). */
static int
put_part_jis(struct kr_buf *out, const char *subtype,
             const struct kr_mime_part *part, const char *tail, size_t tail_len,
             bool *qp_out)
{
	bool flowed = strcmp(subtype, "plain") == 0;
	struct kr_buf t, q;
	size_t max = 0;
	int r = -1;

	kr_buf_init(&t, 0);
	kr_buf_init(&q, 0);
	if (part != NULL && (!part->jis || part->flowed != flowed))
		goto out;
	if (kr_mime_jis_body(&t, tail ? tail : "", tail ? tail_len : 0, flowed,
	                     &max) < 0)
		goto out;
	if (part != NULL && part->max_line > max)
		max = part->max_line;
	if (kr_buf_printf(out,
	                  "Content-Type: text/%s; charset=ISO-2022-JP%s\r\n"
	                  "Content-Transfer-Encoding: %s\r\n\r\n",
	                  subtype, flowed ? "; format=flowed; delsp=yes" : "",
	                  max <= LINE_HARD_MAX ? "7bit" : "quoted-printable") <
	    0)
		goto out;
	*qp_out = max > LINE_HARD_MAX;
	if (max <= LINE_HARD_MAX) {
		if ((part && kr_buf_append(out, part->canon ? part->canon : "",
		                           part->canon_len) < 0) ||
		    kr_buf_append(out, t.data ? t.data : "", t.len) < 0)
			goto out;
	} else {
		if (part && (kr_buf_append(out, part->qp ? part->qp : "",
		                           part->qp_len) < 0 ||
		             kr_buf_append(&q, part->canon + part->qcut,
		                           part->canon_len - part->qcut) < 0))
			goto out;
		if (kr_buf_append(&q, t.data ? t.data : "", t.len) < 0 ||
		    kr_mime_qp(out, q.data ? q.data : "", q.len) < 0)
			goto out;
	}
	r = 0;
out:
	kr_buf_fini(&t);
	kr_buf_fini(&q);
	return r;
}

/* Writes the Content-Type/-Transfer-Encoding lines, a blank line and the
 * encoded body of one text part (prefix part, then tail). */
static int
put_part(struct kr_buf *out, const char *subtype,
         const struct kr_mime_part *part, const char *tail, size_t tail_len,
         bool *qp_out)
{
	/* no prepared prefix: an empty one (never NULL + 0) */
	static char nothing[1];
	static const struct kr_mime_part empty = {
	    .canon = nothing, .qp = nothing, .b64 = nothing};
	struct kr_buf t, q, b;
	size_t qlen, blen;
	int r = -1;

	if (part == NULL)
		part = &empty;
	kr_buf_init(&t, 0);
	kr_buf_init(&q, 0);
	kr_buf_init(&b, 0);
	if (canon_crlf(&t, tail ? tail : "", tail ? tail_len : 0) < 0)
		goto out;
	/* QP continues after the last complete line of the prefix; base64
	 * after its last full line of 57 octets. */
	if (kr_buf_append(&q, part->canon + part->qcut,
	                  part->canon_len - part->qcut) < 0 ||
	    kr_buf_append(&q, t.data ? t.data : "", t.len) < 0 ||
	    kr_buf_append(&b, part->canon + part->bcut,
	                  part->canon_len - part->bcut) < 0 ||
	    kr_buf_append(&b, t.data ? t.data : "", t.len) < 0)
		goto out;
	qlen = part->qp_len + kr_mime_qp_len(q.data ? q.data : "", q.len);
	blen = b64_len(part->canon_len + t.len);
	if (kr_buf_printf(out,
	                  "Content-Type: text/%s; charset=utf-8\r\n"
	                  "Content-Transfer-Encoding: %s\r\n\r\n",
	                  subtype,
	                  qlen <= blen ? "quoted-printable" : "base64") < 0)
		goto out;
	*qp_out = qlen <= blen;
	if (qlen <= blen) {
		if (kr_buf_append(out, part->qp ? part->qp : "", part->qp_len) <
		        0 ||
		    kr_mime_qp(out, q.data ? q.data : "", q.len) < 0)
			goto out;
	} else {
		if (kr_buf_append(out, part->b64 ? part->b64 : "",
		                  part->b64_len) < 0)
			goto out;
		if (part->b64_len > 0 && b.len > 0 &&
		    kr_buf_puts(out, "\r\n") < 0)
			goto out;
		if (kr_mime_base64(out, b.data ? b.data : "", b.len) < 0)
			goto out;
	}
	r = 0;
out:
	kr_buf_fini(&t);
	kr_buf_fini(&q);
	kr_buf_fini(&b);
	return r;
}

/* A text part in the message's charset; sets err on failure. */
static int
put_any(bool jis, struct kr_buf *out, const char *subtype,
        const struct kr_mime_part *part, const char *tail, size_t tail_len,
        bool *qp_out, struct kr_err *err)
{
	if (jis ? put_part_jis(out, subtype, part, tail, tail_len, qp_out)
	        : put_part(out, subtype, part, tail, tail_len, qp_out))
		return kr_err_set(err, KR_ERR_INVALID,
		                  jis ? "text/%s: a character ISO-2022-JP "
		                        "cannot carry"
		                      : "text/%s: message too large",
		                  subtype);
	return 0;
}

/* ---- header fields ---- */

/* Appends token (with its leading space) folding before it when the line
 * would pass the limit. */
static int
put_folded(struct kr_buf *out, size_t *col, const char *tok, size_t n)
{
	if (*col + n > LINE_MAX_COLS && *col > 1) {
		if (kr_buf_puts(out, "\r\n") < 0)
			return -1;
		*col = 0;
	}
	if (kr_buf_append(out, tok, n) < 0)
		return -1;
	*col += n;
	return 0;
}

int
kr_mime_encode_words(struct kr_buf *out, const char *s, size_t len, size_t *col,
                     struct kr_err *err)
{
	const unsigned char *p = (const unsigned char *)s;
	char word[EW_MAX + 2];
	size_t i = 0, avail, maxbytes, take, k;

	if (!kr_mime_utf8_valid(s, len))
		return kr_err_set(err, KR_ERR_INVALID, "not valid UTF-8");
	while (i < len) {
		/* room on this line for " " + a word of at least one
		 * 4-byte character (8 base64 chars) */
		avail = *col + 1 < LINE_MAX_COLS ? LINE_MAX_COLS - *col - 1 : 0;
		if (avail < EW_OVERHEAD + 8) {
			if (kr_buf_puts(out, "\r\n") < 0)
				goto full;
			*col = 0;
			avail = LINE_MAX_COLS - 1;
		}
		if (avail > EW_MAX)
			avail = EW_MAX;
		maxbytes = (avail - EW_OVERHEAD) / 4 * 3;
		take = 0;
		while (i + take < len) {
			k = utf8_seq(p + i + take, len - i - take);
			if (take + k > maxbytes)
				break;
			take += k;
		}
		memcpy(word, " =?UTF-8?B?", 11);
		b64_raw(word + 11, p + i, take);
		k = strlen(word);
		memcpy(word + k, "?=", 3);
		k += 2;
		if (kr_buf_append(out, word, k) < 0)
			goto full;
		*col += k;
		i += take;
	}
	return 0;
full:
	return kr_err_set(err, KR_ERR_INVALID, "message too large");
}

/* Writes ESC $ B (jis) or ESC ( B at pl[n]; returns the new length. */
static size_t
put_escape(unsigned char *pl, size_t n, bool jis)
{
	pl[n] = 0x1b;
	pl[n + 1] = jis ? '$' : '(';
	pl[n + 2] = 'B';
	return n + 3;
}

int
kr_mime_encode_words_jis(struct kr_buf *out, const char *s, size_t len,
                         size_t *col, struct kr_err *err)
{
	const unsigned char *p = (const unsigned char *)s;
	char b64[80];
	unsigned char pl[64];
	size_t i = 0, avail, maxbytes, k, n, cost;
	bool in_jis;
	unsigned code;

	if (!kr_mime_utf8_valid(s, len))
		return kr_err_set(err, KR_ERR_INVALID, "not valid UTF-8");
	while (i < len) {
		/* room for " " + a word holding at least one kanji:
		 * ESC $ B + 2 + ESC ( B = 8 octets, 12 base64 characters */
		avail = *col + 1 < LINE_MAX_COLS ? LINE_MAX_COLS - *col - 1 : 0;
		if (avail < EW_JIS_OVERHEAD + 12) {
			if (kr_buf_puts(out, "\r\n") < 0)
				goto full;
			*col = 0;
			avail = LINE_MAX_COLS - 1;
		}
		if (avail > EW_MAX)
			avail = EW_MAX;
		maxbytes = (avail - EW_JIS_OVERHEAD) / 4 * 3;
		n = 0;
		in_jis = false;
		while (i < len) {
			uint32_t cp = kr_jis_utf8(p + i, len - i, &k);

			if ((code = kr_jis_code(cp)) == 0 || cp < 0x20 ||
			    cp == 0x7f) {
				return kr_err_set(err, KR_ERR_INVALID,
				                  "U+%04X cannot be sent as "
				                  "ISO-2022-JP",
				                  (unsigned)cp);
			}
			cost = jis_cost(code, in_jis);
			/* every word ends in ASCII: keep room for ESC ( B */
			if (n + cost + (code >= 0x80 ? 3 : 0) > maxbytes)
				break;
			if (code < 0x80) {
				if (in_jis)
					n = put_escape(pl, n, false);
				pl[n++] = (unsigned char)code;
				in_jis = false;
			} else {
				if (!in_jis)
					n = put_escape(pl, n, true);
				pl[n++] = (unsigned char)(code >> 8);
				pl[n++] = (unsigned char)(code & 0xff);
				in_jis = true;
			}
			i += k;
		}
		if (in_jis)
			n = put_escape(pl, n, false);
		b64_raw(b64, pl, n);
		if (kr_buf_printf(out, " =?ISO-2022-JP?B?%s?=", b64) < 0)
			goto full;
		*col += strlen(b64) + EW_JIS_OVERHEAD + 1;
	}
	return 0;
full:
	return kr_err_set(err, KR_ERR_INVALID, "message too large");
}

/* Encoded words in the message's charset. */
static int
encode_words(struct kr_buf *out, const char *s, size_t len, size_t *col,
             bool jis, struct kr_err *err)
{
	return jis ? kr_mime_encode_words_jis(out, s, len, col, err)
	           : kr_mime_encode_words(out, s, len, col, err);
}

/* Printable ASCII that can go out as is: no "=?", no leading, trailing
 * or doubled space, and no word too long to fold. */
static bool
plain_ok(const char *v)
{
	size_t i, run = 0, n = strlen(v);

	if (n == 0)
		return true;
	if (v[0] == ' ' || v[n - 1] == ' ' || strstr(v, "=?") != NULL ||
	    strstr(v, "  ") != NULL)
		return false;
	for (i = 0; i < n; i++) {
		if ((unsigned char)v[i] < 0x20 || (unsigned char)v[i] > 0x7e)
			return false;
		run = v[i] == ' ' ? 0 : run + 1;
		if (run > 60)
			return false;
	}
	return true;
}

/* Appends v (plain_ok) folding at its spaces. */
static int
put_plain(struct kr_buf *out, size_t *col, const char *v)
{
	const char *p = v, *e;

	while (*p != '\0') {
		e = strchr(p + 1, ' ');
		if (e == NULL)
			e = p + strlen(p);
		if (p == v) {
			if (kr_buf_putc(out, ' ') < 0)
				return -1;
			(*col)++;
		}
		if (put_folded(out, col, p, (size_t)(e - p)) < 0)
			return -1;
		p = e;
	}
	return 0;
}

static int header_text(struct kr_buf *out, const char *name, const char *value,
                       bool jis, struct kr_err *err);

int
kr_mime_header_text(struct kr_buf *out, const char *name, const char *value,
                    struct kr_err *err)
{
	return header_text(out, name, value, false, err);
}

int
kr_mime_header_text_jis(struct kr_buf *out, const char *name, const char *value,
                        struct kr_err *err)
{
	return header_text(out, name, value, true, err);
}

static int
header_text(struct kr_buf *out, const char *name, const char *value, bool jis,
            struct kr_err *err)
{
	size_t col;

	if (check_value(name, value, err) < 0)
		return -1;
	if (kr_buf_printf(out, "%s:", name) < 0)
		goto full;
	col = strlen(name) + 1;
	if (plain_ok(value)) {
		if (put_plain(out, &col, value) < 0)
			goto full;
	} else if (encode_words(out, value, strlen(value), &col, jis, err) <
	           0) {
		kr_err_prefix(err, "%s", name);
		return -1;
	}
	if (kr_buf_puts(out, "\r\n") < 0)
		goto full;
	return 0;
full:
	return kr_err_set(err, KR_ERR_INVALID, "message too large");
}

static bool
is_atext(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') ||
	       strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* Appends a phrase (display name) starting at *col. */
static int
put_phrase(struct kr_buf *out, size_t *col, const char *d, bool jis,
           struct kr_err *err)
{
	size_t i, n = strlen(d);
	bool ascii = true, atoms = true;
	struct kr_buf q;
	int r = -1;

	kr_buf_init(&q, 0);
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)d[i];

		if (c > 0x7e)
			ascii = false;
		if (!is_atext(c) &&
		    !(c == ' ' && i > 0 && i + 1 < n && d[i + 1] != ' '))
			atoms = false;
	}
	if (ascii && strstr(d, "=?") != NULL)
		atoms = false;
	/* a long quoted string could not be folded: encoded words can */
	if (!ascii || (!(atoms && plain_ok(d)) && n > LINE_MAX_COLS - 12)) {
		r = encode_words(out, d, n, col, jis, err);
		goto out;
	}
	if (atoms && plain_ok(d)) {
		if (put_plain(out, col, d) < 0)
			goto full;
		r = 0;
		goto out;
	}
	/* a short quoted string, as one token */
	if (kr_buf_puts(&q, " \"") < 0)
		goto full;
	for (i = 0; i < n; i++) {
		if ((d[i] == '"' || d[i] == '\\') && kr_buf_putc(&q, '\\') < 0)
			goto full;
		if (kr_buf_putc(&q, d[i]) < 0)
			goto full;
	}
	if (kr_buf_putc(&q, '"') < 0 || put_folded(out, col, q.data, q.len) < 0)
		goto full;
	r = 0;
	goto out;
full:
	r = kr_err_set(err, KR_ERR_INVALID, "message too large");
out:
	kr_buf_fini(&q);
	return r;
}

static int
header_addr(struct kr_buf *out, const char *name, const char *display,
            const char *addr, bool jis, struct kr_err *err)
{
	size_t col;
	char *tok = NULL;
	int r = -1;

	if (check_addr(name, addr, err) < 0)
		return -1;
	if (display != NULL && check_value(name, display, err) < 0)
		return -1;
	if (kr_buf_printf(out, "%s:", name) < 0)
		goto full;
	col = strlen(name) + 1;
	if (display != NULL && display[0] != '\0') {
		if (put_phrase(out, &col, display, jis, err) < 0)
			goto out;
		tok = kr_xasprintf(" <%s>", addr);
	} else {
		tok = kr_xasprintf(" %s", addr);
	}
	if (put_folded(out, &col, tok, strlen(tok)) < 0 ||
	    kr_buf_puts(out, "\r\n") < 0)
		goto full;
	r = 0;
	goto out;
full:
	r = kr_err_set(err, KR_ERR_INVALID, "message too large");
out:
	free(tok);
	return r;
}

int
kr_mime_header_addr(struct kr_buf *out, const char *name, const char *display,
                    const char *addr, struct kr_err *err)
{
	return header_addr(out, name, display, addr, false, err);
}

/* ---- the message ---- */

static int
put_date(struct kr_buf *out, int64_t t, int off)
{
	static const char *const days[] = {"Sun", "Mon", "Tue", "Wed",
	                                   "Thu", "Fri", "Sat"};
	static const char *const months[] = {"Jan", "Feb", "Mar", "Apr",
	                                     "May", "Jun", "Jul", "Aug",
	                                     "Sep", "Oct", "Nov", "Dec"};
	time_t tt = (time_t)(t + off);
	struct tm tm;
	int a = off < 0 ? -off : off;

	if (off <= -86400 || off >= 86400 || gmtime_r(&tt, &tm) == NULL)
		return -1;
	/* RFC 5322 3.3: local date and time, then the zone as +HHMM */
	return kr_buf_printf(
	    out, "Date: %s, %d %s %04d %02d:%02d:%02d %c%02d%02d\r\n",
	    days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
	    tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec,
	    off < 0 ? '-' : '+', a / 3600, a / 60 % 60);
}

static void
hexify(char *d, const unsigned char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		d[2 * i] = "0123456789abcdef"[s[i] >> 4];
		d[2 * i + 1] = "0123456789abcdef"[s[i] & 15];
	}
	d[2 * n] = '\0';
}

/* An ASCII header value used as is (URLs, ids): printable, no spaces. */
static int
check_token(const char *what, const char *v, struct kr_err *err)
{
	const unsigned char *p;

	for (p = (const unsigned char *)v; *p != '\0'; p++)
		if (*p <= 0x20 || *p >= 0x7f || *p == '<' || *p == '>')
			return kr_err_set(
			    err, KR_ERR_INVALID,
			    "%s: control, space or non-ASCII character "
			    "refused in a header",
			    what);
	return 0;
}

int
kr_mime_compose(const struct kr_mime_msg *m, struct kr_buf *out,
                struct kr_err *err)
{
	unsigned char rnd[24];
	char id[49], *dom, *bnd = NULL, *tok = NULL;
	bool has_html, list_unsub, qp = false;
	size_t col;
	int r = -1;

	if (m->subject == NULL || m->subject[0] == '\0') {
		kr_err_set(err, KR_ERR_INVALID, "Subject: missing");
		goto out;
	}
	if (check_addr("From", m->from_addr, err) < 0 ||
	    check_addr("To", m->to_addr, err) < 0 ||
	    (m->reply_to && m->reply_to[0] &&
	     check_addr("Reply-To", m->reply_to, err) < 0) ||
	    (m->unsub_mailto && m->unsub_mailto[0] &&
	     check_addr("List-Unsubscribe", m->unsub_mailto, err) < 0) ||
	    (m->unsub_url &&
	     check_token("List-Unsubscribe", m->unsub_url, err) < 0) ||
	    (m->list_id && check_token("List-Id", m->list_id, err) < 0) ||
	    (m->feedback_id &&
	     check_token("Feedback-ID", m->feedback_id, err) < 0))
		goto out;
	dom = strrchr(m->from_addr, '@') + 1;
	randombytes_buf(rnd, sizeof(rnd));
	hexify(id, rnd, sizeof(rnd));
	bnd = kr_xasprintf("=_kr_%.24s", id + 24);
	has_html = m->html != NULL || m->html_tail != NULL;

	if (header_addr(out, "From", m->from_name, m->from_addr, m->iso2022jp,
	                err) < 0 ||
	    kr_mime_header_addr(out, "To", NULL, m->to_addr, err) < 0 ||
	    header_text(out, "Subject", m->subject, m->iso2022jp, err) < 0)
		goto out;
	if (m->message_id &&
	    (check_token("Message-ID", m->message_id, err) < 0 ||
	     strchr(m->message_id, '@') == NULL)) {
		kr_err_set(err, KR_ERR_INVALID, "Message-ID: not local@domain");
		goto out;
	}
	if (put_date(out, m->date, m->date_offset) < 0 ||
	    (m->message_id
	         ? kr_buf_printf(out, "Message-ID: <%s>\r\n", m->message_id)
	         : kr_buf_printf(out, "Message-ID: <%lld.%.24s@%s>\r\n",
	                         (long long)m->date, id, dom)) < 0)
		goto full;
	if (m->reply_to && m->reply_to[0] &&
	    kr_mime_header_addr(out, "Reply-To", NULL, m->reply_to, err) < 0)
		goto out;
	if (m->list_id) {
		if (kr_buf_puts(out, "List-Id:") < 0)
			goto full;
		col = 8;
		if (m->list_name && m->list_name[0]) {
			if (check_value("List-Id", m->list_name, err) < 0 ||
			    put_phrase(out, &col, m->list_name, m->iso2022jp,
			               err) < 0)
				goto out;
		}
		tok = kr_xasprintf(" <%s>", m->list_id);
		if (put_folded(out, &col, tok, strlen(tok)) < 0 ||
		    kr_buf_puts(out, "\r\n") < 0)
			goto full;
	}
	list_unsub = (m->unsub_url && m->unsub_url[0]) ||
	             (m->unsub_mailto && m->unsub_mailto[0]);
	if (list_unsub) {
		if (kr_buf_puts(out, "List-Unsubscribe:") < 0)
			goto full;
		if (m->unsub_url && m->unsub_url[0] &&
		    kr_buf_printf(out, " <%s>", m->unsub_url) < 0)
			goto full;
		if (m->unsub_mailto && m->unsub_mailto[0] &&
		    kr_buf_printf(out, "%s\r\n <mailto:%s>",
		                  m->unsub_url && m->unsub_url[0] ? "," : "",
		                  m->unsub_mailto) < 0)
			goto full;
		if (kr_buf_puts(out, "\r\n") < 0)
			goto full;
		if (m->one_click && m->unsub_url && m->unsub_url[0] &&
		    kr_buf_puts(out, "List-Unsubscribe-Post: "
		                     "List-Unsubscribe=One-Click\r\n") < 0)
			goto full;
	}
	if ((m->bulk && kr_buf_puts(out, "Precedence: bulk\r\n") < 0) ||
	    (m->auto_submitted &&
	     kr_buf_puts(out, "Auto-Submitted: auto-generated\r\n") < 0) ||
	    (m->feedback_id &&
	     kr_buf_printf(out, "Feedback-ID: %s\r\n", m->feedback_id) < 0) ||
	    kr_buf_puts(out, "MIME-Version: 1.0\r\n") < 0)
		goto full;
	if (!has_html) {
		if (put_any(m->iso2022jp, out, "plain", m->text, m->text_tail,
		            m->text_tail_len, &qp, err) < 0)
			goto out;
	} else {
		if (kr_buf_printf(out,
		                  "Content-Type: multipart/alternative;\r\n"
		                  " boundary=\"%s\"\r\n\r\n--%s\r\n",
		                  bnd, bnd) < 0)
			goto full;
		if (put_any(m->iso2022jp, out, "plain", m->text, m->text_tail,
		            m->text_tail_len, &qp, err) < 0)
			goto out;
		if (kr_buf_printf(out, "\r\n--%s\r\n", bnd) < 0)
			goto full;
		if (put_any(m->iso2022jp, out, "html", m->html, m->html_tail,
		            m->html_tail_len, &qp, err) < 0)
			goto out;
		if (kr_buf_printf(out, "\r\n--%s--\r\n", bnd) < 0)
			goto full;
	}
	/* a single part ends with CRLF like every line; after QP text that
	 * does not end in a line break, a soft break adds nothing to it */
	if (out->len < 2 || memcmp(out->data + out->len - 2, "\r\n", 2) != 0) {
		if (kr_buf_puts(out, qp ? "=\r\n" : "\r\n") < 0)
			goto full;
	}
	r = 0;
	goto out;
full:
	r = kr_err_set(err, KR_ERR_INVALID, "message too large");
out:
	free(bnd);
	free(tok);
	return r;
}
