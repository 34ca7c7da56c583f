/* mime.h — RFC 5322 / 2045 / 2047 message composition: header fields
 * (encoded words, folding), quoted-printable and base64 bodies, and a
 * multipart/alternative text + HTML message with CRLF lines, none over 998
 * octets. A CR, LF or NUL in any header value is refused here, whatever the
 * callers checked before. A body part's fixed prefix (the report) can be
 * encoded once (struct kr_mime_part) and reused for every subscriber. */
#ifndef KR_MIME_H
#define KR_MIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

struct kr_buf;
struct kr_err;
struct kr_mime_part;

/* The header fields and body of one message. Strings are UTF-8 and
 * borrowed; NULL (or "") leaves the optional field out. */
struct kr_mime_msg {
	const char *from_name;    /* display name, may be NULL */
	const char *from_addr;    /* required */
	const char *to_addr;      /* required */
	const char *reply_to;     /* addr-spec */
	const char *subject;      /* required */
	const char *list_name;    /* List-Id phrase, may be NULL */
	const char *list_id;      /* List-Id "id.domain"; NULL: no List-Id */
	const char *unsub_url;    /* List-Unsubscribe https link */
	const char *unsub_mailto; /* List-Unsubscribe mailto address */
	const char *feedback_id;  /* Feedback-ID value (ASCII) */
	bool one_click;           /* List-Unsubscribe-Post (RFC 8058) */
	bool auto_submitted;      /* Auto-Submitted: auto-generated */
	bool bulk;                /* Precedence: bulk */
	int64_t date;             /* Unix seconds for Date: */
	const char *message_id;   /* "local@domain" (ASCII) for Message-ID;
	                             NULL: a random one on the From domain */
	int date_offset;          /* … shown in this zone: seconds east of
	                             UTC (+0900: 32400) */
	/* ISO-2022-JP (RFC 1468) instead of UTF-8: display names and the
	 * subject as ISO-2022-JP encoded words, text parts in 7bit
	 * ISO-2022-JP (text/plain format=flowed; delsp=yes). Every string
	 * must then hold only characters kr_jis_code carries; the prepared
	 * parts come from kr_mime_part_new_jis. */
	bool iso2022jp;
	/* text/plain and text/html: a prepared prefix (may be NULL) followed
	 * by a per-message tail (may be NULL/0). LF or CRLF line ends. */
	const struct kr_mime_part *text;
	const char *text_tail;
	size_t text_tail_len;
	const struct kr_mime_part *html;
	const char *html_tail;
	size_t html_tail_len;
};

/* Appends the whole message to out. Returns 0, or -1 (KR_ERR_INVALID) for
 * a header value holding CR, LF, NUL or another control character, or
 * text that is not UTF-8; out may then hold a partial message. */
KR_NODISCARD int kr_mime_compose(const struct kr_mime_msg *m,
                                 struct kr_buf *out, struct kr_err *err);

/* Encodes a body prefix once (quoted-printable and base64 both, so the
 * smaller can be chosen per message). Caller frees with kr_mime_part_free. */
struct kr_mime_part *kr_mime_part_new(const char *data, size_t len);
void kr_mime_part_free(struct kr_mime_part **pp);
/* The same for an ISO-2022-JP message: data (UTF-8) is encoded once;
 * flowed for text/plain, not for text/html. NULL when data holds a
 * character ISO-2022-JP cannot carry. */
struct kr_mime_part *kr_mime_part_new_jis(const char *data, size_t len,
                                          bool flowed);

/* ---- encoders (exposed for tests) ---- */

/* Appends "Name: value" CRLF, folded under 78 columns; value as plain text
 * when it is short-worded printable ASCII, else as UTF-8 "B" encoded words
 * of at most 75 characters that never split a character. -1 on CR, LF,
 * NUL, other controls or invalid UTF-8. */
KR_NODISCARD int kr_mime_header_text(struct kr_buf *out, const char *name,
                                     const char *value, struct kr_err *err);
/* Appends "Name: phrase <addr>" CRLF; the phrase as atoms, a quoted
 * string, or encoded words, whichever the text needs; display may be
 * NULL or "". */
KR_NODISCARD int kr_mime_header_addr(struct kr_buf *out, const char *name,
                                     const char *display, const char *addr,
                                     struct kr_err *err);
/* Appends s (len bytes of UTF-8) as encoded words separated by folding
 * white space; *col is the current column and is updated. */
KR_NODISCARD int kr_mime_encode_words(struct kr_buf *out, const char *s,
                                      size_t len, size_t *col,
                                      struct kr_err *err);
/* As kr_mime_encode_words, as ISO-2022-JP "B" words: each starts and
 * ends in ASCII (decodes on its own), at most 75 characters, never
 * splitting a character or an escape sequence. -1 for a character
 * ISO-2022-JP cannot carry. */
KR_NODISCARD int kr_mime_encode_words_jis(struct kr_buf *out, const char *s,
                                          size_t len, size_t *col,
                                          struct kr_err *err);
/* As kr_mime_header_text, with ISO-2022-JP encoded words. */
KR_NODISCARD int kr_mime_header_text_jis(struct kr_buf *out, const char *name,
                                         const char *value, struct kr_err *err);
/* Appends s (UTF-8, LF or CRLF lines) as ISO-2022-JP with CRLF lines,
 * each ending in ASCII; flowed wraps lines at 76 octets (RFC 3676,
 * delsp=yes: trailing spaces dropped, space-stuffing). max_line_out (may
 * be NULL) gets the longest line. -1 for a character it cannot carry. */
KR_NODISCARD int kr_mime_jis_body(struct kr_buf *out, const char *s, size_t n,
                                  bool flowed, size_t *max_line_out);
/* Quoted-printable (RFC 2045 6.7): LF or CRLF become CRLF, lines of at
 * most 76 octets with soft breaks. qp_len gives the output length. */
KR_NODISCARD int kr_mime_qp(struct kr_buf *out, const char *p, size_t n);
size_t kr_mime_qp_len(const char *p, size_t n);
/* Base64 in lines of 76 characters joined by CRLF (none after the last). */
KR_NODISCARD int kr_mime_base64(struct kr_buf *out, const char *p, size_t n);
/* true when s holds a CR, LF or other C0/DEL control, a C1 control (NEL)
 * or U+2028/U+2029 (line and paragraph separators). s ends at its NUL. */
bool kr_mime_has_ctl(const char *s);
/* true when s[0..len) is well-formed UTF-8 (no overlongs, surrogates). */
bool kr_mime_utf8_valid(const char *s, size_t len);

#endif
