package ctlcdb

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/colinmarc/cdb"

	"qmail-remote-go/src/internal/regular"
)

// The compiled form:
//
//	key                     value
//	a key of the table      Spec.Marshal of its value
//	"\x00stamp"             "1 dev ino size mtime ctime compiled"
//	"\x00error"             "line reason"       (only when the text has a
//	                                             syntax error; then there
//	                                             is no other key)
//
// Table keys never start with a NUL (Spec.Parse promises it, EncodeDB
// checks it), so the NUL-prefixed keys cannot collide with an entry. The
// stamp identifies the text file the table was compiled from (decimal
// device, inode, size, mtime and ctime in nanoseconds) and when it was
// read (ns since the epoch); "1" is the format version. A syntax error is
// compiled too, so that a broken file is parsed once, not once per
// delivery.
const (
	stampKey      = "\x00stamp"
	errorKey      = "\x00error"
	formatVersion = "1"
)

// maxDB bounds the cdb file we are willing to read. A legitimate file is at
// most a few times MaxText; anything bigger is not ours.
const maxDB = 256 << 20

// errCorrupt is any inconsistency in the cdb file. Callers recompile.
var errCorrupt = errors.New("corrupt cdb")

// Stamp identifies a version of the text file.
type Stamp struct {
	Dev, Ino     uint64
	Size         int64
	Mtime, Ctime int64 // ns since the epoch
	Compiled     int64 // ns since the epoch, when the text was read
}

// SameFile says whether s and o are the same version of the text
// (Compiled aside).
func (s Stamp) SameFile(o Stamp) bool {
	return s.Dev == o.Dev && s.Ino == o.Ino && s.Size == o.Size && s.Mtime == o.Mtime && s.Ctime == o.Ctime
}

func (s Stamp) encode() []byte {
	return []byte(fmt.Sprintf("%s %d %d %d %d %d %d", formatVersion, s.Dev, s.Ino, s.Size, s.Mtime, s.Ctime, s.Compiled))
}

func decodeStamp(v []byte) (Stamp, error) {
	f := strings.Split(string(v), " ")
	if len(f) != 7 || f[0] != formatVersion {
		return Stamp{}, errCorrupt
	}
	var n [6]int64
	for i := range n {
		x, err := strconv.ParseInt(f[i+1], 10, 64)
		if err != nil {
			return Stamp{}, errCorrupt
		}
		n[i] = x
	}
	return Stamp{uint64(n[0]), uint64(n[1]), n[2], n[3], n[4], n[5]}, nil
}

// memFile is an in-memory io.WriteSeeker for cdb.Writer: the whole file is
// built in memory, then checksummed and written out in one go.
type memFile struct {
	b   []byte
	off int
}

func (m *memFile) Write(p []byte) (int, error) {
	if need := m.off + len(p); need > len(m.b) {
		m.b = append(m.b, make([]byte, need-len(m.b))...)
	}
	copy(m.b[m.off:], p)
	m.off += len(p)
	return len(p), nil
}

func (m *memFile) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += int64(m.off)
	case io.SeekEnd:
		off += int64(len(m.b))
	}
	if off < 0 || off > maxDB {
		return 0, errors.New("seek out of range")
	}
	m.off = int(off)
	return off, nil
}

// The file ends with a trailer that cdb readers never look at (nothing
// points past the hash tables): 4 bytes of magic (Spec.Magic) and the
// CRC-32C of everything before the trailer, little-endian. A reader checks
// it before trusting anything: a damaged file (a bad disk block, an
// admin's editor, a truncated copy) could otherwise hide a key and
// silently apply the default entry instead.

// crc32c is the CRC-32C (Castagnoli) of b, a byte a step. hash/crc32
// would build its tables at the start-up of every program of the binary,
// and its SSE4.2 tables cost about 1.2 million instructions, more than
// the rest of a delivery's start-up; this table costs 2,048 steps, built
// when first needed, and a 100 KiB cdb half a millisecond.
func crc32c(b []byte) uint32 {
	t := crc32cTable()
	crc := ^uint32(0)
	for _, v := range b {
		crc = t[byte(crc)^v] ^ crc>>8
	}
	return ^crc
}

