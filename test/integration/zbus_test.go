//go:build integration

// Package integration calls the gateway object over real zbus, on a
// redis-server of the test's own, through the generated client stub: the
// path other node modules take.
package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/threefoldtech/zbus"

	"github.com/threefoldtech/gateway/pkg/gateway"
	"github.com/threefoldtech/gateway/pkg/gateway/stubs"
	"github.com/threefoldtech/gateway/pkg/gateway/zos"
	"github.com/threefoldtech/gateway/pkg/meter"
	"github.com/threefoldtech/gateway/pkg/store"
	"github.com/threefoldtech/gateway/pkg/traefik"
	"github.com/threefoldtech/gateway/test/harness"
)

// node is a gateway module served on zbus and a client of it.
type node struct {
	root   string
	redis  *harness.Redis
	dns    *harness.DNSServer
	stub   *stubs.GatewayStub
	client zbus.Client
	cancel context.CancelFunc
	done   chan struct{}
	// table is the nftables table of the node's byte counters.
	table string
	// db is the store of the module served now.
	db *store.Store
}

type nodeOptions struct {
	domain    string
	publicIPs []netip.Addr
	workers   uint
	// unmetered runs the module without a meter, as on a node without
	// nftables.
	unmetered bool
	// loopbackBackends admits backends on loopback: the metering tests'
	// own.
	loopbackBackends bool
}

func defaults() nodeOptions {
	return nodeOptions{
		domain:    "gw.test",
		publicIPs: []netip.Addr{netip.MustParseAddr("198.51.100.7")},
		workers:   4,
	}
}

// metered is defaults with backends on loopback, where the metering tests
// move their bytes.
func metered() nodeOptions {
	o := defaults()
	o.loopbackBackends = true
	return o
}

func startNode(t testing.TB, opts nodeOptions) *node {
	t.Helper()
	n := &node{root: t.TempDir(), redis: harness.StartRedis(t), dns: harness.StartDNS(t)}
	n.serve(t, opts)
	client, err := zbus.NewRedisClient(n.redis.URL())
	if err != nil {
		t.Fatal(err)
	}
	n.client = client
	n.stub = stubs.NewGatewayStub(client)
	return n
}

