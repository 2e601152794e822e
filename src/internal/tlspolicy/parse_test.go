package tlspolicy

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"qmail-remote-go/src/testkit/ctlcdbtest"
)

const (
	pinA = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	pinB = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
)

func mustParse(t *testing.T, text string) *Table {
	t.Helper()
	return ctlcdbtest.MustParse(t, Parse, text)
}

func TestParseForms(t *testing.T) {
	cases := []struct {
		line, key string
		want      Policy
	}{
		{"a.test:none", "a.test", Policy{Level: "none"}},
		{"a.test:may", "a.test", Policy{Level: "may"}},
		{"a.test:encrypt", "a.test", Policy{Level: "encrypt"}},
		{"a.test:verify", "a.test", Policy{Level: "verify"}},
		{"a.test:dane", "a.test", Policy{Level: "dane"}},
		{"a.test:dane-only", "a.test", Policy{Level: "dane-only"}},
		{":dane", "", Policy{Level: "dane"}},
		{".Bank.Example:verify", ".bank.example", Policy{Level: "verify"}},
		{"[192.0.2.1]:encrypt", "[192.0.2.1]", Policy{Level: "encrypt"}},
		{"[IPv6:2001:DB8::1]:may", "[2001:db8::1]", Policy{Level: "may"}},
		{"a.test: \tverify", "a.test", Policy{Level: "verify"}},
		{"a.test:verify match=MX.Bank.Example", "a.test", Policy{Level: "verify", Match: []string{"mx.bank.example"}}},
		{"a.test:verify match=mx1.test,.Mail.Test.", "a.test", Policy{Level: "verify", Match: []string{"mx1.test", ".mail.test"}}},
		{"a.test:verify\tmatch=x.test  match=y_1.test", "a.test", Policy{Level: "verify", Match: []string{"x.test", "y_1.test"}}},
		{"a.test:encrypt pin=" + strings.ToUpper(pinA), "a.test", Policy{Level: "encrypt", Pins: []string{pinA}}},
		{"a.test:encrypt pin=" + pinA + "," + pinB, "a.test", Policy{Level: "encrypt", Pins: []string{pinA, pinB}}},
		{"a.test:encrypt pin=" + pinA + " pin=" + pinB, "a.test", Policy{Level: "encrypt", Pins: []string{pinA, pinB}}},
		{"a.test:verify pin=" + pinB + " match=m.test", "a.test", Policy{Level: "verify", Match: []string{"m.test"}, Pins: []string{pinB}}},
		{"a.test:verify \r", "a.test", Policy{Level: "verify"}},
	}
	for _, c := range cases {
		tb := mustParse(t, c.line+"\n")
		e, ok := tb.entries[c.key]
		if tb.Len() != 1 || !ok || e.err != nil || !reflect.DeepEqual(e.p, c.want) {
			t.Errorf("%q: %d keys, key %q -> %+v (present %v), want %+v", c.line, tb.Len(), c.key, e, ok, c.want)
		}
	}
}

