package qmailremoteio

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"qmail-remote-go/src/internal/smtp"
)

func tempMessage(t *testing.T, body string) *os.File {
	t.Helper()
	p := filepath.Join(t.TempDir(), "msg")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestSendMapped: the mapped send writes what SendBody writes over
// read(2), for a message of several give-back steps, a partial last line,
// and the empty message.
func TestSendMapped(t *testing.T) {
	big := strings.Repeat("From: x\n.dot line\r\nbare\rcr \xe9\n", 3*giveBackStep/28)
	for _, body := range []string{big, big + "partial", "", "\n", "x"} {
		f := tempMessage(t, body)
		m, err := mapMessage(f)
		if err != nil {
			t.Fatal(err)
		}
		defer unmap(m)
		var got, want bytes.Buffer
		errGot := sendMapped(&got, m, nil)
		_, errWant := smtp.SendBody(&want, strings.NewReader(body))
		if !bytes.Equal(got.Bytes(), want.Bytes()) || !errors.Is(errGot, errWant) {
			t.Errorf("%d bytes: mapped %d bytes %v, read %d bytes %v", len(body), got.Len(), errGot, want.Len(), errWant)
		}
	}
}

// TestSendMappedTruncated: a message truncated under the mapping faults
// (SIGBUS) past its new end; that must be a read error, not a crash, and
// the dot must not go out.
func TestSendMappedTruncated(t *testing.T) {
	f := tempMessage(t, strings.Repeat("a line of the message\n", 4*giveBackStep/22))
	m, err := mapMessage(f)
	if err != nil {
		t.Fatal(err)
	}
	defer unmap(m)
	if err := os.Truncate(f.Name(), 100000); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err = sendMapped(&out, m, nil)
	var mre *msgReadError
	if !errors.As(err, &mre) || !errors.Is(mre.err, errShrank) {
		t.Fatalf("got %v, want a read error", err)
	}
	if bytes.HasSuffix(out.Bytes(), []byte("\r\n.\r\n")) || out.Len() > 200000 {
		t.Fatalf("sent %d bytes, ending %q", out.Len(), out.Bytes()[max(0, out.Len()-10):])
	}
}

func unmap(m []byte) {
	if len(m) > 0 {
		unix.Munmap(m)
	}
}
