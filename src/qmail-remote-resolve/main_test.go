package qmailremoteresolve

import (
	"bytes"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"qmail-remote-go/src/testkit/buildtest"
	"qmail-remote-go/src/testkit/dnstest"
)

var bin string

func TestMain(m *testing.M) { buildtest.Program(m, &bin, "qmail-remote-resolve") }

type result struct {
	code           int
	stdout, stderr string
}

// runProg runs the program with only env set, and prog... after it.
func runProg(t *testing.T, env []string, prog ...string) result {
	t.Helper()
	cmd := exec.Command(bin, prog...)
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Start()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("still running after 20s")
	}
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}

func baseEnv(srv *dnstest.Server, host string, extra ...string) []string {
	return append([]string{"QMAILREMOTE_HOST=" + host, "DNSCACHEIP=" + srv.Addr(),
		"QMAILREMOTE_IPME=", "QMAILREMOTE_TIMEOUTDNS=0", "PATH=/usr/bin:/bin"}, extra...)
}

func zone(srv *dnstest.Server) {
	srv.Add("example.test. 300 IN MX 10 mx1.example.test.",
		"example.test. 300 IN MX 20 mx2.example.test.",
		"mx1.example.test. 300 IN A 192.0.2.1",
		"mx1.example.test. 300 IN AAAA 2001:db8::1",
		"mx2.example.test. 300 IN A 192.0.2.2",
		"null.test. 300 IN MX 0 .",
		"relay.test. 300 IN A 198.51.100.25")
}

func candidates(t *testing.T, r result) string {
	t.Helper()
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("exit %d, stderr %q, stdout %q", r.code, r.stderr, r.stdout)
	}
	for _, line := range strings.Split(r.stdout, "\n") {
		if v, ok := strings.CutPrefix(line, "QMAILREMOTE_CANDIDATES="); ok {
			return v
		}
	}
	t.Fatalf("no QMAILREMOTE_CANDIDATES in %q", r.stdout)
	return ""
}

func TestCandidates(t *testing.T) {
	srv := dnstest.Start(t)
	zone(srv)
	r := runProg(t, baseEnv(srv, "example.test", "KEEP=me"), "/usr/bin/env")
	if got, want := candidates(t, r), "mx1.example.test/2001:db8::1 mx1.example.test/192.0.2.1 mx2.example.test/192.0.2.2"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if !strings.Contains(r.stdout, "\nKEEP=me\n") && !strings.HasPrefix(r.stdout, "KEEP=me\n") {
		t.Errorf("environment not passed on: %q", r.stdout)
	}
	// ipme drops the second MX; prog found in PATH.
	r = runProg(t, baseEnv(srv, "example.test", "QMAILREMOTE_IPME=192.0.2.2 127.0.0.1"), "env")
	if got, want := candidates(t, r), "mx1.example.test/2001:db8::1 mx1.example.test/192.0.2.1"; got != want {
		t.Errorf("ipme: got %q, want %q", got, want)
	}
	// A relay: no MX lookup, no ipme rule.
	n := srv.Count(dnstest.AnyName, dns.TypeMX)
	r = runProg(t, baseEnv(srv, "example.test", "QMAILREMOTE_RELAY=relay.test", "QMAILREMOTE_IPME=198.51.100.25"), "/usr/bin/env")
	if got, want := candidates(t, r), "relay.test/198.51.100.25"; got != want {
		t.Errorf("relay: got %q, want %q", got, want)
	}
	if srv.Count(dnstest.AnyName, dns.TypeMX) != n {
		t.Errorf("relay: MX was looked up")
	}
	r = runProg(t, baseEnv(srv, "example.test", "QMAILREMOTE_RELAY=[2001:db8::25]"), "/usr/bin/env")
	if got, want := candidates(t, r), "[2001:db8::25]/2001:db8::25"; got != want {
		t.Errorf("relay literal: got %q, want %q", got, want)
	}
	// A host literal, IPME and TIMEOUTDNS unset (a run by hand).
	r = runProg(t, []string{"QMAILREMOTE_HOST=[IPv6:2001:db8::9]", "DNSCACHEIP=" + srv.Addr()}, "/usr/bin/env")
	if got, want := candidates(t, r), "[2001:db8::9]/2001:db8::9"; got != want {
		t.Errorf("literal: got %q, want %q", got, want)
	}
}

