package report

import (
	"errors"
	"strings"
	"testing"
)

func TestFormat(t *testing.T) {
	if got := string(Format('K', "192.0.2.1 accepted message.\nRemote host said: 250 ok\n")); got != "K192.0.2.1 accepted message.\nRemote host said: 250 ok\n\x00" {
		t.Errorf("Format = %q", got)
	}
	if got := string(Format('Z', "a\x00b\rc\x7fd\ne")); got != "Za?b?c?d\ne\x00" {
		t.Errorf("control bytes not sanitized: %q", got)
	}
	long := Format('D', strings.Repeat("x", 10000))
	if len(long) != Max || long[len(long)-1] != 0 || !strings.Contains(string(long), "(text truncated)") {
		t.Errorf("long report: %d bytes, ends %q", len(long), long[len(long)-30:])
	}
	if strings.IndexByte(string(long[:len(long)-1]), 0) >= 0 {
		t.Error("NUL inside a report")
	}
}

func TestRemoteSaid(t *testing.T) {
	if RemoteSaid("") != "" || RemoteSaid("250 ok") != "Remote host said: 250 ok\n" || RemoteSaid("250-a\n250 b\n") != "Remote host said: 250-a\n250 b\n" {
		t.Error("RemoteSaid")
	}
}

func TestParse(t *testing.T) {
	res, err := Parse([]byte("r\x00hno\n\x00Kok\x00"), 2)
	if err != nil || len(res.Rcpts) != 2 || res.Rcpts[1].Text != "no\n" || res.Message.Letter != 'K' {
		t.Fatalf("Parse: %+v %v", res, err)
	}
	for _, bad := range []struct {
		out   string
		nrcpt int
	}{
		{"", 1}, {"r\x00", 1}, {"Kok", 1}, {"Kok\x00Kok\x00", 1}, {"r\x00r\x00Kok\x00", 1},
		{"\x00Kok\x00", 1}, {"Xok\x00", 1}, {"K" + strings.Repeat("x", Max) + "\x00", 1},
	} {
		if _, err := Parse([]byte(bad.out), bad.nrcpt); err == nil {
			t.Errorf("Parse(%q) accepted", bad.out)
		}
	}
	if _, err := Parse([]byte("r\x00"), 1); !errors.Is(err, ErrNoMessage) {
		t.Errorf("missing message report: %v", err)
	}
}

// FuzzParse: the guard runs Parse on whatever the chain printed, so it must
// never panic, and what it accepts must re-serialise to the same bytes
// (control bytes in texts sanitized).
func FuzzParse(f *testing.F) {
	for _, s := range []string{"Kok\x00", "r\x00hno\n\x00Kok\x00", "\x00", "r\x00", "Z\x00", "x"} {
		f.Add([]byte(s), 1)
	}
	f.Fuzz(func(t *testing.T, out []byte, nrcpt int) {
		if nrcpt < 0 || nrcpt > 100 {
			return
		}
		res, err := Parse(out, nrcpt)
		if err != nil {
			return
		}
		var back []byte
		for _, r := range res.Rcpts {
			back = append(back, r.Raw()...)
		}
		back = append(back, res.Message.Raw()...)
		// Raw sanitizes control bytes, so compare after sanitizing.
		want := strings.Split(string(out), "\x00")
		for i := range want {
			want[i] = Sanitize(want[i])
		}
		if string(back) != strings.Join(want, "\x00") {
			t.Errorf("Parse(%q) re-serialises as %q", out, back)
		}
	})
}
