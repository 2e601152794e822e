package qmailremoteio

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"qmail-remote-go/src/internal/report"
	"qmail-remote-go/src/testkit/smtptest"
	"qmail-remote-go/src/testkit/tlstest"
)

// fakeTLSIOScript stands in for qmail-remote-tlsio, to check the exec
// contract (doc/chain.md "STARTTLS", step 3) without a TLS stage: it
// records its arguments, the TLS variables, the start of fd 0 and the
// flags of fd 6 in $FAKE_TLSIO_OUT. With FAKE_TLSIO_EXEC set it then does
// what the real stage does after a handshake, minus the TLS: it runs its
// argument with the SSL_* variables, on the same fds (the test server
// goes on in cleartext after its 220).
const fakeTLSIOScript = `#!/bin/sh
{
	echo "argc=$#"
	for a in "$@"; do echo "arg=$a"; done
	for v in CAFILE CADIR CERTFILE KEYFILE; do
		eval "x=\${$v-UNSET}"
		echo "$v=$x"
	done
	echo "stdin=$(head -c 9)"
	echo "fd6flags=$(sed -n 's/^flags:[[:space:]]*//p' /proc/self/fdinfo/6)"
	echo "fd7flags=$(sed -n 's/^flags:[[:space:]]*//p' /proc/self/fdinfo/7)"
} >"$FAKE_TLSIO_OUT"
[ -n "$FAKE_TLSIO_EXEC" ] || exit 0
unset CAFILE CADIR CERTFILE KEYFILE
SSL_PROTOCOL=TLSv1.3 SSL_CIPHER=TLS_AES_128_GCM_SHA256 QMAILREMOTE_TLSVERIFIED=$FAKE_TLSIO_VERIFIED
export SSL_PROTOCOL SSL_CIPHER QMAILREMOTE_TLSVERIFIED
exec "$1"
`

// pki is a CA, a server configuration with a certificate from it, and the
// anchors as a bundle file and as a directory.
type pki struct {
	server      *tls.Config
	bundle, dir string
	cert, key   string // a client certificate and key
}

func newPKI(t *testing.T) pki {
	t.Helper()
	ca := tlstest.NewCA(t, "test CA")
	d := t.TempDir()
	p := pki{
		server: &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, tlstest.Leaf{DNSNames: []string{"mx.example.test"}})}},
		bundle: tlstest.WriteBundle(t, d, ca),
		dir:    filepath.Join(d, "anchors") + "/",
	}
	if err := os.Mkdir(p.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tlstest.WriteBundle(t, p.dir, ca)
	p.cert, p.key = tlstest.WriteKeyPair(t, d, "client", ca.Issue(t, tlstest.Leaf{Client: true}))
	return p
}

// tlsEnv is the environment of a first run with STARTTLS in mode, the fake
// TLS stage writing to out.
func tlsEnv(mode, anchors, out string) map[string]string {
	return map[string]string{
		"QMAILREMOTE_TLS":           mode,
		"QMAILREMOTE_TLSIO":         fakeTLSIO,
		"QMAILREMOTE_TRUSTANCHORS":  anchors,
		"QMAILREMOTE_TLSSTRICTNESS": map[string]string{"try": "0", "require": "2"}[mode],
		"FAKE_TLSIO_OUT":            out,
	}
}

// fakeRun reads what the fake TLS stage recorded; nil if it did not run.
func fakeRun(t *testing.T, out string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(out)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][]string{}
	for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		k, v, _ := strings.Cut(l, "=")
		m[k] = append(m[k], v)
	}
	return m
}

func one(m map[string][]string, k string) string {
	if len(m[k]) != 1 {
		return "<" + strconv.Itoa(len(m[k])) + " values>"
	}
	return m[k][0]
}

// lines waits for the server's sessions to end, so that it has seen QUIT
// (sent without waiting), and returns what it got.
func lines(t *testing.T, srv *smtptest.Server) string {
	t.Helper()
	waitDone(t, srv)
	return strings.Join(srv.Lines(), "|")
}

