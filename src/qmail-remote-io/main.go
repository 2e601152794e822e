// Command qmail-remote-io speaks SMTP to one server on fds 6 (read) and 7
// (write) and delivers the message on fd 0 to it. The connector runs it once
// per candidate address and learns from its exit status whether to try the
// next one.
//
// It runs once or twice per connection (doc/chain.md, "STARTTLS"): first
// on the network socket; if STARTTLS is accepted it execs the TLS stage,
// which runs it again on a plaintext socketpair, with SSL_PROTOCOL set.
//
// The steps, with the reports (doc/chain.md, doc/qmail-remote-io.md):
//  1. greeting: must be 220 (not in the second run: after a handshake the
//     server says nothing until the client speaks).
//  2. EHLO helohost; anything but 2xx: HELO helohost, which must be 2xx
//     (first run only: a server that has just done STARTTLS speaks ESMTP).
//  3. first run, QMAILREMOTE_TLS try or require, STARTTLS offered: STARTTLS;
//     on 220, exec $QMAILREMOTE_TLSIO with our own path. Not offered or
//     refused: try goes on in cleartext, require gives up.
//     A failure in steps 1 to 3 is one Z report and exit 10: nothing of
//     the transaction has happened, another server may do better.
//     With QMAILREMOTE_AUTH (auth.go): smtps execs the TLS stage before
//     step 1, whose second run reads the greeting; after the EHLO under
//     verified TLS comes AUTH, whose 5xx is a final Z (exit 0).
//  4. MAIL FROM (with SIZE, BODY, SMTPUTF8 when offered and needed), RCPT
//     TO for each recipient (r/h/s reports), DATA: pipelined in one write
//     when the server offers PIPELINING, else in lock-step (esmtp.go);
//     then the body, the dot, the reply: one message report, exit 0.
//  5. QUIT, without waiting for its reply.
package qmailremoteio

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"qmail-remote-go/src/internal/chain"
	"qmail-remote-go/src/internal/chainenv"
	"qmail-remote-go/src/internal/progress"
	"qmail-remote-go/src/internal/report"
	"qmail-remote-go/src/internal/smtp"
	"qmail-remote-go/src/internal/tlsio"
	"qmail-remote-go/src/internal/tlsrpt"

	"qmail-remote-go/src/internal/say"
)

// The message on fd 0 must be a regular file: the stage rewinds it for
// the DATA.
const usage = "qmail-remote-io < message (fd 0 a regular file, rewound for the DATA; fds 6 and 7 the connection to the server)"

const prog = "qmail-remote-io"

// Name is the program's name, under which the connector finds it.
const Name = prog

// tlsStage is the name of our TLS stage: when QMAILREMOTE_TLSIO names it
// in this binary, STARTTLS goes on in this process (tls.go).
const tlsStage = "qmail-remote-tlsio"

// Server fds, UCSPI client convention.
const (
	fdRead  = 6
	fdWrite = 7
)

// quitTimeout bounds the QUIT write: the outcome is decided by then, and a
// server that stalls on QUIT must not delay the report by timeoutremote.
const quitTimeout = 10 * time.Second

type config struct {
	helo    string
	sender  string
	rcpts   []string
	timeout time.Duration
	ip      string  // for the report texts
	msg     msgInfo // size and 8-bit, for SIZE and BODY (esmtp.go)

	// First run: what to do about STARTTLS, and what the TLS stage needs.
	tlsMode       string // chainenv.TLSNone, TLSTry or TLSRequire
	tlsIO         string // path of the TLS stage
	trustAnchors  string // a file, or a directory when it ends in "/"
	clientCert    string
	clientKey     string
	tlsStrictness string // for the report texts; "" when unset
	tlsLevel      string // QMAILREMOTE_TLSLEVEL, for the report texts
	sts           string // QMAILREMOTE_STS: the destination's MTA-STS mode, for the report texts
	mxName        string // the server's name, for SNI and verification
	timeoutTLS    time.Duration

	// Second run: the session is under TLS (set by the TLS stage).
	tls *tlsInfo

	auth authConfig // smarthost submission (auth.go)
}

