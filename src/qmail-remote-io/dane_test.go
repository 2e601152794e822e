package qmailremoteio

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"strings"
	"testing"

	"qmail-remote-go/src/testkit/smtptest"
	"qmail-remote-go/src/testkit/tlstest"
)

// TestTLSPolicyLevels: the levels control/tlspolicy gives a server
// (QMAILREMOTE_TLSLEVEL, set by the connector), through the real TLS
// stage: DANE by its TLSA records, key pins, match= names. None of them
// needs trust anchors but verify.
func TestTLSPolicyLevels(t *testing.T) {
	t.Parallel()
	tlsio := realTLSIO(t)
	ca := tlstest.NewCA(t, "test CA")
	bundle := tlstest.WriteBundle(t, t.TempDir(), ca)
	leaf := ca.Issue(t, tlstest.Leaf{DNSNames: []string{"mx.example.test"}})
	spki := sha256.Sum256(leaf.Leaf.RawSubjectPublicKeyInfo)
	caCert := sha256.Sum256(ca.DER)
	// The server sends its CA too: DANE-TA needs the anchor in the chain.
	chain := leaf
	chain.Certificate = [][]byte{leaf.Certificate[0], ca.DER}
	const other = "0000000000000000000000000000000000000000000000000000000000000000"
	for _, tc := range []struct {
		name    string
		env     map[string]string
		code    int
		letter  byte
		text    string // what the report has
		sni     string // the server name the server saw
		anchors bool
	}{
		{"DANE-EE", map[string]string{"QMAILREMOTE_TLSLEVEL": "dane", "QMAILREMOTE_TLSA": "3:1:1:" + hex.EncodeToString(spki[:]),
			"QMAILREMOTE_TLSANAMES": "smtp.example.test,mx.example.test"},
			0, 'K', "certificate verified (DANE-EE 3 1 1).", "smtp.example.test", false},
		{"DANE-EE rollover", map[string]string{"QMAILREMOTE_TLSLEVEL": "dane", "QMAILREMOTE_TLSA": "3:1:1:" + other + ",3:1:1:" + hex.EncodeToString(spki[:]),
			"QMAILREMOTE_TLSANAMES": "mx.example.test"},
			0, 'K', "certificate verified (DANE-EE 3 1 1).", "mx.example.test", false},
		{"DANE-TA", map[string]string{"QMAILREMOTE_TLSLEVEL": "dane", "QMAILREMOTE_TLSA": "2:0:1:" + hex.EncodeToString(caCert[:]),
			"QMAILREMOTE_TLSANAMES": "smtp.example.test,mx.example.test"},
			0, 'K', "certificate verified (DANE-TA 2 0 1).", "smtp.example.test", false},
		{"DANE-TA wrong name", map[string]string{"QMAILREMOTE_TLSLEVEL": "dane", "QMAILREMOTE_TLSA": "2:0:1:" + hex.EncodeToString(caCert[:]),
			"QMAILREMOTE_TLSANAMES": "smtp.example.test"},
			11, 'Z', "the TLS handshake failed: DANE: the certificate matches the DANE-TA record but not the name smtp.example.test", "smtp.example.test", false},
		{"DANE no match", map[string]string{"QMAILREMOTE_TLSLEVEL": "dane", "QMAILREMOTE_TLSA": "3:1:1:" + other,
			"QMAILREMOTE_TLSANAMES": "mx.example.test"},
			11, 'Z', "the TLS handshake failed: DANE: no TLSA record matches the server's certificate chain", "mx.example.test", false},
		{"DANE unusable records only", map[string]string{"QMAILREMOTE_TLSLEVEL": "dane", "QMAILREMOTE_TLSA": "1:1:1:" + hex.EncodeToString(spki[:]),
			"QMAILREMOTE_TLSANAMES": "mx.example.test"},
			0, 'K', "certificate not verified.", "mx.example.test", false},
		{"encrypt with the pin", map[string]string{"QMAILREMOTE_TLSLEVEL": "encrypt", "QMAILREMOTE_TLSPINS": other + " " + hex.EncodeToString(spki[:])},
			0, 'K', "certificate verified (key pin).", "other.example.test", false},
		{"encrypt, another key", map[string]string{"QMAILREMOTE_TLSLEVEL": "encrypt", "QMAILREMOTE_TLSPINS": other},
			11, 'Z', "the TLS handshake failed: the server's key (SPKI SHA-256 " + hex.EncodeToString(spki[:]) + ") is none of the pins of control/tlspolicy", "other.example.test", false},
		{"encrypt", map[string]string{"QMAILREMOTE_TLSLEVEL": "encrypt"},
			0, 'K', "certificate not verified.", "other.example.test", false},
		{"verify with match", map[string]string{"QMAILREMOTE_TLSLEVEL": "verify", "QMAILREMOTE_TLSMATCH": "a.example.test .example.test"},
			0, 'K', "certificate verified.", "other.example.test", true},
		{"verify, match fails", map[string]string{"QMAILREMOTE_TLSLEVEL": "verify", "QMAILREMOTE_TLSMATCH": "mx.example.org .example.org"},
			11, 'Z', "the TLS handshake failed: the certificate matches none of mx.example.org, .example.org (control/tlspolicy match=)", "other.example.test", true},
		{"verify without anchors", map[string]string{"QMAILREMOTE_TLSLEVEL": "verify"},
			0, 'Z', "Unable to read control files: trust anchors: none are set (control/trustanchors), and the server must be verified.", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{TLS: &tls.Config{Certificates: []tls.Certificate{chain}},
				KeepData: true, EhloAfterTLS: "250-smtptest\n250 8BITMIME"})
			env := map[string]string{
				"QMAILREMOTE_TLS":            "require",
				"QMAILREMOTE_TLSIO":          tlsio,
				"QMAILREMOTE_TLSSTRICTNESS":  "0",
				"QMAILREMOTE_MXNAME":         "other.example.test",
				"QMAILREMOTE_TIMEOUTCONNECT": "30",
			}
			if strings.HasPrefix(tc.name, "DANE") {
				env["QMAILREMOTE_MXNAME"] = "mx.example.test"
			}
			if tc.anchors {
				env["QMAILREMOTE_TRUSTANCHORS"] = bundle
			}
			for k, v := range tc.env {
				env[k] = v
			}
			r := deliver(t, srv.Addr, opts{env: env})
			if r.code != tc.code || r.perr != nil || r.res.Message.Letter != tc.letter || !strings.Contains(r.text(), tc.text) || r.stderr != "" {
				t.Errorf("exit %d, report %q (%v), stderr %q; want exit %d, %c with %q", r.code, r.stdout, r.perr, r.stderr, tc.code, tc.letter, tc.text)
			}
			srv.Close()
			m := srv.Messages()
			if tc.letter == 'K' && (len(m) != 1 || m[0].ServerName != tc.sni) {
				t.Errorf("server got %+v, want the SNI %q", m, tc.sni)
			}
			if tc.letter != 'K' && len(m) != 0 {
				t.Errorf("a message went through: %+v", m)
			}
		})
	}
}
