// Package addrlit parses SMTP address literals (RFC 5321 4.1.3):
// [192.0.2.1], [IPv6:2001:db8::1], and, as a convenience for smtproutes,
// the untagged [2001:db8::1].
package addrlit

import (
	"net/netip"
	"strings"
)

// IsLiteral says whether s is meant as an address literal (bracketed).
func IsLiteral(s string) bool { return strings.HasPrefix(s, "[") }

// Parse returns the address of a bracketed literal, canonical (IPv4-mapped
// addresses unmapped), and ok=false when s is not a valid literal: missing
// brackets, a zone, or an "IPv6:" tag on an IPv4 address.
func Parse(s string) (a netip.Addr, ok bool) {
	if len(s) < 2 || s[0] != '[' || s[len(s)-1] != ']' {
		return a, false
	}
	in := s[1 : len(s)-1]
	tagged := len(in) >= 5 && strings.EqualFold(in[:5], "IPv6:")
	if tagged {
		in = in[5:]
	}
	a, err := netip.ParseAddr(in)
	if err != nil || a.Zone() != "" || (tagged && !a.Is6()) {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// Canonical returns the literal in the one spelling this project uses as a
// key and a name: "[" + canonical address + "]".
func Canonical(a netip.Addr) string { return "[" + a.Unmap().String() + "]" }
