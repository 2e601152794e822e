package qmailremoteio

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"qmail-remote-go/src/testkit/smtptest"
)

const (
	ehloPipelining = "250-smtptest\n250-PIPELINING\n250 8BITMIME"
	ehloLockStep   = "250-smtptest\n250 8BITMIME"
)

// session waits for the server's one session to end and returns it.
func oneSession(t *testing.T, srv *smtptest.Server) smtptest.Session {
	t.Helper()
	ss := srv.WaitSessions(1, 30*time.Second) // ends as soon as it has; a backstop
	if len(ss) != 1 || !ss[0].Done {
		t.Fatalf("server sessions: %+v", ss)
	}
	return ss[0]
}

// TestTransactionReplies: every reply class at every position of the
// transaction, pipelined and lock-step: the reports must be the same, and
// no message content may go out unless a recipient was accepted and DATA
// got 354.
func TestTransactionReplies(t *testing.T) {
	t.Parallel()
	three := []string{"one@example.test", "two@example.test", "three@example.test"}
	const (
		mail     = "MAIL FROM:<a@example.test>"
		rcpt1    = "RCPT TO:<one@example.test>"
		rcpts3   = "RCPT TO:<one@example.test>|RCPT TO:<two@example.test>|RCPT TO:<three@example.test>"
		rcptB    = "RCPT TO:<b@example.test>"
		ehlo     = "EHLO client.example.test"
		rejected = "Connected to 127.0.0.1 but sender was rejected.\nRemote host said: "
	)
	for _, tc := range []struct {
		name   string
		script smtptest.Script
		rcpts  []string
		letter byte
		rl     string
		text   string // the whole message report text
		// What the server got, pipelined and lock-step (QUIT included
		// when it must be sent; "" checks nothing).
		pipe, lock string
		// dot: the server got a lone dot (an empty message); body: it
		// got the message.
		dot, body bool
	}{
		{"MAIL 553, RCPT and DATA 503", smtptest.Script{Mail: "553 5.1.8 bad sender", Rcpt: []string{"503 5.5.1 sender first"}, Data: "503 5.5.1 no recipients"},
			nil, 'D', "", rejected + "553 5.1.8 bad sender\n",
			ehlo + "|" + mail + "|" + rcptB + "|DATA|QUIT", ehlo + "|" + mail + "|QUIT", false, false},
		{"MAIL 451, RCPT and DATA 503", smtptest.Script{Mail: "451 4.7.1 greylisted", Rcpt: []string{"503 sender first", "503 sender first", "503 sender first"}, Data: "503 no recipients"},
			three, 'Z', "", rejected + "451 4.7.1 greylisted\n",
			ehlo + "|" + mail + "|" + rcpts3 + "|DATA|QUIT", ehlo + "|" + mail + "|QUIT", false, false},
		{"MAIL 553, DATA 354 anyway", smtptest.Script{Mail: "553 no", Rcpt: []string{"503 no"}, KeepData: true},
			nil, 'D', "", rejected + "553 no\n",
			ehlo + "|" + mail + "|" + rcptB + "|DATA|QUIT", ehlo + "|" + mail + "|QUIT", true, false},
		{"MAIL 421 and close", smtptest.Script{Mail: "421 4.3.2 shutting down", Rcpt: []string{smtptest.Close}},
			nil, 'Z', "", rejected + "421 4.3.2 shutting down\n",
			"", "", false, false},
		{"RCPT 2xx 5xx 4xx", smtptest.Script{Rcpt: []string{"250 2.1.5 ok", "550 5.1.1 no such user", "450 4.2.1 busy"}, KeepData: true},
			three, 'K', "rhs", "127.0.0.1 accepted message.\nRemote host said: 250 ok: queued\n",
			ehlo + "|" + mail + "|" + rcpts3 + "|DATA|QUIT", ehlo + "|" + mail + "|" + rcpts3 + "|DATA|QUIT", false, true},
		{"RCPT 5xx 2xx 4xx", smtptest.Script{Rcpt: []string{"550 no", "251 forwarded", "421 later"}, KeepData: true},
			three, 'K', "hrs", "127.0.0.1 accepted message.\nRemote host said: 250 ok: queued\n",
			"", "", false, true},
		{"all RCPT rejected, DATA 554", smtptest.Script{Rcpt: []string{"550 no", "450 later", "554 never"}, Data: "554 5.5.1 no valid recipients"},
			three, 'D', "hsh", "Giving up on 127.0.0.1.\n",
			ehlo + "|" + mail + "|" + rcpts3 + "|DATA|QUIT", ehlo + "|" + mail + "|" + rcpts3 + "|QUIT", false, false},
		{"all RCPT rejected, DATA 354 anyway", smtptest.Script{Rcpt: []string{"550 no", "450 later", "554 never"}, KeepData: true},
			three, 'D', "hsh", "Giving up on 127.0.0.1.\n",
			ehlo + "|" + mail + "|" + rcpts3 + "|DATA|QUIT", ehlo + "|" + mail + "|" + rcpts3 + "|QUIT", true, false},
		{"DATA 554", smtptest.Script{Data: "554 5.3.0 no data for you"},
			[]string{"one@example.test"}, 'D', "r", "127.0.0.1 failed on DATA command.\nRemote host said: 554 5.3.0 no data for you\n",
			ehlo + "|" + mail + "|" + rcpt1 + "|DATA|QUIT", ehlo + "|" + mail + "|" + rcpt1 + "|DATA|QUIT", false, false},
		{"DATA 451", smtptest.Script{Data: "451 later"},
			nil, 'Z', "r", "127.0.0.1 failed on DATA command.\nRemote host said: 451 later\n", "", "", false, false},
		{"DATA 250", smtptest.Script{Data: "250 eh"},
			nil, 'Z', "r", "127.0.0.1 failed on DATA command.\nRemote host said: 250 eh\n", "", "", false, false},
		{"CR LF recipient among others", smtptest.Script{KeepData: true},
			[]string{"one@example.test", "x\r\nRSET@example.test", "three@example.test"}, 'K', "rhr", "127.0.0.1 accepted message.\nRemote host said: 250 ok: queued\n",
			ehlo + "|" + mail + "|" + rcpt1 + "|RCPT TO:<three@example.test>|DATA|QUIT", ehlo + "|" + mail + "|" + rcpt1 + "|RCPT TO:<three@example.test>|DATA|QUIT", false, true},
		{"only a CR LF recipient", smtptest.Script{},
			[]string{"x\r\nRSET@example.test"}, 'D', "h", "Giving up on 127.0.0.1.\n",
			ehlo + "|" + mail + "|QUIT", ehlo + "|" + mail + "|QUIT", false, false},
		{"MAIL 553 and a CR LF recipient", smtptest.Script{Mail: "553 no", Rcpt: []string{"503 no"}, Data: "503 no"},
			[]string{"x\r\nRSET@example.test", "b@example.test"}, 'D', "", rejected + "553 no\n",
			ehlo + "|" + mail + "|" + rcptB + "|DATA|QUIT", ehlo + "|" + mail + "|QUIT", false, false},
	} {
		for _, mode := range []string{"pipelined", "lock-step"} {
			t.Run(tc.name+"/"+mode, func(t *testing.T) {
				t.Parallel()
				sc := tc.script
				sc.Ehlo, sc.KeepData = ehloPipelining, true
				want := tc.pipe
				if mode == "lock-step" {
					sc.Ehlo, want = ehloLockStep, tc.lock
				}
				srv := smtptest.Start(t, "127.0.0.1:0", sc)
				r := deliver(t, srv.Addr, opts{rcpts: tc.rcpts})
				r.want(t, 0, tc.letter, tc.rl, tc.text)
				if r.text() != tc.text {
					t.Errorf("message report %q, want %q", r.text(), tc.text)
				}
				if tc.rl == "rhs" || tc.rl == "hrs" {
					rc := r.res.Rcpts
					if tc.rl == "rhs" && (rc[0].Text != "" || rc[1].Text != "127.0.0.1 does not like recipient.\nRemote host said: 550 5.1.1 no such user\n" ||
						rc[2].Text != "127.0.0.1 does not like recipient.\nRemote host said: 450 4.2.1 busy\n") {
						t.Errorf("recipient reports %q", r.stdout)
					}
				}
				s := oneSession(t, srv)
				if got := strings.Join(s.Lines, "|"); want != "" && got != want {
					t.Errorf("server got %q, want %q", got, want)
				}
				msgs := srv.Messages()
				var dot, body bool
				for _, m := range msgs {
					if m.Done && m.Len == 0 {
						dot = true
					}
					if m.Len > 0 {
						body = true
					}
				}
				if body != tc.body || dot != (tc.dot && mode == "pipelined") {
					t.Errorf("server got messages %+v; want body %v, lone dot %v", msgs, tc.body, tc.dot)
				}
			})
		}
	}
}

