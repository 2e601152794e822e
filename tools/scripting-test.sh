#!/bin/sh
#
# tools/scripting-test.sh: runs the recipes of doc/scripting.md, as written
# there, against local test servers, and checks what they print, so that
# the page cannot rot.
#
# A recipe is a fenced code block (```sh or ```bash) right after a line
# "<!-- recipe: NAME -->". Each is extracted into a file and run by sh (or
# bash) in a fresh directory, with the environment the page tells the
# reader to set: PATH with build/ first (the programs, as `make` leaves
# them), QMAILREMOTE_LIBEXECDIR=build, a throwaway qmail home whose
# control/smtproutes routes relay.example.test to the sink, DNSCACHEIP at
# tools/dnszone serving example.test, $server and $port the sink
# (tools/smtp-sink, with STARTTLS and a certificate from tools/mkcert for
# mx1.example.test and 127.0.0.2), $cafile its throwaway CA. Every recipe
# of the page must have a check here, and every check a recipe.
#
# Loopback and documentation names only; nothing leaves the machine.
# Exits 0 when every recipe passed, 1 with a message otherwise.
# Assumes `make` ran (runs it when build/qmail-remote is missing).
# SCRIPTING_TEST_VERBOSE=1 shows each recipe's exit status and time.

set -eu

cd "$(dirname "$0")/.."
root=$(pwd)
MAKE=${MAKE:-make}
LC_ALL=C
export LC_ALL

fail () { echo "scripting-test: FAILED: $*" 1>&2 ; exit 1 ; }

if ! test -x build/qmail-remote ; then
  $MAKE -s --no-print-directory all || fail "make all"
fi
for p in qmail-remote qmail-remote-probe qmail-remote-routes qmail-remote-resolve \
         qmail-remote-connect qmail-remote-io qmail-remote-tlsio ; do
  test -x "build/$p" || fail "build/$p is missing: run make"
done

NAME=scripting
. tools/lib.sh
# Clean up (stop the servers, remove $tmp) also when our output goes to a
# pipe that closes (sh tools/scripting-test.sh | head).
trap 'exit 1' PIPE

CGO_ENABLED=0 "$GO" build -trimpath -o "$tmp/" ./tools/smtp-sink ./tools/mkcert ./tools/dnszone \
  || fail "building tools/smtp-sink, tools/mkcert and tools/dnszone"

# wait_addr FILE LOG WHAT: wait (at most about 30 s) for a server's first
# line, its address.
wait_addr () {
  i=0
  while ! test -s "$1" ; do
    i=$((i + 1))
    test $i -le 300 || fail "$3 did not start: $(cat "$2")"
    sleep 0.1 2>/dev/null || sleep 1
  done
}

# The sink, with STARTTLS.
mkdir "$tmp/ca" "$tmp/sink"
"$tmp/mkcert" -o "$tmp/ca" -ip 127.0.0.2 -dns mx1.example.test > "$tmp/mkcert.log" 2>&1 \
  || fail "tools/mkcert: $(cat "$tmp/mkcert.log")"
"$tmp/smtp-sink" -l 127.0.0.2:0 -o "$tmp/sink" -t 120 \
  -tls-cert "$tmp/ca/server.pem" -tls-key "$tmp/ca/server.key" > "$tmp/sink.addr" 2> "$tmp/sink.log" &
sinkpids="$sinkpids $!"
wait_addr "$tmp/sink.addr" "$tmp/sink.log" smtp-sink
sport=$(sed -n '1s/.*://p' "$tmp/sink.addr")

# The DNS: example.test has two MX; mx2's address has no server.
"$tmp/dnszone" -l 127.0.0.1:0 \
  'example.test. 300 IN MX 10 mx1.example.test.' \
  'example.test. 300 IN MX 20 mx2.example.test.' \
  'mx1.example.test. 300 IN A 127.0.0.2' \
  'mx2.example.test. 300 IN A 127.0.0.3' \
  > "$tmp/dns.addr" 2> "$tmp/dns.log" &
sinkpids="$sinkpids $!"
wait_addr "$tmp/dns.addr" "$tmp/dns.log" tools/dnszone
dnsaddr=$(sed -n 1p "$tmp/dns.addr")

# The qmail home the routes recipes read (QMAILREMOTE_QMAILHOME).
home=$tmp/qmail
mkdir -p "$home/control" "$home/queue/lock" "$home/run"
echo client.example.test > "$home/control/me"
echo "relay.example.test:[127.0.0.2]:$sport" > "$home/control/smtproutes"
echo "@example.net:[127.0.0.2]:$sport" > "$home/control/senderroutes"

# The environment of the recipes: nothing QMAILREMOTE_* of the caller.
for v in $(env | sed -n 's/^\(QMAILREMOTE_[A-Za-z0-9_]*\)=.*/\1/p') ; do
  unset "$v"
