"""kairanctl subscribers import/export/add/remove/list and the report verbs,
run as the real binary on a real SQLite file. Python's csv module reads the
export as an independent RFC 4180 parser."""
import csv
import io
import os
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Kairan, ok, done, tmpdir  # noqa: E402

LISTS = """
  - id: news
    name: News
    from: "News <news@example.jp>"
    double_opt_in: true
  - id: ops
    name: Ops
    from: "Ops <ops@example.jp>"
    double_opt_in: true
"""

base = tmpdir()
k = Kairan(base, lists=LISTS, start=False)
db = os.path.join(base, "kairan.db")

# Line numbers: 1 header, 2 ok, 3-4 a quoted name holding a newline (a
# record is one line: line 3's quote is not closed on it, and line 4 has a
# quote inside an unquoted field), 5 bad address, 6 unknown
# list, 7 bad status, 8 ok (list from the column), 9 bad time, 10 a quote
# inside an unquoted field, 11 unsubscribed (kept so, no mail), 12 ok with
# a UTF-8 name, 13 duplicate of 2, 14 ok: quoted name with comma and
# quotes, domain in capitals.
rows = (
    "email,name,list,status,consent_at,consent_source,consent_ip,extra\r\n"
    "alice@example.jp,Alice,,,2026-04-01T09:00:00Z,form,192.0.2.1,x\r\n"
    "bob@example.jp,\"Bob\nBuilder\",news,active,,,,\r\n"
    "not-an-address,Nobody,,,,,,\r\n"
    "carol@example.jp,Carol,nosuchlist,,,,,\r\n"
    "dave@example.jp,Dave,news,sleeping,,,,\r\n"
    "erin@example.jp,Erin,ops,pending,1700000000,cli,,\r\n"
    "frank@example.jp,Frank,news,,yesterday,,,\r\n"
    "gina@example.jp,Gi\"na,news,,,,,\r\n"
    "hank@example.jp,Hank,news,unsubscribed,,,,\r\n"
    "ivy@example.jp,山田 アイビー,news,,,,,\r\n"
    "alice@example.jp,Alice again,news,,,,,\r\n"
    "bob2@Example.JP,\"Bob, \"\"the\"\" Builder\",news,active,,,,\r\n"
)
src = os.path.join(base, "subs.csv")
with open(src, "w", encoding="utf-8") as f:
    f.write(rows)

rc, out, err = k.ctl("subscribers", "import", src, "--list", "news")
ok(rc == 1, "import with bad rows exits 1", (rc, out, err))
for line, what in ((3, "not closed"), (4, "quote"), (5, "email"),
                   (6, "nosuchlist"),
                   (7, "sleeping"),
                   (9, "consent_at"), (10, "quote")):
    ok(("%s:%d: " % (src, line)) in err and what in
       [l for l in err.splitlines() if l.startswith("%s:%d:" % (src, line))][0]
       if ("%s:%d: " % (src, line)) in err else False,
       "error for line %d names %s" % (line, what), err)
ok("%s:1: unknown column 'extra' ignored" % src in err,
   "unknown column reported", err)
bad_lines = [l for l in err.splitlines() if l.startswith(src + ":")
             and "unknown column" not in l]
ok(len(bad_lines) == 7, "exactly seven rejected rows reported", err)
ok("5 added, 1 already there, 7 rejected; 4 confirmation mails queued" in
   out, "import summary", out)
ok("example.jp" not in err and "not-an-address" not in err,
   "no address echoed in the error lines", err)


# A stray quote costs its own row only (it used to swallow the rows up to
# the next quote, reported as one rejected row at line 5), and a name in
# Latin-1 is refused with its line instead of stored as it is.
base3 = tmpdir()
k3 = Kairan(base3, lists=LISTS, start=False)
stray = os.path.join(base3, "stray.csv")
with open(stray, "wb") as f:
    f.write(b"email,name\n"
            b"s1@example.jp,One\n"
            b"s2@example.jp,\"Two\n"
            b"s3@example.jp,Three\n"
            b"s4@example.jp,\"Four\"\n"
            b"s5@example.jp,Jos\xe9\n"
            b"s6@example.jp,\xe5\xb1\xb1\xe7\x94\xb0\n")
rc, out, err = k3.ctl("subscribers", "import", stray, "--list", "ops",
                     "--confirmed")
errs = [l for l in err.splitlines() if l.startswith(stray + ":")]
ok(rc == 1 and len(errs) == 2 and errs[0].startswith(stray + ":3: ") and
   "not closed on this line" in errs[0] and
   errs[1].startswith(stray + ":6: name: not valid UTF-8"),
   "stray quote reported at line 3, Latin-1 name at line 6", err)
ok("4 added, 0 already there, 2 rejected" in out,
   "the rows after the stray quote are imported", out)
