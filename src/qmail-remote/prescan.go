package qmailremote

import (
	"errors"
	"io"
	"os"
	"runtime"
	"sync"

	"qmail-remote-go/src/internal/smtp"
)

// The pre-scan reads the message with pread(2), scanStep bytes at a
// time into a buffer the counter's few passes find in the CPU cache.
//
// A message of parallelMin bytes or more is cut into as many parts as
// there are workers, each with its own buffer. The pre-scan is bound by
// memory bandwidth, which one core does not exhaust, and nothing else of
// the delivery runs while it does, so two workers make it faster. More
// workers would add a buffer each for little.
//
// Reading beats mapping here: a mapping pays a page-table entry per 4 KiB
// page and, to keep the resident set flat, an madvise per step whose TLB
// shootdown interrupts the other worker; read(2) copies from the page
// cache into a buffer that stays in the cache. doc/bench.md ("The
// pre-scan reads") has the measurements.
const (
	scanStep    = 128 << 10
	parallelMin = 4 << 20
	maxWorkers  = 2
)

// errShrank: the file ended before the size fstat(2) gave.
var errShrank = errors.New("the message shrank while it was read")

// prescan counts the first size bytes of f from offset 0, without moving
// f's offset.
func prescan(f *os.File, size int64) (smtp.BodyStats, error) {
	n := int64(1)
	if size >= parallelMin {
		n = int64(max(1, min(runtime.GOMAXPROCS(0), maxWorkers)))
	}
	// Part i is [cut[i], cut[i+1]); the counters of the parts are joined
	// in order (BodyScanner.Append carries what straddles a cut).
	cut := make([]int64, n+1)
	for i := int64(1); i < n; i++ {
		cut[i] = size / n * i / scanStep * scanStep
	}
	cut[n] = size
	parts := make([]smtp.BodyScanner, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := int64(1); i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = countPart(f, cut[i], cut[i+1], &parts[i])
		}()
	}
	errs[0] = countPart(f, cut[0], cut[1], &parts[0])
	wg.Wait()
	var sc smtp.BodyScanner
	for i := range parts {
		if errs[i] != nil {
			return smtp.BodyStats{}, errs[i]
		}
		sc.Append(&parts[i])
	}
	return sc.Stats(), nil
}

// countPart counts the bytes [from, to) of f into sc.
func countPart(f *os.File, from, to int64, sc *smtp.BodyScanner) error {
	buf := make([]byte, min(scanStep, to-from))
	for off := from; off < to; {
		k, err := f.ReadAt(buf[:min(int64(len(buf)), to-off)], off)
		if k > 0 {
			sc.Write(buf[:k])
			off += int64(k)
		}
		switch {
		case err == io.EOF && off < to:
			return errShrank
		case err != nil && err != io.EOF:
			return err
		}
	}
	return nil
}
