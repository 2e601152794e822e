package qmailremoteio

// The mail transaction up to the server's 354: MAIL with its ESMTP
// parameters, RCPT, DATA, lock-step or pipelined (doc/qmail-remote-io.md).

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"qmail-remote-go/src/internal/chain"
	"qmail-remote-go/src/internal/chainenv"
	"qmail-remote-go/src/internal/report"
	"qmail-remote-go/src/internal/smtp"
)

// msgInfo is what the entry program measured of the message in its
// pre-scan (doc/chain.md): what SIZE and BODY need.
type msgInfo struct {
	bytes    int64 // QMAILREMOTE_MSGBYTES; -1 when unset (run by hand): no SIZE=
	eightBit bool  // QMAILREMOTE_MSG8BIT=1
}

// readMsgInfo reads QMAILREMOTE_MSGBYTES and QMAILREMOTE_MSG8BIT. Both are
// optional, so that the program can be run by hand; set, they must be
// valid.
func readMsgInfo(die func(error)) msgInfo {
	m := msgInfo{bytes: -1}
	if _, ok := os.LookupEnv(chainenv.MsgBytes); ok {
		n, err := chainenv.Int(chainenv.MsgBytes, 0, 1<<63-1)
		if err != nil {
			die(err)
		}
		m.bytes = n
	}
	var err error
	if m.eightBit, err = chainenv.Flag(chainenv.Msg8Bit); err != nil {
		die(err)
	}
	return m
}

// sizeLimit returns the server's fixed maximum message size from its EHLO
// SIZE keyword (RFC 1870 4: "SIZE" [SP 1*DIGIT]), 0 for none. A missing,
// zero or malformed parameter is no limit: the server still decides after
// MAIL or after the dot, as without SIZE.
func sizeLimit(ext smtp.Extensions) uint64 {
	p := ext.Params("SIZE")
	if len(p) != 1 {
		return 0
	}
	for i := 0; i < len(p[0]); i++ {
		if p[0][i] < '0' || p[0][i] > '9' {
			return 0
		}
	}
	n, err := strconv.ParseUint(p[0], 10, 64)
	if err != nil {
		return 0 // more than 2^64: no limit worth the name
	}
	return n
}

// has8Bit says whether s has a byte >= 128.
func has8Bit(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return true
		}
	}
	return false
}

// useSMTPUTF8 says whether the transaction goes with SMTPUTF8 (RFC 6531
// 3.4): the server offers it, some address has a byte >= 128, and every
// address is valid UTF-8 (anything else is not UTF-8 mail, and goes as
// stock sends it).
func useSMTPUTF8(ext smtp.Extensions, sender string, rcpts []string) bool {
	if !ext.Has("SMTPUTF8") {
		return false
	}
	need := false
	for _, a := range append([]string{sender}, rcpts...) {
		if has8Bit(a) {
			if !utf8.ValidString(a) {
				return false
			}
			need = true
		}
	}
	return need
}

// rcptLine is one recipient: its RCPT command, or why it cannot have one.
type rcptLine struct {
	cmd string // "RCPT TO:<...>"; "" for an address SMTP cannot carry
	why string // with cmd "": the h report's text
}

