#!/usr/bin/python3
"""The relay misbehaves while a report goes out: down (connection
refused), then accepting but never answering, then 421 on connect, then
451 at the end of DATA, then back. Nothing may be lost, every retry
follows the configured schedule (retry: [1s, 2s, ...]), /healthz on the
admin port says what is wrong meanwhile (503 with a reason) and "ok"
once the relay is back, and kairand's memory stays flat over repeated
rounds of faults.

test_daemon.py covers one 4xx/5xx per recipient and the exactly-once
count; test_transport_smtp.py the transport's own replies. This is the
daemon as a whole against a failing relay, for a while."""
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import ok, done, http  # noqa: E402

N = 40
RETRY = [1] + [2] * 14
DELIVERY = ("  retry: [%s]\n  timeout: 2s\n  lease: 10s\n  batch: 10"
            % ", ".join("%ds" % r for r in RETRY))
ROUNDS = 3


def health(k):
    try:
        st, _, body = http("GET", k.admin_url("/healthz"), timeout=10)
    except OSError as e:
        return 0, str(e)
    return st, body.decode("utf-8", "replace")


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def n_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def deferrals(k):
    """[(time, id, retry_in, "code=N reply")] from kairand's log, in
    order."""
    out = []
    with open(os.path.join(k.base, "kairand.log"), errors="replace") as f:
        for line in f:
            m = re.match(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d\.\d+)Z"
                         r" \w+: delivery deferred id=(\d+) .*(code=\d+) "
                         r"retry_in="
                         r"(\d+)s reply=\"(.*)\"$", line.rstrip("\n"))
            if m:
                t = time.mktime((int(m[1]), int(m[2]), int(m[3]), int(m[4]),
                                 int(m[5]), 0, 0, 0, 0)) + float(m[6])
                out.append((t, int(m[7]), int(m[9]), m[8] + " " + m[10]))
    return out


def wait_health(k, pred, timeout=60):
    last = [None]

    def check():
        last[0] = health(k)
        return pred(*last[0])
    r = harness.wait_for(check, timeout, 0.2)
    return r, last[0]


def phase(k, smtp, name, want, setup):
    """Puts the relay in a state, waits until a delivery is deferred
    with a reply that says so, then asks /healthz."""
    setup()
    t0 = time.time()
    ok(harness.wait_for(lambda: any(
        t > t0 and re.search(want, r, re.I) for t, _, _, r in
        deferrals(k)), 30),
       "%s: deliveries are deferred, not failed (%s)" % (name, want),
       k.logtext())
    got, last = wait_health(
        k, lambda st, body: st == 503 and re.search(
            "relay: .*(%s)" % want.replace("code=", ""), body, re.I), 15)
    ok(got, "%s: /healthz answers 503 naming it" % name, last)


