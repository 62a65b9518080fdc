package acmedns

import (
	"errors"
	"fmt"
	"strings"

	"github.com/miekg/dns"

	"github.com/threefoldtech/gateway/internal/dnsname"
	"github.com/threefoldtech/gateway/internal/quote"
)

// challengeLabel is the label under which ACME looks for DNS-01 values.
const challengeLabel = "_acme-challenge"

// maxDomainLength bounds the gateway domain so that its challenge zone is
// still a valid name.
const maxDomainLength = dnsname.MaxLength - len(challengeLabel) - 1

// ChallengeZone returns the canonical name of the zone the gateway answers
// for domain: "_acme-challenge.<domain>." in lower case.
func ChallengeZone(domain string) string {
	return challengeLabel + "." + CanonicalName(domain)
}

// CanonicalName returns name in lower case and fully qualified (with a
// trailing dot), the form the Store and the Handler key names by.
func CanonicalName(name string) string {
	return dns.Fqdn(strings.ToLower(name))
}

// checkDomain checks that domain is a host name the gateway can serve
// (dnsname.Normalize; a trailing dot is allowed) whose challenge zone fits
// in a name.
func checkDomain(domain string) error {
	d := strings.TrimSuffix(domain, ".")
	switch {
	case d == "":
		return errors.New("domain is empty")
	case len(d) > maxDomainLength:
		return fmt.Errorf("domain %s is too long (at most %d bytes, so that the %s zone fits in %d)",
			quote.Short(domain), maxDomainLength, challengeLabel, dnsname.MaxLength)
	}
	// The name as given: Normalize drops one trailing dot, and a second
	// one must stay to be refused.
	if _, err := dnsname.Normalize(domain); err != nil {
		return fmt.Errorf("domain %s: %w", quote.Short(domain), err)
	}
	return nil
}

// isBelowOrAt reports whether the canonical name equals parent or lies below
// it. Both names must be in presentation form (as miekg/dns prints them) and
// lower case; a dot escaped inside a label ("\.") is not a label boundary,
// which dnsname.IsUnder, made for host names, does not know.
func isBelowOrAt(name, parent string) bool {
	if name == parent {
		return true
	}
	if parent == "." {
		return true
	}
	if len(name) <= len(parent) || !strings.HasSuffix(name, parent) {
		return false
	}
	dot := len(name) - len(parent) - 1
	if name[dot] != '.' {
		return false
	}
	// The dot is a label boundary only if it is not escaped, that is if an
	// even number of backslashes precede it.
	n := 0
	for i := dot - 1; i >= 0 && name[i] == '\\'; i-- {
		n++
	}
	return n%2 == 0
}
