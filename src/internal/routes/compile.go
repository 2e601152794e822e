package routes

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"qmail-remote-go/src/internal/regular"
	"qmail-remote-go/src/internal/say"
)

// Paths inside the qmail home and the run directory.
const (
	textName = "control/smtproutes"
	subdir   = "qmail-remote"
	dbName   = "smtproutes.cdb"
	tmpName  = "smtproutes.cdb.tmp"
	lockName = "smtproutes.lock"
)

// racyWindow: file timestamps come from a coarse kernel clock (a few ms on
// Linux, 1 or 2 s on some file systems). If we read the text less than this
// long after its last change, a second edit in the same clock tick, with
// the same size, would leave the stamp unchanged and the cdb would look
// fresh while holding the first edit. Such a "racy" cdb (git has the same
// problem with its index) is trusted only once the window has passed and
// it has been compiled again; meanwhile deliveries read the text directly.
var racyWindow = 2 * time.Second

// lockWait bounds how long a delivery waits for another process's compile.
// A compile takes milliseconds; a holder stuck longer (stopped, hung NFS)
// must not stop deliveries: past this we parse the text ourselves.
var lockWait = 30 * time.Second

// compiles counts the compiles done by this process (for tests).
var compiles atomic.Int64

// FileError is a system error on one of our files: the delivery cannot
// know its routes and must wait.
type FileError struct {
	File string // "control/smtproutes" as the admin knows it, or a full path in the run directory
	Err  error
}

func (e *FileError) Error() string { return e.File + ": " + say.ErrOp(e.Err) }
func (e *FileError) Unwrap() error { return e.Err }

// plain drops the Op and Path of a regular.ErrNotRegular error: the
// FileError names the file, and "not a regular file (a FIFO)" says it all.
func plain(err error) error {
	var pe *fs.PathError
	if errors.Is(err, regular.ErrNotRegular) && errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Lookup returns the route for host, compiling smtproutes.cdb first if it
// is stale. The error is a *SyntaxError (the text is wrong: mail must wait
// until the admin fixes it) or a *FileError (the text exists but cannot be
// read). Problems with the run directory or the cdb are never errors: the
// text is then parsed directly, which is correct, only slower.
func Lookup(qmailHome, qmailRun, host string) (Route, error) {
	textPath := filepath.Join(qmailHome, textName)
	cur, exists, err := statText(textPath)
	if err != nil || !exists {
		// No text, no routes: a leftover cdb is ignored, never used.
		return NoRoute, err
	}
	dir := filepath.Join(qmailRun, subdir)
	dbPath := filepath.Join(dir, dbName)

	r, state := tryDB(dbPath, cur, host)
	switch state {
	case dbFresh, dbRefused:
		return r.route, r.err
	case dbRacy:
		return lookupText(textPath, host)
	}

	unlock, err := lock(dir)
	if err != nil {
		return lookupText(textPath, host)
	}
	defer unlock()
	// Another process may have compiled while we waited for the lock.
	if cur, exists, err = statText(textPath); err != nil || !exists {
		return NoRoute, err
	}
	r, state = tryDB(dbPath, cur, host)
	switch state {
	case dbFresh, dbRefused:
		return r.route, r.err
	case dbRacy:
		return lookupText(textPath, host)
	}
	// A cdb that cannot be written is no reason to delay the mail: the
	// table just parsed is good for this delivery.
	t, synErr, err, _ := compileLocked(textPath, dir)
	if err != nil {
		return NoRoute, err
	}
	if synErr != nil {
		return NoRoute, synErr
	}
	return t.Lookup(host), nil
}

// Compile compiles the text now, stale or not, or removes the cdb when the
// text does not exist (qmail-newsmtproutes). The compiled file is written
// even when the text has a syntax error (deliveries then report it without
// parsing the text again); the error is returned too. Errors are
// *SyntaxError or *FileError.
func Compile(qmailHome, qmailRun string) error {
	textPath := filepath.Join(qmailHome, textName)
	dir := filepath.Join(qmailRun, subdir)
	unlock, err := lock(dir)
	if err != nil {
		return err
	}
	defer unlock()
	_, exists, err := statText(textPath)
	if err != nil {
		return err
	}
	if !exists {
		err := os.Remove(filepath.Join(dir, dbName))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return &FileError{filepath.Join(dir, dbName), err}
		}
		return syncDir(dir)
	}
	_, synErr, err, werr := compileLocked(textPath, dir)
	if err != nil {
		return err
	}
	if werr != nil {
		return werr
	}
	if synErr != nil {
		return synErr
	}
	return nil
}

