/* test_config.c — the YAML loader: defaults, value syntaxes, every error
 * class at its exact line and column, secrets, and the shipped files.
 * Run from the repository root (tests/run_tests.sh does). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "config_int.h"
#include "log.h"
#include "tz.h"

/* A valid config with lists last: tests append keys of lists[0] from
 * line 6 on. */
#define LBASE                                                                  \
	"public_url: https://news.example.jp\n"                                \
	"delivery: {transport: maildir, maildir: m}\n"                         \
	"lists:\n"                                                             \
	"  - id: a\n"                                                          \
	"    from: a@example.jp\n"

/* A valid config; tests append to it or write their own. 7 lines. */
#define BASE                                                                   \
	"public_url: https://news.example.jp\n"                                \
	"lists:\n"                                                             \
	"  - id: a\n"                                                          \
	"    from: a@example.jp\n"                                             \
	"delivery:\n"                                                          \
	"  transport: maildir\n"                                               \
	"  maildir: /tmp/kairan-mail\n"

static struct kr_config *
load_ok(const char *yaml)
{
	struct kr_config *cfg = NULL;
	char *errors = NULL;
	int r;

	r = kr_config_load_buf("t.yaml", yaml, strlen(yaml), &cfg, &errors);
	if (r != 0)
		fprintf(stderr, "unexpected errors:\n%s", errors);
	assert_int_equal(r, 0);
	assert_null(errors);
	assert_non_null(cfg);
	return cfg;
}

static char *
load_fail_len(const char *yaml, size_t len)
{
	struct kr_config *cfg = NULL;
	char *errors = NULL;

	assert_int_equal(kr_config_load_buf("t.yaml", yaml, len, &cfg, &errors),
	                 -1);
	assert_null(cfg);
	assert_non_null(errors);
	return errors;
}

static char *
load_fail(const char *yaml)
{
	return load_fail_len(yaml, strlen(yaml));
}

static size_t
count_lines(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		if (*s == '\n')
			n++;
	return n;
}

/* Asserts that some line of errors starts with prefix. */
static void
assert_line(const char *errors, const char *prefix)
{
	const char *p = errors;

	while (p != NULL && *p) {
		if (strncmp(p, prefix, strlen(prefix)) == 0)
			return;
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	fail_msg("no line starting with\n  %s\nin\n%s", prefix, errors);
}

/* Loads yaml, expects exactly one error line starting with prefix. */
static void
expect_one(const char *yaml, const char *prefix)
{
	char *e = load_fail(yaml);

	assert_line(e, prefix);
	if (count_lines(e) != 1)
		fail_msg("expected one error, got:\n%s", e);
	free(e);
}

static void
test_config_defaults(void **state)
{
	struct kr_config *cfg;
	const struct kr_cfg_list *l;

	(void)state;
	cfg = load_ok("public_url: https://news.example.jp/\n"
	              "lists:\n"
	              "  - id: a\n"
	              "    from: a@example.jp\n"
	              "smtp:\n"
	              "  - host: relay.example.jp\n");
	assert_string_equal(cfg->path, "t.yaml");
	assert_string_equal(cfg->database, "/var/lib/kairan/kairan.db");
	assert_string_equal(cfg->key_file, "/var/lib/kairan/token.key");
	assert_string_equal(cfg->public_url, "https://news.example.jp");
	assert_string_equal(cfg->http_listen, "127.0.0.1:8080");
	assert_string_equal(cfg->admin_listen, "127.0.0.1:8081");
	assert_int_equal(cfg->n_trusted_proxies, 0);
	assert_int_equal(cfg->http_ipv6_prefix, 64);
	assert_int_equal(cfg->http_header_timeout, 15);
	assert_null(cfg->outbox);
	assert_null(cfg->webhook);
	assert_int_equal(cfg->n_lists, 1);
	l = &cfg->lists[0];
	assert_string_equal(l->id, "a");
	assert_string_equal(l->name, "a");
	assert_string_equal(l->from, "a@example.jp");
	assert_string_equal(l->from_name, "");
	assert_string_equal(l->from_addr, "a@example.jp");
	assert_null(l->reply_to);
	assert_true(l->double_opt_in);
	assert_string_equal(l->language, "en");
	assert_false(l->archive);
	assert_false(l->allow_html);
	assert_null(l->footer);
	assert_null(l->unsubscribe_mailto);
	assert_int_equal(cfg->delivery.transport, KR_CFG_TRANSPORT_SMTP);
	assert_null(cfg->delivery.maildir);
	assert_int_equal(cfg->delivery.workers, 4);
	assert_true(cfg->delivery.rate == 0);
	assert_int_equal(cfg->delivery.n_per_domain, 0);
	assert_int_equal(cfg->delivery.n_retry, 5);
	assert_int_equal(cfg->delivery.retry[0], 300);
	assert_int_equal(cfg->delivery.retry[1], 900);
	assert_int_equal(cfg->delivery.retry[2], 3600);
	assert_int_equal(cfg->delivery.retry[3], 4 * 3600);
	assert_int_equal(cfg->delivery.retry[4], 12 * 3600);
	assert_int_equal(cfg->delivery.max_age, 3 * 86400);
	assert_null(cfg->delivery.bounce_domain);
	assert_int_equal(cfg->delivery.batch, 50);
	assert_int_equal(cfg->delivery.lease, 300);
	assert_int_equal(cfg->delivery.timeout, 300);
	assert_int_equal(cfg->n_relays, 1);
	assert_string_equal(cfg->relays[0].host, "relay.example.jp");
	assert_int_equal(cfg->relays[0].tls, KR_CFG_TLS_STARTTLS);
	assert_int_equal(cfg->relays[0].port, 587);
	assert_null(cfg->relays[0].ca_file);
	assert_null(cfg->relays[0].user);
	assert_null(cfg->relays[0].password);
	assert_true(cfg->relays[0].pipelining);
	assert_int_equal(cfg->log_level, KR_LOG_INFO);
	assert_ptr_equal(kr_config_list(cfg, "a"), l);
	assert_null(kr_config_list(cfg, "b"));
	kr_config_free(&cfg);
	assert_null(cfg);
	kr_config_free(&cfg); /* NULL is fine */
}

static void
test_config_relay_port_by_tls(void **state)
{
	struct kr_config *cfg;

	(void)state;
	cfg = load_ok("public_url: http://127.0.0.1:8080\n"
	              "lists: [{id: a, from: a@example.jp}]\n"
	              "smtp:\n"
	              "  - {host: 127.0.0.1, tls: none}\n"
	              "  - {host: '::1', tls: tls}\n"
	              "  - {host: relay.example.jp, tls: starttls}\n"
	              "  - {host: relay.example.jp, tls: tls, port: 2465, "
	              "pipelining: false}\n");
	assert_int_equal(cfg->n_relays, 4);
	assert_true(cfg->relays[2].pipelining);
	assert_false(cfg->relays[3].pipelining);
	assert_int_equal(cfg->relays[0].port, 25);
	assert_int_equal(cfg->relays[0].tls, KR_CFG_TLS_NONE);
	assert_int_equal(cfg->relays[1].port, 465);
	assert_string_equal(cfg->relays[1].host, "::1");
	assert_int_equal(cfg->relays[2].port, 587);
	assert_int_equal(cfg->relays[3].port, 2465);
	kr_config_free(&cfg);
}

static void
test_config_durations(void **state)
{
	struct kr_config *cfg;
	char *e;

	(void)state;
	cfg = load_ok(BASE "  retry: [30s, 5m, 1h, 3d, 45, 1h30m, 1w]\n"
	                   "  max_age: 2h\n"
	                   "  lease: 90\n"
	                   "  timeout: 1m\n");
	assert_int_equal(cfg->delivery.n_retry, 7);
	assert_int_equal(cfg->delivery.retry[0], 30);
	assert_int_equal(cfg->delivery.retry[1], 300);
	assert_int_equal(cfg->delivery.retry[2], 3600);
	assert_int_equal(cfg->delivery.retry[3], 3 * 86400);
	assert_int_equal(cfg->delivery.retry[4], 45);
	assert_int_equal(cfg->delivery.retry[5], 5400);
	assert_int_equal(cfg->delivery.retry[6], 7 * 86400);
	assert_int_equal(cfg->delivery.max_age, 7200);
	assert_int_equal(cfg->delivery.lease, 90);
	assert_int_equal(cfg->delivery.timeout, 60);
	kr_config_free(&cfg);

	/* An empty list means: no retry, fail on the first deferral. */
	cfg = load_ok(BASE "  retry: []\n");
	assert_int_equal(cfg->delivery.n_retry, 0);
	kr_config_free(&cfg);

	/*          1         2         3
	 * 123456789012345678901234567890123456 */
	e = load_fail(BASE "  retry: [1x, h, 1h30, -5, 1.5h, 0, 31d, 5m]\n");
	assert_line(e, "t.yaml:8:11: delivery.retry[0]: '1x' is not a "
	               "duration");
	assert_line(e, "t.yaml:8:15: delivery.retry[1]: 'h' is not");
	assert_line(e, "t.yaml:8:18: delivery.retry[2]: '1h30' is not");
	assert_line(e, "t.yaml:8:24: delivery.retry[3]: '-5' is not");
	assert_line(e, "t.yaml:8:28: delivery.retry[4]: '1.5h' is not");
	assert_line(e, "t.yaml:8:34: delivery.retry[5]: '0' is out of range");
	assert_line(e, "t.yaml:8:37: delivery.retry[6]: '31d' is out of "
	               "range");
	assert_int_equal(count_lines(e), 7);
	free(e);

	expect_one(
	    BASE "  max_age: 30s\n",
	    "t.yaml:8:12: delivery.max_age: '30s' is out of range, expected "
	    "a duration 1m..365d");
	expect_one(
	    BASE "  max_age: 99999999999999999999999d\n",
	    "t.yaml:8:12: delivery.max_age: '99999999999999999999999d' is "
	    "not a duration");
	expect_one(BASE "  timeout: 2h\n",
	           "t.yaml:8:12: delivery.timeout: '2h' is out of range");
}

static void
test_config_rates(void **state)
{
	struct kr_config *cfg;

	(void)state;
	cfg = load_ok(BASE "  rate: 50/s\n"
	                   "  per_domain:\n"
	                   "    Gmail.COM: { connections: 2, rate: 20/s }\n"
	                   "    a.example: { rate: 3000/h }\n"
	                   "    b.example: { rate: 120/m }\n"
	                   "    c.example: { rate: 8640/d }\n"
	                   "    d.example: { rate: 7 }\n"
	                   "    e.example: { rate: 0.5/s, connections: 1 }\n"
	                   "    f.example: { connections: 3 }\n");
	assert_true(cfg->delivery.rate == 50);
	assert_int_equal(cfg->delivery.n_per_domain, 7);
	assert_string_equal(cfg->delivery.per_domain[0].domain, "gmail.com");
	assert_int_equal(cfg->delivery.per_domain[0].connections, 2);
	assert_true(cfg->delivery.per_domain[0].rate == 20);
	assert_string_equal(cfg->delivery.per_domain[1].domain, "a.example");
	assert_int_equal(cfg->delivery.per_domain[1].connections, 0);
	assert_true(cfg->delivery.per_domain[1].rate > 0.8333 &&
	            cfg->delivery.per_domain[1].rate < 0.8334);
	assert_true(cfg->delivery.per_domain[2].rate == 2);
	assert_true(cfg->delivery.per_domain[3].rate == 0.1);
	assert_true(cfg->delivery.per_domain[4].rate == 7);
	assert_true(cfg->delivery.per_domain[5].rate == 0.5);
	assert_int_equal(cfg->delivery.per_domain[5].connections, 1);
	assert_true(cfg->delivery.per_domain[6].rate == 0);
	assert_int_equal(cfg->delivery.per_domain[6].connections, 3);
	kr_config_free(&cfg);

	expect_one(BASE "  rate: 50/x\n",
	           "t.yaml:8:9: delivery.rate: '50/x' is not a rate");
	expect_one(BASE "  rate: fast\n",
	           "t.yaml:8:9: delivery.rate: 'fast' is not a rate");
	expect_one(BASE "  rate: /s\n",
	           "t.yaml:8:9: delivery.rate: '/s' is not a rate");
	expect_one(
	    BASE "  per_domain:\n    a.example: {rate: 5/s/s}\n",
	    "t.yaml:9:23: delivery.per_domain.a.example.rate: '5/s/s' is not");
}

static void
test_config_from_forms(void **state)
{
	static const struct {
		const char *yaml, *name, *addr;
	} good[] = {
	    {"\"SIPS Security Report <report@news.example.jp>\"",
	     "SIPS Security Report", "report@news.example.jp"},
	    {"'\"Example, Inc.\" <news@example.jp>'", "Example, Inc.",
	     "news@example.jp"},
	    {"'\"Say \\\"hi\\\"\" <a@example.jp>'", "Say \"hi\"",
	     "a@example.jp"},
	    {"\"<a@example.jp>\"", "", "a@example.jp"},
	    {"a.b+c@example.jp", "", "a.b+c@example.jp"},
	    {"SIPS セキュリティ <a@example.jp>", "SIPS セキュリティ",
	     "a@example.jp"},
	    {"'\"a b\"@example.jp'", "", "\"a b\"@example.jp"},
	    {"a@[127.0.0.1]", "", "a@[127.0.0.1]"},
	};
	static const char *const bad[] = {
	    "Example, Inc <a@example.jp>", /* unquoted comma */
	    "a@",
	    "\"@example.jp\"",
	    "a b@example.jp",
	    "a..b@example.jp",
	    "Name <a@example.jp",
	    "Name a@example.jp>",
	    "a@-example.jp",
	    "a@exa_mple.jp",
	    "a@例え.jp",
	    "\"\\\"Name <a@example.jp>\"",
	};
	char yaml[512];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct kr_config *cfg;

		snprintf(yaml, sizeof(yaml),
		         "public_url: https://x.example\n"
		         "lists:\n"
		         "  - id: a\n"
		         "    from: %s\n"
		         "delivery: {transport: maildir, maildir: m}\n",
		         good[i].yaml);
		cfg = load_ok(yaml);
		assert_string_equal(cfg->lists[0].from_name, good[i].name);
		assert_string_equal(cfg->lists[0].from_addr, good[i].addr);
		kr_config_free(&cfg);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *e;

		snprintf(yaml, sizeof(yaml),
		         "public_url: https://x.example\n"
		         "lists:\n"
		         "  - id: a\n"
		         "    from: %s\n"
		         "delivery: {transport: maildir, maildir: m}\n",
		         bad[i]);
		e = load_fail(yaml);
		assert_line(e, "t.yaml:4:11: lists[0].from: ");
		assert_non_null(strstr(e, "expected \"Name <addr@domain>\""));
		assert_int_equal(count_lines(e), 1);
		free(e);
	}
}

