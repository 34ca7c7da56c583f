#!/bin/sh
# What DKIM signing adds per message, on one pinned core, release build:
# config/sample-report.md composed for COUNT subscribers (the baseline),
# then composed and signed with Ed25519, RSA-2048 and both.
# usage: bench/dkim.sh [COUNT]   (default 20000)
set -eu
cd "$(dirname "$0")/.."
count=${1:-20000}
make -s FLAVOUR=release build/release/libkairan.a >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# shellcheck disable=SC2046 # word splitting of pkg-config output is wanted
cc -O2 -g -std=c11 -D_GNU_SOURCE -pthread -Ilib bench/dkim_bench.c \
	build/release/libkairan.a \
	$(pkg-config --libs yaml-0.1 sqlite3 libsodium libcurl libcmark \
	libcrypto) \
	$(pkg-config --libs libidn2 2>/dev/null || true) \
	-o "$tmp/dkim_bench"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo "openssl: $(openssl version)"
taskset -c 0 "$tmp/dkim_bench" config/sample-report.md "$count" "$tmp"
