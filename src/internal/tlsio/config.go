package tlsio

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"qmail-remote-go/src/internal/addrlit"
	"qmail-remote-go/src/internal/chainenv"
	"qmail-remote-go/src/internal/dane"
	"qmail-remote-go/src/internal/regular"
)

// Server is the server we expect at the other end.
type Server struct {
	// Name is QMAILREMOTE_MXNAME: a host name, or an address literal.
	Name string
	// Literal is the address when Name is a literal ("[192.0.2.7]").
	Literal netip.Addr
}

// ParseServer reads an MX name: a host name, or an address literal in
// brackets.
func ParseServer(name string) (Server, error) {
	s := Server{Name: name}
	if name == "" {
		return s, fmt.Errorf("is empty")
	}
	if addrlit.IsLiteral(name) {
		a, ok := addrlit.Parse(name)
		if !ok {
			return s, fmt.Errorf("holds %q, which is not an address literal", name)
		}
		s.Literal = a
		return s, nil
	}
	// The name goes into the ClientHello and into reports: no spaces,
	// no control bytes, and the length DNS allows (RFC 1035 2.3.4).
	if len(name) > 253 || strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return s, fmt.Errorf("holds %q, which is not a host name", name)
	}
	return s, nil
}

// SNI is the server name sent in the ClientHello: the MX name, none for an
// address literal (RFC 6066 3: "Literal IPv4 and IPv6 addresses are not
// permitted in HostName").
func (s Server) SNI() string {
	if s.Literal.IsValid() {
		return ""
	}
	return strings.TrimSuffix(s.Name, ".")
}

// verifyName is what the certificate must match: the host name, or the
// address, which crypto/tls checks against the IP SANs (and, being an IP,
// never puts into the SNI extension).
func (s Server) verifyName() string {
	if s.Literal.IsValid() {
		return s.Literal.String()
	}
	return s.SNI()
}

// Config is what the handshake needs.
type Config struct {
	Server     Server
	Strictness int              // 0, 1 or 2
	Anchors    *Anchors         // PKIX only
	ClientCert *tls.Certificate // nil: none

	// Level is control/tlspolicy's for this server (chainenv.Level*, never
	// dane-only); empty when tlsstrictness decides (ReadPolicy).
	Level     string
	TLSA      []dane.Record // level dane: the server's TLSA records
	TLSANames []string      // level dane: reference names, the TLSA base domain first
	Match     []string      // level verify: names to match instead of the MX name; ".suffix" for any name under it
	Pins      []string      // levels encrypt and verify: SHA-256 of the keys allowed, hex

	// stsTesting: the destination's MTA-STS policy is in testing mode
	// (QMAILREMOTE_STS): the session is not verified by it, but the TLS
	// reports say whether it would have been (Report), for which the
	// anchors are loaded.
	stsTesting bool

	// authBy is how the last handshake authenticated the server, set
	// by verify: "" for not at all.
	authBy *string
}

// PKIX says whether the server's chain is verified against the trust
// anchors: level verify, or tlsstrictness 2 when no level is given.
func (c *Config) PKIX() bool {
	return c.Level == chainenv.LevelVerify || c.Level == "" && c.Strictness == 2
}

// strict says whether the handshake is held to the rules of verified TLS
// (TLS 1.2 at least, our own verification).
func (c *Config) strict() bool { return c.PKIX() || c.Level == chainenv.LevelDANE }

// AuthBy says how the server was authenticated in the handshake that
// used c's last TLSConfig: "PKIX", "DANE-EE 3 1 1", "key pin", or "" for
// not at all.
func (c *Config) AuthBy() string {
	if c.authBy == nil {
		return ""
	}
	return *c.authBy
}

