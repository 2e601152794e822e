package chaintest

// Files that must be regular files:
// open(2) of a FIFO with no writer blocks forever, so a FIFO put in place
// of a control file, control/smtpauth, smtproutes.cdb or a file that
// trustanchors, clientcert or clientkey names would hang every delivery.
// Each must be a Z naming the file; a FIFO in place of a file the chain
// only writes for itself (the compile lock, tcpto) must not even stop the
// delivery. Nothing here waits on a clock: a regression hangs until the
// harness kills qmail-remote (60 s) and fails the case.

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"qmail-remote-go/src/testkit/smtptest"
	"qmail-remote-go/src/testkit/tlstest"
)

// fifoHome is a qmail home that delivers example.test to srv, with a
// relay route (so that control/smtpauth is read), a compiled
// smtproutes.cdb, and control/clientcert and clientkey naming a real key
// pair (so that qmail-remote opens them).
func fifoHome(t *testing.T, srv *smtptest.Server) *home {
	t.Helper()
	h := newHome(t)
	route(h, srv)
	cert, key := tlstest.WriteKeyPair(t, t.TempDir(), "client", testCA.Issue(t, tlstest.Leaf{Client: true}))
	h.control("clientcert", cert+"\n")
	h.control("clientkey", key+"\n")
	// A first delivery compiles smtproutes.cdb and proves the home works.
	h.run(sample, "example.test", "a@b", "c@d").expect(t, 'K')
	return h
}

