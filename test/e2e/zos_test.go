//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/threefoldtech/gateway/pkg/gateway"
	"github.com/threefoldtech/gateway/pkg/gateway/zos"
	"github.com/threefoldtech/gateway/test/harness"
)

// Health checking as the gateway renders it for a route with several
// backends (docs/API.md); checkHealthRendered makes sure the route file says
// so before a test relies on these timings.
const (
	// failureWindow is how long an HTTP backend rests once it failed
	// maxFailedAttempts requests.
	failureWindow     = 10 * time.Second
	maxFailedAttempts = 3
	// tcpInterval and tcpTimeout pace the TCP health check of a
	// passthrough route.
	tcpInterval = 5 * time.Second
	tcpTimeout  = 2 * time.Second
)

// Bounds of the health tests.
const (
	// reviveTimeout bounds the wait for a backend started again to get
	// traffic: the failure window (HTTP) or a TCP health-check round, with
	// margin.
	reviveTimeout = 15 * time.Second
	// tcpSettle bounds how long after a kill a passthrough connection may
	// still fail: one health-check round (interval and timeout), with
	// margin.
	tcpSettle = 10 * time.Second
	// quiet is how long no connection may fail for a passthrough route to
	// count as settled: longer than tcpInterval, so a health-check round
	// that put the dead server back in the balance would show.
	quiet = 8 * time.Second
	// deadRequests is how many requests (or connections) a test sends
	// through a route with a dead backend before it judges: with three
	// backends, about a hundred would go to the dead one without health
	// checks.
	deadRequests = 300
	// staleWindow bounds the moment after an HTTP backend stops in which
	// Traefik may still write a request on a keep-alive connection to it
	// that the backend closed: the request fails and is not retried.
	// Measured over some 30 kills: such failures started at most 4ms after
	// Stop returned (0.5ms on an idle machine).
	staleWindow = 100 * time.Millisecond
	// trafficWorkers send requests side by side, trafficPause apart each.
	trafficWorkers = 3
	trafficPause   = 10 * time.Millisecond
	// trafficMax stops a traffic loop a test forgot to stop.
	trafficMax = 60 * time.Second
)

// The node's public IPv6 for TestZosIPv6, and another address of the same
// documentation network (RFC 3849): nothing ever connects to either.
const (
	publicIPv6  = "2001:db8::7"
	foreignIPv6 = "2001:db8::8"
)

// TestZos checks, on one gateway, what zos's callers rely on beyond the
// routes of TestProxy: https:// backends, health checks of routes with
// several backends, and the object name zos addresses.
func TestZos(t *testing.T) {
	e := newEnv(t)
	t.Run("HTTPSBackend", func(t *testing.T) { testHTTPSBackend(t, e) })
	t.Run("ZosObject", func(t *testing.T) { testZosObject(t, e) })
	t.Run("Health", func(t *testing.T) {
		// Traefik rebuilds every service on any change of its dynamic
		// configuration, which puts every server of every route back in the
		// balance and restarts the health-check timers (measured: a dead
		// passthrough backend got connections again for 5s after another
		// route was set). So every route is set before a backend is
		// killed, and none changes until the last one is back.
		t.Run("HTTPDeadBackend", func(t *testing.T) { testHealthHTTPDeadBackend(t, e) })
		killHTTP := setHealthHTTP(t, e)
		killPassthrough := setHealthPassthrough(t, e)
		// Both wait on Traefik's health-check timers: side by side they
		// take the time of the longer one.
		t.Run("HTTP", func(t *testing.T) {
			t.Parallel()
			killHTTP(t)
		})
		t.Run("Passthrough", func(t *testing.T) {
			t.Parallel()
			killPassthrough(t)
		})
	})
}

