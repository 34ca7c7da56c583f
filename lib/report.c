/* report.c — front matter (libyaml), Markdown (cmark), content hash
 * (libsodium), and the one queueing path behind every intake door. */
#include "report.h"

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmark.h>
#include <sodium.h>
#include <yaml.h>

#include "buf.h"
#include "config.h"
#include "err.h"
#include "jis.h"
#include "mime.h"
#include "store.h"
#include "xmem.h"

#define SUBJECT_MAX 1000 /* bytes; folded into encoded words anyway */
#define PREHEADER_MAX 1000

/* Line and column (1-based, columns in characters) of byte off. */
static void
position(const char *data, size_t off, size_t *line, size_t *col)
{
	size_t i;

	*line = 1;
	*col = 1;
	for (i = 0; i < off; i++) {
		if (data[i] == '\n') {
			(*line)++;
			*col = 1;
		} else if (((unsigned char)data[i] & 0xc0) != 0x80) {
			(*col)++;
		}
	}
}

/* Length of the line at p (up to end), without its LF or CRLF. */
static size_t
line_len(const char *p, const char *end)
{
	const char *e = memchr(p, '\n', (size_t)(end - p));
	size_t n = e ? (size_t)(e - p) : (size_t)(end - p);

	if (n > 0 && p[n - 1] == '\r')
		n--;
	return n;
}

/* A fence line: "---" (or "..." to close) with only blanks after. */
static bool
is_fence(const char *p, size_t n, bool closing)
{
	size_t i;

	if (n < 3 || (memcmp(p, "---", 3) != 0 &&
	              !(closing && memcmp(p, "...", 3) == 0)))
		return false;
	for (i = 3; i < n; i++)
		if (p[i] != ' ' && p[i] != '\t')
			return false;
	return true;
}

static int
two(const char *s)
{
	if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9')
		return -1;
	return (s[0] - '0') * 10 + (s[1] - '0');
}

/* YYYY-MM-DD into tm; returns the bytes read (10) or -1. */
static int
parse_date(const char *s, struct tm *tm)
{
	int y1, y2, mo, d;
	static const int mdays[] = {31, 29, 31, 30, 31, 30,
	                            31, 31, 30, 31, 30, 31};

	if (strlen(s) < 10 || s[4] != '-' || s[7] != '-')
		return -1;
	if ((y1 = two(s)) < 0 || (y2 = two(s + 2)) < 0 ||
	    (mo = two(s + 5)) < 1 || mo > 12 || (d = two(s + 8)) < 1 ||
	    d > mdays[mo - 1])
		return -1;
	memset(tm, 0, sizeof(*tm));
	tm->tm_year = y1 * 100 + y2 - 1900;
	tm->tm_mon = mo - 1;
	tm->tm_mday = d;
	return 10;
}

/* ISO 8601: YYYY-MM-DD[(T| )HH:MM[:SS[.fff]]][Z|(+|-)HH[:]MM]. Without an
 * offset the host's local time. Returns 0 or -1. */
static int
parse_iso8601(const char *s, int64_t *out)
{
	struct tm tm;
	const char *p;
	int off = 0, h, m, sign;
	bool zone = false;
	time_t t;

	if (parse_date(s, &tm) < 0)
		return -1;
	p = s + 10;
	if (*p == 'T' || *p == 't' || *p == ' ') {
		p++;
		if ((tm.tm_hour = two(p)) < 0 || tm.tm_hour > 23 ||
		    p[2] != ':' || (tm.tm_min = two(p + 3)) < 0 ||
		    tm.tm_min > 59)
			return -1;
		p += 5;
		if (*p == ':') {
			if ((tm.tm_sec = two(p + 1)) < 0 || tm.tm_sec > 60)
				return -1;
			p += 3;
			if (*p == '.' || *p == ',') {
				p++;
				while (*p >= '0' && *p <= '9')
					p++;
			}
		}
		if (*p == 'Z' || *p == 'z') {
			zone = true;
			p++;
		} else if (*p == '+' || *p == '-') {
			sign = *p == '-' ? -1 : 1;
			if ((h = two(p + 1)) < 0 || h > 23)
				return -1;
			p += 3;
			if (*p == ':')
				p++;
			if ((m = two(p)) < 0 || m > 59)
				return -1;
			p += 2;
			off = sign * (h * 3600 + m * 60);
			zone = true;
		}
	}
	if (*p != '\0')
		return -1;
	if (zone) {
		t = timegm(&tm);
		*out = (int64_t)t - off;
	} else {
		tm.tm_isdst = -1;
		t = mktime(&tm);
		if (t == (time_t)-1)
			return -1;
		*out = (int64_t)t;
	}
	return 0;
}

void
kr_report_free(struct kr_report **rp)
{
	struct kr_report *r;

	if (rp == NULL || (r = *rp) == NULL)
		return;
	free(r->subject);
	free(r->list_id);
	free(r->date);
	free(r->preheader);
	free(r->text);
	free(r->html);
	free(r);
	*rp = NULL;
}

