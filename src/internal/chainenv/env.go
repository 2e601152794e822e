package chainenv

import (
	"os"
	"slices"
	"strings"
)

// Without returns the process environment minus the variables named:
// a stage that sets variables for the next one first drops any inherited
// value, so nothing stale or forged from further up can pass for its own.
func Without(names ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(names, k) {
			env = append(env, kv)
		}
	}
	return env
}

// Replace makes env (NAME=value strings) the process's whole environment:
// what a program run in this process in place of an exec must see. Go
// keeps the environment in the process (no cgo), so nothing else sees it.
func Replace(env []string) {
	os.Clearenv()
	for _, kv := range env {
		// The first of two of a name wins, as in a Go program's
		// environment after an exec.
		if k, v, ok := strings.Cut(kv, "="); ok {
			if _, set := os.LookupEnv(k); !set {
				os.Setenv(k, v)
			}
		}
	}
}

// WithoutIn is env without the variables called names.
func WithoutIn(env []string, names ...string) []string {
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(names, k) {
			out = append(out, kv)
		}
	}
	return out
}
