// qmail-remote is the entry point of the chain: what qmail-rspawn runs for
// every remote delivery. It checks its arguments, reads the control files,
// pre-scans the message, and runs the rest of the chain as its child,
// guarding the report contract with qmail-rspawn (doc/qmail-remote.md):
// whatever happens further down, qmail-rspawn gets exactly one
// well-formed message report and exit 0.
//
// It writes nothing to stderr, ever: under qmail-rspawn, fd 2 is a copy of
// the report pipe.
package qmailremote

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"qmail-remote-go/src/internal/chain"
	"qmail-remote-go/src/internal/chainenv"
	"qmail-remote-go/src/internal/guard"
	"qmail-remote-go/src/internal/remotecontrol"
	"qmail-remote-go/src/internal/report"
	"qmail-remote-go/src/internal/smtp"
)

const usage = "qmail-remote host sender recip [ recip ... ] < message (a regular file)"

// The chain qmail-remote runs, in LIBEXECDIR (doc/chain.md).
var stages = []string{"qmail-remote-routes", "qmail-remote-resolve", "qmail-remote-connect", "qmail-remote-io"}

// Main is the program. It writes nothing on stderr, and ends with exit
// status 0 after one message report, or by a signal (guard.Protect).
//
// Run by hand with -h or --help as its one argument (qmail-rspawn always
// passes three: host, sender, recipient), it prints its usage line on
// stderr and exits 100; any other short argument list is a report, as
// stock. (--version alone is the multicall binary's: chain.Main.)
func Main(args []string) chain.Next {
	if len(args) == 2 && chain.Help(args[1]) {
		chain.Usage(usage)
	}
	out := protected(args)
	out.Write(os.Stdout)
	return chain.Exit(0)
}

// protected sets the process up and runs the delivery; a bug anywhere in
// it is a Z, never a panic that the runtime would end in exit status 2.
func protected(args []string) (out guard.Outcome) {
	defer func() {
		if p := recover(); p != nil {
			out = zero(report.Temporary, fmt.Sprintf("qmail-remote crashed: %v. (#4.3.0)\n", p))
		}
	}()
	withoutGoSettings(args)
	guard.Protect()
	oneThread()
	return run(args)
}