// testHTTPSBackend routes a name without passthrough to a backend that
// serves HTTPS with a self-signed certificate. It guards the https:// scheme
// reaching Traefik's server URL (Traefik would speak plain HTTP to the TLS
// port: a 400 from the backend) and the static insecureSkipVerify (without
// it Traefik refuses the backend's certificate: a 500).
func testHTTPSBackend(t *testing.T, e *env) {
	const wlID, name = "wl-https-backend", "https-backend"
	b := harness.StartTLSBackend(t, name)
	backend := "https://" + b.Addr
	host := e.gw.SetNamedProxy(t, wlID, "httpsb", []string{backend}, false)
	e.waitHTTP(t, host, name)

	a, err := e.get(host, "/hello?x=1")
	if err != nil {
		t.Fatal(err)
	}
	if a.status != http.StatusOK || a.backend != name || a.body != name+"\n" {
		t.Errorf("got status %d backend %q body %q, want 200 from %s", a.status, a.backend, a.body, name)
	}
	// Traefik terminates the client's TLS: the client sees Traefik's
	// certificate, not the backend's.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ta, err := harness.TLSGet(ctx, e.gw.WebSecureAddr, host, "/")
	if err != nil {
		t.Fatal(err)
	}
	if ta.Status != http.StatusOK || ta.Backend != name {
		t.Errorf("TLS to %s: status %d from backend %q, want 200 from %s", host, ta.Status, ta.Backend, name)
	}
	if bytes.Equal(ta.Leaf, b.Cert.Raw) {
		t.Errorf("the client saw the backend's own certificate: TLS was passed through, not terminated")
	}
	// And Traefik speaks TLS to the backend: every request came over TLS.
	if b.Hits() == 0 || b.TLSHits() != b.Hits() {
		t.Errorf("backend served %d requests, %d over TLS; want all over TLS", b.Hits(), b.TLSHits())
	}

	p, ok := e.findRoute(t, wlID)
	if !ok || p.FQDN != host || p.TLSPassthrough || !slices.Equal(p.Backends, []string{backend}) {
		t.Errorf("List has %+v (found %v), want fqdn %s, no passthrough, backends [%s]", p, ok, host, backend)
	}
}

// testZosObject sets and deletes a route through the stub zos's callers
// use, which addresses the object as manager@0.0.1. It guards the second
// name the gateway registers on zbus: without it every call of zos times out.
func testZosObject(t *testing.T, e *env) {
	const wlID, prefix, name = "wl-zos", "zos", "zos-backend"
	stub := zos.NewGatewayStub(e.gw.Client)
	b := harness.StartHTTPBackend(t, name)
	ctx, cancel := context.WithTimeout(context.Background(), routeTimeout)
	defer cancel()

	var host string
	err := harness.Call(func() (err error) {
		host, err = stub.SetNamedProxy(ctx, wlID, prefix, []string{b.URL()}, false)
		return err
	})
	if err != nil {
		t.Fatalf("SetNamedProxy through manager@0.0.1: %v", err)
	}
	if want := prefix + "." + e.gw.Domain; host != want {
		t.Fatalf("SetNamedProxy through manager@0.0.1 returned %q, want %q", host, want)
	}
	e.waitHTTP(t, host, name)

	var list []gateway.Proxy
	if err := harness.Call(func() (err error) { list, err = stub.List(ctx); return err }); err != nil {
		t.Fatalf("List through manager@0.0.1: %v", err)
	}
	if !slices.ContainsFunc(list, func(p gateway.Proxy) bool { return p.WorkloadID == wlID && p.FQDN == host }) {
		t.Errorf("List through manager@0.0.1 lacks %s: %+v", wlID, list)
	}
	// One object under two names: the documented one sees the route too.
	if _, ok := e.findRoute(t, wlID); !ok {
		t.Errorf("List through gateway@0.0.1 lacks %s, set through manager@0.0.1", wlID)
	}

	if err := harness.Call(func() error { return stub.DeleteNamedProxy(ctx, wlID) }); err != nil {
		t.Fatalf("DeleteNamedProxy through manager@0.0.1: %v", err)
	}
	harness.WaitFor(t, routeTimeout, host+" to reach no backend", func() error {
		a, err := e.get(host, "/")
		if err != nil {
			return err
		}
		if a.status != http.StatusNotFound || a.backend != "" {
			return fmt.Errorf("status %d from backend %q, want 404 from Traefik", a.status, a.backend)
		}
		return nil
	})
	if p, ok := e.findRoute(t, wlID); ok {
		t.Errorf("List still has the deleted route %+v", p)
	}
	if cfg := e.gw.RouteConfig(t, wlID); cfg != nil {
		t.Errorf("route of deleted %s published in %s", wlID, e.gw.RouteFile(wlID))
	}
}

