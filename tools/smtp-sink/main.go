// smtp-sink is a small SMTP server for the demo, the install check and the
// timing script: it accepts every message and stores it (or counts it).
//
// It prints its listening address as the first line of stdout, so that a
// script that asked for port 0 learns the port. Each message goes to
// DIR/N.eml, the body exactly as it came over DATA once un-dot-stuffed (the
// message as qmail had it, with CRLF line ends), and DIR/N.env, the
// commands of its transaction (HELO/EHLO, MAIL, RCPT lines) as received.
// Both are complete when the sink answers 250 after the final dot.
//
// It is strict where a client bug would hide: only CRLF "." CRLF ends
// DATA (a bare LF "." LF does not, see SMTP smuggling), and it counts bare
// CR and bare LF in bodies and says so in N.env.
//
// With -tls-cert and -tls-key it offers STARTTLS (RFC 3207) and records
// in N.env whether the transaction ran under TLS, with the version and
// cipher ("X-Sink-TLS: TLSv1.3 TLS_AES_128_GCM_SHA256", or "X-Sink-TLS:
// no"). Anything the client sent after STARTTLS before the handshake is
// thrown away, as RFC 3207 4.2 wants of a server.
//
// With -turns it prints "smtp-sink: session turns=N" on stderr at the end
// of each connection: the round trips the client waited for. A turn is a
// reply after which the sink had no unread input, so the client must have
// been waiting for that reply to go on; the reply to QUIT is not counted
// (a client need not wait for it), nor the TLS handshake's own round
// trips. Replies to pipelined commands that arrived together (RFC 2920)
// count once. An estimate from the server's side: a client that writes
// one pipelined batch in several pieces may count more.
//
// Self-contained on purpose: tools/ is outside src/ and cannot import
// src/internal (Go's internal rule).
package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const usage = "smtp-sink [ -l addr:port ] [ -o dir | -discard ] [ -t seconds ] [ -tls-cert file -tls-key file ] [ -turns ] [ -v ]"

// maxLine bounds a command line (RFC 5321 4.5.3.1.4 says 512 octets; be
// lenient). Body lines are not bounded: they are streamed in pieces of at
// most readSize, so memory does not grow with the message.
const maxLine = 4096

// readSize is the read buffer, and so the largest read(2): the sink must
// not be what limits tools/bench.sh's throughput figures, and with 4 KiB
// reads it was (one read per 4 KiB and a deadline per body line cost more
// CPU than the whole chain's sending side).
const readSize = 64 * 1024

type sink struct {
	dir     string
	discard bool
	timeout time.Duration
	verbose bool
	turns   bool         // print each session's round trips
	tls     *tls.Config  // nil: no STARTTLS
	seq     atomic.Int64 // messages stored or discarded
	bytes   atomic.Int64 // body bytes received
}

func main() {
	fs := flag.NewFlagSet("smtp-sink", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	listen := fs.String("l", "127.0.0.1:0", "")
	dir := fs.String("o", "", "")
	discard := fs.Bool("discard", false, "")
	timeout := fs.Int("t", 60, "")
	verbose := fs.Bool("v", false, "")
	turns := fs.Bool("turns", false, "")
	certFile := fs.String("tls-cert", "", "")
	keyFile := fs.String("tls-key", "", "")
	if err := fs.Parse(os.Args[1:]); err != nil || fs.NArg() != 0 || (*dir == "") == !*discard || *timeout < 1 ||
		(*certFile == "") != (*keyFile == "") {
		fmt.Fprintf(os.Stderr, "usage: %s\n", usage)
		os.Exit(100)
	}
	s := &sink{dir: *dir, discard: *discard, timeout: time.Duration(*timeout) * time.Second, verbose: *verbose, turns: *turns}
	if *certFile != "" {
		cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "smtp-sink: fatal: unable to load %s and %s: %v\n", *certFile, *keyFile, err)
			os.Exit(111)
		}
		s.tls = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	if !s.discard {
		if st, err := os.Stat(s.dir); err != nil || !st.IsDir() {
			fmt.Fprintf(os.Stderr, "smtp-sink: fatal: not a directory: %s\n", s.dir)
			os.Exit(111)
		}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "smtp-sink: fatal: %v\n", err)
		os.Exit(111)
	}
	fmt.Println(ln.Addr().String())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	go func() {
		<-sig
		ln.Close()
	}()

	var wg sync.WaitGroup
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				break
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serve(c)
		}()
	}
	// Let transactions in flight finish; they are bounded by the timeout.
	wg.Wait()
	fmt.Fprintf(os.Stderr, "smtp-sink: %d messages, %d body bytes\n", s.seq.Load(), s.bytes.Load())
}

