"""kairanctl send: the FILE and URL intake doors, duplicate refusal and
--again, front-matter errors, and --dry-run --out messages parsed by
Python's email package (policy.default): subject, headers and both bodies
exactly as the report says, per-subscriber signed links, no line over 998
octets. URLs are served by a real HTTP server on 127.0.0.1."""
import email
import email.policy
import glob
import http.server
import os
import re
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Kairan, ROOT, done, ok, tmpdir  # noqa: E402

LONG_PARA = "日本語の長い段落には空白がありません、「全角」の句読点も。" * 120
LONG_LINE = "z" * 2000
SUBJECT = ("【第12号】" + "脆弱性情報と緊急対応のお願い、" * 9)[:120]
BODY = ("# 見出し：今月の脅威\n\n"
        "絵文字🎉🔐も正しく届くこと。\n\n"
        + LONG_PARA + "\n\n" + LONG_LINE + "\n\n"
        "- 項目一\n- 項目二\n")
REPORT = ("---\nsubject: \"%s\"\npreheader: 今月の要点\n---\n%s"
          % (SUBJECT, BODY))


def write(base, name, text):
    p = os.path.join(base, name)
    with open(p, "w", encoding="utf-8") as f:
        f.write(text)
    return p


def import_subs(k, rows):
    p = os.path.join(k.base, "subs.csv")
    with open(p, "w", encoding="utf-8") as f:
        f.write("email,name\n")
        for e, n in rows:
            f.write("%s,%s\n" % (e, n))
    return k.ctl("subscribers", "import", p, "--list", "sips-report",
                 "--confirmed")


base = tmpdir()
k = Kairan(base, start=False)
rc, out, err = import_subs(k, [("alice@example.org", "Alice"),
                               ("bob@example.net", "山田 太郎"),
                               ("carol@example.com", "")])
ok(rc == 0, "three confirmed subscribers imported", err)

# ---- --dry-run --out: real messages, nothing queued ----
src = write(base, "r.md", REPORT)
outdir = os.path.join(base, "dry")
rc, out, err = k.ctl("send", src, "--dry-run", "2", "--out", outdir)
ok(rc == 0, "send --dry-run 2 --out DIR", err)
files = sorted(glob.glob(os.path.join(outdir, "*.eml")))
ok(len(files) == 2, "two .eml files written", files)
ok("would go to 3 subscribers" in err and "queued nothing" in err,
   "dry run says how many would get it and that nothing was queued", err)
msgs = []
for path in files:
    raw = open(path, "rb").read()
    m = email.message_from_bytes(raw, policy=email.policy.default)
    msgs.append((raw, m))
tokens = []
for i, (raw, m) in enumerate(msgs):
    tag = "dry-run message %d" % (i + 1)
    lines = raw.split(b"\r\n")
    ok(max(len(x) for x in lines) <= 998, tag + ": no line over 998 octets")
    ok(b"\n" not in raw.replace(b"\r\n", b""), tag + ": CRLF only")
    ok(str(m["Subject"]) == SUBJECT, tag + ": subject of 120 Japanese "
       "characters round-trips", str(m["Subject"]))
    ok(m["From"].addresses[0].display_name == "SIPS Security Report" and
       m["From"].addresses[0].addr_spec == "report@news.example.jp",
       tag + ": From", m["From"])
    ok(m["To"].addresses[0].addr_spec in ("alice@example.org",
                                          "bob@example.net"),
       tag + ": To is a subscriber", m["To"])
    ok(m["Reply-To"].addresses[0].addr_spec == "info@example.jp",
       tag + ": Reply-To")
    ok(str(m["List-Id"]) ==
       "SIPS セキュリティレポート <sips-report.news.example.jp>",
       tag + ": List-Id with the list name", str(m["List-Id"]))
    lu = re.fullmatch(r"<(https://news\.example\.jp/unsubscribe\?t="
                      r"([A-Za-z0-9_-]+))>", m["List-Unsubscribe"] or "")
    ok(lu is not None, tag + ": List-Unsubscribe https link",
       m["List-Unsubscribe"])
    ok(m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click",
       tag + ": List-Unsubscribe-Post")
    ok(m["Precedence"] == "bulk" and m["MIME-Version"] == "1.0" and
       m["Date"] is not None and
       re.fullmatch(r"<[^@<>]+@news\.example\.jp>", m["Message-ID"] or ""),
       tag + ": Precedence, MIME-Version, Date, Message-ID")
    parts = list(m.iter_parts())
    ok([p.get_content_type() for p in parts] == ["text/plain", "text/html"],
       tag + ": multipart/alternative, text then HTML")
    text = parts[0].get_content().replace("\r\n", "\n")
    html = parts[1].get_content().replace("\r\n", "\n")
    ok(text.startswith(BODY), tag + ": text/plain is the Markdown body "
       "exactly", text[:300])
    ok("<h1>見出し：今月の脅威</h1>" in html and
       "<p>" + LONG_PARA + "</p>" in html and
       "<p>" + LONG_LINE + "</p>" in html and "🎉🔐" in html,
       tag + ": text/html has the rendered body exactly")
    ok("今月の要点" in html and "今月の要点" not in text,
       tag + ": preheader hidden in HTML only")
    if lu:
        url = lu.group(1)
        tokens.append(lu.group(2))
        ok(url in text and ('href="%s"' % url) in html,
           tag + ": the same unsubscribe link in both footers")
    ok(all(x in text and x in html for x in (
        "発行者: 株式会社Example", "住所: 東京都千代田区千代田1-1",
        "お問い合わせ: info@example.jp")),
       tag + ": footer names the sender, address and contact in both "
       "parts")
