package chaintest

// The fault matrix (doc/faults.md): a server that
// misbehaves in every way we know at every step of a delivery, and the
// whole chain run against it as qmail-rspawn runs qmail-remote. Each cell
// asserts the exact report class, "Possible duplicate!" exactly where the
// dot went out without a definitive answer, exit 0 and nothing but reports
// on the fd 1/fd 2 pipe (the harness), no process of the chain left behind,
// and what the servers received. The test process must not leak a file
// descriptor over the whole matrix.
//
// FAULT_MATRIX_OUT=file writes the measured table there (make check-faults).

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"qmail-remote-go/src/testkit/smtptest"
)

// The faults, in the order of the table's columns.
var faultNames = []string{"close", "reset", "stall", "4xx", "5xx", "no code", "mixed codes", "1 MB line", "NUL bytes"}

const (
	fClose = iota
	fReset
	fStall
	f4xx
	f5xx
	fNoCode
	fMixed
	fLong
	fNUL
)

// faultStep is one row: a step of the SMTP conversation, how a script makes
// the server misbehave there, and the outcome each fault must have.
type faultStep struct {
	name string
	// tls: the servers offer STARTTLS with a certificate from testCA, and
	// the client runs with tlsstrictness 2.
	tls bool
	// Replies at this step: what a healthy server says (the base of the
	// 1 MB line and of the NUL bytes), a 4xx, a 5xx, and a multi-line
	// reply whose lines have different codes. "" : no such cell.
	ok, temp, perm, mixed string
	set                   func(s *smtptest.Script, reply string)
	// want is the expected cell of each fault (see cellOf), "n/a" for a
	// fault that has no meaning at this step.
	want [9]string
	// threeRcpts: the delivery has three recipients (threeRcptArgs), and
	// the fault hits the second RCPT, after a 250 to the first.
	threeRcpts bool
}

// The recipients of a threeRcpts step; the first and third RCPT get 250.
var threeRcptArgs = []string{"b1@example.test", "b2@example.test", "b3@example.test"}

// Pre-MAIL failures move on: with one MX a Z (#4.4.1), with a healthy
// second MX a delivery there.
const moveOn = "Z→next r K"

