#!/bin/sh
#
# tools/bench.sh: whole deliveries through the INSTALLED chain (a DESTDIR
# installation made by this script) against tools/smtp-sink -discard on
# loopback, each compared with tools/smtp-copy, the least a client can do,
# measured in the same run against the same sink. Output: "name: value
# unit" lines. doc/bench.md says what every figure means.
#
# Environment: N (small deliveries per timing, default 20), BIG_MB (size
# of the big message, default 200), COPIES (concurrent deliveries, default
# 100), RUNS (pairs of big deliveries, chain then copy, default 9),
# SECTIONS (default "startup throughput memory concurrency init sizes":
# any subset, in that order), REALEXEC (1: every delivery through the
# chain runs with QMAILREMOTE_REALEXEC=1, every stage a process of its
# own; default 0, the chain as it runs by default).

set -eu

cd "$(dirname "$0")/.."
MAKE=${MAKE:-make}
N=${N:-20}
BIG_MB=${BIG_MB:-200}
COPIES=${COPIES:-100}
REALEXEC=${REALEXEC:-0}
SECTIONS=${SECTIONS:-startup throughput memory concurrency init sizes}
LC_ALL=C
export LC_ALL
fail () { echo "bench: FAILED: $*" 1>&2 ; exit 1 ; }
for v in "$N" "$BIG_MB" "$COPIES" "${RUNS:-9}" ; do
  case "$v" in ''|*[!0-9]*|0) fail "N, BIG_MB, COPIES and RUNS are positive numbers" ;; esac
done
case "$REALEXEC" in
  0) mode=in-process ;;
  1) mode=realexec ;;
  *) fail "REALEXEC is 0 or 1" ;;
esac
want () { case " $SECTIONS " in *" $1 "*) return 0 ;; esac ; return 1 ; }

NAME=bench
. tools/lib.sh
echo "mode: $mode"

quiet_make all
quiet_make install DESTDIR="$tmp/dest"
dest=$tmp/dest
bin=$dest$BINDIR
libexec=$dest$LIBEXECDIR
CGO_ENABLED=0 "$GO" build -trimpath -o "$tmp/" ./tools/smtp-sink ./tools/runstat ./tools/mkcert ./tools/smtp-copy || fail "building tools"
# The start-up yardstick, static and stripped like the real binaries.
CGO_ENABLED=0 "$GO" build -trimpath -ldflags '-s -w' -o "$tmp/nop" ./tools/nop || fail "building tools/nop"
runstat=$tmp/runstat
copy=$tmp/smtp-copy
true=$(command -v true)
cat=$(command -v cat)

# start_sink NAME [options]: a discarding sink that counts round trips
# (run_sink, tools/lib.sh).
start_sink () { sname=$1 ; shift ; run_sink "$sname" -discard -turns "$@" ; }

mkdir "$tmp/ca"
"$tmp/mkcert" -o "$tmp/ca" -ip 127.0.0.1 || fail "tools/mkcert"
start_sink sink-tls -tls-cert "$tmp/ca/server.pem" -tls-key "$tmp/ca/server.key"
tlsaddr=$addr tlsport=$port tlssink=$sinkpid
start_sink sink
sink=$sinkpid

# Two qmail homes: cleartext, and verified STARTTLS (tlsstrictness 2).
home=$tmp/qmail
home_tls=$tmp/qmail-tls
for h in "$home" "$home_tls" ; do
  mkdir -p "$h/control" "$h/queue/lock"
  echo bench.example.test > "$h/control/me"
done
echo "example.test:[127.0.0.1]:$port" > "$home/control/smtproutes"
echo "example.test:[127.0.0.1]:$tlsport" > "$home_tls/control/smtproutes"
echo "$tmp/ca/ca.pem" > "$home_tls/control/trustanchors"
echo 2 > "$home_tls/control/tlsstrictness"

# The messages, as qmail has them (LF line ends), and their wire form
# (CRLF, no line starts with a dot, the final dot line) for smtp-copy.
awk 'BEGIN { printf "From: a@bench.example.test\nTo: b@example.test\nSubject: bench\n\n"
  for (i = 0; i < 12; i++) printf "%075d\n", i }' > "$tmp/small"
wire () { awk '{ printf "%s\r\n", $0 } END { printf ".\r\n" }' "$1" > "$1.wire" ; }
wire "$tmp/small"
smallbytes=$(wc -c < "$tmp/small" | tr -d ' ')

