package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestChainVerifies(t *testing.T) {
	dir := t.TempDir()
	if err := run(dir, []string{"mx.example.test"}, []net.IP{net.ParseIP("127.0.0.1")}, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(cert.Certificate[0])
	caPEM, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.pem holds no certificate")
	}
	for _, name := range []string{"mx.example.test", "127.0.0.1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "other.example.test", Roots: pool}); err == nil {
		t.Error("a name not asked for verified")
	}
	if st, _ := os.Stat(filepath.Join(dir, "server.key")); st.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v", st.Mode())
	}
	// The CA certificate is alone in ca.pem: no key next to it.
	if b, rest := pem.Decode(caPEM); b == nil || b.Type != "CERTIFICATE" || len(rest) != 0 {
		t.Error("ca.pem is not exactly one certificate")
	}
}