// castagnoli is the CRC-32C polynomial, reversed (hash/crc32.Castagnoli).
const castagnoli = 0x82f63b78

var crc32cTable = sync.OnceValue(func() *[256]uint32 {
	var t [256]uint32
	for i := range t {
		crc := uint32(i)
		for range 8 {
			if crc&1 == 1 {
				crc = crc>>1 ^ castagnoli
			} else {
				crc >>= 1
			}
		}
		t[i] = crc
	}
	return &t
})

// EncodeDB builds the cdb file of a compiled table, or of a compiled
// syntax error (then t is ignored). It is what a compile writes; tests
// and tools use it to forge files.
func (f *File[V]) EncodeDB(t map[string]V, synErr *SyntaxError, st Stamp) ([]byte, error) {
	m := &memFile{}
	cw, err := cdb.NewWriter(m, nil)
	if err != nil {
		return nil, err
	}
	if err := cw.Put([]byte(stampKey), st.encode()); err != nil {
		return nil, err
	}
	if synErr != nil {
		v := strconv.Itoa(synErr.Line) + " " + synErr.Reason
		if err := cw.Put([]byte(errorKey), []byte(v)); err != nil {
			return nil, err
		}
		t = nil
	}
	keys := make([]string, 0, len(t))
	for k := range t {
		if strings.HasPrefix(k, "\x00") {
			return nil, fmt.Errorf("key %q starts with a NUL byte", k)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys) // reproducible output
	for _, k := range keys {
		if err := cw.Put([]byte(k), f.spec.Marshal(t[k])); err != nil {
			return nil, err
		}
	}
	if err := cw.Close(); err != nil {
		return nil, err
	}
	b := append(m.b, f.spec.Magic...)
	return binary.LittleEndian.AppendUint32(b, crc32c(b[:len(m.b)])), nil
}

// boundedReader refuses reads past the end of the file, and any 8-byte
// tuple whose second word exceeds the file size. colinmarc/cdb reads 8-byte
// tuples (hash, record position) and (key length, value length), and
// allocates key length + value length bytes before reading a record: in a
// corrupt file that could be 4 GiB, and running out of memory is a fatal
// error that recover cannot catch. In a sound file both second words (a
// position, a length) are smaller than the file.
//
// One 8-byte read is not a tuple: the key and value of a record whose
// lengths add up to 8, read right after its header. It is recognised as
// the read at the header's offset + 8 right after a header whose lengths
// add up to 8 (a slot's hash + position cannot: positions are >= 2048).
// The reader is stateful, so one DB must not be used concurrently.
type boundedReader struct {
	r       io.ReaderAt
	size    int64
	prevOff int64
	prevSum uint64
}

func (b *boundedReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off > b.size || int64(len(p)) > b.size-off {
		return 0, errCorrupt
	}
	n, err := b.r.ReadAt(p, off)
	if n < len(p) {
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return n, err
	}
	if len(p) != 8 {
		return n, nil
	}
	if b.prevSum == 8 && off == b.prevOff+8 {
		b.prevSum = 0 // the record's data, not a tuple
		return n, nil
	}
	first, second := binary.LittleEndian.Uint32(p), binary.LittleEndian.Uint32(p[4:])
	if int64(second) > b.size {
		return 0, errCorrupt
	}
	b.prevOff, b.prevSum = off, uint64(first)+uint64(second)
	return n, nil
}

// DB is an open compiled table. It must not be used concurrently.
type DB[V any] struct {
	c    *cdb.CDB
	spec *Spec[V]
}

// OpenDB checks the file's trailer and header and opens it. The header
// (256 hash table positions and lengths) is checked here because the
// library would otherwise probe a table of up to 2^32 slots.
func (f *File[V]) OpenDB(b []byte) (d *DB[V], err error) {
	defer func() {
		if p := recover(); p != nil {
			d, err = nil, errCorrupt
		}
	}()
	if len(b) < 2048+8 || len(b) > maxDB {
		return nil, errCorrupt
	}
	body, trailer := b[:len(b)-8], b[len(b)-8:]
	if string(trailer[:4]) != f.spec.Magic || binary.LittleEndian.Uint32(trailer[4:]) != crc32c(body) {
		return nil, errCorrupt
	}
	size := int64(len(body))
	for i := 0; i < 256; i++ {
		pos := uint64(binary.LittleEndian.Uint32(body[8*i:]))
		n := uint64(binary.LittleEndian.Uint32(body[8*i+4:]))
		if n > 0 && (pos < 2048 || pos+8*n > uint64(size)) {
			return nil, errCorrupt
		}
	}
	c, err := cdb.New(&boundedReader{r: bytes.NewReader(body), size: size}, nil)
	if err != nil {
		return nil, errCorrupt
	}
	return &DB[V]{c, &f.spec}, nil
}

// get returns the value of key, nil if absent, errCorrupt on anything odd
// (including a panic in the library).
func (d *DB[V]) get(key string) (v []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			v, err = nil, errCorrupt
		}
	}()
	v, err = d.c.Get([]byte(key))
	if err != nil {
		return nil, errCorrupt
	}
	return v, nil
}

