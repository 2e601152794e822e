package tlstest

import (
	"crypto/x509"
	"net"
	"testing"
	"time"
)

func TestIssue(t *testing.T) {
	ca := NewCA(t, "test CA")
	other := NewCA(t, "other CA")
	verify := func(c *x509.Certificate, name string, roots *x509.CertPool) error {
		_, err := c.Verify(x509.VerifyOptions{DNSName: name, Roots: roots})
		return err
	}
	good := ca.Issue(t, Leaf{DNSNames: []string{"mx.example.test"}})
	if err := verify(good.Leaf, "mx.example.test", ca.Pool()); err != nil {
		t.Errorf("valid certificate: %v", err)
	}
	if err := verify(good.Leaf, "other.example.test", ca.Pool()); err == nil {
		t.Error("wrong name verified")
	}
	if err := verify(good.Leaf, "mx.example.test", other.Pool()); err == nil {
		t.Error("unknown CA verified")
	}
	old := ca.Issue(t, Leaf{DNSNames: []string{"mx.example.test"}, NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	if err := verify(old.Leaf, "mx.example.test", ca.Pool()); err == nil {
		t.Error("expired certificate verified")
	}
	ip := ca.Issue(t, Leaf{IPs: []net.IP{net.ParseIP("127.0.0.1")}})
	if err := verify(ip.Leaf, "127.0.0.1", ca.Pool()); err != nil {
		t.Errorf("IP SAN: %v", err)
	}
	dir := t.TempDir()
	WriteBundle(t, dir, ca, other)
	WriteKeyPair(t, dir, "client", ca.Issue(t, Leaf{Client: true}))
}
