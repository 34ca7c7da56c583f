#!/usr/bin/env python3
"""Several kairand hosts on one real PostgreSQL sign with the same DKIM
keys (issue 13): the first host records each key's fingerprint (SHA-256
of the public key's DER SubjectPublicKeyInfo, as `openssl pkey -pubout
-outform DER | sha256sum` computes it) under its d= and s=; a second host
with the same key files starts; a host with another key under the same
selector is refused at its start, naming list, d=, s= and key file and
never key bytes, and the database keeps the first key; `kairanctl dkim
replace` makes the new key the one known (hosts with the old one are
then refused, a reload keeps their running config) until the new file is
copied to them; a new key under a new selector just works. /healthz
names the database (host:port/dbname, schema) and never the password."""
import os
import shutil
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import pg  # noqa: E402
from harness import Kairan, done, http, ok, tmpdir, wait_for  # noqa: E402

if not pg.available():
    ok(False, "PostgreSQL 15 is installed (make deps)")
    done()

base = tmpdir()
srv = pg.Server()
srv.createdb("news")
db = "{host: 127.0.0.1, port: %d, dbname: news, user: kairan, " \
     "password_file: %s}" % (srv.port, srv.password_file)
key = os.path.join(base, "token.key")
tool = Kairan(os.path.join(base, "tool"), start=False)


def keygen(name, selector):
    """`kairanctl dkim keygen` into base/NAME: SEL-rsa.key and
    SEL-ed25519.key."""
    d = os.path.join(base, name)
    os.makedirs(d)
    rc, out, err = tool.ctl("dkim", "keygen", "--domain", "news.example.jp",
                            "--selector", selector, "--dir", d)
    ok(rc == 0, "dkim keygen %s (%s)" % (selector, name), (rc, err))
    return d


def lists(keys, selector):
    return """
  - id: sips-report
    name: SIPS セキュリティレポート
    from: "SIPS Security Report <report@news.example.jp>"
    double_opt_in: true
    language: ja
    footer: |
      株式会社Example 東京都千代田区 / 配信停止: {{unsubscribe_url}}
    dkim:
      domain: news.example.jp
      rsa: {selector: %s-rsa, key_file: %s/%s-rsa.key}
      ed25519: {selector: %s-ed25519, key_file: %s/%s-ed25519.key}
""" % (selector, keys, selector, selector, keys, selector)


def install(src, name, selector="s1"):
    """Copies the key pair of src into the host's own folder, 0600, as
    configuration management would; returns that folder."""
    d = os.path.join(base, name, "dkim")
    os.makedirs(d, exist_ok=True)
    for kind in ("rsa", "ed25519"):
        f = "%s-%s.key" % (selector, kind)
        shutil.copyfile(os.path.join(src, f), os.path.join(d, f))
        os.chmod(os.path.join(d, f), 0o600)
    return d


def host(name, keys, selector="s1", start=True):
    d = os.path.join(base, name)
    os.makedirs(d, exist_ok=True)
    return Kairan(d, database=db, key_file=key,
                  extra="host_id: %s\n" % name,
                  lists=lists(keys, selector), start=start)


def try_start(k):
    """Starts k's kairand; returns (started, exit status or None, the log
    of this start). A refused start is seen when the process ends, not
    after the harness's wait for its ports."""
    k.proc = harness.Proc([harness.KAIRAND, "--config", k.config],
                          env=k.env, log=os.path.join(k.base, "kairand.log"))
    wait_for(lambda: not k.proc.alive() or
             harness.wait_port(k.admin_port, 0), 30)
    started = k.proc.alive() and harness.wait_port(k.http_port, 10)
    status = None if started else k.proc.p.wait(20)
    with open(os.path.join(k.base, "kairand.log"), errors="replace") as f:
        log = f.read()
    return started, status, "kairand starting" + \
        log.split("kairand starting")[-1]


def rows():
    out = srv.psql("news", "SELECT selector, fingerprint, host FROM "
                   "dkim_keys WHERE domain = 'news.example.jp' "
                   "ORDER BY selector")
    return [tuple(line.split("|")) for line in out.split("\n") if line]


def openssl_fp(rsa_file):
    """The RSA key's fingerprint by the openssl tool, not by kairan."""
    der = subprocess.run(["openssl", "pkey", "-in", rsa_file, "-pubout",
                          "-outform", "DER"], capture_output=True,
                         check=True).stdout
    return subprocess.run(["sha256sum"], input=der, capture_output=True,
                          check=True).stdout.split()[0].decode()


def secrets(keys_dir, selector="s1"):
    """Pieces of the private keys that must never reach a log: each PEM
    body line's first 16 characters and the Ed25519 seed."""
    out = []
    with open(os.path.join(keys_dir, "%s-rsa.key" % selector)) as f:
        out += [line.strip()[:16] for line in f
                if line.strip() and not line.startswith("-----")]
    with open(os.path.join(keys_dir, "%s-ed25519.key" % selector)) as f:
        seed = f.read().strip()
    return out + [seed, seed[:12]]


keys_a = keygen("keys-a", "s1")
keys_c = keygen("keys-c", "s1")   # another key pair under the same names
keys_n = keygen("keys-n", "s2")   # the next keys, under new selectors

# ---- two hosts with the same keys ----
a = host("host-a", install(keys_a, "host-a"))
b = host("host-b", install(keys_a, "host-b"))
ok(a.log_has("kairand starting") and b.log_has("kairand starting"),
   "two kairand hosts with the same DKIM keys start on one PostgreSQL",
   a.logtext() + b.logtext())
