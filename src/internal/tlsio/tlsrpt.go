package tlsio

// The TLS outcome of a session under a policy, for TLS reports (RFC 8460,
// doc/tlsrpt.md): appended to the day's log in the run directory, which
// qmail-remote-tlsrpt turns into reports.

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"strings"
	"time"

	"qmail-remote-go/src/internal/chainenv"
	"qmail-remote-go/src/internal/dane"
	"qmail-remote-go/src/internal/tlsrpt"
)

// ResultType is RFC 8460 4.3's name for what went wrong in a handshake.
func ResultType(err error) string {
	var (
		daneErr  *dane.Error
		match    *MatchError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
	)
	switch {
	case err == nil:
		return tlsrpt.Success
	case errors.As(err, &daneErr):
		// None of the TLSA records matched, or the DANE-TA chain
		// did not verify.
		return tlsrpt.TLSAInvalid
	case errors.As(err, &match), errors.As(err, &hostname):
		return tlsrpt.CertificateHostMismatch
	case errors.As(err, &unknown):
		return tlsrpt.CertificateNotTrusted
	case errors.As(err, &invalid):
		if invalid.Reason == x509.Expired {
			return tlsrpt.CertificateExpired
		}
		return tlsrpt.CertificateNotTrusted
	}
	return tlsrpt.ValidationFailure
}

// reportPolicy is the policy a session is reported under, from the
// environment: the destination's MTA-STS policy (QMAILREMOTE_STS), or at
// level dane the host's TLSA records. ok is false when none applies:
// nothing is recorded then.
func (c *Config) reportPolicy() (typ string, strs []string, ok bool) {
	if c.Level == chainenv.LevelDANE && len(c.TLSA) > 0 {
		for _, r := range c.TLSA {
			strs = append(strs, r.String())
		}
		return tlsrpt.PolicyTLSA, strs, true
	}
	switch os.Getenv(chainenv.STS) {
	case "enforce", "testing":
		return tlsrpt.PolicySTS, strings.Split(os.Getenv(chainenv.STSPolicy), "\n"), true
	}
	return "", nil, false
}

// Report appends the outcome of a session with the server at ip (from
// the local address QMAILREMOTE_TCPLOCALIP) under
// its policy, if one applies: result is an RFC 8460 result type
// (ResultType, or tlsrpt.StartTLSNotSupported), why the text the report
// gives. Under an MTA-STS policy in testing mode the session went on
// unverified; cs (nil if there was no handshake) is then checked as
// enforce would have checked it, and a failure recorded, not acted on.
// A log that cannot be written never touches the delivery.
func (c *Config) Report(ip string, cs *tls.ConnectionState, result, why string) {
	typ, strs, ok := c.reportPolicy()
	if !ok {
		return
	}
	if result == tlsrpt.Success && typ == tlsrpt.PolicySTS && cs != nil && c.AuthBy() == "" &&
		c.Anchors != nil && len(cs.PeerCertificates) > 0 {
		if err := c.verifyPKIX(cs.PeerCertificates); err != nil {
			result, why = ResultType(err), Reason(err, *c, 0, time.Now())
		}
	}
	r := tlsrpt.Record{
		Domain:        strings.TrimSuffix(os.Getenv(chainenv.Host), "."),
		PolicyType:    typ,
		PolicyStrings: strs,
		MXHost:        c.Server.Name,
		IP:            ip,
		SendingIP:     os.Getenv(chainenv.TCPLocalIP),
		Result:        result,
		Reason:        why,
	}
	if result == tlsrpt.Success {
		r.Reason = ""
	}
	// Unset only when the TLS stage runs by hand, outside a delivery:
	// nothing to report then.
	run := os.Getenv(chainenv.QmailRun)
	if run == "" || r.Domain == "" {
		return
	}
	tlsrpt.Append(tlsrpt.LogDir(run), r) // best effort: see above
}
