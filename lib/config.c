/* config.c — the operator's YAML file into struct kr_config.
 *
 * libyaml's document API builds the node tree (with marks); one table per
 * mapping (struct section) then drives parsing, defaults, range checks and
 * the "allowed keys" of error messages. Every problem is collected as one
 * "FILE:LINE:COLUMN: what, expected what" line; nothing stops at the first.
 * Cross-field rules (transport needs, unique list ids, secrets) run after
 * the walk, with the tree still there to point at. YAML merge keys ("<<")
 * are resolved here (libyaml leaves them to the application), with the
 * work bounded so an alias bomb costs milliseconds. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>
#include <yaml.h>

#include "buf.h"
#include "config_int.h"
#include "err.h"
#include "log.h"
#include "tz.h"
#include "xmem.h"

#define CFG_MAX_FILE (1024 * 1024) /* bytes of YAML */
#define CFG_MAX_ERRORS 100         /* then one "too many errors" line */
#define CFG_MAX_PASSWORD 1024      /* bytes of relay password */
#define CFG_MAX_SHOW 60            /* bytes of a bad value quoted back */

enum ftype {
	FT_TEXT,   /* UTF-8 text, may span lines (footer) */
	FT_LINE,   /* one line, no control characters: may reach a header */
	FT_PATH,   /* a file name: one line, not empty */
	FT_URL,    /* http(s)://host[...] */
	FT_LISTEN, /* host:port, [v6]:port */
	FT_BOOL,
	FT_UINT,     /* unsigned, min..max */
	FT_DURATION, /* 30s 5m 1h 3d 1w, 1h30m, plain = seconds; unsigned */
	FT_RATE,     /* 50/s 100/m 3000/h, plain = per second; double */
	FT_ENUM,   /* one of f->enums; int, or a copy of the name (F_ENUMSTR) */
	FT_ADDR,   /* addr-spec */
	FT_FROM,   /* name-addr or addr-spec: fills from/from_name/from_addr */
	FT_LISTID, /* [a-z0-9._-]{1,64} */
	FT_DOMAIN, /* host name, stored lower-case */
	FT_HOST,   /* host name or IP literal */
	FT_IPLIST, /* list of IP addresses: char ** + count */
	FT_DURLIST,   /* list of durations: unsigned * + count */
	FT_MAP,       /* nested mapping stored in the same struct */
	FT_SEQ,       /* list of mappings: array of sub->elem_size + count */
	FT_DOMAINMAP, /* domain: mapping, array of sub->elem_size + count */
	FT_PERCENT,   /* 0.1% 5% or 0; stored as a fraction (double) */
	FT_DATABASE,  /* an SQLite path, a postgresql:// URI (char *), or a
	                 mapping (sub) the URI is built from */
};

#define F_REQUIRED 0x1
#define F_ENUMSTR 0x2 /* FT_ENUM: store strdup(name) in a char * */
#define F_QUERY 0x4   /* FT_URL: query string allowed */

struct enumval {
	const char *name;
	int value;
};

struct section;

struct field {
	const char *key;
	enum ftype type;
	unsigned flags;
	size_t off;         /* in the section's struct */
	const char *def;    /* default, parsed like a value; NULL: none */
	long long min, max; /* UINT, DURATION, DURLIST items; SEQ: item count */
	const struct enumval *enums;
	const struct section *sub; /* MAP, SEQ, DOMAINMAP */
	size_t count_off;   /* SEQ, DOMAINMAP, IPLIST, DURLIST: size_t count */
	const char *expect; /* what a good value looks like, for messages */
};

struct section {
	const char *name; /* for "unknown key … in NAME" */
	const struct field *fields;
	size_t n_fields;
	size_t elem_size; /* SEQ/DOMAINMAP element */
	size_t key_off;   /* DOMAINMAP: char * for the key */
	size_t max_items;
};

static const struct enumval transports[] = {
    {"smtp", KR_CFG_TRANSPORT_SMTP},
    {"maildir", KR_CFG_TRANSPORT_MAILDIR},
    {NULL, 0}};
static const struct enumval tlses[] = {{"none", KR_CFG_TLS_NONE},
                                       {"starttls", KR_CFG_TLS_STARTTLS},
                                       {"tls", KR_CFG_TLS_TLS},
                                       {NULL, 0}};
static const struct enumval languages[] = {{"ja", 0}, {"en", 1}, {NULL, 0}};
static const struct enumval charsets[] = {
    {"utf-8", KR_CFG_CHARSET_UTF8},
    {"iso-2022-jp", KR_CFG_CHARSET_ISO2022JP},
    {NULL, 0}};
static const struct enumval unreps[] = {{"substitute", KR_CFG_UNREP_SUBSTITUTE},
                                        {"utf-8", KR_CFG_UNREP_UTF8},
                                        {"refuse", KR_CFG_UNREP_REFUSE},
                                        {NULL, 0}};
static const struct enumval levels[] = {{"error", KR_LOG_ERR},
                                        {"warn", KR_LOG_WARN},
                                        {"info", KR_LOG_INFO},
                                        {"debug", KR_LOG_DEBUG},
                                        {NULL, 0}};

#define OFF(f) offsetof(struct kr_config, f)
#define LOFF(f) offsetof(struct kr_cfg_list, f)
#define ROFF(f) offsetof(struct kr_cfg_relay, f)
#define DOFF(f) offsetof(struct kr_cfg_domain, f)

static const struct field dkim_rsa_fields[] = {
    {.key = "selector",
     .type = FT_DOMAIN,
     .off = LOFF(dkim_rsa_selector),
     .flags = F_REQUIRED,
     .expect = "a DNS label like news2024-rsa"},
    {.key = "key_file",
     .type = FT_PATH,
     .off = LOFF(dkim_rsa_key_file),
     .flags = F_REQUIRED,
     .expect = "the RSA private key file (kairanctl dkim keygen)"},
};
static const struct section dkim_rsa_section = {
    "dkim.rsa", dkim_rsa_fields, KR_NELEM(dkim_rsa_fields), 0, 0, 0};

static const struct field dkim_ed_fields[] = {
    {.key = "selector",
     .type = FT_DOMAIN,
     .off = LOFF(dkim_ed25519_selector),
     .flags = F_REQUIRED,
     .expect = "a DNS label like news2024-ed25519"},
    {.key = "key_file",
     .type = FT_PATH,
     .off = LOFF(dkim_ed25519_key_file),
     .flags = F_REQUIRED,
     .expect = "the Ed25519 key file (kairanctl dkim keygen)"},
};
static const struct section dkim_ed_section = {
    "dkim.ed25519", dkim_ed_fields, KR_NELEM(dkim_ed_fields), 0, 0, 0};

static const struct field dkim_fields[] = {
    {.key = "domain",
     .type = FT_DOMAIN,
     .off = LOFF(dkim_domain),
     .flags = F_REQUIRED,
     .expect = "the signing domain d= like news.example.jp"},
    {.key = "rsa",
     .type = FT_MAP,
     .sub = &dkim_rsa_section,
     .expect = "a mapping with selector, key_file"},
    {.key = "ed25519",
     .type = FT_MAP,
     .sub = &dkim_ed_section,
     .expect = "a mapping with selector, key_file"},
};
static const struct section dkim_section = {
    "dkim", dkim_fields, KR_NELEM(dkim_fields), 0, 0, 0};

/* sender: the block Japan's Act on Regulation of Transmission of Specified
 * Electronic Mail (特定電子メール法, Article 4) asks every mail to show. */
static const struct field list_sender_fields[] = {
    {.key = "name",
     .type = FT_LINE,
     .off = LOFF(sender_name),
     .expect = "the sender's name, e.g. 株式会社Example"},
    {.key = "address",
     .type = FT_LINE,
     .off = LOFF(sender_address),
     .expect = "the sender's postal address on one line"},
    {.key = "contact",
     .type = FT_LINE,
     .off = LOFF(sender_contact),
     .expect = "a mail address, URL or telephone number for complaints "
               "and questions"},
};
static const struct section list_sender_section = {
    "sender", list_sender_fields, KR_NELEM(list_sender_fields), 0, 0, 0};
static const struct field root_sender_fields[] = {
    {.key = "name",
     .type = FT_LINE,
     .off = OFF(sender.name),
     .expect = "the sender's name, e.g. 株式会社Example"},
    {.key = "address",
     .type = FT_LINE,
     .off = OFF(sender.address),
     .expect = "the sender's postal address on one line"},
    {.key = "contact",
     .type = FT_LINE,
     .off = OFF(sender.contact),
     .expect = "a mail address, URL or telephone number for complaints "
               "and questions"},
};
static const struct field consent_fields[] = {
    {.key = "retention",
     .type = FT_DURATION,
     .off = OFF(consent_retention),
     .def = "31d",
     .min = 31 * 86400,
     .max = 3650 * 86400,
     .expect = "a duration 31d..3650d like 31d (the law asks for at "
               "least a month after the last mail)"},
};
static const struct section consent_section = {
    "consent", consent_fields, KR_NELEM(consent_fields), 0, 0, 0};

static const struct section root_sender_section = {
    "sender", root_sender_fields, KR_NELEM(root_sender_fields), 0, 0, 0};

static const struct field list_fields[] = {
    {.key = "id",
     .type = FT_LISTID,
     .off = LOFF(id),
     .flags = F_REQUIRED,
     .expect = "a list id of 1-64 characters a-z 0-9 . _ -"},
    {.key = "name",
     .type = FT_LINE,
     .off = LOFF(name),
     .expect = "the list's display name"},
    {.key = "from",
     .type = FT_FROM,
     .off = LOFF(from),
     .flags = F_REQUIRED,
     .expect = "\"Name <addr@domain>\" or addr@domain"},
    {.key = "reply_to",
     .type = FT_ADDR,
     .off = LOFF(reply_to),
     .expect = "an address like info@example.jp"},
    {.key = "double_opt_in",
     .type = FT_BOOL,
     .off = LOFF(double_opt_in),
     .def = "true",
     .expect = "true or false"},
    {.key = "language",
     .type = FT_ENUM,
     .off = LOFF(language),
     .def = "en",
     .flags = F_ENUMSTR,
     .enums = languages,
     .expect = "ja or en"},
    {.key = "archive",
     .type = FT_BOOL,
     .off = LOFF(archive),
     .def = "false",
     .expect = "true or false"},
    {.key = "allow_html",
     .type = FT_BOOL,
     .off = LOFF(allow_html),
     .def = "false",
     .expect = "true or false"},
    {.key = "footer",
     .type = FT_TEXT,
     .off = LOFF(footer),
     .expect = "text with {{placeholders}}"},
    {.key = "unsubscribe_mailto",
     .type = FT_ADDR,
     .off = LOFF(unsubscribe_mailto),
     .expect = "an address like unsubscribe@example.jp"},
    {.key = "dkim",
     .type = FT_MAP,
     .sub = &dkim_section,
     .expect = "a mapping with domain and rsa and/or ed25519"},
    {.key = "charset",
     .type = FT_ENUM,
     .off = LOFF(charset),
     .def = "utf-8",
     .enums = charsets,
     .expect = "utf-8 or iso-2022-jp"},
    {.key = "unrepresentable",
     .type = FT_ENUM,
     .off = LOFF(unrepresentable),
     .def = "substitute",
     .enums = unreps,
     .expect = "substitute, utf-8 or refuse"},
    {.key = "sender",
     .type = FT_MAP,
     .sub = &list_sender_section,
     .expect = "a mapping with name, address, contact"},
    {.key = "timezone",
     .type = FT_LINE,
     .off = LOFF(timezone),
     .expect = "an IANA time zone like Asia/Tokyo, or an offset like "
               "+09:00"},
};
static const struct section list_section = {
    "lists[]", list_fields, KR_NELEM(list_fields), sizeof(struct kr_cfg_list),
    0,         1000};

static const struct field domain_fields[] = {
    {.key = "connections",
     .type = FT_UINT,
     .off = DOFF(connections),
     .def = "0",
     .min = 0,
     .max = 64,
     .expect = "a number 0..64"},
    {.key = "rate",
     .type = FT_RATE,
     .off = DOFF(rate),
     .def = "0",
     .expect = "a rate like 20/s, 100/m or 3000/h"},
};
static const struct section domain_section = {
    "per_domain entry",           domain_fields, KR_NELEM(domain_fields),
    sizeof(struct kr_cfg_domain), DOFF(domain),  1000};

static const struct field relay_fields[] = {
    {.key = "host",
     .type = FT_HOST,
     .off = ROFF(host),
     .flags = F_REQUIRED,
     .expect = "a host name or IP address"},
    {.key = "port",
     .type = FT_UINT,
     .off = ROFF(port),
     .min = 1,
     .max = 65535,
     .expect = "a port 1..65535"},
    {.key = "tls",
     .type = FT_ENUM,
     .off = ROFF(tls),
     .def = "starttls",
     .enums = tlses,
     .expect = "none, starttls or tls"},
    {.key = "ca_file",
     .type = FT_PATH,
     .off = ROFF(ca_file),
     .expect = "a readable CA bundle file"},
    {.key = "user",
     .type = FT_LINE,
     .off = ROFF(user),
     .expect = "an AUTH user name"},
    {.key = "password_file",
     .type = FT_PATH,
     .off = ROFF(password_file),
     .expect = "a file holding the password"},
    {.key = "pipelining",
     .type = FT_BOOL,
     .off = ROFF(pipelining),
     .def = "true",
     .expect = "true or false"},
};
static const struct section relay_section = {
    "smtp[]", relay_fields, KR_NELEM(relay_fields), sizeof(struct kr_cfg_relay),
    0,        100};

