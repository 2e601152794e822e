package chaintest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"qmail-remote-go/src/testkit/smtptest"
)

const sample = "From: a@client.example.test\nTo: b@example.test\nSubject: chain test\n\nHello.\n.leading dot\n..two dots\n\n.\nlast line\n"

// route points example.test (and everything else) at srv.
func route(h *home, srv *smtptest.Server) {
	h.control("smtproutes", fmt.Sprintf("example.test:[%s]:%s\n", srv.Host, srv.Port))
}

func TestDeliverV4(t *testing.T) {
	srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{KeepData: true})
	h := newHome(t)
	route(h, srv)
	res := h.run(sample, "example.test", "a@client.example.test", "b@example.test")
	res.expect(t, 'K', "127.0.0.1 accepted message.\nRemote host said: 250 ok: queued\n")
	if res.rcptLetters() != "r" {
		t.Errorf("recipient reports %q", res.raw)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 || !msgs[0].Done {
		t.Fatalf("server received %d messages", len(msgs))
	}
	m := msgs[0]
	if string(m.Data) != wire(sample) {
		t.Errorf("body on the wire %q, want %q", m.Data, wire(sample))
	}
	if m.Helo != "EHLO client.example.test" || m.From != "MAIL FROM:<a@client.example.test>" ||
		len(m.Rcpts) != 1 || m.Rcpts[0] != "RCPT TO:<b@example.test>" {
		t.Errorf("envelope %q %q %q", m.Helo, m.From, m.Rcpts)
	}
}

func TestDeliverV6(t *testing.T) {
	srv := smtptest.Start(t, "[::1]:0", smtptest.Script{KeepData: true})
	h := newHome(t)
	route(h, srv)
	res := h.run(sample, "example.test", "", "b@example.test")
	res.expect(t, 'K', "::1 accepted message.")
	if m := srv.Messages(); len(m) != 1 || m[0].From != "MAIL FROM:<>" || string(m[0].Data) != wire(sample) {
		t.Errorf("server received %+v", m)
	}
}

