package tlspolicy

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"qmail-remote-go/src/internal/ctlcdb"
)

// FuzzParse: the parser never panics, its errors are file-wide
// *SyntaxErrors, and any table it returns, poisoned keys included,
// compiles into a cdb that answers every lookup exactly as the table does.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"bank.example:verify match=mx.bank.example,.bank.example\n",
		"partner.test:encrypt pin=" + pinA + "," + pinB + "\n:dane\n",
		"[192.0.2.1]:none\n[IPv6:2001:db8::1]:may\n",
		"a.test:verfy\n.test:dane-only\n",
		"a.test:may\nA.TEST:none\n",
		"# c\n\n x:may\n",
		"nocolon\n",
		"a:verify match=*.x\tpin=00\r\n",
		"*.x:may\n",
	} {
		f.Add([]byte(s), "x.a.test")
	}
	f.Fuzz(func(t *testing.T, text []byte, host string) {
		tb, err := Parse(text)
		if err != nil {
			if se, ok := err.(*SyntaxError); !ok || se.File != File {
				t.Fatalf("error %T %v", err, err)
			}
			return
		}
		for k, e := range tb.entries {
			if got, ok := unmarshal(marshal(e)); !ok || !reflect.DeepEqual(got, e) {
				t.Fatalf("key %q: %+v does not survive the cdb: %+v", k, e, got)
			}
		}
		b, err := compiled.EncodeDB(tb.entries, nil, ctlcdb.Stamp{Size: int64(len(text))})
		if err != nil {
			t.Fatal(err)
		}
		hosts := []string{host, strings.ToUpper(host), "[192.0.2.1]", "[IPv6:2001:db8::1]"}
		for k := range tb.entries {
			hosts = append(hosts, k, "x"+k, "y."+k)
		}
		for _, h := range hosts {
			p, err := dbLookup(t, b, h)
			wp, werr := tb.Lookup(h)
			if !reflect.DeepEqual(p, wp) || fmt.Sprint(err) != fmt.Sprint(werr) {
				t.Fatalf("lookup %q: cdb %+v %v, table %+v %v", h, p, err, wp, werr)
			}
		}
	})
}
