"""GET /archive.atom against a real kairand: the reports of /archive as an
Atom feed (RFC 4287), read with Python's xml.etree: the feed's id, title,
updated and links; one entry per sent report with a tag: id that stays
the same from one build to the next, its subject escaped (it parses and
comes back as it was), updated from the report's own date or else the
time it went, and a link to /archive/ID; the /archive page links the
feed in its head; no list with archive: true, no feed (404)."""
import calendar
import os
import re
import sys
import time
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

A = "{http://www.w3.org/2005/Atom}"
BASE = "https://news.example.jp"
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
EVIL = "<b>\"Q&A\"</b> & 'x' &amp; 第1号"


def feed(k):
    st, hd, body = h.http("GET", k.url("/archive.atom"))
    try:
        root = ET.fromstring(body)
    except ET.ParseError as e:
        root = None
        h.ok(False, "the feed parses as XML", (e, body[:600]))
    return st, hd, body, root


def text(el, tag):
    c = el.find(A + tag)
    return None if c is None else c.text


def entries(root):
    return [] if root is None else root.findall(A + "entry")


base = h.tmpdir()
k = h.Kairan(base)

# ---- no report yet: a feed with no entry ----
st, hd, body, root = feed(k)
h.ok(st == 200 and hd.get("Content-Type") ==
     "application/atom+xml; charset=utf-8",
     "GET /archive.atom: 200 application/atom+xml; charset=utf-8",
     (st, hd))
h.ok(root is not None and root.tag == A + "feed" and
     text(root, "id") == BASE + "/archive" and text(root, "title") and
     RFC3339.match(text(root, "updated") or "") and
     entries(root) == [],
     "an empty feed: id, title and updated, no entry", body[:600])
h.ok(root is not None and
     root.find(A + "author/" + A + "name").text == "株式会社Example",
     "the feed's author: the sender", body[:600])
links = {} if root is None else {
    l.get("rel"): l.get("href") for l in root.findall(A + "link")}
h.ok(links == {"self": BASE + "/archive.atom",
               "alternate": BASE + "/archive"},
     "the feed links itself and /archive", links)

# ---- two reports: one with its own date and a hostile subject ----
rc, out, err = k.add_subscribers(["a@example.jp", "b@example.jp"])
h.ok(rc == 0, "two subscribers", out + err)
k.drop_report("---\nsubject: %s\nlist: sips-report\ndate: 2024-02-29\n"
              "---\n本文です。\n" % EVIL, name="r1.md")
h.ok(h.wait_for(lambda: len(entries(feed(k)[3])) == 1, 30),
     "the sent report shows in the feed", k.logtext()[-1500:])
k.drop_report(h.report("第2号 日付なし", "二号。"), name="r2.md")
h.ok(h.wait_for(lambda: len(entries(feed(k)[3])) == 2, 30),
     "a second report shows in the feed", k.logtext()[-1500:])
t_sent = time.time()

st, hd, body, root = feed(k)
es = entries(root)
h.ok(len(es) == 2 and all(text(e, "id") and text(e, "title") and
                          text(e, "updated") and e.find(A + "link") is not None
                          for e in es),
     "each entry has id, title, updated and link", body[-1200:])
by_title = {text(e, "title"): e for e in es}
e1, e2 = by_title.get(EVIL), by_title.get("第2号 日付なし")
h.ok(e1 is not None and b"<b>" not in body and b"&lt;b&gt;" in body,
     "a subject with <, & and quotes is escaped and comes back as it was",
     (list(by_title), body[-1200:]))
h.ok(e1 is not None and text(e1, "updated") == "2024-02-29T00:00:00Z",
     "updated: the report's own date", None if e1 is None else
     text(e1, "updated"))
u2 = None if e2 is None else text(e2, "updated")
ok2 = False
if u2 and RFC3339.match(u2):
    t2 = calendar.timegm(time.strptime(u2, "%Y-%m-%dT%H:%M:%SZ"))
    ok2 = abs(t2 - t_sent) < 120
h.ok(ok2, "updated without a date of its own: the time it went (RFC 3339)",
     (u2, t_sent))
h.ok(text(root, "updated") == u2,
     "the feed's updated: its newest entry's", (text(root, "updated"), u2))
ids = [text(e, "id") for e in es]
h.ok(all(re.match(r"^tag:news\.example\.jp,\d{4}-\d\d-\d\d:/archive/\d+$",
                  i or "") for i in ids) and len(set(ids)) == 2,
     "entry ids: distinct tag: URIs", ids)

st, _, page = h.http("GET", k.url("/archive"))
page = page.decode("utf-8", "replace")
arch_ids = re.findall(r'href="archive/(\d+)"', page)
hrefs = [e.find(A + "link").get("href") for e in es]
h.ok(sorted(hrefs) == sorted(BASE + "/archive/" + i for i in arch_ids) and
     len(hrefs) == 2,
     "entry links: /archive/ID of the reports /archive lists",
     (hrefs, arch_ids))
h.ok(all(e.find(A + "link").get("rel") in (None, "alternate") for e in es),
     "entry links are the alternate")
head = page[:page.find("</head>")]
h.ok('<link rel="alternate" type="application/atom+xml"' in head and
     'href="%s/archive.atom"' % BASE in head,
     "the /archive page links the feed in its head", head[-400:])

# Served from the list /archive is built from, not read per request.
def builds():
    return k.metrics().get("kairan_http_archive_builds_total", -1)


time.sleep(2.5)  # past the shortest rebuild interval
b0 = builds()
t0 = time.time()
bodies = [h.http("GET", k.url(p))[2] for _ in range(10)
          for p in ("/archive.atom", "/archive")][::2]
most = 1 + int((time.time() - t0) / 2.0)
b1 = builds()
h.ok(b0 >= 1 and b1 - b0 <= most and all(b == bodies[0] for b in bodies),
     "the feed and /archive 10 times each: the store is read at most %d "
     "time(s) (%s -> %s)" % (most, b0, b1))

# The same ids when the list is built again (another report, later).
time.sleep(2.5)
k.drop_report(h.report("第3号", "三号。"), name="r3.md")
h.ok(h.wait_for(lambda: len(entries(feed(k)[3])) == 3, 30),
     "a third report shows in the feed")
ids3 = [text(e, "id") for e in entries(feed(k)[3])]
h.ok(set(ids) <= set(ids3) and len(set(ids3)) == 3,
     "built again: the earlier entries keep their ids", (ids, ids3))
st, _, _ = h.http("GET", k.url("/"))
h.ok(st == 200 and "/archive.atom" not in
     h.http("GET", k.url("/"))[2].decode("utf-8", "replace"),
     "the sign-up page is as it was (no feed link)")
st, _, _ = h.http("POST", k.url("/archive.atom"), "x=1")
h.ok(st == 405, "POST /archive.atom: 405", st)
h.ok(k.stop() == 0, "kairand stops cleanly", k.logtext())

# ---- no list archives: no feed ----
k2 = h.Kairan(h.tmpdir(), lists="""
  - id: closed
    name: Closed
    from: "Closed <closed@news.example.jp>"
    language: en
    archive: false
""")
st, _, _ = h.http("GET", k2.url("/archive.atom"))
h.ok(st == 404, "no list with archive: true: /archive.atom 404", st)
page = h.http("GET", k2.url("/archive"))[2].decode("utf-8", "replace")
h.ok("archive.atom" not in page, "and /archive links no feed", page[:600])
h.ok(k2.stop() == 0, "kairand stops cleanly")
h.done()
