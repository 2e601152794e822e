package ctlcdb

import (
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"qmail-remote-go/src/testkit/backstop"
	"qmail-remote-go/src/testkit/ctlcdbtest"
)

// toy is a minimal table: "key=value" lines (no '=' in the value), a
// host tried as itself then as the default "". The machinery is tested
// through it; the tests of routes and tlspolicy cover their formats.
func toy() *File[string] {
	f := New(Spec[string]{
		Text: "control/toy", DB: "toy.cdb", Tmp: "toy.cdb.tmp", Lock: "toy.lock",
		Magic: "TOY1", MaxText: toyMaxText,
		Parse: func(text []byte) (map[string]string, *SyntaxError) {
			t := map[string]string{}
			err := ReadLines("control/toy", text, toyMaxText, 100, func(_ int, l string) string {
				k, v, ok := strings.Cut(l, "=")
				if !ok || strings.Contains(v, "=") || strings.HasPrefix(k, "\x00") {
					return "bad line"
				}
				t[k] = v
				return ""
			})
			if err != nil {
				return nil, err
			}
			return t, nil
		},
		Keys:      func(h string) []string { return []string{h, ""} },
		Marshal:   func(v string) []byte { return []byte(v) },
		Unmarshal: func(b []byte) (string, bool) { return string(b), !strings.Contains(string(b), "=") },
	})
	f.RacyWindow = 0
	return f
}

const toyMaxText = 64 << 10

func dirs(t *testing.T) (home, run string) { return ctlcdbtest.Home(t, "toy", "") }

func TestLookupAndCompile(t *testing.T) {
	f := toy()
	home, run := dirs(t)
	if m, err := f.Lookup(home, run, "a"); err != nil || m.Found {
		t.Fatalf("no text: %+v %v", m, err)
	}
	os.WriteFile(filepath.Join(home, "control/toy"), []byte("a=1\n=dflt\n"), 0o644)
	for _, c := range []struct{ host, key, value string }{{"a", "a", "1"}, {"b", "", "dflt"}} {
		m, err := f.Lookup(home, run, c.host)
		if err != nil || !m.Found || m.Key != c.key || m.Value != c.value {
			t.Errorf("Lookup(%q) = %+v, %v", c.host, m, err)
		}
	}
	if f.Compiles() != 1 {
		t.Errorf("%d compiles, want 1", f.Compiles())
	}
	tb, err := f.Compile(home, run)
	if err != nil || len(tb) != 2 || tb["a"] != "1" {
		t.Fatalf("Compile = %v, %v", tb, err)
	}
	os.WriteFile(filepath.Join(home, "control/toy"), []byte("a=1\nbad\n"), 0o644)
	tb, err = f.Compile(home, run)
	var se *SyntaxError
	if tb != nil || !errors.As(err, &se) || err.Error() != "control/toy line 2: bad line" {
		t.Fatalf("Compile = %v, %v", tb, err)
	}
}

// The slow path's open: readText opens what statText said was a file, and
// it may be a FIFO by then.
func TestTextFIFOSlowPath(t *testing.T) {
	f := toy()
	home, _ := dirs(t)
	p := filepath.Join(home, "control/toy")
	if err := unix.Mkfifo(p, 0o644); err != nil {
		t.Fatal(err)
	}
	var err error
	backstop.Within(t, "lookupText", func() error { _, err = f.lookupText(p, "a"); return nil })
	if err == nil || err.Error() != "control/toy: not a regular file (a FIFO)" {
		t.Errorf("lookupText: %v", err)
	}
}

// A value Unmarshal refuses is damage: the lookup fails, and through
// Lookup the cdb is recompiled, not trusted.
func TestUnmarshalRefusal(t *testing.T) {
	f := toy()
	b, err := f.EncodeDB(map[string]string{"a": "x=y"}, nil, Stamp{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := f.OpenDB(b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Lookup("a"); err != errCorrupt {
		t.Fatalf("refused value: %v", err)
	}
	if m, err := d.Lookup("b"); err != nil || m.Found {
		t.Fatalf("absent key: %+v %v", m, err)
	}
}

func TestEncodeRefusesNULKey(t *testing.T) {
	if _, err := toy().EncodeDB(map[string]string{"\x00stamp": "x"}, nil, Stamp{}); err == nil {
		t.Fatal("a key that could hide the stamp was encoded")
	}
}

// Another format's cdb (another magic) is not ours, even intact.
func TestMagic(t *testing.T) {
	f := toy()
	b, _ := f.EncodeDB(map[string]string{"a": "1"}, nil, Stamp{})
	g := toy()
	g.spec.Magic = "TOY2"
	if _, err := g.OpenDB(b); err == nil {
		t.Fatal("cdb with another magic opened")
	}
	defer func() {
		if recover() == nil {
			t.Error("New accepted a 3-byte magic")
		}
	}()
	New(Spec[string]{Magic: "abc"})
}

func TestFirst(t *testing.T) {
	tb := map[string]int{"b": 2, "": 0}
	if m := First(tb, []string{"a", "b", ""}); !m.Found || m.Key != "b" || m.Value != 2 {
		t.Errorf("%+v", m)
	}
	if m := First(tb, []string{"a"}); m.Found {
		t.Errorf("%+v", m)
	}
}

func TestErrorTexts(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{&SyntaxError{"control/x", 0, "is larger than 9 bytes"}, "control/x: is larger than 9 bytes"},
		{&SyntaxError{"control/x", 7, "bad"}, "control/x line 7: bad"},
		{&FileError{"control/x", &os.PathError{Op: "open", Path: "/q/control/x", Err: unix.EACCES}}, "control/x: open: permission denied"},
	} {
		if got := c.err.Error(); got != c.want {
			t.Errorf("%q, want %q", got, c.want)
		}
	}
}

// TestCRC32C: our byte-a-step CRC-32C gives hash/crc32's sums, small and
// big inputs alike.
func TestCRC32C(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 7, 2056, 65536, 300 << 10} {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		if got, want := crc32c(b), crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)); got != want {
			t.Errorf("%d bytes: %08x, want %08x", n, got, want)
		}
	}
}

func ExampleSyntaxError() {
	fmt.Println(&SyntaxError{"control/smtproutes", 3, `bad port "99999"`})
	// Output: control/smtproutes line 3: bad port "99999"
}