/* ---- plain text ---- */

/* Appends to an unbounded buffer, which cannot fail (xmem aborts). */
static void
ub_append(struct kr_buf *b, const void *p, size_t n)
{
	if (kr_buf_append(b, p, n) < 0)
		abort();
}

/* The matching bracket or parenthesis of every opener one scan meets, so
 * that a text of 200,000 '[' costs one scan, not one per '[' (which took
 * 19.5 s). A scan from an opener at j reads what a scan from any opener
 * after j (at a character boundary) would read, up to where it stops, so
 * it answers for all of them. */
struct matches {
	char open, close;
	bool para;         /* '[': stops at a code span or a blank line;
	                      '(': stops at the end of the line */
	size_t lo, hi;     /* the last scan covered s[lo..hi) */
	size_t *pos, *end; /* openers met (ascending) and their match, 0 */
	size_t n, cap;
	size_t *stack, sn, scap;
};

static void
matches_fini(struct matches *m)
{
	free(m->pos);
	free(m->end);
	free(m->stack);
}

static void
grow(size_t **a, size_t *cap, size_t need)
{
	if (need <= *cap)
		return;
	*cap = *cap ? *cap * 2 : 64;
	if (*cap < need)
		*cap = need;
	*a = kr_xrealloc(*a, *cap * sizeof(**a));
}

/* Records an opener at i and pushes it. */
static void
m_push(struct matches *m, size_t i)
{
	size_t cap = m->cap;

	grow(&m->pos, &cap, m->n + 1);
	cap = m->cap;
	grow(&m->end, &cap, m->n + 1);
	m->cap = cap;
	m->pos[m->n] = i;
	m->end[m->n] = 0;
	grow(&m->stack, &m->scap, m->sn + 1);
	m->stack[m->sn++] = m->n++;
}

/* The scan of the old per-opener matchers, from the opener s[j]: a '\'
 * takes the next character with it; for '(' the line's end stops it, for
 * '[' a '`' or a blank line does. */
static void
m_scan(struct matches *m, const char *s, size_t j, size_t n)
{
	size_t i;

	m->n = m->sn = 0;
	m->lo = j;
	for (i = j; i < n; i++) {
		if (!m->para && s[i] == '\n')
			break;
		if (s[i] == '\\' && i + 1 < n) {
			i++;
		} else if (m->para &&
		           (s[i] == '`' ||
		            (s[i] == '\n' && i + 1 < n && s[i + 1] == '\n'))) {
			break;
		} else if (s[i] == m->open) {
			m_push(m, i);
		} else if (s[i] == m->close && m->sn > 0) {
			m->end[m->stack[--m->sn]] = i;
			if (m->sn == 0) {
				i++;
				break;
			}
		}
	}
	m->hi = i;
}

/* Index of the closer matching the opener at s[j], or 0 when none (for
 * '(' on the line; for '[' in the paragraph, before a code span). */
static size_t
match(struct matches *m, const char *s, size_t j, size_t n)
{
	size_t a, b, mid;

	if (m->n == 0 || j < m->lo || j >= m->hi)
		m_scan(m, s, j, n);
	a = 0;
	b = m->n;
	while (a < b) {
		mid = a + (b - a) / 2;
		if (m->pos[mid] < j)
			a = mid + 1;
		else
			b = mid;
	}
	if (a < m->n && m->pos[a] == j)
		return m->end[a];
	/* not at a character boundary of the last scan: a scan of its own */
	m_scan(m, s, j, n);
	return m->end[0];
}

/* Where each backtick run length was last seen, filled by one scan to the
 * end the first time a code span finds no closing run: after that an
 * opener whose length does not come again fails at once (runs of ever
 * longer backticks cost one scan, not one each). Distinct lengths in n
 * bytes are fewer than sqrt(2n). */
struct ticks {
	bool filled;
	size_t until;       /* it covers runs before this offset */
	size_t *len, *last; /* sorted by len */
	size_t n, cap;
};

static void
ticks_fill(struct ticks *t, const char *s, size_t from, size_t n)
{
	size_t k = from, r, a, b, mid, cap;

	t->filled = true;
	t->until = n;
	t->n = 0;
	while (k < n) {
		if (s[k] != '`') {
			k++;
			continue;
		}
		for (r = 0; k + r < n && s[k + r] == '`'; r++)
			;
		a = 0;
		b = t->n;
		while (a < b) {
			mid = a + (b - a) / 2;
			if (t->len[mid] < r)
				a = mid + 1;
			else
				b = mid;
		}
		if (a == t->n || t->len[a] != r) {
			cap = t->cap;
			grow(&t->len, &cap, t->n + 1);
			cap = t->cap;
			grow(&t->last, &cap, t->n + 1);
			t->cap = cap;
			memmove(t->len + a + 1, t->len + a,
			        (t->n - a) * sizeof(*t->len));
			memmove(t->last + a + 1, t->last + a,
			        (t->n - a) * sizeof(*t->last));
			t->len[a] = r;
			t->n++;
		}
		t->last[a] = k;
		k += r;
	}
}