// Every kind of reply (2xx, 4xx, 5xx, a 354 after the dot) at each step
// of the conversation, and connections that die, through the whole chain.
func TestReplyClasses(t *testing.T) {
	three := []string{"one@example.test", "two@example.test", "three@example.test"}
	tests := []struct {
		name   string
		script smtptest.Script
		rcpts  []string
		rcptsW string // expected recipient letters
		letter byte
		want   []string
		body   bool // the server must have the whole message
	}{
		{"greeting 554", smtptest.Script{Greeting: "554 go away"}, nil, "", 'Z',
			[]string{"Sorry, I wasn't able to establish an SMTP connection. (#4.4.1)", "greeting failed", "554 go away"}, false},
		{"EHLO 500 then HELO", smtptest.Script{Ehlo: "500 what?"}, nil, "r", 'K', []string{"accepted message"}, true},
		{"EHLO and HELO refused", smtptest.Script{Ehlo: "550 no", Helo: "550 still no"}, nil, "", 'Z',
			[]string{"my name was rejected", "550 still no"}, false},
		{"MAIL 553", smtptest.Script{Mail: "553 sender unknown"}, nil, "", 'D',
			[]string{"sender was rejected", "Remote host said: 553 sender unknown"}, false},
		{"MAIL 451", smtptest.Script{Mail: "451 try later"}, nil, "", 'Z', []string{"sender was rejected", "451 try later"}, false},
		{"RCPT mixed", smtptest.Script{Rcpt: []string{"250 ok", "550 no such user", "450 mailbox busy"}}, three, "rhs", 'K',
			[]string{"accepted message"}, true},
		{"all RCPT rejected", smtptest.Script{Rcpt: []string{"550 no", "551 no", "452 full"}}, three, "hhs", 'D',
			[]string{"Giving up on 127.0.0.1."}, false},
		{"DATA 554", smtptest.Script{Data: "554 no data for you"}, nil, "r", 'D', []string{"failed on DATA command", "554 no data"}, false},
		{"DATA 451", smtptest.Script{Data: "451 later"}, nil, "r", 'Z', []string{"failed on DATA command", "451 later"}, false},
		{"after dot 554", smtptest.Script{AfterDot: "554 5.7.1 spam"}, nil, "r", 'D', []string{"failed after I sent the message", "554 5.7.1 spam"}, true},
		{"after dot 452", smtptest.Script{AfterDot: "452 full"}, nil, "r", 'Z', []string{"failed after I sent the message", "452 full"}, true},
		{"after dot 354 is not a K", smtptest.Script{AfterDot: "354 what"}, nil, "r", 'Z', nil, true},
		{"after dot multi-line 250", smtptest.Script{AfterDot: "250-ok\n250 queued as X"}, nil, "r", 'K',
			[]string{"Remote host said: 250-ok\n250 queued as X\n"}, true},
		{"close after dot", smtptest.Script{AfterDot: smtptest.Close}, nil, "r", 'Z',
			[]string{"Connected to 127.0.0.1 but connection died. Possible duplicate! (#4.4.2)"}, true},
		{"close mid-body", smtptest.Script{Mid: smtptest.Close, MidAfter: 10}, nil, "r", 'Z',
			[]string{"connection died"}, false},
		{"reset mid-body", smtptest.Script{Mid: smtptest.Reset, MidAfter: 1000}, nil, "r", 'Z',
			[]string{"connection died"}, false},
		{"NUL in reply text", smtptest.Script{Mail: "550 bad\x00byte\x01"}, nil, "", 'D', []string{"550 bad?byte?"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.script.KeepData = true
			srv := smtptest.Start(t, "127.0.0.1:0", tc.script)
			h := newHome(t)
			route(h, srv)
			rcpts := tc.rcpts
			if rcpts == nil {
				rcpts = []string{"b@example.test"}
			}
			msg := sample
			if tc.script.Mid != "" {
				// Big enough that the client is still writing when the
				// server gives up: the dot is never sent.
				msg += strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n", 1<<16)
			}
			res := h.run(msg, append([]string{"example.test", "a@client.example.test"}, rcpts...)...)
			res.expect(t, tc.letter, tc.want...)
			if res.rcptLetters() != tc.rcptsW {
				t.Errorf("recipient reports %q, want letters %q", res.raw, tc.rcptsW)
			}
			dup := tc.name == "close after dot" || tc.name == "after dot 354 is not a K"
			if strings.Contains(res.message.Text, "Possible duplicate") != dup {
				t.Errorf("Possible duplicate! where it should not be, or missing: %q", res.message.Text)
			}
			got := false
			for _, m := range srv.Messages() {
				got = got || m.Done && string(m.Data) == wire(msg)
			}
			if got != tc.body {
				t.Errorf("server has the whole message: %v, want %v", got, tc.body)
			}
		})
	}
}

