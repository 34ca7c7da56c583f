/* admin.c — the admin listener's requests: GET /healthz and /metrics,
 * answered from the web module's counters and the store, and the
 * operator's read-only dashboard (/, /reports, /reports/ID: HTML with
 * inline SVG, no script, the public pages' CSP over its own sheet),
 * behind an HTTP Basic login when admin.password_file is set. See
 * web_int.h for what this file shares with web.c, which starts and stops
 * the listener. */
#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <microhttpd.h>
#include <sodium.h>

#include "buf.h"
#include "err.h"
#include "log.h"
#include "pages.h"
#include "store.h"
#include "web.h"
#include "web_int.h"
#include "xmem.h"

/* The route labels of kairan_http_requests_total, by enum route_label. */
static const char *const route_labels[RL_N] = {
    "/", "/subscribe", "/confirm", "/unsubscribe", "/archive", "other",
};

static void
metric(struct kr_buf *b, const char *name, const char *help,
       unsigned long value)
{
	if (kr_buf_printf(b, "# HELP %s %s\n# TYPE %s counter\n%s %lu\n", name,
	                  help, name, name, value) == -1)
		return;
}

/* kairan_http_requests_total{route,code}: the pairs seen so far. */
static void
metric_answers(struct kr_web *web, struct kr_buf *b)
{
	unsigned long n;
	size_t r, i;

	if (kr_buf_puts(b, "# HELP kairan_http_requests_total Answers on the "
	                   "public listener by route and status code.\n"
	                   "# TYPE kairan_http_requests_total counter\n") == -1)
		return;
	for (r = 0; r < RL_N; r++)
		for (i = 0; i < KR_WEB_CODE_N; i++) {
			n = atomic_load(&web->n_answers[r][i]);
			if (n == 0)
				continue;
			if (kr_buf_printf(
			        b,
			        "kairan_http_requests_total{route=\"%s\","
			        "code=\"%zu\"} %lu\n",
			        route_labels[r], i + KR_WEB_CODE_MIN, n) == -1)
				return;
		}
}

/* ---- the dashboard ---- */

/* A page past the buffer's cap is cut short, and says so by its end
 * missing: nothing to do per call. */
#define PUTS(b, s)                                                             \
	do {                                                                   \
		if (kr_buf_puts((b), (s)) == -1) {                             \
		}                                                              \
	} while (0)
#define PRINTF(b, ...)                                                         \
	do {                                                                   \
		if (kr_buf_printf((b), __VA_ARGS__) == -1) {                   \
		}                                                              \
	} while (0)

#define DASH_DAYS 90         /* the sign-up chart's span */
#define DASH_REPORTS 50      /* reports listed */
#define DASH_DOMAINS 10      /* a report's domains shown */
#define DASH_REPLIES 20      /* a report's reply groups shown */
#define DASH_BARS 240        /* most bars in the per-minute chart */
#define DASH_RATE_WINDOW 600 /* seconds the rate is measured over */
#define AUTH_MAX_FAILS 5     /* wrong logins per client per window */
#define AUTH_WINDOW 300.0    /* seconds */
#define AUTH_REMEMBER 600.0  /* a passed login is not checked again */

/* The words of the dashboard. */
struct dash_text {
	const char *lang, *title, *overview, *reports, *lists, *list;
	const char *st[4]; /* by enum kr_sub_status */
	const char *days_title, *signups, *unsubscribes, *relays, *health;
	const char *health_ok, *maildir, *store, *backend, *schema;
	const char *deliveries, *total, *report, *state, *progress, *rate;
	const char *eta, *per_min, *minutes, *hours, *bounces, *complaints;
	const char *unsubs, *complaint_rate, *gmail, *sent_chart, *domains;
	const char *domain, *replies, *reply, *copies, *paused_by, *none;
	const char *ds[6]; /* by enum kr_delivery_state */
	const char *rs[3]; /* by enum kr_report_state */
	const char *no_reports, *no_store, *not_found, *login, *too_many;
	const char *created;
};

static const struct dash_text dash_ja = {
    .lang = "ja",
    .title = "kairan ダッシュボード",
    .overview = "概要",
    .reports = "レポート",
    .lists = "リストと購読者",
    .list = "リスト",
    .st = {"確認待ち", "購読中", "配信停止", "不達"},
    .days_title = "登録と配信停止（日ごと、直近90日）",
    .signups = "登録",
    .unsubscribes = "配信停止",
    .relays = "リレーと稼働状況",
    .health = "状態",
    .health_ok = "正常",
    .maildir = "Maildir（テスト配信）",
    .store = "ストア",
    .backend = "種類",
    .schema = "スキーマ",
    .deliveries = "購読（全リスト）",
    .total = "合計",
    .report = "レポート",
    .state = "状態",
    .progress = "進捗",
    .rate = "速度",
    .eta = "完了見込み",
    .per_min = "通/分",
    .minutes = "分",
    .hours = "時間",
    .bounces = "不達（ハード）",
    .complaints = "苦情",
    .unsubs = "配信停止",
    .complaint_rate = "苦情率",
    .gmail = "Gmail の基準: 0.1 % 未満、0.3 % を超えないこと",
    .sent_chart = "1分ごとの送信数",
    .domains = "宛先ドメイン別（上位10）",
    .domain = "ドメイン",
    .replies = "リレーの応答（未送信分）",
    .reply = "応答",
    .copies = "通数",
    .paused_by = "ガバナーによる一時停止",
    .none = "なし",
    .ds = {"未送信", "送信済み", "再試行待ち", "失敗", "不確定", "取り消し"},
    .rs = {"配信中", "一時停止", "取り消し"},
    .no_reports = "まだレポートはありません。",
    .no_store = "ストアを読めません",
    .not_found = "見つかりません",
    .login = "ログインが必要です",
    .too_many = "ログインの失敗が多すぎます。しばらくしてから"
                "やり直してください。",
    .created = "登録日時",
};