/* false when no run of exactly r backticks starts after i. */
static bool
ticks_may_close(const struct ticks *t, size_t r, size_t i)
{
	size_t a = 0, b = t->n, mid;

	if (!t->filled || i >= t->until)
		return true;
	while (a < b) {
		mid = a + (b - a) / 2;
		if (t->len[mid] < r)
			a = mid + 1;
		else
			b = mid;
	}
	return a < t->n && t->len[a] == r && t->last[a] > i;
}

/* The state of a left-to-right reading of Markdown source. */
struct md {
	const char *s;
	size_t n;
	char fence; /* in a fenced code block: its character */
	size_t fence_len;
	bool bol;   /* at the start of a line */
	bool strip; /* code spans end with their line (see strip_comments) */
	size_t eol; /* end of the line of the last code span (strip) */
	struct ticks ticks;
};

/* Length of what stays verbatim at s[i]: a line of a fenced code block, a
 * line end, a backslash escape or a code span; 0 for anything else. */
static size_t
md_verbatim(struct md *m, size_t i)
{
	const char *s = m->s;
	size_t n = m->n, j, k, run, ll, lim;
	const char *nl;
	bool code;

	if (m->bol) {
		/* fenced code blocks are copied as they are */
		ll = line_len(s + i, s + n);
		j = 0;
		while (j < 3 && j < ll && s[i + j] == ' ')
			j++;
		code = m->fence != 0;
		if (j + 3 <= ll && (s[i + j] == '`' || s[i + j] == '~')) {
			run = 0;
			while (j + run < ll && s[i + j + run] == s[i + j])
				run++;
			if (run >= 3 && m->fence == 0) {
				m->fence = s[i + j];
				m->fence_len = run;
				code = true;
			} else if (run >= m->fence_len &&
			           m->fence == s[i + j]) {
				m->fence = 0;
			}
		}
		if (code) {
			k = i + ll;
			while (k < n && s[k] != '\n')
				k++;
			return k < n ? k + 1 - i : k - i;
		}
		m->bol = false;
	}
	if (s[i] == '\n') {
		m->bol = true;
		return 1;
	}
	if (s[i] == '\\' && i + 1 < n && s[i + 1] != '\n')
		return 2;
	if (s[i] != '`')
		return 0;
	/* a code span: copied up to its matching run */
	lim = n;
	if (m->strip) {
		if (m->eol < i || m->eol == 0) {
			nl = memchr(s + i, '\n', n - i);
			m->eol = nl ? (size_t)(nl - s) : n;
		}
		lim = m->eol;
	}
	run = 0;
	while (i + run < lim && s[i + run] == '`')
		run++;
	if (!ticks_may_close(&m->ticks, run, i))
		return run;
	for (k = i + run; k < lim; k++) {
		size_t r2 = 0;

		while (k + r2 < lim && s[k + r2] == '`')
			r2++;
		if (r2 == run)
			break;
		k += r2;
	}
	if (k < lim)
		return k + run - i;
	ticks_fill(&m->ticks, s, i + run, lim);
	return run;
}

static void
md_init(struct md *m, const char *s, size_t n)
{
	memset(m, 0, sizeof(*m));
	m->s = s;
	m->n = n;
	m->bol = true;
}

static void
md_fini(struct md *m)
{
	free(m->ticks.len);
	free(m->ticks.last);
}

/* Appends the link destination of "(…)" s[a..b) without a title. */
static void
put_dest(struct kr_buf *o, const char *s, size_t a, size_t b)
{
	size_t e;

	while (a < b && (s[a] == ' ' || s[a] == '\t'))
		a++;
	if (a < b && s[a] == '<') {
		e = a + 1;
		while (e < b && s[e] != '>')
			e++;
		ub_append(o, s + a + 1, e - a - 1);
		return;
	}
	e = a;
	while (e < b && s[e] != ' ' && s[e] != '\t')
		e++;
	ub_append(o, s + a, e - a);
}

/* End of the comment "<!--…" at s[i] (after its "-->", or "--!>", as
 * browsers read it: "<!-->" is one too), or 0 when it is not closed. */
static size_t
comment_end(const char *s, size_t i, size_t n)
{
	size_t k;

	for (k = i + 2; k + 2 < n; k++)
		if (s[k] == '-' && s[k + 1] == '-') {
			if (s[k + 2] == '>')
				return k + 3;
			if (k + 3 < n && s[k + 2] == '!' && s[k + 3] == '>')
				return k + 4;
		}
	return 0;
}

/* Appends s[0..n) to o without its HTML comments (as browsers end them),
 * but for those in fenced code and in code spans on one line: an author's
 * note must reach no subscriber, and the text part is the source while
 * cmark passes comments on to the HTML of an allow_html list (and shows
 * some it does not take for comments, "<!-- a -- b -->"). A code span here
 * ends with its line: cmark's can end earlier, where a block interrupts
 * the paragraph ("<!--" at a line's start does), and a comment kept then
 * would leak. A comment alone on its line takes the line with it. Returns
 * SIZE_MAX, or the offset of a "<!--" never closed (the rest is dropped). */
