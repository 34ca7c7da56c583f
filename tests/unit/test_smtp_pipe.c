/* test_smtp_pipe.c — sending ahead of libESMTP and reply accounting
 * (lib/smtp_pipe.c) on exact transcripts: what libESMTP writes, what the
 * relay sends, and for each step the exact bytes that go on the wire,
 * the exact bytes libESMTP is given to read, and the outcome recorded
 * for each message's end of data. Every scenario runs twice: with each
 * relay read whole (several replies joined in one read, as written
 * here), and fed to the pipe one octet at a time (replies split). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "smtp_pipe.h"

struct sim {
	struct kr_smtp_pipe *p;
	bool split;      /* relay reads one octet at a time */
	char pend[4096]; /* libESMTP's writes not sent yet */
	size_t n_pend;
	char out[4096];  /* what the last flush put on the wire */
	char seen[4096]; /* what libESMTP was given of the last read */
	char tail[4096]; /* the start of a line still coming */
	size_t n_tail;
};

static void
sim_init(struct sim *s, bool ahead, bool split)
{
	memset(s, 0, sizeof(*s));
	s->split = split;
	s->p = kr_smtp_pipe_new();
	assert_int_equal(kr_smtp_pipe_add(s->p, "b@x", "a0@y", 10), 0);
	assert_int_equal(kr_smtp_pipe_add(s->p, "b@x", "a1@y", 10), 1);
	assert_int_equal(kr_smtp_pipe_add(s->p, "b@x", "a2@y", 10), 2);
	kr_smtp_pipe_connected(s->p, ahead);
}

static void
sim_fini(struct sim *s)
{
	kr_smtp_pipe_free(&s->p);
	assert_null(s->p);
	kr_smtp_pipe_free(&s->p); /* NULL is fine */
}

/* libESMTP writes b: returns how many of its octets had gone ahead (they
 * are not sent again), -1 when b is not what went ahead. */
static int
lw(struct sim *s, const char *b)
{
	size_t n = strlen(b), skip = 99;

	if (kr_smtp_pipe_write(s->p, b, n, &skip) < 0)
		return -1;
	assert_true(skip <= n);
	memcpy(s->pend + s->n_pend, b + skip, n - skip);
	s->n_pend += n - skip;
	return (int)skip;
}

/* libESMTP waits for a reply: what it wrote leaves, with what the pipe
 * sends behind it. Returns the octets that went on the wire. */
static const char *
flush(struct sim *s)
{
	const char *a = NULL;
	size_t k = 0, len;

	if (s->n_pend > 0)
		k = kr_smtp_pipe_ahead(s->p, s->pend, s->n_pend, &a);
	memcpy(s->out, s->pend, s->n_pend);
	if (k > 0)
		memcpy(s->out + s->n_pend, a, k);
	len = s->n_pend + k;
	s->out[len] = '\0';
	if (len > 0)
		kr_smtp_pipe_sent(s->p, s->out, len);
	s->n_pend = 0;
	return s->out;
}

/* The relay sends b: returns what libESMTP is given to read. As the
 * engine does (sess_read()), libESMTP gets whole lines only: the start of
 * a line waits for its end, and is dropped when the pipe ends the
 * connection. */
static const char *
relay(struct sim *s, const char *b)
{
	size_t n = strlen(b), i, o = s->n_tail, k, whole;
	char c, buf[4096];

	memcpy(buf, s->tail, s->n_tail);
	if (s->split) {
		for (i = 0; i < n; i++) {
			c = b[i];
			k = kr_smtp_pipe_read(s->p, &c, 1);
			assert_true(k <= 1);
			if (k == 1)
				buf[o++] = c;
		}
	} else {
		memcpy(buf + o, b, n);
		k = kr_smtp_pipe_read(s->p, buf + o, n);
		assert_true(k <= n);
		o += k;
	}
	for (whole = o; whole > 0 && buf[whole - 1] != '\n'; whole--)
		;
	memcpy(s->seen, buf, whole);
	s->seen[whole] = '\0';
	s->n_tail = o - whole;
	memcpy(s->tail, buf + whole, s->n_tail);
	if (kr_smtp_pipe_state(s->p, NULL) != KR_SMTP_PIPE_OK)
		s->n_tail = 0;
	return s->seen;
}

