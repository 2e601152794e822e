package dane

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"math/big"
	"reflect"
	"strings"
	"testing"
	"time"

	"qmail-remote-go/src/testkit/tlstest"
)

// authority is a certificate with its key, to sign others.
type authority struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// spec says what certificate mk makes.
type spec struct {
	cn       string
	dns      []string
	ca       bool
	from, to time.Time // zero: an hour ago, in a day
}

// mk makes a certificate signed by parent, or self-signed if parent is nil.
// tlstest has no intermediates and no expired CAs, hence this.
func mk(t *testing.T, s spec, parent *authority) *authority {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if s.from.IsZero() {
		s.from = time.Now().Add(-time.Hour)
	}
	if s.to.IsZero() {
		s.to = time.Now().Add(24 * time.Hour)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: s.cn},
		DNSNames:     s.dns,
		NotBefore:    s.from,
		NotAfter:     s.to,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if s.ca {
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		tmpl.BasicConstraintsValid = true
		tmpl.IsCA = true
		tmpl.ExtKeyUsage = nil
	}
	signer, signKey := tmpl, key
	if parent != nil {
		signer, signKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &authority{c, key}
}

// pki is leaf ← intermediate ← root, the leaf for mx.example.test.
type pki struct{ root, inter, leaf *authority }

func newPKI(t *testing.T) pki {
	root := mk(t, spec{cn: "Test Root", ca: true}, nil)
	inter := mk(t, spec{cn: "Test Intermediate", ca: true}, root)
	leaf := mk(t, spec{cn: "mx.example.test", dns: []string{"mx.example.test"}}, inter)
	return pki{root, inter, leaf}
}

func (p pki) chain() []*x509.Certificate {
	return []*x509.Certificate{p.leaf.cert, p.inter.cert, p.root.cert}
}

// rec makes a record for c with the selector and matching type given.
func rec(usage, sel, match uint8, c *x509.Certificate) Record {
	b := c.Raw
	if sel == SelectorSPKI {
		b = c.RawSubjectPublicKeyInfo
	}
	switch match {
	case MatchSHA256:
		s := sha256.Sum256(b)
		b = s[:]
	case MatchSHA512:
		s := sha512.Sum512(b)
		b = s[:]
	}
	return Record{usage, sel, match, append([]byte(nil), b...)}
}

var names = []string{"example.test", "mx.example.test"}

// pass checks that Verify authenticates with want.
func pass(t *testing.T, certs []*x509.Certificate, recs []Record, names []string, want Result) {
	t.Helper()
	got, err := Verify(certs, recs, names, time.Now())
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Verify = %+v, want %+v", got, want)
	}
}

// fail checks that Verify fails for reason, and returns the error.
func fail(t *testing.T, certs []*x509.Certificate, recs []Record, names []string, reason string) *Error {
	t.Helper()
	got, err := Verify(certs, recs, names, time.Now())
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Verify = %+v, %v; want an *Error", got, err)
	}
	if e.Reason != reason {
		t.Fatalf("Verify: reason %q (%v), want %q", e.Reason, e, reason)
	}
	if !reflect.DeepEqual(got, Result{}) {
		t.Fatalf("Verify failed but returned %+v", got)
	}
	if strings.ContainsAny(e.Error(), "\n\r\t") {
		t.Fatalf("error text %q is not one line", e.Error())
	}
	return e
}

func TestEEMatches(t *testing.T) {
	ca := tlstest.NewCA(t, "Test CA")
	leaf := ca.Issue(t, tlstest.Leaf{DNSNames: []string{"mx.example.test"}}).Leaf
	chain := []*x509.Certificate{leaf, ca.Cert}
	for _, tc := range []struct{ sel, match uint8 }{
		{SelectorSPKI, MatchSHA256},
		{SelectorCert, MatchSHA256},
		{SelectorCert, MatchSHA512},
		{SelectorSPKI, MatchExact},
		{SelectorSPKI, MatchSHA512},
		{SelectorCert, MatchExact},
	} {
		r := rec(DANEEE, tc.sel, tc.match, leaf)
		t.Run(r.String()[:5], func(t *testing.T) {
			pass(t, chain, []Record{r}, names, Result{r, MethodEE, 0})
		})
	}
}

