/* governor.c — see governor.h. */
#include "governor.h"

#include <stdio.h>
#include <string.h>

#include "config.h"
#include "err.h"
#include "store.h"

void
kr_governor_policy_of(const struct kr_config *cfg,
                      struct kr_governor_policy *p_out)
{
	p_out->complaint_rate = cfg->governor.complaint_rate;
	p_out->bounce_rate = cfg->governor.bounce_rate;
	p_out->min_sent = (int64_t)cfg->governor.min_sent;
}

static int64_t
ppm(double rate)
{
	return rate > 0 ? (int64_t)(rate * 1e6 + 0.5) : 0;
}

static bool
over(double rate, int64_t count, int64_t ack, int64_t sent)
{
	int64_t limit = ppm(rate);

	return limit > 0 && count > ack && count * 1000000 >= limit * sent;
}

enum kr_governor_verdict
kr_governor_decide(const struct kr_governor_policy *p,
                   const struct kr_governor_figures *f)
{
	if (f->sent <= 0 || f->sent < p->min_sent)
		return KR_GOVERNOR_SEND;
	if (over(p->complaint_rate, f->complaints, f->ack_complaints, f->sent))
		return KR_GOVERNOR_COMPLAINTS;
	if (over(p->bounce_rate, f->hard_bounces, f->ack_bounces, f->sent))
		return KR_GOVERNOR_BOUNCES;
	return KR_GOVERNOR_SEND;
}

static bool
reachable(double rate, int64_t count, int64_t ack, int64_t min_sent)
{
	int64_t limit = ppm(rate);

	return limit > 0 && count > ack &&
	       count * 1000000 >= limit * (min_sent > 1 ? min_sent : 1);
}

bool
kr_governor_possible(const struct kr_governor_policy *p, int64_t complaints,
                     int64_t hard_bounces, int64_t ack_complaints,
                     int64_t ack_bounces)
{
	return reachable(p->complaint_rate, complaints, ack_complaints,
	                 p->min_sent) ||
	       reachable(p->bounce_rate, hard_bounces, ack_bounces,
	                 p->min_sent);
}

/* "0.15%" (as few digits as needed, at most 4 decimals), "off" for 0. */
static void
pct(double frac, char *out, size_t size)
{
	char *e;

	snprintf(out, size, "%.4f", frac * 100);
	e = strchr(out, '.');
	if (e != NULL) {
		char *z = out + strlen(out) - 1;

		while (z > e && *z == '0')
			*z-- = '\0';
		if (z == e)
			*z = '\0';
	}
	if (strlen(out) + 1 < size)
		memcpy(out + strlen(out), "%", 2);
}

void
kr_governor_describe(enum kr_governor_verdict v,
                     const struct kr_governor_policy *p,
                     const struct kr_governor_figures *f, char *out,
                     size_t size)
{
	char cr[24], cl[24], br[24], bl[24];
	double sent = f->sent > 0 ? (double)f->sent : 1;

	pct((double)f->complaints / sent, cr, sizeof(cr));
	pct((double)f->hard_bounces / sent, br, sizeof(br));
	if (p->complaint_rate > 0)
		pct(p->complaint_rate, cl, sizeof(cl));
	else
		snprintf(cl, sizeof(cl), "off");
	if (p->bounce_rate > 0)
		pct(p->bounce_rate, bl, sizeof(bl));
	else
		snprintf(bl, sizeof(bl), "off");
	snprintf(out, size,
	         "%scomplaints %lld of %lld sent (%s, limit %s), hard bounces "
	         "%lld (%s, limit %s)",
	         v == KR_GOVERNOR_COMPLAINTS ? "paused by the governor: "
	                                       "complaints reached "
	                                       "governor.complaint_rate: "
	         : v == KR_GOVERNOR_BOUNCES ? "paused by the governor: hard "
	                                      "bounces reached "
	                                      "governor.bounce_rate: "
	                                    : "",
	         (long long)f->complaints, (long long)f->sent, cr, cl,
	         (long long)f->hard_bounces, br, bl);
}

int
kr_governor_figures(struct kr_store *s, int64_t report_id,
                    struct kr_governor_figures *f_out, struct kr_err *err)
{
	struct kr_delivery_counts k;
	struct kr_bounce_counts b;

