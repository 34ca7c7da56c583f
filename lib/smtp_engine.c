/* smtp_engine.c — SMTP delivery through libesmtp 1.1, run only inside the
 * kairan-smtp process (daemon/kairan_smtp.c): the hooks behind the
 * connect(), read(), write() and poll() that smtp_wrap.c defines for that
 * executable, and the sessions; nothing else of kairan links either file
 * (libkairan.a leaves them out; kairand reaches them through
 * lib/transport_smtp.c, over a socket).
 *
 * One send() is one SMTP session carrying the whole batch, one envelope
 * recipient per message; libesmtp pipelines RCPT+DATA when the server
 * offers PIPELINING, and this file sends each next envelope (MAIL, RCPT,
 * DATA) right behind a message's dot, so that a message costs one round
 * trip, not three (what goes ahead, and which reply libesmtp may read,
 * is decided by lib/smtp_pipe.c, a pure module: pipe_ahead() and
 * in_step() only feed it). The outcome of
 * each message is known from libesmtp's event callback right after the
 * server's reply to the final dot, and the store marks it sent before the
 * next message goes out.
 *
 * The outcomes are handed to the caller a little later than libesmtp
 * knows them: once the next command is on the wire and libesmtp waits
 * for its reply, and always before the next message's content is sent
 * (flush_outcomes(), through a poll() wrapper like the connect() one),
 * so that recording them in the store overlaps a round trip instead of
 * holding the connection idle.
 *
 * Outcomes: the reply to the final dot decides (2xx OK, 4xx TEMP, 5xx
 * PERM); a refused RCPT decides for its message (4xx TEMP, 5xx PERM); a
 * refused MAIL FROM is TEMP whatever its code (it is about the sender,
 * not the subscriber); no reply after the whole message went: UNCERTAIN.
 *
 * Relays are tried in order: a relay that cannot be used (no connection,
 * 4xx/5xx greeting, TLS or AUTH failure) passes the messages it did not
 * get to the next one. After a dropped connection the same relay is
 * tried again for the messages that got no outcome, as long as each new
 * session makes progress.
 *
 * Things libesmtp 1.1 does that matter here (read from its source):
 * - it does the dot-stuffing and sends the message as given, except
 *   that it drops Return-Path: (and a second Date:, From:, To:,
 *   Message-Id: …) and adds Date:, From: and Message-Id: when missing;
 * - it waits for the reply to MAIL FROM before RCPT TO, and for the
 *   reply to the dot before the next MAIL FROM: we write those ahead of
 *   it and keep its view of the replies exact (smtp_pipe.c);
 * - relays may answer one pipelined write in two (Postfix to RCPT +
 *   BDAT), the second held by their Nagle until we ACK the first: we set
 *   TCP_QUICKACK when we wait again after reading part (sess_poll());
 * - it writes the message through a 2 KB buffer, several writes per
 *   message: without TCP_NODELAY each message then waits ~40 ms for a
 *   delayed ACK, see connect() below. With it, our write() gathers what
 *   libesmtp writes on the session's socket and poll() sends it in one
 *   write(2) when libesmtp waits for a reply (sess_write(), wflush()):
 *   a 29 KB message and its dot leave in one system call, not 15, and
 *   libesmtp's polls for "writable" cost none;
 * - it splits the message into lines itself, a byte at a time (msg_gets()
 *   in message-source.c), whatever size the pieces we hand it: its
 *   largest CPU cost per message (bench/RESULTS.md, "kairand end to
 *   end"); only BDAT (CHUNKING, which it uses when the server offers it)
 *   reads the body in blocks;
 * - it has no implicit TLS (port 465), and its STARTTLS hangs on TLS 1.3
 *   session tickets and hides its plain text from us: for `tls: tls` our
 *   connect() makes the TLS connection itself, for `tls: starttls` it
 *   says EHLO and STARTTLS first (starttls()), both verified the same
 *   way, and our read(), write() and poll() carry libesmtp's plain text
 *   through it (tls_handshake(), sess_read(), wflush(), sess_poll());
 * - after a failed AUTH it carries on with MAIL unauthenticated: we watch
 *   the AUTH reply (monitor callback) and stop the session instead;
 * - it writes with write(2): SIGPIPE is blocked around the session;
 * - it ignores write errors: whether the server hung up before the final
 *   dot is read from the socket when the message ends (TEMP, else a
 *   missing reply is UNCERTAIN);
 * - it sends no SNI and checks host names without IP addresses: we add
 *   SNI from an OpenSSL info callback and check the certificate with
 *   OpenSSL (X509_check_host / X509_check_ip_asc) ourselves;
 * - its connect(2) is blocking with no timeout: our wrapper adds one.
 */
#include "smtp_engine.h"
#include "smtp_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sodium.h>

/* libesmtp.h needs size_t: <stddef.h> first, in a block of its own */
#include <stddef.h>

#include <auth-client.h>
#include <libesmtp.h>

#include "config.h"
#include "err.h"
#include "log.h"
#include "smtp_pipe.h"
#include "smtp_wrap.h"
#include "xmem.h"

/* ---- the hooks of the libc wrappers (smtp_wrap.h) ---- */

struct smtp_sess;
static atomic_int smtp_nodelay = 1;
static atomic_ulong smtp_writes; /* write(2)s on session sockets */
static atomic_ulong smtp_ahead;  /* envelopes sent by pipe_ahead() */

void
kr_smtp_engine_set_nodelay(int on)
{
	atomic_store(&smtp_nodelay, on ? 1 : 0);
}

unsigned long
kr_smtp_engine_writes(void)
{
	return atomic_load(&smtp_writes);
}

unsigned long
kr_smtp_engine_ahead(void)
{
	return atomic_load(&smtp_ahead);
}

static int sess_connected(struct smtp_sess *s, int fd, int *timeout_ms);
static int sess_poll(struct smtp_sess *s, struct pollfd *fds, nfds_t nfds,
                     int timeout);
static void sess_timed_out(struct smtp_sess *s);
static int sess_stage_left(const struct smtp_sess *s,
                           const struct pollfd *fds, nfds_t nfds);
static int sess_write(struct smtp_sess *s, int fd, const void *buf, size_t n,
                      ssize_t *ret);
static int sess_read(struct smtp_sess *s, int fd, void *buf, size_t n,
                     ssize_t *ret);

/* libesmtp's connect(2), for a TCP socket: TCP_NODELAY (each message then
 * leaves without waiting for a delayed ACK; the difference is in
 * bench/RESULTS.md, "libesmtp as shipped"), the connect bounded by
 * delivery.timeout, then STARTTLS or implicit TLS as the relay has it. */
static int
hook_connect(void *sess, int fd, const struct sockaddr *addr, socklen_t len,
             int *ret)
{
	struct smtp_sess *s = sess;
	int type = 0, one = 1, flags, r, timeout_ms = 0, e;
	socklen_t tl = sizeof(type);
	struct pollfd pfd;

	if (addr == NULL ||
	    (addr->sa_family != AF_INET && addr->sa_family != AF_INET6) ||
	    getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 ||
	    type != SOCK_STREAM)
		return 0;
	if (atomic_load(&smtp_nodelay))
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
		                 sizeof(one));
	(void)sess_connected(s, -1, &timeout_ms);
	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || (flags & O_NONBLOCK) ||
	    fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
		if (smtp_tls_handshake(s, -1, 0) < 0) {
			/* never plain text to a TLS port */
			errno = ECONNABORTED;
			*ret = -1;
			return 1;
		}
		*ret = kr_smtp_real_connect(fd, addr, len);
		return 1;
	}
	r = kr_smtp_real_connect(fd, addr, len);
	if (r != 0 && errno == EINPROGRESS) {
		pfd.fd = fd;
		pfd.events = POLLOUT;
		do
			r = kr_smtp_real_poll(&pfd, 1, timeout_ms);
		while (r < 0 && errno == EINTR);
		if (r == 0) {
			errno = ETIMEDOUT;
			r = -1;
		} else if (r > 0) {
			e = 0;
			tl = sizeof(e);
			if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &tl) != 0)
				e = errno;
			errno = e;
			r = e == 0 ? 0 : -1;
		}
	}
	if (r == 0 && (smtp_starttls(s, fd, timeout_ms) < 0 ||
	               smtp_tls_handshake(s, fd, timeout_ms) < 0)) {
		errno = ECONNABORTED;
		r = -1;
	}
	e = errno;
	(void)fcntl(fd, F_SETFL, flags);
	if (r == 0)
		(void)sess_connected(s, fd, NULL);
	errno = e;
	*ret = r;
	return 1;
}