// RFC 7672 3.1.1: DANE-EE checks neither names nor dates, nor any chain.
func TestEEIgnoresNameExpiryAndChain(t *testing.T) {
	ca := tlstest.NewCA(t, "Test CA")
	leaf := ca.Issue(t, tlstest.Leaf{
		DNSNames:  []string{"other.test"},
		NotBefore: time.Now().Add(-48 * time.Hour),
		NotAfter:  time.Now().Add(-24 * time.Hour),
	}).Leaf
	r := rec(DANEEE, SelectorSPKI, MatchSHA256, leaf)
	pass(t, []*x509.Certificate{leaf}, []Record{r}, names, Result{r, MethodEE, 0})
}

func TestEEMismatch(t *testing.T) {
	ca := tlstest.NewCA(t, "Test CA")
	leaf := ca.Issue(t, tlstest.Leaf{DNSNames: []string{"mx.example.test"}}).Leaf
	other := ca.Issue(t, tlstest.Leaf{DNSNames: []string{"mx.example.test"}}).Leaf
	e := fail(t, []*x509.Certificate{leaf, ca.Cert}, []Record{rec(DANEEE, SelectorSPKI, MatchSHA256, other)}, names, ReasonNoMatch)
	want := "no TLSA record matches the server's certificate chain (2 certificates; leaf SPKI SHA-256 " + SPKISHA256(leaf) + ")"
	if e.Error() != want {
		t.Fatalf("error %q, want %q", e, want)
	}
	// A DANE-EE record names the leaf, not the CA that signed it.
	e = fail(t, []*x509.Certificate{leaf}, []Record{rec(DANEEE, SelectorSPKI, MatchSHA256, ca.Cert)}, names, ReasonNoMatch)
	if !strings.Contains(e.Error(), "(1 certificate; ") {
		t.Fatalf("error %q does not count one certificate", e)
	}
}

func TestTAMatches(t *testing.T) {
	p := newPKI(t)
	for _, tc := range []struct {
		name  string
		ta    *x509.Certificate
		sel   uint8
		match uint8
		depth int
	}{
		{"root 2 1 1", p.root.cert, SelectorSPKI, MatchSHA256, 2},
		{"root 2 0 1", p.root.cert, SelectorCert, MatchSHA256, 2},
		{"inter 2 1 1", p.inter.cert, SelectorSPKI, MatchSHA256, 1},
		{"inter 2 0 1", p.inter.cert, SelectorCert, MatchSHA256, 1},
		{"inter 2 0 2", p.inter.cert, SelectorCert, MatchSHA512, 1},
		{"root 2 1 0", p.root.cert, SelectorSPKI, MatchExact, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rec(DANETA, tc.sel, tc.match, tc.ta)
			pass(t, p.chain(), []Record{r}, names, Result{r, MethodTA, tc.depth})
		})
	}
}

// The chain is matched whatever order the server sends it in.
func TestTAChainOrder(t *testing.T) {
	p := newPKI(t)
	r := rec(DANETA, SelectorSPKI, MatchSHA256, p.inter.cert)
	pass(t, []*x509.Certificate{p.leaf.cert, p.root.cert, p.inter.cert}, []Record{r}, names, Result{r, MethodTA, 2})
}

// RFC 7672 3.1.2: the trust anchor must be in the chain the server
// sends; one the server leaves out matches nothing.
func TestTANotSent(t *testing.T) {
	p := newPKI(t)
	r := rec(DANETA, SelectorSPKI, MatchSHA256, p.root.cert)
	fail(t, []*x509.Certificate{p.leaf.cert, p.inter.cert}, []Record{r}, names, ReasonNoMatch)
}

