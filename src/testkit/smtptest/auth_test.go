package smtptest

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"strings"
	"testing"

	"qmail-remote-go/src/testkit/tlstest"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestWithExtension(t *testing.T) {
	for in, want := range map[string]string{
		"250 smtptest":               "250-smtptest\n250 AUTH PLAIN",
		"250":                        "250-\n250 AUTH PLAIN",
		"250-a\n250 8BITMIME":        "250-a\n250-AUTH PLAIN\n250 8BITMIME",
		"502 what":                   "502 what",
		Close:                        Close,
		"250-a\n250-X\n250 8BITMIME": "250-a\n250-AUTH PLAIN\n250-X\n250 8BITMIME",
	} {
		if got := withExtension(in, "AUTH PLAIN"); got != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
}

// A submission session over a fake TLS (a 220 to STARTTLS without a
// handshake): AUTH only after it, PLAIN and LOGIN, MAIL refused before.
func TestAuthExchange(t *testing.T) {
	const user, pw = "u@example.test", "pa:ss word"
	srv := Start(t, "127.0.0.1:0", Script{StartTLS: "220 go", Auth: "PLAIN LOGIN CRAM-MD5", AuthUser: user, AuthPassword: pw})
	c := dial(t, srv.Addr)
	c.reply()
	if r := c.cmd("EHLO a.example.test"); strings.Contains(r, "AUTH") {
		t.Fatalf("AUTH offered before TLS: %q", r)
	}
	if r := c.cmd("AUTH PLAIN " + b64("\x00"+user+"\x00"+pw)); r != authNotHere {
		t.Fatalf("AUTH before TLS: %q", r)
	}
	if !srv.PasswordInCleartext() {
		t.Error("the password went in cleartext, unnoticed")
	}
	c.cmd("STARTTLS")
	if r := c.cmd("EHLO a.example.test"); r != "250-smtptest|250-AUTH PLAIN LOGIN CRAM-MD5|250-PIPELINING|250 8BITMIME" {
		t.Fatalf("EHLO after TLS: %q", r)
	}
	if r := c.cmd("MAIL FROM:<a@example.test>"); r != authRequired {
		t.Fatalf("MAIL before AUTH: %q", r)
	}
	if r := c.cmd("AUTH CRAM-MD5"); r != authUnknown {
		t.Fatalf("CRAM-MD5: %q", r)
	}
	if r := c.cmd("AUTH PLAIN " + b64("\x00"+user+"\x00wrong")); r != authInvalid {
		t.Fatalf("wrong password: %q", r)
	}
	if r := c.cmd("AUTH LOGIN"); r != "334 VXNlcm5hbWU6" {
		t.Fatalf("LOGIN: %q", r)
	}
	if r := c.cmd("*"); r != authCancelled {
		t.Fatalf("cancel: %q", r)
	}
	c.cmd("AUTH LOGIN")
	if r := c.cmd(b64(user)); r != "334 UGFzc3dvcmQ6" {
		t.Fatalf("LOGIN user: %q", r)
	}
	if r := c.cmd(b64(pw)); r != authOK {
		t.Fatalf("LOGIN password: %q", r)
	}
	if r := c.cmd("AUTH PLAIN"); r != authAgain {
		t.Fatalf("second AUTH: %q", r)
	}
	for _, l := range []string{"MAIL FROM:<a@example.test>", "RCPT TO:<b@example.test>", "DATA"} {
		c.cmd(l)
	}
	c.cmd("hi\r\n.")
	m := srv.Messages()
	if len(m) != 1 || m[0].AuthMech != "LOGIN" || m[0].AuthUser != user || !m[0].PasswordInCleartext {
		t.Errorf("message %+v", m)
	}
	a := srv.AuthAttempts()
	want := []AuthAttempt{
		{"PLAIN", user, true, false, authInvalid},
		{"LOGIN", "", true, false, authCancelled},
		{"LOGIN", user, true, true, authOK},
	}
	if len(a) != len(want) {
		t.Fatalf("attempts %+v", a)
	}
	for i := range want {
		if a[i] != want[i] {
			t.Errorf("attempt %d: %+v, want %+v", i, a[i], want[i])
		}
	}
}

// SMTPS: the handshake first, then the greeting; PLAIN without an initial
// response; a scripted failure reply.
func TestSMTPS(t *testing.T) {
	ca := tlstest.NewCA(t, "test CA")
	cfg := &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, tlstest.Leaf{DNSNames: []string{"smtp.example.test"}})}}
	for _, tc := range []struct{ reply, want string }{{"", authOK}, {"534 5.7.9 too weak", "534 5.7.9 too weak"}} {
		srv := Start(t, "127.0.0.1:0", Script{TLS: cfg, SMTPS: true, Auth: "PLAIN", AuthUser: "u", AuthPassword: "p", AuthReply: tc.reply})
		c := dial(t, srv.Addr)
		tc2 := tls.Client(c.c, &tls.Config{ServerName: "smtp.example.test", RootCAs: ca.Pool()})
		if err := tc2.Handshake(); err != nil {
			t.Fatal(err)
		}
		c.c, c.br = tc2, bufio.NewReader(tc2)
		if r := c.reply(); r != "220 smtptest ESMTP" {
			t.Fatalf("greeting %q", r)
		}
		if r := c.cmd("EHLO a.example.test"); r != "250-smtptest|250-AUTH PLAIN|250-PIPELINING|250 8BITMIME" {
			t.Fatalf("EHLO: %q", r)
		}
		if r := c.cmd("AUTH PLAIN"); r != "334 " {
			t.Fatalf("AUTH PLAIN: %q", r)
		}
		if r := c.cmd(b64("u\x00u\x00p")); r != tc.want {
			t.Fatalf("response: %q, want %q", r, tc.want)
		}
		if srv.PasswordInCleartext() {
			t.Error("password in cleartext under TLS")
		}
	}
}

// Offered before TLS only: not after it.
func TestAuthOnlyCleartext(t *testing.T) {
	srv := Start(t, "127.0.0.1:0", Script{StartTLS: "220 go", Auth: "LOGIN", AuthOnlyCleartext: true})
	c := dial(t, srv.Addr)
	c.reply()
	if r := c.cmd("EHLO a"); !strings.Contains(r, "AUTH LOGIN") {
		t.Fatalf("EHLO before TLS: %q", r)
	}
	c.cmd("STARTTLS")
	if r := c.cmd("EHLO a"); strings.Contains(r, "AUTH") {
		t.Fatalf("EHLO after TLS: %q", r)
	}
}
