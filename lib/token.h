/* token.h — signed, purpose-bound tokens for links and VERP addresses.
 * A token is base64url (no padding) of: version, key id, purpose, issue
 * time, subscriber id, report id, and a crypto_auth MAC over those fields
 * plus the list id. The address never appears in it. Verification is
 * constant-time and accepts every key still in the key file, so links keep
 * working after `kairanctl keys rotate`. The MAC is kept to 24 bytes so a
 * typical token is 48 characters of [A-Za-z0-9_-] and "bounces+TOKEN" fits
 * the 64-octet local part of a VERP address (tokens are case-sensitive:
 * never fold the case of a VERP local part). Layout: lib/token.c. */
#ifndef KR_TOKEN_H
#define KR_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

struct kr_err;
struct kr_keyring;
struct kr_store;

enum kr_token_purpose {
	KR_TOKEN_CONFIRM = 1,
	KR_TOKEN_UNSUBSCRIBE = 2,
	KR_TOKEN_BOUNCE = 3,
};

struct kr_token_claims {
	enum kr_token_purpose purpose;
	const char *list_id; /* bound into the MAC, not carried */
	int64_t subscriber_id;
	int64_t report_id; /* 0 when none */
	int64_t issued_at; /* Unix seconds */
};

/* Longest token kr_token_sign writes, with its NUL. */
#define KR_TOKEN_MAX 96

/* Loads the key file (one key per line: "ID CREATED_UNIX BASE64KEY", newest
 * last). When it is missing and create is non-zero, creates it with mode
 * 0600 and one fresh key. A file readable or writable by group or others is
 * refused (KR_ERR_INVALID); missing without create: KR_ERR_NOTFOUND. Keys
 * live in sodium_malloc'd read-only memory, wiped by kr_token_keyring_free
 * (which accepts NULL and sets *ring to NULL). */
KR_NODISCARD int kr_token_keyring_load(const char *path, int create,
                                       struct kr_keyring **ring_out,
                                       struct kr_err *err);
void kr_token_keyring_free(struct kr_keyring **ring);
/* Appends a new key to the file (atomically, keeping 0600); it signs from
 * then on. Returns 0 or -1. new_id_out may be NULL. A missing file is
 * created with its first key (id 1). Running processes keep their ring
 * until they load it again (kairand: SIGHUP). */
KR_NODISCARD int kr_token_rotate(const char *path, uint32_t *new_id_out,
                                 struct kr_err *err);
/* Removes key id from the file (same atomic rewrite): tokens it signed stop
 * verifying. The newest (signing) key cannot be retired. Returns 0 or -1
 * (KR_ERR_NOTFOUND when no such key). */
KR_NODISCARD int kr_token_retire(const char *path, uint32_t id,
                                 struct kr_err *err);
/* Whether a verified token can be about the subscription as it is now:
 * issued no earlier than the row was created (a token for a row removed
 * and made anew, or for an id given out again, belongs to someone else),
 * and, for a confirmation, no earlier than the consent it confirms (after
 * leaving and signing up again, only the new mail's link confirms). */
bool kr_token_fits(const struct kr_token_claims *c, int64_t created_at,
                   int64_t consent_at);
/* The key ring for a database: loads path; when it is missing, creates it
 * only if no token can have been issued yet (an empty database), and
 * otherwise refuses, naming the file (every link already sent depends on
 * it). Then checks every key against the fingerprints the database
 * recorded (kr_token_keyring_check). */
KR_NODISCARD int kr_token_keyring_open(const char *path,
                                       struct kr_store *store,
                                       struct kr_keyring **ring_out,
                                       struct kr_err *err);
/* Records the fingerprint of each key of ring in the database the first
 * time it is seen; -1 (KR_ERR_INVALID) when the database knows another
 * key under one of its ids (another host's key file, a file restored
 * from the wrong backup). */
KR_NODISCARD int kr_token_keyring_check(const struct kr_keyring *ring,
                                        const char *path,
                                        struct kr_store *store, int64_t now,
                                        struct kr_err *err);
/* Hex fingerprint of key i (a hash with a fixed domain: it tells keys
 * apart without revealing them). */
#define KR_TOKEN_FP_LEN 33
KR_NODISCARD int kr_token_keyring_fingerprint(const struct kr_keyring *ring,
                                              size_t i,
                                              char out[KR_TOKEN_FP_LEN]);
/* The number of keys in ring, oldest first; the last one signs. */
size_t kr_token_keyring_count(const struct kr_keyring *ring);
/* Id and creation time (Unix seconds) of key i, never its bytes. Returns 0,
 * or -1 when i is out of range. Out-params may be NULL. */
KR_NODISCARD int kr_token_keyring_key(const struct kr_keyring *ring, size_t i,
                                      uint32_t *id_out, int64_t *created_out);

/* Writes the token for c (signed with the newest key) into out, which must
 * hold KR_TOKEN_MAX bytes. */
void kr_token_sign(const struct kr_keyring *ring,
                   const struct kr_token_claims *c, char out[KR_TOKEN_MAX]);

/* Parses token without checking its MAC, so the caller can look up the
 * subscriber's list. Returns 0, or -1 when malformed. list_id is NULL. */
KR_NODISCARD int kr_token_peek(const char *token, struct kr_token_claims *out,
                               struct kr_err *err);
/* Verifies token for the expected purpose and list: 0 valid (claims in
 * *out, list_id = the given one), -1 invalid, tampered, wrong purpose or
 * list, unknown key, or older than max_age seconds (0: no limit). */
KR_NODISCARD int kr_token_verify(const struct kr_keyring *ring,
                                 const char *token,
                                 enum kr_token_purpose purpose,
                                 const char *list_id, int64_t now,
                                 int64_t max_age, struct kr_token_claims *out,
                                 struct kr_err *err);

#endif
