// Package regular opens files that must be regular files (control files,
// control/smtpauth, smtproutes.cdb, trust anchors, client keys) without
// ever blocking: open(2) of a FIFO with no writer waits forever, and so
// does read(2) of some devices, so a FIFO put where a control file belongs
// (by mistake or by a local user) would hang every delivery. Each file is
// opened with O_NONBLOCK, which does nothing to a regular file, and
// refused unless fstat says it is one: what is checked is what is read,
// after any symlink was followed.
package regular

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// ErrNotRegular is the error of a path that is not a regular file (a
// FIFO, a device, a directory, a socket), after following symlinks.
var ErrNotRegular = errors.New("not a regular file")

// Open opens path read-only, without blocking, and returns it only if it
// is a regular file. A missing file is an error satisfying
// errors.Is(err, fs.ErrNotExist); anything but a regular file is a
// *fs.PathError wrapping ErrNotRegular.
func Open(path string) (*os.File, error) {
	return OpenFile(path, os.O_RDONLY, 0)
}

// OpenFile is os.OpenFile for files that must be regular, such as the
// tcpto tables and the smtproutes lock, opened read-write or created when
// missing: O_NONBLOCK and O_NOCTTY are added to flag, and anything but a
// regular file is refused as Open refuses it. O_NONBLOCK changes nothing
// for a regular file (reads and writes of disk files never return
// EAGAIN), so the file can be used as usual once it is open.
func OpenFile(path string, flag int, perm fs.FileMode) (*os.File, error) {
	// Look before opening, so that a device in place of the file is
	// normally not even opened (opening some devices does something).
	// Only the fstat below is authoritative: the path may change between
	// the two.
	if st, err := os.Stat(path); err == nil {
		if err := Check(st); err != nil {
			return nil, &fs.PathError{Op: "open", Path: path, Err: err}
		}
	}
	f, err := os.OpenFile(path, flag|syscall.O_NONBLOCK|syscall.O_NOCTTY, perm)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if err := Check(st); err != nil {
		f.Close()
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	return f, nil
}

// Check returns nil for a regular file and an error wrapping ErrNotRegular
// that names the kind of anything else ("not a regular file (a FIFO)"),
// for callers that stat a path before opening it.
func Check(st fs.FileInfo) error {
	if st.Mode().IsRegular() {
		return nil
	}
	return fmt.Errorf("%w (%s)", ErrNotRegular, kind(st.Mode()))
}

// OpenDir opens a directory (trust anchors, the run directory to fsync)
// without blocking: with O_DIRECTORY, open(2) of anything else, a FIFO
// included, fails at once with ENOTDIR instead of waiting for a writer.
func OpenDir(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
}

// ReadFile reads the regular file path, at most max bytes; a longer file
// is an error saying so.
func ReadFile(path string, max int64) ([]byte, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, &fs.PathError{Op: "read", Path: path, Err: fmt.Errorf("larger than %d bytes", max)}
	}
	return b, nil
}

// kind names a file type for error texts.
func kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeDir != 0:
		return "a directory"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	}
	return "an irregular file"
}
