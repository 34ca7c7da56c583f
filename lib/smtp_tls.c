/* smtp_tls.c — TLS for the SMTP engine (smtp_int.h), in kairan-smtp
 * only: STARTTLS done here rather than by libesmtp (libesmtp 1.1's hangs
 * on TLS 1.3 session tickets and hides its plain text from us), implicit
 * TLS (port 465, which libesmtp lacks), SNI, and the certificate checked
 * with OpenSSL for the relay's name or address. Both modes end in the
 * same verified session, which the engine's read(), write() and poll()
 * hooks then carry libesmtp's plain text through. */
#include "smtp_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "smtp_wrap.h"
#include "xmem.h"

static void on_tls_info(const SSL *ssl, int where, int ret);

/* Reads one whole SMTP reply from the plain-text socket into buf (size
 * bytes, NUL-terminated), within timeout_ms. Nothing may follow it: a
 * server that talks ahead before TLS could smuggle plain text into the
 * TLS session (the STARTTLS injection flaws). Returns its length, or -1
 * with why set. */
ssize_t
smtp_plain_reply(struct smtp_sess *s, int fd, char *buf, size_t size,
            int timeout_ms, const char *what)
{
	size_t n = 0, at = 0;
	ssize_t r;
	char *nl;

	for (;;) {
		/* complete lines: "NNN-" goes on, anything else ends it */
		while ((nl = memchr(buf + at, '\n', n - at)) != NULL) {
			size_t end = (size_t)(nl - buf) + 1;
			bool more = end - at >= 4 && buf[at + 3] == '-';

			at = end;
			if (more)
				continue;
			if (at != n) {
				snprintf(s->why, sizeof(s->why),
				         "STARTTLS: the relay sent more than its "
				         "%s reply", what);
				return -1;
			}
			buf[n] = '\0';
			return (ssize_t)n;
		}
		if (n + 1 >= size) {
			snprintf(s->why, sizeof(s->why),
			         "STARTTLS: %s reply too long", what);
			return -1;
		}
		r = smtp_wait_fd(fd, POLLIN, timeout_ms);
		if (r == 0) {
			snprintf(s->why, sizeof(s->why),
			         "STARTTLS: no %s reply within %d ms", what,
			         timeout_ms);
			return -1;
		}
		r = r > 0 ? kr_smtp_real_read(fd, buf + n, size - 1 - n) : -1;
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (r <= 0) {
			snprintf(s->why, sizeof(s->why),
			         "STARTTLS: connection lost waiting for the %s "
			         "reply",
			         what);
			return -1;
		}
		n += (size_t)r;
	}
}