/* A ja list must name its sender, postal address and contact
 * (特定電子メール法 Article 4): each missing field is reported at the
 * list's sender block, or the list when it has none. */
static void
test_config_ja_sender_required(void **state)
{
	static const char *const fields[] = {"name", "address", "contact"};
	static const char head[] =
	    "public_url: https://x.example\n"
	    "delivery: {transport: maildir, maildir: m}\n"
	    "lists:\n"
	    "  - id: a\n"
	    "    from: a@example.jp\n"
	    "    language: ja\n";
	char yaml[1024], want[512];
	size_t i, j;

	(void)state;
	for (i = 0; i < 3; i++) {
		/* the other two given */
		snprintf(yaml, sizeof(yaml), "%s    sender:\n", head);
		for (j = 0; j < 3; j++)
			if (j != i)
				snprintf(yaml + strlen(yaml),
				         sizeof(yaml) - strlen(yaml),
				         "      %s: x\n", fields[j]);
		snprintf(want, sizeof(want),
		         "t.yaml:8:7: lists[0].sender.%s: missing; a ja list "
		         "must show it in every mail (特定電子メール法, Act on "
		         "Regulation of Transmission of Specified Electronic "
		         "Mail, Article 4), expected ",
		         fields[i]);
		expect_one(yaml, want);
		/* or inherited from the top level */
		snprintf(yaml, sizeof(yaml),
		         "sender: {%s: top}\n%s    sender:\n", fields[i], head);
		for (j = 0; j < 3; j++)
			if (j != i)
				snprintf(yaml + strlen(yaml),
				         sizeof(yaml) - strlen(yaml),
				         "      %s: x\n", fields[j]);
		{
			struct kr_config *cfg = load_ok(yaml);

			kr_config_free(&cfg);
		}
	}
	/* no sender at all: three lines, at the list */
	snprintf(yaml, sizeof(yaml), "%s", head);
	{
		struct kr_config *cfg = NULL;
		char *e = NULL;

		assert_int_equal(
		    kr_config_load_buf("t.yaml", yaml, strlen(yaml), &cfg, &e),
		    -1);
		assert_line(e, "t.yaml:4:5: lists[0].sender.name: missing");
		assert_line(e, "t.yaml:4:5: lists[0].sender.address: missing");
		assert_line(e, "t.yaml:4:5: lists[0].sender.contact: missing");
		free(e);
	}
	/* an en list needs none of them */
	snprintf(yaml, sizeof(yaml), "%s", head);
	strcpy(strstr(yaml, "language: ja"), "language: en\n");
	{
		struct kr_config *cfg = load_ok(yaml);

		assert_null(cfg->lists[0].sender_name);
		kr_config_free(&cfg);
	}
	expect_one("public_url: https://x.example\n"
	           "delivery: {transport: maildir, maildir: m}\n"
	           "lists:\n"
	           "  - {id: a, from: a@example.jp, charset: sjis}\n",
	           "t.yaml:4:42: lists[0].charset: 'sjis' is not one of the "
	           "choices, expected utf-8 or iso-2022-jp");
}

/* timezone: the Date: zone; Asia/Tokyo for ja lists, UTC for others,
 * IANA names from the TZif files (DST included), fixed offsets; an
 * unknown one is an error at its position. */
static void
test_config_timezone(void **state)
{
	struct kr_config *cfg;

	(void)state;
	cfg = load_ok("public_url: https://x.example\n"
	              "delivery: {transport: maildir, maildir: m}\n"
	              "sender: {name: N, address: A, contact: C}\n"
	              "lists:\n"
	              "  - {id: ja, from: a@example.jp, language: ja}\n"
	              "  - {id: en, from: a@example.jp}\n"
	              "  - {id: ny, from: a@example.jp, timezone: "
	              "America/New_York}\n"
	              "  - {id: in, from: a@example.jp, timezone: '+05:30'}\n"
	              "  - {id: ut, from: a@example.jp, language: ja, "
	              "timezone: UTC}\n");
	assert_string_equal(cfg->lists[0].timezone, "Asia/Tokyo");
	assert_string_equal(cfg->lists[1].timezone, "UTC");
	/* 2026-11-26 00:00 UTC and 2026-07-01 00:00 UTC */
	assert_int_equal(kr_tz_offset(cfg->lists[0].tz, 1795651200), 32400);
	assert_int_equal(kr_tz_offset(cfg->lists[0].tz, 1782864000), 32400);
	assert_int_equal(kr_tz_offset(cfg->lists[1].tz, 1795651200), 0);
	assert_int_equal(kr_tz_offset(cfg->lists[2].tz, 1795651200), -18000);
	assert_int_equal(kr_tz_offset(cfg->lists[2].tz, 1782864000), -14400);
	/* before the zone's first transition (1883: local mean time) */
	assert_int_equal(kr_tz_offset(cfg->lists[2].tz, -3000000000LL), -17762);
	assert_int_equal(kr_tz_offset(cfg->lists[3].tz, 1795651200), 19800);
	assert_int_equal(kr_tz_offset(cfg->lists[4].tz, 1795651200), 0);
	kr_config_free(&cfg);
	expect_one("public_url: https://x.example\n"
	           "delivery: {transport: maildir, maildir: m}\n"
	           "lists:\n"
	           "  - id: a\n"
	           "    from: a@example.jp\n"
	           "    timezone: Asia/Tokio\n",
	           "t.yaml:6:15: lists[0].timezone: 'Asia/Tokio': unknown time "
	           "zone");
	expect_one(
	    "public_url: https://x.example\n"
	    "delivery: {transport: maildir, maildir: m}\n"
	    "lists:\n"
	    "  - {id: a, from: a@example.jp, timezone: ../../etc/passwd}\n",
	    "t.yaml:4:43: lists[0].timezone: '../../etc/passwd': not a "
	    "time zone name");
	expect_one("public_url: https://x.example\n"
	           "delivery: {transport: maildir, maildir: m}\n"
	           "lists:\n"
	           "  - {id: a, from: a@example.jp, timezone: '+25:00'}\n",
	           "t.yaml:4:43: lists[0].timezone: '+25:00': not a time zone");
}

