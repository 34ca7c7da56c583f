/* test_delivery.c — the delivery engine's arithmetic: token buckets,
 * back-off on "slow down" replies, the retry schedule with jitter and the
 * max_age deadline. The pool itself is exercised by the integration tests
 * against a real SMTP server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "delivery_int.h"
#include "log.h"

static void
test_delivery_bucket_unlimited(void **state)
{
	struct kr_delivery_bucket b;
	int i;

	(void)state;
	kr_delivery_bucket_init(&b, 0, 100.0);
	for (i = 0; i < 100000; i++)
		assert_true(kr_delivery_bucket_take(&b, 100.0) == 0);
	assert_true(kr_delivery_bucket_rate(&b, 100.0) == 0);
}

static void
test_delivery_bucket_rate(void **state)
{
	struct kr_delivery_bucket b;
	double now = 1000.0, w;
	int taken = 0, i;

	(void)state;
	kr_delivery_bucket_init(&b, 10, now);
	/* A full bucket gives one second's worth at once... */
	for (i = 0; i < 100; i++)
		if (kr_delivery_bucket_take(&b, now) == 0)
			taken++;
	assert_int_equal(taken, 10);
	/* ...then one token each 1/10 s. */
	w = kr_delivery_bucket_take(&b, now);
	assert_true(w > 0.099 && w < 0.101);
	assert_true(kr_delivery_bucket_take(&b, now + 0.05) > 0);
	assert_true(kr_delivery_bucket_take(&b, now + 0.1) == 0);
	assert_true(kr_delivery_bucket_take(&b, now + 0.1) > 0);
	/* Over 10 simulated seconds, at most rate × t + burst pass. */
	taken = 0;
	for (i = 0; i < 10000; i++)
		if (kr_delivery_bucket_take(&b, now + 0.1 + i * 0.001) == 0)
			taken++;
	assert_in_range(taken, 99, 101);
}

static void
test_delivery_bucket_slow_rate(void **state)
{
	struct kr_delivery_bucket b;

	(void)state;
	/* Below one per second the burst is still one message. */
	kr_delivery_bucket_init(&b, 0.5, 0);
	assert_true(kr_delivery_bucket_take(&b, 0) == 0);
	assert_true(kr_delivery_bucket_take(&b, 1.0) > 0.99);
	assert_true(kr_delivery_bucket_take(&b, 2.0) == 0);
}

static void
test_delivery_bucket_backoff(void **state)
{
	struct kr_delivery_bucket b;
	double now = 50.0;
	int i;

	(void)state;
	kr_delivery_bucket_init(&b, 20, now);
	kr_delivery_bucket_backoff(&b, now, 60);
	assert_true(kr_delivery_bucket_rate(&b, now) == 10);
	kr_delivery_bucket_backoff(&b, now, 60);
	assert_true(kr_delivery_bucket_rate(&b, now + 1) == 5);
	for (i = 0; i < 10; i++)
		kr_delivery_bucket_backoff(&b, now, 60);
	/* Never below 1/16 of the configured rate. */
	assert_true(kr_delivery_bucket_rate(&b, now + 1) == 20.0 / 16);
	/* And back to the full rate once the hold is over. */
	assert_true(kr_delivery_bucket_rate(&b, now + 61) == 20);
	/* Drain, then the refill runs at the reduced rate. */
	kr_delivery_bucket_init(&b, 20, 0);
	while (kr_delivery_bucket_take(&b, 0) == 0)
		;
	kr_delivery_bucket_backoff(&b, 0, 60);
	assert_true(kr_delivery_bucket_take(&b, 0.06) > 0);
	assert_true(kr_delivery_bucket_take(&b, 0.1) == 0);
}

static void
test_delivery_bucket_set_rate(void **state)
{
	struct kr_delivery_bucket b;

	(void)state;
	kr_delivery_bucket_init(&b, 100, 0);
	/* A reload to a lower rate caps the tokens at the new burst. */
	kr_delivery_bucket_set_rate(&b, 2, 0);
	assert_true(kr_delivery_bucket_take(&b, 0) == 0);
	assert_true(kr_delivery_bucket_take(&b, 0) == 0);
	assert_true(kr_delivery_bucket_take(&b, 0) > 0);
	/* And to unlimited. */
	kr_delivery_bucket_set_rate(&b, 0, 0);
	assert_true(kr_delivery_bucket_take(&b, 0) == 0);
}

static const unsigned retry[] = {300, 900, 3600, 14400, 43200};

static void
test_delivery_retry_schedule(void **state)
{
	int64_t next = 0, q = 1000000, now;
	int a;

	(void)state;
	for (a = 0; a < 5; a++) {
		now = q + 10 * a;
		assert_int_equal(kr_delivery_retry_next(retry, 5, 3 * 86400,
				     a, q, now, 0.5, &next),
		    0);
		assert_int_equal(next, now + retry[a]);
	}
	/* Retries exhausted. */
	assert_int_equal(kr_delivery_retry_next(retry, 5, 3 * 86400, 5, q,
			     q + 10, 0.5, &next),
	    1);
	/* No schedule at all: fail at once. */
	assert_int_equal(kr_delivery_retry_next(retry, 0, 0, 0, q, q, 0.5,
			     &next),
	    1);
	assert_int_equal(kr_delivery_retry_next(retry, 5, 0, -1, q, q, 0.5,
			     &next),
	    1);
}

