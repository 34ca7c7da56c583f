/* tz.h — a time zone for the Date: header: an IANA name read from the
 * system's TZif files (/usr/share/zoneinfo, or $TZDIR), "UTC", or a fixed
 * offset "+09:00" / "-0500". Loaded once (config), then read-only: any
 * thread may ask for the offset at an instant. */
#ifndef KR_TZ_H
#define KR_TZ_H

#include <stdint.h>

#include "common.h"

struct kr_err;
struct kr_tz;

/* Loads name. Returns 0 and *tz_out (free with kr_tz_free), or -1 with
 * KR_ERR_INVALID (not a zone name or offset, no such zone, a file that
 * is not TZif). */
KR_NODISCARD int kr_tz_load(const char *name, struct kr_tz **tz_out,
                            struct kr_err *err);
/* Seconds east of UTC at Unix time t (past the file's last transition,
 * its last offset holds). */
int kr_tz_offset(const struct kr_tz *tz, int64_t t);
/* The name it was loaded from (borrowed). */
const char *kr_tz_name(const struct kr_tz *tz);
void kr_tz_free(struct kr_tz **tz);

#endif
