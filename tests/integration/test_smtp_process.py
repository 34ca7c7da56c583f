#!/usr/bin/python3
"""The SMTP engine runs in a process of its own, kairan-smtp:
- only kairan-smtp defines connect(), read(), write() and poll() and
  links libesmtp; libkairan.a, kairand, kairanctl and the unit test
  binaries define none of them (nm) and do not link libesmtp (ldd);
- kairand starts one per delivery worker, and `kill -9` of those
  processes mid-send loses nothing: kairand logs the end, starts new ones,
  and the duplicates are at most one copy per killed process (the one
  whose outcome was on its way: a process waits for kairand to record
  each outcome before it sends the next message's content);
- it is confined (Landlock): open() made to run inside it (ptrace, as
  code that took it over would) cannot open the database, the token key
  or the config;
- a kairan-smtp run by hand says what it is and exits 2."""
import errno
import glob
import os
import random
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import ok, done  # noqa: E402
from inject import inject_open  # noqa: E402

WRAPPED = {"connect", "read", "write", "poll"}
BUILD = os.environ.get("KAIRAN_BUILD", "build/asan")


def defined(path):
    """The wrapped names path defines (text symbols)."""
    r = subprocess.run(["nm", "--defined-only", path], capture_output=True,
                       text=True)
    names = set()
    for line in r.stdout.splitlines():
        f = line.split()
        if len(f) == 3 and f[1] in "TtWw" and f[2] in WRAPPED:
            names.add(f[2])
    return names


def links_esmtp(path):
    r = subprocess.run(["ldd", path], capture_output=True, text=True)
    return "libesmtp" in r.stdout


def test_symbols():
    root = os.path.join(harness.ROOT, BUILD)
    smtp = os.path.join(root, "kairan-smtp")
    ok(defined(smtp) == WRAPPED, "kairan-smtp defines connect, read, write "
       "and poll", defined(smtp))
    ok(links_esmtp(smtp), "kairan-smtp links libesmtp")
    others = [os.path.join(root, n) for n in ("libkairan.a", "kairand",
                                              "kairanctl")]
    others += sorted(glob.glob(os.path.join(root, "tests", "test_*")))
    others = [p for p in others if os.path.isfile(p) and
              not p.endswith((".o", ".out", ".d"))]
    bad = {os.path.basename(p): sorted(defined(p)) for p in others
           if defined(p)}
    ok(len(others) >= 4 and not bad, "none of libkairan.a, kairand, "
       "kairanctl and %d unit test binaries defines them" %
       (len(others) - 3), bad)
    linked = [os.path.basename(p) for p in others
              if not p.endswith(".a") and links_esmtp(p)]
    ok(not linked, "none of them links libesmtp", linked)
    r = subprocess.run([smtp], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL)
    ok(r.returncode == 2 and "started by" in r.stderr,
       "kairan-smtp by hand: exit 2 and what it is", (r.returncode,
                                                      r.stderr))


def children(pid):
    """The kairan-smtp children of pid (started by any of its threads)."""
    kids = []
    for t in glob.glob("/proc/%d/task/*/children" % pid):
        try:
            with open(t) as f:
                kids += [int(x) for x in f.read().split()]
        except OSError:
            pass
    res = []
    for k in kids:
        try:
            with open("/proc/%d/comm" % k) as f:
                if f.read().strip() == "kairan-smtp":
                    res.append(k)
        except OSError:
            pass
    return res


