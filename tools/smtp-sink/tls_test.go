package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// selfSigned makes a certificate for 127.0.0.1 and a pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "sink.example.test"},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

// client is a line-oriented SMTP client for the tests.
type client struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

// reply reads one reply and returns its lines.
func (cl *client) reply() []string {
	cl.t.Helper()
	var lines []string
	for {
		l, err := cl.r.ReadString('\n')
		if err != nil {
			cl.t.Fatalf("after %q: %v", lines, err)
		}
		l = strings.TrimRight(l, "\r\n")
		lines = append(lines, l)
		if len(l) < 4 || l[3] != '-' {
			return lines
		}
	}
}

func (cl *client) cmd(line, code string) []string {
	cl.t.Helper()
	if _, err := cl.c.Write([]byte(line + "\r\n")); err != nil {
		cl.t.Fatal(err)
	}
	r := cl.reply()
	if !strings.HasPrefix(r[len(r)-1], code) {
		cl.t.Fatalf("%q: reply %q, want %s", line, r, code)
	}
	return r
}

func TestStartTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	dir := t.TempDir()
	s := &sink{dir: dir, timeout: 5 * time.Second, tls: &tls.Config{Certificates: []tls.Certificate{cert}}}
	raw, done := serveOne(t, s)
	cl := &client{t: t, c: raw, r: bufio.NewReader(raw)}
	cl.reply()
	if ext := cl.cmd("EHLO c.example.test", "250"); !contains(ext, "250-STARTTLS") {
		t.Fatalf("STARTTLS not offered: %q", ext)
	}
	cl.cmd("STARTTLS x", "501")
	// A command pipelined after STARTTLS in cleartext must be dropped,
	// not answered under TLS (RFC 3207 4.2; CVE-2011-0411 is its client
	// side twin).
	if _, err := raw.Write([]byte("STARTTLS\r\nMAIL FROM:<injected@example.test>\r\n")); err != nil {
		t.Fatal(err)
	}
	if r := cl.reply(); !strings.HasPrefix(r[0], "220 ") {
		t.Fatalf("STARTTLS: %q", r)
	}
	if cl.r.Buffered() != 0 {
		t.Fatal("the sink said more after 220")
	}
	tc := tls.Client(raw, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	cl = &client{t: t, c: tc, r: bufio.NewReader(tc)}
	if ext := cl.cmd("EHLO c2.example.test", "250"); contains(ext, "250-STARTTLS") {
		t.Errorf("STARTTLS offered again under TLS: %q", ext)
	}
	cl.cmd("STARTTLS", "502")
	cl.cmd("MAIL FROM:<a@example.test>", "250")
	cl.cmd("RCPT TO:<b@example.test>", "250")
	cl.cmd("DATA", "354")
	cl.cmd("Subject: tls\r\n\r\nhi\r\n.", "250")
	cl.cmd("QUIT", "221")
	<-done
	env, err := os.ReadFile(filepath.Join(dir, "1.env"))
	if err != nil {
		t.Fatal(err)
	}
	st := tc.ConnectionState()
	want := "EHLO c2.example.test\nMAIL FROM:<a@example.test>\nRCPT TO:<b@example.test>\n" +
		"X-Sink-Body: 20 bytes, 0 bare CR, 0 bare LF\n" +
		"X-Sink-TLS: TLSv1.3 " + tls.CipherSuiteName(st.CipherSuite) + "\n"
	if st.Version != tls.VersionTLS13 || string(env) != want {
		t.Errorf("envelope %q, want %q", env, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "2.eml")); err == nil {
		t.Error("the injected transaction was stored")
	}
}

// A failed handshake ends the session at once (it does not wait for the
// timeout). The timeout is ten minutes and the test waits 30 s at most:
// the session's end before that cannot be the timeout's, however loaded
// the machine.
func TestStartTLSHandshakeFails(t *testing.T) {
	cert, _ := selfSigned(t)
	s := &sink{discard: true, timeout: 10 * time.Minute, tls: &tls.Config{Certificates: []tls.Certificate{cert}}}
	raw, done := serveOne(t, s)
	cl := &client{t: t, c: raw, r: bufio.NewReader(raw)}
	cl.reply()
	cl.cmd("EHLO c.example.test", "250")
	cl.cmd("STARTTLS", "220")
	raw.Write([]byte("this is not a TLS ClientHello\r\n"))
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the sink did not end the session: it waits for its timeout")
	}
}

func contains(lines []string, want string) bool {
	for _, l := range lines {
		if l == want {
			return true
		}
	}
	return false
}