// replace puts a FIFO, a directory or a symlink to a device at path,
// instead of whatever was there.
func replace(t *testing.T, path, kind string) {
	t.Helper()
	if err := os.RemoveAll(path); err != nil {
		t.Fatal(err)
	}
	var err error
	switch kind {
	case "fifo":
		err = syscall.Mkfifo(path, 0o600)
	case "dir":
		err = os.Mkdir(path, 0o700)
	default: // a device
		err = os.Symlink(kind, path)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// controlPath reads the path a control file names.
func controlPath(t *testing.T, h *home, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(h.dir, "control", name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestNotRegularFiles(t *testing.T) {
	srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{})
	kindText := map[string]string{"fifo": "(a FIFO)", "dir": "(a directory)", "/dev/null": "(a character device)", "/dev/zero": "(a character device)"}
	type target func(t *testing.T, h *home) (path, named string)
	ctl := func(name string) target {
		return func(t *testing.T, h *home) (string, string) {
			return filepath.Join(h.dir, "control", name), "control/" + name
		}
	}
	named := func(name string) target {
		return func(t *testing.T, h *home) (string, string) {
			p := controlPath(t, h, name)
			return p, p
		}
	}
	cdb := func(t *testing.T, h *home) (string, string) {
		p := filepath.Join(h.dir, "run", "qmail-remote", "smtproutes.cdb")
		return p, p
	}
	anchorsAt := func(suffix string) target {
		return func(t *testing.T, h *home) (string, string) {
			p := filepath.Join(t.TempDir(), "anchors")
			h.control("trustanchors", p+suffix+"\n")
			return p, p
		}
	}
	tests := []struct {
		name   string
		target target
		kind   string // "fifo", "dir", or the device a symlink points to
	}{
		{"me FIFO", ctl("me"), "fifo"},
		{"helohost FIFO", ctl("helohost"), "fifo"},
		{"timeoutconnect FIFO", ctl("timeoutconnect"), "fifo"},
		{"timeoutremote FIFO", ctl("timeoutremote"), "fifo"},
		{"timeoutdns FIFO", ctl("timeoutdns"), "fifo"},
		{"ipme FIFO", ctl("ipme"), "fifo"},
		{"notipme FIFO", ctl("notipme"), "fifo"},
		{"tlsstrictness FIFO", ctl("tlsstrictness"), "fifo"},
		{"trustanchors FIFO", ctl("trustanchors"), "fifo"},
		{"clientcert FIFO", ctl("clientcert"), "fifo"},
		{"clientkey FIFO", ctl("clientkey"), "fifo"},
		{"smtproutes FIFO", ctl("smtproutes"), "fifo"},
		{"smtpauth FIFO", ctl("smtpauth"), "fifo"},
		{"smtproutes.cdb FIFO", cdb, "fifo"},
		{"trustanchors file FIFO", anchorsAt(""), "fifo"},
		{"trustanchors directory FIFO", anchorsAt("/"), "fifo"},
		{"clientcert file FIFO", named("clientcert"), "fifo"},
		{"clientkey file FIFO", named("clientkey"), "fifo"},
		{"timeoutdns directory", ctl("timeoutdns"), "dir"},
		{"smtpauth directory", ctl("smtpauth"), "dir"},
		{"smtproutes directory", ctl("smtproutes"), "dir"},
		{"smtproutes.cdb directory", cdb, "dir"},
		{"clientkey file directory", named("clientkey"), "dir"},
		{"me device", ctl("me"), "/dev/zero"},
		{"ipme device", ctl("ipme"), "/dev/null"},
		{"smtpauth device", ctl("smtpauth"), "/dev/zero"},
		{"smtproutes.cdb device", cdb, "/dev/zero"},
		{"clientcert file device", named("clientcert"), "/dev/zero"},
		{"trustanchors file device", anchorsAt(""), "/dev/zero"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := fifoHome(t, srv)
			path, name := tc.target(t, h)
			replace(t, path, tc.kind)
			before := srv.Conns()
			res := h.run(sample, "example.test", "a@b", "c@d")
			want := []string{"Unable to read control files", name, kindText[tc.kind]}
			if tc.name == "trustanchors directory FIFO" {
				// A path ending in / names a directory: the FIFO is refused
				// as "not a directory".
				want[2] = "not a directory"
			}
			res.expect(t, 'Z', want...)
			if srv.Conns() != before {
				t.Error("connected despite a file that is not a regular file")
			}
		})
	}
}

// Files the chain keeps for itself: a FIFO there must not stop the
// delivery, let alone hang it (missing or unwritable tcpto files never
// stop a delivery; without the compile lock, routes are read from the
// text).
func TestNotRegularOwnFiles(t *testing.T) {
	srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{})
	for _, p := range []string{"run/qmail-remote/smtproutes.lock", "queue/lock/tcpto"} {
		t.Run(filepath.Base(p), func(t *testing.T) {
			h := newHome(t)
			route(h, srv)
			replace(t, filepath.Join(h.dir, p), "fifo")
			h.run(sample, "example.test", "a@b", "c@d").expect(t, 'K')
		})
	}
}

// control/smtpauth must be a regular file owned by root or by the user
// qmail-remote runs as, and writable by no one else: each refusal names the
// file and the fix, never the content.
func TestSmtpauthPermissions(t *testing.T) {
	srv := smtptest.Start(t, "127.0.0.1:0", smtptest.Script{})
	const secret = "s3cret-pass"
	text := "127.0.0.1:25:starttls:acct-name:" + secret + "\n"
	other := func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("giving control/smtpauth to another user needs root (CI runs as root)")
		}
	}
	tests := []struct {
		name  string
		mode  os.FileMode
		owner int  // -1: ours
		link  bool // control/smtpauth is a symlink to the file
		root  bool // needs root to set up
		want  []string
	}{
		{"group-writable", 0o620, -1, false, false, []string{"control/smtpauth is writable by its group", "chmod go-w control/smtpauth"}},
		{"world-writable", 0o602, -1, false, false, []string{"control/smtpauth is writable by everyone", "chmod go-w control/smtpauth"}},
		{"world-readable", 0o604, -1, false, false, []string{"control/smtpauth is readable by everyone", "chmod o-r control/smtpauth"}},
		{"symlink to a group-writable file", 0o660, -1, true, false, []string{"control/smtpauth is writable by its group", "chmod go-w control/smtpauth"}},
		{"owned by someone else", 0o600, 12345, false, true, []string{"control/smtpauth is owned by uid 12345", "chown qmailr control/smtpauth"}},
		{"symlink to a file owned by someone else", 0o600, 12345, true, true, []string{"control/smtpauth is owned by uid 12345", "chown qmailr control/smtpauth"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.root {
				other(t)
			}
			h := newHome(t)
			route(h, srv)
			h.control("trustanchors", tlstest.WriteBundle(t, t.TempDir(), testCA)+"\n")
			p := filepath.Join(h.dir, "control", "smtpauth")
			file := p
			if tc.link {
				file = filepath.Join(t.TempDir(), "smtpauth")
				if err := os.Symlink(file, p); err != nil {
					t.Fatal(err)
				}
			}
			// The route's port is the server's: write the entry for it.
			entry := strings.Replace(text, ":25:", ":"+srv.Port+":", 1)
			if err := os.WriteFile(file, []byte(entry), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(file, tc.mode); err != nil {
				t.Fatal(err)
			}
			if tc.owner >= 0 {
				if err := os.Chown(file, tc.owner, -1); err != nil {
					t.Fatal(err)
				}
			}
			before := srv.Conns()
			res := h.run(sample, "example.test", "a@b", "c@d")
			res.expect(t, 'Z', append([]string{"Unable to read control files"}, tc.want...)...)
			if strings.Contains(string(res.raw), secret) || strings.Contains(string(res.raw), "acct-name") {
				t.Errorf("the report quotes the file: %q", res.raw)
			}
			if srv.Conns() != before {
				t.Error("connected despite a refused control/smtpauth")
			}
		})
	}
	t.Run("owned by us, mode 600", func(t *testing.T) {
		// The refusals above are not refusing everything: the same
		// entry in a good file reaches the relay (which then fails
		// for want of TLS, a Z of its own).
		h := newHome(t)
		route(h, srv)
		h.control("trustanchors", tlstest.WriteBundle(t, t.TempDir(), testCA)+"\n")
		p := filepath.Join(h.dir, "control", "smtpauth")
		os.WriteFile(p, []byte(strings.Replace(text, ":25:", ":"+srv.Port+":", 1)), 0o600)
		before := srv.Conns()
		res := h.run(sample, "example.test", "a@b", "c@d")
		res.expect(t, 'Z')
		if strings.Contains(res.message.Text, "Unable to read control files") || srv.Conns() == before {
			t.Errorf("a good control/smtpauth was refused: %q", res.raw)
		}
	})
}
