package ctlcdb

import (
	"fmt"

	"qmail-remote-go/src/internal/control"
)

// ReadLines reads the text of a table-like control file, as a Spec's
// Parse does: it calls line with the number (1-based) and the text of each
// line, trailing spaces, tabs and CRs stripped, empty lines and lines
// starting with '#' skipped (control.Lines). A text longer than maxText
// bytes, a line longer than maxLine bytes (as written, trailing blanks
// included), or the first line for which line returns a reason stops the
// reading: the result is then the SyntaxError of file saying so.
func ReadLines(file string, text []byte, maxText, maxLine int, line func(n int, text string) (reason string)) *SyntaxError {
	if len(text) > maxText {
		return &SyntaxError{File: file, Reason: fmt.Sprintf("is larger than %d bytes", maxText)}
	}
	for l := range control.Lines(text, maxLine) {
		if l.TooLong {
			return &SyntaxError{File: file, Line: l.N, Reason: fmt.Sprintf("line longer than %d bytes", maxLine)}
		}
		if reason := line(l.N, l.Text); reason != "" {
			return &SyntaxError{File: file, Line: l.N, Reason: reason}
		}
	}
	return nil
}
