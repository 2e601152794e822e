package qmailremoteio

// Hardening: replies matched only to commands already sent, the verdict
// of a reply of any length, no secret in any report, envelope addresses
// that would change the command line, and the progress cell.

import (
	"bufio"
	"encoding/base64"
	"io"
	"net"
	"strings"
	"testing"

	"qmail-remote-go/src/internal/progress"
	"qmail-remote-go/src/testkit/smtptest"
)

// TestOutOfStep: a server that answers before it is asked gets a Z, never
// a K, and the message (or the dot) never goes out after its early
// answer.
func TestOutOfStep(t *testing.T) {
	t.Parallel()
	const oos = "Connected to 127.0.0.1 but the session is out of step: it answered before I asked. (#4.4.2)\n"
	noPipelining := "250-smtptest\n250 8BITMIME"
	for _, tc := range []struct {
		name   string
		script smtptest.Script
		code   int
		rl     string
		detail string // the second line of the report, its start
	}{
		// The 250 for the message comes with the 354, in one write.
		{"354 and 250 at once, pipelined", smtptest.Script{Data: "354 go ahead\n250 ok: queued"}, 0, "r",
			"16 bytes arrived after the reply to DATA, unasked.\nRemote host said: 250 ok: queued\n"},
		{"354 and 250 at once, lock-step", smtptest.Script{Ehlo: noPipelining, Data: "354 go ahead\n250 ok: queued"}, 0, "r",
			"16 bytes arrived after the reply to DATA, before the message, unasked.\n"},
		// More replies than commands in a pipelined batch.
		{"one reply too many to the batch", smtptest.Script{Rcpt: []string{"250 ok\n250 ok"}}, 0, "r", "14 bytes arrived after the reply to DATA, unasked.\nRemote host said: 354 go ahead\n"},
		// A second line after the greeting: out of step before EHLO, and
		// nothing of the transaction has happened (exit 10).
		{"greeting twice", smtptest.Script{Greeting: "220 one\n220 two"}, 10, "", "9 bytes arrived before I sent EHLO, unasked.\n"},
		{"EHLO answered twice", smtptest.Script{Ehlo: "250 hi\n250 hi again"}, 10, "", "14 bytes arrived before I sent MAIL, unasked.\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := smtptest.Start(t, "127.0.0.1:0", tc.script)
			cell, err := progress.Create()
			if err != nil {
				t.Fatal(err)
			}
			r := deliver(t, srv.Addr, opts{cell: cell})
			// The extra reply to the batch may be read as the reply
			// to DATA before the 354 arrives: then DATA "failed"
			// with a 250 (stock's words for a DATA reply that is not
			// 354), also a Z, and the QUIT that follows lands in the
			// server's DATA as text; there is never a dot after it.
			shifted := tc.name == "one reply too many to the batch" &&
				strings.HasPrefix(r.text(), "127.0.0.1 failed on DATA command.\nRemote host said: 250 ok")
			if shifted {
				r.want(t, tc.code, 'Z', tc.rl, "127.0.0.1 failed on DATA command.")
			} else {
				r.want(t, tc.code, 'Z', tc.rl, oos+tc.detail)
			}
			for _, m := range srv.Messages() {
				if m.Done || m.Len != 0 && !shifted {
					t.Errorf("the message went out: %+v", m)
				}
			}
			if p, _ := cell.Read(); p != progress.BeforeDot {
				t.Errorf("progress %c, want %c: the dot was never to go out", p, progress.BeforeDot)
			}
		})
	}
}

