"""DKIM signatures made by kairan's code (lib/dkim.c through `kairanctl
dkim sign`, the same call the delivery worker makes) verify with an
independent verifier, Debian's python3-dkim, whose DNS lookup is replaced
by the records `kairanctl dkim keygen` printed: RSA and Ed25519, Japanese
subjects and bodies (base64, quoted-printable, 8bit, multipart), RFC 6376
relaxed edge cases; and they stop verifying once a signed header or body
byte changes, or a second List-Unsubscribe is added (over-signing)."""
import os
import json
import re
import shutil
import stat
import subprocess
import sys
from email.message import EmailMessage
from email.policy import SMTP

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (HERE, KAIRANCTL, Kairan, done, ok, report,  # noqa
                     tmpdir, wait_for)

import dkim  # noqa: E402

DOMAIN = "news.example.jp"
ENV = dict(os.environ, RES_OPTIONS="timeout:1 attempts:1")


def run(*args, stdin=b""):
    p = subprocess.run([KAIRANCTL] + list(args), input=stdin,
                       capture_output=True, env=ENV, timeout=120)
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")


def zone_records(text):
    """{name: value} from zone-file lines: quoted strings joined."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith(";"):
            continue
        name = line.split()[0].rstrip(".")
        strings = re.findall(r'"([^"]*)"', line)
        out[name] = "".join(strings)
        out[name + "#parts"] = strings
    return out


def lists_yaml(keys):
    rsa = os.path.join(keys, "k2026-rsa.key")
    ed = os.path.join(keys, "k2026-ed25519.key")
    return """
  - id: both
    from: "SIPS <report@news.example.jp>"
    dkim:
      domain: news.example.jp
      rsa: {selector: k2026-rsa, key_file: %s}
      ed25519: {selector: k2026-ed25519, key_file: %s}
  - id: rsa-only
    from: report@news.example.jp
    dkim: {domain: news.example.jp, rsa: {selector: k2026-rsa, key_file: %s}}
  - id: ed-only
    from: report@news.example.jp
    dkim:
      domain: news.example.jp
      ed25519: {selector: k2026-ed25519, key_file: %s}
  - id: plain
    from: report@news.example.jp
  - id: other-domain
    from: report@example.com
    dkim: {domain: news.example.jp, rsa: {selector: k2026-rsa, key_file: %s}}
""" % (rsa, ed, rsa, ed, rsa)


def newsletter(cte, n=1):
    m = EmailMessage(policy=SMTP)
    m["From"] = "SIPS セキュリティレポート <report@news.example.jp>"
    m["To"] = "読者 <reader@example.com>"
    m["Subject"] = ("SIPS セキュリティレポート 2026年11月号：ランサムウェアと"
                    "サプライチェーン攻撃の最新動向 第%d回" % n)
    m["Date"] = "Wed, 25 Nov 2026 23:00:00 +0900"
    m["Message-ID"] = "<%d.report@news.example.jp>" % n
    m["List-Id"] = "SIPS <sips-report.news.example.jp>"
    m["List-Unsubscribe"] = ("<https://news.example.jp/unsubscribe?t=AbC"
                             "dEf012345678901234567890123456789>")
    m["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    m["X-Mailer"] = "kairan"
    body = ("今月のレポートをお届けします。\n\n"
            "1. 概要　　全角スペースと  半角スペース  の混在\n"
            "2. 詳細は https://news.example.jp/archive/%d をご覧ください。\n"
            % n) * 40
    body += "\n配信停止: https://news.example.jp/unsubscribe?t=AbCdEf\n"
    m.set_content(body, charset="utf-8", cte=cte)
    return m.as_bytes()


def multipart():
    m = EmailMessage(policy=SMTP)
    m["From"] = "report@news.example.jp"
    m["To"] = "reader@example.com"
    m["Subject"] = "マルチパート 日本語 HTML"
    m["Message-ID"] = "<mp@news.example.jp>"
    m["List-Unsubscribe"] = "<https://news.example.jp/u?t=x>"
    m["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    m.set_content("本文（テキスト）\n", charset="utf-8")
    m.add_alternative("<p>本文（<b>HTML</b>）</p>\n", subtype="html",
                      charset="utf-8")
    return m.as_bytes()


# RFC 6376 3.4 edge cases as raw bytes: WSP runs and trailing WSP in
# headers and body, a folded Subject with TABs, empty lines at the end.
EDGE = (b"From:   report@news.example.jp  \r\n"
        b"To: reader@example.com\r\n"
        b"Subject: \t=?UTF-8?B?5pel5pys6Kqe?=  \r\n"
        b"\t =?UTF-8?B?44Gu5Lu25ZCN?=\t\r\n"
        b"subject-x: not signed\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain;\r\n  charset=UTF-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n"
        b"\r\n"
        b"  leading  and trailing \t \r\n"
        b"\r\n"
        + "日本語の本文\t\tです \r\n".encode() +
        b"\r\n\r\n \r\n\r\n")
EMPTY_BODY = (b"From: report@news.example.jp\r\n"
              b"Subject: empty\r\n\r\n")


def sigs(msg):
    return re.findall(rb"^DKIM-Signature:.*?a=([a-z0-9-]+);", msg, re.M)


def verify_all(msg, dnsfunc):
    """[bool] per signature, with the verifier's own DNS function."""
    d = dkim.DKIM(msg)
    n = len(sigs(msg))
    res = []
    for i in range(n):
        try:
            res.append(bool(d.verify(idx=i, dnsfunc=dnsfunc)))
        except dkim.DKIMException:
            res.append(False)
    return res


