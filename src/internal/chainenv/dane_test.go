package chainenv

import (
	"reflect"
	"strings"
	"testing"
)

func TestDANE(t *testing.T) {
	hs := []DANEHost{
		{Name: "mx1.example.test", Names: []string{"smtp.example.net", "mx1.example.test"}, Records: "3:1:1:aa,2:0:1:bb"},
		{Name: "[192.0.2.1]", Names: []string{"x"}, Records: "3:1:1:cc"},
	}
	v := FormatDANE(hs)
	if v != "mx1.example.test/smtp.example.net,mx1.example.test/3:1:1:aa,2:0:1:bb [192.0.2.1]/x/3:1:1:cc" {
		t.Errorf("FormatDANE: %q", v)
	}
	got, err := ParseDANE(v)
	if err != nil || !reflect.DeepEqual(got, hs) {
		t.Errorf("ParseDANE(%q) = %+v, %v", v, got, err)
	}
	for _, bad := range []string{"mx", "mx/names", "mx//3:1:1:aa", "/n/r", "mx/n/", "a/b/c/d"} {
		if _, err := ParseDANE(bad); err == nil || !strings.HasPrefix(err.Error(), DANE+" holds ") {
			t.Errorf("ParseDANE(%q): %v", bad, err)
		}
	}
	if hs, err := ParseDANE(""); err != nil || hs != nil {
		t.Errorf("ParseDANE(\"\") = %v, %v", hs, err)
	}
}

// FuzzParseDANE: whatever parses formats back to the same fields.
func FuzzParseDANE(f *testing.F) {
	f.Add("mx1.example.test/smtp.example.net,mx1.example.test/3:1:1:aa mx2/mx2/2:0:1:bb")
	f.Add("a/b/c")
	f.Fuzz(func(t *testing.T, v string) {
		hs, err := ParseDANE(v)
		if err != nil {
			return
		}
		again, err := ParseDANE(FormatDANE(hs))
		if err != nil || !reflect.DeepEqual(again, hs) {
			t.Errorf("%q: %+v, then %+v (%v)", v, hs, again, err)
		}
	})
}
