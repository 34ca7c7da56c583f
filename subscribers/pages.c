/* pages.c — the public pages' HTML and words (see pages.h). Kept as C
 * strings so the daemon needs no template files at run time. No external
 * assets: one inline style sheet, allowed by its hash in the CSP. */
#include <string.h>

#include "common.h"
#include "pages.h"

const char kr_pages_style[] =
    ":root{color-scheme:light dark;--fg:#1b1f24;--bg:#fff;--mut:#57606a;"
    "--acc:#0b5cad;--line:#c9d1d9}"
    "@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--bg:#0d1117;"
    "--mut:#9da7b3;--acc:#58a6ff;--line:#30363d}}"
    "*{box-sizing:border-box}"
    "body{margin:0;background:var(--bg);color:var(--fg);font:16px/1.7 "
    "system-ui,-apple-system,\"Segoe UI\",\"Hiragino Sans\","
    "\"Hiragino Kaku Gothic ProN\",\"Noto Sans CJK JP\",\"Noto Sans JP\","
    "Meiryo,\"IPAGothic\",sans-serif;overflow-wrap:anywhere}"
    "main{max-width:36rem;margin:0 auto;padding:2rem 1.25rem}"
    "h1{font-size:1.5rem;line-height:1.4;margin:0 0 1rem}"
    "p{margin:0 0 1rem}form{margin:0 0 "
    "1.5rem}.mut{color:var(--mut);font-size:.875rem}"
    "label{display:block;font-weight:600;margin:0 0 .25rem}"
    "input[type=email]{width:100%;font:inherit;padding:.6rem .75rem;"
    "border:1px solid var(--line);border-radius:6px;background:var(--bg);"
    "color:var(--fg)}"
    "fieldset{border:1px solid var(--line);border-radius:6px;"
    "margin:1rem 0;padding:.5rem 1rem}"
    "fieldset label{font-weight:400}legend{font-weight:600;padding:0 .25rem}"
    "button{font:inherit;font-weight:600;margin:1rem .5rem 0 0;"
    "padding:.6rem 1.25rem;border:0;border-radius:6px;background:var(--acc);"
    "color:#fff;cursor:pointer}"
    "button.alt{background:transparent;color:var(--acc);"
    "border:1px solid var(--acc)}"
    "input:focus,button:focus{outline:3px solid var(--acc);"
    "outline-offset:2px}"
    ".hp{position:absolute;left:-10000px;width:1px;height:1px;"
    "overflow:hidden}"
    "ul{padding-left:1.25rem}a{color:var(--acc)}"
    "article img{max-width:100%;height:auto}"
    "article pre{overflow-x:auto}";

const char kr_pages_dash_style[] =
    "main{max-width:72rem}"
    "nav{display:flex;gap:1rem;flex-wrap:wrap;margin:0 0 1rem;"
    "border-bottom:1px solid var(--line);padding:0 0 .5rem}"
    "nav a{text-decoration:none;font-weight:600}"
    "h2{font-size:1.15rem;margin:1.5rem 0 .5rem}"
    ".grid{display:grid;grid-template-columns:repeat(auto-fit,"
    "minmax(16rem,1fr));gap:1rem}"
    ".card{border:1px solid var(--line);border-radius:8px;padding:.75rem 1rem}"
    ".tw{overflow-x:auto}"
    "table{border-collapse:collapse;width:100%;font-size:.9rem}"
    "th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid "
    "var(--line);vertical-align:top}th,#domains td{white-space:nowrap}"
    "#lists td:first-child{min-width:10em}"
    "td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;"
    "white-space:nowrap}"
    "svg{display:block;width:100%;height:auto;max-width:100%}"
    "svg text{fill:var(--mut);font-size:11px}svg.gauge{max-width:30rem}"
    "svg.days,svg.perminute{max-width:60rem}"
    ".sent{fill:#2da44e}.deferred{fill:#d4a72c}.failed{fill:#cf222e}"
    ".uncertain{fill:#8250df}.cancelled{fill:#8c959f}.queued{fill:var(--line)}"
    ".signup{fill:var(--acc)}.unsub{fill:#cf222e}.axis{stroke:var(--line)}"
    ".warnline{stroke:#d4a72c;stroke-dasharray:4 3}"
    ".badline{stroke:#cf222e;stroke-dasharray:4 3}"
    ".ok{color:#2da44e}.warn{color:#9a6700}.bad{color:#cf222e;"
    "font-weight:600}"
    ".key span{display:inline-block;width:.75rem;height:.75rem;"
    "border-radius:2px;margin:0 .25rem 0 .75rem;vertical-align:-1px}"
    ".key .sent{background:#2da44e}.key .deferred{background:#d4a72c}"
    ".key .failed{background:#cf222e}.key .uncertain{background:#8250df}"
    ".key .cancelled{background:#8c959f}.key .queued{background:var(--line)}"
    ".key .signup{background:var(--acc)}.key .unsub{background:#cf222e}";

