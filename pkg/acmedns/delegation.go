package acmedns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// ErrNotDelegated is wrapped by the CheckDelegation errors that say the
// challenge zone is not delegated to this node, as opposed to errors in
// asking.
var ErrNotDelegated = errors.New("challenge zone not delegated to this node")

// notDelegatedError explains a missing or wrong delegation; it matches
// ErrNotDelegated with errors.Is.
type notDelegatedError struct{ msg string }

func (e *notDelegatedError) Error() string { return e.msg }
func (e *notDelegatedError) Unwrap() error { return ErrNotDelegated }

func notDelegated(format string, args ...any) error {
	return &notDelegatedError{msg: fmt.Sprintf(format, args...)}
}

// CheckDelegation asks resolver (host:port; port 53 when missing) for the
// NS records of "_acme-challenge.<domain>." and then for the addresses of
// each name server. It returns nil if one of them resolves to one of
// nodeIPs, that is if ACME validation servers will ask this node for the
// challenge values. Otherwise the error says what was found; it wraps
// ErrNotDelegated when the answers show a missing or wrong delegation.
// Queries go over UDP, and again over TCP when an answer is truncated.
func CheckDelegation(ctx context.Context, resolver string, domain string, nodeIPs []net.IP) error {
	if err := validateDomain(domain); err != nil {
		return fmt.Errorf("checking delegation: %w", err)
	}
	if len(nodeIPs) == 0 {
		return errors.New("checking delegation: no node IP address given")
	}
	if _, _, err := net.SplitHostPort(resolver); err != nil {
		resolver = net.JoinHostPort(strings.Trim(resolver, "[]"), "53")
	}
	zone := ChallengeZone(domain)
	shown := strings.TrimSuffix(zone, ".")

	resp, err := query(ctx, resolver, zone, dns.TypeNS)
	if err != nil {
		return fmt.Errorf("asking %s for the NS of %s: %w", resolver, shown, err)
	}
	switch resp.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return notDelegated("no NS record for %s: the DNS provider must delegate it to this node (%s answered NXDOMAIN)", shown, resolver)
	case dns.RcodeServerFailure:
		return fmt.Errorf("asking %s for the NS of %s: answer SERVFAIL (a delegation to a server that does not answer looks like this)", resolver, shown)
	default:
		return fmt.Errorf("asking %s for the NS of %s: answer %s", resolver, shown, dns.RcodeToString[resp.Rcode])
	}

	var targets []string
	for _, rr := range resp.Answer {
		switch rr := rr.(type) {
		case *dns.NS:
			if strings.EqualFold(rr.Hdr.Name, zone) {
				targets = append(targets, CanonicalName(rr.Ns))
			}
		case *dns.CNAME:
			if strings.EqualFold(rr.Hdr.Name, zone) {
				return notDelegated("%s is a CNAME to %s, not delegated to this node with an NS record", shown, rr.Target)
			}
		}
	}
	if len(targets) == 0 {
		// A server that is not recursive answers with a referral.
		for _, rr := range resp.Ns {
			if ns, ok := rr.(*dns.NS); ok && strings.EqualFold(ns.Hdr.Name, zone) {
				targets = append(targets, CanonicalName(ns.Ns))
			}
		}
	}
	if len(targets) == 0 {
		return notDelegated("no NS record for %s: the DNS provider must delegate it to this node", shown)
	}
	slices.Sort(targets)
	targets = slices.Compact(targets)

	found := make([]string, 0, len(targets))
	for _, target := range targets {
		addrs, why := resolveHost(ctx, resolver, target)
		for _, a := range addrs {
			if slices.ContainsFunc(nodeIPs, a.Equal) {
				return nil
			}
		}
		if len(addrs) == 0 {
			found = append(found, fmt.Sprintf("%s (no address: %s)", target, why))
			continue
		}
		shownAddrs := make([]string, len(addrs))
		for i, a := range addrs {
			shownAddrs[i] = a.String()
		}
		found = append(found, fmt.Sprintf("%s (%s)", target, strings.Join(shownAddrs, ", ")))
	}
	node := make([]string, len(nodeIPs))
	for i, ip := range nodeIPs {
		node[i] = ip.String()
	}
	return notDelegated("NS of %s point at %s, not at this node (%s)", shown, strings.Join(found, ", "), strings.Join(node, ", "))
}

// resolveHost returns the A and AAAA addresses of name, or why there is
// none.
func resolveHost(ctx context.Context, resolver, name string) ([]net.IP, string) {
	var ips []net.IP
	var why []string
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		resp, err := query(ctx, resolver, name, qtype)
		if err != nil {
			why = append(why, fmt.Sprintf("%s query failed: %v", dns.TypeToString[qtype], err))
			continue
		}
		if resp.Rcode != dns.RcodeSuccess {
			why = append(why, fmt.Sprintf("%s answer %s", dns.TypeToString[qtype], dns.RcodeToString[resp.Rcode]))
			continue
		}
		for _, rr := range resp.Answer {
			switch rr := rr.(type) {
			case *dns.A:
				ips = append(ips, rr.A)
			case *dns.AAAA:
				ips = append(ips, rr.AAAA)
			}
		}
	}
	if len(ips) == 0 && len(why) == 0 {
		why = append(why, "no A or AAAA record")
	}
	return ips, strings.Join(why, "; ")
}

// query asks resolver one recursive question over UDP, and over TCP when
// the answer is truncated.
func query(ctx context.Context, resolver, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = true
	m.SetEdns0(maxUDPSize, false)
	c := &dns.Client{Net: "udp", UDPSize: maxUDPSize}
	resp, _, err := c.ExchangeContext(ctx, m, resolver)
	if err == nil && resp.Truncated {
		c.Net = "tcp"
		resp, _, err = c.ExchangeContext(ctx, m, resolver)
	}
	if err != nil {
		return nil, err
	}
	return resp, nil
}
