package qmailremoteio

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"qmail-remote-go/src/internal/progress"
	"qmail-remote-go/src/internal/report"
	"qmail-remote-go/src/testkit/buildtest"
	"qmail-remote-go/src/testkit/smtptest"
)

var binary, fakeTLSIO string

func TestMain(m *testing.M) {
	buildtest.ProgramWithScript(m, &binary, "qmail-remote-io", &fakeTLSIO, "fake-tlsio", fakeTLSIOScript)
}

// run is one run of the program.
type run struct {
	stdout []byte
	stderr string
	code   int
	res    report.Result
	perr   error // report.Parse's error
}

// opts says how to run the program; zero values take the defaults.
type opts struct {
	msg     string            // the message on fd 0; default "Subject: t\n\nhello\n"
	msgFile string            // or this file
	sender  *string           // default "a@example.test"
	rcpts   []string          // default one, "b@example.test"
	timeout string            // QMAILREMOTE_TIMEOUTREMOTE; default "30"
	env     map[string]string // more variables ("" value: unset the default)
	args    []string
	noFds   bool           // run without fds 6 and 7
	cell    *progress.Cell // the progress cell, on fd 3
	// dialed, if set, is called once the test's connection to addr is
	// established, before the program starts.
	dialed func()
}

func str(s string) *string { return &s }

