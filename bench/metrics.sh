#!/bin/sh
# What one GET /metrics costs kairand with a large store
# (bench/metrics_bench.c): the uncached look at the store and a cached
# scrape. Usage: bench/metrics.sh [ROWS]   (from the repository root)
set -eu
cd "$(dirname "$0")/.."
rows="${1:-1000000}"
make --no-print-directory FLAVOUR=release build/release/libkairan.a >/dev/null
# shellcheck disable=SC2046
cc -std=c11 -D_GNU_SOURCE -O2 -pthread -Ilib -o build/release/metrics_bench \
	bench/metrics_bench.c build/release/libkairan.a \
	$(pkg-config --libs yaml-0.1 sqlite3 libsodium libesmtp-1.0 libcurl \
		libmicrohttpd libcmark libsystemd libssl libcrypto libidn2 libpq) -lm
dir=$(mktemp -d /tmp/kairan-bench-XXXXXX)
trap 'rm -rf "$dir"' EXIT
echo "machine: $(nproc) cores; rows: $rows"
build/release/metrics_bench "$dir/kairan.db" "$rows"
