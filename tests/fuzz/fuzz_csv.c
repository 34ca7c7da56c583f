/* fuzz_csv.c — libFuzzer harness for the CSV reader and writer.
 *   clang -g -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Ilib \
 *     tests/fuzz/fuzz_csv.c lib/csv.c lib/buf.c lib/err.c lib/xmem.c \
 *     -o fuzz_csv
 *   ./fuzz_csv -max_total_time=60 tests/fuzz/csv/
 * Any input must read to the end (errors resync, never loop or crash),
 * line numbers never go back, and every record read, written out again
 * with kr_csv_put_field, reads back field for field. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "csv.h"
#include "err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
round_trip(struct kr_csv *c)
{
	struct kr_buf b;
	struct kr_csv *c2;
	struct kr_err err = {0};
	FILE *f;
	size_t i, n = kr_csv_nfields(c);

	kr_buf_init(&b, 0);
	for (i = 0; i < n; i++) {
		if ((i && kr_buf_putc(&b, ',') < 0) ||
		    kr_csv_put_field(&b, kr_csv_field(c, i)) < 0)
			abort();
	}
	if (kr_buf_puts(&b, "\r\n") < 0)
		abort();
	if ((f = fmemopen(b.data, b.len, "r")) == NULL)
		abort();
	c2 = kr_csv_new(f);
	/* A record of one empty field is written as an empty line, which
	 * reads as no record. */
	if (n == 1 && kr_csv_field(c, 0)[0] == '\0') {
		if (kr_csv_read(c2, &err) != 0)
			abort();
	} else {
		if (kr_csv_read(c2, &err) != 1 || kr_csv_nfields(c2) != n)
			abort();
		for (i = 0; i < n; i++)
			if (strcmp(kr_csv_field(c, i), kr_csv_field(c2, i)) !=
			    0)
				abort();
	}
	kr_csv_free(&c2);
	fclose(f);
	kr_buf_fini(&b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kr_err err = {0};
	struct kr_csv *c;
	FILE *f;
	size_t last = 0, guard = 0;
	int r;

	if (size == 0)
		return 0;
	if ((f = fmemopen((void *)(uintptr_t)data, size, "r")) == NULL)
		return 0;
	c = kr_csv_new(f);
	/* odd sizes read one record per line (the import's mode) */
	kr_csv_set_one_line(c, size % 2 == 1);
	while ((r = kr_csv_read(c, &err)) != 0) {
		if (kr_csv_line(c) < last && r > 0)
			abort();
		last = kr_csv_line(c);
		if (r > 0)
			round_trip(c);
		if (++guard > size + 1)
			abort(); /* no progress */
	}
	kr_csv_free(&c);
	fclose(f);
	return 0;
}