def main():
    base = harness.tmpdir()
    # PIPELINING offered (replies to a burst in one write): the transport
    # sends each next envelope behind a message's dot, so a 451 at the dot
    # also gives up the connection (the relay holds the next envelope);
    # nothing may be lost for it.
    smtp = harness.SmtpServer(base, extra=["--pipelining", "--cork"])
    # Without ASan's quarantine, RSS shows what the daemon keeps.
    env = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1:"
           "quarantine_size_mb=1:log_path=/dev/stderr"}
    k = harness.Kairan(base, smtp_port=smtp.port, delivery_extra=DELIVERY,
                       env=env)
    subs = ["relay%03d@example.org" % i for i in range(N)]
    rc, out, err = k.add_subscribers(subs)
    ok(rc == 0, "import %d subscribers" % N, out + err)
    st, body = health(k)
    healthy = harness.healthz_ok(os.path.join(base, "kairan.db"))
    ok(st == 200 and body == healthy, "/healthz: ok before any fault",
       (st, body))

    rss = []
    fds = []
    total = 0
    for rnd in range(ROUNDS):
        accepted = sum(harness.rcpt_counts(smtp).values())
        smtp.down()
        rc, out, err = k.send_report(harness.report(
            "障害試験 %d" % rnd, "本文\n" * 20), name="r%d.md" % rnd)
        ok(rc == 0, "round %d: report queued with the relay down" % rnd,
           out + err)
        total += N
        phase(k, smtp, "round %d: relay down" % rnd,
              r"refused", lambda: None)
        phase(k, smtp, "round %d: relay silent" % rnd,
              # libesmtp says "dropped connection" for a greeting
              # that never comes (the transport's 2 s timeout).
              r"time|no answer|dropped",
              lambda: (smtp.set_rules({"hang": True}), smtp.up()))
        # libesmtp reports a 421 greeting as a dropped connection too.
        phase(k, smtp, "round %d: 421 on connect" % rnd, r"code=421|dropped",
              lambda: smtp.set_rules({"connect": "421 4.3.2 going down"}))
        phase(k, smtp, "round %d: 451 on DATA" % rnd, r"code=451|451",
              lambda: smtp.set_rules({"data": {
                  a: "451 4.3.0 queue full" for a in subs}}))
        ok(sum(harness.rcpt_counts(smtp).values()) == accepted,
           "round %d: nothing accepted while the relay failed" % rnd)
        smtp.set_rules({})
        got, last = wait_health(k, lambda st, body: st == 200 and
                                body == healthy, 60)
        ok(got, "round %d: relay back: /healthz ok again" % rnd, last)
        ok(harness.wait_for(lambda: sum(harness.rcpt_counts(smtp).values())
                            >= total, 120),
           "round %d: every copy arrives once the relay is back" % rnd,
           k.logtext())
        ok(k.wait_log("delivery relay ok again", 5),
           "round %d: the log says the relay is back" % rnd)
        time.sleep(1)
        rss.append(rss_kb(k.proc.pid))
        fds.append(n_fds(k.proc.pid))
        print("# round %d: VmRSS %d kB, %d fds" % (rnd, rss[-1], fds[-1]),
              flush=True)

    counts = harness.rcpt_counts(smtp)
    ok(set(counts) == set(subs) and all(v == ROUNDS for v in
                                         counts.values()),
       "nothing lost, nothing doubled: each subscriber got each of the %d "
       "reports once" % ROUNDS,
       {a: v for a, v in counts.items() if v != ROUNDS})
    ok(k.counter("failed") == 0, "no delivery failed", k.metrics())
    ok(k.log_has("delivery relay failing, holding work"),
       "the log says why delivery holds")

    # The schedule: the k-th deferral of a row asks for retry[k-1]
    # (± 10 %, whole seconds), and the next attempt of that row comes no
    # earlier than that (a lower bound only: a busy machine may be late).
    d = deferrals(k)
    by_id = {}
    for t, i, r, _ in d:
        by_id.setdefault(i, []).append((t, r))
    bad = []
    for i, seq in by_id.items():
        for j, (t, r) in enumerate(seq):
            want = RETRY[j]
            if not (round(want * 0.9) <= r <= round(want * 1.1 + 0.5)):
                bad.append(("retry_in", i, j, r, want))
            if j + 1 < len(seq) and seq[j + 1][0] < t + r - 1.05:
                bad.append(("early", i, j, seq[j + 1][0] - t, r))
    ok(d and not bad, "%d deferrals of %d rows follow retry: [1s, 2s, …]"
       % (len(d), len(by_id)), bad[:10])
    ok(max(len(s) for s in by_id.values()) < len(RETRY),
       "no row ran out of retries")

    # Memory: after the first round (warm-up: caches, TLS-less sessions,
    # the report cache) RSS may not keep growing with each round.
    ok(rss[-1] <= rss[0] * 1.25 + 8192,
       "VmRSS flat over %d rounds of faults: %s kB" % (ROUNDS, rss))
    ok(fds[-1] <= fds[0] + 2, "open fds flat: %s" % fds)
    ok(k.stop() == 0, "SIGTERM exits 0", k.logtext())
    done()


if __name__ == "__main__":
    main()
