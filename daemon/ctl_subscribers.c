/* ctl_subscribers.c — `kairanctl subscribers add|remove|list|import|export`.
 * Argument handling and CSV mapping only; the rows go through store.h and
 * addresses through address.h. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "address.h"
#include "buf.h"
#include "config.h"
#include "csv.h"
#include "ctl.h"
#include "err.h"
#include "mime.h"
#include "store.h"
#include "xmem.h"

/* Rows per transaction of an import: big enough to be fast, small enough
 * that an interrupted import keeps most of its work. */
#define IMPORT_BATCH 10000

static const char *const status_names[] = {"pending", "active", "unsubscribed",
                                           "bounced"};

/* The columns of export, in order; import takes any subset in any order
 * (email required). */
enum col {
	COL_EMAIL,
	COL_NAME,
	COL_LIST,
	COL_STATUS,
	COL_CONSENT_AT,
	COL_CONSENT_SOURCE,
	COL_CONSENT_IP,
	COL_CONSENT_UA,
	COL_CONFIRMED_AT,
	COL_UNSUBSCRIBED_AT,
	COL_CREATED_AT,
	COL__N
};
static const char *const col_names[COL__N] = {
    "email",           "name",       "list",
    "status",          "consent_at", "consent_source",
    "consent_ip",      "consent_ua", "confirmed_at",
    "unsubscribed_at", "created_at"};

static const char usage_text[] =
    "usage: kairanctl subscribers add EMAIL [--list L] [--name N] "
    "[--confirmed]\n"
    "       kairanctl subscribers remove EMAIL [--list L] [--forget]\n"
    "       kairanctl subscribers consent EMAIL [--list L]\n"
    "       kairanctl subscribers list [--list L] [--status S]\n"
    "       kairanctl subscribers import FILE.csv [--list L] [--confirmed]\n"
    "       kairanctl subscribers export [--list L] > FILE.csv\n"
    "\n"
    "add        signs EMAIL up. Without --confirmed it is pending and a\n"
    "           confirmation mail is queued; with it, active at once\n"
    "           (only when the reader agreed elsewhere).\n"
    "remove     unsubscribes EMAIL (from every list without --list) and\n"
    "           cancels its queued mail; the consent record is kept\n"
    "           (特定電子メール法 Article 3). --forget then deletes the\n"
    "           subscription and every record of it (a privacy request)\n"
    "           once consent.retention has passed since the last report\n"
    "           mail, and otherwise says when it can (exit 1).\n"
    "consent    prints the whole record of EMAIL on each list: consent\n"
    "           (when, how, from where), confirmation, every mail with\n"
    "           its date and Message-ID, events, unsubscribe, and how long\n"
    "           it is kept.\n"
    "list       prints id, list, status, address, name and bounce count\n"
    "           (tab-separated); S is pending, active, unsubscribed or\n"
    "           bounced. `kairanctl bounces` lists the bounces.\n"
    "import     reads CSV (RFC 4180, UTF-8) with a header row naming the\n"
    "           columns: email (required), name, list, status, consent_at,\n"
    "           consent_source, consent_ip, consent_ua, confirmed_at,\n"
    "           unsubscribed_at, created_at (times: Unix seconds or ISO\n"
    "           8601). Addresses already on the list are left as they are,\n"
    "           so importing a file twice changes nothing. New rows are\n"
    "           pending and get a confirmation mail, unless --confirmed\n"
    "           (then active, consent_source import-confirmed). Rows with\n"
    "           status unsubscribed or bounced stay so and get no mail.\n"
    "           Bad rows are reported as FILE:LINE: reason; the rest is\n"
    "           imported.\n"
    "export     writes every subscription as CSV with all consent columns,\n"
    "           in the header import reads (export | import round-trips\n"
    "           with --confirmed).\n"
    "\n"
    "--list L   a list id of the config; add and import need it when the\n"
    "           config has more than one list.\n"
    "exit status: 0 ok, 1 failure (or some rows rejected), 2 usage\n";

