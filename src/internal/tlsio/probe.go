package tlsio

import (
	"io"
	"syscall"

	"golang.org/x/sys/unix"
)

// Probe is the socket under a TLS session, for a program that must know
// whether the server said something it has not asked for yet (the
// out-of-step check of qmail-remote-io). While On, a Read takes what has
// arrived without waiting for more, so that crypto/tls reads every whole
// record that is there: a reply sent early shows as plaintext, and a
// session ticket, which is no reply, does not.
type Probe struct {
	HalfConn
	rc syscall.RawConn // nil: the connection has no descriptor
	On bool
}

// NewProbe wraps c, which should have a descriptor (syscall.Conn: a TCP
// connection, FilesConn); without one, a probing Read finds nothing.
func NewProbe(c HalfConn) *Probe {
	p := &Probe{HalfConn: c}
	if sc, ok := c.(syscall.Conn); ok {
		p.rc, _ = sc.SyscallConn()
	}
	return p
}

// errNothingYet is a would-block read: a net.Error that says temporary,
// so that crypto/tls keeps the session usable after it.
type errNothingYet struct{}

func (errNothingYet) Error() string   { return "nothing to read yet" }
func (errNothingYet) Timeout() bool   { return true }
func (errNothingYet) Temporary() bool { return true }

func (p *Probe) Read(b []byte) (int, error) {
	if !p.On {
		return p.HalfConn.Read(b)
	}
	if p.rc == nil {
		return 0, errNothingYet{}
	}
	var n int
	var rerr error
	p.rc.Read(func(fd uintptr) bool {
		n, rerr = unix.Read(int(fd), b)
		return true // one try: never wait for the descriptor
	})
	switch {
	case rerr == unix.EAGAIN || rerr == unix.EINTR:
		return 0, errNothingYet{}
	case rerr != nil:
		return 0, rerr
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Arrived is how many bytes the kernel holds for us, unread (TIOCINQ).
func (p *Probe) Arrived() int {
	k := 0
	if p.rc != nil {
		p.rc.Control(func(fd uintptr) {
			if v, err := unix.IoctlGetInt(int(fd), unix.TIOCINQ); err == nil && v > 0 {
				k = v
			}
		})
	}
	return k
}

// Shutdown ends the connection both ways, for whoever else holds the
// socket too.
func (p *Probe) Shutdown() {
	if p.rc != nil {
		p.rc.Control(func(fd uintptr) { unix.Shutdown(int(fd), unix.SHUT_RDWR) })
		return
	}
	p.HalfConn.CloseWrite()
}
