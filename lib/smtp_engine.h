/* smtp_engine.h — the libesmtp engine of the kairan-smtp process
 * (smtp_engine.c). Linked only into kairan-smtp: it defines connect(),
 * read(), write() and poll() for that executable. kairand uses it through
 * kr_transport_smtp_ops (transport_smtp.c), which runs the process. */
#ifndef KR_SMTP_ENGINE_H
#define KR_SMTP_ENGINE_H

#include "transport.h"

/* create/send/probe/destroy as struct kr_transport_ops documents; send
 * calls done for each message before the next message's content leaves
 * (the process waits there for kairand to record it). */
extern const struct kr_transport_ops kr_smtp_engine_ops;

/* Called with each outcome the moment it is known, before done() is
 * (which may come a little later: see flush_outcomes()). kairan-smtp
 * sends the outcome to kairand there and waits for the acknowledgement
 * in done(), so that kairand records it while the session goes on.
 * Process-wide; NULL: none. */
void kr_smtp_engine_set_early(kr_transport_done_fn fn);

/* kr_transport_smtp_check() inside the SMTP process (transport_smtp.h). */
KR_NODISCARD int kr_smtp_engine_check(struct kr_transport *t, size_t i,
                                      char *why, size_t size);

/* On (the default): TCP_NODELAY on the sockets libesmtp opens (the
 * benchmark switch, kr_transport_smtp_set_nodelay()). */
void kr_smtp_engine_set_nodelay(int on);
/* write(2)s on session sockets and envelopes sent ahead, so far. */
unsigned long kr_smtp_engine_writes(void);
unsigned long kr_smtp_engine_ahead(void);

#endif
