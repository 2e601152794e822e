// Package smtptest is a scriptable SMTP server for tests: it listens on
// loopback, answers each command as a Script says (or misbehaves: closes,
// resets, stalls), and records what it received, byte for byte. With a TLS
// configuration it offers STARTTLS (RFC 3207) and can inject a response
// after its 220, to test clients against CVE-2011-0411.
package smtptest

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// Special replies: instead of answering, the server...
const (
	Close = "!close" // closes the connection
	Reset = "!reset" // closes with a TCP RST (SO_LINGER 0)
	Stall = "!stall" // reads on but never answers (until the test ends)
)

// Script says how to answer. A reply is the text of a reply, lines separated
// by "\n" (CRLF is added), e.g. "250-first\n250 last", or one of the
// special replies above. Empty fields take the defaults shown.
type Script struct {
	Greeting string   // "220 smtptest ESMTP"
	Ehlo     string   // "250-smtptest\n250-PIPELINING\n250 8BITMIME"
	Helo     string   // "250 smtptest"
	Mail     string   // "250 ok"
	Rcpt     []string // one per RCPT, in order; past its end: "250 ok"
	Data     string   // "354 go ahead"
	AfterDot string   // "250 ok: queued"
	Quit     string   // "221 bye"
	Rset     string   // "250 ok"
	// Mid, if set, is done instead of reading the rest of the body once
	// MidAfter body bytes have arrived (Close, Reset or Stall).
	Mid      string
	MidAfter int
	// KeepData keeps each message body in memory (Message.Data); without it
	// only its length and SHA-256 are kept, for large bodies.
	KeepData bool

	// NoGreeting: the server sends no greeting and waits for the first
	// command, as after a TLS handshake (for a client's second run).
	NoGreeting bool
	// TLS, when set, makes the server offer STARTTLS: a "250-STARTTLS"
	// line goes into a 2xx EHLO reply (after its first line), and a 220
	// to STARTTLS is followed by a handshake with this configuration.
	TLS *tls.Config
	// StartTLS is the reply to STARTTLS: "220 ready" (with TLS set; "502
	// unknown command" without TLS and StartTLS), or e.g. "454 TLS not
	// available", or a special reply. A 220 resets the session (RFC 3207
	// 4.2: the client must EHLO again), even without TLS: then the
	// conversation simply goes on in cleartext, which lets a test stand in
	// a fake TLS stage.
	StartTLS string
	// Inject is sent right after the 220 to STARTTLS, in the same write
	// and in cleartext: a response injected before the handshake.
	Inject string
	// Handshake, if set, is done instead of the TLS handshake after a
	// 220 to STARTTLS (faults.go): Close, Reset, Stall, Freeze, or raw
	// bytes sent where the ServerHello should be.
	Handshake string
	// EhloAfterTLS is the EHLO reply after STARTTLS; default: Ehlo (or its
	// default), without the STARTTLS line.
	EhloAfterTLS string
	// Latency delays the server's read after each reply it writes, as
	// if every client round trip took that much longer (esmtp.go).
	Latency time.Duration

	// AUTH and SMTPS (auth.go): the SASL mechanisms offered ("PLAIN
	// LOGIN"; "" none), under TLS only unless AuthCleartext (before TLS
	// too) or AuthOnlyCleartext (before TLS only); the credentials that
	// succeed; a fixed reply instead of checking them. SMTPS: the TLS
	// handshake (with TLS) comes right after accept, then the greeting;
	// without TLS, the session counts as under TLS from the start.
	Auth              string
	AuthCleartext     bool
	AuthOnlyCleartext bool
	AuthUser          string
	AuthPassword      string
	AuthReply         string
	SMTPS             bool
}

