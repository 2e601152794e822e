package resolve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Kind classifies the answer to one lookup.
type Kind int

const (
	Found     Kind = iota // records of the asked type
	NoData                // the name exists, without records of that type (hard)
	NXDomain              // the name does not exist (hard)
	Temporary             // SERVFAIL, REFUSED, timeout, bad reply, network error, CNAME loop
)

func (k Kind) String() string {
	switch k {
	case Found:
		return "found"
	case NoData:
		return "NODATA"
	case NXDomain:
		return "NXDOMAIN"
	}
	return "temporary failure"
}

// Answer is the outcome of one lookup.
type Answer struct {
	Kind    Kind
	Records []dns.RR // Found: the records of the asked type, CNAMEs followed
	Detail  string   // Temporary: what went wrong, for humans
	// Secure: every reply that made this answer (the CNAMEs followed
	// included) came with the AD bit from a nameserver whose AD bit we
	// trust (Client.DNSSEC). Meaningful for Found, NoData and NXDomain.
	Secure bool
	// Name is the owner of Records, or the name whose denial this is:
	// the asked name, or where its CNAMEs led (without a final dot).
	Name string
}

// Resolver looks up one name and type. Client implements it; tests may use
// fakes.
type Resolver interface {
	Lookup(ctx context.Context, name string, qtype uint16) Answer
}

// EDNSSize is the UDP payload size we advertise (RFC 6891): 1232 bytes, the
// DNS flag day 2020 value, avoids IP fragmentation; larger answers come back
// truncated and are fetched again over TCP.
const EDNSSize = 1232

// maxCNAME bounds the CNAMEs followed for one lookup, across queries.
const maxCNAME = 8

// Client is a stub resolver: it asks recursive nameservers, in turn, over
// UDP with EDNS0, retrying over TCP when an answer is truncated.
type Client struct {
	Servers  []string      // "host:port", tried in order
	Timeout  time.Duration // for each query to one server (UDP, then TCP if truncated)
	Attempts int           // rounds over Servers
	// DNSSEC asks for the validation status of each answer: queries
	// carry the AD bit (RFC 6840 5.7, which gets it back from a
	// validating resolver without DO and the RRSIGs DO would add), and
	// an answer is Secure when the reply has it from a trusted server.
	DNSSEC bool
	// TrustAD lists the nameservers whose AD bit counts, besides those
	// on loopback (RFC 4035 4.9.3, RFC 7672 2.1.1: the AD bit is only as
	// good as the path from the validator).
	TrustAD []netip.Addr
}

// trusts says whether server's AD bit counts: a loopback address, or one
// the administrator listed.
func (c *Client) trusts(server string) bool {
	ap, err := netip.ParseAddrPort(server)
	if err != nil {
		return false
	}
	a := ap.Addr().Unmap()
	return a.IsLoopback() || slices.Contains(c.TrustAD, a)
}

// Lookup asks for (name, qtype), following CNAMEs. It gives up when ctx is
// done.
func (c *Client) Lookup(ctx context.Context, name string, qtype uint16) Answer {
	qname := dns.Fqdn(name)
	orig := qname
	seen := map[string]bool{strings.ToLower(qname): true}
	hops := 0
	secure := c.DNSSEC
	for {
		reply, server, detail := c.query(ctx, qname, qtype)
		if reply == nil {
			return Answer{Kind: Temporary, Detail: detail}
		}
		// A chain is secure only if every link is (RFC 4035 4.9.3).
		secure = secure && reply.AuthenticatedData && c.trusts(server)
		// Walk the CNAME chain the answer section holds (RFC 1034 3.6.2).
		cur := qname
		for {
			var recs []dns.RR
			var target string
			for _, rr := range reply.Answer {
				h := rr.Header()
				if h.Class != dns.ClassINET || !strings.EqualFold(h.Name, cur) {
					continue
				}
				if h.Rrtype == qtype {
					recs = append(recs, rr)
				} else if cn, ok := rr.(*dns.CNAME); ok && target == "" {
					target = cn.Target
				}
			}
			if len(recs) > 0 {
				return Answer{Kind: Found, Records: recs, Secure: secure, Name: show(cur)}
			}
			if target == "" {
				break
			}
			hops++
			if seen[strings.ToLower(target)] {
				return Answer{Kind: Temporary, Detail: fmt.Sprintf("%s %s: CNAME loop at %s", show(orig), typeName(qtype), show(target))}
			}
			if hops > maxCNAME {
				return Answer{Kind: Temporary, Detail: fmt.Sprintf("%s %s: more than %d CNAMEs", show(orig), typeName(qtype), maxCNAME)}
			}
			seen[strings.ToLower(target)] = true
			cur = target
		}
		// RFC 6604: the rcode speaks of the last name of the chain.
		if reply.Rcode == dns.RcodeNameError {
			return Answer{Kind: NXDomain, Secure: secure, Name: show(cur)}
		}
		if cur == qname {
			return Answer{Kind: NoData, Secure: secure, Name: show(cur)}
		}
		// The answer stopped at a CNAME whose target it does not cover
		// (a server that does not chase aliases): ask for the target.
		qname = cur
	}
}

