package qmailremoteresolve

// MTA-STS (RFC 8461, doc/mta-sts.md): whether it applies to this
// delivery, the policy from the cache or from the policy server, and what
// the stages after us are told.

import (
	"context"
	"errors"
	"os"
	"strings"

	"qmail-remote-go/src/internal/chainenv"
	"qmail-remote-go/src/internal/mtasts"
	"qmail-remote-go/src/internal/resolve"
	"qmail-remote-go/src/internal/stsfetch"
	"qmail-remote-go/src/internal/tlsrpt"
)

// stsApplies says whether this delivery looks for an MTA-STS policy:
// control/mtasts is on (qmail-remote says so), the mail goes to the
// destination's MX (not an smtproutes relay), TLS is on (trust anchors:
// the policy server and the MX hosts are checked against them), and
// control/tlspolicy leaves room for it: no line, may, encrypt, or dane
// (where DANE applies it wins, RFC 8461 2). none, verify and dane-only
// are the administrator's own word for the destination.
func stsApplies(relay string) bool {
	if os.Getenv(chainenv.MTASTS) != "1" || relay != "" || os.Getenv(chainenv.TrustAnchors) == "" {
		return false
	}
	switch os.Getenv(chainenv.TLSPolicy) {
	case "", chainenv.LevelMay, chainenv.LevelEncrypt, chainenv.LevelDANE:
		return true
	}
	return false
}

// stsLookup is resolve.Request.STS: the policy for the TXT record found,
// from the cache in the run directory or fetched (mtasts.Obtain has the
// rules of RFC 8461 5.1). A fetch that failed is recorded for the TLS
// reports (RFC 8460 4.3.2.3).
func stsLookup(client *resolve.Client) func(context.Context, resolve.STSRecord) *resolve.STSPolicy {
	return func(ctx context.Context, rec resolve.STSRecord) *resolve.STSPolicy {
		host := strings.TrimSuffix(os.Getenv(chainenv.Host), ".")
		txt := stsfetch.FromRecord(rec)
		// Unset only in a run by hand: then where qmail-remote would
		// put it, never a path relative to the working directory.
		_, run, err := chainenv.Dirs()
		if err != nil {
			return nil
		}
		cache := mtasts.Cache{Dir: stsfetch.CacheDir(run)}
		f := stsfetch.Fetcher{Anchors: os.Getenv(chainenv.TrustAnchors), DNS: client}
		ctx, cancel := context.WithTimeout(ctx, stsfetch.Timeout)
		defer cancel()
		res := mtasts.Obtain(ctx, cache, f, host, txt)
		if res.Err != nil {
			recordFetchError(run, host, res.Err)
		}
		if res.Policy == nil {
			return nil
		}
		p := *res.Policy
		return &resolve.STSPolicy{Mode: p.Mode, Matches: p.Matches, MX: p.MX, Lines: p.Strings()}
	}
}

// recordFetchError notes a policy that could not be fetched, as RFC
// 8460 4.3.2.3 names it, for qmail-remote-tlsrpt.
func recordFetchError(run, domain string, err error) {
	result := tlsrpt.STSPolicyFetchError
	switch {
	case errors.Is(err, mtasts.ErrWebPKI):
		result = tlsrpt.STSWebPKIInvalid
	case errors.Is(err, mtasts.ErrInvalid):
		result = tlsrpt.STSPolicyInvalid
	}
	if run == "" || domain == "" {
		return
	}
	// Best effort: the log never touches the delivery.
	tlsrpt.Append(tlsrpt.LogDir(run), tlsrpt.Record{Domain: domain, PolicyType: tlsrpt.PolicySTS, Result: result, Reason: err.Error()})
}

// stsEnv tells the stages after us about the policy that applies: its
// mode and lines, and at enforce TLS verified by PKIX for the MX host
// names (RFC 8461 4.2), which is control/tlspolicy's verify.
func stsEnv(p *resolve.STSPolicy) {
	if p == nil {
		os.Unsetenv(chainenv.STS)
		os.Unsetenv(chainenv.STSPolicy)
		return
	}
	os.Setenv(chainenv.STS, p.Mode)
	os.Setenv(chainenv.STSPolicy, strings.Join(p.Lines, "\n"))
	if p.Mode == mtasts.ModeEnforce {
		os.Setenv(chainenv.TLSPolicy, chainenv.LevelVerify)
	}
}