con = sqlite3.connect(os.path.join(base3, "kairan.db"))
got = dict(con.execute("SELECT email, name FROM subscribers").fetchall())
con.close()
ok(got == {"s1@example.jp": "One", "s3@example.jp": "Three",
           "s4@example.jp": "Four", "s6@example.jp": "山田"},
   "exactly the valid rows stored", got)


def export(kk, *args):
    rc, out, err = kk.ctl("subscribers", "export", *args)
    return rc, out, err


rc, exp1, err = export(k)
ok(rc == 0, "export exits 0", err)
recs = list(csv.DictReader(io.StringIO(exp1, newline="")))
byemail = {(r["list"], r["email"]): r for r in recs}
ok(len(recs) == 5, "five subscriptions exported", exp1)
ok(exp1.split("\r\n")[0] == "email,name,list,status,consent_at,"
   "consent_source,consent_ip,consent_ua,confirmed_at,unsubscribed_at,"
   "created_at", "export header", exp1[:200])
a = byemail.get(("news", "alice@example.jp"), {})
ok(a.get("status") == "pending" and a.get("consent_at") ==
   "2026-04-01T09:00:00Z" and a.get("consent_source") == "form" and
   a.get("consent_ip") == "192.0.2.1" and a.get("confirmed_at") == "",
   "consent record kept; without --confirmed the row is pending", a)
b = byemail.get(("news", "bob2@example.jp"), {})
ok(b.get("name") == 'Bob, "the" Builder',
   "domain normalised, quoted name with comma and quotes", b)
ok(b.get("consent_source") == "import", "consent_source import", b)
e = byemail.get(("ops", "erin@example.jp"), {})
ok(e.get("consent_at") == "2023-11-14T22:13:20Z" and
   e.get("consent_source") == "cli", "list column and Unix time", e)
h = byemail.get(("news", "hank@example.jp"), {})
ok(h.get("status") == "unsubscribed", "unsubscribed stays unsubscribed", h)
i = byemail.get(("news", "ivy@example.jp"), {})
ok(i.get("name") == "山田 アイビー", "UTF-8 name", i)

con = sqlite3.connect(db)
n_conf = con.execute("SELECT count(*) FROM deliveries WHERE kind = 1 AND"
                     " report_id IS NULL").fetchone()[0]
con.close()
ok(n_conf == 4, "one confirmation queued per new pending row", n_conf)

# The same file again changes nothing.
rc, out, err = k.ctl("subscribers", "import", src, "--list", "news")
ok("0 added, 6 already there, 7 rejected; 0 confirmation mails queued" in
   out, "second import adds nothing", out)
rc, exp2, err = export(k)
ok(exp2 == exp1, "export unchanged after importing twice")

# Round trip: export -> import --confirmed into an empty database ->
# export again gives the same file (statuses, consent, names, times).
base2 = tmpdir()
k2 = Kairan(base2, lists=LISTS, start=False)
dump = os.path.join(base2, "export.csv")
with open(dump, "w", encoding="utf-8", newline="") as f:
    f.write(exp1)
rc, out, err = k2.ctl("subscribers", "import", dump, "--confirmed")
ok(rc == 0 and "5 added, 0 already there, 0 rejected; 4 confirmation" in
   out, "export imports cleanly (pending rows stay pending)", (out, err))
rc, exp3, err = export(k2)
ok(exp3 == exp1, "export -> import -> export round-trips",
   "\n".join(x for x in exp3.split("\r\n") if x not in exp1.split("\r\n")))

# --confirmed on a fresh file: active, consent_source import-confirmed.
src2 = os.path.join(base, "confirmed.csv")
with open(src2, "w", encoding="utf-8") as f:
    f.write("\ufeffEmail,Name\nzed@example.jp,Zed\n")
rc, out, err = k.ctl("subscribers", "import", src2, "--list", "ops",
                     "--confirmed")
ok(rc == 0 and "1 added" in out, "BOM and header case accepted", (out, err))
rc, out, err = export(k, "--list", "ops")
z = [r for r in csv.DictReader(io.StringIO(out, newline=""))
     if r["email"] == "zed@example.jp"]
ok(z and z[0]["status"] == "active" and
   z[0]["consent_source"] == "import-confirmed" and z[0]["confirmed_at"],
   "--confirmed rows are active with consent_source import-confirmed", z)

# list, add, remove
rc, out, err = k.ctl("subscribers", "list", "--list", "news", "--status",
                     "pending")
lines = [l.split("\t") for l in out.splitlines()]
ok(rc == 0 and sorted(l[3] for l in lines) ==
   ["alice@example.jp", "bob2@example.jp", "ivy@example.jp"],
   "list --list --status filters", out)
