package qmailremoteio

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"qmail-remote-go/src/testkit/smtptest"
	"qmail-remote-go/src/testkit/tlstest"
)

const (
	authUser = "user@example.net"
	authPass = "S3cr3t:pass word"
)

// envDumpScript stands in for the TLS stage like fakeTLSIOScript, and
// keeps the whole environment and argv it got in $FAKE_ENV_OUT.<pid>: the
// password must be in neither. With FAKE_TLSIO_REAL set it execs that (the
// real TLS stage) instead of pretending.
const envDumpScript = `#!/bin/sh
{ env; echo "argv=$0 $*"; } >"$FAKE_ENV_OUT.$$"
[ -n "$FAKE_TLSIO_REAL" ] && exec "$FAKE_TLSIO_REAL" "$@"
unset CAFILE CADIR CERTFILE KEYFILE
SSL_PROTOCOL=TLSv1.3 SSL_CIPHER=TLS_AES_128_GCM_SHA256 QMAILREMOTE_TLSVERIFIED=$FAKE_TLSIO_VERIFIED
export SSL_PROTOCOL SSL_CIPHER QMAILREMOTE_TLSVERIFIED
exec "$1"
`

var envDump struct {
	once sync.Once
	path string
	err  error
}

func envDumpStage(t *testing.T) string {
	t.Helper()
	envDump.once.Do(func() {
		envDump.path = filepath.Join(filepath.Dir(binary), "env-dump-tlsio")
		envDump.err = os.WriteFile(envDump.path, []byte(envDumpScript), 0o755)
	})
	if envDump.err != nil {
		t.Fatal(envDump.err)
	}
	return envDump.path
}

// authHome is a qmail home with control/smtpauth holding text.
func authHome(t *testing.T, text string) string {
	t.Helper()
	home := t.TempDir()
	os.Mkdir(filepath.Join(home, "control"), 0o755)
	if err := os.WriteFile(filepath.Join(home, "control", "smtpauth"), []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return home
}

// authEnv is the environment of a first run to relay smtp.example.net:port
// with credentials, the env-dumping fake TLS stage in front.
func authEnv(t *testing.T, method, home, port, verified string) (map[string]string, string) {
	dumps := filepath.Join(t.TempDir(), "env")
	return map[string]string{
		"QMAILREMOTE_TLS":           "require",
		"QMAILREMOTE_TLSIO":         envDumpStage(t),
		"QMAILREMOTE_TRUSTANCHORS":  "/nonexistent/anchors.pem",
		"QMAILREMOTE_TLSSTRICTNESS": "2",
		"QMAILREMOTE_AUTH":          method,
		"QMAILREMOTE_QMAILHOME":     home,
		"QMAILREMOTE_RELAY":         "smtp.example.net",
		"QMAILREMOTE_PORT":          port,
		"FAKE_TLSIO_VERIFIED":       verified,
		"FAKE_ENV_OUT":              dumps,
	}, dumps
}

// noSecrets checks that the password is in no report, no diagnostic,
// and no environment or argv a TLS stage got.
func noSecrets(t *testing.T, r run, dumps string) {
	t.Helper()
	if strings.Contains(string(r.stdout), authPass) || strings.Contains(r.stderr, authPass) {
		t.Errorf("the password is in the output: %q %q", r.stdout, r.stderr)
	}
	files, _ := filepath.Glob(dumps + ".*")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), authPass) || strings.Contains(string(b), "UzNjcjN0") {
			t.Errorf("the password is in the environment of a TLS stage: %s", b)
		}
	}
}

// EHLO replies for a server that says 220 to STARTTLS without a TLS
// configuration (smtptest adds the AUTH line).
const (
	ehloSTARTTLS = "250-smtptest\n250-STARTTLS\n250 8BITMIME"
	ehloAfter    = "250-smtptest\n250 8BITMIME"
)

