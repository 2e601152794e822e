package qmailremoteconnect

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"qmail-remote-go/src/internal/chainenv"
	"qmail-remote-go/src/internal/connect"
	"qmail-remote-go/src/internal/proc"
	"qmail-remote-go/src/internal/report"
	"qmail-remote-go/src/internal/tcpto"
	"qmail-remote-go/src/testkit/buildtest"
)

// bin is the built program; fake is a stand-in for qmail-remote-io.
var bin, fake string

// The fake prog: a POSIX sh script (no Go runtime: its own fds would blur
// the check of what we pass). It logs what it got, greets the server over
// fd 7, and behaves per FAKE_MODE_<n> (n = how many runs came before it)
// or FAKE_MODE.
const fakeScript = `#!/bin/sh
n=$(wc -l < "$FAKE_LOG" | tr -d ' ')
eval "mode=\${FAKE_MODE_$n:-\$FAKE_MODE}"
fds=
for f in 3 4 5 6 7 8 9; do
  if [ -e /proc/$$/fd/$f ]; then fds="$fds$f"; fi
done
s6=$(readlink /proc/$$/fd/6)
s7=$(readlink /proc/$$/fd/7)
same=no
[ -n "$s6" ] && [ "$s6" = "$s7" ] && same=yes
fl=$(sed -n 's/^flags:[[:space:]]*//p' /proc/$$/fdinfo/6)
nb=$(( 0$fl & 04000 ))
size=$(wc -c | tr -d ' ')
printf 'mode=%s proto=%s remote=%s:%s local=%s:%s mx=%s fds=%s same=%s sock=%s nonblock=%s stdin=%s tls=%s level=%s tlsa=%s names=%s\n' \
  "$mode" "$PROTO" "$TCPREMOTEIP" "$TCPREMOTEPORT" "$TCPLOCALIP" "$TCPLOCALPORT" \
  "$QMAILREMOTE_MXNAME" "$fds" "$same" "${s6%%:*}" "$nb" "$size" "${QMAILREMOTE_TLS-unset}" \
  "${QMAILREMOTE_TLSLEVEL-unset}" "${QMAILREMOTE_TLSA-unset}" "${QMAILREMOTE_TLSANAMES-unset}" >> "$FAKE_LOG"
printf 'hello %s\n' "$mode" >&7
case $mode in
ok) printf 'r\000s%s does not like recipient.\nRemote host said: 450 busy\n\000K%s accepted message.\nRemote host said: 250 ok\n\000' "$TCPREMOTEIP" "$TCPREMOTEIP"; exit 0 ;;
next) printf 'ZConnected to %s but greeting failed.\nRemote host said: 554 go away\n\000' "$TCPREMOTEIP"; exit 10 ;;
exit3) exit 3 ;;
signal) kill -9 $$ ;;
garbage) printf 'no NUL at all'; exit 0 ;;
empty) exit 0 ;;
next11) printf 'ZTLS handshake with %s failed: bad record MAC.\n\000' "$QMAILREMOTE_MXNAME"; exit 11 ;;
next-rcpt) printf 'rfoo\000Zbar\000'; exit 10 ;;
next-K) printf 'Kfoo\000'; exit 10 ;;
sleep) echo $$ > "$FAKE_LOG.pid"; exec sleep 300 ;;
tls)
  # A server per its MX name: plain* offers no STARTTLS, broken* fails
  # the handshake, any other does TLS. As qmail-remote-io and tlsio would.
  case $QMAILREMOTE_TLS:$QMAILREMOTE_MXNAME in
  require:plain*) printf 'Z%s does not offer STARTTLS.\n\000' "$QMAILREMOTE_MXNAME"; exit 10 ;;
  try:broken*|require:broken*) printf 'ZTLS handshake with %s failed: bad record MAC.\n\000' "$QMAILREMOTE_MXNAME"; exit 11 ;;
  none:*|try:plain*) how=cleartext ;;
  *) how=TLS ;;
  esac
  printf 'r\000r\000K%s accepted message.\n%s\n\000' "$QMAILREMOTE_MXNAME" "$how"; exit 0 ;;
big) i=0; while [ $i -lt 40 ]; do printf '%01000d' 0; i=$((i+1)); done; exit 0 ;;
# Killed after a complete report, or at a given point of the progress
# cell (package progress: fd 3, byte 0 the phase, byte 1 the program).
kill-K) printf 'r\000r\000K%s accepted message.\n\000' "$TCPREMOTEIP"; kill -9 $$ ;;
kill-tls-K) printf 'bt' 1<>/dev/fd/3; printf 'r\000r\000K%s accepted message.\n\000' "$TCPREMOTEIP"; kill -9 $$ ;;
kill-Z) printf 'ZConnected to %s but greeting failed.\n\000' "$TCPREMOTEIP"; kill -9 $$ ;;
kill-greeting) printf 'b' 1<>/dev/fd/3; kill -9 $$ ;;
kill-dot) printf 'b' 1<>/dev/fd/3; printf 'r\000' ; printf 'd' 1<>/dev/fd/3; kill -9 $$ ;;
kill-tls) printf 'bt' 1<>/dev/fd/3; kill -9 $$ ;;
kill-tls-dot) printf 'dt' 1<>/dev/fd/3; kill -9 $$ ;;
esac
exit 0
`

func TestMain(m *testing.M) {
	buildtest.ProgramWithScript(m, &bin, "qmail-remote-connect", &fake, "fake-io", fakeScript)
}

// server is a loopback listener that records the first line of each
// connection.
type server struct {
	ln    net.Listener
	port  string
	mu    sync.Mutex
	lines []string
	wg    sync.WaitGroup
}

func listen(t *testing.T, network, addr string) *server {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	s := &server{ln: ln, port: port}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for range 50 {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetReadDeadline(time.Now().Add(30 * time.Second)) // a backstop
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			s.mu.Lock()
			s.lines = append(s.lines, line)
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() { ln.Close(); s.wg.Wait() })
	return s
}

