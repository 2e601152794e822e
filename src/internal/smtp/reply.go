package smtp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"qmail-remote-go/src/internal/say"
)

// Bounds on what one reply may cost. A reply may have any number of lines
// (a 4 MB multi-line 550 is still a 550, and the mail bounces as with
// stock); only what is kept for the report is bounded, so memory does
// not grow with what the server sends. Time is bounded by the caller, who
// gives the whole reply one deadline (timeoutremote), however it dribbles
// in. One line longer than MaxLineBytes is no SMTP (RFC 5321 4.5.3.1.5 says
// 512): ErrLineTooLong.
const (
	MaxLine      = 4096    // bytes of one line kept in Reply.Text; the rest is read and dropped
	MaxText      = 8192    // bytes of Reply.Text kept over all lines; later lines are read, counted and dropped
	MaxLineBytes = 1 << 20 // bytes read for one line, its end included; more is ErrLineTooLong
)

// ErrMalformedReply is a reply that is not SMTP (RFC 5321 4.2): no code,
// different codes on the lines of one reply, junk after the code.
var ErrMalformedReply = errors.New("malformed SMTP reply")

// ErrLineTooLong is a reply line longer than MaxLineBytes bytes.
var ErrLineTooLong = errors.New("SMTP reply line longer than 1 MiB")

// Reply is one server reply.
type Reply struct {
	Code int // 200 to 599
	// Text is every line of the reply, code included, each followed by
	// "\n", without CRs: what stock qmail-remote keeps and prints after
	// "Remote host said: " (report.RemoteSaid). Lines are cut at MaxLine
	// bytes. NUL and other control bytes are kept as received; the report
	// package sanitizes them. At most MaxText bytes (plus the last
	// line's newline) are kept: whole lines, the first ones.
	Text string
	// Dropped is the number of lines read after Text was full: a
	// multi-line reply of any length is read to its end, and only its
	// beginning is kept.
	Dropped int
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
// with the same code on every line, and any number of lines (only the
// first MaxText bytes are kept). A bare LF is accepted as a line end (the
// CR before an LF is dropped, any other CR is text). On error, the
// returned Reply holds the text read so far (Code 0), for the report. The
// reader's own errors (EOF, timeouts) are returned as they are, except that
// an EOF inside a reply is io.ErrUnexpectedEOF.
func ReadReply(br *bufio.Reader) (Reply, error) {
	var text strings.Builder
	var code [3]byte
	dropped := 0
	// buf is reused for every line: a line that is dropped costs no
	// allocation, so a reply of a million lines costs what one does.
	var buf []byte
	keep := func(line []byte) {
		if dropped == 0 && text.Len()+len(line) <= MaxText {
			text.Write(line)
			text.WriteByte('\n')
			return
		}
		dropped++
	}
	fail := func(err error) (Reply, error) {
		return Reply{Text: text.String(), Dropped: dropped}, err
	}
	for n := 0; ; n++ {
		line, err := readLine(br, buf[:0])
		buf = line
		if err == io.EOF && n > 0 {
			err = io.ErrUnexpectedEOF
		}
		if len(line) > 0 || err == nil {
			keep(line)
		}
		if err != nil {
			return fail(err)
		}
		if !validCode(line) {
			return fail(fmt.Errorf("%w: %q does not start with a reply code", ErrMalformedReply, say.Clip(string(line), 40)))
		}
		if n == 0 {
			copy(code[:], line)
		} else if [3]byte(line[:3]) != code {
			return fail(fmt.Errorf("%w: a line with code %s in a reply with code %s", ErrMalformedReply, line[:3], code[:]))
		}
		if len(line) == 3 || line[3] == ' ' {
			c := int(code[0]-'0')*100 + int(code[1]-'0')*10 + int(code[2]-'0')
			return Reply{Code: c, Text: text.String(), Dropped: dropped}, nil
		}
		if line[3] != '-' {
			return fail(fmt.Errorf("%w: %q has neither a space nor a '-' after the code", ErrMalformedReply, say.Clip(string(line), 40)))
		}
	}
}

func validCode(l []byte) bool {
	return len(l) >= 3 && l[0] >= '2' && l[0] <= '5' && l[1] >= '0' && l[1] <= '5' && l[2] >= '0' && l[2] <= '9'
}

// readLine reads one line into kept (reused from line to line), keeping
// at most MaxLine bytes of it; a line of more than MaxLineBytes bytes is
// ErrLineTooLong. The line is returned without LF, and without the CR
// before the LF. At the end of input without a line end, it returns
// what it has and io.EOF (io.ErrUnexpectedEOF if it has something).
func readLine(br *bufio.Reader, kept []byte) ([]byte, error) {
	n := 0        // length of the line so far
	var last byte // its last byte
	for {
		chunk, err := br.ReadSlice('\n')
		if n+len(chunk) > MaxLineBytes {
			return kept[:min(len(kept), MaxLine)], ErrLineTooLong
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
		return kept, err
	}
}