// TestStartTLSNotUsed: no STARTTLS offered, or refused. try goes on in
// cleartext, require gives up before MAIL, and the TLS stage never runs.
func TestStartTLSNotUsed(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	const (
		ehlo     = "EHLO client.example.test"
		cleartxt = "EHLO client.example.test|MAIL FROM:<a@example.test>|RCPT TO:<b@example.test>|DATA|QUIT"
	)
	for _, tc := range []struct {
		name   string
		mode   string
		script smtptest.Script
		code   int
		letter byte
		text   string
		lines  string
	}{
		{"require, not offered", "require", smtptest.Script{}, 10, 'Z',
			"Connected to 127.0.0.1 but it does not offer STARTTLS, and TLS is required (tlsstrictness 2). (#4.7.0)\n", ehlo + "|QUIT"},
		{"require, HELO server", "require", smtptest.Script{TLS: p.server, Ehlo: "502 what"}, 10, 'Z',
			"Connected to 127.0.0.1 but it does not offer STARTTLS, and TLS is required (tlsstrictness 2). (#4.7.0)\n", ehlo + "|HELO client.example.test|QUIT"},
		{"require, 454", "require", smtptest.Script{TLS: p.server, StartTLS: "454 4.7.0 TLS not available"}, 10, 'Z',
			"Connected to 127.0.0.1 but it refused STARTTLS, and TLS is required (tlsstrictness 2). (#4.7.0)\nRemote host said: 454 4.7.0 TLS not available\n",
			ehlo + "|STARTTLS|QUIT"},
		{"require, 502", "require", smtptest.Script{Ehlo: "250-x\n250 starttls"}, 10, 'Z',
			"Connected to 127.0.0.1 but it refused STARTTLS, and TLS is required (tlsstrictness 2). (#4.7.0)\nRemote host said: 502 unknown command\n",
			ehlo + "|STARTTLS|QUIT"},
		{"require, STARTTLS connection lost", "require", smtptest.Script{TLS: p.server, StartTLS: smtptest.Close}, 10, 'Z',
			"Connected to 127.0.0.1 but connection died. (#4.4.2)\nThe server closed the connection while waiting for the reply to STARTTLS.\n",
			ehlo + "|STARTTLS"},
		{"try, not offered", "try", smtptest.Script{}, 0, 'K', "127.0.0.1 accepted message.\n", cleartxt},
		{"try, 454", "try", smtptest.Script{TLS: p.server, StartTLS: "454 TLS not available"}, 0, 'K', "127.0.0.1 accepted message.\n",
			ehlo + "|STARTTLS|MAIL FROM:<a@example.test>|RCPT TO:<b@example.test>|DATA|QUIT"},
		{"try, STARTTLS stalls", "try", smtptest.Script{TLS: p.server, StartTLS: smtptest.Stall}, 10, 'Z',
			"Connected to 127.0.0.1 but connection died. (#4.4.2)\nTimed out after 10s waiting for the reply to STARTTLS.\n", ehlo + "|STARTTLS"},
		{"none, offered", "none", smtptest.Script{TLS: p.server}, 0, 'K', "127.0.0.1 accepted message.\n", cleartxt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := smtptest.Start(t, "127.0.0.1:0", tc.script)
			out := filepath.Join(t.TempDir(), "fake")
			// The stall is waited out (10 s); elsewhere the timeout only
			// bounds healthy replies (deliver's default, 30 s).
			o := opts{env: tlsEnv(tc.mode, p.bundle, out)}
			if tc.script.StartTLS == smtptest.Stall {
				o.timeout = "10"
			}
			r := deliver(t, srv.Addr, o)
			r.want(t, tc.code, tc.letter, map[byte]string{'K': "r"}[tc.letter], tc.text)
			if r.text() != tc.text && tc.letter != 'K' {
				t.Errorf("report %q, want %q", r.text(), tc.text)
			}
			if got := lines(t, srv); got != tc.lines {
				t.Errorf("server got %q, want %q", got, tc.lines)
			}
			if fakeRun(t, out) != nil {
				t.Errorf("the TLS stage ran")
			}
			for _, m := range srv.Messages() {
				if m.TLS || m.StartTLS {
					t.Errorf("message under TLS: %+v", m)
				}
			}
		})
	}
}

