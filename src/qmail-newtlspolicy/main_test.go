package qmailnewtlspolicy

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

func TestMain(m *testing.M) { buildtest.Program(m, &bin, prog) }

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
		if err := os.WriteFile(filepath.Join(home, "control", "tlspolicy"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return home, filepath.Join(home, "run", "qmail-remote", "tlspolicy.cdb")
}

func TestCompile(t *testing.T) {
	home, cdbPath := setup(t, "bank.example:verify match=mx.bank.example\n:dane\n")
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
	if _, err := os.Stat(filepath.Join(other, "qmail-remote", "tlspolicy.cdb")); err != nil {
		t.Fatal(err)
	}
}

func TestSyntaxError(t *testing.T) {
	home, cdbPath := setup(t, "a.test:may\n\n# c\nbank.example verify\n")
	r := run(t, []string{"QMAILREMOTE_QMAILHOME=" + home})
	want := "qmail-newtlspolicy: fatal: control/tlspolicy line 4: missing ':' in \"bank.example verify\"\n"
	if r.code != 100 || r.stderr != want {
		t.Fatalf("exit %d stderr %q, want 100 and %q", r.code, r.stderr, want)
	}
	if _, err := os.Stat(cdbPath); err != nil {
		t.Fatalf("the error was not compiled: %v", err)
	}
}

// Every line that poisons its domain is reported, each on its own line.
func TestKeyErrors(t *testing.T) {
	home, _ := setup(t, "a.test:may\nbank.example:verfy\nok.test:encrypt\npartner.test:may pin=00\n")
	r := run(t, []string{"QMAILREMOTE_QMAILHOME=" + home})
	want := "qmail-newtlspolicy: fatal: control/tlspolicy line 2: unknown level \"verfy\" (none, may, encrypt, verify, dane, dane-only)\n" +
		"qmail-newtlspolicy: fatal: control/tlspolicy line 4: pin= is allowed only with encrypt and verify, not with may\n"
	if r.code != 100 || r.stderr != want {
		t.Fatalf("exit %d stderr %q, want 100 and %q", r.code, r.stderr, want)
	}
}

func TestRemovedText(t *testing.T) {
	home, cdbPath := setup(t, "a.test:may\n")
	if r := run(t, []string{"QMAILREMOTE_QMAILHOME=" + home}); r.code != 0 {
		t.Fatalf("%+v", r)
	}
	os.Remove(filepath.Join(home, "control", "tlspolicy"))
	if r := run(t, []string{"QMAILREMOTE_QMAILHOME=" + home}); r.code != 0 || r.stderr != "" {
		t.Fatalf("%+v", r)
	}
	if _, err := os.Stat(cdbPath); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("cdb of a removed text still there: %v", err)
	}
}

func TestSystemError(t *testing.T) {
	home, _ := setup(t, "a.test:may\n")
	os.WriteFile(filepath.Join(home, "run"), nil, 0o644) // not a directory
	r := run(t, []string{"QMAILREMOTE_QMAILHOME=" + home})
	if r.code != 111 || !strings.HasPrefix(r.stderr, "qmail-newtlspolicy: fatal: "+filepath.Join(home, "run", "qmail-remote")+": mkdir") {
		t.Fatalf("exit %d stderr %q", r.code, r.stderr)
	}
	home2, _ := setup(t, "")
	os.Mkdir(filepath.Join(home2, "control", "tlspolicy"), 0o755)
	r = run(t, []string{"QMAILREMOTE_QMAILHOME=" + home2})
	if r.code != 111 || !strings.HasPrefix(r.stderr, "qmail-newtlspolicy: fatal: control/tlspolicy") {
		t.Fatalf("exit %d stderr %q", r.code, r.stderr)
	}
}

func TestUsage(t *testing.T) {
	r := run(t, nil, "extra")
	if r.code != 100 || r.stderr != "usage: qmail-newtlspolicy\n" {
		t.Fatalf("exit %d stderr %q", r.code, r.stderr)
	}
	r = run(t, []string{"QMAILREMOTE_QMAILHOME=relative"})
	if r.code != 100 || !strings.Contains(r.stderr, "QMAILREMOTE_QMAILHOME") {
		t.Fatalf("exit %d stderr %q", r.code, r.stderr)
	}
}
