/* test_mime.c — the encoders' edge cases and header injection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "err.h"
#include "mime.h"

/* Every line of s (CRLF separated) is at most max octets; no bare LF/CR. */
static void
assert_lines(const char *s, size_t len, size_t max)
{
	size_t i, col = 0;

	for (i = 0; i < len; i++) {
		if (s[i] == '\r') {
			assert_true(i + 1 < len && s[i + 1] == '\n');
			assert_true(col <= max);
			col = 0;
			i++;
			continue;
		}
		assert_true(s[i] != '\n');
		col++;
	}
	assert_true(col <= max);
}

/* A tiny QP decoder for round trips (soft breaks, =XX, CRLF -> LF). */
static char *
qp_decode(const char *s, size_t n)
{
	char *o = calloc(1, n + 1), *d = o;
	size_t i;

	for (i = 0; i < n; i++) {
		if (s[i] == '=' && i + 2 < n + 1 && s[i + 1] == '\r') {
			i += 2;
		} else if (s[i] == '=') {
			char h[3] = {s[i + 1], s[i + 2], 0};

			*d++ = (char)strtol(h, NULL, 16);
			i += 2;
		} else if (s[i] == '\r') {
			*d++ = '\n';
			i++;
		} else {
			*d++ = s[i];
		}
	}
	return o;
}

static void
test_mime_qp_basic(void **state)
{
	struct kr_buf b;
	const char *in = "a=b \ttab\t\nend \n日本";

	(void)state;
	kr_buf_init(&b, 0);
	assert_int_equal(kr_mime_qp(&b, in, strlen(in)), 0);
	assert_string_equal(b.data,
	                    "a=3Db \ttab=09\r\nend=20\r\n=E6=97=A5=E6=9C=AC");
	assert_int_equal(kr_mime_qp_len(in, strlen(in)), b.len);
	kr_buf_fini(&b);
}

static void
test_mime_qp_long_line(void **state)
{
	struct kr_buf b;
	char *in = malloc(2001), *back;

	(void)state;
	memset(in, 'x', 2000);
	in[2000] = '\0';
	in[999] = '=';
	kr_buf_init(&b, 0);
	assert_int_equal(kr_mime_qp(&b, in, 2000), 0);
	assert_lines(b.data, b.len, 76);
	back = qp_decode(b.data, b.len);
	assert_string_equal(back, in);
	free(back);
	kr_buf_fini(&b);
	free(in);
}

static void
test_mime_qp_japanese_no_spaces(void **state)
{
	struct kr_buf b;
	struct kr_buf in;
	char *back;
	int i;

	(void)state;
	kr_buf_init(&b, 0);
	kr_buf_init(&in, 0);
	for (i = 0; i < 300; i++)
		assert_int_equal(
		    kr_buf_puts(&in, "空白のない段落、「全角」。🎉"), 0);
	assert_int_equal(kr_mime_qp(&b, in.data, in.len), 0);
	assert_lines(b.data, b.len, 76);
	/* a soft break never splits an =XX escape */
	assert_null(strstr(b.data, "=\r\n=\r\n"));
	back = qp_decode(b.data, b.len);
	assert_string_equal(back, in.data);
	free(back);
	kr_buf_fini(&b);
	kr_buf_fini(&in);
}

static void
test_mime_base64(void **state)
{
	struct kr_buf b;
	char in[200];
	size_t i;

	(void)state;
	kr_buf_init(&b, 0);
	assert_int_equal(kr_mime_base64(&b, "", 0), 0);
	assert_int_equal(b.len, 0);
	assert_int_equal(kr_mime_base64(&b, "a", 1), 0);
	assert_string_equal(b.data, "YQ==");
	kr_buf_reset(&b);
	assert_int_equal(kr_mime_base64(&b, "ab", 2), 0);
	assert_string_equal(b.data, "YWI=");
	kr_buf_reset(&b);
	assert_int_equal(kr_mime_base64(&b, "abc", 3), 0);
	assert_string_equal(b.data, "YWJj");
	kr_buf_reset(&b);
	for (i = 0; i < sizeof(in); i++)
		in[i] = (char)i;
	/* 57 octets make one full line, with no CRLF after the last */
	assert_int_equal(kr_mime_base64(&b, in, 57), 0);
	assert_int_equal(b.len, 76);
	kr_buf_reset(&b);
	assert_int_equal(kr_mime_base64(&b, in, 58), 0);
	assert_int_equal(b.len, 76 + 2 + 4);
	assert_memory_equal(b.data + 76, "\r\n", 2);
	kr_buf_reset(&b);
	assert_int_equal(kr_mime_base64(&b, in, sizeof(in)), 0);
	assert_lines(b.data, b.len, 76);
	kr_buf_fini(&b);
}

