#!/usr/bin/env bash
# bench/kairand_dkim.sh — what DKIM signing in the delivery worker costs a
# real kairand: import N subscribers, queue one ~10 KB Japanese report with
# `kairanctl send`, time until Postfix's smtp-sink has N messages, with the
# list signing with no key, Ed25519, RSA-2048, and both (keys made by
# `kairanctl dkim keygen`). Configurations are interleaved over R rounds;
# prints, per configuration, the best and median messages/s (wall) and
# kairand's CPU µs per message, and the change against no signing.
#
# usage: bench/kairand_dkim.sh [-n SUBSCRIBERS] [-w WORKERS] [-r ROUNDS]
# Needs: postfix's /usr/sbin/smtp-sink, /usr/bin/python3. The machine is
# shared and noisy: compare only numbers from one run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
n=20000
workers=4
rounds=3
while getopts "n:w:r:" o; do
	case "$o" in
	n) n=$OPTARG ;;
	w) workers=$OPTARG ;;
	r) rounds=$OPTARG ;;
	*) sed -n '2,12p' "$0"; exit 2 ;;
	esac
done
SINK=/usr/sbin/smtp-sink
[ -x "$SINK" ] || { echo "bench: needs postfix's smtp-sink" >&2; exit 2; }
[ -n "${KAIRAN_BENCH_NOBUILD:-}" ] ||
	make --no-print-directory FLAVOUR=release build-release >/dev/null
B=$ROOT/build/release
tmp=$(mktemp -d /tmp/kairan-bench-dkim.XXXXXX)
kpid=""
spid=""
cleanup() {
	[ -n "$kpid" ] && kill "$kpid" 2>/dev/null && wait "$kpid" 2>/dev/null
	[ -n "$spid" ] && kill "$spid" 2>/dev/null && wait "$spid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
free_port() {
	/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
tck=$(getconf CLK_TCK)
cpu_of() { awk -v t="$tck" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat"; }
mesg_of() {
	[ -s "$1" ] || { echo 0; return; }
	tail -c 200 "$1" | tr '\r' '\n' | grep -E '^sess=' | tail -n1 |
		sed -E 's/.*mesg=([0-9]+).*/\1/'
}
wait_port() {
	for _ in $(seq 1 200); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.05
	done
	return 1
}

mkdir -m 700 "$tmp/keys"
"$B/kairanctl" dkim keygen --domain news.example.jp --selector bench \
	--dir "$tmp/keys" >/dev/null
/usr/bin/python3 - "$tmp" "$n" <<'EOF'
import sys
d, n = sys.argv[1], int(sys.argv[2])
with open(d + "/subs.csv", "w") as f:
    f.write("email,name\n")
    for i in range(n):
        f.write("reader%07d@example.net,読者%d\n" % (i, i))
para = ("今月は、取引先を装ったメールでマルウェアを送り込む手口が再び増えました。"
        "添付ファイルを開く前に送信元を確かめ、マクロを有効にしないでください。\n\n")
body = "# 今月の脅威動向\n\n"
while len(body.encode()) < 9000:
    body += para
with open(d + "/report.md", "w") as f:
    f.write("---\nsubject: 第12号 SIPS セキュリティレポート\nlist: bench\n---\n"
            + body)
EOF

dkim_block() { # none|ed25519|rsa|both
	local rsa="      rsa: {selector: bench-rsa, key_file: $tmp/keys/bench-rsa.key}"
	local ed="      ed25519: {selector: bench-ed25519, key_file: $tmp/keys/bench-ed25519.key}"
	[ "$1" = none ] && return 0
	echo "    dkim:"
	echo "      domain: news.example.jp"
	case "$1" in
	rsa) echo "$rsa" ;;
	ed25519) echo "$ed" ;;
	both) echo "$rsa"; echo "$ed" ;;
	esac
}

