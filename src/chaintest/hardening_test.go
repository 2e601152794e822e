package chaintest

// Hardening, through the whole chain as qmail-rspawn runs it: level 2
// fails closed, no GO* variable reaches the stages, replies matched only
// to commands already sent, a complete report is final and "Possible
// duplicate!" appears exactly when the dot may be out, the verdict of a
// reply of any length, and envelope addresses that would change the
// command line.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"qmail-remote-go/src/testkit/smtptest"
)

// TestLevel2FailsClosed: tlsstrictness 2 without usable trust anchors is
// a Z before any connection, naming the file; never a cleartext delivery.
// Today's main delivered in cleartext without control/trustanchors.
func TestLevel2FailsClosed(t *testing.T) {
	for _, tc := range []struct {
		name    string
		anchors func(t *testing.T) string // control/trustanchors; "" none
		want    []string
	}{
		{"no trustanchors", func(t *testing.T) string { return "" },
			[]string{"control/tlsstrictness is 2", "control/trustanchors is not set"}},
		{"an empty file", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "empty.pem")
			os.WriteFile(p, nil, 0o644)
			return p
		}, []string{"control/trustanchors names ", "empty.pem, which holds no usable certificate"}},
		{"a file of junk", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "junk.pem")
			os.WriteFile(p, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o644)
			return p
		}, []string{"junk.pem, which holds no usable certificate"}},
		{"a directory without certificates", func(t *testing.T) string {
			d := t.TempDir()
			os.WriteFile(filepath.Join(d, "README"), []byte("nothing here"), 0o644)
			return d + "/"
		}, []string{"which holds no usable certificate"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{TLS: good(t, "mx1.example.test")})
			h := newHome(t)
			route(h, srv)
			h.control("tlsstrictness", "2\n")
			if a := tc.anchors(t); a != "" {
				h.control("trustanchors", a+"\n")
			}
			res := h.run(sample, "example.test", "a@b", rcpt)
			res.expect(t, 'Z', append([]string{"Unable to read control files: "}, tc.want...)...)
			if n := srv.Conns(); n != 0 {
				t.Errorf("%d connections to the server: must fail before connecting", n)
			}
		})
	}
	// A route with credentials raises the level to 2 for itself: the
	// same check, before connecting (qmail-remote-routes).
	t.Run("smtpauth route, anchors without a certificate", func(t *testing.T) {
		w := newAuthWorld(t, submission(t, smtptest.Script{}))
		p := filepath.Join(t.TempDir(), "empty.pem")
		os.WriteFile(p, nil, 0o644)
		w.h.control("trustanchors", p+"\n")
		w.creds(t, "starttls")
		res := w.h.run(sample, "example.test", "a@b", rcpt)
		res.expect(t, 'Z', "control/smtpauth has credentials for smtp.example.test:", "empty.pem: holds no usable certificate")
		for _, s := range w.srv {
			if s.Conns() != 0 {
				t.Errorf("%d connections: must fail before connecting", s.Conns())
			}
		}
	})
}

