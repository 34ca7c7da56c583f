#!/usr/bin/env bash
# test_install.sh — `make install DESTDIR=… PREFIX=/usr` puts every file in
# its place with its mode and nothing else; a second run keeps an edited
# kairan.yaml (and installs kairan.yaml.example beside it); the installed
# units point at the installed kairand and pass `systemd-analyze verify`
# (their Documentation= pages found among the installed man pages); the
# default PREFIX goes to /usr/local; the man pages lint clean and render,
# and kairanctl.8 names every command, subcommand and option that
# `kairanctl --help` and `kairanctl COMMAND --help` print (kairand.8 every
# option of `kairand --help`), so the pages cannot fall behind the
# binaries; `make uninstall` removes all of it but an edited kairan.yaml.
# Prints TAP.
#
# It installs the flavour the runner built (KAIRAN_BUILD, build/asan under
# `make test`), so nothing is rebuilt here; `make install` alone builds
# and installs the release flavour.
set -u
cd "$(dirname "$0")/../.." || exit 1
BUILD="${KAIRAN_BUILD:-build/asan}"
FLAVOUR=$(basename "$BUILD")
BUILDROOT=$(dirname "$BUILD")
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

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
D="$tmp/root"

# A make started from `make test` must not inherit its jobserver or flags.
mkt() { # TARGET VAR=…
	local target="$1"; shift
	env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make --no-print-directory \
		FLAVOUR="$FLAVOUR" BUILDROOT="$BUILDROOT" "$target" "$@" 2>&1
}
mk() { mkt install "$@"; }
mku() { mkt uninstall "$@"; }

# ---- first install ----
out=$(mk DESTDIR="$D" PREFIX=/usr)
if [ $? -eq 0 ]; then
	ok "make install DESTDIR=… PREFIX=/usr succeeds"
else
	notok "make install DESTDIR=… PREFIX=/usr succeeds" "$(tail -n 20 <<<"$out")"
	echo "1..$n"
	exit 1
fi

# Every file, its mode, and nothing else.
expected="0755 usr/bin/kairanctl
0755 usr/sbin/kairand
0755 usr/sbin/kairan-smtp
0644 etc/kairan/kairan.yaml
0644 usr/lib/systemd/system/kairan.service
0644 usr/lib/systemd/system/kairan.socket
0644 usr/lib/sysusers.d/kairan.conf
0644 usr/lib/tmpfiles.d/kairan.conf"
for m in man/*.[1-9]; do
	expected="$expected
0644 usr/share/man/man${m##*.}/${m##*/}"
done
nexp=$(wc -l <<<"$expected")
got=$(cd "$D" && find . -type f -printf '%#m %P\n' | sort -k2)
if [ "$got" = "$(sort -k2 <<<"$expected")" ]; then
	ok "installed files and modes are exactly the expected $nexp"
else
	notok "installed files and modes are exactly the expected $nexp" \
		"$(diff <(sort -k2 <<<"$expected") <(echo "$got"))"
fi
others=$(cd "$D" && find . \( -type l -o ! -type f ! -type d \) -print)
check "no links or special files installed" test -z "$others"
dmode=$(stat -c %a "$D/etc/kairan")
check "etc/kairan is a directory, mode 755 (got $dmode)" \
	test "$dmode" = 755
check "kairan.yaml is config/kairan.yaml" \
	cmp -s config/kairan.yaml "$D/etc/kairan/kairan.yaml"
check "sysusers snippet is systemd/kairan.sysusers" \
	cmp -s systemd/kairan.sysusers "$D/usr/lib/sysusers.d/kairan.conf"
check "tmpfiles snippet is systemd/kairan.tmpfiles" \
	cmp -s systemd/kairan.tmpfiles "$D/usr/lib/tmpfiles.d/kairan.conf"
VERSION=$(cat VERSION)
for m in man/*.[1-9]; do
	check "$m installed with @VERSION@ filled in ($VERSION)" \
		cmp -s <(sed "s/@VERSION@/$VERSION/g" "$m") \
		"$D/usr/share/man/man${m##*.}/${m##*/}"
