/* bounce_bench.c — kr_bounce_parse throughput on the fixtures of
 * tests/data/bounces and on 10 MB of binary (the input cap), one core.
 * Usage: bounce_bench DIR N */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bounce.h"
#include "err.h"

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *
slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *b;
	long n;

	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	b = malloc((size_t)n + 1);
	if (b == NULL || fread(b, 1, (size_t)n, f) != (size_t)n) {
		fclose(f);
		free(b);
		return NULL;
	}
	fclose(f);
	*len = (size_t)n;
	return b;
}

int
main(int argc, char **argv)
{
	struct kr_bounce b;
	struct kr_err err = {0};
	char *msgs[64], path[1024];
	size_t lens[64], n = 0, i, total = 0;
	long runs = argc > 2 ? atol(argv[2]) : 100000, r;
	struct dirent *de;
	DIR *d;
	double t0, t;
	char *big;
	size_t big_len = KR_BOUNCE_MAX_INPUT;
	unsigned x = 1;

	if (argc < 2 || (d = opendir(argv[1])) == NULL)
		return 2;
	while ((de = readdir(d)) != NULL && n < 64) {
		if (strstr(de->d_name, ".eml") == NULL)
			continue;
		snprintf(path, sizeof(path), "%s/%s", argv[1], de->d_name);
		if ((msgs[n] = slurp(path, &lens[n])) != NULL)
			total += lens[n++];
	}
	closedir(d);
	t0 = now();
	for (r = 0; r < runs; r++)
		for (i = 0; i < n; i++)
			if (kr_bounce_parse(msgs[i], lens[i], NULL, &b, &err) < 0)
				return 1;
	t = now() - t0;
	printf("fixtures: %zu messages (%zu bytes), %ld rounds: %.0f "
	       "messages/s, %.1f MB/s\n",
	    n, total, runs, (double)runs * (double)n / t,
	    (double)runs * (double)total / t / 1e6);
	big = malloc(big_len);
	if (big == NULL)
		return 1;
	for (i = 0; i < big_len; i++) {
		x = x * 1103515245u + 12345u;
		big[i] = (char)(x >> 16);
	}
	t0 = now();
	for (r = 0; r < 20; r++)
		if (kr_bounce_parse(big, big_len, NULL, &b, &err) < 0)
			return 1;
	t = (now() - t0) / 20;
	printf("10 MB of binary: %.1f ms per message\n", t * 1e3);
	/* A DSN returning a 10 MB message: every line of it is walked. */
	{
		static const char head[] =
		    "From: MAILER-DAEMON@mx.example.net\n"
		    "Content-Type: multipart/report; "
		    "report-type=delivery-status; boundary=\"B\"\n\n"
		    "--B\nContent-Type: message/delivery-status\n\n"
		    "Reporting-MTA: dns; mx.example.net\n\n"
		    "Final-Recipient: rfc822; x@example.net\nAction: failed\n"
		    "Status: 5.1.1\n\n--B\nContent-Type: message/rfc822\n\n"
		    "Return-Path: <bounces+"
		    "XXTOKENXXTOKENXXTOKENXXTOKENXXTOKENXXTOKENXX0001"
		    "@bounces.example.jp>\n\n";
		size_t o = sizeof(head) - 1;

		memcpy(big, head, o);
		for (; o + 78 < big_len - 8; o += 77) {
			memset(big + o, 'A' + (int)(o % 26), 76);
			big[o + 76] = '\n';
		}
		memcpy(big + o, "\n--B--\n", 7);
		o += 7;
		t0 = now();
		for (r = 0; r < 20; r++)
			if (kr_bounce_parse(big, o, NULL, &b, &err) < 0 ||
			    b.kind != KR_BOUNCE_HARD)
				return 1;
		t = (now() - t0) / 20;
		printf("DSN returning a 10 MB message: %.1f ms per message\n",
		    t * 1e3);
	}
	for (i = 0; i < n; i++)
		free(msgs[i]);
	free(big);
	return 0;
}
