package connect

import (
	"fmt"
	"strconv"

	"qmail-remote-go/src/internal/chainenv"
)

// TLS modes for QMAILREMOTE_TLS (the same words as chainenv.TLSNone, TLSTry
// and TLSRequire; repeated here so that this package stays free of the
// environment).
const (
	ModeNone    = "none"
	ModeTry     = "try"
	ModeRequire = "require"
)

// The levels of control/tlspolicy (doc/tlspolicy.md).
const (
	LevelNone     = chainenv.LevelNone
	LevelMay      = chainenv.LevelMay
	LevelEncrypt  = chainenv.LevelEncrypt
	LevelVerify   = chainenv.LevelVerify
	LevelDANE     = chainenv.LevelDANE
	LevelDANEOnly = chainenv.LevelDANEOnly
)

// Policy is what control/trustanchors and control/tlsstrictness, or
// control/tlspolicy, say about STARTTLS for a whole delivery
// (doc/control.md, doc/tlspolicy.md, doc/chain.md "STARTTLS").
type Policy struct {
	Anchors    bool // trustanchors is set: STARTTLS may be used at all
	Strictness int  // 0, 1 or 2
	// Level is control/tlspolicy's for this destination; empty when no
	// line applies, and then Anchors and Strictness decide.
	Level string
}

// HostLevel is the level for one host: at dane, the hosts with DNSSEC-
// secure TLSA records get dane and the others may; at dane-only those
// without get "" (they cannot be used: CanUse). Empty when tlsstrictness
// decides.
func (p Policy) HostLevel(hasDANE bool) string {
	switch p.Level {
	case LevelDANE:
		if hasDANE {
			return LevelDANE
		}
		return LevelMay
	case LevelDANEOnly:
		if hasDANE {
			return LevelDANE
		}
		return ""
	}
	return p.Level
}

// CanUse says whether a host may be tried at all: not a host without
// DANE at dane-only (the resolver sets those aside; this is for a
// connector run by hand).
func (p Policy) CanUse(hasDANE bool) bool { return p.Level != LevelDANEOnly || hasDANE }

// ParseLevel checks a control/tlspolicy level; empty is none given.
func ParseLevel(v string) error {
	switch v {
	case "", LevelNone, LevelMay, LevelEncrypt, LevelVerify, LevelDANE, LevelDANEOnly:
		return nil
	}
	return fmt.Errorf("must be none, may, encrypt, verify, dane or dane-only, not %q", v)
}

// Mode is the mode of the first (or only) attempt at a host whose level
// is level (HostLevel).
func (p Policy) Mode(level string) string {
	switch level {
	case "":
		return p.FirstMode()
	case LevelNone:
		return ModeNone
	case LevelMay:
		return ModeTry
	}
	return ModeRequire
}

// Retry says whether a host whose TLS failed at level gets a cleartext
// retry: at level may, as at tlsstrictness 0.
func (p Policy) Retry(level string) bool {
	if level == "" {
		return p.RetryCleartext()
	}
	return level == LevelMay
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
// TLS-capable server first, and only then cleartext to the best one. A
// control/tlspolicy line has no such pass.
func (p Policy) SecondPass() bool { return p.Level == "" && p.Anchors && p.Strictness == 1 }

// Label names an attempt's pass in the final Z, so that the administrator
// can tell a TLS failure from a cleartext one at the same address. Empty
// when there is nothing to tell apart: no anchors (everything is
// cleartext), or mode try (whatever the server offered was used).
func (p Policy) Label(mode string) string {
	if p.Level == LevelNone || p.Level == "" && !p.Anchors {
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
