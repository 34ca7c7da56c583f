/* bounce.h — what a message returned to a VERP address says: an RFC 3464
 * delivery status notification, an RFC 5965 (ARF) complaint, one of the
 * common non-standard bounce shapes (qmail, Exim, "Undelivered Mail"), an
 * auto-reply to ignore, or nothing we know. Parsing only: no SQL, no key;
 * the caller verifies the candidate tokens and records the outcome
 * (kr_store_bounce_record). Input is untrusted: bounded walk, any bytes. */
#ifndef KR_BOUNCE_H
#define KR_BOUNCE_H

#include <stddef.h>

#include "common.h"
#include "token.h"

struct kr_err;

/* Largest message kr_bounce_parse looks at; the rest is ignored. */
#define KR_BOUNCE_MAX_INPUT (10u * 1024 * 1024)
/* Candidate tokens kept per message. */
#define KR_BOUNCE_MAX_TOKENS 8

enum kr_bounce_kind {
	KR_BOUNCE_IGNORE = 0,    /* not a failure: see reason */
	KR_BOUNCE_HARD = 1,      /* 5.x.x, permanent */
	KR_BOUNCE_SOFT = 2,      /* 4.x.x after the MTA gave up, or unknown */
	KR_BOUNCE_COMPLAINT = 3, /* ARF abuse report */
};

struct kr_bounce_token {
	char token[KR_TOKEN_MAX];
	enum kr_token_purpose purpose; /* BOUNCE (VERP) or UNSUBSCRIBE (URL) */
};

struct kr_bounce {
	enum kr_bounce_kind kind;
	char status[16];      /* "5.1.1", or "" */
	char diagnostic[256]; /* Diagnostic-Code or the body's reason, one
	                         line, printable ASCII; may hold an address */
	char recipient[256];  /* Final-Recipient or the body's address */
	const char *source;   /* static: "dsn", "arf", "qmail", "exim",
	                         "text", "verp" */
	const char *reason;   /* static, for IGNORE: "auto-reply",
	                         "delayed", "not a bounce", … */
	struct kr_bounce_token tokens[KR_BOUNCE_MAX_TOKENS]; /* best first */
	size_t n_tokens;
};

/* Parses msg[0..len) (at most KR_BOUNCE_MAX_INPUT bytes are read) into
 * *out. recipient (may be NULL) is the envelope recipient the MTA gave
 * (Postfix ${original_recipient}): its VERP token is tried first. Never fails
 * on content: garbage gives kind IGNORE, reason "not a bounce". A message that
 * came to a VERP address (a token was found) but says nothing recognisable
 * counts as SOFT with source "verp". Returns 0; -1 only for a NULL argument
 * (KR_ERR_INVALID). */
KR_NODISCARD int kr_bounce_parse(const char *msg, size_t len,
                                 const char *recipient, struct kr_bounce *out,
                                 struct kr_err *err);

/* The kind an SMTP-time rejection of one recipient means (as for a
 * returned message): HARD for a 5xx about the address (5.1.x, 5.2.1,
 * 5.4.4, "user unknown"), SOFT for a full mailbox, a policy or content
 * block (5.7.x, 5.6.x: the address may be fine) or a 4xx, IGNORE for one
 * about us or the session (5.5.x, authentication, relaying). status_out
 * (16 bytes, may be NULL) gets the enhanced status or "". */
enum kr_bounce_kind kr_bounce_smtp_kind(int code, const char *reply,
                                        char *status_out);

/* "hard", "soft", "complaint", "ignore". */
const char *kr_bounce_kind_name(enum kr_bounce_kind kind);

#endif
