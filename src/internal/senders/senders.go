// Package senders is the matching of envelope senders shared by the
// control files keyed by sender (doc/senderroutes.md): control/senderroutes,
// and the sender lines of control/smtpauth and control/outgoingip.
//
// A key is written
//
//	user@example.org    that sender exactly
//	@example.org        any sender at example.org
//	.example.org        any sender at a subdomain of example.org
//	<>                  bounces (the empty sender)
//	<#@[]>              double bounces (qmail's sender for them)
//
// and any key may be written in angle brackets: <user@example.org>,
// <@example.org>, <.example.org>. In senderroutes the brackets are
// optional; in files keyed by destination as well (smtpauth, outgoingip)
// they mark a line as keyed by sender. A bounce matches only "<>" and a
// double bounce only "<#@[]>": a key for a domain never catches them.
//
// Matching ignores case, the local part's included: mail systems treat
// local parts as case-insensitive in practice, and an admin writing
// Alice@example.org means the sender qmail-inject writes alice@example.org.
package senders

import (
	"fmt"
	"strings"

	"qmail-remote-go/src/internal/addrlit"
	"qmail-remote-go/src/internal/ascii"
	"qmail-remote-go/src/internal/say"
)

// The keys of bounces and double bounces, canonical form.
const (
	Bounce       = "<>"
	DoubleBounce = "<#@[]>"
)

// DoubleBounceSender is the envelope sender qmail-send gives double
// bounces (and qmail-remote gets as its argument).
const DoubleBounceSender = "#@[]"

// Keys lists the canonical keys sender is tried under, most specific
// first: the address, "@domain", then ".suffix" for every dot of the
// domain ("a.b.example.org": ".b.example.org", ".example.org", ".org").
// A domain that is an address literal is canonicalised and has no
// suffixes. A sender without '@' has its exact key only.
func Keys(sender string) []string {
	switch sender {
	case "":
		return []string{Bounce}
	case DoubleBounceSender:
		return []string{DoubleBounce}
	}
	at := strings.LastIndexByte(sender, '@')
	if at < 0 {
		return []string{ascii.Lower(sender)}
	}
	local, domain := ascii.Lower(sender[:at]), ascii.Lower(sender[at+1:])
	if strings.HasPrefix(domain, "[") {
		if a, ok := addrlit.Parse(domain); ok {
			domain = addrlit.Canonical(a)
		}
		return []string{local + "@" + domain, "@" + domain}
	}
	domain = strings.TrimSuffix(domain, ".")
	keys := []string{local + "@" + domain}
	if domain == "" {
		return keys
	}
	keys = append(keys, "@"+domain)
	for i := 1; i < len(domain); i++ {
		if domain[i] == '.' && i+1 < len(domain) {
			keys = append(keys, domain[i:])
		}
	}
	return keys
}

// Split reads the key at the start of a line and returns it in canonical
// form with the rest of the line after the ':' that ends the key. The key
// is in angle brackets, or bare when bare is true (senderroutes). reason
// says what is wrong when the key cannot be read; it quotes the line only
// when quote is true (smtpauth's lines may hold passwords).
func Split(line string, bare, quote bool) (key, rest, reason string) {
	show := func(s string) string {
		if !quote {
			return ""
		}
		return fmt.Sprintf(" %q", say.Clip(s, 60))
	}
	var raw string
	if strings.HasPrefix(line, "<") {
		end := strings.IndexByte(line, '>')
		if end < 0 {
			return "", "", "no '>' closing the sender" + show(line)
		}
		raw, rest = line[1:end], line[end+1:]
		if !strings.HasPrefix(rest, ":") {
			return "", "", "missing ':' after the sender's '>'" + show(line[:end+1])
		}
		rest = rest[1:]
		if raw == "" {
			return Bounce, rest, ""
		}
		if raw == DoubleBounceSender {
			return DoubleBounce, rest, ""
		}
	} else {
		if !bare {
			return "", "", "a sender must be written in angle brackets" + show(line)
		}
		// The key ends at the first ':' outside a domain literal
		// ("user@[IPv6:2001:db8::1]").
		i := 0
		for i < len(line) && line[i] != ':' {
			if line[i] == '[' {
				end := strings.IndexByte(line[i:], ']')
				if end < 0 {
					return "", "", "no ']' closing the address literal" + show(line)
				}
				i += end
			}
			i++
		}
		if i == len(line) {
			return "", "", "missing ':' after the sender" + show(line)
		}
		raw, rest = line[:i], line[i+1:]
	}
	key, reason = canonical(raw)
	if reason != "" {
		if raw != "" {
			reason += show(raw)
		}
		return "", "", reason
	}
	return key, rest, ""
}

// canonical checks a key written without brackets (neither bounce form)
// and returns its canonical form.
func canonical(raw string) (string, string) {
	if raw == "" {
		return "", "empty sender (bounces are <>)"
	}
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; {
		case c <= ' ' || c == 0x7f:
			return "", "space or control character in the sender"
		case c == '<' || c == '>':
			return "", "stray angle bracket in the sender"
		}
	}
	if strings.HasPrefix(raw, ".") {
		d, reason := domain(raw[1:])
		if reason != "" {
			return "", reason
		}
		if strings.HasPrefix(d, "[") {
			return "", "an address literal has no subdomains"
		}
		return "." + d, ""
	}
	at := strings.LastIndexByte(raw, '@')
	if at < 0 {
		return "", "no '@' in the sender (write user@domain, @domain or .domain)"
	}
	local := raw[:at]
	if strings.ContainsAny(local, ":@") && !strings.HasPrefix(local, "\"") {
		return "", "bad local part of the sender"
	}
	d, reason := domain(raw[at+1:])
	if reason != "" {
		return "", reason
	}
	return ascii.Lower(local) + "@" + d, ""
}

// domain checks the domain of a key: a name, or an address literal.
func domain(d string) (string, string) {
	if strings.HasPrefix(d, "[") {
		a, ok := addrlit.Parse(d)
		if !ok {
			return "", "bad address literal in the sender"
		}
		return addrlit.Canonical(a), ""
	}
	d = strings.TrimSuffix(ascii.Lower(d), ".")
	if d == "" {
		return "", "empty domain in the sender"
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" {
			return "", "empty label in the sender's domain"
		}
		if len(label) > 63 {
			return "", "label longer than 63 bytes in the sender's domain"
		}
	}
	if strings.ContainsAny(d, "[]:@") {
		return "", "bad character in the sender's domain"
	}
	return d, ""
}

// Show writes a canonical key as an admin would: bounce keys as they
// are, the others in angle brackets.
func Show(key string) string {
	if strings.HasPrefix(key, "<") {
		return key
	}
	return "<" + key + ">"
}