static const struct field http_fields[] = {
    {.key = "listen",
     .type = FT_LISTEN,
     .off = OFF(http_listen),
     .def = "127.0.0.1:8080",
     .expect = "host:port like 127.0.0.1:8080"},
    {.key = "trusted_proxies",
     .type = FT_IPLIST,
     .off = OFF(trusted_proxies),
     .count_off = OFF(n_trusted_proxies),
     .max = 1000,
     .expect = "a list of IP addresses like [127.0.0.1]"},
    /* One subscriber line gets a /64 (or a /56, /48): limiting IPv6
     * clients per address would give each of them 2^64 buckets. */
    {.key = "ipv6_prefix",
     .type = FT_UINT,
     .off = OFF(http_ipv6_prefix),
     .def = "64",
     .min = 32,
     .max = 128,
     .expect = "a prefix length 32..128"},
    /* From accept (or the end of the previous answer) to the end of the
     * request head, however steadily it trickles in. */
    {.key = "header_timeout",
     .type = FT_DURATION,
     .off = OFF(http_header_timeout),
     .def = "15s",
     .min = 1,
     .max = 300,
     .expect = "a duration 1s..5m like 15s"},
};
static const struct section http_section = {
    "http", http_fields, KR_NELEM(http_fields), 0, 0, 0};

static const struct field admin_fields[] = {
    {.key = "listen",
     .type = FT_LISTEN,
     .off = OFF(admin_listen),
     .def = "127.0.0.1:8081",
     .expect = "host:port like 127.0.0.1:8081"},
    {.key = "user",
     .type = FT_LINE,
     .off = OFF(admin_user),
     .def = "admin",
     .expect = "the dashboard login's user name"},
    {.key = "password_file",
     .type = FT_PATH,
     .off = OFF(admin_password_file),
     .expect = "a file holding the dashboard password's hash "
               "(kairanctl password-hash)"},
    {.key = "metrics_login",
     .type = FT_BOOL,
     .off = OFF(admin_metrics_login),
     .def = "false",
     .expect = "true or false"},
};
static const struct section admin_section = {
    "admin", admin_fields, KR_NELEM(admin_fields), 0, 0, 0};

static const struct field delivery_fields[] = {
    {.key = "transport",
     .type = FT_ENUM,
     .off = OFF(delivery.transport),
     .def = "smtp",
     .enums = transports,
     .expect = "smtp or maildir"},
    {.key = "maildir",
     .type = FT_PATH,
     .off = OFF(delivery.maildir),
     .expect = "a Maildir folder"},
    {.key = "workers",
     .type = FT_UINT,
     .off = OFF(delivery.workers),
     .def = "4",
     .min = 1,
     .max = 64,
     .expect = "a number 1..64"},
    {.key = "rate",
     .type = FT_RATE,
     .off = OFF(delivery.rate),
     .def = "0",
     .expect = "a rate like 50/s, 100/m or 3000/h (0: unlimited)"},
    {.key = "per_domain",
     .type = FT_DOMAINMAP,
     .off = OFF(delivery.per_domain),
     .count_off = OFF(delivery.n_per_domain),
     .sub = &domain_section,
     .expect = "a mapping of domain: { connections: N, rate: N/s }"},
    {.key = "retry",
     .type = FT_DURLIST,
     .off = OFF(delivery.retry),
     .count_off = OFF(delivery.n_retry),
     .def = "5m 15m 1h 4h 12h",
     .min = 1,
     .max = 30 * 86400,
     .expect = "a list of durations 1s..30d like [5m, 15m, 1h]"},
    {.key = "max_age",
     .type = FT_DURATION,
     .off = OFF(delivery.max_age),
     .def = "3d",
     .min = 60,
     .max = 365 * 86400,
     .expect = "a duration 1m..365d like 3d"},
    {.key = "bounce_domain",
     .type = FT_DOMAIN,
     .off = OFF(delivery.bounce_domain),
     .expect = "a domain like bounces.example.jp"},
    {.key = "batch",
     .type = FT_UINT,
     .off = OFF(delivery.batch),
     /* 50, not 100: a worker composes its whole batch before the session,
      * so 4 workers x 100 x 29 KB put kairand over 32 MB at 100,000
      * subscribers; 50 keeps it under and is no slower (peak RSS and
      * rate: bench/RESULTS.md, "kairand end to end"). */
     .def = "50",
     .min = 1,
     .max = 10000,
     .expect = "a number 1..10000"},
    {.key = "lease",
     .type = FT_DURATION,
     .off = OFF(delivery.lease),
     .def = "300",
     .min = 10,
     .max = 86400,
     .expect = "a duration 10s..1d like 5m"},
    {.key = "timeout",
     .type = FT_DURATION,
     .off = OFF(delivery.timeout),
     .def = "300",
     .min = 1,
     .max = 3600,
     .expect = "a duration 1s..1h like 5m"},
};
static const struct section delivery_section = {
    "delivery", delivery_fields, KR_NELEM(delivery_fields), 0, 0, 0};

static const struct field log_fields[] = {
    {.key = "level",
     .type = FT_ENUM,
     .off = OFF(log_level),
     .def = "info",
     .enums = levels,
     .expect = "error, warn, info or debug"},
};
static const struct section log_section = {
    "log", log_fields, KR_NELEM(log_fields), 0, 0, 0};

static const struct field bounce_fields[] = {
    {.key = "hard_threshold",
     .type = FT_UINT,
     .off = OFF(bounce.hard_threshold),
     .def = "1",
     .min = 1,
     .max = 100,
     .expect = "a number 1..100 of counted bounces"},
    {.key = "soft_threshold",
     .type = FT_UINT,
     .off = OFF(bounce.soft_threshold),
     .def = "3",
     .min = 1,
     .max = 100,
     .expect = "a number 1..100 of soft bounces"},
    {.key = "soft_window",
     .type = FT_DURATION,
     .off = OFF(bounce.soft_window),
     .def = "7d",
     .min = 3600,
     .max = 365 * 86400,
     .expect = "a duration 1h..365d like 7d"},
    {.key = "reset_after",
     .type = FT_DURATION,
     .off = OFF(bounce.reset_after),
     .def = "90d",
     .min = 86400,
     .max = 3650 * 86400,
     .expect = "a duration 1d..3650d like 90d"},
};
static const struct section bounce_section = {
    "bounce", bounce_fields, KR_NELEM(bounce_fields), 0, 0, 0};

static const struct field doctor_fields[] = {
    {.key = "egress",
     .type = FT_IPLIST,
     .off = OFF(doctor.egress),
     .count_off = OFF(doctor.n_egress),
     .max = 64,
     .expect = "a list of the relays' egress IP addresses like "
               "[192.0.2.25]"},
    {.key = "ca_file",
     .type = FT_PATH,
     .off = OFF(doctor.ca_file),
     .expect = "a file of CA certificates (PEM)"},
};
static const struct section doctor_section = {
    "doctor", doctor_fields, KR_NELEM(doctor_fields), 0, 0, 0};

static const struct field dns_fields[] = {
    {.key = "resolver",
     .type = FT_LINE,
     .off = OFF(dns.resolver),
     .expect = "a DNS server as IP[:PORT] like 192.0.2.53"},
    {.key = "timeout",
     .type = FT_DURATION,
     .off = OFF(dns.timeout),
     .def = "3s",
     .min = 1,
     .max = 60,
     .expect = "a duration 1s..60s like 3s"},
};
static const struct section dns_section = {
    "dns", dns_fields, KR_NELEM(dns_fields), 0, 0, 0};

static const struct field governor_fields[] = {
    {.key = "complaint_rate",
     .type = FT_PERCENT,
     .off = OFF(governor.complaint_rate),
     .def = "0.1%",
     .expect = "a percentage like 0.1% (0 turns the rule off)"},
    {.key = "bounce_rate",
     .type = FT_PERCENT,
     .off = OFF(governor.bounce_rate),
     .def = "5%",
     .expect = "a percentage like 5% (0 turns the rule off)"},
    {.key = "min_sent",
     .type = FT_UINT,
     .off = OFF(governor.min_sent),
     .def = "1000",
     .min = 0,
     .max = 100000000,
     .expect = "a number of copies sent like 1000"},
};
static const struct section governor_section = {
    "governor", governor_fields, KR_NELEM(governor_fields), 0, 0, 0};

static const struct enumval sslmodes[] = {
    {"disable", 0}, {"allow", 1},     {"prefer", 2},      {"require", 3},
    {"verify-ca", 4}, {"verify-full", 5}, {NULL, 0}};

/* database: as a mapping selects PostgreSQL; check_database() builds the
 * URI of cfg->database from these. */
static const struct field database_fields[] = {
    {.key = "host",
     .type = FT_LINE,
     .off = OFF(db.host),
     .flags = F_REQUIRED,
     .expect = "the PostgreSQL server's host name, IP address or socket "
               "folder"},
    {.key = "port",
     .type = FT_UINT,
     .off = OFF(db.port),
     .min = 1,
     .max = 65535,
     .expect = "a port 1..65535"},
    {.key = "dbname",
     .type = FT_LINE,
     .off = OFF(db.dbname),
     .flags = F_REQUIRED,
     .expect = "the database name"},
    {.key = "user",
     .type = FT_LINE,
     .off = OFF(db.user),
     .expect = "the PostgreSQL role to connect as"},
    {.key = "sslmode",
     .type = FT_ENUM,
     .flags = F_ENUMSTR,
     .off = OFF(db.sslmode),
     .enums = sslmodes,
     .expect = "disable, allow, prefer, require, verify-ca or verify-full"},
    {.key = "password_file",
     .type = FT_PATH,
     .off = OFF(database_password_file),
     .expect = "a file holding the password (or KAIRAN_DB_PASSWORD in the "
               "environment)"},
};
static const struct section database_section = {
    "database", database_fields, KR_NELEM(database_fields), 0, 0, 0};

static const struct field root_fields[] = {
    {.key = "database",
     .type = FT_DATABASE,
     .off = OFF(database),
     .sub = &database_section,
     .def = "/var/lib/kairan/kairan.db",
     .expect = "an SQLite file name, a postgresql:// URI or a mapping "
               "with host, port, dbname, user, sslmode, password_file"},
    {.key = "key_file",
     .type = FT_PATH,
     .off = OFF(key_file),
     .def = "/var/lib/kairan/token.key",
     .expect = "a file name"},
    {.key = "host_id",
     .type = FT_HOST,
     .off = OFF(host_id),
     .expect = "this host's name among the kairand hosts of one database, "
               "like mail1.example.jp (default: the machine's host name)"},
    {.key = "public_url",
     .type = FT_URL,
     .off = OFF(public_url),
     .flags = F_REQUIRED,
     .expect = "an http(s) URL like https://news.example.jp"},
    {.key = "http",
     .type = FT_MAP,
     .sub = &http_section,
     .expect = "a mapping with listen, trusted_proxies, ipv6_prefix, "
               "header_timeout"},
    {.key = "admin",
     .type = FT_MAP,
     .sub = &admin_section,
     .expect = "a mapping with listen"},
    {.key = "outbox",
     .type = FT_PATH,
     .off = OFF(outbox),
     .expect = "a folder"},
    {.key = "webhook",
     .type = FT_URL,
     .off = OFF(webhook),
     .flags = F_QUERY,
     .expect = "an http(s) URL"},
    {.key = "sender",
     .type = FT_MAP,
     .sub = &root_sender_section,
     .expect = "a mapping with name, address, contact (inherited by "
               "every list)"},
    {.key = "consent",
     .type = FT_MAP,
     .sub = &consent_section,
     .expect = "a mapping with retention"},
    {.key = "lists",
     .type = FT_SEQ,
     .off = OFF(lists),
     .count_off = OFF(n_lists),
     .sub = &list_section,
     .flags = F_REQUIRED,
     .min = 1,
     .expect = "a list of lists (- id: …, from: …)"},
    {.key = "delivery",
     .type = FT_MAP,
     .sub = &delivery_section,
     .expect = "a mapping with transport, workers, rate, retry, …"},
    {.key = "smtp",
     .type = FT_SEQ,
     .off = OFF(relays),
     .count_off = OFF(n_relays),
     .sub = &relay_section,
     .expect = "a list of relays (- host: …, port: …)"},
    {.key = "log",
     .type = FT_MAP,
     .sub = &log_section,
     .expect = "a mapping with level"},
    {.key = "bounce",
     .type = FT_MAP,
     .sub = &bounce_section,
     .expect = "a mapping with hard_threshold, soft_threshold, soft_window, "
               "reset_after"},
    {.key = "doctor",
     .type = FT_MAP,
     .sub = &doctor_section,
     .expect = "a mapping with egress, ca_file"},
    {.key = "dns",
     .type = FT_MAP,
     .sub = &dns_section,
     .expect = "a mapping with resolver, timeout"},
    {.key = "governor",
     .type = FT_MAP,
     .sub = &governor_section,
     .expect = "a mapping with complaint_rate, bounce_rate, min_sent"},
};
static const struct section root_section = {
    "the top level", root_fields, KR_NELEM(root_fields), 0, 0, 0};

