// Package anchors checks, before any connection, that a trust anchor
// setting (control/trustanchors: a PEM bundle, or a directory of
// certificates when it ends in "/") holds at least one certificate that
// parses. tlsstrictness 2 verifies every server against it: without a
// usable certificate every server would fail verification, one connection
// after another, and the administrator would read about a handshake
// instead of about the file. qmail-remote-tlsio loads the whole pool; this
// stops at the first usable certificate, to keep a delivery cheap.
package anchors

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"

	"qmail-remote-go/src/internal/regular"
)

// maxFile bounds what is read of one file, as qmail-remote-tlsio does.
const maxFile = 8 << 20

// maxEntries bounds how many directory entries are looked at: a hashed
// /etc/ssl/certs holds a few hundred, and the first usable one ends the
// search anyway.
const maxEntries = 10000

// ErrNone is the error of a setting that holds no usable certificate.
var ErrNone = errors.New("holds no usable certificate")

// Check returns nil if path holds a usable certificate: for a path ending
// in "/", some regular file of that directory (symlinks followed); else
// the file itself (PEM, or a single DER certificate). The error says what
// is wrong, without the path (the caller names the control file).
func Check(path string) error {
	if strings.HasSuffix(path, "/") {
		return checkDir(path)
	}
	ok, err := checkFile(path)
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err // the caller names the path
	}
	if err != nil {
		return err
	}
	if !ok {
		return ErrNone
	}
	return nil
}

func checkDir(dir string) error {
	f, err := regular.OpenDir(dir)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return pe.Err
		}
		return err
	}
	names, err := f.Readdirnames(maxEntries)
	f.Close()
	if err != nil && len(names) == 0 {
		return fmt.Errorf("%w (an empty or unreadable directory)", ErrNone)
	}
	sort.Strings(names) // the same file decides every time
	for _, n := range names {
		if ok, _ := checkFile(filepath.Join(dir, n)); ok {
			return nil
		}
	}
	return ErrNone
}

// checkFile says whether the regular file path holds a usable
// certificate. Only errors opening or reading it are errors.
func checkFile(path string) (bool, error) {
	b, err := regular.ReadFile(path, maxFile)
	if err != nil {
		return false, err
	}
	sawPEM := false
	for rest := b; len(rest) > 0; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		sawPEM = true
		if blk.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(blk.Bytes); err == nil {
			return true, nil
		}
	}
	if !sawPEM {
		if _, err := x509.ParseCertificate(b); err == nil {
			return true, nil
		}
	}
	return false, nil
}