// Bad input that the entry program handles: wrong arguments, no qmail
// home, a bad message, bad control files.
func TestBadInput(t *testing.T) {
	srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{})
	t.Run("too few arguments", func(t *testing.T) {
		h := newHome(t)
		h.run(sample, "example.test", "a@b").expect(t, 'D', "I (qmail-remote) was invoked improperly. (#5.3.5)")
	})
	t.Run("no qmail home", func(t *testing.T) {
		h := newHome(t)
		h.dir = filepath.Join(h.dir, "nonexistent")
		h.run(sample, "example.test", "a@b", "c@d").expect(t, 'Z', "Unable to switch to home directory. (#4.3.0)")
	})
	t.Run("partial final line", func(t *testing.T) {
		h := newHome(t)
		route(h, srv)
		before := srv.Conns()
		h.run("Subject: x\n\nno newline", "example.test", "a@b", "c@d").expect(t, 'D', "SMTP cannot transfer messages with partial final lines. (#5.6.2)")
		if srv.Conns() != before {
			t.Error("connected although the message has a partial final line")
		}
	})
	t.Run("message not a regular file", func(t *testing.T) {
		h := newHome(t)
		route(h, srv)
		r, w, _ := os.Pipe()
		w.Write([]byte(sample))
		w.Close()
		defer r.Close()
		h.runFile(r, "example.test", "a@b", "c@d").expect(t, 'Z', "Unable to read message", "not a regular file")
	})
	controls := []struct{ file, content, want string }{
		{"timeoutremote", "ten\n", `control/timeoutremote must hold a number from 1 to`},
		{"timeoutconnect", "0\n", `control/timeoutconnect must hold a number`},
		{"timeoutdns", "-1\n", `control/timeoutdns must hold a number`},
		{"tlsstrictness", "3\n", `control/tlsstrictness must hold a number from 0 to 2`},
		{"ipme", "192.0.2.1\nnot-an-ip\n", `control/ipme holds "not-an-ip"`},
		{"helohost", "two words\n", `control/helohost holds "two words"`},
		{"clientcert", "/etc/ssl/x.pem\n", `control/clientcert is set but control/clientkey is not`},
		{"trustanchors", "/nonexistent/anchors.pem\n", `control/trustanchors names /nonexistent/anchors.pem: no such file or directory`},
		{"trustanchors", "/etc/passwd/\n", `control/trustanchors names /etc/passwd/`},
		{"trustanchors", "/\n", ``}, // a directory that exists: fine
		{"trustanchors", "/tmp\n", `which is not a file (a directory must end in /)`},
		{"smtproutes", "example.test:[127.0.0.1]:99999\n", `smtproutes`},
		{"smtproutes", "x\n" + "example.test:relay.example.test\nbroken line\n", `line 1`},
	}
	for _, c := range controls {
		t.Run("control/"+c.file+" "+strings.TrimSpace(c.content), func(t *testing.T) {
			h := newHome(t)
			route(h, srv)
			h.control(c.file, c.content)
			before := srv.Conns()
			if c.want == "" {
				h.run(sample, "example.test", "a@b", "c@d").expect(t, 'K')
				return
			}
			h.run(sample, "example.test", "a@b", "c@d").expect(t, 'Z', "Unable to read control files", c.want)
			if srv.Conns() != before {
				t.Error("connected despite a broken control file")
			}
		})
	}
	t.Run("no me and no helohost", func(t *testing.T) {
		h := newHome(t)
		route(h, srv)
		h.removeControl("me")
		h.run(sample, "example.test", "a@b", "c@d").expect(t, 'Z', "Unable to read control files")
	})
	t.Run("control file is a directory", func(t *testing.T) {
		h := newHome(t)
		route(h, srv)
		h.removeControl("timeoutremote")
		os.Mkdir(filepath.Join(h.dir, "control", "timeoutremote"), 0o755)
		h.run(sample, "example.test", "a@b", "c@d").expect(t, 'Z', "control/timeoutremote is not a regular file")
	})
	t.Run("helohost used", func(t *testing.T) {
		h := newHome(t)
		s := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{})
		route(h, s)
		h.control("helohost", "helo.example.test\n")
		h.run(sample, "example.test", "a@b", "c@d").expect(t, 'K')
		if l := s.Lines(); len(l) == 0 || l[0] != "EHLO helo.example.test" {
			t.Errorf("lines %q", l)
		}
	})
}