/* Checks each encoded word of a header: <= 75 chars, whole characters. */
static void
assert_words(const char *h)
{
	const char *p = h, *e;

	while ((p = strstr(p, "=?UTF-8?B?")) != NULL) {
		e = strstr(p + 10, "?=");
		assert_non_null(e);
		assert_true((size_t)(e + 2 - p) <= 75);
		/* whole characters: the decoded length of the word's base64
		 * is checked by the Python round trip; here: multiple of 4 */
		assert_int_equal((size_t)(e - (p + 10)) % 4, 0);
		p = e + 2;
	}
}

static void
test_mime_subject_japanese_120(void **state)
{
	struct kr_buf b;
	struct kr_buf s;
	int i;

	(void)state;
	kr_buf_init(&b, 0);
	kr_buf_init(&s, 0);
	for (i = 0; i < 120; i++)
		assert_int_equal(kr_buf_puts(&s, i % 10 == 9 ? "。" : "脅"), 0);
	assert_int_equal(kr_mime_header_text(&b, "Subject", s.data, NULL), 0);
	assert_lines(b.data, b.len, 77);
	assert_words(b.data);
	assert_non_null(strstr(b.data, "\r\n =?UTF-8?B?"));
	assert_memory_equal(b.data + b.len - 2, "\r\n", 2);
	kr_buf_fini(&b);
	kr_buf_fini(&s);
}

static void
test_mime_subject_emoji_not_split(void **state)
{
	struct kr_buf b;
	size_t col = 60;

	(void)state;
	kr_buf_init(&b, 0);
	/* too little room at column 60: folds before the first word */
	assert_int_equal(kr_mime_encode_words(&b, "🎉🎉🎉", 12, &col, NULL), 0);
	assert_memory_equal(b.data, "\r\n =?UTF-8?B?", 13);
	assert_string_equal(b.data + 2, " =?UTF-8?B?8J+OifCfjonwn46J?=");
	kr_buf_fini(&b);
}

static void
test_mime_subject_ascii(void **state)
{
	struct kr_buf b;

	(void)state;
	kr_buf_init(&b, 0);
	assert_int_equal(
	    kr_mime_header_text(&b, "Subject", "Hello world", NULL), 0);
	assert_string_equal(b.data, "Subject: Hello world\r\n");
	kr_buf_reset(&b);
	assert_int_equal(
	    kr_mime_header_text(&b, "Subject",
	                        "one two three four five six seven eight nine "
	                        "ten eleven twelve thirteen fourteen",
	                        NULL),
	    0);
	assert_lines(b.data, b.len, 77);
	assert_non_null(strstr(b.data, "\r\n "));
	kr_buf_fini(&b);
}

static void
test_mime_injection_refused(void **state)
{
	static const char *const bad[] = {
	    "a\r\nBcc: x@example.org", "a\nb",          "a\rb",
	    "tab\tand\x01ctl",         "\x7f",          "nel\xc2\x85",
	    "ls\xe2\x80\xa8",          "ps\xe2\x80\xa9"};
	struct kr_buf b;
	struct kr_err err = {0};
	size_t i;

	(void)state;
	kr_buf_init(&b, 0);
	for (i = 0; i < KR_NELEM(bad); i++) {
		assert_int_equal(
		    kr_mime_header_text(&b, "Subject", bad[i], &err), -1);
		assert_int_equal(err.code, KR_ERR_INVALID);
		assert_int_equal(kr_mime_header_addr(&b, "From", bad[i],
		                                     "a@b.example", &err),
		                 -1);
		assert_int_equal(
		    kr_mime_header_addr(&b, "To", NULL, bad[i], &err), -1);
	}
	assert_int_equal(kr_mime_header_addr(&b, "To", NULL,
	                                     "a@b.example>, <evil@example.org",
	                                     &err),
	                 -1);
	assert_int_equal(b.len, 0);
	/* invalid UTF-8 too */
	assert_int_equal(kr_mime_header_text(&b, "Subject", "\xe6\x97", &err),
	                 -1);
	kr_buf_fini(&b);
}

