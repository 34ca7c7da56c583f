#!/usr/bin/env bash
# Token sign/verify and address normalisation throughput, one core, release
# flags. Usage: bench/token.sh [N]   (default 1000000)
set -eu
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cc -std=c11 -D_GNU_SOURCE -O2 -Ilib bench/bench_token.c lib/token.c \
	lib/address.c lib/err.c lib/xmem.c -lsodium -lidn2 -o "$out/bench_token"
"$out/bench_token" "$out/token.key" "${1:-1000000}"
