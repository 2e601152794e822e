package https1

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"qmail-remote-go/src/testkit/tlstest"
)

// The tests run a TLS server on 127.0.0.1 with certificates made here,
// and write its answers byte for byte: the point is what the client makes
// of them.

const testHost = "mta-sts.example.test"

// pki is a test CA and a server certificate it signed.
type pki struct {
	roots *x509.CertPool
	cert  tls.Certificate
}

// newPKI makes a CA and a certificate for names valid from notBefore to
// notAfter.
func newPKI(t *testing.T, notBefore, notAfter time.Time, names ...string) pki {
	t.Helper()
	ca := tlstest.NewCA(t, "test CA")
	return pki{ca.Pool(), ca.Issue(t, tlstest.Leaf{DNSNames: names, NotBefore: notBefore, NotAfter: notAfter})}
}

// validPKI is a CA and a current certificate for testHost.
func validPKI(t *testing.T) pki {
	return newPKI(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), testHost)
}

// request is what the test server received.
type request struct {
	line   string
	header map[string]string // lower-case names
	body   []byte
}

// server is a TLS server on 127.0.0.1 that answers each request with
// whatever handle writes, then closes the connection.
type server struct {
	port string
	reqs chan request
	done chan struct{} // closed at the end of the test: handlers that hang return
}

func serve(t *testing.T, cert tls.Certificate, handle func(s *server, req request, w io.Writer)) *server {
	t.Helper()
	return serveConfig(t, &tls.Config{Certificates: []tls.Certificate{cert}}, handle)
}

// serveConfig is serve with the server's whole TLS configuration.
func serveConfig(t *testing.T, config *tls.Config, handle func(s *server, req request, w io.Writer)) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{reqs: make(chan request, 16), done: make(chan struct{})}
	_, s.port, _ = net.SplitHostPort(ln.Addr().String())
	tl := tls.NewListener(ln, config)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		close(s.done)
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			conn, err := tl.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.Close()
				// A backstop against a test that goes wrong, not a
				// timing the tests rely on.
				conn.SetDeadline(time.Now().Add(time.Minute))
				req, err := readRequest(bufio.NewReader(conn))
				if err != nil {
					return
				}
				s.reqs <- req
				handle(s, req, conn)
			})
		}
	})
	return s
}

// readRequest reads an HTTP request with a Content-Length body, or none.
func readRequest(r *bufio.Reader) (request, error) {
	req := request{header: map[string]string{}}
	line, err := r.ReadString('\n')
	if err != nil {
		return req, err
	}
	req.line = strings.TrimSuffix(line, "\r\n")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return req, err
		}
		line = strings.TrimSuffix(line, "\r\n")
		if line == "" {
			break
		}
		k, v, _ := strings.Cut(line, ":")
		req.header[strings.ToLower(k)] = strings.TrimSpace(v)
	}
	if cl := req.header["content-length"]; cl != "" {
		n, err := strconv.Atoi(cl)
		if err != nil {
			return req, err
		}
		req.body = make([]byte, n)
		if _, err := io.ReadFull(r, req.body); err != nil {
			return req, err
		}
	}
	return req, nil
}

// answer is a handler that writes text.
func answer(text string) func(*server, request, io.Writer) {
	return func(_ *server, _ request, w io.Writer) { io.WriteString(w, text) }
}

// loopback finds every host at 127.0.0.1.
func loopback(context.Context, string) ([]netip.Addr, error) {
	return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
}

// clientFor is a client of s trusting p.
func clientFor(p pki, s *server) Client {
	return Client{Roots: p.roots, Port: s.port, Addrs: loopback}
}

