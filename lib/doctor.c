/* doctor.c — see doctor.h. The DNS answers come from dns.c (glibc's
 * resolver, dns.resolver to name a server); the relays are asked through
 * transport_smtp.c's own connect and TLS code; the header checks compose
 * and sign a dry-run copy exactly as a worker would. */
#include "doctor.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "address.h"
#include "buf.h"
#include "compose.h"
#include "config.h"
#include "dkim.h"
#include "dns.h"
#include "err.h"
#include "store.h"
#include "token.h"
#include "transport_smtp.h"
#include "xmem.h"

#define SPF_MAX_LOOKUPS 10 /* RFC 7208 4.6.4 */

struct doc {
	const struct kr_config *cfg;
	struct kr_dns *dns;
	kr_doctor_fn fn;
	void *ctx;
	const char *list;
	int fails;
};

static void say(struct doc *d, const char *check, enum kr_doctor_level lv,
                const char *fmt, ...) KR_PRINTF(4, 5);

static void
say(struct doc *d, const char *check, enum kr_doctor_level lv,
    const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (lv == KR_DOCTOR_FAIL)
		d->fails++;
	d->fn(d->ctx, d->list, check, lv, msg);
}

static const char *
domain_of(const char *addr)
{
	const char *at = addr != NULL ? strrchr(addr, '@') : NULL;

	return at != NULL ? at + 1 : "";
}

const char *
kr_doctor_org_domain(const char *name, char *out, size_t size)
{
	/* two-label public suffixes seen most (a full list is ~10,000
	 * names; these cover Japanese, British and the usual others) */
	static const char *const two[] = {
	    "co.jp", "ne.jp", "or.jp", "ac.jp", "go.jp", "ad.jp", "ed.jp",
	    "gr.jp", "lg.jp", "co.uk", "org.uk", "ac.uk", "gov.uk",
	    "com.au", "net.au", "org.au", "co.nz", "com.br", "com.cn",
	    "com.tw", "co.kr", "co.in", "com.sg", "com.hk"};
	const char *p = name, *last = NULL, *prev = NULL, *prev2 = NULL;
	size_t i;

	for (p = name; *p != '\0'; p++)
		if (*p == '.') {
			prev2 = prev;
			prev = last;
			last = p;
		}
	/* name = ... prev2 . x . y . z ; prev . z is the last label */
	p = name;
	if (prev != NULL) {
		p = prev + 1; /* the last two labels */
		for (i = 0; i < KR_NELEM(two); i++)
			if (strcasecmp(p, two[i]) == 0) {
				p = prev2 != NULL ? prev2 + 1 : name;
				break;
			}
	}
	snprintf(out, size, "%s", p);
	return out;
}

/* ---- SPF (RFC 7208), enough to say whether an address passes ---- */

enum spf_result {
	SPF_NONE, SPF_NEUTRAL, SPF_PASS, SPF_FAIL, SPF_SOFTFAIL,
	SPF_PERMERROR, SPF_TEMPERROR,
};

static const char *const spf_names[] = {"none",     "neutral",  "pass",
                                        "fail",     "softfail", "permerror",
                                        "temperror"};

struct spf {
	struct kr_dns *dns;
	int lookups;
	char why[300]; /* permerror or temperror detail */
};

/* A prefix length: digits, else -1 (the whole address). */
static int
prefix_len(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);

	return end == s || v < 0 || v > 128 ? -1 : (int)v;
}

static bool
cidr_match(const char *ip, const char *net, int plen)
{
	unsigned char a[16], b[16];
	int fam = strchr(ip, ':') != NULL ? AF_INET6 : AF_INET;
	int bits = fam == AF_INET ? 32 : 128, i;

	if ((strchr(net, ':') != NULL) != (fam == AF_INET6))
		return false;
	if (inet_pton(fam, ip, a) != 1 || inet_pton(fam, net, b) != 1)
		return false;
	if (plen < 0 || plen > bits)
		plen = bits;
	for (i = 0; i < plen; i++) {
		int m = 0x80 >> (i % 8);

		if ((a[i / 8] & m) != (b[i / 8] & m))
			return false;
	}
	return true;
}

static enum spf_result spf_check(struct spf *s, const char *ip,
                                 const char *domain, int depth);

/* Does domain's A (or AAAA) hold ip within plen? -1 for a DNS failure. */
static int
spf_addr_match(struct spf *s, const char *ip, const char *domain, int plen4,
               int plen6)
{
	struct kr_dns_rr *rrs = NULL;
	size_t n = 0, i;
	struct kr_err e = {0};
	bool v6 = strchr(ip, ':') != NULL;
	int r, hit = 0;

	r = kr_dns_query(s->dns, domain, v6 ? KR_DNS_AAAA : KR_DNS_A, &rrs, &n,
	                 &e);
	if (r < 0) {
		snprintf(s->why, sizeof(s->why), "%s", e.msg);
		return -1;
	}
	for (i = 0; i < n && !hit; i++)
		hit = cidr_match(ip, rrs[i].text, v6 ? plen6 : plen4);
	kr_dns_rrs_free(&rrs, n);
	return hit;
}

