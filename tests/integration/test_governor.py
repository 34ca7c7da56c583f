#!/usr/bin/python3
"""The complaint and bounce governor end to end: a real kairand sends a
report to 2,000 subscribers through the test SMTP server while the test
feeds ARF complaints through `kairanctl bounce`; the report pauses by
itself at the threshold (governor.min_sent copies sent, rate reached; ±
a batch), the webhook receives report.paused with the figures,
`kairanctl status` and /healthz show it, nothing more is sent until
`kairanctl resume`, which states the figures, and then the rest goes. The
same for hard bounces (550 at RCPT for 3 % of the recipients, limit 2 %)."""
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import ok  # noqa: E402
from test_webhook import Receiver  # noqa: E402

N = 2000
BATCH = 20
MIN_SENT = 1000
DATA = os.path.join(harness.ROOT, "tests", "data", "bounces")
TOK = "XXTOKENXXTOKENXXTOKENXXTOKENXXTOKENXXTOKENXX0001"


def arf(token, rcpt):
    with open(os.path.join(DATA, "arf-abuse.eml"), "rb") as f:
        raw = f.read()
    return raw.replace(TOK.encode(), token.encode()).replace(
        b"reader@example.org", rcpt.encode())


def report_id(out):
    m = re.search(r"report (\d+)", out)
    return int(m.group(1)) if m else None


def figures_sent(ev):
    """The copies sent when the governor decided, from its figures."""
    m = re.search(r"of (\d+) sent", ev.get("figures", ""))
    return int(m.group(1)) if m else -1


def paused_events(rx, rid):
    return [e[2] for e in rx.events if isinstance(e[2], dict) and
            e[2].get("event") == "report.paused" and
            e[2].get("report") == rid]


