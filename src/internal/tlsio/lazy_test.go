package tlsio

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"qmail-remote-go/src/testkit/tlstest"
)

// TestSubjectOf: the subject found by walking the DER is x509's
// RawSubject, for CAs and leaves of our test CA and for every certificate
// of the system's bundle when there is one.
func TestSubjectOf(t *testing.T) {
	ca := tlstest.NewCA(t, "Subject Test CA")
	leaf := ca.Issue(t, tlstest.Leaf{DNSNames: []string{"mx.example.test"}})
	certs := []*x509.Certificate{ca.Cert, leaf.Leaf}
	if b, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt"); err == nil {
		for rest := b; ; {
			var blk *pem.Block
			if blk, rest = pem.Decode(rest); blk == nil {
				break
			}
			if c, err := x509.ParseCertificate(blk.Bytes); err == nil {
				certs = append(certs, c)
			}
		}
	}
	for _, c := range certs {
		s, ok := subjectOf(c.Raw)
		if !ok || string(s) != string(c.RawSubject) {
			t.Errorf("%s: subject %x (%v), want %x", c.Subject, s, ok, c.RawSubject)
		}
	}
	for _, bad := range [][]byte{nil, {0x30}, {0x30, 0x84, 0xff, 0xff, 0xff, 0xff}, {0x30, 0x03, 0x30, 0x01, 0x02}, leaf.Leaf.Raw[:40]} {
		if _, ok := subjectOf(bad); ok {
			t.Errorf("%x: a subject in a broken certificate", bad)
		}
	}
}

// FuzzSubjectOf: any bytes at all, no panic, and a subject only inside
// them.
func FuzzSubjectOf(f *testing.F) {
	ca := tlstest.NewCA(f, "Fuzz CA")
	f.Add(ca.Cert.Raw)
	f.Add(ca.Issue(f, tlstest.Leaf{DNSNames: []string{"a.example.test"}}).Leaf.Raw)
	f.Fuzz(func(t *testing.T, b []byte) {
		s, ok := subjectOf(b)
		if ok && len(s) > len(b) {
			t.Fatalf("subject of %d bytes in %d", len(s), len(b))
		}
	})
}

// TestLazyPool: only the anchors that can end the chain are parsed, and
// verification finds the same answers as with every anchor parsed.
func TestLazyPool(t *testing.T) {
	a, b := tlstest.NewCA(t, "Anchor A"), tlstest.NewCA(t, "Anchor B")
	dir := t.TempDir()
	bundle := filepath.Join(dir, "bundle.pem")
	if err := os.WriteFile(bundle, append(append([]byte{}, a.PEM...), b.PEM...), 0o644); err != nil {
		t.Fatal(err)
	}
	onlyB := filepath.Join(dir, "b.pem")
	if err := os.WriteFile(onlyB, b.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	leaf := a.Issue(t, tlstest.Leaf{DNSNames: []string{"mx.example.test"}})
	verify := func(path string) error {
		anc, _, err := LoadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		_, err = leaf.Leaf.Verify(x509.VerifyOptions{Roots: anc.Pool([]*x509.Certificate{leaf.Leaf}), DNSName: "mx.example.test"})
		var unknown x509.UnknownAuthorityError
		if err != nil && !errors.As(err, &unknown) {
			t.Errorf("%s: %v, want an unknown authority or nothing", path, err)
		}
		// The parsed anchors are the ones issuing what was presented.
		for subject, list := range anc.bySubject {
			for _, an := range list {
				parsedNow := an.cert != nil
				if want := subject == string(leaf.Leaf.RawIssuer); parsedNow != want {
					t.Errorf("%s: anchor parsed %v, want %v", path, parsedNow, want)
				}
			}
		}
		return err
	}
	if err := verify(bundle); err != nil {
		t.Errorf("anchors A and B: %v", err)
	}
	if err := verify(onlyB); err == nil {
		t.Error("anchor B alone verified a certificate of A")
	}
	// A self-signed server certificate given as its own anchor.
	self := filepath.Join(dir, "self.pem")
	os.WriteFile(self, a.PEM, 0o644)
	anc, _, err := LoadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Cert.Verify(x509.VerifyOptions{Roots: anc.Pool([]*x509.Certificate{a.Cert})}); err != nil {
		t.Errorf("an anchor presented as itself: %v", err)
	}
}
