// Package paths holds the locations fixed at configure time. The Makefile
// sets them with -ldflags -X; they are plain string variables (not
// constants, not initialised by calls) so that -X really lands, and so that
// a bare `go build` still produces a working program with stock defaults.
package paths

// QmailHome is the qmail home directory (./configure --qmaildir).
var QmailHome = "/var/qmail"

// QmailRun is the run directory (./configure --qmailrundir). Empty means
// QmailHome + "/run".
var QmailRun = ""

// LibexecDir is where the chain programs are installed
// (./configure --libexecdir); the default is configure's, for the
// default prefix /usr/local.
var LibexecDir = "/usr/local/libexec/qmail-remote-go"

// Version is the package version (package/info).
var Version = "0.1.0"

// Run returns the configured run directory.
func Run() string {
	if QmailRun != "" {
		return QmailRun
	}
	return QmailHome + "/run"
}
