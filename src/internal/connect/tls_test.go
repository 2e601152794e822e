package connect

import "testing"

func TestPolicy(t *testing.T) {
	for _, tc := range []struct {
		p            Policy
		first        string
		retry, twice bool
	}{
		{Policy{false, 0}, ModeNone, false, false},
		{Policy{false, 1}, ModeNone, false, false},
		{Policy{false, 2}, ModeNone, false, false},
		{Policy{true, 0}, ModeTry, true, false},
		{Policy{true, 1}, ModeRequire, false, true},
		{Policy{true, 2}, ModeRequire, false, false},
	} {
		if got := tc.p.FirstMode(); got != tc.first {
			t.Errorf("%+v: first mode %q, want %q", tc.p, got, tc.first)
		}
		if got := tc.p.RetryCleartext(); got != tc.retry {
			t.Errorf("%+v: retry %v", tc.p, got)
		}
		if got := tc.p.SecondPass(); got != tc.twice {
			t.Errorf("%+v: second pass %v", tc.p, got)
		}
	}
	if l := (Policy{false, 1}).Label(ModeNone); l != "" {
		t.Errorf("label without anchors %q", l)
	}
	if l := (Policy{true, 1}).Label(ModeRequire); l != "(TLS) " {
		t.Errorf("label %q", l)
	}
	if l := (Policy{true, 1}).Label(ModeNone); l != "(cleartext) " {
		t.Errorf("label %q", l)
	}
}

func TestParseStrictness(t *testing.T) {
	for v, want := range map[string]int{"": 0, "0": 0, "1": 1, "2": 2} {
		if n, err := ParseStrictness(v); err != nil || n != want {
			t.Errorf("%q: %d, %v", v, n, err)
		}
	}
	for _, v := range []string{"3", "-1", "01", "+1", " 1", "1 ", "x"} {
		if _, err := ParseStrictness(v); err == nil {
			t.Errorf("%q accepted", v)
		}
	}
}
