#!/usr/bin/python3
"""A token acts only on the subscription it was issued for, and the key
file that signed the links already sent is never silently replaced
(the hardening issue):
- after `subscribers remove` of the newest subscriber, the next sign-up
  gets a new id, and the removed person's old confirm link does not
  confirm the newcomer, nor their old List-Unsubscribe link unsubscribe
  them;
- after leaving and signing up again, the first confirmation mail's link
  no longer confirms (the new mail's does);
- kairand refuses to start when the key file is gone but the database has
  issued tokens, naming the file; `keys rotate` refuses too, unless
  --replace-lost; a key file from another database (another key under
  the same id) is refused."""
import email
import email.policy
import glob
import os
import re
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Kairan, done, http, ok, tmpdir  # noqa: E402


def mails(k):
    out = []
    for p in sorted(glob.glob(os.path.join(k.base, "mail", "new", "*"))):
        with open(p, "rb") as f:
            out.append(email.message_from_bytes(f.read(),
                                                policy=email.policy.default))
    return out


def text(m):
    return "".join(p.get_content() for p in m.walk()
                   if p.get_content_maintype() == "text")


def links(k, addr, kind):
    """Every /KIND?t= token in mail to addr, oldest first."""
    res = []
    for m in mails(k):
        if addr in str(m["To"]):
            res += re.findall(r"/%s\?t=([A-Za-z0-9_-]+)" % kind, text(m))
    return res


def status(k, addr):
    rc, out, err = k.ctl("subscribers", "list")
    for line in out.splitlines():
        f = line.split("\t")
        if len(f) > 3 and f[3] == addr:
            return f[2]
    return None


def sub_id(k, addr):
    c = sqlite3.connect(os.path.join(k.base, "kairan.db"), timeout=30)
    try:
        r = c.execute("SELECT id FROM subscribers WHERE email = ?",
                      (addr,)).fetchone()
        return r[0] if r else None
    finally:
        c.close()


def subscribe(k, addr):
    return http("POST", k.url("/subscribe"), data={"email": addr})[0]


