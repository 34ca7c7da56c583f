/* buf.c — growable, capped byte buffer. */
#include "buf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xmem.h"

void
kr_buf_init(struct kr_buf *b, size_t max)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->max = max;
}

void
kr_buf_fini(struct kr_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void
kr_buf_reset(struct kr_buf *b)
{
	b->len = 0;
	if (b->data != NULL)
		b->data[0] = '\0';
}

int
kr_buf_reserve(struct kr_buf *b, size_t n)
{
	size_t need, cap;

	if (n > SIZE_MAX / 2 - b->len)
		return -1;
	need = b->len + n + 1;
	if (b->max != 0 && b->len + n > b->max)
		return -1;
	if (need <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap *= 2;
	b->data = kr_xrealloc(b->data, cap);
	b->cap = cap;
	return 0;
}

int
kr_buf_append(struct kr_buf *b, const void *p, size_t n)
{
	if (kr_buf_reserve(b, n) < 0)
		return -1;
	if (n > 0)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int
kr_buf_puts(struct kr_buf *b, const char *s)
{
	return kr_buf_append(b, s, strlen(s));
}

int
kr_buf_putc(struct kr_buf *b, char c)
{
	return kr_buf_append(b, &c, 1);
}

int
kr_buf_vprintf(struct kr_buf *b, const char *fmt, va_list ap)
{
	va_list ap2;
	int n;

	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0 || kr_buf_reserve(b, (size_t)n) < 0)
		return -1;
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
	return 0;
}

int
kr_buf_printf(struct kr_buf *b, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = kr_buf_vprintf(b, fmt, ap);
	va_end(ap);
	return r;
}

char *
kr_buf_steal(struct kr_buf *b)
{
	char *p = b->data;

	if (p == NULL)
		p = kr_xstrdup("");
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	return p;
}
