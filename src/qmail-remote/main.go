// qmail-remote is the entry point of the chain: what qmail-rspawn runs for
// every remote delivery. It checks its arguments, reads the control files,
// pre-scans the message, and runs the rest of the chain as its child,
// guarding the report contract with qmail-rspawn (doc/qmail-remote.md):
// whatever happens further down, qmail-rspawn gets exactly one
// well-formed message report and exit 0.
//
// It writes nothing to stderr, ever: under qmail-rspawn, fd 2 is a copy of
// the report pipe.
package qmailremote

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"qmail-remote-go/src/internal/chain"
	"qmail-remote-go/src/internal/chainenv"
	"qmail-remote-go/src/internal/control"
	"qmail-remote-go/src/internal/guard"
	"qmail-remote-go/src/internal/paths"
	"qmail-remote-go/src/internal/regular"
	"qmail-remote-go/src/internal/report"
	"qmail-remote-go/src/internal/say"
	"qmail-remote-go/src/internal/smtp"
)

const usage = "qmail-remote host sender recip [ recip ... ]"

// The chain qmail-remote runs, in LIBEXECDIR (doc/chain.md).
var stages = []string{"qmail-remote-routes", "qmail-remote-resolve", "qmail-remote-connect", "qmail-remote-io"}

// Main is the program. It writes nothing on stderr, and ends with exit
// status 0 after one message report, or by a signal (guard.Protect).
func Main(args []string) chain.Next {
	out := protected(args)
	out.Write(os.Stdout)
	return chain.Exit(0)
}

// protected sets the process up and runs the delivery; a bug anywhere in
// it is a Z, never a panic that the runtime would end in exit status 2.
func protected(args []string) (out guard.Outcome) {
	defer func() {
		if p := recover(); p != nil {
			out = zero(report.Temporary, fmt.Sprintf("qmail-remote crashed: %v. (#4.3.0)\n", p))
		}
	}()
	withoutGoSettings(args)
	guard.Protect()
	oneThread()
	return run(args)
}

// oneThread runs the delivery of a message under parallelMin on one
// thread (GOMAXPROCS 1): one delivery is a sequence of waits for one
// server, and with more Ps the runtime's idle threads spin at every wait
// for work that never comes, 8-10% of a small delivery's CPU time
// (doc/bench.md). A bigger message keeps them for the parallel pre-scan
// and the copy.
func oneThread() {
	var st unix.Stat_t
	if unix.Fstat(0, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && st.Size < parallelMin {
		runtime.GOMAXPROCS(1)
	}
}

// run never panics out: a bug here must still end in a Z, not in exit 2
// (which qmail-rspawn would read as "bounce the mail").
func run(args []string) (out guard.Outcome) {
	defer func() {
		if p := recover(); p != nil {
			out = zero(report.Temporary, fmt.Sprintf("qmail-remote crashed: %v. (#4.3.0)\n", p))
		}
	}()
	if len(args) < 4 {
		return zero(report.Permanent, "I (qmail-remote) was invoked improperly. (#5.3.5)\n")
	}
	host, sender, rcpts := args[1], args[2], args[3:]

	home, run, libexec, err := locations()
	if err != nil {
		return zero(report.Temporary, "Unable to switch to home directory: "+err.Error()+". (#4.3.0)\n")
	}
	if err := os.Chdir(home); err != nil {
		return zero(report.Temporary, "Unable to switch to home directory. (#4.3.0)\n")
	}
	cf, err := readControl()
	if err != nil {
		return zero(report.Temporary, "Unable to read control files: "+err.Error()+". (#4.3.0)\n")
	}

	// fd 0 is a regular file (qmail-rspawn hands over the queue file):
	// check the final line now, before any connection, and count the wire
	// size on the way for SIZE (RFC 1870).
	msg := os.Stdin
	stats, err := scan(msg)
	if errors.Is(err, smtp.ErrPartialFinalLine) {
		return zero(report.Permanent, "SMTP cannot transfer messages with partial final lines. (#5.6.2)\n")
	}
	if err != nil {
		return zero(report.Temporary, "Unable to read message: "+err.Error()+". (#4.3.0)\n")
	}

	realExec := chain.RealExec()
	env := cleanEnv(os.Environ(), os.Getenv(chainenv.KeepGoEnv) == "1")
	set := func(k, v string) { env = append(env, k+"="+v) }
	set(chainenv.QmailHome, home)
	set(chainenv.QmailRun, run)
	set(chainenv.Host, host)
	set(chainenv.Sender, sender)
	set(chainenv.Rcpts, strconv.Itoa(len(rcpts)))
	for i, r := range rcpts {
		set(chainenv.RcptPrefix+strconv.Itoa(i+1), r)
	}
	set(chainenv.HeloHost, cf.helohost)
	set(chainenv.TimeoutConnect, strconv.FormatInt(cf.timeoutConnect, 10))
	set(chainenv.TimeoutRemote, strconv.FormatInt(cf.timeoutRemote, 10))
	set(chainenv.TimeoutDNS, strconv.FormatInt(cf.timeoutDNS, 10))
	set(chainenv.IPMe, ipme(cf.ipme, cf.notipme))
	if len(cf.dnssecResolvers) > 0 {
		set(chainenv.DNSSECResolvers, addrList(cf.dnssecResolvers))
	}
	set(chainenv.TrustAnchors, cf.trustAnchors)
	set(chainenv.ClientCert, cf.clientCert)
	set(chainenv.ClientKey, cf.clientKey)
	set(chainenv.TLSStrictness, strconv.FormatInt(cf.tlsStrictness, 10))
	set(chainenv.TLSIO, filepath.Join(libexec, "qmail-remote-tlsio"))
	set(chainenv.MsgBytes, strconv.FormatInt(stats.WireBytes, 10))
	set(chainenv.Msg8Bit, map[bool]string{false: "0", true: "1"}[stats.Has8Bit])
	if realExec {
		set(chain.RealExecEnv, "1")
	}

	argv := make([]string, len(stages))
	for i, s := range stages {
		argv[i] = filepath.Join(libexec, s)
	}
	// The stages are ours: they run in this process, guarded here. Any
	// other first stage is a child, guarded by its parent.
	if _, ours := chain.Ours(argv[0]); ours {
		return guard.InProcess(argv, env, msg, len(rcpts))
	}
	return guard.Run(argv, env, msg, len(rcpts))
}

func zero(letter byte, text string) guard.Outcome {
	return guard.Outcome{Reports: [][]byte{report.Format(letter, text)}}
}

// locations settles the qmail home, run directory and libexec directory:
// configured at build time, overridable from the environment (tests,
// several qmail installations on one host). They must be absolute, since
// every stage relies on them whatever its working directory.
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
	ipme, notipme                             []netip.Addr
	dnssecResolvers                           []netip.Addr // whose AD bit counts (DANE)
	trustAnchors, clientCert, clientKey       string
	tlsStrictness                             int64
}