// statText returns the text file's identity; exists is false when it does
// not exist. Anything else that stops us from reading it is a FileError,
// anything but a regular file included (stat(2) never blocks; the open in
// readText does not either).
func statText(path string) (st stamp, exists bool, err error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, false, nil
	}
	if err != nil {
		return st, true, &FileError{textName, err}
	}
	if err := regular.Check(fi); err != nil {
		return st, true, &FileError{textName, err}
	}
	return stampOf(fi), true, nil
}

func stampOf(fi fs.FileInfo) stamp {
	st := stamp{Size: fi.Size(), Mtime: fi.ModTime().UnixNano()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.Dev, st.Ino = uint64(sys.Dev), uint64(sys.Ino)
		st.Ctime = time.Unix(int64(sys.Ctim.Sec), int64(sys.Ctim.Nsec)).UnixNano()
	}
	return st
}

// changed returns when the text last changed, as its timestamps say.
func (s stamp) changed() int64 { return max(s.Mtime, s.Ctime) }

type dbState int

const (
	dbStale   dbState = iota // missing, corrupt, or compiled from another text
	dbFresh                  // compiled from the current text: use it
	dbRacy                   // compiled from the current text too soon after an edit: read the text
	dbRefused                // not a regular file: its error is the outcome
)

type dbResult struct {
	route Route
	err   error
}

// tryDB looks host up in the cdb if the cdb matches the text identity cur.
func tryDB(dbPath string, cur stamp, host string) (dbResult, dbState) {
	d, found, err := openDBFile(dbPath)
	if errors.Is(err, regular.ErrNotRegular) {
		// Not a damaged cdb but something else under its name (a
		// FIFO, a directory, a device): not ours to replace behind
		// the admin's back, nor to ignore. The mail waits until the
		// admin removes it.
		return dbResult{NoRoute, &FileError{dbPath, fmt.Errorf("%w; remove it", plain(err))}}, dbRefused
	}
	if !found || err != nil {
		return dbResult{}, dbStale
	}
	st, err := d.stamp()
	if err != nil || !st.sameFile(cur) {
		return dbResult{}, dbStale
	}
	if time.Duration(st.Compiled-cur.changed()) < racyWindow {
		// Compiled within the window: it may miss a later edit made in the
		// same clock tick. Once the window has passed since the change, a
		// new compile is safe; until then, read the text.
		if time.Duration(time.Now().UnixNano()-cur.changed()) < racyWindow {
			return dbResult{}, dbRacy
		}
		return dbResult{}, dbStale
	}
	synErr, err := d.syntaxError()
	if err != nil {
		return dbResult{}, dbStale
	}
	if synErr != nil {
		return dbResult{NoRoute, synErr}, dbFresh
	}
	r, err := d.lookup(host)
	if err != nil {
		return dbResult{}, dbStale
	}
	return dbResult{r, nil}, dbFresh
}

// readText reads and parses the text, returning its identity as of the
// read: fstat before reading, so that an edit after the fstat makes the
// stamp stale rather than the content. It is opened without blocking and
// only if it is a regular file: it may have become a FIFO since statText.
func readText(path string) (t *Table, synErr *SyntaxError, st stamp, exists bool, err error) {
	f, err := regular.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, st, false, nil
	}
	if err != nil {
		return nil, nil, st, true, &FileError{textName, plain(err)}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, st, true, &FileError{textName, err}
	}
	st = stampOf(fi)
	data, err := io.ReadAll(io.LimitReader(f, MaxText+1))
	if err != nil {
		return nil, nil, st, true, &FileError{textName, err}
	}
	st.Compiled = time.Now().UnixNano()
	t, perr := Parse(data)
	if perr != nil {
		synErr = perr.(*SyntaxError)
	}
	return t, synErr, st, true, nil
}

