package qmailremoteio

// testCrash is set only in a binary built with -tags crashtest (crashtest.go),
// for the test suite: the crashes that the guard must survive.
var testCrash func(when string)

// crashHere crashes the program at when, if the test binary says so.
func crashHere(when string) {
	if testCrash != nil {
		testCrash(when)
	}
}