static const struct dash_text dash_en = {
    .lang = "en",
    .title = "kairan dashboard",
    .overview = "Overview",
    .reports = "Reports",
    .lists = "Lists and subscribers",
    .list = "List",
    .st = {"pending", "active", "unsubscribed", "bounced"},
    .days_title = "Sign-ups and unsubscribes per day, last 90 days",
    .signups = "sign-ups",
    .unsubscribes = "unsubscribes",
    .relays = "Relays and health",
    .health = "Health",
    .health_ok = "ok",
    .maildir = "Maildir (dry run)",
    .store = "Store",
    .backend = "Backend",
    .schema = "Schema",
    .deliveries = "Subscriptions (all lists)",
    .total = "total",
    .report = "Report",
    .state = "State",
    .progress = "Progress",
    .rate = "Rate",
    .eta = "ETA",
    .per_min = "copies/min",
    .minutes = "min",
    .hours = "h",
    .bounces = "hard bounces",
    .complaints = "complaints",
    .unsubs = "unsubscribes",
    .complaint_rate = "Complaint rate",
    .gmail = "Gmail: keep it under 0.1 %, never above 0.3 %",
    .sent_chart = "Copies sent per minute",
    .domains = "By recipient domain (top 10)",
    .domain = "Domain",
    .replies = "Relay replies (copies not sent)",
    .reply = "Reply",
    .copies = "copies",
    .paused_by = "Paused by the governor",
    .none = "none",
    .ds = {"queued", "sent", "deferred", "failed", "uncertain", "cancelled"},
    .rs = {"sending", "paused", "cancelled"},
    .no_reports = "No reports yet.",
    .no_store = "The store cannot be read",
    .not_found = "Not found",
    .login = "Login required",
    .too_many = "Too many failed logins. Try again later.",
    .created = "Queued",
};

/* The state classes of the stylesheet, by enum kr_delivery_state. */
static const char *const ds_class[6] = {"queued", "sent",      "deferred",
                                        "failed", "uncertain", "cancelled"};

/* The language: the first of Accept-Language that is ja or en, else the
 * first list's. */
static const struct dash_text *
dash_lang(struct MHD_Connection *c, const struct view *v)
{
	const char *al =
	    MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Accept-Language");
	const char *p = al;

	while (p != NULL && *p != '\0') {
		p += strspn(p, " \t,");
		if (strncasecmp(p, "ja", 2) == 0 &&
		    (p[2] == '\0' || strchr("-;, ", p[2]) != NULL))
			return &dash_ja;
		if (strncasecmp(p, "en", 2) == 0 &&
		    (p[2] == '\0' || strchr("-;, ", p[2]) != NULL))
			return &dash_en;
		p = strchr(p, ',');
	}
	return strcmp(v->lang, "ja") == 0 ? &dash_ja : &dash_en;
}

static void
put_esc(struct kr_buf *b, const char *s)
{
	if (kr_web_html_escape(b, s != NULL ? s : "") == -1)
		return;
}

/* Unix time t as "YYYY-MM-DD HH:MM" (or the date alone) at offset. */
static void
fmt_time(int64_t t, int offset, bool date_only, char out[32])
{
	time_t tt = (time_t)(t + offset);
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(out, 32, date_only ? "%Y-%m-%d" : "%Y-%m-%d %H:%M", &tm);
}

static int64_t
sum_counts(const struct kr_delivery_counts *k)
{
	return k->queued + k->sent + k->deferred + k->failed + k->uncertain +
	       k->cancelled;
}

static int64_t
count_of(const struct kr_delivery_counts *k, int state)
{
	switch (state) {
	case KR_DS_QUEUED:
		return k->queued;
	case KR_DS_SENT:
		return k->sent;
	case KR_DS_DEFERRED:
		return k->deferred;
	case KR_DS_FAILED:
		return k->failed;
	case KR_DS_UNCERTAIN:
		return k->uncertain;
	default:
		return k->cancelled;
	}
}

/* The progress bar: one rect per state on a 1000-wide scale, in the
 * order sent, deferred, failed, uncertain, cancelled, queued; each rect's
 * width is its share (the rounding carried, so they add up to 1000). */
static void
put_progress(struct kr_buf *b, const struct dash_text *t,
             const struct kr_delivery_counts *k)
{
	static const int order[6] = {KR_DS_SENT,      KR_DS_DEFERRED,
	                             KR_DS_FAILED,    KR_DS_UNCERTAIN,
	                             KR_DS_CANCELLED, KR_DS_QUEUED};
	int64_t total = sum_counts(k), cum = 0, x0 = 0, x1, n;
	size_t i;

	PRINTF(b,
	       "<svg class=\"progress\" viewBox=\"0 0 1000 20\" "
	       "preserveAspectRatio=\"none\" role=\"img\" "
	       "aria-label=\"%s\" data-total=\"%" PRId64 "\">",
	       t->progress, total);
	for (i = 0; i < 6 && total > 0; i++) {
		n = count_of(k, order[i]);
		cum += n;
		x1 = (cum * 1000 + total / 2) / total;
		if (n > 0)
			PRINTF(b,
			       "<rect class=\"%s\" x=\"%" PRId64 "\" y=\"0\" "
			       "width=\"%" PRId64 "\" height=\"20\" "
			       "data-n=\"%" PRId64 "\"><title>%s %" PRId64
			       "</title></rect>",
			       ds_class[order[i]], x0, x1 - x0, n,
			       t->ds[order[i]], n);
		x0 = x1;
	}
	if (total == 0)
		PUTS(b, "<rect class=\"queued\" x=\"0\" y=\"0\" "
		        "width=\"1000\" height=\"20\"/>");
	PUTS(b, "</svg>\n<p class=\"key mut\">");
	for (i = 0; i < 6; i++) {
		PRINTF(b, "<span class=\"%s\"></span>", ds_class[order[i]]);
		put_esc(b, t->ds[order[i]]);
		PRINTF(b, " <b class=\"c-%s\">%" PRId64 "</b>",
		       ds_class[order[i]], count_of(k, order[i]));
	}
	PUTS(b, "</p>\n");
}

/* The complaint rate against Gmail's lines, on a 0..0.5 % scale. */
static void
put_complaints(struct kr_buf *b, const struct dash_text *t, int64_t sent,
               const struct kr_bounce_counts *bc)
{
	double rate =
	    sent > 0 ? (double)bc->complaint * 100.0 / (double)sent : 0.0;
	const char *cls = rate >= 0.3 ? "bad" : rate >= 0.1 ? "warn" : "ok";
	int64_t w = (int64_t)(rate * 1000.0 + 0.5);

	if (w > 500)
		w = 500;
	PRINTF(b, "<p>");
	put_esc(b, t->complaint_rate);
	PRINTF(b,
	       ": <b class=\"%s\" id=\"complaint-rate\">%.3f "
	       "%%</b> <span class=\"mut\">(",
	       cls, rate);
	put_esc(b, t->gmail);
	PRINTF(
	    b,
	    ")</span></p>\n<svg class=\"gauge\" viewBox=\"0 0 500 30\" "
	    "role=\"img\" aria-label=\"%.3f %%\"><rect class=\"queued\" "
	    "x=\"0\" y=\"4\" width=\"500\" height=\"14\"/><rect class=\"%s\" "
	    "x=\"0\" y=\"4\" width=\"%" PRId64 "\" height=\"14\" "
	    "id=\"complaint-bar\"/><line class=\"warnline\" x1=\"100\" "
	    "y1=\"0\" x2=\"100\" y2=\"22\"/><line class=\"badline\" "
	    "x1=\"300\" y1=\"0\" x2=\"300\" y2=\"22\"/><text x=\"100\" "
	    "y=\"30\" text-anchor=\"middle\">0.1 %%</text><text x=\"300\" "
	    "y=\"30\" text-anchor=\"middle\">0.3 %%</text></svg>\n",
	    rate,
	    strcmp(cls, "ok") == 0     ? "sent"
	    : strcmp(cls, "warn") == 0 ? "deferred"
	                               : "failed",
	    w);
}