// session is the state of one connection.
type session struct {
	s     *sink
	c     net.Conn
	r     *bufio.Reader
	w     *bufio.Writer
	env   []string // the transaction's commands, for N.env
	helo  string
	mail  bool
	rcpts int
	tls   string // "TLSv1.3 CIPHER" once STARTTLS is done, else ""
	turns int    // replies the client waited for (see -turns)
}

func (s *sink) serve(c net.Conn) {
	defer c.Close()
	ss := &session{s: s, c: c, r: bufio.NewReaderSize(c, readSize), w: bufio.NewWriter(c)}
	if s.turns {
		defer func() { fmt.Fprintf(os.Stderr, "smtp-sink: session turns=%d tls=%t\n", ss.turns, ss.tls != "") }()
	}
	ss.reply("220 sink.example.test ESMTP smtp-sink")
	for {
		line, err := ss.line()
		if err != nil {
			return
		}
		if s.verbose {
			fmt.Fprintf(os.Stderr, "smtp-sink: < %q\n", line)
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			ss.helo, ss.env = line, nil
			ss.mail, ss.rcpts = false, 0
			ext := []string{"250-sink.example.test", "250-PIPELINING", "250-8BITMIME", "250-SIZE 0"}
			if s.tls != nil && ss.tls == "" {
				ext = append(ext, "250-STARTTLS")
			}
			ss.reply(append(ext, "250 SMTPUTF8")...)
		case "STARTTLS":
			switch {
			case s.tls == nil || ss.tls != "":
				ss.reply("502 5.5.2 command not implemented")
			case arg != "":
				ss.reply("501 5.5.4 syntax: STARTTLS")
			default:
				ss.reply("220 2.0.0 ready to start TLS")
				if err := ss.startTLS(); err != nil {
					if s.verbose {
						fmt.Fprintf(os.Stderr, "smtp-sink: TLS handshake: %v\n", err)
					}
					return
				}
			}
		case "HELO":
			ss.helo, ss.env = line, nil
			ss.mail, ss.rcpts = false, 0
			ss.reply("250 sink.example.test")
		case "MAIL":
			if ss.mail {
				ss.reply("503 5.5.1 nested MAIL command")
				continue
			}
			if !strings.HasPrefix(strings.ToUpper(arg), "FROM:") {
				ss.reply("501 5.5.4 syntax: MAIL FROM:<address>")
				continue
			}
			ss.mail, ss.env = true, []string{line}
			ss.reply("250 2.1.0 ok")
		case "RCPT":
			if !ss.mail {
				ss.reply("503 5.5.1 MAIL first")
				continue
			}
			if !strings.HasPrefix(strings.ToUpper(arg), "TO:") {
				ss.reply("501 5.5.4 syntax: RCPT TO:<address>")
				continue
			}
			ss.rcpts++
			ss.env = append(ss.env, line)
			ss.reply("250 2.1.5 ok")
		case "DATA":
			if ss.rcpts == 0 {
				ss.reply("503 5.5.1 RCPT first")
				continue
			}
			ss.reply("354 go ahead")
			n, err := ss.data()
			if err != nil {
				if s.verbose {
					fmt.Fprintf(os.Stderr, "smtp-sink: DATA: %v\n", err)
				}
				if errors.Is(err, errStore) {
					ss.reply("451 4.3.0 cannot store the message")
					ss.mail, ss.rcpts = false, 0
					continue
				}
				return
			}
			ss.mail, ss.rcpts = false, 0
			ss.reply(fmt.Sprintf("250 2.0.0 ok %d", n))
		case "RSET":
			ss.mail, ss.rcpts, ss.env = false, 0, nil
			ss.reply("250 2.0.0 ok")
		case "NOOP":
			ss.reply("250 2.0.0 ok")
		case "QUIT":
			t := ss.turns
			ss.reply("221 2.0.0 bye")
			ss.turns = t // the client need not wait for this one
			return
		default:
			ss.reply("502 5.5.2 command not implemented")
		}
	}
}

