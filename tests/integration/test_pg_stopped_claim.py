#!/usr/bin/env python3
"""A kairand host that stops in the middle of a claim on PostgreSQL (a
SIGSTOP, a frozen VM) must not hold the rows it was claiming for longer
than its lease: the claim took them FOR UPDATE, and every other host's
SKIP LOCKED passes over locked rows. Host B reaches the database through
a proxy that, once armed, withholds the COMMIT of B's next claim (after
its SELECT ... FOR UPDATE SKIP LOCKED): to the server that is
a client stopped inside the transaction with the locks held. Host A,
connected directly, must still send every copy, and the server must end
B's stuck session within about the lease; B then reconnects by itself."""
import os
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pg  # noqa: E402
from harness import (Kairan, SmtpServer, done, ok,  # noqa: E402
                     rcpt_counts, report, tmpdir, wait_for)

if not pg.available():
    ok(False, "PostgreSQL 15 is installed (make deps)")
    done()


class FreezeProxy:
    """TCP proxy to PostgreSQL that reads the client's messages (protocol
    3.0) and, when armed, holds back a claim's COMMIT for good."""

    def __init__(self, target_port):
        self.target = target_port
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(64)
        self.port = self.ls.getsockname()[1]
        self.armed = False
        self.frozen = threading.Event()   # a COMMIT is held back
        self.ended = threading.Event()    # ... and the server hung up
        self.frozen_at = self.ended_at = None
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            c, _ = self.ls.accept()
            s = socket.create_connection(("127.0.0.1", self.target))
            st = {"hold": False}
            threading.Thread(target=self._up, args=(c, s, st),
                             daemon=True).start()
            threading.Thread(target=self._down, args=(s, c, st),
                             daemon=True).start()

    @staticmethod
    def _read(sock, n):
        b = b""
        while len(b) < n:
            x = sock.recv(n - len(b))
            if not x:
                raise EOFError
            b += x
        return b

    def _up(self, c, s, st):
        in_claim = False
        claims = set()  # names of the prepared claim statements
        try:
            typed = False
            while True:
                if not typed:  # SSLRequest / GSSENCRequest, then startup
                    head = self._read(c, 4)
                    body = self._read(c, struct.unpack("!I", head)[0] - 4)
                    code = struct.unpack("!I", body[:4])[0]
                    typed = code == 196608
                    s.sendall(head + body)
                    continue
                t = self._read(c, 1)
                head = self._read(c, 4)
                body = self._read(c, struct.unpack("!I", head)[0] - 4)
                if t in (b"P", b"Q") and b"SKIP LOCKED" in body:
                    in_claim = True  # a claim's SELECT ... FOR UPDATE
                    if t == b"P":  # prepared: later only bound by name
                        claims.add(body.split(b"\0", 1)[0])
                elif t == b"B" and body.split(b"\0", 2)[1] in claims:
                    in_claim = True
                elif t == b"Q":
                    sql = body.rstrip(b"\0").strip()
                    if sql.startswith(b"COMMIT") and in_claim and \
                            self.armed:
                        self.armed = False
                        st["hold"] = True
                        self.frozen_at = time.monotonic()
                        self.frozen.set()
                        return  # never forwarded; c stays open
                    elif sql.startswith((b"COMMIT", b"ROLLBACK")):
                        in_claim = False
                s.sendall(t + head + body)
        except (EOFError, OSError):
            pass
        if not st["hold"]:
            for x in (c, s):
                try:
                    x.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _down(self, s, c, st):
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                c.sendall(b)
        except OSError:
            pass
        if st["hold"]:
            self.ended_at = time.monotonic()
            self.ended.set()
        for x in (c, s):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


base = tmpdir()
srv = pg.Server()
srv.createdb("news")
proxy = FreezeProxy(srv.port)
key = os.path.join(base, "token.key")
smtp = SmtpServer(base)
LEASE = 10
dx = "  workers: 2\n  batch: 10\n  lease: %ds\n  retry: [1s, 2s]\n" % LEASE
LISTS = """
  - id: phase
    name: SIPS 速報
    from: "SIPS Flash <flash@news.example.jp>"
    double_opt_in: true
    language: ja
    footer: |
      株式会社Example 東京都千代田区 / 配信停止: {{unsubscribe_url}}
"""


def host(name, port):
    d = os.path.join(base, name)
    os.makedirs(d, exist_ok=True)
    db = "{host: 127.0.0.1, port: %d, dbname: news, user: kairan, " \
         "password_file: %s}" % (port, srv.password_file)
    return Kairan(d, smtp_port=smtp.port, database=db, key_file=key,
                  extra="host_id: %s\n" % name, delivery_extra=dx,
                  lists=LISTS)


b = host("host-b", proxy.port)
N = 600
rc, out, err = b.add_subscribers(["p%04d@example.jp" % i for i in range(N)],
                                 "phase")
ok(rc == 0, "import %d subscribers through host B (via the proxy)" % N, err)
a = host("host-a", srv.port)

proxy.armed = True
rc, out, err = b.send_report(report("止まった", "本文", "phase"), "r.md")
ok(rc == 0, "report queued", (rc, out, err))
ok(proxy.frozen.wait(60),
   "host B's claim is held before its COMMIT (a host stopped inside it)")
locked = srv.psql("news", "SELECT count(*) FROM pg_stat_activity WHERE "
                  "state = 'idle in transaction'").strip()
ok(locked == "1", "the server sees one session idle in its transaction",
   locked)
ok(smtp.wait_count(N, 120), "host A sends every copy meanwhile",
   (len(smtp.log()), N))
counts = rcpt_counts(smtp)
ok(len(counts) == N, "every subscriber got the report", len(counts))
ok(proxy.ended.wait(LEASE + 20),
   "the server ended the stuck session after about the lease")
if proxy.ended_at and proxy.frozen_at:
    took = proxy.ended_at - proxy.frozen_at
    ok(LEASE - 1 <= took <= LEASE + 20,
       "... %.1f s after it stopped (lease %d s)" % (took, LEASE), took)
ok(wait_for(lambda: srv.psql(
        "news", "SELECT count(*) FROM deliveries WHERE state <> 1").strip()
        == "0", 60),
   "every row is recorded sent")
ok(b.wait_log("connected again", 30), "host B notices and reconnects",
   b.logtext()[-1500:])
ok(b.proc.alive(), "host B is still running")
done()
