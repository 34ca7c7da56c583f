#!/usr/bin/env bash
# A short run of every libFuzzer harness (tests/fuzz/fuzz_*.c) over its
# committed seed corpus plus a few thousand mutations: each must finish
# without a crash, leak or sanitizer report. `make fuzz` runs them long.
set -u
cd "$(dirname "$0")/../.."
n=0
fail=0
if ! make --no-print-directory FLAVOUR=fuzz CC=clang fuzz-bins-fuzz \
    >/tmp/kairan-fuzz-build.$$ 2>&1; then
	echo "not ok 1 - fuzz harnesses build with clang"
	tail -n 30 /tmp/kairan-fuzz-build.$$ | sed 's/^/#   /'
	rm -f /tmp/kairan-fuzz-build.$$
	echo "1..1"
	exit 1
fi
rm -f /tmp/kairan-fuzz-build.$$
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for f in build/fuzz/fuzz/fuzz_*; do
	name=${f##*/fuzz_}
	n=$((n + 1))
	seeds=tests/fuzz/$name
	mkdir -p "$work/$name"
	if "$f" -runs="${FUZZ_RUNS:-20000}" -max_total_time=60 \
	    -artifact_prefix="$work/$name-" "$work/$name" \
	    ${seeds:+$( [ -d "$seeds" ] && echo "$seeds")} \
	    >"$work/$name.log" 2>&1; then
		echo "ok $n - fuzz_$name survives its seeds and ${FUZZ_RUNS:-20000} mutations"
	else
		fail=1
		echo "not ok $n - fuzz_$name"
		grep -E 'ERROR|SUMMARY|#0|#1|#2' "$work/$name.log" | head -20 |
		    sed 's/^/#   /'
	fi
done
echo "1..$n"
exit $fail
