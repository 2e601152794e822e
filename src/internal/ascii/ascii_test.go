package ascii

import "testing"

func TestLower(t *testing.T) {
	for in, want := range map[string]string{
		"":                "",
		"abc":             "abc",
		"ABC.Example":     "abc.example",
		"\u212A.EXAMPLE":  "\u212A.example", // the Kelvin sign stays
		"\xc3\x89T\xff@X": "\xc3\x89t\xff@x",
		"Z[]@Az":          "z[]@az",
	} {
		if got := Lower(in); got != want {
			t.Errorf("Lower(%q) = %q, want %q", in, got, want)
		}
	}
	if n := testing.AllocsPerRun(10, func() { Lower("already.lower") }); n != 0 {
		t.Errorf("Lower of a lower-case string allocates %v times", n)
	}
}
