package qmailremotetlsio

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"qmail-remote-go/src/internal/report"
	"qmail-remote-go/src/testkit/tlstest"
)

// smtpUnderTLS is the server's side of a session after STARTTLS: EHLO,
// MAIL, RCPT, DATA and the message, QUIT; the message lands in got.
func smtpUnderTLS(got *bytes.Buffer) func(c *tls.Conn, sn *seen) {
	return func(c *tls.Conn, sn *seen) {
		br := bufio.NewReader(c)
		inData := false
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if inData {
				if l == ".\r\n" {
					inData = false
					c.Write([]byte("250 2.0.0 queued\r\n"))
				} else {
					got.WriteString(l)
				}
				continue
			}
			switch verb := strings.ToUpper(strings.Fields(l + " x")[0]); verb {
			case "EHLO":
				c.Write([]byte("250-mx.example.test\r\n250 PIPELINING\r\n"))
			case "DATA":
				inData = true
				c.Write([]byte("354 go ahead\r\n"))
			case "QUIT":
				c.Write([]byte("221 bye\r\n"))
				return
			default:
				c.Write([]byte("250 ok\r\n"))
			}
		}
	}
}

// TestRealApplication: the real qmail-remote-io as prog. Ours, it runs in
// this program's process over the TLS session (with
// QMAILREMOTE_REALEXEC=1, as a child on the socketpair): the same
// delivery, the same report with its TLS line either way.
func TestRealApplication(t *testing.T) {
	p := newPKI(t)
	cert := p.ca.Issue(t, tlstest.Leaf{DNSNames: []string{"mx.example.test"}})
	var sn seen
	var got bytes.Buffer
	srv := startServer(t, tlsServer(serverConfig(cert), &sn, smtpUnderTLS(&got)))
	c, err := net.Dial("tcp", srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	sock, err := c.(*net.TCPConn).File()
	c.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	msg := filepath.Join(t.TempDir(), "msg")
	if err := os.WriteFile(msg, []byte("Subject: x\n\nbody\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stdin, err := os.Open(msg)
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, filepath.Join(filepath.Dir(binary), "qmail-remote-io"))
	cmd.Env = []string{"PATH=/usr/bin:/bin", "CAFILE=" + p.caFile,
		"QMAILREMOTE_MXNAME=mx.example.test", "QMAILREMOTE_TLSSTRICTNESS=2",
		"QMAILREMOTE_TIMEOUTCONNECT=30", "QMAILREMOTE_TIMEOUTREMOTE=30", "TCPREMOTEIP=127.0.0.1",
		"QMAILREMOTE_HELOHOST=client.example.test", "QMAILREMOTE_SENDER=a@example.test",
		"QMAILREMOTE_RCPTS=1", "QMAILREMOTE_RCPT_1=b@example.test"}
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &stdout, &stderr
	cmd.ExtraFiles = []*os.File{null, null, null, sock, sock}
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v; stdout %q stderr %q", err, stdout.String(), stderr.String())
	}
	srv.wait(t)
	res, err := report.Parse(stdout.Bytes(), 1)
	if err != nil || res.Message.Letter != report.Delivered || len(res.Rcpts) != 1 || res.Rcpts[0].Letter != report.RcptOK {
		t.Fatalf("reports %q (%v), stderr %q", stdout.String(), err, stderr.String())
	}
	if !strings.Contains(res.Message.Text, "TLS: TLSv1.3 ") || !strings.Contains(res.Message.Text, "certificate verified.") {
		t.Errorf("report %q has no TLS line", res.Message.Text)
	}
	if got.String() != "Subject: x\r\n\r\nbody\r\n" {
		t.Errorf("server got %q", got.String())
	}
}
