#!/usr/bin/python3
"""A real SMTP server for the integration tests, on aiosmtpd.

Every accepted message is written to DIR/<n>.eml and one JSON line is
appended to DIR/log.jsonl: {"n", "mail_from", "rcpt", "size", "time"}.
With TLS, the server name (SNI) each client sent is appended to
DIR/sni.txt ("None" when it sent none).

Behaviour is steered by a JSON rules file (re-read on every command, so a
test can change it while the server runs):
  {"mail": {"addr@x": "553 5.7.1 sender rejected", ...}, # MAIL answers
   "rcpt": {"addr@x": "550 5.1.1 no such user", ...},   # RCPT answers
   "data": {"addr@x": "451 4.3.0 try later", ...},      # answers to DATA end
   "drop_data": ["addr@x"],        # close the connection at the end of DATA
                                   # (the whole message came, no reply)
   "drop_at_data": ["addr@x"],     # close the connection on the DATA
                                   # command (no message sent)
   "drop_mid_data": ["addr@x"],    # answer 354 to DATA, then close (the
                                   # message body never arrives)
   "hang_data": ["addr@x"],        # take the whole message, never reply
   "connect": "421 4.7.0 busy",    # answer to every new connection
   "greeting_host": "a\u0000b",    # the name the greeting gives
   "hang": false}                  # accept but never answer

Usage: smtp_server.py --port P --dir DIR [--rules FILE] [--log-only] [--tls-cert C
       --tls-key K] [--require-starttls] [--auth USER:PASS] [--implicit-tls]
       [--tls13-only] [--pipelining] [--cork] [--discard-pipelined]
       [--starttls-inject]
--pipelining: offer PIPELINING (RFC 2920) in the EHLO reply (aiosmtpd
reads pipelined commands in order anyway, but does not say so).
--cork: the replies to commands that came in one burst leave in one write
(as a busy relay's often do; aiosmtpd otherwise writes each at once), so
a client reads several replies at a time.
--discard-pipelined: what a client sent behind the end of a message's data
is thrown away unread (a relay that mishandles RFC 2920 pipelining).
--starttls-inject: plain text follows the 220 to STARTTLS in the same
write (what a man in the middle would smuggle into the TLS session).
Prints "READY" on stdout once listening.
"""
import argparse
import asyncio
import json
import os
import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def load_rules(path):
    if not path:
        return {}
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


class Handler:
    def __init__(self, outdir, rules_path, store=True, pipelining=False):
        self.pipelining = pipelining
        self.outdir = outdir
        self.store = store
        self.rules_path = rules_path
        # A restart on the same folder (relay down, then back) goes on
        # numbering after the messages already there.
        self.n = 0
        try:
            with open(os.path.join(outdir, "log.jsonl")) as f:
                self.n = sum(1 for line in f if line.strip())
        except OSError:
            pass
        self.log = open(os.path.join(outdir, "log.jsonl"), "a", buffering=1)

    def rules(self):
        return load_rules(self.rules_path)

    async def handle_EHLO(self, server, session, envelope, hostname,
                          responses):
        session.host_name = hostname
        if self.pipelining:
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server, session, envelope, address,
                          mail_options):
        ans = self.rules().get("mail", {}).get((address or "").lower())
        if ans:
            return ans
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, options):
        ans = self.rules().get("rcpt", {}).get(address.lower())
        if ans:
            return ans
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        r = self.rules()
        for rc in envelope.rcpt_tos:
            if rc.lower() in r.get("hang_data", []):
                await asyncio.sleep(3600)
                return "451 4.3.0 too late"
            if rc.lower() in r.get("drop_data", []):
                server.transport.close()
                return "421 4.4.2 closing"
            ans = r.get("data", {}).get(rc.lower())
            if ans:
                return ans
        self.n += 1
        n = self.n
        if self.store:
            path = os.path.join(self.outdir, "%d.eml" % n)
            with open(path + ".tmp", "wb") as f:
                f.write(envelope.original_content or envelope.content)
            os.rename(path + ".tmp", path)
        self.log.write(json.dumps({
            "n": n, "mail_from": envelope.mail_from,
            "rcpt": envelope.rcpt_tos, "size": len(envelope.content),
            "time": time.time()}) + "\n")
        return "250 2.0.0 Ok: queued as T%08d" % n


