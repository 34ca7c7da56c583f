/* dkim.c — DKIM-Signature fields for outgoing messages.
 *
 * One pass over the header block records where each field starts and
 * ends (on the stack, no allocation); the body hash and the hash of the
 * signed header fields are computed once per message and shared by the
 * RSA and Ed25519 signatures: each signature copies the header hash state
 * and adds only its own DKIM-Signature field. Canonicalized bytes go
 * through a small chunk on the stack into SHA-256 (OpenSSL's, which uses
 * the CPU's SHA extensions); a body with nothing to change — the usual
 * case for base64 and quoted-printable parts — is hashed in place.
 *
 * RSA signs the SHA-256 digest with PKCS#1 v1.5 (EVP_PKEY_sign with the
 * digest set, which is what EVP_DigestSign does after hashing); Ed25519
 * signs the 32-byte SHA-256 digest itself (RFC 8463 section 3). */
#include "dkim.h"

#include <arpa/nameser.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <resolv.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <sodium.h>

#include "buf.h"
#include "config.h"
#include "dkim_int.h"
#include "err.h"
#include "secret.h"
#include "store.h"
#include "xmem.h"

#define DKIM_MAX_FIELDS 1000   /* header fields in a message we sign */
#define DKIM_MAX_KEYFILE 16384 /* bytes of a key file */
#define DKIM_MAX_SIG 512       /* bytes of an RSA-4096 signature */
#define DKIM_LINE 76           /* fold the DKIM-Signature field here */

struct kr_dkim {
	char *domain;
	char *rsa_sel; /* NULL: no RSA signature */
	char *ed_sel;  /* NULL: no Ed25519 signature */
	EVP_PKEY *rsa;
	unsigned char *ed_sk; /* sodium_malloc'd seed + public key, 64 */
	EVP_MD *sha256;
};

/* The fields we sign, in h= order; over-signed ones are listed once more
 * than they occur, so nobody can add one after us. */
static const struct {
	const char *name;
	size_t len;
	int over;
} signed_fields[] = {
    {"From", 4, 1},
    {"To", 2, 0},
    {"Subject", 7, 1},
    {"Date", 4, 0},
    {"Message-ID", 10, 0},
    {"MIME-Version", 12, 0},
    {"Content-Type", 12, 0},
    {"List-Id", 7, 0},
    {"List-Unsubscribe", 16, 1},
    {"List-Unsubscribe-Post", 21, 1},
};

/* ---- where canonical bytes go: a hash or a buffer ---- */

struct sink {
	EVP_MD_CTX *md;   /* hash into this, or */
	struct kr_buf *b; /* append to this */
	int failed;
	size_t n;
	char chunk[2048];
};

static void
sink_write(struct sink *s, const void *p, size_t n)
{
	if (n == 0 || s->failed)
		return;
	if (s->md != NULL) {
		if (EVP_DigestUpdate(s->md, p, n) != 1)
			s->failed = 1;
	} else if (kr_buf_append(s->b, p, n) < 0) {
		s->failed = 1;
	}
}

static void
sink_flush(struct sink *s)
{
	sink_write(s, s->chunk, s->n);
	s->n = 0;
}

static void
sink_put(struct sink *s, const void *p, size_t n)
{
	if (s->n + n > sizeof(s->chunk))
		sink_flush(s);
	if (n >= sizeof(s->chunk)) {
		sink_write(s, p, n);
		return;
	}
	memcpy(s->chunk + s->n, p, n);
	s->n += n;
}

static inline void
sink_byte(struct sink *s, char c)
{
	if (s->n == sizeof(s->chunk))
		sink_flush(s);
	s->chunk[s->n++] = c;
}

/* ---- canonicalization (RFC 6376 3.4.2, 3.4.4) ---- */

static inline int
is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

/* "Name : value\r\n\t more " -> "name:value more". Line breaks are deleted
 * (unfolding), runs of WSP become one SP, WSP around the value goes. */
