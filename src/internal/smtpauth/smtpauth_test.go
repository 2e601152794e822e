package smtpauth

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"qmail-remote-go/src/internal/regular"
)

const sample = `# smarthosts
smtp.example.net:587:starttls:user@example.net:s3cret:with:colons
SMTP.Example.ORG.:465:SMTPS:u2:pw 2  	
[192.0.2.7]:2525:starttls:lit:pw3
[IPv6:2001:db8::7]:587:starttls:lit6:pw4
198.51.100.9:465:smtps:bare:pw5

smtp.example.net:465:smtps:other:pw6
`

func TestParseLookup(t *testing.T) {
	tab, err := Parse([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	if tab.Len() != 6 {
		t.Errorf("Len %d, want 6", tab.Len())
	}
	for _, tc := range []struct {
		relay string
		port  int
		want  Entry
		found bool
	}{
		{"smtp.example.net", 587, Entry{StartTLS, "user@example.net", "s3cret:with:colons"}, true},
		{"SMTP.EXAMPLE.NET.", 587, Entry{StartTLS, "user@example.net", "s3cret:with:colons"}, true},
		{"smtp.example.net", 465, Entry{SMTPS, "other", "pw6"}, true},
		{"smtp.example.net", 25, Entry{}, false},
		{"smtp.example.org", 465, Entry{SMTPS, "u2", "pw 2"}, true},
		{"[192.0.2.7]", 2525, Entry{StartTLS, "lit", "pw3"}, true},
		{"[2001:db8::7]", 587, Entry{StartTLS, "lit6", "pw4"}, true},
		{"[IPv6:2001:DB8:0::7]", 587, Entry{StartTLS, "lit6", "pw4"}, true},
		{"[198.51.100.9]", 465, Entry{SMTPS, "bare", "pw5"}, true},
		{"198.51.100.9", 465, Entry{SMTPS, "bare", "pw5"}, true},
		{"example.net", 587, Entry{}, false},
		{"[not a literal", 587, Entry{}, false},
		{"", 587, Entry{}, false},
	} {
		got, found := tab.Lookup(tc.relay, tc.port)
		if got != tc.want || found != tc.found {
			t.Errorf("Lookup(%q, %d) = %+v, %v; want %+v, %v", tc.relay, tc.port, got, found, tc.want, tc.found)
		}
	}
}

func TestLastWins(t *testing.T) {
	tab, err := Parse([]byte("a.test:587:starttls:u:one\nA.TEST:587:starttls:u:two\n"))
	if err != nil {
		t.Fatal(err)
	}
	if e, _ := tab.Lookup("a.test", 587); e.Password != "two" {
		t.Errorf("got %+v", e)
	}
}

// Every error names the line and says what is wrong, and never quotes the
// line: the secret words below must not appear in it.
func TestSyntaxErrors(t *testing.T) {
	for _, tc := range []struct {
		text   string
		line   int
		reason string
	}{
		{"secret", 1, reasonFields},
		{"# c\n\nsmtp.test:587:starttls:secret", 3, reasonFields},
		{"smtp.test:587:starttls::secret", 1, reasonEmptyUser},
		{"smtp.test:587:starttls:secret:", 1, reasonEmptyPasswd},
		{"smtp.test:587:tls:secret:secret", 1, reasonMethod},
		{"smtp.test:0:starttls:secret:secret", 1, reasonPort},
		{"smtp.test:65536:starttls:secret:secret", 1, reasonPort},
		{"smtp.test:+587:starttls:secret:secret", 1, reasonPort},
		{"smtp.test::starttls:secret:secret", 1, reasonPort},
		{":587:starttls:secret:secret", 1, reasonEmptyRelay},
		{"smtp test:587:starttls:secret:secret", 1, reasonRelay},
		{"secret..test:587:starttls:u:secret", 1, reasonRelay},
		{"300.1.1.1:587:starttls:u:secret", 1, reasonRelay},
		{"2001:db8::7:587:starttls:u:secret", 1, reasonRelayIPv6},
		{"[2001:db8::7:587:starttls:u:secret", 1, reasonLiteral},
		{"[192.0.2.300]:587:starttls:u:secret", 1, reasonLiteral},
		{"[IPv6:192.0.2.1]:587:starttls:u:secret", 1, reasonLiteral},
		{"[192.0.2.1]secret:587:starttls:u:secret", 1, reasonAfterLit},
		{"smtp.test:587:starttls:u:sec\x00ret", 1, reasonControl},
		{"smtp.test:587:starttls:u:sec\rret", 1, reasonControl},
		{"ok.test:587:starttls:u:p\n" + strings.Repeat("secret", 200), 2, reasonLongLine},
		{strings.Repeat("secret\n", MaxText/7+1), 0, reasonTooLarge},
	} {
		_, err := Parse([]byte(tc.text))
		var se *SyntaxError
		if !errors.As(err, &se) || se.Line != tc.line || se.Reason != tc.reason {
			t.Errorf("Parse(%.40q) = %v, want line %d: %s", tc.text, err, tc.line, tc.reason)
			continue
		}
		if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "smtp.test") {
			t.Errorf("error %q quotes the file", err)
		}
		if !strings.HasPrefix(err.Error(), File) {
			t.Errorf("error %q does not name the file", err)
		}
	}
}

func write(t *testing.T, mode os.FileMode, text string) string {
	t.Helper()
	home := t.TempDir()
	os.Mkdir(filepath.Join(home, "control"), 0o755)
	p := filepath.Join(home, File)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return home
}

func TestLookupFile(t *testing.T) {
	home := write(t, 0o640, sample)
	e, _, found, err := Lookup(home, []string{""}, "smtp.example.net", 587)
	if err != nil || !found || e.User != "user@example.net" {
		t.Errorf("Lookup = %+v, %v, %v", e, found, err)
	}
	if _, _, found, err = Lookup(home, []string{""}, "smtp.example.net", 25); err != nil || found {
		t.Errorf("port 25: found %v, %v", found, err)
	}

	// No file: no credentials, no error.
	if _, _, found, err := Lookup(t.TempDir(), []string{""}, "smtp.example.net", 587); err != nil || found {
		t.Errorf("missing file: found %v, %v", found, err)
	}

	// Readable by everyone: refused, whatever the lookup.
	home = write(t, 0o644, sample)
	var fe *FileError
	if _, _, _, err := Lookup(home, []string{""}, "nothing.test", 25); !errors.As(err, &fe) || !strings.Contains(err.Error(), "readable by everyone; chmod o-r control/smtpauth") {
		t.Errorf("world-readable: %v", err)
	}

	// A syntax error anywhere fails every lookup: half a file is not used.
	home = write(t, 0o600, sample+"broken secret line\n")
	var se *SyntaxError
	if _, _, _, err := Lookup(home, []string{""}, "smtp.example.net", 587); !errors.As(err, &se) || se.Line != 9 {
		t.Errorf("syntax error: %v", err)
	}

	// A directory.
	home = t.TempDir()
	os.MkdirAll(filepath.Join(home, File), 0o700)
	if _, _, _, err := Lookup(home, []string{""}, "smtp.example.net", 587); !errors.As(err, &fe) {
		t.Errorf("directory: %v", err)
	}

	// Unreadable (unless we are root, who reads everything).
	if os.Geteuid() != 0 {
		home = write(t, 0o000, sample)
		if _, _, _, err := Lookup(home, []string{""}, "smtp.example.net", 587); !errors.As(err, &fe) || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("unreadable: %v", err)
		}
	}
}

