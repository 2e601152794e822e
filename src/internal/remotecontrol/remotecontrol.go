// Package remotecontrol reads what qmail-remote reads before it runs the
// chain: where the qmail home, run and libexec directories are, and the
// control files (doc/control.md), checked as a delivery checks them. The
// probe (qmail-remote-probe) uses it too: it must see what a delivery
// sees, and fail where a delivery would.
package remotecontrol

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"qmail-remote-go/src/internal/anchors"
	"qmail-remote-go/src/internal/chainenv"
	"qmail-remote-go/src/internal/control"
	"qmail-remote-go/src/internal/paths"
	"qmail-remote-go/src/internal/regular"
	"qmail-remote-go/src/internal/say"
)

// Controls is what the control files say, as the chain's variables carry
// it (Env).
type Controls struct {
	HeloHost                                  string
	TimeoutConnect, TimeoutRemote, TimeoutDNS int64
	IPMe, NotIPMe                             []netip.Addr
	DNSSECResolvers                           []netip.Addr // whose AD bit counts (DANE)
	TrustAnchors, ClientCert, ClientKey       string
	TLSStrictness                             int64
	MTASTS                                    bool // control/mtasts: look for MTA-STS policies (default on)
}

// Locations settles the qmail home, run directory and libexec directory:
// configured at build time, overridable from the environment (tests,
// several qmail installations on one host). They must be absolute, since
// every stage relies on them whatever its working directory.
func Locations() (home, run, libexec string, err error) {
	home = paths.QmailHome
	if v, ok := os.LookupEnv(chainenv.QmailHome); ok {
		home = v
	}
	run = paths.Run()
	if v, ok := os.LookupEnv(chainenv.QmailRun); ok {
		run = v
	} else if _, ok := os.LookupEnv(chainenv.QmailHome); ok && paths.QmailRun == "" {
		run = filepath.Join(home, "run")
	}
	libexec = paths.LibexecDir
	if v, ok := os.LookupEnv(chainenv.LibexecDir); ok {
		libexec = v
	}
	for _, p := range []struct{ name, v string }{{"qmail home", home}, {"run directory", run}, {"libexec directory", libexec}} {
		if !filepath.IsAbs(p.v) {
			return "", "", "", fmt.Errorf("the %s %q is not an absolute path", p.name, p.v)
		}
	}
	return filepath.Clean(home), filepath.Clean(run), filepath.Clean(libexec), nil
}

// Read reads every control file qmail-remote uses (doc/control.md;
// smtproutes and smtpauth are the later stages'). Paths are relative: we
// are in the qmail home, like stock, and the error texts name
// "control/..." as the admin knows them.
func Read() (c Controls, err error) {
	me, _, err := control.Name("control/me")
	if err != nil {
		return c, err
	}
	helo, found, err := control.Name("control/helohost")
	if err != nil {
		return c, err
	}
	if !found {
		if me == "" {
			return c, errors.New("neither control/me nor control/helohost names this host")
		}
		helo = me
	}
	c.HeloHost = helo
	const maxSeconds = 1<<31 - 1
	if c.TimeoutConnect, err = control.Int("control/timeoutconnect", 60, 1, maxSeconds); err != nil {
		return c, err
	}
	if c.TimeoutRemote, err = control.Int("control/timeoutremote", 1200, 1, maxSeconds); err != nil {
		return c, err
	}
	if c.TimeoutDNS, err = control.Int("control/timeoutdns", 0, 0, maxSeconds); err != nil {
		return c, err
	}
	if c.IPMe, err = control.Addrs("control/ipme"); err != nil {
		return c, err
	}
	if c.NotIPMe, err = control.Addrs("control/notipme"); err != nil {
		return c, err
	}
	if c.DNSSECResolvers, err = control.Addrs("control/dnssecresolvers"); err != nil {
		return c, err
	}
	if c.TrustAnchors, err = control.Path("control/trustanchors"); err != nil {
		return c, err
	}
	if c.ClientCert, err = control.Path("control/clientcert"); err != nil {
		return c, err
	}
	if c.ClientKey, err = control.Path("control/clientkey"); err != nil {
		return c, err
	}
	if c.ClientCert != "" && c.ClientKey == "" {
		return c, errors.New("control/clientcert is set but control/clientkey is not")
	}
	if c.ClientKey != "" && c.ClientCert == "" {
		return c, errors.New("control/clientkey is set but control/clientcert is not")
	}
	if c.TLSStrictness, err = control.Int("control/tlsstrictness", 0, 0, 2); err != nil {
		return c, err
	}
	sts, err := control.Int("control/mtasts", 1, 0, 1)
	if err != nil {
		return c, err
	}
	c.MTASTS = sts == 1
	if err := checkTLSFiles(c); err != nil {
		return c, err
	}
	if c.TLSStrictness == 2 {
		if err := requireAnchors(c.TrustAnchors); err != nil {
			return c, err
		}
	}
	return c, nil
}

