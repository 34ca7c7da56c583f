#!/usr/bin/python3
"""GET /metrics after a small send through a real kairand and a real SMTP
server (aiosmtpd): a few subscribers, one recipient the server refuses
with 550, one sign-up through the form confirmed from its mail. The page
is parsed strictly (text format 0.0.4: every line valid, # HELP and
# TYPE once per family and before its samples, a family's samples
together, label values escaped), then its numbers are checked against
what the SMTP server received, `kairanctl status`, `kairanctl subscribers
list` and the HTTP requests this test made; no line may carry an address
or a token."""
import email
import email.policy
import http.client
import os
import re
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import ok, done  # noqa: E402

LISTS = """
  - id: sips-report
    name: SIPS セキュリティレポート
    from: "SIPS Security Report <report@news.example.jp>"
    double_opt_in: true
    language: ja
    archive: true
    footer: |
      株式会社Example / 配信停止: {{unsubscribe_url}}
  - id: weekly
    name: Weekly
    from: "Weekly <weekly@news.example.jp>"
    double_opt_in: false
    language: en
"""
LINK = re.compile(r"https://news\.example\.jp/(confirm|unsubscribe)\?t="
                  r"([A-Za-z0-9_-]+)")
GOOD = ["reader%d@example.org" % i for i in range(3)]
HARD = "hard@example.org"
NEW = "new@example.org"
WEEKLY = ["w1@example.net", "w2@example.net"]
SECRET = "SeCrEtToKeN0123456789abcdefABCDEF"

# ---- a strict parser of the text format ----

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LVAL = r'"((?:[^"\\\n]|\\[\\"n])*)"'
LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)=" + LVAL)
SAMPLE = re.compile(r"^(%s)(\{(.*)\})? (\S+)( -?[0-9]+)?$" % NAME)
HELP = re.compile(r"^# HELP (%s) (.*)$" % NAME)
TYPE = re.compile(r"^# TYPE (%s) (counter|gauge|histogram|summary|"
                  r"untyped)$" % NAME)


def unescape(v):
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1),
                                                      m.group(1)), v)


def parse_labels(text):
    """{name: value}, or None when the label text is not valid."""
    out = {}
    pos = 0
    while pos < len(text):
        m = LABEL.match(text, pos)
        if not m or m.group(1) in out:
            return None
        out[m.group(1)] = unescape(m.group(2))
        pos = m.end()
        if pos < len(text):
            if text[pos] != ",":
                return None
            pos += 1
    return out


def family_of(name, types):
    for suf in ("_bucket", "_sum", "_count"):
        base = name[:-len(suf)]
        if name.endswith(suf) and types.get(base) in ("histogram",
                                                      "summary"):
            return base
    return name


def parse(text):
    """(samples {(name, frozenset(labels.items())): value}, types, errors)"""
    samples, types, helps, errors = {}, {}, set(), []
    done_fams, cur = set(), None
    if not text.endswith("\n"):
        errors.append("the page does not end in a newline")
    for n, line in enumerate(text.split("\n")[:-1], 1):
        m = HELP.match(line)
        if m:
            if m.group(1) in helps:
                errors.append("%d: second HELP for %s" % (n, m.group(1)))
            helps.add(m.group(1))
            continue
        m = TYPE.match(line)
        if m:
            fam = m.group(1)
            if fam in types:
                errors.append("%d: second TYPE for %s" % (n, fam))
            types[fam] = m.group(2)
            continue
        if line.startswith("#") or line == "":
            errors.append("%d: not a HELP, TYPE or sample line: %r" %
                          (n, line))
            continue
        m = SAMPLE.match(line)
        if not m:
            errors.append("%d: bad sample line: %r" % (n, line))
            continue
        name, labels = m.group(1), parse_labels(m.group(3) or "")
        if labels is None:
            errors.append("%d: bad labels: %r" % (n, line))
            continue
        try:
            value = float(m.group(4))
        except ValueError:
            errors.append("%d: bad value: %r" % (n, line))
            continue
        fam = family_of(name, types)
        if fam not in types or fam not in helps:
            errors.append("%d: %s has no TYPE and HELP before it" %
                          (n, name))
        if fam != cur:
            if fam in done_fams:
                errors.append("%d: samples of %s are not together" %
                              (n, fam))
            if cur is not None:
                done_fams.add(cur)
            cur = fam
        key = (name, frozenset(labels.items()))
        if key in samples:
            errors.append("%d: duplicate sample %r" % (n, line))
        samples[key] = value
    return samples, types, errors