/* ---- pages ---- */

struct page {
	struct kr_web *web;
	struct view *v;
	const struct dash_text *t;
	struct kr_store *s;
	struct kr_buf body;
	int64_t now;
	int offset;   /* of the first list's timezone */
	bool refresh; /* a report is sending: reload now and then */
	struct kr_err err;
};

static void
put_nav(struct page *p, const char *here)
{
	PUTS(&p->body, "<nav><a href=\"/\"");
	if (strcmp(here, "/") == 0)
		PUTS(&p->body, " aria-current=\"page\"");
	PUTS(&p->body, ">");
	put_esc(&p->body, p->t->overview);
	PUTS(&p->body, "</a><a href=\"/reports\"");
	if (strcmp(here, "/reports") == 0)
		PUTS(&p->body, " aria-current=\"page\"");
	PUTS(&p->body, ">");
	put_esc(&p->body, p->t->reports);
	PUTS(&p->body, "</a></nav>\n");
}

struct tally {
	const struct view *v;
	int64_t (*n)[4]; /* by list of v, status */
};

static int
tally_one(void *ctx, const char *list_id, enum kr_sub_status status, int64_t n)
{
	struct tally *ta = ctx;
	size_t i;

	for (i = 0; i < ta->v->n_lists; i++)
		if (strcmp(ta->v->lists[i].id, list_id) == 0 &&
		    (int)status >= 0 && (int)status < 4)
			ta->n[i][status] += n;
	return 0;
}

struct days {
	int64_t first; /* the chart's first day */
	int64_t su[DASH_DAYS], un[DASH_DAYS];
};

static int
day_one(void *ctx, int64_t day, int64_t signups, int64_t unsubs)
{
	struct days *d = ctx;
	int64_t i = (day - d->first) / 86400;

	if (i >= 0 && i < DASH_DAYS) {
		d->su[i] += signups;
		d->un[i] += unsubs;
	}
	return 0;
}

/* The 90-day chart: sign-ups up from the line (140 px at the busiest
 * day), unsubscribes down from it on the same scale, cut at 50 px (they
 * are few beside the sign-ups; the bar's title and data-n keep the
 * figure). */
static void
put_days_chart(struct page *p, const struct view_list *l, const struct days *d)
{
	struct kr_buf *b = &p->body;
	int64_t max = 1, tsu = 0, tun = 0, h;
	char a[32], z[32];
	size_t i;

	for (i = 0; i < DASH_DAYS; i++) {
		if (d->su[i] > max)
			max = d->su[i];
		if (d->un[i] > max)
			max = d->un[i];
		tsu += d->su[i];
		tun += d->un[i];
	}
	fmt_time(d->first, l->tz_offset, true, a);
	fmt_time(d->first + (DASH_DAYS - 1) * 86400, l->tz_offset, true, z);
	PUTS(b, "<h3>");
	put_esc(b, l->name);
	PRINTF(b, "</h3>\n<p class=\"key mut\"><span "
	          "class=\"signup\"></span>");
	put_esc(b, p->t->signups);
	PRINTF(b,
	       " <b class=\"c-signups\">%" PRId64 "</b><span "
	       "class=\"unsub\"></span>",
	       tsu);
	put_esc(b, p->t->unsubscribes);
	PRINTF(b,
	       " <b class=\"c-unsubs\">%" PRId64 "</b></p>\n"
	       "<svg class=\"days\" viewBox=\"0 0 920 230\" role=\"img\" "
	       "aria-label=\"",
	       tun);
	put_esc(b, p->t->days_title);
	PRINTF(b,
	       "\" data-list=\"%s\" data-max=\"%" PRId64 "\">"
	       "<line class=\"axis\" x1=\"20\" y1=\"155\" "
	       "x2=\"920\" y2=\"155\"/>"
	       "<text x=\"0\" y=\"12\">%" PRId64 "</text>",
	       l->id, max, max);
	for (i = 0; i < DASH_DAYS; i++) {
		char day[32];

		fmt_time(d->first + (int64_t)i * 86400, l->tz_offset, true,
		         day);
		if (d->su[i] > 0) {
			h = (d->su[i] * 140 + max - 1) / max;
			PRINTF(b,
			       "<rect class=\"signup\" x=\"%zu\" y=\"%" PRId64
			       "\" width=\"8\" height=\"%" PRId64 "\" "
			       "data-day=\"%s\" data-n=\"%" PRId64
			       "\"><title>%s "
			       "+%" PRId64 "</title></rect>",
			       20 + i * 10, 155 - h, h, day, d->su[i], day,
			       d->su[i]);
		}
		if (d->un[i] > 0) {
			h = (d->un[i] * 140 + max - 1) / max;
			if (h > 50)
				h = 50;
			PRINTF(b,
			       "<rect class=\"unsub\" x=\"%zu\" y=\"155\" "
			       "width=\"8\" height=\"%" PRId64 "\" "
			       "data-day=\"%s\" data-n=\"%" PRId64
			       "\"><title>%s "
			       "-%" PRId64 "</title></rect>",
			       20 + i * 10, h, day, d->un[i], day, d->un[i]);
		}
	}
	PRINTF(b,
	       "<text x=\"20\" y=\"226\">%s</text><text "
	       "x=\"920\" y=\"226\" text-anchor=\"end\">%s"
	       "</text></svg>\n",
	       a, z);
}

