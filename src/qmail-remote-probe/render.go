package qmailremoteprobe

// The human-readable output: one block for the destination, one per
// host, each line "label: value" with the value's further lines
// indented under it.

import (
	"fmt"
	"strings"

	"qmail-remote-go/src/internal/outgoingip"
	"qmail-remote-go/src/internal/senders"
)

type printer struct{ b strings.Builder }

// valueColumn is where values start, whatever the label's indent.
const valueColumn = 17

// line prints "label: value", the value's lines aligned after the label.
func (p *printer) line(indent int, label, value string) {
	head := fmt.Sprintf("%-*s", valueColumn, strings.Repeat(" ", indent)+label+":")
	lines := strings.Split(value, "\n")
	p.b.WriteString(strings.TrimRight(head+" "+lines[0], " ") + "\n")
	for _, l := range lines[1:] {
		p.b.WriteString(strings.Repeat(" ", len(head)+1) + l + "\n")
	}
}

func (p *printer) text(s string) { p.b.WriteString(s + "\n") }

func secureWord(l *Lookup) string {
	if l.Status == "temporary failure" {
		return ""
	}
	if l.Secure {
		return ", DNSSEC-secure"
	}
	return ", not DNSSEC-secure"
}

func lookupText(l *Lookup) string {
	s := l.Status + secureWord(l)
	if l.Error != "" {
		s += " (" + l.Error + ")"
	}
	if len(l.Records) > 0 {
		s += "\n" + strings.Join(l.Records, "\n")
	}
	return s
}

func render(r *Result) string {
	p := &printer{}
	p.text("qmail-remote-probe: " + r.Destination)
	if rt := r.Route; rt != nil {
		if rt.Sender != nil {
			p.line(0, "sender", senderText(*rt.Sender))
		}
		where := "MX lookup"
		if rt.Relay != "" {
			where = "relay " + rt.Relay + " (" + rt.RelaySource + ")"
		}
		v := fmt.Sprintf("%s, port %d", where, rt.Port)
		if rt.PortSource != "default" {
			v += " (" + rt.PortSource + ")"
		}
		switch {
		case rt.AuthSender != "":
			v += "\ncontrol/smtpauth has the sender's credentials for it (" + rt.AuthSender + ", " + rt.Auth + "); the probe never authenticates"
		case rt.Auth != "":
			v += "\ncontrol/smtpauth has credentials for it (" + rt.Auth + "); the probe never authenticates"
		}
		p.line(0, "route", v)
		if rt.OutgoingIP != "" {
			p.line(0, "outgoing IP", sourceText(rt.OutgoingIP))
		}
	}
	if pol := r.Policy; pol != nil {
		v := pol.Why
		anchors := "not set"
		if pol.TrustAnchors != "" {
			anchors = pol.TrustAnchors
		}
		v += fmt.Sprintf("\ntrust anchors: %s; tlsstrictness %d", anchors, pol.Strictness)
		if len(pol.Match) > 0 {
			v += "\nmatch=" + strings.Join(pol.Match, ",")
		}
		for _, pin := range pol.Pins {
			v += "\npin " + pin
		}
		p.line(0, "policy", v)
	}
	if e := r.Ended; e != nil {
		p.line(0, "ended", fmt.Sprintf("by %s, before any connection: %s\n%s", e.Stage, e.Means, e.Letter+" "+e.Text))
		notes(p, r.Notes)
		return p.b.String()
	}
	if r.MX != nil {
		p.line(0, "MX "+r.MX.Name, lookupText(r.MX))
	}
	v := fmt.Sprintf("%d from qmail-remote-resolve, %d probed", r.Candidates, r.Probed)
	if len(r.DANEHosts) > 0 {
		v += "\nwith DNSSEC-secure TLSA records (DANE): " + strings.Join(r.DANEHosts, " ")
	}
	if len(r.NotCandidates) > 0 {
		v += "\nMX hosts not among them: " + strings.Join(r.NotCandidates, " ")
	}
	p.line(0, "candidates", v)
	if s := r.STS; s != nil {
		v := s.Mode + ": "
		if s.Mode == "enforce" {
			v += "only the MX hosts the policy names, each verified as at verify"
		} else {
			v += "delivery as usual; failures are only reported (TLS reports)"
		}
		p.line(0, "MTA-STS", v+"\n"+strings.Join(s.Policy, "\n"))
	}
	notes(p, r.Notes)
	for _, h := range r.Hosts {
		renderHost(p, &h)
	}
	return p.b.String()
}

// senderText is -f's sender as shown: bounces by their keys.
func senderText(s string) string {
	switch s {
	case "":
		return senders.Bounce + " (a bounce)"
	case senders.DoubleBounceSender:
		return s + " (a double bounce)"
	}
	return s
}

