package resolve

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"qmail-remote-go/src/internal/addrlit"
	"qmail-remote-go/src/internal/chainenv"
	"qmail-remote-go/src/internal/report"
)

// Report texts. The first four are stock qmail-remote's (perm_dns,
// temp_dns, perm_nomx, perm_ambigmx): log analysers know them.
const (
	TextNXDomain    = "Sorry, I couldn't find any host named %s. (#5.1.2)"
	TextTempDNS     = "Sorry, I couldn't find any host by that name. (#4.1.2)"
	TextNoMX        = "Sorry, I couldn't find a mail exchanger or IP address. (#5.4.4)"
	TextAmbiguousMX = "Sorry. Although I'm listed as a best-preference MX or A for that host,\nit isn't in my control/locals file, so I don't treat it as local. (#5.4.6)"
	TextNullMX      = "Sorry, %s does not accept mail (null MX, RFC 7505). (#5.1.10)"
	TextRelayNX     = "Sorry, I couldn't find any host named %s (the %s relay). (#4.1.2)"
	TextRelayNoAddr = "Sorry, I couldn't find an IP address for %s (the %s relay). (#4.4.4)"
	TextTimeoutDNS  = "DNS lookups took longer than timeoutdns (%d s)"
	// DANE (RFC 7672): no host is left once those whose TLSA lookup
	// failed, or (dane-only) those without DANE, are set aside.
	TextDANE = "Sorry, no mail exchanger of %s can be used with DANE now. (#4.7.5)"
)

// Bounds on what one delivery may fan out to.
const (
	MaxTargets    = 64  // MX host names looked up (the best ones)
	MaxCandidates = 100 // addresses handed to the connector
)

// Request says what to resolve.
type Request struct {
	Host  string // the host argument: a domain or an address literal
	Relay string // the route's relay ("" for none): a name or an address literal
	// RelayFrom names the file the relay came from, for the texts:
	// "senderroutes", or "" for smtproutes.
	RelayFrom  string
	IPMe       []netip.Addr  // this host's addresses (the ipme rule)
	TimeoutDNS time.Duration // bound on the whole DNS phase; 0: none
	// Shuffle puts MX of equal preference in random order; nil means
	// math/rand/v2's Shuffle. Tests pass their own.
	Shuffle func(n int, swap func(i, j int))
	// DANE looks up the TLSA records of each host reached through
	// DNSSEC-secure answers (RFC 7672 2.2), at the same time as its
	// addresses; the Resolver must report Secure (Client.DNSSEC).
	// DANEOnly also sets aside every host without them.
	DANE, DANEOnly bool
	// Port is the TCP port the TLSA records are for (_PORT._tcp); 0
	// means 25.
	Port int
	// STS, when set, looks for the destination's MTA-STS policy (RFC
	// 8461): its _mta-sts TXT record is asked at the same time as the MX
	// (never for a relay or an address literal), and STS gets what came
	// back and returns the policy that applies, nil for none. It fetches
	// or reads its cache itself, bounded by ctx.
	STS func(ctx context.Context, txt STSRecord) *STSPolicy
}

// Outcome is either candidates (Letter 0) or a message report.
type Outcome struct {
	Candidates []chainenv.Candidate
	// DANE lists the candidates' hosts with secure TLSA records, at most
	// one entry per host name.
	DANE []chainenv.DANEHost
	// STS is the MTA-STS policy that applies (enforce or testing), nil
	// for none. At enforce, the candidates are the hosts it names.
	STS    *STSPolicy
	Letter byte   // 0, report.Temporary or report.Permanent
	Text   string // the report text when Letter is set
}

func permanent(format string, args ...any) Outcome {
	return Outcome{Letter: report.Permanent, Text: fmt.Sprintf(format, args...)}
}

// CheckRelay validates a QMAILREMOTE_RELAY value: an address literal
// ([192.0.2.7], [2001:db8::7], [IPv6:2001:db8::7]), a bare address, or a
// domain name.
func CheckRelay(relay string) error {
	if a, isLit, ok := literal(relay); isLit {
		if !ok {
			return fmt.Errorf("%q is not a valid address literal", relay)
		}
		if !usable(a) {
			return fmt.Errorf("%q is not an address one can connect to", relay)
		}
		return nil
	}
	if !validName(relay) {
		return fmt.Errorf("%q is not a valid host name", relay)
	}
	return nil
}

// literal parses an address literal: [192.0.2.1], [IPv6:2001:db8::1]
// (RFC 5321 4.1.3), [2001:db8::1], or, as stock qmail's dns.c does, a bare
// dotted quad (and here a bare IPv6 address too: no domain has a colon).
// isLit says whether s is meant as a literal (brackets or a bare address);
// ok whether it is a valid one.
func literal(s string) (a netip.Addr, isLit, ok bool) {
	if addrlit.IsLiteral(s) {
		a, ok := addrlit.Parse(s)
		return a, true, ok
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return a, false, false
	}
	return a.Unmap(), true, true
}