/* libesmtp's poll(2), see sess_poll(): a wait for the session's socket to
 * become writable is answered at once (our write() takes everything), and
 * a blocking wait for a reply first sends what write() gathered and hands
 * the outcomes gathered so far to the caller (flush_outcomes()); every
 * wait ends with the stage's deadline. */
static int
hook_poll(void *sess, struct pollfd *fds, nfds_t nfds, int timeout, int *ret)
{
	struct smtp_sess *s = sess;
	int r, left;

	if ((r = sess_poll(s, fds, nfds, timeout)) >= 0) {
		*ret = r;
		return 1;
	}
	if (timeout != 0 && (left = sess_stage_left(s, fds, nfds)) >= 0 &&
	    (timeout < 0 || left < timeout)) {
		/* libesmtp's timeout restarts with every byte it reads; the
		 * stage's does not (a relay dripping its reply a byte at a
		 * time cannot hold a worker past delivery.timeout) */
		timeout = left;
		if (timeout == 0) {
			sess_timed_out(s);
			*ret = 0;
			return 1;
		}
	}
	r = kr_smtp_real_poll(fds, nfds, timeout);
	if (r == 0 && timeout != 0)
		sess_timed_out(s);
	*ret = r;
	return 1;
}

/* libesmtp's write(2) and read(2) on the session's socket: write()
 * appends to the session's buffer (sess_write()) and read() first sends
 * that buffer, so nothing written can be waited for before it left. */
static int
hook_write(void *sess, int fd, const void *buf, size_t n, ssize_t *ret)
{
	return sess_write(sess, fd, buf, n, ret);
}

static int
hook_read(void *sess, int fd, void *buf, size_t n, ssize_t *ret)
{
	return sess_read(sess, fd, buf, n, ret);
}

static const struct kr_smtp_wrap hooks = {
    .connect = hook_connect,
    .poll = hook_poll,
    .write = hook_write,
    .read = hook_read,
};

/* ---- the transport ---- */

static pthread_once_t auth_once = PTHREAD_ONCE_INIT;

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A new stage: the relay has delivery.timeout for its next reply. */
static void
stage_start(struct smtp_sess *s)
{
	s->deadline = mono_ms() + s->t->timeout_ms;
}

/* Milliseconds left in the current stage (at least 0), or -1 for none. */
static int
stage_left(const struct smtp_sess *s)
{
	int64_t left;

	if (s->deadline == 0)
		return -1;
	left = s->deadline - mono_ms();
	if (left < 0)
		left = 0;
	return left > INT_MAX ? INT_MAX : (int)left;
}

static void
auth_init(void)
{
	auth_client_init();
}

/* Called by connect(): with fd < 0 only reads the timeout, the stage
 * timeout but at most 30 s, so a relay that drops SYNs passes the batch
 * to the next relay soon. */
static int
sess_connected(struct smtp_sess *s, int fd, int *timeout_ms)
{
	if (timeout_ms != NULL)
		*timeout_ms =
		    s->t->timeout_ms < 30000 ? (int)s->t->timeout_ms : 30000;
	if (fd >= 0) {
		s->fd = fd;
		s->wlen = 0;
		s->werr = 0;
		/* A second connection of one libesmtp session (its fallback
		 * to another address) may skip messages: no guessing there. */
		++s->connections;
		if (s->pp != NULL)
			kr_smtp_pipe_connected(
			    s->pp, !(s->connections > 1 || s->relay == NULL ||
			             atomic_load(&s->relay->no_ahead)));
		s->dead = false;
		s->r_len = s->r_ready = 0;
		stage_start(s); /* the greeting */
	}
	return 0;
}

/* Copies a server reply into dst without control characters. */
void
smtp_copy_reply(char *dst, size_t size, const char *src)
{
	size_t i = 0;

	if (src != NULL)
		for (; *src != '\0' && i + 1 < size; src++) {
			unsigned char c = (unsigned char)*src;

			if (c == '\r' || c == '\n') {
				if (i > 0 && dst[i - 1] != ' ')
					dst[i++] = ' ';
				continue;
			}
			dst[i++] = (c < 0x20 || c >= 0x7f) ? '?' : (char)c;
		}
	while (i > 0 && dst[i - 1] == ' ')
		i--;
	dst[i] = '\0';
}

static enum kr_send_result
class_of(int code)
{
	switch (code / 100) {
	case 2:
		return KR_SEND_OK;
	case 5:
		return KR_SEND_PERM;
	default:
		return KR_SEND_TEMP;
	}
}

/* kr_smtp_engine_set_early() */
static kr_transport_done_fn early_fn;

void
kr_smtp_engine_set_early(kr_transport_done_fn fn)
{
	early_fn = fn;
}

static void
finish(struct smtp_sess *s, struct smtp_mstate *ms, enum kr_send_result res,
       int code, const char *text)
{
	if (ms->finished)
		return;
	ms->finished = true;
	ms->msg->result = res;
	ms->msg->code = code;
	smtp_copy_reply(ms->msg->reply, sizeof(ms->msg->reply), text);
	if (s != NULL && s->relay != NULL)
		snprintf(ms->msg->relay, sizeof(ms->msg->relay), "%s",
		         s->relay->hostport);
	if (s != NULL)
		s->n_finished++;
	if (s != NULL && s->pp != NULL && ms >= s->ms && ms < s->ms + s->n_ms)
		kr_smtp_pipe_done(s->pp, (size_t)(ms - s->ms));
	kr_log_debug("smtp outcome id=%lld rcpt=%s result=%d code=%d",
	             (long long)ms->msg->id, ms->msg->rcpt, (int)res, code);
	if (s != NULL && s->pend != NULL) {
		s->pend[s->n_pend++] = ms;
		/* told at once, waited for later (flush_outcomes()) */
		if (early_fn != NULL)
			early_fn(s->ctx, ms->msg);
	} else if (s != NULL && s->done != NULL) {
		if (early_fn != NULL)
			early_fn(s->ctx, ms->msg);
		s->done(s->ctx, ms->msg);
	}
}

/* Hands the outcomes gathered so far to done, in order. The event
 * callback only gathers them: libesmtp calls it right after the reply to
 * the final dot, before it writes the next MAIL FROM, so recording the
 * outcome there (a store write, under the delivery's store lock) left the
 * connection idle meanwhile. They are handed over instead
 * - when libesmtp waits for the server's next reply (poll() below): the
 *   store write then overlaps the MAIL FROM round trip;
 * - at the latest when libesmtp reads the next message from us
 *   (on_message()), so a 250 is still recorded before the next message
 *   leaves, as DESIGN.md's duplicate bound wants;
 * - when the session ends. */
static void
flush_outcomes(struct smtp_sess *s)
{
	size_t i, n;

	if (s == NULL || s->n_pend == 0)
		return;
	n = s->n_pend;
	s->n_pend = 0; /* taken before done runs: each is handed over once */
	for (i = 0; i < n; i++)
		if (s->done != NULL)
			s->done(s->ctx, s->pend[i]->msg);
}

