package gateway

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/threefoldtech/gateway/internal/dnsname"
	"github.com/threefoldtech/gateway/internal/quote"
)

// Limits of the values a caller sends.
const (
	// MaxWorkloadIDLength bounds a workload ID; it names a file and a router.
	MaxWorkloadIDLength = 128
	// MaxBackends bounds the servers of one route.
	MaxBackends = 16
)

// FieldError is a refused input. Only strings cross zbus, so its text names
// the field, the value and the reason.
type FieldError struct {
	Field  string
	Value  string
	Reason string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("invalid %s %s: %s", e.Field, quote.Short(e.Value), e.Reason)
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
			return fieldError(field, id, "character %s at offset %d is not allowed (letters, digits, '-', '_', '.')", dnsname.QuoteByte(c), i)
		}
	}
	return nil
}

// NormalizePrefix checks a name proxy's prefix, one DNS label of the
// characters zos accepts in a name (dnsname.NormalizeNameLabel), and returns
// it lower-cased.
func NormalizePrefix(prefix string) (string, error) {
	const field = "prefix"
	if strings.Contains(prefix, ".") {
		return "", fieldError(field, prefix, "must be a single DNS label, without dots")
	}
	label, err := dnsname.NormalizeNameLabel(prefix)
	if err != nil {
		return "", fieldError(field, prefix, "%s", err)
	}
	return label, nil
}

// NormalizeFQDN checks a host name as RFC 1123 defines it (see
// dnsname.Normalize) and returns it lower-cased without its trailing dot.
// Wildcards are refused.
func NormalizeFQDN(fqdn string) (string, error) {
	const field = "fqdn"
	if strings.Contains(fqdn, "*") {
		return "", fieldError(field, fqdn, "wildcards are not allowed")
	}
	name, err := dnsname.Normalize(fqdn)
	if err != nil {
		return "", fieldError(field, fqdn, "%s", err)
	}
	return name, nil
}

// normalizeDomain checks the domain of a route of kind: a host name
// (NormalizeFQDN), or for a name proxy a prefix (NormalizePrefix) under one.
func normalizeDomain(kind Kind, fqdn string) (string, error) {
	if kind != KindName {
		return NormalizeFQDN(fqdn)
	}
	label, domain, _ := strings.Cut(fqdn, ".")
	label, err := NormalizePrefix(label)
	if err != nil {
		return "", err
	}
	if domain, err = NormalizeFQDN(domain); err != nil {
		return "", err
	}
	if n := len(label) + 1 + len(domain); n > dnsname.MaxLength {
		return "", fieldError("fqdn", fqdn, "name is too long (at most %d bytes)", dnsname.MaxLength)
	}
	return label + "." + domain, nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// Backend is one validated backend of a route.
type Backend struct {
	// Addr is the backend's IP address and port.
	Addr netip.AddrPort
	// PortGiven is false when an HTTP backend left the port out (80, or 443
	// for https, is used).
	PortGiven bool
	// TLS is true for an https:// backend of a route that terminates TLS:
	// Traefik speaks TLS to it.
	TLS bool
}

// String returns the backend in the canonical form for its mode:
// http(s)://IP[:port] for HTTP, IP:port for passthrough.
func (b Backend) String(passthrough bool) string {
	if passthrough {
		return b.Addr.String()
	}
	scheme := "http://"
	if b.TLS {
		scheme = "https://"
	}
	if b.PortGiven {
		return scheme + b.Addr.String()
	}
	if b.Addr.Addr().Is6() {
		return scheme + "[" + b.Addr.Addr().String() + "]"
	}
	return scheme + b.Addr.Addr().String()
}

// ParseBackend reads one backend. Without passthrough it is http://IP[:port]
// or https://IP[:port]; with passthrough IP:port or https://IP:port. IP
// literals only (IPv6 in brackets): a host name would let the route change
// behind the validator.
func ParseBackend(field, s string, passthrough bool) (Backend, error) {
	var rest string
	var needPort, tls bool
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
	case strings.HasPrefix(s, "https://"):
		rest, tls = s[len("https://"):], true
	default:
		return Backend{}, fieldError(field, s, "backends are http://IP[:port] or https://IP[:port]")
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
		return Backend{}, fieldError(field, s, "host %s is not an IP address (host names are not allowed)", quote.Short(host))
	}
	p := uint16(80)
	if tls {
		p = 443
	}
	if hasPort {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 || port[0] == '0' {
			return Backend{}, fieldError(field, s, "port %s is not a number from 1 to 65535", quote.Short(port))
		}
		p = uint16(n)
	}
	return Backend{Addr: netip.AddrPortFrom(ip, p), PortGiven: hasPort, TLS: tls}, nil
}

// splitHostPort splits host[:port] or [v6][:port] and refuses anything else:
// paths, queries, user info, empty parts.
func splitHostPort(s string) (host, port string, hasPort bool, err error) {
	if i := strings.IndexAny(s, "/?#@ \t\r\n"); i >= 0 {
		return "", "", false, fmt.Errorf("only an address and port are allowed, found %s", dnsname.QuoteByte(s[i]))
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
		return "", "", false, fmt.Errorf("unexpected %s after ']'", quote.Short(rest))
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
	// Own are the node's addresses: its public IPs and every address of its
	// interfaces. A backend there makes Traefik connect to itself: one
	// request or ClientHello loops until it runs out of descriptors.
	Own []netip.Addr
	// OwnNets are the networks the kernel delivers to the node itself
	// (LocalNets): an address there is the node's as much as Own's.
	OwnNets []netip.Prefix
}

// Check refuses the node's own addresses, even inside an allowed network,
// then loopback, unspecified, link-local (no metadata endpoints), multicast
// and broadcast addresses, unless the address is inside an allowed network.
//
// Loopback addresses are the one exception to the first rule: they are
// governed by the default policy and Allow alone. Every node has them, a
// loopback backend loops only where Traefik itself listens, and an operator
// who allows 127.0.0.0/8 or ::1 (test suites do) reaches services of the
// node on purpose.
func (p Policy) Check(field, value string, b Backend) error {
	ip := b.Addr.Addr().Unmap()
	if !ip.IsLoopback() && p.isOwn(ip) {
		return fieldError(field, value, "%s is the node's own address: the route would loop into the gateway (--backends.allow does not admit the node's addresses, only loopback ones)", ip)
	}
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
	if reason != "" {
		return fieldError(field, value, "%s", reason)
	}
	return nil
}

// isOwn tells whether ip, unmapped, is one of the node's addresses.
func (p Policy) isOwn(ip netip.Addr) bool {
	for _, own := range p.Own {
		if own.Unmap() == ip {
			return true
		}
	}
	for _, n := range p.OwnNets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// InterfaceAddrs returns every address assigned to the node's network
// interfaces, as the kernel reports them now: LAN, bridges, tunnels, IPv6
// addresses nobody configured in the gateway.
func InterfaceAddrs() ([]netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("listing the node's addresses: %w", err)
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		var ip net.IP
		switch v := a.(type) {
		case *net.IPNet:
			ip = v.IP
		case *net.IPAddr:
			ip = v.IP
		}
		if addr, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, addr.Unmap())
		}
	}
	return out, nil
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
