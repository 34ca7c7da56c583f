/* buf.h — a growable byte buffer with an optional size cap. Always NUL
 * terminated after data[len] so it can be used as a C string. */
#ifndef KR_BUF_H
#define KR_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "common.h"

struct kr_buf {
	char *data;  /* NULL until the first append */
	size_t len;  /* bytes used, excluding the terminating NUL */
	size_t cap;  /* bytes allocated */
	size_t max;  /* 0: no cap; else appends past max fail */
};

/* Initialises an empty buffer; max 0 means unbounded. */
void kr_buf_init(struct kr_buf *b, size_t max);
/* Frees the storage and leaves b empty (re-usable). */
void kr_buf_fini(struct kr_buf *b);
/* Sets len to 0 and keeps the storage. */
void kr_buf_reset(struct kr_buf *b);
/* Appends; returns 0, or -1 when the cap would be passed (b unchanged). */
KR_NODISCARD int kr_buf_append(struct kr_buf *b, const void *p, size_t n);
KR_NODISCARD int kr_buf_puts(struct kr_buf *b, const char *s);
KR_NODISCARD int kr_buf_putc(struct kr_buf *b, char c);
KR_NODISCARD int kr_buf_printf(struct kr_buf *b, const char *fmt, ...)
    KR_PRINTF(2, 3);
KR_NODISCARD int kr_buf_vprintf(struct kr_buf *b, const char *fmt, va_list ap)
    KR_PRINTF(2, 0);
/* Makes room for n more bytes; returns 0 or -1 past the cap. */
KR_NODISCARD int kr_buf_reserve(struct kr_buf *b, size_t n);
/* Hands the data to the caller (who frees it) and leaves b empty. Never
 * NULL: an empty buffer gives "". */
char *kr_buf_steal(struct kr_buf *b);

#endif