static void
test_config_unknown_key(void **state)
{
	(void)state;
	expect_one(
	    BASE "  wrokers: 4\n",
	    "t.yaml:8:3: unknown key 'wrokers' in delivery (did you mean "
	    "'workers'?), expected one of: "
	    "transport, maildir, workers, rate, per_domain, retry, max_age, "
	    "bounce_domain, batch, lease, timeout\n");
	expect_one(
	    "colour: blue\n" BASE,
	    "t.yaml:1:1: unknown key 'colour' in the top level, expected one "
	    "of: database, key_file, host_id, public_url, http, admin, "
	    "outbox, webhook, sender, consent, lists, delivery, smtp, log, bounce, "
	    "doctor, dns, governor\n");
	expect_one(
	    BASE "lists2: []\n",
	    "t.yaml:8:1: unknown key 'lists2' in the top level (did you mean "
	    "'lists'?)");
	expect_one(
	    BASE "  Max_Age: 3d\n",
	    "t.yaml:8:3: unknown key 'Max_Age' in delivery (did you mean "
	    "'max_age'?)");
	/* A password in the file is not a key: not echoed either. */
	expect_one(
	    BASE "smtp:\n  - host: h.example\n    password: hunter2\n",
	    "t.yaml:10:5: unknown key 'password' in smtp[0], expected one "
	    "of: host, port, tls, ca_file, user, password_file, "
	    "pipelining\n");
}

static void
test_config_wrong_types(void **state)
{
	(void)state;
	expect_one(
	    BASE "  workers: [1, 2]\n",
	    "t.yaml:8:12: delivery.workers: expected a number 1..64, got a "
	    "list\n");
	expect_one(BASE "  retry: 5m\n",
	           "t.yaml:8:10: delivery.retry: expected a list of durations");
	expect_one(
	    BASE "  per_domain: [a.example]\n",
	    "t.yaml:8:15: delivery.per_domain: expected a mapping of domain");
	expect_one(
	    BASE "http: 127.0.0.1:8080\n",
	    "t.yaml:8:7: http: expected a mapping (key: value lines), got "
	    "text\n");
	expect_one(BASE "admin: {listen: {host: x}}\n",
	           "t.yaml:8:17: admin.listen: expected host:port like "
	           "127.0.0.1:8081, got a mapping\n");
	expect_one("public_url: https://x.example\n"
	           "lists:\n"
	           "  id: a\n"
	           "delivery: {transport: maildir, maildir: m}\n",
	           "t.yaml:3:3: lists: expected a list of lists");
	expect_one(BASE "http:\n  trusted_proxies: 127.0.0.1\n",
	           "t.yaml:9:20: http.trusted_proxies: expected a list of IP "
	           "addresses");
	expect_one(
	    BASE "http:\n  trusted_proxies: [[127.0.0.1]]\n",
	    "t.yaml:9:21: http.trusted_proxies[0]: expected an IP address, "
	    "got a list");
	expect_one(BASE "[a]: 1\n", "t.yaml:8:1: : a key is a list");
}

static void
test_config_out_of_range(void **state)
{
	(void)state;
	expect_one(
	    BASE "  workers: 0\n",
	    "t.yaml:8:12: delivery.workers: '0' is out of range, expected a "
	    "number 1..64\n");
	expect_one(BASE "  workers: 65\n",
	           "t.yaml:8:12: delivery.workers: '65' is out of range");
	expect_one(BASE "http: {ipv6_prefix: 129}\n",
	           "t.yaml:8:21: http.ipv6_prefix: '129' is out of range, "
	           "expected a prefix length 32..128\n");
	expect_one(BASE "http: {ipv6_prefix: 16}\n",
	           "t.yaml:8:21: http.ipv6_prefix: '16' is out of range");
	expect_one(BASE "http: {header_timeout: 10m}\n",
	           "t.yaml:8:24: http.header_timeout: '10m' is out of range, "
	           "expected a duration 1s..5m like 15s\n");
	expect_one(BASE "  workers: -1\n",
	           "t.yaml:8:12: delivery.workers: '-1' is not a whole number");
	expect_one(
	    BASE "  batch: 99999999999999999999\n",
	    "t.yaml:8:10: delivery.batch: '99999999999999999999' is not a "
	    "whole number");
	expect_one(
	    BASE "smtp: [{host: h.example, port: 0}]\n",
	    "t.yaml:8:32: smtp[0].port: '0' is out of range, expected a port "
	    "1..65535\n");
	expect_one(BASE "smtp: [{host: h.example, port: 65536}]\n",
	           "t.yaml:8:32: smtp[0].port: '65536' is out of range");
	expect_one(
	    BASE "  per_domain: {a.example: {connections: 65}}\n",
	    "t.yaml:8:41: delivery.per_domain.a.example.connections: '65' is "
	    "out of range, expected a number 0..64\n");
}

static void
test_config_missing_required(void **state)
{
	char *e;

	(void)state;
	/* At the parent mapping. */
	expect_one("# comment\n"
	           "lists:\n"
	           "  - id: a\n"
	           "    from: a@example.jp\n"
	           "delivery: {transport: maildir, maildir: m}\n",
	           "t.yaml:2:1: missing required key 'public_url', expected an "
	           "http(s) URL like https://news.example.jp\n");
	e = load_fail("public_url: https://x.example\n"
	              "lists:\n"
	              "  - id: a\n"
	              "  - from: b@example.jp\n"
	              "    name: B\n"
	              "delivery: {transport: maildir, maildir: m}\n");
	assert_line(e, "t.yaml:3:5: lists[0]: missing required key 'from', "
	               "expected \"Name <addr@domain>\"");
	assert_line(e, "t.yaml:4:5: lists[1]: missing required key 'id', "
	               "expected a list id");
	assert_int_equal(count_lines(e), 2);
	free(e);
	expect_one("public_url: https://x.example\n"
	           "delivery: {transport: maildir, maildir: m}\n",
	           "t.yaml:1:1: missing required key 'lists'");
	expect_one("public_url: https://x.example\n"
	           "lists: []\n"
	           "delivery: {transport: maildir, maildir: m}\n",
	           "t.yaml:2:8: lists: is empty, expected a list of lists");
	expect_one("public_url:\n"
	           "lists: [{id: a, from: a@example.jp}]\n"
	           "delivery: {transport: maildir, maildir: m}\n",
	           "t.yaml:1:12: public_url: is empty");
	/* Transport needs. */
	expect_one(
	    "public_url: https://x.example\n"
	    "lists: [{id: a, from: a@example.jp}]\n"
	    "delivery:\n"
	    "  transport: maildir\n",
	    "t.yaml:3:1: delivery: missing required key 'maildir', expected "
	    "a Maildir folder when transport is maildir\n");
	expect_one(
	    "public_url: https://x.example\n"
	    "lists: [{id: a, from: a@example.jp}]\n",
	    "t.yaml:1:1: missing required key 'smtp', expected a list of "
	    "relays when transport is smtp");
	expect_one("public_url: https://x.example\n"
	           "lists: [{id: a, from: a@example.jp}]\n"
	           "smtp: []\n",
	           "t.yaml:3:7: smtp: is empty, expected at least one relay");
	expect_one(BASE "smtp:\n  - port: 25\n",
	           "t.yaml:9:5: smtp[0]: missing required key 'host'");
}

static void
test_config_duplicates(void **state)
{
	(void)state;
	expect_one(
	    "public_url: https://x.example\n"
	    "lists:\n"
	    "  - id: news\n"
	    "    from: a@example.jp\n"
	    "  - id: other\n"
	    "    from: a@example.jp\n"
	    "  - id: news\n"
	    "    from: b@example.jp\n"
	    "delivery: {transport: maildir, maildir: m}\n",
	    "t.yaml:7:9: lists[2].id: duplicate list id 'news' (first at "
	    "line 3), expected unique ids\n");
	expect_one(
	    BASE "  workers: 2\n  workers: 3\n",
	    "t.yaml:9:3: delivery.workers: duplicate key (first at line 8), "
	    "expected each key once\n");
	expect_one(BASE "public_url: https://y.example\n",
	           "t.yaml:8:1: public_url: duplicate key (first at line 1)");
	expect_one(
	    BASE "  per_domain:\n    a.example: {}\n    A.Example: {}\n",
	    "t.yaml:10:5: delivery.per_domain: domain 'a.example' appears "
	    "twice");
}

