package qmailremoteprobe

// The result of a probe, as -j prints it (doc/qmail-remote-probe.md has
// every field). The internal steps hand their parts to the front end in
// the same types, one JSON object per line on stdout (steps.go), so the
// field names below are the documented interface: add fields, never
// rename one.

// Result is the whole probe.
type Result struct {
	Version     int    `json:"version"` // of this format: 1
	Destination string `json:"destination"`
	// Route and Policy are what qmail-remote-routes settled on; nil when
	// the routes stage ended the delivery itself (a broken smtproutes).
	Route  *Route  `json:"route"`
	Policy *Policy `json:"policy"`
	// Ended: the chain ended the delivery before any connection (routes
	// or resolve printed the message report); no host was probed.
	Ended *Ended `json:"ended"`
	// MX is the probe's own MX lookup, for display (preferences, DNSSEC);
	// nil for a relay or an address literal, or when the chain ended.
	MX *Lookup `json:"mx"`
	// Candidates is how many addresses qmail-remote-resolve gave, Probed
	// how many of them were probed (the first ones: -n).
	Candidates int `json:"candidates"`
	Probed     int `json:"probed"`
	// DANEHosts lists the hosts qmail-remote-resolve found DNSSEC-secure
	// TLSA records for (QMAILREMOTE_DANE).
	DANEHosts []string `json:"dane_hosts"`
	// STS is the destination's MTA-STS policy as qmail-remote-resolve
	// applied it; nil when none applies (doc/mta-sts.md).
	STS   *STS   `json:"mta_sts"`
	Hosts []Host `json:"hosts"`
	// NotCandidates are MX hosts of the probe's own lookup that are not
	// among the candidates (no usable address, the ipme rule, or set
	// aside for DANE).
	NotCandidates []string `json:"mx_not_candidates"`
	Notes         []string `json:"notes"`
}

// STS is an MTA-STS policy (RFC 8461) that applies to the delivery.
type STS struct {
	Mode   string   `json:"mode"`   // enforce or testing
	Policy []string `json:"policy"` // its lines
}

// Route is where the mail goes.
type Route struct {
	Relay string `json:"relay"` // "" for an MX lookup
	// RelaySource: "smtproutes", "senderroutes <key>" (the key of the
	// control/senderroutes line, as in SenderRoute), "-r" or "none".
	RelaySource string `json:"relay_source"`
	Port        int    `json:"port"`
	PortSource  string `json:"port_source"` // "smtproutes", "senderroutes <key>", "-p" or "default"
	// Auth is control/smtpauth's method for the relay and port
	// ("starttls", "smtps"), "" for none. The probe never authenticates.
	Auth string `json:"auth"`
	// AuthSender is the sender key (<@example.org>) of the control/smtpauth
	// line whose credentials these are; "" for the relay's own, or none.
	AuthSender string `json:"auth_sender"`
	// Sender is -f's envelope sender as the stages got it in
	// QMAILREMOTE_SENDER ("" a bounce, "#@[]" a double bounce); nil
	// without -f: then no line keyed by sender applies.
	Sender *string `json:"sender"`
	// SenderRoute is the key of the control/senderroutes line that chose
	// the route (QMAILREMOTE_SENDERROUTE: <@example.org>, <>, ...); ""
	// when smtproutes did.
	SenderRoute string `json:"sender_route"`
	// OutgoingIP is control/outgoingip's addresses to connect from
	// (QMAILREMOTE_OUTGOINGIP: an IPv4 address, an IPv6 address or one
	// of each, IPv4 first, a space between); "" when the kernel chooses.
	OutgoingIP string `json:"outgoing_ip"`
}

// Policy is what decides TLS for the destination.
type Policy struct {
	// Level is control/tlspolicy's for the destination (or -l's), ""
	// when no line applies: then tlsstrictness decides.
	Level       string `json:"level"`
	LevelSource string `json:"level_source"` // "control/tlspolicy", "-l" or "none"
	// FileLevel is what control/tlspolicy says for the destination (""
	// when no line applies), and Key the domain of that line ("" the
	// default line; ".suffix"; a domain; an address literal). Level
	// differs from FileLevel under -l, and when control/smtpauth's
	// credentials raised it to verify.
	FileLevel    string   `json:"file_level"`
	Key          string   `json:"key"`
	Match        []string `json:"match"` // control/tlspolicy match= names
	Pins         []string `json:"pins"`  // control/tlspolicy pins, SPKI SHA-256 hex
	Strictness   int      `json:"tlsstrictness"`
	TrustAnchors string   `json:"trustanchors"` // control/trustanchors, "" unset
	// Why says in words which rule applies.
	Why string `json:"why"`
}

// Ended is a delivery that the chain decided before any connection.
type Ended struct {
	Stage  string `json:"stage"`  // qmail-remote-routes or qmail-remote-resolve
	Letter string `json:"letter"` // "D" (bounce) or "Z" (wait and retry)
	Text   string `json:"text"`
	Means  string `json:"means"`
}

// Lookup is one DNS lookup made for display.
type Lookup struct {
	Name string `json:"name"`
	Type string `json:"type"` // "MX", "TLSA", "A/AAAA"
	// Status: "found", "NODATA", "NXDOMAIN", "temporary failure", or
	// "not looked up".
	Status  string   `json:"status"`
	Secure  bool     `json:"secure"` // DNSSEC: the AD bit from a trusted resolver
	Records []string `json:"records"`
	Error   string   `json:"error"`
}