static int KR_PRINTF(1, 2) usage_err(const char *fmt, ...)
{
	va_list ap;

	fputs("kairanctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n", stderr);
	fputs(usage_text, stderr);
	return CTL_USAGE;
}

static int
status_parse(const char *s)
{
	size_t i;

	for (i = 0; i < KR_NELEM(status_names); i++)
		if (strcasecmp(s, status_names[i]) == 0)
			return (int)i;
	return -1;
}

static const char *
status_name(enum kr_sub_status s)
{
	return (unsigned)s < KR_NELEM(status_names) ? status_names[s] : "?";
}

/* The list a row goes to: --list, or the only list of the config. */
static int
pick_list(const struct ctl *c, const char *opt, const char **out)
{
	const struct kr_config *cfg = c->cfg;

	if (opt != NULL) {
		if (kr_config_list(cfg, opt) == NULL) {
			ctl_error("no list '%s' in %s", opt, cfg->path);
			return CTL_USAGE;
		}
		*out = opt;
		return CTL_OK;
	}
	if (cfg->n_lists == 1) {
		*out = cfg->lists[0].id;
		return CTL_OK;
	}
	ctl_error("%s has %zu lists: name one with --list", cfg->path,
	          cfg->n_lists);
	return CTL_USAGE;
}

/* "2026-11-25T23:22:41Z", "" for 0. */
static void
fmt_time(int64_t t, char out[32])
{
	time_t tt = (time_t)t;
	struct tm tm;

	out[0] = '\0';
	if (t == 0 || gmtime_r(&tt, &tm) == NULL)
		return;
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Unix seconds, or ISO 8601 date[Thh:mm[:ss]][Z|±hh:mm] (UTC when no
 * zone is given). "" is 0. Returns 0 or -1. */
static int
parse_time(const char *s, int64_t *out)
{
	struct tm tm;
	const char *p;
	char *end;
	long long v;
	int sign, hh, mm;

	*out = 0;
	if (*s == '\0')
		return 0;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (*end == '\0' && errno == 0 && v >= 0) {
		*out = v;
		return 0;
	}
	memset(&tm, 0, sizeof(tm));
	if ((p = strptime(s, "%Y-%m-%d", &tm)) == NULL)
		return -1;
	if (*p == 'T' || *p == ' ') {
		const char *q = strptime(p + 1, "%H:%M:%S", &tm);

		if (q == NULL && (q = strptime(p + 1, "%H:%M", &tm)) == NULL)
			return -1;
		p = q;
		if (*p == '.') /* fractions of a second: dropped */
			for (p++; *p >= '0' && *p <= '9'; p++)
				;
	}
	*out = (int64_t)timegm(&tm);
	if (*p == 'Z' && p[1] == '\0')
		return 0;
	if (*p == '\0')
		return 0;
	if ((*p == '+' || *p == '-') &&
	    /* The count and the length check reject a bad offset. */
	    sscanf(p + 1, "%2d:%2d", &hh, &mm) == 2 && /* NOLINT(cert-err34-c) */
	    strlen(p) == 6) {
		sign = *p == '+' ? 1 : -1;
		*out -= sign * (hh * 3600 + mm * 60);
		return 0;
	}
	return -1;
}

/* ---- add / remove ---- */

static int
sub_add(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {{"list", 1, NULL, 'l'},
	                                     {"name", 1, NULL, 'n'},
	                                     {"confirmed", 0, NULL, 'c'},
	                                     {"help", 0, NULL, 'h'},
	                                     {NULL, 0, NULL, 0}};
	struct kr_subscriber sub, cur;
	struct kr_err err = {0};
	const char *list_opt = NULL, *name = NULL, *list = NULL;
	char addr[KR_ADDRESS_MAX];
	bool confirmed = false, added = false;
	int64_t now = (int64_t)time(NULL);
	int ch, r;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "l:n:ch", opts, NULL)) != -1) {
		switch (ch) {
		case 'l':
			list_opt = optarg;
			break;
		case 'n':
			name = optarg;
			break;
		case 'c':
			confirmed = true;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return CTL_OK;
		default:
			fputs(usage_text, stderr);
			return CTL_USAGE;
		}
	}
	if (optind != argc - 1)
		return usage_err("%s", "subscribers add: one EMAIL expected");
	if (kr_address_normalize(argv[optind], strlen(argv[optind]), addr,
	                         &err) < 0) {
		ctl_error("not an address: %s", err.msg);
		return CTL_USAGE;
	}
	if (name != NULL && (strlen(name) >= sizeof(sub.name) ||
	                     strpbrk(name, "\r\n\t") != NULL)) {
		ctl_error("--name: at most %zu bytes, on one line",
		          sizeof(sub.name) - 1);
		return CTL_USAGE;
	}
	if ((r = ctl_store(c)) != CTL_OK)
		return r;
	if ((r = pick_list(c, list_opt, &list)) != CTL_OK)
		return r;
	memset(&sub, 0, sizeof(sub));
	snprintf(sub.list_id, sizeof(sub.list_id), "%s", list);
	snprintf(sub.email, sizeof(sub.email), "%s", addr);
	snprintf(sub.name, sizeof(sub.name), "%s", name ? name : "");
	snprintf(sub.consent_source, sizeof(sub.consent_source), "cli");
	/* from where: the operator's command line */
	snprintf(sub.consent_ua, sizeof(sub.consent_ua),
	         "kairanctl subscribers add (uid %u)", (unsigned)getuid());
	sub.status = confirmed ? KR_SUB_ACTIVE : KR_SUB_PENDING;
	sub.created_at = sub.consent_at = now;
	sub.confirmed_at = confirmed ? now : 0;
	if (kr_store_begin(c->store, &err) < 0)
		goto fail;
	if (kr_store_subscriber_import(c->store, &sub, &added, &err) < 0)
		goto fail;
	if (kr_store_subscriber_find(c->store, list, addr, &cur, &err) < 0)
		goto fail;
	if (added && !confirmed &&
	    kr_store_confirm_enqueue(c->store, cur.id, now, &err) < 0)
		goto fail;
	if (kr_store_commit(c->store, &err) < 0)
		goto fail;
	if (added) {
		printf("added to %s (%s)%s\n", list, status_name(cur.status),
		       confirmed ? "" : "; confirmation mail queued");
		return CTL_OK;
	}
	printf("already on %s (%s); nothing changed\n", list,
	       status_name(cur.status));
	/* An unsubscribed reader is not signed up again by the operator. */
	return cur.status == KR_SUB_UNSUBSCRIBED || cur.status == KR_SUB_BOUNCED
	           ? CTL_FAIL
	           : CTL_OK;
