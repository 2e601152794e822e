// Package tlspolicy implements control/tlspolicy (doc/tlspolicy.md): the
// TLS level, and the certificate names or public keys to insist on, for
// each destination domain. It is keyed and matched like control/smtproutes
// and compiled the same way, into QMAILRUN/qmail-remote/tlspolicy.cdb
// (package ctlcdb).
//
// Unlike smtproutes, a malformed line makes only the mail it would have
// decided wait: its domain gets the line's error instead of a policy. A
// line whose domain cannot be read could have been meant for any mail, so
// it makes every lookup fail.
package tlspolicy

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"qmail-remote-go/src/internal/ctlcdb"
	"qmail-remote-go/src/internal/routes"
	"qmail-remote-go/src/internal/say"
)

// File is the text file's name as the administrator knows it, relative to
// the qmail home. Error texts use it.
const File = "control/tlspolicy"

// The limits of control/smtproutes: lines of the two files look alike.
const (
	MaxLine = routes.MaxLine // bytes per line, before trailing blanks are stripped
	MaxText = routes.MaxText // bytes of text in the whole file
)

// Levels are the valid levels, in the order error texts list them.
var Levels = []string{"none", "may", "encrypt", "verify", "dane", "dane-only"}

var levelList = strings.Join(Levels, ", ")

// Policy is what control/tlspolicy says about a host.
type Policy struct {
	Level string   // one of Levels; "" when no line applies
	Match []string // names the certificate must match instead of the MX host name, lower case; ".suffix" is any name under suffix
	Pins  []string // SHA-256 of acceptable SubjectPublicKeyInfos, lower-case hex
	Found bool     // some line applied
	Key   string   // the key that matched ("" the default), for logs
}

// SyntaxError is a problem in the text of control/tlspolicy (its File is
// File). Line is 1-based; 0 means the file as a whole.
type SyntaxError = ctlcdb.SyntaxError

// FileError is a system error on one of our files: the delivery cannot
// know its policy and must wait.
type FileError = ctlcdb.FileError

// entry is what a key says: a policy, or the error of the line that should
// have said it.
type entry struct {
	p   Policy // Level, Match and Pins only
	err *SyntaxError
}

// Table is a parsed tlspolicy file: a key (lower-case domain, ".suffix",
// canonical literal, or "" for the default) to its entry.
type Table struct {
	entries map[string]entry
}

// Len returns the number of distinct keys, poisoned ones included.
func (t *Table) Len() int { return len(t.entries) }

// Lookup finds the policy for host, with the keys and the order of
// control/smtproutes (routes.Keys). No matching key gives Found false.
// A key poisoned by a malformed line gives its *SyntaxError.
func (t *Table) Lookup(host string) (Policy, error) {
	return result(ctlcdb.First(t.entries, routes.Keys(host)))
}

func result(m ctlcdb.Match[entry]) (Policy, error) {
	switch {
	case !m.Found:
		return Policy{}, nil
	case m.Value.err != nil:
		return Policy{}, m.Value.err
	}
	p := m.Value.p
	p.Found, p.Key = true, m.Key
	return p, nil
}

