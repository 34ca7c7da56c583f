#!/usr/bin/env bash
# test_deb.sh — `make deb` and the package's life, in a throwaway root.
#
# The package: its files and modes (dpkg-deb -c), its one conffile
# /etc/kairan/kairan.yaml, its units in /lib/systemd/system (a folder
# systemd reads), a Depends that names the package of every shared library
# kairand and kairanctl link (dh_shlibdeps), maintainer scripts that parse,
# lintian without errors (the warnings it keeps are printed), and
# kairand --version equal to the package's version.
#
# The cycle: install → configure → upgrade (a second build, VERSION
# +test1) → remove → purge, with dpkg run chrooted into an overlay of this
# machine's / (lower: / read-only; upper: a temporary folder) with /dev
# and /proc bound in: dpkg, its database, systemd-sysusers and
# systemd-tmpfiles act on the overlay, never on this machine (checked at
# the end). Inside, /run/systemd/system exists and /usr/local/sbin/systemctl
# logs start/stop/restart/daemon-reload (and hands is-enabled and preset
# to the real systemctl, offline), so the scripts take the path of a
# machine running systemd and what they would start is recorded; a
# policy-rc.d that allows actions replaces the machine's. Needs root and
# overlayfs (a skip otherwise).
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
skip_all() { echo "ok 1 # SKIP $1"; echo "1..1"; exit 0; }

for t in dpkg-buildpackage dh dh_installsysusers lintian fakeroot; do
	command -v "$t" >/dev/null || skip_all "$t is missing (make deps)"
done

