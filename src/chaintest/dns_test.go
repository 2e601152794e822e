package chaintest

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"

	"qmail-remote-go/src/testkit/dnstest"
	"qmail-remote-go/src/testkit/smtptest"
)

// dnsHome is a qmail home whose resolver is a dnstest server and whose
// deliveries by MX go to port (smtproutes "::port": MX as usual, on port).
func dnsHome(t *testing.T, port string) (*home, *dnstest.Server) {
	h := newHome(t)
	d := dnstest.Start(t)
	h.env = append(h.env, "DNSCACHEIP="+d.Addr())
	h.control("smtproutes", "::"+port+"\n")
	return h, d
}

// servers starts test SMTP servers on the same port at each address.
func servers(t *testing.T, scripts map[string]smtptest.Script, addrs ...string) (string, map[string]*smtptest.Server) {
	t.Helper()
	return smtptest.StartSamePort(t, scripts, addrs...)
}

const rcpt = "b@example.test"

func TestMXDelivery(t *testing.T) {
	port, srv := servers(t, nil, "127.0.0.1")
	h, d := dnsHome(t, port)
	d.Add("example.test. 60 IN MX 10 mx1.example.test.", "mx1.example.test. 60 IN A 127.0.0.1")
	h.run(sample, "example.test", "a@client.example.test", rcpt).expect(t, 'K', "127.0.0.1 accepted message.")
	if m := srv["127.0.0.1"].Messages(); len(m) != 1 || string(m[0].Data) != "" && !m[0].Done {
		t.Errorf("server got %+v", m)
	}
}

func TestMXDeliveryV6(t *testing.T) {
	port, srv := servers(t, nil, "::1")
	h, d := dnsHome(t, port)
	d.Add("example.test. 60 IN MX 10 mx6.example.test.", "mx6.example.test. 60 IN AAAA ::1")
	h.run(sample, "example.test", "a@client.example.test", rcpt).expect(t, 'K', "::1 accepted message.")
	if len(srv["::1"].Messages()) != 1 {
		t.Error("nothing delivered over IPv6")
	}
}

func TestMXFallback(t *testing.T) {
	port, srv := servers(t, map[string]smtptest.Script{"127.0.0.2": {Greeting: "421 busy"}}, "127.0.0.1", "127.0.0.2")
	h, d := dnsHome(t, port)
	d.Add("example.test. 60 IN MX 10 mx1.example.test.", "example.test. 60 IN MX 20 mx2.example.test.",
		"mx1.example.test. 60 IN A 127.0.0.2", "mx2.example.test. 60 IN A 127.0.0.1")
	h.run(sample, "example.test", "a@b", rcpt).expect(t, 'K', "127.0.0.1 accepted")
	if srv["127.0.0.2"].Conns() != 1 {
		t.Error("the best MX was not tried first")
	}
	// Both refuse: Z naming the last reason.
	d.Add("other.test. 60 IN MX 10 mx1.example.test.", "other.test. 60 IN MX 20 mx3.example.test.",
		"mx3.example.test. 60 IN A 127.0.0.3") // nothing listens there
	h.run(sample, "other.test", "a@b", rcpt).expect(t, 'Z', "Sorry, I wasn't able to establish an SMTP connection. (#4.4.1)", "127.0.0.3")
}

func TestImplicitMX(t *testing.T) {
	port, _ := servers(t, nil, "127.0.0.1")
	h, d := dnsHome(t, port)
	d.Add("example.test. 60 IN A 127.0.0.1", "example.test. 60 IN TXT \"no mx here\"")
	h.run(sample, "example.test", "a@b", rcpt).expect(t, 'K', "127.0.0.1 accepted")
}

