package qmailremotetlsio

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"qmail-remote-go/src/internal/report"
	"qmail-remote-go/src/testkit/buildtest"
	"qmail-remote-go/src/testkit/tlstest"
)

var binary, fakeProg string

// fakeProgText stands in for qmail-remote-io: it writes its environment
// to $FAKE_OUT/env and then does what FAKE_MODE says over fds 6 and 7.
const fakeProgText = `#!/bin/sh
env > "$FAKE_OUT/env"
case "$FAKE_MODE" in
echo) exec cat <&6 >&7 ;;
send) exec dd if=/dev/zero bs=65536 count="$FAKE_BLOCKS" status=none >&7 ;;
kill) kill -9 $$ ;;
grandchild)
	sleep 300 <&6 >&7 2>/dev/null &
	echo $! > "$FAKE_OUT/pid"
	exit 0
	;;
*)
	printf 'EHLO x\r\n' >&7
	IFS= read -r line <&6
	printf '%s\n' "$line" > "$FAKE_OUT/line"
	exit "${FAKE_EXIT:-0}"
	;;
esac
`

func TestMain(m *testing.M) {
	buildtest.ProgramWithScript(m, &binary, "qmail-remote-tlsio", &fakeProg, "fakeprog", fakeProgText)
}

// pki is the certificates of one test.
type pki struct {
	ca, other *tlstest.CA
	dir       string
	caFile    string // a bundle holding ca
}

func newPKI(t *testing.T) *pki {
	p := &pki{ca: tlstest.NewCA(t, "Test CA"), other: tlstest.NewCA(t, "Other CA"), dir: t.TempDir()}
	p.caFile = tlstest.WriteBundle(t, p.dir, p.ca)
	return p
}

// seen is what the test server saw.
type seen struct {
	sni   string
	state tls.ConnectionState
	err   error  // handshake error
	got   []byte // what the client sent after the handshake
	line  string
}

// server accepts one connection on 127.0.0.1 and runs handle on it.
// wait() returns once handle has returned.
type server struct {
	addr string
	done chan struct{}
}

func startServer(t *testing.T, handle func(raw net.Conn)) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{addr: ln.Addr().String(), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		defer ln.Close()
		ln.(*net.TCPListener).SetDeadline(time.Now().Add(30 * time.Second))
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(60 * time.Second))
		handle(c)
	}()
	t.Cleanup(func() {
		ln.Close()
		select {
		case <-s.done:
		case <-time.After(70 * time.Second):
			t.Error("server did not finish")
		}
	})
	return s
}

func (s *server) wait(t *testing.T) {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(70 * time.Second):
		t.Fatal("server did not finish")
	}
}

// tlsServer does the server side of the handshake with cfg, records what
// it saw into sn, and on success runs after (nil: ehlo).
func tlsServer(cfg *tls.Config, sn *seen, after func(c *tls.Conn, sn *seen)) func(net.Conn) {
	return func(raw net.Conn) {
		cfg = cfg.Clone()
		cfg.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			sn.sni = h.ServerName
			return nil, nil
		}
		c := tls.Server(raw, cfg)
		if sn.err = c.Handshake(); sn.err != nil {
			return
		}
		sn.state = c.ConnectionState()
		if after == nil {
			after = ehlo
		}
		after(c, sn)
	}
}

// ehlo reads a line, answers 250, and reads the rest until EOF.
func ehlo(c *tls.Conn, sn *seen) {
	buf := make([]byte, 0, 64)
	one := make([]byte, 1)
	for len(buf) < 64 {
		if _, err := c.Read(one); err != nil {
			break
		}
		buf = append(buf, one[0])
		if one[0] == '\n' {
			break
		}
	}
	sn.line = string(buf)
	c.Write([]byte("250 ok\r\n"))
	rest, _ := io.ReadAll(c)
	sn.got = rest
}

func serverConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{cert}}
}

// result is one run of the program.
type result struct {
	stdout, stderr string
	code           int
	env            map[string]string // the fake prog's environment; nil: it did not run
	line           string            // what it read from the server
}

func (r result) report(t *testing.T) report.Report {
	t.Helper()
	res, err := report.Parse([]byte(r.stdout), 0)
	if err != nil {
		t.Fatalf("output %q: %v (stderr %q)", r.stdout, err, r.stderr)
	}
	return res.Message
}

// runProg runs the program with a connection to addr on fds 6 and 7.
// env overrides the defaults ("" value: unset).
func runProg(t *testing.T, addr string, env map[string]string) result {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	f, err := c.(*net.TCPConn).File()
	c.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return runWith(t, env, f, f)
}

