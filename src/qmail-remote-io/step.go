package qmailremoteio

// Replies are matched only to commands already sent. A server that
// answers before it is asked (the 250 for the message sent together with
// the 354, every reply of the session sent up front, a reply in the
// middle of the body) is out of step: whatever we would read next was
// not said about what we are about to send, and taking it for the answer
// would report a delivery the server never confirmed. So before each
// command, before each block of the body and right before the write that
// carries the final dot, nothing may be waiting from the server; if
// something is, the session ends with a Z (exit 10 before MAIL, when
// another server may do better) and the dot is never written, so the
// server cannot have the message: no "Possible duplicate!".
//
// What cannot be told apart: bytes that arrive between that last check
// and the write of the dot, a window of microseconds that no server can
// aim at. After the dot nothing is checked: a fast server's honest answer
// may already be there, and calling it early would make a duplicate.

import (
	"fmt"
	"io"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// outOfStep is the error of a server that sent n bytes no command had
// asked for yet.
type outOfStep struct {
	n    int
	when string // "before I sent EHLO", "before the end of the message" ...
}

func (e *outOfStep) Error() string {
	return fmt.Sprintf("%d bytes arrived %s, unasked", e.n, e.when)
}

// unread is how many bytes the server sent that we have not read: in our
// buffer, or still in the kernel's.
func (s *session) unread() int {
	if s.tlsConn != nil {
		return s.pendingTLS()
	}
	return s.br.Buffered() + s.sock.Arrived()
}

// socket is what the session needs of the connection under the bytes it
// reads: how many have arrived that nobody has read, and the end. The
// transcript tests (transcript_test.go) give it a scripted server.
type socket interface {
	// Arrived is how many bytes the kernel holds for us, unread.
	Arrived() int
	// Shutdown ends the connection both ways.
	Shutdown()
}

// fdSocket is the connection's socket: fds 6 and 7, or the connector's.
type fdSocket struct{ rfd, wfd int }

// Arrived asks the kernel (TIOCINQ, alias FIONREAD: a TCP socket, the
// TLS stage's socketpair and a pipe alike).
func (f fdSocket) Arrived() int {
	if k, err := unix.IoctlGetInt(f.rfd, unix.TIOCINQ); err == nil && k > 0 {
		return k
	}
	return 0
}

func (f fdSocket) Shutdown() { unix.Shutdown(f.wfd, unix.SHUT_RDWR) }

// inStep returns an *outOfStep error when the server has sent something
// before being asked; when says before what.
func (s *session) inStep(when string) error {
	if n := s.unread(); n > 0 {
		return &outOfStep{n, when}
	}
	return nil
}

// peekUnread returns the start of what the server sent unasked, for the
// report: the bytes are known to be there, so one read returns at once.
func (s *session) peekUnread() string {
	if s.br.Buffered() == 0 {
		s.r.SetReadDeadline(time.Now().Add(time.Second))
		s.br.Peek(1)
	}
	b, _ := s.br.Peek(min(s.br.Buffered(), 512))
	return strings.ReplaceAll(string(b), "\r\n", "\n")
}

// stepWriter is the body's writer: each block goes out only if the
// server has said nothing since the 354.
type stepWriter struct {
	s *session
	w io.Writer
}

func (sw stepWriter) Write(p []byte) (int, error) {
	if err := sw.s.inStep("while I sent the message"); err != nil {
		return 0, err
	}
	return sw.w.Write(p)
}
