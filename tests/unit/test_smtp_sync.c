/* test_smtp_sync.c — reply accounting on exact transcripts: what the
 * client wrote, what the server sent, and where (if anywhere) the server
 * fell out of step. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "smtp_sync.h"

/* A transcript: lines "C:bytes" (client wrote) and "S:bytes" (server
 * sent, must be in step) or "X:bytes|n" (server sent; out of step at
 * offset n). "\n" in the strings is the octet LF; CRLF is written out. */
struct step {
	char who;
	const char *bytes;
	size_t bad_at; /* for X */
};

static void
run(const struct step *steps, size_t n)
{
	struct kr_smtp_sync y;
	size_t i, r;

	kr_smtp_sync_init(&y);
	for (i = 0; i < n; i++) {
		size_t len = strlen(steps[i].bytes);

		if (steps[i].who == 'C') {
			kr_smtp_sync_wrote(&y, steps[i].bytes, len);
			assert_false(y.broken);
			continue;
		}
		r = kr_smtp_sync_read(&y, steps[i].bytes, len);
		if (steps[i].who == 'S') {
			if (y.broken)
				print_error("step %zu: %s\n", i, y.why);
			assert_false(y.broken);
			assert_int_equal(r, len);
		} else {
			assert_true(y.broken);
			assert_int_equal(r, steps[i].bad_at);
			/* once out of step, nothing more is let through */
			assert_int_equal(kr_smtp_sync_read(&y, "250 ok\r\n", 8), 0);
			return;
		}
	}
}

#define RUN(...)                                                        \
	do {                                                            \
		static const struct step s_[] = {__VA_ARGS__};          \
		run(s_, sizeof(s_) / sizeof(s_[0]));                    \
	} while (0)

static void
test_sync_plain_session(void **state)
{
	struct kr_smtp_sync y;

	(void)state;
	RUN({'S', "220 relay ESMTP\r\n", 0},
	    {'C', "EHLO me\r\n", 0},
	    {'S', "250-relay\r\n250-PIPELINING\r\n250 8BITMIME\r\n", 0},
	    {'C', "MAIL FROM:<b@x>\r\n", 0}, {'S', "250 ok\r\n", 0},
	    {'C', "RCPT TO:<a@y>\r\nDATA\r\n", 0},
	    {'S', "250 ok\r\n354 go\r\n", 0},
	    {'C', "Subject: x\r\n\r\n..dot-stuffed\r\nbody\r\n.\r\n", 0},
	    {'S', "250 2.0.0 queued as X\r\n", 0}, {'C', "QUIT\r\n", 0},
	    {'S', "221 bye\r\n", 0});
	/* replies answered everything: nothing waits */
	kr_smtp_sync_init(&y);
	kr_smtp_sync_wrote(&y, "EHLO me\r\n", 9);
	assert_int_equal(kr_smtp_sync_waiting(&y), 2);
	assert_int_equal(kr_smtp_sync_read(&y, "220 hi\r\n250 ok\r\n", 16), 16);
	assert_int_equal(kr_smtp_sync_waiting(&y), 0);
	assert_int_equal(y.replies, 2);
}

/* RFC 2920: the next envelope behind a message's dot, replies joined or
 * split anywhere. */
static void
test_sync_pipelined_split_and_joined(void **state)
{
	(void)state;
	RUN({'S', "220 r\r\n", 0}, {'C', "EHLO me\r\n", 0},
	    {'S', "250 PIPELINING\r\n", 0},
	    {'C', "MAIL FROM:<b@x>\r\nRCPT TO:<a@y>\r\nDATA\r\n", 0},
	    {'S', "250 ok\r\n25", 0}, {'S', "0 ok\r\n354 g", 0},
	    {'S', "o\r\n", 0},
	    {'C', "body\r\n.\r\nMAIL FROM:<b@x>\r\nRCPT TO:<c@y>\r\nDATA\r\n",
	     0},
	    {'S', "250 q1\r\n250 ok\r\n250 ok\r\n354 go\r\n", 0},
	    {'C', "body 2\r\n.\r\n", 0}, {'S', "250 q2\r\n", 0});
}

