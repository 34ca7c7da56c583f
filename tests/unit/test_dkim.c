/* test_dkim.c — relaxed canonicalization (RFC 6376 3.4.2, 3.4.4, and the
 * example of 3.4.5), the shape of the DKIM-Signature fields, key files
 * (modes, formats, keygen refusing to overwrite), TXT records and their
 * comparison. That the signatures verify is shown by an independent
 * verifier in tests/integration/test_dkim.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "dkim.h"
#include "dkim_int.h"
#include "err.h"
#include "store.h"
#include "xmem.h"

static char *
canon_h(const char *field)
{
	struct kr_buf b;

	kr_buf_init(&b, 0);
	assert_int_equal(kr_dkim_canon_header(field, strlen(field), &b), 0);
	return kr_buf_steal(&b);
}

/* The canonical body by both paths, which must agree. */
static char *
canon_b(const char *body, size_t len)
{
	struct kr_buf b, s;

	kr_buf_init(&b, 0);
	kr_buf_init(&s, 0);
	assert_int_equal(kr_dkim_canon_body(body, len, &b), 0);
	assert_int_equal(kr_dkim_canon_body_slow(body, len, &s), 0);
	assert_int_equal(b.len, s.len);
	assert_memory_equal(b.len ? b.data : "", s.len ? s.data : "", b.len);
	kr_buf_fini(&s);
	return kr_buf_steal(&b);
}

#define EXPECT_H(in, out)                                                      \
	do {                                                                   \
		char *got_ = canon_h(in);                                      \
		assert_string_equal(got_, out);                                \
		free(got_);                                                    \
	} while (0)
#define EXPECT_B(in, out)                                                      \
	do {                                                                   \
		char *got_ = canon_b(in, sizeof(in) - 1);                      \
		assert_string_equal(got_, out);                                \
		free(got_);                                                    \
	} while (0)

/* RFC 6376 3.4.5, relaxed/relaxed. */
static void
test_dkim_rfc_example(void **state)
{
	(void)state;
	EXPECT_H("A: X", "a:X");
	EXPECT_H("B : Y\t\r\n\tZ  ", "b:Y Z");
	EXPECT_B(" C \r\nD \t E\r\n\r\n\r\n", " C\r\nD E\r\n");
}

static void
test_dkim_canon_header(void **state)
{
	(void)state;
	/* Name lower-cased, WSP around the colon gone. */
	EXPECT_H("SUBJECT:hello", "subject:hello");
	EXPECT_H("Subject \t:   hello", "subject:hello");
	/* Trailing WSP, WSP runs. */
	EXPECT_H("Subject: a  \t b \t ", "subject:a b");
	/* Folded: CRLF deleted, the WSP after it kept as one SP; a fold
	 * right after the colon and trailing folded WSP vanish. */
	EXPECT_H("Subject: a\r\n b\r\n\tc", "subject:a b c");
	EXPECT_H("Subject:\r\n =?UTF-8?B?5pel5pys?=\r\n =?UTF-8?B?6Kqe?=",
	         "subject:=?UTF-8?B?5pel5pys?= =?UTF-8?B?6Kqe?=");
	EXPECT_H(
	    "List-Unsubscribe: <https://x/u?t=a>,\r\n  <mailto:u@x>  \r\n ",
	    "list-unsubscribe:<https://x/u?t=a>, <mailto:u@x>");
	/* Empty value; raw UTF-8 untouched. */
	EXPECT_H("X-Empty:", "x-empty:");
	EXPECT_H("X-Empty:  \r\n ", "x-empty:");
	EXPECT_H("Subject: 日本語  の件名", "subject:日本語 の件名");
}

static void
test_dkim_canon_body(void **state)
{
	(void)state;
	/* Empty body, and bodies of empty lines only: the empty string. */
	EXPECT_B("", "");
	EXPECT_B("\r\n", "");
	EXPECT_B("\r\n\r\n\r\n", "");
	EXPECT_B(" \r\n\t\r\n  \r\n", "");
	/* Trailing WSP on lines, before the end. */
	EXPECT_B("abc \t\r\ndef  \r\n", "abc\r\ndef\r\n");
	EXPECT_B("abc \t", "abc\r\n");
	/* WSP runs inside a line become one SP; a leading run stays one. */
	EXPECT_B("a  \t b\r\n", "a b\r\n");
	EXPECT_B("\t\tx\r\n", " x\r\n");
	/* Empty lines at the end go; those in the middle stay. */
	EXPECT_B("a\r\n\r\nb\r\n\r\n\r\n", "a\r\n\r\nb\r\n");
	EXPECT_B("\r\n\r\na\r\n", "\r\n\r\na\r\n");
	EXPECT_B("a\r\n \r\n", "a\r\n");
	/* No CRLF at the end: one is added. */
	EXPECT_B("abc", "abc\r\n");
	EXPECT_B("abc\r\n\r\ndef", "abc\r\n\r\ndef\r\n");
	/* Bare LF lines (the relay makes them CRLF). */
	EXPECT_B("a\nb\n\n", "a\r\nb\r\n");
	/* Japanese text in UTF-8, and a line of a single SP. */
	EXPECT_B("日本語　の本文  です\r\n \r\n", "日本語　の本文 です\r\n");
	/* A plain body (the in-place path) only loses its end. */
	EXPECT_B("Zm9vYmFy\r\nYmF6\r\n\r\n", "Zm9vYmFy\r\nYmF6\r\n");
	EXPECT_B("a b\r\n", "a b\r\n");
}

