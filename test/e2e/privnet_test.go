//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/net/websocket"

	"github.com/threefoldtech/gateway/pkg/gateway/contracts/zosbase"
	zosstubs "github.com/threefoldtech/gateway/pkg/gateway/contracts/zosbase/stubs"
	"github.com/threefoldtech/gateway/pkg/meter"
	"github.com/threefoldtech/gateway/pkg/zosnet"
	"github.com/threefoldtech/gateway/test/harness"
	"github.com/threefoldtech/zbus"
)

// inOwnNetNSEnv marks the run of TestPrivateNetwork inside a network
// namespace of its own.
const inOwnNetNSEnv = "GATEWAY_E2E_OWN_NETNS"

// networkDaemon is zos's network daemon as the gateway sees it: the object
// network@0.0.1 of module network, with zos's method names and types
// (zosbase pkg/network.go, Networker).
type networkDaemon struct {
	nets map[zosnet.NetID]string
}

// GetNet is zos's GetNet(NetID) (net.IPNet, error).
func (d networkDaemon) GetNet(id zosnet.NetID) (net.IPNet, error) {
	cidr, ok := d.nets[id]
	if !ok {
		return net.IPNet{}, fmt.Errorf("network %s not found", id)
	}
	_, n, err := net.ParseCIDR(cidr)
	return *n, err
}

// Namespace is zos's Namespace(NetID) string.
func (d networkDaemon) Namespace(id zosnet.NetID) string { return "n-" + string(id) }

