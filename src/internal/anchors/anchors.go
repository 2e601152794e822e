// Package anchors reads trust anchors (control/trustanchors: a PEM bundle,
// or a directory of certificates when it ends in "/") for the two programs
// that need them: qmail-remote-tlsio loads every certificate into its
// pool (package tlsio), and qmail-remote and qmail-remote-routes check,
// before any connection, that tlsstrictness 2 has at least one usable
// certificate to verify against (Check). Without one, every server would
// fail verification, one connection after another, and the administrator
// would read about a handshake instead of about the file. Check stops at
// the first usable certificate, to keep a delivery cheap.
//
// This package needs crypto/x509 but not crypto/tls, so that the entry
// program does not start up the TLS stack.
package anchors

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"

	"qmail-remote-go/src/internal/regular"
)

// MaxFile bounds what is read of one trust anchor file. A bundle of every
// public CA is about 200 KiB; anything much bigger is not one.
const MaxFile = 8 << 20

// ErrNone is the error of a setting that holds no usable certificate.
var ErrNone = errors.New("holds no usable certificate")

// ScanFile calls each for every certificate of the regular file path: the
// CERTIFICATE blocks of a PEM file that parse ("TRUSTED CERTIFICATE", the
// OpenSSL format whose trailing trust settings x509 refuses, is skipped:
// its plain twin sits next to it in /etc/ssl/certs), or the file itself
// as one DER certificate. It stops when each returns false, and returns
// how many certificates it handed over. Only opening or reading the file
// is an error (a FIFO, a device or a file over MaxFile among them).
func ScanFile(path string, each func(*x509.Certificate) bool) (int, error) {
	n := 0
	err := ScanFileDER(path, parsing(each, &n))
	return n, err
}

// parsing turns each, which takes certificates, into a function that
// takes their DER, skips what does not parse, and counts in *n what it
// handed over.
func parsing(each func(*x509.Certificate) bool, n *int) func(der []byte) bool {
	return func(der []byte) bool {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return true
		}
		*n++
		return each(c)
	}
}

// ScanFileDER is ScanFile without the parsing: each gets the DER of every
// CERTIFICATE block (or of the whole file, when it holds no PEM), whether
// it parses or not, until it returns false.
func ScanFileDER(path string, each func(der []byte) bool) error {
	b, err := regular.ReadFile(path, MaxFile)
	if err != nil {
		return err
	}
	sawPEM := false
	for rest := b; len(rest) > 0; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		sawPEM = true
		if blk.Type == "CERTIFICATE" && !each(blk.Bytes) {
			return nil
		}
	}
	if !sawPEM {
		each(b)
	}
	return nil
}

// ScanDir is ScanFile over every regular file of dir (symlinks followed),
// in name order, until each returns false. This covers the hashed
// /etc/ssl/certs layout (abcd1234.0 links next to the .pem files and a
// bundle) and a plain directory of .pem or .der files alike. A file that
// cannot be read, or is not a regular file (a FIFO put there must not
// block us), is skipped; only a directory that cannot be listed is an
// error (opened with O_DIRECTORY: anything else fails at once).
func ScanDir(dir string, each func(*x509.Certificate) bool) (int, error) {
	n := 0
	err := ScanDirDER(dir, parsing(each, &n))
	return n, err
}

// ScanDirDER is ScanDir without the parsing (ScanFileDER).
func ScanDirDER(dir string, each func(der []byte) bool) error {
	d, err := regular.OpenDir(dir)
	if err != nil {
		return err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return err
	}
	sort.Strings(names)
	more := true
	for _, name := range names {
		ScanFileDER(filepath.Join(dir, name), func(der []byte) bool {
			more = each(der)
			return more
		})
		if !more {
			break
		}
	}
	return nil
}

// Check returns nil if path holds a usable certificate: for a path ending
// in "/", some regular file of that directory; else the file itself. The
// error says what is wrong, without the path (the caller names the
// control file).
func Check(path string) error {
	first := func(*x509.Certificate) bool { return false }
	var n int
	var err error
	if strings.HasSuffix(path, "/") {
		n, err = ScanDir(path, first)
	} else {
		n, err = ScanFile(path, first)
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err // the caller names the path
	}
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNone
	}
	return nil
}
