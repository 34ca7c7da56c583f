/* kd_events.c — see kd_events.h. State is kept in memory only: after a
 * restart the first look is silent, so an event may be missed across a
 * restart but is never repeated for old news. */
#include "kd_events.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "config.h"
#include "err.h"
#include "governor.h"
#include "log.h"
#include "store.h"
#include "webhook.h"
#include "xmem.h"

/* Reports looked at per tick: the newest ones are the ones sending. */
#define KD_EVENTS_LOOK 8

struct seen {
	int64_t id;
	bool started, finished, failing, paused;
};

struct kd_events {
	struct seen *s;
	size_t n;
	char **paused_lists; /* lists whose confirmations are paused */
	size_t n_paused;
	bool primed;
};

struct tick {
	struct kd_events *ev;
	struct kr_webhook *hook;
	int64_t now;
	struct kr_store *store;
};

struct kd_events *
kd_events_new(void)
{
	return kr_xcalloc(1, sizeof(struct kd_events));
}

void
kd_events_free(struct kd_events **evp)
{
	if (evp == NULL || *evp == NULL)
		return;
	free((*evp)->s);
	while ((*evp)->n_paused > 0)
		free((*evp)->paused_lists[--(*evp)->n_paused]);
	free((*evp)->paused_lists);
	free(*evp);
	*evp = NULL;
}

int
kd_events_json(struct kr_buf *out, const char *event, int64_t report_id,
    const char *list_id, const char *subject,
    const struct kr_delivery_counts *c, int64_t now)
{
	struct tm tm;
	time_t t = (time_t)now;
	char when[32];

	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (kr_buf_puts(out, "{\"event\":") < 0 ||
	    kr_webhook_json_str(out, event) < 0 ||
	    kr_buf_printf(out, ",\"report\":%lld,\"list\":",
		(long long)report_id) < 0 ||
	    kr_webhook_json_str(out, list_id) < 0 ||
	    kr_buf_puts(out, ",\"subject\":") < 0 ||
	    kr_webhook_json_str(out, subject ? subject : "") < 0)
		return -1;
	return kr_buf_printf(out,
	    ",\"total\":%lld,\"queued\":%lld,\"sent\":%lld,\"deferred\":%lld,"
	    "\"failed\":%lld,\"uncertain\":%lld,\"cancelled\":%lld,"
	    "\"at\":\"%s\"}",
	    (long long)c->queued + c->sent + c->deferred + c->failed +
		c->uncertain + c->cancelled,
	    (long long)c->queued, (long long)c->sent, (long long)c->deferred,
	    (long long)c->failed, (long long)c->uncertain,
	    (long long)c->cancelled, when);
}

static struct seen *
seen_for(struct kd_events *ev, int64_t id, bool *is_new)
{
	size_t i;

	*is_new = false;
	for (i = 0; i < ev->n; i++)
		if (ev->s[i].id == id)
			return &ev->s[i];
	ev->s = kr_xrealloc(ev->s, (ev->n + 1) * sizeof(*ev->s));
	memset(&ev->s[ev->n], 0, sizeof(ev->s[0]));
	ev->s[ev->n].id = id;
	*is_new = true;
	return &ev->s[ev->n++];
}

