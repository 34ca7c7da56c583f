/* dns.h — DNS lookups for `kairanctl doctor`, through glibc's resolver
 * (res_nquery, ns_parse: libresolv, no extra package). A private resolver
 * state: the system's resolv.conf, or one server given as "IP[:PORT]"
 * (config dns.resolver), with a bounded timeout and one try per query. A
 * server that did not answer once is not asked again by the same handle:
 * a dead resolver costs one timeout, not one per check. Not for several
 * threads at once. IPv4 servers only. No DNSSEC validation. */
#ifndef KR_DNS_H
#define KR_DNS_H

#include <stddef.h>

#include "common.h"

struct kr_dns;
struct kr_err;

enum kr_dns_type {
	KR_DNS_A = 1, KR_DNS_CNAME = 5, KR_DNS_PTR = 12, KR_DNS_MX = 15,
	KR_DNS_TXT = 16, KR_DNS_AAAA = 28,
};

/* One answer record of the type asked for: text is the TXT strings joined,
 * an address in text form (A, AAAA), or a name without the final dot (PTR,
 * MX, CNAME); pref is MX's preference. */
struct kr_dns_rr {
	char *text;
	unsigned pref;
};

/* server NULL or "": the system's resolvers. timeout_s 1..60. Returns 0
 * and *dns_out (free with kr_dns_free), or -1 (KR_ERR_INVALID: not
 * IP[:PORT]). */
KR_NODISCARD int kr_dns_new(const char *server, unsigned timeout_s,
                            struct kr_dns **dns_out, struct kr_err *err);
void kr_dns_free(struct kr_dns **dns);
/* The server(s) asked, for messages ("127.0.0.1:5353", "the system
 * resolver"). Borrowed. */
const char *kr_dns_server(const struct kr_dns *dns);
/* Queries name (class IN) for type. Returns 1 and *rrs_out, *n_out (free
 * with kr_dns_rrs_free), 0 for no such name or no record of that type
 * (err says which), or -1 when the server failed or did not answer in time
 * (KR_ERR_TEMP, err names the server and the query). */
KR_NODISCARD int kr_dns_query(struct kr_dns *dns, const char *name,
                              enum kr_dns_type type,
                              struct kr_dns_rr **rrs_out, size_t *n_out,
                              struct kr_err *err);
void kr_dns_rrs_free(struct kr_dns_rr **rrs, size_t n);
/* The reverse name for an IPv4 or IPv6 address ("4.3.2.1.in-addr.arpa",
 * nibbles under ip6.arpa) into out. Returns 0, or -1 for no address. */
KR_NODISCARD int kr_dns_reverse_name(const char *ip, char *out, size_t size);

#endif
