// Package compilecmd is the admin's program that compiles a control file
// into its cdb in QMAILRUN/qmail-remote now (qmail-newsmtproutes,
// qmail-newtlspolicy), like qmail-newmrh does for morercpthosts.
// Deliveries compile a stale cdb themselves; running the program after an
// edit only moves the work (and the syntax check) to the admin's
// terminal.
package compilecmd

import (
	"errors"
	"os"
	"path/filepath"
	"strings"

	"qmail-remote-go/src/internal/chain"
	"qmail-remote-go/src/internal/chainenv"
	"qmail-remote-go/src/internal/ctlcdb"
	"qmail-remote-go/src/internal/say"
)

// Main is the program called prog. It takes no arguments and calls
// compile with the qmail home and the run directory: QMAILREMOTE_QMAILHOME
// and QMAILREMOTE_QMAILRUN (absolute paths) or the configured defaults
// (chainenv.Dirs). A home without a control/ directory is exit 111
// before anything is created. It exits 0 when compile succeeds; 100 when
// its error holds a *ctlcdb.SyntaxError, printing each error it joins
// (errors.Join) on a line of its own; 111 for any other error.
func Main(prog string, args []string, compile func(qmailHome, qmailRun string) error) chain.Next {
	if len(args) != 1 {
		chain.Usage(prog)
	}
	home, run, err := chainenv.Dirs()
	if err != nil {
		chain.Die(chain.ExitUsage, prog, "%v", err)
	}
	// Nothing is created under a home that is not one (a typo in
	// QMAILREMOTE_QMAILHOME): the lock and the cdb would land in a tree
	// that no delivery reads.
	if st, err := os.Stat(filepath.Join(home, "control")); err != nil || !st.IsDir() {
		why := "not a directory"
		if err != nil {
			why = say.Err(err)
		}
		chain.Die(chain.ExitSystem, prog, "%s is not a qmail home: %s: %s", home, filepath.Join(home, "control"), why)
	}
	err = compile(home, run)
	var se *ctlcdb.SyntaxError
	switch {
	case err == nil:
	case errors.As(err, &se):
		// Every malformed line at once, one per line of stderr (a
		// control/tlspolicy line holds up the mail of its own domain
		// only).
		chain.Die(chain.ExitUsage, prog, "%s", strings.Join(lines(err), "\n"+prog+": fatal: "))
	default:
		chain.Die(chain.ExitSystem, prog, "%v", err)
	}
	return chain.Exit(0)
}

// lines lists the texts of the errors that err joins, or err's alone.
func lines(err error) []string {
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return []string{err.Error()}
	}
	var s []string
	for _, e := range j.Unwrap() {
		s = append(s, e.Error())
	}
	return s
}
