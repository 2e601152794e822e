// Package buildtest builds the programs a test runs, once per test binary:
// program tests run the real executable (its exit codes, stdout and
// stderr are its interface), not its functions.
package buildtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Programs are the names of the multicall binary (src/multicall).
var Programs = []string{"qmail-remote", "qmail-newsmtproutes", "qmail-newtlspolicy", "qmail-remote-routes",
	"qmail-remote-resolve", "qmail-remote-connect", "qmail-remote-io", "qmail-remote-tlsio", "qmail-remote-probe",
	"qmail-remote-mtasts", "qmail-remote-tlsrpt"}

// Main builds the multicall binary into a fresh temporary directory, as
// qmail-remote with every other program's name a hard link to it (as
// make install does), sets *dir to it, runs the tests, removes the
// directory and exits. setup, if not nil, runs after the build (e.g. to
// write helper scripts into *dir). tags are build tags.
func Main(m *testing.M, dir *string, setup func(dir string) error, tags ...string) {
	d, err := os.MkdirTemp("", "buildtest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(111)
	}
	if err := Build(d, tags...); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(d)
		os.Exit(111)
	}
	if setup != nil {
		if err := setup(d); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.RemoveAll(d)
			os.Exit(111)
		}
	}
	*dir = d
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

// Build builds the multicall binary into dir under every program's name.
func Build(dir string, tags ...string) error {
	args := []string{"build", "-trimpath"}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	// The second run of the suite (make test) forces real execs in the
	// binary itself, so that every test runs through real processes.
	if os.Getenv("QMAILREMOTE_REALEXEC") == "1" {
		args = append(args, "-ldflags", "-X qmail-remote-go/src/internal/chain.realExecDefault=1")
	}
	first := filepath.Join(dir, Programs[0])
	args = append(args, "-o", first, "qmail-remote-go/src/multicall")
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building the multicall binary: %v\n%s", err, out)
	}
	for _, p := range Programs[1:] {
		if err := os.Link(first, filepath.Join(dir, p)); err != nil {
			return err
		}
	}
	return nil
}

// Program is Main for a program's own tests: it builds the package under
// test and sets *bin to the path of the program called name.
func Program(m *testing.M, bin *string, name string) {
	ProgramWithScript(m, bin, name, nil, "", "")
}

// ProgramWithScript is Program plus a shell script beside the program
// (a fake next stage): text is written to scriptName, executable, and
// *script set to its path. A nil script writes none.
func ProgramWithScript(m *testing.M, bin *string, name string, script *string, scriptName, text string) {
	var dir string
	Main(m, &dir, func(d string) error {
		*bin = filepath.Join(d, name)
		if script == nil {
			return nil
		}
		*script = filepath.Join(d, scriptName)
		return os.WriteFile(*script, []byte(text), 0o755)
	})
}
