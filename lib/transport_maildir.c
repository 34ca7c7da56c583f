/* transport_maildir.c — "delivers" each message as one file in a Maildir
 * (dry runs, `make run`). A file is written under tmp/, fsync'd, then
 * linked into new/ under a unique name, so a reader never sees half a
 * message. tmp/, new/ and cur/ are created when missing.
 *
 * What lands in new/ is the message exactly as composed (CRLF lines),
 * preceded by the two headers a delivering MDA would add:
 *   Return-Path: <mail_from>
 *   Delivered-To: rcpt
 * so a dry run shows the envelope as well. */
#include "transport.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "err.h"
#include "log.h"
#include "xmem.h"

struct kr_transport {
	char *dir;  /* the Maildir */
	char *host; /* sanitised host name for file names */
};

static atomic_ulong maildir_counter;

/* Creates path (one level) unless it exists as a directory. */
static int
md_mkdir(const char *path, struct kr_err *err)
{
	struct stat st;

	if (mkdir(path, 0700) == 0)
		return 0;
	if (errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		return 0;
	if (errno == EEXIST)
		errno = ENOTDIR;
	return kr_err_set(err, KR_ERR_IO, "maildir %s: %s", path,
	                  strerror(errno));
}

/* Host name for unique file names: '/' and ':' are encoded as the
 * Maildir convention asks (\057, \072). */
static char *
md_hostname(void)
{
	char host[256];
	struct kr_buf b;
	const char *p;

	if (gethostname(host, sizeof(host)) != 0)
		strcpy(host, "localhost");
	host[sizeof(host) - 1] = '\0';
	kr_buf_init(&b, 0);
	for (p = host; *p != '\0'; p++) {
		int r;

		if (*p == '/')
			r = kr_buf_puts(&b, "\\057");
		else if (*p == ':')
			r = kr_buf_puts(&b, "\\072");
		else
			r = kr_buf_putc(&b, *p);
		(void)r; /* unbounded buffer: cannot fail */
	}
	return kr_buf_steal(&b);
}

static int
md_create(const struct kr_config *cfg, struct kr_transport **out,
          struct kr_err *err)
{
	struct kr_transport *t = NULL;
	char *sub = NULL;
	const char *subs[] = {"tmp", "new", "cur"};
	size_t i;
	int ret = -1;

	*out = NULL;
	if (cfg == NULL || cfg->delivery.maildir == NULL ||
	    cfg->delivery.maildir[0] == '\0') {
		kr_err_set(
		    err, KR_ERR_INVALID,
		    "delivery.maildir: required for the maildir transport");
		goto out;
	}
	t = kr_xcalloc(1, sizeof(*t));
	t->dir = kr_xstrdup(cfg->delivery.maildir);
	t->host = md_hostname();
	if (md_mkdir(t->dir, err) != 0)
		goto out;
	for (i = 0; i < KR_NELEM(subs); i++) {
		free(sub);
		sub = kr_xasprintf("%s/%s", t->dir, subs[i]);
		if (md_mkdir(sub, err) != 0)
			goto out;
	}
	*out = t;
	t = NULL;
	ret = 0;
out:
	free(sub);
	if (t != NULL) {
		free(t->dir);
		free(t->host);
		free(t);
	}
	return ret;
}

static void
md_destroy(struct kr_transport **tp)
{
	if (tp == NULL || *tp == NULL)
		return;
	free((*tp)->dir);
	free((*tp)->host);
	free(*tp);
	*tp = NULL;
}

/* An envelope address must not carry anything that would break the
 * header line we write it into. */
static int
md_addr_ok(const char *a)
{
	const unsigned char *p;

	if (a == NULL || strlen(a) > 320)
		return 0;
	for (p = (const unsigned char *)a; *p != '\0'; p++)
		if (*p < 0x20 || *p == 0x7f || *p == '<' || *p == '>')
			return 0;
	return 1;
}

static int
md_write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Writes one message into tmp/ and moves it into new/. On failure sets
 * msg->result and msg->reply; returns 0 on success, -1 otherwise. */
static int
md_deliver(struct kr_transport *t, struct kr_msg *msg)
{
	struct timeval tv;
	char *name = NULL, *tmp = NULL, *dst = NULL, *hdr = NULL;
	int fd = -1, ret = -1;
	unsigned long n;

	if (msg->data == NULL || msg->len == 0 || !md_addr_ok(msg->rcpt) ||
	    (msg->mail_from != NULL && !md_addr_ok(msg->mail_from))) {
		msg->result = KR_SEND_PERM;
		msg->code = 0;
		snprintf(msg->reply, sizeof(msg->reply),
		         "invalid message or envelope address");
		goto out;
	}
	gettimeofday(&tv, NULL);
	n = atomic_fetch_add(&maildir_counter, 1);
	name = kr_xasprintf("%lld.M%06ldP%dT%dQ%lu.%s", (long long)tv.tv_sec,
	                    (long)tv.tv_usec, (int)getpid(), (int)gettid(), n,
	                    t->host);
	tmp = kr_xasprintf("%s/tmp/%s", t->dir, name);
	dst = kr_xasprintf("%s/new/%s", t->dir, name);
	hdr = kr_xasprintf("Return-Path: <%s>\r\nDelivered-To: %s\r\n",
	                   msg->mail_from != NULL ? msg->mail_from : "",
	                   msg->rcpt);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		goto io;
	if (md_write_all(fd, hdr, strlen(hdr)) != 0 ||
	    md_write_all(fd, msg->data, msg->len) != 0 || fsync(fd) != 0)
		goto io;
	if (close(fd) != 0) {
		fd = -1;
		goto io;
	}
	fd = -1;
	/* link() refuses to replace an existing file, rename() would not. */
	if (link(tmp, dst) != 0) {
		if (errno != EPERM && errno != ENOSYS && errno != EXDEV)
			goto io;
		if (rename(tmp, dst) != 0)
			goto io;
	} else {
		(void)unlink(tmp);
	}
	msg->result = KR_SEND_OK;
	msg->code = 250;
	snprintf(msg->reply, sizeof(msg->reply), "new/%.200s", name);
	ret = 0;
	goto out;
io:
	msg->result = KR_SEND_TEMP;
	msg->code = 0;
	snprintf(msg->reply, sizeof(msg->reply), "maildir: %s",
	         strerror(errno));
	if (fd >= 0)
		close(fd);
	fd = -1;
	(void)unlink(tmp);
out:
	if (fd >= 0)
		close(fd);
	free(name);
	free(tmp);
	free(dst);
	free(hdr);
	return ret;
}

/* Makes the renames into new/ durable. */
static int
md_sync_dir(struct kr_transport *t)
{
	char *d = kr_xasprintf("%s/new", t->dir);
	int fd, r = -1;

	fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		r = fsync(fd);
		close(fd);
	}
	free(d);
	return r;
}