static enum kr_smtp_pipe_state
state(const struct sim *s, const char *why_has)
{
	const char *why = NULL;
	enum kr_smtp_pipe_state st = kr_smtp_pipe_state(s->p, &why);

	assert_non_null(why);
	if (why_has != NULL && strstr(why, why_has) == NULL)
		fail_msg("why \"%s\" does not say \"%s\"", why, why_has);
	return st;
}

#define SAME(got, want) assert_string_equal((got), (want))
#define EHLO_R "250-relay\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
#define BODY0 "Subject: 0\r\n\r\n..dot\r\nbody\r\n.\r\n"
#define BODY1 "Subject: 1\r\n\r\nbody 1\r\n.\r\n"
#define BODY2 "Subject: 2\r\n\r\nbody 2\r\n.\r\n"
#define ENV1 "MAIL FROM:<b@x>\r\nRCPT TO:<a1@y>\r\nDATA\r\n"
#define ENV2 "MAIL FROM:<b@x>\r\nRCPT TO:<a2@y>\r\nDATA\r\n"

/* Greeting, EHLO, and the first message's envelope as libESMTP writes it
 * (MAIL alone, then RCPT + DATA together): nothing goes ahead yet, and
 * then the pipe knows it may (mode 1). Ends at message 0's 354. */
static void
start(struct sim *s)
{
	SAME(relay(s, "220 relay ESMTP\r\n"), "220 relay ESMTP\r\n");
	assert_int_equal(lw(s, "EHLO me\r\n"), 0);
	SAME(flush(s), "EHLO me\r\n");
	SAME(relay(s, EHLO_R), EHLO_R);
	assert_int_equal(kr_smtp_pipe_mode(s->p), 0);
	assert_int_equal(lw(s, "MAIL FROM:<b@x>\r\n"), 0);
	SAME(flush(s), "MAIL FROM:<b@x>\r\n");
	SAME(relay(s, "250 2.1.0 ok\r\n"), "250 2.1.0 ok\r\n");
	assert_int_equal(lw(s, "RCPT TO:<a0@y>\r\nDATA\r\n"), 0);
	SAME(flush(s), "RCPT TO:<a0@y>\r\nDATA\r\n");
	assert_int_equal(kr_smtp_pipe_mode(s->p), 1);
	SAME(relay(s, "250 2.1.5 ok\r\n354 go ahead\r\n"),
	     "250 2.1.5 ok\r\n354 go ahead\r\n");
	assert_int_equal(kr_smtp_pipe_n_ahead(s->p), 0);
}

/* Message i's content and dot (libESMTP read it to its end first). */
static const char *
body(struct sim *s, size_t i, const char *b)
{
	kr_smtp_pipe_eof(s->p, i);
	assert_int_equal(lw(s, b), 0);
	return flush(s);
}

/* Three messages, each next envelope behind the previous dot: one round
 * trip a message; libESMTP's own copies of those envelopes never leave
 * twice; every reply reaches libESMTP; each dot's reply is recorded for
 * its own message. */