static void
test_config_syntax(void **state)
{
	char *e;

	(void)state;
	e = load_fail(BASE "lists:\n  - id: a\n   bad: indent\n");
	assert_line(e, "t.yaml:10:4: YAML syntax error: ");
	assert_int_equal(count_lines(e), 1);
	free(e);
	e = load_fail("a: [1, 2\nb: 3\n");
	assert_line(e, "t.yaml:");
	assert_non_null(strstr(e, "YAML syntax error"));
	free(e);
	expect_one("a: *nope\n", "t.yaml:1:4: YAML syntax error: found "
	                         "undefined alias");
	expect_one(
	    BASE "delivery:\n  workers: 2\n\tmaildir: x\n",
	    "t.yaml:10:1: tab character in indentation, expected spaces");
	expect_one("public_url: https://x.example\n"
	           "lists:\n"
	           "  -\tid: a\n",
	           "t.yaml:3:4: tab character in indentation");
	expect_one(
	    BASE "---\nb: 1\n",
	    "t.yaml:8:1: a second YAML document, expected one document only");
}

static void
test_config_not_a_config(void **state)
{
	static const char bin[] = "\x7f"
	                          "ELF\x02\x01\x01\x00\x00\x00";

	(void)state;
	expect_one("", "t.yaml:1:1: the file is empty, expected a YAML "
	               "mapping");
	expect_one("# only a comment\n\n", "t.yaml:1:1: the file is empty");
	expect_one("hello world\n", "t.yaml:1:1: the file holds text at the "
	                            "top, expected a YAML mapping");
	expect_one("- a\n- b\n", "t.yaml:1:1: the file holds a list at the "
	                         "top");
	free(load_fail_len(bin, sizeof(bin) - 1));
	expect_one("a: b\xff\n", "t.yaml:1:5: not valid UTF-8 text");
	expect_one("a: b\x01\n", "t.yaml:1:5: not valid UTF-8 text: control "
	                         "characters are not allowed");
	free(load_fail_len("a: b\0c\n", 7));
}

/* A UTF-8 BOM is not part of the text: it neither becomes part of the
 * first key nor shifts that key's column (which ended the mapping at the
 * second key: four errors, three of them about missing keys). */
static void
test_config_bom(void **state)
{
	struct kr_config *cfg;

	(void)state;
	cfg = load_ok("\xef\xbb\xbf" BASE);
	assert_string_equal(cfg->public_url, "https://news.example.jp");
	assert_int_equal(cfg->n_lists, 1);
	kr_config_free(&cfg);
	expect_one("\xef\xbb\xbf"
	           "bogus: 1\n" BASE,
	           "t.yaml:1:1: unknown key 'bogus'");
	expect_one("\xef\xbb\xbf"
	           "a: b\xff\n",
	           "t.yaml:1:5: not valid UTF-8 text");
}

/* prefix, n '[' then n ']' and suffix, in a malloc'd string. */
static char *
deep_flow(const char *prefix, size_t n, const char *suffix)
{
	size_t pl = strlen(prefix), sl = strlen(suffix);
	char *s = malloc(pl + 2 * n + sl + 1);

	assert_non_null(s);
	memcpy(s, prefix, pl);
	memset(s + pl, '[', n);
	memset(s + pl + n, ']', n);
	memcpy(s + pl + 2 * n, suffix, sl + 1);
	return s;
}

/* Nesting is bounded before libyaml builds the document: 100,000 '['
 * (200 KB) took libyaml 0.2.5 over 10 s, quadratic in the depth. */
static void
test_config_deep_nesting(void **state)
{
	struct kr_config *cfg;
	char *y, *e, block[64 * 70 + 200];
	size_t i, o = 0;

	(void)state;
	y = deep_flow("x-deep: ", 100000, "\n" BASE);
	e = load_fail(y);
	assert_string_equal(e, "t.yaml:1:72: nesting deeper than 64 levels, "
	                       "expected at most 64 nested lists and "
	                       "mappings\n");
	free(e);
	free(y);
	/* 64 levels (the top mapping and 63) are fine (x- keys are ignored) */
	y = deep_flow(BASE "x-deep: ", 63, "\n");
	cfg = load_ok(y);
	kr_config_free(&cfg);
	free(y);
	/* block mappings count too: the 65th level is the one of x-k64 */
	o += (size_t)snprintf(block + o, sizeof(block) - o, "%s", BASE);
	for (i = 0; i < 65; i++)
		o += (size_t)snprintf(block + o, sizeof(block) - o,
		                      "%*sx-k%zu:\n", (int)i, "", i);
	o +=
	    (size_t)snprintf(block + o, sizeof(block) - o, "%*sv: 1\n", 65, "");
	e = load_fail(block);
	assert_string_equal(e, "t.yaml:72:65: nesting deeper than 64 levels, "
	                       "expected at most 64 nested lists and "
	                       "mappings\n");
	free(e);
}

static void
test_config_files(void **state)
{
	char dir[] = "/tmp/kairan-cfg-XXXXXX", path[128];
	struct kr_config *cfg = NULL;
	char *e = NULL;
	int fd;

	(void)state;
	assert_non_null(mkdtemp(dir));
	assert_int_equal(kr_config_load(dir, &cfg, &e), -1);
	assert_null(cfg);
	assert_string_equal(e + strlen(dir),
	                    ": is a directory, expected a YAML file\n");
	free(e);
	snprintf(path, sizeof(path), "%s/none.yaml", dir);
	assert_int_equal(kr_config_load(path, &cfg, &e), -1);
	assert_non_null(strstr(e, "none.yaml: cannot open: No such file"));
	assert_int_equal(count_lines(e), 1);
	free(e);
	snprintf(path, sizeof(path), "%s/k.yaml", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, BASE "  workers: 0\n", strlen(BASE) + 13),
	                 (ssize_t)strlen(BASE) + 13);
	close(fd);
	assert_int_equal(kr_config_load(path, &cfg, &e), -1);
	assert_true(strncmp(e, path, strlen(path)) == 0);
	assert_string_equal(e + strlen(path),
	                    ":8:12: delivery.workers: '0' "
	                    "is out of range, expected a number 1..64\n");
	free(e);
	/* Over the 1 MiB cap: refused before parsing. */
	fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 1024 * 1024 + 1), 0);
	close(fd);
	assert_int_equal(kr_config_load(path, &cfg, &e), -1);
	assert_string_equal(e + strlen(path),
	                    ": is larger than 1048576 bytes, expected a config "
	                    "file\n");
	free(e);
	if (geteuid() != 0) {
		/* root reads anything: only testable as a user. */
		assert_int_equal(chmod(path, 0), 0);
		assert_int_equal(kr_config_load(path, &cfg, &e), -1);
		assert_non_null(strstr(e, ": cannot open: Permission denied"));
		free(e);
	}
	unlink(path);
	rmdir(dir);
}

static void
test_config_header_injection(void **state)
{
	(void)state;
	expect_one(
	    "public_url: https://x.example\n"
	    "lists:\n"
	    "  - id: a\n"
	    "    from: \"A <a@example.jp>\\r\\nBcc: x@evil.example\"\n"
	    "delivery: {transport: maildir, maildir: m}\n",
	    "t.yaml:4:11: lists[0].from: contains a line break or control "
	    "character");
	expect_one(LBASE "    name: \"News\\nBcc: x@evil.example\"\n",
	           "t.yaml:6:11: lists[0].name: contains a line break");
	/* A block scalar with a line break in a one-line field. */
	expect_one("public_url: https://x.example\n"
	           "lists:\n"
	           "  - id: a\n"
	           "    from: a@example.jp\n"
	           "    reply_to: |\n"
	           "      b@example.jp\n"
	           "delivery: {transport: maildir, maildir: m}\n",
	           "t.yaml:5:15: lists[0].reply_to: contains a line break");
	expect_one(LBASE "    name: \"News\\N\"\n", /* NEL */
	           "t.yaml:6:11: lists[0].name: contains a line break");
	expect_one(LBASE "    name: \"News\\L\"\n", /* U+2028 */
	           "t.yaml:6:11: lists[0].name: contains a line break");
	expect_one(LBASE "    name: \"News\\u0085\"\n",
	           "t.yaml:6:11: lists[0].name: contains a line break");
	expect_one(LBASE "    name: \"News\\0\"\n",
	           "t.yaml:6:11: lists[0].name: contains a NUL character");
	expect_one(
	    BASE "  bounce_domain: \"b.example\\r\"\n",
	    "t.yaml:8:18: delivery.bounce_domain: contains a line break");
	expect_one("public_url: https://x.example\n"
	           "lists:\n"
	           "  - id: \"a\\nb\"\n"
	           "    from: a@example.jp\n"
	           "delivery: {transport: maildir, maildir: m}\n",
	           "t.yaml:3:9: lists[0].id: contains a line break");
	expect_one(
	    LBASE "    unsubscribe_mailto: \"u@example.jp\\n\"\n",
	    "t.yaml:6:25: lists[0].unsubscribe_mailto: contains a line break");
	/* A footer may span lines, but not carry other controls. */
	expect_one(LBASE "    footer: \"a\\x1bb\"\n",
	           "t.yaml:6:13: lists[0].footer: 'a\\x1bb' contains a control "
	           "character");
}

