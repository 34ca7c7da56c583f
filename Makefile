# kairan — plain GNU make. `make`, `make run`, `make test`, `make install`.
# Every library comes through pkg-config; `make deps` installs what is missing.

PREFIX     ?= /usr/local
DESTDIR    ?=
SBINDIR    ?= $(PREFIX)/sbin
BINDIR     ?= $(PREFIX)/bin
MANDIR     ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
# systemd reads units, sysusers.d and tmpfiles.d from /usr/local/lib too.
UNITDIR    ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d

# The one place the version is kept: VERSION (CHANGELOG.md, debian/changelog
# and the man pages are checked against it or filled from it).
VERSION := $(shell cat VERSION)

CC ?= cc
FLAVOUR ?= release
# Each flavour builds into its own folder; BUILDROOT lets parallel checkouts
# keep apart.
BUILDROOT ?= build
B := $(BUILDROOT)/$(FLAVOUR)

# Debian 12 packages for the build, the tests and the benchmarks.
DEB_PKGS := build-essential pkg-config libyaml-dev libsqlite3-dev sqlite3 \
	libsodium-dev libesmtp-dev libcurl4-openssl-dev libmicrohttpd-dev \
	libcmark-dev libsystemd-dev libcmocka-dev libssl-dev \
	python3 python3-aiosmtpd python3-dkim postfix curl openssl clang \
	libclang-rt-14-dev wrk nginx-light spamassassin chromium time systemd \
	cppcheck clang-tidy valgrind libidn2-dev fonts-ipafont-gothic nkf \
	dpkg-dev debhelper fakeroot lintian libpq-dev postgresql iproute2 \
	prometheus
# (iproute2: ss counts SMTP sessions in test_several_hosts; prometheus:
# its promtool checks a live /metrics in test_dashboard.py)

PKGS := yaml-0.1 sqlite3 libsodium libesmtp-1.0 libcurl libmicrohttpd \
	libcmark libsystemd libssl libcrypto libidn2 libpq

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
	-Wmissing-prototypes -Wmissing-declarations -Wold-style-definition \
	-Wpointer-arith -Wcast-qual -Wwrite-strings -Wformat=2 -Wundef \
	-Wvla -Wimplicit-fallthrough -Wnull-dereference -Wredundant-decls \
	-Werror=implicit-function-declaration
ifeq ($(findstring clang,$(CC)),)
WARN += -Wduplicated-cond -Wduplicated-branches -Wlogical-op
else
# clang's -Wformat=2 also flags vprintf-style wrappers (log callbacks of
# libmicrohttpd and libesmtp) that gcc accepts.
WARN += -Wno-format-nonliteral
endif

BASE_CFLAGS := -std=c11 -D_GNU_SOURCE -pthread -MMD -MP -Ilib -Isubscribers $(WARN)

ifeq ($(FLAVOUR),asan)
OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
	-fno-sanitize-recover=all
LDOPT := -fsanitize=address,undefined
else ifeq ($(FLAVOUR),fuzz)
# libFuzzer: clang only; the library is instrumented, the harness links the
# fuzzer's main.
OPT := -O1 -g -fno-omit-frame-pointer \
	-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all
LDOPT := -fsanitize=fuzzer,address,undefined
else ifeq ($(FLAVOUR),debug)
OPT := -O0 -g
LDOPT :=
else
OPT := -O2 -g -D_FORTIFY_SOURCE=2 -fstack-protector-strong -fPIE
LDOPT := -pie -Wl,-z,relro,-z,now
endif

PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
# libesmtp is linked into kairan-smtp alone (lib/smtp_engine.c); -lresolv:
# glibc's res_nquery and ns_parse (lib/dns.c), no package.
PKG_LIBS   = $(shell pkg-config --libs $(filter-out libesmtp-1.0,$(PKGS)) 2>/dev/null) -lresolv
SMTP_LIBS  = $(shell pkg-config --libs libesmtp-1.0 2>/dev/null)

ALL_CFLAGS = $(BASE_CFLAGS) $(OPT) $(PKG_CFLAGS) $(CFLAGS)
ALL_LDFLAGS = $(LDOPT) -pthread $(LDFLAGS)