// tlsInfo is what the TLS stage tells the application about the session.
type tlsInfo struct {
	protocol string // SSL_PROTOCOL, e.g. TLSv1.3
	cipher   string // SSL_CIPHER, e.g. TLS_AES_128_GCM_SHA256
	verified bool   // QMAILREMOTE_TLSVERIFIED=1
	// verifiedBy: QMAILREMOTE_TLSVERIFIEDBY, how ("PKIX", "DANE-EE 3 1 1").
	verifiedBy string
}

// line is the line added to the reports of a transaction under TLS.
func (t *tlsInfo) line() string {
	if t == nil {
		return ""
	}
	l := "TLS: " + t.protocol
	if t.cipher != "" {
		l += " " + t.cipher
	}
	switch {
	case t.verified && t.verifiedBy != "" && t.verifiedBy != "PKIX":
		return l + ", certificate verified (" + t.verifiedBy + ").\n"
	case t.verified:
		return l + ", certificate verified.\n"
	}
	return l + ", certificate not verified.\n"
}

// Environment variables of the TLS stages (s6-tlsc-io names).
const (
	envSSLProtocol = "SSL_PROTOCOL"
	envSSLCipher   = "SSL_CIPHER"
	envCAFile      = "CAFILE"
	envCADir       = "CADIR"
	envCertFile    = "CERTFILE"
	envKeyFile     = "KEYFILE"
)

// Main is the program: a session on fds 6 and 7.
func Main(args []string) chain.Next {
	if len(args) != 1 {
		chain.Usage(usage)
	}
	r, w := openServerFd(fdRead), openServerFd(fdWrite)
	e := start(args[0], r, w, fdRead, fdWrite, false)
	if !e.Exited {
		chain.Die(chain.ExitSystem, prog, "%s", e.How)
	}
	return chain.Exit(e.Code)
}

// Call runs the program in this process, for the connector, on the socket
// sock (what fds 6 and 7 would be), with the process's environment, its
// stdout and stderr going to out and diag; it closes sock. It returns how
// the program ended: an exit code, or a crash, which is what a child
// killed by a signal would be.
func Call(argv []string, sock int, out, diag io.Writer) chain.Ended {
	var f *os.File
	e := callIn(argv, out, diag, func(argv0 string) chain.Ended {
		f = openServerFd(sock)
		return start(argv0, f, f, sock, sock, true)
	})
	if f != nil {
		f.Close()
	} else {
		unix.Close(sock)
	}
	return e
}

// CallTLS runs the program in this process for qmail-remote-tlsio, whose
// handshake made conn on the socket under probe: the session under TLS,
// with the environment the TLS stage gives its prog (which it has made
// the process's), its reports to out and its diagnostics to diag.
func CallTLS(argv []string, conn *tlsio.TLSConn, probe *tlsio.Probe, out, diag io.Writer) chain.Ended {
	return callIn(argv, out, diag, func(argv0 string) chain.Ended {
		cfg := readEnv()
		if cfg.tls == nil {
			chain.Die(chain.ExitUsage, prog, "%s must be set under TLS", envSSLProtocol)
		}
		cell, err := progress.FromEnv()
		if err != nil {
			chain.Die(chain.ExitUsage, prog, "%v", err)
		}
		s := &session{cfg: cfg, cell: cell, r: conn, w: conn, tlsConn: conn, probe: probe, sock: probe,
			msg: os.Stdin, argv0: argv0, inProcess: true}
		s.br = bufio.NewReaderSize(s.r, 4096)
		return s.run()
	})
}

// callIn runs body as the program in this process, with out and diag as
// its stdout and stderr, and says how it ended: as body says, by an exit
// (Die, Usage), or by a crash, which is what a child killed by a signal
// would be.
func callIn(argv []string, out, diag io.Writer, body func(argv0 string) chain.Ended) (e chain.Ended) {
	so, se := chain.Stdout, chain.Stderr
	chain.Stdout, chain.Stderr = out, diag
	defer func() { chain.Stdout, chain.Stderr = so, se }()
	n, crash := chain.Call(func(args []string) chain.Next {
		if len(args) != 1 {
			chain.Usage(usage)
		}
		e = body(args[0])
		return chain.Exit(e.Code)
	}, argv)
	switch {
	case crash != nil:
		return chain.Ended{How: prog + " crashed: " + crash.Error()}
	case e.Exited || e.How == "":
		return chain.Ended{Exited: true, Code: n.Code()}
	}
	return e
}