// TestPipelinedOneWrite: MAIL, every RCPT and DATA reach the server in
// one read (one write from the client); lock-step, one read each.
func TestPipelinedOneWrite(t *testing.T) {
	t.Parallel()
	rcpts := []string{"one@example.test", "two@example.test", "three@example.test"}
	for _, ehlo := range []string{ehloPipelining, ehloLockStep} {
		srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{Ehlo: ehlo})
		deliver(t, srv.Addr, opts{rcpts: rcpts}).want(t, 0, 'K', "rrr", "127.0.0.1 accepted message.\n")
		s := oneSession(t, srv)
		if len(s.Lines) != 7 || s.Lines[1] != "MAIL FROM:<a@example.test>" || s.Lines[5] != "DATA" {
			t.Fatalf("server got %q", s.Lines)
		}
		reads := s.LineReads[1:6]
		distinct := map[int]bool{}
		for _, n := range reads {
			distinct[n] = true
		}
		switch {
		case ehlo == ehloPipelining && len(distinct) != 1:
			t.Errorf("pipelined: MAIL..DATA came in reads %v", reads)
		case ehlo == ehloLockStep && len(distinct) != 5:
			t.Errorf("lock-step: MAIL..DATA came in reads %v", reads)
		}
	}
}

// roundTrips delivers to a fresh server and returns the client round
// trips the server counted (smtptest.Session.Turnarounds).
func roundTrips(t *testing.T, ehlo string, nrcpt int) int {
	t.Helper()
	srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{Ehlo: ehlo})
	var rcpts []string
	for i := range nrcpt {
		rcpts = append(rcpts, fmt.Sprintf("r%d@example.test", i))
	}
	deliver(t, srv.Addr, opts{rcpts: rcpts}).want(t, 0, 'K', strings.Repeat("r", nrcpt), "127.0.0.1 accepted message.\n")
	return oneSession(t, srv).Turnarounds
}

