#!/usr/bin/python3
"""DKIM in the delivery worker: a real kairand with a list that has RSA and
Ed25519 keys (made by `kairanctl dkim keygen`) sends a confirmation mail
(POST /subscribe) and a Japanese report (`kairanctl send`) to a real SMTP
server; every message received carries both signatures, and both verify
with Debian's python3-dkim (its DNS lookup answered from the records keygen
printed) and stop verifying once one body byte changes. A key file that is
missing is refused by `kairand --check`, `kairanctl check-config` and
at start; a reload to it leaves the daemon running on the old keys, and a
good reload to an Ed25519-only list is picked up."""
import os
import re
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (KAIRAND, KAIRANCTL, Kairan, SmtpServer, done,  # noqa
                     http, ok, report, tmpdir)

import dkim  # noqa: E402

DOMAIN = "news.example.jp"
SUBJECT = "第12号 脅威レポート：ランサムウェアとサプライチェーン攻撃"
BODY = ("今月のレポートをお届けします。\n\n"
        "## 概要\n\n全角スペース　と  半角スペース  の混在、"
        "長い行も含みます。" * 30 + "\n")


def zone_records(text):
    out = {}
    for line in text.splitlines():
        if not line or line.startswith(";"):
            continue
        out[line.split()[0].rstrip(".")] = "".join(
            re.findall(r'"([^"]*)"', line))
    return out


