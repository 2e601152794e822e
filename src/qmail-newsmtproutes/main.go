// qmail-newsmtproutes compiles the routing tables now, like qmail-newmrh
// does for morercpthosts: control/smtproutes, control/senderroutes and
// control/outgoingip into smtproutes.cdb, senderroutes.cdb and
// outgoingip.cdb in QMAILRUN/qmail-remote. Deliveries compile a stale cdb
// themselves; running this after an edit only moves the work (and the
// syntax check) to the admin's terminal. The program is package
// compilecmd's.
package qmailnewsmtproutes

import (
	"errors"

	"qmail-remote-go/src/internal/chain"
	"qmail-remote-go/src/internal/compilecmd"
	"qmail-remote-go/src/internal/outgoingip"
	"qmail-remote-go/src/internal/routes"
)

// Main is the program.
func Main(args []string) chain.Next {
	return compilecmd.Main("qmail-newsmtproutes", args, compileAll)
}

// compileAll compiles every table, each even when another has an error,
// and reports every error: a file without a mistake is compiled however
// its neighbours are.
func compileAll(home, run string) error {
	return errors.Join(
		routes.Compile(home, run),
		routes.CompileSenders(home, run),
		outgoingip.Compile(home, run),
	)
}
