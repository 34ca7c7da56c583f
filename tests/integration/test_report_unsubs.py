#!/usr/bin/python3
"""Per-report unsubscribes, without tracking: the unsubscribe token in
each copy names its report, so a subscription ended from a report's own
links counts for that report — one-click (RFC 8058), the page's form, and
"all lists" alike — while an ARF complaint (which also unsubscribes) and
an operator's `subscribers remove` do not. The counts show in
`kairanctl status REPORT`, `kairanctl reports`, /metrics
(kairan_report_unsubscribes) and the webhook's report.finished (as they
stand when it finishes)."""
import email
import email.policy
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import ok, done, http  # noqa: E402
from test_webhook import Receiver  # noqa: E402

PUBLIC = "https://news.example.jp"
DATA = os.path.join(harness.ROOT, "tests", "data", "bounces")
TOK = "XXTOKENXXTOKENXXTOKENXXTOKENXXTOKENXXTOKENXX0001"


def arf(token, rcpt):
    """The ARF sample of tests/data, about the copy with VERP token."""
    with open(os.path.join(DATA, "arf-abuse.eml"), "rb") as f:
        raw = f.read()
    return raw.replace(TOK.encode(), token.encode()).replace(
        b"reader@example.org", rcpt.encode())


def report_id(out):
    m = re.search(r"report (\d+)", out)
    return int(m.group(1)) if m else None
ONE_CLICK = {"Content-Type": "application/x-www-form-urlencoded"}


def unsub_url(raw):
    m = email.message_from_bytes(raw, policy=email.policy.default)
    urls = re.findall(r"<(https://[^>]+)>", str(m["List-Unsubscribe"] or ""))
    return urls[0][len(PUBLIC):] if urls else None


def main():
    base = harness.tmpdir()
    rx = Receiver()
    smtp = harness.SmtpServer(base)
    k = harness.Kairan(base, smtp_port=smtp.port,
                       extra="webhook: http://127.0.0.1:%d/hook\n" % rx.port,
                       delivery_extra="  bounce_domain: bounces.example.jp")
    subs = ["u%02d@example.org" % i for i in range(10)]
    rc, out, err = k.add_subscribers(subs)
    ok(rc == 0, "10 subscribers", out + err)

    rc, out, err = k.send_report(harness.report("第1号", "本文"), "r1.md")
    r1 = report_id(out + err)
    ok(rc == 0 and r1, "report 1 queued", out + err)
    ok(smtp.wait_count(10, 60), "its 10 copies arrive", len(smtp.log()))
    by_rcpt = {e["rcpt"][0]: (e, raw) for e, raw in smtp.messages()}

    # From report 1's links: two one-click POSTs, one form POST for all
    # lists, and a second one-click from an address already gone.
    posts = []
    for addr in ("u00@example.org", "u01@example.org"):
        st, _, _ = http("POST", k.url(unsub_url(by_rcpt[addr][1])),
                        data=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
        posts.append(st)
    st, _, _ = http("POST", k.url(unsub_url(by_rcpt["u02@example.org"][1])),
                    data=b"scope=all", headers=ONE_CLICK)
    posts.append(st)
    st, _, _ = http("POST", k.url(unsub_url(by_rcpt["u00@example.org"][1])),
                    data=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
    posts.append(st)
    ok(posts == [200, 200, 200, 200], "the unsubscribe POSTs answer 200",
       posts)
    # Not from a link: a complaint and the operator.
    e, _ = by_rcpt["u03@example.org"]
    m = re.match(r"bounces\+([A-Za-z0-9_-]+)@", e["mail_from"])
    rc, out, err = k.ctl("bounce", input=arf(m.group(1), "u03@example.org"))
    ok(rc == 0 and "recorded complaint" in err, "an ARF complaint recorded",
       out + err)
    rc, out, err = k.ctl("subscribers", "remove", "u04@example.org")
    ok(rc == 0, "the operator removes one", out + err)

    rc, out, err = k.ctl("status", str(r1))
    ok(rc == 0 and "unsubscribed 3 (from this report's links)" in out and
       "complaints 1" in out and "unsubscribes 30.00%" in out,
       "status: 3 unsubscribed from report 1's links (30% of 10 sent), "
       "the complaint apart", out)

    # Report 2 goes to the 5 left; one leaves from it, one again from an
    # old report 1 link (counted for report 1).
    rc, out, err = k.send_report(harness.report("第2号", "本文"), "r2.md")
    r2 = report_id(out + err)
    ok(rc == 0 and r2, "report 2 queued", out + err)
    ok(smtp.wait_count(15, 60), "its 5 copies arrive", len(smtp.log()))
    second = [(e, raw) for e, raw in smtp.messages()[10:]]
    st, _, _ = http("POST", k.url(unsub_url(second[0][1])),
                    data=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
    left = [a for a in subs[5:] if a != second[0][0]["rcpt"][0]]
    st2, _, _ = http("POST", k.url(unsub_url(by_rcpt[left[0]][1])),
                     data=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
    ok((st, st2) == (200, 200), "two more one-click POSTs", (st, st2))

    rc, out, err = k.ctl("reports")
    rows = {int(line.split()[0]): line.split() for line in out.splitlines()
            if line[:1].isdigit()}
    ok(rc == 0 and out.splitlines()[0].split()[9] == "UNSUB" and
       rows.get(r1, [])[9:10] == ["4"] and rows.get(r2, [])[9:10] == ["1"],
       "kairanctl reports: UNSUB 4 for report 1, 1 for report 2", out)
    key = 'kairan_report_unsubscribes{report="%d",list="sips-report"}'
    got = harness.wait_for(
        lambda: (k.metrics().get(key % r1), k.metrics().get(key % r2)) ==
        (4, 1), 30)
    ok(got, "/metrics: kairan_report_unsubscribes per report",
       (k.metrics().get(key % r1), k.metrics().get(key % r2)))
    def finished():
        return [e[2] for e in rx.events if isinstance(e[2], dict) and
                e[2].get("event") == "report.finished" and
                e[2].get("report") == r1]
    fin = harness.wait_for(finished, 30)
    # It fires a little after the last copy was sent: the count as it
    # stood then, with its rate.
    ok(fin and fin[-1].get("unsubscribes") in (0, 1, 2, 3, 4) and
       fin[-1].get("unsubscribe_rate") ==
       fin[-1].get("unsubscribes", -1) / 10.0,
       "report.finished carries unsubscribes and their rate", fin)
    ok(k.stop() == 0, "SIGTERM exits 0", k.logtext())
    smtp.stop()
    done()


if __name__ == "__main__":
    main()
