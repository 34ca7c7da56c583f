#!/usr/bin/python3
"""The database cannot be written while kairand runs: the disk is full
(SQLITE_FULL, the database on a small tmpfs filled up with a filler
file) or another process holds the write lock (SQLITE_BUSY, a sqlite3
shell in BEGIN EXCLUSIVE). kairand must stop taking new work, say why
(log and /healthz), lose nothing, and go on once it can write again.
The operator's tool and the form must refuse clearly and store nothing
half-way.

A tmpfs needs root (mount -t tmpfs); without it the full-disk half is
skipped (TAP "# SKIP")."""
import os
import re
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import ok, done, http  # noqa: E402

N = 150
DELIVERY = "  retry: [1s, 1s, 1s, 1s, 2s, 2s, 2s, 2s, 2s, 2s, 2s, 2s, 2s, " \
    "2s, 2s, 2s]\n  lease: 10s\n  batch: 20"


def health(k):
    st, _, body = http("GET", k.admin_url("/healthz"))
    return st, body.decode("utf-8", "replace")


def q(db, sql, args=()):
    c = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=30)
    try:
        return c.execute(sql, args).fetchall()
    finally:
        c.close()


def counts(db):
    return (q(db, "SELECT count(*) FROM reports")[0][0],
            q(db, "SELECT count(*) FROM subscribers")[0][0],
            q(db, "SELECT count(*) FROM deliveries")[0][0])


def setup(base, dbdir):
    smtp = harness.SmtpServer(base)
    k = harness.Kairan(base, smtp_port=smtp.port, delivery_extra=DELIVERY,
                       start=False)
    with open(k.config) as f:
        text = f.read()
    text = text.replace("database: %s/kairan.db" % base,
                        "database: %s/kairan.db" % dbdir)
    with open(k.config, "w") as f:
        f.write(text)
    k.start()
    return smtp, k, os.path.join(dbdir, "kairan.db")