def main():
    base = tmpdir()
    k = Kairan(base)

    # 1. The removed newest subscriber's confirm link, on a newcomer.
    ok(subscribe(k, "first@example.org") == 200, "first sign-up")
    old = harness.wait_for(lambda: links(k, "first@example.org",
                                         "confirm"), 20)
    ok(old, "first confirmation mail", old)
    first_id = sub_id(k, "first@example.org")
    rc, out, err = k.ctl("subscribers", "remove", "first@example.org")
    ok(rc == 0, "the operator removes first@", (rc, err))
    ok(subscribe(k, "second@example.org") == 200, "a newcomer signs up")
    harness.wait_for(lambda: links(k, "second@example.org", "confirm"), 20)
    ok(sub_id(k, "second@example.org") not in (None, first_id),
       "the newcomer gets a new id, not the removed one's",
       (first_id, sub_id(k, "second@example.org")))
    st, _, body = http("POST", k.url("/confirm?t=" + old[0]))
    ok(status(k, "second@example.org") == "pending",
       "the removed person's confirm link does not confirm the newcomer",
       (st, status(k, "second@example.org")))

    # 2. An old List-Unsubscribe link, on a newcomer.
    for a in ("third@example.org",):
        rc, out, err = k.ctl("subscribers", "add", a, "--confirmed")
        ok(rc == 0, "add %s confirmed" % a, err)
    rc, out, err = k.send_report(harness.report("第1号", "本文です。"))
    ok(rc == 0, "a report is queued", (out, err))
    unsub = harness.wait_for(lambda: links(k, "third@example.org",
                                           "unsubscribe"), 30)
    ok(unsub, "third@ got the report with its unsubscribe link", unsub)
    third_id = sub_id(k, "third@example.org")
    rc, out, err = k.ctl("subscribers", "remove", "third@example.org")
    rc, out, err = k.ctl("subscribers", "add", "fourth@example.org",
                         "--confirmed")
    ok(sub_id(k, "fourth@example.org") not in (None, third_id),
       "again a new id", (third_id, sub_id(k, "fourth@example.org")))
    if unsub:
        st, _, _ = http("POST", k.url("/unsubscribe?t=" + unsub[0]),
                        data={"List-Unsubscribe": "One-Click"})
    ok(status(k, "fourth@example.org") == "active",
       "the removed person's one-click link leaves the newcomer active",
       status(k, "fourth@example.org"))

    # 3. Leave, sign up again: the first mail's link no longer confirms.
    ok(subscribe(k, "again@example.org") == 200, "again@ signs up")
    t1 = harness.wait_for(lambda: links(k, "again@example.org",
                                        "confirm"), 20)
    st, _, _ = http("POST", k.url("/confirm?t=" + t1[0]))
    ok(status(k, "again@example.org") == "active", "and confirms",
       (st, status(k, "again@example.org")))
    # a report gives again@ its unsubscribe link; one click leaves
    rc, out, err = k.send_report(harness.report("第2号", "次号です。"),
                                 "r2.md")
    u = harness.wait_for(lambda: links(k, "again@example.org",
                                       "unsubscribe"), 30)
    st, _, _ = http("POST", k.url("/unsubscribe?t=" + (u or [""])[0]),
                    data={"List-Unsubscribe": "One-Click"})
    ok(status(k, "again@example.org") == "unsubscribed", "again@ leaves",
       (st, status(k, "again@example.org")))
    time.sleep(1.1)  # the new consent is later than the first link
    ok(subscribe(k, "again@example.org") == 200, "again@ signs up again")
    # a mail carries its link more than once (text and HTML parts): wait
    # for a token other than the first mail's, not for a second match
    t2 = harness.wait_for(lambda: (lambda t: t if t else None)(
        [x for x in links(k, "again@example.org", "confirm")
         if x != t1[0]]), 20)
    ok(t2 and t2[-1] != t1[0], "a second confirmation mail", t2)
    if status(k, "again@example.org") == "pending":
        http("POST", k.url("/confirm?t=" + t1[0]))
        ok(status(k, "again@example.org") == "pending",
           "the first mail's link does not confirm the new sign-up",
           status(k, "again@example.org"))
        http("POST", k.url("/confirm?t=" + t2[-1]))
        ok(status(k, "again@example.org") == "active",
           "the new mail's link does", status(k, "again@example.org"))
    else:
        ok(False, "again@ is pending after signing up again",
           status(k, "again@example.org"))
    ok(k.stop() == 0, "SIGTERM exits 0")

    # 4. The key file is gone: no silent new key.
    key = os.path.join(base, "token.key")
    saved = open(key).read()
    os.unlink(key)
    p = harness.Proc([harness.KAIRAND, "--config", k.config],
                     log=os.path.join(base, "nokey.log"))
    p.p.wait(20)
    rc = p.p.returncode
    log = open(os.path.join(base, "nokey.log"), errors="replace").read()
    ok(rc not in (0, None) and "key file %s is missing" % key in log and
       "restore it from a backup" in log,
       "kairand refuses to start without the key file, naming it",
       (rc, log[-600:]))
    ok(not os.path.exists(key), "and makes no new key", os.listdir(base))
    rc, out, err = k.ctl("keys", "rotate")
    ok(rc != 0 and "--replace-lost" in err and not os.path.exists(key),
       "keys rotate refuses too, pointing at --replace-lost", (rc, err))

    # A key file from elsewhere: another key under id 1.
    other = tmpdir()
    k2 = Kairan(other, start=False)
    rc, out, err = k2.ctl("keys", "rotate")
    with open(os.path.join(other, "token.key")) as f:
        foreign = f.read()
    with open(key, "w") as f:
        f.write(foreign)
    os.chmod(key, 0o600)
    p = harness.Proc([harness.KAIRAND, "--config", k.config],
                     log=os.path.join(base, "foreign.log"))
    p.p.wait(20)
    rc = p.p.returncode
    log = open(os.path.join(base, "foreign.log"), errors="replace").read()
    ok(rc not in (0, None) and "not the key the database knows" in log,
       "a key file of another database is refused", (rc, log[-600:]))

    # The right one back: kairand starts; --replace-lost for a lost one.
    with open(key, "w") as f:
        f.write(saved)
    os.chmod(key, 0o600)
    k.start()
    st, _, _ = http("GET", k.url("/"))
    ok(st == 200, "with its own key file back, kairand starts", st)
    k.stop()
    os.unlink(key)
    rc, out, err = k.ctl("keys", "rotate", "--replace-lost")
    ok(rc == 0 and os.path.exists(key), "keys rotate --replace-lost makes a "
       "new key on purpose", (rc, out, err))
    k.start()
    st, _, _ = http("GET", k.url("/"))
    ok(st == 200, "and kairand starts with it", st)
    k.stop()
    done()


if __name__ == "__main__":
    main()
