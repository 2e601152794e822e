#!/bin/sh
#
# tools/timing.sh [N]: time N (default 20) small deliveries through the
# INSTALLED chain to tools/smtp-sink on loopback, and measure each program.
# Output: "name: value unit" lines.
#
# What is measured, honestly:
# - delivery_ms_*: wall time of one whole qmail-remote run (fork/exec of
#   every stage, control files, smtproutes lookup, connect, SMTP, QUIT),
#   as qmail-rspawn would see it. delivery_maxrss is the largest resident
#   set of any single process of the chain (ru_maxrss of wait4 covers a
#   process and the descendants it waited for, not their sum).
# - <program>_maxrss: peak resident set of that program alone. The stages
#   exec into each other, and the kernel keeps one ru_maxrss per process
#   across execs, so inside the chain they cannot be told apart. Each is
#   therefore run by itself, with the environment it received in a real
#   delivery (captured by a spy stage) and its next stage replaced by
#   true(1), whose own few hundred kB are included. qmail-remote-io is run
#   on a fresh connection to the sink as fd 6/7. qmail-remote is measured
#   with every stage replaced by true (so it ends in a Z).
# - size_<program>: installed file size in bytes.
# Loopback latency is near zero: these numbers show the chain's own cost.

set -eu

n=${1:-20}
case "$n" in
  ''|*[!0-9]*) echo "usage: tools/timing.sh [N]" 1>&2 ; exit 100 ;;
esac

cd "$(dirname "$0")/.."
MAKE=${MAKE:-make}
LC_ALL=C
export LC_ALL
fail () { echo "timing: FAILED: $*" 1>&2 ; exit 1 ; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/qmail-remote-timing.XXXXXX")
sinkpid=
cleanup () {
  if test -n "$sinkpid" ; then
    kill "$sinkpid" 2>/dev/null || :
    wait "$sinkpid" 2>/dev/null || :
  fi
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

$MAKE -s --no-print-directory all > "$tmp/make.log" 2>&1 || { cat "$tmp/make.log" 1>&2 ; fail "make all" ; }
$MAKE -s --no-print-directory install DESTDIR="$tmp/dest" > "$tmp/make.log" 2>&1 || { cat "$tmp/make.log" 1>&2 ; fail "make install" ; }
dest=$tmp/dest
bin=$dest$BINDIR
libexec=$dest$LIBEXECDIR
CGO_ENABLED=0 "$GO" build -trimpath -o "$tmp/" ./tools/smtp-sink ./tools/runstat || fail "building tools"
runstat=$tmp/runstat
true=$(command -v true)

"$tmp/smtp-sink" -l 127.0.0.1:0 -discard > "$tmp/sink.addr" 2> "$tmp/sink.log" &
sinkpid=$!
i=0
while ! test -s "$tmp/sink.addr" ; do
  i=$((i + 1))
  test $i -le 100 || fail "smtp-sink did not start"
  sleep 0.1 2>/dev/null || sleep 1
done
addr=$(sed -n 1p "$tmp/sink.addr")
port=${addr##*:}

home=$tmp/qmail
mkdir -p "$home/control" "$home/queue/lock"
echo timing.example.test > "$home/control/me"
echo "example.test:[127.0.0.1]:$port" > "$home/control/smtproutes"
printf 'From: a@timing.example.test\nTo: b@example.test\nSubject: timing\n\nA small message.\n' > "$tmp/message"

# A spy libexec: each stage records its environment, then execs the real one.
mkdir "$tmp/spy" "$tmp/env" "$tmp/stub"
for p in $(cfg LIBEXEC_TARGETS) ; do
  printf '#!/bin/sh\nexec "%s" -dump "%s" "%s" "$@"\n' "$runstat" "$tmp/env/$p" "$libexec/$p" > "$tmp/spy/$p"
  chmod 0755 "$tmp/spy/$p"
  ln -s "$true" "$tmp/stub/$p"
done

run () { # run LIBEXECDIR runstat-options...
  lx=$1 ; shift
  env QMAILREMOTE_QMAILHOME="$home" QMAILREMOTE_QMAILRUN="$dest$QMAILRUNDIR" QMAILREMOTE_LIBEXECDIR="$lx" \
    "$runstat" -i "$tmp/message" "$@"
}

# One delivery through the spies (also compiles smtproutes.cdb and warms
# the caches), then the timed ones.
run "$tmp/spy" -expect K -name capture "$bin/qmail-remote" example.test a@timing.example.test b@example.test > /dev/null || fail "delivery through the spy stages"
run "$libexec" -n "$n" -expect K -name delivery "$bin/qmail-remote" example.test a@timing.example.test b@example.test | grep -v '_runs:' || fail "timed deliveries"

# Each program alone.
run "$tmp/stub" -n 3 -name qmail-remote "$bin/qmail-remote" example.test a@timing.example.test b@example.test | grep -v _runs:
for p in qmail-remote-routes qmail-remote-resolve qmail-remote-connect ; do
  test -f "$tmp/env/$p" || fail "$p was not reached in the capture run"
  "$runstat" -n 3 -i "$tmp/message" -e "$tmp/env/$p" -name "$p" "$libexec/$p" "$true" | grep -v _runs:
done
test -f "$tmp/env/qmail-remote-io" || fail "qmail-remote-io was not reached in the capture run"
"$runstat" -n 3 -i "$tmp/message" -e "$tmp/env/qmail-remote-io" -fd67 "$addr" -expect K -name qmail-remote-io "$libexec/qmail-remote-io" | grep -v _runs:

env QMAILREMOTE_QMAILHOME="$home" QMAILREMOTE_QMAILRUN="$dest$QMAILRUNDIR" \
  "$runstat" -n 3 -name qmail-newsmtproutes "$bin/qmail-newsmtproutes" | grep -v _runs:

for p in $(cfg BIN_TARGETS) ; do
  echo "size_$p: $(wc -c < "$bin/$p" | tr -d ' ') bytes"
done
for p in $(cfg LIBEXEC_TARGETS) ; do
  echo "size_$p: $(wc -c < "$libexec/$p" | tr -d ' ') bytes"
done
