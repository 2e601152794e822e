package resolve

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"qmail-remote-go/src/internal/chainenv"
	"qmail-remote-go/src/testkit/dnstest"
)

const (
	hash1 = "aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11"
	hash2 = "bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22"
)

// signed: example.test is DNSSEC-signed, with two MX hosts; mx1 has TLSA
// records (a rollover pair), mx2 none.
func signed(srv *dnstest.Server) {
	srv.Add("example.test. 300 IN MX 10 mx1.example.test.",
		"example.test. 300 IN MX 20 mx2.example.test.",
		"mx1.example.test. 300 IN A 192.0.2.1",
		"mx2.example.test. 300 IN A 192.0.2.2",
		"_25._tcp.mx1.example.test. 300 IN TLSA 3 1 1 "+strings.ToUpper(hash1),
		"_25._tcp.mx1.example.test. 300 IN TLSA 2 1 1 "+hash2)
	srv.Secure(".example.test", "example.test")
}

func daneList(o Outcome) string {
	return chainenv.FormatDANE(o.DANE)
}

// expectDANE checks the hosts with DANE, as QMAILREMOTE_DANE has them.
func expectDANE(t *testing.T, o Outcome, want string) {
	t.Helper()
	if got := daneList(o); got != want {
		t.Errorf("DANE %q, want %q", got, want)
	}
}

func TestDANESecureMX(t *testing.T) {
	srv := dnstest.Start(t)
	signed(srv)
	o := run(t, srv, Request{Host: "example.test", DANE: true})
	expect(t, o, "mx1.example.test/192.0.2.1 mx2.example.test/192.0.2.2")
	expectDANE(t, o, "mx1.example.test/mx1.example.test/3:1:1:"+hash1+",2:1:1:"+hash2)
	for _, q := range srv.Queries() {
		if !q.AD {
			t.Errorf("query %v without the AD bit", q)
		}
	}
	if srv.Count("_25._tcp.mx2.example.test", dns.TypeTLSA) != 1 {
		t.Errorf("mx2's TLSA records were not looked up")
	}
}

// TestDANEOff: without DANE, no AD bit and no TLSA lookups: nothing
// changes for a delivery that does not ask for it.
func TestDANEOff(t *testing.T) {
	srv := dnstest.Start(t)
	signed(srv)
	o := run(t, srv, Request{Host: "example.test"})
	expect(t, o, "mx1.example.test/192.0.2.1 mx2.example.test/192.0.2.2")
	if len(o.DANE) != 0 {
		t.Errorf("DANE %q without DANE", daneList(o))
	}
	for _, q := range srv.Queries() {
		if q.AD || q.Type == dns.TypeTLSA {
			t.Errorf("query %v (AD %v) without DANE", q, q.AD)
		}
	}
}

// TestDANEInsecureMX: an MX RRset that is not secure leads to no TLSA
// lookup (RFC 7672 2.2.1), and at dane-only to a Z.
func TestDANEInsecureMX(t *testing.T) {
	// The hosts and their records are secure, the MX RRset is not.
	srvU := dnstest.Start(t)
	srvU.Add("example.test. 300 IN MX 10 mx1.example.test.",
		"mx1.example.test. 300 IN A 192.0.2.1",
		"_25._tcp.mx1.example.test. 300 IN TLSA 3 1 1 "+hash1)
	srvU.Secure("mx1.example.test", "_25._tcp.mx1.example.test")
	o := run(t, srvU, Request{Host: "example.test", DANE: true})
	expect(t, o, "mx1.example.test/192.0.2.1")
	if len(o.DANE) != 0 || srvU.Count("_25._tcp.mx1.example.test", dns.TypeTLSA) != 0 {
		t.Errorf("DANE %q, %d TLSA lookups, under an insecure MX RRset", daneList(o), srvU.Count("_25._tcp.mx1.example.test", dns.TypeTLSA))
	}
	o = run(t, srvU, Request{Host: "example.test", DANE: true, DANEOnly: true})
	expect(t, o, "ZSorry, no mail exchanger of example.test can be used with DANE now. (#4.7.5)\nexample.test MX: not DNSSEC-secure, and control/tlspolicy says dane-only")
}

