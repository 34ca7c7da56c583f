/* test_token.c — tokens and the key file: round trip, an independent MAC
 * check, every byte tampered, truncation, purpose/list/age/future checks,
 * rotation and retirement, key file modes and parse errors. Real files in a
 * fresh temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "err.h"
#include "token.h"

#define NOW ((int64_t)1764000000) /* 2025-11-24 */

struct fx {
	char dir[64];
	char path[128];
};

static int
setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	snprintf(fx->dir, sizeof(fx->dir), "/tmp/kr-token-XXXXXX");
	if (mkdtemp(fx->dir) == NULL)
		return -1;
	snprintf(fx->path, sizeof(fx->path), "%s/token.key", fx->dir);
	*state = fx;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *fx = *state;
	char cmd[160];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx->dir);
	if (system(cmd) != 0)
		return -1;
	free(fx);
	return 0;
}

static void
write_file(const char *path, const char *text, mode_t mode)
{
	FILE *f;

	unlink(path);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	assert_int_equal(chmod(path, mode), 0);
}

static char *
read_file(const char *path)
{
	static char buf[65536];
	FILE *f = fopen(path, "r");
	size_t n;

	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static size_t
count_lines(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		if (*s == '\n')
			n++;
	return n;
}

static struct kr_keyring *
load(const char *path, int create)
{
	struct kr_keyring *ring = NULL;
	struct kr_err err = {0};

	if (kr_token_keyring_load(path, create, &ring, &err) != 0)
		fail_msg("load %s: %s", path, err.msg);
	return ring;
}

static const struct kr_token_claims claims = {
    .purpose = KR_TOKEN_UNSUBSCRIBE,
    .list_id = "sips-report",
    .subscriber_id = 1337,
    .report_id = 42,
    .issued_at = NOW,
};

static size_t
decode(const char *tok, unsigned char *raw, size_t cap)
{
	size_t len = 0;

	assert_int_equal(
	    sodium_base642bin(raw, cap, tok, strlen(tok), NULL, &len, NULL,
	                      sodium_base64_VARIANT_URLSAFE_NO_PADDING),
	    0);
	return len;
}

static void
encode(const unsigned char *raw, size_t len, char *tok)
{
	sodium_bin2base64(tok, KR_TOKEN_MAX, raw, len,
	                  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

static int
verify(const struct kr_keyring *ring, const char *tok, enum kr_token_purpose p,
       const char *list, int64_t now, int64_t max_age,
       struct kr_token_claims *out, struct kr_err *err)
{
	kr_err_clear(err);
	return kr_token_verify(ring, tok, p, list, now, max_age, out, err);
}

static void
test_token_keyfile_created_0600(void **state)
{
	struct fx *fx = *state;
	struct kr_keyring *ring = NULL;
	struct kr_err err = {0};
	struct stat st;
	uint32_t id = 0;
	int64_t created = 0;
	char *text;
	unsigned long long fid, fcreated;
	char key[64];
	mode_t old = umask(0); /* the mode must not depend on the umask */

	/* Missing, no create: refused. */
	assert_int_equal(kr_token_keyring_load(fx->path, 0, &ring, &err), -1);
	assert_int_equal(err.code, KR_ERR_NOTFOUND);
	assert_null(ring);

	ring = load(fx->path, 1);
	umask(old);
	assert_int_equal(stat(fx->path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(kr_token_keyring_count(ring), 1);
	assert_int_equal(kr_token_keyring_key(ring, 0, &id, &created), 0);
	assert_int_equal(id, 1);
	assert_true(created > time(NULL) - 60 && created <= time(NULL));
	assert_int_equal(kr_token_keyring_key(ring, 1, &id, &created), -1);
	text = read_file(fx->path);
	assert_int_equal(count_lines(text), 1);
	assert_int_equal(sscanf(text, "%llu %llu %63s", &fid, &fcreated, key),
	                 3);
	assert_int_equal(fid, 1);
	assert_int_equal((int64_t)fcreated, created);
	assert_int_equal(strlen(key), 44); /* 32 bytes in base64 */
	kr_token_keyring_free(&ring);
	assert_null(ring);
	kr_token_keyring_free(&ring); /* NULL is fine */

	/* Loading again with create does not replace the key. */
	ring = load(fx->path, 1);
	assert_string_equal(read_file(fx->path), text);
	kr_token_keyring_free(&ring);
}

static void
test_token_keyfile_modes(void **state)
{
	struct fx *fx = *state;
	static const mode_t bad[] = {0644, 0640, 0604, 0660,
	                             0606, 0610, 0601, 0666};
	struct kr_keyring *ring = NULL;
	struct kr_err err = {0};
	size_t i;

	ring = load(fx->path, 1);
	kr_token_keyring_free(&ring);
	for (i = 0; i < KR_NELEM(bad); i++) {
		assert_int_equal(chmod(fx->path, bad[i]), 0);
		kr_err_clear(&err);
		assert_int_equal(
		    kr_token_keyring_load(fx->path, 1, &ring, &err), -1);
		assert_null(ring);
		assert_int_equal(err.code, KR_ERR_INVALID);
		assert_non_null(strstr(err.msg, "chmod 600"));
		assert_non_null(strstr(err.msg, fx->path));
	}
	/* 0400 is fine (owner only). */
	assert_int_equal(chmod(fx->path, 0400), 0);
	ring = load(fx->path, 0);
	kr_token_keyring_free(&ring);
	/* A symbolic link is refused; so is a directory. */
	{
		char link[160];

		snprintf(link, sizeof(link), "%s/link.key", fx->dir);
		assert_int_equal(symlink(fx->path, link), 0);
		assert_int_equal(kr_token_keyring_load(link, 0, &ring, &err),
		                 -1);
		assert_non_null(strstr(err.msg, "symbolic link"));
		assert_int_equal(kr_token_keyring_load(fx->dir, 0, &ring, &err),
		                 -1);
	}
}

static void
test_token_keyfile_parse(void **state)
{
	struct fx *fx = *state;
	static const char key[] =
	    "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
	static const struct {
		const char *text;
		const char *why;
	} bad[] = {
	    {"", "holds no key"},
	    {"# only a comment\n\n", "holds no key"},
	    {"1 1700000000\n", ":1: expected"},
	    {"1 1700000000 MDEy extra\n", ":1: expected"},
	    {"x 1700000000 MDEy\n", ":1: the key id"},
	    {"0 1700000000 MDEy\n", ":1: the key id"},
	    {"4294967296 1700000000 MDEy\n", ":1: the key id"},
	    {"1 soon MDEy\n", ":1: the creation time"},
	    {"1 1700000000 MDEyMzQ1Njc4OWFiY2RlZg==\n", ":1: the key must"},
	    {"1 1700000000 %%%%\n", ":1: the key must"},
	};
	struct kr_keyring *ring = NULL;
	struct kr_err err = {0};
	char text[512];
	uint32_t id;
	size_t i;

	for (i = 0; i < KR_NELEM(bad); i++) {
		write_file(fx->path, bad[i].text, 0600);
		kr_err_clear(&err);
		assert_int_equal(
		    kr_token_keyring_load(fx->path, 1, &ring, &err), -1);
		if (strstr(err.msg, bad[i].why) == NULL)
			fail_msg("case %zu: '%s' lacks '%s'", i, err.msg,
			         bad[i].why);
		/* The key text never shows in a message. */
		assert_null(strstr(err.msg, "MDEy"));
	}
	snprintf(text, sizeof(text), "1 1700000000 %s\n1 1700000001 %s\n", key,
	         key);
	write_file(fx->path, text, 0600);
	assert_int_equal(kr_token_keyring_load(fx->path, 0, &ring, &err), -1);
	assert_non_null(strstr(err.msg, ":2: key id 1 appears twice"));

	/* Comments, blank lines, CRLF, no final newline: fine. */
	snprintf(text, sizeof(text),
	         "# kairan token keys\n\n7 1700000000 %s\r\n  9\t1700000100 %s",
	         key, key);
	write_file(fx->path, text, 0600);
	ring = load(fx->path, 0);
	assert_int_equal(kr_token_keyring_count(ring), 2);
	assert_int_equal(kr_token_keyring_key(ring, 1, &id, NULL), 0);
	assert_int_equal(id, 9);
	kr_token_keyring_free(&ring);
}

static void
test_token_round_trip(void **state)
{
	struct fx *fx = *state;
	struct kr_keyring *ring = load(fx->path, 1);
	struct kr_token_claims out, c = claims;
	struct kr_err err = {0};
	char tok[KR_TOKEN_MAX], verp[128];
	size_t i;

	kr_token_sign(ring, &c, tok);
	for (i = 0; tok[i]; i++)
		assert_non_null(strchr(
		    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
		    "0123456789-_",
		    tok[i]));
	assert_int_equal(verify(ring, tok, KR_TOKEN_UNSUBSCRIBE, "sips-report",
	                        NOW + 10, 0, &out, &err),
	                 0);
	assert_int_equal(out.purpose, KR_TOKEN_UNSUBSCRIBE);
	assert_string_equal(out.list_id, "sips-report");
	assert_int_equal(out.subscriber_id, 1337);
	assert_int_equal(out.report_id, 42);
	assert_int_equal(out.issued_at, NOW);

	/* Deterministic: the same claims give the same token. */
	{
		char again[KR_TOKEN_MAX];

		kr_token_sign(ring, &c, again);
		assert_string_equal(again, tok);
	}

	/* A realistic bounce token fits a VERP local part (64 octets). */
	c.purpose = KR_TOKEN_BOUNCE;
	c.subscriber_id = 12345678;
	c.report_id = 99999;
	c.issued_at = time(NULL);
	kr_token_sign(ring, &c, tok);
	snprintf(verp, sizeof(verp), "bounces+%s", tok);
	assert_true(strlen(verp) <= 64);

	/* Extremes survive (zig-zag varints) and stay under the maximum. */
	c.subscriber_id = INT64_MAX;
	c.report_id = INT64_MIN;
	c.issued_at = INT64_MIN;
	c.list_id = NULL;
	kr_token_sign(ring, &c, tok);
	assert_true(strlen(tok) < KR_TOKEN_MAX);
	assert_int_equal(
	    verify(ring, tok, KR_TOKEN_BOUNCE, NULL, NOW, 0, &out, &err), 0);
	assert_int_equal(out.subscriber_id, INT64_MAX);
	assert_int_equal(out.report_id, INT64_MIN);
	assert_int_equal(out.issued_at, INT64_MIN);
	/* NULL and "" are the same list. */
	assert_int_equal(
	    verify(ring, tok, KR_TOKEN_BOUNCE, "", NOW, 0, &out, &err), 0);
	kr_token_keyring_free(&ring);
}

/* The MAC is crypto_auth over the documented message, with the key from
 * the file: recomputed here from the file and the token alone. */
static void
test_token_mac_is_crypto_auth(void **state)
{
	struct fx *fx = *state;
	struct kr_keyring *ring = load(fx->path, 1);
	unsigned char raw[128], key[crypto_auth_KEYBYTES], msg[256];
	unsigned char mac[crypto_auth_BYTES];
	char tok[KR_TOKEN_MAX], b64[64];
	unsigned long long id, created;
	size_t len, klen, m = 0, body;

	kr_token_sign(ring, &claims, tok);
	len = decode(tok, raw, sizeof(raw));
	body = len - 24;
	assert_int_equal(
	    sscanf(read_file(fx->path), "%llu %llu %63s", &id, &created, b64),
	    3);
	assert_int_equal(sodium_base642bin(key, sizeof(key), b64, strlen(b64),
	                                   NULL, &klen, NULL,
	                                   sodium_base64_VARIANT_ORIGINAL),
	                 0);
	memcpy(msg, "kairan-token", 13); /* with its NUL */
	m = 13;
	memcpy(msg + m, raw, body);
	m += body;
	msg[m++] = (unsigned char)strlen("sips-report");
	memcpy(msg + m, "sips-report", strlen("sips-report"));
	m += strlen("sips-report");
	crypto_auth(mac, msg, m, key);
	assert_memory_equal(mac, raw + body, 24);
	/* The layout: version 1, key id 1, purpose. */
	assert_int_equal(raw[0], 1);
	assert_int_equal(raw[1], 1);
	assert_int_equal(raw[2], KR_TOKEN_UNSUBSCRIBE);
	kr_token_keyring_free(&ring);
}

static void
test_token_tampered(void **state)
{
	struct fx *fx = *state;
	struct kr_keyring *ring = load(fx->path, 1);
	static const unsigned char flips[] = {0x01, 0x02, 0x10, 0x80, 0xff};
	struct kr_token_claims out;
	struct kr_err err;
	unsigned char raw[128], t[128];
	char tok[KR_TOKEN_MAX], bad[KR_TOKEN_MAX + 8];
	size_t len, i, f, n = 0;

	kr_token_sign(ring, &claims, tok);
	len = decode(tok, raw, sizeof(raw));
	for (i = 0; i < len; i++) {
		for (f = 0; f < sizeof(flips); f++) {
			memcpy(t, raw, len);
			t[i] ^= flips[f];
			encode(t, len, bad);
			if (verify(ring, bad, KR_TOKEN_UNSUBSCRIBE,
			           "sips-report", NOW, 0, &out, &err) != -1)
				fail_msg("byte %zu ^ %02x accepted", i,
				         flips[f]);
			assert_int_equal(err.code, KR_ERR_INVALID);
			assert_true(err.msg[0] != '\0');
			n++;
		}
	}
	assert_int_equal(n, len * sizeof(flips));
	/* Truncated, at every length, as text and as bytes. */
	for (i = 0; i < strlen(tok); i++) {
		memcpy(bad, tok, i);
		bad[i] = '\0';
		assert_int_equal(verify(ring, bad, KR_TOKEN_UNSUBSCRIBE,
		                        "sips-report", NOW, 0, &out, &err),
		                 -1);
	}
	for (i = 1; i < len; i++) {
		encode(raw, i, bad);
		assert_int_equal(verify(ring, bad, KR_TOKEN_UNSUBSCRIBE,
		                        "sips-report", NOW, 0, &out, &err),
		                 -1);
	}
	/* Extended by one byte. */
	memcpy(t, raw, len);
	t[len] = 0;
	encode(t, len + 1, bad);
	assert_int_equal(verify(ring, bad, KR_TOKEN_UNSUBSCRIBE, "sips-report",
	                        NOW, 0, &out, &err),
	                 -1);
	assert_non_null(strstr(err.msg, "length"));
	/* Not base64url; padding; too long; NULL. */
	snprintf(bad, sizeof(bad), "%s=", tok);
	assert_int_equal(verify(ring, bad, KR_TOKEN_UNSUBSCRIBE, "sips-report",
	                        NOW, 0, &out, &err),
	                 -1);
	assert_non_null(strstr(err.msg, "base64url"));
	memcpy(bad, tok, strlen(tok) + 1);
	bad[3] = '+';
	assert_int_equal(verify(ring, bad, KR_TOKEN_UNSUBSCRIBE, "sips-report",
	                        NOW, 0, &out, &err),
	                 -1);
	{
		char big[512];

		memset(big, 'A', sizeof(big) - 1);
		big[sizeof(big) - 1] = '\0';
		assert_int_equal(verify(ring, big, KR_TOKEN_UNSUBSCRIBE,
		                        "sips-report", NOW, 0, &out, &err),
		                 -1);
		assert_non_null(strstr(err.msg, "too long"));
	}
	assert_int_equal(verify(ring, NULL, KR_TOKEN_UNSUBSCRIBE, "sips-report",
	                        NOW, 0, &out, &err),
	                 -1);
	/* The original still verifies. */
	assert_int_equal(verify(ring, tok, KR_TOKEN_UNSUBSCRIBE, "sips-report",
	                        NOW, 0, &out, &err),
	                 0);
	kr_token_keyring_free(&ring);
}

static void
test_token_purpose_list_time(void **state)
{
	struct fx *fx = *state;
	struct kr_keyring *ring = load(fx->path, 1);
	struct kr_token_claims out, c = claims;
	struct kr_err err;
	char tok[KR_TOKEN_MAX];

	/* A confirm token cannot unsubscribe, and the reverse. */
	c.purpose = KR_TOKEN_CONFIRM;
	kr_token_sign(ring, &c, tok);
	assert_int_equal(verify(ring, tok, KR_TOKEN_UNSUBSCRIBE, "sips-report",
	                        NOW, 0, &out, &err),
	                 -1);
	assert_non_null(strstr(err.msg, "not for unsubscribing"));
	assert_int_equal(verify(ring, tok, KR_TOKEN_BOUNCE, "sips-report", NOW,
	                        0, &out, &err),
	                 -1);
	assert_int_equal(verify(ring, tok, KR_TOKEN_CONFIRM, "sips-report", NOW,
	                        0, &out, &err),
	                 0);
	c.purpose = KR_TOKEN_UNSUBSCRIBE;
	kr_token_sign(ring, &c, tok);
	assert_int_equal(verify(ring, tok, KR_TOKEN_CONFIRM, "sips-report", NOW,
	                        0, &out, &err),
	                 -1);

	/* Another list. */
	assert_int_equal(verify(ring, tok, KR_TOKEN_UNSUBSCRIBE, "other-list",
	                        NOW, 0, &out, &err),
	                 -1);
	assert_non_null(strstr(err.msg, "does not match"));
	assert_int_equal(verify(ring, tok, KR_TOKEN_UNSUBSCRIBE, "sips-repor",
	                        NOW, 0, &out, &err),
	                 -1);

	/* Age: exactly max_age is fine, one second more is not. */
	assert_int_equal(verify(ring, tok, KR_TOKEN_UNSUBSCRIBE, "sips-report",
	                        NOW + 3600, 3600, &out, &err),
	                 0);
	assert_int_equal(verify(ring, tok, KR_TOKEN_UNSUBSCRIBE, "sips-report",
	                        NOW + 3601, 3600, &out, &err),
	                 -1);
	assert_non_null(strstr(err.msg, "expired"));
	/* max_age 0: no limit. */
	assert_int_equal(verify(ring, tok, KR_TOKEN_UNSUBSCRIBE, "sips-report",
	                        NOW + 10 * 365 * 86400LL, 0, &out, &err),
	                 0);

	/* Future: 5 minutes of skew tolerated, not more. */
	assert_int_equal(verify(ring, tok, KR_TOKEN_UNSUBSCRIBE, "sips-report",
	                        NOW - 300, 3600, &out, &err),
	                 0);
	assert_int_equal(verify(ring, tok, KR_TOKEN_UNSUBSCRIBE, "sips-report",
	                        NOW - 301, 3600, &out, &err),
	                 -1);
	assert_non_null(strstr(err.msg, "future"));
	assert_int_equal(verify(ring, tok, KR_TOKEN_UNSUBSCRIBE, "sips-report",
	                        NOW - 301, 0, &out, &err),
	                 -1);
	kr_token_keyring_free(&ring);
}

static void
test_token_peek(void **state)
{
	struct fx *fx = *state;
	struct kr_keyring *ring = load(fx->path, 1);
	struct kr_token_claims out;
	struct kr_err err = {0};
	char tok[KR_TOKEN_MAX];

	kr_token_sign(ring, &claims, tok);
	memset(&out, 0xaa, sizeof(out));
	assert_int_equal(kr_token_peek(tok, &out, &err), 0);
	assert_null(out.list_id);
	assert_int_equal(out.purpose, KR_TOKEN_UNSUBSCRIBE);
	assert_int_equal(out.subscriber_id, 1337);
	assert_int_equal(out.report_id, 42);
	assert_int_equal(out.issued_at, NOW);
	assert_int_equal(kr_token_peek("", &out, &err), -1);
	assert_int_equal(kr_token_peek("AAAA", &out, &err), -1);
	assert_int_equal(kr_token_peek("!!!!", &out, &err), -1);
	kr_token_keyring_free(&ring);
}

static uint32_t
token_key_id(const char *tok)
{
	unsigned char raw[128];

	decode(tok, raw, sizeof(raw));
	assert_true(raw[1] < 0x80);
	return raw[1];
}

static void
test_token_rotate(void **state)
{
	struct fx *fx = *state;
	struct kr_keyring *ring = load(fx->path, 1), *old;
	struct kr_token_claims out;
	struct kr_err err = {0};
	struct stat st;
	char t1[KR_TOKEN_MAX], t2[KR_TOKEN_MAX], *before;
	uint32_t id = 0;
	int64_t created;

	kr_token_sign(ring, &claims, t1);
	assert_int_equal(token_key_id(t1), 1);
	before = strdup(read_file(fx->path));
	old = ring;
	ring = NULL;

	assert_int_equal(kr_token_rotate(fx->path, &id, &err), 0);
	assert_int_equal(id, 2);
	assert_int_equal(stat(fx->path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	/* The old line is kept as it was; one line is added. */
	assert_int_equal(count_lines(read_file(fx->path)), 2);
	assert_memory_equal(read_file(fx->path), before, strlen(before));
	free(before);

	ring = load(fx->path, 0);
	assert_int_equal(kr_token_keyring_count(ring), 2);
	assert_int_equal(kr_token_keyring_key(ring, 1, &id, &created), 0);
	assert_int_equal(id, 2);
	/* Old tokens still verify; new ones carry key 2. */
	assert_int_equal(verify(ring, t1, KR_TOKEN_UNSUBSCRIBE, "sips-report",
	                        NOW, 0, &out, &err),
	                 0);
	kr_token_sign(ring, &claims, t2);
	assert_int_equal(token_key_id(t2), 2);
	assert_string_not_equal(t1, t2);
	assert_int_equal(verify(ring, t2, KR_TOKEN_UNSUBSCRIBE, "sips-report",
	                        NOW, 0, &out, &err),
	                 0);
	/* A ring loaded before the rotation does not know key 2. */
	assert_int_equal(verify(old, t2, KR_TOKEN_UNSUBSCRIBE, "sips-report",
	                        NOW, 0, &out, &err),
	                 -1);
	assert_non_null(strstr(err.msg, "key"));
	kr_token_keyring_free(&old);

	/* Retire: the signing key cannot go; key 1 can, and then t1 fails. */
	assert_int_equal(kr_token_retire(fx->path, 2, &err), -1);
	assert_non_null(strstr(err.msg, "signs"));
	assert_int_equal(kr_token_retire(fx->path, 99, &err), -1);
	assert_int_equal(err.code, KR_ERR_NOTFOUND);
	assert_int_equal(kr_token_retire(fx->path, 1, &err), 0);
	kr_token_keyring_free(&ring);
	ring = load(fx->path, 0);
	assert_int_equal(kr_token_keyring_count(ring), 1);
	assert_int_equal(verify(ring, t1, KR_TOKEN_UNSUBSCRIBE, "sips-report",
	                        NOW, 0, &out, &err),
	                 -1);
	assert_int_equal(verify(ring, t2, KR_TOKEN_UNSUBSCRIBE, "sips-report",
	                        NOW, 0, &out, &err),
	                 0);
	/* Ids are never reused: the next is 3. */
	assert_int_equal(kr_token_rotate(fx->path, &id, &err), 0);
	assert_int_equal(id, 3);
	kr_token_keyring_free(&ring);

	/* A world-readable file is not rotated either. */
	assert_int_equal(chmod(fx->path, 0644), 0);
	assert_int_equal(kr_token_rotate(fx->path, &id, &err), -1);
	assert_non_null(strstr(err.msg, "chmod 600"));
	/* No temp file is left behind. */
	{
		char cmd[200];

		snprintf(cmd, sizeof(cmd), "test $(ls -A '%s' | wc -l) -eq 1",
		         fx->dir);
		assert_int_equal(system(cmd), 0);
	}
}

/* Rotation run as root keeps the file's owner, so the daemon's user can
 * still read it. Needs root to hand a file to another user. */
static void
test_token_rotate_keeps_owner(void **state)
{
	struct fx *fx = *state;
	struct kr_keyring *ring = load(fx->path, 1);
	struct kr_err err = {0};
	struct stat st;
	uint32_t id = 0;

	kr_token_keyring_free(&ring);
	if (geteuid() != 0)
		skip();
	assert_int_equal(chown(fx->path, 65534, 65534), 0);
	assert_int_equal(kr_token_rotate(fx->path, &id, &err), 0);
	assert_int_equal(id, 2);
	assert_int_equal(stat(fx->path, &st), 0);
	assert_int_equal(st.st_uid, 65534);
	assert_int_equal(st.st_gid, 65534);
	assert_int_equal(st.st_mode & 07777, 0600);
}

static void
test_token_rotate_missing_creates(void **state)
{
	struct fx *fx = *state;
	struct kr_err err = {0};
	struct stat st;
	uint32_t id = 0;

	assert_int_equal(kr_token_rotate(fx->path, &id, &err), 0);
	assert_int_equal(id, 1);
	assert_int_equal(stat(fx->path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(kr_token_retire(fx->dir, 1, &err), -1);
}

/* Two processes rotating at once: the directory lock serialises them, so
 * no rotation is lost and no id is used twice. */
static void
test_token_rotate_concurrent(void **state)
{
	struct fx *fx = *state;
	struct kr_keyring *ring = load(fx->path, 1);
	pid_t pid[2];
	size_t i, j;
	int k, status;
	uint32_t a, b;

	kr_token_keyring_free(&ring);
	for (k = 0; k < 2; k++) {
		pid[k] = fork();
		assert_true(pid[k] >= 0);
		if (pid[k] == 0) {
			struct kr_err e;
			int n;

			for (n = 0; n < 15; n++)
				if (kr_token_rotate(fx->path, NULL, &e) != 0)
					_exit(1);
			_exit(0);
		}
	}
	for (k = 0; k < 2; k++) {
		assert_int_equal(waitpid(pid[k], &status, 0), pid[k]);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	ring = load(fx->path, 0);
	assert_int_equal(kr_token_keyring_count(ring), 31);
	for (i = 0; i < 31; i++) {
		assert_int_equal(kr_token_keyring_key(ring, i, &a, NULL), 0);
		assert_int_equal(a, i + 1);
		for (j = 0; j < i; j++) {
			assert_int_equal(
			    kr_token_keyring_key(ring, j, &b, NULL), 0);
			assert_true(a != b);
		}
	}
	kr_token_keyring_free(&ring);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_token_keyfile_created_0600,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_token_keyfile_modes, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_token_keyfile_parse, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_token_round_trip, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_token_mac_is_crypto_auth,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_token_tampered, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_token_purpose_list_time, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_token_peek, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_token_rotate, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_token_rotate_missing_creates,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_token_rotate_concurrent, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_token_rotate_keeps_owner,
	                                    setup, teardown),
	};

	return cmocka_run_group_tests_name("token", tests, NULL, NULL);
}
