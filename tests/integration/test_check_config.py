"""kairanctl check-config: exit codes, FILE:LINE:COLUMN lines on stderr,
--config before or after the verb, --help. Runs the real binary."""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import KAIRANCTL, KAIRAND, ROOT, ok, done, tmpdir, config_text, free_port  # noqa
import pg  # noqa

base = tmpdir()


def ctl(*args, env=None):
    e = dict(os.environ)
    e.pop("KAIRAN_SMTP_PASSWORD", None)
    e.pop("KAIRAN_CONFIG", None)
    if env:
        e.update(env)
    r = subprocess.run([KAIRANCTL] + list(args), capture_output=True,
                       env=e, cwd=ROOT)
    return (r.returncode, r.stdout.decode("utf-8", "replace"),
            r.stderr.decode("utf-8", "replace"))


def write(name, text, mode=0o600):
    p = os.path.join(base, name)
    with open(p, "w") as f:
        f.write(text)
    os.chmod(p, mode)
    return p


# The harness's own config (what every integration test runs on) is valid.
good = write("good.yaml", config_text(base, 18080, 18081))
rc, out, err = ctl("--config", good, "check-config")
# (its key file does not exist yet: a note, no error)
ok(rc == 0 and "config OK" in out and
   [l for l in err.splitlines() if "note: key file" not in l] == [],
   "harness config is OK, exit 0", (rc, out, err))
ok("does not exist: kairand creates it on its first start with an empty "
   "database" in err, "a missing key file is a note", err)
# A key file kairand would refuse (readable by others) is an error here.
keyf = os.path.join(base, "token.key")
with open(keyf, "w") as f:
    f.write("1 1700000000 " + "A" * 43 + "\n")
os.chmod(keyf, 0o644)
rc, out, err = ctl("--config", good, "check-config")
ok(rc == 2 and "key_file" in err and keyf in err and "config OK" not in out,
   "a 0644 key file: exit 2, the file named", (rc, out, err))
os.unlink(keyf)
rc, out, err = ctl("check-config", "--config", good)
ok(rc == 0 and out.startswith(good + ": config OK"),
   "--config after the verb", (rc, out, err))
rc, out, err = ctl("check-config", "--config=" + good)
ok(rc == 0, "--config=FILE", (rc, out, err))
rc, out, err = ctl("check-config", env={"KAIRAN_CONFIG": good})
ok(rc == 0, "KAIRAN_CONFIG", (rc, out, err))

# A ja list missing a field of the 特定電子メール法 block: one line each,
# at the list's sender block, naming the law and the field; exit 2.
for field in ("name", "address", "contact"):
    other = "".join("      %s: x\n" % f for f in ("name", "address",
                                                    "contact") if f != field)
    t = config_text(base, 18080, 18081).replace(
        "sender:\n  name: 株式会社Example\n  address: 東京都千代田区千代田1-1\n"
        "  contact: info@example.jp\n", "").replace(
        "    language: ja\n", "    language: ja\n    sender:\n" + other)
    p = write("nosender-%s.yaml" % field, t)
    line = t[:t.index("    sender:\n")].count("\n") + 2
    rc, out, err = ctl("--config", p, "check-config")
    ok(rc == 2 and err.startswith(
        "%s:%d:7: lists[0].sender.%s: missing; a ja list must show it in "
        "every mail (特定電子メール法" % (p, line, field)) and
       err.count("\n") == 1,
       "check-config: a ja list without sender.%s is an error at "
       "FILE:LINE:COLUMN naming the law" % field, (rc, err))

# The shipped files (the example needs its relay password from the env).
rc, out, err = ctl("--config", "config/dev.yaml", "check-config")
ok(rc == 0 and "transport maildir" in out, "config/dev.yaml OK",
   (rc, out, err))
# Its DKIM keys are not in /etc/kairan/dkim here: check-config loads them
# (as kairand does), so it names the missing file; with keys made by
# `kairanctl dkim keygen` in their place the example is OK.
rc, out, err = ctl("--config", "config/kairan.yaml", "check-config",
                   env={"KAIRAN_SMTP_PASSWORD": "not-printed"})
ok(rc == 2 and "/etc/kairan/dkim/kairan-rsa.key" in err and
   "not-printed" not in out + err,
   "config/kairan.yaml without its DKIM keys: the key file is named",
   (rc, out, err))
