// Package ctlcdbtest helps the tests of the control files compiled into a
// cdb (package ctlcdb: control/smtproutes, control/tlspolicy) and of the
// programs that compile them (package compilecmd).
package ctlcdbtest

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Home makes a qmail home with its control directory in a fresh temporary
// directory and returns it with the run directory, "run" in the home (not
// created). Unless text is "", it is written to control/name.
func Home(t testing.TB, name, text string) (home, run string) {
	t.Helper()
	home = filepath.Join(t.TempDir(), "qmail")
	if err := os.MkdirAll(filepath.Join(home, "control"), 0o755); err != nil {
		t.Fatal(err)
	}
	if text != "" {
		Write(t, home, name, text)
	}
	return home, filepath.Join(home, "run")
}

// Write writes text to control/name in home.
func Write(t testing.TB, home, name, text string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(home, "control", name), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// MustParse returns the table parse makes of text, failing the test if
// parse refuses it.
func MustParse[T any](t testing.TB, parse func([]byte) (T, error), text string) T {
	t.Helper()
	tb, err := parse([]byte(text))
	if err != nil {
		t.Fatalf("Parse(%q): %v", text, err)
	}
	return tb
}

// BenchLookup measures a delivery's lookup in a fresh cdb: it writes text
// to control/name, compiles it, then times b.N calls of lookup, which
// fails when its answer is wrong. The caller turns the racy window off,
// so that the lookups use the cdb at once.
func BenchLookup(b *testing.B, name, text string, compile, lookup func(qmailHome, qmailRun string) error) {
	b.Helper()
	home, run := Home(b, name, text)
	if err := compile(home, run); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := lookup(home, run); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
}

// Result is what a program run did.
type Result struct {
	Stdout, Stderr string
	Code           int // the exit status
}

// Bound is how long Run lets a program run: far longer than any run of
// these programs takes, however busy the machine. Reaching it means the
// program hangs (in an open of a FIFO, say).
const Bound = 60 * time.Second

// Run runs bin with args and with exactly the variables env (none for
// nil). A program still running after Bound is killed and fails the test.
func Run(t testing.TB, env []string, bin string, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Bound)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append([]string{}, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s hung (killed after %v)", filepath.Base(bin), Bound)
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return Result{stdout.String(), stderr.String(), code}
}

// Set sets *p to v for the test, and back when it ends (a File's
// RacyWindow, say).
func Set[T any](t testing.TB, p *T, v T) {
	old := *p
	*p = v
	t.Cleanup(func() { *p = old })
}

// Damage calls check with n damaged copies of values, as the values of a
// cdb damaged behind a valid checksum: 1 to 3 bytes of one of the values
// replaced by bytes of alphabet, at random but the same in every run.
func Damage(n int, values []string, alphabet string, check func(v []byte)) {
	rng := rand.New(rand.NewPCG(uint64(n), uint64(len(values))))
	for i := 0; i < n; i++ {
		v := []byte(values[rng.IntN(len(values))])
		for k := 1 + rng.IntN(3); k > 0; k-- {
			v[rng.IntN(len(v))] = alphabet[rng.IntN(len(alphabet))]
		}
		check(v)
	}
}
