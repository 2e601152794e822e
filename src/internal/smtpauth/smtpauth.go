// Package smtpauth reads control/smtpauth, the credentials for smarthosts
// that want SMTP AUTH (RFC 4954). It is a file of its own, apart from
// control/smtproutes, so that the routes keep their stock syntax and stay
// world-readable while the passwords are readable by the qmailr user only.
//
// Each line is
//
//	[<sender>:]relay:port:method:user:password
//
// relay is spelled as in smtproutes (a host name, or an address literal
// "[192.0.2.7]", "[2001:db8::7]", "[IPv6:2001:db8::7]"; a bare IPv4
// address means its literal), port is decimal 1-65535, method is
// "starttls" (RFC 3207, usually port 587) or "smtps" (implicit TLS, RFC
// 8314, usually port 465), user holds no ':', and password is the rest of
// the line, ':' included. Empty lines and lines starting with '#' are
// skipped; trailing spaces, tabs and CRs are stripped (qmail-control(5)),
// so a password cannot end in white space. A line that starts with a
// sender key in angle brackets (package senders: <user@example.org>,
// <@example.org>, <.example.org>, <>, <#@[]>) holds that sender's
// credentials for the relay and port, used before the relay's own.
//
// Error texts never quote the file: any part of a line may be a password.
// They say the line number and what is wrong, nothing more.
package smtpauth

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"qmail-remote-go/src/internal/addrlit"
	"qmail-remote-go/src/internal/control"
	"qmail-remote-go/src/internal/regular"
	"qmail-remote-go/src/internal/senders"

	"qmail-remote-go/src/internal/say"
)

// File is the file's name as the administrator knows it, relative to the
// qmail home. Error texts use it.
const File = "control/smtpauth"

// Methods: how the TLS session that carries the password starts.
const (
	StartTLS = "starttls" // cleartext greeting and EHLO, then STARTTLS (RFC 3207)
	SMTPS    = "smtps"    // TLS from the first byte (RFC 8314 3.3)
)

// Limits against runaway files.
const (
	MaxLine = 1024    // bytes per line, before trailing blanks are stripped
	MaxText = 1 << 20 // bytes of the whole file
)

// Entry is the credentials for one relay and port.
type Entry struct {
	Method   string // StartTLS or SMTPS
	User     string
	Password string
}

// Table is a parsed file: "relay:port" (relay canonical) to its entry,
// and sender + NUL + "relay:port" (sender key canonical) to a sender's.
type Table struct {
	entries map[string]Entry
}

// Len returns the number of entries.
func (t *Table) Len() int { return len(t.entries) }

// Lookup finds the relay's own entry for relay (as in smtproutes, any
// case) and port.
func (t *Table) Lookup(relay string, port int) (Entry, bool) {
	e, _, found := t.Find([]string{""}, relay, port)
	return e, found
}

// Find tries the entries of relay and port under each sender key of
// keys in order ("" is the relay's own entry), and returns the first
// found and its key.
func (t *Table) Find(keys []string, relay string, port int) (e Entry, key string, found bool) {
	r, ok := CanonicalRelay(relay)
	if !ok {
		return Entry{}, "", false
	}
	for _, k := range keys {
		if e, found = t.entries[entryKey(k, r, port)]; found {
			return e, k, true
		}
	}
	return Entry{}, "", false
}

// entryKey is a table key: the relay's own entry when sender is "".
func entryKey(sender, relay string, port int) string {
	k := relay + ":" + strconv.Itoa(port)
	if sender != "" {
		k = sender + "\x00" + k
	}
	return k
}

// SyntaxError is a problem in the text. Line is 1-based; 0 means the file
// as a whole. Reason never holds text from the file.
type SyntaxError struct {
	Line   int
	Reason string
}

func (e *SyntaxError) Error() string {
	if e.Line == 0 {
		return File + ": " + e.Reason
	}
	return fmt.Sprintf("%s line %d: %s", File, e.Line, e.Reason)
}

// FileError is a file that exists but must not or cannot be used.
type FileError struct {
	Reason string
	Err    error // the system error, if any
}

func (e *FileError) Error() string { return File + " " + e.Reason }
func (e *FileError) Unwrap() error { return e.Err }

// The reasons of SyntaxError. They are fixed texts on purpose: nothing of
// a line can leak through them (the fuzz test checks it).
const (
	reasonTooLarge    = "is larger than 1048576 bytes"
	reasonLongLine    = "line longer than 1024 bytes"
	reasonControl     = "control character in the line"
	reasonFields      = "fewer than 5 fields (relay:port:method:user:password)"
	reasonLiteral     = "bad address literal in the relay"
	reasonAfterLit    = "no ':' right after the relay's address literal"
	reasonRelay       = "bad relay: not a host name, an IPv4 address or an address literal"
	reasonRelayIPv6   = "an IPv6 relay must be written in brackets"
	reasonEmptyRelay  = "empty relay (credentials need a relay, as in smtproutes)"
	reasonPort        = "bad port: not a number from 1 to 65535"
	reasonMethod      = "bad method: not starttls or smtps"
	reasonEmptyUser   = "empty user"
	reasonEmptyPasswd = "empty password"
	reasonSender      = "bad sender in angle brackets (<user@domain>, <@domain>, <.domain>, <> or <#@[]>, then ':')"
)

