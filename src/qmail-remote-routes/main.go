// qmail-remote-routes is the routes stage of the chain: it looks the
// delivery's sender up in control/senderroutes and, when no line there
// gives a relay, its host in control/smtproutes (compiling each cdb first
// when its text has changed), exports the relay and port, and execs into
// the rest of its command line. When control/smtpauth has credentials for
// the route's relay, it says so in QMAILREMOTE_AUTH (auth.go); the
// addresses to connect from go to QMAILREMOTE_OUTGOINGIP (source.go).
package qmailremoteroutes

import (
	"errors"
	"os"
	"strconv"

	"qmail-remote-go/src/internal/chain"
	"qmail-remote-go/src/internal/chainenv"
	"qmail-remote-go/src/internal/ctlcdb"
	"qmail-remote-go/src/internal/report"
	"qmail-remote-go/src/internal/routes"
	"qmail-remote-go/src/internal/senders"
	"qmail-remote-go/src/internal/smtpauth"
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

	// By hand the sender may be unknown: then no line keyed by sender
	// applies (doc/qmail-remote-routes.md).
	sender, hasSender := os.LookupEnv(chainenv.Sender)
	os.Unsetenv(chainenv.SenderRoute)
	var r routes.Route
	if hasSender {
		sr, err := routes.LookupSender(home, run, sender)
		if err != nil {
			return tableError(err)
		}
		if sr.Found && sr.Relay != "" {
			r = sr.Route
			os.Setenv(chainenv.SenderRoute, senders.Show(sr.Key))
		}
	}
	if !r.Found {
		var err error
		if r, err = routes.Lookup(home, run, host); err != nil {
			return tableError(err)
		}
	}

	if r.Relay != "" {
		os.Setenv(chainenv.Relay, r.Relay)
	} else {
		os.Unsetenv(chainenv.Relay)
	}
	os.Setenv(chainenv.Port, strconv.Itoa(r.Port))
	exportPolicy(home, run, host)
	exportAuth(home, r, smtpauth.SenderKeys(sender, hasSender))
	exportSource(home, run, host, sender, hasSender)
	return chain.Exec(args[1:])
}

// tableError makes a table that cannot be read a delivery outcome, not a
// stage failure: the mail waits in the queue (Z) until the admin fixes
// the file, rather than going wherever a half-read table would send it.
func tableError(err error) chain.Next {
	var se *ctlcdb.SyntaxError
	var fe *ctlcdb.FileError
	if !errors.As(err, &se) && !errors.As(err, &fe) {
		chain.Die(chain.ExitSystem, prog, "%v", err)
	}
	return chain.Final(prog, report.Temporary, "Unable to read control files: "+err.Error()+". (#4.3.0)\n")
}