var faultSteps = []faultStep{
	{name: "greeting", ok: "220 smtptest ESMTP", temp: "421 4.3.2 busy", perm: "554 5.7.1 go away", mixed: "220-smtptest\n554 no",
		set:  func(s *smtptest.Script, r string) { s.Greeting = r },
		want: [9]string{moveOn, moveOn, moveOn, moveOn, moveOn, moveOn, moveOn, moveOn, "r K"}},
	// EHLO refused (4xx or 5xx): HELO, which the server accepts.
	{name: "EHLO", ok: "250-smtptest\n250-PIPELINING\n250 8BITMIME", temp: "451 4.3.0 try later", perm: "550 5.7.1 not you", mixed: "250-smtptest\n550 no",
		set:  func(s *smtptest.Script, r string) { s.Ehlo = r },
		want: [9]string{moveOn, moveOn, moveOn, "r K", "r K", moveOn, moveOn, moveOn, "r K"}},
	{name: "STARTTLS", tls: true, ok: "220 ready", temp: "454 4.7.0 TLS not available", perm: "554 5.5.1 no", mixed: "220-ready\n454 not really",
		set:  func(s *smtptest.Script, r string) { s.StartTLS = r },
		want: [9]string{moveOn, moveOn, moveOn, moveOn, moveOn, moveOn, moveOn, moveOn, "r K"}},
	// The handshake has no reply codes: its malformed cells send bytes
	// that are not TLS where the ServerHello should be (see faultReply).
	{name: "TLS handshake", tls: true,
		set:  func(s *smtptest.Script, r string) { s.Handshake = r },
		want: [9]string{moveOn, moveOn, moveOn, "n/a", "n/a", moveOn, "n/a", moveOn, moveOn}},
	{name: "MAIL", ok: "250 ok", temp: "451 4.3.0 try later", perm: "553 5.1.8 sender unknown", mixed: "250-ok\n553 no",
		set:  func(s *smtptest.Script, r string) { s.Mail = r },
		want: [9]string{"Z", "Z", "Z", "Z", "D", "Z", "Z", "Z", "r K"}},
	{name: "RCPT", ok: "250 ok", temp: "450 4.2.1 mailbox busy", perm: "550 5.1.1 no such user", mixed: "250-ok\n550 no",
		set:  func(s *smtptest.Script, r string) { s.Rcpt = []string{r} },
		want: [9]string{"Z", "Z", "Z", "s D", "h D", "Z", "Z", "Z", "r K"}},
	// The second of three RCPTs, the first accepted: a definitive reply
	// decides for that recipient alone and the message goes to the other
	// two; a lost or unreadable reply ends everything with a Z, and the
	// first recipient's r waits on it (qmail-rspawn defers every
	// recipient of a Z delivery). The third never gets a letter then.
	// That first r is certain: the envelope is pipelined in one write,
	// which the server reads whole before it fails, after its 250s to
	// MAIL and the first RCPT. A close then sends a FIN behind them, and
	// a reset's RST does not take back what already arrived (Linux
	// keeps received bytes readable), so the client reads both 250s
	// first: "r Z", never "Z". And MAIL has gone out, so the second MX
	// is never tried (checkServers). A "r Z→next rrr K" seen on a
	// loaded machine was a healthy EHLO reply slower than the old
	// timeoutremote of 1 s: a failure before MAIL (faultTimeout).
	{name: "RCPT 2 of 3", threeRcpts: true, ok: "250 ok", temp: "450 4.2.1 mailbox busy", perm: "550 5.1.1 no such user", mixed: "250-ok\n550 no",
		set:  func(s *smtptest.Script, r string) { s.Rcpt = []string{"250 ok", r, "250 ok"} },
		want: [9]string{"r Z", "r Z", "r Z", "rsr K", "rhr K", "r Z", "r Z", "r Z", "rrr K"}},
	{name: "DATA", ok: "354 go ahead", temp: "451 4.3.0 later", perm: "554 5.5.1 no data", mixed: "354-go\n554 no",
		set:  func(s *smtptest.Script, r string) { s.Data = r },
		want: [9]string{"r Z", "r Z", "r Z", "r Z", "r D", "r Z", "r Z", "r Z", "r K"}},
	// In the middle of a big body the server answers (and hangs up), or
	// stops reading (stall): the client is still writing and never sees a
	// reply, whatever it is; the dot never goes out.
	{name: "mid-body", ok: "250 ok", temp: "451 4.3.0 abort", perm: "554 5.6.0 abort", mixed: "250-ok\n554 no",
		set:  func(s *smtptest.Script, r string) { s.Mid, s.MidAfter = r, 64<<10 },
		want: [9]string{"r Z", "r Z", "r Z", "r Z", "r Z", "r Z", "r Z", "r Z", "r Z"}},
	{name: "after the dot", ok: "250 ok: queued", temp: "452 4.3.1 full", perm: "554 5.7.1 spam", mixed: "250-ok\n554 spam",
		set:  func(s *smtptest.Script, r string) { s.AfterDot = r },
		want: [9]string{"r Z dup", "r Z dup", "r Z dup", "r Z", "r D", "r Z dup", "r Z dup", "r Z dup", "r K"}},
	// The same faults after a verified handshake (tlsstrictness 2): the
	// server's bytes now reach qmail-remote-io through tls-io, which must
	// hand every failure on without changing its meaning. A reset there
	// reaches qmail-remote-io as the end of its pipe (wantText).
	{name: "EHLO after TLS", tls: true, ok: "250-smtptest\n250-PIPELINING\n250 8BITMIME", temp: "451 4.3.0 try later", perm: "550 5.7.1 not you", mixed: "250-smtptest\n550 no",
		set: func(s *smtptest.Script, r string) { s.EhloAfterTLS = r },
		// No HELO after STARTTLS (a server that has just done it speaks
		// ESMTP): a refused EHLO there moves on, like a broken one.
		want: [9]string{moveOn, moveOn, moveOn, moveOn, moveOn, moveOn, moveOn, moveOn, "r K"}},
	{name: "MAIL under TLS", tls: true, ok: "250 ok", temp: "451 4.3.0 try later", perm: "553 5.1.8 sender unknown", mixed: "250-ok\n553 no",
		set:  func(s *smtptest.Script, r string) { s.Mail = r },
		want: [9]string{"Z", "Z", "Z", "Z", "D", "Z", "Z", "Z", "r K"}},
	{name: "mid-body under TLS", tls: true, ok: "250 ok", temp: "451 4.3.0 abort", perm: "554 5.6.0 abort", mixed: "250-ok\n554 no",
		set:  func(s *smtptest.Script, r string) { s.Mid, s.MidAfter = r, 64<<10 },
		want: [9]string{"r Z", "r Z", "r Z", "r Z", "r Z", "r Z", "r Z", "r Z", "r Z"}},
	{name: "after the dot under TLS", tls: true, ok: "250 ok: queued", temp: "452 4.3.1 full", perm: "554 5.7.1 spam", mixed: "250-ok\n554 spam",
		set:  func(s *smtptest.Script, r string) { s.AfterDot = r },
		want: [9]string{"r Z dup", "r Z dup", "r Z dup", "r Z", "r D", "r Z dup", "r Z dup", "r Z dup", "r K"}},
	// QUIT is not waited for: the outcome was decided by the 250 to the dot.
	{name: "QUIT", ok: "221 bye", temp: "421 4.3.0 bye", perm: "554 no", mixed: "221-bye\n554 no",
		set:  func(s *smtptest.Script, r string) { s.Quit = r },
		want: [9]string{"r K", "r K", "r K", "r K", "r K", "r K", "r K", "r K", "r K"}},
}