func TestAuth(t *testing.T) {
	t.Parallel()
	creds := "smtp.example.net:2525:starttls:" + authUser + ":" + authPass + "\n"
	home := authHome(t, creds)
	long := strings.Repeat("u", 200) + "@example.net"
	longPass := strings.Repeat("p", 300)
	longHome := authHome(t, "smtp.example.net:2525:starttls:"+long+":"+longPass+"\n")
	std := func(s smtptest.Script) smtptest.Script {
		s.StartTLS = "220 go" // a 220 without a handshake: the fake stage goes on in cleartext
		s.Ehlo, s.EhloAfterTLS = ehloSTARTTLS, ehloAfter
		if s.Auth == "" {
			s.Auth = "PLAIN LOGIN"
		}
		if s.AuthPassword == "" {
			s.AuthUser, s.AuthPassword = authUser, authPass
		}
		return s
	}
	const tlsLine = "TLS: TLSv1.3 TLS_AES_128_GCM_SHA256, certificate verified.\n"
	for _, tc := range []struct {
		name     string
		script   smtptest.Script
		home     string
		verified string
		code     int
		letter   byte
		text     string // the whole report, or its start when it ends in "..."
		mech     string // delivered after AUTH with this mechanism
		attempts int    // AUTH exchanges the server saw
	}{
		{"PLAIN", std(smtptest.Script{}), home, "1", 0, 'K',
			"127.0.0.1 accepted message.\nRemote host said: 250 ok: queued\n" + tlsLine + "Authenticated as " + authUser + ".\n", "PLAIN", 1},
		{"LOGIN", std(smtptest.Script{Auth: "LOGIN CRAM-MD5"}), home, "1", 0, 'K',
			"127.0.0.1 accepted message.\nRemote host said: 250 ok: queued\n" + tlsLine + "Authenticated as " + authUser + ".\n", "LOGIN", 1},
		{"PLAIN, lower case, long: no initial response", smtptest.Script{StartTLS: "220 go", Ehlo: ehloSTARTTLS, EhloAfterTLS: ehloAfter, Auth: "cram-md5 plain", AuthUser: long, AuthPassword: longPass}, longHome, "1", 0, 'K',
			"127.0.0.1 accepted message.\n...", "PLAIN", 1},
		{"535", std(smtptest.Script{AuthUser: authUser, AuthPassword: "other"}), home, "1", 0, 'Z',
			"Connected to 127.0.0.1 but AUTH PLAIN as " + authUser + " failed; check control/smtpauth.\nRemote host said: 535 5.7.8 (the rest of this reply is not shown: it might quote the credentials)\n" + tlsLine, "", 1},
		{"534", std(smtptest.Script{AuthReply: "534 5.7.9 Authentication mechanism is too weak"}), home, "1", 0, 'Z',
			"Connected to 127.0.0.1 but AUTH PLAIN as " + authUser + " failed; check control/smtpauth.\nRemote host said: 534 5.7.9 (the rest of this reply is not shown: it might quote the credentials)\n" + tlsLine, "", 1},
		{"538", std(smtptest.Script{Auth: "LOGIN", AuthReply: "538 5.7.11 Encryption required"}), home, "1", 0, 'Z',
			"Connected to 127.0.0.1 but AUTH LOGIN as " + authUser + " failed; check control/smtpauth.\nRemote host said: 538 5.7.11 (the rest of this reply is not shown: it might quote the credentials)\n" + tlsLine, "", 1},
		{"535 quoting the password", std(smtptest.Script{AuthReply: "535-you sent " + authPass + "\n535 5.7.8 no"}), home, "1", 0, 'Z',
			"Connected to 127.0.0.1 but AUTH PLAIN as " + authUser + " failed; check control/smtpauth.\nRemote host said: 535 (the rest of this reply is not shown: it might quote the credentials)\n" + tlsLine, "", 1},
		{"454", std(smtptest.Script{AuthReply: "454 4.7.0 Temporary authentication failure"}), home, "1", 10, 'Z',
			"Connected to 127.0.0.1 but AUTH PLAIN as " + authUser + " failed.\nRemote host said: 454 4.7.0 (the rest of this reply is not shown: it might quote the credentials)\n", "", 1},
		{"334 past the responses", std(smtptest.Script{AuthReply: "334 more?"}), home, "1", 10, 'Z',
			"Connected to 127.0.0.1 but AUTH PLAIN as " + authUser + " failed: the server asked for more than AUTH PLAIN has to say.\nRemote host said: 502 (the rest of this reply is not shown: it might quote the credentials)\n", "", 1},
		{"connection lost", std(smtptest.Script{AuthReply: smtptest.Close}), home, "1", 10, 'Z',
			"Connected to 127.0.0.1 but connection died. (#4.4.2)\nThe server closed the connection while waiting for the reply to AUTH.\n", "", 1},
		{"no AUTH", smtptest.Script{StartTLS: "220 go", Ehlo: ehloSTARTTLS, EhloAfterTLS: ehloAfter}, home, "1", 10, 'Z',
			"Connected to 127.0.0.1 but it does not offer AUTH under TLS, and control/smtpauth has credentials for smtp.example.net:2525. (#4.7.0)\n", "", 0},
		{"AUTH before STARTTLS only", std(smtptest.Script{AuthOnlyCleartext: true}), home, "1", 10, 'Z',
			"Connected to 127.0.0.1 but it does not offer AUTH under TLS, and control/smtpauth has credentials for smtp.example.net:2525. (#4.7.0)\n", "", 0},
		{"CRAM-MD5 only", std(smtptest.Script{Auth: "CRAM-MD5 XOAUTH2"}), home, "1", 10, 'Z',
			"Connected to 127.0.0.1 but it offers none of the AUTH mechanisms I know (PLAIN, LOGIN): it offers CRAM-MD5 XOAUTH2. (#4.7.0)\n", "", 0},
		{"not verified", std(smtptest.Script{}), home, "0", 10, 'Z',
			"Connected to 127.0.0.1 but its certificate was not verified, and control/smtpauth has credentials for smtp.example.net:2525: a password never goes to an unverified server. (#4.7.0)\n", "", 0},
		{"credentials gone", std(smtptest.Script{}), authHome(t, "other.example.net:2525:starttls:u:"+authPass+"\n"), "1", 0, 'Z',
			"Unable to read control files: control/smtpauth has no credentials for smtp.example.net:2525 any more. (#4.3.0)\n" + tlsLine, "", 0},
		{"file broken since", std(smtptest.Script{}), authHome(t, creds+"x:1:starttls\n"), "1", 0, 'Z',
			"Unable to read control files: control/smtpauth line 2: fewer than 5 fields (relay:port:method:user:password). (#4.3.0)\n" + tlsLine, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := smtptest.Start(t, "127.0.0.1:0", tc.script)
			env, dumps := authEnv(t, "starttls", tc.home, "2525", tc.verified)
			r := deliver(t, srv.Addr, opts{env: env})
			prefix, whole := strings.CutSuffix(tc.text, "...")
			r.want(t, tc.code, tc.letter, map[byte]string{'K': "r"}[tc.letter], prefix)
			if !whole && r.text() != tc.text {
				t.Errorf("report %q,\nwant   %q", r.text(), tc.text)
			}
			noSecrets(t, r, dumps)
			if srv.PasswordInCleartext() {
				t.Error("the password went out before TLS")
			}
			if n := len(srv.AuthAttempts()); n != tc.attempts {
				t.Errorf("%d AUTH exchanges, want %d: %+v", n, tc.attempts, srv.AuthAttempts())
			}
			waitDone(t, srv)
			lines := srv.Lines()
			if has(lines, "MAIL") != (tc.mech != "") {
				t.Errorf("server got %q", lines)
			}
			if tc.mech != "" {
				m := srv.Messages()
				if len(m) != 1 || !m[0].Done || m[0].AuthMech != tc.mech || m[0].AuthUser != tc.script.AuthUser {
					t.Errorf("server got %+v", m)
				}
			}
			// RFC 4954 4: an AUTH line past 512 bytes goes without its
			// initial response, which follows the 334.
			if strings.Contains(tc.name, "no initial response") && !has(lines, "AUTH PLAIN") || has(lines, "AUTH PLAIN ") && len(tc.script.AuthPassword) > 100 {
				t.Errorf("long credentials: %q", lines)
			}
			for _, l := range lines {
				if len(l)+2 > 512 {
					t.Errorf("a command line of %d bytes", len(l)+2)
				}
			}
			// The EHLO before STARTTLS and the one after it: never AUTH
			// before the 220.
			for i, l := range lines {
				if strings.HasPrefix(l, "AUTH") && (i < 2 || lines[1] != "STARTTLS") {
					t.Errorf("AUTH before STARTTLS: %q", lines)
				}
			}
		})
	}
}

