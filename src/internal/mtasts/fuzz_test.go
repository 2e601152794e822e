package mtasts

import (
	"reflect"
	"strings"
	"testing"
)

// FuzzParse: no input makes Parse or ParseTXT panic; a policy that parses
// parses the same again from its Text, its fields are what the rules
// allow, and each of its mx patterns matches a host made from it.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmax_age: 604800\n",
		"version: STSv1\r\nmode: none\r\nmax_age: 9999999999\r\n",
		"version: STSv1\nmode: testing\nmx: A.B.\nmax_age: 0\nfoo: bar\nmode: none\n",
		"v=STSv1; id=20160831085700Z;",
		"v=STSv1;id=a;x=y;",
		"mx: *.*.example\n",
		"version:STSv1\n\n  mode :enforce\nmx:a\nmax_age:1",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		// Longer inputs add only the MaxPolicy check, which TestParse
		// covers, and once found interesting they take the minimizer
		// (quadratic in the length) most of the fuzzing time.
		if len(s) > 8<<10 {
			t.Skip()
		}
		ParseTXT([]string{s})
		ParseTXT(strings.Split(s, "\n"))
		p, err := Parse([]byte(s))
		if err != nil {
			if !reflect.DeepEqual(p, Policy{}) {
				t.Fatalf("Parse(%q) = %+v with error %v", s, p, err)
			}
			return
		}
		again, err := Parse([]byte(p.Text))
		if err != nil || !reflect.DeepEqual(again, p) {
			t.Fatalf("%q parses to %+v, its Text to %+v, %v", s, p, again, err)
		}
		if p.Mode != ModeEnforce && p.Mode != ModeTesting && p.Mode != ModeNone || p.MaxAge < 0 || p.MaxAge > MaxAgeLimit ||
			len(p.MX) == 0 && p.Mode != ModeNone {
			t.Fatalf("%q parses to %+v", s, p)
		}
		for _, mx := range p.MX {
			host := strings.TrimPrefix(mx, "*.")
			if strings.HasPrefix(mx, "*.") {
				host = "x." + host
			}
			if !p.Matches(host) || !p.Matches(strings.ToUpper(host)+".") {
				t.Fatalf("%q: pattern %q does not match %q", s, mx, host)
			}
		}
		if len(p.Strings()) < 3 {
			t.Fatalf("%q has fewer than 3 lines: %q", s, p.Strings())
		}
	})
}
