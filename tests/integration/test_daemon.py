#!/usr/bin/python3
"""kairand against a real SMTP server (aiosmtpd): temporary and permanent
failures, exactly-once delivery to many subscribers, kill -9 and SIGTERM
in the middle of a send, the sd_notify protocol, and a broken config on
SIGHUP. Each scenario runs its own kairand and SMTP server."""
import email
import email.policy
import os
import shutil
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import ok, done, http  # noqa: E402

# Short leases (the shortest the config takes) so rows claimed by a
# killed daemon come back quickly.
FAST = "  lease: 10s\n  batch: 50"


def addrs(n, dom="example.org"):
    return ["reader%04d@%s" % (i, dom) for i in range(n)]


def setup(subs, delivery_extra=FAST, rules=None, env=None):
    base = harness.tmpdir()
    smtp = harness.SmtpServer(base, rules=rules)
    k = harness.Kairan(base, smtp_port=smtp.port,
                       delivery_extra=delivery_extra, env=env)
    rc, out, err = k.add_subscribers(subs)
    ok(rc == 0, "import %d subscribers" % len(subs), out + err)
    return base, smtp, k


def test_temp_and_perm():
    good = addrs(5)
    soft, hard = "soft@example.org", "hard@example.org"
    base, smtp, k = setup(good + [soft, hard], rules={
        "data": {soft: "451 4.3.0 mailbox busy, try later"},
        "rcpt": {hard: "550 5.1.1 no such user"}})
    rc, out, err = k.send_report(harness.report("一時と恒久", "本文\n"))
    ok(rc == 0, "report queued", out + err)
    got = harness.wait_for(lambda: all(
        harness.rcpt_counts(smtp).get(a) for a in good), 60)
    ok(got, "the good addresses receive the report", k.logtext())
    ok(k.wait_log("delivery deferred", 30),
       "4xx: the soft address is deferred", k.logtext())
    ok(harness.rcpt_counts(smtp).get(soft) is None,
       "4xx: nothing accepted for it yet")
    smtp.set_rules({"rcpt": {hard: "550 5.1.1 no such user"}})
    ok(harness.wait_for(lambda: harness.rcpt_counts(smtp).get(soft), 30),
       "4xx: it arrives after the 1 s retry once the server takes it",
       k.logtext())
    ok(harness.wait_for(lambda: k.counter("failed") >= 1, 30),
       "5xx: the hard address ends failed (metrics)", k.metrics())
    ok(k.counter("bounced") == 1, "5xx: counted as a bounce",
       k.metrics())
    ok(harness.rcpt_counts(smtp).get(hard) is None,
       "5xx: nothing delivered to it")
    time.sleep(2.5)  # past the retry schedule: a failed row stays failed
    counts = harness.rcpt_counts(smtp)
    ok(all(counts.get(a) == 1 for a in good + [soft]),
       "each deliverable address got exactly one copy", counts)
    ok(k.counter("sent") == len(good) + 1, "metrics: sent adds up",
       k.metrics())
    ok(k.counter("deferred") >= 1, "metrics: deferred counted",
       k.metrics())
    m = k.metrics()
    relay = "127.0.0.1:%d" % smtp.port
    ok(m.get('kairan_delivery_messages_total{list="sips-report",relay="%s",'
             'outcome="sent"}' % relay) == len(good) + 1,
       "metrics: counted under the relay that took them", m)
    attempts = k.counter("sent") + k.counter("deferred") + \
        k.counter("failed")
    ok(m.get("kairan_smtp_transaction_seconds_count") == attempts and
       m.get('kairan_smtp_transaction_seconds_bucket{le="+Inf"}')
       == attempts, "metrics: every SMTP transaction timed", m)
    ok(k.stop() == 0, "SIGTERM exits 0")


def test_dropped_mid_data():
    """The server takes the whole message and hangs up before answering:
    nobody knows whether it was delivered (RFC 1047), so it is marked
    uncertain and not sent again by itself; the others still go, once."""
    good = addrs(6)
    lost = "dropped@example.org"
    base, smtp, k = setup(good + [lost], rules={"drop_data": [lost]})
    rc, out, err = k.send_report(harness.report("切断", "本文\n"))
    ok(rc == 0, "report queued", out + err)
    ok(harness.wait_for(lambda: k.counter("uncertain") >= 1, 60),
       "the dropped message is uncertain", (k.metrics(), k.logtext()))
    ok(harness.wait_for(lambda: all(
        harness.rcpt_counts(smtp).get(a) for a in good), 60),
       "the other subscribers get theirs", k.logtext())
    smtp.set_rules({})
    time.sleep(3)  # past the 1 s and 2 s retries: it must not come back
    counts = harness.rcpt_counts(smtp)
    ok(counts.get(lost) is None, "an uncertain message is not resent",
       counts)
    ok(all(counts.get(a) == 1 for a in good), "the others exactly once",
       counts)
    ok(k.stop() == 0, "SIGTERM exits 0")