def main():
    base = harness.tmpdir()
    rx = Receiver()
    smtp = harness.SmtpServer(base)
    k = harness.Kairan(
        base, smtp_port=smtp.port, start=False,
        extra="webhook: http://127.0.0.1:%d/hook\n"
              "governor:\n  complaint_rate: 0.1%%\n  bounce_rate: 2%%\n"
              "  min_sent: %d\n" % (rx.port, MIN_SENT),
        delivery_extra="  bounce_domain: bounces.example.jp\n"
                       "  rate: 250/s\n  batch: %d" % BATCH)
    k.start()
    subs = ["g%04d@example.org" % i for i in range(N)]
    rc, out, err = k.add_subscribers(subs)
    ok(rc == 0, "%d subscribers" % N, out + err)

    # ---- complaints ----
    rc, out, err = k.send_report(harness.report("第1号", "本文"), "r1.md")
    rid = report_id(out + err)
    ok(rc == 0 and rid, "report 1 queued", out + err)
    ok(smtp.wait_count(2, 60), "the first copies arrive", smtp.log())
    first = smtp.log()[:2]
    fed = 0
    for e in first:
        m = re.match(r"bounces\+([A-Za-z0-9_-]+)@", e["mail_from"])
        rc, out, err = k.ctl("bounce", input=arf(m.group(1), e["rcpt"][0]))
        fed += rc == 0 and "recorded complaint" in err
    ok(fed == 2, "two ARF complaints fed through kairanctl bounce while "
       "it sends", err)
    sent_then = len(smtp.log())
    ok(sent_then < MIN_SENT, "... before %d copies were sent (%d)" %
       (MIN_SENT, sent_then), sent_then)
    ok(harness.wait_for(lambda: paused_events(rx, rid), 90),
       "the webhook receives report.paused", (rx.events[-3:], k.logtext()))
    ev = (paused_events(rx, rid) or [{}])[0]
    ok(ev.get("reason") == "complaints" and ev.get("complaints") == 2 and
       "complaints reached governor.complaint_rate" in ev.get("figures", ""),
       "report.paused names the reason and the figures", ev)
    sent_at = figures_sent(ev)
    ok(MIN_SENT <= sent_at <= MIN_SENT + 3 * BATCH and
       2 * 1000000 >= 1000 * sent_at and
       ev.get("sent", 0) <= sent_at + 3 * BATCH,
       "paused at the threshold: %d sent (min_sent %d, ± a batch), 2 "
       "complaints >= 0.1 %% of them" % (sent_at, MIN_SENT), ev)
    time.sleep(1)
    n1 = len(smtp.log())
    time.sleep(3)
    n2 = len(smtp.log())
    ok(n1 == n2 and n2 < N, "nothing more is sent while paused (%d, %d)" %
       (n1, n2), (n1, n2))
    rc, out, err = k.ctl("status", str(rid))
    ok(rc == 0 and "(paused" in out and
       "paused by the governor: complaints reached" in out and
       "governor   complaints 2 of" in out,
       "kairanctl status shows the pause and its reason", out)
    st, _, body = harness.http("GET", k.admin_url("/healthz"))
    ok(b"governor: report %d paused by the governor" % rid in body,
       "/healthz shows it", (st, body))
    rc, out, err = k.ctl("resume", str(rid))
    ok(rc == 0 and "was paused by the governor: complaints reached" in out
       and re.search(r"governor: complaints 2 of \d+ sent \([0-9.]+%, "
                     r"limit 0\.1%\)", out),
       "kairanctl resume states the figures again", out)
    # the two complainers are unsubscribed: their copies are cancelled
    ok(smtp.wait_count(N, 120) or len(smtp.log()) >= N - 2,
       "after resume the rest is sent", len(smtp.log()))
    ok(harness.wait_for(lambda: len(smtp.log()) >= N - 2, 60) and
       len(paused_events(rx, rid)) == 1,
       "... without another pause (no new complaint)",
       (len(smtp.log()), paused_events(rx, rid)))
    st, _, body = harness.http("GET", k.admin_url("/healthz"))
    ok(b"governor:" not in body, "/healthz is clear again", body)

    # ---- hard bounces: 550 at RCPT for 3 % of the recipients ----
    # among the first 1,000 in queue order, after the two complainers
    rejected = subs[100:160]
    smtp.set_rules({"rcpt": {a: "550 5.1.1 no such user" for a in rejected}})
    base_n = len(smtp.log())
    rc, out, err = k.send_report(harness.report("第2号", "本文"), "r2.md")
    rid2 = report_id(out + err)
    ok(rc == 0 and rid2, "report 2 queued", out + err)
    ok(harness.wait_for(lambda: paused_events(rx, rid2), 90),
       "report.paused for hard bounces", (rx.events[-3:], k.logtext()))
    ev = (paused_events(rx, rid2) or [{}])[0]
    sent_at = figures_sent(ev)
    ok(ev.get("reason") == "bounces" and ev.get("hard_bounces") == 60 and
       MIN_SENT <= sent_at <= MIN_SENT + 3 * BATCH and
       60 * 1000000 >= 20000 * sent_at,
       "paused at the threshold: 60 hard bounces, %d sent" % sent_at, ev)
    time.sleep(1)
    n1 = len(smtp.log())
    time.sleep(3)
    ok(len(smtp.log()) == n1 and n1 - base_n < N - 62,
       "nothing more is sent while paused", (n1, base_n))
    rc, out, err = k.ctl("resume", str(rid2))
    ok(rc == 0 and "hard bounces reached governor.bounce_rate" in out and
       "hard bounces 60 (" in out, "resume states the bounce figures", out)
    ok(harness.wait_for(lambda: len(smtp.log()) - base_n >= N - 2 - 60, 120),
       "after resume the rest of report 2 is sent",
       len(smtp.log()) - base_n)

    # ---- per-report outcomes add up against the SMTP log ----
    def finished(r):
        return [e[2] for e in rx.events if isinstance(e[2], dict) and
                e[2].get("event") == "report.finished" and
                e[2].get("report") == r]
    ok(harness.wait_for(lambda: finished(rid) and finished(rid2), 30),
       "report.finished for both", [e[2].get("event") for e in rx.events])
    n_r1 = base_n
    n_r2 = len(smtp.log()) - base_n
    rc, out, err = k.ctl("status", str(rid))
    ok(rc == 0 and re.search(r"sent\s+%d\b" % n_r1, out) and
       "complaints 2" in out and "bounced    0 hard, 0 soft" in out and
       "of %d sent: hard bounces 0.00%%, soft 0.00%%, complaints 0.10%%" %
       n_r1 in out,
       "status 1: %d sent as the SMTP server logged, 2 complaints fed, "
       "rates" % n_r1, out)
    rc, out, err = k.ctl("status", str(rid2))
    ok(rc == 0 and re.search(r"sent\s+%d\b" % n_r2, out) and
       re.search(r"failed\s+60\b", out) and
       "bounced    60 hard, 0 soft" in out and "complaints 0" in out,
       "status 2: %d sent as logged, 60 failed and 60 hard bounces "
       "(the 550s)" % n_r2, out)
    f1, f2 = finished(rid)[-1], finished(rid2)[-1]
    ok(f1.get("sent") == n_r1 and f1.get("complaints") == 2 and
       f1.get("hard_bounces") == 0 and f2.get("sent") == n_r2 and
       f2.get("hard_bounces") == 60 and f2.get("complaints") == 0 and
       abs(f2.get("hard_bounce_rate", 0) - 60.0 / n_r2) < 1e-5,
       "report.finished carries the outcomes and rates", (f1, f2))
    rc, out, err = k.ctl("reports")
    rows = {int(line.split()[0]): line.split() for line in out.splitlines()
            if line[:1].isdigit()}
    ok(rc == 0 and out.splitlines()[0].split()[6:9] == ["HARD", "SOFT",
                                                         "COMPL"] and
       rows.get(rid2, [])[6:9] == ["60", "0", "0"] and
       rows.get(rid, [])[6:9] == ["0", "0", "2"],
       "kairanctl reports: hard, soft and complaints per report", out)
    def per_report():
        m = k.metrics()
        key = 'kairan_report_%s{report="%d",list="sips-report",%s}'
        return (m.get(key % ("copies", rid, 'outcome="sent"')),
                m.get(key % ("bounces", rid, 'kind="complaint"')),
                m.get(key % ("copies", rid2, 'outcome="sent"')),
                m.get(key % ("copies", rid2, 'outcome="failed"')),
                m.get(key % ("bounces", rid2, 'kind="hard"')))
    want = (n_r1, 2, n_r2, 60, 60)
    ok(harness.wait_for(lambda: per_report() == want, 30),
       "/metrics: kairan_report_copies and kairan_report_bounces per report",
       (per_report(), want))
    k.stop()
    confirmations()
    harness.done()


