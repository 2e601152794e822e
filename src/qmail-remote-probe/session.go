package qmailremoteprobe

// The conversation with one server: connect, greeting, EHLO, STARTTLS,
// the handshake, EHLO again, QUIT. Never MAIL. Every wait is bounded
// (timeoutconnect for the connect and the handshake, the stage's timeout
// for each reply and write), and so is everything kept of what the
// server sends (smtp.ReadReply keeps 8 KB of a reply; we show less).

import (
	"bufio"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"qmail-remote-go/src/internal/chainenv"
	"qmail-remote-go/src/internal/connect"
	"qmail-remote-go/src/internal/dane"
	"qmail-remote-go/src/internal/smtp"
	"qmail-remote-go/src/internal/tlsio"
)

// Bounds on what is kept of one host.
const (
	maxReplyLines = 30  // lines of one reply shown
	maxLineShown  = 200 // bytes of one reply line shown
	maxCerts      = 10  // certificates of the chain shown
	maxNames      = 30  // DNS names (and addresses) shown per certificate
	quitWait      = 5 * time.Second
)

// hostRun is one host's probe: what is shown, and what the checks and
// the verdict are made of.
type hostRun struct {
	host     Host
	cand     chainenv.Candidate
	server   tlsio.Server
	smtps    bool
	injected bool
	// The handshake: the session's state (nil without one), the
	// configuration it was made with (the delivery's, unless cfgWhy or
	// mode none), and the delivery's verification of the server.
	cs        *tls.ConnectionState
	cfg       *tlsio.Config
	cfgWhy    string // why the delivery's configuration cannot be made
	verifyErr error
	authBy    string
	// bindWhy: the socket could not be bound to control/outgoingip's
	// address (connect.BindReason); a delivery stops there, with a Z.
	bindWhy string
}

// conv is the conversation on a connection, plain or TLS.
type conv struct {
	conn    net.Conn
	br      *bufio.Reader
	timeout time.Duration
}

func newConv(c net.Conn, timeout time.Duration) *conv {
	return &conv{conn: c, br: bufio.NewReaderSize(c, 4096), timeout: timeout}
}

func (c *conv) reply() (smtp.Reply, error) {
	c.conn.SetReadDeadline(time.Now().Add(c.timeout))
	return smtp.ReadReply(c.br)
}

func (c *conv) command(line string) (smtp.Reply, error) {
	c.conn.SetWriteDeadline(time.Now().Add(c.timeout))
	if _, err := c.conn.Write([]byte(line + "\r\n")); err != nil {
		return smtp.Reply{}, err
	}
	return c.reply()
}

// quit ends the session politely, without waiting long for the answer.
func (c *conv) quit() {
	c.conn.SetDeadline(time.Now().Add(min(c.timeout, quitWait)))
	if _, err := c.conn.Write([]byte("QUIT\r\n")); err == nil {
		smtp.ReadReply(c.br)
	}
}

// step times one step and records its reply or error.
func step(start time.Time, r smtp.Reply, err error, ok bool) *Step {
	st := &Step{OK: err == nil && ok, Reply: replyText(r), Ms: time.Since(start).Milliseconds()}
	if err != nil {
		st.Error = clean(err.Error(), 300)
	}
	return st
}

// replyText is a reply as shown: bounded lines, no control bytes.
func replyText(r smtp.Reply) string {
	if r.Text == "" {
		return ""
	}
	lines := r.Lines()
	more := len(lines) - maxReplyLines + r.Dropped
	lines = lines[:min(len(lines), maxReplyLines)]
	for i, l := range lines {
		lines[i] = clean(l, maxLineShown)
	}
	if more > 0 {
		lines = append(lines, fmt.Sprintf("(%d more lines)", more))
	}
	return strings.Join(lines, "\n")
}

