/* token.c — signed, purpose-bound tokens and the key file behind them.
 *
 * Token, version 1, before base64url (no padding):
 *   u8      version (1)
 *   varint  key id
 *   u8      purpose
 *   varint  zigzag(issued_at), zigzag(subscriber_id), zigzag(report_id)
 *   u8[24]  MAC
 * Varints are LEB128 and must be minimal, so every token has exactly one
 * encoding. The MAC is crypto_auth (HMAC-SHA512-256) keyed with the key
 * named by the key id, over "kairan-token" NUL, the bytes above (without
 * the MAC), varint(strlen(list_id)) and list_id: the list is bound but not
 * carried. The MAC is truncated from 32 to 24 bytes (192 bits, far beyond
 * any online forgery) so a bounce token fits the 64-octet local part of a
 * VERP address, "bounces+TOKEN@": a typical token is 50 characters, 32
 * bytes of MAC would make it 61 and push the local part past 64. A
 * truncated MAC cannot go through crypto_auth_verify; it is recomputed and
 * compared with sodium_memcmp, which is constant-time all the same.
 *
 * Key file: text, one key per line, "ID CREATED_UNIX BASE64KEY", newest
 * last; blank lines and lines starting with # are skipped. It must not be
 * readable or writable by group or others (like ssh's private keys). */
#include "token.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "secret.h"
#include "store.h"
#include "xmem.h"

#define TOKEN_VERSION 1
#define MAC_LEN 24
#define KEY_LEN crypto_auth_KEYBYTES
/* version + key id + purpose + three 64-bit varints + MAC */
#define RAW_MAX (1 + 5 + 1 + 3 * 10 + MAC_LEN)
#define SKEW 300 /* seconds a token may come from the future */
#define FILE_MAX (256 * 1024)
#define KEYS_MAX 4096
#define LINE_MAX_LEN 128 /* "4294967295 -9223372036854775808 " + 44 */

struct kr_keyring {
	size_t n;
	size_t cap; /* slots allocated */
	uint32_t *ids;
	int64_t *created;
	unsigned char *keys; /* n * KEY_LEN, sodium_malloc'd, read-only */
};

_Static_assert(sodium_base64_ENCODED_LEN(
                   RAW_MAX, sodium_base64_VARIANT_URLSAFE_NO_PADDING) <=
                   KR_TOKEN_MAX,
               "KR_TOKEN_MAX too small");

/* ---- encoding ---- */

static size_t
varint_put(unsigned char *p, uint64_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		p[n++] = (unsigned char)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (unsigned char)v;
	return n;
}

/* Reads a minimal LEB128 varint; returns bytes used or 0. */
static size_t
varint_get(const unsigned char *p, size_t len, uint64_t *v)
{
	uint64_t r = 0;
	size_t i;

	for (i = 0; i < len && i < 10; i++) {
		if (i == 9 && p[i] > 1)
			return 0; /* past 64 bits */
		r |= (uint64_t)(p[i] & 0x7f) << (7 * i);
		if ((p[i] & 0x80) == 0) {
			if (i > 0 && p[i] == 0)
				return 0; /* not minimal */
			*v = r;
			return i + 1;
		}
	}
	return 0;
}

static uint64_t
zigzag(int64_t v)
{
	return ((uint64_t)v << 1) ^ (uint64_t)(v < 0 ? -1 : 0);
}