// start reads the environment and runs the session on the server
// connection r, w (raw descriptors rfd, wfd). argv0 is how the program
// was run, for the TLS stage to run it again; inProcess says that a
// caller waits for us in this process, so that nothing may be exec'd.
func start(argv0 string, r, w *os.File, rfd, wfd int, inProcess bool) chain.Ended {
	cfg := readEnv()
	cell, err := progress.FromEnv()
	if err != nil {
		chain.Die(chain.ExitUsage, prog, "%v", err)
	}
	s := &session{cfg: cfg, cell: cell, r: r, w: w, rawR: r, rawW: w, rfd: rfd, wfd: wfd,
		sock: fdSocket{rfd, wfd}, msg: os.Stdin, argv0: argv0, inProcess: inProcess}
	s.br = bufio.NewReaderSize(s.r, 4096)
	return s.run()
}

func readEnv() config {
	var cfg config
	var err error
	die := func(err error) { chain.Die(chain.ExitUsage, prog, "%v", err) }
	if cfg.helo, err = chainenv.NonEmpty(chainenv.HeloHost); err != nil {
		die(err)
	}
	// The name goes into a command line: RFC 5321 4.1.1.1 wants a domain
	// or an address literal, and a space, CR or LF would forge commands.
	if strings.ContainsAny(cfg.helo, " \t\r\n\x00") {
		die(&chainenv.Error{Name: chainenv.HeloHost, Reason: fmt.Sprintf("holds a space or a control character: %q", cfg.helo)})
	}
	if cfg.sender, cfg.rcpts, err = chainenv.Envelope(); err != nil {
		die(err)
	}
	if cfg.timeout, err = chainenv.Seconds(chainenv.TimeoutRemote, 1); err != nil {
		die(err)
	}
	cfg.msg = readMsgInfo(die)
	// Optional, for the report texts only: the connector has turned
	// tlsstrictness into QMAILREMOTE_TLS for this connection.
	if _, ok := os.LookupEnv(chainenv.TLSStrictness); ok {
		if _, err = chainenv.Int(chainenv.TLSStrictness, 0, 2); err != nil {
			die(err)
		}
		cfg.tlsStrictness = os.Getenv(chainenv.TLSStrictness)
	}
	if _, ok := os.LookupEnv(envSSLProtocol); ok {
		cfg.tls = readTLSInfo(die)
	} else {
		readTLSPolicy(&cfg, die)
	}
	// For a TLS stage run in this process (tls.go); checked when it runs,
	// as the TLS stage checks them.
	cfg.mxName = os.Getenv(chainenv.MXName)
	readAuthEnv(&cfg, die)
	cfg.ip = "the server"
	if v := os.Getenv(chainenv.TCPRemoteIP); v != "" {
		a, err := netip.ParseAddr(v)
		if err != nil {
			die(&chainenv.Error{Name: chainenv.TCPRemoteIP, Reason: fmt.Sprintf("holds %q, which is not an IP address", v)})
		}
		cfg.ip = a.Unmap().String()
	}
	return cfg
}

// readTLSInfo reads what the TLS stage exported (second run). The values
// go into the reports, so they must be single words.
func readTLSInfo(die func(error)) *tlsInfo {
	var t tlsInfo
	var err error
	if t.protocol, err = chainenv.NonEmpty(envSSLProtocol); err != nil {
		die(err)
	}
	t.cipher = os.Getenv(envSSLCipher)
	for name, v := range map[string]string{envSSLProtocol: t.protocol, envSSLCipher: t.cipher} {
		if strings.IndexFunc(v, func(c rune) bool { return c <= ' ' || c >= 0x7f }) >= 0 {
			die(&chainenv.Error{Name: name, Reason: fmt.Sprintf("holds a space or a control character: %q", v)})
		}
	}
	if t.verified, err = chainenv.Flag(chainenv.TLSVerified); err != nil {
		die(err)
	}
	t.verifiedBy = os.Getenv(chainenv.TLSVerifiedBy)
	if strings.IndexFunc(t.verifiedBy, func(c rune) bool { return c < ' ' || c >= 0x7f }) >= 0 {
		die(&chainenv.Error{Name: chainenv.TLSVerifiedBy, Reason: fmt.Sprintf("holds a control character: %q", t.verifiedBy)})
	}
	return &t
}

