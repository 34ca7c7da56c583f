"""Messages composed by lib/mime (through tests/integration/mime_dump.c,
built here against the build's libkairan.a) parsed by an independent
parser, Python's email package with policy.default: decoded subject, names
and both bodies equal the source text; every header is there and right; no
line over 998 octets, header lines under 78, encoded words of at most 75
characters holding whole UTF-8 characters; CR/LF in a header is refused.
When kairanctl is built with config/store/token, `kairanctl send --dry-run
--out DIR` output is checked the same way (see test_send.py)."""
import base64
import email
import email.policy
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ROOT, build_c_helper, done, ok, tmpdir  # noqa: E402

base = tmpdir()


def build(name):
    return build_c_helper(name, base)


EXE = build("mime_dump")
ok(EXE is not None, "mime_dump builds against libkairan.a")
if EXE is None:
    done()

SUBJ_JA = ("【重要】" + "脆弱性情報、緊急対応のお願い：" * 8)[:120]
LONG_PARA = "日本語の長い段落には空白がありません。" * 150  # ~2,850 chars
TEXT_JA = ("# 第12号 脅威レポート\n\n"
           "こんにちは！全角句読点、「括弧」・…（注）。🎉🔐 絵文字も。\n\n"
           + LONG_PARA + "\n\n"
           + "x" * 2000 + "\n"
           + "末尾に空白 \n"
           + "=?UTF-8?B?not-a-word?= .dot line\n.\n"
           + "配信停止: https://news.example.jp/unsubscribe?t=AAECAwQFBgcICQ\n")
HTML_JA = ("<h1>第12号 脅威レポート</h1>\n<p>" + LONG_PARA + "</p>\n<p>"
           + "y" * 2000 + "</p>\n<p>🎉 &amp; 「括弧」</p>\n")
TEXT_EN = ("Hello reader,\n\nThis is the weekly report. " * 30 + "\n"
           + "a" * 2000 + "\nTrailing space \nTab\tinside\n=equals=\n")
HTML_EN = "<p>" + "Plain English paragraph. " * 200 + "</p>\n"