// Message is one received mail transaction.
type Message struct {
	Helo   string   // the EHLO or HELO line, without CRLF
	From   string   // the MAIL line, without CRLF
	Rcpts  []string // the RCPT lines, without CRLF
	Data   []byte   // the body as received (dot-stuffed, CRLF), without the final ".\r\n"; only with KeepData
	Len    int64    // length of that body
	Sum    [32]byte // its SHA-256
	Done   bool     // the final "." arrived
	Answer string   // what the server answered after the dot

	TLS        bool   // the transaction ran under TLS (after a handshake)
	TLSVersion uint16 // tls.VersionTLS13 ...
	TLSCipher  uint16 // tls.TLS_AES_128_GCM_SHA256 ...
	ServerName string // the SNI the client sent
	ClientCert bool   // the client presented a certificate
	// ClientSubject is the client certificate's subject (pkix.Name's
	// String, e.g. "CN=client").
	ClientSubject string
	// StartTLS: a 220 to STARTTLS came before this transaction on its
	// connection (with or without a handshake).
	StartTLS bool
	// Commands is every command line of the connection up to this
	// transaction's end, in order, STARTTLS and what came before it
	// included (body lines excluded).
	Commands []string
	// AuthMech and AuthUser: the connection's successful AUTH (auth.go).
	AuthMech, AuthUser string
	// PasswordInCleartext: Script.AuthPassword came before TLS on this
	// connection, as is or base64-encoded.
	PasswordInCleartext bool
}

// Server is a running test server.
type Server struct {
	Addr   string // host:port
	Host   string
	Port   string
	script Script
	ln     net.Listener
	mu     sync.Mutex
	msgs   []Message
	lines  []string // every command line received, in order, over all sessions
	conns  int
	stats  []*connStats // per connection (esmtp.go)
	done   chan struct{}
	wg     sync.WaitGroup

	// AUTH (auth.go)
	authAttempts []AuthAttempt
	pwClear      bool
}

// Start listens on addr ("127.0.0.1:0", "[::1]:0") and serves until the test
// ends. It skips the test when the address family is not available.
func Start(t testing.TB, addr string, s Script) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	srv := &Server{Addr: ln.Addr().String(), script: s, ln: ln, done: make(chan struct{})}
	srv.Host, srv.Port, _ = net.SplitHostPort(srv.Addr)
	srv.wg.Add(1)
	go srv.serve()
	t.Cleanup(srv.Close)
	return srv
}

// Close stops the server and waits for its sessions to end.
func (s *Server) Close() {
	select {
	case <-s.done:
		return
	default:
	}
	close(s.done)
	s.ln.Close()
	s.wg.Wait()
}

// Messages returns the transactions received so far.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Lines returns every command line received so far.
func (s *Server) Lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lines...)
}

// Conns returns the number of connections accepted so far.
func (s *Server) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns++
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			// Unblock reads when the server closes.
			stop := make(chan struct{})
			defer close(stop)
			go func() {
				select {
				case <-s.done:
					c.SetDeadline(time.Now())
				case <-stop:
				}
			}()
			s.session(c)
		}()
	}
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// conn is one session's connection: the TCP socket, and what the session
// reads and writes, which becomes the TLS layer after STARTTLS.
type conn struct {
	raw net.Conn // the socket, for RST
	c   net.Conn // the socket or the TLS connection over it
	r   *bufio.Reader
	w   *bufio.Writer
	tls *tls.ConnectionState // after a handshake
	st  *connStats           // turnarounds and line arrival (esmtp.go)

	auth connAuth // auth.go
}

// handshakeTimeout bounds a TLS handshake: a client that never starts one
// must not keep the server busy beyond the test.
const handshakeTimeout = 30 * time.Second

// answer sends a reply or performs a special one; false ends the session.
// extra, if any, goes out in the same write, right after the reply.
func (s *Server) answer(c *conn, reply, extra string) bool {
	switch reply {
	case Close:
		return false
	case Reset:
		if tc, ok := c.raw.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		return false
	case Stall:
		io.Copy(io.Discard, c.c)
		return false
	case Freeze:
		s.freeze() // faults.go
		return false
	}
	for _, l := range strings.Split(reply, "\n") {
		c.w.WriteString(l + "\r\n")
	}
	c.w.WriteString(extra)
	ok := c.w.Flush() == nil
	c.st.replied()
	return ok
}

