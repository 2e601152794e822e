package qmailremoteroutes

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"qmail-remote-go/src/testkit/buildtest"
)

var bin string

func TestMain(m *testing.M) { buildtest.Program(m, &bin, "qmail-remote-routes") }

type home struct {
	t            *testing.T
	home, runDir string
}

func newHome(t *testing.T, smtproutes string) *home {
	t.Helper()
	root := t.TempDir()
	h := &home{t, filepath.Join(root, "qmail"), filepath.Join(root, "qmail", "run")}
	if err := os.MkdirAll(filepath.Join(h.home, "control"), 0o755); err != nil {
		t.Fatal(err)
	}
	if smtproutes != "" {
		if err := os.WriteFile(filepath.Join(h.home, "control", "smtproutes"), []byte(smtproutes), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

type result struct {
	stdout, stderr string
	code           int
}

// run runs the stage with only the given variables (plus the qmail home
// and run directory unless overridden) and /usr/bin/env as prog.
func (h *home) run(host string, extra ...string) result {
	h.t.Helper()
	env := []string{"QMAILREMOTE_QMAILHOME=" + h.home, "QMAILREMOTE_QMAILRUN=" + h.runDir, "QMAILREMOTE_HOST=" + host}
	return runEnv(h.t, append(env, extra...), bin, "/usr/bin/env")
}

func runEnv(t *testing.T, env []string, argv ...string) result {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{out.String(), errb.String(), code}
}

// vars parses env's output.
func vars(out string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m
}

func (r result) expectExec(t *testing.T, relay string, relaySet bool, port string) {
	t.Helper()
	if r.code != 0 || r.stderr != "" || strings.Contains(r.stdout, "\x00") {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	v := vars(r.stdout)
	got, ok := v["QMAILREMOTE_RELAY"]
	if ok != relaySet || got != relay {
		t.Errorf("QMAILREMOTE_RELAY = %q (set %v), want %q (set %v)", got, ok, relay, relaySet)
	}
	if v["QMAILREMOTE_PORT"] != port {
		t.Errorf("QMAILREMOTE_PORT = %q, want %q", v["QMAILREMOTE_PORT"], port)
	}
	if v["QMAILREMOTE_HOST"] == "" {
		t.Error("the environment was not passed on")
	}
}

const sample = `# test routes
inside.af.mil:firewall.af.mil:26
.af.mil:
empty.test::2526
[192.0.2.1]:[2001:db8::7]:2525
:heaven.af.mil
`

func TestRoutes(t *testing.T) {
	h := newHome(t, sample)
	h.run("inside.af.mil").expectExec(t, "firewall.af.mil", true, "26")
	h.run("X.AF.MIL").expectExec(t, "", false, "25")
	h.run("empty.test").expectExec(t, "", false, "2526")
	h.run("[192.0.2.1]").expectExec(t, "[2001:db8::7]", true, "2525")
	h.run("[IPv6:2001:db8::1]").expectExec(t, "heaven.af.mil", true, "25")
	h.run("example.test").expectExec(t, "heaven.af.mil", true, "25")
	if _, err := os.Stat(filepath.Join(h.runDir, "qmail-remote", "smtproutes.cdb")); err != nil {
		t.Fatalf("no cdb compiled: %v", err)
	}
}

func TestNoRoutes(t *testing.T) {
	h := newHome(t, "")
	// A variable inherited from a caller must not survive: no route, no relay.
	h.run("example.test", "QMAILREMOTE_RELAY=stale.test", "QMAILREMOTE_PORT=1").expectExec(t, "", false, "25")
	h2 := newHome(t, ".other.test:r.test\n")
	h2.run("example.test", "QMAILREMOTE_RELAY=stale.test").expectExec(t, "", false, "25")
}

func TestSyntaxErrorIsZ(t *testing.T) {
	h := newHome(t, "a.test:r.test\nb.test:r.test:99999\n")
	r := h.run("a.test")
	want := "ZUnable to read control files: control/smtproutes line 2: bad port \"99999\". (#4.3.0)\n\x00"
	if r.code != 0 || r.stdout != want || r.stderr != "" {
		t.Fatalf("exit %d stdout %q stderr %q, want exit 0 and %q", r.code, r.stdout, r.stderr, want)
	}
}

func TestSystemErrorIsZ(t *testing.T) {
	h := newHome(t, "")
	os.Mkdir(filepath.Join(h.home, "control", "smtproutes"), 0o755)
	r := h.run("a.test")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "ZUnable to read control files: control/smtproutes") || !strings.HasSuffix(r.stdout, "\x00") {
		t.Fatalf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
}

// Run by hand without QMAILREMOTE_QMAILRUN, the stage uses the home's
// run/ (as qmail-remote does when no run directory is configured), and
// does not ask for the variable; -h and --help are the usage line
// whatever the environment.
func TestRunFollowsHome(t *testing.T) {
	h := newHome(t, sample)
	r := runEnv(t, []string{"QMAILREMOTE_QMAILHOME=" + h.home, "QMAILREMOTE_HOST=inside.af.mil"}, bin, "/usr/bin/env")
	r.expectExec(t, "firewall.af.mil", true, "26")
	if _, err := os.Stat(filepath.Join(h.home, "run", "qmail-remote", "smtproutes.cdb")); err != nil {
		t.Fatalf("no cdb compiled in the home's run/: %v", err)
	}
	for _, arg := range []string{"-h", "--help"} {
		r := runEnv(t, nil, bin, arg)
		if r.code != 100 || r.stdout != "" || r.stderr != "usage: qmail-remote-routes prog...\n" {
			t.Errorf("%s: exit %d stdout %q stderr %q", arg, r.code, r.stdout, r.stderr)
		}
	}
}

// The run directory path is a regular file: no cdb, still routed.
func TestRunDirUnusable(t *testing.T) {
	h := newHome(t, sample)
	os.WriteFile(h.runDir, nil, 0o644)
	h.run("inside.af.mil").expectExec(t, "firewall.af.mil", true, "26")
}

func TestBadUsageAndEnv(t *testing.T) {
	h := newHome(t, sample)
	r := runEnv(t, nil, bin)
	if r.code != 100 || !strings.Contains(r.stderr, "usage: qmail-remote-routes prog...") {
		t.Errorf("no prog: exit %d stderr %q", r.code, r.stderr)
	}
	cases := []struct {
		env  []string
		want string
	}{
		{[]string{"QMAILREMOTE_QMAILHOME=", "QMAILREMOTE_QMAILRUN=" + h.runDir, "QMAILREMOTE_HOST=a.test"}, "QMAILREMOTE_QMAILHOME"},
		{[]string{"QMAILREMOTE_QMAILHOME=qmail", "QMAILREMOTE_QMAILRUN=" + h.runDir, "QMAILREMOTE_HOST=a.test"}, "QMAILREMOTE_QMAILHOME"},
		{[]string{"QMAILREMOTE_QMAILHOME=" + h.home, "QMAILREMOTE_QMAILRUN=run", "QMAILREMOTE_HOST=a.test"}, "QMAILREMOTE_QMAILRUN"},
		{[]string{"QMAILREMOTE_QMAILHOME=" + h.home, "QMAILREMOTE_QMAILRUN=", "QMAILREMOTE_HOST=a.test"}, "QMAILREMOTE_QMAILRUN"},
		{[]string{"QMAILREMOTE_QMAILHOME=" + h.home, "QMAILREMOTE_QMAILRUN=" + h.runDir}, "QMAILREMOTE_HOST"},
		{[]string{"QMAILREMOTE_QMAILHOME=" + h.home, "QMAILREMOTE_QMAILRUN=" + h.runDir, "QMAILREMOTE_HOST="}, "QMAILREMOTE_HOST"},
	}
	for _, c := range cases {
		r := runEnv(t, c.env, bin, "/usr/bin/env")
		if r.code != 100 || !strings.Contains(r.stderr, "qmail-remote-routes: fatal: "+c.want) || r.stdout != "" {
			t.Errorf("%q: exit %d stdout %q stderr %q", c.env, r.code, r.stdout, r.stderr)
		}
	}
	r = runEnv(t, []string{"QMAILREMOTE_QMAILHOME=" + h.home, "QMAILREMOTE_QMAILRUN=" + h.runDir, "QMAILREMOTE_HOST=a.test"}, bin, "/nonexistent/prog")
	if r.code != 111 || !strings.Contains(r.stderr, "/nonexistent/prog") {
		t.Errorf("exec failure: exit %d stderr %q", r.code, r.stderr)
	}
}

// Several processes on a stale cdb: all routed right, one compile. The
// compiles are counted as renames onto smtproutes.cdb, with inotify. The
// kernel merges identical consecutive events, so creations are watched
// too: each compile creates the temporary file, then renames it.
func TestConcurrentProcessesCompileOnce(t *testing.T) {
	// A big table, so that the compile takes long enough for the
	// processes to pile up on the lock.
	var text bytes.Buffer
	for i := 0; i < 100000; i++ {
		fmt.Fprintf(&text, "h%d.test:r%d.test:%d\n", i, i, 1000+i%60000)
	}
	h := newHome(t, text.String())
	dir := filepath.Join(h.runDir, "qmail-remote")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		t.Skipf("no inotify: %v", err)
	}
	defer unix.Close(fd)
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE|unix.IN_MOVED_TO); err != nil {
		t.Skipf("no inotify: %v", err)
	}

	// Wait out the window in which a fresh compile is not trusted (the
	// text changed less than 2 s before it): inside it, a slow run could
	// legitimately compile twice.
	time.Sleep(2100 * time.Millisecond)

	const n = 12
	var wg sync.WaitGroup
	results := make([]result, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			results[i] = h.run(fmt.Sprintf("h%d.test", i*199))
		}(i)
	}
	wg.Wait()
	for i, r := range results {
		r.expectExec(t, fmt.Sprintf("r%d.test", i*199), true, fmt.Sprint(1000+i*199))
	}

	renames := 0
	buf := make([]byte, 64<<10)
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		m, err := unix.Read(fd, buf)
		if err == unix.EAGAIN {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for off := 0; off+unix.SizeofInotifyEvent <= m; {
			nameLen := int(binary.NativeEndian.Uint32(buf[off+12:]))
			name := string(bytes.TrimRight(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+nameLen], "\x00"))
			if mask := binary.NativeEndian.Uint32(buf[off+4:]); mask&unix.IN_MOVED_TO != 0 && name == "smtproutes.cdb" {
				renames++
			}
			off += unix.SizeofInotifyEvent + nameLen
		}
	}
	if renames != 1 {
		t.Fatalf("%d compiles by %d processes, want 1", renames, n)
	}
}
