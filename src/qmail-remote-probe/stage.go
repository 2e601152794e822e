package qmailremoteprobe

// The --probe stage runs where qmail-remote-connect would: it reads what
// routes and resolve decided (the candidates, QMAILREMOTE_DANE, the TLS
// policy), probes the candidates instead of delivering, and prints one
// line: {"probe": Result}.

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/miekg/dns"

	"qmail-remote-go/src/internal/addrlit"
	"qmail-remote-go/src/internal/chain"
	"qmail-remote-go/src/internal/chainenv"
	"qmail-remote-go/src/internal/connect"
	"qmail-remote-go/src/internal/dane"
	"qmail-remote-go/src/internal/outgoingip"
	"qmail-remote-go/src/internal/resolve"
	"qmail-remote-go/src/internal/say"
	"qmail-remote-go/src/internal/tcpto"
	"qmail-remote-go/src/internal/tlsio"
)

const probeUsage = "qmail-remote-probe --probe [-n max] [-t seconds]"

// maxRecords bounds the records shown of one lookup.
const maxRecords = 20

// stage is what the probe stage knows of the delivery.
type stage struct {
	host, relay string
	port        int
	helo        string
	// timeoutConnect bounds the connect and the handshake, as in a
	// delivery; timeout each reply and write (timeoutremote, or -t when
	// shorter: a probe must not wait 20 minutes); dnsTimeout the
	// display lookups.
	timeoutConnect, timeout, dnsTimeout time.Duration
	candidates                          []chainenv.Candidate
	dane                                map[string]chainenv.DANEHost
	policy                              connect.Policy
	match, pins                         []string
	auth                                string
	source                              outgoingip.Source // QMAILREMOTE_OUTGOINGIP

	anchors    *tlsio.Anchors // nil: none, or they do not load (anchorsWhy)
	anchorsWhy string
	clientCert *tls.Certificate
	clientWhy  string // the client certificate does not load
	tab        *tcpto.Table
	dns        *resolve.Client // nil: no nameserver (dnsWhy)
	dnsWhy     string
}

