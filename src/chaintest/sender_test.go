package chaintest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"

	"qmail-remote-go/src/testkit/smtptest"
)

// Routing by sender (control/senderroutes), sender credentials
// (control/smtpauth) and the source address (control/outgoingip) through
// the whole chain.

// A sender route to a smarthost: mail from alice@example.org goes to the
// relay, mail from anyone else follows the MX, as before.
func TestSenderRouteToSmarthost(t *testing.T) {
	port, srv := servers(t, map[string]smtptest.Script{
		"127.0.0.1": {AfterDot: "250 mx"},
		"127.0.0.2": {AfterDot: "250 relay"},
	}, "127.0.0.1", "127.0.0.2")
	h, d := dnsHome(t, port)
	d.Add("example.test. 60 IN MX 10 mx1.example.test.", "mx1.example.test. 60 IN A 127.0.0.1",
		"relay.example.test. 60 IN A 127.0.0.2")
	h.control("senderroutes", "# by sender\nalice@example.org:relay.example.test:"+port+"\n")
	for _, c := range []struct {
		sender, want, server string
		mx                   bool // an MX query is made
	}{
		{"alice@example.org", "250 relay", "127.0.0.2", false},
		{"Alice@Example.ORG", "250 relay", "127.0.0.2", false},
		{"bob@example.org", "250 mx", "127.0.0.1", true},
		{"", "250 mx", "127.0.0.1", true},
	} {
		before := len(d.Queries())
		n1, n2 := len(srv["127.0.0.1"].Messages()), len(srv["127.0.0.2"].Messages())
		h.run(sample, "example.test", c.sender, rcpt).expect(t, 'K', c.server+" accepted message.", c.want)
		mx := false
		for _, q := range d.Queries()[before:] {
			mx = mx || q.Type == dns.TypeMX
		}
		if mx != c.mx {
			t.Errorf("from %q: MX query %v, want %v", c.sender, mx, c.mx)
		}
		m1, m2 := srv["127.0.0.1"].Messages(), srv["127.0.0.2"].Messages()
		got := m1[n1:]
		if c.server == "127.0.0.2" {
			got = m2[n2:]
		}
		if len(m1)+len(m2) != n1+n2+1 || len(got) != 1 || got[0].From != "MAIL FROM:<"+c.sender+">" {
			t.Errorf("from %q: %+v at %s", c.sender, got, c.server)
		}
	}
	// smtproutes' route for the destination does not count for alice.
	h.control("smtproutes", "example.test:[127.0.0.1]:"+port+"\n")
	h.run(sample, "example.test", "alice@example.org", rcpt).expect(t, 'K', "127.0.0.2 accepted message.", "250 relay")
	h.run(sample, "example.test", "bob@example.org", rcpt).expect(t, 'K', "127.0.0.1 accepted message.", "250 mx")
	// An exception under a wider key: smtproutes decides.
	h.control("senderroutes", ".example.org:relay.example.test:"+port+"\nnoreply@a.example.org:\n")
	h.run(sample, "example.test", "x@a.example.org", rcpt).expect(t, 'K', "127.0.0.2 accepted message.")
	h.run(sample, "example.test", "noreply@a.example.org", rcpt).expect(t, 'K', "127.0.0.1 accepted message.")
	h.run(sample, "example.test", "x@example.org", rcpt).expect(t, 'K', "127.0.0.1 accepted message.")
	// A malformed senderroutes: every delivery waits.
	h.control("senderroutes", "alice@example.org:relay.example.test:"+port+"\nalice@example.org:other.test\n")
	for _, s := range []string{"alice@example.org", "bob@example.org", ""} {
		h.run(sample, "example.test", s, rcpt).expect(t, 'Z',
			"Unable to read control files: control/senderroutes line 2: sender <alice@example.org> already has a route, on line 1. (#4.3.0)")
	}
}

