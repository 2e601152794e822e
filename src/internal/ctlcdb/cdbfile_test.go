package ctlcdb

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"math/rand/v2"
	"runtime"
	"testing"
)

// The compiled form (cdbfile.go) through the toy table: its round trip,
// its checksum, its bounded reads.

// trailer is the trailer of a cdb whose body is body, with hash/crc32's
// CRC-32C: a sum our own crc32c did not make.
func trailer(body []byte, magic string) []byte {
	return binary.LittleEndian.AppendUint32([]byte(magic), crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli)))
}

// The cdb answers every lookup as the table does, gives back its stamp,
// and is the same bytes for the same table.
func TestCDBRoundTrip(t *testing.T) {
	f := toy()
	tb := map[string]string{"a": "1", "b": "", "c.d": "3", "": "dflt"}
	st := Stamp{Dev: 1, Ino: 2, Size: 3, Mtime: 4, Ctime: 5, Compiled: 6}
	b, err := f.EncodeDB(tb, nil, st)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b[len(b)-8:], trailer(b[:len(b)-8], "TOY1")) {
		t.Fatalf("trailer %x", b[len(b)-8:])
	}
	d, err := f.OpenDB(b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := d.Stamp()
	if err != nil || got != st {
		t.Fatalf("stamp %+v %v, want %+v", got, err, st)
	}
	if se, err := d.SyntaxError(); se != nil || err != nil {
		t.Fatalf("syntax error %v %v in a sound table", se, err)
	}
	for _, h := range []string{"a", "b", "c.d", "c", "x", ""} {
		m, err := d.Lookup(h)
		if err != nil {
			t.Fatal(err)
		}
		if want := First(tb, f.spec.Keys(h)); m != want {
			t.Errorf("%q: cdb %+v, table %+v", h, m, want)
		}
	}
	// Reproducible: same input, same bytes.
	b2, _ := f.EncodeDB(tb, nil, st)
	if !bytes.Equal(b, b2) {
		t.Error("two compiles of one table differ")
	}
	// A syntax error is the whole table.
	b, err = f.EncodeDB(tb, &SyntaxError{"control/toy", 7, "bad line"}, st)
	if err != nil {
		t.Fatal(err)
	}
	if d, err = f.OpenDB(b); err != nil {
		t.Fatal(err)
	}
	if se, err := d.SyntaxError(); err != nil || se == nil || se.Error() != "control/toy line 7: bad line" {
		t.Fatalf("syntax error %v %v", se, err)
	}
	if m, err := d.Lookup("a"); err != nil || m.Found {
		t.Fatalf("entry %+v %v beside a syntax error", m, err)
	}
}

// Random damage to a valid file must never panic or allocate wildly, and
// damage the checksum sees must never yield an entry. (Damage behind a
// recomputed checksum can change a value into another valid one: nothing
// but the checksum can catch that, so there we only require no crash.)
func TestCorruptCDBNeverMisapplies(t *testing.T) {
	f := toy()
	tb := map[string]string{"a": "1", "b.test": "r2", "[192.0.2.1]": "lit", "": "dflt"}
	good, err := f.EncodeDB(tb, nil, Stamp{Dev: 1, Ino: 2, Size: 3, Mtime: 4, Ctime: 5, Compiled: 6})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(2, 2))
	hosts := []string{"a", "b.test", "[192.0.2.1]", "c"}
	for i := 0; i < 3000; i++ {
		b := bytes.Clone(good)
		for n := 1 + rng.IntN(4); n > 0; n-- {
			b[rng.IntN(len(b)-8)] = byte(rng.IntN(256))
		}
		resummed := rng.IntN(2) == 0
		if resummed {
			b = resum(b[:len(b)-8])
		}
		d, err := f.OpenDB(b)
		if err != nil {
			continue
		}
		if !resummed && !bytes.Equal(b, good) {
			t.Fatal("damaged file passed the checksum")
		}
		for _, h := range hosts {
			m, err := d.Lookup(h)
			if !resummed && (err != nil || m != First(tb, f.spec.Keys(h))) {
				t.Fatalf("%q: %+v %v", h, m, err)
			}
		}
		d.Stamp()
		d.SyntaxError()
	}
}

// A record claiming a 2 GiB value (behind a valid checksum) must be refused
// before the library allocates for it.
func TestCorruptRecordLength(t *testing.T) {
	f := toy()
	good, err := f.EncodeDB(map[string]string{"a": "1"}, nil, Stamp{Dev: 1, Ino: 2, Size: 3, Mtime: 4, Ctime: 5, Compiled: 6})
	if err != nil {
		t.Fatal(err)
	}
	body := bytes.Clone(good[:len(good)-8])
	// The first record (the stamp) starts right after the 2048-byte header.
	binary.LittleEndian.PutUint32(body[2048+4:], 0x7fffffff)
	d, err := f.OpenDB(resum(body))
	if err != nil {
		t.Fatalf("header should still look sound: %v", err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = d.Stamp()
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("stamp with a 2 GiB value accepted")
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Fatalf("%d bytes allocated for a corrupt record", n)
	}
}
