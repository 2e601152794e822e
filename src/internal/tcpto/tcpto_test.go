package tcpto

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const t0 = 0x61223344 // a fixed "now", 2021

// env is a throwaway qmail home with a stock, zeroed tcpto file.
type env struct {
	t          *testing.T
	home, run  string
	v4, v6     string
	now        int64
	pid        int
	tab        *Table
	stockBytes int
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, home: dir, run: filepath.Join(dir, "run"), now: t0}
	for _, d := range []string{"queue/lock", "run/qmail-remote"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e.v4 = filepath.Join(dir, "queue/lock/tcpto")
	e.v6 = filepath.Join(dir, "run/qmail-remote/tcpto6")
	// As qmail's installer (hier.c) and qmail-rspawn's tcpto_clean leave it.
	e.write(e.v4, make([]byte, 1024))
	e.fresh()
	return e
}

// fresh starts a new delivery (a new Table), as a new qmail-remote would.
func (e *env) fresh() *Table {
	e.tab = Open(e.home, e.run)
	e.tab.now = func() time.Time { return time.Unix(e.now, 0) }
	e.tab.pid = e.pid
	e.tab.lockWait = 100 * time.Millisecond
	return e.tab
}

func (e *env) write(path string, b []byte) {
	e.t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) read(path string) []byte {
	e.t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

// rec4 builds a stock record by hand, independently of Format.
func rec4(a string, count byte, when uint32) []byte {
	r := make([]byte, 16)
	ip := netip.MustParseAddr(a).As4()
	copy(r, ip[:])
	r[4] = count
	r[8], r[9], r[10], r[11] = byte(when), byte(when>>8), byte(when>>16), byte(when>>24)
	return r
}

func rec6(a string, count byte, when uint64) []byte {
	r := make([]byte, 28)
	ip := netip.MustParseAddr(a).As16()
	copy(r, ip[:])
	r[16] = count
	binary.LittleEndian.PutUint64(r[20:], when)
	return r
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestV4RecordsStockBytes(t *testing.T) {
	e := newEnv(t)
	a := addr("192.0.2.1")
	e.tab.Record(a, true)
	want := make([]byte, 1024)
	copy(want, []byte{192, 0, 2, 1, 1, 0, 0, 0, 0x44, 0x33, 0x22, 0x61, 0, 0, 0, 0})
	if got := e.read(e.v4); !bytes.Equal(got, want) {
		t.Fatalf("after one timeout:\n%x\nwant\n%x", got[:32], want[:32])
	}

	// A second timeout less than 120 s later is not counted (stock: "after
	// at least two minutes").
	e.now = t0 + 119
	e.fresh().Record(a, true)
	if got := e.read(e.v4); !bytes.Equal(got, want) {
		t.Fatalf("timeout after 119 s changed the file: %x", got[:16])
	}
	if e.fresh().Skip(a) {
		t.Fatal("skipped after one timeout")
	}

	e.now = t0 + 120
	e.fresh().Record(a, true)
	copy(want, rec4("192.0.2.1", 2, t0+120))
	if got := e.read(e.v4); !bytes.Equal(got, want) {
		t.Fatalf("second timeout: %x, want %x", got[:16], want[:16])
	}
	if !e.fresh().Skip(a) {
		t.Fatal("not skipped after two timeouts")
	}
	if e.fresh().Skip(addr("192.0.2.2")) {
		t.Fatal("another address skipped")
	}

	// The counter stops at 10.
	for i := range 12 {
		e.now = t0 + 120 + int64(i+1)*200
		e.fresh().Record(a, true)
	}
	copy(want, rec4("192.0.2.1", 10, uint32(e.now)))
	if got := e.read(e.v4); !bytes.Equal(got, want) {
		t.Fatalf("after 14 timeouts: %x, want %x", got[:16], want[:16])
	}
}

func TestSkipRuleWithPid(t *testing.T) {
	for _, tc := range []struct {
		pid   int
		limit int64
	}{{0, 3840}, {31, 5824}, {32, 3840}, {4099, 3*64 + 3840}} {
		e := newEnv(t)
		e.pid = tc.pid
		f := make([]byte, 1024)
		copy(f, rec4("192.0.2.9", 2, t0))
		e.write(e.v4, f)
		e.now = t0 + tc.limit - 1
		if !e.fresh().Skip(addr("192.0.2.9")) {
			t.Errorf("pid %d: not skipped %d s after the timeout", tc.pid, tc.limit-1)
		}
		e.now = t0 + tc.limit
		if e.fresh().Skip(addr("192.0.2.9")) {
			t.Errorf("pid %d: still skipped %d s after the timeout", tc.pid, tc.limit)
		}
		// Deliberate fix: a record in the future is stale, not "recent".
		e.now = t0 - 10
		if e.fresh().Skip(addr("192.0.2.9")) {
			t.Errorf("pid %d: skipped on a timestamp in the future", tc.pid)
		}
	}
}

func TestClear(t *testing.T) {
	e := newEnv(t)
	f := make([]byte, 1024)
	copy(f, rec4("192.0.2.1", 1, 5))
	copy(f[16:], rec4("192.0.2.2", 3, t0))
	e.write(e.v4, f)

	// Without a Skip that found the address first, stock does not even
	// open the file to clear it.
	e.fresh().Record(addr("192.0.2.2"), false)
	if got := e.read(e.v4); !bytes.Equal(got, f) {
		t.Fatal("cleared without a prior lookup")
	}

	tab := e.fresh()
	if !tab.Skip(addr("192.0.2.2")) {
		t.Fatal("3 recent timeouts not skipped")
	}
	tab.Record(addr("192.0.2.2"), false)
	copy(f[16:], rec4("192.0.2.2", 0, t0)) // count 0, time kept
	if got := e.read(e.v4); !bytes.Equal(got, f) {
		t.Fatalf("clear: %x, want %x", got[16:32], f[16:32])
	}

	// Clearing an address that is not there changes nothing.
	tab = e.fresh()
	tab.Skip(addr("192.0.2.7"))
	tab.Record(addr("192.0.2.7"), false)
	if got := e.read(e.v4); !bytes.Equal(got, f) {
		t.Fatal("clearing an unknown address changed the file")
	}
}

func TestSlotReuse(t *testing.T) {
	e := newEnv(t)
	// Slots 0, 1 used, 2 free but holding an old cleared address: the new
	// address goes to slot 2, the first with count 0.
	f := make([]byte, 1024)
	copy(f, rec4("192.0.2.1", 1, t0))
	copy(f[16:], rec4("192.0.2.2", 1, t0))
	copy(f[32:], rec4("198.51.100.7", 0, 77))
	for i := 3; i < 64; i++ {
		copy(f[i*16:], rec4("203.0.113.1", 1, t0))
	}
	e.write(e.v4, f)
	e.fresh().Record(addr("192.0.2.3"), true)
	copy(f[32:], rec4("192.0.2.3", 1, t0))
	if got := e.read(e.v4); !bytes.Equal(got, f) {
		t.Fatalf("first free slot not used: %x", got[32:48])
	}

	// Full: the slot with the smallest when + (count << 10) is reused, the
	// first of equals; its unused bytes are left as they were (stock
	// writes back the whole record it read).
	for i := range 64 {
		copy(f[i*16:], rec4("203.0.113.1", 1, 100000))
	}
	copy(f[5*16:], rec4("203.0.113.5", 3, 1000)) // 1000 + 3072 = 4072
	copy(f[9*16:], rec4("203.0.113.9", 1, 2000)) // 2000 + 1024 = 3024: oldest
	copy(f[11*16:], rec4("203.0.113.11", 2, 976))
	f[9*16+5], f[9*16+13] = 0xaa, 0xbb            // junk in unused bytes
	copy(f[11*16:], rec4("203.0.113.11", 2, 976)) // 976 + 2048 = 3024: equal, later
	e.write(e.v4, f)
	e.fresh().Record(addr("192.0.2.44"), true)
	want := append([]byte(nil), f...)
	copy(want[9*16:], rec4("192.0.2.44", 1, t0))
	want[9*16+5], want[9*16+13] = 0xaa, 0xbb
	got := e.read(e.v4)
	if !bytes.Equal(got, want) {
		for i := range 64 {
			if !bytes.Equal(got[i*16:i*16+16], want[i*16:i*16+16]) {
				t.Errorf("record %d: %x, want %x", i, got[i*16:i*16+16], want[i*16:i*16+16])
			}
		}
	}
	if len(got) != 1024 {
		t.Errorf("file grew to %d bytes", len(got))
	}
}

func TestShortAndOddFiles(t *testing.T) {
	e := newEnv(t)
	// 40 bytes: 2 whole records and 8 trailing bytes, which stock ignores.
	// The file never grows, so a full short file replaces a record.
	f := append(rec4("192.0.2.1", 1, 10), rec4("192.0.2.2", 1, 20)...)
	f = append(f, 1, 2, 3, 4, 5, 6, 7, 8)
	e.write(e.v4, f)
	e.fresh().Record(addr("192.0.2.3"), true)
	want := append(rec4("192.0.2.3", 1, t0), f[16:]...)
	if got := e.read(e.v4); !bytes.Equal(got, want) {
		t.Fatalf("short file: %x, want %x", got, want)
	}

	// Empty file: stock records nothing (its getbuf returns 0).
	e.write(e.v4, nil)
	e.fresh().Record(addr("192.0.2.3"), true)
	if got := e.read(e.v4); len(got) != 0 {
		t.Fatalf("empty file grew: %x", got)
	}

	// Missing file: not created (qmail's installer owns it).
	os.Remove(e.v4)
	e.fresh().Record(addr("192.0.2.3"), true)
	if e.fresh().Skip(addr("192.0.2.3")) {
		t.Fatal("skipped with no file")
	}
	if _, err := os.Stat(e.v4); !os.IsNotExist(err) {
		t.Fatalf("missing tcpto created: %v", err)
	}

	// Longer than 1024 bytes: only the first 64 records count, the rest
	// is never touched.
	f = make([]byte, 1100)
	copy(f[1024:], rec4("192.0.2.77", 5, t0))
	e.write(e.v4, f)
	if e.fresh().Skip(addr("192.0.2.77")) {
		t.Fatal("record past 1024 bytes honoured")
	}
	e.fresh().Record(addr("192.0.2.78"), true)
	got := e.read(e.v4)
	if len(got) != 1100 || !bytes.Equal(got[:16], rec4("192.0.2.78", 1, t0)) || !bytes.Equal(got[1024:], f[1024:]) {
		t.Fatalf("long file mishandled: %d bytes, %x", len(got), got[:16])
	}
}

func TestNeverStopsADelivery(t *testing.T) {
	a := addr("192.0.2.1")
	t.Run("missing directories", func(t *testing.T) {
		tab := Open(filepath.Join(t.TempDir(), "nope"), filepath.Join(t.TempDir(), "nope"))
		if tab.Skip(a) || tab.Skip(addr("2001:db8::1")) {
			t.Fatal("skipped")
		}
		tab.Record(a, true)
		tab.Record(addr("2001:db8::1"), true)
	})
	t.Run("directory in place of the file", func(t *testing.T) {
		e := newEnv(t)
		os.Remove(e.v4)
		os.Mkdir(e.v4, 0o755)
		e.fresh().Record(a, true)
		if e.fresh().Skip(a) {
			t.Fatal("skipped")
		}
	})
	t.Run("FIFO in place of the file", func(t *testing.T) {
		e := newEnv(t)
		os.Remove(e.v4)
		if err := unix.Mkfifo(e.v4, 0o644); err != nil {
			t.Skip(err)
		}
		done := make(chan bool)
		go func() {
			tab := e.fresh()
			tab.Record(a, true)
			done <- tab.Skip(a)
		}()
		select {
		case s := <-done:
			if s {
				t.Fatal("skipped")
			}
		case <-time.After(30 * time.Second): // a backstop: it returns at once
			t.Fatal("hung on a FIFO")
		}
	})
	// Nothing but a regular file is a table: a FIFO, a directory or a
	// device at either path is skipped at once.
	for _, tc := range []struct {
		name string
		path func(e *env) string
		a    netip.Addr
		make func(string) error
	}{
		{"FIFO in place of tcpto6", func(e *env) string { return e.v6 }, addr("2001:db8::1"), func(p string) error { return unix.Mkfifo(p, 0o644) }},
		{"directory in place of tcpto6", func(e *env) string { return e.v6 }, addr("2001:db8::1"), func(p string) error { return os.Mkdir(p, 0o755) }},
		{"device in place of tcpto", func(e *env) string { return e.v4 }, a, func(p string) error { return os.Symlink("/dev/zero", p) }},
		{"device in place of tcpto6", func(e *env) string { return e.v6 }, addr("2001:db8::1"), func(p string) error { return os.Symlink("/dev/zero", p) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			p := tc.path(e)
			os.MkdirAll(filepath.Dir(p), 0o755)
			os.Remove(p)
			if err := tc.make(p); err != nil {
				t.Fatal(err)
			}
			done := make(chan bool)
			go func() {
				tab := e.fresh()
				tab.Record(tc.a, true)
				tab.Record(tc.a, true)
				done <- tab.Skip(tc.a)
			}()
			select {
			case s := <-done:
				if s {
					t.Fatal("skipped")
				}
			case <-time.After(30 * time.Second): // a backstop: it returns at once
				t.Fatal("hung")
			}
			if st, err := os.Stat(p); err != nil || st.Mode().IsRegular() {
				t.Errorf("%s was replaced: %v", p, err)
			}
		})
	}
	t.Run("lock held too long", func(t *testing.T) {
		e := newEnv(t)
		f := make([]byte, 1024)
		copy(f, rec4("192.0.2.1", 2, t0))
		e.write(e.v4, f)
		fd, err := unix.Open(e.v4, unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		tab := e.fresh()
		if tab.Skip(a) {
			t.Fatal("read the file through an exclusive lock")
		}
		tab.Record(a, true)
		// Each of the two waits gives up after lockWait (100 ms): far
		// less than this backstop, however loaded the machine.
		if d := time.Since(start); d > 30*time.Second {
			t.Fatalf("waited %v for the lock, lockWait %v", d, e.tab.lockWait)
		}
		unix.Flock(fd, unix.LOCK_UN)
		if !e.fresh().Skip(a) {
			t.Fatal("not skipped once the lock is gone")
		}
	})
	t.Run("read-only file still skips", func(t *testing.T) {
		e := newEnv(t)
		f := make([]byte, 1024)
		copy(f, rec4("192.0.2.1", 2, t0))
		e.write(e.v4, f)
		os.Chmod(e.v4, 0o444)
		if !e.fresh().Skip(a) {
			t.Fatal("not skipped")
		}
	})
	t.Run("garbage", func(t *testing.T) {
		e := newEnv(t)
		g := make([]byte, 1024)
		for i := range g {
			g[i] = byte(i*131 + 7)
		}
		for _, n := range []int{1024, 1023, 17, 15, 1} {
			e.write(e.v4, g[:n])
			e.write(e.v6, g[:n])
			for _, x := range []netip.Addr{a, addr("2001:db8::1")} {
				tab := e.fresh()
				tab.Skip(x)
				tab.Record(x, true)
				tab.Record(x, false)
			}
			if got := e.read(e.v4); len(got) != n {
				t.Errorf("v4 file of %d bytes became %d", n, len(got))
			}
		}
	})
}

func TestV6(t *testing.T) {
	e := newEnv(t)
	a := addr("2001:db8::25")
	// Missing tcpto6: created on the first timeout.
	e.fresh().Record(a, true)
	want := rec6("2001:db8::25", 1, t0)
	if got := e.read(e.v6); !bytes.Equal(got, want) {
		t.Fatalf("tcpto6:\n%x\nwant\n%x", got, want)
	}
	e.now = t0 + 200
	e.fresh().Record(a, true)
	want = rec6("2001:db8::25", 2, t0+200)
	if got := e.read(e.v6); !bytes.Equal(got, want) {
		t.Fatalf("tcpto6 after 2 timeouts:\n%x\nwant\n%x", got, want)
	}
	tab := e.fresh()
	if !tab.Skip(a) {
		t.Fatal("v6 address not skipped")
	}
	if tab.Skip(addr("2001:db8::26")) || tab.Skip(addr("192.0.2.1")) {
		t.Fatal("other address skipped")
	}
	tab.Record(a, false)
	if got := e.read(e.v6); !bytes.Equal(got, rec6("2001:db8::25", 0, t0+200)) {
		t.Fatalf("clear: %x", got)
	}
	// The v4 file is untouched by v6 work.
	if got := e.read(e.v4); !bytes.Equal(got, make([]byte, 1024)) {
		t.Fatal("v6 timeout written to the v4 file")
	}

	// It grows to 64 records, then reuses the oldest.
	for i := range 70 {
		e.now = t0 + 1000 + int64(i)
		x := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i + 1)})
		e.fresh().Record(x, true)
	}
	got := e.read(e.v6)
	if len(got) != 64*28 {
		t.Fatalf("tcpto6 of %d bytes, want %d", len(got), 64*28)
	}
	// Slot 0 (the cleared one) went to the first new address; the last 6
	// new addresses replaced the 6 oldest: slots 0..5.
	for i := range 6 {
		r := V6.Decode(got[i*28 : i*28+28])[0]
		if r.Addr.As16()[15] != byte(64+i+1) || r.Count != 1 {
			t.Errorf("slot %d: %v count %d", i, r.Addr, r.Count)
		}
	}

	// A missing qmail-remote directory in an existing run dir is created.
	e2 := newEnv(t)
	os.RemoveAll(filepath.Dir(e2.v6))
	e2.fresh().Record(a, true)
	if got := e2.read(e2.v6); len(got) != 28 {
		t.Fatalf("tcpto6 in a new directory: %x", got)
	}
	// A missing run dir is not.
	e3 := newEnv(t)
	os.RemoveAll(e3.run)
	e3.fresh().Record(a, true)
	if _, err := os.Stat(e3.run); !os.IsNotExist(err) {
		t.Fatal("run directory created")
	}
}

