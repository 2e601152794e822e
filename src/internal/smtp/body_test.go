package smtp

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand"
	"net"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"qmail-remote-go/src/testkit/smtptest"
)

// refStream is the reference transform, byte by byte and as plain as it
// gets: a line ends at CRLF, LF or a lone CR and goes out with CRLF; a line
// starting with '.' gets another one. It returns whether the last line was
// partial; otherwise it has written the dot line too.
func refStream(r io.ByteScanner, w io.ByteWriter) (partial bool) {
	bol := true
	for {
		c, err := r.ReadByte()
		if err != nil {
			break
		}
		if bol && c == '.' {
			w.WriteByte('.')
		}
		switch c {
		case '\r':
			if n, err := r.ReadByte(); err == nil && n != '\n' {
				r.UnreadByte()
			}
			fallthrough
		case '\n':
			w.WriteByte('\r')
			w.WriteByte('\n')
			bol = true
		default:
			w.WriteByte(c)
			bol = false
		}
	}
	if !bol {
		return true
	}
	w.WriteByte('.')
	w.WriteByte('\r')
	w.WriteByte('\n')
	return false
}

func ref(in string) (string, bool) {
	var out bytes.Buffer
	partial := refStream(strings.NewReader(in), &out)
	return out.String(), partial
}

func send(t *testing.T, r io.Reader) (string, BodyStats, error) {
	t.Helper()
	var out bytes.Buffer
	st, err := SendBody(&out, r)
	return out.String(), st, err
}

func TestSendBodyTable(t *testing.T) {
	for _, tc := range []struct{ in, out string }{
		{"", ".\r\n"},
		{"\n", "\r\n.\r\n"},
		{"a\n", "a\r\n.\r\n"},
		{"a\r\n", "a\r\n.\r\n"},
		{"a\rb\n", "a\r\nb\r\n.\r\n"},
		{"a\r", "a\r\n.\r\n"}, // a trailing bare CR is a line end
		{".\n", "..\r\n.\r\n"},
		{".", ""}, // partial
		{"..\n", "...\r\n.\r\n"},
		{"a.\n.b\n", "a.\r\n..b\r\n.\r\n"},
		{"\r.\r\n", "\r\n..\r\n.\r\n"},
		// SMTP smuggling attempts (CVE-2023-51764 and friends): none may
		// produce "\r\n.\r\n" before the end.
		{"x\n.\r\nMAIL FROM:<a@example.test>\n", "x\r\n..\r\nMAIL FROM:<a@example.test>\r\n.\r\n"},
		{"x\r.\rMAIL\n", "x\r\n..\r\nMAIL\r\n.\r\n"},
		{"x\r\n.\nMAIL\n", "x\r\n..\r\nMAIL\r\n.\r\n"},
		{"x\n.\nMAIL\n", "x\r\n..\r\nMAIL\r\n.\r\n"},
		{"x\r.\r\nMAIL\n", "x\r\n..\r\nMAIL\r\n.\r\n"},
		{"x\r\r\n.\r\r\n", "x\r\n\r\n..\r\n\r\n.\r\n"},
		{"\n\r\n\r\r\n", "\r\n\r\n\r\n\r\n.\r\n"},
		{"\xff\x80\n", "\xff\x80\r\n.\r\n"},
	} {
		got, st, err := send(t, strings.NewReader(tc.in))
		partial := tc.out == ""
		if partial {
			if !errors.Is(err, ErrPartialFinalLine) || !st.PartialFinalLine || strings.HasSuffix(got, ".\r\n") {
				t.Errorf("%q: got %q, %v, %+v; want a partial final line", tc.in, got, err, st)
			}
			continue
		}
		if err != nil || got != tc.out {
			t.Errorf("%q: got %q, %v; want %q", tc.in, got, err, tc.out)
		}
		if r, _ := ref(tc.in); r != tc.out {
			t.Errorf("%q: the reference gives %q, the table %q", tc.in, r, tc.out)
		}
		if st.WireBytes != int64(len(got)) || st.InputBytes != int64(len(tc.in)) || st.PartialFinalLine {
			t.Errorf("%q: stats %+v", tc.in, st)
		}
		if st.Has8Bit != strings.ContainsAny(tc.in, "\x80\xff") {
			t.Errorf("%q: Has8Bit %v", tc.in, st.Has8Bit)
		}
	}
}

