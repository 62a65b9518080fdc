package harness

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

// Paths every test backend serves.
const (
	// PathWebsocket is a websocket that echoes every message back.
	PathWebsocket = "/ws"
	// PathSSE is a server-sent-events stream of one event every
	// SSEInterval, "data: <n>", n counting from 1.
	PathSSE = "/sse"
	// SSEInterval is the time between two events of PathSSE.
	SSEInterval = 200 * time.Millisecond
	// PathEcho answers with the request body, byte for byte, once it has
	// read all of it (at most maxResponseSize bytes; more is refused with
	// 413), as an upload that returns what it stored does.
	PathEcho = "/echo"
	// HeaderBackend carries the backend's name in every answer.
	HeaderBackend = "X-Backend"
)

// Limits that keep a misbehaving test bounded.
const (
	maxSSEEvents    = 3000 // 10 minutes at SSEInterval
	maxResponseSize = 16 << 20
)

// Backend is an HTTP (or HTTPS) server on loopback (127.0.0.1 unless
// started with an *At constructor) that answers with its own identity:
// header X-Backend and a body "<name>\n". Any other path than PathWebsocket,
// PathSSE and PathEcho answers that way; "?size=N" makes the body N bytes of
// 'x' instead. It counts requests, those that came over TLS, and the body bytes
// it read and wrote.
type Backend struct {
	// Name is what the backend answers with.
	Name string
	// Addr is host:port, as net.JoinHostPort writes it: 127.0.0.1:port or
	// [::1]:port.
	Addr string

	hits     atomic.Int64
	tlsHits  atomic.Int64
	bytesIn  atomic.Int64
	bytesOut atomic.Int64
	srv      *http.Server
	ln       net.Listener

	mu  sync.Mutex
	wss map[*websocket.Conn]struct{}
}

// URL is the backend as an HTTP-mode gateway backend: http://127.0.0.1:port.
func (b *Backend) URL() string { return "http://" + b.Addr }

// Hits is the number of requests served (websocket and SSE included).
func (b *Backend) Hits() int64 { return b.hits.Load() }

// TLSHits is the number of requests served that came over TLS.
func (b *Backend) TLSHits() int64 { return b.tlsHits.Load() }

// BytesIn is the number of request body bytes read.
func (b *Backend) BytesIn() int64 { return b.bytesIn.Load() }

// BytesOut is the number of response body bytes written.
func (b *Backend) BytesOut() int64 { return b.bytesOut.Load() }

// StartHTTPBackend starts a plain HTTP Backend named name on 127.0.0.1.
func StartHTTPBackend(t testing.TB, name string) *Backend {
	t.Helper()
	return StartHTTPBackendAt(t, name, "127.0.0.1:0")
}

// StartHTTPBackendAt starts a plain HTTP Backend named name listening on
// addr, a loopback host:port: port 0 picks a free one, and the address of a
// stopped Backend starts it again where routes still point.
func StartHTTPBackendAt(t testing.TB, name, addr string) *Backend {
	t.Helper()
	return StartHTTPBackendOn(t, name, loopbackListener(t, name, addr))
}

// StartHTTPBackendOn starts a plain HTTP Backend named name on ln, a
// listener the test opened where the others never listen: inside a network
// namespace of the test's own.
func StartHTTPBackendOn(t testing.TB, name string, ln net.Listener) *Backend {
	t.Helper()
	b := newBackend(name)
	b.ln, b.Addr = ln, ln.Addr().String()
	go func() { _ = b.srv.Serve(b.ln) }()
	t.Cleanup(b.Stop)
	return b
}

// StartTLSBackendOn is StartHTTPBackendOn behind TLS, as StartTLSBackend.
func StartTLSBackendOn(t testing.TB, name string, ln net.Listener, names ...string) *TLSBackend {
	t.Helper()
	cert, leaf, err := selfSigned(name, names)
	if err != nil {
		t.Fatalf("backend %s: certificate: %v", name, err)
	}
	b := newBackend(name)
	b.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}}
	b.ln, b.Addr = ln, ln.Addr().String()
	go func() { _ = b.srv.Serve(tls.NewListener(b.ln, b.srv.TLSConfig)) }()
	t.Cleanup(b.Stop)
	return &TLSBackend{Backend: b, Cert: leaf}
}

// TLSBackend is a Backend that terminates TLS itself with a self-signed
// certificate of its own, made at start.
type TLSBackend struct {
	*Backend
	// Cert is the backend's certificate; Cert.Raw is what a client must see
	// in the handshake when the gateway passes TLS through.
	Cert *x509.Certificate
}

// StartTLSBackend starts a Backend behind TLS on 127.0.0.1 with a new
// self-signed certificate for names (and 127.0.0.1 and ::1).
func StartTLSBackend(t testing.TB, name string, names ...string) *TLSBackend {
	t.Helper()
	return StartTLSBackendAt(t, name, "127.0.0.1:0", names...)
}