done
check "no installed man page keeps @VERSION@" \
	test -z "$(grep -rl @VERSION@ "$D/usr/share/man")"
out=$(MANWIDTH=80 man -l "$D/usr/share/man/man8/kairand.8" 2>/dev/null | tail -n 1)
check "the installed kairand.8 footer names kairan $VERSION" \
	grep -q "kairan $VERSION" <<<"$out"
out=$("$D/usr/sbin/kairand" --version 2>&1)
check "installed kairand --version prints 'kairand $VERSION' (got '$out')" \
	test "$out" = "kairand $VERSION"
out=$("$D/usr/bin/kairanctl" --version 2>&1)
check "installed kairanctl --version prints 'kairanctl $VERSION' (got '$out')" \
	test "$out" = "kairanctl $VERSION"
check "kairan.socket is systemd/kairan.socket" \
	cmp -s systemd/kairan.socket "$D/usr/lib/systemd/system/kairan.socket"
check "installed kairanctl is the built one" \
	cmp -s "$BUILD/kairanctl" "$D/usr/bin/kairanctl"
check "installed kairand is the built one" \
	cmp -s "$BUILD/kairand" "$D/usr/sbin/kairand"
out=$("$D/usr/sbin/kairand" --help 2>&1)
check "installed kairand --help runs" grep -q 'usage: kairand' <<<"$out"

# The service starts the installed kairand with the installed config.
svc="$D/usr/lib/systemd/system/kairan.service"
execs=$(grep -E '^Exec(Start|StartPre)=' "$svc")
bad=$(grep -v '^Exec[A-Za-z]*=/usr/sbin/kairand --config /etc/kairan/kairan.yaml' <<<"$execs")
if [ "$(wc -l <<<"$execs")" -eq 2 ] && [ -z "$bad" ] &&
	! grep -q /usr/local "$svc"; then
	ok "ExecStart/ExecStartPre run /usr/sbin/kairand on /etc/kairan/kairan.yaml"
else
	notok "ExecStart/ExecStartPre run /usr/sbin/kairand on /etc/kairan/kairan.yaml" "$execs"
fi
check "the unit differs from systemd/kairan.service only in Exec paths" \
	cmp -s <(grep -v '^Exec' systemd/kairan.service) <(grep -v '^Exec' "$svc")

if command -v systemd-analyze >/dev/null; then
	# verify runs on copies whose Exec paths point into DESTDIR; the
	# Documentation= man: pages must be found among the installed ones.
	mkdir -p "$tmp/verify"
	sed "/^Exec/s|/usr/sbin/|$D/usr/sbin/|g" "$svc" >"$tmp/verify/kairan.service"
	cp "$D/usr/lib/systemd/system/kairan.socket" "$tmp/verify/"
	out=$(cd "$tmp/verify" && MANPATH="$D/usr/share/man" \
		systemd-analyze verify kairan.service kairan.socket 2>&1)
	if [ $? -eq 0 ] && [ -z "$out" ]; then
		ok "systemd-analyze verify of the installed units is clean (man pages found)"
	else
		notok "systemd-analyze verify of the installed units is clean (man pages found)" "$out"
	fi
fi

# ---- second install over an edited config ----
echo "# edited by the operator" >>"$D/etc/kairan/kairan.yaml"
cp "$D/etc/kairan/kairan.yaml" "$tmp/edited.yaml"
out=$(mk DESTDIR="$D" PREFIX=/usr)
if [ $? -eq 0 ]; then
	ok "second make install succeeds"
else
	notok "second make install succeeds" "$(tail -n 20 <<<"$out")"
fi
check "second install keeps the edited kairan.yaml" \
	cmp -s "$tmp/edited.yaml" "$D/etc/kairan/kairan.yaml"
check "second install puts the new one beside it as kairan.yaml.example" \
	cmp -s config/kairan.yaml "$D/etc/kairan/kairan.yaml.example"
