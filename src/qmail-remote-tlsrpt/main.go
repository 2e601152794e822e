// qmail-remote-tlsrpt sends the day's SMTP TLS reports (RFC 8460),
// from cron, once a day (doc/tlsrpt.md).
//
// Deliveries under a TLS policy append one record per attempt to
// RUN/qmail-remote/tlsrpt/YYYYMMDD (package tlsrpt). For each complete
// day of that log, and each recipient domain in it that publishes a
// TLSRPT record (_smtp._tls.DOMAIN TXT), this program sums the day up
// as the RFC's JSON report and sends it, gzipped, where the record says:
// by mail through qmail-inject (mailto:), or by HTTPS POST (https:). A
// day whose reports all went is deleted; one that did not stays, and the
// next run tries again what has not gone yet, for up to -k days.
package qmailremotetlsrpt

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"qmail-remote-go/src/internal/chain"
	"qmail-remote-go/src/internal/chainenv"
	"qmail-remote-go/src/internal/control"
	"qmail-remote-go/src/internal/proc"
	"qmail-remote-go/src/internal/regular"
	"qmail-remote-go/src/internal/remotecontrol"
	"qmail-remote-go/src/internal/resolve"
	"qmail-remote-go/src/internal/say"
	"qmail-remote-go/src/internal/tlsrpt"
)

const prog = "qmail-remote-tlsrpt"

// Name is the program's name in the multicall binary.
const Name = prog

const usage = "qmail-remote-tlsrpt [-v] [-n dir] [-d YYYYMMDD] [-k days]"

// Post posts a report over HTTPS: host (with its port, if any), path
// (with its query), the content type, the body. It returns the HTTP
// status. Set by the program's wiring (src/internal/https1 when it
// lands); nil, https: destinations are reported as unavailable. A
// variable, not an import, so that no HTTP client is linked into, and
// initialised by, every delivery.
var Post func(ctx context.Context, host, path, contentType string, body []byte) (status int, err error)

// now is the clock (a variable for tests).
var now = time.Now

// Bounds.
const (
	defaultKeep   = 7
	maxKeep       = 366
	lookupTimeout = 60 * time.Second
	injectTimeout = 5 * time.Minute
	postTimeout   = 5 * time.Minute
)

// Names in the log directory besides the days' files.
const (
	sentSuffix = ".sent" // DAY.sent: "DOMAIN URI" lines of the reports of DAY that went
	lockName   = "lock"  // held by a run that sends, so that two runs do not send twice
)

type options struct {
	verbose bool
	dry     string    // -n: the directory to write reports to instead of sending
	day     time.Time // -d, or zero
	keep    int       // -k
}