done
PATH=$root/build:$PATH
QMAILREMOTE_LIBEXECDIR=$root/build
QMAILREMOTE_QMAILHOME=$home
QMAILREMOTE_QMAILRUN=$home/run
DNSCACHEIP=$dnsaddr
TMPDIR=$tmp/scratch
server=127.0.0.2
port=$sport
cafile=$tmp/ca/ca.pem
mkdir "$TMPDIR"
export PATH QMAILREMOTE_LIBEXECDIR QMAILREMOTE_QMAILHOME QMAILREMOTE_QMAILRUN DNSCACHEIP TMPDIR server port cafile

# Extract the recipes: $tmp/recipes/NAME.sh or NAME.bash, and their names
# in order in $tmp/recipes.list.
mkdir "$tmp/recipes"
awk -v dir="$tmp/recipes" '
  function bad(msg) { printf "doc/scripting.md line %d: %s\n", NR, msg > "/dev/stderr"; err = 1; exit 1 }
  state == 0 && /^<!-- recipe: [a-z0-9-]+ -->$/ {
    name = $3; state = 1; next }
  state == 1 {
    if ($0 !~ /^```(sh|bash)$/) bad("recipe " name " is not followed by a ```sh or ```bash block")
    lang = substr($0, 4)
    if (name in seen) bad("recipe " name " twice")
    seen[name] = 1
    file = dir "/" name "." lang
    print name "." lang > (dir "/../recipes.list")
    state = 2; next }
  state == 2 && /^```$/ { close(file); state = 0; next }
  state == 2 { print > file; next }
  /<!-- recipe:/ { bad("malformed recipe marker: " $0) }
  END { if (!err && state != 0) bad("recipe " name " is not closed") }
' doc/scripting.md || fail "extracting the recipes from doc/scripting.md"
test -s "$tmp/recipes.list" || fail "doc/scripting.md has no recipes"

# Each recipe gets at most 300 s (it takes well under one), where
# timeout(1) exists.
bound=
if command -v timeout > /dev/null 2>&1 ; then bound="timeout 300" ; fi
command -v bash > /dev/null 2>&1 || fail "bash is needed for the bash recipes"

# run NAME.LANG: run the recipe in a fresh directory, bounded in time;
# its stdout in $out (a file), stderr in $tmp/err, exit status in $rc.
run () {
  rname=${1%.*} lang=${1##*.}
  out=$tmp/out.$rname
  rdir=$tmp/run.$rname
  mkdir "$rdir"
  case $lang in
    sh) shell="sh" ;;
    bash) shell="bash" ;;
  esac
  rc=0
  ( cd "$rdir" && $bound "$shell" "$tmp/recipes/$1" ) > "$out" 2> "$tmp/err" < /dev/null || rc=$?
}

# bad MSG: the recipe failed; show what it printed.
bad () {
  {
    echo "scripting-test: FAILED: recipe $rname (doc/scripting.md): $*"
    echo "--- the recipe:"
    cat "$tmp/recipes/$rname.$lang"
    echo "--- its stdout (exit status $rc; NUL shown as ^@):"
    cat -v "$out"

    echo "--- its stderr:"
    cat "$tmp/err"
  } 1>&2
  exit 1
}

# want LINE...: each LINE must be a whole line of the output, in this order
# (other lines may come between).
want () {
  awk -v n="$#" 'BEGIN { for (i = 1; i < ARGC; i++) w[i] = ARGV[i]; ARGC = 1; k = 1 }
    k <= n && $0 == w[k] { k++ }
    END { if (k <= n) { print w[k]; exit 1 } }' "$@" < "$out" > "$tmp/missing" \
    || bad "expected the line \"$(cat "$tmp/missing")\" (in this order: $*)"
}
# want_re ERE: some line matches.
want_re () { grep -Eq -- "$1" "$out" || bad "expected a line matching /$1/" ; }
# lines N: exactly N lines of output.
lines () { test "$(wc -l < "$out" | tr -d ' ')" = "$1" || bad "expected exactly $1 lines of output" ; }
exit0 () { test "$rc" = 0 || bad "exit status $rc, not 0" ; }
quiet () { test ! -s "$tmp/err" || bad "it wrote on stderr" ; }

# received N WHAT: the sink has stored message N, and no message N+1.
received () {
  test -f "$tmp/sink/$1.env" || bad "the sink did not receive $2"
  grep -q '^RCPT TO:<rcpt@example.test>$' "$tmp/sink/$1.env" || bad "$2: wrong RCPT: $(cat "$tmp/sink/$1.env")"
  test ! -e "$tmp/sink/$(($1 + 1)).env" || bad "the sink received more than $2"
}

ran=0 skipped=
start=$(date +%s)
while read -r recipe ; do
  t0=$(date +%s)
  run "$recipe"
  test -z "${SCRIPTING_TEST_VERBOSE-}" || echo "scripting-test: $rname: exit $rc, $(($(date +%s) - t0)) s"
  case $rname in
    mx)
      exit0 ; quiet ; lines 2
      want "mx1.example.test/127.0.0.2" "mx2.example.test/127.0.0.3" ;;
    mx-or-report)
      exit0 ; quiet ; lines 1
      want "no candidates; the resolver says: DSorry, I couldn't find any host named nowhere.example.test. (#5.1.2)" ;;
    route)
      exit0 ; quiet ; lines 4
      want "example.test: relay none (MX lookup), port 25, auth none" \
           "example.test: connect to port 25 of mx1.example.test/127.0.0.2 mx2.example.test/127.0.0.3" \
           "relay.example.test: relay [127.0.0.2], port $port, auth none" \
           "relay.example.test: connect to port $port of [127.0.0.2]/127.0.0.2" ;;
    sender-route)
      exit0 ; quiet ; lines 3
      want "<alice@example.net>: relay [127.0.0.2], port $port, by <@example.net>" \
           "<bob@example.org>: relay none (MX lookup), port 25, by smtproutes" \
           "<>: relay none (MX lookup), port 25, by smtproutes" ;;
    deliver)
      exit0 ; quiet
      want "r" "K127.0.0.2 accepted message." "Remote host said: 250 2.0.0 ok 1"
      received 1 "the message of recipe deliver"
      grep -q '^X-Sink-TLS: no$' "$tmp/sink/1.env" || bad "the message went under TLS without trust anchors"
      printf 'From: sender@example.org\r\nTo: rcpt@example.test\r\nSubject: a test delivery\r\n\r\nHello.\r\n' > "$tmp/expected"
      cmp -s "$tmp/expected" "$tmp/sink/1.eml" || bad "the sink received another body: $(cat "$tmp/sink/1.eml")" ;;
    stages)
      exit0 ; quiet
      want "r" "K127.0.0.2 accepted message." "Remote host said: 250 2.0.0 ok 2"
      received 2 "the message of recipe stages" ;;
    io)
      exit0 ; quiet
      want "exit 0" "r" "K127.0.0.2 accepted message." "Remote host said: 250 2.0.0 ok 3"
      received 3 "the message of recipe io" ;;
    tls-probe)
      exit0 ; quiet
      want "exit 0" "== mx1.example.test [127.0.0.2] MX 10"
      want_re '^TLS: +TLSv1\.[23] [A-Z0-9_]+, SNI mx1\.example\.test$'
      want_re '^  PKIX: +pass \(PKIX\): the chain verifies against control/trustanchors, for mx1\.example\.test$'
      want_re '^verdict: +deliver with TLS, verified by PKIX$'
      want "== mx2.example.test [127.0.0.3] MX 20"
      want_re '^verdict: +not use this host: Connection to 127\.0\.0\.3 refused'
      test "$(grep -c '^verdict:' "$out")" = 2 || bad "expected two verdicts"
      test ! -e "$tmp/sink/4.env" || bad "the probe sent a message" ;;
    tls-probe-json)
      if ! command -v jq > /dev/null 2>&1 ; then
        skipped="$skipped $rname(no jq)" ; continue
      fi
      exit0 ; quiet ; lines 1
      want_re '^mx1\.example\.test 127\.0\.0\.2 TLSv1\.[23] pass tls-unverified$' ;;
    tls-stages)
      exit0 ; quiet
      want "r" "K127.0.0.2 accepted message." "Remote host said: 250 2.0.0 ok 4"
      want_re '^TLS: TLSv1\.[23] [A-Z0-9_]+, certificate verified\.$'
      received 4 "the message of recipe tls-stages"
      grep -q '^X-Sink-TLS: TLSv1\.[23] ' "$tmp/sink/4.env" || bad "the sink did not receive the message under TLS" ;;
    reports)
      exit0 ; quiet ; lines 7
      want "exit 0" \
           "   .   1   .   2   )  \\0" \
           "D	Sorry, I couldn't find any host named nowhere.example.test. (#5.1.2)" \
           "permanent failure: qmail would bounce" \
           "exit 0" \
           "Z	Sorry, I wasn't able to establish an SMTP connection. (#4.4.1) / No address to connect to." \
           "temporary failure: qmail would try again later" ;;
    reports-bash)
      exit0 ; quiet ; lines 1
      want "letter D, first line: Sorry, I couldn't find any host named nowhere.example.test. (#5.1.2)" ;;
    exit-codes)
      exit0 ; quiet ; lines 4
      want "no program to run: exit 100" "bad DNSCACHEIP: exit 100" \
           "exec'd into a program that exits 7: exit 7" \
           "qmail-remote given a pipe (a Z report): exit 0" ;;
    *)
      bad "no check for this recipe in tools/scripting-test.sh" ;;
  esac
  ran=$((ran + 1))
done < "$tmp/recipes.list"

for r in mx mx-or-report route sender-route deliver stages io tls-probe tls-probe-json tls-stages reports reports-bash exit-codes ; do
  grep -q "^$r\." "$tmp/recipes.list" || fail "doc/scripting.md has no recipe $r (tools/scripting-test.sh checks one)"
done
test ! -e "$tmp/sink/5.env" || fail "the sink received more messages than the recipes send"

echo "scripting-test: OK ($ran recipes of doc/scripting.md ran and printed what the page says, in $(($(date +%s) - start)) s)${skipped:+; skipped:$skipped}"
