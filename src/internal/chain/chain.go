// Package chain holds what every program of the chain does at its process
// boundaries: exit codes, fatal messages, and chainloading.
//
// Every program is one entry point (Program) in one multicall binary. A
// program ends by returning Exit(code) or Exec(argv), or by Die, which
// unwinds to whoever runs it. When the program to exec is this same
// binary (same device and inode as /proc/self/exe) and is one of its
// programs, it runs in the same process instead (Chain): same argv,
// environment, working directory, umask and descriptors, which is what
// an exec would have given it, without a new Go runtime. Anything else is
// exec'd for real, so an administrator's wrapper still fits anywhere.
// QMAILREMOTE_REALEXEC=1 makes every exec and spawn a real one.
package chain

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"qmail-remote-go/src/internal/paths"
	"qmail-remote-go/src/internal/report"
)

// Exit codes shared by every program (skarnet conventions, plus ours).
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

// RealExecEnv names the switch that forces real execs and spawns
// everywhere: "1" turns the in-process runs off.
const RealExecEnv = "QMAILREMOTE_REALEXEC"

// realExecDefault, set to "1" at link time (-X), turns the switch on in a
// binary whatever the environment says: the test suite's second run
// builds such a binary to run every test through real processes.
var realExecDefault string

// RealExec says whether the switch is on.
func RealExec() bool { return realExecDefault == "1" || os.Getenv(RealExecEnv) == "1" }

// Stdout and Stderr are the running program's fds 1 and 2. A program run
// in-process by another (the connector's qmail-remote-io, qmail-remote's
// guarded chain) writes to what its runner set here: a bounded buffer
// that the runner judges as it would judge a child's pipe.
var (
	Stdout io.Writer = os.Stdout
	Stderr io.Writer = os.Stderr
)

// Next is what happens when a program's entry point returns: exit with a
// code, or exec another program.
type Next struct {
	code int
	argv []string
}

// Exit ends the program with code.
func Exit(code int) Next { return Next{code: code} }

// Exec replaces the program with argv, run with the current environment.
func Exec(argv []string) Next { return Next{argv: argv} }

// Code is the exit code of an Exit.
func (n Next) Code() int { return n.code }

// Argv is the program to exec, nil for an Exit.
func (n Next) Argv() []string { return n.argv }

// exit is the panic value of Die and Usage: it unwinds to the runner,
// like exit(2) ends a process.
type exit struct{ code int }

// Die prints "prog: fatal: message" on Stderr and ends the program with
// code. Under qmail-remote, stderr is read and turned into a Z report; it
// is never qmail-rspawn's pipe. Die is called from the program's own
// goroutine only.
func Die(code int, prog, format string, args ...any) {
	fmt.Fprintf(Stderr, "%s: fatal: %s\n", prog, fmt.Sprintf(format, args...))
	panic(exit{code})
}

// Final ends the delivery in this program: the message report (letter,
// text) on Stdout, then exit 0. The mail waits (Z), bounces (D) or is
// delivered (K) by what the report says, not by the exit status.
func Final(prog string, letter byte, text string) Next {
	if err := report.Write(Stdout, letter, text); err != nil {
		Die(ExitSystem, prog, "unable to write the report: %v", err)
	}
	return Exit(0)
}

// ExitNow ends the program with code from wherever it is, like exit(2):
// for a program whose outcome is decided deep in a call.
func ExitNow(code int) { panic(exit{code}) }

// Usage prints the usage line on Stderr and ends the program with 100.
func Usage(usage string) {
	fmt.Fprintf(Stderr, "usage: %s\n", usage)
	panic(exit{ExitUsage})
}

// Help says whether arg, a program's first argument, asks for its usage
// line: -h or --help. Every program checks its arguments before it reads
// anything else, so that these work with any environment (doc/chain.md,
// "Usage and version").
func Help(arg string) bool { return arg == "-h" || arg == "--help" }

// VersionArg, as a program's one and only argument, makes Main print the
// program's name and the package version (paths.Version) on stdout and
// exit 0, whichever program it is (doc/chain.md, "Usage and version").
// No program takes it as an argument of its own: it is not a program for
// a stage's prog..., nor a domain, and qmail-rspawn passes qmail-remote
// at least three arguments.
const VersionArg = "--version"

// Program is a program's entry point: argv in, what happens next out.
// The environment, the working directory and the descriptors are the
// process's, as for main.
type Program func(args []string) Next

var programs = map[string]Program{}

// Register makes p the program called name in this binary.
func Register(name string, p Program) { programs[name] = p }

// Lookup returns the program called name (argv[0]'s base name).
func Lookup(name string) (Program, bool) {
	p, ok := programs[name]
	return p, ok
}

// Ended is how a program run by another ended: exited with Code, or
// not (killed by a signal, crashed), which How describes.
type Ended struct {
	Exited bool
	Code   int
	How    string
}

