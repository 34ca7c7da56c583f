/* csv.c — RFC 4180 reading one character at a time from a FILE, so a
 * million-row import never holds more than one record. */
#include "csv.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "err.h"
#include "xmem.h"

struct kr_csv {
	FILE *f;
	struct kr_buf buf;                 /* fields, each NUL-terminated */
	size_t off[KR_CSV_FIELDS_MAX + 1]; /* start of field i in buf */
	size_t n;                          /* fields in the record */
	size_t line;                       /* line of the next character */
	size_t rec_line;                   /* line the record started on */
	int pb[4];                         /* pushed-back characters */
	int npb;
	bool started;  /* BOM checked */
	bool one_line; /* a record is one physical line */
};

enum csv_state { ST_START, ST_PLAIN, ST_QUOTED, ST_QUOTE };

struct kr_csv *
kr_csv_new(FILE *f)
{
	struct kr_csv *c = kr_xcalloc(1, sizeof(*c));

	c->f = f;
	c->line = 1;
	kr_buf_init(&c->buf, 0);
	return c;
}

void
kr_csv_free(struct kr_csv **cp)
{
	if (cp == NULL || *cp == NULL)
		return;
	kr_buf_fini(&(*cp)->buf);
	free(*cp);
	*cp = NULL;
}

static int
get(struct kr_csv *c)
{
	if (c->npb > 0)
		return c->pb[--c->npb];
	return getc_unlocked(c->f);
}

/* EOF too can be pushed back, so a state may hand it on. */
static void
unget(struct kr_csv *c, int ch)
{
	c->pb[c->npb++] = ch;
}

/* After a CR: eats the LF of a CRLF. Either way one line ended. */
static void
end_cr(struct kr_csv *c)
{
	int ch = get(c);

	if (ch != '\n')
		unget(c, ch);
	c->line++;
}

static void
skip_bom(struct kr_csv *c)
{
	int a, b, d;

	c->started = true;
	if ((a = get(c)) != 0xEF) {
		unget(c, a);
		return;
	}
	if ((b = get(c)) != 0xBB) {
		unget(c, b);
		unget(c, a);
		return;
	}
	if ((d = get(c)) != 0xBF) {
		unget(c, d);
		unget(c, b);
		unget(c, a);
	}
}

/* Drops the rest of the physical line after a malformed record. */
static void
resync(struct kr_csv *c)
{
	int ch;

	while ((ch = get(c)) != EOF) {
		if (ch == '\n') {
			c->line++;
			break;
		}
		if (ch == '\r') {
			end_cr(c);
			break;
		}
	}
}

static int
field_end(struct kr_csv *c, struct kr_err *err)
{
	if (c->n >= KR_CSV_FIELDS_MAX)
		return kr_err_set(err, KR_ERR_INVALID,
		                  "more than %d fields in a record",
		                  KR_CSV_FIELDS_MAX);
	if (kr_buf_putc(&c->buf, '\0') < 0)
		return kr_err_set(err, KR_ERR_INVALID, "record too long");
	c->n++;
	c->off[c->n] = c->buf.len;
	return 0;
}

static int
field_add(struct kr_csv *c, int ch, struct kr_err *err)
{
	if (c->buf.len - c->off[c->n] >= KR_CSV_FIELD_MAX)
		return kr_err_set(err, KR_ERR_INVALID,
		                  "field longer than %d bytes",
		                  KR_CSV_FIELD_MAX);
	if (kr_buf_putc(&c->buf, (char)ch) < 0)
		return kr_err_set(err, KR_ERR_INVALID, "record too long");
	return 0;
}

