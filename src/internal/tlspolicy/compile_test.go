package tlspolicy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"qmail-remote-go/src/internal/ctlcdb"
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

func (e *env) text() string     { return filepath.Join(e.home, "control", "tlspolicy") }
func (e *env) dbPath() string   { return filepath.Join(e.run, "qmail-remote", dbName) }
func (e *env) lockPath() string { return filepath.Join(e.run, "qmail-remote", lockName) }
func (e *env) tmpPath() string  { return filepath.Join(e.run, "qmail-remote", tmpName) }

func (e *env) write(s string) {
	e.t.Helper()
	if err := os.WriteFile(e.text(), []byte(s), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// expect looks host up and wants level (with no error), "" for no policy.
func (e *env) expect(host, level string) Policy {
	e.t.Helper()
	p, err := Lookup(e.home, e.run, host)
	if err != nil || p.Level != level || p.Found != (level != "") {
		e.t.Fatalf("Lookup(%q) = %+v, %v; want level %q", host, p, err, level)
	}
	return p
}

// expectErr looks host up and wants the error of line.
func (e *env) expectErr(host string, line int) error {
	e.t.Helper()
	p, err := Lookup(e.home, e.run, host)
	var se *SyntaxError
	if !errors.As(err, &se) || se.Line != line || !reflect.DeepEqual(p, Policy{}) {
		e.t.Fatalf("Lookup(%q) = %+v, %v; want the error of line %d", host, p, err, line)
	}
	return err
}

func (e *env) dbInode() uint64 {
	e.t.Helper()
	fi, err := os.Stat(e.dbPath())
	if err != nil {
		e.t.Fatalf("no cdb: %v", err)
	}
	return ctlcdb.StampOf(fi).Ino
}

// dbLookup is Lookup in an encoded cdb.
func dbLookup(t *testing.T, b []byte, host string) (Policy, error) {
	t.Helper()
	d, err := compiled.OpenDB(b)
	if err != nil {
		t.Fatalf("own cdb refused: %v", err)
	}
	if se, err := d.SyntaxError(); err != nil || se != nil {
		return Policy{}, errors.Join(err, se)
	}
	m, err := d.Lookup(host)
	if err != nil {
		t.Fatalf("lookup %q: %v", host, err)
	}
	return result(m)
}

func TestLookupCompilesOnce(t *testing.T) {
	noRacyWindow(t)
	e := newEnv(t)
	e.write("a.test:verify match=mx.a.test pin=" + pinA + "\n")
	before := compiled.Compiles()
	p := e.expect("a.test", "verify")
	if want := (Policy{"verify", []string{"mx.a.test"}, []string{pinA}, true, "a.test"}); !reflect.DeepEqual(p, want) {
		t.Fatalf("got %+v, want %+v", p, want)
	}
	ino := e.dbInode()
	for i := 0; i < 5; i++ {
		e.expect("A.test", "verify")
		e.expect("b.test", "")
	}
	if n := compiled.Compiles() - before; n != 1 {
		t.Fatalf("%d compiles, want 1", n)
	}
	if e.dbInode() != ino {
		t.Fatal("cdb replaced although fresh")
	}
	if _, err := os.Stat(e.tmpPath()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary file left behind: %v", err)
	}
}

// Two edits with the same size and mtime: the ctime (and, for an edit by
// rename, the inode) still tells them apart.
func TestStaleSameSizeSameMtime(t *testing.T) {
	noRacyWindow(t)
	e := newEnv(t)
	e.write("a.test:none\n")
	e.expect("a.test", "none")
	fi, _ := os.Stat(e.text())
	mtime := fi.ModTime()

	time.Sleep(20 * time.Millisecond) // let the kernel's coarse clock tick
	e.write("a.test:dane\n")
	os.Chtimes(e.text(), mtime, mtime)
	e.expect("a.test", "dane")

	time.Sleep(20 * time.Millisecond)
	tmp := e.text() + ".new"
	os.WriteFile(tmp, []byte("a.test:may \n"), 0o644)
	os.Chtimes(tmp, mtime, mtime)
	if err := os.Rename(tmp, e.text()); err != nil {
		t.Fatal(err)
	}
	e.expect("a.test", "may")
}

// As routes' TestRacy: a same-tick edit is caught by the racy rule.
func TestRacy(t *testing.T) {
	old := compiled.RacyWindow
	compiled.RacyWindow = time.Hour
	defer func() { compiled.RacyWindow = old }()
	e := newEnv(t)
	e.write("a.test:none\n")
	fi, _ := os.Stat(e.text())
	mtime := fi.ModTime()
	e.expect("a.test", "none") // compiled, racy

	e.write("a.test:dane\n")
	os.Chtimes(e.text(), mtime, mtime)
	fi, _ = os.Stat(e.text())
	st1 := ctlcdb.StampOf(fi)
	st1.Compiled = st1.Changed() + 1
	b, err := compiled.EncodeDB(mustParse(t, "a.test:none\n").entries, nil, st1)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(e.dbPath(), b, 0o644)
	before := compiled.Compiles()
	e.expect("a.test", "dane")
	if compiled.Compiles() != before {
		t.Fatal("compiled within the racy window")
	}
	compiled.RacyWindow = 10 * time.Millisecond
	time.Sleep(2 * compiled.RacyWindow)
	e.expect("a.test", "dane")
	e.expect("a.test", "dane")
	if n := compiled.Compiles() - before; n != 1 {
		t.Fatalf("%d compiles after the window, want 1", n)
	}
}

func TestDeletedText(t *testing.T) {
	noRacyWindow(t)
	e := newEnv(t)
	e.write(":dane\n")
	e.expect("a.test", "dane")
	os.Remove(e.text())
	e.expect("a.test", "")
	if err := Compile(e.home, e.run); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(e.dbPath()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Compile left the cdb of a deleted text: %v", err)
	}
	newEnv(t).expect("a.test", "") // no run directory at all
}

func resum(body []byte) []byte {
	b := append(bytes.Clone(body), "QTP1"...)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli)))
}

