//go:build integration

package traefik

// These tests run the real Traefik: TRAEFIK_BIN or traefik on PATH, built by
// scripts/install-traefik.sh. Run them with
//
//	TRAEFIK_BIN=$(scripts/install-traefik.sh) go test -tags integration ./pkg/traefik

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

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
	p, err := NewProcess(ProcessConfig{
		Binary:      traefikBinary(t),
		ConfigFile:  s.configFile,
		StateDir:    s.opts.StateDir,
		Env:         env,
		StopTimeout: 5 * time.Second,
		Logger:      testLogger(t),
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

// waitPing waits for /ping on the metrics entry point to answer 200 and
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
	if _, err := ScrapeServiceBytes(context.Background(), testClient, s.metrics+"/metrics"); err != nil {
		t.Errorf("ScrapeServiceBytes: %v", err)
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

func TestTraefikCountsServiceBytes(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		switch r.URL.Path {
		case "/big":
			_, _ = w.Write([]byte(strings.Repeat("x", 1000)))
		case "/probe":
			_, _ = w.Write([]byte("ok"))
		default:
			http.NotFound(w, r) // "404 page not found\n", 19 bytes
		}
	}))
	t.Cleanup(backend.Close)

	s := newTraefikSetup(t)
	p := s.process(t)
	s.run(t, p)
	s.waitPing(t, 10*time.Second)

	route := func(host string) *Router {
		return &Router{EntryPoints: []string{EntryPointWeb}, Rule: "Host(`" + host + "`)", Service: strings.Split(host, ".")[0]}
	}
	svc := &Service{LoadBalancer: &ServersLoadBalancer{Servers: []Server{{URL: backend.URL}}}}
	s.writeRoutes(t, "routes", &Configuration{HTTP: &HTTPConfiguration{
		Routers:  map[string]*Router{"app": route("app.test"), "probe": route("probe.test")},
		Services: map[string]*Service{"app": svc, "probe": svc},
	}})
	written := time.Now()
	waitFor(t, 5*time.Second, "route live", func() bool {
		resp, body, err := get(s.web+"/probe", "probe.test")
		return err == nil && resp.StatusCode == http.StatusOK && string(body) == "ok"
	})
	t.Logf("route live %s after its file was written", time.Since(written))

	// app: 3 GET of 1000 bytes, 1 POST of 500 bytes answered 1000, 1 POST
	// of 20 bytes answered 404.
	for range 3 {
		if resp, _, err := get(s.web+"/big", "app.test"); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /big: %v %v", resp, err)
		}
	}
	post := func(path string, n int) {
		req, _ := http.NewRequest(http.MethodPost, s.web+path, strings.NewReader(strings.Repeat("y", n)))
		req.Host = "app.test"
		resp, err := testClient.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	post("/big", 500)
	post("/missing", 20)

	wantReq, wantResp := 520.0, 4019.0
	var got ServiceBytes
	waitFor(t, 3*time.Second, "app's bytes counted", func() bool {
		var err error
		got, err = ScrapeServiceBytes(context.Background(), testClient, s.metrics+"/metrics")
		return err == nil && got.Requests["app"] == wantReq && got.Responses["app"] == wantResp
	})
	if got.Responses["probe"] < 2 {
		t.Errorf("probe responses %v, want at least 2 bytes", got.Responses["probe"])
	}
	for name := range got.Responses {
		if strings.Contains(name, "@") {
			t.Errorf("service %q of another provider counted", name)
		}
	}

	if updateGolden() {
		resp, body, err := get(s.metrics+"/metrics", "")
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /metrics: %v %v", resp, err)
		}
		if err := os.WriteFile(filepath.Join("testdata", "metrics.txt"), body, 0o644); err != nil {
			t.Fatal(err)
		}
		sb, _ := ParseServiceBytes(strings.NewReader(string(body)))
		t.Logf("captured testdata/metrics.txt: requests %v responses %v", sb.Requests, sb.Responses)
	}
}

func TestTraefikRestartedAfterSIGKILL(t *testing.T) {
	s := newTraefikSetup(t)
	p := s.process(t)
	first, _ := s.run(t, p)
	s.waitPing(t, 10*time.Second)

	killed := time.Now()
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "ping after SIGKILL", func() bool {
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
	if alive(first) {
		t.Errorf("replaced traefik %d still runs", first)
	}
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
