"""bench/RESULTS.md holds the current figures only, the README's benchmark
table is generated from it, and the history lives in bench/history/:

- the README's table is exactly what bench/results_table.py makes of
  RESULTS.md (one row per section), and a changed figure or a second
  section of one benchmark is caught, with FILE:LINE:COLUMN;
- every section has what, command, kairan, the peer of the same run,
  ratio, date, commit (a commit of this repository, where there is a
  .git), machine and a history link to a file that exists;
- bench/history/ has the dated files (27 moved there from RESULTS.md);
- no benchmark figure (msgs/s, req/s, µs per message, "measured N")
  sits in a comment in lib/, daemon/ or subscribers/: it goes to
  RESULTS.md and the comment points there.
Prints TAP."""
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.environ.get("KAIRAN_ROOT") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
TABLE = os.path.join(ROOT, "bench", "results_table.py")
n = 0
failed = 0


def ok(cond, name, detail=""):
    global n, failed
    n += 1
    print("%s %d - %s" % ("ok" if cond else "not ok", n, name))
    if not cond:
        failed += 1
        for line in str(detail).splitlines()[:30]:
            print("#   " + line)


def run(*args):
    p = subprocess.run([sys.executable, TABLE] + list(args), cwd=ROOT,
                       capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


rc, out, err = run("--check", os.path.join(ROOT, "README.md"))
ok(rc == 0, "README.md's benchmark table is the one bench/RESULTS.md gives",
   err)

sys.path.insert(0, os.path.join(ROOT, "bench"))
import results_table  # noqa: E402

try:
    sections = results_table.parse()
    perr = ""
except results_table.Bad as e:
    sections, perr = [], str(e)
ok(len(sections) >= 15 and not perr,
   "RESULTS.md: %d sections, each with %s" % (
       len(sections), ", ".join(results_table.KEYS)), perr)
titles = [t for t, _, _ in sections]
ok(len(set(titles)) == len(titles), "one section per benchmark", titles)

with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
    readme = f.read()
b = readme.find(results_table.BEGIN)
e = readme.find(results_table.END)
rows = [ln for ln in readme[b:e].splitlines() if ln.startswith("| ")]
ok(len(rows) == len(sections) + 1,
   "the README table has a row per section (%d) and a header" % len(sections),
   len(rows))

if os.path.isdir(os.path.join(ROOT, ".git")) or os.path.isfile(
        os.path.join(ROOT, ".git")):
    bad = []
    for t, _, kv in sections:
        c = kv["commit"]
        r = subprocess.run(["git", "-C", ROOT, "rev-parse", "--verify", "-q",
                            c + "^{commit}"], capture_output=True)
        if r.returncode != 0:
            bad.append("%s: %s" % (t, c))
    ok(not bad, "every section's commit is a commit of this repository", bad)
else:
    print("ok %d # SKIP no .git: commits not looked up" % (n + 1))
    n += 1

hist = sorted(os.listdir(os.path.join(ROOT, "bench", "history")))
named = [h for h in hist
         if re.match(r"^\d{4}-\d\d-\d\dT\d{4}-[a-z0-9-]+\.md$", h)]
ok(len(hist) >= 27 and named == hist,
   "bench/history/ holds %d dated files (DATE THHMM-NAME.md)" % len(hist),
   sorted(set(hist) - set(named)))
with open(os.path.join(ROOT, "bench", "RESULTS.md"), encoding="utf-8") as f:
    res = f.read()
ok(len(res.splitlines()) < 400 and not re.search(r"^## .*session \d", res,
                                                  re.M),
   "RESULTS.md is the current figures (%d lines), not the log of sessions"
   % len(res.splitlines()))

# A figure changed in the README is caught, at the table's line.
tmp = tempfile.mkdtemp()
try:
    # the table's first "N msgs/s" figure, one higher
    fig = re.compile(r"(\| [^|\n]*?)(\d[\d,]*)( msgs/s)").search(readme, b)
    new = "{:,}".format(int(fig.group(2).replace(",", "")) + 1)
    changed = readme[:fig.start(2)] + new + readme[fig.end(2):]
    p = os.path.join(tmp, "README.md")
    with open(p, "w", encoding="utf-8") as f:
        f.write(changed)
    rc, out, err = run("--check", p)
    line = readme.count("\n", 0, b) + 1
    ok(changed != readme and rc == 1 and
       err.startswith("%s:%d:1: the benchmark table is not" % (p, line)) and
       (new + " msgs/s") in err,
       "a figure edited in the README only is caught (%s:%d:1)" % (
           "README.md", line), err)
    # --write puts it right.
    rc, out, err = run("--write", p)
    with open(p, encoding="utf-8") as f:
        ok(rc == 0 and f.read() == readme,
           "bench/results_table.py --write restores the generated table",
           err)
    # A second section of one benchmark in RESULTS.md is refused.
    first = res.index("\n## ") + 1
    second = res.index("\n## ", first) + 1
    dup = res + "\n" + res[first:second]
    q = os.path.join(tmp, "RESULTS.md")
    with open(q, "w", encoding="utf-8") as f:
        f.write(dup)
    shutil.copytree(os.path.join(ROOT, "bench", "history"),
                    os.path.join(tmp, "history"))
    rc, out, err = run("--results", q)
    dupline = dup.count("\n", 0, len(res) + 1) + 1
    ok(rc == 2 and re.search(r":%d:4: section '.*' again \(first at line \d+\)"
                             % dupline, err),
       "a second section of one benchmark is refused (FILE:%d:4)" % dupline,
       err)
    # A section without its commit is refused, at the section's line.
    nocommit = re.sub(r"^\| commit \| [0-9a-f]+ \|\n", "", res, count=1,
                      flags=re.M)
    with open(q, "w", encoding="utf-8") as f:
        f.write(nocommit)
    rc, out, err = run("--results", q)
    ok(rc == 2 and "lacks 'commit', expected a '| commit | … |' row" in err,
       "a section without its commit is refused", err)
finally:
    shutil.rmtree(tmp)

# No benchmark figure in code comments.
FIG = re.compile(r"\d[\d,.]*\s*(?:msgs?/s|messages/s|messages per second|"
                 r"req/s|µs (?:of CPU|per message))|\bmeasured ~?\d")
found = []
for path in sorted(glob.glob(os.path.join(ROOT, "lib", "*.[ch]")) +
                   glob.glob(os.path.join(ROOT, "daemon", "*.[ch]")) +
                   glob.glob(os.path.join(ROOT, "subscribers", "*.[ch]"))):
    with open(path, encoding="utf-8") as f:
        src = f.read()
    for c in re.finditer(r"/\*.*?\*/|//[^\n]*", src, re.S):
        text = re.sub(r"\n\s*\*?\s*", " ", c.group(0))
        for m in FIG.finditer(text):
            found.append("%s:%d: %s" % (
                os.path.relpath(path, ROOT),
                src.count("\n", 0, c.start()) + 1,
                text[max(0, m.start() - 40):m.end()]))
ok(not found, "no benchmark figures in code comments (they are in "
   "bench/RESULTS.md)", "\n".join(found))
ok("bench/RESULTS.md" in open(os.path.join(ROOT, "lib", "smtp_engine.c"),
                              encoding="utf-8").read(),
   "lib/smtp_engine.c's comments point at bench/RESULTS.md")

print("1..%d" % n)
sys.exit(1 if failed else 0)