// A damaged cdb is recompiled, never trusted; a value the parser could
// not have written is damage even behind a valid checksum.
func TestCorruptCDB(t *testing.T) {
	noRacyWindow(t)
	e := newEnv(t)
	e.write("a.test:verify match=m.test\n:dane\n")
	e.expect("a.test", "verify")
	good, _ := os.ReadFile(e.dbPath())
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0x20
	// "verify" turned into "encrypt": same length, so the cdb holds.
	weak := resum(bytes.Replace(good[:len(good)-8], []byte("verify match=m.test"), []byte("encrypt match=m.tes"), 1))
	routes, _ := os.ReadFile(e.dbPath())
	routes = append(routes[:len(routes)-8], "QRR1"...) // another table's magic
	for name, b := range map[string][]byte{
		"empty": {}, "truncated": good[:len(good)/2], "flipped": flipped,
		"bad value": weak, "other magic": routes,
	} {
		os.WriteFile(e.dbPath(), b, 0o644)
		before := compiled.Compiles()
		e.expect("a.test", "verify")
		e.expect("b.test", "dane")
		if compiled.Compiles()-before != 1 {
			t.Errorf("%s: corrupt cdb not recompiled", name)
		}
	}
}

// Anything but a regular file in place of the text or the cdb is a
// FileError naming it, at once; in place of the lock or the temporary
// file it does not even stop the delivery.
func TestNotRegular(t *testing.T) {
	noRacyWindow(t)
	fifo := func(p string) error { return unix.Mkfifo(p, 0o644) }
	tests := []struct {
		name string
		path func(e *env) string
		want func(e *env) string // "" the lookup succeeds
	}{
		{"text", (*env).text, func(*env) string { return "control/tlspolicy: not a regular file (a FIFO)" }},
		{"cdb", (*env).dbPath, func(e *env) string { return e.dbPath() + ": not a regular file (a FIFO); remove it" }},
		{"lock", (*env).lockPath, func(*env) string { return "" }},
		{"temporary file", (*env).tmpPath, func(*env) string { return "" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.write("a.test:encrypt\n")
			os.MkdirAll(filepath.Dir(e.dbPath()), 0o755)
			os.Remove(tc.path(e))
			if err := fifo(tc.path(e)); err != nil {
				t.Fatal(err)
			}
			var p Policy
			var err error
			backstop.Within(t, "Lookup", func() error { p, err = Lookup(e.home, e.run, "a.test"); return nil })
			want := tc.want(e)
			if want == "" {
				if err != nil || p.Level != "encrypt" {
					t.Errorf("Lookup = %+v, %v; want the policy", p, err)
				}
				return
			}
			var fe *FileError
			if !errors.As(err, &fe) || err.Error() != want {
				t.Errorf("Lookup: %v, want %q", err, want)
			}
		})
	}
}

