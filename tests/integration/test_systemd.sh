#!/usr/bin/env bash
# test_systemd.sh — the units pass `systemd-analyze verify` and the
# service's hardening scores an exposure of 1.5 or lower with
# `systemd-analyze security --offline=true`. Prints TAP.
#
# verify runs on a copy whose ExecStart/ExecStartPre point at the kairand
# just built (the installed path does not exist on a build machine), with
# --man=no because the man pages are not installed here either.
set -u
cd "$(dirname "$0")/../.." || exit 1
BUILD="${KAIRAN_BUILD:-build/asan}"
n=0
fail=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
notok() {
	n=$((n + 1)); fail=1; echo "not ok $n - $1"
	if [ -n "${2:-}" ]; then
		while IFS= read -r line; do echo "#   $line"; done <<<"$2"
	fi
}

if ! command -v systemd-analyze >/dev/null; then
	echo "1..0 # SKIP systemd-analyze not installed"
	exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
kairand=$(readlink -f "$BUILD/kairand" 2>/dev/null || true)
[ -x "$kairand" ] || kairand=/bin/true
sed "s|/usr/local/sbin/kairand|$kairand|g" systemd/kairan.service \
	>"$tmp/kairan.service"
cp systemd/kairan.socket "$tmp/kairan.socket"

for u in kairan.service kairan.socket; do
	if out=$(cd "$tmp" && systemd-analyze verify --man=no "$u" 2>&1) &&
		[ -z "$out" ]; then
		ok "systemd-analyze verify $u is clean"
	else
		notok "systemd-analyze verify $u is clean" "$out"
	fi
done

out=$(systemd-analyze security --offline=true --no-pager \
	systemd/kairan.service 2>&1)
level=$(sed -n 's/.*Overall exposure level for kairan.service: \([0-9.]*\).*/\1/p' <<<"$out")
if [ -n "$level" ] && awk -v l="$level" 'BEGIN { exit !(l <= 1.5) }'; then
	ok "exposure $level <= 1.5"
else
	notok "exposure '$level' <= 1.5" "$(tail -n 40 <<<"$out")"
fi
if out=$(systemd-analyze security --offline=true --threshold=15 \
	--no-pager systemd/kairan.service 2>&1); then
	ok "security --threshold=15 passes"
else
	notok "security --threshold=15 passes" "$(tail -n 5 <<<"$out")"
fi

# /etc/kairan keeps the mode `make install` gives it (0755): another mode
# makes systemd warn at every start.
cdm=$(sed -n 's/^ConfigurationDirectoryMode=//p' systemd/kairan.service)
inst=$(sed -n '/install -d -m/{s/.*install -d -m \([0-7]*\).*/\1/p;q}' Makefile)
if [ "$cdm" = 0755 ] && [ "$inst" = 0755 ]; then
	ok "ConfigurationDirectoryMode=$cdm matches make install's $inst"
else
	notok "ConfigurationDirectoryMode '$cdm' matches make install's '$inst'"
fi

# The snippets work: sysusers (dry run) and tmpfiles (into a scratch root
# whose passwd knows the user).
mkdir -p "$tmp/root/etc"
if command -v systemd-sysusers >/dev/null; then
	if out=$(systemd-sysusers --dry-run --root="$tmp/root" - \
		<systemd/kairan.sysusers 2>&1) &&
		grep -q "Creating user 'kairan'" <<<"$out"; then
		ok "sysusers snippet creates user kairan"
	else
		notok "sysusers snippet creates user kairan" "$out"
	fi
fi
if command -v systemd-tmpfiles >/dev/null; then
	echo 'kairan:x:64999:64999::/var/lib/kairan:/usr/sbin/nologin' \
		>"$tmp/root/etc/passwd"
	echo 'kairan:x:64999:' >"$tmp/root/etc/group"
	out=$(systemd-tmpfiles --root="$tmp/root" --create - \
		<systemd/kairan.tmpfiles 2>&1)
	mode=$(stat -c %a "$tmp/root/var/spool/kairan/outbox" 2>/dev/null)
	if [ "$mode" = 2770 ] &&
		[ -d "$tmp/root/var/spool/kairan/outbox/failed" ]; then
		ok "tmpfiles snippet creates the outbox (mode $mode)"
	else
		notok "tmpfiles snippet creates the outbox" "$out"
	fi
fi

echo "1..$n"
exit $fail
