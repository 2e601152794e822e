package main

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serveOne has s serve one connection on loopback and returns the client's
// end of it, with a 10 s deadline, and a channel closed when the session
// is over.
func serveOne(t *testing.T, s *sink) (net.Conn, chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		// The listener closes once it has accepted: closed before, it
		// would drop the connection still in its queue.
		c, err := ln.Accept()
		ln.Close()
		if err == nil {
			s.serve(c)
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(60 * time.Second)) // a backstop: the sink answers at once
	return c, done
}

// converse runs one client conversation against a sink on loopback and
// returns every reply line the sink sent.
func converse(t *testing.T, s *sink, client string) []string {
	t.Helper()
	c, done := serveOne(t, s)
	if _, err := c.Write([]byte(client)); err != nil {
		t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	select {
	case <-done:
	case <-time.After(60 * time.Second): // a backstop
		t.Fatal("the sink did not end the session")
	}
	return lines
}

func TestStoresUnstuffedBody(t *testing.T) {
	dir := t.TempDir()
	s := &sink{dir: dir, timeout: 5 * time.Second}
	replies := converse(t, s, "EHLO client.example.test\r\n"+
		"MAIL FROM:<a@example.test> SIZE=40\r\nRCPT TO:<b@example.test>\r\nRCPT TO:<c@example.test>\r\nDATA\r\n"+
		"Subject: x\r\n\r\n..dot\r\n.\n\r\nbare\rcr\r\n.\r\nQUIT\r\n")
	last := replies[len(replies)-2:]
	if !strings.HasPrefix(last[0], "250 ") || !strings.HasPrefix(last[1], "221 ") {
		t.Fatalf("replies %q", replies)
	}
	body, err := os.ReadFile(filepath.Join(dir, "1.eml"))
	if err != nil {
		t.Fatal(err)
	}
	// ".\n" does not end DATA (only CRLF.CRLF does); its dot is taken as
	// stuffing, and the bare LF and bare CR are counted.
	if want := "Subject: x\r\n\r\n.dot\r\n\n\r\nbare\rcr\r\n"; string(body) != want {
		t.Errorf("body %q, want %q", body, want)
	}
	env, err := os.ReadFile(filepath.Join(dir, "1.env"))
	if err != nil {
		t.Fatal(err)
	}
	want := "EHLO client.example.test\nMAIL FROM:<a@example.test> SIZE=40\nRCPT TO:<b@example.test>\nRCPT TO:<c@example.test>\n" +
		"X-Sink-Body: 32 bytes, 1 bare CR, 1 bare LF\nX-Sink-TLS: no\n"
	if string(env) != want {
		t.Errorf("envelope %q, want %q", env, want)
	}
}

func TestSequenceErrorsAndRset(t *testing.T) {
	dir := t.TempDir()
	s := &sink{dir: dir, timeout: 5 * time.Second}
	replies := converse(t, s, "HELO c.example.test\r\nDATA\r\nRCPT TO:<b@example.test>\r\n"+
		"MAIL FROM:<>\r\nRSET\r\nDATA\r\nNOOP\r\nBOGUS\r\nSTARTTLS\r\nQUIT\r\n")
	var codes []string
	for _, l := range replies {
		codes = append(codes, l[:3])
	}
	// No certificate: no STARTTLS (502).
	if got, want := strings.Join(codes, " "), "220 250 503 503 250 250 503 250 502 502 221"; got != want {
		t.Errorf("reply codes %s, want %s", got, want)
	}
	if s.seq.Load() != 0 {
		t.Errorf("%d messages stored, want 0", s.seq.Load())
	}
}

func TestLongLinesStreamAndDiscard(t *testing.T) {
	s := &sink{discard: true, timeout: 5 * time.Second}
	long := strings.Repeat("x", 3*maxLine+17)
	replies := converse(t, s, "EHLO c.example.test\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n"+
		long+"\r\n."+long+"\r\n.\r\nQUIT\r\n")
	if got := replies[len(replies)-2]; !strings.HasPrefix(got, "250 ") {
		t.Fatalf("after the dot: %q", got)
	}
	if got, want := s.bytes.Load(), int64(2*(len(long)+2)); got != want {
		t.Errorf("%d body bytes counted, want %d", got, want)
	}
}
