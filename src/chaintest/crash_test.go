package chaintest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"qmail-remote-go/src/internal/report"
	"qmail-remote-go/src/testkit/buildtest"
	"qmail-remote-go/src/testkit/smtptest"
)

// crashBuild is the binary built with -tags crashtest (src/qmail-remote-io/
// crashtest.go): QRG_TESTCRASH makes its session crash on purpose.
var crashBuild struct {
	once sync.Once
	dir  string
	err  error
}

func crashBinary(t *testing.T) string {
	t.Helper()
	crashBuild.once.Do(func() {
		crashBuild.dir = filepath.Join(bin, "crashtest")
		if crashBuild.err = os.Mkdir(crashBuild.dir, 0o755); crashBuild.err == nil {
			crashBuild.err = buildtest.Build(crashBuild.dir, "crashtest")
		}
	})
	if crashBuild.err != nil {
		t.Fatal(crashBuild.err)
	}
	return crashBuild.dir
}

// TestInProcessCrash: whatever crashes inside the chain, qmail-rspawn
// never sees exit status 2 (a bounce), a core file or a byte on fd 2.
// Run in one process, a panic in a stage is recovered into a Z (with
// "Possible duplicate!" only after the dot), and a panic that nothing can
// recover or a runtime fatal error ends qmail-remote by SIGABRT, which
// qmail-rspawn reads as "qmail-remote crashed", temporary, with nothing
// written. With real processes (QMAILREMOTE_REALEXEC=1), every crash is
// a child's, and the guard's Z says so.
func TestInProcessCrash(t *testing.T) {
	dir := crashBinary(t)
	realExec := os.Getenv("QMAILREMOTE_REALEXEC") == "1"
	for _, tc := range []struct {
		crash string
		dup   bool
		abort bool // in one process: death by SIGABRT
	}{
		{"greeting:panic", false, false},
		{"dot:panic", true, false},
		{"greeting:goroutine", false, true},
		{"greeting:fatal", false, true},
		{"dot:fatal", true, true},
	} {
		t.Run(tc.crash, func(t *testing.T) {
			srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{})
			h := newHome(t)
			route(h, srv)
			if err := os.WriteFile(filepath.Join(h.dir, "msg"), []byte(sample), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := runRaw(t, filepath.Join(dir, "qmail-remote"), h, "QRG_TESTCRASH="+tc.crash)
			var ee *exec.ExitError
			if tc.abort && !realExec {
				ws, _ := errAs(err, &ee)
				if !ws.Signaled() || ws.Signal() != syscall.SIGABRT {
					t.Fatalf("qmail-remote ended with %v (output %q), want death by SIGABRT", err, out)
				}
				if len(out) != 0 {
					t.Errorf("qmail-rspawn's pipe got %q, want nothing", out)
				}
				if ws.CoreDump() {
					t.Error("a core was dumped")
				}
				cores, _ := filepath.Glob(filepath.Join(h.dir, "core*"))
				if len(cores) > 0 {
					t.Errorf("core files: %v", cores)
				}
				return
			}
			if err != nil {
				t.Fatalf("qmail-remote ended with %v (output %q), want exit 0", err, out)
			}
			res, perr := report.Parse(out, 1)
			if perr != nil {
				t.Fatalf("output %q: %v", out, perr)
			}
			if res.Message.Letter != report.Temporary {
				t.Fatalf("report %q, want a Z", out)
			}
			if got := strings.Contains(res.Message.Text, "Possible duplicate!"); got != tc.dup {
				t.Errorf("report %q: duplicate %v, want %v", res.Message.Text, got, tc.dup)
			}
			if !realExec && !strings.Contains(res.Message.Text, "crashed: panic: test crash at") {
				t.Errorf("report %q does not say the stage crashed", res.Message.Text)
			}
		})
	}
}

// TestOneProcess: the session runs in qmail-remote's own process, unless
// QMAILREMOTE_REALEXEC=1 asks for real processes.
func TestOneProcess(t *testing.T) {
	dir := crashBinary(t)
	srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{})
	h := newHome(t)
	route(h, srv)
	if err := os.WriteFile(filepath.Join(h.dir, "msg"), []byte(sample), 0o644); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(t.TempDir(), "pid")
	out, err := runRaw(t, filepath.Join(dir, "qmail-remote"), h, "QRG_TESTCRASH=greeting:pid", "QRG_TESTPIDFILE="+pidFile)
	if err != nil || !strings.HasPrefix(string(out), "r\x00K127.0.0.1 accepted message.") {
		t.Fatalf("%v, output %q", err, out)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	same := string(b) == strconv.Itoa(lastPid)
	if realExec := os.Getenv("QMAILREMOTE_REALEXEC") == "1"; same == realExec {
		t.Errorf("the session ran in process %s, qmail-remote was %d (real execs: %v)", b, lastPid, realExec)
	}
}