// setHealthHTTP sets a route to three HTTP backends, waits until each got a
// request, and returns the test that kills one of them under traffic and
// starts it again on the same address. It guards the retry middleware
// (without it the requests the balancer sends to the dead backend fail with
// a 502 until the passive health check rests it), the passive health check
// (without it the dead backend stays in the balance, every third request
// pays a refused dial, and the backend started again gets requests at once
// instead of after the failure window) and the backend's return once its
// failure window ends.
func setHealthHTTP(t *testing.T, e *env) func(*testing.T) {
	const wlID = "wl-health-http"
	var backends []*harness.Backend
	var urls, names []string
	for i := range 3 {
		// A port below the ephemeral range: no outgoing connection takes
		// it while the backend is dead, so it can listen there again.
		b := harness.StartHTTPBackendAt(t, fmt.Sprintf("%s-%d", wlID, i), harness.Addr(t))
		backends = append(backends, b)
		urls = append(urls, b.URL())
		names = append(names, b.Name)
	}
	host := e.gw.SetNamedProxy(t, wlID, "health", urls, false)
	checkHealthRendered(t, e, wlID, len(urls), false)
	one := func() (string, error) { return e.getOK(host) }
	waitAllReached(t, host, names, one)
	return func(t *testing.T) { killHTTPBackend(t, backends, one) }
}

// killHTTPBackend is the test setHealthHTTP returns: one sends a request
// through the route.
func killHTTPBackend(t *testing.T, backends []*harness.Backend, one func() (string, error)) {
	tr := startTraffic(t, one)
	tr.wait(t, time.Time{}, 50, "requests to flow before the kill")
	dead := backends[0]
	dead.Stop()
	killed := time.Now()
	deadHits := dead.Hits()
	tr.wait(t, killed, deadRequests, "requests to flow with "+dead.Name+" dead")
	revived := time.Now()
	back := harness.StartHTTPBackendAt(t, dead.Name, dead.Addr)
	harness.WaitFor(t, reviveTimeout, dead.Name+", started again on "+dead.Addr+", to get requests", func() error {
		if back.Hits() == 0 {
			return fmt.Errorf("no request %s after the start", time.Since(revived).Round(time.Millisecond))
		}
		return nil
	})
	tookBack := time.Since(revived)
	// The passive health check rested the backend at its first failures,
	// right after the kill, for the failure window: back earlier, it was
	// never out of the balance and the retry alone hid it.
	if rested := revived.Add(tookBack).Sub(killed); rested < failureWindow-time.Second {
		t.Errorf("%s got requests again %s after the kill, within the failure window (%s): the passive health check did not rest it", dead.Name, rested, failureWindow)
	}
	tr.wait(t, time.Now(), 50, "requests to flow after "+dead.Name+" came back")
	tr.stop()

	// Traefik never replays a request once it wrote it to a server: one
	// the backend had received when it stopped fails (502), and so does one
	// Traefik writes, in the moment after the stop, on a pooled keep-alive
	// connection the backend just closed. At most one request per client
	// is in flight then. Any request sent later reaches a live backend
	// through the retry.
	all := tr.since(time.Time{})
	failed := failures(all)
	early := failures(tr.between(time.Time{}, killed.Add(staleWindow)))
	if late := failures(tr.since(killed.Add(staleWindow))); len(late) > 0 {
		t.Errorf("%d of %d requests sent %s or more after the kill failed; the retry must hide the dead backend:\n%s",
			len(late), len(tr.since(killed.Add(staleWindow))), staleWindow, describe(late, killed))
	}
	if len(early) > trafficWorkers {
		t.Errorf("%d requests in flight at the kill failed, want at most one per client (%d):\n%s", len(early), trafficWorkers, describe(early, killed))
	}
	for _, s := range all {
		if s.err == nil && s.backend == dead.Name && s.start.After(killed) && s.end.Before(revived) {
			t.Errorf("%s answered a request sent %s after it was stopped", dead.Name, s.start.Sub(killed))
		}
	}
	if dead.Hits() != deadHits {
		t.Errorf("stopped %s served %d requests", dead.Name, dead.Hits()-deadHits)
	}
	t.Logf("%d requests, %d failed; %d sent while %s was dead (%s); it got requests again %s after it started again; answers by backend: %v",
		len(all), len(failed), len(tr.between(killed, revived)), dead.Name,
		revived.Sub(killed).Round(time.Millisecond), tookBack.Round(time.Millisecond), byBackend(all))
	if len(early) > 0 {
		t.Logf("failed in flight at the kill, relative to it:\n%s", describe(early, killed))
	}
}

