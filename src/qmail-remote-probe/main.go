// qmail-remote-probe shows an administrator what qmail-remote would do
// with a destination's TLS, and why: the first thing to run when a
// destination's TLS fails (Postfix has posttls-finger for this).
//
// It runs the real routes and resolve stages, through the chain, exactly
// as a delivery does (doc/qmail-remote-probe.md):
//
//	qmail-remote-probe domain                      (the front end)
//	 └─ LIBEXECDIR/qmail-remote-routes             (senderroutes, smtproutes, smtpauth,
//	                                                tlspolicy, outgoingip)
//	     qmail-remote-probe --route ...            (-r, -p, -l; says what routes set)
//	     LIBEXECDIR/qmail-remote-resolve           (MX, addresses, TLSA: the candidates)
//	     qmail-remote-probe --probe ...            (instead of the connector: probes
//	                                                each candidate, never sends MAIL)
//
// The two internal steps print one JSON object per line on stdout; the
// front end reads them (or the report with which routes or resolve ended
// the delivery) and prints the result for humans, or as one JSON object
// with -j. The decisions shown are the stages': the probe only adds
// lookups and checks of its own for display.
package qmailremoteprobe

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"qmail-remote-go/src/internal/chain"
	"qmail-remote-go/src/internal/chainenv"
	"qmail-remote-go/src/internal/connect"
	"qmail-remote-go/src/internal/proc"
	"qmail-remote-go/src/internal/remotecontrol"
	"qmail-remote-go/src/internal/report"
	"qmail-remote-go/src/internal/resolve"
)

const prog = "qmail-remote-probe"

// Name is the program's name in the multicall binary.
const Name = prog

const usage = "qmail-remote-probe [-j] [-f sender] [-l level] [-n max] [-p port] [-r relay] [-t seconds] destination"

// The internal steps: the first argument says which.
const (
	routeStep = "--route"
	probeStep = "--probe"
)

// Bounds.
const (
	defaultMax     = 10
	maxMax         = 100 // resolve.MaxCandidates
	defaultTimeout = 30  // seconds
	maxTimeout     = 3600
	// maxOutput bounds what the internal steps may print: a result of
	// maxMax hosts, each bounded (session.go), fits with room to spare.
	maxOutput = 16 << 20
)

// Main is the program.
func Main(args []string) chain.Next {
	if len(args) >= 2 {
		switch args[1] {
		case routeStep:
			return routeMain(args)
		case probeStep:
			return probeMain(args)
		}
	}
	return frontMain(args)
}

// options are the front end's.
type options struct {
	json    bool
	sender  senderFlag
	level   string
	max     int
	port    int
	relay   string
	timeout int
	dest    string
}

func parseOptions(args []string) options {
	o := options{max: defaultMax, timeout: defaultTimeout}
	fs := flag.NewFlagSet(prog, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.BoolVar(&o.json, "j", false, "")
	fs.Var(&o.sender, "f", "")
	fs.StringVar(&o.level, "l", "", "")
	fs.IntVar(&o.max, "n", defaultMax, "")
	fs.IntVar(&o.port, "p", 0, "")
	fs.StringVar(&o.relay, "r", "", "")
	fs.IntVar(&o.timeout, "t", defaultTimeout, "")
	bad := func(format string, a ...any) {
		fmt.Fprintf(chain.Stderr, "%s: %s\n", prog, fmt.Sprintf(format, a...))
		chain.Usage(usage)
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			chain.Usage(usage)
		}
		bad("%v", err)
	}
	if fs.NArg() != 1 {
		bad("give exactly one destination (a domain or an address literal)")
	}
	o.dest = fs.Arg(0)
	// The destination goes into the environment and onto the terminal.
	if o.dest == "" || strings.ContainsFunc(o.dest, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		bad("the destination %q is not a domain or an address literal", o.dest)
	}
	if o.sender.set {
		if why := checkSender(o.sender.v); why != "" {
			bad("-f: the sender %q %s", o.sender.v, why)
		}
	}
	if o.level != "" {
		if err := connect.ParseLevel(o.level); err != nil {
			bad("-l %v", err)
		}
	}
	if o.max < 1 || o.max > maxMax {
		bad("-n must be a number from 1 to %d", maxMax)
	}
	if o.port != 0 && (o.port < 1 || o.port > 65535) {
		bad("-p must be a port from 1 to 65535")
	}
	if o.relay != "" {
		if err := resolve.CheckRelay(o.relay); err != nil {
			bad("-r: %v", err)
		}
	}
	if o.timeout < 1 || o.timeout > maxTimeout {
		bad("-t must be a number of seconds from 1 to %d", maxTimeout)
	}
	return o
}

// senderFlag is -f's value, and whether -f was given at all: -f with an
// empty argument is a bounce (the empty sender), no -f no sender.
type senderFlag struct {
	set bool
	v   string
}

