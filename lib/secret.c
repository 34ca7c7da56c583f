/* secret.c — see secret.h. One reader for every file that holds keys, so
 * the checks (regular file, mode 0600 or stricter, bounded size, locked
 * memory, no partial result) are made once and the same way. */
#include "secret.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

int
kr_secret_read(const char *path, const char *what, size_t max,
               unsigned flags, char **data_out, size_t *len_out,
               struct stat *st_out, struct kr_err *err)
{
	struct stat st;
	char *data = NULL;
	size_t len = 0, size;
	ssize_t r;
	int fd, rc = -1;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY |
	                    ((flags & KR_SECRET_NOFOLLOW) ? O_NOFOLLOW : 0));
	if (fd < 0) {
		if (errno == ENOENT && (flags & KR_SECRET_MISSING_OK))
			rc = 1;
		else if (errno == ELOOP && (flags & KR_SECRET_NOFOLLOW))
			kr_err_set(err, KR_ERR_INVALID,
			           "%s %s is a symbolic link; give its real "
			           "path",
			           what, path);
		else
			kr_err_set(err,
			           errno == ENOENT ? KR_ERR_NOTFOUND : KR_ERR_IO,
			           "%s %s: %s", what, path, strerror(errno));
		goto out;
	}
	if (fstat(fd, &st) < 0) {
		kr_err_set(err, KR_ERR_IO, "%s %s: %s", what, path,
		           strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		kr_err_set(err, KR_ERR_INVALID, "%s %s is not a regular file",
		           what, path);
		goto out;
	}
	if ((st.st_mode & 077) != 0) {
		kr_err_set(err, KR_ERR_INVALID,
		           "%s %s has mode %04o: it must not be readable or "
		           "writable by group or others; run chmod 600 %s",
		           what, path, (unsigned)(st.st_mode & 07777), path);
		goto out;
	}
	if (st.st_size < 0 || (size_t)st.st_size > max) {
		kr_err_set(err, KR_ERR_INVALID,
		           "%s %s is larger than %zu bytes", what, path, max);
		goto out;
	}
	if (st.st_size == 0 && (flags & KR_SECRET_NONEMPTY)) {
		kr_err_set(err, KR_ERR_INVALID, "%s %s is empty", what, path);
		goto out;
	}
	/* Sized to the file: locked memory is scarce. Key files are
	 * replaced by rename, never grown in place; a file that shrank
	 * meanwhile gives what is there. */
	size = (size_t)st.st_size;
	if ((data = sodium_malloc(size + 1)) == NULL) {
		kr_err_set(err, KR_ERR_IO, "%s %s: out of locked memory", what,
		           path);
		goto out;
	}
	while (len < size) {
		r = read(fd, data + len, size - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			kr_err_set(err, KR_ERR_IO, "%s %s: %s", what, path,
			           strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	if (len == 0 && (flags & KR_SECRET_NONEMPTY)) {
		kr_err_set(err, KR_ERR_INVALID, "%s %s is empty", what, path);
		goto out;
	}
	data[len] = '\0';
	if (st_out != NULL)
		*st_out = st;
	*data_out = data;
	*len_out = len;
	data = NULL;
	rc = 0;
out:
	if (data != NULL)
		sodium_free(data);
	if (fd >= 0)
		close(fd);
	return rc;
}
