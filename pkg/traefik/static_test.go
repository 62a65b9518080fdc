package traefik

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// The -update flag regenerates golden files. It is looked up rather than held
// in a variable so that any test file of the package may define it.
func init() {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite the golden files under testdata/")
	}
}

func updateGolden() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

// goldenOptions look like a node's: every option set.
func goldenOptions() StaticOptions {
	return StaticOptions{
		ProxyDir:           "/var/lib/gateway/proxy",
		StateDir:           "/var/lib/gateway/traefik",
		MetricsAddress:     "127.0.0.1:8082",
		ACMEEmail:          "ops@example.com",
		ACMECACertificates: []string{"/etc/gateway/pebble.minica.pem"},
		DNSResolvers:       []string{"127.0.0.1:53"},
		LogLevel:           "info",
	}
}

func TestRenderStaticGolden(t *testing.T) {
	got, err := RenderStatic(goldenOptions())
	if err != nil {
		t.Fatalf("RenderStatic: %v", err)
	}
	golden := filepath.Join("testdata", "static.golden.yaml")
	if updateGolden() {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("reading golden file (regenerate with -update): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("rendered static configuration differs from %s (regenerate with -update):\n%s", golden, got)
	}
}

// lookup walks a decoded YAML document along keys.
func lookup(t testing.TB, doc map[string]any, keys ...string) any {
	t.Helper()
	var cur any = doc
	for i, k := range keys {
		m, ok := cur.(map[string]any)
		if !ok {
			t.Fatalf("%s is not a mapping", strings.Join(keys[:i], "."))
		}
		if cur, ok = m[k]; !ok {
			t.Fatalf("no key %s", strings.Join(keys[:i+1], "."))
		}
	}
	return cur
}

func TestRenderStaticDefaults(t *testing.T) {
	out, err := RenderStatic(StaticOptions{ProxyDir: "/p", StateDir: "/s/"})
	if err != nil {
		t.Fatalf("RenderStatic: %v", err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(out, &doc); err != nil {
		t.Fatalf("rendered YAML does not parse: %v", err)
	}
	tests := []struct {
		path []string
		want any
	}{
		{[]string{"entryPoints", "web", "address"}, ":80"},
		{[]string{"entryPoints", "websecure", "address"}, ":443"},
		{[]string{"entryPoints", "traefik", "address"}, "127.0.0.1:8082"},
		// Traefik's default redirect priority (MaxInt-1) would beat the
		// challenge routers of passthrough backends.
		{[]string{"entryPoints", "web", "http", "redirections", "entryPoint", "priority"}, 1},
		// A successor Traefik listens beside its predecessor (handover.go).
		{[]string{"entryPoints", "web", "reusePort"}, true},
		{[]string{"entryPoints", "websecure", "reusePort"}, true},
		{[]string{"entryPoints", "traefik", "reusePort"}, true},
		// Zero left slow and silent clients connected forever; the bound
		// also cuts request bodies still streaming at its end.
		{[]string{"entryPoints", "websecure", "transport", "respondingTimeouts", "readTimeout"}, "1m0s"},
		{[]string{"entryPoints", "web", "transport", "respondingTimeouts", "readTimeout"}, "1m0s"},
		// A write timeout would bound whole responses: downloads, SSE.
		{[]string{"entryPoints", "websecure", "transport", "respondingTimeouts", "writeTimeout"}, "0s"},
		{[]string{"providers", "providersThrottleDuration"}, "100ms"},
		{[]string{"providers", "file", "directory"}, "/p"},
		{[]string{"providers", "file", "watch"}, true},
		// Traefik defaults both to true when the key is missing.
		{[]string{"api", "dashboard"}, false},
		// The API is served on entry point "traefik", loopback.
		{[]string{"api", "insecure"}, true},
		{[]string{"global", "checkNewVersion"}, false},
		{[]string{"log", "level"}, "INFO"},
		{[]string{"certificatesResolvers", "dnsresolver", "acme", "caServer"}, DefaultACMECAServer},
		{[]string{"certificatesResolvers", "dnsresolver", "acme", "storage"}, "/s/acme-dns.json"},
		{[]string{"certificatesResolvers", "dnsresolver", "acme", "dnsChallenge", "provider"}, "httpreq"},
	}
	for _, tt := range tests {
		if got := lookup(t, doc, tt.path...); got != tt.want {
			t.Errorf("%s = %v, want %v", strings.Join(tt.path, "."), got, tt.want)
		}
	}
	// User domains get their certificates from the gateway (pkg/certs):
	// no resolver of Traefik's orders them, nor answers their challenges.
	if _, ok := lookup(t, doc, "certificatesResolvers").(map[string]any)[ResolverHTTP]; ok {
		t.Errorf("the static configuration has Traefik's HTTP-01 resolver %q", ResolverHTTP)
	}
	if _, ok := lookup(t, doc, "entryPoints", EntryPointInternal).(map[string]any)["asDefault"]; ok {
		t.Errorf("internal entry point is a default entry point: routers without entry points would be reachable on it")
	}
	if _, ok := lookup(t, doc, "api").(map[string]any)["debug"]; ok {
		t.Errorf("api.debug written although Debug is off")
	}
}

// effectiveEntryPoints returns the entry points, name to address, Traefik
// v3.6 runs with the static configuration doc: those of the file, plus the
// ones its SetEffectiveConfiguration (pkg/config/static) adds: "http" on
// ":80" when the file has none, and "traefik" on ":8080", every address,
// when the API is insecure, or ping or Prometheus use the entry point
// "traefik" (their default), or the REST provider is insecure, and no entry
// point has that name.
func effectiveEntryPoints(t testing.TB, doc map[string]any) map[string]string {
	t.Helper()
	eps := make(map[string]string)
	declared, _ := doc["entryPoints"].(map[string]any)
	for name, ep := range declared {
		addr, _ := ep.(map[string]any)["address"].(string)
		eps[name] = addr
	}
	if len(eps) == 0 {
		eps["http"] = ":80"
	}
	section := func(keys ...string) (map[string]any, bool) {
		var cur any = doc
		for _, k := range keys {
			m, ok := cur.(map[string]any)
			if !ok {
				return nil, false
			}
			if cur, ok = m[k]; !ok {
				return nil, false
			}
		}
		m, ok := cur.(map[string]any)
		if !ok && cur == nil {
			// A key with no value ("ping:") enables the section with
			// Traefik's defaults.
			return map[string]any{}, true
		}
		return m, ok
	}
	usesInternal := func(keys ...string) bool {
		m, ok := section(keys...)
		if !ok || m["manualRouting"] == true {
			return false
		}
		ep, set := m["entryPoint"].(string)
		return !set || ep == "traefik"
	}
	api, hasAPI := section("api")
	rest, hasRest := section("providers", "rest")
	if hasAPI && api["insecure"] == true || usesInternal("ping") || usesInternal("metrics", "prometheus") || hasRest && rest["insecure"] == true {
		if _, ok := eps["traefik"]; !ok {
			eps["traefik"] = ":8080"
		}
	}
	return eps
}

// Traefik serves its API with api.insecure on the entry point named
// "traefik" and, when no entry point has that name, creates one on ":8080",
// every address: the API would then be public. The rendered configuration
// must name its loopback entry point "traefik".
func TestRenderStaticAPIOnLoopbackOnly(t *testing.T) {
	tests := []struct {
		name string
		opts StaticOptions
	}{
		{"defaults", StaticOptions{ProxyDir: "/p", StateDir: "/s"}},
		{"node", goldenOptions()},
		{"debug", func() StaticOptions { o := goldenOptions(); o.Debug = true; return o }()},
		{"IPv6 loopback", func() StaticOptions { o := goldenOptions(); o.MetricsAddress = "[::1]:9100"; return o }()},
		// run.sh puts web on 127.0.0.1:8080: a Traefik-made ":8080" would
		// not even start.
		{"web on 8080", func() StaticOptions { o := goldenOptions(); o.WebAddress = "127.0.0.1:8080"; return o }()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := RenderStatic(tt.opts)
			if err != nil {
				t.Fatalf("RenderStatic: %v", err)
			}
			var doc map[string]any
			if err := yaml.Unmarshal(out, &doc); err != nil {
				t.Fatalf("rendered YAML does not parse: %v", err)
			}
			want := tt.opts.MetricsAddress
			if want == "" {
				want = DefaultMetricsAddress
			}
			eps := effectiveEntryPoints(t, doc)
			if len(eps) != 3 || eps[EntryPointWeb] == "" || eps[EntryPointWebSecure] == "" || eps[EntryPointInternal] != want {
				t.Errorf("Traefik would run entry points %v, want web, websecure and traefik on %s", eps, want)
			}
			for name, addr := range eps {
				if addr == ":8080" {
					t.Errorf("Traefik would create entry point %s on %s", name, addr)
				}
			}
			host, _, err := splitEntryPointAddress(eps[EntryPointInternal])
			if err != nil || hostUnspecified(host) {
				t.Errorf("entry point traefik on %q, want a loopback host", eps[EntryPointInternal])
			}
			// The API only on entry point "traefik": insecure, no router of
			// ours names api@internal, no dashboard, no REST provider.
			if got := lookup(t, doc, "api", "insecure"); got != true {
				t.Errorf("api.insecure = %v, want true", got)
			}
			if got := lookup(t, doc, "api", "dashboard"); got != false {
				t.Errorf("api.dashboard = %v, want false", got)
			}
			if got, _ := lookup(t, doc, "api").(map[string]any)["debug"].(bool); got != tt.opts.Debug {
				t.Errorf("api.debug = %v, want %v", got, tt.opts.Debug)
			}
			if _, ok := lookup(t, doc, "providers").(map[string]any)["rest"]; ok {
				t.Errorf("REST provider configured")
			}
			for _, path := range [][]string{{"ping", "entryPoint"}, {"metrics", "prometheus", "entryPoint"}} {
				if got := lookup(t, doc, path...); got != EntryPointInternal {
					t.Errorf("%s = %v, want %s", strings.Join(path, "."), got, EntryPointInternal)
				}
			}
		})
	}
}

func TestRenderStaticReadTimeout(t *testing.T) {
	tests := []struct {
		name    string
		timeout *time.Duration
		want    string
	}{
		{"default", nil, "1m0s"},
		// --traefik.readtimeout=0: long uploads live, slow clients too.
		{"zero disables it", new(time.Duration(0)), "0s"},
		{"custom", new(5 * time.Minute), "5m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := goldenOptions()
			o.ReadTimeout = tt.timeout
			out, err := RenderStatic(o)
			if err != nil {
				t.Fatalf("RenderStatic: %v", err)
			}
			var doc map[string]any
			if err := yaml.Unmarshal(out, &doc); err != nil {
				t.Fatalf("rendered YAML does not parse: %v", err)
			}
			// Both public entry points: web serves redirects and HTTP-01
			// challenges, and would hold slow clients just the same.
			for _, ep := range []string{EntryPointWeb, EntryPointWebSecure} {
				if got := lookup(t, doc, "entryPoints", ep, "transport", "respondingTimeouts", "readTimeout"); got != tt.want {
					t.Errorf("%s readTimeout = %v, want %s", ep, got, tt.want)
				}
			}
		})
	}
}

func TestRenderStaticAccepts(t *testing.T) {
	tests := []struct {
		name string
		edit func(*StaticOptions)
	}{
		{"loopback IPv6 metrics", func(o *StaticOptions) { o.MetricsAddress = "[::1]:9100" }},
		{"metrics by host name", func(o *StaticOptions) { o.MetricsAddress = "localhost:9100" }},
		{"lowercase log level", func(o *StaticOptions) { o.LogLevel = "debug" }},
		{"web and metrics share a port on distinct hosts", func(o *StaticOptions) {
			o.WebAddress = "192.0.2.1:8082"
		}},
		{"private CA", func(o *StaticOptions) { o.ACMECAServer = "https://127.0.0.1:14000/dir" }},
		{"throttle", func(o *StaticOptions) { o.Throttle = 50 * time.Millisecond }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := goldenOptions()
			tt.edit(&o)
			if _, err := RenderStatic(o); err != nil {
				t.Fatalf("RenderStatic: %v", err)
			}
		})
	}
}

