#!/usr/bin/env bash
# test_dist.sh — `make dist`: the version is one (VERSION, CHANGELOG.md's
# top release, debian/changelog's top entry, and make dist refuses when
# they differ); two runs give the same bytes (sha256); the tarball holds
# exactly git's tracked files under kairan-VERSION/, owned 0:0 with one
# mtime and no build outputs; unpacked in a clean folder (no .git), its
# own `make dist` gives the same bytes again, and its own `make unit`
# builds (ASan) and passes every unit test. The whole suite of the
# unpacked tarball is not run here (it is this suite: ~5 min more).
# Prints TAP.
set -u
cd "$(dirname "$0")/../.." || exit 1
n=0
fail=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
notok() {
	n=$((n + 1)); fail=1; echo "not ok $n - $1"
	[ -n "${2:-}" ] && sed 's/^/#   /' <<<"$2"
	return 0
}
check() { # check NAME CMD...: ok when CMD succeeds
	local name="$1"; shift
	if "$@"; then ok "$name"; else notok "$name"; fi
}

for t in tar gzip dpkg-parsechangelog sha256sum; do
	if ! command -v "$t" >/dev/null; then
		echo "ok 1 # SKIP $t is missing (make deps)"
		echo "1..1"
		exit 0
	fi
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkt() { # DIR TARGET VAR=…: a make that inherits nothing from `make test`
	local dir="$1"; shift
	env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make --no-print-directory \
		-C "$dir" "$@" 2>&1
}

VERSION=$(cat VERSION)
DIST="kairan-$VERSION"

# ---- one version ----
check "VERSION is MAJOR.MINOR.PATCH ($VERSION)" \
	grep -qE '^[0-9]+\.[0-9]+\.[0-9]+$' VERSION
deb=$(dpkg-parsechangelog -l debian/changelog -SVersion)
check "debian/changelog's top entry is VERSION (got $deb)" test "$deb" = "$VERSION"
top=$(sed -n 's/^## \[\([0-9][^]]*\)\] - [0-9-]*$/\1/p' CHANGELOG.md | head -n 1)
check "CHANGELOG.md's newest release is VERSION (got $top)" test "$top" = "$VERSION"
check "CHANGELOG.md keeps an [Unreleased] section above it" \
	grep -q '^## \[Unreleased\]$' CHANGELOG.md

# The tree's files: git's tracked ones, or (in an unpacked tarball, with
# no .git) every file but build outputs, as make dist lists them.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	files=$(git ls-files | LC_ALL=C sort)
	whose="git's tracked files"
else
	files=$(mkt . -s dist-files)
	whose="the tree's files (no .git: make dist-files)"
fi

# make dist refuses a debian/changelog that disagrees (in a copy).
mkdir "$tmp/skew"
tr '\n' '\0' <<<"$files" | tar --null -T - -cf - | tar -xf - -C "$tmp/skew"
sed -i "1s/($VERSION)/($VERSION.1)/" "$tmp/skew/debian/changelog"
out=$(mkt "$tmp/skew" dist DISTDIR="$tmp/skew-out")
if [ $? -ne 0 ] && grep -q "debian/changelog's top entry is not VERSION" <<<"$out" &&
	[ ! -e "$tmp/skew-out/$DIST.tar.gz" ]; then
	ok "make dist refuses when debian/changelog is not VERSION"
else
	notok "make dist refuses when debian/changelog is not VERSION" "$out"
fi

# ---- two runs, the same bytes ----
out=$(mkt . dist DISTDIR="$tmp/a")
if [ $? -eq 0 ] && [ -f "$tmp/a/$DIST.tar.gz" ]; then
	ok "make dist DISTDIR=… makes $DIST.tar.gz"
else
	notok "make dist DISTDIR=… makes $DIST.tar.gz" "$out"
	echo "1..$n"
	exit 1
fi
sleep 1 # a second later: an mtime taken from the clock would differ
touch README.md
out=$(mkt . dist DISTDIR="$tmp/b")
a=$(sha256sum <"$tmp/a/$DIST.tar.gz" | cut -c1-64)
b=$(sha256sum <"$tmp/b/$DIST.tar.gz" 2>/dev/null | cut -c1-64)
check "a second make dist gives the same bytes (sha256 $a)" test "$a" = "$b"
check "gzip header has no name and no time (gzip -n)" \
	test "$(head -c 8 "$tmp/a/$DIST.tar.gz" | od -An -tx1 | tr -d ' \n')" = 1f8b080000000000

