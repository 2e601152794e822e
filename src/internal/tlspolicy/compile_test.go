package tlspolicy

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"qmail-remote-go/src/internal/ctlcdb"
	"qmail-remote-go/src/testkit/ctlcdbtest"
)

// Here, what is tlspolicy's own in its compiled form: its values (a
// policy, or the error of a poisoned key), and Lookup and Compile end to
// end. Package ctlcdb tests the machinery: staleness, the lock, damaged
// or irregular files, concurrent compiles.

// expectErr looks host up and wants the error of line, and no policy.
func expectErr(t *testing.T, home, run, host string, line int) error {
	t.Helper()
	p, err := Lookup(home, run, host)
	var se *SyntaxError
	if !errors.As(err, &se) || se.Line != line || !reflect.DeepEqual(p, Policy{}) {
		t.Fatalf("Lookup(%q) = %+v, %v; want the error of line %d", host, p, err, line)
	}
	return err
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

// Lookup and Compile end to end, poisoned keys included: through
// tlspolicy.cdb, and through the text when the run directory cannot be
// made.
func TestLookup(t *testing.T) {
	ctlcdbtest.Set(t, &compiled.RacyWindow, 0) // the cdb compiled is used at once
	for _, viaCDB := range []bool{true, false} {
		home, run := ctlcdbtest.Home(t, "tlspolicy", "a.test:verify match=mx.a.test pin="+pinA+"\nb.test:verfy\n.c.test:none\n")
		if !viaCDB {
			os.WriteFile(run, nil, 0o644)
		}
		for _, c := range []struct {
			host string
			want Policy
		}{
			{"A.test", Policy{"verify", []string{"mx.a.test"}, []string{pinA}, true, "a.test"}},
			{"x.c.test", Policy{"none", nil, nil, true, ".c.test"}},
			{"other.test", Policy{}},
		} {
			if p, err := Lookup(home, run, c.host); err != nil || !reflect.DeepEqual(p, c.want) {
				t.Errorf("cdb %v: Lookup(%q) = %+v, %v; want %+v", viaCDB, c.host, p, err, c.want)
			}
		}
		expectErr(t, home, run, "b.test", 2)
		_, err := os.Stat(filepath.Join(run, "qmail-remote", "tlspolicy.cdb"))
		if (err == nil) != viaCDB {
			t.Errorf("cdb %v: tlspolicy.cdb: %v", viaCDB, err)
		}
		// Compile: the poisoned key, or no run directory.
		var se *SyntaxError
		var fe *FileError
		if err := Compile(home, run); viaCDB && (!errors.As(err, &se) || se.Line != 2) || !viaCDB && !errors.As(err, &fe) {
			t.Errorf("cdb %v: Compile: %v", viaCDB, err)
		}
	}
	// Without the text, no policies; a text that cannot be read is a
	// FileError naming it.
	home, run := ctlcdbtest.Home(t, "tlspolicy", "")
	if p, err := Lookup(home, run, "a.test"); err != nil || !reflect.DeepEqual(p, Policy{}) {
		t.Errorf("no text: %+v, %v", p, err)
	}
	os.Mkdir(filepath.Join(home, "control", "tlspolicy"), 0o755)
	var fe *FileError
	if _, err := Lookup(home, run, "a.test"); !errors.As(err, &fe) || fe.File != File {
		t.Fatalf("got %v, want a FileError naming control/tlspolicy", err)
	}
}

// Syntax errors are compiled once, file-wide or per key alike, and read
// back from the cdb as the parser made them; Compile returns them all.
func TestSyntaxErrorCompiledOnce(t *testing.T) {
	ctlcdbtest.Set(t, &compiled.RacyWindow, 0) // the cdb compiled is used at once
	home, run := ctlcdbtest.Home(t, "tlspolicy", "a.test:may\n\nbank.example:verfy\n.bank.example:encrypt pin=00\n:dane\n")
	expect := func(host, level string) {
		t.Helper()
		if p, err := Lookup(home, run, host); err != nil || p.Level != level {
			t.Fatalf("Lookup(%q) = %+v, %v; want level %q", host, p, err, level)
		}
	}
	before := compiled.Compiles()
	for i := 0; i < 3; i++ {
		err := expectErr(t, home, run, "bank.example", 3)
		if got := err.Error(); got != `control/tlspolicy line 3: unknown level "verfy" (none, may, encrypt, verify, dane, dane-only)` {
			t.Fatalf("error text %q", got)
		}
		expectErr(t, home, run, "mx.bank.example", 4)
		expect("a.test", "may")
		expect("other.test", "dane")
	}
	if n := compiled.Compiles() - before; n != 1 {
		t.Fatalf("%d compiles, want 1", n)
	}
	err := Compile(home, run)
	want := "control/tlspolicy line 3: unknown level \"verfy\" (none, may, encrypt, verify, dane, dane-only)\n" +
		"control/tlspolicy line 4: bad pin \"00\" (64 hex digits: the SHA-256 of the server's SubjectPublicKeyInfo)"
	if err == nil || err.Error() != want {
		t.Fatalf("Compile: %v", err)
	}
	// A file-wide error: every lookup.
	ctlcdbtest.Write(t, home, "tlspolicy", "a.test:may\nbank.example verify\n")
	before = compiled.Compiles()
	for _, h := range []string{"a.test", "b.test", "a.test"} {
		if err := expectErr(t, home, run, h, 2); err.Error() != `control/tlspolicy line 2: missing ':' in "bank.example verify"` {
			t.Fatalf("error text %q", err)
		}
	}
	if n := compiled.Compiles() - before; n != 1 {
		t.Fatalf("%d compiles, want 1", n)
	}
	var se *SyntaxError
	if err := Compile(home, run); !errors.As(err, &se) || se.Line != 2 {
		t.Fatalf("Compile: %v", err)
	}
	ctlcdbtest.Write(t, home, "tlspolicy", "a.test:may\nbank.example:verify\n")
	expect("bank.example", "verify")
	if err := Compile(home, run); err != nil {
		t.Fatal(err)
	}
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
}

// BenchmarkLookup measures a delivery's lookup in a fresh 1000-line cdb.
func BenchmarkLookup(b *testing.B) {
	ctlcdbtest.Set(b, &compiled.RacyWindow, 0)
	var text bytes.Buffer
	for i := 0; i < 1000; i++ {
		fmt.Fprintf(&text, ".d%d.example.test:verify match=mx%d.example.test\n", i, i)
	}
	ctlcdbtest.BenchLookup(b, "tlspolicy", text.String(), Compile, func(home, run string) error {
		p, err := Lookup(home, run, "mx.d500.example.test")
		if err == nil && (len(p.Match) != 1 || p.Match[0] != "mx500.example.test") {
			err = fmt.Errorf("got %+v", p)
		}
		return err
	})
}