func TestRenderStaticRejects(t *testing.T) {
	tests := []struct {
		name string
		edit func(*StaticOptions)
		want string // in the error
	}{
		{"missing proxy dir", func(o *StaticOptions) { o.ProxyDir = "" }, "ProxyDir"},
		{"relative state dir", func(o *StaticOptions) { o.StateDir = "traefik" }, "StateDir"},
		// The internal entry point serves /metrics, /ping and the API
		// unauthenticated.
		{"metrics on every address, empty host", func(o *StaticOptions) { o.MetricsAddress = ":8082" }, "MetricsAddress"},
		{"metrics on every IPv4 address", func(o *StaticOptions) { o.MetricsAddress = "0.0.0.0:8082" }, "MetricsAddress"},
		{"metrics on every IPv6 address", func(o *StaticOptions) { o.MetricsAddress = "[::]:8082" }, "MetricsAddress"},
		// Found by FuzzRenderStatic: the YAML of "\n:1" reads back as ":1",
		// every address, while the check saw the host "\n".
		{"metrics host with a newline", func(o *StaticOptions) { o.MetricsAddress = "\n:8082" }, "MetricsAddress"},
		{"host with a space", func(o *StaticOptions) { o.WebAddress = "a b:80" }, "WebAddress"},
		{"address without port", func(o *StaticOptions) { o.WebAddress = "80" }, "WebAddress"},
		{"port zero", func(o *StaticOptions) { o.WebSecureAddress = ":0" }, "WebSecureAddress"},
		{"port out of range", func(o *StaticOptions) { o.WebSecureAddress = ":70000" }, "WebSecureAddress"},
		{"udp entry point", func(o *StaticOptions) { o.WebAddress = ":80/udp" }, "WebAddress"},
		{"named port", func(o *StaticOptions) { o.WebAddress = ":http" }, "WebAddress"},
		{"two entry points on one port", func(o *StaticOptions) {
			o.WebAddress = ":8443"
			o.WebSecureAddress = "127.0.0.1:8443"
		}, "both listen on port 8443"},
		{"negative throttle", func(o *StaticOptions) { o.Throttle = -time.Second }, "Throttle"},
		{"negative read timeout", func(o *StaticOptions) { o.ReadTimeout = new(-time.Second) }, "ReadTimeout"},
		{"e-mail with a name", func(o *StaticOptions) { o.ACMEEmail = "Ops <ops@example.com>" }, "ACMEEmail"},
		{"e-mail without domain", func(o *StaticOptions) { o.ACMEEmail = "ops" }, "ACMEEmail"},
		{"plain http CA", func(o *StaticOptions) { o.ACMECAServer = "http://ca.example/dir" }, "ACMECAServer"},
		{"relative CA certificate", func(o *StaticOptions) { o.ACMECACertificates = []string{"pebble.pem"} }, "ACMECACertificates"},
		{"resolver without port", func(o *StaticOptions) { o.DNSResolvers = []string{"127.0.0.1"} }, "DNSResolvers"},
		{"resolver by name", func(o *StaticOptions) { o.DNSResolvers = []string{"ns.example:53"} }, "DNSResolvers"},
		{"unknown log level", func(o *StaticOptions) { o.LogLevel = "verbose" }, "LogLevel"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := goldenOptions()
			tt.edit(&o)
			out, err := RenderStatic(o)
			if err == nil {
				t.Fatalf("RenderStatic accepted the options:\n%s", out)
			}
			if out != nil {
				t.Errorf("RenderStatic returned output with an error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func FuzzRenderStatic(f *testing.F) {
	f.Add(":80", ":443", "127.0.0.1:8082", "INFO", "127.0.0.1:53", "ops@example.com")
	f.Add(":8082", "[::]:8082", "0.0.0.0:8082", "debug", "[::1]:53", "a@b")
	f.Add("[fe80::1%eth0]:80", ":443/udp", "localhost:1", "trace\n", "1.2.3.4:0", "x\n@y")
	f.Add("", "", "", "", "", "")
	f.Fuzz(func(t *testing.T, web, websecure, metrics, level, resolver, email string) {
		o := StaticOptions{
			ProxyDir:         "/p",
			StateDir:         "/s",
			WebAddress:       web,
			WebSecureAddress: websecure,
			MetricsAddress:   metrics,
			LogLevel:         level,
			DNSResolvers:     []string{resolver},
			ACMEEmail:        email,
		}
		out, err := RenderStatic(o)
		if err != nil {
			return
		}
		var cfg StaticConfiguration
		if err := yaml.Unmarshal(out, &cfg); err != nil {
			t.Fatalf("rendered YAML does not parse: %v\n%s", err, out)
		}
		addr := cfg.EntryPoints[EntryPointInternal].Address
		host, _, err := splitEntryPointAddress(addr)
		if err != nil || hostUnspecified(host) {
			t.Fatalf("accepted metrics address %q", addr)
		}
	})
}
