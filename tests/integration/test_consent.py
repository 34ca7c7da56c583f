#!/usr/bin/python3
"""Consent records (特定電子メール法, Article 3). A real kairand (Maildir
transport): a reader signs up through the form, confirms, gets two
reports and unsubscribes with one click; `kairanctl subscribers consent`
then shows the whole history — consent (when, via form, from which
address, user agent), the confirmation mail and confirmation, both reports
with their dates and the very Message-IDs the mails carried, the
unsubscribe — and how long it is kept. `subscribers remove --forget`
refuses before consent.retention has passed since the last report mail
(saying until when), deletes every record once it has, and deletes at once
a subscription that never got a report. Plain `remove` unsubscribes and
keeps the record. consent.retention below a month is a config error."""
import email
import email.policy
import glob
import os
import re
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Kairan, done, http, ok, report, tmpdir, wait_for  # noqa

ADDR = "taro@example.jp"
LINK = re.compile(r"https://news\.example\.jp(/(confirm|unsubscribe)\?t="
                  r"[A-Za-z0-9_-]+)")


def mails_to(k, addr):
    out = []
    for p in sorted(glob.glob(os.path.join(k.base, "mail", "new", "*")),
                    key=os.path.getmtime):
        with open(p, "rb") as f:
            m = email.message_from_bytes(f.read(),
                                         policy=email.policy.default)
        if addr in str(m.get("To", "")):
            out.append(m)
    return out


def text(m):
    return m.get_body(("plain",)).get_content()


def iso_day(t):
    return time.strftime("%Y-%m-%d", time.gmtime(t))


base = tmpdir()
k = Kairan(base)
st, _, body = http("POST", k.url("/subscribe"), {"email": ADDR},
                   {"User-Agent": "consent-test/1.0"})
ok(st == 200, "form sign-up", (st, body))
ok(wait_for(lambda: len(mails_to(k, ADDR)) == 1, 20),
   "the confirmation mail arrives", k.logtext())
link = LINK.search(text(mails_to(k, ADDR)[0])).group(1)
# (times are seconds: a second between the steps keeps their order)
time.sleep(1.1)
st, _, _ = http("POST", k.url(link), "")
ok(st == 200, "confirmed through the page", st)
for n in (1, 2):
    time.sleep(1.1)
    rc, out, err = k.send_report(report("第%d号 同意テスト" % n,
                                        "本文 %d です。" % n),
                                 "r%d.md" % n)
    ok(rc == 0, "report %d queued" % n, err)
    ok(wait_for(lambda: len(mails_to(k, ADDR)) == 1 + n, 30),
       "report %d arrives" % n, k.logtext())
ms = mails_to(k, ADDR)
mids = [str(m["Message-ID"]) for m in ms[1:]]
time.sleep(1.1)
unsub = re.search(r"<https://news\.example\.jp(/unsubscribe\?t=[^>]+)>",
                  str(ms[2]["List-Unsubscribe"])).group(1)
st, _, _ = http("POST", k.url(unsub), "List-Unsubscribe=One-Click")
ok(st == 200, "one-click unsubscribe", st)

rc, out, err = k.ctl("subscribers", "consent", ADDR)
ok(rc == 0, "subscribers consent exits 0", err)
lines = out.splitlines()
ok(lines[0].startswith(ADDR + " on sips-report (subscription ") and
   lines[0].endswith("): unsubscribed"), "the subscription and its status",
   out)
ok(re.search(r"^  consent:      \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ, via form, "
             r"from 127\.0\.0\.1, user agent \"consent-test/1\.0\"$", out,
             re.M), "consent: when, via the form, from where, user agent",
   out)
ok(re.search(r"^  confirmed:    \d{4}-", out, re.M) and
   re.search(r"^  unsubscribed: \d{4}-", out, re.M),
   "confirmation and unsubscribe times", out)
hist = out[out.index("history"):]
order = ["subscribe: form", "confirmation mail sent", "confirm",
         "report 1 sent \"第1号 同意テスト\" Message-ID " + mids[0],
         "report 2 sent \"第2号 同意テスト\" Message-ID " + mids[1],
         "unsubscribe"]
pos = [hist.find(x) for x in order]
ok(all(p >= 0 for p in pos) and pos == sorted(pos),
   "history in order: sign-up, confirmation mail, confirm, both reports "
   "with the Message-IDs the mails carried, unsubscribe", (pos, out))
ok(re.search(r"^    \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ  report 2 sent", out,
             re.M), "every report with its date", out)