// TestStartTLSExec: on 220 the program execs the TLS stage with its own
// path, the TLS variables, fd 0 rewound and fds 6 and 7 blocking.
func TestStartTLSExec(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	for _, tc := range []struct {
		name       string
		mode       string
		anchors    string
		client     bool
		callerEnv  map[string]string // inherited leftovers
		caFile     string
		caDir      string
		cert, key  string
		startReply string
	}{
		{"try, bundle", "try", p.bundle, false, nil, p.bundle, "UNSET", "UNSET", "UNSET", ""},
		{"require, directory", "require", p.dir, false, nil, "UNSET", p.dir, "UNSET", "UNSET", ""},
		{"require, client certificate", "require", p.bundle, true, nil, p.bundle, "UNSET", p.cert, p.key, "220-go\n220 ahead"},
		{"leftovers from the caller", "try", p.dir, false,
			map[string]string{"CAFILE": "/nonexistent/ca.pem", "CERTFILE": "/nonexistent/c.pem", "KEYFILE": "/nonexistent/k.pem"},
			"UNSET", p.dir, "UNSET", "UNSET", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{TLS: p.server, StartTLS: tc.startReply})
			out := filepath.Join(t.TempDir(), "fake")
			env := tlsEnv(tc.mode, tc.anchors, out)
			if tc.client {
				env["QMAILREMOTE_CLIENTCERT"], env["QMAILREMOTE_CLIENTKEY"] = p.cert, p.key
			}
			for k, v := range tc.callerEnv {
				env[k] = v
			}
			r := deliver(t, srv.Addr, opts{env: env})
			// The fake stage exits 0 without a report.
			if r.code != 0 || len(r.stdout) != 0 || r.stderr != "" {
				t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
			}
			f := fakeRun(t, out)
			if f == nil {
				t.Fatal("the TLS stage did not run")
			}
			self, _ := filepath.EvalSymlinks(binary)
			if one(f, "argc") != "1" || one(f, "arg") != self {
				t.Errorf("arguments %q, want [%s]", f["arg"], self)
			}
			for k, want := range map[string]string{"CAFILE": tc.caFile, "CADIR": tc.caDir, "CERTFILE": tc.cert, "KEYFILE": tc.key, "stdin": "Subject: "} {
				if got := one(f, k); got != want {
					t.Errorf("%s=%q, want %q", k, got, want)
				}
			}
			for _, k := range []string{"fd6flags", "fd7flags"} {
				flags, err := strconv.ParseUint(one(f, k), 8, 32)
				if err != nil || flags&0o4000 != 0 { // O_NONBLOCK
					t.Errorf("%s=%q: not blocking", k, one(f, k))
				}
			}
			if l := strings.Join(srv.Lines(), "|"); l != "EHLO client.example.test|STARTTLS" {
				t.Errorf("server got %q", l)
			}
		})
	}
}

// TestStartTLSInjection: a response sent along with the 220 (CVE-2011-0411)
// ends the session; the TLS stage never runs.
func TestStartTLSInjection(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	for _, mode := range []string{"try", "require"} {
		srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{TLS: p.server, Inject: "250 fake\r\n"})
		out := filepath.Join(t.TempDir(), "fake")
		r := deliver(t, srv.Addr, opts{env: tlsEnv(mode, p.bundle, out)})
		r.want(t, 10, 'Z', "", "Connected to 127.0.0.1 but it sent data after its STARTTLS reply (response injection?). (#4.7.0)\n10 bytes came after")
		if fakeRun(t, out) != nil {
			t.Errorf("%s: the TLS stage ran", mode)
		}
		srv.Close()
		if l := strings.Join(srv.Lines(), "|"); l != "EHLO client.example.test|STARTTLS" {
			t.Errorf("%s: server got %q", mode, l)
		}
	}
}

