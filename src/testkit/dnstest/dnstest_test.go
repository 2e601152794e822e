package dnstest

import (
	"fmt"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// answerWait is how long ask waits for an answer: a backstop far above
// what the server takes, loaded machine or not, so that a test never
// mistakes a slow answer for none.
const answerWait = 20 * time.Second

func ask(t *testing.T, s *Server, proto, name string, qtype uint16) (*dns.Msg, error) {
	t.Helper()
	return askWithin(s, proto, name, qtype, answerWait)
}

// askWithin asks with the given timeout: short ones only where no answer
// is expected (Drop), so that the wait is all the test costs.
func askWithin(s *Server, proto, name string, qtype uint16, d time.Duration) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	c := &dns.Client{Net: proto, Timeout: d}
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
	// No answer at all: a short wait is enough to see none come.
	s.Drop("example.test", dns.TypeA)
	if _, err = askWithin(s, "udp", "example.test.", dns.TypeA, 200*time.Millisecond); err == nil {
		t.Fatalf("Drop: no error")
	}
	if n := s.Count("example.test", dns.TypeA); n < 1 {
		t.Fatalf("Drop: the query never arrived")
	}
	s.Reset("example.test", dns.TypeA)
	// A delay is a lower bound (timers never fire early); how much later
	// the answer comes depends on the machine, and is not checked.
	s.Delay(AnyName, AnyType, 150*time.Millisecond)
	start := time.Now()
	r, err = ask(t, s, "udp", "example.test.", dns.TypeAAAA)
	if el := time.Since(start); err != nil || len(r.Answer) != 1 || el < 150*time.Millisecond {
		t.Fatalf("Delay: %v %v after %v", r, err, el)
	}
}

// Together holds the answers of a group until each of its questions has
// been asked; other questions are answered at once, and so is a question
// asked again after the release.
func TestTogether(t *testing.T) {
	s := Start(t)
	s.Add("a.test. 300 IN A 192.0.2.1", "b.test. 300 IN A 192.0.2.2", "c.test. 300 IN A 192.0.2.3")
	g := s.Together(Q("a.test", dns.TypeA), Q("B.test.", dns.TypeA))
	got := make(chan error, 1)
	go func() {
		r, err := askWithin(s, "udp", "a.test.", dns.TypeA, answerWait)
		if err == nil && len(r.Answer) != 1 {
			err = fmt.Errorf("answer %v", r)
		}
		got <- err
	}()
	// Not in the group: answered while a.test waits.
	if r, err := ask(t, s, "tcp", "c.test.", dns.TypeA); err != nil || len(r.Answer) != 1 {
		t.Fatalf("c.test: %v %v", r, err)
	}
	// a.test's question has arrived (the log says so) and is held: no
	// answer can have come, since b.test has not been asked.
	for i := 0; s.Count("a.test", dns.TypeA) == 0; i++ {
		if i == 2000 {
			t.Fatal("the question for a.test never arrived")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-got:
		t.Fatalf("a.test answered before b.test was asked: %v", err)
	default:
	}
	if w := g.Waiting(s); len(w) != 1 || w[0] != Q("b.test", dns.TypeA) {
		t.Fatalf("waiting for %v, want b.test A", w)
	}
	if r, err := ask(t, s, "udp", "b.test.", dns.TypeA); err != nil || len(r.Answer) != 1 {
		t.Fatalf("b.test: %v %v", r, err)
	}
	if err := <-got; err != nil {
		t.Fatalf("a.test: %v", err)
	}
	if w := g.Waiting(s); len(w) != 0 {
		t.Fatalf("released, but waiting for %v", w)
	}
	// Released: asked again, answered at once.
	if r, err := ask(t, s, "udp", "a.test.", dns.TypeA); err != nil || len(r.Answer) != 1 {
		t.Fatalf("a.test again: %v %v", r, err)
	}
}

// A server whose handlers are stuck in Drop, Delay or Together must still
// close, and every handler must return: the delay (a minute) is twice
// what shutdown waits for them, so a handler that ignored Close would
// make it fail.
func TestCloseWhileDelaying(t *testing.T) {
	s := Start(t)
	s.Delay(AnyName, AnyType, time.Minute)
	s.Together(Q("held.test", dns.TypeA), Q("never.test", dns.TypeA))
	for _, name := range []string{"example.test.", "held.test."} {
		go askWithin(s, "udp", name, dns.TypeA, 2*time.Minute)
	}
	for i := 0; len(s.Queries()) < 2; i++ {
		if i == 2000 {
			t.Fatalf("the queries never arrived: %v", s.Queries())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.shutdown(30 * time.Second); err != nil {
		t.Fatalf("handlers still running after Close: %v", err)
	}
}
