package routes

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"qmail-remote-go/src/testkit/backstop"
)

// env is a temporary qmail home and run directory.
type env struct {
	t         *testing.T
	home, run string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	root := t.TempDir()
	e := &env{t, filepath.Join(root, "qmail"), filepath.Join(root, "qmail", "run")}
	if err := os.MkdirAll(filepath.Join(e.home, "control"), 0o755); err != nil {
		t.Fatal(err)
	}
	return e
}

// noRacyWindow turns the racy-stamp rule off for tests that edit and look
// up within milliseconds; TestRacy checks the rule itself.
func noRacyWindow(t *testing.T) {
	old := compiled.RacyWindow
	compiled.RacyWindow = 0
	t.Cleanup(func() { compiled.RacyWindow = old })
}

func (e *env) text() string     { return filepath.Join(e.home, "control", "smtproutes") }
func (e *env) dbPath() string   { return filepath.Join(e.run, "qmail-remote", "smtproutes.cdb") }
func (e *env) lockPath() string { return filepath.Join(e.run, "qmail-remote", lockName) }
func (e *env) tmpPath() string  { return filepath.Join(e.run, "qmail-remote", tmpName) }

func (e *env) write(s string) {
	e.t.Helper()
	if err := os.WriteFile(e.text(), []byte(s), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) lookup(host string) Route {
	e.t.Helper()
	r, err := Lookup(e.home, e.run, host)
	if err != nil {
		e.t.Fatalf("Lookup(%q): %v", host, err)
	}
	return r
}

func (e *env) expect(host, relay string, port int) {
	e.t.Helper()
	r := e.lookup(host)
	if r.Relay != relay || r.Port != port {
		e.t.Fatalf("Lookup(%q) = %+v, want relay %q port %d", host, r, relay, port)
	}
}

func (e *env) dbInode() uint64 {
	e.t.Helper()
	fi, err := os.Stat(e.dbPath())
	if err != nil {
		e.t.Fatalf("no cdb: %v", err)
	}
	return stampOf(fi).Ino
}

func TestLookupCompilesOnce(t *testing.T) {
	noRacyWindow(t)
	e := newEnv(t)
	e.write("a.test:r1.test:26\n")
	before := compiled.Compiles()
	e.expect("a.test", "r1.test", 26)
	if n := compiled.Compiles() - before; n != 1 {
		t.Fatalf("%d compiles, want 1", n)
	}
	ino := e.dbInode()
	for i := 0; i < 5; i++ {
		e.expect("A.test", "r1.test", 26)
		e.expect("b.test", "", 25)
	}
	if n := compiled.Compiles() - before; n != 1 {
		t.Fatalf("fresh cdb was recompiled: %d compiles", n)
	}
	if e.dbInode() != ino {
		t.Fatal("cdb replaced although fresh")
	}
	if _, err := os.Stat(e.dbPath() + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary file left behind: %v", err)
	}
}

// Two edits with the same size and the same mtime: the ctime (and, for an
// edit by rename, the inode) still tells them apart.
func TestStaleSameSizeSameMtime(t *testing.T) {
	noRacyWindow(t)
	e := newEnv(t)
	e.write("a.test:r1.test\n")
	e.expect("a.test", "r1.test", 25)
	fi, _ := os.Stat(e.text())
	mtime := fi.ModTime()

	time.Sleep(20 * time.Millisecond) // let the kernel's coarse clock tick
	e.write("a.test:r2.test\n")
	if err := os.Chtimes(e.text(), mtime, mtime); err != nil {
		t.Fatal(err)
	}
	e.expect("a.test", "r2.test", 25)

	// Edit by rename, mtime forced back again.
	time.Sleep(20 * time.Millisecond)
	tmp := e.text() + ".new"
	if err := os.WriteFile(tmp, []byte("a.test:r3.test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(tmp, mtime, mtime)
	if err := os.Rename(tmp, e.text()); err != nil {
		t.Fatal(err)
	}
	e.expect("a.test", "r3.test", 25)
}

// An edit in the same tick of the kernel's clock leaves every timestamp
// alone; the racy rule must still catch it. The window is set, not waited
// out: an hour while the cdb must be distrusted (no pause of this test, on
// however loaded a machine, reaches it), then 10 ms, slept out (a sleep is
// never short), for the compile that ends it.
func TestRacy(t *testing.T) {
	old := compiled.RacyWindow
	compiled.RacyWindow = time.Hour
	defer func() { compiled.RacyWindow = old }()
	e := newEnv(t)
	e.write("a.test:r1.test\n")
	fi, _ := os.Stat(e.text())
	mtime := fi.ModTime()
	e.expect("a.test", "r1.test", 25) // compiled, racy

	// Simulate a same-tick edit: same size, same mtime; we cannot forge the
	// ctime, so put the compiled stamp back to claim the old identity.
	e.write("a.test:r2.test\n")
	os.Chtimes(e.text(), mtime, mtime)
	fi, _ = os.Stat(e.text())
	st1 := stampOf(fi)
	st1.Compiled = st1.Changed() + 1 // right after the change: racy for any window
	b, err := encodeDB(mustParse(t, "a.test:r1.test\n"), nil, st1)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.dbPath(), b, 0o644); err != nil {
		t.Fatal(err)
	}
	// Within the window: the text is read, not the racy cdb.
	before := compiled.Compiles()
	e.expect("a.test", "r2.test", 25)
	if compiled.Compiles() != before {
		t.Fatal("compiled within the racy window")
	}
	// After the window: compiled once more, then trusted.
	compiled.RacyWindow = 10 * time.Millisecond
	time.Sleep(2 * compiled.RacyWindow)
	e.expect("a.test", "r2.test", 25)
	e.expect("a.test", "r2.test", 25)
	if n := compiled.Compiles() - before; n != 1 {
		t.Fatalf("%d compiles after the window, want 1", n)
	}
}

func TestDeletedText(t *testing.T) {
	noRacyWindow(t)
	e := newEnv(t)
	e.write(":default.test\n")
	e.expect("a.test", "default.test", 25)
	os.Remove(e.text())
	if r := e.lookup("a.test"); r != NoRoute {
		t.Fatalf("routes survived deletion: %+v", r)
	}
	if err := Compile(e.home, e.run); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(e.dbPath()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Compile left the cdb of a deleted text: %v", err)
	}
	// And no run directory at all is fine too.
	e2 := newEnv(t)
	if r := e2.lookup("a.test"); r != NoRoute {
		t.Fatalf("%+v", r)
	}
}

func TestCorruptCDB(t *testing.T) {
	noRacyWindow(t)
	e := newEnv(t)
	e.write("a.test:r1.test:26\n:default.test\n")
	e.expect("a.test", "r1.test", 26)
	good, err := os.ReadFile(e.dbPath())
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(1))
	garbage := make([]byte, 5000)
	rng.Read(garbage)
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0x20
	// A damaged table whose checksum was "fixed" up: the structural
	// checks alone must hold.
	huge := bytes.Clone(good[:len(good)-8])
	for i := 0; i < 256; i++ {
		huge[8*i+4] = 0xff
		huge[8*i+5] = 0xff
		huge[8*i+6] = 0xff
		huge[8*i+7] = 0x7f
	}
	variants := map[string][]byte{
		"empty":     {},
		"garbage":   garbage,
		"truncated": good[:len(good)/2],
		"header":    good[:2048],
		"flipped":   flipped,
		"huge":      resum(huge),
	}
	for name, b := range variants {
		if err := os.WriteFile(e.dbPath(), b, 0o644); err != nil {
			t.Fatal(err)
		}
		before := compiled.Compiles()
		e.expect("a.test", "r1.test", 26)
		e.expect("b.test", "default.test", 25)
		if compiled.Compiles()-before != 1 {
			t.Errorf("%s: corrupt cdb not recompiled", name)
		}
	}
	// A directory where the cdb should be is no damaged cdb: it is
	// refused, naming it (TestNotRegular).
	os.Remove(e.dbPath())
	os.Mkdir(e.dbPath(), 0o755)
	os.WriteFile(filepath.Join(e.dbPath(), "x"), nil, 0o644)
	var fe *FileError
	if _, err := Lookup(e.home, e.run, "a.test"); !errors.As(err, &fe) || fe.File != e.dbPath() {
		t.Errorf("directory in place of the cdb: %v", err)
	}
}

// Anything but a regular file in place of the text or the cdb is a
// FileError naming it, at once: open(2) of a FIFO would block forever. In
// place of the lock or the temporary file it does not even stop the
// delivery: the text is read instead.
func TestNotRegular(t *testing.T) {
	noRacyWindow(t)
	fifo := func(p string) error { return unix.Mkfifo(p, 0o644) }
	dir := func(p string) error { return os.Mkdir(p, 0o755) }
	zero := func(p string) error { return os.Symlink("/dev/zero", p) }
	tests := []struct {
		name   string
		path   func(e *env) string
		make   func(string) error
		file   func(e *env) string // the FileError's File; "" the lookup succeeds
		reason string
	}{
		{"text FIFO", (*env).text, fifo, func(*env) string { return "control/smtproutes" }, "not a regular file (a FIFO)"},
		{"text device", (*env).text, zero, func(*env) string { return "control/smtproutes" }, "not a regular file (a character device)"},
		{"cdb FIFO", (*env).dbPath, fifo, (*env).dbPath, "not a regular file (a FIFO); remove it"},
		{"cdb directory", (*env).dbPath, dir, (*env).dbPath, "not a regular file (a directory); remove it"},
		{"cdb device", (*env).dbPath, zero, (*env).dbPath, "not a regular file (a character device); remove it"},
		{"lock FIFO", (*env).lockPath, fifo, nil, ""},
		{"lock directory", (*env).lockPath, dir, nil, ""},
		{"temporary file FIFO", (*env).tmpPath, fifo, nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.write("a.test:r1.test:26\n")
			os.MkdirAll(filepath.Dir(e.dbPath()), 0o755)
			os.Remove(tc.path(e))
			if err := tc.make(tc.path(e)); err != nil {
				t.Fatal(err)
			}
			var r Route
			var err error
			backstop.Within(t, "Lookup", func() error { r, err = Lookup(e.home, e.run, "a.test"); return nil })
			if tc.file == nil {
				if err != nil || r.Relay != "r1.test" {
					t.Errorf("Lookup = %+v, %v; want the route", r, err)
				}
				return
			}
			want := tc.file(e) + ": " + tc.reason
			var fe *FileError
			if !errors.As(err, &fe) || err.Error() != want {
				t.Errorf("Lookup: %v, want %q", err, want)
			}
		})
	}
	t.Run("Compile with a FIFO as the lock", func(t *testing.T) {
		e := newEnv(t)
		e.write("a.test:r1.test:26\n")
		os.MkdirAll(filepath.Dir(e.lockPath()), 0o755)
		fifo(e.lockPath())
		var err error
		backstop.Within(t, "Compile", func() error { err = Compile(e.home, e.run); return nil })
		if want := e.lockPath() + ": not a regular file (a FIFO)"; err == nil || err.Error() != want {
			t.Errorf("Compile: %v, want %q", err, want)
		}
	})
	t.Run("Compile over a FIFO cdb", func(t *testing.T) {
		// The admin's tool replaces whatever has the name, as it
		// replaces a damaged cdb.
		e := newEnv(t)
		e.write("a.test:r1.test:26\n")
		os.MkdirAll(filepath.Dir(e.dbPath()), 0o755)
		fifo(e.dbPath())
		var err error
		backstop.Within(t, "Compile", func() error { err = Compile(e.home, e.run); return nil })
		if err != nil {
			t.Fatalf("Compile: %v", err)
		}
		e.expect("a.test", "r1.test", 26)
	})
}

