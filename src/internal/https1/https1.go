// Package https1 is a minimal HTTPS client: one GET or POST per
// connection, HTTP/1.0, the certificate verified against the caller's
// roots. It fetches MTA-STS policies (RFC 8461 3.3) and posts TLS reports
// (RFC 8460 3). net/http would do, but every program of the project is
// linked into one binary, and net/http's package initialization would then
// run on every delivery.
//
// Redirects are not followed (RFC 8461 3.3 forbids it for policies), and
// there are no cookies, proxies, keep-alive or content codings.
package https1

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Defaults for the zero fields of Client.
const (
	DefaultPort    = "443"
	DefaultMax     = 64 << 10
	DefaultTimeout = 60 * time.Second
)

// MaxHeader bounds the status line and the header lines of a response
// (and of a chunked body's trailer) together, CRLFs included.
const MaxHeader = 16 << 10

// maxChunkLine bounds one chunk-size line of a chunked body: a size in hex
// and chunk extensions nobody sends.
const maxChunkLine = 1024

// userAgent names the client in requests.
const userAgent = "qmail-remote-go"

// ErrWebPKI is wrapped by the error of a request whose server certificate
// does not verify against Client.Roots for the host name (unknown
// authority, name mismatch, expired): RFC 8460 reports it apart from other
// failures.
var ErrWebPKI = errors.New("server certificate does not verify")

// Client makes requests. The zero value refuses to: Roots are required.
type Client struct {
	// Roots verify the server's certificate; nil refuses every request
	// (no fallback to the system's roots here: the caller decides).
	Roots *x509.CertPool
	// Dial connects; nil is a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Port is the server's port; "" is DefaultPort.
	Port string
	// Max bounds the response body; 0 is DefaultMax.
	Max int64
	// Timeout bounds the whole request; 0 is DefaultTimeout.
	Timeout time.Duration
	// Addrs finds the host's addresses, tried in their order; nil is
	// net.DefaultResolver.
	Addrs func(ctx context.Context, host string) ([]netip.Addr, error)
}

// Response is what the server answered, whatever its status.
type Response struct {
	Status      int    // the status code, 100 to 599
	ContentType string // the Content-Type header as sent, "" without one
	Body        []byte // decoded from chunks if it came chunked
}

// Get fetches https://host[:Port]path.
func (c Client) Get(ctx context.Context, host, path string) (Response, error) {
	return c.do(ctx, "GET", host, path, "", nil)
}

// Post sends body, of the given Content-Type, to https://host[:Port]path.
func (c Client) Post(ctx context.Context, host, path, contentType string, body []byte) (Response, error) {
	return c.do(ctx, "POST", host, path, contentType, body)
}

// do makes one request. Its errors name the URL.
func (c Client) do(ctx context.Context, method, host, path, contentType string, body []byte) (Response, error) {
	// A trailing dot has no place in SNI or in a certificate name.
	host = strings.TrimSuffix(host, ".")
	port := c.Port
	if port == "" {
		port = DefaultPort
	}
	authority := host
	if port != DefaultPort {
		authority = net.JoinHostPort(host, port)
	}
	url := "https://" + authority + path
	fail := func(err error) (Response, error) {
		// When the time is up, the reason is that, not the closed
		// connection or the deadline it caused.
		if cause := context.Cause(ctx); cause != nil {
			err = fmt.Errorf("%w (%v)", cause, err)
		}
		return Response{}, fmt.Errorf("%s: %w", url, err)
	}
	if err := checkRequest(host, port, path, contentType); err != nil {
		return Response{}, fmt.Errorf("%s: %w", url, err)
	}
	if c.Roots == nil {
		return Response{}, fmt.Errorf("%s: no trusted roots to verify the server with", url)
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	max := c.Max
	if max <= 0 {
		max = DefaultMax
	}
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, fmt.Errorf("no answer within %v", timeout))
	defer cancel()

	conn, err := c.connect(ctx, host, port)
	if err != nil {
		return fail(err)
	}
	defer conn.Close()
	// The deadline bounds every read and write; closing on cancellation
	// covers a parent context canceled before its deadline.
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	tc := tls.Client(conn, &tls.Config{
		ServerName: host,
		RootCAs:    c.Roots,
		MinVersion: tls.VersionTLS12,
	})
	if err := tc.HandshakeContext(ctx); err != nil {
		if isVerifyError(err) && context.Cause(ctx) == nil {
			return Response{}, fmt.Errorf("%s: %w: %w", url, ErrWebPKI, err)
		}
		return fail(fmt.Errorf("TLS handshake: %w", err))
	}

	var req strings.Builder
	fmt.Fprintf(&req, "%s %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: %s\r\nConnection: close\r\n", method, path, authority, userAgent)
	if method == "POST" {
		fmt.Fprintf(&req, "Content-Type: %s\r\nContent-Length: %d\r\n", contentType, len(body))
	}
	req.WriteString("\r\n")
	// One write for small requests: fewer TLS records.
	w := bufio.NewWriterSize(tc, 4096)
	w.WriteString(req.String())
	w.Write(body)
	if err := w.Flush(); err != nil {
		return fail(fmt.Errorf("sending the request: %w", err))
	}

	resp, err := readResponse(bufio.NewReaderSize(tc, 4096), max)
	if err != nil {
		return fail(err)
	}
	return resp, nil
}

