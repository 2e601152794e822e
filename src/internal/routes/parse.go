// Package routes implements control/smtproutes (doc/smtproutes.md): the
// parser of the text file, the stock qmail-remote matching rules, and the
// compiled form QMAILRUN/qmail-remote/smtproutes.cdb that hundreds of
// concurrent deliveries share.
package routes

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"qmail-remote-go/src/internal/addrlit"
	"qmail-remote-go/src/internal/ascii"
	"qmail-remote-go/src/internal/ctlcdb"

	"qmail-remote-go/src/internal/say"
)

// File is the text file's name as the administrator knows it, relative to
// the qmail home. Error texts use it.
const File = "control/smtproutes"

// Limits against runaway files (a log written to the wrong path, a binary
// copied over the file): they keep memory and compile time bounded.
const (
	MaxLine = 1024     // bytes per line, before trailing blanks are stripped
	MaxText = 16 << 20 // bytes of text in the whole file
)

// DefaultPort is the SMTP port (RFC 5321 4.5.4.2 leaves it to the
// well-known 25).
const DefaultPort = 25

// Route is the result of a lookup.
type Route struct {
	// Relay is a lower-case host name or a canonical address literal
	// "[192.0.2.7]" / "[2001:db8::7]". Empty: look up MX records as usual.
	Relay string
	// Port is the TCP port, DefaultPort unless the route says otherwise.
	Port int
	// Found says whether some entry matched the host.
	Found bool
}

// NoRoute is what a host without a matching entry gets.
var NoRoute = Route{Port: DefaultPort}

// Table is a parsed smtproutes file: a key (lower-case domain, ".suffix",
// canonical literal, or "" for the default route) to its route.
type Table struct {
	routes map[string]Route
}

// Len returns the number of distinct keys.
func (t *Table) Len() int { return len(t.routes) }

// Lookup finds the route for host the way stock qmail-remote does.
func (t *Table) Lookup(host string) Route {
	return route(ctlcdb.First(t.routes, Keys(host)))
}

// Keys lists the keys tried for host, in order. Stock qmail-remote tries the
// host itself, then every suffix starting at a dot (so ".af.mil" matches
// "x.af.mil" but not "af.mil"), then "" (the default route); matching is
// case-insensitive (constmap folds case). An address literal "[...]" is
// canonicalised and tried whole, then the default only: its suffixes
// (".2.1]") are not domains, and stock trying them was an accident.
func Keys(host string) []string {
	if strings.HasPrefix(host, "[") {
		if a, err := parseLiteral(host); err == nil {
			return []string{a, ""}
		}
		return []string{""}
	}
	host = ascii.Lower(host)
	keys := []string{host}
	for i := 0; i < len(host); i++ {
		if host[i] == '.' {
			keys = append(keys, host[i:])
		}
	}
	if host != "" {
		keys = append(keys, "")
	}
	return keys
}

// SyntaxError is a problem in the text of control/smtproutes (its File
// is File). Line is 1-based; 0 means the file as a whole.
type SyntaxError = ctlcdb.SyntaxError

// Parse reads the text of control/smtproutes. Each line is "domain:relay"
// or "domain:relay:port"; trailing spaces, tabs and CRs are stripped, empty
// lines and lines starting with '#' are skipped (qmail-control(5)).
//
// Unlike stock, which silently skips a line without ':' and reads a bad
// port as whatever scan_ulong makes of it, every malformed line is an error
// naming the line: a typo must make mail wait, not misroute it.
//
// When a key appears twice the last entry wins, as in stock: constmap.c
// pushes each entry on the head of its hash chain, so a lookup meets the
// last one first.
func Parse(text []byte) (*Table, error) {
	t, err := parse(text)
	if err != nil {
		return nil, err
	}
	return t, nil
}

