package ctlcdb

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"qmail-remote-go/src/testkit/backstop"
	"qmail-remote-go/src/testkit/ctlcdbtest"
)

// The machinery of File (compile.go) through the toy table: when a cdb is
// fresh, stale or racy, the lock, the atomic replacement, damaged cdbs,
// files that are not regular, a run directory that cannot be used.

// env is a temporary qmail home and run directory, with a toy File of its
// own (its compile count starts at 0, its racy window is off).
type env struct {
	t         *testing.T
	f         *File[string]
	home, run string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	home, run := ctlcdbtest.Home(t, "toy", "")
	return &env{t, toy(), home, run}
}

func (e *env) text() string     { return filepath.Join(e.home, "control", "toy") }
func (e *env) dir() string      { return filepath.Join(e.run, Subdir) }
func (e *env) dbPath() string   { return filepath.Join(e.dir(), "toy.cdb") }
func (e *env) lockPath() string { return filepath.Join(e.dir(), "toy.lock") }
func (e *env) tmpPath() string  { return filepath.Join(e.dir(), "toy.cdb.tmp") }

func (e *env) write(s string) { e.t.Helper(); ctlcdbtest.Write(e.t, e.home, "toy", s) }

// show is a match as the toy's text says it, "" for none.
func show(m Match[string]) string {
	if !m.Found {
		return ""
	}
	return m.Key + "=" + m.Value
}

// expect looks host up and wants the entry want ("key=value", "" none).
func (e *env) expect(host, want string) {
	e.t.Helper()
	m, err := e.f.Lookup(e.home, e.run, host)
	if err != nil || show(m) != want {
		e.t.Fatalf("Lookup(%q) = %+v, %v; want %q", host, m, err, want)
	}
}

func (e *env) dbInode() uint64 {
	e.t.Helper()
	fi, err := os.Stat(e.dbPath())
	if err != nil {
		e.t.Fatalf("no cdb: %v", err)
	}
	return StampOf(fi).Ino
}

func TestLookupCompilesOnce(t *testing.T) {
	e := newEnv(t)
	e.write("a=1\n")
	e.expect("a", "a=1")
	if n := e.f.Compiles(); n != 1 {
		t.Fatalf("%d compiles, want 1", n)
	}
	ino := e.dbInode()
	for i := 0; i < 5; i++ {
		e.expect("a", "a=1")
		e.expect("b", "")
	}
	if n := e.f.Compiles(); n != 1 {
		t.Fatalf("fresh cdb was recompiled: %d compiles", n)
	}
	if e.dbInode() != ino {
		t.Fatal("cdb replaced although fresh")
	}
	if _, err := os.Stat(e.tmpPath()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary file left behind: %v", err)
	}
}

