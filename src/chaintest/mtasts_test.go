package chaintest

import (
	"bytes"
	"crypto/tls"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"qmail-remote-go/src/internal/tlsrpt"
	"qmail-remote-go/src/testkit/dnstest"
	"qmail-remote-go/src/testkit/smtptest"
	"qmail-remote-go/src/testkit/ststest"
	"qmail-remote-go/src/testkit/tlstest"
)

// stsWorld is a qmail home with trust anchors (the test CA) and
// example.test: MX 10 mx1.example.test (127.0.0.1, a certificate for its
// name), MX 20 backup.other.test (127.0.0.2, a certificate for another
// name), a _mta-sts TXT record, and the policy server mta-sts.example.test
// on 127.0.0.3 (an HTTPS server with a certificate from the test CA,
// on the port MTASTSPORT names).
type stsWorld struct {
	h   *home
	dns *dnstest.Server
	srv map[string]*smtptest.Server
	web *ststest.Server
}

func newSTSWorld(t *testing.T, policy string) *stsWorld {
	t.Helper()
	w := &stsWorld{}
	leaf1 := testCA.Issue(t, tlstest.Leaf{DNSNames: []string{"mx1.example.test"}})
	leaf2 := testCA.Issue(t, tlstest.Leaf{DNSNames: []string{"elsewhere.test"}})
	port, srv := servers(t, map[string]smtptest.Script{
		"127.0.0.1": {TLS: &tls.Config{Certificates: []tls.Certificate{leaf1}}},
		"127.0.0.2": {TLS: &tls.Config{Certificates: []tls.Certificate{leaf2}}},
	}, "127.0.0.1", "127.0.0.2")
	w.srv = srv
	h, d := dnsHome(t, port)
	w.h, w.dns = h, d
	d.Add("example.test. 60 IN MX 10 mx1.example.test.", "example.test. 60 IN MX 20 backup.other.test.",
		"mx1.example.test. 60 IN A 127.0.0.1", "backup.other.test. 60 IN A 127.0.0.2",
		"mta-sts.example.test. 60 IN A 127.0.0.3",
		`_mta-sts.example.test. 60 IN TXT "v=STSv1; id=1;"`)
	h.control("trustanchors", tlstest.WriteBundle(t, t.TempDir(), testCA)+"\n")

	w.web = ststest.Start(t, testCA, "127.0.0.3", "example.test", policy)
	h.env = append(h.env, "MTASTSPORT="+w.web.Port)
	return w
}

const enforceMX1 = "version: STSv1\nmode: enforce\nmx: mx1.example.test\nmax_age: 86400\n"