/* The mechanism's domain-spec (after ':'), and its /len and //len6. */
static void
spf_target(const char *arg, const char *def, char *dom, size_t size,
           int *plen4, int *plen6)
{
	const char *sl = strchr(arg, '/');
	size_t len = sl != NULL ? (size_t)(sl - arg) : strlen(arg);

	*plen4 = -1;
	*plen6 = -1;
	if (sl != NULL) {
		if (sl[1] == '/')
			*plen6 = prefix_len(sl + 2);
		else {
			const char *s6;

			*plen4 = prefix_len(sl + 1);
			s6 = strstr(sl + 1, "//");
			if (s6 != NULL)
				*plen6 = prefix_len(s6 + 2);
		}
	}
	if (arg[0] == ':' && len > 1)
		snprintf(dom, size, "%.*s", (int)(len - 1), arg + 1);
	else
		snprintf(dom, size, "%s", def);
}

/* Every term is walked even after the first match, so the lookups
 * counted are those any address could need (a receiver checking another
 * egress address gets a permerror as well). */
static enum spf_result
spf_check(struct spf *s, const char *ip, const char *domain, int depth)
{
	struct kr_dns_rr *rrs = NULL;
	size_t n = 0, i, found = 0;
	struct kr_err e = {0};
	const char *rec = NULL;
	char *copy = NULL, *tok, *save = NULL, redirect[256] = "";
	enum spf_result res = SPF_NEUTRAL, sub;
	bool matched = false, has_all = false;
	int r;

	if (depth > SPF_MAX_LOOKUPS) {
		snprintf(s->why, sizeof(s->why), "include/redirect loop at %s",
		         domain);
		return SPF_PERMERROR;
	}
	r = kr_dns_query(s->dns, domain, KR_DNS_TXT, &rrs, &n, &e);
	if (r < 0) {
		snprintf(s->why, sizeof(s->why), "%s", e.msg);
		return SPF_TEMPERROR;
	}
	for (i = 0; i < n; i++)
		if (strncasecmp(rrs[i].text, "v=spf1", 6) == 0 &&
		    (rrs[i].text[6] == ' ' || rrs[i].text[6] == '\0')) {
			rec = rrs[i].text;
			found++;
		}
	if (found == 0) {
		res = SPF_NONE;
		goto out;
	}
	if (found > 1) {
		snprintf(s->why, sizeof(s->why),
		         "%s has %zu SPF records, RFC 7208 allows one", domain,
		         found);
		res = SPF_PERMERROR;
		goto out;
	}
	copy = kr_xstrdup(rec + 6);
	for (tok = strtok_r(copy, " ", &save); tok != NULL;
	     tok = strtok_r(NULL, " ", &save)) {
		enum spf_result q = SPF_PASS;
		char dom[256];
		int p4, p6, hit = 0;
		const char *mech = tok, *eq = strchr(tok, '='),
		           *colon = strchr(tok, ':');

		if (eq != NULL && (colon == NULL || eq < colon)) {
			if (strncasecmp(tok, "redirect=", 9) == 0)
				snprintf(redirect, sizeof(redirect), "%s",
				         tok + 9);
			continue; /* exp= and unknown modifiers */
		}
		switch (*mech) {
		case '+': q = SPF_PASS; mech++; break;
		case '-': q = SPF_FAIL; mech++; break;
		case '~': q = SPF_SOFTFAIL; mech++; break;
		case '?': q = SPF_NEUTRAL; mech++; break;
		default: break;
		}
		if (strcasecmp(mech, "all") == 0) {
			has_all = true;
			hit = 1;
		} else if (strncasecmp(mech, "ip4:", 4) == 0 ||
		           strncasecmp(mech, "ip6:", 4) == 0) {
			char net[64];
			const char *sl = strchr(mech + 4, '/');
			size_t len = sl != NULL ? (size_t)(sl - mech - 4)
			                        : strlen(mech + 4);

			snprintf(net, sizeof(net), "%.*s", (int)len, mech + 4);
			hit = cidr_match(ip, net, sl != NULL ? prefix_len(sl + 1) : -1);
		} else if (strncasecmp(mech, "include:", 8) == 0) {
			if (++s->lookups > SPF_MAX_LOOKUPS)
				break;
			sub = spf_check(s, ip, mech + 8, depth + 1);
			if (sub == SPF_NONE) {
				snprintf(s->why, sizeof(s->why),
				         "include:%s has no SPF record", mech + 8);
				sub = SPF_PERMERROR;
			}
			if (sub == SPF_PERMERROR || sub == SPF_TEMPERROR) {
				res = sub;
				goto out;
			}
			hit = sub == SPF_PASS;
		} else if (strncasecmp(mech, "a", 1) == 0 &&
		           (mech[1] == '\0' || mech[1] == ':' ||
		            mech[1] == '/')) {
			if (++s->lookups > SPF_MAX_LOOKUPS)
				break;
			spf_target(mech + 1, domain, dom, sizeof(dom), &p4, &p6);
			hit = spf_addr_match(s, ip, dom, p4, p6);
		} else if (strncasecmp(mech, "mx", 2) == 0 &&
		           (mech[2] == '\0' || mech[2] == ':' ||
		            mech[2] == '/')) {
			struct kr_dns_rr *mx = NULL;
			size_t nmx = 0, j;

			if (++s->lookups > SPF_MAX_LOOKUPS)
				break;
			spf_target(mech + 2, domain, dom, sizeof(dom), &p4, &p6);
			r = kr_dns_query(s->dns, dom, KR_DNS_MX, &mx, &nmx, &e);
			if (r < 0) {
				snprintf(s->why, sizeof(s->why), "%s", e.msg);
				hit = -1;
			}
			for (j = 0; j < nmx && hit == 0; j++)
				hit = spf_addr_match(s, ip, mx[j].text, p4, p6);
			kr_dns_rrs_free(&mx, nmx);
		} else if (strncasecmp(mech, "exists:", 7) == 0) {
			if (++s->lookups > SPF_MAX_LOOKUPS)
				break;
			/* macros are not expanded: no match */
			if (strchr(mech + 7, '%') == NULL)
				hit = spf_addr_match(s, "0.0.0.0", mech + 7, 0, 0);
		} else if (strncasecmp(mech, "ptr", 3) == 0) {
			if (++s->lookups > SPF_MAX_LOOKUPS)
				break;
			/* discouraged (RFC 7208 5.5), not evaluated */
		} else {
			snprintf(s->why, sizeof(s->why),
			         "%s: unknown SPF term '%.60s'", domain, tok);
			res = SPF_PERMERROR;
			goto out;
		}
		if (hit < 0) {
			res = SPF_TEMPERROR;
			goto out;
		}
		if (hit && !matched) {
			matched = true;
			res = q;
		}
	}
	if (s->lookups > SPF_MAX_LOOKUPS) {
		snprintf(s->why, sizeof(s->why),
		         "more than %d DNS lookups (include, a, mx, ptr, exists, "
		         "redirect)",
		         SPF_MAX_LOOKUPS);
		res = SPF_PERMERROR;
		goto out;
	}
	if (redirect[0] != '\0' && !has_all) {
		if (++s->lookups > SPF_MAX_LOOKUPS) {
			snprintf(s->why, sizeof(s->why),
			         "more than %d DNS lookups", SPF_MAX_LOOKUPS);
			res = SPF_PERMERROR;
			goto out;
		}
		sub = spf_check(s, ip, redirect, depth + 1);
		if (sub == SPF_NONE) {
			snprintf(s->why, sizeof(s->why),
			         "redirect=%s has no SPF record", redirect);
			sub = SPF_PERMERROR;
		}
		if (!matched || sub == SPF_PERMERROR || sub == SPF_TEMPERROR)
			res = sub;
	}
out:
	free(copy);
	kr_dns_rrs_free(&rrs, n);
	return res;
}