// Host is one probed candidate.
type Host struct {
	Name       string `json:"name"`    // MX name, relay, or [address]
	Address    string `json:"address"` // the address connected to
	Preference *int   `json:"preference"`
	// DANE: qmail-remote-resolve found DNSSEC-secure TLSA records for
	// this host (QMAILREMOTE_DANE).
	DANE bool `json:"dane"`
	// Level is the level that applies to this host (control/tlspolicy's,
	// dane turned into may for a host without DANE), "" when
	// tlsstrictness decides; Mode is what a delivery does about STARTTLS
	// on the first attempt: "none", "try" or "require".
	Level  string `json:"level"`
	Mode   string `json:"mode"`
	Policy string `json:"policy"` // why, in words
	// Tcpto: a delivery would skip this address now (recent connect
	// timeouts); the probe connects anyway.
	Tcpto bool `json:"tcpto_skip"`

	Addresses *Lookup `json:"addresses"` // A/AAAA of the name, DNSSEC status
	TLSA      *Lookup `json:"tlsa"`

	Connect  Step    `json:"connect"`
	Greeting *Step   `json:"greeting"`
	EHLO     *EHLO   `json:"ehlo"`
	StartTLS *Step   `json:"starttls"`
	TLS      *TLS    `json:"tls"`
	EHLOTLS  *EHLO   `json:"ehlo_tls"` // EHLO again under TLS
	Checks   *Checks `json:"checks"`

	Verdict Verdict `json:"verdict"`
}

// Step is one step of the conversation: whether it worked, the server's
// reply, and what went wrong.
type Step struct {
	OK    bool   `json:"ok"`
	Reply string `json:"reply"` // the server's reply, lines joined by "\n"
	Error string `json:"error"`
	Ms    int64  `json:"ms"` // how long it took
}

// EHLO is the answer to EHLO (or HELO, when EHLO failed).
type EHLO struct {
	Step
	Command  string   `json:"command"`  // "EHLO" or "HELO"
	Keywords []string `json:"keywords"` // extensions, upper case, as offered
	StartTLS bool     `json:"starttls"` // STARTTLS offered
}

// TLS is the session, or why there is none.
type TLS struct {
	OK           bool   `json:"ok"`
	Error        string `json:"error"`
	Version      string `json:"version"` // TLSv1.3 ...
	Cipher       string `json:"cipher"`
	SNI          string `json:"sni"` // what was sent, "" for none
	Certificates []Cert `json:"certificates"`
	Ms           int64  `json:"ms"`
	Config       string `json:"config"` // "delivery": the delivery's own settings; "probe": anything goes (a delivery would not do STARTTLS)
	// Dropped counts certificates past the first maxCerts, not shown.
	Dropped int `json:"certificates_dropped"`
}

// Cert is one certificate of the chain, as the server sent it.
type Cert struct {
	Depth      int      `json:"depth"`
	Subject    string   `json:"subject"`
	Issuer     string   `json:"issuer"`
	DNSNames   []string `json:"dns_names"`
	IPs        []string `json:"ip_addresses"`
	NotBefore  string   `json:"not_before"` // RFC 3339, UTC
	NotAfter   string   `json:"not_after"`
	SPKISHA256 string   `json:"spki_sha256"` // the data of a 3 1 1 record
	SHA256     string   `json:"sha256"`      // of the whole certificate: a 3 0 1 record
	CA         bool     `json:"ca"`
}

// Checks are the verification methods, each tried on the chain the
// server sent, whatever the policy says.
type Checks struct {
	// PKIX: the chain against control/trustanchors and the name (the
	// MX name, or the match= names); Chain and Name are its two halves.
	PKIX  Check `json:"pkix"`
	Chain Check `json:"pkix_chain"`
	Name  Check `json:"name"`
	// DANE: dane.Verify's verdict on the host's TLSA records (those of
	// QMAILREMOTE_DANE, else those the probe found itself), and each
	// record on its own.
	DANE    Check       `json:"dane"`
	Records []TLSACheck `json:"tlsa_records"`
	Pins    Check       `json:"pins"`
	// Delivery is the verification the delivery itself does at this
	// host's level, as run in the probe's handshake: "pass" with By, or
	// "fail", or "skipped" when the delivery would not do STARTTLS.
	Delivery Check `json:"delivery"`
}

// Check is the result of one method: Result "pass", "fail" or "skipped".
type Check struct {
	Result string `json:"result"`
	By     string `json:"by"` // how it passed: "PKIX", "DANE-EE 3 1 1" ...
	Detail string `json:"detail"`
}

// TLSACheck is one TLSA record against the chain.
type TLSACheck struct {
	Record  string `json:"record"`  // "3 1 1 hex"
	Usable  bool   `json:"usable"`  // RFC 7672 3.1.3: DANE-TA or DANE-EE, known parameters
	Matches []int  `json:"matches"` // depths of the certificates it matches
}

// Verdict is what a delivery would do with this host.
type Verdict struct {
	// Action: "tls-verified", "tls-unverified", "cleartext",
	// "cleartext-fallback" (TLS fails, the same address in cleartext),
	// "second-pass" (only in cleartext, after every host failed under
	// TLS), "skip" (this host is not used: the next candidate).
	Action string `json:"action"`
	Text   string `json:"text"`
}

// Output of the internal steps (steps.go): one line each.
type routeLine struct {
	Route  *Route  `json:"route"`
	Policy *Policy `json:"policy"`
}

type probeLine struct {
	Probe *Result `json:"probe"`
}
