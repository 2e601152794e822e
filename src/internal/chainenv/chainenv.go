// Package chainenv names the environment variables that carry the state of
// one delivery from stage to stage (doc/chain.md), and reads them with
// validation: every error names the variable.
package chainenv

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"qmail-remote-go/src/internal/paths"
)

// Prefix starts every variable of ours; qmail-remote strips inherited ones.
const Prefix = "QMAILREMOTE_"

// Set by qmail-remote.
const (
	QmailHome      = "QMAILREMOTE_QMAILHOME"
	QmailRun       = "QMAILREMOTE_QMAILRUN"
	LibexecDir     = "QMAILREMOTE_LIBEXECDIR" // read by qmail-remote only
	KeepGoEnv      = "QMAILREMOTE_KEEPGOENV"  // read by qmail-remote only: 1 keeps GO* variables
	Host           = "QMAILREMOTE_HOST"
	Sender         = "QMAILREMOTE_SENDER"
	Rcpts          = "QMAILREMOTE_RCPTS"
	RcptPrefix     = "QMAILREMOTE_RCPT_"
	HeloHost       = "QMAILREMOTE_HELOHOST"
	TimeoutConnect = "QMAILREMOTE_TIMEOUTCONNECT"
	TimeoutRemote  = "QMAILREMOTE_TIMEOUTREMOTE"
	TimeoutDNS     = "QMAILREMOTE_TIMEOUTDNS"
	IPMe           = "QMAILREMOTE_IPME"
	TrustAnchors   = "QMAILREMOTE_TRUSTANCHORS"
	ClientCert     = "QMAILREMOTE_CLIENTCERT"
	ClientKey      = "QMAILREMOTE_CLIENTKEY"
	TLSStrictness  = "QMAILREMOTE_TLSSTRICTNESS"
	MsgBytes       = "QMAILREMOTE_MSGBYTES"
	Msg8Bit        = "QMAILREMOTE_MSG8BIT"
)

// Set by qmail-remote from control/dnssecresolvers: nameservers whose
// AD bit qmail-remote-resolve trusts, besides those on loopback.
const DNSSECResolvers = "QMAILREMOTE_DNSSECRESOLVERS"

// Set by qmail-remote from control/mtasts: 1 when qmail-remote-resolve
// looks for the destination's MTA-STS policy (RFC 8461, doc/mta-sts.md).
const MTASTS = "QMAILREMOTE_MTASTS"

// Set by qmail-remote-routes.
const (
	Relay = "QMAILREMOTE_RELAY"
	Port  = "QMAILREMOTE_PORT"
	// From control/tlspolicy, unset when no line applies (then
	// tlsstrictness decides): the level, and its options.
	TLSPolicy = "QMAILREMOTE_TLSPOLICY"
	TLSMatch  = "QMAILREMOTE_TLSMATCH" // names the certificate must match, spaces between
	TLSPins   = "QMAILREMOTE_TLSPINS"  // SHA-256 of allowed server keys, hex, spaces between
	// The key of the control/senderroutes line that chose the route
	// (angle brackets and all: <@example.org>), unset when smtproutes did.
	SenderRoute = "QMAILREMOTE_SENDERROUTE"
	// The addresses to connect from, from control/outgoingip: at most
	// one IPv4 and one IPv6, a space between; unset: the kernel chooses.
	OutgoingIP = "QMAILREMOTE_OUTGOINGIP"
)

// The levels of control/tlspolicy.
const (
	LevelNone     = "none"
	LevelMay      = "may"
	LevelEncrypt  = "encrypt"
	LevelVerify   = "verify"
	LevelDANE     = "dane"
	LevelDANEOnly = "dane-only"
)

// Set by qmail-remote-resolve.
const (
	Candidates = "QMAILREMOTE_CANDIDATES"
	// The MX hosts that DANE applies to (FormatDANE), at the levels
	// dane and dane-only.
	DANE = "QMAILREMOTE_DANE"
	// The destination's MTA-STS policy (RFC 8461) when one applies: its
	// mode (enforce or testing), and its lines, newlines between, for
	// TLS reports (RFC 8460). At enforce, qmail-remote-resolve has also
	// raised TLSPolicy to verify and kept only the MX hosts it names.
	STS       = "QMAILREMOTE_STS"
	STSPolicy = "QMAILREMOTE_STSPOLICY"
)

// Set by qmail-remote-connect (with the UCSPI variables below).
const MXName = "QMAILREMOTE_MXNAME"