/* The record to publish: the present one with ip4:/ip6: for ip added
 * after v=spf1, or a new one. */
static void
spf_fix(struct doc *d, const char *domain, const char *ip, char *out,
        size_t size)
{
	struct kr_dns_rr *rrs = NULL;
	size_t n = 0, i;
	struct kr_err e = {0};
	const char *mech = strchr(ip, ':') != NULL ? "ip6" : "ip4";
	const char *rest = " -all";

	if (kr_dns_query(d->dns, domain, KR_DNS_TXT, &rrs, &n, &e) == 1)
		for (i = 0; i < n; i++)
			if (strncasecmp(rrs[i].text, "v=spf1 ", 7) == 0) {
				rest = rrs[i].text + 6;
				break;
			}
	snprintf(out, size, "%s. IN TXT \"v=spf1 %s:%s%s\"", domain, mech, ip,
	         rest);
	kr_dns_rrs_free(&rrs, n);
}

static void
check_spf(struct doc *d, const char *domain)
{
	size_t i;
	char fix[700];

	if (d->cfg->doctor.n_egress == 0) {
		say(d, "spf", KR_DOCTOR_WARN,
		    "%s: doctor.egress is not set, so SPF cannot be checked: "
		    "list the relay's egress IP addresses there",
		    domain);
		return;
	}
	for (i = 0; i < d->cfg->doctor.n_egress; i++) {
		const char *ip = d->cfg->doctor.egress[i];
		struct spf s = {.dns = d->dns};
		enum spf_result r = spf_check(&s, ip, domain, 0);

		switch (r) {
		case SPF_PASS:
			say(d, "spf", KR_DOCTOR_OK,
			    "%s authorises %s (%d DNS lookups of %d)", domain, ip,
			    s.lookups, SPF_MAX_LOOKUPS);
			break;
		case SPF_TEMPERROR:
			say(d, "spf", KR_DOCTOR_WARN,
			    "%s: cannot check SPF: %s", domain, s.why);
			return;
		case SPF_PERMERROR:
			say(d, "spf", KR_DOCTOR_FAIL,
			    "%s: SPF permerror: %s; receivers treat it as no "
			    "SPF: replace include: terms by ip4:/ip6: ranges "
			    "until at most %d lookups remain",
			    domain, s.why, SPF_MAX_LOOKUPS);
			return;
		case SPF_NONE:
			say(d, "spf", KR_DOCTOR_FAIL,
			    "%s has no SPF record: publish %s. IN TXT "
			    "\"v=spf1 %s:%s -all\"",
			    domain, domain,
			    strchr(ip, ':') != NULL ? "ip6" : "ip4", ip);
			return;
		default:
			spf_fix(d, domain, ip, fix, sizeof(fix));
			say(d, "spf", KR_DOCTOR_FAIL,
			    "%s does not authorise %s (SPF %s): publish %s",
			    domain, ip, spf_names[r], fix);
			break;
		}
	}
}

/* ---- DKIM ---- */

