// qmail-remote-connect walks the candidate addresses the resolver found,
// best first: it skips those tcpto says timed out recently, connects to the
// others with timeoutconnect, and runs prog... (qmail-remote-io) on each
// connection, with the socket on fds 6 and 7 and the UCSPI variables set,
// as s6-tcpclient would.
//
// It spawns prog instead of exec'ing into it, unlike s6-tcpclient, because
// it must learn the outcome: exit 10 with one Z report means "this server
// failed before the mail transaction began", and the next candidate gets
// its turn; exit 11 says the same of a TLS failure. Anything else is final.
//
// It also decides, per connection, what the child does about STARTTLS
// (QMAILREMOTE_TLS), from trustanchors and tlsstrictness: see walk.
package qmailremoteconnect

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"qmail-remote-go/src/internal/chain"
	"qmail-remote-go/src/internal/chainenv"
	"qmail-remote-go/src/internal/connect"
	"qmail-remote-go/src/internal/outgoingip"
	"qmail-remote-go/src/internal/proc"
	"qmail-remote-go/src/internal/progress"
	"qmail-remote-go/src/internal/report"
	"qmail-remote-go/src/internal/tcpto"
	iostage "qmail-remote-go/src/qmail-remote-io"
)

const usage = "qmail-remote-connect prog..."

const progName = "qmail-remote-connect"

// Texts of the message reports this stage decides.
const (
	noConnection = "Sorry, I wasn't able to establish an SMTP connection. (#4.4.1)\n"
	noAddress    = "No address to connect to.\n"
	skippedFmt   = "%s skipped: recent connection timeouts (tcpto)."
	// Bound on the list of earlier attempts appended to noConnection;
	// report.Format cuts the whole report at 4096 bytes anyway.
	attemptsBudget = 1500
)

// config is what this stage reads from the environment (doc/chain.md).
type config struct {
	candidates []chainenv.Candidate
	port       uint16
	timeout    time.Duration
	qmailHome  string
	qmailRun   string
	nrcpt      int
	tls        connect.Policy
	// dane: the hosts with DNSSEC-secure TLSA records, by candidate name
	// (QMAILREMOTE_DANE).
	dane map[string]chainenv.DANEHost
	// tlsStage names the TLS stage (QMAILREMOTE_TLSIO's base name), for
	// a report on a connection where it, not prog, was running.
	tlsStage string
	// source: the addresses to connect from (QMAILREMOTE_OUTGOINGIP);
	// zero for a family: the kernel chooses.
	source outgoingip.Source
}

// Main is the program.
func Main(args []string) chain.Next {
	if len(args) < 2 || chain.Help(args[1]) {
		chain.Usage(usage)
	}
	cfg, err := readConfig()
	if err != nil {
		chain.Die(chain.ExitUsage, progName, "%v", err)
	}
	argv := args[1:]
	path := chain.FindProgOrDie(progName, argv[0])
	// Our own qmail-remote-io runs as a call in this process (session),
	// anything else as a child.
	_, ours := chain.Ours(path)
	inProcess := ours && filepath.Base(path) == iostage.Name
	// The progress cell tells a child that died after the dot from one
	// that died before it (package progress): qmail-remote's, or our own
	// when we run by hand.
	cell, err := progress.FromEnv()
	if err != nil {
		chain.Die(chain.ExitUsage, progName, "%v", err)
	}
	if cell == nil {
		if cell, err = progress.Create(); err != nil {
			chain.Die(chain.ExitSystem, progName, "%v", err)
		}
	}
	w := &walker{
		cfg:  cfg,
		tab:  tcpto.Open(cfg.qmailHome, cfg.qmailRun),
		dial: connect.Dial,
		run: func(c chainenv.Candidate, conn *connect.Conn, mode string) child {
			env := childEnv(c, conn, mode, cfg.tlsEnv(c, mode))
			if inProcess {
				return call(argv, env, conn, cfg.nrcpt, cell)
			}
			return spawn(path, argv, env, conn, cfg.nrcpt, cell)
		},
		label: filepath.Base(argv[0]),
	}
	if err := writeReports(chain.Stdout, w.walk()); err != nil {
		chain.Die(chain.ExitSystem, progName, "unable to write to stdout: %v", err)
	}
	return chain.Exit(0)
}

