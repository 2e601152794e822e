// qmail-newsmtproutes compiles control/smtproutes into
// QMAILRUN/qmail-remote/smtproutes.cdb now, like qmail-newmrh does for
// morercpthosts. Deliveries compile a stale cdb themselves; running this
// after an edit only moves the work (and the syntax check) to the admin's
// terminal. The program is package compilecmd's.
package qmailnewsmtproutes

import (
	"qmail-remote-go/src/internal/chain"
	"qmail-remote-go/src/internal/compilecmd"
	"qmail-remote-go/src/internal/routes"
)

// Main is the program.
func Main(args []string) chain.Next {
	return compilecmd.Main("qmail-newsmtproutes", args, routes.Compile)
}
