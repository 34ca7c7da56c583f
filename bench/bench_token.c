/* bench_token.c — how many tokens kairan signs and verifies, and addresses
 * it normalises, per second on one core. Run by bench/token.sh. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "address.h"
#include "err.h"
#include "token.h"

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	static const char *addrs[] = {
	    "user@example.jp",         "  User.Name+tag@EXAMPLE.co.jp ",
	    "\"john doe\"@example.jp", "user@例え.jp",
	    "ユーザー@例え.jp",        "John <john@example.jp>",
	};
	struct kr_keyring *ring = NULL;
	struct kr_token_claims c = {KR_TOKEN_UNSUBSCRIBE, "sips-report", 1, 42,
	                            1764000000},
	                       out;
	struct kr_err err = {0};
	char tok[KR_TOKEN_MAX], addr[KR_ADDRESS_MAX];
	long n = argc > 2 ? atol(argv[2]) : 1000000, i, bad = 0;
	double t0, t;

	if (argc < 2 || kr_token_keyring_load(argv[1], 1, &ring, &err) < 0) {
		fprintf(stderr, "usage: bench_token KEYFILE [N]: %s\n",
		        err.msg);
		return 2;
	}
	t0 = now();
	for (i = 0; i < n; i++) {
		c.subscriber_id = i;
		kr_token_sign(ring, &c, tok);
	}
	t = now() - t0;
	printf("sign:      %ld tokens in %.2f s = %.0f/s (%zu chars)\n", n, t,
	       (double)n / t, strlen(tok));
	t0 = now();
	for (i = 0; i < n; i++)
		if (kr_token_verify(ring, tok, KR_TOKEN_UNSUBSCRIBE,
		                    "sips-report", 1764000000, 0, &out,
		                    &err) != 0)
			bad++;
	t = now() - t0;
	printf("verify:    %ld tokens in %.2f s = %.0f/s (%ld refused)\n", n, t,
	       (double)n / t, bad);
	t0 = now();
	for (i = 0; i < n; i++)
		if (kr_address_normalize(addrs[i % 6], strlen(addrs[i % 6]),
		                         addr, &err) != 0)
			bad++;
	t = now() - t0;
	printf("normalize: %ld addresses in %.2f s = %.0f/s (1 in 6 refused, "
	       "2 in 6 IDN)\n",
	       n, t, (double)n / t);
	kr_token_keyring_free(&ring);
	return 0;
}
