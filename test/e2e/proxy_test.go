//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/threefoldtech/gateway/pkg/gateway"
	"github.com/threefoldtech/gateway/test/harness"
)

// TestProxy shares one gateway between its subtests: each uses its own
// workload IDs, names and backends, so they do not see each other.
func TestProxy(t *testing.T) {
	e := newEnv(t)
	t.Run("Routes", func(t *testing.T) { testRoutes(t, e) })
	t.Run("FQDNRefused", func(t *testing.T) { testFQDNRefused(t, e) })
	t.Run("Balancing", func(t *testing.T) { testBalancing(t, e) })
	t.Run("Streaming", func(t *testing.T) { testStreaming(t, e) })
	t.Run("Metrics", func(t *testing.T) { testMetrics(t, e) })
}

// testRoutes sets one route of each kind and mode and checks that a client
// reaches the backend through Traefik, and that plain HTTP redirects to
// HTTPS.
func testRoutes(t *testing.T, e *env) {
	cases := []struct {
		name        string
		wlID        string
		prefix      string // a name proxy when set
		fqdn        string // an FQDN proxy when set
		passthrough bool
	}{
		// Traefik terminates TLS for the name and forwards plain HTTP.
		{name: "name proxy", wlID: "wl-name-http", prefix: "web1"},
		// The TCP router must pass the handshake to the backend untouched.
		{name: "name proxy with passthrough", wlID: "wl-name-tls", prefix: "tls1", passthrough: true},
		// The domain is checked through --resolver before the route is written.
		{name: "fqdn proxy", wlID: "wl-fqdn-http", fqdn: "app.example.test"},
		{name: "fqdn proxy with passthrough", wlID: "wl-fqdn-tls", fqdn: "secure.example.test", passthrough: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			backendName := "backend-" + tc.wlID
			var host string
			var backend []string
			var tlsBackend *harness.TLSBackend
			if tc.prefix != "" {
				host = tc.prefix + "." + e.gw.Domain
			} else {
				host = tc.fqdn
				e.dns.Set(t, tc.fqdn, "127.0.0.1")
			}
			if tc.passthrough {
				tlsBackend = harness.StartTLSBackend(t, backendName, host)
				backend = []string{tlsBackend.Addr}
			} else {
				backend = []string{harness.StartHTTPBackend(t, backendName).URL()}
			}

			wantKind := gateway.KindName
			if tc.prefix != "" {
				got := e.gw.SetNamedProxy(t, tc.wlID, tc.prefix, backend, tc.passthrough)
				if got != host {
					t.Fatalf("SetNamedProxy returned %q, want %q", got, host)
				}
			} else {
				wantKind = gateway.KindFQDN
				if err := e.gw.SetFQDNProxy(tc.wlID, tc.fqdn, backend, tc.passthrough); err != nil {
					t.Fatalf("SetFQDNProxy(%q, %q): %v", tc.wlID, tc.fqdn, err)
				}
			}
			p, ok := e.findRoute(t, tc.wlID)
			if !ok || p.FQDN != host || p.Kind != wantKind || p.TLSPassthrough != tc.passthrough {
				t.Fatalf("List has %+v (found %v), want fqdn %s, kind %s, passthrough %v", p, ok, host, wantKind, tc.passthrough)
			}

			if tc.passthrough {
				e.waitPassthrough(t, host, backendName)
				a, err := e.tlsGet(host)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(a.Leaf, tlsBackend.Cert.Raw) {
					t.Errorf("the handshake presented another certificate than the backend's own")
				}
				if a.Status != http.StatusOK || a.Body != backendName+"\n" {
					t.Errorf("got status %d body %q, want 200 %q", a.Status, a.Body, backendName+"\n")
				}
			} else {
				e.waitHTTP(t, host, backendName)
				a, err := e.get(host, "/hello?x=1")
				if err != nil {
					t.Fatal(err)
				}
				if a.status != http.StatusOK || a.backend != backendName || a.body != backendName+"\n" {
					t.Errorf("got status %d backend %q body %q, want 200 from %s", a.status, a.backend, a.body, backendName)
				}
			}

			// Plain HTTP on the web entry point redirects to HTTPS, keeping
			// the host and the path.
			resp, err := e.web.Get("http://" + host + "/some/path?q=1")
			if err != nil {
				t.Fatalf("plain HTTP to %s: %v", host, err)
			}
			resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
			default:
				t.Fatalf("plain HTTP to %s: status %d, want a redirect", host, resp.StatusCode)
			}
			loc, err := url.Parse(resp.Header.Get("Location"))
			if err != nil || loc.Scheme != "https" || loc.Hostname() != host || loc.Path != "/some/path" {
				t.Errorf("plain HTTP to %s: Location %q, want https://%s[:port]/some/path", host, resp.Header.Get("Location"), host)
			}
		})
	}
}