func probeMain(args []string) chain.Next {
	fs := flag.NewFlagSet(prog, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	max := fs.Int("n", defaultMax, "")
	secs := fs.Int("t", defaultTimeout, "")
	if err := fs.Parse(args[2:]); err != nil || fs.NArg() != 0 ||
		*max < 1 || *max > maxMax || *secs < 1 || *secs > maxTimeout {
		chain.Usage(probeUsage)
	}
	s, err := readStage(time.Duration(*secs) * time.Second)
	if err != nil {
		chain.Die(chain.ExitUsage, prog, "%v", err)
	}
	b, err := json.Marshal(probeLine{Probe: s.run(*max)})
	if err != nil {
		chain.Die(chain.ExitSystem, prog, "%v", err)
	}
	if _, err := chain.Stdout.Write(append(b, '\n')); err != nil {
		chain.Die(chain.ExitSystem, prog, "unable to write: %v", err)
	}
	return chain.Exit(0)
}

// readStage reads the environment, as the connector and qmail-remote-io
// read it; a bad variable is an error naming it.
func readStage(limit time.Duration) (*stage, error) {
	s := &stage{dane: map[string]chainenv.DANEHost{}}
	var err error
	v, err := chainenv.String(chainenv.Candidates)
	if err != nil {
		return nil, err
	}
	if s.candidates, err = chainenv.ParseCandidates(v); err != nil {
		return nil, err
	}
	if s.host, err = chainenv.String(chainenv.Host); err != nil {
		return nil, err
	}
	s.relay = os.Getenv(chainenv.Relay)
	if s.source, err = outgoingip.ParseEnv(os.Getenv(chainenv.OutgoingIP)); err != nil {
		return nil, &chainenv.Error{Name: chainenv.OutgoingIP, Reason: err.Error()}
	}
	port, err := chainenv.Int(chainenv.Port, 1, 65535)
	if err != nil {
		return nil, err
	}
	s.port = int(port)
	if s.helo, err = chainenv.NonEmpty(chainenv.HeloHost); err != nil {
		return nil, err
	}
	if strings.ContainsAny(s.helo, " \t\r\n\x00") {
		return nil, &chainenv.Error{Name: chainenv.HeloHost, Reason: "holds a space or a control character"}
	}
	if s.timeoutConnect, err = chainenv.Seconds(chainenv.TimeoutConnect, 1); err != nil {
		return nil, err
	}
	remote, err := chainenv.Seconds(chainenv.TimeoutRemote, 1)
	if err != nil {
		return nil, err
	}
	s.timeout = min(remote, limit)
	s.dnsTimeout = limit
	if dnsT, err := chainenv.Seconds(chainenv.TimeoutDNS, 0); err == nil && dnsT > 0 {
		s.dnsTimeout = min(dnsT, limit)
	}
	hosts, err := chainenv.ParseDANE(os.Getenv(chainenv.DANE))
	if err != nil {
		return nil, err
	}
	for _, h := range hosts {
		s.dane[h.Name] = h
	}
	s.policy.Anchors = os.Getenv(chainenv.TrustAnchors) != ""
	if s.policy.Strictness, err = connect.ParseStrictness(os.Getenv(chainenv.TLSStrictness)); err != nil {
		return nil, &chainenv.Error{Name: chainenv.TLSStrictness, Reason: err.Error()}
	}
	s.policy.Level = os.Getenv(chainenv.TLSPolicy)
	if err := connect.ParseLevel(s.policy.Level); err != nil {
		return nil, &chainenv.Error{Name: chainenv.TLSPolicy, Reason: err.Error()}
	}
	s.match = strings.Fields(os.Getenv(chainenv.TLSMatch))
	s.pins = strings.Fields(os.Getenv(chainenv.TLSPins))
	for _, p := range s.pins {
		if _, err := hex.DecodeString(p); err != nil || len(p) != 64 {
			return nil, &chainenv.Error{Name: chainenv.TLSPins, Reason: fmt.Sprintf("holds %q, not 64 hex digits", say.Clip(p, 70))}
		}
	}
	s.auth = os.Getenv(chainenv.Auth)

	home, err := chainenv.AbsPath(chainenv.QmailHome)
	if err != nil {
		return nil, err
	}
	run, err := chainenv.AbsPath(chainenv.QmailRun)
	if err != nil {
		return nil, err
	}
	s.tab = tcpto.Open(home, run)

	// The anchors are read once for every host, whatever the level: the
	// PKIX check is shown for each.
	switch ta := os.Getenv(chainenv.TrustAnchors); {
	case ta == "":
		s.anchorsWhy = "control/trustanchors is not set"
	case strings.HasSuffix(ta, "/"):
		if s.anchors, _, err = tlsio.LoadDir(ta); err != nil {
			s.anchorsWhy = "the trust anchors do not load: " + say.Err(err)
		}
	default:
		if s.anchors, _, err = tlsio.LoadFile(ta); err != nil {
			s.anchorsWhy = "the trust anchors do not load: " + say.Err(err)
		}
	}
	if cert := os.Getenv(chainenv.ClientCert); cert != "" {
		if s.clientCert, err = tlsio.LoadClientCert(cert, os.Getenv(chainenv.ClientKey)); err != nil {
			s.clientWhy = err.Error()
		}
	}

	// The probe's own lookups, for display: the resolver's servers, with
	// the AD bit asked for and trusted as the resolver trusts it.
	if s.dns, err = resolve.LoadConfig(os.Getenv(chainenv.DNSCacheIP)); err != nil {
		s.dns, s.dnsWhy = nil, err.Error()
	} else {
		s.dns.DNSSEC = true
		if _, ok := os.LookupEnv(chainenv.DNSSECResolvers); ok {
			if s.dns.TrustAD, err = chainenv.Addrs(chainenv.DNSSECResolvers); err != nil {
				return nil, err
			}
		}
	}
	return s, nil
}

// tlsaAnswer is a host's TLSA lookup, kept for the DANE check.
type tlsaAnswer struct {
	lookup *Lookup
	recs   []dane.Record
	name   string // the host: the reference name for DANE-TA
}

// run probes the first max candidates, all at once (each is bounded by
// its own timeouts), and makes the display lookups meanwhile.
func (s *stage) run(max int) *Result {
	res := &Result{Candidates: len(s.candidates), Hosts: []Host{}}
	probe := s.candidates[:min(max, len(s.candidates))]
	res.Probed = len(probe)
	for _, c := range s.candidates {
		if _, ok := s.dane[c.Name]; ok && !slices.Contains(res.DANEHosts, c.Name) {
			res.DANEHosts = append(res.DANEHosts, c.Name)
		}
	}
	if mode := os.Getenv(chainenv.STS); mode != "" {
		res.STS = &STS{Mode: mode, Policy: strings.Split(os.Getenv(chainenv.STSPolicy), "\n")}
	}
	if n := len(s.candidates) - len(probe); n > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("%d more candidates not probed (-n %d)", n, max))
	}
	if s.dns == nil {
		res.Notes = append(res.Notes, "no DNS lookups of the probe's own: "+s.dnsWhy)
	}

	ctx, cancel := context.WithTimeout(context.Background(), s.dnsTimeout)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var mxRecs []*dns.MX
	addrs := map[string]*Lookup{}
	tlsas := map[string]*tlsaAnswer{}
	if s.dns != nil {
		if s.relay == "" && !isLiteral(s.host) {
			wg.Go(func() { res.MX, mxRecs = s.lookupMX(ctx) })
		}
		for _, name := range uniqueNames(probe) {
			wg.Go(func() {
				a, t := s.lookupAddrs(ctx, name), s.lookupTLSA(ctx, name)
				mu.Lock()
				addrs[name], tlsas[name] = a, t
				mu.Unlock()
			})
		}
	}
	runs := make([]*hostRun, len(probe))
	var hw sync.WaitGroup
	for i, c := range probe {
		skip := s.tab.Skip(c.Addr)
		hw.Go(func() { runs[i] = s.probeHost(c, skip) })
	}
	hw.Wait()
	wg.Wait()

	for _, r := range runs {
		h := &r.host
		h.Addresses = addrs[h.Name]
		if t := tlsas[h.Name]; t != nil {
			h.TLSA = t.lookup
		}
		h.Preference = preference(h.Name, s.host, res.MX, mxRecs)
		if r.cs != nil {
			h.Checks = s.checks(r, tlsas[h.Name])
		}
		h.Verdict = s.verdict(r)
		res.Hosts = append(res.Hosts, *h)
	}
	for _, m := range mxRecs {
		name := show(m.Mx)
		if name != "." && !slices.ContainsFunc(s.candidates, func(c chainenv.Candidate) bool { return strings.EqualFold(c.Name, name) }) &&
			!slices.Contains(res.NotCandidates, name) {
			res.NotCandidates = append(res.NotCandidates, name)
		}
	}
	return res
}

