"""Shared pieces of the integration tests: TAP output, free ports, a real
SMTP server (smtp_server.py on aiosmtpd), and a real kairand started on a
temporary config and stopped by its pid.

Run with Debian's /usr/bin/python3 (it has aiosmtpd). Environment:
KAIRAN_BUILD (default build/asan) names the build folder with kairand and
kairanctl; KAIRAN_ROOT the repository.
"""
import atexit
import json
import os
import re
import shutil
import signal
import signal as _sig
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.environ.get("KAIRAN_ROOT") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.join(ROOT, os.environ.get("KAIRAN_BUILD", "build/asan"))
KAIRAND = os.path.join(BUILD, "kairand")
KAIRANCTL = os.path.join(BUILD, "kairanctl")
HERE = os.path.dirname(os.path.abspath(__file__))

_n = 0
_failed = 0
_procs = []


def _schema_version():
    with open(os.path.join(ROOT, "lib", "store_backend.h")) as f:
        return int(re.search(r"#define KR_STORE_SCHEMA_VERSION (\d+)",
                             f.read()).group(1))


# The schema version this build writes (what /healthz names).
SCHEMA = _schema_version()


def healthz_ok(database):
    """The whole body of a healthy /healthz: "ok", then which database
    (an SQLite path, or "postgresql HOST:PORT/DBNAME") and its schema."""
    if not database.startswith("postgresql "):
        database = "sqlite " + database
    return "ok\ndatabase: %s, schema v%d\n" % (database, SCHEMA)


def ok(cond, name, detail=None):
    """One TAP line; returns cond so tests can branch on it."""
    global _n, _failed
    _n += 1
    if cond:
        print("ok %d - %s" % (_n, name), flush=True)
    else:
        _failed += 1
        print("not ok %d - %s" % (_n, name), flush=True)
        if detail is not None:
            for line in str(detail).splitlines()[:40]:
                print("#   " + line, flush=True)
    return bool(cond)


def done():
    print("1..%d" % _n, flush=True)
    stop_all()
    sys.exit(1 if _failed else 0)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def tmpdir(prefix="kairan-test-"):
    d = tempfile.mkdtemp(prefix=prefix)
    if not os.environ.get("KAIRAN_KEEP"):
        atexit.register(shutil.rmtree, d, True)
    return d


def wait_for(pred, timeout=10.0, step=0.05):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def wait_port(port, timeout=10.0):
    def up():
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return True
        except OSError:
            return False
    return wait_for(up, timeout)


class Proc:
    def __init__(self, argv, env=None, log=None, **kw):
        self.argv = argv
        self.log = log
        out = open(log, "ab") if log else subprocess.DEVNULL
        e = dict(os.environ)
        if env:
            e.update(env)
        self.p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT
                                  if log else None, env=e, **kw)
        self.pid = self.p.pid
        _procs.append(self)

    def alive(self):
        return self.p.poll() is None

    def signal(self, sig):
        if self.alive():
            os.kill(self.pid, sig)

    def stop(self, sig=_sig.SIGTERM, timeout=20):
        if self.alive():
            os.kill(self.pid, sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, _sig.SIGKILL)
                self.p.wait()
        return self.p.returncode

    def kill9(self):
        return self.stop(_sig.SIGKILL)


def stop_all():
    for p in _procs:
        try:
            p.stop(timeout=5)
        except Exception:
            pass


atexit.register(stop_all)


class SmtpServer:
    """smtp_server.py on a free port; messages land in self.dir."""

    def __init__(self, base, extra=(), rules=None):
        self.port = free_port()
        self.dir = os.path.join(base, "smtp-%d" % self.port)
        os.makedirs(self.dir)
        self.rules_path = os.path.join(base, "rules-%d.json" % self.port)
        self.set_rules(rules or {})
        self.base = base
        self.extra = list(extra)
        self.up()

    def up(self):
        """Starts the server (again, after down(): same port, same
        folder; numbering goes on)."""
        self.proc = Proc(["/usr/bin/python3", os.path.join(HERE,
                          "smtp_server.py"), "--port", str(self.port),
                          "--dir", self.dir, "--rules", self.rules_path]
                         + self.extra,
                         log=os.path.join(self.base, "smtp-%d.log" %
                                          self.port))
        if not wait_port(self.port, 15):
            raise RuntimeError("smtp server did not start")

    def down(self):
        """Stops the server: connections to its port are refused."""
        self.proc.stop()

    def set_rules(self, rules):
        tmp = self.rules_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(rules, f)
        os.rename(tmp, self.rules_path)

    def log(self):
        try:
            with open(os.path.join(self.dir, "log.jsonl")) as f:
                return [json.loads(line) for line in f if line.strip()]
        except OSError:
            return []

    def messages(self):
        """[(log entry, raw bytes)] in arrival order."""
        out = []
        for e in self.log():
            with open(os.path.join(self.dir, "%d.eml" % e["n"]), "rb") as f:
                out.append((e, f.read()))
        return out

    def wait_count(self, n, timeout=30):
        return wait_for(lambda: len(self.log()) >= n, timeout)

    def stop(self):
        self.proc.stop()


