/* test_report.c — front matter, errors with FILE:LINE:COLUMN, Markdown
 * rendering, the plain-text form and the content hash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "err.h"
#include "report.h"
#include "store.h"

static char id1[] = "sips-report", id2[] = "other";
static struct kr_cfg_list lists[2] = {
    {.id = id1},
    {.id = id2, .allow_html = true},
};

static struct kr_config one = {.lists = lists, .n_lists = 1};
static struct kr_config two = {.lists = lists, .n_lists = 2};

static int
parse(const struct kr_config *cfg, const char *src, struct kr_report **rep,
      struct kr_err *err)
{
	return kr_report_parse(cfg, "r.md", src, strlen(src), rep, err);
}

static void
test_report_minimal(void **state)
{
	struct kr_report *rep = NULL;
	struct kr_err err = {0};
	const char *src = "---\nsubject: 第12号 脅威レポート\n---\n# 見出し\n\n"
	                  "本文です。\n";

	(void)state;
	assert_int_equal(parse(&one, src, &rep, &err), 0);
	assert_string_equal(rep->subject, "第12号 脅威レポート");
	assert_string_equal(rep->list_id, "sips-report");
	assert_string_equal(rep->preheader, "");
	assert_string_equal(rep->date, "");
	assert_int_equal(rep->send_at, 0);
	assert_string_equal(rep->html, "<h1>見出し</h1>\n<p>本文です。</p>\n");
	assert_string_equal(rep->text, "# 見出し\n\n本文です。\n");
	assert_int_equal(strlen(rep->hash), 64);
	kr_report_free(&rep);
	assert_null(rep);
	kr_report_free(&rep);
}

static void
test_report_all_keys(void **state)
{
	struct kr_report *rep = NULL;
	struct kr_err err = {0};
	const char *src =
	    "---\r\nsubject: \"Quoted: yes\"\r\nlist: other\r\n"
	    "date: 2026-11-26\r\nsend_at: 2026-11-26T09:00:00+09:00"
	    "\r\npreheader: 今月の要点\r\n---\r\nBody\r\n";

	(void)state;
	assert_int_equal(parse(&two, src, &rep, &err), 0);
	assert_string_equal(rep->subject, "Quoted: yes");
	assert_string_equal(rep->list_id, "other");
	assert_string_equal(rep->date, "2026-11-26");
	/* 09:00 in Tokyo is midnight UTC */
	assert_int_equal(rep->send_at, 1795651200);
	assert_string_equal(rep->preheader, "今月の要点");
	kr_report_free(&rep);
	/* Z and no seconds */
	src = "---\nsubject: s\nsend_at: 2026-11-26T00:30Z\n---\nb\n";
	assert_int_equal(parse(&one, src, &rep, &err), 0);
	assert_int_equal(rep->send_at, 1795651200 + 1800);
	kr_report_free(&rep);
	/* no offset: local time (TZ=UTC here) */
	src = "---\nsubject: s\nsend_at: 2026-11-26 01:00\n---\nb\n";
	assert_int_equal(parse(&one, src, &rep, &err), 0);
	assert_int_equal(rep->send_at, 1795651200 + 3600);
	kr_report_free(&rep);
}

static void
test_report_hash(void **state)
{
	struct kr_report *a = NULL, *b = NULL;

	(void)state;
	assert_int_equal(parse(&one, "---\nsubject: s\n---\nbody\n", &a, NULL),
	                 0);
	assert_int_equal(parse(&one, "---\nsubject: s\n---\nbody!\n", &b, NULL),
	                 0);
	assert_string_not_equal(a->hash, b->hash);
	/* sha256("---\nsubject: s\n---\nbody\n") */
	assert_string_equal(
	    a->hash,
	    "4d69bc67410b604b200d1998b682ddd3914dd2fa20f85034a14d11e3740faea2");
	kr_report_free(&a);
	kr_report_free(&b);
}