func resum(body []byte) []byte {
	b := append(bytes.Clone(body), trailerMagic...)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli)))
}

// Random damage to a valid file must never panic or allocate wildly, and
// damage the checksum sees must never yield a route. (Damage behind a
// recomputed checksum can change a value into another valid one: nothing
// but the checksum can catch that, so there we only require no crash.)
func TestCorruptCDBNeverMisroutes(t *testing.T) {
	tb := mustParse(t, "a.test:r1.test:26\n.b.test:r2.test\n[192.0.2.1]:[2001:db8::1]\n:default.test\n")
	good, err := encodeDB(tb, nil, stamp{Dev: 1, Ino: 2, Size: 3, Mtime: 4, Ctime: 5, Compiled: 6})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(2))
	hosts := []string{"a.test", "x.b.test", "[192.0.2.1]", "c.test"}
	for i := 0; i < 3000; i++ {
		b := bytes.Clone(good)
		for n := 1 + rng.Intn(4); n > 0; n-- {
			b[rng.Intn(len(b)-8)] = byte(rng.Intn(256))
		}
		resummed := rng.Intn(2) == 0
		if resummed {
			b = resum(b[:len(b)-8])
		}
		d, err := openDB(b)
		if err != nil {
			continue
		}
		if !resummed && !bytes.Equal(b, good) {
			t.Fatal("damaged file passed the checksum")
		}
		for _, h := range hosts {
			r, err := d.lookup(h)
			if !resummed && (err != nil || r != tb.Lookup(h)) {
				t.Fatalf("%q: %+v %v", h, r, err)
			}
		}
		d.stamp()
		d.syntaxError()
	}
}

