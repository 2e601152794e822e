package tlsrpt

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse: a TLSRPT TXT record (from the DNS, anyone's) and a log line
// (a crash can leave anything) never make the parsers panic, and every
// URI that ParseRUA returns is mailto: or https:.
func FuzzParse(f *testing.F) {
	f.Add("v=TLSRPTv1; rua=mailto:tlsrpt@example.test,https://r.example.test/v1", `{"t":"2026-12-04T00:00:00Z","d":"example.test","p":"sts","r":"success"}`)
	f.Add("v=TLSRPTv1;rua=mailto:a@b", "{")
	f.Add("v=TLSRPTv1 ; rua = ; ext=1", "\x00\n\n")
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, txt, line string) {
		if uris, err := ParseRUA([]string{txt}); err == nil {
			for _, u := range uris {
				if len(u) < 7 || u[:7] != "mailto:" && (len(u) < 8 || u[:8] != "https://") {
					t.Fatalf("ParseRUA(%q) returned %q", txt, u)
				}
			}
		}
		p := filepath.Join(dir, "log")
		if err := os.WriteFile(p, []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
		Read(p)
	})
}