// TestSMTPSFake: with QMAILREMOTE_AUTH=smtps the first run execs the TLS
// stage before reading anything; the second run reads the greeting.
func TestSMTPSFake(t *testing.T) {
	t.Parallel()
	home := authHome(t, "smtp.example.net:465:smtps:"+authUser+":"+authPass+"\n")
	for _, tc := range []struct {
		name     string
		script   smtptest.Script
		code     int
		letter   byte
		text     string
		wantMail bool
	}{
		{"delivered", smtptest.Script{SMTPS: true, Auth: "PLAIN", AuthUser: authUser, AuthPassword: authPass}, 0, 'K',
			"127.0.0.1 accepted message.\nRemote host said: 250 ok: queued\nTLS: TLSv1.3 TLS_AES_128_GCM_SHA256, certificate verified.\nAuthenticated as " + authUser + ".\n", true},
		{"greeting refused", smtptest.Script{SMTPS: true, Greeting: "554 go away"}, 10, 'Z',
			"Connected to 127.0.0.1 but greeting failed.\nRemote host said: 554 go away\n", false},
		{"EHLO refused: no HELO", smtptest.Script{SMTPS: true, Ehlo: "502 what"}, 10, 'Z',
			"Connected to 127.0.0.1 but it refused EHLO under TLS.\nRemote host said: 502 what\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := smtptest.Start(t, "127.0.0.1:0", tc.script)
			env, dumps := authEnv(t, "smtps", home, "465", "1")
			r := deliver(t, srv.Addr, opts{env: env})
			r.want(t, tc.code, tc.letter, map[byte]string{'K': "r"}[tc.letter], tc.text)
			if r.text() != tc.text {
				t.Errorf("report %q, want %q", r.text(), tc.text)
			}
			noSecrets(t, r, dumps)
			files, _ := filepath.Glob(dumps + ".*")
			if len(files) != 1 {
				t.Errorf("the TLS stage ran %d times", len(files))
			}
			waitDone(t, srv)
			first := "EHLO client.example.test"
			if tc.script.Greeting != "" {
				first = "QUIT"
			}
			if l := srv.Lines(); len(l) == 0 || l[0] != first || has(l, "STARTTLS") || has(l, "HELO") || has(l, "MAIL") != tc.wantMail {
				t.Errorf("server got %q", l)
			}
		})
	}
}