# ---- what is in it ----
got=$(tar -tzf "$tmp/a/$DIST.tar.gz" | LC_ALL=C sort)
want=$(sed "s|^|$DIST/|" <<<"$files" | LC_ALL=C sort)
if [ "$got" = "$want" ]; then
	ok "the tarball holds exactly $whose ($(wc -l <<<"$want")) under $DIST/"
else
	notok "the tarball holds exactly $whose under $DIST/" \
		"$(diff <(echo "$want") <(echo "$got") | head -n 20)"
fi
order=$(tar -tzf "$tmp/a/$DIST.tar.gz")
check "its members are in byte order of their names" \
	test "$order" = "$(LC_ALL=C sort <<<"$order")"
bad=$(grep -E '(^|/)(build|var)/|\.(o|a|d|deb|pyc)$|/kairan-[0-9.]+\.tar\.gz$' <<<"$got")
check "no build outputs in it${bad:+ (found: $bad)}" test -z "$bad"
meta=$(tar -tvzf "$tmp/a/$DIST.tar.gz" --numeric-owner | awk '{print $2, $4, $5}' | sort -u)
sde=$(dpkg-parsechangelog -l debian/changelog -STimestamp)
stamp=$(date -u -d "@$sde" '+%Y-%m-%d %H:%M')
check "every member is 0/0 with debian/changelog's time ($stamp)" \
	test "$meta" = "0/0 $stamp"
check "executables keep their mode (tests/run_tests.sh 0755)" \
	grep -q "^-rwxr-xr-x .*$DIST/tests/run_tests.sh$" \
	<<<"$(tar -tvzf "$tmp/a/$DIST.tar.gz")"

# ---- unpacked in a clean folder ----
mkdir "$tmp/clean"
tar -xzf "$tmp/a/$DIST.tar.gz" -C "$tmp/clean"
U="$tmp/clean/$DIST"
check "it unpacks into $DIST/ with no .git" test -f "$U/Makefile" -a ! -e "$U/.git"
# Without git, make dist lists the files itself: the same bytes again.
out=$(cd "$U" && GIT_CEILING_DIRECTORIES="$tmp/clean" \
	env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make --no-print-directory dist \
	DISTDIR="$tmp/c" 2>&1)
c=$(sha256sum <"$tmp/c/$DIST.tar.gz" 2>/dev/null | cut -c1-64)
if [ "$c" = "$a" ]; then
	ok "make dist in the unpacked tarball (no git) gives the same bytes"
else
	notok "make dist in the unpacked tarball (no git) gives the same bytes" \
		"$out$(diff <(tar -tzf "$tmp/a/$DIST.tar.gz") <(tar -tzf "$tmp/c/$DIST.tar.gz" 2>&1) | head)"
fi
rm -f "$U/$DIST.tar.gz"

# Its own unit tests, in its own build folder.
out=$(cd "$U" && GIT_CEILING_DIRECTORIES="$tmp/clean" \
	env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL timeout 900 \
	make --no-print-directory unit 2>&1)
rc=$?
last=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' <<<"$out" | tail -n 1)
if [ $rc -eq 0 ] && [[ "$last" =~ ^([0-9]+)\ passed,\ 0\ failed$ ]] &&
	[ "${BASH_REMATCH[1]}" -ge 100 ]; then
	ok "the unpacked tarball's make unit builds and passes ($last)"
else
	notok "the unpacked tarball's make unit builds and passes (rc $rc: $last)" \
		"$(grep -E 'not ok|stderr\]|error:|failing' <<<"$out" | head -n 60; tail -n 3 <<<"$out")"
fi
check "... its build stayed inside the unpacked folder" \
	test -x "$U/build/asan/kairand"
out=$("$U/build/asan/kairand" --version 2>&1)
check "... and its kairand --version is 'kairand $VERSION' (got '$out')" \
	test "$out" = "kairand $VERSION"

echo "1..$n"
exit $fail