# A spy libexec: each stage records its environment, then execs the real one.
mkdir "$tmp/spy" "$tmp/spy-tls" "$tmp/env" "$tmp/env-tls" "$tmp/stub"
for p in $(cfg LIBEXEC_TARGETS) ; do
  printf '#!/bin/sh\nexec "%s" -dump "%s" "%s" "$@"\n' "$runstat" "$tmp/env/$p" "$libexec/$p" > "$tmp/spy/$p"
  printf '#!/bin/sh\nexec "%s" -dump "%s" "%s" "$@"\n' "$runstat" "$tmp/env-tls/$p" "$libexec/$p" > "$tmp/spy-tls/$p"
  chmod 0755 "$tmp/spy/$p" "$tmp/spy-tls/$p"
  ln -s "$true" "$tmp/stub/$p"
done

# With REALEXEC=1 every run of the chain gets QMAILREMOTE_REALEXEC=1.
realexec=
test "$REALEXEC" = 0 || realexec=QMAILREMOTE_REALEXEC=1
run () { # run LIBEXECDIR runstat-options...
  lx=$1 ; shift
  env $realexec QMAILREMOTE_QMAILHOME="${qhome:-$home}" QMAILREMOTE_QMAILRUN="$dest$QMAILRUNDIR" QMAILREMOTE_LIBEXECDIR="$lx" \
    "$runstat" -i "${msg:-$tmp/small}" "$@" "$bin/qmail-remote" example.test a@bench.example.test b@example.test
}
# get NAME FILE: the value of "NAME: value unit" in FILE.
get () { sed -n "s/^$1: \([0-9.]*\).*/\1/p" "$2" ; }
# ratio NAME A B UNIT: prints NAME: A/B.
ratio () { awk -v a="$2" -v b="$3" -v n="$1" -v u="$4" 'BEGIN { printf "%s: %.2f %s\n", n, a / b, u }' ; }
diffms () { awk -v a="$2" -v b="$3" -v n="$1" 'BEGIN { printf "%s: %.2f ms\n", n, a - b }' ; }
# turns SINKLOG: round trips of the last session in a sink's log.
turns () { sed -n 's/^smtp-sink: session turns=\([0-9]*\).*/\1/p' "$1" | tail -1 ; }

# One delivery through the spies each (also compiles smtproutes.cdb and
# warms the caches); the sink logs its round trips.
run "$tmp/spy" -expect K -name capture > /dev/null || fail "delivery through the spy stages"
echo "roundtrips_cleartext: $(turns "$tmp/sink.log") round trips"
qhome=$home_tls run "$tmp/spy-tls" -expect K -name capture > /dev/null || fail "delivery through the spy stages under STARTTLS"
echo "roundtrips_tls: $(turns "$tmp/sink-tls.log") round trips"
"$copy" -a "$addr" "$tmp/small.wire" || fail "smtp-copy"
echo "roundtrips_client_cleartext: $(turns "$tmp/sink.log") round trips"
"$copy" -a "$tlsaddr" -tls -ca "$tmp/ca/ca.pem" "$tmp/small.wire" || fail "smtp-copy -tls"
echo "roundtrips_client_tls: $(turns "$tmp/sink-tls.log") round trips"
wirebytes=$(tr '\0' '\n' < "$tmp/env/qmail-remote-routes" | sed -n 's/^QMAILREMOTE_MSGBYTES=//p')
test "$wirebytes" = "$(wc -c < "$tmp/small.wire" | tr -d ' ')" || fail "the wire form ($(wc -c < "$tmp/small.wire") bytes) is not what the chain sends ($wirebytes bytes)"