static int64_t
unzigzag(uint64_t u)
{
	return (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
}

static const char *
purpose_name(int p)
{
	switch (p) {
	case KR_TOKEN_CONFIRM:
		return "confirming a subscription";
	case KR_TOKEN_UNSUBSCRIBE:
		return "unsubscribing";
	case KR_TOKEN_BOUNCE:
		return "bounce tracking";
	default:
		return "an unknown purpose";
	}
}

static void
mac_compute(const unsigned char *key, const unsigned char *raw, size_t len,
            const char *list_id, unsigned char mac[MAC_LEN])
{
	static const unsigned char label[] = "kairan-token";
	crypto_auth_hmacsha512256_state st;
	unsigned char full[crypto_auth_BYTES], lp[10];
	size_t llen = list_id != NULL ? strlen(list_id) : 0;

	crypto_auth_hmacsha512256_init(&st, key, KEY_LEN);
	crypto_auth_hmacsha512256_update(&st, label, sizeof(label));
	crypto_auth_hmacsha512256_update(&st, raw, len);
	crypto_auth_hmacsha512256_update(&st, lp, varint_put(lp, llen));
	if (llen > 0)
		crypto_auth_hmacsha512256_update(
		    &st, (const unsigned char *)list_id, llen);
	crypto_auth_hmacsha512256_final(&st, full);
	memcpy(mac, full, MAC_LEN);
	sodium_memzero(&st, sizeof(st));
	sodium_memzero(full, sizeof(full));
}

/* Decodes and parses token; *body_len is the length before the MAC. */
static int
parse(const char *token, unsigned char raw[RAW_MAX], size_t *body_len,
      uint32_t *key_id, struct kr_token_claims *c, struct kr_err *err)
{
	size_t tlen, len, i, n;
	uint64_t v[3], kid;
	int k;

	if (token == NULL || token[0] == '\0')
		return kr_err_set(err, KR_ERR_INVALID, "the token is empty");
	tlen = strnlen(token, KR_TOKEN_MAX);
	if (tlen >= KR_TOKEN_MAX)
		return kr_err_set(err, KR_ERR_INVALID, "the token is too long");
	if (sodium_base642bin(raw, RAW_MAX, token, tlen, NULL, &len, NULL,
	                      sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
		return kr_err_set(err, KR_ERR_INVALID,
		                  "the token is not valid base64url");
	if (len < 1 + MAC_LEN)
		return kr_err_set(err, KR_ERR_INVALID,
		                  "the token is too short");
	if (raw[0] != TOKEN_VERSION)
		return kr_err_set(err, KR_ERR_INVALID,
		                  "the token has an unknown version");
	i = 1;
	if ((n = varint_get(raw + i, len - i, &kid)) == 0 || kid == 0 ||
	    kid > UINT32_MAX)
		return kr_err_set(err, KR_ERR_INVALID,
		                  "the token is malformed (key id)");
	i += n;
	if (i >= len || raw[i] < KR_TOKEN_CONFIRM || raw[i] > KR_TOKEN_BOUNCE)
		return kr_err_set(err, KR_ERR_INVALID,
		                  "the token has an unknown purpose");
	c->purpose = (enum kr_token_purpose)raw[i++];
	for (k = 0; k < 3; k++) {
		if ((n = varint_get(raw + i, len - i, &v[k])) == 0)
			return kr_err_set(err, KR_ERR_INVALID,
			                  "the token is malformed");
		i += n;
	}
	if (len - i != MAC_LEN)
		return kr_err_set(err, KR_ERR_INVALID,
		                  "the token has the wrong length");
	c->list_id = NULL;
	c->issued_at = unzigzag(v[0]);
	c->subscriber_id = unzigzag(v[1]);
	c->report_id = unzigzag(v[2]);
	*key_id = (uint32_t)kid;
	*body_len = i;
	return 0;
}

void
kr_token_sign(const struct kr_keyring *ring, const struct kr_token_claims *c,
              char out[KR_TOKEN_MAX])
{
	unsigned char raw[RAW_MAX];
	size_t i = 0, k;

	k = ring->n - 1; /* the newest key signs */
	raw[i++] = TOKEN_VERSION;
	i += varint_put(raw + i, ring->ids[k]);
	raw[i++] = (unsigned char)c->purpose;
	i += varint_put(raw + i, zigzag(c->issued_at));
	i += varint_put(raw + i, zigzag(c->subscriber_id));
	i += varint_put(raw + i, zigzag(c->report_id));
	mac_compute(ring->keys + k * KEY_LEN, raw, i, c->list_id, raw + i);
	sodium_bin2base64(out, KR_TOKEN_MAX, raw, i + MAC_LEN,
	                  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

int
kr_token_peek(const char *token, struct kr_token_claims *out,
              struct kr_err *err)
{
	unsigned char raw[RAW_MAX];
	struct kr_token_claims c;
	size_t body = 0;
	uint32_t kid = 0;

	if (parse(token, raw, &body, &kid, &c, err) < 0)
		return -1;
	*out = c;
	return 0;
}

int
kr_token_verify(const struct kr_keyring *ring, const char *token,
                enum kr_token_purpose purpose, const char *list_id, int64_t now,
                int64_t max_age, struct kr_token_claims *out,
                struct kr_err *err)
{
	unsigned char raw[RAW_MAX], mac[MAC_LEN];
	struct kr_token_claims c = {0};
	size_t body = 0, k;
	uint32_t kid = 0;

	if (parse(token, raw, &body, &kid, &c, err) < 0)
		return -1;
	for (k = 0; k < ring->n; k++)
		if (ring->ids[k] == kid)
			break;
	if (k == ring->n)
		return kr_err_set(
		    err, KR_ERR_INVALID,
		    "the token was signed with a key that is no longer in "
		    "the key file");
	mac_compute(ring->keys + k * KEY_LEN, raw, body, list_id, mac);
	if (sodium_memcmp(mac, raw + body, MAC_LEN) != 0)
		return kr_err_set(
		    err, KR_ERR_INVALID,
		    "the token does not match (altered, or for another "
		    "list)");
	if (c.purpose != purpose)
		return kr_err_set(
		    err, KR_ERR_INVALID, "the token is for %s, not for %s",
		    purpose_name(c.purpose), purpose_name(purpose));
	if (c.issued_at > now && c.issued_at - now > SKEW)
		return kr_err_set(err, KR_ERR_INVALID,
		                  "the token was issued in the future");
	if (max_age > 0 && now - c.issued_at > max_age)
		return kr_err_set(err, KR_ERR_INVALID, "the token has expired");
	c.list_id = list_id;
	*out = c;
	return 0;
}

/* ---- the key ring ---- */

static struct kr_keyring *
ring_new(size_t n)
{
	struct kr_keyring *r = kr_xcalloc(1, sizeof(*r));

	r->cap = n ? n : 1;
	r->ids = kr_xcalloc(n ? n : 1, sizeof(*r->ids));
	r->created = kr_xcalloc(n ? n : 1, sizeof(*r->created));
	r->keys = sodium_malloc((n ? n : 1) * KEY_LEN);
	if (r->keys == NULL) {
		fprintf(stderr, "<2>kairan: out of locked memory for keys\n");
		abort();
	}
	return r;
}

void
kr_token_keyring_free(struct kr_keyring **ring)
{
	struct kr_keyring *r;

	if (ring == NULL || (r = *ring) == NULL)
		return;
	sodium_mprotect_readwrite(r->keys);
	sodium_memzero(r->keys, r->cap * KEY_LEN);
	sodium_free(r->keys);
	free(r->ids);
	free(r->created);
	free(r);
	*ring = NULL;
}

size_t
kr_token_keyring_count(const struct kr_keyring *ring)
{
	return ring != NULL ? ring->n : 0;
}

int
kr_token_keyring_key(const struct kr_keyring *ring, size_t i, uint32_t *id_out,
                     int64_t *created_out)
{
	if (ring == NULL || i >= ring->n)
		return -1;
	if (id_out != NULL)
		*id_out = ring->ids[i];
	if (created_out != NULL)
		*created_out = ring->created[i];
	return 0;
}

static int
crypto_ready(struct kr_err *err)
{
	if (sodium_init() < 0)
		return kr_err_set(err, KR_ERR_IO, "libsodium failed to start");
	return 0;
}

/* Reads the whole key file into sodium_malloc'd memory (it holds keys).
 * Returns 0, 1 when missing (ENOENT), -1 on error. */
static int
file_read(const char *path, char **data_out, size_t *len_out,
          struct stat *st_out, struct kr_err *err)
{
	return kr_secret_read(path, "key file", FILE_MAX,
	                      KR_SECRET_NOFOLLOW | KR_SECRET_MISSING_OK,
	                      data_out, len_out, st_out, err);
}

static bool
parse_num(const char *s, size_t n, bool sign, long long lo,
          unsigned long long hi, unsigned long long *out)
{
	unsigned long long v = 0;
	size_t i = 0;
	bool neg = false;

	if (sign && n > 0 && s[0] == '-')
		neg = true, i = 1;
	if (i == n || n - i > 20)
		return false;
	for (; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		if (v > (ULLONG_MAX - 9) / 10)
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (neg) {
		if (v > (unsigned long long)LLONG_MAX)
			return false;
		if (-(long long)v < lo)
			return false;
		*out = (unsigned long long)-(long long)v;
		return true;
	}
	if (v > hi)
		return false;
	*out = v;
	return true;
}

/* Parses the key file text into a new ring. */
static int
ring_parse(const char *path, const char *data, size_t len,
           struct kr_keyring **ring_out, struct kr_err *err)
{
	struct kr_keyring *r = NULL;
	const char *p = data, *end = data + len, *nl, *f[3], *q;
	size_t lines = 0, n = 0, flen[3], klen, j, lineno = 0;
	unsigned long long id, created;
	int nf, rc = -1;

	for (q = data; q < end; q++)
		if (*q == '\n')
			lines++;
	r = ring_new(lines + 1);
	for (; p < end; p = nl + 1) {
		if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL)
			nl = end;
		lineno++;
		/* Split into fields on blanks. */
		nf = 0;
		for (q = p; q < nl;) {
			while (q < nl &&
			       (*q == ' ' || *q == '\t' || *q == '\r'))
				q++;
			if (q == nl)
				break;
			if (nf == 0 && *q == '#')
				break;
			if (nf == 3) {
				nf = 4;
				break;
			}
			f[nf] = q;
			while (q < nl && *q != ' ' && *q != '\t' && *q != '\r')
				q++;
			flen[nf] = (size_t)(q - f[nf]);
			nf++;
		}
		if (nf == 0)
			continue;
		if (nf != 3) {
			kr_err_set(err, KR_ERR_INVALID,
			           "key file %s:%zu: expected 'ID CREATED KEY'",
			           path, lineno);
			goto out;
		}
		if (!parse_num(f[0], flen[0], false, 1, UINT32_MAX, &id) ||
		    id == 0) {
			kr_err_set(
			    err, KR_ERR_INVALID,
			    "key file %s:%zu: the key id must be a number "
			    "from 1 to 4294967295",
			    path, lineno);
			goto out;
		}
		if (!parse_num(f[1], flen[1], true, INT64_MIN, INT64_MAX,
		               &created)) {
			kr_err_set(
			    err, KR_ERR_INVALID,
			    "key file %s:%zu: the creation time must be Unix "
			    "seconds",
			    path, lineno);
			goto out;
		}
		for (j = 0; j < n; j++)
			if (r->ids[j] == id)
				break;
		if (j < n) {
			kr_err_set(err, KR_ERR_INVALID,
			           "key file %s:%zu: key id %llu appears twice",
			           path, lineno, id);
			goto out;
		}
		if (n >= KEYS_MAX) {
			kr_err_set(err, KR_ERR_INVALID,
			           "key file %s: more than %d keys", path,
			           KEYS_MAX);
			goto out;
		}
		if (sodium_base642bin(r->keys + n * KEY_LEN, KEY_LEN, f[2],
		                      flen[2], NULL, &klen, NULL,
		                      sodium_base64_VARIANT_ORIGINAL) != 0 ||
		    klen != KEY_LEN) {
			kr_err_set(
			    err, KR_ERR_INVALID,
			    "key file %s:%zu: the key must be %d bytes in "
			    "base64",
			    path, lineno, KEY_LEN);
			goto out;
		}
		r->ids[n] = (uint32_t)id;
		r->created[n] = (int64_t)created;
		n++;
		if (nl == end)
			break;
	}
	if (n == 0) {
		kr_err_set(err, KR_ERR_INVALID, "key file %s holds no key",
		           path);
		goto out;
	}
	r->n = n;
	sodium_mprotect_readonly(r->keys);
	*ring_out = r;
	r = NULL;
	rc = 0;
out:
	kr_token_keyring_free(&r);
	return rc;
}

/* Returns the directory part of path (the caller frees). */
static char *
dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (slash == NULL)
		return kr_xstrdup(".");
	if (slash == path)
		return kr_xstrdup("/");
	return kr_xstrndup(path, (size_t)(slash - path));
}

static int
fsync_dir(const char *path, struct kr_err *err)
{
	char *dir = dir_of(path);
	int fd, rc = -1;

	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0) {
		kr_err_set(err, KR_ERR_IO, "%s: %s", dir, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	free(dir);
	return rc;
}

/* Writes ring (plus extra_key, when not NULL) to fd as key file text. */
static int
ring_write(int fd, const char *path, const struct kr_keyring *r,
           uint32_t extra_id, int64_t extra_created,
           const unsigned char *extra_key, struct kr_err *err)
{
	char *text = NULL, b64[sodium_base64_ENCODED_LEN(
	                       KEY_LEN, sodium_base64_VARIANT_ORIGINAL)];
	size_t n = r != NULL ? r->n : 0, cap = (n + 1) * LINE_MAX_LEN, len = 0;
	size_t k, off;
	ssize_t w;
	int rc = -1;

	if ((text = sodium_malloc(cap)) == NULL) {
		kr_err_set(err, KR_ERR_IO, "out of locked memory");
		goto out;
	}
	for (k = 0; k <= n; k++) {
		const unsigned char *key;
		uint32_t id;
		int64_t created;

		if (k < n) {
			key = r->keys + k * KEY_LEN;
			id = r->ids[k];
			created = r->created[k];
		} else if (extra_key != NULL) {
			key = extra_key;
			id = extra_id;
			created = extra_created;
		} else {
			break;
		}
		sodium_bin2base64(b64, sizeof(b64), key, KEY_LEN,
		                  sodium_base64_VARIANT_ORIGINAL);
		len += (size_t)snprintf(text + len, cap - len,
		                        "%" PRIu32 " %" PRId64 " %s\n", id,
		                        created, b64);
	}
	for (off = 0; off < len; off += (size_t)w) {
		w = write(fd, text + off, len - off);
		if (w < 0 && errno == EINTR) {
			w = 0;
			continue;
		}
		if (w < 0) {
			kr_err_set(err, KR_ERR_IO, "writing %s: %s", path,
			           strerror(errno));
			goto out;
		}
	}
	if (fsync(fd) < 0) {
		kr_err_set(err, KR_ERR_IO, "writing %s: %s", path,
		           strerror(errno));
		goto out;
	}
	rc = 0;
out:
	sodium_memzero(b64, sizeof(b64));
	if (text != NULL)
		sodium_free(text);
	return rc;
}

/* Creates a key file with one fresh key (id 1). Returns 0, 1 when it
 * appeared meanwhile (EEXIST), -1 on error. */
static int
file_create(const char *path, struct kr_err *err)
{
	unsigned char *key = NULL;
	bool made = false;
	int fd = -1, rc = -1;

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	          0600);
	if (fd < 0) {
		if (errno == EEXIST) {
			rc = 1;
			goto out;
		}
		kr_err_set(err, KR_ERR_IO, "cannot create key file %s: %s",
		           path, strerror(errno));
		goto out;
	}
	made = true;
	if ((key = sodium_malloc(KEY_LEN)) == NULL) {
		kr_err_set(err, KR_ERR_IO, "out of locked memory");
		goto out;
	}
	crypto_auth_keygen(key);
	if (ring_write(fd, path, NULL, 1, (int64_t)time(NULL), key, err) < 0)
		goto out;
	if (close(fd) < 0) {
		fd = -1;
		kr_err_set(err, KR_ERR_IO, "writing %s: %s", path,
		           strerror(errno));
		goto out;
	}
	fd = -1;
	if (fsync_dir(path, err) < 0)
		goto out;
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	if (rc < 0 && made)
		unlink(path); /* never leave a file without a key */
	if (key != NULL)
		sodium_free(key);
	return rc;
}

int
kr_token_keyring_load(const char *path, int create,
                      struct kr_keyring **ring_out, struct kr_err *err)
{
	char *data = NULL;
	size_t len = 0;
	int r = 0, rc = -1, tries;

	*ring_out = NULL;
	if (crypto_ready(err) < 0)
		goto out;
	for (tries = 0; tries < 2; tries++) {
		if ((r = file_read(path, &data, &len, NULL, err)) <= 0)
			break;
		if (!create) {
			kr_err_set(err, KR_ERR_NOTFOUND,
			           "key file %s does not exist", path);
			goto out;
		}
		if (file_create(path, err) < 0)
			goto out;
	}
	if (data == NULL) {
		if (r > 0)
			kr_err_set(err, KR_ERR_IO, "key file %s vanished",
			           path);
		goto out;
	}
	if (ring_parse(path, data, len, ring_out, err) < 0)
		goto out;
	rc = 0;
out:
	if (data != NULL)
		sodium_free(data);
	return rc;
}

/* Rewrites the key file through a 0600 temp file and rename, keeping the
 * owner. Holds an exclusive flock on the directory so two rotations
 * cannot interleave. remove_id (when not 0) drops that key; otherwise a
 * new key is appended with the next id. */
static int
file_rewrite(const char *path, uint32_t remove_id, uint32_t *new_id_out,
             struct kr_err *err)
{
	struct kr_keyring *ring = NULL;
	struct stat st;
	unsigned char *key = NULL;
	char *tmp = NULL, *dir = NULL, *data = NULL;
	size_t len = 0, k, j;
	uint32_t new_id = 0;
	int dfd = -1, fd = -1, r, rc = -1;

	if (crypto_ready(err) < 0)
		goto out;
	dir = dir_of(path);
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
	    flock(dfd, LOCK_EX) < 0) {
		kr_err_set(err, KR_ERR_IO, "%s: %s", dir, strerror(errno));
		goto out;
	}
	if ((r = file_read(path, &data, &len, &st, err)) < 0)
		goto out;
	if (r > 0) {
		if (remove_id != 0) {
			kr_err_set(err, KR_ERR_NOTFOUND,
			           "key file %s does not exist", path);
			goto out;
		}
		/* No file yet: make the first key, as kairand would. */
		if ((r = file_create(path, err)) < 0)
			goto out;
		if (r == 0) {
			if (new_id_out != NULL)
				*new_id_out = 1;
			rc = 0;
			goto out;
		}
		if (file_read(path, &data, &len, &st, err) != 0) {
			kr_err_set(err, KR_ERR_IO, "key file %s vanished",
			           path);
			goto out;
		}
	}
	if (ring_parse(path, data, len, &ring, err) < 0)
		goto out;
	sodium_mprotect_readwrite(ring->keys);
	if (remove_id != 0) {
		for (k = 0; k < ring->n && ring->ids[k] != remove_id; k++)
			;
		if (k == ring->n) {
			kr_err_set(err, KR_ERR_NOTFOUND,
			           "key %" PRIu32 " is not in %s", remove_id,
			           path);
			goto out;
		}
		if (k == ring->n - 1) {
			kr_err_set(err, KR_ERR_INVALID,
			           "key %" PRIu32
			           " is the one that signs; rotate "
			           "first, then retire it",
			           remove_id);
			goto out;
		}
		for (j = k; j + 1 < ring->n; j++) {
			ring->ids[j] = ring->ids[j + 1];
			ring->created[j] = ring->created[j + 1];
			memcpy(ring->keys + j * KEY_LEN,
			       ring->keys + (j + 1) * KEY_LEN, KEY_LEN);
		}
		ring->n--;
		sodium_memzero(ring->keys + ring->n * KEY_LEN, KEY_LEN);
	} else {
		for (k = 0; k < ring->n; k++)
			if (ring->ids[k] > new_id)
				new_id = ring->ids[k];
		if (new_id == UINT32_MAX) {
			kr_err_set(err, KR_ERR_INVALID,
			           "key file %s: no key id left", path);
			goto out;
		}
		new_id++;
		if ((key = sodium_malloc(KEY_LEN)) == NULL) {
			kr_err_set(err, KR_ERR_IO, "out of locked memory");
			goto out;
		}
		crypto_auth_keygen(key);
	}
	tmp = kr_xasprintf("%s.tmp.%08" PRIx32, path, randombytes_random());
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	          0600);
	if (fd < 0) {
		kr_err_set(err, KR_ERR_IO, "cannot create %s: %s", tmp,
		           strerror(errno));
		goto out;
	}
	/* Keep the owner, so a rotation run as root leaves a file the
	 * daemon's user can still read. */
	if ((st.st_uid != geteuid() || st.st_gid != getegid()) &&
	    fchown(fd, st.st_uid, st.st_gid) < 0) {
		kr_err_set(err, KR_ERR_IO, "cannot give %s the owner of %s: %s",
		           tmp, path, strerror(errno));
		goto out;
	}
	if (ring_write(fd, tmp, ring, new_id, (int64_t)time(NULL), key, err) <
	    0)
		goto out;
	r = close(fd);
	fd = -1;
	if (r < 0) {
		kr_err_set(err, KR_ERR_IO, "writing %s: %s", tmp,
		           strerror(errno));
		goto out;
	}
	if (rename(tmp, path) < 0) {
		kr_err_set(err, KR_ERR_IO, "renaming %s to %s: %s", tmp, path,
		           strerror(errno));
		goto out;
	}
	free(tmp);
	tmp = NULL;
	if (fsync(dfd) < 0) {
		kr_err_set(err, KR_ERR_IO, "%s: %s", dir, strerror(errno));
		goto out;
	}
	if (new_id_out != NULL)
		*new_id_out = new_id;
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	if (tmp != NULL) {
		unlink(tmp);
		free(tmp);
	}
	if (dfd >= 0)
		close(dfd); /* drops the flock */
	if (key != NULL)
		sodium_free(key);
	if (data != NULL)
		sodium_free(data);
	kr_token_keyring_free(&ring);
	free(dir);
	return rc;
}

int
kr_token_rotate(const char *path, uint32_t *new_id_out, struct kr_err *err)
{
	return file_rewrite(path, 0, new_id_out, err);
}

int
kr_token_retire(const char *path, uint32_t id, struct kr_err *err)
{
	if (id == 0)
		return kr_err_set(err, KR_ERR_INVALID, "key ids start at 1");
	return file_rewrite(path, id, NULL, err);
}

int
kr_token_keyring_fingerprint(const struct kr_keyring *ring, size_t i,
                             char out[KR_TOKEN_FP_LEN])
{
	static const char domain[] = "kairan token key fingerprint v1";
	crypto_generichash_state st;
	unsigned char h[16];

	if (ring == NULL || i >= ring->n)
		return -1;
	crypto_generichash_init(&st, NULL, 0, sizeof(h));
	crypto_generichash_update(&st, (const unsigned char *)domain,
	                          sizeof(domain) - 1);
	crypto_generichash_update(&st, ring->keys + i * KEY_LEN, KEY_LEN);
	crypto_generichash_final(&st, h, sizeof(h));
	sodium_bin2hex(out, KR_TOKEN_FP_LEN, h, sizeof(h));
	sodium_memzero(&st, sizeof(st));
	return 0;
}

int
kr_token_keyring_check(const struct kr_keyring *ring, const char *path,
                       struct kr_store *store, int64_t now,
                       struct kr_err *err)
{
	char fp[KR_TOKEN_FP_LEN], known[KR_TOKEN_FP_LEN + 8];
	size_t i;
	uint32_t id;
	int r;

	for (i = 0; i < kr_token_keyring_count(ring); i++) {
		if (kr_token_keyring_key(ring, i, &id, NULL) < 0 ||
		    kr_token_keyring_fingerprint(ring, i, fp) < 0)
			return -1;
		r = kr_store_key_check(store, id, fp, now, known,
		                       sizeof(known), err);
		if (r < 0)
			return -1;
		if (r == 1) {
			kr_err_set(err, KR_ERR_INVALID,
			           "key file %s: key %u is not the key the "
			           "database knows under that id (fingerprint "
			           "%s, the database has %s): every link "
			           "signed with it would fail; every kairan "
			           "host of one database needs the same key "
			           "file",
			           path, (unsigned)id, fp, known);
			return -1;
		}
	}
	return 0;
}

int
kr_token_keyring_open(const char *path, struct kr_store *store,
                      struct kr_keyring **ring_out, struct kr_err *err)
{
	int64_t issued = 0;

	*ring_out = NULL;
	if (kr_token_keyring_load(path, 0, ring_out, err) < 0) {
		if (err->code != KR_ERR_NOTFOUND)
			return -1;
		if (kr_store_tokens_issued(store, &issued, err) < 0)
			return -1;
		if (issued > 0) {
			kr_err_set(err, KR_ERR_NOTFOUND,
			           "key file %s is missing, and the database "
			           "already has subscribers whose links (confirm, "
			           "unsubscribe, List-Unsubscribe in every mail "
			           "sent) were signed with it: restore it from a "
			           "backup; to give those links up for good, "
			           "`kairanctl keys rotate --replace-lost` makes "
			           "a new key",
			           path);
			return -1;
		}
		memset(err, 0, sizeof(*err));
		if (kr_token_keyring_load(path, 1, ring_out, err) < 0)
			return -1;
	}
	if (kr_token_keyring_check(*ring_out, path, store, (int64_t)time(NULL), err) < 0) {
		kr_token_keyring_free(ring_out);
		return -1;
	}
	return 0;
}

bool
kr_token_fits(const struct kr_token_claims *c, int64_t created_at,
              int64_t consent_at)
{
	if (c->issued_at < created_at)
		return false;
	return c->purpose != KR_TOKEN_CONFIRM || c->issued_at >= consent_at;
}
