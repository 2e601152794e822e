package routes

import (
	"hash/crc32"
	"math/rand/v2"
	"testing"
)

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
