package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/threefoldtech/zbus"

	"github.com/threefoldtech/gateway/pkg/gateway/stubs"
	"github.com/threefoldtech/gateway/test/harness"
)

// Stack settings.
const (
	// benchDomain is the gateway domain of the stack; name routes live
	// under it.
	benchDomain = "gw.bench"
	// readyTimeout bounds the wait for the gateway and Traefik to answer
	// after a start.
	readyTimeout = 60 * time.Second
	// callTimeout bounds every zbus call.
	callTimeout = 30 * time.Second
	// reloadsMetric counts the configurations Traefik applied.
	reloadsMetric = "traefik_config_reloads_total"
)

// tools are the programs the stack runs.
type tools struct {
	gateway, traefik, redis string
}

// stack is a local node on test/harness: a redis-server, two backends that
// answer 200, a DNS server that answers the gateway's delegation check at
// once, and the gateway with the Traefik it runs, on one state folder that
// lives across gateway restarts.
type stack struct {
	tools tools
	work  string
	root  string
	logf  func(string, ...any)
	tb    *benchTB

	redis *harness.Redis
	// backendURL is the backend as routes name it; backendURL2 is a second
	// one, the zbus measurement's routes switch between the two.
	backendURL, backendURL2 string
	client                  zbus.Client
	stub                    *stubs.GatewayStub
	dns                     *harness.DNSServer

	gw *gatewayRun
}

// gatewayRun is the gateway started by the stack; its benchTB stops it, the
// Traefiks it ran and its metering table.
type gatewayRun struct {
	*harness.Gateway
	tb *benchTB
	// traefik is the PID of its Traefik, 0 if unmanaged.
	traefik int
}

// newStack starts redis-server, the backends and the DNS server in work.
// close stops them.
func newStack(t tools, work string, logf func(string, ...any)) (*stack, error) {
	s := &stack{tools: t, work: work, root: filepath.Join(work, "root"), logf: logf, tb: newTB("stack", work, logf)}
	if err := os.MkdirAll(s.root, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", s.root, err)
	}
	err := catch(func() {
		s.redis = harness.StartRedis(s.tb)
		s.backendURL = harness.StartHTTPBackend(s.tb, "bench").URL()
		s.backendURL2 = harness.StartHTTPBackend(s.tb, "bench2").URL()
		s.dns = harness.StartDNS(s.tb)
	})
	if err == nil {
		s.client, err = zbus.NewRedisClient(s.redis.URL())
		s.stub = stubs.NewGatewayStub(s.client)
	}
	if err != nil {
		s.close()
		return nil, fmt.Errorf("starting the stack: %w", err)
	}
	return s, nil
}

// startGateway starts the gateway with the given Traefik throttle; managed
// false runs it without Traefik (to fill the folder quickly). It returns once
// the gateway answers on zbus and, when managed, Traefik answers /ping.
func (s *stack) startGateway(ctx context.Context, throttle time.Duration, managed bool) error {
	if s.gw != nil {
		return fmt.Errorf("starting the gateway: one is running")
	}
	g := &gatewayRun{tb: newTB("gateway", s.work, s.logf)}
	err := catch(func() {
		g.Gateway = harness.StartGateway(g.tb, harness.GatewayOptions{
			Redis: s.redis, Root: s.root, Domain: benchDomain, Throttle: throttle,
			Traefik: s.tools.traefik, Binary: s.tools.gateway, Unmanaged: !managed, ReadyTimeout: readyTimeout,
			// The test DNS server answers the delegation check the gateway
			// runs at start at once, instead of a timeout.
			Resolver: s.dns.Addr,
			// /debug/pprof on the loopback entry point, for the profile;
			// the default log level, as a node runs.
			Extra: []string{"--traefik.debug", "--log.level=info"},
		})
	})
	s.gw = g
	if err == nil && managed {
		err = s.findTraefik(ctx)
	}
	if err != nil {
		s.stopGateway()
		return err
	}
	return nil
}

// findTraefik waits for the pidfile to name a running Traefik.
func (s *stack) findTraefik(ctx context.Context) error {
	return harness.PollEvery(ctx, readyTimeout, 20*time.Millisecond, func() error {
		if s.gw.traefik = s.gw.TraefikPID(); s.gw.traefik == 0 {
			return fmt.Errorf("no running traefik in %s", s.gw.PIDFile())
		}
		return nil
	})
}