// startTLS does the server side of the handshake and starts the session
// over: RFC 3207 4.2, the client must EHLO again and nothing said before
// counts. Bytes the client sent after STARTTLS in cleartext are dropped
// with the old reader.
func (ss *session) startTLS() error {
	tc := tls.Server(ss.c, ss.s.tls)
	tc.SetDeadline(time.Now().Add(ss.s.timeout))
	if err := tc.Handshake(); err != nil {
		return err
	}
	tc.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	ss.c, ss.r, ss.w = tc, bufio.NewReaderSize(tc, readSize), bufio.NewWriter(tc)
	ss.helo, ss.env, ss.mail, ss.rcpts = "", nil, false, 0
	ss.tls = versionName(st.Version) + " " + tls.CipherSuiteName(st.CipherSuite)
	return nil
}

// versionName spells a TLS version as SSL_PROTOCOL does (OpenSSL's names).
func versionName(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLSv1"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return fmt.Sprintf("0x%04x", v)
}

// reply writes one (possibly multi-line) reply and flushes it.
func (ss *session) reply(lines ...string) {
	ss.c.SetWriteDeadline(time.Now().Add(ss.s.timeout))
	for _, l := range lines {
		ss.w.WriteString(l + "\r\n")
	}
	ss.w.Flush()
	if ss.r.Buffered() == 0 {
		ss.turns++
	}
}