VERSION=$(cat VERSION)
V2="$VERSION+test1"
ARCH=$(dpkg --print-architecture)
tmp=$(mktemp -d /var/tmp/kairan-test-deb.XXXXXX)
R="$tmp/root"
cleanup() {
	for m in "$R/proc" "$R/dev" "$R"; do
		mountpoint -q "$m" 2>/dev/null && umount "$m"
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

mkt() { # TARGET VAR=…: a make that inherits nothing from `make test`
	env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make --no-print-directory "$@" 2>&1
}

# ---- build ----
out=$(mkt deb BUILDROOT="$tmp/b" DISTDIR="$tmp/v1")
rc=$?
deb="$tmp/v1/kairan_${VERSION}_$ARCH.deb"
if [ $rc -eq 0 ] && [ -f "$deb" ]; then
	ok "make deb builds kairan_${VERSION}_$ARCH.deb (dpkg-buildpackage -us -uc -b)"
else
	notok "make deb builds kairan_${VERSION}_$ARCH.deb" "$(tail -n 30 <<<"$out")"
	echo "1..$n"
	exit 1
fi
check "built by dh (its sequence ran dh_installsystemd, dh_installsysusers, dh_shlibdeps)" \
	grep -q 'dh_installsystemd' <<<"$out"
pv=$(dpkg-deb -f "$deb" Version)
check "the package's version is VERSION (got $pv)" test "$pv" = "$VERSION"

# ---- contents ----
want="-rw-r--r-- root/root ./etc/kairan/kairan.yaml
-rw-r--r-- root/root ./lib/systemd/system/kairan.service
-rw-r--r-- root/root ./lib/systemd/system/kairan.socket
-rwxr-xr-x root/root ./usr/bin/kairanctl
-rw-r--r-- root/root ./usr/lib/sysusers.d/kairan.conf
-rw-r--r-- root/root ./usr/lib/tmpfiles.d/kairan.conf
-rwxr-xr-x root/root ./usr/sbin/kairan-smtp
-rwxr-xr-x root/root ./usr/sbin/kairand
-rw-r--r-- root/root ./usr/share/doc/kairan/changelog.gz
-rw-r--r-- root/root ./usr/share/doc/kairan/copyright
-rw-r--r-- root/root ./usr/share/man/man5/kairan.yaml.5.gz
-rw-r--r-- root/root ./usr/share/man/man8/kairan-smtp.8.gz
-rw-r--r-- root/root ./usr/share/man/man8/kairanctl.8.gz
-rw-r--r-- root/root ./usr/share/man/man8/kairand.8.gz"
got=$(dpkg-deb -c "$deb" | awk '$1 !~ /^d/ {print $1, $2, $6}' | sort -k3)
want=$(LC_ALL=C sort -k3 <<<"$want")
got=$(LC_ALL=C sort -k3 <<<"$got")
if [ "$got" = "$want" ]; then
	ok "dpkg-deb -c: exactly the $(wc -l <<<"$want") expected files, modes and owners"
else
	notok "dpkg-deb -c: exactly the expected files, modes and owners" \
		"$(diff <(echo "$want") <(echo "$got"))"
fi
conffiles=$(dpkg-deb --ctrl-tarfile "$deb" | tar -xOf - ./conffiles 2>/dev/null)
check "the one conffile is /etc/kairan/kairan.yaml (got: $(tr '\n' ' ' <<<"$conffiles"))" \
	test "$conffiles" = "/etc/kairan/kairan.yaml"
paths=$(systemd-analyze --system unit-paths 2>/dev/null)
check "the units' folder /lib/systemd/system is one systemd reads" \
	grep -qx /lib/systemd/system <<<"$paths"
X="$tmp/x"
dpkg-deb -x "$deb" "$X"
check "kairan.yaml is config/kairan.yaml" \
	cmp -s config/kairan.yaml "$X/etc/kairan/kairan.yaml"
check "the service runs /usr/sbin/kairand on /etc/kairan/kairan.yaml" \
	grep -qx 'ExecStart=/usr/sbin/kairand --config /etc/kairan/kairan.yaml' \
	"$X/lib/systemd/system/kairan.service"
check "sysusers and tmpfiles snippets are systemd/'s" \
	cmp -s systemd/kairan.sysusers "$X/usr/lib/sysusers.d/kairan.conf"
check "... (tmpfiles)" cmp -s systemd/kairan.tmpfiles "$X/usr/lib/tmpfiles.d/kairan.conf"
foot=$(zcat "$X/usr/share/man/man8/kairand.8.gz" | head -n 1)
check "kairand.8's footer is kairan $VERSION" grep -qF "\"kairan $VERSION\"" <<<"$foot"
out=$("$X/usr/sbin/kairand" --version 2>&1)
check "kairand --version of the package is 'kairand $pv' (got '$out')" \
	test "$out" = "kairand $pv"
out=$("$X/usr/bin/kairanctl" --version 2>&1)
check "kairanctl --version of the package is 'kairanctl $pv' (got '$out')" \
	test "$out" = "kairanctl $pv"

# Depends: the package of every library the binaries link (dh_shlibdeps).
depends=$(dpkg-deb -f "$deb" Depends)
missing=""
for lib in $(objdump -p "$X/usr/sbin/kairand" "$X/usr/sbin/kairan-smtp" \
	"$X/usr/bin/kairanctl" |
	awk '$1 == "NEEDED" {print $2}' | sort -u); do
	p=$(dpkg -S "*/$lib" 2>/dev/null | head -n 1 | cut -d: -f1)
	[ -n "$p" ] || { missing="$missing $lib(no package)"; continue; }
	grep -qE "(^|, )$p( |,|$)" <<<"$depends" || missing="$missing $lib($p)"
done
check "Depends names the package of every linked library${missing:+ (missing:$missing)}" \
	test -z "$missing"
check "Depends names systemd (systemd-sysusers runs in the postinst)" \
	grep -qE '(^|, )systemd( |,|$)' <<<"$depends"

mkdir "$tmp/ctl"
dpkg-deb -e "$deb" "$tmp/ctl"
for s in preinst postinst prerm postrm; do
	if [ -f "$tmp/ctl/$s" ]; then
		check "$s parses (sh -n)" sh -n "$tmp/ctl/$s"
	fi
done
check "postinst creates the user (systemd-sysusers) and the folders (systemd-tmpfiles)" \
	grep -q 'systemd-sysusers.*kairan.conf' "$tmp/ctl/postinst"
check "... and (re)starts only through deb-systemd-invoke" \
	grep -q 'deb-systemd-invoke "$action"' "$tmp/ctl/postinst"

lint=$(lintian --fail-on error "$deb" 2>&1)
rc=$?
lint=$(grep -v 'running with root privileges' <<<"$lint")
if [ $rc -eq 0 ] && ! grep -q '^E: ' <<<"$lint"; then
	ok "lintian: no errors${lint:+ (kept: $(grep -c . <<<"$lint") tags, below)}"
	[ -n "$lint" ] && sed 's/^/#   /' <<<"$lint"
else
	notok "lintian: no errors" "$lint"
fi
w=$(grep -c '^W: ' <<<"$lint")
check "lintian: no warnings (got $w)" test "$w" -eq 0

# ---- the second build: VERSION+test1 ----
S2="$tmp/src2"
mkdir "$S2"
tar -xzf "$tmp/v1/kairan-$VERSION.tar.gz" -C "$S2" --strip-components=1
echo "$V2" >"$S2/VERSION"
{
	printf 'kairan (%s) unstable; urgency=medium\n\n  * A test upgrade.\n\n' "$V2"
	printf ' -- kairan maintainers <maintainers@kairan.example>  %s\n\n' \
		"$(date -u -R)"
	cat "$S2/debian/changelog"
} >"$S2/debian/changelog.new"
mv "$S2/debian/changelog.new" "$S2/debian/changelog"
out=$(cd "$S2" && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
	DEB_BUILD_OPTIONS="parallel=$(nproc)" dpkg-buildpackage -us -uc -b 2>&1)
rc=$?
deb2="$tmp/kairan_${V2}_$ARCH.deb"
if [ $rc -eq 0 ] && [ -f "$deb2" ]; then
	ok "a second build with version $V2"
else
	notok "a second build with version $V2" "$(tail -n 30 <<<"$out")"
fi
check "dpkg orders $V2 after $VERSION" dpkg --compare-versions "$V2" gt "$VERSION"

# ---- the throwaway root ----
if [ "$(id -u)" != 0 ]; then
	echo "ok $((n + 1)) # SKIP the install cycle needs root (chroot, mount)"
	n=$((n + 1))
	echo "1..$n"
	exit $fail
fi
mkdir -p "$tmp/upper" "$tmp/work" "$R"
if ! mount -t overlay overlay \
	-o "lowerdir=/,upperdir=$tmp/upper,workdir=$tmp/work" "$R" 2>"$tmp/mount.err"; then
	echo "ok $((n + 1)) # SKIP no overlayfs here: $(cat "$tmp/mount.err")"
	n=$((n + 1))
	echo "1..$n"
	exit $fail
fi
mount --bind /dev "$R/dev" && mount -t proc proc "$R/proc"
# (Other work may install packages meanwhile: only kairan's traces count.)
host() { grep '^kairan:' /etc/passwd /etc/group
	dpkg-query -W -f='${db:Status-Abbrev}${Version}' kairan 2>&1
	ls -d /usr/sbin/kairand /etc/kairan /var/lib/kairan 2>&1; }
host_before=$(host)
mkdir -p "$R/run/systemd/system" "$R/var/tmp/kairan-debs"
cp "$deb" "$deb2" "$R/var/tmp/kairan-debs/"
LOG=/var/log/kairan-test-systemctl.log
cat >"$R/usr/local/sbin/systemctl" <<EOF
#!/bin/sh
# test_deb.sh's systemctl: logs, and runs nothing.
echo "systemctl \$*" >>$LOG
case " \$* " in
*" is-active "*) exit 3 ;;
*" is-enabled "*) exec /usr/bin/systemctl --root=/ "\$@" ;;
*" start "*|*" restart "*|*" stop "*|*" try-restart "*|*" daemon-reload "*) exit 0 ;;
esac
exec /usr/bin/systemctl "\$@"
EOF
chmod 0755 "$R/usr/local/sbin/systemctl"
rm -f "$R/usr/sbin/policy-rc.d"
printf '#!/bin/sh\nexit 104\n' >"$R/usr/sbin/policy-rc.d"
chmod 0755 "$R/usr/sbin/policy-rc.d"
: >"$R$LOG"