declare -A wall cpu
run() { # CONFIG
	local port http admin cfg log t0 t1 c0 c1
	port=$(free_port); http=$(free_port); admin=$(free_port)
	rm -f "$tmp/kairan.db"* "$tmp/token.key"
	mkdir -p "$tmp/outbox"
	cfg=$tmp/kairan.yaml
	log=$tmp/sink.log
	cat >"$cfg" <<EOF
database: $tmp/kairan.db
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
    from: "SIPS Security Report <report@news.example.jp>"
    language: ja
    footer: |
      株式会社Example / 配信停止: {{unsubscribe_url}}
$(dkim_block "$1")
delivery:
  transport: smtp
  workers: $workers
smtp:
  - host: 127.0.0.1
    port: $port
    tls: none
log:
  level: warn
EOF
	"$B/kairanctl" --config "$cfg" subscribers import "$tmp/subs.csv" \
		--list bench --confirmed >/dev/null
	: >"$log"
	local args=(-c -m 1024 -t 300)
	[ "$(id -u)" = 0 ] && args+=(-u nobody) && chown nobody "$log"
	"$SINK" "${args[@]}" "127.0.0.1:$port" 4096 >"$log" 2>&1 </dev/null &
	spid=$!
	wait_port "$port" || { echo "bench: smtp-sink did not start" >&2; exit 1; }
	"$B/kairand" --config "$cfg" 2>"$tmp/kairand.log" &
	kpid=$!
	wait_port "$admin" || { cat "$tmp/kairand.log" >&2; exit 1; }
	sleep 0.5
	c0=$(cpu_of "$kpid")
	t0=$(date +%s%N)
	"$B/kairanctl" --config "$cfg" send "$tmp/report.md" >/dev/null
	local end=$(($(date +%s) + 1800))
	while [ "$(mesg_of "$log")" -lt "$n" ]; do
		[ "$(date +%s)" -lt "$end" ] || {
			echo "bench: stalled at $(mesg_of "$log")" >&2; exit 1; }
		sleep 0.01
	done
	t1=$(date +%s%N)
	c1=$(cpu_of "$kpid")
	kill "$kpid"; wait "$kpid" || true; kpid=""
	kill "$spid"; wait "$spid" 2>/dev/null || true; spid=""
	wall[$1]+="$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", (b-a)/1e9}') "
	cpu[$1]+="$(awk -v a="$c0" -v b="$c1" 'BEGIN{printf "%.2f", b-a}') "
	echo "$1: $n messages in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", (b-a)/1e9}')s, cpu $(awk -v a="$c0" -v b="$c1" 'BEGIN{printf "%.2f", b-a}')s" >&2
}

configs=(none ed25519 rsa both)
for _ in $(seq 1 "$rounds"); do
	for c in "${configs[@]}"; do
		run "$c"
	done
done

# best / median wall-clock msgs/s, median CPU µs per message.
stat_of() { # VALUES... -> "best median" of n/v (wall) or v (cpu)
	printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[1], a[int((NR+1)/2)]}'
}
echo "kairand end to end, $n messages of ~10 KB, $workers workers, $rounds rounds (interleaved)"
echo "| signing | msgs/s best | msgs/s median | vs. none (median) | kairand CPU µs/msg (median) | vs. none |"
echo "|---|---|---|---|---|---|"
read -r nb nm <<<"$(stat_of ${wall[none]})"
read -r _ ncm <<<"$(stat_of ${cpu[none]})"
for c in "${configs[@]}"; do
	read -r b m <<<"$(stat_of ${wall[$c]})"
	read -r _ cm <<<"$(stat_of ${cpu[$c]})"
	awk -v n="$n" -v b="$b" -v m="$m" -v nm="$nm" -v cm="$cm" -v ncm="$ncm" -v c="$c" \
	    'BEGIN { printf "| %s | %.0f | %.0f | %+.1f%% | %.0f | %+.0f%% |\n",
	        c, n / b, n / m, (nm / m - 1) * 100, cm / n * 1e6,
	        (cm / ncm - 1) * 100 }'
done