# --- Start-up: one small delivery, the chain vs one warm in-process client.
if want startup ; then
  echo "message_small: $smallbytes bytes"
  run "$libexec" -n "$N" -expect K -name delivery > "$tmp/s1" || fail "timed deliveries"
  "$copy" -a "$addr" -n "$N" -name client "$tmp/small.wire" > "$tmp/s2" || fail "smtp-copy -n"
  qhome=$home_tls run "$libexec" -n "$N" -expect K -name delivery_tls > "$tmp/s3" || fail "timed deliveries under STARTTLS"
  "$copy" -a "$tlsaddr" -tls -ca "$tmp/ca/ca.pem" -n "$N" -name client_tls "$tmp/small.wire" > "$tmp/s4" || fail "smtp-copy -tls -n"
  grep -v '_runs:' "$tmp/s1" "$tmp/s2" "$tmp/s3" "$tmp/s4" | sed 's/^[^:]*://'
  diffms startup_overhead "$(get delivery_ms_median "$tmp/s1")" "$(get client_ms_median "$tmp/s2")"
  ratio startup_ratio "$(get delivery_ms_median "$tmp/s1")" "$(get client_ms_median "$tmp/s2")" "chain/client"
  diffms startup_overhead_tls "$(get delivery_tls_ms_median "$tmp/s3")" "$(get client_tls_ms_median "$tmp/s4")"
  ratio startup_ratio_tls "$(get delivery_tls_ms_median "$tmp/s3")" "$(get client_tls_ms_median "$tmp/s4")" "chain/client"
  # The yardstick of CPU: fork+exec+exit of tools/nop, a static Go binary
  # that does nothing; 5*N runs, since each is tiny. cpu_ratio: how many
  # such start-ups a whole delivery costs.
  "$runstat" -n "$((5 * N))" -name nop "$tmp/nop" > "$tmp/s5" || fail "tools/nop"
  nopcpu=$(get nop_cpu_ms_median "$tmp/s5")
  echo "nop_ms: $(get nop_ms_median "$tmp/s5") ms"
  echo "nop_cpu_ms: $nopcpu ms"
  awk -v c="$nopcpu" 'BEGIN { exit !(c > 0) }' || fail "the CPU time of tools/nop measured as $nopcpu ms"
  ratio cpu_ratio "$(get delivery_cpu_ms_median "$tmp/s1")" "$nopcpu" "chain/nop"
  ratio cpu_ratio_tls "$(get delivery_tls_cpu_ms_median "$tmp/s3")" "$nopcpu" "chain/nop"
  # The floor for a Go client: tools/smtp-copy doing one delivery per
  # process (start-up, connect, the same SMTP exchange, exit), on the same
  # scale. What the chain costs above it is the chain's own work.
  "$runstat" -n "$N" -name copy_one "$copy" -a "$addr" "$tmp/small.wire" > "$tmp/s6" || fail "smtp-copy, one per process"
  "$runstat" -n "$N" -name copy_one_tls "$copy" -a "$tlsaddr" -tls -ca "$tmp/ca/ca.pem" "$tmp/small.wire" > "$tmp/s7" || fail "smtp-copy -tls, one per process"
  echo "copy_one_cpu_ms: $(get copy_one_cpu_ms_median "$tmp/s6") ms"
  echo "copy_one_tls_cpu_ms: $(get copy_one_tls_cpu_ms_median "$tmp/s7") ms"
  ratio cpu_ratio_copy_one "$(get copy_one_cpu_ms_median "$tmp/s6")" "$nopcpu" "copy/nop"
  ratio cpu_ratio_copy_one_tls "$(get copy_one_tls_cpu_ms_median "$tmp/s7")" "$nopcpu" "copy/nop"
fi

# --- Throughput: the big message, the chain vs smtp-copy of its wire
# form, alternating, RUNS pairs of runs (default 9). The ratios are the
# median of the pairs' ratios (see below) and that of the fastest runs;
# the MB/s the fastest run of each kind.
if want throughput || want memory ; then
  lines=$((BIG_MB * 1048576 / 77))
  awk -v n="$lines" 'BEGIN { printf "From: a@bench.example.test\nTo: b@example.test\nSubject: big\n\n"
    l = sprintf("%076d", 0); for (i = 0; i < n; i++) print l }' > "$tmp/big"
  bigbytes=$(wc -c < "$tmp/big" | tr -d ' ')
  echo "message_big: $bigbytes bytes"
