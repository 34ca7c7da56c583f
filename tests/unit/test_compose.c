/* test_compose.c — per-subscriber messages: signed links that verify,
 * VERP envelope, placeholders (escaped in HTML), the confirmation mail in
 * both languages, config values refused in headers, and the built-in
 * templates equal to config/templates/. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "buf.h"
#include "compose.h"
#include "config.h"
#include "err.h"
#include "store.h"
#include "token.h"
#include "tz.h"

static char keyfile[] = "/tmp/kairan-test-compose-XXXXXX";
static struct kr_keyring *ring;

static char s_id[] = "sips-report", s_name[] = "SIPS <セキュリティ> & 回覧";
static char s_from_name[] = "SIPS Security Report";
static char s_from_addr[] = "report@news.example.jp";
static char s_reply[] = "info@example.jp", s_lang_ja[] = "ja";
static char s_lang_en[] = "en";
static char s_footer[] = "株式会社Example / {{name}} 様 / {{report_title}} / "
                         "{{archive_url}} / {{list_name}} / {{unknown}}\n";
static char s_url[] = "https://news.example.jp";
static char s_bounce[] = "bounces.example.jp";
static char s_subject[] = "第12号 <脅威> レポート";
static char s_pre[] = "", s_text[] = "本文です。\n";
static char s_html[] = "<p>本文です。</p>\n";

static struct kr_cfg_list list;
static struct kr_config cfg;
static struct kr_report_row row;

static int
setup(void **state)
{
	struct kr_err err = {0};
	int fd;

	(void)state;
	fd = mkstemp(keyfile);
	assert_true(fd >= 0);
	close(fd);
	unlink(keyfile);
	assert_int_equal(kr_token_keyring_load(keyfile, 1, &ring, &err), 0);
	list.id = s_id;
	list.name = s_name;
	list.from_name = s_from_name;
	list.from_addr = s_from_addr;
	list.reply_to = s_reply;
	list.language = s_lang_ja;
	list.archive = true;
	list.footer = s_footer;
	cfg.public_url = s_url;
	cfg.lists = &list;
	cfg.n_lists = 1;
	cfg.delivery.bounce_domain = s_bounce;
	row.id = 42;
	snprintf(row.list_id, sizeof(row.list_id), "%s", s_id);
	row.subject = s_subject;
	row.preheader = s_pre;
	row.text = s_text;
	row.html = s_html;
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	kr_token_keyring_free(&ring);
	unlink(keyfile);
	return 0;
}

/* The decoded body of the part of the given type (caller frees). */
static char *
part(const char *msg, const char *type)
{
	const char *p = strstr(msg, type), *b, *e, *cte;
	char *raw, *out;
	size_t n, i, o = 0, outlen = 0;

	assert_non_null(p);
	cte = strstr(p, "Content-Transfer-Encoding: ");
	assert_non_null(cte);
	b = strstr(p, "\r\n\r\n");
	assert_non_null(b);
	b += 4;
	e = strstr(b, "\r\n--=_");
	if (e == NULL)
		e = b + strlen(b);
	n = (size_t)(e - b);
	raw = strndup(b, n);
	out = calloc(1, n + 1);
	if (strncmp(cte + 27, "base64", 6) == 0) {
		assert_int_equal(
		    sodium_base642bin((unsigned char *)out, n, raw, n, "\r\n",
		                      &outlen, NULL,
		                      sodium_base64_VARIANT_ORIGINAL),
		    0);
		/* text is canonical CRLF inside base64 */
		for (i = 0; i < outlen; i++)
			if (out[i] != '\r')
				out[o++] = out[i];
		out[o] = '\0';
	} else {
		for (i = 0; i < n; i++) {
			if (raw[i] == '=' && raw[i + 1] == '\r') {
				i += 2;
			} else if (raw[i] == '=') {
				char h[3] = {raw[i + 1], raw[i + 2], 0};

				out[o++] = (char)strtol(h, NULL, 16);
				i += 2;
			} else if (raw[i] != '\r') {
				out[o++] = raw[i];
			}
		}
	}
	free(raw);
	return out;
}