// Set by qmail-remote-connect for qmail-remote-io and the TLS stage: how
// this connection's server is authenticated. TLSLevel is one of the
// levels above but dane-only (unset: tlsstrictness decides); at dane,
// TLSA holds the host's records (dane.EncodeRecords) and TLSANames the
// names a DANE-TA certificate must match, the TLSA base domain first.
const (
	TLSLevel  = "QMAILREMOTE_TLSLEVEL"
	TLSA      = "QMAILREMOTE_TLSA"
	TLSANames = "QMAILREMOTE_TLSANAMES"
)

// Set by qmail-remote for qmail-remote-io: the path of the TLS stage.
const TLSIO = "QMAILREMOTE_TLSIO"

// Set by qmail-remote-connect for qmail-remote-io: what to do about
// STARTTLS on this connection (TLSTry, TLSRequire, TLSNone).
const TLS = "QMAILREMOTE_TLS"

const (
	TLSTry     = "try"     // STARTTLS if offered; cleartext otherwise
	TLSRequire = "require" // STARTTLS or nothing: no mail in cleartext
	TLSNone    = "none"    // cleartext, no STARTTLS
)

// Set by qmail-remote-tlsio for the application it runs: whether the
// server's certificate was verified (1) or not (0).
const TLSVerified = "QMAILREMOTE_TLSVERIFIED"

// Set with TLSVerified: how the server was authenticated ("PKIX",
// "DANE-EE 3 1 1", "DANE-TA 2 1 1", "key pin"), empty for not at all.
const TLSVerifiedBy = "QMAILREMOTE_TLSVERIFIEDBY"

// UCSPI client variables (s6-tcpclient names).
const (
	Proto         = "PROTO"
	TCPRemoteIP   = "TCPREMOTEIP"
	TCPRemotePort = "TCPREMOTEPORT"
	TCPLocalIP    = "TCPLOCALIP"
	TCPLocalPort  = "TCPLOCALPORT"
)

// DNSCacheIP overrides /etc/resolv.conf's nameservers (djbdns convention).
const DNSCacheIP = "DNSCACHEIP"

// MTASTSPort overrides the port of MTA-STS policy servers (443), for
// tests: a test cannot listen on 443 without root.
const MTASTSPort = "MTASTSPORT"

// Error is an invalid or missing variable.
type Error struct {
	Name   string
	Reason string
}

func (e *Error) Error() string { return e.Name + " " + e.Reason }

// String returns a variable that must be set (it may be empty).
func String(name string) (string, error) {
	v, ok := os.LookupEnv(name)
	if !ok {
		return "", &Error{name, "is not set"}
	}
	return v, nil
}

// NonEmpty returns a variable that must be set and not empty.
func NonEmpty(name string) (string, error) {
	v, err := String(name)
	if err == nil && v == "" {
		err = &Error{name, "is empty"}
	}
	return v, err
}

// AbsPath returns a variable that must be an absolute path, cleaned: the
// directories every stage relies on, whatever its working directory.
func AbsPath(name string) (string, error) {
	v, err := NonEmpty(name)
	if err != nil {
		return "", err
	}
	if !filepath.IsAbs(v) {
		return "", &Error{name, fmt.Sprintf("must be an absolute path, not %q", v)}
	}
	return filepath.Clean(v), nil
}

// Dirs returns the qmail home and the run directory as every program
// finds them: QmailHome, or the configured home; QmailRun, or the
// configured run directory, or, when none is configured, the home's run/
// (overridden or not), as qmail-remote does. A variable that is set must
// hold an absolute path. Under qmail-remote both are always set.
func Dirs() (home, run string, err error) {
	home = paths.QmailHome
	if _, ok := os.LookupEnv(QmailHome); ok {
		if home, err = AbsPath(QmailHome); err != nil {
			return "", "", err
		}
	}
	if _, ok := os.LookupEnv(QmailRun); ok {
		if run, err = AbsPath(QmailRun); err != nil {
			return "", "", err
		}
		return home, run, nil
	}
	if paths.QmailRun != "" {
		return home, paths.QmailRun, nil
	}
	return home, filepath.Join(home, "run"), nil
}

// Int returns a decimal integer variable within [min, max].
func Int(name string, min, max int64) (int64, error) {
	v, err := String(name)
	if err != nil {
		return 0, err
	}
	n, perr := strconv.ParseInt(v, 10, 64)
	if perr != nil || n < min || n > max || strings.HasPrefix(v, "+") {
		return 0, &Error{name, fmt.Sprintf("must be a number from %d to %d, not %q", min, max, v)}
	}
	return n, nil
}