func TestGet(t *testing.T) {
	p := validPKI(t)
	s := serve(t, p.cert, answer("HTTP/1.0 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 6\r\n\r\nhello\n"))
	resp, err := clientFor(p, s).Get(context.Background(), testHost, "/.well-known/mta-sts.txt")
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 200 || resp.ContentType != "text/plain; charset=utf-8" || string(resp.Body) != "hello\n" {
		t.Errorf("got %+v", resp)
	}
	req := <-s.reqs
	want := map[string]string{"host": testHost + ":" + s.port, "user-agent": "qmail-remote-go", "connection": "close"}
	if req.line != "GET /.well-known/mta-sts.txt HTTP/1.0" || fmt.Sprint(req.header) != fmt.Sprint(want) || len(req.body) != 0 {
		t.Errorf("server got %+v", req)
	}
}

func TestPost(t *testing.T) {
	p := validPKI(t)
	s := serve(t, p.cert, answer("HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"))
	body := []byte(strings.Repeat("report ", 2000)) // more than one TLS record and write buffer
	resp, err := clientFor(p, s).Post(context.Background(), testHost+".", "/v1/tlsrpt", "application/tlsrpt+gzip", body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 201 || resp.ContentType != "" || len(resp.Body) != 0 {
		t.Errorf("got %+v", resp)
	}
	req := <-s.reqs
	if req.line != "POST /v1/tlsrpt HTTP/1.0" || req.header["content-type"] != "application/tlsrpt+gzip" ||
		req.header["content-length"] != strconv.Itoa(len(body)) || string(req.body) != string(body) ||
		req.header["host"] != testHost+":"+s.port {
		t.Errorf("server got %q %v and %d bytes", req.line, req.header, len(req.body))
	}
}

// The default port is left out of Host, as RFC 9110 7.2 wants.
func TestHostHeaderDefaultPort(t *testing.T) {
	p := validPKI(t)
	s := serve(t, p.cert, answer("HTTP/1.0 200 OK\r\n\r\n"))
	c := clientFor(p, s)
	c.Port = ""
	c.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr != "127.0.0.1:443" {
			return nil, fmt.Errorf("dialed %s", addr)
		}
		return net.Dial(network, "127.0.0.1:"+s.port)
	}
	if _, err := c.Get(context.Background(), testHost, "/"); err != nil {
		t.Fatal(err)
	}
	if req := <-s.reqs; req.header["host"] != testHost {
		t.Errorf("Host: %q", req.header["host"])
	}
}

