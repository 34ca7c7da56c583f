#!/usr/bin/python3
"""The operator's webhook: a real HTTP receiver (Python's http.server on
loopback) gets JSON events when a report starts and finishes, and when its
failure rate passes the threshold; a receiver that answers 503 first gets
the event again after the back-off."""
import http.server
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import ok, done  # noqa: E402


class Receiver:
    def __init__(self, fail_first=0):
        self.events = []
        self.agents = []
        self.attempts = 0
        self.fail_first = fail_first
        me = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                me.attempts += 1
                if me.attempts <= me.fail_first:
                    self.send_response(503)
                    self.end_headers()
                    return
                me.agents.append(self.headers.get("User-Agent"))
                try:
                    me.events.append((self.path, self.headers.get(
                        "Content-Type"), json.loads(body)))
                except ValueError:
                    me.events.append((self.path, "bad json", body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def names(self, report=None):
        return [e[2].get("event") for e in self.events
                if isinstance(e[2], dict) and
                (report is None or e[2].get("report") == report)]

    def stop(self):
        self.srv.shutdown()


def main():
    base = harness.tmpdir()
    rx = Receiver(fail_first=1)
    bad = ["gone%02d@example.org" % i for i in range(12)]
    good = ["reader%02d@example.org" % i for i in range(5)]
    smtp = harness.SmtpServer(base, rules={
        "rcpt": {a: "550 5.1.1 no such user" for a in bad}})
    k = harness.Kairan(base, smtp_port=smtp.port,
                       extra="webhook: http://127.0.0.1:%d/hook?key=s3cret"
                       % rx.port)
    rc, out, err = k.add_subscribers(good)
    ok(rc == 0, "subscribers imported", out + err)
    rc, out, err = k.send_report(harness.report("通知テスト", "本文\n"),
                                 "r1.md")
    ok(rc == 0, "report 1 queued", out + err)
    ok(harness.wait_for(lambda: "report.finished" in rx.names(), 60),
       "report.finished arrives", (rx.events, k.logtext()))
    with open(os.path.join(harness.ROOT, "VERSION")) as f:
        version = f.read().strip()
    ok(set(rx.agents) == {"kairan-webhook/" + version},
       "every POST says User-Agent: kairan-webhook/%s (VERSION)" % version,
       rx.agents)
    names = rx.names()
    ok(names[:2] == ["report.started", "report.finished"],
       "started, then finished, once each", names)
    ok(rx.attempts >= 3, "the first POST got 503 and was retried",
       rx.attempts)
    ok(k.log_has("webhook retry"), "the retry is logged")
    ok(not k.log_has("s3cret"), "the URL's query never reaches the log")
    ev = [e for e in rx.events if e[2].get("event") == "report.finished"]
    if ev:
        path, ctype, j = ev[0]
        ok(path == "/hook?key=s3cret", "POSTed to the configured URL", path)
        ok(ctype == "application/json", "as JSON", ctype)
        ok(j.get("subject") == "通知テスト" and j.get("list") ==
           "sips-report" and j.get("sent") == 5 and j.get("total") == 5
           and j.get("failed") == 0,
           "with the report's subject, list and counts", j)

    # Report 2: most copies bounce, so it also says it is failing.
    rc, out, err = k.add_subscribers(bad)
    rc, out, err = k.send_report(harness.report("失敗の多い号", "本文\n"),
                                 "r2.md")
    ok(rc == 0, "report 2 queued", out + err)
    rid = None
    ok(harness.wait_for(lambda: len([n for n in rx.names()
                                     if n == "report.finished"]) >= 2, 60),
       "report 2 finishes", (rx.events, k.logtext()))
    for e in rx.events:
        if e[2].get("subject") == "失敗の多い号":
            rid = e[2].get("report")
    names2 = rx.names(rid)
    ok("report.failing" in names2,
       "12 of 17 failed: report.failing is sent", names2)
    fin = [e[2] for e in rx.events if e[2].get("report") == rid and
           e[2].get("event") == "report.finished"]
    ok(fin and fin[0].get("failed") == 12 and fin[0].get("sent") == 5,
       "its finished event counts 12 failed, 5 sent", fin)

    # Restart: old news is not announced again.
    before = len(rx.events)
    ok(k.stop() == 0, "SIGTERM exits 0")
    k.start()
    k.wait_log("kairand ready", 10)
    time.sleep(5)  # two looks at the reports (every 2 s)
    ok(len(rx.events) == before, "no events repeated after a restart",
       rx.names()[before:])
    ok(k.stop() == 0, "SIGTERM exits 0")
    rx.stop()
    done()


if __name__ == "__main__":
    main()