// validName accepts what can be asked of the DNS and written in the
// candidate list: printable ASCII without spaces, backslashes (miekg/dns
// would read one as an escape) or slashes. No IDN conversion: a UTF-8
// domain cannot be in the DNS as such (and its bytes may hold Unicode
// spaces, which would split the candidate list).
func validName(s string) bool {
	if s == "" || s == "." {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '\\' || c == '/' {
			return false
		}
	}
	_, ok := dns.IsDomainName(s)
	return ok
}

// usable says whether one can connect to a: not unspecified, "this
// network" 0/8, multicast, 240/4 (broadcast included), or an IPv6
// link-local address (which needs a zone we don't have).
func usable(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || a.IsUnspecified() || a.IsMulticast() {
		return false
	}
	if a.Is4() {
		b := a.As4()
		return b[0] != 0 && b[0] < 240
	}
	return !a.IsLinkLocalUnicast()
}

// Resolve applies the delivery rules of doc/qmail-remote-resolve.md
// (address literals, relays, MX, implicit and null MX, ordering, the ipme
// rule): it returns the ordered candidates, or the report that ends the
// delivery.
func Resolve(ctx context.Context, r Resolver, req Request) Outcome {
	d := &delivery{r: r, req: req}
	if req.TimeoutDNS > 0 {
		d.deadline = time.Now().Add(req.TimeoutDNS)
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.deadline)
		defer cancel()
	}
	ctx, cancel := context.WithCancel(ctx)
	// Ends the lookups nobody waits for any more, and waits for their
	// goroutines: nothing of the resolver may outlive it (the next stage
	// may run in this process).
	defer d.lookups.Wait()
	defer cancel()
	d.ctx = ctx
	if req.Relay != "" {
		return d.relay()
	}
	if a, isLit, ok := literal(req.Host); isLit {
		if !ok || !usable(a) {
			return permanent(TextNXDomain, req.Host)
		}
		if req.DANEOnly {
			return d.literalNotDANE(req.Host)
		}
		return d.finish([]cand{{chainenv.Candidate{Name: "[" + a.String() + "]", Addr: a}, 0}})
	}
	if !validName(req.Host) {
		return permanent(TextNXDomain, req.Host)
	}
	return d.mx()
}

type delivery struct {
	lookups    sync.WaitGroup // the goroutines of start
	ctx        context.Context
	r          Resolver
	req        Request
	deadline   time.Time // of timeoutdns, if set
	tempPref   int       // best preference whose lookup failed temporarily
	tempDetail string    // what failed first
	temp       bool
	dane       []chainenv.DANEHost
	daneAside  []string // hosts DANE set aside, and why
	sts        *STSPolicy
	stsAside   []string // hosts an enforce policy does not name
	stsNone    bool     // and none is left
}

type cand struct {
	chainenv.Candidate
	pref int
}

// pending is a lookup running in its own goroutine.
type pending struct {
	ch   chan Answer
	done bool
	ans  Answer
}

func (d *delivery) start(ctx context.Context, name string, qtype uint16) *pending {
	p := &pending{ch: make(chan Answer, 1)}
	d.lookups.Add(1)
	go func() {
		defer d.lookups.Done()
		p.ch <- d.r.Lookup(ctx, name, qtype)
	}()
	return p
}

func (p *pending) wait() Answer {
	if !p.done {
		p.ans, p.done = <-p.ch, true
	}
	return p.ans
}

// target is one host whose addresses are being looked up.
type target struct {
	name    string // as it goes in the candidate list
	pref    int
	a, aaaa *pending
	// tlsa: its TLSA records, looked up at the same time when DANE may
	// apply; aside: DANE sets it aside (its candidates are dropped).
	tlsa  *pending
	aside bool
}

func (d *delivery) noteTemp(pref int, detail string) {
	if !d.temp || pref < d.tempPref {
		d.tempPref = pref
	}
	if !d.temp {
		d.tempDetail = detail
	}
	d.temp = true
}

// temporary is the stock Z, with a line saying what failed.
func (d *delivery) temporary(detail string) Outcome {
	// A socket deadline may fire a hair before the context's timer does:
	// look at the clock, not at ctx.Err.
	if !d.deadline.IsZero() && !time.Now().Before(d.deadline) {
		detail = fmt.Sprintf(TextTimeoutDNS, int64(d.req.TimeoutDNS/time.Second))
	}
	text := TextTempDNS
	if len(d.daneAside) > 0 {
		text = fmt.Sprintf(TextDANE, d.req.Host)
		if detail != "" && !slices.Contains(d.daneAside, detail) {
			detail = strings.Join(d.daneAside, "\n") + "\n" + detail
		} else {
			detail = strings.Join(d.daneAside, "\n")
		}
	}
	if detail != "" {
		text += "\n" + detail
	}
	return Outcome{Letter: report.Temporary, Text: text}
}

