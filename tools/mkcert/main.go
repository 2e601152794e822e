// mkcert makes a throwaway certificate authority and one server
// certificate signed by it, for the demo and the timing script: a fresh
// machine has Go but not necessarily openssl.
//
//	mkcert -o dir [-dns name]... [-ip address]... [-days n]
//
// It writes dir/ca.pem (the CA certificate: control/trustanchors),
// dir/server.pem and dir/server.key (the server's certificate and key, for
// smtp-sink -tls-cert/-tls-key). ECDSA P-256 keeps it fast. The CA's key
// is never written: nothing else can ever be signed by it.
//
// Self-contained on purpose: tools/ is outside src/ and cannot import
// src/internal (Go's internal rule).
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

const usage = "mkcert -o dir [ -dns name ]... [ -ip address ]... [ -days n ]"

type list []string

func (l *list) String() string     { return fmt.Sprint(*l) }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	fs := flag.NewFlagSet("mkcert", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dir := fs.String("o", "", "")
	days := fs.Int("days", 2, "")
	var names, ips list
	fs.Var(&names, "dns", "")
	fs.Var(&ips, "ip", "")
	if err := fs.Parse(os.Args[1:]); err != nil || fs.NArg() != 0 || *dir == "" || *days < 1 || len(names)+len(ips) == 0 {
		fmt.Fprintf(os.Stderr, "usage: %s\n", usage)
		os.Exit(100)
	}
	var addrs []net.IP
	for _, s := range ips {
		ip := net.ParseIP(s)
		if ip == nil {
			fmt.Fprintf(os.Stderr, "mkcert: fatal: not an IP address: %s\n", s)
			os.Exit(100)
		}
		addrs = append(addrs, ip)
	}
	if err := run(*dir, names, addrs, time.Duration(*days)*24*time.Hour); err != nil {
		fmt.Fprintf(os.Stderr, "mkcert: fatal: %v\n", err)
		os.Exit(111)
	}
}

func run(dir string, names []string, ips []net.IP, valid time.Duration) error {
	// An hour of slack before now: a clock a little behind must not make
	// the certificate "not yet valid".
	from, until := time.Now().Add(-time.Hour), time.Now().Add(valid)
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "qmail-remote-go throwaway CA", Organization: []string{"qmail-remote-go demo"}},
		NotBefore:             from,
		NotAfter:              until,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	cn := ""
	if len(names) > 0 {
		cn = names[0]
	} else {
		cn = ips[0].String()
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     names,
		IPAddresses:  ips,
		NotBefore:    from,
		NotAfter:     until,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name, typ string
		der       []byte
		mode      os.FileMode
	}{
		{"ca.pem", "CERTIFICATE", caDER, 0o644},
		{"server.pem", "CERTIFICATE", der, 0o644},
		{"server.key", "PRIVATE KEY", keyDER, 0o600},
	} {
		b := pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der})
		if err := os.WriteFile(filepath.Join(dir, f.name), b, f.mode); err != nil {
			return err
		}
	}
	return nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}
