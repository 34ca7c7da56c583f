/* mime_dump — composes one message with lib/mime and writes it to stdout,
 * for test_mime_parse.py (built by the test itself against libkairan.a).
 * usage: mime_dump SUBJECT FROM_NAME TEXT_FILE HTML_FILE SPLIT [LIST_NAME]
 * The first SPLIT bytes of each body go through a prepared part, the rest
 * as the per-message tail, so both paths are exercised. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "err.h"
#include "mime.h"

static char *
slurp(const char *path, size_t *len_out)
{
	FILE *f = fopen(path, "rb");
	char *p = NULL;
	long n;

	if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0) {
		perror(path);
		exit(2);
	}
	p = malloc((size_t)n + 1);
	if (p == NULL || fread(p, 1, (size_t)n, f) != (size_t)n) {
		perror(path);
		exit(2);
	}
	p[n] = '\0';
	fclose(f);
	*len_out = (size_t)n;
	return p;
}

int
main(int argc, char **argv)
{
	struct kr_mime_msg m = {0};
	struct kr_mime_part *tp = NULL, *hp = NULL;
	struct kr_buf out;
	struct kr_err err = {0};
	size_t tl, hl, split, ts, hs;
	char *text, *html;
	int r;

	if (argc < 6) {
		fprintf(stderr, "usage: mime_dump SUBJECT FROM_NAME TEXT HTML "
		                "SPLIT [LIST_NAME]\n");
		return 2;
	}
	text = slurp(argv[3], &tl);
	html = slurp(argv[4], &hl);
	split = strtoul(argv[5], NULL, 10);
	ts = split < tl ? split : tl;
	hs = split < hl ? split : hl;
	tp = kr_mime_part_new(text, ts);
	hp = kr_mime_part_new(html, hs);
	m.from_name = argv[2];
	m.from_addr = "report@news.example.jp";
	m.to_addr = "reader@example.org";
	m.reply_to = "info@example.jp";
	m.subject = argv[1];
	m.list_name = argc > 6 ? argv[6] : "SIPS セキュリティレポート";
	m.list_id = "sips-report.news.example.jp";
	m.unsub_url = "https://news.example.jp/unsubscribe?t=AAECAwQFBgcICQ";
	m.unsub_mailto = "unsubscribe@news.example.jp";
	m.one_click = true;
	m.bulk = true;
	m.date = 1764115200;
	m.text = tp;
	m.text_tail = text + ts;
	m.text_tail_len = tl - ts;
	m.html = hp;
	m.html_tail = html + hs;
	m.html_tail_len = hl - hs;
	kr_buf_init(&out, 0);
	r = kr_mime_compose(&m, &out, &err);
	if (r == 0)
		fwrite(out.data, 1, out.len, stdout);
	else
		fprintf(stderr, "mime_dump: %s\n", err.msg);
	kr_buf_fini(&out);
	kr_mime_part_free(&tp);
	kr_mime_part_free(&hp);
	free(text);
	free(html);
	return r == 0 ? 0 : 1;
}