fp_rsa = openssl_fp(os.path.join(keys_a, "s1-rsa.key"))
r = rows()
ok(len(r) == 2 and r[0] == ("s1-ed25519", r[0][1], "host-a") and
   r[1] == ("s1-rsa", fp_rsa, "host-a") and len(r[0][1]) == 64 and
   r[0][1] != fp_rsa,
   "the database holds both keys' fingerprints (RSA: as openssl computes "
   "it), recorded by the first host", (r, fp_rsa))

wait_for(lambda: http("GET", a.admin_url("/healthz"))[0] == 200, 20)
st, _, body = http("GET", a.admin_url("/healthz"))
want = harness.healthz_ok("postgresql 127.0.0.1:%d/news" % srv.port)
ok(st == 200 and body.decode() == want,
   "/healthz: ok, then the database as host:port/dbname and its schema",
   (st, body, want))
ok(pg.PASSWORD.encode() not in body and b"kairan@" not in body,
   "/healthz never shows the password or the user", body)

# ---- another key under s1 ----
c = host("host-c", install(keys_c, "host-c"), start=False)
started, status, log = try_start(c)
ok(not started and status not in (None, 0),
   "a host with another key under the same selectors is refused at its "
   "start (exit status %s)" % status, log[-1500:])
cfile = os.path.join(base, "host-c", "dkim", "s1-rsa.key")
ok("list sips-report: dkim key file %s (d=news.example.jp s=s1-rsa) is "
   "not the key the database knows, recorded by host host-a" % cfile in log,
   "the refusal names the list, the key file, d= and s= and the host "
   "whose key the database has", log[-1500:])
ok(fp_rsa in log and openssl_fp(cfile) in log and
   "kairanctl dkim replace --domain news.example.jp s1-rsa" in log,
   "and, on a second line, both fingerprints and the way out", log[-1500:])
leaked = [s for s in secrets(keys_c) + secrets(keys_a) if s in log]
ok(not leaked, "no private key bytes in the log", leaked)
ok(rows() == r, "the database still knows the first host's keys", rows())

# ---- the operator's path ----
for args, code, needle in (
        (["dkim", "replace"], 2, "one SELECTOR expected"),
        (["dkim", "replace", "s9"], 1, "no list signs with selector s9"),
        (["dkim", "replace", "--domain", "other.example", "s1-rsa"], 1,
         "no list signs with selector s1-rsa under d=other.example")):
    rc, out, err = c.ctl(*args)
    ok(rc == code and needle in err, "dkim replace: %s exits %d" %
       (" ".join(args[2:]) or "(nothing)", code), (rc, out, err))
rc, out, err = c.ctl("dkim", "replace", "s1-rsa")
ok(rc == 0 and "d=news.example.jp s=s1-rsa: the database now knows the key "
   "in %s (fingerprint %s)" % (cfile, openssl_fp(cfile)) in out and
   "replaces the key host host-a recorded (fingerprint %s)" % fp_rsa in out,
   "kairanctl dkim replace s1-rsa records host C's key, naming the old one",
   (rc, out, err))
started, status, log = try_start(c)
ok(not started and "(d=news.example.jp s=s1-ed25519) is not the key" in log
   and "s=s1-rsa) is not" not in log,
   "host C is still refused, now for its other key (s1-ed25519) only",
   log[-1200:])
rc, out, err = c.ctl("dkim", "replace", "--domain", "news.example.jp",
                     "S1-ED25519")
ok(rc == 0 and "d=news.example.jp s=s1-ed25519: the database now knows" in
   out,
   "kairanctl dkim replace --domain … s1-ed25519 (any letter case)",
   (rc, out, err))
started, status, log = try_start(c)
ok(started, "with both keys replaced host C starts", log[-1200:])
r2 = rows()
ok(len(r2) == 2 and all(x[2] == "host-c" for x in r2) and
   r2[1][1] == openssl_fp(cfile),
   "the database knows host C's keys now", r2)
ok(srv.psql("news", "SELECT count(*) FROM events WHERE kind = "
            "'dkim-replaced' AND detail LIKE 'd=news.example.jp s=s1-%' "
            "AND detail LIKE '%recorded by host-c (was %'").strip() == "2",
   "each replacement is an event naming the old and the new key",
   srv.psql("news", "SELECT detail FROM events WHERE kind = "
            "'dkim-replaced'"))

# ---- the hosts with the old key ----
b.proc.signal(signal.SIGHUP)
ok(b.wait_log("reload failed: list sips-report: dkim key file", 20) and
   b.proc.alive(),
   "a running host with the old key: its reload fails and it keeps the "
   "running config", b.logtext()[-1200:])
install(keys_c, "host-b")
b.proc.signal(signal.SIGHUP)
ok(b.wait_log("reload done", 20) and b.proc.alive(),
   "with the new files copied, its reload succeeds", b.logtext()[-1200:])
a.stop()
started, status, log = try_start(a)
ok(not started and "s=s1-rsa) is not the key the database knows, recorded "
   "by host host-c" in log,
   "host A, restarted with the old key, is refused", log[-1200:])
install(keys_c, "host-a")
started, status, log = try_start(a)
ok(started, "with the new files copied, host A starts", log[-1200:])

# ---- a rotation under new selectors ----
d = host("host-d", install(keys_n, "host-d", "s2"), "s2", start=False)
started, status, log = try_start(d)
r3 = rows()
ok(started and len(r3) == 4 and
   [x[0] for x in r3] == ["s1-ed25519", "s1-rsa", "s2-ed25519", "s2-rsa"]
   and r3[3][1] == openssl_fp(os.path.join(keys_n, "s2-rsa.key")),
   "new keys under new selectors just work, recorded beside the old ones",
   (r3, log[-800:]))

for k in (a, b, c, d):
    k.stop()
done()
