package qmailnewtlspolicy

import (
	"testing"

	"qmail-remote-go/src/testkit/buildtest"
	"qmail-remote-go/src/testkit/ctlcdbtest"
)

// What the program shares with qmail-newsmtproutes (usage, directories,
// exit codes, files that are not regular, a file-wide syntax error) is
// tested in package compilecmd; here, what is its own.

var bin string

func TestMain(m *testing.M) { buildtest.Program(m, &bin, "qmail-newtlspolicy") }

// Every line that poisons its domain is reported, each on its own line.
func TestKeyErrors(t *testing.T) {
	home, _ := ctlcdbtest.Home(t, "tlspolicy", "a.test:may\nbank.example:verfy\nok.test:encrypt\npartner.test:may pin=00\n")
	r := ctlcdbtest.Run(t, []string{"QMAILREMOTE_QMAILHOME=" + home}, bin)
	want := "qmail-newtlspolicy: fatal: control/tlspolicy line 2: unknown level \"verfy\" (none, may, encrypt, verify, dane, dane-only)\n" +
		"qmail-newtlspolicy: fatal: control/tlspolicy line 4: pin= is allowed only with encrypt and verify, not with may\n"
	if r.Code != 100 || r.Stdout != "" || r.Stderr != want {
		t.Fatalf("exit %d stdout %q stderr %q, want 100 and %q", r.Code, r.Stdout, r.Stderr, want)
	}
}
