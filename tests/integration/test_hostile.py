#!/usr/bin/python3
"""Hostile input on the public surface, each expecting a clear refusal and
no change to the database (subscriber and report lists compared before
and after through kairanctl and SQLite).

Already proven elsewhere, not repeated here (see test_web.py): a raw
CR/LF "Bcc:" address, "a@b@x", a 300-octet local part, bodies over
16 KiB (413, also chunked), slowloris (half-open requests closed, the
page still answers), 64 connections per client, a tampered, overlong,
expired or other-list token, a confirm token used on /unsubscribe,
HTML in list names; test_send.py: a URL with more than 5 redirects, over
the size cap, a non-text type; test_outbox (unit): symlinks refused.

Added here: request smuggling (Content-Length with Transfer-Encoding,
two Content-Lengths, a NUL in the request target: one 400, the connection
closed, the hidden request never answered), NUL and percent-encoded CR/LF
in every form field, address
length limits (64/255/label 63), a 10 MB body sent for real, script in
every field that might be shown back, truncated, replayed and
cross-purpose tokens (unsubscribe token used to confirm, a confirm
token replayed after the reader left), the outbox against the running
daemon (a symlink to a file outside, a FIFO that would block a naive
reader, names with "..", a directory), and a report URL that redirects
to itself forever or streams without end (1 GB)."""
import email
import email.policy
import glob
import http.server as httpserver
import os
import re
import socket
import sqlite3
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import ok, done, http  # noqa: E402


def snapshot(k):
    """What an attacker must not change: every subscriber row (list,
    email, status, name), every report, every delivery."""
    c = sqlite3.connect("file:%s?mode=ro" % os.path.join(k.base,
                                                         "kairan.db"),
                        uri=True, timeout=30)
    try:
        subs = c.execute("SELECT list_id, email, status, name FROM "
                         "subscribers ORDER BY id").fetchall()
        reps = c.execute("SELECT count(*) FROM reports").fetchone()[0]
        dels = c.execute("SELECT count(*) FROM deliveries").fetchone()[0]
    finally:
        c.close()
    rc, out, _ = k.ctl("subscribers", "list")
    return subs, reps, dels, out


def status_of(k, email):
    c = sqlite3.connect("file:%s?mode=ro" % os.path.join(k.base,
                                                         "kairan.db"),
                        uri=True, timeout=30)
    try:
        r = c.execute("SELECT status FROM subscribers WHERE email = ?",
                      (email,)).fetchone()
    finally:
        c.close()
    return r[0] if r else None


_ip = [0]


def fwd(extra=None):
    """A fresh client address (X-Forwarded-For from a trusted proxy), so
    the per-client sign-up limit does not answer instead."""
    _ip[0] += 1
    h = {"X-Forwarded-For": "10.9.%d.%d" % (_ip[0] // 250, _ip[0] % 250
                                             + 1)}
    h.update(extra or {})
    return h


def post_raw(k, path, body, ctype="application/x-www-form-urlencoded"):
    """POST with a body given as bytes exactly (no re-encoding)."""
    return http("POST", k.url(path), data=body,
                headers=fwd({"Content-Type": ctype}))


def mails(k):
    out = []
    for p in sorted(glob.glob(os.path.join(k.base, "mail", "new", "*"))):
        with open(p, "rb") as f:
            out.append(f.read())
    return out


def text_of(raw):
    """Every text part of a mail, decoded (Python's email parser)."""
    m = email.message_from_bytes(raw, policy=email.policy.default)
    return m, "".join(p.get_content() for p in m.walk()
                      if p.get_content_maintype() == "text")


def confirm_token(k, addr, n=1):
    def find():
        toks = []
        for raw in mails(k):
            m, text = text_of(raw)
            if addr not in str(m["To"]):
                continue
            t = re.findall(r"/confirm\?t=([A-Za-z0-9_=-]+)", text)
            if t:
                toks.append(t[0])
        return toks if len(toks) >= n else None
    toks = harness.wait_for(find, 20)
    return toks[-1] if toks else None