rc, out, err = k.ctl("subscribers", "list", "--status", "sleepy")
ok(rc == 2, "bad --status is a usage error", (rc, err))
rc, out, err = k.ctl("subscribers", "add", "New@Example.JP", "--list", "ops",
                     "--name", "New One", "--confirmed")
ok(rc == 0 and "added to ops (active)" in out, "add --confirmed", (out, err))
rc, out, err = k.ctl("subscribers", "add", "New@example.jp", "--list", "ops")
ok(rc == 0 and "already on ops (active)" in out, "add twice", (out, err))
# Letter case: one subscription per address, kept as first typed.
rc, out, err = k.ctl("subscribers", "add", "NEW@example.jp", "--list", "ops")
ok(rc == 0 and "already on ops (active)" in out,
   "add in other letter case: already on", (out, err))
case_csv = os.path.join(base, "case.csv")
with open(case_csv, "w") as f:
    f.write("email\r\nnew@EXAMPLE.jp\r\nnEw@example.jp\r\n")
rc, out, err = k.ctl("subscribers", "import", case_csv, "--list", "ops",
                     "--confirmed")
ok(rc == 0 and "0 added, 2 already there" in out,
   "import in other letter case adds nothing", (out, err))
rc, out, err = k.ctl("subscribers", "list", "--list", "ops")
ops = [l.split("\t")[3] for l in out.splitlines() if l]
ok([a for a in ops if a.lower() == "new@example.jp"] == ["New@example.jp"],
   "one row, spelled as first typed", ops)
rc, out, err = k.ctl("subscribers", "add", "hank@example.jp", "--list",
                     "news")
ok(rc == 1 and "unsubscribed" in out,
   "add does not re-subscribe an unsubscribed reader", (rc, out, err))
rc, out, err = k.ctl("subscribers", "add", "x@example.jp")
ok(rc == 2 and "--list" in err, "add needs --list with two lists", err)
rc, out, err = k.ctl("subscribers", "add", "bad address", "--list", "ops")
ok(rc == 2, "add refuses a bad address", (rc, err))
rc, out, err = k.ctl("subscribers", "remove", "alice@example.jp")
ok(rc == 0 and "removed from news" in out, "remove", (out, err))
rc, out, err = k.ctl("subscribers", "remove", "alice@example.jp")
ok(rc == 0 and "already unsubscribed on news" in out,
   "remove again: already unsubscribed, the record kept", (rc, out, err))
rc, out, err = k.ctl("subscribers", "remove", "nobody@example.jp")
ok(rc == 1, "remove of an absent address exits 1", (rc, err))
con = sqlite3.connect(db)
kept = con.execute("SELECT status FROM subscribers WHERE email ="
                   " 'alice@example.jp'").fetchall()
queued = con.execute("SELECT count(*) FROM deliveries d JOIN subscribers s"
                     " ON s.id = d.subscriber_id WHERE s.email ="
                     " 'alice@example.jp' AND d.state IN (0, 2)"
                     ).fetchone()[0]
con.close()
ok(kept == [(2,)] and queued == 0,
   "remove unsubscribes (the consent record stays) and cancels its mail",
   (kept, queued))
rc, out, err = k.ctl("subscribers", "remove", "alice@example.jp",
                     "--forget")
ok(rc == 0 and "forgotten" in out, "remove --forget deletes it (no report "
   "was ever sent)", (rc, out, err))
con = sqlite3.connect(db)
left = con.execute("SELECT count(*) FROM subscribers WHERE email ="
                   " 'alice@example.jp'").fetchone()[0]
conf = con.execute("SELECT count(*) FROM deliveries d WHERE NOT EXISTS"
                   " (SELECT 1 FROM subscribers s WHERE s.id ="
                   " d.subscriber_id)").fetchone()[0]
con.close()
ok(left == 0 and conf == 0, "--forget deletes the row and its deliveries",
   (left, conf))

# --help and usage errors of every verb.
for verb in (["subscribers"], ["subscribers", "import"], ["status"],
             ["pause"], ["resume"], ["cancel"], ["retry"], ["reports"],
             ["backup"]):
    rc, out, err = k.ctl(*verb, "--help")
    ok(rc == 0 and "usage:" in out, "%s --help" % " ".join(verb), (rc, err))
for verb in (["subscribers", "frobnicate"], ["pause"], ["retry", "3"],
             ["status", "x"], ["backup"]):
    rc, out, err = k.ctl(*verb)
    ok(rc == 2, "%s: usage error exits 2" % " ".join(verb), (rc, err))

# Report verbs on a report queued by hand through the schema's own rules.
con = sqlite3.connect(db)
con.execute("INSERT INTO reports (list_id, subject, text, html, hash,"
            " created_at) VALUES ('news', 'Report \x1b[31mred', 't', 'h',"
            " 'abc', 1700000000)")
