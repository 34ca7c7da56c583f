#!/usr/bin/env python3
"""Several kairand hosts on one real PostgreSQL 15 (issue 13): one report
sent by two hosts at once, every subscriber once; a host killed with
SIGKILL mid-send, whose rows the other takes over once the lease runs out
(duplicates at most what was in flight); a host stopped (SIGSTOP) past its
lease whose late outcomes are fenced; PostgreSQL restarted mid-send, both
hosts reconnecting by themselves; pause from one host stopping both; a
host with a different token key refused at its start; a host's restart
after kill -9 taking back its own claims at once; delivery.rate holding
for the two hosts together."""
import base64
import os
import re
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pg  # noqa: E402
from harness import (Kairan, SmtpServer, done, http, ok,  # noqa: E402
                     rcpt_counts, report, tmpdir, wait_for)

if not pg.available():
    ok(False, "PostgreSQL 15 is installed (make deps)")
    done()

base = tmpdir()
srv = pg.Server()
uri = srv.createdb("news")
db = "{host: 127.0.0.1, port: %d, dbname: news, user: kairan, " \
     "password_file: %s}" % (srv.port, srv.password_file)
key = os.path.join(base, "token.key")
smtp = SmtpServer(base)
LEASE = 10
dx = "  workers: 2\n  batch: 20\n  lease: %ds\n  retry: [1s, 2s]\n" % LEASE


LISTS = """
  - id: sips-report
    name: SIPS セキュリティレポート
    from: "SIPS Security Report <report@news.example.jp>"
    double_opt_in: true
    language: ja
    footer: |
      株式会社Example 東京都千代田区 / 配信停止: {{unsubscribe_url}}
  - id: phase
    name: SIPS 速報
    from: "SIPS Flash <flash@news.example.jp>"
    double_opt_in: true
    language: ja
    footer: |
      株式会社Example 東京都千代田区 / 配信停止: {{unsubscribe_url}}
"""


def host(name, **kw):
    d = os.path.join(base, name)
    os.makedirs(d, exist_ok=True)
    return Kairan(d, smtp_port=smtp.port, database=db, key_file=key,
                  extra="host_id: %s\n" % name, delivery_extra=dx,
                  lists=LISTS, **kw)


def phase_counts():
    """{recipient: copies} of the phase list's subscribers."""
    return {r: c for r, c in rcpt_counts(smtp).items()
            if r.startswith("p")}


def sent_by(k):
    return k.counter("sent")


def psql_int(sql):
    return int(srv.psql("news", sql).strip() or 0)


a = host("host-a")
b = host("host-b")
ok(a.log_has("kairand starting") and b.log_has("kairand starting"),
   "two kairand hosts start on one PostgreSQL database",
   a.logtext() + b.logtext())

BIG = 20000
emails = ["reader%05d@example.jp" % i for i in range(BIG)]
rc, out, err = a.add_subscribers(emails)
ok(rc == 0, "import %d subscribers through host A" % BIG, err)
N = 1500
rc, out, err = b.add_subscribers(["p%05d@example.jp" % i for i in range(N)],
                                 "phase")
ok(rc == 0, "import %d subscribers of a second list through host B" % N,
   err)

# One report, both hosts sending it.
rc, out, err = b.send_report(report("二台で送る", "本文"), "r1.md")
ok(rc == 0, "report queued through host B", (rc, out, err))
ok(smtp.wait_count(BIG, 600), "all %d copies arrive" % BIG, len(smtp.log()))
counts = rcpt_counts(smtp)
dups = {r: c for r, c in counts.items() if c > 1}
ok(len(counts) == BIG and not dups,
   "every subscriber got exactly one copy", (len(counts), list(dups)[:5]))
sa, sb = sent_by(a), sent_by(b)
ok(sa > 0 and sb > 0 and sa + sb == BIG,
   "both hosts sent part of it (%d + %d)" % (sa, sb), (sa, sb))
