package qmailremoteio

// Transcript tests: the session's logic against a scripted server in the
// same goroutine's reach, no socket, no sleep (as Go's net/smtp tests
// do). The server answers each line the client writes at once, as a real
// one would after reading it; what it has said and the client has not
// read yet is what the kernel would hold, so the out-of-step checks see
// it exactly. The program tests (main_test.go and the others) run the
// same session through the real binary on real sockets.

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"qmail-remote-go/src/internal/chain"
	"qmail-remote-go/src/internal/chainenv"
	"qmail-remote-go/src/internal/report"
)

// scripted is a server that answers by a script: for each command (its
// verb, or "." for the end of the message), the reply to send, with "\n"
// between lines; a missing verb gets "250 ok". greeting is sent first.
// hold makes the server say nothing to a verb (the client then reads the
// end of the connection).
type scripted struct {
	mu      sync.Mutex
	cond    *sync.Cond
	unread  bytes.Buffer // said, not read by the client
	partial []byte       // client's bytes since the last line end
	lines   []string     // every line the client wrote
	inData  bool
	replies map[string]string
	closed  bool
}

func newScripted(greeting string, replies map[string]string) *scripted {
	s := &scripted{replies: replies}
	s.cond = sync.NewCond(&s.mu)
	s.say(greeting)
	return s
}

func (s *scripted) say(text string) {
	for _, l := range strings.Split(text, "\n") {
		s.unread.WriteString(l + "\r\n")
	}
	s.cond.Broadcast()
}

// Read waits for what the server said; a server done talking (its script
// has nothing more, or it closed) gives the end of the connection.
func (s *scripted) Read(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.unread.Len() == 0 && !s.closed {
		s.cond.Wait()
	}
	if s.unread.Len() == 0 {
		return 0, os.ErrClosed
	}
	return s.unread.Read(p)
}

func (s *scripted) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.partial = append(s.partial, p...)
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := strings.TrimSuffix(string(s.partial[:i]), "\r")
		s.partial = s.partial[i+1:]
		s.lines = append(s.lines, line)
		verb := strings.ToUpper(strings.Fields(line + " x")[0])
		if s.inData {
			if line != "." {
				continue
			}
			s.inData, verb = false, "."
		}
		reply, ok := s.replies[verb]
		if !ok {
			switch verb {
			case "DATA":
				reply = "354 go ahead"
			case "QUIT":
				reply = "221 bye"
			default:
				reply = "250 ok"
			}
		}
		if reply == "close" {
			s.closed = true
			s.cond.Broadcast()
			continue
		}
		s.say(reply)
		s.inData = verb == "DATA" && strings.HasPrefix(reply, "354")
	}
}

func (s *scripted) SetReadDeadline(time.Time) error  { return nil }
func (s *scripted) SetWriteDeadline(time.Time) error { return nil }

// Arrived: what the server said that the client's buffer has not taken.
func (s *scripted) Arrived() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unread.Len()
}

func (s *scripted) Shutdown() {
	s.mu.Lock()
	s.closed = true
	s.cond.Broadcast()
	s.mu.Unlock()
}

// transcript runs one session over srv and returns its reports and exit.
func transcript(t *testing.T, srv *scripted, msg string, rcpts ...string) (string, chain.Ended) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "msg")
	if err := os.WriteFile(p, []byte(msg), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out bytes.Buffer
	so := chain.Stdout
	chain.Stdout = &out
	defer func() { chain.Stdout = so }()
	s := &session{
		cfg: config{helo: "client.example.test", sender: "a@example.test", rcpts: rcpts,
			timeout: time.Minute, ip: "192.0.2.1", tlsMode: chainenv.TLSNone},
		r: srv, w: srv, sock: srv, msg: f,
	}
	s.br = bufio.NewReaderSize(s.r, 4096)
	e := s.run()
	return strings.ReplaceAll(out.String(), "\x00", "|"), e
}

const transcriptMsg = "Subject: x\n\n.hidden\nbody\n"

