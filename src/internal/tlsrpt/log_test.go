package tlsrpt

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

var day = time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)

func rec(at time.Duration, domain, result string) Record {
	return Record{Time: day.Add(at), Domain: domain, PolicyType: PolicyTLSA,
		PolicyStrings: []string{"3 1 1 ABCD"}, MXHost: "mx1." + domain, IP: "192.0.2.1", Result: result}
}

func TestAppendRead(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "not", "yet")
	want := []Record{
		rec(time.Hour, "example.com", Success),
		rec(2*time.Hour, "example.com", ValidationFailure),
		// 23:30 in UTC-2 is the next UTC day: the file is by UTC date.
		{Time: time.Date(2026, 12, 4, 23, 30, 0, 0, time.FixedZone("x", -2*3600)), Domain: "example.net",
			PolicyType: PolicyNone, Result: StartTLSNotSupported, Reason: "no STARTTLS"},
	}
	want[1].Reason = "certificate signed by unknown authority"
	for _, r := range want {
		if err := Append(dir, r); err != nil {
			t.Fatal(err)
		}
	}
	got, bad, err := Read(filepath.Join(dir, "20261204"))
	if err != nil || bad != 0 {
		t.Fatalf("Read: %v, %d bad", err, bad)
	}
	if !reflect.DeepEqual(got, want[:2]) {
		t.Errorf("got %+v\nwant %+v", got, want[:2])
	}
	got, bad, err = Read(filepath.Join(dir, "20261205"))
	if err != nil || bad != 0 || len(got) != 1 {
		t.Fatalf("Read of the next day: %v, %d bad, %d records", err, bad, len(got))
	}
	if !got[0].Time.Equal(want[2].Time) || got[0].Time.Location() != time.UTC || got[0].Reason != "no STARTTLS" {
		t.Errorf("got %+v", got[0])
	}
	st, err := os.Stat(filepath.Join(dir, "20261204"))
	if err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("file mode: %v %v", st.Mode(), err)
	}
}

func TestAppendZeroTime(t *testing.T) {
	dir := t.TempDir()
	before := time.Now().UTC()
	if err := Append(dir, Record{Domain: "example.com", PolicyType: PolicyNone, Result: Success}); err != nil {
		t.Fatal(err)
	}
	after := time.Now().UTC()
	// Around midnight the record is in one of the two days' files.
	var got []Record
	for _, d := range []time.Time{before, after} {
		r, _, err := Read(filepath.Join(dir, d.Format(DayLayout)))
		if err == nil {
			got = r
		}
	}
	if len(got) != 1 || got[0].Time.Before(before.Truncate(time.Second)) || got[0].Time.After(after) {
		t.Errorf("got %+v, want one record between %v and %v", got, before, after)
	}
}

// checkLog reads the day's file and checks that it holds exactly n
// records, every line whole.
func checkLog(t *testing.T, dir string, n int) {
	t.Helper()
	path := filepath.Join(dir, "20261204")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != n || !bytes.HasSuffix(b, []byte("\n")) {
		t.Fatalf("%d lines, want %d", len(lines), n)
	}
	seen := map[string]bool{}
	for i, l := range lines {
		var r Record
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("line %d does not parse (%v): %q", i+1, err, l)
		}
		if seen[r.Reason] {
			t.Fatalf("line %d is a duplicate: %q", i+1, l)
		}
		seen[r.Reason] = true
	}
	got, bad, err := Read(path)
	if err != nil || bad != 0 || len(got) != n {
		t.Fatalf("Read: %v, %d bad, %d records, want %d", err, bad, len(got), n)
	}
}

// bigRecord is a record long enough (about 3 KB) that a write torn or
// interleaved with another would show.
func bigRecord(who string, i int) Record {
	r := rec(time.Hour, "example.com", CertificateExpired)
	r.Reason = fmt.Sprintf("%s-%d", who, i)
	r.PolicyStrings = []string{strings.Repeat("A", 500), strings.Repeat("B", 500), strings.Repeat("C", 500),
		strings.Repeat("D", 500), strings.Repeat("E", 500)}
	return r
}

func TestAppendConcurrentGoroutines(t *testing.T) {
	dir := t.TempDir()
	const writers, each = 20, 50
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if err := Append(dir, bigRecord("g"+strconv.Itoa(w), i)); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	checkLog(t, dir, writers*each)
}

// childEnv makes the test binary, re-executed, an appending child
// (TestAppendChild) instead of a test run.
const childEnv = "TLSRPT_TEST_CHILD_DIR"

