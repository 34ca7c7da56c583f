/* test_governor.c — the governor's decision on exact numbers: the
 * thresholds are reached exactly at rate × sent (no float slack either
 * way), min_sent holds every rule back, 0 turns a rule off, and only
 * complaints or bounces beyond those acknowledged at a resume count. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "governor.h"

static const struct kr_governor_policy defaults = {0.001, 0.05, 1000};

static enum kr_governor_verdict
decide(const struct kr_governor_policy *p, int64_t sent, int64_t complaints,
       int64_t hard, int64_t ack_c, int64_t ack_b)
{
	struct kr_governor_figures f;

	memset(&f, 0, sizeof(f));
	f.sent = sent;
	f.complaints = complaints;
	f.hard_bounces = hard;
	f.ack_complaints = ack_c;
	f.ack_bounces = ack_b;
	return kr_governor_decide(p, &f);
}

static void
test_governor_complaints(void **state)
{
	(void)state;
	/* 0.1 %: 1 of 1000, 2 of 2000, 3 of 3000 pause; one copy more
	 * sent and it does not */
	assert_int_equal(decide(&defaults, 1000, 1, 0, 0, 0),
	                 KR_GOVERNOR_COMPLAINTS);
	assert_int_equal(decide(&defaults, 1001, 1, 0, 0, 0), KR_GOVERNOR_SEND);
	assert_int_equal(decide(&defaults, 2000, 2, 0, 0, 0),
	                 KR_GOVERNOR_COMPLAINTS);
	assert_int_equal(decide(&defaults, 2001, 2, 0, 0, 0), KR_GOVERNOR_SEND);
	assert_int_equal(decide(&defaults, 3000, 3, 0, 0, 0),
	                 KR_GOVERNOR_COMPLAINTS);
	assert_int_equal(decide(&defaults, 1000000, 999, 0, 0, 0),
	                 KR_GOVERNOR_SEND);
	assert_int_equal(decide(&defaults, 1000000, 1000, 0, 0, 0),
	                 KR_GOVERNOR_COMPLAINTS);
	/* no complaint at all never pauses */
	assert_int_equal(decide(&defaults, 5000, 0, 0, 0, 0), KR_GOVERNOR_SEND);
}

static void
test_governor_min_sent(void **state)
{
	(void)state;
	/* 10 complaints of 999 copies: 1 %, but under min_sent */
	assert_int_equal(decide(&defaults, 999, 10, 100, 0, 0),
	                 KR_GOVERNOR_SEND);
	assert_int_equal(decide(&defaults, 0, 10, 100, 0, 0), KR_GOVERNOR_SEND);
	{
		struct kr_governor_policy p = {0.001, 0.05, 0};

		assert_int_equal(decide(&p, 1, 1, 0, 0, 0),
		                 KR_GOVERNOR_COMPLAINTS);
		assert_int_equal(decide(&p, 0, 1, 0, 0, 0), KR_GOVERNOR_SEND);
	}
}

static void
test_governor_bounces(void **state)
{
	(void)state;
	/* 5 %: 50 of 1000, 100 of 2000 */
	assert_int_equal(decide(&defaults, 1000, 0, 49, 0, 0), KR_GOVERNOR_SEND);
	assert_int_equal(decide(&defaults, 1000, 0, 50, 0, 0),
	                 KR_GOVERNOR_BOUNCES);
	assert_int_equal(decide(&defaults, 2000, 0, 99, 0, 0), KR_GOVERNOR_SEND);
	assert_int_equal(decide(&defaults, 2000, 0, 100, 0, 0),
	                 KR_GOVERNOR_BOUNCES);
	/* both over: complaints are named */
	assert_int_equal(decide(&defaults, 2000, 2, 100, 0, 0),
	                 KR_GOVERNOR_COMPLAINTS);
}

