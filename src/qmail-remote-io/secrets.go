package qmailremoteio

// No report may hold the password, the AUTH payload, or any run of 6 or
// more of their characters, whatever the server sends once AUTH began
// (doc/smtpauth.md). A server that echoes what it got, exactly or with
// small changes (one character less, another case, a space in the
// middle), must not put the password into qmail's log. So:
//   - replies read while AUTH runs are quoted as their code and enhanced
//     status only; a malformed one not at all;
//   - every other text from the server after AUTH began (replies to MAIL,
//     RCPT, DATA and the dot, bytes sent out of step, error details that
//     quote the server) goes through hide, which replaces every run of 6
//     or more characters found in a secret, compared without case, and
//     every copy of a secret shorter than that, with "(hidden)".

import (
	"strconv"
	"strings"

	"qmail-remote-go/src/internal/ascii"
	"qmail-remote-go/src/internal/report"
	"qmail-remote-go/src/internal/smtp"
)

// minRun is the shortest run of a secret's characters that is hidden.
const minRun = 6

// scrubber hides secrets in server text. A nil *scrubber hides nothing.
type scrubber struct {
	grams map[string]bool // every minRun-byte substring of a secret, lower case
	short []string        // secrets shorter than minRun, lower case
}

func newScrubber(secrets ...string) *scrubber {
	sc := &scrubber{grams: make(map[string]bool)}
	for _, x := range secrets {
		x = ascii.Lower(x)
		if x == "" {
			continue
		}
		if len(x) < minRun {
			sc.short = append(sc.short, x)
			continue
		}
		for i := 0; i+minRun <= len(x); i++ {
			sc.grams[x[i:i+minRun]] = true
		}
	}
	return sc
}

// hide returns text with every run it shares with a secret replaced.
func (sc *scrubber) hide(text string) string {
	if sc == nil || text == "" {
		return text
	}
	low := ascii.Lower(text)
	mark := make([]bool, len(text))
	any := false
	for i := 0; i+minRun <= len(low); i++ {
		if sc.grams[low[i:i+minRun]] {
			for j := i; j < i+minRun; j++ {
				mark[j] = true
			}
			any = true
		}
	}
	for _, x := range sc.short {
		for i := 0; ; {
			k := strings.Index(low[i:], x)
			if k < 0 {
				break
			}
			for j := i + k; j < i+k+len(x); j++ {
				mark[j] = true
			}
			any = true
			i += k + 1
		}
	}
	if !any {
		return text
	}
	var b strings.Builder
	for i := 0; i < len(text); {
		if !mark[i] {
			b.WriteByte(text[i])
			i++
			continue
		}
		b.WriteString("(hidden)")
		for i < len(text) && mark[i] {
			i++
		}
	}
	return b.String()
}

// said formats a reply for a report, the way stock does ("Remote host
// said: ..."), hiding what must be hidden: during AUTH only the code and
// enhanced status are quoted; after it, the secrets are hidden. Lines of a
// long reply that were not kept are counted.
func (s *session) said(r smtp.Reply) string {
	if s.authPhase {
		return report.RemoteSaid(codeOnly(r))
	}
	text := s.secrets.hide(r.Text)
	if r.Dropped > 0 {
		text += "(" + strconv.Itoa(r.Dropped) + " more lines of this reply not kept)\n"
	}
	return report.RemoteSaid(text)
}

// serverText is any other text the server chose (bytes sent out of step,
// a malformed reply), for a report: hidden as said does.
func (s *session) serverText(text string) string {
	if s.authPhase {
		return ""
	}
	return report.RemoteSaid(s.secrets.hide(text))
}

// codeOnly is what is quoted of a reply during AUTH: the code, and the
// enhanced status code (RFC 3463) when the first line starts with one. A
// reply without a code (a malformed one) gives "".
func codeOnly(r smtp.Reply) string {
	if r.Code == 0 {
		return ""
	}
	first, _, _ := strings.Cut(r.Text, "\n")
	c := first[:3]
	if st := enhancedStatus(first); st != "" {
		c += " " + st
	}
	return c + " (the rest of this reply is not shown: it might quote the credentials)\n"
}

// enhancedStatus returns the enhanced status code that starts the text of
// a reply line ("535 5.7.8 ..." gives "5.7.8"), or "": class 2, 4 or 5,
// then a dot, 1 to 3 digits, a dot, 1 to 3 digits, then the end or a space.
func enhancedStatus(line string) string {
	if len(line) < 5 {
		return ""
	}
	t := line[4:]
	if t == "" || (t[0] != '2' && t[0] != '4' && t[0] != '5') || len(t) < 2 || t[1] != '.' {
		return ""
	}
	i := 2
	for part := 0; part < 2; part++ {
		start := i
		for i < len(t) && i-start < 3 && t[i] >= '0' && t[i] <= '9' {
			i++
		}
		if i == start {
			return ""
		}
		if part == 0 {
			if i >= len(t) || t[i] != '.' {
				return ""
			}
			i++
		}
	}
	if i < len(t) && t[i] != ' ' {
		return ""
	}
	return t[:i]
}
