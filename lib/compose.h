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
 * subscriber (c->name fills {{name}}) to out, and writes the envelope
 * sender (VERP
 * bounces+TOKEN@bounce_domain when configured, else the list's address)
 * to env_from (256 bytes). */
KR_NODISCARD int
kr_compose_report(const struct kr_config *cfg, const struct kr_cfg_list *list,
                  const struct kr_report_row *r, const struct kr_claim *c,
                  const struct kr_keyring *ring, int64_t now,
                  struct kr_buf *out, char env_from[256], struct kr_err *err);
/* The same for a confirmation mail (Auto-Submitted: auto-generated, in the
 * list's language, with the confirm link; never the subscriber's name). */
KR_NODISCARD int kr_compose_confirm(const struct kr_config *cfg,
                                    const struct kr_cfg_list *list,
                                    const struct kr_claim *c,
                                    const struct kr_keyring *ring, int64_t now,
                                    struct kr_buf *out, char env_from[256],
                                    struct kr_err *err);
/* ---- fast path: one cache per report, shared by every message ----
 * kr_compose_prepare renders and encodes what is the same for every
 * subscriber; kr_compose_report_cached adds one subscriber. The cache
 * copies what it needs from cfg, list and r and is read-only afterwards,
 * so threads may share it. kr_compose_report keeps such a cache per
 * thread for the last report it saw (compared by value, so a reloaded
 * config takes effect at once): calling it per claim is as fast. */
struct kr_compose_cache;

/* Renders the layout around r's body and encodes it once. Returns the
 * cache (free with kr_compose_cache_free). r->id may be 0 (dry runs). */
struct kr_compose_cache *kr_compose_prepare(const struct kr_config *cfg,
                                            const struct kr_cfg_list *list,
                                            const struct kr_report_row *r);
void kr_compose_cache_free(struct kr_compose_cache **cache);
/* As kr_compose_report; name (may be NULL) fills {{name}} in the footer
 * (kr_compose_report passes c->name). Bodies only, never a header: text
 * as is, HTML escaped, control characters (CR, LF…) made spaces. */
KR_NODISCARD int kr_compose_report_cached(
    const struct kr_compose_cache *cache, const struct kr_claim *c,
    const char *name, const struct kr_keyring *ring, int64_t now,
    struct kr_buf *out, char env_from[256], struct kr_err *err);
/* The built-in template called name ("report.html", "report.txt",
 * "footer.ja.txt", "confirm.en.txt"…; the same text as
 * config/templates/), or NULL. */
const char *kr_compose_template(const char *name);

/* The Message-ID (without <>) of report report_id's copy to subscriber
 * sub_id: "R.S.HASH12@domain", the report's hash and the list's From
 * domain. The same copy always gets the same one (a retry, a resend after
 * a crash), so `kairanctl subscribers consent` can name it. */
void kr_compose_message_id(const struct kr_cfg_list *list, int64_t report_id,
                           int64_t sub_id, const char *hash, char *out,
                           size_t outsz);

/* Writes the public link for a token: "<public_url>/<path>?t=<token>". */
void kr_compose_link(const struct kr_config *cfg, const char *path,
                     const char *token, char *out, size_t outsz);

#endif