struct cfg_error {
	size_t line, col; /* 1-based; 0: about the whole file */
	size_t seq;       /* found order, to keep the sort stable */
	char *text;       /* the whole line, with FILE: and '\n' */
};

struct ctx {
	const char *name; /* FILE in messages */
	yaml_document_t *doc;
	struct cfg_error *errs;
	size_t n_errs;
	bool stop;      /* too many errors: stop walking */
	size_t merged;  /* pairs seen through "<<", against alias bombs */
	unsigned flags; /* KR_CONFIG_* */
};

static void cerr(struct ctx *c, const yaml_mark_t *m, const char *fmt, ...)
    KR_PRINTF(3, 4);

/* Records one error line; they are sorted by position at the end. */
static void
cerr(struct ctx *c, const yaml_mark_t *m, const char *fmt, ...)
{
	struct cfg_error *e;
	struct kr_buf b;
	va_list ap;
	int r;

	if (c->stop)
		return;
	kr_buf_init(&b, 0);
	if (c->n_errs % 16 == 0)
		c->errs =
		    kr_xrealloc(c->errs, (c->n_errs + 16) * sizeof(*c->errs));
	e = &c->errs[c->n_errs];
	e->seq = c->n_errs++;
	e->line = m ? m->line + 1 : 0;
	e->col = m ? m->column + 1 : 0;
	if (c->n_errs > CFG_MAX_ERRORS) {
		/* Sorted last whatever its position. */
		e->line = SIZE_MAX;
		r = kr_buf_printf(&b, "%s: too many errors, stopping here",
		                  c->name);
		c->stop = true;
	} else if (m != NULL) {
		r = kr_buf_printf(&b, "%s:%zu:%zu: ", c->name, e->line, e->col);
	} else {
		r = kr_buf_printf(&b, "%s: ", c->name);
	}
	if (r == 0 && !c->stop) {
		va_start(ap, fmt);
		r = kr_buf_vprintf(&b, fmt, ap);
		va_end(ap);
	}
	if (r == 0)
		r = kr_buf_putc(&b, '\n');
	(void)r; /* b is unbounded: appends cannot fail */
	e->text = kr_buf_steal(&b);
}

static int
cfg_error_cmp(const void *a, const void *b)
{
	const struct cfg_error *x = a, *y = b;

	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	if (x->col != y->col)
		return x->col < y->col ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* All errors, sorted by position, as one string (NULL when none); frees
 * them. */
static char *
errors_take(struct ctx *c)
{
	struct kr_buf b;
	size_t i;
	int r = 0;

	if (c->n_errs == 0) {
		free(c->errs);
		c->errs = NULL;
		return NULL;
	}
	kr_buf_init(&b, 0);
	qsort(c->errs, c->n_errs, sizeof(*c->errs), cfg_error_cmp);
	for (i = 0; i < c->n_errs; i++) {
		/* One anchor merged in three places: say it once. */
		if (r == 0 && (i == 0 || strcmp(c->errs[i].text,
		                                c->errs[i - 1].text) != 0))
			r = kr_buf_puts(&b, c->errs[i].text);
	}
	for (i = 0; i < c->n_errs; i++)
		free(c->errs[i].text);
	(void)r;
	free(c->errs);
	c->errs = NULL;
	c->n_errs = 0;
	return kr_buf_steal(&b);
}

/* Quotes a value back to the operator: control bytes escaped, long values
 * cut on a character boundary. */
static const char *
show(const char *s, size_t len, char out[CFG_MAX_SHOW * 4 + 8])
{
	size_t i, o = 0;

	for (i = 0; i < len && o < CFG_MAX_SHOW; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch < 0x20 || ch == 0x7f) {
			snprintf(out + o, 5, "\\x%02x", ch);
			o += 4;
		} else {
			out[o++] = (char)ch;
		}
	}
	if (i < len) {
		/* Back up to a UTF-8 lead byte. */
		while (o > 0 && ((unsigned char)out[o - 1] & 0xc0) == 0x80)
			o--;
		if (o > 0 && ((unsigned char)out[o - 1] & 0x80))
			o--;
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
	return out;
}

static const char *
node_kind(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_SCALAR_NODE:
		return "text";
	case YAML_SEQUENCE_NODE:
		return "a list";
	case YAML_MAPPING_NODE:
		return "a mapping";
	default:
		return "nothing";
	}
}

static bool
is_null(const yaml_node_t *n)
{
	const char *v = (const char *)n->data.scalar.value;
	size_t len = n->data.scalar.length;

	if (n->type != YAML_SCALAR_NODE ||
	    n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	return len == 0 || (len == 1 && v[0] == '~') ||
	       (len == 4 &&
	        (memcmp(v, "null", 4) == 0 || memcmp(v, "Null", 4) == 0 ||
	         memcmp(v, "NULL", 4) == 0));
}

static char **
str_at(void *base, size_t off)
{
	return (char **)(void *)((char *)base + off);
}

static void
set_str(void *base, size_t off, char *s)
{
	char **p = str_at(base, off);

	free(*p);
	*p = s;
}

/* C0 controls and DEL, and the UTF-8 forms of C1 controls (NEL among
 * them) and U+2028/U+2029, which some software takes for line breaks. */
static bool
has_ctl(const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i;

	for (i = 0; i < len; i++) {
		if (u[i] < 0x20 || u[i] == 0x7f)
			return true;
		if (u[i] == 0xc2 && i + 1 < len && u[i + 1] >= 0x80 &&
		    u[i + 1] <= 0x9f)
			return true;
		if (u[i] == 0xe2 && i + 2 < len && u[i + 1] == 0x80 &&
		    (u[i + 2] == 0xa8 || u[i + 2] == 0xa9))
			return true;
	}
	return false;
}

/* ---- value syntaxes: each returns 0, or -1 with why set ---- */

static int
parse_uint(const char *s, size_t len, unsigned long long *out)
{
	unsigned long long v = 0;
	size_t i;

	if (len == 0 || len > 19)
		return -1;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	*out = v;
	return 0;
}

/* "30s", "5m", "1h", "3d", "1w", "1h30m", or a plain number of seconds. */
static int
parse_duration(const char *s, size_t len, unsigned long long *out)
{
	unsigned long long total = 0, v, mul;
	size_t i = 0, start;

	if (len == 0)
		return -1;
	while (i < len) {
		start = i;
		v = 0;
		while (i < len && s[i] >= '0' && s[i] <= '9') {
			if (v > (ULLONG_MAX - 9) / 10)
				return -1;
			v = v * 10 + (unsigned)(s[i] - '0');
			i++;
		}
		if (i == start)
			return -1;
		if (i == len) {
			if (start != 0) /* "1h30" is ambiguous */
				return -1;
			mul = 1;
		} else {
			switch (s[i++]) {
			case 's':
				mul = 1;
				break;
			case 'm':
				mul = 60;
				break;
			case 'h':
				mul = 3600;
				break;
			case 'd':
				mul = 86400;
				break;
			case 'w':
				mul = 7 * 86400;
				break;
			default:
				return -1;
			}
		}
		if (v > (1ULL << 40) || total > (1ULL << 50))
			return -1;
		total += v * mul;
	}
	*out = total;
	return 0;
}

/* "50/s", "100/m", "3000/h", "10000/d", "0.5/s" or a plain per-second
 * number; 0 means no limit. */
static int
parse_rate(const char *s, size_t len, double *out)
{
	double v = 0, frac = 0.1, per = 1;
	size_t i = 0;
	bool digits = false, dot = false;

	for (; i < len && s[i] != '/'; i++) {
		if (s[i] >= '0' && s[i] <= '9') {
			if (dot) {
				v += (s[i] - '0') * frac;
				frac /= 10;
			} else {
				v = v * 10 + (s[i] - '0');
			}
			digits = true;
		} else if (s[i] == '.' && !dot) {
			dot = true;
		} else {
			return -1;
		}
		if (v > 1e7)
			return -1;
	}
	if (!digits)
		return -1;
	if (i < len) {
		if (len - i != 2)
			return -1;
		switch (s[i + 1]) {
		case 's':
			per = 1;
			break;
		case 'm':
			per = 60;
			break;
		case 'h':
			per = 3600;
			break;
		case 'd':
			per = 86400;
			break;
		default:
			return -1;
		}
	}
	*out = v / per;
	return 0;
}

static bool
is_atext(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= '0' && ch <= '9') ||
	       (ch != 0 && strchr("!#$%&'*+-/=?^_`{|}~", ch) != NULL);
}

/* A DNS host name: labels of letters, digits and hyphens. */
static int
check_hostname(const char *s, size_t len, const char **why)
{
	size_t i, label = 0;

	if (len == 0 || len > 253) {
		*why = len ? "is too long" : "is empty";
		return -1;
	}
	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == '.') {
			if (label == 0 || s[i - 1] == '-') {
				*why = "has an empty label or a label "
				       "ending in '-'";
				return -1;
			}
			label = 0;
			continue;
		}
		if (ch >= 0x80) {
			*why = "is not ASCII (write an IDN domain in its "
			       "xn-- form)";
			return -1;
		}
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '-')) {
			*why = "has a character not allowed in a domain";
			return -1;
		}
		if (ch == '-' && label == 0) {
			*why = "has a label starting with '-'";
			return -1;
		}
		if (++label > 63) {
			*why = "has a label longer than 63 characters";
			return -1;
		}
	}
	if (label == 0 || s[len - 1] == '-') {
		*why = "ends with '.' or '-'";
		return -1;
	}
	return 0;
}

/* addr-spec (RFC 5322 without comments and obsolete forms): a dot-atom or
 * quoted local part, '@', a host name or [IP literal]. */
static int
check_addr(const char *s, size_t len, const char **why)
{
	const char *at = NULL;
	size_t i, local;

	if (len == 0) {
		*why = "is empty";
		return -1;
	}
	if (len > 254) {
		*why = "is longer than 254 characters";
		return -1;
	}
	if (s[0] == '"') {
		for (i = 1; i < len && s[i] != '"'; i++) {
			unsigned char ch = (unsigned char)s[i];

			if (ch == '\\' && i + 1 < len)
				ch = (unsigned char)s[++i];
			if (ch < 0x20 || ch >= 0x7f) {
				*why = "has a control or non-ASCII character "
				       "in its quoted local part";
				return -1;
			}
		}
		if (i >= len || i + 1 >= len || s[i + 1] != '@') {
			*why = "has an unterminated quoted local part or no "
			       "'@' after it";
			return -1;
		}
		at = s + i + 1;
	} else {
		at = memchr(s, '@', len);
		if (at == NULL) {
			*why = "has no '@'";
			return -1;
		}
		for (i = 0; s + i < at; i++) {
			unsigned char ch = (unsigned char)s[i];

			if (ch == '.') {
				if (i == 0 || s[i - 1] == '.' ||
				    s + i + 1 == at) {
					*why = "has a misplaced '.' in its "
					       "local part";
					return -1;
				}
			} else if (!is_atext(ch)) {
				*why = "has a character not allowed before "
				       "'@' (quote the local part or drop it)";
				return -1;
			}
		}
	}
	local = (size_t)(at - s);
	if (local == 0 || local > 64) {
		*why = local ? "has a local part over 64 characters"
		             : "has nothing before '@'";
		return -1;
	}
	at++;
	len -= local + 1;
	if (len > 2 && at[0] == '[' && at[len - 1] == ']') {
		char ip[64];
		unsigned char bin[16];
		const char *p = at + 1;
		size_t n = len - 2;
		int af = AF_INET;

		if (n > 5 && strncasecmp(p, "IPv6:", 5) == 0) {
			p += 5;
			n -= 5;
			af = AF_INET6;
		}
		if (n >= sizeof(ip)) {
			*why = "has a bad address literal";
			return -1;
		}
		memcpy(ip, p, n);
		ip[n] = '\0';
		if (inet_pton(af, ip, bin) != 1) {
			*why = "has a bad address literal";
			return -1;
		}
		return 0;
	}
	return check_hostname(at, len, why);
}

/* "Name <addr>", "\"Quoted, Name\" <addr>", "<addr>" or "addr". The name
 * is unquoted into *name_out; *addr_out is the addr-spec. */
