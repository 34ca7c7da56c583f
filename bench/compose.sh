#!/bin/sh
# Messages composed per second per core: config/sample-report.md (a 10 KB
# Japanese report) for COUNT subscribers, each with its own signed
# unsubscribe link and VERP token, on one pinned core, release build.
# usage: bench/compose.sh [COUNT]   (default 200000)
set -eu
cd "$(dirname "$0")/.."
count=${1:-200000}
make -s FLAVOUR=release build/release/libkairan.a >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# shellcheck disable=SC2046 # word splitting of pkg-config output is wanted
cc -O2 -g -std=c11 -D_GNU_SOURCE -pthread -Ilib bench/compose_bench.c \
	build/release/libkairan.a \
	$(pkg-config --libs yaml-0.1 sqlite3 libsodium libcurl libcmark \
		libesmtp-1.0 libmicrohttpd libsystemd libssl libcrypto) \
	$(pkg-config --libs libidn2 2>/dev/null || true) \
	-o "$tmp/compose_bench"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo "report: config/sample-report.md ($(wc -c <config/sample-report.md) bytes)"
# the same report for a UTF-8 list, then for an ISO-2022-JP one
for cs in utf-8 iso-2022-jp; do
	BENCH_CHARSET=$cs taskset -c 0 "$tmp/compose_bench" \
		config/sample-report.md "$count" "$tmp/token.key"
done
