/* log.h — one line per event on stderr, with a journald level prefix under
 * systemd. End messages with key=value pairs. Never log a secret, a token
 * or (above debug) an address. */
#ifndef KR_LOG_H
#define KR_LOG_H

#include "common.h"

enum kr_log_level {
	KR_LOG_ERR = 3,
	KR_LOG_WARN = 4,
	KR_LOG_INFO = 6,
	KR_LOG_DEBUG = 7,
};

/* Sets the threshold (default INFO). Thread-safe to call at any time. */
void kr_log_set_level(enum kr_log_level level);
enum kr_log_level kr_log_get_level(void);
/* Parses "error|warn|info|debug"; returns 0 or -1. */
KR_NODISCARD int kr_log_parse_level(const char *s, enum kr_log_level *out);
/* Selects the output form: journald prefixes ("<6>…") when true, else a
 * timestamp and level word. Default: prefixes when JOURNAL_STREAM is set. */
void kr_log_set_journal(int on);

void kr_log_msg(enum kr_log_level level, int with_errno, const char *fmt, ...)
    KR_PRINTF(3, 4);

#define kr_log_err(...) kr_log_msg(KR_LOG_ERR, 0, __VA_ARGS__)
#define kr_log_warn(...) kr_log_msg(KR_LOG_WARN, 0, __VA_ARGS__)
#define kr_log_info(...) kr_log_msg(KR_LOG_INFO, 0, __VA_ARGS__)
#define kr_log_debug(...) kr_log_msg(KR_LOG_DEBUG, 0, __VA_ARGS__)
/* These append ": strerror(errno)". */
#define kr_log_err_errno(...) kr_log_msg(KR_LOG_ERR, 1, __VA_ARGS__)
#define kr_log_warn_errno(...) kr_log_msg(KR_LOG_WARN, 1, __VA_ARGS__)

#endif