// ReadPolicy reads what qmail-remote-connect says of this server beside
// tlsstrictness: QMAILREMOTE_TLSLEVEL, and what goes with it. An invalid
// value is an error naming the variable.
func (c *Config) ReadPolicy() error {
	c.Level = os.Getenv(chainenv.TLSLevel)
	switch c.Level {
	case "", chainenv.LevelNone, chainenv.LevelMay, chainenv.LevelEncrypt, chainenv.LevelVerify:
	case chainenv.LevelDANE:
		recs, err := dane.ParseRecords(os.Getenv(chainenv.TLSA))
		if err != nil {
			return &chainenv.Error{Name: chainenv.TLSA, Reason: err.Error()}
		}
		if len(recs) == 0 {
			return &chainenv.Error{Name: chainenv.TLSA, Reason: "is empty at level dane"}
		}
		c.TLSA = recs
		for _, n := range strings.Split(os.Getenv(chainenv.TLSANames), ",") {
			if n != "" {
				c.TLSANames = append(c.TLSANames, n)
			}
		}
		if len(c.TLSANames) == 0 {
			return &chainenv.Error{Name: chainenv.TLSANames, Reason: "is empty at level dane"}
		}
	default:
		return &chainenv.Error{Name: chainenv.TLSLevel, Reason: fmt.Sprintf("must be none, may, encrypt, verify or dane, not %q", c.Level)}
	}
	c.stsTesting = os.Getenv(chainenv.STS) == "testing"
	c.Match = strings.Fields(os.Getenv(chainenv.TLSMatch))
	c.Pins = strings.Fields(os.Getenv(chainenv.TLSPins))
	for _, p := range c.Pins {
		if _, err := hex.DecodeString(p); err != nil || len(p) != 64 {
			return &chainenv.Error{Name: chainenv.TLSPins, Reason: fmt.Sprintf("holds %q, not 64 hex digits", p)}
		}
	}
	return nil
}

// TLSConfig builds the crypto/tls client configuration.
//
// Verified TLS (PKIX: tlsstrictness 2 or level verify; DANE): TLS 1.2 at
// least and our verification: the chain to the anchors and the name, or
// the TLSA records. Otherwise nothing is verified (but key pins, when
// given) and any version and cipher the server offers, TLS 1.0 and the
// RSA key exchange included: encryption that a passive listener cannot
// read still beats cleartext (RFC 7435 opportunistic security).
func (c *Config) TLSConfig() *tls.Config {
	c.authBy = new(string)
	tc := &tls.Config{
		ServerName: c.Server.verifyName(),
	}
	if c.Level == chainenv.LevelDANE && !c.Server.Literal.IsValid() {
		// RFC 7672 8.1: the SNI is the TLSA base domain.
		tc.ServerName = c.TLSANames[0]
	}
	if c.ClientCert != nil {
		tc.Certificates = []tls.Certificate{*c.ClientCert}
	}
	if c.strict() {
		tc.MinVersion = tls.VersionTLS12
		// crypto/tls's own verification, against a pool of only the
		// anchors that can matter for what the server presents
		// (Anchors.Pool): the same checks, without parsing every
		// anchor at every handshake.
		tc.InsecureSkipVerify = true
		tc.VerifyConnection = c.verify
		return tc
	}
	tc.InsecureSkipVerify = true
	if len(c.Pins) > 0 {
		tc.VerifyConnection = c.verify
	}
	tc.MinVersion = tls.VersionTLS10
	for _, cs := range tls.CipherSuites() {
		tc.CipherSuites = append(tc.CipherSuites, cs.ID)
	}
	for _, cs := range tls.InsecureCipherSuites() {
		tc.CipherSuites = append(tc.CipherSuites, cs.ID)
	}
	return tc
}

// Load loads what c needs from files: the trust anchors at tlsstrictness
// 2 (a bundle caFile, or a directory caDir; at 0 and 1 nothing is
// verified, so reading them would be wasted) and the client certificate
// when certFile is set. The error is the same for every server, a final Z
// for the caller: "trust anchors: ...", or LoadClientCert's.
func (c *Config) Load(caFile, caDir, certFile, keyFile string) error {
	if c.PKIX() {
		if caFile == "" && caDir == "" {
			return errors.New("trust anchors: none are set (control/trustanchors), and the server must be verified")
		}
		var err error
		if caFile != "" {
			c.Anchors, _, err = LoadFile(caFile)
		} else {
			c.Anchors, _, err = LoadDir(caDir)
		}
		if err != nil {
			return fmt.Errorf("trust anchors: %v", err)
		}
	} else if c.stsTesting {
		// Only for the report: anchors that do not load leave the
		// check out, never the delivery.
		if caFile != "" {
			c.Anchors, _, _ = LoadFile(caFile)
		} else if caDir != "" {
			c.Anchors, _, _ = LoadDir(caDir)
		}
	}
	if certFile != "" {
		cert, err := LoadClientCert(certFile, keyFile)
		if err != nil {
			return err
		}
		c.ClientCert = cert
	}
	return nil
}

