/* compose_bench — messages composed per second of CPU time (one thread, so
 * per core) for one report, each with its own signed unsubscribe link and
 * VERP token: kr_compose_prepare once and kr_compose_report_cached per
 * message; kr_compose_report (which keeps a per-thread cache of the last
 * report); and, for comparison, a cold start per message (prepare, compose,
 * free).
 * usage: compose_bench REPORT.md COUNT KEYFILE [FIRST.eml] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "compose.h"
#include "config.h"
#include "err.h"
#include "report.h"
#include "store.h"
#include "token.h"

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
	char env[256], *src;
	size_t len, i, n, bytes = 0;
	double t0, t1, cached, plain, cold;

	if (argc < 4) {
		fprintf(stderr,
		        "usage: compose_bench REPORT.md COUNT KEYFILE\n");
		return 2;
	}
	n = strtoul(argv[2], NULL, 10);
	list.id = id;
	list.name = name;
	list.from = from;
	list.from_name = from_name;
	list.from_addr = from_addr;
	list.reply_to = reply;
	list.language = lang;
	list.archive = true;
	list.footer = footer;
	/* BENCH_CHARSET=iso-2022-jp: the same report for an ISO-2022-JP list */
	if (getenv("BENCH_CHARSET") &&
	    strcmp(getenv("BENCH_CHARSET"), "iso-2022-jp") == 0)
		list.charset = KR_CFG_CHARSET_ISO2022JP;
	cfg.public_url = url;
	cfg.lists = &list;
	cfg.n_lists = 1;
	cfg.delivery.bounce_domain = bounce;
	src = slurp(argv[1], &len);
	if (kr_report_parse(&cfg, argv[1], src, len, &rep, &err) < 0 ||
	    kr_token_keyring_load(argv[3], 1, &ring, &err) < 0) {
		fprintf(stderr, "compose_bench: %s\n", err.msg);
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

	t0 = cpu_now();
	cache = kr_compose_prepare(&cfg, &list, &row);
	for (i = 0; i < n; i++) {
		cl.subscriber_id = (int64_t)i + 1;
		snprintf(cl.email, sizeof(cl.email), "reader%zu@example.org",
		         i);
		kr_buf_reset(&out);
		if (kr_compose_report_cached(cache, &cl, NULL, ring,
		                             1764115200 + (int64_t)i, &out, env,
		                             &err) < 0) {
			fprintf(stderr, "compose_bench: %s\n", err.msg);
			return 1;
		}
		bytes += out.len;
		if (i == 0 && argc > 4) {
			FILE *f = fopen(argv[4], "wb");

			if (f == NULL ||
			    fwrite(out.data, 1, out.len, f) != out.len ||
			    fclose(f) != 0) {
				perror(argv[4]);
				return 1;
			}
		}
	}
	kr_compose_cache_free(&cache);
	t1 = cpu_now();
	cached = (double)n / (t1 - t0);

	t0 = cpu_now();
	for (i = 0; i < n; i++) {
		cl.subscriber_id = (int64_t)i + 1;
		kr_buf_reset(&out);
		if (kr_compose_report(&cfg, &list, &row, &cl, ring, 1764115200,
		                      &out, env, &err) < 0) {
			fprintf(stderr, "compose_bench: %s\n", err.msg);
			return 1;
		}
	}
	t1 = cpu_now();
	plain = (double)n / (t1 - t0);

	t0 = cpu_now();
	for (i = 0; i < n / 20 + 1; i++) {
		cl.subscriber_id = (int64_t)i + 1;
		kr_buf_reset(&out);
		cache = kr_compose_prepare(&cfg, &list, &row);
		if (kr_compose_report_cached(cache, &cl, NULL, ring, 1764115200,
		                             &out, env, &err) < 0) {
			fprintf(stderr, "compose_bench: %s\n", err.msg);
			return 1;
		}
		kr_compose_cache_free(&cache);
	}
	t1 = cpu_now();
	cold = (double)(n / 20 + 1) / (t1 - t0);

	printf("charset=%s\n", list.charset == KR_CFG_CHARSET_ISO2022JP
	                           ? "iso-2022-jp"
	                           : "utf-8");
	printf("report_source_bytes=%zu html_bytes=%zu message_bytes=%zu\n",
	       len, strlen(rep->html), bytes / (n ? n : 1));
	printf("prepared_cache_msgs_per_cpu_second=%.0f\n", cached);
	printf("kr_compose_report_msgs_per_cpu_second=%.0f\n", plain);
	printf("cold_msgs_per_cpu_second=%.0f\n", cold);
	kr_buf_fini(&out);
	kr_token_keyring_free(&ring);
	kr_report_free(&rep);
	free(src);
	return 0;
}