// Flag returns a yes/no variable: 1 is true; 0, empty or unset is false.
func Flag(name string) (bool, error) {
	switch v := os.Getenv(name); v {
	case "1":
		return true, nil
	case "0", "":
		return false, nil
	default:
		return false, &Error{name, fmt.Sprintf("must be 0 or 1, not %q", v)}
	}
}

// Seconds returns a number of seconds (at least min) as a duration.
func Seconds(name string, min int64) (time.Duration, error) {
	n, err := Int(name, min, 1<<31-1)
	return time.Duration(n) * time.Second, err
}

// Envelope returns the sender and the recipients.
func Envelope() (sender string, rcpts []string, err error) {
	if sender, err = String(Sender); err != nil {
		return
	}
	n, err := Int(Rcpts, 1, 1<<20)
	if err != nil {
		return
	}
	rcpts = make([]string, n)
	for i := range rcpts {
		if rcpts[i], err = String(RcptPrefix + strconv.Itoa(i+1)); err != nil {
			return "", nil, err
		}
	}
	return
}

// SetEnvelope exports the sender and the recipients.
func SetEnvelope(sender string, rcpts []string) {
	os.Setenv(Sender, sender)
	os.Setenv(Rcpts, strconv.Itoa(len(rcpts)))
	for i, r := range rcpts {
		os.Setenv(RcptPrefix+strconv.Itoa(i+1), r)
	}
}

// Addrs parses a list of canonical addresses separated by spaces.
func Addrs(name string) ([]netip.Addr, error) {
	v, err := String(name)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, f := range strings.Fields(v) {
		a, perr := netip.ParseAddr(f)
		if perr != nil {
			return nil, &Error{name, fmt.Sprintf("holds %q, which is not an IP address", f)}
		}
		out = append(out, a.Unmap())
	}
	return out, nil
}

// Candidate is one address to try, with the name it was found under.
type Candidate struct {
	Name string     // MX host name, relay name, or "[addr]" for a literal
	Addr netip.Addr // canonical (IPv4 never IPv4-mapped)
}

// String formats a candidate as NAME/ADDRESS.
func (c Candidate) String() string { return c.Name + "/" + c.Addr.String() }

// FormatCandidates joins candidates for QMAILREMOTE_CANDIDATES.
func FormatCandidates(cs []Candidate) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = c.String()
	}
	return strings.Join(parts, " ")
}

// ParseCandidates parses QMAILREMOTE_CANDIDATES-style text.
func ParseCandidates(v string) ([]Candidate, error) {
	var out []Candidate
	for _, f := range strings.Fields(v) {
		i := strings.LastIndexByte(f, '/')
		if i <= 0 {
			return nil, &Error{Candidates, fmt.Sprintf("holds %q, not NAME/ADDRESS", f)}
		}
		a, err := netip.ParseAddr(f[i+1:])
		if err != nil || a.Zone() != "" {
			return nil, &Error{Candidates, fmt.Sprintf("holds %q, whose address is not an IP address", f)}
		}
		out = append(out, Candidate{Name: f[:i], Addr: a.Unmap()})
	}
	return out, nil
}

// DANEHost is an MX host (or relay) with DNSSEC-secure TLSA records.
type DANEHost struct {
	Name    string   // as in the candidate list
	Names   []string // reference identifiers: the TLSA base domain, then the unexpanded name if a CNAME led to it
	Records string   // the TLSA records, dane.EncodeRecords' form
}

// FormatDANE joins hosts for QMAILREMOTE_DANE: NAME/NAMES/RECORDS, NAMES
// and RECORDS separated by commas, hosts by spaces.
func FormatDANE(hs []DANEHost) string {
	parts := make([]string, len(hs))
	for i, h := range hs {
		parts[i] = h.Name + "/" + strings.Join(h.Names, ",") + "/" + h.Records
	}
	return strings.Join(parts, " ")
}

// ParseDANE parses QMAILREMOTE_DANE-style text. The records stay text:
// the TLS stage parses them.
func ParseDANE(v string) ([]DANEHost, error) {
	var out []DANEHost
	for _, f := range strings.Fields(v) {
		parts := strings.Split(f, "/")
		if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
			return nil, &Error{DANE, fmt.Sprintf("holds %q, not NAME/NAMES/RECORDS", f)}
		}
		out = append(out, DANEHost{Name: parts[0], Names: strings.Split(parts[1], ","), Records: parts[2]})
	}
	return out, nil
}