// testHealthHTTPDeadBackend routes to two live HTTP backends and a port
// nothing listens on. No connection to the dead one ever existed, so no
// request can be lost on one: every request must be answered. It guards the
// retry middleware exactly (without it the first requests the balancer
// sends to the dead port fail with a 502 until the passive health check
// rests it, in the instant after the route is set as after a kill, where
// setHealthHTTP must allow for lost requests).
func testHealthHTTPDeadBackend(t *testing.T, e *env) {
	const wlID = "wl-health-dead"
	var urls, names []string
	for i := range 2 {
		b := harness.StartHTTPBackend(t, fmt.Sprintf("%s-%d", wlID, i))
		urls = append(urls, b.URL())
		names = append(names, b.Name)
	}
	// A free port no one else in this test binary gets, never listened on.
	urls = append(urls, "http://"+harness.Addr(t))
	host := e.gw.SetNamedProxy(t, wlID, "healthdead", urls, false)
	checkHealthRendered(t, e, wlID, len(urls), false)
	// The route is there once Traefik answers other than 404: that first
	// answer counts like the others.
	var first answer
	routed := time.Now()
	harness.WaitFor(t, routeTimeout, host+" to be routed", func() error {
		a, err := e.get(host, "/")
		if err != nil {
			return err
		}
		if a.status == http.StatusNotFound && a.backend == "" {
			return fmt.Errorf("404 from Traefik")
		}
		first = a
		return nil
	})
	if first.status != http.StatusOK || !slices.Contains(names, first.backend) {
		t.Errorf("first answer through the route: status %d from backend %q, want 200 from a live backend", first.status, first.backend)
	}
	one := func() (string, error) { return e.getOK(host) }
	tr := startTraffic(t, one)
	tr.wait(t, time.Time{}, deadRequests, "requests to flow")
	tr.stop()
	all := tr.since(time.Time{})
	if f := failures(all); len(f) > 0 {
		t.Errorf("%d of %d requests failed; the retry must hide the dead backend:\n%s", len(f), len(all), describe(f, routed))
	}
	counts := byBackend(all)
	for _, n := range names {
		if counts[n] == 0 {
			t.Errorf("backend %s got none of %d requests: %v", n, len(all), counts)
		}
	}
	t.Logf("%d requests, %d failed; answers by backend: %v", len(all), len(failures(all)), counts)
}

