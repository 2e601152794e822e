// Package ctlcdb is the machinery shared by the table-like control files
// that every delivery reads (control/smtproutes, control/tlspolicy): a
// text file under the qmail home, compiled on demand into a cdb under
// QMAILRUN/qmail-remote that hundreds of concurrent deliveries share.
//
// A File knows nothing of the text's syntax: its Spec parses the text
// into key → value, lists the keys a host is tried under, and turns a
// value into bytes and back. The File keeps the cdb fresh (stamps, the
// racy window), compiles it under a lock, replaces it atomically, checks
// its CRC-32C and bounds every read of it, and stores a syntax error of
// the text so that a broken text is parsed once, not once per delivery.
package ctlcdb

import (
	"fmt"
	"sync/atomic"
	"time"

	"qmail-remote-go/src/internal/say"
)

// Subdir is the directory of the compiled files, in QMAILRUN.
const Subdir = "qmail-remote"

// Spec describes one control file and its compiled form.
type Spec[V any] struct {
	// Text is the text file's path relative to the qmail home, as the
	// administrator knows it ("control/smtproutes"); error texts use it.
	Text string
	// DB, Tmp and Lock are the names of the cdb, its temporary file and
	// the compile lock in QMAILRUN/qmail-remote.
	DB, Tmp, Lock string
	// Magic is the 4 bytes of the cdb's trailer (cdbfile.go).
	Magic string
	// MaxText bounds how much of the text is read; Parse must refuse a
	// text longer than that.
	MaxText int64
	// Parse reads the text. A *SyntaxError means no lookup can be
	// answered: it is compiled instead of the table, and every lookup
	// returns it. Keys must not start with a NUL byte.
	Parse func(text []byte) (map[string]V, *SyntaxError)
	// Keys lists the keys a host is tried under, in order: the first
	// one present decides.
	Keys func(host string) []string
	// Marshal and Unmarshal turn a value into the cdb's bytes and back.
	// Unmarshal must be as strict as Parse: damage that the checksum
	// cannot see (none that we know of, but a cdb can be written by
	// hand) must never yield a value the text could not have said.
	Marshal   func(V) []byte
	Unmarshal func([]byte) (V, bool)
}

// File is a control file with its compiled form. Its methods are safe for
// concurrent use, between goroutines and between processes.
type File[V any] struct {
	spec Spec[V]

	// RacyWindow: file timestamps come from a coarse kernel clock (a few
	// ms on Linux, 1 or 2 s on some file systems). If we read the text
	// less than this long after its last change, a second edit in the
	// same clock tick, with the same size, would leave the stamp
	// unchanged and the cdb would look fresh while holding the first
	// edit. Such a "racy" cdb (git has the same problem with its index)
	// is trusted only once the window has passed and it has been
	// compiled again; meanwhile deliveries read the text directly.
	// Tests change it; nothing else should.
	RacyWindow time.Duration

	// LockWait bounds how long a delivery waits for another process's
	// compile. A compile takes milliseconds; a holder stuck longer
	// (stopped, hung NFS) must not stop deliveries: past this we parse
	// the text ourselves. Tests change it; nothing else should.
	LockWait time.Duration

	compiles atomic.Int64
}

// New returns the File of spec, with the default windows.
func New[V any](spec Spec[V]) *File[V] {
	if len(spec.Magic) != 4 {
		panic("ctlcdb: the trailer magic must be 4 bytes")
	}
	return &File[V]{spec: spec, RacyWindow: 2 * time.Second, LockWait: 30 * time.Second}
}

// Compiles counts the compiles (cdb writes) this File has done in this
// process, for tests.
func (f *File[V]) Compiles() int64 { return f.compiles.Load() }

// Match is the result of a lookup.
type Match[V any] struct {
	Key   string // the key that matched
	Value V
	Found bool // false: no key of the host is in the table
}

// First returns the entry of the first of keys present in t.
func First[V any](t map[string]V, keys []string) Match[V] {
	for _, k := range keys {
		if v, ok := t[k]; ok {
			return Match[V]{k, v, true}
		}
	}
	return Match[V]{}
}

// SyntaxError is a problem in the text of a control file. Line is
// 1-based; 0 means the file as a whole.
type SyntaxError struct {
	File   string // "control/smtproutes"
	Line   int
	Reason string
}

func (e *SyntaxError) Error() string {
	if e.Line == 0 {
		return e.File + ": " + e.Reason
	}
	return fmt.Sprintf("%s line %d: %s", e.File, e.Line, e.Reason)
}

// FileError is a system error on one of our files: the delivery cannot
// know what the table says and must wait.
type FileError struct {
	File string // "control/smtproutes" as the admin knows it, or a full path in the run directory
	Err  error
}

func (e *FileError) Error() string { return e.File + ": " + say.ErrOp(e.Err) }
func (e *FileError) Unwrap() error { return e.Err }
