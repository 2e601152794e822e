package guard

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"qmail-remote-go/src/internal/report"
)

// stages writes a shell script standing in for the rest of the chain.
func stages(t *testing.T, script string) []string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "stage")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return []string{p}
}

func message(t *testing.T) *os.File {
	t.Helper()
	p := filepath.Join(t.TempDir(), "msg")
	if err := os.WriteFile(p, []byte("Subject: x\n\nbody\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func run(t *testing.T, argv []string, nrcpt int) []byte {
	t.Helper()
	var out bytes.Buffer
	done := make(chan struct{})
	go func() {
		Run(argv, []string{"PATH=/usr/bin:/bin"}, message(t), nrcpt).Write(&out)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("guard did not return")
	}
	return out.Bytes()
}

// wellFormed checks what qmail-rspawn would check and returns the message
// report.
func wellFormed(t *testing.T, out []byte, nrcpt int) report.Report {
	t.Helper()
	res, err := report.Parse(out, nrcpt)
	if err != nil {
		t.Fatalf("output %q is not well formed: %v", out, err)
	}
	return res.Message
}

func TestGuard(t *testing.T) {
	tests := []struct {
		name   string
		script string
		nrcpt  int
		letter byte
		want   string // substring of the message report text, or exact output if exact
		exact  bool
	}{
		{"forwarded", `printf 'r\0h192.0.2.1 does not like recipient.\nRemote host said: 550 no\n\0K192.0.2.1 accepted message.\nRemote host said: 250 ok\n\0'`, 2,
			'K', "r\x00h192.0.2.1 does not like recipient.\nRemote host said: 550 no\n\x00K192.0.2.1 accepted message.\nRemote host said: 250 ok\n\x00", true},
		{"exit 2 like a Go panic", `echo 'panic: runtime error: index out of range' >&2; exit 2`, 1,
			'Z', "The delivery chain failed (exit status 2): panic: runtime error: index out of range", false},
		{"killed by a signal", `kill -9 $$`, 1, 'Z', "killed by signal 9 (killed)", false},
		{"no output, exit 0", `exit 0`, 1, 'Z', "The delivery chain failed (exit status 0)", false},
		{"usage error of a stage", `echo 'qmail-remote-io: fatal: QMAILREMOTE_RCPTS is not set' >&2; exit 100`, 1,
			'Z', "(exit status 100): qmail-remote-io: fatal: QMAILREMOTE_RCPTS is not set", false},
		{"garbage", `printf 'hello world\n'`, 1, 'Z', "malformed reports: unterminated report", false},
		{"unknown letter", `printf 'Xfoo\0'`, 1, 'Z', "unknown report letter", false},
		{"recipient reports, no message report", `printf 'r\0r\0'; exit 0`, 2, 'Z', "malformed reports: no message report", false},
		{"recipient reports then crash", `printf 'r\0'; kill -SEGV $$`, 1, 'Z', "no message report (killed by signal 11 (segmentation fault))", false},
		{"two message reports", `printf 'Kone\0Ktwo\0'`, 1, 'Z', "output after the message report", false},
		{"too many recipient reports", `printf 'r\0r\0Kok\0'`, 1, 'Z', "more recipient reports", false},
		{"K then odd exit is still K", `printf 'Kok\0'; exit 3`, 1, 'K', "Kok\x00", true},
		{"flood of output", `yes 'Kxxxxxxxxxxxxxxx' | head -c 3000000`, 1, 'Z', "more than 8192 bytes", false},
		{"flood of stderr", `yes 'noise' | head -c 3000000 >&2; printf 'Dno\0'`, 1, 'D', "Dno\x00", true},
		{"stage not executable", ``, 1, 'Z', "Unable to run the delivery chain", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			argv := stages(t, tc.script)
			if tc.script == "" {
				os.Chmod(argv[0], 0o644)
			}
			out := run(t, argv, tc.nrcpt)
			m := wellFormed(t, out, tc.nrcpt)
			if m.Letter != tc.letter {
				t.Errorf("letter %q, want %q; output %q", m.Letter, tc.letter, out)
			}
			if tc.exact {
				if string(out) != tc.want {
					t.Errorf("output %q, want %q", out, tc.want)
				}
			} else if !strings.Contains(m.Text, tc.want) {
				t.Errorf("text %q does not contain %q", m.Text, tc.want)
			}
		})
	}
}

// A real Go program that panics, as a stage of ours would: exit 2 and a
// goroutine dump on stderr must become one Z.
func TestGuardGoPanic(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program")
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module crash\ngo 1.26\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "main.go"), []byte(`package main
import "os"
func main() { os.Stdout.Write([]byte("r\x00")); var m map[string]int; m["x"] = 1 }
`), 0o644)
	bin := filepath.Join(dir, "crash")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out := run(t, []string{bin}, 1)
	m := wellFormed(t, out, 1)
	if m.Letter != 'Z' || !strings.Contains(m.Text, "exit status 2): panic: assignment to entry in nil map") {
		t.Errorf("got %q", out)
	}
}

