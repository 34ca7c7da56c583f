/* smtp_bench.c — drives kairan's SMTP transport (lib/transport_smtp.c,
 * libesmtp) against a sink on loopback, the way the delivery workers do:
 * C threads, each with its own transport, each send() one SMTP session of
 * BATCH messages with one recipient each. No composition and no store:
 * this measures the transport alone. Built and run by bench/smtp.sh.
 *
 * usage: smtp_bench -p PORT -n MESSAGES -c SESSIONS -f MESSAGE.eml
 *                   [-b BATCH] [-D] [-w MICROSECONDS]
 *   -b  messages per session (default 100, delivery.batch's default)
 *   -D  leave Nagle on (no TCP_NODELAY), to show what it costs
 *   -w  the done callback sleeps this long per message, standing in for
 *       kairand recording the outcome in the store (default 0)
 * Prints one line of key=value pairs; exits 1 unless every message got a
 * 2xx. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "err.h"
#include "log.h"
#include "transport_smtp.h"
#include "xmem.h"

struct worker {
	pthread_t th;
	const struct kr_config *cfg;
	const char *data;
	size_t len;
	size_t first, count, batch;
	size_t ok, bad;
};

static long done_wait_us;

static void
on_done(void *ctx, struct kr_msg *msg)
{
	struct worker *w = ctx;

	if (done_wait_us > 0) {
		struct timespec ts = {done_wait_us / 1000000,
		                      (done_wait_us % 1000000) * 1000};

		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
	}

	if (msg->result == KR_SEND_OK)
		w->ok++;
	else
		w->bad++;
}

static void *
run(void *arg)
{
	struct worker *w = arg;
	const struct kr_transport_ops *ops = &kr_transport_smtp_ops;
	struct kr_transport *t = NULL;
	struct kr_err err = {0};
	struct kr_msg *msgs = kr_xcalloc(w->batch, sizeof(*msgs));
	char(*rcpt)[64] = kr_xcalloc(w->batch, sizeof(*rcpt));
	size_t done = 0, i, n;

	if (ops->create(w->cfg, &t, &err) != 0) {
		fprintf(stderr, "smtp_bench: %s\n", err.msg);
		w->bad = w->count;
		goto out;
	}
	while (done < w->count) {
		n = w->count - done < w->batch ? w->count - done : w->batch;
		for (i = 0; i < n; i++) {
			memset(&msgs[i], 0, sizeof(msgs[i]));
			snprintf(rcpt[i], sizeof(rcpt[i]),
			         "sub%07zu@example.net", w->first + done + i);
			msgs[i].id = (int64_t)(w->first + done + i);
			msgs[i].mail_from = "bounces@news.example.jp";
			msgs[i].rcpt = rcpt[i];
			msgs[i].data = w->data;
			msgs[i].len = w->len;
		}
		if (ops->send(t, msgs, n, on_done, w, &err) != 0)
			fprintf(stderr, "smtp_bench: send: %s\n", err.msg);
		done += n;
	}
out:
	ops->destroy(&t);
	free(msgs);
	free(rcpt);
	return NULL;
}

/* The message with CRLF line ends (newsletter_msg.py writes LF). */
static char *
load(const char *path, size_t *len_out)
{
	FILE *fp = fopen(path, "rb");
	char *out = NULL;
	size_t n = 0, cap = 0;
	int c, prev = 0;

	if (fp == NULL)
		return NULL;
	while ((c = getc(fp)) != EOF) {
		if (n + 3 > cap) {
			cap = cap ? cap * 2 : 16384;
			out = kr_xrealloc(out, cap);
		}
		if (c == '\n' && prev != '\r')
			out[n++] = '\r';
		out[n++] = (char)c;
		prev = c;
	}
	fclose(fp);
	if (out == NULL)
		return NULL;
	out[n] = '\0';
	*len_out = n;
	return out;
}

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
	struct kr_config cfg;
	struct kr_cfg_relay relay;
	struct worker *w;
	struct rusage ru;
	const char *file = NULL;
	size_t total = 20000, sessions = 1, batch = 100, len = 0, i, ok = 0,
	       bad = 0;
	int port = 0, opt, nodelay = 1;
	char *data;
	double t0, t1, cpu;

	while ((opt = getopt(argc, argv, "p:n:c:f:b:Dw:")) != -1) {
		switch (opt) {
		case 'p':
			port = atoi(optarg);
			break;
		case 'n':
			total = strtoul(optarg, NULL, 10);
			break;
		case 'c':
			sessions = strtoul(optarg, NULL, 10);
			break;
		case 'f':
			file = optarg;
			break;
		case 'b':
			batch = strtoul(optarg, NULL, 10);
			break;
		case 'D':
			nodelay = 0;
			break;
		case 'w':
			done_wait_us = atol(optarg);
			break;
		default:
			fprintf(stderr, "usage: smtp_bench -p PORT -n N -c S "
			                "-f FILE [-b BATCH] [-D]\n");
			return 2;
		}
	}
	if (port <= 0 || file == NULL || sessions == 0 || batch == 0 ||
	    (data = load(file, &len)) == NULL) {
		fprintf(stderr, "smtp_bench: need -p PORT and a readable -f\n");
		return 2;
	}
	kr_log_set_level(KR_LOG_WARN);
	kr_transport_smtp_set_nodelay(nodelay);
	memset(&cfg, 0, sizeof(cfg));
	memset(&relay, 0, sizeof(relay));
	relay.host = (char *)(uintptr_t) "127.0.0.1";
	relay.port = (unsigned)port;
	relay.tls = KR_CFG_TLS_NONE;
	relay.pipelining = true; /* the config's default */
	cfg.delivery.transport = KR_CFG_TRANSPORT_SMTP;
	cfg.delivery.timeout = 60;
	cfg.relays = &relay;
	cfg.n_relays = 1;

	w = kr_xcalloc(sessions, sizeof(*w));
	t0 = now();
	for (i = 0; i < sessions; i++) {
		w[i].cfg = &cfg;
		w[i].data = data;
		w[i].len = len;
		w[i].batch = batch;
		w[i].count = total / sessions + (i < total % sessions);
		w[i].first = i == 0 ? 0 : w[i - 1].first + w[i - 1].count;
		if (pthread_create(&w[i].th, NULL, run, &w[i]) != 0) {
			fprintf(stderr, "smtp_bench: pthread_create failed\n");
			return 1;
		}
	}
	for (i = 0; i < sessions; i++) {
		pthread_join(w[i].th, NULL);
		ok += w[i].ok;
		bad += w[i].bad;
	}
	t1 = now();
	getrusage(RUSAGE_SELF, &ru);
	cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	      (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
	printf("messages=%zu ok=%zu failed=%zu sessions=%zu batch=%zu "
	       "nodelay=%d bytes=%zu wall_s=%.3f msgs_per_s=%.0f cpu_s=%.2f "
	       "cpu_us_per_msg=%.0f maxrss_kb=%ld\n",
	       total, ok, bad, sessions, batch, nodelay, len, t1 - t0,
	       (double)ok / (t1 - t0), cpu,
	       total ? cpu * 1e6 / (double)total : 0, ru.ru_maxrss);
	free(w);
	free(data);
	return ok == total ? 0 : 1;
}
