package smtpauth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	e, found, err := Lookup(home, "smtp.example.net", 587)
	if err != nil || !found || e.User != "user@example.net" {
		t.Errorf("Lookup = %+v, %v, %v", e, found, err)
	}
	if _, found, err = Lookup(home, "smtp.example.net", 25); err != nil || found {
		t.Errorf("port 25: found %v, %v", found, err)
	}

	// No file: no credentials, no error.
	if _, found, err := Lookup(t.TempDir(), "smtp.example.net", 587); err != nil || found {
		t.Errorf("missing file: found %v, %v", found, err)
	}

	// Readable by everyone: refused, whatever the lookup.
	home = write(t, 0o644, sample)
	var fe *FileError
	if _, _, err := Lookup(home, "nothing.test", 25); !errors.As(err, &fe) || !strings.Contains(err.Error(), "readable by everyone; chmod o-r control/smtpauth") {
		t.Errorf("world-readable: %v", err)
	}

	// A syntax error anywhere fails every lookup: half a file is not used.
	home = write(t, 0o600, sample+"broken secret line\n")
	var se *SyntaxError
	if _, _, err := Lookup(home, "smtp.example.net", 587); !errors.As(err, &se) || se.Line != 9 {
		t.Errorf("syntax error: %v", err)
	}

	// A directory.
	home = t.TempDir()
	os.MkdirAll(filepath.Join(home, File), 0o700)
	if _, _, err := Lookup(home, "smtp.example.net", 587); !errors.As(err, &fe) {
		t.Errorf("directory: %v", err)
	}

	// Unreadable (unless we are root, who reads everything).
	if os.Geteuid() != 0 {
		home = write(t, 0o000, sample)
		if _, _, err := Lookup(home, "smtp.example.net", 587); !errors.As(err, &fe) || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("unreadable: %v", err)
		}
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
			i := strings.LastIndexByte(k, ':')
			relay := k[:i]
			if c, ok := CanonicalRelay(relay); !ok || c != relay {
				t.Fatalf("key %q: relay not canonical", k)
			}
		}
	})
}