rid = con.execute("SELECT max(id) FROM reports").fetchone()[0]
con.execute("INSERT INTO deliveries (kind, report_id, subscriber_id,"
            " queued_at, state) SELECT 0, ?, id, 1700000000, 3 FROM"
            " subscribers WHERE list_id = 'news'", (rid,))
con.commit()
con.close()
rc, out, err = k.ctl("reports")
ok(rc == 0 and ("%d" % rid) in out and "\x1b" not in out,
   "reports lists it without control characters", out)
rc, out, err = k.ctl("status", str(rid))
ok(rc == 0 and "failed     3" in out, "status REPORT counts", out)
rc, out, err = k.ctl("retry", "--failed", str(rid))
ok(rc == 0 and "3 copies queued again" in out, "retry --failed", (out, err))
rc, out, err = k.ctl("pause", str(rid))
ok(rc == 0 and "paused" in out, "pause", (out, err))
rc, out, err = k.ctl("resume", str(rid))
ok(rc == 0 and "resumed" in out, "resume", (out, err))
rc, out, err = k.ctl("cancel", str(rid))
ok(rc == 0 and "cancelled" in out and "3 cancelled" in out, "cancel",
   (out, err))
rc, out, err = k.ctl("status", str(rid), "--watch")
ok(rc == 0 and "cancelled 3" in out, "status --watch ends when nothing is"
   " left (not a terminal: one line)", (rc, out, err))
rc, out, err = k.ctl("pause", "9999")
ok(rc == 1 and "no report 9999" in err, "unknown report exits 1", err)
rc, out, err = k.ctl("status")
ok(rc == 0 and "all copies" in out, "status without REPORT", out)

# backup: a consistent copy that opens and holds the rows.
bk = os.path.join(base, "backup.db")
rc, out, err = k.ctl("backup", bk)
ok(rc == 0 and os.path.exists(bk), "backup", (rc, out, err))
con = sqlite3.connect(bk)
n = con.execute("SELECT count(*) FROM subscribers").fetchone()[0]
con.close()
ok(n == 6, "backup holds the subscribers", n)
rc, out, err = k.ctl("backup", bk)
ok(rc == 1 and "exists" in err, "backup keeps an existing file", err)

# A file that is not a database is refused and left alone.
with open(db, "rb") as f:
    pass
junk = os.path.join(base, "junk.db")
with open(junk, "w") as f:
    f.write("hello, this is not SQLite\n" * 10)
k3 = Kairan(tmpdir(), lists=LISTS, start=False)
with open(k3.config) as f:
    conf_text = f.read()
with open(k3.config, "w") as f:
    f.write(conf_text.replace(os.path.join(k3.base, "kairan.db"), junk))
rc, out, err = k3.ctl("subscribers", "list")
with open(junk) as f:
    same = f.read() == "hello, this is not SQLite\n" * 10
ok(rc == 1 and "not an SQLite database" in err and same,
   "non-SQLite database refused, untouched", (rc, err))

# With kairand running: an import takes turns with the daemon on the same
# database, the confirmations it queues are delivered, and importing the
# same file again sends nothing more.
import glob  # noqa: E402
from harness import wait_for  # noqa: E402

base4 = tmpdir()
k4 = Kairan(base4)
maildir = os.path.join(base4, "mail", "new")
src4 = os.path.join(base4, "live.csv")
with open(src4, "w", encoding="utf-8") as f:
    f.write("email,name\n")
    for n in range(40):
        f.write("reader%02d@example.jp,読者 %d\n" % (n, n))


def mails():
    return len(glob.glob(os.path.join(maildir, "*")))


rc, out, err = k4.ctl("subscribers", "import", src4)
ok(rc == 0 and "40 confirmation mails queued" in out,
   "import while kairand runs", (rc, out, err))
ok(wait_for(lambda: mails() >= 40, 60) and mails() == 40,
   "kairand delivers the 40 confirmations the import queued", mails())
rc, out, err = k4.ctl("subscribers", "import", src4)
ok(rc == 0 and "0 added, 40 already there" in out, "import again", out)
rc, out, err = k4.ctl("status")
ok(rc == 0 and "sent       40" in out and "queued     0" in out,
   "status counts the sent confirmations", out)
time.sleep(1)
ok(mails() == 40, "the second import sent nothing", mails())
bk4 = os.path.join(base4, "live-backup.db")
rc, out, err = k4.ctl("backup", bk4)
ok(rc == 0, "backup while kairand runs", (rc, out, err))
con = sqlite3.connect(bk4)
sent = con.execute("SELECT count(*) FROM deliveries WHERE state = 1"
                   ).fetchone()[0]
con.close()
ok(sent == 40, "the backup holds the delivery state", sent)
ok(k4.proc.alive(), "kairand still running", k4.logtext())

done()
