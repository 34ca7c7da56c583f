#!/usr/bin/python3
"""Bounces end to end. A real kairand sends a report through aiosmtpd with
delivery.bounce_domain set, so every copy leaves with its own VERP
envelope sender. The SMTP server rejects one recipient with 550; the
others' bounces come back later as messages piped into `kairanctl bounce`
(as Postfix's pipe(8) would): an RFC 3464 DSN, two soft DSNs, an ARF
complaint, a vacation reply, forged and garbage input. Each subscriber
ends in the right state, nobody else is touched, the next report reaches
only those still active, and the exit codes are the ones an MTA needs
(0 handled or ignored, 75 when the store is unavailable)."""
import email
import email.policy
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import ok, done  # noqa: E402

DATA = os.path.join(harness.ROOT, "tests", "data", "bounces")
TOK = "XXTOKENXXTOKENXXTOKENXXTOKENXXTOKENXXTOKENXX0001"
UTOK = "YYUNSUBYYUNSUBYYUNSUBYYUNSUBYYUNSUBYYUNSUBYY0001"

REJECT = "reject@example.jp"
LATER = "later@example.jp"
SOFT = "soft@example.jp"
ARF = "arf@example.jp"
VAC = "vac@example.jp"
KEEP = "keep@example.jp"
ALL = [REJECT, LATER, SOFT, ARF, VAC, KEEP]


# The recipients the sample DSNs report on; fixture() puts the address of
# the subscriber whose token it plants there (a DSN about another address
# bounces nobody: checked below).
FIXTURE_RCPTS = [b"gone@example.net", b"full@example.net", b"cut@example.net",
                 b"slow@example.net", b"nobody@gmail.example"]


def fixture(name, tok=None, utok=None, rcpt=None):
    with open(os.path.join(DATA, name), "rb") as f:
        raw = f.read()
    if tok:
        raw = raw.replace(TOK.encode(), tok.encode())
        if rcpt is None:
            rcpt = next((a for a, t in globals().get("tok", {}).items()
                         if t == tok), None)
    if rcpt:
        for r in FIXTURE_RCPTS:
            raw = raw.replace(r, rcpt.encode())
    if utok:
        raw = raw.replace(UTOK.encode(), utok.encode())
    return raw


def states(k):
    """{email: (status, bounces)} from `kairanctl subscribers list`."""
    rc, out, err = k.ctl("subscribers", "list")
    res = {}
    for line in out.splitlines():
        f = line.split("\t")
        if len(f) >= 6:
            res[f[3]] = (f[2], f[5])
    return res


def bounce(k, raw, *args):
    return k.ctl("bounce", *args, input=raw)


base = harness.tmpdir()
smtp = harness.SmtpServer(base, rules={
    "rcpt": {REJECT: "550 5.1.1 <%s>: Recipient address rejected: User "
             "unknown" % REJECT}})
k = harness.Kairan(base, smtp_port=smtp.port,
                   delivery_extra="  bounce_domain: bounces.example.jp",
                   extra="bounce:\n  hard_threshold: 1\n"
                         "  soft_threshold: 2\n  soft_window: 1d\n")
rc, out, err = k.add_subscribers(ALL)
ok(rc == 0, "six confirmed subscribers", (out, err))

rc, out, err = k.send_report(harness.report("第1号", "本文です。"), "r1.md")
ok(rc == 0, "report queued", (out, err))
got = smtp.wait_count(5, 60)
ok(got, "five copies accepted by the SMTP server", smtp.log())
ok(harness.wait_for(lambda: states(k).get(REJECT, ("",))[0] == "bounced",
                    30),
   "the 550 at RCPT made %s bounced at once" % REJECT,
   (states(k), k.logtext()))

# The VERP envelope sender of each copy, and its unsubscribe token.
verp = {}
unsub = {}
for e, raw in smtp.messages():
    for r in e["rcpt"]:
        verp[r.lower()] = e["mail_from"]
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        m = re.search(r"unsubscribe\?t=([A-Za-z0-9_-]+)",
                      str(msg.get("List-Unsubscribe", "")))
        unsub[r.lower()] = m.group(1) if m else None
tokens = {a: re.match(r"bounces\+([A-Za-z0-9_-]+)@bounces\.example\.jp$",
                      v) for a, v in verp.items()}
ok(all(tokens.get(a) for a in [LATER, SOFT, ARF, VAC, KEEP]) and
   len({t.group(1) for t in tokens.values() if t}) == 5,
   "each copy has its own VERP sender bounces+TOKEN@bounces.example.jp",
   verp)
tok = {a: t.group(1) for a, t in tokens.items() if t}

before = states(k)