/* The token after "?t=" in s, checked against purpose. */
static void
verify_link(const char *s, const char *prefix, enum kr_token_purpose purpose,
            int64_t sub, int64_t report)
{
	struct kr_token_claims tc;
	struct kr_err err = {0};
	const char *p = strstr(s, prefix);
	char tok[KR_TOKEN_MAX];
	size_t n;

	assert_non_null(p);
	p += strlen(prefix);
	n = strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	              "0123456789-_");
	assert_true(n > 10 && n < sizeof(tok));
	memcpy(tok, p, n);
	tok[n] = '\0';
	assert_int_equal(
	    kr_token_verify(ring, tok, purpose, s_id, 1764115300, 0, &tc, &err),
	    0);
	assert_int_equal(tc.subscriber_id, sub);
	assert_int_equal(tc.report_id, report);
}

static void
test_compose_report(void **state)
{
	struct kr_compose_cache *c;
	struct kr_claim cl = {0};
	struct kr_buf out;
	char env[256], *text, *html;

	(void)state;
	kr_buf_init(&out, 0);
	cl.subscriber_id = 7;
	cl.report_id = 42;
	snprintf(cl.email, sizeof(cl.email), "reader@example.org");
	snprintf(cl.list_id, sizeof(cl.list_id), "%s", s_id);
	c = kr_compose_prepare(&cfg, &list, &row);
	assert_int_equal(kr_compose_report_cached(c, &cl, "Al<i>ce & Bob", ring,
	                                          1764115200, &out, env, NULL),
	                 0);
	assert_non_null(strstr(out.data, "\r\nTo: reader@example.org\r\n"));
	assert_non_null(strstr(out.data, "\r\nPrecedence: bulk\r\n"));
	assert_non_null(strstr(out.data, "\r\nFeedback-ID: 42:sips-report:"));
	assert_null(strstr(out.data, "Auto-Submitted"));
	verify_link(out.data,
	            "List-Unsubscribe: <https://news.example.jp/"
	            "unsubscribe?t=",
	            KR_TOKEN_UNSUBSCRIBE, 7, 42);
	/* VERP: bounces+TOKEN@bounce_domain with a BOUNCE token */
	assert_memory_equal(env, "bounces+", 8);
	assert_non_null(strstr(env, "@bounces.example.jp"));
	verify_link(env, "bounces+", KR_TOKEN_BOUNCE, 7, 42);

	text = part(out.data, "text/plain");
	html = part(out.data, "text/html");
	assert_memory_equal(text, "本文です。\n\n-- \n",
	                    strlen("本文です。\n\n-- \n"));
	assert_non_null(strstr(text,
	                       "/ Al<i>ce & Bob 様 / 第12号 <脅威> レポート"
	                       " / https://news.example.jp/archive/42 / "
	                       "SIPS <セキュリティ> & 回覧 / {{unknown}}\n"));
	assert_non_null(strstr(html, "/ Al&lt;i&gt;ce &amp; Bob 様 / "
	                             "第12号 &lt;脅威&gt; レポート / <a href=\""
	                             "https://news.example.jp/archive/42\">"));
	assert_non_null(
	    strstr(html, "<title>第12号 &lt;脅威&gt; レポート</title>"));
	assert_non_null(strstr(html, "<p>本文です。</p>\n"));
	assert_non_null(strstr(html, "<html lang=\"ja\">"));
	/* the standard block: sender, and no second unsubscribe line since
	 * this footer has none… it has none, so the line is there */
	assert_non_null(strstr(text, "発行者: SIPS Security Report "
	                             "<report@news.example.jp>\n"));
	assert_non_null(strstr(text, "配信停止: https://news.example.jp/"
	                             "unsubscribe?t="));
	verify_link(html,
	            "配信停止: <a href=\"https://news.example.jp/"
	            "unsubscribe?t=",
	            KR_TOKEN_UNSUBSCRIBE, 7, 42);
	free(text);
	free(html);

	/* without a bounce domain the envelope is the list address */
	cfg.delivery.bounce_domain = NULL;
	kr_buf_reset(&out);
	assert_int_equal(kr_compose_report(&cfg, &list, &row, &cl, ring,
	                                   1764115200, &out, env, NULL),
	                 0);
	assert_string_equal(env, "report@news.example.jp");
	cfg.delivery.bounce_domain = s_bounce;
	kr_compose_cache_free(&c);
	kr_compose_cache_free(&c);
	kr_buf_fini(&out);
}