// longLine is a reply line of more than smtp.MaxReply (1 MiB).
var longLine = strings.Repeat("x", 1<<20+10)

// faultReply is what the server does for fault f at step st; false: the
// cell does not exist.
func faultReply(st faultStep, f int) (string, bool) {
	switch f {
	case fClose:
		return smtptest.Close, true
	case fReset:
		return smtptest.Reset, true
	case fStall:
		if st.base() == "mid-body" {
			// Stall reads on to the end; the server must stop reading
			// so that the client's write times out.
			return smtptest.Freeze, true
		}
		return smtptest.Stall, true
	}
	if st.name == "TLS handshake" {
		switch f {
		case fNoCode:
			return "hello there\r\n", true // a line of text instead of TLS
		case fLong:
			return longLine + "\r\n", true
		case fNUL:
			return strings.Repeat("\x00", 1024), true
		}
		return "", false
	}
	var r string
	switch f {
	case f4xx:
		r = st.temp
	case f5xx:
		r = st.perm
	case fNoCode:
		r = "hello there"
	case fMixed:
		r = st.mixed
	case fLong:
		r = st.ok[:3] + " " + longLine
	case fNUL:
		r = st.ok[:5] + "\x00" + st.ok[5:]
	}
	return r, r != ""
}

// preMail says whether the step comes before MAIL: a failure there moves
// on to the next candidate.
func (st faultStep) preMail() bool {
	switch st.base() {
	case "greeting", "EHLO", "STARTTLS", "TLS handshake":
		return true
	}
	return false
}

// base is the cleartext step whose replies and texts a step under TLS
// shares ("MAIL under TLS": "MAIL").
func (st faultStep) base() string {
	return strings.TrimSuffix(strings.TrimSuffix(st.name, " under TLS"), " after TLS")
}

