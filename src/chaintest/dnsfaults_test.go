package chaintest

import (
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"qmail-remote-go/src/internal/dnstest"
	"qmail-remote-go/src/internal/smtptest"
)

// Issue 6, point 5, through the real chain: the DNS faults dns_test.go
// does not already cover (doc/dnsfaults.md has the whole table). Each
// ends in the report SPEC 5 asks for, and a fault never sends the mail
// where it should not go: a second server on 127.0.0.2 stands where the
// misplaced records point, and must see no connection.

func dnsReply(req *dns.Msg, answer ...string) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	for _, a := range answer {
		r, err := dns.NewRR(a)
		if err != nil {
			panic(err)
		}
		m.Answer = append(m.Answer, r)
	}
	return m
}

func TestDNSFaults(t *testing.T) {
	port, srv := servers(t, nil, "127.0.0.1", "127.0.0.2")
	good, trap := srv["127.0.0.1"], srv["127.0.0.2"]
	twoMX := func(d *dnstest.Server) {
		d.Add("example.test. 60 IN MX 10 mx1.example.test.", "example.test. 60 IN MX 20 mx2.example.test.",
			"mx1.example.test. 60 IN A 127.0.0.3", "mx2.example.test. 60 IN A 127.0.0.1")
	}
	tests := []struct {
		name       string
		timeoutdns string
		setup      func(d *dnstest.Server)
		letter     byte
		want       string
	}{
		{"REFUSED", "", func(d *dnstest.Server) {
			twoMX(d)
			d.Fail("example.test.", dns.TypeMX, dns.RcodeRefused)
		}, 'Z', "(#4.1.2)\nexample.test MX: REFUSED from"},
		{"answer to another question", "", func(d *dnstest.Server) {
			twoMX(d)
			d.Custom("example.test.", dns.TypeMX, func(req *dns.Msg) *dns.Msg {
				m := dnsReply(req, "other.test. 60 IN MX 1 trap.example.test.")
				m.Question[0].Name = "other.test."
				return m
			})
			d.Add("trap.example.test. 60 IN A 127.0.0.2")
		}, 'Z', "to another question"},
		{"not a response", "", func(d *dnstest.Server) {
			twoMX(d)
			d.Custom("example.test.", dns.TypeMX, func(req *dns.Msg) *dns.Msg {
				m := dnsReply(req, "example.test. 60 IN MX 1 trap.example.test.")
				m.Response = false
				return m
			})
			d.Add("trap.example.test. 60 IN A 127.0.0.2")
		}, 'Z', "not a query response"},
		{"CNAME loop", "", func(d *dnstest.Server) {
			d.Add("example.test. 60 IN CNAME loop.example.test.", "loop.example.test. 60 IN CNAME example.test.")
		}, 'Z', "CNAME loop"},
		{"CNAME chain", "", func(d *dnstest.Server) {
			d.Add("example.test. 60 IN CNAME c1.example.test.", "c1.example.test. 60 IN CNAME c2.example.test.",
				"c2.example.test. 60 IN MX 10 alias.example.test.",
				"alias.example.test. 60 IN CNAME c3.example.test.", "c3.example.test. 60 IN A 127.0.0.1")
			d.ChaseCNAME(false) // the client follows every link itself
		}, 'K', "127.0.0.1 accepted"},
		{"truncated address answer", "", func(d *dnstest.Server) {
			twoMX(d)
			d.Truncate("mx2.example.test.", dns.TypeA)
		}, 'K', "127.0.0.1 accepted"},
		{"NXDOMAIN for the best MX host", "", func(d *dnstest.Server) {
			twoMX(d)
			d.Fail("mx1.example.test.", dnstest.AnyType, dns.RcodeNameError)
		}, 'K', "127.0.0.1 accepted"},
		{"garbage for the best MX host", "", func(d *dnstest.Server) {
			twoMX(d)
			d.Garbage("mx1.example.test.", dnstest.AnyType)
		}, 'K', "127.0.0.1 accepted"},
		{"REFUSED for the best MX host", "", func(d *dnstest.Server) {
			twoMX(d)
			d.Fail("mx1.example.test.", dnstest.AnyType, dns.RcodeRefused)
		}, 'K', "127.0.0.1 accepted"},
		// Without timeoutdns the dropped lookup would take resolv.conf's
		// timeout times its attempts; timeoutdns ends it, and the other
		// MX host, already found, takes the mail.
		{"best MX host never answered", "1", func(d *dnstest.Server) {
			twoMX(d)
			d.Drop("mx1.example.test.", dnstest.AnyType)
		}, 'K', "127.0.0.1 accepted"},
		{"records of the wrong type, owner or class", "", func(d *dnstest.Server) {
			d.Add("trap.example.test. 60 IN A 127.0.0.2", "mx.example.test. 60 IN A 127.0.0.1")
			d.Custom("example.test.", dns.TypeMX, func(req *dns.Msg) *dns.Msg {
				m := dnsReply(req, "example.test. 60 IN A 127.0.0.2",
					"other.test. 60 IN MX 1 trap.example.test.",
					"example.test. 60 IN MX 10 mx.example.test.")
				ch, _ := dns.NewRR("example.test. 60 IN MX 1 trap.example.test.")
				ch.Header().Class = dns.ClassCHAOS
				m.Answer = append(m.Answer, ch)
				return m
			})
			d.Custom("mx.example.test.", dns.TypeAAAA, func(req *dns.Msg) *dns.Msg {
				return dnsReply(req, "mx.example.test. 60 IN A 127.0.0.2", "trap.example.test. 60 IN AAAA ::1")
			})
		}, 'K', "127.0.0.1 accepted"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, d := dnsHome(t, port)
			if tc.timeoutdns != "" {
				h.control("timeoutdns", tc.timeoutdns+"\n")
			}
			tc.setup(d)
			before, trapped := good.Conns(), trap.Conns()
			res := h.run(sample, "example.test", "a@b", rcpt)
			res.expect(t, tc.letter, tc.want)
			if tc.letter != 'K' && good.Conns() != before {
				t.Error("connected although DNS failed")
			}
			if trap.Conns() != trapped {
				t.Error("connected to an address only a bogus answer named")
			}
			if res.elapsed > 5*time.Second {
				t.Errorf("took %v", res.elapsed)
			}
		})
	}
}

