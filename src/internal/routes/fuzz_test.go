package routes

import (
	"strings"
	"testing"

	"qmail-remote-go/src/internal/ctlcdb"
)

// FuzzParse: the parser never panics, and any table it accepts compiles
// into a cdb that answers every lookup exactly as the table does.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"a.test:r.test\n",
		"inside.af.mil:firewall.af.mil:26\n.af.mil:\n:heaven.af.mil\n",
		"[192.0.2.1]:[2001:db8::7]:2525\n[IPv6:2001:db8::1]:192.0.2.7\n",
		"# c\n\n x:y\n",
		"a:b:99999\n",
		"a:[::ffff:192.0.2.1]\r\n",
		"A.TEST:R.TEST\na.test:s.test:1\n",
		"::\n",
		"x:[IPv6:2001:db8::1]junk\n",
	} {
		f.Add([]byte(s), "x.a.test")
	}
	f.Fuzz(func(t *testing.T, text []byte, host string) {
		tb, err := Parse(text)
		if err != nil {
			if _, ok := err.(*SyntaxError); !ok {
				t.Fatalf("error of type %T", err)
			}
			return
		}
		b, err := compiled.EncodeDB(tb.routes, nil, ctlcdb.Stamp{Size: int64(len(text))})
		if err != nil {
			t.Fatal(err)
		}
		hosts := []string{host, strings.ToUpper(host), "[192.0.2.1]", "[IPv6:2001:db8::1]"}
		for k := range tb.routes {
			hosts = append(hosts, k, "x"+k, "y."+k)
		}
		for _, h := range hosts {
			if r, want := dbLookup(t, b, h), tb.Lookup(h); r != want {
				t.Fatalf("lookup %q: cdb %+v, table %+v", h, r, want)
			}
		}
	})
}
