package tlsrpt

import (
	"errors"
	"reflect"
	"testing"
)

func TestParseRUA(t *testing.T) {
	for _, c := range []struct {
		name    string
		records []string
		want    []string
		err     error // ErrNoRecord, or nil: any error when want is nil
	}{
		{"mailto", []string{"v=TLSRPTv1; rua=mailto:reports@example.com"}, []string{"mailto:reports@example.com"}, nil},
		{"https", []string{"v=TLSRPTv1;rua=https://reporting.example.com/v1/tlsrpt"}, []string{"https://reporting.example.com/v1/tlsrpt"}, nil},
		{"two URIs", []string{"v=TLSRPTv1; rua=mailto:a@example.com,https://r.example.com/x"},
			[]string{"mailto:a@example.com", "https://r.example.com/x"}, nil},
		{"spaces", []string{"  v=TLSRPTv1 ;  rua = mailto:a@example.com ,\thttps://r.example.com/x ; "},
			[]string{"mailto:a@example.com", "https://r.example.com/x"}, nil},
		{"other TXT records", []string{"google-site-verification=abc", "v=spf1 -all", "v=TLSRPTv1; rua=mailto:a@example.com"},
			[]string{"mailto:a@example.com"}, nil},
		{"extension", []string{"v=TLSRPTv1; ext=1; rua=mailto:a@example.com"}, []string{"mailto:a@example.com"}, nil},
		{"unknown scheme skipped", []string{"v=TLSRPTv1; rua=ftp://x.example.com/,MAILTO:a@example.com"}, []string{"mailto:a@example.com"}, nil},
		{"two records", []string{"v=TLSRPTv1; rua=mailto:a@example.com", "v=TLSRPTv1; rua=mailto:b@example.com"}, nil, nil},
		{"wrong version", []string{"v=TLSRPTv2; rua=mailto:a@example.com"}, nil, ErrNoRecord},
		{"longer version", []string{"v=TLSRPTv10; rua=mailto:a@example.com"}, nil, ErrNoRecord},
		{"version is case-sensitive", []string{"v=tlsrptv1; rua=mailto:a@example.com"}, nil, ErrNoRecord},
		{"none", nil, nil, ErrNoRecord},
		{"no rua", []string{"v=TLSRPTv1"}, nil, nil},
		{"no rua field", []string{"v=TLSRPTv1; ext=1"}, nil, nil},
		{"two rua fields", []string{"v=TLSRPTv1; rua=mailto:a@example.com; rua=mailto:b@example.com"}, nil, nil},
		{"no usable URI", []string{"v=TLSRPTv1; rua=ftp://x.example.com/"}, nil, nil},
		{"empty URI", []string{"v=TLSRPTv1; rua=mailto:"}, nil, nil},
		{"a scheme without ':'", []string{"v=TLSRPTv1 rua=https"}, nil, nil},
		{"https without //host", []string{"v=TLSRPTv1; rua=https:r.example.com/v1"}, nil, nil},
		{"field without =", []string{"v=TLSRPTv1; junk"}, nil, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseRUA(c.records)
			switch {
			case c.want != nil:
				if err != nil || !reflect.DeepEqual(got, c.want) {
					t.Errorf("got %q, %v; want %q", got, err, c.want)
				}
			case c.err != nil:
				if !errors.Is(err, c.err) {
					t.Errorf("got %q, %v; want %v", got, err, c.err)
				}
			default:
				if err == nil || errors.Is(err, ErrNoRecord) {
					t.Errorf("got %q, %v; want an error other than ErrNoRecord", got, err)
				}
			}
		})
	}
}
