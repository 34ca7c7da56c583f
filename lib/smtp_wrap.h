/* smtp_wrap.h — the libc wrappers of the kairan-smtp process
 * (smtp_wrap.c): connect(), read(), write() and poll(), defined for that
 * executable alone (libkairan.a leaves this file out, and a test checks
 * with nm that nothing else defines them).
 *
 * Why: libESMTP 1.1 opens and drives its socket itself and offers no fd or
 * I/O hook, yet kairan needs TCP_NODELAY and a connect timeout on it,
 * implicit TLS and a STARTTLS that survives TLS 1.3, gathered writes,
 * stage deadlines, and the next envelope sent behind each dot.
 *
 * The contract:
 * - On a thread with no session registered (kr_smtp_wrap_set()), each
 *   wrapper is exactly libc's function (found with dlsym(RTLD_NEXT)).
 * - On a thread with one, each wrapper first offers the call to the
 *   session's hook; a hook returns 1 when it took the call (its result in
 *   *ret, errno set as the libc call would) and 0 to leave it to libc.
 *   Hooks take only the session's own socket (the one its connect hook
 *   saw) and leave every other descriptor to libc.
 * - The wrappers call nothing but those hooks and libc; the hooks are the
 *   SMTP engine's (smtp_engine.c), which calls no application code from
 *   them: no store, no log callback of kairand's, no other thread's data.
 * - What the engine relies on in libESMTP (which calls it makes, and
 *   how) is listed at the top of smtp_engine.c and in README "On the
 *   wire", and checked against the installed libESMTP by
 *   test_transport_smtp (test_smtp_libesmtp_contract: the write count
 *   per message, the envelopes sent ahead, the replies read;
 *   test_smtp_sets_tcp_nodelay). */
#ifndef KR_SMTP_WRAP_H
#define KR_SMTP_WRAP_H

#include <poll.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

struct kr_smtp_wrap {
	int (*connect)(void *sess, int fd, const struct sockaddr *addr,
	               socklen_t len, int *ret);
	int (*poll)(void *sess, struct pollfd *fds, nfds_t nfds, int timeout,
	            int *ret);
	int (*write)(void *sess, int fd, const void *buf, size_t n,
	             ssize_t *ret);
	int (*read)(void *sess, int fd, void *buf, size_t n, ssize_t *ret);
};

/* Registers sess, served by hooks, for the calling thread; NULL, NULL:
 * none (every wrapper is libc's again). */
void kr_smtp_wrap_set(const struct kr_smtp_wrap *hooks, void *sess);
/* The session registered on the calling thread, or NULL (for callbacks
 * that libESMTP or OpenSSL make without a context of ours). */
void *kr_smtp_wrap_sess(void);

/* libc's own functions, for the hooks. */
int kr_smtp_real_connect(int fd, const struct sockaddr *addr, socklen_t len);
int kr_smtp_real_poll(struct pollfd *fds, nfds_t nfds, int timeout);
ssize_t kr_smtp_real_write(int fd, const void *buf, size_t n);
ssize_t kr_smtp_real_read(int fd, void *buf, size_t n);

#endif
