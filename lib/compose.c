/* compose.c — the personal message for one delivery: the list's layout and
 * footer around the report, the subscriber's signed links, handed to mime.
 *
 * Speed: everything that does not depend on the subscriber (layout, report
 * body, their encodings, the subject) is built once per report in a
 * struct kr_compose_cache; per message only the footer (unsubscribe link,
 * name) is expanded and encoded, and the headers written. Placeholders
 * that depend on the subscriber ({{unsubscribe_url}}, {{name}}) are
 * therefore expanded in the footer, which the layout puts after the body;
 * the report body itself is never searched for placeholders. */
#include "compose.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "config.h"
#include "err.h"
#include "jis.h"
#include "mime.h"
#include "store.h"
#include "token.h"
#include "tz.h"
#include "xmem.h"

/* The built-in templates; config/templates/ holds the same text (a unit
 * test keeps them equal). */
static const struct {
	const char *name;
	const char *text;
} templates[] = {
    {"report.html",
     "<!DOCTYPE html>\n"
     "<html lang=\"{{lang}}\">\n"
     "<head>\n"
     "<meta charset=\"{{charset}}\">\n"
     "<meta name=\"viewport\" content=\"width=device-width, "
     "initial-scale=1\">\n"
     "<title>{{report_title}}</title>\n"
     "</head>\n"
     "<body style=\"margin:0;padding:0;background:#ffffff;color:#222222;\">\n"
     "{{preheader}}<div style=\"max-width:640px;margin:0 "
     "auto;padding:16px;font-family:sans-serif;line-height:1.7;\">\n"
     "{{body}}\n"
     "<hr style=\"border:none;border-top:1px solid #cccccc;margin:32px 0 "
     "16px;\">\n"
     "<div style=\"font-size:13px;color:#444444;\">\n"
     "{{footer}}\n"
     "</div>\n"
     "</div>\n"
     "</body>\n"
     "</html>\n"},
    {"report.txt", "{{body}}\n"
                   "-- \n"
                   "{{footer}}\n"},
    /* the 特定電子メール法 (Article 4) block: sender, postal address,
     * contact, that the reader may stop, how; a line whose sender field
     * is not configured is left out */
    {"footer.ja.txt",
     "このメールは「{{list_name}}」にご登録いただいた方にお送りしています。\n"
     "発行者: {{sender_name}}\n"
     "住所: {{sender_address}}\n"
     "お問い合わせ: {{sender_contact}}\n"
     "このメールの受信は、いつでも停止することができます。\n"
     "配信停止: {{unsubscribe_url}}\n"},
    {"footer.en.txt",
     "You receive this because you subscribed to {{list_name}}.\n"
     "Sent by: {{sender_name}}\n"
     "Address: {{sender_address}}\n"
     "Contact: {{sender_contact}}\n"
     "You may stop receiving these mails at any time.\n"
     "Unsubscribe: {{unsubscribe_url}}\n"},
    {"confirm.ja.txt", "Subject: 配信登録の確認をお願いします\n"
                       "このメールアドレス（{{email}}）で「{{list_name}}"
                       "」の配信登録のお申し込みがありました。\n"
                       "登録を完了するには、次のリンクを開き、表示されるページ"
                       "の「登録を確認する」ボタンを押してください。\n"
                       "\n"
                       "{{confirm_url}}\n"
                       "\n"
                       "お心当たりがない場合や登録をやめる場合は、このメールを"
                       "破棄してください。確認されない限り登録は完了せず、今後"
                       "このリストからメールが届くことはありません。\n"
                       "\n"
                       "このメールは自動送信です。\n"
                       "発行者: {{sender_name}}\n"
                       "お問い合わせ: {{sender_contact}}\n"},
    {"confirm.en.txt",
     "Subject: Please confirm your subscription to {{list_name}}\n"
     "Someone, probably you, asked to subscribe this address ({{email}}) to "
     "{{list_name}}.\n"
     "To complete the subscription, open the link below and press the "
     "\"Confirm\" button on the page it shows.\n"
     "\n"
     "{{confirm_url}}\n"
     "\n"
     "If you did not ask for this, or changed your mind, simply ignore this "
     "mail. Unless the subscription is confirmed, it is not completed and you "
     "will get no mail from this list.\n"
     "\n"
     "This message was sent automatically.\n"
     "Sent by: {{sender_name}}\n"
     "Contact: {{sender_contact}}\n"},
};

const char *
kr_compose_template(const char *name)
{
	size_t i;

	for (i = 0; i < KR_NELEM(templates); i++)
		if (strcmp(templates[i].name, name) == 0)
			return templates[i].text;
	return NULL;
}

/* ---- compiled templates: literal runs and per-subscriber slots ---- */

enum seg_kind { SEG_LIT, SEG_UNSUB, SEG_NAME, SEG_CONFIRM, SEG_EMAIL };

struct seg {
	enum seg_kind kind;
	char *lit;
	size_t len;
};

struct tpl {
	struct seg *v;
	size_t n;
};

/* How a template's own text and the values put into it are written. */
enum tpl_mode {
	MODE_TEXT,      /* text into text/plain: as is */
	MODE_HTML_TEXT, /* text into HTML: escaped, line ends get <br> */
	MODE_HTML,      /* HTML template: kept; values escaped */
};

