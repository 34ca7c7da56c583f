/* csv.h — a streaming RFC 4180 reader and the matching field writer.
 * Reads quoted fields, doubled quotes, CRLF or LF (or a lone CR) line
 * ends, newlines inside quoted fields and a leading UTF-8 BOM, one record
 * at a time, never the whole file. Empty lines are skipped. */
#ifndef KR_CSV_H
#define KR_CSV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "common.h"

struct kr_buf;
struct kr_err;
struct kr_csv;

/* Longest field and most fields in one record; longer input is an error
 * for that record. */
#define KR_CSV_FIELD_MAX 65536
#define KR_CSV_FIELDS_MAX 256

/* Reads from f (not closed by kr_csv_free). Never NULL. */
struct kr_csv *kr_csv_new(FILE *f);
void kr_csv_free(struct kr_csv **c);
/* With on, a record is one physical line: a quoted field still open at
 * the line's end is an error reported at that line, and reading goes on
 * with the next line (so a stray quote costs one row, not every row up to
 * the next quote). Off by default (RFC 4180: newlines in quoted fields). */
void kr_csv_set_one_line(struct kr_csv *c, bool on);
/* Reads the next record: 1 read, 0 end of input, -1 a malformed record
 * (err says what; kr_csv_line where; the reader has skipped to the next
 * line, so the caller may go on reading) or a read error (KR_ERR_IO).
 * Fields are valid until the next call. */
KR_NODISCARD int kr_csv_read(struct kr_csv *c, struct kr_err *err);
/* The current record: number of fields and field i (NUL-terminated,
 * borrowed; a field holding NUL bytes is cut there; "" past the end). */
size_t kr_csv_nfields(const struct kr_csv *c);
const char *kr_csv_field(const struct kr_csv *c, size_t i);
/* Line (1-based) where the current record started, or where the problem
 * of a failed read was found. */
size_t kr_csv_line(const struct kr_csv *c);
/* Appends s as one field, quoted when it holds a comma, a quote, CR or
 * LF, starts or ends with a space or starts with a BOM. Returns 0, or -1
 * past b's cap. */
KR_NODISCARD int kr_csv_put_field(struct kr_buf *b, const char *s);

#endif
