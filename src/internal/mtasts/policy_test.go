package mtasts

import (
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		name string
		text string
		want Policy // Text is the input, not repeated here
		err  string // the whole error text; "" for none
	}{
		{name: "RFC 8461 3.2 example", text: "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmx: backupmx.example.com\nmax_age: 604800\n",
			want: Policy{Mode: ModeEnforce, MX: []string{"mail.example.com", "*.example.net", "backupmx.example.com"}, MaxAge: 604800}},
		{name: "CRLF, no final line ending", text: "version: STSv1\r\nmode: testing\r\nmx: MX.Example.COM.\r\nmax_age: 86400",
			want: Policy{Mode: ModeTesting, MX: []string{"mx.example.com"}, MaxAge: 86400}},
		{name: "blanks and blank lines", text: "\n  version:STSv1 \t\n\nmode :\tenforce\r\n mx:  a.example  \nmax_age: 0\n\n",
			want: Policy{Mode: ModeEnforce, MX: []string{"a.example"}, MaxAge: 0}},
		{name: "unknown keys ignored", text: "version: STSv1\nmode: enforce\nfoo: bar: baz\nMode: none\nx_ext-1.2: ünïcode\nmx: a.example\nmax_age: 1\n",
			want: Policy{Mode: ModeEnforce, MX: []string{"a.example"}, MaxAge: 1}},
		{name: "first of repeated keys counts", text: "version: STSv1\nversion: STSv2\nmode: testing\nmode: enforce\nmx: a.example\nmax_age: 5\nmax_age: x\n",
			want: Policy{Mode: ModeTesting, MX: []string{"a.example"}, MaxAge: 5}},
		{name: "mode none needs no mx", text: "version: STSv1\nmode: none\nmax_age: 86400\n",
			want: Policy{Mode: ModeNone, MaxAge: 86400}},
		{name: "max_age clamped", text: "version: STSv1\nmode: none\nmax_age: 9999999999\n",
			want: Policy{Mode: ModeNone, MaxAge: MaxAgeLimit}},
		{name: "max_age at the limit", text: "version: STSv1\nmode: none\nmax_age: 0031557600\n",
			want: Policy{Mode: ModeNone, MaxAge: MaxAgeLimit}},

		{name: "empty", text: "", err: "no version line (version: STSv1)"},
		{name: "no version", text: "mode: enforce\nmx: a.example\nmax_age: 1\n", err: "no version line (version: STSv1)"},
		{name: "no mode", text: "version: STSv1\nmx: a.example\nmax_age: 1\n", err: "no mode line (mode: enforce, testing or none)"},
		{name: "no max_age", text: "version: STSv1\nmode: enforce\nmx: a.example\n", err: "no max_age line"},
		{name: "no mx", text: "version: STSv1\nmode: enforce\nmax_age: 1\n", err: "no mx line in a policy of mode enforce"},
		{name: "no mx, testing", text: "version: STSv1\nmode: testing\nmax_age: 1\n", err: "no mx line in a policy of mode testing"},
		{name: "bad version", text: "version: STSv2\n", err: `line 1: version "STSv2", not STSv1`},
		{name: "version case", text: "version: stsv1\n", err: `line 1: version "stsv1", not STSv1`},
		{name: "bad mode", text: "version: STSv1\n\nmode: Enforce\n", err: `line 3: mode "Enforce", not enforce, testing or none`},
		{name: "empty mode", text: "version: STSv1\nmode:\n", err: `line 2: mode "", not enforce, testing or none`},
		{name: "max_age 11 digits", text: "version: STSv1\nmode: none\nmax_age: 12345678901\n", err: `line 3: max_age "12345678901" is not 1 to 10 digits`},
		{name: "max_age signed", text: "max_age: +5\n", err: `line 1: max_age "+5" is not 1 to 10 digits`},
		{name: "max_age negative", text: "max_age: -5\n", err: `line 1: max_age "-5" is not 1 to 10 digits`},
		{name: "max_age empty", text: "max_age:\n", err: `line 1: max_age "" is not 1 to 10 digits`},
		{name: "max_age with unit", text: "max_age: 5d\n", err: `line 1: max_age "5d" is not 1 to 10 digits`},
		{name: "max_age inner blank", text: "max_age: 5 0\n", err: `line 1: max_age "5 0" is not 1 to 10 digits`},
		{name: "no colon", text: "version: STSv1\nmode enforce\n", err: `line 2: "mode enforce" is not "key: value"`},
		{name: "no key", text: ": x\n", err: `line 1: ": x" has no key`},
		{name: "control character", text: "version: STSv1\nmode: enforce\x00\n", err: `line 2: control character '\x00'`},
		{name: "CR inside", text: "version: STSv1\rmode: enforce\n", err: `line 1: control character '\r'`},
		{name: "mx double wildcard", text: "mx: *.*.example\n", err: `line 1: mx "*.*.example": label "*" has '*', not a letter, digit or '-'`},
		{name: "mx inner wildcard", text: "mx: a*.example\n", err: `line 1: mx "a*.example": label "a*" has '*', not a letter, digit or '-'`},
		{name: "mx bare wildcard", text: "mx: *.\n", err: `line 1: mx "*.": label "*" has '*', not a letter, digit or '-'`},
		{name: "mx empty label", text: "mx: a..example\n", err: `line 1: mx "a..example": empty label`},
		{name: "mx hyphen", text: "mx: -a.example\n", err: `line 1: mx "-a.example": label "-a" starts or ends with '-'`},
		{name: "mx underscore", text: "mx: a_b.example\n", err: `line 1: mx "a_b.example": label "a_b" has '_', not a letter, digit or '-'`},
		{name: "mx long label", text: "mx: " + strings.Repeat("a", 64) + ".example\n", err: `line 1: mx "` + strings.Repeat("a", 64) + `.example": label "aaaaaaaaaaaaaaaaaaaa"... longer than 63 bytes`},
		{name: "mx long name", text: "mx: " + strings.Repeat("a.", 127) + "ab\n", err: `line 1: mx "` + strings.Repeat("a.", 40) + `": domain longer than 253 bytes`},
		{name: "mx empty", text: "mx:\n", err: `line 1: mx "": empty domain`},
		{name: "line too long", text: "version: STSv1\nx: " + strings.Repeat("y", MaxLine) + "\n", err: "line 2: longer than 1024 bytes"},
		{name: "policy too long", text: strings.Repeat("x: y\n", MaxPolicy/5+1), err: "policy is 65540 bytes, more than the limit of 65536"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := Parse([]byte(c.text))
			if c.err != "" {
				if err == nil || err.Error() != c.err {
					t.Fatalf("got %+v, %v; want error %q", p, err, c.err)
				}
				if !reflect.DeepEqual(p, Policy{}) {
					t.Errorf("policy %+v with the error", p)
				}
				return
			}
			c.want.Text = c.text
			if err != nil || !reflect.DeepEqual(p, c.want) {
				t.Fatalf("got %+v, %v; want %+v", p, err, c.want)
			}
		})
	}
	// A line at the limit, CR not counted, is fine.
	text := "version: STSv1\nmode: none\nmax_age: 1\nx: " + strings.Repeat("y", MaxLine-3) + "\r\n"
	if _, err := Parse([]byte(text)); err != nil {
		t.Errorf("line at the limit: %v", err)
	}
}

