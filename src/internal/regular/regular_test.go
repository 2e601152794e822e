package regular

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"qmail-remote-go/src/testkit/backstop"
)

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(fifo, link); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "goodlink")
	if err := os.Symlink(file, good); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		want string // "" ok, else part of the error
	}{
		{file, ""},
		{good, ""},
		{fifo, "a FIFO"},
		{link, "a FIFO"},
		{dir, "a directory"},
		{"/dev/null", "a character device"},
	} {
		done := make(chan error, 1)
		go func() {
			f, err := Open(c.path)
			if err == nil {
				f.Close()
			}
			done <- err
		}()
		var err error
		select {
		case err = <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("Open(%s) blocked", c.path)
		}
		switch {
		case c.want == "" && err != nil:
			t.Errorf("Open(%s): %v", c.path, err)
		case c.want != "" && (err == nil || !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), c.want)):
			t.Errorf("Open(%s) = %v, want an error with %q", c.path, err, c.want)
		}
	}
	if _, err := Open(filepath.Join(dir, "nosuch")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}
}

func TestReadFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	os.WriteFile(p, []byte("12345"), 0o600)
	if b, err := ReadFile(p, 5); err != nil || string(b) != "12345" {
		t.Errorf("ReadFile(5) = %q, %v", b, err)
	}
	if _, err := ReadFile(p, 4); err == nil || !strings.Contains(err.Error(), "larger than 4 bytes") {
		t.Errorf("ReadFile(4) = %v, want larger than 4 bytes", err)
	}
}

func TestOpenFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, flag := range []int{os.O_RDONLY, os.O_WRONLY, os.O_RDWR, os.O_RDONLY | os.O_CREATE, os.O_WRONLY | os.O_CREATE} {
		err := backstop.Within(t, "OpenFile(fifo)", func() error {
			f, err := OpenFile(fifo, flag, 0o644)
			if err == nil {
				f.Close()
			}
			return err
		})
		if !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), "not a regular file (a FIFO)") {
			t.Errorf("OpenFile(fifo, %#o) = %v, want not a regular file (a FIFO)", flag, err)
		}
	}
	// Created when missing, then usable as any file.
	p := filepath.Join(dir, "new")
	f, err := OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("abc"), 0); err != nil {
		t.Error(err)
	}
	b := make([]byte, 3)
	if _, err := f.ReadAt(b, 0); err != nil || string(b) != "abc" {
		t.Errorf("ReadAt = %q, %v", b, err)
	}
	f.Close()
	if _, err := OpenFile(dir, os.O_RDONLY|os.O_CREATE, 0o600); !errors.Is(err, ErrNotRegular) {
		t.Errorf("OpenFile(dir) = %v", err)
	}
}

func TestOpenDir(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	if f, err := OpenDir(dir); err != nil {
		t.Errorf("OpenDir(dir): %v", err)
	} else {
		f.Close()
	}
	for _, p := range []string{fifo, file, "/dev/null"} {
		err := backstop.Within(t, "OpenDir("+p+")", func() error {
			f, err := OpenDir(p)
			if err == nil {
				f.Close()
			}
			return err
		})
		if !errors.Is(err, syscall.ENOTDIR) {
			t.Errorf("OpenDir(%s) = %v, want not a directory", p, err)
		}
	}
}

func TestCheck(t *testing.T) {
	st, err := os.Stat("/dev/null")
	if err != nil {
		t.Skip(err)
	}
	if err := Check(st); !errors.Is(err, ErrNotRegular) || err.Error() != "not a regular file (a character device)" {
		t.Errorf("Check(/dev/null) = %v", err)
	}
}
