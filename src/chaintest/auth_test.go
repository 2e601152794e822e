package chaintest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"qmail-remote-go/src/testkit/smtptest"
	"qmail-remote-go/src/testkit/tlstest"
)

// Smarthost submission (doc/smtpauth.md) through the whole chain.

const (
	subUser = "user@example.net"
	subPass = "Sm4rt:host pw"
	// subPass64 is the start of subPass in base64 (as in AUTH PLAIN and
	// LOGIN responses): it must not be found either.
	subPass64 = "U200cnQ6aG9zdCBwd"
)

// authWorld is a qmail home that routes example.test to the relay
// smtp.example.test (DNS: 127.0.0.1, and 127.0.0.2 when two servers are
// asked for) on the test servers' port, with trust anchors, tlsstrictness
// 0 in control (credentials must raise it to 2 for the route), and a
// libexec directory whose stages dump their environment and argv.
type authWorld struct {
	h     *home
	srv   map[string]*smtptest.Server
	port  string
	dumps string
}

func newAuthWorld(t *testing.T, scripts ...smtptest.Script) *authWorld {
	t.Helper()
	addrs := []string{"127.0.0.1", "127.0.0.2"}[:len(scripts)]
	m := map[string]smtptest.Script{}
	for i, s := range scripts {
		m[addrs[i]] = s
	}
	port, srv := servers(t, m, addrs...)
	h, d := dnsHome(t, port)
	for _, a := range addrs {
		d.Add("smtp.example.test. 60 IN A " + a)
	}
	h.control("smtproutes", "example.test:smtp.example.test:"+port+"\n")
	w := &authWorld{h: h, srv: srv, port: port}
	(&tlsWorld{h: h}).anchors(t, "0")
	w.dumps = dumpingLibexec(t, h)
	return w
}

// dumpingLibexec makes h run the chain from a directory where every stage
// after qmail-remote is a script that keeps its environment and argv in a
// file, then execs the real program. It returns the files' prefix.
func dumpingLibexec(t *testing.T, h *home) string {
	t.Helper()
	dir := t.TempDir()
	dumps := filepath.Join(t.TempDir(), "env")
	for _, p := range programs {
		script := "#!/bin/sh\n{ env; echo \"argv=$0 $*\"; } >\"" + dumps + ".$$\"\nexec " + filepath.Join(bin, p) + " \"$@\"\n"
		if err := os.WriteFile(filepath.Join(dir, p), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	h.libx = dir
	return dumps
}

// smtpauth writes control/smtpauth, readable by the owner only (or mode).
func (w *authWorld) smtpauth(t *testing.T, text string, mode ...os.FileMode) {
	t.Helper()
	p := filepath.Join(w.h.dir, "control", "smtpauth")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	m := os.FileMode(0o600)
	if len(mode) > 0 {
		m = mode[0]
	}
	if err := os.Chmod(p, m); err != nil {
		t.Fatal(err)
	}
}

func (w *authWorld) creds(t *testing.T, method string) {
	w.smtpauth(t, "# the provider\nsmtp.example.test:"+w.port+":"+method+":"+subUser+":"+subPass+"\n")
}

// noSecret checks that the password is nowhere it must not be: in the
// reports and diagnostics, in the environment and argv of every stage, and
// on the wire before TLS.
func (w *authWorld) noSecret(t *testing.T, res result) {
	t.Helper()
	for _, s := range []string{subPass, subPass64} {
		if strings.Contains(string(res.raw), s) {
			t.Errorf("the password is in the output: %q", res.raw)
		}
	}
	files, _ := filepath.Glob(w.dumps + ".*")
	if len(files) == 0 {
		t.Error("no stage dumped its environment")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), subPass) || strings.Contains(string(b), subPass64) || strings.Contains(string(b), "QMAILREMOTE_PASS") {
			t.Errorf("the password is in the environment or argv of a stage: %s", b)
		}
	}
	for a, s := range w.srv {
		if s.PasswordInCleartext() {
			t.Errorf("%s got the password before TLS", a)
		}
	}
}

// delivered returns how many messages the servers took, and whether any
// got a MAIL command.
func (w *authWorld) delivered() (n int, mail bool) {
	for _, s := range w.srv {
		for _, m := range s.Messages() {
			if m.Done {
				n++
			}
			mail = mail || m.From != ""
		}
	}
	return
}

func (w *authWorld) attempts() int {
	n := 0
	for _, s := range w.srv {
		n += len(s.AuthAttempts())
	}
	return n
}