static void
emit(struct tick *t, const char *event, const struct kr_report_row *r,
    const struct kr_delivery_counts *c)
{
	struct kr_buf b;

	kr_log_info("report event=%s id=%lld sent=%lld failed=%lld "
		    "pending=%lld",
	    event, (long long)r->id, (long long)c->sent,
	    (long long)c->failed, (long long)(c->queued + c->deferred));
	if (t->hook == NULL)
		return;
	kr_buf_init(&b, 64 * 1024);
	if (kd_events_json(&b, event, r->id, r->list_id, r->subject, c,
		t->now) == 0) {
		/* report.finished: the outcomes that came back so far */
		struct kr_bounce_counts bc;
		struct kr_err err = {0};

		if (strcmp(event, "report.finished") == 0 && b.len > 0 &&
		    kr_store_bounce_counts(t->store, r->id, &bc, &err) == 0) {
			b.data[--b.len] = '\0';
			if (kr_buf_printf(&b,
				",\"hard_bounces\":%lld,\"soft_bounces\":%lld,"
				"\"complaints\":%lld,\"unsubscribes\":%lld,"
				"\"hard_bounce_rate\":%.6f,"
				"\"complaint_rate\":%.6f,"
				"\"unsubscribe_rate\":%.6f}",
				(long long)bc.hard, (long long)bc.soft,
				(long long)bc.complaint,
				(long long)bc.unsubscribed,
				c->sent > 0 ? (double)bc.hard / (double)c->sent
					    : 0.0,
				c->sent > 0 ?
				    (double)bc.complaint / (double)c->sent :
				    0.0,
				c->sent > 0 ?
				    (double)bc.unsubscribed / (double)c->sent :
				    0.0) < 0)
				kr_buf_reset(&b);
		}
		if (b.len > 0)
			kr_webhook_post(t->hook, b.data);
	}
	kr_buf_fini(&b);
}

/* "report.paused": the counts and the governor's figures, with the reason
 * ("complaints", "bounces", or "operator" for a `kairanctl pause`). */
static void
emit_paused(struct tick *t, const struct kr_report_row *r,
    const struct kr_delivery_counts *c)
{
	struct kr_governor_figures f;
	struct kr_err err = {0};
	struct kr_buf b;
	const char *reason;

	if (kr_governor_figures(t->store, r->id, &f, &err) < 0) {
		kr_log_warn("report event=report.paused id=%lld: %s",
		    (long long)r->id, err.msg);
		return;
	}
	reason = strstr(f.reason, "complaints reached") != NULL ? "complaints"
	    : strstr(f.reason, "bounces reached") != NULL      ? "bounces"
							       : "operator";
	kr_log_info("report event=report.paused id=%lld reason=%s %s",
	    (long long)r->id, reason, f.reason);
	if (t->hook == NULL)
		return;
	kr_buf_init(&b, 64 * 1024);
	if (kd_events_json(&b, "report.paused", r->id, r->list_id, r->subject,
		c, t->now) == 0 && b.len > 0) {
		b.data[--b.len] = '\0'; /* the closing brace */
		if (kr_buf_printf(&b, ",\"reason\":\"%s\",\"complaints\":%lld,"
		    "\"hard_bounces\":%lld,\"complaint_rate\":%.6f,"
		    "\"bounce_rate\":%.6f,\"figures\":",
		    reason, (long long)f.complaints,
		    (long long)f.hard_bounces,
		    f.sent > 0 ? (double)f.complaints / (double)f.sent : 0.0,
		    f.sent > 0 ? (double)f.hard_bounces / (double)f.sent
			       : 0.0) == 0 &&
		    kr_webhook_json_str(&b, f.reason) == 0 &&
		    kr_buf_puts(&b, "}") == 0)
			kr_webhook_post(t->hook, b.data);
	}
	kr_buf_fini(&b);
}

