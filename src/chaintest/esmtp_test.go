package chaintest

// ESMTP through the whole chain: PIPELINING, SIZE, 8BITMIME, SMTPUTF8 and
// enhanced status codes, with the entry program's pre-scan
// (QMAILREMOTE_MSGBYTES, QMAILREMOTE_MSG8BIT) feeding qmail-remote-io.

import (
	"fmt"
	"strings"
	"testing"

	"qmail-remote-go/src/testkit/smtptest"
)

const ehloAll = "250-mx.example.test\n250-PIPELINING\n250-SIZE 10240000\n250-8BITMIME\n250-SMTPUTF8\n250 ENHANCEDSTATUSCODES"

// session returns the server's one finished session. The client has
// exited, so the session ends at once; leftWait is a backstop.
func session(t *testing.T, srv *smtptest.Server) smtptest.Session {
	t.Helper()
	ss := srv.WaitSessions(1, leftWait)
	if len(ss) != 1 || !ss[0].Done {
		t.Fatalf("server sessions: %+v", ss)
	}
	return ss[0]
}

// TestESMTPDelivery: a server offering everything gets SIZE= with the
// exact wire size, the envelope and DATA in one write, and the message
// byte-exact, in 4 round trips.
func TestESMTPDelivery(t *testing.T) {
	srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{Ehlo: ehloAll, KeepData: true})
	h := newHome(t)
	route(h, srv)
	res := h.run(sample, "example.test", "a@client.example.test", "b@example.test", "c@example.test")
	res.expect(t, 'K', "127.0.0.1 accepted message.")
	if res.rcptLetters() != "rr" {
		t.Errorf("recipient reports %q", res.raw)
	}
	m := srv.Messages()
	if len(m) != 1 || string(m[0].Data) != wire(sample) {
		t.Fatalf("server got %+v", m)
	}
	// SIZE= counts the body as it went, plus the final ".\r\n".
	if want := fmt.Sprintf("MAIL FROM:<a@client.example.test> SIZE=%d", len(wire(sample))+3); m[0].From != want {
		t.Errorf("MAIL line %q, want %q", m[0].From, want)
	}
	s := session(t, srv)
	if len(s.Lines) != 6 || s.LineReads[1] != s.LineReads[4] || s.Lines[4] != "DATA" {
		t.Errorf("server got %q in reads %v", s.Lines, s.LineReads)
	}
	if s.Turnarounds > 4 {
		t.Errorf("%d round trips, want at most 4", s.Turnarounds)
	}
	t.Logf("pipelined delivery through the chain: %d round trips after the TCP handshake", s.Turnarounds)

	// The same without PIPELINING, for comparison.
	srv = smtptest.Start(t, "127.0.0.1:0", smtptest.Script{Ehlo: "250-mx.example.test\n250 8BITMIME"})
	route(h, srv)
	h.run(sample, "example.test", "a@client.example.test", "b@example.test", "c@example.test").expect(t, 'K')
	if s := session(t, srv); s.Turnarounds != 7 {
		t.Errorf("lock-step: %d round trips, want 7", s.Turnarounds)
	} else {
		t.Logf("lock-step delivery through the chain (2 recipients): %d round trips", s.Turnarounds)
	}
}

