// qmail-remote-routes is the routes stage of the chain: it looks the
// delivery's host up in control/smtproutes (compiling smtproutes.cdb first
// when the text has changed), exports the relay and port, and execs into
// the rest of its command line. When control/smtpauth has credentials for
// the route's relay, it says so in QMAILREMOTE_AUTH (auth.go).
package qmailremoteroutes

import (
	"errors"
	"os"
	"strconv"

	"qmail-remote-go/src/internal/chain"
	"qmail-remote-go/src/internal/chainenv"
	"qmail-remote-go/src/internal/report"
	"qmail-remote-go/src/internal/routes"
)

const usage = "qmail-remote-routes prog..."

const prog = "qmail-remote-routes"

// Main is the program.
func Main(args []string) chain.Next {
	if len(args) < 2 || chain.Help(args[1]) {
		chain.Usage(usage)
	}
	// By hand, the run directory follows the home, as for every program.
	home, run, err := chainenv.Dirs()
	if err != nil {
		chain.Die(chain.ExitUsage, prog, "%v", err)
	}
	host, err := chainenv.NonEmpty(chainenv.Host)
	if err != nil {
		chain.Die(chain.ExitUsage, prog, "%v", err)
	}

	r, err := routes.Lookup(home, run, host)
	if err != nil {
		// A broken smtproutes is a delivery outcome, not a stage failure:
		// the mail waits in the queue (Z) until the admin fixes the file,
		// rather than going wherever a half-read table would send it.
		var se *routes.SyntaxError
		var fe *routes.FileError
		if !errors.As(err, &se) && !errors.As(err, &fe) {
			chain.Die(chain.ExitSystem, prog, "%v", err)
		}
		return chain.Final(prog, report.Temporary, "Unable to read control files: "+err.Error()+". (#4.3.0)\n")
	}

	if r.Relay != "" {
		os.Setenv(chainenv.Relay, r.Relay)
	} else {
		os.Unsetenv(chainenv.Relay)
	}
	os.Setenv(chainenv.Port, strconv.Itoa(r.Port))
	exportPolicy(home, run, host)
	exportAuth(home, r)
	return chain.Exec(args[1:])
}
