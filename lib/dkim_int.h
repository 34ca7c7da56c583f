/* dkim_int.h — dkim.c internals exposed to its unit test only. */
#ifndef KR_DKIM_INT_H
#define KR_DKIM_INT_H

#include <stddef.h>

#include "common.h"

struct kr_buf;
struct kr_err;

/* Appends the relaxed canonical form (RFC 6376 3.4.2) of one header field
 * (name, colon, value with its folds, without the final line break) to
 * out: "name:value", no CRLF. Returns 0 or -1 (out's cap). */
KR_NODISCARD int kr_dkim_canon_header(const char *field, size_t len,
                                      struct kr_buf *out);
/* Appends the relaxed canonical body (RFC 6376 3.4.4) to out. Returns 0 or
 * -1 (out's cap). */
KR_NODISCARD int kr_dkim_canon_body(const char *body, size_t len,
                                    struct kr_buf *out);
/* Same, forcing the byte-by-byte path (the fast path must agree). */
KR_NODISCARD int kr_dkim_canon_body_slow(const char *body, size_t len,
                                         struct kr_buf *out);
/* Finds the DKIM TXT record in a DNS answer (as res_query returns it) and
 * appends its text (character-strings joined) to out. Returns 1 found, 0
 * no TXT record, -1 a malformed answer. */
KR_NODISCARD int kr_dkim_txt_from_answer(const unsigned char *ans, size_t len,
                                         struct kr_buf *out);
/* Compares a published record with the wanted one (k= and p=). Returns 1
 * same key, 0 different (err says how). */
int kr_dkim_txt_match(const char *published, const char *want,
                      struct kr_err *err);

#endif