static void
canon_header(struct sink *s, const char *f, size_t len)
{
	const char *colon = memchr(f, ':', len);
	size_t name_len, i;
	int sp = 0, started = 0;

	if (colon == NULL)
		colon = f + len;
	name_len = (size_t)(colon - f);
	while (name_len > 0 && is_wsp(f[name_len - 1]))
		name_len--;
	for (i = 0; i < name_len; i++) {
		char c = f[i];

		sink_byte(s, (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c);
	}
	sink_byte(s, ':');
	for (i = (size_t)(colon - f) + 1; i < len; i++) {
		char c = f[i];

		if (is_wsp(c)) {
			sp = 1;
			continue;
		}
		if (c == '\n' || (c == '\r' && i + 1 < len && f[i + 1] == '\n'))
			continue;
		if (sp && started)
			sink_byte(s, ' ');
		sp = 0;
		started = 1;
		sink_byte(s, c);
	}
}

/* Byte by byte: WSP runs become one SP, WSP before a line break goes, line
 * breaks (CRLF, or a bare LF the relay will make CRLF) are held back until
 * more text follows, so empty lines at the end go; a non-empty body ends
 * in exactly one CRLF. */
static void
canon_body_slow(struct sink *s, const char *p, size_t len)
{
	size_t i, crlf = 0;
	int sp = 0, any = 0;

	for (i = 0; i < len; i++) {
		char c = p[i];

		if (is_wsp(c)) {
			sp = 1;
			continue;
		}
		if (c == '\n' ||
		    (c == '\r' && i + 1 < len && p[i + 1] == '\n')) {
			if (c == '\r')
				i++;
			sp = 0;
			crlf++;
			continue;
		}
		for (; crlf > 0; crlf--)
			sink_put(s, "\r\n", 2);
		if (sp)
			sink_byte(s, ' ');
		sp = 0;
		any = 1;
		sink_byte(s, c);
	}
	if (any)
		sink_put(s, "\r\n", 2);
}

/* 16 bytes at a time with GCC/clang vector types: plain C the compiler
 * turns into SSE2/NEON; memmem and a byte loop cost as much as the hash. */
typedef unsigned char kr_v16u __attribute__((vector_size(16)));
typedef signed char kr_v16s __attribute__((vector_size(16)));

/* True when no byte of s needs a change: no TAB, no SP before SP or CR,
 * no LF without its CR. */
static int
body_is_plain(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	kr_v16u tab, sp, cr, lf, c, prev;
	kr_v16s acc;
	uint64_t w[2];
	size_t j;

	if (len == 0)
		return 1;
	if (p[0] == '\t' || p[0] == '\n')
		return 0;
	memset(&tab, '\t', sizeof(tab));
	memset(&sp, ' ', sizeof(sp));
	memset(&cr, '\r', sizeof(cr));
	memset(&lf, '\n', sizeof(lf));
	memset(&acc, 0, sizeof(acc));
	for (j = 1; j + 16 <= len; j += 16) {
		memcpy(&c, p + j, 16);
		memcpy(&prev, p + j - 1, 16);
		acc |= (c == tab) | ((prev == sp) & ((c == sp) | (c == cr))) |
		       ((c == lf) & ~(prev == cr));
	}
	memcpy(w, &acc, sizeof(w));
	if ((w[0] | w[1]) != 0)
		return 0;
	for (; j < len; j++) {
		unsigned char b = p[j], a = p[j - 1];

		if (b == '\t' || (a == ' ' && (b == ' ' || b == '\r')) ||
		    (b == '\n' && a != '\r'))
			return 0;
	}
	return 1;
}

/* When the body needs no change but dropping empty lines at its end, it
 * is hashed in place: every line break a CRLF, no TAB, no two WSP in a
 * row, no WSP before a line break, and a CRLF at the end. Returns the
 * length to hash, or (size_t)-1 when the slow path is needed. */
static size_t
body_plain_len(const char *p, size_t len)
{
	if (len == 0)
		return 0;
	if (len < 2 || p[len - 2] != '\r' || p[len - 1] != '\n' ||
	    !body_is_plain(p, len))
		return (size_t)-1;
	while (len >= 4 && memcmp(p + len - 4, "\r\n\r\n", 4) == 0)
		len -= 2;
	if (len == 2)
		len = 0; /* only empty lines: the empty body */
	return len;
}

static void
canon_body(struct sink *s, const char *p, size_t len)
{
	size_t n = body_plain_len(p, len);

	if (n == (size_t)-1)
		canon_body_slow(s, p, len);
	else
		sink_put(s, p, n);
}

int
kr_dkim_canon_header(const char *field, size_t len, struct kr_buf *out)
{
	struct sink s = {.b = out};

	canon_header(&s, field, len);
	sink_flush(&s);
	return s.failed ? -1 : 0;
}

int
kr_dkim_canon_body(const char *body, size_t len, struct kr_buf *out)
{
	struct sink s = {.b = out};

	canon_body(&s, body, len);
	sink_flush(&s);
	return s.failed ? -1 : 0;
}

int
kr_dkim_canon_body_slow(const char *body, size_t len, struct kr_buf *out)
{
	struct sink s = {.b = out};

	canon_body_slow(&s, body, len);
	sink_flush(&s);
	return s.failed ? -1 : 0;
}

/* ---- the header block ---- */

struct field {
	const char *p;   /* "Name: value" with folds */
	size_t len;      /* without the final line break */
	size_t name_len; /* up to the colon, trailing WSP dropped */
};

/* Records up to DKIM_MAX_FIELDS fields and where the body starts. Lines
 * without a colon (not fields) are skipped. Returns the number of fields,
 * or -1 when there are too many. */
static long
split_header(const char *msg, size_t len, struct field *fields,
             const char **body_out, size_t *body_len_out)
{
	const char *p = msg, *end = msg + len, *eol, *colon;
	long n = 0;

	while (p < end) {
		const char *start = p;
		size_t flen;

		if (*p == '\n' || (*p == '\r' && p + 1 < end && p[1] == '\n')) {
			p += *p == '\r' ? 2 : 1;
			break; /* the empty line: the body follows */
		}
		/* One field: this line and the ones starting with WSP. */
		do {
			eol = memchr(p, '\n', (size_t)(end - p));
			p = eol == NULL ? end : eol + 1;
		} while (p < end && is_wsp(*p));
		flen = (size_t)(p - start);
		if (flen > 0 && start[flen - 1] == '\n')
			flen--;
		if (flen > 0 && start[flen - 1] == '\r')
			flen--;
		colon = memchr(start, ':', flen);
		if (is_wsp(*start) || colon == NULL)
			continue;
		if (n == DKIM_MAX_FIELDS)
			return -1;
		fields[n].p = start;
		fields[n].len = flen;
		fields[n].name_len = (size_t)(colon - start);
		while (fields[n].name_len > 0 &&
		       is_wsp(start[fields[n].name_len - 1]))
			fields[n].name_len--;
		n++;
	}
	*body_out = p;
	*body_len_out = (size_t)(end - p);
	return n;
}

/* ---- base64 and folding into the DKIM-Signature field ---- */

static int
put_b64(struct kr_buf *out, const unsigned char *bin, size_t n, size_t col)
{
	char b64[DKIM_MAX_SIG * 4 / 3 + 8];
	size_t len, i, take;

	sodium_bin2base64(b64, sizeof(b64), bin, n,
	                  sodium_base64_VARIANT_ORIGINAL);
	len = strlen(b64);
	for (i = 0; i < len; i += take) {
		take = DKIM_LINE - col;
		if (take > len - i)
			take = len - i;
		if (i > 0 && kr_buf_append(out, "\r\n\t", 3) < 0)
			return -1;
		if (kr_buf_append(out, b64 + i, take) < 0)
			return -1;
		col = 8;
	}
	return 0;
}

/* The field up to and including "b=" (the value signed as empty). */
static int
put_sig_head(struct kr_buf *out, const char *algo, const char *domain,
             const char *sel, int64_t now, const char *hlist,
             const unsigned char bh[32])
{
	char b64[64];
	size_t i, line, col;

	sodium_bin2base64(b64, sizeof(b64), bh, 32,
	                  sodium_base64_VARIANT_ORIGINAL);
	if (kr_buf_printf(out,
	                  "DKIM-Signature: v=1; a=%s; c=relaxed/relaxed;\r\n"
	                  "\td=%s; s=%s; t=%lld;\r\n\th=",
	                  algo, domain, sel, (long long)now) < 0)
		return -1;
	/* h= names, folded after a colon near the line end. */
	col = 8 + 2;
	for (i = 0; hlist[i] != '\0'; i += line) {
		const char *c = strchr(hlist + i, ':');

		line =
		    c == NULL ? strlen(hlist + i) : (size_t)(c - hlist - i) + 1;
		if (col + line > DKIM_LINE && i > 0) {
			if (kr_buf_append(out, "\r\n\t", 3) < 0)
				return -1;
			col = 8;
		}
		if (kr_buf_append(out, hlist + i, line) < 0)
			return -1;
		col += line;
	}
	return kr_buf_printf(out, ";\r\n\tbh=%s;\r\n\tb=", b64);
}

/* ---- signing ---- */

static int
sign_one(const struct kr_dkim *d, int ed, EVP_MD_CTX *hdr, EVP_MD_CTX *tmp,
         const char *hlist, const unsigned char bh[32], int64_t now,
         struct kr_buf *out, struct kr_err *err)
{
	unsigned char digest[EVP_MAX_MD_SIZE], sig[DKIM_MAX_SIG];
	unsigned int dlen = 0;
	size_t slen = sizeof(sig), start = out->len;
	struct sink s = {.md = tmp};
	EVP_PKEY_CTX *pctx = NULL;
	int rc = -1;

	if (put_sig_head(out, ed ? "ed25519-sha256" : "rsa-sha256", d->domain,
	                 ed ? d->ed_sel : d->rsa_sel, now, hlist, bh) < 0) {
		kr_err_set(err, KR_ERR_INVALID, "dkim: signature too long");
		goto out;
	}
	if (EVP_MD_CTX_copy_ex(tmp, hdr) != 1)
		goto crypto;
	canon_header(&s, out->data + start, out->len - start);
	sink_flush(&s);
	if (s.failed || EVP_DigestFinal_ex(tmp, digest, &dlen) != 1 ||
	    dlen != 32)
		goto crypto;
	if (ed) {
		if (crypto_sign_detached(sig, NULL, digest, 32, d->ed_sk) != 0)
			goto crypto;
		slen = crypto_sign_BYTES;
	} else {
		pctx = EVP_PKEY_CTX_new_from_pkey(NULL, d->rsa, NULL);
		if (pctx == NULL || EVP_PKEY_sign_init(pctx) != 1 ||
		    EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) !=
		        1 ||
		    EVP_PKEY_CTX_set_signature_md(pctx, d->sha256) != 1 ||
		    EVP_PKEY_sign(pctx, sig, &slen, digest, 32) != 1)
			goto crypto;
	}
	if (put_b64(out, sig, slen, 8 + 2) < 0 ||
	    kr_buf_append(out, "\r\n", 2) < 0) {
		kr_err_set(err, KR_ERR_INVALID, "dkim: signature too long");
		goto out;
	}
	rc = 0;
	goto out;
crypto:
	kr_err_set(err, KR_ERR_IO, "dkim: %s signing failed",
	           ed ? "ed25519" : "rsa");
out:
	if (rc < 0)
		out->len = start;
	EVP_PKEY_CTX_free(pctx);
	return rc;
}