// String says how it ended: "exit status N", or How.
func (e Ended) String() string {
	if e.Exited {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.How
}

// Crash is a program that panicked: what and where.
type Crash struct {
	Value any
	Stack []byte
}

func (c *Crash) Error() string { return fmt.Sprintf("panic: %v", c.Value) }

// Call runs p on args and returns how it ended: Next, or a *Crash when it
// panicked (anything but Die and Usage).
func Call(p Program, args []string) (n Next, crash *Crash) {
	defer func() {
		if v := recover(); v != nil {
			if e, ok := v.(exit); ok {
				n = Exit(e.code)
				return
			}
			crash = &Crash{Value: v, Stack: debug.Stack()}
		}
	}()
	return p(args), nil
}

// Chain runs argv and everything it execs that is ours, in this process.
// It returns when a program exits (code), crashes, or execs a program
// that is not ours (foreign: that argv, to exec or spawn for real).
func Chain(argv []string) (code int, foreign []string, crash *Crash) {
	for {
		p, ok := Ours(argv[0])
		if !ok {
			return 0, argv, nil
		}
		n, c := Call(p, argv)
		if c != nil {
			return 0, nil, c
		}
		if n.argv == nil {
			return n.code, nil, nil
		}
		if len(n.argv) == 0 {
			fmt.Fprintf(Stderr, "%s: fatal: nothing to exec\n", filepath.Base(argv[0]))
			return ExitSystem, nil, nil
		}
		argv = n.argv
	}
}

// Main is the multicall binary's main: it runs the program named by
// argv[0] and what it chainloads, and returns the exit code. Run with
// VersionArg alone, any program prints its name and version instead. A foreign
// program is exec'd for real; a crash prints the panic and its stack on
// stderr and exits 2, as Go's runtime would.
func Main(argv []string) int {
	name := filepath.Base(argv[0])
	p, ok := Lookup(name)
	if !ok {
		fmt.Fprintf(os.Stderr, "%s: fatal: this binary has no program called %q; it has %s\n",
			"qmail-remote-go", name, strings.Join(Names(), ", "))
		return ExitUsage
	}
	if len(argv) == 2 && argv[1] == VersionArg {
		if _, err := fmt.Fprintf(os.Stdout, "%s %s\n", name, paths.Version); err != nil {
			fmt.Fprintf(os.Stderr, "%s: fatal: unable to write to stdout: %v\n", name, err)
			return ExitSystem
		}
		return 0
	}
	n, c := Call(p, argv)
	for c == nil && n.argv != nil {
		if len(n.argv) == 0 {
			fmt.Fprintf(Stderr, "%s: fatal: nothing to exec\n", name)
			return ExitSystem
		}
		if q, ok := Ours(n.argv[0]); ok {
			name = filepath.Base(n.argv[0])
			n, c = Call(q, n.argv)
			continue
		}
		err := execve(n.argv)
		fmt.Fprintf(os.Stderr, "%s: fatal: %v\n", name, err)
		return ExitSystem
	}
	if c != nil {
		fmt.Fprintf(os.Stderr, "%v\n\n%s", c, c.Stack)
		return 2
	}
	return n.code
}

// Names lists the programs, sorted.
func Names() []string {
	var s []string
	for n := range programs {
		s = append(s, n)
	}
	sort.Strings(s)
	return s
}

var self struct {
	once sync.Once
	st   unix.Stat_t
	err  error
}

// Ours says whether argv0, found as execvp would find it, is this very
// binary (same device and inode) under the name of one of its programs,
// and the switch does not force real execs: then an exec of it may run in
// this process. A copy of the binary is not ours (an upgrade in progress
// replaces files by renaming: the new file is another program).
func Ours(argv0 string) (Program, bool) {
	if RealExec() {
		return nil, false
	}
	p, ok := programs[filepath.Base(argv0)]
	if !ok {
		return nil, false
	}
	self.once.Do(func() { self.err = unix.Stat("/proc/self/exe", &self.st) })
	if self.err != nil {
		return nil, false
	}
	path, err := LookPath(argv0)
	if err != nil {
		return nil, false
	}
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil || st.Dev != self.st.Dev || st.Ino != self.st.Ino {
		return nil, false
	}
	// An exec would need the execute permission.
	if unix.Access(path, unix.X_OK) != nil {
		return nil, false
	}
	return p, true
}

// LookPath finds argv0 the way execvp would: as given when it holds a
// slash, else in $PATH.
func LookPath(argv0 string) (string, error) {
	if filepath.Base(argv0) != argv0 {
		return argv0, nil
	}
	return exec.LookPath(argv0)
}

// execve replaces the process with argv, with the current environment.
// It returns only on failure.
func execve(argv []string) error {
	path, err := LookPath(argv[0])
	if err != nil {
		return fmt.Errorf("unable to find %s: %w", argv[0], err)
	}
	err = unix.Exec(path, argv, os.Environ())
	return fmt.Errorf("unable to exec %s: %w", path, err)
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
