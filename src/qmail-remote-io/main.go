// Command qmail-remote-io speaks SMTP to one server on fds 6 (read) and 7
// (write) and delivers the message on fd 0 to it. The connector runs it once
// per candidate address and learns from its exit status whether to try the
// next one.
//
// The steps, with the reports (doc/chain.md, SPEC 2 and 7):
//  1. greeting: must be 220.
//  2. EHLO helohost; anything but 2xx: HELO helohost, which must be 2xx.
//  3. TLS policy (STARTTLS itself is not there yet; tlsstrictness 2 refuses
//     to go on in cleartext).
//     A failure in steps 1 to 3 is one Z report and exit 10: nothing of
//     the transaction has happened, another server may do better.
//  4. MAIL FROM, RCPT TO for each recipient in lock-step (r/h/s reports),
//     DATA, the body, the dot, the reply: one message report, exit 0.
//  5. QUIT, without waiting for its reply.
package main

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
	"qmail-remote-go/src/internal/report"
	"qmail-remote-go/src/internal/smtp"
)

const usage = "qmail-remote-io"

const prog = "qmail-remote-io"

// Server fds, UCSPI client convention.
const (
	fdRead  = 6
	fdWrite = 7
)

// quitTimeout bounds the QUIT write: the outcome is decided by then, and a
// server that stalls on QUIT must not delay the report by timeoutremote.
const quitTimeout = 10 * time.Second

type config struct {
	helo          string
	sender        string
	rcpts         []string
	timeout       time.Duration
	trustAnchors  string
	tlsStrictness int64
	ip            string // for the report texts
}

func main() {
	if len(os.Args) != 1 {
		chain.Usage(usage)
	}
	cfg := readEnv()
	s := &session{cfg: cfg, r: openServerFd(fdRead), w: openServerFd(fdWrite)}
	s.br = bufio.NewReaderSize(s.r, 4096)
	os.Exit(s.run())
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
	// Optional, so that the program can be run by hand without TLS
	// settings: unset means no trust anchors and strictness 0.
	cfg.trustAnchors = os.Getenv(chainenv.TrustAnchors)
	if _, ok := os.LookupEnv(chainenv.TLSStrictness); ok {
		if cfg.tlsStrictness, err = chainenv.Int(chainenv.TLSStrictness, 0, 2); err != nil {
			die(err)
		}
	}
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
	f       *os.File
	timeout time.Duration
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
	cfg  config
	r, w *os.File
	br   *bufio.Reader
	ehlo smtp.Reply // the EHLO reply, extensions (for a later use)
	// inTransaction: MAIL has been sent. Before, every failure is exit 10.
	inTransaction bool
}

// outcome ends the session: one message report and the exit status.
type outcome struct {
	letter byte
	text   string
}

func (s *session) run() int {
	// fd 0 is a regular file; the pre-scan read it to the end.
	if _, err := os.Stdin.Seek(0, io.SeekStart); err != nil {
		report.Write(os.Stdout, report.Temporary, "Unable to read message. (#4.3.0)\n"+sentence("Cannot seek fd 0", err))
		return 0
	}
	o, quit := s.deliver()
	if quit {
		s.quit()
	}
	// The connector may hold a copy of the socket: shut it down so the
	// server sees the end now, and, in the middle of DATA, drops the
	// message instead of waiting for the dot.
	unix.Shutdown(fdWrite, unix.SHUT_RDWR)
	report.Write(os.Stdout, o.letter, o.text)
	if !s.inTransaction {
		return chain.ExitNextCandidate
	}
	return 0
}

