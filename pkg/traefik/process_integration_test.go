//go:build integration

package traefik

// These tests run the real Traefik: TRAEFIK_BIN or traefik on PATH, built by
// scripts/install-traefik.sh. Run them with
//
//	TRAEFIK_BIN=$(scripts/install-traefik.sh) go test -tags integration ./pkg/traefik

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"
)

// traefikBinary finds the Traefik to test with. A missing binary fails the
// test: skipping would let CI pass without ever running Traefik.
func traefikBinary(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv("TRAEFIK_BIN"); bin != "" {
		return bin
	}
	if bin, err := exec.LookPath("traefik"); err == nil {
		return bin
	}
	t.Fatal("no traefik binary: run scripts/install-traefik.sh and set TRAEFIK_BIN to the path it prints")
	return ""
}

// freePort returns a loopback port nobody listens on right now.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// traefikSetup is a gateway root in a temporary folder with a static
// configuration on free loopback ports.
type traefikSetup struct {
	opts       StaticOptions
	configFile string
	web        string // base URLs
	websecure  string
	metrics    string
}

func newTraefikSetup(t testing.TB) *traefikSetup {
	t.Helper()
	root := t.TempDir()
	s := &traefikSetup{
		opts: StaticOptions{
			ProxyDir:         filepath.Join(root, "proxy"),
			StateDir:         filepath.Join(root, "traefik"),
			WebAddress:       fmt.Sprintf("127.0.0.1:%d", freePort(t)),
			WebSecureAddress: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
			MetricsAddress:   fmt.Sprintf("127.0.0.1:%d", freePort(t)),
			// Never reached: no router asks for a certificate.
			ACMECAServer: "https://127.0.0.1:1/directory",
		},
	}
	s.web = "http://" + s.opts.WebAddress
	s.websecure = "https://" + s.opts.WebSecureAddress
	s.metrics = "http://" + s.opts.MetricsAddress
	if err := os.MkdirAll(s.opts.ProxyDir, 0o755); err != nil {
		t.Fatal(err)
	}
	s.writeStatic(t)
	return s
}

// writeStatic renders s.opts into the static configuration file, as the
// gateway does, creating the state folder.
func (s *traefikSetup) writeStatic(t testing.TB) {
	t.Helper()
	out, err := RenderStatic(s.opts)
	if err != nil {
		t.Fatalf("RenderStatic: %v", err)
	}
	if s.configFile, err = WriteState(s.opts.StateDir, out, nil); err != nil {
		t.Fatalf("WriteState: %v", err)
	}
}

// process returns a Process for s, stopped at the end of the test.
func (s *traefikSetup) process(t testing.TB) *Process {
	t.Helper()
	return s.processWithEnv(t, nil)
}

// processWithEnv is process with ProcessConfig.Env env.
func (s *traefikSetup) processWithEnv(t testing.TB, env []string) *Process {
	t.Helper()
	return s.processWith(t, env, nil)
}

// processWith is process with ProcessConfig.Env env and Registry reg.
func (s *traefikSetup) processWith(t testing.TB, env []string, reg prometheus.Registerer) *Process {
	t.Helper()
	p, err := NewProcess(ProcessConfig{
		Binary:      traefikBinary(t),
		ConfigFile:  s.configFile,
		StateDir:    s.opts.StateDir,
		Env:         env,
		StopTimeout: 5 * time.Second,
		// Replaced Traefiks are handed over, as in the gateway.
		MetricsAddress: s.opts.MetricsAddress,
		Logger:         testLogger(t),
		Registry:       reg,
	})
	if err != nil {
		t.Fatalf("NewProcess: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Stop(context.Background()); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	t.Cleanup(func() {
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(s.opts.StateDir, LogFileName)); err == nil {
				t.Logf("traefik.log:\n%s", b)
			}
		}
	})
	return p
}

// run runs p until the returned cancel or the end of the test, and returns
// the pid it runs, killed by pid at the end of the test.
func (s *traefikSetup) run(t testing.TB, p *Process) (pid int, cancel func()) {
	t.Helper()
	cancel = runProcess(t, p)
	pid = p.pid()
	killAtCleanup(t, pid, p.argv)
	return pid, cancel
}