// Stamp returns the identity of the text the table was compiled from.
func (d *DB[V]) Stamp() (Stamp, error) {
	v, err := d.get(stampKey)
	if err != nil || v == nil {
		return Stamp{}, errCorrupt
	}
	return decodeStamp(v)
}

// SyntaxError returns the compiled syntax error, if any.
func (d *DB[V]) SyntaxError() (*SyntaxError, error) {
	v, err := d.get(errorKey)
	if err != nil || v == nil {
		return nil, err
	}
	line, reason, ok := strings.Cut(string(v), " ")
	n, err := strconv.Atoi(line)
	if !ok || err != nil || n < 0 {
		return nil, errCorrupt
	}
	return &SyntaxError{d.spec.Text, n, reason}, nil
}

// Lookup finds host in the compiled table, with the same rules as First
// on the parsed one. A value Unmarshal refuses is damage: errCorrupt.
func (d *DB[V]) Lookup(host string) (Match[V], error) {
	for _, k := range d.spec.Keys(host) {
		v, err := d.get(k)
		if err != nil {
			return Match[V]{}, err
		}
		if v == nil {
			continue
		}
		val, ok := d.spec.Unmarshal(v)
		if !ok {
			return Match[V]{}, errCorrupt
		}
		return Match[V]{k, val, true}, nil
	}
	return Match[V]{}, nil
}

// openDBFile reads and opens the cdb at path. found is false when it does
// not exist; anything but a regular file is an error wrapping
// regular.ErrNotRegular, which the caller refuses; any other problem is an
// error, and the caller recompiles.
//
// The whole file is read (its checksum covers all of it). That is cheap
// for any realistic table (a thousand routes make some 60 KB) and still far
// cheaper than parsing the text.
func (f *File[V]) openDBFile(path string) (d *DB[V], found bool, err error) {
	// Without blocking: a FIFO in place of the cdb must not hang the
	// delivery. Anything but a regular file is an error wrapping
	// regular.ErrNotRegular.
	fd, err := regular.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, true, err
	}
	defer fd.Close()
	st, err := fd.Stat()
	if err != nil {
		return nil, true, err
	}
	if st.Size() > maxDB {
		return nil, true, errCorrupt
	}
	// The file is never rewritten in place (a new one is renamed over
	// it), so its size cannot change under us; a short read is damage.
	b := make([]byte, st.Size())
	if _, err := io.ReadFull(fd, b); err != nil {
		return nil, true, errCorrupt
	}
	d, err = f.OpenDB(b)
	return d, true, err
}
