/* test_webhook.c — the webhook's JSON string encoding and its back-off
 * schedule. Delivery to a real HTTP receiver is in
 * tests/integration/test_webhook.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "buf.h"
#include "webhook.h"

static void
check(const char *in, const char *want)
{
	struct kr_buf b;

	kr_buf_init(&b, 0);
	assert_int_equal(kr_webhook_json_str(&b, in), 0);
	assert_string_equal(b.data, want);
	kr_buf_fini(&b);
}

static void
test_webhook_json_str(void **state)
{
	(void)state;
	check("", "\"\"");
	check("plain", "\"plain\"");
	check("a\"b\\c", "\"a\\\"b\\\\c\"");
	check("line\r\nnext\ttab\x01\x7f", "\"line\\u000d\\u000anext\\u0009tab"
					     "\\u0001\\u007f\"");
	/* UTF-8 passes whole; broken sequences become U+FFFD. */
	check("第12号 レポート", "\"第12号 レポート\"");
	check("\xe7\xac", "\"\\ufffd\\ufffd\"");
	check("a\xff" "b", "\"a\\ufffdb\"");
	check("\xc0\xaf", "\"\\ufffd\\ufffd\"");
	check("\xf0\x9f\x93\xa7", "\"\xf0\x9f\x93\xa7\"");
}

static void
test_webhook_json_cap(void **state)
{
	struct kr_buf b;

	(void)state;
	kr_buf_init(&b, 8);
	assert_int_equal(kr_webhook_json_str(&b, "far too long a string"),
	    -1);
	kr_buf_fini(&b);
}

static void
test_webhook_backoff(void **state)
{
	(void)state;
	assert_int_equal(kr_webhook_backoff(0), -1);
	assert_int_equal(kr_webhook_backoff(1), 0);
	assert_int_equal(kr_webhook_backoff(2), 1);
	assert_int_equal(kr_webhook_backoff(3), 2);
	assert_int_equal(kr_webhook_backoff(4), 4);
	assert_int_equal(kr_webhook_backoff(5), 8);
	assert_int_equal(kr_webhook_backoff(6), 16);
	assert_int_equal(kr_webhook_backoff(KR_WEBHOOK_TRIES + 1), -1);
}

static void
test_webhook_stop_unsent(void **state)
{
	struct kr_webhook *w = NULL;

	(void)state;
	/* Nothing listens on port 9 of a reserved test address: the event
	 * waits for its retry and stop drops it, without leaking. */
	assert_int_equal(kr_webhook_start("http://127.0.0.1:9/x", &w, NULL),
	    0);
	kr_webhook_post(w, "{\"event\":\"test\"}");
	kr_webhook_set_url(w, "http://127.0.0.1:9/y");
	kr_webhook_stop(&w);
	assert_null(w);
	kr_webhook_stop(&w);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_webhook_json_str),
	    cmocka_unit_test(test_webhook_json_cap),
	    cmocka_unit_test(test_webhook_backoff),
	    cmocka_unit_test(test_webhook_stop_unsent),
	};

	return cmocka_run_group_tests_name("webhook", tests, NULL, NULL);
}
