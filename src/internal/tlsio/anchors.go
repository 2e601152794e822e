// Package tlsio is the TLS client of qmail-remote-tlsio: trust anchors,
// the crypto/tls configuration for each tlsstrictness, the reasons a
// handshake failed in words an administrator can act on, the network
// descriptors as a net.Conn, and the shuttle that copies bytes between the
// TLS connection and the plaintext socketpair of the SMTP stage.
//
// This is the only package of the chain that builds x509 pools: the other
// stages never verify a certificate. Reading the anchors is package
// anchors' (shared with the check qmail-remote makes at tlsstrictness 2).
package tlsio

import (
	"crypto/x509"
	"fmt"

	"qmail-remote-go/src/internal/anchors"
)

// LoadFile reads a PEM bundle (CAFILE) into a pool. A file holding a single
// DER certificate is accepted too. A file without any certificate is an
// error: at tlsstrictness 2 an empty pool would fail every server, and the
// administrator should read why.
func LoadFile(path string) (*x509.CertPool, int, error) {
	pool := x509.NewCertPool()
	n, err := anchors.ScanFile(path, adder(pool))
	if err != nil {
		return nil, 0, err
	}
	if n == 0 {
		return nil, 0, fmt.Errorf("no certificate in %s", path)
	}
	return pool, n, nil
}

// LoadDir reads a directory of trust anchors (CADIR): every certificate of
// every regular file in it (anchors.ScanDir). What does not parse is
// skipped; an unreadable directory or one without any certificate is an
// error naming it.
func LoadDir(dir string) (*x509.CertPool, int, error) {
	pool := x509.NewCertPool()
	n, err := anchors.ScanDir(dir, adder(pool))
	if err != nil {
		return nil, 0, err
	}
	if n == 0 {
		return nil, 0, fmt.Errorf("no certificate in the directory %s", dir)
	}
	return pool, n, nil
}

// adder adds every certificate to pool (duplicates count, as the pool
// keeps one).
func adder(pool *x509.CertPool) func(*x509.Certificate) bool {
	return func(c *x509.Certificate) bool {
		pool.AddCert(c)
		return true
	}
}
