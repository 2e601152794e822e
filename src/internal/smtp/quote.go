package smtp

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// atom holds the bytes a local part may have without quoting: RFC 5322
// atext plus '.', the set of stock qmail's quote.c.
var atom = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-./=?^_`{|}~" {
		t[c] = true
	}
	return
}()

// QuoteAddress returns an envelope address as it goes between the angle
// brackets of MAIL FROM and RCPT TO, the way stock qmail-remote's
// addrmangle and quote.c do it: the address is split at its last '@' and
// only the local part may be quoted (RFC 5321 4.1.2 Quoted-string), when it
// is empty, has a byte outside the atom set (any byte >= 128 included),
// starts or ends with '.', or has "..". In quotes, '"', '\\', CR and LF get
// a backslash. The domain goes as it is. An address without '@' (the empty
// bounce sender, "postmaster") goes as it is; "#@[]" (the double-bounce
// sender) needs no quoting.
//
// A CR or LF stays a CR or LF after its backslash, as in stock: the caller
// must refuse such an address rather than put it in a command line.
func QuoteAddress(addr string) string {
	return quoteAddress(addr, needsQuote)
}

// QuoteAddressUTF8 is QuoteAddress for a transaction with the SMTPUTF8
// parameter (RFC 6531 3.3: atext and qtextSMTP take UTF8-non-ascii): a
// non-ASCII character of a valid UTF-8 local part no longer needs quotes,
// so "jörg@example.test" goes as it is. Everything else needs them as in
// QuoteAddress: an ASCII byte outside the atom set (a space, '"', '\'...),
// an empty local part, a leading or trailing '.', "..", and bytes that are
// not valid UTF-8 (which SMTPUTF8 does not allow unquoted). Inside the
// quotes UTF-8 stays as it is. The caller uses this only when the server
// offers SMTPUTF8 and the address is valid UTF-8.
func QuoteAddressUTF8(addr string) string {
	return quoteAddress(addr, needsQuoteUTF8)
}

func quoteAddress(addr string, needs func(string) bool) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return addr
	}
	local := addr[:at]
	if !needs(local) {
		return addr
	}
	var b strings.Builder
	b.Grow(len(addr) + 8)
	b.WriteByte('"')
	for i := 0; i < len(local); i++ {
		switch c := local[i]; c {
		case '"', '\\', '\r', '\n':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	b.WriteString(addr[at:])
	return b.String()
}

func needsQuote(local string) bool {
	if local == "" {
		return true
	}
	for i := 0; i < len(local); i++ {
		if c := local[i]; c >= 128 || !atom[c] {
			return true
		}
	}
	return local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, "..")
}

func needsQuoteUTF8(local string) bool {
	if local == "" {
		return true
	}
	for i := 0; i < len(local); {
		c := local[i]
		if c < 128 {
			if !atom[c] {
				return true
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(local[i:])
		if r == utf8.RuneError && n <= 1 {
			return true // not UTF-8
		}
		i += n
	}
	return local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, "..")
}

// CheckDomain says whether the domain part of an envelope address (what
// follows its last '@') can go between the angle brackets of MAIL FROM or
// RCPT TO as it is. QuoteAddress quotes only local parts, as stock does,
// so a domain part holding '>' and a space would end the path and add
// parameters of the sender's choosing ("MAIL FROM:<x@y.test> AUTH=<>>").
// Allowed: an address literal, '[' then letters, digits, '.', ':' and '-'
// then ']' (IPv4, "IPv6:..." and tagged literals of RFC 5321 4.1.3;
// "#@[]", the double-bounce sender, is one; RFC 5321 would let a tagged
// literal hold any printable byte, '"' among them, which no real literal
// has and a naive parser could take for the start of a quoted string),
// or letters, digits, '-', '.', '_' (names real servers use) and bytes >=
// 128 (U-labels, RFC 6531). An empty domain part has nothing wrong in
// it. An address without '@' ("postmaster", the empty bounce sender) has
// no domain part, and QuoteAddress sends it as it is, as stock does: it
// may hold only atom bytes (letters, digits, "!#$%&'*+-./=?^_`{|}~") and
// bytes >= 128, else it too could end the path early. The error says
// what is wrong, for the report.
func CheckDomain(addr string) error {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		for i := 0; i < len(addr); i++ {
			if c := addr[i]; c < 0x80 && !atom[c] {
				return fmt.Errorf("it has no '@' and holds %q, which cannot go unquoted", c)
			}
		}
		return nil
	}
	d := addr[at+1:]
	if strings.HasPrefix(d, "[") {
		if len(d) < 2 || d[len(d)-1] != ']' {
			return fmt.Errorf("its domain part %q is an address literal without its closing ']'", clipDomain(d))
		}
		for i := 1; i < len(d)-1; i++ {
			if c := d[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == ':' || c == '-') {
				return fmt.Errorf("its domain part %q holds %q, which no address literal may hold", clipDomain(d), c)
			}
		}
		return nil
	}
	for i := 0; i < len(d); i++ {
		c := d[i]
		if c >= 0x80 || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' {
			continue
		}
		return fmt.Errorf("its domain part %q holds %q, which no domain may hold", clipDomain(d), c)
	}
	return nil
}

func clipDomain(d string) string {
	if len(d) > 100 {
		return d[:100] + "..."
	}
	return d
}
