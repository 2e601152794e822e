// The multicall binary: every program of qmail-remote-go in one static
// executable, installed under each program's name (hard links). Run by
// any of those names, it is that program. A program that execs another
// one of them runs it in the same process (package chain).
package main

import (
	"context"
	"os"

	"qmail-remote-go/src/internal/chain"
	"qmail-remote-go/src/qmail-newsmtproutes"
	"qmail-remote-go/src/qmail-newtlspolicy"
	"qmail-remote-go/src/qmail-remote"
	"qmail-remote-go/src/qmail-remote-connect"
	"qmail-remote-go/src/qmail-remote-io"
	"qmail-remote-go/src/qmail-remote-mtasts"
	"qmail-remote-go/src/qmail-remote-probe"
	"qmail-remote-go/src/qmail-remote-resolve"
	"qmail-remote-go/src/qmail-remote-routes"
	"qmail-remote-go/src/qmail-remote-tlsio"
	"qmail-remote-go/src/qmail-remote-tlsrpt"
)

func main() {
	chain.Register("qmail-remote", qmailremote.Main)
	chain.Register("qmail-newsmtproutes", qmailnewsmtproutes.Main)
	chain.Register("qmail-newtlspolicy", qmailnewtlspolicy.Main)
	chain.Register("qmail-remote-routes", qmailremoteroutes.Main)
	chain.Register("qmail-remote-resolve", qmailremoteresolve.Main)
	chain.Register("qmail-remote-connect", qmailremoteconnect.Main)
	chain.Register("qmail-remote-io", qmailremoteio.Main)
	chain.Register("qmail-remote-tlsio", qmailremotetlsio.Main)
	chain.Register("qmail-remote-probe", qmailremoteprobe.Main)
	chain.Register("qmail-remote-mtasts", qmailremotemtasts.Main)
	chain.Register("qmail-remote-tlsrpt", qmailremotetlsrpt.Main)
	qmailremotetlsrpt.Post = post
	os.Exit(chain.Main(os.Args))
}

// post sends a TLS report over HTTPS (RFC 8460 3), checked against the
// trust anchors of the qmail home (control/trustanchors).
func post(ctx context.Context, host, path, contentType string, body []byte) (int, error) {
	c, err := qmailremotemtasts.HTTPSClient()
	if err != nil {
		return 0, err
	}
	r, err := c.Post(ctx, host, path, contentType, body)
	return r.Status, err
}
