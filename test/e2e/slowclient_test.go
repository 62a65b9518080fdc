//go:build e2e

package e2e

// Slow clients and the read timeout of the public entry points
// (--traefik.readtimeout, default traefik.DefaultReadTimeout). Traefik v3.6
// bounds with one readTimeout the TLS ClientHello, the request head and the
// whole request, body included: these tests measure, on the real Traefik,
// what the default closes and what it leaves alone. The long ones run in
// parallel with the rest of the suite; each top-level test holds one slot of
// -parallel and runs its cases side by side in goroutines.

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"github.com/threefoldtech/gateway/pkg/traefik"
	"github.com/threefoldtech/gateway/test/harness"
)

const (
	// readTimeout is the gateway's default --traefik.readtimeout.
	readTimeout = traefik.DefaultReadTimeout
	// closeMargin is how late after readTimeout Traefik may close a slow
	// client or cut a request: measured under a second late, the margin is
	// for a loaded machine.
	closeMargin = 10 * time.Second
	// closeEarly is how early: the timeout starts at accept, the clock of
	// the test just before.
	closeEarly = time.Second
	// wsIdle is how long a websocket stays silent before it is used again.
	wsIdle = 5 * time.Minute
	// sseLength is how long a server-sent-events stream is read: past
	// readTimeout.
	sseLength = readTimeout + 15*time.Second
	// sseMaxGap is the longest wait allowed between two events, sent every
	// harness.SSEInterval.
	sseMaxGap = 2 * time.Second
	// uploadChunk and uploadChunks make a 3-minute upload, uploadInterval
	// between chunks.
	uploadChunk    = 1 << 10
	uploadChunks   = 180
	uploadInterval = time.Second
	// answerWait bounds the wait for an answer once a request is sent, or
	// for the exchange of one websocket message.
	answerWait = 15 * time.Second
)

// partialHead is the beginning of a request head that never ends.
const partialHead = "GET / HTTP/1.1\r\nHost: slow.gw.test\r\n"

// With the default read timeout Traefik closes connections that send
// nothing, half a ClientHello or half a request head, on websecure and web.
// Before, websecure had no read timeout: such connections stayed open
// forever, and enough of them exhaust Traefik's descriptors for every route.
func TestSlowClientsClosedAtReadTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	hello := clientHello(t, "slow.gw.test")

	tests := []struct {
		name string
		// open connects and sends the client's partial start.
		open func(ctx context.Context) (net.Conn, error)
	}{
		{"websecure, nothing sent", func(ctx context.Context) (net.Conn, error) {
			return dialAndSend(ctx, e.gw.WebSecureAddr, nil)
		}},
		{"websecure, half a ClientHello", func(ctx context.Context) (net.Conn, error) {
			return dialAndSend(ctx, e.gw.WebSecureAddr, hello[:len(hello)/2])
		}},
		{"websecure, TLS handshake then half a request head", func(ctx context.Context) (net.Conn, error) {
			c, err := harness.DialTLS(ctx, e.gw.WebSecureAddr, "slow.gw.test")
			if err != nil {
				return nil, err
			}
			if _, err := io.WriteString(c, partialHead); err != nil {
				c.Close()
				return nil, err
			}
			return c, nil
		}},
		{"web, nothing sent", func(ctx context.Context) (net.Conn, error) {
			return dialAndSend(ctx, e.gw.WebAddr, nil)
		}},
		{"web, half a request head", func(ctx context.Context) (net.Conn, error) {
			return dialAndSend(ctx, e.gw.WebAddr, []byte(partialHead))
		}},
	}
	// All at once: each waits for readTimeout.
	took := make([]time.Duration, len(tests))
	errs := make([]error, len(tests))
	var wg sync.WaitGroup
	for i, tt := range tests {
		wg.Go(func() { took[i], errs[i] = closedAfter(tt.open, readTimeout+closeMargin) })
	}
	wg.Wait()
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			switch {
			case errs[i] != nil:
				t.Errorf("%v (read timeout %s)", errs[i], readTimeout)
			case took[i] < readTimeout-closeEarly:
				t.Errorf("closed after %s, before the read timeout %s: something else closed it", took[i], readTimeout)
			default:
				t.Logf("closed by traefik %s after the connection (read timeout %s)", took[i].Round(time.Millisecond), readTimeout)
			}
		})
	}
}

