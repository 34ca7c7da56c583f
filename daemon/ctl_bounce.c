/* ctl_bounce.c — `kairanctl bounce`: one returned message on stdin, as an
 * MTA pipe hands it over (Postfix pipe(8), an aliases "|" entry), and
 * `kairanctl bounces`: the recent bounces and complaints.
 *
 * Exit status of `bounce` follows sysexits(3) for the MTA: 0 when the
 * message was recorded or deliberately ignored (one line on stderr says
 * which), 75 (EX_TEMPFAIL) when it could not be recorded now (config,
 * key file or database unavailable) so the MTA keeps it and retries, 64
 * (EX_USAGE) for bad arguments. Never an address above debug level on
 * stderr: the MTA may copy that line into its logs. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "bounce.h"
#include "config.h"
#include "ctl.h"
#include "err.h"
#include "store.h"
#include "token.h"
#include "xmem.h"

#define EX_USAGE_ 64
#define EX_TEMPFAIL_ 75

static const char bounce_usage[] =
    "usage: kairanctl bounce [--recipient ADDR] [--dry-run] < MESSAGE\n"
    "\n"
    "Reads one returned message on stdin (an MTA pipe): an RFC 3464\n"
    "delivery status notification, an RFC 5965 (ARF) complaint, or a\n"
    "common non-standard bounce. The subscriber is found by the signed\n"
    "token of the VERP address bounces+TOKEN@delivery.bounce_domain: ADDR\n"
    "(Postfix ${original_recipient}) first, then the message's own\n"
    "headers and the returned message. Hard bounces count at once, soft\n"
    "ones after bounce.soft_threshold within bounce.soft_window; at\n"
    "bounce.hard_threshold the subscriber becomes bounced. A complaint\n"
    "unsubscribes at once. Auto-replies are ignored.\n"
    "--dry-run  parse and print the verdict; touch nothing.\n"
    "exit status: 0 recorded or ignored (stderr says which), 75 store,\n"
    "config or key file unavailable (the MTA retries), 64 usage\n";

static const char bounces_usage[] =
    "usage: kairanctl bounces [--report N] [--limit N]\n"
    "\n"
    "Lists recent bounces and complaints, newest first (default the last\n"
    "50; --limit 0: all), of every report or of report N: when (UTC),\n"
    "kind (hard, soft, complaint), status, report, subscriber id, source\n"
    "(dsn, arf, qmail, exim, text, verp, smtp), address and diagnostic.\n"
    "exit status: 0 ok, 1 failure, 2 usage\n";

/* Reads stdin: the first KR_BOUNCE_MAX_INPUT bytes are kept, the rest is
 * read and dropped (the MTA wants the whole message taken). */