def main():
    base = tmpdir()
    keys = os.path.join(base, "keys")
    os.mkdir(keys, 0o700)

    # ---- keygen ----
    old = os.umask(0)
    try:
        rc, out, err = run("dkim", "keygen", "--domain", DOMAIN,
                           "--selector", "k2026", "--dir", keys)
    finally:
        os.umask(old)
    out = out.decode()
    ok(rc == 0, "dkim keygen exits 0", (rc, out, err))
    rsa_key = os.path.join(keys, "k2026-rsa.key")
    ed_key = os.path.join(keys, "k2026-ed25519.key")
    modes = [stat.S_IMODE(os.stat(p).st_mode) if os.path.exists(p) else None
             for p in (rsa_key, ed_key)]
    ok(modes == [0o600, 0o600], "both key files 0600 even with umask 0",
       modes)
    ok("PRIVATE KEY" not in out and open(ed_key).read().strip() not in out,
       "keygen prints no private key bytes")
    zone = zone_records(out)
    rname = "k2026-rsa._domainkey." + DOMAIN
    ename = "k2026-ed25519._domainkey." + DOMAIN
    ok(zone.get(rname, "").startswith("v=DKIM1; k=rsa; p=MII") and
       zone.get(ename, "").startswith("v=DKIM1; k=ed25519; p="),
       "keygen prints both TXT records in zone-file form", out)
    ok(len(zone.get(rname + "#parts", [])) >= 2 and
       all(len(s) <= 255 for s in zone.get(rname + "#parts", [])),
       "the RSA record is split into quoted strings of at most 255", out)
    before = open(rsa_key).read()
    rc, out2, err = run("dkim", "keygen", "--domain", DOMAIN, "--selector",
                        "k2026", "--dir", keys)
    ok(rc == 1 and "exists, not overwriting" in err and
       open(rsa_key).read() == before,
       "keygen again refuses to overwrite the keys", (rc, err))
    rc, _, err = run("dkim", "keygen", "--domain", DOMAIN)
    ok(rc == 2 and "--selector" in err, "keygen without --selector: usage",
       (rc, err))
    for sub in ("keygen", "check", "sign"):
        rc, out2, err = run("dkim", sub, "--help")
        ok(rc == 0 and out2.startswith(b"usage: kairanctl dkim") and
           err == "", "dkim %s --help: usage on stdout, exit 0" % sub,
           (rc, out2[:80], err))
    rc, out2, err = run("dkim", "sign", "--bogus")
    ok(rc == 2 and "usage:" in err, "dkim sign --bogus: usage, exit 2",
       (rc, err))

    def dnsfunc(name, timeout=5):
        v = zone.get(name.decode().rstrip("."))
        return v.encode() if v is not None else None

    k = Kairan(base, start=False, lists=lists_yaml(keys))

    def sign(msg, list_id="both"):
        return run("--config", k.config, "dkim", "sign", "--list", list_id,
                   stdin=msg)

    # ---- good signatures ----
    cases = [("Japanese, base64", newsletter("base64", 1)),
             ("Japanese, quoted-printable", newsletter("quoted-printable",
                                                       2)),
             ("Japanese, 8bit", newsletter("8bit", 3)),
             ("multipart/alternative text + HTML", multipart()),
             ("RFC 6376 3.4 edge cases (WSP runs, folds, trailing "
              "WSP, empty lines at the end)", EDGE),
             ("empty body", EMPTY_BODY)]
    signed_first = None
    for what, msg in cases:
        rc, signed, err = sign(msg)
        if not ok(rc == 0 and signed.endswith(msg), "sign: " + what,
                  (rc, err)):
            continue
        ok(sigs(signed) == [b"rsa-sha256", b"ed25519-sha256"],
           "two signatures, RSA then Ed25519: " + what, sigs(signed))
        res = verify_all(signed, dnsfunc)
        ok(res == [True, True],
           "python3-dkim verifies RSA and Ed25519: " + what,
           signed[:2000].decode("utf-8", "replace"))
        if signed_first is None:
            signed_first = signed

    for list_id, algo in (("rsa-only", b"rsa-sha256"),
                          ("ed-only", b"ed25519-sha256")):
        rc, signed, err = sign(newsletter("base64", 4), list_id)
        ok(rc == 0 and sigs(signed) == [algo] and
           verify_all(signed, dnsfunc) == [True],
           "list %s: one %s signature that verifies" % (list_id,
                                                        algo.decode()),
           (rc, err, signed[:600]))

    # ---- what the signature covers ----
    s = signed_first or b""
    head, _, body = s.partition(b"\r\n\r\n")
    h = re.search(rb"h=([^;]*);", head.replace(b"\r\n\t", b" "))
    names = [x.strip() for x in h.group(1).split(b":")] if h else []
    ok(names.count(b"From") == 2 and names.count(b"Subject") == 2 and
       names.count(b"List-Unsubscribe") == 2 and
       names.count(b"List-Unsubscribe-Post") == 2 and
       names.count(b"To") == 1 and b"Message-ID" in names and
       b"X-Mailer" not in names,
       "h= over-signs From, Subject, List-Unsubscribe(-Post); not "
       "X-Mailer", names)
    ok(b"l=" not in re.sub(rb"b=[^;]*", b"", head.split(b"From:")[0])
       and b"c=relaxed/relaxed" in head, "c=relaxed/relaxed and no l=")

    def tampered(what, new):
        ok(new != s and verify_all(new, dnsfunc) == [False, False],
           "fails to verify after " + what)

    # One body byte.
    i = len(head) + 4 + 10
    tampered("a body byte changes",
             s[:i] + (b"B" if s[i:i + 1] != b"B" else b"C") + s[i + 1:])
    # Appended body text (no l=: the whole body counts).
    tampered("a line is appended to the body", s + b"PS: click here\r\n")
    # One byte of the (encoded) Subject, of From, of List-Unsubscribe.
    for field in (b"Subject", b"From", b"List-Unsubscribe"):
        j = head.find(b"\r\n" + field + b":") + len(field) + 6
        tampered("a byte of %s changes" % field.decode(),
                 s[:j] + (b"x" if s[j:j + 1] != b"x" else b"y") + s[j + 1:])
    # Over-signing: a second List-Unsubscribe, a second Subject.
    for field, value in ((b"List-Unsubscribe", b"<https://evil.example/>"),
                         (b"Subject", b"second subject")):
        tampered("a second %s is added" % field.decode(),
                 s.replace(b"\r\n\r\n", b"\r\n" + field + b": " + value +
                           b"\r\n\r\n", 1))
    # Controls: what relays do keeps it valid, so the failures above are
    # about the bytes, not about any change at all.
    ok(verify_all(b"Received: from relay by mx; Wed, 25 Nov 2026\r\n" + s,
                  dnsfunc) == [True, True],
       "a Received: field added on top still verifies")
    refolded = s.replace(b"\r\nTo: ", b"\r\nTo:   \r\n\t ", 1)
    ok(refolded != s and verify_all(refolded, dnsfunc) == [True, True],
       "re-folding a signed field still verifies (relaxed)")
    ok(verify_all(s + b"\r\n\r\n", dnsfunc) == [True, True],
       "empty lines added at the end still verify (relaxed)")

    # ---- refusals ----
    rc, out, err = sign(b"To: a@example.com\r\nSubject: x\r\n\r\nbody\r\n")
    ok(rc == 1 and "no From field" in err and out == b"",
       "a message without From is not signed", (rc, err))
    rc, out, err = sign(newsletter("base64"), "plain")
    ok(rc == 1 and "no dkim: block" in err, "a list without dkim: says so",
       (rc, err))
    os.chmod(ed_key, 0o644)
    rc, out, err = sign(newsletter("base64"))
    ok(rc == 1 and "mode 0644" in err and "chmod 600" in err and
       out == b"", "a group/world-readable key file is refused", (rc, err))
    rc, out, err = run("--config", k.config, "dkim", "check")
    out = out.decode()
    ok(rc == 1 and "mode 0644" in out, "dkim check names the bad key file",
       (rc, out, err))
    os.chmod(ed_key, 0o600)

    # ---- a report composed by a real kairand (maildir transport) ----
    base2 = tmpdir()
    k2 = Kairan(base2, lists=lists_yaml(keys))
    rc, out, err = k2.add_subscribers(["読者@example.jp", "reader@example.com"],
                                      list_id="both")
    ok(rc == 0, "kairand: two subscribers imported", (rc, out, err))
    rc, out, err = k2.send_report(report(
        "セキュリティレポート 2026年11月号：ネットワーク機器を狙う攻撃の急増",
        "# 今月の要点\n\n- VPN 機器の脆弱性悪用  が急増\n\n本文です。\n" * 20,
        list_id="both"))
    ok(rc == 0, "kairand: report queued", (rc, out, err))
    new = os.path.join(base2, "mail", "new")
    wait_for(lambda: os.path.isdir(new) and len(os.listdir(new)) >= 2, 60)
    files = sorted(os.listdir(new)) if os.path.isdir(new) else []
    ok(len(files) == 2, "kairand composed two personal copies", files)
    for name in files:
        with open(os.path.join(new, name), "rb") as f:
            composed = f.read()
        # The delivery worker signs (tests/integration/
        # test_dkim_delivery.py does it over SMTP).
        ok(sigs(composed) == [b"rsa-sha256", b"ed25519-sha256"] and
           verify_all(composed, dnsfunc) == [True, True] and
           b"List-Unsubscribe-Post" in composed,
           "kairand's copy comes signed and verifies (RSA and Ed25519)",
           composed[:1500])
    k2.stop()

    # ---- check against a real DNS server ----
    # In a mount and network namespace of our own: a resolv.conf naming
    # 127.0.0.1, and tests/integration/dns_server.py on port 53 there.
    def check_with_dns(records):
        rfile = os.path.join(base, "records.json")
        with open(rfile, "w") as f:
            json.dump(records, f)
        conf = os.path.join(base, "resolv.conf")
        with open(conf, "w") as f:
            f.write("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        ready = os.path.join(base, "dns.ready")
        if os.path.exists(ready):
            os.unlink(ready)
        script = (
            'ip link set lo up && mount --bind "$1" /etc/resolv.conf || '
            'exit 99\n'
            '/usr/bin/python3 "$2" --records "$3" --ready "$4" & pid=$!\n'
            'i=0; while [ ! -e "$4" ] && [ $i -lt 200 ]; do '
            'sleep 0.05; i=$((i+1)); done\n'
            '"$5" --config "$6" dkim check; rc=$?\n'
            'kill $pid; exit $rc\n')
        p = subprocess.run(
            ["unshare", "-m", "-n", "--propagation", "private", "sh", "-c",
             script, "sh", conf, os.path.join(HERE, "dns_server.py"),
             rfile, ready, KAIRANCTL, k.config],
            capture_output=True, timeout=120)
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    # The probe: our server answers NXDOMAIN for every name.
    can_ns = (os.geteuid() == 0 and shutil.which("unshare") and
              shutil.which("ip") and
              "(NXDOMAIN)" in check_with_dns({})[1])
    if not can_ns:
        ok(True, "dkim check against a DNS server # SKIP needs root for "
           "unshare -m -n")
    else:
        good = {rname: zone[rname + "#parts"], ename: zone[ename + "#parts"]}
        rc, out, err = check_with_dns(good)
        ok(rc == 0 and out.count(": OK, matches ") == 5,
           "dkim check: the published records match (5 keys, 4 lists)",
           (rc, out, err))
        ok("list other-domain: WARN d=news.example.jp is not the From "
           "domain example.com" in out and out.count("WARN") == 1,
           "dkim check warns when d= is not aligned with From", out)
        other = subprocess.run([KAIRANCTL, "dkim", "keygen", "--domain",
                                DOMAIN, "--selector", "other", "--dir",
                                keys], capture_output=True)
        oz = zone_records(other.stdout.decode())
        wrong = dict(good)
        wrong[ename] = oz["other-ed25519._domainkey." + DOMAIN + "#parts"]
        rc, out, err = check_with_dns(wrong)
        ok(rc == 1 and out.count(": OK, matches ") == 3 and
           "another key than the key file's" in out and
           "2 of 5 records missing or wrong" in err,
           "dkim check: a record of another key is named", (rc, out, err))
        rc, out, err = check_with_dns({rname: ["v=DKIM1; k=rsa; p="]})
        ok(rc == 1 and "key revoked" in out and
           ("no answer for " + ename) in out,
           "dkim check: a revoked record and a missing one", (rc, out, err))

    # ---- check: this machine has no DNS ----
    rc, out, err = run("--config", k.config, "dkim", "check")
    out = out.decode()
    ok(rc == 1 and ("no answer for " + rname) in out and
       ("no answer for " + ename) in out and "5 of 5 records" in err,
       "dkim check without DNS: 'no answer for SEL._domainkey.DOMAIN', "
       "exit 1", (rc, out, err))
    done()


main()