static void
check_dkim_key(struct doc *d, const struct kr_cfg_list *l, const char *sel,
               const char *key_file, bool ed)
{
	char *want = NULL, *name = NULL;
	struct kr_buf zone;
	struct kr_dns_rr *rrs = NULL;
	size_t n = 0, i;
	struct kr_err e = {0};
	const char *pub = NULL;
	int r, bits = 0;

	kr_buf_init(&zone, 0);
	name = kr_xasprintf("%s._domainkey.%s", sel, l->dkim_domain);
	if (kr_dkim_txt(key_file, ed, &want, &e) < 0) {
		say(d, "dkim", KR_DOCTOR_FAIL,
		    "%s: %s; make a new key: kairanctl dkim keygen --domain %s "
		    "--selector NEW",
		    name, e.msg, l->dkim_domain);
		goto out;
	}
	if (kr_dkim_zone_record(sel, l->dkim_domain, want, &zone) < 0)
		goto out;
	if (zone.len > 0 && zone.data[zone.len - 1] == '\n')
		zone.data[--zone.len] = '\0';
	r = kr_dns_query(d->dns, name, KR_DNS_TXT, &rrs, &n, &e);
	if (r < 0) {
		say(d, "dkim", KR_DOCTOR_WARN, "%s: cannot check: %s", name,
		    e.msg);
		goto out;
	}
	for (i = 0; i < n && pub == NULL; i++)
		if (strncmp(rrs[i].text, "v=DKIM1", 7) == 0 ||
		    strstr(rrs[i].text, "p=") != NULL)
			pub = rrs[i].text;
	if (pub == NULL) {
		say(d, "dkim", KR_DOCTOR_FAIL,
		    "%s: no DKIM key published: publish %s", name, zone.data);
		goto out;
	}
	kr_err_clear(&e);
	r = kr_dkim_record_check(pub, want, &bits, &e);
	if (bits > 0 && bits < 1024) {
		say(d, "dkim", KR_DOCTOR_FAIL,
		    "%s: the published RSA key has %d bits, receivers refuse "
		    "under 1024: make a 2048-bit key (kairanctl dkim keygen) "
		    "and publish %s",
		    name, bits, r == 1 ? "its record" : zone.data);
	} else if (r != 1) {
		say(d, "dkim", KR_DOCTOR_FAIL,
		    "%s does not match the key kairan signs with (%s): "
		    "publish %s",
		    name, e.msg, zone.data);
	} else if (bits > 0 && bits < 2048) {
		say(d, "dkim", KR_DOCTOR_WARN,
		    "%s matches, but RSA %d bits: 2048 recommended "
		    "(kairanctl dkim keygen)",
		    name, bits);
	} else {
		say(d, "dkim", KR_DOCTOR_OK, "%s matches the key file (%s)",
		    name, ed ? "Ed25519" : "RSA");
	}
out:
	kr_dns_rrs_free(&rrs, n);
	kr_buf_fini(&zone);
	free(want);
	free(name);
}

static void
check_dkim(struct doc *d, const struct kr_cfg_list *l)
{
	if (l->dkim_domain == NULL) {
		say(d, "dkim", KR_DOCTOR_FAIL,
		    "the list does not sign: Gmail, Yahoo and Microsoft "
		    "require DKIM: kairanctl dkim keygen --domain %s, then a "
		    "dkim: block in the list",
		    domain_of(l->from_addr));
		return;
	}
	if (l->dkim_rsa_selector != NULL)
		check_dkim_key(d, l, l->dkim_rsa_selector, l->dkim_rsa_key_file,
		               false);
	if (l->dkim_ed25519_selector != NULL)
		check_dkim_key(d, l, l->dkim_ed25519_selector,
		               l->dkim_ed25519_key_file, true);
}

/* ---- DMARC (RFC 7489) ---- */

/* The value of tag in a DMARC record ("" when absent). */
static void
dmarc_tag(const char *rec, const char *tag, char *out, size_t size)
{
	const char *p = rec;
	size_t tl = strlen(tag);

	out[0] = '\0';
	while (p != NULL && *p != '\0') {
		while (*p == ' ' || *p == '\t' || *p == ';')
			p++;
		if (strncasecmp(p, tag, tl) == 0) {
			const char *q = p + tl;

			while (*q == ' ')
				q++;
			if (*q == '=') {
				size_t len;

				q++;
				while (*q == ' ')
					q++;
				len = strcspn(q, "; \t");
				snprintf(out, size, "%.*s", (int)len, q);
				return;
			}
		}
		p = strchr(p, ';');
	}
}

static bool
aligned(const char *a, const char *b, bool strict)
{
	char oa[256], ob[256];

	if (a == NULL || b == NULL)
		return false;
	if (strict)
		return strcasecmp(a, b) == 0;
	return strcasecmp(kr_doctor_org_domain(a, oa, sizeof(oa)),
	                  kr_doctor_org_domain(b, ob, sizeof(ob))) == 0;
}