static void
test_governor_off_and_ack(void **state)
{
	struct kr_governor_policy off = {0, 0, 0};
	struct kr_governor_policy only_b = {0, 0.05, 1000};

	(void)state;
	assert_int_equal(decide(&off, 1000, 1000, 1000, 0, 0), KR_GOVERNOR_SEND);
	assert_int_equal(decide(&only_b, 1000, 1000, 49, 0, 0),
	                 KR_GOVERNOR_SEND);
	/* resumed with 2 complaints of 2000 seen: over the rate, but
	 * nothing new */
	assert_int_equal(decide(&defaults, 2000, 2, 0, 2, 0), KR_GOVERNOR_SEND);
	assert_int_equal(decide(&defaults, 2100, 3, 0, 2, 0),
	                 KR_GOVERNOR_COMPLAINTS);
	assert_int_equal(decide(&defaults, 3001, 3, 0, 2, 0), KR_GOVERNOR_SEND);
	assert_int_equal(decide(&defaults, 2000, 0, 100, 0, 100),
	                 KR_GOVERNOR_SEND);
	assert_int_equal(decide(&defaults, 2000, 0, 101, 0, 100),
	                 KR_GOVERNOR_BOUNCES);
	/* 0.3 %, 0.15 %: parts per million, exact */
	{
		struct kr_governor_policy p = {0.003, 0, 0};
		struct kr_governor_policy q = {0.0015, 0, 0};

		assert_int_equal(decide(&p, 1000, 3, 0, 0, 0),
		                 KR_GOVERNOR_COMPLAINTS);
		assert_int_equal(decide(&p, 1001, 3, 0, 0, 0), KR_GOVERNOR_SEND);
		assert_int_equal(decide(&q, 2000, 3, 0, 0, 0),
		                 KR_GOVERNOR_COMPLAINTS);
		assert_int_equal(decide(&q, 2001, 3, 0, 0, 0), KR_GOVERNOR_SEND);
	}
}

/* kr_governor_possible is true whenever some number of copies sent would
 * make the decision pause, and false for counts that cannot. */
static void
test_governor_possible(void **state)
{
	struct kr_governor_policy pols[] = {{0.001, 0.05, 1000},
	                                    {0.003, 0, 0},
	                                    {0, 0.05, 100},
	                                    {0.0015, 0.02, 10}};
	int64_t sent, c, h, ack;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(pols) / sizeof(pols[0]); i++)
		for (c = 0; c <= 4; c++)
			for (h = 0; h <= 60; h += 3)
				for (ack = 0; ack <= 2; ack++) {
					bool any = false;

					for (sent = 0; sent <= 4000 && !any;
					     sent += 7)
						any = decide(&pols[i], sent, c, h, ack,
						             ack) != KR_GOVERNOR_SEND;
					if (any)
						assert_true(kr_governor_possible(
						    &pols[i], c, h, ack, ack));
				}
	/* 0 complaints, 0 bounces: never */
	assert_false(kr_governor_possible(&defaults, 0, 0, 0, 0));
	/* 1 complaint can reach 0.1 % at 1000 sent; 1 under ack cannot */
	assert_true(kr_governor_possible(&defaults, 1, 0, 0, 0));
	assert_false(kr_governor_possible(&defaults, 1, 0, 1, 0));
	/* 49 hard bounces cannot reach 5 % of min_sent 1000 */
	assert_false(kr_governor_possible(&defaults, 0, 49, 0, 0));
	assert_true(kr_governor_possible(&defaults, 0, 50, 0, 0));
}

static void
test_governor_describe(void **state)
{
	struct kr_governor_figures f;
	struct kr_governor_policy off = {0, 0.05, 1000};
	char line[256];

	(void)state;
	memset(&f, 0, sizeof(f));
	f.sent = 2000;
	f.complaints = 3;
	f.hard_bounces = 1;
	kr_governor_describe(KR_GOVERNOR_COMPLAINTS, &defaults, &f, line,
	                     sizeof(line));
	assert_string_equal(line,
	                    "paused by the governor: complaints reached "
	                    "governor.complaint_rate: complaints 3 of 2000 sent "
	                    "(0.15%, limit 0.1%), hard bounces 1 (0.05%, limit "
	                    "5%)");
	kr_governor_describe(KR_GOVERNOR_SEND, &off, &f, line, sizeof(line));
	assert_string_equal(line, "complaints 3 of 2000 sent (0.15%, limit off), "
	                          "hard bounces 1 (0.05%, limit 5%)");
	f.sent = 0;
	f.complaints = f.hard_bounces = 0;
	kr_governor_describe(KR_GOVERNOR_SEND, &defaults, &f, line,
	                     sizeof(line));
	assert_string_equal(line, "complaints 0 of 0 sent (0%, limit 0.1%), "
	                          "hard bounces 0 (0%, limit 5%)");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_governor_complaints),
	    cmocka_unit_test(test_governor_min_sent),
	    cmocka_unit_test(test_governor_bounces),
	    cmocka_unit_test(test_governor_off_and_ack),
	    cmocka_unit_test(test_governor_possible),
	    cmocka_unit_test(test_governor_describe),
	};

	return cmocka_run_group_tests_name("governor", tests, NULL, NULL);
}
