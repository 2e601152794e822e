package qmailremotemtasts

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"qmail-remote-go/src/internal/mtasts"
	"qmail-remote-go/src/testkit/buildtest"
	"qmail-remote-go/src/testkit/dnstest"
	"qmail-remote-go/src/testkit/ststest"
	"qmail-remote-go/src/testkit/tlstest"
)

var dir string

func TestMain(m *testing.M) { buildtest.Main(m, &dir, nil) }

// testWorld: a qmail home with trust anchors, a DNS server with example.test's
// _mta-sts TXT record, and its policy server on 127.0.0.4 (HTTPS, a
// certificate from the test CA) serving whatever policy holds.
type testWorld struct {
	t    *testing.T
	home string
	env  []string
	web  *ststest.Server
}

func newTestWorld(t *testing.T) *testWorld {
	w := &testWorld{t: t, home: t.TempDir()}
	ca := tlstest.NewCA(t, "mtasts test CA")
	os.MkdirAll(filepath.Join(w.home, "control"), 0o755)
	os.WriteFile(filepath.Join(w.home, "control", "me"), []byte("client.test\n"), 0o644)
	os.WriteFile(filepath.Join(w.home, "control", "trustanchors"), []byte(tlstest.WriteBundle(t, t.TempDir(), ca)+"\n"), 0o644)
	d := dnstest.Start(t)
	d.Add(`_mta-sts.example.test. 60 IN TXT "v=STSv1; id=7"`, "mta-sts.example.test. 60 IN A 127.0.0.4")
	w.web = ststest.Start(t, ca, "127.0.0.4", "example.test", "version: STSv1\nmode: enforce\nmx: mx.example.test\nmax_age: 86400\n")
	port := w.web.Port
	w.env = []string{"PATH=/usr/bin:/bin", "QMAILREMOTE_QMAILHOME=" + w.home, "DNSCACHEIP=" + d.Addr(), "MTASTSPORT=" + port}
	return w
}

func (w *testWorld) run(args ...string) (stdout, stderr string, code int) {
	w.t.Helper()
	cmd := exec.Command(filepath.Join(dir, "qmail-remote-mtasts"), args...)
	cmd.Env = w.env
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute): // a backstop
		cmd.Process.Kill()
		w.t.Fatal("qmail-remote-mtasts did not end")
	}
	return o.String(), e.String(), cmd.ProcessState.ExitCode()
}

func (w *testWorld) cached() (mtasts.Entry, error) {
	return mtasts.Cache{Dir: filepath.Join(w.home, "run", "qmail-remote", "mta-sts")}.Get("example.test")
}

func TestRefresh(t *testing.T) {
	w := newTestWorld(t)
	// Nothing cached, no argument: nothing to do.
	if out, errs, code := w.run(); code != 0 || out != "" || errs != "" {
		t.Fatalf("empty cache: %q %q %d", out, errs, code)
	}
	// A domain named: fetched, cached.
	out, errs, code := w.run("Example.Test.")
	if code != 0 || !strings.HasPrefix(out, "example.test: fetched, id 7, mode enforce, mx mx.example.test, until ") || errs != "" {
		t.Fatalf("seed: %q %q %d", out, errs, code)
	}
	e, err := w.cached()
	if err != nil || e.ID != "7" || e.Policy.Mode != "enforce" {
		t.Fatalf("cache after the seed: %+v %v", e, err)
	}
	// No argument: every cached domain, fetched again.
	w.web.Policy.Store("version: STSv1\nmode: testing\nmx: mx.example.test\nmax_age: 600\n")
	out, _, code = w.run()
	if code != 0 || !strings.HasPrefix(out, "example.test: refreshed (same id), id 7, mode testing") {
		t.Fatalf("refresh: %q %d", out, code)
	}
	if e, err := w.cached(); err != nil || e.Policy.Mode != "testing" || e.Policy.MaxAge != 600 {
		t.Fatalf("cache after the refresh: %+v %v", e, err)
	}
	// -q: nothing on success.
	if out, errs, code := w.run("-q"); code != 0 || out != "" || errs != "" {
		t.Fatalf("-q: %q %q %d", out, errs, code)
	}
	// A fetch that fails keeps the cached policy, and says so: 111.
	w.web.Policy.Store("not a policy\n")
	out, errs, code = w.run("-q")
	if code != 111 || out != "" || !strings.Contains(errs, "example.test: the policy fetch failed: ") ||
		!strings.Contains(errs, "the cached policy (testing) stays until ") {
		t.Fatalf("failed fetch: %q %q %d", out, errs, code)
	}
	if e, err := w.cached(); err != nil || e.Policy.Mode != "testing" {
		t.Fatalf("the cached policy did not stay: %+v %v", e, err)
	}
	if n := w.web.Fetches.Load(); n != 4 {
		t.Errorf("%d fetches, want 4", n)
	}
}

func TestUsage(t *testing.T) {
	w := newTestWorld(t)
	for _, args := range [][]string{{"-x"}, {"a b"}, {"../etc"}} {
		if _, errs, code := w.run(args...); code != 100 || !strings.Contains(errs, "usage: qmail-remote-mtasts") {
			t.Errorf("%q: %q %d", args, errs, code)
		}
	}
	os.Remove(filepath.Join(w.home, "control", "trustanchors"))
	if _, errs, code := w.run(); code != 111 || !strings.Contains(errs, "control/trustanchors is not set") {
		t.Errorf("no trust anchors: %q %d", errs, code)
	}
}
