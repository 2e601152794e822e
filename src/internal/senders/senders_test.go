package senders

import (
	"slices"
	"strings"
	"testing"
)

// Keys: the exact key, "@domain", then the ".suffixes" longest first;
// ASCII case folded, local part included; literals canonical and without
// suffixes; bounces and double bounces by their own keys only.
func TestKeys(t *testing.T) {
	for _, c := range []struct {
		sender string
		want   []string
	}{
		{"alice@example.org", []string{"alice@example.org", "@example.org", ".org"}},
		{"u@a.b.example.org", []string{"u@a.b.example.org", "@a.b.example.org", ".b.example.org", ".example.org", ".org"}},
		{"Alice@Example.ORG", []string{"alice@example.org", "@example.org", ".org"}},
		{"alice@example.org.", []string{"alice@example.org", "@example.org", ".org"}},
		{"ALICE@X", []string{"alice@x", "@x"}},
		// Only ASCII folds: other bytes stay, so two senders never
		// become one key.
		{"\xc3\x84li@\xc3\x84.ORG", []string{"\xc3\x84li@\xc3\x84.org", "@\xc3\x84.org", ".org"}},
		{"ÄLI@EXAMPLE.ORG", []string{"Äli@example.org", "@example.org", ".org"}},
		// Literal domains: canonical, no suffixes.
		{"u@[192.0.2.1]", []string{"u@[192.0.2.1]", "@[192.0.2.1]"}},
		{"U@[IPv6:2001:DB8:0::1]", []string{"u@[2001:db8::1]", "@[2001:db8::1]"}},
		{"u@[2001:db8::1]", []string{"u@[2001:db8::1]", "@[2001:db8::1]"}},
		{"u@[::ffff:192.0.2.1]", []string{"u@[192.0.2.1]", "@[192.0.2.1]"}},
		// The last '@' splits.
		{`"a@b"@Example.org`, []string{`"a@b"@example.org`, "@example.org", ".org"}},
		// Bounces.
		{"", []string{Bounce}},
		{DoubleBounceSender, []string{DoubleBounce}},
		// No '@': the exact key only.
		{"Postmaster", []string{"postmaster"}},
		// An empty domain: the exact key only.
		{"u@", []string{"u@"}},
		{"u@.", []string{"u@"}},
	} {
		if got := Keys(c.sender); !slices.Equal(got, c.want) {
			t.Errorf("Keys(%q) = %q, want %q", c.sender, got, c.want)
		}
	}
	// No domain key ever catches a bounce or a double bounce.
	for _, s := range []string{"", DoubleBounceSender} {
		for _, k := range Keys(s) {
			if !strings.HasPrefix(k, "<") {
				t.Errorf("Keys(%q) holds %q", s, k)
			}
		}
	}
}

// A key a line is written with is a key the senders it names are tried
// under: what Split reads is what Keys lists.
func TestSplitMatchesKeys(t *testing.T) {
	for _, c := range []struct {
		line, sender string
		i            int // the index in Keys(sender)
	}{
		{"Alice@Example.ORG.:r", "alice@example.org", 0},
		{"<ALICE@example.org>:r", "alice@EXAMPLE.org", 0},
		{"@EXAMPLE.org:r", "bob@example.org", 1},
		{".Example.Org:r", "bob@a.b.example.org", 3},
		{"u@[IPv6:2001:db8:0::1]:r", "U@[2001:DB8::1]", 0},
		{"@[192.0.2.1]:r", "x@[192.0.2.1]", 1},
		{"<>:r", "", 0},
		{"<#@[]>:r", DoubleBounceSender, 0},
	} {
		key, _, reason := Split(c.line, true, true)
		keys := Keys(c.sender)
		if reason != "" || c.i >= len(keys) || keys[c.i] != key {
			t.Errorf("Split(%q) = %q %q; Keys(%q) = %q", c.line, key, reason, c.sender, keys)
		}
	}
}

