#!/usr/bin/env bash
# bench/soak.sh — N messages (default 200,000: one report to N subscribers)
# through kairand into aiosmtpd, the relay down for a while every F seconds
# (default 30); kairand's RSS and open fds sampled every second must stay
# flat after warm-up (RSS within 10 %, non-socket fds constant), nothing
# lost. The logic is bench/soak.py; this builds kairand and records the
# summary line in bench/history/DATE-soak.md (-o).
#
# usage: bench/soak.sh [-n MESSAGES] [-f FLAP_SECONDS] [-d DOWN_SECONDS]
#                      [-F FLAVOUR] [-o FILE.md | -o -]
set -euo pipefail
cd "$(dirname "$0")/.."
n=200000
flap=30
down=
flavour=release
out=bench/history/$(date -u +%Y-%m-%dT%H%M)-soak.md
while getopts "n:f:d:F:o:" o; do
	case "$o" in
	n) n=$OPTARG ;;
	f) flap=$OPTARG ;;
	d) down=$OPTARG ;;
	F) flavour=$OPTARG ;;
	o) out=$OPTARG ;;
	*) sed -n '2,10p' "$0"; exit 2 ;;
	esac
done
make --no-print-directory FLAVOUR="$flavour" "build-$flavour" >/dev/null
export KAIRAN_BUILD="build/$flavour" KAIRAN_ROOT="$PWD"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
/usr/bin/python3 bench/soak.py --messages "$n" --flap "$flap" \
    ${down:+--down "$down"} | tee "$log" || status=$?
summary=$(grep '^soak: ' "$log" | sed 's/^soak: //')
if [ "$out" != - ]; then
	{
		echo
		echo "## Soak (\`bench/soak.sh\`), $(date -u '+%Y-%m-%d %H:%M UTC')"
		echo
		echo "Machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1)," \
		    "$(free -h | awk '/^Mem:/ {print $2}') RAM, Linux $(uname -r)."
		echo "Command: \`bench/soak.sh -n $n -f $flap${down:+ -d $down} -F $flavour\`"
		echo "(kairand $flavour build, 4 workers x batch 100, into aiosmtpd"
		echo "--log-only; the relay is stopped for the down time every flap period;"
		echo "RSS/fds sampled every second from /proc)."
		echo
		echo "Result: $summary"
		echo
		echo "Samples (every 10 s):"
		echo
		grep '^# t=' "$log" | sed 's/^# /    /'
	} >>"$out"
fi
exit "$status"
