/* doctor.h — `kairanctl doctor`: what Gmail, Yahoo and Microsoft ask of a
 * bulk sender, checked against the DNS (dns.h), the relays
 * (transport_smtp.c) and a dry-run message (compose, dkim) before the
 * first report goes. Every finding goes to a callback, one per line. */
#ifndef KR_DOCTOR_H
#define KR_DOCTOR_H

#include <stddef.h>

#include "common.h"

struct kr_config;
struct kr_err;

enum kr_doctor_level { KR_DOCTOR_OK, KR_DOCTOR_WARN, KR_DOCTOR_FAIL };

/* One finding: list_id is "-" for what all lists share (relays,
 * public_url); check a short name ("spf", "dkim", "dmarc", "ptr", "mx",
 * "relay", "one-click", "headers"); msg says what was found and, for a
 * failure, what to publish or change. */
typedef void (*kr_doctor_fn)(void *ctx, const char *list_id,
                             const char *check, enum kr_doctor_level level,
                             const char *msg);

/* Runs every check for the list list_id (NULL: every list). Returns the
 * number of failures (0: none), or -1 when nothing could be checked (no
 * such list, dns.resolver unusable; err set). */
KR_NODISCARD int kr_doctor_run(const struct kr_config *cfg,
                               const char *list_id, kr_doctor_fn fn,
                               void *ctx, struct kr_err *err);

/* The organisational domain of name (RFC 7489 3.2, with a short built-in
 * list of two-label public suffixes like co.jp and co.uk) into out.
 * Returns out. */
const char *kr_doctor_org_domain(const char *name, char *out, size_t size);

#endif
