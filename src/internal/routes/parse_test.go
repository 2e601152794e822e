package routes

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"qmail-remote-go/src/testkit/ctlcdbtest"
)

func mustParse(t *testing.T, text string) *Table {
	t.Helper()
	return ctlcdbtest.MustParse(t, Parse, text)
}

func TestParseForms(t *testing.T) {
	cases := []struct {
		line, key string
		want      Route
	}{
		{"example.test:relay.example.test", "example.test", Route{"relay.example.test", 25, true}},
		{"Example.TEST:Relay.Example.Test:2525", "example.test", Route{"relay.example.test", 2525, true}},
		{".af.mil:", ".af.mil", Route{"", 25, true}},
		{":heaven.af.mil", "", Route{"heaven.af.mil", 25, true}},
		{"::2525", "", Route{"", 2525, true}},
		{"x.test::587", "x.test", Route{"", 587, true}},
		{"x.test:192.0.2.7", "x.test", Route{"[192.0.2.7]", 25, true}},
		{"x.test:192.0.2.7:26", "x.test", Route{"[192.0.2.7]", 26, true}},
		{"x.test:[192.0.2.7]", "x.test", Route{"[192.0.2.7]", 25, true}},
		{"x.test:[192.0.2.7]:65535", "x.test", Route{"[192.0.2.7]", 65535, true}},
		{"x.test:[2001:DB8:0::7]", "x.test", Route{"[2001:db8::7]", 25, true}},
		{"x.test:[IPv6:2001:db8::7]:2525", "x.test", Route{"[2001:db8::7]", 2525, true}},
		{"x.test:[ipv6:2001:db8::7]", "x.test", Route{"[2001:db8::7]", 25, true}},
		{"x.test:[::ffff:192.0.2.9]", "x.test", Route{"[192.0.2.9]", 25, true}},
		{"[192.0.2.1]:relay.test", "[192.0.2.1]", Route{"relay.test", 25, true}},
		{"[IPv6:2001:db8::1]:[2001:db8::2]:26", "[2001:db8::1]", Route{"[2001:db8::2]", 26, true}},
		{"[2001:0db8::1]:", "[2001:db8::1]", Route{"", 25, true}},
		{"[IPv6:::ffff:192.0.2.1]:r.test", "[192.0.2.1]", Route{"r.test", 25, true}},
		{"x.test:relay.test.", "x.test", Route{"relay.test.", 25, true}},
		{"x.test:relay_1.test:0025", "x.test", Route{"relay_1.test", 25, true}},
		{"x.test:relay.test \t\r", "x.test", Route{"relay.test", 25, true}},
	}
	for _, c := range cases {
		tb := mustParse(t, c.line+"\n")
		if tb.Len() != 1 {
			t.Errorf("%q: %d keys, want 1", c.line, tb.Len())
		}
		got, ok := tb.routes[c.key]
		if !ok || got != c.want {
			t.Errorf("%q: key %q -> %+v (present %v), want %+v", c.line, c.key, got, ok, c.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		text string
		line int
		want string
	}{
		{"a.test:b.test\n\nnocolon\n", 3, "missing ':'"},
		{"a.test:b.test:99999\n", 1, `bad port "99999"`},
		{"a.test:b.test:0\n", 1, `bad port "0"`},
		{"a.test:b.test:\n", 1, `bad port ""`},
		{"a.test:b.test:+25\n", 1, `bad port "+25"`},
		{"a.test:b.test:25:26\n", 1, `bad port "25:26"`},
		{"a.test:b.test:2x\n", 1, `bad port "2x"`},
		{"a.test:[192.0.2.300]\n", 1, "bad address literal"},
		{"a.test:[192.0.2.1\n", 1, "no ']'"},
		{"a.test:[192.0.2.1]x\n", 1, "junk \"x\" after ']'"},
		{"a.test:[192.0.2.1]:\n", 1, `bad port ""`},
		{"a.test:[IPv6:192.0.2.1]\n", 1, "bad address literal"},
		{"a.test:[fe80::1%eth0]\n", 1, "bad address literal"},
		{"a.test:[]\n", 1, "bad address literal"},
		{"[192.0.2.1]\n", 1, "missing ':'"},
		{"[192.0.2.1]x:r.test\n", 1, "junk"},
		{"[192.0.2.1:r.test\n", 1, "no ']'"},
		{"[nonsense]:r.test\n", 1, "bad address literal"},
		{"a]b.test:r.test\n", 1, "stray bracket"},
		{"ok.test:r.test\nx.test:r\x01.test\n", 2, "control character 0x01"},
		{"x.test:r.test\x7f\n", 1, "control character 0x7f"},
		{"x.test:\tr.test\n", 1, "control character 0x09"},
		{"x.test: r.test\n", 1, "space"},
		{"x test:r.test\n", 1, "space"},
		{"x.test:r..test\n", 1, "empty label"},
		{"x.test:.r.test\n", 1, "empty label"},
		{"x.test:r*.test\n", 1, "bad character"},
		{"x.test:r/x\n", 1, "bad character"},
		{"x.test:192.0.2\n", 1, "neither a host name nor an IPv4"},
		{"x.test:192.0.2.01\n", 1, "neither a host name nor an IPv4"},
		{"x.test:2001:db8::7\n", 1, "must be written in brackets"},
		{"x.test:" + strings.Repeat("a", 64) + ".test\n", 1, "longer than 63"},
		{"x.test:" + strings.Repeat("abcdefgh.", 30) + "test\n", 1, "longer than 253"},
		{"a:b\n" + strings.Repeat("x", MaxLine+1) + "\n", 2, "line longer than 1024 bytes"},
		{"# c\n\n a:b\n", 3, "space"}, // comments and empty lines are lines too
	}
	for _, c := range cases {
		_, err := Parse([]byte(c.text))
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("%q: error %v, want a SyntaxError", c.text, err)
			continue
		}
		if se.Line != c.line || !strings.Contains(se.Reason, c.want) {
			t.Errorf("%q: got line %d %q, want line %d containing %q", c.text, se.Line, se.Reason, c.line, c.want)
		}
		if !strings.HasPrefix(err.Error(), "control/smtproutes line ") {
			t.Errorf("%q: error text %q does not name the file and line", c.text, err)
		}
	}
	big := bytes.Repeat([]byte("#\n"), MaxText/2+1)
	if _, err := Parse(big); err == nil || err.Error() != "control/smtproutes: is larger than 16777216 bytes" {
		t.Errorf("oversized file: %v", err)
	}
}

// Stock constmap.c puts each entry at the head of its hash chain, so the
// last entry for a key is the one found.
func TestDuplicateLastWins(t *testing.T) {
	tb := mustParse(t, "a.test:first.test\nA.TEST:second.test:26\n")
	if r := tb.Lookup("a.test"); r.Relay != "second.test" || r.Port != 26 {
		t.Fatalf("got %+v, want the last entry", r)
	}
	tb = mustParse(t, "[192.0.2.1]:one.test\n[IPv6:::ffff:192.0.2.1]:two.test\n")
	if r := tb.Lookup("[192.0.2.1]"); r.Relay != "two.test" {
		t.Fatalf("literal spellings of one address are one key: got %+v", r)
	}
}

func TestKeys(t *testing.T) {
	cases := []struct {
		host string
		want []string
	}{
		{"x.af.mil", []string{"x.af.mil", ".af.mil", ".mil", ""}},
		{"X.Af.Mil", []string{"x.af.mil", ".af.mil", ".mil", ""}},
		{"localhost", []string{"localhost", ""}},
		{"a.test.", []string{"a.test.", ".test.", ".", ""}},
		{"", []string{""}},
		{"[192.0.2.1]", []string{"[192.0.2.1]", ""}},
		{"[IPv6:2001:DB8:0:0::1]", []string{"[2001:db8::1]", ""}},
		{"[2001:db8::1]", []string{"[2001:db8::1]", ""}},
		{"[garbage]", []string{""}},
	}
	for _, c := range cases {
		if got := Keys(c.host); strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("Keys(%q) = %q, want %q", c.host, got, c.want)
		}
	}
}

