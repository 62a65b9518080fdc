//go:build e2e

package acme

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"github.com/threefoldtech/gateway/pkg/traefik"
	"github.com/threefoldtech/gateway/test/harness"
)

// TestPassthroughChallenge sets a name proxy that passes TLS through and
// checks that the backend can still get its own certificate by HTTP-01: the
// route file sends /.well-known/acme-challenge/ of the name, on the web entry
// point, to the backend's port 80, and Traefik proxies those requests there
// instead of redirecting them to HTTPS, while it redirects every other path.
func TestPassthroughChallenge(t *testing.T) {
	t.Parallel()
	const (
		wlID   = "wl-tls"
		prefix = "tls"
		token  = "passthrough-token-4f2a"
	)
	redis := harness.StartRedis(t)
	resolver := harness.StartDNS(t)
	// No ACME server: the route asks Traefik for no certificate.
	gw := harness.StartGateway(t, harness.GatewayOptions{Redis: redis, Resolver: resolver.Addr})
	name := prefix + "." + gw.Domain
	backend := harness.StartTLSBackend(t, "tls-backend", name)

	// The backend's HTTP-01 responder, on the one port the route allows.
	// Binding port 80 needs root and a free port; without it the test can
	// only check that the request is proxied, not what comes back.
	challenge := "/.well-known/acme-challenge/" + token
	port80, err := net.Listen("tcp", "127.0.0.1:80")
	if err != nil {
		t.Logf("127.0.0.1:80 not available (%v): checking only that the challenge is proxied, not redirected", err)
	} else {
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != challenge || r.Host != name {
				http.NotFound(w, r)
				return
			}
			_, _ = io.WriteString(w, token)
		})}
		go func() { _ = srv.Serve(port80) }()
		t.Cleanup(func() { _ = srv.Close() })
	}

	if got := gw.SetNamedProxy(t, wlID, prefix, []string{backend.Addr}, true); got != name {
		t.Fatalf("SetNamedProxy returned %q, want %q", got, name)
	}
	checkChallengeRouter(t, gw, wlID, name)

	// Live once the TLS handshake reaches the backend itself.
	harness.WaitFor(t, routeTimeout, "the passthrough route", func() error {
		a, err := harness.TLSGet(context.Background(), gw.WebSecureAddr, name, "/")
		if err != nil {
			return err
		}
		if !bytes.Equal(a.Leaf, backend.Cert.Raw) {
			return errors.New("the handshake presented another certificate than the backend's")
		}
		return nil
	})

	web := harness.HTTPClient(gw.WebAddr)
	a, err := get(web, "http://"+name+challenge)
	if err != nil {
		t.Fatalf("plain HTTP challenge request to %s: %v", name, err)
	}
	switch {
	case isRedirect(a.status):
		t.Errorf("challenge request redirected (%d to %q), want it proxied to the backend's port 80", a.status, a.location)
	case port80 != nil && (a.status != http.StatusOK || a.body != token):
		t.Errorf("challenge request: status %d body %q, want 200 %q from 127.0.0.1:80", a.status, a.body, token)
	case port80 == nil:
		t.Logf("challenge request proxied to 127.0.0.1:80: status %d", a.status)
	}

	a, err = get(web, "http://"+name+"/index.html")
	if err != nil {
		t.Fatalf("plain HTTP to %s: %v", name, err)
	}
	loc, _ := url.Parse(a.location)
	if !isRedirect(a.status) || loc == nil || loc.Scheme != "https" || loc.Hostname() != name || loc.Path != "/index.html" {
		t.Errorf("plain HTTP to %s/index.html: status %d Location %q, want a redirect to https://%s[:port]/index.html", name, a.status, a.location, name)
	}
}

// checkChallengeRouter reads the route of wlID back from its group file and
// checks its HTTP router: the challenge path of name, on the web entry point
// only, to port 80 of the backend's address.
func checkChallengeRouter(t testing.TB, gw *harness.Gateway, wlID, name string) {
	t.Helper()
	path := gw.RouteFile(wlID)
	cfg := gw.RouteConfig(t, wlID)
	if cfg == nil || cfg.HTTP == nil || len(cfg.HTTP.Routers) != 1 || len(cfg.HTTP.Services) != 1 {
		t.Fatalf("%s: want one HTTP router and service for the challenge of %s, got %+v", path, wlID, cfg)
	}
	for id, r := range cfg.HTTP.Routers {
		wantRule := fmt.Sprintf("Host(`%s`) && PathPrefix(`/.well-known/acme-challenge/`)", name)
		if r.Rule != wantRule || !slices.Equal(r.EntryPoints, []string{traefik.EntryPointWeb}) || r.TLS != nil {
			t.Errorf("%s: router %s is %+v, want rule %s on entry point web without TLS", path, id, r, wantRule)
		}
		svc := cfg.HTTP.Services[r.Service]
		if svc == nil || svc.LoadBalancer == nil || !slices.Equal(svc.LoadBalancer.Servers, []traefik.Server{{URL: "http://127.0.0.1:80"}}) {
			t.Errorf("%s: service %q is %+v, want one server http://127.0.0.1:80", path, r.Service, svc)
		}
	}
}
