/* jis.h — which characters ISO-2022-JP (RFC 1468: ASCII + JIS X 0208)
 * can carry, and what to send instead of those it cannot. The JIS X 0208
 * mapping is glibc's iconv "ISO-2022-JP" table, read once; the Microsoft
 * code-page forms of the same glyphs (FULLWIDTH TILDE for WAVE DASH, …)
 * and the substitutions (① → (1), half-width kana → full-width, …) are
 * hand-written tables in jis.c, each row unit-tested. No MIME here. */
#ifndef KR_JIS_H
#define KR_JIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

struct kr_buf;

/* The JIS X 0208 code (0x2121..0x7e7e) of code point cp, cp itself for
 * printable ASCII, tab and line ends, or 0 when ISO-2022-JP cannot carry
 * it. The Microsoft forms (U+FF5E, U+2225, U+FF0D, U+FFE0..FFE2, U+2014)
 * give the code of the glyph they show (0x2141 WAVE DASH …). */
unsigned kr_jis_code(uint32_t cp);

/* The substitute (UTF-8, every character encodable) for the character at
 * s (n bytes of UTF-8), or NULL when the table has none; *used_out is the
 * bytes it replaces (a half-width kana with its voiced mark counts as
 * one). */
const char *kr_jis_subst(const char *s, size_t n, size_t *used_out);

/* Called for every character s holds that ISO-2022-JP cannot carry: off is
 * its byte offset in s, len its bytes (a half-width kana and its voiced
 * mark are one), cp its code point, subst the table's rendition or NULL. */
typedef void (*kr_jis_issue_fn)(void *ctx, size_t off, size_t len, uint32_t cp,
                                const char *subst);

/* Appends s[0..n) (valid UTF-8) to out, replacing (when substitute) the
 * characters ISO-2022-JP cannot carry by their substitutes; fn (may be
 * NULL) hears of each. Returns how many characters have no rendition
 * (kept as written in out): 0 means out is all encodable. */
size_t kr_jis_fix(const char *s, size_t n, bool substitute, struct kr_buf *out,
                  kr_jis_issue_fn fn, void *ctx);

/* Appends one line per character of data (a report source, n bytes of
 * UTF-8; name is FILE) that ISO-2022-JP cannot carry:
 *   FILE:LINE:COLUMN: U+2460 '①' cannot be sent as ISO-2022-JP (substitute:
 * (1)) with "(no substitute)" when the table has none; lines of the whole file,
 * columns in characters, both from 1. Returns the number of lines; *n_none_out
 * (may be NULL) gets those without a substitute. */
size_t kr_jis_lint(const char *name, const char *data, size_t n,
                   struct kr_buf *out, size_t *n_none_out);

/* Decodes the UTF-8 character at s (n > 0 bytes, valid UTF-8): returns
 * its code point and sets *len_out. */
uint32_t kr_jis_utf8(const unsigned char *s, size_t n, size_t *len_out);

/* For tests: the hand-written rows. kr_jis_test_rows gives every
 * substitution row (code point, rendition; the half-width kana with their
 * plain full-width form) in table order; kr_jis_test_ms_forms the
 * Microsoft forms and the JIS code each is sent as. Both return the row
 * count; the arrays are static. */
size_t kr_jis_test_rows(const uint32_t **cps_out, const char *const **to_out);
size_t kr_jis_test_ms_forms(const uint32_t **cps_out,
                            const unsigned **codes_out);

#endif