def confirmations():
    """A list-bombing attack: 300 sign-ups, 30 of the first 100 addresses
    refused with 550: the list's confirmation mails pause by themselves,
    and go on after `kairanctl resume --confirmations LIST`."""
    base = harness.tmpdir()
    rx = Receiver()
    smtp = harness.SmtpServer(base)
    k = harness.Kairan(
        base, smtp_port=smtp.port, start=False,
        extra="webhook: http://127.0.0.1:%d/hook\n"
              "governor:\n  bounce_rate: 5%%\n  min_sent: 100\n" % rx.port,
        delivery_extra="  rate: 100/s\n  batch: 10")
    k.start()
    subs = ["c%04d@example.org" % i for i in range(300)]
    bad = subs[10:40]
    smtp.set_rules({"rcpt": {a: "550 5.1.1 no such user" for a in bad}})
    path = os.path.join(base, "bomb.csv")
    with open(path, "w") as f:
        f.write("email,name\n" + "".join("%s,\n" % a for a in subs))
    rc, out, err = k.ctl("subscribers", "import", "--list", "sips-report",
                         path)
    ok(rc == 0, "300 pending sign-ups: 300 confirmation mails queued",
       out + err)
    ok(k.wait_log("governor list=sips-report confirmations of list "
                  "sips-report paused by the governor: hard bounces "
                  "reached governor.bounce_rate", 60),
       "the confirmation mails pause by themselves", k.logtext())
    time.sleep(1)
    n1 = len(smtp.log())
    time.sleep(3)
    n2 = len(smtp.log())
    ok(n1 == n2 and 100 <= n2 <= 100 + 3 * 10,
       "nothing more is sent while paused (%d accepted)" % n2, (n1, n2))
    rc, out, err = k.ctl("status")
    ok(rc == 0 and "paused: confirmations of list sips-report paused by "
       "the governor" in out and "resume --confirmations sips-report" in out,
       "kairanctl status shows it", out)
    def paused():
        return [e[2] for e in rx.events if isinstance(e[2], dict) and
                e[2].get("event") == "confirmations.paused"]
    ev = harness.wait_for(paused, 15)
    ok(ev and len(ev) == 1 and ev[0].get("list") == "sips-report" and
       ev[0].get("hard_bounces", 0) >= 5 and ev[0].get("sent", 0) >= 100 and
       "bounce_rate" in ev[0].get("reason", ""),
       "the webhook receives confirmations.paused with the figures", ev)
    st, _, body = harness.http("GET", k.admin_url("/healthz"))
    ok(b"governor: confirmations of list sips-report" in body,
       "/healthz shows it", body)
    rc, out, err = k.ctl("resume", "--confirmations", "sips-report")
    ok(rc == 0 and "list sips-report confirmations resumed: complaints 0 "
       "of" in out and "hard bounces 30 (" in out,
       "resume --confirmations states the figures", (rc, out, err))
    ok(harness.wait_for(lambda: len(smtp.log()) >= 270, 60),
       "the rest of the confirmation mails go", len(smtp.log()))
    k.stop()


main()
