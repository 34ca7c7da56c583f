/* version.h — kairan's version, from the VERSION file at the top of the
 * source tree (the Makefile passes it to version.c alone, so a new version
 * rebuilds one object). */
#ifndef KR_VERSION_H
#define KR_VERSION_H

/* "1.0.0": the release, as in VERSION, CHANGELOG.md and debian/changelog. */
const char *kr_version(void);

#endif
