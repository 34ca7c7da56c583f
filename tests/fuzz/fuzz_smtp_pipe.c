/* fuzz_smtp_pipe.c — libFuzzer harness for lib/smtp_pipe.c: a hostile
 * relay's bytes against the client side libESMTP writes for three
 * messages with PIPELINING (sending ahead learnt on the first).
 * `make fuzz` builds and runs it on tests/fuzz/smtp_pipe.
 *
 * The input is the relay's bytes; each octet 0x00 in it splits a read
 * (so replies come joined or split anywhere) and moves the client one
 * step on. Beyond memory errors it checks the contract: libESMTP is never
 * given more than the relay sent, nothing once the connection is to end,
 * and a message has an end-of-data outcome only if its content was
 * written. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_pipe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(int cond)
{
	if (!cond)
		abort();
}

/* What libESMTP writes, step by step; a "#N" step reads message N to its
 * end first. */
static const char *const script[] = {
    "EHLO me\r\n",
    "MAIL FROM:<b@x>\r\n",
    "RCPT TO:<a0@y>\r\nDATA\r\n",
    "#0Subject: 0\r\n\r\nbody\r\n.\r\n",
    "MAIL FROM:<b@x>\r\n",
    "RCPT TO:<a1@y>\r\nDATA\r\n",
    "#1Subject: 1\r\n\r\n..\r\n.\r\n",
    "MAIL FROM:<b@x>\r\n",
    "RCPT TO:<a2@y>\r\nBDAT 4 LAST\r\nab\r\n",
    "QUIT\r\n",
};

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kr_smtp_pipe *p = kr_smtp_pipe_new();
	char buf[4096], out[8192];
	const char *step, *a;
	size_t i = 0, k, n, skip, got, st = 0;
	bool eof[3] = {false, false, false};

	(void)kr_smtp_pipe_add(p, "b@x", "a0@y", 10);
	(void)kr_smtp_pipe_add(p, "b@x", "a1@y", 10);
	(void)kr_smtp_pipe_add(p, "b@x", "a2@y", 10);
	kr_smtp_pipe_connected(p, true);
	while (i < size) {
		/* one read of the relay's, up to the next 0x00 */
		for (n = 0; i + n < size && data[i + n] != 0 && n < sizeof(buf);
		     n++)
			buf[n] = (char)data[i + n];
		i += n + 1;
		got = kr_smtp_pipe_read(p, buf, n);
		check(got <= n);
		if (kr_smtp_pipe_state(p, NULL) != KR_SMTP_PIPE_OK)
			check(kr_smtp_pipe_read(p, buf, n) == 0);
		/* then the client's next step */
		if (st >= sizeof(script) / sizeof(script[0]))
			continue;
		step = script[st++];
		if (step[0] == '#') {
			eof[step[1] - '0'] = true;
			kr_smtp_pipe_eof(p, (size_t)(step[1] - '0'));
			kr_smtp_pipe_done(p, (size_t)(step[1] - '0'));
			step += 2;
		}
		k = strlen(step);
		if (kr_smtp_pipe_write(p, step, k, &skip) < 0)
			continue;
		check(skip <= k);
		n = k - skip;
		memcpy(out, step + skip, n);
		k = n > 0 ? kr_smtp_pipe_ahead(p, out, n, &a) : 0;
		check(k < sizeof(out) - n);
		if (k > 0)
			memcpy(out + n, a, k);
		if (n + k > 0)
			kr_smtp_pipe_sent(p, out, n + k);
	}
	for (k = 0; k < 3; k++)
		if (!eof[k])
			check(kr_smtp_pipe_outcome(p, k) == 0);
	(void)kr_smtp_pipe_timed_out(p);
	kr_smtp_pipe_free(&p);
	return 0;
}
