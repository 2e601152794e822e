package resolve

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"qmail-remote-go/src/internal/report"
	"qmail-remote-go/src/testkit/dnstest"
)

// The DNS faults resolve_test.go does not already cover (doc/dnsfaults.md
// has the whole table). A misbehaving server may make a delivery wait (Z),
// never bounce it (D) or send it somewhere it should not go.

func rr(s string) dns.RR {
	r, err := dns.NewRR(s)
	if err != nil {
		panic(err)
	}
	return r
}

// reply builds a reply to req with the given answer records.
func reply(req *dns.Msg, answer ...string) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	for _, a := range answer {
		m.Answer = append(m.Answer, rr(a))
	}
	return m
}

// Records of another type, another owner or another class in the answer
// section are ignored (RFC 1034 3.6.2, RFC 2181 5.4.1): they never become
// MX hosts or addresses.
func TestWrongTypeRecords(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Add("mx1.example.test. 300 IN A 192.0.2.1",
		"mx2.example.test. 300 IN A 192.0.2.2",
		"example.test. 300 IN A 192.0.2.99",
		"evil.test. 300 IN A 198.51.100.66")
	srv.Custom("example.test", dns.TypeMX, func(req *dns.Msg) *dns.Msg {
		m := reply(req,
			"example.test. 300 IN A 198.51.100.1",
			"example.test. 300 IN TXT \"MX 1 evil.test\"",
			"other.test. 300 IN MX 1 evil.test.",
			"example.test. 300 IN MX 10 mx1.example.test.")
		ch := rr("example.test. 300 IN MX 1 evil.test.")
		ch.Header().Class = dns.ClassCHAOS
		m.Answer = append(m.Answer, ch)
		return m
	})
	expect(t, run(t, srv, Request{Host: "example.test"}), "mx1.example.test/192.0.2.1")
	if n := srv.Count("evil.test", dnstest.AnyType); n != 0 {
		t.Errorf("evil.test, named only by misplaced records, was looked up %d times", n)
	}

	// An MX answer without a single MX record is NODATA: the host's own
	// address, as stock's dns.c, which skips records of other types too.
	srv.Custom("example.test", dns.TypeMX, func(req *dns.Msg) *dns.Msg {
		return reply(req, "example.test. 300 IN A 198.51.100.1", "other.test. 300 IN MX 1 evil.test.")
	})
	expect(t, run(t, srv, Request{Host: "example.test"}), "example.test/192.0.2.99")

	// Address lookups: an AAAA record in an A answer, an A of another
	// owner, an MX: none is an address of the MX host.
	srv.Reset("example.test", dns.TypeMX)
	srv.Add("example.test. 300 IN MX 10 mx1.example.test.", "example.test. 300 IN MX 20 mx2.example.test.")
	srv.Custom("mx1.example.test", dns.TypeA, func(req *dns.Msg) *dns.Msg {
		return reply(req, "mx1.example.test. 300 IN AAAA 2001:db8::66",
			"evil.test. 300 IN A 198.51.100.66", "mx1.example.test. 300 IN MX 10 evil.test.")
	})
	expect(t, run(t, srv, Request{Host: "example.test"}), "mx2.example.test/192.0.2.2")
}