def fill(path):
    """Writes a filler file until the disk is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (65536, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)


def test_full_disk():
    base = harness.tmpdir()
    dbdir = os.path.join(base, "fs")
    os.makedirs(dbdir)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs",
                        dbdir], capture_output=True, text=True)
    if r.returncode != 0:
        print("ok - full disk # SKIP cannot mount a tmpfs: %s" %
              r.stderr.strip())
        return
    try:
        run_full_disk(base, dbdir)
    finally:
        harness.stop_all()
        subprocess.run(["umount", "-l", dbdir])


def run_full_disk(base, dbdir):
    smtp, k, db = setup(base, dbdir)
    subs = ["full%04d@example.org" % i for i in range(N)]
    rc, out, err = k.add_subscribers(subs)
    ok(rc == 0, "full disk: import %d subscribers" % N, out + err)
    # The relay is down while the report is queued, so the rows wait.
    smtp.down()
    rc, out, err = k.send_report(harness.report("満杯試験", "本文\n" * 30))
    ok(rc == 0, "full disk: report queued", out + err)
    ok(k.wait_log("delivery deferred", 30), "full disk: rows deferred")
    # Empty the WAL, so that every later write needs new disk space,
    # then fill the disk.
    c = sqlite3.connect(db, timeout=30)
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
    filler = os.path.join(dbdir, "filler")
    fill(filler)
    before = counts(db)
    smtp.up()

    ok(k.wait_log("delivery store failing, holding work", 40),
       "full disk: the log says delivery holds and why", k.logtext())
    ok(k.log_has("full"), "full disk: ... naming the full disk",
       k.logtext())
    st, body = health(k)
    ok(st == 503 and "store:" in body and "full" in body,
       "full disk: /healthz 503 says the store is full", (st, body))
    ok(body.endswith("\ndatabase: sqlite %s, schema v%d\n" %
                     (db, harness.SCHEMA)) and
       not body.startswith("ok"),
       "full disk: ... and ends naming the database", body)
    sent_while_full = len(smtp.log())

    rc, out, err = k.send_report(harness.report("二通目", "本文\n"),
                                 name="second.md")
    ok(rc != 0 and "full" in err, "full disk: kairanctl send refuses with "
       "a clear error", (rc, out, err))
    st, _, body = http("POST", k.url("/subscribe"),
                       {"email": "newcomer@example.org"})
    ok(st == 503, "full disk: POST /subscribe answers 503", (st, body))
    ok(k.proc.alive(), "full disk: kairand keeps running")
    ok(counts(db) == before, "full disk: nothing half-stored (reports, "
       "subscribers, deliveries unchanged)", (before, counts(db)))

    os.unlink(filler)
    ok(harness.wait_for(lambda: len(harness.rcpt_counts(smtp)) >= N, 90),
       "full disk: space back: every subscriber gets the report",
       k.logtext())
    ok(k.wait_log("delivery store ok again", 20),
       "full disk: the log says the store is writable again")
    ok(harness.wait_for(lambda: health(k) == (200, harness.healthz_ok(db)), 20),
       "full disk: /healthz ok again", health(k))
    time.sleep(11)  # past the lease: anything left would come now
    cnt = harness.rcpt_counts(smtp)
    dups = sum(v - 1 for v in cnt.values())
    ok(set(cnt) == set(subs), "full disk: none lost",
       [s for s in subs if s not in cnt][:5])
    # A 250 whose mark could not be written is sent again after the
    # lease: at most those accepted while the disk was full.
    ok(dups <= sent_while_full, "full disk: duplicates (%d) at most the "
       "copies accepted while full" % dups)
    ok(q(db, "SELECT count(*) FROM deliveries WHERE state != 1")[0][0] == 0,
       "full disk: the database says all sent")
    ok(k.stop() == 0, "full disk: SIGTERM exits 0", k.logtext())
    smtp.stop()


def test_locked():
    base = harness.tmpdir()
    smtp, k, db = setup(base, base)
    subs = ["lock%04d@example.org" % i for i in range(N)]
    rc, out, err = k.add_subscribers(subs)
    ok(rc == 0, "locked: import %d subscribers" % N, out + err)
    smtp.down()
    rc, out, err = k.send_report(harness.report("ロック試験", "本文\n" * 30))
    ok(rc == 0, "locked: report queued", out + err)
    ok(k.wait_log("delivery deferred", 30), "locked: rows deferred")

    # Another process takes the write lock and keeps it.
    sh = subprocess.Popen(["sqlite3", db], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    sh.stdin.write(".timeout 20000\nBEGIN EXCLUSIVE;\n"
                   "INSERT INTO events (at, kind, detail) VALUES "
                   "(0, 'test', 'lock');\nSELECT 'locked';\n")
    sh.stdin.flush()
    ok(sh.stdout.readline().strip() == "locked",
       "locked: a sqlite3 shell holds BEGIN EXCLUSIVE")
    before = counts(db)
    smtp.up()
    ok(k.wait_log("delivery store failing, holding work", 40),
       "locked: the log says delivery holds and why", k.logtext())
    ok(k.log_has("locked") or k.log_has("busy"),
       "locked: ... naming the lock", k.logtext())
    st, body = health(k)
    ok(st == 503 and "store:" in body, "locked: /healthz 503 names the "
       "store", (st, body))
    rc, out, err = k.ctl("subscribers", "add", "--list", "sips-report",
                         "--confirmed", "late@example.org")
    ok(rc != 0 and ("locked" in err or "busy" in err),
       "locked: kairanctl subscribers add refuses with a clear error",
       (rc, out, err))
    ok(k.proc.alive(), "locked: kairand keeps running")
    ok(counts(db) == before, "locked: nothing changed meanwhile")

    sh.stdin.write("ROLLBACK;\n.quit\n")
    sh.stdin.flush()
    sh.wait(10)
    ok(harness.wait_for(lambda: len(harness.rcpt_counts(smtp)) >= N, 90),
       "locked: lock released: every subscriber gets the report",
       k.logtext())
    ok(k.wait_log("delivery store ok again", 20),
       "locked: the log says the store is writable again")
    ok(harness.wait_for(lambda: health(k) == (200, harness.healthz_ok(db)), 20),
       "locked: /healthz ok again", health(k))
    cnt = harness.rcpt_counts(smtp)
    ok(set(cnt) == set(subs) and all(v == 1 for v in cnt.values()),
       "locked: each subscriber got it once")
    ok(k.stop() == 0, "locked: SIGTERM exits 0", k.logtext())
    smtp.stop()


def test_web_full():
    """No delivery running: a sign-up that meets a full disk makes
    /healthz say so (the web side's own write failure), until a write
    succeeds again."""
    base = harness.tmpdir()
    dbdir = os.path.join(base, "fs")
    os.makedirs(dbdir)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs",
                        dbdir], capture_output=True, text=True)
    if r.returncode != 0:
        print("ok - web full disk # SKIP cannot mount a tmpfs: %s" %
              r.stderr.strip())
        return
    try:
        smtp, k, db = setup(base, dbdir)
        ok(health(k) == (200, harness.healthz_ok(db)), "web full disk: healthy at first",
           health(k))
        c = sqlite3.connect(db, timeout=30)
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        c.close()
        filler = os.path.join(dbdir, "filler")
        fill(filler)
        # the WAL is empty: every commit needs new space
        codes = [http("POST", k.url("/subscribe"),
                      {"email": "w%03d@example.org" % i})[0]
                 for i in range(5)]
        ok(503 in codes, "web full disk: sign-ups answer 503", codes)
        st, body = health(k)
        ok(st == 503 and "write failed" in body,
           "web full disk: /healthz 503 says a write failed", (st, body))
        os.unlink(filler)
        st, _, _ = http("POST", k.url("/subscribe"),
                        {"email": "after@example.org"})
        ok(st == 200, "web full disk: space back, a sign-up works", st)
        ok(health(k) == (200, harness.healthz_ok(db)), "web full disk: /healthz ok again",
           health(k))
        k.stop()
        smtp.stop()
    finally:
        harness.stop_all()
        subprocess.run(["umount", "-l", dbdir])


def test_deleted():
    """kairan.db removed under a running kairand: sign-ups are refused
    (not taken into an unlinked file), /healthz and the log say why."""
    base = harness.tmpdir()
    smtp, k, db = setup(base, base)
    st, _, _ = http("POST", k.url("/subscribe"),
                    {"email": "before@example.org"})
    ok(st == 200, "deleted: a sign-up before", st)
    for suffix in ("", "-wal", "-shm"):
        try:
            os.unlink(db + suffix)
        except FileNotFoundError:
            pass
    time.sleep(0.5)
    st, _, body = http("POST", k.url("/subscribe"),
                       {"email": "lost@example.org"})
    ok(st == 503, "deleted: a sign-up after is refused with 503", (st, body))
    st, body = health(k)
    ok(st == 503 and "gone" in body, "deleted: /healthz 503 says the "
       "database file is gone", (st, body))
    ok(k.wait_log("the file is gone", 10), "deleted: the log says so",
       k.logtext())
    k.stop()
    # A new kairand starts on a new, empty database: the lost sign-up is
    # not in it, and was never claimed to be.
    ok(not os.path.exists(db) or
       q(db, "SELECT count(*) FROM subscribers WHERE email = "
             "'lost@example.org'")[0][0] == 0,
       "deleted: nothing was pretended to be stored")
    smtp.stop()


def test_two_daemons():
    """A second kairand on the same SQLite file is refused."""
    base = harness.tmpdir()
    smtp, k, db = setup(base, base)
    cfg2 = os.path.join(base, "second.yaml")
    with open(k.config) as f:
        text = f.read()
    text = re.sub(r"listen: 127.0.0.1:\d+", lambda m: "listen: 127.0.0.1:%d"
                   % harness.free_port(), text)
    with open(cfg2, "w") as f:
        f.write(text)
    p = harness.Proc([harness.KAIRAND, "--config", cfg2],
                     log=os.path.join(base, "second.log"))
    try:
        p.p.wait(20)
    except subprocess.TimeoutExpired:
        pass
    log = open(os.path.join(base, "second.log"), errors="replace").read()
    ok(p.p.returncode not in (None, 0) and "in use by another kairand" in log,
       "two daemons: the second kairand is refused", (p.p.returncode,
                                                       log[-500:]))
    p.stop()
    ok(k.proc.alive(), "two daemons: the first runs on")
    k.stop()
    smtp.stop()


def main():
    for t in (test_locked, test_full_disk, test_web_full, test_deleted,
              test_two_daemons):
        try:
            t()
        except Exception as e:  # a broken scenario is one failure
            ok(False, "%s raised %r" % (t.__name__, e))
    done()


if __name__ == "__main__":
    main()