def compose(subject, from_name, text, html, split, list_name=None):
    tp = os.path.join(base, "t.txt")
    hp = os.path.join(base, "h.html")
    with open(tp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    with open(hp, "w", encoding="utf-8", newline="") as f:
        f.write(html)
    argv = [EXE, subject, from_name, tp, hp, str(split)]
    if list_name is not None:
        argv.append(list_name)
    r = subprocess.run(argv, capture_output=True)
    return r.returncode, r.stdout, r.stderr.decode("utf-8", "replace")


def header_block(raw):
    return raw.split(b"\r\n\r\n", 1)[0]


def check_message(tag, raw, subject, from_name, text, html):
    lines = raw.split(b"\r\n")
    ok(raw.endswith(b"\r\n") and b"\n" not in raw.replace(b"\r\n", b""),
       tag + ": CRLF line ends only")
    ok(max(len(x) for x in lines) <= 998, tag + ": no line over 998 octets",
       max(len(x) for x in lines))
    body_long = [x for x in lines if len(x) > 76]
    hdr_lines = header_block(raw).split(b"\r\n")
    long_hdr = [x for x in hdr_lines if len(x) >= 78]
    ok(not long_hdr, tag + ": header lines under 78 octets", long_hdr)
    ok(not [x for x in body_long if x not in hdr_lines],
       tag + ": body lines at most 76 octets")
    words = re.findall(rb"=\?UTF-8\?B\?([A-Za-z0-9+/=]*)\?=",
                       header_block(raw))
    good = True
    for w in words:
        if len(w) + 12 > 75:
            good = False
        try:
            base64.b64decode(w).decode("utf-8")
        except UnicodeDecodeError:
            good = False
    ok(good, tag + ": encoded words <= 75 chars, whole characters each")
    ok(all(b < 128 for b in header_block(raw)), tag + ": headers are ASCII")
    m = email.message_from_bytes(raw, policy=email.policy.default)
    ok(str(m["Subject"]) == subject, tag + ": subject round trip",
       repr(str(m["Subject"])))
    fa = m["From"].addresses[0]
    ok(fa.display_name == from_name and
       fa.addr_spec == "report@news.example.jp", tag + ": From",
       repr(fa))
    ok(m["To"].addresses[0].addr_spec == "reader@example.org", tag + ": To")
    ok(m["Reply-To"].addresses[0].addr_spec == "info@example.jp",
       tag + ": Reply-To")
    ok(m["MIME-Version"] == "1.0", tag + ": MIME-Version")
    ok(m["Date"].datetime is not None and
       m["Date"].datetime.timestamp() == 1764115200, tag + ": Date")
    ok(re.fullmatch(r"<[0-9]+\.[0-9a-f]{24}@news\.example\.jp>",
                    m["Message-ID"]) is not None, tag + ": Message-ID",
       m["Message-ID"])
    ok(str(m["List-Id"]).endswith("<sips-report.news.example.jp>"),
       tag + ": List-Id", str(m["List-Id"]))
    ok(m["List-Unsubscribe"] ==
       "<https://news.example.jp/unsubscribe?t=AAECAwQFBgcICQ>, "
       "<mailto:unsubscribe@news.example.jp>", tag + ": List-Unsubscribe",
       m["List-Unsubscribe"])
    ok(m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click",
       tag + ": List-Unsubscribe-Post")
    ok(m["Precedence"] == "bulk", tag + ": Precedence")
    ok(m.get_content_type() == "multipart/alternative",
       tag + ": multipart/alternative")
    parts = list(m.iter_parts())
    ok([p.get_content_type() for p in parts] == ["text/plain", "text/html"],
       tag + ": text/plain first, text/html last")
    ok(all(p.get_content_charset() == "utf-8" for p in parts),
       tag + ": charset=utf-8")
    ok(all(p["Content-Transfer-Encoding"] in ("quoted-printable", "base64")
           for p in parts), tag + ": QP or base64")
    bnd = m.get_boundary()
    ok(bnd.startswith("=_") and
       all(bnd.encode() not in p.get_payload().encode() for p in parts),
       tag + ": boundary not inside the parts")
    got_t = parts[0].get_content().replace("\r\n", "\n")
    got_h = parts[1].get_content().replace("\r\n", "\n")
    ok(got_t == text, tag + ": decoded text/plain equals the source",
       "%r...\n%r..." % (got_t[:200], text[:200]))
    ok(got_h == html, tag + ": decoded text/html equals the source",
       "%r...\n%r..." % (got_h[:200], html[:200]))
    return m


for split in (0, 777, 10**9):
    rc, raw, errs = compose(SUBJ_JA, "SIPS セキュリティレポート", TEXT_JA,
                            HTML_JA, split)
    ok(rc == 0, "ja split=%d: composed" % split, errs)
    if rc == 0:
        m = check_message("ja split=%d" % split, raw, SUBJ_JA,
                          "SIPS セキュリティレポート", TEXT_JA, HTML_JA)
        cte = [p["Content-Transfer-Encoding"] for p in m.iter_parts()]
        ok(cte == ["base64", "base64"],
           "ja: Japanese parts go out in base64 (the smaller)", cte)
        ok(len(SUBJ_JA) == 120, "ja: the subject has 120 characters")

rc, raw, errs = compose("Weekly report: the quick brown fox jumps over the "
                        "lazy dog, again and again, until the line folds",
                        'Example, Inc. "News"', TEXT_EN, HTML_EN, 500)
ok(rc == 0, "en: composed", errs)
if rc == 0:
    m = check_message("en", raw, "Weekly report: the quick brown fox jumps "
                      "over the lazy dog, again and again, until the line "
                      "folds", 'Example, Inc. "News"', TEXT_EN, HTML_EN)
    cte = [p["Content-Transfer-Encoding"] for p in m.iter_parts()]
    ok(cte == ["quoted-printable", "quoted-printable"],
       "en: English parts go out in quoted-printable (the smaller)", cte)
    ok(b"Subject: Weekly report:" in raw, "en: ASCII subject left readable")

for subj in ("x" * 200, "a =?UTF-8?B?Zm9v?= b", " leading", "🎉" * 40):
    rc, raw, errs = compose(subj, "Plain Name", "t\n", "<p>h</p>\n", 0)
    ok(rc == 0 and str(email.message_from_bytes(
        raw, policy=email.policy.default)["Subject"]) == subj,
       "subject %r... round trip" % subj[:12])

for bad in ("evil\r\nBcc: victim@example.org", "evil\nX: y", "a\rb"):
    rc, raw, errs = compose(bad, "Name", "t\n", "<p>h</p>\n", 0)
    ok(rc != 0 and raw == b"" and "control character" in errs,
       "subject %r refused" % bad[:8], errs)
rc, raw, errs = compose("fine", "Name\r\nBcc: x@example.org", "t\n", "h\n", 0)
ok(rc != 0 and raw == b"", "display name with CRLF refused", errs)
rc, raw, errs = compose("fine", "Name", "t\n", "h\n", 0, "List\nX: y")
ok(rc != 0 and raw == b"", "list name with LF refused", errs)

# ---- the confirmation mail (kr_compose_confirm) ----
CEXE = build("compose_dump")
ok(CEXE is not None, "compose_dump builds against libkairan.a")
SENDER = "SIPS Security Report <report@news.example.jp>"
for lang, lname in (("ja", "SIPS セキュリティレポート"), ("en", "SIPS Report")):
    if CEXE is None:
        break
    r = subprocess.run([CEXE, os.path.join(base, "key"), lang, lname],
                       capture_output=True)
    ok(r.returncode == 0, "confirm %s: composed" % lang, r.stderr)
    raw = r.stdout
    m = email.message_from_bytes(raw, policy=email.policy.default)
    tpl = open(os.path.join(ROOT, "config/templates/confirm.%s.txt" % lang),
               encoding="utf-8").read()
    subj_tpl, body_tpl = tpl.split("\n", 1)
    want_subj = subj_tpl[len("Subject: "):].replace("{{list_name}}", lname)
    ok(str(m["Subject"]) == want_subj, "confirm %s: subject" % lang,
       str(m["Subject"]))
    ok(m["Auto-Submitted"] == "auto-generated" and
       m["List-Unsubscribe"] is None and m["Precedence"] is None,
       "confirm %s: Auto-Submitted, no list headers" % lang)
    ok(m["To"].addresses[0].addr_spec == "new.reader@example.org",
       "confirm %s: To" % lang)
    parts = list(m.iter_parts())
    text = parts[0].get_content().replace("\r\n", "\n")
    html = parts[1].get_content().replace("\r\n", "\n")
    link = re.search(r"https://news\.example\.jp/confirm\?t=[A-Za-z0-9_-]+",
                     text)
    ok(link is not None, "confirm %s: confirm link in text" % lang, text)
    if link:
        want = (body_tpl.replace("{{list_name}}", lname)
                .replace("{{email}}", "new.reader@example.org")
                .replace("{{sender_name}}", SENDER))
        # compose_dump's list has no sender: block: no contact line
        want = "".join(x for x in want.splitlines(True)
                       if "{{sender_contact}}" not in x)
        want = (want
                .replace("{{confirm_url}}", link.group(0)))
        ok(text == want, "confirm %s: text is the template, filled" % lang,
           text)
        ok('<a href="%s">' % link.group(0) in html and
           "&lt;report@news.example.jp&gt;" in html,
           "confirm %s: HTML has the link and escapes the sender" % lang)
    ok(max(len(x) for x in raw.split(b"\r\n")) <= 998,
       "confirm %s: no line over 998 octets" % lang)

done()
