/* dns.c — see dns.h. glibc's resolver rather than libunbound: it is in
 * libc already (the DKIM check uses it), a private res_state takes one
 * server with any port and a bounded timeout, and doctor needs answers,
 * not validation. */
#include "dns.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <resolv.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "err.h"
#include "xmem.h"

struct kr_dns {
	struct __res_state res;
	char server[80];
	unsigned timeout_s;
	bool dead; /* the server failed to answer once */
};

int
kr_dns_new(const char *server, unsigned timeout_s, struct kr_dns **dns_out,
           struct kr_err *err)
{
	struct kr_dns *d = NULL;
	struct in_addr a;
	char host[64];
	const char *colon;
	unsigned long port = 53;
	int ret = -1;

	*dns_out = NULL;
	if (timeout_s < 1 || timeout_s > 60)
		timeout_s = timeout_s < 1 ? 1 : 60;
	d = kr_xcalloc(1, sizeof(*d));
	d->timeout_s = timeout_s;
	if (res_ninit(&d->res) != 0) {
		kr_err_set(err, KR_ERR_IO, "dns: cannot set up the resolver");
		goto out;
	}
	d->res.retrans = (int)timeout_s;
	d->res.retry = 1;
	d->res.options &= ~(unsigned long)(RES_DNSRCH | RES_DEFNAMES);
	if (server == NULL || server[0] == '\0') {
		snprintf(d->server, sizeof(d->server), "the system resolver");
	} else {
		colon = strchr(server, ':');
		if (colon != NULL) {
			char *end;

			errno = 0;
			port = strtoul(colon + 1, &end, 10);
			if (colon[1] == '\0' || *end != '\0' || errno != 0 ||
			    port < 1 || port > 65535)
				goto bad;
		}
		if ((colon != NULL ? (size_t)(colon - server) : strlen(server)) >=
		    sizeof(host))
			goto bad;
		snprintf(host, sizeof(host), "%.*s",
		         (int)(colon != NULL ? colon - server
		                             : (long)strlen(server)),
		         server);
		if (inet_pton(AF_INET, host, &a) != 1)
			goto bad;
		memset(&d->res.nsaddr_list[0], 0, sizeof(d->res.nsaddr_list[0]));
		d->res.nsaddr_list[0].sin_family = AF_INET;
		d->res.nsaddr_list[0].sin_addr = a;
		d->res.nsaddr_list[0].sin_port = htons((unsigned short)port);
		d->res.nscount = 1;
		snprintf(d->server, sizeof(d->server), "%s:%lu", host, port);
	}
	*dns_out = d;
	d = NULL;
	ret = 0;
	goto out;
bad:
	kr_err_set(err, KR_ERR_INVALID,
	           "dns.resolver: '%.60s' is not IP[:PORT], expected one like "
	           "127.0.0.1 or 192.0.2.53:5353",
	           server);
out:
	if (d != NULL) {
		res_nclose(&d->res);
		free(d);
	}
	return ret;
}

void
kr_dns_free(struct kr_dns **dns)
{
	if (dns == NULL || *dns == NULL)
		return;
	res_nclose(&(*dns)->res);
	free(*dns);
	*dns = NULL;
}

const char *
kr_dns_server(const struct kr_dns *dns)
{
	return dns->server;
}

void
kr_dns_rrs_free(struct kr_dns_rr **rrs, size_t n)
{
	size_t i;

	if (rrs == NULL || *rrs == NULL)
		return;
	for (i = 0; i < n; i++)
		free((*rrs)[i].text);
	free(*rrs);
	*rrs = NULL;
}

static const char *
type_name(enum kr_dns_type t)
{
	switch (t) {
	case KR_DNS_A: return "A";
	case KR_DNS_AAAA: return "AAAA";
	case KR_DNS_CNAME: return "CNAME";
	case KR_DNS_PTR: return "PTR";
	case KR_DNS_MX: return "MX";
	case KR_DNS_TXT: return "TXT";
	}
	return "?";
}

/* One record's data as text (see struct kr_dns_rr); NULL when malformed. */
static char *
rr_text(ns_msg *msg, ns_rr *rr, enum kr_dns_type type, unsigned *pref)
{
	const unsigned char *rd = ns_rr_rdata(*rr);
	size_t len = ns_rr_rdlen(*rr), off = 0;
	char name[NS_MAXDNAME];
	char addr[INET6_ADDRSTRLEN];
	struct kr_buf b;

	*pref = 0;
	switch (type) {
	case KR_DNS_A:
		if (len != 4 || inet_ntop(AF_INET, rd, addr, sizeof(addr)) == NULL)
			return NULL;
		return kr_xstrdup(addr);
	case KR_DNS_AAAA:
		if (len != 16 ||
		    inet_ntop(AF_INET6, rd, addr, sizeof(addr)) == NULL)
			return NULL;
		return kr_xstrdup(addr);
	case KR_DNS_MX:
		if (len < 3)
			return NULL;
		*pref = ((unsigned)rd[0] << 8) | rd[1];
		off = 2;
		__attribute__((fallthrough));
	case KR_DNS_PTR:
	case KR_DNS_CNAME:
		if (ns_name_uncompress(ns_msg_base(*msg), ns_msg_end(*msg),
		                       rd + off, name, sizeof(name)) < 0)
			return NULL;
		len = strlen(name);
		if (len > 0 && name[len - 1] == '.')
			name[len - 1] = '\0';
		return kr_xstrdup(name);
	case KR_DNS_TXT:
		kr_buf_init(&b, 65536);
		while (off < len) {
			size_t sl = rd[off++];

			if (len - off < sl || kr_buf_append(&b, rd + off, sl) < 0) {
				kr_buf_fini(&b);
				return NULL;
			}
			off += sl;
		}
		return kr_buf_steal(&b);
	}
	return NULL;
}