var testClient = &http.Client{
	Timeout: 2 * time.Second,
	// The redirect of web is what some tests look at.
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// get fetches url with Host host ("" for the URL's).
func get(url, host string) (*http.Response, []byte, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, err
	}
	if host != "" {
		req.Host = host
	}
	resp, err := testClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

// waitPing waits for /ping on the internal entry point to answer 200 and
// returns how long it took.
func (s *traefikSetup) waitPing(t testing.TB, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	waitFor(t, within, "ping answers 200", func() bool {
		resp, _, err := get(s.metrics+"/ping", "")
		return err == nil && resp.StatusCode == http.StatusOK
	})
	return time.Since(start)
}

func TestTraefikRunsRenderedStaticConfig(t *testing.T) {
	s := newTraefikSetup(t)
	p := s.process(t)
	start := time.Now()
	pid, _ := s.run(t, p)
	took := s.waitPing(t, 10*time.Second)
	t.Logf("traefik pid %d answered ping %s after Started, %s after Run", pid, took, time.Since(start))

	resp, body, err := get(s.metrics+"/metrics", "")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %v %v", resp, err)
	}
	if !strings.Contains(string(body), "traefik_config_reloads_total") {
		t.Errorf("/metrics is not Traefik's:\n%s", body)
	}

	// web redirects to websecure, including the paths of the metrics entry
	// point: those are not served on the public entry points.
	for _, path := range []string{"/", "/ping", "/metrics"} {
		resp, _, err := get(s.web+path, "app.example.test")
		if err != nil {
			t.Fatalf("GET web%s: %v", path, err)
		}
		loc := resp.Header.Get("Location")
		_, port, _ := net.SplitHostPort(s.opts.WebSecureAddress)
		if resp.StatusCode != http.StatusMovedPermanently || loc != "https://app.example.test:"+port+path {
			t.Errorf("GET web%s: %d Location %q, want 301 to websecure", path, resp.StatusCode, loc)
		}
	}

	// Traefik's output goes to the log file of the state folder.
	waitFor(t, 3*time.Second, "traefik.log written", func() bool {
		b, _ := os.ReadFile(filepath.Join(s.opts.StateDir, LogFileName))
		return len(b) > 0
	})
}

// writeRoutes writes a dynamic-configuration file into the watched folder,
// through a name Traefik ignores and a rename.
func (s *traefikSetup) writeRoutes(t testing.TB, name string, cfg *Configuration) {
	t.Helper()
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(s.opts.ProxyDir, "."+name+".tmp")
	if err := os.WriteFile(tmp, out, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(s.opts.ProxyDir, name+".yaml")); err != nil {
		t.Fatal(err)
	}
}

