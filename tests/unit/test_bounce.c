/* test_bounce.c — the bounce parser on the messages of tests/data/bounces
 * (DSNs and ARF reports built per the RFCs, real-world shapes, auto-
 * replies, garbage) and the bounce policy of the store on a real SQLite
 * file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "bounce.h"
#include "config.h"
#include "err.h"
#include "store.h"
#include "xmem.h"

#define NOW 2000000000
#define TOK "XXTOKENXXTOKENXXTOKENXXTOKENXXTOKENXXTOKENXX0001"
#define UTOK "YYUNSUBYYUNSUBYYUNSUBYYUNSUBYYUNSUBYYUNSUBYY0001"

static char *
fixture(const char *name, size_t *len_out)
{
	const char *root = getenv("KAIRAN_ROOT");
	char path[512];
	FILE *fp;
	char *buf;
	long n;

	snprintf(path, sizeof(path), "%s/tests/data/bounces/%s",
	         root ? root : ".", name);
	fp = fopen(path, "rb");
	if (fp == NULL)
		fail_msg("cannot open %s", path);
	assert_int_equal(fseek(fp, 0, SEEK_END), 0);
	n = ftell(fp);
	rewind(fp);
	/* exactly n bytes, no NUL after: the parser must keep to len */
	buf = kr_xmalloc(n > 0 ? (size_t)n : 1);
	assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
	fclose(fp);
	*len_out = (size_t)n;
	return buf;
}

static void
parse_fixture(const char *name, const char *rcpt, struct kr_bounce *b)
{
	struct kr_err err = {0};
	size_t len;
	char *m = fixture(name, &len);

	assert_int_equal(kr_bounce_parse(m, len, rcpt, b, &err), 0);
	free(m);
}

static void
test_bounce_dsn_postfix_hard(void **state)
{
	struct kr_bounce b;

	(void)state;
	parse_fixture("dsn-postfix-hard.eml", NULL, &b);
	assert_int_equal(b.kind, KR_BOUNCE_HARD);
	assert_string_equal(b.source, "dsn");
	assert_string_equal(b.status, "5.1.1");
	assert_string_equal(b.recipient, "gone@example.net");
	assert_non_null(strstr(b.diagnostic, "550 5.1.1"));
	assert_non_null(strstr(b.diagnostic, "User unknown in virtual"));
	assert_true(b.n_tokens >= 2);
	assert_string_equal(b.tokens[0].token, TOK);
	assert_int_equal(b.tokens[0].purpose, KR_TOKEN_BOUNCE);
	/* the List-Unsubscribe token of the returned headers, later */
	assert_string_equal(b.tokens[b.n_tokens - 1].token, UTOK);
	assert_int_equal(b.tokens[b.n_tokens - 1].purpose,
	                 KR_TOKEN_UNSUBSCRIBE);
}

static void
test_bounce_dsn_gmail_nested_crlf(void **state)
{
	struct kr_bounce b;

	(void)state;
	parse_fixture("dsn-gmail-crlf.eml", NULL, &b);
	assert_int_equal(b.kind, KR_BOUNCE_HARD);
	assert_string_equal(b.source, "dsn");
	assert_string_equal(b.status, "5.1.1");
	assert_string_equal(b.recipient, "nobody@gmail.example");
	/* only the returned message's Return-Path names us */
	assert_int_equal(b.n_tokens, 1);
	assert_string_equal(b.tokens[0].token, TOK);
}

static void
test_bounce_dsn_soft_and_delayed(void **state)
{
	struct kr_bounce b;

	(void)state;
	parse_fixture("dsn-soft-expired.eml", NULL, &b);
	assert_int_equal(b.kind, KR_BOUNCE_SOFT);
	assert_string_equal(b.status, "4.4.7");
	assert_string_equal(b.source, "dsn");
	parse_fixture("dsn-delayed.eml", NULL, &b);
	assert_int_equal(b.kind, KR_BOUNCE_IGNORE);
	assert_string_equal(b.reason, "delayed");
}

