package smtp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Bounds on what one reply may cost. A server can send anything; we keep
// enough for the report (report.Max is 4 KiB anyway) and give up on a reply
// that would never end.
const (
	MaxLine  = 4096    // bytes of one line kept in Reply.Text; the rest is read and dropped
	MaxReply = 1 << 20 // bytes read for one reply, line ends included; more is ErrReplyTooLong
)

// ErrMalformedReply is a reply that is not SMTP (RFC 5321 4.2): no code,
// different codes on the lines of one reply, junk after the code.
var ErrMalformedReply = errors.New("malformed SMTP reply")

// ErrReplyTooLong is a reply longer than MaxReply bytes.
var ErrReplyTooLong = errors.New("SMTP reply longer than 1 MiB")

// Reply is one server reply.
type Reply struct {
	Code int // 200 to 599
	// Text is every line of the reply, code included, each followed by
	// "\n", without CRs: what stock qmail-remote keeps and prints after
	// "Remote host said: " (report.RemoteSaid). Lines are cut at MaxLine
	// bytes. NUL and other control bytes are kept as received; the report
	// package sanitizes them.
	Text string
}

// Class is the first digit of the code: 2 success, 3 intermediate, 4
// transient failure, 5 permanent failure (RFC 5321 4.2.1).
func (r Reply) Class() int { return r.Code / 100 }

// Lines returns the lines of the reply, without the "\n"s.
func (r Reply) Lines() []string {
	return strings.Split(strings.TrimSuffix(r.Text, "\n"), "\n")
}

// ReadReply reads one reply (RFC 5321 4.2):
//
//	Reply-line = *( Reply-code "-" [ textstring ] CRLF )
//	             Reply-code [ SP textstring ] CRLF
//	Reply-code = %x32-35 %x30-35 %x30-39
//
// with the same code on every line. A bare LF is accepted as a line end
// (the CR before an LF is dropped, any other CR is text). On error, the
// returned Reply holds the text read so far (Code 0), for the report. The
// reader's own errors (EOF, timeouts) are returned as they are, except that
// an EOF inside a reply is io.ErrUnexpectedEOF.
func ReadReply(br *bufio.Reader) (Reply, error) {
	var text strings.Builder
	var code string
	total := 0
	for n := 0; ; n++ {
		line, err := readLine(br, &total)
		if err == io.EOF && n > 0 {
			err = io.ErrUnexpectedEOF
		}
		if line != "" || err == nil {
			text.WriteString(line)
			text.WriteByte('\n')
		}
		if err != nil {
			return Reply{Text: text.String()}, err
		}
		if !validCode(line) {
			return Reply{Text: text.String()}, fmt.Errorf("%w: %q does not start with a reply code", ErrMalformedReply, clip(line))
		}
		if n == 0 {
			code = line[:3]
		} else if line[:3] != code {
			return Reply{Text: text.String()}, fmt.Errorf("%w: a line with code %s in a reply with code %s", ErrMalformedReply, line[:3], code)
		}
		if len(line) == 3 || line[3] == ' ' {
			c := int(code[0]-'0')*100 + int(code[1]-'0')*10 + int(code[2]-'0')
			return Reply{Code: c, Text: text.String()}, nil
		}
		if line[3] != '-' {
			return Reply{Text: text.String()}, fmt.Errorf("%w: %q has neither a space nor a '-' after the code", ErrMalformedReply, clip(line))
		}
	}
}

func validCode(l string) bool {
	return len(l) >= 3 && l[0] >= '2' && l[0] <= '5' && l[1] >= '0' && l[1] <= '5' && l[2] >= '0' && l[2] <= '9'
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// readLine reads one line, keeping at most MaxLine bytes of it, and counts
// what it read into *total. The line is returned without LF, and without
// the CR before the LF. At the end of input without a line end, it returns
// what it has and io.EOF (io.ErrUnexpectedEOF if it has something).
func readLine(br *bufio.Reader, total *int) (string, error) {
	var kept []byte
	n := 0        // length of the line so far
	var last byte // its last byte
	for {
		chunk, err := br.ReadSlice('\n')
		*total += len(chunk)
		if *total > MaxReply {
			return string(kept[:min(len(kept), MaxLine)]), ErrReplyTooLong
		}
		data := chunk
		if err == nil {
			data = chunk[:len(chunk)-1] // the LF
		}
		if len(data) > 0 {
			last = data[len(data)-1]
			n += len(data)
		}
		// Keep one byte more than MaxLine: it may be the CR before the LF.
		if room := MaxLine + 1 - len(kept); room > 0 {
			kept = append(kept, data[:min(room, len(data))]...)
		}
		switch err {
		case bufio.ErrBufferFull:
			continue
		case nil:
			if n > 0 && last == '\r' && len(kept) == n {
				kept = kept[:n-1]
			}
		case io.EOF:
			if n > 0 {
				err = io.ErrUnexpectedEOF
			}
		}
		if len(kept) > MaxLine {
			kept = kept[:MaxLine]
		}
		return string(kept), err
	}
}