// With the default read timeout, a websocket idle for 5 minutes still
// carries messages, and a server-sent-events stream flows past the timeout:
// neither is a request still being read.
func TestStreamsOutliveReadTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := harness.StartHTTPBackend(t, "longstream")
	host := e.gw.SetNamedProxy(t, "wl-longstream", "longstream", []string{b.URL()}, false)
	e.waitHTTP(t, host, "longstream")

	var wsErr, sseErr error
	var events int
	var wg sync.WaitGroup
	wg.Go(func() { wsErr = idleWebsocket(e.gw.WebSecureAddr, host, wsIdle) })
	wg.Go(func() { events, sseErr = readSSE(e.https, host, sseLength) })
	wg.Wait()
	if wsErr != nil {
		t.Errorf("websocket idle for %s, read timeout %s: %v", wsIdle, readTimeout, wsErr)
	} else {
		t.Logf("websocket: a message echoed before and after %s idle", wsIdle)
	}
	if sseErr != nil {
		t.Errorf("server-sent events over %s, read timeout %s: %v", sseLength, readTimeout, sseErr)
	} else {
		t.Logf("server-sent events: %d events over %s, none more than %s apart", events, sseLength, sseMaxGap)
	}
}

// With the default read timeout, an upload still streaming at the timeout is
// cut there: Traefik answers 504 or 499 (the read error and the request's
// cancellation race) and the backend gets the body up to then.
// This is the price of bounding slow clients (Traefik v3.6 has no timeout of
// the request head alone); --traefik.readtimeout=0 lifts it. A passthrough
// route is bounded on its ClientHello only: its upload goes on.
func TestUploadCutAtReadTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := harness.StartHTTPBackend(t, "upload")
	host := e.gw.SetNamedProxy(t, "wl-upload", "upload", []string{b.URL()}, false)
	tb := harness.StartTLSBackend(t, "upload-tls")
	tlsHost := e.gw.SetNamedProxy(t, "wl-upload-tls", "upload-tls", []string{tb.Addr}, true)
	e.waitHTTP(t, host, "upload")
	e.waitPassthrough(t, tlsHost, "upload-tls")

	// Past the bound, not 3 minutes: the passthrough upload runs beside the
	// other one.
	passChunks := int((readTimeout + 15*time.Second) / uploadInterval)
	var r, pass uploadResult
	var wg sync.WaitGroup
	wg.Go(func() { r = slowUpload(e.gw.WebSecureAddr, host, uploadChunks) })
	wg.Go(func() { pass = slowUpload(e.gw.WebSecureAddr, tlsHost, passChunks) })
	wg.Wait()

	total := int64(uploadChunk * uploadChunks)
	t.Logf("upload of %d bytes, %d a second: status %d after %s, %d chunks sent, error %v",
		total, uploadChunk, r.status, r.after.Round(time.Millisecond), r.sent, r.err)
	switch {
	case r.status == http.StatusOK || r.sent == uploadChunks:
		t.Errorf("the upload went through (status %d, %d of %d chunks sent): the read timeout %s did not cut it", r.status, r.sent, uploadChunks, readTimeout)
	case r.status == 0 && r.err == nil:
		t.Errorf("the upload ended with neither an answer nor an error")
	case r.after < readTimeout-closeEarly || r.after > readTimeout+closeMargin:
		t.Errorf("cut after %s, want the read timeout %s (+%s)", r.after, readTimeout, closeMargin)
	default:
		// The backend counts the body once its handler read all it got.
		var got int64
		harness.WaitFor(t, answerWait, "the backend to count the cut body", func() error {
			if got = b.BytesIn(); got == 0 {
				return errors.New("no body bytes counted")
			}
			return nil
		})
		if got >= total {
			t.Errorf("the backend read %d bytes, the whole body", got)
		}
		t.Logf("the backend read %d of %d bytes", got, total)
	}

	passTotal := int64(uploadChunk * passChunks)
	t.Logf("passthrough upload of %d bytes, %d a second: status %d after %s, %d chunks sent, error %v",
		passTotal, uploadChunk, pass.status, pass.after.Round(time.Millisecond), pass.sent, pass.err)
	if pass.status != http.StatusOK || pass.sent != passChunks {
		t.Errorf("passthrough upload: status %d, %d of %d chunks sent, error %v", pass.status, pass.sent, passChunks, pass.err)
	} else if got := tb.BytesIn(); got != passTotal {
		t.Errorf("the passthrough backend read %d bytes, want %d", got, passTotal)
	}
}