// readTLSPolicy reads what the first run needs for STARTTLS. Unset
// QMAILREMOTE_TLS means none, so that the program can be run by hand
// without TLS settings.
func readTLSPolicy(cfg *config, die func(error)) {
	cfg.tlsMode = os.Getenv(chainenv.TLS)
	switch cfg.tlsMode {
	case "":
		cfg.tlsMode = chainenv.TLSNone
	case chainenv.TLSNone, chainenv.TLSTry, chainenv.TLSRequire:
	default:
		die(&chainenv.Error{Name: chainenv.TLS, Reason: fmt.Sprintf("must be none, try or require, not %q", cfg.tlsMode)})
	}
	if cfg.tlsMode == chainenv.TLSNone {
		return
	}
	var err error
	if cfg.tlsIO, err = chainenv.NonEmpty(chainenv.TLSIO); err != nil {
		die(&chainenv.Error{Name: chainenv.TLSIO, Reason: "must name the TLS stage when " + chainenv.TLS + " is " + cfg.tlsMode})
	}
	// Without a control/tlspolicy level, STARTTLS only with trust
	// anchors (control/trustanchors): the connector says none without
	// them, so anything else is a broken environment. A level may go
	// without them; the handshake needs them at verify (tlsConfig).
	cfg.tlsLevel = os.Getenv(chainenv.TLSLevel)
	cfg.sts = os.Getenv(chainenv.STS)
	cfg.trustAnchors = os.Getenv(chainenv.TrustAnchors)
	if cfg.trustAnchors == "" && cfg.tlsLevel == "" {
		die(&chainenv.Error{Name: chainenv.TrustAnchors, Reason: "must be set when " + chainenv.TLS + " is " + cfg.tlsMode})
	}
	cfg.clientCert = os.Getenv(chainenv.ClientCert)
	cfg.clientKey = os.Getenv(chainenv.ClientKey)
	if (cfg.clientCert == "") != (cfg.clientKey == "") {
		die(&chainenv.Error{Name: chainenv.ClientKey, Reason: "and " + chainenv.ClientCert + " must be set together"})
	}
}

// openServerFd makes fd a non-blocking *os.File, so that Go's poller serves
// it and read and write deadlines work (a socket, or a pipe in tests).
func openServerFd(fd int) *os.File {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		chain.Die(chain.ExitUsage, prog, "fd %d is not open: %v", fd, err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		chain.Die(chain.ExitSystem, prog, "unable to make fd %d non-blocking: %v", fd, err)
	}
	f := os.NewFile(uintptr(fd), fmt.Sprintf("fd%d", fd))
	if err := f.SetDeadline(time.Time{}); err != nil {
		chain.Die(chain.ExitUsage, prog, "fd %d is not a socket or a pipe: %v", fd, err)
	}
	return f
}

// deadlineWriter re-arms the write deadline for every Write: SendBody
// writes one block at a time, so a slow but moving server is fine and a
// stalled one is caught within timeoutremote.
type deadlineWriter struct {
	f       writer
	timeout time.Duration
}

// reader and writer are the two sides of the server connection: the
// socket's files, or the TLS session on them.
type reader interface {
	io.Reader
	SetReadDeadline(time.Time) error
}

type writer interface {
	io.Writer
	SetWriteDeadline(time.Time) error
}

func (d deadlineWriter) Write(p []byte) (int, error) {
	d.f.SetWriteDeadline(time.Now().Add(d.timeout))
	return d.f.Write(p)
}

// msgReadError marks an error reading the message (fd 0), as opposed to
// an error writing to the server.
type msgReadError struct{ err error }

func (e *msgReadError) Error() string { return e.err.Error() }