/* A refused MAIL behind a dot: its RCPT and DATA are still answered
 * (with 503s) and count. */
static void
test_sync_refusals_count(void **state)
{
	(void)state;
	RUN({'S', "220 r\r\n", 0},
	    {'C', "EHLO me\r\nMAIL FROM:<b@x>\r\nRCPT TO:<a@y>\r\nDATA\r\n", 0},
	    {'S', "250 ok\r\n553-no\r\n553-such\r\n553 sender\r\n503 no mail\r\n"
	          "503 no rcpt\r\n",
	     0},
	    {'C', "RSET\r\nMAIL FROM:<b@x>\r\nRCPT TO:<a@y>\r\nDATA\r\n", 0},
	    {'S', "250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n", 0},
	    {'C', "x\r\n.\r\n", 0}, {'S', "451 4.3.0 try later\r\n", 0});
}

/* The hostile relays of the hardening issue. */
static void
test_sync_extra_lines_after_greeting(void **state)
{
	(void)state;
	/* in one read: the greeting is sound, the extra line is not */
	RUN({'X', "220 relay\r\n250 ok\r\n250 ok\r\n", 11});
	/* after EHLO: two replies for one command */
	RUN({'S', "220 relay\r\n", 0}, {'C', "EHLO me\r\n", 0},
	    {'X', "250 hi\r\n250 ok\r\n", 8});
}

static void
test_sync_2xx_to_data(void **state)
{
	(void)state;
	RUN({'S', "220 r\r\n", 0},
	    {'C', "EHLO me\r\nMAIL FROM:<b@x>\r\nRCPT TO:<a@y>\r\nDATA\r\n", 0},
	    {'X', "250 ok\r\n250 ok\r\n250 ok\r\n250 queued\r\n", 24});
}

/* A 354 and a 250 behind it before the content was written: the 250
 * answers nothing yet. */
static void
test_sync_reply_before_content(void **state)
{
	(void)state;
	RUN({'S', "220 r\r\n", 0}, {'C', "EHLO me\r\n", 0},
	    {'S', "250 ok\r\n", 0},
	    {'C', "MAIL FROM:<b@x>\r\nRCPT TO:<a@y>\r\nDATA\r\n", 0},
	    {'X', "250 ok\r\n250 ok\r\n354 go\r\n250 queued\r\n", 24});
	/* the same with the body half written (no dot yet) */
	RUN({'S', "220 r\r\n", 0}, {'C', "EHLO me\r\n", 0},
	    {'S', "250 ok\r\n", 0},
	    {'C', "MAIL FROM:<b@x>\r\nRCPT TO:<a@y>\r\nDATA\r\n", 0},
	    {'S', "250 ok\r\n250 ok\r\n354 go\r\n", 0},
	    {'C', "half a body\r\n.", 0}, {'X', "250 queued\r\n", 0});
}

/* Extra 250s after a dot: the first answers the dot, the second the
 * MAIL sent behind it, and so on until the DATA gets a 2xx. */
static void
test_sync_extra_250_after_dot(void **state)
{
	(void)state;
	RUN({'S', "220 r\r\n", 0}, {'C', "EHLO me\r\n", 0},
	    {'S', "250 ok\r\n", 0},
	    {'C', "MAIL FROM:<b@x>\r\nRCPT TO:<a@y>\r\nDATA\r\n", 0},
	    {'S', "250 ok\r\n250 ok\r\n354 go\r\n", 0},
	    {'C', "x\r\n.\r\nMAIL FROM:<b@x>\r\nRCPT TO:<c@y>\r\nDATA\r\n", 0},
	    {'S', "250 q1\r\n250 q1 again\r\n250 ok\r\n", 0},
	    {'X', "250 ok\r\n354 go\r\n", 0});
	/* without anything behind the dot: the second 250 answers nothing */
	RUN({'S', "220 r\r\n", 0}, {'C', "EHLO me\r\n", 0},
	    {'S', "250 ok\r\n", 0},
	    {'C', "MAIL FROM:<b@x>\r\nRCPT TO:<a@y>\r\nDATA\r\n", 0},
	    {'S', "250 ok\r\n250 ok\r\n354 go\r\n", 0}, {'C', "x\r\n.\r\n", 0},
	    {'X', "250 q1\r\n250 q1 again\r\n", 8});
}