/* Values known when a template is compiled (NULL: not known here). */
struct vals {
	const char *list_name, *report_title, *archive_url, *sender, *lang;
	const char *preheader_html; /* already HTML */
	const char *date;
	const char *charset; /* "utf-8" or "iso-2022-jp" */
	/* the sender block: name (never NULL once set: falls back to the
	 * From), address and contact (NULL: their lines are left out) */
	const char *sender_name, *sender_address, *sender_contact;
};

static void
put(struct kr_buf *b, const char *p, size_t n)
{
	if (kr_buf_append(b, p, n) < 0)
		abort(); /* unbounded buffers: xmem aborts first */
}

static void
puts_(struct kr_buf *b, const char *s)
{
	put(b, s, strlen(s));
}

/* HTML-escapes s[0..n); with br, line ends become "<br>\n". */
static void
put_esc(struct kr_buf *b, const char *s, size_t n, bool br)
{
	size_t i, start = 0;
	const char *rep;

	for (i = 0; i < n; i++) {
		switch (s[i]) {
		case '&':
			rep = "&amp;";
			break;
		case '<':
			rep = "&lt;";
			break;
		case '>':
			rep = "&gt;";
			break;
		case '"':
			rep = "&quot;";
			break;
		case '\'':
			rep = "&#39;";
			break;
		case '\n':
			rep = br ? "<br>\n" : "\n";
			break;
		default:
			continue;
		}
		put(b, s + start, i - start);
		puts_(b, rep);
		start = i + 1;
	}
	put(b, s + start, n - start);
}

/* A value in the template's mode; URLs become links in HTML. */
static void
put_val(struct kr_buf *b, const char *v, enum tpl_mode mode, bool url)
{
	if (mode == MODE_TEXT) {
		puts_(b, v);
	} else if (url && v[0] != '\0') {
		puts_(b, "<a href=\"");
		put_esc(b, v, strlen(v), false);
		puts_(b, "\">");
		put_esc(b, v, strlen(v), false);
		puts_(b, "</a>");
	} else {
		put_esc(b, v, strlen(v), false);
	}
}

static void
tpl_push(struct tpl *t, enum seg_kind kind, struct kr_buf *lit)
{
	if (lit->len > 0) {
		t->v = kr_xrealloc(t->v, (t->n + 1) * sizeof(*t->v));
		t->v[t->n].kind = SEG_LIT;
		t->v[t->n].len = lit->len;
		t->v[t->n].lit = kr_buf_steal(lit);
		t->n++;
	}
	if (kind != SEG_LIT) {
		t->v = kr_xrealloc(t->v, (t->n + 1) * sizeof(*t->v));
		t->v[t->n].kind = kind;
		t->v[t->n].lit = NULL;
		t->v[t->n].len = 0;
		t->n++;
	}
}

static void
tpl_fini(struct tpl *t)
{
	size_t i;

	for (i = 0; i < t->n; i++)
		free(t->v[i].lit);
	free(t->v);
	t->v = NULL;
	t->n = 0;
}

/* Appends src[0..n) to t: known values substituted, subscriber values as
 * slots, unknown placeholders kept as written. */
static void
tpl_add(struct tpl *t, struct kr_buf *lit, const char *src, size_t n,
        enum tpl_mode mode, const struct vals *v)
{
	size_t i = 0, start = 0, e;
	char key[32];
	const char *val;
	bool url;

	while (i + 1 < n) {
		const char *close;

		if (src[i] != '{' || src[i + 1] != '{') {
			i++;
			continue;
		}
		close = memmem(src + i + 2, n - i - 2, "}}", 2);
		if (close == NULL ||
		    (size_t)(close - src - i - 2) >= sizeof(key)) {
			i++;
			continue;
		}
		e = (size_t)(close - src);
		memcpy(key, src + i + 2, e - i - 2);
		key[e - i - 2] = '\0';
		val = NULL;
		url = false;
		if (strcmp(key, "list_name") == 0) {
			val = v->list_name;
		} else if (strcmp(key, "report_title") == 0) {
			val = v->report_title;
		} else if (strcmp(key, "archive_url") == 0) {
			val = v->archive_url;
			url = true;
		} else if (strcmp(key, "sender") == 0) {
			val = v->sender;
		} else if (strcmp(key, "lang") == 0) {
			val = v->lang;
		} else if (strcmp(key, "date") == 0) {
			val = v->date;
		} else if (strcmp(key, "charset") == 0) {
			val = v->charset ? v->charset : "utf-8";
		} else if (strcmp(key, "sender_name") == 0) {
			val = v->sender_name ? v->sender_name : v->sender;
		} else if (strcmp(key, "sender_address") == 0) {
			val = v->sender_address ? v->sender_address : "";
		} else if (strcmp(key, "sender_contact") == 0) {
			val = v->sender_contact ? v->sender_contact : "";
			url = strncmp(val, "https://", 8) == 0 ||
			      strncmp(val, "http://", 7) == 0;
		} else if (strcmp(key, "preheader") == 0) {
			val = v->preheader_html;
		} else if (strcmp(key, "unsubscribe_url") != 0 &&
		           strcmp(key, "name") != 0 &&
		           strcmp(key, "confirm_url") != 0 &&
		           strcmp(key, "email") != 0) {
			i++;
			continue; /* not ours: left as written */
		}
		/* the text before it */
		if (mode == MODE_HTML_TEXT)
			put_esc(lit, src + start, i - start, true);
		else
			put(lit, src + start, i - start);
		if (strcmp(key, "preheader") == 0) {
			if (mode == MODE_HTML && val != NULL)
				puts_(lit, val);
		} else if (val != NULL) {
			put_val(lit, val, mode, url);
		} else if (strcmp(key, "unsubscribe_url") == 0) {
			tpl_push(t, SEG_UNSUB, lit);
		} else if (strcmp(key, "confirm_url") == 0) {
			tpl_push(t, SEG_CONFIRM, lit);
		} else if (strcmp(key, "email") == 0) {
			tpl_push(t, SEG_EMAIL, lit);
		} else {
			tpl_push(t, SEG_NAME, lit);
		}
		i = start = e + 2;
	}
	if (mode == MODE_HTML_TEXT)
		put_esc(lit, src + start, n - start, true);
	else
		put(lit, src + start, n - start);
}