func TestTAExpired(t *testing.T) {
	past := spec{from: time.Now().Add(-48 * time.Hour), to: time.Now().Add(-24 * time.Hour)}
	t.Run("leaf", func(t *testing.T) {
		root := mk(t, spec{cn: "Test Root", ca: true}, nil)
		s := past
		s.cn, s.dns = "mx.example.test", []string{"mx.example.test"}
		leaf := mk(t, s, root)
		r := rec(DANETA, SelectorSPKI, MatchSHA256, root.cert)
		e := fail(t, []*x509.Certificate{leaf.cert, root.cert}, []Record{r}, names, ReasonTAChain)
		const prefix = "the DANE-TA chain does not verify: x509: certificate has expired or is not yet valid: current time "
		if !strings.HasPrefix(e.Error(), prefix) {
			t.Fatalf("error %q, want it to start %q", e, prefix)
		}
		var ce x509.CertificateInvalidError
		if !errors.As(e, &ce) || ce.Reason != x509.Expired {
			t.Fatalf("error %v does not unwrap to x509 Expired", e)
		}
		if e.Depth != 1 || !reflect.DeepEqual(e.Record, r) {
			t.Fatalf("error names record %v at depth %d, want %v at 1", e.Record, e.Depth, r)
		}
	})
	t.Run("intermediate", func(t *testing.T) {
		root := mk(t, spec{cn: "Test Root", ca: true}, nil)
		s := past
		s.cn, s.ca = "Test Intermediate", true
		inter := mk(t, s, root)
		leaf := mk(t, spec{cn: "mx.example.test", dns: []string{"mx.example.test"}}, inter)
		r := rec(DANETA, SelectorCert, MatchSHA256, root.cert)
		e := fail(t, []*x509.Certificate{leaf.cert, inter.cert, root.cert}, []Record{r}, names, ReasonTAChain)
		if !strings.HasPrefix(e.Error(), "the DANE-TA chain does not verify: x509: ") || !strings.Contains(e.Error(), "expired") {
			t.Fatalf("error %q does not say the chain expired", e)
		}
	})
	t.Run("trust anchor", func(t *testing.T) {
		s := past
		s.cn, s.ca = "Test Root", true
		root := mk(t, s, nil)
		leaf := mk(t, spec{cn: "mx.example.test", dns: []string{"mx.example.test"}}, root)
		r := rec(DANETA, SelectorSPKI, MatchSHA256, root.cert)
		e := fail(t, []*x509.Certificate{leaf.cert, root.cert}, []Record{r}, names, ReasonTAChain)
		if !strings.Contains(e.Error(), "expired") {
			t.Fatalf("error %q does not say the trust anchor expired", e)
		}
	})
}

// Verify checks dates as of now, not of the clock.
func TestTANow(t *testing.T) {
	p := newPKI(t)
	r := rec(DANETA, SelectorSPKI, MatchSHA256, p.root.cert)
	if _, err := Verify(p.chain(), []Record{r}, names, time.Now().Add(48*time.Hour)); err == nil {
		t.Fatal("Verify passes two days after the chain expired")
	}
	ee := rec(DANEEE, SelectorSPKI, MatchSHA256, p.leaf.cert)
	if _, err := Verify(p.chain(), []Record{ee}, names, time.Now().Add(48*time.Hour)); err != nil {
		t.Fatalf("DANE-EE looks at dates: %v", err)
	}
}

// A trust anchor in the chain that did not sign it is no trust anchor.
func TestTAUnrelated(t *testing.T) {
	p := newPKI(t)
	stranger := mk(t, spec{cn: "Stranger", ca: true}, nil)
	r := rec(DANETA, SelectorSPKI, MatchSHA256, stranger.cert)
	e := fail(t, []*x509.Certificate{p.leaf.cert, p.inter.cert, stranger.cert}, []Record{r}, names, ReasonTAChain)
	if !strings.Contains(e.Error(), "unknown authority") {
		t.Fatalf("error %q", e)
	}
}