// Syntax errors are compiled once, file-wide or per key alike, and read
// back from the cdb as the parser made them.
func TestSyntaxErrorCompiledOnce(t *testing.T) {
	noRacyWindow(t)
	e := newEnv(t)
	e.write("a.test:may\n\nbank.example:verfy\n.bank.example:encrypt pin=00\n:dane\n")
	before := compiled.Compiles()
	for i := 0; i < 3; i++ {
		err := e.expectErr("bank.example", 3)
		if got := err.Error(); got != `control/tlspolicy line 3: unknown level "verfy" (none, may, encrypt, verify, dane, dane-only)` {
			t.Fatalf("error text %q", got)
		}
		e.expectErr("mx.bank.example", 4)
		e.expect("a.test", "may")
		e.expect("other.test", "dane")
	}
	if n := compiled.Compiles() - before; n != 1 {
		t.Fatalf("%d compiles, want 1", n)
	}
	err := Compile(e.home, e.run)
	want := "control/tlspolicy line 3: unknown level \"verfy\" (none, may, encrypt, verify, dane, dane-only)\n" +
		"control/tlspolicy line 4: bad pin \"00\" (64 hex digits: the SHA-256 of the server's SubjectPublicKeyInfo)"
	if err == nil || err.Error() != want {
		t.Fatalf("Compile: %v", err)
	}
	// A file-wide error: every lookup.
	e.write("a.test:may\nbank.example verify\n")
	before = compiled.Compiles()
	for _, h := range []string{"a.test", "b.test", "a.test"} {
		if err := e.expectErr(h, 2); err.Error() != `control/tlspolicy line 2: missing ':' in "bank.example verify"` {
			t.Fatalf("error text %q", err)
		}
	}
	if n := compiled.Compiles() - before; n != 1 {
		t.Fatalf("%d compiles, want 1", n)
	}
	var se *SyntaxError
	if err := Compile(e.home, e.run); !errors.As(err, &se) || se.Line != 2 {
		t.Fatalf("Compile: %v", err)
	}
	e.write("a.test:may\nbank.example:verify\n")
	e.expect("bank.example", "verify")
	if err := Compile(e.home, e.run); err != nil {
		t.Fatal(err)
	}
}

// The run directory cannot be created: the text is parsed for each
// delivery, correctly, errors included.
func TestUnwritableRunDir(t *testing.T) {
	noRacyWindow(t)
	e := newEnv(t)
	e.write("a.test:verify\nb.test:verfy\n")
	os.WriteFile(e.run, []byte("not a directory"), 0o644)
	before := compiled.Compiles()
	e.expect("a.test", "verify")
	e.expectErr("b.test", 2)
	if compiled.Compiles() != before {
		t.Fatal("compiled into a run directory that cannot exist")
	}
	if _, ok := Compile(e.home, e.run).(*FileError); !ok {
		t.Fatal("Compile without a run directory: no FileError")
	}
}

func TestUnreadableText(t *testing.T) {
	noRacyWindow(t)
	e := newEnv(t)
	os.Mkdir(e.text(), 0o755)
	var fe *FileError
	if _, err := Lookup(e.home, e.run, "a.test"); !errors.As(err, &fe) || fe.File != File {
		t.Fatalf("got %v, want a FileError naming control/tlspolicy", err)
	}
}

func TestCompileForced(t *testing.T) {
	noRacyWindow(t)
	e := newEnv(t)
	e.write("a.test:verify\n")
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
	e.expect("a.test", "verify")
	if compiled.Compiles() != before {
		t.Fatal("lookup recompiled what Compile had just compiled")
	}
}

// Many lookups at once on a stale cdb: all get the new policies, one
// compiles (each goroutine's flock is its own, as a process's would be).
func TestConcurrentCompileOnce(t *testing.T) {
	noRacyWindow(t)
	e := newEnv(t)
	e.write("a.test:none\n")
	e.expect("a.test", "none")
	time.Sleep(20 * time.Millisecond)
	var text bytes.Buffer
	for i := 0; i < 2000; i++ {
		fmt.Fprintf(&text, "h%d.test:%s\n", i, Levels[i%len(Levels)])
	}
	e.write(text.String())
	before := compiled.Compiles()
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			host := fmt.Sprintf("h%d.test", i*37)
			p, err := Lookup(e.home, e.run, host)
			if err != nil || p.Level != Levels[i*37%len(Levels)] {
				errs <- fmt.Errorf("%s: %+v %v", host, p, err)
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
}

// Readers looking up during a series of recompiles see one version of the
// file or another, whole: the level of a version, never an error or a
// mixture. The number of lookups is bounded, not their duration.
func TestReadersDuringCompile(t *testing.T) {
	noRacyWindow(t)
	e := newEnv(t)
	// Version i: a.test at Levels[i%6], b.test always verify with pinA.
	version := func(i int) string {
		return fmt.Sprintf("a.test:%s\nb.test:verify pin=%s\n# version %d\n", Levels[i%len(Levels)], pinA, i)
	}
	e.write(version(0))
	e.expect("a.test", "none")
	done := make(chan struct{})
	var wg sync.WaitGroup
	bad := make(chan string, 8)
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 2000; n++ {
				select {
				case <-done:
					return
				default:
				}
				p, err := Lookup(e.home, e.run, "b.test")
				if err != nil || p.Level != "verify" || len(p.Pins) != 1 {
					bad <- fmt.Sprintf("b.test: %+v %v", p, err)
					return
				}
				if p, err := Lookup(e.home, e.run, "a.test"); err != nil || !p.Found {
					bad <- fmt.Sprintf("a.test: %+v %v", p, err)
					return
				}
			}
		}()
	}
	for i := 1; i <= 30; i++ {
		// By rename: a reader must never see a half-written text, which
		// is no version at all.
		tmp := e.text() + ".new"
		os.WriteFile(tmp, []byte(version(i)), 0o644)
		if err := os.Rename(tmp, e.text()); err != nil {
			t.Fatal(err)
		}
		if err := Compile(e.home, e.run); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	wg.Wait()
	close(bad)
	for b := range bad {
		t.Error(b)
	}
	e.expect("a.test", Levels[30%len(Levels)])
}