ok(psql_int("SELECT count(*) FROM deliveries WHERE state = 1 AND "
            "report_id IS NOT NULL") == BIG,
   "the database records %d sent" % BIG)
info = [k for k in a.metrics() if k.startswith("kairan_host_info{")]
ok(len(info) == 1 and 'host="host-a"' in info[0] and
   'store="postgresql"' in info[0], "/metrics names the host and the store",
   info)
hosts = srv.psql("news", "SELECT DISTINCT lease_host FROM deliveries "
                 "WHERE report_id IS NOT NULL ORDER BY 1").split()
ok(hosts == ["host-a", "host-b"], "leases name their host", hosts)


def wait_total(n, timeout):
    return smtp.wait_count(n, timeout)


def copies_of(report_mark):
    """{recipient: copies} of messages whose subject holds report_mark."""
    out = {}
    for e, raw in smtp.messages():
        if report_mark.encode() in raw or report_mark in str(e):
            for r in e["rcpt"]:
                out[r.lower()] = out.get(r.lower(), 0) + 1
    return out


def report_id(out):
    m = re.search(r"report (\d+)", out)
    return int(m.group(1)) if m else None


IN_FLIGHT = 2 * 20  # workers x batch of one host

# kill -9 of host A mid-send: B takes A's rows once their lease runs out.
before = len(smtp.log())
rc, out, err = a.send_report(report("kill-nine", "本文 kill-nine", "phase"),
                             "r2.md")
ok(rc == 0, "second report queued through host A", (rc, out, err))
ok(wait_total(before + 300, 120), "the second report is on its way")
a.proc.kill9()
t_kill = time.time()
ok(wait_total(before + N, 240),
   "after kill -9 of host A, host B delivers the rest",
   (len(smtp.log()) - before, b.logtext()[-1500:]))
got = phase_counts()
extra = sum(got.values()) - N
ok(len(got) == N and 0 <= extra <= IN_FLIGHT,
   "no subscriber lost, %d duplicates (at most the %d in flight)" %
   (extra, IN_FLIGHT), (len(got), extra))
ok(psql_int("SELECT count(*) FROM deliveries WHERE state <> 1") == 0,
   "every row recorded sent")

# A restarts: a new incarnation; B took over what its killed run held.
a = host("host-a")
ok(a.wait_log("kairand starting"), "host A starts again")

# kill -9 of host A while it sends alone (B stopped), and A's restart:
# it takes back its own claims at once instead of waiting out the lease.
b.proc.signal(signal.SIGSTOP)
before = len(smtp.log())
rc, out, err = a.send_report(report("takeback", "本文 takeback", "phase"),
                             "r2b.md")
ok(rc == 0, "a report for host A alone", (rc, out, err))
ok(wait_total(before + 100, 120), "host A is sending it")
a.proc.kill9()
logsize = os.path.getsize(os.path.join(base, "host-a", "kairand.log"))
a = host("host-a")


def took_back():
    with open(os.path.join(base, "host-a", "kairand.log"),
              errors="replace") as f:
        f.seek(logsize)
        m = re.search(r"took back (\d+) copies", f.read())
    return int(m.group(1)) if m else 0


m = wait_for(took_back, 20)
ok(m, "host A's next run takes back its killed run's copies at once",
   a.logtext()[-1500:])
ok(wait_total(before + N, LEASE + 60), "and sends them",
   len(smtp.log()) - before)
b.proc.signal(signal.SIGCONT)
got = phase_counts()
extra = sum(got.values()) - 2 * N
ok(0 <= extra <= 2 * IN_FLIGHT,
   "duplicates within the copies in flight (%d)" % extra, extra)

# SIGSTOP of host B past its lease: A takes over; B's late outcomes, once
# it runs again, are fenced and change nothing.
before = len(smtp.log())
rc, out, err = a.send_report(report("sigstop", "本文 sigstop", "phase"),
                             "r3.md")
ok(rc == 0, "third report queued", (rc, out, err))
b0 = b.counter("sent", "phase")
ok(wait_for(lambda: b.counter("sent", "phase") > b0 and
            len(smtp.log()) > before + 200, 120),
   "both hosts are sending the third report")