/* err.msg starts with want */
static void
expect_error(const struct kr_config *cfg, const char *src, const char *want)
{
	struct kr_report *rep = NULL;
	struct kr_err err = {0};

	assert_int_equal(parse(cfg, src, &rep, &err), -1);
	assert_null(rep);
	assert_int_equal(err.code, KR_ERR_INVALID);
	if (strncmp(err.msg, want, strlen(want)) != 0)
		fail_msg("got '%s', want '%s…'", err.msg, want);
}

static void
test_report_errors(void **state)
{
	(void)state;
	expect_error(&one, "# no front matter\n", "r.md:1:1: expected front");
	expect_error(&one, "---\nsubject: s\nbody\n",
	             "r.md:4:1: front matter not closed");
	expect_error(&one, "---\nlist: sips-report\n---\nb\n",
	             "r.md:2:1: subject: missing");
	expect_error(&one, "---\nsubject: \"a\\r\\nBcc: x@y\"\n---\nb\n",
	             "r.md:2:10: subject: expected one");
	expect_error(&one, "---\nsubject: |\n  two\n  lines\n---\nb\n",
	             "r.md:2:10: subject: expected one");
	expect_error(&one, "---\nsubject: \"\"\n---\nb\n",
	             "r.md:2:10: subject: expected one");
	expect_error(&one, "---\nsubject: s\nsubjet: typo\n---\nb\n",
	             "r.md:3:1: unknown key");
	expect_error(&one, "---\nsubject: s\nsubject: t\n---\nb\n",
	             "r.md:3:1: duplicate key");
	expect_error(&one, "---\nsubject: [a, b]\n---\nb\n",
	             "r.md:2:10: expected a single value");
	expect_error(&one, "---\nsubject: s\nlist: nope\n---\nb\n",
	             "r.md:3:7: list: no such list");
	expect_error(&two, "---\nsubject: s\n---\nb\n",
	             "r.md:2:1: list: missing");
	expect_error(&one, "---\nsubject: s\nsend_at: tomorrow\n---\nb\n",
	             "r.md:3:10: send_at: expected ISO 8601");
	expect_error(&one, "---\nsubject: s\ndate: 2026-02-30\n---\nb\n",
	             "r.md:3:7: date: expected YYYY-MM-DD");
	expect_error(&one, "---\nsubject: s\n---\n\n  \n",
	             "r.md:4:1: the report body is empty");
	expect_error(&one, "---\nsubject: 'unclosed\n---\nb\n", "r.md:");
	expect_error(&one, "---\nsubject: s\n  bad: indent\n---\nb\n",
	             "r.md:3:");
	expect_error(&one, "---\nsubject: s\n---\nok\n\xff\n",
	             "r.md:5:1: not valid UTF-8");
	expect_error(&one, "---\nsubject: s\n---\nbody\n日本\xe6\x97\n",
	             "r.md:5:3: not valid UTF-8");
}

/* A BOM before the first fence or at the start of the front matter is
 * not text (after the fence it made the second key end the mapping). */
static void
test_report_bom(void **state)
{
	static const char *const srcs[] = {
	    "\xef\xbb\xbf---\nsubject: s\nlist: other\n---\nb\n",
	    "---\n\xef\xbb\xbfsubject: s\nlist: other\n---\nb\n",
	};
	struct kr_report *rep = NULL;
	struct kr_err err = {0};
	size_t i;

	(void)state;
	for (i = 0; i < KR_NELEM(srcs); i++) {
		if (parse(&two, srcs[i], &rep, &err) != 0)
			fail_msg("case %zu: %s", i, err.msg);
		assert_string_equal(rep->subject, "s");
		assert_string_equal(rep->list_id, "other");
		kr_report_free(&rep);
	}
	expect_error(&one, "---\n\xef\xbb\xbfsubject: s\nsubjet: t\n---\nb\n",
	             "r.md:3:1: unknown key");
}

/* Characters that some software takes for line breaks never reach the
 * Subject header (the config refuses them in header values already). */
