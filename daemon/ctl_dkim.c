/* ctl_dkim.c — `kairanctl dkim keygen --domain D --selector S [--dir DIR]`
 * makes the two signing keys and prints the DNS records to publish;
 * `kairanctl dkim check` compares the published records with the keys of
 * every list that signs; `kairanctl dkim replace [--domain D] SEL` makes
 * this host's key under SEL the one the database knows (every host must
 * have it). Never prints private key bytes. */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "ctl.h"
#include "dkim.h"
#include "err.h"
#include "store.h"
#include "xmem.h"

static const char usage_text[] =
    "usage: kairanctl dkim keygen --domain DOMAIN --selector SEL "
    "[--dir DIR]\n"
    "       kairanctl dkim check\n"
    "       kairanctl dkim sign [--list ID] [--time T] < MESSAGE > SIGNED\n"
    "       kairanctl dkim replace [--domain DOMAIN] SELECTOR\n\n"
    "keygen writes DIR/SEL-rsa.key (RSA-2048, PEM) and DIR/SEL-ed25519.key\n"
    "(Ed25519 seed, base64), both mode 0600, in DIR (default: the current\n"
    "folder); it never overwrites a key. It prints the two DNS TXT records\n"
    "to publish, SEL-rsa._domainkey.DOMAIN and SEL-ed25519._domainkey.DOMAIN,\n"
    "in zone-file form, and the dkim: block for the list in kairan.yaml.\n\n"
    "check looks up the TXT record of each key of each list with a dkim:\n"
    "block and says whether it matches the key file.\n\n"
    "sign signs a whole message (RFC 5322) read on stdin as kairand does\n"
    "for the list (default: the first list with a dkim: block; t= is now,\n"
    "or T seconds since 1970) and writes it with its DKIM-Signature\n"
    "fields on stdout, lines ending in CRLF: to try keys and DNS with an\n"
    "outside checker.\n\n"
    "replace: the key under SELECTOR was replaced on purpose (its new DNS\n"
    "record published): the database records this host's key file for it.\n"
    "Every kairand host of one database must sign with the key the\n"
    "database knows under each selector, or it refuses to start (and a\n"
    "reload keeps the running config): copy the new file to every host,\n"
    "then restart or reload them. A new key under a new selector needs\n"
    "nothing of this. --domain: when SELECTOR is used under several d=.\n\n"
    "exit status: 0 ok (check: every record matches), 1 failure, 2 usage\n";

