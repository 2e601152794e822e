#!/bin/sh
#
# tools/configure-test.sh (make check-configure): the build as distribution
# tooling drives it.
#
# 1. ./configure, run in a temporary copy of the files it and the Makefile
#    need (configure writes config.mak in the current directory, so the
#    tree's own config.mak is never touched): Debian's dh_auto_configure
#    argument list, ${prefix} expansion, unknown --enable-* (a note) and
#    unknown plain options (an error), --host/--build (GOOS/GOARCH),
#    VAR=value arguments.
# 2. make -n in that copy: the -X path flags are in the link flags whatever
#    LDFLAGS is, KEEP_SYMBOLS=yes keeps the symbols, an LDFLAGS in the
#    environment is ignored, a cross configuration cross-builds.
# 3. make install then make uninstall into a temporary DESTDIR, with the
#    tree's configuration and build: nothing is left but the directories
#    expected (the run directory, which uninstall never removes, and the
#    parents that install made), and QMAILDIR/bin/qmail-remote is handled
#    as INSTALL says.
# 4. The binary built from two other directories: the same bytes.
#
# Needs no network and no root.
#
# The single-quoted $ and ${...} are for configure and make to expand:
# shellcheck disable=SC2016

set -eu

cd "$(dirname "$0")/.."
MAKE=${MAKE:-make}
LC_ALL=C
export LC_ALL

fail () { echo "configure-test: FAILED: $*" 1>&2 ; exit 1 ; }

NAME=configure
# shellcheck source=tools/lib.sh
. tools/lib.sh
QMAILDIR=$(cfg QMAILDIR)

# Make in the temporary copies without what the calling make passes down
# (its command-line variables would change what is tested).
cleanmake () { MAKEFLAGS='' MFLAGS='' MAKELEVEL='' $MAKE --no-print-directory "$@" ; }

tree=$tmp/tree
mkdir "$tree"
cp -R configure Makefile go.mod go.sum package "$tree/"

# conf ARGS...: ./configure ARGS in the copy; $rc, $tree/conf.out, conf.err.
conf () {
  rc=0
  ( cd "$tree" && sh ./configure "$@" ) > "$tmp/conf.out" 2> "$tmp/conf.err" || rc=$?
}
conf_ok () {
  conf "$@"
  test "$rc" = 0 || fail "./configure $* exited $rc: $(cat "$tmp/conf.err")"
}
# val NAME: NAME's value in config.mak ("NAME := value").
val () { sed -n "s/^$1 := //p" "$tree/config.mak" ; }
expect () {
  got=$(val "$1")
  test "$got" = "$2" || fail "$what: config.mak has $1 := \"$got\", expected \"$2\""
}
hasline () {
  grep -q -x -F "$1" "$tree/config.mak" || fail "$what: config.mak has no line \"$1\": $(cat "$tree/config.mak")"
}
noline () {
  ! grep -q "$1" "$tree/config.mak" || fail "$what: config.mak has a line matching \"$1\": $(cat "$tree/config.mak")"
}

# (a) exactly what dh_auto_configure passes to an autoconf-style configure.
what='dh_auto_configure arguments'
conf_ok --build=x86_64-linux-gnu --prefix=/usr '--includedir=${prefix}/include' \
  '--mandir=${prefix}/share/man' '--infodir=${prefix}/share/info' --sysconfdir=/etc \
  --localstatedir=/var --disable-option-checking --disable-silent-rules \
  '--libdir=${prefix}/lib/x86_64-linux-gnu' --runstatedir=/run \
  --disable-maintainer-mode --disable-dependency-tracking