// testFQDNRefused checks that a domain that does not point at the node, only
// at it, is refused with an error naming it, and that nothing is written.
func testFQDNRefused(t *testing.T, e *env) {
	backend := harness.StartHTTPBackend(t, "never")
	cases := []struct {
		name    string
		fqdn    string
		records []string
	}{
		// A record elsewhere: traffic would never come here, and HTTP-01 would fail.
		{name: "foreign A record", fqdn: "elsewhere.example.test", records: []string{"127.0.0.9"}},
		// One foreign record among the node's is still foreign.
		{name: "one of two records foreign", fqdn: "mixed.example.test", records: []string{"127.0.0.1", "127.0.0.9"}},
		// A name with no record at all.
		{name: "no record", fqdn: "missing.example.test"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wlID := fmt.Sprintf("wl-refused-%d", i)
			e.dns.Set(t, tc.fqdn, tc.records...)
			for _, passthrough := range []bool{false, true} {
				b := backend.URL()
				if passthrough {
					b = backend.Addr
				}
				err := e.gw.SetFQDNProxy(wlID, tc.fqdn, []string{b}, passthrough)
				if err == nil {
					t.Fatalf("SetFQDNProxy(%q, passthrough %v) with records %v: no error", tc.fqdn, passthrough, tc.records)
				}
				// Errors cross zbus as text: the caller only has the message.
				if !strings.Contains(err.Error(), tc.fqdn) {
					t.Errorf("error %q does not name the fqdn %q", err, tc.fqdn)
				}
				if cfg := e.gw.RouteConfig(t, wlID); cfg != nil {
					t.Errorf("route of refused %s published in %s", wlID, e.gw.RouteFile(wlID))
				}
				if p, ok := e.findRoute(t, wlID); ok {
					t.Errorf("List has the refused route %+v", p)
				}
			}
		})
	}
}

// testBalancing spreads traffic over three backends, moves it to one by
// setting the route again, and deletes it, in both modes.
func testBalancing(t *testing.T, e *env) {
	const requests = 60
	cases := []struct {
		name        string
		wlID        string
		prefix      string
		passthrough bool
	}{
		// Traefik balances HTTP requests over the service's servers.
		{name: "http", wlID: "wl-lb-http", prefix: "lb"},
		// Traefik balances TCP connections over the service's servers.
		{name: "passthrough", wlID: "wl-lb-tls", prefix: "lbtls", passthrough: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			host := tc.prefix + "." + e.gw.Domain
			var names, addrs []string
			var certs [][]byte
			hits := map[string]func() int64{}
			for i := range 3 {
				name := fmt.Sprintf("%s-%d", tc.wlID, i)
				names = append(names, name)
				if tc.passthrough {
					b := harness.StartTLSBackend(t, name, host)
					addrs = append(addrs, b.Addr)
					certs = append(certs, b.Cert.Raw)
					hits[name] = b.Hits
				} else {
					b := harness.StartHTTPBackend(t, name)
					addrs = append(addrs, b.URL())
					hits[name] = b.Hits
				}
			}
			// one sends one request on a new connection for passthrough (TCP
			// is balanced per connection) and returns the backend's name.
			one := func() (string, error) {
				if tc.passthrough {
					a, err := e.tlsGet(host)
					if err != nil {
						return "", err
					}
					if a.Backend != "" && !slices.ContainsFunc(certs, func(c []byte) bool { return bytes.Equal(c, a.Leaf) }) {
						return "", fmt.Errorf("backend %s answered behind another certificate", a.Backend)
					}
					return a.Backend, nil
				}
				a, err := e.get(host, "/")
				if err != nil {
					return "", err
				}
				if a.status != http.StatusOK {
					return "", fmt.Errorf("status %d", a.status)
				}
				return a.backend, nil
			}
			wait := e.waitHTTP
			if tc.passthrough {
				wait = e.waitPassthrough
			}

			e.gw.SetNamedProxy(t, tc.wlID, tc.prefix, addrs, tc.passthrough)
			wait(t, host, names[0])
			counts := map[string]int{}
			for range requests {
				name, err := one()
				if err != nil {
					t.Fatalf("request through %s: %v", host, err)
				}
				counts[name]++
			}
			for _, name := range names {
				if counts[name] == 0 {
					t.Errorf("backend %s got none of %d requests: %v", name, requests, counts)
				}
			}

			// Setting the route again with one backend moves all traffic there.
			e.gw.SetNamedProxy(t, tc.wlID, tc.prefix, addrs[1:2], tc.passthrough)
			harness.WaitFor(t, routeTimeout, "all traffic to move to "+names[1], func() error {
				for range 10 {
					name, err := one()
					if err != nil {
						return err
					}
					if name != names[1] {
						return fmt.Errorf("request reached %q", name)
					}
				}
				return nil
			})
			for range requests / 2 {
				if name, err := one(); err != nil || name != names[1] {
					t.Fatalf("after moving to %s a request reached %q (error %v)", names[1], name, err)
				}
			}

			// Deleting the route leaves the name with no backend.
			e.gw.DeleteNamedProxy(t, tc.wlID)
			gone := func() error {
				if tc.passthrough {
					a, err := e.tlsGet(host)
					if err != nil {
						return nil // the handshake fails: fine
					}
					if a.Backend != "" || slices.ContainsFunc(certs, func(c []byte) bool { return bytes.Equal(c, a.Leaf) }) {
						return fmt.Errorf("backend %q still reached", a.Backend)
					}
					return nil
				}
				a, err := e.get(host, "/")
				if err != nil {
					return err
				}
				if a.status != http.StatusNotFound || a.backend != "" {
					return fmt.Errorf("status %d from backend %q, want 404 from Traefik", a.status, a.backend)
				}
				return nil
			}
			harness.WaitFor(t, routeTimeout, host+" to reach no backend", gone)
			before := hitsOf(hits)
			for range 10 {
				if err := gone(); err != nil {
					t.Fatalf("after the delete: %v", err)
				}
			}
			if after := hitsOf(hits); after != before {
				t.Errorf("backends got %d requests after the delete", after-before)
			}
			if p, ok := e.findRoute(t, tc.wlID); ok {
				t.Errorf("List still has the deleted route %+v", p)
			}
			if cfg := e.gw.RouteConfig(t, tc.wlID); cfg != nil {
				t.Errorf("route of deleted %s published in %s", tc.wlID, e.gw.RouteFile(tc.wlID))
			}
		})
	}
}