type msgReader struct{ f *os.File }

func (m msgReader) Read(p []byte) (int, error) {
	n, err := m.f.Read(p)
	if err != nil && err != io.EOF {
		err = &msgReadError{err}
	}
	return n, err
}

type session struct {
	cfg config
	r   reader
	w   writer
	br  *bufio.Reader
	// The socket under r and w: its files and descriptors (fds 6 and 7,
	// or the connector's socket when it runs us in its process).
	rawR, rawW *os.File
	rfd, wfd   int
	sock       socket
	// msg is the message: fd 0.
	msg *os.File
	// argv0: how we were run; inProcess: a caller in this process waits
	// for us (the connector), so nothing may be exec'd (tls.go).
	argv0     string
	inProcess bool
	// Under TLS in this process (tls.go): the session, and the reader
	// under it that can look without waiting.
	tlsConn *tlsio.TLSConn
	probe   *tlsio.Probe
	// How the session ends when it is not by its own report: tlsFailed
	// (the handshake failed: exit 11), final (a Z that no other server
	// would change: exit 0 before MAIL), handedOver (a TLS stage of
	// another binary ran the rest and ended so).
	tlsFailed, final bool
	handedOver       *chain.Ended
	ext              smtp.Extensions // the extensions of the EHLO reply (after TLS: the new one)
	// inTransaction: MAIL has been sent. Before, every failure is exit 10.
	inTransaction bool
	// cell records how far we got, for whoever outlives us if we are
	// killed (package progress): "Possible duplicate!" or not.
	cell *progress.Cell
	// secrets: once AUTH began, what no report may quote (secrets.go);
	// authPhase: AUTH runs, and its replies are quoted by code only.
	secrets   *scrubber
	authPhase bool
}

// outcome ends the session: one message report and the exit status.
type outcome struct {
	letter byte
	text   string
}

func (s *session) run() chain.Ended {
	exit := func(code int) chain.Ended { return chain.Ended{Exited: true, Code: code} }
	// fd 0 is a regular file under qmail-remote, which checked; by hand it
	// might be a device that never ends (/dev/zero) and a body that never
	// ends with it.
	if st, err := s.msg.Stat(); err != nil || !st.Mode().IsRegular() {
		report.Write(chain.Stdout, report.Temporary, "Unable to read message. (#4.3.0)\nfd 0 is not a regular file.\n")
		return exit(0)
	}
	// Whoever ran us may have read it (qmail-remote's pre-scan, an
	// earlier candidate's session).
	if _, err := s.msg.Seek(0, io.SeekStart); err != nil {
		report.Write(chain.Stdout, report.Temporary, "Unable to read message. (#4.3.0)\n"+say.Sentence("Cannot seek fd 0", err))
		return exit(0)
	}
	// Whatever happened in an earlier run on this connection, the dot
	// has not gone out yet.
	s.cell.Set(progress.BeforeDot)
	o, quit := s.deliver()
	if s.handedOver != nil {
		return *s.handedOver
	}
	if quit {
		s.quit()
	}
	// Under TLS, close_notify first (RFC 8446 6.1); crypto/tls bounds
	// that write by 5 s.
	if s.tlsConn != nil {
		s.tlsConn.Conn.CloseWrite()
	}
	// The connector may hold a copy of the socket: shut it down so the
	// server sees the end now, and, in the middle of DATA, drops the
	// message instead of waiting for the dot.
	s.sock.Shutdown()
	// Under TLS, every report of the transaction says so (K by contract;
	// D and Z too, for the administrator reading the log). A failure
	// before MAIL does not: the connector labels its pass itself.
	if s.cfg.tls != nil && s.inTransaction {
		o.text = withTLSLine(o.text, s.cfg.tls.line()+s.authLine())
	}
	report.Write(chain.Stdout, o.letter, o.text)
	switch {
	case s.tlsFailed:
		return exit(chain.ExitTLSFailed)
	case s.final, s.inTransaction:
		return exit(0)
	}
	return exit(chain.ExitNextCandidate)
}

