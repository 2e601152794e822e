package mtasts

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"qmail-remote-go/src/internal/https1"
	"qmail-remote-go/src/testkit/tlstest"
)

// selfSigned makes a certificate for name and the roots it verifies
// against (a CA of its own).
func selfSigned(t *testing.T, name string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	ca := tlstest.NewCA(t, "test CA")
	return ca.Issue(t, tlstest.Leaf{DNSNames: []string{name}}), ca.Pool()
}

// policyServer answers every request on 127.0.0.1 with answer, and sends
// the request lines it got on the channel.
func policyServer(t *testing.T, cert tls.Certificate, answer string) (port string, lines chan string) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	lines = make(chan string, 16)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(time.Minute)) // a backstop only
				r := bufio.NewReader(conn)
				first := ""
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if first == "" {
						first = strings.TrimSpace(line)
					}
					if line == "\r\n" {
						break
					}
				}
				lines <- first
				io.WriteString(conn, answer)
			})
		}
	})
	_, port, _ = net.SplitHostPort(ln.Addr().String())
	return port, lines
}

// fetcherFor fetches from port on 127.0.0.1, trusting roots.
func fetcherFor(roots *x509.CertPool, port string) HTTPSFetcher {
	return HTTPSFetcher{https1.Client{Roots: roots, Port: port,
		Addrs: func(_ context.Context, host string) ([]netip.Addr, error) {
			if host != "mta-sts.example.test" {
				return nil, errors.New("unexpected host " + host)
			}
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
		}}}
}

func TestHTTPSFetcher(t *testing.T) {
	cert, roots := selfSigned(t, "mta-sts.example.test")
	_, otherRoots := selfSigned(t, "mta-sts.example.test")
	policy := "version: STSv1\r\nmode: enforce\r\nmx: mx.example.test\r\nmax_age: 86400\r\n"
	ok := func(ctype, body string) string {
		return "HTTP/1.1 200 OK\r\nContent-Type: " + ctype + "\r\nConnection: close\r\n\r\n" + body
	}
	for _, c := range []struct {
		name   string
		answer string
		roots  *x509.CertPool
		err    error  // nil: the policy is wanted
		text   string // part of the error
	}{
		{name: "200 text/plain", answer: ok("text/plain", policy)},
		{name: "text/plain with parameters", answer: ok("Text/Plain; charset=utf-8", policy)},
		{name: "404", answer: "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n\r\nversion: STSv1\n", err: ErrFetch, text: "HTTP status 404"},
		{name: "301 not followed", answer: "HTTP/1.1 301 Moved\r\nLocation: https://mta-sts.example.test/other\r\n\r\n", err: ErrFetch, text: "HTTP status 301"},
		{name: "text/html", answer: ok("text/html", policy), err: ErrInvalid, text: `Content-Type "text/html", not text/plain`},
		{name: "text/plainer", answer: ok("text/plainer", policy), err: ErrInvalid, text: "not text/plain"},
		{name: "no Content-Type", answer: "HTTP/1.0 200 OK\r\n\r\n" + policy, err: ErrInvalid, text: `Content-Type "", not text/plain`},
		{name: "bad policy", answer: ok("text/plain", "version: STSv1\nmode: enforce\nmax_age: 1\n"), err: ErrInvalid, text: "no mx line"},
		{name: "too long", answer: ok("text/plain", policy+strings.Repeat("x: y\n", MaxPolicy/5)), err: ErrFetch, text: "longer than the limit of 65536"},
		{name: "untrusted certificate", answer: ok("text/plain", policy), roots: otherRoots, err: ErrWebPKI, text: "certificate"},
	} {
		t.Run(c.name, func(t *testing.T) {
			port, lines := policyServer(t, cert, c.answer)
			roots := roots
			if c.roots != nil {
				roots = c.roots
			}
			p, err := fetcherFor(roots, port).Fetch(context.Background(), "example.test.")
			if c.err == nil {
				if err != nil || p.Mode != ModeEnforce || !p.Matches("mx.example.test") || p.Text != policy {
					t.Fatalf("got %+v, %v", p, err)
				}
			} else {
				if !errors.Is(err, c.err) || !strings.Contains(err.Error(), c.text) {
					t.Fatalf("got %+v, %v; want %v with %q", p, err, c.err, c.text)
				}
				// One class only, so that the report says one thing.
				n := 0
				for _, class := range []error{ErrFetch, ErrInvalid, ErrWebPKI} {
					if errors.Is(err, class) {
						n++
					}
				}
				if n != 1 {
					t.Errorf("%v is of %d classes", err, n)
				}
			}
			if c.err != ErrWebPKI {
				if line := <-lines; line != "GET /.well-known/mta-sts.txt HTTP/1.0" {
					t.Errorf("request %q", line)
				}
			}
		})
	}
	// Nobody listening: a fetch error.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	if _, err := fetcherFor(roots, port).Fetch(context.Background(), "example.test"); !errors.Is(err, ErrFetch) {
		t.Errorf("closed port: %v", err)
	}
}

// Obtain and HTTPSFetcher together: fetched once, then cached.
func TestObtainHTTPS(t *testing.T) {
	cert, roots := selfSigned(t, "mta-sts.example.test")
	port, lines := policyServer(t, cert, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nversion: STSv1\nmode: testing\nmx: *.example.test\nmax_age: 600\n")
	cache := fakeCache(t)
	f := fetcherFor(roots, port)
	txt := TXT{ID: "20240101", Found: true}
	r := Obtain(context.Background(), cache, f, "example.test", txt)
	if !r.Fetched || r.Err != nil || r.Policy.Mode != ModeTesting || !r.Policy.Matches("mx1.example.test") {
		t.Fatalf("got %+v", r)
	}
	r = Obtain(context.Background(), cache, f, "example.test", txt)
	if !r.Cached || r.Err != nil || r.Policy.Mode != ModeTesting {
		t.Fatalf("second: %+v", r)
	}
	if n := len(lines); n != 1 {
		t.Errorf("%d requests", n)
	}
}