func runWith(t *testing.T, env map[string]string, fd6, fd7 *os.File, args ...string) result {
	t.Helper()
	out := t.TempDir()
	// Timeouts no healthy handshake or reply can miss, however loaded
	// the machine; the tests of a stall set their own.
	full := map[string]string{
		"QMAILREMOTE_MXNAME":         "mx.example.test",
		"QMAILREMOTE_TLSSTRICTNESS":  "2",
		"QMAILREMOTE_TIMEOUTCONNECT": "30",
		"QMAILREMOTE_TIMEOUTREMOTE":  "30",
		"TCPREMOTEIP":                "127.0.0.1",
		"PATH":                       "/usr/bin:/bin",
		"FAKE_OUT":                   out,
	}
	for k, v := range env {
		if v == "" {
			delete(full, k)
		} else {
			full[k] = v
		}
	}
	if args == nil {
		args = []string{fakeProg}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = []string{}
	for k, v := range full {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if fd6 != nil {
		null, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		defer null.Close()
		cmd.ExtraFiles = []*os.File{null, null, null, fd6, fd7}
	}
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			t.Fatalf("program killed by %v; stderr %q", ws.Signal(), r.stderr)
		}
	default:
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(out, "env")); err == nil {
		r.env = map[string]string{}
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, "="); ok {
				r.env[k] = v
			}
		}
	}
	if b, err := os.ReadFile(filepath.Join(out, "line")); err == nil {
		r.line = strings.TrimRight(string(b), "\r\n")
	}
	return r
}

func leafHash(c tls.Certificate) string {
	s := sha256.Sum256(c.Certificate[0])
	return "sha256:" + hex.EncodeToString(s[:])
}

