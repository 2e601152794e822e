package tlsrpt

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

var tlsaRecords = []string{"3 1 1 0C72AC70B745AC19998811B131D662C9AC69DBDBE7CB23E5B514B56664C5D3D6"}

var stsLines = []string{"version: STSv1", "mode: enforce", "mx: mx1.example.com", "mx: *.backup.example.com", "max_age: 86400"}

// dayRecords is a day of example.com under two policies (MTA-STS and
// DANE), with successes and failures of two kinds, and records that
// are not for that report: another domain, the days before and after.
func dayRecords() []Record {
	sts := func(at time.Duration, mx, ip, result, why string) Record {
		return Record{Time: day.Add(at), Domain: "example.com", PolicyType: PolicySTS, PolicyStrings: stsLines,
			MXHost: mx, MXHelo: mx, IP: ip, SendingIP: "198.51.100.7", Result: result, Reason: why}
	}
	tlsa := func(at time.Duration, result, why string) Record {
		return Record{Time: day.Add(at), Domain: "Example.COM.", PolicyType: PolicyTLSA, PolicyStrings: tlsaRecords,
			MXHost: "mx2.example.com", IP: "192.0.2.2", SendingIP: "198.51.100.7", Result: result, Reason: why}
	}
	return []Record{
		sts(time.Hour, "mx1.example.com", "192.0.2.1", Success, ""),
		sts(2*time.Hour, "mx1.example.com", "192.0.2.1", Success, ""),
		sts(3*time.Hour, "a.backup.example.com", "192.0.2.9", CertificateExpired, "certificate has expired"),
		sts(4*time.Hour, "a.backup.example.com", "192.0.2.9", CertificateExpired, "certificate has expired"),
		sts(5*time.Hour, "mx1.example.com", "192.0.2.1", StartTLSNotSupported, "no STARTTLS in the EHLO reply"),
		tlsa(6*time.Hour, Success, ""),
		tlsa(23*time.Hour+59*time.Minute+59*time.Second, ValidationFailure, "no TLSA record matches"),
		// Not in the report.
		tlsa(-time.Second, ValidationFailure, "the day before"),
		tlsa(24*time.Hour, ValidationFailure, "the day after"),
		{Time: day.Add(time.Hour), Domain: "example.net", PolicyType: PolicyNone, Result: Success},
	}
}

const wantReport = `{
  "organization-name": "mail.example.org",
  "date-range": {
    "start-datetime": "2026-12-04T00:00:00Z",
    "end-datetime": "2026-12-04T23:59:59Z"
  },
  "contact-info": "postmaster@mail.example.org",
  "report-id": "20261204.example.com@mail.example.org",
  "policies": [
    {
      "policy": {
        "policy-type": "sts",
        "policy-string": ["version: STSv1", "mode: enforce", "mx: mx1.example.com", "mx: *.backup.example.com", "max_age: 86400"],
        "policy-domain": "example.com",
        "mx-host": ["mx1.example.com", "*.backup.example.com"]
      },
      "summary": {
        "total-successful-session-count": 2,
        "total-failure-session-count": 3
      },
      "failure-details": [
        {
          "result-type": "certificate-expired",
          "sending-mta-ip": "198.51.100.7",
          "receiving-mx-hostname": "a.backup.example.com",
          "receiving-mx-helo": "a.backup.example.com",
          "receiving-ip": "192.0.2.9",
          "failed-session-count": 2,
          "failure-reason-code": "certificate has expired"
        },
        {
          "result-type": "starttls-not-supported",
          "sending-mta-ip": "198.51.100.7",
          "receiving-mx-hostname": "mx1.example.com",
          "receiving-mx-helo": "mx1.example.com",
          "receiving-ip": "192.0.2.1",
          "failed-session-count": 1,
          "failure-reason-code": "no STARTTLS in the EHLO reply"
        }
      ]
    },
    {
      "policy": {
        "policy-type": "tlsa",
        "policy-string": ["3 1 1 0C72AC70B745AC19998811B131D662C9AC69DBDBE7CB23E5B514B56664C5D3D6"],
        "policy-domain": "example.com",
        "mx-host": ["mx2.example.com"]
      },
      "summary": {
        "total-successful-session-count": 1,
        "total-failure-session-count": 1
      },
      "failure-details": [
        {
          "result-type": "validation-failure",
          "sending-mta-ip": "198.51.100.7",
          "receiving-mx-hostname": "mx2.example.com",
          "receiving-ip": "192.0.2.2",
          "failed-session-count": 1,
          "failure-reason-code": "no TLSA record matches"
        }
      ]
    }
  ]
}`

func TestAggregate(t *testing.T) {
	// Any time of the day names the day.
	rep := Aggregate(dayRecords(), "EXAMPLE.com", day.Add(13*time.Hour), "mail.example.org",
		"postmaster@mail.example.org", "20261204.example.com@mail.example.org")
	got, err := rep.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	if err := json.Compact(&want, []byte(wantReport)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		var pretty bytes.Buffer
		json.Indent(&pretty, got, "", "  ")
		t.Errorf("got\n%s\nwant\n%s", pretty.Bytes(), wantReport)
	}
	// The order of the log does not matter.
	recs := dayRecords()
	for i, j := 0, len(recs)-1; i < j; i, j = i+1, j-1 {
		recs[i], recs[j] = recs[j], recs[i]
	}
	again, _ := Aggregate(recs, "example.com", day, "mail.example.org",
		"postmaster@mail.example.org", "20261204.example.com@mail.example.org").JSON()
	if !bytes.Equal(again, got) {
		t.Errorf("the report depends on the order of the log:\n%s\n%s", again, got)
	}
}

func TestAggregateNothing(t *testing.T) {
	rep := Aggregate(dayRecords(), "example.org", day, "o", "c", "id")
	got, err := rep.JSON()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"organization-name":"o","date-range":{"start-datetime":"2026-12-04T00:00:00Z","end-datetime":"2026-12-04T23:59:59Z"},"contact-info":"c","report-id":"id","policies":[]}`
	if string(got) != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
	// A report made by hand, with a nil list and local times, comes out
	// the same way.
	loc := time.FixedZone("x", 3600)
	hand := Report{OrganizationName: "o", ContactInfo: "c", ReportID: "id",
		DateRange: DateRange{Start: day.In(loc), End: day.Add(24*time.Hour - time.Second).In(loc)}}
	if got, _ := hand.JSON(); string(got) != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
}

func TestAggregateNoPolicy(t *testing.T) {
	recs := []Record{
		{Time: day, Domain: "example.net", PolicyType: PolicyNone, MXHost: "mx.example.net", Result: Success},
		{Time: day, Domain: "example.net", PolicyType: PolicyNone, MXHost: "mx.example.net", Result: StartTLSNotSupported},
	}
	rep := Aggregate(recs, "example.net", day, "o", "c", "id")
	if len(rep.Policies) != 1 {
		t.Fatalf("%d policies", len(rep.Policies))
	}
	p := rep.Policies[0]
	if p.Policy.PolicyType != PolicyNone || p.Policy.PolicyString != nil || p.Policy.MXHost != nil ||
		p.Summary != (Summary{1, 1}) || len(p.FailureDetails) != 1 {
		t.Errorf("got %+v", p)
	}
}
