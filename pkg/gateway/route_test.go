package gateway

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/threefoldtech/gateway/pkg/traefik"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func backends(t testing.TB, passthrough bool, values ...string) []Backend {
	t.Helper()
	bs, err := ParseBackends(values, passthrough, Policy{})
	if err != nil {
		t.Fatal(err)
	}
	return bs
}

func TestRenderGolden(t *testing.T) {
	tests := []struct {
		golden string
		route  route
	}{
		{"name-http", route{id: "wl-1", fqdn: "app.gw.example", kind: KindName, backends: backends(t, false, "http://10.0.0.1:8080", "http://[2a02:1802::5]")}},
		{"name-passthrough", route{id: "wl-2", fqdn: "tls.gw.example", kind: KindName, passthrough: true, backends: backends(t, true, "10.0.0.2:443", "https://[2a02:1802::6]:8443")}},
		{"fqdn-http", route{id: "wl-3", fqdn: "www.user.example", kind: KindFQDN, backends: backends(t, false, "http://10.0.0.3")}},
		{"fqdn-passthrough", route{id: "wl-4", fqdn: "secure.user.example", kind: KindFQDN, passthrough: true, backends: backends(t, true, "10.0.0.4:443")}},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			got, err := traefik.Marshal(tt.route.render())
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tt.golden, got)
			// What is written reads back as the same route.
			cfg, err := traefik.Unmarshal(got)
			if err != nil {
				t.Fatal(err)
			}
			back, err := parseRoute(tt.route.id, cfg, "gw.example")
			if err != nil {
				t.Fatalf("reading back: %v", err)
			}
			if back.proxy().FQDN != tt.route.fqdn || back.kind != tt.route.kind || back.passthrough != tt.route.passthrough ||
				len(back.backends) != len(tt.route.backends) {
				t.Errorf("read back %+v, want %+v", back, tt.route)
			}
		})
	}
}

// TestNameProxyCarriesNoResolver guards reload time: a certificate resolver
// on every name proxy's router made Traefik's ACME provider scan every
// certificate on every reload. A name proxy terminates TLS with an empty
// tls section (without one, a router on websecure would not serve HTTPS),
// and only the anchor carries the resolver and the wildcard.
func TestNameProxyCarriesNoResolver(t *testing.T) {
	r := route{id: "wl", fqdn: "app.gw.example", kind: KindName, backends: backends(t, false, "http://10.0.0.1")}
	tls := r.render().HTTP.Routers["wl"].TLS
	if tls == nil || tls.CertResolver != "" || len(tls.Domains) != 0 {
		t.Fatalf("name proxy TLS = %+v, want present and empty", tls)
	}
	data, err := traefik.Marshal(r.render())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "\n      tls: {}\n") {
		t.Fatalf("name proxy renders without tls: {}:\n%s", data)
	}

	got, err := traefik.Marshal(renderAnchor("gw.example", nil, nil, ""))
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "anchor", got)
	// No workload can take the anchor's name.
	if err := ValidateWorkloadID(traefik.AnchorName); err == nil {
		t.Fatalf("the anchor's name %q is a valid wlID", traefik.AnchorName)
	}
}

// TestLegacyNameProxyReadBack guards the conversion from the layout of one
// file per route: its name proxies, which carried the DNS-01 resolver and
// the wildcard on their own router, read back as the same route, and
// nothing else in that shape does.
func TestLegacyNameProxyReadBack(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "legacy-name-http.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := traefik.Unmarshal(data)
	if err != nil {
		t.Fatal(err)
	}
	want := route{id: "wl-1", fqdn: "app.gw.example", kind: KindName, name: "app", backends: backends(t, false, "http://10.0.0.1:8080", "http://[2a02:1802::5]")}
	// The gateway domain may have changed since: the file names its own.
	for _, domain := range []string{"gw.example", "other.example", ""} {
		back, err := parseRoute("wl-1", cfg, domain)
		if err != nil {
			t.Fatalf("domain %q: %v", domain, err)
		}
		if !reflect.DeepEqual(back, want) {
			t.Fatalf("domain %q: read back %+v, want %+v", domain, back, want)
		}
	}
	// The wildcard of another domain than the route's is not the gateway's.
	cfg.HTTP.Routers["wl-1"].TLS.Domains[0] = traefik.Domain{Main: "evil.example", SANs: []string{"*.evil.example"}}
	if r, err := parseRoute("wl-1", cfg, "gw.example"); err == nil {
		t.Fatalf("accepted a wildcard of another domain: %+v", r)
	}
}

