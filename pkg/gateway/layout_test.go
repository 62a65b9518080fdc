package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/threefoldtech/gateway/pkg/store"
	"github.com/threefoldtech/gateway/pkg/traefik"
)

// legacyRoutes returns routes of every kind, and how the one-file-per-route
// layout wrote each of them.
func legacyRoutes(t testing.TB) ([]route, map[string]*traefik.Configuration) {
	t.Helper()
	routes := []route{
		{id: "wl-tls", fqdn: "tls.gw.example", kind: KindName, passthrough: true, backends: backends(t, true, "10.0.0.2:443")},
		{id: "wl-fqdn", fqdn: "www.user.example", kind: KindFQDN, backends: backends(t, false, "http://10.0.0.3", "http://10.0.0.4")},
		{id: "wl-fqdn-tls", fqdn: "tls.user.example", kind: KindFQDN, passthrough: true, backends: backends(t, true, "10.0.0.5:443")},
	}
	for i := range 40 {
		routes = append(routes, route{id: fmt.Sprintf("wl-%d", i), fqdn: fmt.Sprintf("n%d.gw.example", i), kind: KindName,
			backends: backends(t, false, fmt.Sprintf("http://10.0.1.%d:8080", i+1))})
	}
	for i := range routes {
		if routes[i].kind == KindName {
			routes[i].name, _, _ = strings.Cut(routes[i].fqdn, ".")
		}
	}
	old := map[string]*traefik.Configuration{}
	for _, r := range routes {
		old[r.id] = r.render()
		if r.kind == KindName && !r.passthrough {
			old[r.id] = r.renderLegacy("gw.example")
		}
		if r.acme() {
			old[r.id] = r.renderLegacyFQDN()
		}
	}
	return routes, old
}

// writeLegacyFiles writes cfgs as the one-file-per-route layout did.
func writeLegacyFiles(t testing.TB, root string, cfgs map[string]*traefik.Configuration) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(root, traefik.RoutesDirName), 0o755); err != nil {
		t.Fatal(err)
	}
	for id, cfg := range cfgs {
		data, err := traefik.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, traefik.RoutesDirName, id+traefik.FileExt), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// zosFiles returns files in the shape zos's own gateway wrote, one per
// workload, and the routes they hold.
func zosFiles(t testing.TB) (map[string]string, []route) {
	t.Helper()
	files := map[string]string{
		"zos-name": "http:\n  routers:\n    zos-name-route:\n      rule: Host(`zname.gw.example`)\n      service: zos-name\n      tls:\n        certResolver: dnsresolver\n        domains:\n        - sans:\n          - '*.gw.example'\n  services:\n    zos-name:\n      loadbalancer:\n        servers:\n        - url: http://10.0.2.1:9000\n",
		"zos-fqdn": "http:\n  routers:\n    zos-fqdn-route:\n      rule: Host(`shop.user.example`)\n      service: zos-fqdn\n      tls:\n        certResolver: resolver\n        domains:\n        - main: shop.user.example\n  services:\n    zos-fqdn:\n      loadbalancer:\n        servers:\n        - url: http://10.0.2.2\n",
		"zos-tls":  "tcp:\n  routers:\n    zos-tls-route:\n      rule: HostSNI(`ztls.gw.example`)\n      service: zos-tls\n      tls:\n        passthrough: \"true\"\n  services:\n    zos-tls:\n      loadbalancer:\n        servers:\n        - address: 10.0.2.3:443\n",
	}
	routes := []route{
		{id: "zos-name", fqdn: "zname.gw.example", kind: KindName, name: "zname", backends: backends(t, false, "http://10.0.2.1:9000")},
		{id: "zos-fqdn", fqdn: "shop.user.example", kind: KindFQDN, backends: backends(t, false, "http://10.0.2.2")},
		{id: "zos-tls", fqdn: "ztls.gw.example", kind: KindName, name: "ztls", passthrough: true, backends: backends(t, true, "10.0.2.3:443")},
	}
	return files, routes
}