// TestDANETLSAFailure: a TLSA lookup that fails sets its host aside
// (never cleartext, never unauthenticated TLS); none left is a Z.
func TestDANETLSAFailure(t *testing.T) {
	srv := dnstest.Start(t)
	signed(srv)
	srv.Fail("_25._tcp.mx1.example.test", dns.TypeTLSA, dns.RcodeServerFailure)
	o := run(t, srv, Request{Host: "example.test", DANE: true})
	expect(t, o, "mx2.example.test/192.0.2.2")
	if len(o.DANE) != 0 {
		t.Errorf("DANE %q", daneList(o))
	}

	srv2 := dnstest.Start(t)
	srv2.Add("example.test. 300 IN MX 10 mx1.example.test.", "mx1.example.test. 300 IN A 192.0.2.1")
	srv2.Secure(".example.test", "example.test")
	srv2.Fail("_25._tcp.mx1.example.test", dns.TypeTLSA, dns.RcodeServerFailure)
	o = run(t, srv2, Request{Host: "example.test", DANE: true})
	expect(t, o, "ZSorry, no mail exchanger of example.test can be used with DANE now. (#4.7.5)\n"+
		"mx1.example.test: TLSA lookup failed: _25._tcp.mx1.example.test TLSA: SERVFAIL from "+srv2.Addr())
}

// TestDANEInsecureHost: a host in an unsigned zone gets no DANE, and its
// TLSA lookup failing does not matter (RFC 7672 2.2.2).
func TestDANEInsecureHost(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Add("example.test. 300 IN MX 10 mx.provider.test.",
		"mx.provider.test. 300 IN A 192.0.2.1")
	srv.Secure("example.test")
	srv.Fail("_25._tcp.mx.provider.test", dns.TypeTLSA, dns.RcodeServerFailure)
	o := run(t, srv, Request{Host: "example.test", DANE: true})
	expect(t, o, "mx.provider.test/192.0.2.1")
	if len(o.DANE) != 0 {
		t.Errorf("DANE %q", daneList(o))
	}
	o = run(t, srv, Request{Host: "example.test", DANE: true, DANEOnly: true})
	expect(t, o, "ZSorry, no mail exchanger of example.test can be used with DANE now. (#4.7.5)\n"+
		"mx.provider.test: no DNSSEC-secure TLSA records, and control/tlspolicy says dane-only")
}

// TestDANECNAME: an MX host that is a CNAME has the name it leads to as
// the TLSA base domain, tried first, then its own (RFC 7672 2.2.2); a
// DANE-TA certificate may match either.
func TestDANECNAME(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Add("example.test. 300 IN MX 10 mx.example.test.",
		"mx.example.test. 300 IN CNAME smtp.provider.test.",
		"smtp.provider.test. 300 IN A 192.0.2.1",
		"_25._tcp.smtp.provider.test. 300 IN TLSA 3 1 1 "+hash1,
		"_25._tcp.mx.example.test. 300 IN TLSA 3 1 1 "+hash2)
	srv.Secure(".example.test", "example.test", ".provider.test")
	o := run(t, srv, Request{Host: "example.test", DANE: true})
	expectDANE(t, o, "mx.example.test/smtp.provider.test,mx.example.test/3:1:1:"+hash1)
	// Without records at the expanded name: the MX host's own.
	srv2 := dnstest.Start(t)
	srv2.Add("example.test. 300 IN MX 10 mx.example.test.",
		"mx.example.test. 300 IN CNAME smtp.provider.test.",
		"smtp.provider.test. 300 IN A 192.0.2.1",
		"_25._tcp.mx.example.test. 300 IN TLSA 3 1 1 "+hash2)
	srv2.Secure(".example.test", "example.test", ".provider.test")
	o = run(t, srv2, Request{Host: "example.test", DANE: true})
	expectDANE(t, o, "mx.example.test/mx.example.test/3:1:1:"+hash2)
}

// TestDANEImplicitMX: no MX, securely denied: the domain's own TLSA.
func TestDANEImplicitMX(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Add("example.test. 300 IN A 192.0.2.1",
		"_25._tcp.example.test. 300 IN TLSA 3 1 1 "+hash1)
	srv.Secure(".example.test", "example.test")
	o := run(t, srv, Request{Host: "example.test", DANE: true})
	expect(t, o, "example.test/192.0.2.1")
	expectDANE(t, o, "example.test/example.test/3:1:1:"+hash1)
}

// TestDANERelay: an smtproutes relay's TLSA records are at its port.
func TestDANERelay(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Add("relay.example.test. 300 IN A 192.0.2.7",
		"_587._tcp.relay.example.test. 300 IN TLSA 3 1 1 "+hash1)
	srv.Secure(".example.test")
	o := run(t, srv, Request{Host: "elsewhere.test", Relay: "relay.example.test", Port: 587, DANE: true})
	expect(t, o, "relay.example.test/192.0.2.7")
	expectDANE(t, o, "relay.example.test/relay.example.test/3:1:1:"+hash1)
	o = run(t, srv, Request{Host: "elsewhere.test", Relay: "[192.0.2.7]", DANE: true, DANEOnly: true})
	expect(t, o, "ZSorry, no mail exchanger of elsewhere.test can be used with DANE now. (#4.7.5)\n"+
		"[192.0.2.7]: an address literal has no TLSA records, and control/tlspolicy says dane-only")
}

