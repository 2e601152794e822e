// qmail-newtlspolicy compiles control/tlspolicy into
// QMAILRUN/qmail-remote/tlspolicy.cdb now, as qmail-newsmtproutes does for
// control/smtproutes. Deliveries compile a stale cdb themselves; running
// this after an edit only moves the work (and the syntax check) to the
// admin's terminal. The program is package compilecmd's; every malformed
// line is reported, each on a line of its own.
package qmailnewtlspolicy

import (
	"qmail-remote-go/src/internal/chain"
	"qmail-remote-go/src/internal/compilecmd"
	"qmail-remote-go/src/internal/tlspolicy"
)

// Main is the program.
func Main(args []string) chain.Next {
	return compilecmd.Main("qmail-newtlspolicy", args, tlspolicy.Compile)
}