/* The per-message values. */
struct subst {
	const char *unsub_url, *name, *confirm_url, *email;
};

static void
tpl_render(const struct tpl *t, struct kr_buf *out, bool html,
           const struct subst *s)
{
	size_t i;
	const char *v;

	for (i = 0; i < t->n; i++) {
		const struct seg *g = &t->v[i];

		if (g->kind == SEG_LIT) {
			put(out, g->lit, g->len);
			continue;
		}
		v = g->kind == SEG_UNSUB     ? s->unsub_url
		    : g->kind == SEG_CONFIRM ? s->confirm_url
		    : g->kind == SEG_EMAIL   ? s->email
		                             : s->name;
		put_val(out, v ? v : "", html ? MODE_HTML_TEXT : MODE_TEXT,
		        (g->kind == SEG_UNSUB || g->kind == SEG_CONFIRM));
	}
}

/* ---- the report cache ---- */

struct kr_compose_cache {
	char *public_url, *bounce_domain;
	char *list_id, *from_name, *from_addr, *reply_to, *list_name;
	char *unsub_mailto, *list_id_hdr, *feedback_id, *subject;
	int64_t report_id;
	/* what else the cache was built from, for kr_compose_report's
	 * per-thread reuse */
	char hash[65];
	char *footer, *language, *preheader;
	char *sender_name, *sender_address, *sender_contact;
	bool archive, allow_html;
	struct kr_mime_part *text, *html;
	struct tpl text_tail, html_tail;
	/* an iso-2022-jp list: the same, made sendable (substitutions done)
	 * and encoded; jis false when this report goes in UTF-8 */
	int charset, unrep;
	bool jis;
	struct kr_tz *tz; /* the list's Date: zone (NULL: UTC) */
	char *subject_j, *from_name_j, *list_name_j;
	struct kr_mime_part *text_j, *html_j;
};

static void
message_id(const char *from_addr, int64_t report_id, int64_t sub_id,
           const char *hash, char *out, size_t outsz)
{
	const char *dom = strrchr(from_addr, '@');

	snprintf(out, outsz, "%lld.%lld.%.12s@%s", (long long)report_id,
	         (long long)sub_id, hash && hash[0] ? hash : "0",
	         dom ? dom + 1 : "localhost");
}

void
kr_compose_message_id(const struct kr_cfg_list *list, int64_t report_id,
                      int64_t sub_id, const char *hash, char *out, size_t outsz)
{
	message_id(list->from_addr, report_id, sub_id, hash, out, outsz);
}

void
kr_compose_link(const struct kr_config *cfg, const char *path,
                const char *token, char *out, size_t outsz)
{
	snprintf(out, outsz, "%s/%s?t=%s", cfg->public_url, path, token);
}

static const char *
lang_of(const struct kr_cfg_list *list)
{
	return list->language && strcmp(list->language, "ja") == 0 ? "ja"
	                                                           : "en";
}

static char *
sender_of(const struct kr_cfg_list *list)
{
	if (list->from_name && list->from_name[0])
		return kr_xasprintf("%s <%s>", list->from_name,
		                    list->from_addr);
	return kr_xstrdup(list->from_addr);
}

/* Adds one template line, or nothing when it shows a sender field that
 * is not configured. */
static void
add_line(struct tpl *t, struct kr_buf *lit, const char *p, size_t n,
         enum tpl_mode mode, const struct vals *v)
{
	if ((v->sender_address == NULL &&
	     memmem(p, n, "{{sender_address}}", 18) != NULL) ||
	    (v->sender_contact == NULL &&
	     memmem(p, n, "{{sender_contact}}", 18) != NULL))
		return;
	tpl_add(t, lit, p, n, mode, v);
}

/* add_line for every line of text. */
static void
add_lines(struct tpl *t, struct kr_buf *lit, const char *text,
          enum tpl_mode mode, const struct vals *v)
{
	const char *p, *e;

