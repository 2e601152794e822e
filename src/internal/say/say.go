// Package say holds the small helpers that turn errors and untrusted
// strings into the short texts of reports and diagnostics.
package say

import (
	"errors"
	"io/fs"
	"path/filepath"
)

// Err is err's text without the path that an *fs.PathError repeats: the
// caller has named the file already ("control/me: permission denied"
// rather than "control/me: open control/me: permission denied").
func Err(err error) string {
	return Root(err).Error()
}

// Root is err without its *fs.PathError wrapping ("read fd6: ...").
func Root(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// ErrOp is Err with the operation kept ("open: permission denied").
func ErrOp(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Op + ": " + pe.Err.Error()
	}
	return err.Error()
}

// ErrBase is Err with the file's base name kept ("qmail-remote-routes:
// no such file or directory"), for an error about a program.
func ErrBase(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return filepath.Base(pe.Path) + ": " + pe.Err.Error()
	}
	return err.Error()
}

// Sentence is "what: err.\n", err without its path.
func Sentence(what string, err error) string {
	return what + ": " + Err(err) + ".\n"
}

// Clip keeps the first n bytes of s, and says "..." when it cut.
func Clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
