#!/usr/bin/env bash
# bench/kairand.sh — kairand end to end into Postfix's smtp-sink on loopback:
# import N subscribers, queue one ~10 KB Japanese report with `kairanctl
# send`, and time until smtp-sink has N messages. Records messages/s, CPU
# seconds and µs per message, and peak RSS of kairand, then runs
# `smtp-source -d -s W` (same sessions, connections reused, no composition,
# no state: the ceiling) with one of kairand's own composed messages, and
# appends both and their ratio to bench/history/DATE-kairand.md (-o);
# bench/RESULTS.md keeps the current figures.
#
# usage: bench/kairand.sh [-n SUBSCRIBERS] [-w WORKERS] [-b BATCH] [-r RUNS]
#                         [-k REPORT_BYTES] [-d sqlite|postgresql] [-H 1|2]
#                         [-o FILE.md | -o -]
#   -d  the store: an SQLite file (default) or a PostgreSQL 15 that the
#       script starts on loopback (tests/integration/pg.py; a fresh
#       database each run)
#   -H  kairand hosts on the one database (2 needs -d postgresql): each
#       with WORKERS workers; CPU and RSS are the hosts' sum
#   -k  size of the report's Markdown (default 9000: ~29 KB composed;
#       3000 composes to ~10.5 KB, the size of the nodemailer peer's message)
# Needs: postfix's /usr/sbin/smtp-sink and smtp-source, /usr/bin/python3.
# The machine is shared and noisy: compare only numbers from one run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
n=100000
workers=4
batch=100
runs=1
report_bytes=9000
store=sqlite
hosts=1
out=bench/history/$(date -u +%Y-%m-%dT%H%M)-kairand.md
while getopts "n:w:b:r:k:d:H:o:" o; do
	case "$o" in
	n) n=$OPTARG ;;
	w) workers=$OPTARG ;;
	b) batch=$OPTARG ;;
	r) runs=$OPTARG ;;
	k) report_bytes=$OPTARG ;;
	d) store=$OPTARG ;;
	H) hosts=$OPTARG ;;
	o) out=$OPTARG ;;
	*) sed -n '2,15p' "$0"; exit 2 ;;
	esac
done
SINK=/usr/sbin/smtp-sink
SOURCE=/usr/sbin/smtp-source
[ -x "$SINK" ] && [ -x "$SOURCE" ] || {
	echo "bench: needs postfix's smtp-sink and smtp-source" >&2; exit 2; }

# KAIRAN_BENCH_NOBUILD=1 uses build/release as it is.
[ -n "${KAIRAN_BENCH_NOBUILD:-}" ] ||
	make --no-print-directory FLAVOUR=release build-release >/dev/null