/* A long base64 body (the usual case) takes the in-place path and both
 * paths agree byte for byte; so do bodies with a flaw at every place. */
static void
test_dkim_canon_body_paths(void **state)
{
	char body[10240 + 64];
	char *got;
	size_t i, len = 0;

	(void)state;
	for (i = 0; len < 10240; i++) {
		body[len++] =
		    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwx"
		    "yz0123456789+/"[i % 64];
		if (i % 76 == 75) {
			body[len++] = '\r';
			body[len++] = '\n';
		}
	}
	memcpy(body + len, "\r\n\r\n", 4);
	len += 4;
	got = canon_b(body, len);
	assert_int_equal(strlen(got),
	                 len - 2 - (body[len - 5] == '\n' ? 2 : 0));
	assert_memory_equal(got, body, strlen(got));
	free(got);
	for (i = 0; i < 200; i += 7) {
		char flawed[256];
		size_t n = 200;

		memcpy(flawed, body, n);
		flawed[i] = (i / 7) % 3 == 0   ? ' '
		            : (i / 7) % 3 == 1 ? '\t'
		                               : '\n';
		free(canon_b(flawed, n)); /* asserts the two agree */
	}
}

/* ---- keys and signing ---- */

static char tmpdir[64];

static int
setup_keys(void **state)
{
	struct kr_err err = {0};

	(void)state;
	strcpy(tmpdir, "/tmp/kairan-dkim-XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	if (kr_dkim_keygen(tmpdir, "t", &err) < 0) {
		fprintf(stderr, "keygen: %s\n", err.msg);
		return -1;
	}
	return 0;
}

static int
teardown_keys(void **state)
{
	char *p;
	const char *names[] = {"t-rsa.key", "t-ed25519.key", "bad.key",
	                       "x-rsa.key", "x-ed25519.key", "y-rsa.key",
	                       "y-ed25519.key", "fp.db", "fp.db-wal",
	                       "fp.db-shm"};
	size_t i;

	(void)state;
	for (i = 0; i < KR_NELEM(names); i++) {
		p = kr_xasprintf("%s/%s", tmpdir, names[i]);
		unlink(p);
		free(p);
	}
	rmdir(tmpdir);
	return 0;
}

static char *
key_path(const char *name)
{
	return kr_xasprintf("%s/%s", tmpdir, name);
}

static struct kr_dkim *
new_both(void)
{
	struct kr_dkim *d = NULL;
	struct kr_err err = {0};
	char *rsa = key_path("t-rsa.key"), *ed = key_path("t-ed25519.key");

	if (kr_dkim_new("news.example.jp", "t-rsa", rsa, "t-ed25519", ed, &d,
	                &err) < 0)
		fail_msg("kr_dkim_new: %s", err.msg);
	free(rsa);
	free(ed);
	return d;
}

#define MSG                                                                    \
	"From: =?UTF-8?B?5pel5pys?= <report@news.example.jp>\r\n"              \
	"To: reader@example.com\r\n"                                           \
	"Subject: =?UTF-8?B?44K744Kt44Ol44Oq44OG44Kj?=\r\n"                    \
	" =?UTF-8?B?44Os44Od44O844OI?=\r\n"                                    \
	"Date: Wed, 25 Nov 2026 23:00:00 +0000\r\n"                            \
	"Message-ID: <1.2@news.example.jp>\r\n"                                \
	"MIME-Version: 1.0\r\n"                                                \
	"Content-Type: text/plain; charset=UTF-8\r\n"                          \
	"Content-Transfer-Encoding: base64\r\n"                                \
	"List-Id: <sips.news.example.jp>\r\n"                                  \
	"List-Unsubscribe: <https://news.example.jp/unsubscribe?t=abc>\r\n"    \
	"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"                \
	"\r\n"                                                                 \
	"5pel5pys6Kqe44Gu5pys5paH\r\n"