b.proc.signal(signal.SIGSTOP)
ok(wait_total(before + N, 240),
   "host A finishes while host B is stopped past its lease",
   len(smtp.log()) - before)
b.proc.signal(signal.SIGCONT)
time.sleep(3)
fenced = b.metrics().get("kairan_delivery_fenced_total", 0)
ok(psql_int("SELECT count(*) FROM deliveries WHERE state <> 1") == 0,
   "after SIGCONT every row is still recorded sent once", fenced)
got = phase_counts()
extra = sum(got.values()) - 3 * N
ok(0 <= extra <= 3 * IN_FLIGHT,
   "duplicates stay within what was in flight (%d)" % extra, extra)

# PostgreSQL restarts mid-send: both hosts reconnect by themselves.
before = len(smtp.log())
rc, out, err = b.send_report(report("pg-restart", "本文 pg-restart",
                                    "phase"), "r4.md")
ok(rc == 0, "fourth report queued", (rc, out, err))
ok(wait_total(before + 200, 120), "the fourth report is on its way")
srv.restart()
ok(wait_total(before + N, 240),
   "after a PostgreSQL restart both hosts finish the report",
   (len(smtp.log()) - before, a.logtext()[-1200:]))
ok(a.wait_log("connected again", 10) or b.wait_log("connected again", 10),
   "the log says the database connection came back")
ok(wait_for(lambda: psql_int("SELECT count(*) FROM deliveries WHERE "
                             "state <> 1") == 0, 120),
   "every row of the fourth report recorded sent",
   srv.psql("news", "SELECT state, lease_host, lease_until >"
            " extract(epoch FROM now()), count(*) FROM deliveries"
            " GROUP BY 1, 2, 3") + a.logtext()[-1500:] + b.logtext()[-1500:])
got = phase_counts()
extra = sum(got.values()) - 4 * N
ok(len(got) == N and 0 <= extra <= 5 * IN_FLIGHT,
   "nothing lost across the restart (%d duplicates)" % extra, extra)

# PostgreSQL down for a while: /healthz says so naming the database (not
# the password), the form answers 503; both come back by themselves.
srv.stop_server()
st, body = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(
    http("GET", a.admin_url("/healthz"))[::2]), 20) or (0, b"")
body = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
ok(st == 503 and "127.0.0.1:%d/news" % srv.port in body and
   pg.PASSWORD not in body,
   "/healthz: 503 naming the database while it is down", (st, body))
st = http("POST", a.url("/subscribe"), data={"email": "down@example.jp"})[0]
ok(st == 503, "the form answers 503 while the database is down", st)
srv.start_server(srv.port)
ok(wait_for(lambda: http("GET", a.admin_url("/healthz"))[0] == 200, 30),
   "/healthz is ok again once the database is back")
st = http("POST", a.url("/subscribe"), data={"email": "back@example.jp"})[0]
ok(st == 200, "and the form takes sign-ups again", st)

# Pause on one host holds both; resume on the other lets both go on.
before = len(smtp.log())
rc, out, err = a.send_report(report("paused", "本文 paused", "phase"),
                             "r5.md")
rid = report_id(out + err)
ok(rc == 0 and rid, "fifth report queued", (rc, out, err))
rc, out, err = a.ctl("pause", str(rid))
ok(rc == 0, "paused through host A", (rc, out, err))
time.sleep(3)
n1 = len(smtp.log())
time.sleep(3)
n2 = len(smtp.log())
ok(n2 == n1 and n1 - before < N,
   "neither host sends a paused report (%d sent before the pause took "
   "hold, none after)" % (n1 - before), (before, n1, n2))
rc, out, err = b.ctl("resume", str(rid))
ok(rc == 0, "resumed through host B", (rc, out, err))
ok(wait_total(before + N, 240), "the resumed report is sent in full",
   len(smtp.log()) - before)