int
kr_dkim_sign(const struct kr_dkim *d, const char *msg, size_t len, int64_t now,
             struct kr_buf *out, struct kr_err *err)
{
	struct field fields[DKIM_MAX_FIELDS];
	char hlist[512];
	size_t hl = 0, i, body_len = 0, start = out->len;
	const char *body = NULL;
	unsigned char bh[EVP_MAX_MD_SIZE];
	unsigned int bhlen = 0;
	EVP_MD_CTX *md = NULL, *tmp = NULL;
	struct sink s = {.md = NULL};
	long n, j;
	int rc = -1, have_from = 0;

	n = split_header(msg, len, fields, &body, &body_len);
	if (n < 0) {
		kr_err_set(err, KR_ERR_INVALID,
		           "dkim: more than %d header fields, not signing",
		           DKIM_MAX_FIELDS);
		goto out;
	}
	md = EVP_MD_CTX_new();
	tmp = EVP_MD_CTX_new();
	if (md == NULL || tmp == NULL)
		goto crypto;

	/* The body hash, once for both signatures. */
	s.md = md;
	if (EVP_DigestInit_ex(md, d->sha256, NULL) != 1)
		goto crypto;
	canon_body(&s, body, body_len);
	sink_flush(&s);
	if (s.failed || EVP_DigestFinal_ex(md, bh, &bhlen) != 1 || bhlen != 32)
		goto crypto;

	/* The signed fields, bottom-up for repeated names (RFC 6376
	 * 5.4.2), then h= names: each occurrence, plus one if over-signed. */
	if (EVP_DigestInit_ex(md, d->sha256, NULL) != 1)
		goto crypto;
	for (i = 0; i < KR_NELEM(signed_fields); i++) {
		size_t count = 0, k;

		for (j = n - 1; j >= 0; j--) {
			if (fields[j].name_len != signed_fields[i].len ||
			    strncasecmp(fields[j].p, signed_fields[i].name,
			                signed_fields[i].len) != 0)
				continue;
			canon_header(&s, fields[j].p, fields[j].len);
			sink_put(&s, "\r\n", 2);
			count++;
		}
		if (i == 0)
			have_from = count > 0;
		for (k = 0; k < count + (size_t)signed_fields[i].over; k++) {
			if (hl + signed_fields[i].len + 2 > sizeof(hlist)) {
				kr_err_set(err, KR_ERR_INVALID,
				           "dkim: too many %s fields, not "
				           "signing",
				           signed_fields[i].name);
				goto out;
			}
			if (hl > 0)
				hlist[hl++] = ':';
			memcpy(hlist + hl, signed_fields[i].name,
			       signed_fields[i].len);
			hl += signed_fields[i].len;
		}
	}
	hlist[hl] = '\0';
	sink_flush(&s);
	if (s.failed)
		goto crypto;
	if (!have_from) {
		kr_err_set(err, KR_ERR_INVALID,
		           "dkim: the message has no From field, not signing");
		goto out;
	}

