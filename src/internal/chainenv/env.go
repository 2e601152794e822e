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
