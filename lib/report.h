/* report.h — a finished report: Markdown with YAML front matter
 *   ---
 *   subject: 第12号 脅威レポート      (required)
 *   list: sips-report               (default: the only list)
 *   date: 2026-11-26                (optional, YYYY-MM-DD)
 *   send_at: 2026-11-26T09:00+09:00 (optional ISO 8601; no offset: local)
 *   preheader: 今月の要点            (optional)
 *   ---
 *   Markdown body…
 * parsed with libyaml, rendered to HTML with cmark (raw HTML dropped unless
 * the list sets allow_html) and to readable plain text. Errors read
 * "FILE:LINE:COLUMN: message" with lines of the whole file. One path,
 * kr_report_queue, takes reports from all three doors (kairanctl send,
 * URLs, the outbox folder). */
#ifndef KR_REPORT_H
#define KR_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

struct kr_config;
struct kr_err;
struct kr_store;

/* Longest report source accepted (bytes). */
#define KR_REPORT_MAX (4u * 1024 * 1024)

struct kr_report {
	char *subject;   /* UTF-8, no control characters */
	char *list_id;   /* resolved against the config */
	char *date;      /* "" when not given */
	int64_t send_at; /* 0: at once */
	char *preheader; /* "" when not given */
	char *text;      /* text/plain rendering of the body */
	char *html;      /* HTML fragment of the body */
	char hash[65];   /* hex SHA-256 of all the source bytes */
};

/* Parses and renders data (len bytes; name is FILE in messages). Returns 0
 * and *rep_out (free with kr_report_free), or -1 with KR_ERR_INVALID and a
 * "name:line:col: …" message. */
KR_NODISCARD int kr_report_parse(const struct kr_config *cfg, const char *name,
                                 const char *data, size_t len,
                                 struct kr_report **rep_out,
                                 struct kr_err *err);
void kr_report_free(struct kr_report **rp);

/* Parses, then stores the report and queues one delivery per active
 * subscriber of its list (kr_store_report_add). The same content queued
 * before fails with KR_ERR_EXISTS unless again. */
KR_NODISCARD int kr_report_queue(struct kr_store *store,
                                 const struct kr_config *cfg, const char *name,
                                 const char *data, size_t len, bool again,
                                 int64_t *id_out, int64_t *queued_out,
                                 struct kr_err *err);

/* The plain-text form of Markdown s (n bytes): the source as written,
 * with inline links and images made "text <url>" outside code, and HTML
 * comments dropped outside code (kr_report_parse refuses one never
 * closed; here it drops the rest). The caller frees. */
char *kr_report_text(const char *s, size_t n);

#endif
