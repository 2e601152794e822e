package connect

import "testing"

func TestPolicy(t *testing.T) {
	for _, tc := range []struct {
		p            Policy
		first        string
		retry, twice bool
	}{
		{Policy{Anchors: false, Strictness: 0}, ModeNone, false, false},
		{Policy{Anchors: false, Strictness: 1}, ModeNone, false, false},
		{Policy{Anchors: false, Strictness: 2}, ModeNone, false, false},
		{Policy{Anchors: true, Strictness: 0}, ModeTry, true, false},
		{Policy{Anchors: true, Strictness: 1}, ModeRequire, false, true},
		{Policy{Anchors: true, Strictness: 2}, ModeRequire, false, false},
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
	if l := (Policy{Anchors: false, Strictness: 1}).Label(ModeNone); l != "" {
		t.Errorf("label without anchors %q", l)
	}
	if l := (Policy{Anchors: true, Strictness: 1}).Label(ModeRequire); l != "(TLS) " {
		t.Errorf("label %q", l)
	}
	if l := (Policy{Anchors: true, Strictness: 1}).Label(ModeNone); l != "(cleartext) " {
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

// TestLevels: a control/tlspolicy level overrides trustanchors and
// tlsstrictness for the destination.
func TestLevels(t *testing.T) {
	for _, tc := range []struct {
		p        Policy
		dane     bool
		level    string
		mode     string
		retry    bool
		canUse   bool
		twice    bool
		labelReq string
	}{
		{Policy{Level: LevelNone, Anchors: true, Strictness: 2}, false, LevelNone, ModeNone, false, true, false, ""},
		{Policy{Level: LevelMay}, false, LevelMay, ModeTry, true, true, false, "(TLS) "},
		{Policy{Level: LevelEncrypt}, false, LevelEncrypt, ModeRequire, false, true, false, "(TLS) "},
		{Policy{Level: LevelVerify, Strictness: 1, Anchors: true}, false, LevelVerify, ModeRequire, false, true, false, "(TLS) "},
		{Policy{Level: LevelDANE}, true, LevelDANE, ModeRequire, false, true, false, "(TLS) "},
		{Policy{Level: LevelDANE}, false, LevelMay, ModeTry, true, true, false, "(TLS) "},
		{Policy{Level: LevelDANEOnly}, true, LevelDANE, ModeRequire, false, true, false, "(TLS) "},
		{Policy{Level: LevelDANEOnly}, false, "", ModeNone, false, false, false, "(TLS) "},
		{Policy{Anchors: true, Strictness: 1}, true, "", ModeRequire, false, true, true, "(TLS) "},
	} {
		l := tc.p.HostLevel(tc.dane)
		if l != tc.level {
			t.Errorf("%+v dane=%v: level %q, want %q", tc.p, tc.dane, l, tc.level)
			continue
		}
		if tc.canUse != tc.p.CanUse(tc.dane) {
			t.Errorf("%+v dane=%v: CanUse %v", tc.p, tc.dane, !tc.canUse)
		}
		if !tc.canUse {
			continue
		}
		if m := tc.p.Mode(l); m != tc.mode {
			t.Errorf("%+v: mode %q, want %q", tc.p, m, tc.mode)
		}
		if r := tc.p.Retry(l); r != tc.retry {
			t.Errorf("%+v: retry %v", tc.p, r)
		}
		if s := tc.p.SecondPass(); s != tc.twice {
			t.Errorf("%+v: second pass %v", tc.p, s)
		}
		if lb := tc.p.Label(ModeRequire); lb != tc.labelReq {
			t.Errorf("%+v: label %q, want %q", tc.p, lb, tc.labelReq)
		}
	}
	if ParseLevel("verfy") == nil || ParseLevel("dane-only") != nil {
		t.Error("ParseLevel")
	}
}