// deliver runs the conversation. It returns the message report and whether
// QUIT may be sent (not after a broken connection, nor in the middle of
// DATA, where it would be message text).
func (s *session) deliver() (outcome, bool) {
	ip := s.cfg.ip
	var r smtp.Reply
	var err error
	crashHere("greeting")
	// SMTPS (auth.go): TLS before anything else, the greeting under TLS.
	if s.cfg.tls == nil && s.cfg.smtps() {
		return s.startSMTPS()
	}
	// RFC 3207 4.2: after the handshake the client speaks first.
	if s.cfg.tls == nil || s.cfg.smtps() {
		if r, err = s.reply(stepGreeting); err != nil {
			return s.broken(stepGreeting, err, false), false
		}
		if r.Code != 220 {
			return outcome{report.Temporary, "Connected to " + ip + " but greeting failed.\n" + s.said(r)}, true
		}
	}

	if r, err = s.command("EHLO "+s.cfg.helo, "EHLO"); err != nil {
		return s.broken("EHLO", err, false), false
	}
	switch {
	case r.Class() == 2:
		s.ext = smtp.ParseEHLO(r)
	case s.cfg.tls != nil:
		// A server that has just done STARTTLS (or SMTPS) speaks ESMTP:
		// no HELO.
		// Not "my name was rejected": the name was fine before the
		// handshake, and what changed is TLS (a server that wants a
		// client certificate refuses here, for one).
		return outcome{report.Temporary, "Connected to " + ip + " but it refused EHLO under TLS.\n" + s.said(r)}, true
	default:
		// Servers that do not speak ESMTP exist (RFC 5321 3.2).
		if r, err = s.command("HELO "+s.cfg.helo, "HELO"); err != nil {
			return s.broken("HELO", err, false), false
		}
		if r.Class() != 2 {
			return outcome{report.Temporary, "Connected to " + ip + " but my name was rejected.\n" + s.said(r)}, true
		}
	}

	// In the second run STARTTLS is never sent again, whatever the new
	// extension list says: the TLS stage runs once per connection.
	if s.cfg.tls == nil && s.cfg.tlsMode != chainenv.TLSNone {
		if o, quit, giveUp := s.startTLS(); giveUp {
			return o, quit
		}
	}

	// AUTH for a smarthost, under verified TLS only (auth.go).
	if s.cfg.auth.method != "" {
		if o, quit, giveUp := s.authenticate(); giveUp {
			return o, quit
		}
	}

	// MAIL, RCPT, DATA, up to the 354 (esmtp.go).
	if o, quit, ok := s.transaction(); !ok {
		return o, quit
	}

	if err := s.inStep("after the reply to DATA, before the message"); err != nil {
		return s.broken(stepBody, err, false), false
	}
	// Each block of the body goes out only while the server keeps quiet,
	// and the dot only if it still has said nothing (step.go); the
	// progress cell learns that the dot may be out right before it is.
	err = sendBody(s.msg, stepWriter{s, deadlineWriter{s.w, s.cfg.timeout}}, func() error {
		if err := s.inStep("before I sent the final dot"); err != nil {
			return err
		}
		s.cell.Set(progress.Dot)
		crashHere("dot")
		return nil
	}) // mapsend.go
	var mre *msgReadError
	switch {
	case errors.Is(err, smtp.ErrPartialFinalLine):
		// The pre-scan saw a complete last line: the file changed since.
		// Leaving without the dot makes the server drop the message.
		return outcome{report.Temporary, "Unable to read message. (#4.3.0)\nThe message changed while I was sending it: its last line is now partial.\n"}, false
	case errors.As(err, &mre):
		return outcome{report.Temporary, "Unable to read message. (#4.3.0)\n" + say.Sentence("Error reading the message", mre.err)}, false
	case err != nil:
		return s.broken(stepBody, err, false), false
	}

	// The dot is out: from now on a lost connection may mean the server
	// has the message (RFC 1047).
	r, err = s.reply(stepDot)
	if err != nil {
		return s.broken(stepDot, err, true), false
	}
	switch r.Class() {
	case 2:
		return outcome{report.Delivered, ip + " accepted message.\n" + s.said(r)}, true
	case 5:
		return outcome{report.Permanent, ip + " failed after I sent the message.\n" + s.said(r)}, true
	case 4:
		return outcome{report.Temporary, ip + " failed after I sent the message.\n" + s.said(r)}, true
	default:
		// 3xx after the dot is no answer SMTP allows; stock would say K.
		return outcome{report.Temporary, ip + " failed after I sent the message: that reply is not a 2xx, 4xx or 5xx. Possible duplicate! (#4.4.2)\n" + s.said(r)}, true
	}
}

