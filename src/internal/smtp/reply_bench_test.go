package smtp

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

// BenchmarkReadReply: the reply reader on the replies of one delivery
// (a one-line 250, the multi-line EHLO reply) and on a hostile 5000-byte
// multi-line reply, which it must bound without slowing down.
func BenchmarkReadReply(b *testing.B) {
	ehlo := "250-mx.example.test Hello\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n250-8BITMIME\r\n" +
		"250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n"
	for _, bc := range []struct{ name, reply string }{
		{"ok", "250 2.0.0 Ok: queued as 4XyZ\r\n"},
		{"ehlo", ehlo},
		{"long", strings.Repeat("451-"+strings.Repeat("x", 70)+"\r\n", 70) + "451 end\r\n"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			in := []byte(strings.Repeat(bc.reply, 64))
			b.SetBytes(int64(len(bc.reply)))
			rd := bytes.NewReader(in)
			br := bufio.NewReaderSize(rd, 4096)
			n := 0
			for b.Loop() {
				if n == 64 {
					rd.Reset(in)
					br.Reset(rd)
					n = 0
				}
				if _, err := ReadReply(br); err != nil {
					b.Fatal(err)
				}
				n++
			}
		})
	}
}