// TestPrivateNetwork routes HTTP and passthrough traffic to backends that
// listen only inside a tenant's network namespace, as zos's network daemon
// names it; restarts the gateway under that traffic with no request failed
// and a websocket open throughout; meters the bytes within 2 %; and keeps a
// route with a dead backend in the namespace answering.
//
// It runs in a network namespace of its own (the gateway's link into the
// tenant's namespace is made there, never in the host's), and alone: the
// metering is exact only on an unloaded loopback (TestMetering).
func TestPrivateNetwork(t *testing.T) {
	if os.Getenv(inOwnNetNSEnv) == "" {
		cmd := exec.Command("unshare", "--net", "--", os.Args[0], "-test.run=^TestPrivateNetwork$", "-test.count=1", "-test.v", "-test.timeout=8m")
		cmd.Env = append(os.Environ(), inOwnNetNSEnv+"=1")
		// The run ends with this test's process, whatever happens.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		out, err := cmd.CombinedOutput()
		// Quoted, so that its test events are not taken for this run's.
		for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
			t.Log("| " + line)
		}
		if err != nil {
			t.Fatalf("TestPrivateNetwork in a network namespace of its own (unshare --net, as root): %v", err)
		}
		return
	}
	run(t, "ip", "link", "set", "lo", "up")

	// The tenant: twin 4000+pid's network "office", 10.77.0.0/16, in the
	// namespace n-<NetID> with its backends on 10.77.1.2.
	twin := uint32(4000 + os.Getpid())
	id := zosnet.NetworkID(twin, "office")
	ns := "n-" + string(id)
	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	run(t, "ip", "-n", ns, "addr", "add", "10.77.1.2/32", "dev", "lo")
	// 10.77.1.3 is a backend that died: its address is there, nothing
	// listens on it.
	run(t, "ip", "-n", ns, "addr", "add", "10.77.1.3/32", "dev", "lo")
	web := harness.StartHTTPBackendOn(t, "office-web", listenIn(t, ns, "10.77.1.2:8080"))
	tlsB := harness.StartTLSBackendOn(t, "office-tls", listenIn(t, ns, "10.77.1.2:8443"), "office-tls.gw.test")

	e := newEnv(t)
	daemon, err := zbus.NewRedisServer(zosnet.DaemonModule, e.redis.URL(), 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := daemon.Register(zosnet.DaemonObject, networkDaemon{nets: map[zosnet.NetID]string{id: "10.77.0.0/16"}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { defer close(served); _ = daemon.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-served })

	// zos's today's contract: a name proxy with its network.
	wlWeb, wlTLS, wlPair := fmt.Sprintf("%d-1-web", twin), fmt.Sprintf("%d-2-tls", twin), fmt.Sprintf("%d-3-pair", twin)
	stub := zosstubs.NewGatewayStub(e.gw.Client)
	office := zosbase.Name("office")
	set := func(wlID, name string, passthrough bool, backends ...string) error {
		ctx, cancel := context.WithTimeout(context.Background(), routeTimeout)
		defer cancel()
		base := zosbase.GatewayBase{TLSPassthrough: passthrough, Network: &office}
		for _, b := range backends {
			base.Backends = append(base.Backends, zosbase.Backend(b))
		}
		return harness.Call(func() error {
			_, err := stub.SetNamedProxy(ctx, wlID, zosbase.GatewayNameProxy{GatewayBase: base, Name: name})
			return err
		})
	}
	for _, r := range []struct {
		wlID, name  string
		passthrough bool
		backends    []string
	}{
		{wlWeb, "office-web", false, []string{"http://10.77.1.2:8080"}},
		{wlTLS, "office-tls", true, []string{"10.77.1.2:8443"}},
		{wlPair, "office-pair", false, []string{"http://10.77.1.2:8080", "http://10.77.1.3:8080"}},
	} {
		if err := set(r.wlID, r.name, r.passthrough, r.backends...); err != nil {
			t.Fatalf("SetNamedProxy(%s): %v", r.wlID, err)
		}
	}
	// A network twin 1 does not have: refused, naming it, nothing written.
	if err := set("1-1-lost", "lost", false, "http://10.77.1.2:8080"); err == nil || !strings.Contains(err.Error(), `"office"`) {
		t.Fatalf("a network the twin does not have: %v, want an error naming it", err)
	}
	e.waitHTTP(t, "office-web.gw.test", "office-web")
	e.waitPassthrough(t, "office-tls.gw.test", "office-tls")
	e.waitHTTP(t, "office-pair.gw.test", "office-web")
	if web.Hits() == 0 || tlsB.TLSHits() == 0 {
		t.Fatalf("the namespace's backends served %d and %d requests", web.Hits(), tlsB.TLSHits())
	}
	// The backends are reachable only through the link.
	if c, err := net.DialTimeout("tcp", "10.77.1.2:8080", 200*time.Millisecond); err == nil {
		c.Close()
		t.Fatal("the tenant's backend is reachable from the gateway's namespace without the link")
	}
	if p, ok := e.findRoute(t, wlWeb); !ok || p.Backends[0] != "http://10.77.1.2:8080" {
		t.Fatalf("List: %+v, want the backend as given", p)
	}
	webVia := serverAddr(t, e, wlWeb)
	tlsVia := serverAddr(t, e, wlTLS)
	if !strings.HasPrefix(webVia.String(), "100.64.") || !strings.HasPrefix(tlsVia.String(), "100.64.") {
		t.Fatalf("Traefik connects to %s and %s, want the link's addresses", webVia, tlsVia)
	}
	if got := e.gw.RouteConfig(t, "1-1-lost"); got != nil {
		t.Fatalf("a route of a network its twin does not have is served: %+v", got)
	}

	t.Run("a dead backend in the namespace", func(t *testing.T) {
		// 10.77.1.3 refuses connections: the retry and the health
		// check keep every request on the live backend.
		for i := range 30 {
			a, err := e.get("office-pair.gw.test", "/")
			if err != nil || a.status != http.StatusOK || a.backend != "office-web" {
				t.Fatalf("request %d: status %d from %q, %v", i, a.status, a.backend, err)
			}
		}
	})

	t.Run("a gateway restart under traffic", func(t *testing.T) {
		testRestartUnderTraffic(t, e)
	})

	t.Run("metering", func(t *testing.T) {
		kernel, err := meter.OpenKernel(meter.KernelConfig{Table: e.gw.MeterTable})
		if err != nil {
			t.Fatal(err)
		}
		defer kernel.Close()
		kBefore, err := kernel.Read()
		if err != nil {
			t.Fatal(err)
		}
		before, err := e.gw.Metrics()
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		a, err := e.request(ctx, http.MethodPost, "office-web.gw.test", fmt.Sprintf("/?size=%d", meteredBytes), make([]byte, meteredBytes))
		if err != nil || a.status != http.StatusOK || len(a.body) != meteredBytes {
			t.Fatalf("HTTP transfer: status %d, %d bytes, %v", a.status, len(a.body), err)
		}
		if err := passthroughTransfer(ctx, e.gw.WebSecureAddr, "office-tls.gw.test", meteredBytes, meteredBytes); err != nil {
			t.Fatalf("passthrough transfer: %v", err)
		}
		after, err := e.gw.Metrics()
		if err != nil {
			t.Fatal(err)
		}
		kAfter, err := kernel.Read()
		if err != nil {
			t.Fatal(err)
		}
		for wl, via := range map[string]netip.AddrPort{wlWeb: webVia, wlTLS: tlsVia} {
			k0, k1 := kBefore[via], kAfter[via]
			for _, d := range []struct {
				name    string
				metered float64
				packets uint64
			}{
				{"request", after.Request[wl] - before.Request[wl], k1.TxPackets - k0.TxPackets},
				{"response", after.Response[wl] - before.Response[wl], k1.RxPackets - k0.RxPackets},
			} {
				payload := d.metered - float64(d.packets*meter.TypicalHeader4)
				off := 100 * (payload - meteredBytes) / meteredBytes
				msg := fmt.Sprintf("%s %s: %.0f bytes metered in %d packets, %.0f without their headers, for %d moved (%+.2f %%)",
					wl, d.name, d.metered, d.packets, payload, meteredBytes, off)
				if d.metered < meteredBytes || off < -2 || off > 2 {
					t.Error(msg)
				} else {
					t.Log(msg)
				}
			}
		}
	})
}

// testRestartUnderTraffic stops and starts the gateway while HTTPS and
// passthrough requests flow to the namespace, and a websocket is open: not
// one request fails and the websocket echoes throughout.
func testRestartUnderTraffic(t *testing.T, e *env) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ws, err := harness.DialWebsocket(ctx, e.gw.WebSecureAddr, "office-web.gw.test", harness.PathWebsocket)
	if err != nil {
		t.Fatalf("websocket: %v", err)
	}
	defer ws.Close()
	var echoes atomic.Int64
	wsErr := make(chan error, 1)
	go func() {
		// Bounded by time: the context ends it.
		for ctx.Err() == nil {
			_ = ws.SetDeadline(time.Now().Add(5 * time.Second))
			if err := wsEcho(ws); err != nil {
				wsErr <- err
				return
			}
			echoes.Add(1)
			time.Sleep(20 * time.Millisecond)
		}
		wsErr <- nil
	}()

	var ok, failed atomic.Int64
	var mu sync.Mutex
	var failures []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			client := harness.HTTPSClient(e.gw.WebSecureAddr)
			client.Transport.(*http.Transport).DisableKeepAlives = i%2 == 0
			defer client.CloseIdleConnections()
			for n := 0; n < 100000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				var err error
				if i == 3 {
					var a harness.TLSAnswer
					if a, err = e.tlsGet("office-tls.gw.test"); err == nil && a.Backend != "office-tls" {
						err = fmt.Errorf("passthrough answered by %q", a.Backend)
					}
				} else {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					err = getFrom(ctx, client, "office-web.gw.test", "office-web")
					cancel()
				}
				if err != nil {
					failed.Add(1)
					mu.Lock()
					if len(failures) < 10 {
						failures = append(failures, time.Now().Format("15:04:05.000")+" "+err.Error())
					}
					mu.Unlock()
				} else {
					ok.Add(1)
				}
			}
		})
	}
	time.Sleep(500 * time.Millisecond)
	e.gw.Proc.Stop()
	e.gw.Restart(t)
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	before := echoes.Load()
	time.Sleep(200 * time.Millisecond)
	if echoes.Load() == before {
		t.Error("the websocket stopped echoing across the restart")
	}
	cancel()
	if err := <-wsErr; err != nil {
		t.Errorf("the websocket broke: %v", err)
	}
	t.Logf("%d requests succeeded, %d failed, %d websocket echoes across the restart", ok.Load(), failed.Load(), echoes.Load())
	if failed.Load() != 0 || ok.Load() == 0 {
		t.Fatalf("%d requests failed across the restart: %s", failed.Load(), strings.Join(failures, "; "))
	}
}