ok(len(set(tokens)) == 2, "each subscriber has an own token", tokens)
ok(len({m["Message-ID"] for _, m in msgs}) == 2, "Message-IDs differ")

# ---- an author's HTML comments reach neither part ----
COMMENTED = ("---\nsubject: comments\n---\n# 本文\n\n"
             "<!-- internal note: 未確認の情報 -->\n"
             "公開の段落 <!-- internal note 2 --> です。\n\n"
             "<!--\ninternal note 3\n-->\n\n最後の段落\n")
csrc = write(base, "commented.md", COMMENTED)
cdir = os.path.join(base, "dry-comments")
rc, out, err = k.ctl("send", csrc, "--dry-run", "1", "--out", cdir)
ok(rc == 0, "send --dry-run of a report with comments", err)
for path in sorted(glob.glob(os.path.join(cdir, "*.eml")))[:1]:
    m = email.message_from_bytes(open(path, "rb").read(),
                                 policy=email.policy.default)
    parts = list(m.iter_parts())
    text = parts[0].get_content()
    html = parts[1].get_content()
    ok("internal note" not in text and "未確認" not in text and
       "公開の段落 です。" in text and "最後の段落" in text,
       "comments dropped from text/plain, the rest kept", text[:400])
    ok("internal note" not in html and "未確認" not in html and
       "<p>公開の段落 です。</p>" in html and "最後の段落" in html,
       "comments dropped from text/html, the rest kept", html[-800:])
rc, out, err = k.ctl("send", write(base, "unclosed.md",
                                   "---\nsubject: u\n---\na\nb <!-- x\n"),
                     "--dry-run", "1")
ok(rc != 0 and "unclosed.md:5:3: an HTML comment '<!--' is not closed" in
   err, "an unclosed comment is refused at its line and column", err)

# ---- to stdout ----
rc, out, err = k.ctl("send", src, "--dry-run", "1")
ok(rc == 0 and "Subject: =?UTF-8?B?" in out and "dry run 1/1" in out,
   "send --dry-run 1 writes the message to stdout", err)

# ---- the real thing ----
rc, out, err = k.ctl("send", src)
ok(rc == 0 and re.fullmatch(r"report \d+ queued to 3 subscribers\n", out),
   "send queues to the 3 active subscribers (the dry runs queued "
   "nothing)", out + err)
rc, out2, err = k.ctl("send", src)
ok(rc == 1 and "--again" in err and out2 == "",
   "the same report twice is refused with a hint at --again", err)
rc, out3, err = k.ctl("send", src, "--again")
ok(rc == 0 and re.fullmatch(r"report \d+ queued to 3 subscribers\n", out3)
   and out3 != out, "--again queues it once more", out3 + err)

# ---- refusals ----
bad = write(base, "bad.md", "---\nlist: sips-report\n---\nbody\n")
rc, out, err = k.ctl("send", bad)
ok(rc == 1 and (bad + ":2:1: subject: missing") in err,
   "a report without subject: FILE:LINE:COL error", err)
bad = write(base, "inj.md", "---\nsubject: \"a\\r\\nBcc: x@example.org\"\n"
            "---\nbody\n")
rc, out, err = k.ctl("send", bad)
ok(rc == 1 and ":2:10: subject" in err, "CR/LF in the subject refused", err)
bad = write(base, "list.md", "---\nsubject: s\nlist: nope\n---\nbody\n")
rc, out, err = k.ctl("send", bad)
ok(rc == 1 and ":3:7: list: no such list" in err, "unknown list refused",
   err)