// readControl reads every control file qmail-remote uses (doc/control.md;
// smtproutes and smtpauth are the later stages'). Paths are relative: we
// are in the qmail home, like stock, and the error texts name
// "control/..." as the admin knows them.
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
	if c.clientCert != "" && c.clientKey == "" {
		return c, errors.New("control/clientcert is set but control/clientkey is not")
	}
	if c.clientKey != "" && c.clientCert == "" {
		return c, errors.New("control/clientkey is set but control/clientcert is not")
	}
	if c.tlsStrictness, err = control.Int("control/tlsstrictness", 0, 0, 2); err != nil {
		return c, err
	}
	if err := checkTLSFiles(c); err != nil {
		return c, err
	}
	if c.tlsStrictness == 2 {
		if err := requireAnchors(c.trustAnchors); err != nil {
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
func checkTLSFiles(c controls) error {
	if c.trustAnchors != "" {
		open := regular.Open
		if strings.HasSuffix(c.trustAnchors, "/") {
			open = regular.OpenDir
		} else if st, err := os.Stat(c.trustAnchors); err == nil && st.IsDir() {
			return fmt.Errorf("control/trustanchors names %s, which is not a file (a directory must end in /)", c.trustAnchors)
		}
		f, err := open(c.trustAnchors)
		if err != nil {
			return fmt.Errorf("control/trustanchors names %s: %v", c.trustAnchors, say.Err(err))
		}
		f.Close()
	}
	for _, f := range []struct{ control, path string }{{"control/clientcert", c.clientCert}, {"control/clientkey", c.clientKey}} {
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

// scan checks that fd 0 is a regular file and pre-scans it from the start
// (prescan), leaving its offset at 0 for the send.
func scan(f *os.File) (smtp.BodyStats, error) {
	st, err := f.Stat()
	if err != nil {
		return smtp.BodyStats{}, err
	}
	if !st.Mode().IsRegular() {
		return smtp.BodyStats{}, errors.New("fd 0 is not a regular file")
	}
	stats, err := prescan(f, st.Size())
	if err == nil && stats.PartialFinalLine {
		err = smtp.ErrPartialFinalLine
	}
	if err != nil {
		return stats, err
	}
	_, err = f.Seek(0, io.SeekStart)
	return stats, err
}

// withoutGoSettings runs qmail-remote again, in the same process, without
// the GO* variables its caller set (unless QMAILREMOTE_KEEPGOENV=1): the
// Go runtime read them when it started, before any of our code, and with
// the chain in this process they would steer every stage (GOGC=off,
// GOMAXPROCS, GODEBUG), which cleanEnv keeps them from doing in a child.
// qmail-rspawn's environment has none, so this costs nothing as a rule.
// If the exec fails (the binary was replaced since it started), the
// delivery goes on with them.
func withoutGoSettings(args []string) {
	env := os.Environ()
	if os.Getenv(chainenv.KeepGoEnv) == "1" || !slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "GO") }) {
		return
	}
	exe, err := os.Executable()
	if err != nil {
		return
	}
	clean := slices.DeleteFunc(slices.Clone(env), func(kv string) bool { return strings.HasPrefix(kv, "GO") })
	unix.Exec(exe, args, clean)
}

// cleanEnv drops every variable that could steer the chain from outside:
// the chain's own, the UCSPI ones the connector sets, the TLS ones a
// tls-io stage reads (s6 names), and, unless keepGo
// (QMAILREMOTE_KEEPGOENV=1, for debugging), every GO* variable:
// GOTRACEBACK=crash would make a stage that holds the smarthost password
// dump core, GODEBUG and GOMAXPROCS change how every stage runs, and
// none of them is the caller's business.
func cleanEnv(env []string, keepGo bool) []string {
	drop := []string{"PROTO", "TCPREMOTEIP", "TCPREMOTEPORT", "TCPLOCALIP", "TCPLOCALPORT",
		"TCPREMOTEHOST", "TCPLOCALHOST", "TCPREMOTEINFO",
		"CAFILE", "CADIR", "CERTFILE", "KEYFILE", "TLS_UID", "TLS_GID"}
	out := env[:0:0]
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, chainenv.Prefix) || strings.HasPrefix(k, "SSL_") || slices.Contains(drop, k) ||
			!keepGo && strings.HasPrefix(k, "GO") {
			continue
		}
		out = append(out, kv)
	}
	return out
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