// checkTLSFiles makes sure the files the TLS stage will need are there and
// readable by us, so that a typo shows up as a Z naming the file before any
// connection, not as a cleartext delivery or a failure per server. Only
// readability: parsing certificates is the TLS stage's job (and keeps
// crypto out of this program's start-up).
//
// Every file is opened without blocking and must be what its name says
// (regular.Open, regular.OpenDir): a FIFO in place of the client key would
// otherwise hang every delivery in open(2), a device would be read as one.
func checkTLSFiles(c Controls) error {
	if c.TrustAnchors != "" {
		open := regular.Open
		if strings.HasSuffix(c.TrustAnchors, "/") {
			open = regular.OpenDir
		} else if st, err := os.Stat(c.TrustAnchors); err == nil && st.IsDir() {
			return fmt.Errorf("control/trustanchors names %s, which is not a file (a directory must end in /)", c.TrustAnchors)
		}
		f, err := open(c.TrustAnchors)
		if err != nil {
			return fmt.Errorf("control/trustanchors names %s: %v", c.TrustAnchors, say.Err(err))
		}
		f.Close()
	}
	for _, f := range []struct{ control, path string }{{"control/clientcert", c.ClientCert}, {"control/clientkey", c.ClientKey}} {
		if f.path == "" {
			continue
		}
		h, err := regular.Open(f.path)
		if err != nil {
			return fmt.Errorf("%s names %s: %v", f.control, f.path, say.Err(err))
		}
		h.Close()
	}
	return nil
}

// ipme is this host's set of addresses for the loop rule (mail goes only
// to MX hosts strictly better than this host): like stock, every address
// of every interface plus 0.0.0.0 (which connects to this host);
// control/ipme adds addresses (NAT, load balancers), and control/notipme
// removes some (the moreipme/notipme convention).
func ipme(extra, not []netip.Addr) string {
	set := []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				set = append(set, p.Addr().WithZone("").Unmap())
			}
		}
	}
	set = append(set, extra...)
	var out []string
	for _, a := range set {
		if slices.Contains(not, a) {
			continue
		}
		s := a.String()
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return strings.Join(out, " ")
}

// addrList is addresses as the chain's variables hold them.
func addrList(as []netip.Addr) string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return strings.Join(out, " ")
}

// Env hands the controls to the chain: set(name, value) for each of its
// variables (doc/chain.md).
func (c Controls) Env(set func(name, value string)) {
	set(chainenv.HeloHost, c.HeloHost)
	set(chainenv.TimeoutConnect, strconv.FormatInt(c.TimeoutConnect, 10))
	set(chainenv.TimeoutRemote, strconv.FormatInt(c.TimeoutRemote, 10))
	set(chainenv.TimeoutDNS, strconv.FormatInt(c.TimeoutDNS, 10))
	set(chainenv.IPMe, ipme(c.IPMe, c.NotIPMe))
	if len(c.DNSSECResolvers) > 0 {
		set(chainenv.DNSSECResolvers, addrList(c.DNSSECResolvers))
	}
	set(chainenv.TrustAnchors, c.TrustAnchors)
	set(chainenv.ClientCert, c.ClientCert)
	set(chainenv.ClientKey, c.ClientKey)
	set(chainenv.TLSStrictness, strconv.FormatInt(c.TLSStrictness, 10))
	if c.MTASTS {
		set(chainenv.MTASTS, "1")
	}
}

// requireAnchors is the check of tlsstrictness 2, which fails closed:
// every server must verify, so without a usable trust anchor no mail can
// go anywhere, and the delivery must wait (Z) before any connection,
// naming the file, instead of finding out one server at a time, or
// worse, sending in cleartext.
func requireAnchors(path string) error {
	const why = "control/tlsstrictness is 2 (mail only to servers whose certificate verifies, never in cleartext)"
	if path == "" {
		return errors.New(why + " but control/trustanchors is not set: set it to a PEM bundle or a directory of certificates ending in /")
	}
	err := anchors.Check(path)
	switch {
	case errors.Is(err, anchors.ErrNone):
		return fmt.Errorf("%s but control/trustanchors names %s, which %v", why, path, err)
	case err != nil:
		return fmt.Errorf("%s but control/trustanchors names %s: %v", why, path, say.Err(err))
	}
	return nil
}
