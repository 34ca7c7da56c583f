/* err.c — fixed-size error detail, no allocation on the error path. */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int
kr_err_set(struct kr_err *err, enum kr_err_code code, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL)
		return -1;
	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return -1;
}

void
kr_err_prefix(struct kr_err *err, const char *fmt, ...)
{
	char pre[256], old[sizeof(err->msg)];
	va_list ap;

	if (err == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(pre, sizeof(pre), fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof(old));
	/* Built by hand: truncation is intended, and -Wformat-truncation
	 * would flag a snprintf doing it. */
	{
		size_t n = strnlen(pre, sizeof(err->msg) - 1), m;

		memcpy(err->msg, pre, n);
		if (n + 2 < sizeof(err->msg)) {
			memcpy(err->msg + n, ": ", 2);
			n += 2;
		}
		m = strnlen(old, sizeof(old));
		if (m > sizeof(err->msg) - 1 - n)
			m = sizeof(err->msg) - 1 - n;
		memcpy(err->msg + n, old, m);
		err->msg[n + m] = '\0';
	}
}

void
kr_err_clear(struct kr_err *err)
{
	if (err == NULL)
		return;
	err->code = KR_ERR_NONE;
	err->msg[0] = '\0';
}
