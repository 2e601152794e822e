//go:build crashtest

package qmailremoteio

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"
)

// In a binary built with -tags crashtest (the test suite's, never an
// installed one), QRG_TESTCRASH=when:how crashes the session at
// when (greeting, dot) in the way how:
//
//	panic      a panic in the session's own goroutine
//	goroutine  a panic in another goroutine, which nothing can recover
//	fatal      a runtime fatal error (unlock of an unlocked mutex)
//	pid        no crash: the process id goes to the file QRG_TESTPIDFILE,
//	           so that a test can tell which process ran the session
//	gc         no crash: the GC percent the runtime runs with (GOGC) goes
//	           to QRG_TESTPIDFILE
//	state      no crash: the process id, the number of goroutines and
//	           the open descriptors go to QRG_TESTPIDFILE, so that a test
//	           can tell whether an earlier stage left any behind
func init() {
	testCrash = func(when string) {
		w, how, _ := strings.Cut(os.Getenv("QRG_TESTCRASH"), ":")
		if w != when {
			return
		}
		switch how {
		case "panic":
			panic("test crash at " + when)
		case "goroutine":
			go func() { panic("test crash in a goroutine at " + when) }()
			time.Sleep(10 * time.Second)
		case "fatal":
			var mu sync.Mutex
			mu.Unlock()
		case "pid":
			os.WriteFile(os.Getenv("QRG_TESTPIDFILE"), []byte(strconv.Itoa(os.Getpid())), 0o644)
		case "gc":
			p := debug.SetGCPercent(100)
			debug.SetGCPercent(p)
			os.WriteFile(os.Getenv("QRG_TESTPIDFILE"), []byte(strconv.Itoa(p)), 0o644)
		case "state":
			// Let a goroutine that is about to end end.
			runtime.Gosched()
			fds, _ := os.ReadDir("/proc/self/fd")
			var links []string
			for _, fd := range fds {
				l, _ := os.Readlink("/proc/self/fd/" + fd.Name())
				links = append(links, fd.Name()+"="+l)
			}
			os.WriteFile(os.Getenv("QRG_TESTPIDFILE"), []byte(fmt.Sprintf("pid=%d goroutines=%d fds=%s",
				os.Getpid(), runtime.NumGoroutine(), strings.Join(links, ","))), 0o644)
		}
	}
}
