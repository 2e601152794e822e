// qmail-remote-resolve finds where to deliver (doc/qmail-remote-resolve.md
// has the rules): it resolves the host (or the smtproutes relay) with
// parallel DNS queries, exports the ordered addresses in
// QMAILREMOTE_CANDIDATES and execs into prog. When DNS decides the
// delivery (no such domain, temporary failure, null MX, the ipme rule), it
// prints the message report instead and exits 0.
package qmailremoteresolve

import (
	"context"
	"os"
	"strings"

	"qmail-remote-go/src/internal/chain"
	"qmail-remote-go/src/internal/chainenv"
	"qmail-remote-go/src/internal/resolve"
)

const prog = "qmail-remote-resolve"

const usage = "qmail-remote-resolve prog..."

// Main is the program.
func Main(args []string) chain.Next {
	if len(args) < 2 || chain.Help(args[1]) {
		chain.Usage(usage)
	}
	host, err := chainenv.String(chainenv.Host)
	if err != nil {
		chain.Die(chain.ExitUsage, prog, "%v", err)
	}
	relay := os.Getenv(chainenv.Relay)
	if relay != "" {
		if err := resolve.CheckRelay(relay); err != nil {
			chain.Die(chain.ExitUsage, prog, "%s holds %v", chainenv.Relay, err)
		}
	}
	req := resolve.Request{Host: host, Relay: relay}
	if os.Getenv(chainenv.SenderRoute) != "" {
		req.RelayFrom = "senderroutes"
	}
	// Both are always set by qmail-remote; unset (a run by hand) means no
	// local addresses and no time limit.
	if _, ok := os.LookupEnv(chainenv.IPMe); ok {
		if req.IPMe, err = chainenv.Addrs(chainenv.IPMe); err != nil {
			chain.Die(chain.ExitUsage, prog, "%v", err)
		}
	}
	if _, ok := os.LookupEnv(chainenv.TimeoutDNS); ok {
		if req.TimeoutDNS, err = chainenv.Seconds(chainenv.TimeoutDNS, 0); err != nil {
			chain.Die(chain.ExitUsage, prog, "%v", err)
		}
	}
	client, err := resolve.LoadConfig(os.Getenv(chainenv.DNSCacheIP))
	if err != nil {
		if strings.TrimSpace(os.Getenv(chainenv.DNSCacheIP)) != "" {
			chain.Die(chain.ExitUsage, prog, "%v", err)
		}
		chain.Die(chain.ExitSystem, prog, "%v", err)
	}
	// DANE (doc/dane.md): the TLSA records of hosts reached through
	// DNSSEC-secure answers, looked up with their addresses.
	switch level := os.Getenv(chainenv.TLSPolicy); level {
	case chainenv.LevelDANE, chainenv.LevelDANEOnly:
		req.DANE, req.DANEOnly = true, level == chainenv.LevelDANEOnly
		client.DNSSEC = true
		if _, ok := os.LookupEnv(chainenv.DNSSECResolvers); ok {
			if client.TrustAD, err = chainenv.Addrs(chainenv.DNSSECResolvers); err != nil {
				chain.Die(chain.ExitUsage, prog, "%v", err)
			}
		}
		if _, ok := os.LookupEnv(chainenv.Port); ok {
			port, err := chainenv.Int(chainenv.Port, 1, 65535)
			if err != nil {
				chain.Die(chain.ExitUsage, prog, "%v", err)
			}
			req.Port = int(port)
		}
	}

	// MTA-STS (doc/mta-sts.md): for a destination whose TLS this
	// policy may raise, with trust anchors to check the policy server
	// and the MX hosts against.
	if stsApplies(relay) {
		req.STS = stsLookup(client)
	}

	out := resolve.Resolve(context.Background(), client, req)
	if out.Letter != 0 {
		return chain.Final(prog, out.Letter, out.Text)
	}
	if err := os.Setenv(chainenv.Candidates, chainenv.FormatCandidates(out.Candidates)); err != nil {
		chain.Die(chain.ExitSystem, prog, "unable to set %s: %v", chainenv.Candidates, err)
	}
	if len(out.DANE) > 0 {
		os.Setenv(chainenv.DANE, chainenv.FormatDANE(out.DANE))
	} else {
		os.Unsetenv(chainenv.DANE)
	}
	stsEnv(out.STS)
	return chain.Exec(args[1:])
}
