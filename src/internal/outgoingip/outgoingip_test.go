package outgoingip

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"qmail-remote-go/src/internal/ctlcdb"
	"qmail-remote-go/src/testkit/ctlcdbtest"
)

var (
	v4a = netip.MustParseAddr("192.0.2.1")
	v4b = netip.MustParseAddr("192.0.2.2")
	v4c = netip.MustParseAddr("192.0.2.3")
	v4d = netip.MustParseAddr("192.0.2.4")
	v6a = netip.MustParseAddr("2001:db8::1")
	v6b = netip.MustParseAddr("2001:db8::2")
	v6c = netip.MustParseAddr("2001:db8::3")
	v6d = netip.MustParseAddr("2001:db8::4")
)

func mustParse(t *testing.T, text string) map[string]netip.Addr {
	t.Helper()
	m, err := Parse([]byte(text))
	if err != nil {
		t.Fatalf("Parse(%q): %v", text, err)
	}
	return m
}

// Every form of line, and the key each one makes.
func TestParseForms(t *testing.T) {
	for _, c := range []struct {
		line, key string
		addr      netip.Addr
	}{
		// The default.
		{"192.0.2.1", "4d", v4a},
		{":192.0.2.1", "4d", v4a},
		{"2001:db8::1", "6d", v6a},
		{"2001:DB8:0::1", "6d", v6a},
		{"[2001:db8::1]", "6d", v6a},
		{"[IPv6:2001:db8::1]", "6d", v6a},
		{":2001:db8::1", "6d", v6a},
		{":[2001:db8::1]", "6d", v6a},
		{":[IPv6:2001:db8::1]", "6d", v6a},
		{"::1", "6d", netip.IPv6Loopback()},
		{":::1", "6d", netip.IPv6Loopback()},
		{"127.0.0.2", "4d", netip.MustParseAddr("127.0.0.2")},
		// Destinations, as smtproutes.
		{"example.com:192.0.2.1", "4dexample.com", v4a},
		{"Example.COM:192.0.2.1", "4dexample.com", v4a},
		{".example.com:192.0.2.1", "4d.example.com", v4a},
		{"example.com:2001:db8::1", "6dexample.com", v6a},
		{"example.com:[2001:db8::1]", "6dexample.com", v6a},
		{"example.com:[IPv6:2001:db8::1]", "6dexample.com", v6a},
		{".example.com:2001:db8::1", "6d.example.com", v6a},
		{"[192.0.2.9]:192.0.2.1", "4d[192.0.2.9]", v4a},
		{"[IPv6:2001:DB8::9]:2001:db8::1", "6d[2001:db8::9]", v6a},
		{"[2001:db8::9]:[2001:db8::1]", "6d[2001:db8::9]", v6a},
		{"[::ffff:192.0.2.9]:192.0.2.1", "4d[192.0.2.9]", v4a},
		// Senders, in angle brackets.
		{"<alice@example.org>:192.0.2.1", "4salice@example.org", v4a},
		{"<Alice@Example.ORG>:2001:db8::1", "6salice@example.org", v6a},
		{"<@example.org>:[2001:db8::1]", "6s@example.org", v6a},
		{"<.example.org>:192.0.2.1", "4s.example.org", v4a},
		{"<>:192.0.2.1", "4s<>", v4a},
		{"<#@[]>:2001:db8::1", "6s<#@[]>", v6a},
		{"<u@[IPv6:2001:db8::9]>:192.0.2.1", "4su@[2001:db8::9]", v4a},
	} {
		got := mustParse(t, "# comment\n\n"+c.line+" \t\r\n")
		if want := map[string]netip.Addr{c.key: c.addr}; !maps.Equal(got, want) {
			t.Errorf("%q: %v, want %v", c.line, got, want)
		}
	}
	// One address of each family per key; destination and sender keys
	// that look alike are different keys.
	got := mustParse(t, "192.0.2.1\n2001:db8::1\n.example.org:192.0.2.2\n<.example.org>:192.0.2.3\n"+
		".example.org:2001:db8::2\n<.example.org>:[2001:db8::3]\n")
	want := map[string]netip.Addr{"4d": v4a, "6d": v6a, "4d.example.org": v4b, "4s.example.org": v4c,
		"6d.example.org": v6b, "6s.example.org": v6c}
	if !maps.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if got := mustParse(t, "# nothing\n\n"); len(got) != 0 {
		t.Errorf("empty file: %v", got)
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct {
		text, want string
	}{
		// Two addresses of one family for a key: the earlier line named.
		{"192.0.2.1\n:192.0.2.2\n", "line 2: a second IPv4 address for the default (line 1 has one)"},
		{"2001:db8::1\n# c\n[2001:db8::2]\n", "line 3: a second IPv6 address for the default (line 1 has one)"},
		{"example.com:192.0.2.1\n192.0.2.5\nEXAMPLE.com:192.0.2.2\n", "line 3: a second IPv4 address for example.com (line 1 has one)"},
		{".example.com:2001:db8::1\n.example.com:2001:db8::1\n", "line 2: a second IPv6 address for .example.com (line 1 has one)"},
		{"[192.0.2.9]:192.0.2.1\n[192.0.2.9]:192.0.2.1\n", "line 2: a second IPv4 address for [192.0.2.9] (line 1 has one)"},
		{"<@example.org>:2001:db8::1\n<@EXAMPLE.org>:[2001:db8::2]\n", "line 2: a second IPv6 address for <@example.org> (line 1 has one)"},
		{"<>:192.0.2.1\n<>:192.0.2.2\n", "line 2: a second IPv4 address for <> (line 1 has one)"},
		{"<#@[]>:192.0.2.1\n<#@[]>:192.0.2.2\n", "line 2: a second IPv4 address for <#@[]> (line 1 has one)"},
		// Addresses that cannot be a source, each with its reason.
		{"0.0.0.0\n", `line 1: "0.0.0.0" is the unspecified address; leave the family out to let the kernel choose`},
		{"::\n", `line 1: "::" is the unspecified address; leave the family out to let the kernel choose`},
		{"example.com:[::]\n", `line 1: "[::]" is the unspecified address; leave the family out to let the kernel choose`},
		{"224.0.0.1\n", `line 1: "224.0.0.1" is not an address a connection can come from`},
		{"example.com:ff02::1\n", `line 1: "ff02::1" is not an address a connection can come from`},
		{"255.255.255.255\n", `line 1: "255.255.255.255" is not an address a connection can come from`},
		{"::ffff:192.0.2.1\n", `line 1: "::ffff:192.0.2.1" is an IPv4 address written as IPv6; write 192.0.2.1`},
		{"example.com:[::ffff:192.0.2.1]\n", `line 1: "[::ffff:192.0.2.1]" is an IPv4 address written as IPv6; write 192.0.2.1`},
		{"fe80::1%eth0\n", `line 1: "fe80::1%eth0" has a zone: use an address without one`},
		{"example.com:fe80::1%eth0\n", `line 1: "fe80::1%eth0" has a zone: use an address without one`},
		// Not addresses.
		{"example.com:bogus\n", `line 1: "bogus" is not an IPv4 or IPv6 address`},
		{"example.com:192.0.2.1:25\n", `line 1: "192.0.2.1:25" is not an IPv4 or IPv6 address`},
		{"example.com:\n", "line 1: no address after ':'"},
		{"example.com:[]\n", "line 1: no address after ':'"},
		{"example.com:[2001:db8::1\n", `line 1: no ']' closing the address "[2001:db8::1"`},
		{"example.com\n", `line 1: missing ':' in "example.com"`},
		// Keys.
		{"a..b:192.0.2.1\n", `line 1: empty label in domain "a..b"`},
		{".:192.0.2.1\n", `line 1: empty label in domain "."`},
		{"[300.1.1.1]:192.0.2.1\n", `line 1: bad address literal "[300.1.1.1]"`},
		{"a b:192.0.2.1\n", "line 1: space or control character 0x20"},
		{"a\x01b:192.0.2.1\n", "line 1: space or control character 0x01"},
		{"<alice@example.org:192.0.2.1\n", `line 1: no '>' closing the sender "<alice@example.org:192.0.2.1"`},
		{"<alice>:192.0.2.1\n", `line 1: no '@' in the sender (write user@domain, @domain or .domain) "alice"`},
		{"<alice@example.org>192.0.2.1\n", `line 1: missing ':' after the sender's '>' "<alice@example.org>"`},
	} {
		_, err := Parse([]byte(c.text))
		if err == nil || err.Error() != File+" "+c.want {
			t.Errorf("Parse(%q): %v, want %q", c.text, err, File+" "+c.want)
		}
	}
	// A valid line after a bad one changes nothing: the first error.
	if _, err := Parse([]byte("192.0.2.1\n0.0.0.0\n192.0.2.2\n")); err == nil || err.Line != 2 {
		t.Errorf("got %v, want the error of line 2", err)
	}
}

// A sender key must be written in angle brackets: without them the line
// cannot be a sender line, and must not pass for a destination either
// (a destination holds no '@'), or the admin's setting is silently
// never used.
func TestParseSenderNeedsBrackets(t *testing.T) {
	for line, key := range map[string]string{
		"alice@example.org:192.0.2.1": "alice@example.org",
		"@example.org:192.0.2.1":      "@example.org",
		"@Example.org:2001:db8::1":    "@example.org",
	} {
		want := File + ` line 1: "` + key + `" looks like a sender: write it in angle brackets, <` + key + `>`
		if m, err := Parse([]byte(line + "\n")); err == nil || err.Error() != want {
			t.Errorf("Parse(%q) = %v, %v; want %q", line, m, err, want)
		}
	}
}

// Lookup through the cdb: each family on its own, destination before
// sender before the default.
func TestLookup(t *testing.T) {
	ctlcdbtest.Set(t, &compiled.RacyWindow, 0) // the cdb compiled is used at once
	home, run := ctlcdbtest.Home(t, "outgoingip", `# defaults
192.0.2.1
2001:db8::1
example.com:192.0.2.2
.example.com:[2001:db8::2]
<@example.org>:192.0.2.3
<@example.org>:2001:db8::3
<.example.org>:2001:db8::4
<boss@example.org>:192.0.2.4
<>:192.0.2.4
[192.0.2.99]:2001:db8::4
`)
	before := compiled.Compiles()
	for _, c := range []struct {
		host, sender string
		hasSender    bool
		want         Source
	}{
		// Destination first, per family.
		{"example.com", "a@example.org", true, Source{v4b, v6c}},
		{"EXAMPLE.com", "a@example.org", true, Source{v4b, v6c}},
		{"mx.example.com", "a@example.org", true, Source{v4c, v6b}},
		{"mx.example.com", "a@other.test", true, Source{v4a, v6b}},
		// The sender's keys, in order: exact, @domain, .suffixes.
		{"other.test", "a@example.org", true, Source{v4c, v6c}},
		{"other.test", "Boss@Example.ORG", true, Source{v4d, v6c}},
		{"other.test", "a@sub.example.org", true, Source{v4a, v6d}},
		// Bounces: their own key only.
		{"other.test", "", true, Source{v4d, v6a}},
		{"other.test", "#@[]", true, Source{v4a, v6a}},
		// No sender known: the sender's lines do not apply.
		{"other.test", "boss@example.org", false, Source{v4a, v6a}},
		{"other.test", "", false, Source{v4a, v6a}},
		{"example.com", "a@example.org", false, Source{v4b, v6a}},
		// A literal destination.
		{"[192.0.2.99]", "x@y.test", true, Source{v4a, v6d}},
		{"[::ffff:192.0.2.99]", "x@y.test", true, Source{v4a, v6d}},
		// The default.
		{"other.test", "x@y.test", true, Source{v4a, v6a}},
	} {
		s, err := Lookup(home, run, c.host, c.sender, c.hasSender)
		if err != nil || s != c.want {
			t.Errorf("Lookup(%q, %q, %v) = %+v, %v; want %+v", c.host, c.sender, c.hasSender, s, err, c.want)
		}
	}
	if n := compiled.Compiles() - before; n != 1 {
		t.Errorf("%d compiles, want 1: the cdb is not reused", n)
	}
	if _, err := os.Stat(filepath.Join(run, ctlcdb.Subdir, "outgoingip.cdb")); err != nil {
		t.Errorf("no cdb: %v", err)
	}
	if err := Compile(home, run); err != nil {
		t.Errorf("Compile: %v", err)
	}

	// A family without a line: the kernel chooses (no address).
	ctlcdbtest.Write(t, home, "outgoingip", "example.com:192.0.2.2\n<@example.org>:2001:db8::3\n")
	for _, c := range []struct {
		host, sender string
		want         Source
	}{
		{"example.com", "a@other.test", Source{V4: v4b}},
		{"other.test", "a@example.org", Source{V6: v6c}},
		{"example.com", "a@example.org", Source{v4b, v6c}},
		{"other.test", "a@other.test", Source{}},
	} {
		s, err := Lookup(home, run, c.host, c.sender, true)
		if err != nil || s != c.want {
			t.Errorf("Lookup(%q, %q) = %+v, %v; want %+v", c.host, c.sender, s, err, c.want)
		}
	}

	// Without the file: nothing, and a leftover cdb is not used.
	os.Remove(filepath.Join(home, "control", "outgoingip"))
	if s, err := Lookup(home, run, "example.com", "a@example.org", true); err != nil || !s.IsZero() || s != (Source{}) {
		t.Errorf("no file: %+v, %v", s, err)
	}
	if err := Compile(home, run); err != nil {
		t.Errorf("Compile without a file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(run, ctlcdb.Subdir, "outgoingip.cdb")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Compile without a file left the cdb: %v", err)
	}
}

// The text when the run directory cannot be made: the same answers.
func TestLookupWithoutCDB(t *testing.T) {
	home, run := ctlcdbtest.Home(t, "outgoingip", "192.0.2.1\n<@example.org>:2001:db8::3\n")
	if err := os.WriteFile(run, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if s, err := Lookup(home, run, "a.test", "u@example.org", true); err != nil || s != (Source{v4a, v6c}) {
		t.Errorf("got %+v, %v", s, err)
	}
}

// A syntax error is a *ctlcdb.SyntaxError naming the line, compiled once
// and read back from the cdb; a file that cannot be read is a FileError.
func TestLookupErrors(t *testing.T) {
	ctlcdbtest.Set(t, &compiled.RacyWindow, 0)
	home, run := ctlcdbtest.Home(t, "outgoingip", "192.0.2.1\n\nexample.com:0.0.0.0\n")
	want := `control/outgoingip line 3: "0.0.0.0" is the unspecified address; leave the family out to let the kernel choose`
	before := compiled.Compiles()
	for i := 0; i < 3; i++ {
		s, err := Lookup(home, run, "other.test", "a@b.test", true)
		var se *ctlcdb.SyntaxError
		if !errors.As(err, &se) || se.File != File || se.Line != 3 || err.Error() != want || !s.IsZero() {
			t.Fatalf("Lookup: %+v, %v; want %q", s, err, want)
		}
	}
	if n := compiled.Compiles() - before; n != 1 {
		t.Errorf("%d compiles, want 1", n)
	}
	var se *SyntaxError
	if err := Compile(home, run); !errors.As(err, &se) || err.Error() != want {
		t.Errorf("Compile: %v", err)
	}

	home, run = ctlcdbtest.Home(t, "outgoingip", "")
	os.Mkdir(filepath.Join(home, "control", "outgoingip"), 0o755)
	var fe *FileError
	if _, err := Lookup(home, run, "a.test", "", true); !errors.As(err, &fe) || fe.File != File {
		t.Errorf("got %v, want a FileError naming %s", err, File)
	}
}

// The cdb answers every query as the parsed table does.
func TestCDBRoundTrip(t *testing.T) {
	tb := mustParse(t, "192.0.2.1\n2001:db8::1\nexample.com:192.0.2.2\n.example.com:2001:db8::2\n"+
		"<@example.org>:192.0.2.3\n<.example.org>:2001:db8::3\n<>:192.0.2.4\n[192.0.2.9]:2001:db8::4\n")
	b, err := compiled.EncodeDB(tb, nil, ctlcdb.Stamp{Dev: 1})
	if err != nil {
		t.Fatal(err)
	}
	d, err := compiled.OpenDB(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"example.com", "a.example.com", "other.test", "[192.0.2.9]", ""} {
		for _, sender := range []string{"a@example.org", "a@b.example.org", "", "#@[]", "x@y.test"} {
			for _, has := range []bool{true, false} {
				for _, fam := range []byte{'4', '6'} {
					q := query(fam, host, sender, has)
					m, err := d.Lookup(q)
					if want := ctlcdb.First(tb, queryKeys(q)); err != nil || m != want {
						t.Errorf("%q: cdb %+v %v, table %+v", q, m, err, want)
					}
				}
			}
		}
	}
}

// A value of the cdb is decoded only if it is what the compile writes.
func TestDecode(t *testing.T) {
	for _, a := range []netip.Addr{v4a, v6a, netip.IPv6Loopback(), netip.MustParseAddr("127.0.0.2")} {
		if got, ok := decode(encode(a)); !ok || got != a {
			t.Errorf("%v: %v %v", a, got, ok)
		}
	}
	for _, v := range []string{"", "0.0.0.0", "::", "[2001:db8::1]", "2001:DB8::1", "2001:db8:0::1", "::ffff:192.0.2.1",
		"224.0.0.1", "fe80::1%eth0", "192.0.2.01", " 192.0.2.1", "192.0.2.1 "} {
		if a, ok := decode([]byte(v)); ok {
			t.Errorf("%q decoded as %v", v, a)
		}
	}
}

func TestFormatParseEnv(t *testing.T) {
	for _, c := range []struct {
		s    Source
		text string
	}{
		{Source{}, ""},
		{Source{V4: v4a}, "192.0.2.1"},
		{Source{V6: v6a}, "2001:db8::1"},
		{Source{v4a, v6a}, "192.0.2.1 2001:db8::1"},
		{Source{netip.MustParseAddr("127.0.0.2"), netip.IPv6Loopback()}, "127.0.0.2 ::1"},
	} {
		if got := Format(c.s); got != c.text {
			t.Errorf("Format(%+v) = %q, want %q", c.s, got, c.text)
		}
		if s, err := ParseEnv(c.text); err != nil || s != c.s {
			t.Errorf("ParseEnv(%q) = %+v, %v; want %+v", c.text, s, err, c.s)
		}
	}
	// Any order, any spacing.
	if s, err := ParseEnv("  2001:db8::1   192.0.2.1 "); err != nil || s != (Source{v4a, v6a}) {
		t.Errorf("reversed: %+v, %v", s, err)
	}
	for v, want := range map[string]string{
		"bogus":                   `"bogus" is not an IPv4 or IPv6 address`,
		"192.0.2.1 192.0.2.2":     "two IPv4 addresses (192.0.2.1 and 192.0.2.2)",
		"2001:db8::1 2001:db8::2": "two IPv6 addresses (2001:db8::1 and 2001:db8::2)",
		"192.0.2.1,2001:db8::1":   `"192.0.2.1,2001:db8::1" is not an IPv4 or IPv6 address`,
		"0.0.0.0":                 `"0.0.0.0" is the unspecified address; leave the family out to let the kernel choose`,
		"::":                      `"::" is the unspecified address; leave the family out to let the kernel choose`,
		"::ffff:192.0.2.1":        `"::ffff:192.0.2.1" is an IPv4 address written as IPv6; write 192.0.2.1`,
		"fe80::1%eth0":            `"fe80::1%eth0" has a zone: use an address without one`,
		"192.0.2.1 224.0.0.1":     `"224.0.0.1" is not an address a connection can come from`,
		"255.255.255.255":         `"255.255.255.255" is not an address a connection can come from`,
	} {
		if s, err := ParseEnv(v); err == nil || err.Error() != want {
			t.Errorf("ParseEnv(%q) = %+v, %v; want error %q", v, s, err, want)
		}
	}
}

// FuzzParse: the parser never panics; every address it accepts is one
// the parser itself would accept again (valid, not refused, of the key's
// family); every key is a family ('4' or '6') and a kind ('d' or 's');
// the cdb answers as the table.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"192.0.2.1\n2001:db8::1\n",
		":192.0.2.1\n:[2001:db8::1]\n",
		"example.com:2001:db8::1\n.example.com:[IPv6:2001:db8::2]\n[192.0.2.9]:192.0.2.1\n",
		"<alice@example.org>:192.0.2.1\n<@example.org>:2001:db8::1\n<>:192.0.2.4\n<#@[]>:::1\n",
		"0.0.0.0\n", "::ffff:192.0.2.1\n", "fe80::1%eth0\n", "224.0.0.1\n", "x:[\n", "<x\n", "[::]\n",
		"192.0.2.1\n:192.0.2.2\n", "a..b:1.2.3.4\n", "[IPv6:2001:db8::1]\n", "beef:2001:db8::1\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, text []byte) {
		tb, err := Parse(text)
		if err != nil {
			if tb != nil || err.File != File {
				t.Fatalf("error %v with table %v", err, tb)
			}
			return
		}
		for k, a := range tb {
			if len(k) < 2 || (k[0] != '4' && k[0] != '6') || (k[1] != 'd' && k[1] != 's') {
				t.Fatalf("key %q", k)
			}
			if !a.IsValid() || a.Is4() != (k[0] == '4') {
				t.Fatalf("key %q: address %v", k, a)
			}
			if b, reason := parseAddr(a.String()); reason != "" || b != a {
				t.Fatalf("key %q: address %v refused: %s", k, a, reason)
			}
			if a.IsUnspecified() || a.IsMulticast() || a.Is4In6() || a.Zone() != "" || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
				t.Fatalf("key %q: address %v", k, a)
			}
			if strings.Contains(k, "\x00") {
				t.Fatalf("key %q holds a NUL", k)
			}
		}
		b, err2 := compiled.EncodeDB(tb, nil, ctlcdb.Stamp{Size: int64(len(text))})
		if err2 != nil {
			t.Fatal(err2)
		}
		d, err2 := compiled.OpenDB(b)
		if err2 != nil {
			t.Fatal(err2)
		}
		for k := range tb {
			host, sender := "x.test", "u@x.test"
			if k[1] == 'd' {
				host = k[2:]
			} else {
				sender = k[2:]
			}
			q := query(k[0], host, sender, true)
			m, err := d.Lookup(q)
			if want := ctlcdb.First(tb, queryKeys(q)); err != nil || m != want {
				t.Fatalf("%q: cdb %+v %v, table %+v", q, m, err, want)
			}
		}
	})
}

// BenchmarkLookup: a delivery's outgoingip lookup (both families) in a
// table of 1000 sender domains and a default.
func BenchmarkLookup(b *testing.B) {
	ctlcdbtest.Set(b, &compiled.RacyWindow, 0)
	var text strings.Builder
	text.WriteString("192.0.2.10\n2001:db8::10\n")
	for i := 0; i < 1000; i++ {
		fmt.Fprintf(&text, "<@d%d.example.org>:192.0.2.%d\n", i, 11+i%200)
	}
	ctlcdbtest.BenchLookup(b, "outgoingip", text.String(), Compile, func(home, run string) error {
		s, err := Lookup(home, run, "example.net", "alice@d500.example.org", true)
		if err == nil && (s.V4 != netip.MustParseAddr("192.0.2.111") || s.V6 != netip.MustParseAddr("2001:db8::10")) {
			err = fmt.Errorf("got %+v", s)
		}
		return err
	})
}