static void
check_dmarc(struct doc *d, const struct kr_cfg_list *l, const char *env_dom)
{
	const char *from = domain_of(l->from_addr);
	char org[256], name[300], p[32], adkim[8], aspf[8];
	struct kr_dns_rr *rrs = NULL;
	size_t n = 0, i;
	struct kr_err e = {0};
	const char *rec = NULL;
	bool dk, sp;
	int r, pass;

	kr_doctor_org_domain(from, org, sizeof(org));
	for (pass = 0; pass < 2 && rec == NULL; pass++) {
		if (pass == 1 && strcasecmp(org, from) == 0)
			break;
		snprintf(name, sizeof(name), "_dmarc.%s", pass ? org : from);
		kr_dns_rrs_free(&rrs, n);
		n = 0;
		r = kr_dns_query(d->dns, name, KR_DNS_TXT, &rrs, &n, &e);
		if (r < 0) {
			say(d, "dmarc", KR_DOCTOR_WARN, "cannot check: %s",
			    e.msg);
			goto out;
		}
		for (i = 0; i < n; i++)
			if (strncasecmp(rrs[i].text, "v=DMARC1", 8) == 0)
				rec = rrs[i].text;
	}
	if (rec == NULL) {
		say(d, "dmarc", KR_DOCTOR_FAIL,
		    "no DMARC record at _dmarc.%s (nor at _dmarc.%s): publish "
		    "_dmarc.%s. IN TXT \"v=DMARC1; p=none; "
		    "rua=mailto:dmarc-reports@%s\"",
		    from, org, from, org);
		goto out;
	}
	dmarc_tag(rec, "p", p, sizeof(p));
	if (strcasecmp(p, "none") != 0 && strcasecmp(p, "quarantine") != 0 &&
	    strcasecmp(p, "reject") != 0) {
		say(d, "dmarc", KR_DOCTOR_FAIL,
		    "%s: p=%s is not none, quarantine or reject: publish %s. "
		    "IN TXT \"v=DMARC1; p=none\" (at least)",
		    name, p[0] != '\0' ? p : "(missing)", name);
		goto out;
	}
	dmarc_tag(rec, "adkim", adkim, sizeof(adkim));
	dmarc_tag(rec, "aspf", aspf, sizeof(aspf));
	dk = aligned(l->dkim_domain, from, strcasecmp(adkim, "s") == 0);
	sp = aligned(env_dom, from, strcasecmp(aspf, "s") == 0);
	if (!dk && !sp) {
		say(d, "dmarc", KR_DOCTOR_FAIL,
		    "%s (p=%s) is not aligned with From %s: DKIM d=%s and the "
		    "envelope domain %s are both outside %s: sign with a "
		    "dkim.domain under %s, or set delivery.bounce_domain to a "
		    "name under it",
		    name, p, from, l->dkim_domain ? l->dkim_domain : "(none)",
		    env_dom, org, org);
		goto out;
	}
	say(d, "dmarc", KR_DOCTOR_OK, "%s p=%s, aligned with %s%s%s", name, p,
	    dk ? "DKIM d=" : "", dk ? l->dkim_domain : "",
	    dk ? "" : "the SPF domain");
out:
	kr_dns_rrs_free(&rrs, n);
}

/* ---- reverse DNS, MX ---- */

static void
check_ptr(struct doc *d, const char *ip)
{
	char rev[128];
	struct kr_dns_rr *ptr = NULL, *fw = NULL;
	size_t np = 0, nf = 0, i, j;
	struct kr_err e = {0};
	bool v6 = strchr(ip, ':') != NULL, ok = false;
	const char *first = NULL;
	int r;

	if (kr_dns_reverse_name(ip, rev, sizeof(rev)) < 0)
		return;
	r = kr_dns_query(d->dns, rev, KR_DNS_PTR, &ptr, &np, &e);
	if (r < 0) {
		say(d, "ptr", KR_DOCTOR_WARN, "%s: cannot check: %s", ip, e.msg);
		goto out;
	}
	if (r == 0) {
		say(d, "ptr", KR_DOCTOR_FAIL,
		    "%s has no reverse DNS: have the address's owner publish "
		    "%s. IN PTR mail.example.; and mail.example. IN %s %s (a "
		    "name of yours)",
		    ip, rev, v6 ? "AAAA" : "A", ip);
		goto out;
	}
	for (i = 0; i < np && !ok; i++) {
		first = first != NULL ? first : ptr[i].text;
		kr_dns_rrs_free(&fw, nf);
		nf = 0;
		r = kr_dns_query(d->dns, ptr[i].text, v6 ? KR_DNS_AAAA : KR_DNS_A,
		                 &fw, &nf, &e);
		if (r < 0) {
			say(d, "ptr", KR_DOCTOR_WARN, "%s: cannot check: %s", ip,
			    e.msg);
			goto out;
		}
		for (j = 0; j < nf && !ok; j++)
			ok = cidr_match(ip, fw[j].text, -1);
		if (ok)
			say(d, "ptr", KR_DOCTOR_OK,
			    "%s -> %s -> %s (forward-confirmed)", ip, ptr[i].text,
			    ip);
	}
	if (!ok)
		say(d, "ptr", KR_DOCTOR_FAIL,
		    "%s has PTR %s, but %s does not resolve back to %s: publish "
		    "%s. IN %s %s",
		    ip, first, first, ip, first, v6 ? "AAAA" : "A", ip);
out:
	kr_dns_rrs_free(&ptr, np);
	kr_dns_rrs_free(&fw, nf);
}

static void
check_mx(struct doc *d, const char *domain, const char *role)
{
	struct kr_dns_rr *rrs = NULL;
	size_t n = 0;
	struct kr_err e = {0};
	int r;

	r = kr_dns_query(d->dns, domain, KR_DNS_MX, &rrs, &n, &e);
	if (r < 0) {
		say(d, "mx", KR_DOCTOR_WARN, "%s (%s): cannot check: %s", domain,
		    role, e.msg);
		goto out;
	}
	if (r == 1 && n == 1 && rrs[0].text[0] == '\0') {
		say(d, "mx", KR_DOCTOR_FAIL,
		    "%s (%s) publishes a null MX (mail to it is refused): "
		    "publish %s. IN MX 10 mx.%s. instead",
		    domain, role, domain, domain);
		goto out;
	}
	if (r == 1) {
		say(d, "mx", KR_DOCTOR_OK, "%s (%s) has MX %s", domain, role,
		    rrs[0].text);
		goto out;
	}
	r = kr_dns_query(d->dns, domain, KR_DNS_A, &rrs, &n, &e);
	if (r == 1) {
		say(d, "mx", KR_DOCTOR_OK, "%s (%s) has no MX, mail goes to its "
		    "A %s", domain, role, rrs[0].text);
		goto out;
	}
	if (r < 0) {
		say(d, "mx", KR_DOCTOR_WARN, "%s (%s): cannot check: %s", domain,
		    role, e.msg);
		goto out;
	}
	say(d, "mx", KR_DOCTOR_FAIL,
	    "%s (%s) has no MX and no A: replies and bounces to it are lost, "
	    "and receivers refuse senders without one: publish %s. IN MX 10 "
	    "mx.%s.",
	    domain, role, domain, domain);
out:
	kr_dns_rrs_free(&rrs, n);
}

