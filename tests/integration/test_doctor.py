#!/usr/bin/python3
"""kairanctl doctor against a real authoritative DNS server
(dns_server.py on 127.0.0.1 and a free port, dns.resolver pointing at it):
a correct zone gives only "ok"; each broken zone is named with its fix; a
server that never answers gives "warn" within the timeout. The relay
checks against the test SMTP server with STARTTLS, implicit TLS, an
untrusted certificate, plain text with and without STARTTLS offered. The
one-click check against a small HTTPS server of the test's."""
import base64
import http.server
import json
import os
import shutil
import ssl
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import HERE, KAIRANCTL, ok  # noqa: E402
from test_transport_smtp import tls_material  # noqa: E402

EGRESS = "192.0.2.25"
FROM_DOM = "news.example.jp"
BOUNCE = "bounces.news.example.jp"


def zone_records(text):
    out = {}
    import re
    for line in text.splitlines():
        if not line or line.startswith(";"):
            continue
        name = line.split()[0].rstrip(".")
        out[name] = re.findall(r'"([^"]*)"', line)
    return out


class Dns:
    def __init__(self, base, silent=False):
        self.port = harness.free_port()
        self.records = os.path.join(base, "zone-%d.json" % self.port)
        self.set({})
        ready = os.path.join(base, "dns-%d.ready" % self.port)
        argv = ["/usr/bin/python3", os.path.join(HERE, "dns_server.py"),
                "--records", self.records, "--ready", ready, "--port",
                str(self.port)]
        if silent:
            argv.append("--silent")
        self.proc = harness.Proc(argv, log=os.path.join(base, "dns.log"))
        if not harness.wait_for(lambda: os.path.exists(ready), 15):
            raise RuntimeError("dns server did not start")

    def set(self, zone):
        tmp = self.records + ".tmp"
        with open(tmp, "w") as f:
            json.dump(zone, f)
        os.rename(tmp, self.records)
        # the server re-reads on a new mtime: make sure it is new
        t = time.time() + 0.01
        os.utime(self.records, (t, t))
        time.sleep(0.02)


class OneClick(http.server.BaseHTTPRequestHandler):
    posts = []

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n).decode()
        OneClick.posts.append((self.path, body))
        code = 200 if body == "List-Unsubscribe=One-Click" else 400
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


def https_server(cert, key):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), OneClick)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv.server_address[1]


