// Package mtasts implements the sending side of SMTP MTA Strict Transport
// Security (RFC 8461): the _mta-sts TXT record (ParseTXT), the policy
// (Parse, Policy.Matches), a policy cache shared by the concurrent
// qmail-remote processes (Cache), fetching policies over HTTPS
// (HTTPSFetcher), and the rules that decide which policy a delivery
// applies (Obtain). Errors are classified for TLS reporting (RFC 8460):
// ErrFetch, ErrInvalid and ErrWebPKI.
package mtasts

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"qmail-remote-go/src/internal/ascii"
)

// Policy modes (RFC 8461 5).
const (
	ModeEnforce = "enforce" // deliver only to a matching MX host with a valid certificate
	ModeTesting = "testing" // report failures, deliver anyway
	ModeNone    = "none"    // the domain has withdrawn its policy
)

// MaxPolicy bounds a policy's text: RFC 8461 3.3 lets senders refuse
// larger ones, and suggests this size.
const MaxPolicy = 64 << 10

// MaxAgeLimit is the largest max_age honored, in seconds (about a year,
// RFC 8461 3.2); larger values are lowered to it.
const MaxAgeLimit = 31557600

// MaxLine bounds one line of a policy, without its line ending. The
// longest field RFC 8461 defines, an mx pattern, needs some 260 bytes;
// the rest of the margin is for extension fields.
const MaxLine = 1024

// Policy is an MTA-STS policy (RFC 8461 3.2).
type Policy struct {
	Mode   string   // ModeEnforce, ModeTesting or ModeNone
	MX     []string // the mx patterns in their order, lower case, without a trailing dot; "*.example.com" is a wildcard
	MaxAge int64    // seconds to cache the policy, at most MaxAgeLimit
	Text   string   // the policy as fetched, for reports (RFC 8460 4.4)
}

// Parse reads a policy (RFC 8461 3.2): "key: value" lines ending in CRLF
// or LF. version (STSv1), mode and max_age are required, and mx at least
// once unless the mode is none. Of repeated keys other than mx the first
// counts (RFC 8461 3.2); unknown keys are ignored, as extensions. Blank
// lines and blanks around keys and values are tolerated. An error names
// the line.
func Parse(text []byte) (Policy, error) {
	if len(text) > MaxPolicy {
		return Policy{}, fmt.Errorf("policy is %d bytes, more than the limit of %d", len(text), MaxPolicy)
	}
	p := Policy{Text: string(text)}
	var version, mode, maxAge bool
	for n, line := range strings.Split(p.Text, "\n") {
		n++
		line = strings.TrimSuffix(line, "\r")
		if len(line) > MaxLine {
			return Policy{}, fmt.Errorf("line %d: longer than %d bytes", n, MaxLine)
		}
		line = strings.Trim(line, " \t")
		if line == "" {
			continue
		}
		for i := 0; i < len(line); i++ {
			if b := line[i]; b < ' ' && b != '\t' || b == 0x7f {
				return Policy{}, fmt.Errorf("line %d: control character %q", n, b)
			}
		}
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			return Policy{}, fmt.Errorf("line %d: %.80q is not \"key: value\"", n, line)
		}
		key = strings.TrimRight(key, " \t")
		value = strings.Trim(value, " \t")
		switch key {
		case "version":
			if version {
				continue
			}
			if value != "STSv1" {
				return Policy{}, fmt.Errorf("line %d: version %.40q, not STSv1", n, value)
			}
			version = true
		case "mode":
			if mode {
				continue
			}
			if value != ModeEnforce && value != ModeTesting && value != ModeNone {
				return Policy{}, fmt.Errorf("line %d: mode %.40q, not enforce, testing or none", n, value)
			}
			p.Mode, mode = value, true
		case "max_age":
			if maxAge {
				continue
			}
			age, err := parseMaxAge(value)
			if err != nil {
				return Policy{}, fmt.Errorf("line %d: %w", n, err)
			}
			p.MaxAge, maxAge = age, true
		case "mx":
			pattern, err := parsePattern(value)
			if err != nil {
				return Policy{}, fmt.Errorf("line %d: %w", n, err)
			}
			p.MX = append(p.MX, pattern)
		case "":
			return Policy{}, fmt.Errorf("line %d: %.80q has no key", n, line)
		}
	}
	switch {
	case !version:
		return Policy{}, errors.New("no version line (version: STSv1)")
	case !mode:
		return Policy{}, errors.New("no mode line (mode: enforce, testing or none)")
	case !maxAge:
		return Policy{}, errors.New("no max_age line")
	case len(p.MX) == 0 && p.Mode != ModeNone:
		return Policy{}, fmt.Errorf("no mx line in a policy of mode %s", p.Mode)
	}
	return p, nil
}

// parseMaxAge reads 1*10DIGIT, lowered to MaxAgeLimit.
func parseMaxAge(value string) (int64, error) {
	if value == "" || len(value) > 10 || strings.Trim(value, "0123456789") != "" {
		return 0, fmt.Errorf("max_age %.40q is not 1 to 10 digits", value)
	}
	n, err := strconv.ParseInt(value, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("max_age %q: %w", value, err)
	}
	return min(n, MaxAgeLimit), nil
}

// parsePattern reads an mx pattern, ["*."] Domain (RFC 8461 3.2, RFC 5321
// 4.1.2), and returns it in lower case without a trailing dot.
func parsePattern(value string) (string, error) {
	name := ascii.Lower(strings.TrimSuffix(value, "."))
	if err := checkDomain(strings.TrimPrefix(name, "*.")); err != nil {
		return "", fmt.Errorf("mx %.80q: %w", value, err)
	}
	return name, nil
}

// checkDomain checks a domain of RFC 5321 4.1.2: dot-separated labels of
// letters, digits and inner hyphens, 63 bytes a label, 253 in all.
func checkDomain(name string) error {
	if name == "" {
		return errors.New("empty domain")
	}
	if len(name) > 253 {
		return errors.New("domain longer than 253 bytes")
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" {
			return errors.New("empty label")
		}
		if len(label) > 63 {
			return fmt.Errorf("label %.20q... longer than 63 bytes", label)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("label %q starts or ends with '-'", label)
		}
		for i := 0; i < len(label); i++ {
			if b := label[i]; !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-') {
				return fmt.Errorf("label %q has %q, not a letter, digit or '-'", label, b)
			}
		}
	}
	return nil
}

// Matches says whether an MX host name matches one of the policy's mx
// patterns (RFC 8461 4.1): equal ignoring ASCII case and a trailing dot,
// or, for "*.example.com", exactly one more label in front of
// example.com.
func (p Policy) Matches(host string) bool {
	h := ascii.Lower(strings.TrimSuffix(host, "."))
	if h == "" {
		return false
	}
	for _, pattern := range p.MX {
		pattern = ascii.Lower(strings.TrimSuffix(pattern, "."))
		if suffix, ok := strings.CutPrefix(pattern, "*."); ok {
			first, rest, ok := strings.Cut(h, ".")
			if ok && first != "" && rest == suffix {
				return true
			}
		} else if h == pattern {
			return true
		}
	}
	return false
}

// Strings returns the policy's lines for the "policy-string" of a TLS
// report (RFC 8460 4.4): each line that is not blank, without its line
// ending.
func (p Policy) Strings() []string {
	var lines []string
	for _, line := range strings.Split(p.Text, "\n") {
		line = strings.TrimSuffix(line, "\r")
		if strings.Trim(line, " \t") != "" {
			lines = append(lines, line)
		}
	}
	return lines
}
