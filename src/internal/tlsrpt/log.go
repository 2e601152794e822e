// Package tlsrpt is SMTP TLS Reporting (RFC 8460) for qmail-remote: the
// record each delivery attempt under a TLS policy appends to a daily log
// (Append), the log read back (Read), a day of it summed up as the
// report RFC 8460 section 4 defines (Aggregate, JSON), where a domain
// wants its reports (ParseRUA), and the report as a mail (Mail, Gzip).
// qmail-remote-tlsrpt, run from cron, does the rest (doc/tlsrpt.md).
//
// Deliveries only Append: everything else runs once a day. Package-level
// state is constants only, since every delivery pays for this package's
// initialisation through the multicall binary.
package tlsrpt

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"qmail-remote-go/src/internal/regular"
)

// Result types of RFC 8460 4.3, plus Success for a session that went
// well (counted in the summary, never a failure detail).
const (
	Success                 = "success"
	StartTLSNotSupported    = "starttls-not-supported"
	CertificateHostMismatch = "certificate-host-mismatch"
	CertificateExpired      = "certificate-expired"
	CertificateNotTrusted   = "certificate-not-trusted"
	ValidationFailure       = "validation-failure"
	TLSAInvalid             = "tlsa-invalid"
	DNSSECInvalid           = "dnssec-invalid"
	DANERequired            = "dane-required"
	STSPolicyFetchError     = "sts-policy-fetch-error"
	STSPolicyInvalid        = "sts-policy-invalid"
	STSWebPKIInvalid        = "sts-webpki-invalid"
)

// Policy types (RFC 8460 4.4).
const (
	PolicySTS  = "sts"
	PolicyTLSA = "tlsa"
	PolicyNone = "no-policy-found"
)

// Bounds of one record. A line must go out in one write(2) that the lock
// keeps whole, and a day's log is read into memory: a server's long
// greeting or a certificate's whole hex must not bloat either.
const (
	MaxReason = 500  // bytes of Record.Reason
	MaxLine   = 4000 // bytes of one JSON line, its newline included
	// maxField bounds the other strings (host names, HELO, addresses):
	// anything real is far shorter, and the HELO is the server's.
	maxField = 255
	// maxPolicyString bounds one policy string: a TLSA record of usage
	// x 0 0 (the whole certificate) would not fit a line otherwise.
	maxPolicyString = 512
)

// Subdir is where the log lives under the run directory.
const Subdir = "qmail-remote/tlsrpt"

// LogDir is the log's directory for the run directory run.
func LogDir(run string) string { return filepath.Join(run, Subdir) }

// DayLayout names a day's file: its UTC date.
const DayLayout = "20060102"

// Record is one delivery attempt under a policy (or under none: then
// PolicyType is PolicyNone). The JSON names are short: a busy server
// writes many of these a day.
type Record struct {
	Time          time.Time `json:"t"`
	Domain        string    `json:"d"` // the policy domain (the recipient domain)
	PolicyType    string    `json:"p"`
	PolicyStrings []string  `json:"ps,omitempty"`   // STS: the policy's lines; TLSA: the records as "3 1 1 HEX"
	MXHost        string    `json:"mx,omitempty"`   // receiving-mx-hostname
	MXHelo        string    `json:"helo,omitempty"` // receiving-mx-helo
	IP            string    `json:"ip,omitempty"`   // receiving-ip
	SendingIP     string    `json:"sip,omitempty"`  // sending-mta-ip
	Result        string    `json:"r"`
	Reason        string    `json:"why,omitempty"` // failure-reason-code: free text, at most MaxReason bytes
}

// Append adds r to its day's file in dir (the UTC date of r.Time; now
// when r.Time is zero), creating dir and the file when missing.
//
// Hundreds of deliveries append at once: the line goes out in a single
// write, under an exclusive flock, to a file opened O_APPEND, so no line
// is ever lost or mixed with another. A line left unterminated by a
// writer that died mid-write (a full disk) is terminated first, so that
// only that line is lost, not also the next.
func Append(dir string, r Record) error {
	if dir == "" {
		return errors.New("tlsrpt: no log directory")
	}
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	// Seconds are plenty for a daily report and keep the line short.
	r.Time = r.Time.UTC().Truncate(time.Second)
	line, err := marshalBounded(r)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	path := filepath.Join(dir, r.Time.Format(DayLayout))
	// regular.OpenFile: a FIFO in place of the file must not hang a
	// delivery in open(2).
	// Read-write, not write-only: the last byte is read back below.
	// O_APPEND still puts every write at the end.
	f, err := regular.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	fd := int(f.Fd())
	if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
		return &os.PathError{Op: "flock", Path: path, Err: err}
	}
	defer unix.Flock(fd, unix.LOCK_UN)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if st.Size > 0 {
		var last [1]byte
		if n, _ := f.ReadAt(last[:], st.Size-1); n == 1 && last[0] != '\n' {
			line = append([]byte{'\n'}, line...)
		}
	}
	n, err := f.Write(line)
	if err == nil && n != len(line) {
		err = io.ErrShortWrite
	}
	return err
}