static void
test_sync_malformed(void **state)
{
	(void)state;
	RUN({'X', "hello\r\n", 0});
	RUN({'X', "220 r\r\n\r\n", 7});
	RUN({'X', "120 r\r\n", 0});
	RUN({'X', "2200 r\r\n", 0});
	RUN({'X', "269 r\r\n", 0});
	/* a continuation with another code */
	RUN({'S', "220 r\r\n", 0}, {'C', "EHLO me\r\n", 0},
	    {'X', "250-r\r\n354 go\r\n", 0});
	/* a 3xx to MAIL */
	RUN({'S', "220 r\r\n", 0}, {'C', "MAIL FROM:<b@x>\r\n", 0},
	    {'X', "354 go\r\n", 0});
	/* a bare code line and LF-only lines are fine */
	RUN({'S', "220\r\n", 0}, {'C', "NOOP\r\n", 0}, {'S', "250\n", 0});
}

static void
test_sync_long_line(void **state)
{
	struct kr_smtp_sync y;
	char *b = malloc(3000);

	(void)state;
	kr_smtp_sync_init(&y);
	memset(b, 'x', 3000);
	memcpy(b, "220 ", 4);
	assert_int_equal(kr_smtp_sync_read(&y, b, 3000), 0);
	assert_true(y.broken);
	free(b);
}

/* RFC 3030: BDAT n LAST, then n octets that are not commands. */
static void
test_sync_bdat(void **state)
{
	(void)state;
	RUN({'S', "220 r\r\n", 0}, {'C', "EHLO me\r\n", 0},
	    {'S', "250 CHUNKING\r\n", 0},
	    {'C', "MAIL FROM:<b@x>\r\nRCPT TO:<a@y>\r\n", 0},
	    {'S', "250 ok\r\n250 ok\r\n", 0},
	    {'C', "BDAT 20 LAST\r\nDATA\r\nRCPT TO:<qq>\r\n", 0},
	    {'S', "250 2.0.0 Ok: 20 bytes\r\n", 0}, {'C', "QUIT\r\n", 0},
	    {'S', "221 bye\r\n", 0});
	/* a chunk split across writes is answered once it is whole */
	RUN({'S', "220 r\r\n", 0},
	    {'C', "MAIL FROM:<b@x>\r\nRCPT TO:<a@y>\r\nBDAT 10 LAST\r\n0123",
	     0},
	    {'S', "250 ok\r\n250 ok\r\n", 0}, {'C', "456789", 0},
	    {'S', "250 chunk\r\n", 0});
	/* ... and a reply before that answers nothing */
	RUN({'S', "220 r\r\n", 0},
	    {'C', "MAIL FROM:<b@x>\r\nRCPT TO:<a@y>\r\nBDAT 10 LAST\r\n0123",
	     0},
	    {'X', "250 ok\r\n250 ok\r\n250 early\r\n", 16});
}

/* AUTH: 334 challenges, each answered by one client line. */
static void
test_sync_auth(void **state)
{
	(void)state;
	RUN({'S', "220 r\r\n", 0}, {'C', "EHLO me\r\n", 0},
	    {'S', "250 AUTH LOGIN PLAIN\r\n", 0}, {'C', "AUTH LOGIN\r\n", 0},
	    {'S', "334 VXNlcm5hbWU6\r\n", 0}, {'C', "dXNlcg==\r\n", 0},
	    {'S', "334 UGFzc3dvcmQ6\r\n", 0}, {'C', "cGFzcw==\r\n", 0},
	    {'S', "235 2.7.0 ok\r\n", 0});
}

