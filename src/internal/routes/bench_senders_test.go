package routes

import (
	"bytes"
	"fmt"
	"testing"

	"qmail-remote-go/src/testkit/ctlcdbtest"
)

// BenchmarkLookupSender: a delivery's senderroutes lookup in a table of
// 1000 sender domains (each delivery from a sender makes one).
func BenchmarkLookupSender(b *testing.B) {
	ctlcdbtest.Set(b, &senderCompiled.RacyWindow, 0)
	var text bytes.Buffer
	for i := 0; i < 1000; i++ {
		fmt.Fprintf(&text, "@d%d.example.org:relay%d.example.net:587\n", i, i)
	}
	ctlcdbtest.BenchLookup(b, "senderroutes", text.String(), CompileSenders, func(home, run string) error {
		r, err := LookupSender(home, run, "alice@d500.example.org")
		if err == nil && r.Relay != "relay500.example.net" {
			err = fmt.Errorf("got %+v", r)
		}
		return err
	})
}

// BenchmarkLookupSenderNoFile: the cost when there is no senderroutes,
// which every delivery pays.
func BenchmarkLookupSenderNoFile(b *testing.B) {
	home, run := ctlcdbtest.Home(b, "smtproutes", "")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if r, err := LookupSender(home, run, "alice@example.org"); err != nil || r.Found {
			b.Fatal(r, err)
		}
	}
}