fi
if want throughput ; then
  wire "$tmp/big"
  : > "$tmp/t"
  i=0
  while test $i -lt "${RUNS:-9}" ; do
    i=$((i + 1))
    msg=$tmp/big run "$libexec" -expect K -name chain >> "$tmp/t" || fail "big delivery"
    "$runstat" -name copy "$copy" -a "$addr" "$tmp/big.wire" >> "$tmp/t" || fail "big smtp-copy"
    msg=$tmp/big qhome=$home_tls run "$libexec" -expect K -name chain_tls >> "$tmp/t" || fail "big delivery under STARTTLS"
    "$runstat" -name copy_tls "$copy" -a "$tlsaddr" -tls -ca "$tmp/ca/ca.pem" "$tmp/big.wire" >> "$tmp/t" || fail "big smtp-copy -tls"
  done
  for w in chain copy chain_tls copy_tls ; do
    m=$(sed -n "s/^${w}_ms_median: \([0-9.]*\) ms/\1/p" "$tmp/t" | sort -n | sed -n 1p)
    c=$(sed -n "s/^${w}_cpu_ms_median: \([0-9.]*\) ms/\1/p" "$tmp/t" | sort -n | sed -n 1p)
    eval "ms_$w=\$m"
    awk -v b="$bigbytes" -v ms="$m" -v w="$w" 'BEGIN { printf "throughput_%s: %.1f MB/s\n", w, b / 1048576 / (ms / 1000) }'
    echo "cpu_ms_$w: $c ms"
  done
  # The pre-scan alone: qmail-remote with its stages replaced by true(1)
  # (start-up included, about 2 ms).
  msg=$tmp/big run "$tmp/stub" -n "${RUNS:-9}" -name prescan > "$tmp/p" || fail "pre-scan"
  echo "prescan_ms: $(get prescan_ms_median "$tmp/p") ms"
  echo "prescan_cpu_ms: $(get prescan_cpu_ms_median "$tmp/p") ms"
  # The ratios: of each pair of runs made one after the other (chain,
  # then copy), the median; and of the fastest runs. The machine's noise
  # comes in bursts that slow both runs of a pair alike, so the paired
  # median moves much less from one bench to the next than the fastest.
  for w in "" _tls ; do
    sed -n "s/^\(chain${w}\|copy${w}\)_ms_median: \([0-9.]*\) ms/\1 \2/p" "$tmp/t" |
      awk -v n="throughput_ratio$w" '$1 ~ /^chain/ { c = $2 ; next } { r[k++] = $2 / c }
        END { for (i = 0; i < k; i++) for (j = i + 1; j < k; j++) if (r[j] < r[i]) { t = r[i]; r[i] = r[j]; r[j] = t }
          printf "%s: %.2f chain/copy (median of %d pairs; from %.2f to %.2f)\n", n, (r[int((k - 1) / 2)] + r[int(k / 2)]) / 2, k, r[0], r[k - 1] }'
  done
  ratio throughput_ratio_fastest "$ms_copy" "$ms_chain" "chain/copy"
  ratio throughput_ratio_fastest_tls "$ms_copy_tls" "$ms_chain_tls" "chain/copy"
  rm -f "$tmp/big.wire"
fi

