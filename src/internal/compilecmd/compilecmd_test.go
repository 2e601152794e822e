package compilecmd

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"qmail-remote-go/src/testkit/buildtest"
	"qmail-remote-go/src/testkit/ctlcdbtest"
)

// The programs' tests run the real executables (buildtest); this file
// tests what Main does for both, each program's own error texts aside
// (in their packages).
var binDir string

func TestMain(m *testing.M) { buildtest.Main(m, &binDir, nil) }

// program is one of the programs of Main, with its control file and a
// text of it with one syntax error.
type program struct {
	name string
	file string // in control/; its cdb and lock in run/qmail-remote are file.cdb and file.lock
	good string // a text without errors
	bad  string // a text with one syntax error, and the error as printed
	want string
}

var programs = []program{
	{"qmail-newsmtproutes", "smtproutes", "a.test:r.test:26\n:default.test\n",
		"a.test:r.test\n\n# c\nbadline\n", `control/smtproutes line 4: missing ':' in "badline"`},
	{"qmail-newtlspolicy", "tlspolicy", "bank.example:verify match=mx.bank.example\n:dane\n",
		"a.test:may\n\n# c\nbank.example verify\n", `control/tlspolicy line 4: missing ':' in "bank.example verify"`},
}

// each runs test for every program.
func each(t *testing.T, test func(t *testing.T, p program)) {
	for _, p := range programs {
		t.Run(p.name, func(t *testing.T) { test(t, p) })
	}
}

func (p program) run(t *testing.T, env []string, args ...string) ctlcdbtest.Result {
	t.Helper()
	return ctlcdbtest.Run(t, env, filepath.Join(binDir, p.name), args...)
}

// runIn runs p with QMAILREMOTE_QMAILHOME=home only: the run directory
// follows the home.
func (p program) runIn(t *testing.T, home string) ctlcdbtest.Result {
	t.Helper()
	return p.run(t, []string{"QMAILREMOTE_QMAILHOME=" + home})
}

func (p program) text(home string) string { return filepath.Join(home, "control", p.file) }
func (p program) cdb(run string) string   { return filepath.Join(run, "qmail-remote", p.file+".cdb") }
func (p program) lock(run string) string  { return filepath.Join(run, "qmail-remote", p.file+".lock") }

func TestCompile(t *testing.T) {
	each(t, func(t *testing.T, p program) {
		home, run := ctlcdbtest.Home(t, p.file, p.good)
		// QMAILREMOTE_QMAILRUN unset: the run directory follows the home.
		r := p.runIn(t, home)
		if r.Code != 0 || r.Stdout != "" || r.Stderr != "" {
			t.Fatalf("exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
		}
		fi, err := os.Stat(p.cdb(run))
		if err != nil {
			t.Fatalf("no cdb: %v", err)
		}
		// Forced: a second run replaces the fresh cdb.
		if r := p.runIn(t, home); r.Code != 0 {
			t.Fatalf("second run: %+v", r)
		}
		fi2, err := os.Stat(p.cdb(run))
		if err != nil || os.SameFile(fi, fi2) {
			t.Fatalf("cdb not recompiled: %v", err)
		}
		// An explicit run directory.
		other := filepath.Join(t.TempDir(), "run")
		if r := p.run(t, []string{"QMAILREMOTE_QMAILHOME=" + home, "QMAILREMOTE_QMAILRUN=" + other}); r.Code != 0 {
			t.Fatalf("%+v", r)
		}
		if _, err := os.Stat(p.cdb(other)); err != nil {
			t.Fatal(err)
		}
	})
}

// A syntax error: exit 100, the error on stderr, and the error compiled
// all the same (deliveries report it without parsing the text again).
func TestSyntaxError(t *testing.T) {
	each(t, func(t *testing.T, p program) {
		home, run := ctlcdbtest.Home(t, p.file, p.bad)
		r := p.runIn(t, home)
		want := p.name + ": fatal: " + p.want + "\n"
		if r.Code != 100 || r.Stdout != "" || r.Stderr != want {
			t.Fatalf("exit %d stdout %q stderr %q, want 100 and %q", r.Code, r.Stdout, r.Stderr, want)
		}
		if _, err := os.Stat(p.cdb(run)); err != nil {
			t.Fatalf("the error was not compiled: %v", err)
		}
	})
}

func TestRemovedText(t *testing.T) {
	each(t, func(t *testing.T, p program) {
		home, run := ctlcdbtest.Home(t, p.file, p.good)
		if r := p.runIn(t, home); r.Code != 0 {
			t.Fatalf("%+v", r)
		}
		os.Remove(p.text(home))
		if r := p.runIn(t, home); r.Code != 0 || r.Stderr != "" {
			t.Fatalf("%+v", r)
		}
		if _, err := os.Stat(p.cdb(run)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("cdb of a removed text still there: %v", err)
		}
	})
}

func TestSystemError(t *testing.T) {
	each(t, func(t *testing.T, p program) {
		home, run := ctlcdbtest.Home(t, p.file, p.good)
		os.WriteFile(run, nil, 0o644) // not a directory
		r := p.runIn(t, home)
		if r.Code != 111 || !strings.HasPrefix(r.Stderr, p.name+": fatal: "+filepath.Join(run, "qmail-remote")+": mkdir") {
			t.Fatalf("exit %d stderr %q", r.Code, r.Stderr)
		}
		home2, _ := ctlcdbtest.Home(t, p.file, "")
		os.Mkdir(p.text(home2), 0o755)
		r = p.runIn(t, home2)
		if r.Code != 111 || !strings.HasPrefix(r.Stderr, p.name+": fatal: control/"+p.file+": ") {
			t.Fatalf("exit %d stderr %q", r.Code, r.Stderr)
		}
	})
}

// A qmail home that does not exist, or has no control/ directory (a
// typo in QMAILREMOTE_QMAILHOME): exit 111 naming it, and nothing
// created, neither under the home nor in the run directory.
func TestNoHome(t *testing.T) {
	each(t, func(t *testing.T, p program) {
		root := t.TempDir()
		missing := filepath.Join(root, "missing")
		empty := filepath.Join(root, "empty")
		fileControl := filepath.Join(root, "file")
		for _, d := range []string{empty, fileControl} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(fileControl, "control"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		run := filepath.Join(root, "run")
		for _, home := range []string{missing, empty, fileControl} {
			for _, env := range [][]string{
				{"QMAILREMOTE_QMAILHOME=" + home},
				{"QMAILREMOTE_QMAILHOME=" + home, "QMAILREMOTE_QMAILRUN=" + run},
			} {
				r := p.run(t, env)
				want := p.name + ": fatal: " + home + " is not a qmail home: " + filepath.Join(home, "control") + ": "
				if r.Code != 111 || r.Stdout != "" || !strings.HasPrefix(r.Stderr, want) {
					t.Errorf("%q: exit %d stdout %q stderr %q, want 111 and %q...", env, r.Code, r.Stdout, r.Stderr, want)
				}
			}
		}
		// Only what the test made.
		var got []string
		filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if path != root {
				rel, _ := filepath.Rel(root, path)
				got = append(got, rel)
			}
			return nil
		})
		if want := []string{"empty", "file", "file/control"}; strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("the tree holds %q, want %q", got, want)
		}
	})
}