// TestPipelinedReplyClasses: the replies of a pipelined transaction map
// as in lock-step, and no message content goes out unless a recipient
// was accepted and DATA got 354.
func TestPipelinedReplyClasses(t *testing.T) {
	three := []string{"one@example.test", "two@example.test", "three@example.test"}
	for _, tc := range []struct {
		name    string
		script  smtptest.Script
		rcptsW  string
		letter  byte
		want    []string
		body    bool // the server has the whole message
		loneDot bool // the server got an empty DATA
	}{
		{"MAIL 553, RCPT and DATA 503", smtptest.Script{Mail: "553 5.1.8 sender unknown", Rcpt: []string{"503 5.5.1 sender first", "503 5.5.1 sender first", "503 5.5.1 sender first"}, Data: "503 5.5.1 no recipients"},
			"", 'D', []string{"sender was rejected", "Remote host said: 553 5.1.8 sender unknown"}, false, false},
		{"MAIL 451, RCPT and DATA 503", smtptest.Script{Mail: "451 4.7.1 greylisted", Rcpt: []string{"503 no", "503 no", "503 no"}, Data: "503 no"},
			"", 'Z', []string{"sender was rejected", "451 4.7.1 greylisted"}, false, false},
		{"MAIL 553, DATA 354 anyway", smtptest.Script{Mail: "553 no", Rcpt: []string{"503 no", "503 no", "503 no"}},
			"", 'D', []string{"sender was rejected"}, false, true},
		{"one RCPT rejected among accepted", smtptest.Script{Rcpt: []string{"250 2.1.5 ok", "550 5.1.1 no such user", "250 2.1.5 ok"}},
			"rhr", 'K', []string{"accepted message"}, true, false},
		{"all RCPT rejected, DATA refused", smtptest.Script{Rcpt: []string{"550 no", "551 no", "452 full"}, Data: "554 5.5.1 no valid recipients"},
			"hhs", 'D', []string{"Giving up on 127.0.0.1."}, false, false},
		{"all RCPT rejected, DATA 354", smtptest.Script{Rcpt: []string{"550 no", "551 no", "452 full"}},
			"hhs", 'D', []string{"Giving up on 127.0.0.1."}, false, true},
		{"DATA 554", smtptest.Script{Data: "554 5.3.4 no"}, "rrr", 'D', []string{"failed on DATA command", "554 5.3.4 no"}, false, false},
		{"DATA 451", smtptest.Script{Data: "451 4.3.0 later"}, "rrr", 'Z', []string{"failed on DATA command", "451 4.3.0 later"}, false, false},
		{"RCPT reply lost", smtptest.Script{Rcpt: []string{"250 ok", smtptest.Close}}, "r", 'Z', []string{"connection died"}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.script.Ehlo, tc.script.KeepData = ehloAll, true
			srv := smtptest.Start(t, "127.0.0.1:0", tc.script)
			h := newHome(t)
			route(h, srv)
			res := h.run(sample, append([]string{"example.test", "a@client.example.test"}, three...)...)
			res.expect(t, tc.letter, tc.want...)
			if res.rcptLetters() != tc.rcptsW {
				t.Errorf("recipient reports %q, want letters %q", res.raw, tc.rcptsW)
			}
			// The client does not wait for the reply to a lone dot:
			// the server's session may still be reading it.
			s := session(t, srv)
			var body, dot bool
			for _, m := range srv.Messages() {
				body = body || m.Done && string(m.Data) == wire(sample)
				dot = dot || m.Done && m.Len == 0
				if m.Len > 0 && !tc.body {
					t.Errorf("message content went out: %+v", m)
				}
			}
			if body != tc.body || dot != tc.loneDot {
				t.Errorf("server has the message: %v, a lone dot: %v; want %v, %v", body, dot, tc.body, tc.loneDot)
			}
			if l := strings.Join(s.Lines, "|"); !strings.Contains(l, "MAIL FROM:<a@client.example.test> SIZE=") {
				t.Errorf("server got %q", l)
			}
		})
	}
}

// TestSizeLimit: a server whose SIZE is smaller gets no transaction: D
// (#5.3.4), no MAIL, no other MX tried.
func TestSizeLimit(t *testing.T) {
	big := sample + strings.Repeat("x\n", 1000)
	for _, tc := range []struct {
		name, size string
		letter     byte
	}{
		{"smaller", "1000", 'D'},
		{"larger", "1000000", 'K'},
		{"zero", "0", 'K'},
		{"malformed", "1k", 'K'},
		{"absent", "", 'K'},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ehlo := "250-mx.example.test\n250-PIPELINING\n250 SIZE " + tc.size
			if tc.size == "" {
				ehlo = "250-mx.example.test\n250 PIPELINING"
			}
			srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{Ehlo: ehlo, KeepData: true})
			h := newHome(t)
			route(h, srv)
			res := h.run(big, "example.test", "a@client.example.test", "b@example.test")
			n := len(wire(big)) + 3
			if tc.letter == 'D' {
				res.expect(t, 'D', fmt.Sprintf("Sorry, the message is too big for 127.0.0.1: it is %d bytes and the server accepts at most 1000. (#5.3.4)", n))
				if l := strings.Join(session(t, srv).Lines, "|"); l != "EHLO client.example.test|QUIT" || srv.Conns() != 1 {
					t.Errorf("server got %q over %d connections", l, srv.Conns())
				}
				return
			}
			res.expect(t, 'K')
			m := srv.Messages()
			want := "MAIL FROM:<a@client.example.test>"
			if tc.size != "" {
				want += fmt.Sprintf(" SIZE=%d", n)
			}
			if len(m) != 1 || m[0].From != want || string(m[0].Data) != wire(big) {
				t.Errorf("server got %+v, want %q", m, want)
			}
		})
	}
}

