/* transport.h — how composed messages leave: SMTP (transport_smtp.c,
 * libesmtp) or a Maildir (transport_maildir.c, dry runs and `make run`).
 * Each backend exports one const struct kr_transport_ops. A transport
 * object is used by one worker thread at a time. */
#ifndef KR_TRANSPORT_H
#define KR_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

struct kr_config;
struct kr_err;
struct kr_transport;

enum kr_send_result {
	KR_SEND_OK = 0,        /* 2xx after DATA: the relay has it */
	KR_SEND_TEMP = 1,      /* 4xx, dropped connection, relay down */
	KR_SEND_PERM = 2,      /* 5xx for this recipient or message */
	KR_SEND_UNCERTAIN = 3, /* no answer after the final dot (RFC 1047) */
};

/* One message of a batch: input fields set by the caller, outcome fields
 * by the transport. */
struct kr_msg {
	int64_t id;            /* the caller's (delivery id) */
	const char *mail_from; /* envelope sender */
	const char *rcpt;      /* the one envelope recipient */
	const char *data;      /* whole message, CRLF lines, no dot-stuffing */
	size_t len;
	void *user;            /* the caller's */
	/* outcome */
	enum kr_send_result result;
	int code;              /* SMTP reply code, 0 when none */
	char reply[256];       /* server's reply text (queue id), sanitised */
	char relay[64];        /* which relay took it ("host:port") */
};

/* Called once per message once its outcome is known, from the sending
 * thread. For SMTP: after the server's reply to the final dot, while the
 * next command is on the wire, and always before the next message's
 * content is sent — so a 250 is recorded before another message leaves. */
typedef void (*kr_transport_done_fn)(void *ctx, struct kr_msg *msg);

struct kr_transport_ops {
	const char *name;
	/* Creates a transport for cfg (copies what it needs from it). */
	int (*create)(const struct kr_config *cfg, struct kr_transport **out,
	    struct kr_err *err);
	/* Sends msgs[0..n) in order, over one session where the backend has
	 * sessions, calling done for each. Returns 0 when every message got
	 * an outcome, -1 when the session could not be run at all (err set;
	 * every message then has result KR_SEND_TEMP and done was called). */
	int (*send)(struct kr_transport *t, struct kr_msg *msgs, size_t n,
	    kr_transport_done_fn done, void *ctx, struct kr_err *err);
	/* A cheap check that the transport could send now ("" when fine);
	 * writes a reason otherwise. Returns 0 usable, -1 not. */
	int (*probe)(struct kr_transport *t, struct kr_err *err);
	void (*destroy)(struct kr_transport **t);
};

extern const struct kr_transport_ops kr_transport_smtp_ops;
extern const struct kr_transport_ops kr_transport_maildir_ops;

/* The ops for cfg->delivery.transport. */
const struct kr_transport_ops *kr_transport_for(const struct kr_config *cfg);

/* What only the SMTP transport has: transport_smtp.h. */

#endif
