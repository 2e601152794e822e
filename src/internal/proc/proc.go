// Package proc runs the programs of the chain that stay real processes:
// a stage that is not ours under qmail-remote's guard, a qmail-remote-io
// that is not ours under the connector, a TLS stage that is not ours
// under qmail-remote-io, and qmail-remote-io under qmail-remote-tlsio.
// One way to start them, and one way to say how they ended.
package proc

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"

	"qmail-remote-go/src/internal/chain"
)

// Run starts cmd so that it is killed if we die (a stage that goes on
// talking to a server with nobody left to report what it did would
// deliver twice), calls during while it runs (reading its pipes, say),
// and waits for it. It returns Start's error, or how the child ended.
//
// The kill is PR_SET_PDEATHSIG, which fires when the thread that forked
// exits, not the process: the goroutine keeps its thread until the child
// is reaped.
func Run(cmd *exec.Cmd, during func()) (chain.Ended, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := cmd.Start(); err != nil {
		return chain.Ended{}, err
	}
	if during != nil {
		during()
	}
	cmd.Wait()
	return EndOf(cmd.ProcessState), nil
}

// EndOf says how a child process ended: its exit code, or the signal
// that killed it.
func EndOf(st *os.ProcessState) chain.Ended {
	if st == nil {
		return chain.Ended{How: "never started"}
	}
	ws, _ := st.Sys().(syscall.WaitStatus)
	switch {
	case ws.Exited():
		return chain.Ended{Exited: true, Code: ws.ExitStatus()}
	case ws.Signaled():
		return chain.Ended{How: fmt.Sprintf("killed by signal %d (%v)", int(ws.Signal()), ws.Signal())}
	}
	return chain.Ended{How: "ended in an unknown way: " + st.String()}
}

// Bounded keeps the first Max bytes written to it and drops the rest;
// Over says that Max bytes or more came, as readBounded says of a pipe.
type Bounded struct {
	Max  int64
	B    []byte
	Over bool
}

func (b *Bounded) Write(p []byte) (int, error) {
	room := max(b.Max-int64(len(b.B)), 0)
	b.B = append(b.B, p[:min(int64(len(p)), room)]...)
	if int64(len(b.B)) >= b.Max {
		b.Over = true
	}
	return len(p), nil
}

// FirstLine is the first line of what was kept, trimmed: the line a
// failing stage writes about itself ("prog: fatal: ...").
func (b *Bounded) FirstLine() string {
	l, _, _ := strings.Cut(strings.TrimSpace(string(b.B)), "\n")
	return l
}
