#!/usr/bin/python3
"""Soak: N messages (one report to N subscribers) through a real kairand
into aiosmtpd (tests/integration/smtp_server.py --log-only), with the
relay going down for DOWN seconds every FLAP seconds. kairand's VmRSS
and open descriptors are sampled every second; after a warm-up (the
first WARM % of the messages and the first flap) RSS must stay within
10 % of its value at the end of the warm-up, and the descriptors that
are not sockets must stay constant (sockets come and go with the SMTP
sessions: their count is reported). At the end: none lost, duplicates
counted. Prints one "soak:" summary line; bench/soak.sh records it.

usage: soak.py [--messages N] [--flap S] [--down S] [--workers W]
"""
import argparse
import os
import sqlite3
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import harness  # noqa: E402


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fds(pid):
    total = sock = 0
    d = "/proc/%d/fd" % pid
    for n in os.listdir(d):
        total += 1
        try:
            if os.readlink(os.path.join(d, n)).startswith("socket:"):
                sock += 1
        except OSError:
            pass
    return total, sock


class LogCount:
    """Counts log.jsonl lines (accepted messages) incrementally."""

    def __init__(self, path):
        self.path = path
        self.pos = 0
        self.n = 0

    def count(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except OSError:
            return self.n
        cut = data.rfind(b"\n") + 1
        self.n += data[:cut].count(b"\n")
        self.pos += cut
        return self.n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=200000)
    ap.add_argument("--flap", type=float, default=30)
    ap.add_argument("--down", type=float, default=None)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--warm", type=float, default=20,
                    help="warm-up: this % of the messages")
    a = ap.parse_args()
    down = a.down if a.down is not None else max(2.0, a.flap / 6)
    n = a.messages
    base = harness.tmpdir("kairan-soak-")
    smtp = harness.SmtpServer(base, extra=["--log-only"])
    retry = ", ".join(["1s"] + ["2s"] * 15)
    k = harness.Kairan(base, smtp_port=smtp.port, delivery_extra=(
        "  workers: %d\n  batch: 100\n  lease: 60s\n  retry: [%s]\n"
        "  max_age: 1d" % (a.workers, retry)))
    t0 = time.time()
    path = os.path.join(base, "subs.csv")
    with open(path, "w") as f:
        f.write("email,name\n")
        for i in range(n):
            f.write("soak%07d@example.org,\n" % i)
    rc, out, err = k.ctl("subscribers", "import", "--list", "sips-report",
                         "--confirmed", path)
    if rc != 0:
        print("soak: import failed: %s" % err)
        return 1
    rc, out, err = k.send_report(harness.report("耐久試験", "本文です。\n" * 30))
    if rc != 0:
        print("soak: send failed: %s" % err)
        return 1
    print("# soak: %d queued in %.0fs; relay down %.0fs every %.0fs" %
          (n, time.time() - t0, down, a.flap), flush=True)
    lc = LogCount(os.path.join(smtp.dir, "log.jsonl"))
    pid = k.proc.pid
    samples = []  # (t, delivered, rss, fds, sockets)
    start = time.time()
    next_flap = start + a.flap
    up_at = None
    flaps = 0
    deadline = start + max(600, n / 50.0)
    while time.time() < deadline:
        now = time.time()
        if up_at is None and now >= next_flap:
            smtp.down()
            flaps += 1
            up_at = now + down
        elif up_at is not None and now >= up_at:
            smtp.up()
            up_at = None
            next_flap = now + a.flap - down
        got = lc.count()
        tot, sock = fds(pid)
        samples.append((now - start, got, rss_kb(pid), tot, sock))
        if len(samples) % 10 == 0:
            print("# t=%4.0fs delivered=%d rss=%dkB fds=%d sockets=%d "
                  "flaps=%d" % (samples[-1][:5] + (flaps,)), flush=True)
        if got >= n and up_at is None:
            break
        time.sleep(max(0.0, 1.0 - (time.time() - now)))
    elapsed = time.time() - start
    if up_at is not None:
        smtp.up()
    # Whatever a lease still holds comes after the queue is empty.
    db = os.path.join(base, "kairan.db")

    def left():
        c = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=30)
        try:
            return c.execute("SELECT count(*) FROM deliveries WHERE kind = 0"
                             " AND state IN (0, 2)").fetchone()[0]
        finally:
            c.close()
    harness.wait_for(lambda: left() == 0, 120, 1)
    counts = harness.rcpt_counts(smtp)
    lost = n - len(counts)
    dups = sum(v - 1 for v in counts.values())
    failed = k.counter("failed")
    warm_n = n * a.warm / 100.0
    warm_i = next((i for i, s in enumerate(samples)
                   if s[1] >= warm_n and s[0] >= a.flap + down), None)
    verdict = "PASS"
    if warm_i is None or warm_i >= len(samples) - 5:
        verdict = "TOO SHORT"
        ref = rss_max = samples[-1][2] if samples else 0
        nonsock = set()
    else:
        after = samples[warm_i:]
        ref = after[0][2]
        rss_max = max(s[2] for s in after)
        nonsock = {s[3] - s[4] for s in after}
        if rss_max > ref * 1.10:
            verdict = "FAIL (RSS)"
        if len(nonsock) > 1:
            verdict = "FAIL (fds)"
    if lost or failed:
        verdict = "FAIL (lost %d, failed %d)" % (lost, failed)
    socks = [s[4] for s in samples] or [0]
    rss_all = [s[2] for s in samples] or [0]
    print("soak: messages=%d delivered=%d lost=%d duplicated=%d failed=%d "
          "elapsed=%.0fs rate=%.0f/s flaps=%d down=%.0fs/%.0fs "
          "rss_after_warmup=%dkB rss_max_after=%dkB (+%.1f%%) "
          "rss_range=%d-%dkB nonsocket_fds=%s sockets=%d-%d verdict=%s"
          % (n, len(counts), lost, dups, failed, elapsed, n / elapsed,
             flaps, down, a.flap, ref, rss_max,
             (rss_max - ref) * 100.0 / ref if ref else 0, min(rss_all),
             max(rss_all), sorted(nonsock) or "-", min(socks), max(socks),
             verdict), flush=True)
    k.stop()
    smtp.stop()
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
