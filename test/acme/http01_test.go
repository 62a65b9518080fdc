//go:build e2e

package acme

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/threefoldtech/gateway/test/harness"
)

// TestFQDNCertificateHTTP01 sets an FQDN proxy for a user domain and checks
// that Traefik obtains a certificate for exactly that name by HTTP-01: Pebble
// resolves the name to 127.0.0.1 and fetches the token from the gateway's web
// entry point, which redirects everything else to HTTPS but lets Traefik's
// own challenge router answer.
func TestFQDNCertificateHTTP01(t *testing.T) {
	t.Parallel()
	const name = "app.user.test"
	redis := harness.StartRedis(t)
	// One DNS server for both: the gateway checks that the name points at
	// the node, Pebble resolves it to validate.
	challtest := harness.StartChallTestSrv(t)
	challtest.AddA(t, name, "127.0.0.1")
	pebble := harness.NewPebble(t)
	gw := harness.StartGateway(t, harness.GatewayOptions{
		Redis:          redis,
		IPv4:           "127.0.0.1",
		Resolver:       challtest.DNSAddr,
		CAServer:       pebble.DirectoryURL,
		CACertificates: pebble.CAFile,
	})
	pebble.Start(t, harness.PebbleOptions{HTTPPort: harness.PortOf(t, gw.WebAddr), DNSServer: challtest.DNSAddr})
	roots := pebble.Roots(t)

	backend := harness.StartHTTPBackend(t, "app-backend")
	start := time.Now()
	if err := gw.SetFQDNProxy("wl-app", name, []string{backend.URL()}, false); err != nil {
		t.Fatalf("SetFQDNProxy(%q): %v", name, err)
	}
	leaf := waitCertificate(t, gw.WebSecureAddr, name, roots, acmeTimeout)
	t.Logf("HTTP-01 certificate after %s (%s key)", time.Since(start).Round(time.Millisecond), leaf.PublicKeyAlgorithm)

	if !slices.Equal(leaf.DNSNames, []string{name}) || len(leaf.IPAddresses)+len(leaf.URIs)+len(leaf.EmailAddresses) > 0 {
		t.Errorf("certificate names DNS %q IPs %v URIs %v e-mails %v, want exactly %q", leaf.DNSNames, leaf.IPAddresses, leaf.URIs, leaf.EmailAddresses, name)
	}
	if !slices.Contains(pebble.Issued(), harness.SerialHex(leaf)) {
		t.Errorf("the certificate served (serial %s) is not one Pebble issued: %v", harness.SerialHex(leaf), pebble.Issued())
	}
	// Pebble fetched the token from the web entry point: HTTP-01, not
	// another challenge type.
	if want := "Attempting to validate w/ HTTP: http://" + name + ":" + strconv.Itoa(harness.PortOf(t, gw.WebAddr)) + "/.well-known/acme-challenge/"; !strings.Contains(pebble.Proc.Output(), want) {
		t.Errorf("Pebble's log does not show %q", want)
	}

	a, err := get(harness.VerifiedHTTPSClient(gw.WebSecureAddr, roots), "https://"+name+"/hello")
	if err != nil {
		t.Fatalf("HTTPS to %s: %v", name, err)
	}
	if a.status != http.StatusOK || a.backend != backend.Name || a.body != backend.Name+"\n" {
		t.Errorf("HTTPS to %s: status %d backend %q body %q, want 200 from %s", name, a.status, a.backend, a.body, backend.Name)
	}

	// The redirect to HTTPS still covers every other path of the name.
	a, err = get(harness.HTTPClient(gw.WebAddr), "http://"+name+"/hello")
	if err != nil {
		t.Fatalf("plain HTTP to %s: %v", name, err)
	}
	loc, _ := url.Parse(a.location)
	if !isRedirect(a.status) || loc == nil || loc.Scheme != "https" || loc.Hostname() != name {
		t.Errorf("plain HTTP to %s: status %d Location %q, want a redirect to https://%s", name, a.status, a.location, name)
	}
}