static void
test_dkim_sign_shape(void **state)
{
	struct kr_dkim *d = new_both();
	struct kr_buf out, again;
	struct kr_err err = {0};
	const char *p, *eol, *ed;

	(void)state;
	kr_buf_init(&out, 0);
	kr_buf_init(&again, 0);
	assert_int_equal(
	    kr_dkim_sign(d, MSG, strlen(MSG), 1764111600, &out, &err), 0);
	/* Two fields, RSA first, each one folded with CRLF lines of at
	 * most 78 characters, every continuation starting with a TAB. */
	assert_true(strncmp(out.data,
	                    "DKIM-Signature: v=1; a=rsa-sha256; "
	                    "c=relaxed/relaxed;\r\n\td=news.example.jp;"
	                    " s=t-rsa; t=1764111600;\r\n\th=From:",
	                    103) == 0);
	ed = strstr(out.data, "\r\nDKIM-Signature: v=1; a=ed25519-sha256;");
	assert_non_null(ed);
	assert_non_null(strstr(ed, "s=t-ed25519;"));
	for (p = out.data; *p != '\0'; p = eol + 2) {
		eol = strstr(p, "\r\n");
		assert_non_null(eol);
		assert_true(eol - p <= 78);
		assert_true(p == out.data || p == ed + 2 || *p == '\t');
	}
	assert_int_equal(out.data[out.len - 1], '\n');
	/* h=: the present fields, From, Subject and the List-Unsubscribe
	 * pair once more. Same (folded) list in both. */
	assert_non_null(strstr(out.data,
	                       "h=From:From:To:Subject:Subject:Date:"
	                       "Message-ID:MIME-Version:\r\n\t"
	                       "Content-Type:List-Id:List-Unsubscribe:"
	                       "List-Unsubscribe:\r\n\t"
	                       "List-Unsubscribe-Post:"
	                       "List-Unsubscribe-Post;"));
	assert_non_null(strstr(ed, "h=From:From:To:Subject:Subject:Date:"));
	/* One body hash for both. */
	assert_non_null(strstr(out.data, "bh="));
	assert_memory_equal(strstr(out.data, "bh="), strstr(ed, "bh="), 47);
	/* Both algorithms are deterministic: the same input signs the
	 * same. */
	assert_int_equal(
	    kr_dkim_sign(d, MSG, strlen(MSG), 1764111600, &again, &err), 0);
	assert_string_equal(out.data, again.data);
	kr_buf_fini(&out);
	kr_buf_fini(&again);
	kr_dkim_free(&d);
	assert_null(d);
}

/* The body hash of an empty body is SHA-256 of "" (relaxed). */
static void
test_dkim_empty_body_hash(void **state)
{
	struct kr_dkim *d = new_both();
	struct kr_buf out;
	struct kr_err err = {0};
	const char *msg = "From: a@news.example.jp\r\nSubject: x\r\n\r\n";
	const char *nobody = "From: a@news.example.jp\r\nSubject: x\r\n";

	(void)state;
	kr_buf_init(&out, 0);
	assert_int_equal(kr_dkim_sign(d, msg, strlen(msg), 1, &out, &err), 0);
	assert_non_null(strstr(out.data, "bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NM"
	                                 "pJWZG3hSuFU=;"));
	kr_buf_reset(&out);
	assert_int_equal(kr_dkim_sign(d, nobody, strlen(nobody), 1, &out, &err),
	                 0);
	assert_non_null(strstr(out.data, "bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NM"
	                                 "pJWZG3hSuFU=;"));
	/* Only the fields present (plus the over-signed ones). */
	assert_non_null(strstr(out.data,
	                       "h=From:From:Subject:Subject:"
	                       "List-Unsubscribe:List-Unsubscribe-Post;"));
	kr_buf_fini(&out);
	kr_dkim_free(&d);
}

static void
test_dkim_sign_refuses(void **state)
{
	struct kr_dkim *d = new_both();
	struct kr_buf out, big;
	struct kr_err err = {0};
	const char *nofrom = "To: a@example.com\r\nSubject: x\r\n\r\nbody\r\n";
	size_t i;

	(void)state;
	kr_buf_init(&out, 0);
	assert_int_equal(kr_buf_puts(&out, "kept"), 0);
	assert_int_equal(kr_dkim_sign(d, nofrom, strlen(nofrom), 1, &out, &err),
	                 -1);
	assert_int_equal(err.code, KR_ERR_INVALID);
	assert_non_null(strstr(err.msg, "no From"));
	assert_string_equal(out.data, "kept");
	/* Garbage is no crash: no header at all, no field names. */
	assert_int_equal(kr_dkim_sign(d, "", 0, 1, &out, &err), -1);
	assert_int_equal(kr_dkim_sign(d, "\r\n\r\n", 4, 1, &out, &err), -1);
	assert_int_equal(kr_dkim_sign(d, " : \r\n", 5, 1, &out, &err), -1);
	assert_string_equal(out.data, "kept");
	/* Too many fields. */
	kr_buf_init(&big, 0);
	for (i = 0; i < 1001; i++)
		assert_int_equal(kr_buf_puts(&big, "X-A: b\r\n"), 0);
	assert_int_equal(kr_buf_puts(&big, "From: a@b.example\r\n\r\nx"), 0);
	assert_int_equal(kr_dkim_sign(d, big.data, big.len, 1, &out, &err), -1);
	assert_non_null(strstr(err.msg, "more than 1000"));
	assert_string_equal(out.data, "kept");
	/* A From that appears many times: h= would not fit. */
	kr_buf_reset(&big);
	for (i = 0; i < 200; i++)
		assert_int_equal(kr_buf_puts(&big, "From: a@b.example\r\n"), 0);
	assert_int_equal(kr_dkim_sign(d, big.data, big.len, 1, &out, &err), -1);
	assert_string_equal(out.data, "kept");
	kr_buf_fini(&big);
	kr_buf_fini(&out);
	kr_dkim_free(&d);
}