m=$(stat -c %a "$D/etc/kairan/kairan.yaml.example" 2>/dev/null)
check "kairan.yaml.example is mode 644 (got $m)" test "$m" = 644
check "second install says it kept kairan.yaml" \
	grep -q "kept the existing $D/etc/kairan/kairan.yaml" <<<"$out"

# ---- the default PREFIX ----
L="$tmp/local"
out=$(mk DESTDIR="$L")
if [ $? -eq 0 ] && [ -x "$L/usr/local/sbin/kairand" ] &&
	[ -x "$L/usr/local/bin/kairanctl" ] &&
	[ -f "$L/usr/local/share/man/man8/kairanctl.8" ] &&
	[ -f "$L/usr/local/lib/systemd/system/kairan.service" ] &&
	[ -f "$L/usr/local/lib/sysusers.d/kairan.conf" ] &&
	[ -f "$L/usr/local/lib/tmpfiles.d/kairan.conf" ] &&
	[ -f "$L/etc/kairan/kairan.yaml" ] &&
	grep -q '^ExecStart=/usr/local/sbin/kairand ' \
		"$L/usr/local/lib/systemd/system/kairan.service"; then
	ok "default PREFIX installs under /usr/local (units too), config in /etc"
else
	notok "default PREFIX installs under /usr/local (units too), config in /etc" \
		"$(cd "$L" 2>/dev/null && find . -type f | sort)"
fi

# ---- SYSCONFDIR moves the config, and the units follow ----
E="$tmp/etc"
u="$E/opt/kairan/lib/systemd/system/kairan.service"
out=$(mk DESTDIR="$E" PREFIX=/opt/kairan SYSCONFDIR=/opt/kairan/etc)
if [ $? -eq 0 ] && [ -f "$E/opt/kairan/etc/kairan/kairan.yaml" ] &&
	[ ! -e "$E/etc" ] &&
	grep -q '^ExecStart=/opt/kairan/sbin/kairand --config /opt/kairan/etc/kairan/kairan.yaml$' "$u" &&
	grep -q '^ExecStartPre=/opt/kairan/sbin/kairand --config /opt/kairan/etc/kairan/kairan.yaml --check$' "$u"; then
	ok "PREFIX=/opt/kairan SYSCONFDIR=/opt/kairan/etc: config and Exec lines follow"
else
	notok "PREFIX=/opt/kairan SYSCONFDIR=/opt/kairan/etc: config and Exec lines follow" \
		"$(grep '^Exec' "$u" 2>&1; cd "$E" && find . -type f | sort)"
fi

# ---- the man pages ----
for m in man/*.[0-9]; do
	out=$(groff -man -ww -z "$m" 2>&1)
	if [ $? -eq 0 ] && [ -z "$out" ]; then
		ok "groff -man -ww -z $m: no warnings"
	else
		notok "groff -man -ww -z $m: no warnings" "$out"
	fi
done
if command -v man >/dev/null; then
	out=$(MANWIDTH=80 man -l "$D/usr/share/man/man8/kairanctl.8" 2>&1)
	if [ $? -eq 0 ] && grep -q 'KAIRANCTL(8)' <<<"$out" &&
		grep -q '^EXIT STATUS' <<<"$out"; then
		ok "man -l renders the installed kairanctl.8"
	else
		notok "man -l renders the installed kairanctl.8" "$(head -n 20 <<<"$out")"
	fi
fi

# roff spells a '-' as '\-'.
roff() { sed 's/-/\\-/g' <<<"$1"; }
page=man/kairanctl.8
ctl="$BUILD/kairanctl"
verbs=$("$ctl" --help | sed -n '/^commands:/,/^$/s/^  \([a-z][a-z-]*\) .*/\1/p')
nv=$(wc -w <<<"$verbs")
missing=""
for v in $verbs; do
	r=$(roff "$v")
	grep -qF -e ".SS \"$r " -e ".SS \"$r\"" -e ".SS $r" "$page" ||
		missing="$missing $v"
