package mtasts

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeFetcher counts its calls and returns the policy of id, or err.
type fakeFetcher struct {
	mu      sync.Mutex
	calls   int
	domains []string
	id      string
	maxAge  int
	err     error
}

func (f *fakeFetcher) Fetch(_ context.Context, domain string) (Policy, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.domains = append(f.domains, domain)
	if f.err != nil {
		return Policy{}, f.err
	}
	if f.id == "none" {
		return Parse([]byte("version: STSv1\nmode: none\nmax_age: 86400\n"))
	}
	return Parse([]byte(policyText(f.id, f.maxAge)))
}

var clock = time.Unix(1700000000, 0)

// fakeCache is a cache in a new directory whose clock stands still.
func fakeCache(t *testing.T) Cache {
	return Cache{Dir: filepath.Join(t.TempDir(), "mta-sts"), Now: func() time.Time { return clock }}
}

// check compares r with what is wanted: the id of the applied policy
// ("" none) with its mx, where it came from, and the class of Err.
func check(t *testing.T, r Result, id string, cached, fetched bool, err error) {
	t.Helper()
	switch {
	case id == "" && (r.Policy != nil || r.ID != ""):
		t.Errorf("policy %+v (id %q), want none", r.Policy, r.ID)
	case id != "" && (r.Policy == nil || r.ID != id):
		t.Errorf("policy %+v (id %q), want id %s", r.Policy, r.ID, id)
	case id != "" && r.Policy.Mode != ModeNone && (len(r.Policy.MX) != 1 || r.Policy.MX[0] != strings.ToLower(id)+".example"):
		t.Errorf("policy %+v is not that of %s", r.Policy, id)
	}
	if r.Cached != cached || r.Fetched != fetched {
		t.Errorf("cached %v fetched %v, want %v %v", r.Cached, r.Fetched, cached, fetched)
	}
	if err == nil && r.Err != nil || err != nil && !errors.Is(r.Err, err) {
		t.Errorf("Err %v, want %v", r.Err, err)
	}
}

