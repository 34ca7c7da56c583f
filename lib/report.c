/* report.c — front matter (libyaml), Markdown (cmark), content hash
 * (libsodium), and the one queueing path behind every intake door. */
#include "report.h"

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

/* Index of the ')' closing the '(' at s[i], or 0 when none on the line. */
static size_t
match_paren(const char *s, size_t i, size_t n)
{
	int depth = 0;

	for (; i < n && s[i] != '\n'; i++) {
		if (s[i] == '\\' && i + 1 < n) {
			i++;
		} else if (s[i] == '(') {
			depth++;
		} else if (s[i] == ')' && --depth == 0) {
			return i;
		}
	}
	return 0;
}

/* Index of the ']' closing the '[' at s[i], or 0 (stays in a paragraph:
 * stops at a blank line). */
static size_t
match_bracket(const char *s, size_t i, size_t n)
{
	int depth = 0;

	for (; i < n; i++) {
		if (s[i] == '\\' && i + 1 < n) {
			i++;
		} else if (s[i] == '`' ||
		           (s[i] == '\n' && i + 1 < n && s[i + 1] == '\n')) {
			return 0; /* a code span or the paragraph's end */
		} else if (s[i] == '[') {
			depth++;
		} else if (s[i] == ']' && --depth == 0) {
			return i;
		}
	}
	return 0;
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

char *
kr_report_text(const char *s, size_t n)
{
	struct kr_buf o;
	size_t i = 0, j, k, close, fence_len = 0, run, ll;
	char fence = 0;
	bool bol = true, code;

	kr_buf_init(&o, 0);
	ub_append(&o, "", 0);
	while (i < n) {
		if (bol) {
			/* fenced code blocks are copied as they are */
			ll = line_len(s + i, s + n);
			j = 0;
			while (j < 3 && j < ll && s[i + j] == ' ')
				j++;
			code = fence != 0;
			if (j + 3 <= ll &&
			    (s[i + j] == '`' || s[i + j] == '~')) {
				run = 0;
				while (j + run < ll &&
				       s[i + j + run] == s[i + j])
					run++;
				if (run >= 3 && fence == 0) {
					fence = s[i + j];
					fence_len = run;
					code = true;
				} else if (run >= fence_len &&
				           fence == s[i + j]) {
					fence = 0;
				}
			}
			if (code) {
				k = i + ll;
				while (k < n && s[k] != '\n')
					k++;
				if (k < n)
					k++;
				ub_append(&o, s + i, k - i);
				i = k;
				continue;
			}
			bol = false;
		}
		if (s[i] == '\n') {
			ub_append(&o, "\n", 1);
			i++;
			bol = true;
			continue;
		}
		if (s[i] == '\\' && i + 1 < n && s[i + 1] != '\n') {
			ub_append(&o, s + i, 2);
			i += 2;
			continue;
		}
		if (s[i] == '`') {
			/* a code span: copied up to its matching run */
			run = 0;
			while (i + run < n && s[i + run] == '`')
				run++;
			for (k = i + run; k < n; k++) {
				size_t r2 = 0;

				while (k + r2 < n && s[k + r2] == '`')
					r2++;
				if (r2 == run)
					break;
				k += r2;
			}
			k = k < n ? k + run : i + run;
			ub_append(&o, s + i, k - i);
			i = k;
			continue;
		}
		j = s[i] == '!' && i + 1 < n && s[i + 1] == '[' ? i + 1 : i;
		if (s[j] == '[' && (close = match_bracket(s, j, n)) != 0 &&
		    close + 1 < n && s[close + 1] == '(' &&
		    (k = match_paren(s, close + 1, n)) != 0) {
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
	return kr_buf_steal(&o);
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
	bool parser_ok = false, doc_ok = false;
	int r = -1;

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
			    "characters, at most 1000 bytes)",
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
	int r = -1;

	*rep_out = NULL;
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
		    "subject: expected one non-empty line of text (no CR, LF "
		    "or other control characters, at most 1000 bytes)",
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
	rep->text = kr_report_text(body, (size_t)(end - body));
	rep->html = cmark_markdown_to_html(
	    body, (size_t)(end - body),
	    CMARK_OPT_VALIDATE_UTF8 |
	        (list->allow_html ? CMARK_OPT_UNSAFE : CMARK_OPT_SAFE));
	if (rep->html == NULL)
		abort(); /* cmark only fails on allocation */
	crypto_hash_sha256(digest, (const unsigned char *)data, len);
	sodium_bin2hex(rep->hash, sizeof(rep->hash), digest, sizeof(digest));
	*rep_out = rep;
	rep = NULL;
	r = 0;
out:
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