// deliver runs the program against addr (a server), its socket on fds 6
// and 7.
func deliver(t testing.TB, addr string, o opts) run {
	t.Helper()
	if o.msg == "" {
		o.msg = "Subject: t\n\nhello\n"
	}
	if o.sender == nil {
		o.sender = str("a@example.test")
	}
	if o.rcpts == nil {
		o.rcpts = []string{"b@example.test"}
	}
	if o.timeout == "" {
		// Generous: it bounds every healthy reply, on a machine that may
		// be busy with other work. A stall case sets its own.
		o.timeout = "30"
	}
	env := map[string]string{
		"QMAILREMOTE_HELOHOST":      "client.example.test",
		"QMAILREMOTE_SENDER":        *o.sender,
		"QMAILREMOTE_RCPTS":         strconv.Itoa(len(o.rcpts)),
		"QMAILREMOTE_TIMEOUTREMOTE": o.timeout,
		"QMAILREMOTE_TRUSTANCHORS":  "",
		"QMAILREMOTE_TLSSTRICTNESS": "0",
		"TCPREMOTEIP":               "127.0.0.1",
		"PATH":                      "/usr/bin:/bin",
	}
	for i, r := range o.rcpts {
		env["QMAILREMOTE_RCPT_"+strconv.Itoa(i+1)] = r
	}
	for k, v := range o.env {
		if v == "" {
			delete(env, k)
		} else {
			env[k] = v
		}
	}
	if v, ok := o.env["QMAILREMOTE_TRUSTANCHORS"]; ok && v == "" {
		env["QMAILREMOTE_TRUSTANCHORS"] = ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, o.args...)
	cmd.Env = []string{}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}

	msgPath := o.msgFile
	if msgPath == "" {
		msgPath = filepath.Join(t.TempDir(), "msg")
		if err := os.WriteFile(msgPath, []byte(o.msg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	msg, err := os.Open(msgPath)
	if err != nil {
		t.Fatal(err)
	}
	defer msg.Close()
	msg.Seek(3, io.SeekStart) // the program must rewind it
	cmd.Stdin = msg
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr

	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	if !o.noFds {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		f, err := c.(*net.TCPConn).File()
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if o.dialed != nil {
			o.dialed()
		}
		cmd.ExtraFiles = []*os.File{null, null, null, f, f}
		if o.cell != nil {
			cmd.ExtraFiles[0] = o.cell.File()
			cmd.Env = append(cmd.Env, progress.Env+"=3")
		}
	}
	err = cmd.Run()
	r := run{stdout: stdout.Bytes(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}
	if err != nil && r.code <= 0 {
		t.Fatalf("run: %v", err)
	}
	r.res, r.perr = report.Parse(r.stdout, len(o.rcpts))
	return r
}

// want checks a run: exit code, message letter, recipient letters, that
// the message report text starts with prefix, and an empty stderr.
func (r run) want(t *testing.T, code int, letter byte, rcpts string, prefix string) {
	t.Helper()
	if r.code != code || r.perr != nil || r.res.Message.Letter != letter || r.stderr != "" {
		t.Fatalf("got exit %d, stdout %q (%v), stderr %q; want exit %d, %c", r.code, r.stdout, r.perr, r.stderr, code, letter)
	}
	var got string
	for _, rr := range r.res.Rcpts {
		got += string(rr.Letter)
	}
	if got != rcpts {
		t.Fatalf("recipient reports %q, want %q (stdout %q)", got, rcpts, r.stdout)
	}
	if !strings.HasPrefix(r.res.Message.Text, prefix) {
		t.Fatalf("message report %q, want it to start with %q", r.res.Message.Text, prefix)
	}
}

func (r run) text() string { return r.res.Message.Text }

func has(lines []string, prefix string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

func TestDelivered(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{KeepData: true, AfterDot: "250-ok\n250 queued as 12345"})
	r := deliver(t, srv.Addr, opts{msg: "Subject: t\n\n.hello\r\nworld\n"})
	r.want(t, 0, 'K', "r", "127.0.0.1 accepted message.\nRemote host said: 250-ok\n250 queued as 12345\n")
	want := []string{"EHLO client.example.test", "MAIL FROM:<a@example.test>", "RCPT TO:<b@example.test>", "DATA", "QUIT"}
	// QUIT is sent without waiting: the server has it once its session
	// has ended.
	waitDone(t, srv)
	lines := srv.Lines()
	if strings.Join(lines, "|") != strings.Join(want, "|") {
		t.Errorf("server got %q, want %q", lines, want)
	}
	m := srv.Messages()
	if len(m) != 1 || !m[0].Done || string(m[0].Data) != "Subject: t\r\n\r\n..hello\r\nworld\r\n" {
		t.Errorf("server got %+v", m)
	}
}

// TestReplies: every reply class at every step.
func TestReplies(t *testing.T) {
	t.Parallel()
	three := []string{"one@example.test", "two@example.test", "three@example.test"}
	for _, tc := range []struct {
		name   string
		script smtptest.Script
		rcpts  []string
		code   int
		letter byte
		rl     string // recipient letters
		text   string // message text prefix
		mail   bool   // MAIL must have been sent
		quit   bool   // QUIT must have been sent
	}{
		{"greeting 554", smtptest.Script{Greeting: "554 go away"}, nil, 10, 'Z', "",
			"Connected to 127.0.0.1 but greeting failed.\nRemote host said: 554 go away\n", false, true},
		{"greeting 421", smtptest.Script{Greeting: "421-busy\n421 try later"}, nil, 10, 'Z', "",
			"Connected to 127.0.0.1 but greeting failed.\nRemote host said: 421-busy\n421 try later\n", false, true},
		{"greeting 250", smtptest.Script{Greeting: "250 not a greeting"}, nil, 10, 'Z', "",
			"Connected to 127.0.0.1 but greeting failed.\n", false, true},
		{"greeting multi-line 220", smtptest.Script{Greeting: "220-hello\n220-there\n220 ESMTP"}, nil, 0, 'K', "r",
			"127.0.0.1 accepted message.\n", true, true},
		{"EHLO 502, HELO 250", smtptest.Script{Ehlo: "502 what"}, nil, 0, 'K', "r", "127.0.0.1 accepted message.\n", true, true},
		{"EHLO 421, HELO 250", smtptest.Script{Ehlo: "421 later"}, nil, 0, 'K', "r", "127.0.0.1 accepted message.\n", true, true},
		{"EHLO 500, HELO 550", smtptest.Script{Ehlo: "500 what", Helo: "550 who are you"}, nil, 10, 'Z', "",
			"Connected to 127.0.0.1 but my name was rejected.\nRemote host said: 550 who are you\n", false, true},
		{"EHLO 500, HELO 421", smtptest.Script{Ehlo: "500 what", Helo: "421 later"}, nil, 10, 'Z', "",
			"Connected to 127.0.0.1 but my name was rejected.\nRemote host said: 421 later\n", false, true},
		{"MAIL 553", smtptest.Script{Mail: "553 5.1.8 bad sender"}, nil, 0, 'D', "",
			"Connected to 127.0.0.1 but sender was rejected.\nRemote host said: 553 5.1.8 bad sender\n", true, true},
		{"MAIL 451", smtptest.Script{Mail: "451 greylisted"}, nil, 0, 'Z', "",
			"Connected to 127.0.0.1 but sender was rejected.\nRemote host said: 451 greylisted\n", true, true},
		{"MAIL 354", smtptest.Script{Mail: "354 eh?"}, nil, 0, 'Z', "",
			"Connected to 127.0.0.1 but sender was rejected.\nRemote host said: 354 eh?\n", true, true},
		{"RCPT r h s", smtptest.Script{Rcpt: []string{"250 ok", "550 5.1.1 no such user", "450 mailbox busy"}}, three, 0, 'K', "rhs",
			"127.0.0.1 accepted message.\n", true, true},
		{"RCPT h s r", smtptest.Script{Rcpt: []string{"550 no", "421 later", "251 forwarded"}}, three, 0, 'K', "hsr",
			"127.0.0.1 accepted message.\n", true, true},
		{"RCPT all rejected", smtptest.Script{Rcpt: []string{"550 no", "450 later", "554 never"}}, three, 0, 'D', "hsh",
			"Giving up on 127.0.0.1.\n", true, true},
		{"DATA 554", smtptest.Script{Data: "554 no data for you"}, nil, 0, 'D', "r",
			"127.0.0.1 failed on DATA command.\nRemote host said: 554 no data for you\n", true, true},
		{"DATA 451", smtptest.Script{Data: "451 later"}, nil, 0, 'Z', "r",
			"127.0.0.1 failed on DATA command.\nRemote host said: 451 later\n", true, true},
		{"DATA 250", smtptest.Script{Data: "250 eh"}, nil, 0, 'Z', "r",
			"127.0.0.1 failed on DATA command.\nRemote host said: 250 eh\n", true, true},
		{"after dot 552", smtptest.Script{AfterDot: "552 too big"}, nil, 0, 'D', "r",
			"127.0.0.1 failed after I sent the message.\nRemote host said: 552 too big\n", true, true},
		{"after dot 451", smtptest.Script{AfterDot: "451 later"}, nil, 0, 'Z', "r",
			"127.0.0.1 failed after I sent the message.\nRemote host said: 451 later\n", true, true},
		{"after dot 354", smtptest.Script{AfterDot: "354 more?"}, nil, 0, 'Z', "r",
			"127.0.0.1 failed after I sent the message: that reply is not a 2xx, 4xx or 5xx. Possible duplicate! (#4.4.2)\nRemote host said: 354 more?\n", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := smtptest.Start(t, "127.0.0.1:0", tc.script)
			r := deliver(t, srv.Addr, opts{rcpts: tc.rcpts})
			r.want(t, tc.code, tc.letter, tc.rl, tc.text)
			if tc.rl == "rhs" {
				rc := r.res.Rcpts
				if rc[0].Text != "" || rc[1].Text != "127.0.0.1 does not like recipient.\nRemote host said: 550 5.1.1 no such user\n" ||
					rc[2].Text != "127.0.0.1 does not like recipient.\nRemote host said: 450 mailbox busy\n" {
					t.Errorf("recipient reports %q", r.stdout)
				}
			}
			waitDone(t, srv)
			lines := srv.Lines()
			if has(lines, "MAIL") != tc.mail || has(lines, "QUIT") != tc.quit {
				t.Errorf("server got %q", lines)
			}
			// Pipelined (smtptest offers PIPELINING): DATA goes with the
			// RCPTs, and smtptest says 354 to it whatever came before;
			// the body must not follow, only a lone dot (esmtp_test.go).
			if tc.letter == 'D' && !strings.HasPrefix(tc.name, "after dot") {
				for _, m := range srv.Messages() {
					if m.Len != 0 {
						t.Errorf("message content sent after %s: %+v", tc.name, m)
					}
				}
			}
			if strings.HasPrefix(tc.name, "EHLO") && !has(lines, "HELO client.example.test") {
				t.Errorf("no HELO: %q", lines)
			}
		})
	}
}

// waitDone waits until every session the server accepted has ended, the
// program having exited: the server then has every line the program sent,
// those it sends without waiting for a reply (QUIT) included. It ends as
// soon as they have; the time limit is only a backstop for a session that
// never ends, and fails the test.
func waitDone(t *testing.T, srv *smtptest.Server) {
	t.Helper()
	n := srv.Conns()
	if n == 0 {
		t.Fatal("the server accepted no connection")
	}
	ss := srv.WaitSessions(n, 30*time.Second)
	done := 0
	for _, s := range ss {
		if s.Done {
			done++
		}
	}
	if done < n {
		t.Fatalf("%d of the server's %d sessions still open after 30s", n-done, n)
	}
}

// TestBroken: the server closes, resets or stalls at every step.
//
// The timeout bounds the healthy steps before the faulty one too, on a
// machine that may be busy: 30 s where the server closes or resets (the
// program never waits it out), 10 s where it stalls (the program waits
// it out, and the report must say so). The cases run in goroutines of
// their own rather than under t.Parallel, which -parallel (by default
// GOMAXPROCS) would ration: the stalls then cost one timeout in all.
func TestBroken(t *testing.T) {
	t.Parallel()
	// Mid-body failures need a body larger than the socket buffers, or
	// the whole of it could be sent before the server gives up.
	big := strings.Repeat("a fairly long line of text for the body of the message\n", 32<<20/56)
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, special := range []string{smtptest.Close, smtptest.Reset, smtptest.Stall} {
		for _, tc := range []struct {
			step   string
			script smtptest.Script
			code   int
			rl     string
			text   string
		}{
			{"greeting", smtptest.Script{Greeting: special}, 10, "", "Connected to 127.0.0.1 but connection died. (#4.4.2)\n"},
			{"EHLO", smtptest.Script{Ehlo: special}, 10, "", "Connected to 127.0.0.1 but connection died. (#4.4.2)\n"},
			{"HELO", smtptest.Script{Ehlo: "500 no", Helo: special}, 10, "", "Connected to 127.0.0.1 but connection died. (#4.4.2)\n"},
			{"MAIL", smtptest.Script{Mail: special}, 0, "", "Connected to 127.0.0.1 but connection died. (#4.4.2)\n"},
			{"RCPT", smtptest.Script{Rcpt: []string{"250 ok", special}}, 0, "r", "Connected to 127.0.0.1 but connection died. (#4.4.2)\n"},
			{"DATA", smtptest.Script{Data: special}, 0, "r", "Connected to 127.0.0.1 but connection died. (#4.4.2)\n"},
			{"mid-body", smtptest.Script{Mid: special, MidAfter: 100000}, 0, "r", "Connected to 127.0.0.1 but connection died. (#4.4.2)\n"},
			{"after dot", smtptest.Script{AfterDot: special}, 0, "r", "Connected to 127.0.0.1 but connection died. Possible duplicate! (#4.4.2)\n"},
		} {
			if special == smtptest.Stall && tc.step == "mid-body" {
				continue // smtptest's Stall reads on: see TestStallMidBody
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				t.Run(special+"/"+tc.step, func(t *testing.T) {
					srv := smtptest.Start(t, "127.0.0.1:0", tc.script)
					addr := srv.Addr
					o := opts{timeout: "30"}
					if special == smtptest.Stall {
						o.timeout = "10"
					}
					if special == smtptest.Reset && tc.step == "greeting" {
						// A reset that came before the dial returned
						// would fail the dial itself: the server resets
						// once the test's dial has returned, and before
						// the program reads the greeting or after, the
						// program finds the connection reset.
						dialed := make(chan struct{})
						o.dialed = sync.OnceFunc(func() { close(dialed) })
						addr = rawServer(t, func(c net.Conn, br *bufio.Reader) {
							<-dialed
							c.(*net.TCPConn).SetLinger(0)
						})
						// Cleanups run last first: this one before
						// rawServer's, which waits for the handler, so
						// that a test ended before its dial cannot hang.
						t.Cleanup(o.dialed)
					}
					o.rcpts = []string{"b@example.test"}
					if tc.step == "RCPT" {
						o.rcpts = []string{"b@example.test", "c@example.test"}
					}
					if tc.step == "mid-body" {
						o.msg = big
					}
					// deliver's own time limit is the backstop for a
					// program that never gives up.
					r := deliver(t, addr, o)
					r.want(t, tc.code, 'Z', tc.rl, tc.text)
					if special == smtptest.Stall && !strings.Contains(r.text(), "Timed out after 10s") {
						t.Errorf("stall: %q", r.text())
					}
					if m := srv.Messages(); len(m) > 0 && tc.step == "mid-body" && m[0].Done {
						t.Errorf("the message was completed")
					}
				})
			}()
		}
	}
}

// rawServer runs handle on the first connection to a loopback listener.
func rawServer(t *testing.T, handle func(c net.Conn, br *bufio.Reader)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skip(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		handle(c, bufio.NewReader(c))
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// TestStallMidBody: the server stops reading in the middle of the body;
// the write deadline must catch it. The timeout, 10 s, also bounds the
// healthy replies before the body on a busy machine.
func TestStallMidBody(t *testing.T) {
	t.Parallel()
	done := make(chan struct{})
	addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		io.WriteString(c, "220 hi\r\n")
		for _, reply := range []string{"250 hi", "250 ok", "250 ok", "354 go"} {
			br.ReadString('\n')
			io.WriteString(c, reply+"\r\n")
		}
		c.(*net.TCPConn).SetReadBuffer(4096)
		<-done // read nothing more
	})
	big := strings.Repeat("x", 1000) + "\n"
	big = strings.Repeat(big, 64<<20/len(big))
	r := deliver(t, addr, opts{msg: big, timeout: "10"})
	close(done)
	r.want(t, 0, 'Z', "r", "Connected to 127.0.0.1 but connection died. (#4.4.2)\nTimed out after 10s sending the message.\n")
}

// TestMalformed: replies that are not SMTP.
func TestMalformed(t *testing.T) {
	t.Parallel()
	huge := strings.Repeat("x", 10<<20)
	for _, tc := range []struct {
		name   string
		script smtptest.Script
		code   int
		rl     string
		text   string
	}{
		{"no code", smtptest.Script{Greeting: "hello there"}, 10, "",
			"Connected to 127.0.0.1 but its reply was not SMTP. (#4.4.2)\nBad reply while waiting for the greeting: malformed SMTP reply: \"hello there\" does not start with a reply code.\nRemote host said: hello there\n"},
		{"mixed codes", smtptest.Script{Ehlo: "250-hi\n550 no"}, 10, "",
			"Connected to 127.0.0.1 but its reply was not SMTP. (#4.4.2)\nBad reply while waiting for the reply to EHLO: malformed SMTP reply: a line with code 550 in a reply with code 250.\nRemote host said: 250-hi\n550 no\n"},
		{"10 MB line", smtptest.Script{Greeting: "220 " + huge}, 10, "",
			"Connected to 127.0.0.1 but its reply was not SMTP. (#4.4.2)\nBad reply while waiting for the greeting: SMTP reply line longer than 1 MiB.\nRemote host said: 220 xxx"},
		{"10 MB line after the dot", smtptest.Script{AfterDot: "250 " + huge}, 0, "r",
			"Connected to 127.0.0.1 but its reply was not SMTP. Possible duplicate! (#4.4.2)\n"},
		{"1xx after the dot", smtptest.Script{AfterDot: "150 huh"}, 0, "r",
			"Connected to 127.0.0.1 but its reply was not SMTP. Possible duplicate! (#4.4.2)\n"},
		{"junk to MAIL", smtptest.Script{Mail: "ok"}, 0, "",
			"Connected to 127.0.0.1 but its reply was not SMTP. (#4.4.2)\n"},
		{"NUL bytes", smtptest.Script{Mail: "550 no\x00such\x1b[31m sender"}, 0, "",
			"Connected to 127.0.0.1 but sender was rejected.\nRemote host said: 550 no?such?[31m sender\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := smtptest.Start(t, "127.0.0.1:0", tc.script)
			r := deliver(t, srv.Addr, opts{})
			letter := byte('Z')
			if strings.HasPrefix(tc.name, "NUL") {
				letter = 'D'
			}
			r.want(t, tc.code, letter, tc.rl, tc.text)
			if len(r.stdout) > 2*report.Max {
				t.Errorf("report of %d bytes", len(r.stdout))
			}
		})
	}
}

// TestTransparency: exact wire bytes for tricky bodies, smuggling attempts
// included.
func TestTransparency(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, wire string }{
		{"a\nb\n", "a\r\nb\r\n"},
		{".\n", "..\r\n"},
		{"x\n.\r\nMAIL FROM:<evil@example.test>\r\n", "x\r\n..\r\nMAIL FROM:<evil@example.test>\r\n"},
		{"x\r.\rRSET\n", "x\r\n..\r\nRSET\r\n"},
		{"x\r\n.\nQUIT\n", "x\r\n..\r\nQUIT\r\n"},
		{"x\n.\n", "x\r\n..\r\n"},
		{"\r.\r\n", "\r\n..\r\n"},
		{"a\rb\r", "a\r\nb\r\n"},
		{"caf\xc3\xa9\n", "caf\xc3\xa9\r\n"},
	} {
		srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{KeepData: true})
		r := deliver(t, srv.Addr, opts{msg: tc.in})
		r.want(t, 0, 'K', "r", "127.0.0.1 accepted message.\n")
		m := srv.Messages()
		if len(m) != 1 || !m[0].Done || string(m[0].Data) != tc.wire {
			t.Errorf("%q: server got %+v, want %q", tc.in, m, tc.wire)
		}
		if l := srv.Lines(); has(l, "MAIL FROM:<evil") || has(l, "RSET") || strings.Count(strings.Join(l, "\n"), "QUIT") > 1 {
			t.Errorf("%q: smuggled: %q", tc.in, l)
		}
	}
}