// A stage further down that crashes, is killed, or prints garbage: the
// entry program still gives exactly one well-formed Z and exit 0.
func TestCrashDownTheChain(t *testing.T) {
	for _, tc := range []struct{ name, script, want string }{
		{"io exits 2", "echo 'panic: boom' >&2; exit 2", "panic: boom"},
		{"io killed", "kill -KILL $$", "signal"},
		{"io prints garbage", "printf 'garbage'; exit 0", "malformed"},
		{"io prints r only", "printf 'r\\0'; exit 0", "no message report"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{})
			h := newHome(t)
			route(h, srv)
			lib := t.TempDir()
			for _, p := range programs {
				os.Symlink(filepath.Join(bin, p), filepath.Join(lib, p))
			}
			os.Remove(filepath.Join(lib, "qmail-remote-io"))
			os.WriteFile(filepath.Join(lib, "qmail-remote-io"), []byte("#!/bin/sh\n"+tc.script+"\n"), 0o755)
			h.libx = lib
			h.run(sample, "example.test", "a@b", "c@d").expect(t, 'Z', tc.want)
		})
	}
	t.Run("chain missing", func(t *testing.T) {
		h := newHome(t)
		h.libx = t.TempDir()
		h.run(sample, "example.test", "a@b", "c@d").expect(t, 'Z', "qmail-remote-routes")
	})
}

// Variables inherited from the caller must not steer the delivery.
func TestInheritedEnvironmentIgnored(t *testing.T) {
	srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{})
	h := newHome(t)
	route(h, srv)
	h.env = []string{"QMAILREMOTE_RELAY=[192.0.2.1]", "QMAILREMOTE_CANDIDATES=x/192.0.2.1", "TCPREMOTEIP=192.0.2.1", "QMAILREMOTE_HELOHOST=evil"}
	h.run(sample, "example.test", "a@b", "c@d").expect(t, 'K', "127.0.0.1 accepted")
	if l := srv.Lines(); len(l) == 0 || l[0] != "EHLO client.example.test" {
		t.Errorf("lines %q", l)
	}
}

// Servers that are not SMTP, or stop answering, through the whole chain
// with timeoutremote faultTimeout: long enough for every healthy reply on a
// loaded machine, and the stalls, which wait it out, run at the same time.
func TestMisbehavingServers(t *testing.T) {
	tests := []struct {
		name   string
		script smtptest.Script
		letter byte
		want   []string
		dup    bool
	}{
		{"stall at greeting", smtptest.Script{Greeting: smtptest.Stall}, 'Z', []string{"(#4.4.1)"}, false},
		{"no code in greeting", smtptest.Script{Greeting: "hello there"}, 'Z', []string{"(#4.4.1)"}, false},
		{"mixed codes in EHLO reply", smtptest.Script{Ehlo: "250-ok\n550 no"}, 'Z', []string{"(#4.4.1)"}, false},
		{"10 MB reply line to MAIL", smtptest.Script{Mail: "550 " + strings.Repeat("x", 10<<20)}, 'Z', []string{"reply was not SMTP", "longer than 1 MiB"}, false},
		{"stall at RCPT", smtptest.Script{Rcpt: []string{smtptest.Stall}}, 'Z', []string{"connection died"}, false},
		{"stall after the dot", smtptest.Script{AfterDot: smtptest.Stall}, 'Z', []string{"Possible duplicate!"}, true},
		{"reset after the dot", smtptest.Script{AfterDot: smtptest.Reset}, 'Z', []string{"Possible duplicate!"}, true},
		{"close at DATA", smtptest.Script{Data: smtptest.Close}, 'Z', []string{"connection died"}, false},
	}
	// Our own goroutines rather than t.Parallel, which -parallel (by
	// default GOMAXPROCS) would ration.
	var wg sync.WaitGroup
	for _, tc := range tests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Run(tc.name, func(t *testing.T) {
				srv := smtptest.Start(t, "127.0.0.1:0", tc.script)
				h := newHome(t)
				route(h, srv)
				h.control("timeoutremote", fmt.Sprintf("%d\n", faultTimeout))
				res := h.run(sample, "example.test", "a@b", "c@d")
				res.expect(t, tc.letter, tc.want...)
				if strings.Contains(res.message.Text, "Possible duplicate!") != tc.dup {
					t.Errorf("Possible duplicate! wrongly present or missing: %q", res.message.Text)
				}
				if len(res.raw) > 4096*2 {
					t.Errorf("report of %d bytes", len(res.raw))
				}
			})
		}()
	}
	wg.Wait()
}