// The rules of RFC 8461 5.1, one case each.
func TestObtain(t *testing.T) {
	found := func(id string) TXT { return TXT{ID: id, Found: true} }
	plainErr := errors.New("connection refused")
	for _, c := range []struct {
		name     string
		cache    string // the cached entry's id; "" none, "corrupt" a corrupt file
		expired  bool
		busy     bool // another process holds the lock
		txt      TXT
		fetchID  string // what the fetch gives, if fetchErr is nil
		fetchErr error
		want     string // the id of the policy applied; "" none
		cached   bool
		fetched  bool
		calls    int
		err      error  // the class of Err; nil none
		stored   string // the id cached afterwards
		cacheErr bool
	}{
		{name: "cached, same id", cache: "A", txt: found("A"), fetchID: "B",
			want: "A", cached: true, stored: "A"},
		{name: "nothing cached", txt: found("A"), fetchID: "A",
			want: "A", fetched: true, calls: 1, stored: "A"},
		{name: "cached, other id", cache: "A", txt: found("B"), fetchID: "B",
			want: "B", fetched: true, calls: 1, stored: "B"},
		{name: "cached, same id, expired", cache: "A", expired: true, txt: found("A"), fetchID: "A",
			want: "A", fetched: true, calls: 1, stored: "A"},
		{name: "corrupt cache replaced", cache: "corrupt", txt: found("A"), fetchID: "A",
			want: "A", fetched: true, calls: 1, stored: "A", cacheErr: true},
		{name: "mode none fetched", txt: found("A"), fetchID: "none",
			want: "A", fetched: true, calls: 1, stored: "A"},
		{name: "fetch fails, cached other id kept", cache: "A", txt: found("B"), fetchErr: ErrInvalid,
			want: "A", cached: true, calls: 1, err: ErrInvalid, stored: "A"},
		{name: "fetch fails, cached same id expired", cache: "A", expired: true, txt: found("A"), fetchErr: ErrWebPKI,
			calls: 1, err: ErrWebPKI, stored: "A"},
		{name: "fetch fails, nothing cached", txt: found("A"), fetchErr: ErrFetch,
			calls: 1, err: ErrFetch},
		{name: "unclassified fetch error is ErrFetch", txt: found("A"), fetchErr: plainErr,
			calls: 1, err: ErrFetch},
		{name: "fetch fails, corrupt cache", cache: "corrupt", txt: found("A"), fetchErr: ErrFetch,
			calls: 1, err: ErrFetch, cacheErr: true},
		{name: "no record, cached", cache: "A", txt: TXT{}, fetchID: "B",
			want: "A", cached: true, stored: "A"},
		{name: "no record, cached expired", cache: "A", expired: true, txt: TXT{}, fetchID: "B",
			stored: "A"},
		{name: "no record, nothing cached", txt: TXT{}, fetchID: "B"},
		{name: "lookup failed, cached", cache: "A", txt: TXT{Temporary: true}, fetchID: "B",
			want: "A", cached: true, stored: "A"},
		{name: "lookup failed, id regardless", cache: "A", txt: TXT{ID: "B", Found: true, Temporary: true}, fetchID: "B",
			want: "A", cached: true, stored: "A"},
		{name: "lookup failed, cached expired", cache: "A", expired: true, txt: TXT{Temporary: true}, fetchID: "B",
			stored: "A"},
		{name: "lookup failed, corrupt cache", cache: "corrupt", txt: TXT{Temporary: true}, fetchID: "B",
			cacheErr: true},
		{name: "busy, cached other id used", cache: "A", busy: true, txt: found("B"), fetchID: "B",
			want: "A", cached: true, stored: "A"},
		{name: "busy, nothing cached, waits until ctx is done", busy: true, txt: found("B"), fetchID: "B",
			err: ErrFetch},
		{name: "busy, cached expired, waits until ctx is done", cache: "A", expired: true, busy: true, txt: found("B"), fetchID: "B",
			err: ErrFetch, stored: "A"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cache := fakeCache(t)
			switch c.cache {
			case "":
			case "corrupt":
				os.MkdirAll(cache.Dir, 0o755)
				os.WriteFile(filepath.Join(cache.Dir, "a.example"), []byte("qmail-remote-go mta-sts v1 a.example A 1\n"), 0o644)
			default:
				e := entry(t, "a.example", c.cache, clock.Add(-time.Hour), 7200)
				if c.expired {
					e.Expires = clock // expired at this very second
				}
				if err := cache.Put(e); err != nil {
					t.Fatal(err)
				}
			}
			ctx := context.Background()
			if c.busy {
				unlock, err := cache.Lock(ctx, "a.example", false)
				if err != nil {
					t.Fatal(err)
				}
				defer unlock()
				var cancel func()
				ctx, cancel = context.WithTimeout(ctx, 100*time.Millisecond)
				defer cancel()
			}
			f := &fakeFetcher{id: c.fetchID, maxAge: 3600, err: c.fetchErr}
			r := Obtain(ctx, cache, f, "A.Example.", c.txt)
			check(t, r, c.want, c.cached, c.fetched, c.err)
			if c.fetchID == "none" && (r.Policy == nil || r.Policy.Mode != ModeNone) {
				t.Errorf("mode %q, want none", r.Policy.Mode)
			}
			if f.calls != c.calls {
				t.Errorf("%d fetches, want %d", f.calls, c.calls)
			}
			if c.fetchErr == plainErr && !errors.Is(r.Err, plainErr) {
				t.Errorf("Err %v lost the fetcher's error", r.Err)
			}
			if (r.CacheErr != nil) != c.cacheErr {
				t.Errorf("CacheErr %v", r.CacheErr)
			}
			e, err := cache.Get("a.example")
			if c.stored == "" {
				if err == nil {
					t.Errorf("cached %+v", e)
				}
				return
			}
			if err != nil || e.ID != c.stored {
				t.Fatalf("cache holds %+v, %v; want id %s", e, err, c.stored)
			}
			if r.Fetched && (!e.Fetched.Equal(clock) || !e.Expires.Equal(clock.Add(time.Duration(r.Policy.MaxAge)*time.Second))) {
				t.Errorf("cached %v to %v", e.Fetched, e.Expires)
			}
		})
	}
}

