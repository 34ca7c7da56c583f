/* fuzz_dkim.c — libFuzzer harness for dkim.c: the DNS answer parser (what
 * `kairanctl dkim check` reads from the network) and the record matcher,
 * relaxed body canonicalization with its in-place fast path checked
 * against the byte-by-byte one (they must agree), header
 * canonicalization, and signing arbitrary bytes as a message.
 * The first input byte picks the target; the rest is its input.
 *   make fuzz   (or: make FLAVOUR=fuzz CC=clang fuzz-bins-fuzz;
 *                build/fuzz/fuzz/fuzz_dkim tests/fuzz/dkim) */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "dkim.h"
#include "dkim_int.h"
#include "err.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct kr_dkim *dkim;

static void
check(int cond)
{
	if (!cond)
		abort();
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char dir[] = "/tmp/kairan-fuzz-dkim-XXXXXX", path[64], rsa[64];
	struct kr_err err = {0};

	(void)argc;
	(void)argv;
	check(mkdtemp(dir) != NULL);
	check(kr_dkim_keygen(dir, "f", &err) == 0);
	snprintf(path, sizeof(path), "%s/f-ed25519.key", dir);
	snprintf(rsa, sizeof(rsa), "%s/f-rsa.key", dir);
	/* Ed25519 only: an RSA signature per input would slow the run
	 * down tenfold for no new code. */
	check(kr_dkim_new("example.jp", NULL, NULL, "f", path, &dkim, &err) ==
	      0);
	unlink(path);
	unlink(rsa);
	rmdir(dir);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kr_buf a, b;
	struct kr_err err = {0};
	const char *p = (const char *)data + 1;
	size_t n = size - 1;
	int r;

	if (size == 0)
		return 0;
	kr_buf_init(&a, 0);
	kr_buf_init(&b, 0);
	switch (data[0] % 4) {
	case 0:
		r = kr_dkim_txt_from_answer(data + 1, n, &a);
		check(r >= -1 && r <= 1);
		if (r == 1)
			(void)kr_dkim_txt_match(
			    a.data, "v=DKIM1; k=ed25519; p=AAAA", &err);
		break;
	case 1:
		check(kr_dkim_canon_body(p, n, &a) == 0);
		check(kr_dkim_canon_body_slow(p, n, &b) == 0);
		check(a.len == b.len &&
		      (a.len == 0 || memcmp(a.data, b.data, a.len) == 0));
		/* Canonical output is a fixed point. */
		kr_buf_reset(&b);
		check(kr_dkim_canon_body(a.data ? a.data : "", a.len, &b) == 0);
		check(a.len == b.len &&
		      (a.len == 0 || memcmp(a.data, b.data, a.len) == 0));
		break;
	case 2:
		check(kr_dkim_canon_header(p, n, &a) == 0);
		break;
	default:
		r = kr_dkim_sign(dkim, p, n, 1764115200, &a, &err);
		check(r == 0 || a.len == 0);
		if (r == 0)
			check(strncmp(a.data, "DKIM-Signature: v=1; ", 21) ==
			      0);
		break;
	}
	kr_buf_fini(&a);
	kr_buf_fini(&b);
	return 0;
}