static size_t
strip_comments(const char *s, size_t n, struct kr_buf *o)
{
	struct md m;
	size_t i = 0, k, e, r = SIZE_MAX, bl;

	md_init(&m, s, n);
	m.strip = true;
	while (i < n) {
		if ((k = md_verbatim(&m, i)) > 0) {
			ub_append(o, s + i, k);
			i += k;
			continue;
		}
		if (s[i] != '<' || n - i < 4 || memcmp(s + i, "<!--", 4) != 0) {
			ub_append(o, s + i, 1);
			i++;
			continue;
		}
		if ((e = comment_end(s, i, n)) == 0) {
			r = i;
			break;
		}
		/* blanks before it on its line (in o) and after it */
		for (bl = o->len; bl > 0 && (o->data[bl - 1] == ' ' ||
		                             o->data[bl - 1] == '\t');
		     bl--)
			;
		for (k = e; k < n && (s[k] == ' ' || s[k] == '\t'); k++)
			;
		if ((bl == 0 || o->data[bl - 1] == '\n') &&
		    (k == n || s[k] == '\n' || s[k] == '\r')) {
			o->len = bl;
			k += k < n && s[k] == '\r' ? 1 : 0;
			k += k < n && s[k] == '\n' ? 1 : 0;
			m.bol = true;
			i = k;
		} else {
			/* "a <!-- x --> b" becomes "a b" */
			i = o->len > 0 && o->data[o->len - 1] == ' ' && e < n &&
			            s[e] == ' '
			        ? e + 1
			        : e;
		}
	}
	md_fini(&m);
	if (o->data != NULL)
		o->data[o->len] = '\0';
	return r;
}

/* The text form of s[0..n), which holds no comments. */
static char *
text_of(const char *s, size_t n)
{
	struct kr_buf o;
	struct md m;
	struct matches br = {.open = '[', .close = ']', .para = true};
	struct matches pa = {.open = '(', .close = ')', .para = false};
	size_t i = 0, j, k, close;

	kr_buf_init(&o, 0);
	ub_append(&o, "", 0);
	md_init(&m, s, n);
	while (i < n) {
		if ((k = md_verbatim(&m, i)) > 0) {
			ub_append(&o, s + i, k);
			i += k;
			continue;
		}
		j = s[i] == '!' && i + 1 < n && s[i + 1] == '[' ? i + 1 : i;
		if (s[j] == '[' && (close = match(&br, s, j, n)) != 0 &&
		    close + 1 < n && s[close + 1] == '(' &&
		    (k = match(&pa, s, close + 1, n)) != 0) {
			struct kr_buf dest;

			kr_buf_init(&dest, 0);
			put_dest(&dest, s, close + 2, k);
			ub_append(&o, s + j + 1, close - j - 1);
			if (dest.len > 0 &&
			    !(dest.len == close - j - 1 &&
			      memcmp(dest.data, s + j + 1, dest.len) == 0)) {
				ub_append(&o, " <", 2);
				ub_append(&o, dest.data, dest.len);
				ub_append(&o, ">", 1);
			}
			kr_buf_fini(&dest);
			i = k + 1;
			continue;
		}
		ub_append(&o, s + i, 1);
		i++;
	}
	md_fini(&m);
	matches_fini(&br);
	matches_fini(&pa);
	return kr_buf_steal(&o);
}

char *
kr_report_text(const char *s, size_t n)
{
	struct kr_buf c;
	char *t;

	kr_buf_init(&c, 0);
	ub_append(&c, "", 0);
	(void)strip_comments(s, n, &c);
	t = text_of(c.data, c.len);
	kr_buf_fini(&c);
	return t;
}

/* ---- HTML (cmark, within a memory budget) ---- */

/* cmark's tree costs some 200 bytes a node, and a node can be as little
 * as two bytes of source: 4 MiB of "*a* " or "a <!--" took 500-700 MB.
 * Its allocations go through md_mem, which counts them and, past
 * MD_MEM_MAX, jumps back to md_render; every block is on a list, so that
 * jump frees all of them. A real 4 MiB report needs about 20 MB. */
#define MD_MEM_MAX (64u * 1024 * 1024)

union md_blk {
	struct {
		union md_blk *prev, *next;
		size_t size;
	} h;
	max_align_t align;
};

struct md_arena {
	jmp_buf out;
	size_t used;
	union md_blk head;
};

static _Thread_local struct md_arena *md_cur;

/* What a block of size bytes costs: ours, the header and malloc's own. */
#define MD_COST(size) ((size) + sizeof(union md_blk) + 16)

static void
md_link(union md_blk *b, size_t size)
{
	union md_blk *head = &md_cur->head;

	b->h.size = MD_COST(size);
	b->h.prev = head;
	b->h.next = head->h.next;
	head->h.next->h.prev = b;
	head->h.next = b;
	md_cur->used += b->h.size;
}