static int
page_overview(struct page *p)
{
	const struct view *v = p->v;
	const struct dash_text *t = p->t;
	struct kr_buf *b = &p->body;
	struct tally ta = {v, NULL};
	int64_t all = 0;
	struct days *d = NULL;
	struct kr_buf health;
	kr_web_health_fn hfn;
	void *hctx;
	size_t i;
	int j, rc = -1;

	kr_buf_init(&health, 0);
	ta.n = kr_xcalloc(v->n_lists, sizeof(*ta.n));
	d = kr_xmalloc(sizeof(*d));
	put_nav(p, "/");
	PUTS(b, "<h1>");
	put_esc(b, t->title);
	PUTS(b, "</h1>\n<h2>");
	put_esc(b, t->lists);
	PUTS(b, "</h2>\n<div class=\"tw\"><table id=\"lists\">"
	        "<tr><th>");
	put_esc(b, t->list);
	PUTS(b, "</th>");
	for (j = 0; j < 4; j++) {
		PUTS(b, "<th class=\"n\">");
		put_esc(b, t->st[j]);
		PUTS(b, "</th>");
	}
	PUTS(b, "</tr>\n");
	if (kr_store_subscriber_tally(p->s, tally_one, &ta, &p->err) == -1)
		goto out;
	for (i = 0; i < v->n_lists; i++) {
		PRINTF(b, "<tr data-list=\"");
		put_esc(b, v->lists[i].id);
		PUTS(b, "\"><td>");
		put_esc(b, v->lists[i].name);
		PUTS(b, " <span class=\"mut\">");
		put_esc(b, v->lists[i].id);
		PUTS(b, "</span></td>");
		for (j = 0; j < 4; j++) {
			PRINTF(b, "<td class=\"n st-%d\">%" PRId64 "</td>", j,
			       ta.n[i][j]);
			all += ta.n[i][j];
		}
		PUTS(b, "</tr>\n");
	}
	PUTS(b, "</table></div>\n<h2>");
	put_esc(b, t->days_title);
	PUTS(b, "</h2>\n");
	for (i = 0; i < v->n_lists; i++) {
		int off = v->lists[i].tz_offset;

		memset(d, 0, sizeof(*d));
		/* today's first second, then 89 days back */
		d->first = (p->now + off) / 86400 * 86400 - off -
		           (int64_t)(DASH_DAYS - 1) * 86400;
		if (kr_store_subscriber_days(p->s, v->lists[i].id, d->first,
		                             off, day_one, d, &p->err) == -1)
			goto out;
		put_days_chart(p, &v->lists[i], d);
	}

	PUTS(b, "<div class=\"grid\"><section class=\"card\" "
	        "id=\"relays\"><h2>");
	put_esc(b, t->relays);
	PUTS(b, "</h2>\n<ul>");
	if (v->maildir) {
		PUTS(b, "<li>");
		put_esc(b, t->maildir);
		PUTS(b, "</li>");
	}
	for (i = 0; i < v->n_relays; i++) {
		PUTS(b, "<li><code>");
		put_esc(b, v->relays[i]);
		PUTS(b, "</code></li>");
	}
	PUTS(b, "</ul>\n<p>");
	put_esc(b, t->health);
	PUTS(b, ": ");
	pthread_mutex_lock(&p->web->lock);
	hfn = p->web->health_fn;
	hctx = p->web->health_ctx;
	pthread_mutex_unlock(&p->web->lock);
	if (kr_store_ping(p->s, &p->err) != 0 &&
	    kr_buf_printf(&health, "store: %s\n", p->err.msg) < 0)
		goto out;
	kr_err_clear(&p->err);
	if (hfn != NULL)
		(void)hfn(hctx, &health);
	if (health.len == 0) {
		PUTS(b, "<b class=\"ok\" id=\"health\">");
		put_esc(b, t->health_ok);
		PUTS(b, "</b></p>\n");
	} else {
		PUTS(b, "<b class=\"bad\" id=\"health\">");
		put_esc(b, health.data);
		PUTS(b, "</b></p>\n");
	}
	PUTS(b, "</section>\n<section class=\"card\" "
	        "id=\"store\"><h2>");
	put_esc(b, t->store);
	PUTS(b, "</h2>\n<p>");
	put_esc(b, t->backend);
	PUTS(b, ": <b>");
	put_esc(b, kr_store_backend(p->s));
	PUTS(b, "</b> · ");
	put_esc(b, t->schema);
	PRINTF(b, ": v%d</p>\n<p class=\"mut\"><code>",
	       kr_store_schema_version());
	put_esc(b, v->database);
	/* No count of every delivery here: at ten million rows that is
	 * seconds (each report's own are on /reports). */
	PUTS(b, "</code></p>\n<p>");
	put_esc(b, t->deliveries);
	PRINTF(b, ": <b id=\"subs-total\">%" PRId64 "</b></p>\n", all);
	PUTS(b, "</section></div>\n");
	rc = 0;
out:
	kr_buf_fini(&health);
	free(ta.n);
	free(d);
	return rc;
}

struct series {
	int64_t *start, *n;
	size_t len, cap;
};

static int
series_one(void *ctx, int64_t start, int64_t n)
{
	struct series *se = ctx;

	if (se->len == se->cap) {
		se->cap = se->cap ? se->cap * 2 : 64;
		se->start = kr_xrealloc(se->start, se->cap * sizeof(int64_t));
		se->n = kr_xrealloc(se->n, se->cap * sizeof(int64_t));
	}
	se->start[se->len] = start;
	se->n[se->len] = n;
	se->len++;
	return 0;
}

static void
series_fini(struct series *se)
{
	free(se->start);
	free(se->n);
	memset(se, 0, sizeof(*se));
}

/* Copies per minute over the last DASH_RATE_WINDOW seconds. */
static double
series_rate(const struct series *se, int64_t now)
{
	int64_t n = 0;
	size_t i;

	for (i = 0; i < se->len; i++)
		if (se->start[i] >= now - DASH_RATE_WINDOW)
			n += se->n[i];
	return (double)n * 60.0 / DASH_RATE_WINDOW;
}

static void
put_rate_eta(struct page *p, const struct kr_delivery_counts *k, double rate,
             bool paused)
{
	const struct dash_text *t = p->t;
	/* deferred copies wait for their retry, not for the rate */
	int64_t left = k->queued;

	PUTS(&p->body, "<p>");
	put_esc(&p->body, t->rate);
	PRINTF(&p->body, ": <b class=\"rate\">%.1f</b> ", rate);
	put_esc(&p->body, t->per_min);
	PUTS(&p->body, " · ");
	put_esc(&p->body, t->eta);
	PUTS(&p->body, ": <b class=\"eta\">");
	if (left == 0) {
		PUTS(&p->body, "0");
	} else if (rate <= 0.0 || paused) {
		/* a paused report ends when someone resumes it */
		PUTS(&p->body, "—");
	} else {
		double m = (double)left / rate;

		if (m < 120.0)
			PRINTF(&p->body, "%.0f %s", m + 0.5, t->minutes);
		else
			PRINTF(&p->body, "%.1f %s", m / 60.0, t->hours);
	}
	PUTS(&p->body, "</b></p>\n");
}

static void
put_outcomes(struct page *p, const struct kr_delivery_counts *k,
             const struct kr_bounce_counts *bc)
{
	PRINTF(&p->body, "<p class=\"outcomes\">");
	put_esc(&p->body, p->t->bounces);
	PRINTF(&p->body, " <b class=\"c-hard\">%" PRId64 "</b> · ", bc->hard);
	put_esc(&p->body, p->t->complaints);
	PRINTF(&p->body, " <b class=\"c-complaints\">%" PRId64 "</b> · ",
	       bc->complaint);
	put_esc(&p->body, p->t->unsubs);
	PRINTF(&p->body, " <b class=\"c-unsubscribed\">%" PRId64 "</b></p>\n",
	       bc->unsubscribed);
	put_complaints(&p->body, p->t, k->sent, bc);
}

