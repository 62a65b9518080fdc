//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"github.com/threefoldtech/gateway/pkg/meter"
	"github.com/threefoldtech/gateway/test/harness"
)

// meteredBytes is what each metering test moves each way through a route.
const meteredBytes = 10 << 20

// wsMessage is the size of one websocket message of the metering test.
const wsMessage = 64 << 10

// TestMetering moves 10 MiB each way through a route of each kind and reads
// Metrics: each total must be what moved between Traefik and the backend,
// within 2 % (headers of the packets, HTTP and websocket framing, TLS
// records: docs/API.md). Then it kills Traefik in the middle of a transfer
// and restarts the gateway: no total may go down.
//
// It runs alone, not in parallel with the other tests: on a loaded loopback
// the kernel drops and retransmits packets, and a retransmission is a real
// byte on the wire that the counters count, beyond the 2 % this checks.
func TestMetering(t *testing.T) {
	e := newEnv(t)
	web := harness.StartHTTPBackend(t, "metered-http")
	ws := harness.StartHTTPBackend(t, "metered-ws")
	pass := harness.StartTLSBackend(t, "metered-tls", "tls.gw.test")
	httpHost := e.gw.SetNamedProxy(t, "wl-http", "http", []string{web.URL()}, false)
	wsHost := e.gw.SetNamedProxy(t, "wl-ws", "ws", []string{ws.URL()}, false)
	tlsHost := e.gw.SetNamedProxy(t, "wl-tls", "tls", []string{pass.Addr}, true)
	e.waitHTTP(t, httpHost, "metered-http")
	e.waitHTTP(t, wsHost, "metered-ws")
	e.waitPassthrough(t, tlsHost, "metered-tls")

	// The kernel's counters, read beside Metrics, tell how many packets
	// carried the bytes: only to subtract their headers here.
	kernel, err := meter.OpenKernel(meter.KernelConfig{Table: e.gw.MeterTable})
	if err != nil {
		t.Fatal(err)
	}
	defer kernel.Close()
	addrs := map[string]netip.AddrPort{
		"wl-http": netip.MustParseAddrPort(web.Addr),
		"wl-ws":   netip.MustParseAddrPort(ws.Addr),
		"wl-tls":  netip.MustParseAddrPort(pass.Addr),
	}
	kernelBefore, err := kernel.Read()
	if err != nil {
		t.Fatal(err)
	}
	before, err := e.gw.Metrics()
	if err != nil {
		t.Fatalf("Metrics: %v", err)
	}

	// HTTP, TLS terminated: one upload and one download of 10 MiB.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := e.request(ctx, http.MethodPost, httpHost, fmt.Sprintf("/?size=%d", meteredBytes), make([]byte, meteredBytes))
	if err != nil || a.status != http.StatusOK || len(a.body) != meteredBytes {
		t.Fatalf("HTTP transfer: status %d, %d bytes, %v", a.status, len(a.body), err)
	}
	// A websocket echo: 10 MiB up, the same back.
	if n, err := echoWebsocket(ctx, e.gw.WebSecureAddr, wsHost, meteredBytes, nil); err != nil || n != meteredBytes {
		t.Fatalf("websocket echo: %d bytes, %v", n, err)
	}
	// TLS passed through: an upload and a download of 10 MiB over the
	// backend's own TLS.
	if err := passthroughTransfer(ctx, e.gw.WebSecureAddr, tlsHost, meteredBytes, meteredBytes); err != nil {
		t.Fatalf("passthrough transfer: %v", err)
	}

	after, err := e.gw.Metrics()
	if err != nil {
		t.Fatalf("Metrics: %v", err)
	}
	kernelAfter, err := kernel.Read()
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"wl-http", "wl-ws", "wl-tls"} {
		k0, k1 := kernelBefore[addrs[id]], kernelAfter[addrs[id]]
		for _, d := range []struct {
			name    string
			metered float64
			packets uint64
		}{
			{"request", after.Request[id] - before.Request[id], k1.TxPackets - k0.TxPackets},
			{"response", after.Response[id] - before.Response[id], k1.RxPackets - k0.RxPackets},
		} {
			headers := float64(d.packets * meter.TypicalHeader4)
			payload := d.metered - headers
			off := 100 * (payload - meteredBytes) / meteredBytes
			if d.metered < meteredBytes || off < -2 || off > 2 {
				t.Errorf("%s %s: %.0f bytes metered in %d packets, %.0f without their headers, for %d moved (%+.2f %%)",
					id, d.name, d.metered, d.packets, payload, meteredBytes, off)
			} else {
				t.Logf("%s %s: %.0f bytes metered in %d packets, %.0f without their headers, for %d moved (%+.2f %%)",
					id, d.name, d.metered, d.packets, payload, meteredBytes, off)
			}
		}
	}
	for name, m := range map[string]map[string]float64{"Received": after.Received, "Sent": after.Sent} {
		want := after.Request
		if name == "Sent" {
			want = after.Response
		}
		if fmt.Sprint(m) != fmt.Sprint(want) {
			t.Errorf("%s %v differs from its twin %v", name, m, want)
		}
	}

	t.Run("the gateway's own metrics", func(t *testing.T) {
		scrape := scrapeOwnMetrics(t, e.gw.OwnMetricsAddr)
		for _, want := range []string{
			`gateway_workload_bytes_total{direction="request",workload="wl-http"}`,
			`gateway_workload_bytes_total{direction="response",workload="wl-tls"}`,
			`gateway_calls_total{method="SetNamedProxy"} 3`,
			`gateway_routes{kind="name",passthrough="true"} 1`,
			`gateway_metering_up 1`,
			`gateway_traefik_starts_total{how="started"} 1`,
			// Each new route observed live on Traefik's API.
			`gateway_route_publish_seconds_count 3`,
		} {
			if !strings.Contains(scrape, want) {
				t.Errorf("the gateway's metrics lack %s", want)
			}
		}
	})

	t.Run("no total goes down across a Traefik crash and a gateway restart", func(t *testing.T) {
		// Traefik dies in the middle of a websocket transfer.
		var moved atomic.Int64
		done := make(chan error, 1)
		go func() {
			_, err := echoWebsocket(ctx, e.gw.WebSecureAddr, wsHost, 1<<30, &moved)
			done <- err
		}()
		harness.WaitFor(t, 10*time.Second, "the websocket to move 2 MiB", func() error {
			if moved.Load() < 2<<20 {
				return fmt.Errorf("%d bytes so far", moved.Load())
			}
			return nil
		})
		old := e.gw.TraefikPID()
		if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
			t.Fatalf("killing traefik %d: %v", old, err)
		}
		if err := <-done; err == nil {
			t.Fatal("the websocket moved 1 GiB: Traefik was not killed in the middle of it")
		}
		e.waitHTTP(t, wsHost, "metered-ws")

		e.gw.Kill()
		<-e.gw.Proc.Done()
		e.gw.Restart(t)
		final, err := e.gw.Metrics()
		if err != nil {
			t.Fatalf("Metrics after the restart: %v", err)
		}
		for _, id := range []string{"wl-http", "wl-ws", "wl-tls"} {
			if final.Request[id] < after.Request[id] || final.Response[id] < after.Response[id] {
				t.Errorf("%s went down: request %.0f → %.0f, response %.0f → %.0f",
					id, after.Request[id], final.Request[id], after.Response[id], final.Response[id])
			}
		}
		if grew := final.Request["wl-ws"] - after.Request["wl-ws"]; grew < float64(moved.Load()) {
			t.Errorf("wl-ws grew by %.0f bytes, but %d moved before Traefik died", grew, moved.Load())
		}
	})
}