static void
md_unlink(union md_blk *b)
{
	b->h.prev->h.next = b->h.next;
	b->h.next->h.prev = b->h.prev;
	md_cur->used -= b->h.size;
}

static void
md_budget(size_t size)
{
	if (size > MD_MEM_MAX || md_cur->used > MD_MEM_MAX - MD_COST(size))
		longjmp(md_cur->out, 1);
}

static void *
md_calloc(size_t nmemb, size_t size)
{
	union md_blk *b;

	if (size != 0 && nmemb > SIZE_MAX / 2 / size)
		longjmp(md_cur->out, 1);
	md_budget(nmemb * size);
	b = kr_xcalloc(1, sizeof(*b) + nmemb * size);
	md_link(b, nmemb * size);
	return b + 1;
}

static void *
md_realloc(void *p, size_t size)
{
	union md_blk *b;

	if (p == NULL)
		return md_calloc(1, size);
	b = (union md_blk *)p - 1;
	md_unlink(b);
	md_budget(size);
	if (size > SIZE_MAX - sizeof(*b)) /* md_budget keeps it far below */
		abort();
	b = kr_xrealloc(b, sizeof(*b) + size);
	md_link(b, size);
	return b + 1;
}

static void
md_free(void *p)
{
	union md_blk *b;

	if (p == NULL)
		return;
	b = (union md_blk *)p - 1;
	md_unlink(b);
	free(b);
}

static cmark_mem md_mem = {md_calloc, md_realloc, md_free};

/* Raw HTML nodes lose their comments too: the source keeps those in
 * code spans, which inside an HTML block are raw HTML to cmark. */
static void
drop_html_comments(cmark_node *doc)
{
	cmark_iter *it = cmark_iter_new(doc);
	cmark_event_type ev;
	cmark_node *node;
	struct kr_buf b;
	const char *lit;
	size_t i, e, n;

	kr_buf_init(&b, 0);
	while ((ev = cmark_iter_next(it)) != CMARK_EVENT_DONE) {
		node = cmark_iter_get_node(it);
		if (ev != CMARK_EVENT_ENTER ||
		    (cmark_node_get_type(node) != CMARK_NODE_HTML_BLOCK &&
		     cmark_node_get_type(node) != CMARK_NODE_HTML_INLINE) ||
		    (lit = cmark_node_get_literal(node)) == NULL ||
		    strstr(lit, "<!--") == NULL)
			continue;
		kr_buf_reset(&b);
		ub_append(&b, "", 0);
		n = strlen(lit);
		for (i = 0; i < n;) {
			if (n - i >= 4 && memcmp(lit + i, "<!--", 4) == 0) {
				e = comment_end(lit, i, n);
				i = e ? e : n;
			} else {
				ub_append(&b, lit + i, 1);
				i++;
			}
		}
		(void)cmark_node_set_literal(node, b.data);
	}
	cmark_iter_free(it);
	kr_buf_fini(&b);
}

/* Renders Markdown s[0..n) to HTML (options for cmark). Returns 0 and
 * *html_out (caller frees), or -1 when cmark would need more than
 * MD_MEM_MAX. */
static int
md_render(const char *s, size_t n, int options, char **html_out)
{
	struct md_arena a;
	union md_blk *b, *next;
	cmark_parser *parser;
	cmark_node *doc;
	char *html;
	int r = -1;

	*html_out = NULL;
	memset(&a, 0, sizeof(a));
	a.head.h.prev = a.head.h.next = &a.head;
	md_cur = &a;
	if (setjmp(a.out) == 0) {
		parser = cmark_parser_new_with_mem(options, &md_mem);
		cmark_parser_feed(parser, s, n);
		doc = cmark_parser_finish(parser);
		drop_html_comments(doc);
		html = cmark_render_html(doc, options);
		*html_out = kr_xstrdup(html);
		md_free(html);
		cmark_node_free(doc);
		cmark_parser_free(parser);
		r = 0;
	}
	/* after a jump, cmark's blocks; else none (all freed above) */
	for (b = a.head.h.next; b != &a.head; b = next) {
		next = b->h.next;
		free(b);
	}
	md_cur = NULL;
	return r;
}

/* ---- front matter ---- */

struct fm {
	const char *name;
	const char *data;
	char *subject, *list, *date, *send_at_s, *preheader;
	size_t subject_line, subject_col, list_line, list_col;
	size_t send_line, send_col;
};

static int
fm_error(struct kr_err *err, const char *name, size_t line, size_t col,
         const char *msg, const char *arg)
{
	return kr_err_set(err, KR_ERR_INVALID, "%s:%zu:%zu: %s%s", name, line,
	                  col, msg, arg ? arg : "");
}

