# Makefile for qmail-remote-go (GNU make).
#
# ./configure writes config.mak; without it the defaults below apply, and
# any variable can be given on the command line (make QMAILDIR=/opt/qmail).
# The program list is data: package/targets.mak. Install modes: package/modes.

-include config.mak
include package/targets.mak

PREFIX ?= /usr/local
EXEC_PREFIX ?= $(PREFIX)
BINDIR ?= $(EXEC_PREFIX)/bin
LIBEXECDIR ?= $(EXEC_PREFIX)/libexec/qmail-remote-go
MANDIR ?= $(PREFIX)/share/man
QMAILDIR ?= /var/qmail
QMAILRUNDIR ?= $(QMAILDIR)/run
QMAILR_UID ?= qmailr
QMAILR_GID ?= qmail
QMAIL_INSTALL ?= no
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
GOFMT ?= $(if $(filter /%,$(GO)),$(dir $(GO))gofmt,gofmt)
DESTDIR ?=
BUILDDIR ?= build
# go test's per-package timeout: a hung test fails instead of hanging CI.
TEST_TIMEOUT ?= 300s

VERSION := $(shell sed -n 's/^version=//p' package/info)
MODULE := qmail-remote-go
PATHS := $(MODULE)/src/internal/paths

# Only a run directory that differs from QMAILDIR/run is compiled in: the
# programs derive the default from the qmail home themselves, so that
# QMAILREMOTE_QMAILHOME moves it along.
ifeq ($(QMAILRUNDIR),$(QMAILDIR)/run)
QMAILRUN_X :=
else
QMAILRUN_X := -X $(PATHS).QmailRun=$(QMAILRUNDIR)
endif

# Reproducible, static binaries: no cgo, no file system paths (-trimpath),
# no VCS stamp, no build id, and no symbol table unless KEEP_SYMBOLS=yes
# (for a debug package: the symbols and DWARF stay in, still reproducible).
# The same source, the same Go release and the same variables give the
# same bytes.
#
# LDFLAGS: more flags for go's linker (go tool link, not a C linker),
# from make's command line or configure's LDFLAGS=...; the path flags
# (PATH_LDFLAGS) are always added after them. An LDFLAGS in the
# environment is ignored: build tools export C linker flags there
# (dpkg-buildflags: -Wl,-z,relro), which go's linker rejects.
# GOOS/GOARCH/GOARM (configure --host): cross build the binaries.
KEEP_SYMBOLS ?= no
STRIP_LDFLAGS := $(if $(filter yes 1 true,$(KEEP_SYMBOLS)),,-s -w)
PATH_LDFLAGS := -X $(PATHS).QmailHome=$(QMAILDIR) \
  $(QMAILRUN_X) \
  -X $(PATHS).LibexecDir=$(LIBEXECDIR) \
  -X $(PATHS).Version=$(VERSION)
USER_LDFLAGS := $(if $(filter environment%,$(origin LDFLAGS)),,$(LDFLAGS))
GO_LDFLAGS := $(strip $(STRIP_LDFLAGS) -buildid= $(USER_LDFLAGS) $(PATH_LDFLAGS))
GO_TARGET_ENV := $(if $(GOOS),GOOS=$(GOOS)) $(if $(GOARCH),GOARCH=$(GOARCH)) $(if $(GOARM),GOARM=$(GOARM))
BUILD_ID_STRING := $(strip $(GO_TARGET_ENV) $(GO) $(GO_LDFLAGS))
GOBUILD := $(strip CGO_ENABLED=0 $(GO_TARGET_ENV) $(GO) build -trimpath -buildvcs=false -ldflags '$(GO_LDFLAGS)')

TARGETS := $(BIN_TARGETS) $(LIBEXEC_TARGETS)
BUILT := $(addprefix $(BUILDDIR)/,$(TARGETS))
# Sources the binaries depend on (tests excluded); go build itself decides
# what to recompile, this only tells make when to ask it.
SOURCES := go.mod go.sum $(shell find src -name '*.go' ! -name '*_test.go' 2>/dev/null)