// Traefik's API answers on the internal entry point only, Traefik runs no
// entry point but the three of the file (with api.insecure and no entry
// point named "traefik", it would add one on ":8080"), and RouterServed sees
// a route file once Traefik serves it.
func TestTraefikAPI(t *testing.T) {
	s := newTraefikSetup(t)
	s.opts.Debug = true
	s.writeStatic(t)
	p := s.process(t)
	s.run(t, p)
	s.waitPing(t, 10*time.Second)
	api := API{Base: APIURL(s.opts.MetricsAddress), Client: testClient}

	resp, body, err := get(api.Base+"/entrypoints", "")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/entrypoints: %v %v", resp, err)
	}
	var eps []struct{ Name, Address string }
	if err := json.Unmarshal(body, &eps); err != nil {
		t.Fatalf("decoding /api/entrypoints: %v\n%s", err, body)
	}
	got := make(map[string]string)
	for _, ep := range eps {
		got[ep.Name] = ep.Address
	}
	want := map[string]string{
		EntryPointWeb:       s.opts.WebAddress,
		EntryPointWebSecure: s.opts.WebSecureAddress,
		EntryPointInternal:  s.opts.MetricsAddress,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("traefik runs entry points %v, want %v", got, want)
	}

	// Debug: the profiles, on the internal entry point.
	if resp, _, err := get(s.metrics+"/debug/pprof/", ""); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("GET /debug/pprof/ with Debug: %v %v", resp, err)
	}
	// Neither the API nor the profiles on the public entry points (web
	// redirects everything, as TestTraefikRunsRenderedStaticConfig checks).
	insecure := &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
	}
	t.Cleanup(insecure.CloseIdleConnections)
	for _, path := range []string{"/api/version", "/api/http/routers", "/debug/pprof/"} {
		resp, err := insecure.Get(s.websecure + path)
		if err != nil {
			t.Fatalf("GET websecure%s: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET websecure%s: %s, want 404", path, resp.Status)
		}
	}

	ctx := context.Background()
	if served, err := api.RouterServed(ctx, "wl-api", false); err != nil || served {
		t.Fatalf("RouterServed before the route file: %v, %v; want false", served, err)
	}
	s.writeRoutes(t, "routes", &Configuration{
		HTTP: &HTTPConfiguration{
			Routers: map[string]*Router{"wl-api": {EntryPoints: []string{EntryPointWeb}, Rule: "Host(`api.test`)", Service: "wl-api"}},
			Services: map[string]*Service{"wl-api": {LoadBalancer: &ServersLoadBalancer{
				Servers: []Server{{URL: "http://127.0.0.1:1"}},
			}}},
		},
		TCP: &TCPConfiguration{
			Routers: map[string]*TCPRouter{"wl-tcp": {
				EntryPoints: []string{EntryPointWebSecure}, Rule: "HostSNI(`tcp.test`)", Service: "wl-tcp",
				TLS: &RouterTCPTLSConfig{Passthrough: true},
			}},
			Services: map[string]*TCPService{"wl-tcp": {LoadBalancer: &TCPServersLoadBalancer{
				Servers: []TCPServer{{Address: "127.0.0.1:1"}},
			}}},
		},
	})
	written := time.Now()
	var lastErr error
	waitFor(t, 5*time.Second, "routers served", func() bool {
		httpServed, err := api.RouterServed(ctx, "wl-api", false)
		if err != nil {
			lastErr = err
			return false
		}
		tcpServed, err := api.RouterServed(ctx, "wl-tcp", true)
		if err != nil {
			lastErr = err
			return false
		}
		return httpServed && tcpServed
	})
	t.Logf("routers served %s after the file was written (last error %v)", time.Since(written), lastErr)
	// Kinds are apart: no TCP router wl-api.
	if served, err := api.RouterServed(ctx, "wl-api", true); err != nil || served {
		t.Errorf("RouterServed(wl-api, tcp): %v, %v; want false", served, err)
	}
	// The overview counts them, with Traefik's own routers.
	if ov, err := api.Overview(ctx); err != nil || ov.HTTPRouters < 1 || ov.TCPRouters != 1 {
		t.Errorf("Overview: %+v, %v; want at least the HTTP router and exactly the TCP one", ov, err)
	}
}