def test_form(k):
    before = snapshot(k)
    # NUL and encoded CR/LF in the address.
    for raw in (b"email=x%00@example.org", b"email=x@example.org%00",
                b"email=x@example.org%0d%0aBcc:%20v@example.org",
                b"email=x@example.org%0aBcc:%20v@example.org",
                b"email=x%0d@example.org", b"email=%00"):
        st, _, body = post_raw(k, "/subscribe", raw)
        ok(st == 400 and len(body) > 3,
           "address %s: 400 with a reason" % raw[6:40].decode(), (st, body))
    # Length limits: local part 64, label 63, whole address 254.
    for addr in ("a" * 65 + "@example.org",
                 "x@" + "b" * 64 + ".example.org",
                 "x@" + ".".join(["c" * 60] * 5) + ".org",
                 "a" * 5000 + "@example.org",
                 "x@example..org", ".x@example.org", "x@-example.org",
                 "x@[127.0.0.1]", "x@localhost"):
        st, _, body = http("POST", k.url("/subscribe"), {"email": addr},
                           headers=fwd())
        ok(st == 400, "address %r…: 400" % addr[:24], (st, body[:200]))
    ok(snapshot(k) == before, "bad addresses: the database is unchanged")

    # CR/LF, NUL in the name: refused, or stored without them; the
    # confirmation mail never carries an injected header.
    inj = "Eve\r\nBcc: victim@example.net\r\nX-Evil: 1"
    st, _, body = http("POST", k.url("/subscribe"),
                       {"email": "eve@example.org", "name": inj},
                       headers=fwd())
    ok(st in (200, 400), "CR/LF in the name: answered (%d)" % st, body)
    st2, _, _ = post_raw(k, "/subscribe",
                         b"email=eve2@example.org&name=Eve%00Null")
    ok(st2 in (200, 400), "NUL in the name: answered (%d)" % st2)
    c = sqlite3.connect(os.path.join(k.base, "kairan.db"), timeout=30)
    names = [r[0] for r in c.execute("SELECT name FROM subscribers WHERE "
                                     "email LIKE 'eve%'")]
    c.close()
    ok(all(n is None or ("\r" not in n and "\n" not in n and "\0" not in n)
           for n in names), "no CR, LF or NUL stored in a name", names)
    if st == 200:
        confirm_token(k, "eve@example.org")
    for m in mails(k):
        head = m.split(b"\r\n\r\n", 1)[0]
        ok(b"X-Evil" not in head and b"victim@" not in head,
           "no header injected into a confirmation mail")

    # Script in every field that might be shown back, HTML and JSON.
    before = snapshot(k)
    evil = "<script>alert(1)</script>"
    for fields in ({"email": evil + "@example.org"},
                   {"email": "ok@example.org", "list": evil},
                   {"email": '"><img src=x onerror=alert(1)>@example.org'},
                   {"email": "sc@example.org", "name": evil,
                    "list": "nosuch" + evil}):
        for accept in ("text/html", "application/json"):
            st, hd, body = http("POST", k.url("/subscribe"), fields,
                                headers=fwd({"Accept": accept}))
            low = body.lower()
            ok(b"<script" not in low and b"<img" not in low,
               "script in %s (%s): not echoed raw (%d)"
               % (sorted(fields), accept, st), body[:300])
    st, _, body = http("GET", k.url("/confirm?t=" + urllib.parse.quote(
        evil)))
    ok(st == 400 and b"<script" not in body.lower(),
       "script in a token: 400, not echoed", body[:200])
    st, _, body = http("GET", k.url("/archive/" + urllib.parse.quote(evil)))
    ok(st == 404 and b"<script" not in body.lower(),
       "script in an archive id: 404, not echoed", body[:200])
    subs_after = snapshot(k)[0]
    ok(not any(r[1].startswith("<") or "script" in r[1]
               for r in subs_after), "no script address stored")