static void
test_report_subject_separators(void **state)
{
	(void)state;
	expect_error(&one, "---\nsubject: \"a\\Nb\"\n---\nb\n",
	             "r.md:2:10: subject: expected one non-empty line");
	expect_error(&one, "---\nsubject: \"a\\Lb\"\n---\nb\n",
	             "r.md:2:10: subject: expected one non-empty line");
	expect_error(&one, "---\nsubject: \"a\\Pb\"\n---\nb\n",
	             "r.md:2:10: subject: expected one non-empty line");
	/* raw, libyaml counts them as line breaks: refused where they are */
	expect_error(&one,
	             "---\nlist: sips-report\nsubject: a\xe2\x80\xa8"
	             "b\n"
	             "---\nb\n",
	             "r.md:3:11: front matter: a NEL, U+2028 or U+2029");
	expect_error(&one, "---\nsubject: 'x \xc2\x85 y'\nlist: x\n---\nb\n",
	             "r.md:2:13: front matter: a NEL, U+2028 or U+2029");
	expect_error(&one, "---\nsubject: \"\xe2\x80\xa9\"\n---\nb\n",
	             "r.md:2:11: front matter: a NEL, U+2028 or U+2029");
	expect_error(&one, "---\nsubject: s\npreheader: \"p\\Lq\"\n---\nb\n",
	             "r.md:3:12: preheader: expected one line");
}

/* Nesting in the front matter is bounded before libyaml builds the
 * document (100,000 '[' took it over 10 s, quadratic in the depth). */
static void
test_report_deep_front_matter(void **state)
{
	static const char head[] = "---\nsubject: ", tail[] = "\n---\nb\n";
	struct kr_report *rep = NULL;
	struct kr_err err = {0};
	size_t n = 100000, hl = sizeof(head) - 1;
	char *src = malloc(hl + 2 * n + sizeof(tail));

	(void)state;
	assert_non_null(src);
	memcpy(src, head, hl);
	memset(src + hl, '[', n);
	memset(src + hl + n, ']', n);
	memcpy(src + hl + 2 * n, tail, sizeof(tail));
	assert_int_equal(parse(&one, src, &rep, &err), -1);
	assert_string_equal(err.msg,
	                    "r.md:2:73: front matter: nesting deeper than 64 "
	                    "levels, expected at most 64 nested lists and "
	                    "mappings");
	/* 64 levels (the mapping and 63) reach the usual check */
	memcpy(src + hl + 63, src + hl + n, 63);
	memcpy(src + hl + 126, tail, sizeof(tail));
	expect_error(&one, src, "r.md:2:10: expected a single value");
	free(src);
}

static void
test_report_nul_refused(void **state)
{
	static const char src[] = "---\nsubject: s\n---\nbo\0dy\n";
	struct kr_report *rep = NULL;
	struct kr_err err = {0};

	(void)state;
	assert_int_equal(
	    kr_report_parse(&one, "r.md", src, sizeof(src) - 1, &rep, &err),
	    -1);
	assert_string_equal(err.msg, "r.md:4:3: NUL byte in the report");
}

static void
test_report_raw_html(void **state)
{
	struct kr_report *rep = NULL;
#define RAW(list)                                                              \
	"---\nsubject: s\nlist: " list "\n---\n<script>x()</script>"           \
	"\n\n[a](javascript:alert(1)) <b>b</b>\n"

	(void)state;
	assert_int_equal(parse(&two, RAW("sips-report"), &rep, NULL), 0);
	assert_null(strstr(rep->html, "<script>"));
	assert_null(strstr(rep->html, "<b>"));
	assert_null(strstr(rep->html, "javascript:"));
	kr_report_free(&rep);
	/* allow_html */
	assert_int_equal(parse(&two, RAW("other"), &rep, NULL), 0);
	assert_non_null(strstr(rep->html, "<b>b</b>"));
	kr_report_free(&rep);
}

