/* outbox.c — inotify on the outbox folder. Every file is opened relative
 * to a descriptor of the folder with O_NOFOLLOW, so a symlink or a name
 * with a path in it can never make us read or move something elsewhere. */
#include "outbox.h"

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "log.h"
#include "xmem.h"

struct kr_outbox {
	char *dir;
	int dirfd;
	int ifd;
	int wd;
	kr_outbox_fn fn;
	void *ctx;
	bool waiting; /* a file was still being written: look again */
};

static int
has_suffix(const char *s, const char *suf)
{
	size_t n = strlen(s), m = strlen(suf);

	return n >= m && strcmp(s + n - m, suf) == 0;
}

int
kr_outbox_wanted(const char *name)
{
	if (name == NULL || name[0] == '\0' || name[0] == '.' ||
	    strchr(name, '/') != NULL)
		return 0;
	if (has_suffix(name, ".tmp") || has_suffix(name, ".part"))
		return 0;
	if (has_suffix(name, ".md") && strlen(name) > 3)
		return 1;
	return -1;
}

static int
ensure_dir(int dirfd, const char *name, struct kr_err *err)
{
	struct stat st;

	if (mkdirat(dirfd, name, 0750) < 0 && errno != EEXIST)
		return kr_err_set(err, KR_ERR_IO, "mkdir %s: %s", name,
		    strerror(errno));
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
	    !S_ISDIR(st.st_mode))
		return kr_err_set(err, KR_ERR_IO, "%s is not a directory",
		    name);
	return 0;
}

int
kr_outbox_open(const char *dir, kr_outbox_fn fn, void *ctx,
    struct kr_outbox **o_out, struct kr_err *err)
{
	struct kr_outbox *o;
	int rc = -1;

