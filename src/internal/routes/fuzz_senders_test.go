package routes

import (
	"strings"
	"testing"

	"qmail-remote-go/src/internal/ctlcdb"
	"qmail-remote-go/src/internal/senders"
)

// FuzzParseSenders: control/senderroutes' parser never panics; every
// line it accepts can match some sender (a key no sender has would be a
// typo ignored in silence); and the compiled cdb answers every lookup
// exactly as the table does.
func FuzzParseSenders(f *testing.F) {
	for _, s := range []string{
		"@example.org:smtp.example.net:587\n",
		"alice@example.org:[192.0.2.7]\n<>:relay.example.net\n<#@[]>:\n",
		".example.org:r.test\nno@a.example.org:\n",
		"<user@[IPv6:2001:db8::1]>:[2001:db8::7]:2525\n",
		"user@[IPv6:2001:db8::1]:r.test\n",
		":relay\n",
		"@x:\n@X:r\n",
		".@00:\n",
	} {
		f.Add([]byte(s), "someone@a.example.org")
	}
	f.Fuzz(func(t *testing.T, text []byte, sender string) {
		tb, err := parseSenders(text)
		if err != nil {
			if err.File != SenderFile || err.Reason == "" {
				t.Fatalf("bad error %+v", err)
			}
			return
		}
		b, encErr := senderCompiled.EncodeDB(tb, nil, ctlcdb.Stamp{Size: int64(len(text))})
		if encErr != nil {
			t.Fatal(encErr)
		}
		d, encErr := senderCompiled.OpenDB(b)
		if encErr != nil {
			t.Fatalf("own cdb refused: %v", encErr)
		}
		probes := []string{sender, strings.ToUpper(sender), "", senders.DoubleBounceSender}
		for k := range tb {
			s := reachable(k)
			if s == nil {
				t.Fatalf("key %q: no sender has it", k)
			}
			probes = append(probes, *s)
		}
		for _, s := range probes {
			want := ctlcdb.First(tb, senders.Keys(s))
			got, err := d.Lookup(s)
			if err != nil || got != want {
				t.Fatalf("lookup %q: cdb %+v %v, table %+v", s, got, err, want)
			}
		}
	})
}

// reachable returns a sender that key matches, nil if there is none.
func reachable(key string) *string {
	var s string
	switch {
	case key == senders.Bounce:
		s = ""
	case key == senders.DoubleBounce:
		s = senders.DoubleBounceSender
	case strings.HasPrefix(key, "@"):
		s = "x" + key
	case strings.HasPrefix(key, "."):
		s = "x@x" + key
	default:
		s = key
	}
	for _, k := range senders.Keys(s) {
		if k == key {
			return &s
		}
	}
	return nil
}