const char kr_pages_layout[] =
    "<!DOCTYPE html>\n"
    "<html lang=\"{{lang}}\">\n"
    "<head>\n"
    "<meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, "
    "initial-scale=1\">\n"
    "<meta name=\"referrer\" content=\"no-referrer\">\n"
    "<title>{{title}}</title>\n"
    "<style>{{style}}</style>\n"
    "{{head}}"
    "</head>\n"
    "<body>\n"
    "<main>\n"
    "{{body}}"
    "</main>\n"
    "</body>\n"
    "</html>\n";

const char kr_pages_signup[] =
    "<h1>{{title}}</h1>\n"
    "<p>{{intro}}</p>\n"
    "<form action=\"subscribe\" method=\"post\" "
    "accept-charset=\"utf-8\">\n"
    "<label for=\"email\">{{email_label}}</label>\n"
    "<input id=\"email\" name=\"email\" type=\"email\" required "
    "autocomplete=\"email\" inputmode=\"email\" maxlength=\"254\" "
    "spellcheck=\"false\">\n"
    "{{lists}}"
    "<div class=\"hp\" aria-hidden=\"true\">"
    "<label for=\"website\">{{honeypot_label}}</label>"
    "<input id=\"website\" name=\"website\" type=\"text\" tabindex=\"-1\" "
    "autocomplete=\"off\"></div>\n"
    "<button type=\"submit\">{{submit}}</button>\n"
    "</form>\n"
    "<p class=\"mut\">{{privacy}}</p>\n"
    "{{archive}}";

const char kr_pages_list_fieldset[] =
    "<fieldset>\n<legend>{{legend}}</legend>\n{{choices}}</fieldset>\n";

const char kr_pages_list_choice[] =
    "<label><input type=\"radio\" name=\"list\" value=\"{{id}}\"{{checked}}>"
    " {{name}}</label>\n";

const char kr_pages_list_hidden[] =
    "<input type=\"hidden\" name=\"list\" value=\"{{id}}\">\n";

const char kr_pages_message[] = "<h1>{{title}}</h1>\n"
                                "<p>{{message}}</p>\n"
                                "<p class=\"mut\">{{detail}}</p>\n"
                                "<p><a href=\"./\">{{back}}</a></p>\n";

const char kr_pages_confirm[] = "<h1>{{title}}</h1>\n"
                                "<p>{{message}}</p>\n"
                                "<form action=\"{{action}}\" method=\"post\">\n"
                                "<button type=\"submit\">{{button}}</button>\n"
                                "</form>\n";

const char kr_pages_unsubscribe[] =
    "<h1>{{title}}</h1>\n"
    "<p>{{message}}</p>\n"
    "<form action=\"{{action}}\" method=\"post\">\n"
    "<button type=\"submit\" name=\"scope\" value=\"list\">{{one}}</button>\n"
    "<button type=\"submit\" name=\"scope\" value=\"all\" "
    "class=\"alt\">{{all}}</button>\n"
    "</form>\n";

const char kr_pages_archive[] = "<h1>{{title}}</h1>\n"
                                "{{empty}}"
                                "{{items}}"
                                "<p><a href=\"./\">{{back}}</a></p>\n";

const char kr_pages_sender_line[] =
    "<p class=\"mut\">{{label}}: {{value}}</p>\n";

const char kr_pages_archive_item[] =
    "<li><a href=\"archive/{{id}}\">{{subject}}</a> "
    "<span class=\"mut\">{{list}} · <time>{{date}}</time></span></li>\n";

const char kr_pages_feed_link[] =
    "<link rel=\"alternate\" type=\"application/atom+xml\" "
    "title=\"{{title}}\" href=\"{{href}}\">\n";