/* Waits up to timeout_ms for fd to be readable (POLLIN) or writable.
 * Returns 1 ready, 0 timed out, -1 error. */
int
smtp_wait_fd(int fd, short events, int timeout_ms)
{
	struct pollfd pfd;
	int r;

	pfd.fd = fd;
	pfd.events = events;
	pfd.revents = 0;
	do
		r = kr_smtp_real_poll(&pfd, 1, timeout_ms);
	while (r < 0 && errno == EINTR);
	return r;
}

/* The largest gathered write; more is sent at once. */
#define WBUF_MAX (256u * 1024u)

/* Room for n more bytes in wbuf. */
static void
wbuf_reserve(struct smtp_sess *s, size_t n)
{
	size_t cap;

	if (s->wlen + n <= s->wcap)
		return;
	for (cap = s->wcap ? s->wcap : 32768; cap < s->wlen + n;)
		cap *= 2;
	s->wbuf = kr_xrealloc(s->wbuf, cap);
	s->wcap = cap;
}

/* Ends the connection under libesmtp: its writes fail from now on, its
 * reads see the end (after what it was just given). */
static void
give_up(struct smtp_sess *s, int err)
{
	s->dead = true;
	s->werr = err;
	s->wlen = 0;
	if (s->fd >= 0)
		(void)shutdown(s->fd, SHUT_RDWR);
}

/* What the pipe (smtp_pipe.c) decided about the connection: a relay out
 * of step is unusable for this batch; a refused end of data with the next
 * envelope behind it, or libesmtp writing other than what went ahead,
 * ends the connection after what libesmtp was given (the messages left go
 * in a new session: none got content, so nothing is sent twice). */
static void
pipe_check(struct smtp_sess *s)
{
	const char *why;
	enum kr_smtp_pipe_state st = kr_smtp_pipe_state(s->pp, &why);

	if (st == KR_SMTP_PIPE_OK || s->dead)
		return;
	if (st == KR_SMTP_PIPE_DESYNC && !s->desync) {
		s->desync = true;
		kr_log_warn("smtp relay=%s is out of step (%s); connection "
		            "given up",
		            s->relay != NULL ? s->relay->hostport : "?", why);
		if (!s->fatal)
			snprintf(s->why, sizeof(s->why),
			         "relay out of step: %s", why);
		s->fatal = true;
	}
	give_up(s, st == KR_SMTP_PIPE_DESYNC ? EPROTO : EPIPE);
}

/* Sends ahead of libesmtp what the pipe says goes behind the buffer
 * (smtp_pipe.h: the next envelope behind a dot, RCPT TO and DATA behind
 * a lone MAIL FROM). Called by wflush() before it sends. */
static void
pipe_ahead(struct smtp_sess *s)
{
	const char *a;
	int was = kr_smtp_pipe_mode(s->pp);
	size_t k = kr_smtp_pipe_ahead(s->pp, s->wbuf, s->wlen, &a);

	if (was == 0 && kr_smtp_pipe_mode(s->pp) != 0)
		kr_log_debug("smtp relay=%s pipelining ahead=%s",
		             s->relay != NULL ? s->relay->hostport : "?",
		             kr_smtp_pipe_mode(s->pp) == 1 ? "yes" : "no");
	if (k == 0)
		return;
	wbuf_reserve(s, k);
	memcpy(s->wbuf + s->wlen, a, k);
	s->wlen += k;
	atomic_fetch_add_explicit(&smtp_ahead, 1, memory_order_relaxed);
}

/* libesmtp's wait for a reply timed out. If the reply it waited for is
 * one to a MAIL FROM sent ahead behind a dot the relay did answer, the
 * relay drops what a client pipelines after the end of the data (RFC 2920
 * allows it; some relays mishandle it): nothing more is sent ahead to it
 * in this process. The message goes again in the next session. */
static void
sess_timed_out(struct smtp_sess *s)
{
	if (s->relay == NULL || s->pp == NULL || !kr_smtp_pipe_timed_out(s->pp) ||
	    atomic_exchange(&s->relay->no_ahead, true))
		return;
	kr_log_warn("smtp relay=%s did not answer the MAIL FROM sent behind "
	            "the end of a message; no more pipelining ahead to it",
	            s->relay->hostport);
}

/* Sends what write() gathered, in as few write(2)s as the socket takes
 * (it is non-blocking: EAGAIN waits in poll() up to the stage timeout).
 * A failure is kept in werr and the rest dropped: the server is gone,
 * and libesmtp sees it at its next read. If the buffer held the final
 * dot of the message being sent, the server never got it (peer_gone:
 * temporary, not uncertain). Returns 0 or -1. */