func (f *senderFlag) String() string { return f.v }

func (f *senderFlag) Set(v string) error {
	f.set, f.v = true, v
	return nil
}

// checkSender says what is wrong with a sender for -f, "" when nothing
// is: it goes into the environment and onto the terminal.
func checkSender(s string) string {
	switch {
	case !utf8.ValidString(s):
		return "is not UTF-8"
	case strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }):
		return "holds a space or a control character"
	}
	return ""
}

// frontMain sets up the chain as qmail-remote does, runs it, and prints
// what it found.
func frontMain(args []string) chain.Next {
	o := parseOptions(args)
	home, run, libexec, err := remotecontrol.Locations()
	if err != nil {
		chain.Die(chain.ExitSystem, prog, "%v", err)
	}
	if err := os.Chdir(home); err != nil {
		chain.Die(chain.ExitSystem, prog, "unable to switch to the qmail home %s: %v", home, err)
	}
	cf, err := remotecontrol.Read()
	if err != nil {
		chain.Die(chain.ExitSystem, prog, "unable to read control files: %v (every delivery gets a Z until this is fixed)", err)
	}
	self, err := chain.LookPath(args[0])
	if err == nil {
		self, err = filepath.Abs(self)
	}
	if err != nil {
		chain.Die(chain.ExitSystem, prog, "unable to find my own path: %v", err)
	}
	var sender *string
	if o.sender.set {
		sender = &o.sender.v
	}
	env := chainEnv(home, run, o.dest, sender, cf)
	argv := []string{filepath.Join(libexec, "qmail-remote-routes"), self, routeStep, "-s", strconv.FormatInt(cf.TLSStrictness, 10)}
	if o.level != "" {
		argv = append(argv, "-l", o.level)
	}
	if o.port != 0 {
		argv = append(argv, "-p", strconv.Itoa(o.port))
	}
	if o.relay != "" {
		argv = append(argv, "-r", o.relay)
	}
	argv = append(argv, "--", filepath.Join(libexec, "qmail-remote-resolve"),
		self, probeStep, "-n", strconv.Itoa(o.max), "-t", strconv.Itoa(o.timeout))

	out, end, err := runChain(argv, env)
	if err != nil {
		chain.Die(chain.ExitSystem, prog, "%v", err)
	}
	if !end.Exited || end.Code != 0 {
		// The stage said why on stderr, which is ours.
		code := chain.ExitSystem
		if end.Exited && end.Code == chain.ExitUsage {
			code = chain.ExitUsage
		}
		chain.Die(code, prog, "the probe's chain failed (%s)", end)
	}
	res, err := parseOutput(out, o.dest)
	if err != nil {
		chain.Die(chain.ExitSystem, prog, "%v", err)
	}
	if o.json {
		b, err := json.Marshal(res)
		if err != nil {
			chain.Die(chain.ExitSystem, prog, "%v", err)
		}
		b = append(b, '\n')
		_, err = chain.Stdout.Write(b)
		if err != nil {
			chain.Die(chain.ExitSystem, prog, "unable to write: %v", err)
		}
		return chain.Exit(0)
	}
	if _, err := io.WriteString(chain.Stdout, render(res)); err != nil {
		chain.Die(chain.ExitSystem, prog, "unable to write: %v", err)
	}
	return chain.Exit(0)
}

// chainEnv is the environment qmail-remote would give the chain, minus
// what only the delivery of a message needs (recipients, size, the TLS
// stage): inherited QMAILREMOTE_* variables are dropped, so that only
// the control files steer the stages, as in a delivery. The sender (-f;
// nil: not given) is set as qmail-remote sets it, so that the lines of
// senderroutes, smtpauth and outgoingip keyed by sender apply; without
// it QMAILREMOTE_SENDER is unset, and none of them does.
func chainEnv(home, run, dest string, sender *string, cf remotecontrol.Controls) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, chainenv.Prefix) {
			continue
		}
		env = append(env, kv)
	}
	set := func(k, v string) { env = append(env, k+"="+v) }
	set(chainenv.QmailHome, home)
	set(chainenv.QmailRun, run)
	set(chainenv.Host, dest)
	if sender != nil {
		set(chainenv.Sender, *sender)
	}
	cf.Env(set)
	if chain.RealExec() {
		set(chain.RealExecEnv, "1")
	}
	return env
}