fail:
	kr_store_rollback(c->store);
	ctl_error("%s", err.msg);
	return CTL_FAIL;
}

static int
sub_remove(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {{"list", 1, NULL, 'l'},
	                                     {"forget", 0, NULL, 'f'},
	                                     {"help", 0, NULL, 'h'},
	                                     {NULL, 0, NULL, 0}};
	struct kr_subscriber cur;
	struct kr_err err = {0};
	const char *list_opt = NULL;
	char addr[KR_ADDRESS_MAX];
	size_t i, removed = 0, found_any = 0, kept = 0;
	int64_t now = (int64_t)time(NULL);
	bool forget = false;
	int ch, r, found, n;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "l:fh", opts, NULL)) != -1) {
		switch (ch) {
		case 'l':
			list_opt = optarg;
			break;
		case 'f':
			forget = true;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return CTL_OK;
		default:
			fputs(usage_text, stderr);
			return CTL_USAGE;
		}
	}
	if (optind != argc - 1)
		return usage_err("%s",
		                 "subscribers remove: one EMAIL expected");
	if (kr_address_normalize(argv[optind], strlen(argv[optind]), addr,
	                         &err) < 0) {
		ctl_error("not an address: %s", err.msg);
		return CTL_USAGE;
	}
	if ((r = ctl_store(c)) != CTL_OK)
		return r;
	if (list_opt != NULL && kr_config_list(c->cfg, list_opt) == NULL) {
		ctl_error("no list '%s' in %s", list_opt, c->cfg->path);
		return CTL_USAGE;
	}
	for (i = 0; i < c->cfg->n_lists; i++) {
		const char *id = c->cfg->lists[i].id;

		if (list_opt != NULL && strcmp(list_opt, id) != 0)
			continue;
		found =
		    kr_store_subscriber_find(c->store, id, addr, &cur, &err);
		if (found < 0) {
			ctl_error("%s", err.msg);
			return CTL_FAIL;
		}
		if (found == 0)
			continue;
		found_any++;
		/* unsubscribed, not deleted: the consent record stays */
		n = 0;
		if ((cur.status == KR_SUB_PENDING ||
		     cur.status == KR_SUB_ACTIVE) &&
		    ((n = kr_store_subscriber_unsubscribe(
		          c->store, cur.id, false, 0, now, &err)) < 0 ||
		     kr_store_event(c->store, "remove", cur.id, 0, "operator",
		                    &err) < 0)) {
			ctl_error("%s", err.msg);
			return CTL_FAIL;
		}
		if (n > 0)
			printf("removed from %s (unsubscribed, queued mail "
			       "cancelled; the consent record is kept)\n",
			       id);
		else if (!forget)
			printf("already %s on %s (the consent record is "
			       "kept)\n",
			       status_name(cur.status), id);
		removed++;
		if (forget && ctl_sub_forget(c, &cur, now) != CTL_OK)
			kept++;
	}
	if (found_any == 0 || removed == 0) {
		ctl_error("not subscribed%s%s", list_opt ? " to " : "",
		          list_opt ? list_opt : "");
		return CTL_FAIL;
	}
	return kept > 0 ? CTL_FAIL : CTL_OK;
}