// TestMTASTS: through the whole chain, an enforce policy keeps the mail
// to the MX hosts it names, verified; a cached policy is used without a
// fetch, and still applies when the policy server is gone.
func TestMTASTS(t *testing.T) {
	t.Run("enforce", func(t *testing.T) {
		w := newSTSWorld(t, enforceMX1)
		w.h.run(sample, "example.test", "a@client.example.test", rcpt).expect(t, 'K',
			"127.0.0.1 accepted message.", "certificate verified.")
		// The cached policy: no second fetch for the same id.
		w.h.run(sample, "example.test", "a@client.example.test", rcpt).expect(t, 'K', "127.0.0.1 accepted message.")
		if n := w.web.Fetches.Load(); n != 1 {
			t.Errorf("%d policy fetches, want 1 (then the cache)", n)
		}
		if _, err := os.Stat(filepath.Join(w.h.dir, "run/qmail-remote/mta-sts/example.test")); err != nil {
			t.Errorf("no cached policy: %v", err)
		}
		w.h.expectTLSRPT(t,
			tlsrpt.Record{Domain: "example.test", PolicyType: "sts", PolicyStrings: strings.Split(strings.TrimSpace(enforceMX1), "\n"),
				MXHost: "mx1.example.test", IP: "127.0.0.1", Result: "success"},
			tlsrpt.Record{Domain: "example.test", PolicyType: "sts", PolicyStrings: strings.Split(strings.TrimSpace(enforceMX1), "\n"),
				MXHost: "mx1.example.test", IP: "127.0.0.1", Result: "success"})
	})
	t.Run("enforce, the named host fails: no fallback", func(t *testing.T) {
		// mx1 is named but down (its server closed); backup.other.test
		// takes mail but is not named: the mail waits.
		w := newSTSWorld(t, enforceMX1)
		w.srv["127.0.0.1"].Close()
		w.h.run(sample, "example.test", "a@client.example.test", rcpt).expect(t, 'Z',
			"Sorry, I wasn't able to establish an SMTP connection. (#4.4.1)")
		if m := w.srv["127.0.0.2"].Messages(); len(m) != 0 {
			t.Errorf("backup.other.test, not named by the policy, got %+v", m)
		}
	})
	t.Run("enforce, no MX named", func(t *testing.T) {
		w := newSTSWorld(t, "version: STSv1\nmode: enforce\nmx: *.mail.example.test\nmax_age: 86400\n")
		w.h.run(sample, "example.test", "a@client.example.test", rcpt).expect(t, 'Z',
			"Sorry, no mail exchanger of example.test matches its MTA-STS policy. (#4.7.5)",
			"mx1.example.test: not named by the MTA-STS policy (mx: *.mail.example.test)")
	})
	t.Run("enforce, certificate for another name", func(t *testing.T) {
		w := newSTSWorld(t, "version: STSv1\nmode: enforce\nmx: backup.other.test\nmax_age: 86400\n")
		w.h.run(sample, "example.test", "a@client.example.test", rcpt).expect(t, 'Z',
			"(TLS) Connected to 127.0.0.2 but the TLS handshake failed: the certificate does not match the name backup.other.test")
		if m := w.srv["127.0.0.2"].Messages(); len(m) != 0 {
			t.Errorf("got %+v", m)
		}
	})
	t.Run("testing", func(t *testing.T) {
		// Delivery as usual (mx1 is down, so the backup, whose
		// certificate would fail), the failure only recorded.
		w := newSTSWorld(t, "version: STSv1\nmode: testing\nmx: mx1.example.test\nmax_age: 86400\n")
		w.srv["127.0.0.1"].Close()
		w.h.run(sample, "example.test", "a@client.example.test", rcpt).expect(t, 'K', "127.0.0.2 accepted message.")
		w.h.expectTLSRPT(t,
			tlsrpt.Record{Domain: "example.test", PolicyType: "sts",
				PolicyStrings: []string{"version: STSv1", "mode: testing", "mx: mx1.example.test", "max_age: 86400"},
				MXHost:        "backup.other.test", IP: "127.0.0.2", Result: "certificate-host-mismatch"})
	})
	t.Run("cached enforce survives the policy server", func(t *testing.T) {
		w := newSTSWorld(t, enforceMX1)
		w.h.run(sample, "example.test", "a@client.example.test", rcpt).expect(t, 'K', "127.0.0.1 accepted message.")
		// A new id, and the server now serves garbage: the fetch fails,
		// the cached enforce policy stays.
		w.web.Policy.Store("this is not a policy\n")
		w.dns.Custom("_mta-sts.example.test", dns.TypeTXT, func(req *dns.Msg) *dns.Msg {
			m := new(dns.Msg)
			m.SetReply(req)
			rr, _ := dns.NewRR(`_mta-sts.example.test. 60 IN TXT "v=STSv1; id=2;"`)
			m.Answer = []dns.RR{rr}
			return m
		})
		w.srv["127.0.0.1"].Close()
		w.h.run(sample, "example.test", "a@client.example.test", rcpt).expect(t, 'Z',
			"Sorry, I wasn't able to establish an SMTP connection. (#4.4.1)")
		if m := w.srv["127.0.0.2"].Messages(); len(m) != 0 {
			t.Errorf("backup.other.test, not named by the cached policy, got %+v", m)
		}
		if n := w.web.Fetches.Load(); n != 2 {
			t.Errorf("%d policy fetches, want 2 (the new id)", n)
		}
	})
	t.Run("off", func(t *testing.T) {
		w := newSTSWorld(t, "version: STSv1\nmode: enforce\nmx: *.mail.example.test\nmax_age: 86400\n")
		w.h.control("mtasts", "0\n")
		w.h.run(sample, "example.test", "a@client.example.test", rcpt).expect(t, 'K', "127.0.0.1 accepted message.")
		if n := w.web.Fetches.Load(); n != 0 {
			t.Errorf("control/mtasts is 0, but the policy was fetched %d times", n)
		}
	})
}

// TestMTASTSCost measures (it asserts nothing about time) what MTA-STS
// adds to a delivery whose policy is cached and fresh: pairs of
// deliveries to the same world, control/mtasts 1 then 0, each the CPU
// time (user+system) and wall time of qmail-remote, whose process runs
// the whole chain. Run it by hand:
//
//	BENCH_MTASTS=200 go test -count=1 -v -run TestMTASTSCost ./src/chaintest/
func TestMTASTSCost(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("BENCH_MTASTS"))
	if n <= 0 {
		t.Skip("a measurement, not a test: BENCH_MTASTS=N runs N pairs of deliveries")
	}
	w := newSTSWorld(t, enforceMX1)
	w.h.run(sample, "example.test", "a@client.example.test", rcpt).expect(t, 'K', "127.0.0.1 accepted message.")
	msg := filepath.Join(t.TempDir(), "msg")
	os.WriteFile(msg, []byte(sample), 0o644)
	one := func(on string) (cpu, wall time.Duration) {
		w.h.control("mtasts", on+"\n")
		f, err := os.Open(msg)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		cmd := exec.Command(filepath.Join(bin, "qmail-remote"), "example.test", "a@client.example.test", rcpt)
		cmd.Stdin = f
		cmd.Env = append([]string{"PATH=/usr/bin:/bin", "QMAILREMOTE_QMAILHOME=" + w.h.dir, "QMAILREMOTE_LIBEXECDIR=" + w.h.libx}, w.h.env...)
		start := time.Now()
		out, err := asRspawn(cmd, 60*time.Second)
		wall = time.Since(start)
		if err != nil || !bytes.Contains(out, []byte("K127.0.0.1 accepted message.")) {
			t.Fatalf("control/mtasts %s: %q %v", on, out, err)
		}
		return cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), wall
	}
	var cpuOn, cpuOff, wallOn, wallOff []time.Duration
	for range n {
		c, wl := one("1")
		cpuOn, wallOn = append(cpuOn, c), append(wallOn, wl)
		c, wl = one("0")
		cpuOff, wallOff = append(cpuOff, c), append(wallOff, wl)
	}
	med := func(d []time.Duration) time.Duration { slices.Sort(d); return d[len(d)/2] }
	t.Logf("%d pairs; median CPU: MTA-STS cached %v, off %v; median wall: %v, %v; policy fetches %d",
		n, med(cpuOn), med(cpuOff), med(wallOn), med(wallOff), w.web.Fetches.Load())
}
