package mtasts

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"
)

// TXT is what the lookup of _mta-sts.DOMAIN gave. Found: a valid record
// with policy id ID. Neither Found nor Temporary: the domain has no
// record (NXDOMAIN, no TXT records, ErrNoRecord, or an invalid record).
// Temporary: the lookup failed, and nothing is known.
type TXT struct {
	ID        string
	Found     bool
	Temporary bool
}

// Fetcher fetches a domain's policy. Its errors should wrap ErrFetch,
// ErrInvalid or ErrWebPKI; Obtain treats others as ErrFetch.
type Fetcher interface {
	Fetch(ctx context.Context, domain string) (Policy, error)
}

// Result is the policy a delivery applies, and how it was obtained.
type Result struct {
	Policy   *Policy // nil: no policy applies; a policy of mode none applies nothing either
	ID       string  // the policy's id; "" when Policy is nil
	Cached   bool    // Policy came from the cache
	Fetched  bool    // Policy was fetched now (and cached)
	Err      error   // a fetch that failed, even when a cached policy was used instead, for TLS reports; wraps ErrFetch, ErrInvalid or ErrWebPKI
	CacheErr error   // the cache could not be read, locked or written: only slower, never less safe, but worth a log line
}

// testHookWait, when set, runs just before Obtain waits for another
// process's fetch, so that tests know it waits.
var testHookWait func()

// Obtain decides which policy applies to mail for domain, given what the
// TXT lookup found, as RFC 8461 5.1 says:
//
//   - A record whose id is that of an unexpired cached policy: the cached
//     policy, no fetch.
//   - A record and no such policy: the policy is fetched, by one process at
//     a time (Cache.Lock). A process that finds another fetching uses the
//     unexpired cached policy if there is one, whatever its id, or else
//     waits for the other's fetch and uses its result if the id is right.
//     A fetched policy is cached for its max_age and applies; when the
//     fetch fails, the unexpired cached policy still applies (a failed
//     refresh keeps it), or else none. Err tells the failure either way.
//   - No record, or a failed lookup: the unexpired cached policy if any
//     (a policy is withdrawn with mode none, not by removing the record),
//     else none; no fetch.
//
// A corrupt cache entry counts as none. Obtain takes no longer than ctx
// allows, waiting included.
func Obtain(ctx context.Context, c Cache, f Fetcher, domain string, txt TXT) Result {
	var r Result
	cached, live := r.read(c, domain)
	if !txt.Found || txt.Temporary {
		if live {
			r.use(cached)
		}
		return r
	}
	if live && cached.ID == txt.ID {
		r.use(cached)
		return r
	}
	unlock, err := c.Lock(ctx, domain, false)
	if errors.Is(err, ErrBusy) {
		if live {
			// Another process is refreshing the policy; the cached
			// one stands meanwhile.
			r.use(cached)
			return r
		}
		if testHookWait != nil {
			testHookWait()
		}
		unlock, err = c.Lock(ctx, domain, true)
	}
	switch {
	case err == nil:
		defer unlock()
		// Another process may have fetched the policy since it was
		// read, perhaps while this one waited.
		if e, ok := r.read(c, domain); ok {
			if e.ID == txt.ID {
				r.use(e)
				return r
			}
			cached, live = e, true
		}
	case ctx.Err() != nil:
		// Out of time waiting for the other process: no fetch either.
		r.Err = fmt.Errorf("%w: %w", ErrFetch, err)
		if live {
			r.use(cached)
		}
		return r
	default:
		// The lock cannot be had (a read-only directory, say):
		// fetching regardless is only less economical.
		r.CacheErr = errors.Join(r.CacheErr, err)
	}

	var p Policy
	if f == nil {
		err = errors.New("no fetcher")
	} else {
		p, err = f.Fetch(ctx, domain)
	}
	if err != nil {
		if !errors.Is(err, ErrFetch) && !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrWebPKI) {
			err = fmt.Errorf("%w: %w", ErrFetch, err)
		}
		r.Err = err
		if live {
			r.use(cached)
		}
		return r
	}
	p.MaxAge = max(0, min(p.MaxAge, MaxAgeLimit))
	now := c.now()
	e := Entry{Domain: domain, ID: txt.ID, Fetched: now, Expires: now.Add(time.Duration(p.MaxAge) * time.Second), Policy: p}
	if err := c.Put(e); err != nil {
		r.CacheErr = errors.Join(r.CacheErr, err)
	}
	r.Policy, r.ID, r.Fetched = &p, txt.ID, true
	return r
}

// read returns domain's cache entry and whether it is unexpired. A cache
// that cannot be read, or holds a corrupt entry, counts as empty, and is
// noted in CacheErr.
func (r *Result) read(c Cache, domain string) (Entry, bool) {
	e, err := c.Get(domain)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			r.CacheErr = errors.Join(r.CacheErr, err)
		}
		return Entry{}, false
	}
	return e, c.now().Before(e.Expires)
}

// use makes the cached entry the result's policy.
func (r *Result) use(e Entry) {
	p := e.Policy
	r.Policy, r.ID, r.Cached = &p, e.ID, true
}