static int
sub_consent(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"list", 1, NULL, 'l'}, {"help", 0, NULL, 'h'}, {NULL, 0, NULL, 0}};
	struct kr_err err = {0};
	const char *list_opt = NULL;
	char addr[KR_ADDRESS_MAX];
	int ch, r;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "l:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'l':
			list_opt = optarg;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return CTL_OK;
		default:
			fputs(usage_text, stderr);
			return CTL_USAGE;
		}
	}
	if (optind != argc - 1)
		return usage_err("%s",
		                 "subscribers consent: one EMAIL expected");
	if (kr_address_normalize(argv[optind], strlen(argv[optind]), addr,
	                         &err) < 0) {
		ctl_error("not an address: %s", err.msg);
		return CTL_USAGE;
	}
	if ((r = ctl_store(c)) != CTL_OK)
		return r;
	if (list_opt != NULL && kr_config_list(c->cfg, list_opt) == NULL) {
		ctl_error("no list '%s' in %s", list_opt, c->cfg->path);
		return CTL_USAGE;
	}
	return ctl_sub_consent(c, addr, list_opt);
}

/* ---- list / export ---- */

static int
print_row(void *ctx, const struct kr_subscriber *s)
{
	(void)ctx;
	printf("%lld\t%s\t%s\t%s\t%s\t%d\n", (long long)s->id, s->list_id,
	       status_name(s->status), s->email, s->name, s->bounces);
	return ferror(stdout) ? -1 : 0;
}

static int
export_row(void *ctx, const struct kr_subscriber *s)
{
	struct kr_buf *b = ctx;
	char t[4][32];
	const char *v[COL__N];
	size_t i;
	int r = 0;

	fmt_time(s->consent_at, t[0]);
	fmt_time(s->confirmed_at, t[1]);
	fmt_time(s->unsubscribed_at, t[2]);
	fmt_time(s->created_at, t[3]);
	v[COL_EMAIL] = s->email;
	v[COL_NAME] = s->name;
	v[COL_LIST] = s->list_id;
	v[COL_STATUS] = status_name(s->status);
	v[COL_CONSENT_AT] = t[0];
	v[COL_CONSENT_SOURCE] = s->consent_source;
	v[COL_CONSENT_IP] = s->consent_ip;
	v[COL_CONSENT_UA] = s->consent_ua;
	v[COL_CONFIRMED_AT] = t[1];
	v[COL_UNSUBSCRIBED_AT] = t[2];
	v[COL_CREATED_AT] = t[3];
	kr_buf_reset(b);
	for (i = 0; i < COL__N && r == 0; i++) {
		if (i)
			r = kr_buf_putc(b, ',');
		if (r == 0)
			r = kr_csv_put_field(b, v[i]);
	}
	if (r == 0)
		r = kr_buf_puts(b, "\r\n");
	if (r == 0 && fwrite(b->data, 1, b->len, stdout) != b->len)
		r = -1;
	return r;
}

