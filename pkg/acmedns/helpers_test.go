package acmedns

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
)

// testDomain is the gateway domain of the tests; testZone its challenge
// zone.
const (
	testDomain = "gw.example"
	testZone   = "_acme-challenge.gw.example."
	// acmeValue and acmeValue2 look like real DNS-01 values: 43 bytes of
	// base64url.
	acmeValue  = "LPsIwTo7o8BoG0-vjCyGQGBWSVIPxI-i_X336eUOQZo"
	acmeValue2 = "9ihDbjYfTExAYeDs4DBUeuTo18KBzwvTEjUnSwd32-c"
	// waitTimeout bounds every wait in the tests.
	waitTimeout = 5 * time.Second
)

// fakeClock is a clock the tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newTestStore returns a Store on clock (the real one when nil).
func newTestStore(tb testing.TB, clock *fakeClock) *Store {
	tb.Helper()
	cfg := StoreConfig{}
	if clock != nil {
		cfg.Now = clock.Now
	}
	s, err := NewStore(cfg)
	if err != nil {
		tb.Fatalf("NewStore: %v", err)
	}
	return s
}

// values returns the live values at fqdn, as the Handler answers them.
func values(s *Store, fqdn string) []string {
	v, _ := s.lookup(CanonicalName(fqdn), nil)
	return v
}

// newTestHandler returns the Handler of testDomain over store.
func newTestHandler(tb testing.TB, store *Store) *Handler {
	tb.Helper()
	h, err := NewHandler(HandlerConfig{Domain: testDomain, Store: store, Logger: zerolog.Nop()})
	if err != nil {
		tb.Fatalf("NewHandler: %v", err)
	}
	return h
}

// startServer runs a Server for testDomain on 127.0.0.1:0 until the test
// ends and returns it once it answers.
func startServer(tb testing.TB, store *Store) *Server {
	tb.Helper()
	return startServerConfig(tb, Config{Domain: testDomain, Address: "127.0.0.1:0", Store: store, Logger: zerolog.Nop()})
}

// startServerConfig runs a Server on cfg until the test ends and returns
// it once it answers.
func startServerConfig(tb testing.TB, cfg Config) *Server {
	tb.Helper()
	srv, err := New(cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	runUntilCleanup(tb, "dns server", srv)
	return srv
}

// runner is the lifecycle Server and APIServer share.
type runner interface {
	Run(ctx context.Context) error
	Ready() <-chan struct{}
	Close() error
}

// runUntilCleanup runs srv until the test ends, and returns once it is
// ready.
func runUntilCleanup(tb testing.TB, what string, srv runner) {
	tb.Helper()
	done := make(chan struct{})
	var runErr error
	go func() {
		defer close(done)
		runErr = srv.Run(context.Background())
	}()
	tb.Cleanup(func() {
		if err := srv.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
		<-done
		if runErr != nil {
			tb.Errorf("Run: %v", runErr)
		}
	})
	select {
	case <-srv.Ready():
	case <-done:
		tb.Fatalf("%s: Run returned before ready: %v", what, runErr)
	case <-time.After(waitTimeout):
		tb.Fatalf("%s not ready in time", what)
	}
}

// exchange sends m to addr over network ("udp" or "tcp") and returns the
// answer.
func exchange(tb testing.TB, network, addr string, m *dns.Msg) *dns.Msg {
	tb.Helper()
	c := &dns.Client{Net: network, Timeout: waitTimeout, UDPSize: dns.DefaultMsgSize}
	resp, _, err := c.Exchange(m, addr)
	if err != nil {
		tb.Fatalf("exchanging %s %s over %s: %v", m.Question[0].Name, dns.TypeToString[m.Question[0].Qtype], network, err)
	}
	return resp
}

// question returns a query for name and qtype, without EDNS.
func question(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	return m
}

// txtValues returns the values of the TXT records in rrs, each with its
// character-strings joined.
func txtValues(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		if t, ok := rr.(*dns.TXT); ok {
			v := ""
			for _, s := range t.Txt {
				v += s
			}
			out = append(out, v)
		}
	}
	return out
}

// recorder is a dns.ResponseWriter that keeps what is written.
type recorder struct {
	local, remote net.Addr
	written       [][]byte
}

func newRecorder(udp bool) *recorder {
	if udp {
		return &recorder{
			local:  &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53},
			remote: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000},
		}
	}
	return &recorder{
		local:  &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53},
		remote: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000},
	}
}

func (r *recorder) LocalAddr() net.Addr  { return r.local }
func (r *recorder) RemoteAddr() net.Addr { return r.remote }
func (r *recorder) Network() string {
	if _, ok := r.local.(*net.UDPAddr); ok {
		return "udp"
	}
	return "tcp"
}
func (r *recorder) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = r.Write(b)
	return err
}
func (r *recorder) Write(b []byte) (int, error) {
	r.written = append(r.written, append([]byte(nil), b...))
	return len(b), nil
}
func (r *recorder) Close() error        { return nil }
func (r *recorder) TsigStatus() error   { return nil }
func (r *recorder) TsigTimersOnly(bool) {}
func (r *recorder) Hijack()             {}

var _ dns.ResponseWriter = (*recorder)(nil)

// serve runs h on r as if it came over UDP (or TCP) and returns the
// answer, or nil when there is none.
func serve(tb testing.TB, h dns.Handler, r *dns.Msg, udp bool) *dns.Msg {
	tb.Helper()
	w := newRecorder(udp)
	h.ServeDNS(w, r)
	switch len(w.written) {
	case 0:
		return nil
	case 1:
	default:
		tb.Fatalf("handler wrote %d messages, want at most one", len(w.written))
	}
	resp := new(dns.Msg)
	if err := resp.Unpack(w.written[0]); err != nil {
		tb.Fatalf("unpacking answer: %v", err)
	}
	return resp
}

// waitRun returns what a Run sent to errs, failing the test when it does not
// return in time.
func waitRun(tb testing.TB, errs <-chan error) error {
	tb.Helper()
	select {
	case err := <-errs:
		return err
	case <-time.After(waitTimeout):
		tb.Fatal("Run did not return")
		return nil
	}
}