static void
test_bounce_arf(void **state)
{
	struct kr_bounce b;

	(void)state;
	parse_fixture("arf-abuse.eml", NULL, &b);
	assert_int_equal(b.kind, KR_BOUNCE_COMPLAINT);
	assert_string_equal(b.source, "arf");
	assert_string_equal(b.diagnostic, "feedback-type: abuse");
	assert_true(b.n_tokens >= 2);
	assert_string_equal(b.tokens[0].token, TOK); /* Original-Mail-From */
	assert_int_equal(b.tokens[0].purpose, KR_TOKEN_BOUNCE);
	assert_string_equal(b.tokens[1].token, UTOK);
	assert_int_equal(b.tokens[1].purpose, KR_TOKEN_UNSUBSCRIBE);

	parse_fixture("arf-unsub-only.eml", NULL, &b);
	assert_int_equal(b.kind, KR_BOUNCE_COMPLAINT);
	assert_int_equal(b.n_tokens, 1);
	assert_string_equal(b.tokens[0].token, UTOK);
	assert_int_equal(b.tokens[0].purpose, KR_TOKEN_UNSUBSCRIBE);
}

static void
test_bounce_qmail_exim(void **state)
{
	struct kr_bounce b;

	(void)state;
	parse_fixture("qmail.eml", NULL, &b);
	assert_int_equal(b.kind, KR_BOUNCE_HARD);
	assert_string_equal(b.source, "qmail");
	assert_string_equal(b.status, "5.1.1");
	assert_string_equal(b.recipient, "nobody@example.com");
	assert_string_equal(b.tokens[0].token, TOK);

	parse_fixture("exim.eml", NULL, &b);
	assert_int_equal(b.kind, KR_BOUNCE_HARD);
	assert_string_equal(b.source, "exim");
	assert_string_equal(b.status, "5.1.1");
	assert_string_equal(b.recipient, "lost@example.com");
	assert_non_null(strstr(b.diagnostic, "User unknown"));

	parse_fixture("exim-delayed.eml", NULL, &b);
	assert_int_equal(b.kind, KR_BOUNCE_IGNORE);
	assert_string_equal(b.reason, "delayed");
}

static void
test_bounce_encoded_texts(void **state)
{
	struct kr_bounce b;

	(void)state;
	/* a sendmail-style notice whose whole body is base64 (UTF-8) */
	parse_fixture("sendmail-base64.eml", NULL, &b);
	assert_int_equal(b.kind, KR_BOUNCE_HARD);
	assert_string_equal(b.source, "text");
	assert_string_equal(b.status, "5.1.1");
	assert_non_null(strstr(b.diagnostic, "User unknown"));
	/* qmail's words split by quoted-printable soft line breaks */
	parse_fixture("qmail-qp.eml", NULL, &b);
	assert_int_equal(b.kind, KR_BOUNCE_SOFT);
	assert_string_equal(b.source, "qmail");
	assert_string_equal(b.status, "5.2.2");
	assert_string_equal(b.recipient, "full@example.com");
	assert_non_null(strstr(b.diagnostic, "mailbox full = quota exceeded"));
}

static void
test_bounce_autoreplies_ignored(void **state)
{
	struct kr_bounce b;

	(void)state;
	/* its body has "550" and "4.2.1": still a vacation reply */
	parse_fixture("vacation.eml", NULL, &b);
	assert_int_equal(b.kind, KR_BOUNCE_IGNORE);
	assert_string_equal(b.reason, "auto-reply");
	parse_fixture("vacation-ja.eml", NULL, &b);
	assert_int_equal(b.kind, KR_BOUNCE_IGNORE);
	assert_string_equal(b.reason, "auto-reply");
}

/* Vacation replies whose only marker is a Subject in RFC 2047 encoded
 * words (no Auto-Submitted, no X-Autoreply), sent to a VERP address:
 * they counted as soft bounces until the words were decoded. */
static void
test_bounce_encoded_subject_autoreplies(void **state)
{
	static const char *const names[] = {
	    "vacation-iso2022jp-b.eml", /* 【不在】…, folded over 4 words */
	    "vacation-iso2022jp-q.eml", /* 自動返信: … */
	    "vacation-utf8-b.eml", /* ただいま不在です, 不 split */
	    "vacation-utf8-q.eml", /* Re: 12月号 [自動返信] */
	    "vacation-en-b.eml",   /* Out of Office: … */
	};
	struct kr_bounce b;
	size_t i;

	(void)state;
	for (i = 0; i < KR_NELEM(names); i++) {
		parse_fixture(names[i], NULL, &b);
		if (b.kind != KR_BOUNCE_IGNORE || b.reason == NULL ||
		    strcmp(b.reason, "auto-reply") != 0)
			fail_msg("%s: kind %d, reason %s", names[i], b.kind,
			         b.reason ? b.reason : "(null)");
	}
	/* a human reply with an encoded subject is still soft (verp) */
	parse_fixture("human-reply-verp-encoded.eml", NULL, &b);
	assert_int_equal(b.kind, KR_BOUNCE_SOFT);
	assert_string_equal(b.source, "verp");
}