def test_slowdown():
    """A relay that says "slow down" (4.7.x) gets a rate limit although
    none is configured; the message comes back and arrives."""
    good = addrs(10)
    slow = "slow@example.org"
    base, smtp, k = setup(good + [slow], rules={
        "data": {slow: "451 4.7.1 too fast, slow down"}})
    ok(k.metrics().get("kairan_delivery_rate_limit") == 0,
       "no rate limit to begin with", k.metrics())
    rc, out, err = k.send_report(harness.report("減速", "本文\n"))
    ok(rc == 0, "report queued", out + err)
    ok(k.wait_log("delivery slow-down", 60), "the slow-down is noticed",
       k.logtext())
    ok(k.metrics().get("kairan_delivery_rate_limit", 0) > 0,
       "a rate limit is in force", k.metrics())
    smtp.set_rules({})
    ok(harness.wait_for(lambda: harness.rcpt_counts(smtp).get(slow), 60),
       "the deferred message arrives on its retry", k.logtext())
    counts = harness.rcpt_counts(smtp)
    ok(all(counts.get(a) == 1 for a in good + [slow]),
       "everyone exactly once", counts)
    ok(k.stop() == 0, "SIGTERM exits 0")


def test_outbox_refusals():
    """The outbox with the real report parser: a report without a subject
    goes to failed/ with the parser's FILE:LINE:COL reason, the same
    report dropped twice is not queued twice, unfinished names wait."""
    base, smtp, k = setup(addrs(2))
    out = os.path.join(base, "outbox")
    k.drop_report("---\nlist: sips-report\n---\n本文だけ\n", "nosubject.md")
    ok(harness.wait_for(lambda: os.path.exists(
        os.path.join(out, "failed", "nosubject.md.err")), 20),
       "a report without a subject lands in failed/", os.listdir(out))
    try:
        with open(os.path.join(out, "failed", "nosubject.md.err")) as f:
            why = f.read()
    except OSError:
        why = ""
    ok("nosubject.md:" in why and "subject" in why,
       "NAME.err says where and what", why)
    good = harness.report("二重投入", "本文\n")
    k.drop_report(good, "once.md")
    ok(harness.wait_for(lambda: os.path.exists(
        os.path.join(out, "done", "once.md")), 20), "a good one is done")
    k.drop_report(good, "again.md")
    ok(harness.wait_for(lambda: os.path.exists(
        os.path.join(out, "failed", "again.md.err")), 20),
       "the same report again is refused", os.listdir(out))
    with open(os.path.join(out, "unfinished.md.part"), "w") as f:
        f.write(good)
    ok(smtp.wait_count(2, 30), "the report went out once")
    time.sleep(1)
    ok(os.path.exists(os.path.join(out, "unfinished.md.part")),
       "a .part file is left alone")
    ok(len(smtp.log()) == 2, "two subscribers, two messages",
       len(smtp.log()))
    # The folder removed and made again: a reload watches it again.
    shutil.rmtree(out)
    os.makedirs(out)
    k.proc.signal(signal.SIGHUP)
    ok(k.wait_log("reload done", 20), "reloaded", k.logtext())
    k.drop_report(harness.report("再作成後", "本文\n"), "after.md")
    ok(harness.wait_for(lambda: os.path.exists(
        os.path.join(out, "done", "after.md")), 20),
       "a report dropped in the new folder is taken", k.logtext())
    ok(k.stop() == 0, "SIGTERM exits 0")


def test_exactly_once_200():
    subs = addrs(200)
    base, smtp, k = setup(subs)
    rc, out, err = k.send_report(harness.report("二百通", "本文\n"))
    ok(rc == 0, "report to 200 queued", out + err)
    ok(smtp.wait_count(200, 120), "200 messages arrive", k.logtext())
    time.sleep(1)
    counts = harness.rcpt_counts(smtp)
    ok(len(counts) == 200 and set(counts) == set(subs),
       "every subscriber received the report", len(counts))
    ok(all(v == 1 for v in counts.values()),
       "each exactly once", [a for a, v in counts.items() if v != 1][:10])
    ok(k.counter("sent") == 200, "metrics: 200 sent", k.metrics())
    ok(k.stop() == 0, "SIGTERM exits 0")