static int
sub_list_or_export(struct ctl *c, int argc, char **argv, bool export)
{
	static const struct option opts[] = {{"list", 1, NULL, 'l'},
	                                     {"status", 1, NULL, 's'},
	                                     {"help", 0, NULL, 'h'},
	                                     {NULL, 0, NULL, 0}};
	struct kr_err err = {0};
	struct kr_buf b;
	const char *list = NULL;
	int ch, r, status = -1;
	size_t i;

	optind = 0;
	while ((ch = getopt_long(argc, argv, export ? "l:h" : "l:s:h", opts,
	                         NULL)) != -1) {
		switch (ch) {
		case 'l':
			list = optarg;
			break;
		case 's':
			if (export || (status = status_parse(optarg)) < 0)
				return usage_err("--status: '%s' is not "
				                 "pending, active, "
				                 "unsubscribed or bounced",
				                 optarg);
			break;
		case 'h':
			fputs(usage_text, stdout);
			return CTL_OK;
		default:
			fputs(usage_text, stderr);
			return CTL_USAGE;
		}
	}
	if (optind != argc)
		return usage_err("unexpected argument '%s'", argv[optind]);
	if ((r = ctl_store(c)) != CTL_OK)
		return r;
	if (list != NULL && kr_config_list(c->cfg, list) == NULL) {
		ctl_error("no list '%s' in %s", list, c->cfg->path);
		return CTL_USAGE;
	}
	if (!export) {
		r = kr_store_subscriber_foreach(c->store, list, status,
		                                print_row, NULL, &err);
	} else {
		kr_buf_init(&b, 0);
		for (i = 0; i < COL__N; i++)
			printf("%s%s", i ? "," : "", col_names[i]);
		printf("\r\n");
		r = kr_store_subscriber_foreach(c->store, list, -1, export_row,
		                                &b, &err);
		kr_buf_fini(&b);
	}
	if (fflush(stdout) != 0 || ferror(stdout)) {
		ctl_error("writing the output: %s", strerror(errno));
		return CTL_FAIL;
	}
	if (r != 0) {
		ctl_error("%s", err.msg[0] ? err.msg : "output failed");
		return CTL_FAIL;
	}
	return CTL_OK;
}

/* ---- import ---- */

struct import {
	struct ctl *c;
	const char *file;
	const char *list_opt;
	bool confirmed;
	int cols[COL__N]; /* field index of each column, -1 when absent */
	int64_t now;
	long long added, present, rejected, confirmations;
	/* rows checked and waiting to go to the store together
	 * (kr_store_subscriber_import_many: one round trip on PostgreSQL) */
	struct kr_subscriber *batch;
	int64_t *ids;
	size_t n_batch;
};

/* Rows to the store per round trip. */
#define IMPORT_MANY 500

/* Stores the waiting rows; -1 on a store error. */
static int
import_flush(struct import *im, struct kr_err *err)
{
	size_t i;

	if (im->n_batch == 0)
		return 0;
	if (kr_store_subscriber_import_many(im->c->store, im->batch,
	                                    im->n_batch, im->ids, err) < 0)
		return -1;
	for (i = 0; i < im->n_batch; i++) {
		if (im->ids[i] == 0) {
			im->present++;
			continue;
		}
		im->added++;
		if (im->batch[i].status == KR_SUB_PENDING) {
			if (kr_store_confirm_enqueue(im->c->store, im->ids[i],
			                             im->now, err) < 0)
				return -1;
			im->confirmations++;
		}
	}
	im->n_batch = 0;
	return 0;
}

static void KR_PRINTF(3, 4)
    row_error(struct import *im, size_t line, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s:%zu: ", im->file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	im->rejected++;
}

