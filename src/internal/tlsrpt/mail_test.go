package tlsrpt

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"testing"
	"time"
)

// parseMail takes a report mail apart as a receiver would, checks its
// headers, and returns the report's JSON.
func parseMail(t *testing.T, msg []byte, domain, submitter, id, to string) []byte {
	t.Helper()
	if bytes.Contains(msg, []byte("\r")) {
		t.Error("the message has CRs; qmail-inject takes LF")
	}
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"To":                   to,
		"Subject":              "Report Domain: " + domain + " Submitter: " + submitter + " Report-ID: <" + id + ">",
		"TLS-Report-Domain":    domain,
		"TLS-Report-Submitter": submitter,
		"MIME-Version":         "1.0",
	} {
		if got := m.Header.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	if _, err := m.Header.Date(); err != nil {
		t.Errorf("Date: %v", err)
	}
	if _, err := mail.ParseAddress(m.Header.Get("From")); err != nil {
		t.Errorf("From: %v", err)
	}
	if mid := m.Header.Get("Message-ID"); !strings.HasPrefix(mid, "<") || !strings.HasSuffix(mid, "@"+submitter+">") {
		t.Errorf("Message-ID: %q", mid)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "tlsrpt" {
		t.Fatalf("Content-Type: %q %v %v", mt, params, err)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	text, err := mr.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	if ct := text.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("first part: %q", ct)
	}
	if b, _ := io.ReadAll(text); !bytes.Contains(b, []byte("TLS report")) {
		t.Errorf("the text part says %q", b)
	}
	att, err := mr.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	ct, cparams, _ := mime.ParseMediaType(att.Header.Get("Content-Type"))
	if ct != "application/tlsrpt+gzip" || att.Header.Get("Content-Transfer-Encoding") != "base64" {
		t.Errorf("second part: %q, %q", att.Header.Get("Content-Type"), att.Header.Get("Content-Transfer-Encoding"))
	}
	want := submitter + "!" + domain + "!1796342400!1796428799!20261204" + strings.ReplaceAll(domain, ".", "") +
		strings.ReplaceAll(submitter, ".", "") + ".json.gz"
	if att.FileName() != want || cparams["name"] != want {
		t.Errorf("file name %q (name %q), want %q", att.FileName(), cparams["name"], want)
	}
	raw, err := io.ReadAll(att)
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.SplitSeq(strings.TrimSpace(string(raw)), "\n") {
		if len(l) > 76 {
			t.Errorf("a base64 line of %d characters", len(l))
		}
	}
	gz, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(string(raw), "\n", ""))
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	js, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mr.NextPart(); err != io.EOF {
		t.Errorf("after the report: %v, want the end", err)
	}
	return js
}

func TestMail(t *testing.T) {
	const id = "20261204.example.com@mail.example.org"
	rep := Aggregate(dayRecords(), "example.com", day, "mail.example.org", "postmaster@mail.example.org", id)
	js, err := rep.JSON()
	if err != nil {
		t.Fatal(err)
	}
	gz := Gzip(js)
	if !bytes.Equal(gz, Gzip(js)) {
		t.Error("Gzip is not deterministic")
	}
	now := time.Date(2026, 12, 5, 0, 17, 0, 0, time.UTC)
	msg := Mail(rep, gz, "postmaster@mail.example.org", "tlsrpt@example.com", "mail.example.org", now)
	got := parseMail(t, msg, "example.com", "mail.example.org", id, "tlsrpt@example.com")
	if !bytes.Equal(got, js) {
		t.Errorf("the attached report is\n%s\nwant\n%s", got, js)
	}
}

func TestMailHeaderInjection(t *testing.T) {
	rep := Aggregate(nil, "example.com", day, "o", "c", "x")
	rep.ReportID = "id\nBcc: victim@example.net"
	msg := Mail(rep, Gzip([]byte("{}")), "a@b", "to@example.com\r\nBcc: victim@example.net", "me", day)
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get("Bcc") != "" {
		t.Errorf("a header was injected:\n%s", msg)
	}
}