// Two senders with their own credentials at one relay, and a third with
// the relay's own: the server sees each one's AUTH user, and a sender's
// password goes with its user only.
func TestSenderCredentials(t *testing.T) {
	const (
		aliceUser, alicePass = "alice-user", "Al1ce:pw"
		netUser, netPass     = "net-user", "N3t pw"
	)
	creds := func(port string) string {
		return "<alice@example.org>:smtp.example.test:" + port + ":starttls:" + aliceUser + ":" + alicePass + "\n" +
			"# the domain's account\n<@example.net>:smtp.example.test:" + port + ":starttls:" + netUser + ":" + netPass + "\n" +
			"smtp.example.test:" + port + ":starttls:" + subUser + ":" + subPass + "\n"
	}
	secrets := []string{alicePass, netPass, subPass, subPass64}
	noSecrets := func(t *testing.T, w *authWorld, res result) {
		t.Helper()
		files, _ := filepath.Glob(w.dumps + ".*")
		if len(files) == 0 {
			t.Error("no stage dumped its environment")
		}
		texts := []string{string(res.raw)}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			texts = append(texts, string(b))
		}
		for _, s := range secrets {
			for _, text := range texts {
				if strings.Contains(text, s) {
					t.Errorf("a password is in the output or a stage's environment: %q", text)
				}
			}
		}
		if w.srv["127.0.0.1"].PasswordInCleartext() {
			t.Error("a password before TLS")
		}
	}
	for _, tc := range []struct {
		name, user, pass string
	}{
		{"alice", aliceUser, alicePass},
		{"example.net", netUser, netPass},
		{"relay", subUser, subPass},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newAuthWorld(t, submission(t, smtptest.Script{AuthUser: tc.user, AuthPassword: tc.pass}))
			w.smtpauth(t, creds(w.port))
			for _, c := range []struct{ sender, user string }{
				{"alice@example.org", aliceUser},
				{"ALICE@example.org", aliceUser},
				{"bob@example.net", netUser},
				{"carol@other.test", subUser},
				{"bob@example.org", subUser},
			} {
				before := len(w.srv["127.0.0.1"].AuthAttempts())
				n := len(w.srv["127.0.0.1"].Messages())
				res := w.h.run(sample, "example.test", c.sender, rcpt)
				noSecrets(t, w, res)
				a := w.srv["127.0.0.1"].AuthAttempts()[before:]
				if len(a) != 1 || a[0].User != c.user || a[0].OK != (c.user == tc.user) || !a[0].TLS {
					t.Errorf("from %q: AUTH %+v, want one as %s", c.sender, a, c.user)
				}
				if c.user != tc.user {
					res.expect(t, 'Z', "AUTH PLAIN as "+c.user+" failed; check control/smtpauth.", "535 5.7.8")
					continue
				}
				res.expect(t, 'K', "127.0.0.1 accepted message.", "Authenticated as "+c.user+".\n")
				m := w.srv["127.0.0.1"].Messages()[n:]
				if len(m) != 1 || !m[0].Done || m[0].AuthUser != c.user || m[0].From != "MAIL FROM:<"+c.sender+">" {
					t.Errorf("from %q: server got %+v", c.sender, m)
				}
			}
		})
	}
}

// A sender's credentials gone between the routes stage and the session
// are never replaced by the relay's own: shown by removing them in a
// stage run before qmail-remote-io (the dumping scripts' place).
func TestSenderCredentialsGone(t *testing.T) {
	w := newAuthWorld(t, submission(t, smtptest.Script{}))
	relayOnly := "smtp.example.test:" + w.port + ":starttls:" + subUser + ":" + subPass + "\n"
	w.smtpauth(t, "<@example.org>:smtp.example.test:"+w.port+":starttls:org-user:org-pw\n"+relayOnly)
	// qmail-remote-connect's script rewrites control/smtpauth first.
	p := filepath.Join(w.h.libx, "qmail-remote-connect")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	auth := filepath.Join(w.h.dir, "control", "smtpauth")
	script := strings.Replace(string(b), "\nexec ", "\nprintf '%s' '"+relayOnly+"' >'"+auth+"'\nexec ", 1)
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	res := w.h.run(sample, "example.test", "alice@example.org", rcpt)
	res.expect(t, 'Z', "Unable to read control files: control/smtpauth has no credentials for <@example.org> at smtp.example.test:"+w.port+" any more. (#4.3.0)")
	if n, mail := w.delivered(); n != 0 || mail || w.attempts() != 0 {
		t.Errorf("AUTH or MAIL sent: %d delivered, MAIL %v, %d AUTH", n, mail, w.attempts())
	}
}