static const char *
field(const struct import *im, const struct kr_csv *csv, enum col col)
{
	return im->cols[col] < 0 ? ""
	                         : kr_csv_field(csv, (size_t)im->cols[col]);
}

static int
read_header(struct import *im, struct kr_csv *csv)
{
	struct kr_err err = {0};
	size_t i, j, n;
	const char *name;
	int r;

	for (j = 0; j < COL__N; j++)
		im->cols[j] = -1;
	if ((r = kr_csv_read(csv, &err)) <= 0) {
		ctl_error("%s:%zu: %s", im->file, kr_csv_line(csv),
		          r == 0
		              ? "empty file: a header row naming the columns "
		                "(email, name, ...) was expected"
		              : err.msg);
		return -1;
	}
	n = kr_csv_nfields(csv);
	for (i = 0; i < n; i++) {
		name = kr_csv_field(csv, i);
		for (j = 0; j < COL__N; j++)
			if (strcasecmp(name, col_names[j]) == 0)
				break;
		if (j == COL__N) {
			fprintf(stderr, "%s:%zu: unknown column '%s' ignored\n",
			        im->file, kr_csv_line(csv), name);
			continue;
		}
		if (im->cols[j] >= 0) {
			ctl_error("%s:%zu: column '%s' twice", im->file,
			          kr_csv_line(csv), name);
			return -1;
		}
		im->cols[j] = (int)i;
	}
	if (im->cols[COL_EMAIL] < 0) {
		ctl_error("%s:%zu: no 'email' column in the header row",
		          im->file, kr_csv_line(csv));
		return -1;
	}
	return 0;
}

/* Copies v into dst or reports that it does not fit / holds controls. */
static bool
put(struct import *im, size_t line, const char *what, char *dst, size_t n,
    const char *v)
{
	const unsigned char *p;

	if (strlen(v) >= n) {
		row_error(im, line, "%s: longer than %zu bytes", what, n - 1);
		return false;
	}
	for (p = (const unsigned char *)v; *p; p++) {
		if (*p < 0x20 || *p == 0x7f) {
			row_error(im, line, "%s: control character", what);
			return false;
		}
	}
	/* A Latin-1 or Shift_JIS export would be stored as it is and reach
	 * mails and pages as garbage. */
	if (!kr_mime_utf8_valid(v, strlen(v))) {
		row_error(im, line,
		          "%s: not valid UTF-8, expected a UTF-8 file (convert "
		          "it, e.g. iconv -f LATIN1 -t UTF-8)",
		          what);
		return false;
	}
	memcpy(dst, v, strlen(v) + 1);
	return true;
}

static bool
put_time(struct import *im, size_t line, enum col col, const struct kr_csv *csv,
         int64_t *out)
{
	if (parse_time(field(im, csv, col), out) < 0) {
		row_error(im, line,
		          "%s: not a time (Unix seconds or ISO 8601, e.g. "
		          "2026-04-01T09:00:00Z)",
		          col_names[col]);
		return false;
	}
	return true;
}

/* One data row; false when rejected (reported). -1 on a store error. */
static int
import_row(struct import *im, const struct kr_csv *csv, size_t line,
           struct kr_err *err)
{
	struct kr_subscriber sub;
	struct kr_err aerr = {0};
	const char *email = field(im, csv, COL_EMAIL);
	const char *list = field(im, csv, COL_LIST);
	const char *st = field(im, csv, COL_STATUS);
	const char *src = field(im, csv, COL_CONSENT_SOURCE);
	char addr[KR_ADDRESS_MAX];
	int status;

