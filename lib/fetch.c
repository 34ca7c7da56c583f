/* fetch.c — libcurl easy interface, one transfer per call. */
#include "fetch.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "buf.h"
#include "err.h"
#include "log.h"
#include "version.h"

struct sink {
	struct kr_buf *out;
	size_t max, got;
	bool too_big;
};

static pthread_once_t once = PTHREAD_ONCE_INIT;

static void
global_init(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

static size_t
on_data(char *p, size_t size, size_t n, void *ctx)
{
	struct sink *s = ctx;
	size_t len = size * n;

	if (s->got + len > s->max) {
		s->too_big = true;
		return 0; /* aborts the transfer */
	}
	if (kr_buf_append(s->out, p, len) < 0) {
		s->too_big = true;
		return 0;
	}
	s->got += len;
	return len;
}

/* Report URLs and webhooks often carry access tokens in the query. */
void
kr_fetch_redact(const char *url, char *out, size_t outsz)
{
	const char *host = strstr(url, "://"), *at, *end, *q;
	size_t n;

	host = host ? host + 3 : url;
	end = host + strcspn(host, "/?#");
	at = memchr(host, '@', (size_t)(end - host));
	q = url + strcspn(url, "?#");
	if (at != NULL)
		snprintf(out, outsz, "%.*s%.*s", (int)(host - url), url,
		         (int)(q - at - 1), at + 1);
	else
		snprintf(out, outsz, "%.*s", (int)(q - url), url);
	n = strlen(out);
	if (*q != '\0' && n + 4 < outsz)
		memcpy(out + n, "?\xe2\x80\xa6", 5);
}

/* text/…, application/octet-stream, or none at all. */
static bool
type_ok(const char *ct)
{
	if (ct == NULL || ct[0] == '\0')
		return true;
	return strncasecmp(ct, "text/", 5) == 0 ||
	       strncasecmp(ct, "application/octet-stream", 24) == 0;
}

int
kr_fetch_url(const char *url, size_t max_bytes, long timeout_s,
             struct kr_buf *out, char *ct_out, size_t ct_size,
             struct kr_err *err)
{
	CURL *h = NULL;
	CURLcode rc;
	struct sink s = {0};
	char ebuf[CURL_ERROR_SIZE] = "";
	char *ct = NULL;
	long code = 0;
	size_t start = out->len;
	char shown[512], ua[64];
	int r = -1;

	if (ct_out != NULL && ct_size > 0)
		ct_out[0] = '\0';
	kr_fetch_redact(url, shown, sizeof(shown));
	if (strncasecmp(url, "https://", 8) != 0) {
		if (strncasecmp(url, "http://", 7) != 0) {
			kr_err_set(err, KR_ERR_INVALID,
			           "%s: only https:// (or http://) URLs can be "
			           "fetched",
			           shown);
			goto out;
		}
		kr_log_warn("fetch: plain http, not verified or private "
		            "url=%s",
		            shown);
	}
	pthread_once(&once, global_init);
	if ((h = curl_easy_init()) == NULL) {
		kr_err_set(err, KR_ERR_IO, "%s: curl_easy_init failed", shown);
		goto out;
	}
	s.out = out;
	s.max = max_bytes;
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, timeout_s);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT,
	                 timeout_s < 10 ? timeout_s : 10L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)max_bytes);
	curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
	/* The operator chose the URL: the version may go there. */
	snprintf(ua, sizeof(ua), "kairan/%s", kr_version());
	curl_easy_setopt(h, CURLOPT_USERAGENT, ua);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, ebuf);
	rc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct);
	if (s.too_big || rc == CURLE_FILESIZE_EXCEEDED) {
		kr_err_set(err, KR_ERR_INVALID,
		           "%s: larger than %zu bytes, refused", shown,
		           max_bytes);
		goto out;
	}
	if (rc == CURLE_TOO_MANY_REDIRECTS) {
		kr_err_set(err, KR_ERR_INVALID, "%s: more than 5 redirects",
		           shown);
		goto out;
	}
	if (rc != CURLE_OK) {
		kr_err_set(err, KR_ERR_IO, "%s: %s", shown,
		           ebuf[0] ? ebuf : curl_easy_strerror(rc));
		goto out;
	}
	if (code < 200 || code > 299) {
		kr_err_set(err, code >= 500 ? KR_ERR_IO : KR_ERR_INVALID,
		           "%s: HTTP status %ld, expected 200", shown, code);
		goto out;
	}
	if (!type_ok(ct)) {
		kr_err_set(err, KR_ERR_INVALID,
		           "%s: Content-Type %s, expected text (text/markdown, "
		           "text/plain…)",
		           shown, ct);
		goto out;
	}
	if (ct_out != NULL && ct_size > 0)
		snprintf(ct_out, ct_size, "%s", ct ? ct : "");
	r = 0;
out:
	if (r < 0) {
		out->len = start;
		if (out->data != NULL)
			out->data[start] = '\0';
	}
	if (h != NULL)
		curl_easy_cleanup(h);
	return r;
}
