package tlsio

import (
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// HalfConn is a connection whose writing side can be shut down alone.
type HalfConn interface {
	net.Conn
	CloseWrite() error
}

// FdConn makes the network descriptors (UCSPI: rfd to read, wfd to write)
// one HalfConn and closes the descriptors themselves. When both are the
// same socket, as s6-tcpclient and qmail-remote-connect leave it, the
// result is a *net.TCPConn (or whatever net.FileConn makes of it); two
// different descriptors (two pipes, in tests or under a UCSPI tool that
// works that way) are wrapped together. Either way reads and writes take
// deadlines.
func FdConn(rfd, wfd int) (HalfConn, error) {
	var rst, wst unix.Stat_t
	if err := unix.Fstat(rfd, &rst); err != nil {
		return nil, fmt.Errorf("fd %d: %w", rfd, err)
	}
	if err := unix.Fstat(wfd, &wst); err != nil {
		return nil, fmt.Errorf("fd %d: %w", wfd, err)
	}
	same := rst.Dev == wst.Dev && rst.Ino == wst.Ino
	if same && rst.Mode&unix.S_IFMT == unix.S_IFSOCK {
		f := os.NewFile(uintptr(rfd), "network")
		c, err := net.FileConn(f) // a close-on-exec dup
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("fd %d: %w", rfd, err)
		}
		if wfd != rfd {
			unix.Close(wfd)
		}
		if hc, ok := c.(HalfConn); ok {
			return hc, nil
		}
		return &plainHalf{Conn: c}, nil
	}
	// O_NONBLOCK lets Go's poller take the descriptors, which is what
	// makes deadlines work on plain files; close-on-exec keeps them out
	// of the application, which must only ever see the socketpair.
	for _, fd := range []int{rfd, wfd} {
		if err := unix.SetNonblock(fd, true); err != nil {
			return nil, fmt.Errorf("fd %d: %w", fd, err)
		}
		unix.CloseOnExec(fd)
	}
	return &fileConn{r: os.NewFile(uintptr(rfd), "network-read"), w: os.NewFile(uintptr(wfd), "network-write")}, nil
}

// fileConn is a connection made of two files.
type fileConn struct{ r, w *os.File }

func (c *fileConn) Read(b []byte) (int, error)  { return c.r.Read(b) }
func (c *fileConn) Write(b []byte) (int, error) { return c.w.Write(b) }
func (c *fileConn) Close() error {
	c.w.Close()
	return c.r.Close()
}
func (c *fileConn) CloseWrite() error    { return c.w.Close() }
func (c *fileConn) LocalAddr() net.Addr  { return fdAddr("local") }
func (c *fileConn) RemoteAddr() net.Addr { return fdAddr("remote") }
func (c *fileConn) SetDeadline(t time.Time) error {
	c.w.SetWriteDeadline(t)
	return c.r.SetReadDeadline(t)
}
func (c *fileConn) SetReadDeadline(t time.Time) error  { return c.r.SetReadDeadline(t) }
func (c *fileConn) SetWriteDeadline(t time.Time) error { return c.w.SetWriteDeadline(t) }

type fdAddr string

func (a fdAddr) Network() string { return "fd" }
func (a fdAddr) String() string  { return string(a) }

// plainHalf is a socket type without half-close: closing the writing side
// is a no-op, the whole thing closes at the end.
type plainHalf struct{ net.Conn }

func (plainHalf) CloseWrite() error { return nil }

// FilesConn is the connection on the socket files r and w (the same
// socket, or two descriptors of it), which the caller keeps and closes
// itself: Close does nothing, and CloseWrite shuts down the writing side
// of wfd, the socket under w. It is what a program that already speaks on
// the socket hands to crypto/tls at STARTTLS.
func FilesConn(r, w *os.File, wfd int) HalfConn { return &socketFiles{fileConn{r, w}, wfd} }

type socketFiles struct {
	fileConn
	wfd int
}

func (c *socketFiles) Close() error      { return nil }
func (c *socketFiles) CloseWrite() error { return unix.Shutdown(c.wfd, unix.SHUT_WR) }

// SyscallConn is the reading side's: what the out-of-step check (Probe)
// needs.
func (c *socketFiles) SyscallConn() (syscall.RawConn, error) { return c.r.SyscallConn() }
