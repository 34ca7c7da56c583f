#!/usr/bin/env bash
# bench/smtp.sh — how fast kairan's SMTP transport (libesmtp + TCP_NODELAY)
# pushes 10 KB Japanese newsletters into Postfix's smtp-sink on loopback,
# beside Postfix's smtp-source (no composition, no state: the ceiling), in
# the same run. Also the same transport with Nagle left on (no TCP_NODELAY),
# which is what libesmtp does as shipped.
#
# usage: bench/smtp.sh [-n MESSAGES] [-N SLOW_MESSAGES] [-r RUNS] [-b BATCH]
#                      [-o FILE.md]
#   -n  messages per run for the fast rows (default 20000)
#   -N  messages per run for the rows without TCP_NODELAY (default 400;
#       at ~23 messages/s per session more would take many minutes)
#   -r  runs per row, the table shows medians (default 3)
#   -b  messages per SMTP session (default 100, delivery.batch's default)
#   -o  Markdown file the table is appended to (default
#       bench/history/DATE-smtp.md; bench/RESULTS.md keeps the current figures)
#
# Needs: build-essential, pkg-config, libesmtp-dev, libsodium-dev,
# libssl-dev, postfix (smtp-sink, smtp-source; `make deps` installs them),
# /usr/bin/python3 and GNU time.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

n=20000
nslow=400
runs=3
batch=100
out="$ROOT/bench/history/$(date -u +%Y-%m-%dT%H%M)-smtp.md"
while getopts "n:N:r:b:o:" o; do
	case "$o" in
	n) n=$OPTARG ;;
	N) nslow=$OPTARG ;;
	r) runs=$OPTARG ;;
	b) batch=$OPTARG ;;
	o) out=$OPTARG ;;
	*) sed -n '2,20p' "$0"; exit 2 ;;
	esac
done

find_tool() {
	local c
	for c in "$(command -v "$1" 2>/dev/null || true)" "/usr/sbin/$1" \
	    "/usr/lib/postfix/sbin/$1"; do
		[[ -n "$c" && -x "$c" ]] && { echo "$c"; return 0; }
	done
	echo "bench/smtp.sh: $1 not found (make deps installs postfix)" >&2
	exit 2
}
SINK=$(find_tool smtp-sink)
SOURCE=$(find_tool smtp-source)
[[ -x /usr/bin/time ]] || { echo "bench/smtp.sh: needs GNU time" >&2; exit 2; }

