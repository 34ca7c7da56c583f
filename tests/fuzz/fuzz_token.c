/* fuzz_token.c — libFuzzer harness for kr_token_peek/kr_token_verify, and
 * a sign/verify round trip over claims taken from the input.
 * Build and run (from the repository root):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Ilib \
 *     tests/fuzz/fuzz_token.c lib/token.c lib/err.c lib/xmem.c -lsodium \
 *     -o build/fuzz_token
 *   build/fuzz_token -max_total_time=60 tests/fuzz/token
 * The key ring is fixed (two keys, ids 1 and 2, written to a temporary
 * 0600 file at start) so the seed tokens in tests/fuzz/token/, signed with
 * those keys, reach the paths past the MAC check. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "token.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Test keys only: 32 bytes of 0x01..0x20 and of 0x21..0x40. */
static const char keys[] =
    "1 1700000000 AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=\n"
    "2 1700000100 ISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+P0A=\n";

static struct kr_keyring *ring;

static void
check(int cond)
{
	if (!cond)
		abort();
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char dir[] = "/tmp/kr-fuzz-token-XXXXXX", path[64];
	struct kr_err err = {0};
	FILE *f;

	(void)argc;
	(void)argv;
	check(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/token.key", dir);
	f = fopen(path, "w");
	check(f != NULL);
	fputs(keys, f);
	fclose(f);
	check(chmod(path, 0600) == 0);
	if (kr_token_keyring_load(path, 0, &ring, &err) != 0) {
		fprintf(stderr, "fuzz_token: %s\n", err.msg);
		abort();
	}
	unlink(path);
	rmdir(dir);
	return 0;
}

static int64_t
get64(const uint8_t *p)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return (int64_t)v;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kr_token_claims c, out;
	struct kr_err err = {0};
	char tok[KR_TOKEN_MAX], s[256];
	const int64_t now = 1764000000;
	int p;

	/* The input as a token string, as it would come in a URL. */
	if (size < sizeof(s)) {
		memcpy(s, data, size);
		s[size] = '\0';
		if (kr_token_peek(s, &out, &err) == 0)
			check(out.purpose >= KR_TOKEN_CONFIRM &&
			      out.purpose <= KR_TOKEN_BOUNCE &&
			      out.list_id == NULL);
		else
			check(err.msg[0] != '\0');
		for (p = KR_TOKEN_CONFIRM; p <= KR_TOKEN_BOUNCE; p++) {
			kr_err_clear(&err);
			if (kr_token_verify(ring, s, (enum kr_token_purpose)p,
			                    "sips-report", now, 0, &out,
			                    &err) == 0)
				check((int)out.purpose == p &&
				      strcmp(out.list_id, "sips-report") == 0);
			else
				check(err.msg[0] != '\0');
		}
	}

	/* Claims from the input: sign, then verify must give them back. */
	if (size >= 25) {
		c.purpose = (enum kr_token_purpose)(data[0] % 3 + 1);
		c.subscriber_id = get64(data + 1);
		c.report_id = get64(data + 9);
		c.issued_at = get64(data + 17);
		memcpy(s, data + 25, size - 25 < 64 ? size - 25 : 64);
		s[size - 25 < 64 ? size - 25 : 64] = '\0';
		c.list_id = s;
		kr_token_sign(ring, &c, tok);
		check(strlen(tok) < KR_TOKEN_MAX);
		check(kr_token_verify(ring, tok, c.purpose, s, c.issued_at, 0,
		                      &out, &err) == 0);
		check(out.subscriber_id == c.subscriber_id &&
		      out.report_id == c.report_id &&
		      out.issued_at == c.issued_at);
		check(kr_token_peek(tok, &out, &err) == 0);
		check(out.subscriber_id == c.subscriber_id);
	}
	return 0;
}