// Reasons lists every Reason a SyntaxError can have (for tests).
var Reasons = []string{reasonTooLarge, reasonLongLine, reasonControl, reasonFields, reasonLiteral,
	reasonAfterLit, reasonRelay, reasonRelayIPv6, reasonEmptyRelay, reasonPort, reasonMethod,
	reasonEmptyUser, reasonEmptyPasswd, reasonSender}

// Parse reads the text of control/smtpauth. When a relay and port (for
// one sender) come twice the last line wins, as in smtproutes.
func Parse(text []byte) (*Table, error) {
	if len(text) > MaxText {
		return nil, &SyntaxError{0, reasonTooLarge}
	}
	t := &Table{entries: make(map[string]Entry)}
	for l := range control.Lines(text, MaxLine) {
		if l.TooLong {
			return nil, &SyntaxError{l.N, reasonLongLine}
		}
		k, e, reason := parseLine(l.Text)
		if reason != "" {
			return nil, &SyntaxError{l.N, reason}
		}
		t.entries[k] = e
	}
	return t, nil
}

// parseLine parses one non-empty, non-comment line. The relay's literal is
// parsed before ':' is looked for, since IPv6 literals hold ':'.
//
//	line     = [ "<" sender ">:" ] relay ":" port ":" method ":" user ":" password
//	relay    = name | ipv4 | "[" addr "]"
//	password = the rest of the line (':' allowed)
func parseLine(line string) (k string, e Entry, reason string) {
	for i := 0; i < len(line); i++ {
		// A NUL would cut an AUTH PLAIN response short, a CR or LF
		// would end its command line: no credentials hold them.
		if c := line[i]; c < 0x20 || c == 0x7f {
			return "", e, reasonControl
		}
	}
	sender := ""
	if strings.HasPrefix(line, "<") {
		// Fixed reason: the sender's text is not quoted either.
		var reason string
		if sender, line, reason = senders.Split(line, false, false); reason != "" {
			return "", e, reasonSender
		}
	}
	var relay, rest string
	if strings.HasPrefix(line, "[") {
		end := strings.IndexByte(line, ']')
		if end < 0 {
			return "", e, reasonLiteral
		}
		a, ok := addrlit.Parse(line[:end+1])
		if !ok {
			return "", e, reasonLiteral
		}
		relay, rest = addrlit.Canonical(a), line[end+1:]
		if !strings.HasPrefix(rest, ":") {
			return "", e, reasonAfterLit
		}
		rest = rest[1:]
	} else {
		i := strings.IndexByte(line, ':')
		if i < 0 {
			return "", e, reasonFields
		}
		if i == 0 {
			return "", e, reasonEmptyRelay
		}
		var ok bool
		if relay, ok = relayName(line[:i]); !ok {
			if looksIPv6(line[:i]) {
				return "", e, reasonRelayIPv6
			}
			return "", e, reasonRelay
		}
		rest = line[i+1:]
	}
	f := strings.SplitN(rest, ":", 4)
	if len(f) < 4 {
		return "", e, reasonFields
	}
	port, ok := parsePort(f[0])
	if !ok {
		return "", e, reasonPort
	}
	switch strings.ToLower(f[1]) {
	case StartTLS:
		e.Method = StartTLS
	case SMTPS:
		e.Method = SMTPS
	default:
		return "", e, reasonMethod
	}
	if e.User = f[2]; e.User == "" {
		return "", e, reasonEmptyUser
	}
	if e.Password = f[3]; e.Password == "" {
		return "", e, reasonEmptyPasswd
	}
	return entryKey(sender, relay, port), e, ""
}