// TestTrustAD: the AD bit counts from loopback and from listed servers.
func TestTrustAD(t *testing.T) {
	c := &Client{TrustAD: []netip.Addr{netip.MustParseAddr("192.0.2.53")}}
	for server, want := range map[string]bool{
		"127.0.0.1:53": true, "[::1]:53": true, "127.0.0.53:53": true,
		"192.0.2.53:53": true, "192.0.2.54:53": false, "[2001:db8::53]:53": false, "garbage": false,
	} {
		if got := c.trusts(server); got != want {
			t.Errorf("trusts(%s) = %v", server, got)
		}
	}
}

// TestDANEOnlyUnusable: at dane-only, a host whose TLSA records are all
// unusable (PKIX-TA, PKIX-EE) is set aside: it would get unauthenticated
// TLS (RFC 7672 2.2). At dane it keeps them, for that TLS.
func TestDANEOnlyUnusable(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Add("example.test. 300 IN MX 10 mx1.example.test.",
		"mx1.example.test. 300 IN A 192.0.2.1",
		"_25._tcp.mx1.example.test. 300 IN TLSA 1 1 1 "+hash1,
		"_25._tcp.mx1.example.test. 300 IN TLSA 0 0 1 "+hash2)
	srv.Secure(".example.test", "example.test")
	o := run(t, srv, Request{Host: "example.test", DANE: true})
	expectDANE(t, o, "mx1.example.test/mx1.example.test/1:1:1:"+hash1+",0:0:1:"+hash2)
	o = run(t, srv, Request{Host: "example.test", DANE: true, DANEOnly: true})
	expect(t, o, "ZSorry, no mail exchanger of example.test can be used with DANE now. (#4.7.5)\n"+
		"mx1.example.test: no usable TLSA record (only PKIX-TA, PKIX-EE or unknown parameters), and control/tlspolicy says dane-only")
}

// TestDANEMXIsTheDomain: an MX naming the domain itself reuses the
// domain's own lookups, its TLSA records included.
func TestDANEMXIsTheDomain(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Add("example.test. 300 IN MX 10 example.test.",
		"example.test. 300 IN A 192.0.2.1",
		"_25._tcp.example.test. 300 IN TLSA 3 1 1 "+hash1)
	srv.Secure(".example.test", "example.test")
	o := run(t, srv, Request{Host: "example.test", DANE: true})
	expectDANE(t, o, "example.test/example.test/3:1:1:"+hash1)
	if n := srv.Count("_25._tcp.example.test", dns.TypeTLSA); n != 1 {
		t.Errorf("%d TLSA lookups", n)
	}
}

// TestDANEParallel: with DANE, the TLSA records of the MX hosts are asked
// for in the same round as their addresses (each group is answered only
// when all of it has been asked): DANE costs no round trip of its own.
func TestDANEParallel(t *testing.T) {
	srv := dnstest.Start(t)
	signed(srv)
	round1 := []dnstest.Question{dnstest.Q("example.test", dns.TypeMX),
		dnstest.Q("example.test", dns.TypeA), dnstest.Q("example.test", dns.TypeAAAA),
		dnstest.Q("_25._tcp.example.test", dns.TypeTLSA)}
	round2 := []dnstest.Question{dnstest.Q("mx1.example.test", dns.TypeA), dnstest.Q("mx1.example.test", dns.TypeAAAA),
		dnstest.Q("_25._tcp.mx1.example.test", dns.TypeTLSA),
		dnstest.Q("mx2.example.test", dns.TypeA), dnstest.Q("mx2.example.test", dns.TypeAAAA),
		dnstest.Q("_25._tcp.mx2.example.test", dns.TypeTLSA)}
	g1, g2 := srv.Together(round1...), srv.Together(round2...)
	o := run(t, srv, Request{Host: "example.test", DANE: true})
	expect(t, o, "mx1.example.test/192.0.2.1 mx2.example.test/192.0.2.2")
	expectDANE(t, o, "mx1.example.test/mx1.example.test/3:1:1:"+hash1+",2:1:1:"+hash2)
	if w := append(g1.Waiting(srv), g2.Waiting(srv)...); len(w) > 0 {
		t.Errorf("never asked: %v", w)
	}
}
