package gateway

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Limits of the values a caller sends.
const (
	// MaxWorkloadIDLength bounds a workload ID; it names a file and a router.
	MaxWorkloadIDLength = 128
	// MaxBackends bounds the servers of one route.
	MaxBackends    = 16
	maxFQDNLength  = 253
	maxLabelLength = 63
)

// FieldError is a refused input. Only strings cross zbus, so its text names
// the field, the value and the reason.
type FieldError struct {
	Field  string
	Value  string
	Reason string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("invalid %s %s: %s", e.Field, quote(e.Value), e.Reason)
}

// quote quotes a caller's value for an error, cut to a readable length.
func quote(v string) string {
	const max = 64
	if len(v) > max {
		return strconv.Quote(v[:max]) + "…"
	}
	return strconv.Quote(v)
}

func fieldError(field, value, format string, args ...any) error {
	return &FieldError{Field: field, Value: value, Reason: fmt.Sprintf(format, args...)}
}

// ValidateWorkloadID checks a workload ID. It becomes a file name and a
// Traefik router name, so it is a plain token: letters, digits, '-', '_' and
// '.', never "..", never hidden, at most MaxWorkloadIDLength bytes.
func ValidateWorkloadID(id string) error {
	const field = "wlID"
	switch {
	case id == "":
		return fieldError(field, id, "must not be empty")
	case len(id) > MaxWorkloadIDLength:
		return fieldError(field, id, "longer than %d bytes", MaxWorkloadIDLength)
	case strings.HasPrefix(id, "."):
		return fieldError(field, id, "must not start with '.'")
	case strings.Contains(id, ".."):
		return fieldError(field, id, "must not contain '..'")
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !isAlnum(c) && c != '-' && c != '_' && c != '.' {
			return fieldError(field, id, "character %s at offset %d is not allowed (letters, digits, '-', '_', '.')", quoteByte(c), i)
		}
	}
	return nil
}

// NormalizePrefix checks a name proxy's prefix, one DNS label, and returns it
// lower-cased. Only ASCII is accepted, so no Unicode case folding can turn a
// look-alike into an allowed letter.
func NormalizePrefix(prefix string) (string, error) {
	const field = "prefix"
	if strings.Contains(prefix, ".") {
		return "", fieldError(field, prefix, "must be a single DNS label, without dots")
	}
	label, err := normalizeLabel(prefix)
	if err != nil {
		return "", fieldError(field, prefix, "%s", err)
	}
	return label, nil
}

// NormalizeFQDN checks a host name as RFC 1123 defines it (at most 253 bytes,
// labels of 1 to 63 letters, digits and inner hyphens, at least two labels, a
// top-level label that is not all digits) and returns it lower-cased without
// its trailing dot. Wildcards are refused.
func NormalizeFQDN(fqdn string) (string, error) {
	const field = "fqdn"
	name := strings.TrimSuffix(fqdn, ".")
	switch {
	case name == "":
		return "", fieldError(field, fqdn, "must not be empty")
	case len(name) > maxFQDNLength:
		return "", fieldError(field, fqdn, "longer than %d bytes", maxFQDNLength)
	case strings.Contains(name, "*"):
		return "", fieldError(field, fqdn, "wildcards are not allowed")
	}
	labels := strings.Split(name, ".")
	if len(labels) < 2 {
		return "", fieldError(field, fqdn, "needs at least two labels")
	}
	for i, l := range labels {
		norm, err := normalizeLabel(l)
		if err != nil {
			return "", fieldError(field, fqdn, "label %d: %s", i+1, err)
		}
		labels[i] = norm
	}
	if allDigits(labels[len(labels)-1]) {
		return "", fieldError(field, fqdn, "top-level label is numeric: an IP address is not a domain")
	}
	return strings.Join(labels, "."), nil
}

