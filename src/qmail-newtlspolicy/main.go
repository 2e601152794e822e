// qmail-newtlspolicy compiles control/tlspolicy into
// QMAILRUN/qmail-remote/tlspolicy.cdb now, as qmail-newsmtproutes does for
// control/smtproutes. Deliveries compile a stale cdb themselves; running
// this after an edit only moves the work (and the syntax check) to the
// admin's terminal.
package qmailnewtlspolicy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"

	"qmail-remote-go/src/internal/chain"
	"qmail-remote-go/src/internal/chainenv"
	"qmail-remote-go/src/internal/paths"
	"qmail-remote-go/src/internal/tlspolicy"
)

const usage = "qmail-newtlspolicy"

const prog = "qmail-newtlspolicy"

// Main is the program.
func Main(args []string) chain.Next {
	if len(args) != 1 {
		chain.Usage(usage)
	}
	home := dir(chainenv.QmailHome, paths.QmailHome)
	// As qmail-remote: without a configured run directory, it follows the
	// qmail home, overridden or not.
	defRun := paths.Run()
	if paths.QmailRun == "" {
		defRun = filepath.Join(home, "run")
	}
	run := dir(chainenv.QmailRun, defRun)
	err := tlspolicy.Compile(home, run)
	var se *tlspolicy.SyntaxError
	switch {
	case err == nil:
	case errors.As(err, &se):
		// Every malformed line at once, one per line of stderr: each
		// holds up the mail of its own domain.
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

// dir returns the override from the environment, or the configured
// default. An override must be an absolute path.
func dir(name, def string) string {
	if _, ok := os.LookupEnv(name); !ok {
		return def
	}
	v, err := chainenv.AbsPath(name)
	if err != nil {
		chain.Die(chain.ExitUsage, prog, "%v", err)
	}
	return v
}
