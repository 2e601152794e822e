// Package tlsio is the TLS client of qmail-remote-tlsio: trust anchors,
// the crypto/tls configuration for each tlsstrictness, the reasons a
// handshake failed in words an administrator can act on, the network
// descriptors as a net.Conn, and the shuttle that copies bytes between the
// TLS connection and the plaintext socketpair of the SMTP stage.
//
// This is the only package of the chain that builds x509 pools: the other
// stages never verify a certificate.
package tlsio

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"

	"qmail-remote-go/src/internal/regular"
)

// maxAnchorFile bounds what is read of one trust anchor file. A bundle of
// every public CA is about 200 KiB; anything much bigger is not one.
const maxAnchorFile = 8 << 20

// LoadFile reads a PEM bundle (CAFILE) into a pool. A file holding a single
// DER certificate is accepted too. A file without any certificate is an
// error: at tlsstrictness 2 an empty pool would fail every server, and the
// administrator should read why.
func LoadFile(path string) (*x509.CertPool, int, error) {
	b, err := readBounded(path)
	if err != nil {
		return nil, 0, err
	}
	pool := x509.NewCertPool()
	n := addCerts(pool, b)
	if n == 0 {
		return nil, 0, fmt.Errorf("no certificate in %s", path)
	}
	return pool, n, nil
}

// LoadDir reads a directory of trust anchors (CADIR): every regular file in
// it (symlinks followed) that holds PEM certificates or is a DER
// certificate. This covers the hashed /etc/ssl/certs layout (abcd1234.0
// symlinks next to the .pem files and a bundle) and a plain directory of
// .pem or .der files alike. What does not parse is skipped; an unreadable
// directory or one without any certificate is an error naming it.
func LoadDir(dir string) (*x509.CertPool, int, error) {
	ents, err := readDir(dir)
	if err != nil {
		return nil, 0, err
	}
	pool := x509.NewCertPool()
	n := 0
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		st, err := os.Stat(p) // follows symlinks; a dangling one fails
		if err != nil || !st.Mode().IsRegular() || st.Size() > maxAnchorFile {
			continue
		}
		// readBounded checks again what it opened: the entry may have
		// become a FIFO since the stat, and must not block us then.
		b, err := readBounded(p)
		if err != nil {
			continue
		}
		n += addCerts(pool, b)
	}
	if n == 0 {
		return nil, 0, fmt.Errorf("no certificate in the directory %s", dir)
	}
	return pool, n, nil
}

// addCerts adds every certificate of b (PEM blocks, or b itself as DER)
// and returns how many it added, duplicates included.
func addCerts(pool *x509.CertPool, b []byte) int {
	n := 0
	sawPEM := false
	for rest := b; len(rest) > 0; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		sawPEM = true
		// "TRUSTED CERTIFICATE" (OpenSSL's aux format) carries trailing
		// trust settings that x509 refuses; such files are skipped, as
		// their plain twins sit next to them in /etc/ssl/certs.
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			continue
		}
		pool.AddCert(c)
		n++
	}
	if !sawPEM {
		if c, err := x509.ParseCertificate(b); err == nil {
			pool.AddCert(c)
			n++
		}
	}
	return n
}

// readBounded reads a trust anchor file: without blocking, only if it is
// a regular file (a FIFO in its place would block open(2) forever, a
// device could be endless), and at most maxAnchorFile bytes.
func readBounded(path string) ([]byte, error) {
	return regular.ReadFile(path, maxAnchorFile)
}

// readDir lists a directory of trust anchors. It is opened with
// O_DIRECTORY: anything else, a FIFO included, fails at once.
func readDir(dir string) ([]os.DirEntry, error) {
	d, err := regular.OpenDir(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.ReadDir(-1)
}