def main():
    base = harness.tmpdir()
    ca, cert, key = tls_material(base)
    keys = os.path.join(base, "keys")
    os.makedirs(keys)
    p = subprocess.run([KAIRANCTL, "dkim", "keygen", "--domain", FROM_DOM,
                        "--selector", "k2026", "--dir", keys],
                       capture_output=True, check=True)
    z = zone_records(p.stdout.decode())
    rsa_name = "k2026-rsa._domainkey." + FROM_DOM
    ed_name = "k2026-ed25519._domainkey." + FROM_DOM
    p = subprocess.run([KAIRANCTL, "dkim", "keygen", "--domain", FROM_DOM,
                        "--selector", "other", "--dir", keys],
                       capture_output=True, check=True)
    other = zone_records(p.stdout.decode())["other-rsa._domainkey." +
                                            FROM_DOM]
    small = os.path.join(keys, "small-rsa.key")
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                    "rsa_keygen_bits:512", "-out", small], check=True,
                   capture_output=True)
    os.chmod(small, 0o600)
    keyf = os.path.join(base, "token.key")
    with open(keyf, "w") as f:
        f.write("1 1700000000 %s\n" %
                base64.b64encode(os.urandom(32)).decode())
    os.chmod(keyf, 0o600)

    dns = Dns(base)
    smtp = harness.SmtpServer(base, extra=["--tls-cert", cert, "--tls-key",
                                           key, "--require-starttls"])
    web_port = https_server(cert, key)

    sender_ok = ("sender:\n  name: 株式会社サンプル\n"
                 "  address: 〒100-0001 東京都千代田区千代田1-1\n"
                 "  contact: info@example.jp\n")

    def config(rsa_key=os.path.join(keys, "k2026-rsa.key"),
               dkim_domain=FROM_DOM, bounce=BOUNCE, relays=None,
               resolver=None, timeout="2s", sender=sender_ok, extra="",
               public="https://localhost:%d" % web_port, key_file=keyf):
        relays = relays or ("  - host: localhost\n    port: %d\n"
                            "    tls: starttls\n    ca_file: %s\n" %
                            (smtp.port, ca))
        text = """database: {base}/kairan.db
key_file: {keyf}
public_url: {public}
{sender}{extra}lists:
  - id: news
    name: Example News
    from: "Example News <report@{from_dom}>"
    reply_to: info@example.jp
    dkim:
      domain: {dkim_domain}
      rsa: {{selector: k2026-rsa, key_file: {rsa}}}
      ed25519: {{selector: k2026-ed25519, key_file: {ed}}}
delivery:
  transport: smtp
  bounce_domain: {bounce}
smtp:
{relays}doctor:
  egress: [{egress}]
  ca_file: {ca}
dns:
  resolver: {resolver}
  timeout: {timeout}
""".format(base=base, keyf=key_file, public=public, from_dom=FROM_DOM,
           dkim_domain=dkim_domain, rsa=rsa_key,
           ed=os.path.join(keys, "k2026-ed25519.key"), bounce=bounce,
           relays=relays, egress=EGRESS, ca=ca,
           resolver=resolver or "127.0.0.1:%d" % dns.port, timeout=timeout,
           sender=sender, extra=extra)
        path = os.path.join(base, "kairan.yaml")
        with open(path, "w") as f:
            f.write(text)
        return path

    def doctor(conf, *extra):
        t0 = time.time()
        p = subprocess.run([KAIRANCTL, "--config", conf, "doctor"] +
                           list(extra), capture_output=True, timeout=120)
        return (p.returncode, p.stdout.decode(), p.stderr.decode(),
                time.time() - t0)

    def fails(out):
        return [line for line in out.splitlines() if line.startswith("fail")]

    good = {
        BOUNCE: {"TXT": ["v=spf1 include:_spf.%s -all" % FROM_DOM],
                 "MX": ["10 mx.%s." % FROM_DOM]},
        "_spf." + FROM_DOM: {"TXT": ["v=spf1 ip4:192.0.2.0/24 -all"]},
        FROM_DOM: {"TXT": ["v=spf1 ip4:%s -all" % EGRESS],
                   "MX": ["10 mx.%s." % FROM_DOM]},
        "mx." + FROM_DOM: {"A": [EGRESS]},
        "example.jp": {"MX": ["10 mx.example.jp."]},
        "_dmarc." + FROM_DOM: {"TXT": ["v=DMARC1; p=none; "
                                       "rua=mailto:d@example.jp"]},
        "25.2.0.192.in-addr.arpa": {"PTR": ["mail.%s." % FROM_DOM]},
        "mail." + FROM_DOM: {"A": [EGRESS]},
        rsa_name: {"TXT": [z[rsa_name]]},
        ed_name: {"TXT": [z[ed_name]]},
    }

    def broken(**changes):
        zz = json.loads(json.dumps(good))
        for name, v in changes.items():
            name = name.replace("__", ".")
            if v is None:
                zz.pop(name, None)
            else:
                zz[name] = v
        return zz

    conf = config()
    dns.set(good)
    rc, out, err, _ = doctor(conf)
    lines = out.splitlines()
    ok(rc == 0 and lines and all(line.startswith("ok ") for line in lines)
       and len(lines) >= 11,
       "a correct zone: only ok lines, exit 0", (rc, out, err))
    for what in ("spf: %s authorises %s" % (BOUNCE, EGRESS),
                 "dkim: %s matches" % rsa_name,
                 "dkim: %s matches" % ed_name,
                 "dmarc: _dmarc.%s p=none, aligned" % FROM_DOM,
                 "ptr: %s -> mail.%s -> %s" % (EGRESS, FROM_DOM, EGRESS),
                 "mx: %s (bounce_domain) has MX" % BOUNCE,
                 "mx: %s (From) has MX" % FROM_DOM,
                 "mx: example.jp (Reply-To) has MX",
                 "relay: localhost:%d: TLS" % smtp.port,
                 "headers: a dry-run copy has List-Unsubscribe",
                 "law: every mail shows the sender (株式会社サンプル), the "
                 "postal address, the contact and how to stop; consent "
                 "records are kept 31 days",
                 "one-click: a one-click POST"):
        ok(what in out, "ok line: " + what, out)
    ok(OneClick.posts and OneClick.posts[-1][1] ==
       "List-Unsubscribe=One-Click" and "t=" in OneClick.posts[-1][0],
       "the one-click check POSTs List-Unsubscribe=One-Click with a token",
       OneClick.posts)
    rc, out, err, _ = doctor(conf, "--json")
    try:
        js = json.loads(out)
    except ValueError:
        js = None
    ok(rc == 0 and js and all(e["status"] == "ok" for e in js) and
       {"list", "check", "status", "message"} <= set(js[0]),
       "--json: an array of {list, check, status, message}", out)

    cases = [
        ("SPF without the egress IP",
         broken(_spf__news__example__jp={"TXT": ["v=spf1 ip4:198.51.100.0/24"
                                                 " -all"]}),
         "fail news spf: %s does not authorise %s (SPF fail): publish "
         "%s. IN TXT \"v=spf1 ip4:%s include:_spf.%s -all\"" %
         (BOUNCE, EGRESS, BOUNCE, EGRESS, FROM_DOM)),
        ("SPF with 11 lookups",
         dict(broken(**{BOUNCE.replace(".", "__"): {
             "TXT": ["v=spf1 ip4:%s " % EGRESS +
                     " ".join("include:i%d.%s" % (i, FROM_DOM)
                              for i in range(11)) + " -all"],
             "MX": ["10 mx.%s." % FROM_DOM]}}),
             **{"i%d.%s" % (i, FROM_DOM): {"TXT": ["v=spf1 -all"]}
                for i in range(11)}),
         "more than 10 DNS lookups"),
        ("a DKIM key that does not match",
         broken(**{rsa_name.replace(".", "__"): {"TXT": [other]}}),
         "fail news dkim: %s does not match the key kairan signs with "
         "(the record's p= is another key than the key file's): publish "
         "%s. IN TXT" % (rsa_name, rsa_name)),
        ("no DKIM record",
         broken(**{ed_name.replace(".", "__"): None}),
         "fail news dkim: %s: no DKIM key published: publish %s. IN TXT"
         % (ed_name, ed_name)),
        ("no DMARC",
         broken(_dmarc__news__example__jp=None),
         "fail news dmarc: no DMARC record at _dmarc.%s (nor at "
         "_dmarc.example.jp): publish _dmarc.%s. IN TXT \"v=DMARC1; p=none"
         % (FROM_DOM, FROM_DOM)),
        ("DMARC with a bad p=",
         broken(_dmarc__news__example__jp={"TXT": ["v=DMARC1; p=maybe"]}),
         "p=maybe is not none, quarantine or reject"),
        ("no PTR",
         broken(**{"25.2.0.192.in-addr.arpa".replace(".", "__"): None}),
         "fail - ptr: %s has no reverse DNS: have the address's owner "
         "publish 25.2.0.192.in-addr.arpa. IN PTR" % EGRESS),
        ("a PTR that does not confirm forward",
         broken(mail__news__example__jp={"A": ["192.0.2.99"]}),
         "fail - ptr: %s has PTR mail.%s, but mail.%s does not resolve "
         "back to %s: publish mail.%s. IN A %s" %
         (EGRESS, FROM_DOM, FROM_DOM, EGRESS, FROM_DOM, EGRESS)),
        ("no MX for bounce_domain",
         broken(**{BOUNCE.replace(".", "__"): {
             "TXT": ["v=spf1 include:_spf.%s -all" % FROM_DOM]}}),
         "fail news mx: %s (bounce_domain) has no MX and no A: replies and "
         "bounces to it are lost, and receivers refuse senders without one: "
         "publish %s. IN MX 10 mx.%s." % (BOUNCE, BOUNCE, BOUNCE)),
        ("no SPF record",
         broken(**{BOUNCE.replace(".", "__"): {
             "MX": ["10 mx.%s." % FROM_DOM]}}),
         "fail news spf: %s has no SPF record: publish %s. IN TXT "
         "\"v=spf1 ip4:%s -all\"" % (BOUNCE, BOUNCE, EGRESS)),
    ]
    for name, zone, want in cases:
        dns.set(zone)
        rc, out, err, _ = doctor(conf)
        f = fails(out)
        ok(rc == 1 and len(f) == 1 and want in out,
           "%s: named with its fix, exit 1" % name, (rc, out, err))
    dns.set(good)

    # RSA 512: the key file itself
    conf = config(rsa_key=small)
    rc, out, err, _ = doctor(conf)
    ok(rc == 1 and "RSA key of 512 bits" in out and
       "kairanctl dkim keygen" in out,
       "an RSA 512 key: named, with keygen as the fix", (rc, out, err))
    # a published RSA 512 key (the key file is good)
    p = subprocess.run(["openssl", "pkey", "-in", small, "-pubout",
                        "-outform", "DER"], capture_output=True, check=True)
    pub512 = "v=DKIM1; k=rsa; p=" + base64.b64encode(p.stdout).decode()
    conf = config()
    dns.set(broken(**{rsa_name.replace(".", "__"): {"TXT": [pub512]}}))
    rc, out, err, _ = doctor(conf)
    ok(rc == 1 and "the published RSA key has 512 bits" in out,
       "a published RSA 512 key: named", (rc, out, err))

    # 特定電子メール法: no sender block (an en list: warn), a contact no
    # one can use (warn); consent.retention under 31d is a config error
    dns.set(good)
    rc, out, err, _ = doctor(config(sender=""))
    ok(rc == 0 and "warn news law: no sender name: mail to readers in "
       "Japan must show the sender's name, a postal address and a contact "
       "(特定電子メール法 Article 4); add sender:" in out and not fails(out),
       "no sender block on an en list: a warn naming Article 4", out)
    rc, out, err, _ = doctor(config(sender=sender_ok.replace(
        "info@example.jp", "ask at the front desk")))
    ok(rc == 0 and "warn news law: sender contact 'ask at the front desk' "
       "is neither a mail address" in out,
       "a contact that is no address, URL or number: warn", out)
    rc, out, err, _ = doctor(config(sender=sender_ok.replace(
        "info@example.jp", "+81 3-1234-5678")))
    ok(rc == 0 and "ok   news law:" in out, "a telephone number will do",
       out)
    rc, out, err, _ = doctor(config(extra="consent:\n  retention: 365d\n"))
    ok(rc == 0 and "consent records are kept 365 days after the last mail"
       in out, "the law line says the retention in force", out)

    # DMARC not aligned: DKIM d= and the envelope domain elsewhere
    dns.set(dict(good, **{
        "k2026-rsa._domainkey.sender.example.net": {"TXT": [z[rsa_name]]},
        "k2026-ed25519._domainkey.sender.example.net":
            {"TXT": [z[ed_name]]},
        "bounces.sender.example.net": {
            "TXT": ["v=spf1 ip4:%s -all" % EGRESS],
            "MX": ["10 mx.%s." % FROM_DOM]}}))
    conf = config(dkim_domain="sender.example.net",
                  bounce="bounces.sender.example.net")
    rc, out, err, _ = doctor(conf)
    ok(rc == 1 and len(fails(out)) == 1 and
       "fail news dmarc: _dmarc.%s (p=none) is not aligned with From %s: "
       "DKIM d=sender.example.net and the envelope domain "
       "bounces.sender.example.net are both outside example.jp" %
       (FROM_DOM, FROM_DOM) in out,
       "DMARC for another domain than DKIM's and SPF's: not aligned",
       (rc, out, err))

    # relays: implicit TLS, untrusted certificate, plain with and
    # without STARTTLS, nobody there
    dns.set(good)
    tls_srv = harness.SmtpServer(base, extra=["--tls-cert", cert,
                                              "--tls-key", key,
                                              "--implicit-tls"])
    plain = harness.SmtpServer(base)
    offers = harness.SmtpServer(base, extra=["--tls-cert", cert,
                                             "--tls-key", key])
    dead = harness.free_port()
    relays = ("  - {host: localhost, port: %d, tls: tls, ca_file: %s}\n"
              "  - {host: localhost, port: %d, tls: starttls}\n"
              "  - {host: 127.0.0.1, port: %d, tls: none}\n"
              "  - {host: localhost, port: %d, tls: none}\n"
              "  - {host: localhost, port: %d, tls: starttls, "
              "ca_file: %s}\n" %
              (tls_srv.port, ca, smtp.port, plain.port, offers.port, dead,
               ca))
    conf = config(relays=relays)
    rc, out, err, _ = doctor(conf)
    rl = [line for line in out.splitlines() if " relay: " in line]
    ok(len(rl) == 5, "one line per relay", out)
    if len(rl) == 5:
        ok(rl[0].startswith("ok   - relay: localhost:%d: TLS" % tls_srv.port)
           and "certificate verified for localhost" in rl[0],
           "implicit TLS: ok, certificate verified", rl[0])
        ok(rl[1].startswith("fail") and "certificate verify failed" in rl[1],
           "STARTTLS with a certificate of an unknown CA: fail", rl[1])
        ok(rl[2].startswith("warn") and "no STARTTLS offered" in rl[2] and
           "a local relay" in rl[2],
           "a local plain relay without STARTTLS: warn", rl[2])
        ok(rl[3].startswith("fail") and "offers STARTTLS" in rl[3] and
           "set tls: starttls" in rl[3],
           "a relay that offers STARTTLS used in plain text: fail", rl[3])
        ok(rl[4].startswith("fail") and "localhost:%d" % dead in rl[4],
           "a relay nobody answers at: fail", rl[4])

    # a DNS server that never answers: warn, naming it, within bounds
    silent = Dns(base, silent=True)
    conf = config(resolver="127.0.0.1:%d" % silent.port, timeout="1s")
    rc, out, err, took = doctor(conf)
    warns = [line for line in out.splitlines() if line.startswith("warn")]
    ok(rc == 0 and len(warns) >= 5 and
       all("127.0.0.1:%d" % silent.port in w for w in warns) and
       "no answer from 127.0.0.1:%d within 1 s" % silent.port in out,
       "a DNS server that never answers: warn naming it, exit 0",
       (rc, out, err))
    ok(took < 30, "... and it does not hang (%.1f s)" % took, took)
    p = subprocess.run([KAIRANCTL, "--config", conf, "doctor", "--list",
                        "nope"], capture_output=True, timeout=60)
    ok(p.returncode == 2 and b"no list 'nope'" in p.stderr,
       "--list with an unknown list: exit 2", p.stderr)
    dns.set(good)
    behind_nginx(base, cert, key, config, doctor)
    harness.done()