// sourceText is QMAILREMOTE_OUTGOINGIP as shown: which address for
// which family, and that the kernel chooses for the other.
func sourceText(v string) string {
	const file = " (" + outgoingip.File + ")"
	s, err := outgoingip.ParseEnv(v)
	switch {
	case err != nil:
		return v + file
	case s.V4.IsValid() && s.V6.IsValid():
		return s.V4.String() + " to IPv4 servers, " + s.V6.String() + " to IPv6 servers" + file
	case s.V4.IsValid():
		return s.V4.String() + file + "; to IPv6 servers, from an address the kernel chooses"
	case s.V6.IsValid():
		return s.V6.String() + file + "; to IPv4 servers, from an address the kernel chooses"
	}
	return v + file
}

func notes(p *printer, ns []string) {
	for _, n := range ns {
		p.line(0, "note", n)
	}
}

func stepText(st *Step) string {
	if st.Error != "" {
		if st.Reply != "" {
			return st.Reply + "\nerror: " + st.Error
		}
		return "error: " + st.Error
	}
	return st.Reply
}

func ehloText(e *EHLO) string {
	if !e.OK || len(e.Keywords) == 0 {
		return stepText(&e.Step)
	}
	s := strings.Join(e.Keywords, "\n")
	if e.Command == "HELO" {
		s = "(HELO) " + s
	}
	return s
}

func checkText(c Check) string {
	s := c.Result
	if c.By != "" {
		s += " (" + c.By + ")"
	}
	if c.Detail != "" {
		s += ": " + c.Detail
	}
	return s
}

func renderHost(p *printer, h *Host) {
	p.text("")
	head := h.Name
	if h.Name != "["+h.Address+"]" {
		head += " [" + h.Address + "]"
	}
	if h.Preference != nil {
		head += fmt.Sprintf(" MX %d", *h.Preference)
	}
	p.text("== " + head)
	pol := h.Policy
	if h.Tcpto {
		pol += "\na delivery would skip this address now: recent connect timeouts (tcpto)"
	}
	p.line(0, "policy", pol)
	if h.Addresses != nil {
		p.line(0, "addresses", lookupText(h.Addresses))
	}
	if h.TLSA != nil {
		p.line(0, "TLSA", h.TLSA.Name+": "+lookupText(h.TLSA))
	}
	if h.Connect.OK {
		p.line(0, "connect", fmt.Sprintf("ok (%d ms)", h.Connect.Ms))
	} else {
		p.line(0, "connect", h.Connect.Error)
	}
	if h.Greeting != nil {
		p.line(0, "greeting", stepText(h.Greeting))
	}
	if h.EHLO != nil {
		p.line(0, h.EHLO.Command, ehloText(h.EHLO))
	}
	if h.StartTLS != nil {
		p.line(0, "STARTTLS", stepText(h.StartTLS))
	} else if h.EHLO != nil && h.EHLO.OK && !h.EHLO.StartTLS {
		p.line(0, "STARTTLS", "not offered")
	}
	if t := h.TLS; t != nil {
		if !t.OK {
			p.line(0, "TLS", "handshake failed: "+t.Error)
		} else {
			v := t.Version + " " + t.Cipher
			if t.SNI != "" {
				v += ", SNI " + t.SNI
			}
			if t.Config == "probe" {
				v += "\n(the probe's settings: a delivery would not do STARTTLS here)"
			}
			p.line(0, "TLS", v)
			for _, c := range t.Certificates {
				renderCert(p, c)
			}
			if t.Dropped > 0 {
				p.line(2, "note", fmt.Sprintf("%d more certificates not shown", t.Dropped))
			}
		}
	}
	if h.EHLOTLS != nil {
		p.line(0, "EHLO (TLS)", ehloText(h.EHLOTLS))
	}
	if c := h.Checks; c != nil {
		p.text("checks:")
		p.line(2, "PKIX", checkText(c.PKIX))
		p.line(2, "chain", checkText(c.Chain))
		p.line(2, "name", checkText(c.Name))
		p.line(2, "DANE", checkText(c.DANE))
		for _, t := range c.Records {
			use := "unusable"
			if t.Usable {
				use = "usable"
			}
			m := "matches no certificate"
			if len(t.Matches) > 0 {
				m = "matches depth " + strings.Trim(strings.Join(strings.Fields(fmt.Sprint(t.Matches)), ", "), "[]")
			}
			p.line(4, "TLSA", t.Record+"\n"+use+", "+m)
		}
		p.line(2, "pins", checkText(c.Pins))
		p.line(2, "delivery", checkText(c.Delivery))
	}
	p.line(0, "verdict", h.Verdict.Text)
}

func renderCert(p *printer, c Cert) {
	p.line(2, fmt.Sprintf("cert %d", c.Depth), c.Subject)
	p.line(4, "issuer", c.Issuer)
	names := append(append([]string{}, c.DNSNames...), c.IPs...)
	if len(names) > 0 {
		p.line(4, "names", strings.Join(names, " "))
	}
	p.line(4, "valid", c.NotBefore+" to "+c.NotAfter)
	p.line(4, "SPKI SHA-256", c.SPKISHA256)
	if c.CA {
		p.line(4, "CA", "yes")
	}
}
