package harness

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/websocket"
)

// TestDNSServer checks the answers the gateway's resolver relies on.
func TestDNSServer(t *testing.T) {
	s := StartDNS(t)
	s.Set(t, "App.Example.test", "127.0.0.1", "::1")
	s.Set(t, "four.example.test", "127.0.0.9")
	cases := []struct {
		name  string
		qname string
		qtype uint16
		net   string
		rcode int
		want  []string
	}{
		{"A over UDP, case-insensitive", "app.example.TEST.", dns.TypeA, "udp", dns.RcodeSuccess, []string{"127.0.0.1"}},
		{"AAAA over TCP", "app.example.test.", dns.TypeAAAA, "tcp", dns.RcodeSuccess, []string{"::1"}},
		{"no AAAA for an IPv4-only name", "four.example.test.", dns.TypeAAAA, "udp", dns.RcodeSuccess, nil},
		{"unknown name", "nope.example.test.", dns.TypeA, "udp", dns.RcodeNameError, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := new(dns.Msg)
			m.SetQuestion(tc.qname, tc.qtype)
			c := &dns.Client{Net: tc.net, Timeout: 2 * time.Second}
			r, _, err := c.Exchange(m, s.Addr)
			if err != nil {
				t.Fatal(err)
			}
			if r.Rcode != tc.rcode || !r.Authoritative {
				t.Fatalf("rcode %s, authoritative %v", dns.RcodeToString[r.Rcode], r.Authoritative)
			}
			var got []string
			for _, rr := range r.Answer {
				switch v := rr.(type) {
				case *dns.A:
					got = append(got, netip.MustParseAddr(v.A.String()).String())
				case *dns.AAAA:
					got = append(got, v.AAAA.String())
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("answers %v, want %v", got, tc.want)
			}
		})
	}
}

// TestBackends checks the backends directly, without a proxy in between.
func TestBackends(t *testing.T) {
	h := StartHTTPBackend(t, "plain")
	tb := StartTLSBackend(t, "secure", "secure.example.test")

	resp, err := HTTPClient(h.Addr).Post("http://whatever.test/?size=1000", "text/plain", bytes.NewReader(make([]byte, 300)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get(HeaderBackend) != "plain" || h.BytesIn() != 300 || h.BytesOut() != 1000 {
		t.Errorf("status %d backend %q in %d out %d", resp.StatusCode, resp.Header.Get(HeaderBackend), h.BytesIn(), h.BytesOut())
	}

	// PathEcho answers with the body, and refuses one over its limit.
	body := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	resp, err = HTTPClient(h.Addr).Post("http://whatever.test"+PathEcho, "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	echoed, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(echoed, body) {
		t.Errorf("echo: status %d, %d bytes, want %d; error %v", resp.StatusCode, len(echoed), len(body), err)
	}
	resp, err = HTTPClient(h.Addr).Post("http://whatever.test"+PathEcho, "application/octet-stream", bytes.NewReader(make([]byte, maxResponseSize+1)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("echo of %d bytes: status %d, want 413", maxResponseSize+1, resp.StatusCode)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a, err := TLSGet(ctx, tb.Addr, "secure.example.test", "/")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Leaf, tb.Cert.Raw) || a.Backend != "secure" || a.Body != "secure\n" {
		t.Errorf("TLS answer %+v", a)
	}

	c, err := DialTLS(ctx, tb.Addr, "secure.example.test")
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := websocket.NewConfig("wss://secure.example.test"+PathWebsocket, "https://secure.example.test")
	ws, err := websocket.NewClient(cfg, c)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	_ = ws.SetDeadline(time.Now().Add(2 * time.Second))
	if err := websocket.Message.Send(ws, "ping"); err != nil {
		t.Fatal(err)
	}
	var echo string
	if err := websocket.Message.Receive(ws, &echo); err != nil || echo != "ping" {
		t.Fatalf("echo %q, %v", echo, err)
	}
}

// TestBackendRestart checks that a stopped backend refuses connections at
// once, and that another one starts on its address: the health tests kill
// and revive backends where routes point.
func TestBackendRestart(t *testing.T) {
	addr := Addr(t)
	b := StartHTTPBackendAt(t, "first", addr)
	if b.Addr != addr {
		t.Fatalf("backend listens on %s, want %s", b.Addr, addr)
	}
	get := func() (*http.Response, error) { return HTTPClient(addr).Get("http://whatever.test/") }
	resp, err := get()
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	b.Stop()
	b.Stop() // idempotent, and cleanup calls it again
	if resp, err := get(); err == nil {
		resp.Body.Close()
		t.Fatalf("stopped backend on %s still answers: %s", addr, resp.Status)
	}

	again := StartHTTPBackendAt(t, "second", addr)
	resp, err = get()
	if err != nil {
		t.Fatalf("backend started again on %s: %v", addr, err)
	}
	resp.Body.Close()
	if got := resp.Header.Get(HeaderBackend); got != "second" || again.Hits() != 1 || b.Hits() != 1 {
		t.Errorf("answer from %q; hits: first %d, second %d; want second, 1 each", got, b.Hits(), again.Hits())
	}
}

// TestTLSBackendIPv6 checks a TLS backend on ::1 and its count of requests
// that came over TLS.
func TestTLSBackendIPv6(t *testing.T) {
	tb := StartTLSBackendAt(t, "six", "[::1]:0", "six.example.test")
	ap, err := netip.ParseAddrPort(tb.Addr)
	if err != nil || ap.Addr() != netip.IPv6Loopback() {
		t.Fatalf("backend listens on %q, want [::1]:port", tb.Addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a, err := TLSGet(ctx, tb.Addr, "six.example.test", "/")
	if err != nil {
		t.Fatal(err)
	}
	if a.Backend != "six" || !bytes.Equal(a.Leaf, tb.Cert.Raw) || tb.TLSHits() != 1 || tb.Hits() != 1 {
		t.Errorf("answer from %q (own certificate %v), %d hits, %d over TLS; want six, its certificate, 1 and 1",
			a.Backend, bytes.Equal(a.Leaf, tb.Cert.Raw), tb.Hits(), tb.TLSHits())
	}

	h := StartHTTPBackendAt(t, "plain-six", "[::1]:0")
	resp, err := HTTPClient(h.Addr).Get("http://whatever.test/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if h.Hits() != 1 || h.TLSHits() != 0 || h.URL() != "http://"+h.Addr || !strings.HasPrefix(h.Addr, "[::1]:") {
		t.Errorf("plain backend %s (%s): %d hits, %d over TLS; want 1 and 0", h.Addr, h.URL(), h.Hits(), h.TLSHits())
	}
}
