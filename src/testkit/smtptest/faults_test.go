package smtptest

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"qmail-remote-go/src/testkit/tlstest"
)

// Freeze in the middle of a body: the server stops reading, so a client
// writing much more than the socket buffers hold blocks until its deadline.
func TestFreezeMidBody(t *testing.T) {
	s := Start(t, "127.0.0.1:0", Script{Mid: Freeze, MidAfter: 1000})
	c := dial(t, s.Addr)
	c.reply()
	c.cmd("EHLO a.example.test")
	c.cmd("MAIL FROM:<a@example.test>")
	c.cmd("RCPT TO:<b@example.test>")
	if r := c.cmd("DATA"); !strings.HasPrefix(r, "354") {
		t.Fatalf("DATA: %q", r)
	}
	c.c.SetWriteDeadline(time.Now().Add(time.Second))
	line := bytes.Repeat([]byte("x"), 1023)
	line = append(line, '\n')
	var err error
	// At most 64 MiB: more than any loopback buffers.
	for i := 0; i < 64<<10 && err == nil; i++ {
		_, err = c.c.Write(line)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("writing to a frozen server: %v, want a timeout", err)
	}
}

// Handshake faults: the client's handshake fails in the way each one says.
func TestHandshakeFaults(t *testing.T) {
	ca := tlstest.NewCA(t, "smtptest CA")
	cfg := &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, tlstest.Leaf{DNSNames: []string{"mx.example.test"}})}}
	for _, tc := range []struct {
		name, fault, want string
	}{
		{"close", Close, "EOF"},
		{"reset", Reset, "reset by peer"},
		{"stall", Stall, "timeout"},
		{"freeze", Freeze, "timeout"},
		{"text", "hello there\r\n", "does not look like a TLS handshake"},
		{"NUL bytes", strings.Repeat("\x00", 100), "TLS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := Start(t, "127.0.0.1:0", Script{TLS: cfg, Handshake: tc.fault})
			c := dial(t, s.Addr)
			c.reply()
			c.cmd("EHLO a.example.test")
			if r := c.cmd("STARTTLS"); r != "220 ready" {
				t.Fatalf("STARTTLS: %q", r)
			}
			// A stall or a freeze is waited out, so its deadline is short;
			// for the others it is only a backstop, long enough for a
			// handshake on a busy machine to end the way the fault says.
			d := 30 * time.Second
			if tc.want == "timeout" {
				d = 500 * time.Millisecond
			}
			c.c.SetDeadline(time.Now().Add(d))
			tc2 := tls.Client(c.c, &tls.Config{ServerName: "mx.example.test", RootCAs: ca.Pool()})
			err := tc2.Handshake()
			var ne net.Error
			switch {
			case err == nil:
				t.Fatal("the handshake worked")
			case tc.want == "timeout":
				if !errors.As(err, &ne) || !ne.Timeout() {
					t.Errorf("handshake error %v, want a timeout", err)
				}
			case !strings.Contains(err.Error(), tc.want):
				t.Errorf("handshake error %v, want %q", err, tc.want)
			}
		})
	}
}