static int
parse_from(const char *s, size_t len, char **name_out, char **addr_out,
           const char **why)
{
	const char *lt, *gt, *addr;
	size_t nlen, alen, i;
	struct kr_buf name;
	int r = -1;

	kr_buf_init(&name, 0);
	while (len > 0 && (s[0] == ' ' || s[0] == '\t')) {
		s++;
		len--;
	}
	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	if (len == 0 || s[len - 1] != '>') {
		if (memchr(s, '<', len) != NULL ||
		    memchr(s, '>', len) != NULL) {
			*why = "has unbalanced '<' '>'";
			goto out;
		}
		if (check_addr(s, len, why) < 0)
			goto out;
		*name_out = kr_xstrdup("");
		*addr_out = kr_xstrndup(s, len);
		r = 0;
		goto out;
	}
	gt = s + len - 1;
	for (lt = gt; lt > s && *lt != '<'; lt--)
		;
	if (*lt != '<') {
		*why = "has '>' without '<'";
		goto out;
	}
	addr = lt + 1;
	alen = (size_t)(gt - addr);
	if (check_addr(addr, alen, why) < 0)
		goto out;
	nlen = (size_t)(lt - s);
	while (nlen > 0 && (s[nlen - 1] == ' ' || s[nlen - 1] == '\t'))
		nlen--;
	if (nlen > 0 && s[0] == '"') {
		for (i = 1; i < nlen && s[i] != '"'; i++) {
			if (s[i] == '\\' && i + 1 < nlen)
				i++;
			if (kr_buf_putc(&name, s[i]) < 0)
				goto out;
		}
		if (i != nlen - 1) {
			*why = "has text after the quoted display name, or an "
			       "unterminated quote";
			goto out;
		}
	} else {
		for (i = 0; i < nlen; i++) {
			if (strchr("<>@,;:\"[]()\\", s[i]) != NULL) {
				*why = "has a special character (one of "
				       "<>@,;:\"[]()\\) in an unquoted display "
				       "name: put the name in double quotes";
				goto out;
			}
		}
		if (kr_buf_append(&name, s, nlen) < 0)
			goto out;
	}
	*name_out = kr_buf_steal(&name);
	*addr_out = kr_xstrndup(addr, alen);
	r = 0;
out:
	kr_buf_fini(&name);
	return r;
}

/* http(s)://host[:port][/path]; query and fragment only with F_QUERY. */
static int
check_url(const char *s, size_t len, unsigned flags, const char **why)
{
	size_t i, host;

	if (len > 7 && strncasecmp(s, "http://", 7) == 0) {
		host = 7;
	} else if (len > 8 && strncasecmp(s, "https://", 8) == 0) {
		host = 8;
	} else {
		*why = "is not an http:// or https:// URL";
		return -1;
	}
	if (host >= len || s[host] == '/' || s[host] == ':' || s[host] == '?' ||
	    s[host] == '#') {
		*why = "has no host";
		return -1;
	}
	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch <= 0x20 || ch >= 0x7f || strchr("\"<>\\^`{|}", ch)) {
			*why = "has a space, quote or non-ASCII character "
			       "(percent-encode it)";
			return -1;
		}
		if (!(flags & F_QUERY) && (ch == '?' || ch == '#')) {
			*why = "has a query or fragment, not allowed in a "
			       "base URL";
			return -1;
		}
	}
	return 0;
}

static int
check_ip(const char *s, size_t len)
{
	char ip[64];
	unsigned char bin[16];

	if (len == 0 || len >= sizeof(ip))
		return -1;
	memcpy(ip, s, len);
	ip[len] = '\0';
	if (inet_pton(AF_INET, ip, bin) == 1 ||
	    inet_pton(AF_INET6, ip, bin) == 1)
		return 0;
	return -1;
}

/* host:port, [v6]:port, *:port. */
static int
check_listen(const char *s, size_t len, const char **why)
{
	const char *colon;
	unsigned long long port;
	size_t hlen;

	if (len > 0 && s[0] == '[') {
		const char *rb = memchr(s, ']', len);

		if (rb == NULL || rb + 1 >= s + len || rb[1] != ':' ||
		    check_ip(s + 1, (size_t)(rb - s - 1)) < 0) {
			*why = "is not [IPv6]:port";
			return -1;
		}
		colon = rb + 1;
	} else {
		colon = memchr(s, ':', len);
		if (colon == NULL) {
			*why = "has no ':port'";
			return -1;
		}
		hlen = (size_t)(colon - s);
		if (memchr(colon + 1, ':', len - hlen - 1) != NULL) {
			*why = "has more than one ':' (write IPv6 as "
			       "[::1]:8080)";
			return -1;
		}
		if (!(hlen == 1 && s[0] == '*') &&
		    check_hostname(s, hlen, why) < 0)
			return -1;
	}
	if (parse_uint(colon + 1, len - (size_t)(colon + 1 - s), &port) < 0 ||
	    port < 1 || port > 65535) {
		*why = "has a bad port (expected 1..65535)";
		return -1;
	}
	return 0;
}

static int
check_listid(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > 64)
		return -1;
	for (i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '.' ||
		      s[i] == '_' || s[i] == '-'))
			return -1;
	return 0;
}

static int
parse_bool(const char *s, size_t len, bool *out)
{
	static const char *const t[] = {"true", "yes", "on"};
	static const char *const f[] = {"false", "no", "off"};
	size_t i;

	for (i = 0; i < KR_NELEM(t); i++) {
		if (len == strlen(t[i]) && strncasecmp(s, t[i], len) == 0) {
			*out = true;
			return 0;
		}
		if (len == strlen(f[i]) && strncasecmp(s, f[i], len) == 0) {
			*out = false;
			return 0;
		}
	}
	return -1;
}

static void
lower(char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
}

/* "HTTPS://" → "https://", so users of the URL can compare prefixes. */
static void
lower_scheme(char *url)
{
	for (; *url && *url != ':'; url++)
		if (*url >= 'A' && *url <= 'Z')
			*url = (char)(*url - 'A' + 'a');
}

/* Converts one scalar into the field at base. node is NULL for a default
 * (which must be valid: it comes from the table). Returns 0 or -1 with an
 * error recorded. */
/* Whether s (len bytes) starts with a scheme that selects PostgreSQL;
 * *rest_out: the offset after "://". */
static bool
is_pg_uri(const char *s, size_t len, size_t *rest_out)
{
	static const char *const schemes[] = {"postgresql://", "postgres://"};
	size_t i, n;

	for (i = 0; i < KR_NELEM(schemes); i++) {
		n = strlen(schemes[i]);
		if (len >= n && strncasecmp(s, schemes[i], n) == 0) {
			*rest_out = n;
			return true;
		}
	}
	return false;
}

/* database: a path, or a libpq URI without a password; stored with the
 * scheme spelled postgresql://. The value is never quoted back (it may
 * hold a password). */
static int
conv_database(struct ctx *c, const struct field *f, const char *s, size_t len,
              void *base, const yaml_mark_t *m, const char *path)
{
	size_t rest, i, auth_end, q;
	const char *at, *p;

	if (!is_pg_uri(s, len, &rest)) {
		if (len == 0) {
			cerr(c, m, "%s: '' is empty, expected %s", path,
			     f->expect);
			return -1;
		}
		if (memmem(s, len, "://", 3) != NULL) {
			cerr(c, m,
			     "%s: is a URI of a scheme kairan does not know, "
			     "expected postgresql://HOST[:PORT]/DBNAME or an "
			     "SQLite file name",
			     path);
			return -1;
		}
		set_str(base, f->off, kr_xstrndup(s, len));
		return 0;
	}
	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch <= 0x20 || ch >= 0x7f || strchr("\"<>\\^`{|}", ch)) {
			cerr(c, m,
			     "%s: the URI has a space, quote or non-ASCII "
			     "character, expected it percent-encoded",
			     path);
			return -1;
		}
	}
	/* The authority ends at the first '/', '?' or '#'. */
	for (auth_end = rest; auth_end < len && !strchr("/?#", s[auth_end]);
	     auth_end++)
		;
	at = memrchr(s + rest, '@', auth_end - rest);
	if (at != NULL && memchr(s + rest, ':', (size_t)(at - (s + rest)))) {
		cerr(c, m,
		     "%s: the URI holds a password, expected it in "
		     "database.password_file or KAIRAN_DB_PASSWORD in the "
		     "environment (never in the config file)",
		     path);
		return -1;
	}
	if (auth_end < len && s[auth_end] == '#') {
		cerr(c, m, "%s: the URI has a fragment, expected none", path);
		return -1;
	}
	p = memchr(s + auth_end, '?', len - auth_end);
	if (p != NULL) {
		/* key=value&key=value: no password= among them. */
		q = (size_t)(p - s) + 1;
		while (q < len) {
			size_t e = q;

			while (e < len && s[e] != '&')
				e++;
			if (e - q >= 9 && strncasecmp(s + q, "password=", 9) == 0) {
				cerr(c, m,
				     "%s: the URI holds a password, expected it "
				     "in database.password_file or "
				     "KAIRAN_DB_PASSWORD in the environment "
				     "(never in the config file)",
				     path);
				return -1;
			}
			if (e - q >= 9 && strncasecmp(s + q, "passfile=", 9) == 0) {
				cerr(c, m,
				     "%s: the URI names a passfile, expected "
				     "database.password_file",
				     path);
				return -1;
			}
			q = e + 1;
		}
	}
	set_str(base, f->off,
	        kr_xasprintf("postgresql://%.*s", (int)(len - rest), s + rest));
	return 0;
}

static int
conv_scalar(struct ctx *c, const struct field *f, const char *s, size_t len,
            void *base, const yaml_node_t *node, const char *path)
{
	char shown[CFG_MAX_SHOW * 4 + 8];
	const yaml_mark_t *m = node ? &node->start_mark : NULL;
	const char *why = NULL;
	unsigned long long u;
	double d;
	bool b;
	size_t i;
	char *name = NULL, *addr = NULL;

	if (memchr(s, '\0', len) != NULL) {
		cerr(c, m, "%s: contains a NUL character, expected %s", path,
		     f->expect);
		return -1;
	}
	if (f->type != FT_TEXT && has_ctl(s, len)) {
		cerr(c, m,
		     "%s: contains a line break or control character, "
		     "expected %s on a single line",
		     path, f->expect);
		return -1;
	}
	switch (f->type) {
	case FT_TEXT:
		for (i = 0; i < len; i++) {
			unsigned char ch = (unsigned char)s[i];

			if ((ch < 0x20 && ch != '\n' && ch != '\t') ||
			    ch == 0x7f)
				break;
		}
		if (i < len) {
			why = "contains a control character (only line "
			      "breaks and tabs are allowed)";
			break;
		}
		set_str(base, f->off, kr_xstrndup(s, len));
		return 0;
	case FT_LINE:
		set_str(base, f->off, kr_xstrndup(s, len));
		return 0;
	case FT_PATH:
		if (len == 0) {
			why = "is empty";
			break;
		}
		set_str(base, f->off, kr_xstrndup(s, len));
		return 0;
	case FT_URL:
		if (check_url(s, len, f->flags, &why) < 0)
			break;
		/* A base URL: links are built as public_url + "/path". */
		while (!(f->flags & F_QUERY) && len > 0 && s[len - 1] == '/')
			len--;
		set_str(base, f->off, kr_xstrndup(s, len));
		lower_scheme(*str_at(base, f->off));
		return 0;
	case FT_LISTEN:
		if (check_listen(s, len, &why) < 0)
			break;
		set_str(base, f->off, kr_xstrndup(s, len));
		return 0;
	case FT_BOOL:
		if (parse_bool(s, len, &b) < 0) {
			why = "is not a boolean";
			break;
		}
		*(bool *)(void *)((char *)base + f->off) = b;
		return 0;
	case FT_UINT:
		if (parse_uint(s, len, &u) < 0) {
			why = "is not a whole number";
			break;
		}
		if ((long long)u < f->min || (long long)u > f->max ||
		    u > UINT_MAX) {
			why = "is out of range";
			break;
		}
		*(unsigned *)(void *)((char *)base + f->off) = (unsigned)u;
		return 0;
	case FT_DURATION:
		if (parse_duration(s, len, &u) < 0) {
			why = "is not a duration (a number with s, m, h, d "
			      "or w; a plain number is seconds)";
			break;
		}
		if ((long long)u < f->min || (long long)u > f->max) {
			why = "is out of range";
			break;
		}
		*(unsigned *)(void *)((char *)base + f->off) = (unsigned)u;
		return 0;
	case FT_PERCENT:
		if (len == 0 || (s[len - 1] != '%' && !(len == 1 && s[0] == '0')) ||
		    memchr(s, '/', len) != NULL ||
		    parse_rate(s, s[len - 1] == '%' ? len - 1 : len, &d) < 0 ||
		    d > 100) {
			why = "is not a percentage 0%..100% like 0.1%";
			break;
		}
		*(double *)(void *)((char *)base + f->off) = d / 100;
		return 0;
	case FT_RATE:
		if (parse_rate(s, len, &d) < 0) {
			why = "is not a rate (N/s, N/m, N/h or N/d)";
			break;
		}
		*(double *)(void *)((char *)base + f->off) = d;
		return 0;
	case FT_ENUM:
		for (i = 0; f->enums[i].name != NULL; i++)
			if (strlen(f->enums[i].name) == len &&
			    memcmp(f->enums[i].name, s, len) == 0)
				break;
		if (f->enums[i].name == NULL) {
			why = "is not one of the choices";
			break;
		}
		if (f->flags & F_ENUMSTR)
			set_str(base, f->off, kr_xstrdup(f->enums[i].name));
		else
			*(int *)(void *)((char *)base + f->off) =
			    f->enums[i].value;
		return 0;
	case FT_ADDR:
		if (memchr(s, '<', len) != NULL) {
			why =
			    "has a display name or <>: write the bare address";
			break;
		}
		if (check_addr(s, len, &why) < 0)
			break;
		set_str(base, f->off, kr_xstrndup(s, len));
		return 0;
	case FT_FROM:
		if (parse_from(s, len, &name, &addr, &why) < 0)
			break;
		set_str(base, LOFF(from), kr_xstrndup(s, len));
		set_str(base, LOFF(from_name), name);
		set_str(base, LOFF(from_addr), addr);
		return 0;
	case FT_LISTID:
		if (check_listid(s, len) < 0) {
			why = "is not a list id";
			break;
		}
		set_str(base, f->off, kr_xstrndup(s, len));
		return 0;
	case FT_DOMAIN:
		if (check_hostname(s, len, &why) < 0)
			break;
		set_str(base, f->off, kr_xstrndup(s, len));
		lower(*str_at(base, f->off));
		return 0;
	case FT_HOST:
		if (check_ip(s, len) < 0 && check_hostname(s, len, &why) < 0)
			break;
		set_str(base, f->off, kr_xstrndup(s, len));
		return 0;
	case FT_DATABASE:
		/* Its own messages: a URI may hold a password, never shown. */
		return conv_database(c, f, s, len, base, m, path);
	default:
		why = "is text";
		break;
	}
	cerr(c, m, "%s: '%s' %s, expected %s", path, show(s, len, shown), why,
	     f->expect);
	return -1;
}