func parseOptions(args []string) options {
	o := options{keep: defaultKeep}
	var day string
	fs := flag.NewFlagSet(prog, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.BoolVar(&o.verbose, "v", false, "")
	fs.StringVar(&o.dry, "n", "", "")
	fs.StringVar(&day, "d", "", "")
	fs.IntVar(&o.keep, "k", defaultKeep, "")
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
	if fs.NArg() != 0 {
		bad("unexpected argument %q", fs.Arg(0))
	}
	if isSet(fs, "n") && o.dry == "" {
		bad("-n needs a directory")
	}
	if isSet(fs, "d") {
		d, err := time.Parse(tlsrpt.DayLayout, day)
		if err != nil || len(day) != len(tlsrpt.DayLayout) {
			bad("-d must be a day as YYYYMMDD, not %q", day)
		}
		o.day = d
		today := dayOf(now())
		// A report covers a whole day: today's is not over yet. A dry
		// run may show it all the same.
		if d.After(today) || d.Equal(today) && o.dry == "" {
			bad("-d %s is not over yet (use -n to see its report so far)", day)
		}
	}
	if o.keep < 1 || o.keep > maxKeep {
		bad("-k must be a number of days from 1 to %d", maxKeep)
	}
	return o
}

func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// dayOf is the UTC day holding t, at 00:00.
func dayOf(t time.Time) time.Time { return tlsrpt.DayRange(t).Start }

// reporter is one run.
type reporter struct {
	o       options
	home    string
	logDir  string
	me      string // control/me: organization, submitter
	contact string // contact-info
	sender  string // envelope and From of the mails
	dns     resolve.Resolver
	dnsErr  error
	failed  bool // something could not be sent: exit 111
}

// Main is the program.
func Main(args []string) chain.Next {
	o := parseOptions(args)
	home, run, _, err := remotecontrol.Locations()
	if err != nil {
		chain.Die(chain.ExitSystem, prog, "%v", err)
	}
	r := &reporter{o: o, home: home, logDir: tlsrpt.LogDir(run)}
	r.readControls()
	// DNSCACHEIP, as for deliveries: the reports' destinations are
	// looked up where the deliveries looked up theirs.
	if c, err := resolve.LoadConfig(os.Getenv(chainenv.DNSCacheIP)); err != nil {
		r.dnsErr = err
	} else {
		r.dns = c
	}
	if o.dry != "" {
		r.dryRun()
	} else {
		r.send()
	}
	if r.failed {
		return chain.Exit(chain.ExitSystem)
	}
	return chain.Exit(0)
}

// readControls reads control/me, and control/tlsrptcontact and
// control/tlsrptsender, which default to postmaster@ME.
func (r *reporter) readControls() {
	path := func(name string) string { return filepath.Join(r.home, "control", name) }
	me, found, err := control.Name(path("me"))
	if err != nil {
		chain.Die(chain.ExitSystem, prog, "%v", err)
	}
	if !found {
		chain.Die(chain.ExitSystem, prog, "%s does not name this host: it names the reports' submitter", path("me"))
	}
	r.me = me
	r.contact, r.sender = "postmaster@"+me, "postmaster@"+me
	if v, _, err := control.Line(path("tlsrptcontact")); err != nil {
		chain.Die(chain.ExitSystem, prog, "%v", err)
	} else if v != "" {
		r.contact = v
	}
	v, _, err := control.Line(path("tlsrptsender"))
	if err != nil {
		chain.Die(chain.ExitSystem, prog, "%v", err)
	}
	if v != "" {
		// It becomes an argument of qmail-inject, and a header.
		if strings.HasPrefix(v, "-") || strings.ContainsFunc(v, func(c rune) bool { return c <= ' ' || c == 0x7f }) {
			chain.Die(chain.ExitSystem, prog, "%s holds %q, which is not an address", path("tlsrptsender"), say.Clip(v, 60))
		}
		r.sender = v
	}
}

// warn prints a problem on stderr.
func (r *reporter) warn(format string, a ...any) {
	fmt.Fprintf(chain.Stderr, "%s: %s\n", prog, fmt.Sprintf(format, a...))
}

// fail prints what could not be sent: the run ends with 111 and the
// day's log stays for the next.
func (r *reporter) fail(format string, a ...any) {
	r.warn(format, a...)
	r.failed = true
}

// note prints progress on stdout, with -v only (cron mails any output).
func (r *reporter) note(format string, a ...any) {
	if r.o.verbose {
		fmt.Fprintf(chain.Stdout, format+"\n", a...)
	}
}

// send is a real run: every day to report, then the log's cleanup.
func (r *reporter) send() {
	unlock := r.lock()
	if unlock == nil {
		return
	}
	defer unlock()
	today := dayOf(now())
	oldest := today.AddDate(0, 0, -r.o.keep)
	days := []time.Time{r.o.day}
	if r.o.day.IsZero() {
		// Every complete day still in the log, oldest first: yesterday,
		// and the days whose reports did not all go before.
		days = nil
		for _, d := range r.logDays() {
			if d.Before(today) && !d.Before(oldest) {
				days = append(days, d)
			}
		}
	}
	for _, d := range days {
		r.reportDay(d)
	}
	// The days past -k are given up, reported or not.
	for _, d := range r.logDays() {
		if d.Before(oldest) {
			path := filepath.Join(r.logDir, d.Format(tlsrpt.DayLayout))
			if _, err := os.Stat(path); err == nil {
				r.warn("%s: older than %d days, deleted with reports unsent", path, r.o.keep)
			}
			r.remove(path)
		}
	}
}

// lock takes the log directory's lock, so that a run by hand during the
// cron run does not send the same reports again. It returns the unlock,
// or nil when there is nothing to do (no log directory) or another run
// holds the lock.
func (r *reporter) lock() func() {
	f, err := regular.OpenFile(filepath.Join(r.logDir, lockName), os.O_RDWR|os.O_CREATE, 0o644)
	if errors.Is(err, fs.ErrNotExist) {
		r.note("%s does not exist: nothing to report", r.logDir)
		return nil
	}
	if err != nil {
		chain.Die(chain.ExitSystem, prog, "unable to open %s: %v", filepath.Join(r.logDir, lockName), say.Err(err))
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		r.fail("another %s is running (%s is locked)", prog, filepath.Join(r.logDir, lockName))
		return nil
	}
	return func() { f.Close() }
}

// logDays lists the days that have a file in the log (or a .sent file
// left by a crash), sorted.
func (r *reporter) logDays() []time.Time {
	ents, err := os.ReadDir(r.logDir)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			chain.Die(chain.ExitSystem, prog, "unable to read %s: %v", r.logDir, say.Err(err))
		}
		return nil
	}
	var days []time.Time
	for _, e := range ents {
		name := strings.TrimSuffix(e.Name(), sentSuffix)
		if len(name) != len(tlsrpt.DayLayout) {
			continue
		}
		d, err := time.Parse(tlsrpt.DayLayout, name)
		if err == nil && !slices.Contains(days, d) {
			days = append(days, d)
		}
	}
	slices.SortFunc(days, time.Time.Compare)
	return days
}

