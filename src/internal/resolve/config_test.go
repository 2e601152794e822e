package resolve

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"qmail-remote-go/src/internal/regular"
)

func TestParseDNSCacheIP(t *testing.T) {
	good := []struct {
		in   string
		want []string
	}{
		{"192.0.2.53", []string{"192.0.2.53:53"}},
		{"192.0.2.53:5353", []string{"192.0.2.53:5353"}},
		{"2001:db8::53", []string{"[2001:db8::53]:53"}},
		{"[2001:db8::53]:5353", []string{"[2001:db8::53]:5353"}},
		{"[2001:db8::53]", []string{"[2001:db8::53]:53"}},
		{"192.0.2.53, 198.51.100.53:54,[2001:db8::1]:55  2001:db8::2",
			[]string{"192.0.2.53:53", "198.51.100.53:54", "[2001:db8::1]:55", "[2001:db8::2]:53"}},
		{"::ffff:192.0.2.1", []string{"192.0.2.1:53"}},
	}
	for _, c := range good {
		got, err := ParseDNSCacheIP(c.in)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParseDNSCacheIP(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	bad := []string{"", " , ", "dnscache.test", "192.0.2.353", "192.0.2.53:0", "192.0.2.53:65536",
		"192.0.2.53:x", "192.0.2.53:+53", "[192.0.2.53]:53", "[2001:db8::53", "[2001:db8::53]5353",
		"2001:db8::53:", "192.0.2.53:53:53", strings.Repeat("192.0.2.1 ", 17)}
	for _, in := range bad {
		got, err := ParseDNSCacheIP(in)
		if err == nil || !strings.Contains(err.Error(), "DNSCACHEIP") {
			t.Errorf("ParseDNSCacheIP(%q) = %q, %v; want an error naming DNSCACHEIP", in, got, err)
		}
	}
}

func withResolvConf(t *testing.T, text string) {
	t.Helper()
	old := ResolvConf
	t.Cleanup(func() { ResolvConf = old })
	ResolvConf = filepath.Join(t.TempDir(), "resolv.conf")
	if text != "" {
		if err := os.WriteFile(ResolvConf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLoadConfig(t *testing.T) {
	withResolvConf(t, "# comment\nsearch example.test\nnameserver 192.0.2.53\nnameserver bogus\nnameserver 2001:db8::53\noptions timeout:3 attempts:4 rotate\n")
	c, err := LoadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	want := &Client{Servers: []string{"192.0.2.53:53", "[2001:db8::53]:53"}, Timeout: 3 * time.Second, Attempts: 4}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got %+v, want %+v", c, want)
	}

	// DNSCACHEIP overrides the servers, not the timeouts.
	c, err = LoadConfig(" 198.51.100.53:5353 ")
	want = &Client{Servers: []string{"198.51.100.53:5353"}, Timeout: 3 * time.Second, Attempts: 4}
	if err != nil || !reflect.DeepEqual(c, want) {
		t.Errorf("with DNSCACHEIP: got %+v, %v; want %+v", c, err, want)
	}
	if _, err = LoadConfig("nonsense"); err == nil || !strings.Contains(err.Error(), "DNSCACHEIP") {
		t.Errorf("bad DNSCACHEIP: %v", err)
	}

	// Out-of-range options are bounded as glibc bounds them.
	withResolvConf(t, "nameserver 192.0.2.53\noptions timeout:99 attempts:0\n")
	c, _ = LoadConfig("")
	if c.Timeout != 30*time.Second || c.Attempts != 1 {
		t.Errorf("bounds: got %+v", c)
	}
}

func TestLoadConfigDefaults(t *testing.T) {
	local := &Client{Servers: []string{"127.0.0.1:53", "[::1]:53"}, Timeout: 5 * time.Second, Attempts: 2}
	withResolvConf(t, "") // missing
	if c, err := LoadConfig(""); err != nil || !reflect.DeepEqual(c, local) {
		t.Errorf("missing resolv.conf: got %+v, %v", c, err)
	}
	withResolvConf(t, "search example.test\n") // no nameserver
	if c, err := LoadConfig(""); err != nil || !reflect.DeepEqual(c, local) {
		t.Errorf("no nameserver: got %+v, %v", c, err)
	}
	withResolvConf(t, "")
	if err := os.Mkdir(ResolvConf, 0o755); err != nil { // unreadable as a file
		t.Fatal(err)
	}
	if _, err := LoadConfig(""); err == nil {
		t.Errorf("unreadable resolv.conf: no error")
	}
}

// A resolv.conf that is not a regular file is an error at once, like an
// unreadable one (a FIFO would block open(2) forever); with DNSCACHEIP
// it is ignored, as an unreadable one is.
func TestResolvConfNotRegular(t *testing.T) {
	for _, tc := range []struct {
		name, kind string
		make       func(p string) error
	}{
		{"FIFO", "a FIFO", func(p string) error { return syscall.Mkfifo(p, 0o644) }},
		{"device", "a character device", func(p string) error { return os.Symlink("/dev/zero", p) }},
		{"directory", "a directory", func(p string) error { return os.Mkdir(p, 0o755) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			withResolvConf(t, "")
			if err := tc.make(ResolvConf); err != nil {
				t.Fatal(err)
			}
			type res struct {
				c   *Client
				err error
			}
			load := func(dnscacheip string) res {
				done := make(chan res, 1)
				go func() { c, err := LoadConfig(dnscacheip); done <- res{c, err} }()
				select {
				case r := <-done:
					return r
				case <-time.After(30 * time.Second): // a backstop: it returns at once
					t.Fatal("LoadConfig blocked")
					return res{}
				}
			}
			r := load("")
			if !errors.Is(r.err, regular.ErrNotRegular) || !strings.Contains(r.err.Error(), ResolvConf) ||
				!strings.Contains(r.err.Error(), tc.kind) {
				t.Errorf("LoadConfig: %+v, %v; want an error naming %s, %s", r.c, r.err, ResolvConf, tc.kind)
			}
			r = load("192.0.2.53")
			want := &Client{Servers: []string{"192.0.2.53:53"}, Timeout: 5 * time.Second, Attempts: 2}
			if r.err != nil || !reflect.DeepEqual(r.c, want) {
				t.Errorf("with DNSCACHEIP: %+v, %v; want %+v", r.c, r.err, want)
			}
		})
	}
}
