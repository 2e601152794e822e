package ctlcdb

import (
	"fmt"
	"strings"
	"testing"
)

// readAll reads text with ReadLines, limits 64 and 16, and lists the lines
// it was given as "n:text".
func readAll(text string, refuse string) ([]string, *SyntaxError) {
	var got []string
	err := ReadLines("control/x", []byte(text), 64, 16, func(n int, s string) string {
		got = append(got, fmt.Sprintf("%d:%s", n, s))
		if s == refuse {
			return "bad " + s
		}
		return ""
	})
	return got, err
}

// Empty lines, blank lines and comments are skipped, trailing blanks and
// CRs stripped, the last line read without its newline; the numbers are
// the lines' in the file.
func TestReadLinesSkips(t *testing.T) {
	lines := map[string]string{ // text: the lines read
		"# comment\n\n   \n\t\r\n#:x\na:b\r\n# last": "6:a:b",
		"a \t\r\n\nb": "1:a|3:b",
		" a\n":        "1: a",
		"":            "",
		"\n\n":        "",
	}
	for text, want := range lines {
		if got, err := readAll(text, ""); err != nil || strings.Join(got, "|") != want {
			t.Errorf("%q: %q %v, want %q", text, got, err, want)
		}
	}
}

// The first reason stops the reading: it is the line's SyntaxError.
func TestReadLinesReason(t *testing.T) {
	got, err := readAll("a\n\nb\nc\n", "b")
	if err == nil || err.Error() != "control/x line 3: bad b" || strings.Join(got, "|") != "1:a|3:b" {
		t.Fatalf("%q %v", got, err)
	}
}

func TestReadLinesLimits(t *testing.T) {
	// The line limit counts the line as written, trailing blanks included.
	ok := "abc" + strings.Repeat(" ", 13)
	if got, err := readAll("x\n"+ok+"\n", ""); err != nil || len(got) != 2 {
		t.Fatalf("line of the limit: %q %v", got, err)
	}
	_, err := readAll("x\n"+ok+" \n", "")
	if err == nil || err.Error() != "control/x line 2: line longer than 16 bytes" {
		t.Fatalf("line of the limit + 1: %v", err)
	}
	text := strings.Repeat("#234567\n", 8)
	if _, err := readAll(text, ""); err != nil {
		t.Fatalf("text of the limit: %v", err)
	}
	got, err := readAll(text+"a", "")
	if err == nil || err.Error() != "control/x: is larger than 64 bytes" || err.Line != 0 || got != nil {
		t.Fatalf("text of the limit + 1: %q %v", got, err)
	}
}