// checkRequest refuses what would break the request's syntax: the caller
// may pass names it got from DNS.
func checkRequest(host, port, path, contentType string) error {
	if host == "" {
		return errors.New("empty host name")
	}
	for i := 0; i < len(host); i++ {
		b := host[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '.' || b == '_') {
			return fmt.Errorf("host name %q has %q, not a letter, digit, '-', '_' or '.'", host, b)
		}
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("port %q is not a number from 1 to 65535", port)
	}
	if !strings.HasPrefix(path, "/") {
		return fmt.Errorf("path %q does not start with '/'", path)
	}
	for i := 0; i < len(path); i++ {
		if path[i] <= ' ' || path[i] >= 0x7f {
			return fmt.Errorf("path %q has %q: escape it", path, path[i])
		}
	}
	for i := 0; i < len(contentType); i++ {
		if contentType[i] < ' ' && contentType[i] != '\t' || contentType[i] == 0x7f {
			return fmt.Errorf("content type %q has control character %q", contentType, contentType[i])
		}
	}
	return nil
}

// connect tries the host's addresses in the order given until one
// connects.
func (c Client) connect(ctx context.Context, host, port string) (net.Conn, error) {
	var addrs []netip.Addr
	var err error
	if a, perr := netip.ParseAddr(host); perr == nil {
		addrs = []netip.Addr{a}
	} else if c.Addrs != nil {
		addrs, err = c.Addrs(ctx, host)
	} else {
		addrs, err = net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	}
	if err != nil {
		return nil, fmt.Errorf("looking up %s: %w", host, err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("%s has no addresses", host)
	}
	dial := c.Dial
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	var errs []error
	for _, a := range addrs {
		// The resolver gives IPv4 addresses in their IPv6 form.
		addr := net.JoinHostPort(a.Unmap().String(), port)
		conn, err := dial(ctx, "tcp", addr)
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("cannot connect: %w", errors.Join(errs...))
}

// isVerifyError says whether the handshake failed because the server's
// certificate did not verify, rather than on the network or the protocol.
func isVerifyError(err error) bool {
	var cve *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	return errors.As(err, &cve) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci)
}

// readResponse reads the status line, the headers and the body, the first
// two within MaxHeader bytes, the body within max.
func readResponse(r *bufio.Reader, max int64) (Response, error) {
	budget := MaxHeader
	var resp Response
	var h header
	for {
		line, err := readLine(r, &budget, MaxHeader, "response header")
		if err != nil {
			if errors.Is(err, io.EOF) {
				return Response{}, errors.New("connection closed before a response")
			}
			return Response{}, err
		}
		resp.Status, err = parseStatus(line)
		if err != nil {
			return Response{}, err
		}
		h, err = readHeader(r, &budget, "response header")
		if err != nil {
			return Response{}, err
		}
		// An interim response (RFC 9110 15.2) only announces the real
		// one. Servers should not send them to 1.0 clients; skip them.
		if resp.Status >= 200 {
			break
		}
	}
	resp.ContentType = h.get("content-type")

	// No body: RFC 9112 6.3.
	if resp.Status == 204 || resp.Status == 304 {
		return resp, nil
	}
	var err error
	if te := h.get("transfer-encoding"); te != "" {
		// Some servers answer 1.0 requests with 1.1 chunks anyway; they
		// win over Content-Length (RFC 9112 6.3).
		if !strings.EqualFold(strings.TrimSpace(te), "chunked") {
			return Response{}, fmt.Errorf("unsupported Transfer-Encoding %q", te)
		}
		resp.Body, err = readChunked(r, max, budget)
	} else if cl, ok := h.values["content-length"]; ok {
		var n int64
		n, err = contentLength(cl)
		if err != nil {
			return Response{}, err
		}
		if n > max {
			return Response{}, fmt.Errorf("response body of %d bytes is longer than the limit of %d", n, max)
		}
		resp.Body = make([]byte, n)
		var got int
		got, err = io.ReadFull(r, resp.Body)
		if err != nil {
			return Response{}, fmt.Errorf("response body cut short: %d of %d bytes (%v)", got, n, err)
		}
	} else {
		resp.Body, err = io.ReadAll(io.LimitReader(r, max+1))
		if err == nil && int64(len(resp.Body)) > max {
			err = fmt.Errorf("response body is longer than the limit of %d bytes", max)
		} else if err != nil {
			err = fmt.Errorf("reading the response body: %w", err)
		}
	}
	if err != nil {
		return Response{}, err
	}
	return resp, nil
}

// parseStatus reads "HTTP/1.x NNN reason" (RFC 9112 4).
func parseStatus(line string) (int, error) {
	rest, ok := strings.CutPrefix(line, "HTTP/1.")
	if !ok || len(rest) < 5 || rest[0] < '0' || rest[0] > '9' || rest[1] != ' ' || len(rest) > 5 && rest[5] != ' ' {
		return 0, fmt.Errorf("malformed status line %.80q", line)
	}
	code := rest[2:5]
	n, err := strconv.Atoi(code)
	if err != nil || code[0] < '1' || code[0] > '5' {
		return 0, fmt.Errorf("malformed status code in %.80q", line)
	}
	return n, nil
}

// header holds the fields of a response by lower-case name.
type header struct {
	values map[string][]string
}

// get returns the first value of name.
func (h header) get(name string) string {
	if v := h.values[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// readHeader reads header lines up to the empty line that ends them.
func readHeader(r *bufio.Reader, budget *int, what string) (header, error) {
	h := header{values: map[string][]string{}}
	last := ""
	for {
		line, err := readLine(r, budget, MaxHeader, what)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return header{}, fmt.Errorf("connection closed inside the %s", what)
			}
			return header{}, err
		}
		if line == "" {
			return h, nil
		}
		if line[0] == ' ' || line[0] == '\t' {
			// Obsolete line folding: RFC 9112 5.2 lets us read it as
			// a space.
			if last == "" {
				return header{}, fmt.Errorf("%s starts with a continuation line", what)
			}
			v := h.values[last]
			v[len(v)-1] += " " + strings.TrimSpace(line)
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return header{}, fmt.Errorf("malformed %s line %.80q", what, line)
		}
		last = strings.ToLower(name)
		h.values[last] = append(h.values[last], strings.Trim(value, " \t"))
	}
}

// readLine reads one line, CRLF or LF, charging it to budget, which
// started as limit.
func readLine(r *bufio.Reader, budget *int, limit int, what string) (string, error) {
	var line []byte
	for {
		frag, err := r.ReadSlice('\n')
		if len(line)+len(frag) > *budget {
			return "", fmt.Errorf("%s too long (the limit is %d bytes)", what, limit)
		}
		line = append(line, frag...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF && len(line) > 0 {
				return "", fmt.Errorf("connection closed inside a %s line", what)
			}
			return "", err
		}
		*budget -= len(line)
		line = line[:len(line)-1]
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		return string(line), nil
	}
}

// contentLength reads the values of Content-Length: all the same decimal
// number (RFC 9110 8.6).
func contentLength(values []string) (int64, error) {
	var n int64 = -1
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			part = strings.TrimSpace(part)
			m, err := strconv.ParseInt(part, 10, 64)
			if err != nil || m < 0 || part[0] == '+' {
				return 0, fmt.Errorf("malformed Content-Length %.40q", v)
			}
			if n >= 0 && m != n {
				return 0, fmt.Errorf("conflicting Content-Length values %d and %d", n, m)
			}
			n = m
		}
	}
	return n, nil
}

