package chaintest

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"path/filepath"
	"slices"
	"testing"

	"qmail-remote-go/src/internal/tlsrpt"

	"qmail-remote-go/src/testkit/smtptest"
	"qmail-remote-go/src/testkit/tlstest"
)

// daneWorld is a qmail home with control/tlspolicy and no trust anchors,
// and a signed example.test (the test DNS server on loopback, whose AD
// bit counts) with MX 10 mx1.example.test (127.0.0.1) and MX 20
// mx2.example.test (127.0.0.2), each a TLS server with a certificate
// for its name.
func daneWorld(t *testing.T, policy string) (*home, map[string]*smtptest.Server, func(host string, tlsa ...string), [2]string) {
	t.Helper()
	leaf1 := testCA.Issue(t, tlstest.Leaf{DNSNames: []string{"mx1.example.test"}})
	leaf2 := testCA.Issue(t, tlstest.Leaf{DNSNames: []string{"mx2.example.test"}})
	port, srv := servers(t, map[string]smtptest.Script{
		"127.0.0.1": {TLS: &tls.Config{Certificates: []tls.Certificate{leaf1}}},
		"127.0.0.2": {TLS: &tls.Config{Certificates: []tls.Certificate{leaf2}}},
	}, "127.0.0.1", "127.0.0.2")
	h, d := dnsHome(t, port)
	d.Add("example.test. 60 IN MX 10 mx1.example.test.", "example.test. 60 IN MX 20 mx2.example.test.",
		"mx1.example.test. 60 IN A 127.0.0.1", "mx2.example.test. 60 IN A 127.0.0.2")
	d.Secure("example.test", ".example.test")
	h.control("tlspolicy", policy)
	addTLSA := func(host string, tlsa ...string) {
		for _, r := range tlsa {
			d.Add("_" + port + "._tcp." + host + ". 60 IN TLSA " + r)
		}
	}
	spki := func(c tls.Certificate) string {
		s := sha256.Sum256(c.Leaf.RawSubjectPublicKeyInfo)
		return hex.EncodeToString(s[:])
	}
	return h, srv, addTLSA, [2]string{spki(leaf1), spki(leaf2)}
}

// TestDANE: through the whole chain, a host with DNSSEC-secure TLSA
// records gets TLS authenticated by them, with no trust anchors at all;
// one whose records do not match is never used, not even in cleartext.
func TestDANE(t *testing.T) {
	const other = "0000000000000000000000000000000000000000000000000000000000000000"
	t.Run("DANE-EE", func(t *testing.T) {
		h, srv, tlsa, spki := daneWorld(t, ":dane\n")
		tlsa("mx1.example.test", "3 1 1 "+spki[0])
		h.run(sample, "example.test", "a@client.example.test", rcpt).expect(t, 'K',
			"127.0.0.1 accepted message.", "certificate verified (DANE-EE 3 1 1).")
		if m := srv["127.0.0.1"].Messages(); len(m) != 1 || !m[0].TLS {
			t.Errorf("mx1 got %+v", m)
		}
	})
	t.Run("mismatch goes to the next MX", func(t *testing.T) {
		h, srv, tlsa, spki := daneWorld(t, ":dane\n")
		tlsa("mx1.example.test", "3 1 1 "+other)
		tlsa("mx2.example.test", "3 1 1 "+spki[1])
		h.run(sample, "example.test", "a@client.example.test", rcpt).expect(t, 'K',
			"127.0.0.2 accepted message.", "certificate verified (DANE-EE 3 1 1).")
		if m := srv["127.0.0.1"].Messages(); len(m) != 0 {
			t.Errorf("mx1 got %+v", m)
		}
		// Both sessions are in the TLS reports' log (RFC 8460), under
		// the policy type tlsa with each host's records.
		h.expectTLSRPT(t,
			tlsrpt.Record{Domain: "example.test", PolicyType: "tlsa", PolicyStrings: []string{"3 1 1 " + other},
				MXHost: "mx1.example.test", IP: "127.0.0.1", Result: "tlsa-invalid"},
			tlsrpt.Record{Domain: "example.test", PolicyType: "tlsa", PolicyStrings: []string{"3 1 1 " + spki[1]},
				MXHost: "mx2.example.test", IP: "127.0.0.2", Result: "success"})
	})
	t.Run("mismatch everywhere", func(t *testing.T) {
		h, srv, tlsa, _ := daneWorld(t, "example.test:dane\n")
		tlsa("mx1.example.test", "3 1 1 "+other)
		tlsa("mx2.example.test", "3 1 1 "+other)
		h.run(sample, "example.test", "a@client.example.test", rcpt).expect(t, 'Z',
			"Sorry, I wasn't able to establish an SMTP connection. (#4.4.1)",
			"(TLS) Connected to 127.0.0.2 but the TLS handshake failed: DANE: no TLSA record matches the server's certificate chain")
		for _, s := range srv {
			if m := s.Messages(); len(m) != 0 {
				t.Errorf("got %+v", m)
			}
		}
	})
	t.Run("dane-only without TLSA", func(t *testing.T) {
		h, _, tlsa, spki := daneWorld(t, ".test:dane-only\n")
		tlsa("mx2.example.test", "1 1 1 "+spki[1])
		h.run(sample, "example.test", "a@client.example.test", rcpt).expect(t, 'Z',
			"Sorry, no mail exchanger of example.test can be used with DANE now. (#4.7.5)",
			"mx1.example.test: no DNSSEC-secure TLSA records, and control/tlspolicy says dane-only",
			"mx2.example.test: no usable TLSA record")
	})
	t.Run("dane: no TLSA is may", func(t *testing.T) {
		h, _, _, _ := daneWorld(t, ":dane\n")
		h.run(sample, "example.test", "a@client.example.test", rcpt).expect(t, 'K',
			"127.0.0.1 accepted message.", "certificate not verified.")
	})
	t.Run("a bad policy line waits", func(t *testing.T) {
		h, srv, _, _ := daneWorld(t, "example.test:dane\nexample.test:verfy\n")
		h.run(sample, "example.test", "a@client.example.test", rcpt).expect(t, 'Z',
			"Unable to read control files: control/tlspolicy line 2")
		if m := srv["127.0.0.1"].Messages(); len(m) != 0 {
			t.Errorf("mx1 got %+v", m)
		}
	})
}

// expectTLSRPT checks the TLS reports' log of the home: the records in
// order, compared on the fields given (Time, SendingIP and Reason aside,
// which vary; Reason must be set for a failure).
func (h *home) expectTLSRPT(t *testing.T, want ...tlsrpt.Record) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(h.dir, "run", tlsrpt.Subdir, "*"))
	var got []tlsrpt.Record
	for _, f := range files {
		rs, bad, err := tlsrpt.Read(f)
		if err != nil || bad != 0 {
			t.Fatalf("reading %s: %v, %d bad lines", f, err, bad)
		}
		got = append(got, rs...)
	}
	if len(got) != len(want) {
		t.Fatalf("the TLS reports' log has %d records, want %d: %+v", len(got), len(want), got)
	}
	for i, g := range got {
		w := want[i]
		if g.Domain != w.Domain || g.PolicyType != w.PolicyType || !slices.Equal(g.PolicyStrings, w.PolicyStrings) ||
			g.MXHost != w.MXHost || g.IP != w.IP || g.Result != w.Result || (g.Result != "success") != (g.Reason != "") ||
			g.SendingIP == "" {
			t.Errorf("record %d: %+v\nwant %+v", i, g, w)
		}
	}
}