// A bounce routed by a "<>" line, and only by it: a double bounce, and
// mail from senders at any domain, follow smtproutes.
func TestBounceRoute(t *testing.T) {
	a := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{AfterDot: "250 bounces"})
	b := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{AfterDot: "250 normal"})
	h := newHome(t)
	h.control("smtproutes", "example.test:[127.0.0.1]:"+b.Port+"\n")
	h.control("senderroutes", "<>:[127.0.0.1]:"+a.Port+"\n.test:[127.0.0.1]:"+b.Port+"\n")
	for _, c := range []struct{ sender, want string }{
		{"", "250 bounces"},
		{"#@[]", "250 normal"},
		{"a@client.example.test", "250 normal"},
	} {
		h.run(sample, "example.test", c.sender, rcpt).expect(t, 'K', c.want)
	}
	if m := a.Messages(); len(m) != 1 || m[0].From != "MAIL FROM:<>" {
		t.Errorf("bounce server got %+v", m)
	}
	if m := b.Messages(); len(m) != 2 || m[0].From != "MAIL FROM:<#@[]>" {
		t.Errorf("other server got %+v", m)
	}
	// A double bounce by its own line.
	h.control("senderroutes", "<>:[127.0.0.1]:"+b.Port+"\n<#@[]>:[127.0.0.1]:"+a.Port+"\n")
	h.run(sample, "example.test", "#@[]", rcpt).expect(t, 'K', "250 bounces")
	h.run(sample, "example.test", "", rcpt).expect(t, 'K', "250 normal")
}

// peerRecorder accepts connections on a loopback address, notes where
// each came from, and passes it on to a test SMTP server (smtptest does
// not tell the peer's address).
type peerRecorder struct {
	Port  string
	mu    sync.Mutex
	peers []netip.Addr
}

func recordPeers(t *testing.T, listen string, to *smtptest.Server) *peerRecorder {
	t.Helper()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	p := &peerRecorder{Port: port}
	var wg sync.WaitGroup
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		p.mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", to.Addr)
			p.mu.Lock()
			p.peers = append(p.peers, c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap())
			conns = append(conns, c)
			if err == nil {
				conns = append(conns, up)
			}
			p.mu.Unlock()
			if err != nil {
				c.Close()
				continue
			}
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(up, c); up.(*net.TCPConn).CloseWrite() }()
			go func() { defer wg.Done(); io.Copy(c, up); c.Close() }()
		}
	}()
	return p
}

// Peers returns the source addresses of the connections so far, and
// forgets them.
func (p *peerRecorder) Peers() []netip.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.peers
	p.peers = nil
	return r
}

func (p *peerRecorder) expect(t *testing.T, want ...string) {
	t.Helper()
	got := p.Peers()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		ok = got[i].String() == want[i]
	}
	if !ok {
		t.Errorf("connections from %v, want %v", got, want)
	}
}

// control/outgoingip: the connection comes from the address it gives for
// the family, per destination and sender; without it, from the address
// the kernel chooses (127.0.0.1 to 127.0.0.1).
func TestOutgoingIP(t *testing.T) {
	srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{})
	p := recordPeers(t, "127.0.0.1:0", srv)
	h := newHome(t)
	h.control("smtproutes", "example.test:[127.0.0.1]:"+p.Port+"\nother.test:[127.0.0.1]:"+p.Port+"\n")

	h.run(sample, "example.test", "a@client.example.test", rcpt).expect(t, 'K', "127.0.0.1 accepted message.")
	p.expect(t, "127.0.0.1")

	h.control("outgoingip", "127.0.0.2\n")
	h.run(sample, "example.test", "a@client.example.test", rcpt).expect(t, 'K', "127.0.0.1 accepted message.")
	p.expect(t, "127.0.0.2")

	// Destination before sender before the default.
	h.control("outgoingip", "# sources\n127.0.0.2\n<@client.example.test>:127.0.0.3\nexample.test:127.0.0.4\n")
	h.run(sample, "example.test", "a@client.example.test", rcpt).expect(t, 'K')
	h.run(sample, "other.test", "a@client.example.test", rcpt).expect(t, 'K')
	h.run(sample, "other.test", "a@elsewhere.test", rcpt).expect(t, 'K')
	h.run(sample, "other.test", "", rcpt).expect(t, 'K')
	p.expect(t, "127.0.0.4", "127.0.0.3", "127.0.0.2", "127.0.0.2")

	// An IPv6 line only: IPv4 is the kernel's choice.
	h.control("outgoingip", "2001:db8::10\n")
	h.run(sample, "example.test", "a@client.example.test", rcpt).expect(t, 'K')
	p.expect(t, "127.0.0.1")

	// Without the file again: the kernel chooses.
	h.removeControl("outgoingip")
	h.run(sample, "example.test", "a@client.example.test", rcpt).expect(t, 'K')
	p.expect(t, "127.0.0.1")

	// Malformed: the mail waits, no connection.
	h.control("outgoingip", "127.0.0.2\n0.0.0.0\n")
	h.run(sample, "example.test", "a@client.example.test", rcpt).expect(t, 'Z',
		"Unable to read control files: control/outgoingip line 2: \"0.0.0.0\" is the unspecified address; leave the family out to let the kernel choose. (#4.3.0)")
	p.expect(t)
}

