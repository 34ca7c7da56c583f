/* test_web.c — the web module's pure helpers: escaping, templates,
 * content negotiation, text cleaning, X-Forwarded-For, rate limiting. */
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
#include "pages.h"
#include "web_int.h"

static void
test_web_html_escape(void **state)
{
	struct kr_buf b;

	(void)state;
	kr_buf_init(&b, 0);
	assert_int_equal(kr_web_html_escape(
	                     &b, "<script>alert('x&y')</script>\"ok\" 日本語"),
	                 0);
	assert_string_equal(b.data, "&lt;script&gt;alert(&#39;x&amp;y&#39;)"
	                            "&lt;/script&gt;&quot;ok&quot; 日本語");
	kr_buf_reset(&b);
	assert_int_equal(kr_web_html_escape(&b, NULL), 0);
	assert_int_equal(kr_web_html_escape(&b, ""), 0);
	assert_int_equal((int)b.len, 0);
	kr_buf_fini(&b);
	/* A capped buffer refuses rather than truncating. */
	kr_buf_init(&b, 8);
	assert_int_equal(kr_web_html_escape(&b, "<<<<"), -1);
	kr_buf_fini(&b);
}

static void
test_web_json_escape(void **state)
{
	struct kr_buf b;

	(void)state;
	kr_buf_init(&b, 0);
	assert_int_equal(kr_web_json_escape(&b, "a\"b\\c\nd\x01 é"), 0);
	assert_string_equal(b.data, "a\\\"b\\\\c\\u000ad\\u0001 é");
	kr_buf_fini(&b);
}

static void
test_web_render(void **state)
{
	struct kr_buf b;
	const struct kr_web_var vars[] = {
	    {"name", "<b>Tom & Jerry</b>", false},
	    {"raw", "<i>x</i>", true},
	    {"nul", NULL, false},
	};

	(void)state;
	kr_buf_init(&b, 0);
	assert_int_equal(
	    kr_web_render(&b,
	                  "A {{name}} B {{raw}} C {{nul}}{{unknown}} D {{ open",
	                  vars, 3),
	    0);
	assert_string_equal(b.data, "A &lt;b&gt;Tom &amp; Jerry&lt;/b&gt; B "
	                            "<i>x</i> C  D {{ open");
	kr_buf_fini(&b);
}

static void
test_web_accept(void **state)
{
	(void)state;
	assert_int_equal(kr_web_accept(NULL), KR_WEB_FMT_TEXT);
	assert_int_equal(kr_web_accept("*/*"), KR_WEB_FMT_TEXT);
	assert_int_equal(kr_web_accept("text/html,application/xhtml+xml,"
	                               "application/xml;q=0.9,*/*;q=0.8"),
	                 KR_WEB_FMT_HTML);
	assert_int_equal(kr_web_accept("application/json"), KR_WEB_FMT_JSON);
	assert_int_equal(kr_web_accept("application/json, text/html;q=0.5"),
	                 KR_WEB_FMT_JSON);
	assert_int_equal(kr_web_accept("Text/HTML"), KR_WEB_FMT_HTML);
	assert_int_equal(kr_web_accept("text/html;q=0, application/json"),
	                 KR_WEB_FMT_JSON);
	assert_int_equal(kr_web_accept("text/plain"), KR_WEB_FMT_TEXT);
	assert_int_equal(kr_web_accept("text/htmlx"), KR_WEB_FMT_TEXT);
}

static void
test_web_clean_text(void **state)
{
	char out[16];

	(void)state;
	kr_web_clean_text("  Mozilla/5.0\r\nX-Evil: 1 ", out, sizeof(out));
	assert_string_equal(out, "Mozilla/5.0  X-");
	kr_web_clean_text(NULL, out, sizeof(out));
	assert_string_equal(out, "");
	/* Cut on a character boundary: 5 × 3 bytes fit in 16, not 6. */
	kr_web_clean_text("日本語の名前です", out, sizeof(out));
	assert_string_equal(out, "日本語の名");
	/* Invalid UTF-8 and C1 controls become spaces. */
	kr_web_clean_text("a\xff"
	                  "b\xc2\x85"
	                  "c\xc3",
	                  out, sizeof(out));
	assert_string_equal(out, "a b c");
	kr_web_clean_text("tab\there", out, sizeof(out));
	assert_string_equal(out, "tab here");
}

