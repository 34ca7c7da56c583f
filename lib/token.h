/* token.h — signed, purpose-bound tokens for links and VERP addresses.
 * A token is base64url (no padding) of: version, key id, purpose, issue
 * time, subscriber id, report id, and a crypto_auth MAC over those fields
 * plus the list id. The address never appears in it. Verification is
 * constant-time and accepts every key still in the key file, so links keep
 * working after `kairanctl keys rotate`. */
#ifndef KR_TOKEN_H
#define KR_TOKEN_H

#include <stdint.h>

#include "common.h"

struct kr_err;
struct kr_keyring;

enum kr_token_purpose {
	KR_TOKEN_CONFIRM = 1,
	KR_TOKEN_UNSUBSCRIBE = 2,
	KR_TOKEN_BOUNCE = 3,
};

struct kr_token_claims {
	enum kr_token_purpose purpose;
	const char *list_id;   /* bound into the MAC, not carried */
	int64_t subscriber_id;
	int64_t report_id;     /* 0 when none */
	int64_t issued_at;     /* Unix seconds */
};

/* Longest token kr_token_sign writes, with its NUL. */
#define KR_TOKEN_MAX 96

/* Loads the key file (one key per line: id and base64 key). When it is
 * missing and create is non-zero, creates it with mode 0600 and one fresh
 * key. Keys live in sodium_malloc'd memory. */
KR_NODISCARD int kr_token_keyring_load(const char *path, int create,
    struct kr_keyring **ring_out, struct kr_err *err);
void kr_token_keyring_free(struct kr_keyring **ring);
/* Appends a new key to the file (atomically, keeping 0600); it signs from
 * then on. Returns 0 or -1. new_id_out may be NULL. */
KR_NODISCARD int kr_token_rotate(const char *path, uint32_t *new_id_out,
    struct kr_err *err);

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
    const char *token, enum kr_token_purpose purpose, const char *list_id,
    int64_t now, int64_t max_age, struct kr_token_claims *out,
    struct kr_err *err);

#endif