// The run directory cannot be created (its path is a regular file): the
// text is parsed for each delivery, correctly.
func TestUnwritableRunDir(t *testing.T) {
	noRacyWindow(t)
	e := newEnv(t)
	e.write("a.test:r1.test\n")
	if err := os.WriteFile(e.run, []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := compiled.Compiles()
	e.expect("a.test", "r1.test", 25)
	e.expect("b.test", "", 25)
	if compiled.Compiles() != before {
		t.Fatal("compiled into a run directory that cannot exist")
	}
	if err := Compile(e.home, e.run); err == nil {
		t.Fatal("Compile succeeded without a run directory")
	} else if _, ok := err.(*FileError); !ok {
		t.Fatalf("Compile: %T %v, want a FileError", err, err)
	}
	// Syntax errors are still reported on the slow path.
	e.write("a.test:r1.test:0\n")
	if _, err := Lookup(e.home, e.run, "a.test"); !isSyntax(err, 1) {
		t.Fatalf("got %v, want a syntax error on line 1", err)
	}
}

// A read-only run directory (qmail-remote as qmailr, directory owned by
// root): no compile, direct parsing. Root can write anywhere, so skip.
func TestReadOnlyRunDir(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root can write into a read-only directory")
	}
	noRacyWindow(t)
	e := newEnv(t)
	e.write("a.test:r1.test\n")
	dir := filepath.Join(e.run, "qmail-remote")
	os.MkdirAll(dir, 0o755)
	os.Chmod(dir, 0o555)
	defer os.Chmod(dir, 0o755)
	e.expect("a.test", "r1.test", 25)
}