// transaction sends MAIL, the RCPTs and DATA, and reads their replies,
// writing the recipient reports. ok: the server said 354 to DATA with at
// least one recipient accepted, and the body goes next. Otherwise o and
// quit end the session.
func (s *session) transaction() (o outcome, quit, ok bool) {
	ip := s.cfg.ip
	utf8Mode := useSMTPUTF8(s.ext, s.cfg.sender, s.cfg.rcpts)
	quote := smtp.QuoteAddress
	if utf8Mode {
		quote = smtp.QuoteAddressUTF8
	}

	// An envelope address holding CR or LF would forge commands (stock
	// quote.c escapes them with a backslash, which a server reading lines
	// does not see), and so would a domain part holding '>' and a space
	// (only local parts are quoted, as in stock): "MAIL FROM:<x@y.test>
	// AUTH=<>>". Such an address can never be delivered: D for the
	// sender, h for a recipient, and nothing of it on the wire.
	sender := quote(s.cfg.sender)
	if strings.ContainsAny(sender, "\r\n") {
		s.inTransaction = true // a final answer: no other server will do better
		return outcome{report.Permanent, "Sorry, the sender address holds a CR or LF, which SMTP cannot carry. (#5.1.7)\n"}, true, false
	}
	if err := smtp.CheckDomain(s.cfg.sender); err != nil {
		s.inTransaction = true
		return outcome{report.Permanent, "Sorry, the sender address cannot go into a MAIL command: " + err.Error() + ". (#5.1.7)\n"}, true, false
	}
	rcpts := make([]rcptLine, len(s.cfg.rcpts))
	for i, a := range s.cfg.rcpts {
		q := quote(a)
		if strings.ContainsAny(q, "\r\n") {
			rcpts[i].why = "Sorry, the recipient address holds a CR or LF, which SMTP cannot carry. (#5.1.3)\n"
			continue
		}
		if err := smtp.CheckDomain(a); err != nil {
			rcpts[i].why = "Sorry, the recipient address cannot go into a RCPT command: " + err.Error() + ". (#5.1.3)\n"
			continue
		}
		rcpts[i].cmd = "RCPT TO:<" + q + ">"
	}

	mail := "MAIL FROM:<" + sender + ">"
	// RFC 1870: announce the size, and do not send what the server has
	// said it would refuse. The transaction is over either way (exit 0):
	// the message is as big at every MX.
	if s.ext.Has("SIZE") && s.cfg.msg.bytes >= 0 {
		if limit := sizeLimit(s.ext); limit > 0 && limit < uint64(s.cfg.msg.bytes) {
			s.inTransaction = true
			return outcome{report.Permanent, fmt.Sprintf("Sorry, the message is too big for %s: it is %d bytes and the server accepts at most %d. (#5.3.4)\n", ip, s.cfg.msg.bytes, limit)}, true, false
		}
		mail += " SIZE=" + strconv.FormatInt(s.cfg.msg.bytes, 10)
	}
	// RFC 6152 3: say that the body is 8-bit. Without 8BITMIME the body
	// goes as it is, as stock does: we never rewrite a message.
	if s.cfg.msg.eightBit && s.ext.Has("8BITMIME") {
		mail += " BODY=8BITMIME"
	}
	if utf8Mode {
		mail += " SMTPUTF8" // RFC 6531 3.4
	}

	// A server that has spoken since its last reply is out of step
	// (step.go): nothing of the transaction has gone yet, so another
	// server may do better (exit 10).
	if err := s.inStep("before I sent MAIL"); err != nil {
		return s.broken("MAIL", err, false), false, false
	}
	s.inTransaction = true
	// RFC 2920: a server that offers PIPELINING gets the whole envelope
	// and DATA in one write. Nothing is ever pipelined past DATA (the
	// body waits for the 354), and STARTTLS is over by now.
	if s.ext.Has("PIPELINING") {
		return s.pipelined(mail, rcpts)
	}
	return s.lockStep(mail, rcpts)
}

// lockStep sends each command and waits for its reply (RFC 5321 3.3).
func (s *session) lockStep(mail string, rcpts []rcptLine) (o outcome, quit, ok bool) {
	r, err := s.command(mail, "MAIL")
	if err != nil {
		return s.broken("MAIL", err, false), false, false
	}
	if o, refused := s.mailRefused(r); refused {
		return o, true, false
	}
	accepted := 0
	for _, rc := range rcpts {
		if rc.cmd == "" {
			writeRefused(rc.why)
			continue
		}
		if r, err = s.command(rc.cmd, "RCPT"); err != nil {
			return s.broken("RCPT", err, false), false, false
		}
		if s.rcptReport(r) {
			accepted++
		}
	}
	if accepted == 0 {
		return s.givingUp(), true, false
	}
	if r, err = s.command("DATA", "DATA"); err != nil {
		return s.broken("DATA", err, false), false, false
	}
	if o, refused := s.dataRefused(r); refused {
		return o, true, false
	}
	return outcome{}, false, true
}