func readConfig() (config, error) {
	var cfg config
	v, err := chainenv.String(chainenv.Candidates)
	if err != nil {
		return cfg, err
	}
	if cfg.candidates, err = chainenv.ParseCandidates(v); err != nil {
		return cfg, err
	}
	port, err := chainenv.Int(chainenv.Port, 1, 65535)
	if err != nil {
		return cfg, err
	}
	cfg.port = uint16(port)
	if cfg.timeout, err = chainenv.Seconds(chainenv.TimeoutConnect, 1); err != nil {
		return cfg, err
	}
	if cfg.qmailHome, cfg.qmailRun, err = chainenv.Dirs(); err != nil {
		return cfg, err
	}
	n, err := chainenv.Int(chainenv.Rcpts, 1, 1<<20)
	if err != nil {
		return cfg, err
	}
	cfg.nrcpt = int(n)
	// Both may be unset, for use by hand: no anchors, level 0, which is
	// what qmail-remote sets for absent control files.
	cfg.tls.Anchors = os.Getenv(chainenv.TrustAnchors) != ""
	if cfg.tls.Strictness, err = connect.ParseStrictness(os.Getenv(chainenv.TLSStrictness)); err != nil {
		return cfg, &chainenv.Error{Name: chainenv.TLSStrictness, Reason: err.Error()}
	}
	cfg.tls.Level = os.Getenv(chainenv.TLSPolicy)
	if err := connect.ParseLevel(cfg.tls.Level); err != nil {
		return cfg, &chainenv.Error{Name: chainenv.TLSPolicy, Reason: err.Error()}
	}
	hosts, err := chainenv.ParseDANE(os.Getenv(chainenv.DANE))
	if err != nil {
		return cfg, err
	}
	cfg.dane = map[string]chainenv.DANEHost{}
	for _, h := range hosts {
		cfg.dane[h.Name] = h
	}
	if cfg.source, err = outgoingip.ParseEnv(os.Getenv(chainenv.OutgoingIP)); err != nil {
		return cfg, &chainenv.Error{Name: chainenv.OutgoingIP, Reason: err.Error()}
	}
	cfg.tlsStage = "the TLS stage"
	if v := os.Getenv(chainenv.TLSIO); v != "" {
		cfg.tlsStage = filepath.Base(v)
	}
	return cfg, nil
}

// verdict says what a child's run means for the walk.
type verdict int

const (
	// final: the child's output is the delivery's outcome; forward it.
	final verdict = iota
	// next: the child failed before MAIL (exit 10, one Z): try the next
	// candidate.
	next
	// tlsFailed: like next, but what failed was TLS (exit 11, one Z):
	// at tlsstrictness 0 the same address gets a cleartext retry.
	tlsFailed
	// broken: the child died or said something we cannot trust. It may
	// have started the transaction, so no other candidate may be tried.
	broken
)

// child is the outcome of one run of prog.
type child struct {
	verdict verdict
	out     []byte // final: the child's whole output
	text    string // next: the Z text; broken: what went wrong
	// broken: how far it got, from the progress cell (package
	// progress), and whether the TLS stage was what ran.
	phase, stage byte
}

type walker struct {
	cfg   config
	tab   *tcpto.Table
	dial  func(remote netip.AddrPort, source netip.Addr, timeout time.Duration) (*connect.Conn, error)
	run   func(c chainenv.Candidate, conn *connect.Conn, mode string) child
	label string // prog's name, for reports
}