// got closes the listener and returns what each connection said.
func (s *server) got() []string {
	s.ln.Close()
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lines
}

// freePort returns a port nothing listens on (on 127.0.0.1).
func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	return port
}

// listenBoth listens on the same port on 127.0.0.1 and ::1.
func listenBoth(t *testing.T) (v4, v6 *server) {
	for range 10 {
		v4 = listen(t, "tcp4", "127.0.0.1:0")
		ln, err := net.Listen("tcp6", "[::1]:"+v4.port)
		if err == nil {
			ln.Close()
			return v4, listen(t, "tcp6", "[::1]:"+v4.port)
		}
		v4.got()
	}
	t.Skip("no common port on 127.0.0.1 and ::1 (no IPv6 loopback?)")
	return nil, nil
}

// delivery is one run of the program in a throwaway qmail home.
type delivery struct {
	t        *testing.T
	home     string
	env      map[string]string
	log      string
	msg      string
	stdout   []byte
	stderr   string
	exitCode int
}

func newDelivery(t *testing.T, port, candidates string) *delivery {
	t.Helper()
	home := t.TempDir()
	for _, d := range []string{"queue/lock", "run/qmail-remote"} {
		os.MkdirAll(filepath.Join(home, d), 0o755)
	}
	os.WriteFile(filepath.Join(home, "queue/lock/tcpto"), make([]byte, 1024), 0o644)
	d := &delivery{t: t, home: home, log: filepath.Join(home, "fake.log"), msg: "Subject: x\n\nhello\n"}
	os.WriteFile(d.log, nil, 0o644)
	d.env = map[string]string{
		chainenv.Candidates:     candidates,
		chainenv.Port:           port,
		chainenv.TimeoutConnect: "30", // generous: every connect here is to loopback and must succeed or be refused
		chainenv.QmailHome:      home,
		chainenv.QmailRun:       filepath.Join(home, "run"),
		chainenv.Rcpts:          "2",
		"FAKE_LOG":              d.log,
		"FAKE_MODE":             "ok",
		"PATH":                  "/usr/bin:/bin",
		chainenv.TCPRemoteIP:    "192.0.2.99", // stale, must be replaced
	}
	return d
}

func (d *delivery) run(args ...string) *delivery {
	d.t.Helper()
	msg := filepath.Join(d.home, "msg")
	os.WriteFile(msg, []byte(d.msg), 0o644)
	in, err := os.Open(msg)
	if err != nil {
		d.t.Fatal(err)
	}
	defer in.Close()
	if args == nil {
		args = []string{fake}
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdin = in
	for k, v := range d.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second): // a backstop, beyond timeoutconnect
		cmd.Process.Kill()
		<-done
		d.t.Fatal("qmail-remote-connect hung")
	}
	d.stdout, d.stderr, d.exitCode = stdout.Bytes(), stderr.String(), cmd.ProcessState.ExitCode()
	return d
}

// runs returns the fake's log lines, one per run.
func (d *delivery) runs() []string {
	b, _ := os.ReadFile(d.log)
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")[:strings.Count(string(b), "\n")]
}

// z checks the output is exactly one Z report holding every want.
func (d *delivery) z(want ...string) string {
	d.t.Helper()
	if d.exitCode != 0 {
		d.t.Fatalf("exit %d, stderr %q", d.exitCode, d.stderr)
	}
	res, err := report.Parse(d.stdout, 0)
	if err != nil || res.Message.Letter != 'Z' {
		d.t.Fatalf("output %q (%v), want one Z", d.stdout, err)
	}
	for _, w := range want {
		if !strings.Contains(res.Message.Text, w) {
			d.t.Errorf("Z text %q lacks %q", res.Message.Text, w)
		}
	}
	return res.Message.Text
}

func (d *delivery) tcpto() []tcpto.Record {
	b, _ := os.ReadFile(filepath.Join(d.home, "queue/lock/tcpto"))
	return tcpto.V4.Decode(b)
}

func (d *delivery) setTcpto(a string, count byte, when time.Time) {
	b := make([]byte, 1024)
	copy(b, tcpto.V4.EncodeRecord(tcpto.Record{Addr: netip.MustParseAddr(a), Count: count, When: uint64(when.Unix())}))
	os.WriteFile(filepath.Join(d.home, "queue/lock/tcpto"), b, 0o644)
}

const okOut = "r\x00s%[1]s does not like recipient.\nRemote host said: 450 busy\n\x00K%[1]s accepted message.\nRemote host said: 250 ok\n\x00"

func TestDeliverV4(t *testing.T) {
	srv := listen(t, "tcp4", "127.0.0.1:0")
	d := newDelivery(t, srv.port, "mx.example.test/127.0.0.1").run()
	if d.exitCode != 0 || string(d.stdout) != fmt.Sprintf(okOut, "127.0.0.1") {
		t.Fatalf("exit %d, output %q, stderr %q", d.exitCode, d.stdout, d.stderr)
	}
	runs := d.runs()
	if len(runs) != 1 {
		t.Fatalf("runs %q", runs)
	}
	r := runs[0]
	for _, w := range []string{"proto=TCP ", "remote=127.0.0.1:" + srv.port + " ", "mx=mx.example.test ",
		"fds=367 ", "same=yes ", "sock=socket ", "nonblock=0 ", fmt.Sprintf("stdin=%d", len(d.msg))} {
		if !strings.Contains(r, w) {
			t.Errorf("child saw %q, lacks %q", r, w)
		}
	}
	if !strings.Contains(r, "local=127.0.0.1:") || strings.Contains(r, "local=127.0.0.1: ") {
		t.Errorf("TCPLOCALIP/PORT wrong: %q", r)
	}
	if got := srv.got(); len(got) != 1 || got[0] != "hello ok\n" {
		t.Errorf("server got %q", got)
	}
}

