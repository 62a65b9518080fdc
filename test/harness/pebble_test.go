//go:build e2e

package harness

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestChallTestSrv checks that pebble-challtestsrv answers only the A
// records a test adds: with its default addresses on, every name would
// resolve to 127.0.0.1 (and AAAA to ::1, which Pebble prefers).
func TestChallTestSrv(t *testing.T) {
	s := StartChallTestSrv(t)
	s.AddA(t, "app.user.test", "127.0.0.1")
	cases := []struct {
		name  string
		qname string
		qtype uint16
		net   string
		want  []string
	}{
		{"added A over UDP", "app.user.test.", dns.TypeA, "udp", []string{"127.0.0.1"}},
		// Pebble asks over TCP too.
		{"added A over TCP", "app.user.test.", dns.TypeA, "tcp", []string{"127.0.0.1"}},
		{"no default AAAA", "app.user.test.", dns.TypeAAAA, "udp", nil},
		{"no default A", "other.user.test.", dns.TypeA, "udp", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := new(dns.Msg)
			m.SetQuestion(tc.qname, tc.qtype)
			c := &dns.Client{Net: tc.net, Timeout: 2 * time.Second}
			r, _, err := c.Exchange(m, s.DNSAddr)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, rr := range r.Answer {
				switch v := rr.(type) {
				case *dns.A:
					got = append(got, v.A.String())
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

// TestPebble checks that Pebble answers on HTTPS with a certificate that
// verifies against CAFile, and that its issuing root can be fetched.
func TestPebble(t *testing.T) {
	// A DNS server that knows no name: Pebble must not need one to start.
	d := StartDNS(t)
	p := StartPebble(t, PebbleOptions{DNSServer: d.Addr})

	body, err := p.get(p.DirectoryURL)
	if err != nil {
		t.Fatal(err)
	}
	var dir map[string]any
	if err := json.Unmarshal(body, &dir); err != nil {
		t.Fatalf("directory %q: %v", truncate(body), err)
	}
	for _, k := range []string{"newAccount", "newNonce", "newOrder"} {
		if _, ok := dir[k]; !ok {
			t.Errorf("directory has no %s: %s", k, body)
		}
	}
	if p.Roots(t) == nil {
		t.Errorf("no root pool")
	}
	if n, issued := p.Orders(), p.Issued(); n != 0 || len(issued) != 0 {
		t.Errorf("a fresh Pebble reports %d orders and issued %v", n, issued)
	}
}
