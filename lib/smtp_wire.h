/* smtp_wire.h — the frames kairand and its kairan-smtp process exchange
 * over a socket pair (lib/transport_smtp.c, daemon/kairan_smtp.c).
 *
 * A frame is a 4-byte type and a 4-byte payload length (host order: both
 * ends are one machine), then the payload: u32/i32/u64/i64 fields in host
 * order and strings as a u32 length (its NUL included; 0: none) and the
 * bytes, so a reader can use them in place.
 *
 *   INIT    kairand → child  log level, stage timeout (s), relays (host,
 *                            port, tls, ca_file, user, password,
 *                            pipelining)
 *   READY   child → kairand  0, or -1 and why the relays cannot be used
 *   SEND    kairand → child  nodelay, n, then per message id, mail_from,
 *                            rcpt and its bytes
 *   OUTCOME child → kairand  index, result, code, reply, relay: one
 *                            message's outcome; the child then waits for
 *   ACK     kairand → child  the outcome is recorded: the next message's
 *                            content may leave
 *   DONE    child → kairand  send()'s return, why, write(2)s and
 *                            envelopes sent ahead during it
 *   PROBE / PROBED           probe(): 0 or -1 and why */
#ifndef KR_SMTP_WIRE_H
#define KR_SMTP_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "common.h"

struct kr_buf;

enum kr_wire_type {
	KR_W_INIT = 1,
	KR_W_READY,
	KR_W_SEND,
	KR_W_OUTCOME,
	KR_W_ACK,
	KR_W_DONE,
	KR_W_PROBE,
	KR_W_PROBED,
	KR_W_CHECK,   /* kairand → child: relay index (kairanctl doctor) */
	KR_W_CHECKED, /* child → kairand: kr_smtp_engine_check()'s return, why */
};

/* The largest payload accepted (a batch of 50 messages of 1 MB fits). */
#define KR_WIRE_MAX (256u * 1024u * 1024u)

/* Building a frame in b: begin, fields, end (which sets the length). */
void kr_wire_begin(struct kr_buf *b, uint32_t type);
void kr_wire_u32(struct kr_buf *b, uint32_t v);
void kr_wire_u64(struct kr_buf *b, uint64_t v);
void kr_wire_str(struct kr_buf *b, const char *s); /* NULL: none */
void kr_wire_end(struct kr_buf *b);

/* Writes iov[0..n) whole (no SIGPIPE). 0, or -1 with errno. */
KR_NODISCARD int kr_wire_writev(int fd, struct iovec *iov, int n);
KR_NODISCARD int kr_wire_write(int fd, const struct kr_buf *b);
/* Reads one frame: its type and payload (in b, reset first). 1 read, 0
 * the other end closed, -1 error (errno; EPROTO for a bad frame). */
KR_NODISCARD int kr_wire_read(int fd, struct kr_buf *b, uint32_t *type);

/* A read-ahead buffer for kr_wire_read_rd(), one per socket (zeroed with
 * it: kr_wire_rd_init()): a frame that fits in it costs one read(2), not
 * two (header, payload). Only for a socket read by this function alone,
 * never polled (bytes read ahead are invisible to poll()). */
struct kr_wire_rd {
	char buf[1024];
	size_t off, len;
};
void kr_wire_rd_init(struct kr_wire_rd *rd);
/* kr_wire_read() through rd. */
KR_NODISCARD int kr_wire_read_rd(int fd, struct kr_wire_rd *rd,
                                 struct kr_buf *b, uint32_t *type);

/* Reading a payload in order; a short or malformed payload sets bad and
 * gives zeros and NULLs from then on. */
struct kr_wire_in {
	const char *p;
	size_t n, off;
	bool bad;
};
void kr_wire_in_init(struct kr_wire_in *in, const struct kr_buf *b);
uint32_t kr_wire_get_u32(struct kr_wire_in *in);
uint64_t kr_wire_get_u64(struct kr_wire_in *in);
/* A string in place (NUL-terminated) or NULL for none; len_out (may be
 * NULL) gets its length without the NUL. */
const char *kr_wire_get_str(struct kr_wire_in *in, size_t *len_out);
/* Raw bytes of the given length in place (not NUL-terminated). */
const char *kr_wire_get_bytes(struct kr_wire_in *in, size_t len);

#endif