mode = $(or $(shell awk '$$1 == "$(1)" { print $$2 }' package/modes),0755)

# Every program is one binary (src/multicall), installed once in
# LIBEXECDIR and hard-linked under each name (doc/chain.md, "One
# process"); one inode has one mode, qmail-remote's in package/modes.
# The first installed name is the one the others link to.
FIRST_LIBEXEC := $(firstword $(LIBEXEC_TARGETS))

# The manual pages (doc/man): one in section 8 for every program, and the
# control files in section 5. Listed from the programs, not found by a
# wildcard: a program without its page fails install and check-man.
MAN5 := doc/man/qmail-remote-control.5
MAN8 := $(addprefix doc/man/,$(addsuffix .8,$(TARGETS)))

# link_progs(programs, directory, source): each program a hard link to
# source, made under a temporary name and renamed into place; where the
# directory is on another file system than source, a copy of the binary
# (which runs as well; doc/chain.md says what it costs).
link_progs = for p in $(1) ; do \
	  t='$(DESTDIR)$(2)'/."$$p".new ; \
	  rm -f "$$t" ; \
	  if ! ln '$(3)' "$$t" 2>/dev/null ; then \
	    echo "note: cannot hard-link $(3) into $(2) (another file system?): $$p is a copy" ; \
	    install -m $(call mode,qmail-remote) '$(3)' "$$t" || exit 1 ; \
	  fi ; \
	  mv -f "$$t" '$(DESTDIR)$(2)'/"$$p" || exit 1 ; \
	done

.PHONY: all install install-bin install-libexec install-rundir install-qmail install-man \
  uninstall uninstall-qmail uninstall-bin uninstall-libexec uninstall-man \
  check check-install check-configure check-deb check-scripting check-interop check-man vet fmt-check test demo bench clean \
  distclean print-config

all: $(BUILT)

# The flags are part of what the binaries are made of: a change of
# configuration (or of a variable on the command line) rebuilds them.
$(BUILDDIR)/.flags: FORCE
	@mkdir -p $(BUILDDIR)
	@echo "$$GOFLAGS"' $(BUILD_ID_STRING)' | cmp -s - $@ || echo "$$GOFLAGS"' $(BUILD_ID_STRING)' > $@

# One binary for every program, and a hard link under each name.
$(BUILDDIR)/.stamp: $(SOURCES) $(BUILDDIR)/.flags package/targets.mak
	$(GOBUILD) -o $(BUILDDIR)/qmail-remote ./src/multicall
	@for p in $(filter-out qmail-remote,$(TARGETS)) ; do ln -f $(BUILDDIR)/qmail-remote $(BUILDDIR)/$$p || exit 1 ; done
	@touch $@

$(BUILT): $(BUILDDIR)/.stamp

FORCE:

# Each file is installed under a temporary name and renamed into place, so
# a qmail-rspawn starting a delivery during an upgrade runs either the old
# program or the new one, never a half-written file. The stages go in
# before the entry program that runs them.
install: install-libexec install-bin install-rundir install-qmail install-man

install-libexec: $(addprefix $(BUILDDIR)/,$(LIBEXEC_TARGETS))
	install -d -m 0755 '$(DESTDIR)$(LIBEXECDIR)'
	install -m $(call mode,qmail-remote) $(BUILDDIR)/qmail-remote '$(DESTDIR)$(LIBEXECDIR)/.$(FIRST_LIBEXEC).new'
	mv -f '$(DESTDIR)$(LIBEXECDIR)/.$(FIRST_LIBEXEC).new' '$(DESTDIR)$(LIBEXECDIR)/$(FIRST_LIBEXEC)'
	@$(call link_progs,$(filter-out $(FIRST_LIBEXEC),$(LIBEXEC_TARGETS)),$(LIBEXECDIR),$(DESTDIR)$(LIBEXECDIR)/$(FIRST_LIBEXEC))

install-bin: $(addprefix $(BUILDDIR)/,$(BIN_TARGETS)) install-libexec
	install -d -m 0755 '$(DESTDIR)$(BINDIR)'
	@$(call link_progs,$(BIN_TARGETS),$(BINDIR),$(DESTDIR)$(LIBEXECDIR)/$(FIRST_LIBEXEC))