// mx: MX of the host and, speculatively and at the same time, its own A and
// AAAA (needed when there is no MX: that saves a round trip), then A and
// AAAA of every MX at once.
func (d *delivery) mx() Outcome {
	host := show(d.req.Host)
	mxq := d.start(d.ctx, host, dns.TypeMX)
	spec, cancelSpec := context.WithCancel(d.ctx)
	defer cancelSpec()
	self := &target{name: host, pref: 0, a: d.start(spec, host, dns.TypeA), aaaa: d.start(spec, host, dns.TypeAAAA)}
	if d.req.DANE {
		self.tlsa = d.start(spec, d.tlsaName(host), dns.TypeTLSA)
	}
	var sts *pending
	if d.req.STS != nil {
		sts = d.start(d.ctx, stsName(host), dns.TypeTXT)
	}

	mx := mxq.wait()
	switch mx.Kind {
	case NXDomain:
		return permanent(TextNXDomain, d.req.Host)
	case Temporary:
		return d.temporary(mx.Detail)
	case NoData:
		// RFC 5321 5.1: no MX, the host itself is the implicit MX, at
		// preference 0. RFC 7672 2.2.1: DANE applies if the denial of
		// the MX is secure, as are the addresses (daneOf).
		ts := []*target{self}
		d.applyDANE(ts, mx.Secure, host+" MX (none)")
		d.applySTS(sts, ts)
		return d.finish(d.collect(ts))
	}

	// RFC 7505 3: a null MX is a single MX whose exchange is ".".
	var targets []*target
	byName := map[string]*target{} // the same host twice: keep its best preference
	nulls, records := 0, 0
	for _, rr := range mx.Records {
		m, ok := rr.(*dns.MX)
		if !ok {
			continue
		}
		records++
		if m.Mx == "." {
			nulls++
			continue
		}
		name := show(m.Mx)
		if !validName(name) {
			continue // cannot be asked for, nor written in the candidate list
		}
		key := strings.ToLower(name)
		if t := byName[key]; t != nil {
			t.pref = min(t.pref, int(m.Preference))
			continue
		}
		byName[key] = &target{name: name, pref: int(m.Preference)}
		targets = append(targets, byName[key])
	}
	if records > 0 && nulls == records {
		return permanent(TextNullMX, d.req.Host)
	}
	if len(targets) == 0 {
		return permanent("%s", TextNoMX)
	}
	d.order(targets)
	if len(targets) > MaxTargets {
		targets = targets[:MaxTargets]
	}
	usedSelf := false
	for _, t := range targets {
		if strings.EqualFold(t.name, host) && !usedSelf {
			t.a, t.aaaa, usedSelf = self.a, self.aaaa, true
			if mx.Secure {
				t.tlsa = self.tlsa
			}
			continue
		}
		t.a, t.aaaa = d.start(d.ctx, t.name, dns.TypeA), d.start(d.ctx, t.name, dns.TypeAAAA)
		// RFC 7672 2.2.1: only an MX RRset that is secure leads to
		// TLSA lookups of its hosts.
		if d.req.DANE && mx.Secure {
			t.tlsa = d.start(d.ctx, d.tlsaName(t.name), dns.TypeTLSA)
		}
	}
	if !usedSelf {
		cancelSpec()
	}
	d.applyDANE(targets, mx.Secure, host+" MX")
	d.applySTS(sts, targets)
	return d.finish(d.collect(targets))
}

// order sorts by preference, equal preferences in random order (as stock's
// dns_mxip, RFC 5321 5.1).
func (d *delivery) order(ts []*target) {
	slices.SortStableFunc(ts, func(a, b *target) int { return cmp.Compare(a.pref, b.pref) })
	shuffle := d.req.Shuffle
	if shuffle == nil {
		shuffle = rand.Shuffle
	}
	for i := 0; i < len(ts); {
		j := i + 1
		for j < len(ts) && ts[j].pref == ts[i].pref {
			j++
		}
		group := ts[i:j]
		shuffle(len(group), func(x, y int) { group[x], group[y] = group[y], group[x] })
		i = j
	}
}

