#!/bin/sh
# Times the store with a million subscribers (bench/queue_1m.c): queueing a
# report with kr_store_report_add, claims, mark_sent; peak RSS; DB growth.
# Usage: bench/queue_1m.sh [ROWS]   (from the repository root)
set -eu
cd "$(dirname "$0")/.."
rows="${1:-1000000}"
make --no-print-directory FLAVOUR=release build/release/libkairan.a >/dev/null
# shellcheck disable=SC2046
cc -std=c11 -D_GNU_SOURCE -O2 -Ilib -o build/release/queue_1m \
	bench/queue_1m.c build/release/libkairan.a \
	$(pkg-config --libs sqlite3 libsodium) -lm
dir=$(mktemp -d /tmp/kairan-bench-XXXXXX)
trap 'rm -rf "$dir"' EXIT
echo "machine: $(nproc) cores, $(free -h | awk '/^Mem:/ {print $2}') RAM; rows: $rows"
build/release/queue_1m "$dir/kairan.db" "$rows"
