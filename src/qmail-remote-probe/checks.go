package qmailremoteprobe

// Each verification method on the chain the server sent, and what a
// delivery would do with the host. The methods are tlsio's and dane's own
// (the delivery's code), run on the probe's session.

import (
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"qmail-remote-go/src/internal/chainenv"
	"qmail-remote-go/src/internal/connect"
	"qmail-remote-go/src/internal/dane"
	"qmail-remote-go/src/internal/tlsio"
)

const (
	pass    = "pass"
	fail    = "fail"
	skipped = "skipped"
)

func (s *stage) checks(r *hostRun, own *tlsaAnswer) *Checks {
	certs := r.cs.PeerCertificates
	ck := &Checks{Records: []TLSACheck{}}
	now := time.Now()
	reason := func(err error, c tlsio.Config) string {
		return clean(tlsio.Reason(err, c, s.timeoutConnect, now), 500)
	}
	if len(certs) == 0 {
		none := Check{Result: fail, Detail: "the server presented no certificate"}
		ck.PKIX, ck.Chain, ck.Name, ck.DANE, ck.Pins, ck.Delivery = none, none, none, none, none, none
		return ck
	}
	leaf := certs[0]

	// PKIX as level verify does it: the chain to the anchors, for the
	// MX name or one of the match= names.
	if s.anchors == nil {
		ck.PKIX = Check{Result: skipped, Detail: s.anchorsWhy}
		ck.Chain = ck.PKIX
	} else {
		pc := tlsio.Config{Server: r.server, Level: chainenv.LevelVerify, Anchors: s.anchors, Match: s.match}
		if err := pc.TLSConfig().VerifyConnection(*r.cs); err != nil {
			ck.PKIX = Check{Result: fail, Detail: reason(err, pc)}
		} else {
			ck.PKIX = Check{Result: pass, By: "PKIX", Detail: "the chain verifies against control/trustanchors, for " + s.names(r)}
		}
		inter := x509.NewCertPool()
		for _, c := range certs[1:] {
			inter.AddCert(c)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: s.anchors.Pool(certs), Intermediates: inter}); err != nil {
			ck.Chain = Check{Result: fail, Detail: reason(err, pc)}
		} else {
			ck.Chain = Check{Result: pass, Detail: "the chain ends at one of control/trustanchors"}
		}
	}

	// The name alone, whatever the chain.
	switch {
	case len(s.match) > 0:
		if tlsio.MatchNames(leaf, s.match) {
			ck.Name = Check{Result: pass, Detail: "the certificate is for one of the match= names " + strings.Join(s.match, ", ")}
		} else {
			ck.Name = Check{Result: fail, Detail: clean((&tlsio.MatchError{Cert: leaf, Names: s.match}).Error(), 500)}
		}
	default:
		want := r.server.Name
		if r.server.Literal.IsValid() {
			want = r.server.Literal.String()
		}
		if err := leaf.VerifyHostname(strings.TrimSuffix(want, ".")); err != nil {
			ck.Name = Check{Result: fail, Detail: reason(err, tlsio.Config{Server: r.server})}
		} else {
			ck.Name = Check{Result: pass, Detail: "the certificate is for " + r.server.Name}
		}
	}

	ck.DANE, ck.Records = s.daneCheck(r, own, certs, now)

	switch {
	case len(s.pins) == 0:
		ck.Pins = Check{Result: skipped, Detail: "no pins (control/tlspolicy)"}
	case dane.MatchPins(leaf, s.pins):
		ck.Pins = Check{Result: pass, By: "key pin", Detail: "the server's key is one of the pins"}
	default:
		ck.Pins = Check{Result: fail, Detail: (&tlsio.PinError{SPKI: dane.SPKISHA256(leaf)}).Error()}
	}

	switch {
	case r.host.Mode == connect.ModeNone:
		ck.Delivery = Check{Result: skipped, Detail: "a delivery would not do STARTTLS with this host"}
	case r.cfgWhy != "":
		ck.Delivery = Check{Result: fail, Detail: r.cfgWhy}
	case r.verifyErr != nil:
		ck.Delivery = Check{Result: fail, Detail: reason(r.verifyErr, *r.cfg)}
	case r.authBy != "":
		ck.Delivery = Check{Result: pass, By: r.authBy, Detail: "authenticated by " + r.authBy}
	default:
		ck.Delivery = Check{Result: pass, Detail: "accepted without authentication (" + s.unverifiedWhy(r) + ")"}
	}
	return ck
}

// names are what PKIX checks the certificate against.
func (s *stage) names(r *hostRun) string {
	if len(s.match) > 0 {
		return "one of " + strings.Join(s.match, ", ") + " (match=)"
	}
	return r.server.Name
}