const char kr_pages_atom_feed[] =
    "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
    "<feed xmlns=\"http://www.w3.org/2005/Atom\" xml:lang=\"{{lang}}\">\n"
    "<id>{{base}}/archive</id>\n"
    "<title>{{title}}</title>\n"
    "<updated>{{updated}}</updated>\n"
    "<link rel=\"self\" type=\"application/atom+xml\" "
    "href=\"{{base}}/archive.atom\"/>\n"
    "<link rel=\"alternate\" type=\"text/html\" href=\"{{base}}/archive\"/>\n"
    "<author><name>{{author}}</name></author>\n"
    "<generator>kairan</generator>\n"
    "{{entries}}"
    "</feed>\n";

const char kr_pages_atom_entry[] = "<entry>\n"
                                   "<id>{{tag}}</id>\n"
                                   "<title>{{subject}}</title>\n"
                                   "<updated>{{updated}}</updated>\n"
                                   "<link rel=\"alternate\" type=\"text/html\" "
                                   "href=\"{{base}}/archive/{{id}}\"/>\n"
                                   "<author><name>{{list}}</name></author>\n"
                                   "</entry>\n";

const char kr_pages_report[] =
    "<p class=\"mut\"><a href=\"../archive\">{{back}}</a></p>\n"
    "<article>\n"
    "<h1>{{subject}}</h1>\n"
    "<p class=\"mut\">{{list}} · <time>{{date}}</time></p>\n"
    "{{html}}\n"
    "</article>\n";

static const struct kr_pages_text text_en = {
    .lang = "en",
    .signup_title = "Subscribe",
    .signup_intro = "Get {{list}} by email. We will send you a message "
                    "with a link to confirm your address.",
    .signup_intro_many = "Choose what you would like to receive by email. "
                         "We will send you a message with a link to "
                         "confirm your address.",
    .email_label = "Email address",
    .lists_legend = "Lists",
    .honeypot_label = "Leave this field empty",
    .submit = "Subscribe",
    .privacy = "Your address is used for this newsletter only. Every "
               "message carries a link to unsubscribe.",
    .check_title = "Check your mail",
    .check_body = "Thank you. Unless this address is subscribed already, "
                  "a message with a confirmation link is on its way. Open "
                  "the link to finish; it is valid for 7 days.",
    .active_title = "Subscribed",
    .active_body = "Thank you. {{list}} will come to this address.",
    .invalid_title = "Please check the address",
    .bad_list = "There is no such list.",
    .no_email = "Please enter an email address.",
    .bad_address = "This email address is not valid.",
    .limit_title = "Too many requests",
    .limit_body = "Please wait a few minutes and try again.",
    .confirm_title = "Confirm your subscription",
    .confirm_body = "Press the button to subscribe to {{list}}.",
    .confirm_button = "Confirm",
    .confirmed_title = "You are subscribed",
    .confirmed_body = "Thank you. {{list}} will come to your mailbox.",
    .confirm_gone = "This subscription can no longer be confirmed. "
                    "Please sign up again.",
    .unsub_title = "Unsubscribe",
    .unsub_body = "Do you want to stop receiving {{list}}?",
    .unsub_one = "Unsubscribe from this list",
    .unsub_all = "Unsubscribe from all lists",
    .unsubbed_title = "You are unsubscribed",
    .unsubbed_body = "You will not receive {{list}} any more.",
    .unsubbed_all = "You will not receive any of our lists any more.",
    .token_title = "This link does not work",
    .token_body = "The link is invalid or has expired. If you copied it "
                  "from a mail, check that it is complete.",
    .notfound_title = "Not found",
    .notfound_body = "There is no page at this address.",
    .method_title = "Method not allowed",
    .method_body = "This page does not accept that kind of request.",
    .large_title = "Request too large",
    .large_body = "The request is larger than this form accepts.",
    .busy_title = "Please try again",
    .busy_body = "Something went wrong on our side. Please try again in a "
                 "few minutes.",
    .archive_title = "Archive",
    .archive_empty = "Nothing has been published yet.",
    .back = "Back",
    .sender_name = "Sent by",
    .sender_address = "Address",
    .sender_contact = "Contact",
};

