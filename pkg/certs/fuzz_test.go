package certs

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzCheckDomain: a name checkDomain accepts is safe as a file name.
func FuzzCheckDomain(f *testing.F) {
	for _, s := range []string{"app.example.test", "", ".", "..", "../etc/passwd", "a/b.test", "a..b.test",
		".hidden.test", "APP.test", "app.test.", "*.wild.test", "a\x00.test", "xn--bcher-kva.test", "-a.test"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if checkDomain(name) != nil {
			return
		}
		if name == "" || strings.ContainsAny(name, "/\\\x00*") || strings.Contains(name, "..") ||
			strings.HasPrefix(name, ".") || filepath.Base(name) != name || strings.ToLower(name) != name {
			t.Fatalf("checkDomain accepted %q", name)
		}
	})
}

// FuzzParsePair: parsePair never panics, and what it accepts names the
// domain.
func FuzzParsePair(f *testing.F) {
	cert, key := issue(f, domain, t0, t0.Add(time.Hour))
	f.Add(cert, key)
	f.Add(cert[:len(cert)/2], key)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"), key)
	f.Fuzz(func(t *testing.T, certPEM, keyPEM []byte) {
		leaf, err := parsePair(domain, certPEM, keyPEM)
		if err == nil && leaf.VerifyHostname(domain) != nil {
			t.Fatalf("accepted a certificate for %v", leaf.DNSNames)
		}
	})
}
