package main

import (
	"bytes"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"qmail-remote-go/src/internal/smtp"
)

// TestScanMapped: the mapped pre-scan gives ScanBody's stats, across the
// chunk and drop boundaries, and scan leaves fd 0 at offset 0.
func TestScanMapped(t *testing.T) {
	rnd := rand.New(rand.NewSource(7))
	line := []byte("a line of text\n")
	bodies := map[string][]byte{
		"empty":   nil,
		"small":   []byte("Subject: x\n\nhi\n.dot\n"),
		"partial": []byte("Subject: x\n\nno newline"),
		"bare cr": []byte("a\rb\r"),
		"big":     bytes.Repeat(line, 3*parallelMin/len(line)+17),
	}
	mixed := make([]byte, parallelMin+2*mapStep+12345)
	for i := range mixed {
		mixed[i] = "ab.\r\n\x80"[rnd.Intn(6)]
	}
	bodies["mixed"] = mixed
	// A CRLF and a "\n." astride a chunk boundary.
	edge := bytes.Repeat([]byte("x"), mapStep-1)
	bodies["edge"] = append(append(edge, "\r\n.\n"...), edge...)
	// The parallel scan cuts a 2*parallelMin message in the middle: a
	// CRLF, a "\n." and an "x." astride the cut.
	for name, pair := range map[string]string{"cut crlf": "\r\n", "cut lf dot": "\n.", "cut x dot": "x."} {
		b := bytes.Repeat([]byte("x\n"), parallelMin)
		copy(b[parallelMin-1:], pair)
		bodies[name] = b
	}
	for name, b := range bodies {
		path := filepath.Join(t.TempDir(), "msg")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := smtp.ScanBody(bytes.NewReader(b))
		got, err := scanMapped(f, int64(len(b)))
		if err != nil || got != want {
			t.Errorf("%s: scanMapped %+v %v, want %+v", name, got, err, want)
		}
		st, err := scan(f)
		if want.PartialFinalLine {
			if !errors.Is(err, smtp.ErrPartialFinalLine) {
				t.Errorf("%s: scan: %v, want the partial final line", name, err)
			}
		} else if err != nil || st != want {
			t.Errorf("%s: scan %+v %v, want %+v", name, st, err, want)
		}
		if off, _ := f.Seek(0, 1); off != 0 {
			t.Errorf("%s: scan left fd at offset %d", name, off)
		}
		f.Close()
	}
}

// TestScanMappedShrunk: a message shorter than its mapping (truncated
// under us) faults past its end; that is an error, not a crash.
func TestScanMappedShrunk(t *testing.T) {
	path := filepath.Join(t.TempDir(), "msg")
	if err := os.WriteFile(path, bytes.Repeat([]byte("x\n"), 5000), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, err = scanMapped(f, 3*parallelMin)
	if err == nil || errors.Is(err, errNotMapped) {
		t.Fatalf("scanMapped past the end of the file: %v, want an error", err)
	}
}
