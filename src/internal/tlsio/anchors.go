package tlsio

import (
	"crypto/x509"
	"fmt"
	"sync"

	"qmail-remote-go/src/internal/anchors"
)

// Anchors are the trust anchors of tlsstrictness 2, read but not parsed.
// A bundle of every public CA holds about 150 certificates, and parsing
// them all (their public keys above all) costs several milliseconds of
// CPU per delivery, for the one or two that can ever verify a server.
// So each is filed by its subject, found by walking its DER, and parsed
// only when a server presents a certificate it could have issued (Pool).
type Anchors struct {
	bySubject map[string][]*anchor
}

type anchor struct {
	der  []byte
	once sync.Once
	cert *x509.Certificate // nil when it does not parse
}

func (a *anchor) parsed() *x509.Certificate {
	a.once.Do(func() { a.cert, _ = x509.ParseCertificate(a.der) })
	return a.cert
}

func newAnchors() *Anchors { return &Anchors{bySubject: map[string][]*anchor{}} }

// add files a certificate by its subject; what has no subject to find is
// no certificate, and is skipped.
func (a *Anchors) add(n *int) func(der []byte) bool {
	return func(der []byte) bool {
		if subject, ok := subjectOf(der); ok {
			a.bySubject[string(subject)] = append(a.bySubject[string(subject)], &anchor{der: der})
			*n++
		}
		return true
	}
}

// LoadFile reads a PEM bundle (CAFILE). A file holding a single DER
// certificate is accepted too. A file without any certificate is an
// error: at tlsstrictness 2 no server could verify, and the administrator
// should read why.
func LoadFile(path string) (*Anchors, int, error) {
	a, n := newAnchors(), 0
	if err := anchors.ScanFileDER(path, a.add(&n)); err != nil {
		return nil, 0, err
	}
	if n == 0 {
		return nil, 0, fmt.Errorf("no certificate in %s", path)
	}
	return a, n, nil
}

// LoadDir reads a directory of trust anchors (CADIR): every certificate of
// every regular file in it (anchors.ScanDirDER). An unreadable directory
// or one without any certificate is an error naming it.
func LoadDir(dir string) (*Anchors, int, error) {
	a, n := newAnchors(), 0
	if err := anchors.ScanDirDER(dir, a.add(&n)); err != nil {
		return nil, 0, err
	}
	if n == 0 {
		return nil, 0, fmt.Errorf("no certificate in the directory %s", dir)
	}
	return a, n, nil
}

// Pool is the pool of the anchors that can end a chain made of the
// certificates presented: those whose subject is the issuer of one of
// them (a chain ends at the first certificate found among the roots, and
// a root is found by the issuer's name), or the subject of one of them (a
// presented certificate that is itself an anchor). x509.Verify with this
// pool finds every chain it would find with all the anchors. An anchor
// that does not parse is left out, as when all were parsed up front.
func (a *Anchors) Pool(presented []*x509.Certificate) *x509.CertPool {
	pool := x509.NewCertPool()
	if a == nil {
		return pool
	}
	for _, c := range presented {
		for _, name := range [][]byte{c.RawIssuer, c.RawSubject} {
			for _, an := range a.bySubject[string(name)] {
				if cert := an.parsed(); cert != nil {
					pool.AddCert(cert)
				}
			}
		}
	}
	return pool
}

// subjectOf finds the subject Name of a DER certificate without parsing
// the rest (RFC 5280 4.1):
//
//	Certificate ::= SEQUENCE { tbsCertificate TBSCertificate, ... }
//	TBSCertificate ::= SEQUENCE { version [0] EXPLICIT OPTIONAL,
//	    serialNumber, signature, issuer, validity, subject, ... }
func subjectOf(der []byte) ([]byte, bool) {
	cert, _, ok := derElement(der, 0x30)
	if !ok {
		return nil, false
	}
	tbs, _, ok := derElement(cert, 0x30)
	if !ok {
		return nil, false
	}
	if len(tbs) > 0 && tbs[0] == 0xa0 { // version
		if _, tbs, ok = derElement(tbs, 0xa0); !ok {
			return nil, false
		}
	}
	// serialNumber INTEGER, signature SEQUENCE, issuer SEQUENCE,
	// validity SEQUENCE.
	for _, tag := range []byte{0x02, 0x30, 0x30, 0x30} {
		if _, tbs, ok = derElement(tbs, tag); !ok {
			return nil, false
		}
	}
	_, _, ok = derElement(tbs, 0x30)
	if !ok {
		return nil, false
	}
	// The subject with its tag and length: what RawSubject holds.
	_, rest, _ := derElement(tbs, 0x30)
	return tbs[:len(tbs)-len(rest)], true
}

// derElement reads one DER element of the given tag at the start of b:
// its contents, and what follows it.
func derElement(b []byte, tag byte) (contents, rest []byte, ok bool) {
	if len(b) < 2 || b[0] != tag {
		return nil, nil, false
	}
	n, off := int(b[1]), 2
	if n >= 0x80 {
		k := n & 0x7f
		if k == 0 || k > 4 || len(b) < 2+k {
			return nil, nil, false
		}
		n = 0
		for _, x := range b[2 : 2+k] {
			n = n<<8 | int(x)
		}
		off = 2 + k
	}
	if n < 0 || len(b)-off < n {
		return nil, nil, false
	}
	return b[off : off+n], b[off+n:], true
}
