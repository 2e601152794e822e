// Package control reads qmail control files the way qmail-control(5)
// describes: single-value files use their first line, with trailing spaces,
// tabs, CR and newline stripped; list files skip empty lines and comment
// lines starting with '#'. A missing file means the default. Unlike stock
// qmail, a file that exists but cannot be read, or holds garbage where a
// number or an address is expected, is an error naming the file, never a
// silent default: a typo in control/timeoutremote must make mail wait, not
// change behaviour behind the administrator's back.
package control

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"strconv"
	"strings"

	"qmail-remote-go/src/internal/regular"

	"qmail-remote-go/src/internal/say"
)

// MaxFile bounds how much of a control file is read: control files are a
// few bytes, and a runaway file (e.g. a log written to the wrong path) must
// not exhaust memory.
const MaxFile = 1 << 20

// Error is a problem with one control file. Its text names the file.
type Error struct {
	File   string // e.g. "control/timeoutremote"
	Reason string
}

func (e *Error) Error() string { return e.File + " " + e.Reason }

// read returns the file's content, found=false if it does not exist. The
// file is opened without blocking and must be a regular file: a FIFO in
// place of a control file would otherwise hang every delivery in open(2),
// and a device could feed it garbage forever.
func read(path string) (data []byte, found bool, err error) {
	f, err := regular.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if errors.Is(err, regular.ErrNotRegular) {
		return nil, true, &Error{path, "is " + say.Err(err)}
	}
	if err != nil {
		return nil, true, &Error{path, "cannot be opened: " + say.Err(err)}
	}
	defer f.Close()
	data, err = io.ReadAll(io.LimitReader(f, MaxFile+1))
	if err != nil {
		return nil, true, &Error{path, "cannot be read: " + say.Err(err)}
	}
	if len(data) > MaxFile {
		return nil, true, &Error{path, fmt.Sprintf("is larger than %d bytes", MaxFile)}
	}
	return data, true, nil
}

func trimLine(s []byte) string {
	return string(bytes.TrimRight(s, " \t\r\n"))
}

// Line returns the first line of a single-value file, trailing blanks
// stripped. found is false when the file does not exist.
func Line(path string) (value string, found bool, err error) {
	data, found, err := read(path)
	if err != nil || !found {
		return "", found, err
	}
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		data = data[:i]
	}
	return trimLine(data), true, nil
}

// List returns the lines of a list file, without empty lines and comments.
func List(path string) ([]string, error) {
	data, found, err := read(path)
	if err != nil || !found {
		return nil, err
	}
	var out []string
	for _, l := range bytes.Split(data, []byte("\n")) {
		s := trimLine(l)
		if s == "" || s[0] == '#' {
			continue
		}
		out = append(out, s)
	}
	return out, nil
}

// Int reads a number from a single-value file: missing or empty means def;
// anything but decimal digits, or a value outside [min, max], is an error.
func Int(path string, def, min, max int64) (int64, error) {
	s, found, err := Line(path)
	if err != nil {
		return 0, err
	}
	if !found || s == "" {
		return def, nil
	}
	n, perr := strconv.ParseInt(s, 10, 64)
	if perr != nil || s[0] == '+' || s[0] == '-' && min >= 0 || n < min || n > max {
		return 0, &Error{path, fmt.Sprintf("must hold a number from %d to %d, not %q", min, max, say.Clip(s, 60))}
	}
	return n, nil
}

// Name reads a host name from a single-value file (me, helohost): missing or
// empty gives found=false. Bytes that could break the SMTP command line it
// goes into (spaces, control characters) are an error.
func Name(path string) (string, bool, error) {
	s, found, err := Line(path)
	if err != nil || !found || s == "" {
		return "", false, err
	}
	if i := strings.IndexFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }); i >= 0 {
		return "", true, &Error{path, fmt.Sprintf("holds %q, which is not a host name", say.Clip(s, 60))}
	}
	return s, true, nil
}

// Path reads a file path from a single-value file (trustanchors,
// clientcert, clientkey): missing or empty gives "".
func Path(path string) (string, error) {
	s, _, err := Line(path)
	if err != nil {
		return "", err
	}
	if strings.ContainsAny(s, "\x00\n") {
		return "", &Error{path, "holds a control character"}
	}
	return s, nil
}

// Addrs reads a list of IPv4/IPv6 addresses (ipme, notipme), canonical and
// with IPv4-mapped addresses unmapped.
func Addrs(path string) ([]netip.Addr, error) {
	lines, err := List(path)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, l := range lines {
		a, perr := netip.ParseAddr(l)
		if perr != nil || a.Zone() != "" {
			return nil, &Error{path, fmt.Sprintf("holds %q, which is not an IP address", say.Clip(l, 60))}
		}
		out = append(out, a.Unmap())
	}
	return out, nil
}