// What the client makes of the server's answer, byte for byte.
func TestResponses(t *testing.T) {
	big := strings.Repeat("x", 2000)
	for _, c := range []struct {
		name   string
		answer string
		status int
		ctype  string
		body   string
		err    string // part of the error; "" when none is wanted
	}{
		{name: "EOF-delimited", answer: "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nline 1\nline 2\n",
			status: 200, ctype: "text/plain", body: "line 1\nline 2\n"},
		{name: "LF only, odd spacing", answer: "HTTP/1.0 200\nContent-Type:text/plain \ncontent-length:  2\n\nok",
			status: 200, ctype: "text/plain", body: "ok"},
		{name: "body at the limit", answer: "HTTP/1.0 200 OK\r\nContent-Length: 1000\r\n\r\n" + big[:1000],
			status: 200, body: big[:1000]},
		{name: "Content-Length over the limit", answer: "HTTP/1.0 200 OK\r\nContent-Length: 2000\r\n\r\n" + big,
			err: "response body of 2000 bytes is longer than the limit of 1000"},
		{name: "EOF-delimited over the limit", answer: "HTTP/1.0 200 OK\r\n\r\n" + big,
			err: "response body is longer than the limit of 1000 bytes"},
		{name: "chunked", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\nContent-Type: text/plain\r\n\r\n" +
			"5\r\nhello\r\n1;ext=1\r\n,\r\nA \r\n world 123\r\n0\r\nX-Trailer: yes\r\n\r\n",
			status: 200, ctype: "text/plain", body: "hello, world 123"},
		{name: "chunked over the limit", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"3e8\r\n" + big[:1000] + "\r\n1\r\nx\r\n0\r\n\r\n",
			err: "response body is longer than the limit of 1000 bytes"},
		{name: "chunk size overflow", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
			err: "malformed chunk size line"},
		{name: "chunked cut short", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
			err: "chunked response body cut short"},
		{name: "chunked without last chunk", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
			err: "chunked response body cut short"},
		{name: "chunk without CRLF", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n0\r\n\r\n",
			err: "chunk not followed by CRLF"},
		{name: "gzip coding", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
			err: `unsupported Transfer-Encoding "gzip, chunked"`},
		{name: "redirect returned, not followed", answer: "HTTP/1.1 301 Moved Permanently\r\nLocation: https://elsewhere.test/\r\nContent-Length: 5\r\n\r\nmoved",
			status: 301, body: "moved"},
		{name: "interim response skipped", answer: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
			status: 404},
		{name: "204 has no body", answer: "HTTP/1.1 204 No Content\r\n\r\n", status: 204},
		{name: "folded header", answer: "HTTP/1.0 200 OK\r\nContent-Type: text/plain;\r\n charset=us-ascii\r\nContent-Length: 0\r\n\r\n",
			status: 200, ctype: "text/plain; charset=us-ascii"},
		{name: "header too long", answer: "HTTP/1.0 200 OK\r\nX-Big: " + strings.Repeat("y", MaxHeader) + "\r\n\r\nbody",
			err: "response header too long (the limit is 16384 bytes)"},
		{name: "many headers too long", answer: "HTTP/1.0 200 OK\r\n" + strings.Repeat("X-Many: 0123456789abcdef\r\n", 700) + "\r\n",
			err: "response header too long"},
		{name: "not HTTP", answer: "SSH-2.0-OpenSSH\r\n\r\n", err: `malformed status line "SSH-2.0-OpenSSH"`},
		{name: "bad status code", answer: "HTTP/1.0 2000 OK\r\n\r\n", err: "malformed status line"},
		{name: "status code 600", answer: "HTTP/1.0 600 OK\r\n\r\n", err: "malformed status code"},
		{name: "header without colon", answer: "HTTP/1.0 200 OK\r\nContent-Type text/plain\r\n\r\n", err: "malformed response header line"},
		{name: "conflicting lengths", answer: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
			err: "conflicting Content-Length values 2 and 3"},
		{name: "bad length", answer: "HTTP/1.0 200 OK\r\nContent-Length: -1\r\n\r\n", err: "malformed Content-Length"},
		{name: "body cut short", answer: "HTTP/1.0 200 OK\r\nContent-Length: 100\r\n\r\nshort",
			err: "response body cut short: 5 of 100 bytes"},
		{name: "closed inside the header", answer: "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n",
			err: "connection closed inside the response header"},
		{name: "closed inside a line", answer: "HTTP/1.0 200 O", err: "connection closed inside a response header line"},
		{name: "closed without an answer", answer: "", err: "connection closed before a response"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := validPKI(t)
			s := serve(t, p.cert, answer(c.answer))
			cl := clientFor(p, s)
			cl.Max = 1000
			resp, err := cl.Get(context.Background(), testHost, "/x")
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("got %+v, %v; want an error with %q", resp, err, c.err)
				}
				if !strings.HasPrefix(err.Error(), "https://"+testHost+":"+s.port+"/x: ") || errors.Is(err, ErrWebPKI) {
					t.Errorf("error %q", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if resp.Status != c.status || resp.ContentType != c.ctype || string(resp.Body) != c.body {
				t.Errorf("got %d %q %q, want %d %q %q", resp.Status, resp.ContentType, resp.Body, c.status, c.ctype, c.body)
			}
			if n := len(s.reqs); n != 1 {
				t.Errorf("%d requests", n)
			}
		})
	}
}