# lib/smtp_wrap.c defines connect(), read(), write() and poll() for the
# engine (lib/smtp_engine.c, lib/smtp_tls.c): they go into kairan-smtp
# only, never into libkairan.a.
SMTP_ENGINE := lib/smtp_engine.c lib/smtp_tls.c lib/smtp_wrap.c
LIB_SRC := $(sort $(filter-out $(SMTP_ENGINE),$(wildcard lib/*.c)) \
	$(wildcard subscribers/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(B)/%.o)
KAIRAND_SRC := daemon/kairand.c $(sort $(wildcard daemon/kd_*.c))
KAIRANCTL_SRC := daemon/kairanctl.c $(sort $(wildcard daemon/ctl_*.c))
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(B)/tests/%)

FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(B)/fuzz/%)
FUZZ_TIME ?= 60

# SKIP_DEPS=1: never run `make deps` (a package build, whose build
# dependencies dpkg-buildpackage has checked, must not call apt-get).
ifeq ($(SKIP_DEPS),1)
DEPS_STAMP :=
else
DEPS_STAMP := $(BUILDROOT)/.deps-ok
endif

.PHONY: all deps run test unit integration install uninstall clean lint fuzz bench \
	check-config dist deb
all: $(DEPS_STAMP)
	@$(MAKE) --no-print-directory build-$(FLAVOUR)

.PHONY: build-$(FLAVOUR)
build-$(FLAVOUR): $(B)/kairand $(B)/kairanctl $(B)/kairan-smtp

# `make deps`: install what is missing (a no-op when everything is there).
deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' \
	    || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing$$missing"; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  echo "postfix postfix/main_mailer_type select No configuration" \
	    | $$SUDO debconf-set-selections; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends $$missing >/dev/null || exit 1; \
	fi
	@mkdir -p $(BUILDROOT) && touch $(DEPS_STAMP)

ifneq ($(DEPS_STAMP),)
$(DEPS_STAMP): Makefile
	@$(MAKE) --no-print-directory deps
endif

# The flags a build dir was made with; a change rebuilds everything.
$(B)/.flags: FORCE
	@mkdir -p $(B)
	@echo '$(ALL_CFLAGS) $(ALL_LDFLAGS)' | cmp -s - $@ || \
	  echo '$(ALL_CFLAGS) $(ALL_LDFLAGS)' > $@
FORCE:

# Keep object files of test binaries (no rebuild on every run).
.SECONDARY:

$(B)/%.o: %.c $(B)/.flags
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(VERSION_CFLAGS) -c $< -o $@

# Only version.o sees the version: a new one rebuilds that object alone.
$(B)/lib/version.o: VERSION
$(B)/lib/version.o: VERSION_CFLAGS = -DKR_VERSION='"$(VERSION)"'

$(B)/libkairan.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(B)/kairand: $(KAIRAND_SRC:%.c=$(B)/%.o) $(B)/libkairan.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(B)/kairanctl: $(KAIRANCTL_SRC:%.c=$(B)/%.o) $(B)/libkairan.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(B)/kairan-smtp: $(B)/daemon/kairan_smtp.o $(SMTP_ENGINE:%.c=$(B)/%.o) \
		$(B)/libkairan.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS) $(SMTP_LIBS)

$(B)/tests/%: $(B)/tests/unit/%.o $(B)/libkairan.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS) $(shell pkg-config --libs cmocka)

$(B)/fuzz/%: $(B)/tests/fuzz/%.o $(B)/libkairan.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS)

.PHONY: fuzz-bins-$(FLAVOUR)
fuzz-bins-$(FLAVOUR): $(FUZZ_BIN)

# ---- make fuzz: every harness for FUZZ_TIME seconds on its seed corpus ----
# New inputs go to build/fuzz/corpus/NAME (the committed seeds stay as they
# are); crashes to build/fuzz/crashes/. A crash becomes a seed and a test.
fuzz: $(DEPS_STAMP)
	@$(MAKE) --no-print-directory FLAVOUR=fuzz CC=clang fuzz-bins-fuzz
	@set -e; for f in $(BUILDROOT)/fuzz/fuzz/fuzz_*; do \
	  n=$${f##*/fuzz_}; mkdir -p $(BUILDROOT)/fuzz/corpus/$$n \
	    $(BUILDROOT)/fuzz/crashes; \
	  echo "fuzz: $$n for $(FUZZ_TIME)s"; \
	  $$f -max_total_time=$(FUZZ_TIME) -print_final_stats=1 \
	    -artifact_prefix=$(BUILDROOT)/fuzz/crashes/$$n- \
	    $(BUILDROOT)/fuzz/corpus/$$n tests/fuzz/$$n 2>&1 | \
	    grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|==.*ERROR|SUMMARY)' || true; \
	  ls $(BUILDROOT)/fuzz/crashes/$$n-* >/dev/null 2>&1 && \
	    { echo "fuzz: $$n crashed"; exit 1; } || true; \
	done

# ---- make run: the daemon on config/dev.yaml, state under ./var ----
run: $(DEPS_STAMP)
	@$(MAKE) --no-print-directory build-$(FLAVOUR)
	@mkdir -p var/mail/new var/mail/cur var/mail/tmp var/outbox
	@echo "kairan: sign-up page  http://127.0.0.1:8080/"
	@echo "kairan: admin         http://127.0.0.1:8081/healthz"
	@echo "kairan: mail lands in $(CURDIR)/var/mail/new/ (Maildir transport)"
	@echo "kairan: drop reports  $(CURDIR)/var/outbox/ (write, then rename)"
	exec $(B)/kairand --config config/dev.yaml

# ---- make test: sanitized build, unit + integration, one summary line ----
test: $(DEPS_STAMP)
	@$(MAKE) --no-print-directory FLAVOUR=asan build-asan unit-bins-asan
	@KAIRAN_BUILD=$(BUILDROOT)/asan tests/run_tests.sh

.PHONY: unit-bins-$(FLAVOUR)
unit-bins-$(FLAVOUR): $(UNIT_BIN)

unit: $(DEPS_STAMP)
	@$(MAKE) --no-print-directory FLAVOUR=asan build-asan unit-bins-asan
	@KAIRAN_BUILD=$(BUILDROOT)/asan tests/run_tests.sh unit

integration: $(DEPS_STAMP)
	@$(MAKE) --no-print-directory FLAVOUR=asan build-asan
	@KAIRAN_BUILD=$(BUILDROOT)/asan tests/run_tests.sh integration

# ---- make lint: cppcheck, then clang-tidy 14 with .clang-tidy's checks
# (warnings are errors) on every C file, with the test build's flags ----
LINT_SRC := $(sort $(wildcard lib/*.c) $(wildcard daemon/*.c) \
	$(wildcard subscribers/*.c))
TIDY ?= clang-tidy-14
TIDY_FLAGS = -std=c11 -D_GNU_SOURCE -pthread -Ilib -Isubscribers \
	$(PKG_CFLAGS) -fsanitize=address,undefined
lint: $(DEPS_STAMP)
	cppcheck --enable=warning,performance,portability --std=c11 \
	  --inline-suppr --suppress=missingIncludeSystem --error-exitcode=1 \
	  -q -Ilib -Isubscribers lib daemon subscribers
	@echo "clang-tidy: $(words $(LINT_SRC)) files"
	@printf '%s\n' $(LINT_SRC) | xargs -P "$$(nproc)" -I{} \
	  sh -c '$(TIDY) --quiet "$$1" -- $(TIDY_FLAGS) 2>/dev/null || \
	    { echo "clang-tidy: $$1 failed"; exit 1; }' sh {} && \
	  echo "clang-tidy: clean"

# ---- make valgrind: a -O0 -g build without sanitizers (build/debug);
# every unit binary and one integration run (test_e2e: kairand under
# valgrind via KAIRAN_VALGRIND) under memcheck; a definite leak or any
# memory error fails ----
VALGRIND := valgrind -q --leak-check=full --errors-for-leak-kinds=definite \
	--error-exitcode=1 --track-origins=yes
.PHONY: valgrind
valgrind: $(DEPS_STAMP)
	@$(MAKE) --no-print-directory FLAVOUR=debug build-debug unit-bins-debug
	@fail=0; for t in $(BUILDROOT)/debug/tests/test_*; do \
	  [ -x "$$t" ] || continue; \
	  if CMOCKA_MESSAGE_OUTPUT=TAP $(VALGRIND) "$$t" >"$$t.out" 2>"$$t.vg"; \
	  then echo "valgrind: ok $${t##*/}"; \
	  else echo "valgrind: FAILED $${t##*/}"; tail -n 40 "$$t.vg"; \
	    grep '^not ok' "$$t.out"; fail=1; fi; done; \
	KAIRAN_BUILD=$(BUILDROOT)/debug KAIRAN_VALGRIND="$(VALGRIND)" \
	  ASAN_OPTIONS= UBSAN_OPTIONS= tests/run_tests.sh test_e2e || fail=1; \
	exit $$fail

# `make install` honours PREFIX and DESTDIR (and the *DIR variables at the
# top). The units' Exec lines are rewritten to $(SBINDIR) and
# $(SYSCONFDIR); an existing kairan.yaml is never overwritten (the new
# example goes beside it as kairan.yaml.example). The mail templates are
# built into the binaries: nothing to install for them.
install: all
	install -d -m 0755 $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) \
	  $(DESTDIR)$(SYSCONFDIR)/kairan $(DESTDIR)$(UNITDIR) \
	  $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR)
	install -m 0755 $(B)/kairand $(DESTDIR)$(SBINDIR)/kairand
	install -m 0755 $(B)/kairan-smtp $(DESTDIR)$(SBINDIR)/kairan-smtp
	install -m 0755 $(B)/kairanctl $(DESTDIR)$(BINDIR)/kairanctl
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/kairan/kairan.yaml ]; then \
	  install -m 0644 config/kairan.yaml \
	    $(DESTDIR)$(SYSCONFDIR)/kairan/kairan.yaml.example; \
	  echo "make install: kept the existing" \
	    "$(DESTDIR)$(SYSCONFDIR)/kairan/kairan.yaml; the new example is" \
	    "$(DESTDIR)$(SYSCONFDIR)/kairan/kairan.yaml.example"; \
	else \
	  echo "install -m 0644 config/kairan.yaml" \
	    "$(DESTDIR)$(SYSCONFDIR)/kairan/kairan.yaml"; \
	  install -m 0644 config/kairan.yaml \
	    $(DESTDIR)$(SYSCONFDIR)/kairan/kairan.yaml; \
	fi
	@set -e; for f in systemd/*.service systemd/*.socket; do \
	  [ -e "$$f" ] || continue; d=$(DESTDIR)$(UNITDIR)/$${f##*/}; \
	  echo "install -m 0644 $$f $$d"; \
	  sed -e '/^Exec/s|/usr/local/sbin/|$(SBINDIR)/|g' \
	    -e '/^Exec/s|/etc/kairan/|$(SYSCONFDIR)/kairan/|g' \
	    "$$f" >"$$d.tmp"; \
	  chmod 0644 "$$d.tmp"; mv -f "$$d.tmp" "$$d"; done
	@echo "make install: kairan.service runs $(SBINDIR)/kairand" \
	  "--config $(SYSCONFDIR)/kairan/kairan.yaml"
	install -m 0644 systemd/kairan.sysusers \
	  $(DESTDIR)$(SYSUSERSDIR)/kairan.conf
	install -m 0644 systemd/kairan.tmpfiles \
	  $(DESTDIR)$(TMPFILESDIR)/kairan.conf
	@set -e; for m in man/*.[1-9]; do \
	  d=$(DESTDIR)$(MANDIR)/man$${m##*.}; install -d -m 0755 "$$d"; \
	  echo "install -m 0644 $$m $$d/ (kairan $(VERSION))"; \
	  sed 's/@VERSION@/$(VERSION)/g' "$$m" >"$$d/$${m##*/}.tmp"; \
	  chmod 0644 "$$d/$${m##*/}.tmp"; \
	  mv -f "$$d/$${m##*/}.tmp" "$$d/$${m##*/}"; done
	@if [ -z "$(DESTDIR)" ]; then \
	  echo "make install: next, as root: systemd-sysusers;" \
	    "systemd-tmpfiles --create; systemctl daemon-reload; edit" \
	    "$(SYSCONFDIR)/kairan/kairan.yaml; systemctl enable --now" \
	    "kairan.socket kairan.service"; fi

# make uninstall: removes what make install put in place (same PREFIX,
# DESTDIR, … variables). The database and token key under /var/lib/kairan
# are never touched; kairan.yaml goes only when it is still the shipped
# example, an edited one stays (and is named).
uninstall:
	@set -e; for f in $(DESTDIR)$(SBINDIR)/kairand \
	  $(DESTDIR)$(SBINDIR)/kairan-smtp \
	  $(DESTDIR)$(BINDIR)/kairanctl \
	  $(DESTDIR)$(UNITDIR)/kairan.service \
	  $(DESTDIR)$(UNITDIR)/kairan.socket \
	  $(DESTDIR)$(SYSUSERSDIR)/kairan.conf \
	  $(DESTDIR)$(TMPFILESDIR)/kairan.conf \
	  $(DESTDIR)$(SYSCONFDIR)/kairan/kairan.yaml.example; do \
	  if [ -e "$$f" ] || [ -L "$$f" ]; then echo "rm -f $$f"; rm -f "$$f"; fi; \
	done
	@set -e; for m in man/*.[1-9]; do \
	  f=$(DESTDIR)$(MANDIR)/man$${m##*.}/$${m##*/}; \
	  if [ -e "$$f" ]; then echo "rm -f $$f"; rm -f "$$f"; fi; done
	@c=$(DESTDIR)$(SYSCONFDIR)/kairan/kairan.yaml; \
	if [ -e "$$c" ] && cmp -s config/kairan.yaml "$$c"; then \
	  echo "rm -f $$c"; rm -f "$$c"; \
	elif [ -e "$$c" ]; then \
	  echo "make uninstall: kept $$c (edited; remove it yourself)"; fi
	@rmdir $(DESTDIR)$(SYSCONFDIR)/kairan 2>/dev/null || true
	@if [ -z "$(DESTDIR)" ]; then \
	  echo "make uninstall: the database and token key in /var/lib/kairan" \
	    "are kept; as root: systemctl disable --now kairan.socket" \
	    "kairan.service (before), systemctl daemon-reload (after)"; fi