static void
test_bounce_truncated_and_garbage(void **state)
{
	struct kr_bounce b;

	(void)state;
	parse_fixture("truncated.eml", NULL, &b);
	assert_int_equal(b.kind, KR_BOUNCE_HARD);
	assert_string_equal(b.status, "5.2.1");
	parse_fixture("noheaders.eml", NULL, &b);
	assert_int_equal(b.kind, KR_BOUNCE_IGNORE);
	assert_string_equal(b.reason, "not a bounce");
	assert_int_equal(b.n_tokens, 0);
	parse_fixture("not-a-bounce.eml", NULL, &b);
	assert_int_equal(b.kind, KR_BOUNCE_IGNORE);
	assert_string_equal(b.reason, "not a bounce");
}

static void
test_bounce_verp_fallback_and_recipient(void **state)
{
	struct kr_bounce b;

	(void)state;
	/* a person's reply to the VERP address: soft, never hard */
	parse_fixture("human-reply-verp.eml", NULL, &b);
	assert_int_equal(b.kind, KR_BOUNCE_SOFT);
	assert_string_equal(b.source, "verp");
	/* the MTA's envelope recipient comes first, case kept */
	parse_fixture(
	    "not-a-bounce.eml",
	    "bounces+AbCdEfGhIjKlMnOpQrStUvWxYz_-0123456789@bounces.example.jp",
	    &b);
	assert_int_equal(b.kind, KR_BOUNCE_SOFT);
	assert_int_equal(b.n_tokens, 1);
	assert_string_equal(b.tokens[0].token,
	                    "AbCdEfGhIjKlMnOpQrStUvWxYz_-0123456789");
	parse_fixture("dsn-gmail-crlf.eml",
	              "BOUNCES+ZZZZZZZZZZZZZZZZZZZZZZZZ@x.example", &b);
	assert_int_equal(b.n_tokens, 2);
	assert_string_equal(b.tokens[0].token, "ZZZZZZZZZZZZZZZZZZZZZZZZ");
	assert_string_equal(b.tokens[1].token, TOK);
	/* no '@' after it: not a VERP address */
	parse_fixture("not-a-bounce.eml", "bounces+ZZZZZZZZZZZZZZZZZZZZZZZ",
	              &b);
	assert_int_equal(b.n_tokens, 0);
}

static void
test_bounce_garbage_inputs(void **state)
{
	struct kr_bounce b;
	struct kr_err err = {0};
	size_t big = KR_BOUNCE_MAX_INPUT + 1024 * 1024, i, n;
	char *m = kr_xmalloc(big);
	uint32_t x = 12345;

	(void)state;
	assert_int_equal(kr_bounce_parse("", 0, NULL, &b, &err), 0);
	assert_int_equal(b.kind, KR_BOUNCE_IGNORE);
	assert_int_equal(kr_bounce_parse(NULL, 0, NULL, &b, &err), 0);
	assert_int_equal(kr_bounce_parse(NULL, 5, NULL, &b, &err), -1);
	assert_int_equal(err.code, KR_ERR_INVALID);
	/* 11 MB of binary */
	for (i = 0; i < big; i++) {
		x = x * 1103515245u + 12345u;
		m[i] = (char)(x >> 16);
	}
	assert_int_equal(kr_bounce_parse(m, big, NULL, &b, &err), 0);
	assert_int_equal(b.kind, KR_BOUNCE_IGNORE);
	/* headers only, folded forever, no body */
	n = (size_t)snprintf(m, big, "Subject: x\n");
	for (i = 0; i < 100000; i++)
		m[n++] = i % 2 ? ' ' : '\n';
	assert_int_equal(kr_bounce_parse(m, n, NULL, &b, &err), 0);
	/* multipart nested 2000 deep, all with one boundary, unclosed */
	n = 0;
	for (i = 0; i < 2000; i++)
		n += (size_t)snprintf(
		    m + n, big - n,
		    "Content-Type: multipart/mixed; boundary=b\n\n--b\n");
	n += (size_t)snprintf(
	    m + n, big - n,
	    "Content-Type: message/delivery-status\n\nAction: failed\n"
	    "Status: 5.1.1\n");
	assert_int_equal(kr_bounce_parse(m, n, NULL, &b, &err), 0);
	/* deeper than the walker goes: not found, no crash */
	assert_int_equal(b.kind, KR_BOUNCE_IGNORE);
	/* 100000 empty parts */
	n = (size_t)snprintf(
	    m, big, "Content-Type: multipart/report; boundary=\"q\"\n\n");
	for (i = 0; i < 100000; i++)
		n += (size_t)snprintf(m + n, big - n, "--q\n\n");
	assert_int_equal(kr_bounce_parse(m, n, NULL, &b, &err), 0);
	/* a boundary that is never there, a header cut mid-name */
	n = (size_t)snprintf(
	    m, big, "Content-Type: multipart/report; boundary=\"\nContent-Typ");
	assert_int_equal(kr_bounce_parse(m, n, NULL, &b, &err), 0);
	free(m);
}