	memset(&sub, 0, sizeof(sub));
	if (kr_address_normalize(email, strlen(email), addr, &aerr) < 0) {
		row_error(im, line, "email: %s", aerr.msg);
		return 0;
	}
	if (*list == '\0')
		list = im->list_opt;
	if (list == NULL && im->c->cfg->n_lists == 1)
		list = im->c->cfg->lists[0].id;
	if (list == NULL) {
		row_error(im, line,
		          "list: empty, and no --list given (the config has "
		          "several)");
		return 0;
	}
	if (kr_config_list(im->c->cfg, list) == NULL) {
		row_error(im, line, "list: no list '%s' in the config", list);
		return 0;
	}
	if (*st == '\0') {
		status = KR_SUB_ACTIVE;
	} else if ((status = status_parse(st)) < 0) {
		row_error(
		    im, line,
		    "status: '%s' is not pending, active, unsubscribed or "
		    "bounced",
		    st);
		return 0;
	}
	/* Consent is the operator's word only with --confirmed. */
	if (status == KR_SUB_ACTIVE && !im->confirmed)
		status = KR_SUB_PENDING;
	snprintf(sub.list_id, sizeof(sub.list_id), "%s", list);
	snprintf(sub.email, sizeof(sub.email), "%s", addr);
	sub.status = (enum kr_sub_status)status;
	if (*src == '\0')
		src = im->confirmed ? "import-confirmed" : "import";
	if (!put(im, line, "name", sub.name, sizeof(sub.name),
	         field(im, csv, COL_NAME)) ||
	    !put(im, line, "consent_source", sub.consent_source,
	         sizeof(sub.consent_source), src) ||
	    !put(im, line, "consent_ip", sub.consent_ip, sizeof(sub.consent_ip),
	         field(im, csv, COL_CONSENT_IP)) ||
	    !put(im, line, "consent_ua", sub.consent_ua, sizeof(sub.consent_ua),
	         field(im, csv, COL_CONSENT_UA)) ||
	    !put_time(im, line, COL_CONSENT_AT, csv, &sub.consent_at) ||
	    !put_time(im, line, COL_CONFIRMED_AT, csv, &sub.confirmed_at) ||
	    !put_time(im, line, COL_UNSUBSCRIBED_AT, csv,
	              &sub.unsubscribed_at) ||
	    !put_time(im, line, COL_CREATED_AT, csv, &sub.created_at))
		return 0;
	if (sub.created_at == 0)
		sub.created_at = im->now;
	if (sub.consent_at == 0)
		sub.consent_at = im->now;
	/* a file without consent_ip/consent_ua columns: where the consent
	 * came from is this file (an export has them: round trips keep) */
	if (im->cols[COL_CONSENT_IP] < 0 && im->cols[COL_CONSENT_UA] < 0)
		snprintf(sub.consent_ua, sizeof(sub.consent_ua),
		         "kairanctl subscribers import %.160s:%zu (uid %u)",
		         im->file, line, (unsigned)getuid());
	if (sub.status == KR_SUB_ACTIVE && sub.confirmed_at == 0)
		sub.confirmed_at = im->now;
	if (sub.status == KR_SUB_PENDING)
		sub.confirmed_at = 0;
	if (im->batch == NULL) {
		im->batch = kr_xcalloc(IMPORT_MANY, sizeof(*im->batch));
		im->ids = kr_xcalloc(IMPORT_MANY, sizeof(*im->ids));
	}
	im->batch[im->n_batch++] = sub;
	return im->n_batch == IMPORT_MANY ? import_flush(im, err) : 0;
}

