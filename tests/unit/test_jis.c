/* test_jis.c — the ISO-2022-JP tables row by row (substitutions, the
 * Microsoft forms), the JIS table against glibc's encoder, lint output,
 * and the ISO-2022-JP encoders of mime.c (encoded words, flowed bodies). */
#include <iconv.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "err.h"
#include "jis.h"
#include "mime.h"

/* UTF-8 of cp into out (5 bytes). */
static void
utf8_of(uint32_t cp, char out[5])
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		out[1] = 0;
	} else if (cp < 0x800) {
		out[0] = (char)(0xc0 | cp >> 6);
		out[1] = (char)(0x80 | (cp & 0x3f));
		out[2] = 0;
	} else if (cp < 0x10000) {
		out[0] = (char)(0xe0 | cp >> 12);
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		out[3] = 0;
	} else {
		out[0] = (char)(0xf0 | cp >> 18);
		out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[3] = (char)(0x80 | (cp & 0x3f));
		out[4] = 0;
	}
}

/* Converts in (n bytes) from -> to with iconv; returns a malloc'd,
 * NUL-terminated result or NULL on any error. */
static char *
conv(const char *to, const char *from, const char *in, size_t n)
{
	iconv_t cd = iconv_open(to, from);
	size_t ol = n * 4 + 16, il = n;
	char *out = calloc(1, ol + 1), *op = out, *ip = (char *)(uintptr_t)in;

	assert_true(cd != (iconv_t)-1);
	if (iconv(cd, &ip, &il, &op, &ol) == (size_t)-1 ||
	    iconv(cd, NULL, NULL, &op, &ol) == (size_t)-1) {
		free(out);
		out = NULL;
	}
	iconv_close(cd);
	return out;
}

/* Every character of s is one ISO-2022-JP carries. */
static void
assert_all_encodable(const char *s)
{
	size_t i = 0, k, n = strlen(s);

	while (i < n) {
		uint32_t cp =
		    kr_jis_utf8((const unsigned char *)s + i, n - i, &k);

		if (kr_jis_code(cp) == 0)
			fail_msg("U+%04X in substitute '%s' is not encodable",
			         (unsigned)cp, s);
		i += k;
	}
}

/* Every row: the character itself is not carried, its substitute is
 * what kr_jis_subst answers, and the substitute is all encodable. */
static void
test_jis_every_subst_row(void **state)
{
	const uint32_t *cps;
	const char *const *tos;
	size_t n, i, used;
	char u[5];

	(void)state;
	n = kr_jis_test_rows(&cps, &tos);
	assert_true(n > 140);
	for (i = 0; i < n; i++) {
		const char *got;

		utf8_of(cps[i], u);
		if (kr_jis_code(cps[i]) != 0)
			fail_msg("row U+%04X: ISO-2022-JP carries it; the row "
			         "is dead",
			         (unsigned)cps[i]);
		got = kr_jis_subst(u, strlen(u), &used);
		assert_non_null(got);
		assert_string_equal(got, tos[i]);
		assert_int_equal(used, strlen(u));
		assert_all_encodable(tos[i]);
		/* glibc agrees the character has no ISO-2022-JP form */
		{
			char *c = conv("ISO-2022-JP", "UTF-8", u, strlen(u));

			/* ¥ and ‾ only as JIS X 0201 Roman (ESC ( J), which
			 * kairan does not send */
			if (c != NULL && strncmp(c, "\x1b(J", 3) != 0)
				fail_msg("row U+%04X: glibc encodes it",
				         (unsigned)cps[i]);
			free(c);
		}
	}
	/* bsearch needs the order (half-width kana rows come last) */
	for (i = 1; i < n && cps[i] < 0xFF61; i++)
		assert_true(cps[i - 1] < cps[i]);
}