func isSyntax(err error, line int) bool {
	var se *SyntaxError
	return errors.As(err, &se) && se.Line == line
}

func TestSyntaxErrorCompiledOnce(t *testing.T) {
	noRacyWindow(t)
	e := newEnv(t)
	e.write("a.test:r1.test\n\nb.test:r2.test:99999\n")
	before := compiled.Compiles()
	for i := 0; i < 3; i++ {
		_, err := Lookup(e.home, e.run, "a.test")
		if !isSyntax(err, 3) {
			t.Fatalf("got %v, want a syntax error on line 3", err)
		}
		if got := err.Error(); got != `control/smtproutes line 3: bad port "99999"` {
			t.Fatalf("error text %q", got)
		}
	}
	if n := compiled.Compiles() - before; n != 1 {
		t.Fatalf("%d compiles of a broken file, want 1", n)
	}
	err := Compile(e.home, e.run)
	if !isSyntax(err, 3) {
		t.Fatalf("Compile: %v", err)
	}
	// Fixed: routes again.
	e.write("a.test:r1.test\n\nb.test:r2.test:2525\n")
	e.expect("b.test", "r2.test", 2525)
}

func TestUnreadableText(t *testing.T) {
	noRacyWindow(t)
	e := newEnv(t)
	// A directory is never readable as a file, even for root.
	os.Mkdir(e.text(), 0o755)
	_, err := Lookup(e.home, e.run, "a.test")
	var fe *FileError
	if !errors.As(err, &fe) || fe.File != "control/smtproutes" {
		t.Fatalf("got %v, want a FileError naming control/smtproutes", err)
	}
	os.Remove(e.text())
	if os.Geteuid() != 0 {
		e.write("a.test:r.test\n")
		os.Chmod(e.text(), 0)
		if _, err := Lookup(e.home, e.run, "a.test"); !errors.As(err, &fe) {
			t.Fatalf("unreadable text: %v", err)
		}
	}
}