static int
on_report(void *ctx, const struct kr_report_row *r,
    const struct kr_delivery_counts *c)
{
	struct tick *t = ctx;
	struct seen *s;
	bool is_new, started, finished, failing;
	int64_t bad = c->failed + c->uncertain;
	int64_t tried = c->sent + bad;

	started = c->sent + c->deferred + bad > 0;
	finished = started && c->queued + c->deferred == 0 &&
	    c->in_flight == 0;
	failing = bad >= KD_FAIL_MIN && bad * 100 > tried * KD_FAIL_PERCENT;
	s = seen_for(t->ev, r->id, &is_new);
	if (is_new && !t->ev->primed) {
		s->started = started;
		s->finished = finished;
		s->failing = failing;
		s->paused = r->state == KR_RS_PAUSED;
		return 0;
	}
	if (r->state == KR_RS_PAUSED && !s->paused) {
		s->paused = true;
		emit_paused(t, r, c);
	} else if (r->state != KR_RS_PAUSED) {
		s->paused = false;
	}
	if (started && !s->started) {
		s->started = true;
		emit(t, "report.started", r, c);
	}
	if (failing && !s->failing) {
		s->failing = true;
		emit(t, "report.failing", r, c);
	}
	if (finished && !s->finished) {
		s->finished = true;
		emit(t, "report.finished", r, c);
	}
	/* A report retried (`kairanctl retry`) can finish again. */
	if (!finished && s->finished && c->queued + c->deferred > 0)
		s->finished = false;
	return 0;
}

/* Whether list's confirmations were paused at the last look; sets it. */
static bool
was_paused(struct kd_events *ev, const char *list, bool now)
{
	size_t i;

	for (i = 0; i < ev->n_paused; i++)
		if (strcmp(ev->paused_lists[i], list) == 0)
			break;
	if (i < ev->n_paused && !now) {
		free(ev->paused_lists[i]);
		ev->paused_lists[i] = ev->paused_lists[--ev->n_paused];
		return true;
	}
	if (i == ev->n_paused && now) {
		ev->paused_lists = kr_xrealloc(ev->paused_lists,
		    (ev->n_paused + 1) * sizeof(*ev->paused_lists));
		ev->paused_lists[ev->n_paused++] = kr_xstrdup(list);
		return false;
	}
	return i < ev->n_paused;
}

/* "confirmations.paused": the governor stopped a list's confirmation
 * mails (a list-bombing shows up as their bounces and complaints). */
static void
look_confirmations(struct tick *t, const struct kr_config *cfg)
{
	struct kr_store_list_governor g;
	struct kr_err err = {0};
	struct kr_buf b;
	struct tm tm;
	time_t now = (time_t)t->now;
	char when[32];
	size_t i;

	for (i = 0; cfg != NULL && i < cfg->n_lists; i++) {
		const char *id = cfg->lists[i].id;

		if (kr_store_confirm_governor_get(t->store, id, &g, &err) < 0) {
			kr_log_warn("confirmation events list=%s: %s", id,
			    err.msg);
			continue;
		}
		if (was_paused(t->ev, id, g.paused) || !g.paused ||
		    !t->ev->primed)
			continue;
		kr_log_info("list event=confirmations.paused list=%s %s", id,
		    g.reason);
		if (t->hook == NULL)
			continue;
		gmtime_r(&now, &tm);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
		kr_buf_init(&b, 4096);
		if (kr_buf_puts(&b, "{\"event\":\"confirmations.paused\","
		        "\"list\":") == 0 &&
		    kr_webhook_json_str(&b, id) == 0 &&
		    kr_buf_printf(&b, ",\"sent\":%lld,\"hard_bounces\":%lld,"
		        "\"complaints\":%lld,\"reason\":",
		        (long long)g.sent, (long long)g.hard,
		        (long long)g.complaints) == 0 &&
		    kr_webhook_json_str(&b, g.reason) == 0 &&
		    kr_buf_printf(&b, ",\"at\":\"%s\"}", when) == 0)
			kr_webhook_post(t->hook, b.data);
		kr_buf_fini(&b);
	}
}

void
kd_events_tick(struct kd_events *ev, const struct kr_config *cfg,
    struct kr_store *store, struct kr_webhook *hook)
{
	struct tick t = {ev, hook, (int64_t)time(NULL), store};
	struct kr_err err = {0};

	if (kr_store_report_foreach(store, KD_EVENTS_LOOK, on_report, &t,
		&err) < 0) {
		kr_log_warn("report events: %s", err.msg);
		return;
	}
	look_confirmations(&t, cfg);
	ev->primed = true;
}