static void
test_pipe_sends_ahead_behind_each_dot(void **state_)
{
	struct sim s;
	int split;

	(void)state_;
	for (split = 0; split < 2; split++) {
		sim_init(&s, true, split);
		start(&s);
		SAME(body(&s, 0, BODY0), BODY0 ENV1);
		assert_int_equal(kr_smtp_pipe_n_ahead(s.p), 1);
		/* waiting for the dot's reply, not for the MAIL's */
		assert_false(kr_smtp_pipe_timed_out(s.p));
		assert_int_equal(kr_smtp_pipe_outcome(s.p, 0), 0);
		SAME(relay(&s, "250 2.0.0 queued as A\r\n"),
		     "250 2.0.0 queued as A\r\n");
		assert_int_equal(kr_smtp_pipe_outcome(s.p, 0), 250);
		kr_smtp_pipe_done(s.p, 0);
		/* libESMTP writes the MAIL that already went */
		assert_int_equal(lw(&s, "MAIL FROM:<b@x>\r\n"), 17);
		SAME(flush(&s), "");
		SAME(relay(&s, "250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n"),
		     "250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n");
		assert_int_equal(lw(&s, "RCPT TO:<a1@y>\r\nDATA\r\n"), 22);
		SAME(flush(&s), "");
		SAME(body(&s, 1, BODY1), BODY1 ENV2);
		/* the reply to the dot and the next envelope's, joined */
		SAME(relay(&s, "250 2.0.0 queued as B\r\n250 ok\r\n"),
		     "250 2.0.0 queued as B\r\n250 ok\r\n");
		kr_smtp_pipe_done(s.p, 1);
		/* libESMTP's MAIL and RCPT+DATA as separate writes */
		assert_int_equal(lw(&s, "MAIL FROM:<b@x>\r\n"), 17);
		assert_int_equal(lw(&s, "RCPT TO:<a2@y>\r\n"), 16);
		assert_int_equal(lw(&s, "DATA\r\n"), 6);
		SAME(flush(&s), "");
		SAME(relay(&s, "250 ok\r\n354 go\r\n"), "250 ok\r\n354 go\r\n");
		/* the last message: nothing behind its dot */
		SAME(body(&s, 2, BODY2), BODY2);
		SAME(relay(&s, "250 2.0.0 queued as C\r\n"),
		     "250 2.0.0 queued as C\r\n");
		kr_smtp_pipe_done(s.p, 2);
		assert_int_equal(lw(&s, "QUIT\r\n"), 0);
		SAME(flush(&s), "QUIT\r\n");
		SAME(relay(&s, "221 bye\r\n"), "221 bye\r\n");
		assert_int_equal(kr_smtp_pipe_outcome(s.p, 0), 250);
		assert_int_equal(kr_smtp_pipe_outcome(s.p, 1), 250);
		assert_int_equal(kr_smtp_pipe_outcome(s.p, 2), 250);
		assert_int_equal(kr_smtp_pipe_n_ahead(s.p), 2);
		assert_int_equal(state(&s, NULL), KR_SMTP_PIPE_OK);
		/* greeting, EHLO, MAIL, RCPT, DATA, 3 x (dot MAIL RCPT DATA)
		 * but the last without an envelope, QUIT */
		assert_int_equal(kr_smtp_pipe_replies(s.p), 5 + 4 + 4 + 1 + 1);
		sim_fini(&s);
	}
}

/* MAIL FROM with SIZE= (the relay offers SIZE): learnt from libESMTP's
 * first MAIL, and the envelopes sent ahead carry it too. */
static void
test_pipe_size_parameter(void **state_)
{
	struct sim s;

	(void)state_;
	sim_init(&s, true, false);
	SAME(relay(&s, "220 hi\r\n"), "220 hi\r\n");
	lw(&s, "EHLO me\r\n");
	SAME(flush(&s), "EHLO me\r\n");
	SAME(relay(&s, "250-hi\r\n250-SIZE 100\r\n250 PIPELINING\r\n"),
	     "250-hi\r\n250-SIZE 100\r\n250 PIPELINING\r\n");
	lw(&s, "MAIL FROM:<b@x> SIZE=10\r\n");
	SAME(flush(&s), "MAIL FROM:<b@x> SIZE=10\r\n");
	SAME(relay(&s, "250 ok\r\n"), "250 ok\r\n");
	lw(&s, "RCPT TO:<a0@y>\r\nDATA\r\n");
	SAME(flush(&s), "RCPT TO:<a0@y>\r\nDATA\r\n");
	SAME(relay(&s, "250 ok\r\n354 go\r\n"), "250 ok\r\n354 go\r\n");
	SAME(body(&s, 0, BODY0),
	     BODY0 "MAIL FROM:<b@x> SIZE=10\r\nRCPT TO:<a1@y>\r\nDATA\r\n");
	SAME(relay(&s, "250 queued\r\n"), "250 queued\r\n");
	kr_smtp_pipe_done(s.p, 0);
	/* a MAIL without SIZE= now is not what went: never sent as is */
	assert_int_equal(lw(&s, "MAIL FROM:<b@x>\r\n"), -1);
	assert_int_equal(state(&s, "other than what went ahead"),
	                 KR_SMTP_PIPE_END);
	SAME(relay(&s, "250 ok\r\n"), "");
	sim_fini(&s);
}

