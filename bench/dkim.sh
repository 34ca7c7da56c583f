#!/bin/sh
# What DKIM signing adds per message, on one pinned core, release build:
# config/sample-report.md composed for COUNT subscribers (the baseline),
# then composed and signed with Ed25519, RSA-2048 and both. Then the
# delivery pipeline: WORKERS threads composing, signing and sending over
# the SMTP transport into Postfix's smtp-sink on 127.0.0.1, wall clock.
# The machine may be shared: the pipeline runs ROUNDS interleaved rounds and
# keeps the best of each.
# usage: bench/dkim.sh [COUNT [WORKERS [ROUNDS]]]   (default 10000 2 5)
set -eu
cd "$(dirname "$0")/.."
count=${1:-10000}
workers=${2:-2}
rounds=${3:-5}
make -s FLAVOUR=release build/release/libkairan.a build/release/kairan-smtp >/dev/null
tmp=$(mktemp -d)
sink=
trap 'rm -rf "$tmp"; [ -z "$sink" ] || kill "$sink" 2>/dev/null' EXIT
# shellcheck disable=SC2046 # word splitting of pkg-config output is wanted
cc -O2 -g -std=c11 -D_GNU_SOURCE -pthread -Ilib bench/dkim_bench.c \
	build/release/libkairan.a \
	$(pkg-config --libs yaml-0.1 sqlite3 libsodium libesmtp-1.0 libcurl \
	libmicrohttpd libcmark libsystemd libssl libcrypto libidn2) \
	-o "$tmp/dkim_bench"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo "openssl: $(openssl version)"
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
/usr/sbin/smtp-sink -u nobody 127.0.0.1:"$port" 256 &
sink=$!
sleep 0.5
"$tmp/dkim_bench" config/sample-report.md "$count" "$tmp" "$port" "$workers" \
	"$rounds"