// remove deletes a day's file and its .sent file.
func (r *reporter) remove(path string) {
	for _, p := range []string{path, path + sentSuffix} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			r.warn("unable to delete %s: %v", p, say.Err(err))
		}
	}
}

// readDay reads a day's log; ok is false when there is none.
func (r *reporter) readDay(d time.Time) (recs []tlsrpt.Record, ok bool) {
	path := filepath.Join(r.logDir, d.Format(tlsrpt.DayLayout))
	recs, bad, err := tlsrpt.Read(path)
	if errors.Is(err, fs.ErrNotExist) {
		r.note("%s: no log", d.Format(tlsrpt.DayLayout))
		return nil, false
	}
	if err != nil {
		r.fail("unable to read %s: %v", path, say.Err(err))
		return nil, false
	}
	if bad > 0 {
		r.warn("%s: %d malformed lines skipped", path, bad)
	}
	return recs, true
}

// reportDay sends the reports of one day that have not gone yet, and
// deletes the day's log once all have.
func (r *reporter) reportDay(d time.Time) {
	day := d.Format(tlsrpt.DayLayout)
	path := filepath.Join(r.logDir, day)
	recs, ok := r.readDay(d)
	if !ok {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			r.remove(path) // a .sent file alone
		}
		return
	}
	sent := readSent(path + sentSuffix)
	allWent := true
	for _, dom := range tlsrpt.Domains(recs) {
		rep, gz, ok := r.build(d, dom, recs)
		if !ok {
			continue
		}
		rua, err := r.lookupRUA(dom)
		if err != nil {
			if errors.As(err, new(*tempError)) {
				r.fail("%s %s: unable to look up where to send the report: %v", day, dom, err)
				allWent = false
			} else {
				r.note("%s %s: no report: %v", day, dom, err)
			}
			continue
		}
		for _, u := range rua {
			if sent[dom+" "+u] {
				r.note("%s %s: sent to %s before", day, dom, u)
				continue
			}
			temp, err := r.deliver(u, rep, gz)
			switch {
			case err == nil:
				r.note("%s %s: sent to %s", day, dom, u)
				if err := appendSent(path+sentSuffix, dom+" "+u); err != nil {
					r.warn("unable to note in %s that the report went: %v (it may go twice)", path+sentSuffix, say.Err(err))
				}
			case temp:
				r.fail("%s %s: unable to send the report to %s: %v", day, dom, u, err)
				allWent = false
			default:
				r.warn("%s %s: unable to send the report to %s: %v", day, dom, u, err)
			}
		}
	}
	if allWent {
		r.remove(path)
	}
}

// build makes a domain's report, its JSON gzipped. ok is false for a
// domain that is not one (the log is ours, but it names what the
// deliveries were given): it would go into a DNS name and a file name.
func (r *reporter) build(d time.Time, dom string, recs []tlsrpt.Record) (rep tlsrpt.Report, gz []byte, ok bool) {
	day := d.Format(tlsrpt.DayLayout)
	if !validDomain(dom) {
		r.warn("%s: %q is not a domain name: no report", day, say.Clip(dom, 60))
		return rep, nil, false
	}
	rep = tlsrpt.Aggregate(recs, dom, d, r.me, r.contact, day+"."+dom+"@"+r.me)
	js, err := rep.JSON()
	if err != nil {
		r.fail("%s %s: unable to make the report: %v", day, dom, err)
		return rep, nil, false
	}
	return rep, tlsrpt.Gzip(js), true
}