/* A MAIL sent ahead behind a dot is refused, one-line (451) or
 * multi-line (553): libESMTP reads the refusal as the reply to the MAIL
 * it then writes (not sent again), never the replies to the RCPT and
 * DATA that went with it (it never wrote those); the next message's MAIL
 * then goes alone, with its RCPT and DATA behind it. */
static void
refused_mail(const char *refusal, bool split)
{
	struct sim s;
	char want[256];

	sim_init(&s, true, split);
	start(&s);
	SAME(body(&s, 0, BODY0), BODY0 ENV1);
	/* everything in one read: the dot's 250, the refusal, the two
	 * 503s that cascade from it */
	snprintf(want, sizeof(want), "250 2.0.0 queued\r\n%s", refusal);
	{
		char all[512];

		snprintf(all, sizeof(all),
		         "%s503 5.5.1 need MAIL\r\n503 5.5.1 need RCPT\r\n",
		         want);
		SAME(relay(&s, all), want);
	}
	assert_int_equal(kr_smtp_pipe_outcome(s.p, 0), 250);
	kr_smtp_pipe_done(s.p, 0);
	assert_int_equal(lw(&s, "MAIL FROM:<b@x>\r\n"), 17);
	SAME(flush(&s), "");
	kr_smtp_pipe_done(s.p, 1); /* libESMTP: its MAIL was refused */
	/* a lone MAIL: its RCPT and DATA go with it */
	assert_int_equal(lw(&s, "MAIL FROM:<b@x>\r\n"), 0);
	SAME(flush(&s), ENV2);
	assert_false(kr_smtp_pipe_timed_out(s.p)); /* not behind a dot */
	SAME(relay(&s, "250 ok\r\n250 ok\r\n354 go\r\n"),
	     "250 ok\r\n250 ok\r\n354 go\r\n");
	assert_int_equal(lw(&s, "RCPT TO:<a2@y>\r\nDATA\r\n"), 22);
	SAME(flush(&s), "");
	SAME(body(&s, 2, BODY2), BODY2);
	SAME(relay(&s, "250 queued\r\n"), "250 queued\r\n");
	assert_int_equal(kr_smtp_pipe_outcome(s.p, 1), 0);
	assert_int_equal(kr_smtp_pipe_outcome(s.p, 2), 250);
	assert_int_equal(state(&s, NULL), KR_SMTP_PIPE_OK);
	assert_int_equal(kr_smtp_pipe_n_ahead(s.p), 2);
	sim_fini(&s);
}

static void
test_pipe_refused_mail_behind_dot(void **state_)
{
	int split;

	(void)state_;
	for (split = 0; split < 2; split++) {
		refused_mail("451 4.3.0 try later\r\n", split);
		refused_mail("553-5.7.1 sender\r\n553-5.7.1 is\r\n"
		             "553 5.7.1 not welcome here\r\n",
		             split);
	}
}

/* A refused lone MAIL (its RCPT and DATA went ahead): the two replies
 * cascading from it are taken out, and libESMTP's next MAIL is written
 * as it is. */
static void
test_pipe_refused_lone_mail(void **state_)
{
	struct sim s;
	int split;

	(void)state_;
	for (split = 0; split < 2; split++) {
		sim_init(&s, true, split);
		start(&s);
		SAME(body(&s, 0, BODY0), BODY0 ENV1);
		SAME(relay(&s, "250 queued\r\n553 no\r\n503 a\r\n503 b\r\n"),
		     "250 queued\r\n553 no\r\n");
		kr_smtp_pipe_done(s.p, 0);
		assert_int_equal(lw(&s, "MAIL FROM:<b@x>\r\n"), 17);
		kr_smtp_pipe_done(s.p, 1);
		assert_int_equal(lw(&s, "MAIL FROM:<b@x>\r\n"), 0);
		SAME(flush(&s), ENV2);
		SAME(relay(&s, "550-5.7.1 sender\r\n550 5.7.1 refused\r\n"
		               "503 5.5.1 no MAIL\r\n554 5.5.1 no valid "
		               "recipients\r\n"),
		     "550-5.7.1 sender\r\n550 5.7.1 refused\r\n");
		kr_smtp_pipe_done(s.p, 2);
		assert_int_equal(lw(&s, "QUIT\r\n"), 0); /* nothing left over */
		SAME(flush(&s), "QUIT\r\n");
		SAME(relay(&s, "221 bye\r\n"), "221 bye\r\n");
		assert_int_equal(state(&s, NULL), KR_SMTP_PIPE_OK);
		assert_int_equal(kr_smtp_pipe_outcome(s.p, 2), 0);
		sim_fini(&s);
	}
}