static int
report_one(void *ctx, const struct kr_report_row *r,
           const struct kr_delivery_counts *k)
{
	struct page *p = ctx;
	struct kr_bounce_counts bc;
	struct series se = {0};
	char when[32];
	int rc = -1;

	if (kr_store_bounce_counts(p->s, r->id, &bc, &p->err) == -1)
		goto out;
	/* the rate only where copies are left, from the minutes of the
	 * window alone */
	if (k->queued + k->deferred > 0 &&
	    kr_store_report_sent_series(p->s, r->id, 60,
	                                (p->now - DASH_RATE_WINDOW) / 60 * 60,
	                                series_one, &se, &p->err) == -1)
		goto out;
	if (k->queued + k->deferred > 0 && r->state == KR_RS_ACTIVE)
		p->refresh = true;
	fmt_time(r->created_at, p->offset, false, when);
	PRINTF(&p->body,
	       "<section class=\"card report\" "
	       "id=\"report-%" PRId64 "\"><h2><a "
	       "href=\"/reports/%" PRId64 "\">",
	       r->id, r->id);
	put_esc(&p->body, r->subject);
	PRINTF(&p->body, "</a></h2>\n<p class=\"mut\">#%" PRId64 " · ", r->id);
	put_esc(&p->body, r->list_id);
	PRINTF(&p->body, " · %s · ", when);
	put_esc(&p->body,
	        p->t->rs[r->state >= 0 && r->state < 3 ? r->state : 0]);
	PUTS(&p->body, "</p>\n");
	put_progress(&p->body, p->t, k);
	put_rate_eta(p, k, series_rate(&se, p->now), r->state == KR_RS_PAUSED);
	put_outcomes(p, k, &bc);
	PUTS(&p->body, "</section>\n");
	rc = 0;
out:
	series_fini(&se);
	return rc;
}

static int
page_reports(struct page *p)
{
	size_t before;

	put_nav(p, "/reports");
	PUTS(&p->body, "<h1>");
	put_esc(&p->body, p->t->reports);
	PUTS(&p->body, "</h1>\n");
	before = p->body.len;
	if (kr_store_report_foreach(p->s, DASH_REPORTS, report_one, p,
	                            &p->err) != 0)
		return -1;
	if (p->body.len == before) {
		PUTS(&p->body, "<p class=\"mut\">");
		put_esc(&p->body, p->t->no_reports);
		PUTS(&p->body, "</p>\n");
	}
	return 0;
}

/* The per-minute chart; buckets are merged when there are more than
 * DASH_BARS minutes between the first and the last. */
static void
put_sent_chart(struct page *p, const struct series *se)
{
	struct kr_buf *b = &p->body;
	int64_t first, last, step, nb, i, max = 1, *bars;
	char a[32], z[32];
	size_t j;

	PUTS(b, "<h2>");
	put_esc(b, p->t->sent_chart);
	PUTS(b, "</h2>\n");
	if (se->len == 0) {
		PUTS(b, "<p class=\"mut\">—</p>\n");
		return;
	}
	first = se->start[0];
	last = se->start[se->len - 1];
	step = 60;
	while ((last - first) / step + 1 > DASH_BARS)
		step *= 2;
	nb = (last - first) / step + 1;
	bars = kr_xcalloc((size_t)nb, sizeof(*bars));
	for (j = 0; j < se->len; j++)
		bars[(se->start[j] - first) / step] += se->n[j];
	for (i = 0; i < nb; i++)
		if (bars[i] > max)
			max = bars[i];
	fmt_time(first, p->offset, false, a);
	fmt_time(last, p->offset, false, z);
	PRINTF(b,
	       "<svg class=\"perminute\" viewBox=\"0 0 920 180\" "
	       "role=\"img\" aria-label=\"%s\" data-step=\"%" PRId64
	       "\" data-max=\"%" PRId64 "\"><line class=\"axis\" "
	       "x1=\"20\" y1=\"160\" x2=\"920\" y2=\"160\"/>"
	       "<text x=\"0\" y=\"12\">%" PRId64 "</text>",
	       p->t->sent_chart, step, max, max);
	for (i = 0; i < nb; i++) {
		double w = 900.0 / (double)nb;
		int64_t h = (bars[i] * 150 + max - 1) / max;

		if (bars[i] == 0)
			continue;
		PRINTF(b,
		       "<rect class=\"sent\" x=\"%.1f\" y=\"%" PRId64 "\" "
		       "width=\"%.1f\" height=\"%" PRId64 "\" data-n=\"%" PRId64
		       "\"><title>%" PRId64 "</title></rect>",
		       20.0 + w * (double)i, 160 - h, w > 2 ? w - 1 : w, h,
		       bars[i], bars[i]);
	}
	PRINTF(b,
	       "<text x=\"20\" y=\"176\">%s</text><text "
	       "x=\"920\" y=\"176\" text-anchor=\"end\">%s"
	       "</text></svg>\n",
	       a, z);
	free(bars);
}

static int
domain_one(void *ctx, const char *domain, const struct kr_delivery_counts *c)
{
	struct page *p = ctx;
	int s;

	PUTS(&p->body, "<tr><td>");
	put_esc(&p->body, domain);
	PUTS(&p->body, "</td>");
	for (s = 1; s < 6; s++)
		PRINTF(&p->body, "<td class=\"n\">%" PRId64 "</td>",
		       count_of(c, s));
	PRINTF(&p->body, "<td class=\"n\">%" PRId64 "</td></tr>\n",
	       count_of(c, 0));
	return 0;
}

static int
reply_one(void *ctx, enum kr_delivery_state state, int code, const char *reply,
          int64_t n)
{
	struct page *p = ctx;

	(void)code;
	PRINTF(&p->body, "<tr class=\"%s\"><td>",
	       ds_class[state >= 0 && state < 6 ? state : 0]);
	put_esc(&p->body, p->t->ds[state >= 0 && state < 6 ? state : 0]);
	PUTS(&p->body, "</td><td><code>");
	put_esc(&p->body, reply[0] != '\0' ? reply : "—");
	PRINTF(&p->body,
	       "</code></td><td class=\"n\">× %" PRId64 "</td></tr>\n", n);
	return 0;
}