// verify authenticates the server: by its TLSA records at level dane
// (RFC 7672 3), else by PKIX, and then by the key pins when there are
// any. A failure is a *tls.CertificateVerificationError, as crypto/tls's
// own, and crypto/tls sends the same alert (bad_certificate).
func (c *Config) verify(cs tls.ConnectionState) error {
	certs := cs.PeerCertificates
	if len(certs) == 0 {
		return errors.New("tls: the server presented no certificate")
	}
	fail := func(err error) error {
		return &tls.CertificateVerificationError{UnverifiedCertificates: certs, Err: err}
	}
	by := ""
	switch {
	case c.Level == chainenv.LevelDANE:
		res, err := dane.Verify(certs, c.TLSA, c.TLSANames, time.Now())
		switch {
		case errors.Is(err, dane.ErrNoUsable):
			// RFC 7672 2.2: encrypted, not authenticated.
		case err != nil:
			return fail(err)
		default:
			r := res.Record
			by = fmt.Sprintf("%s %d %d %d", res.Method, r.Usage, r.Selector, r.MatchingType)
		}
	case c.PKIX():
		if err := c.verifyPKIX(certs); err != nil {
			return fail(err)
		}
		by = "PKIX"
	}
	if len(c.Pins) > 0 {
		if !dane.MatchPins(certs[0], c.Pins) {
			return fail(&PinError{SPKI: dane.SPKISHA256(certs[0])})
		}
		if by == "" {
			by = "key pin"
		}
	}
	*c.authBy = by
	return nil
}

// verifyPKIX is what crypto/tls does with RootCAs set
// (verifyServerCertificate in handshake_client.go): the chain from the
// server's certificate, with the others it sent as intermediates, to an
// anchor, for the server's name (or one of Match), now, for server
// authentication.
func (c *Config) verifyPKIX(certs []*x509.Certificate) error {
	opts := x509.VerifyOptions{
		Roots:         c.Anchors.Pool(certs),
		Intermediates: x509.NewCertPool(),
		DNSName:       c.Server.verifyName(),
	}
	if len(c.Match) > 0 {
		opts.DNSName = ""
	}
	for _, ic := range certs[1:] {
		opts.Intermediates.AddCert(ic)
	}
	if _, err := certs[0].Verify(opts); err != nil {
		return err
	}
	if len(c.Match) > 0 && !matchAny(certs[0], c.Match) {
		return &MatchError{Cert: certs[0], Names: c.Match}
	}
	return nil
}

// matchAny says whether the certificate is for one of names: a host
// name as crypto/x509 matches it, or ".suffix" for a DNS name under it
// (a wildcard "*.sub.suffix" or "*.suffix" included).
func matchAny(cert *x509.Certificate, names []string) bool {
	for _, n := range names {
		if !strings.HasPrefix(n, ".") {
			if cert.VerifyHostname(n) == nil {
				return true
			}
			continue
		}
		n = strings.ToLower(n)
		for _, d := range cert.DNSNames {
			d = strings.ToLower(d)
			if strings.HasPrefix(d, "*.") && strings.HasSuffix(d[1:], n) ||
				!strings.HasPrefix(d, "*") && len(d) > len(n) && strings.HasSuffix(d, n) {
				return true
			}
		}
	}
	return false
}

// PinError is a server key that none of control/tlspolicy's pins allow.
type PinError struct{ SPKI string }

func (e *PinError) Error() string {
	return "the server's key (SPKI SHA-256 " + e.SPKI + ") is none of the pins of control/tlspolicy"
}

// MatchError is a certificate for none of control/tlspolicy's match= names.
type MatchError struct {
	Cert  *x509.Certificate
	Names []string
}