// restartGateway stops the gateway process alone (SIGTERM) and starts it
// again with the same command line and extra appended, so that the new one
// adopts the running Traefik (its traffic goes on) and runs its start again:
// the metering table and counters of every route are made anew. adopted
// tells whether the Traefik that serves after the restart is the one from
// before.
func (s *stack) restartGateway(ctx context.Context, extra ...string) (adopted bool, err error) {
	g := s.gw
	if g == nil {
		return false, fmt.Errorf("restarting the gateway: none is running")
	}
	old := g.traefik
	g.Proc.Stop()
	if err := catch(func() { g.RestartWith(g.tb, extra...) }); err != nil {
		return false, err
	}
	if err := s.findTraefik(ctx); err != nil {
		return false, err
	}
	return g.traefik == old, nil
}

// stopGateway stops the gateway, then every Traefik it ran, by PID, and
// removes its metering table.
func (s *stack) stopGateway() {
	if s.gw != nil {
		s.gw.tb.close()
		s.gw = nil
	}
}

// close stops everything the stack started. It is safe to call more than
// once and on a half-built stack.
func (s *stack) close() {
	s.stopGateway()
	s.tb.close()
}

// call runs fn, which calls the stub, with a deadline, and turns the stub's
// panic on a transport error into an error.
func call(ctx context.Context, fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	return harness.Call(func() error { return fn(ctx) })
}

func (s *stack) list(ctx context.Context) (n int, err error) {
	err = call(ctx, func(ctx context.Context) error {
		l, err := s.stub.List(ctx)
		n = len(l)
		return err
	})
	return n, err
}

func (s *stack) metrics(ctx context.Context) error {
	return call(ctx, func(ctx context.Context) error { _, err := s.stub.Metrics(ctx); return err })
}

func (s *stack) setNamed(ctx context.Context, wlID, prefix string) error {
	return s.setNamedTo(ctx, wlID, prefix, s.backendURL, false)
}

// setNamedTo is setNamed with the backend and mode named.
func (s *stack) setNamedTo(ctx context.Context, wlID, prefix, backend string, passthrough bool) error {
	return call(ctx, func(ctx context.Context) error {
		if _, err := s.stub.SetNamedProxy(ctx, wlID, prefix, []string{backend}, passthrough); err != nil {
			return fmt.Errorf("SetNamedProxy(%q, %q, %q, %t): %w", wlID, prefix, backend, passthrough, err)
		}
		return nil
	})
}

func (s *stack) deleteNamed(ctx context.Context, wlID string) error {
	return call(ctx, func(ctx context.Context) error {
		if err := s.stub.DeleteNamedProxy(ctx, wlID); err != nil {
			return fmt.Errorf("DeleteNamedProxy(%q): %w", wlID, err)
		}
		return nil
	})
}

// apiClient asks Traefik's API and metrics endpoint.
var apiClient = &http.Client{Timeout: 10 * time.Second}

// getTraefik GETs path of the Traefik whose metrics entry point is addr.
func getTraefik(ctx context.Context, addr, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := apiClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("asking traefik for %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("asking traefik for %s: %s", path, resp.Status)
	}
	return resp, nil
}

// httpRouters asks the API of the Traefik at addr how many HTTP routers it
// runs, its own included.
func httpRouters(ctx context.Context, addr string) (int, error) {
	resp, err := getTraefik(ctx, addr, "/api/overview")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var o struct {
		HTTP struct {
			Routers struct {
				Total int `json:"total"`
			} `json:"routers"`
		} `json:"http"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&o); err != nil {
		return 0, fmt.Errorf("reading traefik's /api/overview: %w", err)
	}
	return o.HTTP.Routers.Total, nil
}

// traefikReloads reads traefik_config_reloads_total from the metrics of the
// Traefik at addr.
func traefikReloads(ctx context.Context, addr string) (float64, error) {
	resp, err := getTraefik(ctx, addr, "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("reading traefik's metrics: %w", err)
	}
	fam, ok := fams[reloadsMetric]
	if !ok || len(fam.GetMetric()) == 0 {
		return 0, fmt.Errorf("no %s in traefik's metrics", reloadsMetric)
	}
	var sum float64
	for _, m := range fam.GetMetric() {
		sum += m.GetCounter().GetValue()
	}
	return sum, nil
}