// Test8BitBody: BODY=8BITMIME for an 8-bit body when offered; without it
// the body goes unchanged.
func Test8BitBody(t *testing.T) {
	msg8 := "From: a@client.example.test\nSubject: caf\xc3\xa9\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nna\xc3\xafve \xff\n"
	for _, tc := range []struct {
		name, ehlo, msg, mail string
	}{
		{"offered", "250-mx.example.test\n250 8BITMIME", msg8, "MAIL FROM:<a@client.example.test> BODY=8BITMIME"},
		{"not offered", "250-mx.example.test\n250 PIPELINING", msg8, "MAIL FROM:<a@client.example.test>"},
		{"7-bit body", "250-mx.example.test\n250 8BITMIME", sample, "MAIL FROM:<a@client.example.test>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{Ehlo: tc.ehlo, KeepData: true})
			h := newHome(t)
			route(h, srv)
			h.run(tc.msg, "example.test", "a@client.example.test", "b@example.test").expect(t, 'K')
			if m := srv.Messages(); len(m) != 1 || m[0].From != tc.mail || string(m[0].Data) != wire(tc.msg) {
				t.Errorf("server got %+v, want %q", m, tc.mail)
			}
		})
	}
}

// TestUTF8Envelope: UTF-8 addresses go as UTF-8 with SMTPUTF8 when
// offered, quoted as stock does when not (the server decides).
func TestUTF8Envelope(t *testing.T) {
	for _, tc := range []struct {
		name, ehlo string
		want       []string
	}{
		{"offered", ehloAll, []string{"MAIL FROM:<jörg@client.example.test> SIZE=%d SMTPUTF8", "RCPT TO:<用户@example.test>", "RCPT TO:<b@example.test>"}},
		{"not offered", "250-mx.example.test\n250 PIPELINING", []string{`MAIL FROM:<"jörg"@client.example.test>`, `RCPT TO:<"用户"@example.test>`, "RCPT TO:<b@example.test>"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{Ehlo: tc.ehlo, KeepData: true})
			h := newHome(t)
			route(h, srv)
			res := h.run(sample, "example.test", "jörg@client.example.test", "用户@example.test", "b@example.test")
			res.expect(t, 'K')
			if res.rcptLetters() != "rr" {
				t.Errorf("recipient reports %q", res.raw)
			}
			want := append([]string(nil), tc.want...)
			if strings.Contains(want[0], "%d") {
				want[0] = fmt.Sprintf(want[0], len(wire(sample))+3)
			}
			m := srv.Messages()
			if len(m) != 1 || strings.Join(append([]string{m[0].From}, m[0].Rcpts...), "|") != strings.Join(want, "|") {
				t.Errorf("server got %+v, want %q", m, want)
			}
		})
	}
}

// TestEnhancedCodesInReports: the server's RFC 3463 codes stay in the
// report texts; our own failures keep their (#x.y.z).
func TestEnhancedCodesInReports(t *testing.T) {
	srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{
		Ehlo:     ehloAll,
		Rcpt:     []string{"550 5.1.1 <one@example.test>: Recipient address rejected: User unknown in local recipient table"},
		AfterDot: "250 2.0.0 Ok: queued as 4ZxYw",
	})
	h := newHome(t)
	route(h, srv)
	res := h.run(sample, "example.test", "a@client.example.test", "one@example.test", "two@example.test")
	res.expect(t, 'K', "Remote host said: 250 2.0.0 Ok: queued as 4ZxYw")
	if res.rcptLetters() != "hr" || !strings.Contains(res.rcpts[0].Text, "Remote host said: 550 5.1.1 <one@example.test>: Recipient address rejected") {
		t.Errorf("recipient reports %q", res.raw)
	}
}