func TestUsage(t *testing.T) {
	each(t, func(t *testing.T, p program) {
		r := p.run(t, nil, "extra")
		if r.Code != 100 || r.Stderr != "usage: "+p.name+"\n" {
			t.Fatalf("exit %d stderr %q", r.Code, r.Stderr)
		}
		for _, v := range []string{"QMAILREMOTE_QMAILHOME", "QMAILREMOTE_QMAILRUN"} {
			r = p.run(t, []string{v + "=relative"})
			if r.Code != 100 || !strings.HasPrefix(r.Stderr, p.name+": fatal: ") || !strings.Contains(r.Stderr, v) {
				t.Fatalf("%s=relative: exit %d stderr %q", v, r.Code, r.Stderr)
			}
		}
	})
}

// A FIFO in place of the text, the lock or the cdb must not hang the
// admin's terminal (ctlcdbtest.Run fails a hang): the text and the lock
// are errors naming the file (exit 111), a cdb is replaced as a damaged
// one is.
func TestNotRegular(t *testing.T) {
	each(t, func(t *testing.T, p program) {
		for _, tc := range []struct {
			name string
			path func(home, run string) string
			code int
			want func(home, run string) string // stderr after "prog: fatal: "
		}{
			{"text", func(h, _ string) string { return p.text(h) }, 111,
				func(string, string) string { return "control/" + p.file + ": not a regular file (a FIFO)\n" }},
			{"lock", func(_, r string) string { return p.lock(r) }, 111,
				func(_, r string) string { return p.lock(r) + ": not a regular file (a FIFO)\n" }},
			{"cdb", func(_, r string) string { return p.cdb(r) }, 0, nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				home, run := ctlcdbtest.Home(t, p.file, p.good)
				path := tc.path(home, run)
				os.MkdirAll(filepath.Dir(path), 0o755)
				os.Remove(path)
				if err := syscall.Mkfifo(path, 0o644); err != nil {
					t.Fatal(err)
				}
				r := p.runIn(t, home)
				want := ""
				if tc.want != nil {
					want = p.name + ": fatal: " + tc.want(home, run)
				}
				if r.Code != tc.code || r.Stderr != want {
					t.Fatalf("exit %d stderr %q, want %d %q", r.Code, r.Stderr, tc.code, want)
				}
				if st, err := os.Stat(p.cdb(run)); tc.code == 0 && (err != nil || !st.Mode().IsRegular()) {
					t.Errorf("the FIFO was not replaced by a cdb: %v", err)
				}
			})
		}
	})
}