func TestVerifiedHandshake(t *testing.T) {
	p := newPKI(t)
	cert := p.ca.Issue(t, tlstest.Leaf{DNSNames: []string{"mx.example.test"}})
	var sn seen
	srv := startServer(t, tlsServer(serverConfig(cert), &sn, nil))
	r := runProg(t, srv.addr, map[string]string{
		"CAFILE": p.caFile, "SSL_PROTOCOL": "stale", "QMAILREMOTE_TLSVERIFIED": "stale"})
	srv.wait(t)
	if r.code != 0 || r.stdout != "" || r.stderr != "" {
		t.Fatalf("code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if sn.err != nil {
		t.Fatalf("server: %v", sn.err)
	}
	want := map[string]string{
		"SSL_PROTOCOL":            "TLSv1.3",
		"SSL_CIPHER":              tls.CipherSuiteName(sn.state.CipherSuite),
		"SSL_TLS_SNI_SERVERNAME":  "mx.example.test",
		"SSL_PEER_CERT_HASH":      leafHash(cert),
		"SSL_PEER_CERT_SUBJECT":   "CN=mx.example.test",
		"QMAILREMOTE_TLSVERIFIED": "1",
	}
	for k, v := range want {
		if r.env[k] != v {
			t.Errorf("%s = %q, want %q", k, r.env[k], v)
		}
	}
	for _, k := range []string{"CAFILE", "CADIR", "CERTFILE", "KEYFILE"} {
		if _, ok := r.env[k]; ok {
			t.Errorf("%s in the application's environment", k)
		}
	}
	if sn.sni != "mx.example.test" {
		t.Errorf("server saw SNI %q", sn.sni)
	}
	if sn.line != "EHLO x\r\n" || r.line != "250 ok" {
		t.Errorf("server read %q, prog read %q", sn.line, r.line)
	}
}

// failure checks a run that must end with one Z naming want, exit 11,
// and no application run.
func failure(t *testing.T, r result, want string) {
	t.Helper()
	if r.code != 11 {
		t.Errorf("exit %d, want 11; stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	m := r.report(t)
	prefix := "Connected to 127.0.0.1 but the TLS handshake failed: "
	if m.Letter != 'Z' || !strings.HasPrefix(m.Text, prefix) || !strings.Contains(m.Text, want) ||
		!strings.HasSuffix(m.Text, ". (#4.7.0)\n") {
		t.Errorf("report %c%q, want Z %q... %q", m.Letter, m.Text, prefix, want)
	}
	if r.env != nil {
		t.Error("the application ran")
	}
	if r.stderr != "" {
		t.Errorf("stderr %q", r.stderr)
	}
}

func TestStrictFailures(t *testing.T) {
	p := newPKI(t)
	good := tlstest.Leaf{DNSNames: []string{"mx.example.test"}}
	now := time.Now()
	tls10 := serverConfig(p.ca.Issue(t, good))
	tls10.MinVersion, tls10.MaxVersion = tls.VersionTLS10, tls.VersionTLS10
	tls11 := tls10.Clone()
	tls11.MinVersion, tls11.MaxVersion = tls.VersionTLS11, tls.VersionTLS11
	cases := []struct {
		name string
		cfg  *tls.Config
		env  map[string]string
		want string
	}{
		{"unknown CA", serverConfig(p.other.Issue(t, good)), nil,
			"the certificate is signed by an unknown authority (issuer: CN=Other CA,O=qmail-remote-go tests)"},
		{"wrong name", serverConfig(p.ca.Issue(t, tlstest.Leaf{DNSNames: []string{"other.example.test", "www.example.test"}})), nil,
			"the certificate does not match the name mx.example.test: it is for other.example.test, www.example.test"},
		{"expired", serverConfig(p.ca.Issue(t, tlstest.Leaf{DNSNames: good.DNSNames, NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-24 * time.Hour)})), nil,
			"the certificate expired at "},
		{"not yet valid", serverConfig(p.ca.Issue(t, tlstest.Leaf{DNSNames: good.DNSNames, NotBefore: now.Add(24 * time.Hour), NotAfter: now.Add(48 * time.Hour)})), nil,
			"the certificate is not valid yet"},
		{"TLS 1.0 only", tls10, nil, "no common protocol version"},
		{"TLS 1.1 only", tls11, nil, "no common protocol version"},
		{"literal without IP SAN", serverConfig(p.ca.Issue(t, good)), map[string]string{"QMAILREMOTE_MXNAME": "[127.0.0.1]"},
			"the certificate does not match the address [127.0.0.1]: it is for mx.example.test"},
		{"literal, other IP", serverConfig(p.ca.Issue(t, tlstest.Leaf{IPs: []net.IP{net.ParseIP("192.0.2.7")}})), map[string]string{"QMAILREMOTE_MXNAME": "[127.0.0.1]"},
			"the certificate does not match the address [127.0.0.1]: it is for [192.0.2.7]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var sn seen
			srv := startServer(t, tlsServer(c.cfg, &sn, nil))
			env := map[string]string{"CAFILE": p.caFile}
			for k, v := range c.env {
				env[k] = v
			}
			r := runProg(t, srv.addr, env)
			srv.wait(t)
			failure(t, r, c.want)
		})
	}
}

func TestNotTLS(t *testing.T) {
	p := newPKI(t)
	srv := startServer(t, func(c net.Conn) {
		c.Read(make([]byte, 4096))
		c.Write([]byte("554 5.5.1 no TLS here\r\n"))
		io.Copy(io.Discard, c)
	})
	r := runProg(t, srv.addr, map[string]string{"CAFILE": p.caFile})
	failure(t, r, `the server's reply is not TLS: "554 5"`)
}

// stallBackstop is far beyond what a stall test should take (a timeout
// of 1 s, and IdleGrace), and far below what it takes when the timeout
// is not applied (runWith's 60 s, the grandchild's 300 s): a bound a
// loaded machine cannot reach.
const stallBackstop = 30 * time.Second

// TestHandshakeStall: the handshake is bounded by timeoutconnect: not
// shorter (checked), and not much longer (a backstop).
func TestHandshakeStall(t *testing.T) {
	p := newPKI(t)
	srv := startServer(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	start := time.Now()
	r := runProg(t, srv.addr, map[string]string{"CAFILE": p.caFile, "QMAILREMOTE_TIMEOUTCONNECT": "1"})
	if d := time.Since(start); d < time.Second || d > stallBackstop {
		t.Errorf("took %v with timeoutconnect 1", d)
	}
	failure(t, r, "timed out after 1 second")
}

func TestServerCloses(t *testing.T) {
	p := newPKI(t)
	srv := startServer(t, func(c net.Conn) { c.Read(make([]byte, 4096)) })
	r := runProg(t, srv.addr, map[string]string{"CAFILE": p.caFile})
	failure(t, r, "the server closed the connection")
}

func TestLiteralIPSAN(t *testing.T) {
	p := newPKI(t)
	cert := p.ca.Issue(t, tlstest.Leaf{IPs: []net.IP{net.ParseIP("127.0.0.1")}})
	var sn seen
	srv := startServer(t, tlsServer(serverConfig(cert), &sn, nil))
	r := runProg(t, srv.addr, map[string]string{"CAFILE": p.caFile, "QMAILREMOTE_MXNAME": "[127.0.0.1]"})
	srv.wait(t)
	if r.code != 0 || r.env == nil {
		t.Fatalf("code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if v, ok := r.env["SSL_TLS_SNI_SERVERNAME"]; !ok || v != "" {
		t.Errorf("SSL_TLS_SNI_SERVERNAME %q (set: %v), want set and empty", v, ok)
	}
	if sn.sni != "" {
		t.Errorf("SNI %q sent for a literal", sn.sni)
	}
	if r.env["QMAILREMOTE_TLSVERIFIED"] != "1" {
		t.Errorf("TLSVERIFIED %q", r.env["QMAILREMOTE_TLSVERIFIED"])
	}
}

func TestOpportunistic(t *testing.T) {
	p := newPKI(t)
	// Unknown CA and wrong name: nobody checks at 0 and 1.
	bad := p.other.Issue(t, tlstest.Leaf{DNSNames: []string{"other.example.test"}})
	old := serverConfig(p.ca.Issue(t, tlstest.Leaf{DNSNames: []string{"mx.example.test"}}))
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS10
	cases := []struct {
		name, strictness string
		cfg              *tls.Config
		protocol         string
	}{
		{"0 self-signed wrong name", "0", serverConfig(bad), "TLSv1.3"},
		{"1 self-signed wrong name", "1", serverConfig(bad), "TLSv1.3"},
		{"0 TLS 1.0", "0", old, "TLSv1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var sn seen
			srv := startServer(t, tlsServer(c.cfg, &sn, nil))
			// CAFILE points nowhere: at 0 and 1 it must not even be read.
			r := runProg(t, srv.addr, map[string]string{"QMAILREMOTE_TLSSTRICTNESS": c.strictness, "CAFILE": "/nonexistent/anchors.pem"})
			srv.wait(t)
			if r.code != 0 || r.env == nil || r.stdout != "" {
				t.Fatalf("code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
			}
			if r.env["QMAILREMOTE_TLSVERIFIED"] != "0" || r.env["SSL_PROTOCOL"] != c.protocol {
				t.Errorf("TLSVERIFIED %q SSL_PROTOCOL %q", r.env["QMAILREMOTE_TLSVERIFIED"], r.env["SSL_PROTOCOL"])
			}
			if sn.sni != "mx.example.test" || r.line != "250 ok" {
				t.Errorf("SNI %q line %q", sn.sni, r.line)
			}
		})
	}
}

func TestAnchorLayouts(t *testing.T) {
	p := newPKI(t)
	cert := p.ca.Issue(t, tlstest.Leaf{DNSNames: []string{"mx.example.test"}})
	base := t.TempDir()
	write := func(path string, b []byte) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	symlink := func(old, new string) {
		t.Helper()
		if err := os.Symlink(old, new); err != nil {
			t.Fatal(err)
		}
	}
	// /etc/ssl/certs style: hash links to PEM files kept elsewhere, junk.
	write(filepath.Join(base, "store", "test-ca.pem"), p.ca.PEM)
	write(filepath.Join(base, "store", "other-ca.pem"), p.other.PEM)
	hashed := filepath.Join(base, "hashed")
	write(filepath.Join(hashed, "README"), []byte("not a certificate\n"))
	symlink("../store/other-ca.pem", filepath.Join(hashed, "0a1b2c3d.0"))
	symlink("../store/test-ca.pem", filepath.Join(hashed, "1a2b3c4d.0"))
	symlink("../store/missing.pem", filepath.Join(hashed, "deadbeef.0"))
	os.Mkdir(filepath.Join(hashed, "subdir"), 0o755)
	// Plain files: one DER, one PEM.
	der := filepath.Join(base, "der")
	write(filepath.Join(der, "test-ca.der"), p.ca.DER)
	write(filepath.Join(der, "other.pem"), p.other.PEM)
	// A bundle with the right CA second.
	bundle := filepath.Join(base, "bundle.pem")
	write(bundle, append(append([]byte{}, p.other.PEM...), p.ca.PEM...))
	empty := filepath.Join(base, "empty")
	write(filepath.Join(empty, "README"), []byte("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n"))

	for _, c := range []struct {
		name string
		env  map[string]string
	}{
		{"CADIR hashed", map[string]string{"CADIR": hashed + "/"}},
		{"CADIR plain DER and PEM", map[string]string{"CADIR": der}},
		{"CAFILE bundle", map[string]string{"CAFILE": bundle}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var sn seen
			srv := startServer(t, tlsServer(serverConfig(cert), &sn, nil))
			r := runProg(t, srv.addr, c.env)
			srv.wait(t)
			if r.code != 0 || r.env["QMAILREMOTE_TLSVERIFIED"] != "1" {
				t.Fatalf("code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
			}
		})
	}
	for _, c := range []struct {
		name, want string
		env        map[string]string
	}{
		{"CADIR without certificates", "no certificate in the directory " + empty, map[string]string{"CADIR": empty}},
		{"CADIR missing", filepath.Join(base, "nodir"), map[string]string{"CADIR": filepath.Join(base, "nodir")}},
		{"CAFILE missing", filepath.Join(base, "nofile"), map[string]string{"CAFILE": filepath.Join(base, "nofile")}},
		{"CAFILE without certificates", "no certificate in " + filepath.Join(empty, "README"), map[string]string{"CAFILE": filepath.Join(empty, "README")}},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := startServer(t, func(c net.Conn) { io.Copy(io.Discard, c) })
			r := runProg(t, srv.addr, c.env)
			m := r.report(t)
			if r.code != 0 || m.Letter != 'Z' || !strings.HasPrefix(m.Text, "Unable to read control files: trust anchors: ") ||
				!strings.Contains(m.Text, c.want) || !strings.HasSuffix(m.Text, ". (#4.3.0)\n") {
				t.Errorf("code %d report %c%q, want %q", r.code, m.Letter, m.Text, c.want)
			}
			if r.env != nil {
				t.Error("the application ran")
			}
		})
	}
}

func TestClientCert(t *testing.T) {
	p := newPKI(t)
	clientCA := tlstest.NewCA(t, "Client CA")
	cert := p.ca.Issue(t, tlstest.Leaf{DNSNames: []string{"mx.example.test"}})
	client := clientCA.Issue(t, tlstest.Leaf{Client: true})
	certPath, keyPath := tlstest.WriteKeyPair(t, t.TempDir(), "client", client)
	cfg := serverConfig(cert)
	cfg.ClientAuth = tls.RequireAndVerifyClientCert
	cfg.ClientCAs = clientCA.Pool()

	t.Run("presented", func(t *testing.T) {
		var sn seen
		srv := startServer(t, tlsServer(cfg, &sn, nil))
		r := runProg(t, srv.addr, map[string]string{"CAFILE": p.caFile, "CERTFILE": certPath, "KEYFILE": keyPath})
		srv.wait(t)
		if r.code != 0 || sn.err != nil {
			t.Fatalf("code %d stdout %q stderr %q server %v", r.code, r.stdout, r.stderr, sn.err)
		}
		if len(sn.state.PeerCertificates) == 0 || !bytes.Equal(sn.state.PeerCertificates[0].Raw, client.Certificate[0]) {
			t.Error("the server did not get our client certificate")
		}
		for _, k := range []string{"CAFILE", "CERTFILE", "KEYFILE"} {
			if _, ok := r.env[k]; ok {
				t.Errorf("%s in the application's environment", k)
			}
		}
		for k, v := range r.env {
			if strings.Contains(v, keyPath) || strings.Contains(v, "PRIVATE KEY") {
				t.Errorf("the key shows in %s", k)
			}
		}
	})

	_, otherKey := tlstest.WriteKeyPair(t, t.TempDir(), "other", clientCA.Issue(t, tlstest.Leaf{Client: true}))
	keyPEM, _ := os.ReadFile(otherKey)
	keyBody := strings.Split(string(keyPEM), "\n")[1]
	for _, c := range []struct {
		name, cert, key, want string
	}{
		{"mismatched", certPath, otherKey, "the client certificate " + certPath + " and key " + otherKey + " do not load: private key does not match public key"},
		{"missing key", certPath, otherKey + ".missing", "unable to read the client key: open " + otherKey + ".missing"},
		{"missing certificate", certPath + ".missing", otherKey, "unable to read the client certificate: open " + certPath + ".missing"},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := startServer(t, func(c net.Conn) { io.Copy(io.Discard, c) })
			r := runProg(t, srv.addr, map[string]string{"CAFILE": p.caFile, "CERTFILE": c.cert, "KEYFILE": c.key})
			m := r.report(t)
			if r.code != 0 || m.Letter != 'Z' || !strings.HasPrefix(m.Text, "Unable to read control files: "+c.want) ||
				!strings.HasSuffix(m.Text, "(#4.3.0)\n") {
				t.Errorf("code %d report %c%q, want %q", r.code, m.Letter, m.Text, c.want)
			}
			if strings.Contains(r.stdout+r.stderr, keyBody) {
				t.Error("the key's content was printed")
			}
		})
	}
}

