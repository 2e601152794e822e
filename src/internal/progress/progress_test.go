package progress

import (
	"os"
	"os/exec"
	"strconv"
	"testing"
)

func TestCell(t *testing.T) {
	c, err := Create()
	if err != nil {
		t.Fatal(err)
	}
	if p, s := c.Read(); p != NotConnected || s != StageSMTP {
		t.Errorf("new cell reads %c%c", p, s)
	}
	c.Reset()
	if p, _ := c.Read(); p != Connected || !DotMayBeOut(p) {
		t.Errorf("after Reset: %c", p)
	}
	c.Set(BeforeDot)
	c.SetStage(StageTLS)
	if p, s := c.Read(); p != BeforeDot || s != StageTLS || DotMayBeOut(p) {
		t.Errorf("after Set: %c%c", p, s)
	}
	c.Set(Dot)
	if p, _ := c.Read(); !DotMayBeOut(p) {
		t.Errorf("Dot: %c", p)
	}
	var none *Cell
	none.Set(Dot) // no-op, no panic
	if p, _ := none.Read(); !DotMayBeOut(p) {
		t.Error("a nil cell must read as unknown, i.e. the dot may be out")
	}
}

// TestShared: a child writes, the parent reads, after the child is gone
// (killed, in real life): the point of the cell.
func TestShared(t *testing.T) {
	if os.Getenv("PROGRESS_CHILD") != "" {
		c, err := FromEnv()
		if err != nil || c == nil {
			os.Exit(3)
		}
		c.Set(Dot)
		os.Exit(0)
	}
	c, err := Create()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestShared$")
	cmd.Env = append(os.Environ(), "PROGRESS_CHILD=1", Env+"="+strconv.Itoa(FD))
	cmd.ExtraFiles = []*os.File{c.File()}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v %s", err, out)
	}
	if p, _ := c.Read(); p != Dot {
		t.Errorf("parent reads %c, want %c", p, Dot)
	}
}

func TestFromEnv(t *testing.T) {
	for _, v := range []string{"x", "1", "03", "-4", "999"} {
		t.Setenv(Env, v)
		if c, err := FromEnv(); err == nil {
			t.Errorf("%s=%q accepted: %v", Env, v, c)
		}
	}
	f, err := os.CreateTemp(t.TempDir(), "x")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, w, _ := os.Pipe()
	defer r.Close()
	defer w.Close()
	t.Setenv(Env, strconv.Itoa(int(r.Fd())))
	if _, err := FromEnv(); err == nil {
		t.Error("a pipe accepted as a cell")
	}
	os.Unsetenv(Env)
	if c, err := FromEnv(); c != nil || err != nil {
		t.Errorf("unset: %v %v", c, err)
	}
}