// query asks the servers in turn, attempts times over, until one gives an
// answer that is NOERROR or NXDOMAIN. It returns that reply and the server
// that gave it, or nil and what went wrong with the last try.
func (c *Client) query(ctx context.Context, qname string, qtype uint16) (*dns.Msg, string, string) {
	if len(c.Servers) == 0 {
		return nil, "", "no nameserver configured"
	}
	m := new(dns.Msg)
	m.SetQuestion(qname, qtype)
	m.RecursionDesired = true
	m.AuthenticatedData = c.DNSSEC
	m.SetEdns0(EDNSSize, false)
	detail := ""
	for range max(c.Attempts, 1) {
		for _, server := range c.Servers {
			if err := ctx.Err(); err != nil {
				if detail == "" {
					detail = fmt.Sprintf("%s %s: %v", show(qname), typeName(qtype), err)
				}
				return nil, "", detail
			}
			// A fresh ID for each try, so a late reply to an earlier one
			// is not taken for this one.
			m.Id = dns.Id()
			reply, err := c.exchange(ctx, m, server)
			if err == nil {
				err = check(m, reply, server)
			}
			if err == nil {
				return reply, server, ""
			}
			detail = fmt.Sprintf("%s %s: %v", show(qname), typeName(qtype), err)
		}
	}
	return nil, "", detail
}

// exchange sends one query to one server over UDP, then over TCP if the
// answer came back truncated (RFC 1035 4.2.1, RFC 7766).
func (c *Client) exchange(ctx context.Context, m *dns.Msg, server string) (*dns.Msg, error) {
	for _, proto := range []string{"udp", "tcp"} {
		qctx, cancel := context.WithTimeout(ctx, c.Timeout)
		cl := &dns.Client{Net: proto, Timeout: c.Timeout, UDPSize: EDNSSize}
		reply, err := exchangeConn(qctx, cl, m, server)
		cancel()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil, fmt.Errorf("no reply from %s over %s (timeout)", server, proto)
			}
			if isNetErr(err) {
				return nil, fmt.Errorf("%s over %s: %v", server, proto, err)
			}
			return nil, fmt.Errorf("bad reply from %s over %s: %v", server, proto, err)
		}
		if !reply.Truncated {
			return reply, nil
		}
	}
	return nil, fmt.Errorf("truncated reply from %s over TCP", server)
}

// exchangeConn is cl.ExchangeContext, except that the end of ctx ends a
// wait for the reply at once: miekg/dns only takes ctx's deadline, and a
// lookup that nobody waits for any more (the speculative A of a domain
// whose MX came back) would otherwise hold its goroutine and its socket
// until the timeout, past the end of the resolver, in the process where
// the next stage runs.
func exchangeConn(ctx context.Context, cl *dns.Client, m *dns.Msg, server string) (*dns.Msg, error) {
	co, err := cl.DialContext(ctx, server)
	if err != nil {
		return nil, err
	}
	defer co.Close()
	stop := context.AfterFunc(ctx, func() { co.SetDeadline(time.Now()) })
	defer stop()
	reply, _, err := cl.ExchangeWithConnContext(ctx, m, co)
	return reply, err
}

func isNetErr(err error) bool {
	var op *net.OpError
	return errors.As(err, &op)
}

// check accepts a reply to m only if it answers m's question, and says it
// is a usable answer (NOERROR or NXDOMAIN). miekg/dns has checked the ID.
func check(m, r *dns.Msg, server string) error {
	if !r.Response || r.Opcode != dns.OpcodeQuery {
		return fmt.Errorf("reply from %s that is not a query response", server)
	}
	q := m.Question[0]
	if len(r.Question) != 1 || !strings.EqualFold(r.Question[0].Name, q.Name) ||
		r.Question[0].Qtype != q.Qtype || r.Question[0].Qclass != q.Qclass {
		return fmt.Errorf("reply from %s to another question", server)
	}
	switch r.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
		return nil
	}
	rc, ok := dns.RcodeToString[r.Rcode]
	if !ok {
		rc = fmt.Sprintf("rcode %d", r.Rcode)
	}
	return fmt.Errorf("%s from %s", rc, server)
}

// show is a name as people write it: no final dot.
func show(name string) string {
	if len(name) > 1 {
		return strings.TrimSuffix(name, ".")
	}
	return name
}

func typeName(t uint16) string {
	if s, ok := dns.TypeToString[t]; ok {
		return s
	}
	return fmt.Sprintf("TYPE%d", t)
}