/* The scalar of node, or an error naming what was found instead. */
static int
want_scalar(struct ctx *c, const struct field *f, const yaml_node_t *node,
            const char *path)
{
	if (node->type == YAML_SCALAR_NODE)
		return 0;
	cerr(c, &node->start_mark, "%s: expected %s, got %s", path, f->expect,
	     node_kind(node));
	return -1;
}

static void apply_defaults(const struct section *s, void *base);
static void walk_map(struct ctx *c, const struct section *s, yaml_node_t *map,
                     void *base, const char *path, const yaml_node_t *at);

static void
free_section(const struct section *s, void *base)
{
	size_t i, j, n;

	for (i = 0; i < s->n_fields; i++) {
		const struct field *f = &s->fields[i];
		void **arr = (void **)(void *)((char *)base + f->off);
		size_t *cnt = (size_t *)(void *)((char *)base + f->count_off);

		switch (f->type) {
		case FT_BOOL:
		case FT_UINT:
		case FT_DURATION:
		case FT_RATE:
		case FT_PERCENT:
			break;
		case FT_ENUM:
			if (f->flags & F_ENUMSTR)
				set_str(base, f->off, NULL);
			break;
		case FT_FROM:
			set_str(base, LOFF(from), NULL);
			set_str(base, LOFF(from_name), NULL);
			set_str(base, LOFF(from_addr), NULL);
			break;
		case FT_MAP:
			free_section(f->sub, base);
			break;
		case FT_DATABASE:
			free_section(f->sub, base);
			set_str(base, f->off, NULL);
			break;
		case FT_IPLIST:
			n = *cnt;
			for (j = 0; j < n; j++)
				free(((char **)*arr)[j]);
			free(*arr);
			*arr = NULL;
			*cnt = 0;
			break;
		case FT_DURLIST:
			free(*arr);
			*arr = NULL;
			*cnt = 0;
			break;
		case FT_SEQ:
		case FT_DOMAINMAP:
			n = *cnt;
			for (j = 0; j < n; j++) {
				char *elem =
				    (char *)*arr + j * f->sub->elem_size;

				if (f->type == FT_DOMAINMAP)
					set_str(elem, f->sub->key_off, NULL);
				free_section(f->sub, elem);
			}
			free(*arr);
			*arr = NULL;
			*cnt = 0;
			break;
		default:
			set_str(base, f->off, NULL);
			break;
		}
	}
}

static void
apply_defaults(const struct section *s, void *base)
{
	size_t i;
	struct ctx dummy = {.name = "default"};
	for (i = 0; i < s->n_fields; i++) {
		const struct field *f = &s->fields[i];

		if (f->type == FT_MAP) {
			apply_defaults(f->sub, base);
		} else if (f->type == FT_DURLIST && f->def != NULL) {
			/* Space-separated in the table. */
			unsigned **arr =
			    (unsigned **)(void *)((char *)base + f->off);
			size_t *cnt =
			    (size_t *)(void *)((char *)base + f->count_off);
			const char *p = f->def, *e;
			unsigned long long v;

			free(*arr);
			*arr = kr_xcalloc(16, sizeof(**arr));
			*cnt = 0;
			while (*p && *cnt < 16) {
				e = strchr(p, ' ');
				if (e == NULL)
					e = p + strlen(p);
				if (parse_duration(p, (size_t)(e - p), &v) == 0)
					(*arr)[(*cnt)++] = (unsigned)v;
				p = *e ? e + 1 : e;
			}
		} else if (f->def != NULL) {
			(void)conv_scalar(&dummy, f, f->def, strlen(f->def),
			                  base, NULL, f->key);
		}
	}
	free(errors_take(&dummy)); /* table defaults are valid */
}

static void
walk_iplist(struct ctx *c, const struct field *f, yaml_node_t *node, void *base,
            const char *path)
{
	char ***arr = (char ***)(void *)((char *)base + f->off);
	size_t *cnt = (size_t *)(void *)((char *)base + f->count_off);
	char shown[CFG_MAX_SHOW * 4 + 8];
	yaml_node_item_t *it;
	size_t n, i = 0;

	if (is_null(node))
		return; /* "key:" alone keeps the default */
	if (node->type != YAML_SEQUENCE_NODE) {
		cerr(c, &node->start_mark, "%s: expected %s, got %s", path,
		     f->expect, node_kind(node));
		return;
	}
	n = (size_t)(node->data.sequence.items.top -
	             node->data.sequence.items.start);
	if (n > (size_t)f->max) {
		cerr(c, &node->start_mark,
		     "%s: %zu entries, expected at most "
		     "%lld",
		     path, n, f->max);
		return;
	}
	*arr = kr_xcalloc(n + 1, sizeof(char *));
	for (it = node->data.sequence.items.start;
	     it < node->data.sequence.items.top && !c->stop; it++, i++) {
		yaml_node_t *v = yaml_document_get_node(c->doc, *it);
		const char *s;
		size_t len;

		if (v == NULL)
			continue;
		if (v->type != YAML_SCALAR_NODE) {
			cerr(c, &v->start_mark,
			     "%s[%zu]: expected an IP "
			     "address, got %s",
			     path, i, node_kind(v));
			continue;
		}
		s = (const char *)v->data.scalar.value;
		len = v->data.scalar.length;
		if (memchr(s, '\0', len) != NULL || check_ip(s, len) < 0) {
			cerr(c, &v->start_mark,
			     "%s[%zu]: '%s' is not an IP "
			     "address, expected one like 127.0.0.1 or ::1",
			     path, i, show(s, len, shown));
			continue;
		}
		(*arr)[(*cnt)++] = kr_xstrndup(s, len);
	}
}

static void
walk_durlist(struct ctx *c, const struct field *f, yaml_node_t *node,
             void *base, const char *path)
{
	unsigned **arr = (unsigned **)(void *)((char *)base + f->off);
	size_t *cnt = (size_t *)(void *)((char *)base + f->count_off);
	char shown[CFG_MAX_SHOW * 4 + 8];
	yaml_node_item_t *it;
	size_t n, i = 0;

	if (is_null(node))
		return; /* "key:" alone keeps the default */
	if (node->type != YAML_SEQUENCE_NODE) {
		cerr(c, &node->start_mark, "%s: expected %s, got %s", path,
		     f->expect, node_kind(node));
		return;
	}
	n = (size_t)(node->data.sequence.items.top -
	             node->data.sequence.items.start);
	if (n > 100) {
		cerr(c, &node->start_mark,
		     "%s: %zu entries, expected at most "
		     "100",
		     path, n);
		return;
	}
	free(*arr);
	*arr = kr_xcalloc(n + 1, sizeof(unsigned));
	*cnt = 0;
	for (it = node->data.sequence.items.start;
	     it < node->data.sequence.items.top && !c->stop; it++, i++) {
		yaml_node_t *v = yaml_document_get_node(c->doc, *it);
		unsigned long long u;
		const char *s;
		size_t len;

		if (v == NULL)
			continue;
		if (v->type != YAML_SCALAR_NODE) {
			cerr(c, &v->start_mark,
			     "%s[%zu]: expected a duration "
			     "like 5m, got %s",
			     path, i, node_kind(v));
			continue;
		}
		s = (const char *)v->data.scalar.value;
		len = v->data.scalar.length;
		if (memchr(s, '\0', len) != NULL ||
		    parse_duration(s, len, &u) < 0) {
			cerr(c, &v->start_mark,
			     "%s[%zu]: '%s' is not a "
			     "duration, expected %s",
			     path, i, show(s, len, shown), f->expect);
			continue;
		}
		if ((long long)u < f->min || (long long)u > f->max) {
			cerr(c, &v->start_mark,
			     "%s[%zu]: '%s' is out of "
			     "range, expected %s",
			     path, i, show(s, len, shown), f->expect);
			continue;
		}
		(*arr)[(*cnt)++] = (unsigned)u;
	}
}

static void
walk_seq(struct ctx *c, const struct field *f, yaml_node_t *node, void *base,
         const char *path)
{
	const struct section *sub = f->sub;
	void **arr = (void **)(void *)((char *)base + f->off);
	size_t *cnt = (size_t *)(void *)((char *)base + f->count_off);
	yaml_node_item_t *it;
	size_t n;

	if (is_null(node)) {
		if (f->flags & F_REQUIRED)
			cerr(c, &node->start_mark, "%s: is empty, expected %s",
			     path, f->expect);
		return;
	}
	if (node->type != YAML_SEQUENCE_NODE) {
		cerr(c, &node->start_mark, "%s: expected %s, got %s", path,
		     f->expect, node_kind(node));
		return;
	}
	n = (size_t)(node->data.sequence.items.top -
	             node->data.sequence.items.start);
	if (n < (size_t)f->min) {
		cerr(c, &node->start_mark, "%s: is empty, expected %s", path,
		     f->expect);
		return;
	}
	if (n > sub->max_items) {
		cerr(c, &node->start_mark,
		     "%s: %zu entries, expected at most "
		     "%zu",
		     path, n, sub->max_items);
		return;
	}
	*arr = kr_xcalloc(n + 1, sub->elem_size);
	for (it = node->data.sequence.items.start;
	     it < node->data.sequence.items.top && !c->stop; it++) {
		yaml_node_t *v = yaml_document_get_node(c->doc, *it);
		void *elem = (char *)*arr + *cnt * sub->elem_size;
		char *ipath = kr_xasprintf("%s[%zu]", path, *cnt);

		(*cnt)++;
		apply_defaults(sub, elem);
		if (v != NULL)
			walk_map(c, sub, v, elem, ipath, v);
		free(ipath);
	}
}

static void
walk_domainmap(struct ctx *c, const struct field *f, yaml_node_t *node,
               void *base, const char *path)
{
	const struct section *sub = f->sub;
	char **arr = (char **)(void *)((char *)base + f->off);
	size_t *cnt = (size_t *)(void *)((char *)base + f->count_off);
	char shown[CFG_MAX_SHOW * 4 + 8];
	yaml_node_pair_t *p;
	size_t n, j;

	if (node->type != YAML_MAPPING_NODE) {
		if (is_null(node))
			return;
		cerr(c, &node->start_mark, "%s: expected %s, got %s", path,
		     f->expect, node_kind(node));
		return;
	}
	n = (size_t)(node->data.mapping.pairs.top -
	             node->data.mapping.pairs.start);
	if (n > sub->max_items) {
		cerr(c, &node->start_mark,
		     "%s: %zu entries, expected at most "
		     "%zu",
		     path, n, sub->max_items);
		return;
	}
	*arr = kr_xcalloc(n + 1, sub->elem_size);
	for (p = node->data.mapping.pairs.start;
	     p < node->data.mapping.pairs.top && !c->stop; p++) {
		yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
		yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
		const char *why = NULL, *s;
		char *elem, *dom, *epath;
		size_t len;

		if (k == NULL || v == NULL)
			continue;
		if (k->type != YAML_SCALAR_NODE) {
			cerr(c, &k->start_mark,
			     "%s: a key is %s, expected a "
			     "domain",
			     path, node_kind(k));
			continue;
		}
		s = (const char *)k->data.scalar.value;
		len = k->data.scalar.length;
		if (memchr(s, '\0', len) != NULL ||
		    check_hostname(s, len, &why) < 0) {
			cerr(c, &k->start_mark,
			     "%s: '%s' %s, expected a "
			     "domain like gmail.com",
			     path, show(s, len, shown),
			     why ? why : "has a NUL");
			continue;
		}
		dom = kr_xstrndup(s, len);
		lower(dom);
		for (j = 0; j < *cnt; j++) {
			char *o = *arr + j * sub->elem_size;

			if (strcmp(*str_at(o, sub->key_off), dom) == 0)
				break;
		}
		if (j < *cnt) {
			cerr(c, &k->start_mark,
			     "%s: domain '%s' appears "
			     "twice, expected each domain once",
			     path, dom);
			free(dom);
			continue;
		}
		elem = *arr + *cnt * sub->elem_size;
		(*cnt)++;
		apply_defaults(sub, elem);
		set_str(elem, sub->key_off, dom);
		epath = kr_xasprintf("%s.%s", path, dom);
		walk_map(c, sub, v, elem, epath, k);
		free(epath);
	}
}