// submission is a submission server's script: a certificate for
// smtp.example.test from the test CA, AUTH after STARTTLS, our
// credentials.
func submission(t *testing.T, s smtptest.Script) smtptest.Script {
	if s.TLS == nil {
		s.TLS = good(t, "smtp.example.test")
	}
	if s.Auth == "" {
		s.Auth = "PLAIN LOGIN"
	}
	if s.AuthUser == "" {
		s.AuthUser, s.AuthPassword = subUser, subPass
	}
	s.KeepData = true
	return s
}

func TestAuthSubmission(t *testing.T) {
	for _, tc := range []struct {
		name   string
		method string
		script func(t *testing.T) smtptest.Script
		mech   string
	}{
		{"STARTTLS PLAIN", "starttls", func(t *testing.T) smtptest.Script { return submission(t, smtptest.Script{}) }, "PLAIN"},
		{"STARTTLS LOGIN", "starttls", func(t *testing.T) smtptest.Script { return submission(t, smtptest.Script{Auth: "LOGIN CRAM-MD5"}) }, "LOGIN"},
		{"SMTPS PLAIN", "smtps", func(t *testing.T) smtptest.Script { return submission(t, smtptest.Script{SMTPS: true}) }, "PLAIN"},
		{"SMTPS LOGIN", "smtps", func(t *testing.T) smtptest.Script { return submission(t, smtptest.Script{SMTPS: true, Auth: "LOGIN"}) }, "LOGIN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newAuthWorld(t, tc.script(t))
			w.creds(t, tc.method)
			res := w.h.run(sample, "example.test", "a@client.example.test", rcpt)
			res.expect(t, 'K', "127.0.0.1 accepted message.", "TLS: TLSv1.3", "certificate verified.\nAuthenticated as "+subUser+".\n")
			w.noSecret(t, res)
			m := w.srv["127.0.0.1"].Messages()
			if len(m) != 1 || !m[0].Done || !m[0].TLS || m[0].AuthMech != tc.mech || m[0].AuthUser != subUser ||
				m[0].ServerName != "smtp.example.test" || string(m[0].Data) != wire(sample) {
				t.Fatalf("server got %+v", m)
			}
			if tc.method == "smtps" && m[0].StartTLS {
				t.Error("STARTTLS on an SMTPS connection")
			}
			if tc.method == "starttls" && !m[0].StartTLS {
				t.Error("no STARTTLS")
			}
		})
	}
}

func TestAuthRefused(t *testing.T) {
	other := tlstest.NewCA(t, "unknown CA")
	for _, tc := range []struct {
		name     string
		method   string
		script   func(t *testing.T) smtptest.Script
		want     []string
		attempts int
	}{
		{"535", "starttls", func(t *testing.T) smtptest.Script {
			return submission(t, smtptest.Script{AuthUser: subUser, AuthPassword: "not the one"})
		}, []string{"AUTH PLAIN as " + subUser + " failed; check control/smtpauth.", "535 5.7.8"}, 1},
		{"535 over SMTPS", "smtps", func(t *testing.T) smtptest.Script {
			return submission(t, smtptest.Script{SMTPS: true, AuthUser: subUser, AuthPassword: "not the one"})
		}, []string{"failed; check control/smtpauth.", "535 5.7.8"}, 1},
		{"534", "starttls", func(t *testing.T) smtptest.Script {
			return submission(t, smtptest.Script{AuthReply: "534 5.7.9 Authentication mechanism is too weak"})
		}, []string{"534 5.7.9"}, 1},
		{"538", "starttls", func(t *testing.T) smtptest.Script {
			return submission(t, smtptest.Script{AuthReply: "538 5.7.11 Encryption required for requested authentication mechanism"})
		}, []string{"538 5.7.11"}, 1},
		{"no AUTH offered", "starttls", func(t *testing.T) smtptest.Script {
			return smtptest.Script{TLS: good(t, "smtp.example.test"), AuthPassword: subPass}
		}, []string{"does not offer AUTH under TLS", "smtp.example.test:"}, 0},
		{"AUTH offered only before STARTTLS", "starttls", func(t *testing.T) smtptest.Script {
			return submission(t, smtptest.Script{AuthOnlyCleartext: true})
		}, []string{"does not offer AUTH under TLS"}, 0},
		{"no STARTTLS", "starttls", func(t *testing.T) smtptest.Script {
			return smtptest.Script{Auth: "PLAIN", AuthCleartext: true, AuthUser: subUser, AuthPassword: subPass}
		}, []string{"does not offer STARTTLS, and TLS is required (tlsstrictness 2)"}, 0},
		{"certificate for another name", "starttls", func(t *testing.T) smtptest.Script {
			return submission(t, smtptest.Script{TLS: good(t, "other.example.test"), AuthCleartext: true})
		}, []string{"smtp.example.test"}, 0},
		{"unknown CA", "starttls", func(t *testing.T) smtptest.Script {
			return submission(t, smtptest.Script{TLS: serverTLS(t, other, tlstest.Leaf{DNSNames: []string{"smtp.example.test"}})})
		}, []string{"unknown authority"}, 0},
		{"SMTPS, unknown CA", "smtps", func(t *testing.T) smtptest.Script {
			return submission(t, smtptest.Script{SMTPS: true, TLS: serverTLS(t, other, tlstest.Leaf{DNSNames: []string{"smtp.example.test"}})})
		}, []string{"unknown authority"}, 0},
		{"SMTPS route, STARTTLS server", "smtps", func(t *testing.T) smtptest.Script { return submission(t, smtptest.Script{}) },
			[]string{"TLS handshake failed"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newAuthWorld(t, tc.script(t))
			w.creds(t, tc.method)
			res := w.h.run(sample, "example.test", "a@client.example.test", rcpt)
			res.expect(t, 'Z', tc.want...)
			t.Logf("report: %q", res.message.Text)
			w.noSecret(t, res)
			if n, mail := w.delivered(); n != 0 || mail {
				t.Errorf("%d messages delivered, MAIL sent: %v", n, mail)
			}
			if n := w.attempts(); n != tc.attempts {
				t.Errorf("%d AUTH exchanges, want %d", n, tc.attempts)
			}
		})
	}
}