// probeHost probes one candidate.
// skip is whether tcpto would skip the address now (read beforehand:
// the table is not for concurrent use).
func (s *stage) probeHost(c chainenv.Candidate, skip bool) *hostRun {
	_, hasDANE := s.dane[c.Name]
	level := s.policy.HostLevel(hasDANE)
	r := &hostRun{cand: c, smtps: s.auth == "smtps"}
	h := &r.host
	*h = Host{Name: c.Name, Address: c.Addr.String(), DANE: hasDANE, Level: level,
		Mode: s.policy.Mode(level), Policy: s.hostPolicy(c, level, hasDANE), Tcpto: skip}
	if r.smtps {
		h.Policy += "; SMTPS: TLS at once (control/smtpauth)"
	}
	var err error
	if r.server, err = tlsio.ParseServer(c.Name); err != nil {
		r.server = tlsio.Server{Name: c.Name}
	}

	start := time.Now()
	source := s.source.V6
	if c.Addr.Unmap().Is4() {
		source = s.source.V4
	}
	sock, err := connect.Dial(netip.AddrPortFrom(c.Addr, uint16(s.port)), source, s.timeoutConnect)
	h.Connect.Ms = time.Since(start).Milliseconds()
	if connect.BindFailed(err) {
		r.bindWhy = connect.BindReason(source, err)
		h.Connect.Error = "Unable to connect from the address control/outgoingip gives: " + r.bindWhy + "."
		return r
	}
	if err != nil {
		h.Connect.Error = connect.Reason(c.Addr, err)
		return r
	}
	f := os.NewFile(uintptr(sock.FD), "socket")
	raw, err := net.FileConn(f) // a duplicate, served by Go's poller
	f.Close()
	if err != nil {
		h.Connect.Error = "unable to use the socket: " + err.Error()
		return r
	}
	defer raw.Close()
	h.Connect.OK = true
	cv := newConv(raw, s.timeout)

	if r.smtps {
		tc := s.handshake(r, raw)
		if tc == nil {
			return r
		}
		defer closeTLS(tc, raw)
		cv = newConv(tc, s.timeout)
	}
	start = time.Now()
	rep, err := cv.reply()
	h.Greeting = step(start, rep, err, rep.Code == 220)
	if !h.Greeting.OK {
		if err == nil {
			cv.quit()
		}
		return r
	}
	ehlo := s.ehlo(cv, !r.smtps)
	if r.smtps {
		h.EHLOTLS = ehlo
	} else {
		h.EHLO = ehlo
	}
	if !ehlo.OK || r.smtps || !ehlo.StartTLS {
		if ehlo.Error == "" {
			cv.quit()
		}
		return r
	}

	// STARTTLS, whatever the policy: the probe always looks.
	start = time.Now()
	rep, err = cv.command("STARTTLS")
	h.StartTLS = step(start, rep, err, rep.Code == 220)
	if !h.StartTLS.OK {
		if err == nil {
			cv.quit()
		}
		return r
	}
	// CVE-2011-0411: what came after the 220 was sent before the
	// handshake, in cleartext; qmail-remote-io gives up on the server.
	if n := cv.br.Buffered(); n > 0 {
		r.injected = true
		h.StartTLS.OK = false
		h.StartTLS.Error = fmt.Sprintf("the server sent %d bytes after its 220 reply, before the TLS handshake (response injection?)", n)
		return r
	}
	tc := s.handshake(r, raw)
	if tc == nil {
		return r
	}
	defer closeTLS(tc, raw)
	cv = newConv(tc, s.timeout)
	h.EHLOTLS = s.ehlo(cv, false)
	if h.EHLOTLS.Error == "" {
		cv.quit()
	}
	return r
}

// ehlo says EHLO, and HELO when EHLO is refused and helo is allowed
// (never under TLS: a server that has just done TLS speaks ESMTP).
func (s *stage) ehlo(cv *conv, helo bool) *EHLO {
	start := time.Now()
	rep, err := cv.command("EHLO " + s.helo)
	e := &EHLO{Step: *step(start, rep, err, rep.Class() == 2), Command: "EHLO", Keywords: []string{}}
	if err == nil && rep.Class() != 2 && helo {
		start = time.Now()
		rep, err = cv.command("HELO " + s.helo)
		e = &EHLO{Step: *step(start, rep, err, rep.Class() == 2), Command: "HELO", Keywords: []string{}}
		return e
	}
	if !e.OK {
		return e
	}
	e.StartTLS = smtp.ParseEHLO(rep).Has("STARTTLS")
	// The keywords as offered, in order, with their parameters.
	for _, l := range rep.Lines()[1:] {
		if len(e.Keywords) >= maxReplyLines {
			break
		}
		if len(l) > 4 {
			e.Keywords = append(e.Keywords, clean(l[4:], maxLineShown))
		}
	}
	return e
}