func TestSplit(t *testing.T) {
	for _, c := range []struct {
		line      string
		bare      bool
		key, rest string
	}{
		{"alice@example.org:smarthost.test", true, "alice@example.org", "smarthost.test"},
		{"Alice@Example.ORG:r:2525", true, "alice@example.org", "r:2525"},
		{"alice@example.org.:r", true, "alice@example.org", "r"},
		{"@example.org:r", true, "@example.org", "r"},
		{".example.org:r", true, ".example.org", "r"},
		{".Example.Org.:r", true, ".example.org", "r"},
		{"<alice@example.org>:r", true, "alice@example.org", "r"},
		{"<alice@example.org>:r", false, "alice@example.org", "r"},
		{"<@Example.org>:r", false, "@example.org", "r"},
		{"<.example.org>:[192.0.2.1]:25", false, ".example.org", "[192.0.2.1]:25"},
		{"<>:r", false, Bounce, "r"},
		{"<>:r", true, Bounce, "r"},
		{"<#@[]>:r", false, DoubleBounce, "r"},
		{"<#@[]>:", true, DoubleBounce, ""},
		{"alice@example.org:", true, "alice@example.org", ""},
		// Literal domains, bare: the ':' inside the literal is not the end.
		{"user@[IPv6:2001:db8::1]:relay", true, "user@[2001:db8::1]", "relay"},
		{"user@[IPv6:2001:DB8:0::1]:[2001:db8::7]:587", true, "user@[2001:db8::1]", "[2001:db8::7]:587"},
		{"@[2001:db8::1]:relay", true, "@[2001:db8::1]", "relay"},
		{"u@[192.0.2.1]:r", true, "u@[192.0.2.1]", "r"},
		{"u@[::ffff:192.0.2.1]:r", true, "u@[192.0.2.1]", "r"},
		{"<user@[IPv6:2001:db8::1]>:relay", false, "user@[2001:db8::1]", "relay"},
		// A quoted local part may hold ':' and '@' in brackets.
		{`<"a:b"@example.org>:r`, false, `"a:b"@example.org`, "r"},
		{`<"a@b"@example.org>:r`, false, `"a@b"@example.org`, "r"},
		// Non-ASCII stays as it is.
		{"\xc3\x84@\xc3\x84.ORG:r", true, "\xc3\x84@\xc3\x84.org", "r"},
		// The rest is not looked at.
		{"<@x.test>::::", false, "@x.test", ":::"},
	} {
		for _, quote := range []bool{true, false} {
			key, rest, reason := Split(c.line, c.bare, quote)
			if key != c.key || rest != c.rest || reason != "" {
				t.Errorf("Split(%q, %v, %v) = %q, %q, %q; want %q, %q", c.line, c.bare, quote, key, rest, reason, c.key, c.rest)
			}
		}
	}
}

// fixedReasons are every reason Split gives with quote false: fixed text,
// nothing of the line.
var fixedReasons = []string{
	"no '>' closing the sender",
	"missing ':' after the sender's '>'",
	"a sender must be written in angle brackets",
	"no ']' closing the address literal",
	"missing ':' after the sender",
	"empty sender (bounces are <>)",
	"space or control character in the sender",
	"stray angle bracket in the sender",
	"an address literal has no subdomains",
	"no '@' in the sender (write user@domain, @domain or .domain)",
	"bad local part of the sender",
	"bad address literal in the sender",
	"empty domain in the sender",
	"empty label in the sender's domain",
	"label longer than 63 bytes in the sender's domain",
	"bad character in the sender's domain",
}