// setHealthPassthrough sets a passthrough route to three TLS backends,
// waits until each got a connection, and returns the test that kills one of
// them under traffic and starts it again on the same address. TCP has no
// retry: connections the balancer sends to the dead server fail until a
// health-check round takes it out. It guards the TCP health check (without
// it a third of the connections fail for as long as the backend is dead),
// its interval (a failure later than a round after the kill) and the
// backend's return at the next round once it listens again.
func setHealthPassthrough(t *testing.T, e *env) func(*testing.T) {
	const wlID, prefix = "wl-health-tls", "healthtls"
	host := prefix + "." + e.gw.Domain
	var backends []*harness.TLSBackend
	var addrs, names []string
	for i := range 3 {
		// A port below the ephemeral range, as in setHealthHTTP.
		b := harness.StartTLSBackendAt(t, fmt.Sprintf("%s-%d", wlID, i), harness.Addr(t), host)
		backends = append(backends, b)
		addrs = append(addrs, b.Addr)
		names = append(names, b.Name)
	}
	e.gw.SetNamedProxy(t, wlID, prefix, addrs, true)
	checkHealthRendered(t, e, wlID, len(addrs), true)
	// One connection per request: TCP is balanced per connection.
	one := func() (string, error) {
		a, err := e.tlsGet(host)
		if err != nil {
			return "", err
		}
		if a.Status != http.StatusOK {
			return a.Backend, fmt.Errorf("status %d from backend %q", a.Status, a.Backend)
		}
		return a.Backend, nil
	}
	waitAllReached(t, host, names, one)
	return func(t *testing.T) { killTLSBackend(t, host, backends, one) }
}

// killTLSBackend is the test setHealthPassthrough returns: one opens a
// connection to host through the route.
func killTLSBackend(t *testing.T, host string, backends []*harness.TLSBackend, one func() (string, error)) {
	tr := startTraffic(t, one)
	tr.wait(t, time.Time{}, 50, "connections to flow before the kill")
	dead := backends[0]
	stopping := time.Now()
	dead.Stop()
	killed := time.Now()
	deadHits := dead.Hits()

	// Settled once no connection failed for quiet; lastFailure is when the
	// last failed one ended (the kill if none did).
	var lastFailure time.Time
	harness.WaitFor(t, tcpSettle+quiet, fmt.Sprintf("no TLS connection to fail for %s after the kill of %s", quiet, dead.Name), func() error {
		lastFailure = killed
		var lastErr error
		for _, s := range failures(tr.since(killed)) {
			if s.end.After(lastFailure) {
				lastFailure, lastErr = s.end, s.err
			}
		}
		if ago := time.Since(lastFailure); ago < quiet {
			return fmt.Errorf("a connection failed %s after the kill, %s ago: %w", lastFailure.Sub(killed).Round(time.Millisecond), ago.Round(time.Millisecond), lastErr)
		}
		return nil
	})
	settled := lastFailure.Sub(killed)
	if settled > tcpSettle {
		t.Errorf("connections failed until %s after the kill, want at most %s (health check every %s, timeout %s)", settled, tcpSettle, tcpInterval, tcpTimeout)
	}
	if n := len(tr.between(lastFailure, lastFailure.Add(quiet))); n < deadRequests {
		t.Errorf("only %d connections in the %s without failures, want at least %d", n, quiet, deadRequests)
	}

	revived := time.Now()
	back := harness.StartTLSBackendAt(t, dead.Name, dead.Addr, host)
	harness.WaitFor(t, reviveTimeout, dead.Name+", started again on "+dead.Addr+", to get connections", func() error {
		if back.Hits() == 0 {
			return fmt.Errorf("no connection %s after the start", time.Since(revived).Round(time.Millisecond))
		}
		return nil
	})
	tookBack := time.Since(revived)
	tr.wait(t, time.Now(), 50, "connections to flow after "+dead.Name+" came back")
	tr.stop()

	all := tr.since(time.Time{})
	// A connection open to the backend when it stops fails with it: only
	// those over before the stop count as failures before the kill.
	var before []sample
	for _, s := range failures(all) {
		if s.end.Before(stopping) {
			before = append(before, s)
		}
	}
	if len(before) > 0 {
		t.Errorf("%d connections failed before the kill:\n%s", len(before), describe(before, killed))
	}
	if f := failures(tr.since(lastFailure)); len(f) > 0 {
		t.Errorf("%d connections failed once the route had settled:\n%s", len(f), describe(f, killed))
	}
	for _, s := range all {
		if s.err == nil && s.backend == dead.Name && s.start.After(killed) && s.end.Before(revived) {
			t.Errorf("%s answered a connection opened %s after it was stopped", dead.Name, s.start.Sub(killed))
		}
	}
	if dead.Hits() != deadHits {
		t.Errorf("stopped %s served %d requests", dead.Name, dead.Hits()-deadHits)
	}
	t.Logf("%d connections, %d failed, the last %s after the kill; %s got connections again %s after it started again; answers by backend: %v",
		len(all), len(failures(all)), settled.Round(time.Millisecond), dead.Name, tookBack.Round(time.Millisecond), byBackend(all))
}