static int
read_stdin(char **buf_out, size_t *len_out)
{
	size_t cap = 64 * 1024, len = 0;
	char *buf = kr_xmalloc(cap + 1);
	char sink[65536];
	ssize_t n;
	int r = -1;

	for (;;) {
		if (len < KR_BOUNCE_MAX_INPUT) {
			if (len == cap) {
				cap = cap * 2 > KR_BOUNCE_MAX_INPUT
				          ? KR_BOUNCE_MAX_INPUT
				          : cap * 2;
				buf = kr_xrealloc(buf, cap + 1);
			}
			n = read(STDIN_FILENO, buf + len, cap - len);
		} else {
			n = read(STDIN_FILENO, sink, sizeof(sink));
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto out;
		if (n == 0)
			break;
		if (len < KR_BOUNCE_MAX_INPUT)
			len += (size_t)n;
	}
	buf[len] = '\0';
	*buf_out = buf;
	*len_out = len;
	buf = NULL;
	r = 0;
out:
	free(buf);
	return r;
}

static void
print_verdict(const struct kr_bounce *b)
{
	size_t i;

	printf("kind: %s\n", kr_bounce_kind_name(b->kind));
	printf("source: %s\n", b->source);
	if (b->kind == KR_BOUNCE_IGNORE)
		printf("reason: %s\n", b->reason);
	printf("status: %s\n", b->status);
	printf("recipient: %s\n", b->recipient);
	printf("diagnostic: %s\n", b->diagnostic);
	for (i = 0; i < b->n_tokens; i++)
		/* a prefix: enough to tell them apart, not to use one */
		printf("token: %s %.8s...\n",
		       b->tokens[i].purpose == KR_TOKEN_BOUNCE ? "verp"
		                                               : "unsubscribe",
		       b->tokens[i].token);
}

/* Whether the recipient a bounce reports on (its Final-Recipient, "" when
 * it names none) can be the subscriber's address: the same, ignoring
 * case, spaces and angle brackets. */
static bool
same_address(const char *reported, const char *email)
{
	char a[256];
	size_t n = 0;
	const char *p;

	for (p = reported; *p != '\0' && n + 1 < sizeof(a); p++)
		if (*p != ' ' && *p != '\t' && *p != '<' && *p != '>')
			a[n++] = *p;
	a[n] = '\0';
	return n == 0 || strcasecmp(a, email) == 0;
}

/* Finds the subscriber the first valid token names: 1 found, 0 none, -1
 * store error (err set). */
static int
attribute(struct ctl *c, const struct kr_keyring *ring,
          const struct kr_bounce *b, int64_t now, struct kr_subscriber *sub,
          int64_t *report_out, struct kr_err *err)
{
	struct kr_token_claims tc;
	struct kr_err terr;
	size_t i;
	int found;

	for (i = 0; i < b->n_tokens; i++) {
		memset(&terr, 0, sizeof(terr));
		if (kr_token_peek(b->tokens[i].token, &tc, &terr) < 0 ||
		    tc.purpose != b->tokens[i].purpose)
			continue;
		found = kr_store_subscriber_get(c->store, tc.subscriber_id, sub,
		                                err);
		if (found < 0)
			return -1;
		if (found == 0)
			continue;
		if (kr_token_verify(ring, b->tokens[i].token,
		                    b->tokens[i].purpose, sub->list_id, now, 0,
		                    &tc, &terr) < 0 ||
		    !kr_token_fits(&tc, sub->created_at, sub->consent_at))
			continue;
		*report_out = tc.report_id;
		return 1;
	}
	return 0;
}

static int
ctl_bounce(struct ctl *c, int argc, char **argv)
{
	struct kr_bounce b;
	struct kr_subscriber sub;
	struct kr_bounce_row row;
	struct kr_bounce_policy pol;
	struct kr_bounce_result res;
	struct kr_keyring *ring = NULL;
	struct kr_err err = {0};
	const char *rcpt = NULL;
	char *msg = NULL;
	size_t len = 0;
	int64_t now = (int64_t)time(NULL), report_id = 0;
	int i, r = EX_TEMPFAIL_, found;
	int dry = 0;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--recipient") == 0 && i + 1 < argc) {
			rcpt = argv[++i];
		} else if (strncmp(argv[i], "--recipient=", 12) == 0) {
			rcpt = argv[i] + 12;
		} else if (strcmp(argv[i], "--dry-run") == 0) {
			dry = 1;
		} else if (strcmp(argv[i], "--help") == 0 ||
		           strcmp(argv[i], "-h") == 0) {
			fputs(bounce_usage, stdout);
			return CTL_OK;
		} else {
			fputs(bounce_usage, stderr);
			return EX_USAGE_;
		}
	}
	if (read_stdin(&msg, &len) < 0) {
		ctl_error("bounce: reading the message: %s; the MTA will "
		          "retry",
		          strerror(errno));
		goto out;
	}
	if (kr_bounce_parse(msg, len, rcpt, &b, &err) < 0) {
		ctl_error("bounce: %s", err.msg);
		goto out;
	}
	if (dry) {
		print_verdict(&b);
		r = CTL_OK;
		goto out;
	}
	if (b.kind == KR_BOUNCE_IGNORE) {
		ctl_error("bounce: ignored (%s%s%s)", b.reason,
		          b.source[0] ? ", " : "", b.source);
		r = CTL_OK;
		goto out;
	}
	if (b.n_tokens == 0) {
		ctl_error("bounce: ignored %s %s: no kairan token (not sent "
		          "by kairan, or no delivery.bounce_domain)",
		          kr_bounce_kind_name(b.kind), b.source);
		r = CTL_OK;
		goto out;
	}
	if (ctl_store(c) != CTL_OK) {
		ctl_error("bounce: store unavailable; the MTA will retry");
		goto out;
	}
	if (kr_token_keyring_load(c->cfg->key_file, 0, &ring, &err) < 0) {
		ctl_error("bounce: %s; the MTA will retry", err.msg);
		goto out;
	}
	if ((found = attribute(c, ring, &b, now, &sub, &report_id, &err)) < 0) {
		ctl_error("bounce: %s; the MTA will retry", err.msg);
		goto out;
	}
	if (found == 0) {
		ctl_error("bounce: ignored %s %s: no valid token (unknown "
		          "subscriber, forged or retired key)",
		          kr_bounce_kind_name(b.kind), b.source);
		r = CTL_OK;
		goto out;
	}
	if (b.kind != KR_BOUNCE_COMPLAINT && !same_address(b.recipient, sub.email)) {
		/* A genuine token in a report about someone else (a quoted
		 * copy, a forward that bounced) says nothing of this one. */
		ctl_error("bounce: ignored %s %s: it reports on <%s>, the token "
		          "names subscriber %lld (another address)",
		          kr_bounce_kind_name(b.kind), b.source, b.recipient,
		          (long long)sub.id);
		r = CTL_OK;
		goto out;
	}
	memset(&row, 0, sizeof(row));
	row.at = now;
	row.subscriber_id = sub.id;
	row.report_id = report_id;
	row.kind = (int)b.kind;
	snprintf(row.status, sizeof(row.status), "%s", b.status);
	snprintf(row.diagnostic, sizeof(row.diagnostic), "%s", b.diagnostic);
	snprintf(row.source, sizeof(row.source), "%s", b.source);
	pol.hard_threshold = c->cfg->bounce.hard_threshold;
	pol.soft_threshold = c->cfg->bounce.soft_threshold;
	pol.soft_window = c->cfg->bounce.soft_window;
	pol.reset_after = c->cfg->bounce.reset_after;
	if (kr_store_bounce_record(c->store, &row, &pol, &res, &err) < 0) {
		if (err.code == KR_ERR_NOTFOUND) {
			/* deleted between lookup and record */
			ctl_error("bounce: ignored: subscriber %lld is gone",
			          (long long)sub.id);
			r = CTL_OK;
		} else {
			ctl_error("bounce: %s; the MTA will retry", err.msg);
		}
		goto out;
	}
	ctl_error("bounce: recorded %s (%s%s%s) subscriber=%lld report=%lld "
	          "bounces=%d%s%s%s",
	          kr_bounce_kind_name(b.kind), b.source, b.status[0] ? " " : "",
	          b.status, (long long)sub.id, (long long)report_id,
	          res.bounces,
	          res.reset ? " (count restarted: the last counted bounce was "
	                      "older than bounce.reset_after)"
	                    : "",
	          res.bounced        ? " now bounced"
	          : res.unsubscribed ? " now unsubscribed"
	                             : "",
	          res.duplicate ? " (this copy bounced before: not counted)"
	          : res.counted || b.kind == KR_BOUNCE_COMPLAINT
	              ? ""
	              : " (not counted yet)");
	r = CTL_OK;
