package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// statusKB returns the fields of /proc/PID/status that are in kB, by name.
func statusKB(pid int, names ...string) map[string]int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return nil
	}
	out := make(map[string]int64, len(names))
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		for _, n := range names {
			if k == n {
				f := strings.Fields(v)
				if len(f) > 0 {
					out[n], _ = strconv.ParseInt(f[0], 10, 64)
				}
			}
		}
	}
	return out
}

// sampleHWM polls pid's VmHWM until stop is closed and sends the largest.
func sampleHWM(pid int, stop <-chan struct{}, result chan<- int64) {
	var best int64
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		if m := statusKB(pid, "VmHWM"); m != nil {
			best = max(best, m["VmHWM"])
		}
		select {
		case <-stop:
			result <- best
			return
		case <-t.C:
		}
	}
}

// sampleTree polls the summed VmRSS of pid and all its descendants until
// stop is closed and sends the largest sum. The sampling stops when stop
// is closed, after pid has been reaped: a last sample then finds nothing.
func sampleTree(pid int, stop <-chan struct{}, result chan<- int64) {
	var best int64
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		// pid first: a short-lived command may be gone once the scan
		// of /proc for its descendants is done.
		sum := statusKB(pid, "VmRSS")["VmRSS"]
		for _, p := range descendants(pid) {
			sum += statusKB(p, "VmRSS")["VmRSS"]
		}
		best = max(best, sum)
		select {
		case <-stop:
			result <- best
			return
		case <-t.C:
		}
	}
}

// descendants returns every process below root, from /proc/*/stat.
func descendants(root int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		children[ppid] = append(children[ppid], pid)
	}
	var out []int
	queue := []int{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// concurrent runs copies of argv at once and reports the rate, the
// failures and the peak total memory of all their processes.
func concurrent(prefix string, copies int, argv, env []string, in, expect string) {
	stop := make(chan struct{})
	var peakRSS, peakAnon, peakProcs int64
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			var rss, anon int64
			pids := descendants(os.Getpid())
			for _, p := range pids {
				m := statusKB(p, "VmRSS", "RssAnon")
				rss += m["VmRSS"]
				anon += m["RssAnon"]
			}
			peakRSS, peakAnon = max(peakRSS, rss), max(peakAnon, anon)
			peakProcs = max(peakProcs, int64(len(pids)))
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	var cpu time.Duration
	start := time.Now()
	for i := 0; i < copies; i++ {
		cmd, out := command(argv, env, in)
		if err := cmd.Start(); err != nil {
			die("starting copy %d: %v", i+1, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd.Wait()
			if cmd.ProcessState != nil {
				mu.Lock()
				cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
				mu.Unlock()
			}
			if expect != "" {
				if got := lastLetter(out.Bytes()); got != expect || cmd.ProcessState.ExitCode() != 0 {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("exit %d, output %q", cmd.ProcessState.ExitCode(), out.String()))
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	close(stop)
	<-sampled
	fmt.Printf("%s_copies: %d\n", prefix, copies)
	fmt.Printf("%s_failed: %d\n", prefix, len(failures))
	fmt.Printf("%s_wall_ms: %s ms\n", prefix, ms(wall))
	fmt.Printf("%s_per_s: %.1f deliveries/s\n", prefix, float64(copies)/wall.Seconds())
	fmt.Printf("%s_cpu_ms_total: %s ms\n", prefix, ms(cpu))
	fmt.Printf("%s_peak_procs: %d processes\n", prefix, peakProcs)
	fmt.Printf("%s_peak_total_rss: %d kB\n", prefix, peakRSS)
	fmt.Printf("%s_peak_total_anon: %d kB\n", prefix, peakAnon)
	if len(failures) > 0 {
		die("%d of %d failed; first: %s", len(failures), copies, failures[0])
	}
}

// startTLS brings a fresh SMTP connection to the point of the TLS
// handshake: greeting, EHLO, STARTTLS, 220. It reads byte by byte so
// that nothing after the 220 is taken from the socket.
func startTLS(c net.Conn) error {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	br := bufio.NewReaderSize(oneByte{c}, 16)
	for _, cmd := range []string{"", "EHLO runstat.example.test", "STARTTLS"} {
		if cmd != "" {
			if _, err := io.WriteString(c, cmd+"\r\n"); err != nil {
				return err
			}
		}
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				return err
			}
			if len(l) < 4 || (cmd == "" || cmd == "STARTTLS") && l[:3] != "220" || cmd != "" && cmd != "STARTTLS" && l[:3] != "250" {
				return errors.New("unexpected reply " + strings.TrimSpace(l))
			}
			if l[3] == ' ' {
				break
			}
		}
	}
	return nil
}

// oneByte reads at most one byte at a time.
type oneByte struct{ r io.Reader }

func (o oneByte) Read(p []byte) (int, error) { return o.r.Read(p[:min(1, len(p))]) }
