#!/usr/bin/env bash
# kr_bounce_parse throughput, one core, release flags: the fixtures of
# tests/data/bounces and 10 MB of binary (the input cap).
# Usage: bench/bounce.sh [ROUNDS]   (default 20000)
set -eu
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cc -std=c11 -D_GNU_SOURCE -O2 -Ilib bench/bounce_bench.c lib/bounce.c \
	lib/err.c -o "$out/bounce_bench"
taskset -c 0 "$out/bounce_bench" tests/data/bounces "${1:-20000}"
