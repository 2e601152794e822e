// runstat runs a command several times and reports its wall time and peak
// memory, for tools/timing.sh. It exists because GNU time may be missing on
// a fresh machine.
//
// What the memory figure means: the kernel's ru_maxrss from wait4(2) for
// the command's process, which is the largest resident set of that process
// over every image it exec'd into AND of every descendant it waited for.
// A chainloading stage that execs into the next one therefore cannot be
// measured inside the full chain; timing.sh measures each program alone,
// with the next stage replaced by a trivial program.
//
// -dump FILE writes the environment (NUL-separated) to FILE and execs the
// command: timing.sh uses it to capture what each stage receives in a real
// delivery, and -e replays it.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"
)

const usage = "runstat [ -n runs ] [ -i stdinfile ] [ -e envfile ] [ -fd67 addr:port ] [ -expect letter ] [ -name name ] prog [ args... ]\n" +
	"       runstat -dump envfile prog [ args... ]"

func main() {
	fs := flag.NewFlagSet("runstat", flag.ContinueOnError)
	n := fs.Int("n", 1, "")
	in := fs.String("i", "", "")
	envFile := fs.String("e", "", "")
	dump := fs.String("dump", "", "")
	dial := fs.String("fd67", "", "")
	expect := fs.String("expect", "", "")
	name := fs.String("name", "", "")
	if err := fs.Parse(os.Args[1:]); err != nil || fs.NArg() == 0 || *n < 1 || *n > 10000 || len(*expect) > 1 {
		fmt.Fprintf(os.Stderr, "usage: %s\n", usage)
		os.Exit(100)
	}
	argv := fs.Args()
	if *dump != "" {
		var b bytes.Buffer
		for _, kv := range os.Environ() {
			b.WriteString(kv + "\x00")
		}
		if err := os.WriteFile(*dump, b.Bytes(), 0o600); err != nil {
			die("%v", err)
		}
		path, err := exec.LookPath(argv[0])
		if err != nil {
			die("%v", err)
		}
		die("exec %s: %v", path, syscall.Exec(path, argv, os.Environ()))
	}
	env := os.Environ()
	if *envFile != "" {
		b, err := os.ReadFile(*envFile)
		if err != nil {
			die("%v", err)
		}
		env = strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
	}
	prefix := "wall"
	if *name != "" {
		prefix = *name
	}

	var walls []time.Duration
	var maxrss int64
	for i := 0; i < *n; i++ {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = env
		if *in != "" {
			f, err := os.Open(*in)
			if err != nil {
				die("%v", err)
			}
			defer f.Close()
			cmd.Stdin = f
		}
		// As qmail-rspawn: fd 2 is the same pipe as fd 1.
		var out bytes.Buffer
		cmd.Stdout = &out
		cmd.Stderr = &out
		if *dial != "" {
			c, err := net.Dial("tcp", *dial)
			if err != nil {
				die("%v", err)
			}
			f, err := c.(*net.TCPConn).File()
			if err != nil {
				die("%v", err)
			}
			c.Close()
			// ExtraFiles[i] becomes fd 3+i: the socket on 6 and 7.
			cmd.ExtraFiles = []*os.File{nil, nil, nil, f, f}
			defer f.Close()
		}
		start := time.Now()
		err := cmd.Run()
		walls = append(walls, time.Since(start))
		if cmd.ProcessState == nil {
			die("running %s: %v", argv[0], err)
		}
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			maxrss = max(maxrss, int64(ru.Maxrss)) // kilobytes on Linux
		}
		if *expect != "" {
			if got := lastLetter(out.Bytes()); got != *expect || cmd.ProcessState.ExitCode() != 0 {
				die("run %d: expected a %s report and exit 0, got exit %d and output %q", i+1, *expect, cmd.ProcessState.ExitCode(), out.String())
			}
		}
	}
	slices.Sort(walls)
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d.Microseconds())/1000) }
	fmt.Printf("%s_runs: %d\n", prefix, len(walls))
	fmt.Printf("%s_ms_median: %s ms\n", prefix, ms(walls[len(walls)/2]))
	fmt.Printf("%s_ms_p90: %s ms\n", prefix, ms(walls[(len(walls)*9+9)/10-1]))
	fmt.Printf("%s_maxrss: %d kB\n", prefix, maxrss)
}

// lastLetter is the letter of the last report in out (reports end in NUL).
func lastLetter(out []byte) string {
	out = bytes.TrimSuffix(out, []byte{0})
	if i := bytes.LastIndexByte(out, 0); i >= 0 {
		out = out[i+1:]
	}
	if len(out) == 0 {
		return ""
	}
	return string(out[:1])
}

func die(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "runstat: fatal: %s\n", fmt.Sprintf(format, args...))
	os.Exit(111)
}
