// Package dane authenticates an SMTP server's certificate chain against
// the TLSA records of its MX host, as RFC 7672 (SMTP security via
// opportunistic DANE TLS) says, with RFC 7671 and RFC 6698 for the
// details. It also carries the records between the programs of the chain
// (EncodeRecords, ParseRecords) and checks administrator key pins
// (MatchPins).
//
// Only DANE-TA(2) and DANE-EE(3) are used: RFC 7672 3.1.3 tells SMTP
// clients to treat PKIX-TA(0) and PKIX-EE(1) as unusable, since there is
// no agreed set of public CAs for MTA-to-MTA mail.
package dane

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Record is one TLSA record (RFC 6698 2.1).
type Record struct {
	Usage, Selector, MatchingType uint8
	Data                          []byte
}

// Certificate usages (RFC 6698 2.1.1, RFC 7218 2.1).
const (
	PKIXTA = 0
	PKIXEE = 1
	DANETA = 2
	DANEEE = 3
)

// Selectors (RFC 6698 2.1.2) and matching types (RFC 6698 2.1.3).
const (
	SelectorCert = 0 // the full certificate, DER
	SelectorSPKI = 1 // the SubjectPublicKeyInfo, DER

	MatchExact  = 0
	MatchSHA256 = 1
	MatchSHA512 = 2
)

// Methods, for Result.Method.
const (
	MethodEE = "DANE-EE"
	MethodTA = "DANE-TA"
)

// String gives the record as "U S M hex", like a zone file but with
// lowercase hex in one piece.
func (r Record) String() string {
	return fmt.Sprintf("%d %d %d %x", r.Usage, r.Selector, r.MatchingType, r.Data)
}

// Usable says whether an SMTP client may use the record (RFC 7672 3.1.3):
// DANE-TA or DANE-EE, a known selector, and a known matching type whose
// data has the right length (a digest of the wrong length is malformed,
// and malformed records are unusable). Exact data must not be empty.
func (r Record) Usable() bool {
	if r.Usage != DANETA && r.Usage != DANEEE {
		return false
	}
	if r.Selector != SelectorCert && r.Selector != SelectorSPKI {
		return false
	}
	switch r.MatchingType {
	case MatchExact:
		return len(r.Data) > 0
	case MatchSHA256:
		return len(r.Data) == sha256.Size
	case MatchSHA512:
		return len(r.Data) == sha512.Size
	}
	return false
}

// Matches says whether the certificate matches the record's selector,
// matching type and data, whatever the usage.
func (r Record) Matches(c *x509.Certificate) bool {
	if c == nil {
		return false
	}
	var b []byte
	switch r.Selector {
	case SelectorCert:
		b = c.Raw
	case SelectorSPKI:
		b = c.RawSubjectPublicKeyInfo
	default:
		return false
	}
	switch r.MatchingType {
	case MatchExact:
		return len(r.Data) > 0 && bytes.Equal(b, r.Data)
	case MatchSHA256:
		sum := sha256.Sum256(b)
		return bytes.Equal(sum[:], r.Data)
	case MatchSHA512:
		sum := sha512.Sum512(b)
		return bytes.Equal(sum[:], r.Data)
	}
	return false
}

// EncodeRecords writes records in the form the programs of the chain pass
// each other in the environment: "U:S:M:hex" joined by commas, hex in
// lowercase. No records is the empty string.
func EncodeRecords(rs []Record) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("%d:%d:%d:%x", r.Usage, r.Selector, r.MatchingType, r.Data)
	}
	return strings.Join(parts, ",")
}

// ParseRecords reads what EncodeRecords wrote (hex in either case). It
// keeps records that are well formed but unusable, so that a caller can
// report them; anything else is an error naming the record (counted from
// 1) and the field. The data may be empty, as EncodeRecords writes a
// record with no data that way (such a record is unusable).
func ParseRecords(s string) ([]Record, error) {
	if s == "" {
		return nil, nil
	}
	var rs []Record
	for i, text := range strings.Split(s, ",") {
		r, err := parseRecord(text)
		if err != nil {
			return nil, fmt.Errorf("TLSA record %d: %w", i+1, err)
		}
		rs = append(rs, r)
	}
	return rs, nil
}

