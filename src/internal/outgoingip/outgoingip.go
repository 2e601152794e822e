// Package outgoingip implements control/outgoingip (doc/outgoingip.md):
// the local addresses a delivery connects from, one IPv4 and one IPv6,
// for every delivery, per destination (keyed as in smtproutes) and per
// sender (keyed as in senderroutes). Without the file, or without a line
// for a family, nothing is bound: the kernel chooses, as it always has.
//
// Each line is one of
//
//	address             every delivery (the default)
//	:address            the same
//	domain:address      mail to domain (as smtproutes: name, .suffix, [literal])
//	<sender>:address    mail from sender (as senderroutes, in angle brackets)
//
// where address is an IPv4 address or an IPv6 address, bare or in
// brackets. A key may have one address of each family.
//
// Each family is looked up on its own, in this order: the destination's
// keys (the host, then its .suffixes), then the sender's keys, then the
// default. The first key with an address of that family gives it. A
// destination before a sender, because a destination that wants one
// address (a relay that accepts only it) is a requirement, and a sender's
// address is a preference (its reputation).
package outgoingip

import (
	"fmt"
	"net/netip"
	"strings"

	"qmail-remote-go/src/internal/ctlcdb"
	"qmail-remote-go/src/internal/routes"
	"qmail-remote-go/src/internal/say"
	"qmail-remote-go/src/internal/senders"
)

// File is the text file, as the admin knows it.
const File = "control/outgoingip"

// Limits against runaway files.
const (
	MaxLine = 1024
	MaxText = 16 << 20
)

// Source is the addresses to connect from; an invalid (zero) Addr
// means the kernel chooses for that family.
type Source struct {
	V4, V6 netip.Addr
}

// IsZero says whether nothing is bound for either family.
func (s Source) IsZero() bool { return !s.V4.IsValid() && !s.V6.IsValid() }

// SyntaxError is a problem in the text.
type SyntaxError = ctlcdb.SyntaxError

// FileError is a system error on the text or its compiled form.
type FileError = ctlcdb.FileError

// The table's keys are the family ('4' or '6'), then 'd' for a destination
// key (routes.Keys' form, "" the default) or 's' for a sender key
// (senders' canonical form), then the key: "4dexample.com", "6s@example.org",
// "4d" for the IPv4 default. Destination and sender keys can look alike
// (".example.org"), hence the letter.
func tableKey(family byte, kind byte, key string) string {
	return string([]byte{family, kind}) + key
}

