/* tz.c — TZif (RFC 8536) transitions for the Date: header's offset.
 *
 * The version 2+ body (64-bit times) is read when the file has one, else
 * the version 1 body; only the transition times, their local time types
 * and the types' UT offsets are kept. Debian ships "fat" files, with
 * transitions listed up to 2037; past the last one its offset holds (the
 * POSIX TZ string in the footer is not evaluated). */
#include "tz.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "xmem.h"

#define TZ_MAX_FILE (256 * 1024)

struct kr_tz {
	char *name;
	size_t n;      /* transitions */
	int64_t *at;   /* ascending */
	int32_t *off;  /* offset from at[i] on */
	int32_t first; /* before at[0] (or always, n == 0) */
};

static uint32_t
be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static int64_t
be64(const unsigned char *p)
{
	return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

/* "+09:00", "+0900", "-05", "UTC", "Z": a fixed offset. 1 parsed, 0 not
 * that form. */
static int
fixed_offset(const char *s, int32_t *off)
{
	int h = 0, m = 0, sign;
	size_t n = strlen(s);

	if (strcmp(s, "UTC") == 0 || strcmp(s, "Z") == 0 ||
	    strcmp(s, "GMT") == 0) {
		*off = 0;
		return 1;
	}
	if ((s[0] != '+' && s[0] != '-') || (n != 3 && n != 5 && n != 6))
		return 0;
	sign = s[0] == '-' ? -1 : 1;
	if (s[1] < '0' || s[1] > '9' || s[2] < '0' || s[2] > '9')
		return 0;
	h = (s[1] - '0') * 10 + (s[2] - '0');
	if (n > 3) {
		const char *mm = s + (n == 6 ? 4 : 3);

		if ((n == 6 && s[3] != ':') || mm[0] < '0' || mm[0] > '5' ||
		    mm[1] < '0' || mm[1] > '9')
			return 0;
		m = (mm[0] - '0') * 10 + (mm[1] - '0');
	}
	if (h > 14)
		return 0;
	*off = sign * (h * 3600 + m * 60);
	return 1;
}

/* An IANA name: letters, digits, '/', '_', '-', '+'; no "..", no leading
 * '/'. */
static bool
zone_name_ok(const char *s)
{
	const char *p;

	if (s[0] == '\0' || s[0] == '/' || strstr(s, "..") != NULL ||
	    strlen(s) > 64)
		return false;
	for (p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || strchr("/_-+", *p)))
			return false;
	return true;
}

/* Parses one TZif body at p (len bytes left) with time size tsz. */
static int
parse_body(struct kr_tz *tz, const unsigned char *p, size_t len, size_t tsz,
           size_t *used)
{
	uint32_t isutc, isstd, leap, timecnt, typecnt, charcnt;
	size_t need, i;
	const unsigned char *t, *idx, *types;

	if (len < 44 || memcmp(p, "TZif", 4) != 0)
		return -1;
	isutc = be32(p + 20);
	isstd = be32(p + 24);
	leap = be32(p + 28);
	timecnt = be32(p + 32);
	typecnt = be32(p + 36);
	charcnt = be32(p + 40);
	if (typecnt == 0 || typecnt > 256 || timecnt > 100000 || leap > 10000 ||
	    charcnt > 10000 || isutc > 256 || isstd > 256)
		return -1;
	need = 44 + timecnt * tsz + timecnt + typecnt * 6 + charcnt +
	       leap * (tsz + 4) + isstd + isutc;
	if (need > len)
		return -1;
	t = p + 44;
	idx = t + timecnt * tsz;
	types = idx + timecnt;
	for (i = 0; i < timecnt; i++)
		if (idx[i] >= typecnt)
			return -1;
	tz->n = timecnt;
	tz->at = kr_xcalloc(timecnt ? timecnt : 1, sizeof(*tz->at));
	tz->off = kr_xcalloc(timecnt ? timecnt : 1, sizeof(*tz->off));
	for (i = 0; i < timecnt; i++) {
		tz->at[i] = tsz == 8 ? be64(t + 8 * i)
		                     : (int64_t)(int32_t)be32(t + 4 * i);
		tz->off[i] = (int32_t)be32(types + 6 * idx[i]);
	}
	/* before the first transition: the first standard-time type
	 * (RFC 8536 3.2), which is type 0 in practice */
	tz->first = (int32_t)be32(types);
	*used = need;
	return 0;
}

int
kr_tz_load(const char *name, struct kr_tz **tz_out, struct kr_err *err)
{
	struct kr_tz *tz = kr_xcalloc(1, sizeof(*tz));
	const char *dir = getenv("TZDIR");
	unsigned char *buf = NULL;
	char path[4096];
	size_t len = 0, used = 0;
	ssize_t k;
	int fd = -1, r = -1;

	*tz_out = NULL;
	tz->name = kr_xstrdup(name);
	if (fixed_offset(name, &tz->first)) {
		r = 0;
		goto out;
	}
	if (!zone_name_ok(name)) {
		kr_err_set(err, KR_ERR_INVALID, "not a time zone name");
		goto out;
	}
	snprintf(path, sizeof(path), "%s/%s",
	         dir && dir[0] ? dir : "/usr/share/zoneinfo", name);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		kr_err_set(err, KR_ERR_INVALID, "unknown time zone (%s: %s)",
		           path, strerror(errno));
		goto out;
	}
	buf = kr_xmalloc(TZ_MAX_FILE);
	while (len < TZ_MAX_FILE &&
	       (k = read(fd, buf + len, TZ_MAX_FILE - len)) != 0) {
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			break;
		len += (size_t)k;
	}
	if (parse_body(tz, buf, len, 4, &used) < 0) {
		kr_err_set(err, KR_ERR_INVALID, "%s is not a TZif file", path);
		goto out;
	}
	if (buf[4] >= '2') { /* the 64-bit body follows */
		struct kr_tz v2 = {0};
		size_t used2;

		if (parse_body(&v2, buf + used, len - used, 8, &used2) == 0) {
			free(tz->at);
			free(tz->off);
			tz->at = v2.at;
			tz->off = v2.off;
			tz->n = v2.n;
			tz->first = v2.first;
		}
	}
	r = 0;
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	if (r == 0)
		*tz_out = tz;
	else
		kr_tz_free(&tz);
	return r;
}

int
kr_tz_offset(const struct kr_tz *tz, int64_t t)
{
	size_t lo = 0, hi;

	if (tz->n == 0 || t < tz->at[0])
		return tz->first;
	hi = tz->n; /* the last at[i] <= t */
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;

		if (tz->at[mid] <= t)
			lo = mid;
		else
			hi = mid;
	}
	return tz->off[lo];
}

const char *
kr_tz_name(const struct kr_tz *tz)
{
	return tz->name;
}

void
kr_tz_free(struct kr_tz **tzp)
{
	struct kr_tz *tz;

	if (tzp == NULL || (tz = *tzp) == NULL)
		return;
	free(tz->name);
	free(tz->at);
	free(tz->off);
	free(tz);
	*tzp = NULL;
}