func (e *MatchError) Error() string {
	return "the certificate matches none of " + strings.Join(e.Names, ", ") + " (control/tlspolicy match=)"
}

// maxKeyFile bounds what is read of the client certificate and of its key:
// a certificate with its chain is a few KiB.
const maxKeyFile = 1 << 20

// LoadClientCert loads CERTFILE and KEYFILE. Errors name the file and never
// quote the key. Both are read without blocking and only if they are
// regular files (regular.ReadFile): a FIFO in their place would block
// open(2) forever.
func LoadClientCert(certFile, keyFile string) (*tls.Certificate, error) {
	certPEM, err := regular.ReadFile(certFile, maxKeyFile)
	if err != nil {
		return nil, fmt.Errorf("unable to read the client certificate: %w", err)
	}
	keyPEM, err := regular.ReadFile(keyFile, maxKeyFile)
	if err != nil {
		return nil, fmt.Errorf("unable to read the client key: %w", err)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// X509KeyPair's messages are fixed strings ("private key does
		// not match public key", "failed to find any PEM data in key
		// input"): they never quote the key.
		return nil, fmt.Errorf("the client certificate %s and key %s do not load: %s", certFile, keyFile,
			strings.TrimPrefix(err.Error(), "tls: "))
	}
	return &c, nil
}

// Params are what the application learns about the session, with the
// names s6-tlsc-io uses where it has them.
type Params struct {
	Protocol    string // SSL_PROTOCOL: TLSv1, TLSv1.1, TLSv1.2, TLSv1.3
	Cipher      string // SSL_CIPHER: the IANA name
	SNI         string // SSL_TLS_SNI_SERVERNAME: what we sent, empty for a literal
	CertHash    string // SSL_PEER_CERT_HASH: "sha256:" and hex of the leaf's DER
	CertSubject string // SSL_PEER_CERT_SUBJECT
	Verified    bool   // QMAILREMOTE_TLSVERIFIED
	VerifiedBy  string // QMAILREMOTE_TLSVERIFIEDBY: Config.AuthBy
}

// ParamsOf describes an established connection, made with c's TLSConfig.
func ParamsOf(cs tls.ConnectionState, c *Config) Params {
	p := Params{
		Protocol:   ProtocolName(cs.Version),
		Cipher:     tls.CipherSuiteName(cs.CipherSuite),
		SNI:        cs.ServerName,
		Verified:   c.AuthBy() != "",
		VerifiedBy: c.AuthBy(),
	}
	if c.Server.Literal.IsValid() {
		p.SNI = ""
	}
	if len(cs.PeerCertificates) > 0 {
		leaf := cs.PeerCertificates[0]
		sum := sha256.Sum256(leaf.Raw)
		p.CertHash = "sha256:" + hex.EncodeToString(sum[:])
		p.CertSubject = envSafe(leaf.Subject.String())
	}
	return p
}

// Env returns the variables for the application, as KEY=VALUE.
func (p Params) Env() []string {
	v := "0"
	if p.Verified {
		v = "1"
	}
	return []string{
		"SSL_PROTOCOL=" + p.Protocol,
		"SSL_CIPHER=" + p.Cipher,
		"SSL_TLS_SNI_SERVERNAME=" + p.SNI,
		"SSL_PEER_CERT_HASH=" + p.CertHash,
		"SSL_PEER_CERT_SUBJECT=" + p.CertSubject,
		chainenv.TLSVerified + "=" + v,
		chainenv.TLSVerifiedBy + "=" + p.VerifiedBy,
	}
}

// EnvNames are the variables Env sets: inherited values are dropped.
var EnvNames = []string{"SSL_PROTOCOL", "SSL_CIPHER", "SSL_TLS_SNI_SERVERNAME",
	"SSL_PEER_CERT_HASH", "SSL_PEER_CERT_SUBJECT", chainenv.TLSVerified, chainenv.TLSVerifiedBy}

// ProtocolName names a version the way OpenSSL and LibreSSL (and so
// s6-tlsc-io) do.
func ProtocolName(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLSv1"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return fmt.Sprintf("0x%04x", v)
}

// envSafe replaces control bytes: a subject comes from a certificate that
// may not even be verified, and an environment value cannot hold a NUL.
func envSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}
