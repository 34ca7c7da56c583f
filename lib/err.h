/* err.h — error detail carried beside a -1 return. */
#ifndef KR_ERR_H
#define KR_ERR_H

#include "common.h"

enum kr_err_code {
	KR_ERR_NONE = 0,
	KR_ERR_INVALID, /* bad input: config, form, token, report */
	KR_ERR_IO,      /* file system, sockets */
	KR_ERR_DB,      /* the store */
	KR_ERR_BUSY,    /* the store is locked or full: try later */
	KR_ERR_TEMP,    /* SMTP 4xx, relay down: retry */
	KR_ERR_PERM,    /* SMTP 5xx: give up */
	KR_ERR_EXISTS,  /* already there (report queued twice…) */
	KR_ERR_NOTFOUND,
	KR_ERR_STALE,   /* a fenced write whose claim was overtaken */
};

struct kr_err {
	enum kr_err_code code;
	char msg[256];
};

/* Sets code and message; err may be NULL. Always returns -1 so callers can
 * write `return kr_err_set(err, …);`. */
int kr_err_set(struct kr_err *err, enum kr_err_code code, const char *fmt, ...)
    KR_PRINTF(3, 4);
/* Prepends "context: " to the message (truncating). err may be NULL. */
void kr_err_prefix(struct kr_err *err, const char *fmt, ...) KR_PRINTF(2, 3);
/* Clears err (code NONE, empty message). err may be NULL. */
void kr_err_clear(struct kr_err *err);

#endif
