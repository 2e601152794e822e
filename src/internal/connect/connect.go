// Package connect opens the TCP connection to a mail server the way
// qmail's timeoutconn does: a non-blocking connect(2) bounded by a timeout,
// on a raw socket, so that the caller can hand the descriptor to a child
// process (fd 6 and 7) instead of wrapping it in Go's net package.
package connect

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// ErrTimeout says the server did not answer within the timeout: the case
// tcpto counts.
var ErrTimeout = errors.New("timed out")

// Error is a failed attempt. Op is "socket", "setsockopt" or "bind" when
// no packet can have left (the attempt says nothing about the server),
// "connect" otherwise.
type Error struct {
	Op  string
	Err error // ErrTimeout or a unix.Errno
}

func (e *Error) Error() string { return e.Op + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Conn is a connected, blocking TCP socket.
type Conn struct {
	FD     int
	Local  netip.AddrPort // as bound, the port as the kernel chose it
	Remote netip.AddrPort
}

// Dial connects to remote within timeout. It binds only when source is
// valid (the address control/outgoingip gives for remote's family):
// otherwise the kernel picks the source address, as it should unless the
// admin says otherwise (binding to the helohost's address breaks hosts
// behind NAT). A source of the other family is ignored. A failed bind is
// an *Error with Op "bind": BindFailed. The returned descriptor is
// blocking and close-on-exec.
func Dial(remote netip.AddrPort, source netip.Addr, timeout time.Duration) (*Conn, error) {
	ip := remote.Addr().Unmap()
	remote = netip.AddrPortFrom(ip, remote.Port())
	family := unix.AF_INET6
	if ip.Is4() {
		family = unix.AF_INET
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, &Error{"socket", err}
	}
	// SMTP is lock-step: each command is one small write answered before
	// the next. With Nagle's algorithm on, a small write that follows
	// another (the final dot after the body, QUIT after the dot) waits for
	// the peer's delayed ACK, about 40 ms on Linux, per delivery.
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		unix.Close(fd)
		return nil, &Error{"setsockopt", err}
	}
	if source.IsValid() && source.Is4() == ip.Is4() {
		if err := bind(fd, source); err != nil {
			unix.Close(fd)
			return nil, err
		}
	}
	c, err := dial(fd, remote, timeout)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return c, nil
}

// bind binds fd to source, port 0. IP_BIND_ADDRESS_NO_PORT defers the
// choice of the port to connect(2), which may then reuse a port that
// other connections use with other servers: without it, every bound
// socket holds a port of its own, and a busy queue would run out of
// them. Kernels before 4.2 lack the option; binding works without it.
func bind(fd int, source netip.Addr) error {
	unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	if err := unix.Bind(fd, sockaddr(netip.AddrPortFrom(source, 0))); err != nil {
		return &Error{"bind", err}
	}
	return nil
}

// BindFailed tells whether err is a failed bind to the source address:
// the admin's setting is wrong for every server of that family, so the
// delivery stops there rather than going out from another address.
func BindFailed(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Op == "bind"
}

// BindReason explains a failed bind to the postmaster.
func BindReason(source netip.Addr, err error) string {
	if errors.Is(err, unix.EADDRNOTAVAIL) {
		return fmt.Sprintf("%s is not an address of this host", source)
	}
	var errno unix.Errno
	if errors.As(err, &errno) {
		return fmt.Sprintf("cannot bind to %s: %s", source, errno.Error())
	}
	return fmt.Sprintf("cannot bind to %s: %v", source, err)
}

func dial(fd int, remote netip.AddrPort, timeout time.Duration) (*Conn, error) {
	deadline := time.Now().Add(timeout)
	err := unix.Connect(fd, sockaddr(remote))
	if err == unix.EINTR { // the connect goes on in the background
		err = unix.EINPROGRESS
	}
	if err == unix.EINPROGRESS {
		err = wait(fd, deadline)
	}
	if err != nil {
		return nil, &Error{"connect", err}
	}
	// The child gets the descriptor as its fds 6 and 7; a UCSPI client
	// expects a blocking socket (qmail-remote-io and s6 tools alike).
	if err := unix.SetNonblock(fd, false); err != nil {
		return nil, &Error{"connect", err}
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return nil, &Error{"connect", err}
	}
	return &Conn{FD: fd, Local: addrPort(sa), Remote: remote}, nil
}

// wait polls for the end of a non-blocking connect, then reads its result.
// Past the deadline it still looks once without waiting: a connect that
// completed while this process was kept off the CPU (a busy machine) is a
// connection, not a timeout to record in tcpto.
func wait(fd int, deadline time.Time) error {
	for {
		ms := 0
		if left := time.Until(deadline); left > 0 {
			ms = int((left + time.Millisecond - 1) / time.Millisecond)
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		n, err := unix.Poll(fds, ms)
		if err == unix.EINTR {
			continue // bounded: the deadline does not move
		}
		if err != nil {
			return err
		}
		if n == 0 {
			if ms == 0 {
				return ErrTimeout
			}
			continue // the deadline passed: one last look, then ErrTimeout
		}
		soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err != nil {
			return err
		}
		if soerr != 0 {
			return unix.Errno(soerr)
		}
		return nil
	}
}

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

func addrPort(sa unix.Sockaddr) netip.AddrPort {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port))
	}
	return netip.AddrPort{}
}

// Reason explains a failed attempt to the postmaster, in the style of
// qmail-remote's texts (the server's address first).
func Reason(ip netip.Addr, err error) string {
	var errno unix.Errno
	switch {
	case errors.Is(err, ErrTimeout):
		return fmt.Sprintf("Connection to %s timed out.", ip)
	case errors.Is(err, unix.ECONNREFUSED):
		return fmt.Sprintf("Connection to %s refused.", ip)
	case errors.As(err, &errno):
		return fmt.Sprintf("Connection to %s failed: %s.", ip, errno.Error())
	}
	return fmt.Sprintf("Connection to %s failed: %v.", ip, err)
}

// TimedOut tells whether err is a connect timeout (tcpto counts it).
func TimedOut(err error) bool { return errors.Is(err, ErrTimeout) }

// Attempted tells whether err comes from a real connect attempt, so that
// tcpto may learn from it.
func Attempted(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Op == "connect"
}
