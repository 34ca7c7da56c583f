/* config.h — the operator's YAML file (see config/kairan.yaml), parsed and
 * validated into one plain struct. A value type: fields are public and
 * read-only after load; reload builds a new struct and swaps. */
#ifndef KR_CONFIG_H
#define KR_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "common.h"

struct kr_tz;

enum kr_cfg_transport { KR_CFG_TRANSPORT_SMTP, KR_CFG_TRANSPORT_MAILDIR };
enum kr_cfg_tls { KR_CFG_TLS_NONE, KR_CFG_TLS_STARTTLS, KR_CFG_TLS_TLS };
enum kr_cfg_charset { KR_CFG_CHARSET_UTF8, KR_CFG_CHARSET_ISO2022JP };
/* What an iso-2022-jp list does with a character ISO-2022-JP cannot
 * carry: the substitution table (else the report goes in UTF-8), the
 * report in UTF-8, or the report refused at queue time. */
enum kr_cfg_unrep {
	KR_CFG_UNREP_SUBSTITUTE,
	KR_CFG_UNREP_UTF8,
	KR_CFG_UNREP_REFUSE
};

struct kr_cfg_list {
	char *id;          /* [a-z0-9._-]{1,64}, unique */
	char *name;        /* display name, UTF-8 */
	char *from;        /* "Name <addr@dom>" as written (validated) */
	char *from_name;   /* display part of from, UTF-8, may be "" */
	char *from_addr;   /* addr-spec part of from */
	char *reply_to;    /* addr-spec or NULL */
	bool double_opt_in;      /* default true */
	char *language;          /* "ja" | "en", default "en" */
	bool archive;            /* default false */
	bool allow_html;         /* raw HTML in reports kept; default false */
	char *footer;            /* text with {{placeholders}}, may be NULL */
	char *unsubscribe_mailto; /* addr for mailto: List-Unsubscribe or NULL */
	int charset;              /* enum kr_cfg_charset, default utf-8 */
	int unrepresentable;      /* enum kr_cfg_unrep, default substitute */
	/* sender: the 特定電子メール法 (Article 4) block shown in every mail:
	 * name, postal address, contact for complaints (mail, URL or
	 * telephone). Each NULL when neither the list nor the top level sets
	 * it; all three required for language ja. */
	char *sender_name;
	char *sender_address;
	char *sender_contact;
	/* timezone: the Date: header's zone, an IANA name or "+09:00";
	 * default Asia/Tokyo for language ja, UTC otherwise. tz is it
	 * loaded (never NULL after a successful load). */
	char *timezone;
	struct kr_tz *tz;
	/* dkim: { domain, rsa: { selector, key_file }, ed25519: { … } }.
	 * dkim_domain NULL: no signing. Else at least one selector is set,
	 * each with its key_file (checked by kr_dkim_new, not here). */
	char *dkim_domain;           /* d=, lower-case */
	char *dkim_rsa_selector;     /* NULL: no RSA signature */
	char *dkim_rsa_key_file;
	char *dkim_ed25519_selector; /* NULL: no Ed25519 signature */
	char *dkim_ed25519_key_file;
};

struct kr_cfg_domain {
	char *domain;         /* lower-case */
	unsigned connections; /* 0: no cap of its own */
	double rate;          /* messages per second, 0: no cap of its own */
};

struct kr_cfg_relay {
	char *host;
	unsigned port;       /* default 25, 587 for starttls, 465 for tls */
	enum kr_cfg_tls tls; /* default starttls */
	char *ca_file;       /* NULL: system CAs */
	char *user;          /* NULL: no AUTH */
	char *password;      /* from password_file or KAIRAN_SMTP_PASSWORD;
	                        sodium_malloc'd; never logged; NULL if none */
	char *password_file;
	bool pipelining;     /* send envelopes ahead of libesmtp; default true */
};

struct kr_config {
	char *path;          /* the file it came from */
	/* An SQLite path (default /var/lib/kairan/kairan.db), or for
	 * PostgreSQL a libpq URI "postgresql://…" that never holds a
	 * password (database: as a URI or as a mapping, normalised). */
	char *database;
	/* PostgreSQL: the file holding the password (database.password_file);
	 * NULL when none (the store then takes KAIRAN_DB_PASSWORD). */
	char *database_password_file;
	/* database: as a mapping, the parts database is built from */
	struct {
		char *host, *dbname, *user, *sslmode;
		unsigned port; /* 0: libpq's default */
	} db;
	char *key_file;      /* default /var/lib/kairan/token.key */
	char *host_id;       /* NULL: the machine's host name (delivery) */
	char *public_url;    /* required; no trailing slash */
	char *http_listen;   /* host:port, default 127.0.0.1:8080 */
	char **trusted_proxies;
	size_t n_trusted_proxies;
	unsigned http_ipv6_prefix; /* IPv6 clients limited per /N, default 64 */
	unsigned http_header_timeout; /* seconds for a request head, def. 15 */
	char *admin_listen;  /* host:port, default 127.0.0.1:8081 */
	/* the dashboard's login (HTTP Basic): required when password_file
	 * is set, and it must be when admin.listen is not loopback */
	char *admin_user;          /* default "admin" */
	char *admin_password_file; /* a crypto_pwhash_str hash; NULL: none */
	bool admin_metrics_login;  /* /metrics asks for it too; def. false */
	char *outbox;        /* NULL: not watched */
	char *webhook;       /* NULL: none */
	/* consent.retention: seconds the consent record of a subscription
	 * is kept after the last report mail sent to it (特定電子メール法
	 * Article 3: at least a month), default 31d */
	unsigned consent_retention;
	/* top-level sender: what lists without their own inherit */
	struct {
		char *name, *address, *contact;
	} sender;

