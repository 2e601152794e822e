// Package testkit holds nothing: its subpackages are for the tests only
// (test SMTP, DNS and TLS servers, the build of the programs under test),
// apart from src/internal, which holds what ships.
package testkit
