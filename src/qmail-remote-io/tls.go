package qmailremoteio

// STARTTLS (and SMTPS) hand the connection to the TLS stage named by
// QMAILREMOTE_TLSIO. When that is our own qmail-remote-tlsio (this
// binary, under that name), the session goes on in this process: the
// handshake on the same socket, then the second run of the conversation
// over the TLS session, with the same report texts, exit codes and
// verification rules as the two programs give. Any other TLS stage is
// exec'd, as s6-tlsc-io would be, or, when a caller in this process waits
// for us (the connector), spawned on the socket and waited for.

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"qmail-remote-go/src/internal/chain"
	"qmail-remote-go/src/internal/chainenv"
	"qmail-remote-go/src/internal/proc"
	"qmail-remote-go/src/internal/progress"
	"qmail-remote-go/src/internal/report"
	"qmail-remote-go/src/internal/tlsio"

	"qmail-remote-go/src/internal/say"
)

// defaultTimeoutTLS bounds the handshake when QMAILREMOTE_TIMEOUTCONNECT
// is unset (a run by hand): stock qmail's timeoutconnect.
const defaultTimeoutTLS = 60 * time.Second

// runTLS goes on under TLS: in this process when the TLS stage is ours,
// else through the TLS stage. It returns the end of the session.
func (s *session) runTLS() (outcome, bool) {
	path, err := chain.LookPath(s.cfg.tlsIO)
	if err == nil {
		if _, ours := chain.Ours(path); ours && filepath.Base(path) == tlsStage {
			return s.handshake()
		}
		if s.inProcess {
			err = s.spawnTLS(path)
		} else {
			err = s.execTLS(path)
		}
	} else {
		err = fmt.Errorf("unable to find %s: %w", s.cfg.tlsIO, err)
	}
	if err == nil {
		return outcome{}, false
	}
	return outcome{report.Temporary, "Connected to " + s.cfg.ip + " but I could not start the TLS stage. (#4.3.0)\n" + say.Sentence("Error", err)}, false
}

// tlsConfig is what the TLS stage would read from its environment.
// Trust anchors and the client certificate that do not load are a final
// Z (the same for every server); a broken variable ends the program, as
// it ends the TLS stage.
func (s *session) tlsConfig() (tlsio.Config, error) {
	var c tlsio.Config
	var err error
	die := func(err error) { chain.Die(chain.ExitUsage, prog, "%v", err) }
	if c.Server, err = tlsio.ParseServer(s.cfg.mxName); err != nil {
		die(&chainenv.Error{Name: chainenv.MXName, Reason: err.Error()})
	}
	n, err := chainenv.Int(chainenv.TLSStrictness, 0, 2)
	if err != nil {
		die(err)
	}
	c.Strictness = int(n)
	if err := c.ReadPolicy(); err != nil {
		die(err)
	}
	s.cfg.timeoutTLS = defaultTimeoutTLS
	if _, ok := os.LookupEnv(chainenv.TimeoutConnect); ok {
		if s.cfg.timeoutTLS, err = chainenv.Seconds(chainenv.TimeoutConnect, 1); err != nil {
			die(err)
		}
	}
	// As qmail-remote-tlsio gets them: CADIR for a directory.
	caFile, caDir := s.cfg.trustAnchors, ""
	if strings.HasSuffix(caFile, "/") {
		caFile, caDir = "", caFile
	}
	return c, c.Load(caFile, caDir, s.cfg.clientCert, s.cfg.clientKey)
}

// handshake does the TLS handshake on the socket within timeoutconnect
// and runs the rest of the session over it. A failed handshake is this
// server's: a Z and exit 11, and the connector decides between the next
// candidate and (tlsstrictness 0) a cleartext retry.
func (s *session) handshake() (outcome, bool) {
	c, err := s.tlsConfig()
	if err != nil {
		s.final = true
		return outcome{report.Temporary, "Unable to read control files: " + err.Error() + ". (#4.3.0)\n"}, false
	}
	raw := tlsio.FilesConn(s.rawR, s.rawW, s.wfd)
	s.probe = tlsio.NewProbe(raw)
	batch := tlsio.NewBatchConn(s.probe)
	conn := tls.Client(batch, c.TLSConfig())
	raw.SetDeadline(time.Now().Add(s.cfg.timeoutTLS))
	if err := conn.Handshake(); err != nil {
		s.tlsFailed = true
		why := tlsio.Reason(err, c, s.cfg.timeoutTLS, time.Now())
		c.Report(s.cfg.ip, nil, tlsio.ResultType(err), why)
		return outcome{report.Temporary, fmt.Sprintf("Connected to %s but the TLS handshake failed: %s. (#4.7.0)\n", s.cfg.ip, why)}, false
	}
	raw.SetDeadline(time.Time{})
	cs := conn.ConnectionState()
	c.Report(s.cfg.ip, &cs, tlsio.ResultType(nil), "")
	p := tlsio.ParamsOf(cs, &c)
	s.tlsConn = &tlsio.TLSConn{Conn: conn, Raw: raw, Batch: batch}
	s.r, s.w = s.tlsConn, s.tlsConn
	s.br = bufio.NewReaderSize(s.r, 4096)
	s.cfg.tls = &tlsInfo{protocol: p.Protocol, cipher: p.Cipher, verified: p.Verified, verifiedBy: p.VerifiedBy}
	return s.deliver()
}