// line reads one command line, CRLF or LF terminated; a line longer than
// maxLine is an error (the connection is dropped).
func (ss *session) line() (string, error) {
	ss.c.SetReadDeadline(time.Now().Add(ss.s.timeout))
	b, err := ss.r.ReadSlice('\n')
	if err != nil {
		return "", err
	}
	if len(b) > maxLine {
		return "", errors.New("command line too long")
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

var errStore = errors.New("cannot store the message")

// data reads the body up to CRLF "." CRLF, un-dot-stuffs it and stores it.
// It returns the number of message N it was stored as.
func (ss *session) data() (int64, error) {
	if ss.s.discard {
		return ss.discardData()
	}
	var out io.Writer = io.Discard
	var f *os.File
	var storeErr error
	n := ss.s.seq.Add(1)
	if !ss.s.discard {
		var err error
		f, err = os.Create(filepath.Join(ss.s.dir, strconv.FormatInt(n, 10)+".eml.tmp"))
		if err != nil {
			storeErr = err
		} else {
			defer f.Close()
			out = f
		}
	}
	bw := bufio.NewWriterSize(out, 64*1024)
	var size, bareCR, bareLF int64
	atStart := true // at the start of a line
	pendingCR := false
	for {
		ss.c.SetReadDeadline(time.Now().Add(ss.s.timeout))
		b, err := ss.r.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return n, fmt.Errorf("connection lost in DATA: %w", err)
		}
		piece := b
		complete := err == nil // piece ends with LF
		if atStart && piece[0] == '.' {
			// RFC 5321 4.5.2: a line of a single dot ends DATA, a leading
			// dot of any other line was added by the client.
			if complete && string(piece) == ".\r\n" {
				break
			}
			piece = piece[1:]
		}
		if complete {
			if len(b) < 2 || b[len(b)-2] != '\r' {
				bareLF++
			}
		}
		// A CR not followed by LF is a bare CR; the LF may come in the
		// next piece when a long line was split.
		for _, c := range piece {
			if pendingCR && c != '\n' {
				bareCR++
			}
			pendingCR = c == '\r'
		}
		size += int64(len(piece))
		if _, err := bw.Write(piece); err != nil && storeErr == nil {
			storeErr = err
		}
		atStart = complete
	}
	if err := bw.Flush(); err != nil && storeErr == nil {
		storeErr = err
	}
	ss.s.bytes.Add(size)
	if ss.s.discard {
		return n, nil
	}
	if storeErr == nil {
		storeErr = f.Close()
	}
	if storeErr == nil {
		var env bytes.Buffer
		env.WriteString(ss.helo + "\n")
		for _, l := range ss.env {
			env.WriteString(l + "\n")
		}
		fmt.Fprintf(&env, "X-Sink-Body: %d bytes, %d bare CR, %d bare LF\n", size, bareCR, bareLF)
		tlsState := ss.tls
		if tlsState == "" {
			tlsState = "no"
		}
		fmt.Fprintf(&env, "X-Sink-TLS: %s\n", tlsState)
		base := filepath.Join(ss.s.dir, strconv.FormatInt(n, 10))
		storeErr = os.WriteFile(base+".env", env.Bytes(), 0o644)
		if storeErr == nil {
			storeErr = os.Rename(base+".eml.tmp", base+".eml")
		}
	}
	if storeErr != nil {
		return n, fmt.Errorf("%w: %v", errStore, storeErr)
	}
	return n, nil
}

// The end of DATA: RFC 5321 4.1.1.4, CRLF "." CRLF, where the first CRLF
// may be the one that ended the DATA command line. lineDot is a dot that
// data takes as stuffing: one at the start of a line, and data's lines end
// at every LF (bare or not).
var (
	endOfData = []byte("\r\n.\r\n")
	lineDot   = []byte("\n.")
)

// discardData is data for -discard: the body is only counted, so it is
// scanned in whole buffers for the end of DATA instead of line by line,
// with one read deadline per read(2) instead of one per line. The count is
// the same as data's (the body once un-dot-stuffed), so a client's bytes
// are checked all the same; bare CR and LF are not counted (they are only
// reported in N.env, which -discard does not write).
func (ss *session) discardData() (int64, error) {
	n := ss.s.seq.Add(1)
	var wire, stuffed int64
	// tail holds the last bytes seen (at most 4), to find an end of DATA
	// or a stuffed dot that spans two reads; at the start it is the CRLF
	// of the DATA command.
	var tailBuf [4]byte
	tail := append(tailBuf[:0], '\r', '\n')
	for {
		if ss.r.Buffered() == 0 {
			ss.c.SetReadDeadline(time.Now().Add(ss.s.timeout))
			if _, err := ss.r.Peek(1); err != nil {
				return n, fmt.Errorf("connection lost in DATA: %w", err)
			}
		}
		buf, _ := ss.r.Peek(ss.r.Buffered())
		// Matches that start in tail and end in buf.
		var joint [8]byte
		j := append(append(joint[:0], tail...), buf[:min(4, len(buf))]...)
		end := -1
		if k := bytes.Index(j, endOfData); k >= 0 && k < len(tail) {
			end = k + len(endOfData) - len(tail)
		}
		for k := 0; k < len(tail); k++ {
			if bytes.HasPrefix(j[k:], lineDot) && k+len(lineDot) > len(tail) && (end < 0 || k+len(lineDot)-len(tail) <= end) {
				stuffed++
			}
		}
		if end < 0 {
			if k := bytes.Index(buf, endOfData); k >= 0 {
				end = k + len(endOfData)
			}
		}
		scan := buf
		if end >= 0 {
			scan = buf[:end]
		}
		stuffed += int64(bytes.Count(scan, lineDot))
		wire += int64(len(scan))
		if end >= 0 {
			ss.r.Discard(end)
			// The final dot was counted as stuffing, and the dot line
			// is not part of the body.
			size := wire - (stuffed - 1) - 3
			ss.s.bytes.Add(size)
			return n, nil
		}
		j = append(j[:0], tail...)
		j = append(j, buf[max(0, len(buf)-4):]...)
		tail = append(tail[:0], j[max(0, len(j)-4):]...)
		ss.r.Discard(len(buf))
	}
}
