/* test_address.c — kr_address_normalize: tables of valid and invalid
 * addresses, header-injection attempts, IDN, case folding, and the RFC 5321
 * length limits hit exactly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "address.h"
#include "err.h"

struct ok_case {
	const char *in;
	const char *out;
};

static const struct ok_case ok_cases[] = {
    {"user@example.jp", "user@example.jp"},
    {"  user@Example.JP\t", "user@example.jp"},
    {"\xe3\x80\x80user@example.jp\xe3\x80\x80 ", "user@example.jp"},
    {"User.Name+tag@EXAMPLE.co.jp", "User.Name+tag@example.co.jp"},
    {"a!#$%&'*+-/=?^_`{|}~z@example.jp", "a!#$%&'*+-/=?^_`{|}~z@example.jp"},
    {"\"john doe\"@example.jp", "\"john doe\"@example.jp"},
    {"\"john\"@example.jp", "john@example.jp"},
    {"\"a\\\"b\"@example.jp", "\"a\\\"b\"@example.jp"},
    {"\"a\\b\"@example.jp", "ab@example.jp"},
    {"\"a@b\"@example.jp", "\"a@b\"@example.jp"},
    {"\"a..b\"@example.jp", "\"a..b\"@example.jp"},
    {"\"a,b <c>\"@example.jp", "\"a,b <c>\"@example.jp"},
    {"user@例え.jp", "user@xn--r8jz45g.jp"},
    {"user@例え。jp", "user@xn--r8jz45g.jp"},
    {"user@ＥＸＡＭＰＬＥ.jp", "user@example.jp"},
    {"user@Bücher.DE", "user@xn--bcher-kva.de"},
    {"ユーザー@例え.jp", "ユーザー@xn--r8jz45g.jp"},
    {"josé.garcía@example.es", "josé.garcía@example.es"},
    {"user@XN--R8JZ45G.JP", "user@xn--r8jz45g.jp"},
    {"user@mail.xn--r8jz45g.jp", "user@mail.xn--r8jz45g.jp"},
    {"user@axn--b.jp", "user@axn--b.jp"},
    {"user@a-b.example", "user@a-b.example"},
    {"1@2.example", "1@2.example"},
    {"user@123.example.com", "user@123.example.com"},
    /* Percent-encoding is never decoded here: these are literal '%'
     * characters, harmless atext in a local part. */
    {"x%0d%0aBcc@example.jp", "x%0d%0aBcc@example.jp"},
};

struct bad_case {
	const char *in;
	size_t len;      /* 0: strlen */
	const char *why; /* a substring of the reason */
};