static void
test_bounce_smtp_kind(void **state)
{
	char st[16];

	(void)state;
	/* about the address: hard */
	assert_int_equal(
	    kr_bounce_smtp_kind(550, "5.1.1 <x@y>: User unknown", st),
	    KR_BOUNCE_HARD);
	assert_string_equal(st, "5.1.1");
	assert_int_equal(kr_bounce_smtp_kind(554, "no such user", st),
	                 KR_BOUNCE_HARD);
	assert_string_equal(st, "");
	assert_int_equal(kr_bounce_smtp_kind(550, "mailbox disabled 5.2.1", st),
	                 KR_BOUNCE_HARD);
	assert_int_equal(
	    kr_bounce_smtp_kind(550, "Requested action not taken", st),
	    KR_BOUNCE_HARD);
	assert_int_equal(kr_bounce_smtp_kind(550,
	                                     "5.7.1 <x@y>: Recipient "
	                                     "address rejected: user "
	                                     "unknown",
	                                     st),
	                 KR_BOUNCE_HARD);
	/* the mailbox, or a block on us or the content: soft */
	assert_int_equal(kr_bounce_smtp_kind(552, "5.2.2 mailbox full", st),
	                 KR_BOUNCE_SOFT);
	assert_int_equal(kr_bounce_smtp_kind(550,
	                                     "5.7.1 Message rejected as "
	                                     "spam",
	                                     st),
	                 KR_BOUNCE_SOFT);
	assert_int_equal(kr_bounce_smtp_kind(554, "5.6.0 content rejected", st),
	                 KR_BOUNCE_SOFT);
	assert_int_equal(kr_bounce_smtp_kind(554, "Transaction failed", st),
	                 KR_BOUNCE_SOFT);
	assert_int_equal(kr_bounce_smtp_kind(452, "4.2.2 mailbox full", st),
	                 KR_BOUNCE_SOFT);
	assert_int_equal(kr_bounce_smtp_kind(451, "5.1.1 odd but 4xx", st),
	                 KR_BOUNCE_SOFT);
	/* about us, not the address */
	assert_int_equal(kr_bounce_smtp_kind(530,
	                                     "5.7.0 Authentication "
	                                     "required",
	                                     st),
	                 KR_BOUNCE_IGNORE);
	assert_int_equal(kr_bounce_smtp_kind(554,
	                                     "5.7.1 <x@y>: Relay access "
	                                     "denied",
	                                     NULL),
	                 KR_BOUNCE_IGNORE);
	assert_int_equal(kr_bounce_smtp_kind(500, "5.5.2 Syntax error", st),
	                 KR_BOUNCE_IGNORE);
	assert_int_equal(kr_bounce_smtp_kind(553,
	                                     "5.1.8 sender domain does "
	                                     "not resolve",
	                                     st),
	                 KR_BOUNCE_IGNORE);
	assert_int_equal(kr_bounce_smtp_kind(250, "ok", st), KR_BOUNCE_IGNORE);
	assert_string_equal(kr_bounce_kind_name(KR_BOUNCE_COMPLAINT),
	                    "complaint");
}