// Run by hand without QMAILREMOTE_QMAILRUN, the connector takes the
// home's run/ (doc/chain.md), as qmail-remote does when no run directory
// is configured, instead of refusing to start.
func TestRunFollowsHome(t *testing.T) {
	srv := listen(t, "tcp4", "127.0.0.1:0")
	d := newDelivery(t, srv.port, "mx.example.test/127.0.0.1")
	delete(d.env, chainenv.QmailRun)
	d.run()
	if d.exitCode != 0 || string(d.stdout) != fmt.Sprintf(okOut, "127.0.0.1") {
		t.Fatalf("exit %d, output %q, stderr %q", d.exitCode, d.stdout, d.stderr)
	}
}

func TestDeliverV6(t *testing.T) {
	srv := listen(t, "tcp6", "[::1]:0")
	d := newDelivery(t, srv.port, "[::1]/::1").run()
	if string(d.stdout) != fmt.Sprintf(okOut, "::1") {
		t.Fatalf("output %q, stderr %q", d.stdout, d.stderr)
	}
	if r := d.runs(); len(r) != 1 || !strings.Contains(r[0], "remote=::1:"+srv.port+" ") ||
		!strings.Contains(r[0], "local=::1:") || !strings.Contains(r[0], "mx=[::1] ") || !strings.Contains(r[0], "fds=367 ") {
		t.Errorf("child saw %q", r)
	}
}

func TestNextCandidate(t *testing.T) {
	srv := listen(t, "tcp4", "127.0.0.1:0")
	d := newDelivery(t, srv.port, "mx1.example.test/127.0.0.1 mx2.example.test/127.0.0.1")
	d.env["FAKE_MODE_0"] = "next"
	d.run()
	if string(d.stdout) != fmt.Sprintf(okOut, "127.0.0.1") {
		t.Fatalf("output %q, stderr %q", d.stdout, d.stderr)
	}
	runs := d.runs()
	if len(runs) != 2 || !strings.Contains(runs[0], "mx=mx1.example.test") || !strings.Contains(runs[1], "mx=mx2.example.test") {
		t.Fatalf("runs %q", runs)
	}
	// The second child gets the whole message too.
	if !strings.Contains(runs[1], fmt.Sprintf("stdin=%d", len(d.msg))) {
		t.Errorf("second child's stdin: %q", runs[1])
	}
	if got := srv.got(); len(got) != 2 || got[0] != "hello next\n" || got[1] != "hello ok\n" {
		t.Errorf("server got %q", got)
	}
}

func TestAllCandidatesFail(t *testing.T) {
	srv := listen(t, "tcp4", "127.0.0.1:0")
	d := newDelivery(t, srv.port, "mx1.example.test/::1 mx2.example.test/127.0.0.1")
	d.env["FAKE_MODE"] = "next"
	text := d.run().z()
	// ::1 has nothing on this port (or no IPv6): refused or failed.
	want := "Sorry, I wasn't able to establish an SMTP connection. (#4.4.1)\n" +
		"Connected to 127.0.0.1 but greeting failed.\nRemote host said: 554 go away\n" +
		"Earlier attempts:\nConnection to ::1 "
	if !strings.HasPrefix(text, want) {
		t.Fatalf("text %q, want prefix %q", text, want)
	}
}

func TestRefused(t *testing.T) {
	port := freePort(t)
	d := newDelivery(t, port, "mx.example.test/127.0.0.1")
	// A count of 1 is found (not skipped) and cleared: a refused connect
	// proves the host is up (stock tcpto_err(ip, 0)).
	d.setTcpto("127.0.0.1", 1, time.Now())
	text := d.run().z()
	if text != "Sorry, I wasn't able to establish an SMTP connection. (#4.4.1)\nConnection to 127.0.0.1 refused.\n" {
		t.Fatalf("text %q", text)
	}
	if r := d.tcpto()[0]; r.Count != 0 || r.Addr != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("tcpto after refusal: %+v", r)
	}
	if len(d.runs()) != 0 {
		t.Error("prog ran without a connection")
	}
}

func TestTcptoSkip(t *testing.T) {
	t.Run("only candidate", func(t *testing.T) {
		srv := listen(t, "tcp4", "127.0.0.1:0")
		d := newDelivery(t, srv.port, "mx.example.test/127.0.0.1")
		d.setTcpto("127.0.0.1", 2, time.Now())
		before := d.tcpto()
		d.run().z("Sorry, I wasn't able to establish an SMTP connection. (#4.4.1)\n127.0.0.1 skipped: recent connection timeouts (tcpto).\n")
		if got := srv.got(); len(got) != 0 {
			t.Errorf("connected to a skipped address: %q", got)
		}
		if after := d.tcpto(); after[0].Count != before[0].Count || after[0].When != before[0].When {
			t.Errorf("tcpto changed: %+v", after[0])
		}
	})
	t.Run("next candidate used", func(t *testing.T) {
		v4, v6 := listenBoth(t)
		d := newDelivery(t, v4.port, "a.example.test/127.0.0.1 b.example.test/::1")
		d.setTcpto("127.0.0.1", 2, time.Now())
		d.run()
		if string(d.stdout) != fmt.Sprintf(okOut, "::1") {
			t.Fatalf("output %q", d.stdout)
		}
		if len(v4.got()) != 0 || len(v6.got()) != 1 {
			t.Error("wrong server used")
		}
	})
	t.Run("old timeouts do not skip; success clears", func(t *testing.T) {
		srv := listen(t, "tcp4", "127.0.0.1:0")
		d := newDelivery(t, srv.port, "mx.example.test/127.0.0.1")
		d.setTcpto("127.0.0.1", 5, time.Now().Add(-2*time.Hour))
		d.run()
		if string(d.stdout) != fmt.Sprintf(okOut, "127.0.0.1") {
			t.Fatalf("output %q", d.stdout)
		}
		if r := d.tcpto()[0]; r.Count != 0 {
			t.Errorf("not cleared: %+v", r)
		}
	})
	t.Run("v6 file", func(t *testing.T) {
		srv := listen(t, "tcp6", "[::1]:0")
		d := newDelivery(t, srv.port, "mx.example.test/::1")
		rec := tcpto.V6.EncodeRecord(tcpto.Record{Addr: netip.MustParseAddr("::1"), Count: 3, When: uint64(time.Now().Unix())})
		os.WriteFile(filepath.Join(d.home, "run/qmail-remote/tcpto6"), rec, 0o644)
		d.run().z("::1 skipped: recent connection timeouts (tcpto).")
		if len(srv.got()) != 0 {
			t.Error("connected to a skipped address")
		}
	})
}

