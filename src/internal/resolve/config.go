// Package resolve finds where to deliver a message: a small DNS stub client
// (config.go, client.go) and the delivery rules on top of it (deliver.go):
// MX, implicit MX, null MX, smtproutes relays, address literals, the ipme
// loop rule, and ordering.
package resolve

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"qmail-remote-go/src/internal/regular"
)

// ResolvConf is the resolver configuration file (a variable for tests).
var ResolvConf = "/etc/resolv.conf"

// Defaults and bounds, as glibc: RES_TIMEOUT 5, RES_DFLRETRY 2,
// RES_MAXRETRANS 30, RES_MAXRETRY 5. glibc keeps only 3 nameservers
// (MAXNS); we take up to maxServers.
const (
	defaultTimeout  = 5 * time.Second
	defaultAttempts = 2
	maxTimeout      = 30 * time.Second
	maxAttempts     = 5
	maxServers      = 16
)

// LoadConfig builds a Client: from dnscacheip when it is not blank (the
// DNSCACHEIP variable), else from ResolvConf. A missing ResolvConf, or one
// without a usable nameserver line, means 127.0.0.1 and ::1 port 53, as
// libc does.
func LoadConfig(dnscacheip string) (*Client, error) {
	c := &Client{Timeout: defaultTimeout, Attempts: defaultAttempts}
	if strings.TrimSpace(dnscacheip) != "" {
		servers, err := ParseDNSCacheIP(dnscacheip)
		if err != nil {
			return nil, err
		}
		c.Servers = servers
		// Timeout and attempts still come from resolv.conf when it has them.
		if cc, err := readResolvConf(); err == nil {
			c.Timeout, c.Attempts = bound(cc)
		}
		return c, nil
	}
	cc, err := readResolvConf()
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			c.Servers = localServers()
			return c, nil
		}
		return nil, fmt.Errorf("unable to read %s: %w", ResolvConf, err)
	}
	c.Timeout, c.Attempts = bound(cc)
	port, perr := strconv.ParseUint(cc.Port, 10, 16)
	if perr != nil || port == 0 {
		port = 53
	}
	for _, s := range cc.Servers {
		// glibc ignores nameserver lines it cannot parse; so do we.
		a, err := netip.ParseAddr(s)
		if err != nil || len(c.Servers) >= maxServers {
			continue
		}
		c.Servers = append(c.Servers, netip.AddrPortFrom(a.Unmap(), uint16(port)).String())
	}
	if len(c.Servers) == 0 {
		c.Servers = localServers()
	}
	return c, nil
}

// maxResolvConf bounds what is read of ResolvConf: a real one is a few
// lines, and a runaway file must not exhaust memory.
const maxResolvConf = 1 << 20

// readResolvConf reads the file itself: dns.ClientConfigFromFile drops read
// errors (a directory reads as an empty file). It is opened without
// blocking and only if it is a regular file (regular.ReadFile): a FIFO in
// its place would block open(2) forever. Anything else is an error like an
// unreadable file.
func readResolvConf() (*dns.ClientConfig, error) {
	b, err := regular.ReadFile(ResolvConf, maxResolvConf)
	if err != nil {
		return nil, err
	}
	return dns.ClientConfigFromReader(bytes.NewReader(b))
}

func localServers() []string { return []string{"127.0.0.1:53", "[::1]:53"} }

func bound(cc *dns.ClientConfig) (time.Duration, int) {
	t := time.Duration(cc.Timeout) * time.Second
	t = min(max(t, time.Second), maxTimeout)
	return t, min(max(cc.Attempts, 1), maxAttempts)
}

// ParseDNSCacheIP parses a DNSCACHEIP value: addresses separated by spaces
// or commas, each optionally with a port: 192.0.2.53, 192.0.2.53:5353,
// 2001:db8::53, [2001:db8::53]:5353 (and [2001:db8::53]). It returns
// "host:port" strings for dialing. Errors name DNSCACHEIP.
func ParseDNSCacheIP(v string) ([]string, error) {
	bad := func(f, why string) error {
		return fmt.Errorf("DNSCACHEIP holds %q, %s", f, why)
	}
	fields := strings.FieldsFunc(v, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t' || r == '\n'
	})
	if len(fields) == 0 {
		return nil, errors.New("DNSCACHEIP holds no address")
	}
	if len(fields) > maxServers {
		return nil, fmt.Errorf("DNSCACHEIP holds %d addresses, more than %d", len(fields), maxServers)
	}
	var out []string
	for _, f := range fields {
		host, port := f, "53"
		switch {
		case strings.HasPrefix(f, "["):
			end := strings.IndexByte(f, ']')
			if end < 0 {
				return nil, bad(f, "which lacks its ]")
			}
			host = f[1:end]
			rest := f[end+1:]
			if rest != "" {
				if rest[0] != ':' {
					return nil, bad(f, "which has garbage after ]")
				}
				port = rest[1:]
			}
			if a, err := netip.ParseAddr(host); err != nil || !a.Is6() {
				return nil, bad(f, "which is not [IPv6 address]")
			}
		case strings.Count(f, ":") == 1:
			i := strings.IndexByte(f, ':')
			host, port = f[:i], f[i+1:]
		}
		a, err := netip.ParseAddr(host)
		if err != nil {
			return nil, bad(f, "which is not an IP address")
		}
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil || p == 0 || strings.HasPrefix(port, "+") {
			return nil, bad(f, "whose port is not a number from 1 to 65535")
		}
		out = append(out, netip.AddrPortFrom(a.Unmap(), uint16(p)).String())
	}
	return out, nil
}
