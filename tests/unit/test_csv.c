/* test_csv.c — the RFC 4180 reader and writer on edge cases. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "csv.h"
#include "err.h"

struct reader {
	FILE *f;
	struct kr_csv *c;
};

static void
open_text(struct reader *r, const char *text, size_t len)
{
	r->f = fmemopen((void *)(uintptr_t)text, len, "r");
	assert_non_null(r->f);
	r->c = kr_csv_new(r->f);
}

static void
close_text(struct reader *r)
{
	kr_csv_free(&r->c);
	assert_null(r->c);
	fclose(r->f);
}

#define OPEN(r, lit) open_text((r), (lit), sizeof(lit) - 1)

static void
expect_record(struct reader *r, size_t line, size_t n, ...)
{
	struct kr_err err = {0};
	va_list ap;
	size_t i;

	assert_int_equal(kr_csv_read(r->c, &err), 1);
	assert_int_equal(kr_csv_line(r->c), line);
	assert_int_equal(kr_csv_nfields(r->c), n);
	va_start(ap, n);
	for (i = 0; i < n; i++)
		assert_string_equal(kr_csv_field(r->c, i),
		                    va_arg(ap, const char *));
	va_end(ap);
}

static void
expect_eof(struct reader *r)
{
	struct kr_err err = {0};

	assert_int_equal(kr_csv_read(r->c, &err), 0);
	assert_int_equal(kr_csv_read(r->c, &err), 0);
}

static void
test_csv_plain_lf_crlf(void **state)
{
	struct reader r;

	(void)state;
	OPEN(&r, "email,name\r\na@example.jp,Alice\nb@example.jp,Bob");
	expect_record(&r, 1, 2, "email", "name");
	expect_record(&r, 2, 2, "a@example.jp", "Alice");
	expect_record(&r, 3, 2, "b@example.jp", "Bob");
	expect_eof(&r);
	close_text(&r);
}

static void
test_csv_quoted(void **state)
{
	struct reader r;

	(void)state;
	OPEN(&r, "\"a,b\",\"say \"\"hi\"\"\",\"\"\n"
	         "\"multi\nline\r\nfield\",x\n"
	         "after,\"\"\"\"\n");
	expect_record(&r, 1, 3, "a,b", "say \"hi\"", "");
	expect_record(&r, 2, 2, "multi\nline\r\nfield", "x");
	/* The line count went on inside the quoted field. */
	expect_record(&r, 5, 2, "after", "\"");
	expect_eof(&r);
	close_text(&r);
}

static void
test_csv_bom_empty_fields_and_lines(void **state)
{
	struct reader r;

	(void)state;
	OPEN(&r, "\xEF\xBB\xBF"
	         "email,,\n"
	         "\n"
	         "\r\n"
	         ",\n"
	         "last,\n");
	expect_record(&r, 1, 3, "email", "", "");
	expect_record(&r, 4, 2, "", "");
	expect_record(&r, 5, 2, "last", "");
	expect_eof(&r);
	close_text(&r);
}

static void
test_csv_lone_cr_and_utf8(void **state)
{
	struct reader r;

	(void)state;
	/* Not a BOM: the same first byte, then something else. */
	OPEN(&r, "\xEF\xBC\xA1,b\rc,d\r");
	expect_record(&r, 1, 2, "\xEF\xBC\xA1", "b");
	expect_record(&r, 2, 2, "c", "d");
	expect_eof(&r);
	close_text(&r);
}

static void
test_csv_errors_resync(void **state)
{
	struct reader r;
	struct kr_err err = {0};

	(void)state;
	OPEN(&r, "ok,1\n"
	         "bad\"quote,2\n"
	         "\"closed\"junk,3\n"
	         "fine,4\n"
	         "\"never closed,5\nstill,6\n");
	expect_record(&r, 1, 2, "ok", "1");
	assert_int_equal(kr_csv_read(r.c, &err), -1);
	assert_int_equal(err.code, KR_ERR_INVALID);
	assert_int_equal(kr_csv_line(r.c), 2);
	assert_non_null(strstr(err.msg, "quote"));
	assert_int_equal(kr_csv_read(r.c, &err), -1);
	assert_int_equal(kr_csv_line(r.c), 3);
	assert_non_null(strstr(err.msg, "after the closing quote"));
	expect_record(&r, 4, 2, "fine", "4");
	assert_int_equal(kr_csv_read(r.c, &err), -1);
	assert_int_equal(kr_csv_line(r.c), 5);
	assert_non_null(strstr(err.msg, "never closed"));
	expect_eof(&r);
	close_text(&r);
}

/* One record per line: a stray quote on line 3 is reported at line 3
 * and the rows after it are read (in RFC 4180 mode they vanished into
 * one field, reported at line 5 where its closing quote met text). */