/* 451 at the dot, with the next envelope behind it: libESMTP gets the
 * 451, then the connection ends (it would RSET while the relay waits for
 * content); nothing the relay says after it reaches libESMTP. At the
 * last dot (nothing behind it) a 451 is an ordinary reply. */
static void
test_pipe_451_at_the_dot(void **state_)
{
	struct sim s;
	int split;

	(void)state_;
	for (split = 0; split < 2; split++) {
		sim_init(&s, true, split);
		start(&s);
		SAME(body(&s, 0, BODY0), BODY0 ENV1);
		SAME(relay(&s, "451 4.3.0 disk full\r\n250 ok\r\n250 ok\r\n"),
		     "451 4.3.0 disk full\r\n");
		assert_int_equal(state(&s, "refused end of data"),
		                 KR_SMTP_PIPE_END);
		assert_int_equal(kr_smtp_pipe_outcome(s.p, 0), 451);
		SAME(relay(&s, "354 go\r\n"), "");
		sim_fini(&s);

		sim_init(&s, true, split);
		kr_smtp_pipe_done(s.p, 1);
		kr_smtp_pipe_done(s.p, 2);
		start(&s);
		SAME(body(&s, 0, BODY0), BODY0);
		SAME(relay(&s, "451 4.3.0 disk full\r\n"),
		     "451 4.3.0 disk full\r\n");
		assert_int_equal(state(&s, NULL), KR_SMTP_PIPE_OK);
		assert_int_equal(kr_smtp_pipe_outcome(s.p, 0), 451);
		assert_int_equal(lw(&s, "RSET\r\n"), 0);
		SAME(flush(&s), "RSET\r\n");
		SAME(relay(&s, "250 reset\r\n"), "250 reset\r\n");
		sim_fini(&s);
	}
}

/* A relay that throws away what comes behind a dot: the dot is answered,
 * the MAIL sent ahead never is. When libESMTP's wait then times out, the
 * pipe says so (the engine stops sending ahead to that relay); a wait
 * that times out on anything else does not. */
static void
test_pipe_relay_discards_pipelined_input(void **state_)
{
	struct sim s;

	(void)state_;
	sim_init(&s, true, false);
	start(&s);
	assert_false(kr_smtp_pipe_timed_out(s.p)); /* waits for 354 */
	SAME(body(&s, 0, BODY0), BODY0 ENV1);
	assert_false(kr_smtp_pipe_timed_out(s.p)); /* waits for the dot */
	SAME(relay(&s, "250 queued\r\n"), "250 queued\r\n");
	kr_smtp_pipe_done(s.p, 0);
	assert_int_equal(lw(&s, "MAIL FROM:<b@x>\r\n"), 17);
	SAME(flush(&s), "");
	assert_true(kr_smtp_pipe_timed_out(s.p));
	sim_fini(&s);

	/* the next connection, without sending ahead: nothing goes ahead
	 * and no timeout is blamed on it */
	sim_init(&s, false, false);
	kr_smtp_pipe_done(s.p, 0);
	SAME(relay(&s, "220 hi\r\n"), "220 hi\r\n");
	lw(&s, "EHLO me\r\n");
	SAME(flush(&s), "EHLO me\r\n");
	SAME(relay(&s, EHLO_R), EHLO_R);
	lw(&s, "MAIL FROM:<b@x>\r\n");
	SAME(flush(&s), "MAIL FROM:<b@x>\r\n");
	assert_false(kr_smtp_pipe_timed_out(s.p));
	SAME(relay(&s, "250 ok\r\n"), "250 ok\r\n");
	lw(&s, "RCPT TO:<a1@y>\r\nDATA\r\n");
	SAME(flush(&s), "RCPT TO:<a1@y>\r\nDATA\r\n");
	SAME(relay(&s, "250 ok\r\n354 go\r\n"), "250 ok\r\n354 go\r\n");
	SAME(body(&s, 1, BODY1), BODY1);
	assert_int_equal(kr_smtp_pipe_n_ahead(s.p), 0);
	assert_int_equal(kr_smtp_pipe_mode(s.p), -1);
	sim_fini(&s);
}

