package qmailremoteio

// Smarthost submission (doc/smtpauth.md): SMTP AUTH (RFC 4954) with PLAIN
// (RFC 4616) or LOGIN (draft-murchison-sasl-login), over STARTTLS or over
// TLS from the first byte (SMTPS, RFC 8314). qmail-remote-routes found
// credentials for the route and says how to reach the relay in
// QMAILREMOTE_AUTH; the user and the password are read here, from
// control/smtpauth, in the second run only, once the server's
// certificate has verified. They live in this process's memory only:
// never in the environment, argv, a report or an error text (a reply
// quoting them is filtered: secrets.go).

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"qmail-remote-go/src/internal/chainenv"
	"qmail-remote-go/src/internal/report"
	"qmail-remote-go/src/internal/senders"
	"qmail-remote-go/src/internal/smtp"
	"qmail-remote-go/src/internal/smtpauth"
)

// authConfig is what QMAILREMOTE_AUTH asks for.
type authConfig struct {
	method    string // "", chainenv.AuthStartTLS or chainenv.AuthSMTPS
	qmailHome string // where control/smtpauth is
	relay     string // the route's relay and port: the key in control/smtpauth
	port      int
	// sender is the sender key of the credentials (QMAILREMOTE_AUTHSENDER,
	// canonical), "" for the relay's own.
	sender string
	user   string // after a successful AUTH, for the K report
}

// readAuthEnv reads QMAILREMOTE_AUTH and what the lookup in
// control/smtpauth needs. A password goes over TLS only, so a first run
// must have been told to insist on STARTTLS (the connector says require
// at tlsstrictness 2, which the routes stage set).
func readAuthEnv(cfg *config, die func(error)) {
	switch cfg.auth.method = os.Getenv(chainenv.Auth); cfg.auth.method {
	case "":
		return
	case chainenv.AuthStartTLS, chainenv.AuthSMTPS:
	default:
		die(&chainenv.Error{Name: chainenv.Auth, Reason: fmt.Sprintf("must be starttls or smtps, not %q", cfg.auth.method)})
	}
	if cfg.tls == nil && cfg.tlsMode != chainenv.TLSRequire {
		die(&chainenv.Error{Name: chainenv.TLS, Reason: "must be require when " + chainenv.Auth + " is set: a password never goes in cleartext"})
	}
	home, err := chainenv.NonEmpty(chainenv.QmailHome)
	if err == nil && !filepath.IsAbs(home) {
		err = &chainenv.Error{Name: chainenv.QmailHome, Reason: fmt.Sprintf("must be an absolute path, not %q", home)}
	}
	if err != nil {
		die(err)
	}
	cfg.auth.qmailHome = home
	if cfg.auth.relay, err = chainenv.NonEmpty(chainenv.Relay); err != nil {
		die(&chainenv.Error{Name: chainenv.Relay, Reason: "must be set when " + chainenv.Auth + " is set"})
	}
	port, err := chainenv.Int(chainenv.Port, 1, 65535)
	if err != nil {
		die(err)
	}
	cfg.auth.port = int(port)
	if v := os.Getenv(chainenv.AuthSender); v != "" {
		k, _, reason := senders.Split(v+":", false, true)
		if reason != "" {
			die(&chainenv.Error{Name: chainenv.AuthSender, Reason: reason})
		}
		cfg.auth.sender = k
	}
}

// smtps says whether the session is TLS from the first byte.
func (c *config) smtps() bool { return c.auth.method == chainenv.AuthSMTPS }

// startSMTPS is the first run of an SMTPS session: no greeting, no EHLO in
// cleartext, but the TLS stage at once, exactly as after a 220 to
// STARTTLS. The second run reads the greeting under TLS. It returns only
// when the TLS stage could not be started.
func (s *session) startSMTPS() (outcome, bool) {
	return s.runTLS()
}

// authLine is the line the K report gets after an AUTH.
func (s *session) authLine() string {
	if s.cfg.auth.user == "" {
		return ""
	}
	return "Authenticated as " + s.cfg.auth.user + ".\n"
}

// authMechs are the mechanisms we use, best first. PLAIN costs one round
// trip less than LOGIN; both send the password as it is, which is why they
// go only over verified TLS. CRAM-MD5 would hide it from the server
// itself, but needs the server to store it in the clear and is
// deprecated (RFC 8314 5.1 wants TLS instead); servers that offer it
// offer PLAIN or LOGIN too.
var authMechs = []string{"PLAIN", "LOGIN"}

// maxCommand is the line length limit for the AUTH command (RFC 5321
// 4.5.3.1.4): a longer initial response goes after a 334 instead (RFC
// 4954 4).
const maxCommand = 512