// The cdb answers every lookup as the parsed table does.
func TestCDBRoundTrip(t *testing.T) {
	tb := mustParse(t, `bank.example:verify match=mx.bank.example,.bank.example
partner.test:encrypt pin=`+pinA+`,`+pinB+`
.mil:verfy
[192.0.2.1]:none
:dane
`)
	b, err := compiled.EncodeDB(tb.entries, nil, ctlcdb.Stamp{Dev: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"bank.example", "BANK.EXAMPLE", "mx.bank.example", "partner.test", "x.af.mil", "[192.0.2.1]", "[192.0.2.2]", "other.test", ""} {
		p, err := dbLookup(t, b, h)
		wp, werr := tb.Lookup(h)
		if !reflect.DeepEqual(p, wp) || fmt.Sprint(err) != fmt.Sprint(werr) {
			t.Errorf("%q: cdb %+v %v, table %+v %v", h, p, err, wp, werr)
		}
	}
	b2, _ := compiled.EncodeDB(tb.entries, nil, ctlcdb.Stamp{Dev: 1})
	if !bytes.Equal(b, b2) {
		t.Error("two compiles of one table differ")
	}
}

// Random damage must never crash a lookup, and damage the checksum sees
// must never yield a policy.
func TestCorruptCDBNeverMisapplies(t *testing.T) {
	tb := mustParse(t, "a.test:verify match=m.test\n.b.test:encrypt pin="+pinA+"\nc.test:verfy\n:dane\n")
	good, _ := compiled.EncodeDB(tb.entries, nil, ctlcdb.Stamp{Dev: 1})
	rng := rand.New(rand.NewSource(2))
	for i := 0; i < 2000; i++ {
		b := bytes.Clone(good)
		for n := 1 + rng.Intn(4); n > 0; n-- {
			b[rng.Intn(len(b)-8)] = byte(rng.Intn(256))
		}
		resummed := rng.Intn(2) == 0
		if resummed {
			b = resum(b[:len(b)-8])
		}
		d, err := compiled.OpenDB(b)
		if err != nil {
			continue
		}
		if !resummed && !bytes.Equal(b, good) {
			t.Fatal("damaged file passed the checksum")
		}
		for _, h := range []string{"a.test", "x.b.test", "c.test", "d.test"} {
			d.Lookup(h)
		}
		d.Stamp()
		d.SyntaxError()
	}
}

// BenchmarkLookup measures a delivery's lookup in a fresh 1000-line cdb.
func BenchmarkLookup(b *testing.B) {
	root := b.TempDir()
	home, run := filepath.Join(root, "qmail"), filepath.Join(root, "qmail", "run")
	os.MkdirAll(filepath.Join(home, "control"), 0o755)
	var text bytes.Buffer
	for i := 0; i < 1000; i++ {
		fmt.Fprintf(&text, ".d%d.example.test:verify match=mx%d.example.test\n", i, i)
	}
	os.WriteFile(filepath.Join(home, "control", "tlspolicy"), text.Bytes(), 0o644)
	old := compiled.RacyWindow
	compiled.RacyWindow = 0
	defer func() { compiled.RacyWindow = old }()
	if err := Compile(home, run); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p, err := Lookup(home, run, "mx.d500.example.test")
		if err != nil || p.Match[0] != "mx500.example.test" {
			b.Fatal(p, err)
		}
	}
}