// TestMessageUnreadable: a partial final line found while sending (the
// file changed after the pre-scan) or a read error: no dot, Z.
func TestMessageUnreadable(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{KeepData: true})
	r := deliver(t, srv.Addr, opts{msg: "line\nno newline"})
	r.want(t, 0, 'Z', "r", "Unable to read message. (#4.3.0)\nThe message changed")
	srv.Close()
	if m := srv.Messages(); len(m) != 1 || m[0].Done || has(srv.Lines(), "QUIT") {
		t.Errorf("server got %+v %q", m, srv.Lines())
	}

	srv = smtptest.Start(t, "127.0.0.1:0", smtptest.Script{})
	r = deliver(t, srv.Addr, opts{msgFile: t.TempDir()}) // a directory: refused before anything is sent
	r.want(t, 0, 'Z', "", "Unable to read message. (#4.3.0)\nfd 0 is not a regular file.\n")
	srv.Close()
	if m := srv.Messages(); len(m) > 0 && m[0].Done {
		t.Errorf("server got %+v", m)
	}
}

func TestQuotingOnTheWire(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{})
	r := deliver(t, srv.Addr, opts{sender: str("a b@example.test"), rcpts: []string{`x"y@example.test`, ".dot@example.test", "plain@example.test"}})
	r.want(t, 0, 'K', "rrr", "127.0.0.1 accepted message.\n")
	want := []string{`MAIL FROM:<"a b"@example.test>`, `RCPT TO:<"x\"y"@example.test>`, `RCPT TO:<".dot"@example.test>`, `RCPT TO:<plain@example.test>`}
	for _, w := range want {
		if !has(srv.Lines(), w) {
			t.Errorf("no %q in %q", w, srv.Lines())
		}
	}
	for _, s := range []string{"", "#@[]"} {
		srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{})
		deliver(t, srv.Addr, opts{sender: str(s)}).want(t, 0, 'K', "r", "")
		if !has(srv.Lines(), "MAIL FROM:<"+s+">") {
			t.Errorf("sender %q: %q", s, srv.Lines())
		}
	}
	// CR or LF in an address would forge a command.
	srv = smtptest.Start(t, "127.0.0.1:0", smtptest.Script{})
	r = deliver(t, srv.Addr, opts{rcpts: []string{"x\r\nRSET@example.test", "ok@example.test"}})
	r.want(t, 0, 'K', "hr", "")
	if has(srv.Lines(), "RSET") {
		t.Errorf("forged: %q", srv.Lines())
	}
	srv = smtptest.Start(t, "127.0.0.1:0", smtptest.Script{})
	deliver(t, srv.Addr, opts{sender: str("x\nRSET@example.test")}).want(t, 0, 'D', "", "Sorry, the sender address")
	if has(srv.Lines(), "RSET") || has(srv.Lines(), "MAIL") {
		t.Errorf("forged: %q", srv.Lines())
	}
}