# --- Memory: each program alone (see doc/bench.md), 1 KB and big message.
if want memory ; then
  for size in small big ; do
    m=$tmp/$size
    msg=$m run "$tmp/stub" -n 1 -name "rss_${size}_qmail-remote" | grep _maxrss:
    for p in qmail-remote-routes qmail-remote-resolve qmail-remote-connect ; do
      "$runstat" -i "$m" -e "$tmp/env/$p" -name "rss_${size}_$p" "$libexec/$p" "$true" | grep _maxrss:
    done
    "$runstat" -i "$m" -e "$tmp/env/qmail-remote-io" -fd67 "$addr" -expect K -name "rss_${size}_qmail-remote-io" "$libexec/qmail-remote-io" | grep _maxrss:
    # tls-io spawns its application: ru_maxrss would include it, so
    # its own peak is sampled (VmHWM). The application is the real
    # qmail-remote-io, sending the message through it.
    "$runstat" -hwm -i "$m" -e "$tmp/env-tls/qmail-remote-tlsio" -fd67 "$tlsaddr" -starttls -expect K -name "tls_${size}" \
      "$libexec/qmail-remote-tlsio" "$libexec/qmail-remote-io" > "$tmp/m" || fail "qmail-remote-tlsio alone"
    echo "rss_${size}_qmail-remote-tlsio: $(get "tls_${size}_hwm" "$tmp/m") kB"
  done | sed 's/_maxrss:/:/' > "$tmp/mem"
  cat "$tmp/mem"
  # The table's verdict: every program at most 10 MB, and within 1 MB
  # between the two sizes.
  awk '{ n = $1; sub(/^rss_/, "", n); sub(/:$/, "", n); s = n; sub(/_.*/, "", s); p = n; sub(/^[a-z]*_/, "", p)
         v[s, p] = $2; progs[p] = 1 }
    END { worst = 0; spread = 0
      for (p in progs) { worst = (v["small", p] > worst) ? v["small", p] : worst; worst = (v["big", p] > worst) ? v["big", p] : worst
        d = v["big", p] - v["small", p]; if (d < 0) d = -d; if (d > spread) spread = d }
      printf "rss_max: %d kB\nrss_max_growth: %d kB\n", worst, spread }' "$tmp/mem"
  # A whole delivery through the installed chain, all its processes,
  # from /proc, sampled every 2 ms: the peak of the process started
  # (VmHWM; of its largest image if it execs) and the peak of the VmRSS
  # summed over its process tree (stages that are processes of their own
  # at the same time). The figure is the larger of the two, the peak
  # over 5 runs of the small message and 2 of the big one. ru_maxrss
  # from wait4 is shown too, but it cannot go below runstat's own peak
  # (the floor, see tools/runstat), which it is close to here.
  for t in "" _tls ; do
    for size in small big ; do
      r=5
      test $size = small || r=2
      h=$home
      test -z "$t" || h=$home_tls
      (msg=$tmp/$size qhome=$h run "$libexec" -n $r -hwm -tree -expect K -name d > "$tmp/dr") || fail "delivery of the $size message$t (rss)"
      top=$(get d_hwm "$tmp/dr")
      sum=$(get d_tree_rss "$tmp/dr")
      v=$top
      test "$sum" -le "$top" || v=$sum
      echo "rss_delivery${t}_$size: $v kB (top process $top kB, process tree $sum kB; ru_maxrss $(get d_maxrss "$tmp/dr") kB, floor $(get d_maxrss_floor "$tmp/dr") kB)"
    done
  done > "$tmp/d"
  cat "$tmp/d"
  echo "rss_delivery_max: $(sed 's/^[^:]*: \([0-9]*\) .*/\1/' "$tmp/d" | sort -n | tail -1) kB"
  rm -f "$tmp/big"
fi

# --- Concurrency: COPIES deliveries at once to one sink.
if want concurrency ; then
  fds () { ls "/proc/$1/fd" | wc -l | tr -d ' ' ; }
  before=$(fds "$sink")
  run "$libexec" -c "$COPIES" -expect K -name concurrent > "$tmp/c" || { cat "$tmp/c" ; fail "concurrent deliveries" ; }
  grep -v _copies: "$tmp/c"
  awk -v t="$(get concurrent_cpu_ms_total "$tmp/c")" -v n="$COPIES" 'BEGIN { printf "concurrent_cpu_ms_per_delivery: %.2f ms\n", t / n }'
  sleep 0.5
  echo "sink_fds_before: $before fds"
  echo "sink_fds_after: $(fds "$sink") fds"
  test "$(fds "$sink")" -le "$((before + 1))" || fail "the sink still holds connections: something leaked a descriptor"
fi

# --- Init: GODEBUG=inittrace=1, each program alone, clock of all inits.
if want init ; then
  it () { # it NAME: sums the inittrace lines of $tmp/it
    awk -v n="$1" '/^init / { t += $5; if ($5 > top) { top = $5; pk = $2 } }
      END { printf "init_%s: %.3f ms (largest: %s %.3f ms)\n", n, t, pk, top }' "$tmp/it"
  }
  # Package inits run before main, so a run that stops at once (no
  # arguments, empty environment) shows them all.
  for p in $(cfg BIN_TARGETS) $(cfg LIBEXEC_TARGETS) ; do
    d=$libexec
    case " $(cfg BIN_TARGETS) " in *" $p "*) d=$bin ;; esac
    env -i GODEBUG=inittrace=1 "$d/$p" < /dev/null > /dev/null 2> "$tmp/it" || :
    it "$p"
  done
fi

if want sizes ; then
  for p in $(cfg BIN_TARGETS) ; do
    echo "size_$p: $(wc -c < "$bin/$p" | tr -d ' ') bytes"
  done
  for p in $(cfg LIBEXEC_TARGETS) ; do
    echo "size_$p: $(wc -c < "$libexec/$p" | tr -d ' ') bytes"
  done
fi
