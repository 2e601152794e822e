package smtptest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"strings"
	"time"
)

// SMTP AUTH (RFC 4954) with PLAIN (RFC 4616) and LOGIN, and SMTPS (RFC
// 8314: TLS from the first byte), for testing smarthost submission.
//
// Script.Auth lists the mechanisms to offer ("PLAIN LOGIN"); they go into
// an "AUTH" line of 2xx EHLO replies under TLS (after a 220 to STARTTLS,
// with or without a handshake, or in SMTPS mode), and before it too with
// AuthCleartext, or before it only with AuthOnlyCleartext. PLAIN and
// LOGIN exchanges are carried out and checked against AuthUser and
// AuthPassword (235 or 535); AuthReply, when set, is the answer instead
// (e.g. "534 5.7.9 Authentication mechanism is too weak", or a special
// reply). Other offered mechanisms get 504. With AuthUser set, MAIL
// before a successful AUTH gets 530, as a submission server says.
//
// Whatever the client sends before TLS is searched for AuthPassword, as
// is and base64-decoded: Message.PasswordInCleartext and
// Server.PasswordInCleartext say whether it was ever found.

// AuthAttempt is one AUTH exchange the server took part in.
type AuthAttempt struct {
	Mech string // upper case, as the client named it
	User string // the user the client sent ("" if it never got that far)
	TLS  bool   // under TLS (or after a 220 to STARTTLS)
	OK   bool   // the server answered 235
	// Reply is what the server answered at the end of the exchange.
	Reply string
}

// connAuth is the AUTH state of one connection.
type connAuth struct {
	mech, user string // after a successful AUTH
	pwClear    bool   // the password was seen before TLS
	fakeSMTPS  bool   // SMTPS mode without a TLS configuration
}

// Replies of the AUTH exchange.
const (
	authOK        = "235 2.7.0 Authentication successful"
	authInvalid   = "535 5.7.8 Authentication credentials invalid"
	authRequired  = "530 5.7.0 Authentication required"
	authNotHere   = "503 5.5.1 Error: authentication not enabled"
	authAgain     = "503 5.5.1 Error: already authenticated"
	authUnknown   = "504 5.5.4 Unrecognized authentication type"
	authSyntax    = "501 5.5.4 Syntax: AUTH mechanism"
	authCancelled = "501 5.7.0 Authentication cancelled"
	authBad64     = "501 5.5.2 Cannot decode response"
)

// AuthAttempts returns the AUTH exchanges so far, over all connections.
func (s *Server) AuthAttempts() []AuthAttempt {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]AuthAttempt(nil), s.authAttempts...)
}

// PasswordInCleartext says whether Script.AuthPassword was ever sent
// before TLS, on any connection, as is or base64-encoded.
func (s *Server) PasswordInCleartext() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pwClear
}

// authOffered says whether AUTH is offered in the current state.
func (sc *Script) authOffered(secure bool) bool {
	switch {
	case sc.Auth == "":
		return false
	case sc.AuthOnlyCleartext:
		return !secure
	case sc.AuthCleartext:
		return true
	}
	return secure
}

// secure says whether the session is under TLS, or past a 220 to STARTTLS
// (a fake TLS stage then goes on in cleartext, standing in for TLS).
func (c *conn) secure(startTLS bool) bool { return startTLS || c.tls != nil || c.auth.fakeSMTPS }

// withAuth adds the AUTH line to an EHLO reply when it is offered.
func (s *Server) withAuth(c *conn, reply string, startTLS bool) string {
	if !s.script.authOffered(c.secure(startTLS)) {
		return reply
	}
	return withExtension(reply, "AUTH "+s.script.Auth)
}

// withExtension adds an extension line after the first line of a 2xx
// EHLO reply.
func withExtension(reply, ext string) string {
	if !strings.HasPrefix(reply, "2") {
		return reply
	}
	first, rest, multi := strings.Cut(reply, "\n")
	code := first
	if len(code) > 3 {
		code = code[:3]
	}
	head := code + "-"
	if len(first) > 4 {
		head += first[4:]
	}
	if !multi {
		return head + "\n" + code + " " + ext
	}
	return head + "\n" + code + "-" + ext + "\n" + rest
}

// smtpsStart does the TLS handshake at once (SMTPS mode), before the
// greeting. False ends the session. Without a TLS configuration there is
// no handshake, but the session counts as under TLS: a fake TLS stage
// on the client's side stands in for it.
func (s *Server) smtpsStart(c *conn) bool {
	if s.script.TLS == nil {
		c.auth.fakeSMTPS = true
		return true
	}
	tc := tls.Server(c.raw, s.script.TLS)
	c.raw.SetDeadline(time.Now().Add(handshakeTimeout))
	if s.closing() {
		return false
	}
	err := tc.Handshake()
	c.raw.SetDeadline(time.Time{})
	if err != nil || s.closing() {
		return false
	}
	st := tc.ConnectionState()
	c.c, c.tls = tc, &st
	c.r = bufio.NewReaderSize(&countingReader{tc, c.st, s.script.Latency}, 64*1024)
	c.w = bufio.NewWriter(tc)
	return true
}