expect PREFIX /usr
expect EXEC_PREFIX /usr
expect BINDIR /usr/bin
expect LIBEXECDIR /usr/libexec/qmail-remote-go
expect MANDIR /usr/share/man
expect QMAILDIR /var/qmail
hasline 'QMAILRUNDIR = $(QMAILDIR)/run'
noline '^GOARCH'
test ! -s "$tmp/conf.err" || fail "$what: --disable-option-checking, yet configure wrote to stderr: $(cat "$tmp/conf.err")"
cleanmake -s -C "$tree" print-config > "$tmp/pc" || fail "$what: make print-config in the configured copy"
grep -q -x 'BINDIR=/usr/bin' "$tmp/pc" || fail "$what: make does not read BINDIR from config.mak: $(cat "$tmp/pc")"
grep -q -x 'MANDIR=/usr/share/man' "$tmp/pc" || fail "$what: make does not read MANDIR from config.mak: $(cat "$tmp/pc")"

# (b) ${prefix}-style references, and the "--option value" form.
what='--libexecdir=${prefix}/lib/qmail-remote-go'
conf_ok --prefix=/usr '--libexecdir=${prefix}/lib/qmail-remote-go'
expect LIBEXECDIR /usr/lib/qmail-remote-go
expect BINDIR /usr/bin
what='exec_prefix and datarootdir references'
conf_ok --prefix /opt/q --exec-prefix '${prefix}/x' '--bindir=$exec_prefix/sbin' '--datarootdir=${prefix}/s'
expect EXEC_PREFIX /opt/q/x
expect BINDIR /opt/q/x/sbin
expect LIBEXECDIR /opt/q/x/libexec/qmail-remote-go
expect MANDIR /opt/q/s/man
what='an unknown reference'
conf '--bindir=${nosuchdir}/bin'
test "$rc" = 100 || fail "$what: --bindir='\${nosuchdir}/bin' was accepted (exit $rc)"
grep -q 'nosuchdir' "$tmp/conf.err" || fail "$what: the error does not name it: $(cat "$tmp/conf.err")"
what='a reference loop'
conf '--prefix=${prefix}'
test "$rc" = 100 || fail "$what: --prefix='\${prefix}' was accepted (exit $rc)"

# (c) unknown --enable-*/--with-*: accepted, with a note each.
what='unknown --enable-foo'
conf_ok --enable-foo --with-bar=baz --without-qux
grep -q 'note: ignoring unknown option --enable-foo$' "$tmp/conf.err" || fail "$what: no note on stderr: $(cat "$tmp/conf.err")"
grep -q 'note: ignoring unknown option --with-bar=baz$' "$tmp/conf.err" || fail "$what: no note for --with-bar=baz: $(cat "$tmp/conf.err")"
test "$(wc -l < "$tmp/conf.err")" -eq 3 || fail "$what: not one line per unknown option: $(cat "$tmp/conf.err")"
what='known --enable-qmail-install'
conf_ok --enable-qmail-install
expect QMAIL_INSTALL yes
test ! -s "$tmp/conf.err" || fail "$what: a note for a known option: $(cat "$tmp/conf.err")"

# (d) an unknown plain option: an error, and config.mak left as it was.
what='unknown --frobnicate'
cp "$tree/config.mak" "$tmp/config.mak.before"
conf --frobnicate
test "$rc" = 100 || fail "$what: exit $rc, expected 100"
grep -q 'unknown option: --frobnicate' "$tmp/conf.err" || fail "$what: no clear error: $(cat "$tmp/conf.err")"
cmp -s "$tree/config.mak" "$tmp/config.mak.before" || fail "$what: config.mak was rewritten"
what='a stray argument'
conf frobnicate
test "$rc" = 100 || fail "$what: exit $rc, expected 100"

# (e) --host/--build: a cross build, GOOS/GOARCH in config.mak and on the
# go build command line.
what='--host=aarch64-linux-gnu --build=x86_64-linux-gnu'
conf_ok --host=aarch64-linux-gnu --build=x86_64-linux-gnu
expect GOOS linux
expect GOARCH arm64
noline '^GOARM'
cleanmake -n -C "$tree" all > "$tmp/make.n" 2>&1 || fail "$what: make -n: $(cat "$tmp/make.n")"
grep -q 'CGO_ENABLED=0 GOOS=linux GOARCH=arm64 .* build ' "$tmp/make.n" || fail "$what: go build is not a cross build: $(cat "$tmp/make.n")"
what='--host=arm-linux-gnueabihf'
conf_ok --host=arm-linux-gnueabihf --build=x86_64-linux-gnu
expect GOARCH arm
expect GOARM 7
what='--host equal to --build'
conf_ok --host=x86_64-linux-gnu --build=x86_64-linux-gnu
noline '^GOARCH'
what='--host=x86_64-w64-mingw32'
conf --host=x86_64-w64-mingw32 --build=x86_64-linux-gnu
test "$rc" = 100 || fail "$what: exit $rc, expected 100"
grep -q 'x86_64-w64-mingw32' "$tmp/conf.err" || fail "$what: the error does not name the triplet: $(cat "$tmp/conf.err")"