func TestTANameMismatch(t *testing.T) {
	p := newPKI(t)
	r := rec(DANETA, SelectorSPKI, MatchSHA256, p.root.cert)
	e := fail(t, p.chain(), []Record{r}, []string{"mx.other.test"}, ReasonNameMismatch)
	want := "the certificate matches the DANE-TA record but not the name mx.other.test (its names: mx.example.test)"
	if e.Error() != want {
		t.Fatalf("error %q, want %q", e, want)
	}
	if e.Depth != 2 || !reflect.DeepEqual(e.Record, r) || e.Err != nil {
		t.Fatalf("error %+v", e)
	}
	e = fail(t, p.chain(), []Record{r}, []string{"other.test", "mx.other.test."}, ReasonNameMismatch)
	want = "the certificate matches the DANE-TA record but none of the names other.test, mx.other.test (its names: mx.example.test)"
	if e.Error() != want {
		t.Fatalf("error %q, want %q", e, want)
	}
	e = fail(t, p.chain(), []Record{r}, nil, ReasonNameMismatch)
	want = "the certificate matches the DANE-TA record but no name was given to check it against (its names: mx.example.test)"
	if e.Error() != want {
		t.Fatalf("error %q, want %q", e, want)
	}
}

// Names from the certificate are the server's to choose: they must not
// break the log line, and many of them must not flood it.
func TestTANameMismatchShowsNames(t *testing.T) {
	root := mk(t, spec{cn: "Test Root", ca: true}, nil)
	many := mk(t, spec{cn: "x", dns: []string{"a.test", "b.test", "c\nd.test", "d.test", "e.test"}}, root)
	r := rec(DANETA, SelectorSPKI, MatchSHA256, root.cert)
	e := fail(t, []*x509.Certificate{many.cert, root.cert}, []Record{r}, []string{"mx.example.test"}, ReasonNameMismatch)
	want := "the certificate matches the DANE-TA record but not the name mx.example.test (its names: a.test, b.test, c?d.test, d.test, ...)"
	if e.Error() != want {
		t.Fatalf("error %q, want %q", e, want)
	}
	none := mk(t, spec{cn: "mx.example.test"}, root)
	e = fail(t, []*x509.Certificate{none.cert, root.cert}, []Record{r}, []string{"mx.example.test"}, ReasonNameMismatch)
	if !strings.HasSuffix(e.Error(), " (it has no DNS names)") {
		t.Fatalf("error %q", e)
	}
}

func TestTAWildcard(t *testing.T) {
	root := mk(t, spec{cn: "Test Root", ca: true}, nil)
	leaf := mk(t, spec{cn: "*.example.test", dns: []string{"*.example.test"}}, root)
	chain := []*x509.Certificate{leaf.cert, root.cert}
	r := rec(DANETA, SelectorSPKI, MatchSHA256, root.cert)
	pass(t, chain, []Record{r}, []string{"mx.example.test"}, Result{r, MethodTA, 1})
	// The wildcard stands for one label, and for no less.
	fail(t, chain, []Record{r}, []string{"a.mx.example.test"}, ReasonNameMismatch)
	fail(t, chain, []Record{r}, []string{"example.test"}, ReasonNameMismatch)
}

// RFC 7672 3.2.2: any reference identifier will do; case and a final dot
// do not count.
func TestTASecondName(t *testing.T) {
	p := newPKI(t)
	r := rec(DANETA, SelectorSPKI, MatchSHA256, p.inter.cert)
	pass(t, p.chain(), []Record{r}, []string{"example.test", "MX.Example.TEST."}, Result{r, MethodTA, 1})
	fail(t, p.chain(), []Record{r}, []string{"example.test"}, ReasonNameMismatch)
}

// A self-signed leaf can be its own trust anchor: then only its name and
// dates count.
func TestTALeafIsAnchor(t *testing.T) {
	self := mk(t, spec{cn: "mx.example.test", dns: []string{"mx.example.test"}}, nil)
	r := rec(DANETA, SelectorCert, MatchSHA256, self.cert)
	pass(t, []*x509.Certificate{self.cert}, []Record{r}, names, Result{r, MethodTA, 0})
	fail(t, []*x509.Certificate{self.cert}, []Record{r}, []string{"other.test"}, ReasonNameMismatch)

	old := mk(t, spec{cn: "mx.example.test", dns: []string{"mx.example.test"},
		from: time.Now().Add(-48 * time.Hour), to: time.Now().Add(-24 * time.Hour)}, nil)
	e := fail(t, []*x509.Certificate{old.cert}, []Record{rec(DANETA, SelectorSPKI, MatchSHA256, old.cert)}, names, ReasonTAChain)
	if !strings.HasPrefix(e.Error(), "the DANE-TA chain does not verify: x509: certificate has expired or is not yet valid: ") || e.Depth != 0 {
		t.Fatalf("error %q at depth %d", e, e.Depth)
	}
}