// TestRoundTrips: a small delivery to a PIPELINING server takes 4 client
// round trips after the TCP handshake (greeting, EHLO, MAIL..DATA, body
// and dot; QUIT is not awaited); lock-step takes 5 + recipients.
func TestRoundTrips(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 10} {
		pipe := roundTrips(t, ehloPipelining, n)
		lock := roundTrips(t, ehloLockStep, n)
		t.Logf("%d recipient(s): %d round trips pipelined, %d lock-step", n, pipe, lock)
		if pipe > 4 {
			t.Errorf("%d recipient(s): %d round trips pipelined, want at most 4", n, pipe)
		}
		if lock != 5+n {
			t.Errorf("%d recipient(s): %d round trips lock-step, want %d", n, lock, 5+n)
		}
	}
}

// BenchmarkDelivery: the whole program (exec included) against smtptest
// on loopback, with no added latency and with 5 ms per round trip.
func BenchmarkDelivery(b *testing.B) {
	for _, lat := range []time.Duration{0, 5 * time.Millisecond} {
		for _, mode := range []struct{ name, ehlo string }{{"pipelined", ehloPipelining}, {"lock-step", ehloLockStep}} {
			for _, n := range []int{1, 10} {
				b.Run(fmt.Sprintf("latency=%v/%s/rcpts=%d", lat, mode.name, n), func(b *testing.B) {
					srv := smtptest.Start(b, "127.0.0.1:0", smtptest.Script{Ehlo: mode.ehlo, Latency: lat})
					var rcpts []string
					for i := range n {
						rcpts = append(rcpts, fmt.Sprintf("r%d@example.test", i))
					}
					for b.Loop() {
						r := deliver(b, srv.Addr, opts{rcpts: rcpts})
						if r.code != 0 || r.res.Message.Letter != 'K' {
							b.Fatalf("exit %d, %q", r.code, r.stdout)
						}
					}
				})
			}
		}
	}
}

