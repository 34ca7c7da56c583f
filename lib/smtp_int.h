/* smtp_int.h — what the SMTP engine's files share inside kairan-smtp:
 * smtp_engine.c (the libesmtp driver: sessions, relay failover, sending
 * ahead) and smtp_tls.c (STARTTLS and implicit TLS, certificate checks).
 * Not for anything outside the kairan-smtp executable. */
#ifndef KR_SMTP_INT_H
#define KR_SMTP_INT_H

#include <poll.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/ssl.h>

/* libesmtp.h needs size_t: <stddef.h> first, in a block of its own */
#include <stddef.h>

#include <auth-client.h>
#include <libesmtp.h>

#include "config.h"
#include "err.h"
#include "smtp_pipe.h"
#include "transport.h"

struct smtp_relay {
	char *host;
	unsigned port;
	char hostport[64];
	enum kr_cfg_tls tls;
	char *user;
	char *password; /* sodium_malloc'd */
	SSL_CTX *ssl_ctx;
	auth_context_t auth;
	/* Nothing is sent ahead to it: configured so (`pipelining:
	 * false`), or it let a MAIL FROM sent ahead go unanswered
	 * (sess_timed_out()). */
	atomic_bool no_ahead;
};

struct kr_transport {
	struct smtp_relay *relays;
	size_t n_relays;
	long timeout_ms;
};

/* Per message, for one send(). */
struct smtp_mstate {
	struct kr_msg *msg;
	smtp_message_t m; /* in the current session */
	smtp_recipient_t r;
	size_t off;         /* how much libesmtp has read */
	bool eof;           /* libesmtp read the whole message */
	bool peer_gone;     /* ... and the server had hung up by then */
	bool mail_answered; /* the server replied to its MAIL */
	bool finished;      /* outcome set and done called */
	bool invalid;
};

struct smtp_sess {
	struct kr_transport *t;
	struct smtp_relay *relay;
	kr_transport_done_fn done;
	void *ctx;
	int fd;
	bool fatal; /* relay unusable: stop, try the next */
	bool auth_sent, authenticated;
	/* What libesmtp wrote and poll() has not sent yet (sess_write()):
	 * on only with TCP_NODELAY, so the Nagle benchmark rows show
	 * libesmtp as shipped. */
	bool buffered;
	char *wbuf;
	size_t wlen, wcap;
	int werr;                 /* a write(2) failed: errno, kept */
	bool read_since_write;    /* replies read since our last write */
	struct smtp_mstate *cur;  /* the message libesmtp reads from us */
	/* Implicit TLS (`tls: tls`): the connection, made in connect();
	 * in_ssl while OpenSSL itself reads or writes the socket. */
	SSL *ssl;
	bool in_ssl;
	/* STARTTLS done by starttls(): the greeting it read, given to
	 * libesmtp as if it came through TLS. */
	char *pre;
	size_t pre_len, pre_off;
	char why[200];     /* why the relay was unusable */
	size_t n_finished; /* outcomes given in this session */
	/* Outcomes known but not yet handed to done, in order; see
	 * flush_outcomes(). NULL: hand them over at once. */
	struct smtp_mstate **pend;
	size_t n_pend;
	/* The session's messages, in order: index i here is message i of
	 * the pipe. */
	struct smtp_mstate *ms;
	size_t n_ms;
	int connections;   /* connects in this session */
	/* Sending ahead of libesmtp and which reply answers which command
	 * (smtp_pipe.c); NULL outside a session (kr_smtp_engine_check()). A
	 * reply out of step gives the connection up (desync). */
	struct kr_smtp_pipe *pp;
	bool dead;         /* connection given up (give_up()) */
	bool desync;
	/* The stage deadline (CLOCK_MONOTONIC ms; 0: none): the next
	 * reply must be complete by then, however the relay drips it. Set
	 * when something is written and when a reply is complete. */
	int64_t deadline;
	/* What the relay sent and libesmtp has not read: r_ready whole
	 * lines, then the start of one still coming (sess_read()). */
	char rbuf[16384];
	size_t r_len, r_ready;
};

/* smtp_engine.c */

/* Waits up to timeout_ms for fd to be readable (POLLIN) or writable
 * (POLLOUT); the poll() result. */
int smtp_wait_fd(int fd, short events, int timeout_ms);
/* Copies a server reply into dst without control characters. */
void smtp_copy_reply(char *dst, size_t size, const char *src);

/* smtp_tls.c */

/* Reads one whole SMTP reply from the plain-text socket into buf (size
 * bytes, NUL-terminated) within timeout_ms; nothing may follow it (the
 * STARTTLS injection flaws). Its length, or -1 with s->why set. */
ssize_t smtp_plain_reply(struct smtp_sess *s, int fd, char *buf, size_t size,
                         int timeout_ms, const char *what);
/* Writes a short command on the plain-text socket: 0 or -1. */
int smtp_plain_write(struct smtp_sess *s, int fd, const char *cmd,
                     int timeout_ms);

/* For `tls: starttls`, on the freshly connected socket: reads the
 * greeting, says EHLO and STARTTLS (refusing a relay that talks ahead),
 * keeping the greeting for libesmtp (s->pre). 0 when done or not
 * needed, -1 with s->why set. */
int smtp_starttls(struct smtp_sess *s, int fd, int timeout_ms);
/* The TLS handshake (implicit TLS, or after smtp_starttls()) with the
 * certificate verified for the relay's name; fd < 0: only says whether
 * this relay needs TLS at connect (-1) or not (0). */
int smtp_tls_handshake(struct smtp_sess *s, int fd, int timeout_ms);
/* The peer certificate's host name (or IP address) check and the chain
 * verification result; 1 good, 0 not (why says). */
int smtp_peer_ok(struct smtp_sess *s, SSL *ssl, char *why, size_t size);
/* The relay's SSL_CTX: TLS 1.2 or 1.3, verified against ca_file or the
 * system's CAs, SNI added at the handshake. */
int smtp_relay_tls(struct smtp_relay *r, const struct kr_cfg_relay *c,
                   struct kr_err *err);

#endif