static int
dkim_keygen(int argc, char **argv)
{
	static const struct option opts[] = {{"domain", 1, NULL, 'd'},
	                                     {"selector", 1, NULL, 's'},
	                                     {"dir", 1, NULL, 'D'},
	                                     {"help", 0, NULL, 'h'},
	                                     {NULL, 0, NULL, 0}};
	const char *domain = NULL, *sel = NULL, *dir = ".";
	char *rsa_path = NULL, *ed_path = NULL, *txt_rsa = NULL, *txt_ed = NULL,
	     *sel_rsa = NULL, *sel_ed = NULL;
	char absdir[PATH_MAX];
	struct kr_err err = {0};
	struct kr_buf z;
	int ch, rc = CTL_USAGE;

	kr_buf_init(&z, 0);
	optind = 0;
	while ((ch = getopt_long(argc, argv, "d:s:D:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'd':
			domain = optarg;
			break;
		case 's':
			sel = optarg;
			break;
		case 'D':
			dir = optarg;
			break;
		case 'h':
			fputs(usage_text, stdout);
			rc = CTL_OK;
			goto out;
		default:
			fputs(usage_text, stderr);
			goto out;
		}
	}
	if (domain == NULL || sel == NULL || optind != argc) {
		ctl_error("dkim keygen: --domain and --selector expected");
		fputs(usage_text, stderr);
		goto out;
	}
	if (!kr_dkim_name_ok(domain) || !kr_dkim_name_ok(sel)) {
		ctl_error("dkim keygen: '%s' is not a DNS name (letters, "
		          "digits, '-' and '.')",
		          kr_dkim_name_ok(domain) ? sel : domain);
		goto out;
	}
	rc = CTL_FAIL;
	if (realpath(dir, absdir) == NULL) {
		ctl_error("dkim keygen: %s: no such folder", dir);
		goto out;
	}
	if (kr_dkim_keygen(absdir, sel, &err) < 0) {
		ctl_error("dkim keygen: %s", err.msg);
		goto out;
	}
	rsa_path = kr_xasprintf("%s/%s-rsa.key", absdir, sel);
	ed_path = kr_xasprintf("%s/%s-ed25519.key", absdir, sel);
	sel_rsa = kr_xasprintf("%s-rsa", sel);
	sel_ed = kr_xasprintf("%s-ed25519", sel);
	if (kr_dkim_txt(rsa_path, false, &txt_rsa, &err) < 0 ||
	    kr_dkim_txt(ed_path, true, &txt_ed, &err) < 0) {
		ctl_error("dkim keygen: %s", err.msg);
		goto out;
	}
	if (kr_dkim_zone_record(sel_rsa, domain, txt_rsa, &z) < 0 ||
	    kr_dkim_zone_record(sel_ed, domain, txt_ed, &z) < 0)
		goto out;
	/* stdout is a zone-file fragment: the rest are ';' comments. */
	printf("; kairan DKIM keys for %s: %s and %s (mode 0600)\n"
	       "; publish these two records in the zone of %s:\n%s"
	       "; then add to the list in kairan.yaml, reload kairand, and\n"
	       "; run `kairanctl dkim check`:\n"
	       ";    dkim:\n"
	       ";      domain: %s\n"
	       ";      rsa: { selector: %s, key_file: %s }\n"
	       ";      ed25519: { selector: %s, key_file: %s }\n",
	       domain, rsa_path, ed_path, domain, z.data, domain, sel_rsa,
	       rsa_path, sel_ed, ed_path);
	if (geteuid() == 0)
		printf("; the key files belong to root: give them to the user "
		       "kairand runs as\n;   chown kairan: %s %s\n",
		       rsa_path, ed_path);
	rc = CTL_OK;
out:
	free(rsa_path);
	free(ed_path);
	free(sel_rsa);
	free(sel_ed);
	free(txt_rsa);
	free(txt_ed);
	kr_buf_fini(&z);
	return rc;
}

/* DMARC passes on DKIM only when d= is aligned with the From domain:
 * the same, or (relaxed) the same organizational domain. Without the
 * public suffix list we can tell only the sure case, d= equal to the
 * From domain or a parent of it; anything else gets a warning. */
static void
warn_alignment(const struct kr_cfg_list *l)
{
	const char *at = l->from_addr ? strrchr(l->from_addr, '@') : NULL;
	size_t fl, dl = strlen(l->dkim_domain);

	if (at == NULL)
		return;
	at++;
	fl = strlen(at);
	if (strcasecmp(at, l->dkim_domain) == 0 ||
	    (fl > dl && at[fl - dl - 1] == '.' &&
	     strcasecmp(at + fl - dl, l->dkim_domain) == 0))
		return;
	printf("list %s: WARN d=%s is not the From domain %s nor a parent of "
	       "it: DMARC counts the signature only if both share an "
	       "organizational domain\n",
	       l->id, l->dkim_domain, at);
}

/* One key of one list: 1 matches, 0 not (message printed). */
static int
check_one(const struct kr_cfg_list *l, const char *domain, const char *sel,
          const char *key_file, bool ed)
{
	struct kr_err err = {0};
	char *txt = NULL;
	int ok = 0;

	if (kr_dkim_txt(key_file, ed, &txt, &err) < 0) {
		printf("list %s: %s._domainkey.%s: FAIL %s\n", l->id, sel,
		       domain, err.msg);
		goto out;
	}
	switch (kr_dkim_dns_check(sel, domain, txt, &err)) {
	case 1:
		printf("list %s: %s._domainkey.%s: OK, matches %s\n", l->id,
		       sel, domain, key_file);
		ok = 1;
		break;
	case 0:
		printf("list %s: FAIL %s (key file %s)\n", l->id, err.msg,
		       key_file);
		break;
	default:
		printf("list %s: FAIL %s\n", l->id, err.msg);
		break;
	}
out:
	free(txt);
	return ok;
}

static int
dkim_check(struct ctl *c, int argc, char **argv)
{
	size_t i, n = 0, good = 0;
	int r;

	if (argc == 2 && (strcmp(argv[1], "--help") == 0 ||
	                  strcmp(argv[1], "-h") == 0)) {
		fputs(usage_text, stdout);
		return CTL_OK;
	}
	if (argc != 1) {
		fputs(usage_text, stderr);
		return CTL_USAGE;
	}
	if ((r = ctl_config(c)) != CTL_OK)
		return r;
	for (i = 0; i < c->cfg->n_lists; i++) {
		const struct kr_cfg_list *l = &c->cfg->lists[i];

		if (l->dkim_domain == NULL)
			continue;
		warn_alignment(l);
		if (l->dkim_rsa_selector != NULL) {
			n++;
			good += (size_t)check_one(l, l->dkim_domain,
			                          l->dkim_rsa_selector,
			                          l->dkim_rsa_key_file, false);
		}
		if (l->dkim_ed25519_selector != NULL) {
			n++;
			good += (size_t)check_one(
			    l, l->dkim_domain, l->dkim_ed25519_selector,
			    l->dkim_ed25519_key_file, true);
		}
	}
	if (n == 0) {
		ctl_error(
		    "dkim check: no list has a dkim: block, so no mail is "
		    "signed (see `kairanctl dkim keygen`)");
		return CTL_FAIL;
	}
	if (good != n) {
		ctl_error("dkim check: %zu of %zu records missing or wrong",
		          n - good, n);
		return CTL_FAIL;
	}
	return CTL_OK;
}

#define SIGN_MAX (64 * 1024 * 1024) /* bytes of a message to sign */

static int
dkim_sign(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"list", 1, NULL, 'l'},
	    {"time", 1, NULL, 't'},
	    {"help", 0, NULL, 'h'},
	    {NULL, 0, NULL, 0}};
	const struct kr_cfg_list *l = NULL;
	const char *list_id = NULL;
	struct kr_dkim *d = NULL;
	struct kr_err err = {0};
	struct kr_buf msg;
	char chunk[65536], *end;
	long long now = (long long)time(NULL);
	size_t n, i;
	int ch, r = CTL_USAGE;

	kr_buf_init(&msg, SIGN_MAX);
	optind = 0;
	while ((ch = getopt_long(argc, argv, "l:t:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'h':
			fputs(usage_text, stdout);
			r = CTL_OK;
			goto out;
		case 'l':
			list_id = optarg;
			break;
		case 't':
			now = strtoll(optarg, &end, 10);
			if (*optarg == '\0' || *end != '\0' || now < 0) {
				ctl_error("dkim sign: --time '%s' is not a "
				          "number of seconds",
				          optarg);
				goto out;
			}
			break;
		default:
			fputs(usage_text, stderr);
			goto out;
		}
	}
	if (optind != argc) {
		fputs(usage_text, stderr);
		goto out;
	}
	if ((r = ctl_config(c)) != CTL_OK)
		goto out;
	r = CTL_FAIL;
	for (i = 0; i < c->cfg->n_lists && l == NULL; i++)
		if (list_id != NULL ? strcmp(c->cfg->lists[i].id, list_id) == 0
		                    : c->cfg->lists[i].dkim_domain != NULL)
			l = &c->cfg->lists[i];
	if (l == NULL || l->dkim_domain == NULL) {
		ctl_error("dkim sign: %s%s%s", list_id ? "list " : "",
		          list_id ? list_id : "no list has a dkim: block",
		          list_id ? (l ? " has no dkim: block" : " not found")
		                  : "");
		goto out;
	}
	if (kr_dkim_for_list(l, &d, &err) < 0) {
		ctl_error("dkim sign: %s", err.msg);
		goto out;
	}
	/* Lines ending in LF alone become CRLF, as SMTP will send them. */
	while ((n = fread(chunk, 1, sizeof(chunk), stdin)) > 0) {
		for (i = 0; i < n; i++) {
			if (chunk[i] == '\n' &&
			    (msg.len == 0 || msg.data[msg.len - 1] != '\r') &&
			    kr_buf_putc(&msg, '\r') < 0)
				break;
			if (kr_buf_putc(&msg, chunk[i]) < 0)
				break;
		}
		if (i < n) {
			ctl_error("dkim sign: the message is over %d bytes",
			          SIGN_MAX);
			goto out;
		}
	}
	if (ferror(stdin)) {
		ctl_error("dkim sign: reading stdin failed");
		goto out;
	}
	if (kr_dkim_prepend(d, &msg, (int64_t)now, &err) < 0) {
		ctl_error("dkim sign: %s", err.msg);
		goto out;
	}
	if (fwrite(msg.data, 1, msg.len, stdout) != msg.len ||
	    fflush(stdout) != 0) {
		ctl_error("dkim sign: writing stdout failed");
		goto out;
	}
	r = CTL_OK;
out:
	kr_dkim_free(&d);
	kr_buf_fini(&msg);
	return r;
}

