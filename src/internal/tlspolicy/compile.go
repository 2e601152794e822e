package tlspolicy

import (
	"qmail-remote-go/src/internal/ctlcdb"
	"qmail-remote-go/src/internal/routes"
)

// Names inside QMAILRUN/qmail-remote.
const (
	dbName   = "tlspolicy.cdb"
	tmpName  = "tlspolicy.cdb.tmp"
	lockName = "tlspolicy.lock"
)

// compiled is control/tlspolicy with its compiled form, tlspolicy.cdb. A
// syntax error that leaves every lookup in doubt is compiled as the
// file's error (ctlcdb); the others are their keys' values (marshal).
var compiled = ctlcdb.New(ctlcdb.Spec[entry]{
	Text:    File,
	DB:      dbName,
	Tmp:     tmpName,
	Lock:    lockName,
	Magic:   "QTP1",
	MaxText: MaxText,
	Parse: func(text []byte) (map[string]entry, *SyntaxError) {
		t, err := parse(text)
		if err != nil {
			return nil, err
		}
		return t.entries, nil
	},
	Keys:      routes.Keys,
	Marshal:   marshal,
	Unmarshal: unmarshal,
})

// Lookup returns the policy for host, compiling tlspolicy.cdb first if it
// is stale. Without control/tlspolicy, or without a line for host, Found
// is false and the error nil. The error is a *SyntaxError (the line that
// decides host is malformed, or one whose domain cannot be read: the mail
// must wait until the admin fixes it) or a *FileError (the text exists but
// cannot be read). Problems with the run directory or the cdb are never
// errors: the text is then parsed directly, which is correct, only slower.
func Lookup(qmailHome, qmailRun, host string) (Policy, error) {
	m, err := compiled.Lookup(qmailHome, qmailRun, host)
	if err != nil {
		return Policy{}, err
	}
	return result(m)
}

// Compile compiles the text now, stale or not, or removes the cdb when the
// text does not exist (qmail-newtlspolicy). The compiled file is written
// even when the text has syntax errors (deliveries then report them
// without parsing the text again); they are returned too: one
// *SyntaxError, or errors.Join of several, one per malformed line, in line
// order. A system error is a *FileError.
func Compile(qmailHome, qmailRun string) error {
	t, err := compiled.Compile(qmailHome, qmailRun)
	if err != nil {
		return err
	}
	return joinErrors((&Table{t}).Errors())
}
