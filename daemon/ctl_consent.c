/* ctl_consent.c — `kairanctl subscribers consent ADDRESS [--list L]` and
 * the record-keeping side of `subscribers remove [--forget]`: what Japan's
 * 特定電子メール法 (Article 3) asks a sender to keep, and to show a
 * complaining reader or a regulator — the consent (when, how, from where),
 * the confirmation, every report mail sent (date, Message-ID) and the
 * unsubscribe — and, for a privacy request, deleting all of it once
 * consent.retention has passed since the last report mail. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "compose.h"
#include "config.h"
#include "ctl.h"
#include "err.h"
#include "store.h"

static void
iso(int64_t t, char out[32])
{
	struct tm tm;
	time_t tt = (time_t)t;

	if (t <= 0 || gmtime_r(&tt, &tm) == NULL ||
	    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(out, 32, "-");
}

static const char *const delivery_states[] = {
    "queued", "sent", "deferred", "failed", "uncertain", "cancelled"};

struct hist {
	const struct kr_cfg_list *list;
	int64_t sub_id;
};

static int
print_row(void *ctx, const struct kr_store_history_row *h)
{
	const struct hist *x = ctx;
	const char *st =
	    h->state >= 0 && h->state < 6 ? delivery_states[h->state] : "?";
	char at[32], mid[512];

	iso(h->at, at);
	if (h->kind < 0) {
		printf("    %s  %s%s%s\n", at, h->event,
		       h->detail && h->detail[0] ? ": " : "",
		       h->detail ? h->detail : "");
	} else if (h->kind == KR_DELIVERY_CONFIRM) {
		printf("    %s  confirmation mail %s\n", at, st);
	} else {
		printf("    %s  report %lld %s \"%s\"", at,
		       (long long)h->report_id, st, h->subject);
		if (h->state == KR_DS_SENT && x->list != NULL) {
			kr_compose_message_id(x->list, h->report_id, x->sub_id,
			                      h->hash, mid, sizeof(mid));
			printf(" Message-ID <%s>", mid);
		}
		putchar('\n');
	}
	return 0;
}

/* When the records of sub may be deleted (0: at once: no report mail
 * was ever sent under this consent). */
static int
kept_until(struct ctl *c, const struct kr_subscriber *sub, int64_t *until,
           struct kr_err *err)
{
	int64_t last = 0;

	if (kr_store_subscriber_last_sent(c->store, sub->id, &last, err) < 0)
		return -1;
	*until = last > 0 ? last + (int64_t)c->cfg->consent_retention : 0;
	return 0;
}

int
ctl_sub_consent(struct ctl *c, const char *addr, const char *list_opt)
{
	struct kr_subscriber sub;
	struct kr_err err = {0};
	struct hist x;
	char a[32], b[32];
	int64_t until;
	size_t i, n = 0;
	int found;

	for (i = 0; i < c->cfg->n_lists; i++) {
		const struct kr_cfg_list *l = &c->cfg->lists[i];

		if (list_opt != NULL && strcmp(list_opt, l->id) != 0)
			continue;
		found =
		    kr_store_subscriber_find(c->store, l->id, addr, &sub, &err);
		if (found < 0)
			goto fail;
		if (found == 0)
			continue;
		n++;
		printf("%s%s on %s (subscription %lld): %s\n",
		       n > 1 ? "\n" : "", sub.email, l->id, (long long)sub.id,
		       sub.status == KR_SUB_PENDING        ? "pending"
		       : sub.status == KR_SUB_ACTIVE       ? "active"
		       : sub.status == KR_SUB_UNSUBSCRIBED ? "unsubscribed"
		                                           : "bounced");
		iso(sub.consent_at, a);
		printf(
		    "  consent:      %s, via %s, from %s, user agent \"%s\"\n",
		    a, sub.consent_source[0] ? sub.consent_source : "-",
		    sub.consent_ip[0] ? sub.consent_ip : "-", sub.consent_ua);
		iso(sub.confirmed_at, a);
		printf("  confirmed:    %s\n", a);
		iso(sub.unsubscribed_at, a);
		printf("  unsubscribed: %s\n", a);
		printf("  history (UTC):\n");
		x.list = l;
		x.sub_id = sub.id;
		if (kr_store_subscriber_history(c->store, sub.id, print_row, &x,
		                                &err) < 0 ||
		    kept_until(c, &sub, &until, &err) < 0)
			goto fail;
		iso(until, a);
		iso(until - (int64_t)c->cfg->consent_retention, b);
		if (until > 0)
			printf(
			    "  kept until:   %s (consent.retention %ud after "
			    "the last report mail, %s)\n",
			    a, c->cfg->consent_retention / 86400, b);
		else
			printf("  kept until:   no report mail sent: "
			       "`subscribers remove --forget` may delete it "
			       "now\n");
	}
	if (n == 0) {
		ctl_error("%s: no subscription%s%s", addr,
		          list_opt ? " on " : "", list_opt ? list_opt : "");
		return CTL_FAIL;
	}
	return CTL_OK;
fail:
	ctl_error("%s", err.msg);
	return CTL_FAIL;
}

int
ctl_sub_forget(struct ctl *c, const struct kr_subscriber *sub, int64_t now)
{
	struct kr_err err = {0};
	int64_t until;
	char a[32];

	if (kept_until(c, sub, &until, &err) < 0)
		goto fail;
	if (until > now) {
		iso(until, a);
		printf("%s: the consent record is kept until %s (consent."
		       "retention %ud after the last report mail); run "
		       "`subscribers remove --forget` again then\n",
		       sub->list_id, a, c->cfg->consent_retention / 86400);
		return CTL_FAIL;
	}
	if (kr_store_subscriber_forget(c->store, sub->id, now, &err) < 0)
		goto fail;
	printf("%s: forgotten: the subscription and every record of it "
	       "deleted\n",
	       sub->list_id);
	return CTL_OK;
fail:
	ctl_error("%s", err.msg);
	return CTL_FAIL;
}