	for (p = text; *p != '\0'; p = e) {
		e = strchr(p, '\n');
		e = e ? e + 1 : p + strlen(p);
		add_line(t, lit, p, (size_t)(e - p), mode, v);
	}
}

/* Adds the footer (the list's own, then the standard block naming the
 * sender, address, contact and how to stop) to t in the given mode. */
static void
add_footer(struct tpl *t, struct kr_buf *lit, const struct kr_cfg_list *list,
           enum tpl_mode mode, const struct vals *v)
{
	char name[32];
	const char *std, *p, *e;
	bool has_unsub = false;

	if (list->footer && list->footer[0]) {
		tpl_add(t, lit, list->footer, strlen(list->footer), mode, v);
		has_unsub = strstr(list->footer, "{{unsubscribe_url}}") != NULL;
		if (list->footer[strlen(list->footer) - 1] != '\n')
			tpl_add(t, lit, "\n", 1, mode, v);
	}
	snprintf(name, sizeof(name), "footer.%s.txt", lang_of(list));
	if ((std = kr_compose_template(name)) == NULL)
		abort(); /* built in for both languages */
	/* the standard block, without its unsubscribe line when the list's
	 * footer has the link already */
	for (p = std; *p != '\0'; p = e) {
		e = strchr(p, '\n');
		e = e ? e + 1 : p + strlen(p);
		if (has_unsub && memmem(p, (size_t)(e - p),
		                        "{{unsubscribe_url}}", 19) != NULL)
			continue;
		add_line(t, lit, p, (size_t)(e - p), mode, v);
	}
}

/* An address that can stand in an ISO-2022-JP message's To: (an
 * internationalized local part cannot: that message goes in UTF-8). */
static bool
ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return false;
	return true;
}

/* s made sendable as ISO-2022-JP under the list's policy (substitutions
 * when it is substitute), or NULL when a character would be left that
 * ISO-2022-JP cannot carry: the caller then sends UTF-8. NULL s gives
 * "". The caller frees. */
static char *
jis_ready(const char *s, size_t n, int unrep)
{
	struct kr_buf b;

	kr_buf_init(&b, 0);
	if (s != NULL && kr_jis_fix(s, n, unrep == KR_CFG_UNREP_SUBSTITUTE, &b,
	                            NULL, NULL) > 0) {
		kr_buf_fini(&b);
		return NULL;
	}
	return kr_buf_steal(&b);
}

static char *
jis_ready_str(const char *s, int unrep)
{
	return jis_ready(s, s ? strlen(s) : 0, unrep);
}

/* Splits a layout at "{{body}}" and "{{footer}}". */
static int
split_layout(const char *l, const char **body, const char **footer)
{
	*body = strstr(l, "{{body}}");
	*footer = *body ? strstr(*body, "{{footer}}") : NULL;
	return *body && *footer ? 0 : -1;
}

/* The ISO-2022-JP side of the cache: every string and prefix made
 * sendable; any of them that cannot be leaves c->jis false (this report
 * goes in UTF-8). The tails are checked per message. */
static void
prepare_jis(struct kr_compose_cache *c, const struct kr_cfg_list *list,
            const struct kr_report_row *r, const char *text_ready,
            struct vals *v, const char *lay, const char *body,
            const char *footer)
{
	struct kr_buf pre;
	struct tpl scratch = {0};
	char *t = NULL;

	kr_buf_init(&pre, 0);
	c->subject_j = jis_ready_str(r->subject, c->unrep);
	c->from_name_j = jis_ready_str(list->from_name, c->unrep);
	c->list_name_j = jis_ready_str(list->name, c->unrep);
	if (c->subject_j == NULL || c->from_name_j == NULL ||
	    c->list_name_j == NULL)
		goto out;
	/* text/plain prefix: the UTF-8 one, made sendable */
	if (text_ready == NULL ||
	    (c->text_j = kr_mime_part_new_jis(text_ready, strlen(text_ready),
	                                      true)) == NULL)
		goto out;
	/* text/html prefix: the layout says charset=iso-2022-jp */
	v->charset = "iso-2022-jp";
	tpl_add(&scratch, &pre, lay, (size_t)(body - lay), MODE_HTML, v);
	puts_(&pre, r->html ? r->html : "");
	tpl_add(&scratch, &pre, body + 8, (size_t)(footer - body - 8),
	        MODE_HTML, v);
	v->charset = "utf-8";
	if ((t = jis_ready(pre.data, pre.len, c->unrep)) == NULL ||
	    (c->html_j = kr_mime_part_new_jis(t, strlen(t), false)) == NULL)
		goto out;
	c->jis = true;
out:
	free(t);
	tpl_fini(&scratch);
	kr_buf_fini(&pre);
}

