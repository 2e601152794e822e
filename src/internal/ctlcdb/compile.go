package ctlcdb

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"qmail-remote-go/src/internal/regular"
)

// plain drops the Op and Path of a regular.ErrNotRegular error: the
// FileError names the file, and "not a regular file (a FIFO)" says it all.
func plain(err error) error {
	var pe *fs.PathError
	if errors.Is(err, regular.ErrNotRegular) && errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Lookup finds host in the table, compiling the cdb first if it is stale.
// No text means no entries: Found is false and the error nil. The error
// is a *SyntaxError (the text is wrong: mail must wait until the admin
// fixes it) or a *FileError (the text exists but cannot be read).
// Problems with the run directory or the cdb are never errors: the text
// is then parsed directly, which is correct, only slower.
func (f *File[V]) Lookup(qmailHome, qmailRun, host string) (Match[V], error) {
	textPath := filepath.Join(qmailHome, f.spec.Text)
	cur, exists, err := f.statText(textPath)
	if err != nil || !exists {
		// No text, no entries: a leftover cdb is ignored, never used.
		return Match[V]{}, err
	}
	dir := filepath.Join(qmailRun, Subdir)
	dbPath := filepath.Join(dir, f.spec.DB)

	r, state := f.tryDB(dbPath, cur, host)
	switch state {
	case dbFresh, dbRefused:
		return r.m, r.err
	case dbRacy:
		return f.lookupText(textPath, host)
	}

	unlock, err := f.lock(dir)
	if err != nil {
		return f.lookupText(textPath, host)
	}
	defer unlock()
	// Another process may have compiled while we waited for the lock.
	if cur, exists, err = f.statText(textPath); err != nil || !exists {
		return Match[V]{}, err
	}
	r, state = f.tryDB(dbPath, cur, host)
	switch state {
	case dbFresh, dbRefused:
		return r.m, r.err
	case dbRacy:
		return f.lookupText(textPath, host)
	}
	// A cdb that cannot be written is no reason to delay the mail: the
	// table just parsed is good for this delivery.
	t, synErr, err, _ := f.compileLocked(textPath, dir)
	if err != nil {
		return Match[V]{}, err
	}
	if synErr != nil {
		return Match[V]{}, synErr
	}
	return First(t, f.spec.Keys(host)), nil
}

// Compile compiles the text now, stale or not, or removes the cdb when the
// text does not exist (the admin's qmail-new* program). The compiled file
// is written even when the text has a syntax error (deliveries then report
// it without parsing the text again); the error is returned too. Errors
// are *SyntaxError or *FileError. The table compiled is returned (nil
// without a text or with a syntax error), for callers whose values hold
// problems of their own.
func (f *File[V]) Compile(qmailHome, qmailRun string) (map[string]V, error) {
	textPath := filepath.Join(qmailHome, f.spec.Text)
	dir := filepath.Join(qmailRun, Subdir)
	unlock, err := f.lock(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	_, exists, err := f.statText(textPath)
	if err != nil {
		return nil, err
	}
	if !exists {
		err := os.Remove(filepath.Join(dir, f.spec.DB))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, &FileError{filepath.Join(dir, f.spec.DB), err}
		}
		return nil, syncDir(dir)
	}
	t, synErr, err, werr := f.compileLocked(textPath, dir)
	if err != nil {
		return nil, err
	}
	if werr != nil {
		return nil, werr
	}
	if synErr != nil {
		return nil, synErr
	}
	return t, nil
}

// statText returns the text file's identity; exists is false when it does
// not exist. Anything else that stops us from reading it is a FileError,
// anything but a regular file included (stat(2) never blocks; the open in
// readText does not either).
func (f *File[V]) statText(path string) (st Stamp, exists bool, err error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, false, nil
	}
	if err != nil {
		return st, true, &FileError{f.spec.Text, err}
	}
	if err := regular.Check(fi); err != nil {
		return st, true, &FileError{f.spec.Text, err}
	}
	return StampOf(fi), true, nil
}