// handshake does the TLS handshake on raw, with the delivery's own
// configuration for this host when a delivery would do STARTTLS (so that
// versions, ciphers, SNI and verification are a delivery's), else with
// one that takes anything. The delivery's verification is run and its
// verdict kept, but never ends the handshake: the probe wants to see the
// whole session either way.
func (s *stage) handshake(r *hostRun, raw net.Conn) *tls.Conn {
	h := &r.host
	h.TLS = &TLS{Certificates: []Cert{}, Config: "delivery"}
	cfg, why := s.deliveryConfig(r)
	if h.Mode == connect.ModeNone {
		cfg, why = nil, ""
	}
	if cfg == nil {
		r.cfgWhy = why
		cfg = &tlsio.Config{Server: r.server, ClientCert: s.clientCert}
		h.TLS.Config = "probe"
	}
	r.cfg = cfg
	tc := cfg.TLSConfig()
	verify := tc.VerifyConnection
	tc.VerifyConnection = func(cs tls.ConnectionState) error {
		if verify != nil {
			r.verifyErr = verify(cs)
		}
		return nil
	}
	conn := tls.Client(raw, tc)
	start := time.Now()
	raw.SetDeadline(start.Add(s.timeoutConnect))
	err := conn.Handshake()
	raw.SetDeadline(time.Time{})
	h.TLS.Ms = time.Since(start).Milliseconds()
	if err != nil {
		h.TLS.Error = clean(tlsio.Reason(err, *cfg, s.timeoutConnect, time.Now()), 500)
		return nil
	}
	cs := conn.ConnectionState()
	r.cs = &cs
	r.authBy = cfg.AuthBy()
	p := tlsio.ParamsOf(cs, cfg)
	h.TLS.OK, h.TLS.Version, h.TLS.Cipher, h.TLS.SNI = true, p.Protocol, p.Cipher, clean(p.SNI, 255)
	for i, c := range cs.PeerCertificates {
		if i >= maxCerts {
			h.TLS.Dropped = len(cs.PeerCertificates) - maxCerts
			break
		}
		sum := sha256.Sum256(c.Raw)
		ci := Cert{Depth: i, Subject: clean(c.Subject.String(), 300), Issuer: clean(c.Issuer.String(), 300),
			DNSNames: []string{}, IPs: []string{},
			NotBefore: c.NotBefore.UTC().Format(time.RFC3339), NotAfter: c.NotAfter.UTC().Format(time.RFC3339),
			SPKISHA256: dane.SPKISHA256(c), SHA256: hex.EncodeToString(sum[:]), CA: c.IsCA}
		for _, n := range c.DNSNames[:min(len(c.DNSNames), maxNames)] {
			ci.DNSNames = append(ci.DNSNames, clean(n, 255))
		}
		for _, a := range c.IPAddresses[:min(len(c.IPAddresses), maxNames)] {
			ci.IPs = append(ci.IPs, a.String())
		}
		h.TLS.Certificates = append(h.TLS.Certificates, ci)
	}
	return conn
}

// closeTLS sends close_notify, bounded.
func closeTLS(tc *tls.Conn, raw net.Conn) {
	raw.SetDeadline(time.Now().Add(quitWait))
	tc.Close()
}

// deliveryConfig is the configuration qmail-remote-io would hand the
// handshake for this host (qmail-remote-connect's tlsEnv, tlsio's
// ReadPolicy and Load), or why there is none.
func (s *stage) deliveryConfig(r *hostRun) (*tlsio.Config, string) {
	h := &r.host
	cfg := &tlsio.Config{Server: r.server, Strictness: s.policy.Strictness, Level: h.Level,
		Match: s.match, Pins: s.pins, ClientCert: s.clientCert}
	if h.Level == chainenv.LevelDANE {
		d := s.dane[r.cand.Name]
		recs, err := dane.ParseRecords(d.Records)
		if err != nil {
			return nil, "QMAILREMOTE_DANE: " + err.Error()
		}
		cfg.TLSA, cfg.TLSANames = recs, d.Names
	}
	if cfg.PKIX() {
		if s.anchors == nil {
			return nil, "Unable to read control files: trust anchors: " + s.anchorsWhy
		}
		cfg.Anchors = s.anchors
	}
	if s.clientWhy != "" {
		return nil, "Unable to read control files: " + s.clientWhy
	}
	return cfg, ""
}
