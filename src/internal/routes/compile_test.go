package routes

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"qmail-remote-go/src/internal/ctlcdb"
	"qmail-remote-go/src/testkit/ctlcdbtest"
)

// What is smtproutes' own in its compiled form: the values of
// smtproutes.cdb, and Lookup and Compile end to end. The machinery (when
// the cdb is stale, its lock, damaged files, files that are not regular,
// concurrency) is tested in package ctlcdb.

// dbLookup is Lookup in the cdb b.
func dbLookup(t *testing.T, b []byte, host string) Route {
	t.Helper()
	d, err := compiled.OpenDB(b)
	if err != nil {
		t.Fatalf("own cdb refused: %v", err)
	}
	m, err := d.Lookup(host)
	if err != nil {
		t.Fatalf("lookup %q: %v", host, err)
	}
	return route(m)
}

// Lookup and Compile end to end: through smtproutes.cdb, and through the
// text when the run directory cannot be made.
func TestLookup(t *testing.T) {
	ctlcdbtest.Set(t, &compiled.RacyWindow, 0) // the cdb compiled is used at once
	for _, viaCDB := range []bool{true, false} {
		home, run := ctlcdbtest.Home(t, "smtproutes", "inside.af.mil:firewall.af.mil:26\n.af.mil:\n:heaven.af.mil\n[IPv6:2001:db8::1]:[2001:db8::99]:2525\n")
		if !viaCDB {
			os.WriteFile(run, nil, 0o644)
		}
		for _, c := range []struct {
			host string
			want Route
		}{
			{"Inside.AF.mil", Route{"firewall.af.mil", 26, true}},
			{"x.af.mil", Route{"", 25, true}},
			{"[2001:db8:0::1]", Route{"[2001:db8::99]", 2525, true}},
			{"example.test", Route{"heaven.af.mil", 25, true}},
		} {
			if r, err := Lookup(home, run, c.host); err != nil || r != c.want {
				t.Errorf("cdb %v: Lookup(%q) = %+v, %v; want %+v", viaCDB, c.host, r, err, c.want)
			}
		}
		_, err := os.Stat(filepath.Join(run, "qmail-remote", "smtproutes.cdb"))
		if (err == nil) != viaCDB {
			t.Errorf("cdb %v: smtproutes.cdb: %v", viaCDB, err)
		}
		if err := Compile(home, run); (err == nil) != viaCDB {
			t.Errorf("cdb %v: Compile: %v", viaCDB, err)
		}
	}
	// Without the text, no routes.
	home, run := ctlcdbtest.Home(t, "smtproutes", "")
	if r, err := Lookup(home, run, "a.test"); err != nil || r != NoRoute {
		t.Errorf("no text: %+v, %v", r, err)
	}
	if err := Compile(home, run); err != nil {
		t.Errorf("Compile without a text: %v", err)
	}
}

// Errors name control/smtproutes: a syntax error, compiled and read back
// from the cdb, and from Compile; a text that cannot be read.
func TestLookupErrors(t *testing.T) {
	ctlcdbtest.Set(t, &compiled.RacyWindow, 0) // the cdb compiled is used at once
	home, run := ctlcdbtest.Home(t, "smtproutes", "a.test:r1.test\n\nb.test:r2.test:99999\n")
	want := `control/smtproutes line 3: bad port "99999"`
	var se *SyntaxError
	for i := 0; i < 2; i++ { // compiled, then from the cdb
		if r, err := Lookup(home, run, "a.test"); !errors.As(err, &se) || err.Error() != want || r != NoRoute {
			t.Fatalf("Lookup: %+v, %v; want %q", r, err, want)
		}
	}
	if err := Compile(home, run); !errors.As(err, &se) || err.Error() != want {
		t.Fatalf("Compile: %v, want %q", err, want)
	}
	home, run = ctlcdbtest.Home(t, "smtproutes", "")
	os.Mkdir(filepath.Join(home, "control", "smtproutes"), 0o755)
	var fe *FileError
	if _, err := Lookup(home, run, "a.test"); !errors.As(err, &fe) || fe.File != "control/smtproutes" {
		t.Fatalf("got %v, want a FileError naming control/smtproutes", err)
	}
}