// TestEverythingUpFront: a server that sends every reply of a session at
// once, before the client said anything. Today's main read them one by
// one and reported K.
func TestEverythingUpFront(t *testing.T) {
	t.Parallel()
	got := make(chan string, 1)
	addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		io.WriteString(c, "220 hi\r\n250-hi\r\n250 PIPELINING\r\n250 ok\r\n250 ok\r\n354 go\r\n250 ok: queued\r\n")
		b, _ := io.ReadAll(br)
		got <- string(b)
	})
	r := deliver(t, addr, opts{})
	r.want(t, 10, 'Z', "", "Connected to 127.0.0.1 but the session is out of step: it answered before I asked. (#4.4.2)\n")
	if s := <-got; strings.Contains(s, "MAIL") || strings.Contains(s, "hello") {
		t.Errorf("server got %q", s)
	}
}

// TestReplyMidBody: a 250 in the middle of a body larger than the socket
// buffers: the client sees it before the last block, and the dot never
// goes out.
func TestReplyMidBody(t *testing.T) {
	t.Parallel()
	got := make(chan string, 1)
	addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		io.WriteString(c, "220 hi\r\n")
		for _, reply := range []string{"250 hi", "250 ok", "250 ok", "354 go"} {
			br.ReadString('\n')
			io.WriteString(c, reply+"\r\n")
		}
		io.ReadFull(br, make([]byte, 64<<10))
		io.WriteString(c, "250 ok: queued\r\n")
		b, _ := io.ReadAll(br)
		got <- string(b)
	})
	big := strings.Repeat(strings.Repeat("x", 1000)+"\n", 32<<20/1001)
	cell, err := progress.Create()
	if err != nil {
		t.Fatal(err)
	}
	r := deliver(t, addr, opts{msg: big, cell: cell})
	r.want(t, 0, 'Z', "r", "Connected to 127.0.0.1 but the session is out of step: it answered before I asked. (#4.4.2)\n16 bytes arrived while I sent the message, unasked.\nRemote host said: 250 ok: queued\n")
	if s := <-got; strings.HasSuffix(s, "\r\n.\r\n") {
		t.Error("the dot went out after the server's early 250")
	}
	if p, _ := cell.Read(); p != progress.BeforeDot {
		t.Errorf("progress %c, want %c", p, progress.BeforeDot)
	}
}

// TestProgressCell: the cell says the dot may be out once it was written.
func TestProgressCell(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		script smtptest.Script
		letter byte
		phase  byte
	}{
		{"delivered", smtptest.Script{}, 'K', progress.Dot},
		{"greeting refused", smtptest.Script{Greeting: "554 no"}, 'Z', progress.BeforeDot},
		{"closed after the dot", smtptest.Script{AfterDot: smtptest.Close}, 'Z', progress.Dot},
		{"DATA refused", smtptest.Script{Data: "554 no"}, 'D', progress.BeforeDot},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := smtptest.Start(t, "127.0.0.1:0", tc.script)
			cell, err := progress.Create()
			if err != nil {
				t.Fatal(err)
			}
			cell.Reset()
			r := deliver(t, srv.Addr, opts{cell: cell})
			if r.res.Message.Letter != tc.letter {
				t.Fatalf("report %q", r.stdout)
			}
			if p, _ := cell.Read(); p != tc.phase {
				t.Errorf("progress %c, want %c", p, tc.phase)
			}
		})
	}
}

// TestLongReplies: a reply of 20,000 lines (4 MB) is read to its end and
// its code decides: the mail bounces (D, h) instead of waiting a week
// in the queue; only its start is kept for the report.
func TestLongReplies(t *testing.T) {
	t.Parallel()
	long := func(code string) string {
		return strings.Repeat(code+"-5.1.1 "+strings.Repeat("x", 190)+"\n", 20000) + code + " 5.1.1 that was all"
	}
	for _, tc := range []struct {
		name   string
		script smtptest.Script
		letter byte
		rl     string
		prefix string
	}{
		{"RCPT 550", smtptest.Script{Rcpt: []string{long("550")}}, 'D', "h", "Giving up on 127.0.0.1.\n"},
		{"after the dot 554", smtptest.Script{AfterDot: long("554")}, 'D', "r", "127.0.0.1 failed after I sent the message.\nRemote host said: 554-5.1.1 xxx"},
		{"after the dot 250", smtptest.Script{AfterDot: long("250")}, 'K', "r", "127.0.0.1 accepted message.\nRemote host said: 250-5.1.1 xxx"},
		{"greeting 554", smtptest.Script{Greeting: long("554")}, 'Z', "", "Connected to 127.0.0.1 but greeting failed.\nRemote host said: 554-5.1.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := smtptest.Start(t, "127.0.0.1:0", tc.script)
			r := deliver(t, srv.Addr, opts{timeout: "60"})
			code := 0
			if tc.rl == "" {
				code = 10
			}
			r.want(t, code, tc.letter, tc.rl, tc.prefix)
			if len(r.stdout) > 3*4096 {
				t.Errorf("reports of %d bytes", len(r.stdout))
			}
		})
	}
}