int
kr_dns_query(struct kr_dns *dns, const char *name, enum kr_dns_type type,
             struct kr_dns_rr **rrs_out, size_t *n_out, struct kr_err *err)
{
	unsigned char ans[16384];
	struct kr_dns_rr *rrs = NULL;
	size_t n = 0;
	ns_msg msg;
	ns_rr rr;
	int len, i, count, ret = -1;

	*rrs_out = NULL;
	*n_out = 0;
	if (dns->dead) {
		kr_err_set(err, KR_ERR_TEMP,
		           "%s %s: not asked, %s did not answer before", name,
		           type_name(type), dns->server);
		goto out;
	}
	len = res_nquery(&dns->res, name, ns_c_in, (int)type, ans,
	                 sizeof(ans));
	if (len < 0) {
		switch (dns->res.res_h_errno) {
		case HOST_NOT_FOUND:
			kr_err_set(err, KR_ERR_NOTFOUND, "%s: no such name "
			           "(NXDOMAIN)", name);
			ret = 0;
			break;
		case NO_DATA:
			kr_err_set(err, KR_ERR_NOTFOUND, "%s: no %s record",
			           name, type_name(type));
			ret = 0;
			break;
		case TRY_AGAIN:
			if (errno == ETIMEDOUT || errno == ECONNREFUSED)
				dns->dead = true;
			kr_err_set(err, KR_ERR_TEMP,
			           "%s %s: no answer from %s within %u s", name,
			           type_name(type), dns->server, dns->timeout_s);
			break;
		default:
			kr_err_set(err, KR_ERR_TEMP, "%s %s: %s failed", name,
			           type_name(type), dns->server);
			break;
		}
		goto out;
	}
	if (len > (int)sizeof(ans))
		len = (int)sizeof(ans);
	if (ns_initparse(ans, len, &msg) < 0) {
		kr_err_set(err, KR_ERR_TEMP, "%s %s: a malformed reply from %s",
		           name, type_name(type), dns->server);
		goto out;
	}
	count = ns_msg_count(msg, ns_s_an);
	rrs = kr_xcalloc((size_t)count + 1, sizeof(*rrs));
	for (i = 0; i < count; i++) {
		char *t;
		unsigned pref;

		if (ns_parserr(&msg, ns_s_an, i, &rr) < 0)
			break;
		if ((int)ns_rr_type(rr) != (int)type || (int)ns_rr_class(rr) != (int)ns_c_in)
			continue;
		t = rr_text(&msg, &rr, type, &pref);
		if (t == NULL)
			continue;
		rrs[n].text = t;
		rrs[n].pref = pref;
		n++;
	}
	if (n == 0) {
		kr_err_set(err, KR_ERR_NOTFOUND, "%s: no %s record", name,
		           type_name(type));
		ret = 0;
		goto out;
	}
	*rrs_out = rrs;
	*n_out = n;
	rrs = NULL;
	ret = 1;
out:
	kr_dns_rrs_free(&rrs, n);
	return ret;
}

int
kr_dns_reverse_name(const char *ip, char *out, size_t size)
{
	unsigned char a[16];
	struct kr_buf b;
	int i, ret = -1;

	kr_buf_init(&b, 0);
	if (inet_pton(AF_INET, ip, a) == 1) {
		if (kr_buf_printf(&b, "%u.%u.%u.%u.in-addr.arpa", a[3], a[2], a[1],
		                  a[0]) < 0)
			goto out;
	} else if (inet_pton(AF_INET6, ip, a) == 1) {
		for (i = 15; i >= 0; i--)
			if (kr_buf_printf(&b, "%x.%x.", a[i] & 0xf, a[i] >> 4) < 0)
				goto out;
		if (kr_buf_puts(&b, "ip6.arpa") < 0)
			goto out;
	} else {
		goto out;
	}
	if (b.len >= size)
		goto out;
	memcpy(out, b.data, b.len + 1);
	ret = 0;
out:
	kr_buf_fini(&b);
	return ret;
}