// A crash or garbage after connecting is final: the child may have sent
// the message already.
func TestBrokenChildIsFinal(t *testing.T) {
	for _, tc := range []struct{ mode, want string }{
		{"exit3", "fake-io failed: exit status 3. Possible duplicate! (#4.4.2)\n"},
		{"signal", "fake-io failed: killed by signal 9 (killed). Possible duplicate! (#4.4.2)\n"},
		{"garbage", "fake-io failed: malformed output (exit status 0): unterminated report \"no NUL at all\". Possible duplicate!"},
		{"empty", "malformed output (exit status 0): no message report."},
		{"next-rcpt", "exit status 10 without a single Z report: more recipient reports than the 0 recipients."},
		{"next-K", "exit status 10 without a single Z report: a D or K report."},
		{"big", "more than 12288 bytes of output."},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			srv := listen(t, "tcp4", "127.0.0.1:0")
			d := newDelivery(t, srv.port, "mx1.example.test/127.0.0.1 mx2.example.test/127.0.0.1")
			d.env["FAKE_MODE_0"] = tc.mode
			text := d.run().z("Connected to 127.0.0.1 but ", tc.want)
			if !strings.HasPrefix(text, "Connected to 127.0.0.1 but fake-io failed: ") {
				t.Errorf("text %q", text)
			}
			if runs := d.runs(); len(runs) != 1 {
				t.Errorf("tried another candidate after a broken child: %q", runs)
			}
		})
	}
}

// TestCompleteReportIsFinal: a child killed after it wrote a complete
// report keeps its report: a K stays a K, also when the TLS stage is what
// got killed; and a child killed without one gets "Possible duplicate!"
// exactly when the progress cell says the dot may be out, naming the
// program that was running.
func TestCompleteReportIsFinal(t *testing.T) {
	for _, tc := range []struct {
		mode   string
		letter byte
		text   string // the whole message report
	}{
		{"kill-K", 'K', "127.0.0.1 accepted message.\n"},
		{"kill-tls-K", 'K', "127.0.0.1 accepted message.\n"},
		{"kill-Z", 'Z', "Connected to 127.0.0.1 but greeting failed.\n"},
		{"kill-greeting", 'Z', "Connected to 127.0.0.1 but fake-io failed: killed by signal 9 (killed). (#4.4.2)\n"},
		{"kill-dot", 'Z', "Connected to 127.0.0.1 but fake-io failed: killed by signal 9 (killed). Possible duplicate! (#4.4.2)\n"},
		{"kill-tls", 'Z', "Connected to 127.0.0.1 but qmail-remote-tlsio failed: killed by signal 9 (killed). (#4.4.2)\n"},
		{"kill-tls-dot", 'Z', "Connected to 127.0.0.1 but qmail-remote-tlsio failed: killed by signal 9 (killed). Possible duplicate! (#4.4.2)\n"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			srv := listen(t, "tcp4", "127.0.0.1:0")
			d := newDelivery(t, srv.port, "mx1.example.test/127.0.0.1 mx2.example.test/127.0.0.1")
			d.env["FAKE_MODE_0"] = tc.mode
			d.env[chainenv.TLSIO] = "/usr/libexec/qmail-remote-go/qmail-remote-tlsio"
			d.run()
			res, err := report.Parse(d.stdout, 2)
			if d.exitCode != 0 || err != nil || res.Message.Letter != tc.letter || res.Message.Text != tc.text {
				t.Fatalf("exit %d, output %q (%v), want %c %q", d.exitCode, d.stdout, err, tc.letter, tc.text)
			}
			if runs := d.runs(); len(runs) != 1 {
				t.Errorf("tried another candidate: %q", runs)
			}
		})
	}
}

func TestNoCandidates(t *testing.T) {
	for _, c := range []string{"", "  "} {
		d := newDelivery(t, "25", c).run()
		if string(d.stdout) != "ZSorry, I wasn't able to establish an SMTP connection. (#4.4.1)\nNo address to connect to.\n\x00" {
			t.Errorf("output %q", d.stdout)
		}
	}
}