/* ---- the relays ---- */

static bool
is_loopback(const char *host)
{
	return strcmp(host, "localhost") == 0 || strncmp(host, "127.", 4) == 0 ||
	       strcmp(host, "::1") == 0;
}

static void
check_relays(struct doc *d)
{
	struct kr_config c2;
	struct kr_transport *t = NULL;
	struct kr_err e = {0};
	char why[400];
	size_t i;
	int r;

	if (d->cfg->delivery.transport != KR_CFG_TRANSPORT_SMTP) {
		say(d, "relay", KR_DOCTOR_WARN,
		    "delivery.transport is maildir: nothing is sent, no relay "
		    "to check");
		return;
	}
	c2 = *d->cfg;
	if (c2.delivery.timeout == 0 || c2.delivery.timeout > 10)
		c2.delivery.timeout = 10;
	if (kr_transport_smtp_ops.create(&c2, &t, &e) < 0) {
		say(d, "relay", KR_DOCTOR_FAIL, "%s", e.msg);
		return;
	}
	for (i = 0; i < d->cfg->n_relays; i++) {
		const struct kr_cfg_relay *rc = &d->cfg->relays[i];

		r = kr_transport_smtp_check(t, i, why, sizeof(why));
		if (r == 2)
			say(d, "relay", KR_DOCTOR_OK, "%s", why);
		else if (r == 1)
			say(d, "relay", KR_DOCTOR_FAIL,
			    "%s, but smtp[%zu].tls is none: set tls: starttls",
			    why, i);
		else if (r == 0 && is_loopback(rc->host))
			say(d, "relay", KR_DOCTOR_WARN,
			    "%s (a local relay: its own outbound TLS cannot be "
			    "seen from here)",
			    why);
		else if (r == 0)
			say(d, "relay", KR_DOCTOR_FAIL,
			    "%s: mail would cross the network in clear: use a "
			    "relay that offers STARTTLS, with tls: starttls",
			    why);
		else
			say(d, "relay", KR_DOCTOR_FAIL,
			    "smtp[%zu] %s; fix the relay or smtp[%zu] (host, "
			    "port, tls, ca_file)",
			    i, why, i);
	}
	kr_transport_smtp_ops.destroy(&t);
}

/* ---- public_url and RFC 8058 one-click ---- */

static size_t
discard(const char *p, size_t size, size_t n, void *u)
{
	(void)p;
	(void)u;
	return size * n;
}

static void
check_one_click(struct doc *d, const char *url)
{
	CURL *h;
	CURLcode cc;
	long code = 0;
	char ebuf[CURL_ERROR_SIZE] = "";

	if (strncasecmp(d->cfg->public_url, "https://", 8) != 0) {
		say(d, "one-click", KR_DOCTOR_FAIL,
		    "public_url %s is not https: the unsubscribe links and "
		    "RFC 8058 one-click need https: serve kairan behind TLS and "
		    "set public_url: https://…",
		    d->cfg->public_url);
		return;
	}
	if (url == NULL)
		return;
	h = curl_easy_init();
	if (h == NULL)
		return;
	(void)curl_easy_setopt(h, CURLOPT_URL, url);
	(void)curl_easy_setopt(h, CURLOPT_POSTFIELDS,
	                       "List-Unsubscribe=One-Click");
	(void)curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
	(void)curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	(void)curl_easy_setopt(h, CURLOPT_ERRORBUFFER, ebuf);
	(void)curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
	(void)curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
	if (d->cfg->doctor.ca_file != NULL)
		(void)curl_easy_setopt(h, CURLOPT_CAINFO, d->cfg->doctor.ca_file);
	cc = curl_easy_perform(h);
	if (cc == CURLE_OK)
		(void)curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
	if (cc != CURLE_OK)
		say(d, "one-click", KR_DOCTOR_FAIL,
		    "a one-click POST (RFC 8058) to %s failed: %s: the "
		    "endpoint must answer from the Internet at public_url",
		    d->cfg->public_url, ebuf[0] ? ebuf : curl_easy_strerror(cc));
	else if (code == 400)
		say(d, "one-click", KR_DOCTOR_FAIL,
		    "a one-click POST (RFC 8058) to public_url answered 400: "
		    "the kairand there refused doctor's test token, so it runs "
		    "on another key_file or other lists: run kairanctl doctor "
		    "with kairand's own config");
	else if (code != 200)
		say(d, "one-click", KR_DOCTOR_FAIL,
		    "a one-click POST (RFC 8058) to public_url answered %ld, "
		    "expected 200: check the proxy in front of kairan passes "
		    "POST to it",
		    code);
	else
		say(d, "one-click", KR_DOCTOR_OK,
		    "a one-click POST (RFC 8058) with a test token answered "
		    "200");
	curl_easy_cleanup(h);
}

