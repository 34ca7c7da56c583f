#!/usr/bin/env bash
# bench/postfix.sh — kairand end to end into a real Postfix (its smtpd offers
# PIPELINING and CHUNKING, so libesmtp sends BDAT), beside smtp-source into
# the same Postfix. Postfix is a private instance started here: config and
# queue in temporary folders (queue on /dev/shm), every message discarded
# after it was queued, smtpd on 127.0.0.1 and a free port; it is stopped by
# its master's pid at the end. Needs root (Postfix's master) and the
# postfix package (make deps installs it, preseeded "No configuration").
#
# usage: bench/postfix.sh [-n MESSAGES] [-w WORKERS] [-r RUNS] [-o FILE.md | -o -]
# kairand is timed from `kairanctl send` until `kairanctl status` counts
# every copy sent (polled every 0.2 s); smtp-source -d -s WORKERS gets one of
# kairand's own composed messages. KAIRAN_BENCH_BUILD=DIR runs another build.
# Profiling (the figures then are not the benchmark's): KAIRAN_BENCH_PERF=DIR
# records `perf record -a -g` over each sender's window (DIR/perf-kairand-R
# .data, DIR/perf-source-R.data); KAIRAN_BENCH_STRACE=DIR runs each sender
# under `strace -f -c` (DIR/strace-kairand-R.txt: kairand and kairan-smtp;
# DIR/strace-source-R.txt; KAIRAN_BENCH_STRACE_OPTS replaces -c, e.g. -tt).
# KAIRAN_BENCH_BATCH=N sets delivery.batch (default 50: one SMTP connection
# per batch); KAIRAN_BENCH_SOURCE_OPTS adds smtp-source options, e.g. -N (a
# new recipient per message, as kairand's: Postfix's address caches then
# miss as they do for kairand).
set -euo pipefail
cd "$(dirname "$0")/.."
n=20000; workers=4; runs=3; out=bench/history/$(date -u +%Y-%m-%dT%H%M)-postfix.md
while getopts "n:w:r:o:" o; do
	case "$o" in
	n) n=$OPTARG ;; w) workers=$OPTARG ;; r) runs=$OPTARG ;; o) out=$OPTARG ;;
	*) sed -n '2,14p' "$0"; exit 2 ;;
	esac
done
[ "$(id -u)" = 0 ] || { echo "bench/postfix.sh: needs root (Postfix)" >&2; exit 2; }
[ -x /usr/sbin/postfix ] && [ -x /usr/sbin/smtp-source ] ||
	{ echo "bench/postfix.sh: needs the postfix package" >&2; exit 2; }
[ -n "${KAIRAN_BENCH_NOBUILD:-}" ] ||
	make --no-print-directory FLAVOUR=release build-release >/dev/null
