package qmailremoteroutes

import (
	"os"
	"path/filepath"
	"testing"
)

const pin = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// TestPolicyExported: the level of control/tlspolicy's line for the host,
// and its options, go to the later stages; no line, no variables, whatever
// the caller's environment held.
func TestPolicyExported(t *testing.T) {
	h := newHome(t, authRoutes)
	h.smtpauth(creds, 0o600)
	h.tlspolicy(".bank.test:verify match=mx.bank.test,.bank.test\npartner.test:encrypt pin=" + pin + "\n" +
		"mail.test:may\n:dane\nbroken.test:verfy\n")
	anchors := "QMAILREMOTE_TRUSTANCHORS=/etc/ssl/certs/ca-certificates.crt"
	stale := []string{anchors, "QMAILREMOTE_TLSPOLICY=none", "QMAILREMOTE_TLSMATCH=stale.test", "QMAILREMOTE_TLSPINS=00"}
	for _, tc := range []struct {
		host, level, match, pins string
	}{
		{"x.bank.test", "verify", "mx.bank.test .bank.test", ""},
		{"partner.test", "encrypt", "", pin},
		{"example.test", "dane", "", ""},
		// A route with credentials is at least verify.
		{"mail.test", "verify", "", ""},
	} {
		r := h.run(tc.host, stale...)
		if r.code != 0 || r.stderr != "" {
			t.Fatalf("%s: exit %d, stdout %q, stderr %q", tc.host, r.code, r.stdout, r.stderr)
		}
		v := vars(r.stdout)
		for name, want := range map[string]string{"QMAILREMOTE_TLSPOLICY": tc.level, "QMAILREMOTE_TLSMATCH": tc.match, "QMAILREMOTE_TLSPINS": tc.pins} {
			if got, ok := v[name]; got != want || ok != (want != "") {
				t.Errorf("%s: %s=%q (set %v), want %q", tc.host, name, got, ok, want)
			}
		}
	}
	// The malformed line decides broken.test only: its mail waits.
	zRun(t, h.run("broken.test", stale...), "Unable to read control files: control/tlspolicy line 5: unknown level \"verfy\" (none, may, encrypt, verify, dane, dane-only). (#4.3.0)\n")

	// No file: nothing exported, stale values removed.
	os.Remove(filepath.Join(h.home, "control", "tlspolicy"))
	v := vars(h.run("example.test", stale...).stdout)
	for _, name := range []string{"QMAILREMOTE_TLSPOLICY", "QMAILREMOTE_TLSMATCH", "QMAILREMOTE_TLSPINS"} {
		if got, ok := v[name]; ok {
			t.Errorf("without control/tlspolicy: %s=%q", name, got)
		}
	}
}

func (h *home) tlspolicy(text string) {
	h.t.Helper()
	if err := os.WriteFile(filepath.Join(h.home, "control", "tlspolicy"), []byte(text), 0o644); err != nil {
		h.t.Fatal(err)
	}
}