// stageLibexec makes h run the chain from a directory holding the real
// programs, except those in fake, each a shell script with that body.
func stageLibexec(t *testing.T, h *home, fake map[string]string) string {
	t.Helper()
	lib := t.TempDir()
	for _, p := range programs {
		if body, ok := fake[p]; ok {
			if err := os.WriteFile(filepath.Join(lib, p), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.Symlink(filepath.Join(bin, p), filepath.Join(lib, p)); err != nil {
			t.Fatal(err)
		}
	}
	h.libx = lib
	return lib
}

// TestGoVariablesDropped: GOTRACEBACK, GODEBUG, GOMAXPROCS and every
// other GO* variable stay out of the chain's environment, unless
// QMAILREMOTE_KEEPGOENV=1 says otherwise: GOTRACEBACK=crash would make a
// stage that holds a password dump core.
func TestGoVariablesDropped(t *testing.T) {
	h := newHome(t)
	// The routes stage, first after qmail-remote, reports what it got.
	stageLibexec(t, h, map[string]string{"qmail-remote-routes": `printf 'Zgot:%s\n\0' "$(env | grep '^GO' | sort | tr '\n' ' ')"`})
	h.env = append(h.env, "GOTRACEBACK=crash", "GODEBUG=madvdontneed=0", "GOMAXPROCS=1", "GOGC=off")
	res := h.run(sample, "example.test", "a@b", rcpt)
	res.expect(t, 'Z', "got:\n")
	if res.message.Text != "got:\n" {
		t.Errorf("GO variables reached the chain: %q", res.message.Text)
	}
	h.env = append(h.env, "QMAILREMOTE_KEEPGOENV=1")
	res = h.run(sample, "example.test", "a@b", rcpt)
	res.expect(t, 'Z', "got:GODEBUG=madvdontneed=0 GOGC=off GOMAXPROCS=1 GOTRACEBACK=crash \n")
}

// TestEarlyReplies: a server that answers before it is asked never gets
// a K: the 250 sent together with the 354 (in cleartext and under
// verified TLS, where the reply travels through qmail-remote-tlsio), and
// every reply of the session sent up front. Today's main said K to all.
func TestEarlyReplies(t *testing.T) {
	const oos = "the session is out of step: it answered before I asked"
	t.Run("354 and 250 at once", func(t *testing.T) {
		srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{Data: "354 go ahead\n250 ok: queued"})
		h := newHome(t)
		route(h, srv)
		res := h.run(sample, "example.test", "a@b", rcpt)
		res.expect(t, 'Z', oos, "after the reply to DATA")
		if strings.Contains(res.message.Text, "Possible duplicate!") {
			t.Errorf("the dot never went out, yet %q", res.message.Text)
		}
		for _, m := range srv.Messages() {
			if m.Len != 0 || m.Done {
				t.Errorf("the body went out: %+v", m)
			}
		}
	})
	t.Run("354 and 250 at once under TLS", func(t *testing.T) {
		w := newTLSWorld(t, "2", smtptest.Script{TLS: good(t, "mx1.example.test"), Data: "354 go ahead\n250 ok: queued"}, smtptest.Script{})
		res := w.h.run(sample, "example.test", "a@b", rcpt)
		res.expect(t, 'Z', oos)
		for _, s := range w.srv {
			for _, m := range s.Messages() {
				if m.Len != 0 || m.Done {
					t.Errorf("the body went out: %+v", m)
				}
			}
		}
	})
	t.Run("every reply up front", func(t *testing.T) {
		srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{Greeting: "220 hi\n250-hi\n250 PIPELINING\n250 ok\n250 ok\n354 go\n250 ok: queued"})
		h := newHome(t)
		route(h, srv)
		res := h.run(sample, "example.test", "a@b", rcpt)
		res.expect(t, 'Z', "(#4.4.1)", oos, "before I sent EHLO")
		if l := srv.Lines(); len(l) > 1 || len(l) == 1 && l[0] != "QUIT" {
			t.Errorf("server got %q", l)
		}
	})
}

