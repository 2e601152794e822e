package qmailremoteprobe

import (
	"bufio"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"qmail-remote-go/src/testkit/smtptest"
	"qmail-remote-go/src/testkit/tlstest"
)

// senderWorld: smtproutes sends example.test to mx1.example.test,
// senderroutes sends mail from @example.org, bounces and double bounces
// to mx2.example.test, all on the servers' port.
func senderWorld(t *testing.T) *world {
	w := newWorld(t, nil)
	w.control("smtproutes", "example.test:mx1.example.test:"+w.port+"\n::"+w.port+"\n")
	w.control("senderroutes", "<@example.org>:mx2.example.test:"+w.port+"\n<>:mx2.example.test:"+w.port+
		"\n<#@[]>:mx2.example.test:"+w.port+"\nnoreply@example.org:\n")
	return w
}

func TestSenderRoute(t *testing.T) {
	w := senderWorld(t)
	for _, c := range []struct {
		sender, key string
	}{
		{"user@example.org", "<@example.org>"},
		{"User@EXAMPLE.org", "<@example.org>"},
		{"", "<>"},
		{"#@[]", "<#@[]>"},
	} {
		r := w.probe("-f", c.sender, "example.test")
		rt := r.Route
		src := "senderroutes " + c.key
		if rt.Relay != "mx2.example.test" || rt.RelaySource != src || rt.PortSource != src || rt.SenderRoute != c.key ||
			rt.Sender == nil || *rt.Sender != c.sender || rt.OutgoingIP != "" {
			t.Errorf("-f %q: route %+v", c.sender, rt)
		}
		if len(r.Hosts) != 1 || r.Hosts[0].Address != "127.0.0.2" || !r.Hosts[0].Connect.OK {
			t.Errorf("-f %q: hosts %+v", c.sender, r.Hosts)
		}
	}

	// Senders without a sender route (another domain; the exception
	// with an empty relay) get smtproutes' route.
	for _, sender := range []string{"user@example.net", "noreply@example.org"} {
		r := w.probe("-f", sender, "example.test")
		if rt := r.Route; rt.Relay != "mx1.example.test" || rt.RelaySource != "smtproutes" || rt.PortSource != "smtproutes" ||
			rt.SenderRoute != "" || rt.Sender == nil || *rt.Sender != sender {
			t.Errorf("-f %q: route %+v", sender, rt)
		}
	}

	// Without -f no sender applies, not even one the caller's
	// environment holds: smtproutes' route.
	w.env = append(w.env, "QMAILREMOTE_SENDER=user@example.org")
	r := w.probe("example.test")
	if rt := r.Route; rt.Relay != "mx1.example.test" || rt.RelaySource != "smtproutes" || rt.SenderRoute != "" || rt.Sender != nil {
		t.Errorf("without -f: route %+v", rt)
	}
	if len(r.Hosts) != 1 || r.Hosts[0].Address != "127.0.0.1" {
		t.Errorf("without -f: hosts %+v", r.Hosts)
	}

	out, _, code := w.run("-f", "user@example.org", "example.test")
	for _, want := range []string{
		`\nsender: +user@example\.org\n`,
		`\nroute: +relay mx2\.example\.test \(senderroutes <@example\.org>\), port ` + w.port + ` \(senderroutes <@example\.org>\)\n`,
	} {
		if code != 0 || !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("exit %d, no %q in\n%s", code, want, out)
		}
	}
	out, _, code = w.run("-f", "", "example.test")
	if want := `\nsender: +<> \(a bounce\)\n`; code != 0 || !regexp.MustCompile(want).MatchString(out) {
		t.Errorf("exit %d, no %q in\n%s", code, want, out)
	}
	out, _, code = w.run("example.test")
	if code != 0 || strings.Contains(out, "sender:") || !strings.Contains(out, "relay mx1.example.test (smtproutes)") {
		t.Errorf("without -f: exit %d:\n%s", code, out)
	}
}