// validDomain accepts what a DNS name and a file name both take: labels
// of letters, digits, '-' and '_', dots between them.
func validDomain(d string) bool {
	if d == "" || len(d) > 253 {
		return false
	}
	for l := range strings.SplitSeq(d, ".") {
		if l == "" || len(l) > 63 {
			return false
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// tempError is a lookup that may work later.
type tempError struct{ detail string }

func (e *tempError) Error() string { return e.detail }

// lookupRUA asks where dom wants its reports: tlsrpt.ErrNoRecord (or
// the record's own error) when nowhere, a *tempError when DNS failed.
func (r *reporter) lookupRUA(dom string) ([]string, error) {
	if r.dnsErr != nil {
		return nil, &tempError{r.dnsErr.Error()}
	}
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	name := "_smtp._tls." + dom
	ans := r.dns.Lookup(ctx, name, dns.TypeTXT)
	switch ans.Kind {
	case resolve.Found:
	case resolve.NoData, resolve.NXDomain:
		return nil, tlsrpt.ErrNoRecord
	default:
		return nil, &tempError{name + " TXT: " + ans.Detail}
	}
	var txts []string
	for _, rr := range ans.Records {
		if t, ok := rr.(*dns.TXT); ok {
			// A record longer than 255 bytes comes as several strings,
			// which make one (RFC 7208 3.3 says so for SPF; RFC 8460 3
			// takes TXT records the same way).
			txts = append(txts, strings.Join(t.Txt, ""))
		}
	}
	return tlsrpt.ParseRUA(txts)
}

// deliver sends a report to one rua URI. temp says whether trying again
// later may help; an unusable URI is the domain's to fix.
func (r *reporter) deliver(u string, rep tlsrpt.Report, gz []byte) (temp bool, err error) {
	scheme, rest, _ := strings.Cut(u, ":")
	switch strings.ToLower(scheme) {
	case "mailto":
		addr, err := mailtoAddr(rest)
		if err != nil {
			return false, err
		}
		return true, r.inject(addr, tlsrpt.Mail(rep, gz, r.sender, addr, r.me, now()))
	case "https":
		host, path, err := httpsTarget(rest)
		if err != nil {
			return false, err
		}
		if Post == nil {
			return false, errors.New("this binary cannot send reports over HTTPS")
		}
		ctx, cancel := context.WithTimeout(context.Background(), postTimeout)
		defer cancel()
		status, err := Post(ctx, host, path, tlsrpt.ContentType, gz)
		if err != nil {
			return true, err
		}
		if status < 200 || status > 299 {
			return true, fmt.Errorf("the server answered with HTTP status %d", status)
		}
		return false, nil
	}
	return false, errors.New("not a mailto: or https: URI")
}

// mailtoAddr is the address of a mailto: URI (RFC 6068): before any
// '?', %-escapes decoded. It becomes an argument of qmail-inject: it
// must not look like an option, nor hold blanks or control characters.
func mailtoAddr(s string) (string, error) {
	s, _, _ = strings.Cut(s, "?")
	addr, err := unescape(s)
	if err != nil {
		return "", err
	}
	if addr == "" || strings.HasPrefix(addr, "-") || !strings.Contains(addr, "@") || len(addr) > 320 ||
		strings.ContainsFunc(addr, func(c rune) bool { return c <= ' ' || c == 0x7f || c == ',' }) {
		return "", fmt.Errorf("%q is not one mail address", say.Clip(addr, 60))
	}
	return addr, nil
}

// unescape decodes %XX escapes.
func unescape(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) || unhex(s[i+1]) < 0 || unhex(s[i+2]) < 0 {
			return "", fmt.Errorf("%q has a bad %%-escape", say.Clip(s, 60))
		}
		b.WriteByte(byte(unhex(s[i+1])<<4 | unhex(s[i+2])))
		i += 2
	}
	return b.String(), nil
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// httpsTarget splits an https: URI's rest ("//host[:port]/path?query")
// into host and path; a fragment is not sent.
func httpsTarget(s string) (host, path string, err error) {
	rest, ok := strings.CutPrefix(s, "//")
	if !ok {
		return "", "", errors.New("not https://host/path")
	}
	rest, _, _ = strings.Cut(rest, "#")
	host, path, _ = strings.Cut(rest, "/")
	path = "/" + path
	if i := strings.IndexByte(host, '?'); i >= 0 {
		host, path = host[:i], "/"+host[i:]
	}
	if host == "" || strings.Contains(host, "@") ||
		strings.ContainsFunc(host+path, func(c rune) bool { return c <= ' ' || c == 0x7f }) {
		return "", "", fmt.Errorf("%q is not https://host/path", say.Clip("https:"+s, 80))
	}
	return host, path, nil
}

// inject hands a message to qmail-inject, for addr, from the sender.
func (r *reporter) inject(addr string, msg []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), injectTimeout)
	defer cancel()
	path := filepath.Join(r.home, "bin", "qmail-inject")
	cmd := exec.CommandContext(ctx, path, "-f", r.sender, addr)
	cmd.Stdin = bytes.NewReader(msg)
	// qmail-inject says why it failed on stderr; stdout is for the
	// dry run's listing.
	cmd.Stdout, cmd.Stderr = chain.Stderr, chain.Stderr
	end, err := proc.Run(cmd, nil)
	if err != nil {
		return fmt.Errorf("unable to run %s: %v", path, say.Err(err))
	}
	if !end.Exited || end.Code != 0 {
		return fmt.Errorf("qmail-inject failed (%s)", end)
	}
	return nil
}

