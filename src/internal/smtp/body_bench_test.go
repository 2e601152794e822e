package smtp

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// textLines is what tools/bench.sh sends: 76 characters and LF, as qmail
// keeps a message in its queue.
func textLines(n int) []byte {
	return bytes.Repeat([]byte(string(bytes.Repeat([]byte{'0'}, 76))+"\n"), n)
}

// BenchmarkBody measures the transform on the message shapes that matter
// for speed: qmail's LF text, text that is already CRLF, and long lines.
func BenchmarkBody(b *testing.B) {
	for _, bc := range []struct {
		name string
		pat  []byte
	}{
		{"lf-76", textLines(1 << 12)},
		{"crlf-76", bytes.ReplaceAll(textLines(1<<12), []byte("\n"), []byte("\r\n"))},
		{"lf-998", bytes.Repeat([]byte(string(bytes.Repeat([]byte{'x'}, 998))+"\n"), 1<<8)},
		{"dotted-lf-76", bytes.ReplaceAll(textLines(1<<12), []byte("\n0"), []byte("\n."))},
	} {
		const size = 8 << 20
		b.Run("send/"+bc.name, func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				if _, err := SendBody(io.Discard, &patternReader{pat: bc.pat, left: size}); err != nil && !errors.Is(err, ErrPartialFinalLine) {
					b.Fatal(err)
				}
			}
		})
		b.Run("scan/"+bc.name, func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				if _, err := ScanBody(&patternReader{pat: bc.pat, left: size}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
