package routes

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"qmail-remote-go/src/internal/ctlcdb"
	"qmail-remote-go/src/internal/senders"
	"qmail-remote-go/src/testkit/ctlcdbtest"
)

// control/senderroutes end to end: LookupSender on a temporary home.

const senderSample = `# sender routes
alice@example.org:smarthost.test
<Boss@Example.ORG>:[192.0.2.7]:587
@example.org:relay.example.net:2525
.example.org:sub.example.net
<.corp.example.org>:corp.example.net
noreply@a.example.org:
<@quiet.example.org>:
<>:bounces.example.net
<#@[]>:[2001:db8::7]:26
user@[IPv6:2001:db8::1]:[192.0.2.8]
@[192.0.2.1]:192.0.2.9
`

type senderCase struct {
	sender string
	want   SenderRoute
}

func found(relay string, port int, key string) SenderRoute {
	return SenderRoute{Route: Route{Relay: relay, Port: port, Found: true}, Key: key}
}

var none = SenderRoute{Route: NoRoute}

func checkSenders(t *testing.T, home, run string, cases []senderCase) {
	t.Helper()
	for _, c := range cases {
		if r, err := LookupSender(home, run, c.sender); err != nil || r != c.want {
			t.Errorf("LookupSender(%q) = %+v, %v; want %+v", c.sender, r, err, c.want)
		}
	}
}

func TestLookupSender(t *testing.T) {
	ctlcdbtest.Set(t, &senderCompiled.RacyWindow, 0) // the cdb compiled is used at once
	home, run := ctlcdbtest.Home(t, "senderroutes", senderSample)
	before := senderCompiled.Compiles()
	checkSenders(t, home, run, []senderCase{
		// Exact, any case, local part included.
		{"alice@example.org", found("smarthost.test", 25, "alice@example.org")},
		{"ALICE@Example.Org", found("smarthost.test", 25, "alice@example.org")},
		{"boss@example.org", found("[192.0.2.7]", 587, "boss@example.org")},
		// @domain: that domain exactly.
		{"bob@example.org", found("relay.example.net", 2525, "@example.org")},
		{"bob@EXAMPLE.ORG.", found("relay.example.net", 2525, "@example.org")},
		// .suffix: subdomains only, the longest first.
		{"bob@a.example.org", found("sub.example.net", 25, ".example.org")},
		{"bob@x.y.example.org", found("sub.example.net", 25, ".example.org")},
		{"bob@x.corp.example.org", found("corp.example.net", 25, ".corp.example.org")},
		{"bob@corp.example.org", found("sub.example.net", 25, ".example.org")},
		// An empty relay: an exception, found but no relay.
		{"noreply@a.example.org", found("", 25, "noreply@a.example.org")},
		{"x@quiet.example.org", found("", 25, "@quiet.example.org")},
		{"x@sub.quiet.example.org", found("sub.example.net", 25, ".example.org")},
		// Bounces by their own keys only.
		{"", found("bounces.example.net", 25, "<>")},
		{"#@[]", found("[2001:db8::7]", 26, "<#@[]>")},
		// Literals: canonical, no suffixes.
		{"User@[2001:DB8:0::1]", found("[192.0.2.8]", 25, "user@[2001:db8::1]")},
		{"user@[IPv6:2001:db8::1]", found("[192.0.2.8]", 25, "user@[2001:db8::1]")},
		{"x@[192.0.2.1]", found("[192.0.2.9]", 25, "@[192.0.2.1]")},
		{"x@[::ffff:192.0.2.1]", found("[192.0.2.9]", 25, "@[192.0.2.1]")},
		// Nothing: no route.
		{"bob@example.com", none},
		{"bob@org", none},
		{"bob@xexample.org", none},
		{"bob", none},
		{"#@[192.0.2.1]", found("[192.0.2.9]", 25, "@[192.0.2.1]")},
	})
	if n := senderCompiled.Compiles() - before; n != 1 {
		t.Errorf("%d compiles, want 1: the cdb is not reused", n)
	}
	if _, err := os.Stat(filepath.Join(run, ctlcdb.Subdir, "senderroutes.cdb")); err != nil {
		t.Errorf("no senderroutes.cdb: %v", err)
	}
	if err := CompileSenders(home, run); err != nil {
		t.Errorf("CompileSenders: %v", err)
	}
	// smtproutes is another file.
	if _, err := os.Stat(filepath.Join(run, ctlcdb.Subdir, "smtproutes.cdb")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("smtproutes.cdb: %v", err)
	}
}

