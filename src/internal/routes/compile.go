package routes

import (
	"qmail-remote-go/src/internal/ctlcdb"
)

// Names inside the qmail home and QMAILRUN/qmail-remote.
const (
	textName = File
	dbName   = "smtproutes.cdb"
	tmpName  = "smtproutes.cdb.tmp"
	lockName = "smtproutes.lock"
)

// FileError is a system error on one of our files: the delivery cannot
// know its routes and must wait.
type FileError = ctlcdb.FileError

// compiled is control/smtproutes with its compiled form, smtproutes.cdb;
// package ctlcdb keeps it fresh (doc/smtproutes.md, "The compiled file").
var compiled = ctlcdb.New(ctlcdb.Spec[Route]{
	Text:    textName,
	DB:      dbName,
	Tmp:     tmpName,
	Lock:    lockName,
	Magic:   trailerMagic,
	MaxText: MaxText,
	Parse: func(text []byte) (map[string]Route, *SyntaxError) {
		t, err := parse(text)
		if err != nil {
			return nil, err
		}
		return t.routes, nil
	},
	Keys:      Keys,
	Marshal:   encodeRoute,
	Unmarshal: decodeRoute,
})

// Lookup returns the route for host, compiling smtproutes.cdb first if it
// is stale. The error is a *SyntaxError (the text is wrong: mail must wait
// until the admin fixes it) or a *FileError (the text exists but cannot be
// read). Problems with the run directory or the cdb are never errors: the
// text is then parsed directly, which is correct, only slower.
func Lookup(qmailHome, qmailRun, host string) (Route, error) {
	m, err := compiled.Lookup(qmailHome, qmailRun, host)
	if err != nil {
		return NoRoute, err
	}
	return route(m), nil
}

// route is the route of a lookup's match: NoRoute when nothing matched.
func route(m ctlcdb.Match[Route]) Route {
	if !m.Found {
		return NoRoute
	}
	return m.Value
}

// Compile compiles the text now, stale or not, or removes the cdb when the
// text does not exist (qmail-newsmtproutes). The compiled file is written
// even when the text has a syntax error (deliveries then report it without
// parsing the text again); the error is returned too. Errors are
// *SyntaxError or *FileError.
func Compile(qmailHome, qmailRun string) error {
	_, err := compiled.Compile(qmailHome, qmailRun)
	return err
}