// A malformed line whose domain can be read poisons that domain only.
func TestParseKeyErrors(t *testing.T) {
	long := "a.test:verify match=" + strings.Repeat("a", 64) + ".test"
	cases := []struct {
		line, key, want string
	}{
		{"a.test:verfy", "a.test", `unknown level "verfy" (none, may, encrypt, verify, dane, dane-only)`},
		{"a.test:Verify", "a.test", `unknown level "Verify" (none, may, encrypt, verify, dane, dane-only)`},
		{"a.test:", "a.test", "missing level after ':' (none, may, encrypt, verify, dane, dane-only)"},
		{"a.test:verify sni=x", "a.test", `unknown option "sni=x" (match=, pin=)`},
		{"a.test:verify MATCH=x", "a.test", `unknown option "MATCH=x" (match=, pin=)`},
		{"a.test:verify match", "a.test", `missing '=' after "match"`},
		{"a.test:encrypt pin", "a.test", `missing '=' after "pin"`},
		{"a.test:encrypt match=x.test", "a.test", "match= is allowed only with verify, not with encrypt"},
		{"a.test:dane match=x.test", "a.test", "match= is allowed only with verify, not with dane"},
		{"a.test:may pin=" + pinA, "a.test", "pin= is allowed only with encrypt and verify, not with may"},
		{"a.test:none pin=" + pinA, "a.test", "pin= is allowed only with encrypt and verify, not with none"},
		{"a.test:dane-only pin=" + pinA, "a.test", "pin= is allowed only with encrypt and verify, not with dane-only"},
		{"a.test:verify match=", "a.test", "empty name in match="},
		{"a.test:verify match=a.test,,b.test", "a.test", "empty name in match="},
		{"a.test:verify match=*.bank.test", "a.test", `wildcard match name "*.bank.test" (write ".bank.test" for every name under bank.test)`},
		{"a.test:verify match=a..test", "a.test", `bad match name "a..test" (a host name, or .domain for every name under domain)`},
		{"a.test:verify match=.", "a.test", `bad match name "."`},
		{"a.test:verify match=..test", "a.test", `bad match name "..test"`},
		{"a.test:verify match=a/b", "a.test", `bad match name "a/b"`},
		{"a.test:verify match=b\u00e4nk.test", "a.test", "bad match name"},
		{"a.test:verify match=\u212a.test", "a.test", "bad match name"}, // Kelvin sign, whose lower case is 'k'
		{long, "a.test", "bad match name"},
		{"a.test:verify match=" + strings.Repeat("abcdefgh.", 30) + "test", "a.test", "bad match name"},
		{"a.test:encrypt pin=", "a.test", `bad pin "" (64 hex digits: the SHA-256 of the server's SubjectPublicKeyInfo)`},
		{"a.test:encrypt pin=" + pinA[:63], "a.test", "bad pin"},
		{"a.test:encrypt pin=" + pinA + "0", "a.test", "bad pin"},
		{"a.test:encrypt pin=" + pinA[:63] + "g", "a.test", "bad pin"},
		{"a.test:encrypt pin=" + pinA + ",", "a.test", `bad pin ""`},
		{"a.test:verify\x01", "a.test", "control character 0x01"},
		{"a.test:verify match=x\x7f", "a.test", "control character 0x7f"},
		{":verfy", "", `unknown level "verfy"`},
		{"[192.0.2.1]:verfy", "[192.0.2.1]", `unknown level "verfy"`},
	}
	for _, c := range cases {
		tb, err := Parse([]byte("other.test:may\n# c\n" + c.line + "\n"))
		if err != nil {
			t.Errorf("%q: %v, want an error for key %q only", c.line, err, c.key)
			continue
		}
		e := tb.entries[c.key]
		if e.err == nil || e.err.Line != 3 || e.err.File != File || !strings.HasPrefix(e.err.Reason, c.want) {
			t.Errorf("%q: entry %+v, want line 3 %q", c.line, e, c.want)
		}
		if p, err := tb.Lookup("other.test"); err != nil || p.Level != "may" {
			t.Errorf("%q: other.test got %+v %v", c.line, p, err)
		}
		if errs := tb.Errors(); len(errs) != 1 || errs[0] != e.err {
			t.Errorf("%q: Errors() = %v", c.line, errs)
		}
	}
}

// A line whose domain cannot be read, or which cannot be read at all,
// fails the whole file: nobody knows which mail it meant.
func TestParseFileErrors(t *testing.T) {
	cases := []struct {
		text string
		line int
		want string
	}{
		{"a.test:may\nbank.example verify\n", 2, `missing ':' in "bank.example verify"`},
		{"nocolon\n", 1, `missing ':' in "nocolon"`},
		{"bank example:verify\n", 1, `blank in domain "bank example"`},
		{" bank.example:verify\n", 1, `blank in domain " bank.example"`},
		{"bank\texample:verify\n", 1, `blank in domain "bank\texample"`},
		{"bank\x01example:verify\n", 1, `control character 0x01 in domain "bank\x01example"`},
		{"*.bank.example:verify\n", 1, `wildcard in domain "*.bank.example" (write ".bank.example" for every name under bank.example)`},
		{"bank*.example:verify\n", 1, `'*' in domain "bank*.example"`},
		{"bank..example:verify\n", 1, `empty label in domain "bank..example"`},
		{"a]b.test:verify\n", 1, "stray bracket in domain"},
		{"[192.0.2.1]\n", 1, "missing ':' after"},
		{"[192.0.2.1]x:may\n", 1, "junk"},
		{"[192.0.2.1:may\n", 1, "no ']'"},
		{"[nonsense]:may\n", 1, "bad address literal"},
		{"a:may\n" + strings.Repeat("x", MaxLine+1) + "\n", 2, "line longer than 1024 bytes"},
		// A bad domain further down beats a poisoned key.
		{"a.test:verfy\nb c:may\n", 2, "blank in domain"},
	}
	for _, c := range cases {
		_, err := Parse([]byte(c.text))
		var se *SyntaxError
		if !errors.As(err, &se) || se.Line != c.line || se.File != File || !strings.HasPrefix(se.Reason, c.want) {
			t.Errorf("%q: got %v, want line %d %q", c.text, err, c.line, c.want)
		}
	}
	big := make([]byte, MaxText+1)
	for i := range big {
		big[i] = '\n'
	}
	if _, err := Parse(big); err == nil || err.Error() != "control/tlspolicy: is larger than 16777216 bytes" {
		t.Fatalf("oversized file: %v", err)
	}
	if _, err := Parse(big[:MaxText]); err != nil {
		t.Fatalf("file of exactly MaxText bytes: %v", err)
	}
}

