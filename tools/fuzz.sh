#!/bin/sh
#
# tools/fuzz.sh: runs every Go fuzz target of the repository (each
# `func FuzzXxx(f *testing.F)` in a *_test.go under src/ and tools/), one
# after another, each for FUZZTIME (default 10s; any -fuzztime value, such
# as 30s or 5000x). `make fuzz` runs it.
#
# go test fuzzes one target of one package per run, and -fuzz is a regular
# expression: FuzzParse would also match FuzzParseEHLO, and a pattern that
# matches two targets of one package makes go test refuse to fuzz. So each
# target gets its own run, anchored: -fuzz='^FuzzParse$'.
#
# What the fuzzer finds stays where Go puts it: an input that fails goes
# to the package's testdata/fuzz/FuzzXxx/ (plain `go test`, hence `make
# check`, then runs it as a regression case: commit it with the fix); the
# inputs that merely widened coverage go to the fuzz cache ($GOCACHE/fuzz),
# where the next run starts from them. With FUZZKEEP=yes those are also
# copied into testdata/fuzz/FuzzXxx/, to be committed as seeds.
#
# Each input that widens coverage is minimized before fuzzing goes on, for
# up to FUZZMINIMIZETIME (default 5s; go test's own default is 60s). With
# 60s a worker that found a new input of a few KiB spent the rest of a 30 s
# run minimizing it (FuzzBody: 11 thousand executions in 30 s, all in the
# first 3; with 5s, 58 thousand in 15 s and 9 new inputs). A failing input
# is saved whether or not its minimization finished.
#
# When go test fails, the script tells three cases apart:
#
# - A found crash: go test wrote a failing input during this run (a file
#   new in testdata/fuzz/FuzzXxx/, or named by its "Failing input written
#   to ..." line). Always a failure. The message names the input files
#   that exist, and only those.
# - A failure of the fuzzing engine, not of the code: no failing input was
#   written, and go test's error is one of the engine's own ("context
#   deadline exceeded", a race between -fuzztime's deadline and the
#   workers in Go before 1.27, golang.org/issue/75804, which a loaded
#   machine makes likelier; a worker killed by a signal, which records no
#   crash; a worker that could not be started or reached). The target is
#   run once more. If the retry fails the same way, that is a note, not a
#   failure: nothing was found, and the engine's trouble is no reason to
#   fail a build. The summary lists such targets (they may have been
#   fuzzed for less than FUZZTIME).
# - A seed that fails (an input of testdata/fuzz/FuzzXxx/, such as one
#   found by an earlier run, or an f.Add): a failure, naming the file if
#   there is one.
# - Anything else (the package does not build, the target misuses
#   testing.F): a failure; go test's output says why.
#
# Every target is run even after one fails; the exit status is 1 if any
# failed. Environment: GO (default go), FUZZTIME, FUZZMINIMIZETIME,
# FUZZKEEP, and FUZZ (a space-separated list of target names to run instead
# of all of them).

set -eu

cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-10s}
FUZZMINIMIZETIME=${FUZZMINIMIZETIME:-5s}
FUZZKEEP=${FUZZKEEP:-no}
FUZZ=${FUZZ:-}
LC_ALL=C
export LC_ALL