static void
test_dkim_prepend(void **state)
{
	struct kr_dkim *d = new_both();
	struct kr_buf msg, sig;
	struct kr_err err = {0};

	(void)state;
	kr_buf_init(&msg, 0);
	kr_buf_init(&sig, 0);
	assert_int_equal(kr_buf_puts(&msg, MSG), 0);
	assert_int_equal(kr_dkim_prepend(d, &msg, 42, &err), 0);
	assert_int_equal(kr_dkim_sign(d, MSG, strlen(MSG), 42, &sig, &err), 0);
	assert_int_equal(msg.len, sig.len + strlen(MSG));
	assert_memory_equal(msg.data, sig.data, sig.len);
	assert_string_equal(msg.data + sig.len, MSG);
	kr_buf_fini(&msg);
	kr_buf_fini(&sig);
	kr_dkim_free(&d);
}

/* One struct kr_dkim shared by several threads, as the delivery workers
 * share it: every signature equals the one made alone. */
struct sign_job {
	const struct kr_dkim *d;
	const char *want;
	int bad;
};

static void *
sign_many(void *arg)
{
	struct sign_job *j = arg;
	struct kr_buf out;
	struct kr_err err = {0};
	int i;

	kr_buf_init(&out, 0);
	for (i = 0; i < 40; i++) {
		kr_buf_reset(&out);
		if (kr_dkim_sign(j->d, MSG, strlen(MSG), 7, &out, &err) < 0 ||
		    strcmp(out.data, j->want) != 0)
			j->bad++;
	}
	kr_buf_fini(&out);
	return NULL;
}

static void
test_dkim_threads(void **state)
{
	struct kr_dkim *d = new_both();
	struct sign_job jobs[4];
	pthread_t th[4];
	struct kr_buf want;
	struct kr_err err = {0};
	size_t i;

	(void)state;
	kr_buf_init(&want, 0);
	assert_int_equal(kr_dkim_sign(d, MSG, strlen(MSG), 7, &want, &err), 0);
	for (i = 0; i < 4; i++) {
		jobs[i] = (struct sign_job){d, want.data, 0};
		assert_int_equal(
		    pthread_create(&th[i], NULL, sign_many, &jobs[i]), 0);
	}
	for (i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(jobs[i].bad, 0);
	}
	kr_buf_fini(&want);
	kr_dkim_free(&d);
}