// TestCompleteReportIsFinal: a report written in full survives the death
// of the stage that wrote it, also of the TLS stage waiting to send
// close_notify; "Possible duplicate!" appears exactly when the dot may
// have gone out; and the report names the program that died. An earlier
// version turned the K into "Z ... Possible duplicate!", and qmail sent
// the mail again.
func TestCompleteReportIsFinal(t *testing.T) {
	const dup = "Possible duplicate!"
	for _, tc := range []struct {
		name   string
		fake   map[string]string
		letter byte
		want   []string
		dup    bool
	}{
		{"io killed after its K", map[string]string{"qmail-remote-io": `printf 'r\0K127.0.0.1 accepted message.\n\0'; kill -9 $$`},
			'K', []string{"127.0.0.1 accepted message."}, false},
		{"io killed at the greeting", map[string]string{"qmail-remote-io": `printf b 1<>/dev/fd/3; kill -9 $$`},
			'Z', []string{"Connected to 127.0.0.1 but qmail-remote-io failed: killed by signal 9"}, false},
		{"io killed after the dot", map[string]string{"qmail-remote-io": `printf b 1<>/dev/fd/3; printf d 1<>/dev/fd/3; kill -9 $$`},
			'Z', []string{"Connected to 127.0.0.1 but qmail-remote-io failed: killed by signal 9"}, true},
		// The chain's own failure (the connector killed) after the dot.
		{"connector killed after the dot", map[string]string{"qmail-remote-io": `printf d 1<>/dev/fd/3; kill -9 $PPID; kill -9 $$`},
			'Z', []string{"The delivery chain failed (killed by signal"}, true},
		{"connector killed before the dot", map[string]string{"qmail-remote-io": `printf b 1<>/dev/fd/3; kill -9 $PPID; kill -9 $$`},
			'Z', []string{"The delivery chain failed (killed by signal"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{})
			h := newHome(t)
			route(h, srv)
			stageLibexec(t, h, tc.fake)
			// A connector of its own, to kill: in one process, it
			// is qmail-remote itself (TestInProcessCrash).
			if strings.HasPrefix(tc.name, "connector") {
				h.env = append(h.env, "QMAILREMOTE_REALEXEC=1")
			}
			res := h.run(sample, "example.test", "a@b", rcpt)
			res.expect(t, tc.letter, tc.want...)
			if strings.Contains(res.message.Text, dup) != tc.dup {
				t.Errorf("report %q: duplicate %v, want %v", res.message.Text, !tc.dup, tc.dup)
			}
		})
	}
	// The real TLS stage, killed once the real qmail-remote-io it ran
	// has written its K (while it would send close_notify), or right
	// after starting it: its wrapper hands it a second run that does so.
	for _, tc := range []struct {
		name   string
		second string // the second run's wrapper: REAL is the real qmail-remote-io
		letter byte
		want   []string
	}{
		{"TLS stage killed after the K", `REAL; st=$?; kill -9 $PPID; exit $st`, 'K', []string{"127.0.0.1 accepted message.", "TLS: TLSv1.3"}},
		{"TLS stage killed before the dot", `kill -9 $PPID; exec REAL`, 'Z', []string{"Connected to 127.0.0.1 but qmail-remote-tlsio failed: killed by signal 9 (killed). (#4.4.2)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newTLSWorld(t, "2", smtptest.Script{TLS: good(t, "mx1.example.test"), KeepData: true}, smtptest.Script{})
			second := filepath.Join(t.TempDir(), "second-run")
			os.WriteFile(second, []byte("#!/bin/sh\n"+strings.ReplaceAll(tc.second, "REAL", filepath.Join(bin, "qmail-remote-io"))+"\n"), 0o755)
			stageLibexec(t, w.h, map[string]string{"qmail-remote-tlsio": "exec " + filepath.Join(bin, "qmail-remote-tlsio") + " " + second})
			res := w.h.run(sample, "example.test", "a@b", rcpt)
			res.expect(t, tc.letter, tc.want...)
			if strings.Contains(res.message.Text, dup) {
				t.Errorf("report %q: no dot went out without its verdict", res.message.Text)
			}
		})
	}
}

// TestLongReplyVerdict: a 550 of 20,000 lines (4 MB) to RCPT bounces the
// recipient, as stock does; an earlier version called it "not SMTP" and
// the mail waited a week in the queue.
func TestLongReplyVerdict(t *testing.T) {
	long := strings.Repeat("550-5.1.1 "+strings.Repeat("x", 190)+"\n", 20000) + "550 5.1.1 no such user"
	srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{Rcpt: []string{long}})
	h := newHome(t)
	h.control("timeoutremote", "60\n")
	route(h, srv)
	res := h.run(sample, "example.test", "a@b", rcpt)
	res.expect(t, 'D', "Giving up on 127.0.0.1.")
	if res.rcptLetters() != "h" || !strings.Contains(res.rcpts[0].Text, "Remote host said: 550-5.1.1 xxx") {
		t.Errorf("recipient reports %q", res.raw)
	}
	if len(res.raw) > 2*4096 {
		t.Errorf("%d bytes of reports", len(res.raw))
	}
}

// TestEnvelopeInjection: an address whose domain part holds '>' and
// spaces would add ESMTP parameters of its own ("AUTH=<>", "NOTIFY=");
// it is refused and never goes on the wire.
func TestEnvelopeInjection(t *testing.T) {
	t.Run("recipient", func(t *testing.T) {
		srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{})
		h := newHome(t)
		route(h, srv)
		res := h.run(sample, "example.test", "a@b.example", "r@example.test> NOTIFY=SUCCESS,FAILURE", rcpt)
		res.expect(t, 'K', "127.0.0.1 accepted message.")
		if res.rcptLetters() != "hr" || !strings.Contains(res.rcpts[0].Text, "cannot go into a RCPT command") {
			t.Errorf("recipient reports %q", res.raw)
		}
		for _, l := range srv.Lines() {
			if strings.Contains(l, "NOTIFY") {
				t.Errorf("server got %q", l)
			}
		}
	})
	t.Run("sender", func(t *testing.T) {
		srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{})
		h := newHome(t)
		route(h, srv)
		res := h.run(sample, "example.test", "x@y.test> AUTH=<>", rcpt)
		res.expect(t, 'D', "the sender address cannot go into a MAIL command", "(#5.1.7)")
		for _, l := range srv.Lines() {
			if strings.HasPrefix(l, "MAIL") {
				t.Errorf("server got %q", l)
			}
		}
	})
}