func TestAuthEnv(t *testing.T) {
	t.Parallel()
	home := authHome(t, "")
	srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{})
	for _, tc := range []struct {
		change map[string]string
		want   string
	}{
		{map[string]string{"QMAILREMOTE_AUTH": "plain"}, "QMAILREMOTE_AUTH must be starttls or smtps"},
		{map[string]string{"QMAILREMOTE_TLS": "try", "QMAILREMOTE_TLSSTRICTNESS": "0"}, "QMAILREMOTE_TLS must be require when QMAILREMOTE_AUTH is set"},
		{map[string]string{"QMAILREMOTE_TLS": ""}, "QMAILREMOTE_TLS must be require when QMAILREMOTE_AUTH is set"},
		{map[string]string{"QMAILREMOTE_RELAY": ""}, "QMAILREMOTE_RELAY must be set"},
		{map[string]string{"QMAILREMOTE_PORT": "0"}, "QMAILREMOTE_PORT must be a number from 1 to 65535"},
		{map[string]string{"QMAILREMOTE_QMAILHOME": "relative"}, "QMAILREMOTE_QMAILHOME must be an absolute path"},
	} {
		env, _ := authEnv(t, "starttls", home, "587", "1")
		for k, v := range tc.change {
			env[k] = v
		}
		r := deliver(t, srv.Addr, opts{env: env})
		if r.code != 100 || len(r.stdout) != 0 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 100 and %q", tc.change, r.code, r.stdout, r.stderr, tc.want)
		}
	}
}