# (f) VAR=value: recorded (GO need not exist yet), GO* exported to go.
what='GO=/x/go GOFLAGS=-mod=mod'
conf_ok GO=/x/go GOFLAGS=-mod=mod 'FOO=a$b#c'
expect GO /x/go
expect GOFLAGS -mod=mod
hasline 'export GOFLAGS'
cleanmake -s -C "$tree" print-config > "$tmp/pc" 2>&1 || fail "$what: make print-config: $(cat "$tmp/pc")"
grep -q -x 'GO=/x/go' "$tmp/pc" || fail "$what: make does not use GO=/x/go: $(cat "$tmp/pc")"
printf '%s\n' "show: ; @echo '\$(FOO)'" > "$tmp/show.mk"
test "$(cd "$tree" && cleanmake -s -f config.mak -f "$tmp/show.mk" show)" = 'a$b#c' || fail "$what: FOO='a\$b#c' did not reach make unchanged"
what='a configure-set variable'
conf BINDIR=/x
test "$rc" = 100 || fail "$what: BINDIR=/x was accepted (exit $rc): it would bypass --bindir's checks"

# (g) the link flags: the -X path flags whatever LDFLAGS is.
what='make -n LDFLAGS=-foo'
conf_ok --prefix=/usr
cleanmake -n -C "$tree" all LDFLAGS=-foo > "$tmp/make.n" 2>&1 || fail "$what: $(cat "$tmp/make.n")"
line=$(grep ' build -trimpath -buildvcs=false ' "$tmp/make.n") || fail "$what: no go build -trimpath -buildvcs=false: $(cat "$tmp/make.n")"
for f in "-s -w -buildid= -foo " "-X qmail-remote-go/src/internal/paths.LibexecDir=/usr/libexec/qmail-remote-go" \
    "-X qmail-remote-go/src/internal/paths.QmailHome=/var/qmail" "-X qmail-remote-go/src/internal/paths.Version=" ; do
  case "$line" in
    *"$f"*) ;;
    *) fail "$what: \"$f\" is not in the go build line: $line" ;;
  esac
done
what='make -n KEEP_SYMBOLS=yes'
cleanmake -n -C "$tree" all KEEP_SYMBOLS=yes > "$tmp/make.n" 2>&1 || fail "$what: $(cat "$tmp/make.n")"
line=$(grep ' build -trimpath -buildvcs=false ' "$tmp/make.n") || fail "$what: no go build -trimpath -buildvcs=false: $(cat "$tmp/make.n")"
case "$line" in
  *"-s -w"*) fail "$what: still stripped: $line" ;;
  *"-ldflags '-buildid= -X qmail-remote-go/src/internal/paths."*) ;;
  *) fail "$what: unexpected link flags: $line" ;;
esac
what='LDFLAGS in the environment'
( cd "$tree" && LDFLAGS='-Wl,-z,relro' MAKEFLAGS='' MFLAGS='' MAKELEVEL='' $MAKE --no-print-directory -n all ) > "$tmp/make.n" 2>&1 || fail "$what: $(cat "$tmp/make.n")"
! grep -q -- '-Wl,-z,relro' "$tmp/make.n" || fail "$what: C linker flags from the environment reached go's linker: $(cat "$tmp/make.n")"
what='LDFLAGS= from configure'
conf_ok --prefix=/usr LDFLAGS=-bar
cleanmake -n -C "$tree" all > "$tmp/make.n" 2>&1 || fail "$what: $(cat "$tmp/make.n")"
grep -q -- "-ldflags '-s -w -buildid= -bar -X " "$tmp/make.n" || fail "$what: configure's LDFLAGS=-bar is not in the link flags: $(cat "$tmp/make.n")"

