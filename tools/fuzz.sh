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
failed=
ran=0
echo "$targets" | {
  while read -r dir name ; do
    if test -n "$FUZZ" ; then
      case " $FUZZ " in *" $name "*) ;; *) continue ;; esac
    fi
    echo "fuzz: $name in ./$dir for $FUZZTIME"
    start=$(date +%s)
    if CGO_ENABLED=0 "$GO" test -run='^$' -fuzz="^$name\$" -fuzztime="$FUZZTIME" -fuzzminimizetime="$FUZZMINIMIZETIME" "./$dir/" ; then
      echo "fuzz: $name: ok ($(( $(date +%s) - start )) s)"
    else
      echo "fuzz: $name: FAILED: the failing input is in $dir/testdata/fuzz/$name/" 1>&2
      failed="$failed $dir:$name"
    fi
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
  if test -n "$failed" ; then
    echo "fuzz: FAILED:$failed" 1>&2
    exit 1
  fi
  echo "fuzz: $ran targets, $FUZZTIME each: no failure"
}
