// Package ascii folds case the way mail names are compared: A to Z only.
// Unicode case mapping would make different bytes equal ("\u212A.example",
// with the Kelvin sign, and "k.example") and change byte offsets; every
// name, key and secret that is matched without case goes through here.
package ascii

// Lower returns s with A-Z lowered and every other byte as it is; s
// itself when it has no upper-case letter (no allocation).
func Lower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; c >= 'A' && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
