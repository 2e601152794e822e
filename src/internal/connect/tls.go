package connect

import (
	"fmt"
	"strconv"
)

// TLS modes for QMAILREMOTE_TLS (the same words as chainenv.TLSNone, TLSTry
// and TLSRequire; repeated here so that this package stays free of the
// environment).
const (
	ModeNone    = "none"
	ModeTry     = "try"
	ModeRequire = "require"
)

// Policy is what control/trustanchors and control/tlsstrictness say about
// STARTTLS for a whole delivery (doc/control.md, doc/chain.md "STARTTLS").
type Policy struct {
	Anchors    bool // trustanchors is set: STARTTLS may be used at all
	Strictness int  // 0, 1 or 2
}

// ParseStrictness reads a tlsstrictness value; empty means 0, as an
// absent control file does.
func ParseStrictness(v string) (int, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > 2 || len(v) != 1 {
		return 0, fmt.Errorf("must be 0, 1 or 2, not %q", v)
	}
	return n, nil
}

// FirstMode is the mode of the first (or only) pass over the candidates.
// Without trust anchors there is no STARTTLS at any level: the
// administrator has not turned TLS on.
func (p Policy) FirstMode() string {
	switch {
	case !p.Anchors:
		return ModeNone
	case p.Strictness == 0:
		return ModeTry
	}
	return ModeRequire
}

// RetryCleartext says whether a candidate whose TLS failed (exit 11) is
// reconnected at once, same address, without STARTTLS. Only level 0: a
// server that offers STARTTLS but cannot complete it must not be worse
// off than one that never offered it.
func (p Policy) RetryCleartext() bool { return p.Anchors && p.Strictness == 0 }

// SecondPass says whether, when no candidate took the mail under TLS, the
// candidates that answered are tried again in cleartext. Level 1: every
// TLS-capable server first, and only then cleartext to the best one.
func (p Policy) SecondPass() bool { return p.Anchors && p.Strictness == 1 }

// Label names an attempt's pass in the final Z, so that the administrator
// can tell a TLS failure from a cleartext one at the same address. Empty
// when there is nothing to tell apart: no anchors (everything is
// cleartext), or mode try (whatever the server offered was used).
func (p Policy) Label(mode string) string {
	if !p.Anchors {
		return ""
	}
	switch mode {
	case ModeRequire:
		return "(TLS) "
	case ModeNone:
		return "(cleartext) "
	}
	return ""
}