/* An unsolicited 421 (RFC 5321 §3.8) is let through, never a success. */
static void
test_sync_unsolicited_421(void **state)
{
	struct kr_smtp_sync y;

	(void)state;
	RUN({'S', "220 r\r\n", 0}, {'C', "EHLO me\r\n", 0},
	    {'S', "250 ok\r\n421 4.4.2 closing\r\n", 0});
	kr_smtp_sync_init(&y);
	assert_int_equal(kr_smtp_sync_read(&y, "220 r\r\n421 bye\r\n", 16), 16);
	assert_int_equal(kr_smtp_sync_waiting(&y), 0);
	assert_int_equal(y.replies, 1);
}

/* Every octet fed one at a time gives the same verdicts. */
static void
test_sync_bytewise(void **state)
{
	static const char c1[] = "EHLO me\r\nMAIL FROM:<b@x>\r\nRCPT TO:<a@y>\r\n"
	                         "DATA\r\n";
	static const char s1[] = "220 r\r\n250-a\r\n250 b\r\n250 ok\r\n250 ok\r\n"
	                         "354 go\r\n";
	static const char c2[] = ".\r\n";
	struct kr_smtp_sync y;
	size_t i;

	(void)state;
	kr_smtp_sync_init(&y);
	for (i = 0; i < sizeof(c1) - 1; i++)
		kr_smtp_sync_wrote(&y, c1 + i, 1);
	for (i = 0; i < sizeof(s1) - 1; i++)
		assert_int_equal(kr_smtp_sync_read(&y, s1 + i, 1), 1);
	/* an empty message: the dot right at the content's start */
	for (i = 0; i < sizeof(c2) - 1; i++)
		kr_smtp_sync_wrote(&y, c2 + i, 1);
	assert_int_equal(kr_smtp_sync_waiting(&y), 1);
	assert_int_equal(kr_smtp_sync_read(&y, "250 q\r\n", 7), 7);
	assert_int_equal(kr_smtp_sync_waiting(&y), 0);
	assert_int_equal(kr_smtp_sync_read(&y, "250 x\r\n", 7), 0);
	assert_true(y.broken);
}

/* The end of data is found wherever the writes split the content, and
 * only there: near misses (a stuffed "..", a bare LF, a lone CR) do not
 * end it. Each body is followed by "." CRLF and a pipelined RSET; every
 * split into two writes, and into three for the short ones, must leave
 * exactly the dot and the RSET waiting. */
static void
feed_content(const char *s, size_t len, size_t a, size_t b)
{
	static const char c1[] = "MAIL FROM:<b@x>\r\nRCPT TO:<a@y>\r\nDATA\r\n";
	static const char s1[] = "220 r\r\n250 ok\r\n250 ok\r\n354 go\r\n";
	struct kr_smtp_sync y;

	kr_smtp_sync_init(&y);
	kr_smtp_sync_wrote(&y, c1, sizeof(c1) - 1);
	assert_int_equal(kr_smtp_sync_read(&y, s1, sizeof(s1) - 1),
	                 sizeof(s1) - 1);
	assert_int_equal(kr_smtp_sync_waiting(&y), 0);
	kr_smtp_sync_wrote(&y, s, a);
	kr_smtp_sync_wrote(&y, s + a, b - a);
	kr_smtp_sync_wrote(&y, s + b, len - b);
	assert_false(y.broken);
	assert_int_equal(kr_smtp_sync_waiting(&y), 2);
	assert_int_equal(kr_smtp_sync_awaits(&y, 0), KR_SA_DOT);
	assert_int_equal(kr_smtp_sync_awaits(&y, 1), KR_SA_COMMAND);
}