// TestTLSStrictness: tlsstrictness alone decides nothing here; the
// connector turns it into QMAILREMOTE_TLS, and unset means none.
func TestTLSStrictness(t *testing.T) {
	t.Parallel()
	for _, strict := range []string{"0", "1", "2"} {
		srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{Ehlo: "250-x\n250 STARTTLS"})
		r := deliver(t, srv.Addr, opts{env: map[string]string{"QMAILREMOTE_TRUSTANCHORS": "/etc/ssl/certs/", "QMAILREMOTE_TLSSTRICTNESS": strict}})
		r.want(t, 0, 'K', "r", "127.0.0.1 accepted message.\n")
		if has(srv.Lines(), "STARTTLS") {
			t.Errorf("strictness %s: server got %q", strict, srv.Lines())
		}
	}
}

func TestNoRemoteIP(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{})
	r := deliver(t, srv.Addr, opts{env: map[string]string{"TCPREMOTEIP": ""}})
	r.want(t, 0, 'K', "r", "the server accepted message.\n")
}

func TestUsage(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{})
	for _, tc := range []struct {
		name   string
		o      opts
		stderr string
	}{
		{"args", opts{args: []string{"x"}}, "usage: qmail-remote-io"},
		{"no helohost", opts{env: map[string]string{"QMAILREMOTE_HELOHOST": ""}}, "QMAILREMOTE_HELOHOST"},
		{"helohost with CRLF", opts{env: map[string]string{"QMAILREMOTE_HELOHOST": "a\r\nMAIL"}}, "QMAILREMOTE_HELOHOST"},
		{"no sender", opts{env: map[string]string{"QMAILREMOTE_SENDER": ""}}, "QMAILREMOTE_SENDER"},
		{"bad rcpts", opts{env: map[string]string{"QMAILREMOTE_RCPTS": "2"}}, "QMAILREMOTE_RCPT_2"},
		{"bad timeout", opts{timeout: "0"}, "QMAILREMOTE_TIMEOUTREMOTE"},
		{"bad strictness", opts{env: map[string]string{"QMAILREMOTE_TLSSTRICTNESS": "3"}}, "QMAILREMOTE_TLSSTRICTNESS"},
		{"bad ip", opts{env: map[string]string{"TCPREMOTEIP": "nope"}}, "TCPREMOTEIP"},
		{"no fds", opts{noFds: true}, "fd 6"},
	} {
		r := deliver(t, srv.Addr, tc.o)
		if r.code != 100 || len(r.stdout) != 0 || !strings.Contains(r.stderr, tc.stderr) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", tc.name, r.code, r.stdout, r.stderr)
		}
	}
	if has(srv.Lines(), "MAIL") {
		t.Errorf("server got %q", srv.Lines())
	}
}

