package control

import (
	"bytes"
	"iter"
)

// TableLine is one meaningful line of a control file's text.
type TableLine struct {
	N       int    // 1-based line number, for error messages
	Text    string // the line, trailing spaces, tabs and CR stripped
	TooLong bool   // longer than the limit: Text is empty, the caller decides
}

// Lines walks the lines of a table-like control file (smtproutes,
// smtpauth), skipping empty lines and comment lines starting with '#'
// (qmail-control(5)), and flagging lines longer than maxLine instead of
// returning them: the parsers report those with the line number.
func Lines(text []byte, maxLine int) iter.Seq[TableLine] {
	return func(yield func(TableLine) bool) {
		for n := 1; len(text) > 0; n++ {
			var line []byte
			if i := bytes.IndexByte(text, '\n'); i >= 0 {
				line, text = text[:i], text[i+1:]
			} else {
				line, text = text, nil
			}
			if len(line) > maxLine {
				if !yield(TableLine{N: n, TooLong: true}) {
					return
				}
				continue
			}
			line = bytes.TrimRight(line, " \t\r")
			if len(line) == 0 || line[0] == '#' {
				continue
			}
			if !yield(TableLine{N: n, Text: string(line)}) {
				return
			}
		}
	}
}
