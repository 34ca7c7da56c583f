/* smtp_sync.c — which SMTP reply answers which command; see smtp_sync.h.
 *
 * A reply is checked as soon as its code is known (its first three
 * octets), against the oldest command still waiting: so a reply that
 * answers nothing is refused before any of it reaches the SMTP library,
 * and the replies before it in the same read stay usable. */
#include "smtp_sync.h"

#include <stdio.h>
#include <string.h>

enum { W_LINE, W_CONTENT, W_BDAT };

void
kr_smtp_sync_init(struct kr_smtp_sync *y)
{
	memset(y, 0, sizeof(*y));
	y->wmode = W_LINE;
	y->rfirst = true;
	y->q[0] = KR_SA_GREETING;
	y->n = 1;
}

unsigned
kr_smtp_sync_waiting(const struct kr_smtp_sync *y)
{
	return y->n;
}

enum kr_smtp_await
kr_smtp_sync_awaits(const struct kr_smtp_sync *y, unsigned i)
{
	return (enum kr_smtp_await)y->q[(y->head + i) % KR_SMTP_SYNC_MAXQ];
}

static void
broken(struct kr_smtp_sync *y, const char *why)
{
	if (y->broken)
		return;
	y->broken = true;
	snprintf(y->why, sizeof(y->why), "%s", why);
}

static void
push(struct kr_smtp_sync *y, enum kr_smtp_await a)
{
	if (y->n >= KR_SMTP_SYNC_MAXQ) {
		broken(y, "more commands waiting for replies than allowed");
		return;
	}
	y->q[(y->head + y->n) % KR_SMTP_SYNC_MAXQ] = (unsigned char)a;
	y->n++;
}

/* Case-insensitive: line starts with the upper-case word w. */
static bool
starts(const char *line, size_t len, const char *w)
{
	size_t i, k = strlen(w);

	if (len < k)
		return false;
	for (i = 0; i < k; i++) {
		char c = line[i];

		if (c >= 'a' && c <= 'z')
			c = (char)(c - 'a' + 'A');
		if (c != w[i])
			return false;
	}
	return true;
}

/* A whole command line was written (wline holds its start). */
static void
line_done(struct kr_smtp_sync *y)
{
	const char *l = y->wline;
	size_t len = y->wlen, i;
	uint64_t v = 0;
	enum kr_smtp_await bdat = KR_SA_BDAT;

	while (len > 0 && (l[len - 1] == '\r' || l[len - 1] == '\n'))
		len--;
	if (y->auth_cont) {
		y->auth_cont = false;
		push(y, KR_SA_AUTH);
	} else if (len == 4 && starts(l, len, "DATA")) {
		push(y, KR_SA_DATA);
	} else if (starts(l, len, "BDAT ")) {
		for (i = 5; i < len && l[i] >= '0' && l[i] <= '9' &&
		            v < UINT64_MAX / 10 - 9;
		     i++)
			v = v * 10 + (uint64_t)(l[i] - '0');
		if (len - i == 5 && starts(l + i, 5, " LAST"))
			bdat = KR_SA_BDAT_LAST;
		/* answered once its octets are all written */
		y->bdat_last = bdat == KR_SA_BDAT_LAST;
		if (v > 0) {
			y->wmode = W_BDAT;
			y->bdat_left = v;
		} else {
			push(y, bdat);
		}
	} else if (starts(l, len, "AUTH ")) {
		push(y, KR_SA_AUTH);
	} else {
		push(y, KR_SA_COMMAND);
	}
	y->wlen = 0;
}

/* The offset just after the first CRLF "." CRLF wholly inside b[i..n),
 * or 0. It is found by its dot (memchr: dots are rare in a body and never
 * in base64); a byte loop per line cost ~10 us per 29 KB message. */
static size_t
eod_after(const char *b, size_t i, size_t n)
{
	const char *p = b + i + 2, *end = b + n - 2, *d;

	if (n < i + 5)
		return 0;
	while (p < end && (d = memchr(p, '.', (size_t)(end - p))) != NULL) {
		if (d[-2] == '\r' && d[-1] == '\n' && d[1] == '\r' &&
		    d[2] == '\n')
			return (size_t)(d - b) + 3;
		p = d + 1;
	}
	return 0;
}

