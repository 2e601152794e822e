package tlsio

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"qmail-remote-go/src/testkit/tlstest"

	"qmail-remote-go/src/testkit/backstop"
)

func TestLoadFile(t *testing.T) {
	a, b := tlstest.NewCA(t, "A"), tlstest.NewCA(t, "B")
	dir := t.TempDir()
	bundle := tlstest.WriteBundle(t, dir, a, b)
	if _, n, err := LoadFile(bundle); err != nil || n != 2 {
		t.Errorf("bundle: %d certificates, %v", n, err)
	}
	der := filepath.Join(dir, "a.der")
	os.WriteFile(der, a.DER, 0o644)
	if _, n, err := LoadFile(der); err != nil || n != 1 {
		t.Errorf("DER: %d certificates, %v", n, err)
	}
	junk := filepath.Join(dir, "junk")
	os.WriteFile(junk, []byte("hello\n"), 0o644)
	if _, _, err := LoadFile(junk); err == nil || !strings.Contains(err.Error(), junk) {
		t.Errorf("junk: %v", err)
	}
	if _, _, err := LoadFile(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing: %v", err)
	}
}

func TestLoadDir(t *testing.T) {
	a, b := tlstest.NewCA(t, "A"), tlstest.NewCA(t, "B")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.pem"), a.PEM, 0o644)
	os.Symlink("a.pem", filepath.Join(dir, "12345678.0"))
	os.Symlink("nowhere.pem", filepath.Join(dir, "87654321.0"))
	os.WriteFile(filepath.Join(dir, "b.der"), b.DER, 0o644)
	os.WriteFile(filepath.Join(dir, "README"), []byte("text"), 0o644)
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	anchors, n, err := LoadDir(dir)
	if err != nil || n != 3 { // a twice (file and link), b once
		t.Fatalf("%d certificates, %v", n, err)
	}
	for _, ca := range []*tlstest.CA{a, b} {
		leaf := ca.Issue(t, tlstest.Leaf{DNSNames: []string{"mx.example.test"}})
		if _, err := leaf.Leaf.Verify(x509.VerifyOptions{Roots: anchors.Pool([]*x509.Certificate{leaf.Leaf}), DNSName: "mx.example.test"}); err != nil {
			t.Errorf("%s: %v", ca.Cert.Subject, err)
		}
	}
	empty := t.TempDir()
	if _, _, err := LoadDir(empty); err == nil || !strings.Contains(err.Error(), empty) {
		t.Errorf("empty: %v", err)
	}
}

func TestParseServer(t *testing.T) {
	for _, c := range []struct {
		in, sni, verify string
		ok              bool
	}{
		{"mx.example.test", "mx.example.test", "mx.example.test", true},
		{"mx.example.test.", "mx.example.test", "mx.example.test", true},
		{"[192.0.2.7]", "", "192.0.2.7", true},
		{"[IPv6:2001:db8::7]", "", "2001:db8::7", true},
		{"[2001:db8::7]", "", "2001:db8::7", true},
		{"[192.0.2.300]", "", "", false},
		{"", "", "", false},
		{"mx example", "", "", false},
		{"mx\x00.example", "", "", false},
	} {
		s, err := ParseServer(c.in)
		if (err == nil) != c.ok {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if c.ok && (s.SNI() != c.sni || s.verifyName() != c.verify) {
			t.Errorf("%q: SNI %q verify %q", c.in, s.SNI(), s.verifyName())
		}
	}
}

func TestReasonPlain(t *testing.T) {
	cfg := Config{Server: Server{Name: "mx.example.test"}, Strictness: 2}
	for _, c := range []struct {
		err  error
		want string
	}{
		{io.EOF, "the server closed the connection"},
		{fmt.Errorf("read: %w", os.ErrDeadlineExceeded), "timed out after 7 seconds"},
		{&net.OpError{Op: "read", Err: os.NewSyscallError("read", unix.ECONNRESET)}, "the server reset the connection"},
		{errors.New("tls: server selected unsupported protocol version 301"), "no common protocol version"},
		{errors.New("tls: something new"), "something new"},
	} {
		if got := Reason(c.err, cfg, 7*time.Second, time.Now()); !strings.Contains(got, c.want) {
			t.Errorf("%v: %q, want %q", c.err, got, c.want)
		}
	}
}

// pair is a connected unix socketpair as two *net.UnixConn.
func pair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var cs [2]*net.UnixConn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "pair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		cs[i] = c.(*net.UnixConn)
		t.Cleanup(func() { cs[i].Close() })
	}
	return cs[0], cs[1]
}

// TestShuttleIdle: nothing moves for the timeout and IdleGrace, both sides
// are shut; not before (the application must notice first). How much later
// is up to the machine's load: the application's read waits for the EOF
// up to the backstop (backstop.Bound), and only the lower bound is checked.
func TestShuttleIdle(t *testing.T) {
	remote, server := pair(t)
	local, app := pair(t)
	start := time.Now()
	s := Start(remote, local, 300*time.Millisecond)
	app.SetReadDeadline(time.Now().Add(backstop.Bound))
	if _, err := app.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("application read %v, want EOF", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond+IdleGrace {
		t.Errorf("shut after %v, before the timeout (300ms) and %v of grace", d, IdleGrace)
	}
	up, down := s.Finish(time.Second)
	if up == nil && down == nil {
		t.Error("no timeout error reported")
	}
	_ = server
}

// TestShuttleLongUpload: bytes flow one way for longer than the timeout
// and IdleGrace while the other way is silent; nothing is cut. The chunks
// come every 100 ms, and the idle limit is 3 s: a pause 30 times longer
// than planned (a loaded machine) would still not cut the session. The
// upload lasts 4 s at least (sleeps are never short), past the idle
// limit.
func TestShuttleLongUpload(t *testing.T) {
	remote, server := pair(t)
	local, app := pair(t)
	const timeout = 2 * time.Second
	s := Start(remote, local, timeout)
	got := make(chan []byte, 1)
	go func() {
		server.SetReadDeadline(time.Now().Add(backstop.Bound))
		b, _ := io.ReadAll(server)
		got <- b
	}()
	var want []byte
	start := time.Now()
	for i := 0; i < 40; i++ {
		chunk := []byte(fmt.Sprintf("chunk %d\n", i))
		want = append(want, chunk...)
		if _, err := app.Write(chunk); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if d := time.Since(start); d <= timeout+IdleGrace {
		t.Fatalf("the upload took %v, not longer than the idle limit", d)
	}
	app.CloseWrite()
	select {
	case b := <-got:
		if string(b) != string(want) {
			t.Errorf("server got %q", b)
		}
	case <-time.After(backstop.Bound):
		t.Fatal("server never saw EOF")
	}
	if !s.CloseNotified() {
		t.Error("the end of the upload was not passed on")
	}
	// The server answers and closes: the application reads it, then EOF.
	server.Write([]byte("221 bye\r\n"))
	server.CloseWrite()
	app.SetReadDeadline(time.Now().Add(backstop.Bound))
	if b, err := io.ReadAll(app); string(b) != "221 bye\r\n" || err != nil {
		t.Errorf("application read %q, %v", b, err)
	}
	if up, down := s.Finish(time.Second); up != nil || down != nil {
		t.Errorf("errors %v, %v", up, down)
	}
}