	if (d->rsa != NULL &&
	    sign_one(d, 0, md, tmp, hlist, bh, now, out, err) < 0)
		goto out;
	if (d->ed_sk != NULL &&
	    sign_one(d, 1, md, tmp, hlist, bh, now, out, err) < 0)
		goto out;
	rc = 0;
	goto out;
crypto:
	kr_err_set(err, KR_ERR_IO, "dkim: hashing failed");
out:
	if (rc < 0)
		out->len = start;
	if (out->data != NULL)
		out->data[out->len] = '\0';
	EVP_MD_CTX_free(md);
	EVP_MD_CTX_free(tmp);
	return rc;
}

int
kr_dkim_prepend(const struct kr_dkim *d, struct kr_buf *msg, int64_t now,
                struct kr_err *err)
{
	size_t len = msg->len, add;

	/* Sign into the tail of msg, then rotate the fields to the front:
	 * no second buffer. */
	if (kr_dkim_sign(d, msg->data, len, now, msg, err) < 0)
		return -1;
	add = msg->len - len;
	if (add == 0)
		return 0;
	if (kr_buf_reserve(msg, add) < 0) {
		msg->len = len;
		msg->data[len] = '\0';
		return kr_err_set(err, KR_ERR_INVALID,
		                  "dkim: message too large to sign");
	}
	memcpy(msg->data + msg->len, msg->data + len, add);
	memmove(msg->data + add, msg->data, len);
	memcpy(msg->data, msg->data + msg->len, add);
	msg->data[msg->len] = '\0';
	return 0;
}

/* ---- keys ---- */

/* A DNS label sequence: letters, digits, '-' and dots, not empty. Keeps
 * selectors and domains safe in file names, fields and zone lines. */
static int
check_name(const char *what, const char *s, struct kr_err *err)
{
	size_t i, len = s == NULL ? 0 : strlen(s);

	if (len == 0 || len > 253 || s[0] == '.' || s[0] == '-' ||
	    s[len - 1] == '.')
		return kr_err_set(err, KR_ERR_INVALID,
		                  "dkim: %s '%s' is not a DNS name", what,
		                  s == NULL ? "" : s);
	for (i = 0; i < len; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '-' ||
		      (c == '.' && s[i + 1] != '.')))
			return kr_err_set(err, KR_ERR_INVALID,
			                  "dkim: %s '%s' is not a DNS name "
			                  "(letters, digits, '-' and '.')",
			                  what, s);
	}
	return 0;
}

bool
kr_dkim_name_ok(const char *s)
{
	return check_name("name", s, NULL) == 0;
}

/* Reads a key file into locked memory (freed with sodium_free), refusing
 * one that group or others may read. */
static int
read_key_file(const char *path, char **data_out, size_t *len_out,
              struct kr_err *err)
{
	return kr_secret_read(path, "dkim key file", DKIM_MAX_KEYFILE,
	                      KR_SECRET_NONEMPTY, data_out, len_out, NULL, err);
}

/* No pass phrase: an encrypted key is refused, never prompted for. */
static int
no_pass(char *buf, int size, int rwflag, void *u) /* NOLINT(readability-non-const-parameter): OpenSSL's pem_password_cb */
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return 0;
}

static int
load_rsa(const char *path, EVP_PKEY **pkey_out, struct kr_err *err)
{
	char *data = NULL;
	size_t len = 0;
	BIO *bio = NULL;
	EVP_PKEY *pkey = NULL;
	int rc = -1, bits;

	if (read_key_file(path, &data, &len, err) < 0)
		goto out;
	bio = BIO_new_mem_buf(data, (int)len);
	if (bio != NULL)
		pkey = PEM_read_bio_PrivateKey(bio, NULL, no_pass, NULL);
	if (pkey == NULL || !EVP_PKEY_is_a(pkey, "RSA")) {
		kr_err_set(err, KR_ERR_INVALID,
		           "dkim key file %s: expected an unencrypted RSA "
		           "private key in PEM form (kairanctl dkim keygen)",
		           path);
		goto out;
	}
	bits = EVP_PKEY_get_bits(pkey);
	if (bits < 1024 || bits > 4096) {
		kr_err_set(err, KR_ERR_INVALID,
		           "dkim key file %s: RSA key of %d bits, expected "
		           "1024..4096 (2048 recommended, RFC 8301)",
		           path, bits);
		goto out;
	}
	*pkey_out = pkey;
	pkey = NULL;
	rc = 0;
out:
	EVP_PKEY_free(pkey);
	BIO_free(bio);
	if (data != NULL)
		sodium_free(data);
	return rc;
}

