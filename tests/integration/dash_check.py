#!/usr/bin/python3
"""What tests/integration/screenshot.sh's dashboard shows, checked against
the store (`kairanctl status`) while the pictures are taken:
    dash_check.py PHASE ADMIN_URL KAIRANCTL CONFIG COPIES COMPLAINTS
PHASE is "during" (the governor has paused the report after the
complaints: the figures hold still) or "after" (every copy has an
outcome). Prints one TAP line per check, unnumbered ("ok - …"): the
caller numbers them."""
import re
import subprocess
import sys
import urllib.request

phase, admin, ctl, config = sys.argv[1:5]
copies, complaints = int(sys.argv[5]), int(sys.argv[6])
failed = 0


def ok(cond, name, detail=""):
    global failed
    print("%s - %s: %s" % ("ok" if cond else "not ok", phase, name),
          flush=True)
    if not cond:
        failed += 1
        for line in str(detail).splitlines()[:12]:
            print("#   " + line[:300])


def get(path, lang):
    req = urllib.request.Request(admin + path,
                                 headers={"Accept-Language": lang})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, r.read().decode("utf-8", "replace")


def rects(svg, cls):
    return [dict(re.findall(r'([a-z-]+)="([^"]*)"', m.group(1)))
            for m in re.finditer(r'<rect class="%s"([^>]*)>' % cls, svg)]


def first_svg(page, cls):
    m = re.search(r'<svg class="%s".*?</svg>' % cls, page, re.S)
    return m.group(0) if m else ""


def status():
    out = subprocess.run([ctl, "--config", config, "status", "1"],
                         capture_output=True, text=True).stdout
    res = {}
    for key in ("sent", "deferred", "failed", "queued"):
        m = re.search(r"\b%s\s+(\d+)" % key, out)
        res[key] = int(m.group(1)) if m else -1
    return res, out


before, out = status()
st, page = get("/reports/1", "ja")
after, _ = status()
ok(before == after, "the counts held still while the page was read",
   (before, after))
k = after
ok(st == 200 and "宛先ドメイン別" in page, "/reports/1: 200, Japanese", st)
bar = first_svg(page, "progress")
total = re.search(r'data-total="(\d+)"', bar)
ok(total and int(total.group(1)) == copies,
   "the progress bar's total is %d" % copies, bar[:200])
widths = {c: sum(int(r["width"]) for r in rects(bar, c))
          for c in ("sent", "deferred", "failed", "queued")}
ok(sum(widths.values()) == 1000 and
   abs(widths["sent"] - 1000 * k["sent"] / copies) <= 1 and
   abs(widths["deferred"] - 1000 * k["deferred"] / copies) <= 1 and
   abs(widths["failed"] - 1000 * k["failed"] / copies) <= 1,
   "the bar's widths are the store's sent %d, deferred %d, failed %d "
   "of %d (per 1000)" % (k["sent"], k["deferred"], k["failed"], copies),
   (widths, out))
keys = dict((c, int(n)) for c, n in
            re.findall(r'<b class="c-([a-z]+)">(\d+)</b>', page))
ok(keys.get("sent") == k["sent"] and keys.get("deferred") == k["deferred"]
   and keys.get("failed") == k["failed"],
   "the key under the bar says what the store says", (keys, out))
chart = first_svg(page, "perminute")
ok(chart and sum(int(r["data-n"]) for r in rects(chart, "sent"))
   == k["sent"], "the per-minute chart adds up to the copies sent",
   chart[:300])
dom = re.search(r'<table id="domains">(.*?)</table>', page, re.S)
rows = re.findall(r"<tr><td>([^<]+)</td>((?:<td class=\"n\">\d+</td>)+)",
                  dom.group(1) if dom else "")
got = [(d, [int(x) for x in re.findall(r"\d+", n)]) for d, n in rows]
ok(len(got) == 10 and got[0][0] == "gmail.com" and
   all(sum(a[1]) >= sum(b[1]) for a, b in zip(got, got[1:])),
   "ten recipient domains, gmail.com (a quarter of the list) first, "
   "most copies first", got)
rep = re.search(r'<table id="replies">(.*?)</table>', page, re.S)
reps = re.findall(r'<tr class="([a-z]+)"><td>[^<]*</td><td><code>'
                  r'([^<]*)</code></td><td class="n">× (\d+)</td>',
                  rep.group(1) if rep else "")
grey = [int(n) for c, t, n in reps if c == "deferred" and "mailbox full" in t]
ok(k["deferred"] > 0 and grey == [k["deferred"]],
   "the relay's 452 mailbox full reply, grouped: × %d" % k["deferred"], reps)
ok('<b class="c-complaints">%d</b>' % complaints in page,
   "%d complaints counted" % complaints,
   re.findall(r'<p class="outcomes">.*?</p>', page, re.S))
if phase == "during":
    ok('id="governor"' in page and k["queued"] > 0,
       "the governor's pause and its reason are shown",
       re.findall(r'<p class="bad" id="governor">.*?</p>', page))
    ok('<b class="eta">—</b>' in page,
       "no ETA while paused: it ends when someone resumes it",
       re.findall(r'<b class="eta">[^<]*</b>', page))
else:
    ok(k["queued"] == 0 and k["sent"] + k["deferred"] + k["failed"] ==
       copies, "every copy has an outcome", out)

st, page = get("/reports", "en")
bar = first_svg(page, "progress")
ok(st == 200 and abs(sum(int(r["width"]) for r in rects(bar, "sent")) -
                     1000 * k["sent"] / copies) <= 1,
   "/reports, in English: the same sent bar", bar[:200])

st, page = get("/", "en")
row = re.search(r'<tr data-list="sips-report">(.*?)</tr>', page, re.S)
nums = [int(x) for x in re.findall(r'<td class="n st-\d">(\d+)</td>',
                                   row.group(1) if row else "")]
subs = subprocess.run([ctl, "--config", config, "subscribers", "list"],
                      capture_output=True, text=True).stdout.splitlines()
by = {}
for line in subs:
    f = line.split("\t")
    if len(f) > 2:
        by[f[2]] = by.get(f[2], 0) + 1
ok(len(nums) == 4 and nums[1] == by.get("active", 0) and
   nums[2] == by.get("unsubscribed", 0),
   "/: subscribers by status as `subscribers list` counts them",
   (nums, by))
days = first_svg(page, "days")
ok(sum(int(r["data-n"]) for r in rects(days, "signup")) == len(subs) and
   sum(int(r["data-n"]) for r in rects(days, "unsub")) ==
   by.get("unsubscribed", 0),
   "the 90-day chart: every sign-up and unsubscribe on its day",
   (len(subs), by))
sys.exit(1 if failed else 0)