static struct kr_web_nets *
nets(const char *a, const char *b)
{
	char *list[2];
	struct kr_web_nets *n = NULL;
	struct kr_err e;

	list[0] = (char *)(uintptr_t)a;
	list[1] = (char *)(uintptr_t)b;
	assert_int_equal(kr_web_nets_parse(list, b != NULL ? 2 : 1, &n, &e), 0);
	return n;
}

static void
test_web_nets(void **state)
{
	struct kr_web_nets *n;
	struct kr_err e;
	char s1[] = "10.0.0.0/33", s2[] = "proxy.example";
	char *bad[] = {s1}, *bad2[] = {s2};
	struct kr_web_nets *none = NULL;

	(void)state;
	n = nets("10.0.0.0/8", "fd00::/8");
	assert_true(kr_web_nets_match(n, "10.1.2.3"));
	assert_true(kr_web_nets_match(n, "::ffff:10.9.9.9"));
	assert_false(kr_web_nets_match(n, "11.0.0.1"));
	assert_true(kr_web_nets_match(n, "fd12::1"));
	assert_false(kr_web_nets_match(n, "fe80::1"));
	assert_false(kr_web_nets_match(n, "garbage"));
	assert_false(kr_web_nets_match(n, NULL));
	kr_web_nets_free(&n);
	assert_null(n);
	n = nets("192.168.1.128/25", NULL);
	assert_true(kr_web_nets_match(n, "192.168.1.200"));
	assert_false(kr_web_nets_match(n, "192.168.1.127"));
	kr_web_nets_free(&n);
	assert_int_equal(kr_web_nets_parse(bad, 1, &none, &e), -1);
	assert_non_null(strstr(e.msg, "10.0.0.0/33"));
	assert_int_equal(kr_web_nets_parse(bad2, 1, &none, &e), -1);
	assert_null(none);
	/* No proxies at all: nothing matches. */
	assert_int_equal(kr_web_nets_parse(NULL, 0, &n, &e), 0);
	assert_false(kr_web_nets_match(n, "127.0.0.1"));
	kr_web_nets_free(&n);
}

static void
test_web_client_ip(void **state)
{
	struct kr_web_nets *n;
	char out[KR_WEB_IP_MAX];

	(void)state;
	n = nets("127.0.0.1", "10.0.0.0/8");
	/* An untrusted peer: its X-Forwarded-For is not believed. */
	kr_web_client_ip(n, "203.0.113.9", "198.51.100.1", out);
	assert_string_equal(out, "203.0.113.9");
	/* No header: the peer. */
	kr_web_client_ip(n, "127.0.0.1", NULL, out);
	assert_string_equal(out, "127.0.0.1");
	/* The right-most untrusted hop; a spoofed left part is ignored. */
	kr_web_client_ip(n, "127.0.0.1", "1.2.3.4, 198.51.100.7, 10.0.0.5",
	                 out);
	assert_string_equal(out, "198.51.100.7");
	kr_web_client_ip(n, "::ffff:127.0.0.1", " 198.51.100.8 ", out);
	assert_string_equal(out, "198.51.100.8");
	/* Everything trusted: the left-most hop. */
	kr_web_client_ip(n, "127.0.0.1", "10.0.0.1,10.0.0.2", out);
	assert_string_equal(out, "10.0.0.1");
	/* Garbage hop: stop at the last trusted address. */
	kr_web_client_ip(n, "127.0.0.1", "198.51.100.1, <script>, 10.0.0.3",
	                 out);
	assert_string_equal(out, "10.0.0.3");
	kr_web_client_ip(n, "127.0.0.1", "bogus", out);
	assert_string_equal(out, "127.0.0.1");
	/* Empty hops are skipped; IPv6 is canonicalised. */
	kr_web_client_ip(n, "127.0.0.1", "2001:DB8:0:0::1,, ", out);
	assert_string_equal(out, "2001:db8::1");
	kr_web_nets_free(&n);
}