// readSent reads a .sent file: what already went.
func readSent(path string) map[string]bool {
	sent := map[string]bool{}
	f, err := regular.Open(path)
	if err != nil {
		return sent
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sent[sc.Text()] = true
	}
	return sent
}

// appendSent notes in a .sent file that a report went.
func appendSent(path, line string) error {
	f, err := regular.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteString(line + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// dryRun writes each report of one day (-d, default yesterday) into the
// -n directory, as DOMAIN.json and as the mail DOMAIN.eml, and says
// where it would go. Nothing is sent, nothing deleted.
func (r *reporter) dryRun() {
	d := r.o.day
	if d.IsZero() {
		d = dayOf(now()).AddDate(0, 0, -1)
	}
	day := d.Format(tlsrpt.DayLayout)
	recs, ok := r.readDay(d)
	if !ok {
		fmt.Fprintf(chain.Stdout, "%s: no log, no reports\n", day)
		return
	}
	if err := os.MkdirAll(r.o.dry, 0o755); err != nil {
		chain.Die(chain.ExitSystem, prog, "unable to create %s: %v", r.o.dry, say.Err(err))
	}
	for _, dom := range tlsrpt.Domains(recs) {
		rep, gz, ok := r.build(d, dom, recs)
		if !ok {
			continue
		}
		where := "nowhere"
		var to []string
		rua, err := r.lookupRUA(dom)
		switch {
		case errors.As(err, new(*tempError)):
			r.warn("%s %s: unable to look up where to send the report: %v", day, dom, err)
			where = "unknown (DNS failed)"
		case err != nil:
			where = "nowhere (" + err.Error() + ")"
		default:
			where = strings.Join(rua, " ")
			for _, u := range rua {
				if scheme, rest, _ := strings.Cut(u, ":"); strings.EqualFold(scheme, "mailto") {
					if a, err := mailtoAddr(rest); err == nil {
						to = append(to, a)
					}
				}
			}
		}
		rcpt := "undisclosed-recipients:;"
		if len(to) > 0 {
			rcpt = strings.Join(to, ", ")
		}
		js, _ := rep.JSON()
		base := filepath.Join(r.o.dry, dom)
		for _, f := range []struct {
			path string
			data []byte
		}{{base + ".json", append(js, '\n')}, {base + ".eml", tlsrpt.Mail(rep, gz, r.sender, rcpt, r.me, now())}} {
			if err := os.WriteFile(f.path, f.data, 0o644); err != nil {
				chain.Die(chain.ExitSystem, prog, "unable to write %s: %v", f.path, say.Err(err))
			}
		}
		fmt.Fprintf(chain.Stdout, "%s %s: %s.eml, would go to %s\n", day, dom, base, where)
	}
}
