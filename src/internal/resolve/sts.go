package resolve

// MTA-STS (RFC 8461): the destination's policy is looked for at the same
// time as its MX; under an enforce policy only the MX hosts it names are
// used. Fetching and caching the policy is the caller's (Request.STS):
// this package only asks the TXT record and applies what comes back.

import (
	"fmt"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"qmail-remote-go/src/internal/report"
)

// TextSTS ends a delivery whose MX hosts its enforce policy all rules
// out (RFC 8461 5: such mail is not delivered; the policy or the MX may
// be fixed, so it waits).
const TextSTS = "Sorry, no mail exchanger of %s matches its MTA-STS policy. (#4.7.5)"

// STSRecord is what the _mta-sts TXT lookup gave (RFC 8461 3.1).
type STSRecord struct {
	Records   []string // Found: the TXT records, each one's strings joined
	Found     bool
	Temporary bool // the lookup failed; a cached policy may still apply
}

// STSPolicy is the policy that applies to a delivery, as Request.STS
// found it (fetched, or from the cache).
type STSPolicy struct {
	Mode    string            // enforce, testing or none
	Matches func(string) bool // whether an MX host name is one the policy names
	MX      []string          // its mx patterns, for the report
	Lines   []string          // the policy's lines (TLS reports)
}

// stsName is where a domain's MTA-STS TXT record is.
func stsName(host string) string { return "_mta-sts." + host }

// STSRecordOf turns a _mta-sts TXT answer into what Request.STS takes.
func STSRecordOf(ans Answer) STSRecord {
	switch ans.Kind {
	case Temporary:
		return STSRecord{Temporary: true}
	case Found:
		var r STSRecord
		for _, rr := range ans.Records {
			if t, ok := rr.(*dns.TXT); ok {
				r.Records = append(r.Records, strings.Join(t.Txt, ""))
			}
		}
		r.Found = len(r.Records) > 0
		return r
	}
	return STSRecord{}
}

// applySTS asks for the policy once the MX hosts are known, and under
// enforce sets aside those it does not name. DANE wins (RFC 8461 2): a
// delivery where DANE applies to some host is left alone.
func (d *delivery) applySTS(txt *pending, ts []*target) {
	if txt == nil || len(d.dane) > 0 {
		return
	}
	p := d.req.STS(d.ctx, STSRecordOf(txt.wait()))
	if p == nil || p.Mode != "enforce" && p.Mode != "testing" {
		return
	}
	d.sts = p
	if p.Mode != "enforce" {
		return
	}
	for _, t := range ts {
		if !t.aside && !p.Matches(t.name) {
			t.aside = true
			why := fmt.Sprintf("%s: not named by the MTA-STS policy (mx: %s)", t.name, strings.Join(p.MX, ", "))
			d.stsAside = append(d.stsAside, why)
		}
	}
	if !slices.ContainsFunc(ts, func(t *target) bool { return !t.aside }) {
		d.stsNone = true
	}
}

// stsRefused is the Z when the enforce policy names none of the MX hosts:
// which hosts it ruled out (the first few) and what it names.
func (d *delivery) stsRefused() Outcome {
	const most = 5
	lines := d.stsAside
	if len(lines) > most {
		lines = append(lines[:most:most], fmt.Sprintf("(%d more)", len(d.stsAside)-most))
	}
	return Outcome{Letter: report.Temporary, Text: fmt.Sprintf(TextSTS, d.req.Host) + "\n" + strings.Join(lines, "\n")}
}