done
if [ "$nv" -ge 10 ] && [ -z "$missing" ]; then
	ok "kairanctl.8 has a section for each of the $nv commands of kairanctl --help"
else
	notok "kairanctl.8 has a section for each of the $nv commands of kairanctl --help" \
		"missing:$missing"
fi

# Subcommands: the usage lines "kairanctl VERB SUB ..." with SUB in lower
# case (subscribers add, keys rotate, dkim keygen, ...).
subs=""
for v in $verbs; do
	subs="$subs $("$ctl" "$v" --help 2>/dev/null |
		sed -n 's/^\(usage:\)\{0,1\} *kairanctl \([a-z-]*\) \([a-z][a-z-]*\)\( .*\)\{0,1\}$/\2:\3/p')"
done
ns=$(wc -w <<<"$subs")
missing=""
for s in $subs; do
	r=$(roff "${s%%:*} ${s#*:}")
	grep -qF -e ".SS \"$r " -e ".SS \"$r\"" "$page" || missing="$missing ${s/:/ }"
done
if [ "$ns" -ge 11 ] && [ -z "$missing" ]; then
	ok "kairanctl.8 has a section for each of the $ns subcommands"
else
	notok "kairanctl.8 has a section for each of the $ns subcommands" \
		"found: $subs; missing:$missing"
fi

# Options: every --option any help text prints.
opts=$( { "$ctl" --help; for v in $verbs; do "$ctl" "$v" --help; done; } \
	2>/dev/null | grep -o -- '--[a-z][a-z-]*' | sort -u)
no=$(wc -w <<<"$opts")
missing=""
for o in $opts; do
	grep -qF -- "$(roff "$o")" "$page" || missing="$missing $o"
done
if [ "$no" -ge 15 ] && [ -z "$missing" ]; then
	ok "kairanctl.8 names each of the $no options of the help texts"
else
	notok "kairanctl.8 names each of the $no options of the help texts" \
		"missing:$missing"
fi

opts=$("$BUILD/kairand" --help 2>/dev/null | grep -o -- '--\{1,2\}[a-z][a-z-]*' | sort -u)
no=$(wc -w <<<"$opts")
missing=""
for o in $opts; do
	grep -qF -- "$(roff "$o")" man/kairand.8 || missing="$missing $o"
done
if [ "$no" -ge 3 ] && [ -z "$missing" ]; then
	ok "kairand.8 names each of the $no options of kairand --help"
else
	notok "kairand.8 names each of the $no options of kairand --help" \
		"missing:$missing"
fi

# ---- uninstall: what install put there goes; the edited config stays ----
out=$(mku DESTDIR="$D" PREFIX=/usr)
if [ $? -eq 0 ]; then
	ok "make uninstall DESTDIR=… PREFIX=/usr succeeds"
else
	notok "make uninstall DESTDIR=… PREFIX=/usr succeeds" "$(tail -n 20 <<<"$out")"
fi
left=$(cd "$D" && find . -type f -printf '%P\n' | sort)
check "uninstall leaves only the edited kairan.yaml (left: $(tr '\n' ' ' <<<"$left"))" \
	test "$left" = "etc/kairan/kairan.yaml"
check "uninstall says it kept the edited kairan.yaml" \
	grep -q "kept $D/etc/kairan/kairan.yaml (edited" <<<"$out"
check "the edited kairan.yaml is unchanged" \
	cmp -s "$tmp/edited.yaml" "$D/etc/kairan/kairan.yaml"
U="$tmp/fresh"
out=$(mk DESTDIR="$U" PREFIX=/usr) && out=$(mku DESTDIR="$U" PREFIX=/usr)
left=$(cd "$U" && find . ! -type d -printf '%P\n')
check "install then uninstall of an unedited config leaves no file (left: $(tr '\n' ' ' <<<"$left"))" \
	test -z "$left"
check "... and no etc/kairan directory" test ! -e "$U/etc/kairan"
out=$(mku DESTDIR="$U" PREFIX=/usr)
check "uninstall twice is harmless" test $? -eq 0

echo "1..$n"
exit $fail