// TestAuthRealTLSStage: both methods through the real qmail-remote-tlsio,
// verified against a test CA; and a certificate that does not verify gets
// no password.
func TestAuthRealTLSStage(t *testing.T) {
	t.Parallel()
	tlsio := realTLSIO(t)
	ca := tlstest.NewCA(t, "test CA")
	bundle := tlstest.WriteBundle(t, t.TempDir(), ca)
	cert := ca.Issue(t, tlstest.Leaf{DNSNames: []string{"smtp.example.net"}, IPs: []net.IP{net.ParseIP("127.0.0.1")}})
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	for _, tc := range []struct {
		name, method, mxName string
		script               smtptest.Script
		code                 int
		letter               byte
		text                 string
	}{
		{"starttls", "starttls", "smtp.example.net", smtptest.Script{TLS: cfg}, 0, 'K', "127.0.0.1 accepted message.\n"},
		{"smtps", "smtps", "smtp.example.net", smtptest.Script{TLS: cfg, SMTPS: true}, 0, 'K', "127.0.0.1 accepted message.\n"},
		{"starttls, wrong name", "starttls", "other.example.net", smtptest.Script{TLS: cfg}, 11, 'Z', "Connected to 127.0.0.1 but the TLS handshake failed"},
		{"smtps, wrong name", "smtps", "other.example.net", smtptest.Script{TLS: cfg, SMTPS: true}, 11, 'Z', "Connected to 127.0.0.1 but the TLS handshake failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sc := tc.script
			sc.Auth, sc.AuthUser, sc.AuthPassword, sc.KeepData = "PLAIN LOGIN", authUser, authPass, true
			srv := smtptest.Start(t, "127.0.0.1:0", sc)
			home := authHome(t, "smtp.example.net:"+srv.Port+":"+tc.method+":"+authUser+":"+authPass+"\n")
			env, dumps := authEnv(t, tc.method, home, srv.Port, "")
			env["FAKE_TLSIO_REAL"] = tlsio
			env["QMAILREMOTE_TRUSTANCHORS"] = bundle
			env["QMAILREMOTE_MXNAME"] = tc.mxName
			env["QMAILREMOTE_TIMEOUTCONNECT"] = "30"
			r := deliver(t, srv.Addr, opts{env: env})
			r.want(t, tc.code, tc.letter, map[byte]string{'K': "r"}[tc.letter], tc.text)
			noSecrets(t, r, dumps)
			if srv.PasswordInCleartext() {
				t.Error("the password went out before TLS")
			}
			if tc.letter == 'K' {
				if !strings.HasSuffix(r.text(), "certificate verified.\nAuthenticated as "+authUser+".\n") {
					t.Errorf("report %q", r.text())
				}
				m := srv.Messages()
				if len(m) != 1 || !m[0].TLS || m[0].AuthMech != "PLAIN" || string(m[0].Data) != "Subject: t\r\n\r\nhello\r\n" {
					t.Errorf("server got %+v", m)
				}
			} else if len(srv.AuthAttempts()) != 0 {
				t.Errorf("AUTH to an unverified server: %+v", srv.AuthAttempts())
			}
		})
	}
}