func TestTranscript(t *testing.T) {
	pipelining := "250-server.example.test\n250-PIPELINING\n250 8BITMIME"
	for _, tc := range []struct {
		name     string
		greeting string
		replies  map[string]string
		rcpts    []string
		out      string   // the reports, NUL shown as |
		code     int      // exit code
		lines    []string // what the client sent, in order ("" skips a check)
	}{
		{"delivered, lock-step", "220 hi", nil, []string{"b@example.test"},
			"r|K192.0.2.1 accepted message.\nRemote host said: 250 ok\n|", 0,
			[]string{"EHLO client.example.test", "MAIL FROM:<a@example.test>", "RCPT TO:<b@example.test>", "DATA",
				"Subject: x", "", "..hidden", "body", ".", "QUIT"}},
		{"delivered, pipelined", "220 hi", map[string]string{"EHLO": pipelining}, []string{"b@example.test", "c@example.test"},
			"r|r|K192.0.2.1 accepted message.\nRemote host said: 250 ok\n|", 0,
			[]string{"EHLO client.example.test", "MAIL FROM:<a@example.test>", "RCPT TO:<b@example.test>", "RCPT TO:<c@example.test>", "DATA"}},
		{"greeting refused: next candidate", "554 go away", nil, []string{"b@example.test"},
			"ZConnected to 192.0.2.1 but greeting failed.\nRemote host said: 554 go away\n|", chain.ExitNextCandidate,
			[]string{"QUIT"}},
		{"no EHLO, HELO", "220 hi", map[string]string{"EHLO": "502 what"}, []string{"b@example.test"},
			"r|K192.0.2.1 accepted message.\nRemote host said: 250 ok\n|", 0,
			[]string{"EHLO client.example.test", "HELO client.example.test", "MAIL FROM:<a@example.test>"}},
		{"the recipient refused", "220 hi", map[string]string{"RCPT": "550 no such user"}, []string{"b@example.test"},
			"h192.0.2.1 does not like recipient.\nRemote host said: 550 no such user\n|DGiving up on 192.0.2.1.\n|", 0, nil},
		{"sender refused", "220 hi", map[string]string{"MAIL": "553 bad sender"}, []string{"b@example.test"},
			"DConnected to 192.0.2.1 but sender was rejected.\nRemote host said: 553 bad sender\n|", 0, nil},
		{"DATA deferred", "220 hi", map[string]string{"DATA": "451 later"}, []string{"b@example.test"},
			"r|Z192.0.2.1 failed on DATA command.\nRemote host said: 451 later\n|", 0, nil},
		{"refused after the dot", "220 hi", map[string]string{".": "554 spam"}, []string{"b@example.test"},
			"r|D192.0.2.1 failed after I sent the message.\nRemote host said: 554 spam\n|", 0, nil},
		{"connection lost after the dot", "220 hi", map[string]string{".": "close"}, []string{"b@example.test"},
			"r|ZConnected to 192.0.2.1 but connection died. Possible duplicate! (#4.4.2)\n", 0, nil},
		// Two replies to one RCPT: the second is the answer to nothing.
		{"out of step before DATA", "220 hi", map[string]string{"RCPT": "250 ok\n250 ok"}, []string{"b@example.test"},
			"r|ZConnected to 192.0.2.1 but the session is out of step: it answered before I asked. (#4.4.2)\n", 0,
			[]string{"EHLO client.example.test", "MAIL FROM:<a@example.test>", "RCPT TO:<b@example.test>"}},
		{"greeting twice", "220 one\n220 two", nil, []string{"b@example.test"},
			"ZConnected to 192.0.2.1 but the session is out of step: it answered before I asked. (#4.4.2)\n9 bytes arrived before I sent EHLO, unasked.\n", chain.ExitNextCandidate,
			[]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newScripted(tc.greeting, tc.replies)
			out, e := transcript(t, srv, transcriptMsg, tc.rcpts...)
			if !strings.HasPrefix(out, tc.out) {
				t.Errorf("reports %q, want them to start with %q", out, tc.out)
			}
			if !e.Exited || e.Code != tc.code {
				t.Errorf("ended %+v, want exit %d", e, tc.code)
			}
			if _, err := report.Parse([]byte(strings.ReplaceAll(out, "|", "\x00")), len(tc.rcpts)); err != nil && tc.code == 0 {
				t.Errorf("reports %q: %v", out, err)
			}
			if tc.lines == nil {
				return
			}
			got := srv.lines
			if len(got) > len(tc.lines) {
				got = got[:len(tc.lines)]
			}
			if strings.Join(got, "\n") != strings.Join(tc.lines, "\n") {
				t.Errorf("the client sent\n%q\nwant it to start with\n%q", srv.lines, tc.lines)
			}
		})
	}
}