func TestIPv4MappedGoesToV4File(t *testing.T) {
	e := newEnv(t)
	e.fresh().Record(addr("::ffff:192.0.2.1"), true)
	if got := e.read(e.v4); !bytes.Equal(got[:16], rec4("192.0.2.1", 1, t0)) {
		t.Fatalf("%x", got[:16])
	}
}

func TestDecodeEncode(t *testing.T) {
	b := append(rec4("192.0.2.1", 2, 0xdeadbeef), 1, 2, 3)
	recs := V4.Decode(b)
	if len(recs) != 1 || recs[0].Addr != addr("192.0.2.1") || recs[0].Count != 2 || recs[0].When != 0xdeadbeef {
		t.Fatalf("%+v", recs)
	}
	if got := V4.Encode(recs); !bytes.Equal(got, b[:16]) {
		t.Fatalf("%x", got)
	}
	r6 := rec6("2001:db8::1", 7, 1<<40)
	recs = V6.Decode(r6)
	if len(recs) != 1 || recs[0].Addr != addr("2001:db8::1") || recs[0].Count != 7 || recs[0].When != 1<<40 {
		t.Fatalf("%+v", recs)
	}
	// A record of the wrong family never panics; the address is left out.
	if got := V4.EncodeRecord(Record{Addr: addr("2001:db8::1"), Count: 1}); len(got) != 16 {
		t.Fatal(got)
	}
}

