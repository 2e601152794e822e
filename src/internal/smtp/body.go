// Package smtp holds the client side of SMTP that qmail-remote-io speaks:
// the DATA body transform, the reply reader, and envelope address quoting.
package smtp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
)

// BodyStats describes a message as it goes on the wire.
type BodyStats struct {
	InputBytes int64 // bytes read from the message
	// WireBytes is the size of the DATA body on the wire: CRLF line ends,
	// dot-stuffed, plus the final ".\r\n". It is exactly what SendBody
	// writes for the same input; for a message with a partial final line
	// that excludes the dot line, which SendBody never sends.
	WireBytes int64
	Has8Bit   bool // a byte >= 128
	// PartialFinalLine: the message is not empty and its last byte is
	// neither '\n' nor '\r'. A trailing bare CR is a line end, because a
	// bare CR goes out as CRLF, so the wire ends with CRLF and the dot
	// line follows cleanly.
	PartialFinalLine bool
}

// ErrPartialFinalLine is returned by SendBody for a message whose last line
// has no line end: SMTP cannot carry it (the stock D #5.6.2 case).
var ErrPartialFinalLine = errors.New("SMTP cannot transfer messages with partial final lines")

// blockSize is how much of the message is read at a time. The output of one
// block is at most twice as long (every byte a '.' at the start of a line,
// or every byte a line end), so memory stays flat whatever the size.
const blockSize = 64 * 1024

// The transform (RFC 5321 4.5.2 transparency, 2.3.8 line ends) is a
// three-state machine. "run" is a stretch of bytes with no CR or LF, copied
// whole; the output of a CR is sent at once, never held back.
//
//	                 LF / CRLF
//	       +-------------------------------+
//	       v                               |
//	    +-----+   '.' / ".."            +-----+ <-- run / run
//	--> | BOL | ----------------------> | MID | ---+
//	    +-----+   other: as in MID      +-----+    |
//	       ^                               ^       | CR / CRLF
//	       | LF / nothing                  |       v
//	       |                               |  +---------+
//	       +------------------------------(+)-| AFTERCR |
//	                 other: as in BOL      +--+---------+
//
//	state     input   output     next
//	BOL       '.'     ".."       MID     (dot-stuffing)
//	BOL       other   as in MID
//	MID       run     run        MID
//	MID       LF      CRLF       BOL
//	MID       CR      CRLF       AFTERCR
//	AFTERCR   LF      nothing    BOL     (the LF of a CRLF already sent)
//	AFTERCR   other   as in BOL          (a line starts after a bare CR)
//	end in BOL or AFTERCR: ".\r\n"; end in MID: partial final line
//
// The empty message ends in BOL: it is just ".\r\n", like stock.
// A CR at the end of one block and an LF at the start of the next are one
// CRLF because the state carries over. No bare CR or LF ever reaches the
// output, and every line starting with '.' is doubled, so the body cannot
// end DATA early (SMTP smuggling: \n.\r\n, \r.\r, \r\n.\n all come out as
// CRLF ".." CRLF).
type bodyState uint8

const (
	stateBOL bodyState = iota
	stateMID
	stateAfterCR
)

// transformer is the state machine of SendBody. ScanBody counts instead
// (counter); the tests hold the two to the same stats for every input, so
// that the size announced before sending is the size sent.
type transformer struct {
	state    bodyState
	stats    BodyStats
	skip8Bit bool // SendOptions.Skip8Bit
}

// feed transforms one block, appending the output to out.
func (t *transformer) feed(in, out []byte) []byte {
	t.stats.InputBytes += int64(len(in))
	if !t.stats.Has8Bit && !t.skip8Bit {
		t.stats.Has8Bit = has8Bit(in)
	}
	// Next CR and LF at or after i: -1 none left, -2 not searched yet.
	// Each search starts where the previous one ended, so a block of
	// nothing but CRs (or LFs) is still scanned once, not once per line.
	nextCR, nextLF := -2, -2
	i := 0
	for i < len(in) {
		switch t.state {
		case stateAfterCR:
			if in[i] == '\n' {
				i++
				t.state = stateBOL
				continue
			}
			fallthrough
		case stateBOL:
			if in[i] == '.' {
				out = append(out, '.')
			}
			t.state = stateMID
		}
		// stateMID: copy the run up to the next line end.
		if nextCR != -1 && nextCR < i {
			nextCR = indexFrom(in, i, '\r')
		}
		if nextLF != -1 && nextLF < i {
			nextLF = indexFrom(in, i, '\n')
		}
		j := nextCR
		if j < 0 || (nextLF >= 0 && nextLF < j) {
			j = nextLF
		}
		if j < 0 {
			out = append(out, in[i:]...)
			break
		}
		out = append(out, in[i:j]...)
		out = append(out, '\r', '\n')
		if in[j] == '\r' {
			t.state = stateAfterCR
		} else {
			t.state = stateBOL
		}
		i = j + 1
	}
	t.stats.WireBytes += int64(len(out))
	return out
}

