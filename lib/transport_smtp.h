/* transport_smtp.h — what only the SMTP transport has, beside its ops
 * (transport.h): its process, the counters and knobs benchmarks and
 * tests read, and doctor's relay check. */
#ifndef KR_TRANSPORT_SMTP_H
#define KR_TRANSPORT_SMTP_H

#include <stddef.h>
#include <stdint.h>

#include "transport.h"

/* The SMTP sessions run in a process of their own, kairan-smtp, one per
 * transport object (transport_smtp.c; the engine is smtp_engine.c). It is
 * found at $KAIRAN_SMTP_BIN or beside the running program. */

/* Its pid, 0 when none runs (tests look at its sockets). */
long kr_transport_smtp_pid(const struct kr_transport *t);

/* Benchmarks only: on (the default) sets TCP_NODELAY on the sockets
 * libesmtp opens; 0 leaves Nagle on, to measure what it costs.
 * Process-wide, takes effect at the next send. */
void kr_transport_smtp_set_nodelay(int on);

/* write(2) calls made so far on SMTP session sockets, process-wide (the
 * transport gathers what libesmtp writes: about one per message and
 * one per reply waited for; benchmarks and tests read it). */
unsigned long kr_transport_smtp_writes(void);

/* Envelopes (MAIL FROM, RCPT TO, DATA) sent ahead of libesmtp so far,
 * process-wide: against a relay with PIPELINING and without CHUNKING,
 * about one per message (tests and benchmarks read it). */
unsigned long kr_transport_smtp_ahead(void);

/* For `kairanctl doctor`: connects to relay i of an SMTP transport as a
 * session would (STARTTLS or TLS and the certificate checked the same
 * way), then QUITs. Returns 2 TLS verified, 1 plain text (tls: none) and
 * the relay offers STARTTLS, 0 plain text without STARTTLS, -1 not
 * reachable or TLS failed; why (size bytes) says what was seen. */
KR_NODISCARD int kr_transport_smtp_check(struct kr_transport *t, size_t i,
                                         char *why, size_t size);

/* kairan-smtp processes that ended without being asked to (killed,
 * crashed, or spoke out of turn and were killed), process-wide since
 * start. The last one's description goes to last (size bytes, may be
 * NULL) and its time (Unix seconds) to *at (may be NULL). A new process
 * is started for the next send. */
unsigned long kr_transport_smtp_ends(char *last, size_t size, int64_t *at);

#endif
