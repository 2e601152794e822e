package resolve

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"qmail-remote-go/src/internal/chainenv"
	"qmail-remote-go/src/internal/report"
	"qmail-remote-go/src/testkit/dnstest"
)

// answerWait is the query timeout of the tests' clients for questions
// that get an answer: far above what the test server takes to answer,
// however loaded the machine, so that a slow answer is never taken for a
// lost one. It costs nothing: the answers come at once.
const answerWait = 20 * time.Second

// noAnswerWait is the query timeout for questions that are never answered
// (Drop, a reply the client must ignore): all that such a timeout costs,
// since no answer can be missed.
const noAnswerWait = 200 * time.Millisecond

// client talks to srv, one attempt, with a timeout no answer can miss.
func client(srv *dnstest.Server) *Client {
	return &Client{Servers: []string{srv.Addr()}, Timeout: answerWait, Attempts: 1}
}

// split is a Resolver for tests where some lookups must time out and the
// others must not: the lookups for which short says so go through a
// client with noAnswerWait, the others through client's answerWait. One
// timeout for both would either make the test wait answerWait for the
// lost answers, or, short, let a loaded machine turn a good answer into a
// timeout.
type split struct {
	srv   *dnstest.Server
	short func(name string, qtype uint16) bool
}

func (s split) Lookup(ctx context.Context, name string, qtype uint16) Answer {
	c := client(s.srv)
	if s.short(strings.ToLower(dns.Fqdn(name)), qtype) {
		c.Timeout = noAnswerWait
	}
	return c.Lookup(ctx, name, qtype)
}

// shortFor is a split.short for every lookup of the host name (with the
// final dot, lower case), and for all of them with qtype AnyType.
func shortFor(name string, qtype uint16) func(string, uint16) bool {
	return func(n string, t uint16) bool {
		return n == name && (qtype == dnstest.AnyType || t == qtype)
	}
}

// runSplit is run with a split resolver.
func runSplit(t *testing.T, s split, req Request) Outcome {
	t.Helper()
	if req.Shuffle == nil {
		req.Shuffle = noShuffle
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*answerWait)
	defer cancel()
	return Resolve(ctx, s, req)
}

// noShuffle keeps equal preferences in answer order, for exact checks.
func noShuffle(int, func(i, j int)) {}

func run(t *testing.T, srv *dnstest.Server, req Request) Outcome {
	t.Helper()
	if req.Shuffle == nil {
		req.Shuffle = noShuffle
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*answerWait)
	defer cancel()
	c := client(srv)
	c.DNSSEC = req.DANE
	return Resolve(ctx, c, req)
}

func cands(o Outcome) string {
	if o.Letter != 0 {
		return string(o.Letter) + o.Text
	}
	return chainenv.FormatCandidates(o.Candidates)
}

