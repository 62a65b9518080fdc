//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/threefoldtech/gateway/test/harness"
)

// publicFollowTimeout is what docs/OPERATIONS.md promises: a change of the
// node's public configuration is in use within a minute (the default
// --public.interval, 30 s, and the start).
const publicFollowTimeout = time.Minute

// TestPublicFromNetworkDaemon starts the gateway as a zos node does, without
// --public.*: it takes its domain and public IP from the network daemon (a
// stand-in served on the broker with zos's names and types), and when the
// farmer changes the domain it starts again with the new one, in the same
// process, Traefik serving throughout: name proxies follow the domain, FQDN
// proxies never stop.
func TestPublicFromNetworkDaemon(t *testing.T) {
	r := harness.StartRedis(t)
	d := harness.StartDNS(t)
	netd := harness.StartNetworkd(t, r)
	netd.SetPublic(t, "gw.test", "127.0.0.1/8", "")
	const interval = time.Second
	gw := harness.StartGateway(t, harness.GatewayOptions{
		Redis: r, Resolver: d.Addr, FromNetwork: true,
		Extra: []string{"--public.interval=" + interval.String()},
	})
	e := &env{redis: r, dns: d, gw: gw, https: harness.HTTPSClient(gw.WebSecureAddr), web: harness.HTTPClient(gw.WebAddr)}
	if netd.Calls() == 0 {
		t.Fatalf("the gateway started without asking the network daemon")
	}

	// The daemon's domain: a name proxy is served under it.
	app := harness.StartHTTPBackend(t, "app")
	if fqdn := gw.SetNamedProxy(t, "wl-app", "app", []string{app.URL()}, false); fqdn != "app.gw.test" {
		t.Fatalf("SetNamedProxy gave %q, want app.gw.test (the network daemon's domain)", fqdn)
	}
	e.waitHTTP(t, "app.gw.test", "app")
	// The daemon's IP: a user domain pointing at it is accepted.
	site := harness.StartHTTPBackend(t, "site")
	d.Set(t, "site.example.test", "127.0.0.1")
	if err := gw.SetFQDNProxy("wl-site", "site.example.test", []string{site.URL()}, false); err != nil {
		t.Fatalf("SetFQDNProxy with the network daemon's IP 127.0.0.1: %v", err)
	}
	e.waitHTTP(t, "site.example.test", "site")

	// The user domain is asked all along the change.
	var (
		mu       sync.Mutex
		asked    int
		failures []string
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			_, err := e.getOK("site.example.test")
			mu.Lock()
			asked++
			if err != nil {
				failures = append(failures, fmt.Sprintf("%s: %v", time.Now().Format("15:04:05.000"), err))
			}
			mu.Unlock()
		}
	}()

	changed := time.Now()
	netd.SetPublic(t, "gw2.test", "127.0.0.1/8", "")
	// The name proxy follows the domain: routes are kept by name.
	harness.WaitFor(t, publicFollowTimeout, "app.gw2.test to reach app", func() error {
		a, err := e.get("app.gw2.test", "/")
		if err != nil {
			return err
		}
		if a.status != http.StatusOK || a.backend != "app" {
			return fmt.Errorf("status %d from backend %q", a.status, a.backend)
		}
		return nil
	})
	followed := time.Since(changed)
	gw.WaitReady(t)
	if fqdn := gw.SetNamedProxy(t, "wl-other", "other", []string{app.URL()}, false); fqdn != "other.gw2.test" {
		t.Fatalf("SetNamedProxy after the change gave %q, want other.gw2.test", fqdn)
	}
	e.waitHTTP(t, "other.gw2.test", "app")
	if a, err := e.get("app.gw.test", "/"); err != nil || a.status != http.StatusNotFound {
		t.Errorf("the former name app.gw.test: status %d, %v; want 404", a.status, err)
	}
	close(stop)
	wg.Wait()

	select {
	case <-gw.Proc.Done():
		t.Fatalf("the gateway exited: %v", gw.Proc.Output())
	default:
	}
	if out := gw.Proc.Output(); !strings.Contains(out, "starts again with it") {
		t.Errorf("the gateway's log does not say it started again:\n%s", out)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(failures) > 0 {
		t.Errorf("%d of %d requests to the user domain failed during the change:\n%s", len(failures), asked, strings.Join(failures, "\n"))
	}
	t.Logf("domain followed %s after the change (--public.interval=%s); %d requests to the user domain meanwhile, none failed",
		followed.Round(time.Millisecond), interval, asked)
}

// TestPublicSetLater starts the gateway on a node without public
// configuration, as zos's network daemon says ("no public configuration"):
// it starts at once without a domain and IPs, refusing name and FQDN
// proxies. When the farmer sets them, the gateway starts again with them:
// Traefik, whose configuration now includes the DNS-01 challenges, is
// handed over, and the one it replaced is gone, not left a zombie of the
// gateway's process.
func TestPublicSetLater(t *testing.T) {
	r := harness.StartRedis(t)
	d := harness.StartDNS(t)
	netd := harness.StartNetworkd(t, r)
	gw := harness.StartGateway(t, harness.GatewayOptions{
		Redis: r, Resolver: d.Addr, FromNetwork: true, Extra: []string{"--public.interval=1s"},
	})
	e := &env{redis: r, dns: d, gw: gw, https: harness.HTTPSClient(gw.WebSecureAddr), web: harness.HTTPClient(gw.WebAddr)}
	app := harness.StartHTTPBackend(t, "app")
	d.Set(t, "site.example.test", "127.0.0.1")
	if err := gw.SetFQDNProxy("wl-site", "site.example.test", []string{app.URL()}, false); err == nil || !strings.Contains(err.Error(), "public") {
		t.Fatalf("SetFQDNProxy on a node without public IPs: %v, want the error that names them", err)
	}
	first := gw.TraefikPID()

	netd.SetPublic(t, "gw.test", "127.0.0.1/8", "")
	var fqdn string
	harness.WaitFor(t, publicFollowTimeout, "SetNamedProxy to work", func() error {
		return harness.Call(func() (err error) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			fqdn, err = gw.Stub.SetNamedProxy(ctx, "wl-app", "app", []string{app.URL()}, false)
			return err
		})
	})
	if fqdn != "app.gw.test" {
		t.Fatalf("SetNamedProxy gave %q, want app.gw.test", fqdn)
	}
	gw.WaitReady(t)
	e.waitHTTP(t, fqdn, "app")
	if err := gw.SetFQDNProxy("wl-site", "site.example.test", []string{app.URL()}, false); err != nil {
		t.Fatalf("SetFQDNProxy once the node has a public IP: %v", err)
	}
	e.waitHTTP(t, "site.example.test", "app")

	harness.WaitFor(t, 30*time.Second, "Traefik to be handed over", func() error {
		if now := gw.TraefikPID(); now == 0 || now == first {
			return fmt.Errorf("traefik pid %d, first %d", now, first)
		}
		return nil
	})
	harness.WaitFor(t, 30*time.Second, "the replaced Traefik to be gone", func() error {
		// A zombie still has its /proc entry: only a reaped process has none.
		if stat, err := os.ReadFile("/proc/" + strconv.Itoa(first) + "/stat"); err == nil {
			return fmt.Errorf("pid %d still exists: %s", first, stat)
		}
		return nil
	})
}
