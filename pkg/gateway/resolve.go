package gateway

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/miekg/dns"

	"github.com/threefoldtech/gateway/internal/dnsclient"
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
	// Timeout bounds each query. Default dnsclient.DefaultTimeout (3s).
	Timeout time.Duration
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
	resp, err := dnsclient.Exchange(ctx, r.Server, fqdn, qtype, r.Timeout)
	if err != nil {
		return nil, fmt.Errorf("asking %s for the %s records of %s: %w", r.Server, dns.TypeToString[qtype], fqdn, err)
	}
	switch resp.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
	default:
		return nil, fmt.Errorf("asking %s for the %s records of %s: %s", r.Server, dns.TypeToString[qtype], fqdn, dns.RcodeToString[resp.Rcode])
	}
	return dnsclient.Addrs(resp), nil
}