# ---- make dist: kairan-VERSION.tar.gz, the same bytes every time ----
# The files are git's tracked ones (in an unpacked tarball, which has no
# .git: every file but build outputs), in byte order of their names, owned by 0:0, with
# the time of debian/changelog's top entry as every mtime, and gzip -n.
DISTDIR ?= .
DIST := kairan-$(VERSION)
SOURCE_DATE_EPOCH ?= $(shell dpkg-parsechangelog -l debian/changelog -STimestamp)
DIST_LIST = if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
	  git ls-files -z; \
	else \
	  find . \( -path ./build -o -path ./var -o -path ./debian/build \
	    -o -path ./debian/kairan -o -path ./debian/.debhelper \) -prune \
	    -o -type f ! -name '*.o' ! -name '*.d' ! -name '*.a' \
	    ! -name '$(DIST).tar.gz' ! -name 'kairan_*.deb' ! -name '*.pyc' \
	    -printf '%P\0'; \
	fi
# `make -s dist-files`: what make dist packs, one name a line.
.PHONY: dist-files
dist-files:
	@{ $(DIST_LIST); } | tr '\0' '\n' | LC_ALL=C sort
dist:
	@set -e; \
	if [ "$$(dpkg-parsechangelog -l debian/changelog -SVersion)" != "$(VERSION)" ]; then \
	  echo "make dist: debian/changelog's top entry is not VERSION ($(VERSION))" >&2; \
	  exit 1; fi; \
	grep -q '^## \[$(VERSION)\] - ' CHANGELOG.md || { \
	  echo "make dist: CHANGELOG.md has no entry for $(VERSION)" >&2; exit 1; }; \
	mkdir -p $(DISTDIR); \
	list=$$(mktemp); trap 'rm -f "$$list" "$$list.tar"' EXIT; \
	{ $(DIST_LIST); } >"$$list"; \
	LC_ALL=C sort -z -o "$$list" "$$list"; \
	LC_ALL=C tar --create --file="$$list.tar" --null --verbatim-files-from \
	  --files-from="$$list" --sort=name --format=gnu \
	  --mtime=@$(SOURCE_DATE_EPOCH) --owner=0 --group=0 --numeric-owner \
	  --mode=u+rwX,go=rX --transform='s,^,$(DIST)/,'; \
	gzip -n -9 <"$$list.tar" >$(DISTDIR)/$(DIST).tar.gz.tmp; \
	mv -f $(DISTDIR)/$(DIST).tar.gz.tmp $(DISTDIR)/$(DIST).tar.gz; \
	echo "make dist: $(DISTDIR)/$(DIST).tar.gz" \
	  "($$(tr -cd '\0' <"$$list" | wc -c) files)" \
	  "sha256 $$(sha256sum $(DISTDIR)/$(DIST).tar.gz | cut -c1-64)"

# ---- make deb: the Debian package, built by dpkg-buildpackage from the
# unpacked dist tarball in $(BUILDROOT)/deb (the results land beside it),
# then copied to DISTDIR ----
DEB_ARCH = $(shell dpkg --print-architecture)
deb: $(DEPS_STAMP) dist
	rm -rf $(BUILDROOT)/deb && mkdir -p $(BUILDROOT)/deb
	tar -xzf $(DISTDIR)/$(DIST).tar.gz -C $(BUILDROOT)/deb
	cd $(BUILDROOT)/deb/$(DIST) && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
	  DEB_BUILD_OPTIONS="$${DEB_BUILD_OPTIONS:-parallel=$$(nproc)}" \
	  dpkg-buildpackage -us -uc -b
	cp $(BUILDROOT)/deb/kairan_$(VERSION)_$(DEB_ARCH).deb $(DISTDIR)/
	@echo "make deb: $(DISTDIR)/kairan_$(VERSION)_$(DEB_ARCH).deb"

clean:
	rm -rf $(BUILDROOT)/release $(BUILDROOT)/asan $(BUILDROOT)/debug \
	  $(BUILDROOT)/deb

-include $(shell find $(BUILDROOT) -name '*.d' -type f 2>/dev/null)