// RFC 7671 8.1: during a key rollover the RRset holds old and new; the
// one that matches counts.
func TestRollover(t *testing.T) {
	p := newPKI(t)
	stale := mk(t, spec{cn: "old", ca: true}, nil)
	t.Run("EE", func(t *testing.T) {
		recs := []Record{rec(DANEEE, SelectorSPKI, MatchSHA256, stale.cert), rec(DANEEE, SelectorSPKI, MatchSHA256, p.leaf.cert)}
		pass(t, p.chain(), recs, names, Result{recs[1], MethodEE, 0})
	})
	t.Run("TA", func(t *testing.T) {
		recs := []Record{rec(DANETA, SelectorSPKI, MatchSHA256, stale.cert), rec(DANETA, SelectorSPKI, MatchSHA256, p.root.cert)}
		pass(t, p.chain(), recs, names, Result{recs[1], MethodTA, 2})
	})
	t.Run("first wins", func(t *testing.T) {
		recs := []Record{rec(DANETA, SelectorCert, MatchSHA256, p.inter.cert), rec(DANEEE, SelectorSPKI, MatchSHA256, p.leaf.cert)}
		pass(t, p.chain(), recs, names, Result{recs[0], MethodTA, 1})
	})
	t.Run("unusable skipped", func(t *testing.T) {
		recs := []Record{rec(PKIXEE, SelectorSPKI, MatchSHA256, p.leaf.cert), rec(DANEEE, SelectorSPKI, MatchSHA256, p.leaf.cert)}
		pass(t, p.chain(), recs, names, Result{recs[1], MethodEE, 0})
	})
}

// The error reported is the one that got furthest, whatever the order.
func TestMostInformativeFailure(t *testing.T) {
	p := newPKI(t)
	stale := mk(t, spec{cn: "old", ca: true}, nil)
	noMatch := rec(DANEEE, SelectorSPKI, MatchSHA256, stale.cert)
	interTA := rec(DANETA, SelectorSPKI, MatchSHA256, p.inter.cert)
	chain := []*x509.Certificate{p.leaf.cert, stale.cert, p.inter.cert} // stale is in the chain but signed nothing
	staleTA := rec(DANETA, SelectorSPKI, MatchSHA256, stale.cert)
	for _, recs := range [][]Record{{noMatch, staleTA}, {staleTA, noMatch}} {
		e := fail(t, chain, recs, names, ReasonTAChain)
		if e.Depth != 1 {
			t.Fatalf("depth %d", e.Depth)
		}
	}
	for _, recs := range [][]Record{{noMatch, staleTA, interTA}, {interTA, staleTA, noMatch}} {
		e := fail(t, chain, recs, []string{"other.test"}, ReasonNameMismatch)
		if e.Depth != 2 || !reflect.DeepEqual(e.Record, interTA) {
			t.Fatalf("error %+v", e)
		}
	}
}

func TestNoUsable(t *testing.T) {
	p := newPKI(t)
	spki := SPKISHA256(p.leaf.cert)
	h, _ := hex.DecodeString(spki)
	short := rec(DANEEE, SelectorSPKI, MatchSHA256, p.leaf.cert)
	short.Data = short.Data[:31]
	for _, tc := range []struct {
		name string
		recs []Record
	}{
		{"none", nil},
		{"PKIX only", []Record{{PKIXTA, 1, 1, h}, {PKIXEE, 1, 1, h}, rec(PKIXTA, 0, 1, p.root.cert)}},
		{"SHA-512 data under SHA-256", []Record{{DANEEE, 1, 1, rec(DANEEE, 1, 2, p.leaf.cert).Data}}},
		{"short digest", []Record{short}},
		{"unknown selector", []Record{{DANEEE, 2, 1, h}}},
		{"unknown matching", []Record{{DANEEE, 1, 3, h}}},
		{"unknown usage", []Record{{4, 1, 1, h}}},
		{"empty exact", []Record{{DANEEE, 1, 0, nil}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, certs := range [][]*x509.Certificate{p.chain(), nil} {
				got, err := Verify(certs, tc.recs, names, time.Now())
				if err != ErrNoUsable || !reflect.DeepEqual(got, Result{}) {
					t.Fatalf("Verify = %+v, %v; want ErrNoUsable", got, err)
				}
			}
		})
	}
}

