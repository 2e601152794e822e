package mtasts

import (
	"errors"
	"strings"
	"testing"
)

func TestParseTXT(t *testing.T) {
	for _, c := range []struct {
		name    string
		records []string
		id      string
		err     string // part of the error; "" for none
	}{
		{name: "RFC 8461 3.1 example", records: []string{"v=STSv1; id=20160831085700Z;"}, id: "20160831085700Z"},
		{name: "no blanks, no final ';'", records: []string{"v=STSv1;id=abc"}, id: "abc"},
		{name: "blanks", records: []string{"v=STSv1 \t;\t id=abc \t; "}, id: "abc"},
		{name: "extension fields", records: []string{"v=STSv1; foo=bar; id=X1; x.y_z-1=!#$%"}, id: "X1"},
		{name: "other records discarded", records: []string{"v=spf1 -all", "", "v=STSv1; id=a", "V=STSv1; id=b", "v=STSv10; id=c", " v=STSv1; id=d"}, id: "a"},
		{name: "id of 32", records: []string{"v=STSv1; id=" + strings.Repeat("Z", 32)}, id: strings.Repeat("Z", 32)},

		{name: "none", records: nil, err: ErrNoRecord.Error()},
		{name: "only others", records: []string{"v=spf1 -all", " v=STSv1; id=d"}, err: ErrNoRecord.Error()},
		{name: "two", records: []string{"v=STSv1; id=a", "v=STSv1; id=a"}, err: "2 MTA-STS TXT records (v=STSv1), not one"},
		{name: "no id", records: []string{"v=STSv1; foo=bar"}, err: "no id field"},
		{name: "nothing after the version", records: []string{"v=STSv1"}, err: "no id field"},
		{name: "no ';'", records: []string{"v=STSv1 id=abc"}, err: "no ';' after v=STSv1"},
		{name: "empty id", records: []string{"v=STSv1; id="}, err: `id "" is not 1 to 32 letters and digits`},
		{name: "id of 33", records: []string{"v=STSv1; id=" + strings.Repeat("Z", 33)}, err: "is not 1 to 32 letters and digits"},
		{name: "id with punctuation", records: []string{"v=STSv1; id=2016-08-31"}, err: `id "2016-08-31" is not`},
		{name: "id with a blank", records: []string{"v=STSv1; id=a b"}, err: `id "a b" is not`},
		{name: "id name case", records: []string{"v=STSv1; ID=abc"}, err: "no id field"},
		{name: "two ids", records: []string{"v=STSv1; id=a; id=b"}, err: "more than one id"},
		{name: "field without '='", records: []string{"v=STSv1; id=a; junk"}, err: `field "junk" is not key=value`},
	} {
		t.Run(c.name, func(t *testing.T) {
			id, err := ParseTXT(c.records)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) || id != "" {
					t.Fatalf("got %q, %v; want an error with %q", id, err, c.err)
				}
				if errors.Is(err, ErrNoRecord) != (c.err == ErrNoRecord.Error()) {
					t.Errorf("errors.Is(%v, ErrNoRecord) wrong", err)
				}
				return
			}
			if err != nil || id != c.id {
				t.Fatalf("got %q, %v; want %q", id, err, c.id)
			}
		})
	}
}
