#!/usr/bin/env bash
# bench/crash.sh — the crash test at full size: a report to N subscribers
# (default 20,000) through aiosmtpd (tests/integration/smtp_server.py logs
# every accepted message), `kill -9` of kairand at random points for R
# rounds (default 8), a restart after each; then counts lost, duplicated
# and delivered copies and checks duplicates <= the claims in flight at the
# kills (read from the database after each kill). The logic is
# tests/integration/test_crash.py (make test runs it with 2,000).
#
# usage: bench/crash.sh [-n SUBSCRIBERS] [-r ROUNDS] [-s SEED]
#                       [-f FLAVOUR] [-o FILE.md | -o -]
# FLAVOUR: build flavour of kairand (default release; asan works, slower).
set -euo pipefail
cd "$(dirname "$0")/.."
n=20000
rounds=8
seed=$(date +%s)
flavour=release
out=bench/history/$(date -u +%Y-%m-%dT%H%M)-crash.md
while getopts "n:r:s:f:o:" o; do
	case "$o" in
	n) n=$OPTARG ;;
	r) rounds=$OPTARG ;;
	s) seed=$OPTARG ;;
	f) flavour=$OPTARG ;;
	o) out=$OPTARG ;;
	*) sed -n '2,12p' "$0"; exit 2 ;;
	esac
done
make --no-print-directory FLAVOUR="$flavour" "build-$flavour" >/dev/null
export KAIRAN_BUILD="build/$flavour" KAIRAN_ROOT="$PWD"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
/usr/bin/python3 tests/integration/test_crash.py --subscribers "$n" \
    --rounds "$rounds" --seed "$seed" | tee "$log" || status=$?
summary=$(grep '^# crash: delivered=' "$log" | sed 's/^# crash: //')
kills=$(grep '^# kill ' "$log" | sed 's/^# /    /')
verdict=PASS
grep -q '^not ok' "$log" && verdict=FAIL
[ "$status" -eq 0 ] || verdict=FAIL
echo "crash: $summary ($verdict)"
if [ "$out" != - ]; then
	{
		echo
		echo "## Crash test (\`bench/crash.sh\`), $(date -u '+%Y-%m-%d %H:%M UTC')"
		echo
		echo "Machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1)," \
		    "$(free -h | awk '/^Mem:/ {print $2}') RAM, Linux $(uname -r)."
		echo "Command: \`bench/crash.sh -n $n -r $rounds -s $seed -f $flavour\`"
		echo "(kairand $flavour build, 4 workers x batch 50, lease 10 s, into aiosmtpd)."
		echo
		echo "Result: **$verdict** — $summary."
		echo "\`in_flight_at_kills\` counts the claims (row, lease) that were claimed"
		echo "but not marked at any kill, read from the database after each kill:"
		echo "the bound on duplicates."
		echo
		echo "$kills"
	} >>"$out"
fi
exit "$status"
