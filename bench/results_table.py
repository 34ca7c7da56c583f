#!/usr/bin/env python3
"""The README's benchmark table, generated from bench/RESULTS.md.

RESULTS.md holds one section ("## TITLE") per benchmark, each with a
two-column table of KEYS (what, command, kairan, peer, ratio, date,
commit, machine, history). The README's table is one row per section:
what | command | kairan | peer, same run | ratio, between the two marker
comments BEGIN and END.

usage: bench/results_table.py [--results RESULTS.md] [--check | --write]
                              [README.md]
  (no option)  print the table
  --check      exit 1, with a diff, when README.md's table is not the
               generated one
  --write      put the generated table into README.md
Problems in RESULTS.md are reported as FILE:LINE:COLUMN: what, expected
what, and exit 2."""
import difflib
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "RESULTS.md")
KEYS = ["what", "command", "kairan", "peer, same run", "ratio", "date",
        "commit", "machine", "history"]
COLUMNS = ["what", "command", "kairan", "peer, same run", "ratio"]
BEGIN = ("<!-- benchmark table: generated from bench/RESULTS.md by "
         "`bench/results_table.py --write`; do not edit here -->")
END = "<!-- end of the benchmark table -->"
DATE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d(–\d\d:\d\d)? UTC$")
COMMIT = re.compile(r"^[0-9a-f]{7,40}$")


class Bad(Exception):
    pass


def parse(path=RESULTS):
    """[(title, line, {key: value})] in file order."""
    sections, errors = [], []
    name = os.path.relpath(path, ROOT) if path.startswith(ROOT) else path
    cur = None
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for i, line in enumerate(lines, 1):
        if line.startswith("## "):
            cur = (line[3:].strip(), i, {})
            sections.append(cur)
            continue
        m = re.match(r"^\| ([^|]+?) \| (.*) \|$", line)
        if cur is None or m is None:
            continue
        key, value = m.group(1), m.group(2).strip()
        if key not in KEYS:
            errors.append("%s:%d:3: unknown key '%s' in section '%s', "
                          "expected one of: %s"
                          % (name, i, key, cur[0], ", ".join(KEYS)))
        elif key in cur[2]:
            errors.append("%s:%d:3: key '%s' twice in section '%s', "
                          "expected it once" % (name, i, key, cur[0]))
        elif value == "":
            errors.append("%s:%d:%d: '%s' is empty in section '%s', "
                          "expected a value ('—' for none)"
                          % (name, i, len(key) + 6, key, cur[0]))
        else:
            cur[2][key] = (value, i, len(key) + 6)
    titles = {}
    for title, line, kv in sections:
        if title in titles:
            errors.append("%s:%d:4: section '%s' again (first at line %d), "
                          "expected one section per benchmark: older runs "
                          "go to bench/history/" % (name, line, title,
                                                   titles[title]))
        titles.setdefault(title, line)
        for k in KEYS:
            if k not in kv:
                errors.append("%s:%d:1: section '%s' lacks '%s', expected "
                              "a '| %s | … |' row" % (name, line, title, k, k))
        if "date" in kv and not DATE.match(kv["date"][0]):
            v, ln, col = kv["date"]
            errors.append("%s:%d:%d: date '%s', expected YYYY-MM-DD HH:MM "
                          "UTC (or HH:MM–HH:MM)" % (name, ln, col, v))
        if "commit" in kv and not COMMIT.match(kv["commit"][0]):
            v, ln, col = kv["commit"]
            errors.append("%s:%d:%d: commit '%s', expected a hexadecimal "
                          "commit id" % (name, ln, col, v))
        for target in re.findall(r"\]\(([^)]+)\)", kv.get("history", ("",))[0]):
            if not os.path.isfile(os.path.join(os.path.dirname(path), target)):
                v, ln, col = kv["history"]
                errors.append("%s:%d:%d: history link '%s' names no file, "
                              "expected a file under bench/history/"
                              % (name, ln, col, target))
    if not sections:
        errors.append("%s:1:1: no '## ' section, expected one per benchmark"
                      % name)
    if errors:
        raise Bad("\n".join(sorted(errors, key=lambda e: int(
            e.split(":")[1]))))
    return [(t, ln, {k: v[0] for k, v in kv.items()})
            for t, ln, kv in sections]


def table(sections):
    out = ["| what | command | kairan | peer, same run | ratio |",
           "|---|---|---|---|---|"]
    for _, _, kv in sections:
        out.append("| " + " | ".join(kv[c] for c in COLUMNS) + " |")
    return "\n".join(out)


def block(sections):
    return "%s\n%s\n%s" % (BEGIN, table(sections), END)


def readme_block(text, name):
    b, e = text.find(BEGIN), text.find(END)
    if b < 0 or e < b:
        raise Bad("%s:1:1: no generated benchmark table, expected the "
                  "marker comments %s … %s" % (name, BEGIN, END))
    return b, e + len(END)


def main(argv):
    global RESULTS
    mode = "print"
    if len(argv) >= 2 and argv[0] == "--results":
        RESULTS = os.path.abspath(argv[1])
        argv = argv[2:]
    if argv and argv[0] in ("--check", "--write"):
        mode = argv.pop(0)[2:]
    readme = argv[0] if argv else os.path.join(ROOT, "README.md")
    try:
        sections = parse(RESULTS)
        want = block(sections)
        if mode == "print":
            print(table(sections))
            return 0
        with open(readme, encoding="utf-8") as f:
            text = f.read()
        b, e = readme_block(text, readme)
    except Bad as exc:
        print(exc, file=sys.stderr)
        return 2
    if text[b:e] == want:
        return 0
    if mode == "write":
        with open(readme + ".tmp", "w", encoding="utf-8") as f:
            f.write(text[:b] + want + text[e:])
        os.replace(readme + ".tmp", readme)
        print("%s: benchmark table rewritten from bench/RESULTS.md" % readme)
        return 0
    line = text.count("\n", 0, b) + 1
    print("%s:%d:1: the benchmark table is not the one bench/RESULTS.md "
          "gives, expected its output of bench/results_table.py --write:"
          % (readme, line), file=sys.stderr)
    sys.stderr.writelines(difflib.unified_diff(
        text[b:e].splitlines(True), (want + "\n").splitlines(True),
        "README.md", "from bench/RESULTS.md"))
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