static int
sub_import(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {{"list", 1, NULL, 'l'},
	                                     {"confirmed", 0, NULL, 'c'},
	                                     {"help", 0, NULL, 'h'},
	                                     {NULL, 0, NULL, 0}};
	struct import im;
	struct kr_err err = {0};
	struct kr_csv *csv = NULL;
	struct stat sb;
	FILE *f = NULL;
	long long total = 0, rows = 0, shown = 0;
	bool in_tx = false;
	int ch, r, rd;

	memset(&im, 0, sizeof(im));
	im.c = c;
	im.now = (int64_t)time(NULL);
	optind = 0;
	while ((ch = getopt_long(argc, argv, "l:ch", opts, NULL)) != -1) {
		switch (ch) {
		case 'l':
			im.list_opt = optarg;
			break;
		case 'c':
			im.confirmed = true;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return CTL_OK;
		default:
			fputs(usage_text, stderr);
			return CTL_USAGE;
		}
	}
	if (optind != argc - 1)
		return usage_err("%s", "subscribers import: one FILE expected");
	im.file = argv[optind];
	if ((r = ctl_store(c)) != CTL_OK)
		return r;
	if (im.list_opt != NULL &&
	    kr_config_list(c->cfg, im.list_opt) == NULL) {
		ctl_error("no list '%s' in %s", im.list_opt, c->cfg->path);
		return CTL_USAGE;
	}
	if (strcmp(im.file, "-") == 0) {
		f = stdin;
		im.file = "(stdin)";
	} else if ((f = fopen(im.file, "r")) == NULL) {
		ctl_error("%s: %s", im.file, strerror(errno));
		return CTL_FAIL;
	}
	if (fstat(fileno(f), &sb) == 0 && S_ISREG(sb.st_mode))
		total = (long long)sb.st_size;
	csv = kr_csv_new(f);
	/* No column may hold a line break, so a record is a line: a stray
	 * quote costs its own row only. */
	kr_csv_set_one_line(csv, true);
	r = CTL_FAIL;
	if (read_header(&im, csv) < 0)
		goto out;
	for (;;) {
		if (!in_tx) {
			if (kr_store_begin(c->store, &err) < 0)
				goto store_fail;
			in_tx = true;
		}
		rd = kr_csv_read(csv, &err);
		if (rd == 0)
			break;
		if (rd < 0 && err.code == KR_ERR_IO) {
			ctl_error("%s: %s", im.file, err.msg);
			goto out;
		}
		if (rd < 0)
			row_error(&im, kr_csv_line(csv), "%s", err.msg);
		else if (import_row(&im, csv, kr_csv_line(csv), &err) < 0)
			goto store_fail;
		if (++rows % IMPORT_BATCH == 0) {
			if (import_flush(&im, &err) < 0 ||
			    kr_store_commit(c->store, &err) < 0)
				goto store_fail;
			in_tx = false;
			shown = (long long)ftello(f) / 1024;
			ctl_progress(c, "import KiB", shown, total / 1024);
		}
	}
	if (import_flush(&im, &err) < 0 ||
	    kr_store_commit(c->store, &err) < 0)
		goto store_fail;
	in_tx = false;
	if (shown > 0 && shown < total / 1024)
		ctl_progress(c, "import KiB", total / 1024, total / 1024);
	printf("%s: %lld added, %lld already there, %lld rejected; %lld "
	       "confirmation mails queued\n",
	       im.file, im.added, im.present, im.rejected, im.confirmations);
	r = im.rejected ? CTL_FAIL : CTL_OK;
	goto out;
store_fail:
	ctl_error("%s (rows of the current batch were not imported; "
	          "running the import again is safe)",
	          err.msg);
out:
	if (in_tx)
		kr_store_rollback(c->store);
	free(im.batch);
	free(im.ids);
	kr_csv_free(&csv);
	if (f != NULL && f != stdin)
		fclose(f);
	return r;
}

static int
ctl_subscribers(struct ctl *c, int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : NULL;

	if (sub == NULL)
		return usage_err("%s", "subscribers: which command?");
	if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 ||
	    strcmp(sub, "help") == 0) {
		fputs(usage_text, stdout);
		return CTL_OK;
	}
	if (strcmp(sub, "add") == 0)
		return sub_add(c, argc - 1, argv + 1);
	if (strcmp(sub, "remove") == 0)
		return sub_remove(c, argc - 1, argv + 1);
	if (strcmp(sub, "list") == 0)
		return sub_list_or_export(c, argc - 1, argv + 1, false);
	if (strcmp(sub, "export") == 0)
		return sub_list_or_export(c, argc - 1, argv + 1, true);
	if (strcmp(sub, "import") == 0)
		return sub_import(c, argc - 1, argv + 1);
	if (strcmp(sub, "consent") == 0)
		return sub_consent(c, argc - 1, argv + 1);
	return usage_err("subscribers: unknown command '%s'", sub);
}

CTL_VERB(subscribers, "subscribers", ctl_subscribers,
         "add, remove, list, import, export subscribers (CSV); consent");