// writeBigBody writes a message much bigger than the loopback socket
// buffers can hold (tcp_wmem's 4 MiB, plus what the server's unread
// receive buffer holds), so that a server failing in the middle of the
// body catches the client still writing.
func writeBigBody(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "big")
	line := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n"
	if err := os.WriteFile(p, []byte(sample+strings.Repeat(line, (16<<20)/len(line))), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// faultTimeout is the matrix's timeoutremote and timeoutconnect, in
// seconds. Every healthy reply, connect and TLS handshake must beat it, on
// a machine as loaded as it may be (at 1 and 2 s, a healthy EHLO reply or
// handshake sometimes did not, and the cell moved on to the next MX or
// failed); the stalls wait it out, which costs wall-clock time only,
// since those cells run all at once (TestFaultMatrix).
const faultTimeout = 10

// faultRun is one delivery against a faulty server at 127.0.0.1 (MX 10)
// and, with twoMX, a healthy one at 127.0.0.2 (MX 20).
type faultRun struct {
	res  result
	home string
	srv  map[string]*smtptest.Server
}

func runFault(t *testing.T, st faultStep, reply string, twoMX bool, bigBody string) faultRun {
	t.Helper()
	var bad, good2 smtptest.Script
	if st.tls {
		bad.TLS = good(t, "mx1.example.test")
		good2.TLS = good(t, "mx2.example.test")
	}
	st.set(&bad, reply)
	port, srv := servers(t, map[string]smtptest.Script{"127.0.0.1": bad, "127.0.0.2": good2}, "127.0.0.1", "127.0.0.2")
	h, d := dnsHome(t, port)
	d.Add("example.test. 60 IN MX 10 mx1.example.test.", "mx1.example.test. 60 IN A 127.0.0.1", "mx2.example.test. 60 IN A 127.0.0.2")
	if twoMX {
		d.Add("example.test. 60 IN MX 20 mx2.example.test.")
	}
	h.control("timeoutremote", fmt.Sprintf("%d\n", faultTimeout))
	h.control("timeoutconnect", fmt.Sprintf("%d\n", faultTimeout))
	if st.tls {
		(&tlsWorld{h: h}).anchors(t, "2")
	}
	args := []string{"example.test", "a@client.example.test", rcpt}
	if st.threeRcpts {
		args = append(args[:2], threeRcptArgs...)
	}
	var res result
	if st.base() == "mid-body" {
		f, err := os.Open(bigBody)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		res = h.runFile(f, args...)
	} else {
		res = h.run(sample, args...)
	}
	return faultRun{res: res, home: h.dir, srv: srv}
}

// outcomeOf is a delivery's report class: the recipient letters, the
// message letter, and "dup" for "Possible duplicate!", e.g. "r Z dup".
func outcomeOf(r result) string {
	s := r.rcptLetters()
	if s != "" {
		s += " "
	}
	s += string(r.message.Letter)
	if strings.Contains(r.message.Text, "Possible duplicate!") {
		s += " dup"
	}
	return s
}

// cellOf is a cell of the table: the outcome with the faulty server as the
// only MX, then "→next" and the outcome with a healthy second MX if that
// one was contacted, or the second outcome in parentheses if it differs
// without the second MX being contacted (it must not).
func cellOf(one, two faultRun) string {
	c := outcomeOf(one.res)
	switch o := outcomeOf(two.res); {
	case two.srv["127.0.0.2"].Conns() > 0:
		c += "→next " + o
	case o != c:
		c += " (2 MX: " + o + ")"
	}
	return c
}

// chainProcs lists the processes still running a program of the chain
// (their executable is in bin) for the delivery whose qmail home is home:
// every stage has QMAILREMOTE_QMAILHOME in its environment.
func chainProcs(home string) []string {
	binDir, err := filepath.EvalSymlinks(bin)
	if err != nil {
		binDir = bin
	}
	homes := map[string]bool{"QMAILREMOTE_QMAILHOME=" + home: true}
	if h, err := filepath.EvalSymlinks(home); err == nil {
		homes["QMAILREMOTE_QMAILHOME="+h] = true
	}
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range ents {
		pid := e.Name()
		if pid[0] < '0' || pid[0] > '9' {
			continue
		}
		exe, err := os.Readlink("/proc/" + pid + "/exe")
		if err != nil || filepath.Dir(exe) != binDir {
			continue
		}
		env, err := os.ReadFile("/proc/" + pid + "/environ")
		if err != nil {
			continue
		}
		for _, kv := range strings.Split(string(env), "\x00") {
			if homes[kv] {
				out = append(out, pid+" "+filepath.Base(exe))
				break
			}
		}
	}
	return out
}

// leftWait bounds the waits for what a delivery leaves behind (processes,
// descriptors) to go: they go at once when all is well, so only a leak
// ever waits this long, and no loaded machine makes a correct run fail.
const leftWait = 30 * time.Second

// noProcsLeft fails the test if a process of the delivery is still there
// after a grace (a stage may be a few milliseconds from exit; on a loaded
// machine, more).
func noProcsLeft(t *testing.T, home string) {
	t.Helper()
	var left []string
	for end := time.Now().Add(leftWait); ; time.Sleep(20 * time.Millisecond) {
		if left = chainProcs(home); len(left) == 0 || time.Now().After(end) {
			break
		}
	}
	if len(left) > 0 {
		t.Errorf("processes of the chain left behind: %v", left)
	}
}

// openFDs lists the test process's open file descriptors and what they are.
func openFDs(t *testing.T) map[string]string {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot list /proc/self/fd: %v", err)
	}
	out := map[string]string{}
	for _, e := range ents {
		// The directory's own descriptor is gone by now: skip what
		// cannot be read.
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil {
			out[e.Name()] = l
		}
	}
	return out
}

