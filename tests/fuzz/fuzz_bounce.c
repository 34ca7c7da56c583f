/* fuzz_bounce.c — libFuzzer harness for kr_bounce_parse, the parser of
 * mail from strangers (bounces, complaints, auto-replies, anything sent
 * to a VERP address). Seeds: tests/fuzz/bounce (copies of
 * tests/data/bounces). `make fuzz` runs it long; tests/integration/
 * test_fuzz.sh briefly.
 * Beyond memory errors it checks the contract: parsing never fails on
 * content, the kind is one of the enum, every string is terminated within
 * its field, tokens are 16..95 characters of [A-Za-z0-9_-], an ignored
 * message says why, and the first bytes of the input given as the MTA's
 * recipient never make it crash either. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bounce.h"
#include "err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(int cond)
{
	if (!cond)
		abort();
}

static void
check_str(const char *s, size_t size)
{
	check(memchr(s, '\0', size) != NULL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kr_bounce b;
	struct kr_err err = {0};
	char rcpt[128];
	size_t i, n, j;

	n = size < sizeof(rcpt) - 1 ? size : sizeof(rcpt) - 1;
	memcpy(rcpt, data, n);
	rcpt[n] = '\0';
	check(kr_bounce_parse((const char *)data, size, NULL, &b, &err) == 0);
	check(b.kind >= KR_BOUNCE_IGNORE && b.kind <= KR_BOUNCE_COMPLAINT);
	check(b.source != NULL && b.reason != NULL);
	check(b.kind != KR_BOUNCE_IGNORE || b.reason[0] != '\0');
	check_str(b.status, sizeof(b.status));
	check_str(b.diagnostic, sizeof(b.diagnostic));
	check_str(b.recipient, sizeof(b.recipient));
	check(b.n_tokens <= KR_BOUNCE_MAX_TOKENS);
	for (i = 0; i < b.n_tokens; i++) {
		n = strnlen(b.tokens[i].token, KR_TOKEN_MAX);
		check(n >= 16 && n < KR_TOKEN_MAX);
		for (j = 0; j < n; j++) {
			char c = b.tokens[i].token[j];

			check((c >= 'A' && c <= 'Z') ||
			      (c >= 'a' && c <= 'z') ||
			      (c >= '0' && c <= '9') || c == '-' || c == '_');
		}
	}
	check(kr_bounce_parse((const char *)data, size, rcpt, &b, &err) == 0);
	return 0;
}