static void
test_report_text_links(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
	    {"see [the site](https://ex.jp/a) now",
	     "see the site <https://ex.jp/a> now"},
	    {"![図1](https://ex.jp/1.png \"title\")",
	     "図1 <https://ex.jp/1.png>"},
	    {"[https://ex.jp](https://ex.jp)", "https://ex.jp"},
	    {"[x](<https://ex.jp/a b>)", "x <https://ex.jp/a b>"},
	    {"[wiki](https://ex.jp/A_(b))", "wiki <https://ex.jp/A_(b)>"},
	    {"`[not](a link)` and \\[no](x)", "`[not](a link)` and \\[no](x)"},
	    {"```\n[code](x)\n```\n[y](z)\n", "```\n[code](x)\n```\ny <z>\n"},
	    {"~~~~\n```\n[c](x)\n~~~~\n", "~~~~\n```\n[c](x)\n~~~~\n"},
	    {"[unclosed](x", "[unclosed](x"},
	    {"a [b] c", "a [b] c"},
	    {"全角「括弧」[リンク](https://ex.jp/ja)。",
	     "全角「括弧」リンク <https://ex.jp/ja>。"},
	};
	size_t i;
	char *t;

	(void)state;
	for (i = 0; i < KR_NELEM(cases); i++) {
		t = kr_report_text(cases[i].in, strlen(cases[i].in));
		if (strcmp(t, cases[i].out) != 0)
			fail_msg("case %zu: got '%s'", i, t);
		free(t);
	}
}

/* The text form is linear in the input: each '[' scanned to the end of
 * its paragraph (200,000 of them took 19.5 s), each '(' to the end of its
 * line, each unclosed backtick run to the end. Milliseconds now; the
 * alarm (a generous watchdog, not a timing check) ends the old minutes. */
static void
test_report_text_linear(void **state)
{
	size_t n = 200000, i, l = 0, r;
	char *s = malloc(4 * n + 1), *t;

	(void)state;
	assert_non_null(s);
	alarm(120);
	memset(s, '[', n);
	s[n] = '\0';
	t = kr_report_text(s, n);
	assert_string_equal(t, s);
	free(t);
	for (i = 0; i < n / 2; i++)
		memcpy(s + 4 * i, "[a](", 4);
	s[2 * n] = '\0';
	t = kr_report_text(s, 2 * n);
	assert_string_equal(t, s);
	free(t);
	/* runs of 1, 2, 3, … backticks: none has a closing run */
	for (r = 1; l + r + 1 < 4 * n; r++) {
		memset(s + l, '`', r);
		l += r;
		s[l++] = 'a';
	}
	s[l] = '\0';
	t = kr_report_text(s, l);
	assert_string_equal(t, s);
	free(t);
	/* and a closing run still closes, link syntax inside it left alone */
	memcpy(s, "``a [b](c) `` [d](e)", 21);
	t = kr_report_text(s, 20);
	assert_string_equal(t, "``a [b](c) `` d <e>");
	free(t);
	free(s);
	alarm(0);
}

/* cmark's tree is bounded: 4 MiB of "*a* " took 700 MB (a node of some
 * 200 bytes per two bytes of source); now a clear error past 64 MiB. A
 * real report of the same size (the sample, repeated) still renders. */
static void
test_report_markdown_memory_bounded(void **state)
{
	static const char head[] = "---\nsubject: s\n---\n";
	const char *root = getenv("KAIRAN_ROOT");
	size_t max = KR_REPORT_MAX, l, n;
	char *s = malloc(max + 1), path[512], *sample, *body;
	struct kr_report *rep = NULL;
	struct kr_err err = {0};
	FILE *f;

	(void)state;
	assert_non_null(s);
	memcpy(s, head, sizeof(head) - 1);
	for (l = sizeof(head) - 1; l + 4 <= max; l += 4)
		memcpy(s + l, "*a* ", 4);
	assert_int_equal(kr_report_parse(&one, "r.md", s, l, &rep, &err), -1);
	assert_string_equal(err.msg,
	                    "r.md:4:1: the Markdown body would take more than "
	                    "64 MiB to render, expected a smaller or plainer "
	                    "report (this many links, emphasis marks, entities "
	                    "or '<' cost memory)");
	/* the sample report's body, repeated up to the size limit */
	snprintf(path, sizeof(path), "%s/config/sample-report.md",
	         root ? root : ".");
	f = fopen(path, "rb");
	assert_non_null(f);
	sample = malloc(65536);
	assert_non_null(sample);
	n = fread(sample, 1, 65535, f);
	fclose(f);
	sample[n] = '\0';
	body = strstr(strstr(sample, "---\n") + 4, "---\n") + 4;
	n = strlen(body);
	for (l = sizeof(head) - 1; l + n <= max; l += n)
		memcpy(s + l, body, n);
	if (kr_report_parse(&one, "r.md", s, l, &rep, &err) != 0)
		fail_msg("%s", err.msg);
	assert_true(strlen(rep->html) > l);
	kr_report_free(&rep);
	free(sample);
	free(s);
}