// TestSize: SIZE= on MAIL when offered; a smaller nonzero limit stops the
// transaction before MAIL.
func TestSize(t *testing.T) {
	t.Parallel()
	const msg = "Subject: t\n\nhello\n" // 21 bytes on the wire, 24 with ".\r\n"
	for _, tc := range []struct {
		name    string
		ehlo    string
		bytes   string // QMAILREMOTE_MSGBYTES; "" unset
		mail    string // the MAIL line; "" none
		letter  byte
		text    string
		lockCnt bool
	}{
		{"larger limit", "250-x\n250-PIPELINING\n250 SIZE 1000", "24", "MAIL FROM:<a@example.test> SIZE=24", 'K', "127.0.0.1 accepted message.\n", false},
		{"equal limit", "250-x\n250 SIZE 24", "24", "MAIL FROM:<a@example.test> SIZE=24", 'K', "127.0.0.1 accepted message.\n", false},
		{"smaller limit", "250-x\n250-PIPELINING\n250 SIZE 23", "24", "", 'D',
			"Sorry, the message is too big for 127.0.0.1: it is 24 bytes and the server accepts at most 23. (#5.3.4)\n", false},
		{"smaller limit, lock-step", "250-x\n250 size 10", "24", "", 'D',
			"Sorry, the message is too big for 127.0.0.1: it is 24 bytes and the server accepts at most 10. (#5.3.4)\n", false},
		{"no limit", "250-x\n250 SIZE", "24", "MAIL FROM:<a@example.test> SIZE=24", 'K', "127.0.0.1 accepted message.\n", false},
		{"zero limit", "250-x\n250 SIZE 0", "24", "MAIL FROM:<a@example.test> SIZE=24", 'K', "127.0.0.1 accepted message.\n", false},
		{"malformed limit", "250-x\n250 SIZE ten", "24", "MAIL FROM:<a@example.test> SIZE=24", 'K', "127.0.0.1 accepted message.\n", false},
		{"negative limit", "250-x\n250 SIZE -5", "24", "MAIL FROM:<a@example.test> SIZE=24", 'K', "127.0.0.1 accepted message.\n", false},
		{"two parameters", "250-x\n250 SIZE 5 6", "24", "MAIL FROM:<a@example.test> SIZE=24", 'K', "127.0.0.1 accepted message.\n", false},
		{"huge limit", "250-x\n250 SIZE 99999999999999999999999", "24", "MAIL FROM:<a@example.test> SIZE=24", 'K', "127.0.0.1 accepted message.\n", false},
		{"SIZE not offered", "250-x\n250 PIPELINING", "24", "MAIL FROM:<a@example.test>", 'K', "127.0.0.1 accepted message.\n", false},
		{"size unknown", "250-x\n250 SIZE 10", "", "MAIL FROM:<a@example.test>", 'K', "127.0.0.1 accepted message.\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{Ehlo: tc.ehlo, KeepData: true})
			env := map[string]string{}
			if tc.bytes != "" {
				env["QMAILREMOTE_MSGBYTES"] = tc.bytes
			}
			r := deliver(t, srv.Addr, opts{msg: msg, env: env})
			rl := "r"
			if tc.letter == 'D' {
				rl = ""
			}
			r.want(t, 0, tc.letter, rl, tc.text)
			s := oneSession(t, srv)
			switch {
			case tc.mail == "":
				if got := strings.Join(s.Lines, "|"); got != "EHLO client.example.test|QUIT" {
					t.Errorf("server got %q", got)
				}
			case len(s.Lines) < 2 || s.Lines[1] != tc.mail:
				t.Errorf("server got %q, want %q", s.Lines, tc.mail)
			}
			if tc.letter == 'K' {
				if m := srv.Messages(); len(m) != 1 || m[0].Len+3 != 24 {
					t.Errorf("server got %+v", m)
				}
			}
		})
	}
}