/* kr_compose_report fills {{name}} from the claim: as is in text,
 * escaped in HTML, never in a header; CR/LF and <script> cannot break
 * out, and a UTF-8 character cut at the column's end is dropped. */
static void
test_compose_report_claim_name(void **state)
{
	static const char evil[] = "<script>alert(1)</script>\r\nBcc: "
	                           "victim@example.org\r\n\r\n--=_x";
	struct kr_claim cl = {0};
	struct kr_buf out;
	char env[256], *text, *html, *hdr;
	size_t n;

	(void)state;
	kr_buf_init(&out, 0);
	cl.subscriber_id = 9;
	cl.report_id = 42;
	snprintf(cl.email, sizeof(cl.email), "taro@example.org");
	snprintf(cl.list_id, sizeof(cl.list_id), "%s", s_id);
	snprintf(cl.name, sizeof(cl.name), "太郎");
	assert_int_equal(kr_compose_report(&cfg, &list, &row, &cl, ring,
	                                   1764115200, &out, env, NULL),
	                 0);
	text = part(out.data, "text/plain");
	html = part(out.data, "text/html");
	assert_non_null(strstr(text, "/ 太郎 様 /"));
	assert_non_null(strstr(html, "/ 太郎 様 /"));
	free(text);
	free(html);

	kr_buf_reset(&out);
	snprintf(cl.name, sizeof(cl.name), "%s", evil);
	assert_int_equal(kr_compose_report(&cfg, &list, &row, &cl, ring,
	                                   1764115200, &out, env, NULL),
	                 0);
	/* the headers hold none of it */
	n = (size_t)(strstr(out.data, "\r\n\r\n") - out.data);
	hdr = strndup(out.data, n);
	assert_null(strstr(hdr, "script"));
	assert_null(strstr(hdr, "victim"));
	free(hdr);
	assert_null(strstr(out.data, "\nBcc:"));
	assert_null(strstr(out.data, "\n--=_x"));
	text = part(out.data, "text/plain");
	html = part(out.data, "text/html");
	assert_non_null(strstr(text, "/ <script>alert(1)</script>  Bcc: "
	                             "victim@example.org    --=_x 様 /"));
	assert_null(strstr(html, "<script>"));
	assert_non_null(strstr(html, "/ &lt;script&gt;alert(1)&lt;/script&gt;"
	                             "  Bcc: victim@example.org    --=_x 様 /"));
	free(text);
	free(html);

	/* a name cut inside a character (column truncated) loses the
	 * partial sequence, not the mail */
	kr_buf_reset(&out);
	snprintf(cl.name, sizeof(cl.name), "太\xe9\x83");
	assert_int_equal(kr_compose_report(&cfg, &list, &row, &cl, ring,
	                                   1764115200, &out, env, NULL),
	                 0);
	text = part(out.data, "text/plain");
	assert_non_null(strstr(text, "/ 太 様 /"));
	free(text);
	kr_buf_fini(&out);
}

static void
test_compose_preheader_and_footer_unsub(void **state)
{
	static char pre[] = "今月の要点 <3",
	            foot[] = "停止: {{unsubscribe_url}}";
	struct kr_compose_cache *c;
	struct kr_claim cl = {0};
	struct kr_buf out;
	char env[256], *text, *html;

	(void)state;
	kr_buf_init(&out, 0);
	row.preheader = pre;
	list.footer = foot;
	list.language = s_lang_en;
	cl.subscriber_id = 8;
	snprintf(cl.email, sizeof(cl.email), "x@example.org");
	c = kr_compose_prepare(&cfg, &list, &row);
	assert_int_equal(kr_compose_report_cached(c, &cl, NULL, ring,
	                                          1764115200, &out, env, NULL),
	                 0);
	text = part(out.data, "text/plain");
	html = part(out.data, "text/html");
	assert_non_null(strstr(html, "display:none"));
	assert_non_null(strstr(html, ">今月の要点 &lt;3</div>"));
	assert_null(strstr(text, "今月の要点"));
	/* the list's footer has the link: the standard block does not
	 * repeat it; English block */
	assert_non_null(strstr(text, "停止: https://news.example.jp/"));
	assert_null(strstr(text, "Unsubscribe: "));
	assert_non_null(strstr(text, "Sent by: SIPS Security Report"));
	assert_non_null(strstr(html, "<html lang=\"en\">"));
	free(text);
	free(html);
	kr_compose_cache_free(&c);
	row.preheader = s_pre;
	list.footer = s_footer;
	list.language = s_lang_ja;
	kr_buf_fini(&out);
}

