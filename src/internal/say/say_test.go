package say

import (
	"errors"
	"os"
	"testing"
)

func TestTexts(t *testing.T) {
	_, err := os.Open("/nonexistent/control/me")
	if got := Err(err); got != "no such file or directory" {
		t.Errorf("Err: %q", got)
	}
	if got := ErrOp(err); got != "open: no such file or directory" {
		t.Errorf("ErrOp: %q", got)
	}
	if got := ErrBase(err); got != "me: no such file or directory" {
		t.Errorf("ErrBase: %q", got)
	}
	if got := Sentence("Error reading", err); got != "Error reading: no such file or directory.\n" {
		t.Errorf("Sentence: %q", got)
	}
	plain := errors.New("plain")
	if Err(plain) != "plain" || ErrOp(plain) != "plain" || ErrBase(plain) != "plain" || Root(plain) != plain {
		t.Error("an error without a path must stay as it is")
	}
	if got := Clip("abcdef", 3); got != "abc..." {
		t.Errorf("Clip: %q", got)
	}
	if got := Clip("abc", 3); got != "abc" {
		t.Errorf("Clip: %q", got)
	}
}