// marshalBounded is r's JSON line, newline included, at most MaxLine
// bytes: the strings are clipped, then policy strings dropped from the
// end, then the reason halved, until it fits. The cuts depend only on
// r, so attempts under one policy still aggregate together.
func marshalBounded(r Record) ([]byte, error) {
	r.Reason = clip(r.Reason, MaxReason)
	for _, s := range []*string{&r.Domain, &r.PolicyType, &r.MXHost, &r.MXHelo, &r.IP, &r.SendingIP, &r.Result} {
		*s = clip(*s, maxField)
	}
	if len(r.PolicyStrings) > 0 {
		ps := make([]string, len(r.PolicyStrings))
		for i, s := range r.PolicyStrings {
			ps[i] = clip(s, maxPolicyString)
		}
		r.PolicyStrings = ps
	}
	for {
		b, err := json.Marshal(r)
		if err != nil {
			return nil, err
		}
		if len(b)+1 <= MaxLine {
			return append(b, '\n'), nil
		}
		switch {
		case len(r.PolicyStrings) > 0:
			r.PolicyStrings = r.PolicyStrings[:len(r.PolicyStrings)-1]
		case r.Reason != "":
			r.Reason = clip(r.Reason, len(r.Reason)/2)
		default:
			// Only escaping (control characters, six bytes each) can
			// get here: halve every field until it fits.
			for _, s := range []*string{&r.Domain, &r.PolicyType, &r.MXHost, &r.MXHelo, &r.IP, &r.SendingIP, &r.Result} {
				*s = clip(*s, len(*s)/2)
			}
		}
	}
}

// clip keeps at most n bytes of s, cut on a character boundary so that
// the JSON does not turn the last one into U+FFFD.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// maxRead bounds one line when reading: Append writes at most MaxLine
// bytes, but two lines glued by a crash, or a file edited by hand, may
// be longer.
const maxRead = 64 << 10

// Read returns the records of one day's file. A line that is not a
// record (cut short by a crash, garbage) is skipped and counted in bad:
// one broken line must not cost the whole day's report. err is for the
// file itself (missing, unreadable).
func Read(path string) (records []Record, bad int, err error) {
	f, err := regular.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	for {
		line, long, err := readLine(br)
		if len(line) > 0 || long {
			if r, ok := parseLine(line, long); ok {
				records = append(records, r)
			} else {
				bad++
			}
		}
		if err == io.EOF {
			return records, bad, nil
		}
		if err != nil {
			return records, bad, fmt.Errorf("%s: %w", path, err)
		}
	}
}

// readLine reads one line without its newline; a line over maxRead is
// drained and reported as long.
func readLine(br *bufio.Reader) (line []byte, long bool, err error) {
	for {
		chunk, err := br.ReadSlice('\n')
		if !long {
			if len(line)+len(chunk) > maxRead {
				long, line = true, nil
			} else {
				line = append(line, chunk...)
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		return bytes.TrimSuffix(line, []byte{'\n'}), long, err
	}
}

func parseLine(line []byte, long bool) (Record, bool) {
	var r Record
	if long || json.Unmarshal(line, &r) != nil {
		return r, false
	}
	if r.Time.IsZero() || r.Domain == "" || r.PolicyType == "" || r.Result == "" {
		return r, false
	}
	return r, true
}

// canonDomain is how domains compare: lower case, without a final dot.
func canonDomain(d string) string { return strings.TrimSuffix(strings.ToLower(d), ".") }

// Domains lists the policy domains of records, each once, in canonical
// form (lower case, no final dot), sorted.
func Domains(records []Record) []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range records {
		d := canonDomain(r.Domain)
		if d != "" && !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	slices.Sort(out)
	return out
}
