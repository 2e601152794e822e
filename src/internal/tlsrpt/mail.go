package tlsrpt

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"strings"
	"time"
)

// ContentType is the report's media type, gzipped (RFC 8460 6.4), for
// mail and for https alike.
const ContentType = "application/tlsrpt+gzip"

// Gzip compresses a report's JSON. No name and no time in the gzip
// header, so that one report always gives the same bytes.
func Gzip(json []byte) []byte {
	var b bytes.Buffer
	w, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	w.Write(json) // a bytes.Buffer does not fail
	w.Close()
	return b.Bytes()
}

// Filename is the report's file name (RFC 8460 5.1):
// submitter!domain!begin!end!id.json.gz, begin and end the date range
// as Unix times. The RFC's unique-id is letters and digits only, so id
// is the report ID with everything else left out.
func Filename(rep Report, submitter string) string {
	id := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, rep.ReportID)
	name := hostText(submitter) + "!" + hostText(reportDomain(rep)) + "!" +
		strconv.FormatInt(rep.DateRange.Start.Unix(), 10) + "!" + strconv.FormatInt(rep.DateRange.End.Unix(), 10)
	if id = clip(id, 64); id != "" {
		name += "!" + id
	}
	return name + ".json.gz"
}

// reportDomain is the policy domain of rep: Domain, or what its first
// policy says for a Report made by hand.
func reportDomain(rep Report) string {
	if rep.Domain == "" && len(rep.Policies) > 0 {
		return rep.Policies[0].Policy.PolicyDomain
	}
	return rep.Domain
}

// Mail is the report as a message (RFC 8460 5.3), ready for
// qmail-inject: LF line ends, a multipart/report of report-type tlsrpt
// holding a short text/plain part for a human who opens it and the
// gzipped report, base64 in lines of 76. gz is Gzip of rep's JSON; from
// and to are addresses, submitter the reporting host (control/me), now
// the Date.
//
// Every header value that comes from outside (the domain is the log's,
// the address the domain's DNS) is stripped of control characters, so
// that none can end the header early and add headers of its own.
func Mail(rep Report, gz []byte, from, to, submitter string, now time.Time) []byte {
	domain := headerText(reportDomain(rep))
	submitter = headerText(submitter)
	id := headerText(rep.ReportID)
	filename := Filename(rep, submitter)
	sum := sha256.Sum256(append([]byte(rep.ReportID+"\x00"+to+"\x00"+now.String()+"\x00"), gz...))
	tag := hex.EncodeToString(sum[:12])
	boundary := "tlsrpt-" + tag // '-' is not in base64's alphabet: never in the body

	var b bytes.Buffer
	h := func(name, value string) { b.WriteString(name + ": " + value + "\n") }
	h("From", headerText(from))
	h("To", headerText(to))
	// Folded before each part, which unfolds to the RFC's one line.
	h("Subject", "Report Domain: "+domain+"\n Submitter: "+submitter+"\n Report-ID: <"+id+">")
	h("Date", now.Format("Mon, 02 Jan 2006 15:04:05 -0700"))
	h("Message-ID", "<tlsrpt."+strconv.FormatInt(now.Unix(), 10)+"."+tag+"@"+hostText(submitter)+">")
	h("MIME-Version", "1.0")
	h("TLS-Report-Domain", domain)
	h("TLS-Report-Submitter", submitter)
	h("Content-Type", "multipart/report; report-type=\"tlsrpt\";\n\tboundary=\""+boundary+"\"")
	b.WriteString("\nThis is a MIME-formatted message.\n")

	b.WriteString("\n--" + boundary + "\n")
	h("Content-Type", "text/plain; charset=us-ascii")
	h("Content-Transfer-Encoding", "7bit")
	b.WriteString("\nThis is an aggregate TLS report (RFC 8460, SMTP TLS Reporting) from\n" +
		submitter + " about the mail it sent to " + domain + "\nfrom " +
		rep.DateRange.Start.UTC().Format(time.RFC3339) + " to " + rep.DateRange.End.UTC().Format(time.RFC3339) +
		".\nThe report is attached, gzipped JSON, as\n" + filename + "\n")

	b.WriteString("\n--" + boundary + "\n")
	h("Content-Type", ContentType+";\n\tname=\""+filename+"\"")
	h("Content-Transfer-Encoding", "base64")
	h("Content-Disposition", "attachment;\n\tfilename=\""+filename+"\"")
	b.WriteByte('\n')
	enc := base64.StdEncoding.EncodeToString(gz)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\n")
		enc = enc[76:]
	}
	if enc != "" {
		b.WriteString(enc + "\n")
	}
	b.WriteString("\n--" + boundary + "--\n")
	return b.Bytes()
}

// headerText is s without control characters (CR and LF above all),
// at most 255 bytes.
func headerText(s string) string {
	return clip(strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return -1
		}
		return r
	}, s), maxField)
}

// hostText is s with only what a host name holds (a file name and a
// Message-ID's right side take it).
func hostText(s string) string {
	return clip(strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_' {
			return r
		}
		return -1
	}, s), maxField)
}
