package qmailremoteio

import (
	"crypto/tls"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"qmail-remote-go/src/testkit/smtptest"
	"qmail-remote-go/src/testkit/tlstest"
)

// realTLSIO is the real qmail-remote-tlsio: the multicall binary under
// that name, beside the program under test. Run from it, STARTTLS goes on
// in the same process; with QMAILREMOTE_REALEXEC=1 (the second run of
// make test), through the real program.
func realTLSIO(t *testing.T) string {
	t.Helper()
	return filepath.Join(filepath.Dir(binary), "qmail-remote-tlsio")
}

// TestRealTLSStage: qmail-remote-io, the real qmail-remote-tlsio, and
// qmail-remote-io again, against a server with STARTTLS.
func TestRealTLSStage(t *testing.T) {
	t.Parallel()
	tlsio := realTLSIO(t)
	ca := tlstest.NewCA(t, "test CA")
	d := t.TempDir()
	bundle := tlstest.WriteBundle(t, d, ca)
	cert, key := tlstest.WriteKeyPair(t, d, "client", ca.Issue(t, tlstest.Leaf{Client: true}))
	srvCert := ca.Issue(t, tlstest.Leaf{DNSNames: []string{"mx.example.test"}, IPs: []net.IP{net.ParseIP("127.0.0.1")}})
	tlsLine := regexp.MustCompile(`\nTLS: TLSv1\.3 TLS_[A-Z0-9_]+, certificate (not )?verified\.\n$`)
	for _, tc := range []struct {
		name       string
		strictness string
		mxName     string
		client     bool
		verified   bool
	}{
		{"strictness 2, verified", "2", "mx.example.test", false, true},
		{"strictness 2, client certificate", "2", "mx.example.test", true, true},
		{"strictness 1, not verified", "1", "other.example.test", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := &tls.Config{Certificates: []tls.Certificate{srvCert}}
			if tc.client {
				cfg.ClientAuth, cfg.ClientCAs = tls.RequireAndVerifyClientCert, ca.Pool()
			}
			srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{TLS: cfg, KeepData: true, EhloAfterTLS: "250-smtptest\n250-STARTTLS\n250 8BITMIME"})
			env := map[string]string{
				"QMAILREMOTE_TLS":            "require",
				"QMAILREMOTE_TLSIO":          tlsio,
				"QMAILREMOTE_TRUSTANCHORS":   bundle,
				"QMAILREMOTE_TLSSTRICTNESS":  tc.strictness,
				"QMAILREMOTE_MXNAME":         tc.mxName,
				"QMAILREMOTE_TIMEOUTCONNECT": "30",
			}
			if tc.client {
				env["QMAILREMOTE_CLIENTCERT"], env["QMAILREMOTE_CLIENTKEY"] = cert, key
			}
			r := deliver(t, srv.Addr, opts{env: env})
			r.want(t, 0, 'K', "r", "127.0.0.1 accepted message.\nRemote host said: 250 ok: queued\nTLS: TLSv1.3 ")
			if !tlsLine.MatchString(r.text()) || strings.Contains(r.text(), "not verified") == tc.verified {
				t.Errorf("report %q", r.text())
			}
			want := "EHLO client.example.test|STARTTLS|EHLO client.example.test|MAIL FROM:<a@example.test>|RCPT TO:<b@example.test>|DATA|QUIT"
			if got := lines(t, srv); got != want {
				t.Errorf("server got %q, want %q", got, want)
			}
			m := srv.Messages()
			if len(m) != 1 || !m[0].TLS || m[0].TLSVersion != tls.VersionTLS13 || m[0].ServerName != tc.mxName ||
				m[0].ClientCert != tc.client || string(m[0].Data) != "Subject: t\r\n\r\nhello\r\n" {
				t.Errorf("server got %+v", m)
			}
		})
	}
}

// TestRealTLSStageFails: the handshake fails (strictness 2, a name the
// certificate does not have): the TLS stage reports it and exits 11, and
// nothing goes to the server in cleartext.
func TestRealTLSStageFails(t *testing.T) {
	t.Parallel()
	tlsio := realTLSIO(t)
	ca := tlstest.NewCA(t, "test CA")
	bundle := tlstest.WriteBundle(t, t.TempDir(), ca)
	srvCert := ca.Issue(t, tlstest.Leaf{DNSNames: []string{"mx.example.test"}})
	srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{TLS: &tls.Config{Certificates: []tls.Certificate{srvCert}}})
	r := deliver(t, srv.Addr, opts{env: map[string]string{
		"QMAILREMOTE_TLS":            "require",
		"QMAILREMOTE_TLSIO":          tlsio,
		"QMAILREMOTE_TRUSTANCHORS":   bundle,
		"QMAILREMOTE_TLSSTRICTNESS":  "2",
		"QMAILREMOTE_MXNAME":         "wrong.example.test",
		"QMAILREMOTE_TIMEOUTCONNECT": "30",
	}})
	r.want(t, 11, 'Z', "", "Connected to 127.0.0.1 but the TLS handshake failed")
	srv.Close()
	if l := strings.Join(srv.Lines(), "|"); l != "EHLO client.example.test|STARTTLS" {
		t.Errorf("server got %q", l)
	}
}