static void
test_config_values(void **state)
{
	struct kr_config *cfg;

	(void)state;
	cfg = load_ok("public_url: HTTPS://news.example.jp:8443/kairan//\n"
	              "webhook: Http://hooks.example.jp/k?token=/\n"
	              "http:\n"
	              "  listen: '[::1]:8080'\n"
	              "  trusted_proxies: [127.0.0.1, '::1', 10.0.0.7]\n"
	              "  ipv6_prefix: 56\n"
	              "  header_timeout: 1m\n"
	              "admin:\n"
	              "  listen: '*:9000'\n"
	              "  password_file: /etc/kairan/admin.pass\n"
	              "  metrics_login: true\n"
	              "outbox: spool/outbox\n"
	              "sender:\n"
	              "  name: Top Name\n"
	              "  address: 東京都千代田区1-1\n"
	              "lists:\n"
	              "  - id: a.b_c-9\n"
	              "    name: Ａ News\n"
	              "    reply_to: '\"x y\"@example.jp'\n"
	              "    double_opt_in: no\n"
	              "    language: ja\n"
	              "    charset: iso-2022-jp\n"
	              "    unrepresentable: refuse\n"
	              "    sender: {name: 株式会社Example, contact: "
	              "'03-1234-5678'}\n"
	              "    archive: yes\n"
	              "    allow_html: true\n"
	              "    footer: |\n"
	              "      line 1 {{unsubscribe_url}}\n"
	              "      line 2\n"
	              "    unsubscribe_mailto: u@example.jp\n"
	              "    from: a@example.jp\n"
	              "  - id: b\n"
	              "    from: b@example.jp\n"
	              "delivery:\n"
	              "  transport: maildir\n"
	              "  maildir: var/mail\n"
	              "  bounce_domain: Bounces.Example.JP\n"
	              "log: {level: debug}\n");
	assert_string_equal(cfg->public_url,
	                    "https://news.example.jp:8443/kairan");
	assert_string_equal(cfg->webhook, "http://hooks.example.jp/k?token=/");
	assert_string_equal(cfg->http_listen, "[::1]:8080");
	assert_int_equal(cfg->n_trusted_proxies, 3);
	assert_int_equal(cfg->http_ipv6_prefix, 56);
	assert_int_equal(cfg->http_header_timeout, 60);
	assert_string_equal(cfg->trusted_proxies[1], "::1");
	assert_string_equal(cfg->trusted_proxies[2], "10.0.0.7");
	assert_string_equal(cfg->admin_listen, "*:9000");
	assert_string_equal(cfg->admin_password_file, "/etc/kairan/admin.pass");
	assert_string_equal(cfg->admin_user, "admin");
	assert_true(cfg->admin_metrics_login);
	assert_string_equal(cfg->outbox, "spool/outbox");
	assert_int_equal(cfg->n_lists, 2);
	assert_string_equal(cfg->lists[0].id, "a.b_c-9");
	assert_string_equal(cfg->lists[0].name, "Ａ News");
	assert_string_equal(cfg->lists[0].reply_to, "\"x y\"@example.jp");
	assert_false(cfg->lists[0].double_opt_in);
	assert_string_equal(cfg->lists[0].language, "ja");
	assert_true(cfg->lists[0].archive);
	assert_true(cfg->lists[0].allow_html);
	assert_string_equal(cfg->lists[0].footer,
	                    "line 1 {{unsubscribe_url}}\nline 2\n");
	assert_string_equal(cfg->lists[0].unsubscribe_mailto, "u@example.jp");
	assert_string_equal(cfg->lists[1].language, "en");
	assert_true(cfg->lists[1].double_opt_in);
	/* charset, policy; sender fields inherited where not set */
	assert_int_equal(cfg->lists[0].charset, KR_CFG_CHARSET_ISO2022JP);
	assert_int_equal(cfg->lists[0].unrepresentable, KR_CFG_UNREP_REFUSE);
	assert_int_equal(cfg->lists[1].charset, KR_CFG_CHARSET_UTF8);
	assert_int_equal(cfg->lists[1].unrepresentable,
	                 KR_CFG_UNREP_SUBSTITUTE);
	assert_string_equal(cfg->lists[0].sender_name, "株式会社Example");
	assert_string_equal(cfg->lists[0].sender_address, "東京都千代田区1-1");
	assert_string_equal(cfg->lists[0].sender_contact, "03-1234-5678");
	assert_string_equal(cfg->lists[1].sender_name, "Top Name");
	assert_null(cfg->lists[1].sender_contact); /* en: not required */
	assert_string_equal(cfg->delivery.bounce_domain, "bounces.example.jp");
	assert_int_equal(cfg->delivery.transport, KR_CFG_TRANSPORT_MAILDIR);
	assert_string_equal(cfg->delivery.maildir, "var/mail");
	assert_int_equal(cfg->n_relays, 0);
	assert_int_equal(cfg->log_level, KR_LOG_DEBUG);
	assert_non_null(kr_config_list(cfg, "b"));
	kr_config_free(&cfg);

	expect_one(BASE "http: {listen: 127.0.0.1}\n",
	           "t.yaml:8:16: http.listen: '127.0.0.1' has no ':port'");
	expect_one(BASE "http: {listen: '127.0.0.1:0'}\n",
	           "t.yaml:8:16: http.listen: '127.0.0.1:0' has a bad port");
	expect_one(BASE "http: {listen: '::1:80'}\n",
	           "t.yaml:8:16: http.listen: '::1:80' has more than one ':'");
	expect_one(
	    BASE "http: {trusted_proxies: [10.0.0.0/8]}\n",
	    "t.yaml:8:26: http.trusted_proxies[0]: '10.0.0.0/8' is not an IP "
	    "address");
	expect_one(
	    BASE "webhook: ftp://x.example\n",
	    "t.yaml:8:10: webhook: 'ftp://x.example' is not an http:// or "
	    "https:// URL");
	expect_one(
	    "public_url: https://x.example/?a=1\n"
	    "lists: [{id: a, from: a@example.jp}]\n"
	    "delivery: {transport: maildir, maildir: m}\n",
	    "t.yaml:1:13: public_url: 'https://x.example/?a=1' has a query");
	expect_one("public_url: 'https:// x.example'\n"
	           "lists: [{id: a, from: a@example.jp}]\n"
	           "delivery: {transport: maildir, maildir: m}\n",
	           "t.yaml:1:13: public_url: 'https:// x.example' has a space");
	expect_one("public_url: https:///x\n"
	           "lists: [{id: a, from: a@example.jp}]\n"
	           "delivery: {transport: maildir, maildir: m}\n",
	           "t.yaml:1:13: public_url: 'https:///x' has no host");
	expect_one(BASE "log: {level: loud}\n",
	           "t.yaml:8:14: log.level: 'loud' is not one of the choices, "
	           "expected error, warn, info or debug\n");
	expect_one(
	    LBASE "    language: fr\n",
	    "t.yaml:6:15: lists[0].language: 'fr' is not one of the choices, "
	    "expected ja or en\n");
	expect_one(LBASE "    reply_to: Info <info@example.jp>\n",
	           "t.yaml:6:15: lists[0].reply_to: 'Info <info@example.jp>' "
	           "has a display name or <>: write the bare address, "
	           "expected an address like info@example.jp\n");
	expect_one(LBASE "    archive: maybe\n",
	           "t.yaml:6:14: lists[0].archive: 'maybe' is not a boolean");
	expect_one(BASE "smtp: [{host: h.example, pipelining: often}]\n",
	           "t.yaml:8:38: smtp[0].pipelining: 'often' is not a "
	           "boolean");
	expect_one(BASE "smtp: [{host: h.example, tls: ssl}]\n",
	           "t.yaml:8:31: smtp[0].tls: 'ssl' is not one of the choices, "
	           "expected none, starttls or tls\n");
	expect_one(
	    BASE "  transport: pigeon\n",
	    "t.yaml:8:3: delivery.transport: duplicate key (first at line 6)");
}

static void
test_config_columns_count_characters(void **state)
{
	(void)state;
	/* Columns are characters, as an editor shows them, not bytes. */
	expect_one("public_url: https://x.example\n"
	           "delivery: {transport: maildir, maildir: m}\n"
	           "lists: [{name: 日本語, id: BAD, from: a@example.jp}]\n",
	           "t.yaml:3:25: lists[0].id: 'BAD' is not a list id");
}

static void
test_config_all_errors_at_once(void **state)
{
	char *e;

	(void)state;
	e = load_fail("database: ''\n"
	              "public_url: ftp://x\n"
	              "http:\n"
	              "  listen: nowhere\n"
	              "  colour: red\n"
	              "lists:\n"
	              "  - id: Bad Id\n"
	              "    from: nobody\n"
	              "    language: de\n"
	              "  - id: ok\n"
	              "    from: ok@example.jp\n"
	              "  - id: ok\n"
	              "    from: ok@example.jp\n"
	              "delivery:\n"
	              "  transport: maildir\n"
	              "  workers: 100\n"
	              "  retry: [5m, soon]\n"
	              "smtp:\n"
	              "  - port: 25\n"
	              "log:\n"
	              "  level: chatty\n");
	/* In file order. */
	assert_string_equal(
	    e,
	    "t.yaml:1:11: database: '' is empty, expected an SQLite file name, "
	    "a postgresql:// URI or a mapping with host, port, dbname, user, "
	    "sslmode, password_file\n"
	    "t.yaml:2:13: public_url: 'ftp://x' is not an http:// or "
	    "https:// URL, expected an http(s) URL like "
	    "https://news.example.jp\n"
	    "t.yaml:4:11: http.listen: 'nowhere' has no ':port', expected "
	    "host:port like 127.0.0.1:8080\n"
	    "t.yaml:5:3: unknown key 'colour' in http, expected one of: "
	    "listen, trusted_proxies, ipv6_prefix, header_timeout\n"
	    "t.yaml:7:9: lists[0].id: 'Bad Id' is not a list id, expected a "
	    "list id of 1-64 characters a-z 0-9 . _ -\n"
	    "t.yaml:8:11: lists[0].from: 'nobody' has no '@', expected "
	    "\"Name <addr@domain>\" or addr@domain\n"
	    "t.yaml:9:15: lists[0].language: 'de' is not one of the choices, "
	    "expected ja or en\n"
	    "t.yaml:12:9: lists[2].id: duplicate list id 'ok' (first at line "
	    "10), expected unique ids\n"
	    "t.yaml:14:1: delivery: missing required key 'maildir', expected "
	    "a Maildir folder when transport is maildir\n"
	    "t.yaml:16:12: delivery.workers: '100' is out of range, expected "
	    "a number 1..64\n"
	    "t.yaml:17:15: delivery.retry[1]: 'soon' is not a duration, "
	    "expected a list of durations 1s..30d like [5m, 15m, 1h]\n"
	    "t.yaml:19:5: smtp[0]: missing required key 'host', expected a "
	    "host name or IP address\n"
	    "t.yaml:21:10: log.level: 'chatty' is not one of the choices, "
	    "expected error, warn, info or debug\n");
	free(e);
}

