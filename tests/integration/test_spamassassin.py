"""Debian's SpamAssassin (spamassassin -t -L: local tests only, no network)
on a message composed from config/sample-report.md by `kairanctl send
--dry-run --out`: the total must be <= 0 and no rule with a positive score
may fire (0-point informational rules such as NO_RECEIVED, NO_RELAYS and
HTML_MESSAGE are expected). The score and the rules are printed as TAP
comments for the record."""
import glob
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Kairan, ROOT, done, ok, tmpdir  # noqa: E402


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

done()