// TestStartTLSExecFails: a TLS stage that cannot be run is this server's
// failure (exit 10) with a Z naming the problem; nothing goes in cleartext.
func TestStartTLSExecFails(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{TLS: p.server})
	env := tlsEnv("try", p.bundle, filepath.Join(t.TempDir(), "fake"))
	env["QMAILREMOTE_TLSIO"] = "/nonexistent/qmail-remote-tlsio"
	r := deliver(t, srv.Addr, opts{env: env})
	r.want(t, 10, 'Z', "", "Connected to 127.0.0.1 but I could not start the TLS stage. (#4.3.0)\nError: unable to exec /nonexistent/qmail-remote-tlsio: no such file or directory.\n")
	srv.Close()
	if l := strings.Join(srv.Lines(), "|"); l != "EHLO client.example.test|STARTTLS" {
		t.Errorf("server got %q", l)
	}
}

// secondRun is the environment of a run under the TLS stage.
func secondRun(verified string) map[string]string {
	return map[string]string{
		"SSL_PROTOCOL":            "TLSv1.3",
		"SSL_CIPHER":              "TLS_AES_128_GCM_SHA256",
		"QMAILREMOTE_TLSVERIFIED": verified,
		// Still set from the first run: must not lead to a second STARTTLS.
		"QMAILREMOTE_TLS":          "require",
		"QMAILREMOTE_TLSIO":        "/nonexistent/qmail-remote-tlsio",
		"QMAILREMOTE_TRUSTANCHORS": "/nonexistent/anchors.pem",
	}
}

// TestSecondRun: with SSL_PROTOCOL set the program speaks first (EHLO, no
// greeting), never sends STARTTLS, and the reports carry the TLS line.
func TestSecondRun(t *testing.T) {
	t.Parallel()
	huge := strings.Repeat("y", 5000)
	for _, tc := range []struct {
		name     string
		verified string
		script   smtptest.Script
		code     int
		letter   byte
		rl       string
		text     string
		lines    string
	}{
		{"verified", "1", smtptest.Script{}, 0, 'K', "r",
			"127.0.0.1 accepted message.\nRemote host said: 250 ok: queued\nTLS: TLSv1.3 TLS_AES_128_GCM_SHA256, certificate verified.\n",
			"EHLO client.example.test|MAIL FROM:<a@example.test>|RCPT TO:<b@example.test>|DATA|QUIT"},
		{"not verified, STARTTLS offered again", "0", smtptest.Script{Ehlo: "250-x\n250-STARTTLS\n250 PIPELINING"}, 0, 'K', "r",
			"127.0.0.1 accepted message.\nRemote host said: 250 ok: queued\nTLS: TLSv1.3 TLS_AES_128_GCM_SHA256, certificate not verified.\n",
			"EHLO client.example.test|MAIL FROM:<a@example.test>|RCPT TO:<b@example.test>|DATA|QUIT"},
		{"EHLO refused: no HELO", "1", smtptest.Script{Ehlo: "554 no"}, 10, 'Z', "",
			"Connected to 127.0.0.1 but it refused EHLO under TLS.\nRemote host said: 554 no\n",
			"EHLO client.example.test|QUIT"},
		{"MAIL refused", "1", smtptest.Script{Mail: "553 no", Rcpt: []string{"503 5.5.1 sender first"}, Data: "503 5.5.1 no recipients"}, 0, 'D', "",
			"Connected to 127.0.0.1 but sender was rejected.\nRemote host said: 553 no\nTLS: TLSv1.3 TLS_AES_128_GCM_SHA256, certificate verified.\n",
			"EHLO client.example.test|MAIL FROM:<a@example.test>|RCPT TO:<b@example.test>|DATA|QUIT"}, // pipelined
		{"huge reply after the dot", "1", smtptest.Script{AfterDot: "250 " + huge}, 0, 'K', "r",
			"127.0.0.1 accepted message.\nRemote host said: 250 yyy", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.script.NoGreeting = true
			srv := smtptest.Start(t, "127.0.0.1:0", tc.script)
			r := deliver(t, srv.Addr, opts{env: secondRun(tc.verified)})
			r.want(t, tc.code, tc.letter, tc.rl, tc.text)
			if tc.lines == "" {
				if !strings.HasSuffix(r.text(), "(text truncated)\nTLS: TLSv1.3 TLS_AES_128_GCM_SHA256, certificate verified.\n") || len(r.stdout) > report.Max+2 {
					t.Errorf("report %q", r.text())
				}
				return
			}
			if r.text() != tc.text {
				t.Errorf("report %q, want %q", r.text(), tc.text)
			}
			if got := lines(t, srv); got != tc.lines {
				t.Errorf("server got %q, want %q", got, tc.lines)
			}
		})
	}
}

