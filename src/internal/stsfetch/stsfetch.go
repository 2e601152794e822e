// Package stsfetch is how the chain fetches MTA-STS policies (RFC 8461
// 3.3) and TLS reports go out over HTTPS (RFC 8460 3): package https1
// with the policy server's addresses from our own resolver and its
// certificate checked against the trust anchors of the qmail home
// (control/trustanchors). Shared by qmail-remote-resolve, which fetches a
// policy when a delivery needs one, qmail-remote-mtasts (the refresh from
// cron) and qmail-remote-tlsrpt.
package stsfetch

import (
	"context"
	"crypto/x509"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/miekg/dns"

	"qmail-remote-go/src/internal/anchors"
	"qmail-remote-go/src/internal/chainenv"
	"qmail-remote-go/src/internal/ctlcdb"
	"qmail-remote-go/src/internal/https1"
	"qmail-remote-go/src/internal/mtasts"
	"qmail-remote-go/src/internal/resolve"
)

// Timeout bounds a policy fetch (RFC 8461 3.3 leaves it to the sender):
// a delivery waits for it only when no cached policy applies.
const Timeout = 30 * time.Second

// CacheDir is where the policies are cached, in the run directory.
func CacheDir(run string) string { return filepath.Join(run, ctlcdb.Subdir, "mta-sts") }

// Fetcher fetches policies over HTTPS. The trust anchors are loaded only
// when a fetch happens: a delivery that finds its policy in the cache
// does not pay for parsing them.
type Fetcher struct {
	Anchors string          // control/trustanchors: a PEM bundle, or a directory ending in /
	DNS     *resolve.Client // for the policy server's addresses
}

// Fetch is mtasts.Fetcher's.
func (f Fetcher) Fetch(ctx context.Context, domain string) (mtasts.Policy, error) {
	h := &mtasts.HTTPSFetcher{Client: f.Client()}
	return h.Fetch(ctx, domain)
}

// Client is the HTTPS client, its anchors loaded.
func (f Fetcher) Client() https1.Client {
	return https1.Client{Roots: Roots(f.Anchors), Timeout: Timeout, Addrs: Addrs(f.DNS), Port: os.Getenv(chainenv.MTASTSPort)}
}

// Roots loads trust anchors (a PEM bundle, or a directory ending in /)
// into a pool; what does not load is left out, and an empty pool
// verifies nothing.
func Roots(path string) *x509.CertPool {
	pool := x509.NewCertPool()
	add := func(c *x509.Certificate) bool { pool.AddCert(c); return true }
	switch {
	case path == "":
	case strings.HasSuffix(path, "/"):
		anchors.ScanDir(path, add)
	default:
		anchors.ScanFile(path, add)
	}
	return pool
}

// Addrs finds a host's addresses with our resolver, IPv6 first.
func Addrs(client *resolve.Client) func(context.Context, string) ([]netip.Addr, error) {
	return func(ctx context.Context, host string) ([]netip.Addr, error) {
		var out []netip.Addr
		var failed error
		for _, qt := range []uint16{dns.TypeAAAA, dns.TypeA} {
			ans := client.Lookup(ctx, host, qt)
			if ans.Kind == resolve.Temporary {
				failed = errors.New(ans.Detail)
				continue
			}
			for _, rr := range ans.Records {
				switch v := rr.(type) {
				case *dns.A:
					if a, ok := netip.AddrFromSlice(v.A); ok {
						out = append(out, a.Unmap())
					}
				case *dns.AAAA:
					if a, ok := netip.AddrFromSlice(v.AAAA); ok {
						out = append(out, a)
					}
				}
			}
		}
		switch {
		case len(out) > 0:
			return out, nil
		case failed != nil:
			return nil, failed
		}
		return nil, errors.New("no address for " + host)
	}
}

// TXT looks up a domain's _mta-sts TXT record (RFC 8461 3.1) as
// mtasts.Obtain takes it.
func TXT(ctx context.Context, client *resolve.Client, domain string) mtasts.TXT {
	ans := client.Lookup(ctx, "_mta-sts."+domain, dns.TypeTXT)
	return FromAnswer(ans)
}

// FromAnswer reads a _mta-sts TXT answer as mtasts.Obtain takes it.
func FromAnswer(ans resolve.Answer) mtasts.TXT { return FromRecord(resolve.STSRecordOf(ans)) }

// FromRecord is what the TXT lookup gave, as mtasts.Obtain takes it:
// found with a valid id, not found (no record, or none valid), or a
// temporary failure.
func FromRecord(rec resolve.STSRecord) mtasts.TXT {
	txt := mtasts.TXT{Temporary: rec.Temporary}
	if rec.Found {
		if id, err := mtasts.ParseTXT(rec.Records); err == nil {
			txt.ID, txt.Found = id, true
		}
	}
	return txt
}