	struct kr_cfg_list *lists; /* at least one */
	size_t n_lists;

	struct {
		enum kr_cfg_transport transport; /* default smtp */
		char *maildir;          /* required for maildir transport */
		unsigned workers;       /* 1..64, default 4 */
		double rate;            /* msgs/s, 0: unlimited; default 0 */
		struct kr_cfg_domain *per_domain;
		size_t n_per_domain;
		unsigned *retry;        /* seconds, default 5m 15m 1h 4h 12h */
		size_t n_retry;
		unsigned max_age;       /* seconds, default 3d */
		char *bounce_domain;    /* NULL: envelope sender = list from */
		unsigned batch;         /* messages per SMTP session, default 50 */
		unsigned lease;         /* seconds a claim holds, default 300 */
		unsigned timeout;       /* SMTP stage timeout seconds, default 300 */
	} delivery;

	struct kr_cfg_relay *relays; /* tried in order; may be 0 for maildir */
	size_t n_relays;

	int log_level;               /* enum kr_log_level, default info */

	struct {
		unsigned hard_threshold; /* counted bounces -> bounced, def. 1 */
		unsigned soft_threshold; /* soft bounces in soft_window that
		                            count as one, default 3 */
		unsigned soft_window;    /* seconds, default 7d */
		unsigned reset_after;    /* seconds, default 90d: a count
		                            whose last counted bounce is
		                            older starts again */
	} bounce;

	struct {
		char **egress;   /* the relay's egress IPs, for doctor's SPF
		                    and reverse DNS checks; may be empty */
		size_t n_egress;
		char *ca_file;   /* CAs for the one-click POST to public_url;
		                    NULL: the system's */
	} doctor;

	struct {
		char *resolver;   /* "IP[:PORT]" or NULL: the system's */
		unsigned timeout; /* seconds per query, default 3 */
	} dns;

	struct {
		double complaint_rate; /* fraction (0.001 = 0.1 %), 0: off */
		double bounce_rate;    /* hard bounces, default 0.05; 0: off */
		unsigned min_sent;     /* copies sent before a rule applies,
		                          default 1000 */
	} governor;
};

/* Loads and validates path. On success returns 0 and *cfg_out (free with
 * kr_config_free). On failure returns -1 and *errors_out holds every error
 * found, one per line, each "FILE:LINE:COLUMN: what was wrong, what was
 * expected" (caller frees). */
KR_NODISCARD int kr_config_load(const char *path, struct kr_config **cfg_out,
    char **errors_out);
/* Same, from a buffer; name is used in messages as FILE. */
KR_NODISCARD int kr_config_load_buf(const char *name, const char *data,
    size_t len, struct kr_config **cfg_out, char **errors_out);
/* Don't read relay passwords (nor check ca_file): for tools that never
 * send mail, run by users who may not read the password file. */
/* Deepest nesting of lists and mappings a YAML text may have (config and
 * report front matter). */
#define KR_CONFIG_YAML_DEPTH 64
/* true when the YAML text data[0..len) nests deeper than
 * KR_CONFIG_YAML_DEPTH; *line_out and *col_out (0-based, columns in
 * characters) then say where. Reads tokens only, stopping there, so a
 * hostile text costs little (libyaml 0.2.5 is quadratic in flow depth).
 * false for text that is not YAML: the parser will say why. */
bool kr_config_yaml_too_deep(const char *data, size_t len, size_t *line_out,
                             size_t *col_out);
#define KR_CONFIG_NO_SECRETS 0x1
/* kr_config_load and kr_config_load_buf with KR_CONFIG_* flags. */
KR_NODISCARD int kr_config_load_flags(const char *path, unsigned flags,
    struct kr_config **cfg_out, char **errors_out);
KR_NODISCARD int kr_config_load_buf_flags(const char *name, const char *data,
    size_t len, unsigned flags, struct kr_config **cfg_out,
    char **errors_out);
/* For a reload: returns how many settings differ between old and cur that
 * take effect only on restart (database, key_file, http.listen,
 * admin.listen, outbox, delivery.workers), and writes their names,
 * comma-separated, to what (size bytes; may be NULL). */
size_t kr_config_restart_keys(const struct kr_config *old,
    const struct kr_config *cur, char *what, size_t size);
/* Frees cfg (wiping secrets) and sets *cfg to NULL. Accepts NULL. */
void kr_config_free(struct kr_config **cfg);
/* This host among the kairand hosts of one database: host_id, else the
 * machine's host name, else "localhost" (as delivery's leases name it),
 * written to buf (n bytes). Returns buf. */
const char *kr_config_host_id(const struct kr_config *cfg, char *buf,
    size_t n);
/* Returns the list with this id, or NULL. Borrowed from cfg. */
const struct kr_cfg_list *kr_config_list(const struct kr_config *cfg,
    const char *id);

#endif
