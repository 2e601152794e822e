package guard

import (
	"os"
	"runtime/debug"

	"golang.org/x/sys/unix"

	"qmail-remote-go/src/internal/chain"
	"qmail-remote-go/src/internal/chainenv"
	"qmail-remote-go/src/internal/proc"
	"qmail-remote-go/src/internal/progress"
	"qmail-remote-go/src/internal/report"
)

// Protect makes this process fit to run the chain in, as qmail-rspawn's
// child: whatever goes wrong, no exit status 2 (qmail-rspawn would bounce
// the mail), no core file, and nothing on fd 2 (qmail-rspawn's pipe).
//   - A runtime fatal error or a panic that nothing recovers ends in
//     SIGABRT (GOTRACEBACK=crash): death by a signal, which qmail-rspawn
//     reads as "qmail-remote crashed", a temporary failure.
//   - The process is not dumpable: no core file of a process that may
//     hold the smarthost password, and no ptrace by another user.
//   - fd 2 goes to /dev/null: the runtime writes its last words there.
//     Nothing else of ours writes to it: stages write their diagnostics
//     to chain.Stderr, which the guard reads.
func Protect() {
	debug.SetTraceback("crash")
	unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	if fd, err := unix.Open("/dev/null", unix.O_WRONLY|unix.O_CLOEXEC, 0); err == nil {
		if fd != 2 {
			unix.Dup3(fd, 2, 0)
			unix.Close(fd)
		}
	}
}

// InProcess runs the chain argv in this process (chain.Chain) with env as
// its environment, and judges what it printed exactly as Run judges a
// child: one writer that takes what the stages print (bounded as the pipe
// is), then one outcome. A stage that panics is a crash, as a child killed
// by a signal is. When the chain execs a program that is not ours, that
// program and the rest of the chain run as a child, guarded by Run.
func InProcess(argv, env []string, stdin *os.File, nrcpt int) Outcome {
	chainenv.Replace(env)
	cell, err := progress.Create()
	if err == nil {
		defer cell.Close()
		os.Setenv(progress.Env, cell.EnvValue())
	}
	out := &proc.Bounded{Max: int64(nrcpt+1)*report.Max + 1}
	diag := &proc.Bounded{Max: maxStderr}
	chain.Stdout, chain.Stderr = out, diag
	code, foreign, crash := chain.Chain(argv)
	chain.Stdout, chain.Stderr = os.Stdout, os.Stderr
	if foreign != nil && len(out.B) == 0 {
		os.Unsetenv(progress.Env)
		return Run(foreign, os.Environ(), stdin, nrcpt)
	}
	status := chain.Ended{Exited: true, Code: code}.String()
	switch {
	case crash != nil:
		status = "crashed: " + crash.Error()
	case foreign != nil:
		status = "printed reports, then exec'd " + foreign[0]
	}
	phase, _ := cell.Read()
	return judge(out.B, out.Over, diag.B, status, nrcpt, progress.DotMayBeOut(phase))
}
