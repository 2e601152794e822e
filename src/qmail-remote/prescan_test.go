package qmailremote

import (
	"bytes"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"qmail-remote-go/src/internal/smtp"
)

// TestPrescan: the pre-scan gives ScanBody's stats, across its step and
// part boundaries, and scan leaves fd 0 at offset 0.
func TestPrescan(t *testing.T) {
	rnd := rand.New(rand.NewSource(7))
	line := []byte("a line of text\n")
	bodies := map[string][]byte{
		"empty":   nil,
		"small":   []byte("Subject: x\n\nhi\n.dot\n"),
		"partial": []byte("Subject: x\n\nno newline"),
		"bare cr": []byte("a\rb\r"),
		"big":     bytes.Repeat(line, 3*parallelMin/len(line)+17),
	}
	mixed := make([]byte, parallelMin+2*scanStep+12345)
	for i := range mixed {
		mixed[i] = "ab.\r\n\x80"[rnd.Intn(6)]
	}
	bodies["mixed"] = mixed
	// A CRLF and a "\n." astride a chunk boundary.
	edge := bytes.Repeat([]byte("x"), scanStep-1)
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
		got, err := prescan(f, int64(len(b)))
		if err != nil || got != want {
			t.Errorf("%s: prescan %+v %v, want %+v", name, got, err, want)
		}
		// qmail-rspawn's fd 0 need not be at offset 0: the scan
		// starts at 0 all the same.
		f.Seek(int64(min(3, len(b))), 0)
		st, err := scan(f)
		if want.PartialFinalLine {
			if !errors.Is(err, smtp.ErrPartialFinalLine) {
				t.Errorf("%s: scan: %v, want the partial final line", name, err)
			}
		} else if err != nil || st != want {
			t.Errorf("%s: scan %+v %v, want %+v", name, st, err, want)
		}
		if off, _ := f.Seek(0, 1); err == nil && off != 0 {
			t.Errorf("%s: scan left fd at offset %d", name, off)
		}
		f.Close()
	}
}

// TestPrescanShrunk: a message shorter than fstat said (truncated under
// us) is an error, in the first part and in the second.
func TestPrescanShrunk(t *testing.T) {
	path := filepath.Join(t.TempDir(), "msg")
	if err := os.WriteFile(path, bytes.Repeat([]byte("x\n"), 5000), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, size := range []int64{20000, 3 * parallelMin} {
		if _, err = prescan(f, size); !errors.Is(err, errShrank) {
			t.Errorf("prescan of %d bytes from 10000: %v, want %v", size, err, errShrank)
		}
	}
}