work=$(mktemp -d /tmp/kairan-bench-smtp.XXXXXX)
sinkpid=""
cleanup() {
	if [[ -n "$sinkpid" ]]; then kill "$sinkpid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

echo "bench/smtp.sh: building kairan (release) and the driver" >&2
make --no-print-directory FLAVOUR=release build/release/libkairan.a build/release/kairan-smtp >/dev/null
# shellcheck disable=SC2046
cc -O2 -g -std=c11 -D_GNU_SOURCE -pthread -Ilib bench/smtp_bench.c \
	build/release/libkairan.a \
	$(pkg-config --libs libesmtp-1.0 libsodium libssl libcrypto) \
	-o build/release/smtp_bench
DRIVER="$ROOT/build/release/smtp_bench"
msg="$work/newsletter.eml"
/usr/bin/python3 bench/newsletter_msg.py eml "$msg" >/dev/null

free_port() {
	/usr/bin/python3 -c 'import socket; s = socket.socket();
s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# smtp-sink -c writes "sess=N quit=N mesg=N" records separated by \r.
sink_mesg() {
	tail -c 300 "$1" 2>/dev/null | tr '\r' '\n' | grep -E '^sess=' |
	    tail -n1 | sed -E 's/.*mesg=([0-9]+).*/\1/'
}

sink_start() {
	local args=(-c -m 1024 -t 300)
	port=$(free_port)
	sinklog="$work/sink.$port.log"
	[[ "$(id -u)" == 0 ]] && args+=(-u nobody)
	"$SINK" "${args[@]}" "127.0.0.1:$port" 4096 >"$sinklog" 2>&1 </dev/null &
	sinkpid=$!
	for _ in $(seq 1 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			return 0
		fi
		sleep 0.05
	done
	echo "bench/smtp.sh: smtp-sink did not start" >&2
	exit 1
}

sink_stop() {
	kill "$sinkpid" 2>/dev/null || true
	wait "$sinkpid" 2>/dev/null || true
	sinkpid=""
}

# Waits until the sink counted want messages (its counter lags the 250).
sink_wait() {
	local want=$1 got=0
	for _ in $(seq 1 100); do
		got=$(sink_mesg "$sinklog")
		[[ "${got:-0}" -ge "$want" ]] && break
		sleep 0.05
	done
	echo "${got:-0}"
}

results="$work/rows.tsv"
: >"$results"

# row LABEL COUNT -- CMD...: one run (number $run) against a fresh sink.
# @PORT@ in CMD becomes the sink's port. Records msgs/s, CPU µs/msg.
row() {
	local label=$1 count=$2 t0 t1 got wall mps cpu rss u s a
	local -a cmd
	shift 3
	{
		sink_start
		cmd=()
		for a in "$@"; do cmd+=("${a//@PORT@/$port}"); done
		sync
		sleep 0.3
		t0=$(date +%s%N)
		if ! /usr/bin/time -f '%U %S %M' -o "$work/time" \
		    "${cmd[@]}" >"$work/cmd.out" 2>&1; then
			echo "bench/smtp.sh: $label run $run failed:" >&2
			cat "$work/cmd.out" >&2
		fi
		t1=$(date +%s%N)
		got=$(sink_wait "$count")
		sink_stop
		read -r u s rss <"$work/time"
		wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", (b-a)/1e9}')
		mps=$(awk -v m="$got" -v w="$wall" 'BEGIN{printf "%.0f", m/w}')
		# GNU time counts in 10 ms steps: too coarse for short runs
		cpu=$(awk -v u="$u" -v s="$s" -v m="$count" \
		    'BEGIN{ if (u+s < 0.5) print "-"; else printf "%.0f", (u+s)*1e6/m}')
		printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$run" "$count" \
		    "$got" "$mps" "$cpu" "$rss" >>"$results"
		printf '%-44s run %d: %6s msgs/s  %5s µs CPU/msg  sink got %s/%s  rss %s KB\n' \
		    "$label" "$run" "$mps" "$cpu" "$got" "$count" "$rss" >&2
	}
}

K=("$DRIVER" -p @PORT@ -f "$msg" -b "$batch")
S=(-F "$msg" -f newsletter@news.example.jp -t subscriber@example.net)

# The rows take turns within each round, so that the load of the machine
# (it drifts over minutes) weighs on all of them alike.
for run in $(seq 1 "$runs"); do
	row "kairan, 1 session, TCP_NODELAY" "$n" -- "${K[@]}" -n "$n" -c 1
	row "smtp-source -s 1 -d (ceiling, 1 connection)" "$n" -- \
		"$SOURCE" -s 1 -d -m "$n" "${S[@]}" 127.0.0.1:@PORT@
	row "kairan, 4 sessions, TCP_NODELAY" "$n" -- "${K[@]}" -n "$n" -c 4
	row "smtp-source -s 4 -d (ceiling, 4 connections)" "$n" -- \
		"$SOURCE" -s 4 -d -m "$n" "${S[@]}" 127.0.0.1:@PORT@
	row "kairan, 1 session, Nagle (no TCP_NODELAY)" "$nslow" -- \
		"${K[@]}" -n "$nslow" -c 1 -D
	row "kairan, 4 sessions, Nagle (no TCP_NODELAY)" "$nslow" -- \
		"${K[@]}" -n "$nslow" -c 4 -D
done

# Medians per label, in the order run.
table=$(awk -F'\t' '
	!($1 in seen) { seen[$1] = 1; order[++k] = $1 }
	{ n[$1]++; m[$1, n[$1]] = $5; c[$1, n[$1]] = $6; r[$1, n[$1]] = $7
	  cnt[$1] = $3; if ($4 != $3) short[$1] = 1
	  if (!($1 in lo) || $5 < lo[$1]) lo[$1] = $5
	  if (!($1 in hi) || $5 > hi[$1]) hi[$1] = $5 }
	function med(a, l, cnt,   i, j, t, v) {
		if (a[l, 1] == "-") return "-"
		for (i = 1; i <= cnt; i++) v[i] = a[l, i] + 0
		for (i = 1; i <= cnt; i++) for (j = i + 1; j <= cnt; j++)
			if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
		return v[int((cnt + 1) / 2)]
	}
	END {
		for (i = 1; i <= k; i++) {
			l = order[i]
			mm[l] = med(m, l, n[l])
			if (l ~ /smtp-source -s 1/) ref1 = mm[l]
			if (l ~ /smtp-source -s 4/) ref4 = mm[l]
		}
		print "| sender → smtp-sink | messages/run | msgs/s (median) | range | CPU µs/msg | peak RSS KB | vs smtp-source, same sessions |"
		print "|---|---|---|---|---|---|---|"
		for (i = 1; i <= k; i++) {
			l = order[i]; ref = (l ~ /4 session|-s 4/) ? ref4 : ref1
			ratio = (ref > 0) ? sprintf("%.2f×", mm[l] / ref) : "-"
			printf "| %s%s | %d | %d | %d–%d | %s | %d | %s |\n", l,
			    (l in short) ? " (SINK GOT FEWER)" : "", cnt[l], mm[l],
			    lo[l], hi[l], med(c, l, n[l]), med(r, l, n[l]), ratio
		}
	}' "$results")

host=$(uname -n)
cpu=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
{
	echo
	echo "## Delivery over SMTP (\`bench/smtp.sh\`), $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo
	echo "Machine: $host, $(nproc) cores ($cpu), $(uname -sr). Command:"
	echo "\`bench/smtp.sh -n $n -N $nslow -r $runs -b $batch\`. The message is"
	echo "\`bench/newsletter_msg.py\`'s $(wc -c <"$msg")-byte Japanese newsletter, one"
	echo "recipient per message, into Postfix's \`smtp-sink\` on 127.0.0.1 (fresh"
	echo "sink per run). kairan rows: \`lib/transport_smtp.c\` (libesmtp 1.1)"
	echo "driven by \`bench/smtp_bench.c\` (one thread per session, $batch messages"
	echo "per SMTP session, no composition, no store; TCP_NODELAY, and what"
	echo "libesmtp writes gathered into one write(2) per wait for the server);"
	echo "the Nagle rows leave both off"
	echo "(\`kr_transport_smtp_set_nodelay(0)\`), as libesmtp does as shipped."
	echo "CPU is the sender's user+sys per message; medians of $runs rounds,"
	echo "the rows taking turns in each round."
	echo
	echo "$table"
} | tee -a "$out"