/* Reads the YAML mapping fm_src (which starts on file line first_line). */
static int
parse_front(struct fm *f, const char *src, size_t len, size_t first_line,
            struct kr_err *err)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	yaml_node_t *root, *k, *v;
	yaml_node_pair_t *pair;
	size_t deep_line, deep_col;
	bool parser_ok = false, doc_ok = false;
	int r = -1;

	/* Before libyaml builds a document: its scanner is quadratic in the
	 * depth of flow collections. */
	if (kr_config_yaml_too_deep(src, len, &deep_line, &deep_col)) {
		kr_err_set(err, KR_ERR_INVALID,
		           "%s:%zu:%zu: front matter: nesting deeper than %d "
		           "levels, expected at most %d nested lists and "
		           "mappings",
		           f->name, deep_line + first_line, deep_col + 1,
		           KR_CONFIG_YAML_DEPTH, KR_CONFIG_YAML_DEPTH);
		goto out;
	}
	if (!yaml_parser_initialize(&parser)) {
		kr_err_set(err, KR_ERR_INVALID, "%s: yaml parser", f->name);
		goto out;
	}
	parser_ok = true;
	yaml_parser_set_input_string(&parser, (const unsigned char *)src, len);
	if (!yaml_parser_load(&parser, &doc)) {
		fm_error(err, f->name, parser.problem_mark.line + first_line,
		         parser.problem_mark.column + 1, "front matter: ",
		         parser.problem ? parser.problem : "YAML error");
		goto out;
	}
	doc_ok = true;
	root = yaml_document_get_root_node(&doc);
	if (root == NULL || root->type != YAML_MAPPING_NODE) {
		fm_error(err, f->name, first_line, 1,
		         "front matter: expected a mapping with at least "
		         "'subject: …'",
		         NULL);
		goto out;
	}
	for (pair = root->data.mapping.pairs.start;
	     pair < root->data.mapping.pairs.top; pair++) {
		char **slot = NULL;
		const char *key;
		size_t line, col;

		k = yaml_document_get_node(&doc, pair->key);
		v = yaml_document_get_node(&doc, pair->value);
		if (k == NULL || v == NULL)
			continue;
		line = k->start_mark.line + first_line;
		col = k->start_mark.column + 1;
		if (k->type != YAML_SCALAR_NODE) {
			fm_error(err, f->name, line, col,
			         "front matter: expected a key", NULL);
			goto out;
		}
		key = (const char *)k->data.scalar.value;
		if (strcmp(key, "subject") == 0) {
			slot = &f->subject;
			f->subject_line = v->start_mark.line + first_line;
			f->subject_col = v->start_mark.column + 1;
		} else if (strcmp(key, "list") == 0) {
			slot = &f->list;
			f->list_line = v->start_mark.line + first_line;
			f->list_col = v->start_mark.column + 1;
		} else if (strcmp(key, "date") == 0) {
			slot = &f->date;
		} else if (strcmp(key, "send_at") == 0) {
			slot = &f->send_at_s;
			f->send_line = v->start_mark.line + first_line;
			f->send_col = v->start_mark.column + 1;
		} else if (strcmp(key, "preheader") == 0) {
			slot = &f->preheader;
		} else {
			fm_error(err, f->name, line, col,
			         "unknown key, expected subject, list, date, "
			         "send_at or preheader: ",
			         key);
			goto out;
		}
		if (*slot != NULL) {
			fm_error(err, f->name, line, col,
			         "duplicate key: ", key);
			goto out;
		}
		if (v->type != YAML_SCALAR_NODE) {
			fm_error(err, f->name, v->start_mark.line + first_line,
			         v->start_mark.column + 1,
			         "expected a single value (text) for ", key);
			goto out;
		}
		if (strlen((const char *)v->data.scalar.value) !=
		    v->data.scalar.length) {
			fm_error(err, f->name, v->start_mark.line + first_line,
			         v->start_mark.column + 1, "NUL character in ",
			         key);
			goto out;
		}
		*slot = kr_xstrdup((const char *)v->data.scalar.value);
		if (strcmp(key, "date") == 0) {
			struct tm tm;

			if (parse_date(*slot, &tm) != 10 ||
			    (*slot)[10] != '\0') {
				fm_error(err, f->name,
				         v->start_mark.line + first_line,
				         v->start_mark.column + 1,
				         "date: expected YYYY-MM-DD, got ",
				         *slot);
				goto out;
			}
		}
		if (strcmp(key, "preheader") == 0 &&
		    (kr_mime_has_ctl(*slot) || strlen(*slot) > PREHEADER_MAX)) {
			fm_error(
			    err, f->name, v->start_mark.line + first_line,
			    v->start_mark.column + 1,
			    "preheader: expected one line of text (no control "
			    "characters, NEL or U+2028/U+2029, at most 1000 "
			    "bytes)",
			    NULL);
			goto out;
		}
	}
	r = 0;
out:
	if (doc_ok)
		yaml_document_delete(&doc);
	if (parser_ok)
		yaml_parser_delete(&parser);
	return r;
}