def list_yaml(rsa, ed):
    keys = ""
    if rsa:
        keys += "      rsa: {selector: k2026-rsa, key_file: %s}\n" % rsa
    if ed:
        keys += ("      ed25519: {selector: k2026-ed25519, key_file: %s}\n"
                 % ed)
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
""" + keys


def algos(msg):
    return re.findall(rb"^DKIM-Signature:.*?a=([a-z0-9-]+);", msg,
                      re.M | re.S)


def verify_all(msg, dnsfunc):
    d = dkim.DKIM(msg)
    res = []
    for i in range(len(algos(msg))):
        try:
            res.append(bool(d.verify(idx=i, dnsfunc=dnsfunc)))
        except dkim.DKIMException:
            res.append(False)
    return res


def flip_body_byte(msg):
    """msg with one byte of its body changed (a letter of the last
    body line that has one)."""
    head, sep, body = msg.partition(b"\r\n\r\n")
    b = bytearray(body)
    for i in range(len(b) - 1, -1, -1):
        if chr(b[i]).isalnum():
            b[i] = ord("A") if b[i] != ord("A") else ord("B")
            break
    return head + sep + bytes(b)


def ctl_env_run(*args):
    p = subprocess.run(list(args), capture_output=True, timeout=60)
    return p.returncode, p.stdout.decode("utf-8", "replace"), \
        p.stderr.decode("utf-8", "replace")


def main():
    base = tmpdir()
    keys = os.path.join(base, "keys")
    os.mkdir(keys, 0o700)
    rc, out, err = ctl_env_run(KAIRANCTL, "dkim", "keygen", "--domain",
                               DOMAIN, "--selector", "k2026", "--dir", keys)
    ok(rc == 0, "dkim keygen exits 0", (rc, err))
    zone = zone_records(out)
    rsa = os.path.join(keys, "k2026-rsa.key")
    ed = os.path.join(keys, "k2026-ed25519.key")

    def dnsfunc(name, timeout=5):
        v = zone.get(name.decode().rstrip("."))
        return v.encode() if v is not None else None

    smtp = SmtpServer(base)

    # ---- a missing key is a config error everywhere ----
    os.makedirs(os.path.join(base, "bad"))
    bad = Kairan(os.path.join(base, "bad"), smtp_port=smtp.port,
                 lists=list_yaml(rsa, os.path.join(keys, "nope.key")),
                 start=False)
    rc, out, err = ctl_env_run(KAIRAND, "--config", bad.config, "--check")
    ok(rc == 2 and "nope.key" in err,
       "kairand --check exits 2 naming a missing DKIM key file", (rc, err))
    rc, out, err = bad.ctl("check-config")
    ok(rc == 2 and "nope.key" in err,
       "kairanctl check-config exits 2 naming a missing DKIM key file",
       (rc, err))
    rc, out, err = ctl_env_run(KAIRAND, "--config", bad.config)
    ok(rc == 2 and "nope.key" in err,
       "kairand refuses to start with a missing DKIM key file", (rc, err))

    k = Kairan(base, smtp_port=smtp.port, lists=list_yaml(rsa, ed))
    rc, out, err = k.ctl("check-config")
    ok(rc == 0, "kairanctl check-config accepts the good keys", (rc, err))

    # ---- a confirmation mail and a Japanese report ----
    st, _, body = http("POST", k.url("/subscribe"),
                       {"email": "yomite@example.com",
                        "list": "sips-report", "name": "読者"})
    ok(200 <= st < 400, "POST /subscribe answers %d" % st)
    k.add_subscribers(["taro@example.jp", "hanako@example.org"])
    rc, out, err = k.send_report(report(SUBJECT, BODY))
    ok(rc == 0, "kairanctl send queues the report", (rc, out, err))
    ok(smtp.wait_count(3), "three messages reach the SMTP server",
       k.logtext())
    msgs = smtp.messages()
    rcpts = sorted(r for e, _ in msgs for r in e["rcpt"])
    ok(rcpts == ["hanako@example.org", "taro@example.jp",
                 "yomite@example.com"],
       "one confirmation and two report copies", rcpts)
    kinds = set()
    for e, raw in msgs:
        who = e["rcpt"][0]
        kinds.add(b"\nauto-submitted:" in
                  raw.partition(b"\r\n\r\n")[0].lower())
        ok(algos(raw) == [b"rsa-sha256", b"ed25519-sha256"],
           "two signatures, RSA then Ed25519, to " + who, algos(raw))
        ok(verify_all(raw, dnsfunc) == [True, True],
           "python3-dkim verifies both signatures of the mail to " + who,
           raw[:1500].decode("utf-8", "replace"))
        bad_raw = flip_body_byte(raw)
        ok(bad_raw != raw and verify_all(bad_raw, dnsfunc) == [False, False],
           "neither verifies after one body byte changes (" + who + ")")
        h = raw.partition(b"\r\n\r\n")[0].lower()
        sig = b"".join(re.findall(rb"^dkim-signature:.*?(?=^\S)", h + b"\n",
                                  re.M | re.S))
        ok(b"list-unsubscribe" in sig and b"list-unsubscribe-post" in sig,
           "h= covers List-Unsubscribe and List-Unsubscribe-Post (" + who +
           ")")
    ok(kinds == {True, False}, "a confirmation and reports were checked",
       kinds)

    # ---- reload to a missing key: the old signers stay ----
    good_cfg = open(k.config).read()
    with open(k.config, "w") as f:
        f.write(good_cfg.replace(ed, os.path.join(keys, "gone.key")))
    k.proc.signal(signal.SIGHUP)
    ok(k.wait_log("reload failed"), "the reload is refused", k.logtext())
    ok(k.log_has("gone.key"), "the log names the missing key file",
       k.logtext())
    ok(k.proc.alive(), "kairand keeps running")
    k.add_subscribers(["jiro@example.net"])
    rc, out, err = k.send_report(report(SUBJECT + " 第2回", BODY),
                                 name="r2.md")
    ok(rc == 0, "a second report is queued", (rc, err))
    ok(smtp.wait_count(6), "the second report reaches three readers",
       k.logtext())
    late = [raw for e, raw in smtp.messages()[3:]]
    ok(len(late) == 3 and all(algos(r) == [b"rsa-sha256", b"ed25519-sha256"]
                              and verify_all(r, dnsfunc) == [True, True]
                              for r in late),
       "after the refused reload both old keys still sign and verify")

    # ---- a good reload swaps the signers ----
    with open(k.config, "w") as f:
        f.write(good_cfg.replace(
            "      rsa: {selector: k2026-rsa, key_file: %s}\n" % rsa, ""))
    k.proc.signal(signal.SIGHUP)
    ok(k.wait_log("reload done"), "a reload to Ed25519 only is taken",
       k.logtext())
    rc, out, err = k.send_report(report(SUBJECT + " 第3回", BODY),
                                 name="r3.md")
    ok(rc == 0 and smtp.wait_count(9), "a third report reaches three",
       (rc, err, k.logtext()))
    late = [raw for e, raw in smtp.messages()[6:]]
    ok(len(late) == 3 and all(algos(r) == [b"ed25519-sha256"] and
                              verify_all(r, dnsfunc) == [True]
                              for r in late),
       "after the good reload only Ed25519 signs, and it verifies",
       [algos(r) for r in late])
    ok(k.stop() == 0, "kairand stops cleanly")
    smtp.stop()
    done()


if __name__ == "__main__":
    main()