static void
test_config_too_many_errors(void **state)
{
	struct kr_buf_like {
		char *p;
		size_t len;
	} b = {NULL, 0};
	FILE *f;
	char *e;
	int i;

	(void)state;
	f = open_memstream(&b.p, &b.len);
	assert_non_null(f);
	fputs(BASE, f);
	for (i = 0; i < 5000; i++)
		fprintf(f, "k%d: %d\n", i, i);
	fclose(f);
	e = load_fail(b.p);
	assert_int_equal(count_lines(e), 101);
	assert_line(e, "t.yaml:8:1: unknown key 'k0'");
	assert_non_null(strstr(e, "t.yaml: too many errors, stopping here\n"));
	free(e);
	free(b.p);
}

static char *
write_file(const char *dir, const char *name, const char *text, mode_t mode)
{
	char *path = NULL;
	int fd;

	assert_true(asprintf(&path, "%s/%s", dir, name) > 0);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
	return path;
}

static void
test_config_password_file(void **state)
{
	char dir[] = "/tmp/kairan-pw-XXXXXX", yaml[1024];
	char *good, *crlf, *empty, *multi, *world, *e;
	struct kr_config *cfg;

	(void)state;
	unsetenv("KAIRAN_SMTP_PASSWORD");
	assert_non_null(mkdtemp(dir));
	good = write_file(dir, "good", "s3cret pass\n", 0600);
	crlf = write_file(dir, "crlf", "s3cret\r\n", 0640);
	empty = write_file(dir, "empty", "\n", 0600);
	multi = write_file(dir, "multi", "one\ntwo\n", 0600);
	world = write_file(dir, "world", "open", 0644);

	snprintf(yaml, sizeof(yaml),
	         BASE
	         "smtp:\n"
	         "  - host: a.example\n    user: u\n    password_file: %s\n"
	         "  - host: b.example\n    user: u2\n    password_file: %s\n"
	         "  - host: c.example\n    user: u3\n    password_file: %s\n"
	         "  - host: d.example\n",
	         good, crlf, world);
	cfg = load_ok(yaml);
	assert_string_equal(cfg->relays[0].password, "s3cret pass");
	assert_string_equal(cfg->relays[0].password_file, good);
	assert_string_equal(cfg->relays[1].password, "s3cret");
	assert_string_equal(cfg->relays[2].password, "open"); /* warned */
	assert_null(cfg->relays[3].password);
	kr_config_free(&cfg);

	/*                                     col 20 */
	snprintf(yaml, sizeof(yaml),
	         BASE
	         "smtp:\n"
	         "  - host: a.example\n    user: u\n    password_file: %s\n"
	         "  - host: b.example\n    user: u\n    password_file: %s\n"
	         "  - host: c.example\n    user: u\n    password_file: %s/no\n"
	         "  - host: d.example\n    user: u\n"
	         "  - host: e.example\n    password_file: %s\n",
	         empty, multi, dir, good);
	e = load_fail(yaml);
	assert_line(e, "t.yaml:11:20: smtp[0].password_file: '");
	assert_non_null(strstr(e, "empty' is empty, expected one line"));
	assert_line(e, "t.yaml:14:20: smtp[1].password_file: '");
	assert_non_null(strstr(e, "multi' has more than one line"));
	assert_line(e, "t.yaml:17:20: smtp[2].password_file: cannot read '");
	assert_line(e, "t.yaml:18:5: smtp[3]: user is set but there is no "
	               "password, expected password_file (or "
	               "KAIRAN_SMTP_PASSWORD");
	assert_line(e, "t.yaml:21:20: smtp[4].password_file: set without "
	               "user");
	assert_int_equal(count_lines(e), 5);
	/* Never the secret itself. */
	assert_null(strstr(e, "s3cret"));
	assert_null(strstr(e, "two"));
	free(e);

	unlink(good);
	unlink(crlf);
	unlink(empty);
	unlink(multi);
	unlink(world);
	rmdir(dir);
	free(good);
	free(crlf);
	free(empty);
	free(multi);
	free(world);
}

static void
test_config_password_env(void **state)
{
	struct kr_config *cfg;
	char *e;

	(void)state;
	assert_int_equal(setenv("KAIRAN_SMTP_PASSWORD", "from-env", 1), 0);
	/* The first relay with a user takes it; its file is not read. */
	cfg = load_ok(BASE "smtp:\n"
	                   "  - host: a.example\n"
	                   "  - host: b.example\n"
	                   "    user: u\n"
	                   "    password_file: /nonexistent/kairan.pass\n");
	assert_null(cfg->relays[0].password);
	assert_string_equal(cfg->relays[1].password, "from-env");
	kr_config_free(&cfg);
	/* A second relay with a user needs its own. */
	e = load_fail(BASE "smtp:\n"
	                   "  - {host: a.example, user: u}\n"
	                   "  - {host: b.example, user: v}\n");
	assert_string_equal(e, "t.yaml:10:5: smtp[1]: user is set but there "
	                       "is no password, expected password_file (or "
	                       "KAIRAN_SMTP_PASSWORD in the environment)\n");
	free(e);
	assert_int_equal(setenv("KAIRAN_SMTP_PASSWORD", "a\nb", 1), 0);
	e = load_fail(BASE "smtp:\n  - {host: a.example, user: u}\n");
	assert_line(e, "t.yaml:9:5: smtp[0]: KAIRAN_SMTP_PASSWORD");
	assert_null(strstr(e, "a\nb"));
	free(e);
	unsetenv("KAIRAN_SMTP_PASSWORD");
}

static void
test_config_no_secrets(void **state)
{
	static const char yaml[] = BASE "smtp:\n"
	                                "  - host: a.example\n"
	                                "    user: u\n"
	                                "    password_file: /nonexistent/pass\n"
	                                "    ca_file: /nonexistent/ca.pem\n";
	struct kr_config *cfg = NULL;
	char *e = NULL;

	(void)state;
	unsetenv("KAIRAN_SMTP_PASSWORD");
	e = load_fail(yaml);
	assert_line(e, "t.yaml:11:20: smtp[0].password_file: cannot read");
	assert_line(e, "t.yaml:12:14: smtp[0].ca_file: cannot read");
	free(e);
	assert_int_equal(kr_config_load_buf_flags("t.yaml", yaml, strlen(yaml),
	                                          KR_CONFIG_NO_SECRETS, &cfg,
	                                          &e),
	                 0);
	assert_null(e);
	assert_null(cfg->relays[0].password);
	assert_int_equal(cfg->relays[0].port, 587);
	kr_config_free(&cfg);
	/* Everything else is still checked. */
	assert_int_equal(kr_config_load_buf_flags("t.yaml", "a: 1\n", 5,
	                                          KR_CONFIG_NO_SECRETS, &cfg,
	                                          &e),
	                 -1);
	assert_line(e, "t.yaml:1:1: unknown key 'a'");
	free(e);
}

static void
test_config_restart_keys(void **state)
{
	struct kr_config *a, *b;
	char what[128];

	(void)state;
	a = load_ok(BASE);
	b = load_ok(BASE "  workers: 8\n"
	                 "  rate: 10/s\n"
	                 "http: {listen: '127.0.0.1:9090'}\n"
	                 "outbox: /tmp/outbox\n");
	assert_int_equal(kr_config_restart_keys(a, a, what, sizeof(what)), 0);
	assert_string_equal(what, "");
	assert_int_equal(kr_config_restart_keys(a, b, what, sizeof(what)), 3);
	assert_string_equal(what, "http.listen, outbox, delivery.workers");
	assert_int_equal(kr_config_restart_keys(a, b, what, 16), 3);
	assert_string_equal(what, "http.listen");
	assert_int_equal(kr_config_restart_keys(b, a, NULL, 0), 3);
	kr_config_free(&a);
	kr_config_free(&b);
}

static void
test_config_shipped_files(void **state)
{
	struct kr_config *cfg = NULL;
	char *e = NULL;

	(void)state;
	/* The example names /etc/kairan/smtp.pass, which a test machine
	 * lacks: the environment supplies that password instead. */
	assert_int_equal(setenv("KAIRAN_SMTP_PASSWORD", "example", 1), 0);
	if (kr_config_load("config/kairan.yaml", &cfg, &e) != 0)
		fail_msg("config/kairan.yaml:\n%s", e);
	assert_string_equal(cfg->public_url, "https://news.example.jp");
	assert_int_equal(cfg->n_lists, 1);
	assert_string_equal(cfg->lists[0].id, "sips-report");
	assert_string_equal(cfg->lists[0].from_name, "SIPS Security Report");
	assert_string_equal(cfg->lists[0].language, "ja");
	assert_int_equal(cfg->delivery.n_per_domain, 1);
	assert_true(cfg->delivery.rate == 50);
	assert_int_equal(cfg->n_relays, 1);
	assert_int_equal(cfg->relays[0].port, 587);
	assert_string_equal(cfg->relays[0].password, "example");
	kr_config_free(&cfg);
	unsetenv("KAIRAN_SMTP_PASSWORD");

	if (kr_config_load("config/dev.yaml", &cfg, &e) != 0)
		fail_msg("config/dev.yaml:\n%s", e);
	assert_string_equal(cfg->database, "var/kairan.db");
	assert_string_equal(cfg->key_file, "var/token.key");
	assert_string_equal(cfg->outbox, "var/outbox");
	assert_string_equal(cfg->public_url, "http://127.0.0.1:8080");
	assert_string_equal(cfg->http_listen, "127.0.0.1:8080");
	assert_string_equal(cfg->admin_listen, "127.0.0.1:8081");
	assert_int_equal(cfg->delivery.transport, KR_CFG_TRANSPORT_MAILDIR);
	assert_string_equal(cfg->delivery.maildir, "var/mail");
	assert_string_equal(cfg->lists[0].id, "sips-report");
	assert_string_equal(cfg->lists[0].language, "ja");
	assert_true(cfg->lists[0].double_opt_in);
	assert_non_null(strstr(cfg->lists[0].footer, "{{unsubscribe_url}}"));
	kr_config_free(&cfg);
}