def get(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def matching(samples, name, **labels):
    """{labels dict as sorted tuple: value} for name with these labels."""
    want = set(labels.items())
    return {tuple(sorted(dict(k[1]).items())): v
            for k, v in samples.items()
            if k[0] == name and want <= set(k[1])}


def scrape(k):
    c = http.client.HTTPConnection("127.0.0.1", k.admin_port, timeout=10)
    c.request("GET", "/metrics")
    r = c.getresponse()
    out = (r.status, r.getheader("Content-Type"),
           r.read().decode("utf-8"))
    c.close()
    return out


# ---- HTTP on the public listener, counted by this test ----

asked = {}


def req(k, method, path, body=None, headers=None, route=None):
    """One request without following redirects; its answer is counted
    under route for the comparison with kairan_http_requests_total."""
    h = dict(headers or {})
    if body is not None:
        body = urllib.parse.urlencode(body)
        h["Content-Type"] = "application/x-www-form-urlencoded"
    c = http.client.HTTPConnection("127.0.0.1", k.http_port, timeout=10)
    c.request(method, path, body, h)
    r = c.getresponse()
    data = r.read()
    c.close()
    key = (route, str(r.status))
    asked[key] = asked.get(key, 0) + 1
    return r.status, data


def text_of(raw):
    m = email.message_from_bytes(raw, policy=email.policy.default)
    parts = [str(m.get("List-Unsubscribe", ""))]
    for part in m.walk():
        if part.get_content_maintype() == "text":
            parts.append(part.get_payload(decode=True).decode("utf-8",
                                                              "replace"))
    return "\n".join(parts)


def confirm_token(smtp):
    for e, raw in smtp.messages():
        if NEW in [r.lower() for r in e["rcpt"]]:
            for kind, tok in LINK.findall(text_of(raw)):
                if kind == "confirm":
                    return tok
    return None


def ctl_status(k):
    """{state: n} from `kairanctl status` (all copies)."""
    rc, out, err = k.ctl("status")
    res = {}
    for line in out.splitlines():
        m = re.match(r"^  (queued|in flight|deferred|sent|failed|uncertain|"
                     r"cancelled) +(\d+)$", line)
        if m:
            res[m.group(1).replace(" ", "_")] = int(m.group(2))
    return res


def ctl_subscribers(k):
    """{(list, status): n} from `kairanctl subscribers list`."""
    rc, out, err = k.ctl("subscribers", "list")
    res = {}
    for line in out.splitlines():
        f = line.split("\t")
        if len(f) >= 6:
            res[(f[1], f[2])] = res.get((f[1], f[2]), 0) + 1
    return res


def gauges(samples):
    deliveries = {dict(lb)["state"]: int(v) for lb, v in
                  matching(samples, "kairan_deliveries").items()}
    subs = {(dict(lb)["list"], dict(lb)["status"]): int(v)
            for lb, v in matching(samples, "kairan_subscribers").items()
            if v}
    return deliveries, subs


def main():
    base = harness.tmpdir()
    smtp = harness.SmtpServer(base, rules={
        "rcpt": {HARD: "550 5.1.1 no such user"}})
    k = harness.Kairan(base, smtp_port=smtp.port, lists=LISTS)

    st, ctype, text = scrape(k)
    ok(st == 200 and ctype == "text/plain; version=0.0.4; charset=utf-8",
       "GET /metrics: 200, text format 0.0.4", (st, ctype))
    samples, types, errors = parse(text)
    ok(not errors, "a fresh daemon's page parses", "\n".join(errors))
    ok(types.get("kairan_http_requests_total") == "counter" and
       not matching(samples, "kairan_http_requests_total"),
       "no request counted before any request", text)
    ok(get(samples, "kairan_metrics_store_up") == 1 and
       get(samples, "kairan_deliveries", state="queued") == 0 and
       get(samples, "kairan_bounces_total", kind="hard") == 0,
       "an empty store: gauges at 0, the store up",
       # kairand's own words first: CI shows only a few lines.
       "\n".join(l for l in k.logtext().splitlines() if "metrics" in l or
                 "store" in l or "database" in l) + "\n" + text)

    rc, out, err = k.add_subscribers(GOOD + [HARD])
    ok(rc == 0, "four confirmed subscribers on sips-report", out + err)
    rc, out, err = k.add_subscribers(WEEKLY, "weekly")
    ok(rc == 0, "two on weekly", out + err)

    # The public routes, with the answers this test saw.
    xff = {"X-Forwarded-For": "198.51.100.7"}
    req(k, "GET", "/", route="/")
    req(k, "HEAD", "/", route="/")
    req(k, "GET", "/nope?t=" + SECRET, route="other")
    req(k, "GET", "/%s" % SECRET, route="other")
    req(k, "GET", "/subscribe", route="/subscribe")
    st, _ = req(k, "POST", "/subscribe", {"email": NEW,
                                          "list": "sips-report"},
                xff, route="/subscribe")
    ok(st in (200, 201, 202, 303), "POST /subscribe answers", st)
    req(k, "GET", "/archive", route="/archive")
    req(k, "GET", "/archive/999999", route="/archive")
    st, _ = req(k, "GET", "/confirm?t=" + SECRET, route="/confirm")
    ok(st == 400, "a forged confirm token: 400", st)
    req(k, "POST", "/unsubscribe?t=" + SECRET, {}, route="/unsubscribe")
    ok(smtp.wait_count(1, 60), "the confirmation mail arrives", k.logtext())
    tok = confirm_token(smtp)
    ok(tok, "it carries a confirm link", smtp.log())
    st, _ = req(k, "POST", "/confirm?t=%s" % tok, {}, route="/confirm")
    ok(st == 200, "POST /confirm with the mailed token: 200", st)

    rc, out, err = k.send_report(harness.report("第1号", "本文です。"))
    ok(rc == 0, "report queued", out + err)
    # 1 confirmation + 3 good + the new subscriber; HARD is refused.
    ok(smtp.wait_count(5, 60), "five messages accepted", smtp.log())
    ok(harness.wait_for(lambda: k.counter("failed") >= 1, 60),
       "the 550 recipient ends failed", k.logtext())

    def settled():
        st, _, text = scrape(k)
        samples, _, _ = parse(text)
        d, s = gauges(samples)
        want = ctl_status(k)
        if d == want and s == ctl_subscribers(k) and \
                want.get("queued", 1) == 0 and want.get("deferred", 1) == 0:
            return text
        return None
    text = harness.wait_for(settled, 30, 0.5)
    ok(text, "the gauges settle on what kairanctl shows (cached <= 5 s)",
       (ctl_status(k), ctl_subscribers(k), scrape(k)[2]))
    text = text or scrape(k)[2]
    samples, types, errors = parse(text)
    ok(not errors, "every line of the page is valid text format 0.0.4",
       "\n".join(errors) + "\n" + text)
    with open(os.path.join(harness.ROOT, "VERSION")) as f:
        version = f.read().strip()
    ok(types.get("kairan_build_info") == "gauge" and
       get(samples, "kairan_build_info", version=version) == 1,
       "kairan_build_info{version=\"%s\"} 1, the VERSION file's" % version,
       [ln for ln in text.splitlines() if "build_info" in ln])

    received = len(smtp.log())
    sent = sum(v for lb, v in
               matching(samples, "kairan_delivery_messages_total",
                        outcome="sent").items())
    ok(received == 5 and sent == received,
       "sent counters add up to the messages the SMTP server received",
       (received, sent))
    ok(get(samples, "kairan_deliveries", state="sent") == received,
       "kairan_deliveries{state=sent} == messages received", text)
    failed = sum(v for lb, v in
                 matching(samples, "kairan_delivery_messages_total",
                          outcome="failed").items())
    ok(failed == 1 and get(samples, "kairan_deliveries",
                           state="failed") == 1,
       "one failed copy, in the counter and the gauge", text)
    rcpts = harness.rcpt_counts(smtp)
    ok(all(rcpts.get(a) == 1 for a in GOOD) and rcpts.get(NEW) == 2 and
       HARD not in rcpts, "the server saw who it should", rcpts)

    d, s = gauges(samples)
    st_now = ctl_status(k)
    ok(d == st_now and set(d) == {"queued", "deferred", "in_flight", "sent",
                                  "failed", "uncertain", "cancelled"},
       "kairan_deliveries{state} matches kairanctl status", (d, st_now))
    subs_now = ctl_subscribers(k)
    ok(s == subs_now and s.get(("sips-report", "active")) == 4 and
       s.get(("sips-report", "bounced")) == 1 and
       s.get(("weekly", "active")) == 2,
       "kairan_subscribers{list,status} matches kairanctl subscribers list",
       (s, subs_now))
    ok(get(samples, "kairan_subscribers", list="weekly",
           status="pending") == 0,
       "every status of a list is shown, 0 included", text)
    ok(types.get("kairan_subscribers") == "gauge" and
       types.get("kairan_deliveries") == "gauge" and
       types.get("kairan_bounces_total") == "counter",
       "gauges are gauges, totals are counters", types)

    ok(get(samples, "kairan_bounces_total", kind="hard") == 1 and
       get(samples, "kairan_bounces_total", kind="soft") == 0 and
       get(samples, "kairan_bounces_total", kind="complaint") == 0,
       "the 550 shows as one hard bounce", text)

    by_route = {(dict(lb)["route"], dict(lb)["code"]): int(v) for lb, v in
                matching(samples, "kairan_http_requests_total").items()}
    ok(by_route == asked,
       "kairan_http_requests_total{route,code} == the requests made",
       (by_route, asked))
    ok({r for r, _ in by_route} <= {"/", "/subscribe", "/confirm",
                                    "/unsubscribe", "/archive", "other"},
       "route labels come from the fixed set", by_route)
    ok(get(samples, "kairan_http_requests_received_total") ==
       sum(asked.values()), "every request arrived and was answered",
       text)

    leaks = [line for line in text.splitlines()
             if "@" in line and not line.startswith("#")]
    leaks += [line for line in text.splitlines()
              if SECRET in line or (tok and tok in line) or "?t=" in line]
    ok(not leaks, "no address or token on any line", leaks)

    ok(k.stop() == 0, "SIGTERM exits 0")
    startup_looks(smtp)
    done()


def startup_looks(smtp):
    """Scrapes and health checks from the moment the admin port opens:
    each answer is either the whole page or 503 "starting", never a page
    without the store's gauges (kairand once listened before it had
    started delivery and wired the metrics)."""
    import socket
    import threading
    base = harness.tmpdir()
    k = harness.Kairan(base, smtp_port=smtp.port, lists=LISTS, start=False)
    seen, stop = [], threading.Event()

    def look():
        while not stop.is_set():
            for path in ("/metrics", "/healthz"):
                try:
                    st, _, body = harness.http(
                        "GET", k.admin_url(path), timeout=5)
                except (OSError, socket.timeout):
                    continue
                seen.append((path, st, body.decode("utf-8", "replace")))
            if len(seen) > 400:
                return
    t = threading.Thread(target=look)
    t.start()
    k.start()
    harness.wait_for(lambda: len(seen) >= 20, 10)
    stop.set()
    t.join()
    bad = [(p, st, b[:200]) for p, st, b in seen
           if not ((st == 503 and b == "starting\n") or
                   (p == "/metrics" and st == 200 and
                    "kairan_metrics_store_up 1" in b and
                    'kairan_deliveries{state="queued"} 0' in b) or
                   (p == "/healthz" and st == 200 and
                    b == harness.healthz_ok(os.path.join(base,
                                                         "kairan.db"))))]
    ok(len(seen) >= 20 and not bad,
       "during start-up each look is the whole page or 503 starting "
       "(%d looks)" % len(seen), bad[:5])
    ok(k.stop() == 0, "the second daemon's SIGTERM exits 0")


if __name__ == "__main__":
    main()
