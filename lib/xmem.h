/* xmem.h — allocation that never returns NULL: on exhaustion it logs and
 * aborts (state lives in SQLite transactions, so that is safe). Cap sizes
 * on input instead of testing these results. */
#ifndef KR_XMEM_H
#define KR_XMEM_H

#include <stddef.h>

#include "common.h"

void *kr_xmalloc(size_t size);
void *kr_xcalloc(size_t n, size_t size);
void *kr_xrealloc(void *p, size_t size);
/* Returns a copy of s (NULL gives NULL). The caller frees. */
char *kr_xstrdup(const char *s);
char *kr_xstrndup(const char *s, size_t n);
/* Returns a newly allocated formatted string. The caller frees. */
char *kr_xasprintf(const char *fmt, ...) KR_PRINTF(1, 2);

#endif