// A 535 is final for the relay: its other address is not tried with the
// same credentials (the mail waits for the admin).
func TestAuthRefusedIsFinal(t *testing.T) {
	s := func(t *testing.T) smtptest.Script {
		return submission(t, smtptest.Script{AuthUser: subUser, AuthPassword: "not the one"})
	}
	w := newAuthWorld(t, s(t), s(t))
	w.creds(t, "starttls")
	res := w.h.run(sample, "example.test", "a@client.example.test", rcpt)
	res.expect(t, 'Z', "535 5.7.8")
	w.noSecret(t, res)
	if n := w.srv["127.0.0.1"].Conns() + w.srv["127.0.0.2"].Conns(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

func TestAuthControlFiles(t *testing.T) {
	w := newAuthWorld(t, submission(t, smtptest.Script{}))

	w.smtpauth(t, "smtp.example.test:"+w.port+":starttls:"+subUser+":"+subPass+"\n", 0o644)
	res := w.h.run(sample, "example.test", "a@client.example.test", rcpt)
	res.expect(t, 'Z', "Unable to read control files: control/smtpauth is readable by everyone; chmod o-r control/smtpauth")
	w.noSecret(t, res)

	w.smtpauth(t, "# ok\nsmtp.example.test:"+w.port+":starttls:"+subUser+":"+subPass+"\nsmtp.example.test:"+w.port+":tls:"+subUser+":"+subPass+"\n")
	res = w.h.run(sample, "example.test", "a@client.example.test", rcpt)
	res.expect(t, 'Z', "Unable to read control files: control/smtpauth line 3: bad method: not starttls or smtps. (#4.3.0)")
	w.noSecret(t, res)
	if strings.Contains(string(res.raw), subUser) {
		t.Errorf("the syntax error quotes the file: %q", res.raw)
	}

	// Credentials but no trust anchors: nothing can verify the server.
	w.creds(t, "starttls")
	w.h.removeControl("trustanchors")
	res = w.h.run(sample, "example.test", "a@client.example.test", rcpt)
	res.expect(t, 'Z', "control/smtpauth has credentials for smtp.example.test:"+w.port+" but control/trustanchors is not set: a password never goes to an unverified server. (#4.7.0)")
	w.noSecret(t, res)

	if n, mail := w.delivered(); n != 0 || mail || w.srv["127.0.0.1"].Conns() != 0 {
		t.Errorf("the server was contacted")
	}

	// Credentials for another port of the relay: this route needs none,
	// and delivers like any other (tlsstrictness 0 here).
	w.h.control("trustanchors", tlstest.WriteBundle(t, t.TempDir(), testCA)+"\n")
	w.smtpauth(t, "smtp.example.test:1:starttls:"+subUser+":"+subPass+"\n")
	plain := newAuthWorld(t, smtptest.Script{})
	plain.smtpauth(t, "smtp.example.test:1:starttls:"+subUser+":"+subPass+"\n")
	plain.h.run(sample, "example.test", "a@client.example.test", rcpt).expect(t, 'K', "127.0.0.1 accepted message.")
}
