/* pages.h — the HTML of the public pages and their words in each
 * language, as C strings (rendered by web.c with kr_web_render; every
 * value from config or strangers is escaped there). Templates mark
 * values with {{name}}; a string in struct kr_pages_text may carry
 * {{list}}, the list's display name. */
#ifndef KR_PAGES_H
#define KR_PAGES_H

struct kr_pages_text {
	const char *lang;
	const char *signup_title, *signup_intro, *signup_intro_many;
	const char *email_label, *lists_legend, *honeypot_label, *submit;
	const char *privacy;
	const char *check_title, *check_body;
	const char *active_title, *active_body;
	const char *invalid_title, *bad_list, *no_email, *bad_address;
	const char *limit_title, *limit_body;
	const char *confirm_title, *confirm_body, *confirm_button;
	const char *confirmed_title, *confirmed_body, *confirm_gone;
	const char *unsub_title, *unsub_body, *unsub_one, *unsub_all;
	const char *unsubbed_title, *unsubbed_body, *unsubbed_all;
	const char *token_title, *token_body;
	const char *notfound_title, *notfound_body;
	const char *method_title, *method_body;
	const char *large_title, *large_body;
	const char *busy_title, *busy_body;
	const char *archive_title, *archive_empty, *back;
	/* the sender block (特定電子メール法) on archive pages */
	const char *sender_name, *sender_address, *sender_contact;
};

/* The table for lang ("ja", "en"); anything else gets English. */
const struct kr_pages_text *kr_pages_text(const char *lang);
/* A sentence in lang for reason, the English text kr_address_normalize
 * gave: the common ones (the @ or the domain missing, too long, full-width
 * characters, spaces…) have their own, any other gets the language's
 * bad_address; NULL for English (reason is shown as it is). */
const char *kr_pages_address_reason(const char *lang, const char *reason);

/* The dashboard's rules, after kr_pages_style (admin.c). */
extern const char kr_pages_dash_style[];
/* {{lang}} {{title}} {{style}} {{head}} {{body}} (style, head and body
 * raw; head: more elements of <head>, or ""). */
extern const char kr_pages_layout[];
/* The inline style sheet; the CSP allows exactly its SHA-256. */
extern const char kr_pages_style[];
/* {{title}} {{intro}} {{email_label}} {{lists}} (raw) {{honeypot_label}}
 * {{submit}} {{privacy}} {{archive}} (raw: a link, or ""). */
extern const char kr_pages_signup[];
/* One choice of several lists: {{id}} {{name}} {{checked}} (raw). */
extern const char kr_pages_list_choice[];
/* {{legend}} {{choices}} (raw). */
extern const char kr_pages_list_fieldset[];
/* A single list: {{id}}. */
extern const char kr_pages_list_hidden[];
/* {{title}} {{message}} {{detail}} {{back}}. */
extern const char kr_pages_message[];
/* {{title}} {{message}} {{action}} {{button}}. */
extern const char kr_pages_confirm[];
/* {{title}} {{message}} {{action}} {{one}} {{all}}. */
extern const char kr_pages_unsubscribe[];
/* {{title}} {{items}} (raw: a <ul>, or "") {{empty}} (raw) {{back}}. */
extern const char kr_pages_archive[];
/* {{id}} {{subject}} {{list}} {{date}}. */
extern const char kr_pages_archive_item[];
/* The <head> link of /archive to its feed: {{title}} {{href}}. */
extern const char kr_pages_feed_link[];
/* GET /archive.atom (Atom, RFC 4287): {{lang}} {{base}} (public_url)
 * {{title}} {{updated}} (RFC 3339) {{author}} {{entries}} (raw). */
extern const char kr_pages_atom_feed[];
/* One report of the feed: {{tag}} (its id, a tag: URI) {{subject}}
 * {{updated}} {{base}} {{id}} {{list}}. */
extern const char kr_pages_atom_entry[];
/* {{subject}} {{list}} {{date}} {{html}} (raw) {{back}}. */
extern const char kr_pages_report[];
/* One line of the sender block: {{label}} {{value}}. */
extern const char kr_pages_sender_line[];

#endif