inroot() { # CMD...: in the throwaway root, with a clean environment
	chroot "$R" env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@" 2>&1
}
status() { inroot dpkg-query -W -f='${db:Status-Abbrev}${Version}' kairan; }
log() { cat "$R$LOG"; : >"$R$LOG"; }
wants() { ls "$R/etc/systemd/system/multi-user.target.wants/kairan.service" \
	"$R/etc/systemd/system/sockets.target.wants/kairan.socket" 2>/dev/null; }

# ---- install ----
out=$(inroot dpkg -i "/var/tmp/kairan-debs/${deb##*/}")
rc=$?
if [ $rc -eq 0 ] && [ "$(status)" = "ii $VERSION" ]; then
	ok "install: dpkg -i succeeds (ii $VERSION)"
else
	notok "install: dpkg -i succeeds" "$(status) $out"
fi
check "install: says it did not start kairan and why" \
	grep -q "kairan: not started: /etc/kairan/kairan.yaml still holds the example's" <<<"$out"
check "install: names each placeholder line to edit (public_url at line $(grep -n '^public_url:' config/kairan.yaml | cut -d: -f1))" \
	grep -qE "^  $(grep -n '^public_url:' config/kairan.yaml | cut -d: -f1):public_url: https://news.example.jp" <<<"$out"
check "install: tells how to start it once edited" \
	grep -q 'systemctl enable --now kairan.socket kairan.service' <<<"$out"
l=$(log)
check "install: nothing started or enabled (systemctl saw: $(tr '\n' ';' <<<"$l"))" \
	test -z "$(grep -E ' (start|restart) | preset ' <<<"$l")"
check "install: no unit enabled" test -z "$(wants)"
pw=$(inroot getent passwd kairan)
check "install: user kairan created (${pw:-none}) with home /var/lib/kairan" \
	grep -q '^kairan:x:[0-9]*:[0-9]*:.*:/var/lib/kairan:/usr/sbin/nologin$' <<<"$pw"