static void
test_sync_end_of_data_any_split(void **state)
{
	static const char *const bodies[] = {
	    "",
	    "a\r\n",
	    "..\r\n",
	    "\r\n",
	    "x\r\r\n",
	    "x\r\n.\r\r\n",
	    "x\n.\r\ny\r\n",
	    "xy\n.\r\nz\r\n",
	    "\r\n\r\n..\r\n.x\r\n",
	    "abc\r\n.\rx\r\n",
	    "..\r\n..\r\n\r\n",
	    "\r\r\r\n.\r\r\n\r\n",
	    "a.\r\n.b\r\n",
	    "x\r\n.\n\r\n",
	    "...\r\na.b.c.\r\n.x\r\n",
	    ".\r.\r\n\r.\n\r\n",
	};
	char long_line[3000];
	char long_dots[3000];
	char s[4096];
	size_t k, len, a, b;

	(void)state;
	memset(long_line, 'q', sizeof(long_line) - 3);
	memcpy(long_line + sizeof(long_line) - 3, "\r\n", 3);
	/* a line of dots: the dot search stops at each */
	memset(long_dots, '.', sizeof(long_dots) - 3);
	memcpy(long_dots + sizeof(long_dots) - 3, "\r\n", 3);
	for (k = 0; k <= sizeof(bodies) / sizeof(bodies[0]) + 1; k++) {
		size_t nb = sizeof(bodies) / sizeof(bodies[0]);
		const char *body = k < nb ? bodies[k]
		                   : k == nb ? long_line : long_dots;

		len = (size_t)snprintf(s, sizeof(s), "%s.\r\nRSET\r\n", body);
		for (a = 0; a <= len; a++)
			feed_content(s, len, a, a);
		if (len > 64)
			continue;
		for (a = 0; a <= len; a++)
			for (b = a; b <= len; b++)
				feed_content(s, len, a, b);
	}
}

/* The last octet of the end of data not yet written: nothing waits. */
static void
test_sync_end_of_data_not_yet(void **state)
{
	static const char c1[] = "MAIL FROM:<b@x>\r\nRCPT TO:<a@y>\r\nDATA\r\n";
	static const char s1[] = "220 r\r\n250 ok\r\n250 ok\r\n354 go\r\n";
	static const char body[] = "line\r\n..\r\nmore\r\n.\r";
	struct kr_smtp_sync y;
	size_t i;

	(void)state;
	for (i = 0; i <= sizeof(body) - 1; i++) {
		kr_smtp_sync_init(&y);
		kr_smtp_sync_wrote(&y, c1, sizeof(c1) - 1);
		assert_int_equal(kr_smtp_sync_read(&y, s1, sizeof(s1) - 1),
		                 sizeof(s1) - 1);
		kr_smtp_sync_wrote(&y, body, i);
		kr_smtp_sync_wrote(&y, body + i, sizeof(body) - 1 - i);
		assert_int_equal(kr_smtp_sync_waiting(&y), 0);
		/* and a reply now is one to a message not fully sent */
		assert_int_equal(kr_smtp_sync_read(&y, "250 q\r\n", 7), 0);
		assert_true(y.broken);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sync_plain_session),
	    cmocka_unit_test(test_sync_pipelined_split_and_joined),
	    cmocka_unit_test(test_sync_refusals_count),
	    cmocka_unit_test(test_sync_extra_lines_after_greeting),
	    cmocka_unit_test(test_sync_2xx_to_data),
	    cmocka_unit_test(test_sync_reply_before_content),
	    cmocka_unit_test(test_sync_extra_250_after_dot),
	    cmocka_unit_test(test_sync_malformed),
	    cmocka_unit_test(test_sync_long_line),
	    cmocka_unit_test(test_sync_bdat),
	    cmocka_unit_test(test_sync_auth),
	    cmocka_unit_test(test_sync_unsolicited_421),
	    cmocka_unit_test(test_sync_bytewise),
	    cmocka_unit_test(test_sync_end_of_data_any_split),
	    cmocka_unit_test(test_sync_end_of_data_not_yet),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