static int
wflush(struct smtp_sess *s)
{
	size_t off = 0;
	ssize_t w;
	short events;
	int r, e = 0;

	if (s->pp != NULL && s->wlen > 0 && s->werr == 0)
		pipe_ahead(s);
	s->read_since_write = false;
	if (s->wlen > 0 && s->werr == 0) {
		if (s->pp != NULL) {
			kr_smtp_pipe_sent(s->pp, s->wbuf, s->wlen);
			pipe_check(s);
		}
		stage_start(s);
	}
	while (off < s->wlen && s->werr == 0) {
		events = POLLOUT;
		if (s->ssl != NULL) {
			int n = (int)(s->wlen - off > INT_MAX ? INT_MAX
			                                      : s->wlen - off);

			s->in_ssl = true;
			n = SSL_write(s->ssl, s->wbuf + off, n);
			s->in_ssl = false;
			if (n > 0) {
				off += (size_t)n;
				continue;
			}
			switch (SSL_get_error(s->ssl, n)) {
			case SSL_ERROR_WANT_READ:
				events = POLLIN;
				w = -1;
				errno = EAGAIN;
				break;
			case SSL_ERROR_WANT_WRITE:
				w = -1;
				errno = EAGAIN;
				break;
			default:
				w = -1;
				errno = EPIPE;
				break;
			}
		} else {
			w = kr_smtp_real_write(s->fd, s->wbuf + off, s->wlen - off);
			atomic_fetch_add_explicit(&smtp_writes, 1,
			                          memory_order_relaxed);
		}
		if (w > 0) {
			off += (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) { /* == EWOULDBLOCK here */
			/* a relay that reads slowly has the stage's time */
			r = stage_left(s);
			r = smtp_wait_fd(s->fd, events,
			            r >= 0 ? r : (int)s->t->timeout_ms);
			if (r > 0)
				continue;
			e = r == 0 ? ETIMEDOUT : errno;
		} else {
			e = w < 0 ? errno : EPIPE;
		}
		s->werr = e != 0 ? e : EIO;
	}
	if (s->werr != 0 && s->cur != NULL && s->cur->eof)
		s->cur->peer_gone = true;
	else if (s->cur != NULL && s->cur->eof)
		s->cur = NULL; /* its dot left */
	s->wlen = 0;
	return s->werr != 0 ? -1 : 0;
}

/* write() on the session's socket: gathered in wbuf, sent by wflush()
 * when libesmtp waits for the server (sess_poll(), sess_read()) or the
 * buffer is full. Returns false when the call is not ours. */
static int
sess_write(struct smtp_sess *s, int fd, const void *buf, size_t n,
           ssize_t *ret)
{
	size_t k;

	if (fd < 0 || fd != s->fd)
		return 0;
	if (s->in_ssl || (!s->buffered && s->ssl == NULL)) {
		/* OpenSSL writing our TLS records, or libesmtp as shipped */
		atomic_fetch_add_explicit(&smtp_writes, 1,
		                          memory_order_relaxed);
		if (!s->in_ssl && s->pp != NULL) {
			kr_smtp_pipe_sent(s->pp, buf, n);
			pipe_check(s);
		}
		if (!s->in_ssl)
			stage_start(s);
		return 0;
	}
	if (s->werr != 0) {
		errno = s->werr;
		*ret = -1;
		return 1;
	}
	*ret = (ssize_t)n;
	/* what went ahead for libesmtp (pipe_ahead()) is not sent again */
	if (s->pp != NULL && kr_smtp_pipe_write(s->pp, buf, n, &k) < 0) {
		kr_log_err("smtp relay=%s: libesmtp wrote other than what was "
		           "pipelined for it; connection given up",
		           s->relay != NULL ? s->relay->hostport : "?");
		give_up(s, EPROTO);
		errno = EPROTO;
		*ret = -1;
		return 1;
	}
	if (s->pp != NULL && k > 0) {
		buf = (const char *)buf + k;
		n -= k;
		if (n == 0)
			return 1;
	}
	if (s->wlen + n > s->wcap && s->wlen + n > WBUF_MAX && s->wlen > 0 &&
	    wflush(s) < 0) {
		errno = s->werr;
		*ret = -1;
		return 1;
	}
	wbuf_reserve(s, n);
	memcpy(s->wbuf + s->wlen, buf, n);
	s->wlen += n;
	if (s->wlen >= WBUF_MAX && wflush(s) < 0) {
		errno = s->werr;
		*ret = -1;
		return 1;
	}
	return 1;
}

/* Checks n bytes the relay sent against what was written and takes out
 * what libesmtp must not see (smtp_pipe.c); returns how many are left
 * for it, at buf's start: all, or those before the first reply out of
 * step, after which the connection is given up and the relay is
 * unusable for this batch (the copies in flight are deferred, never
 * taken as sent). A complete reply starts the next stage's deadline. */
static size_t
in_step(struct smtp_sess *s, char *buf, size_t n)
{
	uint64_t before = kr_smtp_pipe_replies(s->pp);
	size_t k = kr_smtp_pipe_read(s->pp, buf, n);

	if (kr_smtp_pipe_replies(s->pp) != before)
		stage_start(s);
	pipe_check(s);
	return k;
}

/* Reads what the relay sent into rbuf: > 0 bytes, 0 at the end, -1 with
 * errno (EAGAIN: nothing yet). */
static ssize_t
raw_read(struct smtp_sess *s, int fd)
{
	size_t room = sizeof(s->rbuf) - s->r_len;
	int r;

	if (s->ssl == NULL)
		return kr_smtp_real_read(fd, s->rbuf + s->r_len, room);
	s->in_ssl = true;
	r = SSL_read(s->ssl, s->rbuf + s->r_len,
	             room > INT_MAX ? INT_MAX : (int)room);
	s->in_ssl = false;
	if (r > 0)
		return r;
	switch (SSL_get_error(s->ssl, r)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	default:
		errno = ECONNRESET;
		return -1;
	}
}

/* read() on the session's socket: what was written goes first. libesmtp
 * is only ever given whole reply lines: it takes a partial line it holds
 * when its wait times out, or the connection ends, for a whole reply
 * ("250 2" of a reply still coming was a message recorded as sent), so
 * the start of a line stays in rbuf until its end came. Everything read
 * is checked against what was written first, and the replies libesmtp
 * must not see are taken out (in_step(), smtp_pipe.c). With implicit
 * TLS, reading is an SSL_read(), which says EAGAIN when no whole record
 * is there yet (libesmtp then polls). Returns false when the call is not
 * ours (libc's read() runs). */
static int
sess_read(struct smtp_sess *s, int fd, void *buf, size_t n, ssize_t *ret)
{
	ssize_t got;
	size_t k, whole;
	const char *nl;

	if (fd < 0 || fd != s->fd || s->in_ssl)
		return 0;
	if (s->pre_off < s->pre_len) { /* the greeting starttls() read */
		*ret = (ssize_t)(s->pre_len - s->pre_off < n ? s->pre_len -
		                                                   s->pre_off
		                                             : n);
		memcpy(buf, s->pre + s->pre_off, (size_t)*ret);
		s->pre_off += (size_t)*ret;
		*ret = (ssize_t)in_step(s, (char *)buf, (size_t)*ret);
		return 1;
	}
	if (s->r_ready == 0) {
		if (s->dead) {
			*ret = 0;
			return 1;
		}
		if (s->wlen > 0)
			(void)wflush(s);
		got = raw_read(s, fd);
		if (got <= 0) { /* a line begun and never ended is dropped */
			*ret = got;
			return 1;
		}
		s->read_since_write = true;
		k = in_step(s, s->rbuf + s->r_len, (size_t)got);
		s->r_len += k;
		for (nl = NULL, whole = s->r_len; whole > 0; whole--)
			if (s->rbuf[whole - 1] == '\n') {
				nl = s->rbuf + whole - 1;
				break;
			}
		if (nl == NULL && s->r_len >= sizeof(s->rbuf) / 2)
			give_up(s, EPROTO); /* in_step() refuses such lines */
		s->r_ready = whole;
		if (s->r_ready == 0) {
			/* nothing whole for libesmtp yet: it waits on */
			if (s->dead) {
				*ret = 0;
				return 1;
			}
			errno = EAGAIN;
			*ret = -1;
			return 1;
		}
	}
	k = n < s->r_ready ? n : s->r_ready;
	memcpy(buf, s->rbuf, k);
	memmove(s->rbuf, s->rbuf + k, s->r_len - k);
	s->r_ready -= k;
	s->r_len -= k;
	*ret = (ssize_t)k;
	return 1;
}

/* poll() in a session. A wait for the socket to become writable is
 * answered at once: write() takes everything (libesmtp then writes into
 * the buffer and waits for the reply, and that poll sends it). A
 * blocking wait for a reply first sends the buffer, and, when it waits
 * for nothing else, hands over the outcomes gathered so far. Returns the
 * poll result, or -1 to let the real poll() run. */
static int
sess_poll(struct smtp_sess *s, struct pollfd *fds, nfds_t nfds, int timeout)
{
	nfds_t i;
	bool in = false, out = false, other = false;
	int n = 0;

	if (fds == NULL || s->fd < 0)
		return -1;
	for (i = 0; i < nfds; i++) {
		if (fds[i].fd != s->fd) {
			other = true;
			continue;
		}
		in = in || (fds[i].events & POLLIN);
		out = out || (fds[i].events & POLLOUT);
	}
	if (in && ((s->ssl != NULL && SSL_has_pending(s->ssl)) ||
	           s->pre_off < s->pre_len || s->r_ready > 0)) {
		/* decrypted or buffered TLS data poll() cannot see, or
		 * the greeting starttls() read */
		for (i = 0; i < nfds; i++) {
			fds[i].revents = (fds[i].fd == s->fd &&
			                  (fds[i].events & POLLIN))
			                     ? POLLIN
			                     : 0;
			n += fds[i].revents != 0;
		}
		if (n > 0)
			return n;
	}
	if ((s->buffered || s->ssl != NULL) && out && !other &&
	    s->werr == 0) {
		for (i = 0; i < nfds; i++) {
			fds[i].revents = (fds[i].events & POLLOUT) ? POLLOUT : 0;
			n += fds[i].revents != 0;
		}
		return n;
	}
	if (in && !out && !other && timeout == 0 && s->buffered &&
	    s->wlen > 0 && s->werr == 0 && s->pp != NULL &&
	    kr_smtp_pipe_waiting(s->pp) == 0) {
		/* libesmtp looks (timeout 0) for a reply while it writes a
		 * group (3 times a message): when the relay owes none, none
		 * can be there (what libesmtp wrote since is still in wbuf,
		 * and its blocking wait for the replies will send it), so the
		 * answer is no without a system call. Anything unasked (a
		 * 421, the end) is seen at that wait, as before. Only while
		 * something waits in wbuf: a look with nothing to send (after
		 * QUIT's reply, say) asks libc. */
		for (i = 0; i < nfds; i++)
			fds[i].revents = 0;
		return 0;
	}
	if (!in || timeout == 0)
		return -1;
	if (s->wlen > 0)
		(void)wflush(s);
	if (s->buffered && s->read_since_write) {
		/* Waiting for more replies to one write of ours, after some
		 * came: ACK those now. A relay that answers in two writes
		 * (Postfix's smtpd to RCPT + BDAT: "250 Ok: 685 bytes", then
		 * the rest) holds the second back by Nagle until the first is
		 * ACKed, and our delayed ACK takes 40 ms: one stall per
		 * message (figures: bench/RESULTS.md, "kairand into a real
		 * Postfix"). Only then: a setsockopt() before every wait
		 * costs CPU per message (ibid., "kairand end to end"). */
		int one = 1;

		(void)setsockopt(s->fd, IPPROTO_TCP, TCP_QUICKACK, &one,
		                 sizeof(one));
		s->read_since_write = false;
	}
	if (s->n_pend > 0 && nfds == 1 && fds[0].events == POLLIN)
		flush_outcomes(s);
	return -1;
}

/* For a wait on the session's socket for a reply: the milliseconds left
 * in the stage; -1 for any other wait. */
static int
sess_stage_left(const struct smtp_sess *s, const struct pollfd *fds,
                nfds_t nfds)
{
	nfds_t i;

	if (s->fd < 0 || s->deadline == 0)
		return -1;
	for (i = 0; i < nfds; i++)
		if (fds[i].fd == s->fd && (fds[i].events & POLLIN))
			return stage_left(s);
	return -1;
}

/* Stops the session at once (the socket is shut down, so libesmtp's next
 * read or write fails) and marks the relay unusable. */
static void abort_session(struct smtp_sess *s, const char *fmt, ...)
    KR_PRINTF(2, 3);

static void
abort_session(struct smtp_sess *s, const char *fmt, ...)
{
	va_list ap;

	if (!s->fatal) {
		va_start(ap, fmt);
		vsnprintf(s->why, sizeof(s->why), fmt, ap);
		va_end(ap);
	}
	s->fatal = true;
	if (s->fd >= 0)
		(void)shutdown(s->fd, SHUT_RDWR);
}

static struct smtp_mstate *
mstate_of(smtp_message_t m)
{
	return m != NULL ? smtp_message_get_application_data(m) : NULL;
}

static void
on_event(smtp_session_t session, int event, void *arg, ...)
{
	struct smtp_sess *s = arg;
	struct smtp_mstate *ms;
	const smtp_status_t *st, *rst;
	smtp_message_t m;
	va_list ap;
	int *ok;
	SSL *ssl;
	char why[160];

	(void)session;
	va_start(ap, arg);
	switch (event) {
	case SMTP_EV_MAILSTATUS:
		(void)va_arg(ap, const char *);
		m = va_arg(ap, smtp_message_t);
		ms = mstate_of(m);
		if (ms == NULL)
			break;
		if (s->relay->user != NULL && !s->authenticated) {
			/* AUTH is configured but did not succeed: no message
			 * goes unauthenticated (libesmtp would carry on), the
			 * relay is unusable and the message got nothing. */
			abort_session(s, "AUTH failed or not offered");
			break;
		}
		ms->mail_answered = true;
		st = smtp_reverse_path_status(m);
		/* A refused envelope sender says nothing about the
		 * subscriber (a relay policy, a bounce_domain it does not
		 * accept): temporary even for a 5xx, so that a config error
		 * counts no bounces; the operator sees the reply. */
		if (st != NULL && st->code / 100 != 2)
			finish(s, ms, KR_SEND_TEMP, st->code, st->text);
		break;
	case SMTP_EV_MESSAGESENT:
		m = va_arg(ap, smtp_message_t);
		ms = mstate_of(m);
		if (ms == NULL)
			break;
		ms->mail_answered = true;
		rst = ms->r != NULL ? smtp_recipient_status(ms->r) : NULL;
		st = smtp_message_transfer_status(m);
		/* A refused recipient explains the DATA failure that
		 * follows; report the RCPT reply. */
		if (rst != NULL && rst->code != 0 && rst->code / 100 != 2)
			finish(s, ms, class_of(rst->code), rst->code,
			       rst->text);
		else if (st != NULL && st->code / 100 == 2 &&
		         kr_smtp_pipe_outcome(s->pp, (size_t)(ms - s->ms)) /
		                 100 != 2) {
			/* libesmtp says sent, but no 2xx answered this
			 * message's own end of data on the wire: never
			 * recorded as sent (again later: a duplicate at
			 * most, never a loss) */
			kr_log_err("smtp relay=%s: a %d taken by libesmtp for "
			           "a message whose end of data got %d; not "
			           "recorded as sent",
			           s->relay->hostport, st->code,
			           kr_smtp_pipe_outcome(s->pp,
			                                (size_t)(ms - s->ms)));
			finish(s, ms, KR_SEND_TEMP, 0,
			       "no 2xx reply to the end of data was seen");
		} else if (st != NULL && st->code != 0)
			finish(s, ms, class_of(st->code), st->code, st->text);
		break;
	case SMTP_EV_EXTNA_STARTTLS:
		abort_session(s, "relay does not offer STARTTLS");
		break;
	case SMTP_EV_INVALID_PEER_CERTIFICATE:
		(void)va_arg(ap, long);
		ok = va_arg(ap, int *);
		ssl = va_arg(ap, SSL *);
		*ok = 0;
		(void)smtp_peer_ok(s, ssl, why, sizeof(why));
		abort_session(s, "TLS: %s", why);
		break;
	case SMTP_EV_NO_PEER_CERTIFICATE:
		ok = va_arg(ap, int *);
		*ok = 0;
		abort_session(s, "TLS: no server certificate");
		break;
	case SMTP_EV_WRONG_PEER_CERTIFICATE:
		/* libesmtp's own name check knows no IP addresses; ours
		 * (OpenSSL's) decides. */
		ok = va_arg(ap, int *);
		(void)va_arg(ap, char *);
		ssl = va_arg(ap, SSL *);
		*ok = smtp_peer_ok(s, ssl, why, sizeof(why));
		if (!*ok)
			abort_session(s, "TLS: %s", why);
		break;
	case SMTP_EV_WEAK_CIPHER:
		(void)va_arg(ap, int);
		ok = va_arg(ap, int *);
		*ok = 0;
		abort_session(s, "TLS: weak cipher");
		break;
	case SMTP_EV_STARTTLS_OK:
		ssl = va_arg(ap, SSL *);
		if (!smtp_peer_ok(s, ssl, why, sizeof(why)))
			abort_session(s, "TLS: %s", why);
		break;
	case SMTP_EV_NO_CLIENT_CERTIFICATE:
	case SMTP_EV_UNUSABLE_CLIENT_CERTIFICATE:
	case SMTP_EV_UNUSABLE_CA_LIST:
		abort_session(s, "TLS: client set-up failed (event %d)", event);
		break;
	/* Named on purpose, though they do what default does. */
	case SMTP_EV_EXTNA_DSN: /* NOLINT(bugprone-branch-clone) */
	case SMTP_EV_EXTNA_ETRN:
	case SMTP_EV_EXTNA_CHUNKING:
	case SMTP_EV_SYNTAXWARNING:
		/* (int *quit_now) or nothing: keep libesmtp's default. */
		break;
	default:
		break;
	}
	va_end(ap);
}

/* Watches the replies to AUTH (the payload is never looked at or
 * logged): libesmtp does not say whether AUTH succeeded. */
static void
on_monitor(const char *buf, int len, int writing, void *arg)
{
	struct smtp_sess *s = arg;
	const char *p, *end;

	if (len <= 0 || buf == NULL)
		return;
	if (writing == SMTP_CB_WRITING) {
		if (len >= 5 && strncasecmp(buf, "AUTH ", 5) == 0)
			s->auth_sent = true;
		return;
	}
	if (writing != SMTP_CB_READING || !s->auth_sent || s->authenticated)
		return;
	end = buf + len;
	for (p = buf; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));

		if (end - p >= 4 && memcmp(p, "235", 3) == 0 &&
		    (p[3] == ' ' || p[3] == '-'))
			s->authenticated = true;
		if (nl == NULL)
			break;
		p = nl + 1;
	}
}