/* The 特定電子メール法 block: sender name, postal address, contact, the
 * sentence that the reader may stop, and the link, in both parts of a
 * report, for ja and en; the confirmation mail shows name and contact;
 * without a configured address or contact their lines are left out. */
static void
test_compose_sender_block(void **state)
{
	static char nm[] = "株式会社Example", ad[] = "東京都千代田区1-1 <本社>",
	            ct[] = "https://example.jp/contact";
	static const struct {
		char *lang;
		const char *name, *addr, *contact, *stop, *unsub;
	} want[] = {
	    {s_lang_ja, "発行者: ", "住所: ", "お問い合わせ: ",
	     "このメールの受信は、いつでも停止することができます。",
	     "配信停止: "},
	    {s_lang_en, "Sent by: ", "Address: ", "Contact: ",
	     "You may stop receiving these mails at any time.",
	     "Unsubscribe: "},
	};
	struct kr_compose_cache *c;
	struct kr_claim cl = {0};
	struct kr_buf out;
	char env[256], *text, *html, line[256];
	size_t i;

	(void)state;
	kr_buf_init(&out, 0);
	cl.subscriber_id = 9;
	snprintf(cl.email, sizeof(cl.email), "x@example.org");
	snprintf(cl.list_id, sizeof(cl.list_id), "%s", s_id);
	list.sender_name = nm;
	list.sender_address = ad;
	list.sender_contact = ct;
	for (i = 0; i < 2; i++) {
		list.language = want[i].lang;
		kr_buf_reset(&out);
		c = kr_compose_prepare(&cfg, &list, &row);
		assert_int_equal(kr_compose_report_cached(c, &cl, NULL, ring,
		                                          1764115200, &out, env,
		                                          NULL),
		                 0);
		kr_compose_cache_free(&c);
		text = part(out.data, "text/plain");
		html = part(out.data, "text/html");
		snprintf(line, sizeof(line), "%s%s\n", want[i].name, nm);
		assert_non_null(strstr(text, line));
		snprintf(line, sizeof(line), "%s%s\n", want[i].addr, ad);
		assert_non_null(strstr(text, line));
		snprintf(line, sizeof(line), "%s%s\n", want[i].contact, ct);
		assert_non_null(strstr(text, line));
		assert_non_null(strstr(text, want[i].stop));
		snprintf(line, sizeof(line),
		         "%shttps://news.example.jp/"
		         "unsubscribe?t=",
		         want[i].unsub);
		assert_non_null(strstr(text, line));
		snprintf(line, sizeof(line), "%s%s<br>", want[i].name, nm);
		assert_non_null(strstr(html, line));
		snprintf(line, sizeof(line),
		         "%s東京都千代田区1-1 &lt;本社&gt;<br>", want[i].addr);
		assert_non_null(strstr(html, line));
		snprintf(line, sizeof(line), "%s<a href=\"%s\">",
		         want[i].contact, ct);
		assert_non_null(strstr(html, line));
		assert_non_null(strstr(html, want[i].stop));
		snprintf(line, sizeof(line),
		         "%s<a href=\"https://news.example.jp/"
		         "unsubscribe?t=",
		         want[i].unsub);
		assert_non_null(strstr(html, line));
		free(text);
		free(html);

		kr_buf_reset(&out);
		assert_int_equal(kr_compose_confirm(&cfg, &list, &cl, ring,
		                                    1764115200, &out, env,
		                                    NULL),
		                 0);
		text = part(out.data, "text/plain");
		html = part(out.data, "text/html");
		snprintf(line, sizeof(line), "%s%s\n", want[i].name, nm);
		assert_non_null(strstr(text, line));
		snprintf(line, sizeof(line), "%s%s\n", want[i].contact, ct);
		assert_non_null(strstr(text, line));
		assert_null(strstr(text, want[i].addr));
		snprintf(line, sizeof(line), "%s%s<br>", want[i].name, nm);
		assert_non_null(strstr(html, line));
		snprintf(line, sizeof(line), "%s<a href=\"%s\">",
		         want[i].contact, ct);
		assert_non_null(strstr(html, line));
		free(text);
		free(html);
	}
	/* Date: in the list's zone (a fixed offset here; the zone files
	 * are test_config's) */
	{
		struct kr_tz *tz = NULL;

		assert_int_equal(kr_tz_load("+09:00", &tz, NULL), 0);
		list.tz = tz;
		kr_buf_reset(&out);
		c = kr_compose_prepare(&cfg, &list, &row);
		assert_int_equal(kr_compose_report_cached(c, &cl, NULL, ring,
		                                          1764115200, &out, env,
		                                          NULL),
		                 0);
		kr_compose_cache_free(&c);
		/* 2025-11-26 00:00:00 UTC */
		assert_non_null(strstr(out.data, "\r\nDate: Wed, 26 Nov 2025 "
		                                 "09:00:00 +0900\r\n"));
		kr_buf_reset(&out);
		assert_int_equal(kr_compose_confirm(&cfg, &list, &cl, ring,
		                                    1764115200, &out, env,
		                                    NULL),
		                 0);
		assert_non_null(strstr(out.data, "\r\nDate: Wed, 26 Nov 2025 "
		                                 "09:00:00 +0900\r\n"));
		list.tz = NULL;
		kr_tz_free(&tz);
	}
	/* none configured (an en list may): the From names the sender and
	 * the address and contact lines are left out */
	list.sender_name = list.sender_address = list.sender_contact = NULL;
	kr_buf_reset(&out);
	c = kr_compose_prepare(&cfg, &list, &row);
	assert_int_equal(kr_compose_report_cached(c, &cl, NULL, ring,
	                                          1764115200, &out, env, NULL),
	                 0);
	kr_compose_cache_free(&c);
	text = part(out.data, "text/plain");
	assert_non_null(strstr(text, "Sent by: SIPS Security Report "
	                             "<report@news.example.jp>\n"));
	assert_null(strstr(text, "Address: "));
	assert_null(strstr(text, "Contact: "));
	assert_non_null(strstr(text, "You may stop receiving"));
	free(text);
	list.language = s_lang_ja;
	kr_buf_fini(&out);
}