// With --traefik.readtimeout=0 a 3-minute upload goes through whole.
func TestUploadWithoutReadTimeout(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, harness.GatewayOptions{Extra: []string{"--traefik.readtimeout=0"}})
	b := harness.StartHTTPBackend(t, "upload")
	host := e.gw.SetNamedProxy(t, "wl-upload", "upload", []string{b.URL()}, false)
	e.waitHTTP(t, host, "upload")

	r := slowUpload(e.gw.WebSecureAddr, host, uploadChunks)
	total := int64(uploadChunk * uploadChunks)
	t.Logf("upload of %d bytes, %d a second: status %d after %s, %d chunks sent, error %v",
		total, uploadChunk, r.status, r.after.Round(time.Millisecond), r.sent, r.err)
	if r.status != http.StatusOK || r.sent != uploadChunks {
		t.Fatalf("upload: status %d, %d of %d chunks sent, error %v", r.status, r.sent, uploadChunks, r.err)
	}
	// Counted before the handler answered.
	if got := b.BytesIn(); got != total {
		t.Errorf("the backend read %d bytes, want %d", got, total)
	}
}

// dialAndSend connects to addr and sends start, which may be empty.
func dialAndSend(ctx context.Context, addr string, start []byte) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if len(start) > 0 {
		if _, err := c.Write(start); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// closedAfter opens a connection with open, then reads it until the server
// closes it, for at most limit, and returns how long after the dial it was
// closed. It fails when the connection is still open at limit.
func closedAfter(open func(ctx context.Context) (net.Conn, error), limit time.Duration) (time.Duration, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), answerWait)
	c, err := open(ctx)
	cancel()
	if err != nil {
		return 0, fmt.Errorf("connecting: %w", err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(start.Add(limit))
	n, err := io.Copy(io.Discard, c)
	took := time.Since(start)
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return took, fmt.Errorf("still open after %s", took.Round(time.Millisecond))
	}
	if n > 0 {
		// Closed with an answer (a 400, an alert): still closed, but say so.
		return took, fmt.Errorf("closed after %s with %d bytes of answer, want a plain close", took.Round(time.Millisecond), n)
	}
	return took, nil
}

// clientHello returns the first TLS record a client sends to sni: its
// ClientHello.
func clientHello(t testing.TB, sni string) []byte {
	t.Helper()
	client, server := net.Pipe()
	defer server.Close()
	go func() {
		// Ends with an error once server is closed.
		_ = tls.Client(client, &tls.Config{ServerName: sni, InsecureSkipVerify: true}).Handshake()
		client.Close()
	}()
	_ = server.SetReadDeadline(time.Now().Add(answerWait))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(server, hdr); err != nil {
		t.Fatalf("reading a ClientHello: %v", err)
	}
	if hdr[0] != 0x16 { // handshake record
		t.Fatalf("first TLS record of type %#x, want a handshake", hdr[0])
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(server, body); err != nil {
		t.Fatalf("reading a ClientHello: %v", err)
	}
	return append(hdr, body...)
}

// idleWebsocket opens a websocket to host through addr, exchanges a message,
// stays silent for idle and exchanges another one. It fails as soon as the
// websocket closes.
func idleWebsocket(addr, host string, idle time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), idle+2*answerWait)
	defer cancel()
	ws, err := harness.DialWebsocket(ctx, addr, host, harness.PathWebsocket)
	if err != nil {
		return err
	}
	defer ws.Close()
	deadline, _ := ctx.Deadline()
	_ = ws.SetReadDeadline(deadline)

	echoes := make(chan string)
	closed := make(chan error, 1)
	go func() {
		for {
			var msg string
			if err := websocket.Message.Receive(ws, &msg); err != nil {
				closed <- err
				return
			}
			select {
			case echoes <- msg:
			case <-ctx.Done():
				return
			}
		}
	}()
	start := time.Now()
	exchange := func(msg string) error {
		_ = ws.SetWriteDeadline(time.Now().Add(answerWait))
		if err := websocket.Message.Send(ws, msg); err != nil {
			return fmt.Errorf("sending %q %s after the start: %w", msg, time.Since(start), err)
		}
		select {
		case echo := <-echoes:
			if echo != msg {
				return fmt.Errorf("echo %q, want %q", echo, msg)
			}
			return nil
		case err := <-closed:
			return fmt.Errorf("closed %s after the start, waiting for the echo of %q: %w", time.Since(start), msg, err)
		case <-time.After(answerWait):
			return fmt.Errorf("no echo of %q within %s", msg, answerWait)
		}
	}
	if err := exchange("before the silence"); err != nil {
		return err
	}
	select {
	case err := <-closed:
		return fmt.Errorf("closed after %s of silence: %w", time.Since(start), err)
	case <-time.After(idle):
	}
	return exchange("after the silence")
}