/* The rows the issue names, and voiced half-width kana. */
static void
test_jis_named_substitutes(void **state)
{
	static const struct {
		const char *in, *out;
		size_t used;
	} rows[] = {
	    {"①", "(1)", 3},      {"⑳", "(20)", 3}, {"㈱", "(株)", 3},
	    {"Ⅲ", "III", 3},      {"ⅳ", "iv", 3},   {"㍻", "平成", 3},
	    {"㌔", "キロ", 3},    {"№", "No.", 3},  {"℡", "TEL", 3},
	    {"ｱ", "ア", 3},       {"ｶﾞ", "ガ", 6},  {"ﾊﾟ", "パ", 6},
	    {"ﾊﾞ", "バ", 6},      {"ｳﾞ", "ヴ", 6},  {"ｱﾞ", "ア", 3},
	    {"ﾞ", "゛", 3},       {"ｰ", "ー", 3},   {"｡", "。", 3},
	    {"¥", "￥", 2},       {"髙", "高", 3},  {"﨑", "崎", 3},
	    {"\xc2\xa0", " ", 2},
	};
	size_t i, used;

	(void)state;
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const char *got =
		    kr_jis_subst(rows[i].in, strlen(rows[i].in), &used);

		assert_non_null(got);
		assert_string_equal(got, rows[i].out);
		assert_int_equal(used, rows[i].used);
	}
	/* none: emoji, JIS X 0213, NEC math without a stand-in */
	assert_null(kr_jis_subst("😀", 4, &used));
	assert_null(kr_jis_subst("∟", 3, &used));
	assert_null(kr_jis_subst("é", 2, &used));
}

/* JIS -> Shift_JIS bytes, to decode as Windows does (CP932). */
static void
jis_to_sjis(unsigned code, char out[3])
{
	unsigned c1 = code >> 8, c2 = code & 0xff;

	out[0] = (char)(((c1 + 1) >> 1) + (c1 <= 0x5e ? 0x70 : 0xb0));
	if (c1 & 1)
		out[1] = (char)(c2 + (c2 < 0x60 ? 0x1f : 0x20));
	else
		out[1] = (char)(c2 + 0x7e);
	out[2] = 0;
}

/* The Microsoft forms go as the JIS code of the glyph they show: JIS
 * readers (glibc, Python, nkf) see the JIS character, Windows (CP932) the
 * very character written. WAVE DASH and FULLWIDTH TILDE both round trip. */
static void
test_jis_ms_forms(void **state)
{
	const uint32_t *cps;
	const unsigned *codes;
	size_t n, i;

	(void)state;
	n = kr_jis_test_ms_forms(&cps, &codes);
	assert_int_equal(n, 7);
	for (i = 0; i < n; i++) {
		char in[6] = {0x1b,
		              '$',
		              'B',
		              (char)(codes[i] >> 8),
		              (char)(codes[i] & 0xff),
		              0};
		char sj[3], u[5], *jis, *win;

		assert_int_equal(kr_jis_code(cps[i]), codes[i]);
		jis = conv("UTF-8", "ISO-2022-JP", in, 5);
		assert_non_null(jis);
		/* the JIS reading is another code point, carried too */
		utf8_of(cps[i], u);
		assert_string_not_equal(jis, u);
		assert_int_equal(
		    kr_jis_code(kr_jis_utf8((const unsigned char *)jis,
		                            strlen(jis), &(size_t){0})),
		    codes[i]);
		jis_to_sjis(codes[i], sj);
		win = conv("UTF-8", "CP932", sj, 2);
		assert_non_null(win);
		/* Windows reads what was written; EM DASH is the Mac (and
		 * Unicode's own) reading of 0x213D, Windows' is U+2015 */
		if (cps[i] == 0x2014)
			assert_string_equal(win, "―");
		else
			assert_string_equal(win, u);
		free(jis);
		free(win);
	}
	/* WAVE DASH (JIS) and FULLWIDTH TILDE (Windows) both as 0x2141 */
	assert_int_equal(kr_jis_code(0x301C), 0x2141);
	assert_int_equal(kr_jis_code(0xFF5E), 0x2141);
	assert_int_equal(kr_jis_code(0x2016), 0x2142);
	assert_int_equal(kr_jis_code(0x2225), 0x2142);
	assert_int_equal(kr_jis_code(0x2212), 0x215D);
	assert_int_equal(kr_jis_code(0xFF0D), 0x215D);
	assert_int_equal(kr_jis_code(0x00A2), 0x2171);
	assert_int_equal(kr_jis_code(0x00A3), 0x2172);
	assert_int_equal(kr_jis_code(0x00AC), 0x224C);
	{
		struct kr_buf b;
		char *back;

		kr_buf_init(&b, 0);
		assert_int_equal(kr_mime_jis_body(&b, "〜～", 6, false, NULL),
		                 0);
		assert_string_equal(b.data, "\x1b$B!A!A\x1b(B");
		back = conv("UTF-8", "ISO-2022-JP", b.data, b.len);
		assert_string_equal(back, "〜〜");
		free(back);
		kr_buf_fini(&b);
	}
}