func hitsOf(hits map[string]func() int64) int64 {
	var n int64
	for _, h := range hits {
		n += h()
	}
	return n
}

// errNoRoute tells a metrics wait that the counters are not there yet.
var errNoRoute = errors.New("no counters yet")

// testMetrics sends known byte counts to one workload and a little to
// another, and checks Metrics reports at least those bytes for the first and
// does not count them for the second.
func testMetrics(t *testing.T, e *env) {
	const (
		posts    = 10
		bodySize = 10_000
		respSize = 20_000
		n        = posts * bodySize // request bytes sent to wl-metrics-a
		m        = posts * respSize // response bytes sent back from it
	)
	a := harness.StartHTTPBackend(t, "metrics-a")
	b := harness.StartHTTPBackend(t, "metrics-b")
	hostA := e.gw.SetNamedProxy(t, "wl-metrics-a", "metrics-a", []string{a.URL()}, false)
	hostB := e.gw.SetNamedProxy(t, "wl-metrics-b", "metrics-b", []string{b.URL()}, false)
	e.waitHTTP(t, hostA, "metrics-a")
	e.waitHTTP(t, hostB, "metrics-b")

	body := bytes.Repeat([]byte("y"), bodySize)
	for range posts {
		ctx, cancel := context.WithTimeout(context.Background(), routeTimeout)
		ans, err := e.request(ctx, http.MethodPost, hostA, fmt.Sprintf("/?size=%d", respSize), body)
		cancel()
		if err != nil || ans.status != http.StatusOK || len(ans.body) != respSize {
			t.Fatalf("POST to %s: status %d, %d bytes, error %v", hostA, ans.status, len(ans.body), err)
		}
	}
	if a.BytesIn() < n || a.BytesOut() < m {
		t.Fatalf("backend counted %d bytes in, %d out; want at least %d and %d", a.BytesIn(), a.BytesOut(), n, m)
	}
	for range 5 {
		if _, err := e.get(hostB, "/"); err != nil {
			t.Fatal(err)
		}
	}

	var got gateway.GatewayMetrics
	harness.WaitFor(t, routeTimeout, "Metrics to count the bytes of wl-metrics-a", func() error {
		var err error
		if got, err = e.gw.Metrics(); err != nil {
			return err
		}
		if got.Request["wl-metrics-a"] < n || got.Response["wl-metrics-a"] < m || got.Response["wl-metrics-b"] == 0 {
			return fmt.Errorf("%w: request %v response %v", errNoRoute, got.Request, got.Response)
		}
		return nil
	})
	if got.Request["wl-metrics-b"] >= n || got.Response["wl-metrics-b"] >= m {
		t.Errorf("wl-metrics-b counts request %v response %v bytes: it holds the bytes of wl-metrics-a", got.Request["wl-metrics-b"], got.Response["wl-metrics-b"])
	}
	// Traefik counts bodies only; far more than sent means another
	// workload's bytes leaked in.
	if got.Request["wl-metrics-a"] > 2*n || got.Response["wl-metrics-a"] > 2*m {
		t.Errorf("wl-metrics-a counts request %v response %v bytes, sent %d and %d", got.Request["wl-metrics-a"], got.Response["wl-metrics-a"], n, m)
	}
	t.Logf("metrics: request %v response %v", got.Request, got.Response)
}
