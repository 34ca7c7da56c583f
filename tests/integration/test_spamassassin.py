"""Debian's SpamAssassin (spamassassin -t -L: local tests only, no network)
on a message composed from config/sample-report.md by `kairanctl send
--dry-run --out`, and on the confirmation mails (ja, en) from
kr_compose_confirm (tests/integration/compose_dump.c): the total must be <= 0 and no rule with a positive score
may fire (0-point informational rules such as NO_RECEIVED, NO_RELAYS and
HTML_MESSAGE are expected). The score and the rules are printed as TAP
comments for the record."""
import glob
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Kairan, ROOT, build_c_helper, done, ok, tmpdir  # noqa: E402,E501


def score(path, home):
    with open(path, "rb") as f:
        r = subprocess.run(["spamassassin", "-t", "-L"], stdin=f,
                           capture_output=True, env=dict(os.environ,
                                                         HOME=home),
                           timeout=300)
    out = r.stdout.decode("utf-8", "replace")
    m = re.search(r"Content analysis details:\s+\((-?[0-9.]+) points", out)
    rules = re.findall(r"^\s*(-?[0-9.]+)\s+([A-Z0-9_]+)\s", out, re.M)
    return (float(m.group(1)) if m else None,
            [(float(p), n) for p, n in rules])


base = tmpdir()
k = Kairan(base, start=False)
csv = os.path.join(base, "s.csv")
with open(csv, "w") as f:
    f.write("email,name\nreader@example.org,\n")
rc, out, err = k.ctl("subscribers", "import", csv, "--list", "sips-report",
                     "--confirmed")
ok(rc == 0, "a subscriber imported", err)
rc, out, err = k.ctl("send", os.path.join(ROOT, "config/sample-report.md"),
                     "--dry-run", "1", "--out", os.path.join(base, "dry"))
files = glob.glob(os.path.join(base, "dry", "*.eml"))
ok(rc == 0 and len(files) == 1, "sample report composed", err)
if files:
    total, rules = score(files[0], base)
    print("# spamassassin -t -L on the sample report: %s points" % total)
    for p, n in rules:
        print("#   %5.1f %s" % (p, n))
    ok(total is not None and total <= 0, "total score <= 0", total)
    pos = [(p, n) for p, n in rules if p > 0]
    ok(not pos, "no rule with a positive score fired", pos)

exe = build_c_helper("compose_dump", base)
ok(exe is not None, "compose_dump builds")
for lang in ("ja", "en"):
    if exe is None:
        break
    path = os.path.join(base, "confirm-%s.eml" % lang)
    with open(path, "wb") as f:
        r = subprocess.run([exe, os.path.join(base, "key"), lang], stdout=f)
    total, rules = score(path, base)
    print("# spamassassin -t -L on the %s confirmation mail: %s points"
          % (lang, total))
    for p, n in rules:
        print("#   %5.1f %s" % (p, n))
    ok(r.returncode == 0 and total is not None and total <= 0,
       "confirmation mail (%s): total score <= 0" % lang, total)
    pos = [(p, n) for p, n in rules if p > 0]
    ok(not pos, "confirmation mail (%s): no positive rule" % lang, pos)

done()
