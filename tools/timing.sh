#!/bin/sh
#
# tools/timing.sh [N]: time N (default 20) small deliveries through the
# INSTALLED chain to tools/smtp-sink on loopback, and measure each program.
# Output: "name: value unit" lines.
#
# What is measured, honestly:
# - delivery_ms_*: wall time of one whole qmail-remote run (fork/exec of
#   every stage, control files, smtproutes lookup, connect, SMTP, QUIT),
#   as qmail-rspawn would see it. delivery_tls_ms_* is the same under
#   STARTTLS at tlsstrictness 2 (certificate verified against a throwaway
#   CA from tools/mkcert; TLS 1.3, ECDSA P-256): the difference of the
#   medians is what TLS adds to a small delivery. delivery_maxrss is the largest resident
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
# - throughput_cleartext, throughput_tls: a 100 MB message (text lines of
#   76 characters) delivered to a sink that discards it, in cleartext and
#   under STARTTLS (level 2), in MB/s of message size (MB = 2^20 bytes)
#   over the whole qmail-remote run (median of 3); throughput_tls_ratio is
#   TLS over cleartext. Set THROUGHPUT=0 to leave these out.
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

$MAKE -s --no-print-directory all > "$tmp/make.log" 2>&1 || { cat "$tmp/make.log" 1>&2 ; fail "make all" ; }
$MAKE -s --no-print-directory install DESTDIR="$tmp/dest" > "$tmp/make.log" 2>&1 || { cat "$tmp/make.log" 1>&2 ; fail "make install" ; }
dest=$tmp/dest
bin=$dest$BINDIR
libexec=$dest$LIBEXECDIR
CGO_ENABLED=0 "$GO" build -trimpath -o "$tmp/" ./tools/smtp-sink ./tools/runstat ./tools/mkcert || fail "building tools"
runstat=$tmp/runstat
true=$(command -v true)

# start_sink NAME [options]: a discarding sink; sets $addr and $port.
start_sink () {
  name=$1 ; shift
  "$tmp/smtp-sink" -l 127.0.0.1:0 -discard "$@" > "$tmp/$name.addr" 2> "$tmp/$name.log" &
  sinkpids="$sinkpids $!"
  i=0
  while ! test -s "$tmp/$name.addr" ; do
    i=$((i + 1))
    test $i -le 100 || fail "smtp-sink did not start: $(cat "$tmp/$name.log")"
    sleep 0.1 2>/dev/null || sleep 1
  done
  addr=$(sed -n 1p "$tmp/$name.addr")
  port=${addr##*:}
}

mkdir "$tmp/ca"
"$tmp/mkcert" -o "$tmp/ca" -ip 127.0.0.1 || fail "tools/mkcert"
start_sink sink-tls -tls-cert "$tmp/ca/server.pem" -tls-key "$tmp/ca/server.key"
tlsport=$port
start_sink sink

home=$tmp/qmail
mkdir -p "$home/control" "$home/queue/lock"
echo timing.example.test > "$home/control/me"
echo "example.test:[127.0.0.1]:$port" > "$home/control/smtproutes"
# The same with verified STARTTLS to the TLS sink.
home_tls=$tmp/qmail-tls
mkdir -p "$home_tls/control" "$home_tls/queue/lock"
echo timing.example.test > "$home_tls/control/me"
echo "example.test:[127.0.0.1]:$tlsport" > "$home_tls/control/smtproutes"
echo "$tmp/ca/ca.pem" > "$home_tls/control/trustanchors"
echo 2 > "$home_tls/control/tlsstrictness"
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
  env QMAILREMOTE_QMAILHOME="${qhome:-$home}" QMAILREMOTE_QMAILRUN="$dest$QMAILRUNDIR" QMAILREMOTE_LIBEXECDIR="$lx" \
    "$runstat" -i "${msg:-$tmp/message}" "$@"
}

# One delivery through the spies (also compiles smtproutes.cdb and warms
# the caches), then the timed ones.
run "$tmp/spy" -expect K -name capture "$bin/qmail-remote" example.test a@timing.example.test b@example.test > /dev/null || fail "delivery through the spy stages"
run "$libexec" -n "$n" -expect K -name delivery "$bin/qmail-remote" example.test a@timing.example.test b@example.test | grep -v '_runs:' || fail "timed deliveries"
qhome=$home_tls run "$libexec" -n 1 -expect K -name warm-tls "$bin/qmail-remote" example.test a@timing.example.test b@example.test > /dev/null || fail "a delivery under STARTTLS"
qhome=$home_tls run "$libexec" -n "$n" -expect K -name delivery_tls "$bin/qmail-remote" example.test a@timing.example.test b@example.test | grep -v '_runs:' || fail "timed deliveries under STARTTLS"

# Throughput: 100 MB, cleartext then TLS, median of 3 runs each.
if test "${THROUGHPUT:-1}" != 0 ; then
  awk 'BEGIN { printf "From: a@timing.example.test\nTo: b@example.test\nSubject: 100 MB\n\n"
    l = sprintf("%076d", 0); for (i = 0; i < 1362000; i++) print l }' > "$tmp/big"
  bigbytes=$(wc -c < "$tmp/big" | tr -d ' ')
  for how in cleartext tls ; do
    qh=$home
    test "$how" = tls && qh=$home_tls
    ms=$(msg=$tmp/big qhome=$qh run "$libexec" -n 3 -expect K -name big "$bin/qmail-remote" example.test a@timing.example.test b@example.test \
      | sed -n 's/^big_ms_median: \([0-9.]*\) ms$/\1/p') || fail "100 MB delivery ($how)"
    test -n "$ms" || fail "100 MB delivery ($how): no time"
    eval "ms_$how=\$ms"
    awk -v b="$bigbytes" -v ms="$ms" -v h="$how" 'BEGIN { printf "throughput_%s: %.1f MB/s\n", h, b / 1048576 / (ms / 1000) }'
  done
  awk -v c="$ms_cleartext" -v t="$ms_tls" 'BEGIN { printf "throughput_tls_ratio: %.2f TLS/cleartext\n", c / t }'
  rm -f "$tmp/big"
fi

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
