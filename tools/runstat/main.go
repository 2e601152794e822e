// runstat runs a command several times and reports its wall time and peak
// memory, for tools/bench.sh. It exists because GNU time may be missing on
// a fresh machine.
//
// What the memory figure means: the kernel's ru_maxrss from wait4(2) for
// the command's process, which is the largest resident set of that process
// over every image it exec'd into AND of every descendant it waited for.
// A chainloading stage that execs into the next one therefore cannot be
// measured inside the full chain; bench.sh measures each program alone,
// with the next stage replaced by a trivial program.
//
// And ru_maxrss has a floor: os/exec starts the command with vfork
// (CLONE_VM, runstat's memory shared until the exec), and at the exec the
// kernel records the high-water mark of the memory being left, runstat's,
// as the command's ru_maxrss so far. /bin/true run by runstat has a
// ru_maxrss of about 3 MB, its own peak being under 2. NAME_maxrss_floor
// is runstat's VmHWM just before it started the command (the largest
// over the runs): a NAME_maxrss at or near it measures runstat, not the
// command. -hwm and -tree read /proc instead and have no such floor.
//
// -hwm also samples the command's own peak resident set (VmHWM in
// /proc/PID/status) while it runs, which excludes its children: for a
// program that spawns its next stage (qmail-remote-tlsio). The sample is
// a lower bound that is exact once the program has reached its plateau.
// A process that execs starts a new VmHWM with each image: the figure is
// then the largest image's (what it grew in its last 2 ms not seen).
//
// -tree samples, every 2 ms, the sum of VmRSS over the whole process tree
// of the command (the process it started and all its descendants, found
// through the parent ids in /proc/*/stat) and reports the largest sum,
// over all runs, as NAME_tree_rss: the memory of a whole delivery whose
// stages are processes of their own at the same time (qmail-remote-tlsio
// and its application). Shared pages (a program's text) count once per
// process, so it is an upper bound of what the tree held at that
// instant, and sampled, so short peaks between samples are missed.
// ru_maxrss (NAME_maxrss) is reported as always: for a delivery in one
// process it is the exact figure.
//
// -c N runs N copies at once, each with its own stdin, and reports the
// rate and the total memory of every process of all copies together:
// the peak over time of the summed VmRSS of all descendants (sampled
// every 5 ms; shared pages, such as a program's text, counted once per
// process) and of their summed RssAnon (private memory only); and
// NAME_cpu_ms_total, the CPU time (user+system, from wait4) of all
// copies together, each with the descendants it waited for.
//
// -fd67 ADDR -starttls: before running the command, read the greeting,
// send EHLO and STARTTLS and read the 220, so that the command gets a
// socket ready for the TLS handshake (qmail-remote-tlsio run alone).
//
// -dump FILE writes the environment (NUL-separated) to FILE and execs the
// command: bench.sh uses it to capture what each stage receives in a real
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

const usage = "runstat [ -n runs ] [ -c copies ] [ -i stdinfile ] [ -e envfile ] [ -fd67 addr:port [ -starttls ] ] [ -hwm ] [ -tree ] [ -expect letter ] [ -name name ] prog [ args... ]\n" +
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
	copies := fs.Int("c", 0, "")
	hwm := fs.Bool("hwm", false, "")
	tree := fs.Bool("tree", false, "")
	starttls := fs.Bool("starttls", false, "")
	if err := fs.Parse(os.Args[1:]); err != nil || fs.NArg() == 0 || *n < 1 || *n > 10000 || len(*expect) > 1 ||
		*copies < 0 || *copies > 1000 || (*starttls && *dial == "") || (*copies > 0 && (*dial != "" || *hwm || *tree)) {
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
	if *copies > 0 {
		concurrent(prefix, *copies, argv, env, *in, *expect)
		return
	}

	var walls, cpus []time.Duration
	var maxrss, hwmKB, treeKB, floor int64
	for i := 0; i < *n; i++ {
		cmd, out := command(argv, env, *in)
		if *dial != "" {
			c, err := net.Dial("tcp", *dial)
			if err != nil {
				die("%v", err)
			}
			if *starttls {
				if err := startTLS(c); err != nil {
					die("STARTTLS with %s: %v", *dial, err)
				}
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
		if self := statusKB(os.Getpid(), "VmHWM"); self != nil {
			floor = max(floor, self["VmHWM"])
		}
		start := time.Now()
		err := cmd.Start()
		if err != nil {
			die("running %s: %v", argv[0], err)
		}
		stop := make(chan struct{})
		var hwmDone, treeDone chan int64
		if *hwm {
			hwmDone = make(chan int64, 1)
			go sampleHWM(cmd.Process.Pid, stop, hwmDone)
		}
		if *tree {
			treeDone = make(chan int64, 1)
			go sampleTree(cmd.Process.Pid, stop, treeDone)
		}
		err = cmd.Wait()
		close(stop)
		if *hwm {
			hwmKB = max(hwmKB, <-hwmDone)
		}
		if *tree {
			treeKB = max(treeKB, <-treeDone)
		}
		walls = append(walls, time.Since(start))
		if cmd.ProcessState == nil {
			die("running %s: %v", argv[0], err)
		}
		cpus = append(cpus, cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime())
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
	slices.Sort(cpus)
	fmt.Printf("%s_runs: %d\n", prefix, len(walls))
	fmt.Printf("%s_ms_median: %s ms\n", prefix, ms(walls[len(walls)/2]))
	fmt.Printf("%s_ms_p90: %s ms\n", prefix, ms(walls[(len(walls)*9+9)/10-1]))
	fmt.Printf("%s_cpu_ms_median: %s ms\n", prefix, ms(cpus[len(cpus)/2]))
	fmt.Printf("%s_maxrss: %d kB\n", prefix, maxrss)
	fmt.Printf("%s_maxrss_floor: %d kB\n", prefix, floor)
	if *hwm {
		fmt.Printf("%s_hwm: %d kB\n", prefix, hwmKB)
	}
	if *tree {
		fmt.Printf("%s_tree_rss: %d kB\n", prefix, treeKB)
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d.Microseconds())/1000) }

// command is argv with env, fd 0 the file in (none if ""), and fd 1 and
// fd 2 the same buffer, as qmail-rspawn has them the same pipe. The file
// stays open until runstat exits.
func command(argv, env []string, in string) (*exec.Cmd, *bytes.Buffer) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	if in != "" {
		f, err := os.Open(in)
		if err != nil {
			die("%v", err)
		}
		cmd.Stdin = f
	}
	out := new(bytes.Buffer)
	cmd.Stdout = out
	cmd.Stderr = out
	return cmd, out
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