static void
test_bounce_config_defaults(void **state)
{
	static const char base[] =
	    "public_url: https://news.example.jp\n"
	    "lists:\n  - id: a\n    from: a@news.example.jp\n"
	    "delivery:\n  transport: maildir\n  maildir: /tmp/m\n";
	char text[1024];
	struct kr_config *cfg = NULL;
	char *errors = NULL;

	(void)state;
	assert_int_equal(
	    kr_config_load_buf("t.yaml", base, strlen(base), &cfg, &errors), 0);
	assert_int_equal(cfg->bounce.hard_threshold, 1);
	assert_int_equal(cfg->bounce.soft_threshold, 3);
	assert_int_equal(cfg->bounce.soft_window, 7 * 86400);
	assert_int_equal(cfg->bounce.reset_after, 90 * 86400);
	kr_config_free(&cfg);
	snprintf(text, sizeof(text),
	         "%sbounce:\n  hard_threshold: 2\n  soft_threshold: 5\n"
	         "  soft_window: 2d\n  reset_after: 30d\n",
	         base);
	assert_int_equal(
	    kr_config_load_buf("t.yaml", text, strlen(text), &cfg, &errors), 0);
	assert_int_equal(cfg->bounce.hard_threshold, 2);
	assert_int_equal(cfg->bounce.soft_threshold, 5);
	assert_int_equal(cfg->bounce.soft_window, 2 * 86400);
	assert_int_equal(cfg->bounce.reset_after, 30 * 86400);
	kr_config_free(&cfg);
	snprintf(text, sizeof(text), "%sbounce:\n  hard_threshold: 0\n", base);
	assert_int_equal(
	    kr_config_load_buf("t.yaml", text, strlen(text), &cfg, &errors),
	    -1);
	assert_non_null(strstr(errors, "t.yaml:9:19: bounce.hard_threshold"));
	free(errors);
	errors = NULL;
	snprintf(text, sizeof(text), "%sbounce:\n  reset_after: 2h\n", base);
	assert_int_equal(
	    kr_config_load_buf("t.yaml", text, strlen(text), &cfg, &errors),
	    -1);
	assert_non_null(strstr(errors, "t.yaml:9:16: bounce.reset_after"));
	assert_non_null(strstr(errors, "1d..3650d"));
	free(errors);
}

/* ---- the policy in the store ---- */

struct fx {
	char dir[64];
	char db[128];
	struct kr_store *s;
	int64_t a, b, c, report;
};

static int64_t
add_sub(struct kr_store *s, const char *email)
{
	struct kr_subscriber sub = {0}, got;
	struct kr_err err = {0};
	bool added = false;

	snprintf(sub.list_id, sizeof(sub.list_id), "news");
	snprintf(sub.email, sizeof(sub.email), "%s", email);
	sub.status = KR_SUB_ACTIVE;
	sub.created_at = NOW - 100;
	assert_int_equal(kr_store_subscriber_import(s, &sub, &added, &err), 0);
	assert_int_equal(kr_store_subscriber_find(s, "news", email, &got, &err),
	                 1);
	return got.id;
}

