/* smtp_sync.h — which SMTP reply answers which command (RFC 5321 §4.2,
 * RFC 2920 §3). A pure state machine over the bytes a client wrote and
 * the bytes the server sent, with no I/O: the transport feeds it both
 * directions and gives the connection up the moment the server is out of
 * step with what was sent.
 *
 * Out of step ("desync") is any reply that
 * - arrives while no command is waiting for one (extra lines after the
 *   greeting, a second 250 after a dot, a reply to a command not yet
 *   fully written — e.g. a "250" for a message whose body never left);
 * - does not fit the command it answers: a 2xx to DATA (its positive
 *   answer is 354), a 3xx to anything but DATA and AUTH, a 1xx;
 * - is malformed: a line that does not start with three digits (2–5,
 *   0–5, 0–9), a continuation line whose code differs from the first,
 *   a line over 2,048 octets.
 * Such a session cannot be trusted with any later outcome: a stray 2xx
 * taken for the reply to a final dot would record a copy as sent whose
 * body never left.
 *
 * The client side is parsed as libesmtp writes it: command lines ending
 * in CRLF; after DATA and its 354, the message until CRLF "." CRLF; BDAT
 * n [LAST] followed by n octets (RFC 3030); after an AUTH's 334, the
 * client's response line. */
#ifndef KR_SMTP_SYNC_H
#define KR_SMTP_SYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What a reply waited for answers. */
enum kr_smtp_await {
	KR_SA_GREETING = 0,
	KR_SA_COMMAND, /* EHLO, MAIL, RCPT, RSET, QUIT, NOOP … */
	KR_SA_DATA,    /* DATA: 354 goes on to the content */
	KR_SA_AUTH,    /* AUTH or a response to its 334 */
	KR_SA_DOT,     /* the end of the content */
	KR_SA_BDAT,    /* one BDAT chunk */
	KR_SA_BDAT_LAST, /* the chunk of BDAT n LAST: the end of the content */
};

#define KR_SMTP_SYNC_MAXQ 64
#define KR_SMTP_SYNC_MAXLINE 2048

struct kr_smtp_sync {
	/* commands written and not answered yet, oldest first */
	unsigned char q[KR_SMTP_SYNC_MAXQ];
	unsigned head, n;
	/* the client side */
	int wmode;          /* lines, content, BDAT octets */
	int dot;            /* progress through CRLF "." CRLF */
	uint64_t bdat_left; /* octets of a BDAT chunk still to come */
	bool bdat_last;     /* ... of BDAT n LAST */
	char wline[32];     /* the start of the command line being written */
	size_t wlen;
	bool auth_cont;     /* the next line is a response to a 334 */
	/* the server side */
	size_t rcol;        /* octets of the reply line read so far */
	char rcode[3];      /* the code of the reply being read */
	char lcode[3];      /* ... of its current line */
	char rsep;
	bool rfirst;        /* no line of this reply read yet */
	size_t rstart;      /* where in the current read the reply began */
	/* counters */
	uint64_t replies;   /* complete replies matched */
	bool broken;
	char why[160];
};

/* A new connection: the greeting is awaited. */
void kr_smtp_sync_init(struct kr_smtp_sync *y);
/* The client wrote b[0..n) (in order, everything). */
void kr_smtp_sync_wrote(struct kr_smtp_sync *y, const char *b, size_t n);
/* The server sent b[0..n). Returns n when everything in it is in step;
 * otherwise the offset at which the first reply out of step starts (the
 * replies before it are sound and may be acted on) and y->broken is set,
 * with y->why saying what was wrong. Once broken, returns 0. */
size_t kr_smtp_sync_read(struct kr_smtp_sync *y, const char *b, size_t n);
/* Commands written and not answered yet. */
unsigned kr_smtp_sync_waiting(const struct kr_smtp_sync *y);
/* What the i-th oldest command still waiting awaits (i < waiting). */
enum kr_smtp_await kr_smtp_sync_awaits(const struct kr_smtp_sync *y,
                                       unsigned i);

#endif
