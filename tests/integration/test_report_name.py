"""{{name}} in a list footer is filled in report mails from the
subscriber's stored name (struct kr_claim carries it): a subscriber added
with `kairanctl subscribers add ... --name 太郎 --confirmed` gets a report
through a real kairand and a real SMTP server (aiosmtpd) whose text and
HTML parts hold 太郎, while no header does; a name with <script> is
escaped in HTML; one with CR/LF is refused when added (compose turns
control characters into spaces anyway: see tests/unit/test_compose.c)."""
import email
import email.policy
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Kairan, SmtpServer, done, ok, report,  # noqa: E402
                     tmpdir)

LISTS = """
  - id: sips-report
    name: SIPS セキュリティレポート
    from: "SIPS Security Report <report@news.example.jp>"
    double_opt_in: true
    language: ja
    footer: |
      {{name}} 様 / 配信停止: {{unsubscribe_url}}
"""

EVIL = "<script>x</script> & 花子"
CRLF = "x\r\nBcc: victim@example.org"

base = tmpdir()
smtp = SmtpServer(base)
k = Kairan(base, smtp_port=smtp.port, lists=LISTS)

rc, out, err = k.ctl("subscribers", "add", "taro@example.jp", "--list",
                     "sips-report", "--name", "太郎", "--confirmed")
ok(rc == 0, "subscribers add --name 太郎 --confirmed", (rc, out, err))
rc, out, err = k.ctl("subscribers", "add", "evil@example.jp", "--list",
                     "sips-report", "--name", EVIL, "--confirmed")
ok(rc == 0, "subscribers add --name with <script>", (rc, out, err))
rc, out, err = k.ctl("subscribers", "add", "crlf@example.jp", "--list",
                     "sips-report", "--name", CRLF, "--confirmed")
ok(rc != 0, "a name with CR/LF is refused at add", (rc, out, err))
rc, out, err = k.send_report(report("第1号 名前テスト", "本文です。"))
ok(rc == 0, "kairanctl send", (rc, out, err))
ok(smtp.wait_count(2, 60), "2 report mails received", k.logtext())

by_rcpt = {}
for e, raw in smtp.messages():
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    by_rcpt[str(msg["To"])] = (raw, msg)

raw, msg = by_rcpt.get("taro@example.jp", (b"", None))
ok(msg is not None, "the mail to taro@example.jp arrived", list(by_rcpt))
if msg is not None:
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    ok("太郎 様 / 配信停止: https://news.example.jp/unsubscribe?t=" in text,
       "text part: footer holds 太郎", text[-400:])
    ok("太郎 様" in html, "HTML part: footer holds 太郎", html[-800:])
    hdrs = "\n".join("%s: %s" % (kk, v) for kk, v in msg.items())
    ok("太郎" not in hdrs, "no header holds the name", hdrs)

raw, msg = by_rcpt.get("evil@example.jp", (b"", None))
ok(msg is not None, "the mail to the hostile name arrived", list(by_rcpt))
if msg is not None:
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    ok("<script>x</script> & 花子 様" in text,
       "text part: the name as is", text[-400:])
    ok("<script>" not in html and
       "&lt;script&gt;x&lt;/script&gt; &amp; 花子 様" in html,
       "HTML part: the name is escaped", html[-800:])
ok("crlf@example.jp" not in by_rcpt, "nothing mailed to the refused name")

k.stop()
smtp.stop()
done()
