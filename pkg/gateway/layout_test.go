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

// TestConversionAtStart guards the upgrade from one file per route: at
// start the gateway takes the old files for its routes (name proxies in
// their old shape included), writes every group and the anchor, and only
// then removes the old files, with one log line that counts them; a start
// interrupted at any point leaves a folder the next start finishes
// converting, with nothing quarantined; and a start that finds everything
// converted writes nothing.
func TestConversionAtStart(t *testing.T) {
	routes, old := legacyRoutes(t)
	ids := make([]string, len(routes))
	current := map[string]*traefik.Configuration{}
	for i, r := range routes {
		ids[i] = r.id
		current[r.id] = r.render()
	}
	slices.Sort(ids)
	tests := []struct {
		name string
		// crash writes what an interrupted start left beside the old files.
		crash func(t *testing.T, root string)
	}{
		{"old layout", func(*testing.T, string) {}},
		{"crash after the groups", func(t *testing.T, root string) {
			if _, err := openRoutes(t, root).PublishAll(current); err != nil {
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
			if _, err := openRoutes(t, root).PublishAll(some); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			tt.crash(t, root)
			writeLegacyFiles(t, root, old)
			if tt.name == "crash after the groups" {
				// And some old files already removed.
				for _, id := range ids[:10] {
					if err := os.Remove(filepath.Join(root, traefik.RoutesDirName, id+traefik.FileExt)); err != nil {
						t.Fatal(err)
					}
				}
			}
			legacy := len(proxyEntries(t, root)) - len(layoutFilesPresent(t, root))

			var logs bytes.Buffer
			m, _ := newModuleWith(t, root, func(c *Config) { c.Logger = zerolog.New(&logs) })
			list, _ := m.List()
			var got []string
			for _, p := range list {
				got = append(got, p.WorkloadID)
			}
			if !slices.Equal(got, ids) {
				t.Fatalf("List = %v, want %v", got, ids)
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
			want := fmt.Sprintf(`"routes":%d,"message":"routes converted from one file per route to group files"`, legacy)
			if n := strings.Count(logs.String(), "routes converted"); n != 1 || !strings.Contains(logs.String(), want) {
				t.Fatalf("want one line with %s, got:\n%s", want, logs.String())
			}

			// Converted: the next start writes nothing.
			before := snapshot(t, root)
			logs.Reset()
			newModuleWith(t, root, func(c *Config) { c.Logger = zerolog.New(&logs) })
			if after := snapshot(t, root); !reflect.DeepEqual(after, before) {
				t.Fatal("a start after the conversion changed files")
			}
			if strings.Contains(logs.String(), "routes converted") {
				t.Fatalf("a second conversion:\n%s", logs.String())
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

// TestConversionConflict guards a route published twice in two different
// ways (an old file changed, or put back, beside the route's group): the
// gateway cannot tell which is meant, so it takes neither and quarantines
// both, as for a disputed domain.
func TestConversionConflict(t *testing.T) {
	root := t.TempDir()
	m, _ := newModule(t, root)
	if _, err := m.SetNamedProxy("wl", "app", []string{"http://10.0.0.1"}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := m.SetNamedProxy("other", "other", []string{"http://10.0.0.2"}, false); err != nil {
		t.Fatal(err)
	}
	changed := route{id: "wl", fqdn: "app.gw.example", kind: KindName, backends: backends(t, false, "http://10.0.0.9")}
	writeLegacyFiles(t, root, map[string]*traefik.Configuration{"wl": changed.renderLegacy("gw.example")})

	m2, _ := newModule(t, root)
	if list, _ := m2.List(); len(list) != 1 || list[0].WorkloadID != "other" {
		t.Fatalf("List = %v", list)
	}
	if q := quarantined(t, root); len(q["wl.yaml"]) != 2 {
		t.Fatalf("quarantine holds %v, want both copies of wl", q)
	}
	if got := proxyEntries(t, root); !slices.Equal(got, layoutFiles("other")) {
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