# 3. DESTDIR install and uninstall, with the tree's configuration.
# dirs_of PATH...: each PATH and every parent of it but /.
dirs_of () {
  for d ; do
    while test -n "$d" && test "$d" != / ; do
      echo "$d"
      d=$(dirname "$d")
    done
  done
}
# leftovers DEST EXPECTED-DIRS...: nothing in DEST but those directories.
leftovers () {
  d=$1 ; shift
  ( cd "$d" && find . ! -type d ) > "$tmp/files"
  test ! -s "$tmp/files" || fail "$what: uninstall left files behind: $(cat "$tmp/files")"
  ( cd "$d" && find . -type d ! -name . | sed 's:^\.::' | sort ) > "$tmp/dirs.got"
  dirs_of "$@" | sort -u > "$tmp/dirs.expected"
  cmp -s "$tmp/dirs.got" "$tmp/dirs.expected" || fail "$what: the directories left are not the ones expected: $(diff "$tmp/dirs.expected" "$tmp/dirs.got" || :)"
}
rundirs="$QMAILRUNDIR/qmail-remote/mta-sts $QMAILRUNDIR/qmail-remote/tlsrpt"
libexecparent=$(dirname "$LIBEXECDIR")

what='make install; make uninstall'
dest=$tmp/dest1
quiet_make install DESTDIR="$dest" QMAIL_INSTALL=no
for p in $(cfg BIN_TARGETS) ; do test -x "$dest$BINDIR/$p" || fail "$what: $BINDIR/$p was not installed" ; done
for p in $(cfg LIBEXEC_TARGETS) ; do test -x "$dest$LIBEXECDIR/$p" || fail "$what: $LIBEXECDIR/$p was not installed" ; done
quiet_make uninstall DESTDIR="$dest" QMAIL_INSTALL=no
grep -q "left alone: $dest$QMAILRUNDIR/qmail-remote" "$tmp/make.log" || fail "$what: uninstall did not say it leaves the run directory: $(cat "$tmp/make.log")"
# shellcheck disable=SC2086
leftovers "$dest" "$BINDIR" "$libexecparent" $rundirs

what='make install-man with other paths'
dest=$tmp/destman
quiet_make install-man DESTDIR="$dest" QMAILDIR=/opt/qm QMAILRUNDIR=/srv/qm-run \
  LIBEXECDIR=/usr/lib/qrg BINDIR=/usr/sbin MANDIR=/usr/share/man
m=$dest/usr/share/man
! grep -rn -e /var/qmail -e /usr/local "$m" > "$tmp/man.paths" || fail "$what: the pages still name the default paths: $(cat "$tmp/man.paths")"
grep -q '^\.It Pa /opt/qm/control/$' "$m/man8/qmail-remote.8" || fail "$what: qmail-remote.8 does not name /opt/qm/control/"
grep -q '^\.It Pa /srv/qm-run/qmail-remote/$' "$m/man8/qmail-remote.8" || fail "$what: qmail-remote.8 does not name the run directory /srv/qm-run/qmail-remote/"
grep -q 'Pa /usr/lib/qrg ' "$m/man8/qmail-remote-routes.8" || fail "$what: qmail-remote-routes.8 does not name LIBEXECDIR /usr/lib/qrg"
grep -q ' /usr/sbin/qmail-remote-mtasts ' "$m/man8/qmail-remote-mtasts.8" || fail "$what: qmail-remote-mtasts.8 does not name BINDIR /usr/sbin"
test "$(find "$m" -type f -perm 0644 | wc -l)" = "$(ls doc/man | wc -l)" || fail "$what: not every page was installed mode 0644: $(ls -lR "$m")"

