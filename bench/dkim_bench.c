/* dkim_bench — what DKIM signing adds to each message on one core: the
 * report config/sample-report.md composed per subscriber (the baseline,
 * kr_compose_report_cached as the delivery worker does it), then the same
 * with kr_dkim_prepend using Ed25519, RSA-2048 and both. CPU time of one
 * thread, so per core.
 * With PORT, also the delivery pipeline: WORKERS threads each composing,
 * signing and sending batches of 100 through the SMTP transport (libesmtp,
 * pipelining, TCP_NODELAY) to a sink on 127.0.0.1:PORT; wall-clock
 * messages per second with and without signing.
 * usage: dkim_bench REPORT.md COUNT TMPDIR [PORT [WORKERS [ROUNDS]]] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "compose.h"
#include "config.h"
#include "dkim.h"
#include "err.h"
#include "log.h"
#include "report.h"
#include "store.h"
#include "token.h"
#include "transport.h"
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

static double
wall_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define BATCH 100

struct worker {
	pthread_t th;
	const struct kr_config *cfg;
	const struct kr_compose_cache *cache;
	const struct kr_keyring *ring;
	const struct kr_dkim *dkim;
	size_t first, n, sent;
	int failed;
};

static void
count_done(void *ctx, struct kr_msg *m)
{
	struct worker *w = ctx;

	if (m->result == KR_SEND_OK)
		w->sent++;
}

/* One delivery worker: compose (and sign) a batch, send it, again. */
static void *
worker_run(void *arg)
{
	struct worker *w = arg;
	struct kr_transport *t = NULL;
	struct kr_buf bufs[BATCH];
	struct kr_msg msgs[BATCH];
	char env[BATCH][256], rcpt[BATCH][64];
	struct kr_err err = {0};
	struct kr_claim cl;
	size_t i, k, b;

	for (k = 0; k < BATCH; k++)
		kr_buf_init(&bufs[k], 0);
	if (kr_transport_smtp_ops.create(w->cfg, &t, &err) < 0) {
		fprintf(stderr, "dkim_bench: %s\n", err.msg);
		w->failed = 1;
		goto out;
	}
	memset(&cl, 0, sizeof(cl));
	snprintf(cl.list_id, sizeof(cl.list_id), "sips-report");
	cl.report_id = 42;
	for (i = 0; i < w->n; i += b) {
		b = w->n - i < BATCH ? w->n - i : BATCH;
		for (k = 0; k < b; k++) {
			cl.subscriber_id = (int64_t)(w->first + i + k) + 1;
			snprintf(rcpt[k], sizeof(rcpt[k]),
			         "reader%zu@example.org", w->first + i + k);
			snprintf(cl.email, sizeof(cl.email), "%s", rcpt[k]);
			kr_buf_reset(&bufs[k]);
			if (kr_compose_report_cached(
			        w->cache, &cl, NULL, w->ring, 1764115200,
			        &bufs[k], env[k], &err) < 0 ||
			    (w->dkim != NULL &&
			     kr_dkim_prepend(w->dkim, &bufs[k], 1764115200,
			                     &err) < 0)) {
				fprintf(stderr, "dkim_bench: %s\n", err.msg);
				w->failed = 1;
				goto out;
			}
			memset(&msgs[k], 0, sizeof(msgs[k]));
			msgs[k].id = (int64_t)k;
			msgs[k].mail_from = env[k];
			msgs[k].rcpt = rcpt[k];
			msgs[k].data = bufs[k].data;
			msgs[k].len = bufs[k].len;
		}
		if (kr_transport_smtp_ops.send(t, msgs, b, count_done, w,
		                               &err) < 0) {
			fprintf(stderr, "dkim_bench: send: %s\n", err.msg);
			w->failed = 1;
			goto out;
		}
	}
out:
	if (t != NULL)
		kr_transport_smtp_ops.destroy(&t);
	for (k = 0; k < BATCH; k++)
		kr_buf_fini(&bufs[k]);
	return NULL;
}

