// dnszone is a tiny DNS server for tools/scripting-test.sh: it answers,
// on 127.0.0.1 over UDP and TCP on one port, from the zone-file records
// given as arguments, and nothing else.
//
//	dnszone [-l 127.0.0.1:0] 'example.test. 300 IN MX 10 mx1.example.test.' ...
//
// It prints its listening address (host:port) as the first line of
// stdout, so that a script that asked for port 0 learns the port, then
// serves until SIGTERM, SIGINT or SIGHUP. Like a recursive resolver seen
// from a stub client: a name without any record is NXDOMAIN, a name with
// records but none of the asked type is NOERROR with no answer (NODATA).
// No CNAME chasing, no DNSSEC, no wildcards: a test tool, not a server.
//
// Self-contained on purpose: tools/ is outside src/ and cannot import
// src/internal; src/testkit/dnstest needs a testing.TB.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/miekg/dns"
)

const usage = "dnszone [ -l 127.0.0.1:port ] record..."

type zone map[string][]dns.RR // lower-case owner name with final dot

func (z zone) serve(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
	} else {
		q := req.Question[0]
		rrs, ok := z[strings.ToLower(q.Name)]
		if !ok {
			m.Rcode = dns.RcodeNameError
		}
		for _, rr := range rrs {
			if rr.Header().Rrtype == q.Qtype {
				c := dns.Copy(rr)
				c.Header().Name = q.Name
				m.Answer = append(m.Answer, c)
			}
		}
	}
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(1232, false)
	}
	if _, ok := w.RemoteAddr().(*net.UDPAddr); ok {
		m.Truncate(512)
		if opt := req.IsEdns0(); opt != nil {
			m.Truncate(int(opt.UDPSize()))
		}
	}
	w.WriteMsg(m)
}

func fatal(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "dnszone: fatal: "+format+"\n", a...)
	os.Exit(111)
}

func main() {
	fs := flag.NewFlagSet("dnszone", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	listen := fs.String("l", "127.0.0.1:0", "")
	if err := fs.Parse(os.Args[1:]); err != nil || fs.NArg() == 0 {
		fmt.Fprintf(os.Stderr, "usage: %s\n", usage)
		os.Exit(100)
	}
	z := zone{}
	for _, s := range fs.Args() {
		rr, err := dns.NewRR(s)
		if err != nil || rr == nil {
			fmt.Fprintf(os.Stderr, "dnszone: bad record %q: %v\n", s, err)
			os.Exit(100)
		}
		name := strings.ToLower(rr.Header().Name)
		z[name] = append(z[name], rr)
	}
	host, port, err := net.SplitHostPort(*listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "usage: %s\n", usage)
		os.Exit(100)
	}

	// UDP first (port 0: the kernel picks), then TCP on the same port;
	// with port 0, a port taken for TCP means trying again, a bounded
	// number of times.
	var pc net.PacketConn
	var ln net.Listener
	for try := 0; ; try++ {
		pc, err = net.ListenPacket("udp", net.JoinHostPort(host, port))
		if err != nil {
			fatal("%v", err)
		}
		p := strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port)
		ln, err = net.Listen("tcp", net.JoinHostPort(host, p))
		if err == nil {
			break
		}
		pc.Close()
		if port != "0" || try >= 50 {
			fatal("%v", err)
		}
	}
	h := dns.HandlerFunc(z.serve)
	udp := &dns.Server{PacketConn: pc, Handler: h}
	tcp := &dns.Server{Listener: ln, Handler: h}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	fmt.Println(pc.LocalAddr().String())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	<-sig
	udp.Shutdown()
	tcp.Shutdown()
}