// TestAuthEchoes: whatever the server sends once AUTH began (the password
// or the payload echoed exactly, with a character less, in another case,
// split by a space; in a malformed or over-long reply; in the replies to
// MAIL, RCPT and the dot after a successful AUTH), no report holds the
// password, the AUTH payload, or any run of 6 of their characters.
func TestAuthEchoes(t *testing.T) {
	t.Parallel()
	payload := base64.StdEncoding.EncodeToString([]byte("\x00" + authUser + "\x00" + authPass))
	variants := []string{
		authPass,
		payload,
		payload[:len(payload)-1],
		payload[1:],
		strings.ToLower(payload),
		strings.ToUpper(authPass[:1]) + authPass[1:],
		strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' {
				return r - 'a' + 'A'
			}
			return r
		}, authPass),
		authPass[:7] + " " + authPass[7:],
		"<" + authPass + ">",
		base64.StdEncoding.EncodeToString([]byte(authPass)),
	}
	creds := "smtp.example.net:2525:starttls:" + authUser + ":" + authPass + "\n"
	home := authHome(t, creds)
	base := smtptest.Script{StartTLS: "220 go", Ehlo: ehloSTARTTLS, EhloAfterTLS: ehloAfter, Auth: "PLAIN LOGIN",
		AuthUser: authUser, AuthPassword: authPass}
	type tcase struct {
		name   string
		script smtptest.Script
	}
	var cases []tcase
	for i, v := range variants {
		n := string(rune('a' + i))
		with := func(f func(*smtptest.Script)) smtptest.Script { s := base; f(&s); return s }
		cases = append(cases,
			tcase{"535 " + n, with(func(s *smtptest.Script) { s.AuthReply = "535-you sent " + v + "\n535 5.7.8 " + v })},
			tcase{"454 " + n, with(func(s *smtptest.Script) { s.AuthReply = "454 4.7.0 " + v })},
			tcase{"malformed " + n, with(func(s *smtptest.Script) { s.AuthReply = "you sent " + v })},
			tcase{"mixed codes " + n, with(func(s *smtptest.Script) { s.AuthReply = "535-" + v + "\n250 " + v })},
			tcase{"over-long " + n, with(func(s *smtptest.Script) { s.AuthReply = "535 " + v + strings.Repeat("y", 1<<20) })},
			tcase{"MAIL after AUTH " + n, with(func(s *smtptest.Script) { s.Mail = "553 5.1.8 " + v })},
			tcase{"MAIL malformed after AUTH " + n, with(func(s *smtptest.Script) { s.Mail = v + " is what you sent" })},
			tcase{"RCPT after AUTH " + n, with(func(s *smtptest.Script) { s.Rcpt = []string{"550 " + v, "250 ok"} })},
			tcase{"after the dot " + n, with(func(s *smtptest.Script) { s.AfterDot = "250 ok " + v })},
			tcase{"out of step after AUTH " + n, with(func(s *smtptest.Script) { s.Data = "354 go\n250 " + v })},
		)
	}
	secrets := []string{authPass, payload}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := smtptest.Start(t, "127.0.0.1:0", tc.script)
			env, dumps := authEnv(t, "starttls", home, "2525", "1")
			r := deliver(t, srv.Addr, opts{env: env, rcpts: []string{"b@example.test", "c@example.test"}})
			if r.perr != nil {
				t.Fatalf("malformed output %q: %v", r.stdout, r.perr)
			}
			noSecrets(t, r, dumps)
			out := strings.ToLower(string(r.stdout) + r.stderr)
			for _, x := range secrets {
				x = strings.ToLower(x)
				for i := 0; i+6 <= len(x); i++ {
					if strings.Contains(out, x[i:i+6]) {
						t.Fatalf("the report holds %q, 6 characters of a secret: %q", x[i:i+6], r.stdout)
					}
				}
			}
		})
	}
}