func isLiteral(host string) bool {
	if addrlit.IsLiteral(host) {
		return true
	}
	return strings.Contains(host, ":") || strings.Trim(host, "0123456789.") == ""
}

// uniqueNames are the host names among the candidates, literals left out.
func uniqueNames(cs []chainenv.Candidate) []string {
	var out []string
	for _, c := range cs {
		if !addrlit.IsLiteral(c.Name) && !slices.Contains(out, c.Name) {
			out = append(out, c.Name)
		}
	}
	return out
}

// preference is the MX preference of a candidate's name, from the
// probe's own MX lookup; 0 for the implicit MX; nil when unknown.
func preference(name, host string, mx *Lookup, recs []*dns.MX) *int {
	if mx == nil {
		return nil
	}
	best := -1
	for _, m := range recs {
		if strings.EqualFold(show(m.Mx), name) && (best < 0 || int(m.Preference) < best) {
			best = int(m.Preference)
		}
	}
	if best < 0 && mx.Status == resolve.NoData.String() && strings.EqualFold(show(host), name) {
		best = 0
	}
	if best < 0 {
		return nil
	}
	return &best
}

func show(name string) string {
	if len(name) > 1 {
		return strings.TrimSuffix(name, ".")
	}
	return name
}

func lookupOf(name, qtype string, ans resolve.Answer) *Lookup {
	l := &Lookup{Name: name, Type: qtype, Status: ans.Kind.String(), Secure: ans.Secure && ans.Kind != resolve.Temporary,
		Error: clean(ans.Detail, 300), Records: []string{}}
	return l
}