static int
page_report(struct page *p, int64_t id)
{
	const struct dash_text *t = p->t;
	struct kr_buf *b = &p->body;
	struct kr_report_row r;
	struct kr_delivery_counts k;
	struct kr_bounce_counts bc;
	struct series se = {0};
	int64_t ack_c, ack_b;
	char reason[256] = "", when[32];
	int s, rc = -1, found;

	memset(&r, 0, sizeof(r));
	found = kr_store_report_get(p->s, id, &r, &p->err);
	if (found <= 0) {
		rc = found == 0 ? 1 : -1;
		goto out;
	}
	if (kr_store_delivery_counts(p->s, id, &k, &p->err) == -1 ||
	    kr_store_bounce_counts(p->s, id, &bc, &p->err) == -1 ||
	    kr_store_report_governor_acked(p->s, id, &ack_c, &ack_b, reason,
	                                   sizeof(reason), &p->err) == -1 ||
	    kr_store_report_sent_series(p->s, id, 60, 0, series_one, &se,
	                                &p->err) == -1)
		goto out;
	if (k.queued + k.deferred > 0 && r.state == KR_RS_ACTIVE)
		p->refresh = true;
	put_nav(p, "/reports");
	PUTS(b, "<h1>");
	put_esc(b, r.subject);
	fmt_time(r.created_at, p->offset, false, when);
	PRINTF(b, "</h1>\n<p class=\"mut\">#%" PRId64 " · ", id);
	put_esc(b, r.list_id);
	PRINTF(b, " · %s · <b id=\"state\">", when);
	put_esc(b, t->rs[r.state >= 0 && r.state < 3 ? r.state : 0]);
	PUTS(b, "</b></p>\n");
	if (reason[0] != '\0') {
		/* the governor's own words may start with what the
		 * label says */
		static const char said[] = "paused by the governor: ";
		const char *why = reason;

		if (strncmp(why, said, sizeof(said) - 1) == 0)
			why += sizeof(said) - 1;
		PUTS(b, "<p class=\"bad\" id=\"governor\">");
		put_esc(b, t->paused_by);
		PUTS(b, ": ");
		put_esc(b, why);
		PUTS(b, "</p>\n");
	}
	put_progress(b, t, &k);
	put_rate_eta(p, &k, series_rate(&se, p->now), r.state == KR_RS_PAUSED);
	put_outcomes(p, &k, &bc);
	put_sent_chart(p, &se);

	PUTS(b, "<h2>");
	put_esc(b, t->domains);
	PUTS(b, "</h2>\n<div class=\"tw\"><table id=\"domains\">"
	        "<tr><th>");
	put_esc(b, t->domain);
	PUTS(b, "</th>");
	for (s = 1; s <= 6; s++) {
		PUTS(b, "<th class=\"n\">");
		put_esc(b, t->ds[s % 6]);
		PUTS(b, "</th>");
	}
	PUTS(b, "</tr>\n");
	if (kr_store_report_domains(p->s, id, DASH_DOMAINS, domain_one, p,
	                            &p->err) == -1)
		goto out;
	PUTS(b, "</table></div>\n<h2>");
	put_esc(b, t->replies);
	PUTS(b, "</h2>\n<div class=\"tw\"><table id=\"replies\">"
	        "<tr><th>");
	put_esc(b, t->state);
	PUTS(b, "</th><th>");
	put_esc(b, t->reply);
	PUTS(b, "</th><th class=\"n\">");
	put_esc(b, t->copies);
	PUTS(b, "</th></tr>\n");
	if (kr_store_report_replies(p->s, id, DASH_REPLIES, reply_one, p,
	                            &p->err) == -1)
		goto out;
	PUTS(b, "</table></div>\n");
	rc = 0;
out:
	series_fini(&se);
	kr_store_report_row_fini(&r);
	return rc;
}

/* ---- answers ---- */

static enum MHD_Result
send_page(struct kr_web *web, struct MHD_Connection *c, unsigned status,
          const struct dash_text *t, const char *title, const char *body,
          bool refresh, unsigned retry_after, bool ask_login)
{
	const struct kr_web_var vars[] = {
	    {"lang", t->lang, false},
	    {"title", title, false},
	    {"style", web->dash_style, true},
	    {"head",
	     refresh ? "<meta http-equiv=\"refresh\" content=\"30\">\n" : "",
	     true},
	    {"body", body, true},
	};
	struct MHD_Response *r;
	struct kr_buf page;
	enum MHD_Result ret = MHD_NO;
	char num[24];

	kr_buf_init(&page, 0);
	if (kr_web_render(&page, kr_pages_layout, vars, KR_NELEM(vars)) == -1)
		goto out;
	r = MHD_create_response_from_buffer(page.len, page.data,
	                                    MHD_RESPMEM_MUST_COPY);
	if (r == NULL)
		goto out;
	MHD_add_response_header(r, "Content-Type", "text/html; charset=utf-8");
	MHD_add_response_header(r, "Content-Language", t->lang);
	MHD_add_response_header(r, "Cache-Control", "no-store");
	kr_web_add_headers(r, web->csp_admin);
	if (retry_after > 0) {
		snprintf(num, sizeof(num), "%u", retry_after);
		MHD_add_response_header(r, "Retry-After", num);
	}
	if (ask_login)
		MHD_add_response_header(r, "WWW-Authenticate",
		                        "Basic realm=\"kairan\", "
		                        "charset=\"UTF-8\"");
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
out:
	kr_buf_fini(&page);
	return ret;
}

static enum MHD_Result
send_short(struct kr_web *web, struct MHD_Connection *c, unsigned status,
           const struct dash_text *t, const char *msg, unsigned retry_after,
           bool ask_login)
{
	struct kr_buf body;
	enum MHD_Result ret;

	kr_buf_init(&body, 0);
	PUTS(&body, "<h1>");
	put_esc(&body, msg);
	PUTS(&body, "</h1>\n");
	ret = send_page(web, c, status, t, msg,
	                body.data != NULL ? body.data : "", false, retry_after,
	                ask_login);
	kr_buf_fini(&body);
	return ret;
}

/* ---- the login ---- */

int
kr_web_read_hash(const char *path, char **hash_out, struct kr_err *err)
{
	char line[crypto_pwhash_STRBYTES + 2];
	FILE *fp = fopen(path, "r");
	size_t n;
	int rc = -1;

	*hash_out = NULL;
	if (fp == NULL)
		return kr_err_set(err, KR_ERR_INVALID,
		                  "admin.password_file: %s: cannot be read",
		                  path);
	if (fgets(line, sizeof(line), fp) == NULL)
		line[0] = '\0';
	fclose(fp);
	n = strcspn(line, "\r\n");
	line[n] = '\0';
	if (strncmp(line, "$argon2", 7) != 0 || n >= crypto_pwhash_STRBYTES) {
		kr_err_set(err, KR_ERR_INVALID,
		           "admin.password_file: %s: expected one line, a "
		           "password hash from `kairanctl password-hash`",
		           path);
		goto out;
	}
	*hash_out = kr_xstrdup(line);
	rc = 0;
out:
	sodium_memzero(line, sizeof(line));
	return rc;
}