// echoWebsocket sends total bytes in wsMessage messages over a websocket to
// host and reads each echo, adding what came back to moved (if not nil); it
// returns the bytes echoed.
func echoWebsocket(ctx context.Context, addr, host string, total int, moved *atomic.Int64) (int, error) {
	c, err := harness.DialWebsocket(ctx, addr, host, harness.PathWebsocket)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(d)
	}
	msg := bytes.Repeat([]byte("w"), wsMessage)
	echoed := 0
	for echoed < total {
		if err := websocket.Message.Send(c, msg); err != nil {
			return echoed, err
		}
		var back []byte
		if err := websocket.Message.Receive(c, &back); err != nil {
			return echoed, err
		}
		if len(back) != len(msg) {
			return echoed, fmt.Errorf("echo of %d bytes, sent %d", len(back), len(msg))
		}
		echoed += len(back)
		if moved != nil {
			moved.Add(int64(len(back)))
		}
	}
	return echoed, nil
}

// passthroughTransfer posts up bytes to host over a TLS connection Traefik
// passes through to the backend, and reads down bytes back.
func passthroughTransfer(ctx context.Context, addr, host string, up, down int) error {
	client := &http.Client{Transport: &http.Transport{
		DialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return harness.DialTLS(ctx, addr, host)
		},
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("https://%s/?size=%d", host, down), bytes.NewReader(make([]byte, up)))
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || n != int64(down) || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d, %d bytes of %d: %v", resp.StatusCode, n, down, err)
	}
	return nil
}

// scrapeOwnMetrics reads the gateway's own Prometheus endpoint.
func scrapeOwnMetrics(t testing.TB, addr string) string {
	t.Helper()
	var body []byte
	harness.WaitFor(t, 5*time.Second, "the gateway's metrics", func() error {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err = io.ReadAll(resp.Body)
		return err
	})
	return string(body)
}