func TestDNSOutcomes(t *testing.T) {
	port, srv := servers(t, nil, "127.0.0.1")
	tests := []struct {
		name   string
		setup  func(d *dnstest.Server)
		host   string
		letter byte
		want   string
	}{
		{"NXDOMAIN", func(d *dnstest.Server) {}, "nosuch.example.test", 'D', "Sorry, I couldn't find any host named nosuch.example.test. (#5.1.2)"},
		{"SERVFAIL", func(d *dnstest.Server) { d.Fail("example.test.", dns.TypeMX, dns.RcodeServerFailure) }, "example.test", 'Z',
			"Sorry, I couldn't find any host by that name. (#4.1.2)"},
		{"null MX", func(d *dnstest.Server) { d.Add("example.test. 60 IN MX 0 .") }, "example.test", 'D', "(#5.1.10)"},
		{"MX to nowhere", func(d *dnstest.Server) { d.Add("example.test. 60 IN MX 10 gone.example.test.") }, "example.test", 'D',
			"Sorry, I couldn't find a mail exchanger or IP address. (#5.4.4)"},
		{"MX target fails temporarily", func(d *dnstest.Server) {
			d.Add("example.test. 60 IN MX 10 mx1.example.test.", "mx1.example.test. 60 IN A 127.0.0.1")
			d.Fail("mx1.example.test.", dnstest.AnyType, dns.RcodeServerFailure)
		}, "example.test", 'Z', "(#4.1.2)"},
		{"one MX target fails, the other works", func(d *dnstest.Server) {
			d.Add("example.test. 60 IN MX 10 mx1.example.test.", "example.test. 60 IN MX 20 mx2.example.test.",
				"mx1.example.test. 60 IN A 192.0.2.1", "mx2.example.test. 60 IN A 127.0.0.1")
			d.Fail("mx1.example.test.", dnstest.AnyType, dns.RcodeServerFailure)
		}, "example.test", 'K', "127.0.0.1 accepted"},
		{"truncated answer, TCP retry", func(d *dnstest.Server) {
			d.Add("example.test. 60 IN MX 10 mx1.example.test.", "mx1.example.test. 60 IN A 127.0.0.1")
			d.Truncate("example.test.", dns.TypeMX)
		}, "example.test", 'K', "127.0.0.1 accepted"},
		{"CNAME to the MX host", func(d *dnstest.Server) {
			d.Add("example.test. 60 IN MX 10 alias.example.test.", "alias.example.test. 60 IN CNAME mx1.example.test.",
				"mx1.example.test. 60 IN A 127.0.0.1")
		}, "example.test", 'K', "127.0.0.1 accepted"},
		{"garbage answer", func(d *dnstest.Server) { d.Garbage("example.test.", dns.TypeMX) }, "example.test", 'Z', "(#4.1.2)"},
		{"best MX is me", func(d *dnstest.Server) {
			d.Add("example.test. 60 IN MX 10 me.example.test.", "me.example.test. 60 IN A 127.0.0.9")
		}, "example.test", 'D', "Although I'm listed as a best-preference MX or A for that host,\nit isn't in my control/locals file, so I don't treat it as local. (#5.4.6)"},
		{"second MX is me", func(d *dnstest.Server) {
			d.Add("example.test. 60 IN MX 10 mx1.example.test.", "example.test. 60 IN MX 20 me.example.test.",
				"mx1.example.test. 60 IN A 127.0.0.1", "me.example.test. 60 IN A 127.0.0.9")
		}, "example.test", 'K', "127.0.0.1 accepted"},
		{"address literal", func(d *dnstest.Server) {}, "[127.0.0.1]", 'K', "127.0.0.1 accepted"},
		{"IPv6 address literal", func(d *dnstest.Server) {}, "[IPv6:::1]", 'K', "::1 accepted"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, d := dnsHome(t, port)
			h.control("ipme", "127.0.0.9\n") // what control/ipme adds counts as me
			if tc.name == "IPv6 address literal" {
				s6 := smtptest.Start(t, "[::1]:0", smtptest.Script{})
				h.control("smtproutes", "::"+s6.Port+"\n")
			}
			tc.setup(d)
			before := srv["127.0.0.1"].Conns()
			res := h.run(sample, tc.host, "a@b", rcpt)
			res.expect(t, tc.letter, tc.want)
			if tc.letter != 'K' && srv["127.0.0.1"].Conns() != before {
				t.Error("connected although DNS said no")
			}
		})
	}
}

// timeoutdns ends a DNS phase that would otherwise last 16 query timeouts
// (slowDNS): the report says so, and the number of MX queries shows that
// the lookup was cut short (cutShort), with no clock in the test.
func TestTimeoutDNS(t *testing.T) {
	port, _ := servers(t, nil, "127.0.0.1")
	h, d := dnsHome(t, port)
	h.control("timeoutdns", "1\n")
	slowDNS(h, d)
	d.Add("example.test. 60 IN MX 10 mx1.example.test.", "mx1.example.test. 60 IN A 127.0.0.1")
	d.Drop("example.test.", dns.TypeMX)
	res := h.run(sample, "example.test", "a@b", rcpt)
	res.expect(t, 'Z', "(#4.1.2)", "DNS lookups took longer than timeoutdns (1 s)")
	cutShort(t, d, "example.test", dns.TypeMX)
}

// tcptoRecord builds one stock qmail tcpto record (qmail-tcpto(8)).
func tcptoRecord(ip [4]byte, errs byte, when time.Time) []byte {
	r := make([]byte, 16)
	copy(r, ip[:])
	r[4] = errs
	binary.LittleEndian.PutUint32(r[8:], uint32(when.Unix()))
	return r
}