/* kr_jis_code agrees with glibc's encoder on every BMP character. */
static void
test_jis_table_is_glibc(void **state)
{
	uint32_t cp;
	unsigned code, n = 0;
	char u[5], *e;

	(void)state;
	for (cp = 0x80; cp < 0x10000; cp++) {
		if (cp >= 0xd800 && cp <= 0xdfff)
			continue;
		code = kr_jis_code(cp);
		if (code == 0 || cp == 0xFF5E || cp == 0x2225 || cp == 0xFF0D ||
		    (cp >= 0xFFE0 && cp <= 0xFFE2) || cp == 0x2014)
			continue;
		utf8_of(cp, u);
		e = conv("ISO-2022-JP", "UTF-8", u, strlen(u));
		assert_non_null(e);
		assert_int_equal(strlen(e), 8);
		assert_memory_equal(e, "\x1b$B", 3);
		assert_int_equal((unsigned char)e[3], code >> 8);
		assert_int_equal((unsigned char)e[4], code & 0xff);
		free(e);
		n++;
	}
	assert_true(n > 6800); /* JIS X 0208: 6879 characters */
	assert_int_equal(kr_jis_code('A'), 'A');
	assert_int_equal(kr_jis_code(0x1b), 0); /* ESC never passes */
	assert_int_equal(kr_jis_code(0x1F600), 0);
	assert_int_equal(kr_jis_code(0xFF71), 0); /* half-width kana */
}

/* Ten offending characters at known lines and columns (the Microsoft
 * forms on line 8 are carried: not listed). */
static void
test_jis_lint_positions(void **state)
{
	static const char src[] = "---\n"
	                          "subject: 第①号 ㈱Example\n"
	                          "---\n"
	                          "# 見出し\n"
	                          "\n"
	                          "Ⅲ章の㍻元年に、ｶﾞﾄﾞ😀\n"
	                          "髙橋さん 100円∟\n"
	                          "〜 ～ − － ‖ ∥ (all fine)\n"
	                          "end ⑳\n";
	static const char want[] =
	    "r.md:2:11: U+2460 '①' cannot be sent as ISO-2022-JP "
	    "(substitute: (1))\n"
	    "r.md:2:14: U+3231 '㈱' cannot be sent as ISO-2022-JP "
	    "(substitute: (株))\n"
	    "r.md:6:1: U+2162 'Ⅲ' cannot be sent as ISO-2022-JP "
	    "(substitute: III)\n"
	    "r.md:6:4: U+337B '㍻' cannot be sent as ISO-2022-JP "
	    "(substitute: 平成)\n"
	    "r.md:6:9: U+FF76 'ｶﾞ' cannot be sent as ISO-2022-JP "
	    "(substitute: ガ)\n"
	    "r.md:6:11: U+FF84 'ﾄﾞ' cannot be sent as ISO-2022-JP "
	    "(substitute: ド)\n"
	    "r.md:6:13: U+1F600 '😀' cannot be sent as ISO-2022-JP "
	    "(no substitute)\n"
	    "r.md:7:1: U+9AD9 '髙' cannot be sent as ISO-2022-JP "
	    "(substitute: 高)\n"
	    "r.md:7:10: U+221F '∟' cannot be sent as ISO-2022-JP "
	    "(no substitute)\n"
	    "r.md:9:5: U+2473 '⑳' cannot be sent as ISO-2022-JP "
	    "(substitute: (20))\n";
	struct kr_buf b;
	size_t n, none = 0;

	(void)state;
	kr_buf_init(&b, 0);
	n = kr_jis_lint("r.md", src, strlen(src), &b, &none);
	assert_string_equal(b.data, want);
	assert_int_equal(n, 10);
	assert_int_equal(none, 2);
	kr_buf_fini(&b);
}

