package main

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pieces runs one conversation over net.Pipe, the client writing chunk
// bytes at a time, so that every read of the sink ends where a write did:
// each end of DATA and each stuffed dot is tried across every boundary.
func pieces(t *testing.T, s *sink, client string, chunk int) []string {
	t.Helper()
	sc, cc := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.serve(sc)
	}()
	defer cc.Close()
	cc.SetDeadline(time.Now().Add(60 * time.Second)) // a backstop
	go func() {
		for i := 0; i < len(client); i += chunk {
			if _, err := cc.Write([]byte(client[i:min(len(client), i+chunk)])); err != nil {
				return
			}
		}
	}()
	var lines []string
	rd := bufio.NewScanner(cc)
	for rd.Scan() {
		lines = append(lines, rd.Text())
	}
	<-done
	return lines
}

// TestDiscardCountsLikeStore: the fast -discard scan ends DATA where the
// line-by-line one does and counts the same un-stuffed size.
func TestDiscardCountsLikeStore(t *testing.T) {
	bodies := []string{
		"",
		"a\r\n",
		"..\r\n..\r\n",
		"..\r\n",
		"x\r\n..\r\n.x\r\n\r\n",
		"\n.\n\r.\r\r\n.\n\r\n",
		"line\r\n.\r\r\n..\r\n" + strings.Repeat("y", 70000) + "\r\n.z\r\n",
	}
	for _, body := range bodies {
		// A second transaction after the first checks that the scan
		// stopped exactly at the end of DATA.
		conv := "EHLO c.example.test\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n" + body + ".\r\n"
		conv = conv + conv[len("EHLO c.example.test\r\n"):] + "QUIT\r\n"
		dir := t.TempDir()
		store := &sink{dir: dir, timeout: 5 * time.Second}
		pieces(t, store, conv, 1<<20)
		stored, err := os.ReadFile(filepath.Join(dir, "1.eml"))
		if err != nil {
			t.Fatal(err)
		}
		for _, chunk := range []int{1, 2, 3, 5, 1 << 20} {
			d := &sink{discard: true, timeout: 5 * time.Second}
			replies := pieces(t, d, conv, chunk)
			if len(replies) < 2 || !strings.HasPrefix(replies[len(replies)-2], "250 2.0.0 ok 2") || !strings.HasPrefix(replies[len(replies)-1], "221 ") {
				t.Errorf("body %q, %d-byte writes: replies %q", body, chunk, replies)
				continue
			}
			if got, want := d.bytes.Load(), 2*int64(len(stored)); got != want {
				t.Errorf("body %q, %d-byte writes: counted %d, want %d", body, chunk, got, want)
			}
		}
	}
}