# The pages, mode 0644, each under a temporary name renamed into place.
# doc/man names the default paths; the installed pages name this
# installation's (QMAILRUNDIR first: it is under QMAILDIR by default).
MAN_PATHS = -e 's|/var/qmail/run|$(QMAILRUNDIR)|g' -e 's|/var/qmail|$(QMAILDIR)|g' \
  -e 's|/usr/local/libexec/qmail-remote-go|$(LIBEXECDIR)|g' -e 's|/usr/local/bin|$(BINDIR)|g'
install-man: $(MAN5) $(MAN8)
	install -d -m 0755 '$(DESTDIR)$(MANDIR)/man5' '$(DESTDIR)$(MANDIR)/man8'
	@for f in $(MAN5) $(MAN8) ; do \
	  s=$${f##*.} ; b=$${f##*/} ; d='$(DESTDIR)$(MANDIR)'/man$$s ; \
	  sed $(MAN_PATHS) "$$f" > "$$d/.$$b.new" && chmod 0644 "$$d/.$$b.new" && \
	    mv -f "$$d/.$$b.new" "$$d/$$b" || exit 1 ; \
	done

# QMAILRUNDIR/qmail-remote holds smtproutes.cdb, its lock and tcpto6, and
# in mta-sts/ and tlsrpt/ the MTA-STS policies and the TLS reports' log:
# the qmailr user (qmail-remote runs as qmailr) must be able to write
# there (made here, so that a first run by root cannot make them root's).
# The ids are applied only by root installing into the live system: under
# DESTDIR the ids may not exist yet on the build host, and packagers set the
# owner in their post-install step (see INSTALL).
install-rundir:
	install -d -m 0755 '$(DESTDIR)$(QMAILRUNDIR)'
	install -d -m 0755 '$(DESTDIR)$(QMAILRUNDIR)/qmail-remote' \
	  '$(DESTDIR)$(QMAILRUNDIR)/qmail-remote/mta-sts' '$(DESTDIR)$(QMAILRUNDIR)/qmail-remote/tlsrpt'
	@if test -n '$(DESTDIR)' ; then \
	  echo 'note: DESTDIR is set: not changing the owner of $(QMAILRUNDIR)/qmail-remote; make it $(QMAILR_UID):$(QMAILR_GID) when installing the package' ; \
	elif test "$$(id -u)" != 0 ; then \
	  echo 'warning: not root: not changing the owner of $(QMAILRUNDIR)/qmail-remote; run chown $(QMAILR_UID):$(QMAILR_GID) $(QMAILRUNDIR)/qmail-remote as root' 1>&2 ; \
	else \
	  chown '$(QMAILR_UID):$(QMAILR_GID)' '$(QMAILRUNDIR)/qmail-remote' \
	    '$(QMAILRUNDIR)/qmail-remote/mta-sts' '$(QMAILRUNDIR)/qmail-remote/tlsrpt' || { \
	    echo 'fatal: cannot chown $(QMAILR_UID):$(QMAILR_GID) $(QMAILRUNDIR)/qmail-remote: does the qmailr user exist? (./configure --with-qmailr-ids=uid:gid)' 1>&2 ; exit 1 ; } ; \
	fi

# --enable-qmail-install: qmail-remote in QMAILDIR/bin, where qmail-rspawn
# finds it: a hard link to the installed binary (not a symlink: it then
# works even if LIBEXECDIR's file system is mounted after qmail starts),
# or a copy where QMAILDIR is on another file system, which runs the chain
# in a second process (doc/chain.md). A stock qmail-remote found there is
# kept once as qmail-remote.orig. Our binary is recognised by the package
# path that Go keeps in every binary.
install-qmail: $(BUILDDIR)/qmail-remote install-libexec
ifeq ($(QMAIL_INSTALL),yes)
	install -d -m 0755 '$(DESTDIR)$(QMAILDIR)/bin'
	@q='$(DESTDIR)$(QMAILDIR)/bin/qmail-remote' ; \
	if test -f "$$q" && ! test -e "$$q.orig" && ! grep -q '$(MODULE)/src/' "$$q" ; then \
	  echo "keeping the previous qmail-remote as $$q.orig" ; \
	  cp -p "$$q" "$$q.orig" ; \
	fi
	@$(call link_progs,qmail-remote,$(QMAILDIR)/bin,$(DESTDIR)$(LIBEXECDIR)/$(FIRST_LIBEXEC))
else
	@:
endif

# make uninstall: what make install put there, with the same configuration
# and DESTDIR, and nothing else. QMAILDIR/bin/qmail-remote goes first,
# while the installed binary is still there to tell whether it is ours:
# only if QMAIL_INSTALL=yes, and only if it is that binary (the same file
# or the same bytes); the qmail-remote.orig that make install kept is then
# renamed back into its place, so that qmail-rspawn always finds a
# qmail-remote. Then the names in BINDIR, those in LIBEXECDIR, and
# LIBEXECDIR itself if it is left empty. BINDIR and QMAILDIR/bin stay.
# QMAILRUNDIR/qmail-remote is state (smtproutes.cdb, tcpto6, MTA-STS
# policies, the TLS reports' log), kept for a reinstall: never removed.
uninstall: uninstall-libexec uninstall-man
	@echo 'note: left alone: $(DESTDIR)$(QMAILRUNDIR)/qmail-remote (state written at run time; remove it by hand if you want it gone)'

# The pages make install put in MANDIR/man5 and man8. Under DESTDIR (a
# staging tree) the directories they leave empty go too, up to DESTDIR;
# in the live system MANDIR and its man5 and man8 are shared: left.
uninstall-man:
	@for f in $(MAN5) $(MAN8) ; do \
	  s=$${f##*.} ; b=$${f##*/} ; d='$(DESTDIR)$(MANDIR)'/man$$s ; \
	  rm -f "$$d/$$b" "$$d/.$$b.new" || exit 1 ; \
	done
	@if test -n '$(DESTDIR)' ; then \
	  rmdir '$(DESTDIR)$(MANDIR)/man5' '$(DESTDIR)$(MANDIR)/man8' 2>/dev/null ; \
	  d='$(MANDIR)' ; \
	  while test -n "$$d" && test "$$d" != / && rmdir '$(DESTDIR)'"$$d" 2>/dev/null ; do d=$${d%/*} ; done ; \
	fi ; :

uninstall-qmail:
ifeq ($(QMAIL_INSTALL),yes)
	@q='$(DESTDIR)$(QMAILDIR)/bin/qmail-remote' ; \
	ref='$(DESTDIR)$(LIBEXECDIR)/$(FIRST_LIBEXEC)' ; \
	rm -f '$(DESTDIR)$(QMAILDIR)/bin/.qmail-remote.new' ; \
	if ! test -e "$$q" && ! test -h "$$q" ; then \
	  : ; \
	elif ! test -f "$$ref" ; then \
	  echo "note: $$q left alone: $$ref is not there to tell whether it is ours" ; \
	elif test -h "$$q" || ! test -f "$$q" || ! { test "$$q" -ef "$$ref" || cmp -s "$$q" "$$ref" ; } ; then \
	  echo "note: $$q left alone: it is not the installed qmail-remote-go" ; \
	elif test -f "$$q.orig" ; then \
	  mv -f "$$q.orig" "$$q" && echo "put back $$q.orig as $$q" ; \
	else \
	  rm -f "$$q" && echo "warning: removed $$q, and there is no qmail-remote.orig to put back: qmail cannot deliver remote mail until a qmail-remote is there" 1>&2 ; \
	fi
else
	@:
endif

uninstall-bin: uninstall-qmail
	@for p in $(BIN_TARGETS) ; do \
	  rm -f '$(DESTDIR)$(BINDIR)'/"$$p" '$(DESTDIR)$(BINDIR)'/."$$p".new || exit 1 ; \
	done

uninstall-libexec: uninstall-qmail uninstall-bin
	@for p in $(LIBEXEC_TARGETS) ; do \
	  rm -f '$(DESTDIR)$(LIBEXECDIR)'/"$$p" '$(DESTDIR)$(LIBEXECDIR)'/."$$p".new || exit 1 ; \
	done
	@if test -d '$(DESTDIR)$(LIBEXECDIR)' && ! rmdir '$(DESTDIR)$(LIBEXECDIR)' 2>/dev/null ; then \
	  echo 'note: $(DESTDIR)$(LIBEXECDIR) is not empty: left alone' ; \
	fi


# Static checks, unit and program tests, then the installed chain.
check: vet fmt-check check-man test check-install check-configure check-scripting

vet:
	$(GO) vet ./...

# The manual pages: mandoc -Tlint, any warning or error fails; then
# tools/man-test.sh, against drift: each program page's SYNOPSIS is the
# program's usage line and its OPTIONS has every option letter of it,
# and the control page names every file of doc/control.md's table.
check-man: $(MAN5) $(MAN8) all
	@command -v mandoc >/dev/null 2>&1 || { echo 'check-man: mandoc is not installed: apt-get install mandoc (it checks the manual pages in doc/man)' 1>&2 ; exit 1 ; }
	@out=$$(mandoc -Tlint -Wwarning $(MAN5) $(MAN8) 2>&1) ; rc=$$? ; \
	if test $$rc != 0 || test -n "$$out" ; then echo "$$out" ; echo "check-man: mandoc -Tlint -Wwarning found problems (exit $$rc)" 1>&2 ; exit 1 ; fi
	BUILDDIR='$(BUILDDIR)' sh tools/man-test.sh

fmt-check:
	@bad=$$($(GOFMT) -l src tools) || exit 1 ; \
	if test -n "$$bad" ; then echo "gofmt needed on:" ; echo "$$bad" ; exit 1 ; fi

# Twice: the programs as they run (in one process where they can), then
# the packages that run programs again with every exec and spawn a real
# one (QMAILREMOTE_REALEXEC=1, built into the test binaries' programs).
REALEXEC_PKGS := ./src/chaintest/ ./src/qmail-remote/ ./src/qmail-remote-routes/ \
  ./src/qmail-remote-resolve/ ./src/qmail-remote-connect/ ./src/qmail-remote-io/ ./src/qmail-remote-tlsio/ \
  ./src/qmail-remote-probe/ ./src/internal/compilecmd/
test:
	CGO_ENABLED=0 $(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...
	CGO_ENABLED=0 QMAILREMOTE_REALEXEC=1 $(GO) test -count=1 -timeout $(TEST_TIMEOUT) $(REALEXEC_PKGS)

# Checks that the configured paths really landed in the binaries, then
# tools/demo.sh -check: a delivery through a DESTDIR installation, and one
# through an installation whose compiled-in paths all point into a temporary
# directory (run with an empty environment), each to tools/smtp-sink. Fails
# unless both reports are K and the sink received the message byte for byte.
check-install: all
	@grep -q -F '$(LIBEXECDIR)' $(BUILDDIR)/qmail-remote || { echo 'check-install: LIBEXECDIR $(LIBEXECDIR) is not in $(BUILDDIR)/qmail-remote: the -X flag did not land' 1>&2 ; exit 1 ; }
	@grep -q -F '$(QMAILDIR)' $(BUILDDIR)/qmail-remote || { echo 'check-install: QMAILDIR $(QMAILDIR) is not in $(BUILDDIR)/qmail-remote: the -X flag did not land' 1>&2 ; exit 1 ; }
	MAKE='$(MAKE)' sh tools/demo.sh -check

# configure as distribution tooling drives it (run in a temporary copy:
# the tree's config.mak is not touched), the link flags make composes,
# a DESTDIR install and uninstall round trip, and a reproducible build
# from two directories (tools/configure-test.sh).
check-configure: all
	MAKE='$(MAKE)' sh tools/configure-test.sh

# A Debian package from debhelper's defaults (tools/deb-test.sh); needs
# debhelper, skips without it. Not part of check: CI runs it on its own.
check-deb:
	GO='$(GO)' sh tools/deb-test.sh

# The recipes of doc/scripting.md, each run against local test servers
# (tools/scripting-test.sh), so that the page cannot rot.
check-scripting: all
	sh tools/scripting-test.sh

# Both ways: the chain in one process, then every stage a process.
check-interop:
	bash tools/interop/run.sh
	bash tools/interop/run.sh --realexec

demo:
	MAKE='$(MAKE)' sh tools/demo.sh

# The hot paths' Go benchmarks (body transform and pre-scan, reply
# reader, smtproutes lookup, tcpto lookup, the TLS shuttle), then whole
# deliveries through an installed chain (tools/bench.sh). doc/bench.md
# explains every figure. BENCHTIME bounds each Go benchmark.
BENCHTIME ?= 300ms
bench: all
	CGO_ENABLED=0 $(GO) test -run='^$$' -bench=. -benchtime=$(BENCHTIME) -timeout $(TEST_TIMEOUT) \
	  ./src/internal/smtp/ ./src/internal/routes/ ./src/internal/tcpto/ ./src/qmail-remote-tlsio/
	MAKE='$(MAKE)' sh tools/bench.sh

# For scripts (tools/demo.sh): the settled configuration, one per line.
print-config:
	@echo 'VERSION=$(VERSION)'
	@echo 'BINDIR=$(BINDIR)'
	@echo 'LIBEXECDIR=$(LIBEXECDIR)'
	@echo 'MANDIR=$(MANDIR)'
	@echo 'QMAILDIR=$(QMAILDIR)'
	@echo 'QMAILRUNDIR=$(QMAILRUNDIR)'
	@echo 'QMAILR_IDS=$(QMAILR_UID):$(QMAILR_GID)'
	@echo 'QMAIL_INSTALL=$(QMAIL_INSTALL)'
	@echo 'BUILDDIR=$(BUILDDIR)'
	@echo 'GO=$(GO)'
	@echo 'GOOS=$(GOOS)'
	@echo 'GOARCH=$(GOARCH)'
	@echo 'KEEP_SYMBOLS=$(KEEP_SYMBOLS)'
	@echo 'BIN_TARGETS=$(BIN_TARGETS)'
	@echo 'LIBEXEC_TARGETS=$(LIBEXEC_TARGETS)'

clean:
	rm -rf $(BUILDDIR)

distclean: clean
	rm -f config.mak

# Every fuzz target (func FuzzXxx in src/ and tools/), one after another,
# FUZZTIME each (tools/fuzz.sh): 10 s by default, for a quick run by
# hand; CI (.ci/run) gives each target 30 s, as issue 6 asks, and longer
# runs are `make fuzz FUZZTIME=10m`. Failing inputs land in the package's
# testdata/fuzz/, where `make check` replays them; FUZZKEEP=yes also
# copies the corpus the fuzzer grew there.
FUZZTIME ?= 10s
FUZZMINIMIZETIME ?= 5s
.PHONY: fuzz
fuzz:
	GO='$(GO)' FUZZTIME='$(FUZZTIME)' FUZZMINIMIZETIME='$(FUZZMINIMIZETIME)' sh tools/fuzz.sh

# The fault matrix (doc/faults.md): every step of a delivery against every
# server fault, through the whole chain; the test's log says what each
# cell reported, and the table lands in FAULT_MATRIX and on stdout. The
# same test runs in make check (go test ./...).
FAULT_MATRIX ?= $(BUILDDIR)/fault-matrix.md
.PHONY: check-faults
check-faults:
	@mkdir -p $(dir $(FAULT_MATRIX))
	CGO_ENABLED=0 FAULT_MATRIX_OUT='$(abspath $(FAULT_MATRIX))' $(GO) test -count=1 -v -run '^TestFaultMatrix$$' -timeout $(TEST_TIMEOUT) ./src/chaintest/
	@echo ; echo 'Fault matrix ($(FAULT_MATRIX)):' ; cat '$(FAULT_MATRIX)'