/* An iso-2022-jp list: the message is ISO-2022-JP, 7bit, no byte above
 * 0x7F; a subscriber whose name or address it cannot carry gets that one
 * message in UTF-8; a report it cannot carry goes in UTF-8 (utf-8
 * policy) or with substitutes (substitute). */
static void
test_compose_iso2022jp(void **state)
{
	static char emoji_subject[] = "第12号 🎉", kishu[] = "第①号 ㈱";
	struct kr_compose_cache *c;
	struct kr_claim cl = {0};
	struct kr_buf out;
	char env[256];
	size_t i;
	bool high;

	(void)state;
	kr_buf_init(&out, 0);
	cl.subscriber_id = 11;
	snprintf(cl.list_id, sizeof(cl.list_id), "%s", s_id);
	snprintf(cl.email, sizeof(cl.email), "x@example.org");
	list.charset = KR_CFG_CHARSET_ISO2022JP;
	list.unrepresentable = KR_CFG_UNREP_SUBSTITUTE;
	c = kr_compose_prepare(&cfg, &list, &row);
	assert_int_equal(kr_compose_report_cached(c, &cl, "山田", ring,
	                                          1764115200, &out, env, NULL),
	                 0);
	for (i = 0, high = false; i < out.len; i++)
		high |= (unsigned char)out.data[i] >= 0x80;
	assert_false(high);
	assert_non_null(strstr(out.data, "text/plain; charset=ISO-2022-JP; "
	                                 "format=flowed; delsp=yes\r\n"
	                                 "Content-Transfer-Encoding: 7bit"));
	assert_non_null(strstr(out.data, "text/html; charset=ISO-2022-JP\r\n"
	                                 "Content-Transfer-Encoding: 7bit"));
	assert_non_null(strstr(out.data, "Subject: =?ISO-2022-JP?B?"));
	/* a name with an emoji: this message in UTF-8 */
	kr_buf_reset(&out);
	assert_int_equal(kr_compose_report_cached(c, &cl, "山田🎉", ring,
	                                          1764115200, &out, env, NULL),
	                 0);
	assert_non_null(strstr(out.data, "text/plain; charset=utf-8"));
	/* an internationalized address: in UTF-8 too */
	kr_buf_reset(&out);
	snprintf(cl.email, sizeof(cl.email), "ユーザー@example.jp");
	assert_int_equal(kr_compose_report_cached(c, &cl, NULL, ring,
	                                          1764115200, &out, env, NULL),
	                 0);
	assert_non_null(strstr(out.data, "text/plain; charset=utf-8"));
	snprintf(cl.email, sizeof(cl.email), "x@example.org");
	kr_compose_cache_free(&c);
	/* the confirmation mail follows the charset */
	kr_buf_reset(&out);
	assert_int_equal(kr_compose_confirm(&cfg, &list, &cl, ring, 1764115200,
	                                    &out, env, NULL),
	                 0);
	assert_non_null(strstr(out.data, "text/plain; charset=ISO-2022-JP"));
	assert_non_null(strstr(out.data, "<meta charset=\"iso-2022-jp\">"));
	/* substitutes in the subject; an emoji: the report in UTF-8 */
	row.subject = kishu;
	kr_buf_reset(&out);
	c = kr_compose_prepare(&cfg, &list, &row);
	assert_int_equal(kr_compose_report_cached(c, &cl, NULL, ring,
	                                          1764115200, &out, env, NULL),
	                 0);
	kr_compose_cache_free(&c);
	/* (1)(株) in ISO-2022-JP: "第" ESC ( B "(1)" … */
	assert_non_null(strstr(out.data, "Subject: =?ISO-2022-JP?B?"));
	row.subject = emoji_subject;
	kr_buf_reset(&out);
	c = kr_compose_prepare(&cfg, &list, &row);
	assert_int_equal(kr_compose_report_cached(c, &cl, NULL, ring,
	                                          1764115200, &out, env, NULL),
	                 0);
	kr_compose_cache_free(&c);
	assert_non_null(strstr(out.data, "Subject: =?UTF-8?B?"));
	assert_non_null(strstr(out.data, "text/plain; charset=utf-8"));
	row.subject = s_subject;
	list.charset = KR_CFG_CHARSET_UTF8;
	kr_buf_fini(&out);
}

