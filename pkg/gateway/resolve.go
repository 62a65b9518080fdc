package gateway

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// Resolver looks up the A and AAAA records of a name.
type Resolver interface {
	LookupIPs(ctx context.Context, fqdn string) ([]netip.Addr, error)
}

// DNSResolver asks one DNS server directly, so the answer is what the
// server says now, not what a local cache remembers.
type DNSResolver struct {
	// Server is host:port of the DNS server.
	Server string
	// Timeout bounds each query. Default 3s.
	Timeout time.Duration
}

// SystemResolverAddress returns the first name server of /etc/resolv.conf.
func SystemResolverAddress() (string, error) {
	cfg, err := dns.ClientConfigFromFile("/etc/resolv.conf")
	if err != nil {
		return "", fmt.Errorf("reading /etc/resolv.conf: %w", err)
	}
	if len(cfg.Servers) == 0 {
		return "", fmt.Errorf("no name server in /etc/resolv.conf")
	}
	return net.JoinHostPort(cfg.Servers[0], cfg.Port), nil
}

// LookupIPs returns every A and AAAA record of fqdn, following the CNAME
// chain the server includes. A name that does not exist has no records.
func (r DNSResolver) LookupIPs(ctx context.Context, fqdn string) ([]netip.Addr, error) {
	type result struct {
		ips []netip.Addr
		err error
	}
	results := make(chan result, 2)
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		go func() {
			ips, err := r.query(ctx, fqdn, qtype)
			results <- result{ips, err}
		}()
	}
	var all []netip.Addr
	var firstErr error
	for range 2 {
		res := <-results
		if res.err != nil && firstErr == nil {
			firstErr = res.err
		}
		all = append(all, res.ips...)
	}
	if firstErr != nil {
		return nil, firstErr
	}
	return all, nil
}

func (r DNSResolver) query(ctx context.Context, fqdn string, qtype uint16) ([]netip.Addr, error) {
	timeout := r.Timeout
	if timeout == 0 {
		timeout = 3 * time.Second
	}
	msg := new(dns.Msg)
	msg.SetQuestion(dns.Fqdn(fqdn), qtype)
	msg.SetEdns0(4096, false)
	client := &dns.Client{Timeout: timeout}
	resp, _, err := client.ExchangeContext(ctx, msg, r.Server)
	if err == nil && resp.Truncated {
		client.Net = "tcp"
		resp, _, err = client.ExchangeContext(ctx, msg, r.Server)
	}
	if err != nil {
		return nil, fmt.Errorf("asking %s for the %s records of %s: %w", r.Server, dns.TypeToString[qtype], fqdn, err)
	}
	switch resp.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
	default:
		return nil, fmt.Errorf("asking %s for the %s records of %s: %s", r.Server, dns.TypeToString[qtype], fqdn, dns.RcodeToString[resp.Rcode])
	}
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
	return ips, nil
}
