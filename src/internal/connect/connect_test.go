package connect

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestDial(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	remote := netip.MustParseAddrPort(ln.Addr().String())
	c, err := Dial(remote, netip.Addr{}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(c.FD)
	if c.Remote != remote || c.Local.Addr() != remote.Addr() || c.Local.Port() == 0 {
		t.Errorf("conn %+v", c)
	}
	fl, _ := unix.FcntlInt(uintptr(c.FD), unix.F_GETFL, 0)
	fd, _ := unix.FcntlInt(uintptr(c.FD), unix.F_GETFD, 0)
	if fl&unix.O_NONBLOCK != 0 || fd&unix.FD_CLOEXEC == 0 {
		t.Errorf("flags %#o, fd flags %#o: want blocking, close-on-exec", fl, fd)
	}
	ln.Close()

	_, err = Dial(remote, netip.Addr{}, 5*time.Second)
	if !errors.Is(err, unix.ECONNREFUSED) || !Attempted(err) || TimedOut(err) {
		t.Fatalf("refused: %v", err)
	}
	if r := Reason(remote.Addr(), err); r != "Connection to 127.0.0.1 refused." {
		t.Errorf("reason %q", r)
	}
}

func TestReason(t *testing.T) {
	a := netip.MustParseAddr("2001:db8::1")
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&Error{"connect", ErrTimeout}, "Connection to 2001:db8::1 timed out."},
		{&Error{"connect", unix.ENETUNREACH}, "Connection to 2001:db8::1 failed: network is unreachable."},
		{&Error{"socket", unix.EMFILE}, "Connection to 2001:db8::1 failed: too many open files."},
	} {
		if got := Reason(a, tc.err); got != tc.want {
			t.Errorf("%v: %q, want %q", tc.err, got, tc.want)
		}
	}
	if Attempted(&Error{"socket", unix.EMFILE}) || !TimedOut(&Error{"connect", ErrTimeout}) {
		t.Error("classification")
	}
}

// TestCompletedPastDeadline: a connect that completed while the process
// was off the CPU until after the deadline is a connection, not a timeout
// (one last look without waiting), so tcpto does not blame the server.
func TestCompletedPastDeadline(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	remote := netip.MustParseAddrPort(ln.Addr().String())
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, sockaddr(remote)); err != nil && err != unix.EINPROGRESS {
		t.Fatal(err)
	}
	// Let the connect finish (bounded: a loopback listener answers).
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	if n, err := unix.Poll(fds, 30000); n != 1 || err != nil {
		t.Fatalf("poll: %d %v", n, err)
	}
	if err := wait(fd, time.Now().Add(-time.Second)); err != nil {
		t.Errorf("a completed connect past its deadline: %v, want success", err)
	}
}