// StartTLSBackendAt is StartTLSBackend listening on addr, a loopback
// host:port: port 0 picks a free one, and the address of a stopped Backend
// starts it again (with a new certificate) where routes still point.
func StartTLSBackendAt(t testing.TB, name, addr string, names ...string) *TLSBackend {
	t.Helper()
	return StartTLSBackendOn(t, name, loopbackListener(t, name, addr), names...)
}

// loopbackListener opens the listener of backend name on addr, which must
// be on loopback: tests never listen anywhere else but in network namespaces
// of their own (StartHTTPBackendOn).
func loopbackListener(t testing.TB, name, addr string) net.Listener {
	t.Helper()
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().IsLoopback() {
		t.Fatalf("backend %s: address %q is not a loopback IP:port (%v)", name, addr, err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("backend %s: %v", name, err)
	}
	return l
}

func newBackend(name string) *Backend {
	b := &Backend{Name: name, wss: map[*websocket.Conn]struct{}{}}
	mux := http.NewServeMux()
	mux.Handle(PathWebsocket, websocket.Handler(b.echo))
	mux.HandleFunc(PathSSE, b.sse)
	mux.HandleFunc(PathEcho, b.echoBody)
	mux.HandleFunc("/", b.identity)
	b.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b.hits.Add(1)
			if r.TLS != nil {
				b.tlsHits.Add(1)
			}
			w.Header().Set(HeaderBackend, b.Name)
			mux.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          nil,
	}
	return b
}

// Stop kills the backend as a crash would: when it returns the listener is
// closed and so is every connection, websockets included (hijacked
// connections are not closed by http.Server.Close), so a new connection to
// Addr is refused. The Backend cannot serve again; StartHTTPBackendAt or
// StartTLSBackendAt with its Addr starts another one in its place. Stop is
// idempotent and runs at cleanup.
func (b *Backend) Stop() {
	_ = b.srv.Close()
	// Serve closes the listener too, but in its own goroutine: close it
	// here so the address refuses connections as soon as Stop returns.
	_ = b.ln.Close()
	b.mu.Lock()
	defer b.mu.Unlock()
	for ws := range b.wss {
		_ = ws.Close()
	}
}

func (b *Backend) identity(w http.ResponseWriter, r *http.Request) {
	n, _ := io.Copy(io.Discard, io.LimitReader(r.Body, 64<<20))
	b.bytesIn.Add(n)
	body := []byte(b.Name + "\n")
	if s := r.URL.Query().Get("size"); s != "" {
		size, err := strconv.Atoi(s)
		if err != nil || size < 0 || size > maxResponseSize {
			http.Error(w, "bad size", http.StatusBadRequest)
			return
		}
		body = make([]byte, size)
		for i := range body {
			body[i] = 'x'
		}
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Header().Set("Content-Type", "text/plain")
	written, _ := w.Write(body)
	b.bytesOut.Add(int64(written))
}

func (b *Backend) echoBody(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxResponseSize+1))
	b.bytesIn.Add(int64(len(body)))
	switch {
	case err != nil:
		http.Error(w, "reading the body: "+err.Error(), http.StatusBadRequest)
		return
	case len(body) > maxResponseSize:
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Header().Set("Content-Type", "application/octet-stream")
	written, _ := w.Write(body)
	b.bytesOut.Add(int64(written))
}

func (b *Backend) echo(ws *websocket.Conn) {
	b.mu.Lock()
	b.wss[ws] = struct{}{}
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.wss, ws)
		b.mu.Unlock()
		_ = ws.Close()
	}()
	// Message by message, so each echo is one frame like the message.
	for {
		var msg []byte
		if err := websocket.Message.Receive(ws, &msg); err != nil {
			return
		}
		b.bytesIn.Add(int64(len(msg)))
		if err := websocket.Message.Send(ws, msg); err != nil {
			return
		}
		b.bytesOut.Add(int64(len(msg)))
	}
}

func (b *Backend) sse(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "no flushing", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	flusher.Flush()
	tick := time.NewTicker(SSEInterval)
	defer tick.Stop()
	for i := 1; i <= maxSSEEvents; i++ {
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
		}
		n, err := fmt.Fprintf(w, "id: %d\ndata: %d\n\n", i, i)
		b.bytesOut.Add(int64(n))
		if err != nil {
			return
		}
		flusher.Flush()
	}
}

// selfSigned makes an ECDSA certificate for cn, names, 127.0.0.1 and ::1, valid
// for a day.
func selfSigned(cn string, names []string) (tls.Certificate, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"gateway e2e backend"}},
		DNSNames:              names,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, leaf, nil
}

// errNoAnswer is returned when a TLS exchange ends without an HTTP answer.
var errNoAnswer = errors.New("no HTTP answer")

// contextDeadline returns ctx's deadline or now+d.
func contextDeadline(ctx context.Context, d time.Duration) time.Time {
	if dl, ok := ctx.Deadline(); ok {
		return dl
	}
	return time.Now().Add(d)
}