// deliver runs the conversation. It returns the message report and whether
// QUIT may be sent (not after a broken connection, nor in the middle of
// DATA, where it would be message text).
func (s *session) deliver() (outcome, bool) {
	ip := s.cfg.ip
	r, err := s.reply(stepGreeting)
	if err != nil {
		return s.broken(stepGreeting, err, false), false
	}
	if r.Code != 220 {
		return outcome{report.Temporary, "Connected to " + ip + " but greeting failed.\n" + report.RemoteSaid(r.Text)}, true
	}

	if r, err = s.command("EHLO "+s.cfg.helo, "EHLO"); err != nil {
		return s.broken("EHLO", err, false), false
	}
	if r.Class() == 2 {
		s.ehlo = r
	} else {
		// Servers that do not speak ESMTP exist (RFC 5321 3.2).
		if r, err = s.command("HELO "+s.cfg.helo, "HELO"); err != nil {
			return s.broken("HELO", err, false), false
		}
		if r.Class() != 2 {
			return outcome{report.Temporary, "Connected to " + ip + " but my name was rejected.\n" + report.RemoteSaid(r.Text)}, true
		}
	}

	// STARTTLS comes with a later version. Until then, strictness 2 means
	// that this server cannot have the mail.
	if s.cfg.trustAnchors != "" && s.cfg.tlsStrictness == 2 {
		return outcome{report.Temporary, "Connected to " + ip + " but TLS is required (tlsstrictness 2) and this qmail-remote-io cannot do STARTTLS yet. (#4.7.0)\n"}, true
	}

	// An envelope address holding CR or LF would forge commands (stock
	// quote.c escapes them with a backslash, which a server reading lines
	// does not see). Such an address can never be delivered.
	sender := smtp.QuoteAddress(s.cfg.sender)
	if strings.ContainsAny(sender, "\r\n") {
		s.inTransaction = true // a final answer: no other server will do better
		return outcome{report.Permanent, "Sorry, the sender address holds a CR or LF, which SMTP cannot carry. (#5.1.7)\n"}, true
	}

	s.inTransaction = true
	if r, err = s.command("MAIL FROM:<"+sender+">", "MAIL"); err != nil {
		return s.broken("MAIL", err, false), false
	}
	switch r.Class() {
	case 2:
	case 5:
		return outcome{report.Permanent, "Connected to " + ip + " but sender was rejected.\n" + report.RemoteSaid(r.Text)}, true
	default:
		return outcome{report.Temporary, "Connected to " + ip + " but sender was rejected.\n" + report.RemoteSaid(r.Text)}, true
	}

	accepted := 0
	for _, rcpt := range s.cfg.rcpts {
		q := smtp.QuoteAddress(rcpt)
		if strings.ContainsAny(q, "\r\n") {
			report.Write(os.Stdout, report.RcptPermanent, "Sorry, the recipient address holds a CR or LF, which SMTP cannot carry. (#5.1.3)\n")
			continue
		}
		if r, err = s.command("RCPT TO:<"+q+">", "RCPT"); err != nil {
			return s.broken("RCPT", err, false), false
		}
		switch r.Class() {
		case 2:
			report.Write(os.Stdout, report.RcptOK, "")
			accepted++
		case 5:
			report.Write(os.Stdout, report.RcptPermanent, ip+" does not like recipient.\n"+report.RemoteSaid(r.Text))
		default:
			report.Write(os.Stdout, report.RcptTemporary, ip+" does not like recipient.\n"+report.RemoteSaid(r.Text))
		}
	}
	if accepted == 0 {
		return outcome{report.Permanent, "Giving up on " + ip + ".\n"}, true
	}

	if r, err = s.command("DATA", "DATA"); err != nil {
		return s.broken("DATA", err, false), false
	}
	switch {
	case r.Code == 354:
	case r.Class() == 5:
		return outcome{report.Permanent, ip + " failed on DATA command.\n" + report.RemoteSaid(r.Text)}, true
	default:
		return outcome{report.Temporary, ip + " failed on DATA command.\n" + report.RemoteSaid(r.Text)}, true
	}

	_, err = smtp.SendBody(deadlineWriter{s.w, s.cfg.timeout}, msgReader{os.Stdin})
	var mre *msgReadError
	switch {
	case errors.Is(err, smtp.ErrPartialFinalLine):
		// The pre-scan saw a complete last line: the file changed since.
		// Leaving without the dot makes the server drop the message.
		return outcome{report.Temporary, "Unable to read message. (#4.3.0)\nThe message changed while I was sending it: its last line is now partial.\n"}, false
	case errors.As(err, &mre):
		return outcome{report.Temporary, "Unable to read message. (#4.3.0)\n" + sentence("Error reading the message", mre.err)}, false
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
		return outcome{report.Delivered, ip + " accepted message.\n" + report.RemoteSaid(r.Text)}, true
	case 5:
		return outcome{report.Permanent, ip + " failed after I sent the message.\n" + report.RemoteSaid(r.Text)}, true
	case 4:
		return outcome{report.Temporary, ip + " failed after I sent the message.\n" + report.RemoteSaid(r.Text)}, true
	default:
		// 3xx after the dot is no answer SMTP allows; stock would say K.
		return outcome{report.Temporary, ip + " failed after I sent the message: that reply is not a 2xx, 4xx or 5xx. Possible duplicate! (#4.4.2)\n" + report.RemoteSaid(r.Text)}, true
	}
}

// command sends one command line and reads its reply.
func (s *session) command(line, verb string) (smtp.Reply, error) {
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

// broken reports a connection that died, timed out, or spoke something
// other than SMTP at step. The first line keeps the stock wording for a
// lost connection; a second line says what happened.
func (s *session) broken(step string, err error, afterDot bool) outcome {
	dup := ""
	if afterDot {
		dup = "Possible duplicate! "
	}
	var re *replyError
	doing := sending(step)
	if errors.As(err, &re) {
		doing = waiting(step)
		if errors.Is(err, smtp.ErrMalformedReply) || errors.Is(err, smtp.ErrReplyTooLong) {
			head := "Connected to " + s.cfg.ip + " but its reply was not SMTP. " + dup + "(#4.4.2)\n"
			return outcome{report.Temporary, head + sentence("Bad reply while "+doing, re.err) + report.RemoteSaid(re.reply.Text)}
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
		detail = sentence("Error while "+doing, err)
	}
	return outcome{report.Temporary, head + detail}
}

// rootCause drops the *os.PathError wrapping ("read fd6: ...") of an error.
func rootCause(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// sentence formats "what: err.\n".
func sentence(what string, err error) string {
	return what + ": " + rootCause(err).Error() + ".\n"
}

// quit sends QUIT and does not wait for the answer (SPEC 7; stock: "waiting
// for remote side is just too ridiculous").
func (s *session) quit() {
	s.w.SetWriteDeadline(time.Now().Add(min(s.cfg.timeout, quitTimeout)))
	s.w.Write([]byte("QUIT\r\n"))
}