// walk tries the candidates in order, the way stock qmail-remote's main
// loop does (tcpto, connect, tcpto_err), and returns the output to print:
// the child's reports or one Z. With trust anchors, tlsstrictness decides
// the passes (doc/chain.md, "STARTTLS"): level 0 one pass "try" with a
// cleartext retry of an address whose TLS failed, level 1 a "require"
// pass and then a cleartext one over the addresses that answered, level 2
// one "require" pass.
func (w *walker) walk() []byte {
	if len(w.cfg.candidates) == 0 {
		return report.Format(report.Temporary, noConnection+noAddress)
	}
	p := w.cfg.tls
	// Level 2 verifies every server: without trust anchors nothing can
	// verify, and connecting would only lead to cleartext or nothing.
	// qmail-remote and qmail-remote-routes refuse this already; this is
	// for a connector run by hand, and for whatever sets level 2 next.
	if p.Level == "" && p.Strictness == 2 && !p.Anchors {
		return report.Format(report.Temporary, "Unable to read control files: tlsstrictness is 2 but no trust anchors are set ("+
			chainenv.TrustAnchors+" is empty): no server could be verified, and mail never goes in cleartext at level 2. (#4.3.0)\n")
	}
	if p.Level == connect.LevelVerify && !p.Anchors {
		return report.Format(report.Temporary, "Unable to read control files: control/tlspolicy says verify for this destination but no trust anchors are set ("+
			chainenv.TrustAnchors+" is empty): no server could be verified. (#4.3.0)\n")
	}
	var reasons []string
	var answered []chainenv.Candidate // connected in the first pass
	for _, c := range w.cfg.candidates {
		_, hasDANE := w.cfg.dane[c.Name]
		level := p.HostLevel(hasDANE)
		mode := p.Mode(level)
		if !p.CanUse(hasDANE) {
			reasons = append(reasons, p.Label(connect.ModeRequire)+c.Name+" has no DNSSEC-secure TLSA records, and control/tlspolicy says dane-only.")
			continue
		}
		if w.tab.Skip(c.Addr) {
			reasons = append(reasons, p.Label(mode)+fmt.Sprintf(skippedFmt, c.Addr))
			continue
		}
		out, res, ok := w.try(c, mode, &reasons)
		if out != nil {
			return out
		}
		if !ok {
			continue
		}
		answered = append(answered, c)
		if res == tlsFailed && p.Retry(level) {
			// Same address at once, without STARTTLS: the server
			// took the connection, so it is up; only TLS failed.
			if out, _, _ := w.try(c, connect.ModeNone, &reasons); out != nil {
				return out
			}
		}
	}
	if p.SecondPass() {
		for _, c := range answered {
			if out, _, _ := w.try(c, connect.ModeNone, &reasons); out != nil {
				return out
			}
		}
	}
	return report.Format(report.Temporary, noConnection+summary(reasons))
}

// try connects to c and runs the child with QMAILREMOTE_TLS mode. It
// returns the output to print when the walk ends here; otherwise it adds
// the reason to reasons, and says whether the connect worked and what the
// child's verdict was.
func (w *walker) try(c chainenv.Candidate, mode string, reasons *[]string) (out []byte, v verdict, connected bool) {
	p := w.cfg.tls
	source := w.cfg.source.V6
	if c.Addr.Unmap().Is4() {
		source = w.cfg.source.V4
	}
	conn, err := w.dial(netip.AddrPortFrom(c.Addr, w.cfg.port), source, w.cfg.timeout)
	if connect.BindFailed(err) {
		// The admin's address is wrong for every server of this
		// family: stop, loudly, rather than go out from an address
		// the kernel picks (doc/outgoingip.md).
		return report.Format(report.Temporary, "Unable to connect to "+c.Addr.String()+" from the address control/outgoingip gives: "+
			connect.BindReason(source, err)+". (#4.3.0)\n"), final, false
	}
	if err != nil {
		// As stock: a timeout counts, any other connect error
		// clears (the host answered, so it is up). A socket()
		// failure says nothing about the host.
		if connect.Attempted(err) {
			w.tab.Record(c.Addr, connect.TimedOut(err))
		}
		*reasons = append(*reasons, p.Label(mode)+connect.Reason(c.Addr, err))
		return nil, next, false
	}
	w.tab.Record(c.Addr, false)
	res := w.run(c, conn, mode)
	switch res.verdict {
	case final:
		return res.out, final, true
	case next:
		*reasons = append(*reasons, p.Label(mode)+res.text)
		return nil, next, true
	case tlsFailed:
		// Whatever the mode, this attempt failed in TLS.
		*reasons = append(*reasons, p.Label(connect.ModeRequire)+res.text)
		return nil, tlsFailed, true
	}
	// The child may have sent MAIL, RCPT, even the whole message and
	// the dot before it died: trying another server could deliver
	// twice. The progress cell says whether the dot may be out; only
	// then is it a possible duplicate (as stock's "connection died"
	// after the dot).
	label := w.label
	if res.stage == progress.StageTLS {
		label = w.cfg.tlsStage
	}
	dup := ""
	if progress.DotMayBeOut(res.phase) {
		dup = " Possible duplicate!"
	}
	return report.Format(report.Temporary, fmt.Sprintf(
		"Connected to %s but %s failed: %s.%s (#4.4.2)\n", c.Addr, label, res.text, dup)), broken, true
}

