//go:build e2e

// Package e2e runs the gateway binary end to end: a real redis-server as the
// zbus broker, the real Traefik the gateway supervises, backends and a DNS
// server of the test's own, all on loopback. Run with
//
//	TRAEFIK_BIN=$(scripts/install-traefik.sh) go test -tags e2e -count=1 ./test/e2e/
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/threefoldtech/gateway/pkg/gateway"
	"github.com/threefoldtech/gateway/test/harness"
)

// routeTimeout bounds the wait for a route change to reach Traefik. Measured
// at well under a second with a 50ms throttle; the margin is for a loaded CI.
const routeTimeout = 10 * time.Second

// env is one gateway with its broker, its resolver and clients that reach
// Traefik's entry points.
type env struct {
	redis *harness.Redis
	dns   *harness.DNSServer
	gw    *harness.Gateway
	// https sends every request to the websecure entry point.
	https *http.Client
	// web sends every request to the plain HTTP entry point.
	web *http.Client
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, harness.GatewayOptions{})
}

// newEnvWith is newEnv with a gateway started with opts; Redis and Resolver
// are always the env's own.
func newEnvWith(t *testing.T, opts harness.GatewayOptions) *env {
	t.Helper()
	r := harness.StartRedis(t)
	d := harness.StartDNS(t)
	opts.Redis, opts.Resolver = r, d.Addr
	gw := harness.StartGateway(t, opts)
	return &env{
		redis: r,
		dns:   d,
		gw:    gw,
		https: harness.HTTPSClient(gw.WebSecureAddr),
		web:   harness.HTTPClient(gw.WebAddr),
	}
}

// answer is an HTTP answer as the tests look at it.
type answer struct {
	status  int
	backend string
	body    string
}

// request sends method https://host+path through websecure.
func (e *env) request(ctx context.Context, method, host, path string, body []byte) (answer, error) {
	req, err := http.NewRequestWithContext(ctx, method, "https://"+host+path, bytes.NewReader(body))
	if err != nil {
		return answer{}, err
	}
	if body == nil {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	resp, err := e.https.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return answer{}, fmt.Errorf("reading the answer of %s: %w", host, err)
	}
	return answer{status: resp.StatusCode, backend: resp.Header.Get(harness.HeaderBackend), body: string(b)}, nil
}

// get sends GET https://host+path through websecure.
func (e *env) get(host, path string) (answer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return e.request(ctx, http.MethodGet, host, path, nil)
}

// getOK sends GET https://host/ through websecure and returns the backend
// that answered; an answer other than 200 is an error.
func (e *env) getOK(host string) (string, error) {
	a, err := e.get(host, "/")
	if err != nil {
		return "", err
	}
	if a.status != http.StatusOK {
		return a.backend, fmt.Errorf("status %d from backend %q", a.status, a.backend)
	}
	return a.backend, nil
}

// waitHTTP waits until host answers 200 from backend over HTTPS.
func (e *env) waitHTTP(t testing.TB, host, backend string) {
	t.Helper()
	harness.WaitFor(t, routeTimeout, "https://"+host+" to reach "+backend, func() error {
		a, err := e.get(host, "/")
		if err != nil {
			return err
		}
		if a.status != http.StatusOK || a.backend != backend {
			return fmt.Errorf("status %d from backend %q", a.status, a.backend)
		}
		return nil
	})
}

// getFrom sends GET https://host/ with client and wants a 200 from backend.
func getFrom(ctx context.Context, client *http.Client, host, backend string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+host+"/", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if got := resp.Header.Get(harness.HeaderBackend); resp.StatusCode != http.StatusOK || got != backend {
		return fmt.Errorf("%s: status %d from backend %q", host, resp.StatusCode, got)
	}
	return nil
}

// tlsGet opens a TLS connection with SNI host to websecure and sends GET /.
func (e *env) tlsGet(host string) (harness.TLSAnswer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return harness.TLSGet(ctx, e.gw.WebSecureAddr, host, "/")
}

// waitPassthrough waits until a TLS connection with SNI host reaches backend.
func (e *env) waitPassthrough(t testing.TB, host, backend string) {
	t.Helper()
	harness.WaitFor(t, routeTimeout, "TLS to "+host+" to reach "+backend, func() error {
		a, err := e.tlsGet(host)
		if err != nil {
			return err
		}
		if a.Backend != backend {
			return fmt.Errorf("status %d from backend %q", a.Status, a.Backend)
		}
		return nil
	})
}

// findRoute returns the route of wlID in List.
func (e *env) findRoute(t testing.TB, wlID string) (gateway.Proxy, bool) {
	t.Helper()
	list, err := e.gw.List()
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	i := slices.IndexFunc(list, func(p gateway.Proxy) bool { return p.WorkloadID == wlID })
	if i < 0 {
		return gateway.Proxy{}, false
	}
	return list[i], true
}

// sseEvents sends the number of every "data: <n>" event of body to events (-1
// for one that is not a number) until body ends or ctx does, then closes
// events.
func sseEvents(ctx context.Context, body io.Reader, events chan<- int) {
	defer close(events)
	sc := bufio.NewScanner(body)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			n = -1
		}
		select {
		case events <- n:
		case <-ctx.Done():
			return
		}
	}
}