// Errors returns the errors of the malformed lines whose domains could be
// read, by line number: each makes the mail of its domain wait.
func (t *Table) Errors() []*SyntaxError {
	var errs []*SyntaxError
	for _, e := range t.entries {
		if e.err != nil {
			errs = append(errs, e.err)
		}
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
	return errs
}

// Parse reads the text of control/tlspolicy. Each line is
//
//	domain ":" level *( blank option )
//
// with the domain as in control/smtproutes; trailing spaces, tabs and CRs
// are stripped, empty lines and lines starting with '#' are skipped
// (qmail-control(5)).
//
// The error is a *SyntaxError for a problem that leaves every lookup in
// doubt: a file too large, a line too long, a line whose domain cannot be
// read. Any other malformed line is kept in the table as its domain's
// entry, and Table.Lookup returns it (Table.Errors lists them).
//
// A domain written twice is an error on the second line: unlike a route,
// a policy quietly overridden by a line further down could lower the
// protection of the mail it decides.
func Parse(text []byte) (*Table, error) {
	t, err := parse(text)
	if err != nil {
		return nil, err
	}
	return t, nil
}

// parse is Parse with a typed error, for package ctlcdb.
func parse(text []byte) (*Table, *SyntaxError) {
	t := &Table{entries: make(map[string]entry)}
	first := make(map[string]int) // the line of each key's first entry
	// Only a domain that cannot be read stops the reading; any other
	// problem of a line is its key's entry.
	err := ctlcdb.ReadLines(File, text, MaxText, MaxLine, func(n int, line string) string {
		key, rest, reason := splitDomain(line)
		if reason != "" {
			return reason
		}
		p, reason := parsePolicy(rest)
		if f, dup := first[key]; dup {
			// The key's first error stands: it is the one to fix.
			if t.entries[key].err == nil {
				if reason == "" {
					reason = fmt.Sprintf("duplicate %s (first on line %d)", describeKey(key), f)
				}
				t.entries[key] = entry{err: &SyntaxError{File: File, Line: n, Reason: reason}}
			}
			return ""
		}
		first[key] = n
		if reason != "" {
			t.entries[key] = entry{err: &SyntaxError{File: File, Line: n, Reason: reason}}
		} else {
			t.entries[key] = entry{p: p}
		}
		return ""
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

func describeKey(key string) string {
	if key == "" {
		return "default (empty domain)"
	}
	return fmt.Sprintf("domain %q", say.Clip(key, 60))
}

// splitDomain reads the domain as control/smtproutes does, then refuses
// what smtproutes lets through but no host can match: blanks and control
// characters, empty labels, and '*', which would silently never match
// although it looks like a wildcard.
func splitDomain(line string) (key, rest, reason string) {
	key, rest, reason = routes.SplitDomain(line)
	if reason != "" || strings.HasPrefix(key, "[") {
		return key, rest, reason
	}
	q := say.Clip(key, 60)
	for i := 0; i < len(key); i++ {
		switch c := key[i]; {
		case c == ' ' || c == '\t':
			return "", "", fmt.Sprintf("blank in domain %q", q)
		case c < 0x20 || c == 0x7f:
			return "", "", fmt.Sprintf("control character 0x%02x in domain %q", c, q)
		}
	}
	switch {
	case strings.HasPrefix(key, "*."):
		return "", "", fmt.Sprintf("wildcard in domain %q (write %q for every name under %s)", q, say.Clip(key[1:], 60), say.Clip(key[2:], 60))
	case strings.Contains(key, "*"):
		return "", "", fmt.Sprintf("'*' in domain %q", q)
	case strings.Contains(key, ".."):
		return "", "", fmt.Sprintf("empty label in domain %q", q)
	}
	return key, rest, ""
}

// parsePolicy parses what follows the domain's ':': the level and the
// options, separated by spaces and tabs. reason says what is wrong.
func parsePolicy(s string) (p Policy, reason string) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != '\t' && (c < 0x20 || c == 0x7f) {
			return p, fmt.Sprintf("control character 0x%02x", c)
		}
	}
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' })
	if len(fields) == 0 {
		return p, fmt.Sprintf("missing level after ':' (%s)", levelList)
	}
	p.Level = fields[0]
	if !slices.Contains(Levels, p.Level) {
		return Policy{}, fmt.Sprintf("unknown level %q (%s)", say.Clip(p.Level, 60), levelList)
	}
	for _, opt := range fields[1:] {
		name, value, hasValue := strings.Cut(opt, "=")
		switch {
		case (name == "match" || name == "pin") && !hasValue:
			return Policy{}, fmt.Sprintf("missing '=' after %q", name)
		case name == "match":
			if p.Level != "verify" {
				return Policy{}, fmt.Sprintf("match= is allowed only with verify, not with %s", p.Level)
			}
			for _, n := range strings.Split(value, ",") {
				m, reason := parseMatchName(n)
				if reason != "" {
					return Policy{}, reason
				}
				p.Match = append(p.Match, m)
			}
		case name == "pin":
			if p.Level != "encrypt" && p.Level != "verify" {
				return Policy{}, fmt.Sprintf("pin= is allowed only with encrypt and verify, not with %s", p.Level)
			}
			for _, h := range strings.Split(value, ",") {
				if !isPin(h) {
					return Policy{}, fmt.Sprintf("bad pin %q (64 hex digits: the SHA-256 of the server's SubjectPublicKeyInfo)", say.Clip(h, 70))
				}
				p.Pins = append(p.Pins, strings.ToLower(h))
			}
		default:
			return Policy{}, fmt.Sprintf("unknown option %q (match=, pin=)", say.Clip(opt, 60))
		}
	}
	return p, ""
}

// parseMatchName checks a match= name: a host name, or ".suffix" for any
// name under suffix (not suffix itself, as with domains). It is
// lower-cased, and a trailing dot (DNS habit) dropped: certificates do not
// have one.
func parseMatchName(n string) (string, string) {
	if n == "" {
		return "", "empty name in match="
	}
	bad := fmt.Sprintf("bad match name %q (a host name, or .domain for every name under domain)", say.Clip(n, 60))
	name := strings.TrimSuffix(n, ".")
	suffix := strings.HasPrefix(name, ".")
	name = strings.TrimPrefix(name, ".")
	if strings.HasPrefix(name, "*.") && !suffix {
		return "", fmt.Sprintf("wildcard match name %q (write %q for every name under %s)", say.Clip(n, 60), say.Clip(name[1:], 60), say.Clip(name[2:], 60))
	}
	if name == "" || len(name) > 253 {
		return "", bad
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return "", bad
		}
		for i := 0; i < len(label); i++ {
			switch c := label[i]; {
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
			default:
				return "", bad
			}
		}
	}
	// ASCII only, checked above: ToLower cannot turn anything into ASCII.
	name = strings.ToLower(name)
	if suffix {
		name = "." + name
	}
	return name, ""
}

func isPin(h string) bool {
	if len(h) != 64 {
		return false
	}
	for i := 0; i < len(h); i++ {
		switch c := h[i]; {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f', c >= 'A' && c <= 'F':
		default:
			return false
		}
	}
	return true
}

// The values of tlspolicy.cdb: a policy as its canonical text,
//
//	level [ " match=" name *( "," name ) ] [ " pin=" hex *( "," hex ) ]
//
// or, for a key poisoned by a malformed line, "!" line " " reason. A level
// never starts with '!'.
func marshal(e entry) []byte {
	if e.err != nil {
		return []byte("!" + strconv.Itoa(e.err.Line) + " " + e.err.Reason)
	}
	s := e.p.Level
	if len(e.p.Match) > 0 {
		s += " match=" + strings.Join(e.p.Match, ",")
	}
	if len(e.p.Pins) > 0 {
		s += " pin=" + strings.Join(e.p.Pins, ",")
	}
	return []byte(s)
}

// unmarshal checks a value as strictly as the parser checks a line, and
// wants it in canonical form: a damaged file can never say what the text
// did not.
func unmarshal(b []byte) (entry, bool) {
	s := string(b)
	if rest, ok := strings.CutPrefix(s, "!"); ok {
		line, reason, ok := strings.Cut(rest, " ")
		n, err := strconv.Atoi(line)
		if !ok || err != nil || n < 1 || strconv.Itoa(n) != line || reason == "" {
			return entry{}, false
		}
		return entry{err: &SyntaxError{File: File, Line: n, Reason: reason}}, true
	}
	p, reason := parsePolicy(s)
	if reason != "" || string(marshal(entry{p: p})) != s {
		return entry{}, false
	}
	return entry{p: p}, true
}

// joinErrors makes one error of a table's syntax errors: the error itself
// when there is one, else errors.Join of them all, in line order.
func joinErrors(errs []*SyntaxError) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	all := make([]error, len(errs))
	for i, e := range errs {
		all[i] = e
	}
	return errors.Join(all...)
}