// A process that finds another fetching waits for it, and uses what it
// fetched when the id is right; otherwise it fetches itself.
func TestObtainWaits(t *testing.T) {
	for _, otherID := range []string{"B", "A"} {
		cache := fakeCache(t)
		unlock, err := cache.Lock(context.Background(), "a.example", false)
		if err != nil {
			t.Fatal(err)
		}
		waiting := make(chan struct{})
		testHookWait = func() { close(waiting) }
		f := &fakeFetcher{id: "B", maxAge: 3600}
		done := make(chan Result)
		go func() { done <- Obtain(context.Background(), cache, f, "a.example", TXT{ID: "B", Found: true}) }()
		<-waiting
		// The "other process": fetches, caches, unlocks.
		if err := cache.Put(entry(t, "a.example", otherID, clock, 3600)); err != nil {
			t.Fatal(err)
		}
		unlock()
		var r Result
		select {
		case r = <-done:
		case <-time.After(time.Minute): // a backstop only
			t.Fatal("Obtain never returned")
		}
		testHookWait = nil
		if otherID == "B" {
			check(t, r, "B", true, false, nil)
			if f.calls != 0 {
				t.Errorf("fetched after the other process did")
			}
		} else {
			check(t, r, "B", false, true, nil)
			if f.calls != 1 {
				t.Errorf("%d fetches", f.calls)
			}
		}
	}
}

// A cache that cannot be used costs fetches, not policies.
func TestObtainBrokenCache(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	for _, c := range []struct {
		cache  Cache
		domain string
	}{
		{Cache{Dir: filepath.Join(file, "mta-sts"), Now: fakeCache(t).Now}, "a.example"},
		{fakeCache(t), "../a.example"},
		{Cache{}, "a.example"},
	} {
		f := &fakeFetcher{id: "A", maxAge: 60}
		r := Obtain(context.Background(), c.cache, f, c.domain, TXT{ID: "A", Found: true})
		check(t, r, "A", false, true, nil)
		if f.calls != 1 || r.CacheErr == nil || f.domains[0] != c.domain {
			t.Errorf("%q: %d fetches of %q, CacheErr %v", c.domain, f.calls, f.domains, r.CacheErr)
		}
	}
	// No fetcher: the failure is a fetch error, not a panic.
	r := Obtain(context.Background(), fakeCache(t), nil, "a.example", TXT{ID: "A", Found: true})
	check(t, r, "", false, false, ErrFetch)
}

// A fetched max_age beyond the limit is cached for the limit only.
func TestObtainMaxAge(t *testing.T) {
	cache := fakeCache(t)
	r := Obtain(context.Background(), cache, maxAgeFetcher{}, "a.example", TXT{ID: "A", Found: true})
	if !r.Fetched || r.Policy.MaxAge != MaxAgeLimit {
		t.Fatalf("got %+v", r)
	}
	e, err := cache.Get("a.example")
	if err != nil || !e.Expires.Equal(clock.Add(MaxAgeLimit*time.Second)) {
		t.Fatalf("cached %+v, %v", e, err)
	}
}

// maxAgeFetcher returns a policy built by hand, its max_age unchecked.
type maxAgeFetcher struct{}

func (maxAgeFetcher) Fetch(context.Context, string) (Policy, error) {
	p, err := Parse([]byte(policyText("a", 60)))
	p.MaxAge = 1 << 62
	return p, err
}