// parse is Parse with a typed error, for package ctlcdb.
func parse(text []byte) (*Table, *SyntaxError) {
	t := &Table{routes: make(map[string]Route)}
	err := ctlcdb.ReadLines(File, text, MaxText, MaxLine, func(_ int, line string) string {
		key, r, reason := parseLine(line)
		if reason == "" {
			t.routes[key] = r
		}
		return reason
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// parseLine parses one non-empty, non-comment line. A literal is parsed
// before the field separator is looked for, since IPv6 literals hold ':'.
//
//	line   = domain ":" relay [ ":" port ]
//	domain = "" | name | "[" addr "]"
//	relay  = "" | name | ipv4 | "[" addr "]"
func parseLine(line string) (key string, r Route, reason string) {
	if reason := checkChars(line); reason != "" {
		return "", r, reason
	}
	// The domain.
	key, rest, reason := SplitDomain(line)
	if reason != "" {
		return "", r, reason
	}
	r, reason = parseRelay(rest)
	return key, r, reason
}

// checkChars refuses control characters and spaces anywhere in a line.
func checkChars(line string) string {
	for i := 0; i < len(line); i++ {
		switch c := line[i]; {
		case c < 0x20 || c == 0x7f:
			return fmt.Sprintf("control character 0x%02x", c)
		case c == ' ':
			return fmt.Sprintf("space in %q (no spaces allowed)", say.Clip(line, 60))
		}
	}
	return ""
}

// parseRelay parses what follows a line's key: the relay and the port.
//
//	rest  = relay [ ":" port ]
//	relay = "" | name | ipv4 | "[" addr "]"
func parseRelay(rest string) (r Route, reason string) {
	r = Route{Port: DefaultPort, Found: true}
	var port string
	hasPort := false
	if strings.HasPrefix(rest, "[") {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return r, fmt.Sprintf("no ']' closing the address literal %q", say.Clip(rest, 60))
		}
		lit, err := parseLiteral(rest[:end+1])
		if err != nil {
			return r, err.Error()
		}
		r.Relay = lit
		after := rest[end+1:]
		switch {
		case after == "":
		case after[0] == ':':
			port, hasPort = after[1:], true
		default:
			return r, fmt.Sprintf("junk %q after ']'", say.Clip(after, 60))
		}
	} else {
		relay := rest
		if i := strings.IndexByte(rest, ':'); i >= 0 {
			relay, port, hasPort = rest[:i], rest[i+1:], true
		}
		if a, err := netip.ParseAddr(rest); err == nil && a.Is6() {
			return r, fmt.Sprintf("IPv6 relay %q must be written in brackets, [%s]", say.Clip(rest, 60), say.Clip(rest, 60))
		}
		rel, reason := parseRelayName(relay)
		if reason != "" {
			return r, reason
		}
		r.Relay = rel
	}
	if hasPort {
		p, ok := parsePort(port)
		if !ok {
			return r, fmt.Sprintf("bad port %q", say.Clip(port, 60))
		}
		r.Port = p
	}
	return r, ""
}

// SplitDomain splits a line of a table keyed by destination domain
// (control/smtproutes, control/tlspolicy) at the ':' after its domain, and
// returns the domain as a key: lower case, or a canonical address literal;
// reason says what is wrong when the domain cannot be read. A literal is
// parsed before the separator is looked for, since IPv6 literals hold ':'.
// Nothing else of the domain is checked.
func SplitDomain(line string) (key, rest, reason string) {
	if strings.HasPrefix(line, "[") {
		end := strings.IndexByte(line, ']')
		if end < 0 {
			return "", "", fmt.Sprintf("no ']' closing the address literal %q", say.Clip(line, 60))
		}
		lit, err := parseLiteral(line[:end+1])
		if err != nil {
			return "", "", err.Error()
		}
		rest = line[end+1:]
		if rest == "" {
			return "", "", fmt.Sprintf("missing ':' after %q", say.Clip(line[:end+1], 60))
		}
		if rest[0] != ':' {
			return "", "", fmt.Sprintf("junk %q after ']'", say.Clip(rest, 60))
		}
		return lit, rest[1:], ""
	}
	i := strings.IndexByte(line, ':')
	if i < 0 {
		return "", "", fmt.Sprintf("missing ':' in %q", say.Clip(line, 60))
	}
	key = ascii.Lower(line[:i])
	if strings.ContainsAny(key, "[]") {
		return "", "", fmt.Sprintf("stray bracket in domain %q", say.Clip(key, 60))
	}
	return key, line[i+1:], ""
}

// parsePort accepts decimal 1 to 65535 (leading zeros allowed, no sign).
func parsePort(s string) (int, bool) {
	if s == "" || len(s) > 5 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 {
		return 0, false
	}
	return p, true
}

// parseRelayName checks a relay host name, lower-cases it, and turns a bare
// IPv4 address into a literal: stock dns.c takes a relay that ip_scan
// accepts as the address itself, not as a name to look up.
func parseRelayName(s string) (string, string) {
	if s == "" {
		return "", ""
	}
	s = ascii.Lower(s)
	allDigits := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9', c == '.':
		case c >= 'a' && c <= 'z', c == '-', c == '_':
			allDigits = false
		default:
			return "", fmt.Sprintf("bad character %q in relay %q", c, say.Clip(s, 60))
		}
	}
	if allDigits {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() {
			return "", fmt.Sprintf("relay %q is neither a host name nor an IPv4 address", say.Clip(s, 60))
		}
		return "[" + a.String() + "]", ""
	}
	name := strings.TrimSuffix(s, ".")
	if len(name) > 253 {
		return "", fmt.Sprintf("relay name %q longer than 253 bytes", say.Clip(s, 60))
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" {
			return "", fmt.Sprintf("empty label in relay name %q", say.Clip(s, 60))
		}
		if len(label) > 63 {
			return "", fmt.Sprintf("label longer than 63 bytes in relay name %q", say.Clip(s, 60))
		}
	}
	return s, ""
}

// parseLiteral canonicalises an address literal: "[192.0.2.1]",
// "[IPv6:2001:db8::1]" (RFC 5321 4.1.3) or "[2001:db8::1]" become
// "[<address>]" in netip's canonical form, IPv4-mapped IPv6 unmapped, so
// that any spelling of one address is one key.
func parseLiteral(s string) (string, error) {
	a, ok := addrlit.Parse(s)
	if !ok {
		return "", fmt.Errorf("bad address literal %q", say.Clip(s, 60))
	}
	return addrlit.Canonical(a), nil
}