// refTransform is an independent, byte-by-byte reference of the body
// transform (each CR, LF or CRLF becomes CRLF, and a dot that starts a
// line is doubled), writing to w without the final dot line.
func refTransform(r *bufio.Reader, w *bufio.Writer) {
	bol := true
	for {
		c, err := r.ReadByte()
		if err != nil {
			return
		}
		if bol && c == '.' {
			w.WriteByte('.')
		}
		bol = c == '\r' || c == '\n'
		if c == '\r' {
			if n, err := r.ReadByte(); err == nil && n != '\n' {
				r.UnreadByte()
			}
		}
		if bol {
			w.WriteString("\r\n")
		} else {
			w.WriteByte(c)
		}
	}
}

// TestLargeMessage: 200 MB, byte-exact through the program and a socket.
func TestLargeMessage(t *testing.T) {
	if testing.Short() {
		t.Skip("200 MB message skipped under -short")
	}
	path := filepath.Join(t.TempDir(), "big")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	var chunk bytes.Buffer
	for i := 0; chunk.Len() < 1<<20; i++ {
		fmt.Fprintf(&chunk, "%sline %d of the chunk\xc3\xa9%s", map[bool]string{true: "."}[i%7 == 0], i, []string{"\n", "\r\n", "\r"}[i%3])
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	for written := 0; written < 200<<20; written += chunk.Len() {
		bw.Write(chunk.Bytes())
	}
	bw.Flush()
	f.Close()

	srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{})
	start := time.Now()
	r := deliver(t, srv.Addr, opts{msgFile: path, timeout: "30"})
	elapsed := time.Since(start)
	r.want(t, 0, 'K', "r", "127.0.0.1 accepted message.\n")

	in, _ := os.Open(path)
	defer in.Close()
	h := sha256.New()
	cw := &counter{w: h}
	w := bufio.NewWriterSize(cw, 1<<16)
	refTransform(bufio.NewReaderSize(in, 1<<16), w)
	w.Flush()
	m := srv.Messages()
	if len(m) != 1 || m[0].Len != cw.n || !bytes.Equal(m[0].Sum[:], h.Sum(nil)) {
		t.Fatalf("server got %d messages, %d bytes; want %d bytes", len(m), m[0].Len, cw.n)
	}
	t.Logf("%d bytes delivered in %v", cw.n, elapsed)
}

