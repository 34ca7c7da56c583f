#!/usr/bin/python3
"""kairand delivering to a relay that offers CHUNKING (RFC 3030), as
Postfix's smtpd does by default: libesmtp then sends each message with
BDAT instead of DATA (no dot-stuffing, the body in blocks). aiosmtpd has
no BDAT, so the relay here is a small threaded server of this file that
speaks just enough ESMTP: PIPELINING, 8BITMIME, ENHANCEDSTATUSCODES,
CHUNKING; a 550 at RCPT for one address, a 451 to the last BDAT for
another. It checks that the messages arrive whole through BDAT and that
the outcomes (sent, bounced, deferred) are recorded as with DATA.
"""
import email
import email.policy
import os
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import ok, done  # noqa: E402


class BdatServer:
    """One thread per connection; messages[] holds (rcpts, bytes,
    verbs) per transaction that ended with a reply to BDAT ... LAST or
    to the final dot."""

    def __init__(self, refuse_rcpt, defer_rcpt):
        self.refuse_rcpt = refuse_rcpt
        self.defer_rcpt = defer_rcpt
        self.messages = []
        self.lock = threading.Lock()
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(16)
        self.port = self.ls.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self.session, args=(c,),
                             daemon=True).start()

    def session(self, c):
        f = c.makefile("rb")
        c.sendall(b"220 bdat-relay ESMTP\r\n")
        rcpts, data, verbs = [], b"", []
        try:
            while True:
                line = f.readline()
                if not line:
                    return
                words = line.strip().split()
                verb = words[0].upper() if words else b""
                if verb == b"EHLO":
                    c.sendall(b"250-bdat-relay\r\n250-PIPELINING\r\n"
                              b"250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n"
                              b"250 CHUNKING\r\n")
                elif verb in (b"MAIL", b"RSET"):
                    rcpts, data, verbs = [], b"", [verb]
                    c.sendall(b"250 2.0.0 ok\r\n")
                elif verb == b"RCPT":
                    verbs.append(verb)
                    addr = line.split(b"<", 1)[1].split(b">", 1)[0].decode()
                    if addr == self.refuse_rcpt:
                        c.sendall(b"550 5.1.1 no such user\r\n")
                    else:
                        rcpts.append(addr)
                        c.sendall(b"250 2.1.5 ok\r\n")
                elif verb == b"BDAT":
                    verbs.append(verb)
                    data += f.read(int(words[1]))
                    if len(words) < 3 or words[2].upper() != b"LAST":
                        c.sendall(b"250 2.0.0 chunk\r\n")
                        continue
                    if not rcpts:
                        c.sendall(b"554 5.5.1 no valid recipients\r\n")
                    elif self.defer_rcpt in rcpts:
                        c.sendall(b"451 4.3.0 try later\r\n")
                    else:
                        with self.lock:
                            self.messages.append((rcpts, data, verbs))
                        c.sendall(b"250 2.0.0 queued\r\n")
                    rcpts, data = [], b""
                elif verb == b"DATA":
                    verbs.append(verb)
                    c.sendall(b"354 go ahead\r\n")
                    while True:
                        dl = f.readline()
                        if not dl or dl == b".\r\n":
                            break
                        data += dl[1:] if dl.startswith(b".") else dl
                    with self.lock:
                        self.messages.append((rcpts, data, verbs))
                    c.sendall(b"250 2.0.0 queued\r\n")
                elif verb == b"QUIT":
                    c.sendall(b"221 2.0.0 bye\r\n")
                    return
                else:
                    c.sendall(b"502 5.5.2 not implemented\r\n")
        except (OSError, ValueError, IndexError):
            return
        finally:
            c.close()

    def count(self):
        with self.lock:
            return len(self.messages)


def main():
    base = harness.tmpdir()
    srv = BdatServer("nobody@example.net", "later@example.net")
    k = harness.Kairan(base, smtp_port=srv.port)
    good = ["alice@example.net", "bob@example.org", "carol@example.jp"]
    rc, out, err = k.add_subscribers(
        good + ["nobody@example.net", "later@example.net"])
    ok(rc == 0, "subscribers imported", err)
    body = ("# 今月の脅威動向\n\n"
            + "標的型メールの新しい手口について。\n\n" * 400
            + ".\n\n.. a line of dots\n")
    rc, out, err = k.send_report(harness.report("第12号 BDAT", body))
    ok(rc == 0, "report queued", err)
    ok(harness.wait_for(lambda: srv.count() >= len(good), 30),
       "the three good subscribers' messages arrived",
       "got %d\n%s" % (srv.count(), k.logtext()))
    ok(harness.wait_for(lambda: k.counter("failed") >= 1 and
                        k.counter("deferred") >= 1, 30),
       "the 550 and the 451 got their outcomes", k.logtext())

    with srv.lock:
        msgs = list(srv.messages)
    ok(all(v.count(b"BDAT") >= 2 and b"DATA" not in v for _, _, v in msgs),
       "every message went with BDAT, none with DATA",
       [v for _, _, v in msgs])
    got = sorted(r[0] for r, _, _ in msgs)
    ok(got == sorted(good), "one message per good subscriber", got)
    whole = True
    for rcpts, data, _ in msgs:
        m = email.message_from_bytes(data, policy=email.policy.default)
        text = m.get_body(("plain",))
        whole = (whole and m["To"] is not None and
                 rcpts[0] in str(m["To"]) and
                 m["List-Unsubscribe"] is not None and
                 data.endswith(b"\r\n") and b"\r\n.\r\n" not in data[:200] and
                 text is not None and
                 "標的型メール" in text.get_content() and
                 ".. a line of dots" in text.get_content())
    ok(whole, "each message is whole: headers, body, dot lines unstuffed")
    ok(k.counter("sent") == len(good), "metrics: 3 sent",
       k.counter("sent"))
    ok(k.counter("bounced") == 1, "metrics: the 550 at RCPT is a bounce",
       k.counter("bounced"))
    ok(k.counter("deferred") >= 1, "metrics: the 451 to BDAT LAST deferred",
       k.counter("deferred"))
    rc = k.stop()
    ok(rc == 0, "kairand exits 0 on SIGTERM", rc)
    done()


if __name__ == "__main__":
    try:
        main()
    finally:
        harness.stop_all()