// StampOf returns the identity of a file as fi describes it (Compiled
// unset).
func StampOf(fi fs.FileInfo) Stamp {
	st := Stamp{Size: fi.Size(), Mtime: fi.ModTime().UnixNano()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.Dev, st.Ino = uint64(sys.Dev), uint64(sys.Ino)
		st.Ctime = time.Unix(int64(sys.Ctim.Sec), int64(sys.Ctim.Nsec)).UnixNano()
	}
	return st
}

// Changed returns when the text last changed, as its timestamps say.
func (s Stamp) Changed() int64 { return max(s.Mtime, s.Ctime) }

type dbState int

const (
	dbStale   dbState = iota // missing, corrupt, or compiled from another text
	dbFresh                  // compiled from the current text: use it
	dbRacy                   // compiled from the current text too soon after an edit: read the text
	dbRefused                // not a regular file: its error is the outcome
)

type dbResult[V any] struct {
	m   Match[V]
	err error
}

// tryDB looks host up in the cdb if the cdb matches the text identity cur.
func (f *File[V]) tryDB(dbPath string, cur Stamp, host string) (dbResult[V], dbState) {
	d, found, err := f.openDBFile(dbPath)
	if errors.Is(err, regular.ErrNotRegular) {
		// Not a damaged cdb but something else under its name (a
		// FIFO, a directory, a device): not ours to replace behind
		// the admin's back, nor to ignore. The mail waits until the
		// admin removes it.
		return dbResult[V]{err: &FileError{dbPath, fmt.Errorf("%w; remove it", plain(err))}}, dbRefused
	}
	if !found || err != nil {
		return dbResult[V]{}, dbStale
	}
	st, err := d.Stamp()
	if err != nil || !st.SameFile(cur) {
		return dbResult[V]{}, dbStale
	}
	if time.Duration(st.Compiled-cur.Changed()) < f.RacyWindow {
		// Compiled within the window: it may miss a later edit made in the
		// same clock tick. Once the window has passed since the change, a
		// new compile is safe; until then, read the text.
		if time.Duration(time.Now().UnixNano()-cur.Changed()) < f.RacyWindow {
			return dbResult[V]{}, dbRacy
		}
		return dbResult[V]{}, dbStale
	}
	synErr, err := d.SyntaxError()
	if err != nil {
		return dbResult[V]{}, dbStale
	}
	if synErr != nil {
		return dbResult[V]{err: synErr}, dbFresh
	}
	m, err := d.Lookup(host)
	if err != nil {
		return dbResult[V]{}, dbStale
	}
	return dbResult[V]{m: m}, dbFresh
}

// readText reads and parses the text, returning its identity as of the
// read: fstat before reading, so that an edit after the fstat makes the
// stamp stale rather than the content. It is opened without blocking and
// only if it is a regular file: it may have become a FIFO since statText.
func (f *File[V]) readText(path string) (t map[string]V, synErr *SyntaxError, st Stamp, exists bool, err error) {
	fd, err := regular.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, st, false, nil
	}
	if err != nil {
		return nil, nil, st, true, &FileError{f.spec.Text, plain(err)}
	}
	defer fd.Close()
	fi, err := fd.Stat()
	if err != nil {
		return nil, nil, st, true, &FileError{f.spec.Text, err}
	}
	st = StampOf(fi)
	data, err := io.ReadAll(io.LimitReader(fd, f.spec.MaxText+1))
	if err != nil {
		return nil, nil, st, true, &FileError{f.spec.Text, err}
	}
	st.Compiled = time.Now().UnixNano()
	t, synErr = f.spec.Parse(data)
	return t, synErr, st, true, nil
}

// lookupText is the slow path: no usable cdb, parse the text for this one
// delivery.
func (f *File[V]) lookupText(path, host string) (Match[V], error) {
	t, synErr, _, exists, err := f.readText(path)
	switch {
	case err != nil:
		return Match[V]{}, err
	case !exists:
		return Match[V]{}, nil
	case synErr != nil:
		return Match[V]{}, synErr
	}
	return First(t, f.spec.Keys(host)), nil
}

