package chaintest

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"qmail-remote-go/src/testkit/dnstest"
)

// DNS faults through the real chain: those dns_test.go does not already
// cover (doc/dnsfaults.md has the whole table). Each ends in the report
// doc/qmail-remote-resolve.md gives for it, and a fault never sends the
// mail where it should not go: a second server on 127.0.0.2 stands where
// the misplaced records point, and must see no connection.

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
		// timeout times its attempts, times the 16 servers of
		// slowDNS; timeoutdns ends it after 1 s, and the other MX host,
		// already found, takes the mail (checked by counting mx1's
		// queries below, not by the clock).
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
				slowDNS(h, d)
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
			if tc.timeoutdns != "" {
				cutShort(t, d, "mx1.example.test", dns.TypeA, dns.TypeAAAA)
			}
		})
	}
}

// slowDNS makes the resolver ask d 16 times over (the most DNSCACHEIP may
// list) before it gives up on a question d drops: 16 query timeouts of
// resolv.conf's (1 s at least, 5 s by default), far beyond timeoutdns.
func slowDNS(h *home, d *dnstest.Server) {
	h.env = append(h.env, "DNSCACHEIP="+strings.TrimSpace(strings.Repeat(d.Addr()+" ", 16)))
}

// cutShort checks that timeoutdns (1 s) ended the lookups of name that d
// dropped: each query timeout of the resolver is 1 s at least, so within
// timeoutdns at most a second query of each type can have gone out, where
// the resolver left alone would have sent 16 (slowDNS).
func cutShort(t *testing.T, d *dnstest.Server, name string, types ...uint16) {
	t.Helper()
	for _, qt := range types {
		if n := d.Count(name, qt); n < 1 || n > 2 {
			t.Errorf("%d %s queries for %s, want 1 or 2: timeoutdns did not end the lookup", n, dns.TypeToString[qt], name)
		}
	}
}

// 50 MX hosts, 49 of them refusing connections (nothing listens on their
// loopback address), the worst one taking the mail: the chain looks all of
// them up at once and walks them in preference order. When every one
// refuses, the Z names the last reason and stays within one report
// (4096 bytes). "At once" is proved by the DNS server, which holds the 100
// address answers until all 100 questions have arrived (dnstest.Together):
// one lookup after another would never get the first answer.
func TestFiftyMXChain(t *testing.T) {
	port, srv := servers(t, nil, "127.0.0.1")
	for _, last := range []string{"127.0.0.1", "127.0.1.50"} {
		h, d := dnsHome(t, port)
		var hosts []dnstest.Question
		for i := range 50 {
			name := fmt.Sprintf("mx%02d.example.test", i)
			hosts = append(hosts, dnstest.Q(name, dns.TypeA), dnstest.Q(name, dns.TypeAAAA))
		}
		for i := range 49 {
			d.Add(fmt.Sprintf("example.test. 60 IN MX %d mx%02d.example.test.", 10*(i/5+1), i),
				fmt.Sprintf("mx%02d.example.test. 60 IN A 127.0.1.%d", i, i+1))
		}
		d.Add("example.test. 60 IN MX 1000 mx49.example.test.", "mx49.example.test. 60 IN A "+last)
		g := d.Together(hosts...)
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
		if w := g.Waiting(d); len(w) > 0 {
			t.Errorf("%d address lookups never asked: %v", len(w), w)
		}
		if n := len(d.Queries()); n > 103 {
			t.Errorf("%d DNS queries for 50 MX hosts, want at most 103", n)
		}
	}
}

// The DNS phase of a whole delivery takes two round trips (MX with the
// host's A and AAAA; then A and AAAA of every MX host at once), not one
// per query. The DNS server proves it by structure: it holds the answers
// of each round until every question of that round has arrived, so a
// resolver asking one question at a time would wait for ever (until
// resolv.conf's timeout) for its first answer, and the delivery would not
// be the K it must be.
func TestDNSPhaseRoundTrips(t *testing.T) {
	port, srv := servers(t, nil, "127.0.0.1")
	h, d := dnsHome(t, port)
	d.Add("example.test. 60 IN MX 10 mx1.example.test.", "example.test. 60 IN MX 20 mx2.example.test.",
		"example.test. 60 IN MX 30 mx3.example.test.",
		"mx1.example.test. 60 IN A 127.0.0.1", "mx2.example.test. 60 IN A 127.0.0.2",
		"mx3.example.test. 60 IN A 127.0.0.3")
	round1 := []dnstest.Question{dnstest.Q("example.test", dns.TypeMX),
		dnstest.Q("example.test", dns.TypeA), dnstest.Q("example.test", dns.TypeAAAA)}
	var round2 []dnstest.Question
	for _, mx := range []string{"mx1", "mx2", "mx3"} {
		round2 = append(round2, dnstest.Q(mx+".example.test", dns.TypeA), dnstest.Q(mx+".example.test", dns.TypeAAAA))
	}
	g1, g2 := d.Together(round1...), d.Together(round2...)
	res := h.run(sample, "example.test", "a@b", rcpt)
	res.expect(t, 'K', "127.0.0.1 accepted")
	if w := append(g1.Waiting(d), g2.Waiting(d)...); len(w) > 0 {
		t.Errorf("never asked: %v", w)
	}
	// Nine questions, each once, the first round's first; one connection.
	q := d.Queries()
	if len(q) != 9 || srv["127.0.0.1"].Conns() != 1 {
		t.Fatalf("%d queries %v, %d connections", len(q), q, srv["127.0.0.1"].Conns())
	}
	for i, x := range q {
		want := round1
		if i >= 3 {
			want = round2
		}
		if !slices.Contains(want, dnstest.Q(x.Name, x.Type)) {
			t.Errorf("query %d is %v, not one of round %d", i, x, 1+i/3)
		}
	}
}