	o = kr_xcalloc(1, sizeof(*o));
	o->dir = kr_xstrdup(dir);
	o->fn = fn;
	o->ctx = ctx;
	o->ifd = -1;
	if ((o->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		kr_err_set(err, KR_ERR_IO, "outbox %s: %s", dir,
		    strerror(errno));
		goto out;
	}
	if (ensure_dir(o->dirfd, "done", err) < 0 ||
	    ensure_dir(o->dirfd, "failed", err) < 0) {
		kr_err_prefix(err, "outbox %s", dir);
		goto out;
	}
	if ((o->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) < 0) {
		kr_err_set(err, KR_ERR_IO, "inotify: %s", strerror(errno));
		goto out;
	}
	o->wd = inotify_add_watch(o->ifd, dir,
	    IN_MOVED_TO | IN_CLOSE_WRITE | IN_ONLYDIR | IN_DONT_FOLLOW);
	if (o->wd < 0) {
		kr_err_set(err, KR_ERR_IO, "inotify %s: %s", dir,
		    strerror(errno));
		goto out;
	}
	*o_out = o;
	o = NULL;
	rc = 0;
out:
	kr_outbox_close(&o);
	return rc;
}

int
kr_outbox_fd(const struct kr_outbox *o)
{
	return o->ifd;
}

/* The first n bytes of name, or fewer ending on a UTF-8 character
 * boundary, copied to out (NUL-terminated). */
static void
cut_name(char *out, const char *name, size_t n)
{
	size_t len = strlen(name);

	if (len > n) {
		len = n;
		while (len > 0 &&
		    ((unsigned char)name[len] & 0xc0) == 0x80)
			len--;
	}
	memcpy(out, name, len);
	out[len] = '\0';
}

/* Moves name into sub/ under a name not taken there yet; writes the name
 * used to used (NAME, or NAME.1, NAME.2…). A name near NAME_MAX is cut
 * (on a character boundary) so that the suffix, and the ".err" beside a
 * refused file, still fit: a file that cannot be moved would stay in
 * the outbox for good. */
static int
move_to(struct kr_outbox *o, const char *name, const char *sub, size_t reserve,
    char *used, size_t usedsz)
{
	char to[NAME_MAX + 64], base[NAME_MAX + 1], suffix[16];
	struct stat st;
	int i;

	for (i = 0; i < 1000; i++) {
		if (i == 0)
			suffix[0] = '\0';
		else
			snprintf(suffix, sizeof(suffix), ".%d", i);
		/* room for the suffix and what goes beside it */
		cut_name(base, name, NAME_MAX - reserve - strlen(suffix));
		snprintf(to, sizeof(to), "%s/%s%s", sub, base, suffix);
		if (fstatat(o->dirfd, to, &st, AT_SYMLINK_NOFOLLOW) == 0)
			continue;
		if (renameat(o->dirfd, name, o->dirfd, to) < 0) {
			kr_log_err_errno("outbox move %s to %s/", name, sub);
			return -1;
		}
		snprintf(used, usedsz, "%s", to + strlen(sub) + 1);
		return 0;
	}
	kr_log_err("outbox move %s to %s/: too many copies", name, sub);
	return -1;
}

static void
fail_file(struct kr_outbox *o, const char *name, const char *why)
{
	char used[NAME_MAX + 1], errname[NAME_MAX + 16];
	int fd;

	kr_log_warn("outbox refused file=%s reason=\"%s\"", name, why);
	if (move_to(o, name, "failed", strlen(".err"), used, sizeof(used)) < 0)
		return;
	snprintf(errname, sizeof(errname), "failed/%s.err", used);
	fd = openat(o->dirfd, errname,
	    O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0640);
	if (fd < 0) {
		kr_log_err_errno("outbox %s", errname);
		return;
	}
	if (write(fd, why, strlen(why)) < 0 || write(fd, "\n", 1) < 0)
		kr_log_err_errno("outbox %s", errname);
	close(fd);
}

#define STABLE_SECONDS 2

static bool
busy(int fd, const struct stat *st)
{
	struct timespec now;

	if (fcntl(fd, F_SETLEASE, F_RDLCK) == 0) {
		(void)fcntl(fd, F_SETLEASE, F_UNLCK);
		return false;
	}
	if (errno == EAGAIN || errno == EBUSY)
		return true;
	clock_gettime(CLOCK_REALTIME, &now);
	return now.tv_sec - st->st_mtim.tv_sec < STABLE_SECONDS &&
	    now.tv_sec >= st->st_mtim.tv_sec;
}

/* Reads name into a NUL-terminated buffer; 0, or -1 with the reason. */
static int
read_file(struct kr_outbox *o, const char *name, char **data_out,
    size_t *len_out, struct kr_err *err)
{
	struct stat st;
	char *data = NULL;
	size_t len = 0;
	ssize_t r;
	int fd, rc = -1;

	fd = openat(o->dirfd, name,
	    O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		if (errno == ELOOP)
			return kr_err_set(err, KR_ERR_INVALID,
			    "a symlink: refused, rename the file itself into "
			    "the outbox");
		return kr_err_set(err, KR_ERR_IO, "open: %s",
		    strerror(errno));
	}
	if (fstat(fd, &st) < 0) {
		kr_err_set(err, KR_ERR_IO, "stat: %s", strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		kr_err_set(err, KR_ERR_INVALID, "not a regular file");
		goto out;
	}
	/* A hard link reaches a file kept elsewhere, as a symlink does. */
	if (st.st_nlink > 1) {
		kr_err_set(err, KR_ERR_INVALID,
		    "a file with %lu names (a hard link to a file elsewhere): "
		    "refused, rename the file itself into the outbox",
		    (unsigned long)st.st_nlink);
		goto out;
	}
	/* Still being written: a writer has it open (a read lease is
	 * refused then; needs our own file or CAP_LEASE), or, where that
	 * cannot be asked, it changed in the last STABLE_SECONDS. It comes
	 * back with IN_CLOSE_WRITE or the next look (kr_outbox_retry()). */
	if (busy(fd, &st)) {
		kr_err_set(err, KR_ERR_BUSY, "still being written");
		goto out;
	}
	if (st.st_size > (off_t)KR_OUTBOX_MAX) {
		kr_err_set(err, KR_ERR_INVALID,
		    "%lld bytes: larger than the limit of %u bytes",
		    (long long)st.st_size, KR_OUTBOX_MAX);
		goto out;
	}
	data = kr_xmalloc((size_t)st.st_size + 1);
	while (len < (size_t)st.st_size) {
		r = read(fd, data + len, (size_t)st.st_size - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			kr_err_set(err, KR_ERR_IO, "read: %s",
			    strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	data[len] = '\0';
	*data_out = data;
	*len_out = len;
	data = NULL;
	rc = 0;
out:
	free(data);
	close(fd);
	return rc;
}

/* Processes one name; returns 1 when it was handed to the callback. */
static int
handle(struct kr_outbox *o, const char *name)
{
	struct kr_err err = {0};
	struct stat st;
	char *data = NULL, used[NAME_MAX + 1];
	size_t len = 0;
	int w, r = 0;

	w = kr_outbox_wanted(name);
	if (w == 0)
		return 0;
	/* Gone already (handled by the start scan, or moved away), or a
	 * directory of ours. */
	if (fstatat(o->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
	    S_ISDIR(st.st_mode))
		return 0;
	if (w < 0) {
		fail_file(o, name, "not a report: expected a NAME.md file");
		return 0;
	}
	if (read_file(o, name, &data, &len, &err) < 0) {
		if (err.code == KR_ERR_BUSY) {
			kr_log_info("outbox waits file=%s reason=\"%s\"", name,
			    err.msg);
			o->waiting = true;
			return 0;
		}
		fail_file(o, name, err.msg);
		return 0;
	}
	kr_log_info("outbox report file=%s bytes=%zu", name, len);
	if (o->fn(o->ctx, name, data, len, &err) < 0) {
		fail_file(o, name, err.msg[0] ? err.msg : "not queued");
	} else if (move_to(o, name, "done", 0, used, sizeof(used)) == 0) {
		kr_log_info("outbox done file=%s moved=done/%s", name, used);
	}
	r = 1;
	free(data);
	return r;
}

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void
kr_outbox_scan(struct kr_outbox *o)
{
	DIR *dir;
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, i;
	int fd;

	if ((fd = openat(o->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) <
	    0) {
		kr_log_err_errno("outbox scan %s", o->dir);
		return;
	}
	if ((dir = fdopendir(fd)) == NULL) {
		kr_log_err_errno("outbox scan %s", o->dir);
		close(fd);
		return;
	}
	while ((de = readdir(dir)) != NULL) {
		if (kr_outbox_wanted(de->d_name) == 0)
			continue;
		names = kr_xrealloc(names, (n + 1) * sizeof(*names));
		names[n++] = kr_xstrdup(de->d_name);
	}
	closedir(dir);
	/* In name order, so "01-…", "02-…" queue in the order meant. */
	if (n > 0)
		qsort(names, n, sizeof(*names), name_cmp);
	for (i = 0; i < n; i++) {
		(void)handle(o, names[i]);
		free(names[i]);
	}
	free(names);
}

int
kr_outbox_process(struct kr_outbox *o)
{
	char ev[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
	const struct inotify_event *ie;
	ssize_t r;
	size_t off;
	int handled = 0, rescan = 0;

	for (;;) {
		r = read(o->ifd, ev, sizeof(ev));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		for (off = 0; off + sizeof(*ie) <= (size_t)r;
		     off += sizeof(*ie) + ie->len) {
			ie = (const struct inotify_event *)(ev + off);
			if (ie->mask & IN_Q_OVERFLOW)
				rescan = 1;
			if (ie->len == 0 || (ie->mask & IN_ISDIR))
				continue;
			handled += handle(o, ie->name);
		}
	}
	if (rescan) {
		kr_log_warn("outbox inotify overflow: rescanning %s", o->dir);
		kr_outbox_scan(o);
	}
	return handled;
}

int
kr_outbox_retry(struct kr_outbox *o)
{
	if (!o->waiting)
		return 0;
	o->waiting = false;
	kr_outbox_scan(o);
	return o->waiting ? 1 : 0;
}

void
kr_outbox_close(struct kr_outbox **op)
{
	struct kr_outbox *o;

	if (op == NULL || (o = *op) == NULL)
		return;
	*op = NULL;
	if (o->ifd >= 0)
		close(o->ifd);
	if (o->dirfd >= 0)
		close(o->dirfd);
	free(o->dir);
	free(o);
}
