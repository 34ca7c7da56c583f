/* kairan-smtp — the SMTP process of kairand (lib/transport_smtp.c starts
 * one per delivery worker). It speaks to kairand on fd 3 (lib/smtp_wire.h)
 * and to the relays through the libesmtp engine (lib/smtp_engine.c),
 * which defines connect(), read(), write() and poll() for this program
 * alone. It holds the relay settings and passwords kairand hands it, and
 * nothing else: no database, no token or DKIM key, no listening socket.
 * Not meant to be run by hand. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/landlock.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <sodium.h>

#include "buf.h"
#include "config.h"
#include "err.h"
#include "log.h"
#include "smtp_engine.h"
#include "smtp_wire.h"
#include "xmem.h"

#define FD 3

struct batch {
	struct kr_msg *msgs;
	uint64_t *seq;         /* per message: its outcome's number, 0: none */
	uint64_t sent, acked;  /* outcomes sent, acknowledgements read */
	struct kr_buf out;
	struct kr_buf ack;
};

static void
die_quietly(void)
{
	/* kairand is gone: stop at once, whatever the session */
	_exit(0);
}

/* The outcome goes to kairand as soon as the engine knows it, so that
 * kairand records it while the session reads on ... */
static void
report(struct batch *b, struct kr_msg *m)
{
	size_t i = (size_t)(m - b->msgs);

	if (b->seq[i] != 0)
		return; /* told already */
	kr_wire_begin(&b->out, KR_W_OUTCOME);
	kr_wire_u32(&b->out, (uint32_t)i);
	kr_wire_u32(&b->out, (uint32_t)m->result);
	kr_wire_u32(&b->out, (uint32_t)m->code);
	kr_wire_str(&b->out, m->reply);
	kr_wire_str(&b->out, m->relay);
	kr_wire_end(&b->out);
	if (kr_wire_write(FD, &b->out) < 0)
		die_quietly();
	b->seq[i] = ++b->sent;
}

static void
on_early(void *ctx, struct kr_msg *m)
{
	report(ctx, m);
}

/* Reads acknowledgements (one per outcome, in order) up to the n-th. */
static void
acked_until(struct batch *b, uint64_t n)
{
	uint32_t type = 0;

	while (b->acked < n) {
		if (kr_wire_read(FD, &b->ack, &type) != 1 || type != KR_W_ACK)
			die_quietly();
		b->acked++;
	}
}

/* ... and its acknowledgement is waited for here, where the engine hands
 * the outcome over: at the latest before the next message's content
 * leaves. */
static void
on_done(void *ctx, struct kr_msg *m)
{
	struct batch *b = ctx;

	report(b, m);
	acked_until(b, b->seq[m - b->msgs]);
}

static void
reply(uint32_t type, int rc, const char *why)
{
	struct kr_buf b;

	kr_buf_init(&b, 0);
	kr_wire_begin(&b, type);
	kr_wire_u32(&b, (uint32_t)rc);
	kr_wire_str(&b, why);
	kr_wire_end(&b);
	if (kr_wire_write(FD, &b) < 0)
		die_quietly();
	kr_buf_fini(&b);
}

/* The config the engine needs, from INIT. Strings point into buf, which
 * stays alive; the passwords are copied to guarded memory and buf's copy
 * wiped. */
static int
read_init(struct kr_buf *buf, struct kr_config *cfg, struct kr_err *err)
{
	struct kr_wire_in in;
	uint32_t type = 0, n, i;
	const char *pw;
	size_t len;

	if (kr_wire_read(FD, buf, &type) != 1 || type != KR_W_INIT)
		return kr_err_set(err, KR_ERR_IO, "kairan-smtp: no INIT");
	kr_wire_in_init(&in, buf);
	kr_log_set_level((enum kr_log_level)kr_wire_get_u32(&in));
	cfg->delivery.transport = KR_CFG_TRANSPORT_SMTP;
	cfg->delivery.timeout = kr_wire_get_u32(&in);
	n = kr_wire_get_u32(&in);
	if (in.bad || n == 0 || n > 64)
		return kr_err_set(err, KR_ERR_INVALID, "kairan-smtp: bad INIT");
	cfg->relays = kr_xcalloc(n, sizeof(*cfg->relays));
	cfg->n_relays = n;
	for (i = 0; i < n; i++) {
		struct kr_cfg_relay *r = &cfg->relays[i];

		r->host = (char *)(uintptr_t)kr_wire_get_str(&in, NULL);
		r->port = kr_wire_get_u32(&in);
		r->tls = (enum kr_cfg_tls)kr_wire_get_u32(&in);
		r->ca_file = (char *)(uintptr_t)kr_wire_get_str(&in, NULL);
		r->user = (char *)(uintptr_t)kr_wire_get_str(&in, NULL);
		pw = kr_wire_get_str(&in, &len);
		if (pw != NULL) {
			if ((r->password = sodium_malloc(len + 1)) == NULL)
				abort();
			memcpy(r->password, pw, len + 1);
			sodium_memzero((char *)(uintptr_t)pw, len);
		}
		r->pipelining = kr_wire_get_u32(&in) != 0;
		if (r->host == NULL)
			in.bad = true;
	}
	if (in.bad)
		return kr_err_set(err, KR_ERR_INVALID, "kairan-smtp: bad INIT");
	return 0;
}