// The file must be a regular file (a FIFO must not hang the reader), owned
// by root or by the user we run as, and writable by no one else (issue:
// hardening, items 2 and 5). Every refusal names the file and the fix and
// never quotes the content.
func TestFileChecks(t *testing.T) {
	type setup func(t *testing.T, home string)
	mode := func(m os.FileMode) setup {
		return func(t *testing.T, home string) {
			os.WriteFile(filepath.Join(home, File), []byte(sample), 0o600)
			os.Chmod(filepath.Join(home, File), m)
		}
	}
	// link makes control/smtpauth a symlink to a file of mode m elsewhere:
	// the target is what is checked.
	link := func(m os.FileMode) setup {
		return func(t *testing.T, home string) {
			target := filepath.Join(t.TempDir(), "smtpauth")
			os.WriteFile(target, []byte(sample), 0o600)
			os.Chmod(target, m)
			if err := os.Symlink(target, filepath.Join(home, File)); err != nil {
				t.Fatal(err)
			}
		}
	}
	special := func(make func(p string) error) setup {
		return func(t *testing.T, home string) {
			if err := make(filepath.Join(home, File)); err != nil {
				t.Fatal(err)
			}
		}
	}
	fifo := func(p string) error { return syscall.Mkfifo(p, 0o600) }
	tests := []struct {
		name  string
		setup setup
		want  string // "" accepted
	}{
		{"600", mode(0o600), ""},
		{"640", mode(0o640), ""},
		{"400", mode(0o400), ""},
		{"group-writable", mode(0o620), "control/smtpauth is writable by its group; chmod go-w control/smtpauth (it holds passwords)"},
		{"world-writable", mode(0o602), "control/smtpauth is writable by everyone; chmod go-w control/smtpauth (it holds passwords)"},
		{"world-readable", mode(0o644), "control/smtpauth is readable by everyone; chmod o-r control/smtpauth (it holds passwords)"},
		{"symlink to 600", link(0o600), ""},
		{"symlink to group-writable", link(0o660), "control/smtpauth is writable by its group; chmod go-w control/smtpauth"},
		{"FIFO", special(fifo), "control/smtpauth is not a regular file (a FIFO); replace it with a regular file (chmod 600, owned by qmailr)"},
		{"symlink to a FIFO", special(func(p string) error {
			f := filepath.Join(t.TempDir(), "fifo")
			if err := fifo(f); err != nil {
				return err
			}
			return os.Symlink(f, p)
		}), "control/smtpauth is not a regular file (a FIFO)"},
		{"directory", special(func(p string) error { return os.Mkdir(p, 0o700) }), "control/smtpauth is not a regular file (a directory)"},
		{"device", special(func(p string) error { return os.Symlink("/dev/zero", p) }), "control/smtpauth is not a regular file (a character device)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			home := t.TempDir()
			os.Mkdir(filepath.Join(home, "control"), 0o755)
			tc.setup(t, home)
			done := make(chan error, 1)
			go func() { _, _, _, err := Lookup(home, []string{""}, "smtp.example.net", 587); done <- err }()
			var err error
			select {
			case err = <-done:
			case <-time.After(30 * time.Second): // a backstop: it returns at once
				t.Fatal("Lookup blocked")
			}
			if tc.want == "" {
				if err != nil {
					t.Errorf("refused: %v", err)
				}
				return
			}
			var fe *FileError
			if !errors.As(err, &fe) || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
			if strings.Contains(tc.want, "not a regular file") && !errors.Is(err, regular.ErrNotRegular) {
				t.Errorf("%v does not wrap regular.ErrNotRegular", err)
			}
			if err != nil && (strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "example")) {
				t.Errorf("%q quotes the file", err)
			}
		})
	}
	if _, err := Read(t.TempDir()); err != nil {
		t.Errorf("no control directory: %v", err)
	}
}

