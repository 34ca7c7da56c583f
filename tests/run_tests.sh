#!/usr/bin/env bash
# Runs the unit tests (cmocka, TAP output) and the integration tests
# (tests/integration/test_*.py|sh, TAP output) and ends with one line:
# "N passed, N failed". Exit status 1 when anything failed.
# Usage: tests/run_tests.sh [unit|integration|NAME...]
set -u
cd "$(dirname "$0")/.."
export KAIRAN_BUILD="${KAIRAN_BUILD:-build/asan}"
# Run by hand (not from make, which has just built): bring the sanitized
# build and the unit binaries up to date first, so a stale test binary is
# never what passes.
if [ -z "${MAKELEVEL:-}" ] && [ "$KAIRAN_BUILD" = build/asan ]; then
	make --no-print-directory FLAVOUR=asan build-asan unit-bins-asan \
		>/dev/null || { echo "run_tests.sh: the build failed" >&2; exit 1; }
fi
export KAIRAN_ROOT="$PWD"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:log_path=/dev/stderr}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export CMOCKA_MESSAGE_OUTPUT=TAP
PY=/usr/bin/python3

passed=0
failed=0
failures=()
recap=""
what="${1:-all}"

# count OUTPUT NAME STATUS: TAP "ok"/"not ok" lines; a crash with no
# failing line still counts as one failure.
count() {
	local out="$1" name="$2" status="$3" p f
	p=$(grep -cE '^ok ' <<<"$out")
	f=$(grep -cE '^not ok ' <<<"$out")
	if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
	if [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then f=1; fi
	passed=$((passed + p))
	failed=$((failed + f))
	if [ "$f" -ne 0 ]; then
		failures+=("$name")
		# CI shows only the tail of the output: repeat what failed
		# (each "not ok" line and the diagnostics after it) there.
		recap+=$(awk -v n="$name" '/^not ok /{k=8} k>0{print "[" n "] " $0; k--}' <<<"$out" | head -n 40)
		recap+=$'\n'
		if [ "$status" -ne 0 ]; then recap+="[$name] exit status $status"$'\n'; fi
	fi
}

run_one() {
	local name="$1"; shift
	local out status
	out=$("$@" 2>"/tmp/kairan-test-$$.err")
	status=$?
	printf '%s\n' "$out" | sed "s|^|[$name] |"
	if [ "$status" -ne 0 ] || grep -qE '^not ok ' <<<"$out"; then
		sed "s|^|[$name stderr] |" "/tmp/kairan-test-$$.err" | tail -n 60
	fi
	rm -f "/tmp/kairan-test-$$.err"
	count "$out" "$name" "$status"
}

selected() {
	[ "$what" = all ] && return 0
	[ "$what" = "$1" ] && return 0
	for a in "$@"; do :; done
	case " ${SELECT:-} " in *" $2 "*) return 0 ;; esac
	return 1
}
if [ "$what" != all ] && [ "$what" != unit ] && [ "$what" != integration ]; then
	SELECT="$*"
fi

# A real PostgreSQL for the store's conformance suite (test_store runs it
# against both backends): started here as an unprivileged user on a free
# port, stopped by its pid at the end. make deps installs PostgreSQL.
pgdir=""
stop_pg() { [ -n "$pgdir" ] && "$PY" tests/integration/pg.py stop "$pgdir"; pgdir=""; }
if selected unit test_store; then
	if [ -x /usr/lib/postgresql/15/bin/postgres ]; then
		pgdir=$(mktemp -d /tmp/kairan-pg-XXXXXX)
		trap stop_pg EXIT
		if pginfo=$("$PY" tests/integration/pg.py start "$pgdir" 2>&1); then
			read -r pguri pgpw _ <<<"$pginfo"
			export KAIRAN_TEST_PG="${pguri%/postgres}"
			export KAIRAN_TEST_PG_PASSWORD_FILE="$pgpw"
		else
			echo "run_tests.sh: PostgreSQL did not start: $pginfo" >&2
			echo "not ok - PostgreSQL for test_store"; failed=$((failed + 1))
			failures+=("postgresql")
		fi
	else
		echo "not ok - PostgreSQL 15 is missing (make deps installs it)"
		failed=$((failed + 1)); failures+=("postgresql")
	fi
fi

for t in "$KAIRAN_BUILD"/tests/test_*; do
	[ -x "$t" ] || continue
	n=$(basename "$t")
	selected unit "$n" || continue
	run_one "$n" "$t"
done
for t in tests/integration/test_*.py tests/integration/test_*.sh; do
	[ -e "$t" ] || continue
	n=$(basename "$t")
	n=${n%.*}
	selected integration "$n" || continue
	case "$t" in
	*.py) run_one "$n" timeout 900 "$PY" "$t" ;;
	*.sh) run_one "$n" timeout 900 bash "$t" ;;
	esac
done

stop_pg
if [ ${#failures[@]} -ne 0 ]; then
	printf '%s' "$recap"
	echo "failing: ${failures[*]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