// chunkReader returns the input in pieces of random sizes, so that every
// block boundary (a CR at the end, an LF at the start) gets exercised.
type chunkReader struct {
	b   []byte
	rnd *rand.Rand
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := 1 + c.rnd.Intn(8)
	if c.rnd.Intn(4) == 0 {
		n = 1 + c.rnd.Intn(len(c.b))
	}
	n = min(n, len(p), len(c.b))
	copy(p, c.b[:n])
	c.b = c.b[n:]
	return n, nil
}

func randomBody(rnd *rand.Rand, n int) []byte {
	const alphabet = "..\r\r\n\nab\x80 "
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rnd.Intn(len(alphabet))]
	}
	return b
}

// TestSendBodyRandom checks SendBody against the reference, ScanBody's
// WireBytes against what SendBody wrote, and the wire against smuggling.
func TestSendBodyRandom(t *testing.T) {
	rnd := rand.New(rand.NewSource(1))
	for i := range 3000 {
		in := randomBody(rnd, rnd.Intn(200))
		if i%100 == 0 {
			in = randomBody(rnd, blockSize+rnd.Intn(3*blockSize)) // several blocks
		}
		want, wantPartial := ref(string(in))
		var r io.Reader = bytes.NewReader(in)
		switch i % 3 {
		case 1:
			r = &chunkReader{in, rnd}
		case 2:
			r = iotest.OneByteReader(bytes.NewReader(in))
		}
		got, st, err := send(t, r)
		if wantPartial {
			if !errors.Is(err, ErrPartialFinalLine) || !st.PartialFinalLine || !strings.HasPrefix(want, got) || len(got) > len(want) {
				t.Fatalf("%q: got %q %v %+v; want partial", in, got, err, st)
			}
		} else if err != nil || got != want {
			t.Fatalf("%q: got %q %v; want %q", in, got, err, want)
		}
		scan, err := ScanBody(&chunkReader{in, rnd})
		if err != nil || scan != st || scan.WireBytes != int64(len(got)) {
			t.Fatalf("%q: ScanBody %+v %v, SendBody %+v, wrote %d", in, scan, err, st, len(got))
		}
		checkWire(t, got, !wantPartial)
		var bs BodyScanner
		for rest := in; len(rest) > 0; {
			k := min(len(rest), rnd.Intn(3*blockSize/2)) // empty writes too
			bs.Write(rest[:k])
			rest = rest[k:]
		}
		if bs.Stats() != st {
			t.Fatalf("%q: BodyScanner %+v, SendBody %+v", in, bs.Stats(), st)
		}
		// Counted in parts (some empty) and joined.
		var joined BodyScanner
		for rest := in; ; {
			k := min(len(rest), rnd.Intn(4))
			if i%100 == 0 {
				k = min(len(rest), rnd.Intn(blockSize))
			}
			var part BodyScanner
			part.Write(rest[:k])
			joined.Append(&part)
			rest = rest[k:]
			if len(rest) == 0 {
				break
			}
		}
		if joined.Stats() != st {
			t.Fatalf("%q: BodyScanner parts appended %+v, SendBody %+v", in, joined.Stats(), st)
		}
	}
}

// checkWire: only CRLF line ends, and the end of data only at the very end.
func checkWire(t *testing.T, wire string, complete bool) {
	t.Helper()
	if strings.Contains(strings.ReplaceAll(wire, "\r\n", ""), "\r") || strings.Contains(strings.ReplaceAll(wire, "\r\n", ""), "\n") {
		t.Fatalf("bare CR or LF on the wire: %q", wire)
	}
	body := "\r\n" + wire
	i := strings.Index(body, "\r\n.\r\n")
	if complete && i != len(body)-5 || !complete && i >= 0 {
		t.Fatalf("end of data at %d in %q", i, wire)
	}
}