func TestBadUsage(t *testing.T) {
	for _, tc := range []struct {
		name, key, value string
		code             int
		stderr           string
	}{
		{"no port", chainenv.Port, "", 100, "QMAILREMOTE_PORT"},
		{"port 0", chainenv.Port, "0", 100, "QMAILREMOTE_PORT"},
		{"timeout 0", chainenv.TimeoutConnect, "0", 100, "QMAILREMOTE_TIMEOUTCONNECT"},
		{"bad candidate", chainenv.Candidates, "mx/999.1.1.1", 100, "QMAILREMOTE_CANDIDATES"},
		{"relative home", chainenv.QmailHome, "var/qmail", 100, "QMAILREMOTE_QMAILHOME"},
		{"relative run", chainenv.QmailRun, "run", 100, "QMAILREMOTE_QMAILRUN"},
		{"no rcpts", chainenv.Rcpts, "", 100, "QMAILREMOTE_RCPTS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := listen(t, "tcp4", "127.0.0.1:0")
			d := newDelivery(t, srv.port, "mx/127.0.0.1")
			if tc.value == "" {
				delete(d.env, tc.key)
			} else {
				d.env[tc.key] = tc.value
			}
			d.run()
			if d.exitCode != tc.code || !strings.Contains(d.stderr, tc.stderr) || len(d.stdout) != 0 {
				t.Errorf("exit %d, stderr %q, stdout %q", d.exitCode, d.stderr, d.stdout)
			}
			if len(srv.got()) != 0 {
				t.Error("connected despite bad usage")
			}
		})
	}
	t.Run("no prog", func(t *testing.T) {
		cmd := exec.Command(bin)
		out, _ := cmd.CombinedOutput()
		if cmd.ProcessState.ExitCode() != 100 || !strings.Contains(string(out), "usage: qmail-remote-connect prog...") {
			t.Errorf("exit %d, %q", cmd.ProcessState.ExitCode(), out)
		}
	})
	t.Run("prog not found", func(t *testing.T) {
		srv := listen(t, "tcp4", "127.0.0.1:0")
		d := newDelivery(t, srv.port, "mx/127.0.0.1").run("/nonexistent/prog")
		if d.exitCode != 111 || len(srv.got()) != 0 {
			t.Errorf("exit %d, stderr %q", d.exitCode, d.stderr)
		}
	})
}

// If qmail-remote-connect dies, prog must die with it, not go on talking
// to the server while qmail-remote reports a failure.
func TestChildDiesWithUs(t *testing.T) {
	srv := listen(t, "tcp4", "127.0.0.1:0")
	d := newDelivery(t, srv.port, "mx/127.0.0.1")
	d.env["FAKE_MODE"] = "sleep"
	cmd := exec.Command(bin, fake)
	for k, v := range d.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	// The waits below end as soon as what they wait for has happened;
	// their limit is a backstop, well within the child's own sleep
	// (fakeScript: 300 s), so that the child cannot pass by ending itself.
	const backstop = 30 * time.Second
	var pid int
	for end := time.Now().Add(backstop); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		b, _ := os.ReadFile(d.log + ".pid")
		if n, err := fmt.Sscan(string(b), &pid); err == nil && n == 1 && strings.HasSuffix(string(b), "\n") {
			break
		}
		pid = 0
	}
	if pid == 0 {
		cmd.Process.Kill()
		t.Fatal("the child never started")
	}
	cmd.Process.Kill()
	for end := time.Now().Add(backstop); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if unix.Kill(pid, 0) == unix.ESRCH {
			return
		}
		// Reaped by init, or a zombie of ours until init reaps it.
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && strings.Contains(string(b), ") Z ") {
			return
		}
	}
	unix.Kill(pid, unix.SIGKILL)
	t.Fatal("the child outlived qmail-remote-connect")
}

// fullListener returns the port of a 127.0.0.1 listener whose accept queue
// is full: Linux drops further SYNs, so a connect to it times out.
func fullListener(t *testing.T) string {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, _ := unix.Getsockname(fd)
	port := sa.(*unix.SockaddrInet4).Port
	remote := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
	for range 4 {
		c, err := connect.Dial(remote, netip.Addr{}, 300*time.Millisecond)
		if connect.TimedOut(err) {
			return fmt.Sprint(port)
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(c.FD) })
	}
	t.Skip("could not fill a listen queue on this kernel")
	return ""
}

func TestConnectTimeout(t *testing.T) {
	port := fullListener(t)
	d := newDelivery(t, port, "mx.example.test/127.0.0.1")
	d.env[chainenv.TimeoutConnect] = "1"
	start := time.Now()
	text := d.run().z()
	// The connect was given up on after timeoutconnect, not before; the
	// upper limit is only a backstop (run has its own).
	if el := time.Since(start); el < time.Second || el > 30*time.Second {
		t.Errorf("took %v with timeoutconnect 1", el)
	}
	if text != "Sorry, I wasn't able to establish an SMTP connection. (#4.4.1)\nConnection to 127.0.0.1 timed out.\n" {
		t.Fatalf("text %q", text)
	}
	// Recorded during this test: not before it started (When is in whole
	// seconds), nor in the future.
	if r := d.tcpto()[0]; r.Addr != netip.MustParseAddr("127.0.0.1") || r.Count != 1 ||
		r.When < uint64(start.Unix()) || r.When > uint64(time.Now().Unix()) {
		t.Errorf("timeout not recorded in tcpto: %+v", r)
	}
}

// The walk, with the network replaced: the timeout path without waiting.
func TestWalkTimeoutRecorded(t *testing.T) {
	home := t.TempDir()
	os.MkdirAll(filepath.Join(home, "queue/lock"), 0o755)
	os.WriteFile(filepath.Join(home, "queue/lock/tcpto"), make([]byte, 1024), 0o644)
	var dialed []string
	w := &walker{
		cfg: config{
			candidates: []chainenv.Candidate{
				{Name: "a", Addr: netip.MustParseAddr("192.0.2.1")},
				{Name: "b", Addr: netip.MustParseAddr("2001:db8::1")},
				{Name: "c", Addr: netip.MustParseAddr("192.0.2.3")},
			},
			port: 25, timeout: time.Second,
		},
		tab: tcpto.Open(home, filepath.Join(home, "run")),
		dial: func(ap netip.AddrPort, _ netip.Addr, _ time.Duration) (*connect.Conn, error) {
			dialed = append(dialed, ap.String())
			if ap.Addr().Is6() {
				return nil, &connect.Error{Op: "socket", Err: unix.EAFNOSUPPORT}
			}
			return nil, &connect.Error{Op: "connect", Err: connect.ErrTimeout}
		},
		run: func(chainenv.Candidate, *connect.Conn, string) child { panic("no connection, no child") },
	}
	out := w.walk()
	want := "ZSorry, I wasn't able to establish an SMTP connection. (#4.4.1)\n" +
		"Connection to 192.0.2.3 timed out.\nEarlier attempts:\n" +
		"Connection to 192.0.2.1 timed out.\nConnection to 2001:db8::1 failed: address family not supported by protocol.\n\x00"
	if string(out) != want {
		t.Errorf("output %q\nwant %q", out, want)
	}
	if strings.Join(dialed, " ") != "192.0.2.1:25 [2001:db8::1]:25 192.0.2.3:25" {
		t.Errorf("dialed %q", dialed)
	}
	b, _ := os.ReadFile(filepath.Join(home, "queue/lock/tcpto"))
	recs := tcpto.V4.Decode(b)
	if recs[0].Addr.String() != "192.0.2.1" || recs[0].Count != 1 || recs[1].Addr.String() != "192.0.2.3" || recs[1].Count != 1 {
		t.Errorf("tcpto %+v", recs[:2])
	}
	if _, err := os.Stat(filepath.Join(home, "run/qmail-remote/tcpto6")); err == nil {
		t.Error("a socket() failure was recorded in tcpto6")
	}
}