// pipelined sends MAIL, every RCPT and DATA in one write and reads the
// replies in order (RFC 2920 3.1), mapping each as lockStep does.
func (s *session) pipelined(mail string, rcpts []rcptLine) (o outcome, quit, ok bool) {
	var b strings.Builder
	b.WriteString(mail + "\r\n")
	sent := 0
	for _, rc := range rcpts {
		if rc.cmd != "" {
			b.WriteString(rc.cmd + "\r\n")
			sent++
		}
	}
	// DATA only with a RCPT before it: a server that answers 354 to a
	// DATA without recipients must not be given the chance.
	if sent > 0 {
		b.WriteString("DATA\r\n")
	}
	// The write runs beside the reads: with thousands of recipients the
	// server's replies could fill both socket buffers while it waits for
	// us to read them, and we would wait for it to read our commands
	// (RFC 2920 3.1 warns about this deadlock). The deadline bounds it.
	werr := make(chan error, 1)
	batch := b.String()
	go func() {
		s.w.SetWriteDeadline(time.Now().Add(s.cfg.timeout))
		_, err := s.w.Write([]byte(batch))
		werr <- err
	}()

	r, err := s.reply("MAIL")
	if err != nil {
		return s.broken("MAIL", err, false), false, false
	}
	// After a refused MAIL the server answers every RCPT and DATA too
	// (with 503, normally): those replies are read and dropped, and the
	// outcome is the MAIL one. If the connection dies meanwhile, it is
	// still the MAIL one, without QUIT.
	failed, mailRefused := s.mailRefused(r)
	accepted := 0
	for _, rc := range rcpts {
		if rc.cmd == "" {
			if !mailRefused {
				writeRefused(rc.why)
			}
			continue
		}
		if r, err = s.reply("RCPT"); err != nil {
			if mailRefused {
				return failed, false, false
			}
			return s.broken("RCPT", err, false), false, false
		}
		if !mailRefused && s.rcptReport(r) {
			accepted++
		}
	}
	if sent > 0 {
		if r, err = s.reply("DATA"); err != nil {
			if mailRefused {
				return failed, false, false
			}
			return s.broken("DATA", err, false), false, false
		}
	}
	// Every reply is in, so the server has read the whole batch: the
	// write is over, or failed.
	if err := <-werr; err != nil {
		if mailRefused {
			return failed, false, false
		}
		return s.broken("MAIL", &sendError{"MAIL", err}, false), false, false
	}
	// One reply per command sent, no more: anything beyond is the answer to
	// nothing we sent, however much it looks like the verdict on a message
	// not yet sent, and the replies we read may be shifted too. Not even
	// the body goes out.
	last := "DATA"
	if sent == 0 {
		last = "MAIL"
	}
	if err := s.inStep("after the reply to " + last); err != nil {
		return s.broken(last, err, false), false, false
	}
	if sent > 0 && r.Code == 354 && (mailRefused || accepted == 0) {
		// The server wants a message we will not send. RSET or QUIT
		// would only be message text now: end DATA with an empty body
		// (RFC 2920 3.1) and QUIT without waiting for the verdict on
		// it. The server has no recipient, so nothing is delivered.
		s.w.SetWriteDeadline(time.Now().Add(min(s.cfg.timeout, quitTimeout)))
		if _, err := s.w.Write([]byte(".\r\n")); err != nil {
			quit = false
		} else {
			quit = true
		}
		if mailRefused {
			return failed, quit, false
		}
		return s.givingUp(), quit, false
	}
	if mailRefused {
		return failed, true, false
	}
	if accepted == 0 {
		return s.givingUp(), true, false
	}
	if o, refused := s.dataRefused(r); refused {
		return o, true, false
	}
	return outcome{}, false, true
}

// writeRefused is the report of a recipient that SMTP cannot carry (a CR
// or LF in it, a domain part that would end the path): no RCPT is ever
// sent for it.
func writeRefused(why string) {
	report.Write(chain.Stdout, report.RcptPermanent, why)
}

// mailRefused maps the reply to MAIL: anything but 2xx ends the
// transaction, 5xx D, else Z.
func (s *session) mailRefused(r smtp.Reply) (outcome, bool) {
	switch r.Class() {
	case 2:
		return outcome{}, false
	case 5:
		return outcome{report.Permanent, "Connected to " + s.cfg.ip + " but sender was rejected.\n" + s.said(r)}, true
	default:
		return outcome{report.Temporary, "Connected to " + s.cfg.ip + " but sender was rejected.\n" + s.said(r)}, true
	}
}

// rcptReport writes the report of one RCPT reply and says whether the
// recipient was accepted: 2xx r, 5xx h, anything else s.
func (s *session) rcptReport(r smtp.Reply) bool {
	switch r.Class() {
	case 2:
		report.Write(chain.Stdout, report.RcptOK, "")
		return true
	case 5:
		report.Write(chain.Stdout, report.RcptPermanent, s.cfg.ip+" does not like recipient.\n"+s.said(r))
	default:
		report.Write(chain.Stdout, report.RcptTemporary, s.cfg.ip+" does not like recipient.\n"+s.said(r))
	}
	return false
}

// givingUp is the message report when no recipient was accepted (the
// recipient reports say why).
func (s *session) givingUp() outcome {
	return outcome{report.Permanent, "Giving up on " + s.cfg.ip + ".\n"}
}

// dataRefused maps the reply to DATA: 354 goes on, 5xx D, anything else
// Z.
func (s *session) dataRefused(r smtp.Reply) (outcome, bool) {
	switch {
	case r.Code == 354:
		return outcome{}, false
	case r.Class() == 5:
		return outcome{report.Permanent, s.cfg.ip + " failed on DATA command.\n" + s.said(r)}, true
	default:
		return outcome{report.Temporary, s.cfg.ip + " failed on DATA command.\n" + s.said(r)}, true
	}
}