def test_big_body(k):
    """10 MB announced and sent: refused early, the daemon unhurt."""
    before = snapshot(k)
    s = socket.create_connection(("127.0.0.1", k.http_port), 10)
    body = b"email=big@example.org&name=" + b"A" * (10 * 1024 * 1024)
    s.sendall(b"POST /subscribe HTTP/1.1\r\nHost: x\r\nContent-Type: "
              b"application/x-www-form-urlencoded\r\nContent-Length: %d"
              b"\r\n\r\n" % len(body))
    sent = 0
    try:
        while sent < len(body):
            sent += s.send(body[sent:sent + 65536])
    except OSError:
        pass  # the server hung up early: good
    s.settimeout(20)
    try:
        head = s.recv(4096)
    except OSError:
        head = b""
    s.close()
    ok(head[9:12] == b"413" or head == b"",
       "a 10 MB form body: 413 or hung up (sent %d bytes)" % sent,
       head[:200])
    st, _, _ = http("GET", k.url("/"))
    ok(st == 200 and k.proc.alive(), "the daemon still serves")
    ok(snapshot(k) == before, "10 MB body: the database is unchanged")


def raw_exchange(k, data, timeout=10):
    """Sends data on one connection and reads until the server closes it
    (or timeout passes): (everything read, whether it closed)."""
    s = socket.create_connection(("127.0.0.1", k.http_port), timeout)
    got, closed = b"", False
    try:
        s.sendall(data)
        s.settimeout(timeout)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                closed = True
                break
            got += chunk
    except (ConnectionResetError, BrokenPipeError):
        closed = True
    except socket.timeout:
        pass
    finally:
        s.close()
    return got, closed


def statuses(got):
    return re.findall(rb"HTTP/1\.[01] (\d{3})", got)


