/* secret.h — reading a file of secrets (token keys, DKIM private keys)
 * into locked memory, refusing one that others could read. */
#ifndef KR_SECRET_H
#define KR_SECRET_H

#include <stddef.h>
#include <sys/stat.h>

#include "common.h"
#include "err.h"

enum {
	KR_SECRET_NOFOLLOW = 1,   /* a symbolic link is refused */
	KR_SECRET_MISSING_OK = 2, /* a missing file returns 1, no error */
	KR_SECRET_NONEMPTY = 4,   /* an empty file is refused */
};

/* Reads the whole of path into sodium_malloc'd memory, NUL-terminated
 * (free it with sodium_free). Refuses anything but a regular file, a file
 * group or others may read or write (mode & 077: "run chmod 600"), and one
 * over max bytes. what names the file in messages ("key file", "dkim key
 * file"). *st_out (may be NULL) gets its stat. Returns 0; 1 when the file
 * is missing and flags has KR_SECRET_MISSING_OK; -1 with err set
 * (KR_ERR_NOTFOUND when missing, KR_ERR_INVALID for a refused file,
 * KR_ERR_IO otherwise). */
KR_NODISCARD int kr_secret_read(const char *path, const char *what,
    size_t max, unsigned flags, char **data_out, size_t *len_out,
    struct stat *st_out, struct kr_err *err);

#endif