// TestSizeValue: SIZE= is QMAILREMOTE_MSGBYTES as it is (the entry
// program counts it: chaintest checks that it matches the wire).
func TestSizeValue(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{Ehlo: "250-x\n250 SIZE 100000000000", KeepData: true})
	deliver(t, srv.Addr, opts{env: map[string]string{"QMAILREMOTE_MSGBYTES": "99999999999"}}).want(t, 0, 'K', "r", "")
	if m := srv.Messages(); len(m) != 1 || m[0].From != "MAIL FROM:<a@example.test> SIZE=99999999999" {
		t.Errorf("server got %+v", m)
	}
}

// Test8BitMIME: BODY=8BITMIME for an 8-bit message when offered; else the
// message goes as it is, never rewritten.
func Test8BitMIME(t *testing.T) {
	t.Parallel()
	msg := "Subject: caf\xc3\xa9\n\nna\xefve \xff\n"
	wire := "Subject: caf\xc3\xa9\r\n\r\nna\xefve \xff\r\n"
	for _, tc := range []struct {
		name, ehlo, eightBit, mail string
	}{
		{"offered", "250-x\n250-PIPELINING\n250 8BITMIME", "1", "MAIL FROM:<a@example.test> BODY=8BITMIME"},
		{"offered, lower case", "250-x\n250 8bitmime", "1", "MAIL FROM:<a@example.test> BODY=8BITMIME"},
		{"not offered", "250-x\n250 PIPELINING", "1", "MAIL FROM:<a@example.test>"},
		{"7-bit message", "250-x\n250 8BITMIME", "0", "MAIL FROM:<a@example.test>"},
		{"unknown", "250-x\n250 8BITMIME", "", "MAIL FROM:<a@example.test>"},
		{"with SIZE", "250-x\n250-SIZE 1000\n250 8BITMIME", "1", "MAIL FROM:<a@example.test> SIZE=40 BODY=8BITMIME"},
	} {
		srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{Ehlo: tc.ehlo, KeepData: true})
		env := map[string]string{"QMAILREMOTE_MSG8BIT": tc.eightBit}
		if strings.Contains(tc.ehlo, "SIZE") {
			env["QMAILREMOTE_MSGBYTES"] = "40"
		}
		deliver(t, srv.Addr, opts{msg: msg, env: env}).want(t, 0, 'K', "r", "127.0.0.1 accepted message.\n")
		m := srv.Messages()
		if len(m) != 1 || m[0].From != tc.mail || string(m[0].Data) != wire {
			t.Errorf("%s: server got %+v, want %q", tc.name, m, tc.mail)
		}
	}
}