// TestImportAtStart guards the upgrade from every layout an earlier
// version left in proxy/ (one file per route, in every shape the gateway
// wrote, group files, a mix of both left by a conversion interrupted by a
// crash) and from zos's own files: at the first start with a store every
// route is imported, served and its domain reserved, each file it came from
// is kept in proxy-imported/ with its bytes intact, nothing is quarantined,
// and the next start writes nothing.
func TestImportAtStart(t *testing.T) {
	routes, old := legacyRoutes(t)
	zos, zosRoutes := zosFiles(t)
	routes = append(routes, zosRoutes...)
	ids := make([]string, len(routes))
	current := map[string]*traefik.Configuration{}
	for i, r := range routes {
		ids[i] = r.id
		current[r.id] = r.render()
	}
	slices.Sort(ids)
	tests := []struct {
		name string
		// crash writes the group files an interrupted conversion left
		// beside the old files.
		crash func(t *testing.T, root string)
	}{
		{"old layout", func(*testing.T, string) {}},
		{"crash after the groups", func(t *testing.T, root string) {
			if _, err := openRoutes(t, root).Reset(current); err != nil {
				t.Fatal(err)
			}
		}},
		{"crash among the groups", func(t *testing.T, root string) {
			some := map[string]*traefik.Configuration{}
			for id, cfg := range current {
				if traefik.GroupOf(id)%2 == 0 {
					some[id] = cfg
				}
			}
			if _, err := openRoutes(t, root).Reset(some); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			tt.crash(t, root)
			writeLegacyFiles(t, root, old)
			for id, data := range zos {
				if err := os.WriteFile(filepath.Join(root, traefik.RoutesDirName, id+traefik.FileExt), []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			originals := map[string]string{}
			for _, name := range proxyEntries(t, root) {
				data, err := os.ReadFile(filepath.Join(root, traefik.RoutesDirName, name))
				if err != nil {
					t.Fatal(err)
				}
				originals[name] = string(data)
			}

			var logs bytes.Buffer
			m, _ := newModuleWith(t, root, func(c *Config) { c.Logger = zerolog.New(&logs) })
			list, _ := c21(m).List()
			var got []string
			for _, p := range list {
				got = append(got, p.WorkloadID)
			}
			if !slices.Equal(got, ids) {
				t.Fatalf("List = %v, want %v\n%s", got, ids, logs.String())
			}
			if g := grouped(t, root); !reflect.DeepEqual(g, current) {
				t.Fatalf("group files hold %d routes, want %d in the current shape", len(g), len(current))
			}
			if got := proxyEntries(t, root); !slices.Equal(got, layoutFiles(ids...)) {
				t.Fatalf("routes folder holds %v, want %v", got, layoutFiles(ids...))
			}
			if q := quarantined(t, root); len(q) != 0 {
				t.Fatalf("quarantine holds %v", q)
			}
			for name, data := range originals {
				kept, err := os.ReadFile(filepath.Join(root, traefik.ImportedDirName, name))
				if err != nil || string(kept) != data {
					t.Fatalf("%s not kept in %s with its bytes: %v", name, traefik.ImportedDirName, err)
				}
			}
			// Every domain is reserved.
			for _, r := range routes {
				if r.kind != KindName || r.passthrough {
					continue
				}
				if _, err := c21(m).SetNamedProxy("thief", r.name, []string{"http://10.9.9.9"}, false); err == nil {
					t.Fatalf("%s was free after the import", r.fqdn)
				}
			}
			if n := strings.Count(logs.String(), "routes imported"); n != 1 {
				t.Fatalf("want one line about the import, got:\n%s", logs.String())
			}

			// Imported: the next start writes nothing.
			before := snapshot(t, root)
			logs.Reset()
			newModuleWith(t, root, func(c *Config) { c.Logger = zerolog.New(&logs) })
			if after := snapshot(t, root); !reflect.DeepEqual(after, before) {
				t.Fatal("a start after the import changed files")
			}
			if strings.Contains(logs.String(), "routes imported") {
				t.Fatalf("a second import:\n%s", logs.String())
			}
		})
	}
}

// layoutFilesPresent returns the group files and the reserved file in the
// routes folder under root.
func layoutFilesPresent(t testing.TB, root string) []string {
	t.Helper()
	var out []string
	for _, name := range proxyEntries(t, root) {
		if strings.HasPrefix(name, "routes~") || name == "gateway~anchor"+traefik.FileExt {
			out = append(out, name)
		}
	}
	return out
}

// TestImportConflict guards a route published twice in two different ways
// (an old file changed, or put back, beside the route's group): the gateway
// cannot tell which is meant, so it imports neither, as for a disputed
// domain; the old file goes to quarantine, the group file's bytes are kept.
func TestImportConflict(t *testing.T) {
	root := t.TempDir()
	a := route{id: "wl", fqdn: "app.gw.example", kind: KindName, name: "app", backends: backends(t, false, "http://10.0.0.1")}
	b := route{id: "other", fqdn: "other.gw.example", kind: KindName, name: "other", backends: backends(t, false, "http://10.0.0.2")}
	if _, err := openRoutes(t, root).Reset(map[string]*traefik.Configuration{"wl": a.render(), "other": b.render()}); err != nil {
		t.Fatal(err)
	}
	changed := a
	changed.backends = backends(t, false, "http://10.0.0.9")
	writeLegacyFiles(t, root, map[string]*traefik.Configuration{"wl": changed.renderLegacy("gw.example")})

	m, _ := newModule(t, root)
	if list, _ := c21(m).List(); len(list) != 1 || list[0].WorkloadID != "other" {
		t.Fatalf("List = %v", list)
	}
	if q := quarantined(t, root); len(q["wl.yaml"]) != 1 {
		t.Fatalf("quarantine holds %v, want the old file of wl", q)
	}
	if got := proxyEntries(t, root); !slices.Equal(got, layoutFiles("other")) {
		t.Fatalf("routes folder holds %v", got)
	}
}

// TestStoreWinsOverFiles guards the source of truth: once the store holds
// the routes, a file put in proxy/ by hand while the gateway was stopped is
// never taken for a route; it goes to quarantine and the route stays as the
// caller set it.
func TestStoreWinsOverFiles(t *testing.T) {
	root := t.TempDir()
	m, _ := newModule(t, root)
	if _, err := c21(m).SetNamedProxy("wl", "app", []string{"http://10.0.0.1"}, false); err != nil {
		t.Fatal(err)
	}
	changed := route{id: "wl", fqdn: "app.gw.example", kind: KindName, name: "app", backends: backends(t, false, "http://10.0.0.9")}
	writeLegacyFiles(t, root, map[string]*traefik.Configuration{"wl": changed.renderLegacy("gw.example")})
	m2, _ := newModule(t, root)
	list, _ := c21(m2).List()
	if len(list) != 1 || !slices.Equal(list[0].Backends, []string{"http://10.0.0.1"}) {
		t.Fatalf("List = %v", list)
	}
	if q := quarantined(t, root); len(q["wl.yaml"]) != 1 {
		t.Fatalf("quarantine holds %v", q)
	}
}

// TestRenderChangeKeepsRoutes guards the upgrade that changes what every
// route renders into (here a response header, a second middleware named
// after the route): after a restart every route is still served, in its new
// shape, and none is quarantined, now or by the sweeps that follow.
func TestRenderChangeKeepsRoutes(t *testing.T) {
	root := t.TempDir()
	m, recs := newModule(t, root)
	recs.set("www.user.example.", nodeIP.String())
	if _, err := c21(m).SetNamedProxy("wl-a", "a", []string{"http://10.0.0.1", "http://10.0.0.2"}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := c21(m).SetNamedProxy("wl-tls", "tls", []string{"10.0.0.3:443"}, true); err != nil {
		t.Fatal(err)
	}
	if err := c21(m).SetFQDNProxy("wl-www", "www.user.example", []string{"http://10.0.0.4"}, false); err != nil {
		t.Fatal(err)
	}
	renderExtra = func(id string, cfg *traefik.Configuration) {
		if cfg.HTTP == nil || cfg.TCP != nil {
			return
		}
		name := id + "~headers"
		if cfg.HTTP.Middlewares == nil {
			cfg.HTTP.Middlewares = map[string]*traefik.Middleware{}
		}
		cfg.HTTP.Middlewares[name] = &traefik.Middleware{Headers: &traefik.Headers{CustomResponseHeaders: map[string]string{"X-Gateway": "1"}}}
		cfg.HTTP.Routers[id].Middlewares = append(cfg.HTTP.Routers[id].Middlewares, name)
	}
	t.Cleanup(func() { renderExtra = nil })
	m2, _ := newModule(t, root)
	list, _ := c21(m2).List()
	if len(list) != 3 {
		t.Fatalf("List = %v", list)
	}
	g := grouped(t, root)
	for _, id := range []string{"wl-a", "wl-www"} {
		if g[id] == nil || g[id].HTTP.Middlewares[id+"~headers"] == nil {
			t.Fatalf("route %s not in its new shape: %+v", id, g[id])
		}
	}
	m2.sweep()
	if q := quarantined(t, root); len(q) != 0 {
		t.Fatalf("quarantine holds %v", q)
	}
	if got := proxyEntries(t, root); !slices.Equal(got, layoutFiles("wl-a", "wl-tls", "wl-www")) {
		t.Fatalf("routes folder holds %v", got)
	}
}

// TestAnchorFollowsDomain guards the wildcard certificate: a gateway with a
// domain publishes the anchor router that carries its resolver, one without
// removes it (it is not quarantined: the gateway wrote it), and one whose
// domain changed replaces it.
func TestAnchorFollowsDomain(t *testing.T) {
	root := t.TempDir()
	anchor := filepath.Join(root, traefik.RoutesDirName, "gateway~anchor"+traefik.FileExt)
	check := func(domain string) {
		t.Helper()
		data, err := os.ReadFile(anchor)
		if domain == "" {
			if !os.IsNotExist(err) {
				t.Fatalf("anchor without a domain: %v\n%s", err, data)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if want := routeYAML(t, renderAnchor(domain, nil, nil, "")); string(data) != want {
			t.Fatalf("anchor holds\n%s\nwant\n%s", data, want)
		}
	}
	newModule(t, root)
	check("gw.example")
	newModuleWith(t, root, func(c *Config) { c.Domain = "" })
	check("")
	newModuleWith(t, root, func(c *Config) { c.Domain = "gw.example" })
	check("gw.example")
	newModuleWith(t, root, func(c *Config) { c.Domain = "new.example" })
	check("new.example")
	if q := quarantined(t, root); len(q) != 0 {
		t.Fatalf("quarantine holds %v", q)
	}
}

// swapCert is a DefaultCertificate whose certificate the test changes.
type swapCert struct {
	mu   sync.Mutex
	cert *traefik.TLSCertificate
	err  error
}

func (s *swapCert) Current() (*traefik.TLSCertificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cert, s.err
}

func (s *swapCert) set(c *traefik.TLSCertificate) {
	s.mu.Lock()
	s.cert = c
	s.mu.Unlock()
}

// TestDefaultCertificatePublished guards the default certificate: the
// reserved file sets it, with a domain or without one, and a change of the
// certificate (the wildcard obtained, or renewed) is published by Run, while
// a Run that finds it unchanged writes nothing.
func TestDefaultCertificatePublished(t *testing.T) {
	root := t.TempDir()
	anchor := filepath.Join(root, traefik.RoutesDirName, "gateway~anchor"+traefik.FileExt)
	self := &traefik.TLSCertificate{CertFile: "/state/default-self.crt", KeyFile: "/state/default-self.key"}
	certs := &swapCert{cert: self}
	check := func(domain string, cert *traefik.TLSCertificate) {
		t.Helper()
		data, err := os.ReadFile(anchor)
		if err != nil {
			t.Fatal(err)
		}
		if want := routeYAML(t, renderAnchor(domain, cert, nil, "")); string(data) != want {
			t.Fatalf("reserved file holds\n%s\nwant\n%s", data, want)
		}
	}
	newModuleWith(t, root, func(c *Config) { c.Domain = ""; c.DefaultCertificate = certs })
	check("", self)
	m, _ := newModuleWith(t, root, func(c *Config) { c.DefaultCertificate = certs; c.SweepInterval = 10 * time.Millisecond })
	check("gw.example", self)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	defer func() { cancel(); <-done }()
	before, _ := os.Stat(anchor)
	time.Sleep(50 * time.Millisecond)
	if after, _ := os.Stat(anchor); !os.SameFile(before, after) {
		t.Fatal("Run wrote the reserved file again with nothing changed")
	}
	wild := &traefik.TLSCertificate{CertFile: "/state/default-0123456789ab.crt", KeyFile: "/state/default-0123456789ab.key"}
	certs.set(wild)
	deadline := time.Now().Add(5 * time.Second)
	for {
		data, _ := os.ReadFile(anchor)
		if string(data) == routeYAML(t, renderAnchor("gw.example", wild, nil, "")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new default certificate not published:\n%s", data)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if q := quarantined(t, root); len(q) != 0 {
		t.Fatalf("quarantine holds %v", q)
	}
}

// TestDefaultCertificateFailureDoesNotStopTheGateway guards the start: a
// default certificate that cannot be had (a full disk, a broken state
// folder) is logged, the gateway starts without one (Traefik makes its own)
// and publishes it once it can.
func TestDefaultCertificateFailureDoesNotStopTheGateway(t *testing.T) {
	root := t.TempDir()
	anchor := filepath.Join(root, traefik.RoutesDirName, "gateway~anchor"+traefik.FileExt)
	certs := &swapCert{err: errors.New("disk full")}
	m, _ := newModuleWith(t, root, func(c *Config) { c.DefaultCertificate = certs })
	data, err := os.ReadFile(anchor)
	if err != nil || string(data) != routeYAML(t, renderAnchor("gw.example", nil, nil, "")) {
		t.Fatalf("reserved file %v:\n%s", err, data)
	}
	self := &traefik.TLSCertificate{CertFile: "/state/default-self.crt", KeyFile: "/state/default-self.key"}
	certs.mu.Lock()
	certs.cert, certs.err = self, nil
	certs.mu.Unlock()
	if err := m.publishAnchor(); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(anchor); string(data) != routeYAML(t, renderAnchor("gw.example", self, nil, "")) {
		t.Fatalf("reserved file once the certificate can be had:\n%s", data)
	}
}

// TestBadStoreRebuiltFromFolder guards a node whose store is lost (a disk
// that dropped writes, a file cut short): the store is set aside, and the
// routes the folder serves are imported into a new one, so that the node
// keeps every route and every domain stays reserved.
func TestBadStoreRebuiltFromFolder(t *testing.T) {
	root := t.TempDir()
	m, recs := newModule(t, root)
	recs.set("www.user.example.", nodeIP.String())
	if _, err := c21(m).SetNamedProxy("wl-a", "a", []string{"http://10.0.0.1"}, false); err != nil {
		t.Fatal(err)
	}
	if err := c21(m).SetFQDNProxy("wl-www", "www.user.example", []string{"10.0.0.2:443"}, true); err != nil {
		t.Fatal(err)
	}
	want, _ := c21(m).List()
	m.store.Close()
	if err := os.Truncate(filepath.Join(root, store.FileName), 100); err != nil {
		t.Fatal(err)
	}
	m2, _ := newModule(t, root)
	if aside, _ := m2.store.SetAside(); aside == "" {
		t.Fatal("the bad store was not set aside")
	}
	if got, _ := c21(m2).List(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("List = %v, want %v", got, want)
	}
	if _, err := c21(m2).SetNamedProxy("thief", "a", []string{"http://10.0.0.9"}, false); err == nil {
		t.Fatal("a domain of the lost store was given away")
	}
}