# KAIRAN_BENCH_BUILD=DIR runs the kairand and kairanctl found in DIR (A/B runs).
B=${KAIRAN_BENCH_BUILD:-$ROOT/build/release}
tmp=$(mktemp -d /tmp/kairan-bench.XXXXXX)
kpid=""
kpid2=""
spid=""
wpid=""
pgdir=""
cleanup() {
	[ -n "$kpid" ] && kill "$kpid" 2>/dev/null && wait "$kpid" 2>/dev/null
	[ -n "$kpid2" ] && kill "$kpid2" 2>/dev/null && wait "$kpid2" 2>/dev/null
	[ -n "$spid" ] && kill "$spid" 2>/dev/null && wait "$spid" 2>/dev/null
	[ -n "$wpid" ] && kill "$wpid" 2>/dev/null
	[ -n "$pgdir" ] && /usr/bin/python3 tests/integration/pg.py stop "$pgdir"
	rm -rf "$tmp"
}
trap cleanup EXIT
free_port() {
	/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
tck=$(getconf CLK_TCK)
cpu_of() { awk -v t="$tck" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat"; }
# kairand and its kairan-smtp processes together: its own time, that of
# the children it has reaped, and that of those still running.
cpu_tree() {
	local kids k
	kids=$(cat /proc/"$1"/task/*/children 2>/dev/null)
	{
		awk '{ print $14 + $15 + $16 + $17 }' "/proc/$1/stat"
		for k in $kids; do
			awk '{ print $14 + $15 }' "/proc/$k/stat" 2>/dev/null
		done
	} | awk -v t="$tck" '{ s += $1 } END { printf "%.2f", s / t }'
}
mesg_of() {
	[ -s "$1" ] || { echo 0; return; }
	tail -c 200 "$1" | tr '\r' '\n' | grep -E '^sess=' | tail -n1 |
		sed -E 's/.*mesg=([0-9]+).*/\1/'
}
# watch_start LOG N TIMEOUT: one quiet process that reads the end of the
# sink's log every 20 ms and exits 0 once it counts N messages (1 on
# timeout); wpid is its pid. It runs beside both senders alike: polling
# with tail|tr|grep|sed every 10 ms, as this script did before, took
# about a quarter of a core on this 2-core machine, during kairand's run
# only (perf record -a).
watch_start() {
	/usr/bin/python3 - "$@" <<'PYEOF' &
import os, re, sys, time
log, want, limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
end = time.monotonic() + limit
pat = re.compile(rb"sess=\d+ quit=\d+ mesg=(\d+)")
while time.monotonic() < end:
    try:
        with open(log, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 200))
            got = pat.findall(f.read())
        if got and int(got[-1]) >= want:
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.02)
sys.exit(1)
PYEOF
	wpid=$!
	sleep 0.2 # its start-up, before the clock starts
}
start_sink() { # PORT LOG
	local args=(-c -m 1024 -t 300)
	[ "$(id -u)" = 0 ] && args+=(-u nobody)
	: >"$2"
	[ "$(id -u)" = 0 ] && chown nobody "$2"
	"$SINK" "${args[@]}" "127.0.0.1:$1" 4096 >"$2" 2>&1 </dev/null &
	spid=$!
	for _ in $(seq 1 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.05
	done
	echo "bench: smtp-sink did not start" >&2; exit 1
}
stop_sink() { kill "$spid" 2>/dev/null; wait "$spid" 2>/dev/null || true; spid=""; }

database="$tmp/kairan.db"
case "$store" in
sqlite) ;;
postgresql)
	pgdir=$(mktemp -d /tmp/kairan-bench-pg.XXXXXX)
	read -r pguri pgpw _ < <(/usr/bin/python3 tests/integration/pg.py start "$pgdir")
	pgbase=${pguri%/postgres}
	database="{host: 127.0.0.1, port: ${pgbase##*:}, dbname: bench, user: kairan, password_file: $pgpw}"
	;;
*) echo "bench: -d sqlite or postgresql" >&2; exit 2 ;;
esac
fresh_db() {
	rm -f "$tmp/kairan.db"* "$tmp/token.key"
	[ "$store" = postgresql ] || return 0
	PGPASSWORD=$(cat "$pgpw") psql -X -q "$pguri" \
		-c "DROP DATABASE IF EXISTS bench WITH (FORCE)" -c "CREATE DATABASE bench" >/dev/null
}

# The subscribers, and a ~10 KB Japanese report.
/usr/bin/python3 bench/bench_input.py "$tmp" "$n" "$report_bytes"