static void
test_delivery_retry_jitter(void **state)
{
	int64_t next = 0, q = 5000, lo = INT64_MAX, hi = 0;
	int i;

	(void)state;
	for (i = 0; i < 1000; i++) {
		assert_int_equal(kr_delivery_retry_next(retry, 5, 0, 2, q, q,
				     i / 1000.0, &next),
		    0);
		if (next < lo)
			lo = next;
		if (next > hi)
			hi = next;
	}
	/* ±10 % of one hour, both ends reached. */
	assert_int_equal(lo, q + 3240);
	assert_in_range(hi, q + 3955, q + 3960);
	/* An out-of-range random number is not trusted. */
	assert_int_equal(kr_delivery_retry_next(retry, 5, 0, 0, q, q, 7.0,
			     &next),
	    0);
	assert_int_equal(next, q + 300);
}

static void
test_delivery_retry_short(void **state)
{
	static const unsigned one[] = {1, 2};
	int64_t next = 0;

	(void)state;
	/* One second with jitter still lands one second later, never now. */
	assert_int_equal(kr_delivery_retry_next(one, 2, 3600, 0, 10, 10, 0.0,
			     &next),
	    0);
	assert_int_equal(next, 11);
	assert_int_equal(kr_delivery_retry_next(one, 2, 3600, 1, 10, 11,
			     0.999, &next),
	    0);
	assert_int_equal(next, 13);
}

static void
test_delivery_retry_max_age(void **state)
{
	int64_t next = 0, q = 1000;

	(void)state;
	/* Past max_age: failed, even with retries left. */
	assert_int_equal(kr_delivery_retry_next(retry, 5, 3600, 1, q,
			     q + 3600, 0.5, &next),
	    1);
	/* The next try would fall after the deadline: it is moved onto
	 * the deadline, the last chance. */
	assert_int_equal(kr_delivery_retry_next(retry, 5, 3600, 2, q, q + 100,
			     0.5, &next),
	    0);
	assert_int_equal(next, q + 3600);
	assert_int_equal(kr_delivery_retry_next(retry, 5, 3600, 3, q, next,
			     0.5, &next),
	    1);
}

static void
test_delivery_slowdown(void **state)
{
	(void)state;
	assert_true(kr_delivery_is_slowdown(421, "4.7.0 busy"));
	assert_true(kr_delivery_is_slowdown(421, NULL));
	assert_true(kr_delivery_is_slowdown(450, "4.7.1 rate limited"));
	assert_true(kr_delivery_is_slowdown(451, "451 4.7.1 slow down"));
	assert_false(kr_delivery_is_slowdown(451, "4.3.0 try later"));
	assert_false(kr_delivery_is_slowdown(452, "452 4.2.2 mailbox full"));
	assert_false(kr_delivery_is_slowdown(550, "5.7.1 rejected"));
	assert_false(kr_delivery_is_slowdown(450, NULL));
	assert_false(kr_delivery_is_slowdown(450, ""));
	assert_false(kr_delivery_is_slowdown(0, "4.7.1"));
}


/* Relays quote the recipient in their replies; above debug level no
 * address may reach the log, at debug the reply is kept whole. */
static void
test_delivery_log_reply_masks_addresses(void **state)
{
	char out[256];

	(void)state;
	kr_log_set_level(KR_LOG_INFO);
	kr_delivery_log_reply("550 5.1.1 <taro@example.jp>: Recipient address "
	                      "rejected: User unknown",
	    out, sizeof(out));
	assert_string_equal(out, "550 5.1.1 <***>: Recipient address "
	                         "rejected: User unknown");
	kr_delivery_log_reply("452 4.2.2 mailbox full hanako@example.org", out,
	    sizeof(out));
	assert_string_equal(out, "452 4.2.2 mailbox full ***");
	kr_delivery_log_reply("250 2.0.0 Ok: queued as 4Xz1", out, sizeof(out));
	assert_string_equal(out, "250 2.0.0 Ok: queued as 4Xz1");
	kr_delivery_log_reply(NULL, out, sizeof(out));
	assert_string_equal(out, "");
	kr_delivery_log_reply("550 a@b.jp", out, 8);
	assert_null(strchr(out, '@'));
	assert_string_equal(out, "550 ***");
	kr_log_set_level(KR_LOG_DEBUG);
	kr_delivery_log_reply("550 <a@b.jp>", out, sizeof(out));
	assert_string_equal(out, "550 <a@b.jp>");
	kr_log_set_level(KR_LOG_INFO);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_delivery_log_reply_masks_addresses),
	    cmocka_unit_test(test_delivery_bucket_unlimited),
	    cmocka_unit_test(test_delivery_bucket_rate),
	    cmocka_unit_test(test_delivery_bucket_slow_rate),
	    cmocka_unit_test(test_delivery_bucket_backoff),
	    cmocka_unit_test(test_delivery_bucket_set_rate),
	    cmocka_unit_test(test_delivery_retry_schedule),
	    cmocka_unit_test(test_delivery_retry_jitter),
	    cmocka_unit_test(test_delivery_retry_short),
	    cmocka_unit_test(test_delivery_retry_max_age),
	    cmocka_unit_test(test_delivery_slowdown),
	};

	return cmocka_run_group_tests_name("delivery", tests, NULL, NULL);
}