// fdLeaks compares the descriptors now with before, waiting a little for
// the runtime to let go of what it closes late.
func fdLeaks(t *testing.T, before map[string]string) []string {
	var extra []string
	for end := time.Now().Add(leftWait); ; time.Sleep(20 * time.Millisecond) {
		extra = extra[:0]
		for fd, what := range openFDs(t) {
			if b, ok := before[fd]; !ok || b != what {
				extra = append(extra, fd+" -> "+what)
			}
		}
		if len(extra) == 0 || time.Now().After(end) {
			sort.Strings(extra)
			return extra
		}
	}
}

// wantText is what the message report of a cell must say, beyond its
// class: why, in the stock wording where there is one.
func wantText(st faultStep, f int, twoMX bool, cell string) []string {
	accepted := func(ip string) []string {
		w := []string{ip + " accepted message."}
		if st.tls {
			w = append(w, "certificate verified.")
		}
		return w
	}
	switch {
	case strings.Contains(cell, "→next") && twoMX:
		return accepted("127.0.0.2")
	case strings.Contains(cell, "→next"):
		// the Z below
	case strings.HasSuffix(cell, "K"):
		w := accepted("127.0.0.1")
		if st.base() == "after the dot" && f == fNUL {
			w = append(w, "Remote host said: 250 o?k: queued\n") // sanitized
		}
		return w
	}
	var w []string
	if st.preMail() {
		w = append(w, "Sorry, I wasn't able to establish an SMTP connection. (#4.4.1)")
		if st.name == "TLS handshake" {
			return append(w, "the TLS handshake failed")
		}
	}
	switch {
	case st.base() == "mid-body":
		return append(w, "connection died", "sending the message")
	case f == fClose:
		return append(w, "connection died", "(#4.4.2)")
	case f == fReset && st.name != st.base():
		// After the handshake the reset is tls-io's to see; to
		// qmail-remote-io it is the end of the plaintext pipe.
		return append(w, "connection died", "(#4.4.2)")
	case f == fReset && st.name == "greeting":
		// The reset may come before the connector has seen its connect
		// complete: then the connect failed, which moves on just the same.
		return append(w, "connection reset by peer")
	case f == fReset:
		return append(w, "connection died", "connection reset by peer", "(#4.4.2)")
	case f == fStall:
		return append(w, "connection died", fmt.Sprintf("Timed out after %ds", faultTimeout), "(#4.4.2)")
	case f == fNoCode || f == fMixed || f == fLong:
		return append(w, "its reply was not SMTP", "(#4.4.2)")
	}
	switch st.base() {
	case "greeting":
		return append(w, "greeting failed", "Remote host said: "+map[int]string{f4xx: st.temp, f5xx: st.perm}[f])
	case "EHLO": // after TLS only: in cleartext a refused EHLO is HELO's
		return append(w, "(TLS) Connected to 127.0.0.1 but it refused EHLO under TLS.\nRemote host said: "+map[int]string{f4xx: st.temp, f5xx: st.perm}[f])
	case "STARTTLS":
		return append(w, "refused STARTTLS", "Remote host said: "+map[int]string{f4xx: st.temp, f5xx: st.perm}[f])
	case "MAIL":
		return append(w, "Connected to 127.0.0.1 but sender was rejected.\nRemote host said: "+map[int]string{f4xx: st.temp, f5xx: st.perm}[f])
	case "RCPT":
		return append(w, "Giving up on 127.0.0.1.")
	case "RCPT 2 of 3": // the Z cells all say why above
	case "DATA":
		return append(w, "127.0.0.1 failed on DATA command.\nRemote host said: "+map[int]string{f4xx: st.temp, f5xx: st.perm}[f])
	case "after the dot":
		return append(w, "127.0.0.1 failed after I sent the message.\nRemote host said: "+map[int]string{f4xx: st.temp, f5xx: st.perm}[f])
	}
	return w
}

