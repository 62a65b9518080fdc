package gateway

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/threefoldtech/gateway/pkg/meter"
	"github.com/threefoldtech/gateway/pkg/traefik"
)

// bookMeter records what the module tells its book. The counting itself
// is pkg/meter's, tested there against the kernel and end to end in
// test/e2e; here the module's side of the seam is checked.
type bookMeter struct {
	mu      sync.Mutex
	addrs   map[string][]netip.AddrPort
	calls   []string
	batches int
	totals  map[string]meter.Totals
	failing error
}

func newBookMeter() *bookMeter {
	return &bookMeter{addrs: map[string][]netip.AddrPort{}, totals: map[string]meter.Totals{}}
}

func (b *bookMeter) Reset(routes map[string][]netip.AddrPort) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, fmt.Sprintf("reset %d", len(routes)))
	b.addrs = routes
	return b.failing
}

func (b *bookMeter) Assign(id string, addrs []netip.AddrPort) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, "assign "+id)
	if b.failing != nil {
		return b.failing
	}
	b.addrs[id] = addrs
	return nil
}

func (b *bookMeter) AssignAll(routes map[string][]netip.AddrPort) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.batches++
	for _, id := range slices.Sorted(maps.Keys(routes)) {
		b.calls = append(b.calls, "assign "+id)
	}
	if b.failing != nil {
		return b.failing
	}
	maps.Copy(b.addrs, routes)
	return nil
}

func (b *bookMeter) Remove(id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, "remove "+id)
	delete(b.addrs, id)
	return b.failing
}

func (b *bookMeter) Totals() (map[string]meter.Totals, error) { return b.Report() }

func (b *bookMeter) Report() (map[string]meter.Totals, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.totals, b.failing
}

func (b *bookMeter) take() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.calls
	b.calls = nil
	return c
}

func addrPorts(s ...string) []netip.AddrPort {
	out := make([]netip.AddrPort, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddrPort(a)
	}
	return out
}