def test_smuggling(k):
    """RFC 9112 6.1, 6.3: a request whose body length is ambiguous is
    refused with 400 and the connection closed, so a request hidden in
    its body never runs; so is a NUL in the request target."""
    before = snapshot(k)
    hidden = (b"POST /subscribe HTTP/1.1\r\nHost: x\r\nContent-Type: "
              b"application/x-www-form-urlencoded\r\nContent-Length: 25"
              b"\r\n\r\nemail=smuggled@example.org")
    # Content-Length and Transfer-Encoding: MHD goes by the chunks, a
    # proxy going by Content-Length sees one request.
    body = b"0\r\n\r\n" + hidden
    got, closed = raw_exchange(
        k, b"POST /subscribe HTTP/1.1\r\nHost: x\r\nContent-Type: "
        b"application/x-www-form-urlencoded\r\nContent-Length: %d\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" % len(body) + body)
    ok(statuses(got) == [b"400"] and closed,
       "Content-Length with Transfer-Encoding: one 400, closed, the "
       "hidden request not answered", got[:600])
    # Two different Content-Lengths: MHD takes the first.
    body = b"email=x@example.org" + hidden
    got, closed = raw_exchange(
        k, b"POST /subscribe HTTP/1.1\r\nHost: x\r\nContent-Type: "
        b"application/x-www-form-urlencoded\r\nContent-Length: 19\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body) + body)
    ok(statuses(got) == [b"400"] and closed,
       "two different Content-Lengths: one 400, closed, the hidden "
       "request not answered", got[:600])
    # The same on a GET, whose body nobody reads.
    body = b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    got, closed = raw_exchange(
        k, b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" % len(body) + body)
    ok(statuses(got) == [b"400"] and closed,
       "GET with Content-Length and Transfer-Encoding: one 400, closed",
       got[:600])
    # A transfer coding other than chunked: its length is unknowable.
    got, closed = raw_exchange(
        k, b"POST /subscribe HTTP/1.1\r\nHost: x\r\n"
        b"Transfer-Encoding: gzip\r\n\r\n" + hidden)
    ok(statuses(got) == [b"400"] and closed,
       "Transfer-Encoding: gzip: one 400, closed", got[:600])
    # A NUL in the request target, encoded or raw, must not cut the
    # path short (/archive/1%00x is not /archive/1, /\0x is not /).
    for target in (b"/archive/1%00x", b"/%00", b"/archive/1\x00x",
                   b"/\x00x", b"/confirm?t=a\x00b"):
        got, closed = raw_exchange(
            k, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        ok(statuses(got) == [b"400"] and closed,
           "NUL in the target %r: one 400, closed" % target, got[:300])
    # A proper keep-alive pair still gets two answers.
    got, closed = raw_exchange(
        k, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /archive HTTP/1.1\r\nHost: x\r\nConnection: close"
        b"\r\n\r\n")
    ok(statuses(got) == [b"200", b"200"],
       "two plain requests on one connection: two answers",
       statuses(got))
    time.sleep(0.5)
    ok(status_of(k, "smuggled@example.org") is None and
       snapshot(k) == before, "nothing smuggled reached the database")


def test_tokens(k):
    a = "tok@example.org"
    st, _, _ = http("POST", k.url("/subscribe"), {"email": a},
                    headers=fwd())
    ok(st == 200, "subscribe %s" % a)
    tok = confirm_token(k, a)
    ok(tok is not None, "a confirm token arrives")
    tok = tok or "x"
    for cut in (1, 5, len(tok) // 2, len(tok) - 1):
        st, _, _ = http("POST", k.url("/confirm?t=" + tok[:-cut]), "")
        ok(st == 400 and status_of(k, a) == 0,
           "truncated by %d: 400, still pending" % cut, st)
    st, _, _ = http("POST", k.url("/confirm?t=" + tok + "AAAA"), "")
    ok(st == 400 and status_of(k, a) == 0, "extended token: 400", st)
    st, _, _ = http("POST", k.url("/confirm?t=" + tok + "%00"), "")
    ok(st == 400 and status_of(k, a) == 0, "NUL after the token: 400", st)
    st, _, _ = http("POST", k.url("/confirm?t=" + tok), "")
    ok(st == 200 and status_of(k, a) == 1, "the real token confirms")
    # The reader leaves; the old confirm link (replayed, from a mail
    # archive or a scanner) must not sign them up again.
    rc, out, err = k.ctl("subscribers", "remove", a)
    ok(rc == 0, "kairanctl subscribers remove", out + err)
    st0 = status_of(k, a)
    st, _, _ = http("POST", k.url("/confirm?t=" + tok), "")
    ok(status_of(k, a) == st0 and st0 != 1,
       "a confirm token replayed after leaving does not re-subscribe "
       "(answer %d, status %s)" % (st, status_of(k, a)))


def test_outbox(k):
    """Files an attacker with write access to the outbox (or a careless
    operator) might drop: none may be read from outside or hang the
    watcher."""
    before = snapshot(k)
    outside = os.path.join(k.base, "secret.md")
    with open(outside, "w") as f:
        f.write(harness.report("外部ファイル", "SECRET-OUTSIDE"))
    ob = os.path.join(k.base, "outbox")
    os.symlink(outside, os.path.join(ob, "link.md"))
    os.symlink("../secret.md", os.path.join(ob, "rel-link.md"))
    os.mkfifo(os.path.join(ob, "fifo.md"))
    os.mkdir(os.path.join(ob, "dir.md"))
    with open(os.path.join(ob, "..dots..md"), "w") as f:
        f.write("not a report at all\n")
    # inotify reports a new symlink, FIFO or folder with IN_CREATE only;
    # the start-up scan sees them all: restart to make it look.
    time.sleep(1)
    ok(k.stop() == 0, "restart to make the start-up scan see them")
    k.start()
    ok(harness.wait_for(lambda: k.log_has("outbox refused file=link.md"),
                        20), "a symlink to a file outside: refused",
       k.logtext())
    ok(harness.wait_for(lambda: k.log_has("file=rel-link.md"), 10),
       "a relative symlink with ..: refused")
    st, _, _ = http("GET", k.admin_url("/healthz"))
    ok(st in (200, 503) and k.proc.alive(),
       "a FIFO in the outbox does not block the daemon")
    ok(os.path.exists(outside) and os.path.islink(os.path.join(ob,
                                                               "link.md"))
       or not os.path.exists(os.path.join(ob, "link.md")),
       "the file outside is neither moved nor changed")
    with open(outside) as f:
        ok("SECRET-OUTSIDE" in f.read(), "the outside file is intact")
    # A good report after all that still goes through.
    k.drop_report(harness.report("正しい号", "本文"), name="good.md")
    # "outbox done" is logged after the report is queued and moved
    # ("outbox report" before: counting then raced the queueing).
    ok(k.wait_log("outbox done file=good.md", 20),
       "a proper report dropped afterwards is queued", k.logtext())
    after = snapshot(k)
    ok(after[1] == before[1] + 1, "exactly one report queued (%d -> %d)"
       % (before[1], after[1]))
    rc, out, _ = k.ctl("reports")
    ok("SECRET" not in out and "外部ファイル" not in out,
       "nothing from outside the outbox became a report", out)


class Evil(httpserver.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        if self.path.startswith("/loop"):
            self.send_response(302)
            self.send_header("Location", self.path)  # itself, forever
            self.end_headers()
        elif self.path.startswith("/huge"):
            # 1 GB announced and streamed until the client hangs up.
            self.send_response(200)
            self.send_header("Content-Type", "text/markdown")
            self.send_header("Content-Length", str(1 << 30))
            self.end_headers()
            self.stream()
        elif self.path.startswith("/endless"):
            self.send_response(200)
            self.send_header("Content-Type", "text/markdown")
            self.end_headers()  # no length: until the connection ends
            self.stream()
        else:
            self.send_response(404)
            self.end_headers()

    def stream(self):
        chunk = b"---\nsubject: x\nlist: sips-report\n---\n" + \
            b"A" * 65000 + b"\n"
        try:
            for _ in range((1 << 30) // len(chunk)):
                self.wfile.write(chunk)
        except OSError:
            pass


def test_urls(k):
    srv = httpserver.ThreadingHTTPServer(("127.0.0.1", 0), Evil)
    srv.daemon_threads = True
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    base = "http://127.0.0.1:%d" % srv.server_address[1]
    before = snapshot(k)
    for path, want in (("/loop", "redirect"), ("/huge", "larger than"),
                       ("/endless", "larger than")):
        t0 = time.time()
        rc, out, err = k.ctl("send", base + path)
        ok(rc == 1 and want in err, "send %s: refused (%s)" % (path, want),
           (rc, out, err[-300:]))
        print("# send %s refused after %.1fs" % (path, time.time() - t0))
    ok(snapshot(k) == before, "hostile URLs: nothing queued")
    srv.shutdown()


def main():
    base = harness.tmpdir()
    k = harness.Kairan(base)  # Maildir transport: mails are files
    rc, out, err = k.add_subscribers(["r%02d@example.org" % i
                                      for i in range(5)])
    ok(rc == 0, "five subscribers", out + err)
    for t in (test_form, test_smuggling, test_big_body, test_tokens,
              test_outbox, test_urls):
        try:
            t(k)
        except Exception as e:  # one broken scenario is one failure
            ok(False, "%s raised %r" % (t.__name__, e))
    ok(k.stop() == 0, "SIGTERM exits 0 (no leaks under ASan)", k.logtext())
    done()


if __name__ == "__main__":
    main()
