package qmailnewsmtproutes

import (
	"testing"

	"qmail-remote-go/src/testkit/buildtest"
	"qmail-remote-go/src/testkit/ctlcdbtest"
)

// What the program shares with qmail-newtlspolicy (usage, directories,
// exit codes, files that are not regular) is tested in package
// compilecmd; here, what is its own.

var bin string

func TestMain(m *testing.M) { buildtest.Program(m, &bin, "qmail-newsmtproutes") }

// The first malformed line stops control/smtproutes: it alone is reported.
func TestFirstErrorOnly(t *testing.T) {
	home, _ := ctlcdbtest.Home(t, "smtproutes", "a.test:r.test\nb.test:r.test:0\n# c\nbadline\n")
	r := ctlcdbtest.Run(t, []string{"QMAILREMOTE_QMAILHOME=" + home}, bin)
	want := "qmail-newsmtproutes: fatal: control/smtproutes line 2: bad port \"0\"\n"
	if r.Code != 100 || r.Stdout != "" || r.Stderr != want {
		t.Fatalf("exit %d stdout %q stderr %q, want 100 and %q", r.Code, r.Stdout, r.Stderr, want)
	}
}
