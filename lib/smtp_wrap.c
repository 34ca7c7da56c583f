/* smtp_wrap.c — see smtp_wrap.h: connect(), poll(), write() and read()
 * for the kairan-smtp executable, handing a registered session's calls to
 * its hooks and everything else to libc. */
#include "smtp_wrap.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

static _Thread_local const struct kr_smtp_wrap *tl_hooks;
static _Thread_local void *tl_sess;

static int (*real_connect)(int, const struct sockaddr *, socklen_t);
static int (*real_poll)(struct pollfd *, nfds_t, int);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_read)(int, void *, size_t);
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void *
next(const char *name)
{
	return dlsym(RTLD_NEXT, name);
}

static void
load(void)
{
	void *p;

	p = next("connect");
	memcpy(&real_connect, &p, sizeof(p));
	p = next("poll");
	memcpy(&real_poll, &p, sizeof(p));
	p = next("write");
	memcpy(&real_write, &p, sizeof(p));
	p = next("read");
	memcpy(&real_read, &p, sizeof(p));
}

void
kr_smtp_wrap_set(const struct kr_smtp_wrap *hooks, void *sess)
{
	tl_hooks = sess != NULL ? hooks : NULL;
	tl_sess = hooks != NULL ? sess : NULL;
}

void *
kr_smtp_wrap_sess(void)
{
	return tl_sess;
}

int
kr_smtp_real_connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	pthread_once(&once, load);
	if (real_connect == NULL) {
		errno = ENOSYS;
		return -1;
	}
	return real_connect(fd, addr, len);
}

int
kr_smtp_real_poll(struct pollfd *fds, nfds_t nfds, int timeout)
{
	pthread_once(&once, load);
	if (real_poll == NULL) {
		errno = ENOSYS;
		return -1;
	}
	return real_poll(fds, nfds, timeout);
}

ssize_t
kr_smtp_real_write(int fd, const void *buf, size_t n)
{
	pthread_once(&once, load);
	if (real_write == NULL) {
		errno = ENOSYS;
		return -1;
	}
	return real_write(fd, buf, n);
}

ssize_t
kr_smtp_real_read(int fd, void *buf, size_t n)
{
	pthread_once(&once, load);
	if (real_read == NULL) {
		errno = ENOSYS;
		return -1;
	}
	return real_read(fd, buf, n);
}

int
connect(int fd, __CONST_SOCKADDR_ARG addr_arg, socklen_t len) /* NOLINT(readability-inconsistent-declaration-parameter-name): glibc's own names are reserved */
{
	const struct kr_smtp_wrap *h = tl_hooks;
	int r;

	if (h != NULL && h->connect != NULL &&
	    h->connect(tl_sess, fd, addr_arg.__sockaddr__, len, &r))
		return r;
	return kr_smtp_real_connect(fd, addr_arg.__sockaddr__, len);
}

/* The name is set with an asm label: <poll.h>'s _FORTIFY_SOURCE inline
 * already uses the C name. */
int kr_smtp_poll(struct pollfd *fds, nfds_t nfds, int timeout) __asm__("poll");

int
kr_smtp_poll(struct pollfd *fds, nfds_t nfds, int timeout)
{
	const struct kr_smtp_wrap *h = tl_hooks;
	int r;

	if (h != NULL && h->poll != NULL &&
	    h->poll(tl_sess, fds, nfds, timeout, &r))
		return r;
	return kr_smtp_real_poll(fds, nfds, timeout);
}

ssize_t
write(int fd, const void *buf, size_t n)
{
	const struct kr_smtp_wrap *h = tl_hooks;
	ssize_t r;

	if (h != NULL && h->write != NULL && h->write(tl_sess, fd, buf, n, &r))
		return r;
	return kr_smtp_real_write(fd, buf, n);
}

ssize_t kr_smtp_read(int fd, void *buf, size_t n) __asm__("read");

ssize_t
kr_smtp_read(int fd, void *buf, size_t n)
{
	const struct kr_smtp_wrap *h = tl_hooks;
	ssize_t r;

	if (h != NULL && h->read != NULL && h->read(tl_sess, fd, buf, n, &r))
		return r;
	return kr_smtp_real_read(fd, buf, n);
}