// runChain runs argv with env and returns what it printed on stdout. Our
// own stages run in this process, with stdout a bounded buffer; from the
// first stage that is not ours, the rest runs as a child, as qmail-remote
// does it.
func runChain(argv, env []string) ([]byte, chain.Ended, error) {
	if _, ours := chain.Ours(argv[0]); !ours {
		return spawn(argv, env)
	}
	saved := os.Environ()
	defer chainenv.Replace(saved)
	chainenv.Replace(env)
	buf := &proc.Bounded{Max: maxOutput}
	stdout := chain.Stdout
	chain.Stdout = buf
	code, foreign, crash := chain.Chain(argv)
	chain.Stdout = stdout
	if crash != nil {
		return nil, chain.Ended{}, fmt.Errorf("the chain crashed: %v\n\n%s", crash, crash.Stack)
	}
	if buf.Over {
		return nil, chain.Ended{}, fmt.Errorf("the chain printed more than %d bytes", maxOutput)
	}
	if foreign != nil {
		rest, end, err := spawn(foreign, os.Environ())
		return append(buf.B, rest...), end, err
	}
	return buf.B, chain.Ended{Exited: true, Code: code}, nil
}

// spawn runs argv as a child with env, stdout read (bounded), stderr
// ours.
func spawn(argv, env []string) ([]byte, chain.Ended, error) {
	path, err := chain.LookPath(argv[0])
	if err != nil {
		return nil, chain.Ended{}, fmt.Errorf("unable to find %s: %v", argv[0], err)
	}
	rd, wr, err := os.Pipe()
	if err != nil {
		return nil, chain.Ended{}, err
	}
	defer rd.Close()
	cmd := &exec.Cmd{Path: path, Args: argv, Env: env, Stdout: wr, Stderr: os.Stderr}
	var out []byte
	over := false
	end, err := proc.Run(cmd, func() {
		wr.Close()
		out, over = readBounded(rd, maxOutput)
	})
	if err != nil {
		wr.Close()
		return nil, chain.Ended{}, fmt.Errorf("unable to run %s: %v", path, err)
	}
	if over {
		return nil, chain.Ended{}, fmt.Errorf("%s printed more than %d bytes", filepath.Base(path), maxOutput)
	}
	return out, end, nil
}

// readBounded reads r to its end, keeping at most limit bytes; the rest
// is drained so that the writer never blocks.
func readBounded(r io.Reader, limit int64) ([]byte, bool) {
	b, _ := io.ReadAll(io.LimitReader(r, limit+1))
	if int64(len(b)) > limit {
		io.Copy(io.Discard, r)
		return b[:limit], true
	}
	return b, false
}

// parseOutput reads what the chain printed: the route line of the
// --route step, then the probe line of the --probe stage, or else the
// report with which routes or resolve ended the delivery.
func parseOutput(out []byte, dest string) (*Result, error) {
	res := &Result{Version: 1, Destination: dest}
	probed := false
	for len(out) > 0 && out[0] == '{' {
		i := bytes.IndexByte(out, '\n')
		if i < 0 {
			return nil, errors.New("the chain printed an unterminated line")
		}
		var line struct {
			routeLine
			probeLine
			Notes []string `json:"notes"`
		}
		if err := json.Unmarshal(out[:i], &line); err != nil {
			return nil, fmt.Errorf("the chain printed something unexpected: %v", err)
		}
		out = out[i+1:]
		res.Notes = append(res.Notes, line.Notes...)
		if line.Route != nil {
			res.Route, res.Policy = line.Route, line.Policy
		}
		if p := line.Probe; p != nil {
			p.Version, p.Destination, p.Route, p.Policy = res.Version, dest, res.Route, res.Policy
			p.Notes = append(res.Notes, p.Notes...)
			res, probed = p, true
		}
	}
	if len(out) > 0 {
		rep, err := report.Parse(out, 0)
		if err != nil {
			return nil, fmt.Errorf("the chain printed something unexpected: %v", err)
		}
		stage := "qmail-remote-resolve"
		if res.Route == nil {
			stage = "qmail-remote-routes"
		}
		means := "a delivery would wait in the queue and be retried later (Z)"
		switch rep.Message.Letter {
		case report.Permanent:
			means = "a delivery would bounce (D)"
		case report.Delivered:
			means = "a delivery would count as done (K)"
		}
		res.Ended = &Ended{Stage: stage, Letter: string(rep.Message.Letter),
			Text: strings.TrimRight(report.Sanitize(rep.Message.Text), "\n"), Means: means}
		lists(res)
		return res, nil
	}
	if !probed {
		return nil, errors.New("the chain ended without a result")
	}
	lists(res)
	return res, nil
}

// lists makes every list of the result a JSON array, never null, so
// that scripts need not tell the two apart.
func lists(r *Result) {
	for _, l := range []*[]string{&r.DANEHosts, &r.NotCandidates, &r.Notes} {
		if *l == nil {
			*l = []string{}
		}
	}
	if r.Hosts == nil {
		r.Hosts = []Host{}
	}
	if p := r.Policy; p != nil {
		for _, l := range []*[]string{&p.Match, &p.Pins} {
			if *l == nil {
				*l = []string{}
			}
		}
	}
}
