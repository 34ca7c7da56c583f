#!/usr/bin/env bash
# Headless Chromium screenshots of the public pages, so they are seen as a
# person sees them (a phone-sized window), and of the operator's dashboard
# at phone (420x800) and desktop (1280x900) sizes, in Japanese and English,
# while a report of DASH_COPIES (default 20000) copies goes out and after:
# the test SMTP server (smtp_server.py) refuses 2 % and defers 3 %, and a
# few complaints come in through `kairanctl bounce`. Starts its own
# kairand on a temporary config (loopback only) unless a URL is given.
# During (the governor has paused the report) and after, dash_check.py
# checks the pages' figures and charts against `kairanctl status` (TAP
# lines "ok - …"; the exit status is 1 when one failed).
#   tests/integration/screenshot.sh [OUTDIR]           start kairand, shoot
#   tests/integration/screenshot.sh OUTDIR URL...      shoot these URLs
# Writes OUTDIR/signup.png (and error.png, archive.png) and
# OUTDIR/dash-{overview,reports,report}-{during,after}-{ja,en}-{phone,
# desktop}.png; default OUTDIR is build/screenshots. Japanese needs a CJK
# font (fonts-ipafont-gothic).
set -eu
cd "$(dirname "$0")/../.."
BUILD="${KAIRAN_BUILD:-build/asan}"
OUT="${1:-build/screenshots}"
mkdir -p "$OUT"
shift || true

shoot() { # URL FILE [WIDTH,HEIGHT [LANG]]
	local prof
	prof=$(mktemp -d)
	chromium --headless --no-sandbox --disable-gpu \
		--disable-background-networking --disable-component-update \
		--disable-sync --no-first-run --hide-scrollbars \
		--user-data-dir="$prof" --screenshot="$2" \
		${4:+--lang="$4" --accept-lang="$4"} \
		--window-size="${3:-420,800}" "$1" >/dev/null 2>&1 || true
	rm -rf "$prof"
	if [ -s "$2" ]; then echo "screenshot: $2 ($1)"; else
		echo "screenshot: FAILED for $1" >&2; return 1; fi
}