/* sk_out: sodium_malloc'd crypto_sign_SECRETKEYBYTES (seed + public). */
static int
load_ed25519(const char *path, unsigned char **sk_out, struct kr_err *err)
{
	unsigned char seed[crypto_sign_SEEDBYTES];
	unsigned char pk[crypto_sign_PUBLICKEYBYTES];
	unsigned char *sk = NULL;
	char *data = NULL;
	size_t len = 0, bin = 0;
	int rc = -1;

	if (read_key_file(path, &data, &len, err) < 0)
		goto out;
	if (sodium_base642bin(seed, sizeof(seed), data, len, " \t\r\n", &bin,
	                      NULL, sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    bin != sizeof(seed)) {
		kr_err_set(err, KR_ERR_INVALID,
		           "dkim key file %s: expected the base64 of a 32-byte "
		           "Ed25519 seed (kairanctl dkim keygen)",
		           path);
		goto out;
	}
	sk = sodium_malloc(crypto_sign_SECRETKEYBYTES);
	if (sk == NULL || crypto_sign_seed_keypair(pk, sk, seed) != 0) {
		kr_err_set(err, KR_ERR_IO, "dkim key file %s: out of memory",
		           path);
		goto out;
	}
	sodium_mprotect_readonly(sk);
	*sk_out = sk;
	sk = NULL;
	rc = 0;
out:
	sodium_memzero(seed, sizeof(seed));
	if (sk != NULL)
		sodium_free(sk);
	if (data != NULL)
		sodium_free(data);
	return rc;
}

int
kr_dkim_new(const char *domain, const char *rsa_selector,
            const char *rsa_key_file, const char *ed25519_selector,
            const char *ed25519_key_file, struct kr_dkim **dkim_out,
            struct kr_err *err)
{
	struct kr_dkim *d = NULL;
	int rc = -1;

	*dkim_out = NULL;
	if (sodium_init() < 0) {
		kr_err_set(err, KR_ERR_IO, "dkim: libsodium failed to start");
		goto out;
	}
	if (check_name("domain", domain, err) < 0)
		goto out;
	if ((rsa_selector == NULL) != (rsa_key_file == NULL) ||
	    (ed25519_selector == NULL) != (ed25519_key_file == NULL) ||
	    (rsa_selector == NULL && ed25519_selector == NULL)) {
		kr_err_set(err, KR_ERR_INVALID,
		           "dkim: expected a selector and a key_file for rsa, "
		           "ed25519 or both");
		goto out;
	}
	if ((rsa_selector != NULL &&
	     check_name("selector", rsa_selector, err) < 0) ||
	    (ed25519_selector != NULL &&
	     check_name("selector", ed25519_selector, err) < 0))
		goto out;
	d = kr_xcalloc(1, sizeof(*d));
	d->domain = kr_xstrdup(domain);
	d->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (d->sha256 == NULL) {
		kr_err_set(err, KR_ERR_IO, "dkim: OpenSSL has no SHA-256");
		goto out;
	}
	if (rsa_selector != NULL) {
		if (load_rsa(rsa_key_file, &d->rsa, err) < 0)
			goto out;
		d->rsa_sel = kr_xstrdup(rsa_selector);
	}
	if (ed25519_selector != NULL) {
		if (load_ed25519(ed25519_key_file, &d->ed_sk, err) < 0)
			goto out;
		d->ed_sel = kr_xstrdup(ed25519_selector);
	}
	*dkim_out = d;
	d = NULL;
	rc = 0;
out:
	kr_dkim_free(&d);
	return rc;
}

int
kr_dkim_for_list(const struct kr_cfg_list *list, struct kr_dkim **dkim_out,
                 struct kr_err *err)
{
	*dkim_out = NULL;
	if (list->dkim_domain == NULL)
		return 0;
	if (kr_dkim_new(list->dkim_domain, list->dkim_rsa_selector,
	                list->dkim_rsa_key_file, list->dkim_ed25519_selector,
	                list->dkim_ed25519_key_file, dkim_out, err) < 0) {
		kr_err_prefix(err, "list %s", list->id);
		return -1;
	}
	return 1;
}

void
kr_dkim_free(struct kr_dkim **dkim)
{
	struct kr_dkim *d;

	if (dkim == NULL || *dkim == NULL)
		return;
	d = *dkim;
	free(d->domain);
	free(d->rsa_sel);
	free(d->ed_sel);
	EVP_PKEY_free(d->rsa);
	if (d->ed_sk != NULL)
		sodium_free(d->ed_sk);
	EVP_MD_free(d->sha256);
	free(d);
	*dkim = NULL;
}

struct kr_dkim_set {
	size_t n;
	char **ids;
	struct kr_dkim **signers;
};

int
kr_dkim_set_new(const struct kr_config *cfg, struct kr_dkim_set **set_out,
                struct kr_err *err)
{
	struct kr_dkim_set *set = kr_xcalloc(1, sizeof(*set));
	struct kr_dkim *d = NULL;
	size_t i;
	int rc = -1;

	*set_out = NULL;
	set->ids = kr_xcalloc(cfg->n_lists + 1, sizeof(*set->ids));
	/* An array of pointers: sizeof(pointer) is meant. */
	set->signers = kr_xcalloc(cfg->n_lists + 1, sizeof(*set->signers)); /* NOLINT(bugprone-sizeof-expression) */
	for (i = 0; i < cfg->n_lists; i++) {
		switch (kr_dkim_for_list(&cfg->lists[i], &d, err)) {
		case 1:
			set->ids[set->n] = kr_xstrdup(cfg->lists[i].id);
			set->signers[set->n++] = d;
			d = NULL;
			break;
		case 0:
			break;
		default:
			goto out;
		}
	}
	*set_out = set;
	set = NULL;
	rc = 0;
out:
	kr_dkim_set_free(&set);
	return rc;
}

const struct kr_dkim *
kr_dkim_set_get(const struct kr_dkim_set *set, const char *list_id)
{
	size_t i;

	if (set == NULL || list_id == NULL)
		return NULL;
	for (i = 0; i < set->n; i++)
		if (strcmp(set->ids[i], list_id) == 0)
			return set->signers[i];
	return NULL;
}

void
kr_dkim_set_free(struct kr_dkim_set **setp)
{
	struct kr_dkim_set *set;
	size_t i;

	if (setp == NULL || (set = *setp) == NULL)
		return;
	for (i = 0; i < set->n; i++) {
		free(set->ids[i]);
		kr_dkim_free(&set->signers[i]);
	}
	free(set->ids);
	free(set->signers);
	free(set);
	*setp = NULL;
}

/* ---- the same keys on every host ---- */

int
kr_dkim_fingerprint(const struct kr_dkim *d, bool ed, char out[KR_DKIM_FP_LEN])
{
	unsigned char h[crypto_hash_sha256_BYTES];
	unsigned char *der = NULL;
	EVP_PKEY *pk = NULL;
	int len = -1;

	out[0] = '\0';
	if (ed && d->ed_sk != NULL)
		pk = EVP_PKEY_new_raw_public_key(
		    EVP_PKEY_ED25519, NULL, d->ed_sk + crypto_sign_SEEDBYTES,
		    crypto_sign_PUBLICKEYBYTES);
	if (pk != NULL)
		len = i2d_PUBKEY(pk, &der);
	else if (!ed && d->rsa != NULL)
		len = i2d_PUBKEY(d->rsa, &der);
	EVP_PKEY_free(pk);
	if (len <= 0) {
		OPENSSL_free(der);
		return -1;
	}
	crypto_hash_sha256(h, der, (unsigned long long)len);
	OPENSSL_free(der);
	sodium_bin2hex(out, KR_DKIM_FP_LEN, h, sizeof(h));
	return 0;
}

/* DNS names are one whatever the letter case: the selector as the
 * database keeps it (d= is lower-case already). */
static void
lower(char *dst, size_t n, const char *src)
{
	size_t i;

	for (i = 0; src[i] != '\0' && i + 1 < n; i++)
		dst[i] = (char)(src[i] >= 'A' && src[i] <= 'Z' ? src[i] + 32
		                                               : src[i]);
	dst[i] = '\0';
}

/* One key of one list against the database. */
static int
check_key(const struct kr_cfg_list *l, const struct kr_dkim *d, bool ed,
          struct kr_store *store, const char *host, int64_t now, char *hint,
          size_t hint_size, struct kr_err *err)
{
	const char *sel = ed ? d->ed_sel : d->rsa_sel;
	const char *file = ed ? l->dkim_ed25519_key_file : l->dkim_rsa_key_file;
	char fp[KR_DKIM_FP_LEN], lsel[256];
	struct kr_store_dkim_key known;
	int r;

	if (kr_dkim_fingerprint(d, ed, fp) < 0)
		return kr_err_set(err, KR_ERR_IO,
		                  "list %s: dkim key file %s: no public key",
		                  l->id, file);
	lower(lsel, sizeof(lsel), sel);
	r = kr_store_dkim_check(store, d->domain, lsel, fp, host, now, &known,
	                        err);
	if (r < 0) {
		kr_err_prefix(err, "list %s: dkim key file %s", l->id, file);
		return -1;
	}
	if (r == 0)
		return 0;
	if (hint != NULL && hint_size > 0)
		snprintf(
		    hint, hint_size,
		    "d=%s s=%s: this host's key has the fingerprint %s, the "
		    "database's %s. Every kairan host of one database needs "
		    "the same DKIM key files: copy them from a host that "
		    "starts. A new key goes under a new selector; to replace "
		    "the key under %s on purpose, publish its record and run "
		    "`kairanctl dkim replace --domain %s %s` on a host that "
		    "has the new file",
		    d->domain, lsel, fp, known.fingerprint, lsel, d->domain,
		    lsel);
	return kr_err_set(err, KR_ERR_INVALID,
	                  "list %s: dkim key file %s (d=%s s=%s) is not the "
	                  "key the database knows, recorded by host %s: mail "
	                  "signed with it would fail DKIM",
	                  l->id, file, d->domain, lsel,
	                  known.host[0] != '\0' ? known.host : "(unknown)");
}

int
kr_dkim_set_check(const struct kr_dkim_set *set, const struct kr_config *cfg,
                  struct kr_store *store, const char *host, int64_t now,
                  char *hint, size_t hint_size, struct kr_err *err)
{
	const struct kr_dkim *d;
	size_t i;

	if (hint != NULL && hint_size > 0)
		hint[0] = '\0';
	for (i = 0; i < cfg->n_lists; i++) {
		d = kr_dkim_set_get(set, cfg->lists[i].id);
		if (d == NULL)
			continue;
		if ((d->rsa_sel != NULL &&
		     check_key(&cfg->lists[i], d, false, store, host, now, hint,
		               hint_size, err) < 0) ||
		    (d->ed_sel != NULL &&
		     check_key(&cfg->lists[i], d, true, store, host, now, hint,
		               hint_size, err) < 0))
			return -1;
	}
	return 0;
}

int
kr_dkim_replace(const struct kr_dkim *d, bool ed, struct kr_store *store,
                const char *host, int64_t now, char fp_out[KR_DKIM_FP_LEN],
                struct kr_store_dkim_key *old_out, struct kr_err *err)
{
	const char *sel = ed ? d->ed_sel : d->rsa_sel;
	char lsel[256];

	if (sel == NULL || kr_dkim_fingerprint(d, ed, fp_out) < 0)
		return kr_err_set(err, KR_ERR_INVALID, "dkim: no %s key",
		                  ed ? "ed25519" : "rsa");
	lower(lsel, sizeof(lsel), sel);
	return kr_store_dkim_replace(store, d->domain, lsel, fp_out, host, now,
	                             old_out, err);
}

/* ---- keygen and DNS records ---- */

static int
write_new_file(const char *path, const void *data, size_t len,
               struct kr_err *err)
{
	const char *p = data;
	ssize_t w;
	int fd, rc = -1;

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	          0600);
	if (fd < 0)
		return kr_err_set(err,
		                  errno == EEXIST ? KR_ERR_EXISTS : KR_ERR_IO,
		                  "%s: %s", path,
		                  errno == EEXIST ? "exists, not overwriting it"
		                                  : strerror(errno));
	/* umask may have taken bits away, never added: still 0600 or less. */
	if (fchmod(fd, 0600) < 0)
		goto io;
	while (len > 0) {
		w = write(fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			goto io;
		p += w;
		len -= (size_t)w;
	}
	if (fsync(fd) < 0)
		goto io;
	rc = 0;
	goto out;
io:
	kr_err_set(err, KR_ERR_IO, "%s: %s", path, strerror(errno));
	(void)unlink(path);
out:
	if (close(fd) < 0 && rc == 0)
		rc =
		    kr_err_set(err, KR_ERR_IO, "%s: %s", path, strerror(errno));
	return rc;
}

int
kr_dkim_keygen(const char *dir, const char *selector, struct kr_err *err)
{
	unsigned char seed[crypto_sign_SEEDBYTES];
	char b64[sodium_base64_ENCODED_LEN(crypto_sign_SEEDBYTES,
	                                   sodium_base64_VARIANT_ORIGINAL) +
	         1];
	char *rsa_path = NULL, *ed_path = NULL, *pem = NULL;
	EVP_PKEY *pkey = NULL;
	BIO *bio = NULL;
	struct stat st;
	long pem_len;
	int rc = -1;

	if (sodium_init() < 0) {
		kr_err_set(err, KR_ERR_IO, "dkim: libsodium failed to start");
		goto out;
	}
	if (check_name("selector", selector, err) < 0)
		goto out;
	rsa_path = kr_xasprintf("%s/%s-rsa.key", dir, selector);
	ed_path = kr_xasprintf("%s/%s-ed25519.key", dir, selector);
	if (lstat(rsa_path, &st) == 0 || lstat(ed_path, &st) == 0) {
		kr_err_set(err, KR_ERR_EXISTS, "%s: exists, not overwriting it",
		           lstat(rsa_path, &st) == 0 ? rsa_path : ed_path);
		goto out;
	}
	pkey = EVP_RSA_gen(2048);
	bio = BIO_new(BIO_s_secmem());
	if (pkey == NULL || bio == NULL ||
	    PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL) !=
	        1 ||
	    (pem_len = BIO_get_mem_data(bio, &pem)) <= 0) {
		kr_err_set(err, KR_ERR_IO, "dkim: RSA key generation failed");
		goto out;
	}
	randombytes_buf(seed, sizeof(seed));
	sodium_bin2base64(b64, sizeof(b64) - 1, seed, sizeof(seed),
	                  sodium_base64_VARIANT_ORIGINAL);
	/* Room for one more byte: bin2base64 got sizeof(b64) - 1. */
	strcat(b64, "\n"); /* NOLINT(clang-analyzer-security.insecureAPI.strcpy) */
	if (write_new_file(rsa_path, pem, (size_t)pem_len, err) < 0)
		goto out;
	if (write_new_file(ed_path, b64, strlen(b64), err) < 0) {
		(void)unlink(rsa_path);
		goto out;
	}
	rc = 0;
out:
	sodium_memzero(seed, sizeof(seed));
	sodium_memzero(b64, sizeof(b64));
	BIO_free(bio);
	EVP_PKEY_free(pkey);
	free(rsa_path);
	free(ed_path);
	return rc;
}

