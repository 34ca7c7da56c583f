/* fetch.h — reading a report (or any small text document) from a URL with
 * libcurl: https with verified certificates (plain http is allowed, with a
 * warning in the log, for local tests and intranets), at most 5 redirects
 * (http/https only), a size cap that aborts the transfer once passed, and
 * a time limit for the whole transfer. */
#ifndef KR_FETCH_H
#define KR_FETCH_H

#include <stddef.h>

#include "common.h"

struct kr_buf;
struct kr_err;

/* Default limits for kairanctl send URL. */
#define KR_FETCH_DEFAULT_MAX (4u * 1024 * 1024)
#define KR_FETCH_DEFAULT_TIMEOUT 30

/* Appends the body of url to out. Accepts a final status 2xx and a
 * Content-Type of text/(anything) or application/octet-stream (or none). Writes
 * the Content-Type (or "") to ct_out (ct_size bytes; ct_out may be NULL).
 * Returns 0, or -1 with KR_ERR_INVALID (bad URL or scheme, HTTP 4xx,
 * wrong type, too large) or KR_ERR_IO (network, TLS, timeout, HTTP 5xx);
 * the message names the URL and the reason. */
KR_NODISCARD int kr_fetch_url(const char *url, size_t max_bytes, long timeout_s,
                              struct kr_buf *out, char *ct_out, size_t ct_size,
                              struct kr_err *err);

/* Writes url as it may be shown in errors, logs and the database: without
 * "user:password@" and with any query or fragment replaced by "?…". */
void kr_fetch_redact(const char *url, char *out, size_t outsz);

#endif