// daneCheck runs dane.Verify on the host's records: those the resolver
// found (the delivery's), else those of the probe's own lookup.
func (s *stage) daneCheck(r *hostRun, own *tlsaAnswer, certs []*x509.Certificate, now time.Time) (Check, []TLSACheck) {
	var recs []dane.Record
	var names []string
	var whose string
	if d, ok := s.dane[r.cand.Name]; ok {
		var err error
		if recs, err = dane.ParseRecords(d.Records); err != nil {
			return Check{Result: fail, Detail: "QMAILREMOTE_DANE: " + err.Error()}, []TLSACheck{}
		}
		names = d.Names
		whose = "the DNSSEC-secure records qmail-remote-resolve found"
	} else if own != nil && len(own.recs) > 0 {
		recs, names = own.recs, []string{own.name}
		switch {
		case !own.lookup.Secure:
			whose = "the probe's lookup, not DNSSEC-secure: a delivery never uses them"
		case s.policy.Level != chainenv.LevelDANE && s.policy.Level != chainenv.LevelDANEOnly:
			whose = "the probe's lookup, DNSSEC-secure, but a delivery does not look for them: control/tlspolicy does not say dane"
		default:
			whose = "the probe's lookup, DNSSEC-secure, but qmail-remote-resolve did not use them (the MX or the host's addresses are not DNSSEC-secure)"
		}
	}
	if len(recs) == 0 {
		why := "no TLSA records"
		switch {
		case r.cand.Name != "" && r.server.Literal.IsValid():
			why = "an address literal has no TLSA records"
		case own == nil:
			why = "no TLSA lookup"
		case own.lookup.Status != "found":
			why = "no TLSA records (" + own.lookup.Status + ")"
		}
		return Check{Result: skipped, Detail: why}, []TLSACheck{}
	}
	var each []TLSACheck
	for _, rec := range recs {
		tc := TLSACheck{Record: clean(rec.String(), 300), Usable: rec.Usable(), Matches: []int{}}
		for i, c := range certs {
			if rec.Matches(c) {
				tc.Matches = append(tc.Matches, i)
			}
		}
		each = append(each, tc)
	}
	res, err := dane.Verify(certs, recs, names, now)
	switch {
	case errors.Is(err, dane.ErrNoUsable):
		return Check{Result: fail, Detail: err.Error() + "; " + whose}, each
	case err != nil:
		return Check{Result: fail, Detail: clean(err.Error(), 500) + "; " + whose}, each
	}
	by := fmt.Sprintf("%s %d %d %d", res.Method, res.Record.Usage, res.Record.Selector, res.Record.MatchingType)
	return Check{Result: pass, By: by, Detail: fmt.Sprintf("%s matches the certificate at depth %d; %s", by, res.Depth, whose)}, each
}

// unverifiedWhy says why a delivery accepts this server unauthenticated.
func (s *stage) unverifiedWhy(r *hostRun) string {
	switch r.host.Level {
	case chainenv.LevelDANE:
		return "no usable TLSA record: RFC 7672 2.2"
	case chainenv.LevelEncrypt:
		return "level encrypt"
	case chainenv.LevelMay:
		return "level may"
	}
	return fmt.Sprintf("tlsstrictness %d", s.policy.Strictness)
}

// hostPolicy says which rule applies to this host, in words.
func (s *stage) hostPolicy(c chainenv.Candidate, level string, hasDANE bool) string {
	p := s.policy
	pins := ""
	if len(s.pins) > 0 {
		pins = fmt.Sprintf("; the key must be one of %d pins", len(s.pins))
	}
	name := c.Name
	if len(s.match) > 0 {
		name = "one of " + strings.Join(s.match, ", ")
	}
	switch {
	case p.Level == chainenv.LevelDANEOnly && !hasDANE:
		return "dane-only, and no DNSSEC-secure TLSA records: never used"
	case level == chainenv.LevelDANE:
		return "dane: DNSSEC-secure TLSA records, so TLS authenticated by them (RFC 7672), never cleartext" + pins
	case p.Level == chainenv.LevelDANE:
		return "dane, but no DNSSEC-secure TLSA records: as may (STARTTLS when offered, not verified; cleartext if TLS fails)"
	case level == chainenv.LevelNone:
		return "none: cleartext, no STARTTLS"
	case level == chainenv.LevelMay:
		return "may: STARTTLS when offered, not verified; cleartext if TLS fails" + pins
	case level == chainenv.LevelEncrypt:
		return "encrypt: TLS required, not verified" + pins
	case level == chainenv.LevelVerify:
		return "verify: TLS required, the certificate verified against control/trustanchors for " + name + pins
	case !p.Anchors:
		return "no STARTTLS: control/trustanchors is not set"
	case p.Strictness == 0:
		return "tlsstrictness 0: STARTTLS when offered, not verified; cleartext if TLS fails"
	case p.Strictness == 1:
		return "tlsstrictness 1: TLS first, not verified; cleartext only once every candidate failed under TLS"
	}
	return "tlsstrictness 2: TLS required, the certificate verified against control/trustanchors for " + name
}