void
kr_smtp_sync_wrote(struct kr_smtp_sync *y, const char *b, size_t n)
{
	size_t i = 0, k;
	char c;

	while (i < n && !y->broken) {
		if (y->wmode == W_BDAT) {
			k = n - i;
			if ((uint64_t)k > y->bdat_left)
				k = (size_t)y->bdat_left;
			y->bdat_left -= k;
			i += k;
			if (y->bdat_left == 0) {
				y->wmode = W_LINE;
				push(y, y->bdat_last ? KR_SA_BDAT_LAST
				                     : KR_SA_BDAT);
			}
			continue;
		}
		if (y->wmode == W_CONTENT && y->dot == 0) {
			/* No part of the end of data is pending, so all of it
			 * lies at i or later. */
			size_t e = eod_after(b, i, n);

			if (e != 0) {
				i = e;
				y->wmode = W_LINE;
				push(y, KR_SA_DOT);
				continue;
			}
			/* Not here whole: only its start can be, in the last
			 * four octets; they set dot below, from 0. */
			if (n - i > 4)
				i = n - 4;
		}
		c = b[i++];
		if (y->wmode == W_CONTENT) {
			/* CRLF "." CRLF; the content starts at a line's
			 * start (dot == 2) */
			switch (y->dot) {
			case 2:
				y->dot = c == '.' ? 3 : c == '\r' ? 1 : 0;
				break;
			case 3:
				y->dot = c == '\r' ? 4 : 0;
				break;
			case 4:
				if (c == '\n') {
					y->wmode = W_LINE;
					y->dot = 0;
					push(y, KR_SA_DOT);
				} else {
					y->dot = c == '\r' ? 1 : 0;
				}
				break;
			case 1:
				y->dot = c == '\n' ? 2 : c == '\r' ? 1 : 0;
				break;
			default:
				y->dot = c == '\r' ? 1 : 0;
				break;
			}
			continue;
		}
		if (y->wlen < sizeof(y->wline))
			y->wline[y->wlen++] = c;
		if (c == '\n')
			line_done(y);
	}
}

/* The first line of a reply gave its code: does it answer the oldest
 * command waiting, and fit it? */
static void
check_start(struct kr_smtp_sync *y)
{
	char c = y->lcode[0];
	enum kr_smtp_await a;

	if (y->n == 0) {
		/* RFC 5321 §3.8: a server may say 421 and close at any
		 * time; that is never taken for a success. */
		if (memcmp(y->lcode, "421", 3) != 0)
			broken(y, "a reply that answers no command sent");
		return;
	}
	a = (enum kr_smtp_await)y->q[y->head];
	if (c == '3' && a != KR_SA_DATA && a != KR_SA_AUTH)
		broken(y, "a 3xx reply to a command that takes none");
	else if (c == '2' && a == KR_SA_DATA)
		broken(y, "a 2xx reply to DATA (its go-ahead is 354): "
		          "the content was never sent");
}

/* A reply's last line ended. */
static void
reply_done(struct kr_smtp_sync *y)
{
	enum kr_smtp_await a;

	y->rfirst = true;
	if (y->n == 0) /* an unsolicited 421 */
		return;
	a = (enum kr_smtp_await)y->q[y->head];
	y->head = (y->head + 1) % KR_SMTP_SYNC_MAXQ;
	y->n--;
	y->replies++;
	if (y->rcode[0] != '3')
		return;
	if (a == KR_SA_DATA) {
		y->wmode = W_CONTENT;
		y->dot = 2;
	} else if (a == KR_SA_AUTH) {
		y->auth_cont = true;
	}
}

size_t
kr_smtp_sync_read(struct kr_smtp_sync *y, const char *b, size_t n)
{
	size_t i;
	size_t start = 0; /* where the reply being read began here */
	bool here = !(y->rcol > 0 || !y->rfirst);
	char c;

	if (y->broken)
		return 0;
	for (i = 0; i < n; i++) {
		c = b[i];
		if (y->rcol == 0 && y->rfirst) {
			start = i;
			here = true;
		}
		if (y->rcol < 3) {
			if (c < '0' || c > (y->rcol == 0 ? '5' : y->rcol == 1 ? '5' : '9') ||
			    (y->rcol == 0 && c < '2')) {
				broken(y, "a malformed reply line");
				break;
			}
			y->lcode[y->rcol] = c;
		} else if (y->rcol == 3) {
			if (c != ' ' && c != '-' && c != '\r' && c != '\n') {
				broken(y, "a malformed reply line");
				break;
			}
			y->rsep = c;
		}
		if (y->rcol == 2) {
			if (y->rfirst) {
				memcpy(y->rcode, y->lcode, 3);
				check_start(y);
				if (y->broken)
					break;
			} else if (memcmp(y->rcode, y->lcode, 3) != 0) {
				broken(y, "a reply whose lines carry different "
				          "codes");
				break;
			}
		}
		if (c == '\n') {
			bool last;

			if (y->rcol < 3) {
				broken(y, "a malformed reply line");
				break;
			}
			last = y->rsep != '-';
			y->rcol = 0;
			y->rfirst = false;
			if (last)
				reply_done(y);
			continue;
		}
		if (++y->rcol > KR_SMTP_SYNC_MAXLINE) {
			broken(y, "a reply line over 2048 octets");
			break;
		}
	}
	if (!y->broken)
		return n;
	return here ? start : 0;
}
