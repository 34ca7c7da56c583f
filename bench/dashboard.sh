#!/bin/sh
# What each page of the operator's dashboard costs kairand at scale: an
# SQLite store with SUBS subscribers (default 1,000,000; sign-ups spread
# over 90 days, 3 % unsubscribed) and REPORTS reports (default 10) of one
# copy per subscriber each (10,000,000 delivery rows: 95 % sent over an
# hour, 3 % failed, 2 % deferred, on 10 domains). GET /, /reports,
# /reports/1 and /metrics are each timed RUNS times (default 5) with
# curl; the medians are printed. With BASE=REF in the environment the
# same store is built and timed again, in the same run, by kairand of that
# git commit (built in a temporary worktree): before and after.
# Usage: [BASE=REF] bench/dashboard.sh [SUBS [REPORTS [RUNS]]]  (from the
# repository root)
set -eu
cd "$(dirname "$0")/.."
subs="${1:-1000000}"
reports="${2:-10}"
runs="${3:-5}"
make --no-print-directory FLAVOUR=release >/dev/null
B=build/release
dir=$(mktemp -d /tmp/kairan-bench-XXXXXX)
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$dir"
	git worktree prune
}
trap cleanup EXIT
trap 'exit 143' INT TERM
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
hp=$(port)
ap=$(port)
mkdir -p "$dir/mail" "$dir/outbox"
cat >"$dir/kairan.yaml" <<YAML
database: $dir/kairan.db
key_file: $dir/token.key
public_url: http://127.0.0.1:$hp
http:
  listen: 127.0.0.1:$hp
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
  maildir: $dir/mail
YAML
start() {
	$B/kairand --config "$dir/kairan.yaml" >>"$dir/kairand.log" 2>&1 &
	pid=$!
	for _ in $(seq 300); do
		curl -fsS -o /dev/null "http://127.0.0.1:$ap/healthz" 2>/dev/null &&
			return 0
		sleep 0.1
	done
	echo "kairand did not start" >&2
	tail -5 "$dir/kairand.log" >&2
	exit 1
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }
# the schema and the key file, by kairand
build_store() {
rm -f "$dir"/kairan.db*
start
stop
now=$(date +%s)
t0=$(date +%s)
sqlite3 "$dir/kairan.db" <<SQL
PRAGMA synchronous = OFF;
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $subs)
INSERT INTO subscribers (id, list_id, email, status, created_at, consent_at,
  confirmed_at, unsubscribed_at, consent_source)
SELECT i, 'sips-report', 'u' || i || '@d' || (i % 10) || '.example.jp',
  CASE WHEN i % 33 = 0 THEN 2 ELSE 1 END,
  $now - (i * 7776000 / $subs), $now - (i * 7776000 / $subs),
  $now - (i * 7776000 / $subs),
  CASE WHEN i % 33 = 0 THEN $now - (i * 7776000 / $subs) / 2 ELSE 0 END,
  'import' FROM n;
WITH RECURSIVE r(j) AS (SELECT 1 UNION ALL SELECT j + 1 FROM r WHERE j < $reports)
INSERT INTO reports (id, list_id, subject, text, html, hash, created_at, state)
SELECT j, 'sips-report', 'Report ' || j, 'text', '<p>html</p>',
  printf('%064d', j), $now - ($reports - j) * 86400 - 3600, 0 FROM r;
COMMIT;
SQL
r=1
while [ "$r" -le "$reports" ]; do
	sqlite3 "$dir/kairan.db" <<SQL
PRAGMA synchronous = OFF;
BEGIN;
INSERT INTO deliveries (kind, report_id, subscriber_id, domain, state,
  attempts, queued_at, next_attempt, code, reply, sent_at)
SELECT 0, $r, id, substr(email, instr(email, '@') + 1),
  CASE WHEN id % 100 < 95 THEN 1 WHEN id % 100 < 98 THEN 3 ELSE 2 END,
  1, $now - ($reports - $r) * 86400 - 3600, $now + 86400 * 30,
  CASE WHEN id % 100 < 95 THEN 250 WHEN id % 100 < 98 THEN 550 ELSE 451 END,
  CASE WHEN id % 100 < 95 THEN '250 2.0.0 Ok'
       WHEN id % 100 < 98 THEN '550 5.1.1 user unknown'
       ELSE '451 4.7.1 greylisted, try again later' END,
  CASE WHEN id % 100 < 95
       THEN $now - ($reports - $r) * 86400 - 3600 + (id * 3600 / $subs)
       ELSE 0 END
FROM subscribers;
COMMIT;
SQL
	r=$((r + 1))
done
echo "built: $subs subscribers, $reports reports," \
	"$(sqlite3 "$dir/kairan.db" 'SELECT count(*) FROM deliveries') deliveries" \
	"in $(($(date +%s) - t0)) s"
sqlite3 "$dir/kairan.db" 'ANALYZE;'
}

median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
time_pages() { # LABEL
	for path in / /reports /reports/1 /metrics; do
		# the first look opens the dashboard's connection: not timed
		curl -s -o /dev/null "http://127.0.0.1:$ap$path"
		ms=$(i=0; while [ "$i" -lt "$runs" ]; do
			curl -s -o /dev/null -w '%{time_total}\n' \
				"http://127.0.0.1:$ap$path"
			i=$((i + 1))
		done | median)
		code=$(curl -s -o /dev/null -w '%{http_code}' \
			"http://127.0.0.1:$ap$path")
		printf '%-14s %-10s %8.1f ms  (HTTP %s, median of %s)\n' "$1" \
			"$path" "$(echo "$ms * 1000" | bc -l)" "$code" "$runs"
	done
}

echo "machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' \
	/proc/cpuinfo | head -1), $(free -g | awk '/^Mem:/ {print $2}') GB"
B=build/release
build_store
start
time_pages "$(git rev-parse --short HEAD)"
stop
if [ -n "${BASE:-}" ]; then
	git worktree add -q --detach "$dir/base" "$BASE"
	make --no-print-directory -C "$dir/base" FLAVOUR=release >/dev/null
	B=$dir/base/build/release
	build_store
	start
	time_pages "$(git rev-parse --short "$BASE") (BASE)"
	stop
	git worktree remove --force "$dir/base"
fi