struct kr_compose_cache *
kr_compose_prepare(const struct kr_config *cfg, const struct kr_cfg_list *list,
                   const struct kr_report_row *r)
{
	struct kr_compose_cache *c = kr_xcalloc(1, sizeof(*c));
	struct kr_buf pre, lit;
	struct tpl scratch = {0};
	struct vals v = {0};
	const char *lay, *body, *footer, *dom;
	char *archive = NULL, *sender = NULL, *ph = NULL, *text_j = NULL;
	size_t i;

	kr_buf_init(&pre, 0);
	kr_buf_init(&lit, 0);
	c->public_url = kr_xstrdup(cfg->public_url);
	c->bounce_domain = kr_xstrdup(cfg->delivery.bounce_domain);
	c->list_id = kr_xstrdup(list->id);
	c->from_name = kr_xstrdup(list->from_name);
	c->from_addr = kr_xstrdup(list->from_addr);
	c->reply_to = kr_xstrdup(list->reply_to);
	c->list_name = kr_xstrdup(list->name);
	c->unsub_mailto = kr_xstrdup(list->unsubscribe_mailto);
	dom = strrchr(list->from_addr, '@');
	c->list_id_hdr = kr_xasprintf("%s.%s", list->id, dom ? dom + 1 : "");
	c->feedback_id =
	    kr_xasprintf("%lld:%s:kairan", (long long)r->id, list->id);
	c->subject = kr_xstrdup(r->subject);
	c->report_id = r->id;
	memcpy(c->hash, r->hash, sizeof(c->hash));
	c->hash[sizeof(c->hash) - 1] = '\0';
	c->footer = kr_xstrdup(list->footer);
	c->language = kr_xstrdup(list->language);
	c->preheader = kr_xstrdup(r->preheader);
	c->archive = list->archive;
	c->allow_html = list->allow_html;
	c->charset = list->charset;
	c->unrep = list->unrepresentable;
	if (list->tz != NULL &&
	    kr_tz_load(kr_tz_name(list->tz), &c->tz, NULL) < 0)
		c->tz = NULL; /* loaded once by the config: cannot fail now */
	c->sender_name = kr_xstrdup(list->sender_name);
	c->sender_address = kr_xstrdup(list->sender_address);
	c->sender_contact = kr_xstrdup(list->sender_contact);

	archive = list->archive && r->id > 0
	              ? kr_xasprintf("%s/archive/%lld", cfg->public_url,
	                             (long long)r->id)
	              : kr_xstrdup("");
	sender = sender_of(list);
	if (r->preheader && r->preheader[0]) {
		/* hidden preview text for mail clients' list view */
		put_esc(&lit, r->preheader, strlen(r->preheader), false);
		ph = kr_xasprintf("<div style=\"display:none;font-size:1px;"
		                  "line-height:1px;max-height:0;max-width:0;"
		                  "opacity:0;overflow:hidden;\">%s</div>\n",
		                  lit.data);
		kr_buf_reset(&lit);
	}
	v.list_name = list->name ? list->name : list->id;
	v.report_title = r->subject;
	v.archive_url = archive;
	v.sender = sender;
	v.sender_name = list->sender_name;
	v.sender_address = list->sender_address;
	v.sender_contact = list->sender_contact;
	v.lang = lang_of(list);
	v.preheader_html = ph ? ph : "";

	/* text/plain: layout head + body, then the footer per message */
	lay = kr_compose_template("report.txt");
	if (split_layout(lay, &body, &footer) < 0)
		abort(); /* built-in template */
	tpl_add(&scratch, &pre, lay, (size_t)(body - lay), MODE_TEXT, &v);
	puts_(&pre, r->text ? r->text : "");
	if (pre.len > 0 && pre.data[pre.len - 1] != '\n')
		puts_(&pre, "\n");
	tpl_add(&scratch, &pre, body + 8, (size_t)(footer - body - 8),
	        MODE_TEXT, &v);
	add_footer(&c->text_tail, &lit, list, MODE_TEXT, &v);
	tpl_add(&c->text_tail, &lit, footer + 10, strlen(footer + 10),
	        MODE_TEXT, &v);
	tpl_push(&c->text_tail, SEG_LIT, &lit);
	/* the head has no subscriber slots: they would have been pushed
	 * into scratch, which is dropped */
	for (i = 0; i < scratch.n; i++)
		if (scratch.v[i].kind != SEG_LIT)
			abort();
	c->text = kr_mime_part_new(pre.data ? pre.data : "", pre.len);
	if (list->charset == KR_CFG_CHARSET_ISO2022JP)
		text_j = jis_ready(pre.data, pre.len, c->unrep);
	kr_buf_reset(&pre);

	/* text/html */
	lay = kr_compose_template("report.html");
	if (split_layout(lay, &body, &footer) < 0)
		abort();
	tpl_add(&scratch, &pre, lay, (size_t)(body - lay), MODE_HTML, &v);
	puts_(&pre, r->html ? r->html : "");
	tpl_add(&scratch, &pre, body + 8, (size_t)(footer - body - 8),
	        MODE_HTML, &v);
	add_footer(&c->html_tail, &lit, list, MODE_HTML_TEXT, &v);
	tpl_add(&c->html_tail, &lit, footer + 10, strlen(footer + 10),
	        MODE_HTML, &v);
	tpl_push(&c->html_tail, SEG_LIT, &lit);
	c->html = kr_mime_part_new(pre.data ? pre.data : "", pre.len);
	if (list->charset == KR_CFG_CHARSET_ISO2022JP)
		prepare_jis(c, list, r, text_j, &v, lay, body, footer);

	tpl_fini(&scratch);
	kr_buf_fini(&pre);
	kr_buf_fini(&lit);
	free(archive);
	free(sender);
	free(ph);
	free(text_j);
	return c;
}