func TestModuleMetersRoutes(t *testing.T) {
	root := t.TempDir()
	book := newBookMeter()
	m, _ := newModuleWith(t, root, func(c *Config) { c.Meter = book })
	if got := book.take(); !slices.Equal(got, []string{"reset 0"}) {
		t.Fatalf("calls at start %v, want one reset", got)
	}

	if _, err := c21(m).SetNamedProxy("web", "web", []string{"http://10.0.0.1", "https://10.0.0.2:8443"}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := c21(m).SetNamedProxy("tls", "tls", []string{"10.0.0.3:443", "10.0.0.3:8443"}, true); err != nil {
		t.Fatal(err)
	}
	want := map[string][]netip.AddrPort{
		"web": addrPorts("10.0.0.1:80", "10.0.0.2:8443"),
		// A passthrough route's HTTP-01 challenges go to port 80.
		"tls": addrPorts("10.0.0.3:80", "10.0.0.3:443", "10.0.0.3:8443"),
	}
	if fmt.Sprint(book.addrs) != fmt.Sprint(want) {
		t.Fatalf("metered %v, want %v", book.addrs, want)
	}
	book.take()

	t.Run("a Set that changes nothing, or not the backends, meters nothing anew", func(t *testing.T) {
		if _, err := c21(m).SetNamedProxy("web", "web", []string{"http://10.0.0.1", "https://10.0.0.2:8443"}, false); err != nil {
			t.Fatal(err)
		}
		if _, err := c21(m).SetNamedProxy("web", "other", []string{"http://10.0.0.1:80", "https://10.0.0.2:8443"}, false); err != nil {
			t.Fatal(err)
		}
		if got := book.take(); len(got) != 0 {
			t.Fatalf("calls %v, want none", got)
		}
	})

	t.Run("a book that fails refuses the Set and writes nothing", func(t *testing.T) {
		book.failing = errors.New("netlink: operation not permitted")
		defer func() { book.failing = nil }()
		_, err := c21(m).SetNamedProxy("new", "new", []string{"http://10.0.0.9"}, false)
		if err == nil || !strings.Contains(err.Error(), `setting route "new": metering`) || !strings.Contains(err.Error(), "not permitted") {
			t.Fatalf("err = %v, want the metering failure", err)
		}
		if _, err := os.Stat(filepath.Join(root, traefik.RoutesDirName, "new.yaml")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("route written although it cannot be metered: %v", err)
		}
		book.take()
	})

	t.Run("a route that cannot be written gets its old metering back", func(t *testing.T) {
		// Files are staged beside proxy/ and renamed in: a file where
		// the staging folder goes makes every write fail, root or not.
		staging := filepath.Join(root, "."+traefik.RoutesDirName+"-staging")
		if err := os.Rename(staging, staging+".away"); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(staging, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		defer func() {
			os.Remove(staging)
			os.Rename(staging+".away", staging)
		}()
		if _, err := c21(m).SetNamedProxy("blocked", "blocked", []string{"http://10.0.0.8"}, false); err == nil {
			t.Fatal("Set succeeded on an unwritable folder")
		}
		if got := book.take(); !slices.Equal(got, []string{"assign blocked", "remove blocked"}) {
			t.Fatalf("calls %v, want the assign undone", got)
		}
	})

	t.Run("delete ends metering; a restart meters what is on disk", func(t *testing.T) {
		if err := c21(m).DeleteNamedProxy("web"); err != nil {
			t.Fatal(err)
		}
		if got := book.take(); !slices.Equal(got, []string{"remove web"}) {
			t.Fatalf("calls %v, want remove web", got)
		}
		m2, _ := newModuleWith(t, root, func(c *Config) { c.Meter = book })
		_ = m2
		if got := book.take(); !slices.Equal(got, []string{"reset 1"}) {
			t.Fatalf("calls at restart %v, want a reset with the one route left", got)
		}
		if fmt.Sprint(book.addrs) != fmt.Sprint(map[string][]netip.AddrPort{"tls": want["tls"]}) {
			t.Fatalf("metered after restart %v", book.addrs)
		}
	})

	t.Run("Metrics fills both names of each direction", func(t *testing.T) {
		book.totals = map[string]meter.Totals{"tls": {Tx: 10, Rx: 30}, "web": {Tx: 1, Rx: 2}}
		got, err := c21(m).Metrics()
		if err != nil {
			t.Fatal(err)
		}
		for name, v := range map[string]map[string]float64{"Request": got.Request, "Received": got.Received} {
			if fmt.Sprint(v) != "map[tls:10 web:1]" {
				t.Errorf("%s = %v", name, v)
			}
		}
		for name, v := range map[string]map[string]float64{"Response": got.Response, "Sent": got.Sent} {
			if fmt.Sprint(v) != "map[tls:30 web:2]" {
				t.Errorf("%s = %v", name, v)
			}
		}
	})
}

func TestMetricsWithoutMeter(t *testing.T) {
	m, _ := newModuleWith(t, t.TempDir(), func(c *Config) {
		c.MeterUnavailable = errors.New("creating nftables table: operation not permitted")
	})
	_, err := c21(m).Metrics()
	if err == nil || !strings.Contains(err.Error(), "metering is unavailable") || !strings.Contains(err.Error(), "not permitted") {
		t.Fatalf("err = %v, want the reason metering is off", err)
	}
}

func TestModuleTelemetry(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	book := newBookMeter()
	book.totals = map[string]meter.Totals{"a": {Tx: 5, Rx: 7}}
	m, _ := newModuleWith(t, t.TempDir(), func(c *Config) { c.Meter = book; c.Registry = reg })
	if _, err := c21(m).SetNamedProxy("a", "a", []string{"http://10.0.0.1"}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := c21(m).SetNamedProxy("b", "a", []string{"http://10.0.0.1"}, false); err == nil {
		t.Fatal("a taken name was accepted")
	}
	if _, err := c21(m).List(); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(m.t.calls.WithLabelValues(methodSetNamedProxy)); got != 2 {
		t.Errorf("SetNamedProxy calls = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.t.errors.WithLabelValues(methodSetNamedProxy)); got != 1 {
		t.Errorf("SetNamedProxy errors = %v, want 1", got)
	}
	want := `
# HELP gateway_routes Routes the gateway holds, by kind and TLS mode.
# TYPE gateway_routes gauge
gateway_routes{kind="fqdn",passthrough="false"} 0
gateway_routes{kind="fqdn",passthrough="true"} 0
gateway_routes{kind="name",passthrough="false"} 1
gateway_routes{kind="name",passthrough="true"} 0
# HELP gateway_workload_bytes_total Bytes a workload's route carried between Traefik and its backends (docs/API.md), by direction: request is towards the backends.
# TYPE gateway_workload_bytes_total counter
gateway_workload_bytes_total{direction="request",workload="a"} 5
gateway_workload_bytes_total{direction="response",workload="a"} 7
# HELP gateway_metering_up 1 when the byte counters could be read at this scrape, 0 when not (the gateway's log says why).
# TYPE gateway_metering_up gauge
gateway_metering_up 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "gateway_routes", "gateway_workload_bytes_total", "gateway_metering_up"); err != nil {
		t.Error(err)
	}
}
