#!/bin/sh
#
# tools/demo.sh [-check]: real deliveries through the INSTALLED chain.
#
# It builds, installs into a temporary DESTDIR, makes a throwaway qmail home
# whose control/smtproutes sends example.test to tools/smtp-sink on a
# loopback port, runs qmail-remote the way qmail-rspawn does (fd 0 the
# message file, fd 2 = fd 1), and shows what qmail-remote printed and what
# the server received. Nothing leaves the machine: loopback only, no DNS.
#
# Then the same under STARTTLS: tools/mkcert makes a throwaway CA and a
# certificate for 127.0.0.1 (an IP SAN: the route is the address literal
# [127.0.0.1], which the TLS stage verifies by IP SAN, so no DNS is
# needed), a second sink offers STARTTLS with it, and a second qmail home
# has control/trustanchors (the CA) and control/tlsstrictness 2: the chain
# must verify the certificate or send nothing.
#
# -check (make check-install): quiet unless something is wrong; exits 1
# unless each run's output is an r and a K report and the sink received the
# message byte for byte (with CRLF line ends) and the right envelope, and
# the TLS run's K and the sink both say TLS. It then does the cleartext run
# again through a second installation whose compiled-in paths all point
# into the temporary directory, with an empty environment.
#
# Needs only Go, make and POSIX tools; works as root and as a normal user.

set -eu

check=no
case "${1-}" in
  -check) check=yes ;;
  '') ;;
  *) echo "usage: tools/demo.sh [-check]" 1>&2 ; exit 100 ;;
esac

cd "$(dirname "$0")/.."
MAKE=${MAKE:-make}
LC_ALL=C
export LC_ALL

say () { test "$check" = yes || printf '%s\n' "$*" ; }
fail () { echo "demo: FAILED: $*" 1>&2 ; exit 1 ; }

NAME=demo
. tools/lib.sh

say "== building and installing into a temporary DESTDIR ($tmp/dest)"
if test "$check" = yes ; then
  quiet_make all
  quiet_make install DESTDIR="$tmp/dest"
else
  $MAKE -s --no-print-directory all || fail "make all"
  $MAKE -s --no-print-directory install DESTDIR="$tmp/dest" || fail "make install"
fi
dest=$tmp/dest
for p in $(cfg BIN_TARGETS) ; do
  test -x "$dest$BINDIR/$p" || fail "$BINDIR/$p was not installed"
done
for p in $(cfg LIBEXEC_TARGETS) ; do
  test -x "$dest$LIBEXECDIR/$p" || fail "$LIBEXECDIR/$p was not installed"
done
test -d "$dest$QMAILRUNDIR/qmail-remote" || fail "$QMAILRUNDIR/qmail-remote was not created"

CGO_ENABLED=0 "$GO" build -trimpath -o "$tmp/" ./tools/smtp-sink ./tools/mkcert || fail "building tools/smtp-sink and tools/mkcert"

# start_sink NAME [options]: a sink storing into $tmp/NAME (run_sink,
# tools/lib.sh).
start_sink () {
  sname=$1 ; shift
  mkdir "$tmp/$sname"
  run_sink "$sname" -o "$tmp/$sname" "$@"
}
start_sink sink

# A throwaway qmail home. 127.0.0.1 is one of this host's addresses, but
# the loop rule (ipme) does not apply to smtproutes relays, as in stock
# qmail: a route may point at a filter on this very host.
home=$tmp/qmail
mkdir -p "$home/control" "$home/queue/lock"
echo demo.example.test > "$home/control/me"
echo "example.test:[127.0.0.1]:$port" > "$home/control/smtproutes"
echo 10 > "$home/control/timeoutconnect"
echo 30 > "$home/control/timeoutremote"

# The message as it sits in qmail's queue: LF line ends. One line starts
# with a dot (it must go out dot-stuffed and come back intact), one has
# 8-bit text (BODY=8BITMIME).
cat > "$tmp/message" <<'EOF'
Received: (qmail 4242 invoked by uid 1000); 1 Jan 2026 00:00:00 -0000
Date: Thu, 1 Jan 2026 00:00:00 +0000
From: sender@demo.example.test
To: rcpt@example.test
Subject: qmail-remote-go demo
Message-ID: <demo.4242@demo.example.test>