func TestCompileForced(t *testing.T) {
	noRacyWindow(t)
	e := newEnv(t)
	e.write("a.test:r1.test\n")
	if err := Compile(e.home, e.run); err != nil {
		t.Fatal(err)
	}
	ino := e.dbInode()
	before := compiled.Compiles()
	if err := Compile(e.home, e.run); err != nil {
		t.Fatal(err)
	}
	if compiled.Compiles()-before != 1 || e.dbInode() == ino {
		t.Fatal("Compile did not recompile a fresh cdb")
	}
	before = compiled.Compiles()
	e.expect("a.test", "r1.test", 25)
	if compiled.Compiles() != before {
		t.Fatal("lookup recompiled what Compile had just compiled")
	}
}

// Many lookups at once on a stale cdb: all get the new routes, one
// compiles. Each goroutine opens the lock file itself, and flock locks
// belong to the open file description, so they exclude each other as
// processes would.
func TestConcurrentCompileOnce(t *testing.T) {
	noRacyWindow(t)
	e := newEnv(t)
	e.write("a.test:old.test\n")
	e.expect("a.test", "old.test", 25)
	time.Sleep(20 * time.Millisecond)
	var text bytes.Buffer
	for i := 0; i < 2000; i++ {
		fmt.Fprintf(&text, "h%d.test:r%d.test:%d\n", i, i, 1000+i)
	}
	text.WriteString("a.test:new.test\n")
	e.write(text.String())

	before := compiled.Compiles()
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			host := fmt.Sprintf("h%d.test", i*37)
			r, err := Lookup(e.home, e.run, host)
			if err != nil {
				errs <- err
				return
			}
			if want := (Route{fmt.Sprintf("r%d.test", i*37), 1000 + i*37, true}); r != want {
				errs <- fmt.Errorf("%s: %+v, want %+v", host, r, want)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := compiled.Compiles() - before; n != 1 {
		t.Fatalf("%d compiles, want 1", n)
	}
	e.expect("a.test", "new.test", 25)
}

// Readers racing with a compile see the old table or the new one, whole.
func TestReadersDuringCompile(t *testing.T) {
	noRacyWindow(t)
	e := newEnv(t)
	e.write("a.test:old.test\n")
	e.expect("a.test", "old.test", 25)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	bad := make(chan string, 8)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 100000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				b, err := os.ReadFile(e.dbPath())
				if err != nil {
					bad <- err.Error()
					return
				}
				if _, err := openDB(b); err != nil {
					bad <- "torn cdb: " + err.Error()
					return
				}
			}
		}()
	}
	for i := 0; i < 30; i++ {
		e.write(fmt.Sprintf("a.test:r%d.test\n", i))
		if err := Compile(e.home, e.run); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	close(bad)
	for b := range bad {
		t.Error(b)
	}
}