// authenticate does AUTH after the post-TLS EHLO. It returns giveUp false
// when the transaction may start; else o and quit end the session. A 5xx
// is final (exit 0): the smarthost's other addresses would refuse the same
// credentials, and the mail must wait, never bounce, until the admin
// fixes them.
func (s *session) authenticate() (o outcome, quit, giveUp bool) {
	ip := s.cfg.ip
	a := &s.cfg.auth
	where := a.relay + ":" + strconv.Itoa(a.port)
	// Belt and braces: the connector and the TLS stage see to it that
	// AUTH only comes here, verified, under TLS.
	if s.cfg.tls == nil || !s.cfg.tls.verified {
		return outcome{report.Temporary, "Connected to " + ip + " but its certificate was not verified, and control/smtpauth has credentials for " + where +
			": a password never goes to an unverified server. (#4.7.0)\n"}, true, true
	}
	if !s.ext.Has("AUTH") {
		return outcome{report.Temporary, "Connected to " + ip + " but it does not offer AUTH under TLS, and control/smtpauth has credentials for " + where + ". (#4.7.0)\n"}, true, true
	}
	mech := ""
	for _, m := range authMechs {
		for _, p := range s.ext.Params("AUTH") {
			if mech == "" && strings.EqualFold(p, m) {
				mech = m
			}
		}
	}
	if mech == "" {
		offered := strings.Join(s.ext.Params("AUTH"), " ")
		if offered == "" {
			offered = "no mechanism at all"
		}
		return outcome{report.Temporary, "Connected to " + ip + " but it offers none of the AUTH mechanisms I know (PLAIN, LOGIN): it offers " + offered + ". (#4.7.0)\n"}, true, true
	}

	// The very entry the routes stage found, not a fallback: a sender's
	// credentials gone since must not become the relay's own.
	e, _, found, err := smtpauth.Lookup(a.qmailHome, []string{a.sender}, a.relay, a.port)
	if err == nil && !found {
		if a.sender != "" {
			where = senders.Show(a.sender) + " at " + where
		}
		err = fmt.Errorf("%s has no credentials for %s any more", smtpauth.File, where)
	}
	if err != nil {
		// The routes stage read the file a moment ago: it changed since.
		// Another address of the same relay would find the same file.
		s.inTransaction = true // final
		return outcome{report.Temporary, "Unable to read control files: " + err.Error() + ". (#4.3.0)\n"}, true, true
	}

	var initial string
	var responses []string
	switch mech {
	case "PLAIN":
		// RFC 4616 2: no authorization identity, the user, the password.
		resp := base64.StdEncoding.EncodeToString([]byte("\x00" + e.User + "\x00" + e.Password))
		if len("AUTH PLAIN "+resp+"\r\n") <= maxCommand {
			initial = resp
		} else {
			responses = []string{resp}
		}
	case "LOGIN":
		responses = []string{base64.StdEncoding.EncodeToString([]byte(e.User)), base64.StdEncoding.EncodeToString([]byte(e.Password))}
	}
	// From the AUTH command on, no report may quote the credentials: the
	// replies to AUTH are quoted by their codes only, and every later
	// text from the server is filtered (secrets.go).
	s.secrets = newScrubber(append([]string{e.Password, initial}, responses...)...)
	s.authPhase = true
	r, err := s.sasl(mech, initial, responses)
	if err != nil {
		return s.broken("AUTH", err, false), false, true
	}
	said := s.said(r)
	s.authPhase = false
	head := "Connected to " + ip + " but AUTH " + mech + " as " + e.User + " failed"
	switch r.Class() {
	case 2:
		a.user = e.User
		return outcome{}, false, false
	case 5:
		// 535 wrong credentials, 534 mechanism too weak, 538 encryption
		// required, 530, 504 ...: only the admin can help.
		s.inTransaction = true // final
		return outcome{report.Temporary, head + "; check control/smtpauth.\n" + said}, true, true
	case 3:
		// The server wanted more than the mechanism has to say; we
		// cancelled (RFC 4954 4) and this is its answer to "*".
		return outcome{report.Temporary, head + ": the server asked for more than AUTH " + mech + " has to say.\n" + said}, true, true
	}
	return outcome{report.Temporary, head + ".\n" + said}, true, true
}

// sasl runs one AUTH exchange: the command with its initial response, and
// each further response after a 334 challenge (RFC 4954 4). A 334 past
// the responses is cancelled with "*"; the reply to that is returned with
// the code 3xx of the 334 kept, so the caller can tell.
func (s *session) sasl(mech, initial string, responses []string) (smtp.Reply, error) {
	line := "AUTH " + mech
	if initial != "" {
		line += " " + initial
	}
	r, err := s.command(line, "AUTH")
	for err == nil && r.Code == 334 {
		if len(responses) == 0 {
			var c smtp.Reply
			if c, err = s.command("*", "AUTH"); err != nil {
				return c, err
			}
			c.Code = 334
			return c, nil
		}
		r, err = s.command(responses[0], "AUTH")
		responses = responses[1:]
	}
	return r, err
}