// serve starts a module on the node's root and serves it on zbus until the
// test ends or stop is called.
func (n *node) serve(t testing.TB, opts nodeOptions) {
	t.Helper()
	if n.db != nil {
		// A restart: the module before let go of the store.
		n.db.Close()
	}
	db, err := store.Open(filepath.Join(n.root, store.FileName))
	if err != nil {
		t.Fatal(err)
	}
	n.db = db
	t.Cleanup(func() { db.Close() })
	routes, err := traefik.OpenRoutes(n.root)
	if err != nil {
		t.Fatal(err)
	}
	cfg := gateway.Config{
		Store:     db,
		Routes:    routes,
		Domain:    opts.domain,
		PublicIPs: opts.publicIPs,
		Resolver:  gateway.DNSResolver{Server: n.dns.Addr},
		Logger:    zerolog.Nop(),
	}
	if opts.loopbackBackends {
		cfg.Allow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	}
	if opts.unmetered {
		cfg.MeterUnavailable = errors.New("creating nftables table: operation not permitted")
	} else {
		if n.table == "" {
			n.table = harness.MeterTable(t)
		}
		bytesMeter, err := meter.New(meter.Config{Table: n.table, Store: db, Ledger: filepath.Join(n.root, meter.LedgerDirName, meter.LedgerFileName)})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Meter = bytesMeter
	}
	m, err := gateway.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Recover(); err != nil {
		t.Fatal(err)
	}
	server, err := zbus.NewRedisServer(gateway.ModuleName, n.redis.URL(), opts.workers)
	if err != nil {
		t.Fatal(err)
	}
	if err := gateway.Register(server, gateway.Contract2021{M: m}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel, n.done = cancel, make(chan struct{})
	go func() {
		defer close(n.done)
		_ = server.Run(ctx)
	}()
	// The server leaves its BLPOP (up to 10 s) when Redis, stopped by a
	// cleanup registered earlier and so run later, goes away.
	t.Cleanup(cancel)
}

// stop stops serving and waits until the server took its last request, so
// that no call reaches the old module after it.
func (n *node) stop() {
	n.cancel()
	<-n.done
}

// published returns the routes in the group files under root.
func published(t testing.TB, root string) map[string]*traefik.Configuration {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, traefik.RoutesDirName, "routes~*"+traefik.FileExt))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*traefik.Configuration{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := traefik.Unmarshal(data)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		maps.Copy(out, traefik.Split(cfg))
	}
	return out
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestEveryMethodOverZbus(t *testing.T) {
	n := startNode(t, defaults())
	n.dns.Set(t, "www.user.test", "198.51.100.7")
	c := ctx(t)

	fqdn, err := n.stub.SetNamedProxy(c, "wl-1", "app", []string{"http://10.0.0.1:8080", "http://10.0.0.2:8080"}, false)
	if err != nil || fqdn != "app.gw.test" {
		t.Fatalf("SetNamedProxy = %q, %v", fqdn, err)
	}
	if _, err := n.stub.SetNamedProxy(c, "wl-2", "tls", []string{"10.0.0.3:443"}, true); err != nil {
		t.Fatal(err)
	}
	if err := n.stub.SetFQDNProxy(c, "wl-3", "WWW.user.test.", []string{"http://[2a02::1]:80"}, false); err != nil {
		t.Fatal(err)
	}
	list, err := n.stub.List(c)
	if err != nil {
		t.Fatal(err)
	}
	want := []gateway.Proxy{
		{WorkloadID: "wl-1", FQDN: "app.gw.test", Kind: gateway.KindName, Backends: []string{"http://10.0.0.1:8080", "http://10.0.0.2:8080"}},
		{WorkloadID: "wl-2", FQDN: "tls.gw.test", Kind: gateway.KindName, Backends: []string{"10.0.0.3:443"}, TLSPassthrough: true},
		{WorkloadID: "wl-3", FQDN: "www.user.test", Kind: gateway.KindFQDN, Backends: []string{"http://[2a02::1]:80"}},
	}
	if fmt.Sprint(list) != fmt.Sprint(want) {
		t.Fatalf("List =\n%+v\nwant\n%+v", list, want)
	}
	for _, id := range []string{"wl-1", "wl-2", "wl-3"} {
		if published(t, n.root)[id] == nil {
			t.Fatalf("route of %s not in its group file %s", id, traefik.GroupName(id))
		}
	}
	if err := n.stub.DeleteNamedProxy(c, "wl-1"); err != nil {
		t.Fatal(err)
	}
	if err := n.stub.DeleteNamedProxy(c, "wl-1"); err != nil {
		t.Fatalf("deleting an unknown wlID: %v", err)
	}
	if list, _ := n.stub.List(c); len(list) != 2 {
		t.Fatalf("List after delete: %+v", list)
	}
	if published(t, n.root)["wl-1"] != nil {
		t.Fatal("route still in its group file")
	}
}