/* What the process may still open once it is confined (read only): the
 * C library's name service files, the system's CA store, the programs'
 * libraries. Not /etc as a whole: DKIM keys and password files live in
 * /etc/kairan; not /var/lib/kairan (the database, the token key). */
static const char *const readable[] = {
    "/usr", "/lib", "/lib64", "/etc/ssl", "/etc/ca-certificates",
    "/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/gai.conf",
    "/etc/host.conf", "/etc/services", "/etc/protocols", "/etc/localtime",
    "/dev/urandom", "/dev/null",
    "/proc/self", /* the sanitizers' own look at this process */
};

static void
allow(int ruleset, const char *path, uint64_t handled)
{
	struct landlock_path_beneath_attr pb;
	struct stat st;
	int fd = open(path, O_PATH | O_CLOEXEC);

	if (fd < 0)
		return;
	memset(&pb, 0, sizeof(pb));
	pb.parent_fd = fd;
	pb.allowed_access = LANDLOCK_ACCESS_FS_READ_FILE;
	if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode))
		pb.allowed_access |= LANDLOCK_ACCESS_FS_READ_DIR |
		    LANDLOCK_ACCESS_FS_EXECUTE;
	pb.allowed_access &= handled;
	if (syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH,
		&pb, 0) < 0)
		kr_log_warn("kairan-smtp: landlock rule %s: %s", path,
		    strerror(errno));
	close(fd);
}

/* Confines this process with Landlock (Linux 5.13+): from here on it can
 * open nothing for writing and read only what readable[] and the relays'
 * ca_file name. A relay's bytes are parsed here; whoever takes the
 * process over through them cannot read the database, the token key or a
 * DKIM key. Where the kernel has no Landlock, that is logged and the
 * process runs as before. */
static void
confine(const struct kr_config *cfg)
{
	struct landlock_ruleset_attr attr;
	uint64_t handled;
	long abi;
	size_t i;
	int rs;

	abi = syscall(SYS_landlock_create_ruleset, NULL, 0,
	    LANDLOCK_CREATE_RULESET_VERSION);
	if (abi < 1) {
		kr_log_warn("kairan-smtp: Landlock is not available (%s): "
			    "the SMTP process is not confined",
		    strerror(errno));
		return;
	}
	handled = (LANDLOCK_ACCESS_FS_MAKE_SYM << 1) - 1; /* ABI 1 */
	if (abi >= 2)
		handled |= LANDLOCK_ACCESS_FS_REFER;
#ifdef LANDLOCK_ACCESS_FS_TRUNCATE
	if (abi >= 3)
		handled |= LANDLOCK_ACCESS_FS_TRUNCATE;
#endif
	memset(&attr, 0, sizeof(attr));
	attr.handled_access_fs = handled;
	rs = (int)syscall(SYS_landlock_create_ruleset, &attr, sizeof(attr), 0);
	if (rs < 0) {
		kr_log_warn("kairan-smtp: landlock: %s", strerror(errno));
		return;
	}
	for (i = 0; i < sizeof(readable) / sizeof(readable[0]); i++)
		allow(rs, readable[i], handled);
	for (i = 0; i < cfg->n_relays; i++)
		if (cfg->relays[i].ca_file != NULL)
			allow(rs, cfg->relays[i].ca_file, handled);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    syscall(SYS_landlock_restrict_self, rs, 0) < 0)
		kr_log_warn("kairan-smtp: landlock: %s: not confined",
		    strerror(errno));
	else
		kr_log_debug("kairan-smtp: confined (Landlock ABI %ld)", abi);
	close(rs);
}