# "dir name" for every fuzz target: the directory is the package.
targets=$(grep -r -n --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*(' src tools 2>/dev/null |
  sed -n 's|^\(.*\)/[^/]*_test\.go:[0-9]*:func \(Fuzz[A-Za-z0-9_]*\)(.*|\1 \2|p' | sort -u)
if test -z "$targets" ; then
  echo "fuzz: no fuzz targets found" 1>&2
  exit 1
fi

cache=$(CGO_ENABLED=0 "$GO" env GOCACHE)/fuzz
module=$(sed -n 's/^module[ 	]*//p' go.mod | head -n 1)

tmp=${TMPDIR:-/tmp}/fuzz.$$
mkdir "$tmp"
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The errors go test's fuzzing engine reports for itself: no input caused
# them (see the header).
engine_errors='context deadline exceeded|fuzzing process terminated by unexpected signal|fuzzing process hung or terminated unexpectedly|communicating with fuzzing process'

# corpus_list dir: the file names in dir (none if it does not exist).
corpus_list() {
  if test -d "$1" ; then
    (cd "$1" && ls -1A) | sort
  fi
}

# fuzz_once dir name: one go test run, its output shown as it comes.
# Sets result to ok, crash, seed, engine or failed; inputs to the failing
# inputs that exist (crash, seed); why to go test's error line (engine).
fuzz_once() {
  corpus=$1/testdata/fuzz/$2
  corpus_list "$corpus" > "$tmp/before"
  { if CGO_ENABLED=0 "$GO" test -run='^$' -fuzz="^$2\$" -fuzztime="$FUZZTIME" -fuzzminimizetime="$FUZZMINIMIZETIME" "./$1/" < /dev/null 2>&1
    then echo 0 > "$tmp/status"
    else echo $? > "$tmp/status"
    fi
  } | tee "$tmp/out"
  status=$(cat "$tmp/status")
  inputs= why= result=
  if test "$status" = 0 ; then
    result=ok
    return
  fi
  corpus_list "$corpus" > "$tmp/after"
  written=no
  # Inputs new in the corpus directory during this run...
  for f in $(comm -13 "$tmp/before" "$tmp/after") ; do
    written=yes
    test -f "$corpus/$f" && inputs="$inputs $corpus/$f"
  done
  # ... and the one go test names (relative to the package directory),
  # which may be an older file with the same content.
  for p in $(sed -n 's|^[[:space:]]*Failing input written to \(testdata/fuzz/[^[:space:]]*\)$|\1|p' "$tmp/out") ; do
    written=yes
    if test -f "$1/$p" ; then
      case " $inputs " in *" $1/$p "*) ;; *) inputs="$inputs $1/$p" ;; esac
    fi
  done
  if test "$written" = yes ; then
    result=crash
    return
  fi
  # A seed that fails (one in testdata/fuzz/FuzzXxx/, or an f.Add): the
  # input was known before this run, go test writes nothing.
  for e in $(sed -n "s|^failure while testing seed corpus entry: $2/\\([^[:space:]/]*\\)\$|\\1|p" "$tmp/out") ; do
    result=seed
    test -f "$corpus/$e" && inputs="$inputs $corpus/$e"
  done
  if test "${result:-}" = seed ; then
    return
  fi
  why=$(grep -E "$engine_errors" "$tmp/out" | head -n 1)
  if test -n "$why" &&
     ! grep -q -E 'failure while testing seed corpus entry|\[build failed\]|\[setup failed\]' "$tmp/out" ; then
    result=engine
    why=$(echo "$why" | sed 's/^[[:space:]]*//')
    return
  fi
  result=failed
}

failed=
noted=
ran=0
echo "$targets" | {
  while read -r dir name ; do
    if test -n "$FUZZ" ; then
      case " $FUZZ " in *" $name "*) ;; *) continue ;; esac
    fi
    echo "fuzz: $name in ./$dir for $FUZZTIME"
    start=$(date +%s)
    fuzz_once "$dir" "$name"
    if test "$result" = engine ; then
      echo "fuzz: $name: the fuzzing engine failed ($why); no failing input was written, so nothing was found: running it once more" 1>&2
      fuzz_once "$dir" "$name"
      if test "$result" = engine ; then
        echo "fuzz: $name: the fuzzing engine failed again ($why): noted, not a failure" 1>&2
        noted="$noted $dir:$name"
      fi
    fi
    case $result in
    ok)
      echo "fuzz: $name: ok ($(( $(date +%s) - start )) s)" ;;
    crash)
      if test -n "$inputs" ; then
        echo "fuzz: $name: FAILED: found a failing input:$inputs" 1>&2
        set -- $inputs
        echo "fuzz: $name: replay it with: go test -run='^$name\$/^${1##*/}\$' ./$dir/" 1>&2
      else
        echo "fuzz: $name: FAILED: go test reported a failing input, but it is not in $dir/testdata/fuzz/$name/: see the output above" 1>&2
      fi
      failed="$failed $dir:$name" ;;
    seed)
      if test -n "$inputs" ; then
        echo "fuzz: $name: FAILED: an input of the seed corpus fails:$inputs" 1>&2
      else
        echo "fuzz: $name: FAILED: a seed (f.Add) fails: see the output above" 1>&2
      fi
      failed="$failed $dir:$name" ;;
    failed)
      echo "fuzz: $name: FAILED, not on a fuzzed input (a build error, a misused testing.F, ...): see the output above" 1>&2
      failed="$failed $dir:$name" ;;
    esac
    ran=$((ran + 1))
    if test "$FUZZKEEP" = yes && test -d "$cache/$module/$dir/$name" ; then
      mkdir -p "$dir/testdata/fuzz/$name"
      # Names are content hashes: an existing file is the same input.
      for f in "$cache/$module/$dir/$name"/* ; do
        test -f "$f" || continue
        test -e "$dir/testdata/fuzz/$name/${f##*/}" || cp "$f" "$dir/testdata/fuzz/$name/"
      done
    fi
  done
  if test "$ran" = 0 ; then
    echo "fuzz: no target matches FUZZ=$FUZZ" 1>&2
    exit 1
  fi
  if test -n "$noted" ; then
    echo "fuzz: note: the fuzzing engine failed twice, nothing found, maybe fuzzed for less than $FUZZTIME:$noted" 1>&2
  fi
  if test -n "$failed" ; then
    echo "fuzz: FAILED:$failed" 1>&2
    exit 1
  fi
  echo "fuzz: $ran targets, $FUZZTIME each: no failure"
}
