package main

// What every program of the binary does with --version, -h, --help and
// a wrong argument list (doc/chain.md, "Usage and version"): checked
// before anything is read from the environment or the file system, so
// run here with an empty environment and with one whose directories are
// invalid (a program that read them first would say so instead).

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"qmail-remote-go/src/internal/paths"
	"qmail-remote-go/src/testkit/buildtest"
)

var binDir string

func TestMain(m *testing.M) { buildtest.Main(m, &binDir, nil) }

type result struct {
	stdout, stderr string
	code           int
}

func run(t *testing.T, env []string, name string, args ...string) result {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, name), args...)
	cmd.Env = env
	cmd.Dir = t.TempDir()
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

// envs are the environments each case runs in.
var envs = map[string][]string{
	"empty": {},
	"invalid": {"QMAILREMOTE_QMAILHOME=relative", "QMAILREMOTE_QMAILRUN=relative",
		"QMAILREMOTE_HOST=", "QMAILREMOTE_RCPTS=x", "QMAILREMOTE_PORT=x"},
}

func TestVersion(t *testing.T) {
	for _, name := range buildtest.Programs {
		for ename, env := range envs {
			r := run(t, env, name, "--version")
			if want := name + " " + paths.Version + "\n"; r != (result{want, "", 0}) {
				t.Errorf("%s --version (%s environment): exit %d stdout %q stderr %q, want %q and exit 0",
					name, ename, r.code, r.stdout, r.stderr, want)
			}
			// Only as the one argument.
			r = run(t, env, name, "--version", "--version")
			if strings.Contains(r.stdout, paths.Version) {
				t.Errorf("%s --version --version (%s environment): stdout %q", name, ename, r.stdout)
			}
		}
	}
}

// badUsage lists, for each program but qmail-remote, argument lists
// (after argv[0]) that are wrong by their number or form.
var badUsage = map[string][][]string{
	"qmail-newsmtproutes":  {{"x"}, {"x", "y"}},
	"qmail-newtlspolicy":   {{"x"}},
	"qmail-remote-routes":  {{}},
	"qmail-remote-resolve": {{}},
	"qmail-remote-connect": {{}},
	"qmail-remote-io":      {{"x"}},
	"qmail-remote-tlsio":   {{}},
	"qmail-remote-probe":   {{}, {"a.test", "b.test"}, {"-x", "a.test"}},
	"qmail-remote-mtasts":  {{"a/b"}, {"-x"}},
	"qmail-remote-tlsrpt":  {{"x"}, {"-x"}},
}

func TestUsage(t *testing.T) {
	for _, name := range buildtest.Programs {
		if name == "qmail-remote" {
			continue
		}
		bad, ok := badUsage[name]
		if !ok {
			t.Errorf("%s: no bad usage listed", name)
		}
		cases := append([][]string{{"--help"}, {"-h"}}, bad...)
		for _, args := range cases {
			for ename, env := range envs {
				r := run(t, env, name, args...)
				if r.code != 100 || r.stdout != "" || !strings.Contains(r.stderr, "usage: "+name) {
					t.Errorf("%s %q (%s environment): exit %d stdout %q stderr %q, want a usage line and exit 100",
						name, args, ename, r.code, r.stdout, r.stderr)
				}
			}
		}
	}
}

// TestUsageStdin: the stages that need the message as a regular file on
// fd 0 say so.
func TestUsageStdin(t *testing.T) {
	for _, name := range []string{"qmail-remote", "qmail-remote-io"} {
		r := run(t, nil, name, "--help")
		if r.code != 100 || !strings.Contains(r.stderr, "< message (") || !strings.Contains(r.stderr, "regular file") {
			t.Errorf("%s --help: exit %d stderr %q", name, r.code, r.stderr)
		}
	}
}

// TestQmailRemote: -h and --help alone print the usage line; every other
// argument list is qmail-rspawn's contract, unchanged: one message
// report on stdout, exit 0, nothing on stderr.
func TestQmailRemote(t *testing.T) {
	for _, h := range []string{"--help", "-h"} {
		r := run(t, nil, "qmail-remote", h)
		if r.code != 100 || r.stdout != "" || !strings.HasPrefix(r.stderr, "usage: qmail-remote host sender recip") {
			t.Errorf("qmail-remote %s: exit %d stdout %q stderr %q", h, r.code, r.stdout, r.stderr)
		}
	}
	// A qmail home without control files: a Z before any connection.
	home := t.TempDir()
	env := []string{"QMAILREMOTE_QMAILHOME=" + home}
	cases := []struct {
		args []string
		want string
	}{
		{nil, "DI (qmail-remote) was invoked improperly. (#5.3.5)\n\x00"},
		{[]string{"x"}, "DI (qmail-remote) was invoked improperly. (#5.3.5)\n\x00"},
		{[]string{"--help", "x"}, "DI (qmail-remote) was invoked improperly. (#5.3.5)\n\x00"},
		{[]string{"--version", "x"}, "DI (qmail-remote) was invoked improperly. (#5.3.5)\n\x00"},
		{[]string{"--help", "sender@a.test", "rcpt@b.test"}, "ZUnable to read control files"},
		{[]string{"-h", "sender@a.test", "rcpt@b.test"}, "ZUnable to read control files"},
		{[]string{"--version", "sender@a.test", "rcpt@b.test"}, "ZUnable to read control files"},
		{[]string{"a.test", "--help", "rcpt@b.test"}, "ZUnable to read control files"},
		{[]string{"a.test", "sender@a.test", "--version"}, "ZUnable to read control files"},
	}
	for _, c := range cases {
		r := run(t, env, "qmail-remote", c.args...)
		if r.code != 0 || r.stderr != "" || !strings.HasPrefix(r.stdout, c.want) ||
			!strings.HasSuffix(r.stdout, "\x00") || strings.Count(r.stdout, "\x00") != 1 {
			t.Errorf("qmail-remote %q: exit %d stdout %q stderr %q, want one report %q..., exit 0, empty stderr",
				c.args, r.code, r.stdout, r.stderr, c.want)
		}
	}
}