// withTLSLine adds the TLS line to a report text. The text (its end is
// the server's reply) is cut so that the line always fits in the report
// (report.Max), where Format would otherwise drop it after a 4 KiB reply.
func withTLSLine(text, tl string) string {
	const cut = "(text truncated)\n"
	if room := report.Max - 2 - len(tl); len(text) > room {
		text = text[:room-len(cut)] + cut
	}
	return text + tl
}

// reportNoSTARTTLS records, for TLS reports, a server that does not offer
// STARTTLS under a policy (MTA-STS, whatever its mode, or DANE).
func (s *session) reportNoSTARTTLS() {
	if s.cfg.sts == "" && s.cfg.tlsLevel != chainenv.LevelDANE {
		return
	}
	var c tlsio.Config
	var err error
	if c.Server, err = tlsio.ParseServer(s.cfg.mxName); err != nil || c.ReadPolicy() != nil {
		return // the handshake would end the program on the same error
	}
	c.Report(s.cfg.ip, nil, tlsrpt.StartTLSNotSupported, "the server does not offer STARTTLS")
}

// startTLS does STARTTLS in the first run with QMAILREMOTE_TLS try or
// require (RFC 3207, doc/chain.md "STARTTLS"). It returns only when the
// session does not go on under TLS: giveUp false means cleartext, else o
// and quit are the end of the session. On success it execs the TLS stage.
func (s *session) startTLS() (o outcome, quit, giveUp bool) {
	ip := s.cfg.ip
	require := s.cfg.tlsMode == chainenv.TLSRequire
	strictness := ""
	switch {
	case s.cfg.tlsLevel == chainenv.LevelDANE:
		strictness = " (DANE: the server has TLSA records)"
	case s.cfg.tlsLevel == chainenv.LevelVerify && s.cfg.sts == "enforce":
		strictness = " (MTA-STS: the destination's policy is enforce)"
	case s.cfg.tlsLevel != "":
		strictness = " (control/tlspolicy: " + s.cfg.tlsLevel + ")"
	case s.cfg.tlsStrictness != "":
		strictness = " (tlsstrictness " + s.cfg.tlsStrictness + ")"
	}
	if !s.ext.Has("STARTTLS") {
		s.reportNoSTARTTLS()
		if !require {
			return outcome{}, false, false
		}
		return outcome{report.Temporary, "Connected to " + ip + " but it does not offer STARTTLS, and TLS is required" + strictness + ". (#4.7.0)\n"}, true, true
	}
	r, err := s.command("STARTTLS", "STARTTLS")
	if err != nil {
		return s.broken("STARTTLS", err, false), false, true
	}
	if r.Code != 220 {
		// RFC 3207 4: after a refusal the session goes on as before.
		if !require {
			return outcome{}, false, false
		}
		return outcome{report.Temporary, "Connected to " + ip + " but it refused STARTTLS, and TLS is required" + strictness + ". (#4.7.0)\n" + s.said(r)}, true, true
	}
	// CVE-2011-0411: whatever came after the 220 was sent before the
	// handshake, in cleartext, by the server or by someone in the middle,
	// and would be read as the answer to our first command under TLS.
	// What arrives later still is caught by the handshake, which reads it
	// as a broken TLS record. No QUIT: the server now waits for a
	// handshake, not for commands.
	if n := s.unread(); n > 0 {
		return outcome{report.Temporary, fmt.Sprintf("Connected to %s but it sent data after its STARTTLS reply (response injection?). (#4.7.0)\n%d bytes came after the 220 reply, before the TLS handshake.\n", ip, n)}, false, true
	}
	o, quit = s.runTLS()
	return o, quit, true
}

