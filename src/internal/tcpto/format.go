package tcpto

import (
	"encoding/binary"
	"net/netip"
)

// Format is the layout of one tcpto file: fixed-size records, read as a
// whole, never more than MaxRecords of them.
//
// IPv4, stock qmail (tcpto.c, qmail-tcpto.c, qmail-tcpok.c), 16 bytes:
//
//	0..3   address, network order
//	4      number of recent timeouts (0 = free slot), at most 10
//	5..7   unused (left as found)
//	8..11  time of the last counted timeout, seconds, little-endian
//	12..15 unused (left as found)
//
// IPv6, ours (QMAILRUN/qmail-remote/tcpto6), 28 bytes:
//
//	0..15  address, network order
//	16     number of recent timeouts, as above
//	17..19 zero when we write a new record (left as found otherwise)
//	20..27 time, seconds, little-endian 64-bit
type Format struct {
	Name       string
	Size       int // bytes per record
	AddrLen    int // 4 or 16
	CountAt    int
	TimeAt     int
	TimeLen    int // 4 or 8
	MaxRecords int
	// Grow: a new address may be appended while the file has fewer than
	// MaxRecords records, and the file is created if missing. Stock
	// tcpto.c never grows or creates queue/lock/tcpto (qmail's installer
	// makes it 1024 bytes and qmail-rspawn rewrites it so at every start),
	// so the IPv4 format must not either; tcpto6 is ours and nobody else
	// creates it.
	Grow bool
}

// V4 is qmail's queue/lock/tcpto, 64 records of 16 bytes: 1024 bytes, the
// buffer size hard-coded in tcpto.c, tcpto_clean.c, qmail-tcpto.c and
// qmail-tcpok.c.
var V4 = Format{Name: "tcpto", Size: 16, AddrLen: 4, CountAt: 4, TimeAt: 8, TimeLen: 4, MaxRecords: 64}

// V6 is our tcpto6, 64 records of 28 bytes: at most 1792 bytes.
var V6 = Format{Name: "tcpto6", Size: 28, AddrLen: 16, CountAt: 16, TimeAt: 20, TimeLen: 8, MaxRecords: 64, Grow: true}

// maxCount is the cap stock tcpto_err puts on the timeout counter.
const maxCount = 10

// Record is one decoded record. raw keeps the record's bytes as read, so
// that encoding a decoded record gives back exactly the same bytes,
// unused ones included (stock rewrites whole 16-byte records from what it
// read, so it leaves them as they were too).
type Record struct {
	Addr  netip.Addr
	Count byte
	When  uint64 // seconds since the epoch (32 bits in V4)
	raw   []byte
}

// MaxBytes is the most a file of this format is read or written.
func (f Format) MaxBytes() int { return f.Size * f.MaxRecords }

// Decode splits b into records: whole records only (a trailing partial
// record is ignored, as stock's r >>= 4), at most MaxRecords (stock reads
// at most 1024 bytes). It accepts any bytes.
func (f Format) Decode(b []byte) []Record {
	n := min(len(b)/f.Size, f.MaxRecords)
	recs := make([]Record, n)
	for i := range recs {
		r := b[i*f.Size : (i+1)*f.Size]
		rec := Record{Count: r[f.CountAt], raw: append([]byte(nil), r...)}
		if f.AddrLen == 4 {
			rec.Addr = netip.AddrFrom4([4]byte(r[:4]))
		} else {
			rec.Addr = netip.AddrFrom16([16]byte(r[:16]))
		}
		if f.TimeLen == 4 {
			rec.When = uint64(binary.LittleEndian.Uint32(r[f.TimeAt:]))
		} else {
			rec.When = binary.LittleEndian.Uint64(r[f.TimeAt:])
		}
		recs[i] = rec
	}
	return recs
}

// EncodeRecord returns the bytes of one record: the bytes it was decoded
// from (zeros for a new record) with its fields written over them.
func (f Format) EncodeRecord(rec Record) []byte {
	b := make([]byte, f.Size)
	copy(b, rec.raw)
	a := rec.Addr
	switch {
	case f.AddrLen == 4 && a.Is4():
		a4 := a.As4()
		copy(b, a4[:])
	case f.AddrLen == 16 && a.IsValid():
		a16 := a.As16()
		copy(b, a16[:])
	}
	b[f.CountAt] = rec.Count
	if f.TimeLen == 4 {
		// Stock stores the low 32 bits of time(): good until 2106.
		binary.LittleEndian.PutUint32(b[f.TimeAt:], uint32(rec.When))
	} else {
		binary.LittleEndian.PutUint64(b[f.TimeAt:], rec.When)
	}
	return b
}