// runSeparate runs qmail-remote as h.run does, but with stdout and stderr
// apart, and returns them with the exit status.
func runSeparate(t *testing.T, h *home, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	msg := filepath.Join(t.TempDir(), "msg")
	if err := os.WriteFile(msg, []byte(sample), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(msg)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60e9)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "qmail-remote"), args...)
	cmd.Stdin = f
	cmd.Env = append([]string{"PATH=/usr/bin:/bin", "QMAILREMOTE_QMAILHOME=" + h.dir, "QMAILREMOTE_LIBEXECDIR=" + h.libx}, h.env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	if ctx.Err() != nil {
		t.Fatal("qmail-remote did not finish")
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// An address that is not this host's: the delivery stops at once with one
// Z, never a connection from another address.
func TestOutgoingIPNotHere(t *testing.T) {
	for _, a := range []string{"192.0.2.10", "2001:db8::10"} {
		if ln, err := net.Listen("tcp", net.JoinHostPort(a, "0")); err == nil {
			ln.Close()
			t.Skipf("%s is an address of this host", a)
		}
	}
	srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{})
	h := newHome(t)
	h.control("smtproutes", "example.test:[127.0.0.1]:"+srv.Port+"\n")
	h.control("outgoingip", "192.0.2.10\n")
	out, errs, code := runSeparate(t, h, "example.test", "a@client.example.test", rcpt)
	want := "ZUnable to connect to 127.0.0.1 from the address control/outgoingip gives: 192.0.2.10 is not an address of this host. (#4.3.0)\n\x00"
	if out != want || errs != "" || code != 0 {
		t.Errorf("exit %d, stdout %q, stderr %q; want exit 0, stdout %q", code, out, errs, want)
	}
	if srv.Conns() != 0 {
		t.Errorf("%d connections", srv.Conns())
	}
	// Both MX of a destination: the first bind failure stops it.
	port, two := servers(t, nil, "127.0.0.1", "127.0.0.2")
	h2, d := dnsHome(t, port)
	d.Add("example.test. 60 IN MX 10 mx1.example.test.", "example.test. 60 IN MX 20 mx2.example.test.",
		"mx1.example.test. 60 IN A 127.0.0.1", "mx2.example.test. 60 IN A 127.0.0.2")
	h2.control("outgoingip", "example.test:192.0.2.10\n")
	h2.run(sample, "example.test", "a@client.example.test", rcpt).expect(t, 'Z',
		"Unable to connect to 127.0.0.1 from the address control/outgoingip gives: 192.0.2.10 is not an address of this host. (#4.3.0)")
	if n := two["127.0.0.1"].Conns() + two["127.0.0.2"].Conns(); n != 0 {
		t.Errorf("%d connections", n)
	}
	// No tcpto record: the next delivery without the setting goes out.
	h2.removeControl("outgoingip")
	h2.run(sample, "example.test", "a@client.example.test", rcpt).expect(t, 'K', "127.0.0.1 accepted message.")
}

// IPv6: outgoingip's IPv6 address for a server on [::1]; the IPv4 line
// does not apply to it.
func TestOutgoingIPv6(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	ln.Close()
	srv := smtptest.Start(t, "[::1]:0", smtptest.Script{})
	p := recordPeers(t, "[::1]:0", srv)
	h := newHome(t)
	h.control("smtproutes", "example.test:[::1]:"+p.Port+"\n")
	for _, text := range []string{"::1\n", "[::1]\n", "example.test:::1\n127.0.0.2\n", "<@client.example.test>:[::1]\n192.0.2.10\n"} {
		h.control("outgoingip", text)
		h.run(sample, "example.test", "a@client.example.test", rcpt).expect(t, 'K', "::1 accepted message.")
		p.expect(t, "::1")
	}
	h.control("outgoingip", "127.0.0.2\n2001:db8::10\n")
	h.run(sample, "example.test", "a@client.example.test", rcpt).expect(t, 'Z',
		"Unable to connect to ::1 from the address control/outgoingip gives: 2001:db8::10 is not an address of this host. (#4.3.0)")
	p.expect(t)
}
