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
#include "xmem.h"

#define LINE_MAX_COLS 76 /* header and body lines, without CRLF */
#define EW_MAX 75        /* RFC 2047: an encoded word's length */
#define EW_OVERHEAD 12   /* "=?UTF-8?B?" + "?=" */
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

int
kr_mime_header_text(struct kr_buf *out, const char *name, const char *value,
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
	} else if (kr_mime_encode_words(out, value, strlen(value), &col, err) <
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
put_phrase(struct kr_buf *out, size_t *col, const char *d, struct kr_err *err)
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
		r = kr_mime_encode_words(out, d, n, col, err);
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

int
kr_mime_header_addr(struct kr_buf *out, const char *name, const char *display,
                    const char *addr, struct kr_err *err)
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
		if (put_phrase(out, &col, display, err) < 0)
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

/* ---- the message ---- */

static int
put_date(struct kr_buf *out, int64_t t)
{
	static const char *const days[] = {"Sun", "Mon", "Tue", "Wed",
	                                   "Thu", "Fri", "Sat"};
	static const char *const months[] = {"Jan", "Feb", "Mar", "Apr",
	                                     "May", "Jun", "Jul", "Aug",
	                                     "Sep", "Oct", "Nov", "Dec"};
	time_t tt = (time_t)t;
	struct tm tm;

	if (gmtime_r(&tt, &tm) == NULL)
		return -1;
	return kr_buf_printf(
	    out, "Date: %s, %d %s %04d %02d:%02d:%02d +0000\r\n",
	    days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
	    tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
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

	if (kr_mime_header_addr(out, "From", m->from_name, m->from_addr, err) <
	        0 ||
	    kr_mime_header_addr(out, "To", NULL, m->to_addr, err) < 0 ||
	    kr_mime_header_text(out, "Subject", m->subject, err) < 0)
		goto out;
	if (put_date(out, m->date) < 0 ||
	    kr_buf_printf(out, "Message-ID: <%lld.%.24s@%s>\r\n",
	                  (long long)m->date, id, dom) < 0)
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
			    put_phrase(out, &col, m->list_name, err) < 0)
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
		if (put_part(out, "plain", m->text, m->text_tail,
		             m->text_tail_len, &qp) < 0)
			goto full;
	} else {
		if (kr_buf_printf(out,
		                  "Content-Type: multipart/alternative;\r\n"
		                  " boundary=\"%s\"\r\n\r\n--%s\r\n",
		                  bnd, bnd) < 0 ||
		    put_part(out, "plain", m->text, m->text_tail,
		             m->text_tail_len, &qp) < 0 ||
		    kr_buf_printf(out, "\r\n--%s\r\n", bnd) < 0 ||
		    put_part(out, "html", m->html, m->html_tail,
		             m->html_tail_len, &qp) < 0 ||
		    kr_buf_printf(out, "\r\n--%s--\r\n", bnd) < 0)
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
