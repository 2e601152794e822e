// Package backstop fails a test whose call does not return: for the
// tests of opens that must never block (a FIFO in place of a file).
package backstop

import (
	"testing"
	"time"
)

// Bound is far longer than any open or read of a test takes, however
// busy the machine: reaching it means the call blocks.
const Bound = 30 * time.Second

// Within runs f and returns its error, or fails the test if f has not
// returned within Bound; what names the call in the failure.
func Within(t testing.TB, what string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(Bound):
		t.Fatalf("%s blocked", what)
		return nil
	}
}
