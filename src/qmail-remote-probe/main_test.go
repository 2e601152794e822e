package qmailremoteprobe

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"qmail-remote-go/src/internal/mtasts"
	"qmail-remote-go/src/testkit/buildtest"
	"qmail-remote-go/src/testkit/dnstest"
	"qmail-remote-go/src/testkit/smtptest"
	"qmail-remote-go/src/testkit/tlstest"
)

// dir holds the multicall binary under every name, qmail-remote-probe
// included.
var dir string

func TestMain(m *testing.M) { buildtest.Main(m, &dir, nil) }

// world is a qmail home, a test DNS server for example.test, and test
// SMTP servers for mx1.example.test (127.0.0.1) and mx2.example.test
// (127.0.0.2) on one port, that of the default route.
type world struct {
	t    *testing.T
	home string
	dns  *dnstest.Server
	port string
	srv  map[string]*smtptest.Server
	env  []string
}

var testCA *tlstest.CA

func ca(t *testing.T) *tlstest.CA {
	if testCA == nil {
		testCA = tlstest.NewCA(t, "probe test CA")
	}
	return testCA
}

// newWorld starts the servers with the given scripts (by address; nil:
// the defaults) and writes a qmail home whose control files route every
// domain to their port.
func newWorld(t *testing.T, scripts map[string]smtptest.Script) *world {
	t.Helper()
	w := &world{t: t, home: t.TempDir()}
	for _, d := range []string{"control", "queue/lock", "run/qmail-remote"} {
		if err := os.MkdirAll(filepath.Join(w.home, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	w.port, w.srv = servers(t, scripts, "127.0.0.1", "127.0.0.2")
	w.dns = dnstest.Start(t)
	w.dns.Add("example.test. 60 IN MX 10 mx1.example.test.", "example.test. 60 IN MX 20 mx2.example.test.",
		"mx1.example.test. 60 IN A 127.0.0.1", "mx2.example.test. 60 IN A 127.0.0.2")
	w.control("me", "client.example.test\n")
	w.control("notipme", "127.0.0.1\n::1\n")
	w.control("timeoutconnect", "10\n")
	w.control("timeoutremote", "10\n")
	w.control("smtproutes", "::"+w.port+"\n")
	w.env = []string{"PATH=" + os.Getenv("PATH"), "QMAILREMOTE_QMAILHOME=" + w.home,
		"QMAILREMOTE_LIBEXECDIR=" + dir, "DNSCACHEIP=" + w.dns.Addr()}
	return w
}

func (w *world) control(name, content string) {
	w.t.Helper()
	if err := os.WriteFile(filepath.Join(w.home, "control", name), []byte(content), 0o644); err != nil {
		w.t.Fatal(err)
	}
}

// anchors makes testCA the trust anchors.
func (w *world) anchors() {
	w.control("trustanchors", tlstest.WriteBundle(w.t, w.home, ca(w.t))+"\n")
}

// tlsa publishes TLSA records for host, at the servers' port.
func (w *world) tlsa(host string, recs ...string) {
	for _, r := range recs {
		w.dns.Add("_" + w.port + "._tcp." + host + ". 60 IN TLSA " + r)
	}
}

// run runs the probe and returns stdout, stderr and the exit code.
func (w *world) run(args ...string) (string, string, int) {
	w.t.Helper()
	cmd := exec.Command(filepath.Join(dir, Name), args...)
	cmd.Env = w.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		w.t.Fatalf("the probe hangs; stderr: %s", errb.String())
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

// probe runs the probe with -j, which must succeed, and parses its
// output.
func (w *world) probe(args ...string) *Result {
	w.t.Helper()
	out, errs, code := w.run(append([]string{"-j"}, args...)...)
	if code != 0 {
		w.t.Fatalf("exit %d, stderr: %s", code, errs)
	}
	var r Result
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		w.t.Fatalf("%v in %q", err, out)
	}
	return &r
}

// servers starts test SMTP servers on the same port at each address.
func servers(t *testing.T, scripts map[string]smtptest.Script, addrs ...string) (string, map[string]*smtptest.Server) {
	t.Helper()
	return smtptest.StartSamePort(t, scripts, addrs...)
}

func tlsScript(c tls.Certificate) smtptest.Script {
	return smtptest.Script{TLS: &tls.Config{Certificates: []tls.Certificate{c}}}
}

func spki(c tls.Certificate) string {
	s := sha256.Sum256(c.Leaf.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(s[:])
}

func host(t *testing.T, r *Result, name string) *Host {
	t.Helper()
	for i := range r.Hosts {
		if r.Hosts[i].Name == name {
			return &r.Hosts[i]
		}
	}
	t.Fatalf("no host %s in %+v", name, r.Hosts)
	return nil
}

// noMail: the probe never starts a mail transaction.
func noMail(t *testing.T, w *world) {
	t.Helper()
	for a, s := range w.srv {
		if m := s.Messages(); len(m) != 0 {
			t.Errorf("%s got mail: %+v", a, m)
		}
		for _, l := range s.Lines() {
			if strings.HasPrefix(strings.ToUpper(l), "MAIL") {
				t.Errorf("%s got %q", a, l)
			}
		}
	}
}

// daneWorld: a signed example.test, control/tlspolicy :dane, both MX
// hosts with certificates for their names from testCA.
func daneWorld(t *testing.T) (*world, [2]tls.Certificate) {
	leaf := [2]tls.Certificate{
		ca(t).Issue(t, tlstest.Leaf{DNSNames: []string{"mx1.example.test"}}),
		ca(t).Issue(t, tlstest.Leaf{DNSNames: []string{"mx2.example.test"}}),
	}
	w := newWorld(t, map[string]smtptest.Script{"127.0.0.1": tlsScript(leaf[0]), "127.0.0.2": tlsScript(leaf[1])})
	w.dns.Secure("example.test", ".example.test")
	w.control("tlspolicy", ":dane\n")
	return w, leaf
}

func TestDANEEE(t *testing.T) {
	w, leaf := daneWorld(t)
	w.tlsa("mx1.example.test", "3 1 1 "+spki(leaf[0]))
	r := w.probe("example.test")
	if r.Policy == nil || r.Policy.Level != "dane" || r.Policy.LevelSource != "control/tlspolicy" || r.Policy.Key != "" {
		t.Errorf("policy %+v", r.Policy)
	}
	if r.MX == nil || !r.MX.Secure || len(r.MX.Records) != 2 || r.MX.Records[0] != "10 mx1.example.test" {
		t.Errorf("MX %+v", r.MX)
	}
	if r.Candidates != 2 || r.Probed != 2 || len(r.DANEHosts) != 1 || r.DANEHosts[0] != "mx1.example.test" {
		t.Errorf("candidates %d probed %d DANE %v", r.Candidates, r.Probed, r.DANEHosts)
	}
	h := host(t, r, "mx1.example.test")
	if !h.DANE || h.Level != "dane" || h.Mode != "require" || h.Preference == nil || *h.Preference != 10 {
		t.Errorf("mx1: dane %v level %q mode %q pref %v", h.DANE, h.Level, h.Mode, h.Preference)
	}
	if h.TLSA == nil || !h.TLSA.Secure || len(h.TLSA.Records) != 1 {
		t.Errorf("TLSA %+v", h.TLSA)
	}
	if h.TLS == nil || !h.TLS.OK || h.TLS.Config != "delivery" || h.TLS.SNI != "mx1.example.test" ||
		len(h.TLS.Certificates) != 1 || h.TLS.Certificates[0].SPKISHA256 != spki(leaf[0]) {
		t.Errorf("TLS %+v", h.TLS)
	}
	c := h.Checks
	if c.DANE.Result != pass || c.DANE.By != "DANE-EE 3 1 1" || len(c.Records) != 1 ||
		!c.Records[0].Usable || len(c.Records[0].Matches) != 1 || c.Records[0].Matches[0] != 0 {
		t.Errorf("DANE %+v %+v", c.DANE, c.Records)
	}
	if c.Delivery.Result != pass || c.Delivery.By != "DANE-EE 3 1 1" {
		t.Errorf("delivery %+v", c.Delivery)
	}
	if c.PKIX.Result != skipped {
		t.Errorf("PKIX without anchors: %+v", c.PKIX)
	}
	if h.Verdict.Action != "tls-verified" || !strings.Contains(h.Verdict.Text, "verified by DANE-EE 3 1 1") {
		t.Errorf("verdict %+v", h.Verdict)
	}
	// mx2 has no TLSA: dane is may there.
	h2 := host(t, r, "mx2.example.test")
	if h2.DANE || h2.Level != "may" || h2.Mode != "try" || h2.Verdict.Action != "tls-unverified" {
		t.Errorf("mx2: %+v %+v", h2.Level, h2.Verdict)
	}
	if h2.Checks.DANE.Result != skipped {
		t.Errorf("mx2 DANE %+v", h2.Checks.DANE)
	}
	noMail(t, w)

	out, _, code := w.run("example.test")
	for _, want := range []string{`== mx1\.example\.test \[127\.0\.0\.1\] MX 10\n`, "control/tlspolicy says dane",
		`\nverdict: +deliver with TLS, verified by DANE-EE 3 1 1\n`, "3 1 1 " + spki(leaf[0]), `usable, matches depth 0\n`} {
		if code != 0 || !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("exit %d, no %q in\n%s", code, want, out)
		}
	}
}

func TestDANEMismatch(t *testing.T) {
	const other = "0000000000000000000000000000000000000000000000000000000000000000"
	w, leaf := daneWorld(t)
	w.tlsa("mx1.example.test", "3 1 1 "+other)
	w.tlsa("mx2.example.test", "3 1 1 "+spki(leaf[1]), "1 1 1 "+other)
	r := w.probe("example.test")
	h := host(t, r, "mx1.example.test")
	if !h.DANE || h.Checks.DANE.Result != fail || !strings.Contains(h.Checks.DANE.Detail, "no TLSA record matches") ||
		len(h.Checks.Records[0].Matches) != 0 {
		t.Errorf("mx1 DANE %+v %+v", h.Checks.DANE, h.Checks.Records)
	}
	if h.Checks.Delivery.Result != fail || h.Verdict.Action != "skip" || !strings.Contains(h.Verdict.Text, "never goes to it in cleartext") {
		t.Errorf("mx1 %+v %+v", h.Checks.Delivery, h.Verdict)
	}
	h2 := host(t, r, "mx2.example.test")
	if h2.Verdict.Action != "tls-verified" || len(h2.Checks.Records) != 2 || h2.Checks.Records[1].Usable {
		t.Errorf("mx2 %+v %+v", h2.Verdict, h2.Checks.Records)
	}
}

// Records that are not DNSSEC-secure are shown, and said to be unused.
func TestTLSAInsecure(t *testing.T) {
	w, leaf := daneWorld(t)
	w.dns = dnstest.Start(t) // the same data, unsigned
	w.env[len(w.env)-1] = "DNSCACHEIP=" + w.dns.Addr()
	w.dns.Add("example.test. 60 IN MX 10 mx1.example.test.", "mx1.example.test. 60 IN A 127.0.0.1")
	w.tlsa("mx1.example.test", "3 1 1 "+spki(leaf[0]))
	r := w.probe("example.test")
	h := host(t, r, "mx1.example.test")
	if h.DANE || h.Level != "may" || h.TLSA == nil || h.TLSA.Secure || h.Checks.DANE.Result != pass ||
		!strings.Contains(h.Checks.DANE.Detail, "not DNSSEC-secure: a delivery never uses them") {
		t.Errorf("%+v %+v %+v", h.Level, h.TLSA, h.Checks.DANE)
	}
	if h.Verdict.Action != "tls-unverified" {
		t.Errorf("verdict %+v", h.Verdict)
	}
}

func TestNoSTARTTLS(t *testing.T) {
	for _, c := range []struct {
		strictness, action, text string
	}{
		{"0", "cleartext", "deliver in cleartext: STARTTLS not offered"},
		{"1", "second-pass", "once every candidate failed under TLS"},
		{"2", "skip", "not use this host: STARTTLS not offered"},
	} {
		t.Run(c.strictness, func(t *testing.T) {
			w := newWorld(t, nil)
			w.anchors()
			w.control("tlsstrictness", c.strictness+"\n")
			r := w.probe("example.test")
			h := host(t, r, "mx1.example.test")
			if h.EHLO == nil || !h.EHLO.OK || h.EHLO.StartTLS || h.StartTLS != nil || h.TLS != nil || h.Checks != nil {
				t.Errorf("%+v %+v %+v", h.EHLO, h.StartTLS, h.TLS)
			}
			if h.Verdict.Action != c.action || !strings.Contains(h.Verdict.Text, c.text) {
				t.Errorf("verdict %+v", h.Verdict)
			}
			noMail(t, w)
		})
	}
}

// Without trust anchors a delivery does no STARTTLS; the probe does it
// anyway and says so.
func TestNoAnchors(t *testing.T) {
	w := newWorld(t, map[string]smtptest.Script{"127.0.0.1": tlsScript(ca(t).Issue(t, tlstest.Leaf{DNSNames: []string{"mx1.example.test"}}))})
	r := w.probe("example.test")
	h := host(t, r, "mx1.example.test")
	if h.Mode != "none" || h.TLS == nil || !h.TLS.OK || h.TLS.Config != "probe" || h.Checks.Delivery.Result != skipped {
		t.Errorf("%+v %+v", h.TLS, h.Checks)
	}
	if h.Verdict.Action != "cleartext" || !strings.Contains(h.Verdict.Text, "control/trustanchors is not set") {
		t.Errorf("verdict %+v", h.Verdict)
	}
}

func TestPKIX(t *testing.T) {
	other := tlstest.NewCA(t, "another CA")
	good := ca(t).Issue(t, tlstest.Leaf{DNSNames: []string{"mx1.example.test"}})
	unknown := other.Issue(t, tlstest.Leaf{DNSNames: []string{"mx2.example.test"}})
	w := newWorld(t, map[string]smtptest.Script{"127.0.0.1": tlsScript(good), "127.0.0.2": tlsScript(unknown)})
	w.anchors()
	w.control("tlsstrictness", "2\n")
	r := w.probe("example.test")
	h := host(t, r, "mx1.example.test")
	if c := h.Checks; c.PKIX.Result != pass || c.Chain.Result != pass || c.Name.Result != pass || c.Delivery.By != "PKIX" {
		t.Errorf("mx1 %+v", c)
	}
	if h.Verdict.Action != "tls-verified" || !strings.Contains(h.Verdict.Text, "verified by PKIX") {
		t.Errorf("mx1 verdict %+v", h.Verdict)
	}
	h2 := host(t, r, "mx2.example.test")
	if c := h2.Checks; c.PKIX.Result != fail || c.Chain.Result != fail || !strings.Contains(c.Chain.Detail, "unknown authority") ||
		c.Name.Result != pass || c.Delivery.Result != fail {
		t.Errorf("mx2 %+v", c)
	}
	if h2.Verdict.Action != "skip" || !strings.Contains(h2.Verdict.Text, "unknown authority") {
		t.Errorf("mx2 verdict %+v", h2.Verdict)
	}

	// The same servers at tlsstrictness 0: both deliver under TLS, not
	// verified, and the checks still say which would verify.
	w.control("tlsstrictness", "0\n")
	r = w.probe("example.test")
	if h := host(t, r, "mx2.example.test"); h.Verdict.Action != "tls-unverified" || h.Checks.PKIX.Result != fail {
		t.Errorf("mx2 at 0: %+v %+v", h.Verdict, h.Checks.PKIX)
	}
}

func TestNameMismatch(t *testing.T) {
	wrong := ca(t).Issue(t, tlstest.Leaf{DNSNames: []string{"elsewhere.example.test"}})
	w := newWorld(t, map[string]smtptest.Script{"127.0.0.1": tlsScript(wrong)})
	w.anchors()
	w.control("tlspolicy", "example.test:verify\n")
	r := w.probe("example.test")
	h := host(t, r, "mx1.example.test")
	if r.Policy.Key != "example.test" || h.Level != "verify" {
		t.Errorf("policy %+v, level %q", r.Policy, h.Level)
	}
	if c := h.Checks; c.Chain.Result != pass || c.Name.Result != fail || c.PKIX.Result != fail ||
		!strings.Contains(c.Name.Detail, "elsewhere.example.test") {
		t.Errorf("%+v", c)
	}
	if h.Verdict.Action != "skip" {
		t.Errorf("verdict %+v", h.Verdict)
	}
}

// -l overrides control/tlspolicy, -p the port, and an address literal
// needs no DNS.
func TestOverridesAndLiteral(t *testing.T) {
	leaf := ca(t).Issue(t, tlstest.Leaf{DNSNames: []string{"mx1.example.test"}})
	w := newWorld(t, map[string]smtptest.Script{"127.0.0.1": tlsScript(leaf)})
	w.control("smtproutes", "")
	r := w.probe("-l", "encrypt", "-p", w.port, "[127.0.0.1]")
	if r.Route.Port != atoi(t, w.port) || r.Route.PortSource != "-p" || r.Policy.Level != "encrypt" || r.Policy.LevelSource != "-l" {
		t.Errorf("route %+v policy %+v", r.Route, r.Policy)
	}
	if r.MX != nil || len(r.Hosts) != 1 {
		t.Fatalf("MX %+v hosts %+v", r.MX, r.Hosts)
	}
	h := r.Hosts[0]
	if h.Name != "[127.0.0.1]" || h.Addresses != nil || h.TLS == nil || h.TLS.SNI != "" || h.Verdict.Action != "tls-unverified" {
		t.Errorf("%+v %+v %+v", h.Name, h.TLS, h.Verdict)
	}
	if h.Checks.DANE.Detail != "an address literal has no TLSA records" {
		t.Errorf("DANE %+v", h.Checks.DANE)
	}
}

func atoi(t *testing.T, s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// A DNS outcome that ends the delivery is shown as such, exit 0.
func TestEnded(t *testing.T) {
	w := newWorld(t, nil)
	r := w.probe("nowhere.example.test")
	if r.Ended == nil || r.Ended.Letter != "D" || r.Ended.Stage != "qmail-remote-resolve" ||
		!strings.Contains(r.Ended.Text, "couldn't find any host named nowhere.example.test") || len(r.Hosts) != 0 {
		t.Errorf("%+v", r.Ended)
	}
	out, _, code := w.run("nowhere.example.test")
	if code != 0 || !strings.Contains(out, "a delivery would bounce (D)") {
		t.Errorf("exit %d:\n%s", code, out)
	}
	// A broken smtproutes ends it in the routes stage.
	w.control("smtproutes", "example.test:[300.1.1.1]\n")
	r = w.probe("example.test")
	if r.Ended == nil || r.Ended.Letter != "Z" || r.Ended.Stage != "qmail-remote-routes" || r.Route != nil {
		t.Errorf("%+v", r.Ended)
	}
}

// Servers that hang or talk garbage cost a bounded time and are named.
func TestMisbehavingServers(t *testing.T) {
	w := newWorld(t, map[string]smtptest.Script{
		"127.0.0.1": {Greeting: smtptest.Stall},
		"127.0.0.2": {Greeting: "hello, I am not SMTP"},
	})
	start := time.Now()
	r := w.probe("-t", "2", "example.test")
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("took %v", d)
	}
	h := host(t, r, "mx1.example.test")
	if h.Greeting == nil || h.Greeting.OK || !strings.Contains(h.Greeting.Error, "timeout") || h.Verdict.Action != "skip" {
		t.Errorf("mx1 %+v %+v", h.Greeting, h.Verdict)
	}
	h2 := host(t, r, "mx2.example.test")
	if h2.Greeting == nil || h2.Greeting.OK || !strings.Contains(h2.Greeting.Error, "malformed") || h2.Verdict.Action != "skip" {
		t.Errorf("mx2 %+v %+v", h2.Greeting, h2.Verdict)
	}
}

// The JSON has its documented fields, whatever Go's types say.
func TestJSONFields(t *testing.T) {
	w, leaf := daneWorld(t)
	w.tlsa("mx1.example.test", "3 1 1 "+spki(leaf[0]))
	out, _, code := w.run("-j", "example.test")
	if code != 0 || strings.Count(out, "\n") != 1 {
		t.Fatalf("exit %d, output %q", code, out)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatal(err)
	}
	has := func(obj map[string]any, where string, keys ...string) {
		t.Helper()
		for _, k := range keys {
			if _, ok := obj[k]; !ok {
				t.Errorf("%s has no %q: %v", where, k, obj)
			}
		}
	}
	has(m, "result", "version", "destination", "route", "policy", "ended", "mx", "candidates", "probed", "dane_hosts", "mta_sts", "hosts", "mx_not_candidates", "notes")
	has(m["route"].(map[string]any), "route", "relay", "relay_source", "port", "port_source", "auth", "auth_sender",
		"sender", "sender_route", "outgoing_ip")
	has(m["policy"].(map[string]any), "policy", "level", "level_source", "file_level", "key", "match", "pins", "tlsstrictness", "trustanchors", "why")
	hosts := m["hosts"].([]any)
	h := hosts[0].(map[string]any)
	has(h, "host", "name", "address", "preference", "dane", "level", "mode", "policy", "tcpto_skip", "addresses", "tlsa",
		"connect", "greeting", "ehlo", "starttls", "tls", "ehlo_tls", "checks", "verdict")
	has(h["tls"].(map[string]any), "tls", "ok", "error", "version", "cipher", "sni", "certificates", "config")
	cert := h["tls"].(map[string]any)["certificates"].([]any)[0].(map[string]any)
	has(cert, "certificate", "depth", "subject", "issuer", "dns_names", "ip_addresses", "not_before", "not_after", "spki_sha256", "sha256")
	checks := h["checks"].(map[string]any)
	has(checks, "checks", "pkix", "pkix_chain", "name", "dane", "tlsa_records", "pins", "delivery")
	has(checks["dane"].(map[string]any), "check", "result", "detail")
	has(h["verdict"].(map[string]any), "verdict", "action", "text")
	if m["version"].(float64) != 1 {
		t.Errorf("version %v", m["version"])
	}
}

func TestUsage(t *testing.T) {
	w := newWorld(t, nil)
	for _, args := range [][]string{
		{},
		{"a.example", "b.example"},
		{"-x", "example.test"},
		{"-n", "0", "example.test"},
		{"-n", "101", "example.test"},
		{"-l", "verfy", "example.test"},
		{"-p", "70000", "example.test"},
		{"-r", "[300.1.1.1]", "example.test"},
		{"-t", "0", "example.test"},
		{"exa mple.test"},
		{"-f", "a b@example.org", "example.test"},
		{"-f", "a\x01b@example.org", "example.test"},
		{"-f", "a\u0085b@example.org", "example.test"},
		{"-f", "a\xffb@example.org", "example.test"},
		{"-f"},
		{""},
	} {
		out, errs, code := w.run(args...)
		if code != 100 || out != "" || !strings.Contains(errs, "usage: qmail-remote-probe") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, code, out, errs)
		}
	}
}

func TestControlError(t *testing.T) {
	w := newWorld(t, nil)
	w.control("timeoutremote", "soon\n")
	out, errs, code := w.run("example.test")
	if code != 111 || out != "" || !strings.Contains(errs, "control/timeoutremote") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

func TestTLSFaults(t *testing.T) {
	leaf := ca(t).Issue(t, tlstest.Leaf{DNSNames: []string{"mx1.example.test"}})
	inject := tlsScript(leaf)
	inject.Inject = "250 injected\r\n"
	garbage := tlsScript(leaf)
	garbage.Handshake = "this is no ServerHello\r\n"
	w := newWorld(t, map[string]smtptest.Script{"127.0.0.1": inject, "127.0.0.2": garbage})
	w.anchors()
	r := w.probe("-t", "5", "example.test")
	h := host(t, r, "mx1.example.test")
	if h.StartTLS == nil || h.StartTLS.OK || !strings.Contains(h.StartTLS.Error, "response injection") ||
		h.TLS != nil || h.Verdict.Action != "skip" {
		t.Errorf("mx1 %+v %+v %+v", h.StartTLS, h.TLS, h.Verdict)
	}
	h2 := host(t, r, "mx2.example.test")
	if h2.TLS == nil || h2.TLS.OK || !strings.Contains(h2.TLS.Error, "not TLS") || h2.Checks != nil ||
		h2.Verdict.Action != "cleartext-fallback" {
		t.Errorf("mx2 %+v %+v", h2.TLS, h2.Verdict)
	}
	noMail(t, w)
}

// -r probes another relay than the route's: no MX lookup.
func TestRelay(t *testing.T) {
	w := newWorld(t, nil)
	r := w.probe("-r", "mx2.example.test", "example.test")
	if r.Route.Relay != "mx2.example.test" || r.Route.RelaySource != "-r" || r.MX != nil || len(r.Hosts) != 1 ||
		r.Hosts[0].Name != "mx2.example.test" || r.Hosts[0].Address != "127.0.0.2" || r.Hosts[0].Preference != nil {
		t.Errorf("%+v %+v", r.Route, r.Hosts)
	}
	if len(r.Notes) != 1 || !strings.Contains(r.Notes[0], "-r mx2.example.test replaces the route's relay (MX lookup)") {
		t.Errorf("notes %q", r.Notes)
	}
}

// A smarthost with credentials and SMTPS: TLS at once, tlsstrictness 2,
// and never AUTH from the probe.
func TestSMTPS(t *testing.T) {
	leaf := ca(t).Issue(t, tlstest.Leaf{DNSNames: []string{"mx1.example.test"}})
	s := tlsScript(leaf)
	s.SMTPS, s.Auth = true, "PLAIN"
	w := newWorld(t, map[string]smtptest.Script{"127.0.0.1": s})
	w.anchors()
	w.control("smtproutes", ":mx1.example.test:"+w.port+"\n")
	w.control("smtpauth", "mx1.example.test:"+w.port+":smtps:user:secret\n")
	if err := os.Chmod(filepath.Join(w.home, "control", "smtpauth"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := w.probe("example.test")
	if r.Route.Auth != "smtps" || r.Policy.Strictness != 2 || len(r.Hosts) != 1 {
		t.Fatalf("%+v %+v %+v", r.Route, r.Policy, r.Hosts)
	}
	h := r.Hosts[0]
	if h.EHLO != nil || h.StartTLS != nil || h.TLS == nil || !h.TLS.OK || h.EHLOTLS == nil || !h.EHLOTLS.OK ||
		h.Verdict.Action != "tls-verified" || !strings.Contains(h.Verdict.Text, "verified by PKIX; then AUTH") {
		t.Errorf("%+v %+v %+v", h.TLS, h.EHLOTLS, h.Verdict)
	}
	for _, l := range w.srv["127.0.0.1"].Lines() {
		if strings.HasPrefix(strings.ToUpper(l), "AUTH") || strings.Contains(l, "secret") {
			t.Errorf("the server got %q", l)
		}
	}
}

// TestMTASTS: with a cached enforce policy (the TXT record's id is the
// cached one, so nothing is fetched), the probe shows the policy, only
// the MX host it names, and that host at level verify.
func TestMTASTS(t *testing.T) {
	w := newWorld(t, nil)
	w.anchors()
	w.dns.Add(`_mta-sts.example.test. 60 IN TXT "v=STSv1; id=5"`)
	text := "version: STSv1\nmode: enforce\nmx: mx1.example.test\nmax_age: 3600\n"
	p, err := mtasts.Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	c := mtasts.Cache{Dir: filepath.Join(w.home, "run", "qmail-remote", "mta-sts")}
	if err := c.Put(mtasts.Entry{Domain: "example.test", ID: "5", Fetched: now, Expires: now.Add(time.Hour), Policy: p}); err != nil {
		t.Fatal(err)
	}
	r := w.probe("example.test")
	if r.STS == nil || r.STS.Mode != "enforce" || strings.Join(r.STS.Policy, "|") != "version: STSv1|mode: enforce|mx: mx1.example.test|max_age: 3600" {
		t.Fatalf("mta_sts %+v", r.STS)
	}
	if r.Candidates != 1 || len(r.Hosts) != 1 || r.Hosts[0].Name != "mx1.example.test" || r.Hosts[0].Level != "verify" {
		t.Errorf("candidates %d, hosts %+v: want mx1.example.test only, at verify", r.Candidates, r.Hosts)
	}
	out, _, code := w.run("example.test")
	if code != 0 || !strings.Contains(out, "MTA-STS") || !strings.Contains(out, "enforce: only the MX hosts the policy names") {
		t.Errorf("text output (exit %d) without the policy:\n%s", code, out)
	}
}