// pendingTLS is how many bytes of plaintext the server sent under TLS
// that we have not read, once crypto/tls has read every whole record
// that arrived. A record still arriving counts for nothing until it is
// whole: the next check, or the next reply, sees it.
func (s *session) pendingTLS() int {
	if s.sock.Arrived() == 0 {
		return s.br.Buffered()
	}
	s.probe.On = true
	s.br.Peek(1)
	s.probe.On = false
	return s.br.Buffered()
}

// tlsEnv is our environment for the TLS stage of another binary: its
// inputs (s6-tlsc-io's names) from our trust anchors and client
// certificate, never a leftover from our caller.
func (s *session) tlsEnv() []string {
	env := chainenv.Without("CAFILE", "CADIR", "CERTFILE", "KEYFILE")
	if strings.HasSuffix(s.cfg.trustAnchors, "/") {
		env = append(env, envCADir+"="+s.cfg.trustAnchors)
	} else {
		env = append(env, envCAFile+"="+s.cfg.trustAnchors)
	}
	if s.cfg.clientCert != "" {
		env = append(env, envCertFile+"="+s.cfg.clientCert, envKeyFile+"="+s.cfg.clientKey)
	}
	return env
}

// self is the path that runs this program again, for the TLS stage.
func (s *session) self() (string, error) {
	p, err := chain.LookPath(s.argv0)
	if err != nil {
		return "", fmt.Errorf("unable to find my own path: %w", err)
	}
	return filepath.Abs(p)
}

// prepare gives the TLS stage what it expects: blocking sockets, as the
// connector made them (O_NONBLOCK belongs to the open file and would stay
// set), and fd 0 at its start.
func (s *session) prepare() error {
	for _, fd := range []int{s.rfd, s.wfd} {
		if err := unix.SetNonblock(fd, false); err != nil {
			return fmt.Errorf("unable to make fd %d blocking: %w", fd, err)
		}
	}
	if _, err := os.Stdin.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("unable to rewind fd 0: %w", err)
	}
	return nil
}

// execTLS replaces the process with the TLS stage at path, which runs
// this program again over the encrypted session. It returns only on
// failure.
func (s *session) execTLS(path string) error {
	self, err := s.self()
	if err != nil {
		return err
	}
	if err := s.prepare(); err != nil {
		return err
	}
	err = unix.Exec(path, []string{s.cfg.tlsIO, self}, s.tlsEnv())
	return fmt.Errorf("unable to exec %s: %w", path, err)
}

// spawnTLS runs the TLS stage at path as our child, on the socket as its
// fds 6 and 7, and waits for it: what an exec would do, when a caller in
// this process waits for us. Its reports are ours, and so is how it ends.
func (s *session) spawnTLS(path string) error {
	self, err := s.self()
	if err != nil {
		return err
	}
	if err := s.prepare(); err != nil {
		return err
	}
	env := s.tlsEnv()
	if s.cell != nil {
		env = append(chainenv.WithoutIn(env, progress.Env), progress.Env+"="+strconv.Itoa(progress.FD))
	}
	cmd := &exec.Cmd{
		Path:   path,
		Args:   []string{s.cfg.tlsIO, self},
		Env:    env,
		Stdin:  os.Stdin,
		Stdout: chain.Stdout,
		Stderr: chain.Stderr,
		// fd 3 the progress cell, 4 and 5 closed, the socket on 6 and 7.
		ExtraFiles: []*os.File{s.cell.File(), nil, nil, s.rawR, s.rawW},
	}
	// If we die, it must not go on talking to the server (proc.Run).
	e, err := proc.Run(cmd, nil)
	if err != nil {
		return fmt.Errorf("unable to run %s: %w", path, err)
	}
	s.handedOver = &e
	return nil
}