st=$(inroot stat -c '%a %U:%G' /var/lib/kairan /var/spool/kairan/outbox | tr '\n' ' ')
check "install: /var/lib/kairan 750 and the outbox 2770, kairan's (got $st)" \
	test "$st" = "750 kairan:kairan 2770 kairan:kairan "
cf=$(inroot dpkg-query -W -f='${Conffiles}' kairan)
check "install: dpkg records /etc/kairan/kairan.yaml as a conffile" \
	grep -q '^ /etc/kairan/kairan.yaml [0-9a-f]\{32\}$' <<<"$cf"
out=$(inroot kairand --version)
check "install: kairand --version is the installed package's ('$out')" \
	test "$out" = "kairand $(status | cut -c4-)"

# ---- configure: the operator edits the conffile, adds a subscriber ----
sed -i 's/example\.jp/kairan.test/g' "$R/etc/kairan/kairan.yaml"
echo "# edited by the operator" >>"$R/etc/kairan/kairan.yaml"
cp "$R/etc/kairan/kairan.yaml" "$tmp/edited.yaml"
out=$(inroot kairanctl subscribers add hanako@kairan.test --confirmed)
check "configure: kairanctl adds a subscriber (state in /var/lib/kairan)" \
	test -s "$R/var/lib/kairan/kairan.db"

# ---- upgrade ----
out=$(inroot dpkg -i "/var/tmp/kairan-debs/${deb2##*/}")
rc=$?
if [ $rc -eq 0 ] && [ "$(status)" = "ii $V2" ]; then
	ok "upgrade: dpkg -i of $V2 succeeds"
else
	notok "upgrade: dpkg -i of $V2 succeeds" "$(status) $out"
fi
check "upgrade: the edited kairan.yaml is kept as it was" \
	cmp -s "$tmp/edited.yaml" "$R/etc/kairan/kairan.yaml"
check "upgrade: no placeholder message any more" \
	test -z "$(grep 'not started' <<<"$out")"
check "upgrade: kairan.service and kairan.socket are enabled now" \
	test "$(wants | wc -l)" -eq 2
l=$(log)
check "upgrade: both units restarted through deb-systemd-invoke" \
	grep -qx 'systemctl --quiet --system restart kairan.socket kairan.service' <<<"$l"
out=$(inroot kairand --version)
check "upgrade: kairand --version is $V2 ('$out')" test "$out" = "kairand $V2"
out=$(inroot kairanctl subscribers list)
check "upgrade: the subscriber is still there" grep -q hanako@kairan.test <<<"$out"

# The operator disables kairan; a reinstall of the same version keeps it so.
inroot systemctl --root=/ disable kairan.service kairan.socket >/dev/null
: >"$R$LOG"
out=$(inroot dpkg -i "/var/tmp/kairan-debs/${deb2##*/}")
check "reinstall: a unit the operator disabled stays disabled" \
	test -z "$(wants)"
l=$(log)
check "reinstall: ... and is not started" \
	test -z "$(grep -E ' (start|restart) .*kairan' <<<"$l")"
inroot systemctl --root=/ enable kairan.service kairan.socket >/dev/null
: >"$R$LOG"

# ---- remove ----
out=$(inroot dpkg -r kairan)
rc=$?
check "remove: dpkg -r succeeds (rc $rc; $(status))" test $rc -eq 0 -a "$(status)" = "rc $V2"
l=$(log)
check "remove: both units stopped first" \
	grep -q 'stop kairan.service kairan.socket$' <<<"$l"
check "remove: the binaries and units are gone" \
	test ! -e "$R/usr/sbin/kairand" -a ! -e "$R/usr/bin/kairanctl" \
	-a ! -e "$R/lib/systemd/system/kairan.service"
check "remove: the conffile and the state stay" \
	test -f "$R/etc/kairan/kairan.yaml" -a -s "$R/var/lib/kairan/kairan.db" \
	-a -d "$R/var/spool/kairan/outbox"

# ---- purge ----
out=$(inroot dpkg -P kairan)
rc=$?
left=$(cd "$R" && ls -d etc/kairan var/lib/kairan var/spool/kairan \
	etc/systemd/system/*.wants/kairan.* 2>/dev/null | tr '\n' ' ')
check "purge: dpkg -P succeeds (rc $rc)" test $rc -eq 0
check "purge: config, state, outbox and unit links gone (left: ${left:-nothing})" \
	test -z "$left"
check "purge: dpkg knows no kairan any more" test -z "$(status 2>/dev/null | grep -v 'no packages')"

# ---- this machine is unchanged ----
host_after=$(host)
check "this machine is untouched: its kairan user, package and files as before" \
	test "$host_before" = "$host_after"

echo "1..$n"
exit $fail
