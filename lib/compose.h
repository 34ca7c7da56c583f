/* compose.h — the personal message for one claimed delivery: fills the
 * list's templates (footer, confirmation mail) with this subscriber's
 * signed links and hands the parts to mime. No MIME syntax here; no SQL. */
#ifndef KR_COMPOSE_H
#define KR_COMPOSE_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

struct kr_buf;
struct kr_cfg_list;
struct kr_claim;
struct kr_config;
struct kr_err;
struct kr_keyring;
struct kr_report_row;

/* Appends the whole RFC 5322 message (CRLF lines) for report r to c's
 * subscriber to out, and writes the envelope sender (VERP
 * bounces+TOKEN@bounce_domain when configured, else the list's address)
 * to env_from (256 bytes). */
KR_NODISCARD int kr_compose_report(const struct kr_config *cfg,
    const struct kr_cfg_list *list, const struct kr_report_row *r,
    const struct kr_claim *c, const struct kr_keyring *ring, int64_t now,
    struct kr_buf *out, char env_from[256], struct kr_err *err);
/* The same for a confirmation mail (Auto-Submitted: auto-generated, in the
 * list's language, with the confirm link; never the subscriber's name). */
KR_NODISCARD int kr_compose_confirm(const struct kr_config *cfg,
    const struct kr_cfg_list *list, const struct kr_claim *c,
    const struct kr_keyring *ring, int64_t now, struct kr_buf *out,
    char env_from[256], struct kr_err *err);
/* Writes the public link for a token: "<public_url>/<path>?t=<token>". */
void kr_compose_link(const struct kr_config *cfg, const char *path,
    const char *token, char *out, size_t outsz);

#endif