	memset(f_out, 0, sizeof(*f_out));
	if (kr_store_delivery_counts(s, report_id, &k, err) < 0 ||
	    kr_store_bounce_counts(s, report_id, &b, err) < 0 ||
	    kr_store_report_governor_acked(s, report_id, &f_out->ack_complaints,
	                                   &f_out->ack_bounces, f_out->reason,
	                                   sizeof(f_out->reason), err) < 0)
		return -1;
	f_out->sent = k.sent;
	f_out->complaints = b.complaint;
	f_out->hard_bounces = b.hard;
	return 0;
}

int
kr_governor_check(struct kr_store *s, const struct kr_config *cfg,
                  int64_t report_id, char *why, size_t size,
                  struct kr_err *err)
{
	struct kr_governor_policy p;
	struct kr_governor_figures f;
	struct kr_bounce_counts b;
	struct kr_report_row r;
	enum kr_governor_verdict v;
	int ret = -1;

	memset(&r, 0, sizeof(r));
	memset(&f, 0, sizeof(f));
	why[0] = '\0';
	kr_governor_policy_of(cfg, &p);
	if (p.complaint_rate <= 0 && p.bounce_rate <= 0)
		return 0;
	/* the cheap counts first: without new complaints or bounces enough
	 * to reach a limit at min_sent, nothing can pause the report, and
	 * its rows need not be counted */
	if (kr_store_bounce_counts(s, report_id, &b, err) < 0 ||
	    kr_store_report_governor_acked(s, report_id, &f.ack_complaints,
	                                   &f.ack_bounces, f.reason,
	                                   sizeof(f.reason), err) < 0)
		return -1;
	if (!kr_governor_possible(&p, b.complaint, b.hard, f.ack_complaints,
	                          f.ack_bounces))
		return 0;
	ret = kr_store_report_get(s, report_id, &r, err);
	if (ret <= 0)
		goto out;
	ret = -1;
	if (r.state != KR_RS_ACTIVE) {
		ret = 2;
		goto out;
	}
	if (kr_governor_figures(s, report_id, &f, err) < 0)
		goto out;
	v = kr_governor_decide(&p, &f);
	if (v == KR_GOVERNOR_SEND) {
		ret = 0;
		goto out;
	}
	kr_governor_describe(v, &p, &f, why, size);
	if (kr_store_report_set_state(s, report_id, KR_RS_PAUSED, err) < 0 ||
	    kr_store_report_governor_ack(s, report_id, -1, 0, why, err) < 0 ||
	    kr_store_event(s, "governor-pause", 0, report_id, why, err) < 0)
		goto out;
	ret = 1;
out:
	kr_store_report_row_fini(&r);
	return ret;
}

int
kr_governor_check_confirm(struct kr_store *s, const struct kr_config *cfg,
                          const char *list_id, char *why, size_t size,
                          struct kr_err *err)
{
	struct kr_governor_policy p;
	struct kr_governor_figures f;
	struct kr_store_list_governor g;
	enum kr_governor_verdict v;
	char line[200];

	why[0] = '\0';
	kr_governor_policy_of(cfg, &p);
	if (p.complaint_rate <= 0 && p.bounce_rate <= 0)
		return 0;
	if (kr_store_confirm_governor_get(s, list_id, &g, err) < 0)
		return -1;
	if (g.paused)
		return 2;
	memset(&f, 0, sizeof(f));
	f.sent = g.sent;
	f.complaints = g.complaints;
	f.hard_bounces = g.hard;
	f.ack_complaints = g.ack_complaints;
	f.ack_bounces = g.ack_bounces;
	v = kr_governor_decide(&p, &f);
	if (v == KR_GOVERNOR_SEND)
		return 0;
	kr_governor_describe(v, &p, &f, line, sizeof(line));
	snprintf(why, size, "confirmations of list %s %s", list_id, line);
	if (kr_store_confirm_governor_set(s, list_id, true, why, -1, -1, err) <
	        0 ||
	    kr_store_event(s, "governor-pause", 0, 0, why, err) < 0)
		return -1;
	return 1;
}
