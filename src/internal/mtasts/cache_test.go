package mtasts

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// policyText is a valid policy whose mx names id, so that an entry's
// policy can be checked against its id.
func policyText(id string, maxAge int) string {
	return fmt.Sprintf("version: STSv1\r\nmode: enforce\r\nmx: %s.example\r\nmax_age: %d\r\n", strings.ToLower(id), maxAge)
}

// entry is a cache entry for domain with a policy made by policyText.
func entry(t *testing.T, domain, id string, fetched time.Time, maxAge int) Entry {
	t.Helper()
	p, err := Parse([]byte(policyText(id, maxAge)))
	if err != nil {
		t.Fatal(err)
	}
	return Entry{Domain: domain, ID: id, Fetched: fetched, Expires: fetched.Add(time.Duration(maxAge) * time.Second), Policy: p}
}

func TestCacheRoundTrip(t *testing.T) {
	c := Cache{Dir: filepath.Join(t.TempDir(), "new", "mta-sts")}
	if _, err := c.Get("example.com"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("empty cache: %v", err)
	}
	if d, err := c.Domains(); err != nil || d != nil {
		t.Fatalf("Domains without a directory: %v, %v", d, err)
	}
	fetched := time.Unix(1700000000, 0)
	e := entry(t, "Example.COM.", "id1", fetched, 86400)
	if err := c.Put(e); err != nil {
		t.Fatal(err)
	}
	got, err := c.Get("EXAMPLE.com")
	e.Domain = "example.com"
	if err != nil || !reflect.DeepEqual(got, e) {
		t.Fatalf("got %+v, %v; want %+v", got, err, e)
	}
	// The file is named after the domain, readable by all, and alone
	// (no temporary file left); the directory was made.
	fi, err := os.Stat(filepath.Join(c.Dir, "example.com"))
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("file: %v, %v", fi, err)
	}
	data, _ := os.ReadFile(filepath.Join(c.Dir, "example.com"))
	if want := "qmail-remote-go mta-sts v1 example.com id1 1700000000 1700086400\n" + e.Policy.Text; string(data) != want {
		t.Errorf("file is %q", data)
	}
	// A second Put replaces the first; sub-second times are cut.
	e2 := entry(t, "example.com", "id2", fetched.Add(1500*time.Millisecond), 60)
	if err := c.Put(e2); err != nil {
		t.Fatal(err)
	}
	got, err = c.Get("example.com")
	if err != nil || got.ID != "id2" || !got.Fetched.Equal(fetched.Add(time.Second)) || !got.Expires.Equal(fetched.Add(61*time.Second)) {
		t.Fatalf("got %+v, %v", got, err)
	}
	if err := c.Put(entry(t, "b.example", "x", fetched, 1)); err != nil {
		t.Fatal(err)
	}
	unlock, err := c.Lock(context.Background(), "example.com", false)
	if err != nil {
		t.Fatal(err)
	}
	unlock()
	unlock() // harmless
	os.WriteFile(filepath.Join(c.Dir, "Upper.Example"), nil, 0o644)
	os.Mkdir(filepath.Join(c.Dir, "dir.example"), 0o755)
	if d, err := c.Domains(); err != nil || !reflect.DeepEqual(d, []string{"b.example", "example.com"}) {
		t.Errorf("Domains: %q, %v", d, err)
	}
	if names, _ := filepath.Glob(filepath.Join(c.Dir, ".tmp*")); names != nil {
		t.Errorf("temporary files left: %q", names)
	}
}

// Names that are not plain domains never become paths.
func TestCacheDomainNames(t *testing.T) {
	dir := t.TempDir()
	c := Cache{Dir: filepath.Join(dir, "cache")}
	e := entry(t, "", "id", time.Unix(0, 0), 1)
	for _, d := range []string{"", ".", "../x", "..", "a..b", ".a.b", "a/b", "a\\b", "a b", "a\x00b", "a_b.example", "a..", "\u212A.example", strings.Repeat("a", 254)} {
		if _, err := c.Get(d); err == nil || errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "MTA-STS cache: ") {
			t.Errorf("Get(%q): %v", d, err)
		}
		e.Domain = d
		if err := c.Put(e); err == nil {
			t.Errorf("Put(%q) accepted", d)
		}
		if _, err := c.Lock(context.Background(), d, false); err == nil {
			t.Errorf("Lock(%q) accepted", d)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("files made: %v", entries)
	}
	// The longest name is fine, its lock file too.
	long := strings.Repeat("a.", 126) + "a"
	e.Domain = long
	if err := c.Put(e); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(long + "."); err != nil {
		t.Fatal(err)
	}
	unlock, err := c.Lock(context.Background(), long, false)
	if err != nil {
		t.Fatal(err)
	}
	unlock()
	// An entry must be able to come back.
	for _, bad := range []Entry{
		{Domain: "a.example", ID: "", Policy: e.Policy},
		{Domain: "a.example", ID: "a-b", Policy: e.Policy},
		{Domain: "a.example", ID: "ok", Policy: Policy{Mode: ModeEnforce, MX: []string{"a.example"}, Text: "garbage"}},
	} {
		if err := c.Put(bad); err == nil {
			t.Errorf("Put(%+v) accepted", bad)
		}
	}
	if err := (Cache{}).Put(entry(t, "a.example", "id", time.Unix(0, 0), 1)); err == nil {
		t.Error("Put without a directory accepted")
	}
	if _, err := (Cache{}).Get("a.example"); err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Get without a directory: %v", err)
	}
}

