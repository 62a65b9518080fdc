//go:build e2e

// Package acme checks the gateway's certificates end to end: the gateway
// binary and the Traefik it runs get real certificates from a Pebble ACME
// server of the test's own, by DNS-01 through the gateway's embedded DNS
// server for name proxies and by HTTP-01 on the web entry point for FQDN
// proxies, and clients verify them against Pebble's root. Everything runs on
// loopback; no test ever reaches a real ACME server. Run with
//
//	set -a; . <(scripts/install-deps.sh); set +a
//	go test -tags e2e -count=1 -v ./test/acme/
package acme

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/threefoldtech/gateway/test/harness"
)

const (
	// acmeTimeout bounds the wait for a certificate. Measured at 1–5s; lego
	// may wait 5s before it checks a challenge again (Pebble sends no
	// Retry-After), and a loaded machine needs a margin.
	acmeTimeout = 60 * time.Second
	// routeTimeout bounds the wait for a route change to reach Traefik.
	routeTimeout = 10 * time.Second
	// restartTimeout bounds the wait for the gateway to start Traefik again
	// after it died, and for Traefik to serve its stored certificates.
	restartTimeout = 30 * time.Second
)

// waitCertificate waits until Traefik, at addr, presents for name a
// certificate that verifies against roots, and returns its leaf.
func waitCertificate(t testing.TB, addr, name string, roots *x509.CertPool, timeout time.Duration) *x509.Certificate {
	t.Helper()
	var leaf *x509.Certificate
	harness.WaitFor(t, timeout, "a certificate for "+name+" that verifies against Pebble's root", func() error {
		c, err := harness.VerifiedHandshake(context.Background(), addr, name, roots)
		if err != nil {
			return err
		}
		leaf = c
		return nil
	})
	return leaf
}

// answer is an HTTP answer as the tests look at it.
type answer struct {
	status   int
	backend  string
	body     string
	location string
}

// get sends GET url with c and reads the answer.
func get(c *http.Client, url string) (answer, error) {
	resp, err := c.Get(url)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return answer{}, fmt.Errorf("reading the answer of %s: %w", url, err)
	}
	return answer{
		status:   resp.StatusCode,
		backend:  resp.Header.Get(harness.HeaderBackend),
		body:     string(b),
		location: resp.Header.Get("Location"),
	}, nil
}

// isRedirect tells whether status is an HTTP redirect.
func isRedirect(status int) bool {
	switch status {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return true
	}
	return false
}

// fileSize returns the size of path, 0 if it does not exist.
func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// readFrom returns the content of path after its first offset bytes.
func readFrom(path string, offset int64) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return "", err
	}
	b, err := io.ReadAll(io.LimitReader(f, 16<<20))
	return string(b), err
}

// waitLog waits until the part of Traefik's log after offset holds want,
// and returns that part.
func waitLog(t testing.TB, path string, offset int64, want string, timeout time.Duration) string {
	t.Helper()
	var text string
	harness.WaitFor(t, timeout, fmt.Sprintf("%q in %s", want, path), func() error {
		var err error
		if text, err = readFrom(path, offset); err != nil {
			return err
		}
		if !strings.Contains(text, want) {
			return fmt.Errorf("not logged yet")
		}
		return nil
	})
	return text
}