func TestTraefikRestartedAfterSIGKILL(t *testing.T) {
	s := newTraefikSetup(t)
	reg := prometheus.NewRegistry()
	p := s.processWith(t, nil, reg)
	first, _ := s.run(t, p)
	s.waitPing(t, 10*time.Second)
	wantProcessCounts(t, reg, processCounts{started: 1})

	killed := time.Now()
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The restart takes the backoff (100ms) and Traefik's start, which on
	// a loaded machine is seconds: the deadline only bounds a restart that
	// never comes.
	waitFor(t, 30*time.Second, "ping after SIGKILL", func() bool {
		pid := p.pid()
		if pid == 0 || pid == first {
			return false
		}
		resp, _, err := get(s.metrics+"/ping", "")
		return err == nil && resp.StatusCode == http.StatusOK
	})
	second := p.pid()
	killAtCleanup(t, second, p.argv)
	t.Logf("pid %d killed, pid %d answered ping %s later", first, second, time.Since(killed))
	wantProcessCounts(t, reg, processCounts{started: 2, crashed: 1})

	if err := p.Stop(context.Background()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	wantProcessCounts(t, reg, processCounts{started: 2, crashed: 1, stopped: 1})
}

func TestTraefikAdoptedByNextGateway(t *testing.T) {
	s := newTraefikSetup(t)
	p1 := s.process(t)
	pid, cancel := s.run(t, p1)
	s.waitPing(t, 10*time.Second)

	// The gateway exits; Traefik serves on.
	cancel()
	if !alive(pid) {
		t.Fatal("traefik did not outlive the gateway")
	}
	s.waitPing(t, time.Second)

	p2 := s.process(t)
	adopted, _ := s.run(t, p2)
	if adopted != pid {
		t.Fatalf("next gateway runs pid %d, want the running %d adopted", adopted, pid)
	}
	s.waitPing(t, time.Second)
}

func TestTraefikReplacedWhenStaticConfigChanges(t *testing.T) {
	s := newTraefikSetup(t)
	p1 := s.process(t)
	first, cancel := s.run(t, p1)
	s.waitPing(t, 10*time.Second)
	cancel()

	// Changed while no gateway ran.
	s.opts.LogLevel = "DEBUG"
	s.writeStatic(t)
	p2 := s.process(t)
	second, _ := s.run(t, p2)
	if second == first {
		t.Fatalf("pid %d adopted although the static configuration changed", first)
	}
	// Handed over: the predecessor drains, then exits.
	waitFor(t, 10*time.Second, "the replaced traefik's exit", func() bool { return !alive(first) })
	s.waitPing(t, 10*time.Second)

	// Changed under a running gateway.
	s.opts.LogLevel = "WARN"
	s.writeStatic(t)
	changed := time.Now()
	waitFor(t, 5*time.Second, "replacement after the change", func() bool {
		pid := p2.pid()
		return pid != 0 && pid != second
	})
	third := p2.pid()
	killAtCleanup(t, third, p2.argv)
	s.waitPing(t, 10*time.Second)
	t.Logf("static configuration changed, pid %d replaced by %d answering ping %s later", second, third, time.Since(changed))
}

func TestTraefikForeignPidFileIgnored(t *testing.T) {
	s := newTraefikSetup(t)
	sleep := exec.Command("sleep", "60")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = sleep.Process.Kill()
		_ = sleep.Wait()
	})
	config, err := os.ReadFile(s.configFile)
	if err != nil {
		t.Fatal(err)
	}
	rec := pidRecord{PID: sleep.Process.Pid, Hash: configHash(config, nil)}
	if err := writePidFile(filepath.Join(s.opts.StateDir, PIDFileName), rec); err != nil {
		t.Fatal(err)
	}

	p := s.process(t)
	pid, _ := s.run(t, p)
	if pid == sleep.Process.Pid {
		t.Fatal("adopted the sleep process")
	}
	s.waitPing(t, 10*time.Second)
	if !alive(sleep.Process.Pid) {
		t.Error("the sleep process was signalled")
	}
}

// Traefik gets ProcessConfig.Env and the few variables of the gateway's
// environment it needs, never the rest: before, it inherited the whole
// environment, the broker's password included.
func TestTraefikEnvironment(t *testing.T) {
	t.Setenv("GATEWAY_BROKER", "tcp://s3cret-broker@127.0.0.1:6379")
	t.Setenv("REDIS_PASSWORD", "s3cret-redis")
	t.Setenv("LEGO_DISABLE_CNAME_SUPPORT", "false")
	env := []string{"HTTPREQ_ENDPOINT=http://127.0.0.1:1", "HTTPREQ_USERNAME=traefik", "HTTPREQ_PASSWORD=its-own"}

	s := newTraefikSetup(t)
	p := s.processWithEnv(t, env)
	pid, _ := s.run(t, p)
	s.waitPing(t, 10*time.Second)

	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Fatal(err)
	}
	environ := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
	for _, kv := range append(env, "LEGO_DISABLE_CNAME_SUPPORT=false", "PATH="+os.Getenv("PATH")) {
		if !slices.Contains(environ, kv) {
			t.Errorf("traefik's environment lacks %s", kv)
		}
	}
	allowed := []string{"PATH", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR", "HTTPREQ_ENDPOINT", "HTTPREQ_USERNAME", "HTTPREQ_PASSWORD"}
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if strings.Contains(kv, "s3cret") || !slices.Contains(allowed, k) && !strings.HasPrefix(k, "LEGO_") {
			t.Errorf("traefik's environment holds %s", kv)
		}
	}
}

