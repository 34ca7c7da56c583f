/* smtp_pipe.c — sending ahead of libESMTP and the accounting of the
 * replies; see smtp_pipe.h.
 *
 * Why ahead at all: libESMTP 1.1 pipelines RCPT TO and DATA, but waits for
 * the reply to MAIL FROM before it writes them (a TODO in its cmd_mail():
 * it cannot discard the replies cascading from a refused MAIL), and for
 * the reply to the final dot before the next MAIL: three round trips per
 * message against a relay without CHUNKING, and on a busy relay most of a
 * message's time (bench/RESULTS.md). RFC 2920 lets a client send the next
 * envelope right behind the message's dot ("the transfer of message
 * content is explicitly allowed to be the first command in a group").
 *
 * Every command written is numbered in the order the relay must answer
 * (its sequence number: the replies matched before it plus its place in
 * smtp_sync's queue), and each number carries a role: a plain command, the
 * dot with an envelope behind it, a MAIL whose RCPT and DATA went ahead,
 * or a reply libESMTP must not see. The roles are decided when the bytes
 * are sent and acted on when the reply is complete, so a reply split over
 * reads or several replies in one read change nothing. */
#include "smtp_pipe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_sync.h"
#include "xmem.h"

#define NONE ((size_t)-1)
#define QN KR_SMTP_SYNC_MAXQ

enum role {
	R_PASS = 0,
	R_DOT,      /* an end of data with the next envelope behind it */
	R_MAIL,     /* a MAIL whose RCPT TO and DATA went ahead */
	R_MAIL_DOT, /* ... that itself went behind a dot */
	R_DROP,     /* after a refused R_MAIL: libESMTP never wrote it */
};

struct env {
	const char *from, *rcpt;
	size_t size;
	bool done;
	int outcome;
};

struct kr_smtp_pipe {
	struct env *env;
	size_t n_env, cap;
	int mode;      /* -1 off, 0 not known yet, 1 on */
	size_t learn;  /* the message whose lone MAIL FROM just went */
	int mail_size; /* MAIL FROM carries SIZE=: 1, 0, -1 unknown */
	size_t eof;    /* the message whose end of data goes next */
	char xp[700];  /* sent ahead: what libESMTP writes next */
	size_t xp_len, xp_off;
	size_t xp_mail;  /* of which the MAIL FROM line (0: none) */
	size_t pend_msg; /* xp awaits kr_smtp_pipe_sent() for it */
	bool pend_dot;
	uint64_t ahead_end; /* the first command after the last group */
	unsigned char role[QN];
	unsigned char aw[QN];
	size_t msg[QN];
	struct kr_smtp_sync sync;
	enum kr_smtp_pipe_state state;
	char why[160];
	unsigned long n_ahead;
};

struct kr_smtp_pipe *
kr_smtp_pipe_new(void)
{
	struct kr_smtp_pipe *p = kr_xcalloc(1, sizeof(*p));

	kr_smtp_pipe_connected(p, false);
	return p;
}

void
kr_smtp_pipe_free(struct kr_smtp_pipe **p)
{
	if (p == NULL || *p == NULL)
		return;
	free((*p)->env);
	free(*p);
	*p = NULL;
}

size_t
kr_smtp_pipe_add(struct kr_smtp_pipe *p, const char *from, const char *rcpt,
                 size_t size)
{
	struct env *e;

	if (p->n_env == p->cap) {
		p->cap = p->cap ? p->cap * 2 : 16;
		p->env = kr_xrealloc(p->env, p->cap * sizeof(*p->env));
	}
	e = &p->env[p->n_env];
	e->from = from != NULL ? from : "";
	e->rcpt = rcpt != NULL ? rcpt : "";
	e->size = size;
	e->done = false;
	e->outcome = 0;
	return p->n_env++;
}

void
kr_smtp_pipe_done(struct kr_smtp_pipe *p, size_t i)
{
	if (i < p->n_env)
		p->env[i].done = true;
}

