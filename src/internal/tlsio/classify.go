package tlsio

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"qmail-remote-go/src/internal/dane"
)

// Reason turns a handshake error into a sentence fragment for the Z report
// ("the certificate is signed by an unknown authority ..."). The cases are
// the ones an administrator acts on differently: add an anchor, fix the
// name or the route, renew a certificate, upgrade the server, look at the
// network.
func Reason(err error, c Config, timeout time.Duration, now time.Time) string {
	s := c.Server
	var (
		daneErr  *dane.Error
		pin      *PinError
		match    *MatchError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		header   tls.RecordHeaderError
	)
	switch {
	// First: a DANE-TA failure wraps crypto/x509's error, which the
	// cases below would describe without saying DANE.
	case errors.As(err, &daneErr):
		return "DANE: " + daneErr.Error()
	case errors.As(err, &pin):
		return pin.Error()
	case errors.As(err, &match):
		return envSafe(match.Error())
	case errors.As(err, &unknown):
		r := "the certificate is signed by an unknown authority"
		if unknown.Cert != nil {
			r += fmt.Sprintf(" (issuer: %s)", envSafe(unknown.Cert.Issuer.String()))
		}
		return r
	case errors.As(err, &hostname):
		return nameMismatch(hostname.Certificate, s)
	case errors.As(err, &invalid):
		return invalidCert(invalid, now)
	case errors.As(err, &header):
		return "the server's reply is not TLS: " + strconv.Quote(string(header.RecordHeader[:]))
	case errors.Is(err, os.ErrDeadlineExceeded):
		return timedOut(timeout)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the server closed the connection"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "the server reset the connection"
	case strings.Contains(err.Error(), "unsupported protocol version"):
		// The server chose a version below our MinVersion. crypto/tls
		// has no type for it; the text is stable since Go 1.0.
		return "no common protocol version (the server offers less than TLS 1.2, which verified TLS requires)"
	}
	if a, ok := remoteAlert(err); ok {
		switch a {
		case 70: // protocol_version, RFC 8446 6.2
			return "no common protocol version (the server refused " + offered(c.strict()) + ")"
		case 40, 71: // handshake_failure, insufficient_security
			return "the server refused the handshake (" + alertName(a) + "): no common cipher suite or key exchange"
		}
		return "the server sent the alert " + strconv.Quote(alertName(a))
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return timedOut(timeout)
	}
	return strings.TrimPrefix(err.Error(), "tls: ")
}

func offered(strict bool) string {
	if strict {
		return "TLS 1.2 and 1.3, the versions verified TLS allows"
	}
	return "every version from TLS 1.0 to 1.3"
}

// remoteAlert finds the alert the server sent. crypto/tls reports it as a
// net.OpError "remote error" around an unexported type whose text is the
// one tls.AlertError has for the same code.
func remoteAlert(err error) (tls.AlertError, bool) {
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "remote error" || oe.Err == nil {
		return 0, false
	}
	text := oe.Err.Error()
	for a := 0; a < 256; a++ {
		if tls.AlertError(a).Error() == text {
			return tls.AlertError(a), true
		}
	}
	return 0, false
}

func alertName(a tls.AlertError) string {
	return strings.TrimPrefix(a.Error(), "tls: ")
}

// nameMismatch says what name was wanted and what the certificate has.
func nameMismatch(c *x509.Certificate, s Server) string {
	want := s.Name
	if c == nil {
		return "the certificate does not match " + want
	}
	var has []string
	for _, n := range c.DNSNames {
		has = append(has, n)
	}
	for _, ip := range c.IPAddresses {
		has = append(has, "["+ip.String()+"]")
	}
	if len(has) == 0 {
		has = append(has, "no name (common name "+strconv.Quote(c.Subject.CommonName)+" is not used)")
	}
	const maxNames = 10
	if len(has) > maxNames {
		has = append(has[:maxNames], fmt.Sprintf("and %d more", len(has)-maxNames))
	}
	kind := "the name"
	if s.Literal.IsValid() {
		kind = "the address"
	}
	return envSafe(fmt.Sprintf("the certificate does not match %s %s: it is for %s", kind, want, strings.Join(has, ", ")))
}

// invalidCert explains a certificate that chains but is not valid.
func invalidCert(e x509.CertificateInvalidError, now time.Time) string {
	which := "the certificate"
	if e.Cert != nil && e.Cert.IsCA {
		which = fmt.Sprintf("the CA certificate %s", envSafe(e.Cert.Subject.String()))
	}
	if e.Reason == x509.Expired && e.Cert != nil {
		if now.Before(e.Cert.NotBefore) {
			return fmt.Sprintf("%s is not valid yet: not before %s", which, e.Cert.NotBefore.UTC().Format(time.RFC3339))
		}
		return fmt.Sprintf("%s expired at %s", which, e.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return strings.TrimPrefix(e.Error(), "x509: ")
}

func timedOut(d time.Duration) string {
	if n := int(d / time.Second); n != 1 {
		return fmt.Sprintf("timed out after %d seconds", n)
	}
	return "timed out after 1 second"
}
