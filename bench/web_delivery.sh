#!/usr/bin/env bash
# Neither the form nor delivery may starve the other: a delivery of N
# messages (default 100,000) through kairand's SMTP transport into Postfix's
# smtp-sink, timed alone, then again while a paced form load runs against
# the same kairand (wrk with a per-connection delay: GET / and POST
# /subscribe with distinct addresses, about RATE requests/s in all).
# Prints the delivery rate of both runs, their ratio, and the form's
# p50/p99 during the second. Nothing is asserted: read bench/RESULTS.md
# (current figures) and bench/history/.
# Usage: bench/web_delivery.sh [N] [RATE]   (default 100000 200)
set -eu
cd "$(dirname "$0")/.."
BUILD="${KAIRAN_BUILD:-build/release}"
N="${1:-100000}"
RATE="${2:-200}"
if ! [ -x "$BUILD/kairand" ] || ! [ -x "$BUILD/kairanctl" ]; then
	echo "no $BUILD/kairand: make FLAVOUR=release" >&2
	exit 2
fi
base=$(mktemp -d /tmp/kairan-bench-webdel.XXXXXX)
chmod 755 "$base"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	[ -n "${KAIRAN_KEEP:-}" ] || rm -rf "$base"
}
trap cleanup EXIT
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
hp=$(port); ap=$(port); sp=$(port)

# smtp-sink stands in for a remote relay: niced, so that it does not take
# the CPU from the process under test on this 2-core machine.
nice -n 10 /usr/sbin/smtp-sink -u nobody "127.0.0.1:$sp" 1024 &
pids+=($!)
mkdir -p "$base/outbox"
cat >"$base/kairan.yaml" <<YAML
database: $base/kairan.db
key_file: $base/token.key
public_url: http://127.0.0.1:$hp
http:
  listen: 127.0.0.1:$hp
  trusted_proxies: [127.0.0.1]
admin:
  listen: 127.0.0.1:$ap
lists:
  - id: news
    name: News
    from: "News <news@example.jp>"
    double_opt_in: true
    language: en
delivery:
  transport: smtp
  workers: 4
smtp:
  - host: 127.0.0.1
    port: $sp
    tls: none
log:
  level: warn
YAML
/usr/bin/python3 - "$base/subs.csv" "$N" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    f.write("email,list\n")
    for i in range(int(sys.argv[2])):
        f.write("reader%07d@d%d.example,news\n" % (i, i % 500))
PY
"$BUILD/kairanctl" --config "$base/kairan.yaml" subscribers import \
    "$base/subs.csv" --confirmed >/dev/null
"$BUILD/kairand" --config "$base/kairan.yaml" >"$base/kairand.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -fsS -o /dev/null "http://127.0.0.1:$hp/" 2>/dev/null && break; sleep 0.1; done

sent() { # REPORT_ID
	/usr/bin/python3 -c "import sqlite3,sys
c=sqlite3.connect('file:'+sys.argv[1]+'?mode=ro',uri=True,timeout=30)
print(c.execute('select count(*) from deliveries where report_id=? and state=1',(int(sys.argv[2]),)).fetchone()[0])" "$base/kairan.db" "$1"
}
# deliver REPORT_NO: queues a report, waits until all N are sent, prints s.
deliver() {
	local f="$base/report$1.md" t0 t1 id
	printf -- '---\nsubject: Bench report %s\nlist: news\n---\n# Report %s\n\nHello, this is a benchmark report with a few lines of text.\n' "$1" "$1" >"$f"
	t0=$(date +%s.%N)
	"$BUILD/kairanctl" --config "$base/kairan.yaml" send "$f" >/dev/null
	id=$1
	while [ "$(sent "$id")" -lt "$N" ]; do sleep 0.2; done
	t1=$(date +%s.%N)
	echo "$t0 $t1" | awk '{printf "%.2f", $2 - $1}'
}

# Paced: each connection waits so that all together make ~RATE/2 per
# second for GET / and as many for POST /subscribe.
cat >"$base/get.lua" <<LUA
delay = function() return $((1000 * 4 * 2 / RATE)) end
LUA
cat >"$base/post.lua" <<LUA
local counter = 0
local nthreads = 0
tid = 0
setup = function(thread) thread:set("tid", nthreads); nthreads = nthreads + 1 end
delay = function() return $((1000 * 4 * 2 / RATE)) end
request = function()
  counter = counter + 1
  local n = tid * 10000000 + counter
  local ip = string.format("10.%d.%d.%d", math.floor(n / 65536) % 256,
    math.floor(n / 256) % 256, n % 256)
  return wrk.format("POST", "/subscribe", {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["X-Forwarded-For"] = ip }, "email=form" .. tid .. "-" .. counter .. "%40example.jp&list=news")
end
LUA

echo "# bench/web_delivery.sh: $N messages, 4 workers, smtp-sink; form load ~${RATE}/s; $(nproc) cores; $(date -u +%FT%TZ)"
# Baseline: the same paced form load with no delivery running.
wrk -t2 -c4 -d10s --latency -s "$base/get.lua" "http://127.0.0.1:$hp/" >"$base/get0.out" &
gpid=$!
wrk -t2 -c4 -d10s --latency -s "$base/post.lua" "http://127.0.0.1:$hp/subscribe" >"$base/post0.out"
wait "$gpid" || true
for w in get0 post0; do
	printf 'form %-5s alone (10 s):     %8s req/s  p50 %-9s p99 %s\n' "$w" \
	    "$(awk '/^Requests\/sec/ {print $2}' "$base/$w.out")" \
	    "$(awk '$1 == "50%" {print $2}' "$base/$w.out")" \
	    "$(awk '$1 == "99%" {print $2}' "$base/$w.out")"
done
alone=$(deliver 1)
echo "delivery alone:        $alone s  ($(awk -v n="$N" -v s="$alone" 'BEGIN{printf "%.0f", n/s}') msg/s)"
# The form load runs for as long as the first delivery took, plus margin.
dur=$(awk -v s="$alone" 'BEGIN{printf "%d", s + 5}')
wrk -t2 -c4 -d"${dur}s" --latency -s "$base/get.lua" "http://127.0.0.1:$hp/" >"$base/get.out" &
gpid=$!
wrk -t2 -c4 -d"${dur}s" --latency -s "$base/post.lua" "http://127.0.0.1:$hp/subscribe" >"$base/post.out" &
wpid=$!
sleep 1
loaded=$(deliver 2)
wait "$wpid" "$gpid" || true
echo "delivery with form:    $loaded s  ($(awk -v n="$N" -v s="$loaded" 'BEGIN{printf "%.0f", n/s}') msg/s)"
awk -v a="$alone" -v b="$loaded" 'BEGIN{printf "# delivery kept %.0f%% of its rate\n", 100 * a / b}'
for w in get post; do
	rps=$(awk '/^Requests\/sec/ {print $2}' "$base/$w.out")
	p50=$(awk '$1 == "50%" {print $2}' "$base/$w.out")
	p99=$(awk '$1 == "99%" {print $2}' "$base/$w.out")
	non2xx=$(awk '/Non-2xx/ {print $NF}' "$base/$w.out")
	printf 'form %-4s during delivery: %8s req/s  p50 %-9s p99 %s%s\n' "$w" "$rps" "$p50" "$p99" "${non2xx:+  non-2xx $non2xx}"
done
