/* dkim_bench — what DKIM signing adds to each message on one core: the
 * report config/sample-report.md composed per subscriber (the baseline,
 * kr_compose_report_cached as the delivery worker does it), then the same
 * with kr_dkim_prepend using Ed25519, RSA-2048 and both. CPU time of one
 * thread, so per core.
 * usage: dkim_bench REPORT.md COUNT TMPDIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "compose.h"
#include "config.h"
#include "dkim.h"
#include "err.h"
#include "report.h"
#include "store.h"
#include "token.h"
#include "xmem.h"

static double
cpu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *
slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *p;
	long n;

	if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0 || (p = malloc((size_t)n + 1)) == NULL ||
	    fread(p, 1, (size_t)n, f) != (size_t)n) {
		perror(path);
		exit(2);
	}
	p[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return p;
}

struct run {
	const char *name;
	struct kr_dkim *dkim; /* NULL: compose only */
	double us;            /* CPU microseconds per message */
};

int
main(int argc, char **argv)
{
	char id[] = "sips-report", name[] = "SIPS セキュリティレポート";
	char from[] = "SIPS Security Report <report@news.example.jp>";
	char from_name[] = "SIPS Security Report";
	char from_addr[] = "report@news.example.jp", lang[] = "ja";
	char footer[] = "株式会社Example 東京都千代田区… / 配信停止: "
	                "{{unsubscribe_url}}\n";
	char url[] = "https://news.example.jp", bounce[] = "bounces.example.jp";
	char reply[] = "info@example.jp";
	struct kr_cfg_list list = {0};
	struct kr_config cfg = {0};
	struct kr_report *rep = NULL;
	struct kr_report_row row;
	struct kr_compose_cache *cache;
	struct kr_keyring *ring = NULL;
	struct kr_err err = {0};
	struct kr_claim cl;
	struct kr_buf out;
	struct run runs[5] = {{"compose only (baseline)", NULL, 0},
	                      {"compose + DKIM Ed25519", NULL, 0},
	                      {"compose + DKIM RSA-2048", NULL, 0},
	                      {"compose + DKIM both", NULL, 0},
	                      {"compose (again, noise check)", NULL, 0}};
	char env[256], *src, *rsa, *ed, *keyfile;
	size_t len, i, n, r, bytes = 0, sig_bytes = 0;
	double t0;

	if (argc < 4) {
		fprintf(stderr, "usage: dkim_bench REPORT.md COUNT TMPDIR\n");
		return 2;
	}
	n = strtoul(argv[2], NULL, 10);
	rsa = kr_xasprintf("%s/b-rsa.key", argv[3]);
	ed = kr_xasprintf("%s/b-ed25519.key", argv[3]);
	keyfile = kr_xasprintf("%s/token.key", argv[3]);
	if (kr_dkim_keygen(argv[3], "b", &err) < 0 ||
	    kr_dkim_new("news.example.jp", NULL, NULL, "b-ed25519", ed,
	                &runs[1].dkim, &err) < 0 ||
	    kr_dkim_new("news.example.jp", "b-rsa", rsa, NULL, NULL,
	                &runs[2].dkim, &err) < 0 ||
	    kr_dkim_new("news.example.jp", "b-rsa", rsa, "b-ed25519", ed,
	                &runs[3].dkim, &err) < 0) {
		fprintf(stderr, "dkim_bench: %s\n", err.msg);
		return 1;
	}
	list.id = id;
	list.name = name;
	list.from = from;
	list.from_name = from_name;
	list.from_addr = from_addr;
	list.reply_to = reply;
	list.language = lang;
	list.archive = true;
	list.footer = footer;
	cfg.public_url = url;
	cfg.lists = &list;
	cfg.n_lists = 1;
	cfg.delivery.bounce_domain = bounce;
	src = slurp(argv[1], &len);
	if (kr_report_parse(&cfg, argv[1], src, len, &rep, &err) < 0 ||
	    kr_token_keyring_load(keyfile, 1, &ring, &err) < 0) {
		fprintf(stderr, "dkim_bench: %s\n", err.msg);
		return 1;
	}
	memset(&row, 0, sizeof(row));
	row.id = 42;
	snprintf(row.list_id, sizeof(row.list_id), "%s", id);
	row.subject = rep->subject;
	row.preheader = rep->preheader;
	row.text = rep->text;
	row.html = rep->html;
	kr_buf_init(&out, 0);
	memset(&cl, 0, sizeof(cl));
	snprintf(cl.list_id, sizeof(cl.list_id), "%s", id);
	cl.report_id = 42;

	cache = kr_compose_prepare(&cfg, &list, &row);
	for (r = 0; r < KR_NELEM(runs); r++) {
		t0 = cpu_now();
		for (i = 0; i < n; i++) {
			size_t before;

			cl.subscriber_id = (int64_t)i + 1;
			snprintf(cl.email, sizeof(cl.email),
			         "reader%zu@example.org", i);
			kr_buf_reset(&out);
			if (kr_compose_report_cached(cache, &cl, NULL, ring,
			                             1764115200 + (int64_t)i,
			                             &out, env, &err) < 0) {
				fprintf(stderr, "dkim_bench: %s\n", err.msg);
				return 1;
			}
			before = out.len;
			if (runs[r].dkim != NULL &&
			    kr_dkim_prepend(runs[r].dkim, &out,
			                    1764115200 + (int64_t)i, &err) < 0) {
				fprintf(stderr, "dkim_bench: %s\n", err.msg);
				return 1;
			}
			if (r == 0)
				bytes += out.len;
			if (r == 3)
				sig_bytes += out.len - before;
		}
		runs[r].us = (cpu_now() - t0) * 1e6 / (double)(n ? n : 1);
	}
	kr_compose_cache_free(&cache);

	printf("messages=%zu message_bytes=%zu dkim_fields_bytes_both=%zu\n",
	       n, bytes / (n ? n : 1), sig_bytes / (n ? n : 1));
	for (r = 0; r < KR_NELEM(runs); r++) {
		double base = (runs[0].us + runs[4].us) / 2, add = runs[r].us - base;

		printf("%-30s %8.1f us/msg %8.0f msgs/cpu-s", runs[r].name,
		       runs[r].us, 1e6 / runs[r].us);
		if (runs[r].dkim != NULL)
			printf("  +%.1f us/msg; at 5000 msgs/s: %.1f%% of a "
			       "core, -%.1f%% on a saturated core",
			       add, add * 5000 / 1e4,
			       100 * (1 - 200 / (200 + add)));
		printf("\n");
	}
	for (r = 1; r < 4; r++)
		kr_dkim_free(&runs[r].dkim);
	kr_buf_fini(&out);
	kr_token_keyring_free(&ring);
	kr_report_free(&rep);
	free(src);
	free(rsa);
	free(ed);
	free(keyfile);
	return 0;
}
