package dane

import (
	"strings"
	"testing"
)

// FuzzParseRecords: no input makes ParseRecords panic, an error always
// names the record, and whatever parses writes back out in the canonical
// form and reads back the same.
func FuzzParseRecords(f *testing.F) {
	for _, s := range []string{"", "3:1:1:ab12", "2:0:2:00,255:255:255:FFee", "0:1:0:", ",", "3:1:1:ab,,",
		"3:1:1", "3:1:1:ab:cd", "256:1:1:ab", "3:1:1:abc", "3:1:1:0x12", " 3:1:1:ab", "003:1:1:", "3:1:1:\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rs, err := ParseRecords(s)
		if err != nil {
			if rs != nil || !strings.HasPrefix(err.Error(), "TLSA record ") {
				t.Fatalf("ParseRecords(%q) = %v, %v", s, rs, err)
			}
			return
		}
		enc := EncodeRecords(rs)
		if (s == "") != (enc == "") || strings.Count(enc, ",") != strings.Count(s, ",") || enc != strings.ToLower(enc) {
			t.Fatalf("ParseRecords(%q) encodes as %q", s, enc)
		}
		back, err := ParseRecords(enc)
		if err != nil || !equalRecords(back, rs) {
			t.Fatalf("%q parses to %v, encodes as %q, which parses to %v, %v", s, rs, enc, back, err)
		}
		if EncodeRecords(back) != enc {
			t.Fatalf("%q does not encode the same twice", enc)
		}
		for _, r := range rs {
			_ = r.Usable()
			_ = r.String()
		}
	})
}