type failReader struct{ n int }

func (f *failReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, errors.New("disk on fire")
	}
	f.n--
	return copy(p, "line\n"), nil
}

type failWriter struct{}

func (failWriter) Write(p []byte) (int, error) { return 0, errors.New("broken pipe") }

func TestSendBodyErrors(t *testing.T) {
	got, _, err := send(t, &failReader{2})
	if err == nil || err.Error() != "disk on fire" || strings.Contains(got, ".\r\n") {
		t.Errorf("read error: %q %v", got, err)
	}
	if _, err := ScanBody(&failReader{1}); err == nil {
		t.Errorf("ScanBody ignored a read error")
	}
	if _, err := SendBody(failWriter{}, strings.NewReader("a\n")); err == nil || err.Error() != "broken pipe" {
		t.Errorf("write error: %v", err)
	}
	st, err := ScanBody(strings.NewReader("abc"))
	if err != nil || !st.PartialFinalLine || st.WireBytes != 3 {
		t.Errorf("ScanBody partial: %+v %v", st, err)
	}
}

// patternReader repeats a pattern whose length is not a multiple of the
// block size, so the block boundaries fall everywhere, up to size bytes.
type patternReader struct {
	pat  []byte
	off  int
	left int64
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.left == 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > p.left {
		b = b[:p.left]
	}
	n := copy(b, p.pat[p.off:])
	p.off = (p.off + n) % len(p.pat)
	p.left -= int64(n)
	return n, nil
}

// realisticPattern looks like mail: lines of text of various lengths, a few
// dots at line starts, mostly LF (qmail queue files), some CRLF and CR.
func realisticPattern(size int) []byte {
	rnd := rand.New(rand.NewSource(2))
	var b bytes.Buffer
	for b.Len() < size {
		if rnd.Intn(50) == 0 {
			b.WriteByte('.')
		}
		n := rnd.Intn(78)
		for range n {
			b.WriteByte(byte(' ' + rnd.Intn(95)))
		}
		switch rnd.Intn(20) {
		case 0:
			b.WriteString("\r\n")
		case 1:
			b.WriteString("\r")
		default:
			b.WriteString("\n")
		}
	}
	return b.Bytes()
}

// TestSendBodyLoopback streams 200 MB through a real socket into the test
// server and compares what it received with the reference transform.
func TestSendBodyLoopback(t *testing.T) {
	if testing.Short() {
		t.Skip("200 MB body skipped under -short")
	}
	const size = 200 << 20
	pat := realisticPattern(1<<20 + 12345)
	pat = append(pat, "\r.\r"...) // a bare CR at the end of the pattern and a dot after it
	srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{})
	c, err := net.Dial("tcp", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	br := bufio.NewReader(c)
	expect := func(prefix string) {
		t.Helper()
		for {
			line, err := br.ReadString('\n')
			if err != nil || !strings.HasPrefix(line, prefix) {
				t.Fatalf("expected %s, got %q %v", prefix, line, err)
			}
			if line[3] == ' ' {
				return
			}
		}
	}
	expect("220")
	for _, cmd := range []struct{ line, code string }{
		{"EHLO client.example.test", "250"},
		{"MAIL FROM:<a@example.test>", "250"},
		{"RCPT TO:<b@example.test>", "250"},
		{"DATA", "354"},
	} {
		io.WriteString(c, cmd.line+"\r\n")
		expect(cmd.code)
	}
	size64 := int64(size)
	start := time.Now()
	body := func() io.Reader {
		return io.MultiReader(&patternReader{pat: pat, left: size64}, strings.NewReader("\n"))
	}
	st, err := SendBody(c, body())
	if err != nil {
		t.Fatal(err)
	}
	expect("250")
	elapsed := time.Since(start)

	h := sha256.New()
	hw := bufio.NewWriterSize(h, 64<<10)
	cw := &countWriter{w: hw}
	if refStream(bufio.NewReaderSize(body(), 64<<10), cw) || string(cw.tail[:]) != ".\r\n" {
		t.Fatal("reference: partial final line")
	}
	hw.Flush()
	var want [32]byte
	copy(want[:], h.Sum(nil))
	// The server keeps the body without the final ".\r\n".
	msgs := srv.Messages()
	if len(msgs) != 1 || !msgs[0].Done {
		t.Fatalf("server got %d messages: %+v", len(msgs), msgs)
	}
	m := msgs[0]
	if m.Len != cw.n-3 || m.Sum != want || st.WireBytes != cw.n || st.InputBytes != size64+1 {
		t.Fatalf("server got %d bytes (sum %x), reference %d bytes (sum %x); stats %+v", m.Len, m.Sum, cw.n-3, want, st)
	}
	t.Logf("200 MB in %v", elapsed)
}