/* Replies that must never count as success. Each ends the session as out
 * of step before the reply, which libESMTP never sees, and no message
 * whose content did not leave has a 2xx outcome. */
static void
test_pipe_desync_250_to_data(void **state_)
{
	struct sim s;
	int split;

	(void)state_;
	for (split = 0; split < 2; split++) {
		/* a 250 to DATA: the content was never sent */
		sim_init(&s, true, split);
		SAME(relay(&s, "220 hi\r\n"), "220 hi\r\n");
		lw(&s, "EHLO me\r\n");
		SAME(flush(&s), "EHLO me\r\n");
		SAME(relay(&s, EHLO_R), EHLO_R);
		lw(&s, "MAIL FROM:<b@x>\r\n");
		SAME(flush(&s), "MAIL FROM:<b@x>\r\n");
		SAME(relay(&s, "250 ok\r\n"), "250 ok\r\n");
		lw(&s, "RCPT TO:<a0@y>\r\nDATA\r\n");
		SAME(flush(&s), "RCPT TO:<a0@y>\r\nDATA\r\n");
		SAME(relay(&s, "250 ok\r\n250 2.0.0 queued\r\n"), "250 ok\r\n");
		assert_int_equal(state(&s, "2xx reply to DATA"),
		                 KR_SMTP_PIPE_DESYNC);
		assert_int_equal(kr_smtp_pipe_outcome(s.p, 0), 0);
		SAME(relay(&s, "250 ok\r\n"), "");
		sim_fini(&s);
	}
}

static void
test_pipe_desync_stray_after_greeting(void **state_)
{
	struct sim s;
	int split;

	(void)state_;
	for (split = 0; split < 2; split++) {
		sim_init(&s, true, split);
		SAME(relay(&s, "220 hi\r\n250 ok\r\n250 ok\r\n"), "220 hi\r\n");
		assert_int_equal(state(&s, "answers no command"),
		                 KR_SMTP_PIPE_DESYNC);
		sim_fini(&s);
		/* a multi-line greeting is one reply; a line of another
		 * code in it is not */
		sim_init(&s, true, split);
		SAME(relay(&s, "220-hi\r\n220 there\r\n"),
		     "220-hi\r\n220 there\r\n");
		assert_int_equal(state(&s, NULL), KR_SMTP_PIPE_OK);
		lw(&s, "EHLO me\r\n");
		SAME(flush(&s), "EHLO me\r\n");
		SAME(relay(&s, "250-relay\r\n354 x\r\n"), "250-relay\r\n");
		assert_int_equal(state(&s, "different codes"),
		                 KR_SMTP_PIPE_DESYNC);
		sim_fini(&s);
	}
}

/* Extra 250s after a dot: with nothing behind the dot the second one
 * answers nothing; with the next envelope behind it, the surplus reaches
 * DATA (a 2xx to DATA) or, once the envelope is answered, the next
 * message's end of data before its content left. Neither is taken for
 * that next message's outcome. */
