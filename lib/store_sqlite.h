/* store_sqlite.h — what only the SQLite backend has, for its tests and
 * benchmarks; the daemon and tools use store.h alone. */
#ifndef KR_STORE_SQLITE_H
#define KR_STORE_SQLITE_H

#include "store.h"

/* The WAL's in-commit checkpoint threshold (pages) of every connection
 * opened from now on, process-wide; 0: the default (SQLite's 1,000
 * pages, or the backstop of kr_store_upkeep_from_loop()). */
void kr_store_sqlite_set_autocheckpoint(int pages);
/* kr_store_upkeep() with the figures: *wal_pages and *done_pages (may be
 * NULL) are the WAL's size and how much of it is now in the database.
 * KR_ERR_INVALID on a store of another backend. */
KR_NODISCARD int kr_store_sqlite_checkpoint(struct kr_store *s,
                                            int *wal_pages, int *done_pages,
                                            struct kr_err *err);

#endif