// TestShuttle20MB echoes 20 MB of random bytes through the application
// (cat) and back: both directions at once, byte for byte, ended by the
// server's close_notify and then ours.
func TestShuttle20MB(t *testing.T) {
	p := newPKI(t)
	cert := p.ca.Issue(t, tlstest.Leaf{DNSNames: []string{"mx.example.test"}})
	data := make([]byte, 20<<20)
	rand.Read(data)
	var sn seen
	var echoed []byte
	var readErr error
	srv := startServer(t, tlsServer(serverConfig(cert), &sn, func(c *tls.Conn, sn *seen) {
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Write(data)
			c.CloseWrite()
		}()
		echoed, readErr = io.ReadAll(c)
		wg.Wait()
	}))
	r := runProg(t, srv.addr, map[string]string{"CAFILE": p.caFile, "FAKE_MODE": "echo"})
	srv.wait(t)
	if r.code != 0 || r.stdout != "" || r.stderr != "" {
		t.Fatalf("code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if readErr != nil {
		t.Errorf("server read: %v", readErr)
	}
	if len(echoed) != len(data) || !bytes.Equal(echoed, data) {
		t.Errorf("echoed %d bytes, sent %d; equal %v", len(echoed), len(data), bytes.Equal(echoed, data))
	}
}

