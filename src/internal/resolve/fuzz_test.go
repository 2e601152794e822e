package resolve

import (
	"net/netip"
	"strings"
	"testing"

	"qmail-remote-go/src/internal/chainenv"
)

// FuzzInputs: what comes from the environment never panics, and whatever
// is accepted can be written in, and read back from, the candidate list.
func FuzzInputs(f *testing.F) {
	for _, s := range []string{"[192.0.2.1]", "[IPv6:2001:db8::1]", "[2001:db8::1]", "192.0.2.1",
		"example.test", "[", "[]", "[IPv6:]", "a..b", "x\\032y", "[fe80::1%eth0]", "::ffff:1.2.3.4",
		"192.0.2.53:5353, [2001:db8::53]:53", "[::1]:", ":53", "a\u00a0b.test", "ex\u00e4mple.test"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ParseDNSCacheIP(s)
		if a, isLit, ok := literal(s); ok {
			if !isLit || !a.IsValid() || a.Is4In6() || a.Zone() != "" {
				t.Fatalf("literal(%q) = %v, %v, %v", s, a, isLit, ok)
			}
		}
		if CheckRelay(s) != nil {
			return
		}
		name := s
		if a, isLit, _ := literal(s); isLit {
			name = "[" + a.String() + "]"
		} else {
			name = show(s)
		}
		c := chainenv.Candidate{Name: name, Addr: netip.MustParseAddr("192.0.2.1")}
		back, err := chainenv.ParseCandidates(chainenv.FormatCandidates([]chainenv.Candidate{c, c}))
		if err != nil || len(back) != 2 || back[0] != c || strings.ContainsAny(name, " \t\n") {
			t.Fatalf("relay %q: candidate %q reads back as %v, %v", s, c, back, err)
		}
	})
}
