/* version.c — see version.h. */
#include "version.h"

/* The Makefile defines it from VERSION; a build that bypasses it says so
 * (the tests compare `kairand --version` with VERSION). */
#ifndef KR_VERSION
#define KR_VERSION "unknown"
#endif

const char *
kr_version(void)
{
	return KR_VERSION;
}