// summary gives the last reason in full (better than stock's bare
// "Sorry"), then the earlier ones, one line each, while they fit.
func summary(reasons []string) string {
	var b strings.Builder
	last := reasons[len(reasons)-1]
	b.WriteString(strings.TrimRight(last, "\n"))
	b.WriteString("\n")
	if len(reasons) == 1 {
		return b.String()
	}
	b.WriteString("Earlier attempts:\n")
	used := 0
	for i, r := range reasons[:len(reasons)-1] {
		line, _, _ := strings.Cut(strings.TrimRight(r, "\n"), "\n")
		if used+len(line)+1 > attemptsBudget {
			fmt.Fprintf(&b, "(%d more)\n", len(reasons)-1-i)
			break
		}
		used += len(line) + 1
		b.WriteString(line)
		b.WriteString("\n")
	}
	return b.String()
}

// writeReports writes out (well-formed reports) one report per write(2):
// a pipe write of at most PIPE_BUF bytes is atomic, so a crash can never
// leave half a report behind.
func writeReports(w io.Writer, out []byte) error {
	for len(out) > 0 {
		i := bytes.IndexByte(out, 0)
		if i < 0 {
			i = len(out) - 1
		}
		if _, err := w.Write(out[:i+1]); err != nil {
			return err
		}
		out = out[i+1:]
	}
	return nil
}

// ucspiVars are replaced in the child's environment.
var ucspiVars = []string{chainenv.Proto, chainenv.TCPRemoteIP, chainenv.TCPRemotePort,
	chainenv.TCPLocalIP, chainenv.TCPLocalPort, chainenv.MXName, chainenv.TLS,
	chainenv.TLSLevel, chainenv.TLSA, chainenv.TLSANames}

// tlsEnv says how the child authenticates the server of c under TLS:
// the level of control/tlspolicy for this host (none when tlsstrictness
// decides), and at dane its TLSA records and reference names.
func (cfg *config) tlsEnv(c chainenv.Candidate, mode string) []string {
	h, hasDANE := cfg.dane[c.Name]
	level := cfg.tls.HostLevel(hasDANE)
	if level == "" || mode == connect.ModeNone {
		return nil
	}
	env := []string{chainenv.TLSLevel + "=" + level}
	if level == connect.LevelDANE {
		env = append(env, chainenv.TLSA+"="+h.Records, chainenv.TLSANames+"="+strings.Join(h.Names, ","))
	}
	return env
}

// childEnv is the environment of prog on conn: ours, with the UCSPI
// variables, the progress cell and the TLS settings of this connection.
func childEnv(c chainenv.Candidate, conn *connect.Conn, mode string, tls []string) []string {
	return append(append(chainenv.Without(append(ucspiVars, progress.Env)...), tls...),
		chainenv.Proto+"=TCP",
		chainenv.TCPRemoteIP+"="+conn.Remote.Addr().String(),
		chainenv.TCPRemotePort+"="+strconv.Itoa(int(conn.Remote.Port())),
		chainenv.TCPLocalIP+"="+conn.Local.Addr().String(),
		chainenv.TCPLocalPort+"="+strconv.Itoa(int(conn.Local.Port())),
		chainenv.MXName+"="+c.Name,
		chainenv.TLS+"="+mode)
}

// withCell sets the progress cell's descriptor in env.
func withCell(env []string, cellFD string) []string {
	return append(chainenv.WithoutIn(env, progress.Env), progress.Env+"="+cellFD)
}

// outputLimit bounds what a child may print: nrcpt recipient reports and
// one message report, each at most report.Max bytes. More is garbage.
func outputLimit(nrcpt int) int { return (nrcpt + 1) * report.Max }

// outputGrace is how long we keep reading the child's stdout after it
// exited: a grandchild that inherited the pipe must not hold us forever.
const outputGrace = time.Second

