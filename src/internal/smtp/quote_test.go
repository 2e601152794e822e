package smtp

import (
	"strings"
	"testing"
)

func TestQuoteAddress(t *testing.T) {
	for _, tc := range []struct{ in, out string }{
		{"", ""},
		{"#@[]", "#@[]"},
		{"postmaster", "postmaster"},
		{"user@example.test", "user@example.test"},
		{"first.last@example.test", "first.last@example.test"},
		{"a+b-c_d=e@example.test", "a+b-c_d=e@example.test"},
		{"!#$%&'*+-/=?^_`{|}~@example.test", "!#$%&'*+-/=?^_`{|}~@example.test"},
		{"@example.test", `""@example.test`},
		{".a@example.test", `".a"@example.test`},
		{"a.@example.test", `"a."@example.test`},
		{"a..b@example.test", `"a..b"@example.test`},
		{"a b@example.test", `"a b"@example.test`},
		{`a"b@example.test`, `"a\"b"@example.test`},
		{`a\b@example.test`, `"a\\b"@example.test`},
		{"a\r\nb@example.test", "\"a\\\r\\\nb\"@example.test"},
		{"a@b@example.test", `"a@b"@example.test`}, // split at the last '@'
		{"a(b)@example.test", `"a(b)"@example.test`},
		{"a,b@example.test", `"a,b"@example.test`},
		{"a:b@example.test", `"a:b"@example.test`},
		{"a<b>@example.test", `"a<b>"@example.test`},
		{"a[b]@example.test", `"a[b]"@example.test`},
		{"a;b@example.test", `"a;b"@example.test`},
		{"j\xc3\xb6rg@example.test", "\"j\xc3\xb6rg\"@example.test"}, // bytes >= 128
		{"a\x7fb@example.test", "\"a\x7fb\"@example.test"},
		{"a\tb@example.test", "\"a\tb\"@example.test"},
		{"user@exa mple.test", "user@exa mple.test"}, // the domain is never touched
		{"a b", "a b"}, // no '@': as is
		{"user@[192.0.2.1]", "user@[192.0.2.1]"},
	} {
		if got := QuoteAddress(tc.in); got != tc.out {
			t.Errorf("QuoteAddress(%q) = %q, want %q", tc.in, got, tc.out)
		}
	}
}

func TestQuoteAddressUTF8(t *testing.T) {
	for _, tc := range []struct{ in, out string }{
		{"", ""},
		{"#@[]", "#@[]"},
		{"user@example.test", "user@example.test"},
		{"jörg@example.test", "jörg@example.test"},
		{"用户@例子.test", "用户@例子.test"},
		{"δοκιμή.χρήστης@παράδειγμα.test", "δοκιμή.χρήστης@παράδειγμα.test"},
		{"jörg müller@example.test", `"jörg müller"@example.test`}, // the space needs quotes
		{"jörg..m@example.test", `"jörg..m"@example.test`},
		{".jörg@example.test", `".jörg"@example.test`},
		{"jörg.@example.test", `"jörg."@example.test`},
		{`j"ö@example.test`, `"j\"ö"@example.test`},
		{"@example.test", `""@example.test`},
		{"j\xf6rg@example.test", "\"j\xf6rg\"@example.test"},           // Latin-1, not UTF-8
		{"a\xc3@example.test", "\"a\xc3\"@example.test"},               // truncated sequence
		{"\xed\xa0\x80@example.test", "\"\xed\xa0\x80\"@example.test"}, // a surrogate
		{"a\r\nb@example.test", "\"a\\\r\\\nb\"@example.test"},
		{"a@b@例子.test", `"a@b"@例子.test`},
	} {
		if got := QuoteAddressUTF8(tc.in); got != tc.out {
			t.Errorf("QuoteAddressUTF8(%q) = %q, want %q", tc.in, got, tc.out)
		}
	}
}

// TestCheckDomain: a domain part that would change the command line is
// refused; every address stock and RFC 5321 allow goes.
func TestCheckDomain(t *testing.T) {
	for _, ok := range []string{
		"", "postmaster", "#@[]", "a@example.test", "a@EXAMPLE.test.", "a@mx_1.example.test",
		"a@[192.0.2.1]", "a@[IPv6:2001:db8::1]", "j\xc3\xb6rg@b\xc3\xbccher.example", "a b@example.test",
		"\"x>y\"@example.test", "x@", "a@b@c.test", "foo+bar", "MAILER-DAEMON",
	} {
		if err := CheckDomain(ok); err != nil {
			t.Errorf("CheckDomain(%q) = %v, want ok", ok, err)
		}
	}
	for _, bad := range []string{
		"x@y.test> AUTH=<>", "r@example.test> NOTIFY=SUCCESS", "a@exa mple.test", "a@example.test\r\nRSET",
		"a@<example.test>", "a@ex\x00ample", "a@[192.0.2.1", "a@[192.0.2.1]>", "a@[1 2]", "a@[a\\b]", "@[\"]", "a@[x\">y]",
		"a@example.test\t", "a@ex(ample)", "a@ex\x7fample", "foo>bar", "post master", "x\r\n",
	} {
		if err := CheckDomain(bad); err == nil {
			t.Errorf("CheckDomain(%q) accepted", bad)
		}
	}
}

// FuzzEnvelopePath: whatever the address, if CheckDomain accepts it and
// its quoted form holds no CR or LF (the two checks qmail-remote-io makes
// before a MAIL or RCPT), the path it makes ends at the last '>': no '<',
// '>' or white space outside quotes, so nothing can be added to the
// command.
func FuzzEnvelopePath(f *testing.F) {
	for _, s := range []string{"a@example.test", "x@y.test> AUTH=<>", "\"a>b\"@c", "#@[]", "", "a b@c", "a\\\"@c", "foo>bar"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		for _, quote := range []func(string) string{QuoteAddress, QuoteAddressUTF8} {
			q := quote(addr)
			if CheckDomain(addr) != nil || strings.ContainsAny(q, "\r\n") {
				continue
			}
			inQuote, escaped := false, false
			for i := 0; i < len(q); i++ {
				c := q[i]
				switch {
				case escaped:
					escaped = false
				case inQuote && c == '\\':
					escaped = true
				case c == '"':
					inQuote = !inQuote
				case !inQuote && (c == '<' || c == '>' || c == ' ' || c == '\t' || c < 0x20 || c == 0x7f):
					t.Fatalf("%q quotes as %q: %q at %d is outside quotes", addr, q, c, i)
				}
			}
			if inQuote || escaped {
				t.Fatalf("%q quotes as %q: the quotes do not close", addr, q)
			}
		}
	})
}
