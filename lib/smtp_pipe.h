/* smtp_pipe.h — sending ahead of libESMTP (RFC 2920) and the accounting of
 * the replies, over byte buffers with no I/O. The SMTP engine
 * (smtp_engine.c) feeds it what libESMTP writes and what the relay sends;
 * it says what else goes on the wire, what libESMTP may read, and which
 * reply answered each message's end of data.
 *
 * - Behind a message's final dot goes the next message's MAIL FROM, RCPT
 *   TO and DATA, and behind a lone MAIL FROM its RCPT TO and DATA, byte
 *   for byte as libESMTP 1.1 will write them; its own copy is skipped
 *   (kr_smtp_pipe_write()). Only once the connection's first message has
 *   shown that libESMTP pipelines RCPT TO and DATA here (PIPELINING, no
 *   CHUNKING).
 * - After a refused MAIL sent ahead, the replies to its RCPT and DATA are
 *   taken out of what libESMTP reads (it never wrote those commands).
 * - A refused end of data with the next envelope behind it ends the
 *   connection after that reply (KR_SMTP_PIPE_END): libESMTP would RSET
 *   while the relay waits for content.
 * - Every reply is matched to the command it answers (smtp_sync.h); one
 *   out of step ends the connection before it (KR_SMTP_PIPE_DESYNC).
 * - kr_smtp_pipe_outcome(): a message may be taken as sent only if the
 *   reply to its own end of data was a 2xx. */
#ifndef KR_SMTP_PIPE_H
#define KR_SMTP_PIPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kr_smtp_pipe;

enum kr_smtp_pipe_state {
	KR_SMTP_PIPE_OK = 0,
	KR_SMTP_PIPE_END,    /* end the connection: libESMTP has its reply */
	KR_SMTP_PIPE_DESYNC, /* the relay is out of step: why_out says */
};

/* A pipe with no messages and no connection; free with _free (NULL ok). */
struct kr_smtp_pipe *kr_smtp_pipe_new(void);
void kr_smtp_pipe_free(struct kr_smtp_pipe **p);
/* Message number i (0, 1, … in the order libESMTP sends them): from and
 * rcpt are borrowed until _free, size is its SIZE= estimate. Returns i. */
size_t kr_smtp_pipe_add(struct kr_smtp_pipe *p, const char *from,
                        const char *rcpt, size_t size);
/* Message i has its outcome: nothing is sent ahead for it. */
void kr_smtp_pipe_done(struct kr_smtp_pipe *p, size_t i);
/* A new connection, the greeting awaited; ahead: sending ahead allowed
 * (once the first message showed it is safe). */
void kr_smtp_pipe_connected(struct kr_smtp_pipe *p, bool ahead);
/* libESMTP has read message i's content to its end: its end of data is
 * what it writes next. */
void kr_smtp_pipe_eof(struct kr_smtp_pipe *p, size_t i);
/* libESMTP writes b[0..n): *skip_out of its first bytes went ahead
 * already (do not send them again). -1 when b differs from what went
 * ahead (end the connection), else 0. */
int kr_smtp_pipe_write(struct kr_smtp_pipe *p, const char *b, size_t n,
                       size_t *skip_out);
/* b[0..n) is about to be sent: returns how many bytes to send right
 * behind it, at *ahead_out (valid until the next call), 0 for none. */
size_t kr_smtp_pipe_ahead(struct kr_smtp_pipe *p, const char *b, size_t n,
                          const char **ahead_out);
/* b[0..n) went on the wire (all of it, in order: b and what went ahead). */
void kr_smtp_pipe_sent(struct kr_smtp_pipe *p, const char *b, size_t n);
/* The relay sent b[0..n): compacts b in place to what libESMTP may read
 * and returns its length. Once not KR_SMTP_PIPE_OK, returns 0. */
size_t kr_smtp_pipe_read(struct kr_smtp_pipe *p, char *b, size_t n);
/* libESMTP's wait timed out: true when the reply awaited is to a MAIL
 * sent behind a dot (the relay drops pipelined input). */
bool kr_smtp_pipe_timed_out(const struct kr_smtp_pipe *p);
enum kr_smtp_pipe_state kr_smtp_pipe_state(const struct kr_smtp_pipe *p,
                                           const char **why_out);
/* The code of the reply to message i's end of data (dot or BDAT LAST)
 * on the last connection that sent it, 0 while none came. */
int kr_smtp_pipe_outcome(const struct kr_smtp_pipe *p, size_t i);
/* Commands sent that the relay has not answered yet. */
unsigned kr_smtp_pipe_waiting(const struct kr_smtp_pipe *p);
/* Complete replies matched; -1/0/1 sending ahead off/unknown/on;
 * envelopes sent ahead. */
uint64_t kr_smtp_pipe_replies(const struct kr_smtp_pipe *p);
int kr_smtp_pipe_mode(const struct kr_smtp_pipe *p);
unsigned long kr_smtp_pipe_n_ahead(const struct kr_smtp_pipe *p);

#endif