func TestErrorText(t *testing.T) {
	tb := mustParse(t, "a.test:may\n\nbank.example:verfy\n")
	_, err := tb.Lookup("bank.example")
	if want := `control/tlspolicy line 3: unknown level "verfy" (none, may, encrypt, verify, dane, dane-only)`; err == nil || err.Error() != want {
		t.Fatalf("got %v, want %q", err, want)
	}
}

// A domain written twice is an error on the second line; the first error
// of a key stands.
func TestDuplicates(t *testing.T) {
	tb := mustParse(t, "bank.example:verify\nx:may\nBANK.example:may\n")
	if _, err := tb.Lookup("bank.example"); err == nil || err.Error() != `control/tlspolicy line 3: duplicate domain "bank.example" (first on line 1)` {
		t.Errorf("duplicate: %v", err)
	}
	tb = mustParse(t, ":dane\n:may\n")
	if _, err := tb.Lookup("x.test"); err == nil || err.Error() != "control/tlspolicy line 2: duplicate default (empty domain) (first on line 1)" {
		t.Errorf("duplicate default: %v", err)
	}
	tb = mustParse(t, "[192.0.2.1]:may\n[IPv6:::ffff:192.0.2.1]:none\n")
	if _, err := tb.Lookup("[192.0.2.1]"); err == nil || !strings.Contains(err.Error(), `line 2: duplicate domain "[192.0.2.1]"`) {
		t.Errorf("literal spellings of one address are one key: %v", err)
	}
	tb = mustParse(t, "a.test:verfy\na.test:may\na.test:nonsense\n")
	if _, err := tb.Lookup("a.test"); err == nil || !strings.Contains(err.Error(), `line 1: unknown level "verfy"`) {
		t.Errorf("first error: %v", err)
	}
	tb = mustParse(t, "a.test:may\na.test:verfy\n")
	if _, err := tb.Lookup("a.test"); err == nil || !strings.Contains(err.Error(), `line 2: unknown level "verfy"`) {
		t.Errorf("bad second line: %v", err)
	}
	if errs := tb.Errors(); len(errs) != 1 {
		t.Errorf("Errors() = %v", errs)
	}
}

// Keys and their order are smtproutes': the host, its dot suffixes
// longest first, the default; a literal then the default.
func TestMatching(t *testing.T) {
	tb := mustParse(t, `
inside.af.mil:verify match=mx.af.mil
.af.mil:encrypt
:dane
[192.0.2.1]:none
[IPv6:2001:db8::1]:may
`)
	cases := []struct{ host, key, level string }{
		{"inside.af.mil", "inside.af.mil", "verify"},
		{"INSIDE.AF.MIL", "inside.af.mil", "verify"},
		{"x.inside.af.mil", ".af.mil", "encrypt"},
		{"x.af.mil", ".af.mil", "encrypt"},
		{"af.mil", "", "dane"},
		{"example.test", "", "dane"},
		{"[192.0.2.1]", "[192.0.2.1]", "none"},
		{"[IPv6:::ffff:192.0.2.1]", "[192.0.2.1]", "none"},
		{"[192.0.2.2]", "", "dane"},
		{"[IPv6:2001:db8:0::1]", "[2001:db8::1]", "may"},
	}
	for _, c := range cases {
		p, err := tb.Lookup(c.host)
		if err != nil || !p.Found || p.Key != c.key || p.Level != c.level {
			t.Errorf("Lookup(%q) = %+v %v, want key %q level %q", c.host, p, err, c.key, c.level)
		}
	}
	// Without a default, no match is no policy.
	tb = mustParse(t, ".test:verify\n")
	for _, h := range []string{"example.org", "test"} {
		if p, err := tb.Lookup(h); err != nil || p.Found || p.Level != "" {
			t.Errorf("Lookup(%q) = %+v %v", h, p, err)
		}
	}
}

