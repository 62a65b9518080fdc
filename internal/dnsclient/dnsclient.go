// Package dnsclient asks one DNS server directly, so the answer is what the
// server says now, not what a local cache remembers.
package dnsclient

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// UDPSize is the EDNS0 buffer size queries advertise.
const UDPSize = 4096

// DefaultTimeout bounds one exchange when the caller gives none.
const DefaultTimeout = 3 * time.Second

// Exchange asks server (host:port) one recursive question over UDP, and
// again over TCP when the answer is truncated. timeout bounds each
// exchange; zero means DefaultTimeout.
func Exchange(ctx context.Context, server, name string, qtype uint16, timeout time.Duration) (*dns.Msg, error) {
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = true
	m.SetEdns0(UDPSize, false)
	c := &dns.Client{Net: "udp", UDPSize: UDPSize, Timeout: timeout}
	resp, _, err := c.ExchangeContext(ctx, m, server)
	if err == nil && resp.Truncated {
		c.Net = "tcp"
		resp, _, err = c.ExchangeContext(ctx, m, server)
	}
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// Addrs returns the addresses of the A and AAAA records of an answer.
func Addrs(resp *dns.Msg) []netip.Addr {
	var ips []netip.Addr
	for _, rr := range resp.Answer {
		var ip net.IP
		switch v := rr.(type) {
		case *dns.A:
			ip = v.A
		case *dns.AAAA:
			ip = v.AAAA
		default:
			continue
		}
		if a, ok := netip.AddrFromSlice(ip); ok {
			ips = append(ips, a.Unmap())
		}
	}
	return ips
}

// ServerAddress returns a DNS server address as host:port: port 53 is added
// when none is given, and a bracketed IPv6 address without port is
// unbracketed first.
func ServerAddress(s string) string {
	if _, _, err := net.SplitHostPort(s); err == nil {
		return s
	}
	if len(s) > 1 && s[0] == '[' && s[len(s)-1] == ']' {
		s = s[1 : len(s)-1]
	}
	return net.JoinHostPort(s, "53")
}

// SystemServer returns the first name server of /etc/resolv.conf.
func SystemServer() (string, error) {
	cfg, err := dns.ClientConfigFromFile("/etc/resolv.conf")
	if err != nil {
		return "", fmt.Errorf("reading /etc/resolv.conf: %w", err)
	}
	if len(cfg.Servers) == 0 {
		return "", fmt.Errorf("no name server in /etc/resolv.conf")
	}
	return net.JoinHostPort(cfg.Servers[0], cfg.Port), nil
}