// TestNothingLingers: a stage run in the same process as the next one
// leaves nothing behind: no goroutine, no descriptor. The resolver is the
// one with goroutines of its own: a lookup it no longer waits for (the
// speculative A and AAAA of a domain whose MX came back, here never
// answered) must end with it, not at its timeout. The session's state
// with that resolver must be the state after an smtproutes relay, which
// asks no DNS at all.
func TestNothingLingers(t *testing.T) {
	if os.Getenv("QMAILREMOTE_REALEXEC") == "1" {
		t.Skip("every stage is a process of its own: nothing can linger from one to the next")
	}
	dir := crashBinary(t)
	state := func(h *home) string {
		t.Helper()
		if err := os.WriteFile(filepath.Join(h.dir, "msg"), []byte(sample), 0o644); err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(t.TempDir(), "state")
		out, err := runRaw(t, filepath.Join(dir, "qmail-remote"), h, append(h.env, "QRG_TESTCRASH=greeting:state", "QRG_TESTPIDFILE="+f)...)
		if err != nil || !strings.Contains(string(out), "K127.0.0.1 accepted message.") {
			t.Fatalf("%v, output %q", err, out)
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// The same things at the same numbers; the socket's inode and
		// the memory file's name differ from run to run.
		s := regexp.MustCompile(`pid=\d+ `).ReplaceAllString(string(b), "")
		s = regexp.MustCompile(`:\[?\d+\]|/tmp/[^,]*|:\[[a-z]+\]`).ReplaceAllString(s, "")
		return regexp.MustCompile(`/memfd:[^,]*`).ReplaceAllString(s, "memfd")
	}
	port, _ := servers(t, nil, "127.0.0.1")
	h, d := dnsHome(t, port)
	d.Add("example.test. 60 IN MX 10 mx1.example.test.", "mx1.example.test. 60 IN A 127.0.0.1")
	d.Drop("example.test.", dns.TypeA)
	d.Drop("example.test.", dns.TypeAAAA)
	h.control("timeoutdns", "60\n")
	byMX := state(h)

	h2 := newHome(t)
	h2.control("smtproutes", "example.test:[127.0.0.1]:"+port+"\n")
	byRoute := state(h2)
	if byMX != byRoute {
		t.Errorf("the session ran with\n%s\nafter the resolver, and with\n%s\nwithout it", byMX, byRoute)
	}
}

// TestGoSettingsDropped: GOGC=off in qmail-remote's environment does not
// reach the session in its process (qmail-remote runs itself again
// without it), unless QMAILREMOTE_KEEPGOENV=1 keeps it on purpose.
func TestGoSettingsDropped(t *testing.T) {
	dir := crashBinary(t)
	for _, tc := range []struct {
		keep bool
		want string
	}{{false, "100"}, {true, "-1"}} {
		srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{})
		h := newHome(t)
		route(h, srv)
		if err := os.WriteFile(filepath.Join(h.dir, "msg"), []byte(sample), 0o644); err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(t.TempDir(), "gc")
		env := []string{"GOGC=off", "QRG_TESTCRASH=greeting:gc", "QRG_TESTPIDFILE=" + f}
		if tc.keep {
			env = append(env, "QMAILREMOTE_KEEPGOENV=1")
		}
		out, err := runRaw(t, filepath.Join(dir, "qmail-remote"), h, env...)
		if err != nil || !strings.Contains(string(out), "K127.0.0.1 accepted message.") {
			t.Fatalf("%v, output %q", err, out)
		}
		if b, _ := os.ReadFile(f); string(b) != tc.want {
			t.Errorf("keep %v: the session ran with GC percent %q, want %s", tc.keep, b, tc.want)
		}
	}
}

func errAs(err error, ee **exec.ExitError) (syscall.WaitStatus, bool) {
	if errors.As(err, ee) {
		ws, ok := (*ee).Sys().(syscall.WaitStatus)
		return ws, ok
	}
	return 0, false
}

// lastPid is the process id of runRaw's last qmail-remote (the shell that
// execs it keeps its id).
var lastPid int

// runRaw runs prog as qmail-rspawn would (fd 1 and fd 2 one pipe), with
// h's home and message, and core dumps allowed, and returns what it wrote
// and how it ended.
func runRaw(t *testing.T, prog string, h *home, env ...string) ([]byte, error) {
	t.Helper()
	f, err := os.Open(filepath.Join(h.dir, "msg"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("/bin/sh", "-c", `ulimit -c unlimited 2>/dev/null; exec "$0" "$@"`, prog, "example.test", "a@b", "c@d")
	cmd.Stdin = f
	cmd.Dir = h.dir
	cmd.Env = append([]string{"PATH=/usr/bin:/bin", "QMAILREMOTE_QMAILHOME=" + h.dir,
		"QMAILREMOTE_LIBEXECDIR=" + filepath.Dir(prog)}, env...)
	out, err := asRspawn(cmd, 60*time.Second)
	if errors.Is(err, errBound) {
		t.Fatal(err)
	}
	if cmd.Process != nil {
		lastPid = cmd.Process.Pid
	}
	return out, err
}