func FuzzTcptoRead(f *testing.F) {
	f.Add([]byte{}, false)
	f.Add(rec4("192.0.2.1", 2, t0), false)
	f.Add(append(rec4("192.0.2.1", 200, 0xffffffff), rec4("192.0.2.2", 0, 0)...), false)
	f.Add(rec6("2001:db8::1", 1, 1<<63), true)
	f.Add(make([]byte, 2000), true)
	f.Fuzz(func(t *testing.T, b []byte, v6 bool) {
		form, a := V4, addr("192.0.2.1")
		if v6 {
			form, a = V6, addr("2001:db8::1")
		}
		recs := form.Decode(b)
		n := min(len(b)/form.Size, form.MaxRecords)
		if len(recs) != n {
			t.Fatalf("%d records from %d bytes", len(recs), len(b))
		}
		if got := form.Encode(recs); !bytes.Equal(got, b[:n*form.Size]) {
			t.Fatalf("round trip:\n%x\n%x", got, b[:n*form.Size])
		}
		skip(recs, a, t0, 7)
		for _, timedOut := range []bool{true, false} {
			out, i := update(form, form.Decode(b), a, timedOut, t0)
			if len(out) > form.MaxRecords || i >= len(out) || len(out) > n && !form.Grow {
				t.Fatalf("update: %d records, index %d", len(out), i)
			}
			if i >= 0 && timedOut && (out[i].Addr != a || out[i].Count == 0) {
				t.Fatalf("update wrote %+v", out[i])
			}
		}
	})
}

func BenchmarkSkip(b *testing.B) {
	dir := b.TempDir()
	os.MkdirAll(filepath.Join(dir, "queue/lock"), 0o755)
	f := make([]byte, 0, 1024)
	for i := range 64 {
		f = append(f, rec4(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}).String(), 2, t0)...)
	}
	os.WriteFile(filepath.Join(dir, "queue/lock/tcpto"), f, 0o644)
	tab := Open(dir, dir)
	last := netip.AddrFrom4([4]byte{192, 0, 2, 63})
	for b.Loop() {
		tab.Skip(last)
	}
}