B=${KAIRAN_BENCH_BUILD:-$PWD/build/release}
tmp=$(mktemp -d /tmp/kairan-pf.XXXXXX)
q=$(mktemp -d /dev/shm/kairan-pfq.XXXXXX)
chmod 755 "$tmp" "$q"
mpid=""; kpid=""; spid=""; ppid_=""
perf_dir=${KAIRAN_BENCH_PERF:-}; strace_dir=${KAIRAN_BENCH_STRACE:-}
cleanup() {
	[ -n "$ppid_" ] && kill -INT "$ppid_" 2>/dev/null
	[ -n "$kpid" ] && kill "$kpid" 2>/dev/null
	[ -n "$mpid" ] && kill "$mpid" 2>/dev/null && sleep 1
	# the rest of the Postfix this script started: its session, by id
	[ -n "$spid" ] && kill -- "-$spid" 2>/dev/null
	rm -rf "$tmp" "$q"
}
trap cleanup EXIT
free_port() {
	/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
pport=$(free_port)

# ---- a private Postfix: accept for example.net from 127.0.0.1, discard ----
mkdir -p "$tmp/pf" "$tmp/data"
chown postfix "$tmp/data"
cat >"$tmp/pf/main.cf" <<EOF2
compatibility_level = 3.6
queue_directory = $q
data_directory = $tmp/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = bench.example
mydestination =
relay_domains = example.net
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
default_transport = discard
relay_transport = discard
maillog_file = /dev/stdout
smtpd_client_connection_count_limit = 0
smtpd_client_message_rate_limit = 0
default_process_limit = 100
EOF2
# KAIRAN_BENCH_POSTFIX_CF: more main.cf lines, e.g.
# "smtpd_discard_ehlo_keywords = chunking" (DATA instead of BDAT)
[ -z "${KAIRAN_BENCH_POSTFIX_CF:-}" ] ||
	printf '%s\n' "$KAIRAN_BENCH_POSTFIX_CF" >>"$tmp/pf/main.cf"
# master.cf as Debian ships it, smtpd on our port, nothing chrooted
awk -v p="127.0.0.1:$pport" '
	/^smtp[ \t]+inet/ { print p " inet n - n - - smtpd"; next }
	/^[a-z0-9]/ && NF >= 8 { $5 = "n" }
	{ print }' /etc/postfix/master.cf >"$tmp/pf/master.cf"
setsid /usr/sbin/postfix -c "$tmp/pf" start-fg >"$tmp/postfix.log" 2>&1 &
spid=$!
for _ in $(seq 1 100); do
	mpid=$(tr -d " " <"$q/pid/master.pid" 2>/dev/null || true)
	[ -n "$mpid" ] && (exec 3<>"/dev/tcp/127.0.0.1/$pport") 2>/dev/null && break
	sleep 0.1
done
[ -n "$mpid" ] || { echo "bench/postfix.sh: Postfix did not start" >&2; tail "$tmp/postfix.log" >&2; exit 1; }

# ---- subscribers and the ~10 KB Japanese report of bench/kairand.sh ----
/usr/bin/python3 bench/bench_input.py "$tmp" "$n"
tck=$(getconf CLK_TCK)
# kairand's CPU and that of its kairan-smtp children (as bench/kairand.sh).
cpu_of() {
	{
		awk '{ print $14 + $15 + $16 + $17 }' "/proc/$1/stat"
		for k in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
			awk '{ print $14 + $15 }' "/proc/$k/stat" 2>/dev/null
		done
	} | awk -v t="$tck" '{ s += $1 } END { printf "%.2f", s / t }'
}
k_wall=(); k_cpu=(); s_wall=(); s_cpu=()
for r in $(seq 1 "$runs"); do
	rm -rf "$tmp/k"; mkdir -p "$tmp/k"
	cat >"$tmp/k/k.yaml" <<EOF2
database: $tmp/k/kairan.db
key_file: $tmp/k/token.key
public_url: https://news.example.jp
http:
  listen: 127.0.0.1:$(free_port)
admin:
  listen: 127.0.0.1:$(free_port)
sender:
  name: 株式会社Example
  address: 東京都千代田区千代田1-1
  contact: info@example.jp
lists:
  - id: bench
    name: SIPS セキュリティレポート
    from: "SIPS Security Report <report@news.example.jp>"
    language: ja
delivery:
  transport: smtp
  workers: $workers
  bounce_domain: bounces.example.jp${KAIRAN_BENCH_BATCH:+
  batch: $KAIRAN_BENCH_BATCH}
smtp:
  - host: 127.0.0.1
    port: $pport
    tls: none
log:
  level: warn
EOF2
	ctl() { "$B/kairanctl" --config "$tmp/k/k.yaml" "$@"; }
	ctl subscribers import "$tmp/subs.csv" --list bench --confirmed >/dev/null
	if [ "$r" = 1 ]; then
		ctl send "$tmp/report.md" --dry-run 1 --out "$tmp/dry" >/dev/null
		msg=$(ls "$tmp"/dry/*.eml | head -n1)
	fi
	if [ -n "$strace_dir" ]; then
		strace -f ${KAIRAN_BENCH_STRACE_OPTS:--c} -o "$strace_dir/strace-kairand-$r.txt" \
			"$B/kairand" --config "$tmp/k/k.yaml" 2>"$tmp/k/kairand.log" &
		tpid=$!
		sleep 2
		kpid=$(cat "/proc/$tpid/task/$tpid/children" | awk '{print $1}')
	else
		"$B/kairand" --config "$tmp/k/k.yaml" 2>"$tmp/k/kairand.log" &
		kpid=$!
		sleep 1
	fi
	[ -z "$perf_dir" ] || {
		perf record -q -F 499 -a -g -o "$perf_dir/perf-kairand-$r.data" \
			>/dev/null 2>&1 & ppid_=$!; sleep 0.5; }
	c0=$(cpu_of "$kpid"); t0=$(date +%s%N)
	ctl send "$tmp/report.md" >/dev/null
	while :; do
		sent=$(ctl status 1 2>/dev/null | awk '$1 == "sent" {print $2}')
		[ "${sent:-0}" -ge "$n" ] && break
		kill -0 "$kpid" 2>/dev/null || { echo "bench: kairand died" >&2; exit 1; }
		sleep 0.2
	done
	t1=$(date +%s%N); c1=$(cpu_of "$kpid")
	[ -z "$ppid_" ] || { kill -INT "$ppid_"; wait "$ppid_" || true; ppid_=""; }
	kill "$kpid"
	if [ -n "$strace_dir" ]; then wait "$tpid" || true; else wait "$kpid" || true; fi
	kpid=""
	k_wall+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", (b-a)/1e9}')")
	k_cpu+=("$(awk -v a="$c0" -v b="$c1" 'BEGIN{printf "%.2f", b-a}')")
	echo "kairand run $r: $n messages in ${k_wall[-1]}s, cpu ${k_cpu[-1]}s" >&2
	[ -z "$perf_dir" ] || {
		perf record -q -F 499 -a -g -o "$perf_dir/perf-source-$r.data" \
			>/dev/null 2>&1 & ppid_=$!; sleep 0.5; }
	wrap=()
	[ -z "$strace_dir" ] || wrap=(strace -f ${KAIRAN_BENCH_STRACE_OPTS:--c} -o "$strace_dir/strace-source-$r.txt")
	t0=$(date +%s%N)
	/usr/bin/time -f "%U %S" -o "$tmp/source.time" "${wrap[@]}" /usr/sbin/smtp-source \
		${KAIRAN_BENCH_SOURCE_OPTS:-} -d -s "$workers" -m "$n" -F "$msg" -f report@news.example.jp \
		-t reader@example.net "127.0.0.1:$pport" >/dev/null 2>&1
	t1=$(date +%s%N)
	[ -z "$ppid_" ] || { kill -INT "$ppid_"; wait "$ppid_" || true; ppid_=""; }
	s_wall+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", (b-a)/1e9}')")
	s_cpu+=("$(awk '{printf "%.2f", $1 + $2}' "$tmp/source.time")")
	echo "smtp-source run $r: $n messages in ${s_wall[-1]}s, cpu ${s_cpu[-1]}s" >&2
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
kw=$(median "${k_wall[@]}"); kc=$(median "${k_cpu[@]}")
sw=$(median "${s_wall[@]}"); sc=$(median "${s_cpu[@]}")
rate() { awk -v n="$n" -v w="$1" 'BEGIN{printf "%.0f", n/w}'; }
us() { awk -v n="$n" -v c="$1" 'BEGIN{printf "%.0f", c*1e6/n}'; }
report=$(cat <<EOF2

## Delivery: kairand into a real Postfix (\`bench/postfix.sh\`), $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores

\`bench/postfix.sh -n $n -w $workers -r $runs\`${KAIRAN_BENCH_BATCH:+ (delivery.batch $KAIRAN_BENCH_BATCH)}${KAIRAN_BENCH_SOURCE_OPTS:+ (smtp-source $KAIRAN_BENCH_SOURCE_OPTS)} — a private Postfix $(/usr/sbin/postconf -d -h mail_version 2>/dev/null)
(smtpd with PIPELINING and CHUNKING, queue on /dev/shm, every message
discarded after it was queued), $n copies of the ~29 KB Japanese report,
$workers sessions; kairand timed until \`kairanctl status\` counts them sent,
smtp-source (DATA; it has no BDAT) with one of kairand's composed messages.
Medians of $runs runs, alternating. Postfix's own CPU (smtpd, cleanup, qmgr,
discard) is most of the machine here.

| sender → Postfix, $workers sessions | messages/s (median) | sender CPU µs/message (kairand: with kairan-smtp) |
|---|---|---|
| kairand (claim, compose, send with BDAT, mark sent per message) | $(rate "$kw") | $(us "$kc") |
| smtp-source -d -s $workers | $(rate "$sw") | $(us "$sc") |

kairand / smtp-source = **$(awk -v a="$sw" -v b="$kw" 'BEGIN{printf "%.2f", a/b}')**.
EOF2
)
echo "$report"
if [ "$out" != "-" ]; then echo "$report" >>"$out"; echo "bench: appended to $out" >&2; fi
