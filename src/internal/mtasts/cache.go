package mtasts

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"qmail-remote-go/src/internal/ascii"
)

// ErrCorrupt is wrapped by Cache.Get's error for a file that is not a
// cache entry for the domain: it is never trusted, and the next
// successful fetch replaces it.
var ErrCorrupt = errors.New("corrupt MTA-STS cache entry")

// ErrBusy is Cache.Lock's error when another process holds the lock and
// the caller would not wait.
var ErrBusy = errors.New("MTA-STS cache entry locked by another process")

// The first line of a cache file: this magic, then the domain, the id,
// and the times of the fetch and of the expiry in Unix seconds.
const cacheMagic = "qmail-remote-go mta-sts v1"

// maxHeader bounds the first line of a cache file: the magic, a domain of
// 253 bytes, an id of 32 and two times of 20 digits, and some.
const maxHeader = 512

// Names in the cache directory that are not cache files begin with a dot,
// which no domain does: a domain such as "x.lock" can then never be
// another's lock file.
const (
	lockPrefix = ".lock."
	tmpPrefix  = ".tmp."
)

// maxFileName is NAME_MAX of the usual file systems.
const maxFileName = 255

// Cache keeps policies in Dir, one file per domain named after it, so
// that the qmail-remote processes running at the same time share them.
// Files are replaced by rename, so readers see a whole entry or none
// without locking; the lock (Lock) only keeps processes from fetching the
// same policy at once.
type Cache struct {
	Dir string           // created when first written
	Now func() time.Time // the clock; nil is time.Now
}

// Entry is a cached policy.
type Entry struct {
	Domain  string    // lower case, without a trailing dot
	ID      string    // the id of the TXT record when the policy was fetched
	Fetched time.Time // kept to the second
	Expires time.Time // Fetched + the policy's max_age, to the second
	Policy  Policy
}

func (c Cache) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// fileName returns the domain's file name in the cache: the domain in
// lower case without a trailing dot, when it is only letters, digits, '-'
// and inner dots. Anything else is refused rather than escaped, so that
// no domain read from the network can name a path outside Dir.
func fileName(domain string) (string, error) {
	name := ascii.Lower(strings.TrimSuffix(domain, "."))
	switch {
	case name == "":
		return "", errors.New("MTA-STS cache: empty domain")
	case len(name) > 253:
		return "", fmt.Errorf("MTA-STS cache: domain %.40q... is longer than 253 bytes", name)
	case name[0] == '.' || strings.HasSuffix(name, ".") || strings.Contains(name, ".."):
		return "", fmt.Errorf("MTA-STS cache: domain %q has an empty label", domain)
	}
	for i := 0; i < len(name); i++ {
		if b := name[i]; !(b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '-' || b == '.') {
			return "", fmt.Errorf("MTA-STS cache: domain %.80q has %q, not a letter, digit, '-' or '.'", domain, b)
		}
	}
	return name, nil
}

// dir returns Dir, which must be set: an empty Dir would put the cache in
// whatever the working directory happens to be.
func (c Cache) dir() (string, error) {
	if c.Dir == "" {
		return "", errors.New("MTA-STS cache: no directory")
	}
	return c.Dir, nil
}

// Get returns the cached entry for domain, expired or not. Without one
// the error wraps fs.ErrNotExist; a file that is not a valid entry for the
// domain is an error wrapping ErrCorrupt.
func (c Cache) Get(domain string) (Entry, error) {
	name, err := fileName(domain)
	if err != nil {
		return Entry{}, err
	}
	dir, err := c.dir()
	if err != nil {
		return Entry{}, err
	}
	path := filepath.Join(dir, name)
	f, err := os.Open(path)
	if err != nil {
		return Entry{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxHeader+MaxPolicy+1))
	if err != nil {
		return Entry{}, fmt.Errorf("MTA-STS cache: %w", err)
	}
	e, err := decode(name, b)
	if err != nil {
		return Entry{}, fmt.Errorf("%w %s: %v", ErrCorrupt, path, err)
	}
	return e, nil
}

// decode reads the file of domain name.
func decode(name string, b []byte) (Entry, error) {
	if len(b) > maxHeader+MaxPolicy {
		return Entry{}, errors.New("too long")
	}
	i := bytes.IndexByte(b, '\n')
	if i < 0 || i > maxHeader {
		return Entry{}, errors.New("no header line")
	}
	header, text := string(b[:i]), b[i+1:]
	rest, ok := strings.CutPrefix(header, cacheMagic+" ")
	f := strings.Split(rest, " ")
	if !ok || len(f) != 4 {
		return Entry{}, fmt.Errorf("header %.80q is not %q DOMAIN ID FETCHED EXPIRES", header, cacheMagic)
	}
	if f[0] != name {
		return Entry{}, fmt.Errorf("entry for %.80q, not %s", f[0], name)
	}
	if !validID(f[1]) {
		return Entry{}, fmt.Errorf("bad id %.40q", f[1])
	}
	var t [2]int64
	for j := range t {
		var err error
		if t[j], err = strconv.ParseInt(f[2+j], 10, 64); err != nil {
			return Entry{}, fmt.Errorf("bad time %.40q", f[2+j])
		}
	}
	p, err := Parse(text)
	if err != nil {
		return Entry{}, fmt.Errorf("policy: %w", err)
	}
	return Entry{Domain: name, ID: f[1], Fetched: time.Unix(t[0], 0), Expires: time.Unix(t[1], 0), Policy: p}, nil
}

