package smtp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
)

func read(s string) (Reply, error) {
	return ReadReply(bufio.NewReader(strings.NewReader(s)))
}

func TestReadReply(t *testing.T) {
	for _, tc := range []struct {
		in   string
		code int
		text string
	}{
		{"220 smtp.example.test ESMTP\r\n", 220, "220 smtp.example.test ESMTP\n"},
		{"250\r\n", 250, "250\n"},
		{"250-a\r\n250-b\r\n250 c\r\n", 250, "250-a\n250-b\n250 c\n"},
		{"250-a\n250 b\n", 250, "250-a\n250 b\n"}, // bare LF
		{"250 a\rb\r\n", 250, "250 a\rb\n"},       // a CR not before LF is text
		{"250 a\r\r\n", 250, "250 a\r\n"},
		{"550 5.1.1 no\x00such\x1b user\r\n", 550, "550 5.1.1 no\x00such\x1b user\n"},
		{"421-\r\n421\r\n", 421, "421-\n421\n"},
		{"354 go\r\n250 ok\r\n", 354, "354 go\n"}, // the next reply stays unread
	} {
		r, err := read(tc.in)
		if err != nil || r.Code != tc.code || r.Text != tc.text {
			t.Errorf("%q: got %d %q %v; want %d %q", tc.in, r.Code, r.Text, err, tc.code, tc.text)
		}
	}
}

func TestReadReplyMalformed(t *testing.T) {
	for _, in := range []string{
		"hello\r\n",
		"\r\n",
		"25\r\n",
		"2500 x\r\n",
		"250x\r\n",
		"250\tx\r\n",
		"150 x\r\n",
		"650 x\r\n",
		"260 x\r\n",
		"25a x\r\n",
		"250-a\r\n550 b\r\n",
		"250-a\r\n251 b\r\n",
		"250-a\r\nxyz\r\n",
		" 250 x\r\n",
	} {
		if r, err := read(in); !errors.Is(err, ErrMalformedReply) || r.Code != 0 {
			t.Errorf("%q: got %d %q %v; want malformed", in, r.Code, r.Text, err)
		}
	}
	r, err := read("250-a\r\n550 b\r\n")
	if r.Text != "250-a\n550 b\n" {
		t.Errorf("malformed reply text: %q %v", r.Text, err)
	}
}

func TestReadReplyEOF(t *testing.T) {
	for _, tc := range []struct {
		in   string
		err  error
		text string
	}{
		{"", io.EOF, ""},
		{"250-a\r\n", io.ErrUnexpectedEOF, "250-a\n"},
		{"250 a", io.ErrUnexpectedEOF, "250 a\n"},
		{"250-a\r\n250 b", io.ErrUnexpectedEOF, "250-a\n250 b\n"},
	} {
		r, err := read(tc.in)
		if err != tc.err || r.Text != tc.text || r.Code != 0 {
			t.Errorf("%q: got %d %q %v; want %v %q", tc.in, r.Code, r.Text, err, tc.err, tc.text)
		}
	}
}

func TestReadReplyLong(t *testing.T) {
	long := strings.Repeat("x", 100000)
	r, err := read("250-" + long + "\r\n250 ok\r\n")
	if err != nil || r.Code != 250 || r.Text != "250-"+long[:MaxLine-4]+"\n250 ok\n" {
		t.Errorf("long line: %d %d %v", r.Code, len(r.Text), err)
	}
	// The CR before the LF of a line of exactly MaxLine bytes is dropped.
	exact := "250 " + long[:MaxLine-4]
	if r, err := read(exact + "\r\n"); err != nil || r.Text != exact+"\n" {
		t.Errorf("line of MaxLine bytes: %d %v", len(r.Text), err)
	}
	if r, err := read(exact + "y\r\n"); err != nil || r.Text != exact+"\n" {
		t.Errorf("line of MaxLine+1 bytes: %d %v", len(r.Text), err)
	}
	// A 10 MB line is an error, read only up to the cap.
	src := &countReader{r: strings.NewReader("250 " + strings.Repeat("y", 10<<20) + "\r\n")}
	r, err = ReadReply(bufio.NewReader(src))
	if !errors.Is(err, ErrLineTooLong) || r.Code != 0 || len(r.Text) > MaxLine+1 || src.n > MaxLineBytes+64<<10 {
		t.Errorf("10 MB line: %d %d %v, read %d", r.Code, len(r.Text), err, src.n)
	}
	// A line of exactly MaxLineBytes, line end included, is still a line.
	edge := "250 " + strings.Repeat("e", MaxLineBytes-6) + "\r\n"
	if r, err := read(edge); err != nil || r.Code != 250 {
		t.Errorf("line of MaxLineBytes bytes: %d %v", r.Code, err)
	}
	if _, err := read("250 e" + edge[4:]); !errors.Is(err, ErrLineTooLong) {
		t.Errorf("line of MaxLineBytes+1 bytes: %v", err)
	}
}