// readSSE reads the server-sent events of host for length through client
// (without its timeout) and returns how many came. It fails when the stream
// ends or stalls for sseMaxGap, or when events are missing.
func readSSE(client *http.Client, host string, length time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), length+answerWait)
	defer cancel()
	c := *client
	c.Timeout = 0 // ctx bounds the stream
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+host+harness.PathSSE, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("status %d", resp.StatusCode)
	}
	events := make(chan int)
	go sseEvents(ctx, resp.Body, events)
	start := time.Now()
	want := 1
	for time.Since(start) < length {
		select {
		case n, ok := <-events:
			if !ok {
				return want - 1, fmt.Errorf("stream ended after %d events, %s", want-1, time.Since(start))
			}
			if n != want {
				return want - 1, fmt.Errorf("event %d, want %d", n, want)
			}
			want++
		case <-time.After(sseMaxGap):
			return want - 1, fmt.Errorf("stream stalled: no event for %s after %d events, %s after the start", sseMaxGap, want-1, time.Since(start))
		}
	}
	if got, least := want-1, int(length/harness.SSEInterval)*9/10; got < least {
		return got, fmt.Errorf("%d events over %s, want at least %d", got, length, least)
	}
	return want - 1, nil
}

// uploadResult is how an upload ended.
type uploadResult struct {
	// status is the status of the answer, 0 without one.
	status int
	// after is when the answer, or the failure, came after the dial.
	after time.Duration
	// sent counts the chunks written.
	sent int
	// err is why the upload ended without an answer.
	err error
}

// slowUpload posts chunks chunks of uploadChunk bytes to host through addr
// (websecure), one every uploadInterval, over HTTP/1.1 with a
// Content-Length. It stops early when an answer comes.
func slowUpload(addr, host string, chunks int) uploadResult {
	limit := time.Duration(chunks)*uploadInterval + 2*answerWait
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	start := time.Now()
	c, err := harness.DialTLS(ctx, addr, host)
	if err != nil {
		return uploadResult{err: err}
	}
	defer c.Close()
	_ = c.SetReadDeadline(start.Add(limit))

	type answer struct {
		status int
		at     time.Duration
		err    error
	}
	answers := make(chan answer, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			answers <- answer{err: err, at: time.Since(start)}
			return
		}
		resp.Body.Close()
		answers <- answer{status: resp.StatusCode, at: time.Since(start)}
	}()
	result := func(a answer, sent int) uploadResult {
		return uploadResult{status: a.status, after: a.at, sent: sent, err: a.err}
	}

	head := fmt.Sprintf("POST /upload HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n",
		host, uploadChunk*chunks)
	_ = c.SetWriteDeadline(time.Now().Add(answerWait))
	if _, err := io.WriteString(c, head); err != nil {
		return uploadResult{after: time.Since(start), err: fmt.Errorf("sending the head: %w", err)}
	}
	chunk := make([]byte, uploadChunk)
	for i := range chunk {
		chunk[i] = 'u'
	}
	tick := time.NewTicker(uploadInterval)
	defer tick.Stop()
	sent := 0
	for sent < chunks {
		_ = c.SetWriteDeadline(time.Now().Add(answerWait))
		if _, err := c.Write(chunk); err != nil {
			// The server may have answered and closed: prefer its answer.
			select {
			case a := <-answers:
				return result(a, sent)
			case <-time.After(answerWait):
				return uploadResult{after: time.Since(start), sent: sent, err: fmt.Errorf("sending chunk %d: %w", sent, err)}
			}
		}
		sent++
		if sent == chunks {
			break
		}
		select {
		case a := <-answers:
			return result(a, sent)
		case <-tick.C:
		}
	}
	select {
	case a := <-answers:
		return result(a, sent)
	case <-time.After(answerWait):
		return uploadResult{after: time.Since(start), sent: sent, err: fmt.Errorf("no answer within %s of the last chunk", answerWait)}
	}
}
