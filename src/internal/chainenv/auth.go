package chainenv

// Set by qmail-remote-routes when control/smtpauth has credentials for the
// route's relay and port: how the TLS session that carries the password
// starts, AuthStartTLS or AuthSMTPS. Never the user or the password:
// qmail-remote-io reads those from the file itself.
const Auth = "QMAILREMOTE_AUTH"

// Set by qmail-remote-routes with Auth when the credentials are a
// sender's (a control/smtpauth line starting <sender>:): that sender key,
// angle brackets and all, so that qmail-remote-io reads the very line
// the routes stage found. Unset for the relay's own credentials.
const AuthSender = "QMAILREMOTE_AUTHSENDER"

const (
	AuthStartTLS = "starttls" // STARTTLS, then AUTH (submission, port 587)
	AuthSMTPS    = "smtps"    // TLS from the first byte, then AUTH (RFC 8314, port 465)
)