func TestMatching(t *testing.T) {
	tb := mustParse(t, `# comment
inside.af.mil:firewall.af.mil:26
.af.mil:
:heaven.af.mil
[192.0.2.1]:lit4.test
[IPv6:2001:db8::1]:[2001:db8::99]:2525
empty.test::2526
`)
	cases := []struct {
		host string
		want Route
	}{
		{"inside.af.mil", Route{"firewall.af.mil", 26, true}},
		{"INSIDE.AF.MIL", Route{"firewall.af.mil", 26, true}},
		{"x.inside.af.mil", Route{"", 25, true}}, // .af.mil, not inside.af.mil
		{"x.af.mil", Route{"", 25, true}},
		{"af.mil", Route{"heaven.af.mil", 25, true}}, // .af.mil does not match af.mil
		{"example.test", Route{"heaven.af.mil", 25, true}},
		{"empty.test", Route{"", 2526, true}},
		{"[192.0.2.1]", Route{"lit4.test", 25, true}},
		{"[192.0.2.2]", Route{"heaven.af.mil", 25, true}},
		{"[IPv6:2001:db8:0::1]", Route{"[2001:db8::99]", 2525, true}},
		{"[2001:db8::1]", Route{"[2001:db8::99]", 2525, true}},
		{"[IPv6:::ffff:192.0.2.1]", Route{"lit4.test", 25, true}},
	}
	for _, c := range cases {
		if got := tb.Lookup(c.host); got != c.want {
			t.Errorf("Lookup(%q) = %+v, want %+v", c.host, got, c.want)
		}
	}
	// Without a default route, no match is NoRoute.
	tb = mustParse(t, ".test:r.test\n")
	if got := tb.Lookup("example.org"); got != NoRoute {
		t.Errorf("no match: %+v", got)
	}
	if got := tb.Lookup("test"); got != NoRoute {
		t.Errorf(".test matched test: %+v", got)
	}
}