// A bounce matches only <>, a double bounce only <#@[]>: no domain key
// catches them.
func TestLookupSenderBounces(t *testing.T) {
	ctlcdbtest.Set(t, &senderCompiled.RacyWindow, 0)
	home, run := ctlcdbtest.Home(t, "senderroutes", "@example.net:r1.test\n.org:r2.test\n<#@[]>:r3.test\n")
	checkSenders(t, home, run, []senderCase{
		{"", none},
		{"#@[]", found("r3.test", 25, "<#@[]>")},
		{"a@example.org", found("r2.test", 25, ".org")},
	})
	ctlcdbtest.Write(t, home, "senderroutes", "<>:r1.test\n")
	checkSenders(t, home, run, []senderCase{
		{"", found("r1.test", 25, "<>")},
		{"#@[]", none},
	})
	// Written bare, a double bounce key starts a comment: the line is
	// no route (bounce keys must be in angle brackets).
	ctlcdbtest.Write(t, home, "senderroutes", "#@[]:r1.test\n")
	checkSenders(t, home, run, []senderCase{{"#@[]", none}, {"", none}})
}

// Without the file, no sender routes; with it removed, CompileSenders
// removes the cdb and lookups ignore a leftover one.
func TestLookupSenderNoFile(t *testing.T) {
	ctlcdbtest.Set(t, &senderCompiled.RacyWindow, 0)
	home, run := ctlcdbtest.Home(t, "senderroutes", "")
	checkSenders(t, home, run, []senderCase{{"a@example.org", none}, {"", none}})
	if err := CompileSenders(home, run); err != nil {
		t.Errorf("CompileSenders without a file: %v", err)
	}
	ctlcdbtest.Write(t, home, "senderroutes", "@example.org:r.test\n")
	if err := CompileSenders(home, run); err != nil {
		t.Fatal(err)
	}
	checkSenders(t, home, run, []senderCase{{"a@example.org", found("r.test", 25, "@example.org")}})
	os.Remove(filepath.Join(home, "control", "senderroutes"))
	checkSenders(t, home, run, []senderCase{{"a@example.org", none}})
	if err := CompileSenders(home, run); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(run, ctlcdb.Subdir, "senderroutes.cdb")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the cdb is still there: %v", err)
	}
	// The run directory unusable: the text, the same answer.
	home, run = ctlcdbtest.Home(t, "senderroutes", "@example.org:r.test\n")
	os.WriteFile(run, nil, 0o644)
	checkSenders(t, home, run, []senderCase{{"a@example.org", found("r.test", 25, "@example.org")}})
}