int
kr_report_parse(const struct kr_config *cfg, const char *name, const char *data,
                size_t len, struct kr_report **rep_out, struct kr_err *err)
{
	struct fm f = {0};
	struct kr_report *rep = NULL;
	const struct kr_cfg_list *list = NULL;
	const char *p, *end, *fm_start, *body;
	size_t n, line = 1, i, l, c;
	unsigned char digest[crypto_hash_sha256_BYTES];
	struct kr_buf md; /* the body without its comments */
	int r = -1;

	*rep_out = NULL;
	kr_buf_init(&md, 0);
	f.name = name;
	f.data = data;
	if (len > KR_REPORT_MAX) {
		kr_err_set(err, KR_ERR_INVALID,
		           "%s: report too large (%zu bytes, at most %u)", name,
		           len, KR_REPORT_MAX);
		goto out;
	}
	for (i = 0; i < len; i++)
		if (data[i] == '\0') {
			position(data, i, &l, &c);
			fm_error(err, name, l, c, "NUL byte in the report",
			         NULL);
			goto out;
		}
	for (i = 0; i < len;) {
		size_t k;

		if ((unsigned char)data[i] < 0x80) {
			i++;
			continue;
		}
		for (k = 2; k <= 4 && i + k <= len; k++)
			if (kr_mime_utf8_valid(data + i, k))
				break;
		if (k > 4 || i + k > len) {
			position(data, i, &l, &c);
			fm_error(err, name, l, c, "not valid UTF-8", NULL);
			goto out;
		}
		i += k;
	}
	p = data;
	end = data + len;
	if (len >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0)
		p += 3;
	n = line_len(p, end);
	if (!is_fence(p, n, false)) {
		fm_error(err, name, 1, 1,
		         "expected front matter: a first line '---', then "
		         "'subject: …', then '---'",
		         NULL);
		goto out;
	}
	p += n;
	p += p < end && *p == '\r' ? 1 : 0;
	p += p < end && *p == '\n' ? 1 : 0;
	fm_start = p;
	line = 2;
	for (;;) {
		if (p >= end) {
			fm_error(
			    err, name, line, 1,
			    "front matter not closed: expected a line '---'",
			    NULL);
			goto out;
		}
		n = line_len(p, end);
		if (is_fence(p, n, true))
			break;
		p += n;
		p += p < end && *p == '\r' ? 1 : 0;
		p += p < end && *p == '\n' ? 1 : 0;
		line++;
	}
	/* libyaml reads a raw NEL, U+2028 or U+2029 as a line break: in a
	 * value it would slip past the checks below as a fold, and every
	 * position after it would be off by a line. */
	for (i = (size_t)(fm_start - data); i + 1 < (size_t)(p - data); i++)
		if ((data[i] == '\xc2' && data[i + 1] == '\x85') ||
		    (data[i] == '\xe2' && data[i + 1] == '\x80' &&
		     (data[i + 2] == '\xa8' || data[i + 2] == '\xa9'))) {
			position(data, i, &l, &c);
			fm_error(err, name, l, c,
			         "front matter: a NEL, U+2028 or U+2029 "
			         "(taken for a line break), expected one line "
			         "per key",
			         NULL);
			goto out;
		}
	if (parse_front(&f, fm_start, (size_t)(p - fm_start), 2, err) < 0)
		goto out;
	body = p + n;
	body += body < end && *body == '\r' ? 1 : 0;
	body += body < end && *body == '\n' ? 1 : 0;

	if (f.subject == NULL) {
		fm_error(err, name, 2, 1, "subject: missing (required)", NULL);
		goto out;
	}
	if (f.subject[strspn(f.subject, " \t")] == '\0' ||
	    kr_mime_has_ctl(f.subject) || strlen(f.subject) > SUBJECT_MAX) {
		fm_error(
		    err, name, f.subject_line, f.subject_col,
		    "subject: expected one non-empty line of text (no CR, LF, "
		    "NEL, U+2028/U+2029 or other control characters, at most "
		    "1000 bytes)",
		    NULL);
		goto out;
	}
	if (f.list != NULL) {
		for (i = 0; i < cfg->n_lists; i++)
			if (strcmp(cfg->lists[i].id, f.list) == 0)
				list = &cfg->lists[i];
		if (list == NULL) {
			fm_error(err, name, f.list_line, f.list_col,
			         "list: no such list in the config: ", f.list);
			goto out;
		}
	} else if (cfg->n_lists == 1) {
		list = &cfg->lists[0];
	} else {
		kr_err_set(
		    err, KR_ERR_INVALID,
		    "%s:2:1: list: missing; the config has several lists, "
		    "say which one (e.g. 'list: %s')",
		    name, cfg->n_lists > 0 ? cfg->lists[0].id : "id");
		goto out;
	}
	rep = kr_xcalloc(1, sizeof(*rep));
	if (f.send_at_s != NULL &&
	    parse_iso8601(f.send_at_s, &rep->send_at) < 0) {
		fm_error(err, name, f.send_line, f.send_col,
		         "send_at: expected ISO 8601 like "
		         "2026-11-26T09:00:00+09:00, "
		         "got ",
		         f.send_at_s);
		goto out;
	}
	for (p = body;
	     p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r');
	     p++)
		;
	if (p == end) {
		position(data, (size_t)(body - data), &l, &c);
		fm_error(
		    err, name, l, 1,
		    "the report body is empty: expected Markdown after the "
		    "front matter",
		    NULL);
		goto out;
	}
	rep->subject = f.subject;
	f.subject = NULL;
	rep->list_id = kr_xstrdup(list->id);
	rep->date = f.date ? f.date : kr_xstrdup("");
	f.date = NULL;
	rep->preheader = f.preheader ? f.preheader : kr_xstrdup("");
	f.preheader = NULL;
	ub_append(&md, "", 0);
	if ((i = strip_comments(body, (size_t)(end - body), &md)) != SIZE_MAX) {
		position(data, (size_t)(body - data) + i, &l, &c);
		fm_error(err, name, l, c,
		         "an HTML comment '<!--' is not closed, expected '-->' "
		         "(comments are dropped from every part; write \\<!-- "
		         "for the characters)",
		         NULL);
		goto out;
	}
	if (md_render(
	        md.data, md.len,
	        CMARK_OPT_VALIDATE_UTF8 |
	            (list->allow_html ? CMARK_OPT_UNSAFE : CMARK_OPT_SAFE),
	        &rep->html) < 0) {
		position(data, (size_t)(body - data), &l, &c);
		kr_err_set(err, KR_ERR_INVALID,
		           "%s:%zu:1: the Markdown body would take more than "
		           "%u MiB to render, expected a smaller or plainer "
		           "report (this many links, emphasis marks, entities "
		           "or '<' cost memory)",
		           name, l, MD_MEM_MAX / 1024 / 1024);
		goto out;
	}
	rep->text = text_of(md.data, md.len);
	crypto_hash_sha256(digest, (const unsigned char *)data, len);
	sodium_bin2hex(rep->hash, sizeof(rep->hash), digest, sizeof(digest));
	*rep_out = rep;
	rep = NULL;
	r = 0;
out:
	kr_buf_fini(&md);
	kr_report_free(&rep);
	free(f.subject);
	free(f.list);
	free(f.date);
	free(f.send_at_s);
	free(f.preheader);
	return r;
}

