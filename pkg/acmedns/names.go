package acmedns

import (
	"fmt"
	"strings"

	"github.com/miekg/dns"
)

// challengeLabel is the label under which ACME looks for DNS-01 values.
const challengeLabel = "_acme-challenge"

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

// validateDomain checks that domain is a host name the gateway can serve:
// letters, digits and hyphens in labels of at most 63 bytes, at least two
// labels, at most 253 bytes, no wildcard. A trailing dot is allowed.
func validateDomain(domain string) error {
	d := strings.TrimSuffix(domain, ".")
	switch {
	case d == "":
		return fmt.Errorf("domain is empty")
	case len(d) > 253-len(challengeLabel)-1:
		return fmt.Errorf("domain %q is too long (at most %d bytes)", truncate(domain, 64), 253-len(challengeLabel)-1)
	}
	labels := strings.Split(d, ".")
	if len(labels) < 2 {
		return fmt.Errorf("domain %q must have at least two labels", truncate(domain, 64))
	}
	for _, l := range labels {
		if err := validateLabel(l); err != nil {
			return fmt.Errorf("domain %q: %w", truncate(domain, 64), err)
		}
	}
	return nil
}

// validateLabel checks one host name label (RFC 1123).
func validateLabel(l string) error {
	if l == "" {
		return fmt.Errorf("empty label")
	}
	if len(l) > 63 {
		return fmt.Errorf("label %q is longer than 63 bytes", truncate(l, 16))
	}
	if l[0] == '-' || l[len(l)-1] == '-' {
		return fmt.Errorf("label %q starts or ends with a hyphen", l)
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("label %q holds %q (only letters, digits and hyphens)", l, string(rune(c)))
		}
	}
	return nil
}

// isBelowOrAt reports whether the canonical name equals parent or lies below
// it. Both names must be in presentation form (as miekg/dns prints them) and
// lower case; a dot escaped inside a label ("\.") is not a label boundary.
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

// truncate shortens s for error messages.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