/* Decodes one "=?ISO-2022-JP?B?…?=" word (its payload must begin in
 * ASCII state and end in ASCII) to UTF-8. */
static char *
decode_word(const char *w, size_t n)
{
	static const char b64[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	unsigned char raw[64];
	size_t i, o = 0, bits = 0;
	unsigned acc = 0;
	bool in_jis = false;

	assert_true(n > 18 && memcmp(w, "=?ISO-2022-JP?B?", 16) == 0 &&
	            memcmp(w + n - 2, "?=", 2) == 0);
	for (i = 16; i < n - 2 && w[i] != '='; i++) {
		acc = acc << 6 | (unsigned)(strchr(b64, w[i]) - b64);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			raw[o++] = (unsigned char)(acc >> bits);
		}
	}
	for (i = 0; i < o; i++)
		if (raw[i] == 0x1b) {
			assert_true(i + 2 < o);
			in_jis = i + 1 < o && raw[i + 1] == '$';
			i += 2;
		} else {
			assert_true(raw[i] < 0x80);
		}
	assert_false(in_jis); /* every word ends in ASCII */
	return conv("UTF-8", "ISO-2022-JP", (const char *)raw, o);
}

/* A header: each word decodes on its own, no word over 75 characters,
 * no line over 76, and the words joined give the text back. */
static void
check_header(const char *value)
{
	struct kr_buf b, all;
	struct kr_err err = {0};
	const char *p, *e;

	kr_buf_init(&b, 0);
	kr_buf_init(&all, 0);
	assert_int_equal(kr_mime_header_text_jis(&b, "Subject", value, &err),
	                 0);
	for (p = b.data; *p; p++)
		assert_true((unsigned char)*p < 0x80);
	p = strstr(b.data, "=?");
	assert_non_null(p);
	while (p != NULL) {
		char *d;

		/* the word's end follows its "=?ISO-2022-JP?B?" */
		e = strstr(p + 16, "?=");
		assert_non_null(e);
		e += 2;
		assert_true(e - p <= 75);
		d = decode_word(p, (size_t)(e - p));
		assert_non_null(d);
		assert_true(kr_buf_puts(&all, d) == 0);
		free(d);
		p = strstr(e, "=?");
	}
	assert_string_equal(all.data, value);
	for (p = b.data; (e = strstr(p, "\r\n")) != NULL; p = e + 2)
		assert_true(e - p <= 76);
	kr_buf_fini(&b);
	kr_buf_fini(&all);
}

static void
test_jis_encoded_words(void **state)
{
	struct kr_buf b;
	char s120[1024] = "";
	struct kr_err err = {0};
	size_t i;

	(void)state;
	for (i = 0; i < 120; i++)
		snprintf(s120 + strlen(s120), sizeof(s120) - strlen(s120),
		         "%s", i % 10 == 9 ? "号" : "脅威");
	check_header(s120);
	check_header("【重要】 VPN 装置の脆弱性 CVE-2026-1234 について "
	             "security update のお知らせ");
	check_header("セキュリティレポート 2026年11月号");
	check_header("aあbいcうdえeおf かkきlくmけnこo");
	/* a character it cannot carry is refused, not sent broken */
	kr_buf_init(&b, 0);
	assert_int_equal(
	    kr_mime_header_text_jis(&b, "Subject", "丸数字①", &err), -1);
	kr_buf_fini(&b);
}