# A DSN for LATER, delivered by the MTA with ${original_recipient}.
rc, out, err = bounce(k, fixture("dsn-postfix-hard.eml", tok[LATER]),
                      "--recipient", verp[LATER])
ok(rc == 0 and "recorded hard (dsn 5.1.1)" in err and "now bounced" in err,
   "hard DSN recorded, exit 0", (rc, err))
ok("@" not in err, "no address on stderr", err)
ok(states(k)[LATER] == ("bounced", "1"), "%s bounced" % LATER, states(k))

# Soft bounces count after two within the window, one per copy: the first
# does not count yet, and the same copy bouncing again adds nothing.
raw = fixture("dsn-soft-expired.eml", tok[SOFT])
rc, out, err = bounce(k, raw)
ok(rc == 0 and "recorded soft" in err and "not counted yet" in err,
   "first soft bounce recorded, not counted", (rc, err))
ok(states(k)[SOFT] == ("active", "0"), "still active after one soft",
   states(k))
rc, out, err = bounce(k, raw)
ok(rc == 0 and "bounced before: not counted" in err,
   "the same copy again is a duplicate", err)
ok(states(k)[SOFT] == ("active", "0"), "still active after the duplicate",
   states(k))

# An ARF complaint naming the reader only by the List-Unsubscribe link.
ok(unsub.get(ARF), "copy has a List-Unsubscribe token", unsub)
rc, out, err = bounce(k, fixture("arf-unsub-only.eml", utok=unsub[ARF]))
ok(rc == 0 and "recorded complaint" in err and "now unsubscribed" in err,
   "ARF complaint recorded", (rc, err))
ok(states(k)[ARF][0] == "unsubscribed", "%s unsubscribed at once" % ARF,
   states(k))

# Ignored on purpose: exit 0, says why, changes nothing.
snap = states(k)
for name, raw, args, why in [
        ("vacation reply", fixture("vacation.eml", tok[VAC]),
         ("--recipient", verp[VAC]), "auto-reply"),
        ("Japanese auto-reply", fixture("vacation-ja.eml", tok[VAC]), (),
         "auto-reply"),
        ("delayed DSN", fixture("dsn-delayed.eml", tok[VAC]), (), "delayed"),
        ("no headers", fixture("noheaders.eml"), (), "not a bounce"),
        ("empty message", b"", (), "not a bounce"),
        ("truncated MIME", b"Content-Type: multipart/report; boundary="
         b"\"x\"\n\n--x\nContent-Type: message/delivery-status\n\nAct",
         (), "not a bounce"),
        ("forged token", fixture("dsn-postfix-hard.eml",
                                 tok[KEEP][:-4] + "AAAA"),
         (), "no valid token"),
        ("token of another purpose", fixture("dsn-postfix-hard.eml",
                                             unsub[KEEP]),
         (), "no valid token"),
        ("10 MB of binary", os.urandom(10 * 1024 * 1024 + 4096), (),
         "ignored"),
        # a genuine VERP token in a DSN about someone else (a quoted
        # copy, a forward that bounced): not this subscriber's bounce
        ("DSN about another address", fixture("dsn-postfix-hard.eml",
                                              tok[KEEP],
                                              rcpt="else@example.net"),
         (), "another address")]:
    rc, out, err = bounce(k, raw, *args)
    ok(rc == 0 and "ignored" in err and why in err and
       "Sanitizer" not in err, "%s: exit 0, ignored (%s)" % (name, why),
       (rc, err[-2000:]))
ok(states(k) == snap, "ignored messages changed nobody", (snap, states(k)))

# A DSN cut short in its text part: a mailer daemon's "Undelivered Mail"
# to a VERP address is still a bounce, but with no status only a soft one.
rc, out, err = bounce(k, fixture("dsn-postfix-hard.eml", tok[KEEP])[:900])
ok(rc == 0 and "recorded soft (text)" in err and "not counted yet" in err,
   "truncated DSN: a soft bounce, not counted yet", (rc, err))
ok(states(k) == snap, "so no state changed", states(k))

# A truncated MIME DSN that still says "failed 5.x.x" counts.
raw = fixture("truncated.eml", tok[VAC])
rc, out, err = bounce(k, raw, "--dry-run")
ok(rc == 0 and "kind: hard" in out and "status: 5.2.1" in out,
   "--dry-run shows the verdict of a truncated DSN", out)
ok(states(k) == snap, "--dry-run changed nothing", states(k))

after = states(k)
ok(after[VAC] == ("active", "0") and after[KEEP] == ("active", "0"),
   "the others untouched", (before, after))
ok(after[REJECT] == ("bounced", "1"), "%s: one counted bounce" % REJECT,
   after)

