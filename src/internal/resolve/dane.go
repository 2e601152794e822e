package resolve

// DANE for SMTP (RFC 7672 2.2): which hosts get authenticated by their
// TLSA records, and which cannot be used for now.

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/miekg/dns"

	"qmail-remote-go/src/internal/chainenv"
	"qmail-remote-go/src/internal/dane"
)

// tlsaName is where the TLSA records of host are: _PORT._tcp.host
// (RFC 6698 3, RFC 7672 2.2.3).
func (d *delivery) tlsaName(host string) string {
	port := d.req.Port
	if port == 0 {
		port = 25
	}
	return "_" + strconv.Itoa(port) + "._tcp." + host
}

// applyDANE decides, for each target whose TLSA lookup runs, whether DANE
// applies, and sets aside the targets that cannot be used: those whose
// TLSA records cannot be known for now (RFC 7672 2.2: an indeterminate or
// bogus answer must not lead to cleartext or to unauthenticated TLS), and
// at dane-only those without usable DANE. secure says whether what led to
// the targets (the MX RRset, or its denial) is DNSSEC-secure; what names
// it for a dane-only report ("" for a relay).
func (d *delivery) applyDANE(ts []*target, secure bool, what string) {
	if !d.req.DANE {
		return
	}
	// Set aside is never D: the records may be fixed, or come back.
	aside := func(t *target, why string) {
		t.aside = true
		d.daneAside = append(d.daneAside, why)
		d.noteTemp(t.pref, why)
	}
	if !secure && d.req.DANEOnly {
		for _, t := range ts {
			aside(t, what+": not DNSSEC-secure, and control/tlspolicy says dane-only")
		}
		d.daneAside = d.daneAside[:1]
		return
	}
	for _, t := range ts {
		h, why := d.daneOf(t, secure)
		switch {
		case why != "":
			aside(t, t.name+": "+why)
		case h == nil && d.req.DANEOnly:
			aside(t, t.name+": no DNSSEC-secure TLSA records, and control/tlspolicy says dane-only")
		case d.req.DANEOnly && h != nil && !usableTLSA(h.Records):
			// RFC 7672 2.2: such a host gets unauthenticated TLS, which
			// dane-only does not accept.
			aside(t, t.name+": no usable TLSA record (only PKIX-TA, PKIX-EE or unknown parameters), and control/tlspolicy says dane-only")
		case h != nil:
			d.dane = append(d.dane, *h)
		}
	}
}

// daneOf looks at one target's answers: its DANE entry, nil when DANE
// does not apply, or why the host cannot be used now.
func (d *delivery) daneOf(t *target, secure bool) (*chainenv.DANEHost, string) {
	if t.tlsa == nil || !secure {
		return nil, ""
	}
	// RFC 7672 2.2.2: only a host whose addresses are secure has its
	// TLSA records used; an insecure host is not DANE, whatever its TLSA
	// lookup gave. A CNAME among them makes the name it leads to the
	// TLSA base domain, tried first.
	expanded := ""
	for _, p := range []*pending{t.a, t.aaaa} {
		ans := p.wait()
		if ans.Kind == Temporary {
			continue // no candidates from it; the other may have some
		}
		if !ans.Secure {
			return nil, ""
		}
		if ans.Name != "" && !strings.EqualFold(ans.Name, t.name) {
			expanded = ans.Name
		}
	}
	if expanded != "" {
		ans := d.lookupNow(d.tlsaName(expanded), dns.TypeTLSA)
		if h, why, done := tlsaOutcome(ans, []string{expanded, t.name}, t.name); done {
			return h, why
		}
	}
	h, why, _ := tlsaOutcome(t.tlsa.wait(), []string{t.name}, t.name)
	return h, why
}

// lookupNow is one more lookup, waited for.
func (d *delivery) lookupNow(name string, qtype uint16) Answer {
	return d.start(d.ctx, name, qtype).wait()
}

// tlsaOutcome reads one TLSA answer: DANE with these reference names,
// or a failure; done is false when the answer says nothing (insecure, or
// a secure denial), so that the next name may be tried.
func tlsaOutcome(ans Answer, names []string, host string) (h *chainenv.DANEHost, why string, done bool) {
	switch {
	case ans.Kind == Temporary:
		return nil, "TLSA lookup failed: " + ans.Detail, true
	case ans.Kind == Found && ans.Secure:
		var recs []string
		for _, rr := range ans.Records {
			if r, ok := rr.(*dns.TLSA); ok {
				recs = append(recs, tlsaText(r))
			}
		}
		if len(recs) == 0 {
			return nil, "", false
		}
		return &chainenv.DANEHost{Name: host, Names: names, Records: strings.Join(recs, ",")}, "", true
	}
	return nil, "", false
}

// usableTLSA says whether records (dane.EncodeRecords' form) hold one that
// can authenticate a server (RFC 7672 3.1.3).
func usableTLSA(records string) bool {
	recs, err := dane.ParseRecords(records)
	return err == nil && slices.ContainsFunc(recs, dane.Record.Usable)
}

// tlsaText is one record in dane.EncodeRecords' form, U:S:M:HEX.
func tlsaText(r *dns.TLSA) string {
	return fmt.Sprintf("%d:%d:%d:%s", r.Usage, r.Selector, r.MatchingType, strings.ToLower(r.Certificate))
}

// literalNotDANE is the Z for an address literal at dane-only: an
// address has no TLSA records.
func (d *delivery) literalNotDANE(lit string) Outcome {
	d.daneAside = append(d.daneAside, lit+": an address literal has no TLSA records, and control/tlspolicy says dane-only")
	return d.temporary("")
}
