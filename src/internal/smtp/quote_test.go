package smtp

import "testing"

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
