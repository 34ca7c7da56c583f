#!/usr/bin/env bash
# wrk on loopback against kairand's public listener, beside nginx serving
# the very same sign-up page as a static file, in the same run:
#   GET /                 kairand (cached page)   vs nginx (static file)
#   POST /subscribe       distinct addresses, each from its own client
#                         address (X-Forwarded-For from a trusted proxy, so
#                         the per-client rate limit is not what is measured)
# Usage: bench/web.sh [SECONDS] [CONNECTIONS]   (default 10 s, 50)
# Needs a release build (make FLAVOUR=release) or KAIRAN_BUILD=build/x.
# Prints one line per run: requests/s, p50, p99; nothing is timed-asserted.
set -eu
cd "$(dirname "$0")/.."
BUILD="${KAIRAN_BUILD:-build/release}"
DUR="${1:-10}"
CONNS="${2:-50}"
THREADS=2
[ -x "$BUILD/kairand" ] || { echo "no $BUILD/kairand: make FLAVOUR=release" >&2; exit 2; }

base=$(mktemp -d /tmp/kairan-bench-web.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	[ -n "${KAIRAN_KEEP:-}" ] || rm -rf "$base"
}
trap cleanup EXIT
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
hp=$(port); ap=$(port); np=$(port)
mkdir -p "$base/outbox" "$base/mail" "$base/www"
chmod 755 "$base" "$base/www"   # nginx workers run unprivileged
cat >"$base/kairan.yaml" <<YAML
database: $base/kairan.db
key_file: $base/token.key
public_url: http://127.0.0.1:$hp
http:
  listen: 127.0.0.1:$hp
  trusted_proxies: [127.0.0.1]
admin:
  listen: 127.0.0.1:$ap
sender:
  name: 株式会社Example
  address: 東京都千代田区千代田1-1
  contact: info@example.jp
lists:
  - id: sips-report
    name: SIPS セキュリティレポート
    from: "SIPS Security Report <report@news.example.jp>"
    language: ja
delivery:
  transport: maildir
  maildir: $base/mail
log:
  level: warn
YAML
"$BUILD/kairand" --config "$base/kairan.yaml" >"$base/kairand.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
	curl -fsS -o "$base/www/index.html" "http://127.0.0.1:$hp/" 2>/dev/null && break
	sleep 0.1
done
chmod 644 "$base/www/index.html"
[ -s "$base/www/index.html" ] || { echo "kairand did not start" >&2; cat "$base/kairand.log" >&2; exit 1; }

cat >"$base/nginx.conf" <<NGINX
worker_processes auto;
pid $base/nginx.pid;
error_log $base/nginx.err;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $base/nt; proxy_temp_path $base/nt;
  fastcgi_temp_path $base/nt; uwsgi_temp_path $base/nt; scgi_temp_path $base/nt;
  server {
    listen 127.0.0.1:$np;
    root $base/www;
    location = / {
      default_type "text/html; charset=utf-8";
      try_files /index.html =404;
    }
  }
}
NGINX
nginx -c "$base/nginx.conf" -g 'daemon off;' &
pids+=($!)
for _ in $(seq 100); do curl -fsS -o /dev/null "http://127.0.0.1:$np/" 2>/dev/null && break; sleep 0.1; done

# libmicrohttpd answering the same bytes and nothing else, in the first
# call of the handler (see bench/mhd_bare.c: no keep-alive that way).
bp=$(port)
# shellcheck disable=SC2046 # pkg-config prints several words
cc -O2 -o "$base/mhd_bare" bench/mhd_bare.c $(pkg-config --cflags --libs libmicrohttpd)
"$base/mhd_bare" "$bp" "$base/www/index.html" &
pids+=($!)
for _ in $(seq 100); do curl -fsS -o /dev/null "http://127.0.0.1:$bp/" 2>/dev/null && break; sleep 0.1; done

cat >"$base/post.lua" <<'LUA'
-- distinct addresses and client addresses per request
local counter = 0
local nthreads = 0
tid = 0
setup = function(thread) thread:set("tid", nthreads); nthreads = nthreads + 1 end
init = function() counter = 0 end
request = function()
  counter = counter + 1
  local n = tid * 10000000 + counter
  local ip = string.format("10.%d.%d.%d", math.floor(n / 65536) % 256,
    math.floor(n / 256) % 256, n % 256)
  local body = "email=bench" .. tid .. "-" .. counter .. "%40example.jp"
  return wrk.format("POST", "/subscribe", {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["X-Forwarded-For"] = ip }, body)
end
LUA

run() { # NAME URL [wrk args...]
	local name="$1" url="$2" out rps p50 p99
	shift 2
	out=$(wrk -t"$THREADS" -c"$CONNS" -d"${DUR}s" --latency "$@" "$url")
	rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
	p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
	p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
	non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
	printf '%-28s %10s req/s   p50 %-9s p99 %-9s%s\n' "$name" "$rps" "$p50" \
	    "$p99" "${non2xx:+  non-2xx $non2xx}"
	echo "$rps" >"$base/$name.rps"
}

echo "# bench/web.sh: wrk -t$THREADS -c$CONNS -d${DUR}s on loopback, $(nproc) cores, $(date -u +%FT%TZ)"
echo "# page: $(stat -c %s "$base/www/index.html") bytes"
run nginx-static "http://127.0.0.1:$np/"
run mhd-bare-first-call "http://127.0.0.1:$bp/"
run kairand-GET "http://127.0.0.1:$hp/"
run kairand-POST-subscribe "http://127.0.0.1:$hp/subscribe" -s "$base/post.lua"
awk -v k="$(cat "$base/kairand-GET.rps")" -v n="$(cat "$base/nginx-static.rps")" \
    -v b="$(cat "$base/mhd-bare-first-call.rps")" \
    'BEGIN { printf "# GET ratio kairand/nginx: %.2f   kairand/bare-first-call: %.2f\n", k / n, k / b }'
subs=$(/usr/bin/python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from subscribers').fetchone()[0])" "$base/kairan.db")
echo "# subscriptions stored by the POST run: $subs"
