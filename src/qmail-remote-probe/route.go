package qmailremoteprobe

// The --route step runs right after qmail-remote-routes: it applies the
// administrator's -r, -p and -l (so that the resolver looks up the relay,
// port and TLSA records asked for), prints one line saying what routes
// set and what was replaced, and execs the rest of its command line.
// What routes set for the sender (the front end's -f, in
// QMAILREMOTE_SENDER) it reads from the variables routes exports:
// QMAILREMOTE_SENDERROUTE, QMAILREMOTE_AUTHSENDER, QMAILREMOTE_OUTGOINGIP.

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"qmail-remote-go/src/internal/chain"
	"qmail-remote-go/src/internal/chainenv"
	"qmail-remote-go/src/internal/tlspolicy"
)

const routeUsage = "qmail-remote-probe --route -s tlsstrictness [-l level] [-p port] [-r relay] -- prog..."

func routeMain(args []string) chain.Next {
	fs := flag.NewFlagSet(prog, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	strictness := fs.Int("s", -1, "")
	level := fs.String("l", "", "")
	port := fs.Int("p", 0, "")
	relay := fs.String("r", "", "")
	if err := fs.Parse(args[2:]); err != nil || fs.NArg() == 0 || *strictness < 0 || *strictness > 2 {
		chain.Usage(routeUsage)
	}
	die := func(err error) { chain.Die(chain.ExitUsage, prog, "%v", err) }

	r := &Route{Relay: os.Getenv(chainenv.Relay), RelaySource: "none", PortSource: "default",
		Auth: os.Getenv(chainenv.Auth), SenderRoute: os.Getenv(chainenv.SenderRoute),
		OutgoingIP: os.Getenv(chainenv.OutgoingIP)}
	if sender, ok := os.LookupEnv(chainenv.Sender); ok {
		r.Sender = &sender
	}
	if r.Auth != "" {
		r.AuthSender = os.Getenv(chainenv.AuthSender)
	}
	p, err := chainenv.Int(chainenv.Port, 1, 65535)
	if err != nil {
		die(err)
	}
	r.Port = int(p)
	// The table that chose the route: a senderroutes line (by its key)
	// when routes exported one, else smtproutes.
	table := "smtproutes"
	if r.SenderRoute != "" {
		table = "senderroutes " + r.SenderRoute
	}
	if r.Relay != "" {
		r.RelaySource = table
	}
	if r.Port != 25 {
		r.PortSource = table
	}
	var notes []string
	if *relay != "" && *relay != r.Relay {
		notes = append(notes, fmt.Sprintf("-r %s replaces the route's relay (%s)", *relay, orNone(r.Relay, "MX lookup")))
		r.Relay, r.RelaySource = *relay, "-r"
		os.Setenv(chainenv.Relay, *relay)
		// The relay is -r's now, not the senderroutes line's: the
		// resolver's texts must not blame that file for it.
		os.Unsetenv(chainenv.SenderRoute)
	}
	if *port != 0 && *port != r.Port {
		notes = append(notes, fmt.Sprintf("-p %d replaces the route's port (%d)", *port, r.Port))
		r.Port, r.PortSource = *port, "-p"
		os.Setenv(chainenv.Port, strconv.Itoa(*port))
	}
	// What control/tlspolicy says, for display: which line, and the
	// level before control/smtpauth raised it. Routes has just read the
	// same file, so an error here cannot be new; it only costs the line.
	file, _ := fileLevel()
	if len(notes) > 0 && r.Auth != "" {
		// Routes found the credentials for the route it saw, and made it
		// tlsstrictness 2 and at least verify for them: neither holds for
		// another route.
		notes = append(notes, "control/smtpauth's credentials are for the route's relay and port, not for these: left out")
		r.Auth, r.AuthSender = "", ""
		os.Unsetenv(chainenv.Auth)
		os.Unsetenv(chainenv.AuthSender)
		os.Setenv(chainenv.TLSStrictness, strconv.Itoa(*strictness))
		if file.Found {
			os.Setenv(chainenv.TLSPolicy, file.Level)
		}
	}

	pol := &Policy{Level: os.Getenv(chainenv.TLSPolicy), LevelSource: "none",
		Match: strings.Fields(os.Getenv(chainenv.TLSMatch)), Pins: strings.Fields(os.Getenv(chainenv.TLSPins)),
		TrustAnchors: os.Getenv(chainenv.TrustAnchors)}
	if file.Found {
		pol.Key = file.Key
		pol.FileLevel = file.Level
	}
	n, err := chainenv.Int(chainenv.TLSStrictness, 0, 2)
	if err != nil {
		die(err)
	}
	pol.Strictness = int(n)
	if pol.Level != "" {
		pol.LevelSource = "control/tlspolicy"
	}
	if *level != "" {
		pol.Level, pol.LevelSource = *level, "-l"
		os.Setenv(chainenv.TLSPolicy, *level)
	}
	pol.Why = policyWhy(pol, r, *strictness)

	b, err := json.Marshal(routeLine{Route: r, Policy: pol})
	if err != nil {
		chain.Die(chain.ExitSystem, prog, "%v", err)
	}
	// Notes travel with the probe's own (the front end merges them).
	if len(notes) > 0 {
		nb, _ := json.Marshal(probeNotes{Notes: notes})
		b = append(append(b, '\n'), nb...)
	}
	if _, err := chain.Stdout.Write(append(b, '\n')); err != nil {
		chain.Die(chain.ExitSystem, prog, "unable to write: %v", err)
	}
	return chain.Exec(fs.Args())
}

// probeNotes is a line with notes only.
type probeNotes struct {
	Notes []string `json:"notes"`
}

// policyWhy says which rule decides TLS for the destination.
func policyWhy(p *Policy, r *Route, fileStrictness int) string {
	line := "no control/tlspolicy line applies"
	if p.FileLevel != "" {
		line = fmt.Sprintf("control/tlspolicy says %s (%s)", p.FileLevel, keyText(p.Key))
	}
	creds := "credentials"
	if r.AuthSender != "" {
		creds = "the credentials of " + r.AuthSender
	}
	switch {
	case p.LevelSource == "-l":
		return fmt.Sprintf("-l %s (%s)", p.Level, line)
	case p.Level != "" && p.Level != p.FileLevel && r.Auth != "":
		return fmt.Sprintf("%s, raised to %s: control/smtpauth has %s for %s:%d", line, p.Level, creds, r.Relay, r.Port)
	case p.Level != "":
		return line
	case r.Auth != "" && fileStrictness != p.Strictness:
		return fmt.Sprintf("%s; control/smtpauth has %s for %s:%d, so tlsstrictness %d (control/tlsstrictness says %d)",
			line, creds, r.Relay, r.Port, p.Strictness, fileStrictness)
	case p.TrustAnchors == "":
		return line + ", and control/trustanchors is not set: no STARTTLS"
	}
	return fmt.Sprintf("%s: control/tlsstrictness %d", line, p.Strictness)
}

// keyText names the line of control/tlspolicy that applies.
func keyText(key string) string {
	switch {
	case key == "":
		return "the default line, :level"
	case strings.HasPrefix(key, "."):
		return "the line for the suffix " + key
	}
	return "the line for " + key
}

// fileLevel is control/tlspolicy's line for the destination.
func fileLevel() (tlspolicy.Policy, error) {
	home, err := chainenv.AbsPath(chainenv.QmailHome)
	if err != nil {
		return tlspolicy.Policy{}, err
	}
	run, err := chainenv.AbsPath(chainenv.QmailRun)
	if err != nil {
		return tlspolicy.Policy{}, err
	}
	host, err := chainenv.NonEmpty(chainenv.Host)
	if err != nil {
		return tlspolicy.Policy{}, err
	}
	return tlspolicy.Lookup(home, run, host)
}

func orNone(s, none string) string {
	if s == "" {
		return none
	}
	return s
}