// lookupText is the slow path: no usable cdb, parse the text for this one
// delivery.
func lookupText(path, host string) (Route, error) {
	t, synErr, _, exists, err := readText(path)
	switch {
	case err != nil:
		return NoRoute, err
	case !exists:
		return NoRoute, nil
	case synErr != nil:
		return NoRoute, synErr
	}
	return t.Lookup(host), nil
}

// compileLocked parses the text and replaces the cdb; the caller holds the
// lock. readErr is a problem reading the text, writeErr one writing the
// cdb (the parsed table is good anyway).
func compileLocked(textPath, dir string) (t *Table, synErr *SyntaxError, readErr, writeErr error) {
	t, synErr, st, exists, readErr := readText(textPath)
	if readErr != nil {
		return nil, nil, readErr, nil
	}
	if !exists {
		// Deleted since we looked: no routes, and no cdb either.
		if err := os.Remove(filepath.Join(dir, dbName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			writeErr = &FileError{filepath.Join(dir, dbName), err}
		}
		return &Table{}, nil, nil, writeErr
	}
	return t, synErr, nil, writeAtomically(dir, t, synErr, st)
}

// writeAtomically writes the cdb to a temporary file, fsyncs it and renames
// it over the old one, then fsyncs the directory: a reader opens either the
// old file or the new one, whole. cdb.Create would write in place, so a
// reader could see a half-written file. The temporary name is fixed: only
// the lock holder writes it, and a leftover from a crash is reused.
func writeAtomically(dir string, t *Table, synErr *SyntaxError, st stamp) error {
	compiles.Add(1)
	tmp := filepath.Join(dir, tmpName)
	dbFile := filepath.Join(dir, dbName)
	// Remove first: a leftover may belong to another user (root ran
	// qmail-newsmtproutes), and the directory lets us unlink it.
	os.Remove(tmp)
	// O_EXCL already makes it a new regular file (it refuses any existing
	// name, a symlink or a FIFO included); regular.OpenFile keeps the
	// rule "no open of ours blocks" obvious.
	f, err := regular.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return &FileError{dbFile, err}
	}
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return &FileError{dbFile, err}
	}
	b, err := encodeDB(t, synErr, st)
	if err != nil {
		return fail(err)
	}
	if _, err := f.Write(b); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return &FileError{dbFile, err}
	}
	if err := os.Rename(tmp, filepath.Join(dir, dbName)); err != nil {
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
// at most lockWait (flock is polled with LOCK_NB: a stuck holder must not
// stop deliveries, which then read the text themselves). flock
// locks belong to the open file description, so two opens in one process
// exclude each other like two processes do. The lock is opened read-only:
// flock does not need write access, so a lock file created by root (an
// admin ran qmail-newsmtproutes) still works for qmailr.
func lock(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, &FileError{dir, err}
	}
	// Without blocking, and only a regular file: a FIFO in place of the
	// lock would otherwise hang every delivery in open(2). Any problem
	// here makes Lookup read the text instead.
	f, err := regular.OpenFile(filepath.Join(dir, lockName), os.O_RDONLY|os.O_CREATE, 0o644)
	if err != nil {
		return nil, &FileError{filepath.Join(dir, lockName), plain(err)}
	}
	deadline := time.Now().Add(lockWait)
	sleep := time.Millisecond
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if err != unix.EWOULDBLOCK && err != unix.EINTR {
			f.Close()
			return nil, &FileError{filepath.Join(dir, lockName), fmt.Errorf("flock: %w", err)}
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, &FileError{filepath.Join(dir, lockName), errors.New("timed out waiting for the lock")}
		}
		time.Sleep(sleep)
		sleep = min(2*sleep, 50*time.Millisecond)
	}
	// Closing the file releases the lock.
	return func() { f.Close() }, nil
}
