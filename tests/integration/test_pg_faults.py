#!/usr/bin/env python3
"""PostgreSQL faults that are not a restart (issue 13): the server's disk
fills up under a running kairand, a wrong database name, a server that is
not there when kairand starts.

The full disk is real: the server's data folder lives on a small tmpfs of
its own (mounted here, as root; without the right to mount it says SKIP),
filled with a file until writes fail with "No space left on device"."""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pg  # noqa: E402
import harness  # noqa: E402
from harness import (Kairan, done, free_port, http, ok, tmpdir,  # noqa: E402
                     wait_for)

if not pg.available():
    ok(False, "PostgreSQL 15 is installed (make deps)")
    done()

base = tmpdir()

# A server that is not there at start: kairand refuses with one clear
# line naming the database (systemd restarts it), never the password.
dead = "{host: 127.0.0.1, port: %d, dbname: news, user: kairan}" % \
    free_port()
k = Kairan(os.path.join(base, "dead"), database=dead,
           env={"KAIRAN_DB_PASSWORD": "s3cret-x"}, start=False)
r = subprocess.run([k.config and os.path.join(
    os.environ.get("KAIRAN_ROOT", "."), os.environ.get("KAIRAN_BUILD",
                                                       "build/asan"),
    "kairand"), "--config", k.config], capture_output=True, text=True,
    timeout=60, env=dict(os.environ, KAIRAN_DB_PASSWORD="s3cret-x"))
ok(r.returncode != 0 and "cannot connect" in r.stderr and
   "127.0.0.1:" in r.stderr and "s3cret-x" not in r.stderr + r.stdout,
   "no server at start: kairand exits naming the database", r)

# not below base (0700): the server runs as nobody
mnt = tempfile.mkdtemp(prefix="kairan-pgdisk-")
os.chmod(mnt, 0o755)
m = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=120m,mode=755",
                    "tmpfs", mnt], capture_output=True, text=True)
if m.returncode != 0:
    print("ok 2 # SKIP cannot mount a tmpfs here: %s" % m.stderr.strip())
    print("1..2")
    sys.exit(0)
try:
    srv = pg.Server(os.path.join(mnt, "pg"))
    srv.createdb("news")
    db = "{host: 127.0.0.1, port: %d, dbname: news, user: kairan, " \
         "password_file: %s}" % (srv.port, srv.password_file)

    # A database that does not exist: the error names it.
    wrong = db.replace("dbname: news", "dbname: nosuchdb")
    k = Kairan(os.path.join(base, "wrong"), database=wrong, start=False)
    rc, out, err = k.ctl("status")
    ok(rc != 0 and "nosuchdb" in err and pg.PASSWORD not in err,
       "a database that does not exist: a clear error naming it",
       (rc, out, err))

    k = Kairan(os.path.join(base, "k"), database=db)
    st = http("POST", k.url("/subscribe"), data={"email": "a@example.jp"})[0]
    ok(st == 200, "kairand on PostgreSQL takes a sign-up", st)

    # Fill the server's disk.
    fill = os.path.join(mnt, "fill")
    subprocess.run(["dd", "if=/dev/zero", "of=" + fill, "bs=1M",
                    "count=200"], capture_output=True)
    # an import needs new pages: it fails, and leaves the table full
    csv = os.path.join(base, "many.csv")
    with open(csv, "w") as f:
        f.write("email\n" + "".join("m%06d@example.jp\n" % i
                                     for i in range(60000)))
    rc, out, err = k.ctl("subscribers", "import", "--list", "sips-report",
                         "--confirmed", csv)
    ok(rc != 0 and "No space left" in err and "/news" in err and
       pg.PASSWORD not in err,
       "an import into a full disk: a clear error naming the database",
       (rc, out, err[-600:]))
    codes = []
    for i in range(6):  # a row that still fits a page goes in
        codes.append(http("POST", k.url("/subscribe"),
                          data={"email": "full%03d@example.jp" % i},
                          headers={"X-Forwarded-For": "192.0.2.%d" %
                                   (i + 1)})[0])
        if codes[-1] == 503:
            break
    ok(codes[-1] == 503 and 500 not in codes,
       "a full disk on the server: the form answers 503", codes)
    st, _, body = http("GET", k.admin_url("/healthz"))
    body = body.decode("utf-8", "replace")
    ok(st == 503 and "No space left" in body and "/news" in body and
       pg.PASSWORD not in body,
       "/healthz says the database's disk is full, naming it", (st, body))
    ok(body.endswith("\ndatabase: postgresql 127.0.0.1:%d/news, schema v%d\n"
                     % (srv.port, harness.SCHEMA)),
       "... and ends with the database: host:port/dbname and schema",
       body)
    rc, out, err = k.ctl("subscribers", "add", "cli@example.jp",
                         "--list", "sips-report")
    ok(rc != 0 and "No space left" in err,
       "kairanctl says so too", (rc, out, err))

    # Space again: everything works, nothing stored before is lost.
    os.unlink(fill)
    st = http("POST", k.url("/subscribe"), data={"email": "b@example.jp"},
              headers={"X-Forwarded-For": "198.51.100.7"})[0]
    ok(st == 200, "once there is space the form takes sign-ups again", st)
    ok(wait_for(lambda: http("GET", k.admin_url("/healthz"))[0] == 200, 40),
       "and /healthz is ok again")
    rows = srv.psql("news", "SELECT email FROM subscribers ORDER BY id")
    ok("a@example.jp" in rows and "b@example.jp" in rows and
       "full%03d" % (len(codes) - 1) not in rows,
       "the sign-ups before and after are both stored", rows[-300:])
    k.stop()
    srv.stop()
finally:
    subprocess.run(["umount", "-l", mnt], capture_output=True)
    os.rmdir(mnt)
done()