// Parse reads the text of control/outgoingip into its table.
func Parse(text []byte) (map[string]netip.Addr, *SyntaxError) {
	t := make(map[string]netip.Addr)
	first := make(map[string]int)
	err := ctlcdb.ReadLines(File, text, MaxText, MaxLine, func(n int, line string) string {
		k, a, reason := parseLine(line)
		if reason != "" {
			return reason
		}
		if l, dup := first[k]; dup {
			return fmt.Sprintf("a second IPv%c address for %s (line %d has one)", k[0], showKey(k), l)
		}
		first[k] = n
		t[k] = a
		return ""
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

func parseLine(line string) (key string, a netip.Addr, reason string) {
	for i := 0; i < len(line); i++ {
		if c := line[i]; c <= ' ' || c == 0x7f {
			return "", a, fmt.Sprintf("space or control character 0x%02x", c)
		}
	}
	kind, k, rest := byte('d'), "", line
	switch {
	case strings.HasPrefix(line, "<"):
		kind = 's'
		if k, rest, reason = senders.Split(line, false, true); reason != "" {
			return "", a, reason
		}
	case isAddress(line):
		// A line that is an address alone: the default.
	default:
		if k, rest, reason = routes.SplitDomain(line); reason != "" {
			return "", a, reason
		}
		if strings.Contains(k, "@") {
			// A sender written bare would be a destination no mail
			// ever has: say so rather than never match.
			return "", a, fmt.Sprintf("%q looks like a sender: write it in angle brackets, <%s>", say.Clip(k, 60), say.Clip(k, 60))
		}
		if k != "" && !strings.HasPrefix(k, "[") {
			if reason := checkDomain(k); reason != "" {
				return "", a, reason
			}
		}
	}
	if a, reason = parseAddr(rest); reason != "" {
		return "", a, reason
	}
	family := byte('6')
	if a.Is4() {
		family = '4'
	}
	return tableKey(family, kind, k), a, ""
}

// isAddress says whether a whole line is an address (bare IPv6 holds
// ':', which would otherwise end a domain).
func isAddress(s string) bool {
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		s = strings.TrimPrefix(s[1:len(s)-1], "IPv6:")
	}
	_, err := netip.ParseAddr(s)
	return err == nil
}

// checkDomain checks a destination key written as a name.
func checkDomain(k string) string {
	name := strings.TrimPrefix(k, ".")
	for _, label := range strings.Split(name, ".") {
		if label == "" {
			return fmt.Sprintf("empty label in domain %q", say.Clip(k, 60))
		}
	}
	return ""
}

// parseAddr reads the address of a line and refuses what cannot be a
// source: an unspecified, multicast or broadcast address, or IPv4 written
// as IPv6 (bind would take it on an IPv6 socket only, which IPv4 mail
// never uses).
func parseAddr(s string) (netip.Addr, string) {
	raw := s
	if strings.HasPrefix(s, "[") {
		if !strings.HasSuffix(s, "]") {
			return netip.Addr{}, fmt.Sprintf("no ']' closing the address %q", say.Clip(raw, 60))
		}
		s = strings.TrimPrefix(s[1:len(s)-1], "IPv6:")
	}
	if s == "" {
		return netip.Addr{}, "no address after ':'"
	}
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		return a, fmt.Sprintf("%q is not an IPv4 or IPv6 address", say.Clip(raw, 60))
	case a.Zone() != "":
		return a, fmt.Sprintf("%q has a zone: use an address without one", say.Clip(raw, 60))
	case a.Is4In6():
		return a, fmt.Sprintf("%q is an IPv4 address written as IPv6; write %s", say.Clip(raw, 60), a.Unmap())
	case a.IsUnspecified():
		return a, fmt.Sprintf("%q is the unspecified address; leave the family out to let the kernel choose", say.Clip(raw, 60))
	case a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return a, fmt.Sprintf("%q is not an address a connection can come from", say.Clip(raw, 60))
	}
	return a, ""
}

// showKey writes a table key as the admin wrote it.
func showKey(k string) string {
	switch {
	case k[1] == 's':
		return senders.Show(k[2:])
	case k[2:] == "":
		return "the default"
	}
	return k[2:]
}

// query is what ctlcdb looks up: the family, the destination host, and
// the sender (when known), NUL between; queryKeys lists its keys.
func query(family byte, host, sender string, hasSender bool) string {
	known := "0"
	if hasSender {
		known = "1"
	}
	return string(family) + "\x00" + host + "\x00" + known + sender
}

func queryKeys(q string) []string {
	parts := strings.SplitN(q, "\x00", 3)
	if len(parts) != 3 || len(parts[0]) != 1 || parts[2] == "" {
		return nil
	}
	family, host := parts[0][0], parts[1]
	var keys []string
	for _, k := range routes.Keys(host) {
		if k != "" {
			keys = append(keys, tableKey(family, 'd', k))
		}
	}
	if parts[2][0] == '1' {
		for _, k := range senders.Keys(parts[2][1:]) {
			keys = append(keys, tableKey(family, 's', k))
		}
	}
	return append(keys, tableKey(family, 'd', ""))
}

func encode(a netip.Addr) []byte { return []byte(a.String()) }

// decode is as strict as the parser.
func decode(v []byte) (netip.Addr, bool) {
	a, reason := parseAddr(string(v))
	if reason != "" || a.String() != string(v) {
		return netip.Addr{}, false
	}
	return a, true
}

var compiled = ctlcdb.New(ctlcdb.Spec[netip.Addr]{
	Text:      File,
	DB:        "outgoingip.cdb",
	Tmp:       "outgoingip.cdb.tmp",
	Lock:      "outgoingip.lock",
	Magic:     "QRO1",
	MaxText:   MaxText,
	Parse:     Parse,
	Keys:      queryKeys,
	Marshal:   encode,
	Unmarshal: decode,
})

// Lookup returns the source addresses for mail to host from sender
// (hasSender false: the sender is not known, and sender lines are not
// consulted), compiling outgoingip.cdb first if it is stale. The error
// is a *SyntaxError or a *FileError: the mail must wait.
func Lookup(qmailHome, qmailRun, host, sender string, hasSender bool) (Source, error) {
	var s Source
	m, err := compiled.Lookup(qmailHome, qmailRun, query('4', host, sender, hasSender))
	if err != nil {
		return s, err
	}
	if m.Found {
		s.V4 = m.Value
	}
	m, err = compiled.Lookup(qmailHome, qmailRun, query('6', host, sender, hasSender))
	if err != nil {
		return s, err
	}
	if m.Found {
		s.V6 = m.Value
	}
	return s, nil
}

// Compile compiles the text now (qmail-newsmtproutes).
func Compile(qmailHome, qmailRun string) error {
	_, err := compiled.Compile(qmailHome, qmailRun)
	return err
}

// Format writes s as QMAILREMOTE_OUTGOINGIP holds it: the addresses,
// IPv4 first, a space between; "" for none.
func Format(s Source) string {
	var f []string
	for _, a := range []netip.Addr{s.V4, s.V6} {
		if a.IsValid() {
			f = append(f, a.String())
		}
	}
	return strings.Join(f, " ")
}

// ParseEnv reads QMAILREMOTE_OUTGOINGIP's value: at most one address of
// each family, spaces between.
func ParseEnv(v string) (Source, error) {
	var s Source
	for _, f := range strings.Fields(v) {
		a, reason := parseAddr(f)
		if reason != "" {
			return s, fmt.Errorf("%s", reason)
		}
		p := &s.V6
		if a.Is4() {
			p = &s.V4
		}
		if p.IsValid() {
			return s, fmt.Errorf("two IPv%s addresses (%s and %s)", map[bool]string{true: "4", false: "6"}[a.Is4()], *p, a)
		}
		*p = a
	}
	return s, nil
}
