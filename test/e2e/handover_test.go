//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"github.com/threefoldtech/gateway/test/harness"
)

// TestTraefikHandover restarts the gateway with another Traefik flag, as an
// upgrade does, under continuous HTTPS and passthrough traffic: the new
// gateway hands Traefik over to a successor with the new static
// configuration on the same sockets. Not one request fails, no connection is
// refused, and an established websocket keeps echoing through the
// predecessor, which takes no new connection, well past the 2s its drain
// lasted before and across another restart of the gateway; once the client
// closes it, the predecessor exits.
func TestTraefikHandover(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	web := harness.StartHTTPBackend(t, "handover")
	tb := harness.StartTLSBackend(t, "handover-tls", "handover-tls."+e.gw.Domain)
	r := faultRoutes{
		http: e.gw.SetNamedProxy(t, "wl-handover", "handover", []string{web.URL()}, false),
		tls:  e.gw.SetNamedProxy(t, "wl-handover-tls", "handover-tls", []string{tb.Addr}, true),
	}
	e.waitHTTP(t, r.http, "handover")
	e.waitPassthrough(t, r.tls, "handover-tls")
	first := e.gw.TraefikPID()

	// The websocket, open across the handover.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ws, err := harness.DialWebsocket(ctx, e.gw.WebSecureAddr, r.http, harness.PathWebsocket)
	if err != nil {
		t.Fatalf("websocket: %v", err)
	}
	defer ws.Close()
	var lastEcho atomic.Int64
	wsEnd := make(chan error, 1)
	go func() {
		msg := []byte("handover")
		for {
			var back []byte
			err := websocket.Message.Send(ws, msg)
			if err == nil {
				err = websocket.Message.Receive(ws, &back)
			}
			if err != nil {
				wsEnd <- err
				return
			}
			lastEcho.Store(time.Now().UnixNano())
			select {
			case <-ctx.Done():
				wsEnd <- nil
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()

	// Load: HTTPS on new connections and on kept-alive ones, TLS passed
	// through on new connections.
	var (
		ok, failed atomic.Int64
		mu         sync.Mutex
		failures   []string
		slowest    time.Duration
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			client := harness.HTTPSClient(e.gw.WebSecureAddr)
			client.Transport.(*http.Transport).DisableKeepAlives = i%3 == 0
			defer client.CloseIdleConnections()
			for {
				select {
				case <-stop:
					return
				default:
				}
				began := time.Now()
				err := handoverRequest(e, r, client, i%3 == 2)
				took := time.Since(began)
				mu.Lock()
				slowest = max(slowest, took)
				if err != nil {
					failed.Add(1)
					if len(failures) < 10 {
						failures = append(failures, time.Now().Format("15:04:05.000")+" "+err.Error())
					}
				} else {
					ok.Add(1)
				}
				mu.Unlock()
			}
		})
	}

	time.Sleep(500 * time.Millisecond)
	changed := time.Now()
	e.gw.Proc.Stop()
	e.gw.RestartWith(t, "--traefik.readtimeout=59s")
	harness.WaitFor(t, 60*time.Second, "a successor traefik", func() error {
		if pid := e.gw.TraefikPID(); pid == 0 || pid == first {
			return fmt.Errorf("traefik pid %d", pid)
		}
		return nil
	})
	harness.WaitFor(t, 30*time.Second, "the predecessor draining", func() error {
		return draining(e.gw.PIDFile(), first)
	})
	retired := time.Now()
	handedOver := time.Since(changed)
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()

	t.Logf("traefik %d → %d, %s from the gateway's stop to the predecessor draining: %d requests, %d failed, slowest %s",
		first, e.gw.TraefikPID(), handedOver.Round(time.Millisecond), ok.Load(), failed.Load(), slowest.Round(time.Millisecond))
	if failed.Load() > 0 {
		t.Errorf("%d requests failed during the handover:\n%v", failed.Load(), failures)
	}
	if ok.Load() < 200 {
		t.Errorf("only %d requests answered: the load did not run", ok.Load())
	}

	// The websocket echoes on past the drain of before (2s), and across a
	// restart of the gateway, which leaves the draining predecessor alone.
	waitEcho := func(after time.Time) {
		t.Helper()
		harness.WaitFor(t, time.Until(after)+15*time.Second, "an echo after "+after.Format("15:04:05.000"), func() error {
			select {
			case err := <-wsEnd:
				wsEnd <- err
				t.Fatalf("the websocket ended: %v", err)
			default:
			}
			if last := time.Unix(0, lastEcho.Load()); !last.After(after) {
				return fmt.Errorf("last echo at %s", last.Format("15:04:05.000"))
			}
			return nil
		})
	}
	waitEcho(retired.Add(4 * time.Second))
	e.gw.Proc.Stop()
	restarted := time.Now()
	e.gw.Restart(t)
	waitEcho(restarted.Add(2 * time.Second))
	if !harness.ProcessAlive(first) {
		t.Fatalf("the predecessor %d exited while its websocket was open", first)
	}
	if err := draining(e.gw.PIDFile(), first); err != nil {
		t.Errorf("after the restart: %v", err)
	}

	// Closed by the client, the last connection of the predecessor: it exits.
	cancel()
	ws.Close()
	harness.WaitFor(t, 15*time.Second, "the predecessor's exit", func() error {
		if harness.ProcessAlive(first) {
			return fmt.Errorf("pid %d still runs", first)
		}
		return nil
	})
}

// draining tells whether the pidfile at path names pid as a Traefik handed
// over that drains its connections.
func draining(path string, pid int) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var rec struct {
		Draining []struct {
			PID int `json:"pid"`
		} `json:"draining"`
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	for _, d := range rec.Draining {
		if d.PID == pid {
			return nil
		}
	}
	return fmt.Errorf("the pidfile names no draining pid %d: %s", pid, b)
}

// handoverRequest sends one request through r: HTTPS through client, or,
// with passthrough, a TLS connection of its own to the passthrough route.
func handoverRequest(e *env, r faultRoutes, client *http.Client, passthrough bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if passthrough {
		a, err := harness.TLSGet(ctx, e.gw.WebSecureAddr, r.tls, "/")
		if err != nil {
			return err
		}
		if a.Status != http.StatusOK || a.Backend != "handover-tls" {
			return fmt.Errorf("%s: status %d from backend %q", r.tls, a.Status, a.Backend)
		}
		return nil
	}
	return getFrom(ctx, client, r.http, "handover")
}