run_kairand() { # RUN
	local port http admin log cfg t0 t1 c0 c1 rss wall
	port=$(free_port); http=$(free_port); admin=$(free_port)
	log=$tmp/sink.log
	fresh_db
	mkdir -p "$tmp/outbox"
	cfg=$tmp/kairan.yaml
	cat >"$cfg" <<EOF
database: $database
key_file: $tmp/token.key
public_url: https://news.example.jp
http:
  listen: 127.0.0.1:$http
admin:
  listen: 127.0.0.1:$admin
outbox: $tmp/outbox
sender:
  name: 株式会社Example
  address: 東京都千代田区千代田1-1
  contact: info@example.jp
lists:
  - id: bench
    name: SIPS セキュリティレポート
    from: "SIPS Security Report <report@news.example.jp>"
    language: ja
    footer: |
      株式会社Example 東京都千代田区 / 配信停止: {{unsubscribe_url}}
delivery:
  transport: smtp
  workers: $workers
  batch: $batch
  bounce_domain: bounces.example.jp
smtp:
  - host: 127.0.0.1
    port: $port
    tls: none
log:
  level: warn
host_id: bench-1
EOF
	t0=$(date +%s%N)
	"$B/kairanctl" --config "$cfg" subscribers import "$tmp/subs.csv" \
		--list bench --confirmed >/dev/null
	t1=$(date +%s%N)
	wpid=""
	import_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", (b-a)/1e9}')
	if [ "$1" = 1 ]; then
		"$B/kairanctl" --config "$cfg" send "$tmp/report.md" \
			--dry-run 1 --out "$tmp/dry" >/dev/null
		msgfile=$(ls "$tmp"/dry/*.eml | head -n1)
		msgsize=$(stat -c %s "$msgfile")
	fi
	start_sink "$port" "$log"
	"$B/kairand" --config "$cfg" 2>"$tmp/kairand.log" &
	kpid=$!
	for _ in $(seq 1 200); do
		(exec 3<>"/dev/tcp/127.0.0.1/$admin") 2>/dev/null && break
		sleep 0.05
	done
	if [ "$hosts" = 2 ]; then
		local http2 admin2
		http2=$(free_port); admin2=$(free_port)
		sed -e "s/127.0.0.1:$http\$/127.0.0.1:$http2/" \
		    -e "s/127.0.0.1:$admin\$/127.0.0.1:$admin2/" \
		    -e "s/^host_id: bench-1/host_id: bench-2/" "$cfg" >"$cfg.2"
		"$B/kairand" --config "$cfg.2" 2>"$tmp/kairand2.log" &
		kpid2=$!
		for _ in $(seq 1 200); do
			(exec 3<>"/dev/tcp/127.0.0.1/$admin2") 2>/dev/null && break
			sleep 0.05
		done
	fi
	sleep 0.5
	watch_start "$log" "$n" 1800
	c0=$(cpu_tree "$kpid")
	[ -z "$kpid2" ] || c0=$(awk -v a="$c0" -v b="$(cpu_tree "$kpid2")" 'BEGIN{printf "%.2f", a+b}')
	t0=$(date +%s%N)
	"$B/kairanctl" --config "$cfg" send "$tmp/report.md" >/dev/null
	tq=$(date +%s%N)
	if ! wait "$wpid"; then
		echo "bench: kairand stalled at $(mesg_of "$log") of $n" >&2
		tail -n 20 "$tmp/kairand.log" >&2
		exit 1
	fi
	t1=$(date +%s%N)
	wpid=""
	c1=$(cpu_tree "$kpid")
	rss=$(awk '/VmHWM/ {print $2}' "/proc/$kpid/status")
	if [ -n "$kpid2" ]; then
		c1=$(awk -v a="$c1" -v b="$(cpu_tree "$kpid2")" 'BEGIN{printf "%.2f", a+b}')
		rss=$((rss + $(awk '/VmHWM/ {print $2}' "/proc/$kpid2/status")))
		kill "$kpid2"; wait "$kpid2" || true; kpid2=""
	fi
	kill "$kpid"; wait "$kpid" || true; kpid=""
	k_sink+=("$(cpu_of "$spid")")
	stop_sink
	wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", (b-a)/1e9}')
	k_wall+=("$wall")
	k_cpu+=("$(awk -v a="$c0" -v b="$c1" 'BEGIN{printf "%.2f", b-a}')")
	k_rss+=("$rss")
	k_import+=("$import_s")
	k_queue+=("$(awk -v a="$t0" -v b="$tq" 'BEGIN{printf "%.2f", (b-a)/1e9}')")
	echo "kairand run $1: $n messages in ${wall}s, cpu ${k_cpu[-1]}s, sink cpu ${k_sink[-1]}s, peak rss ${rss} KB (import ${import_s}s, send returned after ${k_queue[-1]}s)" >&2
}

run_source() { # RUN
	local port log t0 t1 wall
	port=$(free_port); log=$tmp/sink-src.log
	start_sink "$port" "$log"
	watch_start "$log" "$n" 600
	t0=$(date +%s%N)
	/usr/bin/time -f "%U %S" -o "$tmp/source.time" \
		"$SOURCE" -d -s "$workers" -m "$n" -F "$msgfile" \
		-f report@news.example.jp -t reader@example.net \
		"127.0.0.1:$port" >/dev/null 2>&1
	wait "$wpid" || echo "bench: smtp-source short" >&2
	t1=$(date +%s%N)
	wpid=""
	s_sink+=("$(cpu_of "$spid")")
	stop_sink
	wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", (b-a)/1e9}')
	s_wall+=("$wall")
	s_cpu+=("$(awk '{printf "%.2f", $1 + $2}' "$tmp/source.time")")
	echo "smtp-source run $1: $n messages in ${wall}s, cpu ${s_cpu[-1]}s, sink cpu ${s_sink[-1]}s" >&2
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# "lo–hi" messages/s over the runs' wall times.
range() {
	printf '%s\n' "${@:2}" | sort -g | awk -v n="$1" \
	    'NR == 1 {hi = n / $1} {lo = n / $1} END {printf "%.0f–%.0f", lo, hi}'
}

k_wall=(); k_cpu=(); k_rss=(); k_import=(); k_queue=(); k_sink=()
s_wall=(); s_cpu=(); s_sink=()
for r in $(seq 1 "$runs"); do
	run_kairand "$r"
	run_source "$r"
done
kw=$(median "${k_wall[@]}"); kc=$(median "${k_cpu[@]}")
kr=$(median "${k_rss[@]}"); ki=$(median "${k_import[@]}")
kq=$(median "${k_queue[@]}")
sw=$(median "${s_wall[@]}"); sc=$(median "${s_cpu[@]}")
ks=$(median "${k_sink[@]}"); ss=$(median "${s_sink[@]}")
kmps=$(awk -v n="$n" -v w="$kw" 'BEGIN{printf "%.0f", n/w}')
smps=$(awk -v n="$n" -v w="$sw" 'BEGIN{printf "%.0f", n/w}')
kus=$(awk -v n="$n" -v c="$kc" 'BEGIN{printf "%.0f", c*1e6/n}')
sus=$(awk -v n="$n" -v c="$sc" 'BEGIN{printf "%.0f", c*1e6/n}')
kss=$(awk -v n="$n" -v c="$ks" 'BEGIN{printf "%.0f", c*1e6/n}')
sss=$(awk -v n="$n" -v c="$ss" 'BEGIN{printf "%.0f", c*1e6/n}')
ratio=$(awk -v a="$kmps" -v b="$smps" 'BEGIN{printf "%.2f", a/b}')
krange=$(range "$n" "${k_wall[@]}")
srange=$(range "$n" "${s_wall[@]}")

report=$(cat <<EOF

## Delivery: kairand end to end into smtp-sink, $store store, $hosts host(s) ($(date -u +%Y-%m-%d), $(nproc) cores)

\`bench/kairand.sh -n $n -w $workers -b $batch -r $runs -k $report_bytes -d $store -H $hosts\` — $n subscribers,
one report of $msgsize bytes as composed (Japanese, multipart, personal
unsubscribe token and VERP per copy), $workers workers = $workers SMTP
sessions, release build, medians of $runs run(s), kairand and
smtp-source alternating.

| sender → smtp-sink, $workers sessions | messages/s (median) | range | sender CPU µs/message | smtp-sink CPU µs/message | peak RSS |
|---|---|---|---|---|---|
| kairand (claim, compose, send, mark sent per message) | $kmps | $krange | $kus | $kss | $((kr / 1024)) MB |
| smtp-source -d -s $workers (no composition, no state) | $smps | $srange | $sus | $sss | – |

kairand / smtp-source = **$ratio**. Importing the $n subscribers took ${ki}s;
\`kairanctl send\` (queueing the $n rows while the workers already send)
returned after ${kq}s (median).
EOF
)
echo "$report"
if [ "$out" != "-" ]; then
	echo "$report" >>"$out"
	echo "bench: appended to $out" >&2
fi
