// qmail-newsmtproutes compiles control/smtproutes into
// QMAILRUN/qmail-remote/smtproutes.cdb now, like qmail-newmrh does for
// morercpthosts. Deliveries compile a stale cdb themselves; running this
// after an edit only moves the work (and the syntax check) to the admin's
// terminal.
package qmailnewsmtproutes

import (
	"errors"
	"os"
	"path/filepath"

	"qmail-remote-go/src/internal/chain"
	"qmail-remote-go/src/internal/chainenv"
	"qmail-remote-go/src/internal/paths"
	"qmail-remote-go/src/internal/routes"
)

const usage = "qmail-newsmtproutes"

const prog = "qmail-newsmtproutes"

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
	err := routes.Compile(home, run)
	var se *routes.SyntaxError
	switch {
	case err == nil:
	case errors.As(err, &se):
		chain.Die(chain.ExitUsage, prog, "%v", err)
	default:
		chain.Die(chain.ExitSystem, prog, "%v", err)
	}
	return chain.Exit(0)
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