// TestZosIPv6 runs a gateway whose node has a public IPv6 and that admits
// backends on ::1, and checks IPv6 end to end: backends on ::1 in both
// modes, and a user domain that only has an AAAA record.
func TestZosIPv6(t *testing.T) {
	e := newEnvWith(t, harness.GatewayOptions{
		Allow: []string{"127.0.0.0/8", "::1/128"},
		Extra: []string{"--public.ipv6=" + publicIPv6},
	})
	cases := []struct {
		name        string
		wlID        string
		prefix      string // a name proxy when set
		fqdn        string // an FQDN proxy when set
		addr        string // where the backend listens
		passthrough bool
	}{
		// The backend URL keeps the brackets through validation and
		// rendering, and Traefik dials it.
		{name: "http backend on ::1", wlID: "wl-v6-http", prefix: "v6http", addr: "[::1]:0"},
		// The TCP server address keeps the brackets, and Traefik dials it.
		{name: "passthrough backend on ::1", wlID: "wl-v6-tls", prefix: "v6tls", addr: "[::1]:0", passthrough: true},
		// The DNS check asks for AAAA records and compares them with
		// --public.ipv6: a name without an A record is served.
		{name: "fqdn with only an AAAA record", wlID: "wl-v6-fqdn", fqdn: "six.example.test", addr: "127.0.0.1:0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			name := "backend-" + tc.wlID
			host := tc.fqdn
			if tc.prefix != "" {
				host = tc.prefix + "." + e.gw.Domain
			}
			var backend string
			var tlsBackend *harness.TLSBackend
			if tc.passthrough {
				tlsBackend = harness.StartTLSBackendAt(t, name, tc.addr, host)
				backend = tlsBackend.Addr
			} else {
				backend = harness.StartHTTPBackendAt(t, name, tc.addr).URL()
			}
			if tc.prefix != "" {
				e.gw.SetNamedProxy(t, tc.wlID, tc.prefix, []string{backend}, tc.passthrough)
			} else {
				e.dns.Set(t, tc.fqdn, publicIPv6)
				if err := e.gw.SetFQDNProxy(tc.wlID, tc.fqdn, []string{backend}, tc.passthrough); err != nil {
					t.Fatalf("SetFQDNProxy(%q) with only AAAA %s, the node's --public.ipv6: %v", tc.fqdn, publicIPv6, err)
				}
			}
			p, ok := e.findRoute(t, tc.wlID)
			if !ok || p.FQDN != host || p.TLSPassthrough != tc.passthrough || !slices.Equal(p.Backends, []string{backend}) {
				t.Fatalf("List has %+v (found %v), want fqdn %s, passthrough %v, backends [%s]", p, ok, host, tc.passthrough, backend)
			}

			if tc.passthrough {
				e.waitPassthrough(t, host, name)
				a, err := e.tlsGet(host)
				if err != nil {
					t.Fatal(err)
				}
				if a.Status != http.StatusOK || a.Backend != name || !bytes.Equal(a.Leaf, tlsBackend.Cert.Raw) {
					t.Errorf("TLS to %s: status %d from backend %q (own certificate %v), want 200 from %s behind its certificate",
						host, a.Status, a.Backend, bytes.Equal(a.Leaf, tlsBackend.Cert.Raw), name)
				}
				return
			}
			e.waitHTTP(t, host, name)
			a, err := e.get(host, "/hello")
			if err != nil {
				t.Fatal(err)
			}
			if a.status != http.StatusOK || a.backend != name || a.body != name+"\n" {
				t.Errorf("got status %d backend %q body %q, want 200 from %s", a.status, a.backend, a.body, name)
			}
		})
	}

	// An AAAA record elsewhere is as foreign as an A record elsewhere: the
	// check must compare AAAA records too, not only look for one.
	t.Run("fqdn with a foreign AAAA record refused", func(t *testing.T) {
		const wlID, fqdn = "wl-v6-foreign", "elsewhere6.example.test"
		e.dns.Set(t, fqdn, foreignIPv6)
		b := harness.StartHTTPBackend(t, "never-v6")
		err := e.gw.SetFQDNProxy(wlID, fqdn, []string{b.URL()}, false)
		if err == nil {
			t.Fatalf("SetFQDNProxy(%q) with only AAAA %s (the node is %s): no error", fqdn, foreignIPv6, publicIPv6)
		}
		// Errors cross zbus as text: the caller only has the message, which
		// must name the domain and the record that is not the node's (a
		// check that never read the AAAA record would say there is none).
		if !strings.Contains(err.Error(), fqdn) || !strings.Contains(err.Error(), foreignIPv6) {
			t.Errorf("error %q does not name the fqdn %q and its record %s", err, fqdn, foreignIPv6)
		}
		if cfg := e.gw.RouteConfig(t, wlID); cfg != nil {
			t.Errorf("route of refused %s published in %s", wlID, e.gw.RouteFile(wlID))
		}
		if p, ok := e.findRoute(t, wlID); ok {
			t.Errorf("List has the refused route %+v", p)
		}
	})
}