dkim_dir = os.path.join(base, "dkim")
os.mkdir(dkim_dir, 0o700)
rc, out, err = ctl("dkim", "keygen", "--domain", "news.example.jp",
                   "--selector", "kairan", "--dir", dkim_dir)
with open(os.path.join(ROOT, "config/kairan.yaml"), encoding="utf-8") as f:
    example = write("example.yaml", f.read().replace("/etc/kairan/dkim",
                                                     dkim_dir))
rc, out, err = ctl("--config", example, "check-config",
                   env={"KAIRAN_SMTP_PASSWORD": "not-printed"})
ok(rc == 0 and "not-printed" not in out + err,
   "config/kairan.yaml OK (with its DKIM keys)", (rc, out, err))
with open(os.path.join(ROOT, "config/kairan.yaml"), encoding="utf-8") as f:
    pw_line = [i + 1 for i, line in enumerate(f)
               if line.startswith("    password_file: ")][0]
rc, out, err = ctl("--config", "config/kairan.yaml", "check-config")
ok(rc == 2 and ("config/kairan.yaml:%d:20: smtp[0].password_file: cannot "
                "read '/etc/kairan/smtp.pass'" % pw_line) in err,
   "example without the password: the file is named at its line",
   (rc, out, err))

# Every error, in file order, exit 2, nothing on stdout.
bad = write("bad.yaml", """public_url: ftp://x
lists:
  - id: Bad
    from: nobody
delivery:
  workers: 0
  colour: red
log: {level: loud}
""")
rc, out, err = ctl("--config", bad, "check-config")
lines = err.splitlines()
want = [bad + ":1:13: public_url: 'ftp://x' is not an http:// or https:// "
        "URL",
        bad + ":3:9: lists[0].id: 'Bad' is not a list id",
        bad + ":4:11: lists[0].from: 'nobody' has no '@'",
        bad + ":6:12: delivery.workers: '0' is out of range, expected a "
        "number 1..64",
        bad + ":7:3: unknown key 'colour' in delivery, expected one of: "
        "transport, maildir, workers,",
        bad + ":8:14: log.level: 'loud' is not one of the choices",
        bad + ":1:1: missing required key 'smtp'"]
ok(rc == 2 and out == "", "bad config: exit 2, nothing on stdout",
   (rc, out, err))
ok(len(lines) == len(want), "bad config: %d error lines" % len(want), err)
for w in want:
    ok(any(line.startswith(w) for line in lines), "error: " + w[len(base):],
       err)

# Files that are not configs: one clear line each, exit 2, no crash.
cases = [
    ("empty", write("empty.yaml", ""), ":1:1: the file is empty"),
    ("text", write("text.yaml", "just some words\n"),
     ":1:1: the file holds text at the top"),
    ("binary", write("bin.yaml", "\x7fELF\x01\x00\x00"),
     ":1:1: not valid UTF-8 text"),
    ("tab", write("tab.yaml", "http:\n\tlisten: 1\n"),
     ":2:1: tab character in indentation"),
    ("directory", base, ": is a directory"),
    ("missing", os.path.join(base, "nope.yaml"), ": cannot open: No such"),
]
if os.geteuid() != 0:
    cases.append(("unreadable", write("secret.yaml", "a: 1\n", 0),
                  ": cannot open: Permission denied"))
for what, path, msg in cases:
    rc, out, err = ctl("--config", path, "check-config")
    ok(rc == 2 and err.startswith(path + msg) and err.count("\n") == 1,
       "%s file: one clear line, exit 2" % what, (rc, out, err))

# database: PostgreSQL as a URI or a mapping is checked, not connected to;
# a password in the URI is refused at its line and column and never shown.
pg_base = re.sub(r"^database: .*$", "database: DB", config_text(base, 18080,
                                                                18081),
                 count=1, flags=re.M)