// TestFakeTLSChain: the whole first run, exec, second run sequence, with
// the fake stage standing in for the TLS stage (no encryption: the test
// server goes on in cleartext after its 220).
func TestFakeTLSChain(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{
		Ehlo:         "250-smtptest\n250-STARTTLS\n250 8BITMIME",
		StartTLS:     "220 go ahead",
		EhloAfterTLS: "250-smtptest\n250-STARTTLS\n250 SIZE 1000",
		KeepData:     true,
	})
	out := filepath.Join(t.TempDir(), "fake")
	env := tlsEnv("require", "/nonexistent/anchors.pem", out)
	env["FAKE_TLSIO_EXEC"] = "1"
	env["FAKE_TLSIO_VERIFIED"] = "1"
	r := deliver(t, srv.Addr, opts{env: env})
	r.want(t, 0, 'K', "r", "127.0.0.1 accepted message.\nRemote host said: 250 ok: queued\nTLS: TLSv1.3 TLS_AES_128_GCM_SHA256, certificate verified.\n")
	want := "EHLO client.example.test|STARTTLS|EHLO client.example.test|MAIL FROM:<a@example.test>|RCPT TO:<b@example.test>|DATA|QUIT"
	if got := lines(t, srv); got != want {
		t.Errorf("server got %q, want %q", got, want)
	}
	m := srv.Messages()
	if len(m) != 1 || !m[0].StartTLS || m[0].TLS || string(m[0].Data) != "Subject: t\r\n\r\nhello\r\n" ||
		strings.Join(m[0].Commands, "|") != "EHLO client.example.test|STARTTLS|EHLO client.example.test|MAIL FROM:<a@example.test>|RCPT TO:<b@example.test>|DATA" {
		t.Errorf("server got %+v", m)
	}
}

func TestTLSUsage(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{})
	ok := tlsEnv("try", "/nonexistent/anchors.pem", "/nonexistent/out")
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range ok {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		name   string
		env    map[string]string
		stderr string
	}{
		{"bad mode", with("QMAILREMOTE_TLS", "maybe"), "QMAILREMOTE_TLS must be none, try or require"},
		{"no TLS stage", with("QMAILREMOTE_TLSIO", ""), "QMAILREMOTE_TLSIO"},
		{"no anchors", with("QMAILREMOTE_TRUSTANCHORS", ""), "QMAILREMOTE_TRUSTANCHORS"},
		{"cert without key", with("QMAILREMOTE_CLIENTCERT", "/nonexistent/c.pem"), "QMAILREMOTE_CLIENTKEY"},
		{"SSL_PROTOCOL with a space", map[string]string{"SSL_PROTOCOL": "TLS v1.3"}, "SSL_PROTOCOL"},
		{"SSL_CIPHER with a newline", map[string]string{"SSL_PROTOCOL": "TLSv1.3", "SSL_CIPHER": "A\nB"}, "SSL_CIPHER"},
		{"bad TLSVERIFIED", map[string]string{"SSL_PROTOCOL": "TLSv1.3", "QMAILREMOTE_TLSVERIFIED": "yes"}, "QMAILREMOTE_TLSVERIFIED"},
	} {
		r := deliver(t, srv.Addr, opts{env: tc.env})
		if r.code != 100 || len(r.stdout) != 0 || !strings.Contains(r.stderr, tc.stderr) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", tc.name, r.code, r.stdout, r.stderr)
		}
	}
	if has(srv.Lines(), "MAIL") {
		t.Errorf("server got %q", srv.Lines())
	}
}
