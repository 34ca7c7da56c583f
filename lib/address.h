/* address.h — email address syntax (RFC 5321/5322 addr-spec, dot-atom and
 * quoted local parts), RFC 5321 lengths, and normalisation: the domain is
 * lower-cased and IDN (UTF-8) domains are converted to A-labels; the local
 * part is kept as typed. Control characters, CR, LF and NUL are refused. */
#ifndef KR_ADDRESS_H
#define KR_ADDRESS_H

#include <stddef.h>

#include "common.h"

struct kr_err;

/* Longest normalised address, with its NUL (RFC 5321: 254 in a path). */
#define KR_ADDRESS_MAX 255

/* Validates in (len bytes, not necessarily NUL-terminated; surrounding
 * white space is trimmed) and writes the normalised address to out.
 * Returns 0, or -1 with a reason a person can read in err. */
KR_NODISCARD int kr_address_normalize(const char *in, size_t len,
                                      char out[KR_ADDRESS_MAX],
                                      struct kr_err *err);
/* Returns a pointer into addr: the domain part of a normalised address
 * (after its last @), or "" at its end when there is no @. */
const char *kr_address_domain(const char *addr);

#endif
