package chainenv

// Set by qmail-remote-routes when control/smtpauth has credentials for the
// route's relay and port: how the TLS session that carries the password
// starts, AuthStartTLS or AuthSMTPS. Never the user or the password:
// qmail-remote-io reads those from the file itself.
const Auth = "QMAILREMOTE_AUTH"

const (
	AuthStartTLS = "starttls" // STARTTLS, then AUTH (submission, port 587)
	AuthSMTPS    = "smtps"    // TLS from the first byte, then AUTH (RFC 8314, port 465)
)