dbline = pg_base.splitlines().index("database: DB") + 1
pwf = write("db.password", "s3cret-db\n")
for what, db, good_form in [
        ("URI", "postgresql://kairan@127.0.0.1:5432/news", True),
        ("postgres:// URI", "postgres://kairan@db.example.jp/news", True),
        ("mapping", "{host: 127.0.0.1, dbname: news, user: kairan, "
         "password_file: %s}" % pwf, True),
        ("URI with a password", "postgresql://kairan:hunter2@db/news", False),
        ("URI with password=", "postgresql://db/news?password=hunter2",
         False)]:
    p = write("pg.yaml", pg_base.replace("database: DB", "database: " + db))
    rc, out, err = ctl("--config", p, "check-config",
                       env={"KAIRAN_DB_PASSWORD": "env-secret"})
    text = out + err
    leaked = [s for s in ("hunter2", "s3cret-db", "env-secret") if s in text]
    if good_form:
        ok(rc == 0 and "config OK" in out and not leaked,
           "check-config: database as a %s is OK" % what, (rc, out, err))
    else:
        ok(rc == 2 and ("%s:%d:11: database: the URI holds a password" %
                        (p, dbline)) in err and "KAIRAN_DB_PASSWORD" in err
           and not leaked,
           "check-config: a %s is refused at FILE:LINE:COLUMN, the "
           "password not shown" % what, (rc, out, err))

# A verb that opens the store on a real PostgreSQL (the mapping form, the
# password from its file) works; a refused password and a server that is
# not there are clear errors naming the database, never the password.
if pg.available():
    srv = pg.Server()
    uri = srv.createdb("news")
    pgpw = srv.password_file
    port = srv.port
    for what, db, env, good in [
            ("the mapping and its password file",
             "{host: 127.0.0.1, port: %d, dbname: news, user: kairan,"
             " password_file: %s}" % (port, pgpw), {}, True),
            ("a URI and KAIRAN_DB_PASSWORD", uri,
             {"KAIRAN_DB_PASSWORD": pg.PASSWORD}, True),
            ("a wrong password", uri, {"KAIRAN_DB_PASSWORD": "env-secret"},
             False),
            ("no server", "postgresql://kairan@127.0.0.1:%d/news" %
             free_port(), {"KAIRAN_DB_PASSWORD": "env-secret"}, False)]:
        p = write("pg.yaml", pg_base.replace("database: DB", "database: " +
                                             db))
        rc, out, err = ctl("--config", p, "status", env=env)
        text = out + err
        leaked = [s for s in ("env-secret", pg.PASSWORD) if s in text]
        if good:
            ok(rc == 0 and not leaked,
               "kairanctl status on PostgreSQL with %s" % what,
               (rc, out, err))
        else:
            ok(rc != 0 and "database postgresql://kairan@127.0.0.1:" in err
               and "/news" in err and not leaked,
               "kairanctl status on PostgreSQL with %s: a clear error "
               "naming the database, no password" % what, (rc, out, err))
    # kairand --check connects: a wrong password is found before a start
    p = write("pg.yaml", pg_base.replace("database: DB", "database: " + uri))
    r = subprocess.run([KAIRAND, "--config", p, "--check"],
                       capture_output=True, text=True,
                       env=dict(os.environ, KAIRAN_DB_PASSWORD="env-secret"))
    ok(r.returncode != 0 and "password authentication failed" in r.stderr
       and "env-secret" not in r.stdout + r.stderr,
       "kairand --check connects to PostgreSQL", r)
    r = subprocess.run([KAIRAND, "--config", p, "--check"],
                       capture_output=True, text=True,
                       env=dict(os.environ, KAIRAN_DB_PASSWORD=pg.PASSWORD))
    ok(r.returncode == 0 and ": ok" in r.stdout,
       "kairand --check on a reachable PostgreSQL: ok", r)
    srv.stop()
else:
    ok(False, "PostgreSQL 15 is installed (make deps)")

# Other verbs load the config without the relay password: an operator
# who may not read the password file can still use them.
rc, out, err = ctl("--config", "config/kairan.yaml", "keys", "list")
ok("password_file" not in err, "keys list does not need the SMTP password",
   (rc, out, err))

rc, out, err = ctl("check-config", "--help")
ok(rc == 0 and "usage: kairanctl check-config" in out, "--help",
   (rc, out, err))
rc, out, err = ctl("check-config", "--bogus")
ok(rc == 2 and "unexpected argument" in err, "unknown option: exit 2",
   (rc, out, err))
rc, out, err = ctl("--help")
ok(rc == 0 and "check-config" in out, "listed in kairanctl --help",
   (rc, out, err))
done()
