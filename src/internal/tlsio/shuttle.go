package tlsio

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// TLSConn is a client connection whose CloseWrite sends close_notify and
// then shuts down the writing side of the transport, so that the server
// sees both the TLS end (RFC 8446 6.1) and the TCP end.
type TLSConn struct {
	*tls.Conn
	Raw HalfConn
	// Batch, when set, is the BatchConn the tls.Conn writes to: each
	// Write then leaves in one write(2), whatever its number of records.
	Batch *BatchConn
}

// Write encrypts p and sends its records together.
func (c TLSConn) Write(p []byte) (int, error) {
	if c.Batch == nil {
		return c.Conn.Write(p)
	}
	c.Batch.Batch()
	n, err := c.Conn.Write(p)
	if ferr := c.Batch.Flush(); err == nil && ferr != nil {
		// crypto/tls thinks the records left; they did not.
		return 0, ferr
	}
	return n, err
}

// CloseWrite sends close_notify (crypto/tls bounds that write by 5 s) and
// shuts down the transport's writing side.
func (c TLSConn) CloseWrite() error {
	err := c.Conn.CloseWrite()
	if rerr := c.Raw.CloseWrite(); err == nil {
		err = rerr
	}
	return err
}

// LocalConn is our end of the application's socketpair: a *net.UnixConn.
type LocalConn interface {
	HalfConn
	CloseRead() error
}

// upBufSize is the unit of copying towards the server: eight full TLS
// records (RFC 8446 5.1: 2^14 bytes each), read from the socketpair in
// one read(2) when the application is ahead of us (it writes a block of
// about 64 KiB at a time, and the socketpair holds several), encrypted in
// one tls.Conn.Write and sent in one write(2) (BatchConn). downBufSize is
// the other way: the server's replies, a few hundred bytes.
const (
	upBufSize   = 128 << 10
	downBufSize = 16 << 10
)

// Shuttle copies bytes between the server (remote, the TLS connection) and
// the application (local) in both directions at once:
//
//	up:   local --read--> remote    EOF: close_notify, then TCP shutdown
//	down: remote --read--> local    EOF: shutdown(SHUT_WR) on local
//
// Every write must finish within the timeout (a server or an application
// that stops reading). A read waits at most the timeout plus IdleGrace
// since bytes last moved in either direction: while the application sends
// a long message the server rightly says nothing, and that silence is not
// a stall; when nothing moves at all for that long, the session is dead
// and both sides are shut down. The application bounds its own waits with
// the timeout; ours is the backstop, IdleGrace later, so that the
// application is the one to notice a silent server and say what it was
// waiting for ("Timed out after 1200s waiting for ..."), instead of
// reading the end of its pipe first, a race it would otherwise lose now
// and then (the fault matrix's stalls under TLS).
type Shuttle struct {
	remote  HalfConn
	local   LocalConn
	timeout time.Duration
	idle    time.Duration // timeout + IdleGrace

	upDone, downDone chan struct{}

	mu            sync.Mutex
	upErr         error // why up ended, nil for EOF
	downErr       error
	closeNotified bool
	aborted       bool
}

// IdleGrace is how much longer than the application the shuttle waits
// for bytes to move before it calls the session dead.
const IdleGrace = time.Second

// Start starts copying. Call Finish to stop.
func Start(remote HalfConn, local LocalConn, timeout time.Duration) *Shuttle {
	s := &Shuttle{remote: remote, local: local, timeout: timeout, idle: timeout + IdleGrace,
		upDone: make(chan struct{}), downDone: make(chan struct{})}
	s.alive()
	go s.up()
	go s.down()
	return s
}

// alive pushes both read deadlines forward: bytes moved. Deadlines are
// only ever set under mu and never after abort, so a late alive cannot
// undo abort's deadlines in the past.
func (s *Shuttle) alive() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.aborted {
		return
	}
	t := time.Now().Add(s.idle)
	s.remote.SetReadDeadline(t)
	s.local.SetReadDeadline(t)
}

// armWrite bounds the next write on c.
func (s *Shuttle) armWrite(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.aborted {
		c.SetWriteDeadline(time.Now().Add(s.timeout))
	}
}

func (s *Shuttle) up() {
	defer close(s.upDone)
	buf := make([]byte, upBufSize)
	for {
		n, err := s.local.Read(buf)
		if n > 0 {
			s.armWrite(s.remote)
			if _, werr := s.remote.Write(buf[:n]); werr != nil {
				// The server is gone or stalled: nothing more can
				// reach it. Make the application's writes fail
				// instead of piling up; the other direction may
				// still carry the server's last words.
				s.setErr(&s.upErr, werr)
				s.local.CloseRead()
				if isTimeout(werr) {
					s.abort()
				}
				return
			}
			s.alive()
		}
		if err != nil {
			if isTimeout(err) {
				s.setErr(&s.upErr, err)
				s.abort()
				return
			}
			// EOF, or ECONNRESET once the application is gone and
			// everything it wrote was read: it has finished.
			s.sendCloseNotify()
			return
		}
	}
}

func (s *Shuttle) down() {
	defer close(s.downDone)
	buf := make([]byte, downBufSize)
	for {
		n, err := s.remote.Read(buf)
		if n > 0 {
			s.armWrite(s.local)
			if _, werr := s.local.Write(buf[:n]); werr != nil {
				// The application is gone (EPIPE) or stopped
				// reading: what the server says goes nowhere.
				s.setErr(&s.downErr, werr)
				if isTimeout(werr) {
					s.abort()
				}
				return
			}
			s.alive()
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				s.setErr(&s.downErr, err)
			}
			if isTimeout(err) {
				s.abort()
				return
			}
			// close_notify, the end of TCP, or a reset: the
			// application reads EOF and judges for itself.
			s.local.CloseWrite()
			return
		}
	}
}

func (s *Shuttle) setErr(p *error, err error) {
	s.mu.Lock()
	*p = err
	s.mu.Unlock()
}

// sendCloseNotify ends the up direction cleanly, once.
func (s *Shuttle) sendCloseNotify() {
	s.mu.Lock()
	if s.closeNotified || s.aborted {
		s.mu.Unlock()
		return
	}
	s.closeNotified = true
	s.mu.Unlock()
	s.remote.CloseWrite() // crypto/tls bounds the alert's write by 5 s

}

// abort stops both directions now: every pending read and write returns,
// and the application sees its socket shut down.
func (s *Shuttle) abort() {
	s.mu.Lock()
	s.aborted = true
	past := time.Unix(1, 0)
	s.remote.SetDeadline(past)
	s.local.SetDeadline(past)
	s.mu.Unlock()
	s.local.CloseRead()
	s.local.CloseWrite()
}

// Finish is called once the application has exited. It gives the up
// direction grace to forward the application's last bytes and send
// close_notify, then stops everything and returns why each direction
// ended (nil: a clean end).
func (s *Shuttle) Finish(grace time.Duration) (up, down error) {
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-s.upDone:
	case <-t.C:
		// Someone else (a grandchild of the application) still holds
		// the socketpair: we do not wait for it.
	}
	s.abort()
	<-s.upDone
	<-s.downDone
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.upErr, s.downErr
}

// Done is closed when the up direction has ended.
func (s *Shuttle) Done() <-chan struct{} { return s.upDone }

// CloseNotified tells whether close_notify went out.
func (s *Shuttle) CloseNotified() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closeNotified
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
