// Package dnstest is a scriptable DNS server for tests. It listens on
// 127.0.0.1, UDP and TCP on the same port, answers from zone-file records
// the test adds, and misbehaves on demand per name and type: fails with an
// rcode, never answers, answers late, truncates, or sends garbage. It logs
// every query so tests can check what was asked and over which protocol,
// and it can hold answers until a set of questions has been asked
// (Together), so that a test proves by structure, not by the clock, that a
// client asks them in parallel.
//
// It behaves like a recursive resolver seen from a stub client: it follows
// CNAMEs within its own data (ChaseCNAME(false) turns that off, to look like
// an authoritative server outside its zone), a name without any record is
// NXDOMAIN, a name with records but none of the asked type is NOERROR with
// an empty answer (NODATA).
package dnstest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// AnyName and AnyType are wildcards for the fault-setting methods: a fault
// set for (AnyName, dns.TypeMX) applies to every MX query; a fault set for
// (name, AnyType) to every query for name. The most specific setting wins:
// (name, type), then (name, AnyType), then (AnyName, type), then
// (AnyName, AnyType).
const (
	AnyName        = ""
	AnyType uint16 = 0
)

// Bounds, so that a broken test cannot make the server grow without end.
const (
	maxQueries = 100000           // log entries kept
	maxDelay   = 60 * time.Second // longest Delay honoured
	maxChase   = 16               // CNAMEs followed in one answer

	udpReadBuffer = 4 << 20 // bytes of queries the UDP socket may queue
)

// Query is one logged query.
type Query struct {
	Name  string // as asked, lower case, with the final dot
	Type  uint16 // dns.TypeMX etc.
	Proto string // "udp" or "tcp"
	Time  time.Time
	AD    bool // the query asked for the AD bit (RFC 6840 5.7)
}

// String formats a query as "example.test. MX udp".
func (q Query) String() string {
	return q.Name + " " + dns.TypeToString[q.Type] + " " + q.Proto
}

type faultKind int

const (
	faultNone faultKind = iota
	faultRcode
	faultDrop
	faultTruncate
	faultGarbage
	faultCustom
)

type fault struct {
	kind   faultKind
	rcode  int
	custom func(req *dns.Msg) *dns.Msg
}

type key struct {
	name  string
	qtype uint16
}

// Server is a running test DNS server.
type Server struct {
	addr    string
	udp     *dns.Server
	tcp     *dns.Server
	done    chan struct{}
	mu      sync.Mutex
	records map[string][]dns.RR // by lower-case owner name
	faults  map[key]fault
	delays  map[key]time.Duration
	queries []Query
	groups  []*Group
	chase   bool
	secure  map[string]bool // Secure
	closed  bool
}

// Question is a name and a type, for Together.
type Question struct {
	Name string
	Type uint16
}

// Q is a Question for name ("example.test" or "example.test.", any case)
// and qtype.
func Q(name string, qtype uint16) Question { return Question{canon(name), qtype} }

func (q Question) String() string { return q.Name + " " + dns.TypeToString[q.Type] }

// Group is a set of questions whose answers the server holds until every
// one of them has been asked (Together).
type Group struct {
	asked   map[Question]bool // every question of the group: asked yet?
	release chan struct{}     // closed once all are asked
}

// Waiting returns the questions of the group not asked yet, sorted; none
// once the group is released.
func (g *Group) Waiting(s *Server) []Question {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Question
	for q, ok := range g.asked {
		if !ok {
			out = append(out, q)
		}
	}
	slices.SortFunc(out, func(a, b Question) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Type, b.Type))
	})
	return out
}