/* ---- the headers of a dry-run copy ---- */

/* The unfolded value of header field name in msg's header, or NULL
 * (caller frees). */
static char *
header_value(const char *msg, const char *name)
{
	const char *p = msg, *end;
	size_t nl = strlen(name);
	struct kr_buf b;

	while (*p != '\0' && !(p[0] == '\r' && p[1] == '\n')) {
		end = strstr(p, "\r\n");
		if (end == NULL)
			break;
		if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
			kr_buf_init(&b, 0);
			p += nl + 1;
			for (;;) {
				if (kr_buf_append(&b, p, (size_t)(end - p)) < 0)
					break;
				p = end + 2;
				if (*p != ' ' && *p != '\t')
					break;
				end = strstr(p, "\r\n");
				if (end == NULL)
					break;
			}
			return kr_buf_steal(&b);
		}
		p = end + 2;
	}
	return NULL;
}

/* Is field (lower-case) in DKIM h= (colon-separated, any case)? */
static bool
signed_field(const char *sig, const char *field)
{
	const char *h = strstr(sig, "h=");
	size_t fl = strlen(field);

	while (h != NULL && h != sig && h[-1] != ';' && h[-1] != ' ' &&
	       h[-1] != '\t')
		h = strstr(h + 2, "h=");
	if (h == NULL)
		return false;
	h += 2;
	while (*h != '\0' && *h != ';') {
		while (*h == ' ' || *h == '\t' || *h == ':')
			h++;
		if (strncasecmp(h, field, fl) == 0 &&
		    (h[fl] == ':' || h[fl] == ';' || h[fl] == ' ' ||
		     h[fl] == '\0'))
			return true;
		h += strcspn(h, ":;");
	}
	return false;
}

/* The https URL in a List-Unsubscribe value, or NULL (caller frees). */
static char *
unsub_url(const char *v)
{
	const char *p = v != NULL ? strstr(v, "<https://") : NULL;
	const char *e = p != NULL ? strchr(p, '>') : NULL;

	if (e == NULL)
		return NULL;
	return kr_xstrndup(p + 1, (size_t)(e - p - 1));
}

static void
check_headers(struct doc *d, const struct kr_cfg_list *l, char **url_out)
{
	struct kr_keyring *ring = NULL;
	struct kr_dkim *dkim = NULL;
	struct kr_report_row r;
	struct kr_claim c;
	struct kr_buf msg;
	struct kr_err e = {0};
	char env[256], subj[] = "kairanctl doctor", text[] = "dry run",
	     html[] = "<p>dry run</p>", empty[] = "";
	char *lu = NULL, *lup = NULL, *lid = NULL, *sig = NULL;

	kr_buf_init(&msg, 0);
	memset(&r, 0, sizeof(r));
	memset(&c, 0, sizeof(c));
	snprintf(r.list_id, sizeof(r.list_id), "%s", l->id);
	r.subject = subj;
	r.preheader = empty;
	r.text = text;
	r.html = html;
	r.source = empty;
	c.kind = KR_DELIVERY_REPORT;
	c.subscriber_id = 0; /* nobody: its links change nothing */
	snprintf(c.list_id, sizeof(c.list_id), "%s", l->id);
	snprintf(c.email, sizeof(c.email), "doctor@example.invalid");
	if (kr_token_keyring_load(d->cfg->key_file, 0, &ring, &e) < 0) {
		say(d, "headers", KR_DOCTOR_WARN,
		    "cannot compose a dry-run copy: %s (run kairanctl doctor "
		    "as the user kairand runs as)",
		    e.msg);
		goto out;
	}
	if (kr_compose_report(d->cfg, l, &r, &c, ring, (int64_t)time(NULL),
	                      &msg, env, &e) < 0 ||
	    kr_dkim_for_list(l, &dkim, &e) < 0 ||
	    (dkim != NULL &&
	     kr_dkim_prepend(dkim, &msg, (int64_t)time(NULL), &e) < 0)) {
		say(d, "headers", KR_DOCTOR_FAIL,
		    "cannot compose a dry-run copy: %s", e.msg);
		goto out;
	}
	lu = header_value(msg.data, "List-Unsubscribe");
	lup = header_value(msg.data, "List-Unsubscribe-Post");
	lid = header_value(msg.data, "List-Id");
	sig = header_value(msg.data, "DKIM-Signature");
	*url_out = unsub_url(lu);
	if (lu == NULL || *url_out == NULL || lup == NULL ||
	    strstr(lup, "List-Unsubscribe=One-Click") == NULL || lid == NULL) {
		say(d, "headers", KR_DOCTOR_FAIL,
		    "a dry-run copy lacks %s%s%s: kairan adds them itself, so "
		    "this is a bug to report",
		    lu == NULL || *url_out == NULL ? "List-Unsubscribe (https) "
		                                   : "",
		    lup == NULL ? "List-Unsubscribe-Post " : "",
		    lid == NULL ? "List-Id" : "");
		goto out;
	}
	if (sig == NULL) {
		say(d, "headers", KR_DOCTOR_FAIL,
		    "a dry-run copy has List-Unsubscribe, List-Unsubscribe-Post "
		    "and List-Id but no DKIM signature: add a dkim: block");
		goto out;
	}
	if (!signed_field(sig, "list-unsubscribe") ||
	    !signed_field(sig, "list-unsubscribe-post")) {
		say(d, "headers", KR_DOCTOR_FAIL,
		    "DKIM h= does not cover List-Unsubscribe and "
		    "List-Unsubscribe-Post (RFC 8058 asks it)");
		goto out;
	}
	say(d, "headers", KR_DOCTOR_OK,
	    "a dry-run copy has List-Unsubscribe, List-Unsubscribe-Post, "
	    "List-Id, and DKIM h= covers the first two");
out:
	free(lu);
	free(lup);
	free(lid);
	free(sig);
	kr_dkim_free(&dkim);
	kr_token_keyring_free(&ring);
	kr_buf_fini(&msg);
}