/* An iso-2022-jp list with unrepresentable: refuse takes no report holding
 * a character ISO-2022-JP cannot carry. err names the first (FILE:LINE:
 * COLUMN) and how many there are; kairanctl lint lists them all. */
static int
refuse_unsendable(const struct kr_config *cfg, const struct kr_report *rep,
                  const char *name, const char *data, size_t len,
                  struct kr_err *err)
{
	const struct kr_cfg_list *list = kr_config_list(cfg, rep->list_id);
	struct kr_buf b;
	size_t n;
	char *nl;
	int r = 0;

	if (list == NULL || list->charset != KR_CFG_CHARSET_ISO2022JP ||
	    list->unrepresentable != KR_CFG_UNREP_REFUSE)
		return 0;
	kr_buf_init(&b, 0);
	if ((n = kr_jis_lint(name, data, len, &b, NULL)) > 0) {
		if ((nl = strchr(b.data, '\n')) != NULL)
			*nl = '\0';
		if (n == 1)
			r = kr_err_set(err, KR_ERR_INVALID, "%s", b.data);
		else
			r = kr_err_set(err, KR_ERR_INVALID,
			               "%s; and %zu more (kairanctl lint lists "
			               "every one)",
			               b.data, n - 1);
	}
	kr_buf_fini(&b);
	return r;
}

int
kr_report_queue(struct kr_store *store, const struct kr_config *cfg,
                const char *name, const char *data, size_t len, bool again,
                int64_t *id_out, int64_t *queued_out, struct kr_err *err)
{
	struct kr_report *rep = NULL;
	struct kr_report_row row;
	int r = -1;

	if (kr_report_parse(cfg, name, data, len, &rep, err) < 0 ||
	    refuse_unsendable(cfg, rep, name, data, len, err) < 0)
		goto out;
	memset(&row, 0, sizeof(row));
	snprintf(row.list_id, sizeof(row.list_id), "%s", rep->list_id);
	row.subject = rep->subject;
	row.preheader = rep->preheader;
	row.text = rep->text;
	row.html = rep->html;
	row.source = (char *)(uintptr_t)name;
	memcpy(row.hash, rep->hash, sizeof(row.hash));
	row.send_at = rep->send_at;
	row.date = rep->date;
	if (kr_store_report_add(store, &row, again, (int64_t)time(NULL), id_out,
	                        queued_out, err) < 0) {
		if (err != NULL && err->code == KR_ERR_EXISTS)
			kr_err_set(
			    err, KR_ERR_EXISTS,
			    "%s: this report (same content, sha256 %.12s…) was "
			    "queued before; use --again to send it again",
			    name, rep->hash);
		goto out;
	}
	r = 0;
out:
	kr_report_free(&rep);
	return r;
}