static const struct bad_case bad_cases[] = {
    {"", 0, "empty"},
    {"  \t ", 0, "empty"},
    /* Header injection. */
    {"a@b.jp\r\nBcc: x@y.jp", 0, "line break"},
    {"a@b.jp\nBcc: x@y.jp", 0, "line break"},
    {"a@b.jp\r\n", 0, "line break"},
    {"\"a\r\nBcc: x@y.jp\"@b.jp", 0, "line break"},
    {"a@b.jp\0Bcc: x@y.jp", 18, "NUL"},
    {"a@b.jp%0d%0aBcc:x@y.jp", 0, "more than one @"},
    {"a@b.jp%0d%0a", 0, "domain contains '%'"},
    {"a\t@b.jp", 0, "control character"},
    {"a\x7f@b.jp", 0, "control character"},
    {"a\x1b@b.jp", 0, "control character"},
    /* Not a single addr-spec. */
    {"John <john@example.jp>", 0, "without a name or <>"},
    {"\"John Doe\" <john@example.jp>", 0, "without a name or <>"},
    {"<john@example.jp>", 0, "without a name or <>"},
    {"john@example.jp (John)", 0, "comments"},
    {"a@b.jp, c@d.jp", 0, "one address"},
    {"a@b.jp;c@d.jp", 0, "one address"},
    {"a b@c.jp", 0, "space"},
    {"a\xe3\x80\x80"
     "b@c.jp",
     0, "U+3000"},
    {"user.example.jp", 0, "@ sign is missing"},
    {"@example.jp", 0, "before the @ is missing"},
    {"user@", 0, "domain part is missing"},
    {"a@b@c.jp", 0, "more than one @"},
    /* Local part. */
    {".a@b.jp", 0, "dot"},
    {"a.@b.jp", 0, "dot"},
    {"a..b@b.jp", 0, "two dots"},
    {"a\"b@x.jp", 0, "'\"'"},
    {"a\\b@x.jp", 0, "'\\'"},
    {"a[b]@x.jp", 0, "'['"},
    {"\"unterminated@x.jp", 0, "closing quote"},
    {"\"a\"b@x.jp", 0, "followed by @"},
    {"\"a\"", 0, "missing"},
    {"\"\"@x.jp", 0, "empty"},
    {"\"é\"@x.jp", 0, "only ASCII"},
    {"ｕｓｅｒ@example.jp", 0, "full-width"},
    {"user＠example.jp", 0, "full-width"},
    {"☃@example.jp", 0, "U+2603"},
    {"a\xe3\x82\x99@example.jp", 0, "U+3099"},
    {"a\xff@b.jp", 0, "UTF-8"},
    {"a\xc0\xaf@b.jp", 0, "UTF-8"},
    {"a\xe3\x81@b.jp", 0, "UTF-8"},
    {"a@\xed\xa0\x80.jp", 0, "UTF-8"},
    /* Domain. */
    {"user@[192.0.2.1]", 0, "address literals"},
    {"user@[IPv6:2001:db8::1]", 0, "address literals"},
    {"user@localhost", 0, "at least one dot"},
    {"user@1.2.3.4", 0, "ends in a number"},
    {"user@example.123", 0, "ends in a number"},
    {"user@-a.jp", 0, "hyphen"},
    {"user@a-.jp", 0, "hyphen"},
    {"user@a.-jp", 0, "hyphen"},
    {"user@a_b.jp", 0, "'_'"},
    {"user@a!b.jp", 0, "'!'"},
    {"user@a..jp", 0, "two dots"},
    {"user@.a.jp", 0, "starts with a dot"},
    {"user@a.jp.", 0, "ends with a dot"},
    {"user@-例え.jp", 0, "international domain"},
    {"user@xn--zz.例え.jp", 0, "international domain"},
    {"user@xn--zz.example", 0, "international domain"},
    {"user@XN--www-.jp", 0, "international domain"},
    {"user@sub.xn--a.jp", 0, "international domain"},
};

static void
test_address_valid(void **state)
{
	char out[KR_ADDRESS_MAX], again[KR_ADDRESS_MAX];
	struct kr_err err;
	size_t i;

	(void)state;
	for (i = 0; i < KR_NELEM(ok_cases); i++) {
		kr_err_clear(&err);
		if (kr_address_normalize(ok_cases[i].in, strlen(ok_cases[i].in),
		                         out, &err) != 0)
			fail_msg("refused '%s': %s", ok_cases[i].in, err.msg);
		assert_string_equal(out, ok_cases[i].out);
		/* Normalising twice changes nothing. */
		assert_int_equal(
		    kr_address_normalize(out, strlen(out), again, &err), 0);
		assert_string_equal(again, out);
	}
}

static void
test_address_invalid(void **state)
{
	char out[KR_ADDRESS_MAX];
	struct kr_err err;
	size_t i, len;

	(void)state;
	for (i = 0; i < KR_NELEM(bad_cases); i++) {
		len = bad_cases[i].len ? bad_cases[i].len
		                       : strlen(bad_cases[i].in);
		kr_err_clear(&err);
		memset(out, 'x', sizeof(out));
		if (kr_address_normalize(bad_cases[i].in, len, out, &err) != -1)
			fail_msg("accepted case %zu '%s' as '%s'", i,
			         bad_cases[i].in, out);
		assert_int_equal(err.code, KR_ERR_INVALID);
		if (strstr(err.msg, bad_cases[i].why) == NULL)
			fail_msg("case %zu '%s': reason '%s' lacks '%s'", i,
			         bad_cases[i].in, err.msg, bad_cases[i].why);
		assert_string_equal(out, "");
	}
}

/* The input need not be NUL-terminated: only len bytes are read. */
static void
test_address_not_terminated(void **state)
{
	char in[] = {'a', '@', 'b', '.', 'j', 'p', 'X', 'Y'};
	char out[KR_ADDRESS_MAX];

	(void)state;
	assert_int_equal(kr_address_normalize(in, 6, out, NULL), 0);
	assert_string_equal(out, "a@b.jp");
	assert_int_equal(kr_address_normalize("a@b.jp", 3, out, NULL), -1);
}

static void
fill(char *p, char c, size_t n)
{
	memset(p, c, n);
	p[n] = '\0';
}