static void
test_mime_display_names(void **state)
{
	struct kr_buf b;

	(void)state;
	kr_buf_init(&b, 0);
	assert_int_equal(kr_mime_header_addr(&b, "From", "SIPS Report",
	                                     "r@news.example.jp", NULL),
	                 0);
	assert_string_equal(b.data,
	                    "From: SIPS Report <r@news.example.jp>\r\n");
	kr_buf_reset(&b);
	assert_int_equal(kr_mime_header_addr(&b, "From", "Example, Inc. \"x\"",
	                                     "r@news.example.jp", NULL),
	                 0);
	assert_string_equal(
	    b.data,
	    "From: \"Example, Inc. \\\"x\\\"\" <r@news.example.jp>\r\n");
	kr_buf_reset(&b);
	assert_int_equal(
	    kr_mime_header_addr(&b, "From", "回覧", "r@news.example.jp", NULL),
	    0);
	assert_string_equal(
	    b.data, "From: =?UTF-8?B?5Zue6Kan?= <r@news.example.jp>\r\n");
	/* a long name with specials: encoded words, folded, never one long
	 * line */
	{
		char longname[2001];

		memset(longname, 'a', 2000);
		longname[2000] = '\0';
		longname[500] = ',';
		kr_buf_reset(&b);
		assert_int_equal(kr_mime_header_addr(&b, "From", longname,
		                                     "r@news.example.jp", NULL),
		                 0);
		assert_lines(b.data, b.len, 77);
		assert_words(b.data);
		/* a 2,000-character atom too */
		longname[500] = 'a';
		kr_buf_reset(&b);
		assert_int_equal(kr_mime_header_addr(&b, "From", longname,
		                                     "r@news.example.jp", NULL),
		                 0);
		assert_lines(b.data, b.len, 77);
		/* and as a subject */
		kr_buf_reset(&b);
		assert_int_equal(
		    kr_mime_header_text(&b, "Subject", longname, NULL), 0);
		assert_lines(b.data, b.len, 77);
	}
	kr_buf_fini(&b);
}

static void
test_mime_utf8(void **state)
{
	(void)state;
	assert_true(kr_mime_utf8_valid("日本🎉", strlen("日本🎉")));
	assert_false(kr_mime_utf8_valid("\xc0\xaf", 2));     /* overlong */
	assert_false(kr_mime_utf8_valid("\xed\xa0\x80", 3)); /* surrogate */
	assert_false(kr_mime_utf8_valid("\xf0\x9f\x8e", 3)); /* cut */
}

static void
test_mime_compose_prefix_equals_whole(void **state)
{
	/* The prepared-prefix path and the all-tail path give the same
	 * body (after the random Message-ID and boundary). */
	struct kr_mime_msg m = {0};
	struct kr_mime_part *p = NULL;
	struct kr_buf a, b, text;
	char *ba, *bb;
	int i;

	(void)state;
	kr_buf_init(&a, 0);
	kr_buf_init(&b, 0);
	kr_buf_init(&text, 0);
	for (i = 0; i < 200; i++)
		assert_int_equal(kr_buf_printf(&text, "行%d: 本文です。\n", i),
		                 0);
	m.from_addr = "r@news.example.jp";
	m.to_addr = "x@example.org";
	m.subject = "件名";
	m.date = 0;
	m.text_tail = text.data;
	m.text_tail_len = text.len;
	assert_int_equal(kr_mime_compose(&m, &a, NULL), 0);
	p = kr_mime_part_new(text.data, 1000);
	m.text = p;
	m.text_tail = text.data + 1000;
	m.text_tail_len = text.len - 1000;
	assert_int_equal(kr_mime_compose(&m, &b, NULL), 0);
	ba = strstr(a.data, "\r\n\r\n");
	bb = strstr(b.data, "\r\n\r\n");
	assert_non_null(ba);
	assert_non_null(bb);
	assert_string_equal(ba, bb);
	assert_non_null(strstr(a.data, "Content-Transfer-Encoding: base64"));
	assert_lines(a.data, a.len, 998);
	kr_mime_part_free(&p);
	kr_mime_part_free(&p);
	kr_buf_fini(&a);
	kr_buf_fini(&b);
	kr_buf_fini(&text);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_mime_qp_basic),
	    cmocka_unit_test(test_mime_qp_long_line),
	    cmocka_unit_test(test_mime_qp_japanese_no_spaces),
	    cmocka_unit_test(test_mime_base64),
	    cmocka_unit_test(test_mime_subject_japanese_120),
	    cmocka_unit_test(test_mime_subject_emoji_not_split),
	    cmocka_unit_test(test_mime_subject_ascii),
	    cmocka_unit_test(test_mime_injection_refused),
	    cmocka_unit_test(test_mime_display_names),
	    cmocka_unit_test(test_mime_utf8),
	    cmocka_unit_test(test_mime_compose_prefix_equals_whole),
	};

	return cmocka_run_group_tests_name("mime", tests, NULL, NULL);
}
