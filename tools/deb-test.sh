#!/bin/sh
#
# tools/deb-test.sh (make check-deb): a Debian package built the way a
# packager would start, with debhelper's defaults and nothing else: a
# debian/ directory whose rules file is the three lines
#
#   #!/usr/bin/make -f
#   %:
#   	dh $@
#
# in a temporary copy of the tree, built by dpkg-buildpackage -b (no root:
# Rules-Requires-Root: no). dh_auto_configure runs ./configure with
# Debian's arguments, dh_auto_build make, dh_auto_install make install
# DESTDIR=..., then dh_strip, dh_compress and the rest. The package must
# then hold:
#
# - every program of package/targets.mak in /usr/bin and
#   /usr/libexec/qmail-remote-go, all one file (hard links of one inode,
#   as make install leaves them, after dh_strip);
# - a manual page for every program and the control files' page, naming
#   the package's paths (/usr/libexec/qmail-remote-go), not the defaults;
# - a binary that runs (--version) and has /usr/libexec/qmail-remote-go
#   compiled in as its libexec directory.
#
# dh_auto_test is left out (DEB_BUILD_OPTIONS=nocheck): make check runs
# the tests. Needs debhelper (apt-get install debhelper); without it, it
# says SKIP and exits 0. No network, no root.

set -eu

cd "$(dirname "$0")/.."
root=$(pwd)
LC_ALL=C
export LC_ALL

fail () { echo "deb-test: FAILED: $*" 1>&2 ; exit 1 ; }

for p in dpkg-buildpackage dh dpkg-deb ; do
  command -v "$p" >/dev/null 2>&1 || {
    echo "deb-test: SKIP: $p not found (apt-get install debhelper)"
    exit 0
  }
done
GO=${GO:-$(command -v go 2>/dev/null || echo /usr/local/go/bin/go)}
test -x "$GO" || fail "go not found"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/qmail-remote-deb-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM

# The copy: the tree as it is (uncommitted changes included), without
# what a build leaves.
src=$tmp/qmail-remote-go
mkdir "$src"
tar -C "$root" --exclude=./.git --exclude=./build --exclude=./config.mak --exclude=./debian -cf - . | tar -C "$src" -xf -

version=$(sed -n 's/^version=//p' package/info 2>/dev/null || true)
test -n "$version" || version=0.0.0
mkdir -p "$src/debian/source"
cat > "$src/debian/control" <<EOF
Source: qmail-remote-go
Section: mail
Priority: optional
Maintainer: deb-test <deb-test@example.org>
Build-Depends: debhelper-compat (= 13)
Standards-Version: 4.6.2
Rules-Requires-Root: no

Package: qmail-remote-go
Architecture: any
Depends: \${misc:Depends}
Description: qmail-remote in Go (a test package)
 Built by tools/deb-test.sh with debhelper's defaults.
EOF
printf '#!/usr/bin/make -f\n%%:\n\tdh $@\n' > "$src/debian/rules"
chmod 0755 "$src/debian/rules"
cat > "$src/debian/changelog" <<EOF
qmail-remote-go ($version-1) unstable; urgency=low

  * A test build.

 -- deb-test <deb-test@example.org>  Sat, 05 Dec 2026 12:00:00 +0000
EOF
echo '3.0 (native)' > "$src/debian/source/format"

# -d: Go is not Debian's golang package here, so the build dependencies
# are not checked; the build uses the go on PATH, as configure finds it.
( cd "$src" && PATH=$(dirname "$GO"):$PATH DEB_BUILD_OPTIONS=nocheck \
    dpkg-buildpackage -b -us -uc -d ) > "$tmp/build.log" 2>&1 ||
  fail "dpkg-buildpackage: $(tail -n 30 "$tmp/build.log")"
deb=$(ls "$tmp"/qmail-remote-go_*.deb 2>/dev/null | head -n 1)
test -n "$deb" || fail "no .deb was built: $(tail -n 30 "$tmp/build.log")"
grep -q 'dh_auto_configure' "$tmp/build.log" || fail "dh_auto_configure did not run"

x=$tmp/x
dpkg-deb -x "$deb" "$x"
# targets NAME: the programs of NAME := \ (one a line) in targets.mak.
targets () {
  awk -v n="$1" '$1 == n { on = 1 ; next } on { sub(/\\$/, "") ; if ($0 == "") exit ; print $1 }' package/targets.mak | tr '\n' ' '
}
bins=$(targets BIN_TARGETS)
libexecs=$(targets LIBEXEC_TARGETS)
test -n "$bins" && test -n "$libexecs" || fail "package/targets.mak lists no programs"
inode=
for p in $bins ; do
  f=$x/usr/bin/$p
  test -x "$f" || fail "/usr/bin/$p is not in the package"
  i=$(stat -c %i "$f")
  test -z "$inode" || test "$i" = "$inode" || fail "/usr/bin/$p is not a hard link of the others (dh_strip broke the links?)"
  inode=$i
  test -f "$x/usr/share/man/man8/$p.8.gz" || fail "no manual page /usr/share/man/man8/$p.8.gz"
done
for p in $libexecs ; do
  f=$x/usr/libexec/qmail-remote-go/$p
  test -x "$f" || fail "/usr/libexec/qmail-remote-go/$p is not in the package"
  test "$(stat -c %i "$f")" = "$inode" || fail "/usr/libexec/qmail-remote-go/$p is not a hard link of /usr/bin's programs"
  test -f "$x/usr/share/man/man8/$p.8.gz" || fail "no manual page /usr/share/man/man8/$p.8.gz"
done
test -f "$x/usr/share/man/man5/qmail-remote-control.5.gz" || fail "no manual page qmail-remote-control.5"
zcat "$x/usr/share/man/man8/qmail-remote-routes.8.gz" | grep -q 'Pa /usr/libexec/qmail-remote-go ' ||
  fail "qmail-remote-routes.8 does not name the package's libexec directory"
! zcat "$x"/usr/share/man/man*/*.gz | grep -q /usr/local || fail "a manual page names /usr/local"
out=$("$x/usr/bin/qmail-remote" --version 2>&1) || fail "qmail-remote --version: $out"
case $out in "qmail-remote $version") ;; *) fail "qmail-remote --version said '$out', want 'qmail-remote $version'" ;; esac
grep -q -a /usr/libexec/qmail-remote-go "$x/usr/bin/qmail-remote" || fail "the binary has not /usr/libexec/qmail-remote-go compiled in"

n=$(dpkg-deb -c "$deb" | wc -l)
echo "deb-test: OK (dpkg-buildpackage with a debian/rules of 'dh \$@' alone: $(basename "$deb"), $n entries, every program one hard-linked binary, manual pages with the package's paths)"
