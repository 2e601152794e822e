package chaintest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/colinmarc/cdb"

	"qmail-remote-go/src/internal/report"
	"qmail-remote-go/src/internal/tcpto"
	"qmail-remote-go/src/testkit/smtptest"
)

// As many deliveries at once as qmail-rspawn's concurrencyremote allows
// (stock caps it at 120 unless recompiled; 200 goes beyond that), through
// the real chain, all to one server. Every delivery's best MX is a
// blackhole (a listener whose accept queue is full: the kernel drops the
// SYNs, so connect times out, which is what tcpto counts; a refused
// connection would prove the host up and record nothing, as in stock), so
// the deliveries race on queue/lock/tcpto, some recording the timeout and
// the later ones skipping the address. The smtproutes text is rewritten in
// place, same size, while they run, so that they race on compiling
// smtproutes.cdb too.
const (
	concurrentDeliveries = 200
	// concTimeoutConnect is the deliveries' timeoutconnect, in seconds:
	// what each delivery that tries the blackhole waits (they start
	// together, so nearly all do, in parallel), and what every connect to
	// the healthy server must beat while 200 deliveries start at once on
	// a machine that may be busy with other work besides (10 s: a healthy
	// connect never comes near it, loaded or not). At 1 s a
	// delivery kept off the CPU between its connect and its poll could
	// have taken the healthy server for a dead one.
	concTimeoutConnect = 10
	// concurrencyBound is a backstop for a hung delivery, and for the
	// waits on the others: the run takes a few seconds (logged), and how
	// long is not what the test checks.
	concurrencyBound = 120 * time.Second
)

