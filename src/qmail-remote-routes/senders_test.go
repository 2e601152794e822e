package qmailremoteroutes

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Routing by sender (control/senderroutes), sender credentials
// (control/smtpauth) and the source address (control/outgoingip).

func (h *home) write(name, text string) {
	h.t.Helper()
	if err := os.WriteFile(filepath.Join(h.home, "control", name), []byte(text), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

// expectVar checks that the stage exec'd its prog with name set to want
// (set true) or unset.
func (r result) expectVar(t *testing.T, name, want string, set bool) {
	t.Helper()
	if r.code != 0 || r.stderr != "" || strings.Contains(r.stdout, "\x00") {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	got, ok := vars(r.stdout)[name]
	if ok != set || got != want {
		t.Errorf("%s = %q (set %v), want %q (set %v)", name, got, ok, want, set)
	}
}

const senderSmtproutes = "example.com:mx-relay.test\n:default.test:26\n"

const senderRoutes = `# by sender
alice@example.org:smarthost.test:587
@example.org:[192.0.2.7]
.example.org:sub.test
noreply@a.example.org:
<>:bounce.test
<#@[]>:[2001:db8::7]:2526
`

func TestSenderRoutes(t *testing.T) {
	h := newHome(t, senderSmtproutes)
	h.write("senderroutes", senderRoutes)
	for _, c := range []struct {
		host, sender      string
		relay, port, used string // used: QMAILREMOTE_SENDERROUTE, "" unset
	}{
		// senderroutes before smtproutes, whatever the destination.
		{"example.com", "alice@example.org", "smarthost.test", "587", "<alice@example.org>"},
		{"other.test", "Alice@Example.ORG", "smarthost.test", "587", "<alice@example.org>"},
		{"example.com", "bob@example.org", "[192.0.2.7]", "25", "<@example.org>"},
		{"example.com", "bob@a.example.org", "sub.test", "25", "<.example.org>"},
		{"example.com", "", "bounce.test", "25", "<>"},
		{"example.com", "#@[]", "[2001:db8::7]", "2526", "<#@[]>"},
		// The empty relay: smtproutes decides.
		{"example.com", "noreply@a.example.org", "mx-relay.test", "25", ""},
		{"other.test", "noreply@a.example.org", "default.test", "26", ""},
		// No line: smtproutes.
		{"example.com", "carol@other.test", "mx-relay.test", "25", ""},
		{"other.test", "carol@other.test", "default.test", "26", ""},
	} {
		r := h.run(c.host, "QMAILREMOTE_SENDER="+c.sender, "QMAILREMOTE_SENDERROUTE=<stale@x.test>")
		r.expectExec(t, c.relay, true, c.port)
		r.expectVar(t, "QMAILREMOTE_SENDERROUTE", c.used, c.used != "")
	}
	if _, err := os.Stat(filepath.Join(h.runDir, "qmail-remote", "senderroutes.cdb")); err != nil {
		t.Errorf("no senderroutes.cdb: %v", err)
	}
}

// Run by hand without QMAILREMOTE_SENDER: no sender line applies, not
// even the bounce's (an unset sender is not an empty one).
func TestSenderUnset(t *testing.T) {
	h := newHome(t, senderSmtproutes)
	h.write("senderroutes", senderRoutes+"@other.test:sender.test\n")
	for _, host := range []string{"example.com", "other.test"} {
		r := h.run(host, "QMAILREMOTE_SENDERROUTE=<>")
		want := map[string]string{"example.com": "mx-relay.test", "other.test": "default.test"}[host]
		r.expectExec(t, want, true, map[string]string{"example.com": "25", "other.test": "26"}[host])
		r.expectVar(t, "QMAILREMOTE_SENDERROUTE", "", false)
	}
	// Without smtproutes either: MX, no relay.
	h2 := newHome(t, "")
	h2.write("senderroutes", "<>:bounce.test\n")
	r := h2.run("example.com", "QMAILREMOTE_RELAY=stale.test")
	r.expectExec(t, "", false, "25")
	r.expectVar(t, "QMAILREMOTE_SENDERROUTE", "", false)
	r = h2.run("example.com", "QMAILREMOTE_SENDER=")
	r.expectExec(t, "bounce.test", true, "25")
	r.expectVar(t, "QMAILREMOTE_SENDERROUTE", "<>", true)
}

func TestSenderRoutesMalformed(t *testing.T) {
	h := newHome(t, senderSmtproutes)
	h.write("senderroutes", "alice@example.org:smarthost.test\n\n@example.org:r.test::25\n")
	for _, s := range []string{"alice@example.org", "other@x.test", ""} {
		zRun(t, h.run("example.com", "QMAILREMOTE_SENDER="+s),
			"Unable to read control files: control/senderroutes line 3: bad port \":25\". (#4.3.0)\n")
	}
	h.write("senderroutes", "a@example.org:r1.test\nA@EXAMPLE.ORG:r2.test\n")
	zRun(t, h.run("example.com", "QMAILREMOTE_SENDER=x@y.test"),
		"Unable to read control files: control/senderroutes line 2: sender <a@example.org> already has a route, on line 1. (#4.3.0)\n")
	h.write("senderroutes", ":smarthost.test\n")
	zRun(t, h.run("example.com", "QMAILREMOTE_SENDER=x@y.test"),
		"Unable to read control files: control/senderroutes line 1: empty sender (bounces are <>). (#4.3.0)\n")
	h.write("senderroutes", "a@example.org::587\n")
	zRun(t, h.run("example.com", "QMAILREMOTE_SENDER=x@y.test"),
		"Unable to read control files: control/senderroutes line 1: a port without a relay (an empty relay leaves the route to smtproutes). (#4.3.0)\n")
}

const senderCreds = "<alice@example.org>:smtp.example.net:587:starttls:alice:" + password + "\n" +
	"<@example.org>:smtp.example.net:587:smtps:org:" + password + "\n" +
	"<.example.org>:smtp.example.net:587:starttls:sub:" + password + "\n" +
	"<>:smtp.example.net:587:starttls:bounces:" + password + "\n" +
	"<carol@other.test>:smtp.example.net:465:smtps:carol:" + password + "\n" +
	"smtp.example.net:587:starttls:relay:" + password + "\n"

func TestSenderCredentials(t *testing.T) {
	anchors := "QMAILREMOTE_TRUSTANCHORS=/etc/ssl/certs/ca-certificates.crt"
	// The relay from senderroutes for example.org, from smtproutes for
	// the others: sender credentials apply to both.
	h := newHome(t, ":smtp.example.net:587\nport465.test:smtp.example.net:465\nmx.test:\n")
	h.write("senderroutes", "@example.org:SMTP.example.net:587\n")
	h.smtpauth(senderCreds, 0o600)
	for _, c := range []struct {
		host, sender string
		hasSender    bool
		auth, key    string // "" unset
	}{
		{"a.test", "alice@example.org", true, "starttls", "<alice@example.org>"},
		{"a.test", "ALICE@example.org", true, "starttls", "<alice@example.org>"},
		{"a.test", "bob@example.org", true, "smtps", "<@example.org>"},
		{"a.test", "bob@x.example.org", true, "starttls", "<.example.org>"},
		{"a.test", "", true, "starttls", "<>"},
		// The relay's own.
		{"a.test", "carol@other.test", true, "starttls", ""},
		{"a.test", "#@[]", true, "starttls", ""},
		{"a.test", "alice@example.org", false, "starttls", ""},
		// A sender's credentials are for their relay and port only.
		{"port465.test", "carol@other.test", true, "smtps", "<carol@other.test>"},
		{"port465.test", "alice@example.org", true, "starttls", "<alice@example.org>"},
		{"port465.test", "dave@other.test", true, "", ""},
		// No relay: no AUTH.
		{"mx.test", "carol@other.test", true, "", ""},
	} {
		env := []string{anchors, "QMAILREMOTE_TLSSTRICTNESS=0", "QMAILREMOTE_AUTH=smtps", "QMAILREMOTE_AUTHSENDER=<stale@x.test>"}
		if c.hasSender {
			env = append(env, "QMAILREMOTE_SENDER="+c.sender)
		}
		r := h.run(c.host, env...)
		r.expectVar(t, "QMAILREMOTE_AUTH", c.auth, c.auth != "")
		r.expectVar(t, "QMAILREMOTE_AUTHSENDER", c.key, c.key != "")
		strict := "0"
		if c.auth != "" {
			strict = "2"
		}
		r.expectVar(t, "QMAILREMOTE_TLSSTRICTNESS", strict, true)
		for _, secret := range []string{password, "alice:", "org:", "relay:", "carol:"} {
			if strings.Contains(r.stdout, secret) {
				t.Errorf("%s from %q: %q in the environment", c.host, c.sender, secret)
			}
		}
	}
	// port465.test from alice: the sender route wins over smtproutes.
	r := h.run("port465.test", anchors, "QMAILREMOTE_SENDER=bob@example.org")
	r.expectExec(t, "smtp.example.net", true, "587")
	r.expectVar(t, "QMAILREMOTE_SENDERROUTE", "<@example.org>", true)
	r.expectVar(t, "QMAILREMOTE_AUTHSENDER", "<@example.org>", true)
}

// A malformed sender key in smtpauth: a Z naming the line, the line
// never quoted.
func TestSenderCredentialsMalformed(t *testing.T) {
	anchors := "QMAILREMOTE_TRUSTANCHORS=/etc/ssl/certs/ca-certificates.crt"
	h := newHome(t, ":smtp.example.net:587\n")
	const want = "Unable to read control files: control/smtpauth line 2: bad sender in angle brackets " +
		"(<user@domain>, <@domain>, <.domain>, <> or <#@[]>, then ':'). (#4.3.0)\n"
	for _, bad := range []string{
		"<alice" + password + "@example.org:smtp.example.net:587:starttls:alice:" + password,
		"<alice@" + password + ">smtp.example.net:587:starttls:alice:" + password,
		"<" + password + ">:smtp.example.net:587:starttls:alice:" + password,
		"<.[192.0.2.1]>:smtp.example.net:587:starttls:alice:" + password,
	} {
		h.smtpauth("smtp.example.net:587:starttls:relay:"+password+"\n"+bad+"\n", 0o600)
		r := h.run("a.test", anchors, "QMAILREMOTE_SENDER=alice@example.org")
		zRun(t, r, want)
		if strings.Contains(r.stdout, password) {
			t.Errorf("the line is quoted: %q", r.stdout)
		}
	}
}

func TestOutgoingIP(t *testing.T) {
	h := newHome(t, senderSmtproutes)
	h.write("outgoingip", `# source addresses
192.0.2.1
example.com:192.0.2.2
.example.com:2001:db8::2
<@example.org>:2001:db8::3
<@example.org>:192.0.2.3
<>:[2001:db8::4]
`)
	for _, c := range []struct {
		host, sender string
		hasSender    bool
		want         string
	}{
		{"example.com", "a@example.org", true, "192.0.2.2 2001:db8::3"},
		{"mx.example.com", "a@example.org", true, "192.0.2.3 2001:db8::2"},
		{"other.test", "a@example.org", true, "192.0.2.3 2001:db8::3"},
		{"other.test", "a@other.test", true, "192.0.2.1"},
		{"other.test", "", true, "192.0.2.1 2001:db8::4"},
		// No sender: no sender line.
		{"other.test", "", false, "192.0.2.1"},
		{"mx.example.com", "", false, "192.0.2.1 2001:db8::2"},
	} {
		env := []string{"QMAILREMOTE_OUTGOINGIP=198.51.100.1"}
		if c.hasSender {
			env = append(env, "QMAILREMOTE_SENDER="+c.sender)
		}
		h.run(c.host, env...).expectVar(t, "QMAILREMOTE_OUTGOINGIP", c.want, true)
	}
	if _, err := os.Stat(filepath.Join(h.runDir, "qmail-remote", "outgoingip.cdb")); err != nil {
		t.Errorf("no outgoingip.cdb: %v", err)
	}

	// Nothing for this delivery, or no file: unset, whatever the caller had.
	h.write("outgoingip", "example.com:192.0.2.2\n")
	h.run("other.test", "QMAILREMOTE_SENDER=a@b.test", "QMAILREMOTE_OUTGOINGIP=198.51.100.1").expectVar(t, "QMAILREMOTE_OUTGOINGIP", "", false)
	os.Remove(filepath.Join(h.home, "control", "outgoingip"))
	h.run("example.com", "QMAILREMOTE_SENDER=a@b.test", "QMAILREMOTE_OUTGOINGIP=198.51.100.1").expectVar(t, "QMAILREMOTE_OUTGOINGIP", "", false)

	// Malformed: a Z naming the line, for every delivery.
	h.write("outgoingip", "192.0.2.1\n# two defaults\n:192.0.2.2\n")
	for _, host := range []string{"example.com", "other.test"} {
		zRun(t, h.run(host, "QMAILREMOTE_SENDER=a@b.test"),
			"Unable to read control files: control/outgoingip line 3: a second IPv4 address for the default (line 1 has one). (#4.3.0)\n")
	}
	h.write("outgoingip", "example.com:0.0.0.0\n")
	zRun(t, h.run("other.test"),
		"Unable to read control files: control/outgoingip line 1: \"0.0.0.0\" is the unspecified address; leave the family out to let the kernel choose. (#4.3.0)\n")
}

// All three variables the stage decides are removed when they do not
// apply, whatever the caller's environment held.
func TestStaleSenderVariables(t *testing.T) {
	h := newHome(t, "")
	r := h.run("example.com", "QMAILREMOTE_SENDER=a@b.test", "QMAILREMOTE_SENDERROUTE=<a@b.test>",
		"QMAILREMOTE_AUTHSENDER=<a@b.test>", "QMAILREMOTE_OUTGOINGIP=192.0.2.1 2001:db8::1")
	r.expectExec(t, "", false, "25")
	for _, v := range []string{"QMAILREMOTE_SENDERROUTE", "QMAILREMOTE_AUTHSENDER", "QMAILREMOTE_OUTGOINGIP"} {
		r.expectVar(t, v, "", false)
	}
}