// verdict is what a delivery would do with this host, from how the
// connector and qmail-remote-io treat what the probe saw.
func (s *stage) verdict(r *hostRun) Verdict {
	h := &r.host
	p := s.policy
	skip := func(why string) Verdict {
		return Verdict{Action: "skip", Text: "not use this host: " + why + "; a delivery tries the next candidate"}
	}
	switch {
	case !p.CanUse(h.DANE):
		return skip("no DNSSEC-secure TLSA records, and control/tlspolicy says dane-only")
	case p.Level == chainenv.LevelVerify && !p.Anchors:
		return Verdict{Action: "skip", Text: "no host is used: control/tlspolicy says verify but control/trustanchors is not set (every delivery gets a Z)"}
	case r.bindWhy != "":
		// qmail-remote-connect: never the next candidate, never an
		// address the kernel chooses instead of the admin's.
		return Verdict{Action: "skip", Text: "no host is used: unable to connect from the address control/outgoingip gives: " +
			r.bindWhy + " (every delivery gets a Z, without trying another candidate or another source address)"}
	case !h.Connect.OK:
		return skip(h.Connect.Error)
	}
	if r.smtps && h.TLS != nil && !h.TLS.OK {
		return skip("the TLS handshake (SMTPS) failed: " + h.TLS.Error)
	}
	switch {
	case h.Greeting == nil:
		return skip("no greeting")
	case !h.Greeting.OK:
		return skip("greeting failed: " + firstLine(h.Greeting))
	case r.smtps:
		// Always require: SMTPS comes with credentials, so tlsstrictness 2.
	case h.EHLO == nil || !h.EHLO.OK:
		return skip("EHLO and HELO failed: " + ehloLine(h.EHLO))
	case h.Mode == connect.ModeNone:
		why := "control/trustanchors is not set"
		if h.Level == chainenv.LevelNone {
			why = "control/tlspolicy says none"
		}
		return Verdict{Action: "cleartext", Text: "deliver in cleartext: no STARTTLS (" + why + ")"}
	}

	// Why TLS does not happen, or "" when it does.
	problem, tlsFailed := "", false
	switch {
	case r.injected:
		return skip(h.StartTLS.Error)
	case !r.smtps && !h.EHLO.StartTLS:
		problem = "STARTTLS not offered"
	case !r.smtps && !h.StartTLS.OK:
		problem = "STARTTLS refused: " + firstLine(h.StartTLS)
	case r.cfgWhy != "":
		return Verdict{Action: "skip", Text: "no host is used: " + r.cfgWhy + " (every delivery gets a Z)"}
	case !h.TLS.OK:
		problem, tlsFailed = "the TLS handshake fails: "+h.TLS.Error, true
	case r.verifyErr != nil:
		problem, tlsFailed = "the TLS handshake fails: "+h.Checks.Delivery.Detail, true
	case h.EHLOTLS == nil || !h.EHLOTLS.OK:
		return skip("EHLO under TLS failed: " + ehloLine(h.EHLOTLS))
	case s.auth != "" && !slices.ContainsFunc(h.EHLOTLS.Keywords, func(k string) bool { return strings.HasPrefix(strings.ToUpper(k), "AUTH") }):
		return skip("no AUTH offered under TLS, and control/smtpauth has credentials for this route")
	}
	if problem == "" {
		auth := ""
		if s.auth != "" {
			auth = "; then AUTH with control/smtpauth's credentials"
		}
		if r.authBy != "" {
			return Verdict{Action: "tls-verified", Text: "deliver with TLS, verified by " + r.authBy + auth}
		}
		return Verdict{Action: "tls-unverified", Text: "deliver with TLS, not verified (" + s.unverifiedWhy(r) + ")" + auth}
	}
	switch {
	case h.Mode == connect.ModeTry && !tlsFailed:
		return Verdict{Action: "cleartext", Text: "deliver in cleartext: " + problem}
	case tlsFailed && p.Retry(h.Level):
		return Verdict{Action: "cleartext-fallback", Text: "fall back to cleartext: " + problem + "; a delivery connects again without STARTTLS"}
	case p.SecondPass():
		return Verdict{Action: "second-pass", Text: "no TLS (" + problem + "); in cleartext only once every candidate failed under TLS (tlsstrictness 1)"}
	}
	return skip(problem + "; mail never goes to it in cleartext (" + s.strictWhy(h) + ")")
}

func (s *stage) strictWhy(h *Host) string {
	if h.Level != "" {
		return "level " + h.Level
	}
	return fmt.Sprintf("tlsstrictness %d", s.policy.Strictness)
}

func firstLine(st *Step) string {
	if st == nil {
		return ""
	}
	if st.Error != "" {
		return st.Error
	}
	l, _, _ := strings.Cut(st.Reply, "\n")
	return l
}

func ehloLine(e *EHLO) string {
	if e == nil {
		return "not sent"
	}
	return firstLine(&e.Step)
}
