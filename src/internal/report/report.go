// Package report writes and checks the reports qmail-remote prints for
// qmail-rspawn: a letter, a text, a NUL byte. Recipient reports (r, h, s)
// come first, in argument order, then exactly one message report (K, Z, D).
//
// Each report goes out in one write(2) of at most Max bytes: a pipe write of
// at most PIPE_BUF (4096 on Linux) bytes is atomic, so a process that dies
// can never leave half a report in qmail-rspawn's pipe.
package report

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Max is the largest report, letter and NUL included.
const Max = 4096

// Letters.
const (
	RcptOK        = 'r' // recipient accepted
	RcptPermanent = 'h' // recipient permanently rejected
	RcptTemporary = 's' // recipient temporarily rejected
	Delivered     = 'K'
	Temporary     = 'Z'
	Permanent     = 'D'
)

// IsRcpt tells whether c is a recipient report letter.
func IsRcpt(c byte) bool { return c == RcptOK || c == RcptPermanent || c == RcptTemporary }

// IsMessage tells whether c is a message report letter.
func IsMessage(c byte) bool { return c == Delivered || c == Temporary || c == Permanent }

// Sanitize returns text with NUL and every other control byte except
// newline (and DEL) replaced by '?', so a server cannot end a report early
// or put escape sequences into the logs.
func Sanitize(text string) string {
	clean := true
	for i := 0; i < len(text); i++ {
		if c := text[i]; (c < 0x20 && c != '\n') || c == 0x7f {
			clean = false
			break
		}
	}
	if clean {
		return text
	}
	b := []byte(text)
	for i, c := range b {
		if (c < 0x20 && c != '\n') || c == 0x7f {
			b[i] = '?'
		}
	}
	return string(b)
}

const truncated = "\n(text truncated)\n"

// Format builds one report: letter, sanitized text bounded so that the
// whole fits in Max bytes, and the NUL.
func Format(letter byte, text string) []byte {
	text = Sanitize(text)
	if 1+len(text)+1 > Max {
		text = text[:Max-2-len(truncated)] + truncated
	}
	b := make([]byte, 0, len(text)+2)
	b = append(b, letter)
	b = append(b, text...)
	return append(b, 0)
}

// Write writes one report with a single Write call.
func Write(w io.Writer, letter byte, text string) error {
	_, err := w.Write(Format(letter, text))
	return err
}

// RemoteSaid formats a server reply the way stock qmail-remote does:
// "Remote host said: " before the first line, each line ended by a newline.
// reply holds the reply's lines separated (or ended) by newlines, without
// CRs. An empty reply gives an empty string.
func RemoteSaid(reply string) string {
	if reply == "" {
		return ""
	}
	if reply[len(reply)-1] != '\n' {
		reply += "\n"
	}
	return "Remote host said: " + reply
}

// Report is one parsed report.
type Report struct {
	Letter byte
	Text   string
}

// Raw returns the report as written on the wire.
func (r Report) Raw() []byte { return Format(r.Letter, r.Text) }

// Result is a whole parsed output: recipient reports and the message report.
type Result struct {
	Rcpts   []Report
	Message Report
}

// ErrNoMessage says the output ended without a message report.
var ErrNoMessage = errors.New("no message report")

// Parse checks a stage's whole output: at most nrcpt recipient reports, then
// exactly one message report, then nothing. Every report must be a known
// letter, text without NUL, and at most Max bytes.
func Parse(out []byte, nrcpt int) (Result, error) {
	var res Result
	for len(out) > 0 {
		i := bytes.IndexByte(out, 0)
		if i < 0 {
			return res, fmt.Errorf("unterminated report %q", clip(out))
		}
		if i+1 > Max {
			return res, fmt.Errorf("report of %d bytes, more than %d", i+1, Max)
		}
		if i == 0 {
			return res, errors.New("empty report")
		}
		r := Report{Letter: out[0], Text: string(out[1:i])}
		out = out[i+1:]
		switch {
		case IsRcpt(r.Letter):
			if len(res.Rcpts) >= nrcpt {
				return res, fmt.Errorf("more recipient reports than the %d recipients", nrcpt)
			}
			res.Rcpts = append(res.Rcpts, r)
		case IsMessage(r.Letter):
			if len(out) > 0 {
				return res, fmt.Errorf("output after the message report: %q", clip(out))
			}
			res.Message = r
			return res, nil
		default:
			return res, fmt.Errorf("unknown report letter %q", r.Letter)
		}
	}
	return res, ErrNoMessage
}

func clip(b []byte) string {
	if len(b) > 60 {
		b = b[:60]
	}
	return Sanitize(string(b))
}