// command sends one command line and reads its reply. Nothing may be
// waiting from the server before the command goes (step.go).
func (s *session) command(line, verb string) (smtp.Reply, error) {
	if err := s.inStep("before I sent " + verb); err != nil {
		return smtp.Reply{}, err
	}
	s.w.SetWriteDeadline(time.Now().Add(s.cfg.timeout))
	if _, err := s.w.Write([]byte(line + "\r\n")); err != nil {
		return smtp.Reply{}, &sendError{verb, err}
	}
	return s.reply(verb)
}

// reply reads one reply; timeoutremote bounds the whole reply, however the
// server dribbles it.
func (s *session) reply(what string) (smtp.Reply, error) {
	s.r.SetReadDeadline(time.Now().Add(s.cfg.timeout))
	r, err := smtp.ReadReply(s.br)
	if err != nil {
		return r, &replyError{what, r, err}
	}
	return r, nil
}

type sendError struct {
	verb string
	err  error
}

func (e *sendError) Error() string { return sending(e.verb) + ": " + e.err.Error() }
func (e *sendError) Unwrap() error { return e.err }

type replyError struct {
	what  string
	reply smtp.Reply // what was read of it
	err   error
}

func (e *replyError) Error() string { return waiting(e.what) + ": " + e.err.Error() }
func (e *replyError) Unwrap() error { return e.err }

// Steps that are not a command verb, for the texts of broken().
const (
	stepGreeting = "greeting"
	stepBody     = "body"
	stepDot      = "dot"
)

// waiting says what we were waiting for at step.
func waiting(step string) string {
	switch step {
	case stepGreeting:
		return "waiting for the greeting"
	case stepDot:
		return "waiting for the reply after the message"
	}
	return "waiting for the reply to " + step
}

// sending says what we were sending at step.
func sending(step string) string {
	if step == stepBody {
		return "sending the message"
	}
	return "sending " + step
}

// broken reports a connection that died, timed out, spoke something
// other than SMTP, or answered out of step at step. The first line keeps
// the stock wording for a lost connection; a second line says what
// happened. Whatever quotes the server goes through the secrets' filter
// (secrets.go).
func (s *session) broken(step string, err error, afterDot bool) outcome {
	dup := ""
	if afterDot {
		dup = "Possible duplicate! "
	}
	var oos *outOfStep
	if errors.As(err, &oos) {
		// Found before the dot was written (step.go): never a duplicate.
		return outcome{report.Temporary, "Connected to " + s.cfg.ip + " but the session is out of step: it answered before I asked. (#4.4.2)\n" +
			s.secrets.hide(oos.Error()+".\n") + s.serverText(s.peekUnread())}
	}
	var re *replyError
	doing := sending(step)
	if errors.As(err, &re) {
		doing = waiting(step)
		if errors.Is(err, smtp.ErrMalformedReply) || errors.Is(err, smtp.ErrLineTooLong) {
			head := "Connected to " + s.cfg.ip + " but its reply was not SMTP. " + dup + "(#4.4.2)\n"
			why := re.err
			if s.authPhase {
				// The details quote the reply: only the kind of fault.
				why = smtp.ErrMalformedReply
				if errors.Is(err, smtp.ErrLineTooLong) {
					why = smtp.ErrLineTooLong
				}
			}
			return outcome{report.Temporary, head + s.secrets.hide(say.Sentence("Bad reply while "+doing, why)) + s.serverText(re.reply.Text)}
		}
	}
	head := "Connected to " + s.cfg.ip + " but connection died. " + dup + "(#4.4.2)\n"
	var detail string
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		detail = fmt.Sprintf("Timed out after %v %s.\n", s.cfg.timeout, doing)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		detail = "The server closed the connection while " + doing + ".\n"
	default:
		detail = say.Sentence("Error while "+doing, err)
	}
	return outcome{report.Temporary, head + detail}
}

// quit sends QUIT and does not wait for the answer (as stock: "waiting
// for remote side is just too ridiculous").
func (s *session) quit() {
	s.w.SetWriteDeadline(time.Now().Add(min(s.cfg.timeout, quitTimeout)))
	s.w.Write([]byte("QUIT\r\n"))
}