static int
setup(void **state)
{
	struct fx *f = kr_xcalloc(1, sizeof(*f));
	struct kr_report_row r = {0};
	struct kr_err err = {0};
	int64_t queued = 0;

	strcpy(f->dir, "/tmp/kairan-bounce-XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->db, sizeof(f->db), "%s/kairan.db", f->dir);
	if (kr_store_open(f->db, NULL, &f->s, &err) < 0)
		return -1;
	f->a = add_sub(f->s, "a@example.jp");
	f->b = add_sub(f->s, "b@example.jp");
	f->c = add_sub(f->s, "c@example.jp");
	snprintf(r.list_id, sizeof(r.list_id), "news");
	r.subject = (char *)(uintptr_t) "report";
	r.text = (char *)(uintptr_t) "text";
	r.html = (char *)(uintptr_t) "<p>html</p>";
	r.source = (char *)(uintptr_t) "/tmp/r.md";
	snprintf(r.hash, sizeof(r.hash), "h1");
	if (kr_store_report_add(f->s, &r, false, NOW, &f->report, &queued,
	                        &err) < 0 ||
	    queued != 3)
		return -1;
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;
	char cmd[128];

	kr_store_close(&f->s);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

static void
record_r(struct fx *f, int64_t sub, int64_t report, int kind,
         const char *status, int64_t at, const struct kr_bounce_policy *p,
         struct kr_bounce_result *res)
{
	struct kr_bounce_row row = {0};
	struct kr_err err = {0};

	row.at = at;
	row.subscriber_id = sub;
	row.report_id = report;
	row.kind = kind;
	snprintf(row.status, sizeof(row.status), "%s", status);
	snprintf(row.diagnostic, sizeof(row.diagnostic), "diag %s", status);
	snprintf(row.source, sizeof(row.source), "dsn");
	if (kr_store_bounce_record(f->s, &row, p, res, &err) < 0)
		fail_msg("record: %s", err.msg);
}

static void
record(struct fx *f, int64_t sub, int kind, const char *status, int64_t at,
       const struct kr_bounce_policy *p, struct kr_bounce_result *res)
{
	record_r(f, sub, f->report, kind, status, at, p, res);
}

static void
sub_get(struct fx *f, int64_t id, struct kr_subscriber *out)
{
	struct kr_err err = {0};

	assert_int_equal(kr_store_subscriber_get(f->s, id, out, &err), 1);
}

static void
test_bounce_store_hard(void **state)
{
	struct fx *f = *state;
	struct kr_bounce_policy p = {1, 3, 7 * 86400, 0};
	struct kr_bounce_result res;
	struct kr_subscriber s;
	struct kr_delivery_counts k;
	struct kr_err err = {0};

	record(f, f->a, KR_STORE_BOUNCE_HARD, "5.1.1", NOW, &p, &res);
	assert_true(res.counted);
	assert_true(res.bounced);
	assert_int_equal(res.bounces, 1);
	assert_int_equal(res.cancelled, 1);
	sub_get(f, f->a, &s);
	assert_int_equal(s.status, KR_SUB_BOUNCED);
	assert_int_equal(s.bounces, 1);
	/* nobody else touched */
	sub_get(f, f->b, &s);
	assert_int_equal(s.status, KR_SUB_ACTIVE);
	assert_int_equal(s.bounces, 0);
	assert_int_equal(kr_store_delivery_counts(f->s, f->report, &k, &err),
	                 0);
	assert_int_equal(k.queued, 2);
	assert_int_equal(k.cancelled, 1);
	/* the same copy again: stored, a duplicate, not counted */
	record(f, f->a, KR_STORE_BOUNCE_HARD, "5.1.1", NOW + 1, &p, &res);
	assert_true(res.duplicate);
	assert_false(res.counted);
	assert_false(res.bounced);
	assert_int_equal(res.bounces, 1);
	/* another report's copy: counted, no second state change */
	record_r(f, f->a, f->report + 1, KR_STORE_BOUNCE_HARD, "5.1.1", NOW + 2,
	         &p, &res);
	assert_false(res.duplicate);
	assert_true(res.counted);
	assert_false(res.bounced);
	assert_int_equal(res.bounces, 2);
	sub_get(f, f->a, &s);
	assert_int_equal(s.bounces, 2);
}

static void
test_bounce_store_hard_threshold_two(void **state)
{
	struct fx *f = *state;
	struct kr_bounce_policy p = {2, 3, 7 * 86400, 0};
	struct kr_bounce_result res;
	struct kr_subscriber s;

	record(f, f->a, KR_STORE_BOUNCE_HARD, "5.1.1", NOW, &p, &res);
	assert_false(res.bounced);
	sub_get(f, f->a, &s);
	assert_int_equal(s.status, KR_SUB_ACTIVE);
	record_r(f, f->a, f->report + 1, KR_STORE_BOUNCE_HARD, "5.2.1",
	         NOW + 60, &p, &res);
	assert_true(res.bounced);
	sub_get(f, f->a, &s);
	assert_int_equal(s.status, KR_SUB_BOUNCED);
}

/* Counts decay: with hard_threshold 3 and reset_after 30 days, two
 * counted bounces and a third 40 days after the second start the count
 * again (event bounces-reset) instead of removing the subscriber; three
 * within 30 days of each other do. */
static void
test_bounce_store_reset_after(void **state)
{
	struct fx *f = *state;
	struct kr_bounce_policy p = {3, 1, 86400, 30 * 86400};
	struct kr_bounce_result res;
	struct kr_subscriber s;
	const int64_t day = 86400;

	record_r(f, f->a, 21, KR_STORE_BOUNCE_HARD, "5.1.1", NOW, &p, &res);
	assert_true(res.counted);
	assert_int_equal(res.bounces, 1);
	record_r(f, f->a, 22, KR_STORE_BOUNCE_HARD, "5.1.1", NOW + 10 * day,
	         &p, &res);
	assert_int_equal(res.bounces, 2);
	assert_false(res.reset);
	record_r(f, f->a, 23, KR_STORE_BOUNCE_HARD, "5.1.1", NOW + 50 * day,
	         &p, &res);
	assert_true(res.counted);
	assert_true(res.reset);
	assert_false(res.bounced);
	assert_int_equal(res.bounces, 1);
	sub_get(f, f->a, &s);
	assert_int_equal(s.status, KR_SUB_ACTIVE);
	assert_int_equal(s.bounces, 1);
	/* a soft bounce that is not counted resets nothing */
	record_r(f, f->a, 24, KR_STORE_BOUNCE_SOFT, "4.2.2", NOW + 200 * day,
	         &p, &res);
	assert_true(res.counted); /* soft_threshold 1: counts at once */
	assert_true(res.reset);
	assert_int_equal(res.bounces, 1);
	record_r(f, f->a, 25, KR_STORE_BOUNCE_HARD, "5.1.1", NOW + 210 * day,
	         &p, &res);
	assert_int_equal(res.bounces, 2);
	record_r(f, f->a, 26, KR_STORE_BOUNCE_HARD, "5.1.1", NOW + 220 * day,
	         &p, &res);
	assert_false(res.reset);
	assert_true(res.bounced);
	assert_int_equal(res.bounces, 3);
	sub_get(f, f->a, &s);
	assert_int_equal(s.status, KR_SUB_BOUNCED);
	/* reset_after 0: never */
	p.reset_after = 0;
	record_r(f, f->b, 31, KR_STORE_BOUNCE_HARD, "5.1.1", NOW, &p, &res);
	record_r(f, f->b, 32, KR_STORE_BOUNCE_HARD, "5.1.1", NOW + 900 * day,
	         &p, &res);
	assert_false(res.reset);
	assert_int_equal(res.bounces, 2);
}

static void
test_bounce_store_soft_window(void **state)
{
	struct fx *f = *state;
	struct kr_bounce_policy p = {1, 3, 86400, 0};
	struct kr_bounce_result res;
	struct kr_subscriber s;

	/* two soft bounces, then one after the window: not three within */
	record_r(f, f->b, 11, KR_STORE_BOUNCE_SOFT, "4.2.2", NOW, &p, &res);
	assert_false(res.counted);
	record_r(f, f->b, 12, KR_STORE_BOUNCE_SOFT, "4.2.2", NOW + 10, &p,
	         &res);
	assert_false(res.counted);
	record_r(f, f->b, 13, KR_STORE_BOUNCE_SOFT, "4.2.2", NOW + 86400 + 5,
	         &p, &res);
	assert_false(res.counted);
	sub_get(f, f->b, &s);
	assert_int_equal(s.status, KR_SUB_ACTIVE);
	assert_int_equal(s.bounces, 0);
	/* the same copies again do not add up */
	record_r(f, f->b, 13, KR_STORE_BOUNCE_SOFT, "4.2.2", NOW + 86400 + 30,
	         &p, &res);
	assert_true(res.duplicate);
	record_r(f, f->b, 13, KR_STORE_BOUNCE_SOFT, "4.2.2", NOW + 86400 + 40,
	         &p, &res);
	assert_false(res.counted);
	/* two more within a day of the third: three in the window */
	record_r(f, f->b, 14, KR_STORE_BOUNCE_SOFT, "4.2.2", NOW + 86400 + 60,
	         &p, &res);
	assert_false(res.counted);
	record_r(f, f->b, 15, KR_STORE_BOUNCE_SOFT, "4.4.7", NOW + 86400 + 120,
	         &p, &res);
	assert_true(res.counted);
	assert_true(res.bounced);
	sub_get(f, f->b, &s);
	assert_int_equal(s.status, KR_SUB_BOUNCED);
	assert_int_equal(s.bounces, 1);
	sub_get(f, f->a, &s);
	assert_int_equal(s.status, KR_SUB_ACTIVE);
}

static int
collect(void *ctx, const struct kr_bounce_row *b)
{
	struct kr_bounce_row *rows = ctx;
	size_t i;

	for (i = 0; rows[i].id != 0; i++)
		;
	if (i >= 7)
		return 1;
	rows[i] = *b;
	return 0;
}

static void
test_bounce_store_complaint_and_list(void **state)
{
	struct fx *f = *state;
	struct kr_bounce_policy p = {1, 3, 86400, 0};
	struct kr_bounce_result res;
	struct kr_subscriber s;
	struct kr_bounce_row rows[8];
	struct kr_bounce_row bad = {0};
	struct kr_err err = {0};

	record(f, f->c, KR_STORE_BOUNCE_COMPLAINT, "", NOW, &p, &res);
	assert_true(res.unsubscribed);
	assert_false(res.counted);
	sub_get(f, f->c, &s);
	assert_int_equal(s.status, KR_SUB_UNSUBSCRIBED);
	assert_int_equal(s.unsubscribed_at, NOW);
	record(f, f->a, KR_STORE_BOUNCE_SOFT, "4.2.2", NOW + 1, &p, &res);
	memset(rows, 0, sizeof(rows));
	assert_int_equal(
	    kr_store_bounce_foreach(f->s, 0, 0, collect, rows, &err), 0);
	assert_int_equal(rows[0].kind, KR_STORE_BOUNCE_SOFT); /* newest */
	assert_string_equal(rows[0].email, "a@example.jp");
	assert_string_equal(rows[0].status, "4.2.2");
	assert_string_equal(rows[0].source, "dsn");
	assert_int_equal(rows[0].report_id, f->report);
	assert_int_equal(rows[1].kind, KR_STORE_BOUNCE_COMPLAINT);
	assert_string_equal(rows[1].email, "c@example.jp");
	assert_int_equal(rows[2].id, 0);
	memset(rows, 0, sizeof(rows));
	assert_int_equal(kr_store_bounce_foreach(f->s, f->report + 1, 0,
	                                         collect, rows, &err),
	                 0);
	assert_int_equal(rows[0].id, 0);
	memset(rows, 0, sizeof(rows));
	assert_int_equal(
	    kr_store_bounce_foreach(f->s, 0, 1, collect, rows, &err), 0);
	assert_int_equal(rows[1].id, 0);
	/* unknown subscriber, bad kind */
	bad.subscriber_id = 9999;
	bad.kind = KR_STORE_BOUNCE_HARD;
	assert_int_equal(kr_store_bounce_record(f->s, &bad, &p, &res, &err),
	                 -1);
	assert_int_equal(err.code, KR_ERR_NOTFOUND);
	bad.subscriber_id = f->a;
	bad.kind = 7;
	assert_int_equal(kr_store_bounce_record(f->s, &bad, &p, &res, &err),
	                 -1);
	assert_int_equal(err.code, KR_ERR_INVALID);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bounce_dsn_postfix_hard),
	    cmocka_unit_test(test_bounce_dsn_gmail_nested_crlf),
	    cmocka_unit_test(test_bounce_dsn_soft_and_delayed),
	    cmocka_unit_test(test_bounce_arf),
	    cmocka_unit_test(test_bounce_qmail_exim),
	    cmocka_unit_test(test_bounce_encoded_texts),
	    cmocka_unit_test(test_bounce_autoreplies_ignored),
	    cmocka_unit_test(test_bounce_encoded_subject_autoreplies),
	    cmocka_unit_test(test_bounce_truncated_and_garbage),
	    cmocka_unit_test(test_bounce_verp_fallback_and_recipient),
	    cmocka_unit_test(test_bounce_garbage_inputs),
	    cmocka_unit_test(test_bounce_smtp_kind),
	    cmocka_unit_test(test_bounce_config_defaults),
	    cmocka_unit_test_setup_teardown(test_bounce_store_hard, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(
	        test_bounce_store_hard_threshold_two, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bounce_store_soft_window,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bounce_store_reset_after,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_bounce_store_complaint_and_list, setup, teardown),
	};

	return cmocka_run_group_tests_name("bounce", tests, NULL, NULL);
}