// countWriter counts bytes and passes on all but the last three (the
// server keeps the body without the final ".\r\n").
type countWriter struct {
	w    *bufio.Writer
	n    int64
	tail [3]byte
}

func (c *countWriter) WriteByte(b byte) error {
	if c.n >= 3 {
		c.w.WriteByte(c.tail[0])
	}
	c.tail[0], c.tail[1], c.tail[2] = c.tail[1], c.tail[2], b
	c.n++
	return nil
}

func BenchmarkSendBody(b *testing.B) {
	for _, bc := range []struct {
		name string
		pat  []byte
	}{
		{"realistic", realisticPattern(1<<20 + 4321)},
		{"dots-and-crs", bytes.Repeat([]byte(".\r"), 1<<19)},
		{"dots-and-lfs", bytes.Repeat([]byte(".\n"), 1<<19)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			const size = 8 << 20
			b.SetBytes(size)
			for b.Loop() {
				if _, err := SendBody(io.Discard, &patternReader{pat: bc.pat, left: size}); err != nil && !errors.Is(err, ErrPartialFinalLine) {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestBeforeDot: the hook runs once, right before the write that carries
// the dot, for both senders; never after a partial final line; and its
// error keeps the dot off the wire.
func TestBeforeDot(t *testing.T) {
	big := strings.Repeat("line\n", 40000) // several blocks
	for _, tc := range []struct {
		name, msg string
		fail      bool
		calls     int
		dot       bool
	}{
		{"small", "hello\n", false, 1, true},
		{"empty", "", false, 1, true},
		{"big", big, false, 1, true},
		{"partial", "hello", false, 0, false},
		{"refused", big, true, 1, false},
	} {
		for _, sender := range []string{"SendBodyWith", "SendBodyBytes"} {
			t.Run(tc.name+"/"+sender, func(t *testing.T) {
				var out bytes.Buffer
				calls, writesBefore := 0, -1
				writes := 0
				w := writerFunc(func(p []byte) (int, error) { writes++; return out.Write(p) })
				hook := func() error {
					calls++
					writesBefore = writes
					if tc.fail {
						return errors.New("out of step")
					}
					return nil
				}
				opt := SendOptions{BeforeDot: hook}
				var err error
				if sender == "SendBodyWith" {
					_, err = SendBodyWith(w, strings.NewReader(tc.msg), opt)
				} else {
					_, err = SendBodyBytes(w, []byte(tc.msg), opt)
				}
				if calls != tc.calls {
					t.Fatalf("hook called %d times, want %d", calls, tc.calls)
				}
				gotDot := strings.HasSuffix(out.String(), "\r\n.\r\n") || out.String() == ".\r\n"
				if gotDot != tc.dot {
					t.Fatalf("dot written: %v, want %v (err %v)", gotDot, tc.dot, err)
				}
				if tc.fail && (err == nil || err.Error() != "out of step") {
					t.Errorf("err %v, want the hook's", err)
				}
				if tc.dot && writesBefore != writes-1 {
					t.Errorf("hook ran after write %d of %d: not right before the last", writesBefore, writes)
				}
			})
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