/* Writes a short command on the plain-text socket. Returns 0 or -1. */
int
smtp_plain_write(struct smtp_sess *s, int fd, const char *cmd, int timeout_ms)
{
	size_t off = 0, n = strlen(cmd);
	ssize_t w;

	while (off < n) {
		w = kr_smtp_real_write(fd, cmd + off, n - off);
		if (w > 0) {
			off += (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN && smtp_wait_fd(fd, POLLOUT, timeout_ms) > 0)
			continue;
		snprintf(s->why, sizeof(s->why), "STARTTLS: cannot write: %s",
		         w < 0 ? strerror(errno) : "closed");
		return -1;
	}
	return 0;
}

/* STARTTLS (RFC 3207), done here rather than by libesmtp: libesmtp 1.1's
 * own hangs on TLS 1.3 session tickets and keeps this file from seeing
 * the plain text it writes (so nothing could be sent ahead of it). On the
 * fresh connection: the greeting, EHLO, STARTTLS, then tls_handshake();
 * libesmtp (with STARTTLS off) is then given the greeting, and says EHLO
 * again inside TLS, as RFC 3207 wants. Never a fallback to plain text: a
 * relay that does not offer STARTTLS, or refuses it, is unusable. A
 * greeting that is not 2xx is left to libesmtp, which reads it and quits,
 * as with any relay. Returns 0, or -1 with the relay marked unusable. */
int
smtp_starttls(struct smtp_sess *s, int fd, int timeout_ms)
{
	char buf[8192] = {0}, cmd[300];
	const char *p, *e;
	struct utsname u;
	bool offered = false;
	ssize_t n;

	if (s->relay == NULL || s->relay->tls != KR_CFG_TLS_STARTTLS)
		return 0;
	free(s->pre);
	s->pre = NULL;
	s->pre_len = s->pre_off = 0;
	if ((n = smtp_plain_reply(s, fd, buf, sizeof(buf), timeout_ms,
	                     "greeting")) < 0)
		goto fail;
	s->pre = kr_xmalloc((size_t)n + 1); /* a NUL in it is the relay's */
	memcpy(s->pre, buf, (size_t)n + 1);
	s->pre_len = (size_t)n;
	if (buf[0] != '2')
		return 0;
	snprintf(cmd, sizeof(cmd), "EHLO %s\r\n",
	         uname(&u) == 0 && u.nodename[0] != '\0' ? u.nodename
	                                                 : "localhost");
	if (smtp_plain_write(s, fd, cmd, timeout_ms) < 0 ||
	    (n = smtp_plain_reply(s, fd, buf, sizeof(buf), timeout_ms, "EHLO")) < 0)
		goto fail;
	for (p = buf; buf[0] == '2' && p < buf + n; p = e) {
		/* "250-STARTTLS" or "250 STARTTLS", any case; the reply
		 * may hold NULs (n counts) */
		e = memchr(p, '\n', (size_t)(buf + n - p));
		e = e != NULL ? e + 1 : buf + n;
		if (e - p >= 12 && strncasecmp(p + 4, "STARTTLS", 8) == 0 &&
		    (p[12] == '\r' || p[12] == '\n' || p[12] == ' '))
			offered = true;
	}
	if (!offered) {
		snprintf(s->why, sizeof(s->why),
		         "relay does not offer STARTTLS");
		goto fail;
	}
	if (smtp_plain_write(s, fd, "STARTTLS\r\n", timeout_ms) < 0 ||
	    smtp_plain_reply(s, fd, buf, sizeof(buf), timeout_ms, "STARTTLS") < 0)
		goto fail;
	if (strncmp(buf, "220", 3) != 0) {
		char r[120];

		smtp_copy_reply(r, sizeof(r), buf);
		snprintf(s->why, sizeof(s->why), "STARTTLS refused: %s", r);
		goto fail;
	}
	return 0;
fail:
	s->fatal = true;
	return -1;
}

/* TLS, implicit or after starttls(): the handshake on the freshly
 * connected, non-blocking socket, bounded by timeout_ms, then the checks
 * (chain, host name or IP; SNI from on_tls_info()). TLS 1.2 or 1.3. fd <
 * 0: the socket could not be prepared. Returns 0 (nothing to do for other relays), or -1 with the
 * relay marked unusable and why. */
int
smtp_tls_handshake(struct smtp_sess *s, int fd, int timeout_ms)
{
	struct timespec t0, t1;
	long left;
	SSL *ssl;
	int r, e;
	char why[160];

	if (s->ssl != NULL) { /* an earlier address of the same relay */
		SSL_free(s->ssl);
		s->ssl = NULL;
	}
	if (s->relay == NULL || s->relay->tls == KR_CFG_TLS_NONE ||
	    (s->relay->tls == KR_CFG_TLS_STARTTLS && fd >= 0 &&
	     s->pre_len > 0 && s->pre[0] != '2'))
		return 0; /* no TLS, or a refusing greeting (see starttls()) */
	ssl = NULL;
	if (fd < 0) {
		snprintf(s->why, sizeof(s->why), "TLS: socket not usable");
		goto fail;
	}
	if ((ssl = SSL_new(s->relay->ssl_ctx)) == NULL ||
	    SSL_set_fd(ssl, fd) != 1) {
		snprintf(s->why, sizeof(s->why), "TLS: cannot set up");
		goto fail;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	s->in_ssl = true;
	while ((r = SSL_connect(ssl)) != 1) {
		e = SSL_get_error(ssl, r);
		if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
			unsigned long code = ERR_peek_last_error();
			char es[120] = "handshake failed";

			if (code != 0)
				ERR_error_string_n(code, es, sizeof(es));
			snprintf(s->why, sizeof(s->why), "TLS: %.150s", es);
			goto fail;
		}
		clock_gettime(CLOCK_MONOTONIC, &t1);
		left = timeout_ms - ((t1.tv_sec - t0.tv_sec) * 1000L +
		                     (t1.tv_nsec - t0.tv_nsec) / 1000000L);
		if (left <= 0 ||
		    smtp_wait_fd(fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
		            (int)left) <= 0) {
			snprintf(s->why, sizeof(s->why),
			         "TLS: no handshake within %d ms", timeout_ms);
			goto fail;
		}
	}
	s->in_ssl = false;
	if (!smtp_peer_ok(s, ssl, why, sizeof(why))) {
		snprintf(s->why, sizeof(s->why), "TLS: %s", why);
		goto fail;
	}
	s->ssl = ssl;
	return 0;
fail:
	s->in_ssl = false;
	s->fatal = true;
	SSL_free(ssl);
	ERR_clear_error();
	return -1;
}


/* Host name (or IP address) check of the peer certificate, and the
 * chain verification result, done by us whatever libesmtp concluded. */
int
smtp_peer_ok(struct smtp_sess *s, SSL *ssl, char *why, size_t size)
{
	X509 *cert = NULL;
	long v;
	int ok = 0, r;
	const char *host = s->relay->host;
	unsigned char ipbuf[16];

	v = SSL_get_verify_result(ssl);
	if (v != X509_V_OK) {
		snprintf(why, size, "certificate not trusted: %s",
		         X509_verify_cert_error_string(v));
		goto out;
	}
	cert = SSL_get1_peer_certificate(ssl);
	if (cert == NULL) {
		snprintf(why, size, "no server certificate");
		goto out;
	}
	if (inet_pton(AF_INET, host, ipbuf) == 1 ||
	    inet_pton(AF_INET6, host, ipbuf) == 1)
		r = X509_check_ip_asc(cert, host, 0);
	else
		r = X509_check_host(cert, host, 0, 0, NULL);
	if (r != 1) {
		snprintf(why, size, "certificate does not name %s", host);
		goto out;
	}
	ok = 1;
out:
	X509_free(cert);
	return ok;
}

/* libesmtp sends no SNI; many relays need it to pick their certificate.
 * OpenSSL calls this as the handshake starts, before the ClientHello is
 * built, in the session's thread: name the relay there. */
static void
on_tls_info(const SSL *ssl, int where, int ret)
{
	struct smtp_sess *cur = kr_smtp_wrap_sess();
	const char *host;
	unsigned char ipbuf[16];

	(void)ret;
	if (!(where & SSL_CB_HANDSHAKE_START) || cur == NULL)
		return;
	host = cur->relay->host;
	if (inet_pton(AF_INET, host, ipbuf) == 1 ||
	    inet_pton(AF_INET6, host, ipbuf) == 1)
		return; /* RFC 6066: no IP addresses in SNI */
	/* SSL_set_tlsext_host_name(), whose macro casts away host's const
	 * (and takes a non-const SSL) */
	(void)SSL_ctrl((SSL *)(uintptr_t)ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME,
	               TLSEXT_NAMETYPE_host_name, (void *)(uintptr_t)host);
}


int
smtp_relay_tls(struct smtp_relay *r, const struct kr_cfg_relay *c,
          struct kr_err *err)
{
	X509_VERIFY_PARAM *vp;
	unsigned char ipbuf[16];
	int ret = -1;

	r->ssl_ctx = SSL_CTX_new(TLS_client_method());
	if (r->ssl_ctx == NULL) {
		kr_err_set(err, KR_ERR_IO, "smtp %s: SSL_CTX_new failed",
		           r->hostport);
		goto out;
	}
	/* TLS 1.2 or 1.3. (libesmtp 1.1's own STARTTLS hung on TLS 1.3
	 * session tickets, waiting in poll() for a reply OpenSSL already
	 * held: kairan does STARTTLS itself, see starttls().) */
	(void)SSL_CTX_set_min_proto_version(r->ssl_ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(r->ssl_ctx, SSL_VERIFY_PEER, NULL);
	if (c->ca_file != NULL) {
		if (SSL_CTX_load_verify_locations(r->ssl_ctx, c->ca_file,
		                                     NULL) != 1) {
			kr_err_set(
			    err, KR_ERR_INVALID,
			    "smtp %s: ca_file %s: cannot load certificates",
			    r->hostport, c->ca_file);
			goto out;
		}
	} else if (SSL_CTX_set_default_verify_paths(r->ssl_ctx) != 1) {
		kr_err_set(err, KR_ERR_IO,
		           "smtp %s: cannot load the system CA certificates",
		           r->hostport);
		goto out;
	}
	SSL_CTX_set_info_callback(r->ssl_ctx, on_tls_info);
	/* The handshake itself fails on a wrong name. */
	vp = SSL_CTX_get0_param(r->ssl_ctx);
	if (inet_pton(AF_INET, r->host, ipbuf) == 1 ||
	    inet_pton(AF_INET6, r->host, ipbuf) == 1)
		(void)X509_VERIFY_PARAM_set1_ip_asc(vp, r->host);
	else
		(void)X509_VERIFY_PARAM_set1_host(vp, r->host, 0);
	ret = 0;
out:
	return ret;
}