Hello from the qmail-remote-go demo.
.A line that starts with a dot goes out as ".." and comes back as ".".
EOF
printf 'Gr\303\274\303\237e: this line has 8-bit bytes.\n' >> "$tmp/message"

# deliver HOME: run the installed qmail-remote with qmail home HOME, as
# qmail-rspawn would; output in $tmp/out, exit status in $rc; show both.
deliver () {
  rc=0
  env QMAILREMOTE_QMAILHOME="$1" \
      QMAILREMOTE_QMAILRUN="$dest$QMAILRUNDIR" \
      QMAILREMOTE_LIBEXECDIR="$dest$LIBEXECDIR" \
      "$dest$BINDIR/qmail-remote" example.test sender@demo.example.test rcpt@example.test \
      < "$tmp/message" > "$tmp/out" 2>&1 || rc=$?

  # Reports end with NUL; map NUL to RS (octal 036) so awk can split them.
  tr '\000' '\036' < "$tmp/out" > "$tmp/out.rs"
  say ""
  say "== raw output (NUL shown as \\0), exit status $rc:"
  test "$check" = yes || awk 'BEGIN { RS = "\036" } { printf "%s\\0", $0 } END { print "" }' "$tmp/out.rs"
  say ""
  say "== what it means:"
  test "$check" = yes || awk 'BEGIN { RS = "\036"
    m["r"] = "recipient report: r (accepted)"; m["h"] = "recipient report: h (rejected for good)"
    m["s"] = "recipient report: s (rejected for now)"; m["K"] = "message report: K (delivered)"
    m["Z"] = "message report: Z (temporary failure, qmail will retry)"; m["D"] = "message report: D (permanent failure, qmail will bounce)" }
    { l = substr($0, 1, 1); t = substr($0, 2); sub(/\n$/, "", t); gsub(/\n/, " / ", t)
      printf "%s: %s\n", (l in m) ? m[l] : "garbage (" l ")", t }' "$tmp/out.rs"
}

say "== running, as qmail-rspawn would:"
say "   qmail-remote example.test sender@demo.example.test rcpt@example.test < message 2>&1"
say "   (control/smtproutes: example.test:[127.0.0.1]:$port, smtp-sink listening there)"
deliver "$home"

# verify DIR N: the verdict on the run that left its output in $tmp/out
# and its exit status in $rc, whose message the sink stored as DIR/N: exit
# 0, every report well formed (nothing after the last NUL), exactly one
# message report, K, last; the envelope as given and the body byte for byte
# with CRLF.
verify () {
  sd=$tmp/$1 n=$2
  test "$rc" = 0 || fail "qmail-remote exited $rc (qmail-rspawn needs 0)"
  test -s "$tmp/out" || fail "qmail-remote printed nothing"
  test "$(tail -c 1 "$tmp/out" | od -An -c | tr -d ' ')" = '\0' || fail "output does not end with NUL"
  letters=$(tr '\000' '\036' < "$tmp/out" | awk 'BEGIN { RS = "\036" } { printf "%s", substr($0, 1, 1) }')
  case "$letters" in
    rK) ;;
    *) fail "expected an r report and a K, got report letters \"$letters\": $(tr '\000' ' ' < "$tmp/out")" ;;
  esac
  test -f "$sd/$n.eml" || fail "the sink received no message"
  cmp -s "$tmp/expected" "$sd/$n.eml" || fail "the body the sink received differs from the message (CRLF) (cmp: $(cmp "$tmp/expected" "$sd/$n.eml" 2>&1))"
  grep -q '^MAIL FROM:<sender@demo.example.test>' "$sd/$n.env" || fail "wrong MAIL FROM: $(cat "$sd/$n.env")"
  grep -q '^RCPT TO:<rcpt@example.test>$' "$sd/$n.env" || fail "wrong RCPT TO: $(cat "$sd/$n.env")"
  test "$(grep -c '^RCPT' "$sd/$n.env")" = 1 || fail "not exactly one RCPT: $(cat "$sd/$n.env")"
  test ! -e "$sd/$((n + 1)).eml" || fail "the sink received the message twice"
}

awk '{ printf "%s\r\n", $0 }' "$tmp/message" > "$tmp/expected"
verify sink 1

say ""
say "== the sink received, envelope ($tmp/sink/1.env):"
test "$check" = yes || sed 's/^/   /' "$tmp/sink/1.env"
say "== and body (CR not shown):"
test "$check" = yes || tr -d '\r' < "$tmp/sink/1.eml" | sed 's/^/   /'
say ""
say "== OK: delivered, and the sink has the message byte for byte."