func TestTcpto(t *testing.T) {
	port, srv := servers(t, nil, "127.0.0.1", "127.0.0.2")
	h, d := dnsHome(t, port)
	d.Add("example.test. 60 IN MX 10 mx1.example.test.", "example.test. 60 IN MX 20 mx2.example.test.",
		"mx1.example.test. 60 IN A 127.0.0.2", "mx2.example.test. 60 IN A 127.0.0.1")
	file := filepath.Join(h.dir, "queue/lock/tcpto")
	// Two recent timeouts for 127.0.0.2: skipped.
	os.WriteFile(file, tcptoRecord([4]byte{127, 0, 0, 2}, 2, time.Now()), 0o644)
	h.run(sample, "example.test", "a@b", rcpt).expect(t, 'K', "127.0.0.1 accepted")
	if srv["127.0.0.2"].Conns() != 0 {
		t.Error("tcpto did not skip 127.0.0.2")
	}
	// Old timeouts: tried again, and the success clears the record.
	os.WriteFile(file, tcptoRecord([4]byte{127, 0, 0, 2}, 2, time.Now().Add(-3*time.Hour)), 0o644)
	h.run(sample, "example.test", "a@b", rcpt).expect(t, 'K', "127.0.0.2 accepted")
	if b, _ := os.ReadFile(file); len(b) != 16 || b[4] != 0 {
		t.Errorf("tcpto record not cleared after a successful connect: % x", b)
	}
	// A corrupt tcpto file never stops a delivery.
	os.WriteFile(file, []byte("garbage, not a tcpto file"), 0o644)
	h.run(sample, "example.test", "a@b", rcpt).expect(t, 'K')
}

func TestRoutes(t *testing.T) {
	a := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{AfterDot: "250 a"})
	b := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{AfterDot: "250 b"})
	h, d := dnsHome(t, "25")
	d.Add("relay.example.test. 60 IN A 127.0.0.1", "relay.example.test. 60 IN MX 10 wrong.example.test.")
	tests := []struct{ routes, host, want string }{
		{"example.test:[127.0.0.1]:" + a.Port + "\n:[127.0.0.1]:" + b.Port + "\n", "example.test", "250 a"},
		{"example.test:[127.0.0.1]:" + a.Port + "\n:[127.0.0.1]:" + b.Port + "\n", "other.test", "250 b"},
		{".example.test:[127.0.0.1]:" + a.Port + "\n:[127.0.0.1]:" + b.Port + "\n", "sub.example.test", "250 a"},
		{".example.test:[127.0.0.1]:" + a.Port + "\n:[127.0.0.1]:" + b.Port + "\n", "example.test", "250 b"},
		{"EXAMPLE.test:relay.example.test:" + b.Port + "\n", "Example.TEST", "250 b"},
		{"[127.0.0.1]::" + a.Port + "\n", "[127.0.0.1]", "250 a"},
		{"x.test:[127.0.0.1]:" + a.Port + "\n:[127.0.0.1]:" + b.Port + "\n", "[127.0.0.1]", "250 b"},
	}
	for _, tc := range tests {
		h.control("smtproutes", tc.routes)
		before := len(d.Queries())
		h.run(sample, tc.host, "a@b", rcpt).expect(t, 'K', tc.want)
		for _, q := range d.Queries()[before:] {
			if q.Type == dns.TypeMX {
				t.Errorf("routes %q host %s: an MX query was made: %v", tc.routes, tc.host, q)
			}
		}
	}
	// Recompilation: two edits of the same size right after each other.
	h.control("smtproutes", "example.test:[127.0.0.1]:"+a.Port+"\n")
	h.run(sample, "example.test", "a@b", rcpt).expect(t, 'K', "250 a")
	h.control("smtproutes", "example.test:[127.0.0.1]:"+b.Port+"\n")
	h.run(sample, "example.test", "a@b", rcpt).expect(t, 'K', "250 b")
	// A corrupt cdb is recompiled, never trusted.
	os.WriteFile(filepath.Join(h.dir, "run/qmail-remote/smtproutes.cdb"), []byte("corrupt cdb"), 0o644)
	h.run(sample, "example.test", "a@b", rcpt).expect(t, 'K', "250 b")
	// Deleting smtproutes removes the routes: MX lookup of example.test.
	h.removeControl("smtproutes")
	h.run(sample, "example.test", "a@b", rcpt).expect(t, 'D', "couldn't find any host named example.test")
}

// Like stock, this host's interface addresses count as me: without
// control/notipme, an MX pointing at 127.0.0.1 is a mail loop.
func TestInterfaceAddressesAreMe(t *testing.T) {
	port, srv := servers(t, nil, "127.0.0.1")
	h, d := dnsHome(t, port)
	h.removeControl("notipme")
	d.Add("example.test. 60 IN MX 10 mx1.example.test.", "mx1.example.test. 60 IN A 127.0.0.1")
	h.run(sample, "example.test", "a@b", rcpt).expect(t, 'D', "(#5.4.6)")
	if srv["127.0.0.1"].Conns() != 0 {
		t.Error("connected to myself")
	}
	// A route to a local address is the admin's choice (content filters
	// on 127.0.0.1): allowed, as in stock.
	h.control("smtproutes", "example.test:[127.0.0.1]:"+port+"\n")
	h.run(sample, "example.test", "a@b", rcpt).expect(t, 'K')
}