int
kr_dkim_txt(const char *key_file, bool ed25519, char **txt_out,
            struct kr_err *err)
{
	unsigned char *der = NULL, *sk = NULL;
	char *b64 = NULL;
	EVP_PKEY *pkey = NULL;
	int der_len, rc = -1;
	size_t b64_len;

	*txt_out = NULL;
	if (ed25519) {
		char pk64[sodium_base64_ENCODED_LEN(
		    crypto_sign_PUBLICKEYBYTES,
		    sodium_base64_VARIANT_ORIGINAL)];

		if (sodium_init() < 0 || load_ed25519(key_file, &sk, err) < 0)
			goto out;
		sodium_bin2base64(
		    pk64, sizeof(pk64), sk + crypto_sign_SEEDBYTES,
		    crypto_sign_PUBLICKEYBYTES, sodium_base64_VARIANT_ORIGINAL);
		*txt_out = kr_xasprintf("v=DKIM1; k=ed25519; p=%s", pk64);
		rc = 0;
		goto out;
	}
	if (load_rsa(key_file, &pkey, err) < 0)
		goto out;
	der_len = i2d_PUBKEY(pkey, &der);
	if (der_len <= 0) {
		kr_err_set(err, KR_ERR_IO, "dkim key file %s: no public key",
		           key_file);
		goto out;
	}
	b64_len = sodium_base64_ENCODED_LEN((size_t)der_len,
	                                    sodium_base64_VARIANT_ORIGINAL);
	b64 = kr_xmalloc(b64_len);
	sodium_bin2base64(b64, b64_len, der, (size_t)der_len,
	                  sodium_base64_VARIANT_ORIGINAL);
	*txt_out = kr_xasprintf("v=DKIM1; k=rsa; p=%s", b64);
	rc = 0;
out:
	if (sk != NULL)
		sodium_free(sk);
	OPENSSL_free(der);
	free(b64);
	EVP_PKEY_free(pkey);
	return rc;
}