// finish returns the dot line to send, or nil for a partial final line.
func (t *transformer) finish() []byte {
	if t.state == stateMID {
		t.stats.PartialFinalLine = true
		return nil
	}
	t.stats.WireBytes += 3
	return []byte(".\r\n")
}

// indexFrom returns the index of the first c in b at or after i, or -1.
func indexFrom(b []byte, i int, c byte) int {
	if k := bytes.IndexByte(b[i:], c); k >= 0 {
		return i + k
	}
	return -1
}

// has8Bit tells whether b holds a byte >= 128, 32 then 8 bytes at a time.
func has8Bit(b []byte) bool {
	le := binary.LittleEndian
	for len(b) >= 32 {
		if (le.Uint64(b)|le.Uint64(b[8:])|le.Uint64(b[16:])|le.Uint64(b[24:]))&0x8080808080808080 != 0 {
			return true
		}
		b = b[32:]
	}
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b)&0x8080808080808080 != 0 {
			return true
		}
		b = b[8:]
	}
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}

// run reads r block by block through the transformer, handing the output
// to emit. The output of a block is held until the next read, so that the
// dot line goes out in the same write as the end of the body (one write,
// one segment, fewer wake-ups of the server for the last bytes).
func run(r io.Reader, emit func([]byte) error, beforeDot func() error) (BodyStats, error) {
	var t transformer
	in := make([]byte, blockSize)
	out := make([]byte, 0, 2*blockSize+3)
	for {
		n, err := r.Read(in)
		if n > 0 {
			if len(out) > 0 {
				if werr := emit(out); werr != nil {
					return t.stats, werr
				}
			}
			out = t.feed(in[:n], out[:0])
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return t.stats, err
		}
	}
	dot := t.finish()
	if dot != nil && beforeDot != nil {
		if err := beforeDot(); err != nil {
			return t.stats, err
		}
	}
	out = append(out, dot...)
	if len(out) > 0 {
		if werr := emit(out); werr != nil {
			return t.stats, werr
		}
	}
	if dot == nil {
		return t.stats, ErrPartialFinalLine
	}
	return t.stats, nil
}

// ScanBody reads the whole message and returns its stats without writing
// anything. A partial final line is
// reported in the stats, not as an error: the error is a read error only.
//
// It gives exactly the stats SendBody would, but counts instead of
// transforming (see counter), because the pre-scan is on the critical path
// of every delivery: the whole message is read before the connection opens.
func ScanBody(r io.Reader) (BodyStats, error) {
	var s BodyScanner
	in := make([]byte, scanBlockSize)
	for {
		n, err := r.Read(in)
		if n > 0 {
			s.Write(in[:n])
		}
		if err == io.EOF {
			return s.Stats(), nil
		}
		if err != nil {
			return s.Stats(), err
		}
	}
}

// BodyScanner is ScanBody for a caller that reads the message its own way
// (qmail-remote's pre-scan reads parts of it at once, with pread(2), and
// joins them with Append): write the message to it in blocks of any size,
// in order, then take Stats. The stats are ScanBody's for the same bytes.
// The zero value is ready to use.
type BodyScanner struct{ c counter }

// Write counts b; it never fails.
func (s *BodyScanner) Write(b []byte) (int, error) {
	if len(b) > 0 {
		s.c.feed(b)
	}
	return len(b), nil
}

// Stats returns the stats of everything written so far, as if it were
// the whole message.
func (s *BodyScanner) Stats() BodyStats { return s.c.finish() }

// Append makes s count as if t's bytes had been written to s after its
// own, so that parts of a message can be counted apart (at once) and
// joined in order. t counted its first byte as the start of a line; only
// the byte before it, s's last, tells whether that was right and whether
// the two make a CRLF.
func (s *BodyScanner) Append(t *BodyScanner) {
	a, b := &s.c, t.c
	if b.in == 0 {
		return
	}
	if a.in == 0 {
		*a = b
		return
	}
	if a.last == '\r' && b.first == '\n' {
		b.crlf++
	}
	if b.first == '.' && a.last != '\n' && a.last != '\r' {
		b.dots--
	}
	a.in += b.in
	a.lf += b.lf
	a.cr += b.cr
	a.crlf += b.crlf
	a.dots += b.dots
	a.last = b.last
	a.has8Bit = a.has8Bit || b.has8Bit
}

// scanBlockSize: ScanBody keeps no output, so it can afford larger reads.
const scanBlockSize = 256 * 1024

// counter computes the transformer's stats from byte counts, which the
// bytes package finds at memory speed. What the transform adds to the
// input:
//
//	bare LF (LF not after CR)          +1  (it becomes CRLF)
//	bare CR (CR not before LF)         +1  (likewise, end of input too)
//	'.' at the start of a line         +1  (a line starts at the start of
//	                                        input, after LF, after a bare CR)
//	the dot line, unless partial       +3
//
// so WireBytes = input + (LF - CRLF) + (CR - CRLF) + dots + 3, where CRLF,
// "\n." and "\r." pairs that straddle two blocks are counted through the
// last byte of the previous block. A message ends in a partial line when
// its last byte is neither LF nor CR: that is the transformer's MID state.
type counter struct {
	in, lf, cr, crlf, dots int64
	first                  byte // first byte seen (when in > 0)
	last                   byte // last byte seen; '\n' before the first
	has8Bit                bool
}

