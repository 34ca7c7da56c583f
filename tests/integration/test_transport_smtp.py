#!/usr/bin/python3
"""kairand delivering through the SMTP transport the way operators set it
up: STARTTLS (or implicit TLS) with a private CA (ca_file) and AUTH with
the password from password_file, to a real aiosmtpd that requires both; a
dead first relay
failing over to the second; and a refused password deferring mail instead
of failing it. The transport's own cases (5xx/4xx per recipient, drops,
dot-stuffing, wrong CA or host name) are in tests/unit/test_transport_smtp.c.
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import ok, done  # noqa: E402

PASSWORD = "kairan-test-pass 7"


def tls_material(base):
    """A test CA and a server certificate for "localhost" it signed."""
    d = os.path.join(base, "tls")
    os.makedirs(d)
    k = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes"]

    def run(*args):
        subprocess.run(["openssl"] + list(args), cwd=d, check=True,
                       capture_output=True)
    run("req", "-x509", *k, "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=kairan-it-ca")
    run("req", *k, "-keyout", "srv.key", "-out", "srv.csr",
        "-subj", "/CN=localhost")
    with open(os.path.join(d, "srv.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n"
                "extendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey",
        "ca.key", "-CAcreateserial", "-out", "srv.pem", "-days", "2",
        "-extfile", "srv.ext")
    return [os.path.join(d, n) for n in ("ca.pem", "srv.pem", "srv.key")]


def password_file(base, password):
    """The relay password in a 0600 file, as operators keep it."""
    path = os.path.join(base, "smtp.pass")
    with open(path, "w") as f:
        f.write(password + "\n")
    os.chmod(path, 0o600)
    return path


def kairan_with_relays(base, relays_yaml, smtp_port, retry=None):
    """A kairand whose smtp: section is relays_yaml."""
    k = harness.Kairan(base, smtp_port=smtp_port, start=False,
                       delivery_extra="  lease: 10s\n  batch: 20")
    with open(k.config) as f:
        text = f.read()
    if retry:
        text = text.replace("retry: [1s, 2s]", "retry: %s" % retry)
    head, sep, tail = text.partition("smtp:\n")
    # the harness' relay block is the three lines after "smtp:"
    tail = "\n".join(tail.split("\n")[3:])
    with open(k.config, "w") as f:
        f.write(head + sep + relays_yaml + tail)
    k.start()
    return k


def addrs(n, tag):
    return ["%s%03d@example.org" % (tag, i) for i in range(n)]


def test_starttls_auth_and_failover():
    base = harness.tmpdir()
    ca, cert, key = tls_material(base)
    pwfile = password_file(base, PASSWORD)
    smtp = harness.SmtpServer(base, extra=[
        "--tls-cert", cert, "--tls-key", key, "--require-starttls",
        "--auth", "kairan:" + PASSWORD])
    dead = harness.free_port()
    relays = """  - host: 127.0.0.1
    port: %d
    tls: none
  - host: localhost
    port: %d
    tls: starttls
    ca_file: %s
    user: kairan
    password_file: %s
""" % (dead, smtp.port, ca, pwfile)
    k = kairan_with_relays(base, relays, smtp.port)
    subs = addrs(30, "tls")
    rc, out, err = k.add_subscribers(subs)
    ok(rc == 0, "import 30 subscribers", out + err)
    rc, out, err = k.send_report(harness.report("暗号化配信", "本文\n"))
    ok(rc == 0, "report queued", out + err)
    ok(smtp.wait_count(30, 90),
       "all 30 arrive over STARTTLS + AUTH after relay 1 fails",
       k.logtext())
    time.sleep(1)
    counts = harness.rcpt_counts(smtp)
    ok(set(counts) == set(subs) and all(v == 1 for v in counts.values()),
       "each subscriber got exactly one copy", counts)
    ok(k.log_has("relay unusable"), "the dead relay is logged",
       k.logtext())
    with open(os.path.join(base, "kairand.log"), errors="replace") as f:
        log = f.read()
    ok(PASSWORD not in log, "the password never reaches the log")
    ok(k.stop() == 0, "SIGTERM exits 0")


def test_wrong_password_defers():
    base = harness.tmpdir()
    ca, cert, key = tls_material(base)
    pwfile = password_file(base, "not-the-password")
    smtp = harness.SmtpServer(base, extra=[
        "--tls-cert", cert, "--tls-key", key, "--require-starttls",
        "--auth", "kairan:" + PASSWORD])
    relays = """  - host: localhost
    port: %d
    tls: starttls
    ca_file: %s
    user: kairan
    password_file: %s
""" % (smtp.port, ca, pwfile)
    # a long retry schedule: what is checked is the outcome of one
    # attempt, not the retry policy
    k = kairan_with_relays(base, relays, smtp.port, retry="[1h]")
    subs = addrs(5, "pw")
    rc, out, err = k.add_subscribers(subs)
    ok(rc == 0, "import 5 subscribers", out + err)
    rc, out, err = k.send_report(harness.report("認証失敗", "本文\n"))
    ok(rc == 0, "report queued", out + err)
    ok(k.wait_log("AUTH failed", 60), "the AUTH failure is logged",
       k.logtext())
    ok(harness.wait_for(lambda: k.counter("deferred") >= 5, 30),
       "a refused password defers every message", k.metrics())
    ok(k.counter("failed") == 0 and k.counter("bounced") == 0,
       "and fails or bounces none", k.metrics())
    ok(smtp.log() == [], "nothing was delivered without AUTH")
    ok(k.stop() == 0, "SIGTERM exits 0")


def test_implicit_tls_auth():
    """tls: tls (port 465 style): TLS from the first byte, then AUTH."""
    base = harness.tmpdir()
    ca, cert, key = tls_material(base)
    pwfile = password_file(base, PASSWORD)
    smtp = harness.SmtpServer(base, extra=[
        "--tls-cert", cert, "--tls-key", key, "--implicit-tls",
        "--auth", "kairan:" + PASSWORD])
    relays = """  - host: localhost
    port: %d
    tls: tls
    ca_file: %s
    user: kairan
    password_file: %s
""" % (smtp.port, ca, pwfile)
    k = kairan_with_relays(base, relays, smtp.port)
    subs = addrs(30, "tls465")
    rc, out, err = k.add_subscribers(subs)
    ok(rc == 0, "import 30 subscribers", out + err)
    rc, out, err = k.send_report(harness.report("暗号化配信 465", "本文\n"))
    ok(rc == 0, "report queued", out + err)
    ok(smtp.wait_count(30, 90),
       "all 30 arrive over implicit TLS + AUTH", k.logtext())
    time.sleep(1)
    counts = harness.rcpt_counts(smtp)
    ok(set(counts) == set(subs) and all(v == 1 for v in counts.values()),
       "each subscriber got exactly one copy", counts)
    ok(not k.log_has("relay unusable"), "the relay was never unusable",
       k.logtext())
    ok(k.stop() == 0, "SIGTERM exits 0")


if __name__ == "__main__":
    test_starttls_auth_and_failover()
    test_wrong_password_defers()
    test_implicit_tls_auth()
    done()