// compileLocked parses the text and replaces the cdb; the caller holds the
// lock. readErr is a problem reading the text, writeErr one writing the
// cdb (the parsed table is good anyway).
func (f *File[V]) compileLocked(textPath, dir string) (t map[string]V, synErr *SyntaxError, readErr, writeErr error) {
	t, synErr, st, exists, readErr := f.readText(textPath)
	if readErr != nil {
		return nil, nil, readErr, nil
	}
	if !exists {
		// Deleted since we looked: no entries, and no cdb either.
		if err := os.Remove(filepath.Join(dir, f.spec.DB)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			writeErr = &FileError{filepath.Join(dir, f.spec.DB), err}
		}
		return nil, nil, nil, writeErr
	}
	return t, synErr, nil, f.writeAtomically(dir, t, synErr, st)
}

// writeAtomically writes the cdb to a temporary file, fsyncs it and renames
// it over the old one, then fsyncs the directory: a reader opens either the
// old file or the new one, whole. cdb.Create would write in place, so a
// reader could see a half-written file. The temporary name is fixed: only
// the lock holder writes it, and a leftover from a crash is reused.
func (f *File[V]) writeAtomically(dir string, t map[string]V, synErr *SyntaxError, st Stamp) error {
	f.compiles.Add(1)
	tmp := filepath.Join(dir, f.spec.Tmp)
	dbFile := filepath.Join(dir, f.spec.DB)
	// Remove first: a leftover may belong to another user (root ran the
	// admin's compile program), and the directory lets us unlink it.
	os.Remove(tmp)
	// O_EXCL already makes it a new regular file (it refuses any existing
	// name, a symlink or a FIFO included); regular.OpenFile keeps the
	// rule "no open of ours blocks" obvious.
	fd, err := regular.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return &FileError{dbFile, err}
	}
	fail := func(err error) error {
		fd.Close()
		os.Remove(tmp)
		return &FileError{dbFile, err}
	}
	b, err := f.EncodeDB(t, synErr, st)
	if err != nil {
		return fail(err)
	}
	if _, err := fd.Write(b); err != nil {
		return fail(err)
	}
	if err := fd.Sync(); err != nil {
		return fail(err)
	}
	if err := fd.Close(); err != nil {
		os.Remove(tmp)
		return &FileError{dbFile, err}
	}
	if err := os.Rename(tmp, dbFile); err != nil {
		os.Remove(tmp)
		return &FileError{dbFile, err}
	}
	return syncDir(dir)
}

// syncDir fsyncs the directory, so that a rename in it is on disk. It is
// opened with O_DIRECTORY: a FIFO put in its place fails, never blocks.
func syncDir(dir string) error {
	d, err := regular.OpenDir(dir)
	if err != nil {
		return &FileError{dir, err}
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return &FileError{dir, err}
	}
	return nil
}

// lock creates the directory if needed and takes the compile lock, waiting
// at most LockWait (flock is polled with LOCK_NB: a stuck holder must not
// stop deliveries, which then read the text themselves). flock
// locks belong to the open file description, so two opens in one process
// exclude each other like two processes do. The lock is opened read-only:
// flock does not need write access, so a lock file created by root (an
// admin ran the compile program) still works for qmailr.
func (f *File[V]) lock(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, &FileError{dir, err}
	}
	lockPath := filepath.Join(dir, f.spec.Lock)
	// Without blocking, and only a regular file: a FIFO in place of the
	// lock would otherwise hang every delivery in open(2). Any problem
	// here makes Lookup read the text instead.
	fd, err := regular.OpenFile(lockPath, os.O_RDONLY|os.O_CREATE, 0o644)
	if err != nil {
		return nil, &FileError{lockPath, plain(err)}
	}
	deadline := time.Now().Add(f.LockWait)
	sleep := time.Millisecond
	for {
		err := unix.Flock(int(fd.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if err != unix.EWOULDBLOCK && err != unix.EINTR {
			fd.Close()
			return nil, &FileError{lockPath, fmt.Errorf("flock: %w", err)}
		}
		if time.Now().After(deadline) {
			fd.Close()
			return nil, &FileError{lockPath, errors.New("timed out waiting for the lock")}
		}
		time.Sleep(sleep)
		sleep = min(2*sleep, 50*time.Millisecond)
	}
	// Closing the file releases the lock.
	return func() { fd.Close() }, nil
}
