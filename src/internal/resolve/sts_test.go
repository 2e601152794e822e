package resolve

import (
	"context"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"qmail-remote-go/src/testkit/dnstest"
)

// stsFake stands for the caller's policy lookup: it records what the TXT
// lookup gave and returns a fixed policy.
type stsFake struct {
	calls int
	got   STSRecord
	mode  string // "": no policy
	mx    []string
}

func (f *stsFake) lookup(_ context.Context, txt STSRecord) *STSPolicy {
	f.calls++
	f.got = txt
	if f.mode == "" {
		return nil
	}
	return &STSPolicy{Mode: f.mode, MX: f.mx, Lines: []string{"version: STSv1", "mode: " + f.mode},
		Matches: func(h string) bool {
			for _, p := range f.mx {
				if strings.EqualFold(p, h) || strings.HasPrefix(p, "*.") && strings.Count(h, ".") > 0 &&
					strings.EqualFold(p[1:], h[strings.Index(h, "."):]) {
					return true
				}
			}
			return false
		}}
}

// stsZone: example.test with two MX hosts, one of them in another domain,
// and an MTA-STS TXT record.
func stsZone(srv *dnstest.Server) {
	srv.Add("example.test. 300 IN MX 10 mx1.example.test.",
		"example.test. 300 IN MX 20 backup.other.test.",
		"mx1.example.test. 300 IN A 192.0.2.1",
		"backup.other.test. 300 IN A 192.0.2.2",
		`_mta-sts.example.test. 300 IN TXT "v=STSv1; " "id=20261205;"`)
}

func TestSTSEnforceKeepsNamedHosts(t *testing.T) {
	srv := dnstest.Start(t)
	stsZone(srv)
	f := &stsFake{mode: "enforce", mx: []string{"*.example.test"}}
	o := run(t, srv, Request{Host: "example.test", STS: f.lookup})
	expect(t, o, "mx1.example.test/192.0.2.1")
	if o.STS == nil || o.STS.Mode != "enforce" {
		t.Errorf("Outcome.STS %+v, want the enforce policy", o.STS)
	}
	if !f.got.Found || len(f.got.Records) != 1 || f.got.Records[0] != "v=STSv1; id=20261205;" {
		t.Errorf("the policy lookup got %+v, want the TXT record's strings joined", f.got)
	}
}

func TestSTSTestingKeepsAll(t *testing.T) {
	srv := dnstest.Start(t)
	stsZone(srv)
	f := &stsFake{mode: "testing", mx: []string{"*.example.test"}}
	o := run(t, srv, Request{Host: "example.test", STS: f.lookup})
	expect(t, o, "mx1.example.test/192.0.2.1 backup.other.test/192.0.2.2")
	if o.STS == nil || o.STS.Mode != "testing" {
		t.Errorf("Outcome.STS %+v, want the testing policy", o.STS)
	}
}

// TestSTSNoneMatch: an enforce policy that names none of the MX hosts is
// a Z naming them (RFC 8461 5), never a D, never delivery elsewhere.
func TestSTSNoneMatch(t *testing.T) {
	srv := dnstest.Start(t)
	stsZone(srv)
	f := &stsFake{mode: "enforce", mx: []string{"mail.example.test"}}
	o := run(t, srv, Request{Host: "example.test", STS: f.lookup})
	want := "ZSorry, no mail exchanger of example.test matches its MTA-STS policy. (#4.7.5)\n" +
		"mx1.example.test: not named by the MTA-STS policy (mx: mail.example.test)\n" +
		"backup.other.test: not named by the MTA-STS policy (mx: mail.example.test)"
	expect(t, o, want)
}

// TestSTSImplicitMX: without MX the domain itself is the host, and the
// policy must name it.
func TestSTSImplicitMX(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Add("example.test. 300 IN A 192.0.2.9")
	f := &stsFake{mode: "enforce", mx: []string{"mx.example.test"}}
	o := run(t, srv, Request{Host: "example.test", STS: f.lookup})
	if o.Letter != 'Z' || !strings.Contains(o.Text, "example.test: not named by the MTA-STS policy") {
		t.Errorf("got %q, want the Z of a policy that names no host", cands(o))
	}
	if f.got.Found {
		t.Errorf("no TXT record, but the policy lookup got %+v", f.got)
	}
}

// TestSTSTemporary: a failing TXT lookup reaches the policy lookup as
// such (a cached policy may apply), and does not stop the delivery.
func TestSTSTemporary(t *testing.T) {
	srv := dnstest.Start(t)
	stsZone(srv)
	srv.Fail("_mta-sts.example.test", dns.TypeTXT, dns.RcodeServerFailure)
	f := &stsFake{}
	o := run(t, srv, Request{Host: "example.test", STS: f.lookup})
	expect(t, o, "mx1.example.test/192.0.2.1 backup.other.test/192.0.2.2")
	if !f.got.Temporary || o.STS != nil {
		t.Errorf("policy lookup got %+v, Outcome.STS %+v", f.got, o.STS)
	}
}

// TestSTSNotAsked: no TXT lookup for a relay or an address literal, nor
// without Request.STS; and none when DANE applies (RFC 8461 2).
func TestSTSNotAsked(t *testing.T) {
	srv := dnstest.Start(t)
	stsZone(srv)
	srv.Add("relay.test. 300 IN A 192.0.2.7")
	f := &stsFake{mode: "enforce", mx: []string{"nothing.test"}}
	expect(t, run(t, srv, Request{Host: "example.test", Relay: "relay.test", STS: f.lookup}), "relay.test/192.0.2.7")
	expect(t, run(t, srv, Request{Host: "[192.0.2.5]", STS: f.lookup}), "[192.0.2.5]/192.0.2.5")
	expect(t, run(t, srv, Request{Host: "example.test"}), "mx1.example.test/192.0.2.1 backup.other.test/192.0.2.2")
	if n := srv.Count("_mta-sts.example.test", dns.TypeTXT); n != 0 || f.calls != 0 {
		t.Errorf("%d TXT lookups, %d policy lookups, want none", n, f.calls)
	}

	dsrv := dnstest.Start(t)
	signed(dsrv)
	dsrv.Add(`_mta-sts.example.test. 300 IN TXT "v=STSv1; id=1"`)
	o := run(t, dsrv, Request{Host: "example.test", DANE: true, STS: f.lookup})
	expect(t, o, "mx1.example.test/192.0.2.1 mx2.example.test/192.0.2.2")
	if f.calls != 0 || o.STS != nil {
		t.Errorf("DANE applies, but the policy was looked up (%d) or applied (%+v)", f.calls, o.STS)
	}
}

// TestSTSParallel: the TXT record is asked in the same round as the MX:
// a cached policy costs no round trip.
func TestSTSParallel(t *testing.T) {
	srv := dnstest.Start(t)
	stsZone(srv)
	g := srv.Together(dnstest.Q("example.test", dns.TypeMX), dnstest.Q("_mta-sts.example.test", dns.TypeTXT))
	f := &stsFake{mode: "enforce", mx: []string{"mx1.example.test"}}
	o := run(t, srv, Request{Host: "example.test", STS: f.lookup})
	expect(t, o, "mx1.example.test/192.0.2.1")
	if w := g.Waiting(srv); len(w) > 0 {
		t.Errorf("never asked: %v", w)
	}
}