func TestSummaryBounded(t *testing.T) {
	var reasons []string
	for i := range 200 {
		reasons = append(reasons, fmt.Sprintf("Connection to 192.0.2.%d timed out.", i))
	}
	s := summary(reasons)
	if len(s) > attemptsBudget+200 || !strings.HasPrefix(s, "Connection to 192.0.2.199 timed out.\nEarlier attempts:\n") ||
		!strings.HasSuffix(s, " more)\n") {
		t.Errorf("summary of %d bytes: %q", len(s), s)
	}
}

type countingWriter struct{ writes [][]byte }

func (c *countingWriter) Write(b []byte) (int, error) {
	c.writes = append(c.writes, append([]byte(nil), b...))
	return len(b), nil
}

func TestOneWritePerReport(t *testing.T) {
	var c countingWriter
	out := "rok\x00hno\x00Kyes\x00"
	if err := writeReports(&c, []byte(out)); err != nil {
		t.Fatal(err)
	}
	if len(c.writes) != 3 || string(c.writes[0]) != "rok\x00" || string(c.writes[2]) != "Kyes\x00" {
		t.Errorf("writes %q", c.writes)
	}
	w := &countingWriter{}
	writeReports(w, nil)
	if len(w.writes) != 0 {
		t.Error("wrote nothing as something")
	}
	if err := writeReports(errWriter{}, []byte("Kx\x00")); err == nil {
		t.Error("write error lost")
	}
}

type errWriter struct{}

func (errWriter) Write([]byte) (int, error) { return 0, errors.New("broken") }

// tlsCase is one delivery with trust anchors (or not) and a strictness,
// the fake playing each server per its MX name (see fakeScript's "tls").
type tlsCase struct {
	name       string
	anchors    string // QMAILREMOTE_TRUSTANCHORS; "-" leaves it unset
	strictness string // "-" leaves it unset
	candidates string // %s is replaced by an address nothing listens on
	k          string // want a K with this text; "" wants a Z
	z          []string
	runs       []string // "mx tls" per child run, in order ("mx tls level tlsa names" when level is set)
	mode       string   // FAKE_MODE instead of "tls"
	level      string   // QMAILREMOTE_TLSPOLICY
	dane       string   // QMAILREMOTE_DANE
}

func (tc tlsCase) run(t *testing.T) {
	srv := listen(t, "tcp4", "127.0.0.1:0")
	// ::1 on the same port is taken to refuse (or lack IPv6): a
	// candidate whose TCP connect fails.
	cands := strings.ReplaceAll(tc.candidates, "DEAD", "::1")
	d := newDelivery(t, srv.port, cands)
	d.env["FAKE_MODE"] = "tls"
	if tc.mode != "" {
		d.env["FAKE_MODE"] = tc.mode
	}
	if tc.anchors != "-" {
		d.env[chainenv.TrustAnchors] = tc.anchors
	}
	if tc.strictness != "-" {
		d.env[chainenv.TLSStrictness] = tc.strictness
	}
	if tc.level != "" {
		d.env[chainenv.TLSPolicy] = tc.level
	}
	if tc.dane != "" {
		d.env[chainenv.DANE] = tc.dane
	}
	d.run()
	if tc.k != "" {
		res, err := report.Parse(d.stdout, 2)
		if d.exitCode != 0 || err != nil || res.Message.Letter != 'K' || res.Message.Text != tc.k {
			t.Fatalf("exit %d, output %q (%v), want K %q; stderr %q", d.exitCode, d.stdout, err, tc.k, d.stderr)
		}
	} else {
		d.z(tc.z...)
	}
	var got []string
	for _, r := range d.runs() {
		mx, tls := field(r, "mx"), field(r, "tls")
		if tc.level != "" {
			tls += " " + field(r, "level") + " " + field(r, "tlsa") + " " + field(r, "names")
		}
		got = append(got, mx+" "+tls)
	}
	if strings.Join(got, ", ") != strings.Join(tc.runs, ", ") {
		t.Errorf("runs %q, want %q", got, tc.runs)
	}
	if n := len(srv.got()); n != len(tc.runs) {
		t.Errorf("%d connections for %d runs", n, len(tc.runs))
	}
}

// field returns the value of name=value in a fake log line.
func field(line, name string) string {
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, name+"="); ok {
			return v
		}
	}
	return ""
}

const anchors = "/etc/ssl/certs/ca-certificates.crt" // never opened here