// TestErrorsOverZbus checks that every refusal reaches the caller as text
// that explains itself, and that refused calls write nothing.
func TestErrorsOverZbus(t *testing.T) {
	n := startNode(t, defaults())
	n.dns.Set(t, "elsewhere.test", "203.0.113.1")
	n.dns.Set(t, "stale.test", "198.51.100.7", "2001:db8::99")
	c := ctx(t)
	if _, err := n.stub.SetNamedProxy(c, "holder", "taken", []string{"http://10.0.0.1"}, false); err != nil {
		t.Fatal(err)
	}
	before := harness.Snapshot(t, n.root)
	ok := []string{"http://10.0.0.1"}
	tests := []struct {
		name string
		call func() error
		want string
	}{
		{"wlID traversal", func() error { _, err := n.stub.SetNamedProxy(c, "../../etc/x", "a", ok, false); return err }, `invalid wlID "../../etc/x"`},
		{"prefix injection", func() error {
			_, err := n.stub.SetNamedProxy(c, "a", "x`) || Host(`evil.com", ok, false)
			return err
		}, "invalid prefix"},
		{"prefix two labels", func() error { _, err := n.stub.SetNamedProxy(c, "a", "a.b", ok, false); return err }, "invalid prefix"},
		{"backend hostname", func() error {
			_, err := n.stub.SetNamedProxy(c, "a", "a", []string{"http://example.com"}, false)
			return err
		}, "invalid backends[0]"},
		{"backend loopback", func() error {
			_, err := n.stub.SetNamedProxy(c, "a", "a", []string{"http://127.0.0.1"}, false)
			return err
		}, "loopback"},
		{"backend metadata", func() error {
			_, err := n.stub.SetNamedProxy(c, "a", "a", []string{"http://169.254.169.254"}, false)
			return err
		}, "link-local"},
		{"backend own IP", func() error {
			_, err := n.stub.SetNamedProxy(c, "a", "a", []string{"http://198.51.100.7"}, false)
			return err
		}, "loop"},
		{"passthrough without port", func() error { _, err := n.stub.SetNamedProxy(c, "a", "a", []string{"10.0.0.1"}, true); return err }, "need a port"},
		{"seventeen backends", func() error {
			many := make([]string, 17)
			for i := range many {
				many[i] = fmt.Sprintf("http://10.0.1.%d", i+1)
			}
			_, err := n.stub.SetNamedProxy(c, "a", "a", many, false)
			return err
		}, "at most 16"},
		{"name taken", func() error { _, err := n.stub.SetNamedProxy(c, "other", "taken", ok, false); return err }, "already registered by another workload"},
		{"fqdn under domain", func() error { return n.stub.SetFQDNProxy(c, "a", "x.gw.test", ok, false) }, "gateway domain"},
		{"fqdn wildcard", func() error { return n.stub.SetFQDNProxy(c, "a", "*.user.test", ok, false) }, "wildcards"},
		{"fqdn unresolvable", func() error { return n.stub.SetFQDNProxy(c, "a", "nothing.test", ok, false) }, "no A or AAAA record"},
		{"fqdn elsewhere", func() error { return n.stub.SetFQDNProxy(c, "a", "elsewhere.test", ok, false) }, "resolves to 203.0.113.1"},
		{"fqdn stale AAAA", func() error { return n.stub.SetFQDNProxy(c, "a", "stale.test", ok, false) }, "2001:db8::99"},
		{"delete traversal", func() error { return n.stub.DeleteNamedProxy(c, "a/../../b") }, "invalid wlID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
	if after := harness.Snapshot(t, n.root); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("refused calls changed files")
	}
}

func TestMissingDomainAndIPs(t *testing.T) {
	n := startNode(t, nodeOptions{workers: 1})
	c := ctx(t)
	if _, err := n.stub.SetNamedProxy(c, "a", "a", []string{"http://10.0.0.1"}, false); err == nil || !strings.Contains(err.Error(), "name proxies need a gateway domain") {
		t.Fatalf("err = %v", err)
	}
	if err := n.stub.SetFQDNProxy(c, "a", "a.example", []string{"http://10.0.0.1"}, false); err == nil || !strings.Contains(err.Error(), "public IP") {
		t.Fatalf("err = %v", err)
	}
}

func TestConcurrentSetsOverZbus(t *testing.T) {
	n := startNode(t, defaults())
	c := ctx(t)
	const calls = 100
	var wg sync.WaitGroup
	errs := make([]error, calls)
	for i := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = n.stub.SetNamedProxy(c, fmt.Sprintf("wl-%d", i), "race", []string{"http://10.0.0.1"}, false)
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !strings.Contains(err.Error(), "already registered by"):
			t.Errorf("unexpected error: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d of %d calls won the domain, want exactly 1", won, calls)
	}
	if routes := published(t, n.root); len(routes) != 1 {
		t.Fatalf("%d routes published, want 1", len(routes))
	}
}

func TestRestartRecovers(t *testing.T) {
	opts := defaults()
	n := startNode(t, opts)
	n.dns.Set(t, "user.test", "198.51.100.7")
	c := ctx(t)
	if _, err := n.stub.SetNamedProxy(c, "a", "a", []string{"http://10.0.0.1"}, false); err != nil {
		t.Fatal(err)
	}
	if err := n.stub.SetFQDNProxy(c, "b", "user.test", []string{"10.0.0.2:443"}, true); err != nil {
		t.Fatal(err)
	}
	before, _ := n.stub.List(c)
	n.stop()
	n.serve(t, opts)
	after, err := n.stub.List(c)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("after restart List = %+v, want %+v", after, before)
	}
	// Domains held before the restart are still held.
	if _, err := n.stub.SetNamedProxy(c, "c", "a", []string{"http://10.0.0.3"}, false); err == nil || !strings.Contains(err.Error(), "already registered by a") {
		t.Fatalf("err = %v", err)
	}
}

