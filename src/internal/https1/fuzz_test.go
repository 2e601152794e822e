package https1

import (
	"bufio"
	"bytes"
	"testing"
)

// FuzzReadResponse: whatever a server sends, reading its response never
// panics, and a body that comes back is within the bound.
func FuzzReadResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nTrailer: a\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 301 Moved\r\nLocation: /x\r\n\r\n"))
	f.Add([]byte("HTTP/1.0 200 OK\n folded\nContent-Length: 2\n\nok"))
	const max = 256
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := readResponse(bufio.NewReader(bytes.NewReader(in)), max)
		if err == nil && int64(len(r.Body)) > max {
			t.Fatalf("a body of %d bytes, over the bound %d", len(r.Body), max)
		}
	})
}