# The same under STARTTLS, verified (tlsstrictness 2).
say ""
say "== STARTTLS: a throwaway CA and a certificate for 127.0.0.1 (tools/mkcert)"
mkdir "$tmp/ca"
"$tmp/mkcert" -o "$tmp/ca" -ip 127.0.0.1 -dns sink.example.test || fail "tools/mkcert"
start_sink sink-tls -tls-cert "$tmp/ca/server.pem" -tls-key "$tmp/ca/server.key"
home_tls=$tmp/qmail-tls
mkdir -p "$home_tls/control" "$home_tls/queue/lock"
cp "$home/control/me" "$home/control/timeoutconnect" "$home/control/timeoutremote" "$home_tls/control/"
echo "example.test:[127.0.0.1]:$port" > "$home_tls/control/smtproutes"
echo "$tmp/ca/ca.pem" > "$home_tls/control/trustanchors"
echo 2 > "$home_tls/control/tlsstrictness"
say "   control/trustanchors: $tmp/ca/ca.pem (the throwaway CA)"
say "   control/tlsstrictness: 2 (verified TLS or nothing)"
say "   control/smtproutes: example.test:[127.0.0.1]:$port, smtp-sink with STARTTLS there"
deliver "$home_tls"
verify sink-tls 1
tlsline=$(tr '\000' '\n' < "$tmp/out" | grep '^TLS: ' || :)
case "$tlsline" in
  'TLS: TLSv1.'[23]' '*', certificate verified.') ;;
  *) fail "the K report has no \"TLS: ..., certificate verified.\" line: $(tr '\000' ' ' < "$tmp/out")" ;;
esac
sinktls=$(sed -n 's/^X-Sink-TLS: //p' "$tmp/sink-tls/1.env")
case "$sinktls" in
  TLSv1.[23]' '*) ;;
  *) fail "the sink did not receive the message under TLS: X-Sink-TLS: $sinktls" ;;
esac
say ""
say "== the K report's TLS line:"
say "   $tlsline"
say "== the sink recorded (X-Sink-TLS: version and cipher it negotiated):"
say "   $sinktls"
say ""
say "== OK: delivered under STARTTLS with a verified certificate."

if test "$check" = yes ; then
  # Second pass: the paths compiled in, no override at all. Build with the
  # qmail home, an explicit run directory and the prefix all inside $tmp,
  # install without DESTDIR (qmail-remote also into QMAILDIR/bin, over a
  # fake stock one that must be kept as qmail-remote.orig), and run that
  # copy with an empty environment: the stages must be where the binary
  # looks for them, and every -X must have landed.
  printf '#!/bin/sh\necho stock\n' > "$home/bin.orig"
  mkdir -p "$home/bin" && mv "$home/bin.orig" "$home/bin/qmail-remote"
  $MAKE -s --no-print-directory install BUILDDIR="$tmp/build2" PREFIX="$tmp/prefix" \
    EXEC_PREFIX="$tmp/prefix" BINDIR="$tmp/prefix/bin" LIBEXECDIR="$tmp/prefix/libexec/qmail-remote-go" \
    QMAILDIR="$home" QMAILRUNDIR="$tmp/run2" QMAIL_INSTALL=yes \
    QMAILR_UID="$(id -u)" QMAILR_GID="$(id -g)" DESTDIR= > "$tmp/make.log" 2>&1 \
    || { cat "$tmp/make.log" 1>&2 ; fail "make install with paths compiled in" ; }
  test "$(sh "$home/bin/qmail-remote.orig" 2>/dev/null)" = stock || fail "the previous QMAILDIR/bin/qmail-remote was not kept as qmail-remote.orig"
  rc=0
  ( cd / && env -i PATH=/usr/bin:/bin "$home/bin/qmail-remote" example.test sender@demo.example.test rcpt@example.test \
      < "$tmp/message" > "$tmp/out" 2>&1 ) || rc=$?
  verify sink 2
  test -f "$tmp/run2/qmail-remote/smtproutes.cdb" || fail "no smtproutes.cdb in the configured run directory $tmp/run2/qmail-remote"
  echo "check-install: OK (K reports, message received byte-exact, in cleartext and under verified STARTTLS through a DESTDIR install, and through an install with the paths compiled in)"
fi
exit 0
