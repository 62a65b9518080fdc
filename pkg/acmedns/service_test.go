package acmedns

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
)

// testServiceConfig returns a ServiceConfig on loopback ports the system
// picks, with its credentials in a temporary folder.
func testServiceConfig(tb testing.TB) ServiceConfig {
	tb.Helper()
	return ServiceConfig{
		Domain:          testDomain,
		Address:         "127.0.0.1:0",
		APIAddress:      "127.0.0.1:0",
		CredentialsFile: filepath.Join(tb.TempDir(), "httpreq.credentials"),
		Logger:          zerolog.Nop(),
	}
}

// startService runs a Service built from cfg until the test ends and
// returns it once both its servers listen.
func startService(tb testing.TB, cfg ServiceConfig) *Service {
	tb.Helper()
	svc, err := NewService(cfg)
	if err != nil {
		tb.Fatalf("NewService: %v", err)
	}
	done := make(chan struct{})
	var runErr error
	go func() {
		defer close(done)
		runErr = svc.Run(context.Background())
	}()
	tb.Cleanup(func() {
		if err := svc.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
		<-done
		if runErr != nil {
			tb.Errorf("Run: %v", runErr)
		}
	})
	select {
	case <-svc.Ready():
	case <-done:
		tb.Fatalf("Run returned before ready: %v", runErr)
	case <-time.After(waitTimeout):
		tb.Fatal("service not ready in time")
	}
	return svc
}

// envMap returns the KEY=value lines of env as a map.
func envMap(tb testing.TB, env []string) map[string]string {
	tb.Helper()
	m := make(map[string]string, len(env))
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			tb.Fatalf("environment entry %q is not KEY=value", kv)
		}
		m[k] = v
	}
	return m
}

// TestServiceServesWhatTraefikPresents plays Traefik with what the Service
// hands out: present a value at Env's endpoint with Env's credentials, and
// see it at Resolvers, as lego does before it asks the CA to validate.
func TestServiceServesWhatTraefikPresents(t *testing.T) {
	svc := startService(t, testServiceConfig(t))
	env := envMap(t, svc.Env())

	// With port 0 the endpoint and the resolver carry the bound ports.
	if strings.HasSuffix(env["HTTPREQ_ENDPOINT"], ":0") {
		t.Fatalf("endpoint %q still has port 0 after Ready", env["HTTPREQ_ENDPOINT"])
	}
	resolvers := svc.Resolvers()
	if len(resolvers) != 1 || resolvers[0] != svc.dns.Addr() {
		t.Fatalf("resolvers %q, want the bound address %q", resolvers, svc.dns.Addr())
	}

	req, err := http.NewRequest(http.MethodPost, env["HTTPREQ_ENDPOINT"]+"/present", bytes.NewBufferString(body(testZone, acmeValue)))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(env["HTTPREQ_USERNAME"], env["HTTPREQ_PASSWORD"])
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: waitTimeout}).Do(req)
	if err != nil {
		t.Fatalf("POST /present: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /present: status %d", resp.StatusCode)
	}

	answer := exchange(t, "udp", resolvers[0], question(testZone, dns.TypeTXT))
	if got := txtValues(answer.Answer); !slices.Equal(got, []string{acmeValue}) {
		t.Fatalf("TXT at %s: %q, want %q", resolvers[0], got, acmeValue)
	}
}

// TestServiceEnv pins what Traefik's lego is started with.
func TestServiceEnv(t *testing.T) {
	cfg := testServiceConfig(t)
	cfg.APIAddress = "" // the default
	svc, err := NewService(cfg)
	if err != nil {
		t.Fatal(err)
	}
	user, pass, err := loadCredentials(cfg.CredentialsFile)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"HTTPREQ_ENDPOINT=http://" + DefaultAPIAddress,
		"HTTPREQ_USERNAME=" + user,
		"HTTPREQ_PASSWORD=" + pass,
		"HTTPREQ_POLLING_INTERVAL=1",
		"HTTPREQ_PROPAGATION_TIMEOUT=60",
		"LEGO_DISABLE_CNAME_SUPPORT=true",
	}
	if got := svc.Env(); !slices.Equal(got, want) {
		t.Errorf("Env() = %q, want %q", got, want)
	}

	// A restarted gateway must keep serving the Traefik started with the
	// first credentials.
	again, err := NewService(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := again.Env(); !slices.Equal(got, want) {
		t.Errorf("Env() of a second service on the same file = %q, want %q", got, want)
	}
	if fi, err := os.Stat(cfg.CredentialsFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("credentials file: %v, %v; want mode 0600", fi, err)
	}
}

