package smtptest

import (
	"io"
	"time"
)

// Session is what the server saw of one connection's input: its command
// lines, how they arrived, and how often the client made it wait.
//
// A turnaround is counted when the server, having written a reply since
// its last read from the connection, has to read from the connection
// again because everything it had received is used up (its buffer holds
// no complete line, or no more body). That is one client round trip: the
// client had stopped sending until it got a reply (or sent something
// the server had not asked for yet, which a correct client does not do
// except when pipelining, RFC 2920). For one delivery over a fresh
// connection the turnarounds are the waits after the greeting, after each
// reply a lock-step client waits for, and after the reply to the dot
// (the server waits for QUIT, or for the end of the connection). A client
// that waits for nothing is counted once per batch it sends; a batch that
// the network splits into several reads counts once too (only the first
// read after a reply counts). TLS handshakes are not counted (the counted
// reads are those of the SMTP layer, over TLS after STARTTLS).
type Session struct {
	Turnarounds int
	// Reads is how many reads from the connection (or the TLS layer) the
	// server's input buffer needed.
	Reads int
	// Lines are the command lines, without CRLF (body lines excluded),
	// and LineReads, for each, the number of the read (from 1) that
	// brought its last byte: commands pipelined in one write have the
	// same number.
	Lines     []string
	LineReads []int
	Done      bool // the session has ended
}

// connStats is the live Session of one connection; the server's mutex
// guards it.
type connStats struct {
	srv   *Server
	s     Session
	wrote bool // a reply went out since the last read
}

// Sessions returns what the server saw of each connection so far, in the
// order they were accepted.
func (s *Server) Sessions() []Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Session, len(s.stats))
	for i, st := range s.stats {
		out[i] = st.s
		out[i].Lines = append([]string(nil), st.s.Lines...)
		out[i].LineReads = append([]int(nil), st.s.LineReads...)
	}
	return out
}

// WaitSessions waits until n sessions have ended, for at most d, and
// returns the sessions.
func (s *Server) WaitSessions(n int, d time.Duration) []Session {
	end := time.Now().Add(d)
	for {
		ss := s.Sessions()
		done := 0
		for _, x := range ss {
			if x.Done {
				done++
			}
		}
		if done >= n || time.Now().After(end) {
			return ss
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (s *Server) newStats() *connStats {
	st := &connStats{srv: s}
	s.mu.Lock()
	s.stats = append(s.stats, st)
	s.mu.Unlock()
	return st
}

// replied notes that a reply went out.
func (st *connStats) replied() {
	if st == nil {
		return
	}
	st.srv.mu.Lock()
	st.wrote = true
	st.srv.mu.Unlock()
}

// line notes a command line, brought by the latest read.
func (st *connStats) line(l string) {
	if st == nil {
		return
	}
	st.srv.mu.Lock()
	st.s.Lines = append(st.s.Lines, l)
	st.s.LineReads = append(st.s.LineReads, st.s.Reads)
	st.srv.mu.Unlock()
}

func (st *connStats) end() {
	st.srv.mu.Lock()
	st.s.Done = true
	st.srv.mu.Unlock()
}

// countingReader sits under the session's input buffer: each Read is one
// refill, and the first refill after a reply is a turnaround.
type countingReader struct {
	r       io.Reader
	st      *connStats
	latency time.Duration
}

func (c *countingReader) Read(p []byte) (int, error) {
	st := c.st
	st.srv.mu.Lock()
	turn := st.wrote
	if turn {
		st.s.Turnarounds++
		st.wrote = false
	}
	st.s.Reads++
	st.srv.mu.Unlock()
	if turn && c.latency > 0 {
		// Script.Latency: the round trip costs this much more, as on
		// a network where the client is far away.
		select {
		case <-time.After(c.latency):
		case <-st.srv.done:
		}
	}
	return c.r.Read(p)
}