# kairanctl bounces: every recorded one, newest first, with its source.
rc, out, err = k.ctl("bounces")
lines = out.splitlines()[1:]
srcs = [line.split()[6] for line in lines if len(line.split()) > 6]
ok(rc == 0 and srcs == ["text", "arf", "dsn", "dsn", "dsn", "smtp"],
   "bounces lists 6 rows newest first (text, arf, 3 dsn, smtp)", out)
ok(REJECT in out and "5.1.1" in out and "complaint" in out,
   "bounces shows address, status and kind", out)
rc, out, err = k.ctl("bounces", "--report", "1", "--limit", "2")
ok(rc == 0 and len(out.splitlines()) == 3, "--report 1 --limit 2", out)
# kairanctl status REPORT sums what its copies drew, as `bounces` lists it.
rc, out, err = k.ctl("bounces", "--report", "1")
kinds = {"hard": 0, "soft": 0, "complaint": 0}
for line in out.splitlines()[1:]:
    for w in line.split():
        if w in kinds:
            kinds[w] += 1
            break
rc, st, err = k.ctl("status", "1")
ok(rc == 0 and kinds["hard"] >= 2 and kinds["complaint"] == 1 and
   ("bounced    %d hard, %d soft" % (kinds["hard"], kinds["soft"])) in st and
   ("complaints %d" % kinds["complaint"]) in st,
   "status 1 sums report 1's bounces and complaints %s" % kinds, (st, out))
rc, out, err = k.ctl("bounces", "--report", "99")
ok(rc == 0 and len(out.splitlines()) == 1, "no bounces for report 99", out)
rc, out, err = k.ctl("bounces", "--limit", "x")
ok(rc == 2, "bad --limit is a usage error", (rc, err))
rc, out, err = k.ctl("bounce", "--what")
ok(rc == 64, "bad bounce argument: EX_USAGE", (rc, err))

# The next report reaches only the three still active.
n0 = len(smtp.log())
rc, out, err = k.send_report(harness.report("第2号", "次号です。"), "r2.md")
ok(rc == 0 and "queued to 3 subscribers" in out,
   "second report queued to the 3 still active", (out, err))
smtp.wait_count(n0 + 3, 60)
new = {r.lower(): e["mail_from"] for e in smtp.log()[n0:] for r in e["rcpt"]}
ok(sorted(new) == sorted([SOFT, VAC, KEEP]), "bounced and unsubscribed get "
   "no more mail", new)

# Its copy to SOFT bounces soft too: two copies within the window count.
m = re.match(r"bounces\+([A-Za-z0-9_-]+)@", new.get(SOFT, ""))
rc, out, err = bounce(k, fixture("dsn-soft-expired.eml",
                                 m.group(1) if m else "x", rcpt=SOFT))
ok(rc == 0 and "now bounced" in err and "report=2" in err,
   "second soft bounce (report 2) counts", err)
ok(states(k)[SOFT] == ("bounced", "1"), "%s bounced after two soft" % SOFT,
   states(k))

n0 = len(smtp.log())
rc, out, err = k.send_report(harness.report("第3号", "三号です。"), "r3.md")
ok(rc == 0 and "queued to 2 subscribers" in out,
   "third report queued to the 2 still active", (out, err))
smtp.wait_count(n0 + 2, 60)
new = [r.lower() for e in smtp.log()[n0:] for r in e["rcpt"]]
ok(sorted(new) == sorted([VAC, KEEP]), "only the two untouched get the "
   "third report", new)

# Store unavailable: 75 so the MTA retries; garbage still 0 without it.
cfg2 = os.path.join(base, "broken.yaml")
with open(k.config) as f:
    text = f.read()
with open(cfg2, "w") as f:
    f.write(text.replace("database: %s/kairan.db" % base,
                         "database: %s/missing-dir/kairan.db" % base))


def ctl2(raw, cfg):
    import subprocess
    r = subprocess.run([harness.KAIRANCTL, "--config", cfg, "bounce"],
                       input=raw, capture_output=True)
    return r.returncode, r.stderr.decode("utf-8", "replace")


rc, err = ctl2(fixture("dsn-postfix-hard.eml", tok[KEEP]), cfg2)
ok(rc == 75 and "retry" in err, "database unavailable: exit 75", (rc, err))
rc, err = ctl2(fixture("dsn-postfix-hard.eml", tok[KEEP]),
               os.path.join(base, "no-such-config.yaml"))
ok(rc == 75, "config unreadable: exit 75", (rc, err))
rc, err = ctl2(fixture("vacation.eml", tok[KEEP]), cfg2)
ok(rc == 0 and "auto-reply" in err, "an auto-reply needs no store: exit 0",
   (rc, err))
ok(states(k)[KEEP] == ("active", "0"), "%s still untouched" % KEEP,
   states(k))
ok(k.proc.alive(), "kairand still running")
done()