void
kr_compose_cache_free(struct kr_compose_cache **cache)
{
	struct kr_compose_cache *c;

	if (cache == NULL || (c = *cache) == NULL)
		return;
	free(c->public_url);
	free(c->bounce_domain);
	free(c->list_id);
	free(c->from_name);
	free(c->from_addr);
	free(c->reply_to);
	free(c->list_name);
	free(c->unsub_mailto);
	free(c->list_id_hdr);
	free(c->feedback_id);
	free(c->subject);
	free(c->footer);
	free(c->language);
	free(c->preheader);
	kr_mime_part_free(&c->text);
	kr_mime_part_free(&c->html);
	kr_mime_part_free(&c->text_j);
	kr_mime_part_free(&c->html_j);
	kr_tz_free(&c->tz);
	free(c->sender_name);
	free(c->sender_address);
	free(c->sender_contact);
	free(c->subject_j);
	free(c->from_name_j);
	free(c->list_name_j);
	tpl_fini(&c->text_tail);
	tpl_fini(&c->html_tail);
	free(c);
	*cache = NULL;
}

/* The envelope sender: VERP with a BOUNCE token, or the list address. */
static void
envelope(const char *bounce_domain, const char *from_addr,
         const struct kr_keyring *ring, const char *list_id, int64_t sub_id,
         int64_t report_id, int64_t now, char env_from[256])
{
	struct kr_token_claims tc = {0};
	char tok[KR_TOKEN_MAX];

	if (bounce_domain == NULL || bounce_domain[0] == '\0') {
		snprintf(env_from, 256, "%s", from_addr);
		return;
	}
	tc.purpose = KR_TOKEN_BOUNCE;
	tc.list_id = list_id;
	tc.subscriber_id = sub_id;
	tc.report_id = report_id;
	tc.issued_at = now;
	kr_token_sign(ring, &tc, tok);
	snprintf(env_from, 256, "bounces+%s@%s", tok, bounce_domain);
}

/* A copy of a subscriber's name fit for a body: control characters
 * (CR, LF, tab, DEL…) become spaces, so a name cannot start lines of its
 * own, and a UTF-8 sequence cut short at the end (a truncated column) is
 * dropped. NULL stays NULL. */
static char *
name_clean(const char *name)
{
	char *d;
	size_t i, n, k;

	if (name == NULL)
		return NULL;
	d = kr_xstrdup(name);
	n = strlen(d);
	for (i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)d[i];

		if (ch < 0x20 || ch == 0x7f)
			d[i] = ' ';
	}
	/* back off a trailing incomplete UTF-8 sequence */
	k = 0;
	while (k < n && k < 4 && ((unsigned char)d[n - 1 - k] & 0xc0) == 0x80)
		k++;
	if (k < n && ((unsigned char)d[n - 1 - k] & 0x80) != 0) {
		unsigned char lead = (unsigned char)d[n - 1 - k];
		size_t want = (lead & 0xe0) == 0xc0   ? 1
		              : (lead & 0xf0) == 0xe0 ? 2
		              : (lead & 0xf8) == 0xf0 ? 3
		                                      : 0;

		if (want != k)
			d[n - 1 - k] = '\0';
	}
	return d;
}

int
kr_compose_report_cached(const struct kr_compose_cache *cache,
                         const struct kr_claim *c, const char *name,
                         const struct kr_keyring *ring, int64_t now,
                         struct kr_buf *out, char env_from[256],
                         struct kr_err *err)
{
	struct kr_token_claims tc = {0};
	struct kr_mime_msg m = {0};
	struct kr_buf tt, ht;
	struct subst s = {0};
	char tok[KR_TOKEN_MAX], url[1024], mid[512];
	char *nm = name_clean(name), *tj = NULL, *hj = NULL;
	int r = -1;

	kr_buf_init(&tt, 0);
	kr_buf_init(&ht, 0);
	tc.purpose = KR_TOKEN_UNSUBSCRIBE;
	tc.list_id = cache->list_id;
	tc.subscriber_id = c->subscriber_id;
	tc.report_id = cache->report_id;
	tc.issued_at = now;
	kr_token_sign(ring, &tc, tok);
	snprintf(url, sizeof(url), "%s/unsubscribe?t=%s", cache->public_url, tok);
	s.unsub_url = url;
	s.name = nm;
	s.email = c->email;
	tpl_render(&cache->text_tail, &tt, false, &s);
	tpl_render(&cache->html_tail, &ht, true, &s);