func TestUsable(t *testing.T) {
	d := func(n int) []byte { return make([]byte, n) }
	for _, tc := range []struct {
		r    Record
		want bool
	}{
		{Record{3, 1, 1, d(32)}, true},
		{Record{2, 0, 2, d(64)}, true},
		{Record{3, 1, 0, d(1)}, true},
		{Record{2, 0, 0, d(300)}, true},
		{Record{0, 1, 1, d(32)}, false},
		{Record{1, 1, 1, d(32)}, false},
		{Record{4, 1, 1, d(32)}, false},
		{Record{255, 1, 1, d(32)}, false},
		{Record{3, 2, 1, d(32)}, false},
		{Record{3, 255, 1, d(32)}, false},
		{Record{3, 1, 3, d(32)}, false},
		{Record{3, 1, 255, d(32)}, false},
		{Record{3, 1, 1, d(31)}, false},
		{Record{3, 1, 1, d(33)}, false},
		{Record{3, 1, 1, d(64)}, false},
		{Record{3, 1, 2, d(32)}, false},
		{Record{3, 1, 2, d(63)}, false},
		{Record{3, 1, 0, nil}, false},
		{Record{3, 1, 0, d(0)}, false},
	} {
		if got := tc.r.Usable(); got != tc.want {
			t.Errorf("%v.Usable() = %v, want %v", tc.r, got, tc.want)
		}
	}
}

func TestNoCertificate(t *testing.T) {
	r := Record{DANEEE, 1, 1, make([]byte, 32)}
	for _, certs := range [][]*x509.Certificate{nil, {}, {nil}} {
		e := fail(t, certs, []Record{r}, names, ReasonNoCertificate)
		if e.Error() != "the server presented no certificate" {
			t.Fatalf("error %q", e)
		}
	}
}

func TestString(t *testing.T) {
	r := Record{3, 1, 1, []byte{0xAB, 0x01, 0xff}}
	if got, want := r.String(), "3 1 1 ab01ff"; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
}

func TestEncodeParse(t *testing.T) {
	for _, tc := range []struct {
		recs []Record
		text string
	}{
		{nil, ""},
		{[]Record{{3, 1, 1, []byte{0xab, 0x12}}}, "3:1:1:ab12"},
		{[]Record{{2, 0, 2, []byte{0}}, {255, 255, 255, []byte{0xff, 0xee}}}, "2:0:2:00,255:255:255:ffee"},
		{[]Record{{0, 1, 0, nil}}, "0:1:0:"}, // well formed, unusable: kept
	} {
		if got := EncodeRecords(tc.recs); got != tc.text {
			t.Errorf("EncodeRecords(%v) = %q, want %q", tc.recs, got, tc.text)
		}
		got, err := ParseRecords(tc.text)
		if err != nil || !equalRecords(got, tc.recs) {
			t.Errorf("ParseRecords(%q) = %v, %v; want %v", tc.text, got, err, tc.recs)
		}
	}
	got, err := ParseRecords("3:1:1:ABcd,003:01:2:00")
	if want := []Record{{3, 1, 1, []byte{0xab, 0xcd}}, {3, 1, 2, []byte{0}}}; err != nil || !equalRecords(got, want) {
		t.Errorf("ParseRecords of upper case = %v, %v", got, err)
	}
}

