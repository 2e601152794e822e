// Package ststest runs an MTA-STS policy server for tests: HTTPS on a
// loopback address, a certificate from a test CA for mta-sts.DOMAIN,
// serving /.well-known/mta-sts.txt (RFC 8461 3.3) as text/plain. net/http
// is fine here: test code is not linked into the programs.
package ststest

import (
	"crypto/tls"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"qmail-remote-go/src/testkit/tlstest"
)

// Server serves one domain's policy; Policy and Fetches may be used while
// it runs.
type Server struct {
	Port    string       // where it listens (MTASTSPORT)
	Policy  atomic.Value // the policy text served (a string)
	Fetches atomic.Int32 // how many times it was served
}

// Start serves policy for domain on addr ("127.0.0.3"), until the test
// ends. Any other path or host is 404.
func Start(t testing.TB, ca *tlstest.CA, addr, domain, policy string) *Server {
	t.Helper()
	s := &Server{}
	s.Policy.Store(policy)
	name := "mta-sts." + domain
	ln, err := tls.Listen("tcp", net.JoinHostPort(addr, "0"), &tls.Config{
		Certificates: []tls.Certificate{ca.Issue(t, tlstest.Leaf{DNSNames: []string{name}})}})
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if host, _, _ := strings.Cut(r.Host, ":"); r.URL.Path != "/.well-known/mta-sts.txt" || host != name {
			http.NotFound(rw, r)
			return
		}
		s.Fetches.Add(1)
		rw.Header().Set("Content-Type", "text/plain")
		rw.Write([]byte(s.Policy.Load().(string)))
	})}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	_, s.Port, _ = net.SplitHostPort(ln.Addr().String())
	return s
}
