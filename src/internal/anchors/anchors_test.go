package anchors

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"qmail-remote-go/src/testkit/tlstest"
)

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "Test CA")
	bundle := tlstest.WriteBundle(t, dir, ca)
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	empty := write("empty.pem", "")
	junk := write("junk.pem", "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n")
	key := write("key.pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
	text := write("text", "hello\n")
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	good := t.TempDir()
	os.Symlink(bundle, filepath.Join(good, "abcd1234.0"))
	os.WriteFile(filepath.Join(good, "README"), []byte("not a certificate"), 0o644)
	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, "x.pem"), []byte("junk"), 0o644)
	os.Symlink(fifo, filepath.Join(bad, "y.pem"))

	for _, tc := range []struct {
		path string
		ok   bool
	}{
		{bundle, true},
		{good + "/", true},
		{empty, false},
		{junk, false},
		{key, false},
		{text, false},
		{fifo, false},
		{bad + "/", false},
		{t.TempDir() + "/", false},
		{filepath.Join(dir, "nosuch"), false},
	} {
		err := Check(tc.path)
		if (err == nil) != tc.ok {
			t.Errorf("Check(%s) = %v, want ok %v", tc.path, err, tc.ok)
		}
	}
	if err := Check(empty); !errors.Is(err, ErrNone) {
		t.Errorf("empty file: %v, want ErrNone", err)
	}
}