func TestServiceResolvers(t *testing.T) {
	tests := []struct {
		name    string
		address string
		want    string
	}{
		{name: "default listens on all addresses: asked on IPv4 loopback", address: "", want: "127.0.0.1:53"},
		{name: "all IPv4 addresses: asked on IPv4 loopback", address: "0.0.0.0:5353", want: "127.0.0.1:5353"},
		{name: "all IPv6 addresses: asked on IPv6 loopback", address: "[::]:53", want: "[::1]:53"},
		{name: "one address: asked there", address: "192.0.2.1:53", want: "192.0.2.1:53"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testServiceConfig(t)
			cfg.Address = tt.address
			svc, err := NewService(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := svc.Resolvers(); !slices.Equal(got, []string{tt.want}) {
				t.Errorf("Resolvers() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestNewServiceValidates(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(*ServiceConfig)
		wantErr string
	}{
		{name: "missing credentials file", mod: func(c *ServiceConfig) { c.CredentialsFile = "" }, wantErr: "credentials file is required"},
		{name: "bad domain", mod: func(c *ServiceConfig) { c.Domain = "localhost" }, wantErr: "two labels"},
		{name: "dns address without port", mod: func(c *ServiceConfig) { c.Address = "127.0.0.1" }, wantErr: "missing port"},
		{name: "api reachable from other hosts", mod: func(c *ServiceConfig) { c.APIAddress = "0.0.0.0:8053" }, wantErr: "not a loopback address"},
		{name: "negative tcp limit", mod: func(c *ServiceConfig) { c.MaxTCPConns = -1 }, wantErr: "max tcp connections -1 is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testServiceConfig(t)
			tt.mod(&cfg)
			if _, err := NewService(cfg); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("NewService error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestServiceTCPLimits guards that the limits of a ServiceConfig reach its
// DNS server.
func TestServiceTCPLimits(t *testing.T) {
	cfg := testServiceConfig(t)
	cfg.MaxTCPConns, cfg.MaxTCPConnsPerSource = 12, 3
	svc, err := NewService(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if want := (tcpLimits{conns: 12, perSource: 3}); svc.dns.tcpLimits != want {
		t.Errorf("dns server limits %+v, want %+v", svc.dns.tcpLimits, want)
	}
}

func TestServiceLifecycle(t *testing.T) {
	t.Run("ending the context stops both servers", func(t *testing.T) {
		// A loopback address of this test's own, so that no other
		// test or process listening on 127.0.0.1:0 takes a port in
		// the moment between its release and the check below.
		cfg := testServiceConfig(t)
		own := privateLoopback()
		cfg.Address, cfg.APIAddress = net.JoinHostPort(own, "0"), net.JoinHostPort(own, "0")
		svc, err := NewService(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		errs := make(chan error, 1)
		go func() { errs <- svc.Run(ctx) }()
		<-svc.Ready()
		dnsAddr, apiAddr := svc.dns.Addr(), svc.api.Addr()
		cancel()
		if err := waitRun(t, errs); err != nil {
			t.Errorf("Run: %v", err)
		}
		for _, addr := range []string{dnsAddr, apiAddr} {
			l, err := net.Listen("tcp", addr)
			if err != nil {
				t.Errorf("port %s not released: %v", addr, err)
				continue
			}
			l.Close()
		}
		if err := svc.Close(); err != nil {
			t.Errorf("Close after Run: %v", err)
		}
	})
	t.Run("Close before Run makes Run return at once", func(t *testing.T) {
		svc, err := NewService(testServiceConfig(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := svc.Close(); err != nil {
			t.Fatal(err)
		}
		errs := make(chan error, 1)
		go func() { errs <- svc.Run(context.Background()) }()
		if err := waitRun(t, errs); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	t.Run("a failing part stops the other", func(t *testing.T) {
		// Half a service would take DNS queries for values nobody can
		// present.
		taken, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { taken.Close() })
		cfg := testServiceConfig(t)
		cfg.APIAddress = taken.Addr().String()
		svc, err := NewService(cfg)
		if err != nil {
			t.Fatal(err)
		}
		errs := make(chan error, 1)
		go func() { errs <- svc.Run(context.Background()) }()
		if err := waitRun(t, errs); err == nil || !strings.Contains(err.Error(), "running api server") {
			t.Errorf("Run error %v, want the api server's", err)
		}
		select {
		case <-svc.Ready():
			t.Error("Ready closed though the api server never listened")
		default:
		}
	})
}

// logLines is a zerolog writer that hands each line to the test.
type logLines chan map[string]any

func (l logLines) Write(p []byte) (int, error) {
	var line map[string]any
	if err := json.Unmarshal(p, &line); err != nil {
		return 0, err
	}
	select {
	case l <- line:
	default: // the test reads only the lines it waits for
	}
	return len(p), nil
}

// TestServiceChecksDelegationOnceListening guards the order of Run: a
// resolver that follows the delegation asks the service's own DNS server,
// so a check made before it listens fails with a misleading error. The
// outcome is only logged, so the test reads the log.
func TestServiceChecksDelegationOnceListening(t *testing.T) {
	var dnsServer atomic.Pointer[Server] // set once the service is built
	resolver := startFakeResolver(t, &fakeResolver{
		records: []string{"gw.example. 3600 IN A 127.0.0.1"},
		forward: func() string {
			if s := dnsServer.Load(); s != nil {
				return s.Addr()
			}
			return ""
		},
	})
	lines := make(logLines, 64)
	cfg := testServiceConfig(t)
	cfg.Resolver = resolver
	cfg.NodeIPs = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	cfg.Logger = zerolog.New(lines)
	svc, err := NewService(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dnsServer.Store(svc.dns)
	errs := make(chan error, 1)
	go func() { errs <- svc.Run(context.Background()) }()
	t.Cleanup(func() {
		svc.Close()
		if err := <-errs; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	deadline := time.After(waitTimeout)
	for {
		select {
		case line := <-lines:
			msg, _ := line["message"].(string)
			if !strings.Contains(msg, "delegation") {
				continue
			}
			if line["level"] != "info" || msg != "_acme-challenge delegation points at this node" {
				t.Fatalf("delegation check logged %v, want that it points at this node", line)
			}
			return
		case <-deadline:
			t.Fatal("no delegation check logged in time")
		}
	}
}

// privateLoopback returns a random address of 127.0.0.0/8 other than
// 127.0.0.1, so that a test can bind ports no other test binds.
func privateLoopback() string {
	return fmt.Sprintf("127.%d.%d.%d", 1+rand.IntN(254), rand.IntN(256), 1+rand.IntN(254))
}