func expect(t *testing.T, o Outcome, want string) {
	t.Helper()
	if got := cands(o); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func addrs(list string) []netip.Addr {
	var out []netip.Addr
	for _, f := range strings.Fields(list) {
		out = append(out, netip.MustParseAddr(f))
	}
	return out
}

const tempDNS = "ZSorry, I couldn't find any host by that name. (#4.1.2)\n"

// standard: three MX, preferences out of answer order.
func standard(srv *dnstest.Server) {
	srv.Add("example.test. 300 IN MX 20 mx2.example.test.",
		"example.test. 300 IN MX 10 mx1.example.test.",
		"example.test. 300 IN MX 30 mx3.example.test.",
		"mx1.example.test. 300 IN A 192.0.2.1",
		"mx1.example.test. 300 IN AAAA 2001:db8::1",
		"mx2.example.test. 300 IN A 192.0.2.2",
		"mx2.example.test. 300 IN A 192.0.2.22",
		"mx3.example.test. 300 IN AAAA 2001:db8::3")
}

func TestMXPreferences(t *testing.T) {
	srv := dnstest.Start(t)
	standard(srv)
	expect(t, run(t, srv, Request{Host: "example.test"}),
		"mx1.example.test/2001:db8::1 mx1.example.test/192.0.2.1 mx2.example.test/192.0.2.2 mx2.example.test/192.0.2.22 mx3.example.test/2001:db8::3")
	// Case and a final dot don't matter.
	expect(t, run(t, srv, Request{Host: "Example.TEST."}),
		"mx1.example.test/2001:db8::1 mx1.example.test/192.0.2.1 mx2.example.test/192.0.2.2 mx2.example.test/192.0.2.22 mx3.example.test/2001:db8::3")
}

func TestEqualPreferencesShuffled(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Add("example.test. 300 IN MX 10 a.example.test.",
		"example.test. 300 IN MX 10 b.example.test.",
		"example.test. 300 IN MX 5 best.example.test.",
		"best.example.test. 300 IN A 192.0.2.9",
		"a.example.test. 300 IN A 192.0.2.1",
		"b.example.test. 300 IN A 192.0.2.2")
	seen := map[string]int{}
	for range 200 {
		o := Resolve(context.Background(), client(srv), Request{Host: "example.test"})
		if o.Letter != 0 || len(o.Candidates) != 3 || o.Candidates[0].Name != "best.example.test" {
			t.Fatalf("run: %q", cands(o))
		}
		seen[o.Candidates[1].Name]++
	}
	// Each order has probability 1/2: missing one in 200 runs is 2^-199.
	if seen["a.example.test"] == 0 || seen["b.example.test"] == 0 {
		t.Errorf("equal preferences not shuffled: %v", seen)
	}
}

func TestImplicitMX(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Add("v4.test. 300 IN A 192.0.2.4",
		"v4.test. 300 IN TXT \"no mx here\"",
		"v6.test. 300 IN AAAA 2001:db8::6",
		"both.test. 300 IN A 192.0.2.5",
		"both.test. 300 IN AAAA 2001:db8::5",
		"none.test. 300 IN TXT \"nothing\"")
	expect(t, run(t, srv, Request{Host: "v4.test"}), "v4.test/192.0.2.4")
	expect(t, run(t, srv, Request{Host: "v6.test"}), "v6.test/2001:db8::6")
	expect(t, run(t, srv, Request{Host: "both.test"}), "both.test/2001:db8::5 both.test/192.0.2.5")
	expect(t, run(t, srv, Request{Host: "none.test"}), "D"+TextNoMX)
	// The host's own A/AAAA went out with the MX query, not after it.
	if n := srv.Count("both.test", dns.TypeA) + srv.Count("both.test", dns.TypeAAAA); n != 2 {
		t.Errorf("%d address queries for both.test, want 2", n)
	}
}

func TestNullMX(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Add("null.test. 300 IN MX 0 .",
		"null.test. 300 IN A 192.0.2.1",
		"mixed.test. 300 IN MX 0 .",
		"mixed.test. 300 IN MX 10 mx.mixed.test.",
		"mx.mixed.test. 300 IN A 192.0.2.2")
	expect(t, run(t, srv, Request{Host: "null.test"}),
		"DSorry, null.test does not accept mail (null MX, RFC 7505). (#5.1.10)")
	expect(t, run(t, srv, Request{Host: "mixed.test"}), "mx.mixed.test/192.0.2.2")
}

func TestNXDomain(t *testing.T) {
	srv := dnstest.Start(t)
	expect(t, run(t, srv, Request{Host: "nosuch.test"}),
		"DSorry, I couldn't find any host named nosuch.test. (#5.1.2)")
	// Names that cannot exist are not even asked for.
	for _, h := range []string{"", ".", "a..b", "sp ace.test", "back\\slash.test", "sl/ash.test", "ex\u00e4mple.test", "nb\u00a0sp.test"} {
		expect(t, run(t, srv, Request{Host: h}), "DSorry, I couldn't find any host named "+h+". (#5.1.2)")
	}
	// The speculative A and AAAA of nosuch.test may be cancelled before
	// they leave once the MX query says NXDOMAIN: at most 3 queries.
	if n, mx := len(srv.Queries()), srv.Count("nosuch.test.", dns.TypeMX); n > 3 || mx != 1 {
		t.Errorf("%d queries (%d MX), want at most 3, one MX of nosuch.test: %v", n, mx, srv.Queries())
	}
}

func TestTemporaryMX(t *testing.T) {
	srv := dnstest.Start(t)
	standard(srv)
	srv.Fail("example.test", dns.TypeMX, dns.RcodeServerFailure)
	expect(t, run(t, srv, Request{Host: "example.test"}),
		tempDNS+"example.test MX: SERVFAIL from "+srv.Addr())
	srv.Fail("example.test", dns.TypeMX, dns.RcodeRefused)
	expect(t, run(t, srv, Request{Host: "example.test"}),
		tempDNS+"example.test MX: REFUSED from "+srv.Addr())
	srv.Garbage("example.test", dns.TypeMX)
	o := run(t, srv, Request{Host: "example.test"})
	if o.Letter != report.Temporary || !strings.Contains(o.Text, "bad reply from "+srv.Addr()) {
		t.Errorf("garbage: %q", cands(o))
	}
	srv.Custom("example.test", dns.TypeMX, func(req *dns.Msg) *dns.Msg {
		m := new(dns.Msg)
		m.SetReply(req)
		m.Question[0].Name = "other.test."
		m.Answer = append(m.Answer, &dns.MX{Hdr: dns.RR_Header{Name: "other.test.", Rrtype: dns.TypeMX, Class: dns.ClassINET, Ttl: 1}, Preference: 1, Mx: "evil.test."})
		return m
	})
	expect(t, run(t, srv, Request{Host: "example.test"}),
		tempDNS+"example.test MX: reply from "+srv.Addr()+" to another question")
}

// Each attempt waits Timeout for its answer, then the next one is made.
// The wait is checked from below only (a timer never fires early): how much
// longer a loaded machine takes says nothing about the client.
func TestTimeout(t *testing.T) {
	srv := dnstest.Start(t)
	standard(srv)
	srv.Drop("example.test", dns.TypeMX)
	c := &Client{Servers: []string{srv.Addr()}, Timeout: 150 * time.Millisecond, Attempts: 2}
	start := time.Now()
	o := Resolve(context.Background(), c, Request{Host: "example.test"})
	el := time.Since(start)
	expect(t, o, tempDNS+"example.test MX: no reply from "+srv.Addr()+" over udp (timeout)")
	if el < 300*time.Millisecond {
		t.Errorf("took %v, less than 2 attempts of 150ms", el)
	}
	if n := srv.Count("example.test", dns.TypeMX); n != 2 {
		t.Errorf("%d MX queries, want 2 attempts", n)
	}
}

// The servers are asked in turn: one that never answers, one that fails,
// then one that answers. The silent one costs a query timeout, which must
// also be long enough for the good server's answer on a loaded machine:
// one round of lookups (a relay's A and AAAA, in parallel) keeps that to
// a single wait.
func TestServerRotation(t *testing.T) {
	t.Parallel() // most of it is the silent server's timeout
	dead := dnstest.Start(t)
	dead.Drop(dnstest.AnyName, dnstest.AnyType)
	broken := dnstest.Start(t)
	broken.Fail(dnstest.AnyName, dnstest.AnyType, dns.RcodeServerFailure)
	good := dnstest.Start(t)
	standard(good)
	const wait = 5 * time.Second
	c := &Client{Servers: []string{dead.Addr(), broken.Addr(), good.Addr()}, Timeout: wait, Attempts: 1}
	o := Resolve(context.Background(), c, Request{Host: "example.test", Relay: "mx1.example.test", Shuffle: noShuffle})
	expect(t, o, "mx1.example.test/2001:db8::1 mx1.example.test/192.0.2.1")
	for _, s := range []*dnstest.Server{dead, broken, good} {
		if n := s.Count("mx1.example.test", dnstest.AnyType); n != 2 {
			t.Errorf("server %s asked %d times, want once for A and once for AAAA: %v", s.Addr(), n, s.Queries())
		}
	}
	// NXDOMAIN is an answer: no other server is asked.
	c = &Client{Servers: []string{good.Addr(), broken.Addr()}, Timeout: answerWait, Attempts: 2}
	expect(t, Resolve(context.Background(), c, Request{Host: "nosuch.test"}),
		"DSorry, I couldn't find any host named nosuch.test. (#5.1.2)")
	if n := broken.Count("nosuch.test", dnstest.AnyType); n != 0 {
		t.Errorf("broken server asked %d times after NXDOMAIN", n)
	}
}

func TestTargetFailures(t *testing.T) {
	srv := dnstest.Start(t)
	standard(srv)
	// One MX failing for now: the others are used.
	srv.Fail("mx1.example.test", dnstest.AnyType, dns.RcodeServerFailure)
	expect(t, run(t, srv, Request{Host: "example.test"}),
		"mx2.example.test/192.0.2.2 mx2.example.test/192.0.2.22 mx3.example.test/2001:db8::3")
	// All failing for now: Z, naming the best MX's failure.
	srv.Fail(dnstest.AnyName, dns.TypeA, dns.RcodeServerFailure)
	srv.Fail(dnstest.AnyName, dns.TypeAAAA, dns.RcodeServerFailure)
	srv.Fail("mx3.example.test", dnstest.AnyType, dns.RcodeServerFailure)
	srv.Fail("mx2.example.test", dnstest.AnyType, dns.RcodeServerFailure)
	expect(t, run(t, srv, Request{Host: "example.test"}),
		tempDNS+"mx1.example.test AAAA: SERVFAIL from "+srv.Addr())

	// Some failing for now, the others without addresses: still Z.
	srv2 := dnstest.Start(t)
	srv2.Add("example.test. 300 IN MX 10 gone.example.test.", "example.test. 300 IN MX 20 slow.example.test.",
		"slow.example.test. 300 IN A 192.0.2.1")
	srv2.Fail("slow.example.test", dnstest.AnyType, dns.RcodeServerFailure)
	expect(t, run(t, srv2, Request{Host: "example.test"}),
		tempDNS+"slow.example.test AAAA: SERVFAIL from "+srv2.Addr())
}

func TestTargetsWithoutAddresses(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Add("example.test. 300 IN MX 10 gone1.example.test.",
		"example.test. 300 IN MX 20 gone2.example.test.",
		"example.test. 300 IN MX 30 bad\\032name.example.test.",
		"example.test. 300 IN MX 30 zero.example.test.",
		"zero.example.test. 300 IN A 0.0.0.0",
		"zero.example.test. 300 IN AAAA ff02::1",
		"zero.example.test. 300 IN AAAA fe80::1",
		"zero.example.test. 300 IN A 255.255.255.255")
	expect(t, run(t, srv, Request{Host: "example.test"}), "D"+TextNoMX)
}

func TestAddressCleanup(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Add("example.test. 300 IN MX 10 mx1.example.test.",
		"example.test. 300 IN MX 20 mx2.example.test.",
		"example.test. 300 IN MX 30 MX1.example.test.",   // same host again
		"mx1.example.test. 300 IN AAAA ::ffff:192.0.2.1", // IPv4-mapped
		"mx1.example.test. 300 IN A 192.0.2.1",
		"mx1.example.test. 300 IN A 0.0.0.0",
		"mx2.example.test. 300 IN A 192.0.2.1", // already listed under mx1
		"mx2.example.test. 300 IN A 192.0.2.2")
	expect(t, run(t, srv, Request{Host: "example.test"}),
		"mx1.example.test/192.0.2.1 mx2.example.test/192.0.2.2")
}

func TestCNAME(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Add("alias.test. 300 IN CNAME mid.test.",
		"mid.test. 300 IN CNAME example.test.",
		"example.test. 300 IN MX 10 mxalias.example.test.",
		"mxalias.example.test. 300 IN CNAME mx.example.test.",
		"mx.example.test. 300 IN A 192.0.2.1",
		"loop1.test. 300 IN CNAME loop2.test.",
		"loop2.test. 300 IN CNAME loop1.test.",
		"dangling.test. 300 IN CNAME nosuch.test.")
	for _, chase := range []bool{true, false} {
		srv.ChaseCNAME(chase)
		// The MX host keeps the name the MX record gave it.
		expect(t, run(t, srv, Request{Host: "alias.test"}), "mxalias.example.test/192.0.2.1")
		expect(t, run(t, srv, Request{Host: "loop1.test"}), tempDNS+"loop1.test MX: CNAME loop at loop1.test")
		expect(t, run(t, srv, Request{Host: "dangling.test"}), "DSorry, I couldn't find any host named dangling.test. (#5.1.2)")
	}
	// Without chasing, the client asked for the targets itself.
	if n := srv.Count("mid.test", dns.TypeMX); n != 1 {
		t.Errorf("mid.test MX asked %d times, want 1", n)
	}
	// A chain too long to follow.
	long := dnstest.Start(t)
	for i := range 12 {
		long.Add(fmt.Sprintf("c%d.test. 300 IN CNAME c%d.test.", i, i+1))
	}
	expect(t, run(t, long, Request{Host: "c0.test"}), tempDNS+"c0.test MX: more than 8 CNAMEs")
}

func TestTruncatedGoesTCP(t *testing.T) {
	srv := dnstest.Start(t)
	standard(srv)
	srv.Truncate("example.test", dns.TypeMX)
	expect(t, run(t, srv, Request{Host: "example.test"}),
		"mx1.example.test/2001:db8::1 mx1.example.test/192.0.2.1 mx2.example.test/192.0.2.2 mx2.example.test/192.0.2.22 mx3.example.test/2001:db8::3")
	var protos []string
	for _, q := range srv.Queries() {
		if q.Type == dns.TypeMX {
			protos = append(protos, q.Proto)
		}
	}
	if strings.Join(protos, " ") != "udp tcp" {
		t.Errorf("MX queries over %v, want udp then tcp", protos)
	}

	// A genuinely big answer (more than the 1232 bytes we advertise).
	big := dnstest.Start(t)
	for i := range 100 {
		big.Add(fmt.Sprintf("big.test. 300 IN A 192.0.2.%d", i+1))
	}
	o := run(t, big, Request{Host: "big.test"})
	if o.Letter != 0 || len(o.Candidates) != 100 {
		t.Errorf("big answer: %d candidates, %q", len(o.Candidates), o.Text)
	}
	if big.Count("big.test", dns.TypeA) != 2 {
		t.Errorf("big answer: queries %v", big.Queries())
	}
}

// timeoutdns ends the DNS phase, however long the queries would still
// wait: here the answer would come after a minute, and the client would
// wait two for it. The checks are the report and, from below, the wait;
// the upper bound is a backstop, far below the minute.
func TestTimeoutDNS(t *testing.T) {
	srv := dnstest.Start(t)
	standard(srv)
	srv.Delay("example.test", dns.TypeMX, time.Minute)
	c := &Client{Servers: []string{srv.Addr()}, Timeout: 2 * time.Minute, Attempts: 2}
	start := time.Now()
	o := Resolve(context.Background(), c, Request{Host: "example.test", TimeoutDNS: time.Second})
	el := time.Since(start)
	expect(t, o, tempDNS+"DNS lookups took longer than timeoutdns (1 s)")
	if el < time.Second || el > 30*time.Second {
		t.Errorf("took %v, want 1s (and far less than the minute the answer takes)", el)
	}
	if n := srv.Count("example.test", dns.TypeMX); n != 1 {
		t.Errorf("%d MX queries, want 1", n)
	}
}

func TestIPMe(t *testing.T) {
	srv := dnstest.Start(t)
	standard(srv)
	// The best MX is me: D.
	expect(t, run(t, srv, Request{Host: "example.test", IPMe: addrs("127.0.0.1 2001:db8::1")}), "D"+TextAmbiguousMX)
	// The second is me: only the first is tried.
	expect(t, run(t, srv, Request{Host: "example.test", IPMe: addrs("192.0.2.22")}),
		"mx1.example.test/2001:db8::1 mx1.example.test/192.0.2.1")
	// The implicit MX is me.
	srv.Add("self.test. 300 IN A 192.0.2.100")
	expect(t, run(t, srv, Request{Host: "self.test", IPMe: addrs("192.0.2.100")}), "D"+TextAmbiguousMX)
	// A better MX fails for now: wait rather than bounce (stock bounces).
	srv.Fail("mx1.example.test", dnstest.AnyType, dns.RcodeServerFailure)
	expect(t, run(t, srv, Request{Host: "example.test", IPMe: addrs("192.0.2.2")}),
		tempDNS+"mx1.example.test AAAA: SERVFAIL from "+srv.Addr())
}

func TestRelay(t *testing.T) {
	srv := dnstest.Start(t)
	standard(srv)
	srv.Add("relay.test. 300 IN A 127.0.0.1",
		"relay.test. 300 IN AAAA ::1",
		"relay.test. 300 IN MX 10 mx1.example.test.",
		"noaddr.test. 300 IN MX 10 mx1.example.test.")
	// By name: A and AAAA only, no MX, and no ipme rule.
	expect(t, run(t, srv, Request{Host: "example.test", Relay: "relay.test", IPMe: addrs("127.0.0.1 ::1")}),
		"relay.test/::1 relay.test/127.0.0.1")
	for _, q := range srv.Queries() {
		if q.Type == dns.TypeMX || q.Name != "relay.test." {
			t.Errorf("unexpected query %v", q)
		}
	}
	expect(t, run(t, srv, Request{Host: "example.test", Relay: "[192.0.2.7]"}), "[192.0.2.7]/192.0.2.7")
	expect(t, run(t, srv, Request{Host: "example.test", Relay: "192.0.2.7"}), "[192.0.2.7]/192.0.2.7")
	expect(t, run(t, srv, Request{Host: "example.test", Relay: "[2001:DB8::7]"}), "[2001:db8::7]/2001:db8::7")
	expect(t, run(t, srv, Request{Host: "example.test", Relay: "[IPv6:2001:db8::7]"}), "[2001:db8::7]/2001:db8::7")
	if n := len(srv.Queries()); n != 2 {
		t.Errorf("%d queries, want 2: literals need no DNS", n)
	}
	// A broken route waits: Z, not D.
	expect(t, run(t, srv, Request{Host: "example.test", Relay: "nosuch.test"}),
		"ZSorry, I couldn't find any host named nosuch.test (the smtproutes relay). (#4.1.2)")
	expect(t, run(t, srv, Request{Host: "example.test", Relay: "noaddr.test."}),
		"ZSorry, I couldn't find an IP address for noaddr.test (the smtproutes relay). (#4.4.4)")
	// A relay from control/senderroutes: the texts name that file.
	expect(t, run(t, srv, Request{Host: "example.test", Relay: "nosuch.test", RelayFrom: "senderroutes"}),
		"ZSorry, I couldn't find any host named nosuch.test (the senderroutes relay). (#4.1.2)")
	expect(t, run(t, srv, Request{Host: "example.test", Relay: "[192.0.2.0.1]", RelayFrom: "senderroutes"}),
		"ZSorry, I couldn't find an IP address for [192.0.2.0.1] (the senderroutes relay). (#4.4.4)")
	srv.Fail("relay.test", dns.TypeA, dns.RcodeServerFailure)
	expect(t, run(t, srv, Request{Host: "example.test", Relay: "relay.test"}), "relay.test/::1")
	srv.Fail("relay.test", dns.TypeAAAA, dns.RcodeServerFailure)
	expect(t, run(t, srv, Request{Host: "example.test", Relay: "relay.test"}),
		tempDNS+"relay.test AAAA: SERVFAIL from "+srv.Addr())
}

func TestCheckRelay(t *testing.T) {
	for _, ok := range []string{"relay.test", "relay.test.", "[192.0.2.7]", "192.0.2.7", "[2001:db8::7]", "[IPv6:2001:db8::7]", "2001:db8::7"} {
		if err := CheckRelay(ok); err != nil {
			t.Errorf("CheckRelay(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"[192.0.2.7", "[relay.test]", "[IPv6:192.0.2.7]", "[0.0.0.0]", "[ff02::1]", "re lay.test", "a..b", "[fe80::1%eth0]"} {
		if err := CheckRelay(bad); err == nil {
			t.Errorf("CheckRelay(%q): no error", bad)
		}
	}
}

func TestHostLiterals(t *testing.T) {
	srv := dnstest.Start(t)
	for host, want := range map[string]string{
		"[192.0.2.1]":             "[192.0.2.1]/192.0.2.1",
		"192.0.2.1":               "[192.0.2.1]/192.0.2.1",
		"[IPv6:2001:db8::1]":      "[2001:db8::1]/2001:db8::1",
		"[ipv6:2001:DB8:0::1]":    "[2001:db8::1]/2001:db8::1",
		"[2001:db8::1]":           "[2001:db8::1]/2001:db8::1",
		"[IPv6:::ffff:192.0.2.1]": "[192.0.2.1]/192.0.2.1",
		"[300.0.2.1]":             "DSorry, I couldn't find any host named [300.0.2.1]. (#5.1.2)",
		"[192.0.2.1":              "DSorry, I couldn't find any host named [192.0.2.1. (#5.1.2)",
		"[IPv6:192.0.2.1]":        "DSorry, I couldn't find any host named [IPv6:192.0.2.1]. (#5.1.2)",
		"[0.0.0.0]":               "DSorry, I couldn't find any host named [0.0.0.0]. (#5.1.2)",
		"[example.test]":          "DSorry, I couldn't find any host named [example.test]. (#5.1.2)",
	} {
		expect(t, run(t, srv, Request{Host: host}), want)
	}
	// A literal pointing at this host.
	expect(t, run(t, srv, Request{Host: "[192.0.2.1]", IPMe: addrs("192.0.2.1")}), "D"+TextAmbiguousMX)
	if q := srv.Queries(); len(q) != 0 {
		t.Errorf("literals made queries: %v", q)
	}
}

// All lookups of a delivery run in parallel: MX, with the host's A and
// AAAA; then A and AAAA of every MX at once. The test server proves it by
// structure: it holds the answers of each round until every question of
// that round has arrived, so a client asking one question at a time would
// wait for ever (until its timeout) for its first answer.
func TestParallel(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Add("example.test. 300 IN MX 10 mx1.example.test.",
		"example.test. 300 IN MX 20 mx2.example.test.",
		"mx1.example.test. 300 IN A 192.0.2.1",
		"mx2.example.test. 300 IN AAAA 2001:db8::2")
	round1 := []dnstest.Question{dnstest.Q("example.test", dns.TypeMX),
		dnstest.Q("example.test", dns.TypeA), dnstest.Q("example.test", dns.TypeAAAA)}
	round2 := []dnstest.Question{dnstest.Q("mx1.example.test", dns.TypeA), dnstest.Q("mx1.example.test", dns.TypeAAAA),
		dnstest.Q("mx2.example.test", dns.TypeA), dnstest.Q("mx2.example.test", dns.TypeAAAA)}
	g1, g2 := srv.Together(round1...), srv.Together(round2...)
	o := run(t, srv, Request{Host: "example.test"})
	expect(t, o, "mx1.example.test/192.0.2.1 mx2.example.test/2001:db8::2")
	if w := append(g1.Waiting(srv), g2.Waiting(srv)...); len(w) > 0 {
		t.Errorf("never asked: %v", w)
	}
	// Exactly these seven questions, each once, the first round's first.
	q := srv.Queries()
	if len(q) != 7 {
		t.Fatalf("queries: %v", q)
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

// A domain with too many MX: only the best MaxTargets are looked up.
func TestManyMX(t *testing.T) {
	srv := dnstest.Start(t)
	for i := range 80 {
		srv.Add(fmt.Sprintf("example.test. 300 IN MX %d mx%d.example.test.", 100-i, i),
			fmt.Sprintf("mx%d.example.test. 300 IN A 192.0.2.%d", i, i+1))
	}
	o := run(t, srv, Request{Host: "example.test"})
	if o.Letter != 0 || len(o.Candidates) != MaxTargets ||
		o.Candidates[0].Name != "mx79.example.test" || o.Candidates[MaxTargets-1].Name != "mx16.example.test" {
		t.Fatalf("got %d candidates: %q", len(o.Candidates), cands(o))
	}
	if n := srv.Count("mx15.example.test", dnstest.AnyType); n != 0 {
		t.Errorf("mx15 was looked up")
	}
}