func TestTLSStrictness(t *testing.T) {
	const sorry = "Sorry, I wasn't able to establish an SMTP connection. (#4.4.1)\n"
	for _, tc := range []tlsCase{
		// Trust anchors empty or unset: no STARTTLS whatever the level,
		// and no pass labels.
		// Level 2 without anchors: nothing could verify; a Z before any
		// connection, never cleartext.
		{name: "no anchors", anchors: "", strictness: "2", candidates: "plain1.example.test/127.0.0.1",
			z: []string{"Unable to read control files: tlsstrictness is 2 but no trust anchors are set"}, runs: nil},
		{name: "no anchors, level 1", anchors: "", strictness: "1", candidates: "plain1.example.test/127.0.0.1",
			k: "plain1.example.test accepted message.\ncleartext\n", runs: []string{"plain1.example.test none"}},
		{name: "unset", anchors: "-", strictness: "-", candidates: "tls1.example.test/127.0.0.1",
			k: "tls1.example.test accepted message.\ncleartext\n", runs: []string{"tls1.example.test none"}},
		{name: "no anchors, exit 11 is like 10", anchors: "", strictness: "0", mode: "next11",
			candidates: "broken1.example.test/127.0.0.1 broken2.example.test/127.0.0.1", z: []string{
				sorry + "TLS handshake with broken2.example.test failed: bad record MAC.\nEarlier attempts:\nTLS handshake with broken1"},
			runs: []string{"broken1.example.test none", "broken2.example.test none"}},
		// Level 0.
		{name: "0 all capable", strictness: "0", candidates: "tls1.example.test/127.0.0.1 tls2.example.test/127.0.0.1",
			k: "tls1.example.test accepted message.\nTLS\n", runs: []string{"tls1.example.test try"}},
		{name: "0 unset strictness is 0", strictness: "-", candidates: "plain1.example.test/127.0.0.1",
			k: "plain1.example.test accepted message.\ncleartext\n", runs: []string{"plain1.example.test try"}},
		{name: "0 second capable", strictness: "0", candidates: "plain1.example.test/127.0.0.1 tls2.example.test/127.0.0.1",
			k: "plain1.example.test accepted message.\ncleartext\n", runs: []string{"plain1.example.test try"}},
		{name: "0 none capable", strictness: "0", candidates: "plain1.example.test/127.0.0.1 plain2.example.test/127.0.0.1",
			k: "plain1.example.test accepted message.\ncleartext\n", runs: []string{"plain1.example.test try"}},
		{name: "0 handshake failure retried in cleartext once", strictness: "0",
			candidates: "broken1.example.test/127.0.0.1 tls2.example.test/127.0.0.1",
			k:          "broken1.example.test accepted message.\ncleartext\n",
			runs:       []string{"broken1.example.test try", "broken1.example.test none"}},
		// Level 1.
		{name: "1 all capable", strictness: "1", candidates: "tls1.example.test/127.0.0.1 tls2.example.test/127.0.0.1",
			k: "tls1.example.test accepted message.\nTLS\n", runs: []string{"tls1.example.test require"}},
		{name: "1 second capable: TLS to the second, not cleartext to the first", strictness: "1",
			candidates: "plain1.example.test/127.0.0.1 tls2.example.test/127.0.0.1",
			k:          "tls2.example.test accepted message.\nTLS\n",
			runs:       []string{"plain1.example.test require", "tls2.example.test require"}},
		{name: "1 none capable: cleartext to the first", strictness: "1",
			candidates: "plain1.example.test/127.0.0.1 broken2.example.test/127.0.0.1",
			k:          "plain1.example.test accepted message.\ncleartext\n",
			runs:       []string{"plain1.example.test require", "broken2.example.test require", "plain1.example.test none"}},
		{name: "1 second pass skips what did not connect", strictness: "1",
			candidates: "plain1.example.test/DEAD plain2.example.test/127.0.0.1",
			k:          "plain2.example.test accepted message.\ncleartext\n",
			runs:       []string{"plain2.example.test require", "plain2.example.test none"}},
		// Level 2.
		{name: "2 all capable", strictness: "2", candidates: "tls1.example.test/127.0.0.1 tls2.example.test/127.0.0.1",
			k: "tls1.example.test accepted message.\nTLS\n", runs: []string{"tls1.example.test require"}},
		{name: "2 second capable", strictness: "2", candidates: "plain1.example.test/127.0.0.1 tls2.example.test/127.0.0.1",
			k: "tls2.example.test accepted message.\nTLS\n", runs: []string{"plain1.example.test require", "tls2.example.test require"}},
		{name: "2 none capable", strictness: "2",
			candidates: "plain1.example.test/127.0.0.1 broken2.example.test/127.0.0.1 plain3.example.test/DEAD",
			z: []string{sorry + "(TLS) Connection to ::1 ", "Earlier attempts:\n" +
				"(TLS) plain1.example.test does not offer STARTTLS.\n" +
				"(TLS) TLS handshake with broken2.example.test failed: bad record MAC.\n"},
			runs: []string{"plain1.example.test require", "broken2.example.test require"}},
		{name: "2 handshake failure is not retried", strictness: "2", candidates: "broken1.example.test/127.0.0.1",
			z:    []string{sorry + "(TLS) TLS handshake with broken1.example.test failed: bad record MAC.\n"},
			runs: []string{"broken1.example.test require"}},
	} {
		if tc.anchors == "" && !strings.HasPrefix(tc.name, "no anchors") {
			tc.anchors = anchors
		}
		t.Run(tc.name, tc.run)
	}
}