// The cdb answers every lookup as the parsed table does.
func TestCDBRoundTrip(t *testing.T) {
	tb := mustParse(t, `a.test:r1.test:26
.b.test:
:default.test:2525
[192.0.2.1]:[192.0.2.7]
[IPv6:2001:db8::1]:[2001:db8::7]:587
`)
	b, err := compiled.EncodeDB(tb.routes, nil, ctlcdb.Stamp{Dev: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"a.test", "A.TEST", "x.b.test", "b.test", "c.test", "[192.0.2.1]", "[IPv6:2001:db8::1]", "[2001:db8::2]", ""} {
		if r, want := dbLookup(t, b, h), tb.Lookup(h); r != want {
			t.Errorf("%q: cdb %+v, table %+v", h, r, want)
		}
	}
}

// A value of smtproutes.cdb is decoded only if it is exactly what the
// compile writes for a route the parser can make: a damaged file can never
// route mail somewhere the text did not say.
func TestDecodeRoute(t *testing.T) {
	valid := []Route{
		{"r.test", 25, true}, {"", 2525, true}, {"relay_1.test.", 1, true},
		{"[192.0.2.7]", 26, true}, {"[2001:db8::7]", 65535, true},
	}
	var values []string
	for _, r := range valid {
		v := encodeRoute(r)
		if got, ok := decodeRoute(v); !ok || got != r {
			t.Errorf("%q: %+v %v, want %+v", v, got, ok, r)
		}
		values = append(values, string(v))
	}
	for _, v := range []string{
		"", "r.test", "r.test:", "r.test:0", "r.test:65536", "r.test:025", "r.test:+25", "R.test:25",
		"r..test:25", "r test:25", "r/test:25", "192.0.2.7:25", "[192.0.2.07]:25", "[192.0.2.7:25",
		"[IPv6:2001:db8::7]:25", "[2001:DB8::7]:25", "[::ffff:192.0.2.7]:25", "2001:db8::7:25",
	} {
		if r, ok := decodeRoute([]byte(v)); ok {
			t.Errorf("%q accepted: %+v", v, r)
		}
	}
	// Random damage: refused, or the route of a line the parser reads so.
	ctlcdbtest.Damage(20000, values, "0123456789:.[]aR_- \x00\xff", func(v []byte) {
		r, ok := decodeRoute(v)
		if !ok {
			return
		}
		tb, err := Parse([]byte("x:" + string(v) + "\n"))
		if err != nil || tb.Lookup("x") != r || string(encodeRoute(r)) != string(v) {
			t.Fatalf("%q decoded as %+v; the line x:%s parses as %+v %v", v, r, v, tb, err)
		}
	})
}

// BenchmarkLookup measures a delivery's lookup in a fresh 1000-route cdb.
func BenchmarkLookup(b *testing.B) {
	ctlcdbtest.Set(b, &compiled.RacyWindow, 0)
	var text bytes.Buffer
	for i := 0; i < 1000; i++ {
		fmt.Fprintf(&text, ".d%d.example.test:relay%d.example.test:%d\n", i, i, 1000+i)
	}
	before := compiled.Compiles()
	ctlcdbtest.BenchLookup(b, "smtproutes", text.String(), Compile, func(home, run string) error {
		r, err := Lookup(home, run, "mx.d500.example.test")
		if err == nil && r.Relay != "relay500.example.test" {
			err = fmt.Errorf("got %+v", r)
		}
		return err
	})
	if n := compiled.Compiles() - before; n != 1 {
		b.Fatalf("%d compiles, want 1: the benchmark recompiled", n)
	}
}