def behind_nginx(base, cert, key, config, doctor):
    """The one-click check end to end: a real kairand behind nginx
    terminating TLS (the way README's deployment has it); doctor's test
    token (subscriber 0) gets 200 from kairand itself and changes
    nothing."""
    if not os.path.exists("/usr/sbin/nginx"):
        ok(False, "nginx is installed (make deps installs nginx-light)")
        return
    http_port, admin_port, port = (harness.free_port(),
                                   harness.free_port(), harness.free_port())
    # kairand runs on the very config doctor reads, as in production.
    kconf = config(public="https://localhost:%d" % port,
                   extra="http:\n  listen: 127.0.0.1:%d\n"
                         "  trusted_proxies: [127.0.0.1]\n"
                         "admin:\n  listen: 127.0.0.1:%d\n" %
                         (http_port, admin_port))
    shutil.copy(kconf, kconf + ".kairand")
    kd = harness.Proc([harness.KAIRAND, "--config", kconf + ".kairand"],
                      log=os.path.join(base, "kairand-nginx.log"))
    ok(harness.wait_port(http_port, 20) and harness.wait_port(admin_port, 10),
       "behind nginx: kairand runs on doctor's config",
       open(os.path.join(base, "kairand-nginx.log")).read()[-2000:])
    rc = subprocess.run([KAIRANCTL, "--config", kconf, "subscribers", "add",
                         "reader@example.org", "--list", "news",
                         "--confirmed"], capture_output=True)
    ok(rc.returncode == 0, "one confirmed subscriber", rc.stderr)
    nb = os.path.join(base, "nginx")
    os.makedirs(nb)
    os.chmod(nb, 0o755)
    conf = os.path.join(nb, "nginx.conf")
    with open(conf, "w") as f:
        f.write("""worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
  access_log {d}/access.log;
  client_body_temp_path {d}; proxy_temp_path {d};
  fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};
  server {{
    listen 127.0.0.1:{port} ssl;
    server_name localhost;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    location / {{
      proxy_pass http://127.0.0.1:{http};
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header Host $host;
    }}
  }}
}}
""".format(d=nb, port=port, cert=cert, key=key, http=http_port))
    ngx = harness.Proc(["/usr/sbin/nginx", "-c", conf, "-g", "daemon off;"],
                       log=os.path.join(nb, "stderr.log"))
    ok(harness.wait_port(port, 10), "nginx listens with TLS in front of it",
       open(os.path.join(nb, "stderr.log")).read()[-2000:])
    rc, out, err, _ = doctor(kconf)
    line = [x for x in out.splitlines() if " one-click: " in x]
    ok(line and line[0].startswith("ok   - one-click: a one-click POST "
                                   "(RFC 8058) with a test token answered "
                                   "200"),
       "doctor's one-click POST through nginx to kairand: 200",
       (rc, out, err))
    with open(os.path.join(nb, "access.log")) as f:
        acc = f.read()
    ok('"POST /unsubscribe?t=' in acc and '" 200 ' in acc,
       "nginx saw the POST and kairand's 200", acc[-1000:])
    p = subprocess.run([KAIRANCTL, "--config", kconf, "subscribers", "list"],
                       capture_output=True, text=True)
    ok(p.returncode == 0 and "\tactive\t" in p.stdout and
       p.stdout.count("\n") == 1,
       "the test token changed nothing: the subscriber is still active",
       p.stdout + p.stderr)
    # doctor on another key file than kairand's: kairand refuses the
    # token, and doctor says what that means
    other = os.path.join(base, "other.key")
    with open(other, "w") as f:
        f.write("1 1700000000 %s\n" %
                base64.b64encode(os.urandom(32)).decode())
    os.chmod(other, 0o600)
    rc, out, err, _ = doctor(config(public="https://localhost:%d" % port,
                                    key_file=other))
    ok(rc == 1 and "fail - one-click: a one-click POST (RFC 8058) to "
       "public_url answered 400: the kairand there refused doctor's test "
       "token" in out, "another key file than kairand's: 400, explained",
       out)
    ngx.stop()
    ok(kd.stop() == 0, "kairand exits 0")


main()
