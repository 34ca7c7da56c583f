/* fuzz_address.c — libFuzzer harness for kr_address_normalize.
 * Build and run (from the repository root):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Ilib \
 *     tests/fuzz/fuzz_address.c lib/address.c lib/err.c -lidn2 \
 *     -o build/fuzz_address
 *   build/fuzz_address -max_total_time=60 tests/fuzz/address
 * Beyond memory errors it checks the contract: a normalised address is
 * at most 254 octets, has no control character, one domain of lower-case
 * LDH labels, and normalising it again gives itself. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "address.h"
#include "err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(int cond)
{
	if (!cond)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char out[KR_ADDRESS_MAX], again[KR_ADDRESS_MAX];
	struct kr_err err = {0};
	const char *dom, *p;
	size_t n;

	if (kr_address_normalize((const char *)data, size, out, &err) != 0) {
		check(err.code == KR_ERR_INVALID && err.msg[0] != '\0');
		check(out[0] == '\0');
		return 0;
	}
	n = strlen(out);
	check(n >= 3 && n <= 254);
	for (p = out; *p; p++)
		check((unsigned char)*p >= 0x20 && *p != 0x7f);
	dom = kr_address_domain(out);
	check(dom > out + 1 && dom[-1] == '@');
	check(strlen(dom) <= 253 && strchr(dom, '.') != NULL);
	for (p = dom; *p; p++)
		check((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		      *p == '-' || *p == '.');
	check(dom - out - 1 <= 64);
	check(kr_address_normalize(out, n, again, &err) == 0);
	check(strcmp(out, again) == 0);
	return 0;
}