// wsEcho sends one message on ws and reads its echo.
func wsEcho(ws *websocket.Conn) error {
	msg := []byte("private network")
	if err := websocket.Message.Send(ws, msg); err != nil {
		return err
	}
	var back []byte
	if err := websocket.Message.Receive(ws, &back); err != nil {
		return err
	}
	if string(back) != string(msg) {
		return fmt.Errorf("echo %q of %q", back, msg)
	}
	return nil
}

// run runs a command of the fixtures (ip(8)).
func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// listenIn opens a TCP listener on addr inside the named network namespace:
// the socket stays there whichever thread serves it.
func listenIn(t *testing.T, ns, addr string) net.Listener {
	t.Helper()
	type result struct {
		ln  net.Listener
		err error
	}
	done := make(chan result, 1)
	go func() {
		// Never unlocked: the thread, left in ns, ends with the goroutine.
		runtime.LockOSThread()
		h, err := netns.GetFromName(ns)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			done <- result{err: err}
			return
		}
		ln, err := net.Listen("tcp4", addr)
		done <- result{ln, err}
	}()
	r := <-done
	if r.err != nil {
		t.Fatalf("listening on %s in namespace %s: %v", addr, ns, r.err)
	}
	return r.ln
}

// serverAddr returns the address Traefik connects to for the first backend
// of route wlID, as the gateway rendered it.
func serverAddr(t *testing.T, e *env, wlID string) netip.AddrPort {
	t.Helper()
	cfg := e.gw.RouteConfig(t, wlID)
	var addr string
	switch {
	case cfg == nil:
		t.Fatalf("route %s is not published", wlID)
	case cfg.TCP != nil && cfg.TCP.Services[wlID] != nil:
		addr = cfg.TCP.Services[wlID].LoadBalancer.Servers[0].Address
	case cfg.HTTP != nil && cfg.HTTP.Services[wlID] != nil:
		u, err := url.Parse(cfg.HTTP.Services[wlID].LoadBalancer.Servers[0].URL)
		if err != nil {
			t.Fatal(err)
		}
		addr = u.Host
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		t.Fatalf("route %s: server %q: %v", wlID, addr, err)
	}
	return ap
}
