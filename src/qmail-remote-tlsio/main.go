// qmail-remote-tlsio does the TLS handshake of a STARTTLS session on the
// network descriptors 6 and 7 and runs prog... (qmail-remote-io again) on a
// plaintext socketpair, shuttling bytes between the two, the way
// s6-tlsc-io does for s6-tlsc (same variable names in and out).
//
// It spawns prog instead of being spawned by it (s6-tlsc-io runs beside
// its application): qmail-remote-io execs into us with the connection on
// fds 6/7 after the server said 220 to STARTTLS, and we must learn prog's
// exit status to hand it on to qmail-remote-connect, whose child we are.
package qmailremotetlsio

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"qmail-remote-go/src/internal/chain"
	"qmail-remote-go/src/internal/chainenv"
	"qmail-remote-go/src/internal/proc"
	"qmail-remote-go/src/internal/progress"
	"qmail-remote-go/src/internal/report"
	"qmail-remote-go/src/internal/tlsio"
	iostage "qmail-remote-go/src/qmail-remote-io"
)

const usage = "qmail-remote-tlsio prog..."

const progName = "qmail-remote-tlsio"

// UCSPI network descriptors.
const (
	fdRead  = 6
	fdWrite = 7
)

// finishGrace is how long, after prog exited, its last bytes may take to
// reach the server (and close_notify after them) before we stop.
const finishGrace = 2 * time.Second

// socketpairBuf is the send buffer of the application's end of the
// socketpair (see run).
const socketpairBuf = 1 << 20

// s6-tlsc-io's input variables: the application must not see them (the
// key's path is nobody else's business, and a second run of prog must not
// mistake itself for a TLS stage).
var tlsInputVars = []string{"CAFILE", "CADIR", "CERTFILE", "KEYFILE"}

type settings struct {
	cfg            tlsio.Config
	ip             string // for reports
	timeoutConnect time.Duration
	timeoutRemote  time.Duration
	caFile, caDir  string
	certFile       string
	keyFile        string
	cell           *progress.Cell // handed on to prog on fd 3
}

// Main is the program.
func Main(args []string) chain.Next {
	if len(args) < 2 || chain.Help(args[1]) {
		chain.Usage(usage)
	}
	st := readEnv()
	// The process on the connection is the TLS stage now: if it is
	// killed, the connector's report must name it (package progress).
	cell, err := progress.FromEnv()
	if err != nil {
		chain.Die(chain.ExitUsage, progName, "%v", err)
	}
	cell.SetStage(progress.StageTLS)
	st.cell = cell
	argv := args[1:]
	path := chain.FindProgOrDie(progName, argv[0])
	raw, err := tlsio.FdConn(fdRead, fdWrite)
	if err != nil {
		chain.Die(chain.ExitUsage, progName, "fds 6 and 7 must be the connection to the server: %v", err)
	}
	loadControl(&st)

	probe := tlsio.NewProbe(raw)
	batch := tlsio.NewBatchConn(probe)
	conn, params := handshake(st, batch)
	tc := tlsio.TLSConn{Conn: conn, Raw: raw, Batch: batch}
	// Our own qmail-remote-io goes on over the session in this process;
	// any other prog is a child on a plaintext socketpair.
	if _, ours := chain.Ours(path); ours && filepath.Base(path) == iostage.Name {
		return chain.Exit(call(argv, &tc, probe, params))
	}
	return chain.Exit(run(path, argv, st, tc, params))
}

func readEnv() settings {
	var st settings
	die := func(err error) { chain.Die(chain.ExitUsage, progName, "%v", err) }
	name, err := chainenv.String(chainenv.MXName)
	if err != nil {
		die(err)
	}
	if st.cfg.Server, err = tlsio.ParseServer(name); err != nil {
		die(&chainenv.Error{Name: chainenv.MXName, Reason: err.Error()})
	}
	n, err := chainenv.Int(chainenv.TLSStrictness, 0, 2)
	if err != nil {
		die(err)
	}
	st.cfg.Strictness = int(n)
	if err := st.cfg.ReadPolicy(); err != nil {
		die(err)
	}
	if st.timeoutConnect, err = chainenv.Seconds(chainenv.TimeoutConnect, 1); err != nil {
		die(err)
	}
	if st.timeoutRemote, err = chainenv.Seconds(chainenv.TimeoutRemote, 1); err != nil {
		die(err)
	}
	// Empty counts as unset: qmail-remote-io passes control files that
	// may be empty.
	st.caFile, st.caDir = os.Getenv("CAFILE"), os.Getenv("CADIR")
	st.certFile, st.keyFile = os.Getenv("CERTFILE"), os.Getenv("KEYFILE")
	if st.caFile != "" && st.caDir != "" {
		die(errors.New("CAFILE and CADIR are both set; set one"))
	}
	// At level verify, no anchors is the final Z of loadControl, as in
	// qmail-remote-io's own handshake.
	if st.cfg.Level == "" && st.cfg.PKIX() && st.caFile == "" && st.caDir == "" {
		die(errors.New("CAFILE or CADIR must be set at tlsstrictness 2"))
	}
	if (st.certFile == "") != (st.keyFile == "") {
		die(errors.New("CERTFILE and KEYFILE must be set together"))
	}
	st.ip = "the server"
	if v := os.Getenv(chainenv.TCPRemoteIP); v != "" {
		a, err := netip.ParseAddr(v)
		if err != nil {
			die(&chainenv.Error{Name: chainenv.TCPRemoteIP, Reason: fmt.Sprintf("holds %q, which is not an IP address", v)})
		}
		st.ip = a.Unmap().String()
	}
	return st
}