// TestPipes runs the program on two pipes instead of one socket.
func TestPipes(t *testing.T) {
	p := newPKI(t)
	cert := p.ca.Issue(t, tlstest.Leaf{DNSNames: []string{"mx.example.test"}})
	toClientR, toClientW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	toServerR, toServerW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var sn seen
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn := &pipeConn{r: toServerR, w: toClientW}
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		tlsServer(serverConfig(cert), &sn, nil)(conn)
		conn.Close()
	}()
	r := runWith(t, map[string]string{"CAFILE": p.caFile}, toClientR, toServerW)
	toClientR.Close()
	toServerW.Close()
	<-done
	if r.code != 0 || r.line != "250 ok" || sn.line != "EHLO x\r\n" {
		t.Fatalf("code %d line %q server %q/%v stdout %q stderr %q", r.code, r.line, sn.line, sn.err, r.stdout, r.stderr)
	}
}

type pipeConn struct{ r, w *os.File }

func (c *pipeConn) Read(b []byte) (int, error)  { return c.r.Read(b) }
func (c *pipeConn) Write(b []byte) (int, error) { return c.w.Write(b) }
func (c *pipeConn) Close() error                { c.w.Close(); return c.r.Close() }
func (c *pipeConn) LocalAddr() net.Addr         { return &net.UnixAddr{} }
func (c *pipeConn) RemoteAddr() net.Addr        { return &net.UnixAddr{} }
func (c *pipeConn) SetDeadline(t time.Time) error {
	c.w.SetWriteDeadline(t)
	return c.r.SetReadDeadline(t)
}
func (c *pipeConn) SetReadDeadline(t time.Time) error  { return c.r.SetReadDeadline(t) }
func (c *pipeConn) SetWriteDeadline(t time.Time) error { return c.w.SetWriteDeadline(t) }