def config_text(base, http_port, admin_port, smtp_port=None, lists=None,
                extra="", delivery_extra="", database=None, key_file=None):
    """A complete kairan.yaml for a test, state under base. delivery_extra:
    more "  key: value" lines for the delivery section. database: the
    YAML value of database: (default an SQLite file under base); key_file
    likewise (hosts sharing one database share one key)."""
    lists = lists or """
  - id: sips-report
    name: SIPS セキュリティレポート
    from: "SIPS Security Report <report@news.example.jp>"
    reply_to: info@example.jp
    double_opt_in: true
    language: ja
    archive: true
    footer: |
      株式会社Example 東京都千代田区 / 配信停止: {{unsubscribe_url}}
"""
    if smtp_port:
        # Defaults for the keys delivery_extra does not set itself.
        defaults = "".join(
            "  %s: %s\n" % (key, val) for key, val in
            (("workers", "2"), ("retry", "[1s, 2s]"), ("max_age", "1h"))
            if not re.search(r"^  %s:" % key, delivery_extra, re.M))
        transport = """delivery:
  transport: smtp
%s%s
smtp:
  - host: 127.0.0.1
    port: %d
    tls: none
""" % (defaults, delivery_extra, smtp_port)
    else:
        transport = """delivery:
  transport: maildir
  maildir: %s/mail
%s
""" % (base, delivery_extra)
    return """database: {database}
key_file: {key_file}
public_url: https://news.example.jp
http:
  listen: 127.0.0.1:{http}
  trusted_proxies: [127.0.0.1]
admin:
  listen: 127.0.0.1:{admin}
outbox: {base}/outbox
sender:
  name: 株式会社Example
  address: 東京都千代田区千代田1-1
  contact: info@example.jp
lists:{lists}
{transport}
log:
  level: debug
{extra}
""".format(base=base, http=http_port, admin=admin_port, lists=lists,
           transport=transport, extra=extra,
           database=database or base + "/kairan.db",
           key_file=key_file or base + "/token.key")


