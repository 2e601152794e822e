package main

import (
	"errors"
	"os"
	"runtime"
	"runtime/debug"
	"sync"

	"golang.org/x/sys/unix"

	"qmail-remote-go/src/internal/smtp"
)

// errNotMapped: the message could not be mapped; read it instead.
var errNotMapped = errors.New("not mapped")

// The mapped pre-scan (scanMapped) counts mapStep bytes at a time, a size
// the counter's few passes find in the CPU cache, and gives each step's
// pages back after counting them: they stay in the page cache (the send
// reads them next) but leave our resident set, whose peak must not grow
// with the message (doc/bench.md: within 1 MB). Each worker holds at
// most one step mapped.
//
// A message of parallelMin bytes or more is cut into as many parts as
// there are workers. The pre-scan is bound by memory bandwidth, which
// one core does not exhaust, and nothing else of the delivery runs while
// it does: two workers take 200 MB from about 50 ms to about 32 ms on
// the development machine. More than maxWorkers would add resident
// memory (one step each) for little.
const (
	mapStep     = 256 << 10
	parallelMin = 4 << 20
	maxWorkers  = 2
)

// scanMapped pre-scans the size bytes of f through a read-only mapping:
// the counting runs over the page cache itself, where read(2) would first
// copy every byte into a buffer. It returns errNotMapped when the kernel
// will not map the file (the caller reads it then).
func scanMapped(f *os.File, size int64) (smtp.BodyStats, error) {
	var sc smtp.BodyScanner
	if size == 0 {
		return sc.Stats(), nil // mmap refuses a length of 0
	}
	if size != int64(int(size)) {
		return smtp.BodyStats{}, errNotMapped
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return smtp.BodyStats{}, errNotMapped
	}
	defer unix.Munmap(m)
	n := 1
	if len(m) >= parallelMin {
		n = max(1, min(runtime.GOMAXPROCS(0), maxWorkers))
	}
	// Part i is m[cut[i]:cut[i+1]]; cuts fall on step boundaries, so
	// every step starts on a page and can be given back.
	cut := make([]int, n+1)
	for i := 1; i < n; i++ {
		cut[i] = len(m) / n * i / mapStep * mapStep
	}
	cut[n] = len(m)
	parts := make([]smtp.BodyScanner, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 1; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = countPart(m[cut[i]:cut[i+1]], &parts[i])
		}()
	}
	errs[0] = countPart(m[cut[0]:cut[1]], &parts[0])
	wg.Wait()
	for i := range parts {
		if errs[i] != nil {
			return smtp.BodyStats{}, errs[i]
		}
		sc.Append(&parts[i])
	}
	return sc.Stats(), nil
}

// countPart counts one part of the mapping into sc, a step at a time.
func countPart(m []byte, sc *smtp.BodyScanner) (err error) {
	// A file truncated under us faults (SIGBUS) past its new end: with
	// this, a panic we recover from and report, not a crash (exit 2).
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if recover() != nil {
			// The runtime calls it a bad address; what happened is
			// the file shrank.
			err = errors.New("the message shrank while it was read")
		}
	}()
	for off := 0; off < len(m); off += mapStep {
		step := m[off:min(off+mapStep, len(m))]
		sc.Write(step)
		unix.Madvise(step, unix.MADV_DONTNEED)
	}
	return nil
}