static void
walk_value(struct ctx *c, const struct field *f, yaml_node_t *v, void *base,
           const char *path, const yaml_node_t *at)
{
	switch (f->type) {
	case FT_MAP:
		walk_map(c, f->sub, v, base, path, at);
		return;
	case FT_SEQ:
		walk_seq(c, f, v, base, path);
		return;
	case FT_DOMAINMAP:
		walk_domainmap(c, f, v, base, path);
		return;
	case FT_IPLIST:
		walk_iplist(c, f, v, base, path);
		return;
	case FT_DURLIST:
		walk_durlist(c, f, v, base, path);
		return;
	case FT_DATABASE:
		if (v->type == YAML_MAPPING_NODE) {
			walk_map(c, f->sub, v, base, path, at);
			return;
		}
		break;
	default:
		break;
	}
	if (want_scalar(c, f, v, path) < 0)
		return;
	if (is_null(v)) {
		if (f->flags & F_REQUIRED)
			cerr(c, &v->start_mark, "%s: is empty, expected %s",
			     path, f->expect);
		/* Optional: keep the default (or NULL). */
		return;
	}
	(void)conv_scalar(c, f, (const char *)v->data.scalar.value,
	                  v->data.scalar.length, base, v, path);
}

/* Edit distance of a and b (short keys only), for "did you mean". */
static size_t
distance(const char *a, size_t alen, const char *b)
{
	size_t row[33], i, j, blen = strlen(b), prev, tmp, best;

	if (alen > 32 || blen > 32)
		return SIZE_MAX;
	for (j = 0; j <= blen; j++)
		row[j] = j;
	for (i = 1; i <= alen; i++) {
		prev = row[0];
		row[0] = i;
		for (j = 1; j <= blen; j++) {
			char ca = a[i - 1], cb = b[j - 1];

			if (ca >= 'A' && ca <= 'Z')
				ca = (char)(ca - 'A' + 'a');
			best = prev + (ca == cb ? 0 : 1);
			if (row[j] + 1 < best)
				best = row[j] + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			tmp = row[j];
			row[j] = best;
			prev = tmp;
		}
	}
	return row[blen];
}

static void
unknown_key(struct ctx *c, const struct section *s, const yaml_node_t *k,
            const char *path)
{
	char shown[CFG_MAX_SHOW * 4 + 8], hint[64] = "";
	const char *ks = (const char *)k->data.scalar.value;
	size_t klen = k->data.scalar.length, j, d, best = 3;
	struct kr_buf allowed;

	kr_buf_init(&allowed, 0);
	for (j = 0; j < s->n_fields; j++) {
		if ((j > 0 && kr_buf_puts(&allowed, ", ") < 0) ||
		    kr_buf_puts(&allowed, s->fields[j].key) < 0)
			break;
		d = distance(ks, klen, s->fields[j].key);
		if (d < best) {
			best = d;
			snprintf(hint, sizeof(hint), " (did you mean '%.40s'?)",
			         s->fields[j].key);
		}
	}
	cerr(c, &k->start_mark, "unknown key '%s' in %s%s, expected one of: %s",
	     show(ks, klen, shown), *path ? path : s->name, hint,
	     allowed.data ? allowed.data : "");
	kr_buf_fini(&allowed);
}

#define CFG_MAX_MERGE 4            /* nesting of "<<" merge keys */
#define CFG_MAX_MERGED_PAIRS 10000 /* pairs visited through merges */

static bool
key_is(const yaml_node_t *k, const char *name)
{
	return k->type == YAML_SCALAR_NODE &&
	       k->data.scalar.length == strlen(name) &&
	       memcmp(k->data.scalar.value, name, strlen(name)) == 0;
}

/* The pairs of one mapping. depth > 0: a mapping merged with "<<" (YAML
 * merge keys, which libyaml leaves to us), whose keys give way silently
 * to keys already set. */
static void
walk_pairs(struct ctx *c, const struct section *s, yaml_node_t *map, void *base,
           const char *path, const yaml_node_t **seen, int depth)
{
	yaml_node_pair_t *p;
	size_t i;

	/* Merges can name each other many times over: bound the work. */
	c->merged += depth > 0 ? 1 + (size_t)(map->data.mapping.pairs.top -
	                                      map->data.mapping.pairs.start)
	                       : 0;
	if (c->merged > CFG_MAX_MERGED_PAIRS) {
		cerr(
		    c, &map->start_mark,
		    "%s: more than %d keys through '<<' merges, expected fewer",
		    *path ? path : s->name, CFG_MAX_MERGED_PAIRS);
		c->stop = true;
		return;
	}
	for (p = map->data.mapping.pairs.start;
	     p < map->data.mapping.pairs.top && !c->stop; p++) {
		yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
		yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
		const char *ks;
		size_t klen;
		char *fpath;

		if (k == NULL || v == NULL || key_is(k, "<<"))
			continue;
		if (k->type != YAML_SCALAR_NODE) {
			cerr(c, &k->start_mark,
			     "%s: a key is %s, expected a plain name", path,
			     node_kind(k));
			continue;
		}
		ks = (const char *)k->data.scalar.value;
		klen = k->data.scalar.length;
		/* Extension keys at the top, a home for YAML anchors. */
		if (s == &root_section && klen >= 2 && memcmp(ks, "x-", 2) == 0)
			continue;
		for (i = 0; i < s->n_fields; i++)
			if (strlen(s->fields[i].key) == klen &&
			    memcmp(s->fields[i].key, ks, klen) == 0)
				break;
		if (i == s->n_fields) {
			unknown_key(c, s, k, path);
			continue;
		}
		if (seen[i] != NULL) {
			if (depth == 0)
				cerr(c, &k->start_mark,
				     "%s%s%s: duplicate key (first at line "
				     "%zu), expected each key once",
				     path, *path ? "." : "", s->fields[i].key,
				     seen[i]->start_mark.line + 1);
			continue;
		}
		seen[i] = k;
		fpath = kr_xasprintf("%s%s%s", path, *path ? "." : "",
		                     s->fields[i].key);
		walk_value(c, &s->fields[i], v, base, fpath, k);
		free(fpath);
	}
	/* Merges after the mapping's own keys, in order: first one wins. */
	for (p = map->data.mapping.pairs.start;
	     p < map->data.mapping.pairs.top && !c->stop; p++) {
		yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
		yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
		yaml_node_item_t *it;

		if (k == NULL || v == NULL || !key_is(k, "<<"))
			continue;
		if (depth >= CFG_MAX_MERGE) {
			cerr(c, &k->start_mark,
			     "%s: '<<' merges nested more than %d deep, "
			     "expected fewer",
			     *path ? path : s->name, CFG_MAX_MERGE);
			continue;
		}
		if (v->type == YAML_MAPPING_NODE) {
			walk_pairs(c, s, v, base, path, seen, depth + 1);
			continue;
		}
		if (v->type == YAML_SEQUENCE_NODE) {
			for (it = v->data.sequence.items.start;
			     it < v->data.sequence.items.top && !c->stop;
			     it++) {
				yaml_node_t *m =
				    yaml_document_get_node(c->doc, *it);

				if (m != NULL && m->type == YAML_MAPPING_NODE)
					walk_pairs(c, s, m, base, path, seen,
					           depth + 1);
				else if (m != NULL)
					cerr(
					    c, &m->start_mark,
					    "%s: '<<' list holds %s, expected "
					    "mappings (aliases like *defaults)",
					    *path ? path : s->name,
					    node_kind(m));
			}
			continue;
		}
		cerr(c, &v->start_mark,
		     "%s: '<<' merges %s, expected a mapping or a list of "
		     "them (an alias like *defaults)",
		     *path ? path : s->name, node_kind(v));
	}
}

static void
walk_map(struct ctx *c, const struct section *s, yaml_node_t *map, void *base,
         const char *path, const yaml_node_t *at)
{
	const yaml_node_t *seen[32] = {NULL};
	size_t i;

	if (map->type != YAML_MAPPING_NODE) {
		if (is_null(map) && s != &list_section && s != &relay_section &&
		    s != &domain_section && s != &dkim_section &&
		    s != &dkim_rsa_section && s != &dkim_ed_section)
			return; /* "http:" alone: all defaults */
		cerr(c, &map->start_mark,
		     "%s: expected a mapping (key: value lines), got %s", path,
		     node_kind(map));
		return;
	}
	walk_pairs(c, s, map, base, path, seen, 0);
	for (i = 0; i < s->n_fields && !c->stop; i++)
		if ((s->fields[i].flags & F_REQUIRED) && seen[i] == NULL)
			cerr(c, &at->start_mark,
			     "%s%smissing required key '%s', expected %s", path,
			     *path ? ": " : "", s->fields[i].key,
			     s->fields[i].expect);
}

/* ---- cross-field checks, with the tree still there to point at ---- */

/* The key node of key in map, or NULL. */
static yaml_node_t *
map_key(yaml_document_t *doc, yaml_node_t *map, const char *key)
{
	yaml_node_pair_t *p;

	if (map == NULL || map->type != YAML_MAPPING_NODE)
		return NULL;
	for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = yaml_document_get_node(doc, p->key);

		if (k != NULL && k->type == YAML_SCALAR_NODE &&
		    k->data.scalar.length == strlen(key) &&
		    memcmp(k->data.scalar.value, key, strlen(key)) == 0)
			return k;
	}
	return NULL;
}

static yaml_node_t *
map_get(yaml_document_t *doc, yaml_node_t *map, const char *key)
{
	yaml_node_pair_t *p;

	if (map == NULL || map->type != YAML_MAPPING_NODE)
		return NULL;
	for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = yaml_document_get_node(doc, p->key);

		if (k != NULL && k->type == YAML_SCALAR_NODE &&
		    k->data.scalar.length == strlen(key) &&
		    memcmp(k->data.scalar.value, key, strlen(key)) == 0)
			return yaml_document_get_node(doc, p->value);
	}
	return NULL;
}

static yaml_node_t *
seq_get(yaml_document_t *doc, yaml_node_t *seq, size_t i)
{
	if (seq == NULL || seq->type != YAML_SEQUENCE_NODE ||
	    i >= (size_t)(seq->data.sequence.items.top -
	                  seq->data.sequence.items.start))
		return NULL;
	return yaml_document_get_node(doc, seq->data.sequence.items.start[i]);
}

static const yaml_mark_t *
mark_of(const yaml_node_t *n, const yaml_node_t *fallback)
{
	return n != NULL ? &n->start_mark : &fallback->start_mark;
}