// midBodyAnswer is the other text a mid-body cell may have when the
// server answers in the middle of the body and hangs up (every fault but
// close, reset and stall): two things happen, and which one the client
// sees first is up to the network and the scheduler, not to the chain.
// Its next write may fail on the closed connection ("connection died"
// while "sending the message", wantText), or, before that write, it may
// find the server's unasked reply waiting ("the session is out of step",
// bytes that arrived "while I sent the message"). Both are the same
// outcome, checked exactly: r Z, no "Possible duplicate!" (the dot never
// went out), the server without the whole message (checkServers). nil:
// the cell has a single text.
func midBodyAnswer(st faultStep, f int) []string {
	if st.base() != "mid-body" || f == fClose || f == fReset || f == fStall {
		return nil
	}
	return []string{"the session is out of step: it answered before I asked. (#4.4.2)", "while I sent the message, unasked"}
}

// hasAll says whether text contains every one of want.
func hasAll(text string, want []string) bool {
	for _, w := range want {
		if !strings.Contains(text, w) {
			return false
		}
	}
	return true
}

// checkServers checks what the servers received against the cell.
func checkServers(t *testing.T, st faultStep, f int, r faultRun, twoMX bool) {
	t.Helper()
	wireLen := int64(len(wire(sample)))
	whole := func(s *smtptest.Server) bool {
		for _, m := range s.Messages() {
			if m.Done && m.Len == wireLen {
				return true
			}
		}
		return false
	}
	o := outcomeOf(r.res)
	first, second := r.srv["127.0.0.1"], r.srv["127.0.0.2"]
	switch {
	case strings.HasSuffix(o, "K") && second.Conns() > 0:
		if !whole(second) {
			t.Errorf("K from the second MX, which does not have the message")
		}
		for _, l := range first.Lines() {
			if strings.HasPrefix(l, "MAIL") {
				t.Errorf("the faulty MX got MAIL, then the second one took the message: %v", first.Lines())
			}
		}
	case strings.HasSuffix(o, "K"):
		if !whole(first) {
			t.Errorf("K although the server does not have the whole message")
		}
	}
	if strings.Contains(o, "dup") && !whole(first) {
		t.Errorf("Possible duplicate! although the dot never reached the server")
	}
	if st.base() == "mid-body" && whole(first) {
		t.Errorf("the server got the whole message despite failing in its middle")
	}
	if twoMX && !st.preMail() && second.Conns() > 0 {
		t.Errorf("the second MX was contacted after the transaction had started on the first")
	}
	if !twoMX && second.Conns() > 0 {
		t.Errorf("a server that is no MX was contacted")
	}
}

func TestFaultMatrix(t *testing.T) {
	bigBody := writeBigBody(t)
	// Warm up what the test process keeps for good (the network poller,
	// the DNS server's first sockets), then take the descriptors.
	{
		srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{})
		h := newHome(t)
		route(h, srv)
		h.run(sample, "example.test", "a@b", rcpt).expect(t, 'K')
		srv.Close()
	}
	fdsBefore := openFDs(t)

	var mu sync.Mutex
	measured := map[string]string{} // step + "\x00" + fault -> cell
	type job struct {
		st faultStep
		f  int
	}
	record := func(st faultStep, f int, cell string) {
		mu.Lock()
		measured[st.name+"\x00"+faultNames[f]] = cell
		mu.Unlock()
	}
	// A cell whose servers cannot be set up (a port taken meanwhile, by
	// another test on this host) is skipped by smtptest or dnstest: try
	// it again, it must run.
	runJob := func(t *testing.T, j job) {
		st, f := j.st, j.f
		for try := 0; try < 3; try++ {
			skipped := false
			t.Run(st.name+"/"+faultNames[f], func(t *testing.T) {
				defer func() { skipped = t.Skipped() }()
				runCell(t, st, f, bigBody, record)
			})
			if !skipped {
				return
			}
		}
		t.Errorf("%s/%s: skipped three times, the cell never ran", st.name, faultNames[f])
	}
	t.Run("cells", func(t *testing.T) {
		var wg sync.WaitGroup
		// The stalls wait out faultTimeout and do nothing meanwhile:
		// they all start at once, each in its own goroutine, so that the
		// matrix takes about one faultTimeout. The other cells share a
		// pool of workers, our own rather than t.Parallel (-parallel
		// defaults to GOMAXPROCS, which would leave the stalls queued).
		const workers = 8
		jobs := make(chan job)
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range jobs {
					runJob(t, j)
				}
			}()
		}
		var rest []job
		for _, st := range faultSteps {
			for f := range faultNames {
				if f != fStall {
					rest = append(rest, job{st, f})
					continue
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					runJob(t, job{st, f})
				}()
			}
		}
		for _, j := range rest {
			jobs <- j
		}
		close(jobs)
		wg.Wait()
	})

	table := faultTable(measured)
	t.Logf("fault matrix (cell: outcome with the faulty server as the only MX; →next: with a healthy second MX):\n%s", table)
	if p := os.Getenv("FAULT_MATRIX_OUT"); p != "" {
		if err := os.WriteFile(p, []byte(table), 0o644); err != nil {
			t.Errorf("FAULT_MATRIX_OUT: %v", err)
		}
	}

	if leaks := fdLeaks(t, fdsBefore); len(leaks) > 0 {
		t.Errorf("file descriptors leaked by the test process over the matrix: %v", leaks)
	}
}