func TestConcurrentDeliveries(t *testing.T) {
	if testing.Short() {
		t.Skip("200 deliveries at once: not under -short")
	}
	srv, hole, port := concBlackhole(t)
	h, d := dnsHome(t, port)
	h.control("timeoutconnect", fmt.Sprintf("%d\n", concTimeoutConnect))
	h.control("timeoutremote", "20\n") // a loaded machine is no reason to fail
	d.Add("example.test. 60 IN MX 10 hole.example.test.", "example.test. 60 IN MX 20 mx.example.test.",
		"hole.example.test. 60 IN A "+hole, "mx.example.test. 60 IN A 127.0.0.1")

	// queue/lock/tcpto as qmail's installer makes it (1024 zero bytes),
	// with one timeout of the blackhole three minutes ago (one more,
	// two minutes or more later, and it is skipped) and an old one of the
	// server (cleared by the first successful connect).
	tcptoFile := filepath.Join(h.dir, "queue/lock/tcpto")
	seed := make([]byte, 1024)
	copy(seed, tcptoRecord([4]byte{127, 0, 0, 2}, 1, time.Now().Add(-3*time.Minute)))
	copy(seed[16:], tcptoRecord([4]byte{127, 0, 0, 1}, 1, time.Now().Add(-3*time.Hour)))
	if err := os.WriteFile(tcptoFile, seed, 0o644); err != nil {
		t.Fatal(err)
	}

	// Two versions of smtproutes of the same size: the default route sends
	// every MX delivery to port (both versions), and one named route
	// differs.
	routes := func(name string) string {
		return name + ".test:[127.0.0.1]:" + port + "\n::" + port + "\n"
	}
	v1, v2 := routes("old01"), routes("new01")
	h.control("smtproutes", v1)
	textPath := filepath.Join(h.dir, "control/smtproutes")

	// Each delivery has its own message, with the lines the transparency
	// rules care about, and its own recipient.
	msgs := make([]string, concurrentDeliveries)
	files := make([]*os.File, concurrentDeliveries)
	dir := t.TempDir()
	for i := range msgs {
		msgs[i] = fmt.Sprintf("From: a@client.example.test\nTo: r%d@example.test\nSubject: %d\n\n.line %d\r\nbare\rcr\n\xe9t\xe9 %d\n%s\n.\n",
			i, i, i, i, strings.Repeat("x", i*37))
		p := filepath.Join(dir, fmt.Sprintf("msg%d", i))
		if err := os.WriteFile(p, []byte(msgs[i]), 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		f.Seek(int64(i%5), io.SeekStart) // qmail-rspawn promises no offset
		files[i] = f
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()

	fdsBefore := concFDs(t)
	start := make(chan struct{})
	var wg sync.WaitGroup
	var done atomic.Int32
	outs := make([]string, concurrentDeliveries)
	errs := make([]error, concurrentDeliveries)
	took := make([]time.Duration, concurrentDeliveries)
	for i := range concurrentDeliveries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			t0 := time.Now()
			defer func() { took[i] = time.Since(t0) }()
			outs[i], errs[i] = h.concRun(files[i], "example.test", "a@client.example.test", fmt.Sprintf("r%d@example.test", i))
			done.Add(1)
		}()
	}

	// Rewrite smtproutes in place (same size, no truncation: a reader sees
	// one version or a mix of both, and every mix is a valid file that
	// routes example.test the same way) a quarter, half and three quarters
	// of the way through.
	rewrites := 0
	rewriterDone := make(chan struct{})
	go func() {
		defer close(rewriterDone)
		deadline := time.Now().Add(concurrencyBound)
		for _, step := range []struct {
			at      int32
			content string
		}{{concurrentDeliveries / 4, v2}, {concurrentDeliveries / 2, v1}, {concurrentDeliveries * 3 / 4, v2}} {
			for done.Load() < step.at && time.Now().Before(deadline) {
				time.Sleep(2 * time.Millisecond)
			}
			if err := concRewrite(textPath, step.content); err != nil {
				t.Errorf("rewriting smtproutes: %v", err)
				return
			}
			rewrites++
		}
	}()

	began := time.Now()
	close(start)
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(concurrencyBound + 30*time.Second):
		t.Fatalf("deliveries still running after %v (%d done)", concurrencyBound+30*time.Second, done.Load())
	}
	elapsed := time.Since(began)
	<-rewriterDone
	ss := slices.Clone(took)
	slices.Sort(ss)
	// The figures are for the reader, not checked: a loaded machine
	// makes them what it will. More than 1400 DNS queries means some
	// were dropped in the burst (by a kernel that capped dnstest's UDP
	// buffer) and asked again after resolv.conf's timeout.
	t.Logf("%d deliveries at once: %v, %.0f deliveries/s; each took %v (median), %v (90th percentile), %v (slowest); %d DNS queries; smtproutes rewritten %d times during the run",
		concurrentDeliveries, elapsed.Round(time.Millisecond), float64(concurrentDeliveries)/elapsed.Seconds(),
		ss[len(ss)/2].Round(time.Millisecond), ss[len(ss)*9/10].Round(time.Millisecond), ss[len(ss)-1].Round(time.Millisecond),
		len(d.Queries()), rewrites)

	// All delivered: one K each, from the server, not the blackhole.
	want := map[string]int{}
	for i := range concurrentDeliveries {
		if errs[i] != nil {
			t.Errorf("delivery %d: %v", i, errs[i])
			continue
		}
		if !strings.HasPrefix(outs[i], "r") || !strings.Contains(outs[i], "\x00K127.0.0.1 accepted message.") {
			t.Errorf("delivery %d: %q", i, outs[i])
		}
		want[wire(msgs[i])]++
	}
	got := srv.Messages()
	if len(got) != concurrentDeliveries {
		t.Errorf("server received %d messages, want %d", len(got), concurrentDeliveries)
	}
	for _, m := range got {
		if !m.Done || want[string(m.Data)] == 0 {
			t.Errorf("server received a message that was not sent, or twice: %q", m.Data[:min(len(m.Data), 80)])
			continue
		}
		want[string(m.Data)]--
	}

	// The blackhole was tried by the first deliveries only: once one
	// recorded its second timeout, the others skipped it.
	concCheckTcpto(t, tcptoFile, began)

	// smtproutes.cdb as the deliveries left it: a whole cdb file.
	concCheckRoutesDB(t, filepath.Join(h.dir, "run/qmail-remote/smtproutes.cdb"))

	// No descriptor left open in this process (the test's pipes and the
	// servers' connections), and no process of the chain left running.
	concCheckLeaks(t, fdsBefore)

	// The newest routes are the ones in force: new01.test is routed,
	// old01.test is not any more (it goes to DNS, which doesn't know it).
	h.run(sample, "new01.test", "a@b", rcpt).expect(t, 'K', "127.0.0.1 accepted")
	h.run(sample, "old01.test", "a@b", rcpt).expect(t, 'D', "couldn't find any host named old01.test")
}

// concBlackhole starts a test SMTP server on 127.0.0.1 and, on the
// same port of 127.0.0.2, a listener whose accept queue is full and never
// drained: connects to it time out. It returns the server, the
// blackhole's address and the port.
func concBlackhole(t *testing.T) (*smtptest.Server, string, string) {
	t.Helper()
	for range 20 {
		srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{KeepData: true})
		p, _ := strconv.Atoi(srv.Port)
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		// Backlog 0: the kernel queues one connection, then drops every
		// SYN (Linux: a full accept queue drops, it does not refuse).
		if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: p, Addr: [4]byte{127, 0, 0, 2}}); err != nil {
			syscall.Close(fd)
			srv.Close()
			continue
		}
		if err := syscall.Listen(fd, 0); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { syscall.Close(fd) })
		filler, err := net.DialTimeout("tcp", "127.0.0.2:"+srv.Port, leftWait)
		if err != nil {
			t.Fatalf("filling the blackhole's queue: %v", err)
		}
		t.Cleanup(func() { filler.Close() })
		// Check that it does black-hole.
		if c, err := net.DialTimeout("tcp", "127.0.0.2:"+srv.Port, 300*time.Millisecond); err == nil {
			c.Close()
			t.Skip("this kernel does not drop SYNs on a full accept queue: no blackhole")
		}
		return srv, "127.0.0.2", srv.Port
	}
	t.Fatal("no port free on both 127.0.0.1 and 127.0.0.2")
	return nil, "", ""
}

