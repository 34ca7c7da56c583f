/* transport_smtp.c — SMTP delivery for kairand: the sessions run in a
 * process of their own, kairan-smtp (daemon/kairan_smtp.c, the libesmtp
 * engine lib/smtp_engine.c), one per transport object (one per delivery
 * worker), spoken to over a socket pair (lib/smtp_wire.h).
 *
 * Why a process: libesmtp 1.1 offers no socket hook, so the engine
 * defines connect(), read(), write() and poll() for the executable it is
 * linked into; in kairand they would sit under SQLite, libmicrohttpd,
 * libcurl and the log. Apart, they see only SMTP sockets, a hostile
 * relay's bytes are parsed only there, and that process holds the relay
 * passwords and nothing else: no database, no token or DKIM key, no
 * listening socket (DKIM signs here, before a message is handed over).
 *
 * The guarantee stays: the child hands over each message's outcome and
 * waits for our acknowledgement (sent once done() has recorded it) before
 * it sends the next message's content, so a kill -9 of kairand, of the
 * child or of both duplicates at most the copies in flight. A child that
 * dies mid-batch is logged; the messages it gave no outcome for are
 * deferred, and the next send() starts a new one. */
#include "transport_smtp.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "buf.h"
#include "config.h"
#include "err.h"
#include "log.h"
#include "smtp_wire.h"
#include "xmem.h"

static atomic_int smtp_nodelay = 1;
static atomic_ulong smtp_writes;
static atomic_ulong smtp_ahead;

void
kr_transport_smtp_set_nodelay(int on)
{
	atomic_store(&smtp_nodelay, on ? 1 : 0);
}

unsigned long
kr_transport_smtp_writes(void)
{
	return atomic_load(&smtp_writes);
}

unsigned long
kr_transport_smtp_ahead(void)
{
	return atomic_load(&smtp_ahead);
}

struct kr_transport {
	char *bin;       /* the kairan-smtp executable */
	char *init;      /* the INIT frame (passwords: sodium_malloc'd) */
	size_t init_len;
	pid_t pid;       /* 0: none running */
	int fd;
	struct kr_buf in;
	struct kr_wire_rd rd; /* fd's read-ahead: one read(2) an outcome */
};

/* The executable: $KAIRAN_SMTP_BIN, else kairan-smtp beside this
 * program, in the sbin beside its bin (kairanctl in /usr/bin), or one
 * folder up (test and benchmark binaries). */
static char *
find_bin(void)
{
	const char *env = getenv("KAIRAN_SMTP_BIN");
	char self[PATH_MAX], *slash, *p;
	ssize_t n;
	int up;

	if (env != NULL && *env != '\0')
		return kr_xstrdup(env);
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return kr_xstrdup("kairan-smtp");
	self[n] = '\0';
	for (up = 0; up < 2; up++) {
		if ((slash = strrchr(self, '/')) == NULL)
			break;
		*slash = '\0';
		p = kr_xasprintf("%s/kairan-smtp", self);
		if (access(p, X_OK) == 0)
			return p;
		free(p);
		p = kr_xasprintf("%s/../sbin/kairan-smtp", self);
		if (up == 0 && access(p, X_OK) == 0)
			return p;
		free(p);
	}
	return kr_xstrdup("kairan-smtp");
}

/* The processes that ended unasked (kr_transport_smtp_ends()). */
static pthread_mutex_t ends_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long ends;
static char ends_last[160];
static int64_t ends_at;

unsigned long
kr_transport_smtp_ends(char *last, size_t size, int64_t *at)
{
	unsigned long n;

	pthread_mutex_lock(&ends_lock);
	n = ends;
	if (last != NULL && size > 0)
		snprintf(last, size, "%s", ends_last);
	if (at != NULL)
		*at = ends_at;
	pthread_mutex_unlock(&ends_lock);
	return n;
}

