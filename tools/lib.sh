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

# run_sink NAME [options]: tools/smtp-sink (built into $tmp) on a port the
# kernel picks, which the sink prints first; its log is $tmp/NAME.log.
# Sets $addr, $port and $sinkpid, and adds the sink to $sinkpids, which
# cleanup stops.
run_sink () {
  name=$1 ; shift
  "$tmp/smtp-sink" -l 127.0.0.1:0 "$@" > "$tmp/$name.addr" 2> "$tmp/$name.log" &
  sinkpid=$!
  sinkpids="$sinkpids $sinkpid"
  i=0
  while ! test -s "$tmp/$name.addr" ; do
    i=$((i + 1))
    test $i -le 100 || fail "smtp-sink did not start: $(cat "$tmp/$name.log")"
    sleep 0.1 2>/dev/null || sleep 1
  done
  addr=$(sed -n 1p "$tmp/$name.addr")
  port=${addr##*:}
}