func TestSplitErrors(t *testing.T) {
	long := strings.Repeat("a", 64)
	for _, c := range []struct {
		line   string
		bare   bool
		reason string // with quote false
		quoted string // what quote true adds, after a space ("": nothing)
	}{
		{"<alice@example.org:r", true, "no '>' closing the sender", `"<alice@example.org:r"`},
		{"<alice@example.org>r", false, "missing ':' after the sender's '>'", `"<alice@example.org>"`},
		{"<alice@example.org>", false, "missing ':' after the sender's '>'", `"<alice@example.org>"`},
		{"<>", true, "missing ':' after the sender's '>'", `"<>"`},
		{"alice@example.org:r", false, "a sender must be written in angle brackets", `"alice@example.org:r"`},
		{"@example.org:r", false, "a sender must be written in angle brackets", `"@example.org:r"`},
		{"u@[192.0.2.1:r", true, "no ']' closing the address literal", `"u@[192.0.2.1:r"`},
		{"alice@example.org", true, "missing ':' after the sender", `"alice@example.org"`},
		{"u@[IPv6:2001:db8::1]", true, "missing ':' after the sender", `"u@[IPv6:2001:db8::1]"`},
		{":r", true, "empty sender (bounces are <>)", ""},
		{"a\tb@x.test:r", true, "space or control character in the sender", `"a\tb@x.test"`},
		{"<a b@x.test>:r", false, "space or control character in the sender", `"a b@x.test"`},
		{"a\x7fb@x.test:r", true, "space or control character in the sender", `"a\x7fb@x.test"`},
		{"a<b@x.test:r", true, "stray angle bracket in the sender", `"a<b@x.test"`},
		{"a>b@x.test:r", true, "stray angle bracket in the sender", `"a>b@x.test"`},
		{"<<a@x.test>:r", false, "stray angle bracket in the sender", `"<a@x.test"`},
		{".[192.0.2.1]:r", true, "an address literal has no subdomains", `".[192.0.2.1]"`},
		{"alice:r", true, "no '@' in the sender (write user@domain, @domain or .domain)", `"alice"`},
		{"<alice>:r", false, "no '@' in the sender (write user@domain, @domain or .domain)", `"alice"`},
		{"a@b@x.test:r", true, "bad local part of the sender", `"a@b@x.test"`},
		{"<a:b@x.test>:r", false, "bad local part of the sender", `"a:b@x.test"`},
		{"u@[300.1.1.1]:r", true, "bad address literal in the sender", `"u@[300.1.1.1]"`},
		{"u@[192.0.2.1]x:r", true, "bad address literal in the sender", `"u@[192.0.2.1]x"`},
		{"u@[fe80::1%eth0]:r", true, "bad address literal in the sender", `"u@[fe80::1%eth0]"`},
		{"u@[IPv6:192.0.2.1]:r", true, "bad address literal in the sender", `"u@[IPv6:192.0.2.1]"`},
		// Bounce keys only in brackets.
		{"#@[]:r", true, "bad address literal in the sender", `"#@[]"`},
		{"u@:r", true, "empty domain in the sender", `"u@"`},
		{"u@.:r", true, "empty domain in the sender", `"u@."`},
		{".:r", true, "empty domain in the sender", `"."`},
		{"u@a..b:r", true, "empty label in the sender's domain", `"u@a..b"`},
		{"..example.org:r", true, "empty label in the sender's domain", `"..example.org"`},
		{"u@" + long + ".test:r", true, "label longer than 63 bytes in the sender's domain", `"u@` + long[:58] + `..."`},
		{"<u@a:b>:r", false, "bad character in the sender's domain", `"u@a:b"`},
		{"u@x]:r", true, "bad character in the sender's domain", `"u@x]"`},
	} {
		key, rest, reason := Split(c.line, c.bare, false)
		if key != "" || rest != "" || reason != c.reason {
			t.Errorf("Split(%q, %v, false) = %q, %q, %q; want reason %q", c.line, c.bare, key, rest, reason, c.reason)
		}
		if !slices.Contains(fixedReasons, reason) {
			t.Errorf("Split(%q, %v, false): reason %q is not fixed text", c.line, c.bare, reason)
		}
		key, rest, reason = Split(c.line, c.bare, true)
		want := c.reason
		if c.quoted != "" {
			want += " " + c.quoted
		}
		if key != "" || rest != "" || reason != want {
			t.Errorf("Split(%q, %v, true) = %q, %q, %q; want reason %q", c.line, c.bare, key, rest, reason, want)
		}
	}
}

// With quote false a reason holds nothing of the line (smtpauth's lines
// hold passwords): a secret in the sender never reaches a report.
func TestSplitNoQuote(t *testing.T) {
	const secret = "S3cr3t"
	for _, line := range []string{
		"<" + secret, "<" + secret + ">", "<" + secret + ">x", "<" + secret + ">:r",
		"<" + secret + "@>:r", "<" + secret + "@x..y>:r", "<" + secret + " @x>:r",
		"<" + secret + "@[" + secret + "]>:r", "<." + secret + "@x>:r", "<@" + secret + ":x>:r",
		secret + "@x:r", secret + ":r",
	} {
		for _, bare := range []bool{true, false} {
			_, _, reason := Split(line, bare, false)
			if reason == "" {
				continue
			}
			if strings.Contains(reason, secret) || !slices.Contains(fixedReasons, reason) {
				t.Errorf("Split(%q, %v, false): reason %q", line, bare, reason)
			}
		}
	}
}

func TestShow(t *testing.T) {
	for key, want := range map[string]string{
		"alice@example.org":  "<alice@example.org>",
		"@example.org":       "<@example.org>",
		".example.org":       "<.example.org>",
		"u@[2001:db8::1]":    "<u@[2001:db8::1]>",
		Bounce:               "<>",
		DoubleBounce:         "<#@[]>",
		`"a:b"@example.org`:  `<"a:b"@example.org>`,
		"@[192.0.2.1]":       "<@[192.0.2.1]>",
		"postmaster@example": "<postmaster@example>",
	} {
		if got := Show(key); got != want {
			t.Errorf("Show(%q) = %q, want %q", key, got, want)
		}
		// What Show writes reads back as the key.
		if k, rest, reason := Split(Show(key)+":x", false, false); k != key || rest != "x" || reason != "" {
			t.Errorf("Split(Show(%q)) = %q, %q, %q", key, k, rest, reason)
		}
	}
}