def test_kill9_and_restart():
    n = 2000
    subs = addrs(n)
    base, smtp, k = setup(subs, delivery_extra=FAST)
    rc, out, err = k.send_report(harness.report("二千通", "本文\n" * 50))
    ok(rc == 0, "report to %d queued" % n, out + err)
    ok(smtp.wait_count(300, 120), "sending is under way", k.logtext())
    k.proc.kill9()
    before = len(smtp.log())
    ok(before < n, "killed mid-send (%d of %d arrived)" % (before, n))
    k.start()
    ok(harness.wait_for(lambda: len(harness.rcpt_counts(smtp)) >= n, 240),
       "after restart every subscriber got the report", k.logtext())
    time.sleep(12)  # past the lease: nothing more may come
    counts = harness.rcpt_counts(smtp)
    missing = [a for a in subs if a not in counts]
    dups = sum(v - 1 for v in counts.values())
    # In flight at the kill: at most one batch per worker (2 × 50).
    ok(not missing, "none lost", missing[:10])
    ok(dups <= 100, "duplicates (%d) at most the messages in flight" % dups)
    ok(k.stop() == 0, "SIGTERM exits 0")


def test_kill9_restart_takes_back():
    """With a long lease (10 minutes), the copies a killed kairand had
    claimed go again as soon as it restarts on the same host: the new run
    lets go of its previous run's leases instead of waiting them out."""
    import re
    import sqlite3
    n = 800
    subs = addrs(n)
    base, smtp, k = setup(subs, delivery_extra="  lease: 10m\n  batch: 50")
    rc, out, err = k.send_report(harness.report("引き継ぎ", "本文\n" * 50))
    ok(rc == 0, "report to %d queued" % n, out + err)
    ok(smtp.wait_count(100, 120), "sending is under way", k.logtext())
    k.proc.kill9()
    c = sqlite3.connect("file:%s?mode=ro" % os.path.join(base, "kairan.db"),
                        uri=True, timeout=30)
    held = c.execute("SELECT count(*) FROM deliveries WHERE state IN (0, 2)"
                     " AND lease_until > ?", (int(time.time()),)).fetchone()[0]
    c.close()
    ok(0 < held and len(smtp.log()) < n,
       "killed mid-send with %d copies claimed" % held)
    t0 = time.time()
    k.start()
    ok(harness.wait_for(lambda: len(harness.rcpt_counts(smtp)) >= n, 120),
       "every subscriber got the report %.0f s after the restart, long "
       "before the 10-minute lease" % (time.time() - t0), k.logtext())
    with open(os.path.join(base, "kairand.log"), errors="replace") as f:
        m = re.search(r"took back (\d+) copies", f.read())
    ok(m and int(m.group(1)) == held,
       "kairand says it took back the %d copies its killed run held"
       % held, m and m.group(0))
    counts = harness.rcpt_counts(smtp)
    dups = sum(v - 1 for v in counts.values())
    ok(dups <= held, "duplicates (%d) at most those claimed (%d)"
       % (dups, held))
    ok(k.stop() == 0, "SIGTERM exits 0")


def test_sigterm_drains():
    n = 600
    subs = addrs(n)
    base, smtp, k = setup(subs)
    rc, out, err = k.send_report(harness.report("停止", "本文\n"))
    ok(rc == 0, "report queued", out + err)
    ok(smtp.wait_count(50, 60), "sending is under way")
    rc = k.stop()
    ok(rc == 0, "SIGTERM mid-send exits 0 (%s)" % rc, k.logtext())
    ok(k.log_has("kairand stopped"), "it says it stopped")
    k.start()
    ok(harness.wait_for(lambda: len(harness.rcpt_counts(smtp)) >= n, 120),
       "after restart every subscriber got the report", k.logtext())
    time.sleep(4)
    counts = harness.rcpt_counts(smtp)
    ok(all(counts.get(a) == 1 for a in subs),
       "nothing lost, nothing twice after a clean stop",
       [(a, counts.get(a)) for a in subs if counts.get(a) != 1][:10])
    ok(k.stop() == 0, "SIGTERM exits 0")