/* Reads a one-line secret into sodium_malloc'd memory. */
static int
read_password(struct ctx *c, const char *file, const yaml_mark_t *m,
              const char *path, char **out)
{
	struct stat st;
	char *pw = NULL;
	ssize_t n;
	size_t len = 0;
	int fd = -1, r = -1;

	fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0 || fstat(fd, &st) < 0) {
		cerr(c, m,
		     "%s: cannot read '%s': %s, expected a readable file "
		     "holding the password",
		     path, file, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		cerr(c, m,
		     "%s: '%s' is not a regular file, expected a file "
		     "holding the password",
		     path, file);
		goto out;
	}
	if (st.st_mode & S_IROTH)
		kr_log_warn("config: %s is readable by everyone, expected "
		            "mode 0600 or 0640 file=%s",
		            path, file);
	if ((pw = sodium_malloc(CFG_MAX_PASSWORD + 2)) == NULL) {
		cerr(c, m, "%s: cannot allocate secure memory", path);
		goto out;
	}
	while (len < CFG_MAX_PASSWORD + 1) {
		n = read(fd, pw + len, CFG_MAX_PASSWORD + 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			cerr(c, m, "%s: cannot read '%s': %s", path, file,
			     strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > CFG_MAX_PASSWORD) {
		cerr(c, m,
		     "%s: '%s' is longer than %d bytes, expected one "
		     "line holding the password",
		     path, file, CFG_MAX_PASSWORD);
		goto out;
	}
	if (len > 0 && pw[len - 1] == '\n')
		len--;
	if (len > 0 && pw[len - 1] == '\r')
		len--;
	pw[len] = '\0';
	if (len == 0) {
		cerr(c, m,
		     "%s: '%s' is empty, expected one line holding the "
		     "password",
		     path, file);
		goto out;
	}
	if (memchr(pw, '\n', len) || memchr(pw, '\r', len) ||
	    memchr(pw, '\0', len)) {
		cerr(c, m,
		     "%s: '%s' has more than one line, expected one "
		     "line holding the password",
		     path, file);
		goto out;
	}
	*out = pw;
	pw = NULL;
	r = 0;
out:
	sodium_free(pw); /* wipes */
	if (fd >= 0)
		close(fd);
	return r;
}

static void
check_relays(struct ctx *c, struct kr_config *cfg, yaml_node_t *root)
{
	yaml_node_t *seq = map_get(c->doc, root, "smtp");
	const char *env = getenv("KAIRAN_SMTP_PASSWORD");
	bool env_used = false;
	size_t i;

	for (i = 0; i < cfg->n_relays && !c->stop; i++) {
		struct kr_cfg_relay *r = &cfg->relays[i];
		yaml_node_t *item = seq_get(c->doc, seq, i);
		yaml_node_t *pf = map_get(c->doc, item, "password_file");
		char path[64];

		if (r->port == 0)
			r->port = r->tls == KR_CFG_TLS_TLS        ? 465
			          : r->tls == KR_CFG_TLS_STARTTLS ? 587
			                                          : 25;
		if (item == NULL || (c->flags & KR_CONFIG_NO_SECRETS))
			continue;
		snprintf(path, sizeof(path), "smtp[%zu]", i);
		if (r->ca_file != NULL && access(r->ca_file, R_OK) < 0)
			cerr(c, mark_of(map_get(c->doc, item, "ca_file"), item),
			     "%s.ca_file: cannot read '%s': %s, expected a "
			     "readable CA bundle",
			     path, r->ca_file, strerror(errno));
		if (r->user == NULL) {
			if (r->password_file != NULL)
				cerr(c, mark_of(pf, item),
				     "%s.password_file: "
				     "set without user, expected user as well",
				     path);
			continue;
		}
		/* The environment wins for the first relay with a user, so
		 * a unit's Environment= (or a test) can override the file. */
		if (!env_used && env != NULL && *env != '\0') {
			size_t len = strlen(env);

			env_used = true;
			if (len > CFG_MAX_PASSWORD || has_ctl(env, len)) {
				cerr(c, &item->start_mark,
				     "%s: "
				     "KAIRAN_SMTP_PASSWORD is longer than %d "
				     "bytes or has a control character, "
				     "expected one line",
				     path, CFG_MAX_PASSWORD);
				continue;
			}
			if ((r->password = sodium_malloc(len + 1)) == NULL) {
				cerr(c, &item->start_mark,
				     "%s: cannot "
				     "allocate secure memory",
				     path);
				continue;
			}
			memcpy(r->password, env, len + 1);
			continue;
		}
		if (r->password_file == NULL) {
			cerr(c, &item->start_mark,
			     "%s: user is set but there "
			     "is no password, expected password_file (or "
			     "KAIRAN_SMTP_PASSWORD in the environment)",
			     path);
			continue;
		}
		snprintf(path, sizeof(path), "smtp[%zu].password_file", i);
		(void)read_password(c, r->password_file, mark_of(pf, item),
		                    path, &r->password);
	}
}

/* A dkim block names a domain (walk_map saw to that) and at least one
 * key to sign with. */
static void
check_dkim(struct ctx *c, const struct kr_cfg_list *l, yaml_node_t *item,
           size_t i)
{
	yaml_node_t *k = map_key(c->doc, item, "dkim");
	yaml_node_t *v = map_get(c->doc, item, "dkim");

	/* A bad rsa: or ed25519: block has its own error already. */
	if (k == NULL || l->dkim_domain == NULL ||
	    l->dkim_rsa_selector != NULL || l->dkim_ed25519_selector != NULL ||
	    map_key(c->doc, v, "rsa") != NULL ||
	    map_key(c->doc, v, "ed25519") != NULL)
		return;
	cerr(c, &k->start_mark,
	     "lists[%zu].dkim: no key, expected rsa: { selector, key_file } "
	     "and/or ed25519: { selector, key_file }",
	     i);
}

/* A list inherits the top-level sender fields it does not set; a ja
 * list must end up with all three (特定電子メール法 Article 4). */
static void
check_sender(struct ctx *c, const struct kr_config *cfg, struct kr_cfg_list *l,
             yaml_node_t *item, size_t i)
{
	static const struct {
		const char *key, *what;
		size_t loff, goff;
	} f[] = {
	    {"name", "the sender's name", LOFF(sender_name), OFF(sender.name)},
	    {"address", "the sender's postal address", LOFF(sender_address),
	     OFF(sender.address)},
	    {"contact",
	     "a mail address, URL or telephone number for complaints and "
	     "questions",
	     LOFF(sender_contact), OFF(sender.contact)},
	};
	yaml_node_t *blk = map_get(c->doc, item, "sender");
	const yaml_mark_t *m;
	size_t k;

	for (k = 0; k < KR_NELEM(f); k++) {
		char *own = *str_at(l, f[k].loff);
		const char *top = *str_at((void *)(uintptr_t)cfg, f[k].goff);

		if (own == NULL && top != NULL)
			set_str(l, f[k].loff, kr_xstrdup(top));
		if (*str_at(l, f[k].loff) != NULL || l->language == NULL ||
		    strcmp(l->language, "ja") != 0 || item == NULL)
			continue;
		m = blk && blk->type == YAML_MAPPING_NODE ? &blk->start_mark
		                                          : &item->start_mark;
		cerr(c, m,
		     "lists[%zu].sender.%s: missing; a ja list must show it in "
		     "every mail (特定電子メール法, Act on Regulation of "
		     "Transmission of Specified Electronic Mail, Article 4), "
		     "expected %s (in lists[].sender or the top-level sender)",
		     i, f[k].key, f[k].what);
	}
}

/* The Date: header's zone: the list's timezone, else Asia/Tokyo for a ja
 * list and UTC for others; loaded here so a bad name is a config error. */
static void
check_timezone(struct ctx *c, struct kr_cfg_list *l, yaml_node_t *item,
               size_t i)
{
	struct kr_err e = {0};
	yaml_node_t *v = map_get(c->doc, item, "timezone");

	if (l->timezone == NULL)
		l->timezone = kr_xstrdup(l->language != NULL &&
		                                 strcmp(l->language, "ja") == 0
		                             ? "Asia/Tokyo"
		                             : "UTC");
	if (kr_tz_load(l->timezone, &l->tz, &e) < 0 && item != NULL)
		cerr(c, mark_of(v, item),
		     "lists[%zu].timezone: '%s': %s, expected an IANA time "
		     "zone like Asia/Tokyo or an offset like +09:00",
		     i, l->timezone, e.msg);
}

/* Appends s to b percent-encoded for a URI component (RFC 3986
 * unreserved characters stay). */
static int
uri_escape(struct kr_buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	int r = 0;

	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || strchr("-._~", ch))
			r |= kr_buf_printf(b, "%c", ch);
		else
			r |= kr_buf_printf(b, "%%%c%c", hex[ch >> 4],
			                    hex[ch & 15]);
	}
	return r;
}

/* database: a mapping becomes the URI in cfg->database; a password file
 * goes with PostgreSQL only, and must be readable (not read: the store
 * reads it when it connects). */
static void
check_database(struct ctx *c, struct kr_config *cfg, yaml_node_t *root)
{
	yaml_node_t *key = map_key(c->doc, root, "database");
	yaml_node_t *v = map_get(c->doc, root, "database");
	yaml_node_t *pf;
	struct kr_buf b;
	int r = 0;

	if (v == NULL || v->type != YAML_MAPPING_NODE)
		return;
	pf = map_get(c->doc, v, "password_file");
	if (cfg->db.host == NULL || cfg->db.dbname == NULL)
		return; /* walk_map named what is missing */
	if (cfg->db.host[0] == '\0' || cfg->db.dbname[0] == '\0') {
		cerr(c, mark_of(key, v),
		     "database: host or dbname is empty, expected a host "
		     "name and a database name");
		return;
	}
	kr_buf_init(&b, 0);
	r |= kr_buf_printf(&b, "postgresql://");
	if (cfg->db.user != NULL) {
		r |= uri_escape(&b, cfg->db.user);
		r |= kr_buf_printf(&b, "@");
	}
	/* A socket folder cannot be the URI's host: it goes in ?host=. */
	if (cfg->db.host[0] != '/') {
		if (strchr(cfg->db.host, ':') != NULL)
			r |= kr_buf_printf(&b, "[%s]", cfg->db.host);
		else
			r |= uri_escape(&b, cfg->db.host);
	}
	if (cfg->db.port != 0)
		r |= kr_buf_printf(&b, ":%u", cfg->db.port);
	r |= kr_buf_printf(&b, "/");
	r |= uri_escape(&b, cfg->db.dbname);
	if (cfg->db.host[0] == '/') {
		r |= kr_buf_printf(&b, "?host=");
		r |= uri_escape(&b, cfg->db.host);
	}
	if (cfg->db.sslmode != NULL)
		r |= kr_buf_printf(&b, "%ssslmode=%s",
		                    cfg->db.host[0] == '/' ? "&" : "?",
		                    cfg->db.sslmode);
	if (r != 0) { /* unbounded: cannot happen */
		kr_buf_fini(&b);
		cerr(c, mark_of(key, v), "database: out of memory");
		return;
	}
	free(cfg->database);
	cfg->database = kr_buf_steal(&b);
	if (cfg->database_password_file != NULL &&
	    !(c->flags & KR_CONFIG_NO_SECRETS) &&
	    access(cfg->database_password_file, R_OK) < 0)
		cerr(c, mark_of(pf, v),
		     "database.password_file: cannot read '%s': %s, expected a "
		     "readable file holding the password",
		     cfg->database_password_file, strerror(errno));
}

/* Whether a host:port (as FT_LISTEN takes it) is on the loopback
 * interface: 127.0.0.0/8, [::1] or localhost. */
static bool
listen_is_loopback(const char *spec)
{
	if (spec == NULL)
		return true;
	return strncmp(spec, "127.", 4) == 0 || strncmp(spec, "[::1]:", 6) == 0 ||
	       strncmp(spec, "localhost:", 10) == 0;
}

/* The dashboard is open to whoever reaches admin.listen: elsewhere than
 * loopback it needs its login (issue 17). */
static void
check_admin(struct ctx *c, const struct kr_config *cfg, yaml_node_t *root)
{
	yaml_node_t *admin = map_get(c->doc, root, "admin");
	yaml_node_t *listen = map_get(c->doc, admin, "listen");

	if (listen_is_loopback(cfg->admin_listen) ||
	    cfg->admin_password_file != NULL || admin == NULL)
		return;
	cerr(c, mark_of(listen, admin),
	     "admin.listen: %s is not a loopback address and "
	     "admin.password_file is not set, expected a password file "
	     "(kairanctl password-hash) for the dashboard's login, or "
	     "127.0.0.1",
	     cfg->admin_listen);
}

static void
check_all(struct ctx *c, struct kr_config *cfg, yaml_node_t *root)
{
	yaml_node_t *lists = map_get(c->doc, root, "lists");
	yaml_node_t *delivery = map_key(c->doc, root, "delivery");
	yaml_node_t *smtp = map_get(c->doc, root, "smtp");
	size_t i, j;

	for (i = 0; i < cfg->n_lists && !c->stop; i++) {
		struct kr_cfg_list *l = &cfg->lists[i];

		if (l->id == NULL)
			continue;
		if (l->name == NULL)
			l->name = kr_xstrdup(l->id);
		for (j = 0; j < i; j++) {
			yaml_node_t *item = seq_get(c->doc, lists, i);
			yaml_node_t *first = seq_get(c->doc, lists, j);

			if (cfg->lists[j].id == NULL ||
			    strcmp(cfg->lists[j].id, l->id) != 0 ||
			    item == NULL || first == NULL)
				continue;
			cerr(
			    c, mark_of(map_get(c->doc, item, "id"), item),
			    "lists[%zu].id: duplicate list id '%s' (first at "
			    "line %zu), expected unique ids",
			    i, l->id,
			    mark_of(map_get(c->doc, first, "id"), first)->line +
			        1);
			break;
		}
		check_dkim(c, l, seq_get(c->doc, lists, i), i);
		check_sender(c, cfg, l, seq_get(c->doc, lists, i), i);
		check_timezone(c, l, seq_get(c->doc, lists, i), i);
	}
	check_admin(c, cfg, root);
	if (cfg->delivery.transport == KR_CFG_TRANSPORT_MAILDIR &&
	    cfg->delivery.maildir == NULL)
		cerr(c, mark_of(delivery, root),
		     "delivery: missing required "
		     "key 'maildir', expected a Maildir folder when transport "
		     "is maildir");
	if (cfg->delivery.transport == KR_CFG_TRANSPORT_SMTP &&
	    cfg->n_relays == 0) {
		if (smtp != NULL && smtp->type == YAML_SEQUENCE_NODE)
			cerr(c, &smtp->start_mark,
			     "smtp: is empty, expected "
			     "at least one relay when transport is smtp");
		else if (smtp == NULL)
			cerr(c, &root->start_mark,
			     "missing required key "
			     "'smtp', expected a list of relays when transport "
			     "is smtp (or delivery.transport: maildir)");
	}
	check_relays(c, cfg, root);
	check_database(c, cfg, root);
}

/* libyaml's reader reports a byte offset, not a mark. */
static void
offset_mark(const char *data, size_t len, size_t off, yaml_mark_t *m)
{
	size_t i;

	m->line = 0;
	m->column = 0;
	for (i = 0; i < off && i < len; i++) {
		if (data[i] == '\n') {
			m->line++;
			m->column = 0;
		} else if (((unsigned char)data[i] & 0xc0) != 0x80) {
			m->column++;
		}
	}
}