/* Wall-clock messages per second of n messages over nw workers. */
static double
pipeline(const struct kr_config *cfg, const struct kr_compose_cache *cache,
         const struct kr_keyring *ring, const struct kr_dkim *dkim, size_t n,
         size_t nw, double *cpu_us_out)
{
	struct worker w[16];
	size_t i, sent = 0;
	double t0, c0;

	memset(w, 0, sizeof(w));
	t0 = wall_now();
	c0 = cpu_now();
	for (i = 0; i < nw; i++) {
		w[i] = (struct worker){.cfg = cfg,
		                       .cache = cache,
		                       .ring = ring,
		                       .dkim = dkim,
		                       .first = i * (n / nw),
		                       .n = n / nw};
		if (pthread_create(&w[i].th, NULL, worker_run, &w[i]) != 0)
			exit(1);
	}
	for (i = 0; i < nw; i++) {
		pthread_join(w[i].th, NULL);
		if (w[i].failed)
			exit(1);
		sent += w[i].sent;
	}
	if (sent != n / nw * nw) {
		fprintf(stderr, "dkim_bench: %zu of %zu sent\n", sent, n);
		exit(1);
	}
	/* All threads of this process: compose, sign, libesmtp. */
	*cpu_us_out = (cpu_now() - c0) * 1e6 / (double)sent;
	return (double)sent / (wall_now() - t0);
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
	kr_log_set_level(KR_LOG_WARN); /* no line per SMTP batch */
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
			                    1764115200 + (int64_t)i,
			                    &err) < 0) {
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

	printf("messages=%zu message_bytes=%zu dkim_fields_bytes_both=%zu\n", n,
	       bytes / (n ? n : 1), sig_bytes / (n ? n : 1));
	/* Signing alone, kr_dkim_sign on one message: the composed one and
	 * a 10 KB one (its header block, a 10 KB base64 body). */
	{
		struct kr_buf m10, sig;
		const char *hend;
		size_t k, sizes[2];
		const char *msgs[2];

		kr_buf_reset(&out);
		cl.subscriber_id = 1;
		if (kr_compose_report_cached(cache, &cl, NULL, ring, 1764115200,
		                             &out, env, &err) < 0)
			return 1;
		kr_buf_init(&m10, 0);
		kr_buf_init(&sig, 0);
		hend = strstr(out.data, "\r\n\r\n");
		if (hend == NULL ||
		    kr_buf_append(&m10, out.data,
		                  (size_t)(hend - out.data) + 4) < 0)
			return 1;
		while (m10.len < 10240)
			if (kr_buf_puts(&m10, "44K744Kt44Ol44Oq44OG44Kj44Os44Od"
			                      "44O844OIIDIwMjblubQxMeaciOWPt++8"
			                      "muODjeODg+ODiA==\r\n") < 0)
				return 1;
		msgs[0] = m10.data;
		sizes[0] = m10.len;
		msgs[1] = out.data;
		sizes[1] = out.len;
		for (k = 0; k < 2; k++)
			for (r = 1; r < 4; r++) {
				t0 = cpu_now();
				for (i = 0; i < n; i++) {
					kr_buf_reset(&sig);
					if (kr_dkim_sign(runs[r].dkim, msgs[k],
					                 sizes[k], 1764115200,
					                 &sig, &err) < 0)
						return 1;
				}
				printf("sign only, %5zu-byte message, %-6s "
				       "%7.1f us/msg\n",
				       sizes[k],
				       r == 1   ? "Ed25519"
				       : r == 2 ? "RSA"
				                : "both",
				       (cpu_now() - t0) * 1e6 / (double)n);
			}
		kr_buf_fini(&m10);
		kr_buf_fini(&sig);
	}
	for (r = 0; r < KR_NELEM(runs); r++) {
		double base = (runs[0].us + runs[4].us) / 2,
		       add = runs[r].us - base;

		printf("%-30s %8.1f us/msg %8.0f msgs/cpu-s", runs[r].name,
		       runs[r].us, 1e6 / runs[r].us);
		if (runs[r].dkim != NULL)
			printf("  +%.1f us/msg; at 5000 msgs/s: %.1f%% of a "
			       "core, -%.1f%% on a saturated core",
			       add, add * 5000 / 1e4,
			       100 * (1 - 200 / (200 + add)));
		printf("\n");
	}
	if (argc > 4) {
		struct kr_cfg_relay relay = {0};
		char host[] = "127.0.0.1";
		size_t nw = argc > 5 ? strtoul(argv[5], NULL, 10) : 2, round;
		size_t rounds = argc > 6 ? strtoul(argv[6], NULL, 10) : 5;
		double rate[5] = {0}, cpu[5] = {0}, base, cbase, c;

		relay.host = host;
		relay.port = (unsigned)strtoul(argv[4], NULL, 10);
		relay.tls = KR_CFG_TLS_NONE;
		relay.pipelining = true; /* the config's default */
		cfg.relays = &relay;
		cfg.n_relays = 1;
		cfg.delivery.timeout = 60;
		if (nw < 1 || nw > 16)
			nw = 2;
		/* Interleaved rounds, best of each: the machine is shared. */
		for (round = 0; round < rounds; round++)
			for (r = 0; r < KR_NELEM(runs); r++) {
				double v = pipeline(&cfg, cache, ring,
				                    runs[r].dkim, n, nw, &c);

				if (v > rate[r])
					rate[r] = v;
				if (cpu[r] == 0 || c < cpu[r])
					cpu[r] = c;
			}
		base = (rate[0] + rate[4]) / 2;
		cbase = (cpu[0] + cpu[4]) / 2;
		printf("pipeline: %zu workers, batches of %d, SMTP to "
		       "127.0.0.1:%s, best of %zu interleaved rounds\n"
		       "  (wall msgs/s is noisy on a shared machine; kairan's "
		       "CPU per message is not)\n",
		       nw, BATCH, argv[4], rounds);
		for (r = 0; r < KR_NELEM(runs); r++)
			printf("%-30s %8.0f msgs/s %+6.1f%%   %6.1f us CPU/msg "
			       "%+6.1f%%   CPU-bound: %6.0f msgs/s per core\n",
			       runs[r].name, rate[r],
			       100 * (rate[r] - base) / base, cpu[r],
			       100 * (cpu[r] - cbase) / cbase, 1e6 / cpu[r]);
	}
	kr_compose_cache_free(&cache);
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