def test_notify_and_reload():
    base = harness.tmpdir()
    smtp = harness.SmtpServer(base)
    ns = harness.NotifySocket(base)
    k = harness.Kairan(base, smtp_port=smtp.port, delivery_extra=FAST,
                       env={"NOTIFY_SOCKET": ns.path,
                            "WATCHDOG_USEC": "1000000",
                            "JOURNAL_STREAM": "8:12345"})
    i = ns.wait("READY=1")
    ok(i >= 0, "READY=1 arrives", ns.seen)
    st, _, _ = http("GET", k.url("/"))
    ok(st == 200, "serving once READY")
    w = ns.wait("WATCHDOG=1", 10)
    w2 = ns.wait("WATCHDOG=1", 10, after=w + 1) if w >= 0 else -1
    ok(w >= 0 and w2 >= 0, "watchdog pings keep coming", ns.seen)
    ok(any(s.startswith("STATUS=") for s in ns.seen), "STATUS= lines")

    # A good reload (a new footer): RELOADING=1 then READY=1 again.
    with open(k.config) as f:
        cfg0 = f.read()
    with open(k.config, "w") as f:
        f.write(cfg0.replace("株式会社Example", "株式会社Reloaded"))
    mark = len(ns.poll())
    k.proc.signal(signal.SIGHUP)
    r = ns.wait("RELOADING=1", 20, after=mark)
    ok(r >= 0, "SIGHUP sends RELOADING=1", ns.seen[mark:])
    ok(ns.wait("READY=1", 20, after=max(r, mark)) > r,
       "then READY=1", ns.seen[mark:])
    ok(any(s.startswith("MONOTONIC_USEC=") for s in ns.seen[mark:]),
       "RELOADING=1 carries MONOTONIC_USEC")
    # Another reload once the workers moved on frees the first config.
    time.sleep(1.5)
    k.proc.signal(signal.SIGHUP)
    ok(k.wait_log("reload freed=", 20),
       "retired configs are freed once no worker reads them", k.logtext())

    # A broken file: logged with line and column, the old config stays.
    with open(k.config) as f:
        good_cfg = f.read()
    with open(k.config, "w") as f:
        f.write(good_cfg.replace("  workers: 2", "  workers: [oops"))
    mark = len(ns.poll())
    k.proc.signal(signal.SIGHUP)
    r = ns.wait("RELOADING=1", 20, after=mark)
    ok(ns.wait("READY=1", 20, after=max(r, mark)) > r,
       "a broken config still ends the reload with READY=1")
    ok(k.wait_log("keeping the running config", 10),
       "the failed reload is logged", k.logtext())
    ok(k.wait_log("kairan.yaml:", 5), "with FILE:LINE:COL", k.logtext())
    ok(k.proc.alive(), "the daemon is still running")
    st, _, _ = http("GET", k.url("/"))
    ok(st == 200, "and still serving the form")
    st, _, _ = http("GET", k.admin_url("/healthz"))
    ok(st == 200, "healthz still 200")
    # kairanctl reads the good copy; the daemon keeps the broken path.
    good = os.path.join(base, "good.yaml")
    with open(good, "w") as f:
        f.write(good_cfg)
    k.config = good
    rc, out, err = k.add_subscribers(["after@example.org"])
    rc, out, err = k.send_report(harness.report("再読込後", "本文\n"))
    ok(rc == 0 and harness.wait_for(
        lambda: harness.rcpt_counts(smtp).get("after@example.org"), 60),
       "and still delivering on the old config", k.logtext())
    msgs = [raw for e, raw in smtp.messages()
            if "after@example.org" in e["rcpt"]]
    text = ""
    if msgs:
        m = email.message_from_bytes(msgs[0], policy=email.policy.default)
        part = m.get_body(preferencelist=("plain",))
        text = part.get_content() if part is not None else ""
    ok("株式会社Reloaded" in text and "株式会社Example" not in text,
       "the footer of the good reload is in force", text[-400:])
    ok(harness.wait_for(lambda: any(
        x.startswith("STATUS=") and "report" in x for x in ns.poll()), 10),
       "STATUS= tells about the report", [x for x in ns.seen
                                          if x.startswith("STATUS=")])
    with open(os.path.join(base, "kairand.log"), errors="replace") as f:
        first = f.readline()
    ok(first.startswith("<6>kairand starting"),
       "under journald, log lines carry priority prefixes", first)

    mark = len(ns.poll())
    rc = k.stop()
    ok(ns.wait("STOPPING=1", 5, after=mark) >= 0, "SIGTERM sends STOPPING=1",
       ns.seen[mark:])
    ok(rc == 0, "and exits 0")
    ns.close()