static void
test_config_merge_keys(void **state)
{
	struct kr_config *cfg;
	char *e;

	(void)state;
	cfg = load_ok(
	    "sender: {name: N, address: A, contact: C}\n"
	    "x-list: &list\n"
	    "  from: \"Example <news@example.jp>\"\n"
	    "  language: ja\n"
	    "  archive: true\n"
	    "x-extra: &extra {reply_to: info@example.jp, archive: false}\n"
	    "public_url: https://x.example\n"
	    "delivery: {transport: maildir, maildir: m}\n"
	    "lists:\n"
	    "  - <<: *list\n"
	    "    id: one\n"
	    "  - <<: [*extra, *list]\n"
	    "    id: two\n"
	    "    language: en\n");
	assert_int_equal(cfg->n_lists, 2);
	assert_string_equal(cfg->lists[0].id, "one");
	assert_string_equal(cfg->lists[0].from_addr, "news@example.jp");
	assert_string_equal(cfg->lists[0].language, "ja");
	assert_true(cfg->lists[0].archive);
	assert_null(cfg->lists[0].reply_to);
	assert_string_equal(cfg->lists[1].from_name, "Example");
	assert_string_equal(cfg->lists[1].language, "en"); /* own key wins */
	assert_false(cfg->lists[1].archive);               /* first merge */
	assert_string_equal(cfg->lists[1].reply_to, "info@example.jp");
	kr_config_free(&cfg);

	/* A bad key in an anchor merged twice: reported once, at the
	 * anchor. */
	e = load_fail("x-list: &list {from: a@example.jp, colour: red}\n"
	              "public_url: https://x.example\n"
	              "delivery: {transport: maildir, maildir: m}\n"
	              "lists:\n"
	              "  - {<<: *list, id: one}\n"
	              "  - {<<: *list, id: two}\n");
	assert_string_equal(
	    e, "t.yaml:1:36: unknown key 'colour' in "
	       "lists[0], expected one of: id, name, from, "
	       "reply_to, double_opt_in, language, archive, "
	       "allow_html, footer, unsubscribe_mailto, dkim, charset, "
	       "unrepresentable, sender, timezone\n"
	       "t.yaml:1:36: unknown key 'colour' in "
	       "lists[1], expected one of: id, name, from, "
	       "reply_to, double_opt_in, language, archive, "
	       "allow_html, footer, unsubscribe_mailto, dkim, charset, "
	       "unrepresentable, sender, timezone\n");
	free(e);
	expect_one(BASE "http: {<<: 5}\n",
	           "t.yaml:8:12: http: '<<' merges text, expected a mapping");
	/* Merges of merges of merges: bounded work, one error. */
	{
		char *text = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&text, &len);
		int i, j;

		assert_non_null(f);
		fputs("x-0: &m0 {}\n", f);
		for (i = 1; i <= 4; i++) {
			fprintf(f, "x-%d: &m%d {<<: [", i, i);
			for (j = 0; j < 300; j++)
				fprintf(f, "%s*m%d", j ? ", " : "", i - 1);
			fputs("]}\n", f);
		}
		fputs(BASE "http: *m4\n", f);
		fclose(f);
		e = load_fail(text);
		assert_line(e, "t.yaml:1:6: http: more than");
		assert_non_null(strstr(e, "more than 10000 keys through '<<' "
		                          "merges, expected fewer\n"));
		assert_int_equal(count_lines(e), 1);
		free(e);
		free(text);
	}
	/* A mapping merging itself: libyaml allows the cycle. */
	e = load_fail("x: &a {<<: *a}\n" BASE "http: *a\n");
	assert_line(e, "t.yaml:1:1: unknown key 'x'");
	assert_line(e, "t.yaml:1:8: http: '<<' merges nested more than 4 "
	               "deep");
	assert_int_equal(count_lines(e), 2);
	free(e);
}

/* The dashboard is open to whoever reaches admin.listen: bound beyond
 * loopback it must have its login's password file (issue 17). */
static void
test_config_admin_login(void **state)
{
	struct kr_config *cfg;

	(void)state;
	cfg = load_ok(BASE);
	assert_string_equal(cfg->admin_listen, "127.0.0.1:8081");
	assert_null(cfg->admin_password_file);
	assert_false(cfg->admin_metrics_login);
	kr_config_free(&cfg);
	cfg = load_ok(BASE "admin:\n  listen: '[::1]:8081'\n");
	kr_config_free(&cfg);
	cfg = load_ok(BASE "admin:\n  listen: localhost:8081\n"
	                   "  user: ops\n");
	assert_string_equal(cfg->admin_user, "ops");
	kr_config_free(&cfg);
	expect_one(BASE "admin:\n  listen: 0.0.0.0:8081\n",
	           "t.yaml:9:11: admin.listen: 0.0.0.0:8081 is not a loopback "
	           "address and admin.password_file is not set");
	expect_one(BASE "admin:\n  listen: '192.0.2.7:8081'\n",
	           "t.yaml:9:11: admin.listen: 192.0.2.7:8081 is not a "
	           "loopback");
	cfg = load_ok(BASE "admin:\n  listen: 0.0.0.0:8081\n"
	                   "  password_file: /etc/kairan/admin.pass\n");
	kr_config_free(&cfg);
}

/* database: a path stays SQLite; a postgresql:// or postgres:// URI or a
 * mapping becomes one libpq URI without a password, with the password
 * file beside it; a password in the URI is refused at its line and column
 * and never quoted back. */
static void
test_config_database(void **state)
{
	struct kr_config *cfg;
	char *e, path[64];
	int fd;

	(void)state;
	cfg = load_ok(BASE "database: /srv/k.db\n");
	assert_string_equal(cfg->database, "/srv/k.db");
	assert_null(cfg->database_password_file);
	kr_config_free(&cfg);
	cfg = load_ok(BASE);
	assert_string_equal(cfg->database, "/var/lib/kairan/kairan.db");
	kr_config_free(&cfg);

	cfg = load_ok(BASE "database: postgres://kairan@db.example.jp:5433/"
	                   "news?sslmode=require\n");
	assert_string_equal(cfg->database, "postgresql://kairan@db.example.jp:"
	                                   "5433/news?sslmode=require");
	assert_null(cfg->database_password_file);
	kr_config_free(&cfg);
	cfg = load_ok(BASE "database: POSTGRESQL://db/news\n");
	assert_string_equal(cfg->database, "postgresql://db/news");
	kr_config_free(&cfg);

	/* The mapping, with a password file that exists. */
	snprintf(path, sizeof(path), "/tmp/kairan-dbpw-%d", (int)getpid());
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "s3cret\n", 7), 7);
	close(fd);
	{
		char *y = NULL;

		assert_true(asprintf(&y,
		                     BASE "database:\n"
		                          "  host: db.example.jp\n"
		                          "  port: 5433\n"
		                          "  dbname: kairan news\n"
		                          "  user: k@iran\n"
		                          "  sslmode: verify-full\n"
		                          "  password_file: %s\n",
		                     path) > 0);
		cfg = load_ok(y);
		free(y);
	}
	assert_string_equal(cfg->database,
	                    "postgresql://k%40iran@db.example.jp:5433/"
	                    "kairan%20news?sslmode=verify-full");
	assert_string_equal(cfg->database_password_file, path);
	assert_null(strstr(cfg->database, "s3cret"));
	kr_config_free(&cfg);
	unlink(path);
	cfg = load_ok(BASE "database: {host: /run/postgresql, dbname: k}\n");
	assert_string_equal(cfg->database,
	                    "postgresql:///k?host=%2Frun%2Fpostgresql");
	kr_config_free(&cfg);
	cfg = load_ok(BASE "database: {host: '::1', dbname: k}\n");
	assert_string_equal(cfg->database, "postgresql://[::1]/k");
	kr_config_free(&cfg);

	/* A password in the URI: refused where it is, never shown. */
	e = load_fail(BASE "database: postgresql://kairan:hunter2@db/news\n");
	assert_non_null(strstr(e, "t.yaml:8:11: database: the URI holds a "
	                          "password"));
	assert_non_null(strstr(e, "password_file"));
	assert_non_null(strstr(e, "KAIRAN_DB_PASSWORD"));
	assert_null(strstr(e, "hunter2"));
	free(e);
	e = load_fail(BASE "database: postgresql://db/news?sslmode=require&"
	                   "password=hunter2\n");
	assert_non_null(strstr(e, "t.yaml:8:11: database: the URI holds a "
	                          "password"));
	assert_null(strstr(e, "hunter2"));
	free(e);
	e = load_fail(BASE "database: postgresql://:hunter2@db/news\n");
	assert_non_null(strstr(e, "t.yaml:8:11:"));
	assert_null(strstr(e, "hunter2"));
	free(e);
	/* Other bad forms. */
	e = load_fail(BASE "database: mysql://db/news\n");
	assert_non_null(strstr(e, "t.yaml:8:11: database: is a URI of a "
	                          "scheme kairan does not know"));
	free(e);
	e = load_fail(BASE "database:\n  host: db\n");
	assert_non_null(strstr(e, "t.yaml:8:1: database: missing required "
	                          "key 'dbname'"));
	free(e);
	e = load_fail(BASE "database:\n  dbname: k\n  password: hunter2\n");
	assert_non_null(strstr(e, "t.yaml:10:3: unknown key 'password' in "
	                          "database"));
	assert_non_null(strstr(e, "password_file"));
	assert_null(strstr(e, "hunter2"));
	free(e);
	e = load_fail(BASE "database: {host: db, dbname: k, sslmode: maybe}\n");
	assert_non_null(strstr(e, "database.sslmode:"));
	free(e);
	e = load_fail(BASE "database: {host: db, dbname: k, port: 0}\n");
	assert_non_null(strstr(e, "database.port:"));
	free(e);
	e = load_fail(BASE "database: {host: db, dbname: k, password_file: "
	                   "/nonexistent/pw}\n");
	assert_non_null(strstr(e, "t.yaml:8:48: database.password_file: "
	                          "cannot read '/nonexistent/pw'"));
	free(e);
	e = load_fail(BASE "database: [a, b]\n");
	assert_non_null(strstr(e, "t.yaml:8:11: database: expected"));
	free(e);
}