def test_kill_children():
    base = harness.tmpdir()
    smtp = harness.SmtpServer(base, extra=["--pipelining"])
    k = harness.Kairan(base, smtp_port=smtp.port, delivery_extra=(
        "  workers: 4\n  batch: 50\n  lease: 10s\n"
        "  retry: [1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s]"))
    n = 1500
    subs = ["kid%05d@example.org" % i for i in range(n)]
    rc, out, err = k.add_subscribers(subs)
    ok(rc == 0, "%d subscribers" % n, err)
    rc, out, err = k.send_report(harness.report("子プロセス", "本文\n" * 40))
    ok(rc == 0, "report queued", err)
    rnd = random.Random(7)
    kills = 0
    harness.wait_for(lambda: len(smtp.log()) > 50, 30)
    kids = children(k.proc.pid)
    ok(1 <= len(kids) <= 4, "a kairan-smtp per busy worker (4 workers)",
       kids)
    for _ in range(4):
        for c in children(k.proc.pid):
            try:
                os.kill(c, 9)
                kills += 1
            except OSError:
                pass
        time.sleep(rnd.uniform(0.2, 0.6))
    ok(kills >= 4, "killed %d kairan-smtp processes mid-send" % kills)
    health = []

    def health_says():
        st, _, body = harness.http("GET", k.admin_url("/healthz"))
        health[:] = [st, body.decode()]
        return st == 503 and re.search(
            r"^smtp process: pid \d+ ended \(signal 9\) \d+s ago "
            r"\((\d+) since start", health[1], re.M)
    m = harness.wait_for(health_says, 10)
    ok(m, "/healthz says a kairan-smtp was killed", health)
    m = re.search(r"\((\d+) since start", health[1]) if health else None
    seen = int(m.group(1)) if m else 1
    got = harness.wait_for(
        lambda: len(harness.rcpt_counts(smtp)) >= n, 120)
    cnt = harness.rcpt_counts(smtp)
    ok(got and set(cnt) == set(subs), "every subscriber got the report "
       "(none lost)", n - len(cnt))
    dups = sum(v - 1 for v in cnt.values())
    ok(dups <= kills, "duplicates (%d) at most one per killed process (%d)"
       % (dups, kills))
    ok(k.log_has("smtp process pid="), "kairand logged the ends",
       k.logtext())
    ok(len(children(k.proc.pid)) >= 1, "new kairan-smtp processes run")
    ends = k.metrics().get("kairan_smtp_process_ends_total")
    ok(ends is not None and seen <= ends <= kills,
       "kairan_smtp_process_ends_total counts the kills (%s; %d seen in "
       "/healthz, %d kills)" % (ends, seen, kills))
    ok(k.stop() == 0, "SIGTERM exits 0", k.logtext())
    ok(children(k.proc.pid) == [], "no kairan-smtp left behind")
    smtp.stop()


def test_confined():
    base = harness.tmpdir()
    smtp = harness.SmtpServer(base)
    k = harness.Kairan(base, smtp_port=smtp.port,
                       delivery_extra="  workers: 1")
    k.add_subscribers(["one@example.org"])
    k.send_report(harness.report("閉じ込め", "本文"))
    ok(smtp.wait_count(1, 30), "a copy went out (the process runs)")
    kids = children(k.proc.pid)
    ok(len(kids) == 1, "one kairan-smtp", kids)
    if k.log_has("Landlock is not available"):
        print("ok - confined # SKIP this kernel has no Landlock")
    elif kids and inject_open(k.proc.pid, "/etc/hosts") is None:
        print("ok - confined # SKIP ptrace is not permitted here")
    elif kids:
        db = os.path.join(base, "kairan.db")
        key = os.path.join(base, "token.key")
        # kairand itself is not confined: the check can tell. (The key
        # file, not the database: closing any descriptor of the database
        # file drops every POSIX lock SQLite holds on it in that process,
        # and a kairanctl beside it may then reset the WAL under it.)
        ok(inject_open(k.proc.pid, key) >= 0,
           "kairand opens the token key (the injected open works)")
        ok(inject_open(kids[0], "/etc/hosts") >= 0,
           "inside kairan-smtp, /etc/hosts opens (name service)")
        ok(inject_open(kids[0], db) == -errno.EACCES,
           "inside kairan-smtp, the database does not open (EACCES)")
        ok(inject_open(kids[0], key) == -errno.EACCES,
           "... nor the token key")
        ok(inject_open(kids[0], k.config) == -errno.EACCES,
           "... nor the config file")
        k.add_subscribers(["two@example.org"])
        k.send_report(harness.report("閉じ込め 2", "本文"))
        ok(smtp.wait_count(3, 30) and children(k.proc.pid) == kids,
           "the same kairan-smtp sends on afterwards", len(smtp.log()))
    ok(k.stop() == 0, "SIGTERM exits 0", k.logtext())
    smtp.stop()


def main():
    for t in (test_symbols, test_confined, test_kill_children):
        try:
            t()
        except Exception as e:  # a broken scenario is one failure
            ok(False, "%s raised %r" % (t.__name__, e))
        harness.stop_all()
    done()


if __name__ == "__main__":
    main()