// TestTraefikServesGroupsAndAnchor guards the layout with the real Traefik:
// it accepts the anchor router under its reserved name (outside every wlID),
// serves a name proxy of a group file, whose router has an empty tls
// section, over HTTPS with the certificate a name proxy of the old shape
// (its own resolver and wildcard) is served with, and, while a conversion
// leaves a route both in its old file and in its group, serves it all the
// same.
func TestTraefikServesGroupsAndAnchor(t *testing.T) {
	s := newTraefikSetup(t)
	p := s.process(t)
	s.run(t, p)
	s.waitPing(t, 10*time.Second)
	api := API{Base: APIURL(s.opts.MetricsAddress), Client: testClient}

	backend := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "backend of "+r.Host)
	})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = backend.Serve(l) }()
	t.Cleanup(func() { _ = backend.Close() })
	url := "http://" + l.Addr().String()

	route := func(id, host string, tls *RouterTLSConfig) *Configuration {
		return &Configuration{HTTP: &HTTPConfiguration{
			Routers:  map[string]*Router{id: {EntryPoints: []string{EntryPointWebSecure}, Rule: "Host(`" + host + "`)", Service: id, TLS: tls}},
			Services: map[string]*Service{id: {LoadBalancer: &ServersLoadBalancer{Servers: []Server{{URL: url}}}}},
		}}
	}
	wildcard := &RouterTLSConfig{CertResolver: ResolverDNS, Domains: []Domain{{Main: "gw.test", SANs: []string{"*.gw.test"}}}}
	routes, err := OpenRoutes(filepath.Dir(s.opts.ProxyDir))
	if err != nil {
		t.Fatal(err)
	}
	if err := routes.PublishAnchor(testAnchor("gw.test")); err != nil {
		t.Fatal(err)
	}
	if err := routes.Publish("wl-new", route("wl-new", "new.gw.test", &RouterTLSConfig{})); err != nil {
		t.Fatal(err)
	}
	if err := routes.Publish("wl-old", route("wl-old", "old.gw.test", wildcard)); err != nil {
		t.Fatal(err)
	}
	// A conversion in the middle: the old file beside the group.
	if err := routes.Publish("wl-both", route("wl-both", "both.gw.test", &RouterTLSConfig{})); err != nil {
		t.Fatal(err)
	}
	s.writeRoutes(t, "wl-both", route("wl-both", "both.gw.test", wildcard))

	ctx := context.Background()
	waitFor(t, 10*time.Second, "the anchor and the routes served", func() bool {
		for _, name := range []string{AnchorName, "wl-new", "wl-old", "wl-both"} {
			if ok, err := api.RouterServed(ctx, name, false); err != nil || !ok {
				return false
			}
		}
		return true
	})

	certOf := func(host string) []byte {
		t.Helper()
		client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{ServerName: host, InsecureSkipVerify: true},
		}}
		defer client.CloseIdleConnections()
		req, err := http.NewRequest(http.MethodGet, s.websecure+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("HTTPS to %s: %v", host, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || string(body) != "backend of "+host {
			t.Fatalf("HTTPS to %s: %s %q", host, resp.Status, body)
		}
		return resp.TLS.PeerCertificates[0].Raw
	}
	old := certOf("old.gw.test")
	for _, host := range []string{"new.gw.test", "both.gw.test"} {
		if got := certOf(host); !slices.Equal(got, old) {
			t.Errorf("%s is served with another certificate than a name proxy of the old shape", host)
		}
	}
}