static void
test_compose_report_thread_cache(void **state)
{
	/* kr_compose_report reuses its per-thread cache only for the same
	 * inputs: a changed footer (config reload) shows at once */
	static char foot2[] = "新しいフッター {{unsubscribe_url}}\n";
	struct kr_claim cl = {0};
	struct kr_buf out;
	char env[256], *text;

	(void)state;
	kr_buf_init(&out, 0);
	snprintf(cl.email, sizeof(cl.email), "x@example.org");
	assert_int_equal(
	    kr_compose_report(&cfg, &list, &row, &cl, ring, 1, &out, env, NULL),
	    0);
	text = part(out.data, "text/plain");
	assert_non_null(strstr(text, "株式会社Example"));
	free(text);
	list.footer = foot2;
	kr_buf_reset(&out);
	assert_int_equal(
	    kr_compose_report(&cfg, &list, &row, &cl, ring, 1, &out, env, NULL),
	    0);
	text = part(out.data, "text/plain");
	assert_null(strstr(text, "株式会社Example"));
	assert_non_null(strstr(text, "新しいフッター https://"));
	free(text);
	list.footer = s_footer;
	kr_buf_fini(&out);
}

static void
test_compose_confirm(void **state)
{
	static char ascii_name[] = "SIPS Report";
	struct kr_claim cl = {0};
	struct kr_buf out;
	char env[256], *text;

	(void)state;
	kr_buf_init(&out, 0);
	cl.kind = KR_DELIVERY_CONFIRM;
	cl.subscriber_id = 9;
	snprintf(cl.email, sizeof(cl.email), "new@example.org");
	/* the claim carries the name now: the confirmation still never
	 * shows it (a spam carrier) */
	snprintf(cl.name, sizeof(cl.name), "CHEAP-PILLS-NAME");
	assert_int_equal(kr_compose_confirm(&cfg, &list, &cl, ring, 1764115200,
	                                    &out, env, NULL),
	                 0);
	assert_null(strstr(out.data, "CHEAP-PILLS-NAME"));
	assert_non_null(strstr(out.data, "\r\nAuto-Submitted: auto-generated"));
	assert_null(strstr(out.data, "List-Unsubscribe"));
	assert_null(strstr(out.data, "Precedence"));
	assert_non_null(strstr(out.data, "\r\nTo: new@example.org\r\n"));
	text = part(out.data, "text/plain");
	assert_non_null(strstr(text, "（new@example.org）"));
	assert_null(strstr(text, "CHEAP-PILLS-NAME"));
	assert_non_null(strstr(text, "登録を確認する"));
	assert_non_null(strstr(text, "破棄してください"));
	verify_link(
	    text, "https://news.example.jp/confirm?t=", KR_TOKEN_CONFIRM, 9, 0);
	verify_link(env, "bounces+", KR_TOKEN_BOUNCE, 9, 0);
	free(text);
	text = part(out.data, "text/html");
	verify_link(text, "<a href=\"https://news.example.jp/confirm?t=",
	            KR_TOKEN_CONFIRM, 9, 0);
	free(text);

	list.language = s_lang_en;
	list.name = ascii_name;
	kr_buf_reset(&out);
	assert_int_equal(kr_compose_confirm(&cfg, &list, &cl, ring, 1764115200,
	                                    &out, env, NULL),
	                 0);
	assert_non_null(strstr(out.data, "\r\nSubject: Please confirm your "
	                                 "subscription to SIPS Report\r\n"));
	text = part(out.data, "text/plain");
	assert_non_null(strstr(text, "ignore this mail"));
	free(text);
	list.language = s_lang_ja;
	list.name = s_name;
	kr_buf_fini(&out);
}