static int
md_send(struct kr_transport *t, struct kr_msg *msgs, size_t n,
        kr_transport_done_fn done, void *ctx, struct kr_err *err)
{
	size_t i, ok = 0, temp = 0;
	int ret = 0;

	for (i = 0; i < n; i++) {
		snprintf(msgs[i].relay, sizeof(msgs[i].relay), "maildir");
		msgs[i].reply[0] = '\0';
		if (md_deliver(t, &msgs[i]) == 0)
			ok++;
		else if (msgs[i].result == KR_SEND_TEMP)
			temp++;
	}
	if (ok > 0 && md_sync_dir(t) != 0)
		kr_log_warn_errno("maildir fsync dir=%s/new", t->dir);
	for (i = 0; i < n; i++)
		if (done != NULL)
			done(ctx, &msgs[i]);
	if (n > 0 && temp == n) {
		kr_err_set(err, KR_ERR_TEMP, "%s", msgs[0].reply);
		ret = -1;
	}
	kr_log_debug("maildir batch n=%zu ok=%zu temp=%zu", n, ok, temp);
	return ret;
}

static int
md_probe(struct kr_transport *t, struct kr_err *err)
{
	char *d = kr_xasprintf("%s/tmp", t->dir);
	int r = 0;

	if (access(d, W_OK | X_OK) != 0)
		r = kr_err_set(err, KR_ERR_IO, "maildir %s: %s", d,
		               strerror(errno));
	else
		kr_err_clear(err);
	free(d);
	return r;
}

const struct kr_transport_ops kr_transport_maildir_ops = {
    .name = "maildir",
    .create = md_create,
    .send = md_send,
    .probe = md_probe,
    .destroy = md_destroy,
};
