/* outbox.h — the watched folder where finished reports are dropped.
 *
 * Contract with operators: write the report elsewhere (or under a name
 * starting with "." or ending in ".tmp" or ".part", which are ignored) and
 * rename it into the folder as NAME.md. Each such file is read (at most
 * KR_OUTBOX_MAX bytes), handed to the callback, then moved to done/ or, when
 * the callback fails or the file is refused (symlink, not a regular file,
 * too big, not *.md, a hard link), to failed/ beside a NAME.err saying
 * why. Files there when the watcher opens are processed too. No file is
 * ever deleted. */
#ifndef KR_OUTBOX_H
#define KR_OUTBOX_H

#include <stddef.h>

#include "common.h"

struct kr_err;
struct kr_outbox;

#define KR_OUTBOX_MAX (16u * 1024 * 1024)

/* Queues one report: name is the file's base name, data its bytes (NUL
 * terminated after len). Returns 0, or -1 with a reason in err. */
typedef int (*kr_outbox_fn)(void *ctx, const char *name, const char *data,
    size_t len, struct kr_err *err);

/* Starts watching dir (inotify IN_MOVED_TO and IN_CLOSE_WRITE), creating
 * dir/done and dir/failed when missing. Nothing is processed until
 * kr_outbox_process(). */
KR_NODISCARD int kr_outbox_open(const char *dir, kr_outbox_fn fn, void *ctx,
    struct kr_outbox **o_out, struct kr_err *err);
/* The inotify descriptor to poll for reading. */
int kr_outbox_fd(const struct kr_outbox *o);
/* Scans the folder for files already there (start, inotify overflow). */
void kr_outbox_scan(struct kr_outbox *o);
/* Reads the pending inotify events and processes the files they name.
 * Returns the number of files handed to the callback. */
int kr_outbox_process(struct kr_outbox *o);
/* A file seen while still being written (its writer has it open, or it
 * changed in the last 2 s) waits: it is taken when its writer closes it
 * (IN_CLOSE_WRITE) or at a later call of this function, which the owner
 * makes about once a second. Returns 1 while some file still waits. */
int kr_outbox_retry(struct kr_outbox *o);
/* What the watcher does with a base name: 1 queue it (NAME.md), 0 leave
 * it alone (hidden, *.tmp, *.part, "." and "..", or holding '/'), -1
 * refuse it (moved to failed/: any other name). */
int kr_outbox_wanted(const char *name);
void kr_outbox_close(struct kr_outbox **o);

#endif