func TestLookupSenderErrors(t *testing.T) {
	ctlcdbtest.Set(t, &senderCompiled.RacyWindow, 0)
	for _, c := range []struct {
		text, want string
	}{
		// No default line.
		{":smarthost.test\n", "line 1: empty sender (bounces are <>)"},
		{"::2525\n", "line 1: empty sender (bounces are <>)"},
		// A port with an empty relay.
		{"a@example.org::2525\n", "line 1: a port without a relay (an empty relay leaves the route to smtproutes)"},
		{"<@example.org>::587\n", "line 1: a port without a relay (an empty relay leaves the route to smtproutes)"},
		// A sender twice, however it is spelled: the earlier line named.
		{"a@example.org:r1.test\n# c\nA@Example.ORG.:r2.test\n", "line 3: sender <a@example.org> already has a route, on line 1"},
		{"@example.org:r1.test\n<@example.org>:\n", "line 2: sender <@example.org> already has a route, on line 1"},
		{".example.org:\n<.EXAMPLE.org>:r.test\n", "line 2: sender <.example.org> already has a route, on line 1"},
		{"<>:r1.test\n<>:r1.test\n", "line 2: sender <> already has a route, on line 1"},
		{"<#@[]>:r1.test\n<#@[]>:r2.test\n", "line 2: sender <#@[]> already has a route, on line 1"},
		{"u@[IPv6:2001:db8::1]:r1.test\nu@[2001:DB8:0::1]:r2.test\n", "line 2: sender <u@[2001:db8::1]> already has a route, on line 1"},
		// Keys.
		{"a@example.org:r.test\n#@[]:r.test\nu@[192.0.2.1:r.test\n", `line 3: no ']' closing the address literal "u@[192.0.2.1:r.test"`},
		{"alice:r.test\n", `line 1: no '@' in the sender (write user@domain, @domain or .domain) "alice"`},
		{"alice@example.org\n", `line 1: missing ':' after the sender "alice@example.org"`},
		{"<alice@example.org:r.test\n", `line 1: no '>' closing the sender "<alice@example.org:r.test"`},
		{".[192.0.2.1]:r.test\n", `line 1: an address literal has no subdomains ".[192.0.2.1]"`},
		{"a b@example.org:r.test\n", `line 1: space in "a b@example.org:r.test" (no spaces allowed)`},
		{"a\x01@example.org:r.test\n", "line 1: control character 0x01"},
		// Relays, as in smtproutes.
		{"a@example.org:r.test:99999\n", `line 1: bad port "99999"`},
		{"a@example.org:r.test:0\n", `line 1: bad port "0"`},
		{"a@example.org:2001:db8::7\n", `line 1: IPv6 relay "2001:db8::7" must be written in brackets, [2001:db8::7]`},
		{"a@example.org:[192.0.2.7\n", `line 1: no ']' closing the address literal "[192.0.2.7"`},
		{"a@example.org:r..test\n", `line 1: empty label in relay name "r..test"`},
	} {
		home, run := ctlcdbtest.Home(t, "senderroutes", c.text)
		want := SenderFile + " " + c.want
		for i := 0; i < 2; i++ { // compiled, then from the cdb
			r, err := LookupSender(home, run, "a@example.org")
			var se *SyntaxError
			if !errors.As(err, &se) || err.Error() != want || r != none {
				t.Errorf("%q: LookupSender = %+v, %v; want %q", c.text, r, err, want)
				break
			}
		}
		var se *SyntaxError
		if err := CompileSenders(home, run); !errors.As(err, &se) || err.Error() != want {
			t.Errorf("%q: CompileSenders: %v, want %q", c.text, err, want)
		}
	}
	// A file that cannot be read.
	home, run := ctlcdbtest.Home(t, "senderroutes", "")
	os.Mkdir(filepath.Join(home, "control", "senderroutes"), 0o755)
	var fe *FileError
	if _, err := LookupSender(home, run, "a@example.org"); !errors.As(err, &fe) || fe.File != SenderFile {
		t.Errorf("got %v, want a FileError naming %s", err, SenderFile)
	}
}

// The cdb answers every sender as the parsed table does.
func TestSenderCDBRoundTrip(t *testing.T) {
	tb, err := parseSenders([]byte(senderSample))
	if err != nil {
		t.Fatal(err)
	}
	b, err2 := senderCompiled.EncodeDB(tb, nil, ctlcdb.Stamp{Dev: 1})
	if err2 != nil {
		t.Fatal(err2)
	}
	d, err2 := senderCompiled.OpenDB(b)
	if err2 != nil {
		t.Fatal(err2)
	}
	for _, s := range []string{"alice@example.org", "Bob@A.Example.ORG", "", "#@[]", "x@[192.0.2.1]", "x@y.test", "noreply@a.example.org"} {
		m, err := d.Lookup(s)
		if want := ctlcdb.First(tb, senders.Keys(s)); err != nil || m != want {
			t.Errorf("%q: cdb %+v %v, table %+v", s, m, err, want)
		}
	}
}
