package smtptest

import (
	"bufio"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"qmail-remote-go/src/testkit/tlstest"
)

func TestWithSTARTTLS(t *testing.T) {
	for in, want := range map[string]string{
		"250 smtptest":                        "250-smtptest\n250 STARTTLS",
		"250":                                 "250-\n250 STARTTLS",
		"250-a\n250-PIPELINING\n250 8BITMIME": "250-a\n250-STARTTLS\n250-PIPELINING\n250 8BITMIME",
		"502 what":                            "502 what",
		Close:                                 Close,
	} {
		if got := withSTARTTLS(in); got != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
}

// client is a minimal SMTP client for these tests.
type client struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second)) // a backstop
	t.Cleanup(func() { c.Close() })
	return &client{t, c, bufio.NewReader(c)}
}

// reply reads one reply, lines joined by "|".
func (c *client) reply() string {
	c.t.Helper()
	var lines []string
	for {
		l, err := c.br.ReadString('\n')
		if err != nil {
			c.t.Fatalf("reading a reply: %v (so far %q)", err, lines)
		}
		l = strings.TrimSuffix(l, "\r\n")
		lines = append(lines, l)
		if len(l) < 4 || l[3] != '-' {
			return strings.Join(lines, "|")
		}
	}
}

func (c *client) cmd(line string) string {
	c.t.Helper()
	if _, err := c.c.Write([]byte(line + "\r\n")); err != nil {
		c.t.Fatal(err)
	}
	return c.reply()
}

func TestSTARTTLS(t *testing.T) {
	ca := tlstest.NewCA(t, "test CA")
	srvCert := ca.Issue(t, tlstest.Leaf{DNSNames: []string{"mx.example.test"}})
	cliCert := ca.Issue(t, tlstest.Leaf{Client: true})
	srv := Start(t, "127.0.0.1:0", Script{
		TLS:      &tls.Config{Certificates: []tls.Certificate{srvCert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool()},
		KeepData: true,
	})
	c := dial(t, srv.Addr)
	if r := c.reply(); r != "220 smtptest ESMTP" {
		t.Fatalf("greeting %q", r)
	}
	if r := c.cmd("EHLO a.example.test"); r != "250-smtptest|250-STARTTLS|250-PIPELINING|250 8BITMIME" {
		t.Fatalf("EHLO: %q", r)
	}
	if r := c.cmd("STARTTLS"); r != "220 ready" {
		t.Fatalf("STARTTLS: %q", r)
	}
	tc := tls.Client(c.c, &tls.Config{ServerName: "mx.example.test", RootCAs: ca.Pool(), Certificates: []tls.Certificate{cliCert}})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.c, c.br = tc, bufio.NewReader(tc)
	if r := c.cmd("EHLO a.example.test"); r != "250-smtptest|250-PIPELINING|250 8BITMIME" {
		t.Fatalf("EHLO after TLS: %q", r)
	}
	if r := c.cmd("STARTTLS"); !strings.HasPrefix(r, "503") {
		t.Fatalf("second STARTTLS: %q", r)
	}
	for _, l := range []string{"MAIL FROM:<a@example.test>", "RCPT TO:<b@example.test>", "DATA"} {
		c.cmd(l)
	}
	if r := c.cmd("hi\r\n."); r != "250 ok: queued" {
		t.Fatalf("after the dot: %q", r)
	}
	c.cmd("QUIT")
	m := srv.Messages()
	if len(m) != 1 || !m[0].TLS || !m[0].StartTLS || m[0].TLSVersion != tls.VersionTLS13 || m[0].TLSCipher == 0 ||
		m[0].ServerName != "mx.example.test" || !m[0].ClientCert || m[0].ClientSubject != "CN=client" ||
		m[0].Helo != "EHLO a.example.test" || string(m[0].Data) != "hi\r\n" ||
		strings.Join(m[0].Commands, "|") != "EHLO a.example.test|STARTTLS|EHLO a.example.test|STARTTLS|MAIL FROM:<a@example.test>|RCPT TO:<b@example.test>|DATA" {
		t.Errorf("got %+v", m)
	}
}

func TestSTARTTLSScripted(t *testing.T) {
	// Injection: the extra reply comes in the same write as the 220.
	srv := Start(t, "127.0.0.1:0", Script{StartTLS: "220 go", Inject: "250 injected\r\n", EhloAfterTLS: "250 again", NoGreeting: true})
	c := dial(t, srv.Addr)
	if r := c.cmd("EHLO a.example.test"); r != "250-smtptest|250-PIPELINING|250 8BITMIME" {
		t.Fatalf("EHLO without TLS: %q", r)
	}
	if r := c.cmd("STARTTLS"); r != "220 go" || c.br.Buffered() != len("250 injected\r\n") {
		t.Fatalf("STARTTLS: %q, %d bytes buffered", r, c.br.Buffered())
	}
	// Without TLS the session goes on in cleartext, reset.
	if r := c.reply(); r != "250 injected" {
		t.Fatalf("injected %q", r)
	}
	if r := c.cmd("EHLO b.example.test"); r != "250 again" {
		t.Fatalf("EHLO after STARTTLS: %q", r)
	}

	srv = Start(t, "127.0.0.1:0", Script{TLS: &tls.Config{}, StartTLS: "454 4.7.0 not now"})
	c = dial(t, srv.Addr)
	c.reply()
	c.cmd("EHLO a.example.test")
	if r := c.cmd("STARTTLS"); r != "454 4.7.0 not now" {
		t.Fatalf("STARTTLS: %q", r)
	}
	if r := c.cmd("EHLO a.example.test"); !strings.Contains(r, "STARTTLS") {
		t.Fatalf("EHLO after a refused STARTTLS: %q", r)
	}
	if r := c.cmd("STARTTLS"); r != "454 4.7.0 not now" {
		t.Fatalf("STARTTLS: %q", r)
	}

	srv = Start(t, "127.0.0.1:0", Script{})
	c = dial(t, srv.Addr)
	c.reply()
	if r := c.cmd("STARTTLS"); r != "502 unknown command" {
		t.Fatalf("STARTTLS without TLS: %q", r)
	}
}
