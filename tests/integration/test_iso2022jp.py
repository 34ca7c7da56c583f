#!/usr/bin/python3
"""lists[].charset: iso-2022-jp. Every message of an ISO-2022-JP list
(kairanctl send --dry-run --out, and the confirmation mail kairand sends)
parses back exactly with Python's email package (policy.default, its
iso2022_jp codec) and with Debian's nkf (nkf -w -m): the Japanese sample
report, a report full of 機種依存文字 under each unrepresentable policy
(substitute, utf-8, refuse), a 120-character subject, a subject mixing
ASCII words and kana, a long unspaced paragraph. Every encoded word
decodes on its own and is at most 75 characters; no byte above 0x7F; DKIM
(kairanctl dkim sign, verified by python3-dkim) still verifies. refuse:
kairanctl send and the outbox reject the report with FILE:LINE:COLUMN
lines; kairanctl lint lists every character."""
import base64
import email
import email.policy
import glob
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (KAIRANCTL, Kairan, ROOT, done, ok, tmpdir,  # noqa
                     wait_for, http)

import dkim  # noqa: E402

DOMAIN = "news.example.jp"


def list_block(lid, policy, extra=""):
    return """
  - id: %s
    name: SIPS セキュリティレポート
    from: "SIPS セキュリティ <report@news.example.jp>"
    double_opt_in: true
    language: ja
    archive: true
    charset: iso-2022-jp
    unrepresentable: %s
    footer: |
      {{name}} 様 / 配信停止: {{unsubscribe_url}}
%s""" % (lid, policy, extra)


# the substitutions of the README's table that the reports below use,
# and the Microsoft forms as a JIS reader (Python's codec) shows them
SUBST = {"①": "(1)", "⑳": "(20)", "㈱": "(株)", "Ⅲ": "III", "㍻": "平成",
         "ｶﾞ": "ガ", "ｲ": "イ", "ﾄﾞ": "ド", "ﾊﾟ": "パ", "ｰ": "ー", "ﾂ": "ツ",
         "髙": "高", "№": "No.", "㌔": "キロ", "¥": "￥"}
JISREAD = {"～": "〜", "∥": "‖", "－": "−", "￠": "¢", "￡": "£", "￢": "¬"}


def as_read(s):
    for a, b in sorted(SUBST.items(), key=lambda x: -len(x[0])):
        s = s.replace(a, b)
    for a, b in JISREAD.items():
        s = s.replace(a, b)
    return s


KISHU_SUBJ = "①㈱Ⅲ ｶﾞｲﾄﾞ ～お知らせ～ ㍻ ¥100"
KISHU_PARAS = ["機種依存文字：①から⑳、㈱、Ⅲ章、㍻元年、№5、㌔。",
               "半角カナ：ｶﾞｲﾄﾞ ﾊﾟｰﾂ、髙橋さん。",
               "Windows の形：10～20、a∥b、－5、￠ ￡ ￢ です。"]
KISHU = ("---\nsubject: \"%s\"\nlist: LIST\n---\n%s\n"
         % (KISHU_SUBJ, "\n\n".join(KISHU_PARAS)))
SUBJ120 = ("【第12号】" + "脆弱性情報と緊急対応のお願い、" * 9)[:120]
MIXED = "【重要】 VPN appliance の security update について ver 2.1 のお知らせ"
LONG = "日本語の長い段落には空白がありません、「全角」の句読点も。" * 60
PLAIN_PARAS = ["今月のレポートをお届けします。", LONG,
               "English words mixed with 日本語 in one line that is long "
               "enough to need folding more than once, surely by now."]


def report(subject, paras, lid):
    return ("---\nsubject: \"%s\"\nlist: %s\n---\n%s\n"
            % (subject, lid, "\n\n".join(paras)))


def unflow(text):
    """RFC 3676, delsp=yes."""
    out = []
    for line in text.split("\n"):
        if line.startswith(" "):
            line = line[1:]
        if line.endswith(" ") and line != "-- ":
            out.append(line[:-1])
        else:
            out.append(line + "\n")
    return "".join(out)[:-1]


