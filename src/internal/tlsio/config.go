package tlsio

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"qmail-remote-go/src/internal/addrlit"
	"qmail-remote-go/src/internal/chainenv"
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
	Anchors    *Anchors         // strictness 2 only
	ClientCert *tls.Certificate // nil: none
}

// TLSConfig builds the crypto/tls client configuration.
//
// Strictness 2: TLS 1.2 at least, the chain verified against the anchors
// and the certificate matched against the MX name (an IP SAN for a
// literal). 0 and 1: nothing verified and any version and cipher the
// server offers, TLS 1.0 and the RSA key exchange included: encryption
// that a passive listener cannot read still beats cleartext (RFC 7435
// opportunistic security).
func (c Config) TLSConfig() *tls.Config {
	tc := &tls.Config{
		ServerName: c.Server.verifyName(),
	}
	if c.ClientCert != nil {
		tc.Certificates = []tls.Certificate{*c.ClientCert}
	}
	if c.Strictness >= 2 {
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
	if c.Strictness == 2 {
		var err error
		if caFile != "" {
			c.Anchors, _, err = LoadFile(caFile)
		} else {
			c.Anchors, _, err = LoadDir(caDir)
		}
		if err != nil {
			return fmt.Errorf("trust anchors: %v", err)
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

// verify is what crypto/tls does with RootCAs set (verifyServerCertificate
// in handshake_client.go): the chain from the server's certificate, with
// the others it sent as intermediates, to an anchor, for the server's
// name, now, for server authentication; a failure is the same
// *tls.CertificateVerificationError, and crypto/tls sends the same alert
// (bad_certificate).
func (c Config) verify(cs tls.ConnectionState) error {
	certs := cs.PeerCertificates
	if len(certs) == 0 {
		return errors.New("tls: the server presented no certificate")
	}
	opts := x509.VerifyOptions{
		Roots:         c.Anchors.Pool(certs),
		Intermediates: x509.NewCertPool(),
		DNSName:       c.Server.verifyName(),
	}
	for _, ic := range certs[1:] {
		opts.Intermediates.AddCert(ic)
	}
	if _, err := certs[0].Verify(opts); err != nil {
		return &tls.CertificateVerificationError{UnverifiedCertificates: certs, Err: err}
	}
	return nil
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
}

// ParamsOf describes an established connection.
func ParamsOf(cs tls.ConnectionState, s Server, verified bool) Params {
	p := Params{
		Protocol: ProtocolName(cs.Version),
		Cipher:   tls.CipherSuiteName(cs.CipherSuite),
		SNI:      s.SNI(),
		Verified: verified,
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
	}
}

// EnvNames are the variables Env sets: inherited values are dropped.
var EnvNames = []string{"SSL_PROTOCOL", "SSL_CIPHER", "SSL_TLS_SNI_SERVERNAME",
	"SSL_PEER_CERT_HASH", "SSL_PEER_CERT_SUBJECT", chainenv.TLSVerified}

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