int
kr_dkim_zone_record(const char *selector, const char *domain, const char *txt,
                    struct kr_buf *out)
{
	size_t len = strlen(txt), i, take;
	int split = len > 255;

	if (kr_buf_printf(out, "%s._domainkey.%s. IN TXT %s", selector, domain,
	                  split ? "( " : "") < 0)
		return -1;
	for (i = 0; i < len || i == 0; i += take) {
		take = len - i > 255 ? 255 : len - i;
		if (kr_buf_printf(out, "%s\"%.*s\"", i > 0 ? " " : "",
		                  (int)take, txt + i) < 0)
			return -1;
		if (take == 0)
			break;
	}
	return kr_buf_puts(out, split ? " )\n" : "\n");
}

/* A tag=value list ("v=DKIM1; k=rsa; p=…"): the value of tag, whitespace
 * removed, into out (size outsz). Returns 1 found, 0 not, -1 too long. */
static int
tag_value(const char *s, char tag, char *out, size_t outsz)
{
	const char *p = s;
	size_t n = 0;

	while (*p != '\0') {
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
			p++;
		if (p[0] == tag) {
			const char *q = p + 1;

			while (*q == ' ' || *q == '\t')
				q++;
			if (*q == '=') {
				for (q++; *q != '\0' && *q != ';'; q++) {
					if (*q == ' ' || *q == '\t' ||
					    *q == '\r' || *q == '\n')
						continue;
					if (n + 1 >= outsz)
						return -1;
					out[n++] = *q;
				}
				out[n] = '\0';
				return 1;
			}
		}
		p = strchr(p, ';');
		if (p == NULL)
			break;
		p++;
	}
	return 0;
}