void
kr_smtp_pipe_connected(struct kr_smtp_pipe *p, bool ahead)
{
	p->mode = ahead ? 0 : -1;
	p->learn = NONE;
	p->mail_size = -1;
	p->eof = NONE;
	p->xp_len = p->xp_off = p->xp_mail = 0;
	p->pend_msg = NONE;
	p->pend_dot = false;
	p->ahead_end = 0;
	memset(p->role, R_PASS, sizeof(p->role));
	kr_smtp_sync_init(&p->sync);
	p->aw[0] = KR_SA_GREETING;
	p->msg[0] = NONE;
	p->state = KR_SMTP_PIPE_OK;
	p->why[0] = '\0';
}

void
kr_smtp_pipe_eof(struct kr_smtp_pipe *p, size_t i)
{
	p->eof = i;
	if (i < p->n_env)
		p->env[i].outcome = 0; /* sent (again) on this connection */
}

static void
stop(struct kr_smtp_pipe *p, enum kr_smtp_pipe_state st, const char *why)
{
	if (p->state != KR_SMTP_PIPE_OK)
		return;
	p->state = st;
	snprintf(p->why, sizeof(p->why), "%s", why);
	p->xp_len = p->xp_off = p->xp_mail = 0;
}

/* The envelope of message i as libESMTP 1.1 writes it (cmd_mail(),
 * cmd_rcpt(), cmd_data(): kairan sets no DSN, BODY or BY parameters, and
 * SIZE= is the estimate given): "MAIL FROM:<from>[ SIZE=n]\r\n" with
 * mail, then "RCPT TO:<rcpt>\r\nDATA\r\n". Written to buf; returns its
 * length, 0 when it does not fit. */
static size_t
envelope(const struct kr_smtp_pipe *p, size_t i, bool mail, char *buf,
         size_t size)
{
	const struct env *e = &p->env[i];
	size_t len = 0;
	int k = 0;

	if (mail && p->mail_size == 1)
		k = snprintf(buf, size, "MAIL FROM:<%s> SIZE=%zu\r\n", e->from,
		             e->size);
	else if (mail)
		k = snprintf(buf, size, "MAIL FROM:<%s>\r\n", e->from);
	if (k < 0 || (size_t)k >= size)
		return 0;
	len = (size_t)k;
	k = snprintf(buf + len, size - len, "RCPT TO:<%s>\r\nDATA\r\n",
	             e->rcpt);
	if (k < 0 || (size_t)k >= size - len)
		return 0;
	return len + (size_t)k;
}

/* The first message at or after from without an outcome, or NONE. */
static size_t
next_of(const struct kr_smtp_pipe *p, size_t from)
{
	size_t i;

	for (i = from; i < p->n_env; i++)
		if (!p->env[i].done)
			return i;
	return NONE;
}

/* Whether b (n bytes, one line) is the MAIL FROM libESMTP writes for
 * message i; the first one shows whether it carries SIZE= (mail_size). */
static bool
mail_is(struct kr_smtp_pipe *p, size_t i, const char *b, size_t n)
{
	char want[sizeof(p->xp)];
	int was = p->mail_size, with;
	size_t k;

	for (with = 1; with >= 0; with--) {
		if (was >= 0 && was != with)
			continue;
		p->mail_size = with;
		k = envelope(p, i, true, want, sizeof(want));
		if (k >= n && memcmp(want, b, n) == 0)
			return true;
	}
	p->mail_size = was;
	return false;
}

int
kr_smtp_pipe_write(struct kr_smtp_pipe *p, const char *b, size_t n,
                   size_t *skip_out)
{
	size_t k;

	*skip_out = 0;
	if (p->xp_off >= p->xp_len)
		return 0;
	k = n < p->xp_len - p->xp_off ? n : p->xp_len - p->xp_off;
	if (memcmp(b, p->xp + p->xp_off, k) != 0) {
		stop(p, KR_SMTP_PIPE_END,
		     "libESMTP wrote other than what went ahead for it");
		return -1;
	}
	p->xp_off += k;
	if (p->xp_off == p->xp_len)
		p->xp_len = p->xp_off = p->xp_mail = 0;
	*skip_out = k;
	return 0;
}

