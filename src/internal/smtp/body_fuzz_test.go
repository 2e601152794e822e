package smtp

import (
	"bytes"
	"errors"
	"testing"
	"testing/iotest"
)

// FuzzBody: SendBody writes what the byte-by-byte reference does, and
// ScanBody (which counts instead of transforming) announces exactly the
// stats of SendBody, whatever the reads' sizes.
func FuzzBody(f *testing.F) {
	for _, s := range []string{"", ".", "\r", "\n", ".\r.\n.", "a\r\n.\r\n", "\r\r\n\n..", "x\r.\r\n", "\x80.\n"} {
		f.Add([]byte(s), uint8(0))
	}
	f.Fuzz(func(t *testing.T, in []byte, split uint8) {
		want, wantPartial := ref(string(in))
		var out bytes.Buffer
		st, err := SendBody(&out, iotest.HalfReader(bytes.NewReader(in)))
		if wantPartial != errors.Is(err, ErrPartialFinalLine) || (!wantPartial && (err != nil || out.String() != want)) {
			t.Fatalf("%q: SendBody %q %v, want %q partial %v", in, out.String(), err, want, wantPartial)
		}
		var r = iotest.OneByteReader(bytes.NewReader(in))
		if split%2 == 0 {
			r = bytes.NewReader(in)
		}
		scan, err := ScanBody(r)
		if err != nil || scan != st || scan.WireBytes != int64(out.Len()) {
			t.Fatalf("%q: ScanBody %+v %v, SendBody %+v wrote %d", in, scan, err, st, out.Len())
		}
	})
}