// Replies that are not answers to the question asked are temporary
// failures, whatever they hold.
func TestBogusReplies(t *testing.T) {
	tests := []struct {
		name string
		fn   func(req *dns.Msg) *dns.Msg
		want string // in the Z's detail
	}{
		{"not a response", func(req *dns.Msg) *dns.Msg {
			m := reply(req, "example.test. 300 IN MX 1 evil.test.")
			m.Response = false
			return m
		}, "not a query response"},
		{"another opcode", func(req *dns.Msg) *dns.Msg {
			m := reply(req, "example.test. 300 IN MX 1 evil.test.")
			m.Opcode = dns.OpcodeNotify
			return m
		}, "not a query response"},
		{"another type asked", func(req *dns.Msg) *dns.Msg {
			m := reply(req, "example.test. 300 IN A 198.51.100.66")
			m.Question[0].Qtype = dns.TypeA
			return m
		}, "to another question"},
		{"no question", func(req *dns.Msg) *dns.Msg {
			m := reply(req, "example.test. 300 IN MX 1 evil.test.")
			m.Question = nil
			return m
		}, "to another question"},
		// miekg/dns drops a reply whose ID is not the query's (a spoof or
		// a late answer) and keeps waiting: a timeout.
		{"another ID", func(req *dns.Msg) *dns.Msg {
			m := reply(req, "example.test. 300 IN MX 1 evil.test.")
			m.Id = req.Id + 1
			return m
		}, "no reply from"},
		{"unknown rcode", func(req *dns.Msg) *dns.Msg {
			m := reply(req)
			m.Rcode = dns.RcodeNotImplemented
			return m
		}, "NOTIMP from"},
		{"truncated over TCP too", func(req *dns.Msg) *dns.Msg {
			m := reply(req)
			m.Truncated = true
			return m
		}, "truncated reply from"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := dnstest.Start(t)
			standard(srv)
			srv.Custom("example.test", dns.TypeMX, tc.fn)
			// The MX query may have to time out ("another ID"); the
			// others are answered.
			o := runSplit(t, split{srv, shortFor("example.test.", dns.TypeMX)}, Request{Host: "example.test"})
			if o.Letter != report.Temporary || !strings.HasPrefix(o.Text, TextTempDNS+"\n") || !strings.Contains(o.Text, tc.want) {
				t.Errorf("got %q, want Z with %q", cands(o), tc.want)
			}
			if srv.Count("evil.test", dnstest.AnyType) != 0 {
				t.Error("evil.test was looked up")
			}
		})
	}
}

// Faults on the lookups of one MX host among several: that host is
// skipped, the others are used (as stock); on the only one, the delivery
// waits (Z), except NXDOMAIN, which is an answer.
func TestTargetFaults(t *testing.T) {
	const rest = "mx2.example.test/192.0.2.2 mx2.example.test/192.0.2.22 mx3.example.test/2001:db8::3"
	tests := []struct {
		name  string
		fault func(s *dnstest.Server, name string)
		alone string // outcome when name is the only MX host
		with  string // outcome with the other hosts; "" for rest
	}{
		{"NXDOMAIN", func(s *dnstest.Server, n string) { s.Fail(n, dnstest.AnyType, dns.RcodeNameError) }, "D" + TextNoMX, ""},
		{"REFUSED", func(s *dnstest.Server, n string) { s.Fail(n, dnstest.AnyType, dns.RcodeRefused) }, "Z", ""},
		// The AAAA still works: that address is kept.
		{"SERVFAIL on A only", func(s *dnstest.Server, n string) { s.Fail(n, dns.TypeA, dns.RcodeServerFailure) }, "Z",
			"mx1.example.test/2001:db8::1 " + rest},
		{"timeout", func(s *dnstest.Server, n string) { s.Drop(n, dnstest.AnyType) }, "Z", ""},
		{"garbage", func(s *dnstest.Server, n string) { s.Garbage(n, dnstest.AnyType) }, "Z", ""},
		{"CNAME loop", func(s *dnstest.Server, n string) {
			s.Custom(n, dnstest.AnyType, func(req *dns.Msg) *dns.Msg {
				return reply(req, n+". 300 IN CNAME loop.example.test.", "loop.example.test. 300 IN CNAME "+n+".")
			})
		}, "Z", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := dnstest.Start(t)
			standard(srv)
			tc.fault(srv, "mx1.example.test")
			want := tc.with
			if want == "" {
				want = rest
			}
			// mx1's lookups may have to time out ("timeout"); the
			// others are answered.
			short := shortFor("mx1.example.test.", dnstest.AnyType)
			expect(t, runSplit(t, split{srv, short}, Request{Host: "example.test"}), want)

			one := dnstest.Start(t)
			one.Add("example.test. 300 IN MX 10 mx1.example.test.", "mx1.example.test. 300 IN A 192.0.2.1")
			tc.fault(one, "mx1.example.test")
			o := runSplit(t, split{one, short}, Request{Host: "example.test"})
			if got := cands(o); !strings.HasPrefix(got, tc.alone) {
				t.Errorf("only MX host: got %q, want %q...", got, tc.alone)
			}
		})
	}
}