type counter struct {
	w io.Writer
	n int64
}

func (c *counter) Write(p []byte) (int, error) { c.n += int64(len(p)); return c.w.Write(p) }

// TestPipes: fds 6 and 7 may be two pipes; deadlines work on them too.
// The timeout bounds the healthy replies as well: 30 s without the stall,
// 10 s with it (waited out once, at the end).
func TestPipes(t *testing.T) {
	t.Parallel()
	for _, stall := range []bool{false, true} {
		fromSrv, toClient, err := os.Pipe() // fd 6
		if err != nil {
			t.Fatal(err)
		}
		fromClient, toSrv, err := os.Pipe() // fd 7
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		done := make(chan struct{})
		go func() {
			defer close(done)
			defer toClient.Close()
			br := bufio.NewReader(fromClient)
			io.WriteString(toClient, "220 pipes\r\n")
			for _, reply := range []string{"250 hi", "250 ok", "250 ok", "354 go", "250 queued"} {
				for {
					l, err := br.ReadString('\n')
					if err != nil {
						return
					}
					got = append(got, l)
					if !strings.HasPrefix(reply, "250 queued") || l == ".\r\n" {
						break
					}
				}
				if stall && reply == "250 queued" {
					io.Copy(io.Discard, br)
					return
				}
				io.WriteString(toClient, reply+"\r\n")
			}
			l, _ := br.ReadString('\n')
			got = append(got, l)
		}()
		msg := filepath.Join(t.TempDir(), "msg")
		os.WriteFile(msg, []byte("hi\n.\n"), 0o600)
		in, _ := os.Open(msg)
		null, _ := os.Open(os.DevNull)
		timeout := "30"
		if stall {
			timeout = "10"
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // a backstop
		defer cancel()
		cmd := exec.CommandContext(ctx, binary)
		cmd.Env = []string{"QMAILREMOTE_HELOHOST=h.example.test", "QMAILREMOTE_SENDER=a@example.test", "QMAILREMOTE_RCPTS=1",
			"QMAILREMOTE_RCPT_1=b@example.test", "QMAILREMOTE_TIMEOUTREMOTE=" + timeout, "TCPREMOTEIP=192.0.2.1"}
		cmd.Stdin = in
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		cmd.ExtraFiles = []*os.File{null, null, null, fromSrv, toSrv}
		err = cmd.Run()
		fromSrv.Close()
		toSrv.Close()
		// The program has exited and the last writer is closed: the
		// server reads what is left (QUIT) and then EOF. Close its end
		// only if it is stuck (a backstop), or it may lose the QUIT.
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			fromClient.Close()
			<-done
		}
		fromClient.Close()
		in.Close()
		null.Close()
		want := "r\x00K192.0.2.1 accepted message.\nRemote host said: 250 queued\n\x00"
		if stall {
			want = "r\x00Z192.0.2.1 connection died. Possible duplicate! (#4.4.2)\nTimed out after 10s waiting for the reply after the message.\n\x00"
			want = strings.Replace(want, "Z192.0.2.1", "ZConnected to 192.0.2.1 but", 1)
		}
		if err != nil || stdout.String() != want || stderr.Len() != 0 {
			t.Errorf("stall %v: %v, stdout %q, stderr %q", stall, err, stdout.String(), stderr.String())
		}
		if !stall && strings.Join(got, "") != "EHLO h.example.test\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\nhi\r\n..\r\n.\r\nQUIT\r\n" {
			t.Errorf("server got %q", got)
		}
	}
}
