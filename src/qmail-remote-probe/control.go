package qmailremoteprobe

// The control files, read as qmail-remote reads them (src/qmail-remote):
// the probe must see what a delivery sees. Only what the chain before the
// connector and the probe itself need: no envelope, no message.

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"qmail-remote-go/src/internal/anchors"
	"qmail-remote-go/src/internal/chainenv"
	"qmail-remote-go/src/internal/control"
	"qmail-remote-go/src/internal/paths"
	"qmail-remote-go/src/internal/say"
)

// locations settles the qmail home, run directory and libexec directory
// as qmail-remote does: configured at build time, overridable from the
// environment.
func locations() (home, run, libexec string, err error) {
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

type controls struct {
	helohost                                  string
	timeoutConnect, timeoutRemote, timeoutDNS int64
	ipme, notipme, dnssecResolvers            []netip.Addr
	trustAnchors, clientCert, clientKey       string
	tlsStrictness                             int64
}

// readControl reads the control files from the qmail home (the working
// directory), with qmail-remote's rules and its errors.
func readControl() (c controls, err error) {
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
	c.helohost = helo
	const maxSeconds = 1<<31 - 1
	if c.timeoutConnect, err = control.Int("control/timeoutconnect", 60, 1, maxSeconds); err != nil {
		return c, err
	}
	if c.timeoutRemote, err = control.Int("control/timeoutremote", 1200, 1, maxSeconds); err != nil {
		return c, err
	}
	if c.timeoutDNS, err = control.Int("control/timeoutdns", 0, 0, maxSeconds); err != nil {
		return c, err
	}
	if c.ipme, err = control.Addrs("control/ipme"); err != nil {
		return c, err
	}
	if c.notipme, err = control.Addrs("control/notipme"); err != nil {
		return c, err
	}
	if c.dnssecResolvers, err = control.Addrs("control/dnssecresolvers"); err != nil {
		return c, err
	}
	if c.trustAnchors, err = control.Path("control/trustanchors"); err != nil {
		return c, err
	}
	if c.clientCert, err = control.Path("control/clientcert"); err != nil {
		return c, err
	}
	if c.clientKey, err = control.Path("control/clientkey"); err != nil {
		return c, err
	}
	if (c.clientCert == "") != (c.clientKey == "") {
		return c, errors.New("control/clientcert and control/clientkey must be set together")
	}
	if c.tlsStrictness, err = control.Int("control/tlsstrictness", 0, 0, 2); err != nil {
		return c, err
	}
	if c.tlsStrictness == 2 {
		// qmail-remote's check: level 2 fails closed before any
		// connection when nothing could verify.
		const why = "control/tlsstrictness is 2"
		if c.trustAnchors == "" {
			return c, errors.New(why + " but control/trustanchors is not set")
		}
		if err := anchors.Check(c.trustAnchors); err != nil {
			return c, fmt.Errorf("%s but control/trustanchors names %s: %v", why, c.trustAnchors, say.Err(err))
		}
	}
	return c, nil
}

// ipme is this host's set of addresses for the loop rule, as
// qmail-remote computes it: the interfaces, 0.0.0.0 and ::, plus
// control/ipme, minus control/notipme.
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
		if s := a.String(); !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return strings.Join(out, " ")
}

func addrList(as []netip.Addr) string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return strings.Join(out, " ")
}