class Kairan:
    """A real kairand on a temporary config."""

    def __init__(self, base, smtp_port=None, lists=None, extra="",
                 env=None, start=True, delivery_extra="", database=None,
                 key_file=None):
        self.base = base
        self.http_port = free_port()
        self.admin_port = free_port()
        os.makedirs(os.path.join(base, "outbox"), exist_ok=True)
        self.config = os.path.join(base, "kairan.yaml")
        with open(self.config, "w") as f:
            f.write(config_text(base, self.http_port, self.admin_port,
                                smtp_port, lists, extra, delivery_extra,
                                database, key_file))
        self.env = env or {}
        self.proc = None
        if start:
            self.start()

    def start(self):
        # make valgrind: KAIRAN_VALGRIND holds the valgrind command line;
        # its report goes to valgrind-PID.log and an error makes kairand
        # exit 1 (so "SIGTERM exits 0" fails).
        vg = os.environ.get("KAIRAN_VALGRIND", "").split()
        if vg:
            vg.append("--log-file=" + os.path.join(self.base,
                                                   "valgrind-%p.log"))
        self.proc = Proc(vg + [KAIRAND, "--config", self.config],
                         env=self.env,
                         log=os.path.join(self.base, "kairand.log"))
        t = 120 if vg else 20
        if not wait_port(self.http_port, t) or \
                not wait_port(self.admin_port, 10):
            raise RuntimeError("kairand did not start:\n" + self.logtext())

    def log_has(self, needle):
        try:
            with open(os.path.join(self.base, "kairand.log"),
                      errors="replace") as f:
                return needle in f.read()
        except OSError:
            return False

    def wait_log(self, needle, timeout=30):
        return wait_for(lambda: self.log_has(needle), timeout)

    def metrics(self):
        """GET /metrics on the admin listener: {"name{labels}": value}."""
        st, _, body = http("GET", self.admin_url("/metrics"))
        out = {}
        if st != 200:
            return out
        for line in body.decode("utf-8", "replace").splitlines():
            if not line or line.startswith("#"):
                continue
            k, _, v = line.rpartition(" ")
            try:
                out[k] = float(v)
            except ValueError:
                pass
        return out

    def counter(self, outcome, list_id="sips-report"):
        """kairan_delivery_messages_total summed over relays."""
        pre = 'kairan_delivery_messages_total{list="%s",' % list_id
        suf = 'outcome="%s"}' % outcome
        return sum(v for k, v in self.metrics().items()
                   if k.startswith(pre) and k.endswith(suf))

    def add_subscribers(self, emails, list_id="sips-report"):
        """Adds confirmed subscribers through `kairanctl subscribers
        import` (CSV). Returns (rc, stdout, stderr)."""
        path = os.path.join(self.base, "import-%d.csv" % len(emails))
        with open(path, "w") as f:
            f.write("email,name\n")
            for e in emails:
                f.write("%s,\n" % e)
        return self.ctl("subscribers", "import", "--list", list_id,
                        "--confirmed", path)

    def send_report(self, text, name="report.md"):
        path = os.path.join(self.base, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return self.ctl("send", path)

    def drop_report(self, text, name="report.md"):
        """The outbox contract: write elsewhere, rename into the folder."""
        tmp = os.path.join(self.base, "outbox", "." + name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.rename(tmp, os.path.join(self.base, "outbox", name))

    def logtext(self):
        try:
            with open(os.path.join(self.base, "kairand.log"),
                      errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.http_port, path)

    def admin_url(self, path):
        return "http://127.0.0.1:%d%s" % (self.admin_port, path)

    def ctl(self, *args, input=None):
        r = subprocess.run([KAIRANCTL, "--config", self.config] + list(args),
                           input=input, capture_output=True,
                           env=dict(os.environ, **self.env))
        return r.returncode, r.stdout.decode("utf-8", "replace"), \
            r.stderr.decode("utf-8", "replace")

    def stop(self, sig=signal.SIGTERM):
        return self.proc.stop(sig)


def report(subject, body, list_id="sips-report"):
    """A report file: YAML front matter and Markdown."""
    return "---\nsubject: %s\nlist: %s\n---\n%s\n" % (subject, list_id,
                                                        body)


def rcpt_counts(smtp):
    """{recipient: copies received} at an SmtpServer."""
    out = {}
    for e in smtp.log():
        for r in e["rcpt"]:
            out[r.lower()] = out.get(r.lower(), 0) + 1
    return out


class NotifySocket:
    """A unix datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, base):
        self.path = os.path.join(base, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.seen = []

    def poll(self):
        while True:
            try:
                data = self.sock.recv(4096)
            except (socket.timeout, BlockingIOError):
                return self.seen
            self.seen.extend(data.decode("utf-8", "replace").splitlines())

    def wait(self, line, timeout=20, after=0):
        """Waits for an exact line at index >= after; returns its index
        or -1."""
        end = time.time() + timeout
        while time.time() < end:
            self.poll()
            for i in range(after, len(self.seen)):
                if self.seen[i] == line:
                    return i
        return -1

    def close(self):
        self.sock.close()


def http(method, url, data=None, headers=None, timeout=10):
    """A real HTTP request; returns (status, headers, body bytes)."""
    if isinstance(data, dict):
        data = urllib.parse.urlencode(data).encode()
    elif isinstance(data, str):
        data = data.encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


import urllib.parse  # noqa: E402  (used by http())


def build_c_helper(name, base):
    """Compiles tests/integration/NAME.c against the build's libkairan.a
    with the build's flags (a small driver for one lib/ module); returns
    the executable's path, or None (the compiler's message is printed as
    TAP comments)."""
    flags = open(os.path.join(BUILD, ".flags")).read().split()
    libs = []
    for pkgs in (["libsodium", "yaml-0.1", "sqlite3", "libpq", "libcurl",
                  "libcmark"],
                 ["libidn2"]):
        libs += subprocess.run(["pkg-config", "--libs"] + pkgs,
                               capture_output=True,
                               text=True).stdout.split()
    exe = os.path.join(base, name)
    r = subprocess.run(["cc"] + [f for f in flags if f not in ("-MMD", "-MP")]
                       + ["-I" + os.path.join(ROOT, "lib"),
                          os.path.join(HERE, name + ".c"),
                          os.path.join(BUILD, "libkairan.a")] + libs
                       + ["-o", exe], capture_output=True, text=True,
                       cwd=base)
    if r.returncode != 0:
        print("# " + r.stderr.replace("\n", "\n# "))
        return None
    return exe
