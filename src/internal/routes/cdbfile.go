package routes

import (
	"strconv"
	"strings"
)

// The compiled form, smtproutes.cdb, is package ctlcdb's: the keys are the
// domains (lower case, canonical literals), each value is
//
//	relay ":" port
//
// to be split at the last ':', since "[2001:db8::7]" has colons of its
// own. The file ends with ctlcdb's trailer, whose magic is this.
const trailerMagic = "QRR1"

func encodeRoute(r Route) []byte {
	return []byte(r.Relay + ":" + strconv.Itoa(r.Port))
}

// decodeRoute checks a value as strictly as the parser checks a line, so
// that a damaged file can never route mail somewhere the text did not say.
func decodeRoute(v []byte) (Route, bool) {
	s := string(v)
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return NoRoute, false
	}
	port, ok := parsePort(s[i+1:])
	if !ok || strconv.Itoa(port) != s[i+1:] {
		return NoRoute, false
	}
	relay := s[:i]
	switch {
	case relay == "":
	case relay[0] == '[':
		lit, err := parseLiteral(relay)
		if err != nil || lit != relay {
			return NoRoute, false
		}
	default:
		name, reason := parseRelayName(relay)
		if reason != "" || name != relay {
			return NoRoute, false
		}
	}
	return Route{Relay: relay, Port: port, Found: true}, true
}