// normalizeLabel checks one DNS label and lower-cases it.
func normalizeLabel(l string) (string, error) {
	switch {
	case l == "":
		return "", fmt.Errorf("empty label")
	case len(l) > maxLabelLength:
		return "", fmt.Errorf("label longer than %d bytes", maxLabelLength)
	case l[0] == '-' || l[len(l)-1] == '-':
		return "", fmt.Errorf("label must not start or end with '-'")
	}
	b := []byte(l)
	for i, c := range b {
		switch {
		case c >= 'A' && c <= 'Z':
			b[i] = c + 'a' - 'A'
		case isAlnum(c) || c == '-':
		default:
			return "", fmt.Errorf("character %s is not allowed (letters, digits, '-')", quoteByte(c))
		}
	}
	return string(b), nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func quoteByte(c byte) string {
	if c < 0x20 || c >= 0x7f {
		return fmt.Sprintf("0x%02x", c)
	}
	return strconv.QuoteRune(rune(c))
}

// Backend is one validated backend of a route.
type Backend struct {
	// Addr is the backend's IP address and port.
	Addr netip.AddrPort
	// PortGiven is false when an HTTP backend left the port out (80 is used).
	PortGiven bool
}

// String returns the backend in the canonical form for its mode:
// http://IP[:port] for HTTP, IP:port for passthrough.
func (b Backend) String(passthrough bool) string {
	if passthrough {
		return b.Addr.String()
	}
	if b.PortGiven {
		return "http://" + b.Addr.String()
	}
	if b.Addr.Addr().Is6() {
		return "http://[" + b.Addr.Addr().String() + "]"
	}
	return "http://" + b.Addr.Addr().String()
}

// ParseBackend reads one backend. Without passthrough it is http://IP[:port];
// with passthrough IP:port or https://IP:port. IP literals only (IPv6 in
// brackets): a host name would let the route change behind the validator.
func ParseBackend(field, s string, passthrough bool) (Backend, error) {
	var rest string
	var needPort bool
	switch {
	case passthrough && strings.HasPrefix(s, "https://"):
		rest, needPort = s[len("https://"):], true
	case passthrough:
		if strings.Contains(s, "://") {
			return Backend{}, fieldError(field, s, "TLS passthrough backends are IP:port or https://IP:port")
		}
		rest, needPort = s, true
	case strings.HasPrefix(s, "http://"):
		rest = s[len("http://"):]
	default:
		return Backend{}, fieldError(field, s, "backends are http://IP[:port] (https://IP:port needs TLS passthrough)")
	}
	host, port, hasPort, err := splitHostPort(rest)
	if err != nil {
		return Backend{}, fieldError(field, s, "%s", err)
	}
	if needPort && !hasPort {
		return Backend{}, fieldError(field, s, "TLS passthrough backends need a port")
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.Zone() != "" {
		return Backend{}, fieldError(field, s, "host %s is not an IP address (host names are not allowed)", quote(host))
	}
	p := uint16(80)
	if hasPort {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 || port[0] == '0' {
			return Backend{}, fieldError(field, s, "port %s is not a number from 1 to 65535", quote(port))
		}
		p = uint16(n)
	}
	return Backend{Addr: netip.AddrPortFrom(ip, p), PortGiven: hasPort}, nil
}

// splitHostPort splits host[:port] or [v6][:port] and refuses anything else:
// paths, queries, user info, empty parts.
func splitHostPort(s string) (host, port string, hasPort bool, err error) {
	if i := strings.IndexAny(s, "/?#@ \t\r\n"); i >= 0 {
		return "", "", false, fmt.Errorf("only an address and port are allowed, found %s", quoteByte(s[i]))
	}
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", "", false, fmt.Errorf("missing ']'")
		}
		host, rest := s[1:end], s[end+1:]
		if !strings.Contains(host, ":") {
			return "", "", false, fmt.Errorf("brackets are for IPv6 addresses only")
		}
		switch {
		case rest == "":
			return host, "", false, nil
		case strings.HasPrefix(rest, ":") && len(rest) > 1:
			return host, rest[1:], true, nil
		}
		return "", "", false, fmt.Errorf("unexpected %s after ']'", quote(rest))
	}
	switch strings.Count(s, ":") {
	case 0:
		return s, "", false, nil
	case 1:
		i := strings.IndexByte(s, ':')
		if i == len(s)-1 {
			return "", "", false, fmt.Errorf("empty port")
		}
		return s[:i], s[i+1:], true, nil
	}
	return "", "", false, fmt.Errorf("IPv6 addresses must be in brackets")
}

// Policy decides which backend addresses a route may send traffic to.
type Policy struct {
	// Allow admits networks the default policy refuses, on purpose.
	Allow []netip.Prefix
	// Own are the node's public IPs: a backend there loops into the gateway.
	Own []netip.Addr
}

// Check refuses loopback, unspecified, link-local (no metadata endpoints),
// multicast and broadcast addresses and the node's own IPs, unless the
// address is inside an allowed network.
func (p Policy) Check(field, value string, b Backend) error {
	ip := b.Addr.Addr().Unmap()
	for _, n := range p.Allow {
		if n.Contains(ip) {
			return nil
		}
	}
	var reason string
	switch {
	case ip.IsLoopback():
		reason = "loopback addresses are not allowed"
	case ip.IsUnspecified() || ip.Is4() && ip.As4()[0] == 0:
		reason = "unspecified addresses are not allowed"
	case ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast():
		reason = "link-local addresses are not allowed"
	case ip.IsMulticast() || ip.IsInterfaceLocalMulticast():
		reason = "multicast addresses are not allowed"
	case ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		reason = "the broadcast address is not allowed"
	}
	for _, own := range p.Own {
		if own.Unmap() == ip {
			reason = "this is the node's own public IP: the route would loop into the gateway"
		}
	}
	if reason != "" {
		return fieldError(field, value, "%s", reason)
	}
	return nil
}

// ParseBackends validates every backend of a call, in order, against the
// policy, refusing duplicates, and returns them.
func ParseBackends(values []string, passthrough bool, policy Policy) ([]Backend, error) {
	if len(values) == 0 {
		return nil, fieldError("backends", "", "at least one backend is needed")
	}
	if len(values) > MaxBackends {
		return nil, fieldError("backends", fmt.Sprintf("%d backends", len(values)), "at most %d are allowed", MaxBackends)
	}
	out := make([]Backend, 0, len(values))
	seen := make(map[netip.AddrPort]bool, len(values))
	for i, v := range values {
		field := fmt.Sprintf("backends[%d]", i)
		b, err := ParseBackend(field, v, passthrough)
		if err != nil {
			return nil, err
		}
		if err := policy.Check(field, v, b); err != nil {
			return nil, err
		}
		if seen[b.Addr] {
			return nil, fieldError(field, v, "duplicate backend")
		}
		seen[b.Addr] = true
		out = append(out, b)
	}
	return out, nil
}
