#!/bin/sh
# Times the store with a million subscribers (bench/queue_1m.c): queueing a
# report with kr_store_report_add, claims, mark_sent; peak RSS; DB growth.
# Usage: bench/queue_1m.sh [ROWS [sqlite|postgresql]]   (from the repository
# root); postgresql: a PostgreSQL 15 started on loopback for the run
# (tests/integration/pg.py, fsync off), a fresh database.
set -eu
cd "$(dirname "$0")/.."
rows="${1:-1000000}"
store="${2:-sqlite}"
make --no-print-directory FLAVOUR=release build/release/libkairan.a >/dev/null
# shellcheck disable=SC2046
cc -std=c11 -D_GNU_SOURCE -O2 -Ilib -o build/release/queue_1m \
	bench/queue_1m.c build/release/libkairan.a \
	$(pkg-config --libs sqlite3 libsodium libpq) -lm
dir=$(mktemp -d /tmp/kairan-bench-XXXXXX)
chmod 755 "$dir"
trap '[ "$store" = postgresql ] && /usr/bin/python3 tests/integration/pg.py stop "$dir/pg"; rm -rf "$dir"' EXIT
echo "machine: $(nproc) cores, $(free -h | awk '/^Mem:/ {print $2}') RAM; rows: $rows; store: $store"
if [ "$store" = postgresql ]; then
	set -- $(/usr/bin/python3 tests/integration/pg.py start "$dir/pg")
	KAIRAN_DB_PASSWORD=$(cat "$2")
	export KAIRAN_DB_PASSWORD
	PGPASSWORD=$KAIRAN_DB_PASSWORD psql -X -q "$1" -c "CREATE DATABASE q1m"
	build/release/queue_1m "${1%/postgres}/q1m" "$rows"
else
	build/release/queue_1m "$dir/kairan.db" "$rows"
fi