// check accepts files owned by root or by the user we run as, and nobody
// else's.
func TestOwner(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	os.WriteFile(p, nil, 0o600)
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	me := os.Geteuid()
	if err := check(fi, me); err != nil {
		t.Errorf("our own file: %v", err)
	}
	if me != 0 {
		// Owned by us, read by someone else.
		if err := check(fi, me+1); err == nil || !strings.Contains(err.Error(), "chown qmailr control/smtpauth") {
			t.Errorf("someone else's file: %v", err)
		}
		t.Skip("giving a file to root or another user needs root (CI runs as root)")
	}
	// Root's file, read by qmailr: accepted.
	if err := check(fi, 12345); err != nil {
		t.Errorf("root's file: %v", err)
	}
	if err := os.Chown(p, 12345, -1); err != nil {
		t.Fatal(err)
	}
	if fi, err = os.Stat(p); err != nil {
		t.Fatal(err)
	}
	if err := check(fi, 12345); err != nil {
		t.Errorf("the reader's own file: %v", err)
	}
	want := "control/smtpauth is owned by uid 12345, neither root nor the user qmail-remote runs as; chown qmailr control/smtpauth (it holds passwords)"
	if err := check(fi, 0); err == nil || err.Error() != want {
		t.Errorf("someone else's file: %v, want %q", err, want)
	}
	if err := check(fi, 4321); err == nil || err.Error() != want {
		t.Errorf("someone else's file: %v, want %q", err, want)
	}
}