rc, out, err = k.ctl("send", os.path.join(base, "missing.md"))
ok(rc == 1 and "No such file" in err, "missing file: clear error", err)
rc, out, err = k.ctl("send", src, "--bogus")
ok(rc == 2, "unknown option: usage error (exit 2)", err)
rc, out, err = k.ctl("send")
ok(rc == 2, "no report named: usage error (exit 2)", err)
big = write(base, "big.md", "---\nsubject: s\n---\n" + "x" * (5 << 20))
rc, out, err = k.ctl("send", big)
ok(rc == 1 and "larger than" in err, "a report over 4 MiB refused", err)

# ---- no subscribers: an example reader ----
base2 = tmpdir()
k2 = Kairan(base2, start=False)
rc, out, err = k2.ctl("send", src, "--dry-run", "--out",
                      os.path.join(base2, "dry"))
files = glob.glob(os.path.join(base2, "dry", "*.eml"))
ok(rc == 0 and len(files) == 1 and
   b"To: reader@example.com" in open(files[0], "rb").read(),
   "dry run without subscribers renders for an example reader", err)

# ---- URLs ----
SERVED = {
    "/r.md": (200, "text/markdown; charset=utf-8",
              REPORT.replace("今月の要点", "URL版").encode()),
    "/plain": (200, "text/plain", REPORT.replace("今月", "先月").encode()),
    "/gone": (404, "text/html", b"<h1>not found</h1>"),
    "/boom": (500, "text/plain", b"oops"),
    "/png": (200, "image/png", b"\x89PNG\r\n"),
    "/huge": (200, "text/plain", b"---\nsubject: s\n---\n" + b"y" * (5 << 20)),
}


agents = []


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        agents.append(self.headers.get("User-Agent"))
        if self.path.startswith("/loop"):
            n = int(self.path[5:] or "0")
            self.send_response(302)
            self.send_header("Location", "/loop%d" % (n + 1))
            self.end_headers()
            return
        if self.path == "/redir":
            self.send_response(301)
            self.send_header("Location", "/r.md")
            self.end_headers()
            return
        code, ctype, body = SERVED.get(self.path, (404, "text/plain", b"no"))
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=srv.serve_forever, daemon=True).start()
u = "http://127.0.0.1:%d" % srv.server_address[1]

rc, out, err = k.ctl("send", u + "/r.md")
ok(rc == 0 and re.fullmatch(r"report \d+ queued to 3 subscribers\n", out),
   "send URL (text/markdown) queues", out + err)
with open(os.path.join(ROOT, "VERSION")) as f:
    version = f.read().strip()
ok(agents[:1] == ["kairan/" + version],
   "the fetch says User-Agent: kairan/%s (VERSION)" % version, agents)
rc, out, err = k.ctl("send", u + "/redir")
ok(rc == 1 and "--again" in err,
   "the same report through a redirect is a duplicate", err)
rc, out, err = k.ctl("send", u + "/plain", "--dry-run", "1", "--out",
                     os.path.join(base, "dry-url"))
ok(rc == 0 and glob.glob(os.path.join(base, "dry-url", "*.eml")),
   "send URL --dry-run (text/plain)", err)
rc, out, err = k.ctl("send", u + "/gone")
ok(rc == 1 and "HTTP status 404" in err, "a URL that returns 404: clear "
   "error", err)
rc, out, err = k.ctl("send", u.replace("http://", "http://user:pw1@")
                     + "/gone?private_token=SECRET42")
ok(rc == 1 and "HTTP status 404" in err and "SECRET42" not in err and
   "pw1" not in err and "/gone?" in err,
   "the URL's password and query are not shown in errors or logs", err)
rc, out, err = k.ctl("send", u + "/boom")
ok(rc == 1 and "HTTP status 500" in err, "a URL that returns 500", err)
rc, out, err = k.ctl("send", u + "/png")
ok(rc == 1 and "Content-Type image/png" in err, "a non-text type refused",
   err)
rc, out, err = k.ctl("send", u + "/huge")
ok(rc == 1 and "larger than" in err, "a URL over the size cap refused", err)
rc, out, err = k.ctl("send", u + "/loop")
ok(rc == 1 and "redirects" in err, "more than 5 redirects refused", err)
rc, out, err = k.ctl("send", "ftp://127.0.0.1/r.md")
ok(rc == 1, "ftp:// is not fetched (read as a missing file)", err)
srv.shutdown()

rc, out, err = k.ctl("reports")
ok(rc == 0 and out.count(SUBJECT[:10]) >= 2,
   "kairanctl reports lists what send queued", out + err)

done()
