//go:build e2e

package e2e

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/threefoldtech/gateway/pkg/gateway"
	"github.com/threefoldtech/gateway/test/harness"
)

// statusInterval is how often the gateway of TestRouteStatus reads the
// status from Traefik.
const statusInterval = 300 * time.Millisecond

// TestRouteStatus checks what List says of each route, against a real
// Traefik: a route is live once Traefik serves it; a passthrough route's
// backends are UP while they accept connections, one stopped is DOWN
// within a TCP health-check round, and UP again once it is back; a route
// terminated by Traefik has no certificate until one is issued (test/acme
// checks one that is).
func TestRouteStatus(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, harness.GatewayOptions{Extra: []string{"--routes.status=" + statusInterval.String()}})
	web := harness.StartHTTPBackend(t, "web")
	a := harness.StartTLSBackend(t, "tls-a", "pass.gw.test")
	b := harness.StartTLSBackend(t, "tls-b", "pass.gw.test")
	e.gw.SetNamedProxy(t, "wl-web", "web", []string{web.URL()}, false)
	e.gw.SetNamedProxy(t, "wl-pass", "pass", []string{a.Addr, b.Addr}, true)

	status := func(id string) (*gateway.RouteStatus, error) {
		list, err := e.gw.List()
		if err != nil {
			return nil, err
		}
		for _, p := range list {
			if p.WorkloadID == id {
				if p.Status == nil {
					return nil, fmt.Errorf("%s has no status yet", id)
				}
				return p.Status, nil
			}
		}
		return nil, fmt.Errorf("%s not listed", id)
	}
	backends := func(want map[string]string) func() error {
		return func() error {
			st, err := status("wl-pass")
			if err != nil {
				return err
			}
			if !st.Live {
				return fmt.Errorf("wl-pass not live: %v", st.Problems)
			}
			for addr, w := range want {
				if st.Backends[addr] != w {
					return fmt.Errorf("backends %v, want %v", st.Backends, want)
				}
			}
			return nil
		}
	}

	harness.WaitFor(t, 10*time.Second, "wl-web to be live", func() error {
		st, err := status("wl-web")
		switch {
		case err != nil:
			return err
		case !st.Live:
			return fmt.Errorf("not live: %v", st.Problems)
		case time.Since(st.CheckedAt) > time.Minute:
			return fmt.Errorf("checked at %s", st.CheckedAt)
		}
		return nil
	})
	if st, _ := status("wl-web"); st.Certificate != nil || len(st.Problems) != 0 {
		t.Errorf("wl-web: certificate %+v, problems %v; want none of either (no ACME server here)", st.Certificate, st.Problems)
	}
	harness.WaitFor(t, 10*time.Second, "both passthrough backends UP", backends(map[string]string{a.Addr: "UP", b.Addr: "UP"}))

	b.Stop()
	start := time.Now()
	// One TCP health-check round (5 s interval, its timeout) and one
	// reading of the status.
	harness.WaitFor(t, 15*time.Second, "the stopped backend DOWN", backends(map[string]string{a.Addr: "UP", b.Addr: "DOWN"}))
	t.Logf("stopped backend DOWN in List after %s", time.Since(start).Round(10*time.Millisecond))

	if _, err := net.Dial("tcp", b.Addr); err == nil {
		t.Fatal("the stopped backend still accepts connections")
	}
	harness.StartTLSBackendAt(t, "tls-b", b.Addr, "pass.gw.test")
	harness.WaitFor(t, 15*time.Second, "the restarted backend UP", backends(map[string]string{a.Addr: "UP", b.Addr: "UP"}))

	e.gw.DeleteNamedProxy(t, "wl-web")
	if _, err := status("wl-web"); err == nil {
		t.Error("a deleted route still listed")
	}
}