static void
test_pipe_desync_extra_250_after_dot(void **state_)
{
	struct sim s;
	int split;

	(void)state_;
	for (split = 0; split < 2; split++) {
		sim_init(&s, true, split);
		kr_smtp_pipe_done(s.p, 1);
		kr_smtp_pipe_done(s.p, 2);
		start(&s);
		SAME(body(&s, 0, BODY0), BODY0);
		SAME(relay(&s, "250 queued\r\n250 queued\r\n"),
		     "250 queued\r\n");
		assert_int_equal(state(&s, "answers no command"),
		                 KR_SMTP_PIPE_DESYNC);
		assert_int_equal(kr_smtp_pipe_outcome(s.p, 0), 250);
		sim_fini(&s);

		sim_init(&s, true, split);
		start(&s);
		SAME(body(&s, 0, BODY0), BODY0 ENV1);
		SAME(relay(&s, "250 queued\r\n250 ok\r\n250 ok\r\n250 ok\r\n"),
		     "250 queued\r\n250 ok\r\n250 ok\r\n");
		assert_int_equal(state(&s, "2xx reply to DATA"),
		                 KR_SMTP_PIPE_DESYNC);
		assert_int_equal(kr_smtp_pipe_outcome(s.p, 1), 0);
		sim_fini(&s);

		/* a "250" for message 1's dot before its content was sent */
		sim_init(&s, true, split);
		start(&s);
		SAME(body(&s, 0, BODY0), BODY0 ENV1);
		SAME(relay(&s, "250 queued\r\n250 ok\r\n250 ok\r\n354 go\r\n"
		               "250 queued as B\r\n"),
		     "250 queued\r\n250 ok\r\n250 ok\r\n354 go\r\n");
		assert_int_equal(state(&s, "answers no command"),
		                 KR_SMTP_PIPE_DESYNC);
		assert_int_equal(kr_smtp_pipe_outcome(s.p, 0), 250);
		assert_int_equal(kr_smtp_pipe_outcome(s.p, 1), 0);
		/* nothing more is sent ahead or let through */
		kr_smtp_pipe_eof(s.p, 1);
		assert_int_equal(lw(&s, "MAIL FROM:<b@x>\r\n"), 0);
		SAME(flush(&s), "MAIL FROM:<b@x>\r\n");
		SAME(relay(&s, "250 ok\r\n"), "");
		sim_fini(&s);
	}
}

/* Malformed replies and a 421 that comes unasked: the 421 is passed
 * (RFC 5321 §3.8) and never taken for anything's success. */
static void
test_pipe_malformed_and_421(void **state_)
{
	struct sim s;
	int split;

	(void)state_;
	for (split = 0; split < 2; split++) {
		sim_init(&s, true, split);
		start(&s);
		SAME(body(&s, 0, BODY0), BODY0 ENV1);
		SAME(relay(&s, "250 queued\r\nhello\r\n"), "250 queued\r\n");
		assert_int_equal(state(&s, "malformed"), KR_SMTP_PIPE_DESYNC);
		sim_fini(&s);

		sim_init(&s, true, split);
		kr_smtp_pipe_done(s.p, 1);
		kr_smtp_pipe_done(s.p, 2);
		start(&s);
		SAME(body(&s, 0, BODY0), BODY0);
		SAME(relay(&s, "250 queued\r\n421 4.3.2 going down\r\n"),
		     "250 queued\r\n421 4.3.2 going down\r\n");
		assert_int_equal(state(&s, NULL), KR_SMTP_PIPE_OK);
		assert_int_equal(kr_smtp_pipe_outcome(s.p, 0), 250);
		sim_fini(&s);
	}
}

/* CHUNKING: libESMTP writes RCPT and BDAT with the content at once, so
 * the first message shows sending ahead is not for this connection:
 * nothing goes ahead. The reply to BDAT ... LAST is the message's
 * outcome, a chunk's reply before it is not. */