// loadControl loads the trust anchors (for PKIX only: otherwise
// nothing is checked against them, so reading /etc/ssl/certs would be wasted) and the
// client certificate. A problem with either is the same for every server:
// a final Z, exit 0, and the mail waits for the administrator.
func loadControl(st *settings) {
	if err := st.cfg.Load(st.caFile, st.caDir, st.certFile, st.keyFile); err != nil {
		final(err.Error())
	}
}

func final(reason string) {
	chain.ExitNow(chain.Final(progName, report.Temporary, "Unable to read control files: "+reason+". (#4.3.0)\n").Code())
}

func writeReport(text string) {
	if err := report.Write(chain.Stdout, report.Temporary, text); err != nil {
		chain.Die(chain.ExitSystem, progName, "unable to write to stdout: %v", err)
	}
}

// handshake runs the TLS handshake within timeoutconnect. A failure is
// this server's: one Z and exit 11, and qmail-remote-connect decides
// between the next candidate and (tlsstrictness 0) cleartext.
func handshake(st settings, raw net.Conn) (*tls.Conn, tlsio.Params) {
	conn := tls.Client(raw, st.cfg.TLSConfig())
	raw.SetDeadline(time.Now().Add(st.timeoutConnect))
	err := conn.Handshake()
	if err != nil {
		why := tlsio.Reason(err, st.cfg, st.timeoutConnect, time.Now())
		st.cfg.Report(st.ip, nil, tlsio.ResultType(err), why)
		writeReport(fmt.Sprintf("Connected to %s but the TLS handshake failed: %s. (#4.7.0)\n", st.ip, why))
		chain.ExitNow(chain.ExitTLSFailed)
	}
	raw.SetDeadline(time.Time{})
	cs := conn.ConnectionState()
	st.cfg.Report(st.ip, &cs, tlsio.ResultType(nil), "")
	return conn, tlsio.ParamsOf(cs, &st.cfg)
}

// childEnv is ours minus the TLS inputs and any stale outputs, plus the
// session's parameters.
func childEnv(p tlsio.Params) []string {
	drop := append(append([]string{}, tlsInputVars...), tlsio.EnvNames...)
	return append(chainenv.Without(drop...), p.Env()...)
}

// call runs our qmail-remote-io in this process over the TLS session,
// with the environment it would have had as our child, and returns the
// exit code to leave with, as run does.
func call(argv []string, conn *tlsio.TLSConn, probe *tlsio.Probe, p tlsio.Params) int {
	saved := os.Environ()
	chainenv.Replace(childEnv(p))
	defer chainenv.Replace(saved)
	e := iostage.CallTLS(argv, conn, probe, chain.Stdout, chain.Stderr)
	if !e.Exited {
		chain.Die(chain.ExitSystem, progName, "%s %s", argv[0], e.How)
	}
	return e.Code
}

// run spawns prog on a socketpair, shuttles until it exits, and returns
// the exit code to leave with.
func run(path string, argv []string, st settings, remote tlsio.TLSConn, p tlsio.Params) int {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		chain.Die(chain.ExitSystem, progName, "unable to create a socketpair: %v", err)
	}
	// The application writes the message in blocks of about 64 KiB; room
	// for several lets it run ahead while we encrypt, instead of the two
	// taking turns. On a unix socket the writer's send buffer is the
	// whole queue. The kernel caps it at net.core.wmem_max: best effort.
	unix.SetsockoptInt(fds[1], unix.SOL_SOCKET, unix.SO_SNDBUF, socketpairBuf)
	ours := os.NewFile(uintptr(fds[0]), "socketpair")
	theirs := os.NewFile(uintptr(fds[1]), "socketpair")
	fc, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		chain.Die(chain.ExitSystem, progName, "unable to use the socketpair: %v", err)
	}
	local := fc.(*net.UnixConn)

	cmd := &exec.Cmd{
		Path:   path,
		Args:   argv,
		Env:    childEnv(p),
		Stdin:  os.Stdin,
		Stdout: chain.Stdout,
		Stderr: chain.Stderr,
		// ExtraFiles[i] is fd 3+i: the progress cell on 3 (or closed),
		// 4 and 5 closed, the plaintext socket on 6 (read) and 7
		// (write), as the network was for us.
		ExtraFiles: []*os.File{st.cell.File(), nil, nil, theirs, theirs},
	}
	// If we die, prog must not go on: its bytes would go nowhere and it
	// might report a delivery that never happened (proc.Run).
	var sh *tlsio.Shuttle
	e, err := proc.Run(cmd, func() {
		theirs.Close()
		sh = tlsio.Start(remote, local, st.timeoutRemote)
	})
	if err != nil {
		theirs.Close()
		chain.Die(chain.ExitSystem, progName, "unable to run %s: %v", path, err)
	}
	sh.Finish(finishGrace)
	if e.Exited {
		return e.Code
	}
	// qmail-remote-connect reads 111 without a report as a broken stage
	// (never "next candidate"): prog may have sent MAIL.
	if strings.HasPrefix(e.How, "killed") {
		chain.Die(chain.ExitSystem, progName, "%s was %s", path, e.How)
	}
	chain.Die(chain.ExitSystem, progName, "%s %s", path, e.How)
	return chain.ExitSystem
}
