//go:build integration

// Package integration calls the gateway object over real zbus, on a
// redis-server of the test's own, through the generated client stub: the
// path other node modules take.
package integration

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
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
}

type nodeOptions struct {
	domain     string
	publicIPs  []netip.Addr
	metricsURL string
	workers    uint
}

func defaults() nodeOptions {
	return nodeOptions{
		domain:     "gw.test",
		publicIPs:  []netip.Addr{netip.MustParseAddr("198.51.100.7")},
		metricsURL: "http://127.0.0.1:1/metrics",
		workers:    4,
	}
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
	routes, err := traefik.OpenRoutes(n.root)
	if err != nil {
		t.Fatal(err)
	}
	m, err := gateway.New(gateway.Config{
		Routes:     routes,
		Domain:     opts.domain,
		PublicIPs:  opts.publicIPs,
		Resolver:   gateway.DNSResolver{Server: n.dns.Addr},
		MetricsURL: opts.metricsURL,
		Logger:     zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	server, err := zbus.NewRedisServer(gateway.ModuleName, n.redis.URL(), opts.workers)
	if err != nil {
		t.Fatal(err)
	}
	if err := gateway.Register(server, m); err != nil {
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
		if _, err := os.Stat(filepath.Join(n.root, "proxy", id+".yaml")); err != nil {
			t.Fatalf("route file of %s: %v", id, err)
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
	if _, err := os.Stat(filepath.Join(n.root, "proxy", "wl-1.yaml")); !os.IsNotExist(err) {
		t.Fatalf("route file still there: %v", err)
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
	n := startNode(t, nodeOptions{metricsURL: "http://127.0.0.1:1/metrics", workers: 1})
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
	files, _ := filepath.Glob(filepath.Join(n.root, "proxy", "*.yaml"))
	if len(files) != 1 {
		t.Fatalf("%d route files, want 1", len(files))
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

func TestMetricsOverZbus(t *testing.T) {
	scrape, err := os.ReadFile(filepath.Join(harness.RepoRoot(t), "pkg", "traefik", "testdata", "metrics.txt"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(scrape) }))
	t.Cleanup(srv.Close)

	t.Run("scraped", func(t *testing.T) {
		opts := defaults()
		opts.metricsURL = srv.URL + "/metrics"
		n := startNode(t, opts)
		holdScrapedRoutes(t, n)
		m, err := n.stub.Metrics(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		want, err := traefik.ParseServiceBytes(bytes.NewReader(scrape))
		if err != nil {
			t.Fatal(err)
		}
		if len(want.Requests) == 0 || fmt.Sprint(m.Request) != fmt.Sprint(want.Requests) || fmt.Sprint(m.Response) != fmt.Sprint(want.Responses) {
			t.Fatalf("Metrics over zbus = %+v, want what the scrape holds: %+v", m, want)
		}
	})
	// zbus decodes by field name: a caller whose GatewayMetrics has other
	// names than ours would silently read empty maps, and bill nothing.
	t.Run("every caller's field names", func(t *testing.T) {
		opts := defaults()
		opts.metricsURL = srv.URL + "/metrics"
		n := startNode(t, opts)
		holdScrapedRoutes(t, n)
		want, err := traefik.ParseServiceBytes(bytes.NewReader(scrape))
		if err != nil {
			t.Fatal(err)
		}
		// zos's callers of the first contract.
		var old struct{ Sent, Received map[string]float64 }
		// Later ones, and this module's own stub.
		var later struct{ Request, Response map[string]float64 }
		for _, object := range []string{gateway.ObjectName, gateway.ZosObjectName} {
			id := zbus.ObjectID{Name: object, Version: gateway.ObjectVersion}
			for _, out := range []any{&old, &later} {
				resp, err := n.client.RequestContext(ctx(t), gateway.ModuleName, id, "Metrics")
				if err != nil {
					t.Fatal(err)
				}
				if resp.Error != nil {
					t.Fatalf("%s: %s", id, *resp.Error)
				}
				loader := zbus.Loader{out}
				if err := resp.Unmarshal(&loader); err != nil {
					t.Fatalf("%s: decoding into %T: %v", id, out, err)
				}
				if err := resp.CallError(); err != nil {
					t.Fatalf("%s: %v", id, err)
				}
			}
			if len(want.Requests) == 0 || fmt.Sprint(old.Received) != fmt.Sprint(want.Requests) || fmt.Sprint(old.Sent) != fmt.Sprint(want.Responses) {
				t.Fatalf("%s: Sent/Received = %+v, want what the scrape holds: %+v", id, old, want)
			}
			if fmt.Sprint(later.Request) != fmt.Sprint(want.Requests) || fmt.Sprint(later.Response) != fmt.Sprint(want.Responses) {
				t.Fatalf("%s: Request/Response = %+v, want what the scrape holds: %+v", id, later, want)
			}
		}
	})
	t.Run("no traefik and no routes", func(t *testing.T) {
		n := startNode(t, defaults())
		m, err := n.stub.Metrics(ctx(t))
		if err != nil || len(m.Request) != 0 || len(m.Response) != 0 {
			t.Fatalf("Metrics = %+v, %v; want empty maps and no error", m, err)
		}
	})
	t.Run("no traefik with routes", func(t *testing.T) {
		n := startNode(t, defaults())
		c := ctx(t)
		if _, err := n.stub.SetNamedProxy(c, "a", "a", []string{"http://10.0.0.1"}, false); err != nil {
			t.Fatal(err)
		}
		if _, err := n.stub.Metrics(c); err == nil || !strings.Contains(err.Error(), "reading traefik metrics") {
			t.Fatalf("err = %v", err)
		}
	})
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

// holdScrapedRoutes sets the routes whose services testdata/metrics.txt
// counts: Metrics reports only workloads the module holds.
func holdScrapedRoutes(t testing.TB, n *node) {
	t.Helper()
	for _, id := range []string{"app", "probe"} {
		if _, err := n.stub.SetNamedProxy(ctx(t), id, id, []string{"http://10.0.0.1"}, false); err != nil {
			t.Fatal(err)
		}
	}
}
