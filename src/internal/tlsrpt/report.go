package tlsrpt

import (
	"bytes"
	"cmp"
	"encoding/json"
	"slices"
	"strings"
	"time"
)

// Report is the aggregate report of RFC 8460 section 4, field for field
// (the JSON names are the RFC's).
type Report struct {
	OrganizationName string         `json:"organization-name"`
	DateRange        DateRange      `json:"date-range"`
	ContactInfo      string         `json:"contact-info"`
	ReportID         string         `json:"report-id"`
	Policies         []PolicyReport `json:"policies"`
	// Domain is the policy domain reported on. Not in the JSON, where
	// each policy names it, but a report without any policy still needs
	// it for its mail (Mail).
	Domain string `json:"-"`
}

// DateRange is the period reported on, in UTC.
type DateRange struct {
	Start time.Time `json:"start-datetime"`
	End   time.Time `json:"end-datetime"`
}

// PolicyReport is the sessions under one policy.
type PolicyReport struct {
	Policy         Policy          `json:"policy"`
	Summary        Summary         `json:"summary"`
	FailureDetails []FailureDetail `json:"failure-details,omitempty"`
}

// Policy is what was applied.
type Policy struct {
	PolicyType   string   `json:"policy-type"`
	PolicyString []string `json:"policy-string,omitempty"`
	PolicyDomain string   `json:"policy-domain"`
	MXHost       []string `json:"mx-host,omitempty"`
}

// Summary counts the sessions.
type Summary struct {
	TotalSuccessful int `json:"total-successful-session-count"`
	TotalFailure    int `json:"total-failure-session-count"`
}

// FailureDetail counts the failed sessions that have all of these in
// common.
type FailureDetail struct {
	ResultType            string `json:"result-type"`
	SendingMTAIP          string `json:"sending-mta-ip,omitempty"`
	ReceivingMXHostname   string `json:"receiving-mx-hostname,omitempty"`
	ReceivingMXHelo       string `json:"receiving-mx-helo,omitempty"`
	ReceivingIP           string `json:"receiving-ip,omitempty"`
	FailedSessionCount    int    `json:"failed-session-count"`
	AdditionalInformation string `json:"additional-information,omitempty"`
	FailureReasonCode     string `json:"failure-reason-code,omitempty"`
}

// DayRange is the UTC day holding t: from 00:00:00 to 23:59:59, as RFC
// 8460 4.4's example writes a day.
func DayRange(t time.Time) DateRange {
	t = t.UTC()
	start := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	return DateRange{Start: start, End: start.Add(24*time.Hour - time.Second)}
}

// Aggregate is the report for one policy domain on one UTC day (the day
// holding day) out of records, which may hold other domains and days:
// one policy entry per distinct policy (type and strings), each
// failure-details entry the failures that share result, addresses, MX,
// HELO and reason. Everything is sorted, so that one log always gives
// the same report, byte for byte.
//
// "mx-host" is, for sts, the policy's mx patterns (its "mx:" lines); for
// tlsa, the MX hosts whose records these are (DANE's policy is per MX
// host); absent for no-policy-found.
func Aggregate(records []Record, domain string, day time.Time, org, contact, reportID string) Report {
	dr := DayRange(day)
	domain = canonDomain(domain)
	rep := Report{OrganizationName: org, DateRange: dr, ContactInfo: contact, ReportID: reportID,
		Policies: []PolicyReport{}, Domain: domain}
	type group struct {
		pr       PolicyReport
		mx       map[string]bool
		failures map[FailureDetail]int // keyed with the count zero
	}
	groups := map[string]*group{}
	end := dr.Start.Add(24 * time.Hour)
	for _, r := range records {
		t := r.Time.UTC()
		if canonDomain(r.Domain) != domain || t.Before(dr.Start) || !t.Before(end) {
			continue
		}
		// NUL cannot be in a policy line: a safe separator for the key.
		key := r.PolicyType + "\x00" + strings.Join(r.PolicyStrings, "\x00")
		g := groups[key]
		if g == nil {
			p := Policy{PolicyType: r.PolicyType, PolicyDomain: domain}
			if r.PolicyType != PolicyNone {
				p.PolicyString = slices.Clone(r.PolicyStrings)
			}
			if r.PolicyType == PolicySTS {
				p.MXHost = stsMX(r.PolicyStrings)
			}
			g = &group{pr: PolicyReport{Policy: p}, mx: map[string]bool{}, failures: map[FailureDetail]int{}}
			groups[key] = g
		}
		if r.PolicyType == PolicyTLSA && r.MXHost != "" {
			g.mx[canonDomain(r.MXHost)] = true
		}
		if r.Result == Success {
			g.pr.Summary.TotalSuccessful++
			continue
		}
		g.pr.Summary.TotalFailure++
		g.failures[FailureDetail{ResultType: r.Result, SendingMTAIP: r.SendingIP,
			ReceivingMXHostname: r.MXHost, ReceivingMXHelo: r.MXHelo, ReceivingIP: r.IP,
			FailureReasonCode: r.Reason}]++
	}
	for _, g := range groups {
		if len(g.mx) > 0 {
			for mx := range g.mx {
				g.pr.Policy.MXHost = append(g.pr.Policy.MXHost, mx)
			}
			slices.Sort(g.pr.Policy.MXHost)
		}
		for fd, n := range g.failures {
			fd.FailedSessionCount = n
			g.pr.FailureDetails = append(g.pr.FailureDetails, fd)
		}
		// The most frequent failures first: what a reader wants to see.
		slices.SortFunc(g.pr.FailureDetails, func(a, b FailureDetail) int {
			return cmp.Or(cmp.Compare(b.FailedSessionCount, a.FailedSessionCount),
				cmp.Compare(a.ResultType, b.ResultType),
				cmp.Compare(a.SendingMTAIP, b.SendingMTAIP),
				cmp.Compare(a.ReceivingMXHostname, b.ReceivingMXHostname),
				cmp.Compare(a.ReceivingMXHelo, b.ReceivingMXHelo),
				cmp.Compare(a.ReceivingIP, b.ReceivingIP),
				cmp.Compare(a.FailureReasonCode, b.FailureReasonCode))
		})
		rep.Policies = append(rep.Policies, g.pr)
	}
	slices.SortFunc(rep.Policies, func(a, b PolicyReport) int {
		return cmp.Or(cmp.Compare(a.Policy.PolicyType, b.Policy.PolicyType),
			slices.Compare(a.Policy.PolicyString, b.Policy.PolicyString),
			slices.Compare(a.Policy.MXHost, b.Policy.MXHost))
	})
	return rep
}

// stsMX is the mx patterns of an MTA-STS policy's lines (RFC 8461 3.2:
// "mx: pattern", one per line).
func stsMX(lines []string) []string {
	var out []string
	for _, l := range lines {
		k, v, ok := strings.Cut(l, ":")
		if ok && strings.EqualFold(strings.TrimSpace(k), "mx") {
			if v = strings.TrimSpace(v); v != "" {
				out = append(out, v)
			}
		}
	}
	return out
}

// JSON is the report as RFC 8460 4.4 writes it: the names hyphenated,
// dates in RFC 3339 ("2026-12-04T00:00:00Z"), "policies" an array even
// when empty. No HTML escaping: this is no web page, and "<" should
// read as "<".
func (r Report) JSON() ([]byte, error) {
	r.DateRange.Start, r.DateRange.End = r.DateRange.Start.UTC(), r.DateRange.End.UTC()
	if r.Policies == nil {
		r.Policies = []PolicyReport{}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte{'\n'}), nil
}
