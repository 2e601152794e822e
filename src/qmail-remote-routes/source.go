package qmailremoteroutes

import (
	"os"

	"qmail-remote-go/src/internal/chain"
	"qmail-remote-go/src/internal/chainenv"
	"qmail-remote-go/src/internal/outgoingip"
)

// exportSource looks the delivery up in control/outgoingip
// (doc/outgoingip.md) and exports the addresses to connect from; none:
// the variable is unset and the kernel chooses. A malformed file makes
// every delivery wait (Z): a source address the admin asked for and we
// could not read must not become one the kernel picks.
func exportSource(home, run, host, sender string, hasSender bool) {
	os.Unsetenv(chainenv.OutgoingIP)
	s, err := outgoingip.Lookup(home, run, host, sender, hasSender)
	if err != nil {
		chain.ExitNow(tableError(err).Code())
	}
	if !s.IsZero() {
		os.Setenv(chainenv.OutgoingIP, outgoingip.Format(s))
	}
}