func TestEachReportOneWrite(t *testing.T) {
	o := Run(stages(t, `printf 'r\0s192.0.2.1 does not like recipient.\n\0Zlater\0'`), nil, message(t), 2)
	if len(o.Reports) != 3 || string(o.Reports[1]) != "s192.0.2.1 does not like recipient.\n\x00" {
		t.Fatalf("reports %q", o.Reports)
	}
	w := &countWriter{}
	o.Write(w)
	if w.calls != 3 {
		t.Errorf("%d writes for 3 reports", w.calls)
	}
}

type countWriter struct{ calls int }

func (c *countWriter) Write(p []byte) (int, error) { c.calls++; return len(p), nil }

// TestDuplicate: a chain that dies without a report gets "Possible
// duplicate!" exactly when the progress cell (fd 3) says the final dot may
// have gone out: not when it died before any connection or before the dot,
// always after it, and when a program on the connection never said how far
// it got.
func TestDuplicate(t *testing.T) {
	for _, tc := range []struct {
		name, script string
		dup          bool
	}{
		{"before any connection", `kill -9 $$`, false},
		{"killed at the greeting", `printf b 1<>/dev/fd/3; kill -9 $$`, false},
		{"killed after the dot", `printf d 1<>/dev/fd/3; kill -9 $$`, true},
		{"connected, nothing said", `printf c 1<>/dev/fd/3; kill -9 $$`, true},
		{"exit 2 after the dot", `printf d 1<>/dev/fd/3; echo 'panic: boom' >&2; exit 2`, true},
		{"garbage after the dot", `printf d 1<>/dev/fd/3; printf 'junk'`, true},
		{"garbage before it", `printf b 1<>/dev/fd/3; printf 'junk'`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := run(t, stages(t, tc.script), 1)
			m := wellFormed(t, out, 1)
			if m.Letter != 'Z' || strings.Contains(m.Text, "Possible duplicate!") != tc.dup {
				t.Errorf("report %q, want Z with duplicate %v", out, tc.dup)
			}
		})
	}
}

// TestCellPassed: the chain finds the cell on fd 3, named in
// QMAILREMOTE_PROGRESSFD, reading n (no connection yet).
func TestCellPassed(t *testing.T) {
	out := run(t, stages(t, `if [ "$QMAILREMOTE_PROGRESSFD" = 3 ] && [ "$(head -c 1 /dev/fd/3)" = n ]; then printf 'KOK\n\0'; else printf 'Zno cell\n\0'; fi`), 1)
	if m := wellFormed(t, out, 1); m.Letter != 'K' {
		t.Errorf("report %q: the chain did not get the cell", out)
	}
}

// TestCompleteReportSurvivesDeath: a report written in full stays, however
// the chain ends next.
func TestCompleteReportSurvivesDeath(t *testing.T) {
	out := run(t, stages(t, `printf d 1<>/dev/fd/3; printf 'r\0K192.0.2.1 accepted message.\n\0'; kill -9 $$`), 1)
	if m := wellFormed(t, out, 1); m.Letter != 'K' {
		t.Errorf("report %q, want the K", out)
	}
}