func TestReports(t *testing.T) {
	srv := dnstest.Start(t)
	zone(srv)
	srv.Fail("broken.test", dnstest.AnyType, dns.RcodeServerFailure)
	srv.Drop("slow.test", dnstest.AnyType)
	for _, c := range []struct {
		host  string
		extra []string
		want  string
	}{
		{"nosuch.test", nil, "DSorry, I couldn't find any host named nosuch.test. (#5.1.2)\x00"},
		{"broken.test", nil, "ZSorry, I couldn't find any host by that name. (#4.1.2)\nbroken.test MX: SERVFAIL from " + srv.Addr() + "\x00"},
		{"null.test", nil, "DSorry, null.test does not accept mail (null MX, RFC 7505). (#5.1.10)\x00"},
		{"example.test", []string{"QMAILREMOTE_IPME=2001:db8::1"},
			"DSorry. Although I'm listed as a best-preference MX or A for that host,\nit isn't in my control/locals file, so I don't treat it as local. (#5.4.6)\x00"},
		{"mx2.example.test", nil, "mx2"}, // implicit MX: exec, checked below
		{"example.test", []string{"QMAILREMOTE_RELAY=nosuch.test"},
			"ZSorry, I couldn't find any host named nosuch.test (the smtproutes relay). (#4.1.2)\x00"},
		{"example.test", []string{"QMAILREMOTE_RELAY=nosuch.test", "QMAILREMOTE_SENDERROUTE=<@example.org>"},
			"ZSorry, I couldn't find any host named nosuch.test (the senderroutes relay). (#4.1.2)\x00"},
		// The resolver asks the silent server 16 times over (the most
		// DNSCACHEIP may list), one query timeout each (resolv.conf's,
		// 1 s at least): without timeoutdns that is 16 s at least and 16
		// MX queries. With it, the lookup ends after 1 s, when at most
		// the second query has gone out. Counting the queries needs no
		// clock, and runProg's backstop (20 s) catches a hang.
		{"slow.test", []string{"QMAILREMOTE_TIMEOUTDNS=1", "DNSCACHEIP=" + strings.TrimSpace(strings.Repeat(srv.Addr()+" ", 16))},
			"ZSorry, I couldn't find any host by that name. (#4.1.2)\nDNS lookups took longer than timeoutdns (1 s)\x00"},
	} {
		// (A DNSCACHEIP in extra wins: exec keeps the last of duplicates.)
		r := runProg(t, baseEnv(srv, c.host, c.extra...), "/bin/echo", "execed")
		if c.want == "mx2" {
			if r.code != 0 || r.stdout != "execed\n" {
				t.Errorf("%s: exit %d, stdout %q", c.host, r.code, r.stdout)
			}
			continue
		}
		if r.code != 0 || r.stdout != c.want || r.stderr != "" {
			t.Errorf("%s %v: exit %d, stdout %q, stderr %q; want %q", c.host, c.extra, r.code, r.stdout, r.stderr, c.want)
		}
	}
	if n := srv.Count("slow.test", dns.TypeMX); n < 1 || n > 2 {
		t.Errorf("%d MX queries for slow.test, want 1 or 2: timeoutdns did not end the lookup", n)
	}
}

func TestBadUsage(t *testing.T) {
	srv := dnstest.Start(t)
	zone(srv)
	for _, c := range []struct {
		env  []string
		args []string
		code int
		err  string
	}{
		{baseEnv(srv, "example.test"), nil, 100, "usage: qmail-remote-resolve prog..."},
		{[]string{"DNSCACHEIP=" + srv.Addr()}, []string{"env"}, 100, "QMAILREMOTE_HOST is not set"},
		{baseEnv(srv, "example.test", "QMAILREMOTE_IPME=192.0.2.300"), []string{"env"}, 100, "QMAILREMOTE_IPME"},
		{baseEnv(srv, "example.test", "QMAILREMOTE_TIMEOUTDNS=-1"), []string{"env"}, 100, "QMAILREMOTE_TIMEOUTDNS"},
		{baseEnv(srv, "example.test", "QMAILREMOTE_TIMEOUTDNS=soon"), []string{"env"}, 100, "QMAILREMOTE_TIMEOUTDNS"},
		{baseEnv(srv, "example.test", "DNSCACHEIP=dnscache.test"), []string{"env"}, 100, "DNSCACHEIP"},
		{baseEnv(srv, "example.test", "DNSCACHEIP=192.0.2.53:99999"), []string{"env"}, 100, "DNSCACHEIP"},
		{baseEnv(srv, "example.test", "QMAILREMOTE_RELAY=[192.0.2.300]"), []string{"env"}, 100, "QMAILREMOTE_RELAY"},
		{baseEnv(srv, "example.test", "QMAILREMOTE_RELAY=re lay"), []string{"env"}, 100, "QMAILREMOTE_RELAY"},
		{baseEnv(srv, "example.test"), []string{"/nonexistent/prog"}, 111, "/nonexistent/prog"},
	} {
		r := runProg(t, c.env, c.args...)
		if r.code != c.code || r.stdout != "" || !strings.Contains(r.stderr, c.err) {
			t.Errorf("%v %v: exit %d, stdout %q, stderr %q; want %d and %q", c.env, c.args, r.code, r.stdout, r.stderr, c.code, c.err)
		}
	}
}
