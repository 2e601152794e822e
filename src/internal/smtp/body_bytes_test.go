package smtp

import (
	"bytes"
	"errors"
	"math/rand"
	"testing"
)

// recWriter records the output and the size of every Write.
type recWriter struct {
	bytes.Buffer
	writes []int
}

func (w *recWriter) Write(p []byte) (int, error) {
	w.writes = append(w.writes, len(p))
	return w.Buffer.Write(p)
}

// TestSendBodyBytes: SendBodyBytes writes exactly what SendBody writes for
// the same bytes, in the same writes, with the same stats and errors (but
// Has8Bit when told to skip it), and hands every byte to Done once, in
// order.
func TestSendBodyBytes(t *testing.T) {
	rnd := rand.New(rand.NewSource(2))
	for i := range 1500 {
		in := randomBody(rnd, rnd.Intn(200))
		if i%50 == 0 {
			in = randomBody(rnd, blockSize+rnd.Intn(3*blockSize))
		}
		if i%7 == 0 && len(in) > 0 {
			in[rnd.Intn(len(in))] = 0xe9
		}
		var a, b recWriter
		sa, ea := SendBody(&a, bytes.NewReader(in))
		var done []byte
		sb, eb := SendBodyBytes(&b, in, SendOptions{Done: func(p []byte) { done = append(done, p...) }})
		if a.String() != b.String() || sa != sb || !errors.Is(eb, ea) || len(a.writes) != len(b.writes) {
			t.Fatalf("%q: SendBodyBytes %q %+v %v %v, SendBody %q %+v %v %v", in, b.String(), sb, eb, b.writes, a.String(), sa, ea, a.writes)
		}
		if !bytes.Equal(done, in) {
			t.Fatalf("%q: Done saw %q", in, done)
		}
		var c recWriter
		sc, ec := SendBodyBytes(&c, in, SendOptions{Skip8Bit: true})
		sa.Has8Bit = false
		if c.String() != a.String() || sc != sa || !errors.Is(ec, ea) {
			t.Fatalf("%q: Skip8Bit %q %+v %v", in, c.String(), sc, ec)
		}
	}
}

// TestSendBodyBytesPartial: never the dot after a partial last line, also
// when it is the last of several blocks.
func TestSendBodyBytesPartial(t *testing.T) {
	in := append(bytes.Repeat([]byte("line\n"), blockSize/2), "no end"...)
	var w recWriter
	st, err := SendBodyBytes(&w, in, SendOptions{Skip8Bit: true})
	if !errors.Is(err, ErrPartialFinalLine) || !st.PartialFinalLine || bytes.HasSuffix(w.Bytes(), []byte(".\r\n")) || !bytes.HasSuffix(w.Bytes(), []byte("no end")) {
		t.Fatalf("got %v %+v, ends %q", err, st, w.Bytes()[max(0, w.Len()-20):])
	}
	if _, err := SendBodyBytes(failWriter{}, []byte("a\n"), SendOptions{}); err == nil || err.Error() != "broken pipe" {
		t.Fatalf("write error: %v", err)
	}
	w.Reset()
	if _, err := SendBodyBytes(&w, nil, SendOptions{}); err != nil || w.String() != ".\r\n" {
		t.Fatalf("empty: %q %v", w.String(), err)
	}
}
