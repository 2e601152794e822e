package chaintest

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"qmail-remote-go/src/testkit/smtptest"
	"qmail-remote-go/src/testkit/tlstest"
)

// tlsWorld is a qmail home with trust anchors, and DNS saying
// example.test MX 10 mx1.example.test (127.0.0.1), MX 20 mx2.example.test
// (127.0.0.2), both on one port.
type tlsWorld struct {
	h    *home
	ca   *tlstest.CA
	srv  map[string]*smtptest.Server
	port string
}

// serverTLS is what a server presents: a certificate for name from ca.
func serverTLS(t *testing.T, ca *tlstest.CA, l tlstest.Leaf) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, l)}}
}

func newTLSWorld(t *testing.T, strictness string, mx1, mx2 smtptest.Script) *tlsWorld {
	t.Helper()
	port, srv := servers(t, map[string]smtptest.Script{"127.0.0.1": mx1, "127.0.0.2": mx2}, "127.0.0.1", "127.0.0.2")
	h, d := dnsHome(t, port)
	d.Add("example.test. 60 IN MX 10 mx1.example.test.", "example.test. 60 IN MX 20 mx2.example.test.",
		"mx1.example.test. 60 IN A 127.0.0.1", "mx2.example.test. 60 IN A 127.0.0.2")
	w := &tlsWorld{h: h, srv: srv, port: port}
	return w.anchors(t, strictness)
}

var testCA *tlstest.CA

func (w *tlsWorld) anchors(t *testing.T, strictness string) *tlsWorld {
	w.ca = testCA
	w.h.control("trustanchors", tlstest.WriteBundle(t, t.TempDir(), w.ca)+"\n")
	w.h.control("tlsstrictness", strictness+"\n")
	return w
}

func init() {
	// One CA for every TLS test of this package: generation is cheap, but
	// servers' scripts are built before the world exists.
	testCA = tlstest.NewCA(fakeTB{}, "chaintest CA")
}

// fakeTB lets tlstest run outside a test (its errors cannot happen with
// crypto/rand working; if they do, panic loudly).
type fakeTB struct{ testing.TB }

func (fakeTB) Helper()                   {}
func (fakeTB) Fatal(args ...any)         { panic(args) }
func (fakeTB) Fatalf(f string, a ...any) { panic(f) }

func good(t *testing.T, name string) *tls.Config {
	return serverTLS(t, testCA, tlstest.Leaf{DNSNames: []string{name}})
}

func TestTLSLevels(t *testing.T) {
	other := tlstest.NewCA(t, "unknown CA")
	expired := tlstest.Leaf{DNSNames: []string{"mx1.example.test"}, NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}
	noCert := &tls.Config{} // the handshake fails: no certificate to offer
	tests := []struct {
		name       string
		level      string
		mx1, mx2   func(t *testing.T) smtptest.Script
		letter     byte
		want       []string
		deliveredS string // which server got the message ("" none)
		tls        bool   // delivered under TLS
	}{
		{"2 valid", "2", func(t *testing.T) smtptest.Script { return smtptest.Script{TLS: good(t, "mx1.example.test")} }, nil,
			'K', []string{"127.0.0.1 accepted message.", "TLS: TLSv1.3", "certificate verified."}, "127.0.0.1", true},
		{"2 no STARTTLS anywhere", "2", nil, nil, 'Z', []string{"(#4.4.1)", "does not offer STARTTLS"}, "", false},
		{"2 STARTTLS refused", "2", func(t *testing.T) smtptest.Script {
			return smtptest.Script{TLS: good(t, "mx1.example.test"), StartTLS: "454 TLS not available"}
		}, nil, 'Z', []string{"refused STARTTLS"}, "", false},
		{"2 unknown CA", "2", func(t *testing.T) smtptest.Script {
			return smtptest.Script{TLS: serverTLS(t, other, tlstest.Leaf{DNSNames: []string{"mx1.example.test"}})}
		}, nil, 'Z', []string{"unknown authority"}, "", false},
		{"2 wrong name", "2", func(t *testing.T) smtptest.Script { return smtptest.Script{TLS: good(t, "wrong.example.test")} }, nil,
			'Z', []string{"mx1.example.test"}, "", false},
		{"2 expired", "2", func(t *testing.T) smtptest.Script { return smtptest.Script{TLS: serverTLS(t, testCA, expired)} }, nil,
			'Z', []string{"expired"}, "", false},
		{"2 response injection", "2", func(t *testing.T) smtptest.Script {
			return smtptest.Script{TLS: good(t, "mx1.example.test"), Inject: "250 injected\r\n"}
		}, nil, 'Z', []string{"injection"}, "", false},
		{"2 second MX valid", "2", nil, func(t *testing.T) smtptest.Script { return smtptest.Script{TLS: good(t, "mx2.example.test")} },
			'K', []string{"127.0.0.2 accepted message.", "certificate verified."}, "127.0.0.2", true},
		{"0 no STARTTLS", "0", nil, nil, 'K', []string{"127.0.0.1 accepted message."}, "127.0.0.1", false},
		{"0 unknown CA is still encrypted", "0", func(t *testing.T) smtptest.Script {
			return smtptest.Script{TLS: serverTLS(t, other, tlstest.Leaf{DNSNames: []string{"elsewhere.test"}})}
		}, nil, 'K', []string{"TLS: TLSv1", "certificate not verified."}, "127.0.0.1", true},
		{"0 handshake fails, cleartext on the same address", "0", func(t *testing.T) smtptest.Script { return smtptest.Script{TLS: noCert} }, nil,
			'K', []string{"127.0.0.1 accepted message."}, "127.0.0.1", false},
		{"1 only the second MX has STARTTLS", "1", nil, func(t *testing.T) smtptest.Script { return smtptest.Script{TLS: good(t, "mx2.example.test")} },
			'K', []string{"127.0.0.2 accepted message.", "TLS: TLSv1.3"}, "127.0.0.2", true},
		{"1 nobody has STARTTLS", "1", nil, nil, 'K', []string{"127.0.0.1 accepted message."}, "127.0.0.1", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var s1, s2 smtptest.Script
			if tc.mx1 != nil {
				s1 = tc.mx1(t)
			}
			if tc.mx2 != nil {
				s2 = tc.mx2(t)
			}
			w := newTLSWorld(t, tc.level, s1, s2)
			res := w.h.run(sample, "example.test", "a@b", rcpt)
			res.expect(t, tc.letter, tc.want...)
			if tc.letter == 'K' && !tc.tls && strings.Contains(res.message.Text, "TLS:") {
				t.Errorf("a cleartext delivery claims TLS: %q", res.message.Text)
			}
			for addr, s := range w.srv {
				for _, m := range s.Messages() {
					if m.From != "" && addr != tc.deliveredS {
						t.Errorf("%s received MAIL although it should not have: %v", addr, m.Commands)
					}
					if addr == tc.deliveredS && m.Done && m.TLS != tc.tls {
						t.Errorf("delivered under TLS: %v, want %v", m.TLS, tc.tls)
					}
				}
			}
			if tc.deliveredS != "" {
				done := false
				for _, m := range w.srv[tc.deliveredS].Messages() {
					done = done || m.Done
				}
				if !done {
					t.Errorf("%s did not get the message", tc.deliveredS)
				}
			}
		})
	}
}

