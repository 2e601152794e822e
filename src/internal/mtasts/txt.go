package mtasts

import (
	"errors"
	"fmt"
	"strings"
)

// ErrNoRecord is ParseTXT's error when none of the TXT records is an
// MTA-STS record: the domain has no policy to look for.
var ErrNoRecord = errors.New("no MTA-STS TXT record (v=STSv1)")

// txtVersion begins every MTA-STS TXT record (RFC 8461 3.1).
const txtVersion = "v=STSv1"

// maxID is the longest policy id (RFC 8461 3.1: 1*32(ALPHA / DIGIT)).
const maxID = 32

// ParseTXT finds the policy id in the TXT records of _mta-sts.DOMAIN
// (RFC 8461 3.1), each record's strings already joined. Records that do
// not begin with "v=STSv1" followed by ';', a blank or their end are not
// MTA-STS records; without any, the error is ErrNoRecord. More than one,
// or one that is malformed, is an error too: RFC 8461 3.1 says the domain
// then has no available policy. Fields are "key=value", separated by ';'
// with optional blanks; id (1 to 32 letters and digits) is required,
// other fields are extensions and are ignored.
func ParseTXT(records []string) (id string, err error) {
	var record string
	n := 0
	for _, r := range records {
		if rest, ok := strings.CutPrefix(r, txtVersion); ok && (rest == "" || rest[0] == ';' || rest[0] == ' ' || rest[0] == '\t') {
			record = r
			n++
		}
	}
	switch {
	case n == 0:
		return "", ErrNoRecord
	case n > 1:
		return "", fmt.Errorf("%d MTA-STS TXT records (v=STSv1), not one", n)
	}
	fail := func(format string, a ...any) (string, error) {
		return "", fmt.Errorf("MTA-STS TXT record %.200q: %s", record, fmt.Sprintf(format, a...))
	}
	fields := strings.Split(record[len(txtVersion):], ";")
	if strings.Trim(fields[0], " \t") != "" {
		return fail("no ';' after %s", txtVersion)
	}
	found := false
	for _, f := range fields[1:] {
		f = strings.Trim(f, " \t")
		if f == "" {
			// The grammar allows a ';' at the end only; an empty field
			// elsewhere is as harmless.
			continue
		}
		key, value, ok := strings.Cut(f, "=")
		if !ok || key == "" {
			return fail("field %.40q is not key=value", f)
		}
		if key != "id" {
			continue
		}
		if found {
			return fail("more than one id")
		}
		if !validID(value) {
			return fail("id %.40q is not 1 to %d letters and digits", value, maxID)
		}
		id, found = value, true
	}
	if !found {
		return fail("no id field")
	}
	return id, nil
}

// validID says whether id is 1*32(ALPHA / DIGIT).
func validID(id string) bool {
	if id == "" || len(id) > maxID {
		return false
	}
	for i := 0; i < len(id); i++ {
		if b := id[i]; !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9') {
			return false
		}
	}
	return true
}
