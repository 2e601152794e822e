package qmailremoteio

import (
	"errors"
	"io"
	"os"
	"runtime/debug"

	"golang.org/x/sys/unix"

	"qmail-remote-go/src/internal/smtp"
)

// giveBackStep: the pages of the mapping already sent are given back
// (MADV_DONTNEED) every giveBackStep bytes. They stay in the page cache
// but leave our resident set, which must not grow with the message
// (doc/bench.md: within 1 MB). Every 64 KiB block would be 3200 calls
// for 200 MB.
const giveBackStep = 256 << 10

// errShrank: the message faulted under the mapping, i.e. it was
// truncated while we sent it.
var errShrank = errors.New("the message shrank while I was sending it")

// sendBody sends the message msg (fd 0), from its start, as the DATA body,
// calling beforeDot right before the write that ends it (smtp.SendOptions).
// It maps the file read-only and transforms it where the page cache holds
// it (smtp.SendBodyBytes): read(2) would first copy every byte into a
// buffer, about a third of the send's CPU time for a big message. A file
// the kernel will not map is read as before. Errors are SendBody's: a
// problem with the message is a *msgReadError.
func sendBody(msg *os.File, w io.Writer, beforeDot func() error) error {
	m, err := mapMessage(msg)
	if err != nil {
		_, err = smtp.SendBodyWith(w, msgReader{msg}, smtp.SendOptions{BeforeDot: beforeDot})
		return err
	}
	defer unix.Munmap(m)
	return sendMapped(w, m, beforeDot)
}

// mapMessage maps the whole of f, as long as it is now. The empty
// message is an empty slice (mmap refuses a length of 0).
func mapMessage(f *os.File) ([]byte, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := fi.Size()
	if !fi.Mode().IsRegular() || size != int64(int(size)) {
		return nil, errors.New("not a mappable file")
	}
	if size == 0 {
		return []byte{}, nil
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, err
	}
	unix.Madvise(m, unix.MADV_SEQUENTIAL)
	return m, nil
}

// sendMapped sends the mapped message m. The file may have changed since
// the pre-scan: SendBodyBytes checks the last line itself and never sends
// the dot after a partial one. A file truncated under the mapping faults
// (SIGBUS) past its new end: with SetPanicOnFault that is a panic in this
// goroutine, which becomes a read error here, never a crash; the caller
// then drops the connection without the dot.
func sendMapped(w io.Writer, m []byte, beforeDot func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			// Only a memory fault; anything else is a bug to see.
			if _, ok := r.(interface{ Addr() uintptr }); !ok {
				panic(r)
			}
			err = &msgReadError{errShrank}
		}
	}()
	given := 0 // m[:given] has been given back
	done := func(part []byte) {
		end := len(m) - cap(part) + len(part) // part ends at m[end]
		if end-given >= giveBackStep {
			unix.Madvise(m[given:end], unix.MADV_DONTNEED)
			given = end
		}
	}
	// The stats are not used here: QMAILREMOTE_MSG8BIT already said
	// whether the message has 8-bit bytes (BODY=8BITMIME).
	_, err = smtp.SendBodyBytes(w, m, smtp.SendOptions{Skip8Bit: true, Done: done, BeforeDot: beforeDot})
	return err
}