// Truncation on an address lookup goes to TCP too, and a CNAME chain on
// an MX host is followed (the candidate keeps the MX record's name).
func TestTargetTruncatedAndCNAME(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Add("example.test. 300 IN MX 10 mx1.example.test.", "example.test. 300 IN MX 20 alias.example.test.",
		"mx1.example.test. 300 IN A 192.0.2.1",
		"alias.example.test. 300 IN CNAME a2.example.test.", "a2.example.test. 300 IN CNAME a3.example.test.",
		"a3.example.test. 300 IN A 192.0.2.3")
	srv.Truncate("mx1.example.test", dns.TypeA)
	for _, chase := range []bool{true, false} {
		srv.ChaseCNAME(chase)
		expect(t, run(t, srv, Request{Host: "example.test"}), "mx1.example.test/192.0.2.1 alias.example.test/192.0.2.3")
	}
	tcp := 0
	for _, q := range srv.Queries() {
		if q.Name == "mx1.example.test." && q.Type == dns.TypeA && q.Proto == "tcp" {
			tcp++
		}
	}
	if tcp != 2 {
		t.Errorf("%d TCP queries for mx1's A, want one per run: %v", tcp, srv.Queries())
	}
}

// 50 MX records in 10 preferences of 5, listed in random order: every one
// is used, best preference first, each group shuffled; the work is one MX
// query, the speculative A and AAAA, and one A and one AAAA per host, all
// of them in one round: the test server holds the 100 address answers
// until all 100 questions have arrived (dnstest.Together), so a client
// asking them one after another would never get the first one.
func TestFiftyMX(t *testing.T) {
	srv := dnstest.Start(t)
	var recs []string
	for i := range 50 {
		recs = append(recs, fmt.Sprintf("example.test. 300 IN MX %d mx%02d.example.test.", 10*(i/5+1), i))
	}
	rand.Shuffle(len(recs), func(i, j int) { recs[i], recs[j] = recs[j], recs[i] })
	srv.Add(recs...)
	var hosts []dnstest.Question
	for i := range 50 {
		srv.Add(fmt.Sprintf("mx%02d.example.test. 300 IN A 192.0.2.%d", i, i+1))
		name := fmt.Sprintf("mx%02d.example.test", i)
		hosts = append(hosts, dnstest.Q(name, dns.TypeA), dnstest.Q(name, dns.TypeAAAA))
	}
	firsts := make([]map[string]bool, 10) // per group, which host came first
	for g := range firsts {
		firsts[g] = map[string]bool{}
	}
	const runs = 30
	for r := range runs {
		before := len(srv.Queries())
		round := srv.Together(hosts...)
		ctx, cancel := context.WithTimeout(context.Background(), 2*answerWait)
		o := Resolve(ctx, client(srv), Request{Host: "example.test"})
		cancel()
		if o.Letter != 0 || len(o.Candidates) != 50 {
			w := round.Waiting(srv)
			t.Fatalf("run %d: %d candidates, %q; %d questions never asked (%v ...)", r, len(o.Candidates), cands(o), len(w), w[:min(len(w), 4)])
		}
		seen := map[string]bool{}
		for i, c := range o.Candidates {
			var n int
			fmt.Sscanf(c.Name, "mx%02d.example.test", &n)
			if n/5 != i/5 || seen[c.Name] || c.Addr.String() != fmt.Sprintf("192.0.2.%d", n+1) {
				t.Fatalf("run %d: candidate %d is %v: out of preference order, twice, or wrong address", r, i, c)
			}
			seen[c.Name] = true
			if i%5 == 0 {
				firsts[i/5][c.Name] = true
			}
		}
		// Each question once: the MX, and A and AAAA of every host. The
		// speculative A and AAAA of example.test may be cancelled before
		// they leave, or (a goroutine the run did not wait for) arrive
		// during the next run: they are not counted.
		asked := map[dnstest.Question]int{}
		for _, x := range srv.Queries()[before:] {
			if x.Name != "example.test." || x.Type == dns.TypeMX {
				asked[dnstest.Q(x.Name, x.Type)]++
			}
		}
		if len(asked) != 101 || asked[dnstest.Q("example.test", dns.TypeMX)] != 1 {
			t.Fatalf("run %d: %d distinct questions, want the MX and 100 address lookups: %v", r, len(asked), asked)
		}
		for q, n := range asked {
			if n != 1 {
				t.Errorf("run %d: %v asked %d times", r, q, n)
			}
		}
	}
	// With 30 runs, one group never shuffled has probability 5^-29 each.
	for g, f := range firsts {
		if len(f) < 2 {
			t.Errorf("preference %d: always the same host first (%v): equal preferences not shuffled", 10*(g+1), f)
		}
	}
}