/* Builds "local@" + a domain of exactly dlen octets made of labels. */
static void
make_domain(char *p, size_t dlen, size_t label)
{
	size_t i, run = 0;

	for (i = 0; i < dlen; i++) {
		if (run == label && i + 1 < dlen) {
			p[i] = '.';
			run = 0;
		} else {
			p[i] = 'd';
			run++;
		}
	}
	p[dlen] = '\0';
}

static int
try(const char *local, size_t dlen, size_t label, char *why, size_t whysz)
{
	char in[2048], out[KR_ADDRESS_MAX];
	struct kr_err err = {0};
	int r;

	snprintf(in, sizeof(in), "%s@", local);
	make_domain(in + strlen(in), dlen, label);
	r = kr_address_normalize(in, strlen(in), out, &err);
	snprintf(why, whysz, "%s", err.msg);
	if (r == 0)
		assert_string_equal(out, in);
	return r;
}

static void
test_address_lengths(void **state)
{
	char local[200], why[256];

	(void)state;
	/* Local part: 64 octets exactly, then 65. */
	fill(local, 'l', 64);
	assert_int_equal(try(local, 10, 5, why, sizeof(why)), 0);
	fill(local, 'l', 65);
	assert_int_equal(try(local, 10, 5, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "longer than 64"));
	/* Far longer than any buffer for a local part (found by fuzzing). */
	fill(local, 'l', 199);
	assert_int_equal(try(local, 10, 5, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "longer than 64"));
	/* A quoted local part counts with its quotes and escapes. */
	fill(local, 'l', 62);
	local[0] = '"', local[1] = ' ', local[61] = '"';
	assert_int_equal(try(local, 10, 5, why, sizeof(why)), 0);
	fill(local, 'l', 64);
	local[0] = '"', local[1] = ' ', local[63] = '"';
	assert_int_equal(try(local, 10, 5, why, sizeof(why)), 0);
	fill(local, 'l', 66);
	local[0] = '"', local[1] = ' ', local[65] = '"';
	assert_int_equal(try(local, 10, 5, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "longer than 64"));

	/* Labels: 63 octets, then 64. */
	assert_int_equal(try("a", 63 + 3, 63, why, sizeof(why)), 0);
	assert_int_equal(try("a", 64 + 3, 64, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "longer than 63"));

	/* The whole address: 254 octets, then 255. */
	fill(local, 'l', 64);
	assert_int_equal(try(local, 254 - 65, 63, why, sizeof(why)), 0);
	assert_int_equal(try(local, 255 - 65, 63, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "longer than 254"));
	/* A 252-octet domain fits with a one-octet local part; 253 is a
	 * valid domain length but makes the address 255; 254 is not a
	 * valid domain. */
	assert_int_equal(try("a", 252, 63, why, sizeof(why)), 0);
	assert_int_equal(try("a", 253, 63, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "longer than 254"));
	assert_int_equal(try("a", 254, 63, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "domain is longer than 253"));
	/* Far too long input is refused up front. */
	assert_int_equal(try("a", 1500, 63, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "longer than 254"));
}

/* Lengths count after IDN conversion. */
static void
test_address_idn_length(void **state)
{
	/* 21 characters, 63 octets of UTF-8; "xn--" + 60 = 64 octets. */
	const char *in = "a@東京都千代田区丸の内一丁目二番三号株式会社.jp";
	char out[KR_ADDRESS_MAX];
	struct kr_err err = {0};

	(void)state;
	assert_int_equal(kr_address_normalize(in, strlen(in), out, &err), -1);
	assert_int_equal(err.code, KR_ERR_INVALID);
	assert_string_equal(out, "");

	/* And a short one converts. */
	assert_int_equal(kr_address_normalize("a@日本語.JP",
	                                      strlen("a@日本語.JP"), out, &err),
	                 0);
	assert_string_equal(out, "a@xn--wgv71a119e.jp");
}

static void
test_address_domain(void **state)
{
	(void)state;
	assert_string_equal(kr_address_domain("user@example.jp"), "example.jp");
	assert_string_equal(kr_address_domain("\"a@b\"@example.jp"),
	                    "example.jp");
	assert_string_equal(kr_address_domain("nodomain"), "");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_address_valid),
	    cmocka_unit_test(test_address_invalid),
	    cmocka_unit_test(test_address_not_terminated),
	    cmocka_unit_test(test_address_lengths),
	    cmocka_unit_test(test_address_idn_length),
	    cmocka_unit_test(test_address_domain),
	};

	return cmocka_run_group_tests_name("address", tests, NULL, NULL);
}
