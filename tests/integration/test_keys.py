"""kairanctl keys rotate|list|retire against a real key file named by a real
config: created 0600, old keys kept, ids and times listed but never key
bytes, a group/world-readable file refused, usage errors exit 2."""
import os
import re
import stat
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Kairan, done, ok, tmpdir  # noqa: E402


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def key_texts(path):
    with open(path) as f:
        return [line.split()[2] for line in f if line.strip()]


def main():
    base = tmpdir()
    k = Kairan(base, start=False)
    key_file = os.path.join(base, "token.key")

    rc, out, err = k.ctl("keys", "list")
    ok(rc == 1 and "does not exist" in err and "keys rotate" in err,
       "keys list without a key file: exit 1 and a hint", (rc, out, err))

    old = os.umask(0)
    try:
        rc, out, err = k.ctl("keys", "rotate")
    finally:
        os.umask(old)
    ok(rc == 0 and "key 1 " in out, "first rotate creates key 1",
       (rc, out, err))
    ok(os.path.exists(key_file) and mode(key_file) == 0o600,
       "key file created 0600 even with umask 0",
       oct(mode(key_file)) if os.path.exists(key_file) else "missing")
    first = open(key_file).read()

    rc, out, err = k.ctl("keys", "rotate")
    ok(rc == 0 and "key 2 now signs" in out and "reload" in out,
       "second rotate: key 2 signs", (rc, out, err))
    text = open(key_file).read()
    ok(text.startswith(first) and len(text.splitlines()) == 2,
       "rotate keeps the old key line as it was, adds one", text.count("\n"))
    ok(mode(key_file) == 0o600, "still 0600 after rotate",
       oct(mode(key_file)))
    ok(sorted(os.listdir(base)) == sorted(["kairan.yaml", "outbox",
                                           "token.key"]),
       "no temp file left behind", os.listdir(base))

    rc, out, err = k.ctl("keys", "list")
    lines = out.strip().splitlines()
    ok(rc == 0 and len(lines) == 3 and lines[0].startswith("ID"),
       "keys list: header and two keys", (rc, out, err))
    ok(re.match(r"^1\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+verifies$",
                lines[1] if len(lines) > 1 else "") is not None and
       re.match(r"^2\s+.*signs and verifies$",
                lines[2] if len(lines) > 2 else "") is not None,
       "keys list: ids, UTC times, which one signs", out)
    leaked = [t for t in key_texts(key_file) if t in out + err or
              t[:12] in out + err]
    ok(not leaked, "keys list never prints key bytes", out)

    rc, out, err = k.ctl("keys", "retire", "2")
    ok(rc == 1 and "signs" in err, "the signing key cannot be retired",
       (rc, out, err))
    rc, out, err = k.ctl("keys", "retire", "7")
    ok(rc == 1 and "not in" in err, "retiring an unknown key: exit 1",
       (rc, out, err))
    rc, out, err = k.ctl("keys", "retire", "1")
    ok(rc == 0 and len(open(key_file).read().splitlines()) == 1,
       "retire 1 removes it", (rc, out, err))
    rc, out, err = k.ctl("keys", "rotate")
    ok(rc == 0 and "key 3 " in out, "ids are not reused after retire",
       (rc, out, err))

    for args in (["keys"], ["keys", "spin"], ["keys", "retire"],
                 ["keys", "retire", "x"], ["keys", "retire", "-1"],
                 ["keys", "list", "extra"]):
        rc, out, err = k.ctl(*args)
        ok(rc == 2, "usage error exits 2: %s" % " ".join(args),
           (rc, out, err))

    os.chmod(key_file, 0o644)
    rc, out, err = k.ctl("keys", "list")
    ok(rc == 1 and "chmod 600" in err and key_file in err,
       "world-readable key file refused with a clear message",
       (rc, out, err))
    rc, out, err = k.ctl("keys", "rotate")
    ok(rc == 1 and "chmod 600" in err, "and not rotated either",
       (rc, out, err))
    ok(mode(key_file) == 0o644 and len(open(key_file).read().splitlines())
       == 2, "the refused file is left untouched", oct(mode(key_file)))
    done()


main()
