package mtasts

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"qmail-remote-go/src/internal/https1"
)

// Errors of fetching a policy, by the result types of RFC 8460 4.3 that
// TLS reports give them. Fetcher errors wrap one of them.
var (
	ErrFetch   = errors.New("cannot fetch the MTA-STS policy")                     // sts-policy-fetch-error
	ErrInvalid = errors.New("invalid MTA-STS policy")                              // sts-policy-invalid
	ErrWebPKI  = errors.New("MTA-STS policy server's certificate does not verify") // sts-webpki-invalid
)

// WellKnown is the path of the policy on the policy host (RFC 8461 3.3).
const WellKnown = "/.well-known/mta-sts.txt"

// HTTPSFetcher fetches policies from https://mta-sts.DOMAIN/.well-known/mta-sts.txt
// (RFC 8461 3.3) with Client, whose zero Max becomes MaxPolicy.
type HTTPSFetcher struct {
	Client https1.Client
}

// Fetch gets and parses domain's policy. Only a 200 answer of type
// text/plain counts: redirects are not followed (RFC 8461 3.3), and are
// ErrFetch like any other status; another type is ErrInvalid, since the
// policy RFC 8461 3.2 defines is text/plain.
func (h HTTPSFetcher) Fetch(ctx context.Context, domain string) (Policy, error) {
	host := "mta-sts." + strings.TrimSuffix(domain, ".")
	c := h.Client
	if c.Max == 0 {
		c.Max = MaxPolicy
	}
	resp, err := c.Get(ctx, host, WellKnown)
	if err != nil {
		if errors.Is(err, https1.ErrWebPKI) {
			return Policy{}, fmt.Errorf("%w: %w", ErrWebPKI, err)
		}
		return Policy{}, fmt.Errorf("%w: %w", ErrFetch, err)
	}
	authority := host
	if c.Port != "" && c.Port != https1.DefaultPort {
		authority = net.JoinHostPort(host, c.Port)
	}
	url := "https://" + authority + WellKnown
	if resp.Status != 200 {
		return Policy{}, fmt.Errorf("%w: %s: HTTP status %d", ErrFetch, url, resp.Status)
	}
	mediaType, _, _ := strings.Cut(resp.ContentType, ";")
	if !strings.EqualFold(strings.TrimSpace(mediaType), "text/plain") {
		return Policy{}, fmt.Errorf("%w: %s: Content-Type %.80q, not text/plain", ErrInvalid, url, resp.ContentType)
	}
	p, err := Parse(resp.Body)
	if err != nil {
		return Policy{}, fmt.Errorf("%w: %s: %w", ErrInvalid, url, err)
	}
	return p, nil
}