ok("kept until:   %s" % iso_day(time.time() + 31 * 86400) in out or
   "kept until:   %s" % iso_day(time.time() + 31 * 86400 - 60) in out,
   "kept 31 days (the default consent.retention) after the last report",
   out)

# ---- remove --forget respects the retention ----
rc, out, err = k.ctl("subscribers", "remove", ADDR, "--forget")
ok(rc == 1 and "kept until" in out and "again then" in out,
   "remove --forget before the retention: refused, says until when",
   (rc, out, err))
rc, out, err = k.ctl("subscribers", "consent", ADDR)
ok(rc == 0 and "report 2 sent" in out, "the record is still all there")
k.stop()
db = os.path.join(base, "kairan.db")
con = sqlite3.connect(db)
sid = con.execute("SELECT id FROM subscribers WHERE email = ?",
                  (ADDR,)).fetchone()[0]
# the last report went out 31 days and a minute ago
con.execute("UPDATE deliveries SET sent_at = sent_at - ? WHERE"
            " subscriber_id = ?", (31 * 86400 + 60, sid))
con.commit()
con.close()
rc, out, err = k.ctl("subscribers", "remove", ADDR, "--forget")
ok(rc == 0 and "forgotten" in out, "remove --forget once the retention has "
   "passed", (rc, out, err))
con = sqlite3.connect(db)
left = [con.execute(q, (sid,)).fetchone()[0] for q in (
    "SELECT count(*) FROM subscribers WHERE id = ?",
    "SELECT count(*) FROM deliveries WHERE subscriber_id = ?",
    "SELECT count(*) FROM events WHERE subscriber_id = ?")]
anon = con.execute("SELECT count(*) FROM events WHERE kind = 'forget' AND"
                   " subscriber_id IS NULL").fetchone()[0]
named = con.execute("SELECT count(*) FROM events WHERE detail LIKE ?",
                    ("%" + ADDR + "%",)).fetchone()[0]
con.close()
ok(left == [0, 0, 0] and anon == 1 and named == 0,
   "every row of the person deleted; one anonymous 'forget' event",
   (left, anon, named))
rc, out, err = k.ctl("subscribers", "consent", ADDR)
ok(rc == 1 and "no subscription" in err, "consent: nothing left", err)

# ---- plain remove keeps the record; no report mail: forget at once ----
rc, out, err = k.ctl("subscribers", "add", "hanako@example.jp",
                     "--confirmed")
ok(rc == 0, "cli add", err)
rc, out, err = k.ctl("subscribers", "consent", "hanako@example.jp")
ok(rc == 0 and "via cli, from -, user agent \"kairanctl subscribers add "
   "(uid " in out and "no report mail sent" in out,
   "cli consent: how and from where", out)
rc, out, err = k.ctl("subscribers", "remove", "hanako@example.jp")
ok(rc == 0 and "consent record is kept" in out, "plain remove", out)
rc, out, err = k.ctl("subscribers", "consent", "hanako@example.jp")
ok(rc == 0 and ": unsubscribed" in out and "remove: operator" in out,
   "after remove the record is kept, unsubscribed", out)
rc, out, err = k.ctl("subscribers", "remove", "hanako@example.jp",
                     "--forget")
ok(rc == 0 and "forgotten" in out,
   "--forget: no report was ever sent under this consent: at once",
   (rc, out, err))

# ---- import: from where is the file and line ----
csv = os.path.join(base, "in.csv")
with open(csv, "w") as f:
    f.write("email\njiro@example.jp\n")
rc, out, err = k.ctl("subscribers", "import", csv, "--confirmed")
rc2, out, err2 = k.ctl("subscribers", "consent", "jiro@example.jp")
ok(rc == 0 and rc2 == 0 and "via import-confirmed, from -, user agent "
   "\"kairanctl subscribers import %s:2 (uid " % csv in out,
   "import: consent via import, from the file and line", (err, out))

# ---- the retention is a config key, a month at least ----
with open(k.config, encoding="utf-8") as f:
    cfg = f.read()
for val, good in (("10d", False), ("90d", True)):
    with open(k.config, "w", encoding="utf-8") as f:
        f.write(cfg + "consent:\n  retention: %s\n" % val)
    rc, out, err = k.ctl("check-config")
    ok((rc == 0) == good and (good or "consent.retention" in err and
                              "31d..3650d" in err),
       "consent.retention: %s %s" % (val, "accepted" if good else
                                     "refused (less than a month)"), err)
done()
