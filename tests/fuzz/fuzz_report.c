/* fuzz_report.c — libFuzzer harness for report intake (front matter,
 * Markdown, plain text) and MIME composition of what it accepts.
 *   clang -g -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Ilib \
 *     tests/fuzz/fuzz_report.c lib/report.c lib/mime.c lib/buf.c \
 *     lib/log.c lib/xmem.c lib/err.c lib/store.c -lyaml -lcmark \
 *     -lsodium -lsqlite3 -o fuzz_report
 *   ./fuzz_report -max_total_time=60 tests/fuzz/report/
 * Any input gives a report or a "fuzz.md:LINE:COL: " error, never a crash
 * or a leak; an accepted report always composes into a message with CRLF
 * lines of at most 998 octets. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "config.h"
#include "err.h"
#include "log.h"
#include "mime.h"
#include "report.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char id1[] = "sips-report", id2[] = "other";
static struct kr_cfg_list lists[2] = {{.id = id1},
                                      {.id = id2, .allow_html = true}};
static struct kr_config cfg = {.lists = lists, .n_lists = 2};

static void
check_message(const struct kr_buf *b)
{
	size_t i, col = 0;

	for (i = 0; i < b->len; i++) {
		if (b->data[i] == '\r') {
			if (i + 1 >= b->len || b->data[i + 1] != '\n')
				abort();
			i++;
			col = 0;
		} else if (b->data[i] == '\n' || ++col > 998) {
			abort();
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kr_report *rep = NULL;
	struct kr_err err = {0};
	struct kr_mime_msg m = {0};
	struct kr_buf b;

	kr_log_set_level(KR_LOG_ERR);
	if (kr_report_parse(&cfg, "fuzz.md", (const char *)data, size, &rep,
	                    &err) < 0) {
		if (rep != NULL || strncmp(err.msg, "fuzz.md:", 8) != 0)
			abort();
		return 0;
	}
	kr_buf_init(&b, 0);
	m.from_addr = "r@news.example.jp";
	m.to_addr = "x@example.org";
	m.subject = rep->subject;
	m.text_tail = rep->text;
	m.text_tail_len = strlen(rep->text);
	m.html_tail = rep->html;
	m.html_tail_len = strlen(rep->html);
	if (kr_mime_compose(&m, &b, &err) < 0)
		abort(); /* parse must refuse what mime would */
	check_message(&b);
	kr_buf_fini(&b);
	kr_report_free(&rep);
	return 0;
}
