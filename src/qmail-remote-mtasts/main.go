// qmail-remote-mtasts refreshes the cached MTA-STS policies (RFC 8461,
// doc/mta-sts.md) outside any delivery, from cron: for each domain it
// looks up the _mta-sts TXT record and fetches the policy, which
// replaces the cached one; a fetch that fails leaves the cached policy
// in place (RFC 8461 5.1). Without arguments it refreshes every cached
// domain; with domain names, those (which seeds the cache).
package qmailremotemtasts

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"qmail-remote-go/src/internal/chain"
	"qmail-remote-go/src/internal/chainenv"
	"qmail-remote-go/src/internal/control"
	"qmail-remote-go/src/internal/https1"
	"qmail-remote-go/src/internal/mtasts"
	"qmail-remote-go/src/internal/remotecontrol"
	"qmail-remote-go/src/internal/resolve"
	"qmail-remote-go/src/internal/stsfetch"
)

const prog = "qmail-remote-mtasts"

// Name is the program's name in the multicall binary.
const Name = prog

const usage = "qmail-remote-mtasts [-q] [domain ...]"

// Main is the program.
func Main(args []string) chain.Next {
	fs := flag.NewFlagSet(prog, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	quiet := fs.Bool("q", false, "")
	if err := fs.Parse(args[1:]); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(chain.Stderr, "%s: %v\n", prog, err)
		}
		chain.Usage(usage)
	}
	domains := fs.Args()
	for _, d := range domains {
		if d == "" || strings.ContainsFunc(d, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '/' }) {
			fmt.Fprintf(chain.Stderr, "%s: %q is not a domain\n", prog, d)
			chain.Usage(usage)
		}
	}
	env, err := setup()
	if err != nil {
		chain.Die(chain.ExitSystem, prog, "%v", err)
	}
	if len(domains) == 0 {
		if domains, err = env.cache.Domains(); err != nil && !errors.Is(err, os.ErrNotExist) {
			chain.Die(chain.ExitSystem, prog, "unable to list the cached policies in %s: %v", env.cache.Dir, err)
		}
		// What writers killed mid-write left behind.
		env.cache.Clean(time.Hour)
	}
	failed := false
	for _, d := range domains {
		line, ok := env.refresh(strings.ToLower(strings.TrimSuffix(d, ".")))
		if !ok {
			failed = true
			fmt.Fprintf(chain.Stderr, "%s: %s\n", prog, line)
		} else if !*quiet {
			fmt.Fprintln(chain.Stdout, line)
		}
	}
	if failed {
		return chain.Exit(chain.ExitSystem)
	}
	return chain.Exit(0)
}

// world is what a refresh needs: the cache, the resolver, the fetcher.
type world struct {
	cache   mtasts.Cache
	dns     *resolve.Client
	fetcher stsfetch.Fetcher
}

// setup finds the qmail home and run directory as qmail-remote does, and
// the trust anchors the policy servers are checked against.
func setup() (*world, error) {
	home, run, _, err := remotecontrol.Locations()
	if err != nil {
		return nil, err
	}
	if err := os.Chdir(home); err != nil {
		return nil, fmt.Errorf("unable to switch to the qmail home %s: %v", home, err)
	}
	anchors, err := control.Path("control/trustanchors")
	if err != nil {
		return nil, err
	}
	if anchors == "" {
		return nil, errors.New("control/trustanchors is not set: MTA-STS is off (no policy server could be verified)")
	}
	client, err := resolve.LoadConfig(os.Getenv(chainenv.DNSCacheIP))
	if err != nil {
		return nil, err
	}
	return &world{
		cache:   mtasts.Cache{Dir: stsfetch.CacheDir(run)},
		dns:     client,
		fetcher: stsfetch.Fetcher{Anchors: anchors, DNS: client},
	}, nil
}

// refresh fetches one domain's policy anew, under the domain's lock so
// that no delivery fetches it at the same time, and says what happened.
func (w *world) refresh(domain string) (string, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*stsfetch.Timeout)
	defer cancel()
	old, oldErr := w.cache.Get(domain)
	keeps := func() string {
		if oldErr != nil {
			return "nothing is cached"
		}
		return fmt.Sprintf("the cached policy (%s) stays until %s", old.Policy.Mode, old.Expires.UTC().Format(time.RFC3339))
	}
	txt := stsfetch.TXT(ctx, w.dns, domain)
	switch {
	case txt.Temporary:
		return fmt.Sprintf("%s: the _mta-sts TXT lookup failed; %s", domain, keeps()), false
	case !txt.Found:
		// RFC 8461 5.1: the cached policy is used until it expires.
		return fmt.Sprintf("%s: no valid _mta-sts TXT record; %s", domain, keeps()), true
	}
	unlock, err := w.cache.Lock(ctx, domain, true)
	if err != nil {
		return fmt.Sprintf("%s: unable to lock the cache entry: %v", domain, err), false
	}
	defer unlock()
	p, err := w.fetcher.Fetch(ctx, domain)
	if err != nil {
		return fmt.Sprintf("%s: the policy fetch failed: %v; %s", domain, err, keeps()), false
	}
	now := time.Now()
	e := mtasts.Entry{Domain: domain, ID: txt.ID, Fetched: now, Expires: now.Add(time.Duration(p.MaxAge) * time.Second), Policy: p}
	if err := w.cache.Put(e); err != nil {
		return fmt.Sprintf("%s: unable to cache the policy: %v", domain, err), false
	}
	what := "fetched"
	if oldErr == nil && old.ID == txt.ID {
		what = "refreshed (same id)"
	}
	return fmt.Sprintf("%s: %s, id %s, mode %s, mx %s, until %s", domain, what, txt.ID, p.Mode,
		strings.Join(p.MX, " "), e.Expires.UTC().Format(time.RFC3339)), true
}

// HTTPSClient is the HTTPS client of qmail-remote-tlsrpt's https:
// reports: checked against the trust anchors of the qmail home, with our
// resolver.
func HTTPSClient() (https1.Client, error) {
	w, err := setup()
	if err != nil {
		return https1.Client{}, err
	}
	return w.fetcher.Client(), nil
}