static char no_realm[1];

static int
on_interact(auth_client_request_t req, char **result, int fields, void *arg)
{
	struct smtp_relay *r = arg;
	int i;

	for (i = 0; i < fields; i++) {
		if (req[i].flags & AUTH_USER)
			result[i] = r->user;
		else if (req[i].flags & AUTH_PASS)
			result[i] = r->password;
		else if (req[i].flags & AUTH_REALM)
			result[i] = no_realm;
		else
			return 0;
		if (result[i] == NULL)
			return 0;
	}
	return 1;
}

/* True when the session's socket has seen the server close or reset. */
static bool
peer_hung_up(void)
{
	struct smtp_sess *cur = kr_smtp_wrap_sess();
	struct pollfd pfd;

	if (cur == NULL || cur->fd < 0)
		return false;
	pfd.fd = cur->fd;
	pfd.events = POLLRDHUP;
	pfd.revents = 0;
	if (poll(&pfd, 1, 0) != 1)
		return false;
	return (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

static const char *
on_message(void **ctx, int *len, void *arg)
{
	struct smtp_mstate *ms = arg;
	struct smtp_sess *cur = kr_smtp_wrap_sess();
	size_t left, chunk;
	const char *p;

	(void)ctx;
	if (len == NULL) { /* rewind */
		ms->off = 0;
		return NULL;
	}
	left = ms->msg->len - ms->off;
	if (ms->off == 0)
		flush_outcomes(cur);
	if (cur != NULL)
		cur->cur = ms;
	if (left == 0) {
		/* libesmtp writes the final dot next. If the server has
		 * already hung up, it cannot get it: the message was not
		 * delivered (libesmtp ignores write errors, so this is the
		 * only place to tell). */
		ms->eof = true;
		ms->peer_gone = peer_hung_up();
		if (cur != NULL && cur->pp != NULL)
			kr_smtp_pipe_eof(cur->pp, (size_t)(ms - cur->ms));
		*len = 0;
		return NULL;
	}
	chunk = left > (1u << 20) ? (1u << 20) : left;
	p = ms->msg->data + ms->off;
	ms->off += chunk;
	*len = (int)chunk;
	return p;
}

/* An envelope address goes into "RCPT TO:<%s>" verbatim: refuse
 * anything that could end or extend the command. */
static bool
addr_ok(const char *a)
{
	const unsigned char *p;

	if (a == NULL || strlen(a) > 320)
		return false;
	for (p = (const unsigned char *)a; *p != '\0'; p++)
		if (*p < 0x20 || *p == 0x7f || *p == '<' || *p == '>')
			return false;
	return true;
}

static void
errstr(char *buf, size_t size)
{
	int e = smtp_errno();
	char tmp[128];

	if (e == 0) {
		snprintf(buf, size, "connection failed");
		return;
	}
	if (smtp_strerror(e, tmp, sizeof(tmp)) == NULL)
		snprintf(tmp, sizeof(tmp), "libesmtp error %d", e);
	snprintf(buf, size, "%s", tmp);
}

/* One SMTP session to relay r for the unfinished messages of ms. Returns
 * the number of messages that got an outcome; *why_out says why the
 * session ended early, if it did. */
static size_t
run_session(struct kr_transport *t, struct smtp_relay *r,
            struct smtp_mstate *ms, size_t n, kr_transport_done_fn done,
            void *ctx, char *why_out, size_t why_size, bool *fatal_out)
{
	struct smtp_sess s;
	smtp_session_t session = NULL;
	size_t i, queued = 0;
	sigset_t pipe_set, old_set, pending;
	bool pipe_was_pending;
	char emsg[160];
	struct timespec zero = {0, 0};
	unsigned long tls_err;

	memset(&s, 0, sizeof(s));
	s.t = t;
	s.relay = r;
	s.done = done;
	s.ctx = ctx;
	s.fd = -1;
	s.buffered = atomic_load(&smtp_nodelay) != 0;
	s.pend = kr_xcalloc(n, sizeof(struct smtp_mstate *));
	s.ms = ms;
	s.n_ms = n;
	s.pp = kr_smtp_pipe_new();
	*fatal_out = false;
	why_out[0] = '\0';

	session = smtp_create_session();
	if (session == NULL) {
		snprintf(why_out, why_size, "libesmtp: out of memory");
		*fatal_out = true;
		goto out;
	}
	(void)smtp_set_server(session, r->hostport);
	(void)smtp_set_eventcb(session, on_event, &s);
	(void)smtp_set_timeout(
	    session, Timeout_GREETING | Timeout_OVERRIDE_RFC2822_MINIMUM,
	    t->timeout_ms);
	(void)smtp_set_timeout(
	    session, Timeout_ENVELOPE | Timeout_OVERRIDE_RFC2822_MINIMUM,
	    t->timeout_ms);
	(void)smtp_set_timeout(session,
	                       Timeout_DATA | Timeout_OVERRIDE_RFC2822_MINIMUM,
	                       t->timeout_ms);
	(void)smtp_set_timeout(
	    session, Timeout_TRANSFER | Timeout_OVERRIDE_RFC2822_MINIMUM,
	    t->timeout_ms);
	(void)smtp_set_timeout(session,
	                       Timeout_DATA2 | Timeout_OVERRIDE_RFC2822_MINIMUM,
	                       t->timeout_ms);
	/* TLS (STARTTLS or implicit) is done in connect(), not by
	 * libesmtp: see starttls() */
	(void)smtp_starttls_enable(session, Starttls_DISABLED);
	if (r->auth != NULL) {
		(void)smtp_auth_set_context(session, r->auth);
		(void)smtp_set_monitorcb(session, on_monitor, &s, 0);
	}
	for (i = 0; i < n; i++) {
		/* message i of the pipe is ms[i] */
		(void)kr_smtp_pipe_add(s.pp, ms[i].msg->mail_from,
		                       ms[i].msg->rcpt, ms[i].msg->len);
		if (ms[i].finished)
			kr_smtp_pipe_done(s.pp, i);
		if (ms[i].finished)
			continue;
		ms[i].m = smtp_add_message(session);
		if (ms[i].m == NULL) {
			kr_smtp_pipe_done(s.pp, i);
			continue;
		}
		ms[i].off = 0;
		ms[i].eof = false;
		ms[i].peer_gone = false;
		ms[i].mail_answered = false;
		smtp_message_set_application_data_release(ms[i].m, &ms[i],
		                                          NULL);
		(void)smtp_set_reverse_path(
		    ms[i].m,
		    ms[i].msg->mail_from != NULL ? ms[i].msg->mail_from : "");
		ms[i].r = smtp_add_recipient(ms[i].m, ms[i].msg->rcpt);
		/* SIZE=: a relay that would refuse it says so at MAIL */
		(void)smtp_size_set_estimate(ms[i].m, ms[i].msg->len);
		(void)smtp_set_messagecb(ms[i].m, on_message, &ms[i]);
		queued++;
	}
	if (queued == 0)
		goto out;

	/* libesmtp writes with write(2): a peer that closed would kill us
	 * with SIGPIPE. Block it in this thread, and swallow one raised
	 * here (unless it was already pending). */
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
	sigpending(&pending);
	pipe_was_pending = sigismember(&pending, SIGPIPE);

	ERR_clear_error();
	kr_smtp_wrap_set(&hooks, &s);
	(void)smtp_start_session(session);
	kr_smtp_wrap_set(NULL, NULL);
	if (s.ssl != NULL) { /* libesmtp closed the socket: no close_notify */
		SSL_set_quiet_shutdown(s.ssl, 1);
		SSL_free(s.ssl);
		s.ssl = NULL;
	}
	flush_outcomes(&s);

	if (!pipe_was_pending) {
		sigpending(&pending);
		if (sigismember(&pending, SIGPIPE))
			(void)sigtimedwait(&pipe_set, NULL, &zero);
	}
	pthread_sigmask(SIG_SETMASK, &old_set, NULL);

	errstr(emsg, sizeof(emsg));
	tls_err = ERR_peek_last_error();
	if (tls_err != 0 && !s.fatal && s.n_finished == 0) {
		/* A failed handshake (untrusted or misnamed certificate)
		 * shows only as "client error" in libesmtp. */
		char e[120];

		ERR_error_string_n(tls_err, e, sizeof(e));
		snprintf(why_out, why_size, "%s: TLS: %.150s", r->hostport, e);
	} else if (s.fatal) {
		snprintf(why_out, why_size, "%s: %.180s", r->hostport, s.why);
		*fatal_out = true;
	} else {
		snprintf(why_out, why_size, "%s: %.150s", r->hostport, emsg);
	}
	ERR_clear_error();
	/* Messages still without an outcome: if the whole message went
	 * and no reply came, nobody knows (RFC 1047); if the server had
	 * answered for it, the failure is temporary; else it is handed to
	 * the next session. A server that hung up before the final dot was
	 * sent did not take the message: temporary. */
	for (i = 0; i < n; i++) {
		if (ms[i].finished || ms[i].m == NULL)
			continue;
		if (ms[i].eof && !ms[i].peer_gone && !s.desync)
			finish(&s, &ms[i], KR_SEND_UNCERTAIN, 0, why_out);
		else if (ms[i].mail_answered || (s.desync && ms[i].eof))
			/* answered for, or (out of step) whatever the relay
			 * said of it cannot be trusted: again later (a
			 * duplicate at most, never a loss) */
			finish(&s, &ms[i], KR_SEND_TEMP, 0, why_out);
	}
	if (s.n_finished == 0 && !s.fatal)
		*fatal_out = true; /* no progress: do not loop on it */
out:
	flush_outcomes(&s);
	free(s.pend);
	free(s.wbuf);
	free(s.pre);
	kr_smtp_pipe_free(&s.pp);
	for (i = 0; i < n; i++) {
		ms[i].m = NULL;
		ms[i].r = NULL;
	}
	if (session != NULL)
		smtp_destroy_session(session);
	kr_log_debug("smtp session relay=%s outcomes=%zu fatal=%d", r->hostport,
	             s.n_finished, (int)*fatal_out);
	return s.n_finished;
}

static int
smtp_send(struct kr_transport *t, struct kr_msg *msgs, size_t n,
          kr_transport_done_fn done, void *ctx, struct kr_err *err)
{
	struct smtp_mstate *ms = NULL;
	size_t i, ri, left = 0, got, total = 0, rounds;
	char why[256] = "no relay configured";
	bool fatal;
	struct smtp_sess dummy;
	int ret = 0;
	size_t counts[4] = {0, 0, 0, 0};

	if (n == 0)
		return 0;
	memset(&dummy, 0, sizeof(dummy));
	dummy.done = done;
	dummy.ctx = ctx;
	ms = kr_xcalloc(n, sizeof(*ms));
	for (i = 0; i < n; i++) {
		ms[i].msg = &msgs[i];
		msgs[i].result = KR_SEND_TEMP;
		msgs[i].code = 0;
		msgs[i].reply[0] = '\0';
		msgs[i].relay[0] = '\0';
		if (msgs[i].data == NULL || msgs[i].len == 0 ||
		    msgs[i].len > INT_MAX || !addr_ok(msgs[i].rcpt) ||
		    (msgs[i].mail_from != NULL &&
		     !addr_ok(msgs[i].mail_from))) {
			ms[i].invalid = true;
			finish(&dummy, &ms[i], KR_SEND_PERM, 0,
			       "invalid message or envelope address");
			total++;
		} else {
			left++;
		}
	}
	for (ri = 0; ri < t->n_relays && left > 0; ri++) {
		/* Reconnect to the same relay while sessions make progress
		 * (a dropped connection mid-batch). */
		for (rounds = 0; left > 0 && rounds <= n; rounds++) {
			got = run_session(t, &t->relays[ri], ms, n, done, ctx,
			                  why, sizeof(why), &fatal);
			total += got;
			left -= got < left ? got : left;
			if (fatal)
				break;
		}
		if (left > 0)
			kr_log_warn(
			    "smtp relay unusable relay=%s reason=\"%s\"",
			    t->relays[ri].hostport, why);
	}
	/* What no relay took is deferred. */
	for (i = 0; i < n; i++)
		if (!ms[i].finished)
			finish(&dummy, &ms[i], KR_SEND_TEMP, 0, why);
	for (i = 0; i < n; i++)
		counts[msgs[i].result & 3]++;
	if (total == 0) {
		kr_err_set(err, KR_ERR_TEMP, "%s", why);
		ret = -1;
	}
	kr_log_debug("smtp batch n=%zu ok=%zu temp=%zu perm=%zu uncertain=%zu",
	             n, counts[KR_SEND_OK], counts[KR_SEND_TEMP],
	             counts[KR_SEND_PERM], counts[KR_SEND_UNCERTAIN]);
	free(ms);
	return ret;
}

static void
relay_fini(struct smtp_relay *r)
{
	free(r->host);
	free(r->user);
	if (r->password != NULL)
		sodium_free(r->password);
	if (r->ssl_ctx != NULL)
		SSL_CTX_free(r->ssl_ctx);
	if (r->auth != NULL)
		auth_destroy_context(r->auth);
	memset(r, 0, sizeof(*r));
}

static void
smtp_destroy(struct kr_transport **tp)
{
	size_t i;

	if (tp == NULL || *tp == NULL)
		return;
	for (i = 0; i < (*tp)->n_relays; i++)
		relay_fini(&(*tp)->relays[i]);
	free((*tp)->relays);
	free(*tp);
	*tp = NULL;
}

static int
smtp_create(const struct kr_config *cfg, struct kr_transport **out,
            struct kr_err *err)
{
	struct kr_transport *t = NULL;
	size_t i;
	int ret = -1;

	*out = NULL;
	if (cfg == NULL || cfg->n_relays == 0) {
		kr_err_set(err, KR_ERR_INVALID,
		           "smtp: at least one relay is required");
		goto out;
	}
	if (sodium_init() < 0) {
		kr_err_set(err, KR_ERR_IO, "smtp: libsodium init failed");
		goto out;
	}
	pthread_once(&auth_once, auth_init);
	t = kr_xcalloc(1, sizeof(*t));
	t->relays = kr_xcalloc(cfg->n_relays, sizeof(*t->relays));
	t->n_relays = cfg->n_relays;
	t->timeout_ms =
	    (long)(cfg->delivery.timeout > 0 ? cfg->delivery.timeout : 300) *
	    1000L;
	for (i = 0; i < cfg->n_relays; i++) {
		const struct kr_cfg_relay *c = &cfg->relays[i];
		struct smtp_relay *r = &t->relays[i];
		int w;

		if (c->host == NULL || c->host[0] == '\0' ||
		    strchr(c->host, ':') != NULL || c->port == 0 ||
		    c->port > 65535) {
			kr_err_set(
			    err, KR_ERR_INVALID,
			    "smtp[%zu]: host must be a name or IPv4 address "
			    "and port 1..65535",
			    i);
			goto out;
		}
		r->host = kr_xstrdup(c->host);
		r->port = c->port;
		r->tls = c->tls;
		/* `pipelining: false`: libesmtp's own pipelining only */
		atomic_init(&r->no_ahead, !c->pipelining);
		w = snprintf(r->hostport, sizeof(r->hostport), "%s:%u", c->host,
		             c->port);
		if (w < 0 || (size_t)w >= sizeof(r->hostport)) {
			kr_err_set(err, KR_ERR_INVALID,
			           "smtp[%zu]: host name too long", i);
			goto out;
		}
		if (c->tls != KR_CFG_TLS_NONE && smtp_relay_tls(r, c, err) != 0)
			goto out;
		if (c->user != NULL) {
			size_t pl;

			if (c->tls == KR_CFG_TLS_NONE) {
				kr_err_set(
				    err, KR_ERR_INVALID,
				    "smtp %s: AUTH (user) needs tls: starttls or "
				    "tls; the password is never sent in clear",
				    r->hostport);
				goto out;
			}
			if (c->password == NULL) {
				kr_err_set(
				    err, KR_ERR_INVALID,
				    "smtp %s: user set but no password "
				    "(password_file or KAIRAN_SMTP_PASSWORD)",
				    r->hostport);
				goto out;
			}
			r->user = kr_xstrdup(c->user);
			pl = strlen(c->password);
			r->password = sodium_malloc(pl + 1);
			if (r->password == NULL) {
				kr_err_set(err, KR_ERR_IO,
				           "smtp: sodium_malloc failed");
				goto out;
			}
			memcpy(r->password, c->password, pl + 1);
			r->auth = auth_create_context();
			if (r->auth == NULL) {
				kr_err_set(err, KR_ERR_IO,
				           "smtp: auth_create_context failed");
				goto out;
			}
			(void)auth_set_mechanism_flags(r->auth,
			                               AUTH_PLUGIN_PLAIN, 0);
			(void)auth_set_interact_cb(r->auth, on_interact, r);
		}
	}
	*out = t;
	t = NULL;
	ret = 0;
out:
	smtp_destroy(&t);
	return ret;
}

/* Connects to the relays in order (a TCP connect, no SMTP) with a short
 * timeout; usable when one answers. */
static int
smtp_probe(struct kr_transport *t, struct kr_err *err)
{
	struct addrinfo hints, *res = NULL, *a;
	char port[8];
	size_t i;
	int fd, ok = 0, flags, r;
	struct pollfd pfd;

	for (i = 0; i < t->n_relays && !ok; i++) {
		memset(&hints, 0, sizeof(hints));
		hints.ai_socktype = SOCK_STREAM;
		snprintf(port, sizeof(port), "%u", t->relays[i].port);
		if (getaddrinfo(t->relays[i].host, port, &hints, &res) != 0)
			continue;
		for (a = res; a != NULL && !ok; a = a->ai_next) {
			fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC,
			            a->ai_protocol);
			if (fd < 0)
				continue;
			flags = fcntl(fd, F_GETFL);
			(void)fcntl(fd, F_SETFL, flags | O_NONBLOCK);
			r = connect(fd, a->ai_addr, a->ai_addrlen);
			if (r != 0 && errno == EINPROGRESS) {
				pfd.fd = fd;
				pfd.events = POLLOUT;
				if (poll(&pfd, 1, 3000) == 1) {
					int e = 0;
					socklen_t el = sizeof(e);

					getsockopt(fd, SOL_SOCKET, SO_ERROR, &e,
					           &el);
					r = e == 0 ? 0 : -1;
				}
			}
			ok = r == 0;
			close(fd);
		}
		freeaddrinfo(res);
		res = NULL;
	}
	if (!ok)
		return kr_err_set(err, KR_ERR_TEMP, "smtp: no relay reachable");
	kr_err_clear(err);
	return 0;
}

const struct kr_transport_ops kr_smtp_engine_ops = {
    .name = "smtp",
    .create = smtp_create,
    .send = smtp_send,
    .probe = smtp_probe,
    .destroy = smtp_destroy,
};

/* For `kairanctl doctor`: one connection to relay i, through the same
 * connect() as a session (so the same STARTTLS or implicit TLS and the
 * same certificate checks), then QUIT. */
int
kr_smtp_engine_check(struct kr_transport *t, size_t i, char *why,
                     size_t size)
{
	struct smtp_sess s;
	struct addrinfo hints, *res = NULL, *a;
	char port[8], buf[8192] = {0};
	const char *p, *e;
	int fd = -1, ret = -1, timeout_ms = 0, rc, g;
	ssize_t n;

	why[0] = '\0';
	memset(&s, 0, sizeof(s));
	if (i >= t->n_relays) {
		snprintf(why, size, "no relay %zu", i);
		return -1;
	}
	s.t = t;
	s.relay = &t->relays[i];
	s.fd = -1;
	(void)sess_connected(&s, -1, &timeout_ms);
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	snprintf(port, sizeof(port), "%u", s.relay->port);
	if ((g = getaddrinfo(s.relay->host, port, &hints, &res)) != 0) {
		snprintf(why, size, "%s: %s", s.relay->hostport,
		         gai_strerror(g));
		goto out;
	}
	for (a = res; a != NULL; a = a->ai_next) {
		fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC,
		            a->ai_protocol);
		if (fd < 0)
			continue;
		kr_smtp_wrap_set(&hooks, &s);
		rc = connect(fd, a->ai_addr, a->ai_addrlen);
		kr_smtp_wrap_set(NULL, NULL);
		if (rc == 0)
			break;
		if (s.why[0] != '\0')
			snprintf(why, size, "%s: %s", s.relay->hostport, s.why);
		else
			snprintf(why, size, "%s: %s", s.relay->hostport,
			         strerror(errno));
		close(fd);
		fd = -1;
		if (s.fatal)
			goto out;
	}
	if (fd < 0)
		goto out;
	if (s.relay->tls != KR_CFG_TLS_NONE) {
		(void)SSL_write(s.ssl, "QUIT\r\n", 6);
		snprintf(why, size, "%s: %s, certificate verified for %s",
		         s.relay->hostport, SSL_get_version(s.ssl),
		         s.relay->host);
		ret = 2;
		goto out;
	}
	/* tls: none: does it offer STARTTLS? */
	if (smtp_plain_reply(&s, fd, buf, sizeof(buf), timeout_ms, "greeting") < 0 ||
	    smtp_plain_write(&s, fd, "EHLO doctor.invalid\r\n", timeout_ms) < 0 ||
	    (n = smtp_plain_reply(&s, fd, buf, sizeof(buf), timeout_ms, "EHLO")) < 0) {
		snprintf(why, size, "%s: %s", s.relay->hostport, s.why);
		goto out;
	}
	ret = 0;
	for (p = buf; buf[0] == '2' && p < buf + n; p = e) {
		e = memchr(p, '\n', (size_t)(buf + n - p));
		e = e != NULL ? e + 1 : buf + n;
		if (e - p >= 12 && strncasecmp(p + 4, "STARTTLS", 8) == 0)
			ret = 1;
	}
	(void)smtp_plain_write(&s, fd, "QUIT\r\n", timeout_ms);
	snprintf(why, size, "%s: plain text, %s", s.relay->hostport,
	         ret == 1 ? "the relay offers STARTTLS" : "no STARTTLS offered");
out:
	if (s.ssl != NULL) {
		SSL_set_quiet_shutdown(s.ssl, 1);
		SSL_free(s.ssl);
	}
	free(s.pre);
	free(s.wbuf);
	if (fd >= 0)
		close(fd);
	if (res != NULL)
		freeaddrinfo(res);
	ERR_clear_error();
	return ret;
}