func TestCanonicalRelay(t *testing.T) {
	for in, want := range map[string]string{
		"Smtp.Example.NET.":   "smtp.example.net",
		"192.0.2.1":           "[192.0.2.1]",
		"[::ffff:192.0.2.1]":  "[192.0.2.1]",
		"[IPv6:2001:DB8::01]": "[2001:db8::1]",
	} {
		if got, ok := CanonicalRelay(in); !ok || got != want {
			t.Errorf("CanonicalRelay(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{"", ".", "a..b", "[2001:db8::1%eth0]", "a b", "2001:db8::1"} {
		if got, ok := CanonicalRelay(in); ok {
			t.Errorf("CanonicalRelay(%q) = %q, want not ok", in, got)
		}
	}
}

func FuzzParseSmtpauth(f *testing.F) {
	f.Add([]byte(sample))
	f.Add([]byte("[2001:db8::7]:587:starttls:u:p:q\n"))
	f.Add([]byte("a:1:smtps:u:p\r\n#x\n\n"))
	f.Add([]byte("2001:db8::1:587:starttls:u:p"))
	f.Fuzz(func(t *testing.T, text []byte) {
		tab, err := Parse(text)
		if err != nil {
			// The reason is one of the fixed texts: nothing of the
			// file can be in it.
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			known := false
			for _, r := range Reasons {
				known = known || se.Reason == r
			}
			if !known {
				t.Fatalf("unknown reason %q", se.Reason)
			}
			return
		}
		for k, e := range tab.entries {
			if e.User == "" || e.Password == "" || strings.Contains(e.User, ":") || (e.Method != StartTLS && e.Method != SMTPS) {
				t.Fatalf("bad entry %q: %+v", k, e)
			}
			if strings.ContainsAny(e.Password+e.User, "\x00\r\n") || strings.HasSuffix(e.Password, " ") {
				t.Fatalf("bad bytes in entry %q: %+v", k, e)
			}
			// Every key can be found again through its own relay.
			if j := strings.IndexByte(k, 0); j >= 0 {
				k = k[j+1:]
			}
			i := strings.LastIndexByte(k, ':')
			relay := k[:i]
			if c, ok := CanonicalRelay(relay); !ok || c != relay {
				t.Fatalf("key %q: relay not canonical", k)
			}
		}
	})
}

// TestNotDumpable: reading the file makes the process non-dumpable first:
// no core dump can hold a password. Run in a child, so that this test
// process stays as it was.
func TestNotDumpable(t *testing.T) {
	if os.Getenv("SMTPAUTH_DUMPABLE_CHILD") != "" {
		before, _ := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
		home := os.Getenv("SMTPAUTH_DUMPABLE_CHILD")
		if _, err := Read(home); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		after, _ := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
		fmt.Printf("dumpable %d -> %d\n", before, after)
		os.Exit(0)
	}
	home := t.TempDir()
	os.Mkdir(filepath.Join(home, "control"), 0o755)
	if err := os.WriteFile(filepath.Join(home, File), []byte("smtp.example.test:587:starttls:u:secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestNotDumpable$")
	cmd.Env = append(os.Environ(), "SMTPAUTH_DUMPABLE_CHILD="+home)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v %s", err, out)
	}
	if !strings.Contains(string(out), "dumpable 1 -> 0") {
		t.Errorf("child said %q, want dumpable 1 -> 0", out)
	}
}