/* A tab in the indentation of the line at m, as a column, or -1. */
static long
tab_in_indent(const char *data, size_t len, const yaml_mark_t *m)
{
	size_t i = 0, line = 0, col;

	while (i < len && line < m->line)
		if (data[i++] == '\n')
			line++;
	for (col = 0; i < len; i++, col++) {
		if (data[i] == '\t')
			return (long)col;
		if (data[i] != ' ' && data[i] != '-')
			break;
	}
	return -1;
}

static void
syntax_error(struct ctx *c, yaml_parser_t *p, const char *data, size_t len)
{
	yaml_mark_t m = p->problem_mark;
	long tab;

	if (p->error == YAML_READER_ERROR) {
		offset_mark(data, len, p->problem_offset, &m);
		cerr(c, &m,
		     "not valid UTF-8 text: %s, expected a YAML text "
		     "file",
		     p->problem ? p->problem : "unreadable");
		return;
	}
	if (p->error == YAML_MEMORY_ERROR) {
		cerr(c, NULL, "out of memory while parsing");
		return;
	}
	if ((tab = tab_in_indent(data, len, &m)) >= 0) {
		m.column = (size_t)tab;
		cerr(c, &m,
		     "tab character in indentation, expected spaces "
		     "(YAML indents with spaces only)");
		return;
	}
	if (p->context != NULL)
		cerr(c, &m,
		     "YAML syntax error: %s (%s at line %zu column "
		     "%zu), expected valid YAML",
		     p->problem ? p->problem : "unknown", p->context,
		     p->context_mark.line + 1, p->context_mark.column + 1);
	else
		cerr(c, &m, "YAML syntax error: %s, expected valid YAML",
		     p->problem ? p->problem : "unknown");
}

bool
kr_config_yaml_too_deep(const char *data, size_t len, size_t *line_out,
                        size_t *col_out)
{
	yaml_parser_t p;
	yaml_token_t t;
	size_t depth = 0;
	bool deep = false, more = true;

	*line_out = *col_out = 0;
	if (!yaml_parser_initialize(&p))
		return false;
	yaml_parser_set_input_string(&p, (const unsigned char *)data, len);
	while (more && !deep && yaml_parser_scan(&p, &t)) {
		switch (t.type) {
		case YAML_FLOW_SEQUENCE_START_TOKEN:
		case YAML_FLOW_MAPPING_START_TOKEN:
		case YAML_BLOCK_SEQUENCE_START_TOKEN:
		case YAML_BLOCK_MAPPING_START_TOKEN:
			if (++depth > KR_CONFIG_YAML_DEPTH) {
				deep = true;
				*line_out = t.start_mark.line;
				*col_out = t.start_mark.column;
			}
			break;
		case YAML_FLOW_SEQUENCE_END_TOKEN:
		case YAML_FLOW_MAPPING_END_TOKEN:
		case YAML_BLOCK_END_TOKEN:
			if (depth > 0)
				depth--;
			break;
		case YAML_STREAM_END_TOKEN:
			more = false;
			break;
		default:
			break;
		}
		yaml_token_delete(&t);
	}
	yaml_parser_delete(&p);
	return deep;
}

static void
config_release(struct kr_config *cfg)
{
	size_t i;

	for (i = 0; i < cfg->n_relays; i++) {
		sodium_free(cfg->relays[i].password); /* wipes */
		cfg->relays[i].password = NULL;
	}
	for (i = 0; i < cfg->n_lists; i++)
		kr_tz_free(&cfg->lists[i].tz);
	free_section(&root_section, cfg);
	free(cfg->path);
	free(cfg);
}

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static bool sodium_ok;

/* libsodium once per process, for sodium_malloc'd secrets. */
static void
sodium_start(void)
{
	sodium_ok = sodium_init() >= 0;
}

int
kr_config_load_buf(const char *name, const char *data, size_t len,
                   struct kr_config **cfg_out, char **errors_out)
{
	return kr_config_load_buf_flags(name, data, len, 0, cfg_out,
	                                errors_out);
}

int
kr_config_load_buf_flags(const char *name, const char *data, size_t len,
                         unsigned flags, struct kr_config **cfg_out,
                         char **errors_out)
{
	struct ctx c = {.name = name, .flags = flags};
	struct kr_config *cfg = NULL;
	yaml_parser_t parser;
	yaml_document_t doc, extra;
	yaml_node_t *root;
	size_t deep_line, deep_col;
	bool have_parser = false, have_doc = false;
	int r = -1;

	*cfg_out = NULL;
	*errors_out = NULL;
	if (pthread_once(&sodium_once, sodium_start) != 0 || !sodium_ok) {
		cerr(&c, NULL, "libsodium failed to initialise");
		goto out;
	}
	if (len > CFG_MAX_FILE) {
		cerr(&c, NULL,
		     "file is larger than %d bytes, expected a "
		     "config file",
		     CFG_MAX_FILE);
		goto out;
	}
	/* A UTF-8 BOM (some Windows editors write one) is not part of the
	 * text. libyaml, told the encoding, would read it as a character of
	 * the first key and shift that key's column, which ends the mapping
	 * at the second key; the marks then count from after the BOM. */
	if (len >= 3 && memcmp(data, "\xef\xbb\xbf", 3) == 0) {
		data += 3;
		len -= 3;
	}
	/* Before libyaml builds a document: its scanner is quadratic in the
	 * depth of flow collections (100,000 '[' took seconds). */
	if (kr_config_yaml_too_deep(data, len, &deep_line, &deep_col)) {
		yaml_mark_t m = {.line = deep_line, .column = deep_col};

		cerr(&c, &m,
		     "nesting deeper than %d levels, expected at most %d "
		     "nested lists and mappings",
		     KR_CONFIG_YAML_DEPTH, KR_CONFIG_YAML_DEPTH);
		goto out;
	}
	if (!yaml_parser_initialize(&parser)) {
		cerr(&c, NULL, "out of memory");
		goto out;
	}
	have_parser = true;
	yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING);
	yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);
	if (!yaml_parser_load(&parser, &doc)) {
		syntax_error(&c, &parser, data, len);
		goto out;
	}
	have_doc = true;
	c.doc = &doc;
	root = yaml_document_get_root_node(&doc);
	if (root == NULL || is_null(root)) {
		yaml_mark_t m = {0};

		cerr(&c, &m,
		     "the file is empty, expected a YAML mapping of "
		     "settings (see config/kairan.yaml)");
		goto out;
	}
	if (root->type != YAML_MAPPING_NODE) {
		cerr(&c, &root->start_mark,
		     "the file holds %s at the top, "
		     "expected a YAML mapping of settings (key: value lines)",
		     node_kind(root));
		goto out;
	}
	/* A second document ("---") would be silently ignored otherwise. */
	if (!yaml_parser_load(&parser, &extra)) {
		syntax_error(&c, &parser, data, len);
	} else {
		yaml_node_t *x = yaml_document_get_root_node(&extra);

		if (x != NULL)
			cerr(&c, &extra.start_mark,
			     "a second YAML document, "
			     "expected one document only");
		yaml_document_delete(&extra);
	}
	cfg = kr_xcalloc(1, sizeof(*cfg));
	cfg->path = kr_xstrdup(name);
	apply_defaults(&root_section, cfg);
	walk_map(&c, &root_section, root, cfg, "", root);
	if (!c.stop)
		check_all(&c, cfg, root);
	if (c.n_errs == 0 && !c.stop) {
		*cfg_out = cfg;
		cfg = NULL;
		r = 0;
	}
out:
	if (r < 0 && c.n_errs == 0)
		cerr(&c, NULL, "invalid configuration");
	if (r < 0)
		*errors_out = errors_take(&c);
	free(errors_take(&c));
	if (cfg != NULL)
		config_release(cfg);
	if (have_doc)
		yaml_document_delete(&doc);
	if (have_parser)
		yaml_parser_delete(&parser);
	return r;
}

int
kr_config_load(const char *path, struct kr_config **cfg_out, char **errors_out)
{
	return kr_config_load_flags(path, 0, cfg_out, errors_out);
}

int
kr_config_load_flags(const char *path, unsigned flags,
                     struct kr_config **cfg_out, char **errors_out)
{
	struct stat st;
	char *data = NULL;
	size_t len = 0;
	ssize_t n;
	int fd = -1, r = -1;

	*cfg_out = NULL;
	*errors_out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		*errors_out = kr_xasprintf("%s: cannot open: %s, expected a "
		                           "readable YAML file\n",
		                           path, strerror(errno));
		goto out;
	}
	if (fstat(fd, &st) < 0) {
		*errors_out = kr_xasprintf("%s: cannot stat: %s\n", path,
		                           strerror(errno));
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		*errors_out = kr_xasprintf("%s: is a directory, expected a "
		                           "YAML file\n",
		                           path);
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		*errors_out = kr_xasprintf("%s: is not a regular file, "
		                           "expected a YAML file\n",
		                           path);
		goto out;
	}
	data = kr_xmalloc(CFG_MAX_FILE + 2);
	while (len < CFG_MAX_FILE + 1) {
		n = read(fd, data + len, CFG_MAX_FILE + 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*errors_out =
			    kr_xasprintf("%s: cannot read: %s, "
			                 "expected a readable YAML file\n",
			                 path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > CFG_MAX_FILE) {
		*errors_out = kr_xasprintf("%s: is larger than %d bytes, "
		                           "expected a config file\n",
		                           path, CFG_MAX_FILE);
		goto out;
	}
	r = kr_config_load_buf_flags(path, data, len, flags, cfg_out,
	                             errors_out);
out:
	free(data);
	if (fd >= 0)
		close(fd);
	return r;
}

static size_t
keys_of(const struct section *s, const char *prefix, char **out, size_t max,
        size_t n)
{
	size_t i;

	for (i = 0; i < s->n_fields; i++) {
		const struct field *f = &s->fields[i];
		char *name = kr_xasprintf("%s%s", prefix, f->key);
		char *sub;

		switch (f->type) {
		case FT_MAP:
		case FT_DATABASE:
			sub = kr_xasprintf("%s.", name);
			n = keys_of(f->sub, sub, out, max, n);
			free(sub);
			break;
		case FT_SEQ:
			sub = kr_xasprintf("%s[].", name);
			n = keys_of(f->sub, sub, out, max, n);
			free(sub);
			break;
		case FT_DOMAINMAP:
			sub = kr_xasprintf("%s.*.", name);
			n = keys_of(f->sub, sub, out, max, n);
			free(sub);
			break;
		default:
			break;
		}
		if (out != NULL && n < max)
			out[n] = name;
		else
			free(name);
		n++;
	}
	return n;
}

size_t
kr_config_keys(char **names_out, size_t max)
{
	return keys_of(&root_section, "", names_out, max, 0);
}

void
kr_config_free(struct kr_config **cfg)
{
	if (cfg == NULL || *cfg == NULL)
		return;
	config_release(*cfg);
	*cfg = NULL;
}

static bool
str_differs(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a != b;
	return strcmp(a, b) != 0;
}

size_t
kr_config_restart_keys(const struct kr_config *old, const struct kr_config *cur,
                       char *what, size_t size)
{
	const struct {
		const char *key;
		bool changed;
	} keys[] = {
	    {"database", str_differs(old->database, cur->database)},
	    {"key_file", str_differs(old->key_file, cur->key_file)},
	    {"host_id", str_differs(old->host_id, cur->host_id)},
	    {"http.listen", str_differs(old->http_listen, cur->http_listen)},
	    {"admin.listen", str_differs(old->admin_listen, cur->admin_listen)},
	    {"outbox", str_differs(old->outbox, cur->outbox)},
	    {"delivery.workers",
	     old->delivery.workers != cur->delivery.workers},
	};
	size_t i, n = 0, o = 0, klen;

	if (what != NULL && size > 0)
		what[0] = '\0';
	for (i = 0; i < KR_NELEM(keys); i++) {
		if (!keys[i].changed)
			continue;
		klen = strlen(keys[i].key);
		if (what != NULL && o + klen + 3 <= size) {
			if (n > 0) {
				memcpy(what + o, ", ", 2);
				o += 2;
			}
			memcpy(what + o, keys[i].key, klen + 1);
			o += klen;
		}
		n++;
	}
	return n;
}

const char *
kr_config_host_id(const struct kr_config *cfg, char *buf, size_t n)
{
	if (n == 0)
		return buf;
	buf[0] = '\0';
	if (cfg != NULL && cfg->host_id != NULL && cfg->host_id[0] != '\0')
		snprintf(buf, n, "%s", cfg->host_id);
	else if (gethostname(buf, n - 1) < 0 || buf[0] == '\0')
		snprintf(buf, n, "localhost");
	buf[n - 1] = '\0';
	return buf;
}

const struct kr_cfg_list *
kr_config_list(const struct kr_config *cfg, const char *id)
{
	size_t i;

	if (cfg == NULL || id == NULL)
		return NULL;
	for (i = 0; i < cfg->n_lists; i++)
		if (cfg->lists[i].id != NULL &&
		    strcmp(cfg->lists[i].id, id) == 0)
			return &cfg->lists[i];
	return NULL;
}