// A poisoned key fails exactly the hosts whose first matching key it is.
func TestPoisoning(t *testing.T) {
	tb := mustParse(t, "bank.example:verfy\n.example:verify\n.bad.test:encrypt pin=x\n:dane\n")
	cases := []struct {
		host string
		line int // 0: no error
		key  string
	}{
		{"bank.example", 1, ""},
		{"Bank.Example", 1, ""},
		{"mx.bank.example", 0, ".example"}, // bank.example is no key of it
		{"other.example", 0, ".example"},
		{"x.bad.test", 3, ""},
		{"bad.test", 0, ""}, // .bad.test does not match bad.test
		{"elsewhere.test", 0, ""},
	}
	for _, c := range cases {
		p, err := tb.Lookup(c.host)
		if c.line == 0 {
			if err != nil || p.Key != c.key {
				t.Errorf("%q: %+v %v, want key %q", c.host, p, err, c.key)
			}
			continue
		}
		var se *SyntaxError
		if !errors.As(err, &se) || se.Line != c.line || !reflect.DeepEqual(p, Policy{}) {
			t.Errorf("%q: %+v %v, want the error of line %d", c.host, p, err, c.line)
		}
	}
	if errs := tb.Errors(); len(errs) != 2 || errs[0].Line != 1 || errs[1].Line != 3 {
		t.Errorf("Errors() = %v", errs)
	}
}

func TestMarshal(t *testing.T) {
	tb := mustParse(t, "a:verify match=x.test,.y.test pin="+pinA+","+pinB+"\nb:may\nc:verfy\n")
	for k, e := range tb.entries {
		b := marshal(e)
		got, ok := unmarshal(b)
		if !ok || !reflect.DeepEqual(got, e) {
			t.Errorf("%q: %q -> %+v %v, want %+v", k, b, got, ok, e)
		}
	}
	for _, v := range []string{
		"", "verfy", "may ", " may", "may\tmatch=x", "verify match=X.test", "verify match=x.test.",
		"verify pin=" + strings.ToUpper(pinA), "verify pin=" + pinA + " match=x", "!", "!0 x", "!1", "!1 ", "!01 x", "!x y",
		"encrypt match=m.tes", // "verify match=m.test" damaged, the length kept
	} {
		if e, ok := unmarshal([]byte(v)); ok {
			t.Errorf("%q accepted: %+v", v, e)
		}
	}
	// Random damage: refused, or the value of a line the parser reads so
	// (a poisoned key's error aside: any line number and reason would do).
	var values []string
	for _, e := range tb.entries {
		values = append(values, string(marshal(e)))
	}
	ctlcdbtest.Damage(20000, values, "0123456789abcdef!=,. \tmpinyvrX\x00\xff", func(v []byte) {
		e, ok := unmarshal(v)
		switch {
		case !ok:
		case string(marshal(e)) != string(v):
			t.Fatalf("%q accepted as %+v, not canonical", v, e)
		case e.err == nil:
			tb, err := Parse([]byte("x:" + string(v) + "\n"))
			if err != nil || !reflect.DeepEqual(tb.entries["x"], e) {
				t.Fatalf("%q decoded as %+v; the line x:%s parses as %+v %v", v, e, v, tb, err)
			}
		}
	})
}

// The examples of doc/tlspolicy.md.
func TestDocExamples(t *testing.T) {
	tb := mustParse(t, `# the bank: verified TLS, and the certificate must name one of these
bank.example:verify match=mx1.bank.example,.mail.bank.example
# a partner with a self-signed certificate: TLS, and exactly this key
partner.example:encrypt pin=4f1b6c0c9e9b3c1f4e9f2f7d2c3e8a4b5d6e7f8091a2b3c4d5e6f708192a3b4c
# a host known to break under TLS
[192.0.2.25]:none
# everything else: DANE where the destination publishes it
:dane
`)
	for _, c := range []struct {
		host string
		want Policy
	}{
		{"Bank.Example", Policy{"verify", []string{"mx1.bank.example", ".mail.bank.example"}, nil, true, "bank.example"}},
		{"partner.example", Policy{"encrypt", nil, []string{"4f1b6c0c9e9b3c1f4e9f2f7d2c3e8a4b5d6e7f8091a2b3c4d5e6f708192a3b4c"}, true, "partner.example"}},
		{"[192.0.2.25]", Policy{"none", nil, nil, true, "[192.0.2.25]"}},
		{"x.bank.example", Policy{"dane", nil, nil, true, ""}},
	} {
		if p, err := tb.Lookup(c.host); err != nil || !reflect.DeepEqual(p, c.want) {
			t.Errorf("%q: %+v %v, want %+v", c.host, p, err, c.want)
		}
	}
}