// A certificate that does not verify is ErrWebPKI, and nothing is sent.
func TestWebPKI(t *testing.T) {
	now := time.Now()
	good := validPKI(t)
	other := validPKI(t)
	for _, c := range []struct {
		name   string
		server pki
		roots  *x509.CertPool
		host   string
	}{
		{"wrong name", newPKI(t, now.Add(-time.Hour), now.Add(time.Hour), "mta-sts.other.test"), nil, testHost},
		{"name under a wildcard it does not match", newPKI(t, now.Add(-time.Hour), now.Add(time.Hour), "*.example.test"), nil, "a." + testHost},
		{"untrusted root", good, other.roots, testHost},
		{"expired", newPKI(t, now.Add(-2*time.Hour), now.Add(-time.Hour), testHost), nil, testHost},
		{"not yet valid", newPKI(t, now.Add(time.Hour), now.Add(2*time.Hour), testHost), nil, testHost},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := serve(t, c.server.cert, answer("HTTP/1.0 200 OK\r\n\r\nsecret"))
			cl := clientFor(c.server, s)
			if c.roots != nil {
				cl.Roots = c.roots
			}
			resp, err := cl.Get(context.Background(), c.host, "/")
			if !errors.Is(err, ErrWebPKI) {
				t.Fatalf("got %+v, %v; want ErrWebPKI", resp, err)
			}
			if len(s.reqs) != 0 {
				t.Error("the request was sent")
			}
		})
	}
	// The wildcard itself verifies: the check above failed for the right
	// reason.
	p := newPKI(t, now.Add(-time.Hour), now.Add(time.Hour), "*.example.test")
	s := serve(t, p.cert, answer("HTTP/1.0 200 OK\r\n\r\n"))
	if _, err := clientFor(p, s).Get(context.Background(), testHost, "/"); err != nil {
		t.Fatal(err)
	}
}

// A server that offers only TLS 1.1 or older is refused.
func TestOldTLS(t *testing.T) {
	p := validPKI(t)
	s := serveConfig(t, &tls.Config{Certificates: []tls.Certificate{p.cert}, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11},
		answer("HTTP/1.0 200 OK\r\n\r\n"))
	_, err := clientFor(p, s).Get(context.Background(), testHost, "/")
	if err == nil || errors.Is(err, ErrWebPKI) || !strings.Contains(err.Error(), "TLS handshake") {
		t.Fatalf("got %v", err)
	}
	// The same server with TLS 1.2 allowed: the refusal was the version.
	s = serveConfig(t, &tls.Config{Certificates: []tls.Certificate{p.cert}, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS12},
		answer("HTTP/1.0 200 OK\r\n\r\n"))
	if _, err := clientFor(p, s).Get(context.Background(), testHost, "/"); err != nil {
		t.Fatal(err)
	}
}

// A server that is not TLS, or closes at once, is a plain error.
func TestNotTLS(t *testing.T) {
	for _, greeting := range []string{"", "HTTP/1.0 400 Bad Request\r\n\r\n"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			conn, err := ln.Accept()
			if err == nil {
				io.WriteString(conn, greeting)
				conn.Close()
			}
		}()
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		c := Client{Roots: validPKI(t).roots, Port: port, Addrs: loopback}
		_, err = c.Get(context.Background(), testHost, "/")
		if err == nil || errors.Is(err, ErrWebPKI) || !strings.Contains(err.Error(), "TLS handshake") {
			t.Errorf("greeting %q: %v", greeting, err)
		}
	}
}

// A server that never answers: the request ends anyway, with an error.
func TestTimeout(t *testing.T) {
	p := validPKI(t)
	s := serve(t, p.cert, func(s *server, _ request, _ io.Writer) { <-s.done })
	c := clientFor(p, s)
	c.Timeout = 200 * time.Millisecond
	if resp, err := c.Get(context.Background(), testHost, "/"); err == nil {
		t.Fatalf("got %+v", resp)
	}
	// A parent context canceled ends it too.
	c.Timeout = 0
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-s.reqs
		<-s.reqs
		cancel()
	}()
	if resp, err := c.Get(ctx, testHost, "/"); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %+v, %v; want context.Canceled", resp, err)
	}
}