// A sender's own credentials in control/smtpauth: used for its mail
// only, and said to be the sender's.
func TestSenderAuth(t *testing.T) {
	leaf := ca(t).Issue(t, tlstest.Leaf{DNSNames: []string{"mx1.example.test"}})
	s := tlsScript(leaf)
	s.Auth = "PLAIN"
	w := newWorld(t, map[string]smtptest.Script{"127.0.0.1": s})
	w.anchors()
	w.control("smtproutes", ":mx1.example.test:"+w.port+"\n")
	w.control("smtpauth", "<@example.org>:mx1.example.test:"+w.port+":starttls:alice:secret\n")
	if err := os.Chmod(filepath.Join(w.home, "control", "smtpauth"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := w.probe("-f", "user@example.org", "example.test")
	if rt := r.Route; rt.Auth != "starttls" || rt.AuthSender != "<@example.org>" || rt.RelaySource != "smtproutes" || rt.SenderRoute != "" {
		t.Errorf("route %+v", rt)
	}
	if r.Policy.Strictness != 2 || !strings.Contains(r.Policy.Why, "control/smtpauth has the credentials of <@example.org> for mx1.example.test:"+w.port) {
		t.Errorf("policy %+v", r.Policy)
	}
	out, _, code := w.run("-f", "user@example.org", "example.test")
	if want := "control/smtpauth has the sender's credentials for it (<@example.org>, starttls); the probe never authenticates"; code != 0 || !strings.Contains(out, want) {
		t.Errorf("exit %d, no %q in\n%s", code, want, out)
	}
	for _, args := range [][]string{{"example.test"}, {"-f", "user@example.net", "example.test"}} {
		if rt := w.probe(args...).Route; rt.Auth != "" || rt.AuthSender != "" {
			t.Errorf("%q: route %+v", args, rt)
		}
	}
	// -r leaves the credentials out, the sender's as the relay's.
	if rt := w.probe("-f", "user@example.org", "-r", "mx2.example.test", "example.test").Route; rt.Auth != "" || rt.AuthSender != "" {
		t.Errorf("-r: route %+v", rt)
	}
	for _, l := range w.srv["127.0.0.1"].Lines() {
		if strings.HasPrefix(strings.ToUpper(l), "AUTH") || strings.Contains(l, "secret") {
			t.Errorf("the server got %q", l)
		}
	}
}

// The route's new fields are in the JSON: null and "" without -f,
// the values with it.
func TestSenderJSON(t *testing.T) {
	w := senderWorld(t)
	w.control("outgoingip", "<@example.org>:127.0.0.2\n")
	route := func(args ...string) map[string]any {
		t.Helper()
		out, errs, code := w.run(append([]string{"-j"}, args...)...)
		var m map[string]any
		if code != 0 {
			t.Fatalf("%q: exit %d: %s", args, code, errs)
		}
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatal(err)
		}
		rt := m["route"].(map[string]any)
		for _, k := range []string{"sender", "sender_route", "auth_sender", "outgoing_ip"} {
			if _, ok := rt[k]; !ok {
				t.Errorf("%q: route has no %q: %v", args, k, rt)
			}
		}
		return rt
	}
	rt := route("example.test")
	if rt["sender"] != nil || rt["sender_route"] != "" || rt["auth_sender"] != "" || rt["outgoing_ip"] != "" {
		t.Errorf("without -f: %v", rt)
	}
	rt = route("-f", "user@example.org", "example.test")
	if rt["sender"] != "user@example.org" || rt["sender_route"] != "<@example.org>" || rt["relay_source"] != "senderroutes <@example.org>" ||
		rt["outgoing_ip"] != "127.0.0.2" {
		t.Errorf("-f user@example.org: %v", rt)
	}
	if rt = route("-f", "", "example.test"); rt["sender"] != "" || rt["sender_route"] != "<>" || rt["outgoing_ip"] != "" {
		t.Errorf("-f '': %v", rt)
	}
}

// control/outgoingip's address is the one connected from: the default
// line for every sender, a sender's line only with -f.
func TestOutgoingIP(t *testing.T) {
	w := newWorld(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peers := make(chan string, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			peers <- c.RemoteAddr().(*net.TCPAddr).IP.String()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			c.Write([]byte("554 no thanks\r\n"))
			bufio.NewReader(c).ReadString('\n')
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	peer := func(args ...string) (*Result, string) {
		t.Helper()
		r := w.probe(append(args, "-r", "[127.0.0.1]", "-p", strconv.Itoa(port), "example.test")...)
		select {
		case p := <-peers:
			return r, p
		case <-time.After(30 * time.Second):
			t.Fatalf("%q: no connection", args)
		}
		return nil, ""
	}

	w.control("outgoingip", "127.0.0.2\n")
	r, p := peer()
	if r.Route.OutgoingIP != "127.0.0.2" || p != "127.0.0.2" || len(r.Hosts) != 1 || !r.Hosts[0].Connect.OK {
		t.Errorf("outgoing_ip %q, peer %s, hosts %+v", r.Route.OutgoingIP, p, r.Hosts)
	}

	w.control("outgoingip", "<@example.org>:127.0.0.2\n")
	if r, p = peer(); r.Route.OutgoingIP != "" || p != "127.0.0.1" {
		t.Errorf("without -f: outgoing_ip %q, peer %s", r.Route.OutgoingIP, p)
	}
	if r, p = peer("-f", "user@example.org"); r.Route.OutgoingIP != "127.0.0.2" || p != "127.0.0.2" {
		t.Errorf("-f: outgoing_ip %q, peer %s", r.Route.OutgoingIP, p)
	}

	// The text output, against the MX hosts.
	w.control("outgoingip", "127.0.0.2\n")
	out, _, code := w.run("example.test")
	for _, want := range []string{`\noutgoing IP: +127\.0\.0\.2 \(control/outgoingip\); to IPv6 servers, from an address the kernel chooses\n`,
		`== mx1\.example\.test \[127\.0\.0\.1\] MX 10\n(.*\n)*?connect: +ok `} {
		if code != 0 || !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("exit %d, no %q in\n%s", code, want, out)
		}
	}
}

// An address that is not the host's: every candidate's connect line
// says so, a delivery would stop with a Z, and the probe exits 0 as for
// any connect failure, without having connected anywhere.
func TestOutgoingIPNotHere(t *testing.T) {
	const addr = "192.0.2.10"
	if ifaddrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range ifaddrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.String() == addr {
				t.Skipf("this host has %s", addr)
			}
		}
	}
	w := newWorld(t, nil)
	w.control("outgoingip", addr+"\n")
	r := w.probe("example.test")
	if r.Route.OutgoingIP != addr || len(r.Hosts) != 2 {
		t.Fatalf("outgoing_ip %q, hosts %+v", r.Route.OutgoingIP, r.Hosts)
	}
	const why = "Unable to connect from the address control/outgoingip gives: " + addr + " is not an address of this host."
	for _, h := range r.Hosts {
		if h.Connect.OK || h.Connect.Error != why || h.Greeting != nil || h.Verdict.Action != "skip" ||
			!strings.Contains(h.Verdict.Text, "no host is used") || !strings.Contains(h.Verdict.Text, "every delivery gets a Z") {
			t.Errorf("%s: connect %+v, verdict %+v", h.Name, h.Connect, h.Verdict)
		}
	}
	for a, s := range w.srv {
		if n := s.Conns(); n != 0 {
			t.Errorf("%s got %d connections", a, n)
		}
	}
	out, errs, code := w.run("example.test")
	want := `== mx1\.example\.test \[127\.0\.0\.1\] MX 10\n(.*\n)*?connect: +` + regexp.QuoteMeta(why) + "\n"
	if code != 0 || !regexp.MustCompile(want).MatchString(out) {
		t.Errorf("exit %d (stderr %q), no %q in\n%s", code, errs, want, out)
	}
}

// A malformed control/outgoingip ends every delivery in the routes
// stage, with a Z naming the line: the probe shows that, exit 0.
func TestOutgoingIPBroken(t *testing.T) {
	w := newWorld(t, nil)
	w.control("outgoingip", "example.test:0.0.0.0\n")
	r := w.probe("example.test")
	if r.Ended == nil || r.Ended.Letter != "Z" || r.Ended.Stage != "qmail-remote-routes" ||
		!strings.Contains(r.Ended.Text, "control/outgoingip line 1") || r.Route != nil || len(r.Hosts) != 0 {
		t.Errorf("ended %+v, route %+v", r.Ended, r.Route)
	}
}
