package remotecontrol

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// home makes a qmail home with the given control files and changes into
// it, as qmail-remote does before Read.
func home(t *testing.T, files map[string]string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "control"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, "control", name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(dir)
}

func TestReadDefaults(t *testing.T) {
	home(t, map[string]string{"me": "mx.example.test\n"})
	c, err := Read()
	if err != nil {
		t.Fatal(err)
	}
	if c.HeloHost != "mx.example.test" || c.TimeoutConnect != 60 || c.TimeoutRemote != 1200 || c.TimeoutDNS != 0 || c.TLSStrictness != 0 {
		t.Fatalf("defaults: %+v", c)
	}
	env := map[string]string{}
	c.Env(func(k, v string) { env[k] = v })
	if env["QMAILREMOTE_HELOHOST"] != "mx.example.test" || env["QMAILREMOTE_TIMEOUTREMOTE"] != "1200" {
		t.Fatalf("Env: %v", env)
	}
	if env["QMAILREMOTE_MTASTS"] != "1" {
		t.Fatalf("MTA-STS is on by default: %v", env)
	}
	if _, ok := env["QMAILREMOTE_DNSSECRESOLVERS"]; ok {
		t.Fatalf("Env sets QMAILREMOTE_DNSSECRESOLVERS without control/dnssecresolvers: %v", env)
	}
	// 0.0.0.0 and :: are always this host (the loop rule).
	if ipme := " " + env["QMAILREMOTE_IPME"] + " "; !strings.Contains(ipme, " 0.0.0.0 ") || !strings.Contains(ipme, " :: ") {
		t.Fatalf("QMAILREMOTE_IPME=%q", env["QMAILREMOTE_IPME"])
	}
}

func TestReadEnv(t *testing.T) {
	home(t, map[string]string{
		"me":              "mx.example.test\n",
		"helohost":        "out.example.test\n",
		"ipme":            "192.0.2.9\n",
		"notipme":         "0.0.0.0\n",
		"dnssecresolvers": "192.0.2.53\n2001:db8::53\n",
		"timeoutdns":      "7\n",
		"mtasts":          "0\n",
	})
	c, err := Read()
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	c.Env(func(k, v string) { env[k] = v })
	ipme := " " + env["QMAILREMOTE_IPME"] + " "
	if _, on := env["QMAILREMOTE_MTASTS"]; on {
		t.Fatalf("control/mtasts is 0, but Env sets QMAILREMOTE_MTASTS: %v", env)
	}
	if env["QMAILREMOTE_HELOHOST"] != "out.example.test" || env["QMAILREMOTE_TIMEOUTDNS"] != "7" ||
		env["QMAILREMOTE_DNSSECRESOLVERS"] != "192.0.2.53 2001:db8::53" ||
		!strings.Contains(ipme, " 192.0.2.9 ") || strings.Contains(ipme, " 0.0.0.0 ") {
		t.Fatalf("Env: %v", env)
	}
}

// TestReadErrors: what makes every delivery a Z, each naming the file.
func TestReadErrors(t *testing.T) {
	for _, c := range []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"no name", map[string]string{}, "neither control/me nor control/helohost"},
		{"bad timeout", map[string]string{"me": "a.test\n", "timeoutremote": "0\n"}, "control/timeoutremote"},
		{"bad mtasts", map[string]string{"me": "a.test\n", "mtasts": "yes\n"}, "control/mtasts"},
		{"bad resolver", map[string]string{"me": "a.test\n", "dnssecresolvers": "resolver.test\n"}, "control/dnssecresolvers"},
		{"cert without key", map[string]string{"me": "a.test\n", "clientcert": "/nonexistent/cert.pem\n"}, "control/clientcert is set but control/clientkey is not"},
		{"missing anchors file", map[string]string{"me": "a.test\n", "trustanchors": "/nonexistent/ca.pem\n"}, "control/trustanchors names /nonexistent/ca.pem"},
		{"strictness 2 without anchors", map[string]string{"me": "a.test\n", "tlsstrictness": "2\n"}, "control/tlsstrictness is 2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			home(t, c.files)
			_, err := Read()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Read: %v, want an error with %q", err, c.want)
			}
		})
	}
}

func TestLocations(t *testing.T) {
	t.Setenv("QMAILREMOTE_QMAILHOME", "/var/qmail/")
	t.Setenv("QMAILREMOTE_LIBEXECDIR", "/usr/libexec/qmail-remote")
	h, _, l, err := Locations()
	if err != nil || h != "/var/qmail" || l != "/usr/libexec/qmail-remote" {
		t.Fatalf("Locations: %q %q %v", h, l, err)
	}
	t.Setenv("QMAILREMOTE_QMAILHOME", "var/qmail")
	if _, _, _, err := Locations(); err == nil || !strings.Contains(err.Error(), "not an absolute path") {
		t.Fatalf("a relative home: %v", err)
	}
}