static void
test_compose_config_injection(void **state)
{
	static char bad_name[] = "SIPS\r\nBcc: victim@example.org";
	static char bad_from[] = "Report\nX-Evil: 1";
	struct kr_claim cl = {0};
	struct kr_buf out;
	struct kr_err err = {0};
	char env[256];

	(void)state;
	kr_buf_init(&out, 0);
	snprintf(cl.email, sizeof(cl.email), "x@example.org");
	list.name = bad_name;
	assert_int_equal(
	    kr_compose_report(&cfg, &list, &row, &cl, ring, 1, &out, env, &err),
	    -1);
	assert_int_equal(err.code, KR_ERR_INVALID);
	list.name = s_name;
	list.from_name = bad_from;
	assert_int_equal(
	    kr_compose_confirm(&cfg, &list, &cl, ring, 1, &out, env, &err), -1);
	list.from_name = s_from_name;
	snprintf(cl.email, sizeof(cl.email), "x@example.org\r\nBcc: y@z");
	assert_int_equal(
	    kr_compose_report(&cfg, &list, &row, &cl, ring, 1, &out, env, &err),
	    -1);
	kr_buf_fini(&out);
}

static void
test_compose_templates_match_files(void **state)
{
	static const char *const names[] = {"report.html",    "report.txt",
	                                    "footer.ja.txt",  "footer.en.txt",
	                                    "confirm.ja.txt", "confirm.en.txt"};
	const char *root = getenv("KAIRAN_ROOT");
	char path[1024], buf[8192];
	size_t i, n;
	FILE *f;

	(void)state;
	for (i = 0; i < KR_NELEM(names); i++) {
		snprintf(path, sizeof(path), "%s/config/templates/%s",
		         root ? root : ".", names[i]);
		f = fopen(path, "rb");
		assert_non_null(f);
		n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[n] = '\0';
		assert_non_null(kr_compose_template(names[i]));
		assert_string_equal(kr_compose_template(names[i]), buf);
	}
	assert_null(kr_compose_template("nope"));
}

static void
test_compose_link(void **state)
{
	char out[128];

	(void)state;
	kr_compose_link(&cfg, "confirm", "AbC-_", out, sizeof(out));
	assert_string_equal(out, "https://news.example.jp/confirm?t=AbC-_");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_compose_report),
	    cmocka_unit_test(test_compose_report_claim_name),
	    cmocka_unit_test(test_compose_preheader_and_footer_unsub),
	    cmocka_unit_test(test_compose_report_thread_cache),
	    cmocka_unit_test(test_compose_confirm),
	    cmocka_unit_test(test_compose_config_injection),
	    cmocka_unit_test(test_compose_templates_match_files),
	    cmocka_unit_test(test_compose_sender_block),
	    cmocka_unit_test(test_compose_iso2022jp),
	    cmocka_unit_test(test_compose_link),
	};

	return cmocka_run_group_tests_name("compose", tests, setup, teardown);
}