// Encode returns the bytes of a whole table.
func (f Format) Encode(recs []Record) []byte {
	b := make([]byte, 0, len(recs)*f.Size)
	for _, r := range recs {
		b = append(b, f.EncodeRecord(r)...)
	}
	return b
}

// limit is how long, in seconds, two or more timeouts keep an address
// skipped: stock's (60 + (getpid() & 31)) << 6, 64 to 97 minutes. The pid
// term spreads the retries of concurrent deliveries over half an hour
// instead of having all of them hit a dead host at once.
func limit(pid int) uint64 { return uint64(60+(pid&31)) << 6 }

// find returns the index of the first record for a, or -1 (stock: first
// match wins, whatever its count).
func find(recs []Record, a netip.Addr) int {
	for i, r := range recs {
		if r.Addr == a {
			return i
		}
	}
	return -1
}

// age returns now - when, and false when when is in the future.
func age(now, when uint64) (uint64, bool) {
	if when > now {
		return 0, false
	}
	return now - when, true
}

// skip applies stock tcpto(): an address is skipped when its first record
// has 2 or more timeouts, the last one less than limit(pid) seconds ago.
//
// Deliberate fix: stock computes now - when in signed arithmetic, so a
// record stamped in the future (clock stepped back, corrupt file) keeps the
// address skipped until that time comes; here such a record is stale.
func skip(recs []Record, a netip.Addr, now uint64, pid int) (skipped, found bool) {
	i := find(recs, a)
	if i < 0 {
		return false, false
	}
	r := recs[i]
	if r.Count < 2 {
		return false, true
	}
	d, ok := age(now, r.When)
	return ok && d < limit(pid), true
}

// update applies stock tcpto_err() to recs in place and returns the index
// of the record to write back, or -1 when the file stays as it is. The
// index may be len(recs) when the format grows: the new record is
// appended (recs is returned extended).
//
// timedOut false (a successful connect, or a connect error that is not a
// timeout): the address's first record gets count 0, its time unchanged.
// timedOut true: the first record of the address counts one more timeout
// (at most 10) and is stamped now, unless it already has a timeout less
// than 120 seconds old (qmail-tcpto(8): "after at least two minutes"). A
// new address takes the first free slot (count 0); with none free, the
// slot with the smallest when + (count << 10), the first of equals
// (stock's "oldest, weighted by how bad it was"); it starts at count 1.
//
// Deliberate fixes, relevant only to files qmail never writes: a counter
// above 127 (a negative signed char in stock) is treated as unsigned and
// capped at 10 on the next timeout; a last timeout in the future does not
// block counting.
func update(f Format, recs []Record, a netip.Addr, timedOut bool, now uint64) ([]Record, int) {
	if i := find(recs, a); i >= 0 {
		r := &recs[i]
		if !timedOut {
			if r.Count == 0 {
				return recs, -1
			}
			r.Count = 0
			return recs, i
		}
		if d, ok := age(now, r.When); r.Count != 0 && ok && d < 120 {
			return recs, -1
		}
		r.Count = min(r.Count, maxCount-1) + 1
		r.When = now
		return recs, i
	}
	if !timedOut {
		return recs, -1
	}
	i := -1
	for j, r := range recs {
		if r.Count == 0 {
			i = j
			break
		}
	}
	if i < 0 && f.Grow && len(recs) < f.MaxRecords {
		recs = append(recs, Record{})
		i = len(recs) - 1
	}
	if i < 0 {
		var best uint64
		for j, r := range recs {
			w := satAdd(r.When, uint64(r.Count)<<10)
			if i < 0 || w < best {
				i, best = j, w
			}
		}
	}
	if i < 0 { // empty table that may not grow: stock records nothing
		return recs, -1
	}
	recs[i].Addr, recs[i].Count, recs[i].When = a, 1, now
	return recs, i
}

func satAdd(x, y uint64) uint64 {
	if s := x + y; s >= x {
		return s
	}
	return ^uint64(0)
}
