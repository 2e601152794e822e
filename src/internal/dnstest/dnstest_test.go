package dnstest

import (
	"testing"
	"time"

	"github.com/miekg/dns"
)

func ask(t *testing.T, s *Server, proto, name string, qtype uint16) (*dns.Msg, error) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	c := &dns.Client{Net: proto, Timeout: 500 * time.Millisecond}
	r, _, err := c.Exchange(m, s.Addr())
	return r, err
}

func TestAnswers(t *testing.T) {
	s := Start(t)
	s.Add("example.test. 300 IN MX 10 mx1.example.test.",
		"mx1.example.test. 300 IN A 192.0.2.1",
		"alias.example.test. 300 IN CNAME mx1.example.test.")

	r, err := ask(t, s, "udp", "EXAMPLE.test.", dns.TypeMX)
	if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("MX: %v %v", r, err)
	}
	r, err = ask(t, s, "tcp", "example.test.", dns.TypeA)
	if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
		t.Fatalf("NODATA: %v %v", r, err)
	}
	r, err = ask(t, s, "udp", "nosuch.example.test.", dns.TypeA)
	if err != nil || r.Rcode != dns.RcodeNameError {
		t.Fatalf("NXDOMAIN: %v %v", r, err)
	}
	r, err = ask(t, s, "udp", "alias.example.test.", dns.TypeA)
	if err != nil || len(r.Answer) != 2 {
		t.Fatalf("CNAME chased: %v %v", r, err)
	}
	s.ChaseCNAME(false)
	r, err = ask(t, s, "udp", "alias.example.test.", dns.TypeA)
	if err != nil || len(r.Answer) != 1 || r.Answer[0].Header().Rrtype != dns.TypeCNAME {
		t.Fatalf("CNAME not chased: %v %v", r, err)
	}

	q := s.Queries()
	if len(q) != 5 || q[0].String() != "example.test. MX udp" || q[1].Proto != "tcp" {
		t.Fatalf("queries: %v", q)
	}
	if n := s.Count("alias.example.test", dns.TypeA); n != 2 {
		t.Fatalf("Count = %d", n)
	}
}

func TestFaults(t *testing.T) {
	s := Start(t)
	s.Add("example.test. 300 IN A 192.0.2.1", "example.test. 300 IN AAAA 2001:db8::1")
	s.Fail("example.test", dns.TypeA, dns.RcodeServerFailure)
	r, err := ask(t, s, "udp", "example.test.", dns.TypeA)
	if err != nil || r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("Fail: %v %v", r, err)
	}
	s.Reset("example.test", dns.TypeA)
	s.Truncate("example.test", AnyType)
	r, err = ask(t, s, "udp", "example.test.", dns.TypeAAAA)
	if err != nil || !r.Truncated || len(r.Answer) != 0 {
		t.Fatalf("Truncate udp: %v %v", r, err)
	}
	r, err = ask(t, s, "tcp", "example.test.", dns.TypeAAAA)
	if err != nil || r.Truncated || len(r.Answer) != 1 {
		t.Fatalf("Truncate tcp: %v %v", r, err)
	}
	s.Reset("example.test", AnyType) // (name, AnyType) would win over (AnyName, type)
	s.Garbage(AnyName, dns.TypeA)
	if _, err = ask(t, s, "udp", "example.test.", dns.TypeA); err == nil {
		t.Fatalf("Garbage: no error")
	}
	s.Drop("example.test", dns.TypeA)
	if _, err = ask(t, s, "udp", "example.test.", dns.TypeA); err == nil {
		t.Fatalf("Drop: no error")
	}
	s.Reset("example.test", dns.TypeA)
	s.Delay(AnyName, AnyType, 150*time.Millisecond)
	start := time.Now()
	r, err = ask(t, s, "udp", "example.test.", dns.TypeAAAA)
	if el := time.Since(start); err != nil || el < 150*time.Millisecond {
		t.Fatalf("Delay: %v %v after %v", r, err, el)
	}
}

// A server whose handlers are stuck in Drop or Delay must still close.
func TestCloseWhileDelaying(t *testing.T) {
	s := Start(t)
	s.Delay(AnyName, AnyType, time.Minute)
	go func() {
		m := new(dns.Msg)
		m.SetQuestion("example.test.", dns.TypeA)
		(&dns.Client{Timeout: 5 * time.Second}).Exchange(m, s.Addr())
	}()
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	s.Close()
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("Close took %v", el)
	}
}