// 50 MX hosts, 49 of them refusing connections (nothing listens on their
// loopback address), the worst one taking the mail: the chain looks all of
// them up at once and walks them in preference order. When every one
// refuses, the Z names the last reason and stays within one report
// (4096 bytes).
func TestFiftyMXChain(t *testing.T) {
	port, srv := servers(t, nil, "127.0.0.1")
	for _, last := range []string{"127.0.0.1", "127.0.1.50"} {
		h, d := dnsHome(t, port)
		for i := range 49 {
			d.Add(fmt.Sprintf("example.test. 60 IN MX %d mx%02d.example.test.", 10*(i/5+1), i),
				fmt.Sprintf("mx%02d.example.test. 60 IN A 127.0.1.%d", i, i+1))
		}
		d.Add("example.test. 60 IN MX 1000 mx49.example.test.", "mx49.example.test. 60 IN A "+last)
		before := srv["127.0.0.1"].Conns()
		res := h.run(sample, "example.test", "a@b", rcpt)
		if last == "127.0.0.1" {
			res.expect(t, 'K', "127.0.0.1 accepted")
			if srv["127.0.0.1"].Conns() != before+1 {
				t.Error("the worst MX was not reached exactly once")
			}
		} else {
			res.expect(t, 'Z', "(#4.4.1)", "127.0.1.50")
			if len(res.raw) > 4096 {
				t.Errorf("report of %d bytes", len(res.raw))
			}
		}
		if n := len(d.Queries()); n > 103 {
			t.Errorf("%d DNS queries for 50 MX hosts, want at most 103", n)
		}
		if res.elapsed > 10*time.Second {
			t.Errorf("50 MX hosts took %v", res.elapsed)
		}
	}
}

// The DNS phase of a whole delivery takes two round trips (MX with the
// host's A and AAAA; then A and AAAA of every MX host at once), not one
// per query: with every answer 200 ms late and 3 MX hosts (9 queries),
// from the first query reaching the DNS server to the connection reaching
// the SMTP server, less than 3.5 delays pass (9 in a row would be 1.8 s).
func TestDNSPhaseRoundTrips(t *testing.T) {
	const delay = 200 * time.Millisecond
	port, conns := acceptClock(t)
	h, d := dnsHome(t, port)
	d.Add("example.test. 60 IN MX 10 mx1.example.test.", "example.test. 60 IN MX 20 mx2.example.test.",
		"example.test. 60 IN MX 30 mx3.example.test.",
		"mx1.example.test. 60 IN A 127.0.0.1", "mx2.example.test. 60 IN A 127.0.0.2",
		"mx3.example.test. 60 IN A 127.0.0.3")
	d.Delay(dnstest.AnyName, dnstest.AnyType, delay)
	res := h.run(sample, "example.test", "a@b", rcpt)
	res.expect(t, 'K', "127.0.0.1 accepted")
	q := d.Queries()
	accepted := conns()
	if len(q) < 9 || len(accepted) != 1 {
		t.Fatalf("%d queries %v, %d connections", len(q), q, len(accepted))
	}
	phase := accepted[0].Sub(q[0].Time)
	t.Logf("DNS phase %v for %d queries of %v each (%.2f delays); whole delivery %v",
		phase.Round(time.Millisecond), len(q), delay, float64(phase)/float64(delay), res.elapsed.Round(time.Millisecond))
	if phase < 2*delay || phase >= delay*7/2 {
		t.Errorf("DNS phase took %v with %v per query: want two round trips, at least %v and less than %v",
			phase, delay, 2*delay, delay*7/2)
	}
}

// acceptClock starts a test SMTP server behind a relay on 127.0.0.1 that
// notes when each connection arrives, and returns its port and a function
// giving those times.
func acceptClock(t *testing.T) (string, func() []time.Time) {
	t.Helper()
	srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var times []time.Time
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			times = append(times, time.Now())
			mu.Unlock()
			up, err := net.Dial("tcp", srv.Addr)
			if err != nil {
				c.Close()
				continue
			}
			wg.Add(2)
			// Each direction closes the other's writer when it ends, so
			// both copies return.
			go func() { defer wg.Done(); io.Copy(up, c); up.Close() }()
			go func() { defer wg.Done(); io.Copy(c, up); c.Close() }()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	_, p, _ := net.SplitHostPort(ln.Addr().String())
	return p, func() []time.Time {
		mu.Lock()
		defer mu.Unlock()
		return append([]time.Time(nil), times...)
	}
}
