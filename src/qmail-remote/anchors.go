package qmailremote

import (
	"errors"
	"fmt"

	"qmail-remote-go/src/internal/anchors"
	"qmail-remote-go/src/internal/say"
)

// requireAnchors is the check of tlsstrictness 2, which fails closed:
// every server must verify, so without a usable trust anchor no mail can
// go anywhere, and the delivery must wait (Z) before any connection,
// naming the file, instead of finding out one server at a time, or
// worse, sending in cleartext.
func requireAnchors(path string) error {
	const why = "control/tlsstrictness is 2 (mail only to servers whose certificate verifies, never in cleartext)"
	if path == "" {
		return errors.New(why + " but control/trustanchors is not set: set it to a PEM bundle or a directory of certificates ending in /")
	}
	err := anchors.Check(path)
	switch {
	case errors.Is(err, anchors.ErrNone):
		return fmt.Errorf("%s but control/trustanchors names %s, which %v", why, path, err)
	case err != nil:
		return fmt.Errorf("%s but control/trustanchors names %s: %v", why, path, say.Err(err))
	}
	return nil
}