// collect waits for the targets' lookups and lists their addresses in
// order: each target's IPv6 addresses, then its IPv4 ones; each address
// once, where it first appears.
func (d *delivery) collect(ts []*target) []cand {
	var out []cand
	seen := map[netip.Addr]bool{}
	for _, t := range ts {
		if t.aside {
			continue
		}
		for _, p := range []*pending{t.aaaa, t.a} {
			ans := p.wait()
			if ans.Kind == Temporary {
				d.noteTemp(t.pref, ans.Detail)
				continue
			}
			for _, rr := range ans.Records {
				var a netip.Addr
				switch v := rr.(type) {
				case *dns.A:
					a, _ = netip.AddrFromSlice(v.A)
				case *dns.AAAA:
					a, _ = netip.AddrFromSlice(v.AAAA)
				}
				a = a.Unmap()
				if !usable(a) || seen[a] || len(out) >= MaxCandidates {
					continue
				}
				seen[a] = true
				out = append(out, cand{chainenv.Candidate{Name: t.name, Addr: a}, t.pref})
			}
		}
	}
	return out
}

// finish applies stock qmail-remote's rules to the address list: none and
// a temporary failure is Z (temp_dns), none is D (perm_nomx); then the
// ipme rule: if one of our own addresses is listed, only MX strictly better
// than the best such one are kept, and none left is D (perm_ambigmx).
func (d *delivery) finish(cs []cand) Outcome {
	if len(cs) == 0 {
		if d.stsNone {
			return d.stsRefused()
		}
		if d.temp {
			return d.temporary(d.tempDetail)
		}
		return permanent("%s", TextNoMX)
	}
	prefme := -1
	for _, c := range cs {
		if slices.Contains(d.req.IPMe, c.Addr) && (prefme < 0 || c.pref < prefme) {
			prefme = c.pref
		}
	}
	var out []chainenv.Candidate
	for _, c := range cs {
		if prefme < 0 || c.pref < prefme {
			out = append(out, c.Candidate)
		}
	}
	if len(out) == 0 {
		// Stock bounces here even when a better MX only failed to resolve
		// for now, although that MX may be the one to take the mail: wait.
		if d.temp && d.tempPref < prefme {
			return d.temporary(d.tempDetail)
		}
		return permanent("%s", TextAmbiguousMX)
	}
	return Outcome{Candidates: out, DANE: d.daneFor(out), STS: d.sts}
}

// daneFor keeps the DANE entries of hosts that still have candidates.
func (d *delivery) daneFor(cs []chainenv.Candidate) []chainenv.DANEHost {
	var out []chainenv.DANEHost
	for _, h := range d.dane {
		if slices.ContainsFunc(cs, func(c chainenv.Candidate) bool { return c.Name == h.Name }) {
			out = append(out, h)
		}
	}
	return out
}

// relay: smtproutes sends the mail to a given host. Its A and AAAA are
// looked up at once; no MX, and no ipme rule (so that a route may point at
// this very host, e.g. a filter listening on 127.0.0.1:10025). A relay that
// cannot be found is a broken route: Z, not D (stock bounces), the mail
// waits for the admin to fix it.
func (d *delivery) relay() Outcome {
	relay := d.req.Relay
	if a, isLit, ok := literal(relay); isLit {
		if !ok || !usable(a) {
			return Outcome{Letter: report.Temporary, Text: fmt.Sprintf(TextRelayNoAddr, relay, d.relayFrom())}
		}
		if d.req.DANEOnly {
			return d.literalNotDANE(relay)
		}
		return Outcome{Candidates: []chainenv.Candidate{{Name: "[" + a.String() + "]", Addr: a}}}
	}
	if !validName(relay) {
		return Outcome{Letter: report.Temporary, Text: fmt.Sprintf(TextRelayNX, relay, d.relayFrom())}
	}
	name := show(relay)
	t := &target{name: name, a: d.start(d.ctx, name, dns.TypeA), aaaa: d.start(d.ctx, name, dns.TypeAAAA)}
	if d.req.DANE {
		t.tlsa = d.start(d.ctx, d.tlsaName(name), dns.TypeTLSA)
	}
	// The relay name is the administrator's choice, not an MX answer:
	// the DANE rules start at its addresses (RFC 7672 2.2.2).
	d.applyDANE([]*target{t}, true, "")
	cs := d.collect([]*target{t})
	if len(cs) > 0 {
		out := make([]chainenv.Candidate, len(cs))
		for i, c := range cs {
			out[i] = c.Candidate
		}
		return Outcome{Candidates: out, DANE: d.daneFor(out), STS: d.sts}
	}
	if d.temp {
		return d.temporary(d.tempDetail)
	}
	if t.a.wait().Kind == NXDomain || t.aaaa.wait().Kind == NXDomain {
		return Outcome{Letter: report.Temporary, Text: fmt.Sprintf(TextRelayNX, name, d.relayFrom())}
	}
	return Outcome{Letter: report.Temporary, Text: fmt.Sprintf(TextRelayNoAddr, name, d.relayFrom())}
}

// relayFrom is the file the route's relay came from, as the texts name it.
func (d *delivery) relayFrom() string {
	if d.req.RelayFrom != "" {
		return d.req.RelayFrom
	}
	return "smtproutes"
}
