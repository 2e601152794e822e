package qmailnewtlspolicy

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A FIFO in place of the text, the lock or the cdb must not hang the
// admin's terminal: the text and the lock are errors naming the file (exit
// 111), a cdb is replaced as a damaged one is. A hang is killed after a
// generous backstop and fails the test.
func TestNotRegular(t *testing.T) {
	for _, tc := range []struct {
		name string
		path func(home string) string
		code int
		want string // stderr after "qmail-newtlspolicy: fatal: ", with HOME for the home
	}{
		{"text", func(h string) string { return filepath.Join(h, "control", "tlspolicy") }, 111,
			"control/tlspolicy: not a regular file (a FIFO)\n"},
		{"lock", func(h string) string { return filepath.Join(h, "run", "qmail-remote", "tlspolicy.lock") }, 111,
			"HOME/run/qmail-remote/tlspolicy.lock: not a regular file (a FIFO)\n"},
		{"cdb", func(h string) string { return filepath.Join(h, "run", "qmail-remote", "tlspolicy.cdb") }, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			home, cdbPath := setup(t, "a.test:may\n")
			p := tc.path(home)
			os.MkdirAll(filepath.Dir(p), 0o755)
			os.Remove(p)
			if err := syscall.Mkfifo(p, 0o644); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin)
			cmd.Env = []string{"QMAILREMOTE_QMAILHOME=" + home}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			if ctx.Err() != nil {
				t.Fatal("qmail-newtlspolicy hung on a FIFO")
			}
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			want := ""
			if tc.want != "" {
				want = "qmail-newtlspolicy: fatal: " + strings.Replace(tc.want, "HOME", home, 1)
			}
			if code != tc.code || stderr.String() != want {
				t.Fatalf("exit %d stderr %q, want %d %q", code, stderr.String(), tc.code, want)
			}
			if st, err := os.Stat(cdbPath); tc.code == 0 && (err != nil || !st.Mode().IsRegular()) {
				t.Errorf("the FIFO was not replaced by a cdb: %v", err)
			}
		})
	}
}