// Start starts a server on 127.0.0.1 (UDP and TCP, one port) and stops it
// when the test ends. It skips the test if no port can be had.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		done:    make(chan struct{}),
		records: map[string][]dns.RR{},
		faults:  map[key]fault{},
		delays:  map[key]time.Duration{},
		chase:   true,
	}
	// The UDP port the kernel picks may be taken for TCP: try a few times.
	var pc net.PacketConn
	var ln net.Listener
	var err error
	for range 20 {
		pc, err = net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			break
		}
		ln, err = net.Listen("tcp4", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		pc = nil
	}
	if err != nil || pc == nil || ln == nil {
		t.Skipf("dnstest: cannot listen on 127.0.0.1: %v", err)
	}
	// A client may send hundreds of queries at once (a test of many
	// deliveries in parallel): room for them, so that none is dropped
	// and answered only after the client's retry timeout, or not at all.
	// Best effort: the kernel caps it (net.core.rmem_max).
	if uc, ok := pc.(*net.UDPConn); ok {
		uc.SetReadBuffer(udpReadBuffer)
	}
	s.addr = pc.LocalAddr().String()
	started := make(chan struct{}, 2)
	notify := func() { started <- struct{}{} }
	s.udp = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(s.serve), NotifyStartedFunc: notify}
	s.tcp = &dns.Server{Listener: ln, Handler: dns.HandlerFunc(s.serve), NotifyStartedFunc: notify}
	go s.udp.ActivateAndServe()
	go s.tcp.ActivateAndServe()
	for range 2 {
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatalf("dnstest: server did not start")
		}
	}
	t.Cleanup(s.Close)
	return s
}

// Addr returns "127.0.0.1:port", for both UDP and TCP.
func (s *Server) Addr() string { return s.addr }

// Close stops the server; handlers waiting in Delay, Drop or Together
// return at once. Called automatically when the test ends.
func (s *Server) Close() { s.shutdown(closeWait) }

// closeWait bounds how long Close waits for the handlers to return: a
// backstop, they return at once.
const closeWait = 30 * time.Second

