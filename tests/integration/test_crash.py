#!/usr/bin/python3
"""Crash test: a report to N subscribers through a real SMTP server
(aiosmtpd, which logs every message it accepts to log.jsonl), with
`kill -9` of kairand at random points, several rounds, a restart after
each. At the end every subscriber has the report at least once, and the
duplicates are at most the messages that were in flight at the kills.

"In flight" is counted from the database right after each kill (the
process is gone, the file is still): delivery rows claimed (lease in the
future) but not yet marked sent, deferred or failed. Such a row may
have reached the server before the kill; it comes back when its lease
ends and is sent again. Every other row is either marked (sent once) or
unclaimed (never sent), so the claims in flight at the kills bound the
duplicates. A claim is (row, lease end): a row still leased by an earlier
daemon at the next kill is the same claim and counts once; claimed anew,
it counts again.

test_daemon.py's test_kill9_and_restart kills once at a fixed point and
bounds the duplicates by workers x batch; this one kills many times at
random points (also during start-up and right after a restart) and
takes the bound from the database.

Usage: test_crash.py [--subscribers N] [--rounds R] [--seed S]
(default 2,000 subscribers, 5 rounds: the short form run by make test;
bench/crash.sh runs 20,000). Prints "# crash: delivered=… lost=…
duplicated=… in_flight_at_kills=…" and TAP lines.
"""
import argparse
import os
import random
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import ok, done  # noqa: E402

# The shortest lease the config takes, so rows claimed by a killed
# daemon come back quickly; 4 workers x 50 per batch.
DELIVERY = "  lease: 10s\n  batch: 50\n  workers: 4"


def in_flight(db, now):
    """Rows claimed and not marked: lease in the future, still queued
    or deferred. Read after the kill, while no kairand runs."""
    c = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=30)
    try:
        ids = set(c.execute(
            "SELECT id, lease_until FROM deliveries WHERE kind = 0 AND"
            " state IN (0, 2) AND lease_until > ?", (now - 1,)))
        states = dict(c.execute(
            "SELECT state, count(*) FROM deliveries WHERE kind = 0"
            " GROUP BY state"))
    finally:
        c.close()
    return ids, states


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--subscribers", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--max-delay", type=float, default=None,
                    help="longest wait for the next kill, seconds")
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else int(time.time())
    rnd = random.Random(seed)
    print("# crash: seed=%d subscribers=%d rounds=%d" %
          (seed, a.subscribers, a.rounds), flush=True)
    n = a.subscribers
    subs = ["reader%06d@example.org" % i for i in range(n)]
    base = harness.tmpdir()
    # PIPELINING offered, as real relays do, and replies to a burst of
    # commands in one write: the next envelope goes behind each message's
    # dot, before its 250 is recorded; kills then still lose nothing and
    # duplicate only what was in flight.
    smtp = harness.SmtpServer(base, extra=["--pipelining", "--cork"])
    k = harness.Kairan(base, smtp_port=smtp.port, delivery_extra=DELIVERY)
    rc, out, err = k.add_subscribers(subs)
    ok(rc == 0, "import %d subscribers" % n, out + err)
    rc, out, err = k.send_report(harness.report(
        "クラッシュ試験", "本文です。\n" * 40))
    ok(rc == 0, "report to %d queued" % n, out + err)
    db = os.path.join(base, "kairan.db")

    kills = []
    claims = set()
    t_start = time.time()
    for r in range(a.rounds):
        got = len(smtp.log())
        # Kill at a random point: sometimes during start-up (before or
        # while the first batch is claimed), mostly mid-send, after a
        # random number of further messages arrived (so every round
        # kills mid-send however fast the machine is). Rows leased by
        # the previous daemon wait for their lease (10 s) meanwhile.
        t_round = time.time()
        if r > 0 and rnd.random() < 0.25:
            time.sleep(rnd.uniform(0.0, 0.5))
        else:
            share = max(1, (n - got) // (a.rounds - r + 1))
            target = got + rnd.randint(1, share)
            harness.wait_for(lambda: len(smtp.log()) >= target,
                             a.max_delay or 30, 0.02)
            time.sleep(rnd.uniform(0.0, 0.1))
        delay = time.time() - t_round
        k.proc.kill9()
        now = int(time.time())
        ids, states = in_flight(db, now)
        arrived = len(smtp.log())
        kills.append((delay, len(ids - claims), arrived))
        claims |= ids
        print("# kill %d after %.2fs: %d arrived so far, %d in flight, "
              "states %s" % (r + 1, delay, arrived, len(ids), states),
              flush=True)
        if arrived >= n and not ids and not states.get(0) and \
                not states.get(2):
            break
        k.start()
    if not k.proc or not k.proc.alive():
        k.start()
    ok(any(0 < ar < n for _, _, ar in kills),
       "at least one kill came mid-send", kills)
    everyone = harness.wait_for(
        lambda: len(harness.rcpt_counts(smtp)) >= n, 120 + n / 20.0, 0.5)
    ok(everyone, "after the last restart every subscriber got the report",
       k.logtext())
    # Rows claimed by the last killed daemon come back when their lease
    # ends; wait until the queue is empty, then past one more lease, so
    # any late duplicate is counted too.
    def drained():
        c = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=30)
        try:
            return c.execute("SELECT count(*) FROM deliveries WHERE "
                             "kind = 0 AND state IN (0, 2)").fetchone()[0] \
                == 0
        finally:
            c.close()
    ok(harness.wait_for(drained, 60, 0.5),
       "the queue drains (no row left queued or deferred)")
    time.sleep(11)
    elapsed = time.time() - t_start
    counts = harness.rcpt_counts(smtp)
    lost = [s for s in subs if s not in counts]
    dups = sum(v - 1 for v in counts.values())
    bound = len(claims)
    delivered = len(counts)
    print("# crash: delivered=%d lost=%d duplicated=%d "
          "in_flight_at_kills=%d kills=%d accepted_by_server=%d "
          "elapsed=%.0fs" % (delivered, len(lost), dups, bound, len(kills),
                             len(smtp.log()), elapsed), flush=True)
    ok(not lost, "none lost (%d of %d delivered)" % (delivered, n), lost[:10])
    ok(dups <= bound, "duplicates (%d) at most the messages in flight at "
       "the kills (%d)" % (dups, bound))
    strangers = [a for a in counts if a not in set(subs)]
    ok(not strangers, "nothing sent to anyone else", strangers[:5])
    c = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=30)
    sent = c.execute("SELECT count(*) FROM deliveries WHERE kind = 0 AND "
                     "state = 1").fetchone()[0]
    c.close()
    ok(sent == n, "the database says %d of %d sent" % (sent, n))
    ok(k.stop() == 0, "SIGTERM exits 0 after the crashes", k.logtext())
    done()


if __name__ == "__main__":
    main()