// cpuSeconds returns the CPU time process pid used so far.
func cpuSeconds(t testing.TB, pid int) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// utime and stime, in clock ticks (USER_HZ, 100 on Linux), are fields
	// 14 and 15, after the command in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	var ticks float64
	for _, s := range f[11:13] {
		n, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatal(err)
		}
		ticks += n
	}
	return ticks / 100
}

// TestTraefikConversionKeepsServing guards the upgrade from one file per
// route with the real Traefik: every route stays served while the folder is
// converted, and the hold file spares Traefik a full read of the folder at
// the removal of each old file (measured: 500 routes cost Traefik 52
// CPU-seconds without it, 0.4 with it; 10,000 routes 5 with it).
func TestTraefikConversionKeepsServing(t *testing.T) {
	const n = 1000
	s := newTraefikSetup(t)
	root := filepath.Dir(s.opts.ProxyDir)
	old, err := OpenRoutes(root)
	if err != nil {
		t.Fatal(err)
	}
	cfgs := map[string]*Configuration{}
	for i := range n {
		id := "wl-" + strconv.Itoa(i)
		// No resolver: the ACME provider, which cannot reach its CA here,
		// would cost more than the conversion.
		cfgs[id] = testRoute(id, 2*(i%2))
		writeLegacy(t, old, id, cfgs[id])
	}
	p := s.process(t)
	pid, _ := s.run(t, p)
	s.waitPing(t, 30*time.Second)
	api := API{Base: APIURL(s.opts.MetricsAddress), Client: testClient}
	ctx := context.Background()
	probe := []string{"wl-0", "wl-" + strconv.Itoa(n-1)}
	served := func() bool {
		for _, id := range probe {
			if ok, err := api.RouterServed(ctx, id, false); err != nil || !ok {
				return false
			}
		}
		return true
	}
	waitFor(t, 30*time.Second, "the old files served", served)

	routes, got := load(t, root)
	if len(got) != n {
		t.Fatalf("Load gave %d routes", len(got))
	}
	stop := make(chan struct{})
	gaps := make(chan int)
	go func() {
		gap := 0
		for {
			select {
			case <-stop:
				gaps <- gap
				return
			case <-time.After(20 * time.Millisecond):
			}
			if !served() {
				gap++
			}
		}
	}()
	cpu := cpuSeconds(t, pid)
	start := time.Now()
	files, err := routes.Importables()
	if err != nil {
		t.Fatal(err)
	}
	if err := routes.KeepImported(files); err != nil {
		t.Fatal(err)
	}
	if changed, err := routes.Reset(cfgs); err != nil || changed != NumGroups {
		t.Fatalf("Reset = %d, %v; want the %d group files written", changed, err, NumGroups)
	}
	if err := routes.ImportDone(files); err != nil {
		t.Fatalf("ImportDone: %v", err)
	}
	took := time.Since(start)
	// Traefik is done once it uses less than a fifth of a core for a
	// second (the probes above cost it a few percent).
	last, since := cpuSeconds(t, pid), time.Now()
	waitFor(t, 5*time.Minute, "traefik idle after the conversion", func() bool {
		if time.Since(since) < time.Second {
			return false
		}
		now := cpuSeconds(t, pid)
		idle := (now-last)/time.Since(since).Seconds() < 0.2
		last, since = now, time.Now()
		return idle
	})
	close(stop)
	if g := <-gaps; g > 0 {
		t.Errorf("the routes were not served %d times during the conversion", g)
	}
	used := last - cpu
	t.Logf("%d routes converted in %s; Traefik used %.2f CPU-seconds", n, took.Round(time.Millisecond), used)
	if used > 20 {
		t.Errorf("Traefik used %.1f CPU-seconds on the conversion of %d routes, want a few (each old file removed cost it a full read?)", used, n)
	}
	if entries, _ := os.ReadDir(s.opts.ProxyDir); len(entries) != NumGroups {
		t.Errorf("the folder holds %d entries, want the %d group files", len(entries), NumGroups)
	}
	waitFor(t, 10*time.Second, "the groups served", served)
}