// looksIPv6 says whether the first field of a line that is no relay
// name looks like the start of an unbracketed IPv6 address ("2001" of
// "2001:db8::7:587:..."), to give the admin the useful hint.
func looksIPv6(first string) bool {
	if len(first) > 4 {
		return false
	}
	for i := 0; i < len(first); i++ {
		c := first[i] | 0x20
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// CanonicalRelay returns the spelling relays are matched by: host names
// lower case without a trailing dot, bare IPv4 addresses and literals as
// "[" + canonical address + "]" (the smtproutes rules). ok is false for
// anything else.
func CanonicalRelay(s string) (string, bool) {
	if strings.HasPrefix(s, "[") {
		a, ok := addrlit.Parse(s)
		if !ok {
			return "", false
		}
		return addrlit.Canonical(a), true
	}
	return relayName(s)
}

// relayName checks a host name or bare IPv4 address (the characters
// smtproutes accepts).
func relayName(s string) (string, bool) {
	if s == "" {
		return "", false
	}
	b := []byte(s)
	allDigits := true
	for i, c := range b {
		switch {
		case c >= 'A' && c <= 'Z':
			b[i] = c + 'a' - 'A'
			allDigits = false
		case c >= '0' && c <= '9', c == '.':
		case c >= 'a' && c <= 'z', c == '-', c == '_':
			allDigits = false
		default:
			return "", false
		}
	}
	s = string(b)
	if allDigits {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() {
			return "", false
		}
		return addrlit.Canonical(a), true
	}
	name := strings.TrimSuffix(s, ".")
	if len(name) > 253 {
		return "", false
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return "", false
		}
	}
	return name, true
}

// parsePort accepts decimal 1 to 65535 (leading zeros allowed, no sign).
func parsePort(s string) (int, bool) {
	if s == "" || len(s) > 5 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	p, _ := strconv.Atoi(s)
	return p, p >= 1 && p <= 65535
}

// Lookup reads QMAILHOME/control/smtpauth and finds the credentials for
// relay and port under the first of keys that has some (Find; "" is the
// relay's own entry). A missing file means no credentials at all. The
// error is a *SyntaxError or a *FileError: either way the mail must wait
// until the admin fixes the file.
func Lookup(qmailHome string, keys []string, relay string, port int) (e Entry, key string, found bool, err error) {
	t, err := Read(qmailHome)
	if err != nil || t == nil {
		return Entry{}, "", false, err
	}
	e, key, found = t.Find(keys, relay, port)
	return e, key, found, nil
}

// SenderKeys lists the keys a delivery from sender tries: the sender's
// own (package senders), then the relay's entry. known false (a stage run
// by hand without a sender): the relay's entry only.
func SenderKeys(sender string, known bool) []string {
	if !known {
		return []string{""}
	}
	return append(senders.Keys(sender), "")
}

// Read reads and parses the file; nil and no error when it does not exist.
// The file is opened without blocking (a FIFO in its place must not hang
// the delivery) and must be a regular file that only its owner, root or
// the user we run as, may write and that not everyone may read; see
// check. What is checked is the open file (fstat): after a symlink, its
// target.
//
// The process becomes non-dumpable first: no core file can hold the
// passwords, whatever GOTRACEBACK or the system's core settings say, and no
// other process of the same user may ptrace it or read its memory. exec(2)
// undoes that, along with the memory that held them; every program that
// reads the file goes through here.
func Read(qmailHome string) (*Table, error) {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return nil, &FileError{"cannot be read safely: the process cannot make itself non-dumpable: " + err.Error(), err}
	}
	f, err := regular.Open(filepath.Join(qmailHome, File))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if errors.Is(err, regular.ErrNotRegular) {
		return nil, &FileError{"is " + say.Err(err) + "; replace it with a regular file (chmod 600, owned by qmailr)", err}
	}
	if err != nil {
		return nil, &FileError{"cannot be opened: " + say.Err(err), err}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, &FileError{"cannot be examined: " + say.Err(err), err}
	}
	if err := check(fi, os.Geteuid()); err != nil {
		return nil, err
	}
	text, err := io.ReadAll(io.LimitReader(f, MaxText+1))
	if err != nil {
		return nil, &FileError{"cannot be read: " + say.Err(err), err}
	}
	return Parse(text)
}

// check refuses a file whose passwords are not under the control of the
// admin and of qmail-remote alone: owned by anyone but root or euid (the
// user qmail-remote runs as, qmailr under qmail-rspawn), writable by its
// group or by everyone (who could then change where and as whom the mail
// authenticates), or readable by everyone (the passwords are no secret any
// more). Using such a file would hide the problem; the mail waits instead.
// The texts name the file and the fix, never its content.
func check(fi fs.FileInfo, euid int) *FileError {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 && int(st.Uid) != euid {
		return &FileError{fmt.Sprintf("is owned by uid %d, neither root nor the user qmail-remote runs as; chown qmailr %s (it holds passwords)", st.Uid, File), nil}
	}
	switch perm := fi.Mode().Perm(); {
	case perm&0o002 != 0:
		return &FileError{"is writable by everyone; chmod go-w " + File + " (it holds passwords)", nil}
	case perm&0o020 != 0:
		return &FileError{"is writable by its group; chmod go-w " + File + " (it holds passwords)", nil}
	case perm&0o004 != 0:
		return &FileError{"is readable by everyone; chmod o-r " + File + " (it holds passwords)", nil}
	}
	return nil
}