// oneThread runs the delivery of a message under parallelMin on one
// thread (GOMAXPROCS 1): one delivery is a sequence of waits for one
// server, and with more Ps the runtime's idle threads spin at every wait
// for work that never comes, 8-10% of a small delivery's CPU time
// (doc/bench.md). A bigger message keeps them for the parallel pre-scan
// and the copy.
func oneThread() {
	var st unix.Stat_t
	if unix.Fstat(0, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && st.Size < parallelMin {
		runtime.GOMAXPROCS(1)
	}
}

// run never panics out: a bug here must still end in a Z, not in exit 2
// (which qmail-rspawn would read as "bounce the mail").
func run(args []string) (out guard.Outcome) {
	defer func() {
		if p := recover(); p != nil {
			out = zero(report.Temporary, fmt.Sprintf("qmail-remote crashed: %v. (#4.3.0)\n", p))
		}
	}()
	if len(args) < 4 {
		return zero(report.Permanent, "I (qmail-remote) was invoked improperly. (#5.3.5)\n")
	}
	host, sender, rcpts := args[1], args[2], args[3:]

	home, run, libexec, err := remotecontrol.Locations()
	if err != nil {
		return zero(report.Temporary, "Unable to switch to home directory: "+err.Error()+". (#4.3.0)\n")
	}
	if err := os.Chdir(home); err != nil {
		return zero(report.Temporary, "Unable to switch to home directory. (#4.3.0)\n")
	}
	cf, err := remotecontrol.Read()
	if err != nil {
		return zero(report.Temporary, "Unable to read control files: "+err.Error()+". (#4.3.0)\n")
	}

	// fd 0 is a regular file (qmail-rspawn hands over the queue file):
	// check the final line now, before any connection, and count the wire
	// size on the way for SIZE (RFC 1870).
	msg := os.Stdin
	stats, err := scan(msg)
	if errors.Is(err, smtp.ErrPartialFinalLine) {
		return zero(report.Permanent, "SMTP cannot transfer messages with partial final lines. (#5.6.2)\n")
	}
	if err != nil {
		return zero(report.Temporary, "Unable to read message: "+err.Error()+". (#4.3.0)\n")
	}

	realExec := chain.RealExec()
	env := cleanEnv(os.Environ(), os.Getenv(chainenv.KeepGoEnv) == "1")
	set := func(k, v string) { env = append(env, k+"="+v) }
	set(chainenv.QmailHome, home)
	set(chainenv.QmailRun, run)
	set(chainenv.Host, host)
	set(chainenv.Sender, sender)
	set(chainenv.Rcpts, strconv.Itoa(len(rcpts)))
	for i, r := range rcpts {
		set(chainenv.RcptPrefix+strconv.Itoa(i+1), r)
	}
	cf.Env(set)
	set(chainenv.TLSIO, filepath.Join(libexec, "qmail-remote-tlsio"))
	set(chainenv.MsgBytes, strconv.FormatInt(stats.WireBytes, 10))
	set(chainenv.Msg8Bit, map[bool]string{false: "0", true: "1"}[stats.Has8Bit])
	if realExec {
		set(chain.RealExecEnv, "1")
	}

	argv := make([]string, len(stages))
	for i, s := range stages {
		argv[i] = filepath.Join(libexec, s)
	}
	// The stages are ours: they run in this process, guarded here. Any
	// other first stage is a child, guarded by its parent.
	if _, ours := chain.Ours(argv[0]); ours {
		return guard.InProcess(argv, env, msg, len(rcpts))
	}
	return guard.Run(argv, env, msg, len(rcpts))
}

func zero(letter byte, text string) guard.Outcome {
	return guard.Outcome{Reports: [][]byte{report.Format(letter, text)}}
}

// scan checks that fd 0 is a regular file and pre-scans it from the start
// (prescan), leaving its offset at 0 for the send.
func scan(f *os.File) (smtp.BodyStats, error) {
	st, err := f.Stat()
	if err != nil {
		return smtp.BodyStats{}, err
	}
	if !st.Mode().IsRegular() {
		return smtp.BodyStats{}, errors.New("fd 0 is not a regular file")
	}
	stats, err := prescan(f, st.Size())
	if err == nil && stats.PartialFinalLine {
		err = smtp.ErrPartialFinalLine
	}
	if err != nil {
		return stats, err
	}
	_, err = f.Seek(0, io.SeekStart)
	return stats, err
}

// withoutGoSettings runs qmail-remote again, in the same process, without
// the GO* variables its caller set (unless QMAILREMOTE_KEEPGOENV=1): the
// Go runtime read them when it started, before any of our code, and with
// the chain in this process they would steer every stage (GOGC=off,
// GOMAXPROCS, GODEBUG), which cleanEnv keeps them from doing in a child.
// qmail-rspawn's environment has none, so this costs nothing as a rule.
// If the exec fails (the binary was replaced since it started), the
// delivery goes on with them.
func withoutGoSettings(args []string) {
	env := os.Environ()
	if os.Getenv(chainenv.KeepGoEnv) == "1" || !slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "GO") }) {
		return
	}
	exe, err := os.Executable()
	if err != nil {
		return
	}
	clean := slices.DeleteFunc(slices.Clone(env), func(kv string) bool { return strings.HasPrefix(kv, "GO") })
	unix.Exec(exe, args, clean)
}

// cleanEnv drops every variable that could steer the chain from outside:
// the chain's own, the UCSPI ones the connector sets, the TLS ones a
// tls-io stage reads (s6 names), and, unless keepGo
// (QMAILREMOTE_KEEPGOENV=1, for debugging), every GO* variable:
// GOTRACEBACK=crash would make a stage that holds the smarthost password
// dump core, GODEBUG and GOMAXPROCS change how every stage runs, and
// none of them is the caller's business.
func cleanEnv(env []string, keepGo bool) []string {
	drop := []string{"PROTO", "TCPREMOTEIP", "TCPREMOTEPORT", "TCPLOCALIP", "TCPLOCALPORT",
		"TCPREMOTEHOST", "TCPLOCALHOST", "TCPREMOTEINFO",
		"CAFILE", "CADIR", "CERTFILE", "KEYFILE", "TLS_UID", "TLS_GID"}
	out := env[:0:0]
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, chainenv.Prefix) || strings.HasPrefix(k, "SSL_") || slices.Contains(drop, k) ||
			!keepGo && strings.HasPrefix(k, "GO") {
			continue
		}
		out = append(out, kv)
	}
	return out
}
