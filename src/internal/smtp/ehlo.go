package smtp

import "strings"

// Extensions is the service extension list of an EHLO reply (RFC 5321
// 4.1.1.1): keywords, each with its parameters. The zero value has none
// (a HELO session, or an EHLO that failed).
type Extensions struct {
	params map[string][]string // upper-case keyword -> its parameters
}

// ParseEHLO reads the extensions out of a reply to EHLO:
//
//	ehlo-ok-rsp  = ( "250" SP Domain [ SP ehlo-greet ] CRLF )
//	             / ( "250-" Domain [ SP ehlo-greet ] CRLF
//	                 *( "250-" ehlo-line CRLF )
//	                 "250" SP ehlo-line CRLF )
//	ehlo-line    = ehlo-keyword *( SP ehlo-param )
//	ehlo-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
//	ehlo-param   = 1*(%d33-126)
//
// The first line is the server's name and greeting, never an extension.
// Keywords are case-insensitive. A line that is not an ehlo-line (an old
// "AUTH=LOGIN", 8-bit or control bytes, an empty line) is skipped rather
// than failing the whole list: the extensions we use must be well formed,
// the others are none of our business. Parameters may be separated by
// more than one space or by tabs, as some servers do. When a keyword comes
// twice, the first line counts. A reply that is not 2xx has no extensions.
func ParseEHLO(r Reply) Extensions {
	var e Extensions
	if r.Class() != 2 {
		return e
	}
	lines := r.Lines()
	for _, l := range lines[1:] {
		if len(l) <= 4 {
			continue // "250" or "250-": nothing after the code
		}
		f := strings.FieldsFunc(l[4:], func(c rune) bool { return c == ' ' || c == '\t' })
		if len(f) == 0 || !isKeyword(f[0]) {
			continue
		}
		ok := true
		for _, p := range f[1:] {
			if !isParam(p) {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		kw := strings.ToUpper(f[0])
		if _, dup := e.params[kw]; dup {
			continue
		}
		if e.params == nil {
			e.params = make(map[string][]string)
		}
		e.params[kw] = append([]string{}, f[1:]...)
	}
	return e
}

func isKeyword(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '-') {
			return false
		}
	}
	return s != ""
}

func isParam(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 33 || s[i] > 126 {
			return false
		}
	}
	return s != ""
}

// Has says whether the server offers the extension keyword (any case).
func (e Extensions) Has(keyword string) bool {
	_, ok := e.params[strings.ToUpper(keyword)]
	return ok
}

// Params returns the parameters of keyword, nil when it has none or is not
// offered.
func (e Extensions) Params(keyword string) []string {
	p := e.params[strings.ToUpper(keyword)]
	if len(p) == 0 {
		return nil
	}
	return append([]string(nil), p...)
}

// Param returns the parameters of keyword joined by single spaces ("" when
// it has none or is not offered): "10240000" for "250-SIZE 10240000".
func (e Extensions) Param(keyword string) string {
	return strings.Join(e.params[strings.ToUpper(keyword)], " ")
}

// Keywords returns the offered keywords, upper case, in no particular
// order.
func (e Extensions) Keywords() []string {
	out := make([]string, 0, len(e.params))
	for k := range e.params {
		out = append(out, k)
	}
	return out
}