static double
mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The client a login failure is counted against: the peer, or the
 * address a trusted proxy forwarded for. */
static void
auth_key(struct MHD_Connection *c, const struct view *v,
         char out[KR_WEB_IP_MAX])
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	char peer[KR_WEB_IP_MAX] = "?";
	const struct sockaddr *sa = ci != NULL ? ci->client_addr : NULL;

	if (sa != NULL && sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr,
		          peer, sizeof(peer));
	else if (sa != NULL && sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6,
		          &((const struct sockaddr_in6 *)sa)->sin6_addr, peer,
		          sizeof(peer));
	kr_web_client_ip(
	    v->trusted, peer,
	    MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Forwarded-For"),
	    out);
}

static struct kr_web_auth_slot *
auth_slot(struct kr_web *web, const char *key, double now, bool make)
{
	struct kr_web_auth_slot *oldest = &web->auth[0];
	size_t i;

	for (i = 0; i < KR_WEB_AUTH_SLOTS; i++) {
		struct kr_web_auth_slot *sl = &web->auth[i];

		if (sl->key[0] != '\0' && strcmp(sl->key, key) == 0) {
			if (now - sl->since >= AUTH_WINDOW) {
				sl->fails = 0;
				sl->since = now;
			}
			return sl;
		}
		if (sl->key[0] == '\0' || sl->since < oldest->since)
			oldest = sl;
	}
	if (!make)
		return NULL;
	/* The table is full: the oldest window gives way. */
	snprintf(oldest->key, sizeof(oldest->key), "%s", key);
	oldest->fails = 0;
	oldest->since = now;
	return oldest;
}

/* 0: let in; 401: no or wrong credentials; 429: too many failures
 * (*retry_out seconds left). Called with web->dash_lock held. */
static unsigned
auth_check(struct kr_web *web, struct MHD_Connection *c, const struct view *v,
           unsigned *retry_out)
{
	const char *h =
	    MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
	unsigned char dig[32], *raw = NULL;
	char key[KR_WEB_IP_MAX];
	struct kr_web_auth_slot *sl;
	double now = mono_now();
	size_t hlen, rawlen = 0, ulen;
	const char *colon;
	unsigned ret = 401;
	bool ok;

	auth_key(c, v, key);
	sl = auth_slot(web, key, now, false);
	if (sl != NULL && sl->fails >= AUTH_MAX_FAILS) {
		*retry_out = (unsigned)(AUTH_WINDOW - (now - sl->since)) + 1;
		return 429;
	}
	if (h == NULL || strncasecmp(h, "Basic ", 6) != 0)
		return 401; /* asked, not failed */
	h += 6;
	h += strspn(h, " ");
	hlen = strlen(h);
	if (hlen > 1024)
		goto fail;
	crypto_hash_sha256(dig, (const unsigned char *)h, hlen);
	if (web->auth_ok_at > 0 && now - web->auth_ok_at < AUTH_REMEMBER &&
	    web->auth_ok_gen == v->gen &&
	    sodium_memcmp(dig, web->auth_ok, sizeof(dig)) == 0)
		return 0;
	raw = sodium_malloc(hlen + 1);
	if (raw == NULL ||
	    sodium_base642bin(raw, hlen, h, hlen, NULL, &rawlen, NULL,
	                      sodium_base64_VARIANT_ORIGINAL) != 0)
		goto fail;
	raw[rawlen] = '\0';
	colon = memchr(raw, ':', rawlen);
	if (colon == NULL)
		goto fail;
	ulen = (size_t)(colon - (const char *)raw);
	ok = ulen == strlen(v->admin_user) &&
	     memcmp(raw, v->admin_user, ulen) == 0;
	/* the slow check even for a wrong user name: the time tells
	 * nothing */
	if (crypto_pwhash_str_verify(v->admin_hash, colon + 1,
	                             rawlen - ulen - 1) == 0 &&
	    ok) {
		memcpy(web->auth_ok, dig, sizeof(dig));
		web->auth_ok_at = now;
		web->auth_ok_gen = v->gen;
		if (sl != NULL)
			sl->fails = 0;
		ret = 0;
		goto out;
	}
fail:
	sl = auth_slot(web, key, now, true);
	sl->fails++;
	kr_log_warn("admin: login failed client=%s failures=%u", key,
	            sl->fails);
	ret = 401;
out:
	if (raw != NULL) {
		sodium_memzero(raw, hlen + 1);
		sodium_free(raw);
	}
	return ret;
}

/* Routes of the dashboard: 0 none, 1 overview, 2 reports, 3 one report
 * (*id_out). */
static int
dash_route(const char *url, int64_t *id_out)
{
	char *end;
	long long id;

	if (strcmp(url, "/") == 0)
		return 1;
	if (strcmp(url, "/reports") == 0 || strcmp(url, "/reports/") == 0)
		return 2;
	if (strncmp(url, "/reports/", 9) == 0 && url[9] >= '0' &&
	    url[9] <= '9') {
		id = strtoll(url + 9, &end, 10);
		if (*end == '\0' && id > 0) {
			*id_out = id;
			return 3;
		}
	}
	return 0;
}

static enum MHD_Result
dash_answer(struct kr_web *web, struct MHD_Connection *c, struct view *v,
            int route, int64_t id)
{
	struct page p;
	enum MHD_Result ret;
	int rc = -1;

	memset(&p, 0, sizeof(p));
	p.web = web;
	p.v = v;
	p.t = dash_lang(c, v);
	p.now = (int64_t)time(NULL);
	p.offset = v->n_lists > 0 ? v->lists[0].tz_offset : 0;
	kr_buf_init(&p.body, 0);
	kr_err_clear(&p.err);
	if (web->dash_store == NULL &&
	    kr_store_open(v->database, v->db_password_file, &web->dash_store,
	                  &p.err) == -1)
		goto out;
	p.s = web->dash_store;
	if (route == 1)
		rc = page_overview(&p);
	else if (route == 2)
		rc = page_reports(&p);
	else
		rc = page_report(&p, id);
out:
	if (rc == 0)
		ret = send_page(web, c, 200, p.t, p.t->title, p.body.data,
		                p.refresh, 0, false);
	else if (rc == 1)
		ret = send_short(web, c, 404, p.t, p.t->not_found, 0, false);
	else {
		kr_log_err("admin: dashboard: %s", p.err.msg);
		ret = send_short(web, c, 503, p.t, p.t->no_store, 5, false);
	}
	kr_buf_fini(&p.body);
	return ret;
}

