package tlsio

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"qmail-remote-go/src/testkit/tlstest"

	"qmail-remote-go/src/testkit/backstop"
)

// countingConn counts the writes that reach the transport.
type countingConn struct {
	net.Conn
	mu     sync.Mutex
	writes int
	fail   bool
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes++
	fail := c.fail
	c.mu.Unlock()
	if fail {
		return 0, errors.New("wire cut")
	}
	return c.Conn.Write(p)
}

func (c *countingConn) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes
}

// tlsPair is a TLS client through a BatchConn over loopback TCP, and what
// the server reads (in total, once the client has closed).
func tlsPair(t *testing.T) (TLSConn, *countingConn, <-chan []byte) {
	t.Helper()
	ca := tlstest.NewCA(t, "Batch CA")
	cert := ca.Issue(t, tlstest.Leaf{DNSNames: []string{"mx.example.test"}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(backstop.Bound))
		s := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		b, _ := io.ReadAll(s)
		got <- b
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	raw.SetDeadline(time.Now().Add(backstop.Bound))
	cc := &countingConn{Conn: raw}
	batch := NewBatchConn(cc)
	conn := tls.Client(batch, &tls.Config{ServerName: "mx.example.test", RootCAs: ca.Pool()})
	if err := conn.Handshake(); err != nil {
		t.Fatal(err)
	}
	return TLSConn{Conn: conn, Raw: raw.(*net.TCPConn), Batch: batch}, cc, got
}

// TestBatchOneWrite: a Write of many records reaches the transport in one
// write, and the server reads every byte, then close_notify.
func TestBatchOneWrite(t *testing.T) {
	c, cc, got := tlsPair(t)
	msg := bytes.Repeat([]byte("0123456789abcdef"), upBufSize/16) // a shuttle block: full records
	for i := range 3 {
		before := cc.count()
		if n, err := c.Write(msg); n != len(msg) || err != nil {
			t.Fatalf("write %d: %d, %v", i, n, err)
		}
		// crypto/tls starts with small records (dynamic record
		// sizing), so more records than 16: still one write.
		if w := cc.count() - before; w != 1 {
			t.Errorf("write %d: %d writes to the transport, want 1", i, w)
		}
	}
	// Larger than a batch: sent in more writes, in order.
	big := bytes.Repeat([]byte("x"), 2*maxBatch+100)
	if _, err := c.Write(big); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	want := append(bytes.Repeat(msg, 3), big...)
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("server read %d bytes, want %d (the same)", len(b), len(want))
	}
}

// TestBatchWriteError: when the gathered records cannot be sent, Write
// says so, and every later write fails too (the TLS stream has a hole).
func TestBatchWriteError(t *testing.T) {
	c, cc, _ := tlsPair(t)
	cc.mu.Lock()
	cc.fail = true
	cc.mu.Unlock()
	if n, err := c.Write([]byte("MAIL FROM:<a@example.test>\r\n")); err == nil || n != 0 {
		t.Fatalf("write to a cut wire: %d, %v", n, err)
	}
	cc.mu.Lock()
	cc.fail = false
	cc.mu.Unlock()
	if _, err := c.Write([]byte("RCPT TO:<b@example.test>\r\n")); err == nil {
		t.Fatal("write after a lost batch succeeded")
	}
}
