package smtp

import (
	"slices"
	"strings"
	"testing"
)

func TestParseEHLO(t *testing.T) {
	for _, tc := range []struct {
		name   string
		reply  string            // as on the wire
		want   map[string]string // keyword -> Param
		absent []string
	}{
		{"single line", "250 mx.example.test hello\r\n", map[string]string{}, []string{"MX.EXAMPLE.TEST", "HELLO", "250"}},
		{"usual", "250-mx.example.test Hello client.example.test [192.0.2.1]\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n250-STARTTLS\r\n250 SMTPUTF8\r\n",
			map[string]string{"PIPELINING": "", "SIZE": "10240000", "8BITMIME": "", "STARTTLS": "", "SMTPUTF8": ""}, []string{"HELLO", "MX.EXAMPLE.TEST"}},
		{"the greeting line is not an extension", "250-STARTTLS\r\n250 SIZE\r\n", map[string]string{"SIZE": ""}, []string{"STARTTLS"}},
		{"case", "250-x\r\n250-starttls\r\n250-Size 1000\r\n250 8bitmime\r\n", map[string]string{"STARTTLS": "", "SIZE": "1000", "8BITMIME": ""}, nil},
		{"several parameters", "250-x\r\n250-AUTH PLAIN  LOGIN\tCRAM-MD5\r\n250 ENHANCEDSTATUSCODES\r\n",
			map[string]string{"AUTH": "PLAIN LOGIN CRAM-MD5", "ENHANCEDSTATUSCODES": ""}, nil},
		{"keyword with dashes", "250-x\r\n250-X-EXPS GSSAPI\r\n250 DSN\r\n", map[string]string{"X-EXPS": "GSSAPI", "DSN": ""}, nil},
		{"junk lines skipped", "250-x\r\n250-AUTH=LOGIN PLAIN\r\n250-\r\n250-  \r\n250--BAD\r\n250-S\xc3\xa9ZE 1\r\n250-SIZE 1\x002\r\n250-PIPE_LINING\r\n250 STARTTLS\r\n",
			map[string]string{"STARTTLS": ""}, []string{"AUTH", "AUTH=LOGIN", "SIZE", "-BAD", "PIPE_LINING", "PIPE"}},
		{"first of a duplicate counts", "250-x\r\n250-SIZE 100\r\n250 size 200\r\n", map[string]string{"SIZE": "100"}, nil},
		{"bare code lines", "250-x\r\n250-\r\n250\r\n", map[string]string{}, []string{""}},
		{"not 2xx", "502-x\r\n502 STARTTLS\r\n", map[string]string{}, []string{"STARTTLS"}},
		{"leading space", "250-x\r\n250- STARTTLS\r\n250 PIPELINING\r\n", map[string]string{"STARTTLS": "", "PIPELINING": ""}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := read(tc.reply)
			if err != nil {
				t.Fatal(err)
			}
			e := ParseEHLO(r)
			var got []string
			for _, k := range e.Keywords() {
				got = append(got, k+"="+e.Param(k))
			}
			var want []string
			for k, v := range tc.want {
				want = append(want, k+"="+v)
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("got %q, want %q", got, want)
			}
			for k, v := range tc.want {
				if !e.Has(k) || !e.Has(strings.ToLower(k)) || e.Param(strings.ToLower(k)) != v {
					t.Errorf("%s: Has %v, Param %q; want %q", k, e.Has(k), e.Param(k), v)
				}
			}
			for _, k := range tc.absent {
				if e.Has(k) {
					t.Errorf("%q offered", k)
				}
			}
		})
	}
}

func TestExtensionsParams(t *testing.T) {
	r, _ := read("250-x\r\n250-AUTH PLAIN LOGIN\r\n250 PIPELINING\r\n")
	e := ParseEHLO(r)
	if p := e.Params("auth"); !slices.Equal(p, []string{"PLAIN", "LOGIN"}) {
		t.Errorf("Params: %q", p)
	}
	if p := e.Params("PIPELINING"); p != nil {
		t.Errorf("Params without parameters: %q", p)
	}
	p := e.Params("AUTH")
	p[0] = "changed"
	if e.Param("AUTH") != "PLAIN LOGIN" {
		t.Error("Params shares its slice")
	}
	var zero Extensions
	if zero.Has("PIPELINING") || zero.Param("SIZE") != "" || zero.Params("SIZE") != nil || len(zero.Keywords()) != 0 {
		t.Error("the zero Extensions has something")
	}
}

func FuzzParseEHLO(f *testing.F) {
	for _, s := range []string{
		"250-mx.example.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 STARTTLS\r\n",
		"250 x\r\n",
		"250-x\r\n250-AUTH=LOGIN\r\n250-\r\n250 S\xc3\xa9ZE\r\n",
		"250-x\n250-a b\tc  d\n250 -\n",
		"550 no\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		r, err := read(in)
		e := ParseEHLO(r) // also on the partial reply of an error
		if err != nil || r.Class() != 2 {
			if len(e.Keywords()) != 0 {
				t.Fatalf("extensions from a failed reply %q", in)
			}
			return
		}
		for _, k := range e.Keywords() {
			if !isKeyword(k) || k != strings.ToUpper(k) || !e.Has(strings.ToLower(k)) {
				t.Fatalf("bad keyword %q from %q", k, in)
			}
			for _, p := range e.Params(k) {
				if !isParam(p) {
					t.Fatalf("bad parameter %q of %q from %q", p, k, in)
				}
			}
			if !strings.Contains(strings.ToUpper(r.Text), k) {
				t.Fatalf("keyword %q not in %q", k, in)
			}
		}
		// A hand-made Reply with any text must not panic either.
		ParseEHLO(Reply{Code: 250, Text: in})
	})
}
