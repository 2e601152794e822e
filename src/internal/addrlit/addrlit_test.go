package addrlit

import "testing"

func TestParse(t *testing.T) {
	for in, want := range map[string]string{
		"[192.0.2.1]":         "[192.0.2.1]",
		"[IPv6:2001:DB8::1]":  "[2001:db8::1]",
		"[ipv6:2001:db8::1]":  "[2001:db8::1]",
		"[2001:db8::1]":       "[2001:db8::1]",
		"[::ffff:192.0.2.1]":  "[192.0.2.1]",
		"[IPv6:192.0.2.1]":    "",
		"[fe80::1%eth0]":      "",
		"192.0.2.1":           "",
		"[192.0.2.1":          "",
		"[]":                  "",
		"[300.1.1.1]":         "",
		"[IPv6:2001:db8::1]x": "",
	} {
		a, ok := Parse(in)
		got := ""
		if ok {
			got = Canonical(a)
		}
		if got != want {
			t.Errorf("Parse(%q) = %q, want %q", in, got, want)
		}
	}
}