// shutdown closes the server and waits up to d for every handler to
// return; an error says some did not.
func (s *Server) shutdown(d time.Duration) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var errs []error
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		// miekg/dns returns once the serve loop and every handler it
		// started have returned.
		if err := srv.ShutdownContext(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Add adds records given in zone-file syntax, one per string, e.g.
// "example.test. 300 IN MX 10 mx1.example.test.". Names should be fully
// qualified (a missing final dot is added by dns.NewRR's default origin
// "."). A string that does not parse is a programming error: Add panics.
func (s *Server) Add(rrs ...string) {
	for _, text := range rrs {
		rr, err := dns.NewRR(text)
		if err != nil || rr == nil {
			panic(fmt.Sprintf("dnstest: bad record %q: %v", text, err))
		}
		name := canon(rr.Header().Name)
		s.mu.Lock()
		s.records[name] = append(s.records[name], rr)
		s.mu.Unlock()
	}
}

// ChaseCNAME sets whether answers follow CNAMEs within the server's data
// (default true, like a recursive resolver). With false, a query for a name
// that has a CNAME gets only the CNAME, and the client must ask again.
func (s *Server) ChaseCNAME(on bool) {
	s.mu.Lock()
	s.chase = on
	s.mu.Unlock()
}

// Fail makes queries for (name, qtype) answer with rcode and no records,
// e.g. dns.RcodeServerFailure, dns.RcodeRefused, dns.RcodeNameError.
func (s *Server) Fail(name string, qtype uint16, rcode int) {
	s.setFault(name, qtype, fault{kind: faultRcode, rcode: rcode})
}

// Drop makes queries for (name, qtype) go unanswered (the client times out).
func (s *Server) Drop(name string, qtype uint16) {
	s.setFault(name, qtype, fault{kind: faultDrop})
}

// Truncate makes UDP answers for (name, qtype) carry the TC bit and no
// records; over TCP the normal answer is given.
func (s *Server) Truncate(name string, qtype uint16) {
	s.setFault(name, qtype, fault{kind: faultTruncate})
}

// Garbage makes the server answer (name, qtype) with bytes that are not a
// DNS message (but carry the query's ID, so the client must parse them).
func (s *Server) Garbage(name string, qtype uint16) {
	s.setFault(name, qtype, fault{kind: faultGarbage})
}

// Custom makes the server answer (name, qtype) with whatever fn returns for
// the request (nil: no answer). For oddities the other methods don't cover,
// such as a reply for another question.
func (s *Server) Custom(name string, qtype uint16, fn func(req *dns.Msg) *dns.Msg) {
	s.setFault(name, qtype, fault{kind: faultCustom, custom: fn})
}

// Delay makes the server wait d before answering (name, qtype), whatever
// the answer is (faults still apply after the wait). d is capped at a
// minute; Close ends the wait.
func (s *Server) Delay(name string, qtype uint16, d time.Duration) {
	if d > maxDelay {
		d = maxDelay
	}
	s.mu.Lock()
	s.delays[key{canon(name), qtype}] = d
	s.mu.Unlock()
}

// Together makes the server hold the answers to the questions qs until
// each of them has been asked at least once; then it answers them all, and
// answers a question asked again at once. A client that waited for one
// answer before asking the next of these questions would never get one: it
// times out, or the server closes at the end of the test. So a test that
// gets its answers has proved that the questions were out together,
// whatever the machine's load, with no clock involved. Questions outside
// qs are not held. Each call makes a new group, for instance one per round
// of lookups; a question in several groups not yet released counts for the
// first of them. Faults and delays apply after the hold.
func (s *Server) Together(qs ...Question) *Group {
	g := &Group{asked: map[Question]bool{}, release: make(chan struct{})}
	for _, q := range qs {
		g.asked[Question{canon(q.Name), q.Type}] = false
	}
	s.mu.Lock()
	s.groups = append(s.groups, g)
	s.mu.Unlock()
	return g
}

// hold notes the question in the first group not yet released that has
// it, and returns that group's release channel (nil: not held).
func (s *Server) hold(q Question) <-chan struct{} {
	for _, g := range s.groups {
		asked, in := g.asked[q]
		select {
		case <-g.release:
			continue
		default:
		}
		if !in {
			continue
		}
		if !asked {
			g.asked[q] = true
			all := true
			for _, a := range g.asked {
				all = all && a
			}
			if all {
				close(g.release)
			}
		}
		return g.release
	}
	return nil
}

// Reset removes the fault and the delay set for exactly (name, qtype).
func (s *Server) Reset(name string, qtype uint16) {
	k := key{canon(name), qtype}
	s.mu.Lock()
	delete(s.faults, k)
	delete(s.delays, k)
	s.mu.Unlock()
}

// Queries returns the queries received so far, in arrival order.
func (s *Server) Queries() []Query {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Query(nil), s.queries...)
}

// Count returns how many queries for (name, qtype) arrived (wildcards
// allowed), over either protocol.
func (s *Server) Count(name string, qtype uint16) int {
	name = canon(name)
	n := 0
	for _, q := range s.Queries() {
		if (name == AnyName || q.Name == name) && (qtype == AnyType || q.Type == qtype) {
			n++
		}
	}
	return n
}

func (s *Server) setFault(name string, qtype uint16, f fault) {
	s.mu.Lock()
	s.faults[key{canon(name), qtype}] = f
	s.mu.Unlock()
}

// canon lower-cases a name and makes it fully qualified; AnyName stays.
func canon(name string) string {
	if name == AnyName {
		return AnyName
	}
	return strings.ToLower(dns.Fqdn(name))
}

func lookup[V any](m map[key]V, name string, qtype uint16) (V, bool) {
	for _, k := range []key{{name, qtype}, {name, AnyType}, {AnyName, qtype}, {AnyName, AnyType}} {
		if v, ok := m[k]; ok {
			return v, true
		}
	}
	var zero V
	return zero, false
}