// routeHealth is the part of a route file the health tests rely on, as
// Traefik reads it.
type routeHealth struct {
	HTTP *struct {
		Middlewares map[string]struct {
			Retry *struct {
				Attempts int `yaml:"attempts"`
			} `yaml:"retry"`
		} `yaml:"middlewares"`
		Services map[string]struct {
			LoadBalancer struct {
				PassiveHealthCheck *passiveHealthCheck `yaml:"passiveHealthCheck"`
			} `yaml:"loadBalancer"`
		} `yaml:"services"`
	} `yaml:"http"`
	TCP *struct {
		Services map[string]struct {
			LoadBalancer struct {
				HealthCheck *tcpHealthCheck `yaml:"healthCheck"`
			} `yaml:"loadBalancer"`
		} `yaml:"services"`
	} `yaml:"tcp"`
}

type passiveHealthCheck struct {
	FailureWindow     string `yaml:"failureWindow"`
	MaxFailedAttempts int    `yaml:"maxFailedAttempts"`
}

type tcpHealthCheck struct {
	Interval string `yaml:"interval"`
	Timeout  string `yaml:"timeout"`
}

// checkHealthRendered fails the test unless the route file of wlID gives
// its service the health checking the timings of this file assume: a retry
// of backends+1 attempts and a passive health check for HTTP, a TCP health
// check for passthrough.
func checkHealthRendered(t *testing.T, e *env, wlID string, backends int, passthrough bool) {
	t.Helper()
	path := e.gw.RouteFile(wlID)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading the route file: %v", err)
	}
	var rf routeHealth
	if err := yaml.Unmarshal(data, &rf); err != nil {
		t.Fatalf("reading the route file %s: %v", path, err)
	}
	if passthrough {
		var hc *tcpHealthCheck
		if rf.TCP != nil {
			hc = rf.TCP.Services[wlID].LoadBalancer.HealthCheck
		}
		if hc == nil || !isDuration(hc.Interval, tcpInterval) || !isDuration(hc.Timeout, tcpTimeout) {
			t.Fatalf("route file %s has TCP health check %+v, want interval %s, timeout %s:\n%s", path, hc, tcpInterval, tcpTimeout, data)
		}
		return
	}
	if rf.HTTP == nil {
		t.Fatalf("route file %s has no http section:\n%s", path, data)
	}
	if retry := rf.HTTP.Middlewares[wlID].Retry; retry == nil || retry.Attempts != backends+1 {
		t.Fatalf("route file %s has retry %+v, want %d attempts:\n%s", path, retry, backends+1, data)
	}
	phc := rf.HTTP.Services[wlID].LoadBalancer.PassiveHealthCheck
	if phc == nil || !isDuration(phc.FailureWindow, failureWindow) || phc.MaxFailedAttempts != maxFailedAttempts {
		t.Fatalf("route file %s has passive health check %+v, want failure window %s, %d failed attempts:\n%s", path, phc, failureWindow, maxFailedAttempts, data)
	}
}

