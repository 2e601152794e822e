// Package buildtest builds the programs a test runs, once per test binary:
// program tests run the real executable (its exit codes, stdout and
// stderr are its interface), not its functions.
package buildtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Main builds each package (import paths, or "." for the package under
// test) into a fresh temporary directory, sets *dir to it, runs the tests,
// removes the directory and exits. Each program lands in *dir under its
// directory's name. setup, if not nil, runs after the build (e.g. to write
// helper scripts into *dir).
func Main(m *testing.M, dir *string, setup func(dir string) error, pkgs ...string) {
	d, err := os.MkdirTemp("", "buildtest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(111)
	}
	args := append([]string{"build", "-trimpath", "-o", d + string(filepath.Separator)}, pkgs...)
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building %v: %v\n%s", pkgs, err, out)
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
	}, ".")
}
