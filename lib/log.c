/* log.c — leveled logging to stderr, one write per line. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static _Atomic int log_level = KR_LOG_INFO;
static _Atomic int log_journal = -1;

void
kr_log_set_level(enum kr_log_level level)
{
	log_level = (int)level;
}

enum kr_log_level
kr_log_get_level(void)
{
	return (enum kr_log_level)log_level;
}

int
kr_log_parse_level(const char *s, enum kr_log_level *out)
{
	static const struct {
		const char *name;
		enum kr_log_level level;
	} names[] = {
	    {"error", KR_LOG_ERR}, {"err", KR_LOG_ERR},
	    {"warn", KR_LOG_WARN}, {"warning", KR_LOG_WARN},
	    {"info", KR_LOG_INFO}, {"debug", KR_LOG_DEBUG},
	};
	size_t i;

	for (i = 0; i < KR_NELEM(names); i++) {
		if (strcasecmp(s, names[i].name) == 0) {
			*out = names[i].level;
			return 0;
		}
	}
	return -1;
}

void
kr_log_set_journal(int on)
{
	log_journal = on ? 1 : 0;
}

static const char *
level_word(enum kr_log_level level)
{
	switch (level) {
	case KR_LOG_ERR:
		return "error";
	case KR_LOG_WARN:
		return "warn";
	case KR_LOG_INFO:
		return "info";
	default:
		return "debug";
	}
}

void
kr_log_msg(enum kr_log_level level, int with_errno, const char *fmt, ...)
{
	char line[2048];
	size_t n = 0;
	int saved = errno, r;
	va_list ap;

	if ((int)level > log_level)
		return;
	if (log_journal < 0)
		log_journal = getenv("JOURNAL_STREAM") != NULL;
	if (log_journal) {
		r = snprintf(line, sizeof(line), "<%d>", (int)level);
	} else {
		struct timespec ts;
		struct tm tm;

		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		r = snprintf(line, sizeof(line),
		    "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s: ",
		    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		    tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, level_word(level));
	}
	n = r > 0 ? (size_t)r : 0;
	va_start(ap, fmt);
	r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	va_end(ap);
	if (r > 0)
		n += (size_t)r;
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	if (with_errno) {
		r = snprintf(line + n, sizeof(line) - n, ": %s",
		    strerror(saved));
		if (r > 0)
			n += (size_t)r;
		if (n > sizeof(line) - 2)
			n = sizeof(line) - 2;
	}
	/* Control characters from outside must not forge log lines. */
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)line[i] < 0x20 && line[i] != '\t')
			line[i] = '?';
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, n) < 0) {
		/* nothing sensible to do */
	}
	errno = saved;
}