enum MHD_Result
kr_web_admin_handler(void *cls, struct MHD_Connection *c, const char *url,
                     const char *method, const char *version,
                     const char *upload_data,
                     size_t *upload_data_size, /* NOLINT(readability-non-const-parameter):
                                                  MHD's handler type */
                     void **con_cls)
{
	struct kr_web *web = cls;
	struct kr_buf out;
	struct kr_err e;
	kr_web_metrics_fn fn;
	void *fn_ctx;
	enum MHD_Result ret = MHD_NO;
	int64_t id = 0;
	int rc, route;

	(void)version;
	(void)upload_data;
	(void)upload_data_size;
	(void)con_cls;
	kr_err_clear(&e);
	kr_buf_init(&out, 0);
	route = dash_route(url, &id);
	if (route == 0 && strcmp(url, "/healthz") != 0 &&
	    strcmp(url, "/metrics") != 0) {
		ret = kr_web_send_text(web, c, 404, "text/plain; charset=utf-8",
		                       "not found\n", 10, NULL);
		goto out;
	}
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
	    strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
		ret = kr_web_send_text(web, c, 405, "text/plain; charset=utf-8",
		                       "method not allowed\n", 19, "GET, HEAD");
		goto out;
	}
	if (route != 0 || strcmp(url, "/metrics") == 0) {
		struct view *v = kr_web_view_acquire(web);
		const struct dash_text *t = dash_lang(c, v);
		unsigned status = 0, retry = 0;

		/* the admin listener has one thread: this lock only keeps
		 * the dashboard's state whole should that change */
		pthread_mutex_lock(&web->dash_lock);
		if (v->admin_hash != NULL && (route != 0 || v->metrics_login))
			status = auth_check(web, c, v, &retry);
		if (status == 429)
			ret = send_short(web, c, 429, t, t->too_many, retry,
			                 false);
		else if (status != 0)
			ret = send_short(web, c, 401, t, t->login, 0, true);
		else if (route != 0)
			ret = dash_answer(web, c, v, route, id);
		pthread_mutex_unlock(&web->dash_lock);
		kr_web_view_release(web, v);
		if (status != 0 || route != 0)
			goto out;
	}
	/* kairand wires both before it says it is ready: a look before
	 * that would show a daemon without its delivery side. */
	pthread_mutex_lock(&web->lock);
	fn = web->metrics_fn;
	fn_ctx = web->metrics_ctx;
	rc = web->health_fn == NULL;
	pthread_mutex_unlock(&web->lock);
	if (fn == NULL || rc) {
		ret = kr_web_send_text(web, c, 503, "text/plain; charset=utf-8",
		                       "starting\n", 9, NULL);
		goto out;
	}
	if (strcmp(url, "/healthz") == 0) {
		kr_web_health_fn hfn;
		void *hctx;
		char db[640];
		struct kr_err de;

		kr_err_clear(&de);
		pthread_mutex_lock(&web->store_lock);
		rc = kr_store_ping(web->store, &e);
		/* which database, and its schema as it holds it now */
		if (kr_store_describe(web->store, db, sizeof(db), &de) < 0 &&
		    rc == 0) {
			rc = -1;
			e = de;
		}
		pthread_mutex_unlock(&web->store_lock);
		pthread_mutex_lock(&web->lock);
		hfn = web->health_fn;
		hctx = web->health_ctx;
		pthread_mutex_unlock(&web->lock);
		if (rc != 0 && kr_buf_printf(&out, "store: %s\n", e.msg) < 0)
			goto out;
		/* The delivery side: relay refusing or silent, store full or
		 * locked for the workers. */
		if (hfn != NULL && hfn(hctx, &out) != 0)
			rc = -1;
		/* "ok" stays the first line, for monitors that match it */
		if ((rc == 0 && kr_buf_puts(&out, "ok\n") < 0) ||
		    kr_buf_printf(&out, "database: %s\n", db) < 0)
			goto out;
		if (rc == 0)
			ret = kr_web_send_text(web, c, 200,
			                       "text/plain; charset=utf-8",
			                       out.data, out.len, NULL);
		else
			ret = kr_web_send_text(web, c, 503,
			                       "text/plain; charset=utf-8",
			                       out.data, out.len, NULL);
		goto out;
	}
	metric_answers(web, &out);
	metric(&out, "kairan_http_requests_received_total",
	       "Requests on the public listener, answered or not.",
	       web->n_requests);
	metric(&out, "kairan_http_subscribe_total", "POST /subscribe requests.",
	       web->n_subscribe);
	metric(&out, "kairan_http_subscribe_new_total",
	       "Sign-ups that created a subscription.", web->n_subscribe_new);
	metric(&out, "kairan_http_honeypot_total",
	       "Sign-ups dropped for a filled honeypot.", web->n_honeypot);
	metric(&out, "kairan_http_rate_limited_total",
	       "Sign-ups refused by the per-client rate limit.",
	       web->n_rate_limited);
	metric(&out, "kairan_http_rate_overflow_total",
	       "Sign-ups of clients the full rate-limit table had no room "
	       "for (they share one bucket).",
	       kr_web_rl_overflowed(web->rl));
	metric(&out, "kairan_http_confirm_mail_total",
	       "Confirmation mails queued by the form.", web->n_confirm_mail);
	metric(&out, "kairan_http_confirm_limited_total",
	       "Confirmation mails not queued (per-address daily limit).",
	       web->n_confirm_limited);
	metric(&out, "kairan_http_confirmed_total", "Subscriptions confirmed.",
	       web->n_confirmed);
	metric(&out, "kairan_http_unsubscribed_total",
	       "Subscriptions ended from a link.", web->n_unsubscribed);
	metric(&out, "kairan_http_bad_token_total",
	       "Invalid, tampered or expired tokens.", web->n_bad_token);
	metric(&out, "kairan_http_bad_address_total",
	       "Sign-ups refused for a bad address.", web->n_bad_address);
	metric(&out, "kairan_http_errors_total", "Answers with a 5xx status.",
	       web->n_errors);
	metric(&out, "kairan_http_connections_refused_total",
	       "Connections refused by the per-address cap.",
	       web->n_conn_refused);
	metric(&out, "kairan_http_archive_builds_total",
	       "Times the /archive list was read from the store (else it is "
	       "served as built).",
	       web->n_archive_builds);
	metric(&out, "kairan_http_header_timeouts_total",
	       "Connections closed for a request head not in within "
	       "http.header_timeout.",
	       web->n_head_timeout);
	fn(fn_ctx, &out);
	ret = kr_web_send_text(web, c, 200,
	                       "text/plain; version=0.0.4; charset=utf-8",
	                       out.data, out.len, NULL);
out:
	kr_buf_fini(&out);
	return ret;
}