/* An author's HTML comment reaches no part: not the text part (the
 * source), not the HTML (cmark kept it for allow_html lists, and showed
 * "<!-- a -- b -->" as text to all). Comments in code stay code. */
static void
test_report_comments_dropped(void **state)
{
	static const char src[] = "---\nsubject: s\nlist: %s\n---\n"
	                          "# T\n\n"
	                          "<!-- secret 1: whole line -->\n"
	                          "a <!-- secret 2 --> b\n"
	                          "c <!--\nsecret 3\nover lines --> d\n\n"
	                          "<div>e <!-- secret 4 --> f</div>\n\n"
	                          "g <!-- secret 5 -- odd --> h <!--> i\n\n"
	                          "`<!-- kept 1 -->` and\n\n"
	                          "```\n<!-- kept 2 -->\n```\n";
	static const char *const lists_[] = {"sips-report", "other"};
	struct kr_report *rep = NULL;
	struct kr_err err = {0};
	char buf[1024];
	size_t i;

	(void)state;
	for (i = 0; i < KR_NELEM(lists_); i++) {
		snprintf(buf, sizeof(buf), src, lists_[i]);
		if (parse(&two, buf, &rep, &err) != 0)
			fail_msg("%s", err.msg);
		if (strstr(rep->text, "secret") || strstr(rep->html, "secret"))
			fail_msg("list %s:\n%s\n%s", lists_[i], rep->text,
			         rep->html);
		assert_string_equal(rep->text, "# T\n\n"
		                               "a b\n"
		                               "c d\n\n"
		                               "<div>e f</div>\n\n"
		                               "g h i\n\n"
		                               "`<!-- kept 1 -->` and\n\n"
		                               "```\n<!-- kept 2 -->\n```\n");
		assert_non_null(
		    strstr(rep->html, "<code>&lt;!-- kept 1 --&gt;</code>"));
		assert_non_null(strstr(rep->html, "&lt;!-- kept 2 --&gt;\n"));
		kr_report_free(&rep);
	}
	/* the allow_html list keeps its raw HTML, minus the comment */
	snprintf(buf, sizeof(buf), src, "other");
	assert_int_equal(parse(&two, buf, &rep, &err), 0);
	assert_non_null(strstr(rep->html, "<div>e f</div>"));
	kr_report_free(&rep);
	/* kr_report_text on its own drops them as well */
	{
		char *t = kr_report_text("x <!-- n --> [y](z)", 19);

		assert_string_equal(t, "x y <z>");
		free(t);
	}
	/* never closed: refused where it opens, not half shown */
	expect_error(&one, "---\nsubject: s\n---\nok\nsee <!-- unclosed\n",
	             "r.md:5:5: an HTML comment '<!--' is not closed, "
	             "expected '-->'");
	/* escaped, it is text */
	assert_int_equal(
	    parse(&one, "---\nsubject: s\n---\na \\<!-- b\n", &rep, &err), 0);
	assert_string_equal(rep->text, "a \\<!-- b\n");
	kr_report_free(&rep);
}