static void
test_web_rl(void **state)
{
	struct kr_web_rl *rl;
	unsigned retry = 0;
	int i;

	(void)state;
	rl = kr_web_rl_new(10.0 / 60.0, 20, 4);
	for (i = 0; i < 20; i++)
		assert_true(kr_web_rl_take(rl, "198.51.100.1", 100.0, &retry));
	assert_false(kr_web_rl_take(rl, "198.51.100.1", 100.0, &retry));
	assert_int_equal(retry, 6);
	/* Another client has its own bucket. */
	assert_true(kr_web_rl_take(rl, "198.51.100.2", 100.0, NULL));
	/* 6 s later one token is back, and only one. */
	assert_false(kr_web_rl_take(rl, "198.51.100.1", 103.0, &retry));
	assert_int_equal(retry, 3);
	assert_true(kr_web_rl_take(rl, "198.51.100.1", 106.0, NULL));
	assert_false(kr_web_rl_take(rl, "198.51.100.1", 106.0, NULL));
	/* A clock going back does not add tokens. */
	assert_false(kr_web_rl_take(rl, "198.51.100.1", 50.0, NULL));
	assert_int_equal(kr_web_rl_size(rl), 2);
	kr_web_rl_free(&rl);
	assert_null(rl);
	kr_web_rl_free(NULL);
}

/* A full table is stricter, not open: a flood of fresh keys (addresses
 * from a trusted proxy's X-Forwarded-For, a /48 of IPv6) shares one
 * overflow bucket; a refilled least recently used bucket is reused. */
static void
test_web_rl_full(void **state)
{
	struct kr_web_rl *rl;
	char key[32];
	int i, allowed = 0;

	(void)state;
	rl = kr_web_rl_new(10.0 / 60.0, 20, 4);
	for (i = 0; i < 4; i++) {
		snprintf(key, sizeof(key), "198.51.100.%d", i);
		assert_true(kr_web_rl_take(rl, key, 100.0, NULL));
	}
	assert_int_equal(kr_web_rl_size(rl), 4);
	/* 1,000 fresh keys at once: the burst of one client, no more. */
	for (i = 0; i < 1000; i++) {
		snprintf(key, sizeof(key), "203.0.113.%d/%d", i % 250, i);
		allowed += kr_web_rl_take(rl, key, 100.5, NULL);
	}
	assert_int_equal(allowed, 20);
	assert_int_equal(kr_web_rl_size(rl), 4);
	assert_int_equal(kr_web_rl_overflowed(rl), 1000);
	/* The tracked clients keep their own buckets meanwhile. */
	assert_true(kr_web_rl_take(rl, "198.51.100.3", 101.0, NULL));
	/* Once the least recently used bucket has refilled (20 tokens at
	 * 10 a minute: 2 minutes), a new key takes its place. */
	assert_true(kr_web_rl_take(rl, "192.0.2.1", 300.0, NULL));
	assert_int_equal(kr_web_rl_size(rl), 4);
	assert_int_equal(kr_web_rl_overflowed(rl), 1000);
	for (i = 0; i < 19; i++)
		assert_true(kr_web_rl_take(rl, "192.0.2.1", 300.0, NULL));
	assert_false(kr_web_rl_take(rl, "192.0.2.1", 300.0, NULL));
	kr_web_rl_free(&rl);
}