// The addresses are tried in order until one connects; IPv4 in IPv6 form
// is dialed as IPv4.
func TestAddresses(t *testing.T) {
	p := validPKI(t)
	s := serve(t, p.cert, answer("HTTP/1.0 200 OK\r\n\r\nok"))
	var dialed []string
	c := clientFor(p, s)
	c.Addrs = func(_ context.Context, host string) ([]netip.Addr, error) {
		if host != testHost {
			t.Errorf("looked up %q", host)
		}
		return []netip.Addr{netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("::ffff:127.0.0.1"), netip.MustParseAddr("192.0.2.1")}, nil
	}
	c.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dialed = append(dialed, addr)
		if !strings.HasPrefix(addr, "127.0.0.1:") {
			return nil, errors.New("unreachable")
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	if _, err := c.Get(context.Background(), testHost, "/"); err != nil {
		t.Fatal(err)
	}
	if want := "[[2001:db8::1]:" + s.port + " 127.0.0.1:" + s.port + "]"; fmt.Sprint(dialed) != want {
		t.Errorf("dialed %v, want %v", dialed, want)
	}
	// None connects: every error is told.
	dialed = nil
	c.Addrs = func(context.Context, string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("192.0.2.1")}, nil
	}
	_, err := c.Get(context.Background(), testHost, "/")
	if err == nil || strings.Count(err.Error(), "unreachable") != 2 || len(dialed) != 2 {
		t.Errorf("got %v after %v", err, dialed)
	}
	// No addresses, or the lookup fails.
	c.Addrs = func(context.Context, string) ([]netip.Addr, error) { return nil, nil }
	if _, err := c.Get(context.Background(), testHost, "/"); err == nil || !strings.Contains(err.Error(), "has no addresses") {
		t.Errorf("no addresses: %v", err)
	}
	c.Addrs = func(context.Context, string) ([]netip.Addr, error) { return nil, errors.New("SERVFAIL") }
	if _, err := c.Get(context.Background(), testHost, "/"); err == nil || !strings.Contains(err.Error(), "SERVFAIL") {
		t.Errorf("failed lookup: %v", err)
	}
}

// Requests that cannot be made right are refused before connecting.
func TestRefused(t *testing.T) {
	dials := 0
	c := Client{Roots: x509.NewCertPool(), Addrs: loopback,
		Dial: func(context.Context, string, string) (net.Conn, error) {
			dials++
			return nil, errors.New("dialed")
		}}
	for _, r := range []struct {
		client            Client
		host, path, ctype string
		err               string
	}{
		{Client{Addrs: loopback, Dial: c.Dial}, testHost, "/", "", "no trusted roots"},
		{c, "", "/", "", "empty host name"},
		{c, "a b.test", "/", "", `has ' '`},
		{c, "a.test/x", "/", "", `has '/'`},
		{c, "a.test\r\nX: y", "/", "", `has '\r'`},
		{c, testHost, "x", "", "does not start with '/'"},
		{c, testHost, "/a b", "", "escape it"},
		{c, testHost, "/a\nb", "", "escape it"},
		{c, testHost, "/", "text/plain\r\nX: y", "control character"},
		{Client{Roots: c.Roots, Port: "99999", Dial: c.Dial}, testHost, "/", "", "not a number from 1 to 65535"},
	} {
		_, err := r.client.Post(context.Background(), r.host, r.path, r.ctype, nil)
		if err == nil || !strings.Contains(err.Error(), r.err) {
			t.Errorf("%q %q %q: got %v, want %q", r.host, r.path, r.ctype, err, r.err)
		}
	}
	if dials != 0 {
		t.Errorf("%d dials", dials)
	}
}