	m.from_name = cache->from_name;
	m.from_addr = cache->from_addr;
	m.to_addr = c->email;
	m.reply_to = cache->reply_to;
	m.subject = cache->subject;
	m.list_name = cache->list_name;
	m.list_id = cache->list_id_hdr;
	m.unsub_url = url;
	m.unsub_mailto = cache->unsub_mailto;
	m.feedback_id = cache->feedback_id;
	m.one_click = true;
	m.bulk = true;
	m.date = now;
	message_id(cache->from_addr, cache->report_id, c->subscriber_id,
	           cache->hash, mid, sizeof(mid));
	m.message_id = mid;
	m.date_offset = cache->tz ? kr_tz_offset(cache->tz, now) : 0;
	m.text = cache->text;
	m.text_tail = tt.data;
	m.text_tail_len = tt.len;
	m.html = cache->html;
	m.html_tail = ht.data;
	m.html_tail_len = ht.len;
	/* ISO-2022-JP when the report and this subscriber's footer (a name,
	 * an address) can go so; else this message in UTF-8 */
	if (cache->jis && ascii(c->email) &&
	    (tj = jis_ready(tt.data, tt.len, cache->unrep)) &&
	    (hj = jis_ready(ht.data, ht.len, cache->unrep))) {
		m.iso2022jp = true;
		m.from_name = cache->from_name_j;
		m.subject = cache->subject_j;
		m.list_name = cache->list_name_j;
		m.text = cache->text_j;
		m.text_tail = tj;
		m.text_tail_len = strlen(tj);
		m.html = cache->html_j;
		m.html_tail = hj;
		m.html_tail_len = strlen(hj);
	}
	if (kr_mime_compose(&m, out, err) < 0)
		goto out;
	envelope(cache->bounce_domain, cache->from_addr, ring, cache->list_id,
	         c->subscriber_id, cache->report_id, now, env_from);
	r = 0;
out:
	kr_buf_fini(&tt);
	kr_buf_fini(&ht);
	free(nm);
	free(tj);
	free(hj);
	return r;
}