static void
test_web_client_key(void **state)
{
	char out[KR_WEB_IP_MAX];

	(void)state;
	kr_web_client_key("198.51.100.7", 64, out);
	assert_string_equal(out, "198.51.100.7");
	kr_web_client_key("::ffff:198.51.100.7", 64, out);
	assert_string_equal(out, "::ffff:198.51.100.7");
	/* Every address of a /64 is one client. */
	kr_web_client_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd", 64, out);
	assert_string_equal(out, "2001:db8:1:2::/64");
	kr_web_client_key("2001:db8:1:2::1", 64, out);
	assert_string_equal(out, "2001:db8:1:2::/64");
	kr_web_client_key("2001:db8:1:3::1", 64, out);
	assert_string_equal(out, "2001:db8:1:3::/64");
	kr_web_client_key("2001:db8:1:2ff::1", 56, out);
	assert_string_equal(out, "2001:db8:1:200::/56");
	kr_web_client_key("2001:db8::1", 128, out);
	assert_string_equal(out, "2001:db8::1");
	kr_web_client_key("unknown", 64, out);
	assert_string_equal(out, "unknown");
}

static void
test_web_conns(void **state)
{
	struct kr_web_conns *cs = kr_web_conns_new();

	(void)state;
	assert_int_equal(kr_web_conns_get(cs, "198.51.100.1"), 0);
	assert_int_equal(kr_web_conns_add(cs, "198.51.100.1", 1), 1);
	assert_int_equal(kr_web_conns_add(cs, "198.51.100.1", 1), 2);
	assert_int_equal(kr_web_conns_add(cs, "198.51.100.2", 1), 1);
	assert_int_equal(kr_web_conns_get(cs, "198.51.100.1"), 2);
	assert_int_equal(kr_web_conns_add(cs, "198.51.100.1", -1), 1);
	assert_int_equal(kr_web_conns_add(cs, "198.51.100.1", -1), 0);
	/* Never below zero; an unknown key stays unknown. */
	assert_int_equal(kr_web_conns_add(cs, "198.51.100.1", -1), 0);
	assert_int_equal(kr_web_conns_add(cs, "203.0.113.1", -1), 0);
	assert_int_equal(kr_web_conns_get(cs, "198.51.100.2"), 1);
	/* Check and add in one step, up to the limit. */
	assert_true(kr_web_conns_try_add(cs, "198.51.100.3", 2));
	assert_true(kr_web_conns_try_add(cs, "198.51.100.3", 2));
	assert_false(kr_web_conns_try_add(cs, "198.51.100.3", 2));
	assert_int_equal(kr_web_conns_get(cs, "198.51.100.3"), 2);
	kr_web_conns_free(&cs);
	assert_null(cs);
}

static void
test_web_address_reason_ja(void **state)
{
	(void)state;
	assert_null(kr_pages_address_reason("en", "the @ sign is missing"));
	assert_null(kr_pages_address_reason(NULL, "the @ sign is missing"));
	assert_string_equal(
	    kr_pages_address_reason("ja", "the @ sign is missing"),
	    "「@」がありません。");
	assert_string_equal(
	    kr_pages_address_reason("ja", "the @ sign and the domain are "
	                                  "missing"),
	    "「@」とドメイン（@より後ろの部分）がありません。");
	assert_string_equal(
	    kr_pages_address_reason("ja", "the address is longer than 254 "
	                                  "characters"),
	    "メールアドレスが長すぎます。");
	assert_non_null(strstr(
	    kr_pages_address_reason("ja", "the address contains full-width "
	                                  "characters; type it in half-width "
	                                  "(ASCII) characters"),
	    "全角文字"));
	assert_string_equal(kr_pages_address_reason("ja", "something new"),
	                    "メールアドレスの形式が正しくありません。");
	assert_string_equal(kr_pages_address_reason("ja", NULL),
	                    kr_pages_text("ja")->bad_address);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_web_html_escape),
	    cmocka_unit_test(test_web_json_escape),
	    cmocka_unit_test(test_web_render),
	    cmocka_unit_test(test_web_accept),
	    cmocka_unit_test(test_web_clean_text),
	    cmocka_unit_test(test_web_nets),
	    cmocka_unit_test(test_web_client_ip),
	    cmocka_unit_test(test_web_rl),
	    cmocka_unit_test(test_web_rl_full),
	    cmocka_unit_test(test_web_client_key),
	    cmocka_unit_test(test_web_conns),
	    cmocka_unit_test(test_web_address_reason_ja),
	};

	return cmocka_run_group_tests_name("web", tests, NULL, NULL);
}