WORD = re.compile(rb"=\?([^?]+)\?B\?([A-Za-z0-9+/=]*)\?=")


def check_words(raw, what):
    """Every encoded word of the headers decodes on its own."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    words = WORD.findall(head)
    bad = []
    for m in WORD.finditer(head):
        w = m.group(0)
        cs, data = m.group(1), base64.b64decode(m.group(2))
        if len(w) > 75 or cs != b"ISO-2022-JP":
            bad.append(w)
            continue
        try:
            data.decode("iso2022_jp")
        except UnicodeDecodeError:
            bad.append(w)
        # starts in ASCII (by definition) and ends in ASCII: the last
        # escape, if any, is ESC ( B
        escs = re.findall(rb"\x1b[$(][A-Z@]", data)
        if escs and escs[-1] != b"\x1b(B":
            bad.append(w)
    ok(words and not bad,
       "%s: %d encoded words, each ISO-2022-JP, <= 75 chars, decoding on "
       "its own and ending in ASCII" % (what, len(words)), bad[:3])


def nkf(raw):
    p = subprocess.run(["nkf", "-w", "-m"], input=raw, capture_output=True)
    return p.stdout.decode("utf-8", "replace")


def squash(s):
    """Without white space (soft line breaks); nkf reads JIS 0x216F as
    U+00A5, Python as U+FFE5: both a yen sign."""
    return re.sub(r"\s", "", s).replace("￥", "¥")


def check_jis(raw, what, subject, paras, from_name="SIPS セキュリティ"):
    """raw is an ISO-2022-JP message saying subject and paras."""
    ok(all(b < 0x80 for b in raw), "%s: no byte above 0x7F" % what)
    lines = raw.split(b"\r\n")
    head = raw.split(b"\r\n\r\n")[0].split(b"\r\n")
    ok(max(len(x) for x in lines) <= 998 and
       max(len(x) for x in head if b"=?" in x) <= 76,
       "%s: encoded header lines <= 76, all lines <= 998 octets" % what)
    check_words(raw, what)
    m = email.message_from_bytes(raw, policy=email.policy.default)
    ok(m["Subject"] == subject, "%s: Subject parses back exactly" % what,
       (m["Subject"], subject))
    ok(m["From"].addresses[0].display_name == from_name,
       "%s: From display name parses back" % what, str(m["From"]))
    d = m["Date"].datetime
    ok(str(m["Date"]).endswith(" +0900") and
       abs(d.timestamp() - time.time()) < 600,
       "%s: Date: in the list's zone (ja: Asia/Tokyo, +0900), the right "
       "instant" % what, str(m["Date"]))
    text = m.get_body(("plain",))
    html = m.get_body(("html",))
    ok(text.get_content_charset() == "iso-2022-jp" and
       text["Content-Transfer-Encoding"] == "7bit" and
       text.get_param("format") == "flowed" and
       html.get_content_charset() == "iso-2022-jp",
       "%s: both parts ISO-2022-JP, text/plain 7bit format=flowed" % what,
       (str(text["Content-Type"]), str(html["Content-Type"])))
    body = unflow(text.get_content().replace("\r\n", "\n"))
    hbody = html.get_content()
    missing = [p for p in paras if p not in body]
    ok(not missing, "%s: every paragraph exact in text/plain" % what,
       (missing[:1], body[:400]))
    missing = [p for p in paras if p not in hbody]
    ok(not missing, "%s: every paragraph exact in text/html" % what,
       missing[:1])
    block = ["発行者: 株式会社Example", "住所: 東京都千代田区千代田1-1",
             "お問い合わせ: info@example.jp",
             "このメールの受信は、いつでも停止することができます。"]
    ok(all(b in body and b in hbody for b in block),
       "%s: the sender block (name, address, contact, may stop) in both "
       "parts" % what, body[-500:])
    ok('<meta charset="iso-2022-jp">' in hbody,
       "%s: the HTML says its charset" % what)
    n = squash(nkf(raw))
    missing = [p for p in [subject] + paras if squash(p) not in n]
    ok(not missing, "%s: nkf -w -m reads subject and paragraphs" % what,
       missing[:1])
    return m


def sign_verify(k, raw, zone, what):
    p = subprocess.run([KAIRANCTL, "--config", k.config, "dkim", "sign",
                        "--list", "jp-sub"], input=raw, capture_output=True)
    ok(p.returncode == 0, "%s: kairanctl dkim sign" % what, p.stderr)

    def dnsfunc(name, timeout=5):
        v = zone.get(name.decode().rstrip("."))
        return v.encode() if v is not None else None

    d = dkim.DKIM(p.stdout)
    res = [bool(d.verify(idx=i, dnsfunc=dnsfunc)) for i in range(2)]
    ok(res == [True, True], "%s: both DKIM signatures verify" % what, res)


def dry(k, base, name, text, n=3):
    path = os.path.join(base, name + ".md")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    out = os.path.join(base, "dry-" + name)
    rc, so, se = k.ctl("send", path, "--dry-run", str(n), "--out", out)
    files = sorted(glob.glob(os.path.join(out, "*.eml")))
    msgs = []
    for fn in files:
        with open(fn, "rb") as f:
            msgs.append(f.read())
    return rc, se, path, msgs


def main():
    base = tmpdir()
    keys = os.path.join(base, "keys")
    os.mkdir(keys, 0o700)
    p = subprocess.run([KAIRANCTL, "dkim", "keygen", "--domain", DOMAIN,
                        "--selector", "k", "--dir", keys],
                       capture_output=True)
    zone = {}
    for line in p.stdout.decode().splitlines():
        if line and not line.startswith(";"):
            zone[line.split()[0].rstrip(".")] = "".join(
                re.findall(r'"([^"]*)"', line))
    dk = ("    dkim:\n      domain: %s\n"
          "      rsa: {selector: k-rsa, key_file: %s/k-rsa.key}\n"
          "      ed25519: {selector: k-ed25519, key_file: %s/k-ed25519.key}\n"
          % (DOMAIN, keys, keys))
    lists = (list_block("jp-sub", "substitute", dk) +
             list_block("jp-utf8", "utf-8") +
             list_block("jp-refuse", "refuse"))
    k = Kairan(base, lists=lists, start=False)
    rc, so, se = k.ctl("check-config")
    ok(rc == 0, "check-config accepts three iso-2022-jp lists", se)
    csv = os.path.join(base, "subs.csv")
    with open(csv, "w", encoding="utf-8") as f:
        f.write("email,name,list\n")
        for lid in ("jp-sub", "jp-utf8", "jp-refuse"):
            f.write("a@example.jp,山田 太郎,%s\n" % lid)
            f.write("b@example.jp,ｶﾀｶﾅ ①,%s\n" % lid)
            f.write("c@example.jp,絵文字😀,%s\n" % lid)
    rc, so, se = k.ctl("subscribers", "import", csv, "--confirmed")
    ok(rc == 0, "subscribers imported", se)

    # ---- the sample report ----
    with open(os.path.join(ROOT, "config", "sample-report.md"),
              encoding="utf-8") as f:
        sample = f.read().replace("list: sips-report", "list: jp-sub")
    rc, se, path, msgs = dry(k, base, "sample", sample)
    ok(rc == 0 and len(msgs) == 3, "sample report: dry run", se)
    subj = re.search(r'^subject: "(.*)"$', sample, re.M).group(1)
    paras = [p for p in sample.split("---\n", 2)[2].split("\n\n")
             if p and not re.search(r"[#*\[\]`>|_-]|^\d", p)]
    ok(len(paras) >= 5, "sample report: %d plain paragraphs to compare"
       % len(paras))
    m = check_jis(msgs[0], "sample report", subj, paras)
    ok("山田 太郎 様" in m.get_body(("plain",)).get_content(),
       "sample report: the subscriber's name in the footer")
    sign_verify(k, msgs[0], zone, "sample report")
    m1 = email.message_from_bytes(msgs[1], policy=email.policy.default)
    ok("カタカナ (1) 様" in m1.get_body(("plain",)).get_content(),
       "a name with half-width kana and ① is substituted in its footer")
    m2 = email.message_from_bytes(msgs[2], policy=email.policy.default)
    ok(m2.get_body(("plain",)).get_content_charset() == "utf-8" and
       "絵文字😀 様" in m2.get_body(("plain",)).get_content() and
       m2["Subject"] == subj,
       "a name with an emoji: that one message goes in UTF-8, intact")

    # ---- 機種依存文字 under each policy ----
    rc, se, path, msgs = dry(k, base, "kishu",
                             KISHU.replace("LIST", "jp-sub"), 1)
    ok(rc == 0 and len(msgs) == 1, "機種依存文字, substitute: dry run", se)
    ok(se.count("cannot be sent as ISO-2022-JP (substitute:") == 22 and
       "with these substitutions" in se,
       "--dry-run lists every substitution before anything", se)
    m = check_jis(msgs[0], "機種依存文字, substitute", as_read(KISHU_SUBJ),
                  [as_read(p) for p in KISHU_PARAS])
    sign_verify(k, msgs[0], zone, "機種依存文字, substitute")
    emoji = KISHU.replace("LIST", "jp-sub").replace("です。", "です🎉。")
    rc, se, path, msgs = dry(k, base, "kishu-emoji", emoji, 1)
    mm = email.message_from_bytes(msgs[0], policy=email.policy.default)
    ok(rc == 0 and "(no substitute)" in se and "goes in UTF-8" in se and
       mm.get_body(("plain",)).get_content_charset() == "utf-8" and
       mm["Subject"] == KISHU_SUBJ and "です🎉。" in
       mm.get_body(("plain",)).get_content(),
       "substitute, an emoji without a substitute: the report goes in "
       "UTF-8 as written", se)
    rc, se, path, msgs = dry(k, base, "kishu-utf8",
                             KISHU.replace("LIST", "jp-utf8"), 1)
    mm = email.message_from_bytes(msgs[0], policy=email.policy.default)
    ok(rc == 0 and mm.get_body(("plain",)).get_content_charset() ==
       "utf-8" and mm["Subject"] == KISHU_SUBJ and
       all(p in mm.get_body(("plain",)).get_content()
           for p in KISHU_PARAS),
       "unrepresentable: utf-8 sends that report in UTF-8, as written", se)
    rc, se, path, msgs = dry(k, base, "plain-utf8",
                             report(SUBJ120, PLAIN_PARAS, "jp-utf8"), 1)
    check_jis(msgs[0], "utf-8 policy, nothing to substitute", SUBJ120,
              PLAIN_PARAS)

    # refuse: send, outbox and lint
    kishu_r = KISHU.replace("LIST", "jp-refuse")
    path = os.path.join(base, "refuse.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write(kishu_r)
    rc, so, se = k.ctl("send", path)
    first = "%s:2:11: U+2460 '①' cannot be sent as ISO-2022-JP " \
            "(substitute: (1))" % path
    ok(rc == 1 and first in se and
       se.count("cannot be sent as ISO-2022-JP") == 22 and
       "%s:7:14: U+FF5E" not in se and "refused" in se,
       "refuse: kairanctl send rejects the report, one FILE:LINE:COLUMN "
       "line per character", se)
    rc, so, se = k.ctl("send", path, "--dry-run")
    ok(rc == 1 and first in se, "refuse: --dry-run says so too", se)
    rc, so, se = k.ctl("lint", path)
    ok(rc == 1 and first in so and so.count("\n") == 23,
       "kairanctl lint lists all 22 and exits 1 for a refusing list", so)
    rc, so, se = k.ctl("lint", os.path.join(base, "kishu.md"))
    ok(rc == 0 and "with these substitutions" in so,
       "kairanctl lint exits 0 for a substituting list", so)
    rc, so, se = k.ctl("lint", os.path.join(base, "sample.md"))
    ok(rc == 0 and "0 characters" in so,
       "kairanctl lint: the sample report needs nothing", so)
    k.start()
    k.drop_report(kishu_r, "refuse.md")
    errf = os.path.join(base, "outbox", "failed", "refuse.md.err")
    ok(wait_for(lambda: os.path.exists(errf), 15),
       "refuse: the outbox moves the report to failed/", k.logtext())
    with open(errf, encoding="utf-8") as f:
        etext = f.read()
    ok("refuse.md:2:11: U+2460 '①' cannot be sent as ISO-2022-JP "
       "(substitute: (1))" in etext and "and 21 more" in etext,
       "refuse: NAME.err names the first character and the count", etext)

    # ---- subjects and a long paragraph ----
    for name, subj in (("subj120", SUBJ120), ("mixed", MIXED)):
        rc, se, path, msgs = dry(k, base, name,
                                 report(subj, PLAIN_PARAS, "jp-sub"), 1)
        ok(rc == 0, "%s: dry run" % name, se)
        check_jis(msgs[0], name, subj, PLAIN_PARAS)

    # ---- the confirmation mail, sent by kairand, and one-click ----
    rc, so, se = k.ctl("subscribers", "add", "new@example.jp", "--list",
                       "jp-sub")
    ok(rc == 0, "a pending subscriber gets a confirmation mail", se)
    maildir = os.path.join(base, "mail", "new")

    def confirm_mail():
        for fn in glob.glob(os.path.join(maildir, "*")):
            with open(fn, "rb") as f:
                raw = f.read()
            if b"new@example.jp" in raw.split(b"\r\n\r\n")[0]:
                return raw
        return None
    ok(wait_for(lambda: confirm_mail() is not None, 20),
       "the confirmation mail is delivered", k.logtext())
    raw = confirm_mail()
    raw = raw[raw.index(b"From: "):] if not raw.startswith(b"From") else raw
    m = email.message_from_bytes(raw, policy=email.policy.default)
    ok(all(b < 0x80 for b in raw.split(b"\r\n\r\n", 1)[1]) and
       m["Subject"] == "配信登録の確認をお願いします" and
       m.get_body(("plain",)).get_content_charset() == "iso-2022-jp",
       "the confirmation mail is ISO-2022-JP and parses back",
       raw[:600])
    check_words(raw, "confirmation mail")
    text = unflow(m.get_body(("plain",)).get_content().replace("\r\n",
                                                               "\n"))
    url = re.search(r"https://news.example.jp(/confirm\?t=\S+)", text)
    ok(url is not None and "SIPS セキュリティレポート" in text and
       squash("SIPS セキュリティ") in squash(nkf(raw)),
       "confirmation text and link read back (Python, nkf)", text[:300])
    st, _, body = http("GET", k.url(url.group(1)))
    ok(st == 200, "the confirm page opens from an ISO-2022-JP mail", st)
    st, _, body = http("POST", k.url(url.group(1)), data=b"")
    ok(st in (200, 303), "and confirms", st)
    # one-click from a report mail
    rc, se, path, msgs = dry(k, base, "unsub", report(MIXED, PLAIN_PARAS[:1],
                                                      "jp-sub"), 1)
    m = email.message_from_bytes(msgs[0], policy=email.policy.default)
    u = re.search(r"<https://news.example.jp(/unsubscribe\?t=[^>]+)>",
                  str(m["List-Unsubscribe"]))
    st, _, body = http("POST", k.url(u.group(1)),
                       data=b"List-Unsubscribe=One-Click")
    ok(st == 200, "one-click unsubscribe works from an ISO-2022-JP mail", st)
    k.stop()
    done()


main()