static void
do_send(struct kr_transport *t, const struct kr_buf *frame)
{
	struct kr_wire_in in;
	struct batch b;
	struct kr_err err = {0};
	struct kr_buf done;
	unsigned long w0, a0;
	uint32_t n, i;
	int rc;

	kr_wire_in_init(&in, frame);
	kr_smtp_engine_set_nodelay((int)kr_wire_get_u32(&in));
	n = kr_wire_get_u32(&in);
	if (in.bad || n > 100000) {
		reply(KR_W_DONE, -1, "kairan-smtp: bad SEND");
		return;
	}
	memset(&b, 0, sizeof(b));
	b.msgs = kr_xcalloc(n ? n : 1, sizeof(*b.msgs));
	b.seq = kr_xcalloc(n ? n : 1, sizeof(*b.seq));
	for (i = 0; i < n && !in.bad; i++) {
		struct kr_msg *m = &b.msgs[i];

		m->id = (int64_t)kr_wire_get_u64(&in);
		m->mail_from = kr_wire_get_str(&in, NULL);
		m->rcpt = kr_wire_get_str(&in, NULL);
		m->len = (size_t)kr_wire_get_u64(&in);
		m->data = kr_wire_get_bytes(&in, m->len);
		if (m->rcpt == NULL || m->data == NULL)
			in.bad = true;
	}
	if (in.bad) {
		free(b.msgs);
		free(b.seq);
		reply(KR_W_DONE, -1, "kairan-smtp: bad SEND");
		return;
	}
	kr_buf_init(&b.out, 0);
	kr_buf_init(&b.ack, 0);
	w0 = kr_smtp_engine_writes();
	a0 = kr_smtp_engine_ahead();
	kr_smtp_engine_set_early(on_early);
	rc = kr_smtp_engine_ops.send(t, b.msgs, n, on_done, &b, &err);
	acked_until(&b, b.sent); /* none is left behind */
	kr_buf_init(&done, 0);
	kr_wire_begin(&done, KR_W_DONE);
	kr_wire_u32(&done, (uint32_t)rc);
	kr_wire_str(&done, rc != 0 ? err.msg : NULL);
	kr_wire_u64(&done, kr_smtp_engine_writes() - w0);
	kr_wire_u64(&done, kr_smtp_engine_ahead() - a0);
	kr_wire_end(&done);
	if (kr_wire_write(FD, &done) < 0)
		die_quietly();
	kr_buf_fini(&done);
	kr_buf_fini(&b.out);
	kr_buf_fini(&b.ack);
	free(b.msgs);
	free(b.seq);
}

int
main(int argc, char **argv)
{
	struct kr_config cfg;
	struct kr_transport *t = NULL;
	struct kr_err err = {0};
	struct kr_buf init, frame;
	uint32_t type = 0;
	int r, status = 0;

	(void)argv;
	if (argc != 1 || fcntl(FD, F_GETFD) < 0 || isatty(FD)) {
		fprintf(stderr, "kairan-smtp: the SMTP process of kairand, "
		                "started by it; not to be run by hand\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	kr_log_set_journal(getenv("JOURNAL_STREAM") != NULL);
	if (sodium_init() < 0)
		return 1;
	memset(&cfg, 0, sizeof(cfg));
	kr_buf_init(&init, 0);
	kr_buf_init(&frame, 0);
	if (read_init(&init, &cfg, &err) < 0 ||
	    kr_smtp_engine_ops.create(&cfg, &t, &err) < 0) {
		reply(KR_W_READY, -1, err.msg);
		status = 1;
		goto out;
	}
	confine(&cfg);
	reply(KR_W_READY, 0, NULL);
	for (;;) {
		r = kr_wire_read(FD, &frame, &type);
		if (r == 0)
			break; /* kairand let go of us */
		if (r < 0) {
			kr_log_err("kairan-smtp: reading from kairand: %s",
			    strerror(errno));
			break;
		}
		if (type == KR_W_SEND) {
			do_send(t, &frame);
		} else if (type == KR_W_CHECK) {
			struct kr_wire_in in;
			char why[512];

			kr_wire_in_init(&in, &frame);
			r = kr_smtp_engine_check(t, kr_wire_get_u32(&in), why,
			    sizeof(why));
			reply(KR_W_CHECKED, r, why);
		} else if (type == KR_W_PROBE) {
			r = kr_smtp_engine_ops.probe(t, &err);
			reply(KR_W_PROBED, r, r != 0 ? err.msg : NULL);
		} else {
			kr_log_err("kairan-smtp: unexpected frame %u", type);
			break;
		}
	}
out:
	kr_smtp_engine_ops.destroy(&t);
	for (r = 0; (size_t)r < cfg.n_relays; r++)
		if (cfg.relays[r].password != NULL)
			sodium_free(cfg.relays[r].password);
	free(cfg.relays);
	kr_buf_fini(&init);
	kr_buf_fini(&frame);
	return status;
}