// TestEnvelopeDomains: a sender or recipient whose domain part would
// change the command line is refused, and never sent.
func TestEnvelopeDomains(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		sender string
		rcpts  []string
		letter byte
		rl     string
		text   string
		lines  []string // what the server must get (prefixes), in order
	}{
		{"sender with AUTH=", "x@y.test> AUTH=<>", []string{"b@example.test"}, 'D', "",
			"Sorry, the sender address cannot go into a MAIL command: its domain part \"y.test> AUTH=<>\" holds '>', which no domain may hold. (#5.1.7)\n",
			[]string{"EHLO"}},
		{"recipient with NOTIFY=", "a@example.test", []string{"r@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x", "b@example.test"}, 'K', "hr",
			"127.0.0.1 accepted message.\n",
			[]string{"EHLO", "MAIL FROM:<a@example.test>", "RCPT TO:<b@example.test>", "DATA"}},
		{"only bad recipients", "a@example.test", []string{"r@exa mple.test", "s@[192.0.2.1"}, 'D', "hh",
			"Giving up on 127.0.0.1.\n", []string{"EHLO", "MAIL FROM:<a@example.test>"}},
		{"double bounce", "#@[]", []string{"b@[192.0.2.7]"}, 'K', "r", "127.0.0.1 accepted message.\n",
			[]string{"EHLO", "MAIL FROM:<#@[]>", "RCPT TO:<b@[192.0.2.7]>", "DATA"}},
		{"quoted local part", "\"a>b c\"@example.test", []string{"x y@example.test"}, 'K', "r", "127.0.0.1 accepted message.\n",
			[]string{"EHLO", "MAIL FROM:<\"\\\"a>b c\\\"\"@example.test>", "RCPT TO:<\"x y\"@example.test>", "DATA"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{})
			r := deliver(t, srv.Addr, opts{sender: str(tc.sender), rcpts: tc.rcpts})
			r.want(t, 0, tc.letter, tc.rl, tc.text)
			if tc.rl != "" && tc.rl[0] == 'h' && !strings.Contains(r.res.Rcpts[0].Text, "cannot go into a RCPT command") {
				t.Errorf("recipient report %q", r.res.Rcpts[0].Text)
			}
			waitDone(t, srv)
			var got []string
			for _, l := range srv.Lines() {
				if l != "QUIT" {
					got = append(got, l)
				}
			}
			if len(got) != len(tc.lines) {
				t.Fatalf("server got %q, want %q", got, tc.lines)
			}
			for i, l := range got {
				if !strings.HasPrefix(l, tc.lines[i]) {
					t.Errorf("line %d: %q, want %q", i, l, tc.lines[i])
				}
			}
		})
	}
}

// TestMessageNotRegular: by hand, fd 0 may be a device that never ends;
// only a regular file is sent: nothing is read without a bound.
func TestMessageNotRegular(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{})
	r := deliver(t, srv.Addr, opts{msgFile: "/dev/zero"})
	r.want(t, 0, 'Z', "", "Unable to read message. (#4.3.0)\nfd 0 is not a regular file.\n")
}