func TestAppendConcurrentProcesses(t *testing.T) {
	dir := t.TempDir()
	const children, each = 8, 100
	var cmds []*exec.Cmd
	for c := range children {
		cmd := exec.Command(os.Args[0], "-test.run=^TestAppendChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), childEnv+"="+dir, "TLSRPT_TEST_CHILD_ID="+strconv.Itoa(c),
			"TLSRPT_TEST_CHILD_N="+strconv.Itoa(each))
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("child: %v\n%s", err, cmd.Stdout)
		}
	}
	checkLog(t, dir, children*each)
}

// TestAppendChild is the child of TestAppendConcurrentProcesses; run
// directly, it does nothing.
func TestAppendChild(t *testing.T) {
	dir := os.Getenv(childEnv)
	if dir == "" {
		t.Skip("only a child of TestAppendConcurrentProcesses")
	}
	n, _ := strconv.Atoi(os.Getenv("TLSRPT_TEST_CHILD_N"))
	id := os.Getenv("TLSRPT_TEST_CHILD_ID")
	for i := range n {
		if err := Append(dir, bigRecord("p"+id, i)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReadMalformed(t *testing.T) {
	dir := t.TempDir()
	good, _ := marshalBounded(rec(time.Hour, "example.com", Success))
	var b bytes.Buffer
	b.Write(good)
	b.WriteString("garbage\n")
	b.WriteString("{\"t\":\"2026-12-04T01:00:00Z\",\"d\":\"example.com\"}\n") // no policy, no result
	b.WriteString("\n")                                                       // empty lines are nothing
	b.WriteString("{" + strings.Repeat("x", 100<<10) + "\n")                  // longer than any record
	b.Write(good)
	b.Write(good[:len(good)/2]) // a writer that died mid-line
	path := filepath.Join(dir, "20261204")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	got, bad, err := Read(path)
	if err != nil || len(got) != 2 || bad != 4 {
		t.Fatalf("got %d records, %d bad, %v; want 2, 4, nil", len(got), bad, err)
	}
	// The next append ends the broken line first: only it is lost.
	if err := Append(dir, rec(2*time.Hour, "example.com", Success)); err != nil {
		t.Fatal(err)
	}
	got, bad, err = Read(path)
	if err != nil || len(got) != 3 || bad != 4 {
		t.Fatalf("after an append: %d records, %d bad, %v; want 3, 4, nil", len(got), bad, err)
	}
	if _, _, err := Read(filepath.Join(dir, "20261203")); !os.IsNotExist(err) {
		t.Errorf("Read of a missing file: %v", err)
	}
}

func TestAppendBounded(t *testing.T) {
	dir := t.TempDir()
	r := rec(time.Hour, "example.com", ValidationFailure)
	r.Reason = strings.Repeat("é", 1000) // two bytes each: cut on a boundary
	r.PolicyStrings = nil
	for i := range 40 {
		r.PolicyStrings = append(r.PolicyStrings, fmt.Sprintf("%d %s", i, strings.Repeat("F", 2000)))
	}
	r.MXHelo = strings.Repeat("\x01", 1000) // six bytes each in JSON
	if err := Append(dir, r); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "20261204"))
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > MaxLine {
		t.Errorf("the line is %d bytes, more than %d", len(b), MaxLine)
	}
	got, bad, err := Read(filepath.Join(dir, "20261204"))
	if err != nil || bad != 0 || len(got) != 1 {
		t.Fatalf("Read: %v, %d bad, %d records", err, bad, len(got))
	}
	g := got[0]
	if len(g.Reason) > MaxReason || !utf8.ValidString(g.Reason) || g.Reason == "" {
		t.Errorf("reason of %d bytes, valid UTF-8 %v", len(g.Reason), utf8.ValidString(g.Reason))
	}
	if len(g.PolicyStrings) == 0 || len(g.PolicyStrings) >= 40 || len(g.PolicyStrings[0]) > maxPolicyString ||
		!strings.HasPrefix(g.PolicyStrings[0], "0 FFF") {
		t.Errorf("policy strings: %d, the first %d bytes", len(g.PolicyStrings), len(g.PolicyStrings[0]))
	}
	if g.Domain != "example.com" || g.Result != ValidationFailure {
		t.Errorf("got %+v", g)
	}
	// The same record is cut the same way every time.
	a, _ := marshalBounded(r)
	b2, _ := marshalBounded(r)
	if !bytes.Equal(a, b2) {
		t.Error("two cuts of one record differ")
	}
}

func TestAppendNotRegular(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "20261204"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Append(dir, rec(time.Hour, "example.com", Success)); err == nil {
		t.Error("Append into a directory in place of the file succeeded")
	}
	if err := Append("", rec(time.Hour, "example.com", Success)); err == nil {
		t.Error("Append without a directory succeeded")
	}
}

func TestDomains(t *testing.T) {
	got := Domains([]Record{{Domain: "B.example."}, {Domain: "a.example"}, {Domain: "b.example"}, {Domain: ""}})
	if want := []string{"a.example", "b.example"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