static void
test_pipe_bdat(void **state_)
{
	struct sim s;
	int split;

	(void)state_;
	for (split = 0; split < 2; split++) {
		sim_init(&s, true, split);
		SAME(relay(&s, "220 hi\r\n"), "220 hi\r\n");
		lw(&s, "EHLO me\r\n");
		SAME(flush(&s), "EHLO me\r\n");
		SAME(relay(&s, "250-hi\r\n250-CHUNKING\r\n250 PIPELINING\r\n"),
		     "250-hi\r\n250-CHUNKING\r\n250 PIPELINING\r\n");
		lw(&s, "MAIL FROM:<b@x>\r\n");
		SAME(flush(&s), "MAIL FROM:<b@x>\r\n");
		SAME(relay(&s, "250 ok\r\n"), "250 ok\r\n");
		kr_smtp_pipe_eof(s.p, 0);
		lw(&s, "RCPT TO:<a0@y>\r\nBDAT 10 LAST\r\n.\r\n.\r\nxyzw");
		SAME(flush(&s),
		     "RCPT TO:<a0@y>\r\nBDAT 10 LAST\r\n.\r\n.\r\nxyzw");
		assert_int_equal(kr_smtp_pipe_mode(s.p), -1);
		SAME(relay(&s, "250 ok\r\n250 2.0.0 queued\r\n"),
		     "250 ok\r\n250 2.0.0 queued\r\n");
		assert_int_equal(kr_smtp_pipe_outcome(s.p, 0), 250);
		kr_smtp_pipe_done(s.p, 0);
		/* message 1 in two chunks, the last empty, its content
		 * read to the end before the first */
		lw(&s, "MAIL FROM:<b@x>\r\n");
		SAME(flush(&s), "MAIL FROM:<b@x>\r\n");
		SAME(relay(&s, "250 ok\r\n"), "250 ok\r\n");
		kr_smtp_pipe_eof(s.p, 1);
		lw(&s, "RCPT TO:<a1@y>\r\nBDAT 4\r\nab\r\n");
		SAME(flush(&s), "RCPT TO:<a1@y>\r\nBDAT 4\r\nab\r\n");
		SAME(relay(&s, "250 ok\r\n250 4 octets\r\n"),
		     "250 ok\r\n250 4 octets\r\n");
		assert_int_equal(kr_smtp_pipe_outcome(s.p, 1), 0);
		lw(&s, "BDAT 0 LAST\r\n");
		SAME(flush(&s), "BDAT 0 LAST\r\n");
		SAME(relay(&s, "452 4.3.1 full\r\n"), "452 4.3.1 full\r\n");
		assert_int_equal(kr_smtp_pipe_outcome(s.p, 1), 452);
		assert_int_equal(kr_smtp_pipe_n_ahead(s.p), 0);
		assert_int_equal(state(&s, NULL), KR_SMTP_PIPE_OK);
		sim_fini(&s);
	}
}

/* A MAIL that is not the one expected (another sender than the first
 * message without an outcome) stops sending ahead on that connection;
 * a new connection starts over, and a message sent again has no outcome
 * until its new end of data is answered. */
static void
test_pipe_unexpected_mail_and_new_connection(void **state_)
{
	struct sim s;

	(void)state_;
	sim_init(&s, true, false);
	SAME(relay(&s, "220 hi\r\n"), "220 hi\r\n");
	lw(&s, "EHLO me\r\n");
	SAME(flush(&s), "EHLO me\r\n");
	SAME(relay(&s, EHLO_R), EHLO_R);
	lw(&s, "MAIL FROM:<other@x>\r\n");
	SAME(flush(&s), "MAIL FROM:<other@x>\r\n");
	assert_int_equal(kr_smtp_pipe_mode(s.p), -1);
	SAME(relay(&s, "250 ok\r\n"), "250 ok\r\n");

	/* a new connection: message 0 again, sending ahead allowed */
	kr_smtp_pipe_connected(s.p, true);
	assert_int_equal(kr_smtp_pipe_mode(s.p), 0);
	assert_int_equal(kr_smtp_pipe_replies(s.p), 0);
	start(&s);
	SAME(body(&s, 0, BODY0), BODY0 ENV1);
	SAME(relay(&s, "250 queued\r\n"), "250 queued\r\n");
	assert_int_equal(kr_smtp_pipe_outcome(s.p, 0), 250);
	kr_smtp_pipe_connected(s.p, true);
	kr_smtp_pipe_eof(s.p, 0); /* sent again: unknown until answered */
	assert_int_equal(kr_smtp_pipe_outcome(s.p, 0), 0);
	sim_fini(&s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_pipe_sends_ahead_behind_each_dot),
	    cmocka_unit_test(test_pipe_size_parameter),
	    cmocka_unit_test(test_pipe_refused_mail_behind_dot),
	    cmocka_unit_test(test_pipe_refused_lone_mail),
	    cmocka_unit_test(test_pipe_451_at_the_dot),
	    cmocka_unit_test(test_pipe_relay_discards_pipelined_input),
	    cmocka_unit_test(test_pipe_desync_250_to_data),
	    cmocka_unit_test(test_pipe_desync_stray_after_greeting),
	    cmocka_unit_test(test_pipe_desync_extra_250_after_dot),
	    cmocka_unit_test(test_pipe_malformed_and_421),
	    cmocka_unit_test(test_pipe_bdat),
	    cmocka_unit_test(test_pipe_unexpected_mail_and_new_connection),
	};

	return cmocka_run_group_tests_name("smtp_pipe", tests, NULL, NULL);
}
