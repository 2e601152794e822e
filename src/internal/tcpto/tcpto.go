// Package tcpto is qmail's connection-timeout memory (qmail-tcpto(8)):
// after an address has timed out twice, with at least two minutes between
// the timeouts, deliveries skip it for an hour or so instead of waiting
// timeoutconnect on it again and again.
//
// IPv4 addresses live in qmail's own QMAILHOME/queue/lock/tcpto, read and
// written exactly as stock tcpto.c does, so qmail-tcpto, qmail-tcpok and
// qmail-rspawn (which clears the file at start) keep working on it. IPv6
// addresses live in QMAILRUN/qmail-remote/tcpto6, the same table with wider
// records (see Format).
//
// Nothing here may stop a delivery: a missing, unreadable, unwritable,
// locked-for-too-long or corrupt file means "skip nothing, record nothing".
package tcpto

import (
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"qmail-remote-go/src/internal/regular"
)

// Table remembers connection timeouts for one delivery.
type Table struct {
	v4Path, v6Path string
	// seen holds the addresses Skip found a record for. Stock tcpto_err
	// does not even open the file to clear an address that tcpto() did
	// not find (its flagwasthere): with hundreds of deliveries a minute,
	// every successful connect would otherwise take the lock.
	seen map[netip.Addr]bool
	now  func() time.Time
	pid  int
	// lockWait bounds the wait for the lock: stock blocks in flock, but a
	// delivery must not hang on a stuck lock holder.
	lockWait time.Duration
}

// Open returns the table of the qmail installation at qmailHome (IPv4) and
// of our run directory qmailRun (IPv6). It touches no file.
func Open(qmailHome, qmailRun string) *Table {
	return &Table{
		v4Path:   filepath.Join(qmailHome, "queue", "lock", "tcpto"),
		v6Path:   filepath.Join(qmailRun, "qmail-remote", "tcpto6"),
		seen:     map[netip.Addr]bool{},
		now:      time.Now,
		pid:      os.Getpid(),
		lockWait: time.Second,
	}
}

// V4Path and V6Path return the files' paths.
func (t *Table) V4Path() string { return t.v4Path }
func (t *Table) V6Path() string { return t.v6Path }

func (t *Table) format(a netip.Addr) (Format, string, bool) {
	switch {
	case a.Is4():
		return V4, t.v4Path, true
	case a.Is6():
		return V6, t.v6Path, true
	}
	return Format{}, "", false
}

// Skip tells whether a had 2 or more recent connect timeouts, so that it
// should not be tried now.
func (t *Table) Skip(a netip.Addr) bool {
	a = a.Unmap()
	f, path, ok := t.format(a)
	if !ok {
		return false
	}
	// Reading needs no write access and only a shared lock (every writer
	// takes an exclusive one). Stock opens the file for writing even to
	// read it, so a read-only file disables its skipping; ours still
	// skips.
	file, err := openFile(path, os.O_RDONLY, false)
	if err != nil {
		return false
	}
	defer file.Close()
	fd := int(file.Fd())
	if !t.lock(fd, unix.LOCK_SH) {
		return false
	}
	buf, err := readAll(fd, f.MaxBytes())
	if err != nil {
		return false
	}
	skipped, found := skip(f.Decode(buf), a, uint64(t.now().Unix()), t.pid)
	if found {
		t.seen[a] = true
	}
	return skipped
}

// Record notes the outcome of a connect attempt to a: timedOut true for a
// connect timeout, false for a successful connect and for every other
// connect error (as stock: a refused connection proves the host is up).
func (t *Table) Record(a netip.Addr, timedOut bool) {
	a = a.Unmap()
	f, path, ok := t.format(a)
	if !ok || !timedOut && !t.seen[a] {
		return
	}
	create := f.Grow && timedOut
	if create {
		// Only our own run directory's subdirectory, never QMAILRUN
		// itself: a missing run directory is an installation problem
		// we must not paper over.
		os.Mkdir(filepath.Dir(path), 0o755)
	}
	file, err := openFile(path, os.O_RDWR, create)
	if err != nil {
		return
	}
	defer file.Close()
	fd := int(file.Fd())
	if !t.lock(fd, unix.LOCK_EX) {
		return
	}
	buf, err := readAll(fd, f.MaxBytes())
	if err != nil {
		return
	}
	recs, i := update(f, f.Decode(buf), a, timedOut, uint64(t.now().Unix()))
	if i < 0 {
		return
	}
	// One record, written in place at its offset (pwrite): the rest of
	// the file is never rewritten, and the IPv4 file never grows.
	unix.Pwrite(fd, f.EncodeRecord(recs[i]), int64(i*f.Size))
	if !timedOut {
		delete(t.seen, a)
	}
}

// openFile opens path without blocking (a FIFO in its place must not hang
// the delivery; stock opens with O_NDELAY too) and accepts only a regular
// file: anything else means "no table" for this delivery.
func openFile(path string, mode int, create bool) (*os.File, error) {
	if create {
		mode |= os.O_CREATE
	}
	return regular.OpenFile(path, mode, 0o644)
}

// lock takes a flock(2) lock, as stock's lock_ex on systems with flock,
// polling so that the wait is bounded.
func (t *Table) lock(fd, how int) bool {
	deadline := time.Now().Add(t.lockWait)
	for {
		err := unix.Flock(fd, how|unix.LOCK_NB)
		if err == nil {
			return true
		}
		if err != unix.EWOULDBLOCK && err != unix.EINTR || time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// readAll reads at most max bytes from the start of the file.
func readAll(fd, max int) ([]byte, error) {
	buf := make([]byte, max)
	n := 0
	for n < max {
		r, err := unix.Pread(fd, buf[n:], int64(n))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if r == 0 {
			break
		}
		n += r
	}
	return buf[:n], nil
}