func TestCDBRoundTrip(t *testing.T) {
	tb := mustParse(t, `a.test:r1.test:26
.b.test:
:default.test:2525
[192.0.2.1]:[192.0.2.7]
[IPv6:2001:db8::1]:[2001:db8::7]:587
`)
	st := stamp{Dev: 1, Ino: 2, Size: 3, Mtime: 4, Ctime: 5, Compiled: 6}
	b, err := encodeDB(tb, nil, st)
	if err != nil {
		t.Fatal(err)
	}
	d, err := openDB(b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := d.stamp()
	if err != nil || got != st {
		t.Fatalf("stamp %+v %v, want %+v", got, err, st)
	}
	for _, h := range []string{"a.test", "A.TEST", "x.b.test", "b.test", "c.test", "[192.0.2.1]", "[IPv6:2001:db8::1]", "[2001:db8::2]", ""} {
		r, err := d.lookup(h)
		if err != nil {
			t.Fatal(err)
		}
		if want := tb.Lookup(h); r != want {
			t.Errorf("%q: cdb %+v, table %+v", h, r, want)
		}
	}
	// Reproducible: same input, same bytes.
	b2, _ := encodeDB(tb, nil, st)
	if !bytes.Equal(b, b2) {
		t.Error("two compiles of one table differ")
	}
}

// BenchmarkLookup measures a delivery's lookup in a fresh 1000-route cdb.
func BenchmarkLookup(b *testing.B) {
	root := b.TempDir()
	home, run := filepath.Join(root, "qmail"), filepath.Join(root, "qmail", "run")
	os.MkdirAll(filepath.Join(home, "control"), 0o755)
	var text bytes.Buffer
	for i := 0; i < 1000; i++ {
		fmt.Fprintf(&text, ".d%d.example.test:relay%d.example.test:%d\n", i, i, 1000+i)
	}
	os.WriteFile(filepath.Join(home, "control", "smtproutes"), text.Bytes(), 0o644)
	old := compiled.RacyWindow
	compiled.RacyWindow = 0
	defer func() { compiled.RacyWindow = old }()
	if err := Compile(home, run); err != nil {
		b.Fatal(err)
	}
	before := compiled.Compiles()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, err := Lookup(home, run, "mx.d500.example.test")
		if err != nil || r.Relay != "relay500.example.test" {
			b.Fatal(r, err)
		}
	}
	b.StopTimer()
	if compiled.Compiles() != before {
		b.Fatal("benchmark recompiled")
	}
}

// A record claiming a 2 GiB value (behind a valid checksum) must be refused
// before the library allocates for it.
func TestCorruptRecordLength(t *testing.T) {
	tb := mustParse(t, "a.test:r1.test\n")
	good, err := encodeDB(tb, nil, stamp{Dev: 1, Ino: 2, Size: 3, Mtime: 4, Ctime: 5, Compiled: 6})
	if err != nil {
		t.Fatal(err)
	}
	body := bytes.Clone(good[:len(good)-8])
	// The first record (the stamp) starts right after the 2048-byte header.
	binary.LittleEndian.PutUint32(body[2048+4:], 0x7fffffff)
	d, err := openDB(resum(body))
	if err != nil {
		t.Fatalf("header should still look sound: %v", err)
	}
	if _, err := d.stamp(); err == nil {
		t.Fatal("stamp with a 2 GiB value accepted")
	}
}