/* ---- 特定電子メール法 ---- */

/* A contact a reader can use: a mail address, an http(s) URL or a
 * telephone number. */
static bool
contact_usable(const char *c)
{
	char addr[KR_ADDRESS_MAX];
	size_t digits = 0;
	const char *p;

	if (kr_address_normalize(c, strlen(c), addr, NULL) == 0 ||
	    strncmp(c, "https://", 8) == 0 || strncmp(c, "http://", 7) == 0)
		return true;
	for (p = c; *p != '\0'; p++) {
		if (*p >= '0' && *p <= '9')
			digits++;
		else if (strchr("+-() ", *p) == NULL)
			return false;
	}
	return digits >= 9;
}

/* Article 4: every mail shows the sender, a postal address and a contact
 * (the standard footer block prints them and how to stop, always).
 * Article 3's month of consent records is the config's own rule
 * (consent.retention below 31d is refused); said here for the record. */
static void
check_law(struct doc *d, const struct kr_cfg_list *l)
{
	bool ja = l->language != NULL && strcmp(l->language, "ja") == 0;
	const char *miss = l->sender_name == NULL      ? "name"
	                   : l->sender_address == NULL ? "address"
	                   : l->sender_contact == NULL ? "contact"
	                                               : NULL;

	if (miss != NULL) {
		say(d, "law", ja ? KR_DOCTOR_FAIL : KR_DOCTOR_WARN,
		    "no sender %s: mail to readers in Japan must show the "
		    "sender's name, a postal address and a contact (特定電子メール"
		    "法 Article 4); add sender: {name, address, contact} to the "
		    "list or the top level",
		    miss);
		return;
	}
	if (!contact_usable(l->sender_contact)) {
		say(d, "law", KR_DOCTOR_WARN,
		    "sender contact '%s' is neither a mail address, an http(s) "
		    "URL nor a telephone number: readers must be able to reach "
		    "you with it",
		    l->sender_contact);
		return;
	}
	say(d, "law", KR_DOCTOR_OK,
	    "every mail shows the sender (%s), the postal address, the "
	    "contact and how to stop; consent records are kept %u days after "
	    "the last mail",
	    l->sender_name, d->cfg->consent_retention / 86400u);
}

/* ---- one list ---- */

static void
check_list(struct doc *d, const struct kr_cfg_list *l, char **url_out)
{
	const char *from = domain_of(l->from_addr);
	const char *env = d->cfg->delivery.bounce_domain != NULL
	                      ? d->cfg->delivery.bounce_domain
	                      : from;
	const char *reply = l->reply_to != NULL ? domain_of(l->reply_to) : NULL;

	d->list = l->id;
	check_spf(d, env);
	check_dkim(d, l);
	check_dmarc(d, l, env);
	if (d->cfg->delivery.bounce_domain != NULL)
		check_mx(d, d->cfg->delivery.bounce_domain, "bounce_domain");
	if (d->cfg->delivery.bounce_domain == NULL ||
	    strcasecmp(from, d->cfg->delivery.bounce_domain) != 0)
		check_mx(d, from, "From");
	if (reply != NULL && strcasecmp(reply, from) != 0 &&
	    (d->cfg->delivery.bounce_domain == NULL ||
	     strcasecmp(reply, d->cfg->delivery.bounce_domain) != 0))
		check_mx(d, reply, "Reply-To");
	check_headers(d, l, url_out);
	check_law(d, l);
}

int
kr_doctor_run(const struct kr_config *cfg, const char *list_id,
              kr_doctor_fn fn, void *ctx, struct kr_err *err)
{
	struct doc d = {.cfg = cfg, .fn = fn, .ctx = ctx, .list = "-"};
	char *url = NULL;
	size_t i;
	int ret = -1;

	if (list_id != NULL && kr_config_list(cfg, list_id) == NULL) {
		kr_err_set(err, KR_ERR_NOTFOUND, "no list '%s' in %s", list_id,
		           cfg->path != NULL ? cfg->path : "the config");
		goto out;
	}
	if (kr_dns_new(cfg->dns.resolver, cfg->dns.timeout, &d.dns, err) < 0)
		goto out;
	for (i = 0; i < cfg->n_lists; i++) {
		char *u = NULL;

		if (list_id != NULL && strcmp(cfg->lists[i].id, list_id) != 0)
			continue;
		check_list(&d, &cfg->lists[i], &u);
		if (url == NULL)
			url = u;
		else
			free(u);
	}
	d.list = "-";
	for (i = 0; i < cfg->doctor.n_egress; i++)
		check_ptr(&d, cfg->doctor.egress[i]);
	check_relays(&d);
	check_one_click(&d, url);
	ret = d.fails;
out:
	free(url);
	kr_dns_free(&d.dns);
	return ret;
}