// TestSMTPUTF8: a UTF-8 envelope goes as UTF-8 with SMTPUTF8 when offered,
// and quoted as stock does when not.
func TestSMTPUTF8(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, ehlo, sender string
		rcpts              []string
		want               []string // MAIL and RCPT lines
	}{
		{"offered", "250-x\n250-PIPELINING\n250 SMTPUTF8", "jörg@example.test", []string{"用户@例子.test", "plain@example.test"},
			[]string{"MAIL FROM:<jörg@example.test> SMTPUTF8", "RCPT TO:<用户@例子.test>", "RCPT TO:<plain@example.test>"}},
		{"offered, lock-step, UTF-8 recipient only", "250-x\n250 smtputf8", "a@example.test", []string{"δοκιμή@παράδειγμα.test"},
			[]string{"MAIL FROM:<a@example.test> SMTPUTF8", "RCPT TO:<δοκιμή@παράδειγμα.test>"}},
		{"offered, still needs quotes", "250-x\n250 SMTPUTF8", "jörg müller@example.test", []string{"用户..x@例子.test"},
			[]string{`MAIL FROM:<"jörg müller"@example.test> SMTPUTF8`, `RCPT TO:<"用户..x"@例子.test>`}},
		{"offered, ASCII envelope", "250-x\n250 SMTPUTF8", "a@example.test", []string{"b@example.test"},
			[]string{"MAIL FROM:<a@example.test>", "RCPT TO:<b@example.test>"}},
		{"offered, not UTF-8", "250-x\n250 SMTPUTF8", "j\xf6rg@example.test", []string{"用户@例子.test"},
			[]string{"MAIL FROM:<\"j\xf6rg\"@example.test>", `RCPT TO:<"用户"@例子.test>`}},
		{"not offered", "250-x\n250 PIPELINING", "jörg@example.test", []string{"用户@例子.test"},
			[]string{`MAIL FROM:<"jörg"@example.test>`, `RCPT TO:<"用户"@例子.test>`}},
		{"with 8BITMIME and SIZE", "250-x\n250-8BITMIME\n250-SIZE 0\n250 SMTPUTF8", "jörg@example.test", []string{"b@example.test"},
			[]string{"MAIL FROM:<jörg@example.test> SIZE=30 BODY=8BITMIME SMTPUTF8", "RCPT TO:<b@example.test>"}},
	} {
		srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{Ehlo: tc.ehlo})
		env := map[string]string{"QMAILREMOTE_MSG8BIT": "1", "QMAILREMOTE_MSGBYTES": "30"}
		deliver(t, srv.Addr, opts{msg: "Subject: ü\n\nü\n", sender: str(tc.sender), rcpts: tc.rcpts, env: env}).
			want(t, 0, 'K', strings.Repeat("r", len(tc.rcpts)), "127.0.0.1 accepted message.\n")
		m := srv.Messages()
		if len(m) != 1 || strings.Join(append([]string{m[0].From}, m[0].Rcpts...), "|") != strings.Join(tc.want, "|") {
			t.Errorf("%s: server got %+v, want %q", tc.name, m, tc.want)
		}
	}
}

// TestEnhancedStatusCodes: the server's enhanced code (RFC 3463) is part
// of its reply text, so it is in the reports as it said it.
func TestEnhancedStatusCodes(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{
		Ehlo:     "250-x\n250-PIPELINING\n250 ENHANCEDSTATUSCODES",
		Rcpt:     []string{"550 5.1.1 <one@example.test>: Recipient address rejected: User unknown", "452-4.2.2 mailbox full\n452 4.2.2 try later"},
		AfterDot: "250 2.0.0 Ok: queued as 4Xy",
	})
	r := deliver(t, srv.Addr, opts{rcpts: []string{"one@example.test", "two@example.test", "three@example.test"}})
	r.want(t, 0, 'K', "hsr", "127.0.0.1 accepted message.\nRemote host said: 250 2.0.0 Ok: queued as 4Xy\n")
	if rc := r.res.Rcpts; rc[0].Text != "127.0.0.1 does not like recipient.\nRemote host said: 550 5.1.1 <one@example.test>: Recipient address rejected: User unknown\n" ||
		rc[1].Text != "127.0.0.1 does not like recipient.\nRemote host said: 452-4.2.2 mailbox full\n452 4.2.2 try later\n" {
		t.Errorf("recipient reports %q", r.stdout)
	}
	srv = smtptest.Start(t, "127.0.0.1:0", smtptest.Script{Ehlo: "250-x\n250 ENHANCEDSTATUSCODES", Mail: "451 4.7.1 greylisted, come back later"})
	deliver(t, srv.Addr, opts{}).want(t, 0, 'Z', "", "Connected to 127.0.0.1 but sender was rejected.\nRemote host said: 451 4.7.1 greylisted, come back later\n")
}

// TestESMTPUsage: bad QMAILREMOTE_MSGBYTES and QMAILREMOTE_MSG8BIT.
func TestESMTPUsage(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{})
	for _, env := range []map[string]string{
		{"QMAILREMOTE_MSGBYTES": "-1"},
		{"QMAILREMOTE_MSGBYTES": "12k"},
		{"QMAILREMOTE_MSGBYTES": "+12"},
		{"QMAILREMOTE_MSG8BIT": "yes"},
	} {
		r := deliver(t, srv.Addr, opts{env: env})
		var name string
		for k := range env {
			name = k
		}
		if r.code != 100 || len(r.stdout) != 0 || !strings.Contains(r.stderr, name) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", env, r.code, r.stdout, r.stderr)
		}
	}
	if has(srv.Lines(), "MAIL") {
		t.Errorf("server got %q", srv.Lines())
	}
}
