/* dkim.h — DKIM signatures (RFC 6376, c=relaxed/relaxed) with RSA-SHA256
 * (RFC 8301, OpenSSL) and Ed25519-SHA256 (RFC 8463, libsodium), and the
 * keys and DNS records that go with them. A struct kr_dkim is read-only
 * once made: any number of threads may sign with it at once. */
#ifndef KR_DKIM_H
#define KR_DKIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

struct kr_buf;
struct kr_cfg_list;
struct kr_config;
struct kr_dkim;
struct kr_dkim_set;
struct kr_err;
struct kr_store;
struct kr_store_dkim_key;

/* Loads the keys for domain d=: an RSA PEM key (1024 bits or more) and/or
 * an Ed25519 key file (base64 of the 32-byte seed), each with its
 * selector; a NULL selector/key pair is left out, at least one is needed.
 * Key files must not be readable by group or others. Returns 0 and
 * *dkim_out (free with kr_dkim_free), or -1 (KR_ERR_INVALID, KR_ERR_IO,
 * KR_ERR_NOTFOUND; the message names the file, never key bytes). */
KR_NODISCARD int kr_dkim_new(const char *domain, const char *rsa_selector,
                             const char *rsa_key_file,
                             const char *ed25519_selector,
                             const char *ed25519_key_file,
                             struct kr_dkim **dkim_out, struct kr_err *err);
/* The same from a list's dkim: block. Returns 1 and *dkim_out, 0 and NULL
 * when the list has no dkim block, or -1 (err prefixed with the list). */
KR_NODISCARD int kr_dkim_for_list(const struct kr_cfg_list *list,
                                  struct kr_dkim **dkim_out,
                                  struct kr_err *err);
/* Frees (wiping the keys) and sets *dkim to NULL. Accepts NULL. */
void kr_dkim_free(struct kr_dkim **dkim);

/* The signers of every list of a config, for the delivery workers: made
 * once per config (start, reload) and swapped with it; read-only, shared
 * by all threads. Loads the keys of every list with a dkim: block.
 * Returns 0 and *set_out
 * (free with kr_dkim_set_free; empty when no list signs), or -1 with err
 * naming the list and file: treat it like a config error (refuse to
 * start; on reload keep the old config and set). */
KR_NODISCARD int kr_dkim_set_new(const struct kr_config *cfg,
                                 struct kr_dkim_set **set_out,
                                 struct kr_err *err);
/* The signer for list_id, or NULL when that list does not sign. Borrowed
 * from set. */
const struct kr_dkim *kr_dkim_set_get(const struct kr_dkim_set *set,
                                      const char *list_id);
void kr_dkim_set_free(struct kr_dkim_set **set);

/* ---- the same keys on every host (several hosts, one database) ---- */

/* A fingerprint's hex digits and NUL. */
#define KR_DKIM_FP_LEN 65
/* The fingerprint the database keeps of a signing key: the SHA-256, in
 * lower-case hex, of its public key as DER SubjectPublicKeyInfo (for an
 * RSA key file, what `openssl pkey -in FILE -pubout -outform DER |
 * sha256sum` prints). ed: of the Ed25519 key, else of the RSA key.
 * Returns 0, or -1 when dkim has no such key or the crypto library
 * fails. Public: nothing of the private key can be learnt from it. */
KR_NODISCARD int kr_dkim_fingerprint(const struct kr_dkim *dkim, bool ed,
                                     char out[KR_DKIM_FP_LEN]);
/* Checks each signing key of set (made from cfg) against the keys the
 * database knows (kr_store_dkim_check): one it has not seen under its
 * domain and selector is recorded with its fingerprint and host (this
 * host's host_id). Returns 0 when every key is new or the one known, -1
 * on a database error or when the database knows another key under a
 * domain and selector: a host with that key would sign mail that fails
 * DKIM wherever the other key is published. err then names the list,
 * key file, d= and s= and the host whose key the database has (never key
 * bytes); hint (hint_size bytes, may be NULL) gets both fingerprints and
 * the way out, a line to log after err's. */
