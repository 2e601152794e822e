// Package chain holds what every program of the chain does at its process
// boundaries: exit codes, fatal messages on stderr, and chainloading.
package chain

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Exit codes shared by every program (skarnet conventions, plus one of ours).
const (
	// ExitNextCandidate: qmail-remote-io failed before the mail transaction
	// began; its stdout holds a Z report saying why, and the connector may
	// try the next candidate.
	ExitNextCandidate = 10
	// ExitTLSFailed: like ExitNextCandidate, but the failure was TLS's
	// (STARTTLS accepted, then the handshake or the certificate failed).
	// At tlsstrictness 0 the connector retries the same address in
	// cleartext; otherwise it is treated as ExitNextCandidate.
	ExitTLSFailed = 11
	// ExitUsage: wrong usage or an invalid environment variable.
	ExitUsage = 100
	// ExitSystem: a system call failed.
	ExitSystem = 111
)

// Die prints "prog: fatal: message" on stderr and exits with code. Under
// qmail-remote, stderr is a pipe that qmail-remote reads and turns into a Z
// report; it is never qmail-rspawn's pipe.
func Die(code int, prog, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s: fatal: %s\n", prog, fmt.Sprintf(format, args...))
	os.Exit(code)
}

// Usage prints the usage line on stderr and exits 100.
func Usage(usage string) {
	fmt.Fprintf(os.Stderr, "usage: %s\n", usage)
	os.Exit(ExitUsage)
}

// LookPath finds argv0 the way execvp would: as given when it holds a
// slash, else in $PATH.
func LookPath(argv0 string) (string, error) {
	if filepath.Base(argv0) != argv0 {
		return argv0, nil
	}
	return exec.LookPath(argv0)
}

// Exec replaces the process with argv, with the current environment. It
// returns only on failure.
func Exec(argv []string) error {
	if len(argv) == 0 {
		return fmt.Errorf("nothing to exec")
	}
	path, err := LookPath(argv[0])
	if err != nil {
		return fmt.Errorf("unable to find %s: %w", argv[0], err)
	}
	err = unix.Exec(path, argv, os.Environ())
	return fmt.Errorf("unable to exec %s: %w", path, err)
}

// ExecOrDie chainloads into argv or dies with 111 naming what failed.
func ExecOrDie(prog string, argv []string) {
	err := Exec(argv)
	Die(ExitSystem, prog, "%v", err)
}

// FindProgOrDie finds the program a stage will run (argv0, as execvp
// would) and checks it is executable, or dies with 111. Stages that talk
// to a server call it before they do: a server must not see a session
// that we then drop because of our own installation problem.
func FindProgOrDie(prog, argv0 string) string {
	path, err := LookPath(argv0)
	if err == nil {
		err = unix.Access(path, unix.X_OK)
	}
	if err != nil {
		Die(ExitSystem, prog, "unable to find %s: %v", argv0, err)
	}
	return path
}