static void
test_csv_one_line_stray_quote(void **state)
{
	static const char text[] = "email,name\n"
	                           "a@example.jp,A\n"
	                           "c@example.jp,\"Carol\n"
	                           "d@example.jp,Dan\r\n"
	                           "e@example.jp,\"Eve\"\r"
	                           "f@example.jp,\"Fay\r\n"
	                           "\n"
	                           "g@example.jp,\"Gil";
	struct reader r;
	struct kr_err err = {0};

	(void)state;
	OPEN(&r, text);
	kr_csv_set_one_line(r.c, true);
	expect_record(&r, 1, 2, "email", "name");
	expect_record(&r, 2, 2, "a@example.jp", "A");
	assert_int_equal(kr_csv_read(r.c, &err), -1);
	assert_int_equal(err.code, KR_ERR_INVALID);
	assert_int_equal(kr_csv_line(r.c), 3);
	assert_non_null(strstr(err.msg, "not closed on this line"));
	expect_record(&r, 4, 2, "d@example.jp", "Dan");
	expect_record(&r, 5, 2, "e@example.jp", "Eve");
	assert_int_equal(kr_csv_read(r.c, &err), -1);
	assert_int_equal(kr_csv_line(r.c), 6);
	assert_int_equal(kr_csv_read(r.c, &err), -1);
	assert_int_equal(kr_csv_line(r.c), 8);
	assert_non_null(strstr(err.msg, "never closed"));
	expect_eof(&r);
	close_text(&r);
	/* RFC 4180 mode (the default) is as before */
	OPEN(&r, text);
	expect_record(&r, 1, 2, "email", "name");
	expect_record(&r, 2, 2, "a@example.jp", "A");
	assert_int_equal(kr_csv_read(r.c, &err), -1);
	assert_int_equal(kr_csv_line(r.c), 5);
	close_text(&r);
}

static void
test_csv_limits(void **state)
{
	struct reader r;
	struct kr_err err = {0};
	size_t n = KR_CSV_FIELD_MAX + 10, i;
	char *big = malloc(n + 64);

	(void)state;
	assert_non_null(big);
	memset(big, 'x', n);
	strcpy(big + n, "\nnext,1\n");
	open_text(&r, big, strlen(big));
	assert_int_equal(kr_csv_read(r.c, &err), -1);
	assert_non_null(strstr(err.msg, "longer than"));
	expect_record(&r, 2, 2, "next", "1");
	expect_eof(&r);
	close_text(&r);

	/* Too many fields. */
	for (i = 0; i < KR_CSV_FIELDS_MAX + 5; i++)
		big[i] = ',';
	strcpy(big + i, "\nnext,2\n");
	open_text(&r, big, strlen(big));
	assert_int_equal(kr_csv_read(r.c, &err), -1);
	assert_non_null(strstr(err.msg, "fields"));
	expect_record(&r, 2, 2, "next", "2");
	close_text(&r);
	free(big);
}

static void
test_csv_writer_round_trip(void **state)
{
	static const char *const fields[] = {
	    "plain", "a,b",    "q\"uote", "line\nbreak",
	    " lead", "trail ", "",        "日本語"};
	struct kr_buf b;
	struct reader r;
	size_t i;

	(void)state;
	kr_buf_init(&b, 0);
	for (i = 0; i < KR_NELEM(fields); i++) {
		if (i)
			assert_int_equal(kr_buf_putc(&b, ','), 0);
		assert_int_equal(kr_csv_put_field(&b, fields[i]), 0);
	}
	assert_int_equal(kr_buf_puts(&b, "\r\n"), 0);
	assert_string_equal(
	    b.data, "plain,\"a,b\",\"q\"\"uote\",\"line\nbreak\",\" lead\","
	            "\"trail \",,日本語\r\n");
	open_text(&r, b.data, b.len);
	expect_record(&r, 1, 8, "plain", "a,b", "q\"uote", "line\nbreak",
	              " lead", "trail ", "", "日本語");
	expect_eof(&r);
	close_text(&r);
	kr_buf_fini(&b);
}

static void
test_csv_writer_quotes_leading_bom(void **state)
{
	struct kr_buf b;
	struct reader r;

	(void)state;
	/* Found by tests/fuzz/fuzz_csv.c: a first field starting with a BOM
	 * lost it when read back from the start of a file. */
	kr_buf_init(&b, 0);
	assert_int_equal(kr_csv_put_field(&b, "\xEF\xBB\xBFx"), 0);
	assert_int_equal(kr_buf_puts(&b, "\n"), 0);
	open_text(&r, b.data, b.len);
	expect_record(&r, 1, 1, "\xEF\xBB\xBFx");
	close_text(&r);
	kr_buf_fini(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_csv_plain_lf_crlf),
	    cmocka_unit_test(test_csv_quoted),
	    cmocka_unit_test(test_csv_bom_empty_fields_and_lines),
	    cmocka_unit_test(test_csv_lone_cr_and_utf8),
	    cmocka_unit_test(test_csv_errors_resync),
	    cmocka_unit_test(test_csv_one_line_stray_quote),
	    cmocka_unit_test(test_csv_limits),
	    cmocka_unit_test(test_csv_writer_round_trip),
	    cmocka_unit_test(test_csv_writer_quotes_leading_bom),
	};

	return cmocka_run_group_tests_name("csv", tests, NULL, NULL);
}