// checkCleartext looks for the password in a line received before TLS.
func (s *Server) checkCleartext(c *conn, line string, startTLS bool) {
	pw := s.script.AuthPassword
	if pw == "" || c.secure(startTLS) {
		return
	}
	found := strings.Contains(line, pw)
	for _, f := range strings.Fields(line) {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding} {
			if b, err := enc.DecodeString(f); err == nil && bytes.Contains(b, []byte(pw)) {
				found = true
			}
		}
	}
	if found {
		c.auth.pwClear = true
		s.mu.Lock()
		s.pwClear = true
		s.mu.Unlock()
	}
}

// authMail is the reply to MAIL when AUTH is required and has not
// happened ("" when MAIL may go on).
func (s *Server) authMail(c *conn) string {
	if s.script.AuthUser == "" || c.auth.mech != "" {
		return ""
	}
	return authRequired
}

// auth carries out an AUTH command (RFC 4954 4). False ends the session.
func (s *Server) auth(c *conn, line string, startTLS bool) bool {
	sc := &s.script
	secure := c.secure(startTLS)
	f := strings.Fields(line)
	switch {
	case !sc.authOffered(secure):
		return s.answer(c, authNotHere, "")
	case c.auth.mech != "":
		return s.answer(c, authAgain, "")
	case len(f) < 2 || len(f) > 3:
		return s.answer(c, authSyntax, "")
	}
	mech := strings.ToUpper(f[1])
	offered := false
	for _, m := range strings.Fields(sc.Auth) {
		offered = offered || strings.EqualFold(m, mech)
	}
	if !offered || (mech != "PLAIN" && mech != "LOGIN") {
		return s.answer(c, authUnknown, "")
	}
	initial := ""
	if len(f) == 3 {
		initial = f[2]
	}
	a := AuthAttempt{Mech: mech, TLS: secure}
	// next returns the client's next response, decoded: the initial one,
	// or the line after a 334 challenge. done is set when the exchange
	// ended (cancelled, bad base64, connection lost) with reply.
	var done, alive bool
	var reply string
	next := func(challenge string, have *string) []byte {
		resp := *have
		*have = ""
		if resp == "" {
			if !s.answer(c, "334 "+challenge, "") {
				done, alive = true, false
				return nil
			}
			l, err := c.r.ReadString('\n')
			if err != nil {
				done, alive = true, false
				return nil
			}
			resp = strings.TrimSuffix(strings.TrimSuffix(l, "\n"), "\r")
			s.checkCleartext(c, resp, startTLS)
		}
		if resp == "*" {
			done, alive, reply = true, true, authCancelled
			return nil
		}
		if resp == "=" { // RFC 4954 4: an empty initial response
			return []byte{}
		}
		b, err := base64.StdEncoding.DecodeString(resp)
		if err != nil {
			done, alive, reply = true, true, authBad64
		}
		return b
	}
	var user, pass string
	switch mech {
	case "PLAIN":
		// RFC 4616 2: [authzid] NUL authcid NUL passwd
		b := next("", &initial)
		if !done {
			p := strings.Split(string(b), "\x00")
			if len(p) == 3 && (p[0] == "" || p[0] == p[1]) {
				user, pass = p[1], p[2]
			} else {
				done, alive, reply = true, true, authBad64
			}
		}
	case "LOGIN":
		// draft-murchison-sasl-login: "Username:", "Password:" prompts.
		b := next("VXNlcm5hbWU6", &initial)
		if !done {
			user = string(b)
			empty := ""
			b = next("UGFzc3dvcmQ6", &empty)
			pass = string(b)
		}
	}
	a.User = user
	if done && !alive {
		s.noteAuth(a)
		return false
	}
	if !done {
		switch {
		case sc.AuthReply != "":
			reply = sc.AuthReply
		case user == sc.AuthUser && pass == sc.AuthPassword && sc.AuthUser != "":
			reply = authOK
		default:
			reply = authInvalid
		}
	}
	a.Reply = reply
	a.OK = strings.HasPrefix(reply, "235")
	if a.OK {
		c.auth.mech, c.auth.user = mech, user
	}
	s.noteAuth(a)
	return s.answer(c, reply, "")
}

func (s *Server) noteAuth(a AuthAttempt) {
	s.mu.Lock()
	s.authAttempts = append(s.authAttempts, a)
	s.mu.Unlock()
}

// recordAuth copies the connection's AUTH state into a transaction.
func (c *conn) recordAuth(m *Message) {
	m.AuthMech, m.AuthUser = c.auth.mech, c.auth.user
	m.PasswordInCleartext = c.auth.pwClear
}