func TestRedisRestart(t *testing.T) {
	n := startNode(t, defaults())
	c := ctx(t)
	if _, err := n.stub.List(c); err != nil {
		t.Fatal(err)
	}
	n.redis.Restart(t)
	start := time.Now()
	harness.WaitFor(t, 5*time.Second, "the module to answer after a Redis restart", func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("%v", r)
			}
		}()
		cc, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err = n.stub.List(cc)
		return err
	})
	t.Logf("answered again %s after the Redis restart", time.Since(start).Round(time.Millisecond))
}

// TestMetricsOverZbus meters real loopback traffic with the kernel's
// counters and reads it back over zbus.
func TestMetricsOverZbus(t *testing.T) {
	const up, down = 300_000, 700_000
	// Each count is of whole packets: the payload and at most 80 bytes of
	// IPv4 and TCP headers a packet (pkg/meter). Loopback packets carry up
	// to 64 KiB, but the first ones of a short transfer are small while
	// the window opens: a few percent. Losing the transfer, or counting it
	// twice, is far outside.
	within := func(got float64, payload int) bool {
		return got >= float64(payload) && got <= float64(payload)*1.125+8192
	}

	t.Run("every byte, under every caller's field names", func(t *testing.T) {
		n := startNode(t, metered())
		busy, idle := holdMeteredRoutes(t, n)
		post(t, busy, up, down)
		// zbus decodes by field name: a caller whose GatewayMetrics has
		// other names than ours would silently read empty maps, and bill
		// nothing.
		var old struct{ Sent, Received map[string]float64 }      // zos's callers of the first contract
		var later struct{ Request, Response map[string]float64 } // later ones, and this module's stub
		for _, object := range []string{gateway.ObjectName, gateway.ZosObjectName} {
			id := zbus.ObjectID{Name: object, Version: gateway.ObjectVersion}
			resp, err := n.client.RequestContext(ctx(t), gateway.ModuleName, id, "Metrics")
			if err != nil {
				t.Fatal(err)
			}
			if resp.Error != nil {
				t.Fatalf("%s: %s", id, *resp.Error)
			}
			for _, out := range []any{&old, &later} {
				loader := zbus.Loader{out}
				if err := resp.Unmarshal(&loader); err != nil {
					t.Fatalf("%s: decoding into %T: %v", id, out, err)
				}
				if err := resp.CallError(); err != nil {
					t.Fatalf("%s: %v", id, err)
				}
			}
			if !within(later.Request["busy"], up) || !within(later.Response["busy"], down) {
				t.Errorf("%s: busy counts %v bytes in, %v out; moved %d and %d", id, later.Request["busy"], later.Response["busy"], up, down)
			}
			if later.Request["idle"] != 0 || later.Response["idle"] != 0 {
				t.Errorf("%s: idle counts %v and %v bytes; it carried none", id, later.Request["idle"], later.Response["idle"])
			}
			if fmt.Sprint(old.Received) != fmt.Sprint(later.Request) || fmt.Sprint(old.Sent) != fmt.Sprint(later.Response) {
				t.Errorf("%s: Received/Sent %v %v differ from Request/Response %v %v", id, old.Received, old.Sent, later.Request, later.Response)
			}
		}
		_ = idle
	})

	t.Run("a deleted workload is reported once, a new one starts at zero", func(t *testing.T) {
		n := startNode(t, metered())
		busy, _ := holdMeteredRoutes(t, n)
		post(t, busy, up, down)
		c := ctx(t)
		if err := n.stub.DeleteNamedProxy(c, "busy"); err != nil {
			t.Fatal(err)
		}
		m, err := n.stub.Metrics(c)
		if err != nil {
			t.Fatal(err)
		}
		if !within(m.Request["busy"], up) {
			t.Fatalf("after the delete, busy reports %v bytes, want its last total", m.Request["busy"])
		}
		if m, err = n.stub.Metrics(c); err != nil {
			t.Fatal(err)
		}
		if _, ok := m.Request["busy"]; ok {
			t.Fatalf("busy reported a second time after its delete: %v", m.Request)
		}
		if _, err := n.stub.SetNamedProxy(c, "busy", "busy", []string{busy.URL()}, false); err != nil {
			t.Fatal(err)
		}
		if m, err = n.stub.Metrics(c); err != nil {
			t.Fatal(err)
		}
		if got, ok := m.Request["busy"]; !ok || got != 0 {
			t.Fatalf("a new busy reports %v bytes (present: %v), want 0", got, ok)
		}
	})

	t.Run("totals survive a restart of the module", func(t *testing.T) {
		n := startNode(t, metered())
		busy, _ := holdMeteredRoutes(t, n)
		post(t, busy, up, down)
		n.stop()
		// Counted while no module runs: the kernel's counters go on.
		post(t, busy, up, down)
		n.serve(t, metered())
		m, err := n.stub.Metrics(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		if !within(m.Request["busy"], 2*up) || !within(m.Response["busy"], 2*down) {
			t.Fatalf("busy counts %v bytes in, %v out after a restart; moved %d and %d", m.Request["busy"], m.Response["busy"], 2*up, 2*down)
		}
	})

	t.Run("no routes", func(t *testing.T) {
		n := startNode(t, metered())
		m, err := n.stub.Metrics(ctx(t))
		if err != nil || len(m.Request) != 0 || len(m.Response) != 0 {
			t.Fatalf("Metrics = %+v, %v; want empty maps and no error", m, err)
		}
	})
	t.Run("a node that cannot meter says so", func(t *testing.T) {
		opts := metered()
		opts.unmetered = true
		n := startNode(t, opts)
		if _, err := n.stub.Metrics(ctx(t)); err == nil || !strings.Contains(err.Error(), "metering is unavailable") || !strings.Contains(err.Error(), "not permitted") {
			t.Fatalf("err = %v, want why metering is unavailable", err)
		}
	})
}

// holdMeteredRoutes sets two routes to backends of their own: busy and idle.
func holdMeteredRoutes(t testing.TB, n *node) (busy, idle *harness.Backend) {
	t.Helper()
	busy, idle = harness.StartHTTPBackend(t, "busy"), harness.StartHTTPBackend(t, "idle")
	for id, b := range map[string]*harness.Backend{"busy": busy, "idle": idle} {
		if _, err := n.stub.SetNamedProxy(ctx(t), id, id, []string{b.URL()}, false); err != nil {
			t.Fatal(err)
		}
	}
	return busy, idle
}

// post sends up bytes to b and reads down bytes back, on a connection of
// its own, closed when done.
func post(t testing.TB, b *harness.Backend, up, down int) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := client.Post(fmt.Sprintf("%s/?size=%d", b.URL(), down), "application/octet-stream", bytes.NewReader(make([]byte, up)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || n != int64(down) {
		t.Fatalf("read %d bytes of %d: %v", n, down, err)
	}
}

// TestZosStub calls the module the way zos's own generated stub does: object
// manager@0.0.1. Unserved, such a request would wait in Redis until the
// stub's deadline.
func TestZosStub(t *testing.T) {
	n := startNode(t, defaults())
	stub := zos.NewGatewayStub(n.client)
	c := ctx(t)
	fqdn, err := stub.SetNamedProxy(c, "wl-zos", "zos", []string{"http://10.0.0.1:8080"}, false)
	if err != nil || fqdn != "zos.gw.test" {
		t.Fatalf("SetNamedProxy through manager@0.0.1 = %q, %v", fqdn, err)
	}
	// The same object answers under both names.
	list, err := n.stub.List(c)
	if err != nil || len(list) != 1 || list[0].WorkloadID != "wl-zos" {
		t.Fatalf("List through gateway@0.0.1 = %+v, %v", list, err)
	}
	if err := stub.DeleteNamedProxy(c, "wl-zos"); err != nil {
		t.Fatal(err)
	}
	if list, err := stub.List(c); err != nil || len(list) != 0 {
		t.Fatalf("List after delete = %+v, %v", list, err)
	}
}
