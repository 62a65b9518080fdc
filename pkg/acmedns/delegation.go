package acmedns

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"github.com/threefoldtech/gateway/internal/dnsclient"
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
func CheckDelegation(ctx context.Context, resolver string, domain string, nodeIPs []netip.Addr) error {
	if err := checkDomain(domain); err != nil {
		return fmt.Errorf("checking delegation: %w", err)
	}
	if len(nodeIPs) == 0 {
		return errors.New("checking delegation: no node IP address given")
	}
	resolver = dnsclient.ServerAddress(resolver)
	zone := ChallengeZone(domain)
	shown := strings.TrimSuffix(zone, ".")

	resp, err := dnsclient.Exchange(ctx, resolver, zone, dns.TypeNS, 0)
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

	node := make([]netip.Addr, len(nodeIPs))
	for i, ip := range nodeIPs {
		// Answers come unmapped; so must what they are compared with.
		node[i] = ip.Unmap()
	}
	found := make([]string, 0, len(targets))
	for _, target := range targets {
		addrs, why := resolveHost(ctx, resolver, target)
		for _, a := range addrs {
			if slices.Contains(node, a) {
				return nil
			}
		}
		if len(addrs) == 0 {
			found = append(found, fmt.Sprintf("%s (no address: %s)", target, why))
			continue
		}
		found = append(found, fmt.Sprintf("%s (%s)", target, joinAddrs(addrs)))
	}
	return notDelegated("NS of %s point at %s, not at this node (%s)", shown, strings.Join(found, ", "), joinAddrs(node))
}

// resolveHost returns the A and AAAA addresses of name, or why there is
// none.
func resolveHost(ctx context.Context, resolver, name string) ([]netip.Addr, string) {
	var ips []netip.Addr
	var why []string
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		resp, err := dnsclient.Exchange(ctx, resolver, name, qtype, 0)
		if err != nil {
			why = append(why, fmt.Sprintf("%s query failed: %v", dns.TypeToString[qtype], err))
			continue
		}
		if resp.Rcode != dns.RcodeSuccess {
			why = append(why, fmt.Sprintf("%s answer %s", dns.TypeToString[qtype], dns.RcodeToString[resp.Rcode]))
			continue
		}
		ips = append(ips, dnsclient.Addrs(resp)...)
	}
	if len(ips) == 0 && len(why) == 0 {
		why = append(why, "no A or AAAA record")
	}
	return ips, strings.Join(why, "; ")
}

// joinAddrs lists addresses for an error message.
func joinAddrs(addrs []netip.Addr) string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}