func isDuration(s string, want time.Duration) bool {
	d, err := time.ParseDuration(s)
	return err == nil && d == want
}

// waitAllReached waits until every backend of names answered a request
// through host, so the balance holds all of them before a test kills one.
func waitAllReached(t *testing.T, host string, names []string, one func() (string, error)) {
	t.Helper()
	seen := map[string]bool{}
	harness.WaitFor(t, routeTimeout, host+" to reach each of "+strings.Join(names, ", "), func() error {
		name, err := one()
		if err != nil {
			return err
		}
		seen[name] = true
		for _, n := range names {
			if !seen[n] {
				return fmt.Errorf("%s not reached yet (reached: %v)", n, seen)
			}
		}
		return nil
	})
}

// sample is one request of a traffic loop.
type sample struct {
	start, end time.Time
	// backend answered the request, if one did.
	backend string
	err     error
}

// traffic sends requests from trafficWorkers goroutines, each one after
// the other with trafficPause between them, until stop or trafficMax, and
// keeps the outcome of each.
type traffic struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	samples []sample
}

// startTraffic starts sending requests with one, which returns the name of
// the backend that answered. The loop is stopped at cleanup at the latest.
func startTraffic(t *testing.T, one func() (string, error)) *traffic {
	ctx, cancel := context.WithTimeout(context.Background(), trafficMax)
	tr := &traffic{cancel: cancel}
	for range trafficWorkers {
		tr.wg.Add(1)
		go func() {
			defer tr.wg.Done()
			for ctx.Err() == nil {
				s := sample{start: time.Now()}
				s.backend, s.err = one()
				s.end = time.Now()
				tr.mu.Lock()
				tr.samples = append(tr.samples, s)
				tr.mu.Unlock()
				select {
				case <-ctx.Done():
				case <-time.After(trafficPause):
				}
			}
		}()
	}
	t.Cleanup(tr.stop)
	return tr
}

// stop ends the loop and waits for the requests in flight (each bounded by
// its client's timeout). It is idempotent.
func (tr *traffic) stop() {
	tr.cancel()
	tr.wg.Wait()
}

// between returns the requests that started in [from, to).
func (tr *traffic) between(from, to time.Time) []sample {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []sample
	for _, s := range tr.samples {
		if !s.start.Before(from) && s.start.Before(to) {
			out = append(out, s)
		}
	}
	return out
}

// since returns the requests that started at from or later.
func (tr *traffic) since(from time.Time) []sample {
	return tr.between(from, time.Now().Add(time.Hour))
}

// wait waits until n requests that started at from or later were answered.
func (tr *traffic) wait(t *testing.T, from time.Time, n int, what string) {
	t.Helper()
	harness.WaitFor(t, routeTimeout, what, func() error {
		ss := tr.since(from)
		if ok := len(ss) - len(failures(ss)); ok < n {
			return fmt.Errorf("%d of %d requests answered", ok, n)
		}
		return nil
	})
}

func failures(ss []sample) []sample {
	var out []sample
	for _, s := range ss {
		if s.err != nil {
			out = append(out, s)
		}
	}
	return out
}

// describe lists the first failures with their time relative to ref.
func describe(failed []sample, ref time.Time) string {
	var b strings.Builder
	for i, s := range failed {
		if i == 10 {
			fmt.Fprintf(&b, "  … and %d more\n", len(failed)-i)
			break
		}
		fmt.Fprintf(&b, "  at %s (took %s): %v\n", s.start.Sub(ref).Round(time.Millisecond), s.end.Sub(s.start).Round(time.Millisecond), s.err)
	}
	return b.String()
}

func byBackend(ss []sample) map[string]int {
	counts := map[string]int{}
	for _, s := range ss {
		if s.err == nil {
			counts[s.backend]++
		}
	}
	return counts
}
