//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/threefoldtech/gateway/test/harness"
)

// TestFaults kills the parts one by one under one route and checks that
// service comes back, or is never interrupted. The subtests run in order on
// one gateway.
func TestFaults(t *testing.T) {
	e := newEnv(t)
	b := harness.StartHTTPBackend(t, "fault")
	r := faultRoutes{http: e.gw.SetNamedProxy(t, "wl-fault", "fault", []string{b.URL()}, false)}
	tb := harness.StartTLSBackend(t, "fault-tls", "fault-tls."+e.gw.Domain)
	r.tls = e.gw.SetNamedProxy(t, "wl-fault-tls", "fault-tls", []string{tb.Addr}, true)
	e.waitHTTP(t, r.http, "fault")
	e.waitPassthrough(t, r.tls, "fault-tls")

	t.Run("TraefikKilled", func(t *testing.T) { testTraefikKilled(t, e, r) })
	t.Run("GatewayKilled", func(t *testing.T) { testGatewayKilled(t, e, r) })
	// Last: the restarted redis-server belongs to the subtest and is
	// stopped when it ends (harness.Redis.Restart registers it there).
	t.Run("RedisRestarted", func(t *testing.T) { testRedisRestarted(t, e) })
}

// faultRoutes are the hosts of the routes the fault tests watch: one HTTP,
// one passthrough.
type faultRoutes struct{ http, tls string }

// check sends one request through each route, the passthrough one on a new
// connection, and tells whether both reached their backend.
func (r faultRoutes) check(e *env, client *http.Client) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := getFrom(ctx, client, r.http, "fault"); err != nil {
		return err
	}
	a, err := harness.TLSGet(ctx, e.gw.WebSecureAddr, r.tls, "/")
	if err != nil {
		return err
	}
	if a.Status != http.StatusOK || a.Backend != "fault-tls" {
		return fmt.Errorf("%s: status %d from backend %q", r.tls, a.Status, a.Backend)
	}
	return nil
}

// testTraefikKilled: the gateway supervises Traefik and starts it again
// after a crash, fast enough that the routes are back within 3 seconds.
func testTraefikKilled(t *testing.T, e *env, r faultRoutes) {
	const within = 3 * time.Second
	old := e.gw.TraefikPID()
	if old == 0 {
		t.Fatalf("no running traefik in %s", e.gw.PIDFile())
	}
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatalf("killing traefik %d: %v", old, err)
	}
	killed := time.Now()
	harness.WaitFor(t, within, fmt.Sprintf("traefik %d to die", old), func() error {
		if harness.ProcessAlive(old) {
			return fmt.Errorf("still alive")
		}
		return nil
	})
	err := harness.Poll(within, func() error { return r.check(e, e.https) })
	elapsed := time.Since(killed)
	if err != nil || elapsed > within {
		t.Fatalf("routes not served again %s after traefik was killed: %v", elapsed, err)
	}
	t.Logf("routes served again %s after SIGKILL of traefik", elapsed)
	if pid := e.gw.TraefikPID(); pid == 0 || pid == old {
		t.Errorf("pidfile names traefik %d after the restart (the killed one was %d)", pid, old)
	}
}

// testGatewayKilled: Traefik runs on when the gateway dies, and the gateway
// started again adopts it instead of replacing it, so a client never sees a
// failed request.
func testGatewayKilled(t *testing.T, e *env, r faultRoutes) {
	traefikPID := e.gw.TraefikPID()
	if traefikPID == 0 {
		t.Fatalf("no running traefik in %s", e.gw.PIDFile())
	}
	gatewayPID := e.gw.Proc.PID()

	// A new connection per request: the listener itself must stay up.
	client := harness.HTTPSClient(e.gw.WebSecureAddr)
	client.Transport.(*http.Transport).DisableKeepAlives = true
	var ok, failed atomic.Int64
	var mu sync.Mutex
	var failures []string
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for range 500 { // 10s at one request every 20ms
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			err := r.check(e, client)
			if err != nil && ctx.Err() != nil {
				return // the loop was stopped in the middle of a request
			}
			if err != nil {
				failed.Add(1)
				mu.Lock()
				failures = append(failures, time.Now().Format("15:04:05.000")+" "+err.Error())
				mu.Unlock()
				continue
			}
			ok.Add(1)
		}
	}()
	stop := func() {
		cancel()
		<-done
	}
	defer stop()

	waitOK := func(n int64, what string) {
		t.Helper()
		target := ok.Load() + n
		harness.WaitFor(t, 5*time.Second, what, func() error {
			if got := ok.Load(); got < target {
				return fmt.Errorf("%d requests served, want %d", got, target)
			}
			return nil
		})
	}
	waitOK(10, "requests to flow before the kill")
	e.gw.Kill()
	t.Logf("gateway %d killed after %d requests", gatewayPID, ok.Load())
	waitOK(10, "requests to flow with the gateway dead")
	e.gw.Restart(t)
	waitOK(50, "requests to flow after the gateway restart")
	stop()

	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d requests served, %d failed", ok.Load(), failed.Load())
	if failed.Load() != 0 {
		t.Errorf("%d requests failed across the gateway restart:\n%v", failed.Load(), failures)
	}
	if pid := e.gw.TraefikPID(); pid != traefikPID {
		t.Errorf("traefik pid %d after the gateway restart, want %d (adopted, not restarted)", pid, traefikPID)
	}
	if !harness.ProcessAlive(traefikPID) {
		t.Errorf("traefik %d is gone after the gateway restart", traefikPID)
	}
	for wlID, host := range map[string]string{"wl-fault": r.http, "wl-fault-tls": r.tls} {
		if p, found := e.findRoute(t, wlID); !found || p.FQDN != host {
			t.Errorf("List after the restart: route %s %+v (found %v), want fqdn %s", wlID, p, found, host)
		}
	}
}

// testRedisRestarted: the gateway's zbus server reconnects to a broker that
// came back, without a restart of the gateway.
func testRedisRestarted(t *testing.T, e *env) {
	const within = 5 * time.Second
	gatewayPID := e.gw.Proc.PID()
	e.redis.Restart(t)
	back := time.Now()
	err := harness.Poll(within, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return harness.Call(func() error { _, err := e.gw.Stub.List(ctx); return err })
	})
	if err != nil {
		t.Fatalf("gateway not answering on zbus %s after redis came back: %v", time.Since(back), err)
	}
	t.Logf("gateway answered %s after redis came back", time.Since(back))
	select {
	case <-e.gw.Proc.Done():
		t.Fatalf("gateway exited: %s", e.gw.Proc.Output())
	default:
	}
	if pid := e.gw.Proc.PID(); pid != gatewayPID || !harness.ProcessAlive(pid) {
		t.Errorf("gateway pid %d (alive %v), want %d still running", pid, harness.ProcessAlive(pid), gatewayPID)
	}
	// A write goes through too, and reaches Traefik.
	b := harness.StartHTTPBackend(t, "after-redis")
	host := e.gw.SetNamedProxy(t, "wl-after-redis", "after-redis", []string{b.URL()}, false)
	e.waitHTTP(t, host, "after-redis")
}