func TestExitStatus(t *testing.T) {
	p := newPKI(t)
	cert := p.ca.Issue(t, tlstest.Leaf{DNSNames: []string{"mx.example.test"}})
	for _, c := range []struct {
		env  map[string]string
		code int
	}{
		{map[string]string{"FAKE_EXIT": "0"}, 0},
		{map[string]string{"FAKE_EXIT": "10"}, 10},
		{map[string]string{"FAKE_EXIT": "3"}, 3},
		{map[string]string{"FAKE_MODE": "kill"}, 111},
	} {
		var sn seen
		srv := startServer(t, tlsServer(serverConfig(cert), &sn, nil))
		env := map[string]string{"CAFILE": p.caFile}
		for k, v := range c.env {
			env[k] = v
		}
		r := runProg(t, srv.addr, env)
		srv.wait(t)
		if r.code != c.code || r.env == nil {
			t.Errorf("%v: exit %d, want %d; stderr %q", c.env, r.code, c.code, r.stderr)
		}
		if c.code == 111 && !strings.Contains(r.stderr, "killed by signal 9") {
			t.Errorf("stderr %q", r.stderr)
		}
		if c.code != 111 && r.stderr != "" {
			t.Errorf("stderr %q", r.stderr)
		}
	}
}

// TestGrandchild: prog exits but leaves a process holding the socketpair;
// we must not wait for it.
func TestGrandchild(t *testing.T) {
	p := newPKI(t)
	cert := p.ca.Issue(t, tlstest.Leaf{DNSNames: []string{"mx.example.test"}})
	var sn seen
	srv := startServer(t, tlsServer(serverConfig(cert), &sn, func(c *tls.Conn, sn *seen) { io.Copy(io.Discard, c) }))
	out := t.TempDir()
	start := time.Now()
	r := runProg(t, srv.addr, map[string]string{"CAFILE": p.caFile, "FAKE_MODE": "grandchild", "FAKE_OUT": out})
	d := time.Since(start)
	if b, err := os.ReadFile(filepath.Join(out, "pid")); err == nil {
		exec.Command("kill", strings.TrimSpace(string(b))).Run()
	}
	srv.wait(t)
	if r.code != 0 || d > stallBackstop {
		t.Errorf("exit %d after %v (the grandchild sleeps 300 s); stderr %q", r.code, d, r.stderr)
	}
}