func TestParseRejects(t *testing.T) {
	for _, tc := range []struct{ in, err string }{
		{",", `TLSA record 1: is empty`},
		{"3:1:1:ab,", `TLSA record 2: is empty`},
		{"3:1:1:ab,,3:1:1:ab", `TLSA record 2: is empty`},
		{",3:1:1:ab", `TLSA record 1: is empty`},
		{"3:1:1", `TLSA record 1: "3:1:1" has 3 fields, not 4 (usage:selector:matching:data)`},
		{"3:1:1:ab:cd", `TLSA record 1: "3:1:1:ab:cd" has 5 fields, not 4 (usage:selector:matching:data)`},
		{"3", `TLSA record 1: "3" has 1 fields, not 4 (usage:selector:matching:data)`},
		{"256:1:1:ab", `TLSA record 1: usage "256" is not a number from 0 to 255`},
		{"3:1000:1:ab", `TLSA record 1: selector "1000" is not a number from 0 to 255`},
		{"3:1:-1:ab", `TLSA record 1: matching type "-1" is not a number from 0 to 255`},
		{"3:1:+1:ab", `TLSA record 1: matching type "+1" is not a number from 0 to 255`},
		{"3:1_1:1:ab", `TLSA record 1: selector "1_1" is not a number from 0 to 255`},
		{"3:0x1:1:ab", `TLSA record 1: selector "0x1" is not a number from 0 to 255`},
		{":1:1:ab", `TLSA record 1: usage "" is not a number from 0 to 255`},
		{" 3:1:1:ab", `TLSA record 1: usage " 3" is not a number from 0 to 255`},
		{"3:1:1:ab, 3:1:1:ab", `TLSA record 2: usage " 3" is not a number from 0 to 255`},
		{"3:1:1:ab ", `TLSA record 1: data has " " at offset 2, not a hex digit`},
		{"3:1:1:a b", `TLSA record 1: data has " " at offset 1, not a hex digit`},
		{"3:1:1:abg0", `TLSA record 1: data has "g" at offset 2, not a hex digit`},
		{"3:1:1:0x12", `TLSA record 1: data has "x" at offset 1, not a hex digit`},
		{"3:1:1:abc", `TLSA record 1: data has an odd number of hex digits (3)`},
		{"3 1 1 ab", `TLSA record 1: "3 1 1 ab" has 1 fields, not 4 (usage:selector:matching:data)`},
		{"3:1:1:" + strings.Repeat("z", 50), `TLSA record 1: data has "z" at offset 0, not a hex digit`},
		{strings.Repeat("9", 50) + ":1:1:ab", `TLSA record 1: usage "` + strings.Repeat("9", 40) + `"... is not a number from 0 to 255`},
	} {
		got, err := ParseRecords(tc.in)
		if err == nil || err.Error() != tc.err || got != nil {
			t.Errorf("ParseRecords(%q) = %v, %v; want error %q", tc.in, got, err, tc.err)
		}
	}
}

func TestPins(t *testing.T) {
	ca := tlstest.NewCA(t, "Test CA")
	leaf := ca.Issue(t, tlstest.Leaf{DNSNames: []string{"mx.example.test"}}).Leaf
	sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	h := hex.EncodeToString(sum[:])
	if got := SPKISHA256(leaf); got != h {
		t.Fatalf("SPKISHA256 = %q, want %q", got, h)
	}
	if SPKISHA256(nil) != "" {
		t.Fatal("SPKISHA256(nil) is not empty")
	}
	if !MatchPins(leaf, []string{SPKISHA256(ca.Cert), h}) {
		t.Fatal("MatchPins misses the second pin")
	}
	if !MatchPins(leaf, []string{strings.ToUpper(h)}) {
		t.Fatal("MatchPins minds case")
	}
	fullCert := sha256.Sum256(leaf.Raw)
	for _, pins := range [][]string{nil, {SPKISHA256(ca.Cert)}, {h[:63]}, {h + "0"}, {hex.EncodeToString(fullCert[:])}, {""}} {
		if MatchPins(leaf, pins) {
			t.Fatalf("MatchPins(%q) is true", pins)
		}
	}
	if MatchPins(nil, []string{h}) {
		t.Fatal("MatchPins(nil) is true")
	}
}

func equalRecords(a, b []Record) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Usage != y.Usage || x.Selector != y.Selector || x.MatchingType != y.MatchingType || string(x.Data) != string(y.Data) {
			return false
		}
	}
	return true
}