what='QMAIL_INSTALL=yes over a stock qmail-remote'
dest=$tmp/dest2
mkdir -p "$dest$QMAILDIR/bin"
printf '#!/bin/sh\necho stock\n' > "$dest$QMAILDIR/bin/qmail-remote"
cp "$dest$QMAILDIR/bin/qmail-remote" "$tmp/stock"
quiet_make install DESTDIR="$dest" QMAIL_INSTALL=yes
test "$dest$QMAILDIR/bin/qmail-remote" -ef "$dest$LIBEXECDIR/$(cfg LIBEXEC_TARGETS | awk '{ print $1 }')" ||
  cmp -s "$dest$QMAILDIR/bin/qmail-remote" "$dest$LIBEXECDIR/$(cfg LIBEXEC_TARGETS | awk '{ print $1 }')" ||
  fail "$what: QMAILDIR/bin/qmail-remote is not the installed binary"
quiet_make uninstall DESTDIR="$dest" QMAIL_INSTALL=yes
cmp -s "$tmp/stock" "$dest$QMAILDIR/bin/qmail-remote" || fail "$what: the stock qmail-remote was not put back"
rm "$dest$QMAILDIR/bin/qmail-remote"
# shellcheck disable=SC2086
leftovers "$dest" "$BINDIR" "$libexecparent" "$QMAILDIR/bin" $rundirs

what='QMAIL_INSTALL=yes, then replaced by someone else'
dest=$tmp/dest3
quiet_make install DESTDIR="$dest" QMAIL_INSTALL=yes
printf 'not ours\n' > "$dest$QMAILDIR/bin/qmail-remote.x"
mv -f "$dest$QMAILDIR/bin/qmail-remote.x" "$dest$QMAILDIR/bin/qmail-remote"
echo local > "$dest$LIBEXECDIR/local-file"
quiet_make uninstall DESTDIR="$dest" QMAIL_INSTALL=yes
test "$(cat "$dest$QMAILDIR/bin/qmail-remote")" = 'not ours' || fail "$what: uninstall touched a qmail-remote that is not ours"
grep -q 'left alone: it is not the installed' "$tmp/make.log" || fail "$what: no note that it was left alone: $(cat "$tmp/make.log")"
test -f "$dest$LIBEXECDIR/local-file" || fail "$what: uninstall removed a file it did not install"
rm "$dest$QMAILDIR/bin/qmail-remote" "$dest$LIBEXECDIR/local-file"
# shellcheck disable=SC2086
leftovers "$dest" "$BINDIR" "$LIBEXECDIR" "$QMAILDIR/bin" $rundirs

what='QMAIL_INSTALL=yes, nothing there before'
dest=$tmp/dest4
quiet_make install DESTDIR="$dest" QMAIL_INSTALL=yes
quiet_make uninstall DESTDIR="$dest" QMAIL_INSTALL=yes
grep -q 'warning: removed .*no qmail-remote.orig' "$tmp/make.log" || fail "$what: no warning that qmail is left without a qmail-remote: $(cat "$tmp/make.log")"
# shellcheck disable=SC2086
leftovers "$dest" "$BINDIR" "$libexecparent" "$QMAILDIR/bin" $rundirs

# 4. Reproducible: the same bytes from two other directories (the default
# configuration; the build cache makes this cheap).
what='a reproducible build'
for d in r1 rebuilt-elsewhere ; do
  mkdir "$tmp/$d"
  cp -R src Makefile go.mod go.sum package "$tmp/$d/"
  cleanmake -s -C "$tmp/$d" all GO="$GO" > "$tmp/$d.log" 2>&1 || fail "$what: make all in $tmp/$d: $(cat "$tmp/$d.log")"
done
cmp -s "$tmp/r1/build/qmail-remote" "$tmp/rebuilt-elsewhere/build/qmail-remote" ||
  fail "$what: two builds of the same source in two directories differ"
! grep -q -F "$tmp" "$tmp/r1/build/qmail-remote" || fail "$what: the build directory's path is in the binary"

echo "check-configure: OK (configure with dh_auto_configure's arguments, \${prefix} references, unknown options, --host, VAR=value; the link flags; DESTDIR install and uninstall; man pages with the installation's paths; a reproducible build)"