// readChunked decodes a chunked body (RFC 9112 7.1) of at most max bytes;
// the trailer shares what is left of the header budget.
func readChunked(r *bufio.Reader, max int64, budget int) ([]byte, error) {
	var body []byte
	for {
		lineBudget := maxChunkLine
		line, err := readLine(r, &lineBudget, maxChunkLine, "chunk size line")
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, errors.New("chunked response body cut short")
			}
			return nil, err
		}
		size, _, _ := strings.Cut(line, ";")
		size = strings.TrimRight(size, " \t")
		n, err := strconv.ParseUint(size, 16, 63)
		if err != nil || size == "" || size[0] == '+' {
			return nil, fmt.Errorf("malformed chunk size line %.40q", line)
		}
		if n == 0 {
			if _, err := readHeader(r, &budget, "chunked trailer"); err != nil {
				return nil, err
			}
			return body, nil
		}
		if int64(n) > max-int64(len(body)) {
			return nil, fmt.Errorf("response body is longer than the limit of %d bytes", max)
		}
		start := len(body)
		body = append(body, make([]byte, n)...)
		if _, err := io.ReadFull(r, body[start:]); err != nil {
			return nil, fmt.Errorf("chunked response body cut short (%v)", err)
		}
		crlfBudget := 2
		if end, err := readLine(r, &crlfBudget, 2, "chunk end"); err != nil || end != "" {
			return nil, errors.New("chunk not followed by CRLF")
		}
	}
}