// TestReadReplyManyLines: a reply of any number of lines is read to its end
// and its code decides (a 4 MB multi-line 550 is a 550, not "not SMTP");
// only the first MaxText bytes are kept, and the next reply is read from
// where this one ended.
func TestReadReplyManyLines(t *testing.T) {
	line := "550-5.1.1 " + strings.Repeat("z", 190) + "\r\n" // 202 bytes
	huge := strings.Repeat(line, 20000) + "550 5.1.1 the end\r\n" + "250 next\r\n"
	br := bufio.NewReader(strings.NewReader(huge))
	r, err := ReadReply(br)
	if err != nil || r.Code != 550 {
		t.Fatalf("4 MB reply: code %d, %v", r.Code, err)
	}
	if len(r.Text) > MaxText+1 || len(r.Text) < MaxText-len(line) {
		t.Errorf("kept %d bytes, want about MaxText (%d)", len(r.Text), MaxText)
	}
	if kept := strings.Count(r.Text, "\n"); kept+r.Dropped != 20001 {
		t.Errorf("kept %d lines and dropped %d, want 20001 in all", kept, r.Dropped)
	}
	if !strings.HasPrefix(r.Text, "550-5.1.1 zzz") {
		t.Errorf("text starts %q", r.Text[:20])
	}
	next, err := ReadReply(br)
	if err != nil || next.Code != 250 || next.Text != "250 next\n" || next.Dropped != 0 {
		t.Errorf("next reply: %d %q %d %v", next.Code, next.Text, next.Dropped, err)
	}
	// A malformed line deep in a long reply is still found.
	bad := strings.Repeat(line, 5000) + "250 oops\r\n"
	if _, err := read(bad); !errors.Is(err, ErrMalformedReply) {
		t.Errorf("mixed codes after 5000 lines: %v", err)
	}
}

// TestReadReplyMemory: what a reply costs in memory does not grow with its
// length.
func TestReadReplyMemory(t *testing.T) {
	line := "550-" + strings.Repeat("m", 196) + "\r\n"
	measure := func(lines int) uint64 {
		in := strings.Repeat(line, lines) + "550 end\r\n"
		br := bufio.NewReader(strings.NewReader(in))
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		r, err := ReadReply(br)
		runtime.ReadMemStats(&after)
		if err != nil || r.Code != 550 {
			t.Fatalf("%d lines: %d %v", lines, r.Code, err)
		}
		return after.TotalAlloc - before.TotalAlloc
	}
	small, big := measure(100), measure(20000)
	// A dropped line allocates nothing (its buffer is reused); keeping
	// the lines would cost at least their 200 bytes each.
	if perLine := (big - small) / 19900; perLine > 16 {
		t.Errorf("%d bytes allocated per dropped line: the reply is being kept", perLine)
	}
}

type countReader struct {
	r io.Reader
	n int
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func FuzzReadReply(f *testing.F) {
	for _, s := range []string{
		"220 ok\r\n", "250-a\r\n250 b\r\n", "250-a\n250 b\n", "250 a\r\r\n",
		"250-a\r\n550 b\r\n", "x\r\n", "", "250", "250 \x00\r\n", "4",
		"250-" + strings.Repeat("z", 5000) + "\r\n250 x\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(in), 16)
		r, err := ReadReply(br)
		if len(r.Text) > MaxText+1 {
			t.Fatalf("kept %d bytes", len(r.Text))
		}
		if err != nil {
			if r.Code != 0 {
				t.Fatalf("code %d with error %v", r.Code, err)
			}
			return
		}
		if r.Code < 200 || r.Code > 599 || !strings.HasSuffix(r.Text, "\n") {
			t.Fatalf("accepted %d %q", r.Code, r.Text)
		}
		// What it accepted re-serialises and parses back the same.
		var again bytes.Buffer
		for _, l := range r.Lines() {
			again.WriteString(l + "\r\n")
		}
		r2, err := ReadReply(bufio.NewReader(&again))
		if r.Dropped > 0 {
			return // what was dropped cannot come back
		}
		if err != nil || r2 != r {
			t.Fatalf("round trip: %q -> %d %q %v; was %d %q", again.String(), r2.Code, r2.Text, err, r.Code, r.Text)
		}
	})
}
