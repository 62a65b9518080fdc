//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"github.com/threefoldtech/gateway/test/harness"
)

// Streams must stay open through the proxy for hold, and no message may wait
// longer than maxGap: Traefik's timeouts or buffering would show as a stall.
const (
	hold   = 5 * time.Second
	maxGap = time.Second
)

// testStreaming keeps a websocket and a server-sent-events stream open
// through the proxy, side by side.
func testStreaming(t *testing.T, e *env) {
	b := harness.StartHTTPBackend(t, "stream")
	host := e.gw.SetNamedProxy(t, "wl-stream", "stream", []string{b.URL()}, false)
	e.waitHTTP(t, host, "stream")

	t.Run("websocket", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), hold+10*time.Second)
		defer cancel()
		ws, err := harness.DialWebsocket(ctx, e.gw.WebSecureAddr, host, harness.PathWebsocket)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		start := time.Now()
		n := 0
		// Bounded by count and time: 100 messages at most.
		for ; n < 100 && time.Since(start) < hold+200*time.Millisecond; n++ {
			msg := fmt.Sprintf("message %d", n)
			_ = ws.SetDeadline(time.Now().Add(maxGap))
			if err := websocket.Message.Send(ws, msg); err != nil {
				t.Fatalf("sending message %d after %s: %v", n, time.Since(start), err)
			}
			var echo string
			if err := websocket.Message.Receive(ws, &echo); err != nil {
				t.Fatalf("no echo of message %d within %s, %s after the start: %v", n, maxGap, time.Since(start), err)
			}
			if echo != msg {
				t.Fatalf("echo %q, want %q", echo, msg)
			}
			select {
			case <-tick.C:
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			}
		}
		if elapsed := time.Since(start); elapsed < hold || n < 40 {
			t.Errorf("websocket: %d messages echoed over %s, want at least 40 over %s", n, elapsed, hold)
		}
	})

	t.Run("sse", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), hold+10*time.Second)
		defer cancel()
		c := *e.https
		c.Timeout = 0 // the context bounds the stream
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+host+harness.PathSSE, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		events := make(chan int, 16)
		go sseEvents(ctx, resp.Body, events)
		start := time.Now()
		last := start
		want := 1
		for time.Since(start) < hold+200*time.Millisecond {
			select {
			case n, ok := <-events:
				if !ok {
					t.Fatalf("stream ended after %d events, %s", want-1, time.Since(start))
				}
				if n != want {
					t.Fatalf("event %d, want %d", n, want)
				}
				if gap := time.Since(last); gap > maxGap {
					t.Errorf("event %d came %s after the previous one", n, gap)
				}
				last = time.Now()
				want++
			case <-time.After(maxGap):
				t.Fatalf("stream stalled: no event for %s after %d events, %s after the start", maxGap, want-1, time.Since(start))
			}
		}
		if got, min := want-1, int(hold/harness.SSEInterval)-3; got < min {
			t.Errorf("sse: %d events over %s, want at least %d", got, time.Since(start), min)
		}
	})
}
