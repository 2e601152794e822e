// Package chaintest runs the real, built programs of the chain the way
// qmail-rspawn runs qmail-remote: fd 0 the message file, fd 1 a pipe, fd 2
// the same pipe, against Go test SMTP and DNS servers on loopback.
package chaintest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"qmail-remote-go/src/internal/report"
	"qmail-remote-go/src/testkit/buildtest"
)

// programs are the names of the multicall binary.
var programs = buildtest.Programs

// bin is where TestMain built the programs.
var bin string

func TestMain(m *testing.M) {
	buildtest.Main(m, &bin, nil)
}

// home is a throwaway qmail home.
type home struct {
	t    *testing.T
	dir  string
	env  []string // extra environment for qmail-remote
	libx string   // libexec dir (defaults to bin)
}

func newHome(t *testing.T) *home {
	t.Helper()
	h := &home{t: t, dir: t.TempDir(), libx: bin}
	for _, d := range []string{"control", "queue/lock", "run/qmail-remote"} {
		if err := os.MkdirAll(filepath.Join(h.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	h.control("me", "client.example.test\n")
	// Loopback is one of this host's interfaces; the tests deliver to it
	// by MX, so take it out of the loop rule the way an admin would.
	h.control("notipme", "127.0.0.1\n::1\n")
	// Generous: they bound every healthy connect, TLS handshake and reply,
	// on a machine that may be busy with other work. A test of a stall or
	// a timeout sets its own value (TestMisbehavingServers, the fault
	// matrix), never relies on these.
	h.control("timeoutconnect", "30\n")
	h.control("timeoutremote", "30\n")
	return h
}

func (h *home) control(name, content string) {
	h.t.Helper()
	if err := os.WriteFile(filepath.Join(h.dir, "control", name), []byte(content), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

func (h *home) removeControl(name string) {
	os.Remove(filepath.Join(h.dir, "control", name))
}

// result is what qmail-rspawn would have seen.
type result struct {
	raw     []byte
	rcpts   []report.Report
	message report.Report
	elapsed time.Duration
}

func (r result) String() string { return fmt.Sprintf("%q", r.raw) }

// run runs qmail-remote with args, fd 0 the message file, and fd 1 = fd 2
// one pipe, as qmail-rspawn does. It fails the test unless the output is
// exactly one well-formed set of reports and the exit status is 0.
func (h *home) run(msg string, args ...string) result {
	h.t.Helper()
	p := filepath.Join(h.t.TempDir(), "msg")
	if err := os.WriteFile(p, []byte(msg), 0o644); err != nil {
		h.t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		h.t.Fatal(err)
	}
	defer f.Close()
	// Start somewhere in the middle: qmail-rspawn doesn't promise offset 0.
	f.Seek(3, io.SeekStart)
	return h.runFile(f, args...)
}

func (h *home) runFile(stdin *os.File, args ...string) result {
	h.t.Helper()
	cmd := exec.Command(filepath.Join(bin, "qmail-remote"), args...)
	cmd.Stdin = stdin
	cmd.Env = append([]string{
		"PATH=/usr/bin:/bin",
		"QMAILREMOTE_QMAILHOME=" + h.dir,
		"QMAILREMOTE_LIBEXECDIR=" + h.libx,
	}, h.env...)
	start := time.Now()
	out, err := asRspawn(cmd, 60*time.Second)
	if errors.Is(err, errBound) {
		h.t.Fatal(err)
	}
	res := result{raw: out, elapsed: time.Since(start)}
	if err != nil {
		h.t.Fatalf("qmail-remote exited with %v (output %q): qmail-rspawn would bounce or defer wrongly", err, out)
	}
	parsed, perr := report.Parse(out, len(args)-2)
	if perr != nil {
		h.t.Fatalf("malformed output %q: %v", out, perr)
	}
	res.rcpts, res.message = parsed.Rcpts, parsed.Message
	return res
}

// errBound: the program ran past the test's backstop.
var errBound = errors.New("qmail-remote did not finish in time")

// asRspawn runs cmd the way qmail-rspawn runs qmail-remote, with fd 1 and
// fd 2 one pipe, and returns what it wrote and how it ended; after bound
// it is killed (errBound).
func asRspawn(cmd *exec.Cmd, bound time.Duration) ([]byte, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	cmd.Stdout, cmd.Stderr = w, w
	err = cmd.Start()
	w.Close()
	if err != nil {
		return nil, err
	}
	outc := make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(r); outc <- b }()
	select {
	case out := <-outc:
		return out, cmd.Wait()
	case <-time.After(bound):
		cmd.Process.Kill()
		out := <-outc
		cmd.Wait()
		return out, fmt.Errorf("%w (%v)", errBound, bound)
	}
}

// expect checks the message report's letter and that its text contains
// every one of want.
func (r result) expect(t *testing.T, letter byte, want ...string) {
	t.Helper()
	if r.message.Letter != letter {
		t.Errorf("message report %q, want letter %c", r.raw, letter)
		return
	}
	for _, w := range want {
		if !strings.Contains(r.message.Text, w) {
			t.Errorf("message report %q does not contain %q", r.message.Text, w)
		}
	}
}

// rcptLetters is the recipient reports' letters, e.g. "rhs".
func (r result) rcptLetters() string {
	var b bytes.Buffer
	for _, x := range r.rcpts {
		b.WriteByte(x.Letter)
	}
	return b.String()
}

// wire is what a correct client sends for msg (CRLF, dot-stuffed), without
// the final dot line: a reference implementation independent of the real
// one, simple and slow on purpose.
func wire(msg string) string {
	var b strings.Builder
	line := []byte{}
	flush := func() {
		if len(line) > 0 && line[0] == '.' {
			b.WriteByte('.')
		}
		b.Write(line)
		b.WriteString("\r\n")
		line = line[:0]
	}
	for i := 0; i < len(msg); i++ {
		switch c := msg[i]; c {
		case '\n':
			flush()
		case '\r':
			if i+1 < len(msg) && msg[i+1] == '\n' {
				i++
			}
			flush()
		default:
			line = append(line, c)
		}
	}
	return b.String()
}
