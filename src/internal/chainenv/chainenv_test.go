package chainenv

import (
	"fmt"
	"testing"
)

func TestCandidates(t *testing.T) {
	cs, err := ParseCandidates("mx1.example.test/2001:db8::1 mx1.example.test/192.0.2.1 [192.0.2.7]/192.0.2.7 [2001:db8::7]/2001:db8::7")
	if err != nil || len(cs) != 4 || cs[3].Name != "[2001:db8::7]" || cs[3].Addr.String() != "2001:db8::7" {
		t.Fatalf("ParseCandidates: %v %v", cs, err)
	}
	if got := FormatCandidates(cs); got != "mx1.example.test/2001:db8::1 mx1.example.test/192.0.2.1 [192.0.2.7]/192.0.2.7 [2001:db8::7]/2001:db8::7" {
		t.Errorf("round trip: %q", got)
	}
	if cs, _ := ParseCandidates("a/::ffff:192.0.2.1"); cs[0].Addr.String() != "192.0.2.1" {
		t.Errorf("mapped address kept: %v", cs)
	}
	for _, bad := range []string{"noslash", "/192.0.2.1", "a/notanip", "a/fe80::1%eth0"} {
		if _, err := ParseCandidates(bad); err == nil {
			t.Errorf("ParseCandidates(%q) accepted", bad)
		}
	}
}

func TestInt(t *testing.T) {
	t.Setenv("X_N", "42")
	if n, err := Int("X_N", 1, 100); n != 42 || err != nil {
		t.Errorf("Int: %d %v", n, err)
	}
	for _, v := range []string{"", "0", "101", "+5", "5x", " 5"} {
		t.Setenv("X_N", v)
		if _, err := Int("X_N", 1, 100); err == nil {
			t.Errorf("Int(%q) accepted", v)
		}
	}
	if _, err := Int("X_UNSET_VARIABLE", 1, 2); err == nil || err.Error() != "X_UNSET_VARIABLE is not set" {
		t.Errorf("unset: %v", err)
	}
}

func TestFlag(t *testing.T) {
	for v, want := range map[string]bool{"1": true, "0": false, "": false} {
		t.Setenv("X_F", v)
		if got, err := Flag("X_F"); got != want || err != nil {
			t.Errorf("Flag(%q): %v %v, want %v", v, got, err, want)
		}
	}
	for _, v := range []string{"2", "yes", " 1", "01"} {
		t.Setenv("X_F", v)
		if _, err := Flag("X_F"); err == nil || err.Error() != fmt.Sprintf("X_F must be 0 or 1, not %q", v) {
			t.Errorf("Flag(%q): %v", v, err)
		}
	}
	if got, err := Flag("X_UNSET_VARIABLE"); got || err != nil {
		t.Errorf("unset: %v %v", got, err)
	}
}

func TestEnvelope(t *testing.T) {
	SetEnvelope("", []string{"a b@example.test", `"q"@example.test`})
	s, r, err := Envelope()
	if err != nil || s != "" || len(r) != 2 || r[0] != "a b@example.test" || r[1] != `"q"@example.test` {
		t.Errorf("Envelope: %q %q %v", s, r, err)
	}
}
