package qmailnewsmtproutes

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"qmail-remote-go/src/testkit/buildtest"
)

var bin string

func TestMain(m *testing.M) { buildtest.Program(m, &bin, "qmail-newsmtproutes") }

type result struct {
	stdout, stderr string
	code           int
}

func run(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
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

func setup(t *testing.T, text string) (home, cdbPath string) {
	t.Helper()
	home = filepath.Join(t.TempDir(), "qmail")
	if err := os.MkdirAll(filepath.Join(home, "control"), 0o755); err != nil {
		t.Fatal(err)
	}
	if text != "" {
		if err := os.WriteFile(filepath.Join(home, "control", "smtproutes"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return home, filepath.Join(home, "run", "qmail-remote", "smtproutes.cdb")
}

func TestCompile(t *testing.T) {
	home, cdbPath := setup(t, "a.test:r.test:26\n:default.test\n")
	// QMAILREMOTE_QMAILRUN unset: the run directory follows the home.
	r := run(t, []string{"QMAILREMOTE_QMAILHOME=" + home})
	if r.code != 0 || r.stdout != "" || r.stderr != "" {
		t.Fatalf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	fi, err := os.Stat(cdbPath)
	if err != nil {
		t.Fatalf("no cdb: %v", err)
	}
	// Forced: a second run replaces the fresh cdb.
	if r := run(t, []string{"QMAILREMOTE_QMAILHOME=" + home}); r.code != 0 {
		t.Fatalf("second run: %+v", r)
	}
	fi2, err := os.Stat(cdbPath)
	if err != nil || os.SameFile(fi, fi2) {
		t.Fatalf("cdb not recompiled: %v", err)
	}
	// An explicit run directory.
	other := filepath.Join(t.TempDir(), "run")
	if r := run(t, []string{"QMAILREMOTE_QMAILHOME=" + home, "QMAILREMOTE_QMAILRUN=" + other}); r.code != 0 {
		t.Fatalf("%+v", r)
	}
	if _, err := os.Stat(filepath.Join(other, "qmail-remote", "smtproutes.cdb")); err != nil {
		t.Fatal(err)
	}
}

func TestSyntaxError(t *testing.T) {
	home, _ := setup(t, "a.test:r.test\n\n# c\nbadline\n")
	r := run(t, []string{"QMAILREMOTE_QMAILHOME=" + home})
	want := "qmail-newsmtproutes: fatal: control/smtproutes line 4: missing ':' in \"badline\"\n"
	if r.code != 100 || r.stderr != want {
		t.Fatalf("exit %d stderr %q, want 100 and %q", r.code, r.stderr, want)
	}
}

func TestRemovedText(t *testing.T) {
	home, cdbPath := setup(t, "a.test:r.test\n")
	if r := run(t, []string{"QMAILREMOTE_QMAILHOME=" + home}); r.code != 0 {
		t.Fatalf("%+v", r)
	}
	os.Remove(filepath.Join(home, "control", "smtproutes"))
	if r := run(t, []string{"QMAILREMOTE_QMAILHOME=" + home}); r.code != 0 || r.stderr != "" {
		t.Fatalf("%+v", r)
	}
	if _, err := os.Stat(cdbPath); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("cdb of a removed text still there: %v", err)
	}
}

func TestSystemError(t *testing.T) {
	home, _ := setup(t, "a.test:r.test\n")
	os.WriteFile(filepath.Join(home, "run"), nil, 0o644) // not a directory
	r := run(t, []string{"QMAILREMOTE_QMAILHOME=" + home})
	if r.code != 111 || !strings.HasPrefix(r.stderr, "qmail-newsmtproutes: fatal: "+filepath.Join(home, "run", "qmail-remote")+": mkdir") {
		t.Fatalf("exit %d stderr %q", r.code, r.stderr)
	}
	home2, _ := setup(t, "")
	os.Mkdir(filepath.Join(home2, "control", "smtproutes"), 0o755)
	r = run(t, []string{"QMAILREMOTE_QMAILHOME=" + home2})
	if r.code != 111 || !strings.HasPrefix(r.stderr, "qmail-newsmtproutes: fatal: control/smtproutes") {
		t.Fatalf("exit %d stderr %q", r.code, r.stderr)
	}
}

func TestUsage(t *testing.T) {
	r := run(t, nil, "extra")
	if r.code != 100 || r.stderr != "usage: qmail-newsmtproutes\n" {
		t.Fatalf("exit %d stderr %q", r.code, r.stderr)
	}
	r = run(t, []string{"QMAILREMOTE_QMAILHOME=relative"})
	if r.code != 100 || !strings.Contains(r.stderr, "QMAILREMOTE_QMAILHOME") {
		t.Fatalf("exit %d stderr %q", r.code, r.stderr)
	}
}
