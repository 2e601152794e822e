// Package smtptest is a scriptable SMTP server for tests: it listens on
// loopback, answers each command as a Script says (or misbehaves: closes,
// resets, stalls), and records what it received, byte for byte.
package smtptest

import (
	"bufio"
	"bytes"
	"crypto/sha256"
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
	done   chan struct{}
	wg     sync.WaitGroup
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

// answer sends a reply or performs a special one; false ends the session.
func (s *Server) answer(c net.Conn, w *bufio.Writer, reply string) bool {
	switch reply {
	case Close:
		return false
	case Reset:
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		return false
	case Stall:
		io.Copy(io.Discard, c)
		return false
	}
	for _, l := range strings.Split(reply, "\n") {
		w.WriteString(l + "\r\n")
	}
	return w.Flush() == nil
}

func (s *Server) session(c net.Conn) {
	r := bufio.NewReaderSize(c, 64*1024)
	w := bufio.NewWriter(c)
	sc := s.script
	if !s.answer(c, w, or(sc.Greeting, "220 smtptest ESMTP")) {
		return
	}
	var cur *Message
	nrcpt := 0
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		s.mu.Lock()
		s.lines = append(s.lines, line)
		s.mu.Unlock()
		verb := strings.ToUpper(line)
		if i := strings.IndexAny(verb, " :"); i >= 0 {
			verb = verb[:i]
		}
		var reply string
		switch verb {
		case "EHLO":
			reply = or(sc.Ehlo, "250-smtptest\n250-PIPELINING\n250 8BITMIME")
			cur = &Message{Helo: line}
		case "HELO":
			reply = or(sc.Helo, "250 smtptest")
			cur = &Message{Helo: line}
		case "MAIL":
			reply = or(sc.Mail, "250 ok")
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
			if !s.answer(c, w, reply) {
				return
			}
			if !strings.HasPrefix(reply, "354") {
				continue
			}
			if cur == nil {
				cur = &Message{}
			}
			ok := s.readBody(c, r, cur)
			if !ok {
				s.record(*cur)
				return
			}
			cur.Done = true
			cur.Answer = or(sc.AfterDot, "250 ok: queued")
			s.record(*cur)
			if !s.answer(c, w, cur.Answer) {
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
			s.answer(c, w, or(sc.Quit, "221 bye"))
			return
		case "NOOP":
			reply = "250 ok"
		default:
			reply = "502 unknown command"
		}
		if !s.answer(c, w, reply) {
			return
		}
	}
}

func (s *Server) record(m Message) {
	s.mu.Lock()
	s.msgs = append(s.msgs, m)
	s.mu.Unlock()
}

// readBody reads up to and including "\r\n.\r\n" (or a first line ".\r\n").
func (s *Server) readBody(c net.Conn, r *bufio.Reader, m *Message) bool {
	h := sha256.New()
	var keep bytes.Buffer
	atStart := true
	for {
		line, err := r.ReadSlice('\n')
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
			s.answer(c, nil, s.script.Mid)
			return false
		}
	}
}
