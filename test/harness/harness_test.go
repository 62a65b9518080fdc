package harness

import (
	"bytes"
	"context"
	"net/http"
	"net/netip"
	"slices"
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