// withSTARTTLS adds a "250-STARTTLS" line after the first line of a 2xx
// EHLO reply.
func withSTARTTLS(reply string) string {
	if !strings.HasPrefix(reply, "2") || strings.HasPrefix(reply, "!") {
		return reply
	}
	lines := strings.Split(reply, "\n")
	if len(lines) == 1 {
		first := lines[0]
		if len(first) >= 4 {
			first = first[:3] + "-" + first[4:]
		} else {
			first += "-"
		}
		return first + "\n" + first[:3] + " STARTTLS"
	}
	return lines[0] + "\n" + lines[0][:3] + "-STARTTLS\n" + strings.Join(lines[1:], "\n")
}

func (s *Server) session(raw net.Conn) {
	sc := s.script
	st := s.newStats()
	defer st.end()
	c := &conn{raw: raw, c: raw, r: bufio.NewReaderSize(&countingReader{raw, st, sc.Latency}, 64*1024), w: bufio.NewWriter(raw), st: st}
	if sc.SMTPS && !s.smtpsStart(c) {
		return
	}
	if !sc.NoGreeting && !s.answer(c, or(sc.Greeting, "220 smtptest ESMTP"), "") {
		return
	}
	var cur *Message
	var cmds []string
	nrcpt := 0
	startTLS := false // a 220 to STARTTLS has been sent
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		c.st.line(line)
		s.checkCleartext(c, line, startTLS)
		s.mu.Lock()
		s.lines = append(s.lines, line)
		s.mu.Unlock()
		cmds = append(cmds, line)
		verb := strings.ToUpper(line)
		if i := strings.IndexAny(verb, " :"); i >= 0 {
			verb = verb[:i]
		}
		var reply string
		switch verb {
		case "EHLO":
			reply = or(sc.Ehlo, "250-smtptest\n250-PIPELINING\n250 8BITMIME")
			switch {
			case startTLS:
				reply = or(sc.EhloAfterTLS, reply)
			case sc.TLS != nil && c.tls == nil:
				reply = withSTARTTLS(reply)
			}
			reply = s.withAuth(c, reply, startTLS)
			cur = &Message{Helo: line}
		case "HELO":
			reply = or(sc.Helo, "250 smtptest")
			cur = &Message{Helo: line}
		case "STARTTLS":
			switch {
			case startTLS:
				reply = "503 5.5.1 TLS already active"
			case sc.TLS == nil && sc.StartTLS == "":
				reply = "502 unknown command"
			default:
				reply = or(sc.StartTLS, "220 ready")
			}
			if !strings.HasPrefix(reply, "220") {
				break
			}
			if !s.answer(c, reply, sc.Inject) {
				return
			}
			// RFC 3207 4.2: the server forgets everything it knew from
			// the client, EHLO included.
			startTLS = true
			cur = nil
			nrcpt = 0
			if sc.TLS == nil {
				continue
			}
			if sc.Handshake != "" {
				s.handshakeFault(c, sc.Handshake)
				return
			}
			// Whatever the client sent after STARTTLS and before the
			// handshake is dropped with the cleartext reader (the
			// server side of CVE-2011-0411).
			tc := tls.Server(raw, sc.TLS)
			raw.SetDeadline(time.Now().Add(handshakeTimeout))
			if s.closing() {
				return
			}
			err := tc.Handshake()
			// Clear the deadline, then look at done: Close sets its
			// deadline after closing done, so it cannot be lost.
			raw.SetDeadline(time.Time{})
			if err != nil || s.closing() {
				return
			}
			st := tc.ConnectionState()
			c.c, c.tls = tc, &st
			c.r, c.w = bufio.NewReaderSize(&countingReader{tc, c.st, sc.Latency}, 64*1024), bufio.NewWriter(tc)
			continue
		case "AUTH":
			if !s.auth(c, line, startTLS) {
				return
			}
			continue
		case "MAIL":
			reply = or(sc.Mail, "250 ok")
			if r := s.authMail(c); r != "" {
				reply = r
			}
			if cur == nil {
				cur = &Message{}
			}
			cur.From = line
		case "RCPT":
			reply = "250 ok"
			if nrcpt < len(sc.Rcpt) && sc.Rcpt[nrcpt] != "" {
				reply = sc.Rcpt[nrcpt]
			}
			nrcpt++
			if cur != nil {
				cur.Rcpts = append(cur.Rcpts, line)
			}
		case "DATA":
			reply = or(sc.Data, "354 go ahead")
			if !s.answer(c, reply, "") {
				return
			}
			if !strings.HasPrefix(reply, "354") {
				continue
			}
			if cur == nil {
				cur = &Message{}
			}
			ok := s.readBody(c, cur)
			if !ok {
				s.record(c, *cur, startTLS, cmds)
				return
			}
			cur.Done = true
			cur.Answer = or(sc.AfterDot, "250 ok: queued")
			s.record(c, *cur, startTLS, cmds)
			if !s.answer(c, cur.Answer, "") {
				return
			}
			cur = &Message{Helo: cur.Helo}
			nrcpt = 0
			continue
		case "RSET":
			reply = or(sc.Rset, "250 ok")
			if cur != nil {
				cur = &Message{Helo: cur.Helo}
			}
			nrcpt = 0
		case "QUIT":
			s.answer(c, or(sc.Quit, "221 bye"), "")
			return
		case "NOOP":
			reply = "250 ok"
		default:
			reply = "502 unknown command"
		}
		if !s.answer(c, reply, "") {
			return
		}
	}
}