// TestSessionStall: the server says nothing after the handshake; the
// session ends after timeoutremote and the application reads EOF.
func TestSessionStall(t *testing.T) {
	p := newPKI(t)
	cert := p.ca.Issue(t, tlstest.Leaf{DNSNames: []string{"mx.example.test"}})
	var sn seen
	srv := startServer(t, tlsServer(serverConfig(cert), &sn, func(c *tls.Conn, sn *seen) { io.Copy(io.Discard, c) }))
	start := time.Now()
	r := runProg(t, srv.addr, map[string]string{"CAFILE": p.caFile, "QMAILREMOTE_TIMEOUTREMOTE": "1"})
	d := time.Since(start)
	srv.wait(t)
	if r.code != 0 || r.env == nil || r.line != "" || d < time.Second || d > stallBackstop {
		t.Errorf("exit %d after %v, line %q; stderr %q", r.code, d, r.line, r.stderr)
	}
}

// recordSniffer watches the TLS record types a server reads (visible in
// the clear up to TLS 1.2) and whether the transport reached EOF.
type recordSniffer struct {
	net.Conn
	hdr   []byte
	skip  int
	types []byte
	eof   bool
}

func (s *recordSniffer) Read(b []byte) (int, error) {
	n, err := s.Conn.Read(b)
	for _, c := range b[:n] {
		if s.skip > 0 {
			s.skip--
			continue
		}
		s.hdr = append(s.hdr, c)
		if len(s.hdr) == 5 {
			s.types = append(s.types, s.hdr[0])
			s.skip = int(s.hdr[3])<<8 | int(s.hdr[4])
			s.hdr = s.hdr[:0]
		}
	}
	if err == io.EOF {
		s.eof = true
	}
	return n, err
}

func TestCloseNotify(t *testing.T) {
	p := newPKI(t)
	cfg := serverConfig(p.ca.Issue(t, tlstest.Leaf{DNSNames: []string{"mx.example.test"}}))
	cfg.MaxVersion = tls.VersionTLS12
	var sn seen
	var sniff *recordSniffer
	var tcpEOF bool
	srv := startServer(t, func(raw net.Conn) {
		sniff = &recordSniffer{Conn: raw}
		tlsServer(cfg, &sn, func(c *tls.Conn, sn *seen) {
			ehlo(c, sn)
			// After close_notify, the transport's end.
			_, err := raw.Read(make([]byte, 1))
			tcpEOF = err == io.EOF
		})(sniff)
	})
	r := runProg(t, srv.addr, map[string]string{"CAFILE": p.caFile})
	srv.wait(t)
	if r.code != 0 || sn.err != nil {
		t.Fatalf("code %d stderr %q server %v", r.code, r.stderr, sn.err)
	}
	if n := len(sniff.types); n == 0 || sniff.types[n-1] != 21 {
		t.Errorf("record types read %v, want an alert (21) last", sniff.types)
	}
	if !tcpEOF && !sniff.eof {
		t.Error("no TCP end after close_notify")
	}
}