/* Every key the loader knows is documented in the example file, as
 * "key:" (set or commented out) or in a "#   key  meaning" table. */
static void
test_config_example_documents_every_key(void **state)
{
	char *names[128], *text = NULL, *leaf, pat[96];
	size_t n, i, len = 0;
	FILE *f;

	(void)state;
	n = kr_config_keys(names, 128);
	assert_true(n > 30 && n <= 128);
	f = fopen("config/kairan.yaml", "r");
	assert_non_null(f);
	assert_true(getdelim(&text, &len, '\0', f) > 0);
	fclose(f);
	for (i = 0; i < n; i++) {
		leaf = strrchr(names[i], '.');
		leaf = leaf ? leaf + 1 : names[i];
		snprintf(pat, sizeof(pat), "%s:", leaf);
		if (strstr(text, pat) == NULL) {
			snprintf(pat, sizeof(pat), "#   %s ", leaf);
			if (strstr(text, pat) == NULL)
				fail_msg("config/kairan.yaml does not "
				         "document %s",
				         names[i]);
		}
	}
	free(text);
	/* And in the manual page, as ".B key" or ".B section.key". */
	text = NULL;
	f = fopen("man/kairan.yaml.5", "r");
	assert_non_null(f);
	assert_true(getdelim(&text, &len, '\0', f) > 0);
	fclose(f);
	for (i = 0; i < n; i++) {
		leaf = strrchr(names[i], '.');
		leaf = leaf ? leaf + 1 : names[i];
		snprintf(pat, sizeof(pat), ".B %s\n", leaf);
		if (strstr(text, pat) == NULL) {
			snprintf(pat, sizeof(pat), ".%s\n", leaf);
			if (strstr(text, pat) == NULL)
				snprintf(pat, sizeof(pat), ".B %s.", leaf);
			if (strstr(text, pat) == NULL)
				fail_msg("man/kairan.yaml.5 does not "
				         "document %s",
				         names[i]);
		}
		free(names[i]);
	}
	free(text);
}

/* lists[].dkim: the good forms fill the list, every bad one is reported
 * at its line and column. */
/* doctor:, dns: and governor: (kairanctl doctor, the report governor):
 * defaults, percentages as fractions, bad values named. */
static void
test_config_doctor_governor(void **state)
{
	struct kr_config *cfg;
	char *e;

	(void)state;
	cfg = load_ok(BASE);
	assert_true(cfg->governor.complaint_rate > 0.000999 &&
	            cfg->governor.complaint_rate < 0.001001);
	assert_true(cfg->governor.bounce_rate > 0.0499 &&
	            cfg->governor.bounce_rate < 0.0501);
	assert_int_equal(cfg->governor.min_sent, 1000);
	assert_int_equal(cfg->dns.timeout, 3);
	assert_null(cfg->dns.resolver);
	assert_int_equal(cfg->doctor.n_egress, 0);
	kr_config_free(&cfg);
	cfg = load_ok(BASE "governor: {complaint_rate: 0.3%, bounce_rate: 0, "
	                   "min_sent: 0}\n"
	                   "doctor: {egress: [192.0.2.25, '2001:db8::25']}\n"
	                   "dns: {resolver: '127.0.0.1:5353', timeout: 1s}\n");
	assert_true(cfg->governor.complaint_rate > 0.00299 &&
	            cfg->governor.complaint_rate < 0.00301);
	assert_true(cfg->governor.bounce_rate == 0);
	assert_int_equal(cfg->governor.min_sent, 0);
	assert_int_equal(cfg->doctor.n_egress, 2);
	assert_string_equal(cfg->doctor.egress[1], "2001:db8::25");
	assert_string_equal(cfg->dns.resolver, "127.0.0.1:5353");
	assert_int_equal(cfg->dns.timeout, 1);
	kr_config_free(&cfg);
	e = load_fail(BASE "governor:\n  bounce_rate: 5\n");
	assert_line(e, "t.yaml:9:16: governor.bounce_rate: '5' is not a "
	               "percentage");
	free(e);
	e = load_fail(BASE "governor:\n  complaint_rate: 101%\n");
	assert_line(e, "t.yaml:9:19: governor.complaint_rate: '101%' is not");
	free(e);
	e = load_fail(BASE "doctor:\n  egress: [mail.example.jp]\n");
	assert_line(e, "t.yaml:9:12: doctor.egress[0]: 'mail.example.jp' is not "
	               "an IP address");
	free(e);
}

static void
test_config_dkim(void **state)
{
	struct kr_config *cfg;
	char *e;

	(void)state;
	cfg = load_ok(LBASE "    dkim:\n"
	                    "      domain: News.Example.JP\n"
	                    "      rsa: {selector: s1-rsa, key_file: k1}\n"
	                    "      ed25519:\n"
	                    "        selector: s1-ed25519\n"
	                    "        key_file: /etc/k2\n");
	assert_string_equal(cfg->lists[0].dkim_domain, "news.example.jp");
	assert_string_equal(cfg->lists[0].dkim_rsa_selector, "s1-rsa");
	assert_string_equal(cfg->lists[0].dkim_rsa_key_file, "k1");
	assert_string_equal(cfg->lists[0].dkim_ed25519_selector, "s1-ed25519");
	assert_string_equal(cfg->lists[0].dkim_ed25519_key_file, "/etc/k2");
	kr_config_free(&cfg);
	cfg = load_ok(LBASE "    dkim: {domain: example.jp, ed25519: "
	                    "{selector: e, key_file: k}}\n");
	assert_null(cfg->lists[0].dkim_rsa_selector);
	assert_null(cfg->lists[0].dkim_rsa_key_file);
	assert_string_equal(cfg->lists[0].dkim_ed25519_selector, "e");
	kr_config_free(&cfg);
	cfg = load_ok(LBASE);
	assert_null(cfg->lists[0].dkim_domain);
	kr_config_free(&cfg);

	/* No key at all. */
	expect_one(LBASE "    dkim: {domain: example.jp}\n",
	           "t.yaml:6:5: lists[0].dkim: no key, expected rsa: { "
	           "selector, key_file } and/or ed25519");
	/* "dkim:" or "rsa:" alone is not "no signing". */
	expect_one(LBASE "    dkim:\n",
	           "t.yaml:6:10: lists[0].dkim: expected a mapping");
	expect_one(LBASE "    dkim: {domain: example.jp, rsa: }\n",
	           "t.yaml:6:37: lists[0].dkim.rsa: expected a mapping");
	/* Missing pieces, a bad domain, a bad selector, an unknown key:
	 * all at once, each where it is. */
	e = load_fail(LBASE "    dkim:\n"
	                    "      domain: exa mple.jp\n"
	                    "      rsa: {key_file: k}\n"
	                    "      ed25519: {selector: \"a_b\", key_file: k,"
	                    " bits: 256}\n");
	assert_line(e, "t.yaml:7:15: lists[0].dkim.domain: ");
	assert_line(e, "t.yaml:8:7: lists[0].dkim.rsa: missing required key "
	               "'selector', expected a DNS label");
	assert_line(e, "t.yaml:9:27: lists[0].dkim.ed25519.selector: 'a_b' has ");
	assert_line(e, "t.yaml:9:47: unknown key 'bits' in "
	               "lists[0].dkim.ed25519");
	free(e);
	expect_one(LBASE "    dkim: {rsa: {selector: s, key_file: k}}\n",
	           "t.yaml:6:5: lists[0].dkim: missing required key "
	           "'domain', expected the signing domain");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_config_defaults),
	    cmocka_unit_test(test_config_relay_port_by_tls),
	    cmocka_unit_test(test_config_durations),
	    cmocka_unit_test(test_config_rates),
	    cmocka_unit_test(test_config_from_forms),
	    cmocka_unit_test(test_config_unknown_key),
	    cmocka_unit_test(test_config_ja_sender_required),
	    cmocka_unit_test(test_config_timezone),
	    cmocka_unit_test(test_config_wrong_types),
	    cmocka_unit_test(test_config_out_of_range),
	    cmocka_unit_test(test_config_missing_required),
	    cmocka_unit_test(test_config_duplicates),
	    cmocka_unit_test(test_config_syntax),
	    cmocka_unit_test(test_config_bom),
	    cmocka_unit_test(test_config_deep_nesting),
	    cmocka_unit_test(test_config_not_a_config),
	    cmocka_unit_test(test_config_files),
	    cmocka_unit_test(test_config_header_injection),
	    cmocka_unit_test(test_config_values),
	    cmocka_unit_test(test_config_columns_count_characters),
	    cmocka_unit_test(test_config_all_errors_at_once),
	    cmocka_unit_test(test_config_merge_keys),
	    cmocka_unit_test(test_config_too_many_errors),
	    cmocka_unit_test(test_config_password_file),
	    cmocka_unit_test(test_config_password_env),
	    cmocka_unit_test(test_config_no_secrets),
	    cmocka_unit_test(test_config_restart_keys),
	    cmocka_unit_test(test_config_shipped_files),
	    cmocka_unit_test(test_config_example_documents_every_key),
	    cmocka_unit_test(test_config_dkim),
	    cmocka_unit_test(test_config_database),
	    cmocka_unit_test(test_config_admin_login),
	    cmocka_unit_test(test_config_doctor_governor),
	};

	kr_log_set_level(KR_LOG_ERR); /* the world-readable warning */
	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