/* One key the config signs with under (domain, selector). */
struct dkim_key {
	const struct kr_cfg_list *list;
	const char *domain, *selector, *file;
	bool ed;
};

static int
dkim_replace(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {{"domain", 1, NULL, 'd'},
	                                     {"help", 0, NULL, 'h'},
	                                     {NULL, 0, NULL, 0}};
	const char *domain = NULL, *sel;
	struct dkim_key keys[16], *k = NULL;
	struct kr_store_dkim_key old;
	struct kr_dkim *d = NULL;
	struct kr_err err = {0};
	char fp[KR_DKIM_FP_LEN], fp1[KR_DKIM_FP_LEN] = "", host[256];
	size_t i, n = 0;
	int ch, r, rc = CTL_USAGE;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "d:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'd':
			domain = optarg;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return CTL_OK;
		default:
			fputs(usage_text, stderr);
			return CTL_USAGE;
		}
	}
	if (optind + 1 != argc) {
		ctl_error("dkim replace: one SELECTOR expected");
		fputs(usage_text, stderr);
		return CTL_USAGE;
	}
	sel = argv[optind];
	if ((r = ctl_config(c)) != CTL_OK)
		return r;
	/* The keys of the config under sel (and domain) */
	for (i = 0; i < c->cfg->n_lists; i++) {
		const struct kr_cfg_list *l = &c->cfg->lists[i];

		if (l->dkim_domain == NULL ||
		    (domain != NULL && strcasecmp(domain, l->dkim_domain) != 0))
			continue;
		if (l->dkim_rsa_selector != NULL &&
		    strcasecmp(l->dkim_rsa_selector, sel) == 0 &&
		    n < KR_NELEM(keys))
			keys[n++] = (struct dkim_key){l, l->dkim_domain,
			                              l->dkim_rsa_selector,
			                              l->dkim_rsa_key_file, false};
		if (l->dkim_ed25519_selector != NULL &&
		    strcasecmp(l->dkim_ed25519_selector, sel) == 0 &&
		    n < KR_NELEM(keys))
			keys[n++] = (struct dkim_key){
			    l, l->dkim_domain, l->dkim_ed25519_selector,
			    l->dkim_ed25519_key_file, true};
	}
	rc = CTL_FAIL;
	if (n == 0) {
		ctl_error("dkim replace: no list signs with selector %s%s%s "
		          "(see the lists' dkim: blocks in %s)",
		          sel, domain ? " under d=" : "", domain ? domain : "",
		          c->config_path);
		return CTL_FAIL;
	}
	for (i = 1; i < n; i++)
		if (strcmp(keys[i].domain, keys[0].domain) != 0) {
			ctl_error("dkim replace: selector %s is used under d=%s "
			          "and d=%s: say which with --domain",
			          sel, keys[0].domain, keys[i].domain);
			return CTL_USAGE;
		}
	/* Lists sharing d= and s= must share the key: one fingerprint. */
	for (i = 0; i < n; i++) {
		k = &keys[i];
		if (kr_dkim_new(k->domain, k->ed ? NULL : k->selector,
		                k->ed ? NULL : k->file, k->ed ? k->selector : NULL,
		                k->ed ? k->file : NULL, &d, &err) < 0 ||
		    kr_dkim_fingerprint(d, k->ed, fp) < 0) {
			ctl_error("dkim replace: list %s: %s", k->list->id,
			          err.msg[0] ? err.msg : "no public key");
			goto out;
		}
		if (i == 0)
			memcpy(fp1, fp, sizeof(fp1));
		else if (strcmp(fp, fp1) != 0) {
			ctl_error("dkim replace: lists %s and %s sign under d=%s "
			          "s=%s with different keys (%s, %s): one "
			          "selector, one key",
			          keys[0].list->id, k->list->id, k->domain,
			          k->selector, keys[0].file, k->file);
			goto out;
		}
		if (i + 1 < n)
			kr_dkim_free(&d);
	}
	k = &keys[0];
	if ((r = ctl_store(c)) != CTL_OK) {
		rc = r;
		goto out;
	}
	r = kr_dkim_replace(d, k->ed, c->store,
	                    kr_config_host_id(c->cfg, host, sizeof(host)),
	                    (int64_t)time(NULL), fp, &old, &err);
	if (r < 0) {
		ctl_error("dkim replace: %s", err.msg);
		goto out;
	}
	printf("d=%s s=%s: the database now knows the key in %s "
	       "(fingerprint %s)\n",
	       k->domain, k->selector, k->file, fp);
	if (r == 1)
		printf("it replaces the key host %s recorded (fingerprint %s): "
		       "hosts that still have that one are refused at their "
		       "next start or reload.\ncopy %s to every host, then "
		       "restart or reload them: systemctl reload kairan\n",
		       old.host[0] ? old.host : "(unknown)", old.fingerprint,
		       k->file);
	else if (old.fingerprint[0] != '\0')
		printf("(it already was: nothing changed for the hosts)\n");
	rc = CTL_OK;
out:
	kr_dkim_free(&d);
	return rc;
}

static int
ctl_dkim(struct ctl *c, int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "sign") == 0)
		return dkim_sign(c, argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "keygen") == 0)
		return dkim_keygen(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "check") == 0)
		return dkim_check(c, argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "replace") == 0)
		return dkim_replace(c, argc - 1, argv + 1);
	if (argc == 2 &&
	    (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		fputs(usage_text, stdout);
		return CTL_OK;
	}
	if (argc >= 2)
		ctl_error("dkim: unknown command '%s'", argv[1]);
	fputs(usage_text, stderr);
	return CTL_USAGE;
}

CTL_VERB(dkim, "dkim", ctl_dkim,
         "keygen --domain D --selector S [--dir DIR] | check | sign | "
         "replace SEL: DKIM");