func TestBadEnvironment(t *testing.T) {
	p := newPKI(t)
	for _, c := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"no prog", nil, []string{}, "usage: qmail-remote-tlsio prog..."},
		{"no MX name", map[string]string{"QMAILREMOTE_MXNAME": ""}, nil, "QMAILREMOTE_MXNAME is not set"},
		{"bad literal", map[string]string{"QMAILREMOTE_MXNAME": "[192.0.2.300]"}, nil, "QMAILREMOTE_MXNAME holds"},
		{"strictness 3", map[string]string{"QMAILREMOTE_TLSSTRICTNESS": "3"}, nil, "QMAILREMOTE_TLSSTRICTNESS must be"},
		{"timeout 0", map[string]string{"QMAILREMOTE_TIMEOUTREMOTE": "0"}, nil, "QMAILREMOTE_TIMEOUTREMOTE must be"},
		{"no anchors at 2", nil, nil, "CAFILE or CADIR must be set"},
		{"both anchors", map[string]string{"CAFILE": p.caFile, "CADIR": p.dir}, nil, "CAFILE and CADIR are both set"},
		{"cert without key", map[string]string{"CAFILE": p.caFile, "CERTFILE": p.caFile}, nil, "CERTFILE and KEYFILE"},
		{"bad TCPREMOTEIP", map[string]string{"CAFILE": p.caFile, "TCPREMOTEIP": "nowhere"}, nil, "TCPREMOTEIP holds"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := runWith(t, c.env, nil, nil, c.args...)
			if r.code != 100 || r.stdout != "" || !strings.Contains(r.stderr, c.want) {
				t.Errorf("exit %d stdout %q stderr %q, want 100 and %q", r.code, r.stdout, r.stderr, c.want)
			}
		})
	}
	t.Run("no fds 6 and 7", func(t *testing.T) {
		r := runWith(t, map[string]string{"CAFILE": p.caFile}, nil, nil)
		if r.code != 100 || !strings.Contains(r.stderr, "fds 6 and 7") {
			t.Errorf("exit %d stderr %q", r.code, r.stderr)
		}
	})
	t.Run("prog missing", func(t *testing.T) {
		r := runWith(t, map[string]string{"CAFILE": p.caFile}, nil, nil, "/nonexistent/prog")
		if r.code != 111 || !strings.Contains(r.stderr, "unable to find /nonexistent/prog") {
			t.Errorf("exit %d stderr %q", r.code, r.stderr)
		}
	})
}

// BenchmarkThroughput sends 100 MB one way, the application to the
// server (the direction of a message), through qmail-remote-tlsio, and
// the same over a plain crypto/tls connection in this process, and
// reports both rates and their ratio.
func BenchmarkThroughput(b *testing.B) {
	const blocks = 1600 // of 64 KiB: 100 MiB
	const total = blocks * 65536
	ca := tlstest.NewCA(b, "Bench CA")
	cert := ca.Issue(b, tlstest.Leaf{DNSNames: []string{"mx.example.test"}})
	caFile := tlstest.WriteBundle(b, b.TempDir(), ca)
	sink := func(raw net.Conn) (int64, error) {
		c := tls.Server(raw, serverConfig(cert))
		return io.Copy(io.Discard, c)
	}
	listen := func() (net.Listener, chan int64) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		got := make(chan int64, 1)
		go func() {
			defer ln.Close()
			c, err := ln.Accept()
			if err != nil {
				got <- -1
				return
			}
			defer c.Close()
			n, _ := sink(c)
			got <- n
		}()
		return ln, got
	}
	var viaTotal, plainTotal time.Duration
	for i := 0; i < b.N; i++ {
		// Through the program.
		ln, got := listen()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		f, _ := c.(*net.TCPConn).File()
		c.Close()
		out := b.TempDir()
		cmd := exec.Command(binary, fakeProg)
		cmd.Env = []string{"QMAILREMOTE_MXNAME=mx.example.test", "QMAILREMOTE_TLSSTRICTNESS=2",
			"QMAILREMOTE_TIMEOUTCONNECT=10", "QMAILREMOTE_TIMEOUTREMOTE=30", "CAFILE=" + caFile,
			"PATH=/usr/bin:/bin", "FAKE_OUT=" + out, "FAKE_MODE=send", "FAKE_BLOCKS=1600"}
		null, _ := os.Open(os.DevNull)
		cmd.ExtraFiles = []*os.File{null, null, null, f, f}
		start := time.Now()
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
		n := <-got
		viaTotal += time.Since(start)
		f.Close()
		null.Close()
		if n != total {
			b.Fatalf("server got %d bytes via the program, want %d", n, total)
		}

		// Plain crypto/tls, same server.
		ln, got = listen()
		start = time.Now()
		pool := x509.NewCertPool()
		pool.AddCert(ca.Cert)
		tc, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{ServerName: "mx.example.test", RootCAs: pool})
		if err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, 65536)
		for j := 0; j < blocks; j++ {
			if _, err := tc.Write(buf); err != nil {
				b.Fatal(err)
			}
		}
		tc.CloseWrite()
		n = <-got
		plainTotal += time.Since(start)
		tc.Close()
		if n != total {
			b.Fatalf("server got %d bytes plain, want %d", n, total)
		}
	}
	mb := float64(total) / 1e6 * float64(b.N)
	via := mb / viaTotal.Seconds()
	plain := mb / plainTotal.Seconds()
	b.ReportMetric(via, "tlsio-MB/s")
	b.ReportMetric(plain, "plain-MB/s")
	b.ReportMetric(via/plain, "ratio")
}
