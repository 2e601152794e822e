package qmailremotetlsrpt

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"qmail-remote-go/src/internal/chain"
	"qmail-remote-go/src/internal/tlsrpt"
	"qmail-remote-go/src/testkit/dnstest"
)

// The day reported, and the run's clock: 00:17 the day after.
var (
	day   = time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	clock = time.Date(2026, 12, 5, 0, 17, 0, 0, time.UTC)
)

// fakeInject is qmail-inject: it saves its arguments and its input in
// HOME/injected, or fails when HOME/inject-fails exists.
const fakeInject = `#!/bin/sh
home=$(dirname "$0")/..
if test -f "$home/inject-fails"; then echo 'qmail-inject: fatal: out of memory' >&2; exit 111; fi
mkdir -p "$home/injected"
n=$(ls "$home/injected" | wc -l | tr -d ' ')
printf '%s\n' "$@" > "$home/injected/$n.args"
cat > "$home/injected/$n.msg"
`

// post is one call of the fake Post.
type post struct {
	host, path, contentType string
	body                    []byte
}

// world is a qmail home with a day of TLS log for three domains, a DNS
// server that has TLSRPT records for two of them (one mailto, one
// https), a fake qmail-inject and a fake Post.
type world struct {
	t      *testing.T
	home   string
	logDir string
	dns    *dnstest.Server
	posts  []post
	status int   // what Post answers
	err    error // what Post fails with
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{t: t, home: t.TempDir(), status: 200}
	run := filepath.Join(w.home, "run")
	w.logDir = tlsrpt.LogDir(run)
	for _, d := range []string{"control", "bin", w.logDir} {
		if err := os.MkdirAll(filepath.Join(w.home, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	w.file("control/me", "mail.example.org\n")
	w.file("bin/qmail-inject", fakeInject)
	if err := os.Chmod(filepath.Join(w.home, "bin/qmail-inject"), 0o755); err != nil {
		t.Fatal(err)
	}
	w.dns = dnstest.Start(t)
	// A record in two strings, which make one.
	w.dns.Add(`_smtp._tls.example.com. 60 IN TXT "v=TLSRPTv1; " "rua=mailto:tlsrpt@example.com"`,
		`_smtp._tls.example.net. 60 IN TXT "v=TLSRPTv1; rua=https://reports.example.net/v1/tlsrpt?from=x"`,
		`_smtp._tls.example.net. 60 IN TXT "v=spf1 -all"`)
	t.Setenv("QMAILREMOTE_QMAILHOME", w.home)
	t.Setenv("QMAILREMOTE_QMAILRUN", run)
	t.Setenv("DNSCACHEIP", w.dns.Addr())

	sts := []string{"version: STSv1", "mode: enforce", "mx: mx.example.com", "max_age: 86400"}
	for _, r := range []tlsrpt.Record{
		{Time: day.Add(time.Hour), Domain: "example.com", PolicyType: tlsrpt.PolicySTS, PolicyStrings: sts,
			MXHost: "mx.example.com", IP: "192.0.2.1", Result: tlsrpt.Success},
		{Time: day.Add(2 * time.Hour), Domain: "example.com", PolicyType: tlsrpt.PolicySTS, PolicyStrings: sts,
			MXHost: "mx.example.com", IP: "192.0.2.1", Result: tlsrpt.Success},
		{Time: day.Add(3 * time.Hour), Domain: "example.com", PolicyType: tlsrpt.PolicySTS, PolicyStrings: sts,
			MXHost: "mx.example.com", IP: "192.0.2.1", Result: tlsrpt.CertificateExpired, Reason: "expired"},
		{Time: day.Add(4 * time.Hour), Domain: "example.net", PolicyType: tlsrpt.PolicyTLSA,
			PolicyStrings: []string{"3 1 1 AB"}, MXHost: "mx.example.net", Result: tlsrpt.Success},
		{Time: day.Add(5 * time.Hour), Domain: "example.net", PolicyType: tlsrpt.PolicyTLSA,
			PolicyStrings: []string{"3 1 1 AB"}, MXHost: "mx.example.net", Result: tlsrpt.ValidationFailure},
		{Time: day.Add(6 * time.Hour), Domain: "example.org", PolicyType: tlsrpt.PolicyNone, Result: tlsrpt.Success},
		// Today's, and a day past -k.
		{Time: clock, Domain: "example.com", PolicyType: tlsrpt.PolicyNone, Result: tlsrpt.Success},
		{Time: day.AddDate(0, 0, -14), Domain: "example.com", PolicyType: tlsrpt.PolicyNone, Result: tlsrpt.Success},
	} {
		if err := tlsrpt.Append(w.logDir, r); err != nil {
			t.Fatal(err)
		}
	}

	savedPost, savedNow := Post, now
	Post = func(ctx context.Context, host, path, contentType string, body []byte) (int, error) {
		w.posts = append(w.posts, post{host, path, contentType, body})
		return w.status, w.err
	}
	now = func() time.Time { return clock }
	t.Cleanup(func() { Post, now = savedPost, savedNow })
	return w
}

func (w *world) file(name, content string) {
	w.t.Helper()
	if err := os.WriteFile(filepath.Join(w.home, name), []byte(content), 0o644); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) exists(name string) bool {
	_, err := os.Stat(filepath.Join(w.home, name))
	return err == nil
}

// run runs the program in this process, as the multicall binary would.
func (w *world) run(args ...string) (stdout, stderr string, code int) {
	w.t.Helper()
	var out, errb bytes.Buffer
	so, se := chain.Stdout, chain.Stderr
	chain.Stdout, chain.Stderr = &out, &errb
	defer func() { chain.Stdout, chain.Stderr = so, se }()
	n, crash := chain.Call(Main, append([]string{prog}, args...))
	if crash != nil {
		w.t.Fatalf("crash: %v\n%s", crash, crash.Stack)
	}
	return out.String(), errb.String(), n.Code()
}

// injected returns the arguments and the messages qmail-inject got, in
// order.
func (w *world) injected() (args [][]string, msgs [][]byte) {
	w.t.Helper()
	names, _ := filepath.Glob(filepath.Join(w.home, "injected", "*.args"))
	// By number: "10.args" after "8.args".
	sort.Slice(names, func(i, j int) bool {
		if len(names[i]) != len(names[j]) {
			return len(names[i]) < len(names[j])
		}
		return names[i] < names[j]
	})
	for _, n := range names {
		a, err := os.ReadFile(n)
		if err != nil {
			w.t.Fatal(err)
		}
		m, err := os.ReadFile(strings.TrimSuffix(n, ".args") + ".msg")
		if err != nil {
			w.t.Fatal(err)
		}
		args = append(args, strings.Split(strings.TrimSuffix(string(a), "\n"), "\n"))
		msgs = append(msgs, m)
	}
	return args, msgs
}

// want is the report of domain on the test day, made from the log as it
// is now.
func (w *world) want(domain string) []byte {
	w.t.Helper()
	recs, _, err := tlsrpt.Read(filepath.Join(w.logDir, "20261204"))
	if err != nil {
		w.t.Fatal(err)
	}
	js, err := tlsrpt.Aggregate(recs, domain, day, "mail.example.org", "postmaster@mail.example.org",
		"20261204."+domain+"@mail.example.org").JSON()
	if err != nil {
		w.t.Fatal(err)
	}
	return js
}

// gunzip decompresses a report.
func gunzip(t *testing.T, gz []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// mailReport takes the report out of a report mail, checking on the way
// that it is one.
func mailReport(t *testing.T, msg []byte, to string) []byte {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Header.Get("To"); got != to {
		t.Errorf("To: %q, want %q", got, to)
	}
	if got := m.Header.Get("From"); got != "postmaster@mail.example.org" {
		t.Errorf("From: %q", got)
	}
	if got := m.Header.Get("TLS-Report-Submitter"); got != "mail.example.org" {
		t.Errorf("TLS-Report-Submitter: %q", got)
	}
	_, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || params["report-type"] != "tlsrpt" {
		t.Fatalf("Content-Type: %v %v", params, err)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err != nil {
			t.Fatalf("no report in the mail: %v", err)
		}
		if strings.HasPrefix(p.Header.Get("Content-Type"), tlsrpt.ContentType) {
			b, _ := io.ReadAll(p)
			gz, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(string(b), "\n", ""))
			if err != nil {
				t.Fatal(err)
			}
			return gunzip(t, gz)
		}
	}
}

func TestReport(t *testing.T) {
	w := newWorld(t)
	wantCom, wantNet := w.want("example.com"), w.want("example.net")
	out, errs, code := w.run("-v")
	if code != 0 {
		t.Fatalf("exit %d; stdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	args, msgs := w.injected()
	if len(args) != 1 {
		t.Fatalf("%d mails injected, want 1 (example.com); stdout:\n%s", len(args), out)
	}
	if want := []string{"-f", "postmaster@mail.example.org", "tlsrpt@example.com"}; !reflect.DeepEqual(args[0], want) {
		t.Errorf("qmail-inject %q, want %q", args[0], want)
	}
	if got := mailReport(t, msgs[0], "tlsrpt@example.com"); !bytes.Equal(got, wantCom) {
		t.Errorf("the mailed report is\n%s\nwant\n%s", got, wantCom)
	}
	var rep tlsrpt.Report
	if err := json.Unmarshal(wantCom, &rep); err != nil || len(rep.Policies) != 1 ||
		rep.Policies[0].Summary != (tlsrpt.Summary{TotalSuccessful: 2, TotalFailure: 1}) ||
		rep.ReportID != "20261204.example.com@mail.example.org" || rep.ContactInfo != "postmaster@mail.example.org" {
		t.Errorf("report %+v, %v", rep, err)
	}

	if len(w.posts) != 1 {
		t.Fatalf("%d posts, want 1 (example.net)", len(w.posts))
	}
	p := w.posts[0]
	if p.host != "reports.example.net" || p.path != "/v1/tlsrpt?from=x" || p.contentType != "application/tlsrpt+gzip" {
		t.Errorf("posted to %s %s as %s", p.host, p.path, p.contentType)
	}
	if got := gunzip(t, p.body); !bytes.Equal(got, wantNet) {
		t.Errorf("the posted report is\n%s\nwant\n%s", got, wantNet)
	}
	if !strings.Contains(out, "example.org: no report: no TLSRPT record") {
		t.Errorf("-v does not say why example.org gets no report:\n%s", out)
	}
	// The day past -k was never reported: said, as it is lost.
	if want := prog + ": " + filepath.Join(w.logDir, "20261120") + ": older than 7 days, deleted with reports unsent\n"; errs != want {
		t.Errorf("stderr: %q, want %q", errs, want)
	}
	// The day is done, the day past -k is gone, today stays.
	for name, want := range map[string]bool{"20261204": false, "20261204.sent": false, "20261120": false, "20261205": true} {
		if got := w.exists(filepath.Join("run/qmail-remote/tlsrpt", name)); got != want {
			t.Errorf("%s exists: %v, want %v", name, got, want)
		}
	}

	// Nothing more to do the next time.
	w.run()
	if args, _ := w.injected(); len(args) != 1 || len(w.posts) != 1 {
		t.Errorf("a second run sent again: %d mails, %d posts", len(args), len(w.posts))
	}
}

func TestContactAndSender(t *testing.T) {
	w := newWorld(t)
	w.file("control/tlsrptcontact", "mailto:tls-admin@example.org\n")
	w.file("control/tlsrptsender", "tlsrpt-bounces@example.org\n")
	if _, errs, code := w.run("-d", "20261204"); code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	args, _ := w.injected()
	if len(args) != 1 || args[0][1] != "tlsrpt-bounces@example.org" {
		t.Fatalf("qmail-inject %q", args)
	}
	var rep tlsrpt.Report
	if err := json.Unmarshal(gunzip(t, w.posts[0].body), &rep); err != nil || rep.ContactInfo != "mailto:tls-admin@example.org" {
		t.Errorf("contact-info %q, %v", rep.ContactInfo, err)
	}
}

func TestFailureKeepsTheDay(t *testing.T) {
	w := newWorld(t)
	w.status = 503
	_, errs, code := w.run()
	if code != 111 {
		t.Fatalf("exit %d, want 111; stderr: %s", code, errs)
	}
	if !strings.Contains(errs, "20261204 example.net: unable to send the report to https://reports.example.net/v1/tlsrpt?from=x: the server answered with HTTP status 503") {
		t.Errorf("stderr: %s", errs)
	}
	if !w.exists("run/qmail-remote/tlsrpt/20261204") {
		t.Fatal("the day's log was deleted though a report did not go")
	}
	// The next run sends what did not go, and only that.
	w.status = 202
	if _, errs, code := w.run(); code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	args, _ := w.injected()
	if len(args) != 1 || len(w.posts) != 2 {
		t.Errorf("%d mails (want 1: it went the first time), %d posts (want 2)", len(args), len(w.posts))
	}
	if w.exists("run/qmail-remote/tlsrpt/20261204") {
		t.Error("the day's log stays though its reports went")
	}
}

func TestInjectFails(t *testing.T) {
	w := newWorld(t)
	w.file("inject-fails", "")
	_, errs, code := w.run()
	if code != 111 || !strings.Contains(errs, "example.com: unable to send the report to mailto:tlsrpt@example.com: qmail-inject failed (exit status 111)") ||
		!strings.Contains(errs, "qmail-inject: fatal: out of memory") {
		t.Errorf("exit %d, stderr: %s", code, errs)
	}
	if !w.exists("run/qmail-remote/tlsrpt/20261204") {
		t.Error("the day's log was deleted though a report did not go")
	}
}

func TestDNSFailure(t *testing.T) {
	w := newWorld(t)
	w.dns.Fail("_smtp._tls.example.com", dnstest.AnyType, 2) // SERVFAIL
	_, errs, code := w.run()
	if code != 111 || !strings.Contains(errs, "20261204 example.com: unable to look up where to send the report") {
		t.Errorf("exit %d, stderr: %s", code, errs)
	}
	if len(w.posts) != 1 {
		t.Errorf("%d posts: example.net's report must go anyway", len(w.posts))
	}
	if !w.exists("run/qmail-remote/tlsrpt/20261204") {
		t.Error("the day's log was deleted though a report did not go")
	}
}

func TestNoPost(t *testing.T) {
	w := newWorld(t)
	Post = nil
	_, errs, code := w.run()
	// Nothing later can do better: said, and the day is done.
	if code != 0 || !strings.Contains(errs, "example.net: unable to send the report to https://reports.example.net/v1/tlsrpt?from=x: this binary cannot send reports over HTTPS") {
		t.Errorf("exit %d, stderr: %s", code, errs)
	}
	if args, _ := w.injected(); len(args) != 1 {
		t.Errorf("%d mails, want 1", len(args))
	}
}

func TestPendingDays(t *testing.T) {
	w := newWorld(t)
	// A day whose reports did not go two days ago: sent with yesterday's.
	old := tlsrpt.Record{Time: day.AddDate(0, 0, -2), Domain: "example.com", PolicyType: tlsrpt.PolicyNone, Result: tlsrpt.Success}
	if err := tlsrpt.Append(w.logDir, old); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := w.run(); code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	_, msgs := w.injected()
	if len(msgs) != 2 {
		t.Fatalf("%d mails, want 2", len(msgs))
	}
	var first tlsrpt.Report
	if err := json.Unmarshal(mailReport(t, msgs[0], "tlsrpt@example.com"), &first); err != nil ||
		!first.DateRange.Start.Equal(day.AddDate(0, 0, -2)) {
		t.Errorf("the first mail reports on %v (%v), want the older day", first.DateRange.Start, err)
	}
	if w.exists("run/qmail-remote/tlsrpt/20261202") {
		t.Error("the older day stays")
	}
}

func TestDryRun(t *testing.T) {
	w := newWorld(t)
	w.dns.Fail("_smtp._tls.example.net", dnstest.AnyType, 2) // SERVFAIL
	dir := filepath.Join(t.TempDir(), "reports")
	out, errs, code := w.run("-n", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if args, _ := w.injected(); len(args) != 0 || len(w.posts) != 0 {
		t.Errorf("a dry run sent %d mails, %d posts", len(args), len(w.posts))
	}
	if !strings.Contains(errs, "example.net: unable to look up") {
		t.Errorf("stderr does not say the lookup failed: %s", errs)
	}
	for _, want := range []string{"example.com.eml, would go to mailto:tlsrpt@example.com",
		"example.net.eml, would go to unknown (DNS failed)", "example.org.eml, would go to nowhere (no TLSRPT record)"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	for _, d := range []string{"example.com", "example.net", "example.org"} {
		js, err := os.ReadFile(filepath.Join(dir, d+".json"))
		if err != nil {
			t.Fatal(err)
		}
		want := w.want(d)
		if !bytes.Equal(bytes.TrimSuffix(js, []byte("\n")), want) {
			t.Errorf("%s.json is\n%s\nwant\n%s", d, js, want)
		}
		msg, err := os.ReadFile(filepath.Join(dir, d+".eml"))
		if err != nil {
			t.Fatal(err)
		}
		to := "undisclosed-recipients:;"
		if d == "example.com" {
			to = "tlsrpt@example.com"
		}
		if got := mailReport(t, msg, to); !bytes.Equal(got, want) {
			t.Errorf("%s.eml holds\n%s\nwant\n%s", d, got, want)
		}
	}
	for _, name := range []string{"20261204", "20261120", "20261205"} {
		if !w.exists(filepath.Join("run/qmail-remote/tlsrpt", name)) {
			t.Errorf("a dry run deleted %s", name)
		}
	}
}

func TestUsage(t *testing.T) {
	w := newWorld(t)
	for _, args := range [][]string{
		{"-x"}, {"extra"}, {"-d", "2026-12-04"}, {"-d", "20261304"}, {"-d", "2026120"},
		{"-d", "20261205"}, // today: not over
		{"-d", "20261206"}, {"-k", "0"}, {"-k", "x"}, {"-n", ""},
	} {
		_, errs, code := w.run(args...)
		if code != 100 || !strings.Contains(errs, "usage: "+usage) {
			t.Errorf("%q: exit %d, stderr %q", args, code, errs)
		}
	}
	// Today's report so far, in a dry run, is fine.
	if _, errs, code := w.run("-n", t.TempDir(), "-d", "20261205"); code != 0 {
		t.Errorf("dry run of today: exit %d: %s", code, errs)
	}
}

func TestNoMe(t *testing.T) {
	w := newWorld(t)
	if err := os.Remove(filepath.Join(w.home, "control/me")); err != nil {
		t.Fatal(err)
	}
	_, errs, code := w.run()
	if code != 111 || !strings.Contains(errs, "control/me does not name this host") {
		t.Errorf("exit %d, stderr %q", code, errs)
	}
}

func TestURIs(t *testing.T) {
	for _, c := range []struct{ in, addr string }{
		{"tlsrpt@example.com", "tlsrpt@example.com"},
		{"tls%2Brpt@example.com?subject=x", "tls+rpt@example.com"},
		{"-oops@example.com", ""},
		{"a@example.com,b@example.com", ""},
		{"no-at-sign", ""},
		{"a%0Ab@example.com", ""},
		{"bad%zz@example.com", ""},
	} {
		got, err := mailtoAddr(c.in)
		if got != c.addr || (err == nil) != (c.addr != "") {
			t.Errorf("mailto:%s: %q, %v; want %q", c.in, got, err, c.addr)
		}
	}
	for _, c := range []struct{ in, host, path string }{
		{"//r.example.com/v1/tlsrpt", "r.example.com", "/v1/tlsrpt"},
		{"//r.example.com:8443", "r.example.com:8443", "/"},
		{"//r.example.com?x=1#frag", "r.example.com", "/?x=1"},
		{"//user@r.example.com/", "", ""},
		{"r.example.com/x", "", ""},
		{"///x", "", ""},
	} {
		host, path, err := httpsTarget(c.in)
		if host != c.host || path != c.path || (err == nil) != (c.host != "") {
			t.Errorf("https:%s: %q %q, %v", c.in, host, path, err)
		}
	}
}

func TestLocked(t *testing.T) {
	w := newWorld(t)
	f, err := os.OpenFile(filepath.Join(w.logDir, lockName), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	_, errs, code := w.run()
	if code != 111 || !strings.Contains(errs, "another qmail-remote-tlsrpt is running") {
		t.Errorf("exit %d, stderr %q", code, errs)
	}
	if args, _ := w.injected(); len(args) != 0 || len(w.posts) != 0 {
		t.Error("sent while another run holds the lock")
	}
}