var (
	lfDot  = []byte("\n.")
	lfByte = []byte{'\n'}
)

func (c *counter) feed(b []byte) {
	if c.in == 0 {
		c.last = '\n'
		c.first = b[0]
	}
	c.in += int64(len(b))
	if !c.has8Bit {
		c.has8Bit = has8Bit(b)
	}
	switch {
	case c.last == '\r' && b[0] == '\n':
		c.crlf++
	case (c.last == '\n' || c.last == '\r') && b[0] == '.':
		c.dots++
	}
	c.lf += int64(bytes.Count(b, lfByte))
	// Most queued messages have no CR at all (qmail keeps LF); for those
	// that do, one pass over the CRs looks at the byte after each.
	for i := bytes.IndexByte(b, '\r'); i >= 0; {
		c.cr++
		if i+1 < len(b) {
			switch b[i+1] {
			case '\n':
				c.crlf++
			case '.':
				c.dots++
			}
		}
		k := bytes.IndexByte(b[i+1:], '\r')
		if k < 0 {
			break
		}
		i += 1 + k
	}
	if bytes.IndexByte(b, '.') >= 0 {
		c.dots += int64(bytes.Count(b, lfDot))
	}
	c.last = b[len(b)-1]
}

func (c *counter) finish() BodyStats {
	st := BodyStats{InputBytes: c.in, Has8Bit: c.has8Bit}
	st.WireBytes = c.in + (c.lf - c.crlf) + (c.cr - c.crlf) + c.dots
	if c.in > 0 && c.last != '\n' && c.last != '\r' {
		st.PartialFinalLine = true
	} else {
		st.WireBytes += 3
	}
	return st
}

// SendBody writes the message to w as a DATA body, one Write per block of
// input, and then the final ".\r\n". If the last line turns out to be
// partial, everything but the dot line has been written and it returns
// ErrPartialFinalLine: the caller must drop the connection without ending
// DATA, so the server discards the message. A read error on r or a write
// error on w is returned as is (the caller tells them apart: it wraps its
// reader or writer).
func SendBody(w io.Writer, r io.Reader) (BodyStats, error) {
	return SendBodyWith(w, r, SendOptions{})
}

// SendBodyWith is SendBody with options (BeforeDot; Skip8Bit and Done are
// for SendBodyBytes).
func SendBodyWith(w io.Writer, r io.Reader, opt SendOptions) (BodyStats, error) {
	return run(r, func(b []byte) error {
		_, err := w.Write(b)
		return err
	}, opt.BeforeDot)
}

// SendOptions tunes SendBodyBytes.
type SendOptions struct {
	// Skip8Bit: do not look for bytes >= 128; the stats then say Has8Bit
	// false. For a caller that knows already: qmail-remote-io has the
	// pre-scan's QMAILREMOTE_MSG8BIT, and the test costs a pass over the
	// whole message.
	Skip8Bit bool
	// Done, if set, is called with each part of the message once it has
	// been transformed, in order; its output may not have been written
	// yet, but the part is not looked at again. qmail-remote-io gives
	// the pages of its mapping back there.
	Done func(part []byte)
	// BeforeDot, if set, is called right before the write that carries the
	// final dot line (with the end of the body), and never after a partial
	// final line. An error stops the send there: the dot is not written,
	// and the error is returned. qmail-remote-io checks there that the
	// server has not answered before being asked, and records that the dot
	// may now be out (package progress).
	BeforeDot func() error
}

// SendBodyBytes is SendBody for a message that is already in memory (a
// mapping of the queue file): it transforms msg where it lies, without
// first copying it into a buffer, with the same output, writes and
// errors as SendBody over the same bytes. In particular it never writes
// the dot line after a partial final line (ErrPartialFinalLine).
func SendBodyBytes(w io.Writer, msg []byte, opt SendOptions) (BodyStats, error) {
	t := transformer{skip8Bit: opt.Skip8Bit}
	out := make([]byte, 0, 2*blockSize+3)
	for off := 0; off < len(msg); off += blockSize {
		// As in run: the output of a block waits for the next, so that
		// the dot line goes out with the end of the body.
		if len(out) > 0 {
			if _, err := w.Write(out); err != nil {
				return t.stats, err
			}
		}
		in := msg[off:min(off+blockSize, len(msg))]
		out = t.feed(in, out[:0])
		if opt.Done != nil {
			opt.Done(in)
		}
	}
	dot := t.finish()
	if dot != nil && opt.BeforeDot != nil {
		if err := opt.BeforeDot(); err != nil {
			return t.stats, err
		}
	}
	out = append(out, dot...)
	if len(out) > 0 {
		if _, err := w.Write(out); err != nil {
			return t.stats, err
		}
	}
	if dot == nil {
		return t.stats, ErrPartialFinalLine
	}
	return t.stats, nil
}