// TestTLSPolicy: a control/tlspolicy level (QMAILREMOTE_TLSPOLICY)
// overrides trustanchors and tlsstrictness; at dane, the hosts with
// TLSA records (QMAILREMOTE_DANE) get TLS authenticated by them, and the
// others are as at may.
func TestTLSPolicy(t *testing.T) {
	const sorry = "Sorry, I wasn't able to establish an SMTP connection. (#4.4.1)\n"
	const dane1 = "dane1.example.test/smtp.example.test,dane1.example.test/3:1:1:aa"
	for _, tc := range []tlsCase{
		{name: "dane: DANE host", level: "dane", dane: dane1, anchors: "-", candidates: "dane1.example.test/127.0.0.1",
			k:    "dane1.example.test accepted message.\nTLS\n",
			runs: []string{"dane1.example.test require dane 3:1:1:aa smtp.example.test,dane1.example.test"}},
		{name: "dane: a DANE host whose TLS fails gets no cleartext", level: "dane", anchors: "-",
			dane:       "broken1.example.test/broken1.example.test/3:1:1:aa",
			candidates: "broken1.example.test/127.0.0.1 plain2.example.test/127.0.0.1",
			k:          "plain2.example.test accepted message.\ncleartext\n",
			runs:       []string{"broken1.example.test require dane 3:1:1:aa broken1.example.test", "plain2.example.test try may unset unset"}},
		{name: "dane: others are may", level: "dane", dane: dane1, anchors: "-",
			candidates: "broken1.example.test/127.0.0.1",
			k:          "broken1.example.test accepted message.\ncleartext\n",
			runs:       []string{"broken1.example.test try may unset unset", "broken1.example.test none unset unset unset"}},
		{name: "dane-only: hosts without DANE are not used", level: "dane-only", dane: dane1, anchors: "-",
			candidates: "plain1.example.test/127.0.0.1 dane1.example.test/127.0.0.1",
			k:          "dane1.example.test accepted message.\nTLS\n",
			runs:       []string{"dane1.example.test require dane 3:1:1:aa smtp.example.test,dane1.example.test"}},
		{name: "dane-only: none with DANE", level: "dane-only", anchors: "-", candidates: "plain1.example.test/127.0.0.1",
			z:    []string{sorry + "(TLS) plain1.example.test has no DNSSEC-secure TLSA records, and control/tlspolicy says dane-only.\n"},
			runs: nil},
		{name: "none overrides strictness 2", level: "none", strictness: "2", candidates: "tls1.example.test/127.0.0.1",
			k: "tls1.example.test accepted message.\ncleartext\n", runs: []string{"tls1.example.test none unset unset unset"}},
		{name: "may without anchors", level: "may", anchors: "-", candidates: "tls1.example.test/127.0.0.1",
			k: "tls1.example.test accepted message.\nTLS\n", runs: []string{"tls1.example.test try may unset unset"}},
		{name: "encrypt: no cleartext", level: "encrypt", anchors: "-", strictness: "0",
			candidates: "plain1.example.test/127.0.0.1 broken2.example.test/127.0.0.1",
			z: []string{sorry + "(TLS) TLS handshake with broken2.example.test failed: bad record MAC.\nEarlier attempts:\n" +
				"(TLS) plain1.example.test does not offer STARTTLS.\n"},
			runs: []string{"plain1.example.test require encrypt unset unset", "broken2.example.test require encrypt unset unset"}},
		{name: "verify needs anchors", level: "verify", anchors: "-", candidates: "tls1.example.test/127.0.0.1",
			z: []string{"Unable to read control files: control/tlspolicy says verify for this destination but no trust anchors are set"}},
		{name: "verify", level: "verify", strictness: "0", candidates: "tls1.example.test/127.0.0.1",
			k: "tls1.example.test accepted message.\nTLS\n", runs: []string{"tls1.example.test require verify unset unset"}},
	} {
		if tc.anchors == "" {
			tc.anchors = anchors
		}
		if tc.strictness == "" {
			tc.strictness = "-"
		}
		t.Run(tc.name, tc.run)
	}
}

// Level 1 with nothing taking the mail: the Z tells both passes apart.
func TestTLSLevel1AllFail(t *testing.T) {
	srv := listen(t, "tcp4", "127.0.0.1:0")
	d := newDelivery(t, srv.port, "plain1.example.test/127.0.0.1 plain2.example.test/127.0.0.1")
	d.env["FAKE_MODE"] = "tls"
	d.env["FAKE_MODE_2"] = "next"
	d.env["FAKE_MODE_3"] = "next"
	d.env[chainenv.TrustAnchors] = anchors
	d.env[chainenv.TLSStrictness] = "1"
	d.run().z("Sorry, I wasn't able to establish an SMTP connection. (#4.4.1)\n" +
		"(cleartext) Connected to 127.0.0.1 but greeting failed.\nRemote host said: 554 go away\nEarlier attempts:\n" +
		"(TLS) plain1.example.test does not offer STARTTLS.\n(TLS) plain2.example.test does not offer STARTTLS.\n" +
		"(cleartext) Connected to 127.0.0.1 but greeting failed.\n")
	if r := d.runs(); len(r) != 4 {
		t.Errorf("runs %q", r)
	}
}

// Exit 11 is held to exit 10's rules: one Z, or the child is broken.
func TestTLSExit11NeedsOneZ(t *testing.T) {
	st := proc.EndOf(exitState(t, 11))
	if c := judge(st, []byte("Zhandshake failed\x00"), 1); c.verdict != tlsFailed || c.text != "handshake failed" {
		t.Errorf("%+v", c)
	}
	if c := judge(st, []byte("Kfoo\x00"), 1); c.verdict != broken || !strings.Contains(c.text, "exit status 11 without a single Z") {
		t.Errorf("%+v", c)
	}
}

func exitState(t *testing.T, code int) *os.ProcessState {
	cmd := exec.Command("/bin/sh", "-c", fmt.Sprintf("exit %d", code))
	cmd.Run()
	return cmd.ProcessState
}

func TestBadStrictness(t *testing.T) {
	for _, v := range []string{"3", "-1", "01", "x", " 1"} {
		srv := listen(t, "tcp4", "127.0.0.1:0")
		d := newDelivery(t, srv.port, "mx/127.0.0.1")
		d.env[chainenv.TLSStrictness] = v
		d.run()
		if d.exitCode != 100 || !strings.Contains(d.stderr, "QMAILREMOTE_TLSSTRICTNESS") || len(srv.got()) != 0 {
			t.Errorf("%q: exit %d, stderr %q", v, d.exitCode, d.stderr)
		}
	}
}