/* RFC 3676 unflowing (delsp=yes) of CRLF text, then ISO-2022-JP
 * decoding. */
static char *
unflow_decode(const char *s)
{
	struct kr_buf o;
	const char *p = s, *e;
	char *r;

	kr_buf_init(&o, 0);
	while ((e = strstr(p, "\r\n")) != NULL || *p) {
		size_t n = e ? (size_t)(e - p) : strlen(p);
		const char *q = p;

		if (n > 0 && q[0] == ' ') { /* stuffed */
			q++;
			n--;
		}
		if (n > 0 && q[n - 1] == ' ' &&
		    !(n == 3 && memcmp(q, "-- ", 3) == 0)) {
			assert_true(kr_buf_append(&o, q, n - 1) == 0);
		} else {
			assert_true(kr_buf_append(&o, q, n) == 0);
			if (e)
				assert_true(kr_buf_putc(&o, '\n') == 0);
		}
		if (e == NULL)
			break;
		p = e + 2;
	}
	r = conv("UTF-8", "ISO-2022-JP", o.data ? o.data : "", o.len);
	kr_buf_fini(&o);
	return r;
}

static void
test_jis_flowed_body(void **state)
{
	struct kr_buf b, in;
	size_t i, max = 0;
	const char *p, *e;
	char *back;

	(void)state;
	kr_buf_init(&b, 0);
	kr_buf_init(&in, 0);
	/* a long unspaced paragraph, an English one, a stuffed line */
	for (i = 0; i < 300; i++)
		assert_true(kr_buf_puts(&in, i % 7 ? "脆" : "あ") == 0);
	assert_true(kr_buf_puts(&in, "\n\n") == 0);
	for (i = 0; i < 40; i++)
		assert_true(kr_buf_puts(&in, "word ") == 0);
	assert_true(
	    kr_buf_puts(&in, "end\n From here\n"
	                     "From x\n混在 mixed テキスト with "
	                     "ASCII and 日本語 text that goes on and "
	                     "on 長い長い長い長い長い長い行です\n-- \n") == 0);
	assert_int_equal(kr_mime_jis_body(&b, in.data, in.len, true, &max), 0);
	for (p = b.data; *p; p++)
		assert_true((unsigned char)*p < 0x80);
	for (p = b.data; (e = strstr(p, "\r\n")) != NULL; p = e + 2) {
		assert_true(e - p <= 76);
		/* each line ends in ASCII */
		if (e - p >= 3 && memmem(p, (size_t)(e - p), "\x1b$B", 3))
			assert_non_null(
			    memmem(p, (size_t)(e - p), "\x1b(B", 3));
	}
	assert_true(max <= 76);
	back = unflow_decode(b.data);
	assert_non_null(back);
	assert_string_equal(back, in.data);
	free(back);
	/* a bare CR ends a line, as in UTF-8 parts (found by fuzz_jis) */
	kr_buf_reset(&b);
	assert_int_equal(kr_mime_jis_body(&b, "日\r本\r\nx\ry", 12, true, NULL),
	                 0);
	assert_string_equal(b.data, "\x1b$BF|\x1b(B\r\n\x1b$BK\\\x1b(B\r\n"
	                            "x\r\ny");
	kr_buf_fini(&b);
	kr_buf_fini(&in);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_jis_every_subst_row),
	    cmocka_unit_test(test_jis_named_substitutes),
	    cmocka_unit_test(test_jis_ms_forms),
	    cmocka_unit_test(test_jis_table_is_glibc),
	    cmocka_unit_test(test_jis_lint_positions),
	    cmocka_unit_test(test_jis_encoded_words),
	    cmocka_unit_test(test_jis_flowed_body),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
