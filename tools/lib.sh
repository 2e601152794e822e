# tools/lib.sh: what tools/demo.sh and tools/bench.sh share. Source it from
# the top directory after defining fail() and setting NAME and MAKE: it
# makes $tmp, removes it (and stops the sinks listed in $sinkpids) on exit,
# and reads the configuration from the Makefile, the one place that knows
# it.

tmp=$(mktemp -d "${TMPDIR:-/tmp}/qmail-remote-$NAME.XXXXXX")
sinkpids=
cleanup () {
  for p in $sinkpids ; do
    kill "$p" 2>/dev/null || :
    wait "$p" 2>/dev/null || :
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

$MAKE -s --no-print-directory print-config > "$tmp/config" || fail "make print-config"
cfg () { sed -n "s/^$1=//p" "$tmp/config" ; }
BINDIR=$(cfg BINDIR)
LIBEXECDIR=$(cfg LIBEXECDIR)
QMAILRUNDIR=$(cfg QMAILRUNDIR)
GO=$(cfg GO)

# quiet_make ARGS...: make, showing its output only when it fails.
quiet_make () {
  $MAKE -s --no-print-directory "$@" > "$tmp/make.log" 2>&1 || { cat "$tmp/make.log" 1>&2 ; fail "make $*" ; }
}