// concRewrite writes content over the file from offset 0, without
// truncating it first (same size: nobody ever sees a shorter file).
func concRewrite(path, content string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt([]byte(content), 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// concRun is run for many goroutines at once: like runFile, it runs
// qmail-remote as qmail-rspawn does, but returns what went wrong instead
// of failing the test (t.Fatal belongs to the test's goroutine).
func (h *home) concRun(stdin *os.File, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(bin, "qmail-remote"), args...)
	cmd.Stdin = stdin
	cmd.Env = append([]string{
		"PATH=/usr/bin:/bin",
		"QMAILREMOTE_QMAILHOME=" + h.dir,
		"QMAILREMOTE_LIBEXECDIR=" + h.libx,
	}, h.env...)
	out, err := asRspawn(cmd, concurrencyBound)
	if errors.Is(err, errBound) {
		return string(out), err
	}
	if err != nil {
		return string(out), fmt.Errorf("qmail-remote exited with %v", err)
	}
	if _, err := report.Parse(out, len(args)-2); err != nil {
		return string(out), fmt.Errorf("malformed output: %v", err)
	}
	return string(out), nil
}

// concCheckTcpto decodes queue/lock/tcpto as qmail-tcpto(8) would: still 1024
// bytes (the IPv4 file never grows), the blackhole counted twice, last
// during this run (since began), the server cleared, nothing else.
func concCheckTcpto(t *testing.T, path string, began time.Time) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 1024 || len(b)%16 != 0 {
		t.Fatalf("tcpto is %d bytes, want 1024", len(b))
	}
	hole, server := netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.1")
	now := uint64(time.Now().Unix())
	for i, r := range tcpto.V4.Decode(b) {
		switch {
		case i == 0 && r.Addr == hole:
			if r.Count != 2 || r.When < uint64(began.Unix()) || r.When > now {
				t.Errorf("tcpto record of %v: %d timeouts, %d s ago; want 2, during this run", r.Addr, r.Count, int64(now)-int64(r.When))
			}
		case i == 1 && r.Addr == server:
			if r.Count != 0 {
				t.Errorf("tcpto record of %v: %d timeouts, want 0 (cleared by a successful connect)", r.Addr, r.Count)
			}
		case r.Count != 0 || !bytes.Equal(b[i*16:i*16+16], make([]byte, 16)):
			t.Errorf("tcpto record %d: % x: written although no other address timed out", i, b[i*16:i*16+16])
		}
	}
	// The stock layout, read without our decoder: 127.0.0.2, count 2.
	if !bytes.Equal(b[:5], []byte{127, 0, 0, 2, 2}) || binary.LittleEndian.Uint32(b[8:]) == 0 {
		t.Errorf("first tcpto record % x", b[:16])
	}
}

// concCheckRoutesDB opens smtproutes.cdb as a plain cdb and reads every
// record: a torn or half-written file fails here.
func concCheckRoutesDB(t *testing.T, path string) {
	t.Helper()
	db, err := cdb.Open(path)
	if err != nil {
		t.Fatalf("smtproutes.cdb: %v", err)
	}
	defer db.Close()
	it := db.Iter()
	n := 0
	keys := []string{}
	for it.Next() {
		n++
		keys = append(keys, strings.TrimPrefix(string(it.Key()), "\x00"))
		if n > 100 {
			break
		}
	}
	if it.Err() != nil || n < 3 {
		t.Errorf("smtproutes.cdb: %d records (%q), error %v", n, keys, it.Err())
	}
	if v, err := db.Get([]byte("\x00stamp")); err != nil || v == nil {
		t.Errorf("smtproutes.cdb has no stamp: %v", err)
	}
}

// concFDs counts this process's open descriptors.
func concFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}

// concCheckLeaks waits for the servers' side of the connections to close
// (at once, or within leftWait, a backstop), then compares the descriptor
// count with before, and looks for any process still running one of our
// programs.
func concCheckLeaks(t *testing.T, before int) {
	t.Helper()
	var now int
	for end := time.Now().Add(leftWait); ; time.Sleep(20 * time.Millisecond) {
		if now = concFDs(t); now <= before || time.Now().After(end) {
			break
		}
	}
	if now > before {
		ents, _ := os.ReadDir("/proc/self/fd")
		var list []string
		for _, e := range ents {
			l, _ := os.Readlink("/proc/self/fd/" + e.Name())
			list = append(list, e.Name()+"->"+l)
		}
		t.Errorf("%d descriptors open before the deliveries, %d after: %v", before, now, list)
	}
	if left := concChainProcs(); len(left) > 0 {
		t.Errorf("processes of the chain still running: %v", left)
	}
}

// concChainProcs lists the processes whose executable is one this test
// binary built.
func concChainProcs() []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		exe, err := os.Readlink("/proc/" + e.Name() + "/exe")
		if err == nil && strings.HasPrefix(exe, bin+string(filepath.Separator)) {
			out = append(out, e.Name()+" "+filepath.Base(exe))
		}
	}
	return out
}