static void
write_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static void
test_dkim_key_files(void **state)
{
	struct kr_dkim *d = NULL;
	struct kr_err err = {0};
	char *rsa = key_path("t-rsa.key"), *ed = key_path("t-ed25519.key");
	char *bad = key_path("bad.key");
	struct stat st;

	(void)state;
	/* keygen wrote both 0600. */
	assert_int_equal(stat(rsa, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(stat(ed, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	/* Either key alone. */
	assert_int_equal(
	    kr_dkim_new("example.jp", "s", rsa, NULL, NULL, &d, &err), 0);
	kr_dkim_free(&d);
	assert_int_equal(
	    kr_dkim_new("example.jp", NULL, NULL, "s", ed, &d, &err), 0);
	kr_dkim_free(&d);
	/* Neither, or a selector without a file. */
	assert_int_equal(
	    kr_dkim_new("example.jp", NULL, NULL, NULL, NULL, &d, &err), -1);
	assert_int_equal(
	    kr_dkim_new("example.jp", "s", NULL, NULL, NULL, &d, &err), -1);
	/* Bad names never reach a field or a file name. */
	assert_int_equal(
	    kr_dkim_new("exa mple.jp", "s", rsa, NULL, NULL, &d, &err), -1);
	assert_int_equal(
	    kr_dkim_new("example.jp", "../s", rsa, NULL, NULL, &d, &err), -1);
	assert_int_equal(
	    kr_dkim_new("example.jp", "s;x=1", rsa, NULL, NULL, &d, &err), -1);
	/* Group-readable: refused, the message says how to fix it. */
	assert_int_equal(chmod(ed, 0640), 0);
	assert_int_equal(
	    kr_dkim_new("example.jp", NULL, NULL, "s", ed, &d, &err), -1);
	assert_int_equal(err.code, KR_ERR_INVALID);
	assert_non_null(strstr(err.msg, "mode 0640"));
	assert_non_null(strstr(err.msg, "chmod 600"));
	assert_int_equal(chmod(ed, 0600), 0);
	/* Missing. */
	assert_int_equal(kr_dkim_new("example.jp", "s", "/nonexistent/k", NULL,
	                             NULL, &d, &err),
	                 -1);
	assert_int_equal(err.code, KR_ERR_NOTFOUND);
	/* The wrong kind of key in each slot, garbage, short seeds: clear
	 * errors, and never a key byte in the message. */
	assert_int_equal(
	    kr_dkim_new("example.jp", "s", ed, NULL, NULL, &d, &err), -1);
	assert_non_null(strstr(err.msg, "RSA private key in PEM"));
	assert_int_equal(
	    kr_dkim_new("example.jp", NULL, NULL, "s", rsa, &d, &err), -1);
	assert_non_null(strstr(err.msg, "32-byte"));
	write_file(bad, "c2hvcnQ=\n", 0600);
	assert_int_equal(
	    kr_dkim_new("example.jp", NULL, NULL, "s", bad, &d, &err), -1);
	assert_non_null(strstr(err.msg, "32-byte"));
	write_file(bad,
	           "-----BEGIN PRIVATE KEY-----\nAAAA\n"
	           "-----END PRIVATE KEY-----\n",
	           0600);
	assert_int_equal(
	    kr_dkim_new("example.jp", "s", bad, NULL, NULL, &d, &err), -1);
	assert_non_null(strstr(err.msg, "RSA private key in PEM"));
	write_file(bad, "", 0600);
	assert_int_equal(
	    kr_dkim_new("example.jp", "s", bad, NULL, NULL, &d, &err), -1);
	assert_null(d);
	free(rsa);
	free(ed);
	free(bad);
}

static void
test_dkim_keygen_refuses_overwrite(void **state)
{
	struct kr_err err = {0};
	char *xr = key_path("x-rsa.key"), *xe = key_path("x-ed25519.key");
	struct stat st;

	(void)state;
	assert_int_equal(kr_dkim_keygen(tmpdir, "t", &err), -1);
	assert_int_equal(err.code, KR_ERR_EXISTS);
	assert_non_null(strstr(err.msg, "t-rsa.key: exists"));
	/* Only the Ed25519 one there: still nothing written. */
	write_file(xe, "x", 0600);
	assert_int_equal(kr_dkim_keygen(tmpdir, "x", &err), -1);
	assert_int_equal(err.code, KR_ERR_EXISTS);
	assert_int_equal(stat(xr, &st), -1);
	assert_int_equal(kr_dkim_keygen(tmpdir, "../evil", &err), -1);
	assert_int_equal(err.code, KR_ERR_INVALID);
	assert_int_equal(kr_dkim_keygen("/nonexistent", "y", &err), -1);
	assert_int_equal(err.code, KR_ERR_IO);
	free(xr);
	free(xe);
}

static void
test_dkim_txt_records(void **state)
{
	struct kr_buf z;
	struct kr_err err = {0};
	char *rsa = key_path("t-rsa.key"), *ed = key_path("t-ed25519.key");
	char *txt_rsa = NULL, *txt_ed = NULL;
	const char *q;
	size_t n;

	(void)state;
	kr_buf_init(&z, 0);
	assert_int_equal(kr_dkim_txt(rsa, false, &txt_rsa, &err), 0);
	assert_int_equal(kr_dkim_txt(ed, true, &txt_ed, &err), 0);
	assert_true(strncmp(txt_rsa, "v=DKIM1; k=rsa; p=MIIBIjAN", 26) == 0);
	assert_true(strncmp(txt_ed, "v=DKIM1; k=ed25519; p=", 22) == 0);
	assert_int_equal(strlen(txt_ed), 22 + 44);
	/* The RSA one is split into quoted strings of at most 255. */
	assert_int_equal(
	    kr_dkim_zone_record("t-rsa", "news.example.jp", txt_rsa, &z), 0);
	assert_true(strncmp(z.data,
	                    "t-rsa._domainkey.news.example.jp. IN TXT "
	                    "( \"v=DKIM1; k=rsa; p=",
	                    60) == 0);
	assert_true(strlen(txt_rsa) > 255);
	n = 0;
	for (q = strchr(z.data, '"'); q != NULL; q = strchr(q + 1, '"')) {
		const char *e = strchr(q + 1, '"');

		assert_non_null(e);
		assert_true(e - q - 1 <= 255);
		n += (size_t)(e - q - 1);
		q = e;
	}
	assert_int_equal(n, strlen(txt_rsa));
	assert_string_equal(z.data + z.len - 3, " )\n");
	kr_buf_reset(&z);
	assert_int_equal(
	    kr_dkim_zone_record("t-ed25519", "news.example.jp", txt_ed, &z), 0);
	assert_true(strncmp(z.data,
	                    "t-ed25519._domainkey.news.example.jp. IN "
	                    "TXT \"v=DKIM1; k=ed25519; p=",
	                    66) == 0);

	/* Matching: whitespace and tag order do not matter, k= and p= do. */
	assert_int_equal(kr_dkim_txt_match(txt_rsa, txt_rsa, &err), 1);
	assert_int_equal(kr_dkim_txt_match(txt_ed, txt_ed, &err), 1);
	assert_int_equal(kr_dkim_txt_match(txt_ed, txt_rsa, &err), 0);
	assert_non_null(strstr(err.msg, "k=ed25519"));
	assert_int_equal(kr_dkim_txt_match("v=DKIM1; p=", txt_rsa, &err), 0);
	assert_non_null(strstr(err.msg, "revoked"));
	assert_int_equal(kr_dkim_txt_match("v=DKIM1; k=rsa", txt_rsa, &err), 0);
	{
		char *spaced = kr_xasprintf("p = %.20s %s ; k=rsa ;v=DKIM1",
		                            txt_rsa + 18, txt_rsa + 38);

		assert_int_equal(kr_dkim_txt_match(spaced, txt_rsa, &err), 1);
		spaced[30] = spaced[30] == 'A' ? 'B' : 'A';
		assert_int_equal(kr_dkim_txt_match(spaced, txt_rsa, &err), 0);
		assert_non_null(strstr(err.msg, "another key"));
		free(spaced);
	}
	free(txt_rsa);
	free(txt_ed);
	free(rsa);
	free(ed);
	kr_buf_fini(&z);
}

/* A DNS answer made by hand: question, a CNAME-ish other record, a TXT
 * that is not DKIM, the DKIM TXT in two character-strings. */
static void
test_dkim_txt_from_answer(void **state)
{
	unsigned char a[512];
	struct kr_buf out;
	size_t n = 0, i;
	const char *s1 = "v=DKIM1; k=ed25519; ", *s2 = "p=AAAA";

	(void)state;
	kr_buf_init(&out, 0);
	memset(a, 0, sizeof(a));
	a[5] = 1; /* qdcount */
	a[7] = 3; /* ancount */
	n = 12;
	memcpy(a + n, "\1s\12_domainkey\1x\0", 16);
	n += 16;
	a[n + 1] = 16; /* TXT */
	a[n + 3] = 1;  /* IN */
	n += 4;
	/* 1: a TXT, not DKIM (pointer to the question name). */
	a[n++] = 0xc0;
	a[n++] = 12;
	a[n + 1] = 16;
	a[n + 3] = 1;
	a[n + 9] = 6;
	n += 10;
	memcpy(a + n, "\5hello", 6);
	n += 6;
	/* 2: the DKIM record in two strings. */
	a[n++] = 0xc0;
	a[n++] = 12;
	a[n + 1] = 16;
	a[n + 3] = 1;
	a[n + 9] = (unsigned char)(2 + strlen(s1) + strlen(s2));
	n += 10;
	a[n++] = (unsigned char)strlen(s1);
	memcpy(a + n, s1, strlen(s1));
	n += strlen(s1);
	a[n++] = (unsigned char)strlen(s2);
	memcpy(a + n, s2, strlen(s2));
	n += strlen(s2);
	/* 3: another TXT after it: ignored. */
	a[n++] = 0xc0;
	a[n++] = 12;
	a[n + 1] = 16;
	a[n + 3] = 1;
	a[n + 9] = 4;
	n += 10;
	memcpy(a + n, "\3p=B", 4);
	n += 4;
	assert_int_equal(kr_dkim_txt_from_answer(a, n, &out), 1);
	assert_string_equal(out.data, "v=DKIM1; k=ed25519; p=AAAA");
	/* Every truncation is malformed or not found: never a crash. */
	for (i = 0; i < n; i++) {
		kr_buf_reset(&out);
		assert_true(kr_dkim_txt_from_answer(a, i, &out) <= 0);
	}
	/* A string length running past the record. */
	kr_buf_reset(&out);
	a[12 + 16 + 4 + 12 + 6 + 12] = 200;
	assert_int_equal(kr_dkim_txt_from_answer(a, n, &out), -1);
	kr_buf_fini(&out);
}

/* One signer per list that has a dkim: block, found by list id; a bad key
 * file fails the whole set and names the list. */
static void
test_dkim_set(void **state)
{
	struct kr_config *cfg = NULL;
	struct kr_dkim_set *set = NULL;
	struct kr_err err = {0};
	char *yaml, *errors = NULL;

	(void)state;
	yaml = kr_xasprintf(
	    "public_url: https://news.example.jp\n"
	    "delivery: {transport: maildir, maildir: m}\n"
	    "lists:\n"
	    "  - id: signed\n"
	    "    from: a@news.example.jp\n"
	    "    dkim: {domain: news.example.jp, ed25519: {selector: t-ed, "
	    "key_file: %s/t-ed25519.key}}\n"
	    "  - id: plain\n"
	    "    from: b@news.example.jp\n"
	    "  - id: both\n"
	    "    from: c@news.example.jp\n"
	    "    dkim:\n"
	    "      domain: news.example.jp\n"
	    "      rsa: {selector: t-rsa, key_file: %s/t-rsa.key}\n"
	    "      ed25519: {selector: t-ed, key_file: %s/t-ed25519.key}\n",
	    tmpdir, tmpdir, tmpdir);
	if (kr_config_load_buf("t.yaml", yaml, strlen(yaml), &cfg, &errors) < 0)
		fail_msg("%s", errors);
	assert_int_equal(kr_dkim_set_new(cfg, &set, &err), 0);
	assert_non_null(kr_dkim_set_get(set, "signed"));
	assert_non_null(kr_dkim_set_get(set, "both"));
	assert_null(kr_dkim_set_get(set, "plain"));
	assert_null(kr_dkim_set_get(set, "nope"));
	assert_null(kr_dkim_set_get(NULL, "signed"));
	kr_dkim_set_free(&set);
	assert_null(set);
	kr_config_free(&cfg);
	free(yaml);

	yaml = kr_xasprintf("public_url: https://news.example.jp\n"
	                    "delivery: {transport: maildir, maildir: m}\n"
	                    "lists:\n"
	                    "  - id: gone\n"
	                    "    from: a@news.example.jp\n"
	                    "    dkim: {domain: news.example.jp, ed25519: "
	                    "{selector: t, key_file: %s/missing.key}}\n",
	                    tmpdir);
	if (kr_config_load_buf("t.yaml", yaml, strlen(yaml), &cfg, &errors) < 0)
		fail_msg("%s", errors);
	assert_int_equal(kr_dkim_set_new(cfg, &set, &err), -1);
	assert_null(set);
	assert_int_equal(err.code, KR_ERR_NOTFOUND);
	assert_non_null(strstr(err.msg, "list gone: "));
	assert_non_null(strstr(err.msg, "missing.key"));
	kr_config_free(&cfg);
	free(yaml);
}

/* The first line of a shell command's output, newline removed. */
static void
shell_line(const char *cmd, char *out, size_t n)
{
	FILE *p = popen(cmd, "r");

	assert_non_null(p);
	if (fgets(out, (int)n, p) == NULL)
		out[0] = '\0';
	assert_int_equal(pclose(p), 0);
	out[strcspn(out, " \n")] = '\0';
}

static struct kr_config *
fp_config(const char *rsa_sel, const char *rsa_key, const char *ed_sel,
          const char *ed_key)
{
	struct kr_config *cfg = NULL;
	char *yaml, *errors = NULL;

	yaml = kr_xasprintf("public_url: https://news.example.jp\n"
	                    "delivery: {transport: maildir, maildir: m}\n"
	                    "lists:\n"
	                    "  - id: plain\n"
	                    "    from: b@news.example.jp\n"
	                    "  - id: both\n"
	                    "    from: c@news.example.jp\n"
	                    "    dkim:\n"
	                    "      domain: news.example.jp\n"
	                    "      rsa: {selector: %s, key_file: %s/%s}\n"
	                    "      ed25519: {selector: %s, key_file: %s/%s}\n",
	                    rsa_sel, tmpdir, rsa_key, ed_sel, tmpdir, ed_key);
	if (kr_config_load_buf("t.yaml", yaml, strlen(yaml), &cfg, &errors) < 0)
		fail_msg("%s", errors);
	free(yaml);
	return cfg;
}

/* The fingerprints are SHA-256 of the DER SubjectPublicKeyInfo, as the
 * openssl tool computes them from the key files; kr_dkim_set_check
 * records them and refuses another key under a known selector, naming
 * list, d=, s= and file and never key bytes; a new selector is fine. */
static void
test_dkim_fingerprint_and_check(void **state)
{
	struct kr_dkim *d = new_both();
	const struct kr_dkim *dd;
	struct kr_dkim_set *set = NULL;
	struct kr_config *cfg;
	struct kr_store *store = NULL;
	struct kr_err err = {0};
	char fr[KR_DKIM_FP_LEN], fe[KR_DKIM_FP_LEN], want[128], cmd[1024];
	char hint[1024], fy[KR_DKIM_FP_LEN];
	char *db, *data;
	FILE *fp;

	(void)state;
	assert_int_equal(kr_dkim_fingerprint(d, false, fr), 0);
	assert_int_equal(kr_dkim_fingerprint(d, true, fe), 0);
	assert_int_equal(strlen(fr), 64);
	snprintf(cmd, sizeof(cmd),
	         "openssl pkey -in %s/t-rsa.key -pubout -outform DER | "
	         "sha256sum",
	         tmpdir);
	shell_line(cmd, want, sizeof(want));
	assert_string_equal(fr, want);
	/* the Ed25519 seed as PKCS#8 DER (RFC 8410) for openssl */
	snprintf(
	    cmd, sizeof(cmd),
	    "{ printf '\\060\\056\\002\\001\\000\\060\\005\\006\\003\\053"
	    "\\145\\160\\004\\042\\004\\040'; base64 -d %s/t-ed25519.key; } | "
	    "openssl pkey -inform DER -pubout -outform DER | sha256sum",
	    tmpdir);
	shell_line(cmd, want, sizeof(want));
	assert_int_equal(strlen(want), 64);
	assert_string_equal(fe, want);
	kr_dkim_free(&d);

	assert_int_equal(kr_dkim_keygen(tmpdir, "y", &err), 0);
	db = key_path("fp.db");
	if (kr_store_open(db, NULL, &store, &err) < 0)
		fail_msg("open: %s", err.msg);
	/* first start: recorded (the selector in lower case) */
	cfg = fp_config("T-RSA", "t-rsa.key", "t-ed", "t-ed25519.key");
	assert_int_equal(kr_dkim_set_new(cfg, &set, &err), 0);
	assert_int_equal(
	    kr_dkim_set_check(set, cfg, store, "host-a", 1000, NULL, 0, &err),
	    0);
	assert_int_equal(kr_store_dkim_check(store, "news.example.jp", "t-rsa",
	                                     fr, "x", 1, NULL, &err),
	                 0);
	assert_int_equal(kr_store_dkim_check(store, "news.example.jp", "t-ed",
	                                     fe, "x", 1, NULL, &err),
	                 0);
	/* the same keys again (another host): fine */
	assert_int_equal(
	    kr_dkim_set_check(set, cfg, store, "host-b", 1001, NULL, 0, &err),
	    0);
	kr_dkim_set_free(&set);
	kr_config_free(&cfg);

	/* another Ed25519 key under t-ed: refused */
	cfg = fp_config("t-rsa", "t-rsa.key", "t-ed", "y-ed25519.key");
	assert_int_equal(kr_dkim_set_new(cfg, &set, &err), 0);
	assert_int_equal(kr_dkim_set_check(set, cfg, store, "host-c", 1002,
	                                   hint, sizeof(hint), &err),
	                 -1);
	assert_non_null(strstr(err.msg, "list both: dkim key file "));
	assert_non_null(strstr(err.msg, "/y-ed25519.key (d=news.example.jp "
	                                "s=t-ed) is not the key the database "
	                                "knows"));
	assert_non_null(strstr(err.msg, "recorded by host host-a"));
	assert_non_null(strstr(err.msg, "would fail DKIM"));
	assert_true(strlen(err.msg) < sizeof(err.msg) - 1);
	/* the hint: both fingerprints and the way out */
	assert_non_null(strstr(hint, "d=news.example.jp s=t-ed: "));
	dd = kr_dkim_set_get(set, "both");
	assert_non_null(dd);
	assert_int_equal(kr_dkim_fingerprint(dd, true, fy), 0);
	assert_string_not_equal(fy, fe);
	assert_non_null(strstr(hint, fy));
	assert_non_null(strstr(hint, fe));
	assert_non_null(strstr(hint, "kairanctl dkim replace --domain "
	                             "news.example.jp t-ed"));
	/* never the private key: the seed, nor the public key's base64 */
	data = key_path("y-ed25519.key");
	fp = fopen(data, "r");
	free(data);
	assert_non_null(fp);
	assert_non_null(fgets(want, sizeof(want), fp));
	fclose(fp);
	want[strcspn(want, "\n")] = '\0';
	assert_true(strlen(want) > 40);
	assert_null(strstr(err.msg, want));
	assert_null(strstr(hint, want));
	want[12] = '\0';
	assert_null(strstr(err.msg, want));
	assert_null(strstr(hint, want));
	kr_dkim_set_free(&set);
	kr_config_free(&cfg);

	/* another RSA key under t-rsa: refused too, the PEM never shown */
	cfg = fp_config("t-rsa", "y-rsa.key", "t-ed", "t-ed25519.key");
	assert_int_equal(kr_dkim_set_new(cfg, &set, &err), 0);
	assert_int_equal(kr_dkim_set_check(set, cfg, store, "host-c", 1002,
	                                   hint, sizeof(hint), &err),
	                 -1);
	assert_non_null(strstr(err.msg, "/y-rsa.key (d=news.example.jp "
	                                "s=t-rsa)"));
	data = key_path("y-rsa.key");
	fp = fopen(data, "r");
	free(data);
	assert_non_null(fp);
	while (fgets(cmd, sizeof(cmd), fp) != NULL) {
		cmd[strcspn(cmd, "\n")] = '\0';
		if (cmd[0] != '-' && strlen(cmd) > 16) {
			cmd[16] = '\0';
			assert_null(strstr(err.msg, cmd));
			assert_null(strstr(hint, cmd));
		}
	}
	fclose(fp);
	kr_dkim_set_free(&set);
	kr_config_free(&cfg);

	/* the new keys under new selectors: a rotation, just works */
	cfg = fp_config("y-rsa", "y-rsa.key", "y-ed", "y-ed25519.key");
	assert_int_equal(kr_dkim_set_new(cfg, &set, &err), 0);
	assert_int_equal(kr_dkim_set_check(set, cfg, store, "host-c", 1003,
	                                   hint, sizeof(hint), &err),
	                 0);
	assert_string_equal(hint, "");
	kr_dkim_set_free(&set);
	kr_config_free(&cfg);
	kr_store_close(&store);
	free(db);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_dkim_rfc_example),
	    cmocka_unit_test(test_dkim_canon_header),
	    cmocka_unit_test(test_dkim_canon_body),
	    cmocka_unit_test(test_dkim_canon_body_paths),
	    cmocka_unit_test(test_dkim_sign_shape),
	    cmocka_unit_test(test_dkim_empty_body_hash),
	    cmocka_unit_test(test_dkim_sign_refuses),
	    cmocka_unit_test(test_dkim_prepend),
	    cmocka_unit_test(test_dkim_threads),
	    cmocka_unit_test(test_dkim_key_files),
	    cmocka_unit_test(test_dkim_keygen_refuses_overwrite),
	    cmocka_unit_test(test_dkim_txt_records),
	    cmocka_unit_test(test_dkim_txt_from_answer),
	    cmocka_unit_test(test_dkim_set),
	    cmocka_unit_test(test_dkim_fingerprint_and_check),
	};

	return cmocka_run_group_tests_name("dkim", tests, setup_keys,
	                                   teardown_keys);
}