static const struct kr_pages_text text_ja = {
    .lang = "ja",
    .signup_title = "配信登録",
    .signup_intro = "{{list}}をメールでお届けします。ご登録のアドレスに"
                    "確認用のリンクをお送りします。",
    .signup_intro_many = "メールで受け取りたいものをお選びください。"
                         "ご登録のアドレスに確認用のリンクをお送りします。",
    .email_label = "メールアドレス",
    .lists_legend = "配信リスト",
    .honeypot_label = "この欄は空のままにしてください",
    .submit = "登録する",
    .privacy = "メールアドレスはこの配信にのみ使用します。すべてのメールに"
               "配信停止のリンクがあります。",
    .check_title = "メールをご確認ください",
    .check_body = "ありがとうございます。このアドレスがまだ登録されていない"
                  "場合は、確認用のリンクを記載したメールをお送りしました。"
                  "リンクを開いて登録を完了してください（有効期限は7日間）。",
    .active_title = "登録しました",
    .active_body =
        "ありがとうございます。{{list}}をこのアドレスにお届けします。",
    .invalid_title = "メールアドレスをご確認ください",
    .bad_list = "指定された配信リストはありません。",
    .no_email = "メールアドレスを入力してください。",
    .bad_address = "メールアドレスの形式が正しくありません。",
    .limit_title = "リクエストが多すぎます",
    .limit_body = "数分待ってからもう一度お試しください。",
    .confirm_title = "配信登録の確認",
    .confirm_body = "ボタンを押すと{{list}}の配信登録が完了します。",
    .confirm_button = "登録を完了する",
    .confirmed_title = "登録が完了しました",
    .confirmed_body = "ありがとうございます。{{list}}をお届けします。",
    .confirm_gone = "この登録は確認できなくなりました。"
                    "お手数ですが、もう一度ご登録ください。",
    .unsub_title = "配信停止",
    .unsub_body = "{{list}}の配信を停止しますか？",
    .unsub_one = "この配信を停止する",
    .unsub_all = "すべての配信を停止する",
    .unsubbed_title = "配信を停止しました",
    .unsubbed_body = "今後{{list}}はお届けしません。",
    .unsubbed_all = "今後すべての配信をお届けしません。",
    .token_title = "このリンクは無効です",
    .token_body = "リンクが正しくないか、有効期限が切れています。メールから"
                  "コピーした場合は、途中で切れていないかご確認ください。",
    .notfound_title = "ページが見つかりません",
    .notfound_body = "このアドレスにページはありません。",
    .method_title = "許可されていないメソッドです",
    .method_body = "このページはその種類のリクエストを受け付けません。",
    .large_title = "リクエストが大きすぎます",
    .large_body = "このフォームが受け付ける大きさを超えています。",
    .busy_title = "もう一度お試しください",
    .busy_body = "サーバー側で問題が発生しました。数分後にもう一度お試し"
                 "ください。",
    .archive_title = "バックナンバー",
    .archive_empty = "まだ公開されたレポートはありません。",
    .back = "戻る",
    .sender_name = "発行者",
    .sender_address = "住所",
    .sender_contact = "お問い合わせ",
};

const struct kr_pages_text *
kr_pages_text(const char *lang)
{
	if (lang != NULL && strcmp(lang, "ja") == 0)
		return &text_ja;
	return &text_en;
}

/* Japanese sentences for kr_address_normalize's common reasons, found by
 * a piece of the English text (lib/address.c); first match wins. */
static const struct {
	const char *en, *ja;
} address_ja[] = {
    {"full-width", "全角文字が含まれています。メールアドレスは半角英数字"
                   "で入力してください。"},
    {"the @ sign and the domain are missing",
     "「@」とドメイン（@より後ろの部分）がありません。"},
    {"the @ sign is missing", "「@」がありません。"},
    {"more than one @", "「@」が2つ以上あります。"},
    {"the part before the @ is missing", "「@」より前の部分がありません。"},
    {"the domain part is missing",
     "ドメイン（@より後ろの部分）がありません。"},
    {"needs at least one dot",
     "ドメインに「.」がありません（例: example.jp）。"},
    {"longer than", "メールアドレスが長すぎます。"},
    {"contains a space", "空白が含まれています。"},
    {"line break", "改行が含まれています。"},
    {"without a name or <>",
     "名前や「<>」を付けず、メールアドレスだけを入力してください。"},
    {"give one address only", "メールアドレスは1つだけ入力してください。"},
};

const char *
kr_pages_address_reason(const char *lang, const char *reason)
{
	size_t i;

	if (lang == NULL || strcmp(lang, "ja") != 0)
		return NULL;
	for (i = 0; reason != NULL && i < KR_NELEM(address_ja); i++)
		if (strstr(reason, address_ja[i].en) != NULL)
			return address_ja[i].ja;
	return text_ja.bad_address;
}