/* Takes k bytes of xp as the group sent behind what goes now. */
static size_t
go_ahead(struct kr_smtp_pipe *p, size_t k, size_t i, bool after_dot,
         const char **ahead_out)
{
	const char *nl = memchr(p->xp, '\n', k);

	p->xp_len = k;
	p->xp_off = 0;
	p->xp_mail = after_dot && nl != NULL ? (size_t)(nl - p->xp) + 1 : 0;
	p->pend_msg = i;
	p->pend_dot = after_dot;
	p->n_ahead++;
	*ahead_out = p->xp;
	return k;
}

size_t
kr_smtp_pipe_ahead(struct kr_smtp_pipe *p, const char *b, size_t n,
                   const char **ahead_out)
{
	char want[sizeof(p->xp)];
	size_t i, k;

	*ahead_out = NULL;
	if (p->mode < 0 || p->state != KR_SMTP_PIPE_OK || n == 0)
		return 0;
	if (p->learn != NONE) {
		/* the flush after the first lone MAIL FROM: does libESMTP
		 * write RCPT TO and DATA together here? */
		k = envelope(p, p->learn, false, want, sizeof(want));
		p->learn = NONE;
		p->mode = (k > 0 && k == n && memcmp(b, want, k) == 0) ? 1 : -1;
		return 0;
	}
	if (p->mode == 1 && p->eof != NONE && p->xp_len == 0 &&
	    p->sync.replies >= p->ahead_end && p->mail_size >= 0 && n >= 5 &&
	    memcmp(b + n - 5, "\r\n.\r\n", 5) == 0) {
		/* a message and its dot (a body line "." went as "..", so
		 * only the end of the data looks like this) */
		if ((i = next_of(p, p->eof + 1)) == NONE ||
		    (k = envelope(p, i, true, p->xp, sizeof(p->xp))) == 0)
			return 0;
		return go_ahead(p, k, i, true, ahead_out);
	}
	if (n < 14 || memcmp(b, "MAIL FROM:<", 11) != 0 ||
	    memchr(b, '\n', n) != b + n - 1 || b[n - 2] != '\r')
		return 0;
	/* Every message before it has its outcome (libESMTP reports each
	 * before it writes the next MAIL): it is the first without. */
	if ((i = next_of(p, 0)) == NONE || !mail_is(p, i, b, n)) {
		p->mode = -1; /* not the MAIL expected: leave it be */
		return 0;
	}
	if (p->mode == 0) {
		p->learn = i;
		return 0;
	}
	if (p->xp_len != 0 ||
	    (k = envelope(p, i, false, p->xp, sizeof(p->xp))) == 0)
		return 0;
	return go_ahead(p, k, i, false, ahead_out);
}

void
kr_smtp_pipe_sent(struct kr_smtp_pipe *p, const char *b, size_t n)
{
	uint64_t done = p->sync.replies, s;
	uint64_t from = done + kr_smtp_sync_waiting(&p->sync), to;
	enum kr_smtp_await a;

	if (p->state != KR_SMTP_PIPE_OK)
		return;
	kr_smtp_sync_wrote(&p->sync, b, n);
	if (p->sync.broken) {
		stop(p, KR_SMTP_PIPE_DESYNC, p->sync.why);
		return;
	}
	to = done + kr_smtp_sync_waiting(&p->sync);
	for (s = from; s < to; s++) {
		a = kr_smtp_sync_awaits(&p->sync, (unsigned)(s - done));
		p->aw[s % QN] = (unsigned char)a;
		p->role[s % QN] = R_PASS;
		p->msg[s % QN] = NONE;
		if (a == KR_SA_DOT || a == KR_SA_BDAT_LAST) {
			p->msg[s % QN] = p->eof;
			p->eof = NONE;
		}
	}
	if (p->pend_msg == NONE)
		return;
	/* the group that went ahead: the last three commands (MAIL, RCPT,
	 * DATA), behind a dot or not */
	s = to - 3;
	if (to - from < (p->pend_dot ? 4u : 3u) ||
	    p->aw[s % QN] != KR_SA_COMMAND ||
	    p->aw[(s + 1) % QN] != KR_SA_COMMAND ||
	    p->aw[(s + 2) % QN] != KR_SA_DATA ||
	    (p->pend_dot && p->aw[(s - 1) % QN] != KR_SA_DOT)) {
		stop(p, KR_SMTP_PIPE_END,
		     "what went ahead is not where it "
		     "was expected");
		return;
	}
	if (p->pend_dot)
		p->role[(s - 1) % QN] = R_DOT;
	p->role[s % QN] = p->pend_dot ? R_MAIL_DOT : R_MAIL;
	p->msg[s % QN] = p->msg[(s + 1) % QN] = p->msg[(s + 2) % QN] =
	    p->pend_msg;
	p->ahead_end = to;
	p->pend_msg = NONE;
}