if [ $# -gt 0 ]; then
	i=0
	for u in "$@"; do i=$((i + 1)); shoot "$u" "$OUT/page-$i.png"; done
	exit 0
fi

base=$(mktemp -d)
pid=
spid=
dpid=
cleanup() {
	# a stopped child's status (143) is not the script's: under set -e
	# the last command of an && list failing would end the trap with it
	for p in "$pid" "$dpid" "$spid"; do
		[ -n "$p" ] || continue
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$base"
	return 0
}
trap cleanup EXIT
trap "exit 143" TERM INT
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
hp=$(port)
ap=$(port)
mkdir -p "$base/outbox" "$base/mail"
# kairan.yaml for a kairand in DIR on HTTP_PORT and ADMIN_PORT, without
# its delivery section (the caller adds it)
yaml_head() { # DIR HTTP_PORT ADMIN_PORT
	cat <<YAML
database: $1/kairan.db
key_file: $1/token.key
public_url: http://127.0.0.1:$2
http:
  listen: 127.0.0.1:$2
admin:
  listen: 127.0.0.1:$3
outbox: $1/outbox
sender:
  name: 株式会社Example
  address: 東京都千代田区千代田1-1
  contact: info@example.jp
lists:
  - id: sips-report
    name: SIPS セキュリティレポート
    from: "SIPS Security Report <report@news.example.jp>"
    language: ja
    archive: true
YAML
}
{ yaml_head "$base" "$hp" "$ap"; cat <<YAML
delivery:
  transport: maildir
  maildir: $base/mail
YAML
} >"$base/kairan.yaml"
"$BUILD/kairand" --config "$base/kairan.yaml" >"$base/kairand.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
	curl -fsS -o /dev/null "http://127.0.0.1:$hp/" 2>/dev/null && break
	sleep 0.1
done
shoot "http://127.0.0.1:$hp/" "$OUT/signup.png"
shoot "http://127.0.0.1:$hp/confirm?t=AAAA" "$OUT/error.png"
shoot "http://127.0.0.1:$hp/archive" "$OUT/archive.png"

# ---- the dashboard ----
N="${DASH_COPIES:-20000}"
d="$base/dash"
mkdir -p "$d/outbox" "$d/smtp"
sp=$(port)
dhp=$(port)
dap=$(port)
# Subscribers signed up over the last 90 days (more lately), some gone
# again; 2 % of the report's recipients refused, 3 % deferred.
/usr/bin/python3 - "$d" "$N" <<'PY'
import json, random, sys, time
d, n = sys.argv[1], int(sys.argv[2])
random.seed(17)
now = int(time.time())
doms = ["gmail.com"] * 6 + ["yahoo.co.jp"] * 3 + ["outlook.jp"] * 2 + [
    "docomo.ne.jp", "ezweb.ne.jp", "icloud.com", "example.co.jp",
    "nifty.com", "softbank.ne.jp", "biglobe.ne.jp", "ocn.ne.jp",
    "example.ac.jp"]
rules = {"rcpt": {}}
with open(d + "/subs.csv", "w") as f:
    f.write("email,status,consent_at,confirmed_at,unsubscribed_at\n")
    for i in range(n):
        addr = "r%05d@%s" % (i, random.choice(doms))
        age = int(88 * 86400 * random.random() ** 2)  # in the chart
        t = now - age
        if random.random() < 0.03:
            f.write("x%s,unsubscribed,%d,%d,%d\n" % (addr, t, t,
                    t + int(random.random() * (now - t))))
        f.write("%s,active,%d,%d,0\n" % (addr, t, t))
        r = random.random()
        if r < 0.02:
            rules["rcpt"][addr] = "550 5.1.1 <%s>: user unknown" % addr
        elif r < 0.05:
            # a mailbox full (4.2.2) defers one copy; 4.7.x would
            # read as the relay asking kairand to slow down
            rules["rcpt"][addr] = "452 4.2.2 mailbox full, try again later"
json.dump(rules, open(d + "/rules.json", "w"))
PY
/usr/bin/python3 tests/integration/smtp_server.py --port "$sp" \
	--dir "$d/smtp" --rules "$d/rules.json" --log-only \
	>"$d/smtp.log" 2>&1 &
spid=$!
{ yaml_head "$d" "$dhp" "$dap"; cat <<YAML
delivery:
  transport: smtp
  workers: 4
  rate: 300/s
  retry: [1h]
  bounce_domain: bounces.example.jp
smtp:
  - host: 127.0.0.1
    port: $sp
    tls: none
YAML
} >"$d/kairan.yaml"
"$BUILD/kairand" --config "$d/kairan.yaml" >"$d/kairand.log" 2>&1 &
dpid=$!
for _ in $(seq 100); do
	curl -fsS -o /dev/null "http://127.0.0.1:$dap/healthz" 2>/dev/null &&
		break
	sleep 0.1
done
"$BUILD/kairanctl" --config "$d/kairan.yaml" subscribers import \
	--list sips-report --confirmed "$d/subs.csv" >/dev/null 2>"$d/import.err" || {
	head -5 "$d/import.err" >&2
	exit 1
}
printf -- '---\nsubject: SIPS セキュリティレポート 2026年12月号\nlist: sips-report\n---\n本文です。\n' \
	>"$d/r1.md"
"$BUILD/kairanctl" --config "$d/kairan.yaml" send "$d/r1.md" >/dev/null
dash() { # WHEN
	local lang size sz
	for lang in ja en; do
		for size in phone:420,800 desktop:1280,900; do
			sz=${size#*:}
			shoot "http://127.0.0.1:$dap/" \
				"$OUT/dash-overview-$1-$lang-${size%%:*}.png" "$sz" \
				"$lang"
			shoot "http://127.0.0.1:$dap/reports" \
				"$OUT/dash-reports-$1-$lang-${size%%:*}.png" "$sz" \
				"$lang"
			shoot "http://127.0.0.1:$dap/reports/1" \
				"$OUT/dash-report-$1-$lang-${size%%:*}.png" "$sz" \
				"$lang"
		done
	done
}
left() {
	"$BUILD/kairanctl" --config "$d/kairan.yaml" status 1 |
		sed -n 's/^ *queued *\([0-9]*\).*/\1/p' | head -1
}
# during: once a third has gone
for _ in $(seq 600); do
	q=$(left)
	[ -n "$q" ] && [ "$q" -lt $((N * 2 / 3)) ] && break
	sleep 0.5
done
# complaints (ARF through the bounce pipe) about a few copies sent
complaints=$(/usr/bin/python3 - "$d" "$BUILD" <<'PY'
import json, os, subprocess, sys
d, build = sys.argv[1], sys.argv[2]
raw = open("tests/data/bounces/arf-abuse.eml", "rb").read()
tok = b"XXTOKENXXTOKENXXTOKENXXTOKENXXTOKENXXTOKENXX0001"
n = 0
for line in open(d + "/smtp/log.jsonl"):
    e = json.loads(line)
    if n >= 30:  # over 0.1 % of the copies however many are sent
        break
    if "+" not in e["mail_from"]:
        continue
    t = e["mail_from"].split("+", 1)[1].split("@", 1)[0]
    r = raw.replace(tok, t.encode()).replace(b"reader@example.org",
                                             e["rcpt"][0].encode())
    p = subprocess.run([build + "/kairanctl", "--config", d + "/kairan.yaml",
                        "bounce"], input=r, capture_output=True)
    n += p.returncode == 0
print(n)
PY
)
# the governor pauses the report (30 complaints are over Gmail's 0.1 %
# of all 20,000): wait until it did and the copies in flight are in
st=
for _ in $(seq 120); do
	now=$("$BUILD/kairanctl" --config "$d/kairan.yaml" status 1)
	case "$now" in *"(paused,"*) [ "$now" = "$st" ] && break ;; esac
	st=$now
	sleep 1
done
check() { # PHASE
	/usr/bin/python3 tests/integration/dash_check.py "$1" \
		"http://127.0.0.1:$dap" "$BUILD/kairanctl" "$d/kairan.yaml" \
		"$N" "$complaints" || checks_failed=1
}
checks_failed=0
check during
dash during
# the complaints paused it (the governor): resume, so it finishes
"$BUILD/kairanctl" --config "$d/kairan.yaml" resume 1 >/dev/null 2>&1 || true
for _ in $(seq 1200); do
	q=$(left)
	[ "${q:-1}" = 0 ] && break
	sleep 0.5
done
check after
dash after
exit "$checks_failed"