func parseRecord(text string) (Record, error) {
	if text == "" {
		return Record{}, errors.New("is empty")
	}
	f := strings.Split(text, ":")
	if len(f) != 4 {
		return Record{}, fmt.Errorf("%s has %d fields, not 4 (usage:selector:matching:data)", quote(text), len(f))
	}
	var r Record
	field := [...]string{"usage", "selector", "matching type"}
	for i, p := range []*uint8{&r.Usage, &r.Selector, &r.MatchingType} {
		// Base 10 takes digits only: no sign, no space, no "_".
		n, err := strconv.ParseUint(f[i], 10, 8)
		if err != nil {
			return Record{}, fmt.Errorf("%s %s is not a number from 0 to 255", field[i], quote(f[i]))
		}
		*p = uint8(n)
	}
	data := f[3]
	for i := 0; i < len(data); i++ {
		if !isHex(data[i]) {
			return Record{}, fmt.Errorf("data has %s at offset %d, not a hex digit", quote(data[i:i+1]), i)
		}
	}
	if len(data)%2 != 0 {
		return Record{}, fmt.Errorf("data has an odd number of hex digits (%d)", len(data))
	}
	r.Data, _ = hex.DecodeString(data)
	return r, nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// quote quotes s for an error message, cut short if long.
func quote(s string) string {
	const max = 40
	if len(s) > max {
		return strconv.Quote(s[:max]) + "..."
	}
	return strconv.Quote(s)
}

// Result says how Verify authenticated the server.
type Result struct {
	Record Record // the record that matched
	Method string // MethodEE or MethodTA
	Depth  int    // index in the chain of the certificate that matched the record
}

// ErrNoUsable is Verify's answer when no record is usable: RFC 7672 2.2
// says to deliver encrypted but unauthenticated then.
var ErrNoUsable = errors.New("no usable TLSA record (only PKIX-TA, PKIX-EE or unknown parameters)")

// Reasons of an *Error, short words for a probe or a report to classify.
const (
	ReasonNoMatch       = "no-match"       // no usable record matches any certificate of the chain
	ReasonTAChain       = "ta-chain"       // a DANE-TA record matched, but the leaf does not chain to it
	ReasonNameMismatch  = "name-mismatch"  // the chain verified, but the leaf is not for any reference name
	ReasonNoCertificate = "no-certificate" // the server sent no certificate
)

// Error is why Verify did not authenticate the server. Error() is for
// the administrator reading the mail log.
type Error struct {
	Reason string // one of the Reason constants
	// Record and Depth say, for ReasonTAChain and ReasonNameMismatch,
	// which DANE-TA record matched which certificate of the chain.
	Record Record
	Depth  int
	Err    error // for ReasonTAChain, the error of crypto/x509
	msg    string
}

func (e *Error) Error() string {
	if e.msg == "" {
		return "DANE: " + e.Reason // an Error made elsewhere than here
	}
	return e.msg
}

// Unwrap gives the crypto/x509 error, if any.
func (e *Error) Unwrap() error { return e.Err }

func newError(reason string, format string, a ...any) *Error {
	return &Error{Reason: reason, msg: printable(fmt.Sprintf(format, a...))}
}

// printable keeps what came from the server's certificate (names, and
// subjects inside crypto/x509 errors) from breaking the log line.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || unicode.IsPrint(r) {
			return r
		}
		return '?'
	}, s)
}

// rank orders failures by how far authentication got, so that Verify
// reports the most telling one.
func rank(e *Error) int {
	switch e.Reason {
	case ReasonTAChain:
		return 1
	case ReasonNameMismatch:
		return 2
	}
	return 0
}