/* The reply to command s (role r) is complete, its code in sync.rcode. */
static void
reply_done(struct kr_smtp_pipe *p, uint64_t s, enum role r)
{
	const char *c = p->sync.rcode;
	int code = (c[0] - '0') * 100 + (c[1] - '0') * 10 + (c[2] - '0');
	size_t i = p->msg[s % QN];

	if ((p->aw[s % QN] == KR_SA_DOT || p->aw[s % QN] == KR_SA_BDAT_LAST) &&
	    i < p->n_env)
		p->env[i].outcome = code;
	if (c[0] == '2')
		return;
	if (r == R_DOT) {
		/* libESMTP would RSET, and the relay took the next envelope
		 * and may wait for its content: libESMTP reads this reply,
		 * then the connection ends. */
		stop(p, KR_SMTP_PIPE_END,
		     "a refused end of data with the "
		     "next envelope behind it");
	} else if (r == R_MAIL || r == R_MAIL_DOT) {
		/* libESMTP will not write the RCPT TO and DATA; it may not
		 * have written this MAIL FROM yet (its reply can come in one
		 * read with the dot's): that is still to be skipped. */
		if (p->xp_off < p->xp_mail)
			p->xp_len = p->xp_mail;
		else
			p->xp_len = p->xp_off = 0;
		p->xp_mail = 0;
		p->role[(s + 1) % QN] = R_DROP;
		p->role[(s + 2) % QN] = R_DROP;
	}
}

size_t
kr_smtp_pipe_read(struct kr_smtp_pipe *p, char *b, size_t n)
{
	size_t i = 0, o = 0, len, k;
	uint64_t s;
	enum role r;
	const char *nl;

	while (i < n && p->state == KR_SMTP_PIPE_OK) {
		/* a line at a time: at most one reply ends in each */
		nl = memchr(b + i, '\n', n - i);
		len = nl != NULL ? (size_t)(nl - (b + i)) + 1 : n - i;
		s = p->sync.replies;
		r = kr_smtp_sync_waiting(&p->sync) > 0 ? p->role[s % QN]
		                                       : R_PASS;
		k = kr_smtp_sync_read(&p->sync, b + i, len);
		if (r != R_DROP) {
			memmove(b + o, b + i, k);
			o += k;
		}
		if (p->sync.broken) {
			stop(p, KR_SMTP_PIPE_DESYNC, p->sync.why);
			break;
		}
		i += len;
		if (p->sync.replies != s)
			reply_done(p, s, r);
	}
	return o;
}

bool
kr_smtp_pipe_timed_out(const struct kr_smtp_pipe *p)
{
	return p->state == KR_SMTP_PIPE_OK &&
	       kr_smtp_sync_waiting(&p->sync) > 0 &&
	       p->role[p->sync.replies % QN] == R_MAIL_DOT;
}

enum kr_smtp_pipe_state
kr_smtp_pipe_state(const struct kr_smtp_pipe *p, const char **why_out)
{
	if (why_out != NULL)
		*why_out = p->why;
	return p->state;
}

int
kr_smtp_pipe_outcome(const struct kr_smtp_pipe *p, size_t i)
{
	return i < p->n_env ? p->env[i].outcome : 0;
}

unsigned
kr_smtp_pipe_waiting(const struct kr_smtp_pipe *p)
{
	return kr_smtp_sync_waiting(&p->sync);
}

uint64_t
kr_smtp_pipe_replies(const struct kr_smtp_pipe *p)
{
	return p->sync.replies;
}

int
kr_smtp_pipe_mode(const struct kr_smtp_pipe *p)
{
	return p->mode;
}

unsigned long
kr_smtp_pipe_n_ahead(const struct kr_smtp_pipe *p)
{
	return p->n_ahead;
}