KR_NODISCARD int kr_dkim_set_check(const struct kr_dkim_set *set,
                                   const struct kr_config *cfg,
                                   struct kr_store *store, const char *host,
                                   int64_t now, char *hint, size_t hint_size,
                                   struct kr_err *err);
/* `kairanctl dkim replace`: the key under d= and s= (ed: the Ed25519
 * one, else the RSA one) was replaced on purpose; its fingerprint
 * (fp_out) becomes the one the database knows (kr_store_dkim_replace):
 * hosts with the old key are refused from their next start or reload.
 * Returns 1 when the database knew another key (*old_out, may be NULL),
 * 0 when none or this one, -1 on error. */
KR_NODISCARD int kr_dkim_replace(const struct kr_dkim *dkim, bool ed,
                                 struct kr_store *store, const char *host,
                                 int64_t now, char fp_out[KR_DKIM_FP_LEN],
                                 struct kr_store_dkim_key *old_out,
                                 struct kr_err *err);

/* Signs msg (a whole RFC 5322 message, CRLF lines, as it will be sent)
 * and appends the DKIM-Signature field(s) to out, folded, each ending in
 * CRLF: put them in front of the message. t= is now (seconds since the
 * epoch). Two fields when both keys are set, RSA first. Returns 0, or -1
 * (KR_ERR_INVALID: no header/From field or over 1000 fields; KR_ERR_IO:
 * the crypto library failed; out is then unchanged). */
KR_NODISCARD int kr_dkim_sign(const struct kr_dkim *dkim, const char *msg,
                              size_t len, int64_t now, struct kr_buf *out,
                              struct kr_err *err);
/* Signs msg->data and inserts the field(s) at its front, for a caller
 * that composed into a buffer. Returns 0 or -1 (msg unchanged). */
KR_NODISCARD int kr_dkim_prepend(const struct kr_dkim *dkim, struct kr_buf *msg,
                                 int64_t now, struct kr_err *err);

/* True when s is a DNS name fit for d= or s= (letters, digits, '-' and
 * dots between labels). */
bool kr_dkim_name_ok(const char *s);

/* Key generation for `kairanctl dkim keygen`: writes DIR/SELECTOR-rsa.key
 * (RSA-2048, PEM PKCS#8) and DIR/SELECTOR-ed25519.key (base64 seed), both
 * 0600, refusing to overwrite either (KR_ERR_EXISTS, nothing written).
 * Returns 0 or -1. */
KR_NODISCARD int kr_dkim_keygen(const char *dir, const char *selector,
                                struct kr_err *err);
/* The TXT record value for a key file: "v=DKIM1; k=rsa; p=…" or
 * "v=DKIM1; k=ed25519; p=…" (ed25519 picks the format). Returns 0 and
 * *txt_out (caller frees), or -1. */
KR_NODISCARD int kr_dkim_txt(const char *key_file, bool ed25519, char **txt_out,
                             struct kr_err *err);
/* Appends `SEL._domainkey.DOMAIN. IN TXT ( "…" "…" )` and a newline to
 * out, txt split into quoted strings of at most 255 characters. */
KR_NODISCARD int kr_dkim_zone_record(const char *selector, const char *domain,
                                     const char *txt, struct kr_buf *out);
/* Looks up the TXT record at SEL._domainkey.DOMAIN and compares its k=
 * and p= with want (a kr_dkim_txt value). Returns 1 match, 0 a record
 * that differs (err says how), -1 no answer or no DKIM record (err:
 * "no answer for SEL._domainkey.DOMAIN: …"). */
KR_NODISCARD int kr_dkim_dns_check(const char *selector, const char *domain,
                                   const char *want, struct kr_err *err);
/* For `kairanctl doctor`: compares a published DKIM TXT value (as the
 * DNS gave it) with want (a kr_dkim_txt value) like kr_dkim_dns_check, and
 * writes the size of the published RSA key to *rsa_bits_out (0: not RSA
 * or not readable). Returns 1 same key, 0 different (err says how). */
int kr_dkim_record_check(const char *published, const char *want,
                         int *rsa_bits_out, struct kr_err *err);

#endif