func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg) {
	proto := "udp"
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		proto = "tcp"
	}
	if len(req.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeFormatError)
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := canon(q.Name)
	s.mu.Lock()
	if len(s.queries) < maxQueries {
		s.queries = append(s.queries, Query{Name: name, Type: q.Qtype, Proto: proto, Time: time.Now(), AD: req.AuthenticatedData})
	}
	delay, _ := lookup(s.delays, name, q.Qtype)
	f, _ := lookup(s.faults, name, q.Qtype)
	release := s.hold(Question{name, q.Qtype})
	s.mu.Unlock()

	if release != nil {
		select {
		case <-release:
		case <-s.done:
			return
		}
	}
	if delay > 0 {
		timer := time.NewTimer(delay)
		select {
		case <-timer.C:
		case <-s.done:
			timer.Stop()
			return
		}
	}

	switch f.kind {
	case faultDrop:
		return
	case faultGarbage:
		// The query's ID, then bytes that claim 1 question and run out.
		b := []byte{byte(req.Id >> 8), byte(req.Id), 0x81, 0x80, 0, 1, 0, 5, 0, 0, 0, 0, 7, 'g', 'a', 'r'}
		w.Write(b)
		return
	case faultCustom:
		if m := f.custom(req); m != nil {
			w.WriteMsg(m)
		}
		return
	}

	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	switch {
	case f.kind == faultRcode:
		m.Rcode = f.rcode
	case f.kind == faultTruncate && proto == "udp":
		m.Truncated = true
	default:
		s.answer(m, name, q.Qtype)
		m.AuthenticatedData = s.validated(req, m)
	}
	if proto == "udp" {
		// RFC 6891 7: answers over UDP fit the client's buffer, else TC.
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil && int(opt.UDPSize()) > size {
			size = int(opt.UDPSize())
		}
		m.Truncate(size)
	}
	w.WriteMsg(m)
}

// Secure marks names as DNSSEC-secure: an answer about them gets the AD
// bit when the query asks for it (AD, or DO), as from a validating
// resolver. A name starting with "." marks every name under it; an
// answer is secure when every name it holds (the one asked, and where
// its CNAMEs lead) is.
func (s *Server) Secure(names ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.secure == nil {
		s.secure = map[string]bool{}
	}
	for _, n := range names {
		if strings.HasPrefix(n, ".") {
			s.secure["."+canon(n[1:])] = true
		} else {
			s.secure[canon(n)] = true
		}
	}
}

// validated is the AD bit of the reply m to req.
func (s *Server) validated(req, m *dns.Msg) bool {
	opt := req.IsEdns0()
	if !req.AuthenticatedData && (opt == nil || !opt.Do()) {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	isSecure := func(name string) bool {
		name = canon(name)
		if s.secure[name] {
			return true
		}
		for i := 0; i < len(name); i++ {
			if name[i] == '.' && s.secure[name[i:]] {
				return true
			}
		}
		return false
	}
	if !isSecure(req.Question[0].Name) {
		return false
	}
	for _, rr := range m.Answer {
		if !isSecure(rr.Header().Name) {
			return false
		}
		if c, ok := rr.(*dns.CNAME); ok && !isSecure(c.Target) {
			return false
		}
	}
	return true
}

// answer fills m with the records for (name, qtype), following CNAMEs if
// chasing is on.
func (s *Server) answer(m *dns.Msg, name string, qtype uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range maxChase {
		rrs, exists := s.records[name]
		if !exists {
			m.Rcode = dns.RcodeNameError
			return
		}
		var cname *dns.CNAME
		found := false
		for _, rr := range rrs {
			if rr.Header().Rrtype == qtype || qtype == dns.TypeANY {
				m.Answer = append(m.Answer, dns.Copy(rr))
				found = true
			} else if c, ok := rr.(*dns.CNAME); ok {
				cname = c
			}
		}
		if found || cname == nil {
			return
		}
		m.Answer = append(m.Answer, dns.Copy(cname))
		if !s.chase {
			return
		}
		name = canon(cname.Target)
	}
}
