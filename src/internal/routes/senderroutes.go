package routes

import (
	"strconv"

	"qmail-remote-go/src/internal/ctlcdb"
	"qmail-remote-go/src/internal/senders"
)

// SenderFile is control/senderroutes (doc/senderroutes.md): routes chosen
// by the envelope sender, looked up before smtproutes. Each line is
//
//	sender:relay[:port]
//
// with sender a key of package senders (user@domain, @domain, .domain,
// <>, <#@[]>, any of them in angle brackets) and the relay as in
// smtproutes. An empty relay ("sender:") says that this sender has no
// sender route: smtproutes decides, as for a sender with no line. It is
// how an exception is written under a wider key. The file has no default
// line: smtproutes' default route is the one for every sender.
const SenderFile = "control/senderroutes"

// senderTrailerMagic ends senderroutes.cdb; its values are smtproutes'.
const senderTrailerMagic = "QRS1"

// parseSenders reads the text of control/senderroutes. A sender written
// twice is an error: of two lines for one sender, which one the admin
// meant is not for us to guess (smtproutes keeps stock's "last wins"
// only because stock has it).
func parseSenders(text []byte) (map[string]Route, *SyntaxError) {
	t := make(map[string]Route)
	first := make(map[string]int)
	err := ctlcdb.ReadLines(SenderFile, text, MaxText, MaxLine, func(n int, line string) string {
		if reason := checkChars(line); reason != "" {
			return reason
		}
		key, rest, reason := senders.Split(line, true, true)
		if reason != "" {
			return reason
		}
		r, reason := parseRelay(rest)
		if reason != "" {
			return reason
		}
		if r.Relay == "" && rest != "" {
			return "a port without a relay (an empty relay leaves the route to smtproutes)"
		}
		if l, dup := first[key]; dup {
			return "sender " + senders.Show(key) + " already has a route, on line " + strconv.Itoa(l)
		}
		first[key] = n
		t[key] = r
		return ""
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

var senderCompiled = ctlcdb.New(ctlcdb.Spec[Route]{
	Text:      SenderFile,
	DB:        "senderroutes.cdb",
	Tmp:       "senderroutes.cdb.tmp",
	Lock:      "senderroutes.lock",
	Magic:     senderTrailerMagic,
	MaxText:   MaxText,
	Parse:     parseSenders,
	Keys:      senders.Keys,
	Marshal:   encodeRoute,
	Unmarshal: decodeRoute,
})

// SenderRoute is the result of a sender lookup.
type SenderRoute struct {
	Route
	// Key is the canonical key of the line that matched (package
	// senders), "" when none did.
	Key string
}

// LookupSender finds the route control/senderroutes gives sender,
// compiling senderroutes.cdb first if it is stale. Found is false when
// no line matches; a line with an empty relay matches with Relay "".
// Errors are as Lookup's.
func LookupSender(qmailHome, qmailRun, sender string) (SenderRoute, error) {
	m, err := senderCompiled.Lookup(qmailHome, qmailRun, sender)
	if err != nil || !m.Found {
		return SenderRoute{Route: NoRoute}, err
	}
	return SenderRoute{Route: m.Value, Key: m.Key}, nil
}

// CompileSenders compiles control/senderroutes now, as Compile does
// smtproutes.
func CompileSenders(qmailHome, qmailRun string) error {
	_, err := senderCompiled.Compile(qmailHome, qmailRun)
	return err
}
