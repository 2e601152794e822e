package smtp

import "strings"

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
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return addr
	}
	local := addr[:at]
	if !needsQuote(local) {
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