def test_socket_activation():
    """systemd hands over the public socket: kairand serves on it and does
    not bind the configured address."""
    base = harness.tmpdir()
    k = harness.Kairan(base, start=False)
    port = harness.free_port()
    p = harness.Proc(["/usr/bin/systemd-socket-activate", "-l",
                      "127.0.0.1:%d" % port, harness.KAIRAND, "--config",
                      k.config], log=os.path.join(base, "kairand.log"))
    # The first connection starts kairand, which answers it.
    ok(harness.wait_port(port, 10), "systemd-socket-activate listens")
    st, _, body = http("GET", "http://127.0.0.1:%d/" % port, timeout=30)
    ok(st == 200, "the activated socket serves the sign-up page",
       k.logtext())
    ok(k.log_has("socket activation fds=1"), "kairand took the socket")
    ok(not harness.wait_port(k.http_port, 1),
       "the configured address is not bound")
    ok(harness.wait_port(k.admin_port, 5), "the admin listener is bound")
    ok(p.stop() == 0, "SIGTERM exits 0")


def test_check_and_bad_config():
    base = harness.tmpdir()
    k = harness.Kairan(base, start=False)
    r = harness.subprocess.run([harness.KAIRAND, "--config", k.config,
                                "--check"], capture_output=True)
    ok(r.returncode == 0, "--check accepts a good config", r.stderr)
    bad = os.path.join(base, "bad.yaml")
    with open(bad, "w") as f:
        f.write("database: [\n")
    r = harness.subprocess.run([harness.KAIRAND, "--config", bad],
                               capture_output=True)
    ok(r.returncode == 2, "a broken config at start exits 2", r.returncode)
    ok(b"bad.yaml:" in r.stderr, "and names FILE:LINE:COL on stderr",
       r.stderr)
    r = harness.subprocess.run([harness.KAIRAND, "--bogus"],
                               capture_output=True)
    ok(r.returncode == 2, "an unknown option exits 2")


def test_busy_intake():
    """A report that takes long to parse (a deep YAML flow sequence, slow
    inside libyaml) is read off the main loop: the watchdog keeps
    pinging, a reload still completes, SIGTERM still stops kairand."""
    base = harness.tmpdir()
    ns = harness.NotifySocket(base)
    k = harness.Kairan(base, env={"NOTIFY_SOCKET": ns.path,
                                  "WATCHDOG_USEC": "1000000"})
    ok(ns.wait("READY=1") >= 0, "busy intake: READY=1")
    deep = "---\nsubject: " + "[" * 100000 + "\n---\nbody\n"
    tmp = os.path.join(base, "deep.md.tmp")
    with open(tmp, "w") as f:
        f.write(deep)
    mark = len(ns.poll())
    os.rename(tmp, os.path.join(base, "outbox", "deep.md"))
    time.sleep(3)
    pings = ns.poll()[mark:].count("WATCHDOG=1")
    ok(pings >= 3, "busy intake: the watchdog pings on while the file is "
       "read (%d in 3 s)" % pings, ns.seen[mark:])
    st, _, _ = http("GET", k.url("/"))
    ok(st == 200, "busy intake: the form answers", st)
    ok(k.stop() == 0, "busy intake: SIGTERM exits 0", k.logtext())


def main():
    only = sys.argv[1:]
    for name, fn in [("temp_and_perm", test_temp_and_perm),
                     ("dropped", test_dropped_mid_data),
                     ("slowdown", test_slowdown),
                     ("outbox", test_outbox_refusals),
                     ("exactly_once_200", test_exactly_once_200),
                     ("kill9", test_kill9_and_restart),
                     ("takeback", test_kill9_restart_takes_back),
                     ("sigterm", test_sigterm_drains),
                     ("notify", test_notify_and_reload),
                     ("busy_intake", test_busy_intake),
                     ("socket", test_socket_activation),
                     ("check", test_check_and_bad_config)]:
        if only and name not in only:
            continue
        try:
            fn()
        except Exception as e:  # a scenario that blew up is a failure
            ok(False, "%s raised %r" % (name, e))
        harness.stop_all()
    done()


if __name__ == "__main__":
    main()