/* NULL-safe string equality. */
static bool
same(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

/* Whether c was built from these very inputs (by value: a reloaded config
 * or a re-read report row with equal contents reuses it). */
static bool
cache_matches(const struct kr_compose_cache *c, const struct kr_config *cfg,
              const struct kr_cfg_list *list, const struct kr_report_row *r)
{
	return c->report_id == r->id && r->id != 0 &&
	       strncmp(c->hash, r->hash, sizeof(c->hash)) == 0 &&
	       same(c->subject, r->subject) &&
	       same(c->preheader, r->preheader) &&
	       same(c->public_url, cfg->public_url) &&
	       same(c->bounce_domain, cfg->delivery.bounce_domain) &&
	       same(c->list_id, list->id) && same(c->list_name, list->name) &&
	       same(c->from_name, list->from_name) &&
	       same(c->from_addr, list->from_addr) &&
	       same(c->reply_to, list->reply_to) &&
	       same(c->footer, list->footer) &&
	       same(c->language, list->language) &&
	       same(c->unsub_mailto, list->unsubscribe_mailto) &&
	       c->archive == list->archive &&
	       c->allow_html == list->allow_html &&
	       c->charset == list->charset &&
	       same(c->tz ? kr_tz_name(c->tz) : NULL,
	            list->tz ? kr_tz_name(list->tz) : NULL) &&
	       same(c->sender_name, list->sender_name) &&
	       same(c->sender_address, list->sender_address) &&
	       same(c->sender_contact, list->sender_contact) &&
	       c->unrep == list->unrepresentable;
}

/* kr_compose_report keeps the last report's cache per thread, so callers
 * that compose one report for many subscribers get the fast path without
 * holding a cache themselves; freed when the thread exits. */
static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

static void
cache_destroy(void *p)
{
	struct kr_compose_cache *c = p;

	kr_compose_cache_free(&c);
}

static void
cache_key_init(void)
{
	if (pthread_key_create(&cache_key, cache_destroy) != 0)
		abort();
}

int
kr_compose_report(const struct kr_config *cfg, const struct kr_cfg_list *list,
                  const struct kr_report_row *r, const struct kr_claim *c,
                  const struct kr_keyring *ring, int64_t now,
                  struct kr_buf *out, char env_from[256], struct kr_err *err)
{
	struct kr_compose_cache *cache;

	pthread_once(&cache_once, cache_key_init);
	cache = pthread_getspecific(cache_key);
	if (cache == NULL || !cache_matches(cache, cfg, list, r)) {
		kr_compose_cache_free(&cache);
		cache = kr_compose_prepare(cfg, list, r);
		if (pthread_setspecific(cache_key, cache) != 0)
			abort();
	}
	return kr_compose_report_cached(cache, c, c->name, ring, now, out,
	                                env_from, err);
}

/* ---- the confirmation mail ---- */

int
kr_compose_confirm(const struct kr_config *cfg, const struct kr_cfg_list *list,
                   const struct kr_claim *c, const struct kr_keyring *ring,
                   int64_t now, struct kr_buf *out, char env_from[256],
                   struct kr_err *err)
{
	struct kr_token_claims tc = {0};
	struct kr_mime_msg m = {0};
	struct tpl subj = {0}, text = {0}, html = {0};
	struct kr_buf lit, st, tt, ht;
	struct vals v = {0};
	struct subst s = {0};
	char tok[KR_TOKEN_MAX], url[1024], name[32], *sender = NULL;
	char *sj = NULL, *tj = NULL, *hj = NULL, *fj = NULL;
	const char *tp, *nl;
	bool jis = list->charset == KR_CFG_CHARSET_ISO2022JP;
	int r = -1;

	kr_buf_init(&lit, 0);
	kr_buf_init(&st, 0);
	kr_buf_init(&tt, 0);
	kr_buf_init(&ht, 0);
	tc.purpose = KR_TOKEN_CONFIRM;
	tc.list_id = list->id;
	tc.subscriber_id = c->subscriber_id;
	tc.report_id = 0;
	tc.issued_at = now;
	kr_token_sign(ring, &tc, tok);
	kr_compose_link(cfg, "confirm", tok, url, sizeof(url));
	sender = sender_of(list);
	v.list_name = list->name ? list->name : list->id;
	v.sender = sender;
	v.sender_name = list->sender_name;
	v.sender_contact = list->sender_contact; /* name and contact only */
	v.sender_address = "";
	v.lang = lang_of(list);
	s.confirm_url = url;
	s.email = c->email;

	/* "Subject: …" on the first line, the body after. The Japanese
	 * subject leaves the list name to From and the body: a name whose only
	 * Latin letters are capitals ("SIPS") makes SpamAssassin's
	 * SUBJ_ALL_CAPS fire on an otherwise Japanese subject. */
	snprintf(name, sizeof(name), "confirm.%s.txt", lang_of(list));
	tp = kr_compose_template(name);
	nl = strchr(tp, '\n');
	tpl_add(&subj, &lit, tp + 9, (size_t)(nl - tp - 9), MODE_TEXT, &v);
	tpl_push(&subj, SEG_LIT, &lit);
	tpl_render(&subj, &st, false, &s);
	add_lines(&text, &lit, nl + 1, MODE_TEXT, &v);
	tpl_push(&text, SEG_LIT, &lit);
	tpl_render(&text, &tt, false, &s);
	puts_(&lit, "<!DOCTYPE html>\n<html lang=\"");
	puts_(&lit, v.lang);
	puts_(&lit, "\">\n<head>\n<meta charset=\"");
	puts_(&lit, jis ? "iso-2022-jp" : "utf-8");
	puts_(&lit, "\">\n<title>");
	put_esc(&lit, st.data, st.len, false);
	puts_(&lit, "</title>\n</head>\n<body style=\"font-family:sans-serif;"
	            "line-height:1.7;\">\n<p>");
	add_lines(&html, &lit, nl + 1, MODE_HTML_TEXT, &v);
	puts_(&lit, "</p>\n</body>\n</html>\n");
	tpl_push(&html, SEG_LIT, &lit);
	tpl_render(&html, &ht, true, &s);

	m.from_name = list->from_name;
	m.from_addr = list->from_addr;
	m.to_addr = c->email;
	m.reply_to = list->reply_to;
	m.subject = st.data;
	m.auto_submitted = true;
	m.date = now;
	m.date_offset = list->tz ? kr_tz_offset(list->tz, now) : 0;
	m.text_tail = tt.data;
	m.text_tail_len = tt.len;
	m.html_tail = ht.data;
	m.html_tail_len = ht.len;
	if (jis && ascii(c->email) &&
	    (sj = jis_ready(st.data, st.len, list->unrepresentable)) &&
	    (tj = jis_ready(tt.data, tt.len, list->unrepresentable)) &&
	    (fj = jis_ready_str(list->from_name, list->unrepresentable)) &&
	    (hj = jis_ready(ht.data, ht.len, list->unrepresentable))) {
		m.iso2022jp = true;
		m.subject = sj;
		m.from_name = fj;
		m.text_tail = tj;
		m.text_tail_len = strlen(tj);
		m.html_tail = hj;
		m.html_tail_len = strlen(hj);
	} else if (jis) {
		/* the UTF-8 mail; its HTML says so */
		kr_buf_reset(&ht);
		tpl_fini(&html);
		puts_(&lit, "<!DOCTYPE html>\n<html lang=\"");
		puts_(&lit, v.lang);
		puts_(&lit, "\">\n<head>\n<meta charset=\"utf-8\">\n<title>");
		put_esc(&lit, st.data, st.len, false);
		puts_(&lit, "</title>\n</head>\n<body style=\"font-family:"
		            "sans-serif;line-height:1.7;\">\n<p>");
		add_lines(&html, &lit, nl + 1, MODE_HTML_TEXT, &v);
		puts_(&lit, "</p>\n</body>\n</html>\n");
		tpl_push(&html, SEG_LIT, &lit);
		tpl_render(&html, &ht, true, &s);
		m.html_tail = ht.data;
		m.html_tail_len = ht.len;
	}
	if (kr_mime_compose(&m, out, err) < 0)
		goto out;
	envelope(cfg->delivery.bounce_domain, list->from_addr, ring, list->id,
	         c->subscriber_id, 0, now, env_from);
	r = 0;
out:
	free(sj);
	free(tj);
	free(hj);
	free(fj);
	tpl_fini(&subj);
	tpl_fini(&text);
	tpl_fini(&html);
	kr_buf_fini(&lit);
	kr_buf_fini(&st);
	kr_buf_fini(&tt);
	kr_buf_fini(&ht);
	free(sender);
	return r;
}
