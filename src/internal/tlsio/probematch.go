package tlsio

import "crypto/x509"

// MatchNames says whether cert is for one of names, the way level
// verify checks control/tlspolicy's match= names (a host name, or
// ".suffix" for any name under it): for qmail-remote-probe, which shows
// the name check apart from the chain.
func MatchNames(cert *x509.Certificate, names []string) bool { return matchAny(cert, names) }
