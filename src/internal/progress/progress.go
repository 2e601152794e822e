// Package progress is the delivery's progress cell: two bytes in a small
// memory file (memfd) that every program of the chain shares through an
// inherited descriptor, so that whoever outlives a stage that died knows
// how far the conversation got. It answers one question (doc/chain.md,
// "The progress cell"): may the final dot have gone out? "Possible
// duplicate!" belongs in a Z exactly when it may have, and never
// otherwise: a stage killed at the greeting delivered nothing, and a
// chain that died after the dot may have delivered everything.
//
// qmail-remote creates the cell and hands it down as fd 3 (named in
// QMAILREMOTE_PROGRESSFD); qmail-remote-connect resets it before each
// connection and hands it to qmail-remote-io, which says when it starts
// and when it is about to write the dot; qmail-remote-tlsio says that it
// is the program running on the connection now, and hands the cell on.
// A byte written with pwrite(2) is there for every reader at once, and
// stays there when the writer is killed a moment later: no pipe to drain,
// no message to lose.
//
//	byte 0, the phase      byte 1, the program on the connection
//	  n  no connection yet    i  the SMTP stage the connector ran
//	  c  connected: unknown   t  it exec'd the TLS stage
//	  b  SMTP stage, no dot
//	  d  the dot may be out
//
// A program that does not know the cell (a foreign SMTP stage) leaves c
// in place, which reads as "the dot may be out": unknown is never taken
// for safe.
package progress

import (
	"fmt"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// Env names the variable holding the cell's descriptor number.
const Env = "QMAILREMOTE_PROGRESSFD"

// FD is where qmail-remote, qmail-remote-connect and qmail-remote-tlsio
// put the cell for their children.
const FD = 3

// Phases (byte 0).
const (
	NotConnected = 'n' // no stage has run on a connection yet
	Connected    = 'c' // a stage runs on a connection and has said nothing yet
	BeforeDot    = 'b' // qmail-remote-io runs and has not begun to write the dot
	Dot          = 'd' // the final dot was, or may have been, written
)

// Programs on the connection (byte 1).
const (
	StageSMTP = 'i' // the program the connector ran (qmail-remote-io)
	StageTLS  = 't' // qmail-remote-tlsio, which that program exec'd
)

// Cell is an open progress cell. A nil *Cell is valid: it records nothing
// and reads as unknown.
type Cell struct {
	f *os.File
}

// Create makes a new cell, phase NotConnected, closed on exec unless
// passed on explicitly (exec.Cmd.ExtraFiles).
func Create() (*Cell, error) {
	fd, err := unix.MemfdCreate("qmail-remote-progress", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("unable to create the progress cell: %w", err)
	}
	c := &Cell{os.NewFile(uintptr(fd), "progress")}
	c.write(0, NotConnected, StageSMTP)
	cells.Store(fd, c)
	return c, nil
}

// cells are the cells this process holds, by descriptor: a program run
// in the same process as the one that made or opened the cell gets the
// same *Cell, never a second *os.File whose finalizer would close the
// descriptor under the first.
var cells sync.Map

// EnvValue is the value of QMAILREMOTE_PROGRESSFD that names c in this
// process.
func (c *Cell) EnvValue() string { return strconv.Itoa(int(c.f.Fd())) }

// Close closes the cell's descriptor.
func (c *Cell) Close() error {
	if c == nil {
		return nil
	}
	cells.Delete(int(c.f.Fd()))
	return c.f.Close()
}

// FromEnv opens the cell named in QMAILREMOTE_PROGRESSFD: nil and no error
// when the variable is unset (a program run by hand), an error naming the
// variable when it does not hold an open descriptor.
func FromEnv() (*Cell, error) {
	v, ok := os.LookupEnv(Env)
	if !ok {
		return nil, nil
	}
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 || strconv.Itoa(fd) != v {
		return nil, fmt.Errorf("%s must be a descriptor number of 3 or more, not %q", Env, v)
	}
	if c, ok := cells.Load(fd); ok {
		return c.(*Cell), nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("%s names fd %d, which is not open: %v", Env, fd, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%s names fd %d, which is not a progress cell (a memory file)", Env, fd)
	}
	c, _ := cells.LoadOrStore(fd, &Cell{os.NewFile(uintptr(fd), "progress")})
	return c.(*Cell), nil
}

// File is the cell's descriptor, to hand to a child (exec.Cmd.ExtraFiles);
// nil for a nil cell.
func (c *Cell) File() *os.File {
	if c == nil {
		return nil
	}
	return c.f
}

// Set records the phase.
func (c *Cell) Set(phase byte) { c.write(0, phase) }

// SetStage records which program runs on the connection.
func (c *Cell) SetStage(stage byte) { c.write(1, stage) }

// Reset is what the connector writes before it runs a program on a new
// connection: connected, nothing known.
func (c *Cell) Reset() { c.write(0, Connected, StageSMTP) }

// write stores b at off. Errors are ignored on purpose: the cell only
// sharpens a report, and a failed write leaves an older phase, which
// says "possible duplicate" at worst after a connection was made.
func (c *Cell) write(off int64, b ...byte) {
	if c == nil {
		return
	}
	unix.Pwrite(int(c.f.Fd()), b, off)
}

// Read returns the phase and the program on the connection; an unreadable
// or nil cell reads as Connected (unknown).
func (c *Cell) Read() (phase, stage byte) {
	if c == nil {
		return Connected, StageSMTP
	}
	b := make([]byte, 2)
	if n, err := unix.Pread(int(c.f.Fd()), b, 0); err != nil || n != 2 {
		return Connected, StageSMTP
	}
	return b[0], b[1]
}

// DotMayBeOut says whether a delivery that ended without a report at
// phase may have delivered the message: anything but the two phases that
// are known to come before the dot.
func DotMayBeOut(phase byte) bool {
	return phase != NotConnected && phase != BeforeDot
}