// Files that are not entries for their domain are ErrCorrupt, and never
// trusted.
func TestCacheCorrupt(t *testing.T) {
	c := Cache{Dir: t.TempDir()}
	good := policyText("id", 60)
	for _, content := range []string{
		"",
		"qmail-remote-go mta-sts v1 a.example id 1 61",
		"qmail-remote-go mta-sts v1 a.exa",
		"qmail-remote-go mta-sts v2 a.example id 1 61\n" + good,
		"qmail-remote-go mta-sts v1 a.example id 1\n" + good,
		"qmail-remote-go mta-sts v1 a.example id 1 61 x\n" + good,
		"qmail-remote-go mta-sts v1  a.example id 1 61\n" + good,
		"qmail-remote-go mta-sts v1 b.example id 1 61\n" + good,
		"qmail-remote-go mta-sts v1 A.example id 1 61\n" + good,
		"qmail-remote-go mta-sts v1 a.example i-d 1 61\n" + good,
		"qmail-remote-go mta-sts v1 a.example id 1 6l\n" + good,
		"qmail-remote-go mta-sts v1 a.example id 99999999999999999999 61\n" + good,
		"qmail-remote-go mta-sts v1 a.example id 1 61\n" + "garbage",
		"qmail-remote-go mta-sts v1 a.example id 1 61\n" + good[:30],
		"qmail-remote-go mta-sts v1 a.example id 1 61\n" + good + strings.Repeat("x: y\n", MaxPolicy/5),
		"\x00\xff\n" + good,
		strings.Repeat("x", 1000) + "\n" + good,
	} {
		if err := os.WriteFile(filepath.Join(c.Dir, "a.example"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		e, err := c.Get("a.example")
		if !errors.Is(err, ErrCorrupt) || !reflect.DeepEqual(e, Entry{}) {
			t.Errorf("%.60q: got %+v, %v", content, e, err)
		}
	}
	// The same header is fine with the right domain: the cases above
	// failed for their reasons.
	os.WriteFile(filepath.Join(c.Dir, "a.example"), []byte("qmail-remote-go mta-sts v1 a.example id 1 61\n"+good), 0o644)
	if _, err := c.Get("a.example"); err != nil {
		t.Fatal(err)
	}
}

func TestCacheLock(t *testing.T) {
	c := Cache{Dir: filepath.Join(t.TempDir(), "cache")}
	ctx := context.Background()
	unlock, err := c.Lock(ctx, "a.example", false)
	if err != nil {
		t.Fatal(err)
	}
	// flock locks belong to the open file: a second open in the same
	// process conflicts, as another process's would.
	if _, err := c.Lock(ctx, "A.Example.", false); !errors.Is(err, ErrBusy) {
		t.Fatalf("second lock: %v", err)
	}
	if u, err := c.Lock(ctx, "b.example", false); err != nil {
		t.Fatalf("other domain: %v", err)
	} else {
		u()
	}
	// Waiting ends with ctx.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := c.Lock(short, "a.example", true); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait with a deadline: %v", err)
	}
	// A waiter gets the lock once it is released.
	got := make(chan error, 1)
	go func() {
		u, err := c.Lock(ctx, "a.example", true)
		if err == nil {
			u()
		}
		got <- err
	}()
	unlock()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute): // a backstop only
		t.Fatal("waiter never got the lock")
	}
	// The lock file is not a cached domain.
	if d, err := c.Domains(); err != nil || len(d) != 0 {
		t.Errorf("Domains: %q, %v", d, err)
	}
}

// Readers never see a torn entry while writers replace it.
func TestCacheConcurrent(t *testing.T) {
	c := Cache{Dir: t.TempDir()}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 50 {
		wg.Go(func() {
			for j := range 20 {
				if i%2 == 0 {
					id := fmt.Sprintf("w%dn%d", i, j)
					p, _ := Parse([]byte(policyText(id, 60+i)))
					e := Entry{Domain: "a.example", ID: id, Fetched: time.Unix(int64(i), 0), Expires: time.Unix(int64(i+60), 0), Policy: p}
					if err := c.Put(e); err != nil {
						errs <- err
						return
					}
					continue
				}
				e, err := c.Get("a.example")
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				if err != nil {
					errs <- err
					return
				}
				if len(e.Policy.MX) != 1 || e.Policy.MX[0] != strings.ToLower(e.ID)+".example" || e.Fetched.Unix()+60 != e.Expires.Unix() ||
					e.Policy.MaxAge != e.Fetched.Unix()+60 {
					errs <- fmt.Errorf("torn entry %+v", e)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if names, _ := filepath.Glob(filepath.Join(c.Dir, ".tmp*")); names != nil {
		t.Errorf("temporary files left: %q", names)
	}
}

// TestCacheClean: only temporary files older than the age go.
func TestCacheClean(t *testing.T) {
	now := time.Now()
	c := Cache{Dir: t.TempDir(), Now: func() time.Time { return now }}
	old := filepath.Join(c.Dir, tmpPrefix+"old")
	fresh := filepath.Join(c.Dir, tmpPrefix+"fresh")
	for _, p := range []string{old, fresh, filepath.Join(c.Dir, "example.test")} {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Chtimes(old, now.Add(-2*time.Hour), now.Add(-2*time.Hour))
	if n, err := c.Clean(time.Hour); n != 1 || err != nil {
		t.Fatalf("Clean: %d %v", n, err)
	}
	for p, want := range map[string]bool{old: false, fresh: true, filepath.Join(c.Dir, "example.test"): true} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s: exists %v, want %v", p, err == nil, want)
		}
	}
	if n, err := (Cache{Dir: filepath.Join(c.Dir, "none")}).Clean(time.Hour); n != 0 || err != nil {
		t.Errorf("no directory: %d %v", n, err)
	}
}