int
kr_dkim_txt_match(const char *published, const char *want, struct kr_err *err)
{
	char pk[2048], wk[2048], pp[16], wp[16];

	if (tag_value(published, 'p', pk, sizeof(pk)) != 1) {
		kr_err_set(err, KR_ERR_INVALID, "the record has no p= tag");
		return 0;
	}
	if (pk[0] == '\0') {
		kr_err_set(err, KR_ERR_INVALID,
		           "the record has an empty p= (key revoked)");
		return 0;
	}
	if (tag_value(published, 'k', pp, sizeof(pp)) != 1)
		strcpy(pp, "rsa");
	if (tag_value(want, 'k', wp, sizeof(wp)) != 1)
		strcpy(wp, "rsa");
	if (strcasecmp(pp, wp) != 0) {
		kr_err_set(err, KR_ERR_INVALID,
		           "the record has k=%s, the key is k=%s", pp, wp);
		return 0;
	}
	if (tag_value(want, 'p', wk, sizeof(wk)) != 1 || strcmp(pk, wk) != 0) {
		kr_err_set(err, KR_ERR_INVALID,
		           "the record's p= is another key than the key "
		           "file's");
		return 0;
	}
	return 1;
}

static unsigned
get16(const unsigned char *p)
{
	return ((unsigned)p[0] << 8) | p[1];
}

int
kr_dkim_txt_from_answer(const unsigned char *ans, size_t len,
                        struct kr_buf *out)
{
	const unsigned char *p, *end = ans + len, *rd;
	unsigned qd, an, i, type, cls, rdlen;
	size_t start = out->len;
	int n, found = 0;

	if (len < 12)
		return -1;
	qd = get16(ans + 4);
	an = get16(ans + 6);
	p = ans + 12;
	for (i = 0; i < qd; i++) {
		n = dn_skipname(p, end);
		if (n < 0 || end - p < n + 4)
			return -1;
		p += n + 4;
	}
	for (i = 0; i < an; i++) {
		n = dn_skipname(p, end);
		if (n < 0 || end - p < n + 10)
			return -1;
		p += n;
		type = get16(p);
		cls = get16(p + 2);
		rdlen = get16(p + 8);
		p += 10;
		if ((size_t)(end - p) < rdlen)
			return -1;
		rd = p;
		p += rdlen;
		if (type != ns_t_txt || cls != ns_c_in || found)
			continue;
		/* character-strings: length byte, bytes; joined. */
		out->len = start;
		while (rd < p) {
			unsigned slen = *rd++;

			if ((size_t)(p - rd) < slen)
				return -1;
			if (kr_buf_append(out, rd, slen) < 0)
				return -1;
			rd += slen;
		}
		if (out->data != NULL)
			out->data[out->len] = '\0';
		/* The DKIM record, not some other TXT at that name. */
		if (out->data != NULL &&
		    (strncmp(out->data + start, "v=DKIM1", 7) == 0 ||
		     strstr(out->data + start, "p=") != NULL))
			found = 1;
	}
	if (!found) {
		out->len = start;
		if (out->data != NULL)
			out->data[start] = '\0';
	}
	return found;
}

int
kr_dkim_dns_check(const char *selector, const char *domain, const char *want,
                  struct kr_err *err)
{
	unsigned char ans[8192];
	struct kr_buf txt;
	char *name;
	const char *why;
	int n, rc = -1;

	kr_buf_init(&txt, 65536);
	name = kr_xasprintf("%s._domainkey.%s", selector, domain);
	n = res_query(name, ns_c_in, ns_t_txt, ans, sizeof(ans));
	if (n < 0) {
		switch (h_errno) {
		case HOST_NOT_FOUND:
			why = "no such name (NXDOMAIN): publish the record";
			break;
		case NO_DATA:
			why = "the name has no TXT record: publish it";
			break;
		case TRY_AGAIN:
			why = "no reply from the resolver (is DNS reachable?)";
			break;
		default:
			why = "the resolver failed (is DNS reachable?)";
			break;
		}
		kr_err_set(err, KR_ERR_NOTFOUND, "no answer for %s: %s", name,
		           why);
		goto out;
	}
	if (n > (int)sizeof(ans))
		n = (int)sizeof(ans); /* truncated: parse what we have */
	switch (kr_dkim_txt_from_answer(ans, (size_t)n, &txt)) {
	case 1:
		break;
	case 0:
		kr_err_set(err, KR_ERR_NOTFOUND,
		           "no answer for %s: no DKIM TXT record there", name);
		goto out;
	default:
		kr_err_set(err, KR_ERR_NOTFOUND,
		           "no answer for %s: a malformed DNS reply", name);
		goto out;
	}
	rc = kr_dkim_txt_match(txt.data, want, err);
	if (rc == 0)
		kr_err_prefix(err, "%s", name);
out:
	free(name);
	kr_buf_fini(&txt);
	return rc;
}

int
kr_dkim_record_check(const char *published, const char *want,
                     int *rsa_bits_out, struct kr_err *err)
{
	char pk[2048], kk[16];
	unsigned char der[1536];
	const unsigned char *dp = der;
	size_t dlen = 0;
	EVP_PKEY *pkey = NULL;

	*rsa_bits_out = 0;
	if (tag_value(published, 'p', pk, sizeof(pk)) == 1 && pk[0] != '\0' &&
	    (tag_value(published, 'k', kk, sizeof(kk)) != 1 ||
	     strcasecmp(kk, "rsa") == 0) &&
	    sodium_base642bin(der, sizeof(der), pk, strlen(pk), NULL, &dlen,
	                      NULL, sodium_base64_VARIANT_ORIGINAL) == 0 &&
	    (pkey = d2i_PUBKEY(NULL, &dp, (long)dlen)) != NULL &&
	    EVP_PKEY_is_a(pkey, "RSA"))
		*rsa_bits_out = EVP_PKEY_get_bits(pkey);
	EVP_PKEY_free(pkey);
	return kr_dkim_txt_match(published, want, err);
}
