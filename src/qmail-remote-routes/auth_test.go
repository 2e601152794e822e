package qmailremoteroutes

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const authRoutes = "mail.test:smtp.example.net:587\nsmtps.test:SMTP.example.net:465\nlit.test:[2001:db8::7]:587\nplain.test:smtp.example.net\nmx.test:\n"

func (h *home) smtpauth(text string, mode os.FileMode) {
	h.t.Helper()
	p := filepath.Join(h.home, "control", "smtpauth")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		h.t.Fatal(err)
	}
}

const password = "Pa55:w0rd"

const creds = "smtp.example.net:587:starttls:user@example.net:" + password + "\n" +
	"smtp.example.net:465:smtps:user@example.net:" + password + "\n" +
	"[IPv6:2001:db8:0::7]:587:starttls:lit:" + password + "\n"

func TestAuthExported(t *testing.T) {
	h := newHome(t, authRoutes)
	h.smtpauth(creds, 0o600)
	anchors := "QMAILREMOTE_TRUSTANCHORS=/etc/ssl/certs/ca-certificates.crt"
	for _, tc := range []struct {
		host, auth, strictness string
	}{
		{"mail.test", "starttls", "2"},
		{"smtps.test", "smtps", "2"},
		{"lit.test", "starttls", "2"},
		{"plain.test", "", "0"}, // port 25: no credentials
		{"mx.test", "", "0"},    // no relay: never AUTH, even to an MX
		{"other.test", "", "0"}, // no route
	} {
		r := h.run(tc.host, anchors, "QMAILREMOTE_TLSSTRICTNESS=0", "QMAILREMOTE_AUTH=smtps")
		if r.code != 0 || r.stderr != "" || strings.Contains(r.stdout, "\x00") {
			t.Fatalf("%s: exit %d, stdout %q, stderr %q", tc.host, r.code, r.stdout, r.stderr)
		}
		v := vars(r.stdout)
		if got, ok := v["QMAILREMOTE_AUTH"]; got != tc.auth || ok != (tc.auth != "") {
			t.Errorf("%s: QMAILREMOTE_AUTH=%q (set %v), want %q", tc.host, got, ok, tc.auth)
		}
		if v["QMAILREMOTE_TLSSTRICTNESS"] != tc.strictness {
			t.Errorf("%s: QMAILREMOTE_TLSSTRICTNESS=%q, want %s", tc.host, v["QMAILREMOTE_TLSSTRICTNESS"], tc.strictness)
		}
		if strings.Contains(r.stdout, password) || strings.Contains(r.stdout, "user@example.net") {
			t.Errorf("%s: credentials in the environment: %q", tc.host, r.stdout)
		}
	}
}

// zRun checks that the stage printed one Z report with text and did not
// exec its prog.
func zRun(t *testing.T, r result, text string) {
	t.Helper()
	if r.code != 0 || r.stderr != "" || r.stdout != "Z"+text+"\x00" {
		t.Fatalf("exit %d, stdout %q, stderr %q; want Z%q", r.code, r.stdout, r.stderr, text)
	}
}

func TestAuthFailures(t *testing.T) {
	anchors := "QMAILREMOTE_TRUSTANCHORS=/etc/ssl/certs/ca-certificates.crt"
	h := newHome(t, authRoutes)

	h.smtpauth(creds, 0o604)
	zRun(t, h.run("mail.test", anchors), "Unable to read control files: control/smtpauth is readable by everyone; chmod o-r control/smtpauth (it holds passwords). (#4.3.0)\n")
	// Even for a route without credentials: the file is broken, and so is
	// every secret in it.
	zRun(t, h.run("plain.test", anchors), "Unable to read control files: control/smtpauth is readable by everyone; chmod o-r control/smtpauth (it holds passwords). (#4.3.0)\n")
	// Without a relay the file is not read at all.
	if r := h.run("mx.test", anchors); r.code != 0 || strings.Contains(r.stdout, "\x00") {
		t.Errorf("mx.test: %+v", r)
	}

	h.smtpauth("# creds\n"+creds+"smtp.example.net:587:starttls:Pa55w0rd", 0o640)
	r := h.run("mail.test", anchors)
	zRun(t, r, "Unable to read control files: control/smtpauth line 5: fewer than 5 fields (relay:port:method:user:password). (#4.3.0)\n")

	h.smtpauth(creds, 0o600)
	zRun(t, h.run("mail.test", "QMAILREMOTE_TRUSTANCHORS="), "control/smtpauth has credentials for smtp.example.net:587 but control/trustanchors is not set: a password never goes to an unverified server. (#4.7.0)\n")
	zRun(t, h.run("lit.test"), "control/smtpauth has credentials for [2001:db8::7]:587 but control/trustanchors is not set: a password never goes to an unverified server. (#4.7.0)\n")

	if os.Geteuid() != 0 {
		h.smtpauth(creds, 0o000)
		r := h.run("mail.test", anchors)
		if r.code != 0 || !strings.HasPrefix(r.stdout, "ZUnable to read control files: control/smtpauth cannot be opened: permission denied") {
			t.Errorf("unreadable: %+v", r)
		}
	}
}