// Put stores e, replacing the domain's entry at once for every reader:
// the file is written under another name, synced, and renamed. The
// policy's Text is what is stored; it must parse. Times are kept to the
// second.
func (c Cache) Put(e Entry) error {
	name, err := fileName(e.Domain)
	if err != nil {
		return err
	}
	if !validID(e.ID) {
		return fmt.Errorf("MTA-STS cache: %s: id %.40q is not 1 to %d letters and digits", name, e.ID, maxID)
	}
	if _, err := Parse([]byte(e.Policy.Text)); err != nil {
		return fmt.Errorf("MTA-STS cache: %s: policy text: %w", name, err)
	}
	dir, err := c.dir()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("MTA-STS cache: %w", err)
	}
	f, err := os.CreateTemp(dir, tmpPrefix)
	if err != nil {
		return fmt.Errorf("MTA-STS cache: %w", err)
	}
	tmp := f.Name()
	err = func() error {
		defer f.Close()
		header := fmt.Sprintf("%s %s %s %d %d\n", cacheMagic, name, e.ID, e.Fetched.Unix(), e.Expires.Unix())
		if _, err := f.WriteString(header + e.Policy.Text); err != nil {
			return err
		}
		// CreateTemp makes the file 0600; other users (the queue's
		// tools) may read the cache.
		if err := f.Chmod(0o644); err != nil {
			return err
		}
		// Synced before the rename, so that a crash leaves the old
		// entry or the new one, never an empty file under the name.
		if err := f.Sync(); err != nil {
			return err
		}
		return f.Close()
	}()
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("MTA-STS cache: %w", err)
	}
	return nil
}

// Lock takes the domain's lock, an exclusive flock on Dir/.lock.DOMAIN,
// so that one process fetches the policy while the others wait for it or
// use what is cached. When another process holds it, the error is ErrBusy
// at once, or, with wait, Lock tries again until ctx is done. unlock
// releases the lock and may be called more than once. Dying releases it
// too.
func (c Cache) Lock(ctx context.Context, domain string, wait bool) (unlock func(), err error) {
	name, err := fileName(domain)
	if err != nil {
		return nil, err
	}
	dir, err := c.dir()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("MTA-STS cache: %w", err)
	}
	// The lock file stays: removing it would let a process lock the
	// removed file while another locks a new one. A long name is cut to
	// fit NAME_MAX: domains that then share a lock only fetch in turn.
	lockName := lockPrefix + name
	if len(lockName) > maxFileName {
		lockName = lockName[:maxFileName]
	}
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("MTA-STS cache: %w", err)
	}
	// Polled rather than blocking in flock: a blocked flock cannot be
	// told that ctx is done.
	delay := 5 * time.Millisecond
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if err == unix.EINTR {
			continue
		}
		if err != unix.EWOULDBLOCK {
			f.Close()
			return nil, fmt.Errorf("MTA-STS cache: locking %s: %w", path, err)
		}
		if !wait {
			f.Close()
			return nil, ErrBusy
		}
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			f.Close()
			return nil, fmt.Errorf("MTA-STS cache: waiting for the lock on %s: %w", path, context.Cause(ctx))
		case <-timer.C:
		}
		delay = min(2*delay, 200*time.Millisecond)
	}
	var once sync.Once
	return func() { once.Do(func() { f.Close() }) }, nil
}

// Domains returns the domains with a cache file, expired or not, in
// lexical order; none when Dir does not exist yet.
func (c Cache) Domains() ([]string, error) {
	dir, err := c.dir()
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("MTA-STS cache: %w", err)
	}
	var domains []string
	for _, e := range entries {
		if n, err := fileName(e.Name()); err == nil && n == e.Name() && e.Type().IsRegular() {
			domains = append(domains, n)
		}
	}
	return domains, nil
}

// Clean removes what a writer killed mid-Put left behind: temporary
// files older than age (a live Put renames its file within moments).
// It returns how many it removed.
func (c Cache) Clean(age time.Duration) (int, error) {
	dir, err := c.dir()
	if err != nil {
		return 0, err
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("MTA-STS cache: %w", err)
	}
	n := 0
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), tmpPrefix) || !e.Type().IsRegular() {
			continue
		}
		if info, err := e.Info(); err == nil && c.now().Sub(info.ModTime()) > age {
			if os.Remove(filepath.Join(dir, e.Name())) == nil {
				n++
			}
		}
	}
	return n, nil
}
