//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
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
// refused, and an established websocket keeps echoing until the
// predecessor's drain ends, then is closed cleanly.
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
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
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
	harness.WaitFor(t, 30*time.Second, "the predecessor's exit", func() error {
		if harness.ProcessAlive(first) {
			return fmt.Errorf("pid %d still runs", first)
		}
		return nil
	})
	handedOver := time.Since(changed)
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()

	t.Logf("traefik %d → %d, %s from the gateway's stop to the predecessor's exit: %d requests, %d failed, slowest %s",
		first, e.gw.TraefikPID(), handedOver.Round(time.Millisecond), ok.Load(), failed.Load(), slowest.Round(time.Millisecond))
	if failed.Load() > 0 {
		t.Errorf("%d requests failed during the handover:\n%v", failed.Load(), failures)
	}
	if ok.Load() < 200 {
		t.Errorf("only %d requests answered: the load did not run", ok.Load())
	}

	select {
	case err := <-wsEnd:
		// Closed by the predecessor when its drain ended: a clean end of
		// the stream, not a reset.
		if err != nil && !errors.Is(err, io.EOF) {
			t.Errorf("the websocket ended with %v, want a clean close", err)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("the websocket outlived the predecessor by 10s")
	}
	// The websocket was served during the whole handover: it echoed after the gateway was restarted.
	if last := time.Unix(0, lastEcho.Load()); !last.After(changed) {
		t.Errorf("the websocket's last echo came before the gateway was restarted")
	}
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
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+r.http+"/", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get(harness.HeaderBackend) != "handover" {
		return fmt.Errorf("%s: status %d from backend %q", r.http, resp.StatusCode, resp.Header.Get(harness.HeaderBackend))
	}
	return nil
}
