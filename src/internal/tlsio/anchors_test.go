package tlsio

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"qmail-remote-go/src/internal/regular"
	"qmail-remote-go/src/testkit/tlstest"

	"qmail-remote-go/src/testkit/backstop"
)

// Trust anchors, the client certificate and its key are read only from
// regular files, without blocking: a FIFO in their place would hang
// open(2) forever, a device could be endless.
func TestNotRegularFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	zero := filepath.Join(dir, "zero")
	os.Symlink("/dev/zero", zero)
	ca := tlstest.NewCA(t, "A")
	cert, key := tlstest.WriteKeyPair(t, dir, "client", ca.Issue(t, tlstest.Leaf{Client: true}))

	load := map[string]func(p string) error{
		"LoadFile": func(p string) error { _, _, err := LoadFile(p); return err },
		"LoadClientCert cert": func(p string) error {
			_, err := LoadClientCert(p, key)
			return err
		},
		"LoadClientCert key": func(p string) error {
			_, err := LoadClientCert(cert, p)
			return err
		},
	}
	for name, f := range load {
		for _, tc := range []struct{ path, kind string }{
			{fifo, "a FIFO"},
			{zero, "a character device"},
			{dir, "a directory"},
		} {
			err := backstop.Within(t, name+"("+tc.path+")", func() error { return f(tc.path) })
			if !errors.Is(err, regular.ErrNotRegular) || !strings.Contains(err.Error(), tc.path) ||
				!strings.Contains(err.Error(), "not a regular file ("+tc.kind+")") {
				t.Errorf("%s(%s) = %v, want not a regular file (%s) naming it", name, tc.path, err, tc.kind)
			}
		}
	}
	if _, err := LoadClientCert(cert, key); err != nil {
		t.Errorf("the good pair: %v", err)
	}

	// CADIR: a FIFO in place of the directory fails at once; a FIFO in
	// the directory is skipped.
	err := backstop.Within(t, "LoadDir(fifo)", func() error { _, _, err := LoadDir(fifo); return err })
	if !errors.Is(err, syscall.ENOTDIR) || !strings.Contains(err.Error(), fifo) {
		t.Errorf("LoadDir(fifo) = %v, want not a directory", err)
	}
	cadir := t.TempDir()
	os.WriteFile(filepath.Join(cadir, "a.pem"), ca.PEM, 0o644)
	syscall.Mkfifo(filepath.Join(cadir, "b.pem"), 0o644)
	os.Symlink("/dev/zero", filepath.Join(cadir, "c.pem"))
	var n int
	err = backstop.Within(t, "LoadDir", func() error { var err error; _, n, err = LoadDir(cadir); return err })
	if err != nil || n != 1 {
		t.Errorf("LoadDir with a FIFO and a device in it: %d certificates, %v", n, err)
	}
}