static void
reap(struct kr_transport *t, bool kill_it)
{
	int st = 0;

	if (t->fd >= 0)
		close(t->fd);
	t->fd = -1;
	if (t->pid <= 0)
		return;
	if (kill_it)
		(void)kill(t->pid, SIGKILL);
	while (waitpid(t->pid, &st, 0) < 0 && errno == EINTR)
		;
	if (kill_it || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		kr_log_err("smtp process pid=%ld ended (%s %d)", (long)t->pid,
		    WIFSIGNALED(st) ? "signal" : "exit",
		    WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
		pthread_mutex_lock(&ends_lock);
		ends++;
		snprintf(ends_last, sizeof(ends_last),
		    "pid %ld ended (%s %d)", (long)t->pid,
		    WIFSIGNALED(st) ? "signal" : "exit",
		    WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
		ends_at = (int64_t)time(NULL);
		pthread_mutex_unlock(&ends_lock);
	}
	t->pid = 0;
}

/* Starts kairan-smtp with the socket as its fd 3 and nothing else open
 * but stdin/stdout/stderr, hands it INIT and waits for READY. */
static int
spawn(struct kr_transport *t, struct kr_err *err)
{
	posix_spawn_file_actions_t fa;
	char *argv[] = {t->bin, NULL};
	struct kr_wire_in in;
	const char *why;
	uint32_t type = 0;
	int sv[2], r, rc;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return kr_err_set(err, KR_ERR_IO, "smtp process: socketpair: %s",
		    strerror(errno));
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, sv[1], 3);
	posix_spawn_file_actions_addclosefrom_np(&fa, 4);
	r = posix_spawn(&t->pid, t->bin, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(sv[1]);
	if (r != 0) {
		close(sv[0]);
		t->pid = 0;
		return kr_err_set(err, KR_ERR_IO, "smtp process %s: %s", t->bin,
		    strerror(r));
	}
	t->fd = sv[0];
	kr_wire_rd_init(&t->rd);
	{
		struct iovec iov = {t->init, t->init_len};

		if (kr_wire_writev(t->fd, &iov, 1) < 0)
			goto lost;
	}
	if (kr_wire_read_rd(t->fd, &t->rd, &t->in, &type) <= 0 ||
	    type != KR_W_READY)
		goto lost;
	kr_wire_in_init(&in, &t->in);
	rc = (int)kr_wire_get_u32(&in);
	why = kr_wire_get_str(&in, NULL);
	if (rc != 0) {
		kr_err_set(err, KR_ERR_INVALID, "%s", why ? why : "smtp: set-up "
		    "failed");
		reap(t, false);
		return -1;
	}
	kr_log_debug("smtp process started pid=%ld", (long)t->pid);
	return 0;
lost:
	reap(t, true);
	return kr_err_set(err, KR_ERR_IO, "smtp process %s did not start",
	    t->bin);
}

static int
smtp_create(const struct kr_config *cfg, struct kr_transport **out,
    struct kr_err *err)
{
	struct kr_transport *t;
	struct kr_buf b;
	size_t i;

	*out = NULL;
	if (sodium_init() < 0)
		return kr_err_set(err, KR_ERR_INVALID, "libsodium: cannot "
		    "initialise");
	if (cfg->n_relays == 0)
		return kr_err_set(err, KR_ERR_INVALID, "smtp: no relay "
		    "configured");
	t = kr_xcalloc(1, sizeof(*t));
	t->fd = -1;
	t->bin = find_bin();
	kr_buf_init(&t->in, 0);
	kr_buf_init(&b, 0);
	kr_wire_begin(&b, KR_W_INIT);
	kr_wire_u32(&b, (uint32_t)kr_log_get_level());
	kr_wire_u32(&b, cfg->delivery.timeout);
	kr_wire_u32(&b, (uint32_t)cfg->n_relays);
	for (i = 0; i < cfg->n_relays; i++) {
		const struct kr_cfg_relay *r = &cfg->relays[i];

		kr_wire_str(&b, r->host);
		kr_wire_u32(&b, r->port);
		kr_wire_u32(&b, (uint32_t)r->tls);
		kr_wire_str(&b, r->ca_file);
		kr_wire_str(&b, r->user);
		kr_wire_str(&b, r->password);
		kr_wire_u32(&b, r->pipelining ? 1 : 0);
	}
	kr_wire_end(&b);
	/* it holds the passwords: kept in guarded memory, the buffer
	 * wiped */
	t->init = sodium_malloc(b.len);
	if (t->init == NULL)
		abort();
	memcpy(t->init, b.data, b.len);
	t->init_len = b.len;
	sodium_memzero(b.data, b.len);
	kr_buf_fini(&b);
	/* at once, so a missing executable or a bad relay set-up shows at
	 * start, not at the first report */
	if (spawn(t, err) < 0) {
		kr_transport_smtp_ops.destroy(&t);
		return -1;
	}
	*out = t;
	return 0;
}

static void
give_temp(struct kr_msg *m, const char *why, kr_transport_done_fn done,
    void *ctx)
{
	m->result = KR_SEND_TEMP;
	m->code = 0;
	snprintf(m->reply, sizeof(m->reply), "%s", why);
	m->relay[0] = '\0';
	if (done != NULL)
		done(ctx, m);
}

static int
smtp_send(struct kr_transport *t, struct kr_msg *msgs, size_t n,
    kr_transport_done_fn done, void *ctx, struct kr_err *err)
{
	struct iovec *iov = NULL;
	struct kr_buf hdr;
	struct kr_wire_in in;
	size_t *offs = NULL, i, k = 0;
	bool *got = NULL;
	uint32_t type, idx;
	int rc = 0;
	const char *s;

	if (n == 0)
		return 0;
	if (t->pid <= 0 && spawn(t, err) < 0) {
		for (i = 0; i < n; i++)
			give_temp(&msgs[i], err->msg, done, ctx);
		return -1;
	}
	/* SEND: headers built in one buffer, each message's bytes taken
	 * from where they are (no copy here; the kernel copies once) */
	kr_buf_init(&hdr, 0);
	offs = kr_xcalloc(n + 1, sizeof(*offs));
	got = kr_xcalloc(n, sizeof(*got));
	iov = kr_xcalloc(2 * n + 2, sizeof(*iov));
	kr_wire_begin(&hdr, KR_W_SEND);
	kr_wire_u32(&hdr, (uint32_t)atomic_load(&smtp_nodelay));
	kr_wire_u32(&hdr, (uint32_t)n);
	for (i = 0; i < n; i++) {
		kr_wire_u64(&hdr, (uint64_t)msgs[i].id);
		kr_wire_str(&hdr, msgs[i].mail_from);
		kr_wire_str(&hdr, msgs[i].rcpt);
		kr_wire_u64(&hdr, (uint64_t)msgs[i].len);
		offs[i + 1] = hdr.len; /* the data goes after this */
	}
	{
		uint32_t total = (uint32_t)(hdr.len - 8);

		for (i = 0; i < n; i++)
			total += (uint32_t)msgs[i].len;
		memcpy(hdr.data + 4, &total, sizeof(total));
	}
	for (i = 0; i < n; i++) {
		iov[k].iov_base = hdr.data + offs[i];
		iov[k++].iov_len = offs[i + 1] - offs[i];
		iov[k].iov_base = (void *)(uintptr_t)msgs[i].data;
		iov[k++].iov_len = msgs[i].len;
	}
	if (kr_wire_writev(t->fd, iov, (int)k) < 0)
		goto lost;
	for (;;) {
		if (kr_wire_read_rd(t->fd, &t->rd, &t->in, &type) <= 0)
			goto lost;
		kr_wire_in_init(&in, &t->in);
		if (type == KR_W_OUTCOME) {
			idx = kr_wire_get_u32(&in);
			if (idx >= n || got[idx])
				goto lost;
			msgs[idx].result =
			    (enum kr_send_result)kr_wire_get_u32(&in);
			msgs[idx].code = (int)kr_wire_get_u32(&in);
			s = kr_wire_get_str(&in, NULL);
			snprintf(msgs[idx].reply, sizeof(msgs[idx].reply), "%s",
			    s ? s : "");
			s = kr_wire_get_str(&in, NULL);
			snprintf(msgs[idx].relay, sizeof(msgs[idx].relay), "%s",
			    s ? s : "");
			if (in.bad || msgs[idx].result > KR_SEND_UNCERTAIN)
				goto lost;
			got[idx] = true;
			if (done != NULL)
				done(ctx, &msgs[idx]);
			/* recorded: the next content may leave */
			kr_wire_begin(&hdr, KR_W_ACK);
			kr_wire_end(&hdr);
			if (kr_wire_write(t->fd, &hdr) < 0)
				goto lost;
		} else if (type == KR_W_DONE) {
			rc = (int)kr_wire_get_u32(&in);
			s = kr_wire_get_str(&in, NULL);
			atomic_fetch_add(&smtp_writes,
			    (unsigned long)kr_wire_get_u64(&in));
			atomic_fetch_add(&smtp_ahead,
			    (unsigned long)kr_wire_get_u64(&in));
			if (rc != 0)
				kr_err_set(err, KR_ERR_TEMP, "%s",
				    s ? s : "smtp: send failed");
			break;
		} else {
			goto lost;
		}
	}
	goto out;
lost:
	/* The process died or spoke out of turn: whatever it did not
	 * report goes again later (at most the copy in flight twice). */
	reap(t, true);
	for (i = 0; i < n; i++)
		if (!got[i])
			give_temp(&msgs[i], "the SMTP process ended", done, ctx);
	rc = 0;
out:
	kr_buf_fini(&hdr);
	free(offs);
	free(got);
	free(iov);
	return rc;
}

static int
smtp_probe(struct kr_transport *t, struct kr_err *err)
{
	struct kr_buf b;
	struct kr_wire_in in;
	uint32_t type = 0;
	int rc = -1;
	const char *s;

	if (t->pid <= 0 && spawn(t, err) < 0)
		return -1;
	kr_buf_init(&b, 0);
	kr_wire_begin(&b, KR_W_PROBE);
	kr_wire_end(&b);
	if (kr_wire_write(t->fd, &b) < 0 ||
	    kr_wire_read_rd(t->fd, &t->rd, &t->in, &type) <= 0 || type != KR_W_PROBED) {
		reap(t, true);
		kr_err_set(err, KR_ERR_TEMP, "smtp process ended");
		goto out;
	}
	kr_wire_in_init(&in, &t->in);
	rc = (int)kr_wire_get_u32(&in);
	s = kr_wire_get_str(&in, NULL);
	if (rc != 0)
		kr_err_set(err, KR_ERR_TEMP, "%s", s ? s : "smtp: probe failed");
	else
		kr_err_clear(err);
out:
	kr_buf_fini(&b);
	return rc != 0 ? -1 : 0;
}

static void
smtp_destroy(struct kr_transport **tp)
{
	struct kr_transport *t;

	if (tp == NULL || (t = *tp) == NULL)
		return;
	*tp = NULL;
	reap(t, false); /* its end of the socket closes: it exits */
	if (t->init != NULL) {
		sodium_memzero(t->init, t->init_len);
		sodium_free(t->init);
	}
	kr_buf_fini(&t->in);
	free(t->bin);
	free(t);
}

/* The pid of t's process (tests: to look at its sockets), 0 for none. */
long
kr_transport_smtp_pid(const struct kr_transport *t)
{
	return t != NULL ? (long)t->pid : 0;
}

const struct kr_transport_ops kr_transport_smtp_ops = {
    .name = "smtp",
    .create = smtp_create,
    .send = smtp_send,
    .probe = smtp_probe,
    .destroy = smtp_destroy,
};

/* For `kairanctl doctor`: the check runs in the SMTP process, through the
 * engine's own connect, STARTTLS or TLS and certificate code
 * (kr_smtp_engine_check()). */
int
kr_transport_smtp_check(struct kr_transport *t, size_t i, char *why,
                        size_t size)
{
	struct kr_err err = {0};
	struct kr_buf b;
	struct kr_wire_in in;
	uint32_t type = 0;
	int rc = -1;
	const char *s;

	why[0] = '\0';
	if (t->pid <= 0 && spawn(t, &err) < 0) {
		snprintf(why, size, "%s", err.msg);
		return -1;
	}
	kr_buf_init(&b, 0);
	kr_wire_begin(&b, KR_W_CHECK);
	kr_wire_u32(&b, (uint32_t)i);
	kr_wire_end(&b);
	if (kr_wire_write(t->fd, &b) < 0 ||
	    kr_wire_read_rd(t->fd, &t->rd, &t->in, &type) <= 0 || type != KR_W_CHECKED) {
		reap(t, true);
		snprintf(why, size, "the SMTP process ended");
		goto out;
	}
	kr_wire_in_init(&in, &t->in);
	rc = (int)kr_wire_get_u32(&in);
	s = kr_wire_get_str(&in, NULL);
	snprintf(why, size, "%s", s != NULL ? s : "");
out:
	kr_buf_fini(&b);
	return rc;
}
