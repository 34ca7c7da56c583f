#!/bin/sh
# Times `kairanctl subscribers import` of a generated CSV (default one
# million rows), with and without --confirmed, the re-import of the same
# file, and the export; peak RSS by /usr/bin/time.
# Usage: bench/import_1m.sh [ROWS]   (from the repository root)
set -eu
cd "$(dirname "$0")/.."
rows="${1:-1000000}"
make --no-print-directory FLAVOUR=release build/release/kairanctl >/dev/null
ctl="$PWD/build/release/kairanctl"
dir=$(mktemp -d /tmp/kairan-bench-XXXXXX)
trap 'rm -rf "$dir"' EXIT
cat >"$dir/kairan.yaml" <<YAML
database: $dir/kairan.db
key_file: $dir/token.key
public_url: http://127.0.0.1:8080
lists:
  - id: news
    name: News
    from: "News <news@example.jp>"
delivery:
  transport: maildir
  maildir: $dir/mail
YAML
/usr/bin/python3 - "$dir/subs.csv" "$rows" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    f.write("email,name,list,status,consent_at,consent_source,consent_ip\n")
    for i in range(int(sys.argv[2])):
        f.write("user%07d@d%d.example,User %d,news,,2026-01-01T00:00:00Z,"
                "form,192.0.2.%d\n" % (i, i % 500, i, i % 250))
PY
echo "machine: $(nproc) cores, $(free -h | awk '/^Mem:/ {print $2}') RAM; rows: $rows; CSV $(du -h "$dir/subs.csv" | cut -f1)"
run() {
	/usr/bin/time -f "  %e s wall (%U s user, %S s sys), peak RSS %M KB" "$ctl" \
		--config "$dir/kairan.yaml" "$@"
}
echo "import --confirmed (active):"
run subscribers import "$dir/subs.csv" --confirmed
echo "the same file again:"
run subscribers import "$dir/subs.csv" --confirmed
echo "db: $(du -h "$dir/kairan.db" | cut -f1)"
rm -f "$dir"/kairan.db*
echo "import (pending + one confirmation mail queued each):"
run subscribers import "$dir/subs.csv"
echo "export:"
run subscribers export >"$dir/export.csv"