// runCell runs one cell: the fault with the faulty server as the only MX,
// then with a healthy second MX, and checks both deliveries. record keeps
// the measured cell for the table.
func runCell(t *testing.T, st faultStep, f int, bigBody string, record func(st faultStep, f int, cell string)) {
	reply, ok := faultReply(st, f)
	if !ok {
		if st.want[f] != "n/a" {
			t.Fatalf("no fault defined, but the expected cell is %q", st.want[f])
		}
		record(st, f, "n/a")
		return
	}
	// The two deliveries, each in its own subtest (a harness failure ends
	// that one alone), at the same time: a stall costs one faultTimeout.
	var runs [2]faultRun
	var done, skipped [2]bool
	var wg sync.WaitGroup
	for i, name := range []string{"one MX", "two MX"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Run(name, func(t *testing.T) {
				defer func() { skipped[i] = t.Skipped() }()
				runs[i] = runFault(t, st, reply, i == 1, bigBody)
				noProcsLeft(t, runs[i].home)
				done[i] = true
			})
		}()
	}
	wg.Wait()
	if skipped[0] || skipped[1] {
		t.Skip("a delivery's servers could not be set up")
	}
	if !done[0] || !done[1] {
		record(st, f, "(failed)") // the failed delivery's subtest says why
		return
	}
	one, two := runs[0], runs[1]
	cell := cellOf(one, two)
	t.Logf("one MX: %s\ntwo MX: %s", one.res, two.res)
	record(st, f, cell)
	if cell != st.want[f] {
		t.Errorf("got %q, want %q\none MX: %s\ntwo MX: %s", cell, st.want[f], one.res, two.res)
	}
	for _, x := range []struct {
		r     faultRun
		twoMX bool
	}{{one, false}, {two, true}} {
		res := x.r.res
		if dup := strings.Contains(outcomeOf(res), "dup"); dup != strings.Contains(st.want[f], "dup") {
			t.Errorf("Possible duplicate! %v, want the opposite: %s", dup, res)
		}
		want := wantText(st, f, x.twoMX, st.want[f])
		if alt := midBodyAnswer(st, f); alt != nil && hasAll(res.message.Text, alt) {
			want = alt
		}
		for _, w := range want {
			if !strings.Contains(res.message.Text, w) {
				t.Errorf("%s: message report %q lacks %q", map[bool]string{false: "one MX", true: "two MX"}[x.twoMX], res.message.Text, w)
			}
		}
		checkServers(t, st, f, x.r, x.twoMX)
	}
}

// faultTable formats the measured cells as a Markdown table, step × fault.
func faultTable(measured map[string]string) string {
	var b strings.Builder
	b.WriteString("| step \\ fault |")
	for _, f := range faultNames {
		b.WriteString(" " + f + " |")
	}
	b.WriteString("\n|---|")
	for range faultNames {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, st := range faultSteps {
		fmt.Fprintf(&b, "| %s |", st.name)
		for _, f := range faultNames {
			c, ok := measured[st.name+"\x00"+f]
			if !ok {
				c = "(not run)"
			}
			b.WriteString(" " + c + " |")
		}
		b.WriteString("\n")
	}
	return b.String()
}