int
kr_csv_read(struct kr_csv *c, struct kr_err *err)
{
	enum csv_state st = ST_START;
	int ch, r = -1;
	bool done = false, at_bol = false;

	if (!c->started)
		skip_bom(c);
	kr_buf_reset(&c->buf);
	c->n = 0;
	c->off[0] = 0;
	c->rec_line = c->line;
	while (!done) {
		ch = get(c);
		switch (st) {
		case ST_START:
			if (ch == EOF && c->n == 0) {
				r = 0;
				goto out;
			}
			if ((ch == '\n' || ch == '\r') && c->n == 0) {
				/* An empty line: no record. */
				if (ch == '\r')
					end_cr(c);
				else
					c->line++;
				c->rec_line = c->line;
				continue;
			}
			if (ch == '"') {
				st = ST_QUOTED;
				continue;
			}
			/* Anything else, also the end of a line after a
			 * comma (an empty last field). */
			st = ST_PLAIN;
			unget(c, ch);
			continue;
		case ST_PLAIN:
			if (ch == ',') {
				if (field_end(c, err) < 0)
					goto bad;
				st = ST_START;
				continue;
			}
			if (ch == EOF || ch == '\n' || ch == '\r') {
				if (field_end(c, err) < 0)
					goto bad;
				if (ch == '\n')
					c->line++;
				else if (ch == '\r')
					end_cr(c);
				done = true;
				continue;
			}
			if (ch == '"') {
				kr_err_set(
				    err, KR_ERR_INVALID,
				    "a quote inside an unquoted field (quote "
				    "the whole field and double the quote)");
				goto bad;
			}
			if (field_add(c, ch, err) < 0)
				goto bad;
			continue;
		case ST_QUOTED:
			if (ch == EOF) {
				kr_err_set(err, KR_ERR_INVALID,
				           "quoted field opened here is never "
				           "closed");
				c->line = c->rec_line;
				goto bad;
			}
			if (ch == '"') {
				st = ST_QUOTE;
				continue;
			}
			if (c->one_line && (ch == '\n' || ch == '\r')) {
				/* A stray quote must not swallow the rows
				 * after it: the record ends with its line, and
				 * the next one starts on the next line. */
				kr_err_set(
				    err, KR_ERR_INVALID,
				    "a quoted field is not closed on this "
				    "line, expected a closing quote before "
				    "the line ends (a field cannot hold a "
				    "line break)");
				if (ch == '\r')
					end_cr(c);
				else
					c->line++;
				at_bol = true;
				goto bad;
			}
			if (ch == '\n')
				c->line++;
			if (field_add(c, ch, err) < 0)
				goto bad;
			continue;
		case ST_QUOTE:
			if (ch == '"') {
				if (field_add(c, ch, err) < 0)
					goto bad;
				st = ST_QUOTED;
				continue;
			}
			if (ch == ',' || ch == EOF || ch == '\n' ||
			    ch == '\r') {
				unget(c, ch);
				st = ST_PLAIN;
				continue;
			}
			kr_err_set(err, KR_ERR_INVALID,
			           "text after the closing quote of a field");
			goto bad;
		}
	}
	r = 1;
	goto out;
bad:
	if (ferror(c->f)) {
		r = kr_err_set(err, KR_ERR_IO, "read error: %s",
		               strerror(errno));
		goto out;
	}
	/* Report where it went wrong, then skip to the next line. */
	if (!at_bol) {
		size_t at = c->line;

		resync(c);
		c->rec_line = at;
	} /* else the line is ended and rec_line is the record's one line */
	c->n = 0;
	r = -1;
out:
	if (r == 0 && ferror(c->f))
		r = kr_err_set(err, KR_ERR_IO, "read error: %s",
		               strerror(errno));
	return r;
}

void
kr_csv_set_one_line(struct kr_csv *c, bool on)
{
	c->one_line = on;
}

size_t
kr_csv_nfields(const struct kr_csv *c)
{
	return c->n;
}

const char *
kr_csv_field(const struct kr_csv *c, size_t i)
{
	if (i >= c->n)
		return "";
	return c->buf.data + c->off[i];
}

size_t
kr_csv_line(const struct kr_csv *c)
{
	return c->rec_line;
}

int
kr_csv_put_field(struct kr_buf *b, const char *s)
{
	size_t len = strlen(s);
	const char *p;
	/* A leading BOM is quoted so that a reader at the start of a file
	 * does not take it for the file's. */
	bool quote = len > 0 && (s[0] == ' ' || s[len - 1] == ' ' ||
	                         strncmp(s, "\xEF\xBB\xBF", 3) == 0);

	if (!quote && strpbrk(s, ",\"\r\n") == NULL)
		return kr_buf_append(b, s, len);
	if (kr_buf_putc(b, '"') < 0)
		return -1;
	for (p = s; *p; p++) {
		if (*p == '"' && kr_buf_putc(b, '"') < 0)
			return -1;
		if (kr_buf_putc(b, *p) < 0)
			return -1;
	}
	return kr_buf_putc(b, '"');
}