func (s *stage) lookupMX(ctx context.Context) (*Lookup, []*dns.MX) {
	host := show(s.host)
	ans := s.dns.Lookup(ctx, host, dns.TypeMX)
	l := lookupOf(host, "MX", ans)
	var recs []*dns.MX
	for _, rr := range ans.Records {
		if m, ok := rr.(*dns.MX); ok {
			recs = append(recs, m)
		}
	}
	slices.SortStableFunc(recs, func(a, b *dns.MX) int { return int(a.Preference) - int(b.Preference) })
	for _, m := range recs[:min(len(recs), maxRecords)] {
		l.Records = append(l.Records, fmt.Sprintf("%d %s", m.Preference, clean(show(m.Mx), 255)))
	}
	return l, recs
}

// lookupAddrs is the A and AAAA of a host as one lookup: secure when
// every answer that came is (RFC 7672 2.2.2: DANE needs secure
// addresses).
func (s *stage) lookupAddrs(ctx context.Context, name string) *Lookup {
	var a, aaaa resolve.Answer
	var wg sync.WaitGroup
	wg.Go(func() { a = s.dns.Lookup(ctx, name, dns.TypeA) })
	wg.Go(func() { aaaa = s.dns.Lookup(ctx, name, dns.TypeAAAA) })
	wg.Wait()
	l := &Lookup{Name: name, Type: "A/AAAA", Records: []string{}}
	answered, secure := 0, true
	for _, ans := range []resolve.Answer{aaaa, a} {
		if ans.Kind == resolve.Temporary {
			l.Error = clean(ans.Detail, 300)
			continue
		}
		answered++
		secure = secure && ans.Secure
		for _, rr := range ans.Records {
			if len(l.Records) >= maxRecords {
				break
			}
			switch v := rr.(type) {
			case *dns.A:
				l.Records = append(l.Records, v.A.String())
			case *dns.AAAA:
				l.Records = append(l.Records, v.AAAA.String())
			}
		}
	}
	l.Secure = answered > 0 && secure
	switch {
	case a.Kind == resolve.Found || aaaa.Kind == resolve.Found:
		l.Status = resolve.Found.String()
	case answered < 2:
		l.Status = resolve.Temporary.String()
	case a.Kind == resolve.NXDomain && aaaa.Kind == resolve.NXDomain:
		l.Status = resolve.NXDomain.String()
	default:
		l.Status = resolve.NoData.String()
	}
	return l
}

// lookupTLSA looks up _PORT._tcp.name, whatever the policy: the probe
// shows the records even where a delivery would not look (no dane level).
func (s *stage) lookupTLSA(ctx context.Context, name string) *tlsaAnswer {
	qname := "_" + strconv.Itoa(s.port) + "._tcp." + name
	ans := s.dns.Lookup(ctx, qname, dns.TypeTLSA)
	t := &tlsaAnswer{lookup: lookupOf(qname, "TLSA", ans)}
	for _, rr := range ans.Records {
		r, ok := rr.(*dns.TLSA)
		if !ok || len(t.recs) >= maxRecords {
			continue
		}
		data, err := hex.DecodeString(r.Certificate)
		if err != nil {
			continue
		}
		rec := dane.Record{Usage: r.Usage, Selector: r.Selector, MatchingType: r.MatchingType, Data: data}
		t.recs = append(t.recs, rec)
		t.lookup.Records = append(t.lookup.Records, clean(recordText(rec), 300))
	}
	t.name = name
	return t
}

// recordText is a record as a zone file writes it.
func recordText(r dane.Record) string { return r.String() }

// clean makes a string from the network safe to print and store:
// control bytes and invalid UTF-8 become '?', and it is cut at max bytes.
func clean(s string, max int) string {
	s = strings.ToValidUTF8(s, "?")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 {
			return '?'
		}
		return r
	}, s)
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