// Two edits with the same size and the same mtime: the ctime (and, for an
// edit by rename, the inode) still tells them apart.
func TestStaleSameSizeSameMtime(t *testing.T) {
	e := newEnv(t)
	e.write("a=1\n")
	e.expect("a", "a=1")
	fi, _ := os.Stat(e.text())
	mtime := fi.ModTime()

	time.Sleep(20 * time.Millisecond) // let the kernel's coarse clock tick
	e.write("a=2\n")
	if err := os.Chtimes(e.text(), mtime, mtime); err != nil {
		t.Fatal(err)
	}
	e.expect("a", "a=2")

	// Edit by rename, mtime forced back again.
	time.Sleep(20 * time.Millisecond)
	tmp := e.text() + ".new"
	if err := os.WriteFile(tmp, []byte("a=3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(tmp, mtime, mtime)
	if err := os.Rename(tmp, e.text()); err != nil {
		t.Fatal(err)
	}
	e.expect("a", "a=3")
}

// An edit in the same tick of the kernel's clock leaves every timestamp
// alone; the racy rule must still catch it. The window is set, not waited
// out: an hour while the cdb must be distrusted (no pause of this test, on
// however loaded a machine, reaches it), then 10 ms, slept out (a sleep is
// never short), for the compile that ends it.
func TestRacy(t *testing.T) {
	e := newEnv(t)
	e.f.RacyWindow = time.Hour
	e.write("a=1\n")
	fi, _ := os.Stat(e.text())
	mtime := fi.ModTime()
	e.expect("a", "a=1") // compiled, racy

	// Simulate a same-tick edit: same size, same mtime; we cannot forge the
	// ctime, so put the compiled stamp back to claim the old identity.
	e.write("a=2\n")
	os.Chtimes(e.text(), mtime, mtime)
	fi, _ = os.Stat(e.text())
	st1 := StampOf(fi)
	st1.Compiled = st1.Changed() + 1 // right after the change: racy for any window
	b, err := e.f.EncodeDB(map[string]string{"a": "1"}, nil, st1)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.dbPath(), b, 0o644); err != nil {
		t.Fatal(err)
	}
	// Within the window: the text is read, not the racy cdb.
	before := e.f.Compiles()
	e.expect("a", "a=2")
	if e.f.Compiles() != before {
		t.Fatal("compiled within the racy window")
	}
	// After the window: compiled once more, then trusted.
	e.f.RacyWindow = 10 * time.Millisecond
	time.Sleep(2 * e.f.RacyWindow)
	e.expect("a", "a=2")
	e.expect("a", "a=2")
	if n := e.f.Compiles() - before; n != 1 {
		t.Fatalf("%d compiles after the window, want 1", n)
	}
}

func TestDeletedText(t *testing.T) {
	e := newEnv(t)
	e.write("=dflt\n")
	e.expect("a", "=dflt")
	os.Remove(e.text())
	e.expect("a", "") // the leftover cdb is not used
	if _, err := e.f.Compile(e.home, e.run); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(e.dbPath()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Compile left the cdb of a deleted text: %v", err)
	}
	// And no run directory at all is fine too.
	newEnv(t).expect("a", "")
}

// resum makes a whole cdb file of body with a valid trailer, as a damage
// that "fixed" the checksum would.
func resum(body []byte) []byte {
	return append(bytes.Clone(body), trailer(body, "TOY1")...)
}

// A damaged cdb is recompiled, never trusted: damage the checksum sees,
// damage behind a valid checksum that the structural checks must catch,
// another table's magic, a value Unmarshal refuses.
func TestCorruptCDB(t *testing.T) {
	e := newEnv(t)
	e.write("a=1\n=dflt\n")
	e.expect("a", "a=1")
	good, err := os.ReadFile(e.dbPath())
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	garbage := make([]byte, 5000)
	for i := range garbage {
		garbage[i] = byte(rng.Uint32())
	}
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
	// Another format's cdb: another magic, the same sound checksum.
	other := append(bytes.Clone(good[:len(good)-8]), "TOY2"...)
	other = append(other, good[len(good)-4:]...)
	// A value the parser could not have written, behind a valid checksum
	// and the current stamp.
	d, err := e.f.OpenDB(good)
	if err != nil {
		t.Fatal(err)
	}
	st, err := d.Stamp()
	if err != nil {
		t.Fatal(err)
	}
	refused, err := e.f.EncodeDB(map[string]string{"a": "x=y", "": "dflt"}, nil, st)
	if err != nil {
		t.Fatal(err)
	}
	variants := map[string][]byte{
		"empty":         {},
		"garbage":       garbage,
		"truncated":     good[:len(good)/2],
		"header":        good[:2048],
		"flipped":       flipped,
		"huge":          resum(huge),
		"other magic":   other,
		"refused value": refused,
	}
	for name, b := range variants {
		if err := os.WriteFile(e.dbPath(), b, 0o644); err != nil {
			t.Fatal(err)
		}
		before := e.f.Compiles()
		e.expect("a", "a=1")
		e.expect("b", "=dflt")
		if e.f.Compiles()-before != 1 {
			t.Errorf("%s: corrupt cdb not recompiled", name)
		}
	}
	// A directory where the cdb should be is no damaged cdb: it is
	// refused, naming it (TestNotRegular).
	os.Remove(e.dbPath())
	os.Mkdir(e.dbPath(), 0o755)
	os.WriteFile(filepath.Join(e.dbPath(), "x"), nil, 0o644)
	var fe *FileError
	if _, err := e.f.Lookup(e.home, e.run, "a"); !errors.As(err, &fe) || fe.File != e.dbPath() {
		t.Errorf("directory in place of the cdb: %v", err)
	}
}

// Anything but a regular file in place of the text or the cdb is a
// FileError naming it, at once: open(2) of a FIFO would block forever. In
// place of the lock or the temporary file it does not even stop the
// delivery: the text is read instead.
func TestNotRegular(t *testing.T) {
	fifo := func(p string) error { return unix.Mkfifo(p, 0o644) }
	dir := func(p string) error { return os.Mkdir(p, 0o755) }
	zero := func(p string) error { return os.Symlink("/dev/zero", p) }
	text := func(*env) string { return "control/toy" }
	tests := []struct {
		name   string
		path   func(e *env) string
		make   func(string) error
		file   func(e *env) string // the FileError's File; nil: the lookup succeeds
		reason string
	}{
		{"text FIFO", (*env).text, fifo, text, "not a regular file (a FIFO)"},
		{"text device", (*env).text, zero, text, "not a regular file (a character device)"},
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
			e.write("a=1\n")
			os.MkdirAll(e.dir(), 0o755)
			os.Remove(tc.path(e))
			if err := tc.make(tc.path(e)); err != nil {
				t.Fatal(err)
			}
			var m Match[string]
			var err error
			backstop.Within(t, "Lookup", func() error { m, err = e.f.Lookup(e.home, e.run, "a"); return nil })
			if tc.file == nil {
				if err != nil || show(m) != "a=1" {
					t.Errorf("Lookup = %+v, %v; want the entry", m, err)
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
	// Compile: a FIFO as the lock is an error naming it; a FIFO as the
	// cdb is replaced, as a damaged cdb is (the admin's tool replaces
	// whatever has the name).
	for _, tc := range []struct {
		name string
		path func(e *env) string
		want bool // an error
	}{
		{"Compile with a FIFO as the lock", (*env).lockPath, true},
		{"Compile over a FIFO cdb", (*env).dbPath, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.write("a=1\n")
			os.MkdirAll(e.dir(), 0o755)
			fifo(tc.path(e))
			var err error
			backstop.Within(t, "Compile", func() error { _, err = e.f.Compile(e.home, e.run); return nil })
			want := tc.path(e) + ": not a regular file (a FIFO)"
			switch {
			case tc.want && (err == nil || err.Error() != want):
				t.Errorf("Compile: %v, want %q", err, want)
			case !tc.want && err != nil:
				t.Errorf("Compile: %v", err)
			case !tc.want:
				e.expect("a", "a=1")
			}
		})
	}
}

// The run directory cannot be created (its path is a regular file): the
// text is parsed for each delivery, correctly.
func TestUnwritableRunDir(t *testing.T) {
	e := newEnv(t)
	e.write("a=1\n")
	if err := os.WriteFile(e.run, []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.expect("a", "a=1")
	e.expect("b", "")
	if e.f.Compiles() != 0 {
		t.Fatal("compiled into a run directory that cannot exist")
	}
	if _, err := e.f.Compile(e.home, e.run); err == nil {
		t.Fatal("Compile succeeded without a run directory")
	} else if _, ok := err.(*FileError); !ok {
		t.Fatalf("Compile: %T %v, want a FileError", err, err)
	}
	// Syntax errors are still reported on the slow path.
	e.write("a=1\nbad\n")
	if _, err := e.f.Lookup(e.home, e.run, "a"); !isSyntax(err, 2) {
		t.Fatalf("got %v, want a syntax error on line 2", err)
	}
}

// A read-only run directory (qmail-remote as qmailr, directory owned by
// root): no compile, direct parsing. Root can write anywhere, so skip.
func TestReadOnlyRunDir(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root can write into a read-only directory")
	}
	e := newEnv(t)
	e.write("a=1\n")
	os.MkdirAll(e.dir(), 0o755)
	os.Chmod(e.dir(), 0o555)
	defer os.Chmod(e.dir(), 0o755)
	e.expect("a", "a=1")
}

func isSyntax(err error, line int) bool {
	var se *SyntaxError
	return errors.As(err, &se) && se.Line == line
}

// A syntax error is compiled once, read back from the cdb as the parser
// made it, and returned by every lookup and by Compile.
func TestSyntaxErrorCompiledOnce(t *testing.T) {
	e := newEnv(t)
	e.write("a=1\n\nbad\n")
	for i := 0; i < 3; i++ {
		_, err := e.f.Lookup(e.home, e.run, "a")
		if !isSyntax(err, 3) || err.Error() != "control/toy line 3: bad line" {
			t.Fatalf("got %v, want the syntax error of line 3", err)
		}
	}
	if n := e.f.Compiles(); n != 1 {
		t.Fatalf("%d compiles of a broken file, want 1", n)
	}
	b, err := os.ReadFile(e.dbPath())
	if err != nil {
		t.Fatal(err)
	}
	d, err := e.f.OpenDB(b)
	if err != nil {
		t.Fatal(err)
	}
	if se, err := d.SyntaxError(); err != nil || se == nil || *se != (SyntaxError{"control/toy", 3, "bad line"}) {
		t.Fatalf("compiled error %+v, %v", se, err)
	}
	if tb, err := e.f.Compile(e.home, e.run); tb != nil || !isSyntax(err, 3) {
		t.Fatalf("Compile: %v, %v", tb, err)
	}
	// Fixed: entries again.
	e.write("a=1\n\nb=2\n")
	e.expect("b", "b=2")
}

// A text that exists but cannot be read is a FileError naming it.
func TestUnreadableText(t *testing.T) {
	e := newEnv(t)
	// A directory is never readable as a file, even for root.
	os.Mkdir(e.text(), 0o755)
	_, err := e.f.Lookup(e.home, e.run, "a")
	var fe *FileError
	if !errors.As(err, &fe) || fe.File != "control/toy" {
		t.Fatalf("got %v, want a FileError naming control/toy", err)
	}
	os.Remove(e.text())
	if os.Geteuid() != 0 {
		e.write("a=1\n")
		os.Chmod(e.text(), 0)
		if _, err := e.f.Lookup(e.home, e.run, "a"); !errors.As(err, &fe) {
			t.Fatalf("unreadable text: %v", err)
		}
	}
}

// The text is read up to MaxText+1 bytes, never more, and Parse refuses
// it: a runaway file costs no more than that.
func TestTextBounded(t *testing.T) {
	e := newEnv(t)
	parse := e.f.spec.Parse
	var longest int
	e.f.spec.Parse = func(text []byte) (map[string]string, *SyntaxError) {
		longest = max(longest, len(text))
		return parse(text)
	}
	e.write(strings.Repeat("# a log written to the wrong path\n", 4*toyMaxText/34))
	want := fmt.Sprintf("control/toy: is larger than %d bytes", toyMaxText)
	if _, err := e.f.Lookup(e.home, e.run, "a"); !isSyntax(err, 0) || err.Error() != want {
		t.Fatalf("Lookup: %v, want %q", err, want)
	}
	if _, err := e.f.Compile(e.home, e.run); !isSyntax(err, 0) {
		t.Fatalf("Compile: %v", err)
	}
	if longest != toyMaxText+1 {
		t.Fatalf("Parse was given %d bytes, want MaxText+1", longest)
	}
}

func TestCompileForced(t *testing.T) {
	e := newEnv(t)
	e.write("a=1\n")
	if _, err := e.f.Compile(e.home, e.run); err != nil {
		t.Fatal(err)
	}
	ino := e.dbInode()
	before := e.f.Compiles()
	if _, err := e.f.Compile(e.home, e.run); err != nil {
		t.Fatal(err)
	}
	if e.f.Compiles()-before != 1 || e.dbInode() == ino {
		t.Fatal("Compile did not recompile a fresh cdb")
	}
	before = e.f.Compiles()
	e.expect("a", "a=1")
	if e.f.Compiles() != before {
		t.Fatal("lookup recompiled what Compile had just compiled")
	}
}

// Many lookups at once on a stale cdb: all get the new entries, one
// compiles. Each goroutine opens the lock file itself, and flock locks
// belong to the open file description, so they exclude each other as
// processes would.
func TestConcurrentCompileOnce(t *testing.T) {
	e := newEnv(t)
	e.write("a=old\n")
	e.expect("a", "a=old")
	time.Sleep(20 * time.Millisecond)
	var text bytes.Buffer
	for i := 0; i < 2000; i++ {
		fmt.Fprintf(&text, "h%d=r%d\n", i, i)
	}
	text.WriteString("a=new\n")
	e.write(text.String())

	before := e.f.Compiles()
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			host := fmt.Sprintf("h%d", i*37)
			m, err := e.f.Lookup(e.home, e.run, host)
			if want := fmt.Sprintf("h%d=r%d", i*37, i*37); err != nil || show(m) != want {
				errs <- fmt.Errorf("%s: %+v %v, want %s", host, m, err, want)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := e.f.Compiles() - before; n != 1 {
		t.Fatalf("%d compiles, want 1", n)
	}
	e.expect("a", "a=new")
}

// Readers racing with a series of compiles see one version of the table or
// another, whole: the cdb file read as it is never torn, and a lookup gets
// the entries of a version, never an error or a mixture. The number of
// reads is bounded, not their duration.
func TestReadersDuringCompile(t *testing.T) {
	e := newEnv(t)
	// Version i: a is i, b is always "same".
	version := func(i int) string { return fmt.Sprintf("a=%d\nb=same\n# version %d\n", i, i) }
	e.write(version(0))
	e.expect("a", "a=0")
	done := make(chan struct{})
	var wg sync.WaitGroup
	bad := make(chan string, 8)
	reader := func(read func() string) {
		defer wg.Done()
		for n := 0; n < 2000; n++ {
			select {
			case <-done:
				return
			default:
			}
			if s := read(); s != "" {
				bad <- s
				return
			}
		}
	}
	for r := 0; r < 2; r++ {
		wg.Add(2)
		go reader(func() string {
			b, err := os.ReadFile(e.dbPath())
			if err != nil {
				return err.Error()
			}
			if _, err := e.f.OpenDB(b); err != nil {
				return "torn cdb: " + err.Error()
			}
			return ""
		})
		go reader(func() string {
			m, err := e.f.Lookup(e.home, e.run, "b")
			if err != nil || show(m) != "b=same" {
				return fmt.Sprintf("b: %+v %v", m, err)
			}
			if m, err := e.f.Lookup(e.home, e.run, "a"); err != nil || !m.Found {
				return fmt.Sprintf("a: %+v %v", m, err)
			}
			return ""
		})
	}
	for i := 1; i <= 30; i++ {
		// By rename: a reader must never see a half-written text, which
		// is no version at all.
		tmp := e.text() + ".new"
		os.WriteFile(tmp, []byte(version(i)), 0o644)
		if err := os.Rename(tmp, e.text()); err != nil {
			t.Fatal(err)
		}
		if _, err := e.f.Compile(e.home, e.run); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	wg.Wait()
	close(bad)
	for b := range bad {
		t.Error(b)
	}
	e.expect("a", "a=30")
}
