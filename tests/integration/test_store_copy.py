#!/usr/bin/env python3
"""kairanctl store copy (issue 13): a live SQLite store moved into an empty
real PostgreSQL database and back, every table's rows counted on both
sides, ids kept and never given twice; kairand then runs on the copy
without sending anything again; a non-empty destination and a password
in the URI are refused."""
import os
import re
import sqlite3
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pg  # noqa: E402
from harness import Kairan, done, http, ok, report, tmpdir, wait_for  # noqa

TABLES = ["subscribers", "reports", "deliveries", "events", "bounces",
          "token_keys", "governor_lists", "dkim_keys"]

if not pg.available():
    ok(False, "PostgreSQL 15 is installed (make deps)")
    done()

base = tmpdir()
k = Kairan(base)
N = 400
rc, out, err = k.add_subscribers(["reader%04d@example.jp" % i
                                  for i in range(N)])
ok(rc == 0, "import %d subscribers" % N, err)
st = http("POST", k.url("/subscribe"), data={"email": "form@example.org"})[0]
ok(st == 200, "a sign-up through the form (pending, an event, a mail)")
rc, out, err = k.send_report(report("移行前の号", "本文"))
ok(rc == 0, "a report queued", (rc, out, err))
maildir = os.path.join(base, "mail", "new")


def mails():
    try:
        return len(os.listdir(maildir))
    except OSError:
        return 0


ok(wait_for(lambda: mails() >= N + 1, 60), "the report and the "
   "confirmation are delivered", mails())
# the newest subscription forgotten: its id must never come back
st = http("POST", k.url("/subscribe"), data={"email": "gone@example.org"})[0]
rc, out, err = k.ctl("subscribers", "remove", "gone@example.org", "--forget")
ok(st == 200 and rc == 0, "the newest subscription is forgotten",
   (st, rc, out, err))
k.stop()
sent_before = mails()

db = os.path.join(base, "kairan.db")
con = sqlite3.connect(db)
# a DKIM key a host recorded (schema v12): kept by the copy, or the hosts
# on the copy would record another as the first
FP = "5e" * 32
con.execute("INSERT INTO dkim_keys VALUES ('news.example.jp', 's1-rsa', "
            "?, 'host-a', 1700000000)", (FP,))
con.commit()
lite = {t: con.execute("SELECT count(*) FROM %s" % t).fetchone()[0]
        for t in TABLES}
gone_id = con.execute("SELECT seq FROM sqlite_sequence WHERE name = "
                      "'subscribers'").fetchone()[0]
con.close()
ok(lite["subscribers"] == N + 1 and lite["deliveries"] >= N + 1 and
   lite["events"] > 0 and lite["dkim_keys"] == 1,
   "the SQLite store has rows to move", lite)

srv = pg.Server()
uri = srv.createdb("moved")
rc, out, err = k.ctl("store", "copy", "--to", uri, "--to-password-file",
                     srv.password_file)
ok(rc == 0 and "copied" in out and "subscribers" in out,
   "store copy SQLite -> PostgreSQL", (rc, out, err))
pgc = {t: int(srv.psql("moved", "SELECT count(*) FROM %s" % t))
       for t in TABLES}
ok(pgc == lite, "every table has the same rows in PostgreSQL", (pgc, lite))
dk = srv.psql("moved", "SELECT domain, selector, fingerprint, host, seen_at "
              "FROM dkim_keys")
ok(dk == "news.example.jp|s1-rsa|%s|host-a|1700000000\n" % FP,
   "the DKIM key fingerprints are copied as they were", dk)
same = srv.psql("moved", "SELECT id, email, status FROM subscribers "
                "ORDER BY id LIMIT 3")
con = sqlite3.connect(db)
want = "".join("%d|%s|%d\n" % r for r in con.execute(
    "SELECT id, email, status FROM subscribers ORDER BY id LIMIT 3"))
con.close()
ok(same == want, "ids and values are kept", (same, want))

rc, out, err = k.ctl("store", "copy", "--to", uri, "--to-password-file",
                     srv.password_file)
ok(rc == 1 and "not empty" in err, "a destination with rows is refused",
   (rc, out, err))
bad = uri.replace("kairan@", "kairan:hunter2@")
rc, out, err = k.ctl("store", "copy", "--to", bad)
ok(rc == 2 and "hunter2" not in out + err,
   "a password in DEST is refused, not echoed", (rc, out, err))

# kairand on the copy: nothing goes again, and a new sign-up gets an id
# above every id SQLite gave (the forgotten one included).
with open(k.config) as f:
    text = f.read()
text = re.sub(r"^database: .*$", "database: {host: 127.0.0.1, port: %d, "
              "dbname: moved, user: kairan, password_file: %s}" %
              (srv.port, srv.password_file), text, count=1, flags=re.M)
with open(k.config, "w") as f:
    f.write(text)
k.start()
st = http("POST", k.url("/subscribe"), data={"email": "new@example.org"})[0]
ok(st == 200, "kairand serves the form on the PostgreSQL copy")
new_id = int(srv.psql("moved", "SELECT id FROM subscribers WHERE email = "
                      "'new@example.org'") or 0)
ok(new_id > gone_id, "the next id is above every id given before "
   "(%d > %d)" % (new_id, gone_id), (new_id, gone_id))
ok(wait_for(lambda: mails() == sent_before + 1, 20) and
   not wait_for(lambda: mails() > sent_before + 1, 3),
   "only the newcomer's confirmation goes out: nothing sent twice",
   (mails(), sent_before))
rc, out, err = k.ctl("status")
ok(rc == 0 and "sent 400," in out and "sent       402" in out,
   "kairanctl status reads the copy (the report and both confirmations)",
   (rc, out, err))
k.stop()

# And back: PostgreSQL -> a new SQLite file.
back = os.path.join(base, "back.db")
rc, out, err = k.ctl("store", "copy", "--to", back)
ok(rc == 0, "store copy PostgreSQL -> SQLite", (rc, out, err))
con = sqlite3.connect(back)
backc = {t: con.execute("SELECT count(*) FROM %s" % t).fetchone()[0]
         for t in TABLES}
seq = con.execute("SELECT seq FROM sqlite_sequence WHERE name = "
                  "'subscribers'").fetchone()[0]
con.close()
pgc = {t: int(srv.psql("moved", "SELECT count(*) FROM %s" % t))
       for t in TABLES}
ok(backc == pgc, "every table has the same rows back in SQLite",
   (backc, pgc))
ok(seq >= new_id, "the SQLite copy numbers on above them", (seq, new_id))
srv.stop()
done()