// FuzzSplit: Split never panics; a key it returns is canonical (written
// with Show and read again, it is the same key, and Keys of a sender with
// that exact address lists it first); with quote false a reason is fixed
// text, never any of the line.
func FuzzSplit(f *testing.F) {
	for _, s := range []string{
		"alice@example.org:r", "<alice@example.org>:r", "@Example.ORG.:r", ".example.org:r",
		"<>:r", "<#@[]>:r", "#@[]:r", "user@[IPv6:2001:db8::1]:relay", "u@[192.0.2.1]x:r",
		`<"a:b"@x>:r`, "a@b@c:r", "<a:b@x>:", "u@a..b:r", ":r", "<", "<>", "[", "u@[", ".[192.0.2.1]:r",
		"\xc3\x84@\xc3\x84.ORG:r", "u@[::ffff:192.0.2.1]:r", "<u@[IPv6:2001:DB8::1]>::::",
	} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, line string, bare bool) {
		key, rest, reason := Split(line, bare, true)
		key2, rest2, reason2 := Split(line, bare, false)
		if key != key2 || rest != rest2 || (reason == "") != (reason2 == "") {
			t.Fatalf("Split(%q, %v): quote true %q %q %q, false %q %q %q", line, bare, key, rest, reason, key2, rest2, reason2)
		}
		if reason2 != "" {
			if key2 != "" || rest2 != "" {
				t.Fatalf("Split(%q, %v, false): error %q with key %q rest %q", line, bare, reason2, key2, rest2)
			}
			if !slices.Contains(fixedReasons, reason2) {
				t.Fatalf("Split(%q, %v, false): reason %q is not fixed text", line, bare, reason2)
			}
			if !strings.HasPrefix(reason, reason2) {
				t.Fatalf("Split(%q, %v): reason with quotes %q does not start with %q", line, bare, reason, reason2)
			}
			return
		}
		if key == "" {
			t.Fatalf("Split(%q, %v): no key and no reason", line, bare)
		}
		if !strings.HasSuffix(line, ":"+rest) {
			t.Fatalf("Split(%q, %v): rest %q is not the end of the line after a ':'", line, bare, rest)
		}
		// Canonical: read back from its own spelling, the same key.
		k, r, why := Split(Show(key)+":x", false, false)
		if k != key || r != "x" || why != "" {
			t.Fatalf("Split(%q, %v) = %q; Split(Show(key)+\":x\") = %q, %q, %q", line, bare, key, k, r, why)
		}
		// And a sender written as that key is tried under it.
		switch {
		case key == Bounce:
			if !slices.Equal(Keys(""), []string{Bounce}) {
				t.Fatalf("Keys of a bounce: %q", Keys(""))
			}
		case key == DoubleBounce:
			if !slices.Equal(Keys(DoubleBounceSender), []string{DoubleBounce}) {
				t.Fatalf("Keys of a double bounce: %q", Keys(DoubleBounceSender))
			}
		case strings.HasPrefix(key, "."):
			// The suffix of a sender at a subdomain.
			if ks := Keys("u@x" + key); !slices.Contains(ks, key) {
				t.Fatalf("key %q not among Keys(%q) = %q", key, "u@x"+key, ks)
			}
		default:
			if ks := Keys(key); len(ks) == 0 || ks[0] != key {
				t.Fatalf("key %q: Keys(%q) = %q", key, key, ks)
			}
			if at := strings.LastIndexByte(key, '@'); at >= 0 {
				if ks := Keys("someone" + key[at:]); len(ks) < 2 || ks[1] != key[at:] {
					t.Fatalf("key %q: Keys(someone%s) = %q", key, key[at:], ks)
				}
			}
		}
		if strings.IndexFunc(key, func(r rune) bool { return r >= 'A' && r <= 'Z' }) >= 0 {
			t.Fatalf("key %q holds upper-case ASCII", key)
		}
	})
}

// A ".suffix" key is a domain: a key such as ".alice@example.org" (an
// admin's slip for <alice@example.org>) can match no sender, since a
// sender's domain is what follows its last '@'. It must be an error, not
// a line that is silently never used.
func TestSplitSuffixWithAt(t *testing.T) {
	for _, line := range []string{".alice@example.org:r", "<.alice@example.org>:r", ".@example.org:r", ".example.org@:r"} {
		key, _, reason := Split(line, true, false)
		if reason == "" {
			t.Errorf("Split(%q) = key %q, no error; Keys(\"u@x%s\") = %q never holds it", line, key, key, Keys("u@x"+key))
			continue
		}
		if !slices.Contains(fixedReasons, reason) {
			t.Errorf("Split(%q, false): reason %q is not fixed text", line, reason)
		}
	}
}
