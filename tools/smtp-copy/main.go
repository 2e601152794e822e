// smtp-copy is the yardstick of tools/bench.sh: the least a client can do
// to deliver a message, so that the chain's figures can be given as a
// ratio to it, measured in the same run against the same sink.
//
// It speaks the minimal SMTP exchange in one process: greeting, EHLO,
// (STARTTLS, handshake, EHLO again with -tls), MAIL, RCPT, DATA (in one
// write when the server offers PIPELINING, as qmail-remote-io), the body,
// the reply to the final dot, and QUIT without waiting for its reply, as
// qmail-remote-io does. The body is FILE copied as it is with io.Copy: FILE
// must already be in wire form (CRLF line ends, dot-stuffed, ending in
// ".\r\n"), so smtp-copy does no transform at all. In cleartext io.Copy
// from a file to a TCP socket is sendfile(2) on Linux (no user-space copy:
// the strictest yardstick there is); with -tls it is crypto/tls's own
// records, a plain crypto/tls copy.
//
// -n N repeats the delivery N times in the same process, each on a new
// connection, and prints the median and p90 wall time of one delivery in
// ms ("name: value unit" lines): the start-up yardstick, a warm
// in-process client with no fork, exec or runtime start.
//
// Self-contained on purpose: tools/ cannot import src/internal.
package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"time"
)

const usage = "smtp-copy -a addr:port [ -tls -ca file ] [ -n runs ] [ -name name ] file"

type client struct {
	addr    string
	tls     *tls.Config // nil: cleartext
	file    string
	timeout time.Duration
}

func main() {
	fs := flag.NewFlagSet("smtp-copy", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	addr := fs.String("a", "", "")
	useTLS := fs.Bool("tls", false, "")
	ca := fs.String("ca", "", "")
	n := fs.Int("n", 0, "")
	name := fs.String("name", "client", "")
	if err := fs.Parse(os.Args[1:]); err != nil || fs.NArg() != 1 || *addr == "" || *n < 0 || *n > 10000 || (*useTLS && *ca == "") {
		fmt.Fprintf(os.Stderr, "usage: %s\n", usage)
		os.Exit(100)
	}
	c := &client{addr: *addr, file: fs.Arg(0), timeout: 60 * time.Second}
	if *useTLS {
		pem, err := os.ReadFile(*ca)
		if err != nil {
			die("%v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			die("no certificate in %s", *ca)
		}
		host, _, _ := net.SplitHostPort(*addr)
		// The same checks as the chain at tlsstrictness 2.
		c.tls = &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12}
	}
	if *n == 0 {
		if err := c.deliver(); err != nil {
			die("%v", err)
		}
		return
	}
	var walls []time.Duration
	for i := 0; i < *n; i++ {
		start := time.Now()
		if err := c.deliver(); err != nil {
			die("run %d: %v", i+1, err)
		}
		walls = append(walls, time.Since(start))
	}
	slices.Sort(walls)
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d.Microseconds())/1000) }
	fmt.Printf("%s_ms_median: %s ms\n", *name, ms(walls[len(walls)/2]))
	fmt.Printf("%s_ms_p90: %s ms\n", *name, ms(walls[(len(walls)*9+9)/10-1]))
}

// deliver does one whole delivery on a new connection.
func (c *client) deliver() error {
	f, err := os.Open(c.file)
	if err != nil {
		return err
	}
	defer f.Close()
	raw, err := net.DialTimeout("tcp", c.addr, c.timeout)
	if err != nil {
		return err
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(c.timeout))
	var conn net.Conn = raw
	br := bufio.NewReader(conn)
	pipelining := false
	say := func(cmd string, want int) error {
		if cmd != "" {
			if _, err := io.WriteString(conn, cmd+"\r\n"); err != nil {
				return err
			}
		}
		ext, err := expect(br, want, cmd)
		if strings.HasPrefix(cmd, "EHLO") {
			pipelining = strings.Contains(ext, "\nPIPELINING\n")
		}
		return err
	}
	if err := say("", 220); err != nil {
		return err
	}
	if err := say("EHLO copy.example.test", 250); err != nil {
		return err
	}
	if c.tls != nil {
		if err := say("STARTTLS", 220); err != nil {
			return err
		}
		tc := tls.Client(raw, c.tls)
		if err := tc.Handshake(); err != nil {
			return err
		}
		conn, br = tc, bufio.NewReader(tc)
		if err := say("EHLO copy.example.test", 250); err != nil {
			return err
		}
	}
	steps := []struct {
		cmd  string
		want int
	}{{"MAIL FROM:<a@copy.example.test>", 250}, {"RCPT TO:<b@example.test>", 250}, {"DATA", 354}}
	if pipelining {
		// RFC 2920: the three commands in one write, then the replies.
		var batch string
		for _, st := range steps {
			batch += st.cmd + "\r\n"
		}
		if _, err := io.WriteString(conn, batch); err != nil {
			return err
		}
		for _, st := range steps {
			if _, err := expect(br, st.want, st.cmd); err != nil {
				return err
			}
		}
	} else {
		for _, st := range steps {
			if err := say(st.cmd, st.want); err != nil {
				return err
			}
		}
	}
	if _, err := io.Copy(conn, f); err != nil {
		return err
	}
	if _, err := expect(br, 250, "the final dot"); err != nil {
		return err
	}
	_, err = io.WriteString(conn, "QUIT\r\n")
	return err
}

// expect reads one (multi-line) reply and checks its code. It returns the
// text of the lines, each followed by a newline, upper-cased.
func expect(br *bufio.Reader, want int, after string) (string, error) {
	text := "\n"
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return "", fmt.Errorf("reply to %q: %w", after, err)
		}
		if len(l) < 4 {
			return "", fmt.Errorf("reply to %q: short line %q", after, l)
		}
		if l[:3] != fmt.Sprint(want) {
			return "", errors.New("reply to " + after + ": " + strings.TrimSpace(l))
		}
		text += strings.ToUpper(strings.TrimRight(l[4:], "\r\n")) + "\n"
		if l[3] == ' ' {
			return text, nil
		}
	}
}

func die(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "smtp-copy: fatal: %s\n", fmt.Sprintf(format, args...))
	os.Exit(111)
}