// TestLegacyFQDNProxyReadBack guards the upgrade from Traefik's HTTP-01
// resolver: an FQDN proxy written with it reads back as the same route, and
// renders again without it, its domain still marking it an FQDN proxy.
func TestLegacyFQDNProxyReadBack(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "legacy-fqdn-http.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := traefik.Unmarshal(data)
	if err != nil {
		t.Fatal(err)
	}
	want := route{id: "wl-3", fqdn: "www.user.example", kind: KindFQDN, backends: backends(t, false, "http://10.0.0.3")}
	back, err := parseRoute("wl-3", cfg, "gw.example")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, want) {
		t.Fatalf("read back %+v, want %+v", back, want)
	}
	now := back.render()
	if tls := now.HTTP.Routers["wl-3"].TLS; tls.CertResolver != "" || len(tls.Domains) != 1 || tls.Domains[0].Main != "www.user.example" {
		t.Errorf("rendered again with TLS %+v, want the domain and no resolver", tls)
	}
	again, err := parseRoute("wl-3", now, "gw.example")
	if err != nil || !reflect.DeepEqual(again, want) {
		t.Errorf("the current shape reads back as %+v, %v", again, err)
	}
}

func TestParseRouteRefusesForeignFiles(t *testing.T) {
	good := route{id: "wl", fqdn: "app.gw.example", kind: KindName, backends: backends(t, false, "http://10.0.0.1")}
	tests := []struct {
		name   string
		id     string
		mutate func(c *traefik.Configuration)
	}{
		{"other file name", "other", func(c *traefik.Configuration) {}},
		// A rule edited by hand can match more than the route's domain.
		{"extra rule", "wl", func(c *traefik.Configuration) { c.HTTP.Routers["wl"].Rule += " || Host(`evil.example`)" }},
		{"rule injection", "wl", func(c *traefik.Configuration) { c.HTTP.Routers["wl"].Rule = "Host(`a.gw.example`) || Host(`b`)" }},
		{"extra router", "wl", func(c *traefik.Configuration) { c.HTTP.Routers["x"] = c.HTTP.Routers["wl"] }},
		{"other entry point", "wl", func(c *traefik.Configuration) { c.HTTP.Routers["wl"].EntryPoints = []string{"web"} }},
		{"hostname backend", "wl", func(c *traefik.Configuration) {
			c.HTTP.Services["wl"].LoadBalancer.Servers[0].URL = "http://metadata.internal"
		}},
		{"no servers", "wl", func(c *traefik.Configuration) { c.HTTP.Services["wl"].LoadBalancer.Servers = nil }},
		{"upper-case domain", "wl", func(c *traefik.Configuration) { c.HTTP.Routers["wl"].Rule = "Host(`APP.gw.example`)" }},
		// "wl: null" in a file read back must not crash the start.
		{"null router", "wl", func(c *traefik.Configuration) { c.HTTP.Routers["wl"] = nil }},
		{"null service", "wl", func(c *traefik.Configuration) { c.HTTP.Services["wl"] = nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good.render()
			tt.mutate(cfg)
			if r, err := parseRoute(tt.id, cfg, "gw.example"); err == nil {
				t.Fatalf("accepted %+v", r)
			}
		})
	}
}

func TestProxyShowsCanonicalBackends(t *testing.T) {
	r := route{id: "wl", fqdn: "a.b.c", kind: KindFQDN, passthrough: true, backends: []Backend{{Addr: netip.MustParseAddrPort("[2a02::1]:443"), PortGiven: true}}}
	if got := r.proxy().Backends[0]; got != "[2a02::1]:443" {
		t.Fatalf("got %q", got)
	}
}

// golden compares got with testdata/<name>.yaml, or rewrites it with -update.
func golden(t testing.TB, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".yaml")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run with -update to create it): %v", err)
	}
	if string(got) != string(want) {
		t.Errorf("rendered YAML differs from %s:\n%s", path, got)
	}
}

// zos took a name as ^[a-zA-Z0-9-_]+$: a file it wrote for a name with an
// underscore is imported as the name proxy it was, not refused.
func TestParseZosRouteNameWithUnderscore(t *testing.T) {
	data := "http:\n  routers:\n    zos-name-route:\n      rule: Host(`My_App.gw.example`)\n      service: zos-name\n      tls:\n        certResolver: dnsresolver\n        domains:\n        - sans:\n          - '*.gw.example'\n  services:\n    zos-name:\n      loadbalancer:\n        servers:\n        - url: http://10.0.2.1:9000\n"
	r, err := parseZosRoute("zos-name", []byte(data), "gw.example")
	if err != nil {
		t.Fatal(err)
	}
	if r.kind != KindName || r.name != "my_app" || r.fqdn != "my_app.gw.example" {
		t.Fatalf("imported %+v, want the name proxy my_app.gw.example", r)
	}
	// A user domain keeps the host-name rule.
	if _, err := parseZosRoute("zos-name", []byte(strings.ReplaceAll(data, "gw.example`", "user.example`")), "gw.example"); err == nil {
		t.Fatal("imported a user domain with an underscore")
	}
}
