#!/bin/sh
#
# tools/man-test.sh: keeps the man pages in doc/man from drifting away from
# the programs and from doc/*.md. Run by `make check-man` (after the
# build), from the top directory or anywhere:
#
# 1. Every program of package/targets.mak (BIN_TARGETS, LIBEXEC_TARGETS)
#    has a page doc/man/NAME.8, and every doc/man/*.8 is such a program.
# 2. For each program page: one line of its rendered SYNOPSIS is, word for
#    word, the usage line that `BUILDDIR/NAME --help` prints ("usage: ..."
#    on stderr; brackets and parentheses count as words of their own, so
#    "[ recip ... ]" and "[recip ...]" are the same).
# 3. Every option letter the usage line shows (-j, -l ...) is an item of
#    the page's OPTIONS section, and every single-letter option item of
#    OPTIONS (but -h, the help every program takes) is in the usage line.
# 4. doc/man/qmail-remote-control.5: every control file in the first
#    column of doc/control.md's table ("## The files") is an item of the
#    page's CONTROL FILES list, and every item of that list is in the
#    table.
#
# Needs mandoc (apt-get install mandoc) and the built programs
# (BUILDDIR, default build). Exit 0 when all holds, 1 with every
# difference on stderr.

set -eu

cd "$(dirname "$0")/.."
BUILDDIR=${BUILDDIR:-build}
MANDOC=${MANDOC:-mandoc}
LC_ALL=C
export LC_ALL

command -v "$MANDOC" >/dev/null 2>&1 || {
  echo "man-test: mandoc is not installed: apt-get install mandoc" 1>&2
  exit 1
}

failed=0
bad () { echo "man-test: FAILED: $*" 1>&2 ; failed=1 ; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/qmail-remote-man-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM

bs=$(printf '\b')
# render PAGE: the page as plain text, one paragraph a line (no wrapping),
# without the overstrikes of bold and underline.
render () {
  "$MANDOC" -Tascii -O width=1000 "$1" | sed "s/.$bs//g" | tr '\t' ' '
}
# section NAME < rendered: the lines of one section, without its heading.
section () {
  awk -v s="$1" '/^[^ ]/ { in_s = ($0 == s) ; next } in_s { print }'
}
# words: brackets and parentheses split off, one space between words, no
# space at either end.
words () {
  sed 's/[][()]/ & /g' | tr -s ' ' | sed 's/^ //; s/ $//'
}

programs=$(sed -n 's/^\(qmail-[a-z-]*\)[ \\]*$/\1/p' package/targets.mak)
test -n "$programs" || bad "no program names found in package/targets.mak"

# 1. A page for every program, a program for every page.
for p in $programs ; do
  test -f "doc/man/$p.8" || bad "doc/man/$p.8: no man page for the program $p (package/targets.mak)"
done
for f in doc/man/*.8 ; do
  p=$(basename "$f" .8)
  echo "$programs" | grep -qx -e "$p" || bad "$f: $p is not a program of package/targets.mak"
done

for p in $programs ; do
  page=doc/man/$p.8
  test -f "$page" || continue
  test -x "$BUILDDIR/$p" || { bad "$BUILDDIR/$p: not built (make all first)" ; continue ; }

  # 2. SYNOPSIS against the usage line.
  usage=$("$BUILDDIR/$p" --help 2>&1 || :)
  case $usage in
    "usage: $p"*) ;;
    *) bad "$BUILDDIR/$p --help did not print a usage line: $usage" ; continue ;;
  esac
  usage=$(printf '%s\n' "$usage" | head -n 1 | sed 's/^usage: //' | words)
  render "$page" > "$tmp/page"
  section SYNOPSIS < "$tmp/page" | grep -v '^ *$' | while IFS= read -r l ; do
    printf '%s\n' "$l" | words
  done > "$tmp/synopsis"
  grep -qxF -e "$usage" "$tmp/synopsis" || bad "$page: SYNOPSIS does not match the usage line of $BUILDDIR/$p:
  usage:    $usage
  SYNOPSIS: $(sed '2,$s/^/            /' "$tmp/synopsis")"

  # 3. The options of the usage line, and those of OPTIONS.
  section OPTIONS < "$tmp/page" > "$tmp/options"
  test -s "$tmp/options" || bad "$page: no OPTIONS section"
  used=$(printf '%s\n' "$usage" | tr ' ' '\n' | grep -x -e '-[A-Za-z0-9]' || :)
  for o in $used ; do
    grep -q -e "^     $o\([ ,]\|\$\)" "$tmp/options" ||
      bad "$page: the option $o of the usage line is not described in OPTIONS"
  done
  documented=$(sed -n 's/^     \(-[A-Za-z0-9]\)\([ ,].*\)*$/\1/p' "$tmp/options")
  for o in $documented ; do
    test "$o" = -h && continue
    printf '%s\n' "$usage" | tr ' ' '\n' | grep -qx -e "$o" ||
      bad "$page: OPTIONS describes $o, which the usage line of $BUILDDIR/$p does not show"
  done
done

# 4. The control files.
page=doc/man/qmail-remote-control.5
if ! test -f "$page" ; then
  bad "$page: missing"
else
  # shellcheck disable=SC2016
  awk '/^## / { in_s = ($0 == "## The files") ; next }
       in_s && /^\|/ { t = 1 ; print ; next }
       t { exit }' doc/control.md |
    sed -n 's/^| *`\([^`]*\)` *|.*/\1/p' > "$tmp/control.md.names"
  test -s "$tmp/control.md.names" || bad "doc/control.md: no control file found in the table of \"## The files\""
  render "$page" | section 'CONTROL FILES' |
    awk '/^   [^ ]/ { exit } { print }' > "$tmp/control"
  test -s "$tmp/control" || bad "$page: no CONTROL FILES section"
  while IFS= read -r n ; do
    grep -q -e "^     $n\( \|\$\)" "$tmp/control" ||
      bad "$page: the control file $n (doc/control.md) is not an item of CONTROL FILES"
  done < "$tmp/control.md.names"
  sed -n 's/^     \([a-z][a-z0-9]*\)\( .*\)*$/\1/p' "$tmp/control" | while IFS= read -r n ; do
    grep -qxF -e "$n" "$tmp/control.md.names" ||
      echo "$page: CONTROL FILES describes $n, which is not in doc/control.md's table"
  done > "$tmp/extra"
  if test -s "$tmp/extra" ; then bad "$(cat "$tmp/extra")" ; fi
fi

if test "$failed" != 0 ; then
  exit 1
fi
n=$(echo "$programs" | wc -w)
echo "man-test: OK ($n program pages: SYNOPSIS = usage line, options documented; $(wc -l < "$tmp/control.md.names") control files of doc/control.md in $page)"
