package tlsrpt

import (
	"errors"
	"fmt"
	"strings"
)

// ErrNoRecord says that a domain publishes no TLSRPT record: it wants no
// reports.
var ErrNoRecord = errors.New("no TLSRPT record")

// Version starts every TLSRPT record (RFC 8460 3, case-sensitive).
const Version = "v=TLSRPTv1"

// ParseRUA reads the TXT records of _smtp._tls.DOMAIN (each record's
// strings already joined) and returns where the domain wants its
// reports: the rua URIs, mailto: and https: only, in the record's order.
//
// As RFC 8460 3 says, records that do not start with "v=TLSRPTv1" are
// not ours and are ignored (so another version is no record at all),
// and more than one of ours is an error, since we could not tell which
// the domain means. Blanks around ";", "," and "=" are tolerated.
func ParseRUA(records []string) ([]string, error) {
	var rec string
	n := 0
	for _, r := range records {
		r = strings.TrimLeft(r, " \t")
		rest, ok := strings.CutPrefix(r, Version)
		if !ok || (rest != "" && rest[0] != ';' && rest[0] != ' ' && rest[0] != '\t') {
			continue
		}
		n++
		rec = rest
	}
	switch {
	case n == 0:
		return nil, ErrNoRecord
	case n > 1:
		return nil, fmt.Errorf("%d TLSRPT records, where there must be one", n)
	}
	var rua []string
	seen := false
	for field := range strings.SplitSeq(rec, ";") {
		field = strings.TrimSpace(field)
		if field == "" {
			continue
		}
		k, v, ok := strings.Cut(field, "=")
		if !ok {
			return nil, fmt.Errorf("the TLSRPT record has a field without '=': %q", clip(field, 60))
		}
		// Other fields are extensions (RFC 8460 3: tlsrpt-extension),
		// which we do not know and may skip.
		if strings.TrimSpace(k) != "rua" {
			continue
		}
		if seen {
			return nil, errors.New("the TLSRPT record has two rua fields")
		}
		seen = true
		for u := range strings.SplitSeq(v, ",") {
			u = strings.TrimSpace(u)
			scheme, rest, ok := strings.Cut(u, ":")
			if !ok || rest == "" {
				continue // "rua=https": no URI at all
			}
			// Schemes are case-insensitive (RFC 3986 3.1): the URI is
			// returned with its scheme in lower case, as its users
			// compare it.
			switch scheme = strings.ToLower(scheme); {
			case scheme == "mailto":
				rua = append(rua, scheme+":"+rest)
			case scheme == "https" && strings.HasPrefix(rest, "//") && len(rest) > 2:
				rua = append(rua, scheme+":"+rest)
			}
			// Any other scheme is none this sender knows how to use
			// (RFC 8460 defines only these two): skipped.
		}
	}
	if !seen {
		return nil, errors.New("the TLSRPT record has no rua field")
	}
	if len(rua) == 0 {
		return nil, errors.New("the TLSRPT record's rua has no mailto: or https: URI")
	}
	return rua, nil
}
