#!/usr/bin/env bash
# Headless Chromium screenshots of the public pages, so they are seen as a
# person sees them (a phone-sized window). Starts its own kairand on a
# temporary config (Maildir transport, loopback only) unless a URL is given.
#   tests/integration/screenshot.sh [OUTDIR]           start kairand, shoot
#   tests/integration/screenshot.sh OUTDIR URL...      shoot these URLs
# Writes OUTDIR/signup.png (and error.png, archive.png); default OUTDIR is
# build/screenshots. Japanese needs a CJK font (fonts-ipafont-gothic).
set -eu
cd "$(dirname "$0")/../.."
BUILD="${KAIRAN_BUILD:-build/asan}"
OUT="${1:-build/screenshots}"
mkdir -p "$OUT"
shift || true

shoot() { # URL FILE
	local prof
	prof=$(mktemp -d)
	chromium --headless --no-sandbox --disable-gpu \
		--disable-background-networking --disable-component-update \
		--disable-sync --no-first-run --hide-scrollbars \
		--user-data-dir="$prof" --screenshot="$2" \
		--window-size=420,800 "$1" >/dev/null 2>&1 || true
	rm -rf "$prof"
	if [ -s "$2" ]; then echo "screenshot: $2 ($1)"; else
		echo "screenshot: FAILED for $1" >&2; return 1; fi
}

if [ $# -gt 0 ]; then
	i=0
	for u in "$@"; do i=$((i + 1)); shoot "$u" "$OUT/page-$i.png"; done
	exit 0
fi

base=$(mktemp -d)
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$base"
}
trap cleanup EXIT
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
hp=$(port)
ap=$(port)
mkdir -p "$base/outbox" "$base/mail"
cat >"$base/kairan.yaml" <<YAML
database: $base/kairan.db
key_file: $base/token.key
public_url: http://127.0.0.1:$hp
http:
  listen: 127.0.0.1:$hp
admin:
  listen: 127.0.0.1:$ap
outbox: $base/outbox
sender:
  name: 株式会社Example
  address: 東京都千代田区千代田1-1
  contact: info@example.jp
lists:
  - id: sips-report
    name: SIPS セキュリティレポート
    from: "SIPS Security Report <report@news.example.jp>"
    language: ja
    archive: true
delivery:
  transport: maildir
  maildir: $base/mail
YAML
"$BUILD/kairand" --config "$base/kairan.yaml" >"$base/kairand.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
	curl -fsS -o /dev/null "http://127.0.0.1:$hp/" 2>/dev/null && break
	sleep 0.1
done
shoot "http://127.0.0.1:$hp/" "$OUT/signup.png"
shoot "http://127.0.0.1:$hp/confirm?t=AAAA" "$OUT/error.png"
shoot "http://127.0.0.1:$hp/archive" "$OUT/archive.png"
