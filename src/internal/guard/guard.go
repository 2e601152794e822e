// Package guard runs the rest of the delivery chain as a child of
// qmail-remote and makes sure qmail-rspawn gets what it was promised
// (doc/qmail-remote.md): exactly one well-formed message report, whatever
// the chain did.
//
// Why a child and not an exec: qmail-rspawn reads any exit status but 0 or
// 111 as "bounce the mail", and a Go program that panics or hits a runtime
// fatal error exits 2. Only a parent that outlives every stage can turn a
// crash, a signal or garbage into a harmless Z.
package guard

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"qmail-remote-go/src/internal/proc"
	"qmail-remote-go/src/internal/progress"
	"qmail-remote-go/src/internal/report"

	"qmail-remote-go/src/internal/say"
)

// Outcome is what qmail-remote prints: the reports to forward, each one a
// raw report (letter, text, NUL) to be written with its own write(2).
type Outcome struct {
	Reports [][]byte
}

// maxStderr is how much of the chain's diagnostics is kept for a Z text.
const maxStderr = 2048

// Run runs argv with env, fd 0 = stdin, and reads its reports (fd 1) and
// diagnostics (fd 2) from separate pipes, so that nothing the chain writes
// can reach qmail-rspawn unchecked. nrcpt is the number of recipients.
//
// The chain gets the delivery's progress cell on fd 3 (package progress),
// which tells, if the chain dies without a report, whether the dot may
// have gone out: only then does the Z say "Possible duplicate!".
func Run(argv, env []string, stdin *os.File, nrcpt int) Outcome {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Stdin = stdin
	// Without a cell (memfd_create refused) nothing is known, and unknown
	// counts as "the dot may be out".
	cell, cerr := progress.Create()
	if cerr == nil {
		defer cell.Close()
		cmd.ExtraFiles = []*os.File{cell.File()}
		cmd.Env = append(cmd.Env[:len(cmd.Env):len(cmd.Env)], progress.Env+"="+strconv.Itoa(progress.FD))
	}
	outR, err := cmd.StdoutPipe()
	if err != nil {
		return single(report.Temporary, "Unable to run the delivery chain: "+err.Error()+". (#4.3.0)\n")
	}
	errR, err := cmd.StderrPipe()
	if err != nil {
		return single(report.Temporary, "Unable to run the delivery chain: "+err.Error()+". (#4.3.0)\n")
	}
	// Read both pipes to the end, bounded in memory; the excess is drained
	// and discarded so the chain never blocks on a full pipe. If
	// qmail-remote dies, the chain dies too (proc.Run): a K nobody reads
	// would become a duplicate.
	limit := int64(nrcpt+1)*report.Max + 1
	var out, diag []byte
	var over bool
	e, err := proc.Run(cmd, func() {
		errc := make(chan []byte, 1)
		go func() {
			d, _ := readBounded(errR, maxStderr)
			errc <- d
		}()
		out, over = readBounded(outR, limit)
		diag = <-errc
	})
	if err != nil {
		return single(report.Temporary, "Unable to run the delivery chain: "+say.ErrBase(err)+". (#4.3.0)\n")
	}
	phase, _ := cell.Read()
	return judge(out, over, diag, e.String(), nrcpt, progress.DotMayBeOut(phase))
}

// judge decides what qmail-rspawn sees, from what the chain printed, how
// it ended (status), and whether the final dot may have gone out.
func judge(out []byte, over bool, diag []byte, status string, nrcpt int, dotMayBeOut bool) Outcome {
	dup := ""
	if dotMayBeOut {
		dup = " Possible duplicate!"
	}
	if over {
		return single(report.Temporary, fmt.Sprintf(
			"The delivery chain printed more than %d bytes of reports (%s)%s.%s (#4.3.0)\n",
			len(out)-1, status, firstLine(diag), dup))
	}
	res, perr := report.Parse(out, nrcpt)
	if perr == nil {
		// A well-formed report is the truth about the delivery, even if
		// the stage then exited oddly: a K is printed only after the
		// server's 2xx to the final dot, and turning it into a Z would
		// deliver the message twice.
		o := Outcome{}
		for _, r := range res.Rcpts {
			o.Reports = append(o.Reports, r.Raw())
		}
		o.Reports = append(o.Reports, res.Message.Raw())
		return o
	}
	if len(out) == 0 {
		return single(report.Temporary, fmt.Sprintf(
			"The delivery chain failed (%s)%s.%s (#4.3.0)\n", status, firstLine(diag), dup))
	}
	what := perr.Error()
	if errors.Is(perr, report.ErrNoMessage) {
		what = "no message report"
	}
	return single(report.Temporary, fmt.Sprintf(
		"The delivery chain printed malformed reports: %s (%s)%s.%s (#4.3.0)\n", what, status, firstLine(diag), dup))
}

func single(letter byte, text string) Outcome {
	return Outcome{Reports: [][]byte{report.Format(letter, text)}}
}

// Write writes each report with its own single write(2), so a crash can
// never leave half a report in qmail-rspawn's pipe.
func (o Outcome) Write(w io.Writer) {
	for _, r := range o.Reports {
		w.Write(r)
	}
}

func readBounded(r io.Reader, limit int64) ([]byte, bool) {
	var buf bytes.Buffer
	n, _ := io.Copy(&buf, io.LimitReader(r, limit))
	if n < limit {
		return buf.Bytes(), false
	}
	io.Copy(io.Discard, r)
	return buf.Bytes(), true
}

// firstLine gives ": " and the first line of the chain's diagnostics, if
// any: the stage that failed names itself there ("prog: fatal: ...").
func firstLine(diag []byte) string {
	s := strings.TrimSpace(string(diag))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if s == "" {
		return ""
	}
	if len(s) > 1000 {
		s = s[:1000] + "..."
	}
	return ": " + s
}
