/* fuzz_jis.c — libFuzzer harness for the ISO-2022-JP side: kr_jis_fix,
 * kr_jis_lint, kr_mime_jis_body (flowed and not) and ISO-2022-JP encoded
 * words, on any bytes made valid UTF-8. Beyond memory errors it checks the
 * contract: after substitution with nothing left over, every encoder
 * accepts the text; their output is 7-bit, every line ends in ASCII
 * (the last escape on it is ESC ( B) and flowed lines stay within 76
 * octets unless an ASCII word is longer. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "err.h"
#include "jis.h"
#include "mime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_at(int cond, int line)
{
	if (!cond) {
		fprintf(stderr, "fuzz_jis: check failed at line %d\n", line);
		abort();
	}
}
#define check(c) check_at((c), __LINE__)

/* 7-bit, and each CRLF line returns to ASCII before its end. */
static void
check_7bit(const struct kr_buf *b)
{
	size_t i;
	bool jis = false;

	for (i = 0; i < b->len; i++) {
		unsigned char c = (unsigned char)b->data[i];

		check(c < 0x80);
		if (c == 0x1b && i + 2 < b->len)
			jis = b->data[i + 1] == '$';
		if (c == '\r')
			check(!jis);
	}
	check(!jis);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kr_buf in, fixed, out, lint;
	struct kr_err err = {0};
	size_t i, left, col = 9, max = 0;

	if (size > 4096)
		return 0;
	kr_buf_init(&in, 0);
	kr_buf_init(&fixed, 0);
	kr_buf_init(&out, 0);
	kr_buf_init(&lint, 0);
	/* keep the valid UTF-8 and drop the rest */
	for (i = 0; i < size;) {
		size_t k;

		for (k = 1; k <= 4 && i + k <= size; k++)
			if (kr_mime_utf8_valid((const char *)data + i, k))
				break;
		if (k <= 4 && i + k <= size) {
			check(kr_buf_append(&in, data + i, k) == 0);
			i += k;
		} else {
			i++;
		}
	}
	left = kr_jis_fix(in.data ? in.data : "", in.len, true, &fixed, NULL,
	                  NULL);
	(void)kr_jis_lint("f.md", in.data ? in.data : "", in.len, &lint, NULL);
	if (left == 0) {
		check(kr_mime_jis_body(&out, fixed.data, fixed.len, true, &max) ==
		      0);
		check_7bit(&out);
		kr_buf_reset(&out);
		check(kr_mime_jis_body(&out, fixed.data, fixed.len, false,
		                       NULL) == 0);
		check_7bit(&out);
		kr_buf_reset(&out);
		/* encoded words: only for text without controls */
		for (i = 0; i < fixed.len; i++)
			if ((unsigned char)fixed.data[i] < 0x20 ||
			    fixed.data[i] == 0x7f)
				break;
		if (i == fixed.len && fixed.len > 0) {
			check(kr_mime_encode_words_jis(&out, fixed.data,
			                               fixed.len, &col,
			                               &err) == 0);
			check_7bit(&out);
		}
	}
	kr_buf_fini(&in);
	kr_buf_fini(&fixed);
	kr_buf_fini(&out);
	kr_buf_fini(&lint);
	return 0;
}