# A host with another token key is refused at its start: its links would
# fail for every subscriber the others mailed.
d = os.path.join(base, "host-c")
os.makedirs(d, exist_ok=True)
with open(key) as f:  # the shared key's id, another key under it
    kid, created = f.read().split()[:2]
with open(os.path.join(d, "other.key"), "w") as f:
    f.write("%s %s %s\n" % (kid, created,
                            base64.b64encode(os.urandom(32)).decode()))
os.chmod(os.path.join(d, "other.key"), 0o600)
try:
    c = Kairan(d, smtp_port=smtp.port, database=db,
               key_file=os.path.join(d, "other.key"),
               extra="host_id: host-c\n", delivery_extra=dx)
    started = True
except RuntimeError:
    started = False
log = open(os.path.join(d, "kairand.log"), errors="replace").read()
ok(not started and "not the key the database knows" in log,
   "a host whose key file differs from the others' is refused", log[-800:])

a.stop()
b.stop()

# delivery.rate holds for the sum of the hosts: two hosts at 25/s each
# configured send 25/s together, not 50/s (the bucket is the database's).
RATE = 200
# batches of 5: a session's copies leave together once each has its token,
# so arrivals come in clumps of up to workers x batch
dx = dx.replace("batch: 20", "batch: 5") + "  rate: %d/s\n" % RATE
a = host("host-a")
b = host("host-b")
before = len(smtp.log())
M = N
t_send = time.time()
rc, out, err = a.send_report(report("rated", "本文 rated", "phase"),
                             "r6.md")
ok(rc == 0, "a report for the rate test queued", (rc, out, err))
ok(wait_total(before + M, 120), "the rated report arrives", 
   len(smtp.log()) - before)
times = sorted(e["time"] for e in smtp.log()[before:before + M])
# the whole send, less the bucket's first second (its burst) and one
# clump per session still in flight
span = times[-1] - t_send
rate = (M - RATE - 4 * 5) / span if span > 0 else float("inf")
sa, sb = a.counter("sent", "phase"), b.counter("sent", "phase")
ok(rate <= RATE * 1.10 and sa > 0 and sb > 0,
   "two hosts together keep to delivery.rate: %.1f/s for %d/s "
   "configured (%d + %d sent)" % (rate, RATE, sa, sb), (rate, sa, sb))
ok(rate >= RATE * 0.8, "and use it: %.1f/s" % rate, rate)
a.stop()
b.stop()

# per_domain connections hold for the sum too: one session to example.jp
# at a time between the two hosts (2 workers each).
dx = ("  workers: 2\n  batch: 20\n  lease: %ds\n  retry: [1s, 2s]\n"
      "  per_domain:\n    example.jp:\n      connections: 1\n" % LEASE)
a = host("host-a")
b = host("host-b")
a0, b0 = a.counter("sent", "phase"), b.counter("sent", "phase")
peak = [0]
stop_poll = threading.Event()


def poll_sessions():
    while not stop_poll.is_set():
        r = subprocess.run(["ss", "-Htn", "state", "established",
                            "( dport = :%d )" % smtp.port],
                           capture_output=True, text=True)
        peak[0] = max(peak[0], len([x for x in r.stdout.splitlines()
                                    if x.strip()]))
        time.sleep(0.01)


poller = threading.Thread(target=poll_sessions)
poller.start()
before = len(smtp.log())
rc, out, err = b.send_report(report("capped", "本文 capped", "phase"),
                             "r7.md")
ok(rc == 0, "a report for the connection cap", (rc, out, err))
ok(wait_total(before + N, 240), "the capped report arrives",
   len(smtp.log()) - before)
stop_poll.set()
poller.join()
da = a.counter("sent", "phase") - a0
db_ = b.counter("sent", "phase") - b0
ok(peak[0] == 1 and da > 0 and db_ > 0,
   "per_domain connections: 1 holds for both hosts together (at most %d "
   "session at a time; %d + %d sent)" % (peak[0], da, db_),
   (peak[0], da, db_))
a.stop()
b.stop()
done()
