package qmailremoteroutes

import (
	"errors"
	"os"
	"strconv"

	"qmail-remote-go/src/internal/anchors"
	"qmail-remote-go/src/internal/chain"
	"qmail-remote-go/src/internal/chainenv"
	"qmail-remote-go/src/internal/report"
	"qmail-remote-go/src/internal/routes"
	"qmail-remote-go/src/internal/senders"
	"qmail-remote-go/src/internal/smtpauth"
)

// exportAuth looks the route's relay and port up in control/smtpauth
// (doc/smtpauth.md) and tells the later stages how to reach it: only the
// method goes into the environment, never the user or the password, which
// qmail-remote-io reads from the file when it needs them.
//
// Credentials for a route make it tlsstrictness 2, whatever the control
// file says: a password goes only to a server whose certificate verified.
// Without trust anchors nothing can verify, so the mail waits (Z) rather
// than going out unauthenticated or in cleartext.
//
// keys are the sender keys tried before the relay's own entry
// (smtpauth.SenderKeys); the one found goes to QMAILREMOTE_AUTHSENDER.
func exportAuth(home string, r routes.Route, keys []string) {
	// Whatever the caller's environment held, only this stage decides.
	os.Unsetenv(chainenv.Auth)
	os.Unsetenv(chainenv.AuthSender)
	if r.Relay == "" {
		return
	}
	e, key, found, err := smtpauth.Lookup(home, keys, r.Relay, r.Port)
	if err != nil {
		var se *smtpauth.SyntaxError
		var fe *smtpauth.FileError
		if !errors.As(err, &se) && !errors.As(err, &fe) {
			chain.Die(chain.ExitSystem, prog, "%v", err)
		}
		outcome("Unable to read control files: " + err.Error() + ". (#4.3.0)\n")
	}
	if !found {
		return
	}
	where := r.Relay + ":" + strconv.Itoa(r.Port)
	if key != "" {
		where = senders.Show(key) + " at " + where
	}
	ta := os.Getenv(chainenv.TrustAnchors)
	if ta == "" {
		outcome(smtpauth.File + " has credentials for " + where +
			" but control/trustanchors is not set: a password never goes to an unverified server. (#4.7.0)\n")
	}
	// Level 2 from here on: with anchors that verify nothing, every
	// server would fail one after another; say so before connecting.
	if err := anchors.Check(ta); err != nil {
		outcome("Unable to read control files: " + smtpauth.File + " has credentials for " + where +
			" but control/trustanchors names " + ta + ": " + err.Error() + ". (#4.3.0)\n")
	}
	os.Setenv(chainenv.Auth, e.Method)
	if key != "" {
		os.Setenv(chainenv.AuthSender, senders.Show(key))
	}
	os.Setenv(chainenv.TLSStrictness, "2")
	raisePolicy()
}

// outcome ends the delivery with a Z report: the mail waits in the queue.
func outcome(text string) {
	chain.ExitNow(chain.Final(prog, report.Temporary, text).Code())
}