// The examples of RFC 8461 4.1, and then some.
func TestMatches(t *testing.T) {
	p := Policy{Mode: ModeEnforce, MX: []string{"mail.example.com", "*.example.net", "*.Sub.Example.ORG."}}
	for host, want := range map[string]bool{
		"mail.example.com":      true,
		"MAIL.Example.Com.":     true,
		"mx.example.com":        false,
		"example.com":           false,
		"mail.example.com.evil": false,
		"mx.example.net":        true,
		"MX.EXAMPLE.NET.":       true,
		"example.net":           false,
		".example.net":          false,
		"foo.mx.example.net":    false,
		"a.sub.example.org":     true,
		"sub.example.org":       false,
		"":                      false,
		".":                     false,
		"*.example.net":         true, // a label like another; no such MX host resolves
	} {
		if got := p.Matches(host); got != want {
			t.Errorf("Matches(%q) = %v", host, got)
		}
	}
	if (Policy{Mode: ModeNone}).Matches("mail.example.com") {
		t.Error("a policy without mx matched")
	}
	// Unicode case folding would make the Kelvin sign a 'k'.
	if (Policy{MX: []string{"k.example"}}).Matches("\u212A.example") {
		t.Error("Kelvin sign matched k")
	}
}

func TestStrings(t *testing.T) {
	p, err := Parse([]byte("version: STSv1\r\nmode: testing\r\n\r\n  \r\nmx: a.example\r\nmax_age: 86400"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"version: STSv1", "mode: testing", "mx: a.example", "max_age: 86400"}
	if got := p.Strings(); !reflect.DeepEqual(got, want) {
		t.Errorf("got %q", got)
	}
	if got := (Policy{}).Strings(); got != nil {
		t.Errorf("empty policy: %q", got)
	}
}