static void
test_report_queue(void **state)
{
	/* the one queueing path, against a real SQLite store */
	char path[64] = "/tmp/kairan-test-report-XXXXXX", side[80];
	struct kr_store *st = NULL;
	struct kr_subscriber sub;
	struct kr_report_row got;
	struct kr_err err = {0};
	const char *src = "---\nsubject: 第1号\nsend_at: 2030-01-01T00:00Z\n"
	                  "preheader: 要点\n---\n本文\n";
	int64_t rid = 0, rid2 = 0, n = -1;
	bool added;
	int fd, i;

	(void)state;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	unlink(path);
	assert_int_equal(kr_store_open(path, NULL, &st, &err), 0);
	for (i = 0; i < 3; i++) {
		memset(&sub, 0, sizeof(sub));
		snprintf(sub.list_id, sizeof(sub.list_id), "sips-report");
		snprintf(sub.email, sizeof(sub.email), "r%d@example.org", i);
		sub.status = i < 2 ? KR_SUB_ACTIVE : KR_SUB_PENDING;
		sub.created_at = sub.consent_at = 1;
		snprintf(sub.consent_source, sizeof(sub.consent_source), "cli");
		assert_int_equal(
		    kr_store_subscriber_import(st, &sub, &added, &err), 0);
	}
	assert_int_equal(kr_report_queue(st, &one, "r.md", src, strlen(src),
	                                 false, &rid, &n, &err),
	                 0);
	assert_true(rid > 0);
	assert_int_equal(n, 2); /* active only */
	memset(&got, 0, sizeof(got));
	assert_int_equal(kr_store_report_get(st, rid, &got, &err), 1);
	assert_string_equal(got.subject, "第1号");
	assert_string_equal(got.preheader, "要点");
	assert_string_equal(got.text, "本文\n");
	assert_string_equal(got.html, "<p>本文</p>\n");
	assert_string_equal(got.source, "r.md");
	assert_string_equal(got.list_id, "sips-report");
	assert_int_equal(got.send_at, 1893456000);
	assert_int_equal(strlen(got.hash), 64);
	kr_store_report_row_fini(&got);
	/* the same bytes again: refused, and nothing queued */
	assert_int_equal(kr_report_queue(st, &one, "again.md", src, strlen(src),
	                                 false, &rid2, &n, &err),
	                 -1);
	assert_int_equal(err.code, KR_ERR_EXISTS);
	assert_non_null(strstr(err.msg, "--again"));
	assert_int_equal(kr_report_queue(st, &one, "again.md", src, strlen(src),
	                                 true, &rid2, &n, &err),
	                 0);
	assert_true(rid2 > rid);
	assert_int_equal(n, 2);
	/* a bad report never reaches the store */
	assert_int_equal(kr_report_queue(st, &one, "bad.md", "no", 2, false,
	                                 &rid2, &n, &err),
	                 -1);
	assert_int_equal(err.code, KR_ERR_INVALID);
	kr_store_close(&st);
	unlink(path);
	snprintf(side, sizeof(side), "%s-wal", path);
	unlink(side);
	snprintf(side, sizeof(side), "%s-shm", path);
	unlink(side);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_report_minimal),
	    cmocka_unit_test(test_report_all_keys),
	    cmocka_unit_test(test_report_hash),
	    cmocka_unit_test(test_report_errors),
	    cmocka_unit_test(test_report_bom),
	    cmocka_unit_test(test_report_deep_front_matter),
	    cmocka_unit_test(test_report_subject_separators),
	    cmocka_unit_test(test_report_nul_refused),
	    cmocka_unit_test(test_report_raw_html),
	    cmocka_unit_test(test_report_text_links),
	    cmocka_unit_test(test_report_text_linear),
	    cmocka_unit_test(test_report_markdown_memory_bounded),
	    cmocka_unit_test(test_report_comments_dropped),
	    cmocka_unit_test(test_report_queue),
	};

	setenv("TZ", "UTC", 1);
	tzset();
	return cmocka_run_group_tests_name("report", tests, NULL, NULL);
}
