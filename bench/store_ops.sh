#!/bin/sh
# bench/store_ops.sh — store operations per second (bench/store_ops.c):
# claims of 100 and fenced mark-sent, as the delivery workers make them,
# with 1, 4 and 16 concurrent connections, on SQLite and on a PostgreSQL 15
# started on loopback for the run (tests/integration/pg.py, fsync off).
# Usage: bench/store_ops.sh [ROWS] (default 20000 copies per run)
set -eu
cd "$(dirname "$0")/.."
rows="${1:-20000}"
make --no-print-directory FLAVOUR=release build/release/libkairan.a >/dev/null
# shellcheck disable=SC2046
cc -std=c11 -D_GNU_SOURCE -O2 -pthread -Ilib -o build/release/store_ops \
	bench/store_ops.c build/release/libkairan.a \
	$(pkg-config --libs sqlite3 libsodium libpq yaml-0.1 libcurl libcmark libidn2) -lm
dir=$(mktemp -d /tmp/kairan-bench-XXXXXX)
chmod 755 "$dir"
trap '/usr/bin/python3 tests/integration/pg.py stop "$dir/pg"; rm -rf "$dir"' EXIT
set -- $(/usr/bin/python3 tests/integration/pg.py start "$dir/pg")
uri=$1
KAIRAN_DB_PASSWORD=$(cat "$2")
export KAIRAN_DB_PASSWORD
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $rows copies per run"
n=0
for c in 1 4 16; do
	n=$((n + 1))
	rm -f "$dir"/s.db*
	build/release/store_ops "$dir/s.db" "$rows" "$c"
	PGPASSWORD=$KAIRAN_DB_PASSWORD psql -X -q "$uri" -c "CREATE DATABASE ops$n"
	build/release/store_ops "${uri%/postgres}/ops$n" "$rows" "$c"
done
