package smtptest

// Faults for the fault matrix (src/chaintest/faults_test.go, doc/faults.md)
// that the replies of a Script cannot express: a server that stops reading
// altogether, and a server that breaks the TLS handshake after STARTTLS.
//
// Malformed replies need no special support: a reply is sent as written,
// so "hello there" (no code), "250-ok\n550 no" (mixed codes), a line of a
// megabyte or a NUL byte in the text go out as they are.

import (
	"io"
	"net"
	"time"
)

// Freeze is a special reply, like Stall, except that the server stops
// reading too: a client writing to it (a body) blocks once the socket
// buffers are full. The connection stays open until the server closes.
const Freeze = "!freeze"

// freeze waits, neither reading nor writing, until the server closes.
func (s *Server) freeze() {
	<-s.done
}

// handshakeFault plays Script.Handshake instead of the TLS handshake that
// follows a 220 to STARTTLS. It first reads the client's first TLS record
// (its ClientHello), so that the client is inside its handshake, then:
// Close or Reset end the connection, Stall reads on without answering,
// Freeze neither reads nor answers, and anything else is sent as raw bytes
// where the ServerHello should be (not TLS: a line of text, NUL bytes),
// after which the server reads until the client gives up.
func (s *Server) handshakeFault(c *conn, fault string) {
	c.raw.SetReadDeadline(time.Now().Add(handshakeTimeout))
	if s.closing() {
		return
	}
	var hdr [5]byte // RFC 8446 5.1: type, version, 16-bit length
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return
	}
	n := int64(hdr[3])<<8 | int64(hdr[4])
	if _, err := io.CopyN(io.Discard, c.r, n); err != nil {
		return
	}
	// As in session: clear the deadline, then look at done, so that
	// Close's deadline cannot be lost.
	c.raw.SetReadDeadline(time.Time{})
	if s.closing() {
		return
	}
	switch fault {
	case Close:
		return
	case Reset:
		if tc, ok := c.raw.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		return
	case Stall:
		io.Copy(io.Discard, c.r)
		return
	case Freeze:
		s.freeze()
		return
	}
	c.w.WriteString(fault)
	if c.w.Flush() == nil {
		io.Copy(io.Discard, c.r)
	}
}
