package qmailremoteroutes

import (
	"errors"
	"os"
	"strings"

	"qmail-remote-go/src/internal/chain"
	"qmail-remote-go/src/internal/chainenv"
	"qmail-remote-go/src/internal/tlspolicy"
)

// policyVars are this stage's say on TLS: set from control/tlspolicy, or
// removed, whatever the caller's environment held.
var policyVars = []string{chainenv.TLSPolicy, chainenv.TLSMatch, chainenv.TLSPins}

// exportPolicy looks host up in control/tlspolicy (doc/tlspolicy.md,
// compiling tlspolicy.cdb first when the text has changed) and exports
// the level of the line that applies, with its options. No line: the
// variables are unset, and tlsstrictness decides. A malformed line that
// would decide this mail makes it wait (Z), naming the line.
func exportPolicy(home, run, host string) {
	for _, v := range policyVars {
		os.Unsetenv(v)
	}
	p, err := tlspolicy.Lookup(home, run, host)
	if err != nil {
		var se *tlspolicy.SyntaxError
		var fe *tlspolicy.FileError
		if !errors.As(err, &se) && !errors.As(err, &fe) {
			chain.Die(chain.ExitSystem, prog, "%v", err)
		}
		outcome("Unable to read control files: " + err.Error() + ". (#4.3.0)\n")
	}
	if !p.Found {
		return
	}
	os.Setenv(chainenv.TLSPolicy, p.Level)
	if len(p.Match) > 0 {
		os.Setenv(chainenv.TLSMatch, strings.Join(p.Match, " "))
	}
	if len(p.Pins) > 0 {
		os.Setenv(chainenv.TLSPins, strings.Join(p.Pins, " "))
	}
}

// raisePolicy makes a route with credentials verified, whatever
// control/tlspolicy says: a password goes only to an authenticated
// server. none, may and encrypt become verify; verify, dane and
// dane-only stay (DANE authenticates too).
func raisePolicy() {
	switch os.Getenv(chainenv.TLSPolicy) {
	case chainenv.LevelNone, chainenv.LevelMay, chainenv.LevelEncrypt:
		os.Setenv(chainenv.TLSPolicy, chainenv.LevelVerify)
	}
}
