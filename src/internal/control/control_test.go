package control

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func write(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLine(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"mail.example.test\n", "mail.example.test"},
		{"mail.example.test \t\r\nsecond line\n", "mail.example.test"},
		{"no newline", "no newline"},
		{"\nsecond", ""},
		{"", ""},
	} {
		got, found, err := Line(write(t, tc.in))
		if err != nil || !found || got != tc.want {
			t.Errorf("Line(%q) = %q, %v, %v; want %q", tc.in, got, found, err, tc.want)
		}
	}
	if _, found, err := Line(filepath.Join(t.TempDir(), "missing")); found || err != nil {
		t.Errorf("missing file: found %v err %v", found, err)
	}
}

func TestUnreadable(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := Line(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
	big := write(t, strings.Repeat("x", MaxFile+1))
	if _, _, err := Line(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("huge file: %v", err)
	}
	if os.Geteuid() != 0 {
		p := write(t, "60\n")
		os.Chmod(p, 0)
		if _, err := Int(p, 1, 1, 100); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("unreadable file: %v", err)
		}
	}
}

func TestInt(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"30\n", 30, false},
		{"", 7, false}, // empty file: default
		{"0\n", 0, true},
		{"-5\n", 0, true},
		{"+5\n", 0, true},
		{"5s\n", 0, true},
		{" 5\n", 0, true},
		{"99999999999999999999\n", 0, true},
		{"1200\t \n", 1200, false},
	} {
		got, err := Int(write(t, tc.in), 7, 1, 1<<31-1)
		if (err != nil) != tc.wantErr || !tc.wantErr && got != tc.want {
			t.Errorf("Int(%q) = %d, %v", tc.in, got, err)
		}
		if err != nil && !strings.Contains(err.Error(), "must hold a number") {
			t.Errorf("error %q does not say what is wrong", err)
		}
	}
	if n, err := Int(filepath.Join(t.TempDir(), "missing"), 60, 1, 100); n != 60 || err != nil {
		t.Errorf("missing: %d %v", n, err)
	}
}

func TestList(t *testing.T) {
	got, err := List(write(t, "# comment\n192.0.2.1\n\n  \n2001:db8::1 \n#x\n"))
	if err != nil || strings.Join(got, ",") != "192.0.2.1,2001:db8::1" {
		t.Errorf("List = %q, %v", got, err)
	}
}

func TestAddrs(t *testing.T) {
	got, err := Addrs(write(t, "192.0.2.1\n::ffff:198.51.100.1\n2001:DB8::1\n"))
	if err != nil || len(got) != 3 || got[1].String() != "198.51.100.1" || got[2].String() != "2001:db8::1" {
		t.Errorf("Addrs = %v, %v", got, err)
	}
	if _, err := Addrs(write(t, "192.0.2.1\nlocalhost\n")); err == nil || !strings.Contains(err.Error(), `"localhost"`) {
		t.Errorf("bad address: %v", err)
	}
}

func TestName(t *testing.T) {
	if n, found, err := Name(write(t, "mx.example.test\n")); n != "mx.example.test" || !found || err != nil {
		t.Errorf("Name: %q %v %v", n, found, err)
	}
	if _, _, err := Name(write(t, "bad name\n")); err == nil {
		t.Error("a name with a space was accepted")
	}
	if _, found, err := Name(write(t, "\n")); found || err != nil {
		t.Errorf("empty name: found %v err %v", found, err)
	}
}

func TestLines(t *testing.T) {
	var got []string
	for l := range Lines([]byte("a:b\n\n# c\n  \nlong line here\nd:e \t\r\nf"), 10) {
		if l.TooLong {
			got = append(got, fmt.Sprintf("%d:too long", l.N))
			continue
		}
		got = append(got, fmt.Sprintf("%d:%s", l.N, l.Text))
	}
	if strings.Join(got, ",") != "1:a:b,5:too long,6:d:e,7:f" {
		t.Errorf("Lines = %q", got)
	}
}

// A control file that is not a regular file is an error naming it and its
// kind, returned at once: a FIFO must not hang the reader in open(2), a
// device must not be read (issue: nothing may block without a deadline).
func TestNotRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	zero := filepath.Join(dir, "zero")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	fifoLink := filepath.Join(dir, "fifolink")
	if err := os.Symlink(fifo, fifoLink); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, kind string }{
		{fifo, "a FIFO"},
		{fifoLink, "a FIFO"},
		{dir, "a directory"},
		{zero, "a character device"},
		{"/dev/null", "a character device"},
	} {
		for name, read := range map[string]func(string) error{
			"Line": func(p string) error { _, _, err := Line(p); return err },
			"List": func(p string) error { _, err := List(p); return err },
			"Int":  func(p string) error { _, err := Int(p, 1, 1, 100); return err },
		} {
			done := make(chan error, 1)
			go func() { done <- read(tc.path) }()
			var err error
			select {
			case err = <-done:
			case <-time.After(30 * time.Second): // a backstop: it returns at once
				t.Fatalf("%s(%s) blocked", name, tc.path)
			}
			want := tc.path + " is not a regular file (" + tc.kind + ")"
			if err == nil || err.Error() != want {
				t.Errorf("%s(%s) = %v, want %q", name, tc.path, err, want)
			}
		}
	}
}