// spawn runs prog on conn and judges its exit. It closes conn.
func spawn(path string, argv, env []string, conn *connect.Conn, nrcpt int, cell *progress.Cell) child {
	sock := os.NewFile(uintptr(conn.FD), "socket")
	defer sock.Close()
	rd, wr, err := os.Pipe()
	if err != nil {
		chain.Die(chain.ExitSystem, progName, "unable to create a pipe: %v", err)
	}
	defer rd.Close()
	// Every stage seeks fd 0 to the start itself (doc/chain.md); rewinding
	// here too costs nothing and keeps a careless prog from sending an
	// empty message after an earlier candidate read it.
	unix.Seek(0, 0, io.SeekStart)

	// The child's diagnostics are kept (bounded) so that a crash can be
	// explained in the Z report: under qmail-remote nobody else reads them.
	diag := &proc.Bounded{Max: 1024}
	cmd := &exec.Cmd{
		Path:   path,
		Args:   argv,
		Env:    withCell(env, strconv.Itoa(progress.FD)),
		Stdin:  os.Stdin,
		Stdout: wr,
		Stderr: diag,
		// ExtraFiles[i] is fd 3+i: the progress cell on 3
		// (QMAILREMOTE_PROGRESSFD), 4 and 5 closed, the socket on 6
		// (read) and 7 (write), the UCSPI client convention.
		ExtraFiles: []*os.File{cell.File(), nil, nil, sock, sock},
		// A grandchild that inherited the pipe must not hold us.
		WaitDelay: outputGrace,
	}
	type output struct {
		b        []byte
		overflow bool
	}
	done := make(chan output, 1)
	cell.Reset()
	// If we die, prog must not go on talking to the server while
	// qmail-remote reports a failure: that would be a duplicate
	// (proc.Run).
	e, err := proc.Run(cmd, func() {
		wr.Close()
		sock.Close()
		go func() {
			var o output
			limit := outputLimit(nrcpt)
			buf := make([]byte, 4096)
			for {
				n, err := rd.Read(buf)
				if len(o.b)+n > limit {
					o.overflow = true
					cmd.Process.Kill()
					break
				}
				o.b = append(o.b, buf[:n]...)
				if err != nil {
					break
				}
			}
			done <- o
		}()
	})
	if err != nil {
		wr.Close()
		chain.Die(chain.ExitSystem, progName, "unable to run %s: %v", path, err)
	}
	rd.SetReadDeadline(time.Now().Add(outputGrace))
	o := <-done
	chain.Stderr.Write(diag.B)
	return conclude(e, o.b, o.overflow, diag, nrcpt, cell)
}

// call runs our own qmail-remote-io on conn in this process, with what a
// spawn would have given it: env (childEnv), the socket as
// its server connection, its stdout and stderr bounded as the pipes are.
// It closes conn.
func call(argv, env []string, conn *connect.Conn, nrcpt int, cell *progress.Cell) child {
	unix.Seek(0, 0, io.SeekStart)
	saved := os.Environ()
	chainenv.Replace(withCell(env, cell.EnvValue()))
	defer chainenv.Replace(saved)
	out := &proc.Bounded{Max: int64(outputLimit(nrcpt)) + 1}
	diag := &proc.Bounded{Max: 1024}
	cell.Reset()
	st := iostage.Call(argv, conn.FD, out, diag)
	chain.Stderr.Write(diag.B)
	return conclude(st, out.B, out.Over, diag, nrcpt, cell)
}

// conclude judges a finished run of prog from how it ended and what it
// printed.
func conclude(e chain.Ended, out []byte, overflow bool, diag *proc.Bounded, nrcpt int, cell *progress.Cell) child {
	var ch child
	if overflow {
		ch = child{verdict: broken, text: fmt.Sprintf("more than %d bytes of output", outputLimit(nrcpt))}
	} else {
		ch = judge(e, out, nrcpt)
	}
	if ch.verdict == broken {
		if l := diag.FirstLine(); l != "" {
			ch.text += ": " + l
		}
		ch.phase, ch.stage = cell.Read()
	}
	return ch
}

// judge reads a finished child's exit and output.
func judge(e chain.Ended, out []byte, nrcpt int) child {
	moveOn := e.Exited && (e.Code == chain.ExitNextCandidate || e.Code == chain.ExitTLSFailed)
	// A complete, well-formed set of reports is the truth about the
	// delivery, however the child ended after writing it: a K is written
	// only after the server's 2xx to the dot, and the TLS stage may be
	// killed while it waits for close_notify to go out. Turning that K into
	// a Z would make qmail send the mail again.
	if _, err := report.Parse(out, nrcpt); err == nil && !moveOn {
		return child{verdict: final, out: out}
	}
	switch {
	case !e.Exited:
		return child{verdict: broken, text: e.How}
	case e.Code == 0:
		_, err := report.Parse(out, nrcpt)
		return child{verdict: broken, text: "malformed output (exit status 0): " + err.Error()}
	case moveOn:
		res, err := report.Parse(out, 0)
		if err != nil || res.Message.Letter != report.Temporary {
			detail := "a D or K report"
			if err != nil {
				detail = err.Error()
			}
			return child{verdict: broken, text: fmt.Sprintf("exit status %d without a single Z report: %s", e.Code, detail)}
		}
		v := next
		if e.Code == chain.ExitTLSFailed {
			v = tlsFailed
		}
		return child{verdict: v, text: res.Message.Text}
	}
	return child{verdict: broken, text: fmt.Sprintf("exit status %d", e.Code)}
}