// closing says whether Close has been called.
func (s *Server) closing() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// record keeps a transaction, with what is known of its connection.
func (s *Server) record(c *conn, m Message, startTLS bool, cmds []string) {
	m.StartTLS = startTLS
	c.recordAuth(&m)
	m.Commands = append([]string(nil), cmds...)
	if st := c.tls; st != nil {
		m.TLS = true
		m.TLSVersion = st.Version
		m.TLSCipher = st.CipherSuite
		m.ServerName = st.ServerName
		if len(st.PeerCertificates) > 0 {
			m.ClientCert = true
			m.ClientSubject = st.PeerCertificates[0].Subject.String()
		}
	}
	s.mu.Lock()
	s.msgs = append(s.msgs, m)
	s.mu.Unlock()
}

// readBody reads up to and including "\r\n.\r\n" (or a first line ".\r\n").
func (s *Server) readBody(c *conn, m *Message) bool {
	h := sha256.New()
	var keep bytes.Buffer
	atStart := true
	for {
		line, err := c.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			err = nil
		} else if err != nil {
			return false
		}
		if atStart && string(line) == ".\r\n" {
			copy(m.Sum[:], h.Sum(nil))
			if s.script.KeepData {
				m.Data = keep.Bytes()
			}
			return true
		}
		atStart = line[len(line)-1] == '\n'
		h.Write(line)
		m.Len += int64(len(line))
		if s.script.KeepData {
			keep.Write(line)
		}
		if s.script.Mid != "" && m.Len >= int64(s.script.MidAfter) {
			s.answer(c, s.script.Mid, "")
			return false
		}
	}
}

// StartSamePort starts a server with its script at each address, all on
// one port (a test's MX hosts share the port the chain is told to use),
// and returns the port and the servers by address. A port free on the
// first address may be taken on another: bounded retries.
func StartSamePort(t testing.TB, scripts map[string]Script, addrs ...string) (string, map[string]*Server) {
	t.Helper()
	for try := 0; try < 20; try++ {
		out := map[string]*Server{}
		first := Start(t, net.JoinHostPort(addrs[0], "0"), scripts[addrs[0]])
		out[addrs[0]] = first
		ok := true
		for _, a := range addrs[1:] {
			ln, err := net.Listen("tcp", net.JoinHostPort(a, first.Port))
			if err != nil {
				ok = false
				break
			}
			ln.Close()
		}
		if !ok {
			first.Close()
			continue
		}
		for _, a := range addrs[1:] {
			out[a] = Start(t, net.JoinHostPort(a, first.Port), scripts[a])
		}
		return first.Port, out
	}
	t.Fatal("no common free port")
	return "", nil
}