func TestTLSClientCertificate(t *testing.T) {
	cfg := good(t, "mx1.example.test")
	cfg.ClientAuth = tls.RequireAndVerifyClientCert
	cfg.ClientCAs = testCA.Pool()
	w := newTLSWorld(t, "2", smtptest.Script{TLS: cfg}, smtptest.Script{})
	dir := t.TempDir()
	cert, key := tlstest.WriteKeyPair(t, dir, "client", testCA.Issue(t, tlstest.Leaf{Client: true}))
	w.h.control("clientcert", cert+"\n")
	w.h.control("clientkey", key+"\n")
	res := w.h.run(sample, "example.test", "a@b", rcpt)
	res.expect(t, 'K', "certificate verified.")
	if m := w.srv["127.0.0.1"].Messages(); len(m) != 1 || !m[0].ClientCert {
		t.Errorf("the server saw no client certificate: %+v", m)
	}
	if strings.Contains(string(res.raw), "PRIVATE KEY") {
		t.Error("the key leaked into a report")
	}
	// A key that does not match the certificate: Z naming the file.
	other, _ := tlstest.WriteKeyPair(t, t.TempDir(), "other", testCA.Issue(t, tlstest.Leaf{Client: true}))
	w.h.control("clientcert", other+"\n")
	res = w.h.run(sample, "example.test", "a@b", rcpt)
	res.expect(t, 'Z')
	if !strings.Contains(res.message.Text, "other.crt") && !strings.Contains(res.message.Text, "client.key") {
		t.Errorf("Z does not name the file: %q", res.message.Text)
	}
}

func TestTLSAnchorDirectory(t *testing.T) {
	w := newTLSWorld(t, "2", smtptest.Script{TLS: good(t, "mx1.example.test")}, smtptest.Script{})
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "some-ca.pem"), testCA.PEM, 0o644)
	os.WriteFile(filepath.Join(dir, "README"), []byte("not a certificate\n"), 0o644)
	w.h.control("trustanchors", dir+"/\n")
	w.h.run(sample, "example.test", "a@b", rcpt).expect(t, 'K', "certificate verified.")
}

// An address-literal relay is verified by the certificate's IP SAN.
func TestTLSLiteralRelay(t *testing.T) {
	srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{TLS: serverTLS(t, testCA, tlstest.Leaf{IPs: []net.IP{net.ParseIP("127.0.0.1")}})})
	h := newHome(t)
	route(h, srv)
	w := (&tlsWorld{h: h}).anchors(t, "2")
	w.h.run(sample, "example.test", "a@b", rcpt).expect(t, 'K', "certificate verified.")
	// A certificate for a name, not the address: refused.
	bad := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{TLS: good(t, "mx1.example.test")})
	route(h, bad)
	h.run(sample, "example.test", "a@b", rcpt).expect(t, 'Z')
	if len(bad.Messages()) != 0 && bad.Messages()[0].From != "" {
		t.Error("MAIL sent to a server whose certificate does not match the literal")
	}
}