class RuleSMTP(SMTP):
    """Adds connect-time rules (421 greeting, hang) and --cork."""

    cork = False
    discard_pipelined = False
    starttls_inject = False

    async def push(self, status):
        if isinstance(status, str):
            status = status.encode("utf-8")
        pending = getattr(self, "_corked", None)
        if pending is None:
            pending = self._corked = []
        # Greetings, STARTTLS's go-ahead, goodbyes and 421s are followed
        # by a change of the connection: they (and what waits) go now.
        if self.starttls_inject and status.startswith(b"220 Ready"):
            status += b"\r\n250 2.0.0 smuggled"
        if not self.cork or status[:3] in (b"220", b"221", b"421"):
            self._uncork()
            return await super().push(status)
        pending.append(status + b"\r\n")
        if len(pending) == 1:
            # after every command already read has been answered
            asyncio.get_running_loop().call_soon(self._uncork)

    def _uncork(self):
        data = b"".join(getattr(self, "_corked", []))
        if not data:
            return
        self._corked.clear()
        if self.transport is not None and not self.transport.is_closing():
            self._writer.write(data)

    async def _handle_client(self):
        r = load_rules(self.event_handler.rules_path)
        if r.get("hang"):
            await asyncio.sleep(3600)
            return
        if r.get("connect"):
            await self.push(r["connect"])
            self.transport.close()
            return
        if r.get("greeting_host"):  # the name in "220 NAME ...", any bytes
            self.hostname = r["greeting_host"]
        await super()._handle_client()

    async def smtp_DATA(self, arg):
        r = load_rules(self.event_handler.rules_path)
        rcpts = [rc.lower() for rc in self.envelope.rcpt_tos] \
            if self.envelope is not None else []
        if any(rc in r.get("drop_at_data", []) for rc in rcpts):
            self.transport.close()
            return
        if any(rc in r.get("drop_mid_data", []) for rc in rcpts):
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            self.transport.close()
            return
        await super().smtp_DATA(arg)
        if self.discard_pipelined and self._reader is not None:
            self._reader._buffer.clear()


class RuleController(Controller):
    cork = False
    discard_pipelined = False
    starttls_inject = False

    def __init__(self, *a, smtp_kwargs=None, **kw):
        self._smtp_kwargs = smtp_kwargs or {}
        super().__init__(*a, **kw)

    cork = False

    def factory(self):
        smtp = RuleSMTP(self.handler, **self._smtp_kwargs)
        smtp.cork = self.cork
        smtp.discard_pipelined = self.discard_pipelined
        smtp.starttls_inject = self.starttls_inject
        return smtp


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--rules")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--require-starttls", action="store_true")
    ap.add_argument("--implicit-tls", action="store_true")
    ap.add_argument("--tls13-only", action="store_true")
    ap.add_argument("--auth")
    ap.add_argument("--pipelining", action="store_true")
    ap.add_argument("--cork", action="store_true")
    ap.add_argument("--discard-pipelined", action="store_true")
    ap.add_argument("--starttls-inject", action="store_true")
    ap.add_argument("--log-only", action="store_true",
                    help="log.jsonl only, no .eml files (soak runs)")
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    handler = Handler(a.dir, a.rules, store=not a.log_only,
                      pipelining=a.pipelining)
    kw = {"data_size_limit": 64 * 1024 * 1024, "enable_SMTPUTF8": True}
    ctx = None
    if a.tls_cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.tls_cert, a.tls_key)
        if a.tls13_only:
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3

        def sni(sslobj, name, _ctx):
            # the server name each TLS client asked for, one per line
            with open(os.path.join(a.dir, "sni.txt"), "a") as f:
                f.write("%s\n" % name)
        ctx.sni_callback = sni
    if ctx and not a.implicit_tls:
        kw["tls_context"] = ctx
        kw["require_starttls"] = a.require_starttls
    if a.auth:
        user, pw = a.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (isinstance(auth_data, LoginPassword)
                  and auth_data.login.decode() == user
                  and auth_data.password.decode() == pw)
            return AuthResult(success=ok, handled=False)
        kw["authenticator"] = authenticator
        kw["auth_required"] = True
        # implicit TLS is TLS, but aiosmtpd only knows of STARTTLS
        kw["auth_require_tls"] = not a.implicit_tls
    ckw = {}
    if ctx and a.implicit_tls:
        ckw["ssl_context"] = ctx
    c = RuleController(handler, hostname="127.0.0.1", port=a.port,
                       smtp_kwargs=kw, **ckw)
    c.cork = a.cork
    c.discard_pipelined = a.discard_pipelined
    c.starttls_inject = a.starttls_inject
    c.start()
    print("READY", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        c.stop()


if __name__ == "__main__":
    sys.exit(main())