// Verify authenticates a server's certificate chain, as sent (certs[0]
// the leaf), against the usable records, with names the reference
// identifiers for DANE-TA name checks (RFC 7672 3.2.2: the TLSA base
// domain first, then the MX host name as found in the MX record). The
// first usable record that authenticates the chain wins.
//
// DANE-EE(3) needs only the leaf to match: no name, no dates, no chain
// (RFC 7672 3.1.1). DANE-TA(2) needs a certificate of the chain (RFC 7672
// 3.1.2: servers must send the trust anchor) to match, the leaf to chain
// to it as of now, and the leaf to carry one of names (RFC 7672 3.2.3).
//
// Without a usable record the error is ErrNoUsable; any other error is an
// *Error.
func Verify(certs []*x509.Certificate, recs []Record, names []string, now time.Time) (Result, error) {
	var usable []Record
	for _, r := range recs {
		if r.Usable() {
			usable = append(usable, r)
		}
	}
	if len(usable) == 0 {
		return Result{}, ErrNoUsable
	}
	if len(certs) == 0 || certs[0] == nil {
		return Result{}, newError(ReasonNoCertificate, "the server presented no certificate")
	}
	var best *Error
	for _, r := range usable {
		switch r.Usage {
		case DANEEE:
			if r.Matches(certs[0]) {
				return Result{Record: r, Method: MethodEE, Depth: 0}, nil
			}
		case DANETA:
			// Any certificate of the chain may be the trust anchor:
			// usually one of certs[1:], but a self-signed leaf can
			// be its own.
			for i, c := range certs {
				if !r.Matches(c) {
					continue
				}
				err := verifyTA(certs, i, names, now)
				if err == nil {
					return Result{Record: r, Method: MethodTA, Depth: i}, nil
				}
				err.Record, err.Depth = r, i
				if best == nil || rank(err) > rank(best) {
					best = err
				}
			}
		}
	}
	if best != nil {
		return Result{}, best
	}
	n := "certificates"
	if len(certs) == 1 {
		n = "certificate"
	}
	return Result{}, newError(ReasonNoMatch, "no TLSA record matches the server's certificate chain (%d %s; leaf SPKI SHA-256 %s)",
		len(certs), n, SPKISHA256(certs[0]))
}

// verifyTA checks that the leaf chains to certs[ta], the trust anchor,
// and carries one of names. With the leaf as its own trust anchor,
// x509.Verify finds it among the roots and checks only its dates.
func verifyTA(certs []*x509.Certificate, ta int, names []string, now time.Time) *Error {
	roots := x509.NewCertPool()
	roots.AddCert(certs[ta])
	inter := x509.NewCertPool()
	for i, c := range certs {
		if i != 0 && i != ta && c != nil {
			inter.AddCert(c)
		}
	}
	_, err := certs[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		// RFC 7672 does not ask for any extended key usage.
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		e := newError(ReasonTAChain, "the DANE-TA chain does not verify: %v", err)
		e.Err = err
		return e
	}
	return checkName(certs[0], names)
}

// checkName matches the leaf against the reference identifiers, with
// the wildcard rules of crypto/x509 (RFC 7672 3.2.3, RFC 6125 6.4.3).
func checkName(leaf *x509.Certificate, names []string) *Error {
	var tried []string
	for _, n := range names {
		n = strings.TrimSuffix(n, ".")
		if n == "" {
			continue
		}
		if leaf.VerifyHostname(n) == nil {
			return nil
		}
		tried = append(tried, n)
	}
	has := "it has no DNS names"
	if len(leaf.DNSNames) > 0 {
		shown := leaf.DNSNames
		if len(shown) > 4 {
			shown = append(shown[:4:4], "...")
		}
		has = "its names: " + strings.Join(shown, ", ")
	}
	switch len(tried) {
	case 0:
		return newError(ReasonNameMismatch, "the certificate matches the DANE-TA record but no name was given to check it against (%s)", has)
	case 1:
		return newError(ReasonNameMismatch, "the certificate matches the DANE-TA record but not the name %s (%s)", tried[0], has)
	}
	return newError(ReasonNameMismatch, "the certificate matches the DANE-TA record but none of the names %s (%s)", strings.Join(tried, ", "), has)
}

// SPKISHA256 returns the lowercase hex SHA-256 of the certificate's
// SubjectPublicKeyInfo: the data of a "3 1 1" record for it.
func SPKISHA256(cert *x509.Certificate) string {
	if cert == nil {
		return ""
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

// MatchPins reports whether the SHA-256 of the leaf's
// SubjectPublicKeyInfo is one of pins (hex, 64 digits).
func MatchPins(leaf *x509.Certificate, pins []string) bool {
	if leaf == nil {
		return false
	}
	h := SPKISHA256(leaf)
	for _, p := range pins {
		if strings.EqualFold(p, h) {
			return true
		}
	}
	return false
}