out:
	kr_token_keyring_free(&ring);
	free(msg);
	return r;
}

CTL_VERB(bounce, "bounce", ctl_bounce,
         "record one bounce or complaint read on stdin (MTA pipe)");

static const char *const kind_names[] = {"ignore", "hard", "soft", "complaint"};

static int
print_bounce(void *ctx, const struct kr_bounce_row *b)
{
	time_t t = (time_t)b->at;
	struct tm tm;
	char when[32] = "", diag[sizeof(b->diagnostic)], *p;

	(void)ctx;
	if (gmtime_r(&t, &tm) != NULL)
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M", &tm);
	/* No terminal control sequences from a stranger's diagnostic. */
	snprintf(diag, sizeof(diag), "%s", b->diagnostic);
	for (p = diag; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	printf("%-16s  %-9s  %-7s  %6lld  %6lld  %-5s  %s  %s\n", when,
	       (unsigned)b->kind < 4 ? kind_names[b->kind] : "?",
	       b->status[0] ? b->status : "-", (long long)b->report_id,
	       (long long)b->subscriber_id, b->source, b->email, diag);
	return ferror(stdout) ? -1 : 0;
}

static int
parse_num(const char *s, long long *out)
{
	char *end;

	errno = 0;
	*out = strtoll(s, &end, 10);
	return *s == '\0' || *end != '\0' || errno || *out < 0 ? -1 : 0;
}

static int
ctl_bounces(struct ctl *c, int argc, char **argv)
{
	struct kr_err err = {0};
	long long report = 0, limit = 50;
	int i, r;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 ||
		    strcmp(argv[i], "-h") == 0) {
			fputs(bounces_usage, stdout);
			return CTL_OK;
		} else if (strcmp(argv[i], "--report") == 0 && i + 1 < argc) {
			if (parse_num(argv[++i], &report) < 0) {
				ctl_error("bounces: --report wants a number");
				return CTL_USAGE;
			}
		} else if (strcmp(argv[i], "--limit") == 0 && i + 1 < argc) {
			if (parse_num(argv[++i], &limit) < 0) {
				ctl_error("bounces: --limit wants a number");
				return CTL_USAGE;
			}
		} else {
			fputs(bounces_usage, stderr);
			return CTL_USAGE;
		}
	}
	if ((r = ctl_store(c)) != CTL_OK)
		return r;
	printf("%-16s  %-9s  %-7s  %6s  %6s  %-5s  %s  %s\n", "WHEN (UTC)",
	       "KIND", "STATUS", "REPORT", "SUB", "FROM", "ADDRESS",
	       "DIAGNOSTIC");
	if (kr_store_bounce_foreach(c->store, (int64_t)report, (size_t)limit,
	                            print_bounce, NULL, &err) != 0) {
		ctl_error("bounces: %s", err.msg[0] ? err.msg : "write error");
		return CTL_FAIL;
	}
	return CTL_OK;
}

CTL_VERB(bounces, "bounces", ctl_bounces,
         "list recent bounces and complaints [--report N] [--limit N]");
