package smtptest

import (
	"fmt"
	"testing"
	"time"
)

// TestSessions: turnarounds and read numbers, lock-step and pipelined.
func TestSessions(t *testing.T) {
	srv := Start(t, "127.0.0.1:0", Script{Rcpt: []string{"250 ok", "550 no"}})

	// Lock-step: every command waits for its reply.
	c := dial(t, srv.Addr)
	c.reply()
	for _, l := range []string{"EHLO a.example.test", "MAIL FROM:<a@example.test>", "RCPT TO:<b@example.test>", "DATA"} {
		c.cmd(l)
	}
	c.cmd("hi\r\n.")
	c.cmd("QUIT")
	ss := srv.WaitSessions(1, 30*time.Second)
	if len(ss) != 1 || !ss[0].Done {
		t.Fatalf("sessions %+v", ss)
	}
	// greeting, EHLO, MAIL, RCPT, DATA, dot: 6 waits.
	if s := ss[0]; s.Turnarounds != 6 || fmt.Sprint(s.LineReads) != "[1 2 3 4 6]" || len(s.Lines) != 6-1 {
		t.Errorf("lock-step: %+v", s)
	}

	// Pipelined: MAIL, RCPTs and DATA in one write, answered in order;
	// the body and the dot in one write, then QUIT without waiting.
	c = dial(t, srv.Addr)
	c.reply()
	c.cmd("EHLO a.example.test")
	c.c.Write([]byte("MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nRCPT TO:<c@example.test>\r\nDATA\r\n"))
	for i, want := range []string{"250 ok", "250 ok", "550 no", "354 go ahead"} {
		if r := c.reply(); r != want {
			t.Fatalf("pipelined reply %d: %q, want %q", i, r, want)
		}
	}
	if r := c.cmd("hi\r\n."); r != "250 ok: queued" {
		t.Fatalf("after the dot: %q", r)
	}
	c.c.Write([]byte("QUIT\r\n"))
	ss = srv.WaitSessions(2, 30*time.Second)
	if len(ss) != 2 || !ss[1].Done {
		t.Fatalf("sessions %+v", ss)
	}
	if s := ss[1]; s.Turnarounds != 4 || fmt.Sprint(s.LineReads) != "[1 2 2 2 2 4]" {
		t.Errorf("pipelined: %+v", s)
	}
}

// TestLatency: each turnaround costs Script.Latency.
func TestLatency(t *testing.T) {
	srv := Start(t, "127.0.0.1:0", Script{Latency: 50 * time.Millisecond})
	// From before the dial: the server's first wait starts when it has
	// written the greeting, which can come before a clock read after
	// the dial on a busy machine.
	start := time.Now()
	c := dial(t, srv.Addr)
	c.reply()
	c.cmd("EHLO a.example.test")
	c.cmd("NOOP")
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("3 replies with 2 turnarounds in %v", d)
	}
}
